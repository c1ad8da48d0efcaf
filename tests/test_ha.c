/* Broker high availability on PostgreSQL, with real processes: two brokers
 * (A, started first, active; B a standby) share one store on a server of
 * the test's own (tests/fixtures/pg_server), workers and clients hold both
 * endpoints. The active broker is killed (kill -9), stopped (SIGSTOP) and
 * has its database restarted under it; every acknowledged job must end
 * succeeded. A standby refuses a submit with code standby. A schedule
 * goes on firing across a takeover, each firing time once.
 *
 * Every wait polls a condition against a deadline; every process is started
 * through the harness and killed by PID at teardown, also after a failed
 * assertion. The server is started once for the binary and the database
 * made again for each case. */
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "dv_clock.h"
#include "harness.h"
#include "pg_server.h"

static pg_server_t *s_pg;  /* the binary's server */
static char s_pg_dir[256]; /* its directory, "" when none */
static char s_url[1400];   /* the store's URL (database drover) */

/* ---- the group: brokers, workers, endpoints ----------------------------- */

/* ipc:// endpoint NAME.SUFFIX in the test dir. */
static char *
s_ep(harness_t *h, const char *name, const char *suffix, char *out, size_t size)
{
    snprintf(out, size, "ipc://%s/%s.%s", h->dir, name, suffix);
    return out;
}

/* Both brokers' endpoints of one kind ("c" clients, "w" workers), A first. */
static char *
s_eps(harness_t *h, const char *suffix, char *out, size_t size)
{
    snprintf(out, size, "ipc://%s/A.%s,ipc://%s/B.%s", h->dir, suffix, h->dir,
             suffix);
    return out;
}

/* Starts broker NAME (A or B) on the shared store, its log in NAME.log.
 * Does not wait. Returns its PID or -1. */
static pid_t
s_broker(harness_t *h, const char *name)
{
    char c[320], w[320], e[320], log[64];
    s_ep(h, name, "c", c, sizeof c);
    s_ep(h, name, "w", w, sizeof w);
    s_ep(h, name, "e", e, sizeof e);
    snprintf(log, sizeof log, "%s.log", name);
    const char *args[] = { "broker", "--clients",   c,      "--workers",
                           w,        "--events",    e,      "--store",
                           s_url,    "--heartbeat", "0.1",  "--worker-timeout",
                           "1",      "--log-level", "info", NULL };
    return harness_spawn(h, args, NULL, log);
}

/* Starts a worker on both brokers' worker endpoints; its log in
 * worker-N.log. Does not wait. Returns its PID or -1. */
static pid_t
s_worker(harness_t *h, int n, const char *concurrency)
{
    char eps[700], name[16], log[32];
    s_eps(h, "w", eps, sizeof eps);
    snprintf(name, sizeof name, "w%d", n);
    snprintf(log, sizeof log, "worker-%d.log", n);
    const char *args[] = { "worker",    "--broker",    eps,    "--name",
                           name,        "--heartbeat", "0.1",  "--concurrency",
                           concurrency, "--log-level", "info", NULL };
    return harness_spawn(h, args, NULL, log);
}

typedef struct {
    harness_t *h;
    const char *log;
    int want;
} s_lines_t;

static bool
s_active_lines(void *arg)
{
    s_lines_t *l = arg;
    return harness_count_lines(l->h, l->log, "broker.started",
                               "\"role\":\"active\"", NULL) >= l->want;
}

/* Waits up to timeout_ms for the want-th `broker.started role=active`
 * line of log. */
static bool
s_wait_active(harness_t *h, const char *log, int want, int timeout_ms)
{
    s_lines_t l = { h, log, want };
    return harness_wait_until(s_active_lines, &l, timeout_ms);
}

static bool
s_standby_lines(void *arg)
{
    s_lines_t *l = arg;
    return harness_count_lines(l->h, l->log, "broker.standby", NULL) >= l->want;
}

static bool
s_wait_standby(harness_t *h, const char *log, int want, int timeout_ms)
{
    s_lines_t l = { h, log, want };
    return harness_wait_until(s_standby_lines, &l, timeout_ms);
}

/* The status of the broker at endpoint ep alone: its instance id into id
 * and whether it is active (a standby says role standby). Returns 0, or -1
 * when it does not answer within timeout_ms. */
static int
s_status_of(drover_client_t *c, char *id, size_t size, bool *active)
{
    char *body = NULL;
    if (drover_ctrl(c, "status", NULL, NULL, &body) != DROVER_OK)
        return -1;
    json_t *st = json_loads(body, 0, NULL);
    free(body);
    if (!st)
        return -1;
    const char *b = json_string_value(json_object_get(st, "broker"));
    const char *role = json_string_value(json_object_get(st, "role"));
    snprintf(id, size, "%s", b ? b : "");
    *active = !role || strcmp(role, "standby") != 0;
    json_decref(st);
    return 0;
}

/* Sets up the group: A started first and active, B a standby. The
 * harness client (h->client) is connected to both brokers' client
 * endpoints. */
static void
s_group(harness_t *h, pid_t *a, pid_t *b)
{
    *a = s_broker(h, "A");
    assert_true(*a > 0);
    assert_true(s_wait_active(h, "A.log", 1, 15000));
    *b = s_broker(h, "B");
    assert_true(*b > 0);
    assert_true(s_wait_standby(h, "B.log", 1, 10000));
    char eps[700];
    h->client = drover_connect(s_eps(h, "c", eps, sizeof eps), 2000);
    assert_non_null(h->client);
}

/* ---- the store ---------------------------------------------------------- */

/* One integer from sql on the store (first column, first row), or -1. */
static int64_t
s_pg_int(const char *sql)
{
    PGconn *c = PQconnectdb(s_url);
    int64_t v = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
            !PQgetisnull(r, 0, 0))
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        else
            print_error("test_ha: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        print_error("test_ha: connect: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return v;
}

/* ---- submitting and waiting --------------------------------------------- */

/* The succeeded counter of the broker the client reaches, or -1. */
static int64_t
s_succeeded(drover_client_t *c)
{
    char *body = NULL;
    if (drover_ctrl(c, "status", NULL, NULL, &body) != DROVER_OK)
        return -1;
    json_t *st = json_loads(body, 0, NULL);
    free(body);
    json_t *v =
        st ? json_object_get(json_object_get(st, "counters"), "succeeded")
           : NULL;
    int64_t n = json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(st);
    return n;
}

typedef struct {
    drover_client_t *c;
    int64_t want;
} s_count_t;

static bool
s_succeeded_at_least(void *arg)
{
    s_count_t *c = arg;
    return s_succeeded(c->c) >= c->want;
}

/* ---- the probe: who answers status, and when ---------------------------- */

typedef struct {
    char eps[700];
    atomic_bool stop;
    char first[64];       /* the first active broker's id */
    int64_t last_old_ms;  /* its last answer as active */
    char second[64];      /* the next active broker's id, "" until then */
    int64_t first_new_ms; /* its first answer as active */
    int answers;
} s_probe_t;

static void *
s_probe(void *arg)
{
    s_probe_t *p = arg;
    drover_client_t *c = drover_connect(p->eps, 200);
    while (c && !atomic_load(&p->stop)) {
        char id[64];
        bool active;
        if (s_status_of(c, id, sizeof id, &active) == 0 && active) {
            int64_t now = dv_mono_ms();
            p->answers++;
            if (!p->first[0])
                snprintf(p->first, sizeof p->first, "%s", id);
            if (!strcmp(id, p->first)) {
                p->last_old_ms = now;
            } else if (!p->second[0]) {
                snprintf(p->second, sizeof p->second, "%s", id);
                p->first_new_ms = now;
            }
        }
        struct timespec ts = { 0, 20 * 1000000L }; /* the probe's pace */
        nanosleep(&ts, NULL);
    }
    drover_close(&c);
    return NULL;
}

static bool
s_probe_started(void *arg)
{
    s_probe_t *p = arg;
    return p->first[0] != '\0';
}

static bool
s_probe_moved(void *arg)
{
    s_probe_t *p = arg;
    return p->second[0] != '\0';
}

/* ---- the cases ---------------------------------------------------------- */

/* kill -9 of the active broker while 20,000 jobs run on three workers: B
 * takes over within 5 s, every acknowledged job ends succeeded, and the
 * store holds each exactly once. */
static void
t_kill_active(void **state)
{
    harness_t *h = *state;
    int64_t t0 = dv_mono_ms();
    pid_t a, b;
    s_group(h, &a, &b);
    for (int i = 1; i <= 3; i++)
        assert_true(s_worker(h, i, "4") > 0);

    /* Static: a failed assertion leaves the function while the probe
     * thread still runs. */
    static s_probe_t probe;
    memset(&probe, 0, sizeof probe);
    s_eps(h, "c", probe.eps, sizeof probe.eps);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_probe, &probe), 0);
    assert_true(harness_wait_until(s_probe_started, &probe, 5000));

    char ca[320];
    drover_client_t *on_a =
        drover_connect(s_ep(h, "A", "c", ca, sizeof ca), 1000);
    assert_non_null(on_a);
    enum { N = 20000, BATCH = 1000, KILL_AT = 3000 };
    static char ids[N][37];
    int acked = 0, acked_at_kill = 0;
    int64_t done_at_kill = -1;
    for (int from = 0; from < N; from += BATCH) {
        acked += harness_submit_keyed(h, "k9", "noop", "null", from, BATCH, 0,
                                      ids, 60000);
        if (done_at_kill < 0 && s_succeeded(on_a) >= KILL_AT) {
            done_at_kill = s_succeeded(on_a);
            acked_at_kill = acked;
            assert_true(harness_signal(h, a, SIGKILL, 5000) >= 0);
        }
    }
    if (done_at_kill < 0) {
        s_count_t cnt = { on_a, KILL_AT };
        assert_true(harness_wait_until(s_succeeded_at_least, &cnt, 60000));
        done_at_kill = s_succeeded(on_a);
        acked_at_kill = acked;
        assert_true(harness_signal(h, a, SIGKILL, 5000) >= 0);
    }
    drover_close(&on_a);
    assert_int_equal(acked, N);
    assert_true(s_wait_active(h, "B.log", 1, 10000));
    assert_true(harness_wait_until(s_probe_moved, &probe, 10000));
    atomic_store(&probe.stop, true);
    pthread_join(th, NULL);

    harness_results_t o = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &o, 120000), DROVER_OK);
    int64_t takeover = probe.first_new_ms - probe.last_old_ms;
    print_message("kill -9: %d of %d submitted, %d succeeded when A was "
                  "killed; takeover %" PRId64 " ms (%s -> %s); %d succeeded, "
                  "%d otherwise; %d jobs ran more than once (most attempts "
                  "%d); %.1f s\n",
                  acked_at_kill, N, (int)done_at_kill, takeover, probe.first,
                  probe.second, o.succeeded, o.n - o.succeeded, o.retried,
                  o.max_attempts, (dv_mono_ms() - t0) / 1000.0);
    assert_int_equal(o.n, N);
    assert_int_equal(o.succeeded, N);
    assert_true(done_at_kill < N);
    assert_true(takeover >= 0);
    assert_true(takeover < 5000);
    assert_int_equal(s_pg_int("SELECT count(*) FROM jobs"), N);
    assert_int_equal(
        s_pg_int("SELECT count(*) FROM jobs WHERE state = 'succeeded'"), N);
    assert_int_equal(s_pg_int("SELECT count(*) FROM jobs WHERE attempt > 1"),
                     o.retried);
}

/* SIGSTOP of the active broker: B takes over within about 5 s and
 * finishes the batch; A, woken, commits nothing more: it steps down and
 * starts again (same PID) as a standby. */
static void
t_stop_active(void **state)
{
    harness_t *h = *state;
    int64_t t0 = dv_mono_ms();
    pid_t a, b;
    s_group(h, &a, &b);
    assert_true(s_worker(h, 1, "4") > 0);
    enum { N = 3000 };
    static char ids[N][37];
    assert_int_equal(
        harness_submit_keyed(h, "stop", "sleep", "0.005", 0, N, 0, ids, 30000),
        N);
    char ca[320];
    drover_client_t *on_a =
        drover_connect(s_ep(h, "A", "c", ca, sizeof ca), 1000);
    assert_non_null(on_a);
    s_count_t cnt = { on_a, 300 };
    assert_true(harness_wait_until(s_succeeded_at_least, &cnt, 30000));
    int64_t before = s_succeeded(on_a);
    drover_close(&on_a);

    assert_true(harness_signal(h, a, SIGSTOP, 0) == 0);
    int64_t stopped = dv_mono_ms();
    assert_true(s_wait_active(h, "B.log", 1, 8000));
    int64_t takeover = dv_mono_ms() - stopped;

    harness_results_t o = { 0 };
    int rc = harness_wait_ids(h, ids, N, &o, 60000);
    kill(a, SIGCONT);
    assert_int_equal(rc, DROVER_OK);
    assert_int_equal(o.succeeded, N);

    /* A wakes up: it must find its lock gone or its writes fenced, and
     * start again as a standby in the same process. */
    assert_true(harness_wait_line(h, "A.log", "broker.stepping_down", 15000));
    assert_true(harness_count_lines(h, "A.log", "broker.stepping_down",
                                    "lost the group's lock", NULL) +
                    harness_count_lines(h, "A.log", "broker.stepping_down",
                                        "fenced", NULL) >=
                1);
    assert_true(s_wait_standby(h, "A.log", 2, 15000));
    assert_int_equal(waitpid(a, NULL, WNOHANG), 0); /* still running */
    char pid[32];
    snprintf(pid, sizeof pid, "\"pid\":%d,", (int)a);
    assert_int_equal(
        harness_count_lines(h, "A.log", "broker.standby", pid, NULL), 2);
    /* Asked alone, A says it is a standby. */
    drover_client_t *c = drover_connect(ca, 1000);
    assert_non_null(c);
    char id[64];
    bool active = true;
    assert_int_equal(s_status_of(c, id, sizeof id, &active), 0);
    drover_close(&c);
    assert_false(active);
    assert_int_equal(s_pg_int("SELECT count(*) FROM jobs WHERE state = "
                              "'succeeded'"),
                     N);
    print_message("SIGSTOP: %" PRId64 " of %d succeeded when A was stopped; "
                  "B active %" PRId64 " ms after; %d jobs ran more than "
                  "once; %.1f s\n",
                  before, N, takeover, o.retried, (dv_mono_ms() - t0) / 1000.0);
    assert_true(before < N); /* stopped mid-batch */
}

/* The database restarts under load: the brokers lose their connections
 * (and the active one its lock); some broker is active again and every
 * acknowledged job ends succeeded. */
static void
t_db_restart(void **state)
{
    harness_t *h = *state;
    int64_t t0 = dv_mono_ms();
    pid_t a, b;
    s_group(h, &a, &b);
    assert_true(s_worker(h, 1, "4") > 0);
    enum { N = 3000 };
    static char ids[N][37];
    assert_int_equal(
        harness_submit_keyed(h, "pgr", "sleep", "0.005", 0, N, 0, ids, 30000),
        N);
    char ca[320];
    drover_client_t *on_a =
        drover_connect(s_ep(h, "A", "c", ca, sizeof ca), 1000);
    assert_non_null(on_a);
    s_count_t cnt = { on_a, 300 };
    assert_true(harness_wait_until(s_succeeded_at_least, &cnt, 30000));
    int64_t before = s_succeeded(on_a);
    drover_close(&on_a);

    char err[1600] = "";
    int64_t r0 = dv_mono_ms();
    int rc = pg_server_restart(s_pg, err, sizeof err);
    if (rc != 0)
        print_error("test_ha: %s\n", err);
    assert_int_equal(rc, 0);
    int64_t restart_ms = dv_mono_ms() - r0;

    harness_results_t o = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &o, 90000), DROVER_OK);
    int starts_a = harness_count_lines(h, "A.log", "broker.started",
                                       "\"role\":\"active\"", NULL);
    int starts_b = harness_count_lines(h, "B.log", "broker.started",
                                       "\"role\":\"active\"", NULL);
    int actives = starts_a + starts_b;
    print_message("db restart: %" PRId64 " of %d succeeded before, restart "
                  "%" PRId64 " ms; %d jobs ran more than once (most attempts "
                  "%d); active starts: %d of A, %d of B; %.1f s\n",
                  before, N, restart_ms, o.retried, o.max_attempts, starts_a,
                  starts_b, (dv_mono_ms() - t0) / 1000.0);
    assert_int_equal(o.n, N);
    assert_int_equal(o.succeeded, N);
    assert_true(before < N);   /* restarted mid-batch */
    assert_true(actives >= 2); /* A's first start, and one after */
    assert_int_equal(s_pg_int("SELECT count(*) FROM jobs"), N);
    assert_int_equal(
        s_pg_int("SELECT count(*) FROM jobs WHERE state = 'succeeded'"), N);
    assert_int_equal(s_pg_int("SELECT count(*) FROM jobs WHERE attempt > 1"),
                     o.retried);
    /* Some broker is active: the client reaches one that answers a job. */
    char *body = NULL;
    assert_int_equal(drover_ctrl(h->client, "job", ids[0], NULL, &body),
                     DROVER_OK);
    free(body);
}

/* A standby refuses a submit with code standby, `drover status` says what
 * it is, and `drover health --self broker` that it is alive. */
static void
t_standby_refuses(void **state)
{
    harness_t *h = *state;
    pid_t a, b;
    s_group(h, &a, &b);
    char cb[320];
    s_ep(h, "B", "c", cb, sizeof cb);
    drover_client_t *c = drover_connect(cb, 2000);
    assert_non_null(c);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "noop";
    char id[DROVER_ID_SIZE];
    int64_t t = dv_mono_ms();
    assert_int_equal(drover_submit(c, &job, id), DROVER_EUNREACHABLE);
    int64_t took = dv_mono_ms() - t;
    print_message("standby: refused in %" PRId64 " ms: %s\n", took,
                  drover_last_error(c));
    assert_non_null(strstr(drover_last_error(c), "standby"));
    /* It waits out its timeout in case a takeover is under way, no more. */
    assert_true(took < harness_scale(4000));
    drover_close(&c);
    char out[8192];
    assert_int_equal(
        harness_cli(out, sizeof out, "status", "--broker", cb, "--json", NULL),
        0);
    /* status --json's one shape: the broker stood in for the collector
     * (none runs here) and says it is a standby, with its lock. */
    json_t *st = json_loads(out, 0, NULL);
    assert_non_null(st);
    assert_string_equal(json_string_value(json_object_get(st, "source")),
                        "broker");
    bool standby = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(st, "brokers"), i, e)
    {
        const char *role = json_string_value(json_object_get(e, "role"));
        if (role && !strcmp(role, "standby")) {
            standby = true;
            assert_non_null(json_object_get(e, "lock"));
        }
    }
    assert_true(standby);
    json_decref(st);
    /* A standby that answers is alive for a probe. */
    assert_int_equal(harness_cli(out, sizeof out, "health", "--self", "broker",
                                 "--broker", cb, "--json", NULL),
                     0);
    json_t *hs = json_loads(out, 0, NULL);
    assert_non_null(hs);
    assert_string_equal(json_string_value(json_object_get(hs, "role")),
                        "standby");
    assert_true(json_is_true(json_object_get(hs, "alive")));
    json_decref(hs);
}

/* ---- setup -------------------------------------------------------------- */

/* A schedule across a takeover: added on A, firing every second; A is
 * killed (-9) and B, taking over, loads it at its start and goes on.
 * Each firing time is one job, on the schedule's grid. */
typedef struct {
    int64_t want;
} s_sched_t;

static bool
s_sched_jobs(void *arg)
{
    s_sched_t *c = arg;
    return s_pg_int("SELECT count(*) FROM jobs WHERE schedule = 'tick'") >=
           c->want;
}

static void
t_schedule_takeover(void **state)
{
    harness_t *h = *state;
    pid_t a, b;
    s_group(h, &a, &b);
    assert_true(s_worker(h, 1, "2") > 0);
    char eps[700], out[4096];
    s_eps(h, "c", eps, sizeof eps);
    assert_int_equal(harness_cli(out, sizeof out, "schedule", "add", "tick",
                                 "--every", "1s", "--type", "noop", "--broker",
                                 eps, NULL),
                     0);
    s_sched_t c = { 3 };
    assert_true(harness_wait_until(s_sched_jobs, &c, 20000));
    assert_true(harness_signal(h, a, SIGKILL, 5000) >= 0);
    assert_true(s_wait_active(h, "B.log", 1, 10000));
    assert_true(harness_file_has(h, "B.log", "broker.schedules_loaded"));
    c.want = s_pg_int("SELECT count(*) FROM jobs WHERE schedule = 'tick'") + 3;
    assert_true(harness_wait_until(s_sched_jobs, &c, 20000));
    assert_int_equal(
        s_pg_int("SELECT count(*) FROM jobs WHERE schedule = 'tick'"),
        s_pg_int("SELECT count(DISTINCT key) FROM jobs WHERE schedule = "
                 "'tick'"));
    int64_t anchor = s_pg_int("SELECT anchor_ms FROM schedules");
    assert_true(anchor > 0);
    assert_int_equal(
        s_pg_int("SELECT count(*) FROM jobs WHERE schedule = 'tick' AND "
                 "(CAST(split_part(key, ':', 4) AS BIGINT) - "
                 "(SELECT anchor_ms FROM schedules)) % 1000 <> 0"),
        0);
    assert_true(s_pg_int("SELECT firings FROM schedules") >= 1);
}

static int
s_setup(void **state)
{
    if (harness_setup(state) != 0)
        return -1;
    char err[512];
    if (pg_server_exec(s_pg, "postgres",
                       "DROP DATABASE IF EXISTS drover WITH (FORCE)", err,
                       sizeof err) != 0 ||
        pg_server_exec(s_pg, "postgres", "CREATE DATABASE drover", err,
                       sizeof err) != 0) {
        print_error("test_ha: %s\n", err);
        harness_teardown(state);
        return -1;
    }
    return 0;
}

static int
s_group_setup(void **state)
{
    (void)state;
    snprintf(s_pg_dir, sizeof s_pg_dir, "/tmp/drover-test-XXXXXX");
    if (!mkdtemp(s_pg_dir)) {
        s_pg_dir[0] = '\0';
        return -1;
    }
    char err[1600] = "";
    s_pg = pg_server_start(s_pg_dir, err, sizeof err);
    if (!s_pg) {
        print_error("test_ha: %s\n", err);
        rmdir(s_pg_dir);
        s_pg_dir[0] = '\0';
        return -1;
    }
    pg_server_url(s_pg, "drover", s_url, sizeof s_url);
    return 0;
}

static int
s_group_teardown(void **state)
{
    (void)state;
    pg_server_stop(&s_pg);
    if (s_pg_dir[0])
        rmdir(s_pg_dir);
    return 0;
}

/* An argument picks the cases by name (a cmocka filter: t_db_*). */
int
main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
#define T(f) cmocka_unit_test_setup_teardown(f, s_setup, harness_teardown)
    const struct CMUnitTest tests[] = {
        T(t_standby_refuses), T(t_kill_active),       T(t_stop_active),
        T(t_db_restart),      T(t_schedule_takeover),
    };
#undef T
    return cmocka_run_group_tests_name("ha (postgres)", tests, s_group_setup,
                                       s_group_teardown);
}
