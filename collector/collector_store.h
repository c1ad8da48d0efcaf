/* collector_store - the collector's own history: a SQLite file, or tables
 * in a PostgreSQL database, that a person can query with the sqlite3 shell
 * or psql (docs/collector.md has the schema and example queries).
 *
 * The collector builds this history from the events alone; it never reads
 * a broker's store. Tables (in PostgreSQL, in the schema "collector", so
 * that they never meet a broker's tables in a shared database):
 *
 *   jobs      one row per job seen: queue, type, batch, state, attempts,
 *             times, last worker, wait and run time, last failure
 *   attempts  one row per attempt: worker, times, outcome, failure
 *             details, last progress seen
 *   events    the job, queue and worker events as they came (heartbeats
 *             and progress are state, not history, and are left out)
 *   brokers   per broker endpoint: instance id and last sequence number,
 *             so a restarted collector knows what it missed
 *
 * Writes are grouped: the first write opens a transaction,
 * collector_store_commit() ends it; the loop commits once a second, so
 * one commit covers everything the passes of that second received. A SQLite file runs in WAL mode with synchronous=NORMAL: a
 * commit survives a crash of the collector (not a power cut); losing the
 * last pass of history to a power cut is acceptable for a monitor. On
 * PostgreSQL a group goes out in libpq's pipeline mode and the commit is
 * one round trip (a very large pass takes one more per 1,000 statements);
 * durability is the server's.
 *
 * Not thread-safe: the collector's loop thread owns it. Every call is
 * synchronous: local disk for SQLite, a round trip to the server for
 * PostgreSQL (a lost connection is opened again at the next call, once).
 */
#ifndef COLLECTOR_STORE_H
#define COLLECTOR_STORE_H

#include <jansson.h>
#include <stdint.h>

#include "dv_body.h"
#include "dv_proto.h"

typedef struct collector_store_t collector_store_t;

/* Opens the store that url names, creating its schema if needed:
 * "sqlite:PATH", "sqlite://PATH" or a bare path is a SQLite file;
 * "postgres://..." or "postgresql://..." a PostgreSQL database (any URL
 * libpq takes); another "scheme://" is refused. Returns NULL after logging
 * why (collector.store_open_failed; never a password). The caller owns the
 * store and closes it with collector_store_close(). */
collector_store_t *collector_store_open(const char *url);

/* Commits what is pending, finalizes every statement, closes the file or
 * the connection and sets *self_p to NULL. NULL-safe. */
void collector_store_close(collector_store_t **self_p);

/* The path or URL the store was opened with, a URL's password masked
 * ("***"): safe for status answers and logs. */
const char *collector_store_path(const collector_store_t *self);

/* The backend's name: "sqlite" or "postgres". */
const char *collector_store_backend(const collector_store_t *self);

/* Records one event from the broker called broker (its endpoint, as
 * configured) into the open group (opening one if needed). run_ms is the
 * attempt's run time as the caller worked it out (the event's own, or the
 * time since the attempt started), 0 if unknown. Events of kinds that carry
 * no history (worker.heartbeat, job.progress) update state tables only.
 * Returns 0, or -1 when the write failed (logged once per group; the group
 * is then rolled back at commit). On PostgreSQL a write is queued, not
 * waited for: a failure the server reports shows at commit. */
int collector_store_event(collector_store_t *self, const char *broker,
                          const dv_event_t *ev, int64_t run_ms);

/* A job.started and the end of the same attempt (job.succeeded or
 * job.failed) that came in one batch are written as one: the started
 * event's row in `events` only (history_only), then the end with the
 * attempt's start folded in (started, with its time and wait), so the
 * job's and the attempt's rows are written once, not twice. */
typedef struct {
    bool history_only; /* this job.started: its `events` row only */
    bool started;      /* this end: the attempt's start is below */
    int64_t started_ms;
    int64_t wait_ms;
    /* This job.succeeded: the job's job.submitted was held back
     * (collector_store.c) and is written with it, its time and run_at
     * below. Set by collector_store.c only. */
    bool submitted;
    int64_t submitted_ms;
    int64_t run_at_ms; /* 0: none */
} collector_store_fold_t;

/* collector_store_event() with a fold (NULL: none). */
int collector_store_event_fold(collector_store_t *self, const char *broker,
                               const dv_event_t *ev, int64_t run_ms,
                               const collector_store_fold_t *fold);

/* A finished job read back from the broker (ctrl "finished") after its
 * events were lost: its jobs row, in the open group (opening one), with
 * the job's final state, unless the history has it finished already.
 * Returns 1 when the row was written (the history lacked the job or its
 * end: count it), 0 when it was there finished, -1 on error (logged). */
int collector_store_backfill(collector_store_t *self, const char *broker,
                             const dv_finished_job_t *job);

/* How long a job.submitted may be held back, waiting for the job's end to
 * be written with it (collector_store.c; 10 s by default); 0: the next
 * commit writes it. Until then its row is not in the store for other
 * readers (this store's own reads write it first). */
void collector_store_hold(collector_store_t *self, int64_t ms);

/* Remembers, in the open group, the instance id and last sequence number
 * seen from a broker endpoint. Returns 0 or -1. */
int collector_store_broker_save(collector_store_t *self, const char *endpoint,
                                const char *instance, uint64_t seq);

/* Reads what collector_store_broker_save() last committed for endpoint:
 * fills instance (NUL-terminated, truncated to size), *seq and, when not
 * NULL, *saved_ms (when it was saved, epoch ms). Returns 1 when found, 0
 * when the endpoint is new, -1 on error. */
int collector_store_broker_load(collector_store_t *self, const char *endpoint,
                                char *instance, size_t size, uint64_t *seq,
                                int64_t *saved_ms);

/* Ends the open group: commits it, or rolls it back if a write of the
 * group failed. Returns 0 (also when nothing was open) or -1. */
int collector_store_commit(collector_store_t *self);

/* Filters of collector_store_jobs(); NULL strings and since_ms 0 mean "any". */
typedef struct {
    const char *state;
    const char *queue;
    const char *type;
    const char *batch;
    int64_t since_ms; /* jobs with an event at or after this epoch ms */
    int limit;        /* 1..COLLECTOR_JOBS_LIMIT_MAX */
} collector_jobs_filter_t;

#define COLLECTOR_JOBS_LIMIT_MAX 1000

/* The jobs matching f, most recently active first, as a JSON array of job
 * objects (see docs/collector.md). Returns a new reference, or NULL on a
 * store error. */
json_t *collector_store_jobs(collector_store_t *self,
                             const collector_jobs_filter_t *f);

/* One job: its row as collector_store_jobs() gives it, except that the
 * number of attempts is under "attempt" and "attempts" lists them (round,
 * attempt, worker, times, outcome, failure, last progress) in order; and
 * its events ("events"). NULL when the store has no such job (*found = 0)
 * or on error (*found = -1). Returns a new reference. */
json_t *collector_store_job(collector_store_t *self, const char *id,
                            int *found);

/* A batch's counts by state, first and last activity, and how many of its
 * jobs ended since since_ms (for a rate): {"counts": {...}, "total",
 * "first_at", "last_at", "ended_recent", "first_started_at"}. Returns a new
 * reference (total 0 for an unknown batch), or NULL on error. */
json_t *collector_store_batch(collector_store_t *self, const char *name,
                              int64_t since_ms);

/* Failed attempts since since_ms by category: [{category, count}], most
 * frequent first. Returns a new reference, or NULL on error. */
json_t *collector_store_failures(collector_store_t *self, int64_t since_ms);

/* Deletes at most max_rows jobs (and their attempts) whose last event is
 * older than cutoff_ms, and at most max_rows events older than cutoff_ms,
 * in a transaction of its own (call it between groups). Returns the number
 * of rows deleted (a value >= max_rows means more may be left), or -1. */
int collector_store_expire(collector_store_t *self, int64_t cutoff_ms,
                           int max_rows);

#endif
