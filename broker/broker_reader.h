/* broker_reader - the store's reads on their own thread.
 *
 * The broker's loop never waits for a store read either. With a network
 * store (PostgreSQL) a read is a round trip, so a read the loop needs to
 * answer a request (an idempotency key for a submit, a finished job for a
 * wait or `drover job`, the jobs a retry puts back, the check's scan) goes
 * to the reader thread, which runs it on its own store connection and then
 * wakes the loop through an eventfd, as the writer does. The loop answers
 * the request when the read comes back; requests that need no read are
 * answered meanwhile, so a slow read delays only its own request.
 *
 * A read is a struct the caller embeds broker_read_t in (first member): the
 * reader runs r->run on its thread, with its store, then hands r back,
 * reads completing in the order they were pushed. run must touch nothing
 * but r and the store: whatever the answer needs later (routing id,
 * request number, the sender's role and name for the ownership checks) is
 * copied into r when it is pushed, and whatever the store returns is
 * copied out of its callbacks into r.
 *
 * The queue is bounded: a push beyond BROKER_READS_MAX reads outstanding
 * is refused (the caller answers "busy" rather than wait). Once stopping,
 * reads not yet run come back with r->stopped set, and pushes are refused.
 */
#ifndef BROKER_READER_H
#define BROKER_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker_store.h"

/* Reads pushed and not yet popped back, at most. */
#define BROKER_READS_MAX 4096

typedef struct broker_read broker_read_t;

struct broker_read {
    broker_read_t *next; /* the reader's queues */
    /* Reader thread: does the read on store, keeps what it found in r.
     * Returns 0 or a store error (kept in rc). */
    int (*run)(broker_store_t *store, broker_read_t *r);
    /* Loop thread: answers the request once the read is back (or
     * stopped); frees r. owner is what the loop passed to ready(). */
    void (*done)(void *owner, broker_read_t *r);
    /* Frees r without answering (a read left over at destroy). */
    void (*free)(broker_read_t *r);
    int rc;       /* set by the reader: run's return */
    bool stopped; /* set by the reader: not run, the reader stopped */
};

/* broker_reader_push's refusals. */
enum {
    BROKER_READER_FULL = -1,    /* BROKER_READS_MAX outstanding */
    BROKER_READER_STOPPED = -2, /* stopping: no more reads */
};

typedef struct broker_reader broker_reader_t;

/* Starts the reader thread on store, which it owns from now on (and
 * closes in destroy). Returns NULL if the thread cannot start (store not
 * taken). */
broker_reader_t *broker_reader_new(broker_store_t *store);

/* Stops the thread (after the read it is running), hands every read not
 * yet run back with stopped set, and closes the store. Pop them all with
 * pop_done afterwards; the loop answers them. Idempotent. */
void broker_reader_stop(broker_reader_t *self);

/* Stops if need be, frees the reads still unpopped (with their free) and
 * the reader. NULL-safe. */
void broker_reader_destroy(broker_reader_t **self_p);

/* A file descriptor that becomes readable when a read completes (for
 * zmq_poll). */
int broker_reader_fd(const broker_reader_t *self);

/* Hands r to the reader; the caller must not touch it until it comes back
 * from pop_done(). Returns 0, or BROKER_READER_FULL / _STOPPED (then the
 * caller still owns r). With bounded false the bound does not apply (the
 * next step of a read already admitted). */
int broker_reader_push(broker_reader_t *self, broker_read_t *r, bool bounded);

/* Returns the oldest completed read, or NULL. Does not block. */
broker_read_t *broker_reader_pop_done(broker_reader_t *self);

/* Reads pushed and not yet popped. */
size_t broker_reader_outstanding(broker_reader_t *self);

/* Blocks until a read has completed (tests, shutdown). Returns at once if
 * one is waiting to be popped; false if there is none outstanding. */
bool broker_reader_wait(broker_reader_t *self);

/* Tests: while held, the reader starts no read (a store that is slow to
 * answer); reads wait in the queue. */
void broker_reader_hold(broker_reader_t *self, bool hold);

#endif
