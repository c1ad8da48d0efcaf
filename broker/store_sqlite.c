/* store_sqlite - the embedded store: one SQLite file in WAL mode.
 *
 * Durability: the broker acknowledges a job only after commit() returns 0.
 * With synchronous=FULL in WAL mode a commit fsyncs the WAL, so a committed
 * group survives a power cut; NORMAL skips that fsync (survives a process
 * crash only); OFF is for tests and benchmarks.
 *
 * Every statement is prepared once at open and reset after each use, so the
 * hot path never parses SQL. Text and blobs are bound SQLITE_STATIC: every
 * call is synchronous, the caller's memory outlives the step.
 *
 * A write that fails inside a group poisons the group: the error is logged
 * once, remembered, every later write of the group is refused, and commit()
 * rolls back and fails. SQLite may already have rolled the transaction back
 * by itself (disk full, I/O error), and a later write must not slip through
 * in autocommit mode: the broker must never acknowledge a job that is not
 * stored.
 */
#include "broker_store.h"
#include "dv_err.h"
#include "dv_log.h"

#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#define S_SCHEMA_VERSION 6
#define S_STR_(x)        #x
#define S_STR(x)         S_STR_(x)

/* Names as stored (a person reads and queries them). Kept here rather than
 * taken from dv_proto so the store does not depend on the codec; they must
 * match dv_state_name() and dv_category_name(). */
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

/* Schema version 6 (version 1 had no jobs.owner, version 2 had idempotency
 * keys unique across owners, version 3 had no api_keys, version 4 had no
 * attempts.details and attempts.stderr, version 5 had no schedules and no
 * jobs.schedule; s_schema_setup migrates all five). Kept as plain SQL so
 * an operator can debug with the sqlite3 shell: SELECT state, count(*)
 * FROM jobs GROUP BY 1.
 *
 * jobs is an ordinary rowid table, not WITHOUT ROWID. WITHOUT ROWID would
 * save the automatic index on id, but it keeps whole rows in the interior
 * pages of its b-tree, and our rows are not small (a payload of 100 bytes
 * to 1 MiB): bench_store measured inserts in groups of 1000 about even with
 * 100-byte payloads and 3x slower with 1 KiB ones (25k vs 75k rows/s),
 * running+finished updates 3x slower too. UUIDv7 ids are time ordered, so
 * both the rowid b-tree and the id index grow at their right edge, the
 * cheapest insert pattern a b-tree has. attempts rows hold no payload and
 * are looked up by (job_id, attempt), so there WITHOUT ROWID is one b-tree
 * instead of two.
 *
 * The secondary indexes are partial, so a row pays only for those it is in:
 * jobs_live holds only unfinished jobs (replay at start-up reads them in id
 * order without touching the finished ones kept for result_ttl), jobs_key
 * only jobs with an idempotency key, jobs_expires only finished jobs,
 * jobs_batch_id only jobs in a batch. jobs_live is "WHERE finished_at IS NULL",
 * not "WHERE state IN (...)": SQLite evaluates a partial index's WHERE on
 * every write of the row, and an IN list builds a temporary table each
 * time, which halved insert speed and cut update speed by 3x.
 * mark_finished sets finished_at and mark_waiting clears it, so NULL means
 * unfinished, and mark_running (which leaves finished_at alone) does not
 * touch the index at all.
 * No mmap: an I/O error on a mapped page is a SIGBUS, not an error code. */
/* Finished jobs by the time they finished (ctrl "finished": a collector
 * backfilling what it missed). Partial like the others: only finished jobs
 * pay for it, once, when they finish. */
#define S_FINISHED_INDEX                                                       \
    "CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(finished_at, id)\n"      \
    "    WHERE finished_at IS NOT NULL;\n" S_DEAD_INDEX

/* Dead and cancelled jobs of a queue (retry --dead). It replaces
 * jobs_queue_state, which covered succeeded jobs as well: a succeeded
 * job's finish then wrote one index entry that no query reads. Dropped and
 * made at every start too, like jobs_finished. */
#define S_DEAD_INDEX                                                           \
    "DROP INDEX IF EXISTS jobs_queue_state;\n"                                 \
    "CREATE INDEX IF NOT EXISTS jobs_dead ON jobs(queue, state)\n"             \
    "    WHERE finished_at IS NOT NULL AND state <> 'succeeded';\n"

/* Idempotency keys are unique per owner: two clients may use the same key
 * and get two jobs, and neither learns of the other's. coalesce() because
 * a unique index treats NULLs as distinct, and jobs without an owner (no
 * CurveZMQ) share one namespace. */
#define S_OWNER_KEY_INDEX                                                      \
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_owner_key\n"                       \
    "    ON jobs(coalesce(owner, ''), key) WHERE key IS NOT NULL;\n"

/* The fleet's state of each API key (broker_key_state_t), by the short
 * hash that names it, so a restarted broker knows which keys cool down,
 * are disabled or have a learned limit. Times are epoch ms; proven is
 * 0/1. New in version 4. */
#define S_API_KEYS_TABLE                                                       \
    "CREATE TABLE IF NOT EXISTS api_keys (\n"                                  \
    "    hash TEXT PRIMARY KEY,\n"                                             \
    "    id TEXT NOT NULL,\n"                                                  \
    "    cool_until_ms INTEGER,\n"                                             \
    "    disabled_status INTEGER,\n"                                           \
    "    disabled_ms INTEGER,\n"                                               \
    "    learned_limit INTEGER,\n"                                             \
    "    learned_ms INTEGER,\n"                                                \
    "    proven INTEGER,\n"                                                    \
    "    updated_ms INTEGER\n"                                                 \
    ");\n"

/* Periodic jobs the broker fires (broker_schedule.c), by (owner, name);
 * owner '' is none (no CurveZMQ). Times are epoch ms; flags 0/1; catch_up
 * 'once' or 'skip'. New in version 6. */
#define S_SCHEDULES_TABLE                                                      \
    "CREATE TABLE IF NOT EXISTS schedules (\n"                                 \
    "    owner TEXT NOT NULL DEFAULT '',\n"                                    \
    "    name TEXT NOT NULL,\n"                                                \
    "    cron TEXT,\n"                                                         \
    "    every_ms INTEGER NOT NULL DEFAULT 0,\n"                               \
    "    tz TEXT,\n"                                                           \
    "    anchor_ms INTEGER NOT NULL,\n"                                        \
    "    queue TEXT NOT NULL,\n"                                               \
    "    type TEXT NOT NULL,\n"                                                \
    "    payload BLOB,\n"                                                      \
    "    priority INTEGER NOT NULL,\n"                                         \
    "    max_attempts INTEGER NOT NULL,\n"                                     \
    "    timeout_ms INTEGER NOT NULL,\n"                                       \
    "    no_overlap INTEGER NOT NULL,\n"                                       \
    "    catch_up TEXT NOT NULL,\n"                                            \
    "    paused INTEGER NOT NULL,\n"                                           \
    "    created_at INTEGER NOT NULL,\n"                                       \
    "    next_at INTEGER,\n"                                                   \
    "    last_fire_at INTEGER,\n"                                              \
    "    last_job TEXT,\n"                                                     \
    "    firings INTEGER NOT NULL DEFAULT 0,\n"                                \
    "    skipped INTEGER NOT NULL DEFAULT 0,\n"                                \
    "    last_lag_ms INTEGER,\n"                                               \
    "    PRIMARY KEY (owner, name)\n"                                          \
    ");\n"
/* Batch records (broker_batchrec_t) by (owner, name), owner '' for none;
 * and a batch's jobs in id order (ctrl "batch.jobs"). Made at every start
 * (CREATE ... IF NOT EXISTS), not by a schema version.
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
    "    payload BLOB,\n"                                                      \
    "    complete_id TEXT,\n"                                                  \
    "    success_id TEXT,\n"                                                   \
    "    failure_id TEXT,\n"                                                   \
    "    created_at INTEGER NOT NULL,\n"                                       \
    "    closed_at INTEGER,\n"                                                 \
    "    done_at INTEGER,\n"                                                   \
    "    since_id TEXT,\n"                                                     \
    "    PRIMARY KEY (owner, name)\n"                                          \
    ");\n"                                                                     \
    "CREATE INDEX IF NOT EXISTS jobs_batch_id ON jobs(batch, id)\n"            \
    "    WHERE batch IS NOT NULL;\n"                                           \
    "DROP INDEX IF EXISTS jobs_batch;\n"

static const char s_schema[] =
    "CREATE TABLE IF NOT EXISTS jobs (\n"
    "    id TEXT PRIMARY KEY,\n"
    "    queue TEXT NOT NULL,\n"
    "    type TEXT NOT NULL,\n"
    "    state TEXT NOT NULL,\n"
    "    priority INTEGER NOT NULL,\n"
    "    payload BLOB,\n"
    "    key TEXT,\n"
    "    batch TEXT,\n"
    "    trace TEXT,\n"
    "    created_at INTEGER NOT NULL,\n" /* epoch ms, as every *_at */
    "    run_at INTEGER NOT NULL,\n"
    "    attempt INTEGER NOT NULL,\n"
    "    max_attempts INTEGER NOT NULL,\n"
    "    timeout_ms INTEGER NOT NULL,\n"
    "    backoff_base_ms INTEGER,\n"
    "    backoff_factor REAL,\n"
    "    backoff_cap_ms INTEGER,\n"
    "    backoff_jitter INTEGER,\n"
    "    result_ttl_ms INTEGER NOT NULL,\n"
    "    worker TEXT,\n"
    "    started_at INTEGER,\n"
    "    finished_at INTEGER,\n"
    "    expires_at INTEGER,\n"
    "    result BLOB,\n"
    "    category TEXT,\n"
    "    error TEXT,\n"
    "    retry_after_ms INTEGER,\n"
    "    exit_code INTEGER,\n"
    "    signal INTEGER,\n"
    "    http_status INTEGER,\n"
    /* The certificate name of the peer that submitted the job (CurveZMQ),
     * or NULL. */
    "    owner TEXT,\n"
    /* The schedule whose firing submitted the job, or NULL. New in
     * version 6. */
    "    schedule TEXT\n"
    ");\n" S_OWNER_KEY_INDEX
    "CREATE INDEX IF NOT EXISTS jobs_live ON jobs(id)\n"
    "    WHERE finished_at IS NULL;\n"
    "CREATE INDEX IF NOT EXISTS jobs_expires ON jobs(expires_at)\n"
    "    WHERE expires_at IS NOT NULL;\n"
    "CREATE TABLE IF NOT EXISTS attempts (\n"
    "    job_id TEXT NOT NULL,\n"
    "    attempt INTEGER NOT NULL,\n"
    "    worker TEXT,\n"
    "    started_at INTEGER,\n"
    "    finished_at INTEGER,\n"
    "    outcome TEXT NOT NULL,\n"
    "    category TEXT,\n"
    "    message TEXT,\n"
    "    retryable INTEGER,\n"
    "    retry_after_ms INTEGER,\n"
    "    exit_code INTEGER,\n"
    "    signal INTEGER,\n"
    "    http_status INTEGER,\n"
    "    key_id TEXT,\n"
    /* What the handler said beyond the message (a traceback) and the tail
     * of its stderr, each <= 8 KB. New in version 5. */
    "    details TEXT,\n"
    "    stderr TEXT,\n"
    "    PRIMARY KEY (job_id, attempt)\n"
    ") WITHOUT ROWID;\n"
    /* Operator settings per queue, so they survive a restart. */
    "CREATE TABLE IF NOT EXISTS queues (\n"
    "    name TEXT PRIMARY KEY,\n"
    "    paused INTEGER NOT NULL DEFAULT 0,\n"
    "    rate REAL NOT NULL DEFAULT 0,\n"
    "    max_running INTEGER NOT NULL DEFAULT 0\n"
    ");\n" S_API_KEYS_TABLE S_SCHEDULES_TABLE;

/* The prepared statements, by purpose. */
typedef enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_INSERT,
    S_RUNNING,
    S_WAITING,
    S_FINISHED,
    S_ATTEMPT,
    S_REPLAY,
    S_FIND_KEY,
    S_GET,
    S_EXPIRE_ATTEMPTS,
    S_EXPIRE_JOBS,
    S_ATTEMPTS,
    S_LOAD,
    S_LIST,
    S_LIST_FINISHED,
    S_SET_QUEUE,
    S_LOAD_QUEUES,
    S_PROBE,
    S_SET_KEY,
    S_LOAD_KEYS,
    S_COUNT_
} s_stmt_t;

/* The failure columns (category, error, retry_after_ms, exit_code, signal,
 * http_status) are set from parameters ?6..?11 when ?5 is true, else kept.
 * One statement serves "new failure" and "keep the last one". */
#define S_FAILURE_SET                                                          \
    "category = CASE WHEN ?5 THEN ?6 ELSE category END, "                      \
    "error = CASE WHEN ?5 THEN ?7 ELSE error END, "                            \
    "retry_after_ms = CASE WHEN ?5 THEN ?8 ELSE retry_after_ms END, "          \
    "exit_code = CASE WHEN ?5 THEN ?9 ELSE exit_code END, "                    \
    "signal = CASE WHEN ?5 THEN ?10 ELSE signal END, "                         \
    "http_status = CASE WHEN ?5 THEN ?11 ELSE http_status END "

#define S_JOBREC_COLUMNS                                                       \
    "id, queue, type, key, batch, trace, payload, state, priority, "           \
    "created_at, run_at, attempt, max_attempts, timeout_ms, "                  \
    "backoff_base_ms, backoff_factor, backoff_cap_ms, backoff_jitter, "        \
    "result_ttl_ms, worker, owner, schedule"

/* Every column of attempts but job_id, as broker_attempt_row_t has them. */
#define S_ATTEMPT_COLUMNS                                                      \
    "attempt, worker, started_at, finished_at, outcome, category, message, "   \
    "retryable, retry_after_ms, exit_code, signal, http_status, key_id, "      \
    "details, stderr"

/* The ORDER BY makes both expire statements pick the same rows; the
 * jobs_expires index entries are (expires_at, rowid), so it costs no sort. */
#define S_EXPIRED(col)                                                         \
    "SELECT " col " FROM jobs WHERE expires_at <= ?1 " S_BATCH_KEEPS           \
    "ORDER BY expires_at, rowid LIMIT ?2"

/* A job of a batch whose record is not done is kept past its result_ttl
 * (its results are read until the batch's callbacks ended). */
#define S_BATCH_KEEPS                                                          \
    "AND (batch IS NULL OR NOT EXISTS (SELECT 1 FROM batches b "               \
    "WHERE b.owner = coalesce(jobs.owner, '') AND b.name = jobs.batch "        \
    "AND b.state <> 'done')) "

static const char *s_sql[S_COUNT_] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_INSERT] = "INSERT INTO jobs (" S_JOBREC_COLUMNS ") VALUES "
                 "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                 "?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
    [S_RUNNING] = "UPDATE jobs SET state = 'running', attempt = ?2, "
                  "worker = ?3, started_at = ?4 WHERE id = ?1",
    /* Back to waiting also undoes a finish (a dead job retried by the
     * operator), so expire() will not delete it while it waits. */
    [S_WAITING] =
        "UPDATE jobs SET state = ?2, run_at = ?3, attempt = ?4, "
        "worker = NULL, finished_at = NULL, expires_at = NULL, " S_FAILURE_SET
        "WHERE id = ?1",
    /* ?12 is the finish time; the ttl comes from the row itself. */
    [S_FINISHED] = "UPDATE jobs SET state = ?2, attempt = ?3, result = ?4, "
                   "finished_at = ?12, expires_at = ?12 + result_ttl_ms, "
                   "worker = coalesce(?13, worker), started_at = coalesce(?14, "
                   "started_at), " S_FAILURE_SET "WHERE id = ?1",
    [S_ATTEMPT] = "INSERT OR REPLACE INTO attempts (job_id, attempt, worker, "
                  "started_at, finished_at, outcome, category, message, "
                  "retryable, retry_after_ms, exit_code, signal, "
                  "http_status, key_id, details, stderr) VALUES (?1, ?2, "
                  "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
                  "?16)",
    /* finished_at IS NULL selects jobs_live; the state test only guards
     * against a row someone edited by hand. */
    [S_REPLAY] = "SELECT " S_JOBREC_COLUMNS " FROM jobs "
                 "WHERE finished_at IS NULL "
                 "AND state IN ('queued', 'scheduled', 'running', 'waiting') "
                 "ORDER BY id",
    [S_FIND_KEY] = "SELECT id FROM jobs WHERE coalesce(owner, '') = ?2 "
                   "AND key = ?1",
    [S_GET] = "SELECT id, queue, type, state, attempt, result, category, "
              "error, finished_at, owner FROM jobs WHERE id = ?1",
    [S_EXPIRE_ATTEMPTS] =
        "DELETE FROM attempts WHERE job_id IN (" S_EXPIRED("id") ")",
    [S_EXPIRE_JOBS] =
        "DELETE FROM jobs WHERE rowid IN (" S_EXPIRED("rowid") ")",
    /* The last ?2 attempts of a job, oldest first: the primary key
     * (job_id, attempt) serves both orders. */
    [S_ATTEMPTS] = "SELECT * FROM (SELECT " S_ATTEMPT_COLUMNS
                   " FROM attempts WHERE job_id = ?1 "
                   "ORDER BY attempt DESC LIMIT ?2) ORDER BY attempt",
    [S_LOAD] = "SELECT " S_JOBREC_COLUMNS " FROM jobs WHERE id = ?1",
    /* Finished jobs of one queue in one state (retry --dead); the partial
     * index jobs_dead covers exactly these (dead or cancelled). */
    [S_LIST] = "SELECT id FROM jobs WHERE queue = ?1 AND state = ?2 "
               "AND finished_at IS NOT NULL AND state <> 'succeeded' "
               "ORDER BY id LIMIT ?3",
    [S_LIST_FINISHED] =
        "SELECT id, queue, type, batch, state, attempt, worker, "
        "started_at, finished_at, category, error FROM jobs "
        "WHERE finished_at IS NOT NULL AND finished_at >= ?1 "
        "AND finished_at <= ?2 AND (finished_at > ?1 OR "
        "?3 IS NULL OR id > ?3) ORDER BY finished_at, id LIMIT ?4",
    [S_SET_QUEUE] = "INSERT INTO queues (name, paused, rate, max_running) "
                    "VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET "
                    "paused = ?2, rate = ?3, max_running = ?4",
    [S_LOAD_QUEUES] = "SELECT name, paused, rate, max_running FROM queues",
    /* Rewrites the schema version with its own value: a page goes to the
     * WAL at commit, so the commit needs room on the disk like any other,
     * and no job changes. */
    [S_PROBE] = "PRAGMA user_version = " S_STR(S_SCHEMA_VERSION),
    [S_SET_KEY] =
        "INSERT INTO api_keys (hash, id, cool_until_ms, disabled_status, "
        "disabled_ms, learned_limit, learned_ms, proven, updated_ms) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
        "ON CONFLICT(hash) DO UPDATE SET id = ?2, cool_until_ms = ?3, "
        "disabled_status = ?4, disabled_ms = ?5, learned_limit = ?6, "
        "learned_ms = ?7, proven = ?8, updated_ms = ?9",
    [S_LOAD_KEYS] = "SELECT hash, id, cool_until_ms, disabled_status, "
                    "disabled_ms, learned_limit, learned_ms, proven, "
                    "updated_ms FROM api_keys",
};

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

typedef struct {
    sqlite3 *db;
    char *path; /* for log lines */
    sqlite3_stmt *stmt[S_COUNT_];
    bool in_txn;    /* between begin and commit/rollback */
    int group_err;  /* first failure in this group, or 0 */
    int step_errno; /* errno as the last step left it */
    /* The last failure logged at error level (SQLite code and errno), so
     * that a store that keeps failing the same way (a full disk, while the
     * broker retries) logs it once, not once per try; cleared by the next
     * commit that succeeds. */
    int logged_rc, logged_sys;
    int64_t frame_bytes;      /* one WAL frame: a page and its header */
    sqlite3_stmt *dep_insert; /* job dependencies: prepared at first use */
} s_sqlite_t;

/* Job dependencies (the block at the end of this file). */
static int s_deps_setup(s_sqlite_t *be);
static int s_deps_insert(s_sqlite_t *be, const broker_jobrec_t *r);
static int s_deps_expire(s_sqlite_t *be, int64_t now_ms, int limit);

/* Maps an SQLite result code (and the errno behind it, sys) to ours: busy
 * and locked may clear up if the broker retries the group at once; a full
 * disk is DV_ENOSPC, whether SQLite says SQLITE_FULL or reports the failed
 * write(2) as an I/O error whose errno is ENOSPC (or EDQUOT); everything
 * else (constraint, I/O, corruption) is DV_EIO. */
static int
s_code(int rc, int sys)
{
    int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        return DV_ETRANSIENT;
    if (primary == SQLITE_FULL ||
        (primary == SQLITE_IOERR && (sys == ENOSPC || sys == EDQUOT)))
        return DV_ENOSPC;
    return DV_EIO;
}

/* sqlite3_step() that also keeps errno: SQLite reports a failed write(2)
 * only as "disk I/O error" and often does not record the errno itself
 * (sqlite3_system_errno() stays 0), yet ENOSPC, EIO and EFBIG call for
 * different fixes. */
static int
s_step(s_sqlite_t *be, sqlite3_stmt *st)
{
    errno = 0;
    int rc = sqlite3_step(st);
    be->step_errno = errno;
    return rc;
}

/* Logs a failed operation (at error level unless it failed the same way
 * last time), poisons the current group, returns our code. Call before
 * resetting the statement, which may clear the message. */
static int
s_fail(s_sqlite_t *be, const char *op, const char *id, int rc)
{
    int primary = rc & 0xff;
    /* errno means something only when the VFS failed; otherwise it is a
     * leftover of some harmless probe. */
    int sys = 0;
    if (primary == SQLITE_IOERR || primary == SQLITE_FULL ||
        primary == SQLITE_CANTOPEN) {
        sys = sqlite3_system_errno(be->db);
        if (sys == 0)
            sys = be->step_errno;
    }
    bool again = rc == be->logged_rc && sys == be->logged_sys;
    dv_log(again ? DV_DEBUG : DV_ERROR, "store.sqlite_error", DV_STR("op", op),
           DV_STR("job", id), DV_STR("error", sqlite3_errmsg(be->db)),
           DV_INT("rc", rc), DV_STR("errno", sys ? strerror(sys) : NULL),
           DV_STR("path", be->path));
    be->logged_rc = rc;
    be->logged_sys = sys;
    int code = s_code(rc, sys);
    if (be->in_txn && !be->group_err)
        be->group_err = code;
    return code;
}

static void
s_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Runs a statement that returns no rows; resets it whatever happens. */
static int
s_run(s_sqlite_t *be, sqlite3_stmt *st, const char *op, const char *id)
{
    int rc = s_step(be, st);
    int code = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = s_fail(be, op, id, rc);
    s_done(st);
    return code;
}

/* ---- binding helpers: NULL pointers and "none" markers become SQL NULL */

static int
s_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC)
             : sqlite3_bind_null(st, i);
}

static int
s_bind_str(sqlite3_stmt *st, int i, dv_str_t v)
{
    return v.ptr ? sqlite3_bind_text(st, i, v.ptr, (int)v.len, SQLITE_STATIC)
                 : sqlite3_bind_null(st, i);
}

static int
s_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t len)
{
    return p && len ? sqlite3_bind_blob64(st, i, p, len, SQLITE_STATIC)
                    : sqlite3_bind_null(st, i);
}

/* Binds v, or NULL when v is the field's "none" marker. */
static int
s_bind_opt(sqlite3_stmt *st, int i, int64_t v, int64_t none)
{
    return v != none ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
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
s_state_parse(const unsigned char *name)
{
    if (name)
        for (int s = DV_STATE_NONE + 1; s < DV_STATE_COUNT_; s++)
            if (strcmp((const char *)name, s_state_names[s]) == 0)
                return (dv_state_t)s;
    return DV_STATE_UNKNOWN;
}

/* Binds ?5..?11 of S_FAILURE_SET: set is ?5; f may be NULL with set true,
 * which clears the failure columns. */
static int
s_bind_failure(sqlite3_stmt *st, bool set, const dv_failure_t *f)
{
    int rc = sqlite3_bind_int(st, 5, set);
    if (!f)
        return rc; /* ?6..?11 stay NULL */
    rc |= s_bind_text(st, 6, s_category_name(f->category));
    rc |= s_bind_str(st, 7, f->message);
    rc |= s_bind_opt(st, 8, f->retry_after_ms, 0);
    rc |= s_bind_opt(st, 9, f->exit_code, -1);
    rc |= s_bind_opt(st, 10, f->signal, 0);
    rc |= s_bind_opt(st, 11, f->http_status, 0);
    return rc;
}

/* A bind can only fail on our own bug or an absurd size; report it like a
 * failed step so the group is poisoned all the same. */
static int
s_bind_failed(s_sqlite_t *be, sqlite3_stmt *st, const char *op, const char *id)
{
    int code = s_fail(be, op, id, sqlite3_errcode(be->db));
    s_done(st);
    return code;
}

/* Inside a poisoned group nothing more is written: SQLite may have rolled
 * the transaction back already, and a write now would autocommit. */
static bool
s_poisoned(const s_sqlite_t *be)
{
    return be->in_txn && be->group_err;
}

/* An UPDATE that matched no row means the broker and the store disagree
 * about a job; worth a line, not worth failing the whole group. */
static void
s_check_found(s_sqlite_t *be, const char *op, const char *id)
{
    if (sqlite3_changes(be->db) == 0)
        dv_log(DV_WARN, "store.no_such_job", DV_STR("op", op),
               DV_STR("job", id));
}

/* ---- open / close ----------------------------------------------------- */

static void
s_close(void *handle)
{
    s_sqlite_t *be = handle;
    if (!be)
        return;
    if (be->db && !sqlite3_get_autocommit(be->db))
        sqlite3_exec(be->db, "ROLLBACK", NULL, NULL, NULL);
    for (int i = 0; i < S_COUNT_; i++)
        sqlite3_finalize(be->stmt[i]);
    sqlite3_finalize(be->dep_insert);
    if (be->db && sqlite3_close(be->db) != SQLITE_OK)
        dv_log(DV_ERROR, "store.sqlite_close", DV_STR("path", be->path),
               DV_STR("error", sqlite3_errmsg(be->db)));
    free(be->path);
    free(be);
}

/* Explains a failed open. SQLite says only "unable to open database file";
 * the common causes are worth naming. */
static void
s_open_error(s_sqlite_t *be, int rc, char *err, size_t err_size)
{
    int sys = be->db ? sqlite3_system_errno(be->db) : 0;
    char *copy = strdup(be->path);
    const char *dir = copy ? dirname(copy) : ".";
    struct stat st;
    if ((rc & 0xff) == SQLITE_CANTOPEN && stat(dir, &st) != 0 &&
        errno == ENOENT)
        dv_err_set(err, err_size,
                   "sqlite store '%s': directory '%s' does not exist", be->path,
                   dir);
    else if ((rc & 0xff) == SQLITE_CANTOPEN && stat(dir, &st) == 0 &&
             !S_ISDIR(st.st_mode))
        dv_err_set(err, err_size, "sqlite store '%s': '%s' is not a directory",
                   be->path, dir);
    else
        dv_err_set(err, err_size, "sqlite store '%s': cannot open: %s%s%s%s",
                   be->path,
                   be->db ? sqlite3_errmsg(be->db) : sqlite3_errstr(rc),
                   sys ? " (" : "", sys ? strerror(sys) : "", sys ? ")" : "");
    free(copy);
}

/* Runs one statement that may return a row; copies the first column of the
 * first row into out (if not NULL). */
static int
s_exec_row(sqlite3 *db, const char *sql, char *out, size_t out_size)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (out && out_size) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(out, out_size, "%s", t ? (const char *)t : "");
        }
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        if (out && out_size)
            out[0] = '\0';
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Creates the schema on a new file, migrates versions 1 (adds jobs.owner),
 * 2 (idempotency keys per owner), 3 (adds api_keys), 4 (adds
 * attempts.details and attempts.stderr) and 5 (adds schedules and
 * jobs.schedule),
 * accepts the current version, refuses a newer one (a downgrade would
 * misread it). */
static int
s_schema_setup(s_sqlite_t *be, char *err, size_t err_size)
{
    int rc = sqlite3_exec(be->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        dv_err_set(err, err_size, "sqlite store '%s': cannot lock: %s",
                   be->path, sqlite3_errmsg(be->db));
        return -1;
    }
    char buf[32];
    rc = s_exec_row(be->db, "PRAGMA user_version", buf, sizeof buf);
    long version = rc == SQLITE_OK ? strtol(buf, NULL, 10) : 0;
    if (rc == SQLITE_OK && version > S_SCHEMA_VERSION) {
        sqlite3_exec(be->db, "ROLLBACK", NULL, NULL, NULL);
        dv_err_set(err, err_size,
                   "sqlite store '%s': schema version %ld is newer than this "
                   "drover understands (%d)",
                   be->path, version, S_SCHEMA_VERSION);
        return -1;
    }
    if (rc == SQLITE_OK && version == 0)
        rc = sqlite3_exec(be->db, s_schema, NULL, NULL, NULL);
    if (rc == SQLITE_OK && version == 1)
        /* Version 1 to 2: jobs.owner; the jobs stored before have none. */
        rc = sqlite3_exec(be->db, "ALTER TABLE jobs ADD COLUMN owner TEXT",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK && version >= 1 && version < 3)
        /* Version 2 to 3: idempotency keys unique per owner. */
        rc = sqlite3_exec(be->db,
                          "DROP INDEX IF EXISTS jobs_key;\n" S_OWNER_KEY_INDEX,
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK && version >= 1 && version < 4)
        /* Version 3 to 4: the fleet's API-key state. */
        rc = sqlite3_exec(be->db, S_API_KEYS_TABLE, NULL, NULL, NULL);
    if (rc == SQLITE_OK && version >= 1 && version < 5)
        /* Version 4 to 5: an attempt's details and stderr tail. */
        rc = sqlite3_exec(be->db,
                          "ALTER TABLE attempts ADD COLUMN details TEXT;\n"
                          "ALTER TABLE attempts ADD COLUMN stderr TEXT;\n",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK && version >= 1 && version < 6)
        /* Version 5 to 6: schedules, and the schedule that fired a job. */
        rc = sqlite3_exec(
            be->db,
            "ALTER TABLE jobs ADD COLUMN schedule TEXT;\n" S_SCHEDULES_TABLE,
            NULL, NULL, NULL);
    if (rc == SQLITE_OK && version < S_SCHEMA_VERSION)
        rc = sqlite3_exec(be->db,
                          "PRAGMA user_version = " S_STR(S_SCHEMA_VERSION),
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        /* Made at every start, not by a version (a store made before it
         * gets it too): finished jobs by time, for ctrl "finished". */
        rc = sqlite3_exec(be->db, S_FINISHED_INDEX, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        /* Batch records and jobs by (batch, id): at every start too. */
        rc = sqlite3_exec(be->db, S_BATCHES_SCHEMA, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        /* Job dependencies: at every start too. */
        rc = s_deps_setup(be);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(be->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        dv_err_set(err, err_size, "sqlite store '%s': cannot create schema: %s",
                   be->path, sqlite3_errmsg(be->db));
        if (!sqlite3_get_autocommit(be->db))
            sqlite3_exec(be->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* The WAL is checkpointed after a commit that leaves it this big (4,096
 * frames of 8 KiB pages; SQLite's own default is 1,000 frames): a group's pages are mostly the right edges of the
 * b-trees, written again by the next groups, so a rarer checkpoint copies
 * each of them to the database once instead of many times, and fsyncs the
 * database file (sync=full) less often. Its first measurement (bench_store)
 * said about 15% of the writer thread's CPU time; bench_e2e (Release,
 * 100,000 jobs, 9 runs each, alternating, on a shared machine) later gave
 * 9.6 us of writer CPU a job against 9.7 with 1,000 pages, within the
 * noise; bench_store -s with 16 KiB pages, 2,048 frames against 8,192:
 * within the noise too. It costs up to 32 MiB of WAL on disk, bounded by
 * the free space (s_wal_hook). */
#define S_WAL_CHECKPOINT_BYTES (32 << 20)

/* The page size of a new store. Each page a commit changed is written to
 * the WAL, then copied into the database file by a checkpoint, two system
 * calls and more for each, and a group of no-op jobs changes about as
 * many pages of 8 KiB as of 4 KiB: bench_store -s (insert and finish in
 * groups of 1,000, synchronous=FULL), 5 alternating runs, gave 6.75 us of
 * CPU a job against 7.97 with SQLite's 4 KiB (16 KiB: 6.45). A commit of
 * one job writes more bytes, so the slowest rate, one job a group, falls:
 * 4,100 commits/s against 4,800 (16 KiB: 3,190). A store made with
 * another page size keeps it (SQLite fixes it when it makes the file). */
#define S_PAGE_SIZE 8192

/* SQLite checkpoints the WAL only after a commit, and the pages of the WAL
 * go to the database file, which may have to grow to take them. On a
 * filesystem with less room than S_WAL_CHECKPOINT_BYTES (or the 1,000
 * of SQLite's own hook), the WAL would grow into the last free byte before
 * its first checkpoint; from then on no commit could succeed (the WAL cannot
 * grow) and no checkpoint could run (the database file cannot grow), so the
 * store would stay full for good, its own WAL holding the space that the
 * operator freed, and the broker would keep the outcomes in memory and
 * retry the group forever. So this hook (in place of SQLite's autocheckpoint
 * hook) checkpoints sooner too: once the WAL's frames take half of the room
 * still free on the store's filesystem, the database file always has room
 * for them. A checkpoint that cannot finish (a reader, a full disk) is tried
 * again after the next commit. */
static int
s_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    s_sqlite_t *be = arg;
    bool due = (int64_t)frames * be->frame_bytes >= S_WAL_CHECKPOINT_BYTES;
    struct statvfs fs;
    if (!due && statvfs(be->path, &fs) == 0) {
        int64_t room = (int64_t)fs.f_bavail * (int64_t)fs.f_frsize;
        due = (int64_t)frames * be->frame_bytes >= room / 2;
    }
    if (due)
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                  NULL);
    return SQLITE_OK;
}

static int
s_setup(s_sqlite_t *be, const broker_store_opts_t *opts, char *err,
        size_t err_size)
{
    static const char *sync_sql[] = {
        [BROKER_SYNC_FULL] = "PRAGMA synchronous = FULL",
        [BROKER_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
        [BROKER_SYNC_OFF] = "PRAGMA synchronous = OFF",
    };
    if ((unsigned)opts->sync > BROKER_SYNC_OFF) {
        dv_err_set(err, err_size, "sqlite store '%s': unknown sync mode %d",
                   be->path, (int)opts->sync);
        return -1;
    }
    sqlite3_extended_result_codes(be->db, 1);
    /* The busy timeout first: switching to WAL needs a lock that a
     * sqlite3 shell someone left open may hold for a moment. */
    sqlite3_busy_timeout(be->db, 5000);

    /* Before WAL: it applies only to a file with no pages yet. */
    int rc =
        s_exec_row(be->db, "PRAGMA page_size = " S_STR(S_PAGE_SIZE), NULL, 0);
    if (rc != SQLITE_OK) {
        dv_err_set(err, err_size, "sqlite store '%s': %s", be->path,
                   sqlite3_errmsg(be->db));
        return -1;
    }
    char mode[16];
    rc = s_exec_row(be->db, "PRAGMA journal_mode = WAL", mode, sizeof mode);
    if (rc != SQLITE_OK) {
        dv_err_set(err, err_size, "sqlite store '%s': %s", be->path,
                   sqlite3_errmsg(be->db));
        return -1;
    }
    /* An in-memory database (":memory:", tests) has no WAL; a file that
     * cannot have one (a filesystem without shared memory) is refused:
     * the durability and reader-friendliness promises assume WAL. */
    if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0) {
        dv_err_set(err, err_size,
                   "sqlite store '%s': cannot use WAL journal mode (got '%s')",
                   be->path, mode);
        return -1;
    }
    const char *pragmas[] = {
        sync_sql[opts->sync],
        "PRAGMA foreign_keys = OFF",
        /* After a burst the WAL would stay at its largest size; keep it
         * near 64 MiB once checkpointed. */
        "PRAGMA journal_size_limit = 67108864",
        /* 32 MiB of page cache keeps the right edge of the b-trees and
         * the live index hot. */
        "PRAGMA cache_size = -32768",
        "PRAGMA temp_store = MEMORY",
    };
    for (size_t i = 0; i < sizeof pragmas / sizeof pragmas[0]; i++) {
        rc = s_exec_row(be->db, pragmas[i], NULL, 0);
        if (rc != SQLITE_OK) {
            dv_err_set(err, err_size, "sqlite store '%s': %s: %s", be->path,
                       pragmas[i], sqlite3_errmsg(be->db));
            return -1;
        }
    }
    char page[32];
    rc = s_exec_row(be->db, "PRAGMA page_size", page, sizeof page);
    if (rc != SQLITE_OK) {
        dv_err_set(err, err_size, "sqlite store '%s': %s", be->path,
                   sqlite3_errmsg(be->db));
        return -1;
    }
    be->frame_bytes = strtoll(page, NULL, 10) + 24;
    /* Replaces SQLite's autocheckpoint (PRAGMA wal_autocheckpoint). */
    sqlite3_wal_hook(be->db, s_wal_hook, be);
    if (s_schema_setup(be, err, err_size) != 0)
        return -1;
    for (int i = 0; i < S_COUNT_; i++) {
        rc = sqlite3_prepare_v3(be->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                &be->stmt[i], NULL);
        if (rc != SQLITE_OK) {
            dv_err_set(err, err_size, "sqlite store '%s': cannot prepare: %s",
                       be->path, sqlite3_errmsg(be->db));
            return -1;
        }
    }
    return 0;
}

static void *
s_open(const char *path, const broker_store_opts_t *opts, char *err,
       size_t err_size)
{
    s_sqlite_t *be = calloc(1, sizeof *be);
    if (!be || !(be->path = strdup(path))) {
        free(be);
        dv_err_set(err, err_size, "out of memory");
        return NULL;
    }
    /* No allocation statistics: they take a global mutex per malloc and
     * free, a tenth of the store writer's time. Refused (harmlessly) once
     * SQLite is initialised, as for every open after the first. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    /* NOMUTEX: the broker's loop thread owns the store, so SQLite's
     * per-connection mutex would only cost time. */
    int rc = sqlite3_open_v2(
        path, &be->db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        s_open_error(be, rc, err, err_size);
        s_close(be);
        return NULL;
    }
    if (s_setup(be, opts, err, err_size) != 0) {
        s_close(be);
        return NULL;
    }
    return be;
}

/* ---- write groups ----------------------------------------------------- */

static int
s_begin(void *handle)
{
    s_sqlite_t *be = handle;
    /* A transaction still open here means a rollback failed earlier; start
     * clean rather than fail every group from now on. */
    if (!sqlite3_get_autocommit(be->db)) {
        dv_log(DV_WARN, "store.stale_transaction", DV_STR("path", be->path));
        sqlite3_exec(be->db, "ROLLBACK", NULL, NULL, NULL);
    }
    be->group_err = 0;
    int code = s_run(be, be->stmt[S_BEGIN], "begin", NULL);
    be->in_txn = code == 0;
    return code;
}

static int
s_rollback(void *handle)
{
    s_sqlite_t *be = handle;
    int code = 0;
    /* After a full disk or an I/O error SQLite may have rolled back
     * already; a second ROLLBACK would only report "no transaction". */
    if (!sqlite3_get_autocommit(be->db))
        code = s_run(be, be->stmt[S_ROLLBACK], "rollback", NULL);
    be->in_txn = false;
    be->group_err = 0;
    return code;
}

/* A deferred BEGIN takes no lock until the first read, which takes the
 * WAL's read mark once for all the reads up to COMMIT (in autocommit each
 * statement takes and drops it: two fcntl locks and the WAL index header
 * every time). */
static void
s_read_snapshot(void *handle, bool on)
{
    s_sqlite_t *be = handle;
    if (on && sqlite3_get_autocommit(be->db))
        sqlite3_exec(be->db, "BEGIN", NULL, NULL, NULL);
    else if (!on && !sqlite3_get_autocommit(be->db) && !be->in_txn)
        sqlite3_exec(be->db, "COMMIT", NULL, NULL, NULL);
}

static int
s_commit(void *handle)
{
    s_sqlite_t *be = handle;
    if (be->group_err) {
        /* The failed write was logged where it happened. */
        int code = be->group_err;
        s_rollback(be);
        return code;
    }
    int code = s_run(be, be->stmt[S_COMMIT], "commit", NULL);
    if (code != 0) {
        /* On SQLITE_BUSY the transaction is still open; on an I/O error it
         * may be. Either way none of it is acknowledged. */
        s_rollback(be);
        return code;
    }
    be->in_txn = false;
    be->logged_rc = be->logged_sys = 0; /* the next failure is news */
    return 0;
}

/* ---- writes ----------------------------------------------------------- */

static int
s_insert(void *handle, const broker_jobrec_t *r)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    sqlite3_stmt *st = be->stmt[S_INSERT];
    int rc = s_bind_text(st, C_ID + 1, r->id);
    rc |= s_bind_text(st, C_QUEUE + 1, r->queue);
    rc |= s_bind_text(st, C_TYPE + 1, r->type);
    rc |= s_bind_text(st, C_KEY + 1, r->key);
    rc |= s_bind_text(st, C_BATCH + 1, r->batch);
    rc |= s_bind_text(st, C_TRACE + 1, r->trace);
    rc |= s_bind_blob(st, C_PAYLOAD + 1, r->payload, r->payload_len);
    rc |= s_bind_text(st, C_STATE + 1, s_state_name(r->state));
    rc |= sqlite3_bind_int(st, C_PRIORITY + 1, r->priority);
    rc |= sqlite3_bind_int64(st, C_CREATED + 1, r->created_ms);
    rc |= sqlite3_bind_int64(st, C_RUN_AT + 1, r->run_at_ms);
    rc |= sqlite3_bind_int(st, C_ATTEMPT + 1, r->attempt);
    rc |= sqlite3_bind_int(st, C_MAX_ATTEMPTS + 1, r->max_attempts);
    rc |= sqlite3_bind_int64(st, C_TIMEOUT + 1, r->timeout_ms);
    rc |= sqlite3_bind_int64(st, C_BO_BASE + 1, r->backoff.base_ms);
    rc |= sqlite3_bind_double(st, C_BO_FACTOR + 1, r->backoff.factor);
    rc |= sqlite3_bind_int64(st, C_BO_CAP + 1, r->backoff.cap_ms);
    rc |= sqlite3_bind_int(st, C_BO_JITTER + 1, r->backoff.jitter);
    rc |= sqlite3_bind_int64(st, C_RESULT_TTL + 1, r->result_ttl_ms);
    rc |= s_bind_text(st, C_WORKER + 1, r->worker);
    rc |= s_bind_text(st, C_OWNER + 1, r->owner);
    rc |= s_bind_text(st, C_SCHEDULE + 1, r->schedule);
    if (rc != SQLITE_OK)
        return s_bind_failed(be, st, "insert", r->id);
    int code = s_run(be, st, "insert", r->id);
    return code == 0 && r->ndeps ? s_deps_insert(be, r) : code;
}

static int
s_mark_running(void *handle, const char *id, int attempt, const char *worker,
               int64_t started_ms)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    sqlite3_stmt *st = be->stmt[S_RUNNING];
    int rc = s_bind_text(st, 1, id);
    rc |= sqlite3_bind_int(st, 2, attempt);
    rc |= s_bind_text(st, 3, worker);
    rc |= sqlite3_bind_int64(st, 4, started_ms);
    if (rc != SQLITE_OK)
        return s_bind_failed(be, st, "mark_running", id);
    int code = s_run(be, st, "mark_running", id);
    if (code == 0)
        s_check_found(be, "mark_running", id);
    return code;
}

static int
s_mark_waiting(void *handle, const char *id, dv_state_t state,
               int64_t run_at_ms, int attempt, const dv_failure_t *last_failure)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    sqlite3_stmt *st = be->stmt[S_WAITING];
    int rc = s_bind_text(st, 1, id);
    rc |= s_bind_text(st, 2, s_state_name(state));
    rc |= sqlite3_bind_int64(st, 3, run_at_ms);
    rc |= sqlite3_bind_int(st, 4, attempt);
    rc |= s_bind_failure(st, last_failure != NULL, last_failure);
    if (rc != SQLITE_OK)
        return s_bind_failed(be, st, "mark_waiting", id);
    int code = s_run(be, st, "mark_waiting", id);
    if (code == 0)
        s_check_found(be, "mark_waiting", id);
    return code;
}

static int
s_mark_finished(void *handle, const char *id, dv_state_t state, int attempt,
                const char *worker, int64_t started_ms, const void *result,
                size_t result_len, const dv_failure_t *failure,
                int64_t finished_ms)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    sqlite3_stmt *st = be->stmt[S_FINISHED];
    /* A success clears the failure columns (they describe how the job
     * ended, and it ended well); a dead or cancelled job without a failure
     * of its own keeps the last one, like mark_waiting. The attempts table
     * keeps every failure regardless. */
    bool set = failure != NULL || state == DV_STATE_SUCCEEDED;
    int rc = s_bind_text(st, 1, id);
    rc |= s_bind_text(st, 2, s_state_name(state));
    rc |= sqlite3_bind_int(st, 3, attempt);
    rc |= s_bind_blob(st, 4, result, result_len);
    rc |= s_bind_failure(st, set, failure);
    rc |= sqlite3_bind_int64(st, 12, finished_ms);
    rc |= s_bind_text(st, 13, worker);
    rc |= s_bind_opt(st, 14, started_ms, 0);
    if (rc != SQLITE_OK)
        return s_bind_failed(be, st, "mark_finished", id);
    int code = s_run(be, st, "mark_finished", id);
    if (code == 0)
        s_check_found(be, "mark_finished", id);
    return code;
}

static int
s_add_attempt(void *handle, const broker_attempt_t *a)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    sqlite3_stmt *st = be->stmt[S_ATTEMPT];
    const dv_failure_t *f = a->failure;
    int rc = s_bind_text(st, 1, a->job_id);
    rc |= sqlite3_bind_int(st, 2, a->attempt);
    rc |= s_bind_text(st, 3, a->worker);
    rc |= sqlite3_bind_int64(st, 4, a->started_ms);
    rc |= sqlite3_bind_int64(st, 5, a->finished_ms);
    const char *outcome = s_state_name(a->outcome);
    rc |= s_bind_text(st, 6, outcome ? outcome : "unknown");
    if (f) {
        rc |= s_bind_text(st, 7, s_category_name(f->category));
        rc |= s_bind_str(st, 8, f->message);
        rc |= sqlite3_bind_int(st, 9, f->retryable);
        rc |= s_bind_opt(st, 10, f->retry_after_ms, 0);
        rc |= s_bind_opt(st, 11, f->exit_code, -1);
        rc |= s_bind_opt(st, 12, f->signal, 0);
        rc |= s_bind_opt(st, 13, f->http_status, 0);
        rc |= s_bind_str(st, 14, f->key_id);
        rc |= s_bind_str(st, 15, f->details);
        rc |= s_bind_str(st, 16, f->stderr_tail);
    }
    if (rc != SQLITE_OK)
        return s_bind_failed(be, st, "add_attempt", a->job_id);
    return s_run(be, st, "add_attempt", a->job_id);
}

static int
s_probe(void *handle)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    return s_run(be, be->stmt[S_PROBE], "probe", NULL);
}

/* ---- reads ------------------------------------------------------------ */

static const char *
s_col_text(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

/* Fills r from a row of S_JOBREC_COLUMNS; strings valid until the next step. */
static void
s_row_rec(sqlite3_stmt *st, broker_jobrec_t *rec)
{
    broker_jobrec_t r = { 0 };
    r.id = s_col_text(st, C_ID);
    r.queue = s_col_text(st, C_QUEUE);
    r.type = s_col_text(st, C_TYPE);
    r.key = s_col_text(st, C_KEY);
    r.batch = s_col_text(st, C_BATCH);
    r.trace = s_col_text(st, C_TRACE);
    r.payload = sqlite3_column_blob(st, C_PAYLOAD);
    r.payload_len = (size_t)sqlite3_column_bytes(st, C_PAYLOAD);
    r.state = s_state_parse(sqlite3_column_text(st, C_STATE));
    r.priority = sqlite3_column_int(st, C_PRIORITY);
    r.created_ms = sqlite3_column_int64(st, C_CREATED);
    r.run_at_ms = sqlite3_column_int64(st, C_RUN_AT);
    r.attempt = sqlite3_column_int(st, C_ATTEMPT);
    r.max_attempts = sqlite3_column_int(st, C_MAX_ATTEMPTS);
    r.timeout_ms = sqlite3_column_int64(st, C_TIMEOUT);
    /* The backoff columns are nullable so a person may clear them by
     * hand; missing means the defaults. */
    r.backoff = DV_BACKOFF_DEFAULT;
    if (sqlite3_column_type(st, C_BO_BASE) != SQLITE_NULL)
        r.backoff.base_ms = sqlite3_column_int64(st, C_BO_BASE);
    if (sqlite3_column_type(st, C_BO_FACTOR) != SQLITE_NULL)
        r.backoff.factor = sqlite3_column_double(st, C_BO_FACTOR);
    if (sqlite3_column_type(st, C_BO_CAP) != SQLITE_NULL)
        r.backoff.cap_ms = sqlite3_column_int64(st, C_BO_CAP);
    if (sqlite3_column_type(st, C_BO_JITTER) != SQLITE_NULL)
        r.backoff.jitter = sqlite3_column_int(st, C_BO_JITTER) != 0;
    r.result_ttl_ms = sqlite3_column_int64(st, C_RESULT_TTL);
    r.worker = s_col_text(st, C_WORKER);
    r.owner = s_col_text(st, C_OWNER);
    r.schedule = s_col_text(st, C_SCHEDULE);
    *rec = r;
}

static int
s_replay(void *handle, int (*cb)(void *arg, const broker_jobrec_t *rec),
         void *arg)
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = be->stmt[S_REPLAY];
    int rc, code = 0;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        broker_jobrec_t r;
        s_row_rec(st, &r);
        if (!r.id || !r.queue || !r.type) {
            /* Only a hand edit can do this (the columns are NOT NULL). */
            dv_log(DV_ERROR, "store.bad_row", DV_STR("job", r.id),
                   DV_STR("path", be->path));
            code = DV_EIO;
            break;
        }
        code = cb(arg, &r);
        if (code != 0)
            break;
    }
    if (code == 0 && rc != SQLITE_DONE)
        code = s_fail(be, "replay", NULL, rc);
    s_done(st);
    return code;
}

static int
s_load(void *handle, const char *id,
       int (*cb)(void *arg, const broker_jobrec_t *rec), void *arg)
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = be->stmt[S_LOAD];
    if (s_bind_text(st, 1, id) != SQLITE_OK)
        return s_bind_failed(be, st, "load", id);
    int rc = s_step(be, st), found = 0;
    if (rc == SQLITE_ROW) {
        broker_jobrec_t r;
        s_row_rec(st, &r);
        if (r.id && r.queue && r.type) {
            int code = cb(arg, &r);
            found = code != 0 ? code : 1;
        } else {
            found = DV_EIO;
        }
    } else if (rc != SQLITE_DONE) {
        found = s_fail(be, "load", id, rc);
    }
    s_done(st);
    return found;
}

static int
s_list(void *handle, const char *queue, dv_state_t state, int limit,
       int (*cb)(void *arg, const char *id), void *arg)
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = be->stmt[S_LIST];
    if (s_bind_text(st, 1, queue) != SQLITE_OK ||
        s_bind_text(st, 2, s_state_name(state)) != SQLITE_OK ||
        sqlite3_bind_int(st, 3, limit) != SQLITE_OK)
        return s_bind_failed(be, st, "list", NULL);
    int rc, n = 0, code = 0;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        const char *id = s_col_text(st, 0);
        if (!id)
            continue;
        code = cb(arg, id);
        if (code != 0)
            break;
        n++;
    }
    if (code == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = s_fail(be, "list", NULL, rc);
    s_done(st);
    return code != 0 ? code : n;
}

static int
s_finished(void *handle, int64_t since_ms, int64_t until_ms,
           const char *after_id, int limit,
           int (*cb)(void *arg, const broker_finished_t *f), void *arg)
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = be->stmt[S_LIST_FINISHED];
    if (sqlite3_bind_int64(st, 1, since_ms) != SQLITE_OK ||
        sqlite3_bind_int64(st, 2, until_ms) != SQLITE_OK ||
        s_bind_text(st, 3, after_id) != SQLITE_OK ||
        sqlite3_bind_int(st, 4, limit) != SQLITE_OK)
        return s_bind_failed(be, st, "finished", NULL);
    int rc, n = 0, code = 0;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        broker_finished_t f = { 0 };
        f.id = s_col_text(st, 0);
        f.queue = s_col_text(st, 1);
        f.type = s_col_text(st, 2);
        f.batch = s_col_text(st, 3);
        f.state = s_state_parse(sqlite3_column_text(st, 4));
        f.attempt = sqlite3_column_int(st, 5);
        f.worker = s_col_text(st, 6);
        f.started_ms = sqlite3_column_int64(st, 7);
        f.finished_ms = sqlite3_column_int64(st, 8);
        f.category = s_col_text(st, 9);
        f.error = s_col_text(st, 10);
        if (!f.id || !f.queue || !f.type)
            continue;
        code = cb(arg, &f);
        if (code != 0)
            break;
        n++;
    }
    if (code == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = s_fail(be, "finished", NULL, rc);
    s_done(st);
    return code != 0 ? code : n;
}

static int
s_set_queue(void *handle, const broker_queue_settings_t *q)
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = be->stmt[S_SET_QUEUE];
    if (s_bind_text(st, 1, q->name) != SQLITE_OK ||
        sqlite3_bind_int(st, 2, q->paused) != SQLITE_OK ||
        sqlite3_bind_double(st, 3, q->rate) != SQLITE_OK ||
        sqlite3_bind_int(st, 4, q->max_running) != SQLITE_OK)
        return s_bind_failed(be, st, "set_queue", NULL);
    return s_run(be, st, "set_queue", NULL);
}

static int
s_load_queues(void *handle,
              int (*cb)(void *arg, const broker_queue_settings_t *q), void *arg)
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = be->stmt[S_LOAD_QUEUES];
    int rc, code = 0;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        broker_queue_settings_t q = {
            .name = s_col_text(st, 0),
            .paused = sqlite3_column_int(st, 1) != 0,
            .rate = sqlite3_column_double(st, 2),
            .max_running = sqlite3_column_int(st, 3),
        };
        if (!q.name)
            continue;
        code = cb(arg, &q);
        if (code != 0)
            break;
    }
    if (code == 0 && rc != SQLITE_DONE)
        code = s_fail(be, "load_queues", NULL, rc);
    s_done(st);
    return code;
}

static int
s_set_key(void *handle, const broker_key_state_t *k)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    sqlite3_stmt *st = be->stmt[S_SET_KEY];
    int rc = s_bind_text(st, 1, k->hash);
    rc |= s_bind_text(st, 2, k->id);
    rc |= sqlite3_bind_int64(st, 3, k->cool_until_ms);
    rc |= sqlite3_bind_int(st, 4, k->disabled_status);
    rc |= sqlite3_bind_int64(st, 5, k->disabled_ms);
    rc |= sqlite3_bind_int(st, 6, k->learned_limit);
    rc |= sqlite3_bind_int64(st, 7, k->learned_ms);
    rc |= sqlite3_bind_int(st, 8, k->proven);
    rc |= sqlite3_bind_int64(st, 9, k->updated_ms);
    if (rc != SQLITE_OK)
        return s_bind_failed(be, st, "set_key", NULL);
    return s_run(be, st, "set_key", NULL);
}

/* NULL columns (a row written by hand) read as 0: "none". */
static int
s_load_keys(void *handle, int (*cb)(void *arg, const broker_key_state_t *k),
            void *arg)
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = be->stmt[S_LOAD_KEYS];
    int rc, code = 0;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        broker_key_state_t k = {
            .hash = s_col_text(st, 0),
            .id = s_col_text(st, 1),
            .cool_until_ms = sqlite3_column_int64(st, 2),
            .disabled_status = sqlite3_column_int(st, 3),
            .disabled_ms = sqlite3_column_int64(st, 4),
            .learned_limit = sqlite3_column_int(st, 5),
            .learned_ms = sqlite3_column_int64(st, 6),
            .proven = sqlite3_column_int(st, 7) != 0,
            .updated_ms = sqlite3_column_int64(st, 8),
        };
        if (!k.hash || !k.id)
            continue;
        code = cb(arg, &k);
        if (code != 0)
            break;
    }
    if (code == 0 && rc != SQLITE_DONE)
        code = s_fail(be, "load_keys", NULL, rc);
    s_done(st);
    return code;
}

static int
s_find_key(void *handle, const char *owner, const char *key, char id_out[37])
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = be->stmt[S_FIND_KEY];
    int rc = s_bind_text(st, 1, key);
    if (rc == SQLITE_OK)
        rc = s_bind_text(st, 2, owner ? owner : "");
    if (rc != SQLITE_OK)
        return s_bind_failed(be, st, "find_key", NULL);
    rc = s_step(be, st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        const char *id = s_col_text(st, 0);
        snprintf(id_out, 37, "%s", id ? id : "");
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = s_fail(be, "find_key", NULL, rc);
    }
    s_done(st);
    return found;
}

static int
s_get(void *handle, const char *id,
      void (*cb)(void *arg, const broker_jobview_t *view), void *arg)
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = be->stmt[S_GET];
    int rc = s_bind_text(st, 1, id);
    if (rc != SQLITE_OK)
        return s_bind_failed(be, st, "get", id);
    rc = s_step(be, st);
    int found = 0;
    if (rc == SQLITE_ROW) {
        broker_jobview_t v = { 0 };
        v.id = s_col_text(st, 0);
        v.queue = s_col_text(st, 1);
        v.type = s_col_text(st, 2);
        v.state = s_state_parse(sqlite3_column_text(st, 3));
        v.attempt = sqlite3_column_int(st, 4);
        v.result = sqlite3_column_blob(st, 5);
        v.result_len = (size_t)sqlite3_column_bytes(st, 5);
        v.category = s_col_text(st, 6);
        v.error = s_col_text(st, 7);
        v.finished_ms = sqlite3_column_int64(st, 8);
        v.owner = s_col_text(st, 9);
        cb(arg, &v);
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = s_fail(be, "get", id, rc);
    }
    s_done(st);
    return found;
}

static int
s_attempts(void *handle, const char *id, int limit,
           int (*cb)(void *arg, const broker_attempt_row_t *a), void *arg)
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = be->stmt[S_ATTEMPTS];
    if (s_bind_text(st, 1, id) != SQLITE_OK ||
        sqlite3_bind_int(st, 2, limit) != SQLITE_OK)
        return s_bind_failed(be, st, "attempts", id);
    int rc, n = 0, code = 0;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        broker_attempt_row_t a = { 0 };
        a.attempt = sqlite3_column_int(st, 0);
        a.worker = s_col_text(st, 1);
        a.started_ms = sqlite3_column_int64(st, 2);
        a.finished_ms = sqlite3_column_int64(st, 3);
        a.outcome = s_col_text(st, 4);
        a.category = s_col_text(st, 5);
        a.message = s_col_text(st, 6);
        a.retryable = sqlite3_column_int(st, 7) != 0;
        a.retry_after_ms = sqlite3_column_int64(st, 8);
        a.exit_code = sqlite3_column_type(st, 9) == SQLITE_NULL
                          ? -1
                          : sqlite3_column_int(st, 9);
        a.signal = sqlite3_column_int(st, 10);
        a.http_status = sqlite3_column_int(st, 11);
        a.key_id = s_col_text(st, 12);
        a.details = s_col_text(st, 13);
        a.stderr_tail = s_col_text(st, 14);
        code = cb(arg, &a);
        if (code != 0)
            break;
        n++;
    }
    if (code == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = s_fail(be, "attempts", id, rc);
    s_done(st);
    return code != 0 ? code : n;
}

static int
s_expire(void *handle, int64_t now_ms, int limit)
{
    s_sqlite_t *be = handle;
    if (limit <= 0)
        return 0;
    int code = s_begin(be);
    if (code != 0)
        return code;
    /* Attempts and dependencies first: the jobs rows are what select the
     * chunk. */
    sqlite3_stmt *st = be->stmt[S_EXPIRE_ATTEMPTS];
    int rc = sqlite3_bind_int64(st, 1, now_ms) | sqlite3_bind_int(st, 2, limit);
    code = rc != SQLITE_OK ? s_bind_failed(be, st, "expire", NULL)
                           : s_run(be, st, "expire", NULL);
    if (code == 0)
        code = s_deps_expire(be, now_ms, limit);
    int deleted = 0;
    if (code == 0) {
        st = be->stmt[S_EXPIRE_JOBS];
        rc = sqlite3_bind_int64(st, 1, now_ms) | sqlite3_bind_int(st, 2, limit);
        code = rc != SQLITE_OK ? s_bind_failed(be, st, "expire", NULL)
                               : s_run(be, st, "expire", NULL);
        deleted = sqlite3_changes(be->db);
    }
    if (code != 0) {
        s_rollback(be);
        return code;
    }
    code = s_commit(be);
    return code != 0 ? code : deleted;
}

/* The broker's generation: a counter in table meta, one more at each
 * start, in a transaction of its own. Made here rather than in s_schema so
 * that a store made before the table existed gets it too. */
static int
s_next_generation(void *handle, uint64_t *out)
{
    s_sqlite_t *be = handle;
    static const char *const sql[] = {
        "CREATE TABLE IF NOT EXISTS meta (\n"
        "    name TEXT PRIMARY KEY,\n"
        "    value INTEGER NOT NULL\n"
        ")",
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('generation', 0)",
        "UPDATE meta SET value = value + 1 WHERE name = 'generation'",
    };
    int code = s_begin(be);
    if (code != 0)
        return code;
    for (size_t i = 0; i < sizeof sql / sizeof sql[0] && code == 0; i++) {
        int rc = sqlite3_exec(be->db, sql[i], NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            code = s_fail(be, "generation", NULL, rc);
    }
    char buf[32] = "";
    if (code == 0) {
        int rc = s_exec_row(be->db,
                            "SELECT value FROM meta WHERE name = 'generation'",
                            buf, sizeof buf);
        if (rc != SQLITE_OK)
            code = s_fail(be, "generation", NULL, rc);
    }
    if (code != 0) {
        s_rollback(be);
        return code;
    }
    code = s_commit(be);
    *out = strtoull(buf, NULL, 10);
    return code;
}

/* ---- batches (broker_batch.c) -------------------------------------------
 * Rare calls (a batch's open, close, end; a page of its jobs), so their
 * statements are prepared at each call rather than kept. */

#define S_BATCH_COLUMNS                                                        \
    "owner, name, state, on_complete, on_success, on_failure, queue, "         \
    "payload, complete_id, success_id, failure_id, created_at, closed_at, "    \
    "done_at, since_id"

/* Prepares sql; on failure logs and poisons like a failed step. */
static sqlite3_stmt *
s_batch_prepare(s_sqlite_t *be, const char *sql, const char *op, int *code)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(be->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        *code = s_fail(be, op, NULL, rc);
        sqlite3_finalize(st);
        return NULL;
    }
    *code = 0;
    return st;
}

static int
s_set_batch(void *handle, const broker_batchrec_t *b)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    int code;
    sqlite3_stmt *st = s_batch_prepare(
        be,
        "INSERT OR REPLACE INTO batches (" S_BATCH_COLUMNS ") VALUES (?1, ?2, "
        "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        "set_batch", &code);
    if (!st)
        return code;
    int rc = s_bind_text(st, 1, b->owner);
    rc |= s_bind_text(st, 2, b->name);
    rc |= s_bind_text(st, 3, b->state);
    rc |= s_bind_text(st, 4, b->on_complete);
    rc |= s_bind_text(st, 5, b->on_success);
    rc |= s_bind_text(st, 6, b->on_failure);
    rc |= s_bind_text(st, 7, b->queue ? b->queue : "default");
    rc |= s_bind_blob(st, 8, b->payload, b->payload_len);
    rc |= s_bind_text(st, 9, b->complete_id);
    rc |= s_bind_text(st, 10, b->success_id);
    rc |= s_bind_text(st, 11, b->failure_id);
    rc |= sqlite3_bind_int64(st, 12, b->created_ms);
    rc |= s_bind_opt(st, 13, b->closed_ms, 0);
    rc |= s_bind_opt(st, 14, b->done_ms, 0);
    rc |= s_bind_text(st, 15, b->since_id);
    code = rc != SQLITE_OK ? s_bind_failed(be, st, "set_batch", NULL)
                           : s_run(be, st, "set_batch", NULL);
    sqlite3_finalize(st);
    return code;
}

static int
s_del_batch(void *handle, const char *owner, const char *name)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    int code;
    sqlite3_stmt *st = s_batch_prepare(
        be, "DELETE FROM batches WHERE owner = ?1 AND name = ?2", "del_batch",
        &code);
    if (!st)
        return code;
    int rc = s_bind_text(st, 1, owner) | s_bind_text(st, 2, name);
    code = rc != SQLITE_OK ? s_bind_failed(be, st, "del_batch", NULL)
                           : s_run(be, st, "del_batch", NULL);
    sqlite3_finalize(st);
    return code;
}

static int
s_load_batches(void *handle, int (*cb)(void *arg, const broker_batchrec_t *b),
               void *arg)
{
    s_sqlite_t *be = handle;
    int code;
    sqlite3_stmt *st = s_batch_prepare(
        be, "SELECT " S_BATCH_COLUMNS " FROM batches ORDER BY created_at",
        "load_batches", &code);
    if (!st)
        return code;
    int rc;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        broker_batchrec_t b = {
            .owner = s_col_text(st, 0),
            .name = s_col_text(st, 1),
            .state = s_col_text(st, 2),
            .on_complete = s_col_text(st, 3),
            .on_success = s_col_text(st, 4),
            .on_failure = s_col_text(st, 5),
            .queue = s_col_text(st, 6),
            .payload = sqlite3_column_blob(st, 7),
            .payload_len = (size_t)sqlite3_column_bytes(st, 7),
            .complete_id = s_col_text(st, 8),
            .success_id = s_col_text(st, 9),
            .failure_id = s_col_text(st, 10),
            .created_ms = sqlite3_column_int64(st, 11),
            .closed_ms = sqlite3_column_int64(st, 12),
            .done_ms = sqlite3_column_int64(st, 13),
            .since_id = s_col_text(st, 14),
        };
        if (!b.owner || !b.name || !b.state)
            continue;
        code = cb(arg, &b);
        if (code != 0)
            break;
    }
    if (code == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = s_fail(be, "load_batches", NULL, rc);
    sqlite3_finalize(st);
    return code;
}

/* owner NULL: any owner (?1 NULL). */
#define S_BATCH_OWNER "(?1 IS NULL OR coalesce(owner, '') = ?1)"

static int
s_batch_counts(void *handle, const char *owner, const char *batch,
               const char *since_id, broker_batch_counts_t *out)
{
    s_sqlite_t *be = handle;
    int code;
    sqlite3_stmt *st = s_batch_prepare(
        be,
        "SELECT state, count(*) FROM jobs WHERE batch = ?2 "
        "AND " S_BATCH_OWNER " AND id > coalesce(?3, '') GROUP BY state",
        "batch_counts", &code);
    if (!st)
        return code;
    int rc = s_bind_text(st, 1, owner) | s_bind_text(st, 2, batch) |
             s_bind_text(st, 3, since_id);
    if (rc != SQLITE_OK) {
        code = s_bind_failed(be, st, "batch_counts", NULL);
        sqlite3_finalize(st);
        return code;
    }
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        int64_t n = sqlite3_column_int64(st, 1);
        switch (s_state_parse(sqlite3_column_text(st, 0))) {
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
    if (rc != SQLITE_DONE)
        code = s_fail(be, "batch_counts", NULL, rc);
    sqlite3_finalize(st);
    return code;
}

static int
s_batch_jobs(void *handle, const char *owner, const char *batch,
             const char *after_id, int limit,
             int (*cb)(void *arg, const broker_jobview_t *v), void *arg)
{
    s_sqlite_t *be = handle;
    int code;
    sqlite3_stmt *st = s_batch_prepare(
        be,
        "SELECT id, type, state, attempt, result, category, error, "
        "finished_at, owner FROM jobs "
        "WHERE batch = ?2 AND " S_BATCH_OWNER " AND id > coalesce(?3, '') "
        "ORDER BY batch, id LIMIT ?4",
        "batch_jobs", &code);
    if (!st)
        return code;
    int rc = s_bind_text(st, 1, owner) | s_bind_text(st, 2, batch) |
             s_bind_text(st, 3, after_id) | sqlite3_bind_int(st, 4, limit);
    if (rc != SQLITE_OK) {
        code = s_bind_failed(be, st, "batch_jobs", NULL);
        sqlite3_finalize(st);
        return code;
    }
    int n = 0;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        broker_jobview_t v = { 0 };
        v.id = s_col_text(st, 0);
        v.type = s_col_text(st, 1);
        v.state = s_state_parse(sqlite3_column_text(st, 2));
        v.attempt = sqlite3_column_int(st, 3);
        v.result = sqlite3_column_blob(st, 4);
        v.result_len = (size_t)sqlite3_column_bytes(st, 4);
        v.category = s_col_text(st, 5);
        v.error = s_col_text(st, 6);
        v.finished_ms = sqlite3_column_int64(st, 7);
        v.owner = s_col_text(st, 8);
        if (!v.id || !v.type)
            continue;
        code = cb(arg, &v);
        if (code != 0)
            break;
        n++;
    }
    if (code == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = s_fail(be, "batch_jobs", NULL, rc);
    sqlite3_finalize(st);
    return code != 0 ? code : n;
}

/* ---- schedules (broker_schedule.c) ---------------------------------------
 * Their statements are prepared when used (a schedule's row is written once
 * per firing, not once per job), so they stay out of s_sql. */

#define S_SCHEDULE_COLUMNS                                                     \
    "owner, name, cron, every_ms, tz, anchor_ms, queue, type, payload, "       \
    "priority, max_attempts, timeout_ms, no_overlap, catch_up, paused, "       \
    "created_at, next_at, last_fire_at, last_job, firings, skipped, "          \
    "last_lag_ms"

static int
s_prepare_once(s_sqlite_t *be, const char *sql, sqlite3_stmt **st,
               const char *op)
{
    int rc = sqlite3_prepare_v2(be->db, sql, -1, st, NULL);
    return rc == SQLITE_OK ? 0 : s_fail(be, op, NULL, rc);
}

static int
s_set_schedule(void *handle, const broker_schedule_rec_t *r)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    sqlite3_stmt *st = NULL;
    int code = s_prepare_once(
        be,
        "INSERT OR REPLACE INTO schedules (" S_SCHEDULE_COLUMNS ") VALUES "
        "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
        "?16, ?17, ?18, ?19, ?20, ?21, ?22)",
        &st, "set_schedule");
    if (code != 0)
        return code;
    int rc = s_bind_text(st, 1, r->owner ? r->owner : "");
    rc |= s_bind_text(st, 2, r->name);
    rc |= s_bind_text(st, 3, r->cron);
    rc |= sqlite3_bind_int64(st, 4, r->every_ms);
    rc |= s_bind_text(st, 5, r->tz);
    rc |= sqlite3_bind_int64(st, 6, r->anchor_ms);
    rc |= s_bind_text(st, 7, r->queue);
    rc |= s_bind_text(st, 8, r->type);
    rc |= s_bind_blob(st, 9, r->payload, r->payload_len);
    rc |= sqlite3_bind_int(st, 10, r->priority);
    rc |= sqlite3_bind_int(st, 11, r->max_attempts);
    rc |= sqlite3_bind_int64(st, 12, r->timeout_ms);
    rc |= sqlite3_bind_int(st, 13, r->no_overlap);
    rc |= s_bind_text(st, 14, r->catch_up_skip ? "skip" : "once");
    rc |= sqlite3_bind_int(st, 15, r->paused);
    rc |= sqlite3_bind_int64(st, 16, r->created_ms);
    rc |= s_bind_opt(st, 17, r->next_ms, 0);
    rc |= s_bind_opt(st, 18, r->last_fire_ms, 0);
    rc |= s_bind_text(st, 19, r->last_job);
    rc |= sqlite3_bind_int64(st, 20, r->firings);
    rc |= sqlite3_bind_int64(st, 21, r->skipped);
    rc |= sqlite3_bind_int64(st, 22, r->last_lag_ms);
    code = rc != SQLITE_OK ? s_bind_failed(be, st, "set_schedule", NULL)
                           : s_run(be, st, "set_schedule", NULL);
    sqlite3_finalize(st);
    return code;
}

static int
s_delete_schedule(void *handle, const char *owner, const char *name)
{
    s_sqlite_t *be = handle;
    if (s_poisoned(be))
        return be->group_err;
    sqlite3_stmt *st = NULL;
    int code = s_prepare_once(
        be, "DELETE FROM schedules WHERE owner = ?1 AND name = ?2", &st,
        "delete_schedule");
    if (code != 0)
        return code;
    int rc = s_bind_text(st, 1, owner ? owner : "");
    rc |= s_bind_text(st, 2, name);
    code = rc != SQLITE_OK ? s_bind_failed(be, st, "delete_schedule", NULL)
                           : s_run(be, st, "delete_schedule", NULL);
    sqlite3_finalize(st);
    return code;
}

static int
s_load_schedules(void *handle,
                 int (*cb)(void *arg, const broker_schedule_rec_t *s),
                 void *arg)
{
    s_sqlite_t *be = handle;
    sqlite3_stmt *st = NULL;
    int code = s_prepare_once(
        be, "SELECT " S_SCHEDULE_COLUMNS " FROM schedules ORDER BY owner, name",
        &st, "load_schedules");
    if (code != 0)
        return code;
    int rc;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        const char *owner = s_col_text(st, 0);
        const char *catch_up = s_col_text(st, 13);
        broker_schedule_rec_t r = {
            .owner = owner && owner[0] ? owner : NULL,
            .name = s_col_text(st, 1),
            .cron = s_col_text(st, 2),
            .every_ms = sqlite3_column_int64(st, 3),
            .tz = s_col_text(st, 4),
            .anchor_ms = sqlite3_column_int64(st, 5),
            .queue = s_col_text(st, 6),
            .type = s_col_text(st, 7),
            .payload = sqlite3_column_blob(st, 8),
            .payload_len = (size_t)sqlite3_column_bytes(st, 8),
            .priority = sqlite3_column_int(st, 9),
            .max_attempts = sqlite3_column_int(st, 10),
            .timeout_ms = sqlite3_column_int64(st, 11),
            .no_overlap = sqlite3_column_int(st, 12) != 0,
            .catch_up_skip = catch_up && strcmp(catch_up, "skip") == 0,
            .paused = sqlite3_column_int(st, 14) != 0,
            .created_ms = sqlite3_column_int64(st, 15),
            .next_ms = sqlite3_column_int64(st, 16),
            .last_fire_ms = sqlite3_column_int64(st, 17),
            .last_job = s_col_text(st, 18),
            .firings = sqlite3_column_int64(st, 19),
            .skipped = sqlite3_column_int64(st, 20),
            .last_lag_ms = sqlite3_column_int64(st, 21),
        };
        if (!r.name || !r.queue || !r.type)
            continue;
        code = cb(arg, &r);
        if (code != 0)
            break;
    }
    if (code == 0 && rc != SQLITE_DONE)
        code = s_fail(be, "load_schedules", NULL, rc);
    sqlite3_finalize(st);
    return code;
}

/* ---- job dependencies (broker_deps.c) ------------------------------------
 * Table deps: one row per job and a job it waits for ("any": after_any),
 * inserted with the job, read at start-up (the waiting jobs' edges) and by
 * ctrl "job" (waits_for, waited_by through the after_id index), deleted
 * with the job when it expires. Made at every start, not by a schema
 * version. */

#define S_DEPS_SCHEMA                                                          \
    "CREATE TABLE IF NOT EXISTS deps (\n"                                      \
    "    job_id TEXT NOT NULL,\n"                                              \
    "    after_id TEXT NOT NULL,\n"                                            \
    "    \"any\" BOOLEAN NOT NULL,\n"                                          \
    "    PRIMARY KEY (job_id, after_id)\n"                                     \
    ");\n"                                                                     \
    "CREATE INDEX IF NOT EXISTS deps_after ON deps(after_id);\n"

static int
s_deps_setup(s_sqlite_t *be)
{
    return sqlite3_exec(be->db, S_DEPS_SCHEMA, NULL, NULL, NULL);
}

static int
s_deps_insert(s_sqlite_t *be, const broker_jobrec_t *r)
{
    if (!be->dep_insert) {
        int rc = sqlite3_prepare_v3(
            be->db,
            "INSERT OR IGNORE INTO deps (job_id, after_id, \"any\") "
            "VALUES (?1, ?2, ?3)",
            -1, SQLITE_PREPARE_PERSISTENT, &be->dep_insert, NULL);
        if (rc != SQLITE_OK)
            return s_fail(be, "insert_deps", r->id, rc);
    }
    sqlite3_stmt *st = be->dep_insert;
    for (uint32_t i = 0; i < r->ndeps; i++) {
        int rc = s_bind_text(st, 1, r->id);
        rc |= s_bind_text(st, 2, r->deps[i].id);
        rc |= sqlite3_bind_int(st, 3, r->deps[i].any);
        if (rc != SQLITE_OK)
            return s_bind_failed(be, st, "insert_deps", r->id);
        int code = s_run(be, st, "insert_deps", r->id);
        if (code != 0)
            return code;
    }
    return 0;
}

static int
s_deps_expire(s_sqlite_t *be, int64_t now_ms, int limit)
{
    int code;
    sqlite3_stmt *st = s_batch_prepare(
        be, "DELETE FROM deps WHERE job_id IN (" S_EXPIRED("id") ")",
        "expire_deps", &code);
    if (!st)
        return code;
    int rc = sqlite3_bind_int64(st, 1, now_ms) | sqlite3_bind_int(st, 2, limit);
    code = rc != SQLITE_OK ? s_bind_failed(be, st, "expire_deps", NULL)
                           : s_run(be, st, "expire_deps", NULL);
    sqlite3_finalize(st);
    return code;
}

static int
s_deps_replay(void *handle,
              int (*cb)(void *arg, const char *job_id, const char *after_id,
                        bool any, dv_state_t after_state),
              void *arg)
{
    s_sqlite_t *be = handle;
    int code;
    sqlite3_stmt *st = s_batch_prepare(
        be,
        "SELECT d.job_id, d.after_id, d.\"any\", a.state FROM deps d "
        "JOIN jobs j ON j.id = d.job_id LEFT JOIN jobs a ON a.id = d.after_id "
        "WHERE j.finished_at IS NULL AND j.state = 'waiting' "
        "ORDER BY d.job_id",
        "deps_replay", &code);
    if (!st)
        return code;
    int rc;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        code = cb(arg, s_col_text(st, 0), s_col_text(st, 1),
                  sqlite3_column_int(st, 2) != 0,
                  s_state_parse(sqlite3_column_text(st, 3)));
        if (code != 0)
            break;
    }
    if (code == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = s_fail(be, "deps_replay", NULL, rc);
    sqlite3_finalize(st);
    return code;
}

static int
s_deps_of(void *handle, const char *id, bool waited_by, int limit,
          int (*cb)(void *arg, const char *id, bool any, dv_state_t state),
          void *arg)
{
    s_sqlite_t *be = handle;
    int code;
    sqlite3_stmt *st = s_batch_prepare(
        be,
        waited_by ? "SELECT d.job_id, d.\"any\", j.state FROM deps d "
                    "LEFT JOIN jobs j ON j.id = d.job_id "
                    "WHERE d.after_id = ?1 ORDER BY d.job_id LIMIT ?2"
                  : "SELECT d.after_id, d.\"any\", a.state FROM deps d "
                    "LEFT JOIN jobs a ON a.id = d.after_id "
                    "WHERE d.job_id = ?1 ORDER BY d.after_id LIMIT ?2",
        "deps_of", &code);
    if (!st)
        return code;
    int rc = s_bind_text(st, 1, id) | sqlite3_bind_int(st, 2, limit);
    if (rc != SQLITE_OK) {
        code = s_bind_failed(be, st, "deps_of", id);
        sqlite3_finalize(st);
        return code;
    }
    int n = 0;
    while ((rc = s_step(be, st)) == SQLITE_ROW) {
        code = cb(arg, s_col_text(st, 0), sqlite3_column_int(st, 1) != 0,
                  s_state_parse(sqlite3_column_text(st, 2)));
        if (code != 0)
            break;
        n++;
    }
    if (code == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = s_fail(be, "deps_of", id, rc);
    sqlite3_finalize(st);
    return code != 0 ? code : n;
}

const broker_store_ops_t broker_store_sqlite_ops = {
    .name = "sqlite",
    .open = s_open,
    .close = s_close,
    .begin = s_begin,
    .commit = s_commit,
    .rollback = s_rollback,
    .read_snapshot = s_read_snapshot,
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
