/* broker_store - durable job storage behind one small interface.
 *
 * The broker keeps every live job in memory and writes each change through
 * this interface. Writes are grouped: the broker calls begin() once per loop
 * iteration, then any number of insert/update calls, then commit() — one
 * transaction (one fsync) for everything that arrived in that iteration, and
 * only after commit() returns 0 does it acknowledge submits to clients.
 *
 * Backends: "sqlite:PATH" (or a bare path) is the embedded default;
 * "postgres://..." or "postgresql://..." (a libpq URL) is PostgreSQL
 * (store_pg.c). The schema is the same plain SQL on both, which a person
 * can query (docs/operations.md).
 *
 * Errors: 0 on success; DV_ETRANSIENT when retrying the whole group at once
 * may succeed (busy, connection lost); DV_ENOSPC when the disk is full (the
 * broker keeps the group and writes it again once there is room); DV_EIO
 * otherwise. Write calls between
 * begin() and commit() may be buffered: a failure can surface only at
 * commit(), which then rolls the whole group back.
 *
 * None of these calls is thread-safe; the broker's loop thread owns the store.
 */
#ifndef BROKER_STORE_H
#define BROKER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_backoff.h"
#include "dv_proto.h"

typedef struct broker_store broker_store_t;

/* Durability of a commit. */
typedef enum {
    BROKER_SYNC_FULL = 0, /* synced to disk: survives a power cut (default) */
    BROKER_SYNC_NORMAL,   /* survives a process crash, not a power cut */
    BROKER_SYNC_OFF,      /* tests and benchmarks only */
} broker_sync_t;

typedef struct {
    broker_sync_t sync;
} broker_store_opts_t;

/* A job another one waits for (table deps): any: it must only end
 * ("after_any"), else succeed ("after"). */
typedef struct {
    char id[37];
    bool any;
} broker_dep_t;

/* One job as stored. Strings are NUL-terminated; NULL = absent. On insert
 * the caller owns every pointer; in replay() callbacks they are valid only
 * during the call. */
typedef struct {
    const char *id; /* 36-char UUIDv7 */
    const char *queue;
    const char *type;
    const char *key; /* idempotency key */
    const char *batch;
    const char *trace;
    const void *payload; /* one msgpack value */
    size_t payload_len;
    dv_state_t state;   /* queued, scheduled, running, or terminal */
    int priority;       /* 0..9 */
    int64_t created_ms; /* when accepted */
    int64_t run_at_ms;  /* when it may run (scheduled) */
    int attempt;        /* attempts started so far */
    int max_attempts;
    int64_t timeout_ms; /* per attempt; 0 = worker default */
    dv_backoff_t backoff;
    int64_t result_ttl_ms; /* how long a finished job is kept */
    const char *worker;    /* running on (state running) */
    const char *owner;     /* certificate name of the submitter, or NULL */
    const char *schedule;  /* the schedule that fired it, or NULL */
    /* On insert: the jobs it waits for (state waiting), stored with it as
     * rows of table deps; replay and load leave them NULL. */
    const broker_dep_t *deps;
    uint32_t ndeps;
} broker_jobrec_t;

/* A finished attempt, for the attempts history table. */
typedef struct {
    const char *job_id;
    int attempt;
    const char *worker;
    int64_t started_ms;
    int64_t finished_ms;
    dv_state_t outcome;          /* succeeded or failed */
    const dv_failure_t *failure; /* NULL when succeeded */
} broker_attempt_t;

/* A finished (or any) job as looked up by id: what WAIT and `drover job`
 * need. Strings valid only during the callback. */
typedef struct {
    const char *id;
    const char *queue;
    const char *type;
    dv_state_t state;
    int attempt;
    const void *result; /* msgpack, when succeeded */
    size_t result_len;
    const char *category; /* last failure, or NULL */
    const char *error;    /* last failure message, or NULL */
    int64_t finished_ms;
    const char *owner; /* certificate name of the submitter, or NULL */
} broker_jobview_t;

/* One stored attempt as read back by attempts(): every column of the
 * attempts table. Strings are NUL-terminated, NULL when absent, valid only
 * during the callback. */
typedef struct {
    int attempt;
    const char *worker;
    int64_t started_ms;  /* epoch ms; 0 = unknown */
    int64_t finished_ms; /* epoch ms; 0 = unknown */
    const char *outcome; /* as stored: "failed", "succeeded" */
    const char *category;
    const char *message;
    bool retryable;
    int64_t retry_after_ms; /* 0 = none */
    int exit_code;          /* -1 = none */
    int signal;             /* 0 = none */
    int http_status;        /* 0 = none */
    const char *key_id;
    const char *details; /* what the handler said beyond the message */
    const char *stderr_tail;
} broker_attempt_row_t;

/* Opens (creating the schema if needed) the store named by url. Returns NULL
 * with a reason in err on failure. Caller owns the result. */
broker_store_t *broker_store_open(const char *url,
                                  const broker_store_opts_t *opts, char *err,
                                  size_t err_size);

/* Writes url into out (size bytes, always NUL-terminated, cut if it does
 * not fit) with its password masked as "***", wherever a URL can carry
 * one (scheme://user:PASSWORD@host, a password= parameter): the form for
 * log lines and error texts. A URL without a password is copied as is.
 * Returns out. Errors from broker_store_open() are already masked. */
char *broker_store_redact_url(const char *url, char *out, size_t size);

/* Whether several brokers may share the store at url (PostgreSQL), and so
 * form a group with one active broker (broker_ha.h). */
bool broker_store_is_shared(const char *url);

/* Closes the store; NULL-safe; sets *self_p to NULL. Uncommitted writes are
 * rolled back. */
void broker_store_destroy(broker_store_t **self_p);

/* Backend name ("sqlite", "postgres"). */
const char *broker_store_backend(const broker_store_t *self);

/* Starts a write group. Nested begin() without commit() is a bug. */
int broker_store_begin(broker_store_t *self);

/* Makes every write since begin() durable, as one transaction. */
int broker_store_commit(broker_store_t *self);

/* Discards every write since begin(). */
int broker_store_rollback(broker_store_t *self);

/* True between begin() and commit()/rollback(). */
bool broker_store_in_group(const broker_store_t *self);

/* Reads between read_begin() and read_end() see one snapshot of the store
 * and pay for it once (SQLite: one read transaction, not one a query; on
 * PostgreSQL each query reads on its own, as without them). For a reader
 * that looks up many jobs at once; not inside a write group. A failed
 * read_begin() leaves each read to take its own, as without it. */
void broker_store_read_begin(broker_store_t *self);
void broker_store_read_end(broker_store_t *self);

/* Adds a new job (state queued or scheduled). A duplicate idempotency key is
 * the caller's job to prevent (find_key); the store's unique index makes the
 * commit fail if it is not. */
int broker_store_insert(broker_store_t *self, const broker_jobrec_t *rec);

/* The job was leased: state running, attempt number, worker, start time. */
int broker_store_mark_running(broker_store_t *self, const char *id, int attempt,
                              const char *worker, int64_t started_ms);

/* The job goes back to waiting (retry after a failure, a lost worker, a
 * returned or recovered job): state queued or scheduled, run_at, attempt
 * count as it now stands, and the last failure (NULL keeps the old one). */
int broker_store_mark_waiting(broker_store_t *self, const char *id,
                              dv_state_t state, int64_t run_at_ms, int attempt,
                              const dv_failure_t *last_failure);

/* The job ended: state succeeded, dead or cancelled; result (succeeded) or
 * last failure; it is deleted after finished_ms + its result_ttl. */
int broker_store_mark_finished(broker_store_t *self, const char *id,
                               dv_state_t state, int attempt,
                               const void *result, size_t result_len,
                               const dv_failure_t *failure,
                               int64_t finished_ms);

/* mark_finished that also records who ran the attempt and when it started
 * (worker NULL and started_ms 0 keep what the row has): a job that was
 * leased and ended within one write group gets one row write instead of
 * mark_running followed by mark_finished. */
int broker_store_mark_done(broker_store_t *self, const char *id,
                           dv_state_t state, int attempt, const char *worker,
                           int64_t started_ms, const void *result,
                           size_t result_len, const dv_failure_t *failure,
                           int64_t finished_ms);

/* Records one finished attempt in the history. */
int broker_store_add_attempt(broker_store_t *self, const broker_attempt_t *a);

/* Calls cb for every job not yet finished (queued, scheduled, running), in
 * id order. Used at start-up to rebuild memory. Returns 0 or an error; a
 * non-zero return from cb stops the scan and is returned. Must be called
 * outside a write group. */
int broker_store_replay(broker_store_t *self,
                        int (*cb)(void *arg, const broker_jobrec_t *rec),
                        void *arg);

/* Looks up the job holding an idempotency key among owner's jobs (NULL: the
 * jobs without an owner), finished jobs included until they expire. Returns 1 and fills id_out (37 bytes), 0 if none, or an error.
 * Sees writes of the current group. */
int broker_store_find_key(broker_store_t *self, const char *owner,
                          const char *key, char id_out[37]);

/* Looks up one job by id. Returns 1 after calling cb, 0 if there is no such
 * job, or an error. Sees writes of the current group. */
int broker_store_get(broker_store_t *self, const char *id,
                     void (*cb)(void *arg, const broker_jobview_t *view),
                     void *arg);

/* Calls cb for the last (highest) limit stored attempts of job id, in
 * attempt order. Returns how many, or an error (or cb's non-zero return,
 * which stops the scan). A job without attempts, or no such job, is 0. */
int broker_store_attempts(broker_store_t *self, const char *id, int limit,
                          int (*cb)(void *arg, const broker_attempt_row_t *a),
                          void *arg);

/* Deletes up to limit finished jobs (and their attempts) whose result_ttl
 * has passed at now_ms. Returns the number deleted, or an error. Call outside
 * a write group (it makes its own). */
int broker_store_expire(broker_store_t *self, int64_t now_ms, int limit);

/* Calls cb with the full record of one job, finished or not (retry needs
 * everything to rebuild it). Returns 1 after calling cb, 0 if there is no
 * such job, or an error (or cb's non-zero return). */
int broker_store_load(broker_store_t *self, const char *id,
                      int (*cb)(void *arg, const broker_jobrec_t *rec),
                      void *arg);

/* Calls cb with the id of up to limit finished jobs of queue in state (dead
 * or cancelled), oldest first. Returns how many, or an error. */
int broker_store_list(broker_store_t *self, const char *queue, dv_state_t state,
                      int limit, int (*cb)(void *arg, const char *id),
                      void *arg);

/* A finished job as listed by finished(). Strings valid only during the
 * callback; NULL when absent. */
typedef struct {
    const char *id;
    const char *queue;
    const char *type;
    const char *batch;
    dv_state_t state; /* succeeded, dead or cancelled */
    int attempt;      /* attempts made */
    const char *worker;
    int64_t started_ms; /* the last attempt's start; 0 = unknown */
    int64_t finished_ms;
    const char *category; /* last failure, or NULL */
    const char *error;    /* last failure message, or NULL */
} broker_finished_t;

/* Calls cb for up to limit jobs that finished at since_ms..until_ms (epoch
 * ms, both included) and are still stored, in (finished_ms, id) order;
 * with after_id, the jobs that finished at since_ms with an id up to
 * after_id are left out (they were the page before). Returns how many, or
 * an error (or cb's non-zero return, which stops the scan). An index on
 * jobs(finished_at, id) serves it. */
int broker_store_finished(broker_store_t *self, int64_t since_ms,
                          int64_t until_ms, const char *after_id, int limit,
                          int (*cb)(void *arg, const broker_finished_t *f),
                          void *arg);

/* An operator's settings for one queue. */
typedef struct {
    const char *name;
    bool paused;
    double rate;     /* jobs started per second, fleet-wide; 0 = any */
    int max_running; /* jobs running at once, fleet-wide; 0 = any */
} broker_queue_settings_t;

/* Stores a queue's settings (a write: inside a group). */
int broker_store_set_queue(broker_store_t *self,
                           const broker_queue_settings_t *q);

/* Calls cb for every stored queue setting. Returns 0 or an error. */
int broker_store_load_queues(broker_store_t *self,
                             int (*cb)(void *arg,
                                       const broker_queue_settings_t *q),
                             void *arg);

/* The fleet's state of one API key (broker_keys.h) that must survive a
 * restart or a takeover, by the key's short hash. Strings valid only
 * during a load_keys callback. */
typedef struct {
    const char *hash;      /* 8 hex digits of the key's SHA-256: its name */
    const char *id;        /* its display id ("key-2", "az-west") */
    int64_t cool_until_ms; /* epoch ms; 0 = not cooling */
    int disabled_status;   /* the 401/403 that disabled it; 0 = enabled */
    int64_t disabled_ms;   /* epoch ms it was disabled; 0 = enabled */
    int learned_limit;     /* requests per window learned from 429s; 0 =
                            * none learned */
    int64_t learned_ms;    /* epoch ms of the last change to learned_limit */
    bool proven;           /* answered 2xx or 429 at least once */
    int64_t updated_ms;    /* epoch ms of this write */
} broker_key_state_t;

/* Stores a key's state, replacing what was stored under its hash (a write:
 * inside a group). */
int broker_store_set_key(broker_store_t *self, const broker_key_state_t *k);

/* Calls cb for every stored key state. Returns 0 or an error (or cb's
 * non-zero return). Outside a write group. */
int broker_store_load_keys(broker_store_t *self,
                           int (*cb)(void *arg, const broker_key_state_t *k),
                           void *arg);

/* Counts one more start of a broker on this store and returns the new
 * count in *out (from 1): the generation lease tokens carry. Its own
 * transaction; call outside a write group. Returns 0 or an error. */
int broker_store_next_generation(broker_store_t *self, uint64_t *out);
/* A write that changes no job (a write group's worth of disk, nothing
 * more): whether the store can be written again. Inside a group. */
int broker_store_probe(broker_store_t *self);

/* Fences this connection with generation (from next_generation): every
 * later group first checks, inside its transaction, that the store's
 * generation is still this one, and fails whole with DV_EFENCED if
 * another broker has counted one since (a takeover). For stores that
 * several brokers share (PostgreSQL); a no-op where only one broker can
 * run (SQLite: the file's lock). Outside a group. Returns 0 or an error. */
int broker_store_fence(broker_store_t *self, uint64_t generation);

/* ---- schedules (periodic jobs, broker_schedule.c) ------------------------ */

/* One schedule as stored (table schedules, keyed by (owner, name)). Strings
 * NUL-terminated, NULL when absent; in a load callback valid only during
 * the call. */
typedef struct {
    const char *owner; /* certificate name of who added it; NULL: none */
    const char *name;
    const char *cron;  /* a cron expression, or NULL for an interval */
    int64_t every_ms;  /* the interval (--every); 0 for cron */
    const char *tz;    /* cron's time zone; NULL: UTC */
    int64_t anchor_ms; /* --every fires at anchor + k * every_ms */
    const char *queue;
    const char *type;
    const void *payload; /* one msgpack value, or NULL (nil) */
    size_t payload_len;
    int priority;
    int max_attempts;   /* 0: the broker's default */
    int64_t timeout_ms; /* 0: the worker's default */
    bool no_overlap;    /* skip a firing while the last job is live */
    bool catch_up_skip; /* missed firings: skip (else fire the last once) */
    bool paused;
    int64_t created_ms;
    int64_t next_ms;      /* the next firing's nominal time; 0: none */
    int64_t last_fire_ms; /* the last firing's nominal time; 0: none */
    const char *last_job; /* the last firing's job id, or NULL */
    int64_t firings;      /* jobs submitted (or found submitted) */
    int64_t skipped;      /* firings skipped (--no-overlap) */
    int64_t last_lag_ms;  /* the last firing's submit time - nominal */
} broker_schedule_rec_t;

/* Stores a schedule, replacing the row of the same (owner, name) (a write:
 * inside a group; the same values however often it is applied). */
int broker_store_set_schedule(broker_store_t *self,
                              const broker_schedule_rec_t *s);

/* Deletes the schedule (owner, name), if stored (a write: inside a group). */
int broker_store_delete_schedule(broker_store_t *self, const char *owner,
                                 const char *name);

/* Calls cb for every stored schedule. Returns 0 or an error (or cb's
 * non-zero return). Outside a write group. */
int broker_store_load_schedules(broker_store_t *self,
                                int (*cb)(void *arg,
                                          const broker_schedule_rec_t *s),
                                void *arg);
/* ---- batches (broker_batch.c, docs/batches.md) ---------------------------
 * A batch record: a named group of one owner's jobs with callbacks, in
 * table batches keyed by (owner, name) ("" for no owner). Its jobs are the
 * jobs of that owner whose batch column is the name. */
typedef struct {
    const char *owner; /* "" for none */
    const char *name;
    const char *state; /* "open", "closed", "called", "done" */
    const char *on_complete, *on_success, *on_failure; /* types, or NULL */
    const char *queue;   /* the callbacks' queue */
    const void *payload; /* msgpack map merged into theirs, or NULL */
    size_t payload_len;
    const char *complete_id, *success_id, *failure_id; /* or NULL */
    int64_t created_ms, closed_ms, done_ms;            /* 0: not yet */
    /* Its jobs are those with a greater id (made after the open); NULL:
     * every job of the name. */
    const char *since_id;
} broker_batchrec_t;

/* Jobs of a batch by state (live and finished, as stored). */
typedef struct {
    int64_t queued, scheduled, running, succeeded, dead, cancelled;
} broker_batch_counts_t;

/* Stores a batch record, replacing the one of (owner, name) (a write:
 * inside a group; the same values however often applied). */
int broker_store_set_batch(broker_store_t *self, const broker_batchrec_t *b);

/* Deletes the record of (owner, name) (a write: inside a group). */
int broker_store_del_batch(broker_store_t *self, const char *owner,
                           const char *name);

/* Calls cb for every batch record. Returns 0 or an error (or cb's non-zero
 * return). */
int broker_store_load_batches(broker_store_t *self,
                              int (*cb)(void *arg, const broker_batchrec_t *b),
                              void *arg);

/* Counts the stored jobs of batch by state; owner NULL: of any owner, ""
 * the jobs without one; since_id (or NULL): only the jobs with a greater
 * id. Returns 0 or an error. */
int broker_store_batch_counts(broker_store_t *self, const char *owner,
                              const char *batch, const char *since_id,
                              broker_batch_counts_t *out);

/* Calls cb for up to limit stored jobs of batch (owner as in
 * batch_counts) with an id after after_id (NULL: from the first), in id
 * order; the view's queue is NULL. An index on jobs(batch, id) serves it.
 * Returns how many, or an error (or cb's non-zero return). */
int broker_store_batch_jobs(broker_store_t *self, const char *owner,
                            const char *batch, const char *after_id, int limit,
                            int (*cb)(void *arg, const broker_jobview_t *v),
                            void *arg);

/* ---- job dependencies (broker_deps.c, docs/dependencies-between-jobs.md)
 * Table deps (job_id, after_id, any): made at every start; its rows are
 * inserted with their job (broker_jobrec_t.deps) and deleted when it
 * expires. */

/* Calls cb for every dependency of every job in state waiting, with the
 * state its job has in the store (DV_STATE_NONE: no such job any more).
 * Start-up (outside a group). Returns 0 or an error (or cb's non-zero
 * return). */
int broker_store_deps_replay(broker_store_t *self,
                             int (*cb)(void *arg, const char *job_id,
                                       const char *after_id, bool any,
                                       dv_state_t after_state),
                             void *arg);

/* Calls cb for up to limit jobs that job id waits for (waited_by false)
 * or that wait for it (true), in id order, with their stored states
 * (DV_STATE_NONE: not stored any more). Returns how many, or an error. */
int broker_store_deps_of(broker_store_t *self, const char *id, bool waited_by,
                         int limit,
                         int (*cb)(void *arg, const char *id, bool any,
                                   dv_state_t state),
                         void *arg);

/* ---- backend vtable (one per file: store_sqlite.c, store_pg.c) ---------- */

typedef struct {
    const char *name;
    void *(*open)(const char *url, const broker_store_opts_t *opts, char *err,
                  size_t err_size);
    void (*close)(void *be);
    int (*begin)(void *be);
    int (*commit)(void *be);
    int (*rollback)(void *be);
    void (*read_snapshot)(void *be, bool on); /* NULL: none */
    int (*insert)(void *be, const broker_jobrec_t *rec);
    int (*mark_running)(void *be, const char *id, int attempt,
                        const char *worker, int64_t started_ms);
    int (*mark_waiting)(void *be, const char *id, dv_state_t state,
                        int64_t run_at_ms, int attempt,
                        const dv_failure_t *last_failure);
    int (*mark_finished)(void *be, const char *id, dv_state_t state,
                         int attempt, const char *worker, int64_t started_ms,
                         const void *result, size_t result_len,
                         const dv_failure_t *failure, int64_t finished_ms);
    int (*add_attempt)(void *be, const broker_attempt_t *a);
    int (*replay)(void *be, int (*cb)(void *arg, const broker_jobrec_t *rec),
                  void *arg);
    int (*find_key)(void *be, const char *owner, const char *key,
                    char id_out[37]);
    int (*get)(void *be, const char *id,
               void (*cb)(void *arg, const broker_jobview_t *view), void *arg);
    int (*attempts)(void *be, const char *id, int limit,
                    int (*cb)(void *arg, const broker_attempt_row_t *a),
                    void *arg);
    int (*expire)(void *be, int64_t now_ms, int limit);
    int (*load)(void *be, const char *id,
                int (*cb)(void *arg, const broker_jobrec_t *rec), void *arg);
    int (*list)(void *be, const char *queue, dv_state_t state, int limit,
                int (*cb)(void *arg, const char *id), void *arg);
    int (*finished)(void *be, int64_t since_ms, int64_t until_ms,
                    const char *after_id, int limit,
                    int (*cb)(void *arg, const broker_finished_t *f),
                    void *arg);
    int (*set_queue)(void *be, const broker_queue_settings_t *q);
    int (*load_queues)(void *be,
                       int (*cb)(void *arg, const broker_queue_settings_t *q),
                       void *arg);
    int (*next_generation)(void *be, uint64_t *out);
    int (*probe)(void *be);
    int (*set_key)(void *be, const broker_key_state_t *k);
    int (*load_keys)(void *be,
                     int (*cb)(void *arg, const broker_key_state_t *k),
                     void *arg);
    int (*fence)(void *be, uint64_t generation); /* NULL: nothing to fence */
    /* schedules */
    int (*set_schedule)(void *be, const broker_schedule_rec_t *s);
    int (*delete_schedule)(void *be, const char *owner, const char *name);
    int (*load_schedules)(void *be,
                          int (*cb)(void *arg, const broker_schedule_rec_t *s),
                          void *arg);
    /* batches */
    int (*set_batch)(void *be, const broker_batchrec_t *b);
    int (*del_batch)(void *be, const char *owner, const char *name);
    int (*load_batches)(void *be,
                        int (*cb)(void *arg, const broker_batchrec_t *b),
                        void *arg);
    int (*batch_counts)(void *be, const char *owner, const char *batch,
                        const char *since_id, broker_batch_counts_t *out);
    int (*batch_jobs)(void *be, const char *owner, const char *batch,
                      const char *after_id, int limit,
                      int (*cb)(void *arg, const broker_jobview_t *v),
                      void *arg);
    /* job dependencies */
    int (*deps_replay)(void *be,
                       int (*cb)(void *arg, const char *job_id,
                                 const char *after_id, bool any,
                                 dv_state_t after_state),
                       void *arg);
    int (*deps_of)(void *be, const char *id, bool waited_by, int limit,
                   int (*cb)(void *arg, const char *id, bool any,
                             dv_state_t state),
                   void *arg);
} broker_store_ops_t;

extern const broker_store_ops_t broker_store_sqlite_ops;
extern const broker_store_ops_t broker_store_pg_ops;

#endif
