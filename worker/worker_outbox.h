/* worker_outbox - reports waiting to go to the broker, and credit owed.
 *
 * The pool adds reports as things happen; the link sends everything that
 * piled up during one loop pass as one UPDATE (or a few, if it is huge).
 * Items stay here until they are handed to ZeroMQ, so reports made while
 * the broker is unreachable go out after the next WELCOME. Storage is
 * reused from pass to pass: adding a report does not allocate once the
 * buffers have grown to the working size.
 *
 * Credit: every outcome or returned job grants the broker one more job,
 * unless credit is stopped (draining).
 *
 * Outcomes are kept after they are sent until the broker acks them: each
 * UPDATE carries a sequence number, and the broker's heartbeat acks the
 * highest one whose effects it has made durable. A broker that restarted
 * (or forgot us) in between never applied them, so after the next WELCOME
 * they go again (worker_outbox_resend); one it did apply is harmless to
 * repeat, the broker then treats it as stale.
 */
#ifndef WORKER_OUTBOX_H
#define WORKER_OUTBOX_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_err.h"
#include "dv_proto.h"

/* Longest job id the worker accepts (ids are 36-character UUIDs). */
#define WORKER_ID_MAX 64

typedef struct worker_outbox_t worker_outbox_t;

/* Returns NULL if out of memory. */
worker_outbox_t *worker_outbox_new(void);
void worker_outbox_destroy(worker_outbox_t **self_p);

/* The execution a report is about: the job's id (at most WORKER_ID_MAX
 * bytes), its attempt and the lease it came with. */
typedef struct {
    dv_str_t id;
    int32_t attempt;
    uint64_t lease;
} worker_exec_t;

/* Queue one report. Texts and results are copied. Each returns 0, or
 * DV_ENOMEM when out of memory: then nothing was queued (and no credit
 * granted), and the caller keeps the report to try again on a later pass. */
int worker_outbox_started(worker_outbox_t *self, worker_exec_t x,
                          int64_t ts_ms);
int worker_outbox_progress(worker_outbox_t *self, worker_exec_t x,
                           int64_t current, int64_t total, dv_str_t message);
int worker_outbox_succeeded(worker_outbox_t *self, worker_exec_t x,
                            int64_t ts_ms, dv_str_t result);
int worker_outbox_failed(worker_outbox_t *self, worker_exec_t x, int64_t ts_ms,
                         const dv_failure_t *failure);
int worker_outbox_returned(worker_outbox_t *self, worker_exec_t x);

/* Grants n credits (a job we could not take back, e.g. a duplicate),
 * unless credit is stopped. */
void worker_outbox_grant(worker_outbox_t *self, int n);

/* Draining: owe nothing more, now or later. */
void worker_outbox_stop_credit(worker_outbox_t *self);

/* The worker takes n jobs fewer from now on (its capacity shrank): credit
 * owed and not sent yet is cancelled first, then the next outcomes grant
 * nothing until n is made up. */
void worker_outbox_withhold(worker_outbox_t *self, int n);

/* Forgets credit owed: a HELLO just told the broker the whole truth. */
void worker_outbox_reset_credit(worker_outbox_t *self);

/* Credit not yet sent. */
int32_t worker_outbox_credit(const worker_outbox_t *self);

/* Reports not yet sent. */
size_t worker_outbox_size(const worker_outbox_t *self);

/* Outcomes sent and not acked yet. */
size_t worker_outbox_unacked(const worker_outbox_t *self);

/* The broker acked every update up to seq: forget their outcomes. */
void worker_outbox_ack(worker_outbox_t *self, uint64_t seq);

/* A new session with the broker (WELCOME): outcomes it did not ack go
 * again, before anything newer. */
void worker_outbox_resend(worker_outbox_t *self);

/* Totals since start: attempts finished (succeeded + failed), failed. */
int64_t worker_outbox_processed(const worker_outbox_t *self);
int64_t worker_outbox_failures(const worker_outbox_t *self);

/* Encodes an UPDATE with the owed credit and the oldest reports (all of
 * them unless that would make a frame too large) into out, which is reset
 * first. Sets *nitems to the number of reports it covers (a "started"
 * folded into its outcome counts, though it sends nothing). Returns 0, or -1
 * if there is nothing to send. Nothing is removed until
 * worker_outbox_consume(). */
int worker_outbox_encode(worker_outbox_t *self, msgpack_sbuffer *out,
                         uint32_t *nitems);

/* The UPDATE from the last encode was sent: drop its reports (outcomes
 * are kept until acked) and the credit it carried. */
void worker_outbox_consume(worker_outbox_t *self, uint32_t nitems);

#endif
