/* The collector with real processes: brokers, workers and `drover
 * collector` on ipc:// in a temp dir, the CLI run as a child process, and
 * /metrics read over HTTP and checked with promtool.
 *
 * Covered: a late start (snapshot before deltas); a gap in the sequence
 * numbers (events really dropped by a ZeroMQ high-water mark while the
 * collector is stopped) and the resync after it; two brokers feeding one
 * collector; a restart that keeps all history; /metrics through promtool
 * and the JSON API; `drover jobs` / `drover job` on a job that failed twice
 * and died; health exit codes; malformed queries.
 *
 * One binary, two runs: `test_collector` keeps the collector's history in
 * a SQLite file in each test's directory; `test_collector pg` starts a
 * PostgreSQL server of its own (tests/fixtures/pg_server) and gives each
 * test's collector a fresh database on it (--store postgresql://...). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>
#include <jansson.h>

#include "dv_clock.h"
#include "dv_proto.h"
#include "dv_util.h"
#include "harness.h"
#include "pg_server.h"

static pg_server_t *s_pg; /* the PostgreSQL run's server, or NULL */
static char s_pg_dir[64]; /* its directory */
static int s_pg_seq;      /* databases made so far */

/* Everything one test starts; teardown kills it all. */
typedef struct {
    harness_t *h;  /* first broker; its dir holds the collector */
    harness_t *h2; /* second broker, when a test needs one */
    pid_t collector;
    char bind[320];   /* collector query endpoint */
    char store[1024]; /* --store: a file in h's dir, or a PostgreSQL URL */
    char db[32];      /* the PostgreSQL run: this test's database */
    char log[320];
    int http_port;
    drover_client_t *client; /* to the collector */
} s_fx_t;

static int
s_setup(void **state)
{
    s_fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    fx->h = harness_new();
    if (!fx->h) {
        free(fx);
        return -1;
    }
    snprintf(fx->bind, sizeof fx->bind, "ipc://%s/collector", fx->h->dir);
    snprintf(fx->store, sizeof fx->store, "%s/collector.db", fx->h->dir);
    if (s_pg) {
        char sql[96], err[512];
        snprintf(fx->db, sizeof fx->db, "test_collector_%d", ++s_pg_seq);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", fx->db);
        if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0) {
            print_error("%s: %s\n", sql, err);
            harness_destroy(&fx->h);
            free(fx);
            return -1;
        }
        pg_server_url(s_pg, fx->db, fx->store, sizeof fx->store);
    }
    snprintf(fx->log, sizeof fx->log, "%s/collector.log", fx->h->dir);
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    s_fx_t *fx = *state;
    drover_close(&fx->client);
    harness_destroy(&fx->h2);
    harness_destroy(&fx->h);
    int rc = 0;
    if (s_pg) {
        char sql[96], err[512];
        snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", fx->db);
        if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0) {
            print_error("%s: %s\n", sql, err);
            rc = -1;
        }
    }
    free(fx);
    return rc;
}

/* The PostgreSQL run's server, for every test of the run. A missing
 * server fails the run, with what to do about it. */
static int
s_pg_setup(void **state)
{
    (void)state;
    snprintf(s_pg_dir, sizeof s_pg_dir, "/tmp/test_collector-pg-XXXXXX");
    if (!mkdtemp(s_pg_dir)) {
        print_error("mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    char err[1600] = "";
    s_pg = pg_server_start(s_pg_dir, err, sizeof err);
    if (!s_pg) {
        print_error("test_collector pg: %s\n", err);
        rmdir(s_pg_dir);
        return -1;
    }
    return 0;
}

static int
s_pg_teardown(void **state)
{
    (void)state;
    pg_server_stop(&s_pg);
    return rmdir(s_pg_dir);
}

static const char *
s_bin(void)
{
    const char *b = getenv("DROVER_BIN");
    return b && *b ? b : "drover";
}

/* The collector's answer to verb, or NULL (unreachable, refused). */
static json_t *
s_query(s_fx_t *fx, const char *verb, const char *id, const char *args)
{
    if (!fx->client)
        fx->client = drover_connect(fx->bind, harness_scale(2000));
    if (!fx->client)
        return NULL;
    drover_ctrl_t req = { .verb = verb, .id = id, .args_json = args };
    char *text = NULL;
    int rc = drover_ctrl_ex(fx->client, &req, &text);
    if (rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT)
        drover_close(&fx->client); /* a fresh socket next time */
    json_t *j = rc == DROVER_OK && text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    return j;
}

static bool
s_collector_answers(void *arg)
{
    s_fx_t *fx = arg;
    json_t *st = s_query(fx, "status", NULL, NULL);
    if (!st)
        return false;
    const char *http = json_string_value(
        json_object_get(json_object_get(st, "collector"), "http"));
    const char *colon = http ? strrchr(http, ':') : NULL;
    fx->http_port = colon ? atoi(colon + 1) : 0;
    json_decref(st);
    return true;
}

/* Starts `drover collector` for the given event and clients endpoints
 * (comma-separated) plus extra args; waits until it answers. */
static pid_t
s_start_collector(s_fx_t *fx, const char *events, const char *brokers,
                  const char *const *extra)
{
    const char *args[48] = {
        "collector", "--events",    events,   "--broker",    brokers,
        "--bind",    fx->bind,      "--http", "127.0.0.1:0", "--store",
        fx->store,   "--log-level", "debug",
    };
    int n = 13;
    for (int i = 0; extra && extra[i] && n < 47; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    fx->collector =
        harness_spawn(fx->h, args, NULL, "collector.log"); /* fx->log */
    if (fx->collector < 0 ||
        !harness_wait_until(s_collector_answers, fx, 10000))
        return -1;
    /* The history is where this run wants it (a file, or PostgreSQL). */
    json_t *st = s_query(fx, "status", NULL, NULL);
    const char *store = json_string_value(
        json_object_get(json_object_get(st, "collector"), "store"));
    if (!store || strcmp(store, fx->store) != 0)
        fail_msg("collector store '%s', want '%s'", store ? store : "",
                 fx->store);
    json_decref(st);
    return fx->collector;
}

static bool
s_file_has(const char *path, const char *text)
{
    size_t len;
    char *data = dv_read_file(path, &len);
    bool yes = data && strstr(data, text);
    free(data);
    return yes;
}

typedef struct {
    const char *path, *text;
} s_grep_t;

static bool
s_grep(void *arg)
{
    s_grep_t *g = arg;
    return s_file_has(g->path, g->text);
}

/* Integer at a path of object keys, e.g. s_geti(st, "collector", "gaps"). */
static int64_t
s_geti(const json_t *o, const char *k1, const char *k2)
{
    const json_t *v = json_object_get(o, k1);
    if (k2)
        v = json_object_get(v, k2);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* The entry of array whose "name" is name, or NULL. */
static json_t *
s_named(const json_t *array, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v)
    {
        const char *n = json_string_value(json_object_get(v, "name"));
        if (n && !strcmp(n, name))
            return v;
    }
    return NULL;
}

/* ---- conditions ---------------------------------------------------------- */

typedef struct {
    s_fx_t *fx;
    harness_t *h;       /* broker to compare with */
    const char *events; /* its events endpoint as the collector knows it
                           (NULL: h->events) */
    const char *queue;
    int64_t want;
    const char *what;
} s_cmp_t;

/* The collector's queue numbers equal the broker's own snapshot for every
 * queue the broker lists. */
static bool
s_queues_match_broker(void *arg)
{
    s_cmp_t *c = arg;
    char *text = harness_status(c->h);
    json_t *bst = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_t *cq = s_query(c->fx, "queues", NULL, NULL);
    bool same = bst && cq;
    size_t i;
    json_t *bq;
    json_array_foreach(json_object_get(bst, "queues"), i, bq)
    {
        if (!same)
            break;
        const char *name = json_string_value(json_object_get(bq, "name"));
        json_t *q = s_named(json_object_get(cq, "queues"), name);
        static const char *keys[] = { "queued", "scheduled", "running" };
        for (int k = 0; q && k < 3; k++)
            if (s_geti(q, keys[k], NULL) != s_geti(bq, keys[k], NULL))
                same = false;
        if (!q)
            same = false;
    }
    json_decref(bst);
    json_decref(cq);
    return same;
}

/* The collector lists every worker the broker lists, online, with the
 * broker's processed count. */
static bool
s_workers_match_broker(void *arg)
{
    s_cmp_t *c = arg;
    char *text = harness_status(c->h);
    json_t *bst = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_t *cw = s_query(c->fx, "workers", NULL, NULL);
    bool same =
        bst && cw && json_array_size(json_object_get(bst, "workers")) > 0;
    size_t i;
    json_t *bw;
    json_array_foreach(json_object_get(bst, "workers"), i, bw)
    {
        const char *name = json_string_value(json_object_get(bw, "name"));
        json_t *w = NULL;
        size_t j;
        json_t *x;
        json_array_foreach(json_object_get(cw, "workers"), j, x)
        {
            const char *n = json_string_value(json_object_get(x, "name"));
            const char *b = json_string_value(json_object_get(x, "broker"));
            const char *ep = c->events ? c->events : c->h->events;
            if (n && b && !strcmp(n, name) && !strcmp(b, ep))
                w = x;
        }
        const char *st =
            w ? json_string_value(json_object_get(w, "state")) : "";
        if (!w || !st || !strcmp(st, "left") || !strcmp(st, "expired") ||
            s_geti(w, "processed", NULL) != s_geti(bw, "processed", NULL))
            same = false;
    }
    json_decref(bst);
    json_decref(cw);
    return same;
}

static bool
s_history_count(void *arg)
{
    s_cmp_t *c = arg;
    char args[160];
    snprintf(args, sizeof args, "{\"limit\": 1000%s%s%s}",
             c->queue ? ", \"queue\": \"" : "", c->queue ? c->queue : "",
             c->queue ? "\"" : "");
    json_t *j = s_query(c->fx, "jobs", NULL, args);
    size_t n = json_array_size(json_object_get(j, "jobs"));
    /* Every one of them ended. */
    size_t i;
    json_t *job;
    json_array_foreach(json_object_get(j, "jobs"), i, job)
    {
        const char *st = json_string_value(json_object_get(job, "state"));
        if (!st || (strcmp(st, "succeeded") && strcmp(st, "dead") &&
                    strcmp(st, "cancelled")))
            n = 0;
    }
    json_decref(j);
    return (int64_t)n == c->want;
}

static bool
s_health_is(void *arg)
{
    s_cmp_t *c = arg;
    char out[4096];
    int rc = harness_cli(out, sizeof out, "health", "--collector", c->fx->bind,
                         NULL);
    return rc == c->want && (!c->what || strstr(out, c->what));
}

static bool
s_broker_synced(void *arg)
{
    s_cmp_t *c = arg;
    json_t *st = s_query(c->fx, "status", NULL, NULL);
    json_t *b = json_array_get(json_object_get(st, "brokers"), 0);
    bool yes = json_is_true(json_object_get(b, "synced")) &&
               s_geti(b, "events", NULL) > 0;
    json_decref(st);
    return yes;
}

/* Submits n jobs of a type with options; ids out. */
static void
s_submit(harness_t *h, const char *queue, const char *type, const char *payload,
         const char *batch, int max_attempts, int n, char (*ids)[37])
{
    if (!h->client)
        h->client = drover_connect(h->clients, harness_scale(5000));
    assert_non_null(h->client);
    drover_job_t *jobs = calloc((size_t)n, sizeof *jobs);
    drover_ack_t *acks = calloc((size_t)n, sizeof *acks);
    assert_non_null(jobs);
    assert_non_null(acks);
    for (int i = 0; i < n; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].queue = queue;
        jobs[i].type = type;
        jobs[i].payload_json = payload;
        jobs[i].batch = batch;
        jobs[i].max_attempts = max_attempts;
        jobs[i].backoff_base_s = 0.05;
        jobs[i].backoff_jitter = 0;
    }
    assert_int_equal(drover_submit_many(h->client, jobs, (size_t)n, acks),
                     DROVER_OK);
    for (int i = 0; i < n; i++) {
        assert_string_equal(acks[i].error, "");
        if (ids)
            memcpy(ids[i], acks[i].id, 37);
    }
    free(jobs);
    free(acks);
}

/* ---- tests --------------------------------------------------------------- */

/* Started after jobs ran: the first snapshot gives the right queues and
 * workers (periodic snapshots are off, so only that one can). */
static void
t_late_start(void **state)
{
    s_fx_t *fx = *state;
    harness_t *h = fx->h;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--queues", "q1", "--concurrency", "2", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    char ids[20][37];
    s_submit(h, "q1", "echo", "{\"n\": 1}", NULL, 0, 20, ids);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 20, &r, 20000), DROVER_OK);
    assert_int_equal(r.succeeded, 20);
    s_submit(h, "parked", "echo", NULL, NULL, 0, 5, NULL);

    const char *extra[] = { "--snapshot", "600", NULL };
    pid_t col = s_start_collector(fx, h->events, h->clients, extra);
    assert_true(col > 0);
    s_cmp_t c = { .fx = fx, .h = h };
    assert_true(harness_wait_until(s_queues_match_broker, &c, 10000));
    assert_true(harness_wait_until(s_workers_match_broker, &c, 10000));
    /* SIGUSR1: a state dump in the log. */
    assert_int_equal(kill(col, SIGUSR1), 0);
    s_grep_t g = { fx->log, "\"msg\":\"collector.dump_queue\"" };
    assert_true(harness_wait_until(s_grep, &g, 5000));
    json_t *q = s_query(fx, "queues", NULL, NULL);
    json_t *parked = s_named(json_object_get(q, "queues"), "parked");
    assert_non_null(parked);
    assert_int_equal(s_geti(parked, "queued", NULL), 5);
    json_decref(q);

    /* Degraded: a queue with jobs and nobody to run them. */
    char out[4096];
    assert_int_equal(
        harness_cli(out, sizeof out, "health", "--collector", fx->bind, NULL),
        1);
    assert_non_null(strstr(out, "parked"));
    assert_int_equal(
        harness_cli(out, sizeof out, "queues", "--collector", fx->bind, NULL),
        0);
    assert_non_null(strstr(out, "parked"));
    assert_int_equal(
        harness_cli(out, sizeof out, "workers", "--collector", fx->bind, NULL),
        0);
    assert_non_null(strstr(out, "w1"));
}

/* A forwarder between the broker's PUB and the collector, as one would run
 * to fan events out: XSUB in, XPUB out with a small send high-water mark,
 * so a subscriber that stops reading loses events (ZeroMQ drops them). */
static pid_t
s_start_forwarder(harness_t *h, const char *out_ep)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        void *ctx = zmq_ctx_new();
        void *in = zmq_socket(ctx, ZMQ_XSUB);
        void *out = zmq_socket(ctx, ZMQ_XPUB);
        /* Room for two messages and a few KiB: a burst of job events
         * overflows it however the broker groups them (a busy broker
         * sends fewer, bigger "events" messages). */
        int hwm = 2, buf = 4096;
        zmq_setsockopt(out, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(out, ZMQ_SNDBUF, &buf, sizeof buf);
        if (zmq_connect(in, h->events) != 0 || zmq_bind(out, out_ep) != 0)
            _exit(1);
        zmq_proxy(in, out, NULL);
        _exit(0);
    }
    h->procs[h->nprocs++] = pid;
    return pid;
}

static void
t_gap_resync(void **state)
{
    s_fx_t *fx = *state;
    harness_t *h = fx->h;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--queues", "q1", "--concurrency", "2", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    char fwd[320];
    snprintf(fwd, sizeof fwd, "ipc://%s/events-fwd", h->dir);
    assert_true(s_start_forwarder(h, fwd) > 0);
    const char *extra[] = { "--snapshot", "600", "--events-hwm", "10", NULL };
    pid_t col = s_start_collector(fx, fwd, h->clients, extra);
    assert_true(col > 0);
    s_cmp_t c = { .fx = fx, .h = h, .events = fwd };
    assert_true(harness_wait_until(s_broker_synced, &c, 10000));

    /* The collector stops reading; a burst overflows the forwarder. */
    assert_int_equal(kill(col, SIGSTOP), 0);
    enum { N = 3000 };
    static char ids[N][37];
    s_submit(h, "q1", "noop", NULL, NULL, 0, N, ids);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &r, 60000), DROVER_OK);
    assert_int_equal(r.succeeded, N);
    /* Submitted last, so their events are among the dropped ones: only a
     * resync from the snapshot can count them. */
    s_submit(h, "parked", "noop", NULL, NULL, 0, 7, NULL);
    assert_int_equal(kill(col, SIGCONT), 0);

    s_grep_t g = { fx->log, "\"msg\":\"collector.gap\"" };
    assert_true(harness_wait_until(s_grep, &g, 10000));
    char broker_field[400];
    snprintf(broker_field, sizeof broker_field, "\"broker\":\"%s\"", fwd);
    size_t len;
    char *log = dv_read_file(fx->log, &len);
    assert_non_null(log);
    char *line = strstr(log, "\"msg\":\"collector.gap\"");
    assert_non_null(line);
    char *eol = strchr(line, '\n');
    if (eol)
        *eol = '\0';
    assert_non_null(strstr(line, broker_field));
    assert_non_null(strstr(line, "\"from\":"));
    assert_non_null(strstr(line, "\"to\":"));
    free(log);

    assert_true(harness_wait_until(s_queues_match_broker, &c, 10000));
    assert_true(harness_wait_until(s_workers_match_broker, &c, 10000));
    json_t *st = s_query(fx, "status", NULL, NULL);
    assert_true(s_geti(st, "collector", "gaps") >= 1);
    json_t *parked = s_named(json_object_get(st, "queues"), "parked");
    assert_int_equal(s_geti(parked, "queued", NULL), 7);
    json_decref(st);
}

typedef struct {
    s_fx_t *fx;
    const char *batch, *queue;
    int64_t want;
    int64_t history, live; /* what the last look saw, for a failure */
} s_bf_t;

/* The history's count of the batch's succeeded jobs reached want, and the
 * queue's live total of succeeded jobs is exactly want. */
static bool
s_all_in_history(void *arg)
{
    s_bf_t *c = arg;
    char args[128];
    snprintf(args, sizeof args, "{\"name\": \"%s\"}", c->batch);
    json_t *b = s_query(c->fx, "batch", NULL, args);
    int64_t done = s_geti(json_object_get(b, "counts"), "succeeded", NULL);
    json_decref(b);
    json_t *q = s_query(c->fx, "queues", NULL, NULL);
    json_t *one = s_named(json_object_get(q, "queues"), c->queue);
    int64_t total = s_geti(json_object_get(one, "totals"), "succeeded", NULL);
    json_decref(q);
    c->history = done;
    c->live = total;
    return done == c->want && total == c->want;
}

/* The collector stops reading while 20,000 jobs run, and the broker (a
 * tiny high-water mark on its events) drops what it cannot take: the run
 * still completes, and afterwards every job is in the history, counted
 * once, read back from the broker's store. */
static void
t_backfill_lost_events(void **state)
{
    s_fx_t *fx = *state;
    harness_t *h = fx->h;
    const char *bargs[] = { "--events-hwm", "2", NULL };
    assert_true(harness_start_broker(h, bargs) > 0);
    const char *wargs[] = { "--queues", "bf", "--concurrency", "4", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    assert_true(harness_start_worker(h, wargs) > 0);
    const char *extra[] = { "--snapshot", "600", "--events-hwm", "2", NULL };
    pid_t col = s_start_collector(fx, h->events, h->clients, extra);
    assert_true(col > 0);
    s_cmp_t c = { .fx = fx, .h = h };
    assert_true(harness_wait_until(s_broker_synced, &c, 10000));
    /* One job first, so the collector has seen the queue's events. */
    char first[1][37];
    s_submit(h, "bf", "noop", NULL, "bf-batch", 0, 1, first);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, first, 1, &r, 20000), DROVER_OK);
    s_bf_t want = { .fx = fx, .batch = "bf-batch", .queue = "bf", .want = 1 };
    assert_true(harness_wait_until(s_all_in_history, &want, 10000));

    assert_int_equal(kill(col, SIGSTOP), 0);
    enum { N = 20000 };
    static char ids[N][37];
    s_submit(h, "bf", "noop", NULL, "bf-batch", 0, N, ids);
    memset(&r, 0, sizeof r);
    /* The broker never waits for the stopped subscriber: the run ends. */
    assert_int_equal(harness_wait_ids(h, ids, N, &r, 120000), DROVER_OK);
    assert_int_equal(r.succeeded, N);
    assert_int_equal(kill(col, SIGCONT), 0);

    s_grep_t g = { fx->log, "\"msg\":\"collector.gap\"" };
    assert_true(harness_wait_until(s_grep, &g, 10000));
    want.want = N + 1;
    if (!harness_wait_until(s_all_in_history, &want, harness_scale(180000)))
        fail_msg("history %lld and live count %lld succeeded, not %lld",
                 (long long)want.history, (long long)want.live,
                 (long long)want.want);
    s_grep_t b = { fx->log, "\"msg\":\"collector.backfilled\"" };
    assert_true(harness_wait_until(s_grep, &b, 10000));
    /* Counted once: no more than the jobs that ran. */
    json_t *q = s_query(fx, "queues", NULL, NULL);
    json_t *one = s_named(json_object_get(q, "queues"), "bf");
    assert_int_equal(s_geti(json_object_get(one, "totals"), "succeeded", NULL),
                     N + 1);
    json_decref(q);
}

/* Two brokers, one collector: workers, queues and jobs of both. */
static void
t_two_brokers(void **state)
{
    s_fx_t *fx = *state;
    fx->h2 = harness_new();
    assert_non_null(fx->h2);
    harness_t *hs[2] = { fx->h, fx->h2 };
    const char *queues[2] = { "qa", "qb" };
    char ids[2][4][37];
    for (int i = 0; i < 2; i++) {
        assert_true(harness_start_broker(hs[i], NULL) > 0);
        const char *wargs[] = { "--queues", queues[i], NULL };
        assert_true(harness_start_worker(hs[i], wargs) > 0);
    }
    char events[700], brokers[700];
    snprintf(events, sizeof events, "%s,%s", fx->h->events, fx->h2->events);
    snprintf(brokers, sizeof brokers, "%s,%s", fx->h->clients, fx->h2->clients);
    assert_true(s_start_collector(fx, events, brokers, NULL) > 0);
    for (int i = 0; i < 2; i++) {
        s_cmp_t c = { .fx = fx, .h = hs[i] };
        assert_true(harness_wait_until(s_workers_match_broker, &c, 10000));
        s_submit(hs[i], queues[i], "echo", "{\"x\": 1}", NULL, 0, 4, ids[i]);
        harness_results_t r = { 0 };
        assert_int_equal(harness_wait_ids(hs[i], ids[i], 4, &r, 20000),
                         DROVER_OK);
    }
    s_cmp_t c = { .fx = fx, .want = 8 };
    assert_true(harness_wait_until(s_history_count, &c, 10000));
    json_t *jobs = s_query(fx, "jobs", NULL, "{\"limit\": 100}");
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++) {
            bool found = false;
            size_t j;
            json_t *job;
            json_array_foreach(json_object_get(jobs, "jobs"), j, job)
            {
                if (strcmp(json_string_value(json_object_get(job, "id")),
                           ids[i][k]))
                    continue;
                found = true;
                assert_string_equal(
                    json_string_value(json_object_get(job, "broker")),
                    hs[i]->events);
                assert_string_equal(
                    json_string_value(json_object_get(job, "queue")),
                    queues[i]);
            }
            assert_true(found);
        }
    json_decref(jobs);
    json_t *q = s_query(fx, "queues", NULL, NULL);
    assert_non_null(s_named(json_object_get(q, "queues"), "qa"));
    assert_non_null(s_named(json_object_get(q, "queues"), "qb"));
    json_decref(q);
    json_t *w = s_query(fx, "workers", NULL, NULL);
    assert_int_equal(json_array_size(json_object_get(w, "workers")), 2);
    json_decref(w);
    json_t *st = s_query(fx, "status", NULL, NULL);
    assert_int_equal(json_array_size(json_object_get(st, "brokers")), 2);
    json_decref(st);
}

static char *
s_dump(json_t *j)
{
    char *t = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(j);
    return t;
}

/* The collector restarts: jobs and attempts are all still there, and
 * what happened while it was down is reported as a gap. */
static void
t_restart_keeps_history(void **state)
{
    s_fx_t *fx = *state;
    harness_t *h = fx->h;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--queues", "q1", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    pid_t col = s_start_collector(fx, h->events, h->clients, NULL);
    assert_true(col > 0);
    s_cmp_t c = { .fx = fx, .h = h, .queue = "q1", .want = 6 };
    assert_true(harness_wait_until(s_broker_synced, &c, 10000));
    char ok[5][37], bad[1][37];
    s_submit(h, "q1", "echo", "{\"k\": \"v\"}", "b1", 0, 5, ok);
    s_submit(h, "q1", "fail", "{\"category\": \"upstream\"}", NULL, 2, 1, bad);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ok, 5, &r, 20000), DROVER_OK);
    assert_int_equal(harness_wait_ids(h, bad, 1, &r, 20000), DROVER_OK);
    assert_true(harness_wait_until(s_history_count, &c, 10000));

    char *jobs1 = s_dump(s_query(fx, "jobs", NULL, "{\"queue\": \"q1\"}"));
    char *job1 = s_dump(s_query(fx, "job", bad[0], NULL));
    char *batch1 = s_dump(s_query(fx, "batch", NULL, "{\"name\": \"b1\"}"));
    assert_non_null(jobs1);
    assert_non_null(strstr(job1, "\"attempts\":[{"));

    assert_true(harness_signal(h, col, SIGTERM, 5000) >= 0);
    /* Meanwhile, more work the collector cannot see. */
    s_submit(h, "other", "echo", NULL, NULL, 0, 3, NULL);
    assert_true(s_start_collector(fx, h->events, h->clients, NULL) > 0);

    char *jobs2 = s_dump(s_query(fx, "jobs", NULL, "{\"queue\": \"q1\"}"));
    char *job2 = s_dump(s_query(fx, "job", bad[0], NULL));
    char *batch2 = s_dump(s_query(fx, "batch", NULL, "{\"name\": \"b1\"}"));
    assert_string_equal(jobs1, jobs2);
    assert_string_equal(job1, job2);
    /* Only the batch's rate over the last minute may move. */
    assert_non_null(strstr(batch2, "\"done\":5"));
    free(jobs1);
    free(jobs2);
    free(job1);
    free(job2);
    free(batch1);
    free(batch2);
    /* The next event tells it what it missed. */
    s_submit(h, "q1", "echo", NULL, NULL, 0, 1, NULL);
    s_grep_t g = { fx->log, "collector was not running" };
    assert_true(harness_wait_until(s_grep, &g, 10000));
}

/* Reads GET path from 127.0.0.1:port into a new buffer (body only) and
 * the status code. */
static char *
s_http_get(int port, const char *path, int *status)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(0x7f000001) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    *status = atoi(buf + 9);
    char *body = strstr(buf, "\r\n\r\n");
    char *out = strdup(body ? body + 4 : "");
    free(buf);
    return out;
}

/* Finds prog on PATH: true with its path in path. */
static bool
s_find(const char *prog, char *path, size_t size)
{
    const char *p = getenv("PATH");
    char *copy = strdup(p ? p : "/usr/bin:/bin");
    bool found = false;
    for (char *dir = strtok(copy, ":"); dir && !found;
         dir = strtok(NULL, ":")) {
        snprintf(path, size, "%s/%s", dir, prog);
        found = access(path, X_OK) == 0;
    }
    free(copy);
    return found;
}

static void
t_metrics_and_api(void **state)
{
    s_fx_t *fx = *state;
    harness_t *h = fx->h;
    char promtool[512];
    if (!s_find("promtool", promtool, sizeof promtool))
        fail_msg("promtool is not on PATH: install the Debian package "
                 "'prometheus' (scripts/deps.sh lists it)");
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--queues", "q1", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    assert_true(s_start_collector(fx, h->events, h->clients, NULL) > 0);
    assert_true(fx->http_port > 0);
    s_cmp_t c = { .fx = fx, .h = h, .queue = "q1", .want = 6 };
    assert_true(harness_wait_until(s_broker_synced, &c, 10000));
    char ok[5][37], bad[1][37];
    s_submit(h, "q1", "echo", "{\"a\": 1}", "nightly", 0, 5, ok);
    s_submit(h, "q1", "fail", "{\"category\": \"auth\"}", NULL, 1, 1, bad);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ok, 5, &r, 20000), DROVER_OK);
    assert_int_equal(harness_wait_ids(h, bad, 1, &r, 20000), DROVER_OK);
    assert_true(harness_wait_until(s_history_count, &c, 10000));

    int status = 0;
    char *m = s_http_get(fx->http_port, "/metrics", &status);
    assert_non_null(m);
    assert_int_equal(status, 200);
    static const char *families[] = {
        "drover_jobs_total{",
        "drover_job_duration_seconds_bucket{",
        "drover_job_duration_seconds_sum{",
        "drover_job_duration_seconds_count{",
        "drover_job_wait_seconds_bucket{",
        "drover_queue_depth{",
        "drover_workers{",
        "drover_worker_busy{",
        "# TYPE drover_key_state gauge",
        "# TYPE drover_key_requests_total counter",
        "drover_collector_events_total ",
        "drover_collector_gaps_total ",
        "# HELP drover_jobs_total ",
        "le=\"+Inf\"",
        "outcome=\"succeeded\"} 5",
        "outcome=\"dead\"} 1",
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (!strstr(m, families[i]))
            fail_msg("/metrics lacks %s", families[i]);
    char file[320];
    snprintf(file, sizeof file, "%s/metrics.txt", h->dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs(m, f);
    fclose(f);
    free(m);
    char cmd[1200], out[4096] = "";
    snprintf(cmd, sizeof cmd, "%s check metrics < %s 2>&1", promtool, file);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    if (rc != 0)
        fail_msg("promtool check metrics failed: %s", out);

    char *body = s_http_get(fx->http_port, "/api/status", &status);
    assert_int_equal(status, 200);
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "brokers")), 1);
    assert_non_null(s_named(json_object_get(j, "queues"), "q1"));
    json_decref(j);
    free(body);
    body = s_http_get(fx->http_port, "/api/jobs?state=dead&limit=5", &status);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, bad[0]));
    free(body);
    char path[128];
    snprintf(path, sizeof path, "/api/jobs/%s", bad[0]);
    body = s_http_get(fx->http_port, path, &status);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "\"category\":\"auth\""));
    free(body);
    body = s_http_get(fx->http_port, "/api/batches/nightly", &status);
    assert_int_equal(status, 200);
    assert_non_null(strstr(body, "\"succeeded\":5"));
    assert_non_null(strstr(body, "\"finished\":true"));
    free(body);
    static const char *more[] = { "/api/workers", "/api/queues", "/api/keys",
                                  "/api/health" };
    for (size_t i = 0; i < 4; i++) {
        body = s_http_get(fx->http_port, more[i], &status);
        assert_int_equal(status, 200);
        free(body);
    }
    body = s_http_get(fx->http_port, "/api/nope", &status);
    assert_int_equal(status, 404);
    free(body);
    /* A missing thing is 404: a batch no job of which was seen, a job id
     * nobody has, and a path that is no job id at all. */
    static const char *missing[] = {
        "/api/batches/nope", "/api/jobs/01a20494-0000-7000-8000-000000000000",
        "/api/jobs/nope", "/api/keys/nope"
    };
    for (size_t i = 0; i < 4; i++) {
        body = s_http_get(fx->http_port, missing[i], &status);
        if (status != 404)
            fail_msg("%s: %d, not 404: %s", missing[i], status, body);
        free(body);
    }
    body = s_http_get(fx->http_port, "/api/jobs?limit=0", &status);
    assert_int_equal(status, 400);
    assert_non_null(strstr(body, "limit"));
    free(body);
}

/* `drover jobs --state dead --json` and `drover job ID --json` for a job
 * that failed twice and died. */
static void
t_cli_dead_job(void **state)
{
    s_fx_t *fx = *state;
    harness_t *h = fx->h;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--queues", "q1", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    assert_true(s_start_collector(fx, h->events, h->clients, NULL) > 0);
    s_cmp_t c = { .fx = fx, .h = h, .queue = "q1", .want = 2 };
    assert_true(harness_wait_until(s_broker_synced, &c, 10000));
    char ok[1][37], bad[1][37];
    s_submit(h, "q1", "echo", "{\"v\":1}", NULL, 0, 1, ok);
    s_submit(h, "q1", "fail",
             "{\"category\": \"timeout\", \"message\": \"took too "
             "long\\u001b[2J\"}",
             NULL, 2, 1, bad);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, bad, 1, &r, 20000), DROVER_OK);
    assert_int_equal(r.dead, 1);
    assert_int_equal(harness_wait_ids(h, ok, 1, &r, 20000), DROVER_OK);
    assert_true(harness_wait_until(s_history_count, &c, 10000));

    static char out[1 << 16];
    assert_int_equal(harness_cli(out, sizeof out, "jobs", "--state", "dead",
                                 "--json", "--collector", fx->bind, NULL),
                     0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    json_t *jobs = json_object_get(j, "jobs");
    assert_int_equal(json_array_size(jobs), 1);
    json_t *job = json_array_get(jobs, 0);
    assert_string_equal(json_string_value(json_object_get(job, "id")), bad[0]);
    assert_string_equal(json_string_value(json_object_get(job, "state")),
                        "dead");
    assert_int_equal(s_geti(job, "attempt", NULL), 2); /* a number */
    assert_null(json_object_get(job, "attempts"));
    assert_string_equal(json_string_value(json_object_get(job, "category")),
                        "timeout");
    json_decref(j);

    assert_int_equal(harness_cli(out, sizeof out, "job", bad[0], "--json",
                                 "--collector", fx->bind, "--broker",
                                 h->clients, NULL),
                     0);
    j = json_loads(out, 0, NULL);
    assert_non_null(j);
    json_t *attempts = json_object_get(j, "attempts");
    assert_int_equal(json_array_size(attempts), 2);
    for (int i = 0; i < 2; i++) {
        json_t *a = json_array_get(attempts, (size_t)i);
        assert_int_equal(s_geti(a, "attempt", NULL), i + 1);
        assert_string_equal(json_string_value(json_object_get(a, "outcome")),
                            "failed");
        assert_string_equal(json_string_value(json_object_get(a, "category")),
                            "timeout");
        /* --json gives the text as it came, escape and all */
        assert_string_equal(json_string_value(json_object_get(a, "message")),
                            "took too long\x1b[2J");
        assert_string_equal(json_string_value(json_object_get(a, "worker")),
                            "w1");
        assert_true(s_geti(a, "started_at", NULL) > 0);
        assert_true(s_geti(a, "finished_at", NULL) >=
                    s_geti(a, "started_at", NULL));
    }
    assert_string_equal(json_string_value(json_object_get(j, "state")), "dead");
    json_decref(j);

    /* For people: the hint, and the result of the job that succeeded. */
    assert_int_equal(harness_cli(out, sizeof out, "job", bad[0], "--collector",
                                 fx->bind, "--broker", h->clients, NULL),
                     0);
    assert_non_null(strstr(out, "ran past its timeout"));
    /* ... while text for a terminal shows it escaped */
    assert_non_null(strstr(out, "took too long\\x1b[2J"));
    assert_null(strchr(out, '\x1b'));
    assert_int_equal(harness_cli(out, sizeof out, "job", ok[0], "--collector",
                                 fx->bind, "--broker", h->clients, NULL),
                     0);
    assert_non_null(strstr(out, "result    7 bytes of JSON: {\"v\":1}"));
    assert_int_equal(
        harness_cli(out, sizeof out, "jobs", "--collector", fx->bind, NULL), 0);
    assert_non_null(strstr(out, bad[0]));
    assert_non_null(strstr(out, "timeout: took too long\\x1b[2J"));
    assert_null(strchr(out, '\x1b'));
    /* Usage errors and unknown jobs. */
    assert_int_equal(harness_cli(out, sizeof out, "jobs", "--state", "bogus",
                                 "--collector", fx->bind, NULL),
                     2);
    assert_int_equal(harness_cli(out, sizeof out, "job",
                                 "01a20494-0000-7000-8000-000000000000",
                                 "--collector", fx->bind, "--broker",
                                 h->clients, NULL),
                     4);
    assert_int_equal(harness_cli(out, sizeof out, "job", "nope", "--collector",
                                 fx->bind, NULL),
                     2);
    /* watch: the batch-less jobs are no batch; an unknown batch times out. */
    assert_int_equal(harness_cli(out, sizeof out, "watch", "nope", "--timeout",
                                 "0.5", "--collector", fx->bind, NULL),
                     6);
}

static void
t_watch_batch(void **state)
{
    s_fx_t *fx = *state;
    harness_t *h = fx->h;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--queues", "q1", "--concurrency", "2", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    assert_true(s_start_collector(fx, h->events, h->clients, NULL) > 0);
    s_cmp_t c = { .fx = fx, .h = h };
    assert_true(harness_wait_until(s_broker_synced, &c, 10000));
    s_submit(h, "q1", "sleep", "{\"seconds\": 0.2}", "good", 0, 6, NULL);
    char out[8192];
    assert_int_equal(harness_cli(out, sizeof out, "watch", "good", "--interval",
                                 "0.2", "--collector", fx->bind, NULL),
                     0);
    assert_non_null(strstr(out, "6/6 done"));
    s_submit(h, "q1", "echo", NULL, "mixed", 0, 3, NULL);
    s_submit(h, "q1", "fail", "{\"retryable\": false}", "mixed", 0, 1, NULL);
    assert_int_equal(harness_cli(out, sizeof out, "watch", "mixed",
                                 "--interval", "0.2", "--collector", fx->bind,
                                 NULL),
                     1);
    assert_non_null(strstr(out, "dead 1"));
}

/* health: 0 healthy, 1 degraded, 2 a broker down, 3 no collector; and a
 * broker restart (new instance) is noticed and resynced. */
static void
t_health(void **state)
{
    s_fx_t *fx = *state;
    harness_t *h = fx->h;
    pid_t b = harness_start_broker(h, NULL);
    assert_true(b > 0);
    const char *wargs[] = { "--queues", "q1", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    const char *extra[] = { "--snapshot", "0.5", "--timeout", "1", NULL };
    pid_t col = s_start_collector(fx, h->events, h->clients, extra);
    assert_true(col > 0);
    s_cmp_t c = { .fx = fx, .h = h, .want = 0 };
    assert_true(harness_wait_until(s_health_is, &c, 10000));
    s_submit(h, "orphan", "echo", NULL, NULL, 0, 3, NULL);
    c.want = 1;
    c.what = "queue orphan has 3 queued jobs and no worker serves it";
    assert_true(harness_wait_until(s_health_is, &c, 10000));

    assert_true(harness_signal(h, b, SIGKILL, 5000) >= 0);
    c.want = 2;
    c.what = "unreachable";
    assert_true(harness_wait_until(s_health_is, &c, 10000));
    int status;
    free(s_http_get(fx->http_port, "/api/health", &status));
    assert_int_equal(status, 503); /* down */
    char out[8192];
    /* status falls back to nothing: the collector still answers. */
    assert_int_equal(
        harness_cli(out, sizeof out, "status", "--collector", fx->bind, NULL),
        0);
    assert_non_null(strstr(out, "unreachable"));

    /* A new broker instance on the same store: noticed, resynced. */
    assert_true(harness_start_broker(h, NULL) > 0);
    s_grep_t g = { fx->log, "collector.broker_restarted" };
    s_submit(h, "orphan", "echo", NULL, NULL, 0, 1, NULL);
    assert_true(harness_wait_until(s_grep, &g, 10000));
    c.want = 1;
    c.what = "queue orphan has 4 queued jobs";
    assert_true(harness_wait_until(s_health_is, &c, 10000));

    assert_true(harness_signal(h, col, SIGKILL, 5000) >= 0);
    assert_int_equal(
        harness_cli(out, sizeof out, "health", "--collector", fx->bind, NULL),
        3);
    assert_int_equal(
        harness_cli(out, sizeof out, "workers", "--collector", fx->bind, NULL),
        3);
    /* status: no collector, the broker's own view instead. */
    assert_int_equal(harness_cli(out, sizeof out, "status", "--collector",
                                 fx->bind, "--broker", h->clients, NULL),
                     0);
    assert_non_null(strstr(out, "orphan"));
}

/* Garbage and bad arguments get an error answer; the collector goes on. */
static void
t_malformed_queries(void **state)
{
    s_fx_t *fx = *state;
    harness_t *h = fx->h;
    assert_true(harness_start_broker(h, NULL) > 0);
    assert_true(s_start_collector(fx, h->events, h->clients, NULL) > 0);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int timeout = harness_scale(3000), linger = 0;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_connect(s, fx->bind), 0);
    static const char *garbage[] = { "\xc1", "\x93\x01\x02", "not msgpack",
                                     "\x81\xa1v\x01" };
    for (size_t i = 0; i < 4; i++) {
        assert_true(zmq_send(s, garbage[i], strlen(garbage[i]), 0) >= 0);
        char buf[4096];
        int n = zmq_recv(s, buf, sizeof buf, 0);
        assert_true(n > 0);
        dv_msg_t m;
        assert_int_equal(dv_msg_decode(buf, (size_t)n, &m, NULL, 0), DV_OK);
        assert_int_equal(m.type, DV_MSG_ERROR);
        assert_true(m.u.error.reason.len > 0);
        assert_int_equal(m.u.error.code, DV_CODE_MALFORMED);
        dv_msg_release(&m);
    }
    /* Two frames after the routing id. */
    zmq_send(s, "a", 1, ZMQ_SNDMORE);
    zmq_send(s, "b", 1, 0);
    char buf[4096];
    int n = zmq_recv(s, buf, sizeof buf, 0);
    assert_true(n > 0);
    dv_msg_t m;
    assert_int_equal(dv_msg_decode(buf, (size_t)n, &m, NULL, 0), DV_OK);
    assert_int_equal(m.u.error.code, DV_CODE_MALFORMED);
    dv_msg_release(&m);
    /* Not a ctrl message. */
    dv_msg_t hb = { .type = DV_MSG_HEARTBEAT };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_msg_encode(&hb, &sb), DV_OK);
    assert_true(zmq_send(s, sb.data, sb.size, 0) >= 0);
    msgpack_sbuffer_destroy(&sb);
    n = zmq_recv(s, buf, sizeof buf, 0);
    assert_true(n > 0);
    assert_int_equal(dv_msg_decode(buf, (size_t)n, &m, NULL, 0), DV_OK);
    assert_int_equal(m.type, DV_MSG_ERROR);
    assert_int_equal(m.u.error.code, DV_CODE_UNKNOWN_TYPE);
    dv_msg_release(&m);
    zmq_close(s);
    zmq_ctx_term(ctx);

    if (!fx->client)
        fx->client = drover_connect(fx->bind, harness_scale(3000));
    drover_ctrl_t req = { .verb = "frobnicate" };
    assert_int_equal(drover_ctrl_ex(fx->client, &req, NULL), DROVER_EREJECTED);
    assert_non_null(strstr(drover_last_error(fx->client), "unknown verb"));
    assert_string_equal(drover_last_code(fx->client), "unknown_verb");
    static const char *bad_args[] = {
        "{\"limit\": 0}",  "{\"limit\": \"x\"}", "{\"state\": \"sleeping\"}",
        "{\"since\": -5}", "{\"queue\": 7}",     "{\"since\": \"yesterday\"}",
    };
    for (size_t i = 0; i < sizeof bad_args / sizeof bad_args[0]; i++) {
        drover_ctrl_t r = { .verb = "jobs", .args_json = bad_args[i] };
        assert_int_equal(drover_ctrl_ex(fx->client, &r, NULL),
                         DROVER_EREJECTED);
        assert_non_null(strstr(drover_last_error(fx->client), "jobs: "));
        assert_string_equal(drover_last_code(fx->client), "invalid_argument");
    }
    drover_ctrl_t nojob = { .verb = "job" };
    assert_int_equal(drover_ctrl_ex(fx->client, &nojob, NULL),
                     DROVER_EREJECTED);
    assert_string_equal(drover_last_code(fx->client), "invalid_argument");
    drover_ctrl_t unknown = { .verb = "job",
                              .id = "01a20000-0000-7000-8000-0000000000ff" };
    assert_int_equal(drover_ctrl_ex(fx->client, &unknown, NULL),
                     DROVER_EREJECTED);
    assert_string_equal(drover_last_code(fx->client), "not_found");
    drover_ctrl_t nobatch = { .verb = "batch" };
    assert_int_equal(drover_ctrl_ex(fx->client, &nobatch, NULL),
                     DROVER_EREJECTED);
    /* Still alive and answering. */
    json_t *st = s_query(fx, "status", NULL, NULL);
    assert_non_null(st);
    json_decref(st);
    assert_int_equal(kill(fx->collector, 0), 0);
}

typedef struct {
    const char *sock;
    const char *want[3];
    char screen[8192];
} s_pane_t;

/* The top pane shows every string in want. */
static bool
s_pane_shows(void *arg)
{
    s_pane_t *p = arg;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "tmux -L %s capture-pane -p -t top 2>/dev/null",
             p->sock);
    FILE *f = popen(cmd, "r");
    if (!f)
        return false;
    size_t n = fread(p->screen, 1, sizeof p->screen - 1, f);
    p->screen[n] = '\0';
    pclose(f);
    for (int i = 0; i < 3 && p->want[i]; i++)
        if (!strstr(p->screen, p->want[i]))
            return false;
    return true;
}

/* `drover top` in a real terminal (tmux): it shows the workers and queues
 * it should, refreshes, and quits on q. */
static void
t_top_under_tmux(void **state)
{
    s_fx_t *fx = *state;
    harness_t *h = fx->h;
    char tmux[512];
    if (!s_find("tmux", tmux, sizeof tmux))
        fail_msg("tmux is not on PATH: install the Debian package 'tmux' "
                 "(scripts/deps.sh lists it)");
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--queues", "images", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    assert_true(s_start_collector(fx, h->events, h->clients, NULL) > 0);
    s_cmp_t c = { .fx = fx, .h = h };
    assert_true(harness_wait_until(s_broker_synced, &c, 10000));
    s_submit(h, "images", "echo", NULL, NULL, 0, 3, NULL);
    s_submit(h, "backlog", "echo", NULL, NULL, 0, 2, NULL);

    /* A private tmux server (its own socket), killed at the end. */
    char sock[64], cmd[1400];
    snprintf(sock, sizeof sock, "drover-test-%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "tmux -L %s -f /dev/null new-session -d -s top -x 100 -y 40 "
             "'%s top --collector %s --interval 0.2'",
             sock, s_bin(), fx->bind);
    assert_int_equal(system(cmd), 0);
    s_pane_t p = { .sock = sock, .want = { "w1", "images", "backlog" } };
    bool shown = harness_wait_until(s_pane_shows, &p, 10000);
    /* It refreshes: new work shows up without a key press. */
    s_submit(h, "later", "echo", NULL, NULL, 0, 1, NULL);
    s_pane_t p2 = { .sock = sock, .want = { "later", "WORKER", "QUEUE" } };
    bool refreshed = shown && harness_wait_until(s_pane_shows, &p2, 10000);
    snprintf(cmd, sizeof cmd, "tmux -L %s send-keys -t top q", sock);
    int rc = system(cmd);
    snprintf(cmd, sizeof cmd, "tmux -L %s kill-server 2>/dev/null", sock);
    if (system(cmd) != 0) {
        /* The session ended with top: the server is gone already. */
    }
    if (!shown)
        fail_msg("drover top did not show w1, images and backlog:\n%s",
                 p.screen);
    if (!refreshed)
        fail_msg("drover top did not refresh:\n%s", p2.screen);
    assert_int_equal(rc, 0);
}

int
main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    bool pg = argc > 1 && strcmp(argv[1], "pg") == 0;
    if (argc > 1 && !pg && strcmp(argv[1], "sqlite") != 0) {
        fprintf(stderr, "usage: test_collector [sqlite|pg]\n");
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_late_start, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_gap_resync, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_backfill_lost_events, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_two_brokers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_restart_keeps_history, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_metrics_and_api, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_cli_dead_job, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_watch_batch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_health, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_malformed_queries, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_top_under_tmux, s_setup, s_teardown),
    };
    if (pg)
        return cmocka_run_group_tests_name("test_collector (postgres)", tests,
                                           s_pg_setup, s_pg_teardown);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
