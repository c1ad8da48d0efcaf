/* store_pg - the PostgreSQL store, over libpq.
 *
 * The same tables, columns and partial indexes as store_sqlite.c, in
 * PostgreSQL types, so the SQL in docs/operations.md works on both. The
 * schema version lives in a one-row table schema_version (SQLite keeps it in
 * PRAGMA user_version); it is read, and the schema created or migrated, at
 * open inside one transaction that holds an advisory lock, so two brokers
 * starting at once on an empty database do not race.
 *
 * Write groups go out in libpq pipeline mode: begin() enters the pipeline
 * and queues BEGIN, every write queues one prepared statement (nothing
 * waits for the server), and commit() queues COMMIT and a sync point, then
 * reads every result: one round trip per group, however many writes. A
 * statement that fails makes the server skip the rest of the group until
 * the sync point, and commit() rolls back and returns the first failure.
 * So a write call returns an error only when it could not even be queued
 * (the connection is gone); the rest surfaces at commit(), as the
 * interface allows. A read inside a group (find_key, get) is queued behind
 * the writes and the pipeline flushed: it sees them, at the cost of a round
 * trip.
 *
 * Durability: synchronous_commit stays the server's (on by default), so a
 * commit returns once the server has flushed its WAL; BROKER_SYNC_OFF (tests
 * and benchmarks) sets it off for the session. NORMAL keeps it on: a
 * broker's crash loses nothing either way, and the server's durability is
 * its operator's setting.
 *
 * A lost connection: the call that finds it returns DV_ETRANSIENT (and a
 * group in flight fails with it at commit()); the next begin() or read
 * connects again, once, with a bounded connect timeout, and prepares the
 * statements again; after a failed try, calls within the next second
 * return DV_ETRANSIENT without trying. The store never sleeps: the broker
 * retries with its own backoff. Reads are synchronous round trips: on the
 * broker's loop thread each costs one round trip to the server.
 *
 * Payloads and results are BYTEA sent as binary parameters and read as
 * binary results, so NUL bytes and high bits pass untouched and nothing is
 * escaped. Text that PostgreSQL would refuse (not valid UTF-8, or holding
 * a NUL: a handler's failure message may be anything) is stored with
 * U+FFFD for each bad byte rather than failing its group at every retry.
 * The URL's password never appears in an error text or a log line.
 */
#include "broker_store.h"
#include "dv_err.h"
#include "dv_log.h"
#include "dv_pg.h"

#include <ctype.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_SCHEMA_VERSION 6
#define S_STR_(x)        #x
#define S_STR(x)         S_STR_(x)
/* The advisory lock taken while the schema is created or migrated: "drover"
 * in ASCII, so it does not collide with an application's own keys. */
#define S_SCHEMA_LOCK      "110386619737458"
#define S_CONNECT_TIMEOUT  "5" /* seconds, per (re)connect */
#define S_APPLICATION_NAME "drover"
#define S_RETRY_MS         1000 /* between reconnect tries after a failure */

/* Names as stored; must match dv_state_name() and dv_category_name() (and
 * store_sqlite.c). */
static const char *s_state_names[DV_STATE_COUNT_] = {
    NULL,     "queued", "scheduled", "running", "succeeded",
    "failed", "dead",   "cancelled", "unknown", "waiting",
};

static const char *s_category_names[DV_CAT_COUNT_] = {
    NULL,
    "timeout",
    "rate_limited",
    "auth",
    "invalid_input",
    "upstream",
    "resource_exhausted",
    "crashed",
    "lost",
    "handler",
    "unknown_type",
    "cancelled",
};

/* Schema version 6, as store_sqlite.c's, in PostgreSQL types: epoch
 * milliseconds are BIGINT, flags stay INTEGER (0/1, so a query written for
 * the SQLite store reads the same here), blobs are BYTEA. */
#define S_OWNER_KEY_INDEX                                                      \
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_owner_key\n"                       \
    "    ON jobs ((coalesce(owner, '')), key) WHERE key IS NOT NULL;\n"

/* Periodic jobs the broker fires (version 6), as in store_sqlite.c. */
#define S_SCHEDULES_TABLE                                                      \
    "CREATE TABLE IF NOT EXISTS schedules (\n"                                 \
    "    owner TEXT NOT NULL DEFAULT '',\n"                                    \
    "    name TEXT NOT NULL,\n"                                                \
    "    cron TEXT,\n"                                                         \
    "    every_ms BIGINT NOT NULL DEFAULT 0,\n"                                \
    "    tz TEXT,\n"                                                           \
    "    anchor_ms BIGINT NOT NULL,\n"                                         \
    "    queue TEXT NOT NULL,\n"                                               \
    "    type TEXT NOT NULL,\n"                                                \
    "    payload BYTEA,\n"                                                     \
    "    priority INTEGER NOT NULL,\n"                                         \
    "    max_attempts INTEGER NOT NULL,\n"                                     \
    "    timeout_ms BIGINT NOT NULL,\n"                                        \
    "    no_overlap INTEGER NOT NULL,\n"                                       \
    "    catch_up TEXT NOT NULL,\n"                                            \
    "    paused INTEGER NOT NULL,\n"                                           \
    "    created_at BIGINT NOT NULL,\n"                                        \
    "    next_at BIGINT,\n"                                                    \
    "    last_fire_at BIGINT,\n"                                               \
    "    last_job TEXT,\n"                                                     \
    "    firings BIGINT NOT NULL DEFAULT 0,\n"                                 \
    "    skipped BIGINT NOT NULL DEFAULT 0,\n"                                 \
    "    last_lag_ms BIGINT,\n"                                                \
    "    PRIMARY KEY (owner, name)\n"                                          \
    ");\n"
/* Batch records (broker_batchrec_t) by (owner, name), owner '' for none,
 * and a batch's jobs in id order. Made at every start, not by a version.
 * jobs_batch (on batch alone) is dropped: jobs_batch_id serves
 * "batch = ?" as well, and it cost each write of a batch's job an entry. */
#define S_BATCHES_SCHEMA                                                       \
    "CREATE TABLE IF NOT EXISTS batches (\n"                                   \
    "    owner TEXT NOT NULL,\n"                                               \
    "    name TEXT NOT NULL,\n"                                                \
    "    state TEXT NOT NULL,\n"                                               \
    "    on_complete TEXT,\n"                                                  \
    "    on_success TEXT,\n"                                                   \
    "    on_failure TEXT,\n"                                                   \
    "    queue TEXT NOT NULL,\n"                                               \
    "    payload BYTEA,\n"                                                     \
    "    complete_id TEXT,\n"                                                  \
    "    success_id TEXT,\n"                                                   \
    "    failure_id TEXT,\n"                                                   \
    "    created_at BIGINT NOT NULL,\n"                                        \
    "    closed_at BIGINT,\n"                                                  \
    "    done_at BIGINT,\n"                                                    \
    "    since_id TEXT,\n"                                                     \
    "    PRIMARY KEY (owner, name)\n"                                          \
    ");\n"                                                                     \
    "CREATE INDEX IF NOT EXISTS jobs_batch_id ON jobs (batch, id)\n"           \
    "    WHERE batch IS NOT NULL;\n"                                           \
    "DROP INDEX IF EXISTS jobs_batch;\n"

static const char s_schema[] =
    "CREATE TABLE IF NOT EXISTS jobs (\n"
    "    id TEXT PRIMARY KEY,\n"
    "    queue TEXT NOT NULL,\n"
    "    type TEXT NOT NULL,\n"
    "    state TEXT NOT NULL,\n"
    "    priority INTEGER NOT NULL,\n"
    "    payload BYTEA,\n"
    "    key TEXT,\n"
    "    batch TEXT,\n"
    "    trace TEXT,\n"
    "    created_at BIGINT NOT NULL,\n"
    "    run_at BIGINT NOT NULL,\n"
    "    attempt INTEGER NOT NULL,\n"
    "    max_attempts INTEGER NOT NULL,\n"
    "    timeout_ms BIGINT NOT NULL,\n"
    "    backoff_base_ms BIGINT,\n"
    "    backoff_factor DOUBLE PRECISION,\n"
    "    backoff_cap_ms BIGINT,\n"
    "    backoff_jitter INTEGER,\n"
    "    result_ttl_ms BIGINT NOT NULL,\n"
    "    worker TEXT,\n"
    "    started_at BIGINT,\n"
    "    finished_at BIGINT,\n"
    "    expires_at BIGINT,\n"
    "    result BYTEA,\n"
    "    category TEXT,\n"
    "    error TEXT,\n"
    "    retry_after_ms BIGINT,\n"
    "    exit_code INTEGER,\n"
    "    signal INTEGER,\n"
    "    http_status INTEGER,\n"
    "    owner TEXT,\n"
    "    schedule TEXT\n" /* the schedule that fired it (version 6) */
    ");\n" S_OWNER_KEY_INDEX
    "CREATE INDEX IF NOT EXISTS jobs_live ON jobs (id)\n"
    "    WHERE finished_at IS NULL;\n"
    "CREATE INDEX IF NOT EXISTS jobs_expires ON jobs (expires_at)\n"
    "    WHERE expires_at IS NOT NULL;\n"
    "CREATE TABLE IF NOT EXISTS attempts (\n"
    "    job_id TEXT NOT NULL,\n"
    "    attempt INTEGER NOT NULL,\n"
    "    worker TEXT,\n"
    "    started_at BIGINT,\n"
    "    finished_at BIGINT,\n"
    "    outcome TEXT NOT NULL,\n"
    "    category TEXT,\n"
    "    message TEXT,\n"
    "    retryable INTEGER,\n"
    "    retry_after_ms BIGINT,\n"
    "    exit_code INTEGER,\n"
    "    signal INTEGER,\n"
    "    http_status INTEGER,\n"
    "    key_id TEXT,\n"
    /* An attempt's details and stderr tail (version 5). */
    "    details TEXT,\n"
    "    stderr TEXT,\n"
    "    PRIMARY KEY (job_id, attempt)\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS queues (\n"
    "    name TEXT PRIMARY KEY,\n"
    "    paused INTEGER NOT NULL DEFAULT 0,\n"
    "    rate DOUBLE PRECISION NOT NULL DEFAULT 0,\n"
    "    max_running INTEGER NOT NULL DEFAULT 0\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS meta (\n"
    "    name TEXT PRIMARY KEY,\n"
    "    value BIGINT NOT NULL\n"
    ");\n"
    /* The fleet's API-key state (version 4); proven is 0/1 like every
     * flag here. */
    "CREATE TABLE IF NOT EXISTS api_keys (\n"
    "    hash TEXT PRIMARY KEY,\n"
    "    id TEXT NOT NULL,\n"
    "    cool_until_ms BIGINT,\n"
    "    disabled_status INTEGER,\n"
    "    disabled_ms BIGINT,\n"
    "    learned_limit INTEGER,\n"
    "    learned_ms BIGINT,\n"
    "    proven INTEGER,\n"
    "    updated_ms BIGINT\n"
    ");\n" S_SCHEDULES_TABLE;

/* Job dependencies: table deps (the block at the end of this file). The
 * column "any" is quoted: ANY is a keyword in PostgreSQL. */
#define S_DEPS_SCHEMA                                                          \
    "CREATE TABLE IF NOT EXISTS deps (\n"                                      \
    "    job_id TEXT NOT NULL,\n"                                              \
    "    after_id TEXT NOT NULL,\n"                                            \
    "    \"any\" BOOLEAN NOT NULL,\n"                                          \
    "    PRIMARY KEY (job_id, after_id)\n"                                     \
    ");\n"                                                                     \
    "CREATE INDEX IF NOT EXISTS deps_after ON deps(after_id);\n"

/* The prepared statements, by purpose. */
typedef enum {
    S_INSERT,
    S_RUNNING,
    S_WAITING,
    S_FINISHED,
    S_ATTEMPT,
    S_REPLAY,
    S_FIND_KEY,
    S_GET,
    S_ATTEMPTS,
    S_EXPIRE,
    S_LOAD,
    S_LIST,
    S_LIST_FINISHED,
    S_SET_QUEUE,
    S_LOAD_QUEUES,
    S_GENERATION,
    S_PROBE,
    S_FENCE,
    S_SET_KEY,
    S_LOAD_KEYS,
    S_SET_SCHEDULE,
    S_DELETE_SCHEDULE,
    S_LOAD_SCHEDULES,
    S_COUNT_
} s_stmt_t;

static const char *s_stmt_names[S_COUNT_] = {
    "drover_insert",         "drover_running",
    "drover_waiting",        "drover_finished",
    "drover_attempt",        "drover_replay",
    "drover_find_key",       "drover_get",
    "drover_attempts",       "drover_expire",
    "drover_load",           "drover_list",
    "drover_list_finished",  "drover_set_queue",
    "drover_load_queues",    "drover_generation",
    "drover_probe",          "drover_fence",
    "drover_set_key",        "drover_load_keys",
    "drover_set_schedule",   "drover_delete_schedule",
    "drover_load_schedules",
};

/* As in store_sqlite.c: the failure columns are set from $6..$11 when $5 is
 * true, else kept. The casts name the types PostgreSQL cannot infer from a
 * CASE. */
#define S_FAILURE_SET                                                          \
    "category = CASE WHEN $5::boolean THEN $6::text ELSE category END, "       \
    "error = CASE WHEN $5::boolean THEN $7::text ELSE error END, "             \
    "retry_after_ms = CASE WHEN $5::boolean THEN $8::bigint "                  \
    "ELSE retry_after_ms END, "                                                \
    "exit_code = CASE WHEN $5::boolean THEN $9::integer ELSE exit_code END, "  \
    "signal = CASE WHEN $5::boolean THEN $10::integer ELSE signal END, "       \
    "http_status = CASE WHEN $5::boolean THEN $11::integer "                   \
    "ELSE http_status END "

#define S_JOBREC_COLUMNS                                                       \
    "id, queue, type, key, batch, trace, payload, state, priority, "           \
    "created_at, run_at, attempt, max_attempts, timeout_ms, "                  \
    "backoff_base_ms, backoff_factor, backoff_cap_ms, backoff_jitter, "        \
    "result_ttl_ms, worker, owner, schedule"

#define S_SCHEDULE_COLUMNS                                                     \
    "owner, name, cron, every_ms, tz, anchor_ms, queue, type, payload, "       \
    "priority, max_attempts, timeout_ms, no_overlap, catch_up, paused, "       \
    "created_at, next_at, last_fire_at, last_job, firings, skipped, "          \
    "last_lag_ms"

/* A job of a batch whose record is not done is kept past its result_ttl
 * (its results are read until the batch's callbacks ended). */
#define S_BATCH_KEEPS                                                          \
    "AND (batch IS NULL OR NOT EXISTS (SELECT 1 FROM batches b "               \
    "WHERE b.owner = coalesce(jobs.owner, '') AND b.name = jobs.batch "        \
    "AND b.state <> 'done')) "

static const char *s_sql[S_COUNT_] = {
    [S_INSERT] = "INSERT INTO jobs (" S_JOBREC_COLUMNS ") VALUES "
                 "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
                 "$14, $15, $16, $17, $18, $19, $20, $21, $22)",
    [S_RUNNING] = "UPDATE jobs SET state = 'running', attempt = $2, "
                  "worker = $3, started_at = $4 WHERE id = $1",
    [S_WAITING] =
        "UPDATE jobs SET state = $2, run_at = $3, attempt = $4, "
        "worker = NULL, finished_at = NULL, expires_at = NULL, " S_FAILURE_SET
        "WHERE id = $1",
    [S_FINISHED] =
        "UPDATE jobs SET state = $2, attempt = $3, result = $4, "
        "finished_at = $12::bigint, "
        "expires_at = $12::bigint + result_ttl_ms, "
        "worker = coalesce($13, worker), "
        "started_at = coalesce($14::bigint, started_at), " S_FAILURE_SET
        "WHERE id = $1",
    /* A report repeated after a reconnect replaces the row (SQLite's
     * INSERT OR REPLACE). */
    [S_ATTEMPT] = "INSERT INTO attempts (job_id, attempt, worker, "
                  "started_at, finished_at, outcome, category, message, "
                  "retryable, retry_after_ms, exit_code, signal, "
                  "http_status, key_id, details, stderr) VALUES ($1, $2, $3, "
                  "$4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) "
                  "ON CONFLICT (job_id, attempt) DO UPDATE SET "
                  "worker = EXCLUDED.worker, "
                  "started_at = EXCLUDED.started_at, "
                  "finished_at = EXCLUDED.finished_at, "
                  "outcome = EXCLUDED.outcome, "
                  "category = EXCLUDED.category, "
                  "message = EXCLUDED.message, "
                  "retryable = EXCLUDED.retryable, "
                  "retry_after_ms = EXCLUDED.retry_after_ms, "
                  "exit_code = EXCLUDED.exit_code, "
                  "signal = EXCLUDED.signal, "
                  "http_status = EXCLUDED.http_status, "
                  "key_id = EXCLUDED.key_id, "
                  "details = EXCLUDED.details, "
                  "stderr = EXCLUDED.stderr",
    [S_REPLAY] = "SELECT " S_JOBREC_COLUMNS " FROM jobs "
                 "WHERE finished_at IS NULL "
                 "AND state IN ('queued', 'scheduled', 'running', 'waiting') "
                 "ORDER BY id",
    [S_FIND_KEY] = "SELECT id FROM jobs WHERE coalesce(owner, '') = $2 "
                   "AND key = $1",
    [S_GET] = "SELECT id, queue, type, state, attempt, result, category, "
              "error, finished_at, owner FROM jobs WHERE id = $1",
    /* The last $2 attempts of a job, oldest first. */
    [S_ATTEMPTS] = "SELECT * FROM (SELECT attempt, worker, started_at, "
                   "finished_at, outcome, category, message, retryable, "
                   "retry_after_ms, exit_code, signal, http_status, key_id, "
                   "details, stderr FROM attempts WHERE job_id = $1 "
                   "ORDER BY attempt DESC LIMIT $2) AS last ORDER BY attempt",
    /* One statement, so its own transaction: the chunk of expired jobs,
     * oldest first, and their attempts; returns how many jobs went. */
    [S_EXPIRE] = "WITH gone AS (DELETE FROM jobs WHERE id IN ("
                 "SELECT id FROM jobs WHERE expires_at <= $1 " S_BATCH_KEEPS
                 "ORDER BY expires_at, id LIMIT $2) RETURNING id), "
                 "history AS (DELETE FROM attempts "
                 "WHERE job_id IN (SELECT id FROM gone)), "
                 "deps_gone AS (DELETE FROM deps "
                 "WHERE job_id IN (SELECT id FROM gone)) "
                 "SELECT count(*) FROM gone",
    [S_LOAD] = "SELECT " S_JOBREC_COLUMNS " FROM jobs WHERE id = $1",
    [S_LIST] = "SELECT id FROM jobs WHERE queue = $1 AND state = $2 "
               "AND finished_at IS NOT NULL AND state <> 'succeeded' "
               "ORDER BY id LIMIT $3",
    [S_LIST_FINISHED] =
        "SELECT id, queue, type, batch, state, attempt, worker, started_at, "
        "finished_at, category, error FROM jobs WHERE finished_at IS NOT NULL "
        "AND finished_at >= $1 AND finished_at <= $2 AND (finished_at > $1 "
        "OR $3::text IS NULL OR id > $3) ORDER BY finished_at, id LIMIT $4",
    [S_SET_QUEUE] = "INSERT INTO queues (name, paused, rate, max_running) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET "
                    "paused = EXCLUDED.paused, rate = EXCLUDED.rate, "
                    "max_running = EXCLUDED.max_running",
    [S_LOAD_QUEUES] = "SELECT name, paused, rate, max_running FROM queues",
    [S_GENERATION] = "INSERT INTO meta (name, value) VALUES ('generation', 1) "
                     "ON CONFLICT (name) DO UPDATE SET value = meta.value + 1 "
                     "RETURNING value",
    /* Rewrites the schema version with its own value: WAL to flush at
     * commit like any group, and no job changes. */
    [S_PROBE] = "UPDATE schema_version SET version = version",
    [S_FENCE] = "SELECT drover_fence($1)",
    [S_SET_KEY] = "INSERT INTO api_keys (hash, id, cool_until_ms, "
                  "disabled_status, disabled_ms, learned_limit, learned_ms, "
                  "proven, updated_ms) "
                  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                  "ON CONFLICT (hash) DO UPDATE SET id = EXCLUDED.id, "
                  "cool_until_ms = EXCLUDED.cool_until_ms, "
                  "disabled_status = EXCLUDED.disabled_status, "
                  "disabled_ms = EXCLUDED.disabled_ms, "
                  "learned_limit = EXCLUDED.learned_limit, "
                  "learned_ms = EXCLUDED.learned_ms, "
                  "proven = EXCLUDED.proven, "
                  "updated_ms = EXCLUDED.updated_ms",
    [S_LOAD_KEYS] = "SELECT hash, id, cool_until_ms, disabled_status, "
                    "disabled_ms, learned_limit, learned_ms, proven, "
                    "updated_ms FROM api_keys",
    /* Schedules (broker_schedule.c). */
    [S_SET_SCHEDULE] =
        "INSERT INTO schedules (" S_SCHEDULE_COLUMNS ") VALUES ($1, $2, $3, "
        "$4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
        "$19, $20, $21, $22) ON CONFLICT (owner, name) DO UPDATE SET "
        "cron = $3, every_ms = $4, tz = $5, anchor_ms = $6, queue = $7, "
        "type = $8, payload = $9, priority = $10, max_attempts = $11, "
        "timeout_ms = $12, no_overlap = $13, catch_up = $14, paused = $15, "
        "created_at = $16, next_at = $17, last_fire_at = $18, last_job = $19, "
        "firings = $20, skipped = $21, last_lag_ms = $22",
    [S_DELETE_SCHEDULE] =
        "DELETE FROM schedules WHERE owner = $1 AND name = $2",
    [S_LOAD_SCHEDULES] =
        "SELECT " S_SCHEDULE_COLUMNS " FROM schedules ORDER BY owner, name",
};

/* The fence every group of a broker of a group checks first (see
 * broker_store_fence): the store's generation must still be the one this
 * broker counted when it became active. FOR SHARE holds the row until the
 * group ends, so a takeover's increment waits for a group in progress and
 * every later group of the old broker sees the new value and fails with
 * SQLSTATE DV001. */
static const char s_fence_function[] =
    "CREATE OR REPLACE FUNCTION drover_fence(mine BIGINT) RETURNS VOID\n"
    "LANGUAGE plpgsql AS $fence$\n"
    "DECLARE now_gen BIGINT;\n"
    "BEGIN\n"
    "    SELECT value INTO now_gen FROM meta WHERE name = 'generation'\n"
    "        FOR SHARE;\n"
    "    IF now_gen IS DISTINCT FROM mine THEN\n"
    "        RAISE EXCEPTION 'fenced: this broker counted generation %, the "
    "store is at %', mine, now_gen USING ERRCODE = 'DV001';\n"
    "    END IF;\n"
    "END\n"
    "$fence$";

/* Column numbers of S_JOBREC_COLUMNS (and of S_INSERT's parameters - 1). */
enum {
    C_ID,
    C_QUEUE,
    C_TYPE,
    C_KEY,
    C_BATCH,
    C_TRACE,
    C_PAYLOAD,
    C_STATE,
    C_PRIORITY,
    C_CREATED,
    C_RUN_AT,
    C_ATTEMPT,
    C_MAX_ATTEMPTS,
    C_TIMEOUT,
    C_BO_BASE,
    C_BO_FACTOR,
    C_BO_CAP,
    C_BO_JITTER,
    C_RESULT_TTL,
    C_WORKER,
    C_OWNER,
    C_SCHEDULE,
};

/* One statement queued in the pipeline whose result is not read yet. */
typedef struct {
    const char *op;   /* for the log line, a static string */
    char id[37];      /* the job, or "" */
    bool check_found; /* an UPDATE that should match one row */
} s_pending_t;

typedef struct {
    PGconn *conn;         /* NULL while disconnected */
    char *url;            /* as given, for reconnecting; holds the password */
    char *safe_url;       /* with the password masked, for messages */
    char *password;       /* the URL's password, to scrub messages; or NULL */
    broker_sync_t sync;   /* applied to every new connection */
    bool in_group;        /* between begin and commit/rollback */
    bool broken;          /* the server ended the session: reconnect */
    int64_t failed_at_ms; /* monotonic time of the last failed reconnect */
    int group_err;        /* first failure in this group, or 0 */
    s_pending_t *pending; /* statements queued, results not read yet */
    size_t npending, cap_pending;
    /* The last failure logged at error level (SQLSTATE), so a store that
     * keeps failing the same way logs it once; cleared by a commit. */
    char logged_state[8];
    uint64_t fence; /* the generation every group checks first; 0: none */
} s_pg_t;

/* ---- parameters: everything is text except blobs and counted strings */

/* v, or NULL when v is the field's "none" marker. */
static void
s_p_opt(dv_pg_params_t *p, int64_t v, int64_t none)
{
    if (v != none)
        dv_pg_p_int(p, v);
    else
        dv_pg_p_text(p, NULL);
}

static void
s_p_bool(dv_pg_params_t *p, bool v)
{
    dv_pg_p_text(p, v ? "true" : "false");
}

static const char *
s_category_name(dv_category_t c)
{
    return c > DV_CAT_NONE && c < DV_CAT_COUNT_ ? s_category_names[c] : NULL;
}

static const char *
s_state_name(dv_state_t s)
{
    return s > DV_STATE_NONE && s < DV_STATE_COUNT_ ? s_state_names[s] : NULL;
}

static dv_state_t
s_state_parse(const char *name)
{
    if (name)
        for (int s = DV_STATE_NONE + 1; s < DV_STATE_COUNT_; s++)
            if (strcmp(name, s_state_names[s]) == 0)
                return (dv_state_t)s;
    return DV_STATE_UNKNOWN;
}

/* $5..$11 of S_FAILURE_SET: set is $5; f may be NULL with set true, which
 * clears the failure columns. */
static void
s_p_failure(dv_pg_params_t *p, bool set, const dv_failure_t *f)
{
    s_p_bool(p, set);
    if (!f) {
        for (int i = 0; i < 6; i++)
            dv_pg_p_text(p, NULL);
        return;
    }
    dv_pg_p_text(p, s_category_name(f->category));
    dv_pg_p_str(p, f->message);
    s_p_opt(p, f->retry_after_ms, 0);
    s_p_opt(p, f->exit_code, -1);
    s_p_opt(p, f->signal, 0);
    s_p_opt(p, f->http_status, 0);
}

/* ---- binary results --------------------------------------------------- */

static const char *
s_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* An integer column of any width (smallint, integer, bigint), big-endian;
 * 0 for NULL. */
static int64_t
s_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const unsigned char *b = (const unsigned char *)PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    uint64_t v = 0;
    for (int i = 0; i < len && i < 8; i++)
        v = v << 8 | b[i];
    switch (len) {
    case 2:
        return (int16_t)v;
    case 4:
        return (int32_t)v;
    case 8:
        return (int64_t)v;
    default:
        return 0;
    }
}

static double
s_double(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return 0;
    uint64_t bits = (uint64_t)s_int(r, row, col);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* ---- URL and messages without the password ---------------------------- */

/* Copies s into out without the password (dv_pg_scrub). */
static void
s_scrub(const s_pg_t *be, const char *s, char *out, size_t out_size)
{
    dv_pg_scrub(be->password, s, out, out_size);
}

/* Finds the URL's password with libpq's own parser (to scrub it from
 * server messages, decoded as libpq sends it), and makes the masked copy
 * of the URL. */
static int
s_parse_url(s_pg_t *be)
{
    be->password = dv_pg_password(be->url);
    size_t n = 2 * strlen(be->url) + 8; /* room for any masking */
    be->safe_url = malloc(n);
    if (!be->safe_url)
        return -1;
    dv_pg_redact_url(be->url, be->safe_url, n);
    return 0;
}

/* ---- errors ----------------------------------------------------------- */

/* Maps a failed result's SQLSTATE (and the connection's state) to ours: a
 * connection that is gone, a server shutting down, a serialization failure
 * or a deadlock may clear up on a retry; a full disk on the server
 * (53100) is DV_ENOSPC; everything else (constraints, bad data) is
 * DV_EIO. */
static int
s_code(const s_pg_t *be, const char *sqlstate)
{
    if (!be->conn || PQstatus(be->conn) == CONNECTION_BAD)
        return DV_ETRANSIENT;
    if (!sqlstate || !*sqlstate)
        return DV_EIO;
    if (strcmp(sqlstate, "53100") == 0)
        return DV_ENOSPC;
    if (strcmp(sqlstate, "DV001") == 0)
        return DV_EFENCED;
    if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57P", 3) == 0 ||
        strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0 ||
        strcmp(sqlstate, "53200") == 0 || strcmp(sqlstate, "53300") == 0 ||
        strcmp(sqlstate, "55P03") == 0)
        return DV_ETRANSIENT;
    return DV_EIO;
}

/* Logs a failure (at error level unless it failed the same way last time),
 * poisons the current group, returns our code. r may be NULL (then the
 * connection's message is used). */
static int
s_fail(s_pg_t *be, const char *op, const char *id, const PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorMessage(r) : NULL;
    if ((!msg || !*msg) && be->conn)
        msg = PQerrorMessage(be->conn);
    char clean[512];
    s_scrub(be, msg ? msg : "", clean, sizeof clean);
    int code = s_code(be, state);
    const char *key = state ? state : code == DV_ETRANSIENT ? "conn" : "";
    bool again = strcmp(key, be->logged_state) == 0;
    dv_log(again ? DV_DEBUG : DV_ERROR, "store.pg_error", DV_STR("op", op),
           DV_STR("job", id && *id ? id : NULL), DV_STR("error", clean),
           DV_STR("sqlstate", state), DV_STR("url", be->safe_url));
    snprintf(be->logged_state, sizeof be->logged_state, "%s", key);
    /* The server ends the session after these (terminated, shutting down,
     * a connection failure), whether or not libpq noticed yet. */
    if (state &&
        (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0))
        be->broken = true;
    if (be->in_group && !be->group_err)
        be->group_err = code;
    return code;
}

/* ---- connection ------------------------------------------------------- */

static int64_t
s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_notice(void *arg, const char *message)
{
    s_pg_t *be = arg;
    char clean[512];
    s_scrub(be, message, clean, sizeof clean);
    dv_log(DV_DEBUG, "store.pg_notice", DV_STR("message", clean));
}

static void
s_disconnect(s_pg_t *be)
{
    if (be->conn)
        PQfinish(be->conn);
    be->conn = NULL;
}

/* Sets the session up and prepares every statement; on a new connection
 * (at open, and after a reconnect). err may be NULL. */
static int
s_session(s_pg_t *be, char *err, size_t err_size)
{
    PQsetNoticeProcessor(be->conn, s_notice, be);
    const char *setup[] = {
        "SET client_min_messages = warning",
        be->sync == BROKER_SYNC_OFF ? "SET synchronous_commit = off" : NULL,
    };
    for (size_t i = 0; i < sizeof setup / sizeof setup[0]; i++) {
        if (!setup[i])
            continue;
        PGresult *r = PQexec(be->conn, setup[i]);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            char clean[512];
            s_scrub(be, PQresultErrorMessage(r), clean, sizeof clean);
            dv_err_set(err, err_size, "postgres store '%s': %s: %s",
                       be->safe_url, setup[i], clean);
        }
        PQclear(r);
        if (!ok)
            return -1;
    }
    for (int i = 0; i < S_COUNT_; i++) {
        PGresult *r = PQprepare(be->conn, s_stmt_names[i], s_sql[i], 0, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            char clean[512];
            s_scrub(be, PQresultErrorMessage(r), clean, sizeof clean);
            dv_err_set(err, err_size,
                       "postgres store '%s': cannot prepare %s: %s",
                       be->safe_url, s_stmt_names[i], clean);
        }
        PQclear(r);
        if (!ok)
            return -1;
    }
    return 0;
}

/* Opens a new connection. The URL's own settings come after ours, so an
 * operator's connect_timeout or application_name wins. */
static int
s_connect(s_pg_t *be, char *err, size_t err_size)
{
    const char *keys[] = { "connect_timeout", "application_name", "dbname",
                           NULL };
    const char *vals[] = { S_CONNECT_TIMEOUT, S_APPLICATION_NAME, be->url,
                           NULL };
    be->conn = PQconnectdbParams(keys, vals, 1);
    if (!be->conn) {
        dv_err_set(err, err_size, "postgres store '%s': out of memory",
                   be->safe_url);
        return -1;
    }
    if (PQstatus(be->conn) != CONNECTION_OK) {
        char clean[512];
        s_scrub(be, PQerrorMessage(be->conn), clean, sizeof clean);
        dv_err_set(err, err_size, "postgres store '%s': cannot connect: %s",
                   be->safe_url, clean);
        s_disconnect(be);
        return -1;
    }
    return 0;
}

/* Before a group or a read: connects again if the connection was lost.
 * One try, bounded by the connect timeout; the broker retries with
 * backoff. */
static int
s_ensure(s_pg_t *be, const char *op)
{
    if (be->conn && !be->broken && PQstatus(be->conn) == CONNECTION_OK)
        return 0;
    s_disconnect(be);
    be->broken = false;
    /* A server that is down makes each try wait up to the connect
     * timeout; the loop thread's reads must not pay that on every call,
     * so after a failed try the next is at least S_RETRY_MS away. */
    int64_t now = s_mono_ms();
    if (be->failed_at_ms && now - be->failed_at_ms < S_RETRY_MS)
        return DV_ETRANSIENT;
    char err[512];
    if (s_connect(be, err, sizeof err) != 0 ||
        s_session(be, err, sizeof err) != 0) {
        bool again = strcmp(be->logged_state, "conn") == 0;
        dv_log(again ? DV_DEBUG : DV_ERROR, "store.pg_reconnect_failed",
               DV_STR("op", op), DV_STR("error", err),
               DV_STR("url", be->safe_url));
        snprintf(be->logged_state, sizeof be->logged_state, "conn");
        s_disconnect(be);
        be->failed_at_ms = s_mono_ms();
        return DV_ETRANSIENT;
    }
    be->failed_at_ms = 0;
    dv_log(DV_INFO, "store.pg_reconnected", DV_STR("url", be->safe_url));
    return 0;
}

/* ---- schema ----------------------------------------------------------- */

/* Runs sql (no parameters); returns the result if it has the status
 * wanted, else NULL with the scrubbed reason in err. */
static PGresult *
s_exec(s_pg_t *be, const char *sql, ExecStatusType want, char *err,
       size_t err_size)
{
    PGresult *r = PQexec(be->conn, sql);
    if (PQresultStatus(r) == want)
        return r;
    char clean[512];
    s_scrub(be, r ? PQresultErrorMessage(r) : PQerrorMessage(be->conn), clean,
            sizeof clean);
    dv_err_set(err, err_size, "postgres store '%s': %s", be->safe_url, clean);
    PQclear(r);
    return NULL;
}

static int
s_exec_ok(s_pg_t *be, const char *sql, char *err, size_t err_size)
{
    PGresult *r = s_exec(be, sql, PGRES_COMMAND_OK, err, err_size);
    PQclear(r);
    return r ? 0 : -1;
}

/* Creates the schema in an empty database, migrates versions 1 (adds
 * jobs.owner), 2 (idempotency keys per owner), 3 (adds api_keys, which
 * s_schema makes like any missing table), 4 (adds attempts.details and
 * attempts.stderr) and 5 (adds schedules and jobs.schedule), accepts the
 * current
 * version, refuses a newer one (a downgrade would misread it) and a
 * version table that holds no version. All in one transaction under an
 * advisory lock: a second broker starting at the same time waits, then
 * finds the work done. */
static int
s_schema_setup(s_pg_t *be, char *err, size_t err_size)
{
    if (s_exec_ok(be, "BEGIN", err, err_size) != 0)
        return -1;
    PGresult *r = s_exec(be,
                         "SELECT pg_advisory_xact_lock(" S_SCHEMA_LOCK "), "
                         "to_regclass('schema_version') IS NOT NULL",
                         PGRES_TUPLES_OK, err, err_size);
    if (!r)
        goto fail;
    bool has_table = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    PQclear(r);
    long version = 0;
    if (has_table) {
        r = s_exec(be, "SELECT version FROM schema_version", PGRES_TUPLES_OK,
                   err, err_size);
        if (!r)
            goto fail;
        bool one = PQntuples(r) == 1 && !PQgetisnull(r, 0, 0);
        if (one)
            version = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (!one || version < 1) {
            dv_err_set(err, err_size,
                       "postgres store '%s': table schema_version holds no "
                       "valid version (want one row, 1..%d)",
                       be->safe_url, S_SCHEMA_VERSION);
            goto fail;
        }
        if (version > S_SCHEMA_VERSION) {
            dv_err_set(err, err_size,
                       "postgres store: schema version %ld is newer than this "
                       "drover understands (%d)",
                       version, S_SCHEMA_VERSION);
            goto fail;
        }
    }
    int rc = 0;
    if (version == 0)
        rc = s_exec_ok(be,
                       "CREATE TABLE schema_version (version INTEGER NOT NULL);"
                       "\nINSERT INTO schema_version VALUES (0);\n",
                       err, err_size);
    if (rc == 0 && version == 1)
        /* Version 1 to 2: jobs.owner; the jobs stored before have none. */
        rc = s_exec_ok(be,
                       "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS owner "
                       "TEXT",
                       err, err_size);
    if (rc == 0 && version >= 1 && version < 3)
        /* Version 2 to 3: idempotency keys unique per owner (the schema
         * below makes the new index). */
        rc = s_exec_ok(be, "DROP INDEX IF EXISTS jobs_key", err, err_size);
    if (rc == 0 && version < S_SCHEMA_VERSION)
        /* Every table and index that is not there yet. */
        rc = s_exec_ok(be, s_schema, err, err_size);
    if (rc == 0 && version >= 1 && version < 5)
        /* Version 4 to 5: an attempt's details and stderr tail. */
        rc = s_exec_ok(be,
                       "ALTER TABLE attempts ADD COLUMN IF NOT EXISTS details "
                       "TEXT;\nALTER TABLE attempts ADD COLUMN IF NOT EXISTS "
                       "stderr TEXT;\n",
                       err, err_size);
    if (rc == 0 && version >= 1 && version < 6)
        /* Version 5 to 6: the schedule that fired a job (the schema above
         * made the schedules table). */
        rc = s_exec_ok(be,
                       "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS schedule "
                       "TEXT",
                       err, err_size);
    if (rc == 0 && version < S_SCHEMA_VERSION)
        rc = s_exec_ok(
            be, "UPDATE schema_version SET version = " S_STR(S_SCHEMA_VERSION),
            err, err_size);
    if (rc == 0)
        /* Not a table: made again at every start (an older drover's
         * schema at the same version gets it too). */
        rc = s_exec_ok(be, s_fence_function, err, err_size);
    if (rc == 0)
        /* Made at every start, not by a version (a store made before it
         * gets it too): finished jobs by time, for ctrl "finished". Only
         * finished jobs pay for it, once, when they finish. */
        rc = s_exec_ok(be,
                       "CREATE INDEX IF NOT EXISTS jobs_finished ON jobs "
                       "(finished_at, id) WHERE finished_at IS NOT NULL",
                       err, err_size);
    if (rc == 0)
        /* Dead and cancelled jobs of a queue (retry --dead), in place of
         * jobs_queue_state, which covered succeeded jobs as well and cost
         * their finish an index entry no query reads. */
        rc = s_exec_ok(be,
                       "DROP INDEX IF EXISTS jobs_queue_state;\n"
                       "CREATE INDEX IF NOT EXISTS jobs_dead ON jobs "
                       "(queue, state) WHERE finished_at IS NOT NULL "
                       "AND state <> 'succeeded'",
                       err, err_size);
    if (rc == 0)
        /* Batch records and a batch's jobs in id order: at every start
         * too (ctrl "batch.*", broker_batch.c). */
        rc = s_exec_ok(be, S_BATCHES_SCHEMA, err, err_size);
    if (rc == 0)
        /* Job dependencies: at every start too (broker_deps.c). */
        rc = s_exec_ok(be, S_DEPS_SCHEMA, err, err_size);
    if (rc == 0)
        rc = s_exec_ok(be, "COMMIT", err, err_size);
    if (rc == 0)
        return 0;
fail:
    if (be->conn && PQtransactionStatus(be->conn) != PQTRANS_IDLE) {
        PGresult *rb = PQexec(be->conn, "ROLLBACK");
        PQclear(rb);
    }
    return -1;
}

/* ---- open / close ----------------------------------------------------- */

static void
s_close(void *handle)
{
    s_pg_t *be = handle;
    if (!be)
        return;
    /* Closing the connection rolls back an open group on the server. */
    s_disconnect(be);
    free(be->pending);
    free(be->url);
    free(be->safe_url);
    if (be->password) {
        memset(be->password, 0, strlen(be->password));
        free(be->password);
    }
    free(be);
}

static void *
s_open(const char *url, const broker_store_opts_t *opts, char *err,
       size_t err_size)
{
    s_pg_t *be = calloc(1, sizeof *be);
    if (!be || !(be->url = strdup(url))) {
        s_close(be);
        dv_err_set(err, err_size, "out of memory");
        return NULL;
    }
    /* The broker takes the scheme in any case ("PostgreSQL://"); libpq
     * only in lower case. */
    for (char *c = be->url; *c && *c != ':'; c++)
        *c = (char)tolower((unsigned char)*c);
    if (s_parse_url(be) != 0) {
        s_close(be);
        dv_err_set(err, err_size, "out of memory");
        return NULL;
    }
    if ((unsigned)opts->sync > BROKER_SYNC_OFF) {
        dv_err_set(err, err_size, "postgres store '%s': unknown sync mode %d",
                   be->safe_url, (int)opts->sync);
        s_close(be);
        return NULL;
    }
    be->sync = opts->sync;
    if (s_connect(be, err, err_size) != 0) {
        s_close(be);
        return NULL;
    }
    PQsetNoticeProcessor(be->conn, s_notice, be);
    /* The schema before the statements, which name its tables. */
    if (s_exec_ok(be, "SET client_min_messages = warning", err, err_size) !=
            0 ||
        s_schema_setup(be, err, err_size) != 0 ||
        s_session(be, err, err_size) != 0) {
        s_close(be);
        return NULL;
    }
    return be;
}

/* ---- the pipeline ----------------------------------------------------- */

static int
s_push_pending(s_pg_t *be, const char *op, const char *id, bool check_found)
{
    if (be->npending == be->cap_pending) {
        size_t cap = be->cap_pending ? 2 * be->cap_pending : 64;
        s_pending_t *p = realloc(be->pending, cap * sizeof *p);
        if (!p)
            return DV_ENOMEM;
        be->pending = p;
        be->cap_pending = cap;
    }
    s_pending_t *p = &be->pending[be->npending++];
    p->op = op;
    snprintf(p->id, sizeof p->id, "%s", id ? id : "");
    p->check_found = check_found;
    return 0;
}

/* Reads the results of every statement queued so far (the server has them
 * once the pipeline was flushed or synced). Records the first failure in
 * the group. If keep is not NULL, the last statement's result is handed
 * over there instead of being cleared. Returns 0 or the group's error. */
static int
s_read_pending(s_pg_t *be, PGresult **keep)
{
    size_t n = be->npending;
    be->npending = 0;
    for (size_t i = 0; i < n; i++) {
        s_pending_t *p = &be->pending[i];
        bool got = false;
        PGresult *r;
        while ((r = PQgetResult(be->conn)) != NULL) {
            got = true;
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_FATAL_ERROR) {
                s_fail(be, p->op, p->id, r);
            } else if (st == PGRES_PIPELINE_ABORTED) {
                /* Skipped after an earlier failure; nothing new. */
            } else if (p->check_found && st == PGRES_COMMAND_OK &&
                       strcmp(PQcmdTuples(r), "0") == 0) {
                /* The broker and the store disagree about a job: worth a
                 * line, not worth failing the group (as in SQLite). */
                dv_log(DV_WARN, "store.no_such_job", DV_STR("op", p->op),
                       DV_STR("job", p->id));
            }
            if (keep && i + 1 == n && !*keep &&
                (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK))
                *keep = r;
            else
                PQclear(r);
        }
        if (!got) {
            /* Only a broken connection ends a statement without a
             * result; the rest will not come either. */
            s_fail(be, p->op, p->id, NULL);
            if (!be->group_err)
                be->group_err = DV_ETRANSIENT;
            break;
        }
    }
    return be->group_err;
}

/* Queues a prepared statement in the group's pipeline. */
static int
s_send(s_pg_t *be, s_stmt_t stmt, const dv_pg_params_t *p, const char *op,
       const char *id, bool check_found, int result_format)
{
    if (be->group_err)
        return be->group_err;
    if (!be->conn)
        return be->group_err = DV_ETRANSIENT;
    int code = s_push_pending(be, op, id, check_found);
    if (code != 0)
        return be->group_err = code;
    if (!PQsendQueryPrepared(be->conn, s_stmt_names[stmt], p ? p->n : 0,
                             p ? p->values : NULL, p ? p->lengths : NULL,
                             p ? p->formats : NULL, result_format)) {
        be->npending--;
        return s_fail(be, op, id, NULL);
    }
    return 0;
}

/* Leaves pipeline mode after the sync point was read; a connection that
 * cannot (results left over: our bug or a broken link) is dropped, which
 * rolls back whatever it had open. */
static void
s_leave_pipeline(s_pg_t *be)
{
    if (!be->conn)
        return;
    if (be->broken) {
        s_disconnect(be);
        return;
    }
    if (PQpipelineStatus(be->conn) != PQ_PIPELINE_OFF &&
        !PQexitPipelineMode(be->conn)) {
        dv_log(DV_WARN, "store.pg_pipeline_reset", DV_STR("url", be->safe_url));
        s_disconnect(be);
        return;
    }
    if (PQtransactionStatus(be->conn) == PQTRANS_INTRANS ||
        PQtransactionStatus(be->conn) == PQTRANS_INERROR) {
        PGresult *r = PQexec(be->conn, "ROLLBACK");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            s_disconnect(be);
        PQclear(r);
    } else if (PQtransactionStatus(be->conn) != PQTRANS_IDLE) {
        s_disconnect(be);
    }
}

/* Sends the sync point and reads every result up to it. */
static int
s_sync(s_pg_t *be)
{
    if (!be->conn)
        return be->group_err ? be->group_err : DV_ETRANSIENT;
    if (!PQpipelineSync(be->conn)) {
        s_fail(be, "sync", NULL, NULL);
        be->npending = 0;
        s_disconnect(be);
        return be->group_err ? be->group_err : DV_ETRANSIENT;
    }
    s_read_pending(be, NULL);
    /* Then the sync point itself; a NULL or two may come first. */
    for (int tries = 0; be->conn && tries < 4; tries++) {
        PGresult *r = PQgetResult(be->conn);
        if (!r) {
            if (PQstatus(be->conn) == CONNECTION_BAD)
                break;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        PQclear(r);
        if (st == PGRES_PIPELINE_SYNC)
            return be->group_err;
    }
    /* No sync point: the connection broke (or we lost track); drop it. */
    if (be->conn && PQstatus(be->conn) == CONNECTION_BAD && !be->group_err)
        s_fail(be, "sync", NULL, NULL);
    s_disconnect(be);
    if (!be->group_err)
        be->group_err = DV_ETRANSIENT;
    return be->group_err;
}

/* ---- write groups ----------------------------------------------------- */

static int
s_begin(void *handle)
{
    s_pg_t *be = handle;
    be->group_err = 0;
    be->npending = 0;
    int code = s_ensure(be, "begin");
    if (code != 0)
        return code;
    if (!PQenterPipelineMode(be->conn)) {
        /* Not idle: a stale state a reconnect clears. */
        s_disconnect(be);
        return DV_ETRANSIENT;
    }
    be->in_group = true;
    if (!PQsendQueryParams(be->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) ||
        s_push_pending(be, "begin", NULL, false) != 0) {
        code = s_fail(be, "begin", NULL, NULL);
        be->in_group = false;
        be->group_err = 0;
        s_disconnect(be);
        return code;
    }
    if (be->fence) {
        /* First in the group: nothing of it commits once another broker
         * has taken the store over. */
        dv_pg_params_t p = { 0 };
        dv_pg_p_int(&p, (int64_t)be->fence);
        s_send(be, S_FENCE, &p, "fence", NULL, false, 1);
        dv_pg_params_free(&p);
    }
    return 0;
}

/* Ends the group either way: COMMIT, or ROLLBACK when rollback is true or
 * a write failed. Returns 0 only if COMMIT was sent and succeeded. */
static int
s_end(s_pg_t *be, bool rollback)
{
    const char *verb = rollback || be->group_err ? "ROLLBACK" : "COMMIT";
    if (be->conn && !be->group_err) {
        if (!PQsendQueryParams(be->conn, verb, 0, NULL, NULL, NULL, NULL, 0))
            s_fail(be, rollback ? "rollback" : "commit", NULL, NULL);
        else if (s_push_pending(be, rollback ? "rollback" : "commit", NULL,
                                false) != 0)
            be->group_err = DV_ENOMEM;
    }
    int code = s_sync(be);
    s_leave_pipeline(be);
    be->in_group = false;
    be->group_err = 0;
    be->npending = 0;
    return code;
}

static int
s_commit(void *handle)
{
    s_pg_t *be = handle;
    int code = s_end(be, false);
    if (code == 0)
        be->logged_state[0] = '\0'; /* the next failure is news */
    return code;
}

static int
s_rollback(void *handle)
{
    s_pg_t *be = handle;
    /* Whatever failed on the way (a write, the connection), the group is
     * gone: rolled back on the server, or with the session that held it.
     * The failure was logged where it happened. */
    s_end(be, true);
    return 0;
}

/* ---- writes ----------------------------------------------------------- */

/* A write inside a group is queued; outside one (not something the broker
 * does) it runs at once in its own transaction. */
static int
s_write(s_pg_t *be, s_stmt_t stmt, dv_pg_params_t *p, const char *op,
        const char *id, bool check_found)
{
    int code;
    if (p->oom)
        code = be->in_group && !be->group_err ? (be->group_err = DV_ENOMEM)
                                              : DV_ENOMEM;
    else if (be->in_group)
        code = s_send(be, stmt, p, op, id, check_found, 1);
    else if ((code = s_ensure(be, op)) == 0) {
        PGresult *r = PQexecPrepared(be->conn, s_stmt_names[stmt], p->n,
                                     p->values, p->lengths, p->formats, 1);
        code =
            PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : s_fail(be, op, id, r);
        PQclear(r);
    }
    dv_pg_params_free(p);
    return code;
}

static int s_deps_insert(s_pg_t *be, const broker_jobrec_t *r);

static int
s_insert(void *handle, const broker_jobrec_t *r)
{
    s_pg_t *be = handle;
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, r->id);
    dv_pg_p_text(&p, r->queue);
    dv_pg_p_text(&p, r->type);
    dv_pg_p_text(&p, r->key);
    dv_pg_p_text(&p, r->batch);
    dv_pg_p_text(&p, r->trace);
    dv_pg_p_bytes(&p, r->payload, r->payload_len);
    dv_pg_p_text(&p, s_state_name(r->state));
    dv_pg_p_int(&p, r->priority);
    dv_pg_p_int(&p, r->created_ms);
    dv_pg_p_int(&p, r->run_at_ms);
    dv_pg_p_int(&p, r->attempt);
    dv_pg_p_int(&p, r->max_attempts);
    dv_pg_p_int(&p, r->timeout_ms);
    dv_pg_p_int(&p, r->backoff.base_ms);
    dv_pg_p_double(&p, r->backoff.factor);
    dv_pg_p_int(&p, r->backoff.cap_ms);
    dv_pg_p_int(&p, r->backoff.jitter);
    dv_pg_p_int(&p, r->result_ttl_ms);
    dv_pg_p_text(&p, r->worker);
    dv_pg_p_text(&p, r->owner);
    dv_pg_p_text(&p, r->schedule);
    int code = s_write(be, S_INSERT, &p, "insert", r->id, false);
    return code == 0 && r->ndeps ? s_deps_insert(be, r) : code;
}

static int
s_mark_running(void *handle, const char *id, int attempt, const char *worker,
               int64_t started_ms)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, id);
    dv_pg_p_int(&p, attempt);
    dv_pg_p_text(&p, worker);
    dv_pg_p_int(&p, started_ms);
    return s_write(handle, S_RUNNING, &p, "mark_running", id, true);
}

static int
s_mark_waiting(void *handle, const char *id, dv_state_t state,
               int64_t run_at_ms, int attempt, const dv_failure_t *last_failure)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, id);
    dv_pg_p_text(&p, s_state_name(state));
    dv_pg_p_int(&p, run_at_ms);
    dv_pg_p_int(&p, attempt);
    s_p_failure(&p, last_failure != NULL, last_failure);
    return s_write(handle, S_WAITING, &p, "mark_waiting", id, true);
}

static int
s_mark_finished(void *handle, const char *id, dv_state_t state, int attempt,
                const char *worker, int64_t started_ms, const void *result,
                size_t result_len, const dv_failure_t *failure,
                int64_t finished_ms)
{
    /* As in SQLite: a success clears the failure columns; a dead or
     * cancelled job without a failure of its own keeps the last one. */
    bool set = failure != NULL || state == DV_STATE_SUCCEEDED;
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, id);
    dv_pg_p_text(&p, s_state_name(state));
    dv_pg_p_int(&p, attempt);
    dv_pg_p_bytes(&p, result, result_len);
    s_p_failure(&p, set, failure);
    dv_pg_p_int(&p, finished_ms);
    dv_pg_p_text(&p, worker);
    if (started_ms)
        dv_pg_p_int(&p, started_ms);
    else
        dv_pg_p_null(&p);
    return s_write(handle, S_FINISHED, &p, "mark_finished", id, true);
}

static int
s_add_attempt(void *handle, const broker_attempt_t *a)
{
    const dv_failure_t *f = a->failure;
    const char *outcome = s_state_name(a->outcome);
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, a->job_id);
    dv_pg_p_int(&p, a->attempt);
    dv_pg_p_text(&p, a->worker);
    dv_pg_p_int(&p, a->started_ms);
    dv_pg_p_int(&p, a->finished_ms);
    dv_pg_p_text(&p, outcome ? outcome : "unknown");
    if (f) {
        dv_pg_p_text(&p, s_category_name(f->category));
        dv_pg_p_str(&p, f->message);
        dv_pg_p_int(&p, f->retryable);
        s_p_opt(&p, f->retry_after_ms, 0);
        s_p_opt(&p, f->exit_code, -1);
        s_p_opt(&p, f->signal, 0);
        s_p_opt(&p, f->http_status, 0);
        dv_pg_p_str(&p, f->key_id);
        dv_pg_p_str(&p, f->details);
        dv_pg_p_str(&p, f->stderr_tail);
    } else {
        for (int i = 0; i < 10; i++)
            dv_pg_p_text(&p, NULL);
    }
    return s_write(handle, S_ATTEMPT, &p, "add_attempt", a->job_id, false);
}

static int
s_set_queue(void *handle, const broker_queue_settings_t *q)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, q->name);
    dv_pg_p_int(&p, q->paused);
    dv_pg_p_double(&p, q->rate);
    dv_pg_p_int(&p, q->max_running);
    return s_write(handle, S_SET_QUEUE, &p, "set_queue", NULL, false);
}

static int
s_set_key(void *handle, const broker_key_state_t *k)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, k->hash);
    dv_pg_p_text(&p, k->id);
    dv_pg_p_int(&p, k->cool_until_ms);
    dv_pg_p_int(&p, k->disabled_status);
    dv_pg_p_int(&p, k->disabled_ms);
    dv_pg_p_int(&p, k->learned_limit);
    dv_pg_p_int(&p, k->learned_ms);
    dv_pg_p_int(&p, k->proven);
    dv_pg_p_int(&p, k->updated_ms);
    return s_write(handle, S_SET_KEY, &p, "set_key", NULL, false);
}

static int
s_probe(void *handle)
{
    dv_pg_params_t p = { 0 };
    return s_write(handle, S_PROBE, &p, "probe", NULL, false);
}

/* ---- reads ------------------------------------------------------------ */

/* Runs a read and returns its result (caller clears it), or NULL with
 * *code set. Inside a group the read is queued behind the group's writes
 * and the pipeline flushed, so it sees them. */
static PGresult *
s_read_params(s_pg_t *be, s_stmt_t stmt, const dv_pg_params_t *p,
              const char *op, const char *id, int *code)
{
    PGresult *r = NULL;
    if (be->in_group) {
        *code = s_send(be, stmt, p, op, id, false, 1);
        if (*code == 0 &&
            (!PQsendFlushRequest(be->conn) || PQflush(be->conn) != 0))
            *code = s_fail(be, op, id, NULL);
        if (*code == 0)
            *code = s_read_pending(be, &r);
        if (*code == 0 && !r)
            *code = s_fail(be, op, id, NULL);
        if (*code != 0) {
            PQclear(r);
            return NULL;
        }
        return r;
    }
    *code = s_ensure(be, op);
    if (*code != 0)
        return NULL;
    r = PQexecPrepared(be->conn, s_stmt_names[stmt], p ? p->n : 0,
                       p ? p->values : NULL, p ? p->lengths : NULL,
                       p ? p->formats : NULL, 1);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        *code = s_fail(be, op, id, r);
        PQclear(r);
        return NULL;
    }
    return r;
}

static PGresult *
s_read(s_pg_t *be, s_stmt_t stmt, dv_pg_params_t *p, const char *op,
       const char *id, int *code)
{
    PGresult *r = NULL;
    if (p && p->oom)
        *code = DV_ENOMEM;
    else
        r = s_read_params(be, stmt, p, op, id, code);
    if (p)
        dv_pg_params_free(p);
    return r;
}

/* Fills rec from row of a S_JOBREC_COLUMNS result; strings valid while r
 * lives. Returns false for a row only a hand edit can make. */
static bool
s_row_rec(const PGresult *r, int row, broker_jobrec_t *rec)
{
    broker_jobrec_t x = { 0 };
    x.id = s_text(r, row, C_ID);
    x.queue = s_text(r, row, C_QUEUE);
    x.type = s_text(r, row, C_TYPE);
    x.key = s_text(r, row, C_KEY);
    x.batch = s_text(r, row, C_BATCH);
    x.trace = s_text(r, row, C_TRACE);
    if (!PQgetisnull(r, row, C_PAYLOAD)) {
        x.payload = PQgetvalue(r, row, C_PAYLOAD);
        x.payload_len = (size_t)PQgetlength(r, row, C_PAYLOAD);
    }
    x.state = s_state_parse(s_text(r, row, C_STATE));
    x.priority = (int)s_int(r, row, C_PRIORITY);
    x.created_ms = s_int(r, row, C_CREATED);
    x.run_at_ms = s_int(r, row, C_RUN_AT);
    x.attempt = (int)s_int(r, row, C_ATTEMPT);
    x.max_attempts = (int)s_int(r, row, C_MAX_ATTEMPTS);
    x.timeout_ms = s_int(r, row, C_TIMEOUT);
    /* Nullable so a person may clear them by hand: missing = defaults. */
    x.backoff = DV_BACKOFF_DEFAULT;
    if (!PQgetisnull(r, row, C_BO_BASE))
        x.backoff.base_ms = s_int(r, row, C_BO_BASE);
    if (!PQgetisnull(r, row, C_BO_FACTOR))
        x.backoff.factor = s_double(r, row, C_BO_FACTOR);
    if (!PQgetisnull(r, row, C_BO_CAP))
        x.backoff.cap_ms = s_int(r, row, C_BO_CAP);
    if (!PQgetisnull(r, row, C_BO_JITTER))
        x.backoff.jitter = s_int(r, row, C_BO_JITTER) != 0;
    x.result_ttl_ms = s_int(r, row, C_RESULT_TTL);
    x.worker = s_text(r, row, C_WORKER);
    x.owner = s_text(r, row, C_OWNER);
    x.schedule = s_text(r, row, C_SCHEDULE);
    *rec = x;
    return x.id && x.queue && x.type;
}

/* Replay reads row by row (single-row mode), so a million live jobs do not
 * sit in memory twice. Outside a group by contract. */
static int
s_replay(void *handle, int (*cb)(void *arg, const broker_jobrec_t *rec),
         void *arg)
{
    s_pg_t *be = handle;
    int code = s_ensure(be, "replay");
    if (code != 0)
        return code;
    if (!PQsendQueryPrepared(be->conn, s_stmt_names[S_REPLAY], 0, NULL, NULL,
                             NULL, 1))
        return s_fail(be, "replay", NULL, NULL);
    PQsetSingleRowMode(be->conn);
    PGresult *r;
    bool stopped = false;
    while ((r = PQgetResult(be->conn)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE && !stopped) {
            broker_jobrec_t rec;
            if (!s_row_rec(r, 0, &rec)) {
                dv_log(DV_ERROR, "store.bad_row", DV_STR("job", rec.id),
                       DV_STR("url", be->safe_url));
                code = DV_EIO;
                stopped = true;
            } else if ((code = cb(arg, &rec)) != 0) {
                /* The rest is read and dropped: the connection must be
                 * idle again before the next call. */
                stopped = true;
            }
        } else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK &&
                   code == 0) {
            code = s_fail(be, "replay", NULL, r);
            stopped = true;
        }
        PQclear(r);
    }
    return code;
}

static int
s_load(void *handle, const char *id,
       int (*cb)(void *arg, const broker_jobrec_t *rec), void *arg)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, id);
    int code;
    PGresult *r = s_read(handle, S_LOAD, &p, "load", id, &code);
    if (!r)
        return code;
    int found = 0;
    if (PQntuples(r) > 0) {
        broker_jobrec_t rec;
        if (s_row_rec(r, 0, &rec)) {
            code = cb(arg, &rec);
            found = code != 0 ? code : 1;
        } else {
            found = DV_EIO;
        }
    }
    PQclear(r);
    return found;
}

static int
s_list(void *handle, const char *queue, dv_state_t state, int limit,
       int (*cb)(void *arg, const char *id), void *arg)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, queue);
    dv_pg_p_text(&p, s_state_name(state));
    dv_pg_p_int(&p, limit);
    int code;
    PGresult *r = s_read(handle, S_LIST, &p, "list", NULL, &code);
    if (!r)
        return code;
    int n = 0;
    code = 0;
    for (int i = 0; i < PQntuples(r) && code == 0; i++) {
        const char *id = s_text(r, i, 0);
        if (!id)
            continue;
        code = cb(arg, id);
        if (code == 0)
            n++;
    }
    PQclear(r);
    return code != 0 ? code : n;
}

static int
s_finished(void *handle, int64_t since_ms, int64_t until_ms,
           const char *after_id, int limit,
           int (*cb)(void *arg, const broker_finished_t *f), void *arg)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_int(&p, since_ms);
    dv_pg_p_int(&p, until_ms);
    dv_pg_p_text(&p, after_id);
    dv_pg_p_int(&p, limit);
    int code;
    PGresult *r = s_read(handle, S_LIST_FINISHED, &p, "finished", NULL, &code);
    if (!r)
        return code;
    int n = 0;
    code = 0;
    for (int i = 0; i < PQntuples(r) && code == 0; i++) {
        broker_finished_t f = {
            .id = s_text(r, i, 0),
            .queue = s_text(r, i, 1),
            .type = s_text(r, i, 2),
            .batch = s_text(r, i, 3),
            .state = s_state_parse(s_text(r, i, 4)),
            .attempt = (int)s_int(r, i, 5),
            .worker = s_text(r, i, 6),
            .started_ms = s_int(r, i, 7),
            .finished_ms = s_int(r, i, 8),
            .category = s_text(r, i, 9),
            .error = s_text(r, i, 10),
        };
        if (!f.id || !f.queue || !f.type)
            continue;
        code = cb(arg, &f);
        if (code == 0)
            n++;
    }
    PQclear(r);
    return code != 0 ? code : n;
}

static int
s_load_queues(void *handle,
              int (*cb)(void *arg, const broker_queue_settings_t *q), void *arg)
{
    int code;
    PGresult *r =
        s_read(handle, S_LOAD_QUEUES, NULL, "load_queues", NULL, &code);
    if (!r)
        return code;
    code = 0;
    for (int i = 0; i < PQntuples(r) && code == 0; i++) {
        broker_queue_settings_t q = {
            .name = s_text(r, i, 0),
            .paused = s_int(r, i, 1) != 0,
            .rate = s_double(r, i, 2),
            .max_running = (int)s_int(r, i, 3),
        };
        if (q.name)
            code = cb(arg, &q);
    }
    PQclear(r);
    return code;
}

/* NULL columns (a row written by hand) read as 0: "none". */
static int
s_load_keys(void *handle, int (*cb)(void *arg, const broker_key_state_t *k),
            void *arg)
{
    int code;
    PGresult *r = s_read(handle, S_LOAD_KEYS, NULL, "load_keys", NULL, &code);
    if (!r)
        return code;
    code = 0;
    for (int i = 0; i < PQntuples(r) && code == 0; i++) {
        broker_key_state_t k = {
            .hash = s_text(r, i, 0),
            .id = s_text(r, i, 1),
            .cool_until_ms = s_int(r, i, 2),
            .disabled_status = (int)s_int(r, i, 3),
            .disabled_ms = s_int(r, i, 4),
            .learned_limit = (int)s_int(r, i, 5),
            .learned_ms = s_int(r, i, 6),
            .proven = s_int(r, i, 7) != 0,
            .updated_ms = s_int(r, i, 8),
        };
        if (k.hash && k.id)
            code = cb(arg, &k);
    }
    PQclear(r);
    return code;
}

static int
s_find_key(void *handle, const char *owner, const char *key, char id_out[37])
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, key);
    dv_pg_p_text(&p, owner ? owner : "");
    int code;
    PGresult *r = s_read(handle, S_FIND_KEY, &p, "find_key", NULL, &code);
    if (!r)
        return code;
    int found = 0;
    if (PQntuples(r) > 0) {
        const char *id = s_text(r, 0, 0);
        snprintf(id_out, 37, "%s", id ? id : "");
        found = 1;
    }
    PQclear(r);
    return found;
}

/* NULL columns read as "none" (0, or -1 for exit_code). */
static int
s_attempts(void *handle, const char *id, int limit,
           int (*cb)(void *arg, const broker_attempt_row_t *a), void *arg)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, id);
    dv_pg_p_int(&p, limit);
    int code;
    PGresult *r = s_read(handle, S_ATTEMPTS, &p, "attempts", id, &code);
    if (!r)
        return code;
    int n = 0;
    code = 0;
    for (int i = 0; i < PQntuples(r) && code == 0; i++) {
        broker_attempt_row_t a = {
            .attempt = (int)s_int(r, i, 0),
            .worker = s_text(r, i, 1),
            .started_ms = s_int(r, i, 2),
            .finished_ms = s_int(r, i, 3),
            .outcome = s_text(r, i, 4),
            .category = s_text(r, i, 5),
            .message = s_text(r, i, 6),
            .retryable = s_int(r, i, 7) != 0,
            .retry_after_ms = s_int(r, i, 8),
            .exit_code = PQgetisnull(r, i, 9) ? -1 : (int)s_int(r, i, 9),
            .signal = (int)s_int(r, i, 10),
            .http_status = (int)s_int(r, i, 11),
            .key_id = s_text(r, i, 12),
            .details = s_text(r, i, 13),
            .stderr_tail = s_text(r, i, 14),
        };
        code = cb(arg, &a);
        if (code == 0)
            n++;
    }
    PQclear(r);
    return code != 0 ? code : n;
}

static int
s_get(void *handle, const char *id,
      void (*cb)(void *arg, const broker_jobview_t *view), void *arg)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, id);
    int code;
    PGresult *r = s_read(handle, S_GET, &p, "get", id, &code);
    if (!r)
        return code;
    int found = 0;
    if (PQntuples(r) > 0) {
        broker_jobview_t v = { 0 };
        v.id = s_text(r, 0, 0);
        v.queue = s_text(r, 0, 1);
        v.type = s_text(r, 0, 2);
        v.state = s_state_parse(s_text(r, 0, 3));
        v.attempt = (int)s_int(r, 0, 4);
        if (!PQgetisnull(r, 0, 5)) {
            v.result = PQgetvalue(r, 0, 5);
            v.result_len = (size_t)PQgetlength(r, 0, 5);
        }
        v.category = s_text(r, 0, 6);
        v.error = s_text(r, 0, 7);
        v.finished_ms = s_int(r, 0, 8);
        v.owner = s_text(r, 0, 9);
        cb(arg, &v);
        found = 1;
    }
    PQclear(r);
    return found;
}

static int
s_expire(void *handle, int64_t now_ms, int limit)
{
    if (limit <= 0)
        return 0;
    dv_pg_params_t p = { 0 };
    dv_pg_p_int(&p, now_ms);
    dv_pg_p_int(&p, limit);
    int code;
    PGresult *r = s_read(handle, S_EXPIRE, &p, "expire", NULL, &code);
    if (!r)
        return code;
    int deleted = PQntuples(r) > 0 ? (int)s_int(r, 0, 0) : 0;
    PQclear(r);
    return deleted;
}

/* One statement, so its own transaction: the upsert makes the row on the
 * first start and counts up after. */
static int
s_next_generation(void *handle, uint64_t *out)
{
    int code;
    PGresult *r = s_read(handle, S_GENERATION, NULL, "generation", NULL, &code);
    if (!r)
        return code;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return DV_EIO;
    }
    *out = (uint64_t)s_int(r, 0, 0);
    PQclear(r);
    return 0;
}

static int
s_fence(void *handle, uint64_t generation)
{
    s_pg_t *be = handle;
    be->fence = generation;
    return 0;
}

/* ---- batches (broker_batch.c) -------------------------------------------
 * Rare calls (a batch's open, close, end; a page of its jobs): plain
 * parameterised statements, not prepared ones. */

#define S_BATCH_COLUMNS                                                        \
    "owner, name, state, on_complete, on_success, on_failure, queue, "         \
    "payload, complete_id, success_id, failure_id, created_at, closed_at, "    \
    "done_at, since_id"

/* A write: queued in the group's pipeline, or its own transaction. */
static int
s_batch_write(s_pg_t *be, const char *sql, dv_pg_params_t *p, const char *op)
{
    int code = 0;
    if (p->oom) {
        code = be->in_group && !be->group_err ? (be->group_err = DV_ENOMEM)
                                              : DV_ENOMEM;
    } else if (be->in_group) {
        if (be->group_err)
            code = be->group_err;
        else if (!be->conn)
            code = be->group_err = DV_ETRANSIENT;
        else if ((code = s_push_pending(be, op, NULL, false)) != 0)
            be->group_err = code;
        else if (!PQsendQueryParams(be->conn, sql, p->n, NULL, p->values,
                                    p->lengths, p->formats, 1)) {
            be->npending--;
            code = s_fail(be, op, NULL, NULL);
        }
    } else if ((code = s_ensure(be, op)) == 0) {
        PGresult *r = PQexecParams(be->conn, sql, p->n, NULL, p->values,
                                   p->lengths, p->formats, 1);
        code =
            PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : s_fail(be, op, NULL, r);
        PQclear(r);
    }
    dv_pg_params_free(p);
    return code;
}

/* A read outside a group (the reader's connection, start-up). */
static PGresult *
s_batch_read(s_pg_t *be, const char *sql, dv_pg_params_t *p, const char *op,
             int *code)
{
    PGresult *r = NULL;
    if (p->oom)
        *code = DV_ENOMEM;
    else if ((*code = s_ensure(be, op)) == 0) {
        r = PQexecParams(be->conn, sql, p->n, NULL, p->values, p->lengths,
                         p->formats, 1);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            *code = s_fail(be, op, NULL, r);
            PQclear(r);
            r = NULL;
        }
    }
    dv_pg_params_free(p);
    return r;
}

static int
s_set_batch(void *handle, const broker_batchrec_t *b)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, b->owner);
    dv_pg_p_text(&p, b->name);
    dv_pg_p_text(&p, b->state);
    dv_pg_p_text(&p, b->on_complete);
    dv_pg_p_text(&p, b->on_success);
    dv_pg_p_text(&p, b->on_failure);
    dv_pg_p_text(&p, b->queue ? b->queue : "default");
    if (b->payload && b->payload_len)
        dv_pg_p_bytes(&p, b->payload, b->payload_len);
    else
        dv_pg_p_null(&p);
    dv_pg_p_text(&p, b->complete_id);
    dv_pg_p_text(&p, b->success_id);
    dv_pg_p_text(&p, b->failure_id);
    dv_pg_p_int(&p, b->created_ms);
    s_p_opt(&p, b->closed_ms, 0);
    s_p_opt(&p, b->done_ms, 0);
    dv_pg_p_text(&p, b->since_id);
    return s_batch_write(
        handle,
        "INSERT INTO batches (" S_BATCH_COLUMNS ") VALUES ($1::text, "
        "$2::text, $3::text, $4::text, $5::text, $6::text, $7::text, "
        "$8::bytea, $9::text, $10::text, $11::text, $12::bigint, "
        "$13::bigint, $14::bigint, $15::text) ON CONFLICT (owner, name) DO "
        "UPDATE SET "
        "state = EXCLUDED.state, on_complete = EXCLUDED.on_complete, "
        "on_success = EXCLUDED.on_success, on_failure = EXCLUDED.on_failure, "
        "queue = EXCLUDED.queue, payload = EXCLUDED.payload, "
        "complete_id = EXCLUDED.complete_id, success_id = "
        "EXCLUDED.success_id, failure_id = EXCLUDED.failure_id, created_at = "
        "EXCLUDED.created_at, closed_at = EXCLUDED.closed_at, done_at = "
        "EXCLUDED.done_at, since_id = EXCLUDED.since_id",
        &p, "set_batch");
}

static int
s_del_batch(void *handle, const char *owner, const char *name)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, owner);
    dv_pg_p_text(&p, name);
    return s_batch_write(
        handle,
        "DELETE FROM batches WHERE owner = $1::text AND name = $2::text", &p,
        "del_batch");
}

static int
s_load_batches(void *handle, int (*cb)(void *arg, const broker_batchrec_t *b),
               void *arg)
{
    dv_pg_params_t p = { 0 };
    int code;
    PGresult *r = s_batch_read(
        handle, "SELECT " S_BATCH_COLUMNS " FROM batches ORDER BY created_at",
        &p, "load_batches", &code);
    if (!r)
        return code;
    code = 0;
    for (int i = 0; i < PQntuples(r) && code == 0; i++) {
        broker_batchrec_t b = {
            .owner = s_text(r, i, 0),
            .name = s_text(r, i, 1),
            .state = s_text(r, i, 2),
            .on_complete = s_text(r, i, 3),
            .on_success = s_text(r, i, 4),
            .on_failure = s_text(r, i, 5),
            .queue = s_text(r, i, 6),
            .complete_id = s_text(r, i, 8),
            .success_id = s_text(r, i, 9),
            .failure_id = s_text(r, i, 10),
            .created_ms = s_int(r, i, 11),
            .closed_ms = s_int(r, i, 12),
            .done_ms = s_int(r, i, 13),
            .since_id = s_text(r, i, 14),
        };
        if (!PQgetisnull(r, i, 7)) {
            b.payload = PQgetvalue(r, i, 7);
            b.payload_len = (size_t)PQgetlength(r, i, 7);
        }
        if (b.owner && b.name && b.state)
            code = cb(arg, &b);
    }
    PQclear(r);
    return code;
}

/* owner NULL: any owner ($1 NULL). */
#define S_BATCH_OWNER "($1::text IS NULL OR coalesce(owner, '') = $1::text)"

static int
s_batch_counts(void *handle, const char *owner, const char *batch,
               const char *since_id, broker_batch_counts_t *out)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, owner);
    dv_pg_p_text(&p, batch);
    dv_pg_p_text(&p, since_id);
    int code;
    PGresult *r = s_batch_read(handle,
                               "SELECT state, count(*) FROM jobs WHERE batch = "
                               "$2::text AND " S_BATCH_OWNER
                               " AND ($3::text IS NULL OR id > $3::text) "
                               "GROUP BY state",
                               &p, "batch_counts", &code);
    if (!r)
        return code;
    for (int i = 0; i < PQntuples(r); i++) {
        int64_t n = s_int(r, i, 1);
        switch (s_state_parse(s_text(r, i, 0))) {
        case DV_STATE_QUEUED:
        case DV_STATE_WAITING: /* live: counted with the queued */
            out->queued += n;
            break;
        case DV_STATE_SCHEDULED:
            out->scheduled += n;
            break;
        case DV_STATE_RUNNING:
            out->running += n;
            break;
        case DV_STATE_SUCCEEDED:
            out->succeeded += n;
            break;
        case DV_STATE_DEAD:
            out->dead += n;
            break;
        case DV_STATE_CANCELLED:
            out->cancelled += n;
            break;
        default:
            break;
        }
    }
    PQclear(r);
    return 0;
}

static int
s_batch_jobs(void *handle, const char *owner, const char *batch,
             const char *after_id, int limit,
             int (*cb)(void *arg, const broker_jobview_t *v), void *arg)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, owner);
    dv_pg_p_text(&p, batch);
    dv_pg_p_text(&p, after_id);
    dv_pg_p_int(&p, limit);
    int code;
    PGresult *r = s_batch_read(
        handle,
        "SELECT id, type, state, attempt, result, category, error, "
        "finished_at, owner FROM jobs WHERE batch = $2::text AND " S_BATCH_OWNER
        " AND ($3::text IS NULL OR id > $3::text) ORDER BY batch, id "
        "LIMIT $4::int",
        &p, "batch_jobs", &code);
    if (!r)
        return code;
    int n = 0;
    code = 0;
    for (int i = 0; i < PQntuples(r) && code == 0; i++) {
        broker_jobview_t v = { 0 };
        v.id = s_text(r, i, 0);
        v.type = s_text(r, i, 1);
        v.state = s_state_parse(s_text(r, i, 2));
        v.attempt = (int)s_int(r, i, 3);
        if (!PQgetisnull(r, i, 4)) {
            v.result = PQgetvalue(r, i, 4);
            v.result_len = (size_t)PQgetlength(r, i, 4);
        }
        v.category = s_text(r, i, 5);
        v.error = s_text(r, i, 6);
        v.finished_ms = s_int(r, i, 7);
        v.owner = s_text(r, i, 8);
        if (!v.id || !v.type)
            continue;
        code = cb(arg, &v);
        if (code == 0)
            n++;
    }
    PQclear(r);
    return code != 0 ? code : n;
}

/* ---- schedules (broker_schedule.c) --------------------------------------- */

static int
s_set_schedule(void *handle, const broker_schedule_rec_t *r)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, r->owner ? r->owner : "");
    dv_pg_p_text(&p, r->name);
    dv_pg_p_text(&p, r->cron);
    dv_pg_p_int(&p, r->every_ms);
    dv_pg_p_text(&p, r->tz);
    dv_pg_p_int(&p, r->anchor_ms);
    dv_pg_p_text(&p, r->queue);
    dv_pg_p_text(&p, r->type);
    dv_pg_p_bytes(&p, r->payload, r->payload_len);
    dv_pg_p_int(&p, r->priority);
    dv_pg_p_int(&p, r->max_attempts);
    dv_pg_p_int(&p, r->timeout_ms);
    dv_pg_p_int(&p, r->no_overlap);
    dv_pg_p_text(&p, r->catch_up_skip ? "skip" : "once");
    dv_pg_p_int(&p, r->paused);
    dv_pg_p_int(&p, r->created_ms);
    s_p_opt(&p, r->next_ms, 0);
    s_p_opt(&p, r->last_fire_ms, 0);
    dv_pg_p_text(&p, r->last_job);
    dv_pg_p_int(&p, r->firings);
    dv_pg_p_int(&p, r->skipped);
    dv_pg_p_int(&p, r->last_lag_ms);
    return s_write(handle, S_SET_SCHEDULE, &p, "set_schedule", NULL, false);
}

static int
s_delete_schedule(void *handle, const char *owner, const char *name)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, owner ? owner : "");
    dv_pg_p_text(&p, name);
    return s_write(handle, S_DELETE_SCHEDULE, &p, "delete_schedule", NULL,
                   false);
}

static int
s_load_schedules(void *handle,
                 int (*cb)(void *arg, const broker_schedule_rec_t *s),
                 void *arg)
{
    int code;
    PGresult *r =
        s_read(handle, S_LOAD_SCHEDULES, NULL, "load_schedules", NULL, &code);
    if (!r)
        return code;
    code = 0;
    for (int i = 0; i < PQntuples(r) && code == 0; i++) {
        const char *owner = s_text(r, i, 0);
        const char *catch_up = s_text(r, i, 13);
        broker_schedule_rec_t x = {
            .owner = owner && owner[0] ? owner : NULL,
            .name = s_text(r, i, 1),
            .cron = s_text(r, i, 2),
            .every_ms = s_int(r, i, 3),
            .tz = s_text(r, i, 4),
            .anchor_ms = s_int(r, i, 5),
            .queue = s_text(r, i, 6),
            .type = s_text(r, i, 7),
            .payload = PQgetisnull(r, i, 8) ? NULL : PQgetvalue(r, i, 8),
            .payload_len =
                PQgetisnull(r, i, 8) ? 0 : (size_t)PQgetlength(r, i, 8),
            .priority = (int)s_int(r, i, 9),
            .max_attempts = (int)s_int(r, i, 10),
            .timeout_ms = s_int(r, i, 11),
            .no_overlap = s_int(r, i, 12) != 0,
            .catch_up_skip = catch_up && strcmp(catch_up, "skip") == 0,
            .paused = s_int(r, i, 14) != 0,
            .created_ms = s_int(r, i, 15),
            .next_ms = s_int(r, i, 16),
            .last_fire_ms = s_int(r, i, 17),
            .last_job = s_text(r, i, 18),
            .firings = s_int(r, i, 19),
            .skipped = s_int(r, i, 20),
            .last_lag_ms = s_int(r, i, 21),
        };
        if (x.name && x.queue && x.type)
            code = cb(arg, &x);
    }
    PQclear(r);
    return code;
}

/* ---- job dependencies (broker_deps.c) ------------------------------------
 * As in store_sqlite.c: a row per job and a job it waits for, inserted with
 * the job (queued in the group's pipeline like the batch writes), read at
 * start-up and by ctrl "job", deleted with the job by S_EXPIRE. Plain
 * parameterised statements. */

static int
s_deps_insert(s_pg_t *be, const broker_jobrec_t *r)
{
    for (uint32_t i = 0; i < r->ndeps; i++) {
        dv_pg_params_t p = { 0 };
        dv_pg_p_text(&p, r->id);
        dv_pg_p_text(&p, r->deps[i].id);
        s_p_bool(&p, r->deps[i].any);
        int code = s_batch_write(be,
                                 "INSERT INTO deps (job_id, after_id, \"any\") "
                                 "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                                 &p, "insert_deps");
        if (code != 0)
            return code;
    }
    return 0;
}

static int
s_deps_replay(void *handle,
              int (*cb)(void *arg, const char *job_id, const char *after_id,
                        bool any, dv_state_t after_state),
              void *arg)
{
    dv_pg_params_t p = { 0 };
    int code;
    PGresult *r = s_batch_read(
        handle,
        "SELECT d.job_id, d.after_id, d.\"any\"::int, a.state FROM deps d "
        "JOIN jobs j ON j.id = d.job_id LEFT JOIN jobs a ON a.id = d.after_id "
        "WHERE j.finished_at IS NULL AND j.state = 'waiting' "
        "ORDER BY d.job_id",
        &p, "deps_replay", &code);
    if (!r)
        return code;
    code = 0;
    for (int i = 0; i < PQntuples(r) && code == 0; i++)
        code = cb(arg, s_text(r, i, 0), s_text(r, i, 1), s_int(r, i, 2) != 0,
                  s_state_parse(s_text(r, i, 3)));
    PQclear(r);
    return code;
}

static int
s_deps_of(void *handle, const char *id, bool waited_by, int limit,
          int (*cb)(void *arg, const char *id, bool any, dv_state_t state),
          void *arg)
{
    dv_pg_params_t p = { 0 };
    dv_pg_p_text(&p, id);
    dv_pg_p_int(&p, limit);
    int code;
    PGresult *r = s_batch_read(
        handle,
        waited_by ? "SELECT d.job_id, d.\"any\"::int, j.state FROM deps d "
                    "LEFT JOIN jobs j ON j.id = d.job_id "
                    "WHERE d.after_id = $1 ORDER BY d.job_id LIMIT $2"
                  : "SELECT d.after_id, d.\"any\"::int, a.state FROM deps d "
                    "LEFT JOIN jobs a ON a.id = d.after_id "
                    "WHERE d.job_id = $1 ORDER BY d.after_id LIMIT $2",
        &p, "deps_of", &code);
    if (!r)
        return code;
    code = 0;
    int n = 0;
    for (int i = 0; i < PQntuples(r) && code == 0; i++, n++)
        code = cb(arg, s_text(r, i, 0), s_int(r, i, 1) != 0,
                  s_state_parse(s_text(r, i, 2)));
    PQclear(r);
    return code != 0 ? code : n;
}

const broker_store_ops_t broker_store_pg_ops = {
    .name = "postgres",
    .open = s_open,
    .close = s_close,
    .begin = s_begin,
    .commit = s_commit,
    .rollback = s_rollback,
    .insert = s_insert,
    .mark_running = s_mark_running,
    .mark_waiting = s_mark_waiting,
    .mark_finished = s_mark_finished,
    .add_attempt = s_add_attempt,
    .replay = s_replay,
    .find_key = s_find_key,
    .get = s_get,
    .attempts = s_attempts,
    .expire = s_expire,
    .load = s_load,
    .list = s_list,
    .finished = s_finished,
    .set_queue = s_set_queue,
    .load_queues = s_load_queues,
    .next_generation = s_next_generation,
    .probe = s_probe,
    .set_key = s_set_key,
    .load_keys = s_load_keys,
    .fence = s_fence,
    .set_schedule = s_set_schedule,
    .delete_schedule = s_delete_schedule,
    .load_schedules = s_load_schedules,
    .set_batch = s_set_batch,
    .del_batch = s_del_batch,
    .load_batches = s_load_batches,
    .batch_counts = s_batch_counts,
    .batch_jobs = s_batch_jobs,
    .deps_replay = s_deps_replay,
    .deps_of = s_deps_of,
};
