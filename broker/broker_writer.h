/* broker_writer - the store's writes on their own thread.
 *
 * The broker's loop never waits for the disk. It records each store write
 * of a pass as an op in a batch and hands the batch to the writer, which
 * applies it as one transaction (one fsync) on its own store connection and
 * then wakes the loop through an eventfd. The loop goes on taking messages
 * and building the next batch meanwhile, and sends what depended on a batch
 * (submit acks, results, events) once the writer reports it durable. Under
 * load batches grow by themselves: while one commits, the next collects
 * everything that arrives.
 *
 * Batches complete in the order they were pushed. Ops own copies of all
 * their data, so nothing the loop frees later can pull the ground from
 * under the writer, and a batch that failed (rolled back whole) can be
 * pushed again as it is: every op but an insert writes the same row to the
 * same values however often it is applied (updates by id, attempts by
 * (job, attempt), queue settings by name, key states by hash, batch records
 * by (owner, name), schedules by (owner, name): a whole row, or its
 * deletion), and the expiry that may ride
 * along deletes whatever is due when it runs.
 */
#ifndef BROKER_WRITER_H
#define BROKER_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker_store.h"
#include "dv_arena.h"

typedef struct broker_op broker_op_t;

typedef struct broker_wbatch {
    struct broker_wbatch *next; /* the writer's queue */
    broker_op_t *ops;           /* in order */
    broker_op_t **tail;
    size_t nops;
    dv_arena_t arena; /* the ops' memory */
    bool expire;      /* also delete expired finished jobs */
    int64_t expire_now_ms;
    int64_t delay_ms; /* the writer waits this long before applying it */
    int rc;           /* set by the writer: 0 = durable; else the store's
                       * error, or the loop's own (a write that could not be
                       * recorded, set before the push) */
    int store_rc;     /* set by the writer: the store's own result, 0 =
                       * committed (even when rc says a write is missing) */
    int expired;      /* rows expired, when expire */
} broker_wbatch_t;

typedef struct broker_writer broker_writer_t;

/* Starts the writer thread on store, which it owns from now on (and closes
 * in destroy). Returns NULL if the thread cannot start (store not taken). */
broker_writer_t *broker_writer_new(broker_store_t *store);

/* Finishes every batch pushed so far, stops the thread, closes the store.
 * Completed batches not yet popped are freed. NULL-safe. */
void broker_writer_destroy(broker_writer_t **self_p);

/* A file descriptor that becomes readable when a batch completes (for
 * zmq_poll). */
int broker_writer_fd(const broker_writer_t *self);

/* Hands batch b to the writer; the caller must not touch it until it comes
 * back from pop_done(). */
void broker_writer_push(broker_writer_t *self, broker_wbatch_t *b);

/* Returns the oldest completed batch, or NULL. Does not block. */
broker_wbatch_t *broker_writer_pop_done(broker_writer_t *self);

/* Blocks until at least one batch has completed (shutdown). */
void broker_writer_wait(broker_writer_t *self);

/* Tests: the next n batches fail with store error rc (a dv_err_t) without
 * reaching the store, as a full disk would fail them. n = 0 ends it. */
void broker_writer_fail_next(broker_writer_t *self, int rc, int n);

/* ---- building a batch (loop thread) ------------------------------------- */

void broker_wbatch_init(broker_wbatch_t *b);

/* Frees the ops; the batch can be reused (keeping some of their memory for
 * the next ops). */
void broker_wbatch_clear(broker_wbatch_t *b);

/* Frees the ops and all their memory: the end of the batch. */
void broker_wbatch_free(broker_wbatch_t *b);

/* Each records one store call, copying everything it needs. They return 0,
 * or -1 on out of memory (the write is then missing: the caller treats the
 * batch as failed). */
int broker_wbatch_insert(broker_wbatch_t *b, const broker_jobrec_t *rec);
int broker_wbatch_running(broker_wbatch_t *b, const char *id, int attempt,
                          const char *worker, int64_t started_ms);
int broker_wbatch_waiting(broker_wbatch_t *b, const char *id, dv_state_t state,
                          int64_t run_at_ms, int attempt,
                          const dv_failure_t *last_failure);
/* worker and started_ms (NULL and 0 when unknown) fold the attempt's lease
 * into the same row write (broker_store_mark_done). */
int broker_wbatch_finished(broker_wbatch_t *b, const char *id, dv_state_t state,
                           int attempt, const char *worker, int64_t started_ms,
                           const void *result, size_t result_len,
                           const dv_failure_t *failure, int64_t finished_ms);
int broker_wbatch_attempt(broker_wbatch_t *b, const broker_attempt_t *a);
int broker_wbatch_queue(broker_wbatch_t *b, const broker_queue_settings_t *q);
/* An API key's fleet state (broker_store_set_key; strings copied). */
int broker_wbatch_key(broker_wbatch_t *b, const broker_key_state_t *k);
/* A write that changes no job (broker_store_probe): a batch with nothing
 * else to write tells with it whether the store can be written again. */
int broker_wbatch_probe(broker_wbatch_t *b);

/* A schedule's whole row (broker_store_set_schedule; copied), and the
 * deletion of one (broker_store_delete_schedule). */
int broker_wbatch_schedule(broker_wbatch_t *b, const broker_schedule_rec_t *r);
int broker_wbatch_schedule_delete(broker_wbatch_t *b, const char *owner,
                                  const char *name);
/* A batch record (broker_store_set_batch; everything copied), and its
 * removal (broker_store_del_batch). */
int broker_wbatch_batch(broker_wbatch_t *b, const broker_batchrec_t *r);
int broker_wbatch_batch_del(broker_wbatch_t *b, const char *owner,
                            const char *name);

/* Takes the inserts (new jobs) out of a batch that failed, keeping the
 * other ops in their order. Returns how many were taken out. */
size_t broker_wbatch_drop_inserts(broker_wbatch_t *b);

#endif
