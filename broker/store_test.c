/* store_test - broker_store against each backend: a real SQLite file in a
 * temp directory, or a real PostgreSQL server.
 *
 * One binary, two runs: `store_test` (or `store_test sqlite`) runs the
 * suite on SQLite; `store_test pg` starts a PostgreSQL server of its own
 * once for the whole run (tests/fixtures/pg_server) and runs the same
 * cases there, each test on a fresh database. Cases about one backend only
 * run in that backend's run: SQLite's files, WAL and a disk full through a
 * file-size limit; PostgreSQL's URLs, schema_version table, lost and
 * refused connections, and a disk full through a tablespace on a tmpfs.
 *
 * Every test gets its own directory (mkdtemp), removed with its files at the
 * end. What the broker relies on is checked through the interface; what an
 * operator relies on (plain SQL, history rows) through a second, independent
 * connection, as the sqlite3 shell or psql would see it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pwd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "broker_store.h"
#include "broker_test_fx.h"
#include "broker_writer.h"
#include "dv_err.h"
#include "dv_id.h"
#include "pg_server.h"

typedef enum { S_SQLITE, S_PG } s_backend_t;

static s_backend_t s_backend = S_SQLITE; /* this run's */
static pg_server_t *s_pg;                /* the PostgreSQL run's server */
static char s_pg_dir[1024];              /* its directory */
static int s_pg_seq;                     /* databases made so far */

typedef struct {
    char dir[1024];  /* the test's own directory */
    char path[1400]; /* the store: a file inside dir, or a PostgreSQL URL */
    char db[32];     /* PostgreSQL: the test's own database */
    char mnt[1100];  /* a tmpfs mounted in dir by the test, or "" */
    char space[48];  /* PostgreSQL: a tablespace on it, or "" */
} s_fx_t;

static int
s_setup(void **state)
{
    s_fx_t *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    broker_fx_mkdir(fx->dir, sizeof fx->dir, "store_test");
    if (s_backend == S_SQLITE) {
        snprintf(fx->path, sizeof fx->path, "%s/drover.db", fx->dir);
    } else {
        char sql[64], err[512];
        snprintf(fx->db, sizeof fx->db, "store_test_%d", ++s_pg_seq);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", fx->db);
        if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0)
            fail_msg("%s: %s", sql, err);
        pg_server_url(s_pg, fx->db, fx->path, sizeof fx->path);
    }
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    s_fx_t *fx = *state;
    int rc = 0;
    if (s_backend == S_PG) {
        char sql[96], err[512];
        snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", fx->db);
        if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0) {
            print_error("%s: %s\n", sql, err);
            rc = -1;
        }
        snprintf(sql, sizeof sql, "DROP TABLESPACE %s", fx->space);
        if (fx->space[0] &&
            pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0) {
            print_error("%s: %s\n", sql, err);
            rc = -1;
        }
    }
    if (fx->mnt[0] && (umount2(fx->mnt, MNT_DETACH) != 0 || rmdir(fx->mnt))) {
        print_error("umount %s: %s\n", fx->mnt, strerror(errno));
        rc = -1;
    }
    if (broker_fx_rmdir(fx->dir) != 0)
        rc = -1;
    free(fx);
    return rc;
}

/* The PostgreSQL run's server, for every test of the run. A missing
 * server fails the run, with what to do about it. */
static int
s_pg_group_setup(void **state)
{
    broker_fx_mkdir(s_pg_dir, sizeof s_pg_dir, "store_test_pg");
    char err[1600] = "";
    s_pg = pg_server_start(s_pg_dir, err, sizeof err);
    if (!s_pg) {
        print_error("store_test pg: %s\n", err);
        broker_fx_rmdir(s_pg_dir);
        s_pg_dir[0] = '\0';
        return -1;
    }
    return 0;
}

static int
s_pg_group_teardown(void **state)
{
    pg_server_stop(&s_pg);
    return s_pg_dir[0] ? broker_fx_rmdir(s_pg_dir) : 0;
}

/* A write inside a group: SQLite reports a failure at once, PostgreSQL
 * queues the write in its pipeline and reports it at commit (the
 * interface allows both). */
static void
s_assert_write(int rc, int want)
{
    if (s_backend == S_PG && rc == 0)
        return;
    assert_int_equal(rc, want);
}

static broker_store_t *
s_open_sync(const s_fx_t *fx, broker_sync_t sync)
{
    broker_store_opts_t opts = { sync };
    char err[256] = "";
    broker_store_t *s = broker_store_open(fx->path, &opts, err, sizeof err);
    if (!s)
        fail_msg("open %s: %s", fx->path, err);
    return s;
}

static broker_store_t *
s_open(const s_fx_t *fx)
{
    /* OFF keeps the suite fast; sync modes have their own test. */
    return s_open_sync(fx, BROKER_SYNC_OFF);
}

static void
s_new_id(char out[37])
{
    dv_id_t id;
    dv_id_new(&id);
    dv_id_format(&id, out);
}

/* A plain queued job with defaults. */
static broker_jobrec_t
s_rec(const char *id)
{
    broker_jobrec_t r = {
        .id = id,
        .queue = "default",
        .type = "noop",
        .state = DV_STATE_QUEUED,
        .priority = 5,
        .created_ms = 1700000000000,
        .run_at_ms = 1700000000000,
        .max_attempts = 5,
        .backoff = DV_BACKOFF_DEFAULT,
        .result_ttl_ms = 1000,
    };
    return r;
}

static void
s_insert_committed(broker_store_t *s, const broker_jobrec_t *r)
{
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, r), 0);
    assert_int_equal(broker_store_commit(s), 0);
}

static dv_failure_t
s_failure(dv_category_t cat, const char *msg)
{
    dv_failure_t f = {
        .category = cat,
        .message = dv_str(msg),
        .exit_code = -1,
    };
    return f;
}

/* ---- replay into owned copies ------------------------------------------ */

typedef struct {
    broker_jobrec_t rec; /* every pointer below is owned by the copy */
} s_copy_t;

typedef struct {
    s_copy_t *items;
    size_t n, cap;
} s_copies_t;

static char *
s_dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int
s_collect(void *arg, const broker_jobrec_t *r)
{
    s_copies_t *c = arg;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->items = realloc(c->items, c->cap * sizeof *c->items);
        assert_non_null(c->items);
    }
    broker_jobrec_t *d = &c->items[c->n++].rec;
    *d = *r;
    d->id = s_dup(r->id);
    d->queue = s_dup(r->queue);
    d->type = s_dup(r->type);
    d->key = s_dup(r->key);
    d->batch = s_dup(r->batch);
    d->trace = s_dup(r->trace);
    d->worker = s_dup(r->worker);
    d->owner = s_dup(r->owner);
    d->schedule = s_dup(r->schedule);
    if (r->payload_len) {
        void *p = malloc(r->payload_len);
        assert_non_null(p);
        memcpy(p, r->payload, r->payload_len);
        d->payload = p;
    }
    return 0;
}

static void
s_copies_free(s_copies_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        broker_jobrec_t *r = &c->items[i].rec;
        free((void *)r->id);
        free((void *)r->queue);
        free((void *)r->schedule);
        free((void *)r->type);
        free((void *)r->key);
        free((void *)r->batch);
        free((void *)r->trace);
        free((void *)r->worker);
        free((void *)r->owner);
        free((void *)r->payload);
    }
    free(c->items);
    memset(c, 0, sizeof *c);
}

static void
s_replay(broker_store_t *s, s_copies_t *c)
{
    s_copies_free(c);
    assert_int_equal(broker_store_replay(s, s_collect, c), 0);
}

static void
s_assert_str(const char *want, const char *got)
{
    if (!want)
        assert_null(got);
    else
        assert_string_equal(want, got);
}

static void
s_assert_rec(const broker_jobrec_t *want, const broker_jobrec_t *got)
{
    assert_string_equal(want->id, got->id);
    assert_string_equal(want->queue, got->queue);
    assert_string_equal(want->type, got->type);
    s_assert_str(want->key, got->key);
    s_assert_str(want->batch, got->batch);
    s_assert_str(want->trace, got->trace);
    assert_int_equal(want->payload_len, got->payload_len);
    if (want->payload_len)
        assert_memory_equal(want->payload, got->payload, want->payload_len);
    assert_int_equal(want->state, got->state);
    assert_int_equal(want->priority, got->priority);
    assert_int_equal(want->created_ms, got->created_ms);
    assert_int_equal(want->run_at_ms, got->run_at_ms);
    assert_int_equal(want->attempt, got->attempt);
    assert_int_equal(want->max_attempts, got->max_attempts);
    assert_int_equal(want->timeout_ms, got->timeout_ms);
    assert_int_equal(want->backoff.base_ms, got->backoff.base_ms);
    assert_true(want->backoff.factor == got->backoff.factor);
    assert_int_equal(want->backoff.cap_ms, got->backoff.cap_ms);
    assert_int_equal(want->backoff.jitter, got->backoff.jitter);
    assert_int_equal(want->result_ttl_ms, got->result_ttl_ms);
    s_assert_str(want->worker, got->worker);
    s_assert_str(want->owner, got->owner);
    s_assert_str(want->schedule, got->schedule);
}

static int s_load_copy(void *arg, const broker_jobrec_t *r);

/* ---- get() into an owned view ----------------------------------------- */

typedef struct {
    char id[37];
    char queue[64], type[64];
    dv_state_t state;
    int attempt;
    unsigned char result[64];
    size_t result_len;
    bool has_result;
    char category[32], error[128];
    bool has_category, has_error;
    int64_t finished_ms;
    char owner[64];
    bool has_owner;
} s_view_t;

static void
s_view_cb(void *arg, const broker_jobview_t *v)
{
    s_view_t *o = arg;
    memset(o, 0, sizeof *o);
    snprintf(o->id, sizeof o->id, "%s", v->id);
    snprintf(o->queue, sizeof o->queue, "%s", v->queue);
    snprintf(o->type, sizeof o->type, "%s", v->type);
    o->state = v->state;
    o->attempt = v->attempt;
    o->has_result = v->result != NULL;
    assert_true(v->result_len <= sizeof o->result);
    if (v->result_len)
        memcpy(o->result, v->result, v->result_len);
    o->result_len = v->result_len;
    o->has_category = v->category != NULL;
    if (v->category)
        snprintf(o->category, sizeof o->category, "%s", v->category);
    o->has_error = v->error != NULL;
    if (v->error)
        snprintf(o->error, sizeof o->error, "%s", v->error);
    o->finished_ms = v->finished_ms;
    o->has_owner = v->owner != NULL;
    if (v->owner)
        snprintf(o->owner, sizeof o->owner, "%s", v->owner);
}

/* ---- a second connection, as an operator's sqlite3 shell or psql ------ */

static PGconn *
s_psql(const s_fx_t *fx)
{
    PGconn *c = PQconnectdb(fx->path);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect %s: %s", fx->path, PQerrorMessage(c));
    return c;
}

/* Runs sql on a new PostgreSQL connection; the caller clears the result
 * and finishes *c. */
static PGresult *
s_psql_query(const s_fx_t *fx, const char *sql, PGconn **c)
{
    *c = s_psql(fx);
    PGresult *r = PQexec(*c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK &&
        PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    return r;
}

static sqlite3 *
s_shell(const s_fx_t *fx)
{
    sqlite3 *db = NULL;
    assert_int_equal(
        sqlite3_open_v2(fx->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* First column of the first row as an integer; -1 for NULL or no row. */
static int64_t
s_shell_int(const s_fx_t *fx, const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    if (s_backend == S_PG) {
        PGconn *c;
        PGresult *r = s_psql_query(fx, sql, &c);
        int64_t v = -1;
        if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        PQfinish(c);
        return v;
    }
    sqlite3 *db = s_shell(fx);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* Runs sql and renders every row as "a|b|c\n" like the sqlite3 shell. */
static void
s_shell_rows(const s_fx_t *fx, const char *sql, char *out, size_t size)
{
    if (s_backend == S_PG) {
        PGconn *c;
        PGresult *r = s_psql_query(fx, sql, &c);
        size_t len = 0;
        out[0] = '\0';
        for (int row = 0; row < PQntuples(r); row++) {
            for (int i = 0; i < PQnfields(r); i++) {
                len += (size_t)snprintf(out + len, size - len, "%s%s",
                                        i ? "|" : "", PQgetvalue(r, row, i));
                assert_true(len < size);
            }
            len += (size_t)snprintf(out + len, size - len, "\n");
            assert_true(len < size);
        }
        PQclear(r);
        PQfinish(c);
        return;
    }
    sqlite3 *db = s_shell(fx);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    size_t len = 0;
    out[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int i = 0; i < sqlite3_column_count(st); i++) {
            const unsigned char *t = sqlite3_column_text(st, i);
            len += (size_t)snprintf(out + len, size - len, "%s%s", i ? "|" : "",
                                    t ? (const char *)t : "");
            assert_true(len < size);
        }
        len += (size_t)snprintf(out + len, size - len, "\n");
        assert_true(len < size);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void
s_shell_exec(const s_fx_t *fx, const char *sql)
{
    if (s_backend == S_PG) {
        PGconn *c;
        PQclear(s_psql_query(fx, sql, &c));
        PQfinish(c);
        return;
    }
    sqlite3 *db = s_shell(fx);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* ---- tests ------------------------------------------------------------- */

static void
t_url_forms(void **state)
{
    s_fx_t *fx = *state;
    char url[1200], err[256];
    const char *forms[] = { "sqlite:%s", "sqlite://%s", "%s", "SQLite:%s" };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        snprintf(url, sizeof url, forms[i], fx->path);
        err[0] = '\0';
        broker_store_t *s = broker_store_open(url, NULL, err, sizeof err);
        if (!s)
            fail_msg("%s: %s", url, err);
        assert_string_equal(broker_store_backend(s), "sqlite");
        assert_false(broker_store_in_group(s));
        broker_store_destroy(&s);
        assert_null(s);
    }
    /* The same file each time: "sqlite://" + absolute path. */
    assert_int_equal(s_shell_int(fx, "PRAGMA user_version"), 6);

    struct {
        const char *url, *want;
    } bad[] = {
        { "mysql://h/db", "unknown store URL scheme 'mysql'" },
        { "", "store URL is empty" },
        { "sqlite:", "names no file" },
        { "sqlite://", "names no file" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_null(broker_store_open(bad[i].url, NULL, err, sizeof err));
        if (!strstr(err, bad[i].want))
            fail_msg("'%s': got '%s', want '%s'", bad[i].url, err, bad[i].want);
    }
    assert_null(broker_store_open(NULL, NULL, NULL, 0)); /* no err buffer */

    /* What a log line may show of a URL. */
    struct {
        const char *url, *want;
    } redact[] = {
        { "postgresql://u:pw@h:5432/db?sslmode=require",
          "postgresql://u:***@h:5432/db?sslmode=require" },
        { "postgres://u:p%40w:x@h/db", "postgres://u:***@h/db" },
        { "postgres://u@h/db", "postgres://u@h/db" },
        { "postgresql:///db?host=/s&password=pw&port=1#f",
          "postgresql:///db?host=/s&password=***&port=1#f" },
        { "postgresql:///db?PASSWORD=pw", "postgresql:///db?password=***" },
        { "postgresql://h/db?a=1&password=&b=2",
          "postgresql://h/db?a=1&password=***&b=2" },
        { "sqlite:/var/lib/drover.db", "sqlite:/var/lib/drover.db" },
        { "drover.db", "drover.db" },
    };
    for (size_t i = 0; i < sizeof redact / sizeof redact[0]; i++) {
        char out[128];
        assert_string_equal(
            broker_store_redact_url(redact[i].url, out, sizeof out),
            redact[i].want);
    }
    char small[12];
    assert_string_equal(
        broker_store_redact_url("postgres://u:pw@h/db", small, sizeof small),
        "postgres://");
    broker_store_destroy(NULL);
}

static void
t_open_missing_dir(void **state)
{
    s_fx_t *fx = *state;
    char dir[1100], path[1200], err[1400] = "";
    snprintf(dir, sizeof dir, "%s/no/such", fx->dir);
    snprintf(path, sizeof path, "%s/drover.db", dir);
    assert_null(broker_store_open(path, NULL, err, sizeof err));
    char want[1200];
    snprintf(want, sizeof want, "directory '%s' does not exist", dir);
    if (!strstr(err, want))
        fail_msg("got '%s', want '%s'", err, want);
}

static void
t_open_not_a_database(void **state)
{
    s_fx_t *fx = *state;
    FILE *f = fopen(fx->path, "w");
    assert_non_null(f);
    for (int i = 0; i < 100; i++)
        fputs("this is not a database, it is a text file\n", f);
    fclose(f);
    char err[512] = "";
    assert_null(broker_store_open(fx->path, NULL, err, sizeof err));
    if (!strstr(err, "not a database"))
        fail_msg("got '%s'", err);
}

static void
t_schema_newer(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    broker_store_destroy(&s);
    s_shell_exec(fx, s_backend == S_PG ? "UPDATE schema_version SET version = 7"
                                       : "PRAGMA user_version = 7");
    char err[512] = "";
    assert_null(broker_store_open(fx->path, NULL, err, sizeof err));
    if (!strstr(err, "schema version 7 is newer"))
        fail_msg("got '%s'", err);
}

/* The tables of schema version 1, as drover wrote them before jobs had
 * an owner. */
static const char s_schema_v1[] =
    "CREATE TABLE jobs (id TEXT PRIMARY KEY, queue TEXT NOT NULL, "
    "type TEXT NOT NULL, state TEXT NOT NULL, priority INTEGER NOT NULL, "
    "payload BLOB, key TEXT, batch TEXT, trace TEXT, "
    "created_at INTEGER NOT NULL, run_at INTEGER NOT NULL, "
    "attempt INTEGER NOT NULL, max_attempts INTEGER NOT NULL, "
    "timeout_ms INTEGER NOT NULL, backoff_base_ms INTEGER, "
    "backoff_factor REAL, backoff_cap_ms INTEGER, backoff_jitter INTEGER, "
    "result_ttl_ms INTEGER NOT NULL, worker TEXT, started_at INTEGER, "
    "finished_at INTEGER, expires_at INTEGER, result BLOB, category TEXT, "
    "error TEXT, retry_after_ms INTEGER, exit_code INTEGER, signal INTEGER, "
    "http_status INTEGER);"
    "CREATE UNIQUE INDEX jobs_key ON jobs(key) WHERE key IS NOT NULL;"
    "CREATE INDEX jobs_live ON jobs(id) WHERE finished_at IS NULL;"
    "CREATE TABLE attempts (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, "
    "worker TEXT, started_at INTEGER, finished_at INTEGER, "
    "outcome TEXT NOT NULL, category TEXT, message TEXT, retryable INTEGER, "
    "retry_after_ms INTEGER, exit_code INTEGER, signal INTEGER, "
    "http_status INTEGER, key_id TEXT, PRIMARY KEY (job_id, attempt)) "
    "WITHOUT ROWID;"
    "CREATE TABLE queues (name TEXT PRIMARY KEY, "
    "paused INTEGER NOT NULL DEFAULT 0, rate REAL NOT NULL DEFAULT 0, "
    "max_running INTEGER NOT NULL DEFAULT 0);"
    "PRAGMA user_version = 1;";

static void
t_schema_v1_migrated(void **state)
{
    s_fx_t *fx = *state;
    /* A version 1 file with one live and one finished job. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, s_schema_v1, NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    char live[37], done[37], sql[1024];
    s_new_id(live);
    s_new_id(done);
    snprintf(sql, sizeof sql,
             "INSERT INTO jobs (id, queue, type, state, priority, created_at, "
             "run_at, attempt, max_attempts, timeout_ms, result_ttl_ms) "
             "VALUES ('%s', 'default', 'noop', 'queued', 5, 1, 1, 0, 5, 0, "
             "1000); "
             "INSERT INTO jobs (id, queue, type, state, priority, created_at, "
             "run_at, attempt, max_attempts, timeout_ms, result_ttl_ms, "
             "finished_at) VALUES ('%s', 'default', 'noop', 'succeeded', 5, "
             "1, 1, 1, 5, 0, 1000, 2)",
             live, done);
    s_shell_exec(fx, sql);
    /* As a store of version 6 had it, before jobs_batch_id covered it. */
    s_shell_exec(fx, "CREATE INDEX jobs_batch ON jobs(batch) "
                     "WHERE batch IS NOT NULL");

    broker_store_t *s = s_open(fx);
    assert_int_equal(s_shell_int(fx, "PRAGMA user_version"), 6);
    /* An existing file keeps the page size it was made with. */
    assert_int_equal(s_shell_int(fx, "PRAGMA page_size"), 4096);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM "
                                     "pragma_table_info('attempts') "
                                     "WHERE name IN ('details', 'stderr')"),
                     2);
    /* Idempotency keys are unique per owner now. */
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM sqlite_master "
                                     "WHERE name = 'jobs_key'"),
                     0);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM sqlite_master "
                                     "WHERE name = 'jobs_owner_key'"),
                     1);
    /* jobs_dead in place of jobs_queue_state (succeeded jobs left out). */
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM sqlite_master "
                                     "WHERE name = 'jobs_queue_state'"),
                     0);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM sqlite_master "
                                     "WHERE name = 'jobs_dead'"),
                     1);
    /* jobs_batch_id in place of jobs_batch (its first column). */
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM sqlite_master "
                                     "WHERE name IN ('jobs_batch', "
                                     "'jobs_batch_id')"),
                     1);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM "
                                     "pragma_table_info('jobs') "
                                     "WHERE name = 'owner'"),
                     1);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM jobs "
                                     "WHERE owner IS NULL"),
                     2);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM api_keys"), 0);
    /* The old rows read back without an owner... */
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.items[0].rec.id, live);
    assert_null(c.items[0].rec.owner);
    s_view_t v;
    assert_int_equal(broker_store_get(s, done, s_view_cb, &v), 1);
    assert_int_equal(v.state, DV_STATE_SUCCEEDED);
    assert_false(v.has_owner);
    /* ...and a new one keeps its owner. */
    char mine[37];
    s_new_id(mine);
    broker_jobrec_t r = s_rec(mine);
    r.owner = "alice";
    s_insert_committed(s, &r);
    assert_int_equal(broker_store_get(s, mine, s_view_cb, &v), 1);
    assert_true(v.has_owner);
    assert_string_equal(v.owner, "alice");
    s_copies_free(&c);
    broker_store_destroy(&s);

    /* Opened again: already version 5, nothing to migrate. */
    s = s_open(fx);
    s_replay(s, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.items[1].rec.owner, "alice");
    s_copies_free(&c);
    broker_store_destroy(&s);
}

static void
t_sync_modes(void **state)
{
    s_fx_t *fx = *state;
    broker_sync_t modes[] = { BROKER_SYNC_FULL, BROKER_SYNC_NORMAL,
                              BROKER_SYNC_OFF };
    char ids[3][37];
    for (int i = 0; i < 3; i++) {
        broker_store_t *s = s_open_sync(fx, modes[i]);
        s_new_id(ids[i]);
        broker_jobrec_t r = s_rec(ids[i]);
        s_insert_committed(s, &r);
        broker_store_destroy(&s);
    }
    broker_store_t *s = s_open(fx);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(c.items[i].rec.id, ids[i]);
    s_copies_free(&c);
    broker_store_destroy(&s);

    broker_store_opts_t bad = { (broker_sync_t)7 };
    char err[256] = "";
    assert_null(broker_store_open(fx->path, &bad, err, sizeof err));
    assert_non_null(strstr(err, "unknown sync mode"));
    if (s_backend != S_SQLITE)
        return;
    /* The file a person queries is in WAL mode. */
    char rows[64];
    s_shell_rows(fx, "PRAGMA journal_mode", rows, sizeof rows);
    assert_string_equal(rows, "wal\n");
    /* A new file gets the store's page size (S_PAGE_SIZE). */
    assert_int_equal(s_shell_int(fx, "PRAGMA page_size"), 8192);
}

static void
t_roundtrip(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open_sync(fx, BROKER_SYNC_FULL);
    char id1[37], id2[37];
    s_new_id(id1);
    s_new_id(id2);
    /* Bytes with NULs and high bits: the payload is a blob, not text. */
    unsigned char payload[300];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (unsigned char)(i * 7);
    broker_jobrec_t full = {
        .id = id1,
        .queue = "emails",
        .type = "send.welcome",
        .key = "signup:42",
        .batch = "batch-2026-01",
        .trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        .payload = payload,
        .payload_len = sizeof payload,
        .state = DV_STATE_SCHEDULED,
        .priority = 9,
        .created_ms = 1767225600123,
        .run_at_ms = 1767225660123,
        .attempt = 2,
        .max_attempts = 7,
        .timeout_ms = 30000,
        .backoff = { 250, 1.5, 60000, false },
        .result_ttl_ms = 86400000,
        .owner = "ci-submitter",
    };
    broker_jobrec_t bare = s_rec(id2); /* no key, batch, trace, payload */
    bare.priority = 0;
    bare.backoff = (dv_backoff_t){ 0, 1.0, 0, true };

    assert_int_equal(broker_store_begin(s), 0);
    assert_true(broker_store_in_group(s));
    assert_int_equal(broker_store_insert(s, &full), 0);
    assert_int_equal(broker_store_insert(s, &bare), 0);
    assert_int_equal(broker_store_commit(s), 0);
    assert_false(broker_store_in_group(s));
    broker_store_destroy(&s);

    s = s_open(fx);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 2);
    s_assert_rec(&full, &c.items[0].rec);
    s_assert_rec(&bare, &c.items[1].rec);
    s_copies_free(&c);
    broker_store_destroy(&s);

    /* What the design promises an operator. */
    char rows[256];
    s_shell_rows(fx, "SELECT state, count(*) FROM jobs GROUP BY 1 ORDER BY 1",
                 rows, sizeof rows);
    assert_string_equal(rows, "queued|1\nscheduled|1\n");
    assert_int_equal(s_shell_int(fx, "SELECT length(payload) FROM jobs "
                                     "WHERE key = 'signup:42'"),
                     sizeof payload);
}

static void
t_rollback(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char a[37], b[37];
    s_new_id(a);
    s_new_id(b);
    broker_jobrec_t ra = s_rec(a), rb = s_rec(b);
    rb.key = "kb";
    s_insert_committed(s, &ra);

    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &rb), 0);
    assert_int_equal(broker_store_mark_running(s, a, 1, "w1", 5), 0);
    s_view_t v;
    assert_int_equal(broker_store_get(s, b, s_view_cb, &v), 1);
    assert_int_equal(broker_store_rollback(s), 0);
    assert_false(broker_store_in_group(s));

    assert_int_equal(broker_store_get(s, b, s_view_cb, &v), 0);
    char id[37];
    assert_int_equal(broker_store_find_key(s, NULL, "kb", id), 0);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.items[0].rec.id, a);
    assert_int_equal(c.items[0].rec.state, DV_STATE_QUEUED);
    assert_null(c.items[0].rec.worker);
    s_copies_free(&c);
    broker_store_destroy(&s);
}

typedef struct {
    size_t n;
    char last[37];
    bool ordered;
} s_order_t;

static int
s_check_order(void *arg, const broker_jobrec_t *r)
{
    s_order_t *o = arg;
    if (o->n && strcmp(o->last, r->id) >= 0)
        o->ordered = false;
    snprintf(o->last, sizeof o->last, "%s", r->id);
    o->n++;
    return 0;
}

static void
t_group_10k(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open_sync(fx, BROKER_SYNC_FULL);
    unsigned char payload[100];
    memset(payload, 0xa5, sizeof payload);
    assert_int_equal(broker_store_begin(s), 0);
    for (int i = 0; i < 10000; i++) {
        char id[37];
        s_new_id(id);
        broker_jobrec_t r = s_rec(id);
        r.payload = payload;
        r.payload_len = sizeof payload;
        r.batch = "big";
        assert_int_equal(broker_store_insert(s, &r), 0);
    }
    assert_int_equal(broker_store_commit(s), 0);
    broker_store_destroy(&s);

    s = s_open(fx);
    s_order_t o = { .ordered = true };
    assert_int_equal(broker_store_replay(s, s_check_order, &o), 0);
    assert_int_equal(o.n, 10000);
    assert_true(o.ordered);
    broker_store_destroy(&s);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM jobs "
                                     "WHERE batch = 'big'"),
                     10000);
}

static int
s_stop_after_one(void *arg, const broker_jobrec_t *r)
{
    int *calls = arg;
    (*calls)++;
    return 42;
}

static void
t_replay_stops(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    assert_int_equal(broker_store_begin(s), 0);
    for (int i = 0; i < 3; i++) {
        char id[37];
        s_new_id(id);
        broker_jobrec_t r = s_rec(id);
        assert_int_equal(broker_store_insert(s, &r), 0);
    }
    assert_int_equal(broker_store_commit(s), 0);
    int calls = 0;
    assert_int_equal(broker_store_replay(s, s_stop_after_one, &calls), 42);
    assert_int_equal(calls, 1);
    /* The statement was reset: a second replay starts over. */
    calls = 0;
    assert_int_equal(broker_store_replay(s, s_stop_after_one, &calls), 42);
    assert_int_equal(calls, 1);
    broker_store_destroy(&s);
}

static void
t_mark_running_reopen(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char id[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    s_insert_committed(s, &r);
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(
        broker_store_mark_running(s, id, 1, "host-a:1234", 1700000000500), 0);
    /* An unknown id is logged, not a group failure. */
    assert_int_equal(broker_store_mark_running(s, "no-such-job", 1, "w", 1), 0);
    assert_int_equal(broker_store_commit(s), 0);
    broker_store_destroy(&s);

    s = s_open(fx);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.items[0].rec.state, DV_STATE_RUNNING);
    assert_int_equal(c.items[0].rec.attempt, 1);
    assert_string_equal(c.items[0].rec.worker, "host-a:1234");
    s_copies_free(&c);
    broker_store_destroy(&s);
    assert_int_equal(s_shell_int(fx, "SELECT started_at FROM jobs"),
                     1700000000500);
}

static void
t_mark_waiting(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char id[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    s_insert_committed(s, &r);

    dv_failure_t f = s_failure(DV_CAT_UPSTREAM, "502 Bad Gateway");
    f.retryable = true;
    f.retry_after_ms = 2000;
    f.http_status = 502;
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_mark_running(s, id, 1, "w1", 100), 0);
    assert_int_equal(broker_store_mark_waiting(s, id, DV_STATE_SCHEDULED,
                                               1700000009000, 1, &f),
                     0);
    assert_int_equal(broker_store_commit(s), 0);

    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.items[0].rec.state, DV_STATE_SCHEDULED);
    assert_int_equal(c.items[0].rec.run_at_ms, 1700000009000);
    assert_int_equal(c.items[0].rec.attempt, 1);
    assert_null(c.items[0].rec.worker);
    s_view_t v;
    assert_int_equal(broker_store_get(s, id, s_view_cb, &v), 1);
    assert_int_equal(v.state, DV_STATE_SCHEDULED);
    assert_string_equal(v.category, "upstream");
    assert_string_equal(v.error, "502 Bad Gateway");

    /* A lost worker, say: back to queued, the last failure stays. */
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_mark_running(s, id, 2, "w2", 200), 0);
    assert_int_equal(broker_store_mark_waiting(s, id, DV_STATE_QUEUED,
                                               1700000010000, 2, NULL),
                     0);
    assert_int_equal(broker_store_commit(s), 0);
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.items[0].rec.state, DV_STATE_QUEUED);
    assert_int_equal(c.items[0].rec.attempt, 2);
    assert_null(c.items[0].rec.worker);
    assert_int_equal(broker_store_get(s, id, s_view_cb, &v), 1);
    assert_string_equal(v.category, "upstream");
    s_copies_free(&c);
    broker_store_destroy(&s);

    char rows[256];
    s_shell_rows(fx,
                 "SELECT state, category, retry_after_ms, http_status, "
                 "coalesce(exit_code, -1), coalesce(signal, -1), "
                 "coalesce(worker, '-') FROM jobs",
                 rows, sizeof rows);
    assert_string_equal(rows, "queued|upstream|2000|502|-1|-1|-\n");
}

static void
t_mark_finished(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char ok[37], dead[37], cancelled[37], live[37];
    s_new_id(ok);
    s_new_id(dead);
    s_new_id(cancelled);
    s_new_id(live);
    const char *ids[] = { ok, dead, cancelled, live };
    assert_int_equal(broker_store_begin(s), 0);
    for (int i = 0; i < 4; i++) {
        broker_jobrec_t r = s_rec(ids[i]);
        r.result_ttl_ms = 60000;
        assert_int_equal(broker_store_insert(s, &r), 0);
        assert_int_equal(broker_store_mark_running(s, ids[i], 1, "w1", 10), 0);
    }
    assert_int_equal(broker_store_commit(s), 0);

    const unsigned char result[] = {
        0x82, 0xa2, 'o', 'k', 0xc3, 0xa1, 'n', 0x00
    };
    dv_failure_t timeout = s_failure(DV_CAT_TIMEOUT, "took too long");
    timeout.signal = 9;
    dv_failure_t handler = s_failure(DV_CAT_HANDLER, "bad row 7");
    handler.exit_code = 1;
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_mark_finished(s, ok, DV_STATE_SUCCEEDED, 1,
                                                result, sizeof result, NULL,
                                                1000),
                     0);
    assert_int_equal(broker_store_mark_finished(s, dead, DV_STATE_DEAD, 1, NULL,
                                                0, &timeout, 2000),
                     0);
    /* Failed once, then cancelled while waiting: the failure is kept. */
    assert_int_equal(broker_store_mark_waiting(s, cancelled, DV_STATE_SCHEDULED,
                                               5000, 1, &handler),
                     0);
    assert_int_equal(broker_store_mark_finished(s, cancelled,
                                                DV_STATE_CANCELLED, 1, NULL, 0,
                                                NULL, 3000),
                     0);
    assert_int_equal(broker_store_commit(s), 0);

    /* A job leased and ended within one group: one write, mark_done,
     * records who ran it with the outcome. */
    char fast[37];
    s_new_id(fast);
    broker_jobrec_t fr = s_rec(fast);
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &fr), 0);
    assert_int_equal(broker_store_commit(s), 0);
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_mark_done(s, fast, DV_STATE_SUCCEEDED, 1,
                                            "w2", 900, result, sizeof result,
                                            NULL, 4000),
                     0);
    assert_int_equal(broker_store_commit(s), 0);
    broker_store_destroy(&s);

    s = s_open(fx);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.items[0].rec.id, live);
    s_copies_free(&c);
    assert_int_equal(broker_store_load(s, fast, s_load_copy, &c), 1);
    assert_int_equal(c.items[0].rec.state, DV_STATE_SUCCEEDED);
    assert_int_equal(c.items[0].rec.attempt, 1);
    assert_string_equal(c.items[0].rec.worker, "w2");
    s_copies_free(&c);
    /* Without a worker, mark_done keeps the one the lease wrote. */
    assert_int_equal(broker_store_load(s, ok, s_load_copy, &c), 1);
    assert_string_equal(c.items[0].rec.worker, "w1");
    s_copies_free(&c);

    s_view_t v;
    assert_int_equal(broker_store_get(s, ok, s_view_cb, &v), 1);
    assert_string_equal(v.id, ok);
    assert_string_equal(v.queue, "default");
    assert_string_equal(v.type, "noop");
    assert_int_equal(v.state, DV_STATE_SUCCEEDED);
    assert_int_equal(v.attempt, 1);
    assert_int_equal(v.result_len, sizeof result);
    assert_memory_equal(v.result, result, sizeof result);
    assert_false(v.has_category);
    assert_false(v.has_error);
    assert_int_equal(v.finished_ms, 1000);

    assert_int_equal(broker_store_get(s, dead, s_view_cb, &v), 1);
    assert_int_equal(v.state, DV_STATE_DEAD);
    assert_false(v.has_result);
    assert_int_equal(v.result_len, 0);
    assert_string_equal(v.category, "timeout");
    assert_string_equal(v.error, "took too long");
    assert_int_equal(v.finished_ms, 2000);

    assert_int_equal(broker_store_get(s, cancelled, s_view_cb, &v), 1);
    assert_int_equal(v.state, DV_STATE_CANCELLED);
    assert_string_equal(v.category, "handler");
    assert_string_equal(v.error, "bad row 7");

    assert_int_equal(broker_store_get(s, live, s_view_cb, &v), 1);
    assert_int_equal(v.state, DV_STATE_RUNNING);
    assert_int_equal(v.finished_ms, 0);
    assert_int_equal(broker_store_get(s, "nope", s_view_cb, &v), 0);
    broker_store_destroy(&s);

    /* expires_at is computed from the row's own ttl; the worker stays for
     * history (the job cancelled while waiting had none any more). */
    char rows[512];
    s_shell_rows(fx,
                 "SELECT state, finished_at, expires_at, worker, signal, "
                 "exit_code FROM jobs WHERE finished_at IS NOT NULL "
                 "ORDER BY finished_at",
                 rows, sizeof rows);
    assert_string_equal(rows, "succeeded|1000|61000|w1||\n"
                              "dead|2000|62000|w1|9|\n"
                              "cancelled|3000|63000|||1\n"
                              "succeeded|4000|5000|w2||\n");
    assert_int_equal(
        s_shell_int(fx, "SELECT started_at FROM jobs WHERE worker = 'w2'"),
        900);
}

static void
t_find_key(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char id[37], found[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    r.key = "order-7781";
    r.result_ttl_ms = 500;

    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &r), 0);
    /* Within the uncommitted group already. */
    assert_int_equal(broker_store_find_key(s, NULL, "order-7781", found), 1);
    assert_string_equal(found, id);
    assert_int_equal(broker_store_find_key(s, NULL, "order-0000", found), 0);
    assert_int_equal(broker_store_commit(s), 0);

    assert_int_equal(broker_store_find_key(s, NULL, "order-7781", found), 1);
    assert_string_equal(found, id);

    /* Finished jobs keep their key until they expire. */
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_mark_running(s, id, 1, "w", 10), 0);
    assert_int_equal(broker_store_mark_finished(s, id, DV_STATE_SUCCEEDED, 1,
                                                "\xc0", 1, NULL, 1000),
                     0);
    assert_int_equal(broker_store_commit(s), 0);
    memset(found, 0, sizeof found);
    assert_int_equal(broker_store_find_key(s, NULL, "order-7781", found), 1);
    assert_string_equal(found, id);
    assert_int_equal(broker_store_expire(s, 1499, 100), 0);
    assert_int_equal(broker_store_find_key(s, NULL, "order-7781", found), 1);
    assert_int_equal(broker_store_expire(s, 1500, 100), 1);
    assert_int_equal(broker_store_find_key(s, NULL, "order-7781", found), 0);
    broker_store_destroy(&s);
}

/* Two owners may use one key: each finds only its own job. */
static void
t_key_per_owner(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char a[37], b[37], c[37], found[37];
    s_new_id(a);
    s_new_id(b);
    s_new_id(c);
    broker_jobrec_t ra = s_rec(a), rb = s_rec(b), rc = s_rec(c);
    ra.key = rb.key = rc.key = "nightly-2026-12-04";
    ra.owner = "alice";
    rb.owner = "bob";
    s_insert_committed(s, &ra);
    s_insert_committed(s, &rb);
    s_insert_committed(s, &rc); /* no owner */
    assert_int_equal(broker_store_find_key(s, "alice", ra.key, found), 1);
    assert_string_equal(found, a);
    assert_int_equal(broker_store_find_key(s, "bob", ra.key, found), 1);
    assert_string_equal(found, b);
    assert_int_equal(broker_store_find_key(s, NULL, ra.key, found), 1);
    assert_string_equal(found, c);
    assert_int_equal(broker_store_find_key(s, "carol", ra.key, found), 0);
    /* The owner's namespace is still unique. */
    char d[37];
    s_new_id(d);
    broker_jobrec_t rd = s_rec(d);
    rd.key = ra.key;
    rd.owner = "alice";
    assert_int_equal(broker_store_begin(s), 0);
    s_assert_write(broker_store_insert(s, &rd), DV_EIO);
    assert_int_equal(broker_store_commit(s), DV_EIO);
    broker_store_destroy(&s);
}

static void
t_duplicate_key(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char a[37], b[37], c[37], d[37];
    s_new_id(a);
    s_new_id(b);
    s_new_id(c);
    s_new_id(d);
    broker_jobrec_t ra = s_rec(a), rb = s_rec(b), rc = s_rec(c), rd = s_rec(d);
    ra.key = "dup";
    rb.key = "other";
    rc.key = "dup";
    s_insert_committed(s, &ra);

    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &rb), 0);
    s_assert_write(broker_store_insert(s, &rc), DV_EIO);
    /* The group is poisoned: nothing more goes in, commit fails. */
    s_assert_write(broker_store_insert(s, &rd), DV_EIO);
    s_assert_write(broker_store_mark_running(s, a, 1, "w", 1), DV_EIO);
    assert_int_equal(broker_store_commit(s), DV_EIO);
    assert_false(broker_store_in_group(s));

    char found[37];
    assert_int_equal(broker_store_find_key(s, NULL, "other", found), 0);
    s_view_t v;
    assert_int_equal(broker_store_get(s, b, s_view_cb, &v), 0);
    assert_int_equal(broker_store_get(s, d, s_view_cb, &v), 0);
    assert_int_equal(broker_store_get(s, a, s_view_cb, &v), 1);
    assert_int_equal(v.state, DV_STATE_QUEUED);

    /* Two of a key inside one group, and a duplicate id. */
    char e[37], f[37];
    s_new_id(e);
    s_new_id(f);
    broker_jobrec_t re = s_rec(e), rf = s_rec(f);
    re.key = rf.key = "twice";
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &re), 0);
    s_assert_write(broker_store_insert(s, &rf), DV_EIO);
    assert_int_equal(broker_store_commit(s), DV_EIO);
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &rd), 0);
    s_assert_write(broker_store_insert(s, &rd), DV_EIO);
    assert_int_equal(broker_store_commit(s), DV_EIO);
    assert_int_equal(broker_store_get(s, e, s_view_cb, &v), 0);
    assert_int_equal(broker_store_get(s, d, s_view_cb, &v), 0);

    /* The store goes on working after a failed group. */
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &rb), 0);
    assert_int_equal(broker_store_commit(s), 0);
    broker_store_destroy(&s);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM jobs"), 2);
}

static void
t_expire(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char ids[9][37];
    assert_int_equal(broker_store_begin(s), 0);
    for (int i = 0; i < 9; i++) {
        s_new_id(ids[i]);
        broker_jobrec_t r = s_rec(ids[i]);
        r.result_ttl_ms = 1000 * (i + 1); /* expires at 1000 + ttl */
        assert_int_equal(broker_store_insert(s, &r), 0);
        broker_attempt_t a = { ids[i], 1, "w", 10, 1000, DV_STATE_SUCCEEDED,
                               NULL };
        assert_int_equal(broker_store_add_attempt(s, &a), 0);
        if (i < 7) /* 7 and 8 stay unfinished: queued and running */
            assert_int_equal(broker_store_mark_finished(s, ids[i],
                                                        DV_STATE_SUCCEEDED, 1,
                                                        NULL, 0, NULL, 1000),
                             0);
    }
    assert_int_equal(broker_store_mark_running(s, ids[8], 1, "w", 10), 0);
    assert_int_equal(broker_store_commit(s), 0);

    assert_int_equal(broker_store_expire(s, 1999, 100), 0);
    assert_int_equal(broker_store_expire(s, 2000, 100), 1); /* ids[0] */
    s_view_t v;
    assert_int_equal(broker_store_get(s, ids[0], s_view_cb, &v), 0);
    assert_int_equal(broker_store_get(s, ids[1], s_view_cb, &v), 1);
    assert_int_equal(s_shell_int(fx,
                                 "SELECT count(*) FROM attempts "
                                 "WHERE job_id = '%s'",
                                 ids[0]),
                     0);
    /* In chunks: 5 expired by 7000, two at a time, oldest first. */
    assert_int_equal(broker_store_expire(s, 7000, 2), 2);
    assert_int_equal(broker_store_get(s, ids[1], s_view_cb, &v), 0);
    assert_int_equal(broker_store_get(s, ids[3], s_view_cb, &v), 1);
    assert_int_equal(broker_store_expire(s, 7000, 2), 2);
    assert_int_equal(broker_store_expire(s, 7000, 2), 1);
    assert_int_equal(broker_store_expire(s, 7000, 2), 0);
    assert_int_equal(broker_store_expire(s, 7000, 0), 0);
    /* Unfinished jobs never expire, whatever the time. */
    assert_int_equal(broker_store_expire(s, INT64_MAX, 100), 1); /* ids[6] */
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.items[0].rec.id, ids[7]);
    assert_string_equal(c.items[1].rec.id, ids[8]);
    s_copies_free(&c);
    broker_store_destroy(&s);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM attempts"), 2);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM jobs"), 2);
}

/* Batch records: written and read back (the same write applied twice is
 * one row), jobs counted by state after since_id, a page of a batch's
 * jobs with results, and the expiry keeping a batch's jobs while its
 * record is not done. */
typedef struct {
    int n;
    char state[16], since[37], complete_id[37];
    size_t payload_len;
} s_batches_t;

static int
s_on_batch(void *arg, const broker_batchrec_t *b)
{
    s_batches_t *t = arg;
    t->n++;
    snprintf(t->state, sizeof t->state, "%s", b->state);
    snprintf(t->since, sizeof t->since, "%s", b->since_id ? b->since_id : "");
    snprintf(t->complete_id, sizeof t->complete_id, "%s",
             b->complete_id ? b->complete_id : "");
    t->payload_len = b->payload_len;
    return 0;
}

typedef struct {
    int n, results;
    char last[37];
} s_bjobs_t;

static int
s_on_bjob(void *arg, const broker_jobview_t *v)
{
    s_bjobs_t *t = arg;
    t->n++;
    t->results += v->result_len > 0;
    snprintf(t->last, sizeof t->last, "%s", v->id);
    return 0;
}

static void
t_batches(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char before[37], since[37], ids[4][37];
    s_new_id(before); /* a job of the name from before the record */
    s_new_id(since);
    for (int i = 0; i < 4; i++)
        s_new_id(ids[i]);
    static const char payload[] = "\x81\xa1k\x01"; /* {"k": 1} */
    broker_batchrec_t b = {
        .owner = "",
        .name = "nb",
        .state = "closed",
        .on_complete = "cb",
        .queue = "default",
        .payload = payload,
        .payload_len = 4,
        .created_ms = 1000,
        .since_id = since,
    };
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_batch(s, &b), 0);
    assert_int_equal(broker_store_set_batch(s, &b), 0);
    broker_jobrec_t r = s_rec(before);
    r.batch = "nb";
    assert_int_equal(broker_store_insert(s, &r), 0);
    for (int i = 0; i < 4; i++) {
        r = s_rec(ids[i]);
        r.batch = "nb";
        assert_int_equal(broker_store_insert(s, &r), 0);
    }
    assert_int_equal(broker_store_mark_finished(s, ids[0], DV_STATE_SUCCEEDED,
                                                1, "\xa2ok", 3, NULL, 1000),
                     0);
    assert_int_equal(broker_store_mark_finished(s, ids[1], DV_STATE_DEAD, 1,
                                                NULL, 0, NULL, 1000),
                     0);
    assert_int_equal(broker_store_mark_finished(s, before, DV_STATE_SUCCEEDED,
                                                1, NULL, 0, NULL, 1000),
                     0);
    assert_int_equal(broker_store_commit(s), 0);

    s_batches_t t = { 0 };
    assert_int_equal(broker_store_load_batches(s, s_on_batch, &t), 0);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.state, "closed");
    assert_string_equal(t.since, since);
    assert_int_equal(t.payload_len, 4);

    broker_batch_counts_t c;
    assert_int_equal(broker_store_batch_counts(s, "", "nb", since, &c), 0);
    assert_int_equal(c.succeeded, 1);
    assert_int_equal(c.dead, 1);
    assert_int_equal(c.queued, 2);
    assert_int_equal(broker_store_batch_counts(s, NULL, "nb", NULL, &c), 0);
    assert_int_equal(c.succeeded, 2);
    assert_int_equal(broker_store_batch_counts(s, "other", "nb", NULL, &c), 0);
    assert_int_equal(c.succeeded + c.queued, 0);

    s_bjobs_t j = { 0 };
    assert_int_equal(
        broker_store_batch_jobs(s, NULL, "nb", since, 3, s_on_bjob, &j), 3);
    assert_int_equal(j.results, 1);
    assert_string_equal(j.last, ids[2]);
    j = (s_bjobs_t){ 0 };
    assert_int_equal(
        broker_store_batch_jobs(s, NULL, "nb", ids[2], 3, s_on_bjob, &j), 1);
    assert_string_equal(j.last, ids[3]);

    /* Not done: its finished jobs stay past their ttl; done: they go. */
    assert_int_equal(broker_store_expire(s, INT64_MAX, 100), 0);
    b.state = "done";
    b.complete_id = ids[3];
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_batch(s, &b), 0);
    assert_int_equal(broker_store_commit(s), 0);
    t = (s_batches_t){ 0 };
    assert_int_equal(broker_store_load_batches(s, s_on_batch, &t), 0);
    assert_string_equal(t.complete_id, ids[3]);
    assert_int_equal(broker_store_expire(s, INT64_MAX, 100), 3);
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_del_batch(s, "", "nb"), 0);
    assert_int_equal(broker_store_commit(s), 0);
    t = (s_batches_t){ 0 };
    assert_int_equal(broker_store_load_batches(s, s_on_batch, &t), 0);
    assert_int_equal(t.n, 0);
    broker_store_destroy(&s);
}

static void
t_retry_finished_job(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char id[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    s_insert_committed(s, &r);
    dv_failure_t f = s_failure(DV_CAT_AUTH, "401");
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(
        broker_store_mark_finished(s, id, DV_STATE_DEAD, 1, NULL, 0, &f, 1000),
        0);
    /* The operator retries the dead job: it must not expire while queued. */
    assert_int_equal(
        broker_store_mark_waiting(s, id, DV_STATE_QUEUED, 5000, 1, NULL), 0);
    assert_int_equal(broker_store_commit(s), 0);
    assert_int_equal(broker_store_expire(s, INT64_MAX, 100), 0);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.items[0].rec.state, DV_STATE_QUEUED);
    s_copies_free(&c);
    broker_store_destroy(&s);
}

/* Attempts read back by broker_store_attempts, as owned copies. */
typedef struct {
    int n;
    broker_attempt_row_t a[8];
} s_arows_t;

static int
s_collect_attempt(void *arg, const broker_attempt_row_t *a)
{
    s_arows_t *o = arg;
    assert_true(o->n < 8);
    broker_attempt_row_t *c = &o->a[o->n++];
    *c = *a;
    c->worker = s_dup(a->worker);
    c->outcome = s_dup(a->outcome);
    c->category = s_dup(a->category);
    c->message = s_dup(a->message);
    c->key_id = s_dup(a->key_id);
    c->details = s_dup(a->details);
    c->stderr_tail = s_dup(a->stderr_tail);
    return 0;
}

static void
s_arows_free(s_arows_t *o)
{
    for (int i = 0; i < o->n; i++) {
        broker_attempt_row_t *c = &o->a[i];
        free((char *)c->worker);
        free((char *)c->outcome);
        free((char *)c->category);
        free((char *)c->message);
        free((char *)c->key_id);
        free((char *)c->details);
        free((char *)c->stderr_tail);
    }
    o->n = 0;
}

static void
s_assert_null_or_str(const char *want, const char *got)
{
    if (!want)
        assert_null(got);
    else {
        assert_non_null(got);
        assert_string_equal(want, got);
    }
}

/* A stored attempt holds every field of what was written. */
static void
s_assert_attempt(const broker_attempt_t *want, const broker_attempt_row_t *got)
{
    assert_int_equal(got->attempt, want->attempt);
    s_assert_null_or_str(want->worker, got->worker);
    assert_int_equal(got->started_ms, want->started_ms);
    assert_int_equal(got->finished_ms, want->finished_ms);
    assert_string_equal(got->outcome, want->outcome == DV_STATE_SUCCEEDED
                                          ? "succeeded"
                                          : "failed");
    const dv_failure_t *f = want->failure;
    if (!f) {
        assert_null(got->category);
        assert_null(got->message);
        assert_null(got->details);
        assert_null(got->stderr_tail);
        assert_int_equal(got->exit_code, -1);
        return;
    }
    assert_string_equal(got->category, dv_category_name(f->category));
    s_assert_null_or_str(f->message.ptr, got->message);
    assert_int_equal(got->retryable, f->retryable);
    assert_int_equal(got->retry_after_ms, f->retry_after_ms);
    assert_int_equal(got->exit_code, f->exit_code);
    assert_int_equal(got->signal, f->signal);
    assert_int_equal(got->http_status, f->http_status);
    s_assert_null_or_str(f->key_id.ptr, got->key_id);
    s_assert_null_or_str(f->details.ptr, got->details);
    s_assert_null_or_str(f->stderr_tail.ptr, got->stderr_tail);
}

static void
t_attempts_history(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char id[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    s_insert_committed(s, &r);

    dv_failure_t f1 = s_failure(DV_CAT_RATE_LIMITED, "429 Too Many Requests");
    f1.retryable = true;
    f1.retry_after_ms = 30000;
    f1.http_status = 429;
    f1.key_id = dv_str("key-3");
    dv_failure_t f2 = s_failure(DV_CAT_CRASHED, "killed by SIGSEGV");
    f2.signal = 11;
    f2.exit_code = 139;
    f2.details = dv_str("Traceback (most recent call last):\n"
                        "  File \"handler.py\", line 3, in run\n"
                        "ValueError: no prompt \xc3\xa9");
    f2.stderr_tail = dv_str("warming up\nSegmentation fault\n");
    broker_attempt_t a1 = { id, 1, "w1", 100, 200, DV_STATE_FAILED, &f1 };
    broker_attempt_t a2 = { id, 2, "w2", 300, 400, DV_STATE_FAILED, &f2 };
    broker_attempt_t a3 = { id, 3, "w1", 500, 600, DV_STATE_SUCCEEDED, NULL };

    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_add_attempt(s, &a1), 0);
    assert_int_equal(broker_store_add_attempt(s, &a2), 0);
    /* Not visible to another connection before the commit. */
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM attempts"), 0);
    assert_int_equal(broker_store_commit(s), 0);

    /* A report repeated after a reconnect replaces the row. */
    a2.worker = "w2-again";
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_add_attempt(s, &a2), 0);
    assert_int_equal(broker_store_add_attempt(s, &a3), 0);
    assert_int_equal(broker_store_commit(s), 0);

    /* Read while the store is still open, as an operator would. */
    char rows[1024];
    s_shell_rows(fx,
                 "SELECT attempt, worker, started_at, finished_at, outcome, "
                 "category, message, retryable, retry_after_ms, exit_code, "
                 "signal, http_status, key_id FROM attempts "
                 "ORDER BY job_id, attempt",
                 rows, sizeof rows);
    assert_string_equal(rows, "1|w1|100|200|failed|rate_limited|"
                              "429 Too Many Requests|1|30000|||429|key-3\n"
                              "2|w2-again|300|400|failed|crashed|"
                              "killed by SIGSEGV|0||139|11||\n"
                              "3|w1|500|600|succeeded||||||||\n");
    s_shell_rows(fx,
                 "SELECT attempt, length(details), stderr FROM attempts "
                 "WHERE details IS NOT NULL OR stderr IS NOT NULL",
                 rows, sizeof rows);
    assert_string_equal(rows, "2|94|warming up\nSegmentation fault\n\n");

    /* Read back through the store, every column, in attempt order. */
    s_arows_t o = { 0 };
    assert_int_equal(broker_store_attempts(s, id, 100, s_collect_attempt, &o),
                     3);
    assert_int_equal(o.n, 3);
    s_assert_attempt(&a1, &o.a[0]);
    s_assert_attempt(&a2, &o.a[1]);
    s_assert_attempt(&a3, &o.a[2]);
    assert_null(o.a[0].details);
    assert_null(o.a[0].stderr_tail);
    s_arows_free(&o);
    /* Only the last ones, still oldest first. */
    assert_int_equal(broker_store_attempts(s, id, 2, s_collect_attempt, &o), 2);
    assert_int_equal(o.a[0].attempt, 2);
    assert_int_equal(o.a[1].attempt, 3);
    s_arows_free(&o);
    /* A job without attempts, and no job at all. */
    char other[37];
    s_new_id(other);
    assert_int_equal(
        broker_store_attempts(s, other, 100, s_collect_attempt, &o), 0);
    assert_int_equal(o.n, 0);
    broker_store_destroy(&s);
}

/* Fills the group with jobs of payload_len bytes until an insert fails or
 * max_jobs went in, under a 256 KiB file-size limit, then commits. A
 * file-size limit makes write(2) fail with EFBIG, the way a full disk fails
 * with ENOSPC, without needing a small filesystem. Returns the insert rc. */
static int
s_fill_under_limit(broker_store_t *s, size_t payload_len, int max_jobs,
                   int *commit_rc)
{
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 256 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

    unsigned char *payload = malloc(payload_len);
    assert_non_null(payload);
    memset(payload, 0x5a, payload_len);
    int rc = 0, n = 0;
    assert_int_equal(broker_store_begin(s), 0);
    while (n < max_jobs && rc == 0) {
        char id[37];
        s_new_id(id);
        broker_jobrec_t big = s_rec(id);
        big.payload = payload;
        big.payload_len = payload_len;
        rc = broker_store_insert(s, &big);
        n++;
    }
    if (rc != 0) {
        /* Poisoned: nothing more is written, not even in autocommit. */
        char id[37];
        s_new_id(id);
        broker_jobrec_t one = s_rec(id);
        assert_int_equal(broker_store_insert(s, &one), rc);
    }
    *commit_rc = broker_store_commit(s);
    assert_false(broker_store_in_group(s));
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    free(payload);
    print_message("file limit: insert rc %d after %d jobs, commit rc %d\n", rc,
                  n, *commit_rc);
    return rc;
}

/* After the failed group: the same connection works again once there is
 * room, and after a reopen only the committed jobs are there. */
static void
s_check_after_full(const s_fx_t *fx, broker_store_t **s_p, const char *first)
{
    char again[37];
    s_new_id(again);
    broker_jobrec_t r = s_rec(again);
    s_insert_committed(*s_p, &r);
    broker_store_destroy(s_p);

    broker_store_t *s = s_open(fx);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.items[0].rec.id, first);
    assert_string_equal(c.items[1].rec.id, again);
    s_copies_free(&c);
    broker_store_destroy(&s);
}

static void
t_disk_full_at_commit(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open_sync(fx, BROKER_SYNC_FULL);
    char first[37];
    s_new_id(first);
    broker_jobrec_t r = s_rec(first);
    s_insert_committed(s, &r);

    /* 2 MB fits in the page cache: the WAL is written at commit. */
    int commit_rc;
    assert_int_equal(s_fill_under_limit(s, 1024, 2000, &commit_rc), 0);
    assert_int_equal(commit_rc, DV_EIO);
    s_check_after_full(fx, &s, first);
}

static void
t_disk_full_mid_group(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open_sync(fx, BROKER_SYNC_FULL);
    char first[37];
    s_new_id(first);
    broker_jobrec_t r = s_rec(first);
    s_insert_committed(s, &r);

    /* 5000 x 16 KiB does not fit in the 32 MiB page cache: SQLite spills
     * pages to the WAL in the middle of the group, and an insert fails.
     * SQLite may roll the transaction back right there. */
    int commit_rc;
    assert_int_equal(s_fill_under_limit(s, 16384, 5000, &commit_rc), DV_EIO);
    assert_int_equal(commit_rc, DV_EIO);
    s_check_after_full(fx, &s, first);
}

/* The WAL on a filesystem smaller than the WAL grows before SQLite's own
 * checkpoint (1,000 pages, 4 MiB, by default): a 2 MiB tmpfs, and many
 * small groups, each a new job of 1 KiB and the lease of the one before
 * (the broker's groups rewrite the same right-edge pages, so the WAL grows
 * by a few pages a group however little data they add), about 600 KiB of
 * rows in all, which fits. SQLite checkpoints only after a commit that
 * leaves the WAL at its threshold: without a checkpoint before that, the
 * WAL took the last free byte, and from then on no commit could succeed
 * (the WAL cannot grow) and no checkpoint could run (the database file
 * cannot grow to take the WAL's pages), so the store stayed full for good
 * even with most of the disk taken by its own WAL (chaos_disk_full, seed
 * 847018547, with a checkpoint every 8,192 pages: the broker kept the
 * outcomes in memory and retried the group forever). Every group must
 * commit. Needs root for the mount (CI runs as root); skipped otherwise. */
static void
t_disk_full_wal(void **state)
{
    s_fx_t *fx = *state;
    if (geteuid() != 0) {
        print_message("t_disk_full_wal: skipped: mounting a tmpfs needs root "
                      "(CI runs as root)\n");
        skip();
    }
    snprintf(fx->mnt, sizeof fx->mnt, "%s/space", fx->dir);
    if (mkdir(fx->mnt, 0700) != 0 ||
        mount("tmpfs", fx->mnt, "tmpfs", 0, "size=2m,mode=0700") != 0) {
        int e = errno;
        rmdir(fx->mnt);
        fx->mnt[0] = '\0';
        fail_msg("cannot mount a tmpfs: %s", strerror(e));
    }
    snprintf(fx->path, sizeof fx->path, "%s/drover.db", fx->mnt);
    broker_store_t *s = s_open_sync(fx, BROKER_SYNC_FULL);

    enum { GROUPS = 400 };
    unsigned char payload[1024];
    memset(payload, 0x5a, sizeof payload);
    char prev[37] = "";
    int rc = 0, committed = 0;
    for (int g = 0; g < GROUPS && rc == 0; g++) {
        char id[37];
        s_new_id(id);
        broker_jobrec_t r = s_rec(id);
        r.payload = payload;
        r.payload_len = sizeof payload;
        assert_int_equal(broker_store_begin(s), 0);
        rc = broker_store_insert(s, &r);
        if (rc == 0 && prev[0])
            rc = broker_store_mark_running(s, prev, 1, "w1", 1700000000000 + g);
        int crc = broker_store_commit(s);
        if (rc == 0)
            rc = crc;
        if (rc == 0) {
            committed++;
            memcpy(prev, id, sizeof prev);
        }
    }
    char wal[sizeof fx->path + 8];
    snprintf(wal, sizeof wal, "%s-wal", fx->path);
    struct stat st;
    long long wal_bytes = stat(wal, &st) == 0 ? (long long)st.st_size : -1;
    print_message("%d of %d groups committed (rc %d), WAL %lld bytes\n",
                  committed, GROUPS, rc, wal_bytes);
    assert_int_equal(rc, 0);
    assert_int_equal(committed, GROUPS);
    broker_store_destroy(&s);

    /* Every job is there, read back after a reopen. */
    s = s_open_sync(fx, BROKER_SYNC_FULL);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, GROUPS);
    s_copies_free(&c);
    broker_store_destroy(&s);
}

/* Reads between read_begin() and read_end() see the store as it was at
 * the first of them (SQLite; on PostgreSQL each read sees the latest),
 * and the next read after read_end() sees what was written meanwhile. */
static void
t_read_snapshot(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *w = s_open(fx), *r = s_open(fx);
    char a[37], b[37];
    s_new_id(a);
    s_new_id(b);
    broker_jobrec_t ra = s_rec(a), rb = s_rec(b);
    s_insert_committed(w, &ra);
    s_view_t v;
    broker_store_read_begin(r);
    assert_int_equal(broker_store_get(r, a, s_view_cb, &v), 1);
    s_insert_committed(w, &rb);
    assert_int_equal(broker_store_get(r, b, s_view_cb, &v),
                     s_backend == S_SQLITE ? 0 : 1);
    broker_store_read_end(r);
    assert_int_equal(broker_store_get(r, b, s_view_cb, &v), 1);
    assert_int_equal(v.state, DV_STATE_QUEUED);
    /* An empty snapshot, and one around a failed lookup, end cleanly. */
    broker_store_read_begin(r);
    broker_store_read_end(r);
    broker_store_read_begin(r);
    assert_int_equal(broker_store_get(r, "nope", s_view_cb, &v), 0);
    broker_store_read_end(r);
    /* The writer still commits: the reader holds no lock. */
    char c[37];
    s_new_id(c);
    broker_jobrec_t rc = s_rec(c);
    s_insert_committed(w, &rc);
    broker_store_destroy(&r);
    broker_store_destroy(&w);
}

static void
t_memory_store(void **state)
{
    char err[256] = "";
    broker_store_t *s = broker_store_open(":memory:", NULL, err, sizeof err);
    if (!s)
        fail_msg("%s", err);
    char id[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    s_insert_committed(s, &r);
    s_view_t v;
    assert_int_equal(broker_store_get(s, id, s_view_cb, &v), 1);
    /* Destroy rolls back an open group. */
    assert_int_equal(broker_store_begin(s), 0);
    broker_store_destroy(&s);
}

/* ---- queue settings, lists, loads, generations, probes --------------- */

typedef struct {
    int n;
    char names[4][32];
    bool paused[4];
    double rate[4];
    int max_running[4];
} s_queues_t;

static int
s_collect_queue(void *arg, const broker_queue_settings_t *q)
{
    s_queues_t *o = arg;
    assert_true(o->n < 4);
    snprintf(o->names[o->n], sizeof o->names[o->n], "%s", q->name);
    o->paused[o->n] = q->paused;
    o->rate[o->n] = q->rate;
    o->max_running[o->n] = q->max_running;
    o->n++;
    return 0;
}

static void
t_queue_settings(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    broker_queue_settings_t llm = { "llm", false, 5.5, 20 };
    broker_queue_settings_t images = { "images", true, 0, 0 };
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_queue(s, &llm), 0);
    assert_int_equal(broker_store_set_queue(s, &images), 0);
    assert_int_equal(broker_store_commit(s), 0);
    /* Set again: replaced, not added. */
    llm.rate = 0.25;
    llm.paused = true;
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_queue(s, &llm), 0);
    assert_int_equal(broker_store_commit(s), 0);
    broker_store_destroy(&s);

    s = s_open(fx);
    s_queues_t q = { 0 };
    assert_int_equal(broker_store_load_queues(s, s_collect_queue, &q), 0);
    assert_int_equal(q.n, 2);
    int l = strcmp(q.names[0], "llm") == 0 ? 0 : 1;
    assert_string_equal(q.names[l], "llm");
    assert_true(q.paused[l]);
    assert_true(q.rate[l] == 0.25);
    assert_int_equal(q.max_running[l], 20);
    assert_string_equal(q.names[1 - l], "images");
    assert_true(q.paused[1 - l]);
    assert_true(q.rate[1 - l] == 0);
    broker_store_destroy(&s);
}

typedef struct {
    int n;
    char ids[8][37];
} s_ids_t;

static int
s_collect_id(void *arg, const char *id)
{
    s_ids_t *o = arg;
    assert_true(o->n < 8);
    snprintf(o->ids[o->n++], 37, "%s", id);
    return 0;
}

static int
s_load_copy(void *arg, const broker_jobrec_t *r)
{
    return s_collect(arg, r);
}

typedef struct {
    int n;
    char ids[8][37];
    broker_finished_t rows[8];
    char category[8][32];
    char worker[8][32];
} s_fin_t;

static int
s_collect_finished(void *arg, const broker_finished_t *f)
{
    s_fin_t *o = arg;
    assert_true(o->n < 8);
    snprintf(o->ids[o->n], sizeof o->ids[0], "%s", f->id);
    snprintf(o->category[o->n], sizeof o->category[0], "%s",
             f->category ? f->category : "");
    snprintf(o->worker[o->n], sizeof o->worker[0], "%s",
             f->worker ? f->worker : "");
    o->rows[o->n] = *f;
    o->rows[o->n].id = o->ids[o->n]; /* the others are not looked at */
    o->n++;
    return 0;
}

/* Finished jobs by the time they finished: the window's bounds included,
 * paged with the cursor within one millisecond, unfinished jobs left out. */
static void
t_finished_by_time(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char ids[6][37];
    dv_failure_t f = s_failure(DV_CAT_HANDLER, "no");
    /* finished at 1000, 2000, 2000, 2000, 3000; ids[5] stays queued */
    const int64_t at[] = { 1000, 2000, 2000, 2000, 3000 };
    assert_int_equal(broker_store_begin(s), 0);
    for (int i = 0; i < 6; i++) {
        s_new_id(ids[i]);
        broker_jobrec_t r = s_rec(ids[i]);
        assert_int_equal(broker_store_insert(s, &r), 0);
        if (i == 1)
            assert_int_equal(
                broker_store_mark_running(s, ids[i], 1, "w1", 1500), 0);
        if (i < 5)
            assert_int_equal(broker_store_mark_finished(
                                 s, ids[i],
                                 i == 2 ? DV_STATE_DEAD : DV_STATE_SUCCEEDED, 1,
                                 NULL, 0, i == 2 ? &f : NULL, at[i]),
                             0);
    }
    assert_int_equal(broker_store_commit(s), 0);

    s_fin_t o = { 0 };
    assert_int_equal(
        broker_store_finished(s, 1000, 3000, NULL, 10, s_collect_finished, &o),
        5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(o.ids[i], ids[i]);
        assert_int_equal(o.rows[i].finished_ms, at[i]);
    }
    assert_int_equal(o.rows[2].state, DV_STATE_DEAD);
    assert_string_equal(o.category[2], "handler");
    assert_int_equal(o.rows[0].state, DV_STATE_SUCCEEDED);
    assert_int_equal(o.rows[1].started_ms, 1500);
    assert_string_equal(o.worker[1], "w1");

    /* Two at a time from 2000, then on after the second. */
    memset(&o, 0, sizeof o);
    assert_int_equal(
        broker_store_finished(s, 2000, 2500, NULL, 2, s_collect_finished, &o),
        2);
    assert_string_equal(o.ids[0], ids[1]);
    assert_string_equal(o.ids[1], ids[2]);
    memset(&o, 0, sizeof o);
    assert_int_equal(
        broker_store_finished(s, 2000, 2500, ids[2], 2, s_collect_finished, &o),
        1);
    assert_string_equal(o.ids[0], ids[3]);
    memset(&o, 0, sizeof o);
    assert_int_equal(
        broker_store_finished(s, 2000, 2500, ids[3], 2, s_collect_finished, &o),
        0);
    /* Nothing before, nothing after. */
    assert_int_equal(
        broker_store_finished(s, 0, 999, NULL, 2, s_collect_finished, &o), 0);
    assert_int_equal(
        broker_store_finished(s, 3001, 9999, NULL, 2, s_collect_finished, &o),
        0);
    broker_store_destroy(&s);
}

static void
t_list_and_load(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char ids[5][37];
    dv_failure_t f = s_failure(DV_CAT_HANDLER, "no");
    assert_int_equal(broker_store_begin(s), 0);
    for (int i = 0; i < 5; i++) {
        s_new_id(ids[i]);
        broker_jobrec_t r = s_rec(ids[i]);
        r.queue = i == 4 ? "other" : "default";
        assert_int_equal(broker_store_insert(s, &r), 0);
        if (i != 2) /* ids[2] stays queued */
            assert_int_equal(broker_store_mark_finished(
                                 s, ids[i],
                                 i == 3 ? DV_STATE_CANCELLED : DV_STATE_DEAD, 1,
                                 NULL, 0, &f, 1000 + i),
                             0);
    }
    assert_int_equal(broker_store_commit(s), 0);

    /* Dead jobs of one queue, oldest first, up to the limit. */
    s_ids_t o = { 0 };
    assert_int_equal(
        broker_store_list(s, "default", DV_STATE_DEAD, 10, s_collect_id, &o),
        2);
    assert_string_equal(o.ids[0], ids[0]);
    assert_string_equal(o.ids[1], ids[1]);
    memset(&o, 0, sizeof o);
    assert_int_equal(
        broker_store_list(s, "default", DV_STATE_DEAD, 1, s_collect_id, &o), 1);
    memset(&o, 0, sizeof o);
    assert_int_equal(broker_store_list(s, "default", DV_STATE_CANCELLED, 10,
                                       s_collect_id, &o),
                     1);
    assert_string_equal(o.ids[0], ids[3]);
    assert_int_equal(
        broker_store_list(s, "nowhere", DV_STATE_DEAD, 10, s_collect_id, &o),
        0);

    /* load gives the full record, finished or not. */
    s_copies_t c = { 0 };
    assert_int_equal(broker_store_load(s, ids[1], s_load_copy, &c), 1);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.items[0].rec.id, ids[1]);
    assert_int_equal(c.items[0].rec.state, DV_STATE_DEAD);
    assert_int_equal(c.items[0].rec.max_attempts, 5);
    assert_int_equal(broker_store_load(s, ids[2], s_load_copy, &c), 1);
    assert_int_equal(c.items[1].rec.state, DV_STATE_QUEUED);
    assert_int_equal(broker_store_load(s, "no-such-job", s_load_copy, &c), 0);
    s_copies_free(&c);
    int calls = 0;
    assert_int_equal(broker_store_load(s, ids[0], s_stop_after_one, &calls),
                     42);
    broker_store_destroy(&s);
}

static void
t_generation_and_probe(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    uint64_t g = 0;
    assert_int_equal(broker_store_next_generation(s, &g), 0);
    assert_int_equal(g, 1);
    assert_int_equal(broker_store_next_generation(s, &g), 0);
    assert_int_equal(g, 2);
    broker_store_destroy(&s);
    s = s_open(fx);
    assert_int_equal(broker_store_next_generation(s, &g), 0);
    assert_int_equal(g, 3);

    /* A probe writes, and changes no job. */
    char id[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    s_insert_committed(s, &r);
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_probe(s), 0);
    assert_int_equal(broker_store_commit(s), 0);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    s_assert_rec(&r, &c.items[0].rec);
    s_copies_free(&c);
    broker_store_destroy(&s);
    assert_int_equal(s_shell_int(fx, "SELECT value FROM meta "
                                     "WHERE name = 'generation'"),
                     3);
}

/* ---- API-key state ------------------------------------------------------ */

typedef struct {
    int n;
    char hash[4][16], id[4][32];
    broker_key_state_t k[4]; /* hash and id point into the arrays above */
} s_keys_t;

static int
s_collect_key(void *arg, const broker_key_state_t *k)
{
    s_keys_t *o = arg;
    assert_true(o->n < 4);
    snprintf(o->hash[o->n], sizeof o->hash[o->n], "%s", k->hash);
    snprintf(o->id[o->n], sizeof o->id[o->n], "%s", k->id);
    o->k[o->n] = *k;
    o->k[o->n].hash = o->hash[o->n];
    o->k[o->n].id = o->id[o->n];
    o->n++;
    return 0;
}

static int
s_stop_key(void *arg, const broker_key_state_t *k)
{
    (void)k;
    ++*(int *)arg;
    return 42;
}

/* The stored state of hash among o's, or fails. */
static const broker_key_state_t *
s_key_of(const s_keys_t *o, const char *hash)
{
    for (int i = 0; i < o->n; i++)
        if (strcmp(o->k[i].hash, hash) == 0)
            return &o->k[i];
    fail_msg("no key state for %s", hash);
    return NULL;
}

static void
s_assert_key(const broker_key_state_t *want, const broker_key_state_t *got)
{
    assert_string_equal(want->hash, got->hash);
    assert_string_equal(want->id, got->id);
    assert_int_equal(want->cool_until_ms, got->cool_until_ms);
    assert_int_equal(want->disabled_status, got->disabled_status);
    assert_int_equal(want->disabled_ms, got->disabled_ms);
    assert_int_equal(want->learned_limit, got->learned_limit);
    assert_int_equal(want->learned_ms, got->learned_ms);
    assert_int_equal(want->proven, got->proven);
    assert_int_equal(want->updated_ms, got->updated_ms);
}

static void
t_key_state(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    s_keys_t o = { 0 };
    assert_int_equal(broker_store_load_keys(s, s_collect_key, &o), 0);
    assert_int_equal(o.n, 0);

    broker_key_state_t a = {
        .hash = "0a1b2c3d",
        .id = "key-2",
        .cool_until_ms = 1700000060000,
        .learned_limit = 40,
        .learned_ms = 1700000000000,
        .proven = true,
        .updated_ms = 1700000000500,
    };
    broker_key_state_t b = {
        .hash = "ffee0011",
        .id = "az-west",
        .disabled_status = 401,
        .disabled_ms = 1700000001000,
        .updated_ms = 1700000001000,
    };
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_key(s, &a), 0);
    assert_int_equal(broker_store_set_key(s, &b), 0);
    assert_int_equal(broker_store_commit(s), 0);
    assert_int_equal(broker_store_load_keys(s, s_collect_key, &o), 0);
    assert_int_equal(o.n, 2);
    s_assert_key(&a, s_key_of(&o, a.hash));
    s_assert_key(&b, s_key_of(&o, b.hash));

    /* Set again under the same hash: replaced, not added (every column,
     * back to 0 too). */
    a.id = "key-2b";
    a.cool_until_ms = 0;
    a.disabled_status = 403;
    a.disabled_ms = 1700000002000;
    a.learned_limit = 25;
    a.learned_ms = 1700000002000;
    a.proven = false;
    a.updated_ms = 1700000002000;
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_key(s, &a), 0);
    assert_int_equal(broker_store_commit(s), 0);
    /* A rolled-back set leaves nothing behind. */
    broker_key_state_t c = { .hash = "12345678", .id = "gone" };
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_key(s, &c), 0);
    assert_int_equal(broker_store_rollback(s), 0);
    broker_store_destroy(&s);

    /* After a restart. */
    s = s_open(fx);
    memset(&o, 0, sizeof o);
    assert_int_equal(broker_store_load_keys(s, s_collect_key, &o), 0);
    assert_int_equal(o.n, 2);
    s_assert_key(&a, s_key_of(&o, a.hash));
    s_assert_key(&b, s_key_of(&o, b.hash));
    /* The callback's non-zero return stops the scan and is returned. */
    int calls = 0;
    assert_int_equal(broker_store_load_keys(s, s_stop_key, &calls), 42);
    assert_int_equal(calls, 1);
    broker_store_destroy(&s);

    /* What an operator sees. */
    char rows[512];
    s_shell_rows(fx,
                 "SELECT hash, id, cool_until_ms, disabled_status, "
                 "disabled_ms, learned_limit, learned_ms, proven, updated_ms "
                 "FROM api_keys ORDER BY hash",
                 rows, sizeof rows);
    assert_string_equal(rows, "0a1b2c3d|key-2b|0|403|1700000002000|25|"
                              "1700000002000|0|1700000002000\n"
                              "ffee0011|az-west|0|401|1700000001000|0|0|0|"
                              "1700000001000\n");
}

/* The writer applies a key state like any op, from its own copies. */
static void
t_key_state_writer(void **state)
{
    s_fx_t *fx = *state;
    broker_writer_t *w = broker_writer_new(s_open(fx));
    assert_non_null(w);
    char hash[16] = "0a1b2c3d", id[16] = "key-2";
    broker_key_state_t k = {
        .hash = hash,
        .id = id,
        .cool_until_ms = 1700000060000,
        .learned_limit = 40,
        .learned_ms = 1700000000000,
        .proven = true,
        .updated_ms = 1700000000500,
    };
    broker_wbatch_t b;
    broker_wbatch_init(&b);
    assert_int_equal(broker_wbatch_key(&b, &k), 0);
    /* The caller's strings may change once recorded. */
    memset(hash, 'x', sizeof hash - 1);
    memset(id, 'y', sizeof id - 1);
    broker_writer_push(w, &b);
    broker_writer_wait(w);
    assert_ptr_equal(broker_writer_pop_done(w), &b);
    assert_int_equal(b.rc, 0);
    broker_wbatch_free(&b);
    broker_writer_destroy(&w); /* closes the store */

    broker_store_t *s = s_open(fx);
    s_keys_t o = { 0 };
    assert_int_equal(broker_store_load_keys(s, s_collect_key, &o), 0);
    assert_int_equal(o.n, 1);
    k.hash = "0a1b2c3d";
    k.id = "key-2";
    s_assert_key(&k, &o.k[0]);
    broker_store_destroy(&s);
}

/* A store of schema version 3 (the tables of version 5 but api_keys and
 * the attempts' details and stderr) opens as version 5, with an empty
 * api_keys and its jobs as they were. */
static void
t_schema_v3_migrated(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char live[37], done[37];
    s_new_id(live);
    s_new_id(done);
    broker_jobrec_t r1 = s_rec(live), r2 = s_rec(done);
    r1.owner = "alice";
    r1.key = "k1";
    s_insert_committed(s, &r1);
    s_insert_committed(s, &r2);
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_mark_finished(s, done, DV_STATE_SUCCEEDED, 1,
                                                "\x01", 1, NULL, 1700000005000),
                     0);
    assert_int_equal(broker_store_commit(s), 0);
    broker_queue_settings_t q = { "llm", true, 2.5, 3 };
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_queue(s, &q), 0);
    assert_int_equal(broker_store_commit(s), 0);
    broker_store_destroy(&s);
    s_shell_exec(fx, s_backend == S_PG
                         ? "DROP TABLE api_keys; "
                           "ALTER TABLE attempts DROP COLUMN details; "
                           "ALTER TABLE attempts DROP COLUMN stderr; "
                           "DROP TABLE schedules; "
                           "ALTER TABLE jobs DROP COLUMN schedule; "
                           "UPDATE schema_version SET version = 3"
                         : "DROP TABLE api_keys; "
                           "ALTER TABLE attempts DROP COLUMN details; "
                           "ALTER TABLE attempts DROP COLUMN stderr; "
                           "DROP TABLE schedules; "
                           "ALTER TABLE jobs DROP COLUMN schedule; "
                           "PRAGMA user_version = 3");
    const char *version = s_backend == S_PG
                              ? "SELECT version FROM schema_version"
                              : "PRAGMA user_version";
    assert_int_equal(s_shell_int(fx, version), 3);

    s = s_open(fx);
    assert_int_equal(s_shell_int(fx, version), 6);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM api_keys"), 0);
    s_keys_t o = { 0 };
    assert_int_equal(broker_store_load_keys(s, s_collect_key, &o), 0);
    assert_int_equal(o.n, 0);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    s_assert_rec(&r1, &c.items[0].rec);
    s_copies_free(&c);
    s_view_t v;
    assert_int_equal(broker_store_get(s, done, s_view_cb, &v), 1);
    assert_int_equal(v.state, DV_STATE_SUCCEEDED);
    assert_int_equal(v.result_len, 1);
    char found[37];
    assert_int_equal(broker_store_find_key(s, "alice", "k1", found), 1);
    assert_string_equal(found, live);
    s_queues_t qs = { 0 };
    assert_int_equal(broker_store_load_queues(s, s_collect_queue, &qs), 0);
    assert_int_equal(qs.n, 1);
    assert_true(qs.paused[0]);
    /* The new table takes writes at once. */
    broker_key_state_t k = { .hash = "0a1b2c3d", .id = "key-2", .proven = 1 };
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_key(s, &k), 0);
    assert_int_equal(broker_store_commit(s), 0);
    broker_store_destroy(&s);

    /* Opened again: already version 5, the key state kept. */
    s = s_open(fx);
    assert_int_equal(broker_store_load_keys(s, s_collect_key, &o), 0);
    assert_int_equal(o.n, 1);
    s_assert_key(&k, &o.k[0]);
    broker_store_destroy(&s);
}

/* A store of schema version 4 (attempts without details and stderr)
 * opens as version 5: its attempts read back without them, and a new
 * attempt keeps both. */
static void
t_schema_v4_migrated(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char id[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    s_insert_committed(s, &r);
    dv_failure_t f1 = s_failure(DV_CAT_HANDLER, "ValueError: no prompt");
    f1.retryable = true;
    broker_attempt_t a1 = { id, 1, "w1", 100, 200, DV_STATE_FAILED, &f1 };
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_add_attempt(s, &a1), 0);
    assert_int_equal(broker_store_commit(s), 0);
    broker_store_destroy(&s);
    s_shell_exec(fx, s_backend == S_PG
                         ? "ALTER TABLE attempts DROP COLUMN details; "
                           "ALTER TABLE attempts DROP COLUMN stderr; "
                           "DROP TABLE schedules; "
                           "ALTER TABLE jobs DROP COLUMN schedule; "
                           "UPDATE schema_version SET version = 4"
                         : "ALTER TABLE attempts DROP COLUMN details; "
                           "ALTER TABLE attempts DROP COLUMN stderr; "
                           "DROP TABLE schedules; "
                           "ALTER TABLE jobs DROP COLUMN schedule; "
                           "PRAGMA user_version = 4");
    const char *version = s_backend == S_PG
                              ? "SELECT version FROM schema_version"
                              : "PRAGMA user_version";
    assert_int_equal(s_shell_int(fx, version), 4);

    s = s_open(fx);
    assert_int_equal(s_shell_int(fx, version), 6);
    s_arows_t o = { 0 };
    assert_int_equal(broker_store_attempts(s, id, 100, s_collect_attempt, &o),
                     1);
    s_assert_attempt(&a1, &o.a[0]);
    s_arows_free(&o);
    dv_failure_t f2 = s_failure(DV_CAT_HANDLER, "ValueError: no prompt");
    f2.details = dv_str("Traceback (most recent call last):\n"
                        "ValueError: no prompt");
    f2.stderr_tail = dv_str("loading model\n");
    broker_attempt_t a2 = { id, 2, "w2", 300, 400, DV_STATE_FAILED, &f2 };
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_add_attempt(s, &a2), 0);
    assert_int_equal(broker_store_commit(s), 0);
    broker_store_destroy(&s);

    /* Opened again: already version 5, both attempts as written. */
    s = s_open(fx);
    assert_int_equal(s_shell_int(fx, version), 6);
    assert_int_equal(broker_store_attempts(s, id, 100, s_collect_attempt, &o),
                     2);
    s_assert_attempt(&a1, &o.a[0]);
    s_assert_attempt(&a2, &o.a[1]);
    s_arows_free(&o);
    broker_store_destroy(&s);
}

/* ---- PostgreSQL only -------------------------------------------------- */

static void
t_pg_url_forms(void **state)
{
    s_fx_t *fx = *state;
    char url[1500], err[1024];
    /* postgresql://... as the fixture gives it, and postgres://... */
    const char *rest = strstr(fx->path, "://");
    assert_non_null(rest);
    const char *forms[] = { "postgresql%s", "postgres%s", "PostgreSQL%s" };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        snprintf(url, sizeof url, forms[i], rest);
        err[0] = '\0';
        broker_store_t *s = broker_store_open(url, NULL, err, sizeof err);
        if (!s)
            fail_msg("%s: %s", url, err);
        assert_string_equal(broker_store_backend(s), "postgres");
        broker_store_destroy(&s);
    }
    assert_int_equal(s_shell_int(fx, "SELECT version FROM schema_version"), 6);

    /* The store names itself to the server, unless the URL does. */
    broker_store_t *s = s_open(fx);
    snprintf(url, sizeof url, "%s&application_name=drover-test", fx->path);
    broker_store_t *named = broker_store_open(url, NULL, err, sizeof err);
    assert_non_null(named);
    char rows[128];
    s_shell_rows(fx,
                 "SELECT application_name, count(*) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND application_name "
                 "LIKE 'drover%' GROUP BY 1 ORDER BY 1",
                 rows, sizeof rows);
    assert_string_equal(rows, "drover|1\ndrover-test|1\n");
    broker_store_destroy(&named);
    broker_store_destroy(&s);

    /* Nothing listens there: a clear error, and never the password. */
    const char *bad[] = {
        "postgresql://drover:s3cret-pw@127.0.0.1:1/drover",
        "postgres:///drover?host=/nonexistent&port=1&password=s3cret-pw",
        "postgresql://drover:s3cret%2dpw@127.0.0.1:1/drover",
        "postgresql:///drover?password=s3cret%2Dpw&host=/nonexistent",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_null(broker_store_open(bad[i], NULL, err, sizeof err));
        if (!strstr(err, "cannot connect") || strstr(err, "s3cret") ||
            !strstr(err, "***"))
            fail_msg("'%s': got '%s'", bad[i], err);
    }
    broker_store_opts_t opts = { (broker_sync_t)7 };
    assert_null(broker_store_open(fx->path, &opts, err, sizeof err));
    assert_non_null(strstr(err, "unknown sync mode"));
}

/* The tables of schema version 1 as they would be in PostgreSQL: no
 * jobs.owner, idempotency keys unique across owners, no meta table. */
static const char s_pg_schema_v1[] =
    "CREATE TABLE jobs (id TEXT PRIMARY KEY, queue TEXT NOT NULL, "
    "type TEXT NOT NULL, state TEXT NOT NULL, priority INTEGER NOT NULL, "
    "payload BYTEA, key TEXT, batch TEXT, trace TEXT, "
    "created_at BIGINT NOT NULL, run_at BIGINT NOT NULL, "
    "attempt INTEGER NOT NULL, max_attempts INTEGER NOT NULL, "
    "timeout_ms BIGINT NOT NULL, backoff_base_ms BIGINT, "
    "backoff_factor DOUBLE PRECISION, backoff_cap_ms BIGINT, "
    "backoff_jitter INTEGER, result_ttl_ms BIGINT NOT NULL, worker TEXT, "
    "started_at BIGINT, finished_at BIGINT, expires_at BIGINT, "
    "result BYTEA, category TEXT, error TEXT, retry_after_ms BIGINT, "
    "exit_code INTEGER, signal INTEGER, http_status INTEGER);"
    "CREATE UNIQUE INDEX jobs_key ON jobs(key) WHERE key IS NOT NULL;"
    "CREATE INDEX jobs_live ON jobs(id) WHERE finished_at IS NULL;"
    "CREATE TABLE attempts (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, "
    "worker TEXT, started_at BIGINT, finished_at BIGINT, "
    "outcome TEXT NOT NULL, category TEXT, message TEXT, retryable INTEGER, "
    "retry_after_ms BIGINT, exit_code INTEGER, signal INTEGER, "
    "http_status INTEGER, key_id TEXT, PRIMARY KEY (job_id, attempt));"
    "CREATE TABLE queues (name TEXT PRIMARY KEY, "
    "paused INTEGER NOT NULL DEFAULT 0, "
    "rate DOUBLE PRECISION NOT NULL DEFAULT 0, "
    "max_running INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE schema_version (version INTEGER NOT NULL);"
    "INSERT INTO schema_version VALUES (1);";

static void
t_pg_schema_v1_migrated(void **state)
{
    s_fx_t *fx = *state;
    s_shell_exec(fx, s_pg_schema_v1);
    char live[37], sql[1024];
    s_new_id(live);
    snprintf(sql, sizeof sql,
             "INSERT INTO jobs (id, queue, type, state, priority, created_at, "
             "run_at, attempt, max_attempts, timeout_ms, result_ttl_ms, key) "
             "VALUES ('%s', 'default', 'noop', 'queued', 5, 1, 1, 0, 5, 0, "
             "1000, 'k1')",
             live);
    s_shell_exec(fx, sql);

    broker_store_t *s = s_open(fx);
    assert_int_equal(s_shell_int(fx, "SELECT version FROM schema_version"), 6);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM "
                                     "information_schema.columns WHERE "
                                     "table_name = 'attempts' AND "
                                     "column_name IN ('details', 'stderr')"),
                     2);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM pg_indexes "
                                     "WHERE indexname = 'jobs_key'"),
                     0);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM pg_indexes "
                                     "WHERE indexname IN ('jobs_owner_key', "
                                     "'jobs_expires', 'jobs_batch_id', "
                                     "'jobs_dead')"),
                     4);
    /* Covered by jobs_batch_id, whose first column it was. */
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM pg_indexes "
                                     "WHERE indexname = 'jobs_batch'"),
                     0);
    /* Replaced by jobs_dead, which leaves succeeded jobs out. */
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM pg_indexes "
                                     "WHERE indexname = 'jobs_queue_state'"),
                     0);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM jobs "
                                     "WHERE owner IS NULL"),
                     1);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM api_keys"), 0);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.items[0].rec.id, live);
    assert_null(c.items[0].rec.owner);
    s_copies_free(&c);
    /* Keys are per owner now: alice may use k1 as well. */
    char mine[37], found[37];
    s_new_id(mine);
    broker_jobrec_t r = s_rec(mine);
    r.owner = "alice";
    r.key = "k1";
    s_insert_committed(s, &r);
    assert_int_equal(broker_store_find_key(s, "alice", "k1", found), 1);
    assert_string_equal(found, mine);
    assert_int_equal(broker_store_find_key(s, NULL, "k1", found), 1);
    assert_string_equal(found, live);
    uint64_t g;
    assert_int_equal(broker_store_next_generation(s, &g), 0);
    assert_int_equal(g, 1);
    broker_store_destroy(&s);

    /* Opened again: already version 5, nothing to migrate. */
    s = s_open(fx);
    s_replay(s, &c);
    assert_int_equal(c.n, 2);
    s_copies_free(&c);
    broker_store_destroy(&s);
}

static void
t_pg_schema_refused(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    broker_store_destroy(&s);
    const struct {
        const char *sql, *want;
    } cases[] = {
        { "UPDATE schema_version SET version = 0", "holds no valid version" },
        { "DELETE FROM schema_version", "holds no valid version" },
        { "INSERT INTO schema_version VALUES (3), (3)",
          "holds no valid version" },
        { "INSERT INTO schema_version VALUES (17)",
          "postgres store: schema version 17 is newer than this drover "
          "understands (6)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_shell_exec(fx, cases[i].sql);
        char err[1024] = "";
        assert_null(broker_store_open(fx->path, NULL, err, sizeof err));
        if (!strstr(err, cases[i].want))
            fail_msg("after '%s': got '%s'", cases[i].sql, err);
        /* Refused, nothing changed. */
        s_shell_exec(fx, "DELETE FROM schema_version");
    }
    s_shell_exec(fx, "INSERT INTO schema_version VALUES (6)");
    s = s_open(fx);
    broker_store_destroy(&s);
}

/* Ends every other session on the test's database, as a failover or an
 * administrator would, and waits (up to 5 s) until they are gone. */
static void
s_pg_terminate(const s_fx_t *fx)
{
    char rows[64];
    s_shell_rows(fx,
                 "SELECT count(pg_terminate_backend(pid, 5000)) > 0 "
                 "FROM pg_stat_activity WHERE datname = current_database() "
                 "AND pid <> pg_backend_pid()",
                 rows, sizeof rows);
    assert_string_equal(rows, "t\n");
}

/* The same, from the maintenance database (the test's own may refuse
 * connections). */
static void
s_pg_terminate_db(const s_fx_t *fx)
{
    char sql[256], err[512];
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
             "WHERE datname = '%s'",
             fx->db);
    if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0)
        fail_msg("%s: %s", sql, err);
}

static void
t_pg_connection_lost(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char a[37], b[37], c[37], d[37];
    s_new_id(a);
    s_new_id(b);
    s_new_id(c);
    s_new_id(d);
    broker_jobrec_t ra = s_rec(a), rb = s_rec(b), rc = s_rec(c), rd = s_rec(d);
    s_insert_committed(s, &ra);

    /* Lost between groups: the group in flight fails as transient... */
    s_pg_terminate(fx);
    int brc = broker_store_begin(s);
    if (brc == 0) {
        s_assert_write(broker_store_insert(s, &rb), DV_ETRANSIENT);
        assert_int_equal(broker_store_commit(s), DV_ETRANSIENT);
    } else {
        assert_int_equal(brc, DV_ETRANSIENT);
    }
    /* ...and the next one reconnects and goes through. */
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &rb), 0);
    assert_int_equal(broker_store_commit(s), 0);

    /* Lost before a read: transient, then the next read reconnects. */
    s_pg_terminate(fx);
    s_view_t v;
    assert_int_equal(broker_store_get(s, a, s_view_cb, &v), DV_ETRANSIENT);
    assert_int_equal(broker_store_get(s, a, s_view_cb, &v), 1);

    /* Lost in the middle of a group: the reads and the commit fail. */
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &rc), 0);
    s_pg_terminate(fx);
    s_assert_write(broker_store_insert(s, &rd), DV_ETRANSIENT);
    char found[37];
    assert_int_equal(broker_store_find_key(s, NULL, "none", found),
                     DV_ETRANSIENT);
    assert_int_equal(broker_store_commit(s), DV_ETRANSIENT);
    assert_false(broker_store_in_group(s));
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &rd), 0);
    assert_int_equal(broker_store_commit(s), 0);

    /* What was acknowledged is there; what failed is not. */
    s_copies_t cp = { 0 };
    s_replay(s, &cp);
    assert_int_equal(cp.n, 3);
    assert_string_equal(cp.items[0].rec.id, a);
    assert_string_equal(cp.items[1].rec.id, b);
    assert_string_equal(cp.items[2].rec.id, d);
    s_copies_free(&cp);
    broker_store_destroy(&s);
}

typedef struct {
    size_t len;
    unsigned char bytes[1024];
} s_bytes_t;

static void
s_result_cb(void *arg, const broker_jobview_t *v)
{
    s_bytes_t *o = arg;
    assert_true(v->result_len <= sizeof o->bytes);
    o->len = v->result_len;
    memcpy(o->bytes, v->result, v->result_len);
}

/* Payloads and results are bytes, NULs included, both ways. */
static void
t_pg_binary(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    unsigned char payload[512], result[260];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (unsigned char)(i % 256); /* starts with a NUL */
    for (size_t i = 0; i < sizeof result; i++)
        result[i] = (unsigned char)(i % 3 == 0 ? 0 : 255 - i % 256);
    char id[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    r.payload = payload;
    r.payload_len = sizeof payload;
    s_insert_committed(s, &r);

    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    s_assert_rec(&r, &c.items[0].rec);
    s_copies_free(&c);
    assert_int_equal(broker_store_load(s, id, s_load_copy, &c), 1);
    s_assert_rec(&r, &c.items[0].rec);
    s_copies_free(&c);

    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_mark_finished(s, id, DV_STATE_SUCCEEDED, 1,
                                                result, sizeof result, NULL,
                                                1000),
                     0);
    /* Read back inside the group, then after it. */
    for (int pass = 0; pass < 2; pass++) {
        s_bytes_t got = { 0 };
        assert_int_equal(broker_store_get(s, id, s_result_cb, &got), 1);
        assert_int_equal(got.len, sizeof result);
        assert_memory_equal(got.bytes, result, sizeof result);
        if (pass == 0)
            assert_int_equal(broker_store_commit(s), 0);
    }
    broker_store_destroy(&s);
    assert_int_equal(s_shell_int(fx,
                                 "SELECT octet_length(payload) FROM jobs "
                                 "WHERE id = '%s'",
                                 id),
                     sizeof payload);
    assert_int_equal(s_shell_int(fx,
                                 "SELECT octet_length(result) FROM jobs "
                                 "WHERE id = '%s'",
                                 id),
                     sizeof result);
    /* The bytes as PostgreSQL itself reads them. */
    char rows[128], sql[256];
    snprintf(sql, sizeof sql,
             "SELECT get_byte(payload, 0), get_byte(payload, 255), "
             "get_byte(payload, 256), get_byte(result, 0), "
             "get_byte(result, 1) FROM jobs WHERE id = '%s'",
             id);
    s_shell_rows(fx, sql, rows, sizeof rows);
    assert_string_equal(rows, "0|255|0|0|254\n");
}

/* Fencing (a takeover of the store by another broker of the group): a
 * store fenced with its generation commits while the generation is its
 * own; once another broker has counted the next one, every group fails
 * whole with DV_EFENCED, and nothing of it is stored. An unfenced store is
 * not affected. */
static void
t_pg_fenced(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *old = s_open(fx), *other = s_open(fx);
    uint64_t g1 = 0, g2 = 0;
    assert_int_equal(broker_store_next_generation(old, &g1), 0);
    assert_int_equal(broker_store_fence(old, g1), 0);
    char a[37], b[37], c[37];
    s_new_id(a);
    s_new_id(b);
    s_new_id(c);
    broker_jobrec_t ra = s_rec(a), rb = s_rec(b), rc = s_rec(c);
    s_insert_committed(old, &ra);

    /* The takeover. */
    assert_int_equal(broker_store_next_generation(other, &g2), 0);
    assert_true(g2 > g1);
    assert_int_equal(broker_store_fence(other, g2), 0);

    assert_int_equal(broker_store_begin(old), 0);
    broker_store_insert(old, &rb);
    assert_int_equal(broker_store_commit(old), DV_EFENCED);
    assert_int_equal(
        s_shell_int(fx, "SELECT count(*) FROM jobs WHERE id = '%s'", b), 0);
    /* Still fenced the next time. */
    assert_int_equal(broker_store_begin(old), 0);
    broker_store_mark_running(old, a, 1, "w", 5);
    assert_int_equal(broker_store_commit(old), DV_EFENCED);
    /* The new active broker commits. */
    s_insert_committed(other, &rc);
    assert_int_equal(
        s_shell_int(fx, "SELECT count(*) FROM jobs WHERE id = '%s'", c), 1);
    assert_string_equal(dv_strerror(DV_EFENCED),
                        "fenced: another broker took the store over");
    broker_store_destroy(&old);
    broker_store_destroy(&other);
}

/* A write that fails inside a group makes a later read in the same group
 * fail too (the server skips the rest of the pipeline), and the group's
 * commit report the write's error. */
static void
t_pg_read_after_failed_write(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char a[37], b[37], found[37];
    s_new_id(a);
    s_new_id(b);
    broker_jobrec_t ra = s_rec(a), rb = s_rec(b);
    ra.key = rb.key = "same";
    s_insert_committed(s, &ra);
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &rb), 0);
    assert_int_equal(broker_store_find_key(s, NULL, "same", found), DV_EIO);
    s_view_t v;
    assert_int_equal(broker_store_get(s, a, s_view_cb, &v), DV_EIO);
    assert_int_equal(broker_store_commit(s), DV_EIO);
    /* The connection is usable again at once. */
    assert_int_equal(broker_store_find_key(s, NULL, "same", found), 1);
    assert_string_equal(found, a);
    assert_int_equal(broker_store_begin(s), 0);
    rb.key = "other";
    assert_int_equal(broker_store_insert(s, &rb), 0);
    assert_int_equal(broker_store_find_key(s, NULL, "other", found), 1);
    assert_string_equal(found, b);
    assert_int_equal(broker_store_get(s, b, s_view_cb, &v), 1);
    assert_int_equal(broker_store_rollback(s), 0);
    assert_int_equal(broker_store_get(s, b, s_view_cb, &v), 0);
    broker_store_destroy(&s);
}

/* Failure texts are bytes from a handler: invalid UTF-8 or a NUL must not
 * fail the group (PostgreSQL refuses such text); each bad byte is stored
 * as U+FFFD. */
static void
t_pg_bad_text(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char id[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    s_insert_committed(s, &r);
    static const char msg[] = "bad \xff\xfe byte, NUL \0 here, ok \xc3\xa9";
    dv_failure_t f = s_failure(DV_CAT_HANDLER, "");
    f.message = (dv_str_t){ msg, sizeof msg - 1 };
    f.key_id = (dv_str_t){ "k\xc0", 2 };
    broker_attempt_t a = { id, 1, "w\xe2\x82", 1, 2, DV_STATE_FAILED, &f };
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_add_attempt(s, &a), 0);
    assert_int_equal(
        broker_store_mark_finished(s, id, DV_STATE_DEAD, 1, NULL, 0, &f, 5), 0);
    assert_int_equal(broker_store_commit(s), 0);
    s_view_t v;
    assert_int_equal(broker_store_get(s, id, s_view_cb, &v), 1);
    assert_string_equal(v.error, "bad \xef\xbf\xbd\xef\xbf\xbd byte, NUL "
                                 "\xef\xbf\xbd here, ok \xc3\xa9");
    broker_store_destroy(&s);
    char rows[256];
    s_shell_rows(fx, "SELECT worker, key_id FROM attempts", rows, sizeof rows);
    assert_string_equal(rows, "w\xef\xbf\xbd\xef\xbf\xbd|k\xef\xbf\xbd\n");
}

/* The database refuses connections for a while (as a server that is down
 * or restarting would): every call fails as transient, quickly, and the
 * store comes back by itself once connections are allowed again. */
static void
t_pg_reconnect_refused(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char id[37], sql[128], err[512];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    s_insert_committed(s, &r);

    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS false",
             fx->db);
    if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0)
        fail_msg("%s: %s", sql, err);
    s_pg_terminate_db(fx);
    s_view_t v;
    /* The one that finds the connection gone, the one whose reconnect is
     * refused, and one within the second after that (not tried). */
    for (int i = 0; i < 3; i++)
        assert_int_equal(broker_store_get(s, id, s_view_cb, &v), DV_ETRANSIENT);
    assert_int_equal(broker_store_begin(s), DV_ETRANSIENT);
    assert_false(broker_store_in_group(s));

    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true",
             fx->db);
    if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0)
        fail_msg("%s: %s", sql, err);
    /* Polled with a deadline: the store tries again once a second. */
    struct timespec t0, t, nap = { 0, 20 * 1000 * 1000 };
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc;
    while ((rc = broker_store_get(s, id, s_view_cb, &v)) == DV_ETRANSIENT) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 10)
            fail_msg("no reconnect within 10 s");
        nanosleep(&nap, NULL);
    }
    assert_int_equal(rc, 1);
    assert_int_equal(v.state, DV_STATE_QUEUED);
    broker_store_destroy(&s);
}

/* The server's disk fills up (the jobs table on a small tmpfs, through
 * a tablespace): the commit fails with DV_ENOSPC (SQLSTATE 53100), the
 * group is rolled back, and once there is room the same store commits
 * again. Needs root for the mount (CI runs as root); skipped otherwise. */
static void
t_pg_disk_full(void **state)
{
    s_fx_t *fx = *state;
    struct passwd *pw = getpwnam("postgres");
    if (geteuid() != 0 || !pw) {
        print_message("t_pg_disk_full: skipped: mounting a tmpfs needs root "
                      "(CI runs as root)\n");
        skip();
    }
    snprintf(fx->mnt, sizeof fx->mnt, "%s/space", fx->dir);
    if (mkdir(fx->mnt, 0700) != 0 ||
        mount("tmpfs", fx->mnt, "tmpfs", 0, "size=1m,mode=0700") != 0) {
        int e = errno;
        rmdir(fx->mnt);
        fx->mnt[0] = '\0';
        fail_msg("cannot mount a tmpfs: %s", strerror(e));
    }
    assert_int_equal(chown(fx->mnt, pw->pw_uid, pw->pw_gid), 0);
    assert_int_equal(chmod(fx->dir, 0711), 0);
    char sql[1300], err[512];
    snprintf(fx->space, sizeof fx->space, "%s_space", fx->db);
    snprintf(sql, sizeof sql, "CREATE TABLESPACE %s LOCATION '%s'", fx->space,
             fx->mnt);
    if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0) {
        fx->space[0] = '\0';
        fail_msg("%s: %s", sql, err);
    }

    broker_store_t *s = s_open_sync(fx, BROKER_SYNC_FULL);
    char first[37];
    s_new_id(first);
    broker_jobrec_t r = s_rec(first);
    s_insert_committed(s, &r);
    snprintf(sql, sizeof sql, "ALTER TABLE jobs SET TABLESPACE %s", fx->space);
    s_shell_exec(fx, sql);

    /* Payloads that do not compress, 32 KiB each, 8 to a group, until a
     * commit fails: 1 MiB holds a few groups. */
    unsigned char *payload = malloc(32768);
    assert_non_null(payload);
    uint32_t x = 2463534242u;
    int rc = 0, groups = 0, committed = 1;
    while (rc == 0 && groups < 100) {
        assert_int_equal(broker_store_begin(s), 0);
        for (int i = 0; i < 8; i++) {
            for (size_t j = 0; j < 32768; j++) {
                x ^= x << 13, x ^= x >> 17, x ^= x << 5;
                payload[j] = (unsigned char)x;
            }
            char id[37];
            s_new_id(id);
            broker_jobrec_t big = s_rec(id);
            big.payload = payload;
            big.payload_len = 32768;
            s_assert_write(broker_store_insert(s, &big), DV_ENOSPC);
        }
        rc = broker_store_commit(s);
        if (rc == 0)
            committed += 8;
        groups++;
    }
    free(payload);
    assert_int_equal(rc, DV_ENOSPC);
    assert_false(broker_store_in_group(s));
    print_message("disk full after %d groups, %d jobs committed\n", groups,
                  committed);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM jobs"), committed);

    /* Room again: the same store writes as before. */
    assert_int_equal(
        mount(NULL, fx->mnt, NULL, MS_REMOUNT, "size=64m,mode=0700"), 0);
    char again[37];
    s_new_id(again);
    broker_jobrec_t ra = s_rec(again);
    s_insert_committed(s, &ra);
    s_view_t v;
    assert_int_equal(broker_store_get(s, again, s_view_cb, &v), 1);
    broker_store_destroy(&s);
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM jobs"),
                     committed + 1);
    /* The jobs table off the tablespace, so it can go at teardown. */
    s_shell_exec(fx, "ALTER TABLE jobs SET TABLESPACE pg_default");
}

/* ---- schedules ------------------------------------------------------------ */

typedef struct {
    int n;
    char names[4][32];
    char owners[4][32];
    int64_t next_ms[4], firings[4];
    bool skip[4], paused[4];
    char last_job[4][40];
    size_t payload_len[4];
} s_scheds_t;

static int
s_collect_sched(void *arg, const broker_schedule_rec_t *r)
{
    s_scheds_t *o = arg;
    if (o->n >= 4)
        return -1;
    int i = o->n++;
    snprintf(o->names[i], sizeof o->names[i], "%s", r->name);
    snprintf(o->owners[i], sizeof o->owners[i], "%s",
             r->owner ? r->owner : "(none)");
    snprintf(o->last_job[i], sizeof o->last_job[i], "%s",
             r->last_job ? r->last_job : "(none)");
    o->next_ms[i] = r->next_ms;
    o->firings[i] = r->firings;
    o->skip[i] = r->catch_up_skip;
    o->paused[i] = r->paused;
    o->payload_len[i] = r->payload_len;
    return 0;
}

/* A schedule's row is written whole (again and again: the same values),
 * read back, replaced and deleted; a job keeps the schedule that fired
 * it. */
static void
t_schedules(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    broker_schedule_rec_t a = {
        .name = "tick",
        .every_ms = 1000,
        .anchor_ms = 1700000000000,
        .queue = "default",
        .type = "noop",
        .payload = "\x81\xa1x\x01",
        .payload_len = 4,
        .priority = 5,
        .created_ms = 1700000000000,
        .next_ms = 1700000001000,
    };
    broker_schedule_rec_t b = {
        .owner = "alice",
        .name = "nightly",
        .cron = "0 3 * * *",
        .tz = "Europe/Berlin",
        .queue = "reports",
        .type = "report",
        .catch_up_skip = true,
        .paused = true,
    };
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_schedule(s, &a), 0);
    assert_int_equal(broker_store_set_schedule(s, &a), 0);
    assert_int_equal(broker_store_set_schedule(s, &b), 0);
    assert_int_equal(broker_store_commit(s), 0);
    s_scheds_t o = { 0 };
    assert_int_equal(broker_store_load_schedules(s, s_collect_sched, &o), 0);
    assert_int_equal(o.n, 2);
    /* Ordered by (owner, name): '' before 'alice'. */
    assert_string_equal(o.names[0], "tick");
    assert_string_equal(o.owners[0], "(none)");
    assert_int_equal(o.next_ms[0], 1700000001000);
    assert_int_equal(o.payload_len[0], 4);
    assert_false(o.skip[0]);
    assert_string_equal(o.names[1], "nightly");
    assert_string_equal(o.owners[1], "alice");
    assert_true(o.skip[1]);
    assert_true(o.paused[1]);
    assert_int_equal(o.payload_len[1], 0);

    /* A firing advances it: the row replaced. */
    a.next_ms = 1700000002000;
    a.last_fire_ms = 1700000001000;
    a.last_job = "01a244d0-f888-7fe4-85e6-7768cb435ea0";
    a.firings = 1;
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_set_schedule(s, &a), 0);
    assert_int_equal(broker_store_delete_schedule(s, "alice", "nightly"), 0);
    assert_int_equal(broker_store_delete_schedule(s, NULL, "nothing"), 0);
    assert_int_equal(broker_store_commit(s), 0);
    memset(&o, 0, sizeof o);
    assert_int_equal(broker_store_load_schedules(s, s_collect_sched, &o), 0);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.next_ms[0], 1700000002000);
    assert_int_equal(o.firings[0], 1);
    assert_string_equal(o.last_job[0], a.last_job);

    /* jobs.schedule */
    char id[37];
    s_new_id(id);
    broker_jobrec_t r = s_rec(id);
    r.schedule = "tick";
    s_insert_committed(s, &r);
    s_copies_t c = { 0 };
    s_replay(s, &c);
    assert_int_equal(c.n, 1);
    s_assert_rec(&r, &c.items[0].rec);
    s_copies_free(&c);
    broker_store_destroy(&s);
}

typedef struct {
    const char *url;
    int ok;
    char err[512];
} s_opener_t;

static void *
s_open_thread(void *arg)
{
    s_opener_t *o = arg;
    broker_store_t *s = broker_store_open(o->url, NULL, o->err, sizeof o->err);
    o->ok = s != NULL;
    broker_store_destroy(&s);
    return NULL;
}

/* Brokers that start at once on an empty database (a broker and its
 * standby, the writer's and the loop's connections) all open it: the
 * schema is made once, under the advisory lock. */
static void
t_pg_open_race(void **state)
{
    s_fx_t *fx = *state;
    enum { N = 6 };
    pthread_t th[N];
    s_opener_t o[N];
    for (int i = 0; i < N; i++) {
        o[i] = (s_opener_t){ .url = fx->path };
        assert_int_equal(pthread_create(&th[i], NULL, s_open_thread, &o[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (!o[i].ok)
            fail_msg("opener %d: %s", i, o[i].err);
    }
    assert_int_equal(s_shell_int(fx, "SELECT count(*) FROM schema_version"), 1);
    assert_int_equal(s_shell_int(fx, "SELECT version FROM schema_version"), 6);
}

/* ---- job dependencies: table deps --------------------------------------- */

typedef struct {
    int n;
    char job[4][37], after[4][37];
    bool any[4];
    dv_state_t state[4];
} s_deps_seen_t;

static int
s_deps_replay_cb(void *arg, const char *job_id, const char *after_id, bool any,
                 dv_state_t after_state)
{
    s_deps_seen_t *c = arg;
    if (c->n < 4) {
        snprintf(c->job[c->n], 37, "%s", job_id);
        snprintf(c->after[c->n], 37, "%s", after_id);
        c->any[c->n] = any;
        c->state[c->n] = after_state;
    }
    c->n++;
    return 0;
}

static int
s_deps_of_cb(void *arg, const char *id, bool any, dv_state_t state)
{
    s_deps_seen_t *c = arg;
    if (c->n < 4) {
        snprintf(c->after[c->n], 37, "%s", id);
        c->any[c->n] = any;
        c->state[c->n] = state;
    }
    c->n++;
    return 0;
}

static int
s_count_replayed(void *arg, const broker_jobrec_t *rec)
{
    int *n = arg;
    if (rec->state == DV_STATE_WAITING)
        (*n)++;
    return 0;
}

static void
t_deps(void **state)
{
    s_fx_t *fx = *state;
    broker_store_t *s = s_open(fx);
    char a[37], b[37], gone[37];
    s_new_id(a);
    s_new_id(b);
    s_new_id(gone);
    broker_jobrec_t ra = s_rec(a), rb = s_rec(b);
    broker_dep_t deps[2] = { { "", false }, { "", true } };
    memcpy(deps[0].id, a, 37);
    memcpy(deps[1].id, gone, 37);
    rb.state = DV_STATE_WAITING;
    rb.deps = deps;
    rb.ndeps = 2;
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_insert(s, &ra), 0);
    assert_int_equal(broker_store_insert(s, &rb), 0);
    assert_int_equal(broker_store_commit(s), 0);

    /* Replayed as waiting, with its two edges and their states. */
    int waiting = 0;
    assert_int_equal(broker_store_replay(s, s_count_replayed, &waiting), 0);
    assert_int_equal(waiting, 1);
    s_deps_seen_t r = { 0 };
    assert_int_equal(broker_store_deps_replay(s, s_deps_replay_cb, &r), 0);
    assert_int_equal(r.n, 2);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(r.job[i], b);
        bool is_a = !strcmp(r.after[i], a);
        assert_true(is_a || !strcmp(r.after[i], gone));
        assert_int_equal(r.any[i], !is_a);
        assert_int_equal(r.state[i], is_a ? DV_STATE_QUEUED : DV_STATE_UNKNOWN);
    }
    s_deps_seen_t f = { 0 }, w = { 0 };
    assert_int_equal(broker_store_deps_of(s, b, false, 100, s_deps_of_cb, &f),
                     2);
    assert_int_equal(broker_store_deps_of(s, a, true, 100, s_deps_of_cb, &w),
                     1);
    assert_string_equal(w.after[0], b);
    assert_int_equal(w.state[0], DV_STATE_WAITING);
    assert_false(w.any[0]);
    memset(&f, 0, sizeof f);
    assert_int_equal(broker_store_deps_of(s, b, false, 1, s_deps_of_cb, &f), 1);

    /* Released, then finished and expired: its rows go with it. */
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_mark_waiting(s, b, DV_STATE_QUEUED,
                                               1700000000000, 0, NULL),
                     0);
    assert_int_equal(broker_store_commit(s), 0);
    memset(&r, 0, sizeof r);
    assert_int_equal(broker_store_deps_replay(s, s_deps_replay_cb, &r), 0);
    assert_int_equal(r.n, 0); /* not waiting any more */
    assert_int_equal(broker_store_begin(s), 0);
    assert_int_equal(broker_store_mark_finished(s, b, DV_STATE_SUCCEEDED, 1,
                                                NULL, 0, NULL, 1000),
                     0);
    assert_int_equal(broker_store_commit(s), 0);
    assert_int_equal(broker_store_expire(s, 5000, 100), 1);
    memset(&w, 0, sizeof w);
    assert_int_equal(broker_store_deps_of(s, a, true, 100, s_deps_of_cb, &w),
                     0);
    broker_store_destroy(&s);
}

int
main(int argc, char **argv)
{
    const char *backend = argc > 1 ? argv[1] : getenv("DROVER_STORE_BACKEND");
    if (backend &&
        (strcmp(backend, "pg") == 0 || strcmp(backend, "postgres") == 0))
        s_backend = S_PG;
    else if (backend && *backend && strcmp(backend, "sqlite") != 0) {
        fprintf(stderr, "usage: store_test [sqlite|pg]\n");
        return 2;
    }
#define T(f) cmocka_unit_test_setup_teardown(f, s_setup, s_teardown)
/* The cases every backend must pass. */
#define S_COMMON_TESTS                                                         \
    T(t_schema_newer), T(t_sync_modes), T(t_roundtrip), T(t_rollback),         \
        T(t_group_10k), T(t_replay_stops), T(t_mark_running_reopen),           \
        T(t_mark_waiting), T(t_mark_finished), T(t_find_key),                  \
        T(t_key_per_owner), T(t_duplicate_key), T(t_expire), T(t_batches),     \
        T(t_retry_finished_job), T(t_attempts_history), T(t_queue_settings),   \
        T(t_list_and_load), T(t_finished_by_time), T(t_generation_and_probe),  \
        T(t_key_state), T(t_key_state_writer), T(t_schema_v3_migrated),        \
        T(t_schema_v4_migrated), T(t_schedules), T(t_deps), T(t_read_snapshot)
    const struct CMUnitTest sqlite_tests[] = {
        S_COMMON_TESTS,           T(t_url_forms),
        T(t_open_missing_dir),    T(t_open_not_a_database),
        T(t_schema_v1_migrated),  T(t_disk_full_at_commit),
        T(t_disk_full_mid_group), T(t_disk_full_wal),
        T(t_memory_store),
    };
    const struct CMUnitTest pg_tests[] = {
        S_COMMON_TESTS,
        T(t_pg_url_forms),
        T(t_pg_schema_v1_migrated),
        T(t_pg_schema_refused),
        T(t_pg_connection_lost),
        T(t_pg_binary),
        T(t_pg_fenced),
        T(t_pg_read_after_failed_write),
        T(t_pg_bad_text),
        T(t_pg_open_race),
        T(t_pg_reconnect_refused),
        T(t_pg_disk_full),
    };
#undef S_COMMON_TESTS
#undef T
    if (s_backend == S_PG)
        return cmocka_run_group_tests_name("store (postgres)", pg_tests,
                                           s_pg_group_setup,
                                           s_pg_group_teardown);
    return cmocka_run_group_tests_name("store (sqlite)", sqlite_tests, NULL,
                                       NULL);
}
