/* collector_store_sqlite - job history in SQLite, built from events: the
 * default backend of collector_store (one file, WAL). */
#include "collector_store_be.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector_state.h"
#include "dv_clock.h"
#include "dv_log.h"

#define S_SCHEMA_VERSION 1

/* attempts has a round: `drover retry` gives a dead job all its attempts
 * again, numbered from 1, and the earlier ones stay history. jobs.updated_at
 * is the time of the job's last event: listings sort on it and retention
 * deletes by it. Its one index is jobs_state (state, updated_at): a listing
 * of one state walks it newest first, a listing of all states merges each
 * state's newest (collector_store_all_states), and retention looks up each
 * state's oldest; jobs_batch serves the batch counts. Every index costs
 * each event a delete and an insert (updated_at moves), so queue and type
 * filters walk jobs_state instead: cheap when they match often. One upsert
 * per job event (not an insert then an update) and no index on queue or
 * type took the collector from 25,000 to 38,000 events/s of CPU on our
 * 2-core machines; dropping jobs_updated (on updated_at alone) saved
 * another tenth. */
static const char s_schema[] =
    "CREATE TABLE IF NOT EXISTS jobs (\n"
    "    id TEXT PRIMARY KEY,\n"
    "    queue TEXT NOT NULL,\n"
    "    type TEXT NOT NULL,\n"
    "    batch TEXT,\n"
    "    state TEXT NOT NULL,\n"
    "    attempts INTEGER NOT NULL DEFAULT 0,\n"
    "    round INTEGER NOT NULL DEFAULT 0,\n"
    "    submitted_at INTEGER,\n"
    "    started_at INTEGER,\n"
    "    finished_at INTEGER,\n"
    "    updated_at INTEGER NOT NULL,\n"
    "    run_at INTEGER,\n"
    "    worker TEXT,\n"
    "    wait_ms INTEGER,\n"
    "    run_ms INTEGER,\n"
    "    category TEXT,\n"
    "    error TEXT,\n"
    "    broker TEXT\n"
    ");\n"
    "DROP INDEX IF EXISTS jobs_updated;\n"
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, updated_at);\n"
    "CREATE INDEX IF NOT EXISTS jobs_batch ON jobs(batch, state) "
    "WHERE batch IS NOT NULL;\n"
    "CREATE TABLE IF NOT EXISTS attempts (\n"
    "    job_id TEXT NOT NULL,\n"
    "    round INTEGER NOT NULL DEFAULT 0,\n"
    "    attempt INTEGER NOT NULL,\n"
    "    worker TEXT,\n"
    "    started_at INTEGER,\n"
    "    finished_at INTEGER,\n"
    "    run_ms INTEGER,\n"
    "    outcome TEXT,\n"
    "    category TEXT,\n"
    "    message TEXT,\n"
    "    exit_code INTEGER,\n"
    "    signal INTEGER,\n"
    "    http_status INTEGER,\n"
    "    key_id TEXT,\n"
    "    progress_current INTEGER,\n"
    "    progress_total INTEGER,\n"
    "    progress_message TEXT,\n"
    "    PRIMARY KEY (job_id, round, attempt)\n"
    ") WITHOUT ROWID;\n"
    /* Failed attempts by time (the failures view); a success stays out of
     * it. It replaced attempts_finished, which took every attempt. */
    "DROP INDEX IF EXISTS attempts_finished;\n"
    "CREATE INDEX IF NOT EXISTS attempts_failed ON attempts(finished_at) "
    "WHERE outcome = 'failed';\n"
    "CREATE TABLE IF NOT EXISTS events (\n"
    "    broker TEXT NOT NULL,\n"
    "    instance TEXT NOT NULL,\n"
    "    seq INTEGER NOT NULL,\n"
    "    ts INTEGER NOT NULL,\n"
    "    kind TEXT NOT NULL,\n"
    "    job TEXT,\n"
    "    queue TEXT,\n"
    "    type TEXT,\n"
    "    worker TEXT,\n"
    "    attempt INTEGER,\n"
    "    state TEXT,\n"
    "    category TEXT,\n"
    "    message TEXT\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS events_ts ON events(ts);\n"
    "CREATE INDEX IF NOT EXISTS events_job ON events(job) "
    "WHERE job IS NOT NULL;\n"
    "CREATE TABLE IF NOT EXISTS brokers (\n"
    "    endpoint TEXT PRIMARY KEY,\n"
    "    instance TEXT NOT NULL,\n"
    "    last_seq INTEGER NOT NULL,\n"
    "    updated_at INTEGER NOT NULL\n"
    ");\n";

/* Every job event writes its jobs row with one upsert: a collector that
 * started late, or missed events, may see a job first at any point of its
 * life, so each kind inserts what it knows, or updates what it changes.
 * Parameters 1..7 are the same for all (id, queue, type, batch, state,
 * the event's time, broker); a kind's own columns follow from ?8. */
#define S_UPSERT(cols, vals, sets)                                             \
    "INSERT INTO jobs(id, queue, type, batch, state, updated_at, broker" cols  \
    ") VALUES (?1, coalesce(?2, ''), coalesce(?3, ''), ?4, ?5, ?6, ?7" vals    \
    ") ON CONFLICT(id) DO UPDATE SET queue = coalesce(?2, queue), "            \
    "type = coalesce(?3, type), batch = coalesce(?4, batch), state = ?5, "     \
    "updated_at = ?6, broker = ?7" sets

#define S_ROUND "coalesce((SELECT round FROM jobs WHERE id = ?1), 0)"

enum {
    S_SUBMITTED,
    S_STARTED,
    S_STARTED_ATT,
    S_PROGRESS_ATT,
    S_SUCCEEDED,
    S_SUCCEEDED_ATT,
    S_FAILED,
    S_FAILED_ATT,
    S_DEAD,
    S_CANCELLED,
    S_CANCELLED_ATT,
    S_RETRIED,
    S_RELEASED,
    S_EVENT,
    S_BACKFILL,
    S_BROKER_SAVE,
    S_BROKER_LOAD,
    S_STMT_COUNT_
};

static const char *s_sql[S_STMT_COUNT_] = {
    [S_SUBMITTED] = S_UPSERT(", submitted_at, run_at", ", ?6, ?8",
                             ", submitted_at = ?6, run_at = ?8"),
    [S_STARTED] =
        S_UPSERT(", attempts, started_at, worker, wait_ms", ", ?8, ?6, ?9, ?10",
                 ", attempts = ?8, started_at = ?6, worker = ?9, "
                 "wait_ms = ?10, finished_at = NULL"),
    [S_STARTED_ATT] =
        "INSERT INTO attempts(job_id, round, attempt, worker, started_at) "
        "VALUES (?1, " S_ROUND ", ?2, ?3, ?4) "
        "ON CONFLICT DO UPDATE SET worker = excluded.worker, "
        "started_at = excluded.started_at",
    [S_PROGRESS_ATT] =
        "INSERT INTO attempts(job_id, round, attempt, worker, "
        "progress_current, progress_total, progress_message) "
        "VALUES (?1, " S_ROUND ", ?2, ?3, ?4, ?5, ?6) "
        "ON CONFLICT DO UPDATE SET worker = coalesce(excluded.worker, worker), "
        "progress_current = excluded.progress_current, "
        "progress_total = excluded.progress_total, "
        "progress_message = excluded.progress_message",
    /* ?11 and ?12: the start of the attempt when its job.started was
     * folded in (collector_store_fold_t), else NULL; ?13 and ?14 the job's
     * submit (time, run_at) when its job.submitted was. */
    [S_SUCCEEDED] = S_UPSERT(
        ", attempts, finished_at, run_ms, worker, started_at, wait_ms, "
        "submitted_at, run_at",
        ", ?8, ?6, ?9, ?10, ?11, ?12, ?13, ?14",
        ", attempts = max(attempts, ?8), finished_at = ?6, "
        "run_ms = ?9, worker = coalesce(?10, worker), "
        "started_at = coalesce(?11, started_at), "
        "wait_ms = coalesce(?12, wait_ms), "
        "submitted_at = coalesce(?13, submitted_at), "
        "run_at = coalesce(?14, run_at)"),
    [S_SUCCEEDED_ATT] =
        "INSERT INTO attempts(job_id, round, attempt, worker, finished_at, "
        "run_ms, outcome, started_at) VALUES (?1, " S_ROUND ", ?2, ?3, ?4, "
        "?5, 'succeeded', ?6) ON CONFLICT DO UPDATE SET "
        "worker = coalesce(excluded.worker, worker), "
        "finished_at = excluded.finished_at, run_ms = excluded.run_ms, "
        "outcome = excluded.outcome, "
        "started_at = coalesce(excluded.started_at, started_at)",
    [S_FAILED] = S_UPSERT(
        ", attempts, category, error, worker, run_at, finished_at, "
        "started_at, wait_ms",
        ", ?8, ?9, ?10, ?11, ?12, CASE WHEN ?5 = 'dead' THEN ?6 END, ?13, ?14",
        ", attempts = max(attempts, ?8), category = ?9, error = ?10, "
        "worker = coalesce(?11, worker), run_at = ?12, "
        "finished_at = CASE WHEN ?5 = 'dead' THEN ?6 END, "
        "started_at = coalesce(?13, started_at), "
        "wait_ms = coalesce(?14, wait_ms)"),
    [S_FAILED_ATT] =
        "INSERT INTO attempts(job_id, round, attempt, worker, finished_at, "
        "run_ms, outcome, category, message, exit_code, signal, http_status, "
        "key_id, started_at) VALUES (?1, " S_ROUND ", ?2, ?3, ?4, ?5, "
        "'failed', ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT DO UPDATE SET "
        "started_at = coalesce(excluded.started_at, started_at), "
        "worker = coalesce(excluded.worker, worker), "
        "finished_at = excluded.finished_at, "
        "run_ms = coalesce(excluded.run_ms, run_ms), outcome = 'failed', "
        "category = excluded.category, message = excluded.message, "
        "exit_code = excluded.exit_code, signal = excluded.signal, "
        "http_status = excluded.http_status, key_id = excluded.key_id",
    [S_DEAD] = S_UPSERT(
        ", finished_at, category, error, attempts", ", ?6, ?8, ?9, ?10",
        ", finished_at = ?6, category = coalesce(?8, category), "
        "error = coalesce(?9, error), "
        "attempts = max(attempts, ?10)"),
    [S_CANCELLED] =
        S_UPSERT(", finished_at, category, error", ", ?6, 'cancelled', ?8",
                 ", finished_at = ?6, category = 'cancelled', "
                 "error = coalesce(?8, error)"),
    [S_CANCELLED_ATT] =
        "UPDATE attempts SET outcome = 'cancelled', finished_at = ?2, "
        "category = 'cancelled' WHERE job_id = ?1 AND round = " S_ROUND
        " AND attempt = ?3 AND outcome IS NULL",
    /* job.released: left state waiting (job dependencies). */
    [S_RELEASED] = S_UPSERT("", "", ""),
    [S_RETRIED] = S_UPSERT("", "",
                           ", round = round + 1, attempts = 0, "
                           "started_at = NULL, finished_at = NULL, "
                           "wait_ms = NULL, run_ms = NULL, category = NULL, "
                           "error = NULL"),
    [S_EVENT] =
        "INSERT INTO events(broker, instance, seq, ts, kind, job, queue, type, "
        "worker, attempt, state, category, message) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    /* A finished job the events of which were lost: written unless the
     * history has it finished; a row comes back when it was written. */
    [S_BACKFILL] =
        "INSERT INTO jobs(id, queue, type, batch, state, attempts, "
        "finished_at, updated_at, worker, run_ms, category, error, broker) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12) "
        "ON CONFLICT(id) DO UPDATE SET batch = coalesce(?4, batch), "
        "state = ?5, attempts = max(attempts, ?6), finished_at = ?7, "
        "updated_at = max(updated_at, ?7), worker = coalesce(?8, worker), "
        "run_ms = coalesce(?9, run_ms), category = coalesce(?10, category), "
        "error = coalesce(?11, error), broker = ?12 "
        "WHERE state NOT IN ('succeeded', 'dead', 'cancelled') RETURNING id",
    [S_BROKER_SAVE] =
        "INSERT INTO brokers(endpoint, instance, last_seq, updated_at) "
        "VALUES (?1, ?2, ?3, ?4) ON CONFLICT(endpoint) DO UPDATE SET "
        "instance = excluded.instance, last_seq = excluded.last_seq, "
        "updated_at = excluded.updated_at",
    [S_BROKER_LOAD] = "SELECT instance, last_seq, updated_at FROM brokers "
                      "WHERE endpoint = ?1",
};

struct collector_store_be {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *st[S_STMT_COUNT_];
    bool open;   /* a group's transaction is open */
    bool failed; /* a write of the open group failed */
};

/* ---- helpers ------------------------------------------------------------- */

static int
s_exec(collector_store_be_t *self, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(self->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        dv_log(DV_ERROR, "collector.store_error", DV_STR("sql", sql),
               DV_STR("error", err ? err : sqlite3_errmsg(self->db)));
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

static void
s_bind_str(sqlite3_stmt *st, int i, dv_str_t v)
{
    if (v.ptr && v.len)
        sqlite3_bind_text(st, i, v.ptr, (int)v.len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void
s_bind_cstr(sqlite3_stmt *st, int i, const char *s)
{
    if (s && *s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* Binds v, or NULL when v is 0 (0 means "absent" on the wire). */
static void
s_bind_opt(sqlite3_stmt *st, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

/* Steps a write statement, then resets it. */
static int
s_step(collector_store_be_t *self, int which)
{
    sqlite3_stmt *st = self->st[which];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        if (!self->failed)
            dv_log(DV_ERROR, "collector.store_write_failed",
                   DV_STR("error", sqlite3_errmsg(self->db)));
        self->failed = true;
        return -1;
    }
    return 0;
}

static int
s_begin(collector_store_be_t *self)
{
    if (self->open)
        return 0;
    if (s_exec(self, "BEGIN") != 0)
        return -1;
    self->open = true;
    self->failed = false;
    return 0;
}

static const char *
s_state_or_null(dv_state_t s)
{
    return s == DV_STATE_NONE ? NULL : dv_state_name(s);
}

/* ---- open / close -------------------------------------------------------- */

static void s_close(collector_store_be_t **self_p);
static int s_commit(collector_store_be_t *self);

static collector_store_be_t *
s_open(const char *path)
{
    collector_store_be_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    /* No allocation statistics: they take a global mutex per malloc.
     * Refused (harmlessly) once SQLite is initialised. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    self->path = strdup(path);
    if (!self->path ||
        sqlite3_open_v2(path, &self->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOMUTEX, /* one thread uses it */
                        NULL) != SQLITE_OK) {
        dv_log(DV_ERROR, "collector.store_open_failed", DV_STR("path", path),
               DV_STR("error",
                      self->db ? sqlite3_errmsg(self->db) : "out of memory"));
        sqlite3_close(self->db);
        free(self->path);
        free(self);
        return NULL;
    }
    sqlite3_busy_timeout(self->db, 5000);
    /* NORMAL: history may lose its last pass to a power cut, never its
     * consistency (WAL); the collector then resyncs from the brokers.
     * 16 KiB pages (before WAL: they apply only to a new file): fewer
     * pages to write to the WAL and checkpoint for each pass, and the
     * history commits a pass at a time, never one job, so the bigger
     * commit of a small change costs nothing that matters here.
     * bench_collector -n 200000 -l 50000, 3 alternating runs: 3.41 us of
     * CPU a job against 3.73 with 4 KiB pages. The checkpoint stays at
     * 64 MiB of WAL (4,096 frames). */
    const char *pragmas[] = {
        "PRAGMA page_size = 16384", /* first: see above */
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA journal_size_limit = 67108864",
        "PRAGMA cache_size = -65536",
        "PRAGMA wal_autocheckpoint = 4096",
        "PRAGMA temp_store = MEMORY",
    };
    for (size_t i = 0; i < sizeof pragmas / sizeof pragmas[0]; i++)
        if (s_exec(self, pragmas[i]) != 0)
            goto fail;
    if (s_exec(self, s_schema) != 0)
        goto fail;
    char uv[64];
    snprintf(uv, sizeof uv, "PRAGMA user_version = %d", S_SCHEMA_VERSION);
    if (s_exec(self, uv) != 0)
        goto fail;
    for (int i = 0; i < S_STMT_COUNT_; i++) {
        if (sqlite3_prepare_v3(self->db, s_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &self->st[i],
                               NULL) != SQLITE_OK) {
            dv_log(DV_ERROR, "collector.store_open_failed",
                   DV_STR("path", path), DV_STR("sql", s_sql[i]),
                   DV_STR("error", sqlite3_errmsg(self->db)));
            goto fail;
        }
    }
    return self;
fail:
    s_close(&self);
    return NULL;
}

static void
s_close(collector_store_be_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    collector_store_be_t *self = *self_p;
    s_commit(self);
    for (int i = 0; i < S_STMT_COUNT_; i++)
        sqlite3_finalize(self->st[i]);
    sqlite3_close(self->db);
    free(self->path);
    free(self);
    *self_p = NULL;
}

static const char *
s_path(const collector_store_be_t *self)
{
    return self->path;
}

static int
s_commit(collector_store_be_t *self)
{
    if (!self->open)
        return 0;
    self->open = false;
    if (self->failed) {
        s_exec(self, "ROLLBACK");
        self->failed = false;
        return -1;
    }
    if (s_exec(self, "COMMIT") != 0) {
        s_exec(self, "ROLLBACK");
        return -1;
    }
    return 0;
}

/* ---- writes -------------------------------------------------------------- */

/* Binds the parameters every jobs upsert shares (1..7). */
static sqlite3_stmt *
s_upsert(collector_store_be_t *self, int which, const char *broker,
         const dv_event_t *ev, const char *state)
{
    sqlite3_stmt *st = self->st[which];
    s_bind_str(st, 1, ev->id);
    s_bind_str(st, 2, ev->queue);
    s_bind_str(st, 3, ev->type);
    s_bind_str(st, 4, ev->batch);
    s_bind_cstr(st, 5, state);
    sqlite3_bind_int64(st, 6, ev->ts_ms);
    s_bind_cstr(st, 7, broker);
    return st;
}

static int
s_record_event(collector_store_be_t *self, const char *broker,
               const dv_event_t *ev)
{
    sqlite3_stmt *st = self->st[S_EVENT];
    s_bind_cstr(st, 1, broker);
    s_bind_str(st, 2, ev->broker);
    sqlite3_bind_int64(st, 3, (int64_t)ev->seq);
    sqlite3_bind_int64(st, 4, ev->ts_ms);
    s_bind_str(st, 5, dv_event_topic(ev));
    s_bind_str(st, 6, ev->id);
    s_bind_str(st, 7, ev->queue);
    s_bind_str(st, 8, ev->type);
    s_bind_str(st, 9, ev->worker);
    s_bind_opt(st, 10, ev->attempt);
    s_bind_cstr(st, 11, s_state_or_null(ev->state));
    if (ev->has_failure) {
        s_bind_cstr(st, 12, dv_category_name(ev->failure.category));
        s_bind_str(st, 13, ev->failure.message);
    }
    return s_step(self, S_EVENT);
}

/* The failure's fields into the attempts statement, from parameter 6. */
static void
s_bind_failure(sqlite3_stmt *st, const dv_event_t *ev)
{
    const dv_failure_t *f = &ev->failure;
    if (!ev->has_failure)
        return;
    s_bind_cstr(st, 6, f->category ? dv_category_name(f->category) : NULL);
    s_bind_str(st, 7, f->message);
    if (f->exit_code >= 0)
        sqlite3_bind_int(st, 8, f->exit_code);
    s_bind_opt(st, 9, f->signal);
    s_bind_opt(st, 10, f->http_status);
    s_bind_str(st, 11, f->key_id);
}

static const char *
s_category(const dv_event_t *ev)
{
    return ev->has_failure && ev->failure.category
               ? dv_category_name(ev->failure.category)
               : NULL;
}

/* The folded start of the attempt into parameters i and i + 1. */
static void
s_bind_fold(sqlite3_stmt *st, int i, const collector_store_fold_t *fold)
{
    if (!fold || !fold->started)
        return;
    sqlite3_bind_int64(st, i, fold->started_ms);
    sqlite3_bind_int64(st, i + 1, fold->wait_ms);
}

static int
s_job_event(collector_store_be_t *self, const char *broker,
            const dv_event_t *ev, int64_t run_ms,
            const collector_store_fold_t *fold)
{
    const dv_str_t msg =
        ev->has_failure ? ev->failure.message : (dv_str_t){ 0 };
    sqlite3_stmt *st;
    int rc = 0;
    if (ev->kind_enum == DV_EV_JOB_SUBMITTED) {
        st = s_upsert(self, S_SUBMITTED, broker, ev,
                      ev->state ? dv_state_name(ev->state) : "queued");
        s_bind_opt(st, 8, ev->run_at_ms);
        rc |= s_step(self, S_SUBMITTED);
    } else if (ev->kind_enum == DV_EV_JOB_STARTED) {
        st = s_upsert(self, S_STARTED, broker, ev, "running");
        sqlite3_bind_int(st, 8, ev->attempt);
        s_bind_str(st, 9, ev->worker);
        sqlite3_bind_int64(st, 10, ev->wait_ms);
        rc |= s_step(self, S_STARTED);
        st = self->st[S_STARTED_ATT];
        s_bind_str(st, 1, ev->id);
        sqlite3_bind_int(st, 2, ev->attempt);
        s_bind_str(st, 3, ev->worker);
        sqlite3_bind_int64(st, 4, ev->ts_ms);
        rc |= s_step(self, S_STARTED_ATT);
    } else if (ev->kind_enum == DV_EV_JOB_PROGRESS) {
        /* Progress is the attempt's; the job row does not change. */
        st = self->st[S_PROGRESS_ATT];
        s_bind_str(st, 1, ev->id);
        sqlite3_bind_int(st, 2, ev->attempt);
        s_bind_str(st, 3, ev->worker);
        sqlite3_bind_int64(st, 4, ev->current);
        s_bind_opt(st, 5, ev->total);
        s_bind_str(st, 6, ev->message);
        rc |= s_step(self, S_PROGRESS_ATT);
    } else if (ev->kind_enum == DV_EV_JOB_SUCCEEDED) {
        st = s_upsert(self, S_SUCCEEDED, broker, ev, "succeeded");
        sqlite3_bind_int(st, 8, ev->attempt);
        s_bind_opt(st, 9, run_ms);
        s_bind_str(st, 10, ev->worker);
        s_bind_fold(st, 11, fold);
        if (fold && fold->submitted) {
            sqlite3_bind_int64(st, 13, fold->submitted_ms);
            s_bind_opt(st, 14, fold->run_at_ms);
        }
        rc |= s_step(self, S_SUCCEEDED);
        /* A success that carries its start had no attempts row: the jobs
         * row says it all, and the job view shows it as its last attempt
         * (collector_store.c). */
        if (ev->attempt > 0 && !(fold && fold->started)) {
            st = self->st[S_SUCCEEDED_ATT];
            s_bind_str(st, 1, ev->id);
            sqlite3_bind_int(st, 2, ev->attempt);
            s_bind_str(st, 3, ev->worker);
            sqlite3_bind_int64(st, 4, ev->ts_ms);
            s_bind_opt(st, 5, run_ms);
            if (fold && fold->started)
                sqlite3_bind_int64(st, 6, fold->started_ms);
            rc |= s_step(self, S_SUCCEEDED_ATT);
        }
    } else if (ev->kind_enum == DV_EV_JOB_FAILED) {
        st = s_upsert(self, S_FAILED, broker, ev,
                      ev->state ? dv_state_name(ev->state) : "scheduled");
        sqlite3_bind_int(st, 8, ev->attempt);
        s_bind_cstr(st, 9, s_category(ev));
        s_bind_str(st, 10, msg);
        s_bind_str(st, 11, ev->worker);
        s_bind_opt(st, 12, ev->run_at_ms);
        s_bind_fold(st, 13, fold);
        rc |= s_step(self, S_FAILED);
        if (ev->attempt > 0) {
            st = self->st[S_FAILED_ATT];
            s_bind_str(st, 1, ev->id);
            sqlite3_bind_int(st, 2, ev->attempt);
            s_bind_str(st, 3, ev->worker);
            sqlite3_bind_int64(st, 4, ev->ts_ms);
            s_bind_opt(st, 5, run_ms);
            s_bind_failure(st, ev);
            if (fold && fold->started)
                sqlite3_bind_int64(st, 12, fold->started_ms);
            rc |= s_step(self, S_FAILED_ATT);
        }
    } else if (ev->kind_enum == DV_EV_JOB_DEAD) {
        st = s_upsert(self, S_DEAD, broker, ev, "dead");
        s_bind_cstr(st, 8, s_category(ev));
        s_bind_str(st, 9, msg);
        sqlite3_bind_int(st, 10, ev->attempt);
        rc |= s_step(self, S_DEAD);
    } else if (ev->kind_enum == DV_EV_JOB_CANCELLED) {
        st = s_upsert(self, S_CANCELLED, broker, ev, "cancelled");
        s_bind_str(st, 8, msg);
        rc |= s_step(self, S_CANCELLED);
        if (ev->attempt > 0) {
            st = self->st[S_CANCELLED_ATT];
            s_bind_str(st, 1, ev->id);
            sqlite3_bind_int64(st, 2, ev->ts_ms);
            sqlite3_bind_int(st, 3, ev->attempt);
            rc |= s_step(self, S_CANCELLED_ATT);
        }
    } else if (ev->kind_enum == DV_EV_JOB_RETRIED) {
        s_upsert(self, S_RETRIED, broker, ev, "queued");
        rc |= s_step(self, S_RETRIED);
    } else if (ev->kind_enum == DV_EV_JOB_RELEASED) {
        s_upsert(self, S_RELEASED, broker, ev,
                 ev->state ? dv_state_name(ev->state) : "queued");
        rc |= s_step(self, S_RELEASED);
    }
    return rc ? -1 : 0;
}

static int
s_event(collector_store_be_t *self, const char *broker, const dv_event_t *ev,
        int64_t run_ms, const collector_store_fold_t *fold)
{
    if (s_begin(self) != 0)
        return -1;
    int rc = 0;
    bool job = collector_event_family(ev) == COLLECTOR_EV_JOB;
    if (job && ev->id.ptr && ev->id.len && !(fold && fold->history_only))
        rc |= s_job_event(self, broker, ev, run_ms, fold);
    if (collector_event_recorded(ev))
        rc |= s_record_event(self, broker, ev);
    return rc ? -1 : 0;
}

static int
s_backfill(collector_store_be_t *self, const char *broker,
           const dv_finished_job_t *j)
{
    if (s_begin(self) != 0)
        return -1;
    sqlite3_stmt *st = self->st[S_BACKFILL];
    s_bind_str(st, 1, j->id);
    s_bind_str(st, 2, j->queue);
    s_bind_str(st, 3, j->type);
    s_bind_str(st, 4, j->batch);
    s_bind_cstr(st, 5, dv_state_name(j->state));
    sqlite3_bind_int(st, 6, j->attempt);
    sqlite3_bind_int64(st, 7, j->finished_ms);
    s_bind_str(st, 8, j->worker);
    s_bind_opt(st, 9, j->run_ms);
    s_bind_cstr(st, 10, j->category ? dv_category_name(j->category) : NULL);
    s_bind_str(st, 11, j->message);
    s_bind_cstr(st, 12, broker);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        if (!self->failed)
            dv_log(DV_ERROR, "collector.store_write_failed",
                   DV_STR("error", sqlite3_errmsg(self->db)));
        self->failed = true;
        return -1;
    }
    return rc == SQLITE_ROW;
}

static int
s_broker_save(collector_store_be_t *self, const char *endpoint,
              const char *instance, uint64_t seq)
{
    if (s_begin(self) != 0)
        return -1;
    sqlite3_stmt *st = self->st[S_BROKER_SAVE];
    s_bind_cstr(st, 1, endpoint);
    sqlite3_bind_text(st, 2, instance, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (int64_t)seq);
    sqlite3_bind_int64(st, 4, dv_now_ms());
    return s_step(self, S_BROKER_SAVE);
}

static int
s_broker_load(collector_store_be_t *self, const char *endpoint, char *instance,
              size_t size, uint64_t *seq, int64_t *saved_ms)
{
    sqlite3_stmt *st = self->st[S_BROKER_LOAD];
    s_bind_cstr(st, 1, endpoint);
    int rc = sqlite3_step(st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        const char *in = (const char *)sqlite3_column_text(st, 0);
        snprintf(instance, size, "%s", in ? in : "");
        *seq = (uint64_t)sqlite3_column_int64(st, 1);
        *saved_ms = sqlite3_column_int64(st, 2);
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = -1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return found;
}

/* ---- reads --------------------------------------------------------------- */

/* Column i of the current row as JSON: null, integer, real or string. */
static json_t *
s_col(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(st, i));
    case SQLITE_TEXT:
        return json_stringn((const char *)sqlite3_column_text(st, i),
                            (size_t)sqlite3_column_bytes(st, i));
    default:
        return json_null();
    }
}

/* The current row as an object keyed by column names, or NULL when out
 * of memory. */
static json_t *
s_row(sqlite3_stmt *st)
{
    json_t *o = json_object();
    int rc = o ? 0 : -1;
    int n = sqlite3_column_count(st);
    for (int i = 0; i < n && !rc; i++)
        rc |= json_object_set_new(o, sqlite3_column_name(st, i), s_col(st, i));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Runs a prepared query and collects every row; finalizes st. Returns a new
 * array, or NULL on error or when out of memory (logged). */
static json_t *
s_rows(collector_store_be_t *self, sqlite3_stmt *st)
{
    json_t *a = json_array();
    int rc = SQLITE_DONE;
    while (a && (rc = sqlite3_step(st)) == SQLITE_ROW)
        if (json_array_append_new(a, s_row(st)) != 0)
            break;
    if (rc != SQLITE_DONE) {
        dv_log(DV_ERROR, "collector.store_read_failed",
               DV_STR("error", rc == SQLITE_ROW ? "out of memory"
                                                : sqlite3_errmsg(self->db)));
        json_decref(a);
        a = NULL;
    } else if (!a) {
        dv_log(DV_ERROR, "collector.store_read_failed",
               DV_STR("error", "out of memory"));
    }
    sqlite3_finalize(st);
    return a;
}

static sqlite3_stmt *
s_prepare(collector_store_be_t *self, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(self->db, sql, -1, &st, NULL) != SQLITE_OK) {
        dv_log(DV_ERROR, "collector.store_read_failed", DV_STR("sql", sql),
               DV_STR("error", sqlite3_errmsg(self->db)));
        return NULL;
    }
    return st;
}

#define S_JOB_COLUMNS                                                          \
    "id, queue, type, batch, state, attempts, round, submitted_at, "           \
    "started_at, finished_at, updated_at, run_at, worker, wait_ms, run_ms, "   \
    "category, error, broker"

static json_t *
s_jobs(collector_store_be_t *self, const collector_jobs_filter_t *f)
{
    /* The filters but the state, the same in each state's branch. */
    char where[160];
    size_t w = 0;
    where[0] = '\0';
    const char *strs[4] = { f->state, f->queue, f->type, f->batch };
    const char *cols[4] = { "state", "queue", "type", "batch" };
    for (int i = 1; i < 4; i++)
        if (strs[i])
            w += (size_t)snprintf(where + w, sizeof where - w, " AND %s = ?%d",
                                  cols[i], i + 1);
    if (f->since_ms > 0)
        snprintf(where + w, sizeof where - w, " AND updated_at >= ?5");
    char branch[400];
    snprintf(branch, sizeof branch,
             "SELECT " S_JOB_COLUMNS " FROM jobs WHERE state = %%s%s "
             "ORDER BY updated_at DESC, id DESC LIMIT ?6",
             where);
    char sql[COLLECTOR_STORE_ALL_STATES_SQL];
    if (f->state)
        snprintf(sql, sizeof sql, branch, "?1");
    else if (collector_store_all_states(
                 sql, sizeof sql, branch, "SELECT * FROM (", "SELECT * FROM (",
                 ")", ") ORDER BY updated_at DESC, id DESC LIMIT ?6") != 0)
        return NULL;
    sqlite3_stmt *st = s_prepare(self, sql);
    if (!st)
        return NULL;
    for (int i = 0; i < 4; i++)
        if (strs[i])
            sqlite3_bind_text(st, i + 1, strs[i], -1, SQLITE_STATIC);
    if (f->since_ms > 0)
        sqlite3_bind_int64(st, 5, f->since_ms);
    sqlite3_bind_int(st, 6, f->limit);
    return s_rows(self, st);
}

static json_t *
s_job(collector_store_be_t *self, const char *id, int *found)
{
    *found = -1;
    sqlite3_stmt *st =
        s_prepare(self, "SELECT " S_JOB_COLUMNS " FROM jobs WHERE id = ?1");
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    json_t *rows = s_rows(self, st);
    if (!rows)
        return NULL;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        *found = 0;
        return NULL;
    }
    json_t *job = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    st = s_prepare(self,
                   "SELECT round, attempt, worker, started_at, finished_at, "
                   "coalesce(run_ms, finished_at - started_at) AS run_ms, "
                   "outcome, category, message, exit_code, signal, "
                   "http_status, key_id, progress_current, progress_total, "
                   "progress_message FROM attempts WHERE job_id = ?1 "
                   "ORDER BY round, attempt");
    json_t *attempts =
        st ? (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC), s_rows(self, st))
           : NULL;
    st = s_prepare(self,
                   "SELECT ts, kind, worker, attempt, state, category, message "
                   "FROM events WHERE job = ?1 ORDER BY ts, seq LIMIT 200");
    json_t *events =
        st ? (sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC), s_rows(self, st))
           : NULL;
    if (!attempts || !events) {
        json_decref(attempts);
        json_decref(events);
        json_decref(job);
        return NULL;
    }
    /* "attempts" lists them; the count is the last attempt's number. */
    int rc = json_object_set(job, "attempt", json_object_get(job, "attempts"));
    rc |= json_object_set_new(job, "attempts", attempts);
    rc |= json_object_set_new(job, "events", events);
    if (rc) {
        json_decref(job);
        return NULL; /* out of memory; *found stays -1 */
    }
    *found = 1;
    return job;
}

static json_t *
s_batch(collector_store_be_t *self, const char *name, int64_t since_ms)
{
    sqlite3_stmt *st = s_prepare(
        self, "SELECT state, count(*), min(submitted_at), max(updated_at), "
              "min(started_at), sum(finished_at >= ?2) FROM jobs "
              "WHERE batch = ?1 GROUP BY state");
    if (!st)
        return NULL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, since_ms);
    json_t *counts = json_object();
    int oom = counts ? 0 : -1;
    const char *states[] = { "queued",    "scheduled", "running",
                             "succeeded", "dead",      "cancelled" };
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        oom |= json_object_set_new(counts, states[i], json_integer(0));
    int64_t total = 0, first = 0, last = 0, first_started = 0, recent = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(st, 0);
        int64_t n = sqlite3_column_int64(st, 1);
        oom |= json_object_set_new(counts, state ? state : "unknown",
                                   json_integer(n));
        total += n;
        int64_t a = sqlite3_column_int64(st, 2);
        int64_t b = sqlite3_column_int64(st, 3);
        int64_t c = sqlite3_column_int64(st, 4);
        if (a && (!first || a < first))
            first = a;
        if (b > last)
            last = b;
        if (c && (!first_started || c < first_started))
            first_started = c;
        recent += sqlite3_column_int64(st, 5);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || oom) {
        json_decref(counts);
        return NULL;
    }
    return json_pack("{s:o, s:I, s:I, s:I, s:I, s:I}", "counts", counts,
                     "total", (json_int_t)total, "first_at", (json_int_t)first,
                     "last_at", (json_int_t)last, "first_started_at",
                     (json_int_t)first_started, "ended_recent",
                     (json_int_t)recent);
}

static json_t *
s_failures(collector_store_be_t *self, int64_t since_ms)
{
    sqlite3_stmt *st = s_prepare(
        self, "SELECT coalesce(category, 'unknown') AS category, "
              "count(*) AS count FROM attempts WHERE finished_at >= ?1 AND "
              "outcome = 'failed' GROUP BY 1 ORDER BY 2 DESC, 1");
    if (!st)
        return NULL;
    sqlite3_bind_int64(st, 1, since_ms);
    return s_rows(self, st);
}

static int
s_expire(collector_store_be_t *self, int64_t cutoff_ms, int max_rows)
{
    /* state IN (every state): jobs_state serves it, a range per state. */
    static const char *sql[] = {
        "DELETE FROM attempts WHERE job_id IN "
        "(SELECT id FROM jobs WHERE state IN (" COLLECTOR_STORE_STATES
        ") AND updated_at < ?1 LIMIT ?2)",
        "DELETE FROM jobs WHERE id IN "
        "(SELECT id FROM jobs WHERE state IN (" COLLECTOR_STORE_STATES
        ") AND updated_at < ?1 LIMIT ?2)",
        "DELETE FROM events WHERE rowid IN "
        "(SELECT rowid FROM events WHERE ts < ?1 LIMIT ?2)",
    };
    if (s_commit(self) != 0 || s_exec(self, "BEGIN") != 0)
        return -1;
    int deleted = 0;
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        sqlite3_stmt *st = s_prepare(self, sql[i]);
        if (!st) {
            s_exec(self, "ROLLBACK");
            return -1;
        }
        sqlite3_bind_int64(st, 1, cutoff_ms);
        sqlite3_bind_int(st, 2, max_rows);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) {
            dv_log(DV_ERROR, "collector.store_expire_failed",
                   DV_STR("error", sqlite3_errmsg(self->db)));
            s_exec(self, "ROLLBACK");
            return -1;
        }
        /* attempts rows go with their jobs; count jobs and events. */
        if (i > 0)
            deleted += sqlite3_changes(self->db);
    }
    return s_exec(self, "COMMIT") == 0 ? deleted : -1;
}

const collector_store_ops_t collector_store_sqlite_ops = {
    .name = "sqlite",
    .open = s_open,
    .close = s_close,
    .path = s_path,
    .event = s_event,
    .backfill = s_backfill,
    .broker_save = s_broker_save,
    .broker_load = s_broker_load,
    .commit = s_commit,
    .jobs = s_jobs,
    .job = s_job,
    .batch = s_batch,
    .failures = s_failures,
    .expire = s_expire,
};
