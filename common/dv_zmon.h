/* dv_zmon - watches a connecting socket's connection to its peer.
 *
 * A DEALER whose peer dies or restarts says nothing: what was sent and not
 * answered simply is never answered, and the sender finds out when its
 * timeout passes. libzmq's socket monitor reports the connection's end
 * (ZMQ_EVENT_DISCONNECTED); this turns that into "the established
 * connection was lost", so a client or a worker can move to the next
 * endpoint at once. A handshake that never succeeded (a peer that is not
 * there yet, a CurveZMQ key it refuses) is not a loss: only a connection
 * whose handshake succeeded counts, so nothing spins against a peer that
 * refuses us.
 *
 * Best effort: when the monitor cannot be set up, dv_zmon_socket() is NULL
 * and the caller's timeouts still apply.
 */
#ifndef DV_ZMON_H
#define DV_ZMON_H

#include <stdbool.h>

typedef struct {
    void *pair;     /* the monitor's PAIR socket, or NULL */
    bool connected; /* a handshake succeeded since the last loss */
    unsigned seq;   /* names each monitor endpoint apart */
} dv_zmon_t;

/* Starts watching sock with a PAIR in ctx. Call it before sock's
 * zmq_connect: an event raised before the monitor is set up is lost, and a
 * lost handshake makes the connection's end look like a failed attempt.
 * Replaces nothing: call dv_zmon_stop() for the previous socket first. */
void dv_zmon_start(dv_zmon_t *m, void *ctx, void *sock);

/* Stops watching sock (call before closing it) and closes the PAIR. sock
 * may be NULL. */
void dv_zmon_stop(dv_zmon_t *m, void *sock);

/* The socket to poll for ZMQ_POLLIN, or NULL. */
void *dv_zmon_socket(const dv_zmon_t *m);

/* Reads the events that arrived. True when an established connection was
 * lost since the last call. */
bool dv_zmon_lost(dv_zmon_t *m);

#endif
