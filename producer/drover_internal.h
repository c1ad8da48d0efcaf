/* drover_internal - what the files of libdrover share: the client's
 * state and its socket helpers. Not installed; the symbols stay inside
 * libdrover.so (libdrover.map exports drover_* only). */
#ifndef DROVER_INTERNAL_H
#define DROVER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <zmq.h>

#include "drover.h"
#include "dv_curve_client.h"
#include "dv_proto.h"
#include "dv_zmon.h"

struct drover_client_t {
    void *ctx;        /* ZeroMQ context, one per client */
    void *sock;       /* DEALER connected to endpoints[cur] */
    char **endpoints; /* NULL-terminated list */
    int nendpoints;
    int cur;               /* index of the endpoint in use */
    int timeout_ms;        /* answer timeout per request and endpoint */
    uint64_t next_req;     /* next request number; starts at 1 (0 = unknown) */
    char error[512];       /* drover_last_error() */
    dv_code_t code;        /* drover_last_code(): the code of the refusal that
                           error tells, DV_CODE_NONE if it is no refusal */
    dv_curve_keys_t curve; /* CurveZMQ keys for every socket; wiped on
                              close */
    int standby_streak;    /* standby answers in a row (any other message
                              resets it) */
    dv_zmon_t mon;         /* sock's connection: lost? */
    char standby_why[256]; /* the last standby's reason */
    /* Results pushed for jobs submitted with DROVER_SUBMIT_WAIT that came
     * before drover_wait() asked: raw frames, in order, decoded then. */
    struct producer_raw *kept;
    size_t nkept, kept_cap;
};

typedef struct producer_raw {
    void *data;
    size_t len;
} producer_raw_t;

/* Keeps a copy of a result frame for the next drover_wait(); dropped when
 * out of memory (the wait then asks the broker for it). */
void producer_keep(drover_client_t *self, const zmq_msg_t *frame);

/* Frees the results kept. */
void producer_drop_kept(drover_client_t *self);

/* A received, decoded message; data lives in the zmq_msg_t. */
typedef struct {
    zmq_msg_t frame;
    dv_msg_t msg; /* type DV_MSG_NONE if the frame did not decode */
} producer_in_t;

/* Records the reason for the failing call and returns its code. */
int producer_fail(drover_client_t *self, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records a refusal by the broker (its code why, and the reason) and
 * returns DROVER_EREJECTED. */
int producer_refused(drover_client_t *self, dv_code_t why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A hint to add to "no answer" when CurveZMQ is on (a handshake the
 * broker refused looks like silence), else "". Static text. */
const char *producer_curve_hint(const drover_client_t *self);

/* Forgets the last call's failure. */
void producer_clear(drover_client_t *self);

/* Milliseconds until deadline (monotonic), 0 if it passed. */
int64_t producer_remaining(int64_t deadline);

/* Moves to the next endpoint of the list (the same one if there is only
 * one) with a fresh socket. Returns 0 or -1 with the reason set. */
int producer_failover(drover_client_t *self);

/* Whether m is a standby broker's refusal (DV_CODE_STANDBY). */
bool producer_is_standby(const dv_msg_t *m);

/* A standby broker answered: moves to the next endpoint at once, as
 * producer_failover. When every endpoint has answered standby in a row (a
 * takeover in progress), first pauses briefly so that clients do not spin
 * between standbys. Returns 0 or -1. */
int producer_standby_failover(drover_client_t *self);

/* After producer_recv() returned r (with *in when r is 1): whether the
 * client must move to another broker, because the connection was lost
 * (r 2) or a standby answered (in is released then, and *standby set when
 * not NULL). Returns 1 after moving (producer_failover or
 * producer_standby_failover: send the unanswered requests again), 0 when
 * there is nothing to do, -1 if the new socket could not be opened. */
int producer_move_on(drover_client_t *self, int r, producer_in_t *in,
                     bool *standby);

/* Encodes msg and sends it. Returns 0, -1 (not sent) or -2 (no memory). */
int producer_send_msg(drover_client_t *self, const dv_msg_t *msg, int flags);

/* Sends one encoded message. Returns 0, or -1 if it could not be queued
 * (the socket stayed full for the timeout, or flags had ZMQ_DONTWAIT). */
int producer_send(drover_client_t *self, const void *buf, size_t len,
                  int flags);

/* The name of a code for the public interface: NULL for none. */
const char *producer_code_name(dv_code_t code);

/* Waits up to timeout_ms (< 0: for ever) for one message. Returns 1 with
 * *in filled (release it with producer_in_release), 0 when the time passed
 * (or a signal came), 2 when the broker's connection was lost (it died or
 * restarted: what was sent and not answered will not be answered; fail
 * over and send again), -1 if the context is being torn down. A message
 * that does not decode comes with type DV_MSG_NONE. */
int producer_recv(drover_client_t *self, int64_t timeout_ms, producer_in_t *in);
void producer_in_release(producer_in_t *in);

#endif
