/* broker_core - the broker's state and its one event loop.
 *
 * One thread owns everything. Each pass of the loop:
 *   1. waits on the three sockets (or a timer),
 *   2. opens a store write group and drains a bounded batch from each socket,
 *   3. runs due timers (scheduled jobs become ready, silent workers expire),
 *   4. dispatches ready jobs against worker credit,
 *   5. sends jobs to workers at once, and hands the pass's store writes to
 *      the writer thread (broker_writer.h), which commits them as one
 *      transaction (one fsync) while the loop goes on;
 *   6. when the writer reports a group durable, sends what depended on it:
 *      submit acks, results to waiting clients, events.
 * So nothing is acknowledged before it is durable, the cost of a commit is
 * shared by everything that arrived while the previous one was running
 * (group commit), and the loop never waits for the disk.
 */
#ifndef BROKER_CORE_H
#define BROKER_CORE_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker_jobs.h"
#include "broker_store.h"
#include "broker_writer.h"
#include "dv_hist.h"
#include "dv_proto.h"

typedef struct {
    const char *clients_ep;     /* bind for producers / CLI */
    const char *workers_ep;     /* bind for worker supervisors */
    const char *events_ep;      /* bind for PUB */
    const char *store_url;
    broker_sync_t sync;
    int64_t heartbeat_ms;       /* heartbeat period, both ways */
    int64_t worker_timeout_ms;  /* silence before a worker expires */
    int default_max_attempts;
    int64_t default_result_ttl_ms;
    dv_backoff_t default_backoff;
    int batch_max;              /* messages drained per socket per pass */
    /* Per-queue limits given at start ("QUEUE=VALUE"); they override the
     * stored settings and are stored in turn. */
    const char *queue_rates[32];
    int nqueue_rates;
    const char *queue_max_running[32];
    int nqueue_max_running;
} broker_config_t;

/* A ROUTER routing id, copied out of its frame. */
typedef struct {
    uint8_t len;
    uint8_t data[255];
} broker_rid_t;

struct broker_worker {
    broker_rid_t rid;
    char *name;                 /* routing id as text (the worker's name) */
    char *host;
    int pid;
    int concurrency;
    broker_queue_t **queues;    /* queues it serves */
    int nqueues;
    int rr;                     /* next queue to take from (round-robin) */
    int credit;                 /* jobs it can take now */
    broker_list_t running;      /* jobs leased to it */
    int64_t last_seen_ms;       /* monotonic, last message from it */
    int64_t processed, failed;  /* from its heartbeats */
    int busy, idle;
    broker_job_t **out;         /* jobs dispatched to it this pass */
    uint32_t out_count, out_cap;
    bool known;                 /* sent hello (not just a stray message) */
    bool draining;              /* told to drain: gets no more jobs */
};

/* Per-pass pending output to one client: acks of one submit message. */
typedef struct broker_ack_batch {
    struct broker_ack_batch *next;
    broker_rid_t rid;
    uint64_t req;
    uint32_t n;
    dv_submit_ack_t *acks;      /* ids point into ids[] */
    char (*ids)[DV_ID_TEXT_LEN + 1];
    char **errors;              /* owned reasons, or NULL */
    broker_job_t **jobs;        /* the new jobs (NULL for refused/duplicate) */
} broker_ack_batch_t;

/* A job that ended; it stays findable by id (state terminal) until its
 * group is durable and its result went out, then it is freed. */
typedef struct broker_ended {
    struct broker_ended *next;
    broker_job_t *job;
    dv_state_t state;
    void *result;               /* owned copy */
    size_t result_len;
    bool has_failure;
    dv_failure_t failure;       /* strings point into msg (owned copy) */
    char *msg;
    int64_t finished_ms;
} broker_ended_t;

/* Everything one group of store writes carries: the writes, and the output
 * that may leave only once they are durable. */
typedef struct broker_group {
    broker_wbatch_t wb;         /* first member: the writer hands it back */
    broker_ack_batch_t *acks, **acks_tail;
    broker_ended_t *ended, **ended_tail;
    struct broker_send *sends;  /* replies and events, in order */
    size_t nsends, sends_cap;
    msgpack_sbuffer outbuf;     /* their encoded bytes */
    zhashx_t *results_out;      /* client rid hex -> pending results */
    zlistx_t *keys;             /* idempotency keys inserted in this group */
} broker_group_t;

typedef struct {
    uint64_t submitted, succeeded, failed, retried, dead, cancelled, lost;
    uint64_t dispatched;
} broker_counters_t;

typedef struct broker broker_t;

struct broker {
    broker_config_t cfg;
    char instance[DV_ID_TEXT_LEN + 1]; /* new at each start */
    int64_t started_ms;
    broker_store_t *store;      /* reads (the writer thread has its own) */
    broker_writer_t *writer;
    broker_group_t *cur;        /* being built by this pass */
    broker_group_t *inflight;   /* with the writer, or NULL */
    zhashx_t *pending_keys;     /* key -> id of inserts not yet durable */
    void *zctx;
    void *clients, *workers, *events;

    broker_index_t index;       /* live jobs by id */
    broker_heap_t timers;       /* scheduled jobs by run_at */
    zhashx_t *queues;           /* name -> broker_queue_t* */
    zhashx_t *types;            /* interned type and batch names */
    zhashx_t *worker_by_name;   /* name -> broker_worker_t* */

    broker_worker_t **outq;     /* workers with jobs to send this pass */
    size_t noutq, outq_cap;
    bool dispatch_needed;
    int64_t next_token_us;      /* monotonic: a rate-limited queue may go on */
    int64_t next_expire_ms;     /* monotonic: next purge of old results */
    dv_hist_t dispatch_us;      /* ready -> started report, microseconds */

    uint64_t event_seq;
    int64_t next_heartbeat_ms;  /* monotonic */
    broker_counters_t counters;
    bool store_failed;          /* last commit failed */
    volatile int *stop;
};

/* Creates the broker: opens the store, recovers unfinished jobs, binds the
 * sockets. Returns NULL after logging the reason. */
broker_t *broker_new(const broker_config_t *cfg);
void broker_destroy(broker_t **self_p);

/* Runs passes until *stop becomes non-zero. When *dump is set (SIGUSR1) it
 * writes a state dump and clears it; the loop wakes at least once per
 * heartbeat, so that takes at most one heartbeat. Returns 0. */
int broker_run(broker_t *self, volatile int *stop, volatile int *dump);

/* Writes queues, workers and counters to the log (SIGUSR1). */
void broker_dump(broker_t *self);

#endif
