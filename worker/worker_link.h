/* worker_link - the supervisor's connection to the broker: one DEALER whose
 * routing id is the worker's name, HELLO/WELCOME, heartbeats, silence
 * detection and failover over the endpoint list (the ZeroMQ guide's
 * Paranoid Pirate, worker side).
 *
 * When nothing has been heard for the broker's worker_timeout (or, before
 * a WELCOME, for a hello timeout that backs off while the broker stays
 * away), the caller reconnects: the socket is closed, a new one connects
 * to the next endpoint, and the caller sends HELLO again. Reports wait in
 * the outbox until a WELCOME says the broker knows us.
 *
 * Non-blocking throughout: sends that would block (high-water mark) are
 * left for the next pass.
 */
#ifndef WORKER_LINK_H
#define WORKER_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "dv_curve_client.h"
#include "dv_proto.h"
#include "worker_config.h"
#include "worker_outbox.h"

typedef struct worker_link_t worker_link_t;

/* A link for the worker called name on host (both copied). cfg must
 * outlive the link. NULL if out of memory. */
worker_link_t *worker_link_new(void *zctx, const worker_config_t *cfg,
                               const char *name, const char *host);

/* CurveZMQ: the keys every later connect sets on its socket (copied; the
 * copy is wiped when replaced and when the link is destroyed). Default:
 * plain. Returns whether they differ from those set before. */
bool worker_link_set_curve(worker_link_t *self, const dv_curve_keys_t *keys);

/* Closes the socket, giving unsent messages up to linger_ms to leave. */
void worker_link_destroy(worker_link_t **self_p, int linger_ms);

/* Creates the socket and connects it to the current endpoint. Returns 0,
 * or -1 (logged) if ZeroMQ refuses (bad endpoint syntax, no memory). */
int worker_link_connect(worker_link_t *self, int64_t mono_ms);

/* Drops the socket (and whatever it had queued), moves to the next
 * endpoint and connects. Logs worker.reconnecting with reason. */
int worker_link_reconnect(worker_link_t *self, const char *reason,
                          int64_t mono_ms);

/* The DEALER, for zmq_poll. NULL when not connected. */
void *worker_link_socket(worker_link_t *self);

/* The socket that reports the connection's events (poll it for
 * ZMQ_POLLIN), or NULL; and whether an established connection to the
 * broker was lost since the last call (it died or restarted: reconnect now
 * rather than after its silence timeout). */
void *worker_link_monitor(worker_link_t *self);
bool worker_link_lost(worker_link_t *self);

/* Sends HELLO; the broker may then send credit jobs. held lists the jobs
 * still held. Returns 0, or -1 if it could not be queued (try again after
 * a reconnect). */
int worker_link_send_hello(worker_link_t *self, int32_t credit, dv_held_t *held,
                           uint32_t nheld, int64_t mono_ms);

/* True between WELCOME and the next HELLO. */
bool worker_link_welcomed(const worker_link_t *self);

/* True after a HELLO went out and no WELCOME came yet. */
bool worker_link_hello_pending(const worker_link_t *self);

/* Receives one message without blocking. Returns 1 with *msg decoded
 * (views into a frame the link keeps; call worker_link_release before the
 * next recv), 0 if nothing is waiting (or a message found no memory to
 * decode: it is kept and decoded again on a call after a short delay,
 * which worker_link_next_deadline() includes), -1 if a frame was
 * malformed (logged as worker.bad_message; call again). WELCOME and ERROR are also acted on
 * here (state, log); every frame counts as a sign of life. */
int worker_link_recv(worker_link_t *self, dv_msg_t *msg, int64_t mono_ms);
void worker_link_release(worker_link_t *self, dv_msg_t *msg);

/* Sends the outbox as UPDATE messages (only after WELCOME). Returns 0 when
 * everything went (or nothing was due), 1 if the socket is full. */
int worker_link_send_updates(worker_link_t *self, worker_outbox_t *outbox);

/* True when a heartbeat is due (only after WELCOME). */
bool worker_link_heartbeat_due(const worker_link_t *self, int64_t mono_ms);

/* Sends a heartbeat if one is due. Returns 0 or -1. */
int worker_link_heartbeat(worker_link_t *self, const dv_heartbeat_t *hb,
                          int64_t mono_ms);

/* Sends lines about the fleet's API keys (n >= 1; only after WELCOME).
 * Returns 0, or -1 if they could not be queued. */
int worker_link_send_keys(worker_link_t *self, const dv_keyitem_t *items,
                          uint32_t n);
/* Sends BYE. Returns 0 or -1. */
int worker_link_send_bye(worker_link_t *self);

/* True when the broker has been silent too long: time to reconnect. */
bool worker_link_expired(const worker_link_t *self, int64_t mono_ms);

/* The broker answered that it is a standby: whether to try the next
 * endpoint at once (true while this round of the list is not through), or
 * to wait out the hello timeout first (the round is through: every broker
 * of the list was tried, a takeover may be under way). */
bool worker_link_standby_next(const worker_link_t *self);

/* True when WE have been silent so long (stopped, or stalled) that the
 * broker may have expired us and leased our jobs to others: nothing may
 * start until a new HELLO is answered. Three quarters of the broker's
 * worker timeout since the last heartbeat or hello went out. */
bool worker_link_silent(const worker_link_t *self, int64_t mono_ms);

/* Earliest monotonic ms at which a heartbeat or expiry check is due. */
int64_t worker_link_next_deadline(const worker_link_t *self);

/* Checks that every endpoint in cfg is one ZeroMQ accepts. Returns 0, or
 * -1 with the offending endpoint and reason in err. */
int worker_link_check_endpoints(void *zctx, const worker_config_t *cfg,
                                char *err, size_t err_size);

/* The endpoint in use. */
const char *worker_link_endpoint(const worker_link_t *self);

#endif
