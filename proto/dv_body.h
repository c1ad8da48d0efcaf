/* dv_body - typed bodies: the msgpack maps that travel inside a message's
 * bin field (a status reply's body, a heartbeat's metrics, a worker
 * event's body), with their structs and codecs. Each is described by a
 * schema table like the messages (proto/dv_body.c), so the encoder writes
 * exactly the bytes the components used to pack by hand, and the decoder
 * is as strict as the message decoder: types, bounds and lengths checked,
 * unknown keys ignored, sizes checked before anything is allocated, never
 * aborts.
 *
 * Common contract of the functions below:
 *   dv_X_encode(x, out): appends the body (one msgpack map) to out.
 *       DV_OK, or DV_ENOMEM. Absent strings (ptr NULL) are written as nil
 *       where the key is always present (marked "nil" below).
 *   dv_X_decode(data, size, x, why, why_size): decodes one body. String
 *       views point into data, which must outlive x. Arrays are allocated
 *       and freed by dv_X_release(x) (safe on a zeroed or failed x). On
 *       error returns DV_ETRUNC, DV_EPROTO, DV_ETOOBIG or DV_ENOMEM with a
 *       reason such as "status: workers[2].pid: must be 0..2147483647", and
 *       x is zeroed.
 *   dv_X_equal(a, b, diff, diff_size): field by field, like dv_msg_equal().
 * No I/O; any thread. */
#ifndef DV_BODY_H
#define DV_BODY_H

#include "dv_proto.h"

/* ---- status: the body of the reply to ctrl "status" ---------------------- */

typedef struct {
    dv_str_t name;       /* ["name"] nil */
    double rate;         /* ["rate"] jobs/s limit, 0 = none */
    int64_t max_running; /* ["max_running"] 0 = none */
    int64_t queued;      /* ["queued"] */
    int64_t scheduled;   /* ["scheduled"] */
    int64_t running;     /* ["running"] */
    bool paused;         /* ["paused"] */
    int64_t oldest_ms;   /* ["oldest_ms"] how long the oldest queued (ready)
                          * job has waited, in ms; absent while none waits
                          * (and from an older broker): 0 */
    int64_t waiting;     /* ["waiting"] waiting for other jobs; absent
                          * while none does (and from an older broker): 0 */
} dv_status_queue_t;

typedef struct {
    dv_str_t name;       /* ["name"] nil */
    bool draining;       /* ["draining"] */
    dv_str_t host;       /* ["host"] nil */
    int64_t pid;         /* ["pid"] */
    int64_t concurrency; /* ["concurrency"] */
    int64_t credit;      /* ["credit"] */
    int64_t running;     /* ["running"] jobs leased to it */
    int64_t processed;   /* ["processed"] */
    int64_t failed;      /* ["failed"] */
    dv_str_t *queues;    /* ["queues"] names */
    uint32_t nqueues;
} dv_status_worker_t;

typedef struct {
    int64_t submitted, dispatched, succeeded, failed, retried, dead, cancelled,
        lost;                /* ["submitted"] ... ["lost"] since start */
    int64_t live_jobs;       /* ["live_jobs"] jobs in memory */
    int64_t dispatch_p50_us; /* ["dispatch_p50_us"] */
    int64_t dispatch_p99_us; /* ["dispatch_p99_us"] */
    /* Leases (absent from an older broker: 0). */
    int64_t stale;       /* ["stale"] reports refused: not under the current
                      * lease of their job */
    int64_t adopted;     /* ["adopted"] executions of an earlier start that a
                      * rejoining worker took back */
    int64_t revoked;     /* ["revoked"] held jobs rejoining workers were told
                      * to drop or stop */
    int64_t rejoining;   /* ["rejoining"] recovered jobs still waiting for
                        * the rejoin window to close */
    int64_t store_reads; /* ["store_reads"] reads handed to the reader thread
                          * since start (waits on ended jobs, ctrl job, ...) */
} dv_status_counters_t;

/* While the broker cannot write its store (a full disk): what failed, and
 * since when. */
typedef struct {
    dv_str_t error;   /* ["error"] the cause: "no space left on device" */
    int64_t since_ms; /* ["since_ms"] epoch ms it began */
    int64_t retries;  /* ["retries"] of the kept writes so far */
    int64_t refused;  /* ["refused"] jobs refused meanwhile */
    int64_t waiting;  /* ["waiting"] writes held in memory for the store */
} dv_status_store_t;

typedef struct {
    dv_str_t broker;           /* ["broker"] instance id, nil */
    dv_str_t store;            /* ["store"] store backend, nil */
    int64_t uptime_ms;         /* ["uptime_ms"] */
    dv_status_queue_t *queues; /* ["queues"] */
    uint32_t nqueues;
    dv_status_worker_t *workers; /* ["workers"] */
    uint32_t nworkers;
    dv_status_counters_t counters;   /* ["counters"] map */
    bool store_failing;              /* "store_failure" present: the store
                                    * cannot be written */
    dv_status_store_t store_failure; /* ["store_failure"] map, only then */
    dv_str_t role; /* ["role"] "standby" from a standby broker of a group
                    * (another one holds the store); absent: active */
    dv_str_t lock; /* ["lock"] a standby's view of the group's lock: why
                    * it does not hold it (absent on an active broker) */
    uint64_t seq;  /* ["seq"] sequence number of the last event published
                    * (absent before the first one, and from an older
                    * broker: 0) */
    /* Periodic jobs (absent when the broker has none): how many, and the
     * one that fires next, with its time (epoch ms). */
    int64_t schedules;        /* ["schedules"] */
    dv_str_t next_schedule;   /* ["next_schedule"] */
    int64_t next_schedule_ms; /* ["next_schedule_at"] */
    void *priv_;              /* decoder's allocations */
} dv_status_t;

int dv_status_encode(const dv_status_t *st, msgpack_sbuffer *out);
int dv_status_decode(const void *data, size_t size, dv_status_t *st, char *why,
                     size_t why_size);
void dv_status_release(dv_status_t *st);
bool dv_status_equal(const dv_status_t *a, const dv_status_t *b, char *diff,
                     size_t diff_size);

/* ---- hbmetrics: the body of a worker's heartbeat ------------------------- */

typedef struct {
    dv_str_t endpoint; /* ["endpoint"] host:port */
    dv_str_t state;    /* ["state"] closed, open, half_open */
    int64_t failures;  /* ["failures"] in a row */
    int64_t opened;    /* ["opened"] times it opened */
} dv_hb_breaker_t;

typedef struct {
    int64_t in_flight;         /* ["in_flight"] */
    int64_t waiting;           /* ["waiting"] */
    int64_t concurrency;       /* ["concurrency"] */
    dv_hb_breaker_t *breakers; /* ["breakers"] */
    uint32_t nbreakers;
} dv_hb_http_t;

typedef struct {
    dv_str_t type;  /* ["type"] job type */
    dv_str_t id;    /* ["id"] key-N, never the key */
    dv_str_t hash;  /* ["hash"] */
    dv_str_t state; /* ["state"] ok, cooling, disabled */
    int64_t requests, ok, rate_limited, errors; /* [same names] */
    int64_t cooldown_until_ms; /* ["cooldown_until_ms"] epoch ms, 0 = not */
    int64_t tokens;            /* ["tokens"] -1 without a limit */
    int64_t disabled_status;   /* ["disabled_status"] */
} dv_hb_key_t;

typedef struct {
    int64_t pid;    /* ["pid"] */
    int64_t rss_kb; /* ["rss_kb"] -1 if unknown */
    int64_t jobs;   /* ["jobs"] given to it since it started */
} dv_hb_child_t;

typedef struct {
    bool has_http;     /* "http" and "keys" present (http handlers) */
    dv_hb_http_t http; /* ["http"] map */
    dv_hb_key_t *keys; /* ["keys"] */
    uint32_t nkeys;
    dv_hb_child_t *per_child; /* ["per_child"] */
    uint32_t nper_child;
    int64_t held;     /* ["held"] jobs the worker holds */
    int64_t children; /* ["children"] alive */
    int64_t capacity; /* ["capacity"] the credit it works to */
    int64_t outbox;   /* ["outbox"] reports not yet sent */
    double load1;     /* ["load1"] */
    void *priv_;      /* decoder's allocations */
} dv_hbmetrics_t;

int dv_hbmetrics_encode(const dv_hbmetrics_t *m, msgpack_sbuffer *out);
int dv_hbmetrics_decode(const void *data, size_t size, dv_hbmetrics_t *m,
                        char *why, size_t why_size);
void dv_hbmetrics_release(dv_hbmetrics_t *m);
bool dv_hbmetrics_equal(const dv_hbmetrics_t *a, const dv_hbmetrics_t *b,
                        char *diff, size_t diff_size);

/* ---- workerinfo: the body of worker.joined / worker.heartbeat events ----- */

typedef struct {
    dv_str_t host;       /* ["host"] nil */
    int64_t pid;         /* ["pid"] */
    int64_t concurrency; /* ["concurrency"] */
    int64_t credit;      /* ["credit"] */
    int64_t running;     /* ["running"] jobs leased to it */
    int64_t busy;        /* ["busy"] from its last heartbeat */
    int64_t idle;        /* ["idle"] */
    int64_t processed;   /* ["processed"] */
    int64_t failed;      /* ["failed"] */
    dv_str_t *queues;    /* ["queues"] names */
    uint32_t nqueues;
    dv_str_t metrics; /* ["metrics"] the heartbeat's body as the worker
                              * sent it, embedded as is (a map, not a bin):
                              * read it with dv_hbmetrics_decode(). Written
                              * when ptr and len are set */
    void *priv_;      /* decoder's allocations */
} dv_workerinfo_t;

int dv_workerinfo_encode(const dv_workerinfo_t *w, msgpack_sbuffer *out);
int dv_workerinfo_decode(const void *data, size_t size, dv_workerinfo_t *w,
                         char *why, size_t why_size);
void dv_workerinfo_release(dv_workerinfo_t *w);
bool dv_workerinfo_equal(const dv_workerinfo_t *a, const dv_workerinfo_t *b,
                         char *diff, size_t diff_size);

/* ---- finished: the args and answer of ctrl "finished" --------------------- */

/* The page of finished jobs asked for: those that finished in
 * [since, until], in (finished, id) order, after the job after (when
 * set) of the page before. */
#define DV_FINISHED_LIMIT_MAX 1000

typedef struct {
    int64_t since_ms; /* ["since"] epoch ms, required */
    int64_t until_ms; /* ["until"] epoch ms, required, >= since */
    dv_str_t after;   /* ["after"] a job id: the last one of the page
                       * before, which finished at since_ms */
    int32_t limit;    /* ["limit"] 1..DV_FINISHED_LIMIT_MAX; absent: the
                       * most */
    void *priv_;
} dv_finished_args_t;

/* One finished job as the broker's store has it. */
typedef struct {
    dv_str_t id;            /* ["id"] required */
    dv_str_t queue;         /* ["queue"] required */
    dv_str_t type;          /* ["type"] required */
    dv_str_t batch;         /* ["batch"] */
    dv_state_t state;       /* ["state"] succeeded, dead or cancelled */
    int32_t attempt;        /* ["attempt"] attempts made */
    dv_str_t worker;        /* ["worker"] the last attempt's */
    int64_t finished_ms;    /* ["finished"] epoch ms, required */
    int64_t run_ms;         /* ["run"] the last attempt's; 0 = unknown */
    dv_category_t category; /* ["category"] the last failure's */
    dv_str_t message;       /* ["message"] the last failure's */
} dv_finished_job_t;

typedef struct {
    dv_finished_job_t *jobs; /* ["jobs"] in (finished, id) order */
    uint32_t njobs;
    bool more; /* ["more"] the page is full: ask for the next one */
    void *priv_;
} dv_finished_t;

int dv_finished_args_encode(const dv_finished_args_t *a, msgpack_sbuffer *out);
int dv_finished_args_decode(const void *data, size_t size,
                            dv_finished_args_t *a, char *why, size_t why_size);
void dv_finished_args_release(dv_finished_args_t *a);
bool dv_finished_args_equal(const dv_finished_args_t *a,
                            const dv_finished_args_t *b, char *diff,
                            size_t diff_size);

int dv_finished_encode(const dv_finished_t *f, msgpack_sbuffer *out);
int dv_finished_decode(const void *data, size_t size, dv_finished_t *f,
                       char *why, size_t why_size);
void dv_finished_release(dv_finished_t *f);
bool dv_finished_equal(const dv_finished_t *a, const dv_finished_t *b,
                       char *diff, size_t diff_size);

#endif
