/* Worker limits through real broker and worker processes: the soft
 * timeout (exec commands that trap SIGUSR1 and ones that do not, builtin
 * sleep, plugins), --max-rss-per-child recycling a child after the job in
 * flight, and per-child memory in the heartbeat. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "dv_clock.h"
#include "dv_json.h"
#include "dv_proto.h"
#include "harness.h"

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
    harness_t *h;
    const char *log;
    const char *a, *b;
    int want;
} s_log_ctx_t;

static bool
s_log_reached(void *arg)
{
    s_log_ctx_t *c = arg;
    return harness_count_lines(c->h, c->log, c->a, c->b, NULL) >= c->want;
}

static void
s_submit_t(harness_t *h, const char *queue, const char *type,
           const char *payload, double timeout_s, char id[37])
{
    if (!h->client)
        h->client = drover_connect(h->clients, harness_scale(5000));
    drover_job_t job;
    drover_job_init(&job);
    job.queue = queue;
    job.type = type;
    job.payload_json = payload;
    job.max_attempts = 1;
    job.timeout_s = timeout_s;
    assert_int_equal(drover_submit(h->client, &job, id), DROVER_OK);
}

/* How long the job's last attempt ran, in ms (store times). */
static int64_t
s_run_ms(harness_t *h, const char *id)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT finished_at - started_at FROM jobs WHERE id='%s'", id);
    return harness_sql_int(h, sql);
}

/* A number after "key": in JSON text, or -1. */
static long
s_json_num(const char *text, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(text, k);
    return p ? strtol(p + strlen(k), NULL, 10) : -1;
}

/* The first line of file name with both a and b (caller frees), or
 * NULL. */
static char *
s_find_line(harness_t *h, const char *name, const char *a, const char *b)
{
    char *text = harness_read(h, name), *save = NULL, *found = NULL;
    for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l && !found;
         l = strtok_r(NULL, "\n", &save))
        if (strstr(l, a) && strstr(l, b))
            found = strdup(l);
    free(text);
    return found;
}

/* ---- soft timeout -------------------------------------------------------- */

/* A command that traps USR1 is told at the soft timeout, wraps up and
 * succeeds, long before the hard one. It runs under `sh -c` and a second
 * shell, so the signal has to find it below the child. */
static void
t_soft_exec_trap(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char script[512], cmd[600];
    assert_int_equal(
        harness_write(
            h, "trap.sh",
            "trap 'printf \"{\\\"wrapped\\\":true,\\\"steps\\\":%d}\\n\" "
            "\"$i\"; exit 0' USR1\n"
            "i=0\n"
            "while :; do i=$((i + 1)); sleep 0.05; done\n",
            script, sizeof script),
        0);
    snprintf(cmd, sizeof cmd, "wrap=sh %s", script);
    const char *wargs[] = {
        "--exec", cmd, "--soft-timeout", "0.5", "--concurrency", "1", NULL
    };
    assert_true(harness_start_worker(h, wargs) > 0);
    char ids[1][37];
    s_submit_t(h, "default", "wrap", NULL, 20, ids[0]);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &out, 30000), DROVER_OK);
    assert_string_equal(out.state[0], "succeeded");
    assert_non_null(strstr(out.result[0], "\"wrapped\":true"));
    int64_t ran = s_run_ms(h, ids[0]);
    assert_true(ran >= 450);
    assert_true(ran < harness_scale(10000));
    assert_int_equal(harness_count_lines(h, "worker-1.log",
                                         "worker.job_soft_timeout", ids[0],
                                         NULL),
                     1);
}

/* Commands that do not catch USR1 (leave it at its default, or ignore
 * it) are not sent it: they keep running until the hard timeout stops
 * them, as before. The default soft timeout is 80% of the hard one. */
static void
t_soft_exec_unaware(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--exec",
                            "plain=sleep 30",
                            "--exec",
                            "deaf=trap '' USR1; sleep 30",
                            "--kill-grace",
                            "1",
                            "--concurrency",
                            "2",
                            NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    char ids[2][37];
    s_submit_t(h, "default", "plain", NULL, 1, ids[0]);
    s_submit_t(h, "default", "deaf", NULL, 1, ids[1]);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 2, &out, 30000), DROVER_OK);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(out.state[i], "dead");
        assert_string_equal(out.category[i], "timeout");
        assert_string_equal(out.error[i], "timed out after 1 s");
        assert_true(s_run_ms(h, ids[i]) >= 950);
        /* Told at 0.8 s all the same (the log says so). */
        char *line =
            s_find_line(h, "worker-1.log", "worker.job_soft_timeout", ids[i]);
        assert_non_null(line);
        long after = s_json_num(line, "after_ms");
        if (after < 800 || after >= 1000)
            fail_msg("told after %ld ms: %s", after, line);
        free(line);
    }
}

/* Builtin sleep stops at the soft timeout and fails "timeout", so it is
 * retried, instead of being killed at the hard one. */
static void
t_soft_builtin_sleep(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--soft-timeout", "0.3", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    char ids[1][37];
    s_submit_t(h, "default", "sleep", "{\"seconds\": 10, \"steps\": 100}", 5,
               ids[0]);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &out, 30000), DROVER_OK);
    assert_string_equal(out.state[0], "dead");
    assert_string_equal(out.category[0], "timeout");
    assert_non_null(strstr(out.error[0], "stopped at the soft timeout after"));
    assert_true(s_run_ms(h, ids[0]) < harness_scale(4000));
}

/* A plugin sees should_stop() turn true and gets its on_stop() callback;
 * with --soft-timeout 0 it is never told. */
static void
t_soft_plugin(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char plug[512];
    snprintf(plug, sizeof plug, "probe=%s", PLUGIN_PROBE);
    const char *w1[] = { "--plugin", plug, "--concurrency", "2", NULL };
    assert_true(harness_start_worker(h, w1) > 0);
    const char *w2[] = { "--plugin",       plug, "--queues", "never",
                         "--soft-timeout", "0",  NULL };
    assert_true(harness_start_worker(h, w2) > 0);
    char ids[3][37];
    /* Default: 80% of a 1 s timeout. */
    s_submit_t(h, "default", "probe", "{\"op\": \"wait_stop\", \"max\": 10}", 1,
               ids[0]);
    s_submit_t(h, "default", "probe", "{\"op\": \"on_stop\", \"max\": 10}", 1,
               ids[1]);
    s_submit_t(h, "never", "probe", "{\"op\": \"wait_stop\", \"max\": 0.5}", 5,
               ids[2]);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 3, &out, 30000), DROVER_OK);
    assert_string_equal(out.state[0], "succeeded");
    assert_non_null(strstr(out.result[0], "\"stopped\":true"));
    long after = s_json_num(out.result[0], "after_ms");
    assert_true(after >= 750 && after < 1000);
    assert_string_equal(out.result[1], "{\"callback\":true}");
    assert_string_equal(out.state[2], "succeeded");
    assert_non_null(strstr(out.result[2], "\"stopped\":false"));
}

/* ---- memory -------------------------------------------------------------- */

/* A child that grew past --max-rss-per-child finishes its job, reports
 * it, and is replaced; the jobs it held go to the new child, and nothing
 * counts an extra attempt. cleanup() runs in the old child. */
static void
t_rss_recycles_child(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char conf[1024], path[512];
    snprintf(conf, sizeof conf,
             "{\"plugins\": {\"probe\": {\"path\": \"%s\", \"config\": "
             "{\"cleanup_marker\": \"%s/cleanup.txt\"}}}}",
             PLUGIN_PROBE, h->dir);
    assert_int_equal(harness_write(h, "worker.json", conf, path, sizeof path),
                     0);
    const char *wargs[] = { "--config",   path, "--concurrency",       "1",
                            "--prefetch", "3",  "--max-rss-per-child", "160M",
                            NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    enum { N = 4 };
    char ids[N][37];
    s_submit_t(h, "default", "probe", "{\"op\": \"leak\", \"mb\": 256}", 0,
               ids[0]);
    for (int i = 1; i < N; i++)
        s_submit_t(h, "default", "probe", "{\"op\": \"leak\", \"mb\": 0}", 0,
                   ids[i]);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &out, 60000), DROVER_OK);
    long first = s_json_num(out.result[0], "pid");
    assert_true(first > 0);
    assert_int_equal(s_json_num(out.result[0], "leaked_mb"), 256);
    for (int i = 0; i < N; i++) {
        assert_string_equal(out.state[i], "succeeded");
        assert_int_equal(out.attempts[i], 1);
    }
    /* The next jobs did not start in the big child. */
    for (int i = 1; i < N; i++) {
        assert_true(s_json_num(out.result[i], "pid") != first);
        assert_int_equal(s_json_num(out.result[i], "leaked_mb"), 0);
    }
    char pid[32];
    snprintf(pid, sizeof pid, "\"child\":%ld,", first);
    assert_int_equal(harness_count_lines(h, "worker-1.log",
                                         "worker.child_recycled", pid,
                                         "\"limit_kb\":163840", NULL),
                     1);
    char *log = harness_read(h, "worker-1.log");
    const char *line = strstr(log, "worker.child_recycled");
    assert_true(s_json_num(line, "rss_kb") > 163840);
    free(log);
    s_log_ctx_t c = { h, "worker-1.log", "worker.child_exited",
                      "\"reason\":\"recycled\"", 1 };
    assert_true(harness_wait_until(s_log_reached, &c, 10000));
    char *marks = harness_read(h, "cleanup.txt");
    char want[64];
    snprintf(want, sizeof want, "cleanup %ld\n", first);
    assert_non_null(marks);
    assert_non_null(strstr(marks, want));
    free(marks);
}

/* Heartbeats carry each child's pid, resident memory and jobs, which the
 * broker publishes in worker.heartbeat events. */
static void
t_heartbeat_per_child(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "worker.heartbeat", 16);
    assert_int_equal(zmq_connect(sub, h->events), 0);
    const char *wargs[] = { "--concurrency", "3", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    char found[8192] = "";
    int64_t deadline = dv_mono_ms() + harness_scale(10000);
    harness_events_t rd;
    harness_events_init(&rd, sub);
    while (!found[0] && dv_mono_ms() < deadline) {
        const dv_event_t *ev = harness_events_next(&rd, 100);
        char *text = ev && ev->body.ptr
                         ? dv_msgpack_to_json_text(ev->body.ptr, ev->body.len)
                         : NULL;
        if (text && strstr(text, "\"per_child\""))
            snprintf(found, sizeof found, "%s", text);
        free(text);
    }
    harness_events_close(&rd);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    const char *p = strstr(found, "\"per_child\":[");
    assert_non_null(p);
    int children = 0;
    for (const char *q = p; (q = strstr(q, "\"rss_kb\":")); q++) {
        assert_true(strtol(q + 9, NULL, 10) > 0);
        children++;
    }
    assert_int_equal(children, 3);
    assert_non_null(strstr(p, "\"pid\":"));
    assert_non_null(strstr(p, "\"jobs\":"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_soft_exec_trap, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_soft_exec_unaware, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_soft_builtin_sleep, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_soft_plugin, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_rss_recycles_child, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_heartbeat_per_child, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
