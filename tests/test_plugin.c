/* Plugin handlers through real broker and worker processes: the example
 * plugin, config from the file, every way a job ends, a crash in a plugin,
 * plugins that cannot be loaded, cleanup when children leave. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <zmq.h>

#include "dv_clock.h"
#include "dv_proto.h"
#include "harness.h"

/* ---- helpers ------------------------------------------------------------- */

static void
s_submit(harness_t *h, const char *type, const char *payload, int max_attempts,
         char id[37])
{
    if (!h->client)
        h->client = drover_connect(h->clients, harness_scale(5000));
    drover_job_t job;
    drover_job_init(&job);
    job.type = type;
    job.payload_json = payload;
    job.max_attempts = max_attempts;
    job.backoff_base_s = 0.01;
    assert_int_equal(drover_submit(h->client, &job, id), DROVER_OK);
}

/* Runs `drover worker ARGS...` to its end (it must end by itself within
 * timeout_ms); returns its exit status, its stderr in err. */
static int
s_worker_status(harness_t *h, const char *const *args, char *err,
                size_t err_size)
{
    char log[512];
    snprintf(log, sizeof log, "%s/worker-direct.log", h->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        char *argv[32] = { "drover", "worker", "--broker", h->workers };
        int n = 4;
        for (int i = 0; args[i] && n < 31; i++)
            argv[n++] = (char *)args[i];
        argv[n] = NULL;
        const char *bin = getenv("DROVER_BIN");
        execv(bin && *bin ? bin : "drover", argv);
        _exit(127);
    }
    int status = -1;
    int64_t deadline = dv_mono_ms() + harness_scale(10000);
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (dv_mono_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("the worker did not exit");
        }
        poll(NULL, 0, 10); /* look again */
    }
    char *text = harness_read(h, "worker-direct.log");
    snprintf(err, err_size, "%s", text ? text : "");
    free(text);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

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

/* ---- tests --------------------------------------------------------------- */

/* The example plugin: upper-cases, reports progress, fails bad input. */
static void
t_upper_example(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char plug[512];
    snprintf(plug, sizeof plug, "upper=%s", PLUGIN_UPPER);
    const char *wargs[] = { "--plugin", plug, "--concurrency", "2", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    enum { N = 20 };
    char ids[N + 1][37];
    for (int i = 0; i < N; i++) {
        char payload[64];
        snprintf(payload, sizeof payload, "{\"text\": \"hello %d\"}", i);
        s_submit(h, "upper", payload, 1, ids[i]);
    }
    s_submit(h, "upper", "{\"words\": 3}", 3, ids[N]);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N + 1, &out, 30000), DROVER_OK);
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"text\":\"HELLO %d\",\"bytes\":%d}", i,
                 i < 10 ? 7 : 8);
        assert_string_equal(out.state[i], "succeeded");
        assert_string_equal(out.result[i], want);
    }
    /* Bad input is not retried. */
    assert_string_equal(out.state[N], "dead");
    assert_int_equal(out.attempts[N], 1);
    assert_string_equal(out.category[N], "invalid_input");
    assert_string_equal(out.error[N], "payload must be {\"text\": \"...\"}");
}

/* Progress from a plugin reaches the broker, like an exec handler's: the
 * broker publishes it as job.progress events. */
static void
t_progress_reaches_broker(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char plug[512];
    snprintf(plug, sizeof plug, "probe=%s", PLUGIN_PROBE);
    const char *wargs[] = { "--plugin", plug, "--concurrency", "1", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    /* Progress travels with the other job events, under "jobs". */
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "jobs", 4);
    assert_int_equal(zmq_connect(sub, h->events), 0);
    /* 50 steps of 20 ms: the subscription joins long before the end. */
    char ids[1][37];
    s_submit(h, "probe", "{\"op\": \"progress\", \"n\": 50}", 1, ids[0]);
    int seen = 0;
    int64_t deadline = dv_mono_ms() + harness_scale(10000);
    harness_events_t rd;
    harness_events_init(&rd, sub);
    while (seen < 3 && dv_mono_ms() < deadline) {
        const dv_event_t *ev = harness_events_next(&rd, 100);
        if (!ev || ev->kind_enum != DV_EV_JOB_PROGRESS)
            continue;
        if (dv_str_eq(ev->id, ids[0])) {
            assert_int_equal(ev->total, 50);
            assert_true(ev->current >= 1 && ev->current <= 50);
            char text[64];
            dv_str_copy(ev->message, text, sizeof text);
            assert_memory_equal(text, "step ", 5);
            seen++;
        }
    }
    harness_events_close(&rd);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    assert_int_equal(seen, 3);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &out, 10000), DROVER_OK);
    assert_string_equal(out.result[0], "{\"steps\":50}");
}

/* The config file: plugin config reaches init(); the job's fields reach
 * run(); cleanup() runs in every child when the worker drains. */
static void
t_config_file_and_cleanup(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char conf[1024], path[512];
    snprintf(conf, sizeof conf,
             "{\"concurrency\": 2, \"plugins\": {\"probe\": {\"path\": \"%s\","
             " \"config\": {\"greeting\": \"hi\", \"cleanup_marker\": "
             "\"%s/cleanup.txt\"}}}}",
             PLUGIN_PROBE, h->dir);
    assert_int_equal(harness_write(h, "worker.json", conf, path, sizeof path),
                     0);
    const char *wargs[] = { "--config", path, NULL };
    pid_t w = harness_start_worker(h, wargs);
    assert_true(w > 0);
    char ids[2][37];
    s_submit(h, "probe", "{\"op\": \"config\"}", 1, ids[0]);
    if (!h->client)
        h->client = drover_connect(h->clients, harness_scale(5000));
    drover_job_t job;
    drover_job_init(&job);
    job.type = "probe";
    job.queue = "default";
    job.payload_json = "{\"op\": \"info\"}";
    job.trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_int_equal(drover_submit(h->client, &job, ids[1]), DROVER_OK);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 2, &out, 10000), DROVER_OK);
    assert_non_null(strstr(out.result[0], "\"greeting\":\"hi\""));
    assert_non_null(strstr(out.result[1], ids[1]));
    assert_non_null(strstr(out.result[1], "\"attempt\":1"));
    assert_non_null(strstr(out.result[1], "\"worker\":\"w1\""));
    assert_non_null(strstr(out.result[1], "\"queue\":\"default\""));
    assert_non_null(strstr(out.result[1], "\"trace\":\"00-4bf92f35"));

    /* Drain: each child leaves cleanly, and cleanup() runs in it. */
    int status = harness_signal(h, w, SIGTERM, 20000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char *marks = harness_read(h, "cleanup.txt");
    assert_non_null(marks);
    int lines = 0;
    for (char *p = marks; (p = strstr(p, "cleanup ")); p++)
        lines++;
    free(marks);
    assert_int_equal(lines, 2);
}

/* How a plugin's failures end: category, message, retries. */
static void
t_failures(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char plug[512];
    snprintf(plug, sizeof plug, "probe=%s", PLUGIN_PROBE);
    const char *wargs[] = { "--plugin", plug, "--concurrency", "2", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    char ids[4][37];
    s_submit(h, "probe",
             "{\"op\": \"fail\", \"category\": \"upstream\", \"message\": "
             "\"bad gateway\", \"retryable\": true}",
             3, ids[0]);
    s_submit(h, "probe",
             "{\"op\": \"fail\", \"category\": \"auth\", \"message\": "
             "\"key revoked\", \"retryable\": false}",
             3, ids[1]);
    s_submit(h, "probe", "{\"op\": \"return\", \"code\": 75}", 2, ids[2]);
    s_submit(h, "probe", "{\"op\": \"return\", \"code\": 4}", 2, ids[3]);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 4, &out, 30000), DROVER_OK);
    assert_string_equal(out.state[0], "dead");
    assert_int_equal(out.attempts[0], 3);
    assert_string_equal(out.category[0], "upstream");
    assert_string_equal(out.error[0], "bad gateway");
    assert_int_equal(out.attempts[1], 1);
    assert_string_equal(out.category[1], "auth");
    assert_string_equal(out.error[1], "key revoked");
    assert_int_equal(out.attempts[2], 2);
    assert_string_equal(out.category[2], "handler");
    assert_string_equal(out.error[2], "plugin probe returned 75");
    assert_int_equal(out.attempts[3], 1);
    assert_string_equal(out.error[3], "plugin probe returned 4");
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT exit_code FROM attempts WHERE job_id='%s'", ids[3]);
    assert_int_equal(harness_sql_int(h, sql), 4);
}

/* A crash in a plugin takes down one child: the job fails "crashed", the
 * child is replaced and the plugin loaded again; work goes on. */
static void
t_crash_takes_one_child(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char plug[512];
    snprintf(plug, sizeof plug, "probe=%s", PLUGIN_PROBE);
    const char *wargs[] = { "--plugin", plug, "--concurrency", "2", NULL };
    pid_t w = harness_start_worker(h, wargs);
    assert_true(w > 0);
    char ids[1][37];
    s_submit(h, "probe", "{\"op\": \"crash\"}", 2, ids[0]);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &out, 20000), DROVER_OK);
    assert_string_equal(out.state[0], "dead");
    assert_int_equal(out.attempts[0], 2);
    assert_string_equal(out.category[0], "crashed");
    assert_non_null(strstr(out.error[0], "signal 6"));
    assert_int_equal(kill(w, 0), 0); /* the worker lives on */
    assert_true(harness_count_lines(h, "worker-1.log", "worker.child_exited",
                                    "\"reason\":\"crashed\"", NULL) >= 2);
    enum { N = 20 };
    char more[N][37];
    for (int i = 0; i < N; i++)
        s_submit(h, "probe", "{\"op\": \"echo\"}", 1, more[i]);
    harness_results_t o2 = { 0 };
    assert_int_equal(harness_wait_ids(h, more, N, &o2, 20000), DROVER_OK);
    assert_int_equal(o2.succeeded, N);
}

/* Plugins that cannot be used: the worker starts and says so in its log
 * (once per child), and their jobs fail "handler", not retried, saying
 * why; other handlers work. */
static void
t_unusable_plugins(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char p1[512], p2[512], p3[512];
    snprintf(p1, sizeof p1, "old=%s", PLUGIN_PROBE_ABI2);
    snprintf(p2, sizeof p2, "none=%s", PLUGIN_PROBE_NOENTRY);
    snprintf(p3, sizeof p3, "flaky=%s", PLUGIN_PROBE);
    char conf[256], path[512];
    snprintf(conf, sizeof conf,
             "{\"plugins\": {\"flaky\": {\"path\": \"%s\", \"config\": "
             "{\"fail_init\": 9}}}}",
             PLUGIN_PROBE);
    assert_int_equal(harness_write(h, "worker.json", conf, path, sizeof path),
                     0);
    const char *wargs[] = { "--config", path, "--plugin",      p1,
                            "--plugin", p2,   "--concurrency", "2",
                            NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    s_log_ctx_t c = { h, "worker-1.log", "worker.plugin_error", "ABI version 2",
                      2 };
    assert_true(harness_wait_until(s_log_reached, &c, 10000));
    c.b = "does not export drover_handler_entry";
    assert_true(harness_wait_until(s_log_reached, &c, 10000));
    c.b = "init() returned 9";
    assert_true(harness_wait_until(s_log_reached, &c, 10000));

    char ids[4][37];
    s_submit(h, "old", NULL, 3, ids[0]);
    s_submit(h, "none", NULL, 3, ids[1]);
    s_submit(h, "flaky", NULL, 2, ids[2]);
    s_submit(h, "echo", "\"still here\"", 1, ids[3]);
    harness_results_t out = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 4, &out, 20000), DROVER_OK);
    assert_string_equal(out.state[0], "dead");
    assert_int_equal(out.attempts[0], 1);
    assert_string_equal(out.category[0], "handler");
    assert_non_null(strstr(out.error[0], "built for handler ABI version 2, "
                                         "and this worker has version 1"));
    assert_int_equal(out.attempts[1], 1);
    assert_string_equal(out.category[1], "handler");
    assert_non_null(strstr(out.error[1], "does not export"));
    /* init() failing may pass: it is retried, and so is the job. */
    assert_int_equal(out.attempts[2], 2);
    assert_string_equal(out.category[2], "handler");
    assert_non_null(strstr(out.error[2], "init() returned 9"));
    assert_string_equal(out.result[3], "\"still here\"");
}

/* A plugin file that is not there stops the worker at start (status 2). */
static void
t_missing_file_is_a_usage_error(void **state)
{
    harness_t *h = *state;
    char err[2048];
    const char *a1[] = { "--plugin", "x=/nonexistent/x.so", NULL };
    assert_int_equal(s_worker_status(h, a1, err, sizeof err), 2);
    assert_non_null(strstr(err, "--plugin: cannot read '/nonexistent/x.so' "
                                "for type 'x': No such file or directory"));
    const char *a2[] = { "--plugin", "justaname", NULL };
    assert_int_equal(s_worker_status(h, a2, err, sizeof err), 2);
    assert_non_null(strstr(err, "expected TYPE=PATH"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_upper_example, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_progress_reaches_broker,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_config_file_and_cleanup,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_failures, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_crash_takes_one_child, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_unusable_plugins, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_missing_file_is_a_usage_error,
                                        harness_setup, harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
