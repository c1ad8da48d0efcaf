/* broker_jobs - the broker's in-memory picture of live jobs.
 *
 * Only jobs that have not ended live here (finished ones are in the store).
 * Each job is one allocation with its payload inline. It is findable by id
 * (open-addressing index), and is in exactly one of: a queue's priority FIFO
 * (ready), the timer heap (scheduled), or a worker's running list (leased).
 * Every operation is O(1) except heap operations, which are O(log n).
 */
#ifndef BROKER_JOBS_H
#define BROKER_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_id.h"
#include "dv_proto.h"

#define BROKER_PRIORITIES 10

typedef struct broker_queue broker_queue_t;
typedef struct broker_worker broker_worker_t;
typedef struct broker_job broker_job_t;

/* A client waiting for a job's outcome (its ROUTER routing id). */
typedef struct broker_waiter {
    struct broker_waiter *next;
    uint8_t len;
    uint8_t rid[]; /* len bytes */
} broker_waiter_t;

#define BROKER_JOB_JITTER  1u /* full jitter on retry delays */
#define BROKER_JOB_PENDING 2u /* inserted, insert not durable yet */
#define BROKER_JOB_STARTED 4u /* the current attempt's start was reported */
#define BROKER_JOB_LIMBO                                                       \
    8u /* recovered, held out of dispatch until the
                               * rejoin window ends (self->limbo) */

struct broker_job {
    dv_id_t id;                /* UUIDv7, binary */
    broker_job_t *next, *prev; /* links in a queue FIFO or a running list */
    broker_queue_t *queue;     /* owning queue */
    const char *type;          /* interned handler name */
    const char *batch;         /* interned batch name, or NULL */
    char *trace;               /* W3C traceparent, or NULL (owned) */
    broker_worker_t *worker;   /* leased to, while running */
    broker_waiter_t *waiters;  /* clients to tell when it ends (owned) */
    uint64_t lease; /* token of the current (or last) lease, dv_lease_make */
    /* One time whose meaning follows the state, since no state needs two:
     * scheduled: when it becomes ready; queued, and running until its start
     * is reported: when it became ready (for the wait time); running after
     * that (BROKER_JOB_STARTED): when it started. */
    union {
        int64_t run_at_ms;  /* epoch ms */
        int64_t ready_us;   /* monotonic microseconds */
        int64_t started_ms; /* epoch ms */
    };
    uint32_t heap_idx;   /* position in the timer heap, or UINT32_MAX */
    uint32_t timeout_ms; /* per attempt; 0 = worker default */
    uint32_t backoff_base_ms;
    uint32_t backoff_cap_ms;
    float backoff_factor;
    uint16_t attempt; /* attempts started so far */
    uint16_t max_attempts;
    /* priority and state share one byte so that owner fits in what was
     * padding before payload_len: the job stays 128 bytes. */
    uint8_t priority : 4; /* 0..9, higher first */
    uint8_t state : 4;    /* dv_state_t (fewer than 16) */
    uint8_t flags;        /* BROKER_JOB_* */
    /* Who submitted it, when the broker runs CurveZMQ: an index into the
     * broker's table of owner names (self->owners, interned like types),
     * 0 for none. */
    uint16_t owner;
    uint32_t payload_len;
    uint8_t payload[]; /* msgpack value, inline */
};

/* New job with room for the payload copied in; caller fills the rest.
 * Returns NULL on out of memory. */
broker_job_t *broker_job_new(const dv_id_t *id, const void *payload,
                             size_t payload_len);

/* Frees the job, its trace and waiters. NULL-safe; sets *job_p = NULL. The job
 * must not be in any container. */
void broker_job_destroy(broker_job_t **job_p);

/* ---- index by id --------------------------------------------------------- */

typedef struct {
    uintptr_t *slots; /* open addressing, linear probing; 0 = empty; a
                       * job's address with hash bits in its low bits:
                       * read them with broker_index_at() */
    size_t cap;       /* power of two */
    size_t count;
} broker_index_t;

int broker_index_init(broker_index_t *ix);
/* The job in slot i (0 <= i < cap), or NULL: for a walk over every job. */
broker_job_t *broker_index_at(const broker_index_t *ix, size_t i);
void broker_index_free(broker_index_t *ix);
/* Adds job (its id must not be present). Returns 0 or -1 (out of memory). */
int broker_index_put(broker_index_t *ix, broker_job_t *job);
broker_job_t *broker_index_get(const broker_index_t *ix, const dv_id_t *id);
/* Removes job if present. */
void broker_index_del(broker_index_t *ix, const broker_job_t *job);

/* ---- queues: one FIFO per priority ---------------------------------------- */

struct broker_queue {
    char *name;
    broker_job_t *head[BROKER_PRIORITIES];
    broker_job_t *tail[BROKER_PRIORITIES];
    uint16_t nonempty;    /* bit p set when head[p] != NULL */
    size_t ready;         /* jobs in the FIFOs */
    size_t scheduled;     /* jobs of this queue in the timer heap */
    size_t running;       /* jobs of this queue leased to workers */
    size_t waiting;       /* jobs waiting for other jobs (broker_deps.c) */
    bool paused;          /* no dispatch while set */
    uint32_t max_running; /* fleet-wide concurrency limit; 0 = none */
    double rate;          /* fleet-wide starts per second; 0 = none */
    double tokens;        /* token bucket for rate (burst: max(1, rate)) */
    int64_t tokens_us;    /* when tokens was last refilled (monotonic) */
};

broker_queue_t *broker_queue_new(const char *name);
void broker_queue_destroy(broker_queue_t **q_p);
/* Appends (or with front, prepends) job to its priority's FIFO. */
void broker_queue_push(broker_queue_t *q, broker_job_t *job, bool front);
/* Removes and returns the oldest job of the highest priority, or NULL. */
broker_job_t *broker_queue_pop(broker_queue_t *q);
/* Removes job from its FIFO (it must be in one of q's). */
void broker_queue_remove(broker_queue_t *q, broker_job_t *job);
/* The earliest ready_us of q's ready jobs: the least of its FIFOs' heads
 * (a FIFO is oldest first; a job put back at the front kept its ready
 * time). False when none is ready. */
bool broker_queue_oldest(const broker_queue_t *q, int64_t *ready_us);

/* ---- a doubly-linked list (a worker's running jobs) ----------------------- */

typedef struct {
    broker_job_t *head;
    size_t count;
} broker_list_t;

void broker_list_add(broker_list_t *l, broker_job_t *job);
void broker_list_remove(broker_list_t *l, broker_job_t *job);

/* ---- timer heap of scheduled jobs, by run_at ------------------------------ */

typedef struct {
    broker_job_t **items;
    uint32_t count;
    uint32_t cap;
} broker_heap_t;

void broker_heap_free(broker_heap_t *h);
int broker_heap_push(broker_heap_t *h, broker_job_t *job);
broker_job_t *broker_heap_peek(const broker_heap_t *h);
broker_job_t *broker_heap_pop(broker_heap_t *h);
void broker_heap_remove(broker_heap_t *h, broker_job_t *job);

#endif
