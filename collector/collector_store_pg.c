/* collector_store_pg - job history in PostgreSQL, over libpq.
 *
 * The same tables and columns as collector_store_sqlite.c, in PostgreSQL
 * types, in a schema of their own named "collector" (collector.jobs,
 * collector.attempts, collector.events, collector.brokers and
 * collector.schema_version): a broker's store may live in the same
 * database, in its own tables (jobs, attempts, ... in the default schema),
 * and the two never meet. The schema is created at open inside one
 * transaction that holds an advisory lock, so two collectors starting at
 * once on an empty database do not race.
 *
 * Write groups go out in libpq's pipeline mode: the first write of a pass
 * enters the pipeline and queues BEGIN, every write queues one prepared
 * statement (nothing waits for the server), and commit queues COMMIT and a
 * sync point, then reads every result: one round trip per pass. A pass of
 * more than S_PIPELINE_MAX statements reads the results so far at each
 * S_PIPELINE_MAX (a round trip each), so that neither side's socket buffer
 * fills up while the other waits. A statement that fails makes the server
 * skip the rest of the group; commit then rolls back and returns -1, as the
 * SQLite backend does for a group with a failed write. So a write call
 * returns -1 only when it could not be queued (the connection is gone).
 *
 * Reads run at once (outside a group, which is where the collector's loop
 * makes them; inside one they are queued behind its writes, so they see
 * them, and the pipeline is flushed). Text results are turned into JSON by
 * their column types, so every read gives what the SQLite backend gives.
 *
 * A lost connection: the group in flight is lost (history of one pass,
 * which the collector accepts); the next group or read connects again,
 * once, with a bounded connect timeout. The URL's password never appears
 * in a log line or in collector_store_path().
 */
#include "collector_store_be.h"

#include <ctype.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector_state.h"
#include "dv_clock.h"
#include "dv_log.h"
#include "dv_pg.h"

#define S_SCHEMA_VERSION 1
#define S_STR_(x)        #x
#define S_STR(x)         S_STR_(x)
/* The advisory lock held while the schema is created: "dvcoll" in ASCII,
 * not the broker's key, so a broker and a collector starting at once on one
 * database do not wait for each other. */
#define S_SCHEMA_LOCK      "110459637165164"
#define S_PIPELINE_MAX     1000
#define S_CONNECT_TIMEOUT  "5"   /* seconds, per (re)connect */
#define S_RETRY_MS         1000  /* first pause between tries to reconnect */
#define S_RETRY_MAX_MS     30000 /* ... doubling up to this */
#define S_APPLICATION_NAME "drover-collector"

/* As collector_store_sqlite.c's s_schema, in PostgreSQL types: times and
 * durations (epoch ms, ms) and sequence numbers are BIGINT. The indexes
 * are the same, for the same reasons (see there). */
static const char s_schema[] =
    "CREATE TABLE IF NOT EXISTS collector.jobs (\n"
    "    id TEXT PRIMARY KEY,\n"
    "    queue TEXT NOT NULL,\n"
    "    type TEXT NOT NULL,\n"
    "    batch TEXT,\n"
    "    state TEXT NOT NULL,\n"
    "    attempts INTEGER NOT NULL DEFAULT 0,\n"
    "    round INTEGER NOT NULL DEFAULT 0,\n"
    "    submitted_at BIGINT,\n"
    "    started_at BIGINT,\n"
    "    finished_at BIGINT,\n"
    "    updated_at BIGINT NOT NULL,\n"
    "    run_at BIGINT,\n"
    "    worker TEXT,\n"
    "    wait_ms BIGINT,\n"
    "    run_ms BIGINT,\n"
    "    category TEXT,\n"
    "    error TEXT,\n"
    "    broker TEXT\n"
    ");\n"
    "DROP INDEX IF EXISTS collector.jobs_updated;\n"
    "CREATE INDEX IF NOT EXISTS jobs_state "
    "ON collector.jobs(state, updated_at);\n"
    "CREATE INDEX IF NOT EXISTS jobs_batch ON collector.jobs(batch, state) "
    "WHERE batch IS NOT NULL;\n"
    "CREATE TABLE IF NOT EXISTS collector.attempts (\n"
    "    job_id TEXT NOT NULL,\n"
    "    round INTEGER NOT NULL DEFAULT 0,\n"
    "    attempt INTEGER NOT NULL,\n"
    "    worker TEXT,\n"
    "    started_at BIGINT,\n"
    "    finished_at BIGINT,\n"
    "    run_ms BIGINT,\n"
    "    outcome TEXT,\n"
    "    category TEXT,\n"
    "    message TEXT,\n"
    "    exit_code INTEGER,\n"
    "    signal INTEGER,\n"
    "    http_status INTEGER,\n"
    "    key_id TEXT,\n"
    "    progress_current BIGINT,\n"
    "    progress_total BIGINT,\n"
    "    progress_message TEXT,\n"
    "    PRIMARY KEY (job_id, round, attempt)\n"
    ");\n"
    /* Failed attempts by time (the failures view); a success stays out of
     * it. It replaced attempts_finished, which took every attempt. */
    "DROP INDEX IF EXISTS collector.attempts_finished;\n"
    "CREATE INDEX IF NOT EXISTS attempts_failed "
    "ON collector.attempts(finished_at) WHERE outcome = 'failed';\n"
    "CREATE TABLE IF NOT EXISTS collector.events (\n"
    "    broker TEXT NOT NULL,\n"
    "    instance TEXT NOT NULL,\n"
    "    seq BIGINT NOT NULL,\n"
    "    ts BIGINT NOT NULL,\n"
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
    "CREATE INDEX IF NOT EXISTS events_ts ON collector.events(ts);\n"
    "CREATE INDEX IF NOT EXISTS events_job ON collector.events(job) "
    "WHERE job IS NOT NULL;\n"
    "CREATE TABLE IF NOT EXISTS collector.brokers (\n"
    "    endpoint TEXT PRIMARY KEY,\n"
    "    instance TEXT NOT NULL,\n"
    "    last_seq BIGINT NOT NULL,\n"
    "    updated_at BIGINT NOT NULL\n"
    ");\n";

/* The statements of collector_store_sqlite.c, numbered the same way
 * ($1..$7 shared by every jobs upsert, a kind's own from $8). Each
 * parameter is cast where it first appears: that fixes its type for the
 * whole statement. The existing row is "j" (or "a"), as PostgreSQL wants
 * it named in ON CONFLICT ... DO UPDATE. */
#define S_UPSERT(cols, vals, sets)                                             \
    "INSERT INTO collector.jobs AS j (id, queue, type, batch, state, "         \
    "updated_at, broker" cols ") VALUES ($1::text, coalesce($2::text, ''), "   \
    "coalesce($3::text, ''), $4::text, $5::text, $6::bigint, $7::text" vals    \
    ") ON CONFLICT (id) DO UPDATE SET queue = coalesce($2, j.queue), "         \
    "type = coalesce($3, j.type), batch = coalesce($4, j.batch), state = $5, " \
    "updated_at = $6, broker = $7" sets

#define S_ROUND                                                                \
    "coalesce((SELECT round FROM collector.jobs WHERE id = $1::text), 0)"
#define S_ATT_CONFLICT " ON CONFLICT (job_id, round, attempt) DO UPDATE SET "

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

static const char *s_names[S_STMT_COUNT_] = {
    "collector_submitted",     "collector_started",
    "collector_started_att",   "collector_progress_att",
    "collector_succeeded",     "collector_succeeded_att",
    "collector_failed",        "collector_failed_att",
    "collector_dead",          "collector_cancelled",
    "collector_cancelled_att", "collector_retried",
    "collector_released",      "collector_event",
    "collector_backfill",      "collector_broker_save",
    "collector_broker_load",
};

static const char *s_sql[S_STMT_COUNT_] = {
    [S_SUBMITTED] = S_UPSERT(", submitted_at, run_at", ", $6, $8::bigint",
                             ", submitted_at = $6, run_at = $8"),
    [S_STARTED] = S_UPSERT(", attempts, started_at, worker, wait_ms",
                           ", $8::integer, $6, $9::text, $10::bigint",
                           ", attempts = $8, started_at = $6, worker = $9, "
                           "wait_ms = $10, finished_at = NULL"),
    [S_STARTED_ATT] =
        "INSERT INTO collector.attempts AS a (job_id, round, attempt, worker, "
        "started_at) VALUES ($1::text, " S_ROUND ", $2::integer, $3::text, "
        "$4::bigint)" S_ATT_CONFLICT "worker = excluded.worker, "
        "started_at = excluded.started_at",
    [S_PROGRESS_ATT] =
        "INSERT INTO collector.attempts AS a (job_id, round, attempt, worker, "
        "progress_current, progress_total, progress_message) "
        "VALUES ($1::text, " S_ROUND ", $2::integer, $3::text, $4::bigint, "
        "$5::bigint, $6::text)" S_ATT_CONFLICT
        "worker = coalesce(excluded.worker, a.worker), "
        "progress_current = excluded.progress_current, "
        "progress_total = excluded.progress_total, "
        "progress_message = excluded.progress_message",
    /* $11 and $12: the start of the attempt when its job.started was
     * folded in (collector_store_fold_t), else NULL. */
    [S_SUCCEEDED] = S_UPSERT(
        ", attempts, finished_at, run_ms, worker, started_at, wait_ms, "
        "submitted_at, run_at",
        ", $8::integer, $6, $9::bigint, $10::text, $11::bigint, "
        "$12::bigint, $13::bigint, $14::bigint",
        ", attempts = greatest(j.attempts, $8), "
        "finished_at = $6, run_ms = $9, "
        "worker = coalesce($10, j.worker), "
        "started_at = coalesce($11, j.started_at), "
        "wait_ms = coalesce($12, j.wait_ms), "
        "submitted_at = coalesce($13, j.submitted_at), "
        "run_at = coalesce($14, j.run_at)"),
    [S_SUCCEEDED_ATT] =
        "INSERT INTO collector.attempts AS a (job_id, round, attempt, worker, "
        "finished_at, run_ms, outcome, started_at) VALUES ($1::text, " S_ROUND
        ", $2::integer, $3::text, $4::bigint, $5::bigint, "
        "'succeeded', $6::bigint)" S_ATT_CONFLICT
        "worker = coalesce(excluded.worker, a.worker), "
        "finished_at = excluded.finished_at, run_ms = excluded.run_ms, "
        "outcome = excluded.outcome, "
        "started_at = coalesce(excluded.started_at, a.started_at)",
    [S_FAILED] = S_UPSERT(
        ", attempts, category, error, worker, run_at, finished_at, "
        "started_at, wait_ms",
        ", $8::integer, $9::text, $10::text, $11::text, $12::bigint, "
        "CASE WHEN $5 = 'dead' THEN $6 END, $13::bigint, $14::bigint",
        ", attempts = greatest(j.attempts, $8), category = $9, error = $10, "
        "worker = coalesce($11, j.worker), run_at = $12, "
        "finished_at = CASE WHEN $5 = 'dead' THEN $6 END, "
        "started_at = coalesce($13, j.started_at), "
        "wait_ms = coalesce($14, j.wait_ms)"),
    [S_FAILED_ATT] =
        "INSERT INTO collector.attempts AS a (job_id, round, attempt, worker, "
        "finished_at, run_ms, outcome, category, message, exit_code, signal, "
        "http_status, key_id, started_at) VALUES ($1::text, " S_ROUND
        ", $2::integer, $3::text, $4::bigint, $5::bigint, 'failed', $6::text, "
        "$7::text, $8::integer, $9::integer, $10::integer, $11::text, "
        "$12::bigint)" S_ATT_CONFLICT
        "started_at = coalesce(excluded.started_at, a.started_at), "
        "worker = coalesce(excluded.worker, a.worker), "
        "finished_at = excluded.finished_at, "
        "run_ms = coalesce(excluded.run_ms, a.run_ms), outcome = 'failed', "
        "category = excluded.category, message = excluded.message, "
        "exit_code = excluded.exit_code, signal = excluded.signal, "
        "http_status = excluded.http_status, key_id = excluded.key_id",
    [S_DEAD] = S_UPSERT(", finished_at, category, error, attempts",
                        ", $6, $8::text, $9::text, $10::integer",
                        ", finished_at = $6, category = coalesce($8, "
                        "j.category), error = coalesce($9, j.error), "
                        "attempts = greatest(j.attempts, $10)"),
    [S_CANCELLED] = S_UPSERT(", finished_at, category, error",
                             ", $6, 'cancelled', $8::text",
                             ", finished_at = $6, category = 'cancelled', "
                             "error = coalesce($8, j.error)"),
    [S_CANCELLED_ATT] = "UPDATE collector.attempts SET outcome = 'cancelled', "
                        "finished_at = $2::bigint, category = 'cancelled' "
                        "WHERE job_id = $1::text AND round = " S_ROUND
                        " AND attempt = $3::integer AND outcome IS NULL",
    /* job.released: left state waiting (job dependencies). */
    [S_RELEASED] = S_UPSERT("", "", ""),
    [S_RETRIED] = S_UPSERT("", "",
                           ", round = j.round + 1, attempts = 0, "
                           "started_at = NULL, finished_at = NULL, "
                           "wait_ms = NULL, run_ms = NULL, category = NULL, "
                           "error = NULL"),
    [S_EVENT] = "INSERT INTO collector.events(broker, instance, seq, ts, kind, "
                "job, queue, type, worker, attempt, state, category, message) "
                "VALUES ($1::text, $2::text, $3::bigint, $4::bigint, $5::text, "
                "$6::text, $7::text, $8::text, $9::text, $10::integer, "
                "$11::text, $12::text, $13::text)",
    /* As the SQLite one: written unless the history has the job
     * finished; a row comes back when it was written. */
    [S_BACKFILL] =
        "INSERT INTO collector.jobs AS j (id, queue, type, batch, state, "
        "attempts, finished_at, updated_at, worker, run_ms, category, error, "
        "broker) VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, "
        "$6::integer, $7::bigint, $7::bigint, $8::text, $9::bigint, "
        "$10::text, $11::text, $12::text) ON CONFLICT (id) DO UPDATE SET "
        "batch = coalesce($4, j.batch), state = $5, "
        "attempts = greatest(j.attempts, $6), finished_at = $7, "
        "updated_at = greatest(j.updated_at, $7), "
        "worker = coalesce($8, j.worker), run_ms = coalesce($9, j.run_ms), "
        "category = coalesce($10, j.category), error = coalesce($11, j.error), "
        "broker = $12 WHERE j.state NOT IN ('succeeded', 'dead', 'cancelled') "
        "RETURNING id",
    [S_BROKER_SAVE] =
        "INSERT INTO collector.brokers(endpoint, instance, last_seq, "
        "updated_at) VALUES ($1::text, $2::text, $3::bigint, $4::bigint) "
        "ON CONFLICT (endpoint) DO UPDATE SET instance = excluded.instance, "
        "last_seq = excluded.last_seq, updated_at = excluded.updated_at",
    [S_BROKER_LOAD] = "SELECT instance, last_seq, updated_at "
                      "FROM collector.brokers WHERE endpoint = $1::text",
};

struct collector_store_be {
    PGconn *conn;   /* NULL while disconnected */
    char *url;      /* as given, for reconnecting; holds the password */
    char *safe_url; /* the URL with its password masked */
    char *password; /* the URL's password, to scrub messages; or NULL */
    bool open;      /* a group's transaction (and pipeline) is open */
    bool failed;    /* a write of the open group failed */
    int npending;   /* statements queued whose results are not read yet */
    bool down;      /* the last (re)connect failed: log the next quietly */
    int64_t next_try_mono; /* no new connection tried before (mono ms) */
    int64_t retry_ms;      /* the pause after the next failed try */
    bool lost;             /* this pass's group could not start: skip its
                            * writes, commit returns -1 */
};

/* ---- parameters: text, or counted strings in binary (their bytes) -------- */

/* A counted string; empty or absent is NULL (as s_bind_str in SQLite). */
static void
s_p_str(dv_pg_params_t *p, dv_str_t v)
{
    if (!v.ptr || !v.len)
        dv_pg_p_null(p);
    else
        dv_pg_p_str(p, v);
}

/* A C string; empty or NULL is NULL (as s_bind_cstr in SQLite). */
static void
s_p_cstr(dv_pg_params_t *p, const char *s)
{
    s_p_str(p, (dv_str_t){ s, s ? strlen(s) : 0 });
}

/* v, or NULL when v is 0 (0 means "absent" on the wire). */
static void
s_p_opt(dv_pg_params_t *p, int64_t v)
{
    if (v)
        dv_pg_p_int(p, v);
    else
        dv_pg_p_null(p);
}

/* ---- messages without the password --------------------------------------- */

/* Copies s into out without the password (dv_pg_scrub). */
static void
s_scrub(const collector_store_be_t *self, const char *s, char *out,
        size_t out_size)
{
    dv_pg_scrub(self->password, s, out, out_size);
}

/* The connection's last error, scrubbed, into out. */
static const char *
s_conn_error(const collector_store_be_t *self, char *out, size_t size)
{
    s_scrub(self, self->conn ? PQerrorMessage(self->conn) : "not connected",
            out, size);
    if (!*out)
        snprintf(out, size, "connection lost");
    return out;
}

/* ---- connection ---------------------------------------------------------- */

static void
s_notice(void *arg, const char *message)
{
    collector_store_be_t *self = arg;
    char clean[512];
    s_scrub(self, message, clean, sizeof clean);
    dv_log(DV_DEBUG, "collector.store_notice", DV_STR("message", clean));
}

static void
s_disconnect(collector_store_be_t *self)
{
    if (self->conn)
        PQfinish(self->conn);
    self->conn = NULL;
    self->open = false;
    self->npending = 0;
}

/* Runs sql (no parameters, one or more statements); 0, or -1 with the
 * scrubbed reason in err. */
static int
s_exec(collector_store_be_t *self, const char *sql, char *err, size_t size)
{
    PGresult *r = PQexec(self->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc)
        s_scrub(self, r ? PQresultErrorMessage(r) : PQerrorMessage(self->conn),
                err, size);
    PQclear(r);
    return rc;
}

/* Connects and prepares every statement; err gets the reason. */
static int
s_connect(collector_store_be_t *self, char *err, size_t size)
{
    /* The URL's own settings come after ours: an operator's
     * connect_timeout or application_name wins. */
    const char *keys[] = { "connect_timeout", "application_name", "dbname",
                           NULL };
    const char *vals[] = { S_CONNECT_TIMEOUT, S_APPLICATION_NAME, self->url,
                           NULL };
    self->conn = PQconnectdbParams(keys, vals, 1);
    if (!self->conn) {
        snprintf(err, size, "out of memory");
        return -1;
    }
    if (PQstatus(self->conn) != CONNECTION_OK) {
        s_conn_error(self, err, size);
        s_disconnect(self);
        return -1;
    }
    PQsetNoticeProcessor(self->conn, s_notice, self);
    if (s_exec(self, "SET client_min_messages = warning", err, size) != 0)
        goto fail;
    return 0;
fail:
    s_disconnect(self);
    return -1;
}

static int
s_prepare_all(collector_store_be_t *self, char *err, size_t size)
{
    for (int i = 0; i < S_STMT_COUNT_; i++) {
        PGresult *r = PQprepare(self->conn, s_names[i], s_sql[i], 0, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            char clean[384];
            s_scrub(self, PQresultErrorMessage(r), clean, sizeof clean);
            snprintf(err, size, "%s: %s", s_names[i], clean);
        }
        PQclear(r);
        if (!ok)
            return -1;
    }
    return 0;
}

/* Before a group or a read: connects again if the connection was lost.
 * One try, bounded by the connect timeout. */
static int
s_ensure(collector_store_be_t *self)
{
    if (self->conn && PQstatus(self->conn) == CONNECTION_OK)
        return 0;
    s_disconnect(self);
    /* A server that is down is not asked again for every event of a
     * pass, and less and less often: each try may block the loop for the
     * connect timeout. */
    int64_t now = dv_mono_ms();
    if (self->down && now < self->next_try_mono)
        return -1;
    if (!self->down)
        self->retry_ms = S_RETRY_MS;
    self->next_try_mono = now + self->retry_ms;
    self->retry_ms = self->retry_ms * 2 > S_RETRY_MAX_MS ? S_RETRY_MAX_MS
                                                         : self->retry_ms * 2;
    char err[512];
    if (s_connect(self, err, sizeof err) != 0 ||
        s_prepare_all(self, err, sizeof err) != 0) {
        dv_log(self->down ? DV_DEBUG : DV_ERROR, "collector.store_error",
               DV_STR("op", "connect"), DV_STR("url", self->safe_url),
               DV_STR("error", err));
        self->down = true;
        s_disconnect(self);
        return -1;
    }
    self->down = false;
    dv_log(DV_INFO, "collector.store_reconnected",
           DV_STR("url", self->safe_url));
    return 0;
}

/* Creates the schema and its tables in a database that has none, accepts
 * this version, refuses a newer one or a version table without a version:
 * one transaction under an advisory lock. */
static int
s_schema_setup(collector_store_be_t *self, char *err, size_t size)
{
    if (s_exec(self, "BEGIN;\nSELECT pg_advisory_xact_lock(" S_SCHEMA_LOCK ")",
               err, size) != 0)
        goto fail;
    /* CREATE SCHEMA only when it is missing: even with IF NOT EXISTS it
     * needs CREATE on the database, which a running collector should not. */
    PGresult *r = PQexec(self->conn,
                         "SELECT to_regnamespace('collector') IS NOT NULL, "
                         "to_regclass('collector.schema_version') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        s_scrub(self, PQresultErrorMessage(r), err, size);
        PQclear(r);
        goto fail;
    }
    bool has_schema = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    bool has = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    PQclear(r);
    if (!has_schema && s_exec(self, "CREATE SCHEMA collector", err, size) != 0)
        goto fail;
    long version = 0;
    if (has) {
        r = PQexec(self->conn, "SELECT version FROM collector.schema_version");
        bool one = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                   !PQgetisnull(r, 0, 0);
        if (one)
            version = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (!one || version < 1) {
            snprintf(err, size,
                     "table collector.schema_version holds no valid version "
                     "(want one row, 1..%d)",
                     S_SCHEMA_VERSION);
            goto fail;
        }
        if (version > S_SCHEMA_VERSION) {
            snprintf(err, size,
                     "collector schema version %ld is newer than this drover "
                     "understands (%d)",
                     version, S_SCHEMA_VERSION);
            goto fail;
        }
    }
    if (version < S_SCHEMA_VERSION &&
        (s_exec(self, s_schema, err, size) != 0 ||
         s_exec(self,
                has ? "UPDATE collector.schema_version SET version = " S_STR(
                          S_SCHEMA_VERSION)
                    : "CREATE TABLE collector.schema_version "
                      "(version INTEGER NOT NULL);\n"
                      "INSERT INTO collector.schema_version "
                      "VALUES (" S_STR(S_SCHEMA_VERSION) ")",
                err, size) != 0))
        goto fail;
    if (s_exec(self, "COMMIT", err, size) == 0)
        return 0;
fail:
    if (self->conn && PQtransactionStatus(self->conn) != PQTRANS_IDLE)
        PQclear(PQexec(self->conn, "ROLLBACK"));
    return -1;
}

/* ---- open / close -------------------------------------------------------- */

static int s_commit(collector_store_be_t *self);

static void
s_close(collector_store_be_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    collector_store_be_t *self = *self_p;
    if (self->conn)
        s_commit(self);
    s_disconnect(self);
    free(self->url);
    free(self->safe_url);
    if (self->password) {
        memset(self->password, 0, strlen(self->password));
        free(self->password);
    }
    free(self);
    *self_p = NULL;
}

/* Finds the URL's password with libpq's own parser and makes the masked
 * copy of the URL. */
static int
s_parse_url(collector_store_be_t *self)
{
    self->password = dv_pg_password(self->url);
    size_t n = 2 * strlen(self->url) + 8; /* room for any masking */
    self->safe_url = malloc(n);
    if (!self->safe_url)
        return -1;
    dv_pg_redact_url(self->url, self->safe_url, n);
    return 0;
}

static collector_store_be_t *
s_open(const char *url)
{
    collector_store_be_t *self = calloc(1, sizeof *self);
    if (self && (self->url = strdup(url)) != NULL)
        /* The dispatcher takes the scheme in any case; libpq only in
         * lower case (else it is no URL to it, nor its password). */
        for (char *c = self->url; *c && *c != ':'; c++)
            *c = (char)tolower((unsigned char)*c);
    if (!self || !self->url || s_parse_url(self) != 0) {
        dv_log(DV_ERROR, "collector.store_open_failed",
               DV_STR("error", "out of memory"));
        s_close(&self);
        return NULL;
    }
    char err[512];
    if (s_connect(self, err, sizeof err) != 0 ||
        s_schema_setup(self, err, sizeof err) != 0 ||
        s_prepare_all(self, err, sizeof err) != 0) {
        dv_log(DV_ERROR, "collector.store_open_failed",
               DV_STR("path", self->safe_url), DV_STR("error", err));
        s_close(&self);
        return NULL;
    }
    return self;
}

static const char *
s_path(const collector_store_be_t *self)
{
    return self->safe_url;
}

/* ---- the pipeline -------------------------------------------------------- */

/* Notes a failed write of the open group, logging the first one. */
static void
s_write_failed(collector_store_be_t *self, const PGresult *r)
{
    if (!self->failed) {
        char clean[512], sqlstate[8] = "";
        const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        snprintf(sqlstate, sizeof sqlstate, "%s", st ? st : "");
        if (r)
            s_scrub(self, PQresultErrorMessage(r), clean, sizeof clean);
        else
            s_conn_error(self, clean, sizeof clean);
        dv_log(DV_ERROR, "collector.store_write_failed", DV_STR("error", clean),
               DV_STR("sqlstate", sqlstate[0] ? sqlstate : NULL));
    }
    self->failed = true;
}

/* Reads the results of every statement queued so far (the pipeline was
 * flushed or synced). If keep is not NULL, the last statement's rows are
 * handed over there. Returns 0, or -1 when the connection broke. */
static int
s_read_pending(collector_store_be_t *self, PGresult **keep)
{
    int n = self->npending;
    self->npending = 0;
    for (int i = 0; i < n; i++) {
        bool got = false;
        PGresult *r;
        while ((r = PQgetResult(self->conn)) != NULL) {
            got = true;
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_FATAL_ERROR)
                s_write_failed(self, r);
            else if (st == PGRES_PIPELINE_ABORTED)
                self->failed = true;
            if (keep && i + 1 == n && !*keep && st == PGRES_TUPLES_OK)
                *keep = r;
            else
                PQclear(r);
        }
        if (!got) {
            /* Only a broken connection ends a statement without a result. */
            s_write_failed(self, NULL);
            return -1;
        }
    }
    return 0;
}

static int
s_begin(collector_store_be_t *self)
{
    if (self->open)
        return 0;
    if (self->lost)
        return -1;
    if (s_ensure(self) != 0) {
        self->lost = true;
        return -1;
    }
    self->failed = false;
    self->npending = 0;
    if (!PQenterPipelineMode(self->conn) ||
        !PQsendQueryParams(self->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)) {
        char clean[512];
        dv_log(DV_ERROR, "collector.store_error", DV_STR("sql", "BEGIN"),
               DV_STR("error", s_conn_error(self, clean, sizeof clean)));
        s_disconnect(self);
        self->lost = true;
        return -1;
    }
    self->npending = 1;
    self->open = true;
    return 0;
}

/* Queues a prepared write in the open group (opening one if needed), and
 * frees p's copies. */
static int
s_send(collector_store_be_t *self, int which, dv_pg_params_t *p)
{
    int rc = 0;
    if (s_begin(self) != 0) {
        rc = -1;
    } else if (p->oom) {
        /* The group fails as a whole, as for any write. */
        if (!self->failed)
            dv_log(DV_ERROR, "collector.store_write_failed",
                   DV_STR("error", "out of memory"));
        self->failed = true;
        rc = -1;
    } else if (!self->failed) {
        /* After a failure the server skips the rest of the group anyway. */
        if (!PQsendQueryPrepared(self->conn, s_names[which], p->n, p->values,
                                 p->lengths, p->formats, 0)) {
            s_write_failed(self, NULL);
            rc = -1;
        } else if (++self->npending >= S_PIPELINE_MAX) {
            if (!PQsendFlushRequest(self->conn) || PQflush(self->conn) != 0 ||
                s_read_pending(self, NULL) != 0) {
                s_write_failed(self, NULL);
                rc = -1;
            }
        }
    }
    dv_pg_params_free(p);
    return rc;
}

static int
s_commit(collector_store_be_t *self)
{
    if (self->lost) {
        self->lost = false;
        return -1;
    }
    if (!self->open)
        return 0;
    if (!self->failed &&
        PQsendQueryParams(self->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
        self->npending++;
    else if (!self->failed)
        s_write_failed(self, NULL);
    bool synced = false;
    if (PQpipelineSync(self->conn) && s_read_pending(self, NULL) == 0) {
        /* Then the sync point itself. */
        PGresult *r = PQgetResult(self->conn);
        synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
    }
    self->open = false;
    if (!synced || !PQexitPipelineMode(self->conn)) {
        /* The link broke or we lost track: a new connection next time
         * (closing this one rolls back what it had open). */
        if (!self->failed)
            s_write_failed(self, NULL);
        s_disconnect(self);
        self->failed = false;
        return -1;
    }
    /* A failed group's transaction is still open, aborted. */
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        char err[512];
        if (s_exec(self, "ROLLBACK", err, sizeof err) != 0)
            s_disconnect(self);
    }
    bool failed = self->failed;
    self->failed = false;
    return failed ? -1 : 0;
}

/* ---- writes -------------------------------------------------------------- */

/* The parameters every jobs upsert shares ($1..$7). */
static void
s_upsert(dv_pg_params_t *p, const char *broker, const dv_event_t *ev,
         const char *state)
{
    s_p_str(p, ev->id);
    s_p_str(p, ev->queue);
    s_p_str(p, ev->type);
    s_p_str(p, ev->batch);
    s_p_cstr(p, state);
    dv_pg_p_int(p, ev->ts_ms);
    s_p_cstr(p, broker);
}

static const char *
s_state_or_null(dv_state_t s)
{
    return s == DV_STATE_NONE ? NULL : dv_state_name(s);
}

static const char *
s_category(const dv_event_t *ev)
{
    return ev->has_failure && ev->failure.category
               ? dv_category_name(ev->failure.category)
               : NULL;
}

static int
s_record_event(collector_store_be_t *self, const char *broker,
               const dv_event_t *ev)
{
    dv_pg_params_t p = { 0 };
    s_p_cstr(&p, broker);
    s_p_str(&p, ev->broker);
    dv_pg_p_int(&p, (int64_t)ev->seq);
    dv_pg_p_int(&p, ev->ts_ms);
    s_p_str(&p, dv_event_topic(ev));
    s_p_str(&p, ev->id);
    s_p_str(&p, ev->queue);
    s_p_str(&p, ev->type);
    s_p_str(&p, ev->worker);
    s_p_opt(&p, ev->attempt);
    s_p_cstr(&p, s_state_or_null(ev->state));
    if (ev->has_failure) {
        s_p_cstr(&p, dv_category_name(ev->failure.category));
        s_p_str(&p, ev->failure.message);
    } else {
        dv_pg_p_null(&p);
        dv_pg_p_null(&p);
    }
    return s_send(self, S_EVENT, &p);
}

/* An attempts row's first parameters: job, attempt, worker. */
static void
s_att(dv_pg_params_t *p, const dv_event_t *ev)
{
    s_p_str(p, ev->id);
    dv_pg_p_int(p, ev->attempt);
    s_p_str(p, ev->worker);
}

/* The failure's fields ($6..$11 of S_FAILED_ATT). */
static void
s_failure(dv_pg_params_t *p, const dv_event_t *ev)
{
    const dv_failure_t *f = &ev->failure;
    if (!ev->has_failure) {
        for (int i = 0; i < 6; i++)
            dv_pg_p_null(p);
        return;
    }
    s_p_cstr(p, f->category ? dv_category_name(f->category) : NULL);
    s_p_str(p, f->message);
    if (f->exit_code >= 0)
        dv_pg_p_int(p, f->exit_code);
    else
        dv_pg_p_null(p);
    s_p_opt(p, f->signal);
    s_p_opt(p, f->http_status);
    s_p_str(p, f->key_id);
}

/* The folded start of the attempt (start, wait) as the next two
 * parameters, or two NULLs. */
static void
s_p_fold(dv_pg_params_t *p, const collector_store_fold_t *fold, bool wait)
{
    if (fold && fold->started)
        dv_pg_p_int(p, fold->started_ms);
    else
        dv_pg_p_null(p);
    if (!wait)
        return;
    if (fold && fold->started)
        dv_pg_p_int(p, fold->wait_ms);
    else
        dv_pg_p_null(p);
}

static int
s_job_event(collector_store_be_t *self, const char *broker,
            const dv_event_t *ev, int64_t run_ms,
            const collector_store_fold_t *fold)
{
    const dv_str_t msg =
        ev->has_failure ? ev->failure.message : (dv_str_t){ 0 };
    dv_pg_params_t p = { 0 };
    int rc = 0;
    if (ev->kind_enum == DV_EV_JOB_SUBMITTED) {
        s_upsert(&p, broker, ev,
                 ev->state ? dv_state_name(ev->state) : "queued");
        s_p_opt(&p, ev->run_at_ms);
        rc |= s_send(self, S_SUBMITTED, &p);
    } else if (ev->kind_enum == DV_EV_JOB_STARTED) {
        s_upsert(&p, broker, ev, "running");
        dv_pg_p_int(&p, ev->attempt);
        s_p_str(&p, ev->worker);
        dv_pg_p_int(&p, ev->wait_ms);
        rc |= s_send(self, S_STARTED, &p);
        p = (dv_pg_params_t){ 0 };
        s_att(&p, ev);
        dv_pg_p_int(&p, ev->ts_ms);
        rc |= s_send(self, S_STARTED_ATT, &p);
    } else if (ev->kind_enum == DV_EV_JOB_PROGRESS) {
        /* Progress is the attempt's; the job row does not change. */
        s_att(&p, ev);
        dv_pg_p_int(&p, ev->current);
        s_p_opt(&p, ev->total);
        s_p_str(&p, ev->message);
        rc |= s_send(self, S_PROGRESS_ATT, &p);
    } else if (ev->kind_enum == DV_EV_JOB_SUCCEEDED) {
        s_upsert(&p, broker, ev, "succeeded");
        dv_pg_p_int(&p, ev->attempt);
        s_p_opt(&p, run_ms);
        s_p_str(&p, ev->worker);
        s_p_fold(&p, fold, true);
        if (fold && fold->submitted) { /* the job's submit, held back */
            dv_pg_p_int(&p, fold->submitted_ms);
            s_p_opt(&p, fold->run_at_ms);
        } else {
            dv_pg_p_null(&p);
            dv_pg_p_null(&p);
        }
        rc |= s_send(self, S_SUCCEEDED, &p);
        /* A success that carries its start had no attempts row: the jobs
         * row says it all (see collector_store_sqlite.c). */
        if (ev->attempt > 0 && !(fold && fold->started)) {
            p = (dv_pg_params_t){ 0 };
            s_att(&p, ev);
            dv_pg_p_int(&p, ev->ts_ms);
            s_p_opt(&p, run_ms);
            s_p_fold(&p, fold, false);
            rc |= s_send(self, S_SUCCEEDED_ATT, &p);
        }
    } else if (ev->kind_enum == DV_EV_JOB_FAILED) {
        s_upsert(&p, broker, ev,
                 ev->state ? dv_state_name(ev->state) : "scheduled");
        dv_pg_p_int(&p, ev->attempt);
        s_p_cstr(&p, s_category(ev));
        s_p_str(&p, msg);
        s_p_str(&p, ev->worker);
        s_p_opt(&p, ev->run_at_ms);
        s_p_fold(&p, fold, true);
        rc |= s_send(self, S_FAILED, &p);
        if (ev->attempt > 0) {
            p = (dv_pg_params_t){ 0 };
            s_att(&p, ev);
            dv_pg_p_int(&p, ev->ts_ms);
            s_p_opt(&p, run_ms);
            s_failure(&p, ev);
            s_p_fold(&p, fold, false);
            rc |= s_send(self, S_FAILED_ATT, &p);
        }
    } else if (ev->kind_enum == DV_EV_JOB_DEAD) {
        s_upsert(&p, broker, ev, "dead");
        s_p_cstr(&p, s_category(ev));
        s_p_str(&p, msg);
        dv_pg_p_int(&p, ev->attempt);
        rc |= s_send(self, S_DEAD, &p);
    } else if (ev->kind_enum == DV_EV_JOB_CANCELLED) {
        s_upsert(&p, broker, ev, "cancelled");
        s_p_str(&p, msg);
        rc |= s_send(self, S_CANCELLED, &p);
        if (ev->attempt > 0) {
            p = (dv_pg_params_t){ 0 };
            s_p_str(&p, ev->id);
            dv_pg_p_int(&p, ev->ts_ms);
            dv_pg_p_int(&p, ev->attempt);
            rc |= s_send(self, S_CANCELLED_ATT, &p);
        }
    } else if (ev->kind_enum == DV_EV_JOB_RETRIED) {
        s_upsert(&p, broker, ev, "queued");
        rc |= s_send(self, S_RETRIED, &p);
    } else if (ev->kind_enum == DV_EV_JOB_RELEASED) {
        s_upsert(&p, broker, ev,
                 ev->state ? dv_state_name(ev->state) : "queued");
        rc |= s_send(self, S_RELEASED, &p);
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
s_broker_save(collector_store_be_t *self, const char *endpoint,
              const char *instance, uint64_t seq)
{
    dv_pg_params_t p = { 0 };
    s_p_cstr(&p, endpoint);
    /* The instance as it is, even empty (bound as text in SQLite too). */
    p.values[p.n] = instance;
    p.lengths[p.n] = 0;
    p.formats[p.n] = 0;
    p.n++;
    dv_pg_p_int(&p, (int64_t)seq);
    dv_pg_p_int(&p, dv_now_ms());
    return s_send(self, S_BROKER_SAVE, &p);
}

static PGresult *s_query(collector_store_be_t *self, const char *name,
                         const char *sql, dv_pg_params_t *p);

static int
s_backfill(collector_store_be_t *self, const char *broker,
           const dv_finished_job_t *j)
{
    if (s_begin(self) != 0)
        return -1;
    dv_pg_params_t p = { 0 };
    dv_pg_p_str(&p, j->id);
    dv_pg_p_str(&p, j->queue);
    dv_pg_p_str(&p, j->type);
    dv_pg_p_str(&p, j->batch);
    dv_pg_p_text(&p, dv_state_name(j->state));
    dv_pg_p_int(&p, j->attempt);
    dv_pg_p_int(&p, j->finished_ms);
    dv_pg_p_str(&p, j->worker);
    if (j->run_ms > 0)
        dv_pg_p_int(&p, j->run_ms);
    else
        dv_pg_p_null(&p);
    dv_pg_p_text(&p, j->category ? dv_category_name(j->category) : NULL);
    dv_pg_p_str(&p, j->message);
    dv_pg_p_text(&p, broker);
    PGresult *r = s_query(self, s_names[S_BACKFILL], NULL, &p);
    if (!r) {
        self->failed = true; /* the group is rolled back at commit */
        return -1;
    }
    int written = PQntuples(r) > 0;
    PQclear(r);
    return written;
}

/* ---- reads --------------------------------------------------------------- */

/* Runs a read, prepared (name) or not (sql), and returns its rows (the
 * caller clears them), or NULL after logging collector.store_read_failed.
 * Inside a group the read is queued behind the group's writes and the
 * pipeline flushed, so it sees them. */
static PGresult *
s_query(collector_store_be_t *self, const char *name, const char *sql,
        dv_pg_params_t *p)
{
    PGresult *r = NULL;
    char clean[512] = "";
    if (p->oom) {
        snprintf(clean, sizeof clean, "out of memory");
    } else if (self->open && !self->failed) {
        bool sent =
            name ? PQsendQueryPrepared(self->conn, name, p->n, p->values,
                                       p->lengths, p->formats, 0)
                 : PQsendQueryParams(self->conn, sql, p->n, NULL, p->values,
                                     p->lengths, p->formats, 0);
        if (sent)
            self->npending++;
        if (!sent || !PQsendFlushRequest(self->conn) ||
            PQflush(self->conn) != 0 || s_read_pending(self, &r) != 0 || !r)
            s_conn_error(self, clean, sizeof clean);
    } else if (self->open) {
        snprintf(clean, sizeof clean, "a write of this group failed");
    } else if (s_ensure(self) != 0) {
        snprintf(clean, sizeof clean, "not connected");
    } else {
        /* A connection found broken (a server restarted since the last
         * call) is opened again and the read tried once more. */
        for (int tries = 0; tries < 2 && !r; tries++) {
            if (tries > 0 && (PQstatus(self->conn) != CONNECTION_BAD ||
                              (s_disconnect(self), s_ensure(self) != 0)))
                break;
            r = name ? PQexecPrepared(self->conn, name, p->n, p->values,
                                      p->lengths, p->formats, 0)
                     : PQexecParams(self->conn, sql, p->n, NULL, p->values,
                                    p->lengths, p->formats, 0);
            if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                s_scrub(self,
                        r ? PQresultErrorMessage(r)
                          : PQerrorMessage(self->conn),
                        clean, sizeof clean);
                PQclear(r);
                r = NULL;
            }
        }
    }
    dv_pg_params_free(p);
    if (!r)
        dv_log(DV_ERROR, "collector.store_read_failed",
               DV_STR("sql", sql ? sql : name), DV_STR("error", clean));
    return r;
}

static int64_t
s_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? 0
               : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int
s_broker_load(collector_store_be_t *self, const char *endpoint, char *instance,
              size_t size, uint64_t *seq, int64_t *saved_ms)
{
    dv_pg_params_t p = { 0 };
    s_p_cstr(&p, endpoint);
    PGresult *r = s_query(self, s_names[S_BROKER_LOAD], NULL, &p);
    if (!r)
        return -1;
    int found = 0;
    if (PQntuples(r) > 0) {
        snprintf(instance, size, "%s", PQgetvalue(r, 0, 0));
        *seq = (uint64_t)s_int(r, 0, 1);
        *saved_ms = s_int(r, 0, 2);
        found = 1;
    }
    PQclear(r);
    return found;
}

/* Type OIDs (pg_type.h is a server header). */
enum { S_INT8 = 20, S_INT2 = 21, S_INT4 = 23, S_FLOAT4 = 700, S_FLOAT8 = 701 };

/* Column i of row as JSON, by its type: null, integer, real or string, as
 * SQLite's storage classes give them. */
static json_t *
s_col(const PGresult *r, int row, int i)
{
    if (PQgetisnull(r, row, i))
        return json_null();
    const char *v = PQgetvalue(r, row, i);
    switch (PQftype(r, i)) {
    case S_INT2:
    case S_INT4:
    case S_INT8:
        return json_integer(strtoll(v, NULL, 10));
    case S_FLOAT4:
    case S_FLOAT8:
        return json_real(strtod(v, NULL));
    default:
        return json_stringn(v, (size_t)PQgetlength(r, row, i));
    }
}

/* Every row as an object keyed by column names; clears r. Returns a new
 * array, or NULL when out of memory (logged). */
static json_t *
s_rows(PGresult *r)
{
    json_t *a = json_array();
    int rows = PQntuples(r), cols = PQnfields(r);
    for (int row = 0; a && row < rows; row++) {
        json_t *o = json_object();
        int rc = o ? 0 : -1;
        for (int i = 0; i < cols && !rc; i++)
            rc |= json_object_set_new(o, PQfname(r, i), s_col(r, row, i));
        if (rc || json_array_append_new(a, o) != 0) {
            if (rc)
                json_decref(o);
            json_decref(a);
            a = NULL;
        }
    }
    PQclear(r);
    if (!a)
        dv_log(DV_ERROR, "collector.store_read_failed",
               DV_STR("error", "out of memory"));
    return a;
}

#define S_JOB_COLUMNS                                                          \
    "id, queue, type, batch, state, attempts, round, submitted_at, "           \
    "started_at, finished_at, updated_at, run_at, worker, wait_ms, run_ms, "   \
    "category, error, broker"

/* Text compares as in SQLite (bytes), not by the database's collation. */
#define S_BYTES " COLLATE \"C\""

static json_t *
s_jobs(collector_store_be_t *self, const collector_jobs_filter_t *f)
{
    /* The filters but the state, the same in each state's branch. */
    char where[200];
    size_t w = 0;
    where[0] = '\0';
    dv_pg_params_t p = { 0 };
    int state_param = 0;
    if (f->state) {
        s_p_cstr(&p, f->state);
        state_param = p.n;
    }
    const char *strs[3] = { f->queue, f->type, f->batch };
    const char *cols[3] = { "queue", "type", "batch" };
    for (int i = 0; i < 3; i++) {
        if (!strs[i])
            continue;
        s_p_cstr(&p, strs[i]);
        /* An empty filter matches nothing, as "= ''" does in SQLite
         * (the empty string binds as NULL here). */
        w +=
            (size_t)snprintf(where + w, sizeof where - w,
                             " AND %s = coalesce($%d::text, '')", cols[i], p.n);
    }
    if (f->since_ms > 0) {
        dv_pg_p_int(&p, f->since_ms);
        snprintf(where + w, sizeof where - w, " AND updated_at >= $%d::bigint",
                 p.n);
    }
    dv_pg_p_int(&p, f->limit);
    char branch[480], tail[96], one[32];
    snprintf(branch, sizeof branch,
             "SELECT " S_JOB_COLUMNS " FROM collector.jobs WHERE state = %%s%s "
             "ORDER BY updated_at DESC, id" S_BYTES " DESC LIMIT $%d::bigint",
             where, p.n);
    snprintf(tail, sizeof tail,
             ") AS j ORDER BY updated_at DESC, id" S_BYTES
             " DESC LIMIT $%d::bigint",
             p.n);
    char sql[COLLECTOR_STORE_ALL_STATES_SQL];
    if (f->state) {
        snprintf(one, sizeof one, "coalesce($%d::text, '')", state_param);
        snprintf(sql, sizeof sql, branch, one);
    } else if (collector_store_all_states(sql, sizeof sql, branch,
                                          "SELECT * FROM (", "(", ")",
                                          tail) != 0) {
        return NULL;
    }
    PGresult *r = s_query(self, NULL, sql, &p);
    return r ? s_rows(r) : NULL;
}

/* The rows of a read by one job id. */
static json_t *
s_rows_by_id(collector_store_be_t *self, const char *sql, const char *id)
{
    dv_pg_params_t p = { 0 };
    s_p_cstr(&p, id);
    PGresult *r = s_query(self, NULL, sql, &p);
    return r ? s_rows(r) : NULL;
}

static json_t *
s_job(collector_store_be_t *self, const char *id, int *found)
{
    *found = -1;
    json_t *rows = s_rows_by_id(
        self,
        "SELECT " S_JOB_COLUMNS " FROM collector.jobs WHERE id = $1::text", id);
    if (!rows)
        return NULL;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        *found = 0;
        return NULL;
    }
    json_t *job = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    json_t *attempts = s_rows_by_id(
        self,
        "SELECT round, attempt, worker, started_at, finished_at, "
        "coalesce(run_ms, finished_at - started_at) AS run_ms, "
        "outcome, category, message, exit_code, signal, "
        "http_status, key_id, progress_current, progress_total, "
        "progress_message FROM collector.attempts WHERE job_id = $1::text "
        "ORDER BY round, attempt",
        id);
    json_t *events = s_rows_by_id(
        self,
        "SELECT ts, kind, worker, attempt, state, category, message "
        "FROM collector.events WHERE job = $1::text ORDER BY ts, seq "
        "LIMIT 200",
        id);
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
    dv_pg_params_t p = { 0 };
    s_p_cstr(&p, name);
    dv_pg_p_int(&p, since_ms);
    PGresult *r = s_query(
        self, NULL,
        "SELECT state, count(*), min(submitted_at), max(updated_at), "
        "min(started_at), count(*) FILTER (WHERE finished_at >= $2::bigint) "
        "FROM collector.jobs WHERE batch = coalesce($1::text, '') "
        "GROUP BY state",
        &p);
    if (!r)
        return NULL;
    json_t *counts = json_object();
    int oom = counts ? 0 : -1;
    const char *states[] = { "queued",    "scheduled", "running",
                             "succeeded", "dead",      "cancelled" };
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        oom |= json_object_set_new(counts, states[i], json_integer(0));
    int64_t total = 0, first = 0, last = 0, first_started = 0, recent = 0;
    for (int row = 0; row < PQntuples(r); row++) {
        int64_t n = s_int(r, row, 1);
        oom |=
            json_object_set_new(counts, PQgetvalue(r, row, 0), json_integer(n));
        total += n;
        int64_t a = s_int(r, row, 2);
        int64_t b = s_int(r, row, 3);
        int64_t c = s_int(r, row, 4);
        if (a && (!first || a < first))
            first = a;
        if (b > last)
            last = b;
        if (c && (!first_started || c < first_started))
            first_started = c;
        recent += s_int(r, row, 5);
    }
    PQclear(r);
    if (oom) {
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
    dv_pg_params_t p = { 0 };
    dv_pg_p_int(&p, since_ms);
    PGresult *r =
        s_query(self, NULL,
                "SELECT coalesce(category, 'unknown')" S_BYTES " AS category, "
                "count(*) AS count FROM collector.attempts "
                "WHERE finished_at >= $1::bigint AND outcome = 'failed' "
                "GROUP BY 1 ORDER BY 2 DESC, 1",
                &p);
    return r ? s_rows(r) : NULL;
}

/* One statement, so one transaction and one round trip: at most max_rows
 * jobs with their attempts, and at most max_rows events (by their physical
 * address: the table has no key). */
static int
s_expire(collector_store_be_t *self, int64_t cutoff_ms, int max_rows)
{
    static const char sql[] =
        "WITH j AS (DELETE FROM collector.jobs WHERE id IN "
        "(SELECT id FROM collector.jobs WHERE state IN (" COLLECTOR_STORE_STATES
        ") AND updated_at < $1::bigint LIMIT $2::bigint) RETURNING id), "
        "a AS (DELETE FROM collector.attempts WHERE job_id IN "
        "(SELECT id FROM j)), "
        "e AS (DELETE FROM collector.events WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM collector.events WHERE ts < $1 LIMIT $2)) "
        "RETURNING 1) "
        "SELECT (SELECT count(*) FROM j) + (SELECT count(*) FROM e)";
    if (s_commit(self) != 0)
        return -1;
    if (s_ensure(self) != 0)
        return -1;
    dv_pg_params_t p = { 0 };
    dv_pg_p_int(&p, cutoff_ms);
    dv_pg_p_int(&p, max_rows);
    PGresult *r = PQexecParams(self->conn, sql, p.n, NULL, p.values, p.lengths,
                               p.formats, 0);
    int deleted = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        deleted = (int)s_int(r, 0, 0);
    } else {
        char clean[512];
        s_scrub(self, r ? PQresultErrorMessage(r) : PQerrorMessage(self->conn),
                clean, sizeof clean);
        dv_log(DV_ERROR, "collector.store_expire_failed",
               DV_STR("error", clean));
    }
    PQclear(r);
    return deleted;
}

const collector_store_ops_t collector_store_pg_ops = {
    .name = "postgres",
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
