/* The broker's store fills up while jobs run, and space comes back: real
 * broker, worker and collector processes, the store on a small tmpfs
 * mounted in the test's directory (so the test needs root; without it the
 * test is skipped, saying so).
 *
 * While the disk is full: new submits are refused with the cause (no
 * space left on device), `drover status` and `drover health` say so, no
 * job is dispatched, and the outcomes of the jobs that were running are
 * kept. Once a filler file is removed the broker catches up by itself:
 * every acknowledged job ends succeeded, run exactly once (the exec
 * handler appends one line per run), `drover check` finds the store in
 * agreement with memory, and the broker's log has one broker.store_failed
 * and one broker.store_recovered line. Waiting is polling with deadlines.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dv_clock.h"
#include "harness.h"

#define S_JOBS        48
#define S_TMPFS_BYTES (8 << 20)

typedef struct {
    harness_t *h;
    char mnt[280];       /* the tmpfs the store lives on */
    char filler[340];    /* fills the tmpfs */
    char collector[320]; /* its query endpoint */
    char exec_log[320];  /* one line per run: the job id */
} s_fx_t;

static int
s_setup(void **state)
{
    if (geteuid() != 0) {
        print_message("test_store_outage: skipped: mounting a tmpfs for the "
                      "store needs root (CI runs as root)\n");
        *state = NULL;
        return 0;
    }
    s_fx_t *fx = calloc(1, sizeof *fx);
    if (!fx || !(fx->h = harness_new())) {
        free(fx);
        return -1;
    }
    snprintf(fx->collector, sizeof fx->collector, "ipc://%s/collector",
             fx->h->dir);
    snprintf(fx->exec_log, sizeof fx->exec_log, "%s/exec.log", fx->h->dir);
    if (harness_mount_tmpfs(fx->h, "store", S_TMPFS_BYTES, fx->mnt,
                            sizeof fx->mnt) != 0) {
        print_message("test_store_outage: cannot mount a tmpfs on %s/store: "
                      "%s\n",
                      fx->h->dir, strerror(errno));
        harness_destroy(&fx->h);
        free(fx);
        return -1;
    }
    snprintf(fx->filler, sizeof fx->filler, "%s/filler", fx->mnt);
    snprintf(fx->h->store, sizeof fx->h->store, "%s/drover.db", fx->mnt);
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    s_fx_t *fx = *state;
    if (!fx)
        return 0;
    harness_destroy(&fx->h); /* the processes, then the mount, then the dir */
    free(fx);
    return 0;
}

/* Writes the filler until the tmpfs is full. Returns the bytes written. */
static long
s_fill(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    static char block[65536];
    memset(block, 0xa5, sizeof block);
    long total = 0;
    for (;;) {
        ssize_t w = write(fd, block, sizeof block);
        if (w <= 0) {
            assert_int_equal(errno, ENOSPC);
            break;
        }
        total += w;
    }
    close(fd);
    return total;
}

/* harness_sql_int, and when it fails, SQLite's own reason in the test's
 * output (the store is on a filesystem that was full a moment ago). */
static int64_t
s_sql(s_fx_t *fx, const char *sql)
{
    int64_t v = harness_sql_int(fx->h, sql);
    if (v >= 0)
        return v;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open_v2(fx->h->store, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    print_message("test_store_outage: %s: rc %d (%s), errno %d\n", sql,
                  db ? sqlite3_extended_errcode(db) : rc,
                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
                  db ? sqlite3_system_errno(db) : 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* ---- the broker's and the collector's views ------------------------------ */

static json_t *
s_status(s_fx_t *fx)
{
    char *body = harness_status(fx->h);
    json_t *st = body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    return st;
}

static bool
s_store_failing(void *arg)
{
    json_t *st = s_status(arg);
    bool yes = st && json_object_get(st, "store_failure");
    json_decref(st);
    return yes;
}

static bool
s_store_ok(void *arg)
{
    json_t *st = s_status(arg);
    bool yes = st && !json_object_get(st, "store_failure");
    json_decref(st);
    return yes;
}

/* Every running job has reported, and some wait that are not dispatched. */
static bool
s_nothing_running(void *arg)
{
    json_t *st = s_status(arg);
    json_t *q = st ? json_array_get(json_object_get(st, "queues"), 0) : NULL;
    bool yes = q && json_integer_value(json_object_get(q, "running")) == 0 &&
               json_integer_value(json_object_get(q, "queued")) > 0;
    json_decref(st);
    return yes;
}

typedef struct {
    s_fx_t *fx;
    int64_t want;
} s_count_t;

static bool
s_succeeded_at_least(void *arg)
{
    s_count_t *c = arg;
    return harness_counter(c->fx->h, "succeeded") >= c->want;
}

static bool
s_health_degraded(void *arg)
{
    s_fx_t *fx = arg;
    char out[4096];
    int rc = harness_cli(out, sizeof out, "health", "--collector",
                         fx->collector, NULL);
    return rc == 1 &&
           strstr(out, "cannot write its store: no space left on device");
}

static bool
s_health_ok(void *arg)
{
    s_fx_t *fx = arg;
    char out[4096];
    return harness_cli(out, sizeof out, "health", "--collector", fx->collector,
                       NULL) == 0;
}

static pid_t
s_start_collector(s_fx_t *fx)
{
    harness_t *h = fx->h;
    char store[320];
    snprintf(store, sizeof store, "%s/collector.db", h->dir);
    const char *args[] = {
        "collector",   "--events",    h->events,     "--broker",
        h->clients,    "--bind",      fx->collector, "--http",
        "127.0.0.1:0", "--store",     store,         "--snapshot",
        "0.2",         "--log-level", "debug",       NULL,
    };
    return harness_spawn(h, args, NULL, "collector.log");
}

/* Submits n jobs in one call; counts accepted ones into ids[*nids] and
 * refusals into *refused, checking each refusal's reason and code. */
static void
s_submit(s_fx_t *fx, int n, char (*ids)[37], int *nids, int *refused,
         bool want_refused)
{
    harness_t *h = fx->h;
    if (!h->client)
        h->client = drover_connect(h->clients, harness_scale(5000));
    assert_non_null(h->client);
    drover_job_t jobs[16];
    drover_ack_t acks[16];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].queue = "q";
        jobs[i].type = "sh";
        jobs[i].payload_json = "{}";
    }
    drover_submit_many(h->client, jobs, (size_t)n, acks);
    for (int i = 0; i < n; i++) {
        if (acks[i].error[0]) {
            if (!want_refused)
                fail_msg("job refused: %s", acks[i].error);
            assert_non_null(strstr(acks[i].error, "no space left on device"));
            assert_non_null(acks[i].code);
            assert_string_equal(acks[i].code, "store");
            (*refused)++;
        } else {
            if (want_refused)
                fail_msg("job accepted while the store is full");
            memcpy(ids[(*nids)++], acks[i].id, 37);
        }
    }
}

/* How often each id appears in the handler's log; fails on a job that ran
 * other than once, or a line for a job not acknowledged. */
static void
s_assert_once_each(s_fx_t *fx, char (*ids)[37], int n)
{
    char *log = harness_read(fx->h, "exec.log");
    assert_non_null(log);
    int lines = 0;
    for (char *p = log; *p; p++)
        lines += *p == '\n';
    for (int i = 0; i < n; i++) {
        int count = 0;
        for (const char *p = log; (p = strstr(p, ids[i])); p += 36)
            count++;
        if (count != 1)
            fail_msg("job %s ran %d times", ids[i], count);
    }
    assert_int_equal(lines, n);
    free(log);
}

/* ---- the test ------------------------------------------------------------ */

static void
t_disk_full_while_jobs_run(void **state)
{
    s_fx_t *fx = *state;
    if (!fx) {
        skip();
        return;
    }
    harness_t *h = fx->h;
    assert_true(harness_start_broker(h, NULL) > 0);
    assert_true(s_start_collector(fx) > 0);
    char handler[600];
    snprintf(handler, sizeof handler,
             "sh=echo \"$DROVER_JOB_ID\" >> %s; sleep 0.2; echo '{}'",
             fx->exec_log);
    const char *wargs[] = { "--queues", "q", "--concurrency", "4", "--exec",
                            handler,    NULL };
    assert_true(harness_start_worker(h, wargs) > 0);

    static char ids[S_JOBS + 64][37];
    int nids = 0, refused = 0;
    for (int i = 0; i < S_JOBS; i += 16)
        s_submit(fx, 16, ids, &nids, &refused, false);
    assert_int_equal(nids, S_JOBS);

    /* The disk fills while jobs run. */
    s_count_t c = { fx, 4 };
    assert_true(harness_wait_until(s_succeeded_at_least, &c, 20000));
    long filled = s_fill(fx->filler);
    assert_true(harness_wait_until(s_store_failing, fx, 10000));
    int64_t stored_before =
        s_sql(fx, "SELECT count(*) FROM jobs WHERE state = 'succeeded'");

    /* Submits are refused with the cause; the broker says why. */
    for (int k = 0; k < 3; k++)
        s_submit(fx, 4, ids, &nids, &refused, true);
    assert_int_equal(refused, 12);
    json_t *st = s_status(fx);
    assert_non_null(st);
    json_t *sf = json_object_get(st, "store_failure");
    assert_non_null(sf);
    assert_string_equal(json_string_value(json_object_get(sf, "error")),
                        "no space left on device");
    assert_true(json_integer_value(json_object_get(sf, "refused")) >= 12);
    json_decref(st);
    assert_true(harness_wait_until(s_health_degraded, fx, 10000));
    char out[8192];
    assert_int_equal(harness_cli(out, sizeof out, "status", "--collector",
                                 fx->collector, NULL),
                     0);
    assert_non_null(strstr(out, "store FAILING: no space left on device"));
    /* The broker's own view, as status shows it without a collector. */
    assert_int_equal(harness_cli(out, sizeof out, "status", "--collector",
                                 "ipc:///nonexistent/collector", "--broker",
                                 h->clients, NULL),
                     0);
    assert_non_null(strstr(out, "store FAILING: no space left on device"));
    /* It cannot check: refused (1), with the cause. */
    assert_int_equal(
        harness_cli(out, sizeof out, "check", "--broker", h->clients, NULL), 1);

    /* The running jobs report; nothing new starts; their outcomes wait in
     * memory for the store. */
    assert_true(harness_wait_until(s_nothing_running, fx, 10000));
    int64_t succeeded_mem = harness_counter(h, "succeeded");
    assert_true(succeeded_mem > stored_before);

    /* Space comes back: the broker catches up by itself. */
    int64_t t0 = dv_mono_ms();
    assert_int_equal(unlink(fx->filler), 0);
    assert_true(harness_wait_until(s_store_ok, fx, 10000));
    int64_t catch_up_ms = dv_mono_ms() - t0;

    harness_results_t res = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, nids, &res, 60000), DROVER_OK);
    assert_int_equal(res.n, nids);
    assert_int_equal(res.succeeded, nids);
    assert_int_equal(res.max_attempts, 1);
    assert_int_equal(
        s_sql(fx, "SELECT count(*) FROM jobs WHERE state = 'succeeded'"), nids);
    assert_int_equal(s_sql(fx, "SELECT count(*) FROM jobs"), nids);
    s_assert_once_each(fx, ids, nids);

    assert_int_equal(
        harness_cli(out, sizeof out, "check", "--broker", h->clients, NULL), 0);
    assert_non_null(strstr(out, "consistent"));
    assert_true(harness_wait_until(s_health_ok, fx, 10000));

    assert_int_equal(harness_count_lines(h, "broker.log",
                                         "\"msg\":\"broker.store_failed\"",
                                         NULL),
                     1);
    assert_int_equal(harness_count_lines(h, "broker.log",
                                         "\"msg\":\"broker.store_recovered\"",
                                         NULL),
                     1);
    /* Not a line per pass: the store says it once per kind of failure. */
    int store_errors =
        harness_count_lines(h, "broker.log", "\"msg\":\"store.sqlite_error\"",
                            "\"level\":\"error\"", NULL);
    assert_true(store_errors >= 1 && store_errors <= 3);
    print_message("outage: %d jobs acknowledged, %d submits refused, %ld "
                  "bytes of filler, %lld succeeded in memory vs %lld stored "
                  "during it, caught up in %lld ms after space came back\n",
                  nids, refused, filled, (long long)succeeded_mem,
                  (long long)stored_before, (long long)catch_up_ms);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_disk_full_while_jobs_run, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
