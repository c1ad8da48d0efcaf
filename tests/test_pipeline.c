/* End-to-end behaviour through real broker and worker processes: outcomes,
 * retries, delays, priorities, idempotency, cancel, handlers. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cmocka.h>

#include <jansson.h>
#include <zmq.h>

#include "dv_clock.h"
#include "dv_proto.h"
#include "harness.h"

static harness_t *
s_up(void **state, int workers, const char *const *wargs)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    for (int i = 0; i < workers; i++)
        assert_true(harness_start_worker(h, wargs) > 0);
    return h;
}

static int
s_submit_one(harness_t *h, drover_job_t *job, char id[37])
{
    if (!h->client)
        h->client = drover_connect(h->clients, harness_scale(5000));
    return drover_submit(h->client, job, id);
}

/* ---- tests -------------------------------------------------------------------- */

static void
t_ten_thousand_succeed(void **state)
{
    const char *wargs[] = { "--concurrency", "2", NULL };
    harness_t *h = s_up(state, 2, wargs);
    enum { N = 10000 };
    char(*ids)[37] = calloc(N, 37);
    assert_int_equal(harness_submit_n(h, "default", "noop", NULL, N, ids), 0);
    harness_results_t *r = calloc(1, sizeof *r);
    assert_int_equal(harness_wait_ids(h, ids, N, r, 120000), DROVER_OK);
    assert_int_equal(r->n, N);
    assert_int_equal(r->succeeded, N);
    assert_int_equal(harness_counter(h, "succeeded"), N);
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE state='succeeded'"),
        N);
    free(r);
    free(ids);
}

typedef struct {
    harness_t *h;
    const char *name;
    int64_t at_least;
} s_counter_ctx_t;

static bool
s_counter_at_least(void *arg)
{
    s_counter_ctx_t *c = arg;
    return harness_counter(c->h, c->name) >= c->at_least;
}

/* Every ended job's group is durable: none is left in memory. */
static bool
s_none_live(void *arg)
{
    return harness_counter(arg, "live_jobs") == 0;
}

/* The broker's store reads so far (the counter is absent while 0). */
static int64_t
s_reads(harness_t *h)
{
    int64_t n = harness_counter(h, "store_reads");
    return n > 0 ? n : 0;
}
/* submit {wait:true}: results are pushed as jobs end, so the wait that
 * follows a big submit reads nothing from the store; without it, the jobs
 * that ended before the wait are each read back. */
static void
t_submit_wait_pushes_results(void **state)
{
    const char *wargs[] = { "--concurrency", "2", NULL };
    harness_t *h = s_up(state, 1, wargs);
    enum { N = 3000 };
    drover_job_t *jobs = calloc(N, sizeof *jobs);
    drover_ack_t *acks = calloc(N, sizeof *acks);
    char(*ids)[37] = calloc(N, 37);
    for (int i = 0; i < N; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "noop";
    }
    drover_client_t *c = drover_connect(h->clients, harness_scale(10000));
    assert_non_null(c);
    int64_t reads0 = s_reads(h);
    assert_int_equal(
        drover_submit_many_ex(c, jobs, N, acks, DROVER_SUBMIT_WAIT), DROVER_OK);
    for (int i = 0; i < N; i++) {
        assert_string_equal(acks[i].error, "");
        memcpy(ids[i], acks[i].id, 37);
    }
    /* Let every job end, durably, before the wait, as a slow caller
     * would. */
    s_counter_ctx_t cc = { h, "succeeded", N };
    assert_true(harness_wait_until(s_counter_at_least, &cc, 60000));
    assert_true(harness_wait_until(s_none_live, h, 60000));
    harness_results_t *r = calloc(1, sizeof *r);
    drover_client_t *keep = h->client;
    h->client = c;
    assert_int_equal(harness_wait_ids(h, ids, N, r, 60000), DROVER_OK);
    h->client = keep;
    assert_int_equal(r->n, N);
    assert_int_equal(r->succeeded, N);
    assert_true(s_reads(h) - reads0 < 3); /* not one per job */

    /* The same without the flag: the ended jobs are read back. */
    assert_int_equal(drover_submit_many(c, jobs, N, acks), DROVER_OK);
    for (int i = 0; i < N; i++)
        memcpy(ids[i], acks[i].id, 37);
    cc.at_least = 2 * N;
    assert_true(harness_wait_until(s_counter_at_least, &cc, 60000));
    assert_true(harness_wait_until(s_none_live, h, 60000));
    reads0 = s_reads(h);
    memset(r, 0, sizeof *r);
    h->client = c;
    assert_int_equal(harness_wait_ids(h, ids, N, r, 60000), DROVER_OK);
    h->client = keep;
    assert_int_equal(r->succeeded, N);
    assert_true(s_reads(h) - reads0 >= 1);
    drover_close(&c);
    free(r);
    free(ids);
    free(acks);
    free(jobs);
}

static void
t_echo_result_round_trip(void **state)
{
    harness_t *h = s_up(state, 1, NULL);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "echo";
    job.payload_json = "{\"prompt\":\"hello\",\"n\":3,\"tags\":[\"a\",\"b\"]}";
    char ids[1][37];
    assert_int_equal(s_submit_one(h, &job, ids[0]), DROVER_OK);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &r, 10000), DROVER_OK);
    assert_int_equal(r.succeeded, 1);
    assert_non_null(strstr(r.result[0], "\"prompt\":\"hello\""));
    assert_non_null(strstr(r.result[0], "\"tags\":[\"a\",\"b\"]"));
}

/* `drover submit --file --wait` with two lines of one idempotency key:
 * both lines name the one job, and each line gets its result. */
static void
t_cli_wait_same_key(void **state)
{
    harness_t *h = s_up(state, 1, NULL);
    char path[512];
    assert_int_equal(harness_write(h, "keys.jsonl",
                                   "{\"type\": \"echo\", \"payload\": 1, "
                                   "\"key\": \"k\"}\n"
                                   "{\"type\": \"echo\", \"payload\": 2}\n"
                                   "{\"type\": \"echo\", \"payload\": 3, "
                                   "\"key\": \"k\"}\n",
                                   path, sizeof path),
                     0);
    char out[4096];
    assert_int_equal(harness_cli(out, sizeof out, "submit", "--broker",
                                 h->clients, "--file", path, "--wait",
                                 "--quiet", "--no-progress", NULL),
                     0);
    char id_of[4][37] = { "", "", "", "" };
    int lines = 0;
    for (char *p = out; *p; lines++) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        *nl = '\0';
        json_t *r = json_loads(p, 0, NULL);
        assert_non_null(r);
        int line = (int)json_integer_value(json_object_get(r, "line"));
        assert_true(line >= 1 && line <= 3);
        assert_string_equal(json_string_value(json_object_get(r, "state")),
                            "succeeded");
        snprintf(id_of[line], sizeof id_of[line], "%s",
                 json_string_value(json_object_get(r, "id")));
        json_decref(r);
        p = nl + 1;
    }
    assert_int_equal(lines, 3);
    assert_string_equal(id_of[1], id_of[3]);
    assert_string_not_equal(id_of[1], id_of[2]);
}

/* Whether 127.0.0.1:port can be bound now. */
static bool
s_port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* A port P with P..P+n-1 free on 127.0.0.1 (the system picks P). */
static int
s_free_ports(int n)
{
    for (int tries = 0; tries < 100; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        int port = 0;
        if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0)
            port = ntohs(a.sin_port);
        if (fd >= 0)
            close(fd);
        bool ok = port > 0 && port + n <= 65400;
        for (int i = 0; ok && i < n; i++)
            ok = s_port_free(port + i);
        if (ok)
            return port;
    }
    fail_msg("no %d free ports in a row", n);
    return -1;
}

/* `drover up` says it is up (--json) once every worker has joined the
 * broker: jobs submitted then start at once. */
static void
t_up_waits_for_workers(void **state)
{
    harness_t *h = *state;
    char port[16], dir[600], ep[64];
    int p = s_free_ports(3);
    snprintf(port, sizeof port, "%d", p);
    snprintf(dir, sizeof dir, "%s/up", h->dir);
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", p);
    const char *args[] = { "up",     "--dir",  dir,
                           "--port", port,     "--workers",
                           "3",      "--json", "--no-collector",
                           NULL };
    pid_t up = harness_spawn(h, args, "up.json", "up.log");
    assert_true(up > 0);
    assert_true(harness_wait_line(h, "up.json", "\"worker_count\"", 30000));
    drover_client_t *c = drover_connect(ep, 5000);
    assert_non_null(c);
    char *body = NULL;
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body), DROVER_OK);
    json_t *st = json_loads(body, 0, NULL);
    assert_non_null(st);
    assert_int_equal(json_array_size(json_object_get(st, "workers")), 3);
    json_decref(st);
    free(body);
    drover_close(&c);
    /* Stopped as a user stops it, so it stops its parts (the teardown's
     * SIGKILL would leave them running). */
    pid_t parts[8];
    int nparts = harness_children(up, parts, 8);
    assert_int_equal(nparts, 4); /* the broker and three workers */
    int status = harness_signal(h, up, SIGTERM, 60000);
    assert_true(status >= 0 && WIFEXITED(status));
    for (int i = 0; i < nparts; i++)
        assert_true(kill(parts[i], 0) != 0);
}

static void
t_retry_then_succeed(void **state)
{
    harness_t *h = s_up(state, 1, NULL);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "fail";
    job.payload_json = "{\"times\":2,\"message\":\"flaky\"}";
    job.max_attempts = 5;
    job.backoff_base_s = 0.05;
    char ids[1][37];
    assert_int_equal(s_submit_one(h, &job, ids[0]), DROVER_OK);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &r, 20000), DROVER_OK);
    assert_int_equal(r.succeeded, 1);
    assert_int_equal(r.attempts[0], 3);
    char sql[200];
    snprintf(
        sql, sizeof sql,
        "SELECT count(*) FROM attempts WHERE job_id='%s' AND outcome='failed'"
        " AND category='handler'",
        ids[0]);
    assert_int_equal(harness_sql_int(h, sql), 2);
    assert_int_equal(harness_counter(h, "retried"), 2);
}

static void
t_dead_after_max_attempts(void **state)
{
    harness_t *h = s_up(state, 1, NULL);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "fail";
    job.payload_json = "{\"message\":\"always\"}";
    job.max_attempts = 3;
    job.backoff_base_s = 0.01;
    char ids[2][37];
    assert_int_equal(s_submit_one(h, &job, ids[0]), DROVER_OK);
    /* Not retryable: dead after one attempt. */
    job.payload_json = "{\"retryable\":false,\"category\":\"invalid_input\"}";
    assert_int_equal(s_submit_one(h, &job, ids[1]), DROVER_OK);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 2, &r, 20000), DROVER_OK);
    assert_int_equal(r.dead, 2);
    assert_int_equal(r.attempts[0], 3);
    assert_string_equal(r.category[0], "handler");
    assert_int_equal(r.attempts[1], 1);
    assert_string_equal(r.category[1], "invalid_input");
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT attempt FROM jobs WHERE id='%s' AND state='dead'", ids[0]);
    assert_int_equal(harness_sql_int(h, sql), 3);
}

static void
t_delayed_job_waits(void **state)
{
    harness_t *h = s_up(state, 1, NULL);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "noop";
    job.delay_s = 1.0;
    char ids[2][37];
    int64_t t0 = dv_now_ms();
    assert_int_equal(s_submit_one(h, &job, ids[0]), DROVER_OK);
    job.delay_s = 0;
    assert_int_equal(s_submit_one(h, &job, ids[1]), DROVER_OK);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 2, &r, 20000), DROVER_OK);
    assert_int_equal(r.succeeded, 2);
    /* The undelayed job ended first; the delayed one not before its time. */
    assert_int_equal(r.order[0], 1);
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT started_at FROM jobs WHERE id='%s'",
             ids[0]);
    int64_t started = harness_sql_int(h, sql);
    assert_true(started >= t0 + 1000);
    assert_true(r.finished[0] >= t0 + 1000);
}

static void
t_priority_order(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    /* Queue everything before any worker exists. */
    enum { N = 30 };
    char ids[N][37];
    for (int i = 0; i < N; i++) {
        drover_job_t job;
        drover_job_init(&job);
        job.type = "sleep";
        job.payload_json = "0.02"; /* distinct start times, 20 ms apart */
        job.priority = (i * 7) % 10;
        assert_int_equal(s_submit_one(h, &job, ids[i]), DROVER_OK);
    }
    const char *wargs[] = { "--concurrency", "1", "--prefetch", "0", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    harness_results_t *r = calloc(1, sizeof *r);
    assert_int_equal(harness_wait_ids(h, ids, N, r, 20000), DROVER_OK);
    assert_int_equal(r->succeeded, N);
    free(r);
    /* Started in priority order, FIFO (id order) within a priority: no pair
     * of jobs where the later-started one should have gone first. */
    assert_int_equal(
        harness_sql_int(h, "SELECT count(DISTINCT started_at) FROM jobs"), N);
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs a JOIN jobs b "
                           "ON a.started_at < b.started_at "
                           "WHERE a.priority < b.priority "
                           "OR (a.priority = b.priority AND a.id > b.id)"),
        0);
    assert_int_equal(
        harness_sql_int(
            h, "SELECT priority FROM jobs ORDER BY started_at LIMIT 1"),
        9);
}

static void
t_idempotency_key(void **state)
{
    harness_t *h = s_up(state, 1, NULL);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "echo";
    job.payload_json = "1";
    job.key = "order-4711";
    char a[37], b[37];
    assert_int_equal(s_submit_one(h, &job, a), DROVER_OK);
    assert_int_equal(s_submit_one(h, &job, b), DROVER_OK);
    assert_string_equal(a, b);
    /* Twice in one batch: one job. */
    drover_job_t jobs[2] = { job, job };
    jobs[0].key = jobs[1].key = "order-4712";
    drover_ack_t acks[2];
    assert_int_equal(drover_submit_many(h->client, jobs, 2, acks), DROVER_OK);
    assert_string_equal(acks[0].id, acks[1].id);
    assert_int_equal(acks[1].duplicate, 1);
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE key='order-4711'"),
        1);
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE key='order-4712'"),
        1);
    char ids[1][37];
    memcpy(ids[0], a, 37);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &r, 10000), DROVER_OK);
    assert_int_equal(r.succeeded, 1);
    /* Still deduplicated after the job ended. */
    job.key = "order-4711";
    assert_int_equal(s_submit_one(h, &job, b), DROVER_OK);
    assert_string_equal(a, b);
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
    bool running = strstr(body, "\"state\":\"running\"") != NULL &&
                   strstr(body, "\"worker\":\"w") != NULL;
    free(body);
    return running;
}

static void
t_cancel(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "noop";
    char ids[3][37];
    assert_int_equal(s_submit_one(h, &job, ids[0]), DROVER_OK); /* queued */
    job.delay_s = 60;
    assert_int_equal(s_submit_one(h, &job, ids[1]), DROVER_OK); /* scheduled */
    assert_int_equal(drover_cancel(h->client, ids[0]), DROVER_OK);
    assert_int_equal(drover_cancel(h->client, ids[1]), DROVER_OK);
    assert_int_equal(drover_cancel(h->client, ids[0]), DROVER_EREJECTED);
    assert_non_null(strstr(drover_last_error(h->client), "cancelled"));

    /* A running job: its process is stopped and the worker carries on. */
    assert_true(harness_start_worker(h, NULL) > 0);
    drover_job_init(&job);
    job.type = "sleep";
    job.payload_json = "30";
    assert_int_equal(s_submit_one(h, &job, ids[2]), DROVER_OK);
    s_job_ctx_t c = { h, ids[2] };
    assert_true(harness_wait_until(s_job_running, &c, 10000));
    int64_t t0 = dv_mono_ms();
    assert_int_equal(drover_cancel(h->client, ids[2]), DROVER_OK);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 3, &r, 10000), DROVER_OK);
    assert_int_equal(r.cancelled, 3);
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE state='cancelled'"),
        3);
    /* The worker still serves: a new job runs, long before the sleep's 30 s. */
    drover_job_init(&job);
    job.type = "noop";
    char more[1][37];
    assert_int_equal(s_submit_one(h, &job, more[0]), DROVER_OK);
    harness_results_t r2 = { 0 };
    assert_int_equal(harness_wait_ids(h, more, 1, &r2, 10000), DROVER_OK);
    assert_int_equal(r2.succeeded, 1);
    assert_true(dv_mono_ms() - t0 < harness_scale(15000));
}

static void
t_crash_timeout_unknown_type(void **state)
{
    harness_t *h = s_up(state, 1, NULL);
    drover_job_t job;
    drover_job_init(&job);
    char ids[3][37];
    job.type = "fail";
    job.payload_json = "{\"signal\":9}";
    job.max_attempts = 2;
    job.backoff_base_s = 0.01;
    assert_int_equal(s_submit_one(h, &job, ids[0]), DROVER_OK);
    job.type = "sleep";
    job.payload_json = "10";
    job.timeout_s = 0.3;
    job.max_attempts = 1;
    assert_int_equal(s_submit_one(h, &job, ids[1]), DROVER_OK);
    drover_job_init(&job);
    job.type = "no-such-handler";
    assert_int_equal(s_submit_one(h, &job, ids[2]), DROVER_OK);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 3, &r, 30000), DROVER_OK);
    assert_int_equal(r.dead, 3);
    assert_string_equal(r.category[0], "crashed");
    assert_int_equal(r.attempts[0], 2);
    assert_string_equal(r.category[1], "timeout");
    assert_string_equal(r.category[2], "unknown_type");
    assert_int_equal(r.attempts[2], 1);
    /* The pool recovered: work still flows. */
    char ok[50][37];
    assert_int_equal(harness_submit_n(h, "default", "noop", NULL, 50, ok), 0);
    harness_results_t r2 = { 0 };
    assert_int_equal(harness_wait_ids(h, ok, 50, &r2, 20000), DROVER_OK);
    assert_int_equal(r2.succeeded, 50);
}

static void
t_exec_handler(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    /* A handler in shell: reads the payload, reports progress, prints JSON;
     * exits 75 (retry) on its first attempt. */
    char script[400];
    snprintf(script, sizeof script, "%s/handler.sh", h->dir);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\n"
          "input=$(cat)\n"
          "echo \"PROGRESS 1 2 half way\" >&$DROVER_PROGRESS_FD\n"
          "if [ \"$DROVER_ATTEMPT\" = 1 ]; then echo 'try later' >&2; exit 75; "
          "fi\n"
          "printf '{\"got\":%s,\"attempt\":%s,\"id\":\"%s\"}\\n' \"$input\" "
          "\"$DROVER_ATTEMPT\" \"$DROVER_JOB_ID\"\n",
          f);
    fclose(f);
    char handler[500], bad[64];
    snprintf(handler, sizeof handler, "shout=sh %s", script);
    snprintf(bad, sizeof bad, "broken=exit 3");
    const char *wargs[] = { "--exec", handler, "--exec", bad, NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "shout";
    job.payload_json = "{\"text\":\"hi\"}";
    job.backoff_base_s = 0.01;
    char ids[2][37];
    assert_int_equal(s_submit_one(h, &job, ids[0]), DROVER_OK);
    job.type = "broken";
    assert_int_equal(s_submit_one(h, &job, ids[1]), DROVER_OK);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 2, &r, 20000), DROVER_OK);
    assert_int_equal(r.succeeded, 1);
    assert_int_equal(r.attempts[0], 2);
    assert_non_null(strstr(r.result[0], "\"got\":{\"text\":\"hi\"}"));
    assert_non_null(strstr(r.result[0], "\"attempt\":2"));
    assert_non_null(strstr(r.result[0], ids[0]));
    /* exit 3: a failure that is not retried. */
    assert_int_equal(r.dead, 1);
    assert_int_equal(r.attempts[1], 1);
    assert_string_equal(r.category[1], "handler");
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT exit_code FROM attempts WHERE job_id='%s'", ids[1]);
    assert_int_equal(harness_sql_int(h, sql), 3);
}

static void
t_retry_after_is_honoured(void **state)
{
    harness_t *h = s_up(state, 1, NULL);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "fail";
    /* The handler says "not before 0.6 s"; the backoff alone would say 10 ms. */
    job.payload_json =
        "{\"times\":1,\"retry_after\":0.6,\"category\":\"rate_limited\"}";
    job.backoff_base_s = 0.01;
    char ids[1][37];
    assert_int_equal(s_submit_one(h, &job, ids[0]), DROVER_OK);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &r, 20000), DROVER_OK);
    assert_int_equal(r.succeeded, 1);
    assert_int_equal(r.attempts[0], 2);
    char sql[300];
    snprintf(sql, sizeof sql,
             "SELECT j.started_at - a.finished_at FROM jobs j JOIN attempts a "
             "ON a.job_id = j.id AND a.attempt = 1 WHERE j.id = '%s'",
             ids[0]);
    int64_t gap = harness_sql_int(h, sql);
    assert_true(gap >= 600);
    snprintf(
        sql, sizeof sql,
        "SELECT retry_after_ms FROM attempts WHERE job_id='%s' AND attempt=1",
        ids[0]);
    assert_int_equal(harness_sql_int(h, sql), 600);
}

typedef struct {
    void *sub;
} s_sub_ctx_t;

static bool
s_event_arrived(void *arg)
{
    s_sub_ctx_t *c = arg;
    char buf[8192];
    if (zmq_recv(c->sub, buf, sizeof buf, ZMQ_DONTWAIT) < 0)
        return false;
    /* Take the whole message (topic and body), so the next read starts at
     * a topic. */
    int more = 1;
    size_t ms = sizeof more;
    while (zmq_getsockopt(c->sub, ZMQ_RCVMORE, &more, &ms) == 0 && more)
        zmq_recv(c->sub, buf, sizeof buf, 0);
    return true;
}

static void
t_events_carry_sequence_numbers(void **state)
{
    harness_t *h = s_up(state, 1, NULL);
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    assert_int_equal(zmq_connect(sub, h->events), 0);
    /* A subscription takes a moment to reach the publisher: submit probe
     * jobs until one of their events arrives. */
    s_sub_ctx_t sc = { sub };
    bool joined = false;
    for (int i = 0; i < 100 && !joined; i++) {
        char probe[1][37];
        assert_int_equal(harness_submit_n(h, "default", "noop", NULL, 1, probe),
                         0);
        joined = harness_wait_until(s_event_arrived, &sc, 100);
    }
    assert_true(joined);
    /* No draining: events never go quiet (workers' heartbeats are events
     * too), and every one of them must continue the sequence. */
    harness_events_t rd;
    harness_events_init(&rd, sub);

    enum { N = 20 };
    char ids[N][37];
    assert_int_equal(harness_submit_n(h, "default", "echo", "\"x\"", N, ids),
                     0);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &r, 20000), DROVER_OK);
    assert_int_equal(r.succeeded, N);

    int submitted = 0, started = 0, succeeded = 0;
    uint64_t last_seq = 0;
    char broker[64] = "";
    int64_t deadline = dv_mono_ms() + harness_scale(10000);
    while (succeeded < N && dv_mono_ms() < deadline) {
        const dv_event_t *ev = harness_events_next(&rd, 200);
        if (!ev)
            continue;
        char kind[64];
        dv_str_copy(ev->kind, kind, sizeof kind);
        /* Job events travel in batches under "jobs", the others alone
         * under their kind. */
        if (!strncmp(kind, "job.", 4))
            assert_string_equal(rd.topic, "jobs");
        else
            assert_string_equal(rd.topic, kind);
        /* No gaps: every event is the previous one plus one. */
        if (last_seq)
            assert_int_equal(ev->seq, last_seq + 1);
        last_seq = ev->seq;
        if (!broker[0])
            dv_str_copy(ev->broker, broker, sizeof broker);
        assert_true(dv_str_eq(ev->broker, broker));
        bool ours = false;
        for (int i = 0; i < N; i++)
            if (dv_str_eq(ev->id, ids[i]))
                ours = true;
        if (ours) {
            if (!strcmp(kind, "job.submitted"))
                submitted++;
            else if (!strcmp(kind, "job.started"))
                started++;
            else if (!strcmp(kind, "job.succeeded")) {
                succeeded++;
                /* A start and outcome in one report: one event says
                 * both (no job.started). */
                if (ev->started_ms > 0)
                    started++;
            }
        }
    }
    harness_events_close(&rd);
    assert_int_equal(submitted, N);
    assert_int_equal(started, N);
    assert_int_equal(succeeded, N);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

/* An argument picks the cases by name (a cmocka filter: t_cancel). */
int
main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_submit_wait_pushes_results,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_echo_result_round_trip, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_cli_wait_same_key, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_up_waits_for_workers, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_retry_then_succeed, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_dead_after_max_attempts,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_delayed_job_waits, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_priority_order, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_idempotency_key, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_cancel, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_crash_timeout_unknown_type,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_exec_handler, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_retry_after_is_honoured,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_events_carry_sequence_numbers,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_ten_thousand_succeed, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
