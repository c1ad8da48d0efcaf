/* Control verbs through the broker, with real processes: retry, pause and
 * resume (kept across a restart), purge, and fleet-wide rate and running
 * limits measured across several workers. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"

/* A ctrl verb; args_json: further arguments ({"create": true}) or NULL. */
static int
s_ctrl_args(harness_t *h, const char *verb, const char *id, const char *queue,
            int dead, double value, const char *args_json, char **body)
{
    if (!h->client)
        h->client = drover_connect(h->clients, harness_scale(5000));
    drover_ctrl_t req = {
        .verb = verb,
        .id = id,
        .queue = queue,
        .dead = dead,
        .args_json = args_json,
    };
    if (value >= 0) {
        req.has_value = 1;
        req.value = value;
    }
    return drover_ctrl_ex(h->client, &req, body);
}

static int
s_ctrl(harness_t *h, const char *verb, const char *id, const char *queue,
       int dead, double value, char **body)
{
    return s_ctrl_args(h, verb, id, queue, dead, value, NULL, body);
}

#define S_CREATE "{\"create\": true}"

static int
s_submit(harness_t *h, const char *queue, const char *type, const char *payload,
         double delay, char id[37])
{
    if (!h->client)
        h->client = drover_connect(h->clients, harness_scale(5000));
    drover_job_t job;
    drover_job_init(&job);
    job.queue = queue;
    job.type = type;
    job.payload_json = payload;
    job.delay_s = delay;
    job.max_attempts = 1;
    return drover_submit(h->client, &job, id);
}

typedef struct {
    harness_t *h;
} s_ctx_t;

static bool
s_anything_dispatched(void *arg)
{
    s_ctx_t *c = arg;
    return harness_counter(c->h, "dispatched") > 0;
}

static void
t_retry_dead_jobs(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    /* A handler that fails until a flag file exists. */
    char flag[300], handler[700];
    snprintf(flag, sizeof flag, "%s/ok", h->dir);
    snprintf(handler, sizeof handler,
             "flaky=test -f %s && echo '\"fine\"' || { echo 'not yet' >&2; "
             "exit 3; }",
             flag);
    const char *wargs[] = { "--queues", "q1", "--exec", handler, NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    char ids[3][37];
    for (int i = 0; i < 3; i++)
        assert_int_equal(s_submit(h, "q1", "flaky", NULL, 0, ids[i]),
                         DROVER_OK);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 3, &r, 20000), DROVER_OK);
    assert_int_equal(r.dead, 3);

    FILE *f = fopen(flag, "w");
    assert_non_null(f);
    fclose(f);
    /* One by id... */
    assert_int_equal(s_ctrl(h, "retry", ids[0], NULL, 0, -1, NULL), DROVER_OK);
    harness_results_t r1 = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &r1, 20000), DROVER_OK);
    assert_int_equal(r1.succeeded, 1);
    assert_int_equal(r1.attempts[0], 1); /* all its attempts again */
    /* ...a succeeded job is not retried... */
    assert_int_equal(s_ctrl(h, "retry", ids[0], NULL, 0, -1, NULL),
                     DROVER_EREJECTED);
    assert_non_null(strstr(drover_last_error(h->client), "succeeded"));
    assert_string_equal(drover_last_code(h->client), "not_allowed");
    /* ...then every dead one of the queue. */
    char *body = NULL;
    assert_int_equal(s_ctrl(h, "retry", NULL, "q1", 1, -1, &body), DROVER_OK);
    assert_non_null(body);
    assert_non_null(strstr(body, "\"retried\":2"));
    free(body);
    harness_results_t r2 = { 0 };
    assert_int_equal(harness_wait_ids(h, ids + 1, 2, &r2, 20000), DROVER_OK);
    assert_int_equal(r2.succeeded, 2);
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE state='succeeded'"),
        3);
}

static void
t_pause_resume_survives_restart(void **state)
{
    harness_t *h = *state;
    pid_t b = harness_start_broker(h, NULL);
    assert_true(b > 0);
    /* Before its first job: refused, unless asked to make the queue. */
    assert_int_equal(s_ctrl(h, "pause", NULL, "q2", 0, -1, NULL),
                     DROVER_EREJECTED);
    assert_string_equal(drover_last_code(h->client), "not_found");
    assert_non_null(strstr(drover_last_error(h->client), "no queue 'q2'"));
    char *body = NULL;
    assert_int_equal(
        s_ctrl_args(h, "pause", NULL, "q2", 0, -1, S_CREATE, &body), DROVER_OK);
    assert_non_null(body);
    assert_non_null(strstr(body, "\"paused\":true"));
    free(body);
    const char *wargs[] = { "--queues", "q2", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    char ids[5][37];
    for (int i = 0; i < 5; i++)
        assert_int_equal(s_submit(h, "q2", "noop", NULL, 0, ids[i]), DROVER_OK);
    /* A worker with free slots is there, yet nothing starts. */
    s_ctx_t c = { h };
    assert_false(harness_wait_until(s_anything_dispatched, &c, 700));

    /* Still paused after a crash and restart of the broker. */
    assert_true(harness_signal(h, b, SIGKILL, 5000) >= 0);
    assert_true(harness_start_broker(h, NULL) > 0);
    char *st = harness_status(h);
    assert_non_null(st);
    assert_non_null(strstr(st, "\"paused\":true"));
    free(st);
    assert_false(harness_wait_until(s_anything_dispatched, &c, 500));

    assert_int_equal(s_ctrl(h, "resume", NULL, "q2", 0, -1, NULL), DROVER_OK);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 5, &r, 20000), DROVER_OK);
    assert_int_equal(r.succeeded, 5);
}

static void
t_purge_cancels_waiting_jobs(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char ids[11][37];
    for (int i = 0; i < 10; i++)
        assert_int_equal(
            s_submit(h, "q3", "noop", NULL, i < 5 ? 0 : 60, ids[i]), DROVER_OK);
    assert_int_equal(s_submit(h, "other", "noop", NULL, 0, ids[10]), DROVER_OK);
    char *body = NULL;
    assert_int_equal(s_ctrl(h, "purge", NULL, "q3", 0, -1, &body), DROVER_OK);
    assert_non_null(strstr(body, "\"purged\":10"));
    free(body);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 10, &r, 10000), DROVER_OK);
    assert_int_equal(r.cancelled, 10);
    /* The other queue is untouched. */
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE queue='other' "
                           "AND state='queued'"),
        1);
}

/* Started within any one second: never more than the rate plus its burst
 * (a tenth of a second's worth, at least one). */
static void
t_rate_limit_holds_across_workers(void **state)
{
    harness_t *h = *state;
    const char *bargs[] = { "--queue-rate", "q4=20", NULL };
    assert_true(harness_start_broker(h, bargs) > 0);
    const char *wargs[] = { "--queues", "q4", "--concurrency", "2", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    assert_true(harness_start_worker(h, wargs) > 0);
    enum { N = 50 };
    char ids[N][37];
    assert_int_equal(harness_submit_n(h, "q4", "noop", NULL, N, ids), 0);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &r, 30000), DROVER_OK);
    assert_int_equal(r.succeeded, N);
    /* Both workers took part. */
    assert_int_equal(
        harness_sql_int(h, "SELECT count(DISTINCT worker) FROM jobs"), 2);
    int64_t span = harness_sql_int(
        h, "SELECT max(started_at) - min(started_at) FROM jobs");
    assert_true(span >= (N - 2) * 1000 / 20 - 100);
    assert_true(harness_sql_int(
                    h, "SELECT max(c) FROM (SELECT count(*) AS c FROM jobs a "
                       "JOIN jobs b ON b.started_at >= a.started_at "
                       "AND b.started_at < a.started_at + 1000 "
                       "GROUP BY a.id)") <= 20 + 2);
    /* Lifted at run time: the rest go at once. */
    assert_int_equal(s_ctrl(h, "rate", NULL, "q4", 0, 0, NULL), DROVER_OK);
    char more[40][37];
    int64_t before = harness_sql_int(h, "SELECT max(finished_at) FROM jobs");
    assert_int_equal(harness_submit_n(h, "q4", "noop", NULL, 40, more), 0);
    harness_results_t r2 = { 0 };
    assert_int_equal(harness_wait_ids(h, more, 40, &r2, 20000), DROVER_OK);
    assert_int_equal(r2.succeeded, 40);
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT max(started_at) - min(started_at) FROM jobs "
             "WHERE started_at > %lld",
             (long long)before);
    assert_true(harness_sql_int(h, sql) < 1000);
}

/* Never more than max-running jobs of the queue running at once, counted
 * by the broker's own lease times, although the workers have room for 6. */
static void
t_max_running_holds_across_workers(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    assert_int_equal(s_ctrl(h, "max-running", NULL, "q5", 0, 2, NULL),
                     DROVER_EREJECTED);
    assert_string_equal(drover_last_code(h->client), "not_found");
    assert_int_equal(
        s_ctrl_args(h, "max-running", NULL, "q5", 0, 2, S_CREATE, NULL),
        DROVER_OK);
    const char *wargs[] = { "--queues", "q5", "--concurrency", "3", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    assert_true(harness_start_worker(h, wargs) > 0);
    enum { N = 10 };
    char ids[N][37];
    assert_int_equal(harness_submit_n(h, "q5", "sleep", "0.2", N, ids), 0);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &r, 30000), DROVER_OK);
    assert_int_equal(r.succeeded, N);
    int64_t most = harness_sql_int(
        h, "SELECT max(c) FROM (SELECT count(*) AS c FROM jobs a JOIN jobs b "
           "ON b.started_at <= a.started_at AND b.finished_at > a.started_at "
           "GROUP BY a.id)");
    assert_true(most >= 1);
    assert_true(most <= 2);
    /* Ten jobs of 0.2 s, two at a time: at least a second. */
    assert_true(harness_sql_int(
                    h, "SELECT max(finished_at) - min(started_at) FROM jobs") >=
                900);
    char *st = harness_status(h);
    assert_non_null(strstr(st, "\"max_running\":2"));
    free(st);
}

static void
t_bad_control_requests(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    assert_int_equal(s_ctrl(h, "pause", NULL, NULL, 0, -1, NULL),
                     DROVER_EREJECTED);
    assert_non_null(strstr(drover_last_error(h->client), "queue"));
    assert_string_equal(drover_last_code(h->client), "invalid_argument");
    assert_int_equal(s_ctrl(h, "rate", NULL, "q", 0, -1, NULL),
                     DROVER_EREJECTED);
    assert_int_equal(s_ctrl(h, "retry", NULL, NULL, 0, -1, NULL),
                     DROVER_EREJECTED);
    assert_int_equal(s_ctrl(h, "retry", "01a20470-abfa-73fc-8402-859771cc63e2",
                            NULL, 0, -1, NULL),
                     DROVER_EREJECTED);
    assert_non_null(strstr(drover_last_error(h->client), "no such job"));
    assert_string_equal(drover_last_code(h->client), "not_found");
    assert_int_equal(s_ctrl(h, "frobnicate", NULL, NULL, 0, -1, NULL),
                     DROVER_EREJECTED);
    assert_non_null(strstr(drover_last_error(h->client), "unknown verb"));
    assert_string_equal(drover_last_code(h->client), "unknown_verb");
}

typedef struct {
    harness_t *h;
    const char *id;
} s_job_ctx_t;

static bool
s_job_running(void *arg)
{
    s_job_ctx_t *c = arg;
    char *body = NULL;
    if (drover_ctrl(c->h->client, "job", c->id, NULL, &body) != DROVER_OK)
        return false;
    bool yes = strstr(body, "\"state\":\"running\"") != NULL;
    free(body);
    return yes;
}

/* drain WORKER: the worker takes no more jobs, finishes what it runs,
 * hands back the rest without losing an attempt, and exits 0. */
static void
t_drain_worker(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--queues", "q6",         "--concurrency",
                            "1",        "--prefetch", "4",
                            NULL };
    pid_t w1 = harness_start_worker(h, wargs); /* named w1 */
    assert_true(w1 > 0);
    enum { N = 4 };
    char ids[N][37];
    assert_int_equal(harness_submit_n(h, "q6", "sleep", "0.3", N, ids), 0);
    s_job_ctx_t c = { h, ids[0] };
    assert_true(harness_wait_until(s_job_running, &c, 10000));
    assert_int_equal(s_ctrl(h, "drain", NULL, NULL, 0, -1, NULL),
                     DROVER_EREJECTED);
    drover_ctrl_t bad = { .verb = "drain", .worker = "nobody" };
    assert_int_equal(drover_ctrl_ex(h->client, &bad, NULL), DROVER_EREJECTED);
    assert_non_null(strstr(drover_last_error(h->client), "no such worker"));
    assert_string_equal(drover_last_code(h->client), "not_found");
    drover_ctrl_t req = { .verb = "drain", .worker = "w1" };
    assert_int_equal(drover_ctrl_ex(h->client, &req, NULL), DROVER_OK);
    int status = harness_wait_exit(h, w1, 20000);
    assert_true(status >= 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(harness_worker_count(h), 0);
    assert_true(harness_start_worker(h, wargs) > 0);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &r, 30000), DROVER_OK);
    assert_int_equal(r.succeeded, N);
    assert_int_equal(r.max_attempts, 1);
    assert_int_equal(harness_counter(h, "lost"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_bad_control_requests, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_retry_dead_jobs, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_pause_resume_survives_restart,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_purge_cancels_waiting_jobs,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_rate_limit_holds_across_workers,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_max_running_holds_across_workers,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_drain_worker, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
