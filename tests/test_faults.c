/* Failure behaviour with real processes: kill -9 of a worker or the broker,
 * SIGTERM drain, garbage on every socket. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

#include "dv_clock.h"
#include "dv_proto.h"
#include "harness.h"

typedef struct {
    harness_t *h;
    const char *id;
    const char *worker;
} s_job_ctx_t;

static bool
s_job_running_on(void *arg)
{
    s_job_ctx_t *c = arg;
    char *body = NULL;
    if (drover_ctrl(c->h->client, "job", c->id, NULL, &body) != DROVER_OK)
        return false;
    char want[64];
    snprintf(want, sizeof want, "\"worker\":\"%s\"", c->worker);
    bool yes = strstr(body, "\"state\":\"running\"") && strstr(body, want);
    free(body);
    return yes;
}

/* kill -9 of the worker running a job: the job completes on another worker,
 * its first attempt counted as lost. */
static void
t_kill_worker_mid_job(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--concurrency", "1", NULL };
    pid_t w1 = harness_start_worker(h, wargs); /* named w1 */
    assert_true(w1 > 0);
    char ids[1][37];
    assert_int_equal(harness_submit_n(h, "default", "sleep", "1.5", 1, ids), 0);
    s_job_ctx_t c = { h, ids[0], "w1" };
    assert_true(harness_wait_until(s_job_running_on, &c, 10000));
    assert_true(harness_signal(h, w1, SIGKILL, 5000) >= 0);
    assert_true(harness_start_worker(h, wargs) > 0); /* w2 */
    harness_results_t t = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &t, 30000), DROVER_OK);
    assert_int_equal(t.succeeded, 1);
    assert_int_equal(t.max_attempts, 2);
    char sql[200];
    snprintf(
        sql, sizeof sql,
        "SELECT count(*) FROM attempts WHERE job_id='%s' AND category='lost'",
        ids[0]);
    assert_int_equal(harness_sql_int(h, sql), 1);
    snprintf(sql, sizeof sql, "SELECT worker='w2' FROM jobs WHERE id='%s'",
             ids[0]);
    assert_int_equal(harness_sql_int(h, sql), 1);
    /* Two attempts: the lost one on w1, the successful one (the jobs row)
     * on w2. */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM attempts WHERE job_id='%s' AND worker='w1'",
             ids[0]);
    assert_int_equal(harness_sql_int(h, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT attempt FROM jobs WHERE id='%s' AND state='succeeded'",
             ids[0]);
    assert_int_equal(harness_sql_int(h, sql), 2);
}

static bool
s_some_succeeded_stored(void *arg)
{
    return harness_sql_int(
               arg, "SELECT count(*) FROM jobs WHERE state='succeeded'") >= 200;
}

/* kill -9 of the broker in the middle of a batch: after a restart every
 * acknowledged job completes, and none is lost. */
static void
t_kill_broker_mid_batch(void **state)
{
    harness_t *h = *state;
    pid_t b = harness_start_broker(h, NULL);
    assert_true(b > 0);
    const char *wargs[] = { "--concurrency", "4", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    enum { N = 2000 };
    static char ids[N][37];
    assert_int_equal(harness_submit_n(h, "default", "sleep", "0.002", N, ids),
                     0);
    /* Let part of the batch finish and be committed (the broker counts an
     * outcome before its group is durable), then kill it hard. */
    assert_true(harness_wait_until(s_some_succeeded_stored, h, 30000));
    assert_true(harness_signal(h, b, SIGKILL, 5000) >= 0);
    int64_t done_before =
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE state='succeeded'");
    assert_true(done_before > 0);
    assert_true(harness_start_broker(h, NULL) > 0);
    harness_results_t t = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &t, 120000), DROVER_OK);
    assert_int_equal(t.n, N);
    assert_int_equal(t.succeeded, N);
    assert_int_equal(t.unknown, 0);
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE state='succeeded'"),
        N);
}

/* SIGTERM: the worker finishes what it runs, hands back what it has not
 * started, says bye and exits 0; nothing fails, nothing is lost. */
static void
t_sigterm_drains_worker(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--concurrency", "2", "--prefetch", "4", NULL };
    pid_t w1 = harness_start_worker(h, wargs);
    assert_true(w1 > 0);
    enum { N = 8 };
    char ids[N][37];
    assert_int_equal(harness_submit_n(h, "default", "sleep", "0.5", N, ids), 0);
    s_job_ctx_t c = { h, ids[0], "w1" };
    assert_true(harness_wait_until(s_job_running_on, &c, 10000));
    int status = harness_signal(h, w1, SIGTERM, 20000);
    assert_true(status >= 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* It left cleanly: the broker forgets it without expiring anything. */
    assert_int_equal(harness_worker_count(h), 0);
    assert_int_equal(harness_counter(h, "lost"), 0);
    assert_true(harness_start_worker(h, wargs) > 0);
    harness_results_t t = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &t, 30000), DROVER_OK);
    assert_int_equal(t.succeeded, N);
    /* Nothing was attempted twice: running jobs finished, the rest were
     * handed back without counting an attempt. */
    assert_int_equal(t.max_attempts, 1);
    assert_int_equal(harness_counter(h, "failed"), 0);
}

/* ---- garbage ---------------------------------------------------------------- */

/* Receives an ERROR: its reason into reason, its code into s_code. */
static dv_code_t s_code;

static int
s_recv_error(void *sock, char *reason, size_t size)
{
    zmq_pollitem_t it = { sock, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, harness_scale(5000)) <= 0)
        return -1;
    char buf[4096];
    int n = zmq_recv(sock, buf, sizeof buf, 0);
    if (n < 0)
        return -1;
    dv_msg_t msg;
    if (dv_msg_decode(buf, (size_t)n, &msg, NULL, 0) != DV_OK)
        return -1;
    int rc = msg.type == DV_MSG_ERROR ? 0 : -1;
    if (rc == 0) {
        dv_str_copy(msg.u.error.reason, reason, size);
        s_code = msg.u.error.code;
    }
    dv_msg_release(&msg);
    return rc;
}

static void
t_garbage_frames(void **state)
{
    harness_t *h = *state;
    pid_t b = harness_start_broker(h, NULL);
    assert_true(b > 0);
    void *ctx = zmq_ctx_new();
    const char *eps[] = { h->clients, h->workers };
    for (int e = 0; e < 2; e++) {
        void *s = zmq_socket(ctx, ZMQ_DEALER);
        int linger = 0;
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
        assert_int_equal(zmq_connect(s, eps[e]), 0);
        char reason[512];

        /* Not msgpack at all. */
        zmq_send(s, "\xc1\xc1garbage", 9, 0);
        assert_int_equal(s_recv_error(s, reason, sizeof reason), 0);
        assert_true(strlen(reason) > 0);
        assert_int_equal(s_code, DV_CODE_MALFORMED);

        /* A map claiming 4 billion entries in a few bytes. */
        zmq_send(s, "\xdf\xff\xff\xff\xff\xa1v", 7, 0);
        assert_int_equal(s_recv_error(s, reason, sizeof reason), 0);
        assert_true(s_code == DV_CODE_MALFORMED || s_code == DV_CODE_TOO_BIG);

        /* Truncated valid message. */
        dv_msg_t m = { .type = DV_MSG_CTRL };
        m.u.ctrl.req = 7;
        m.u.ctrl.verb = dv_str("status");
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        dv_msg_encode(&m, &sb);
        zmq_send(s, sb.data, sb.size / 2, 0);
        assert_int_equal(s_recv_error(s, reason, sizeof reason), 0);

        /* Two frames where one is expected. */
        zmq_send(s, "a", 1, ZMQ_SNDMORE);
        zmq_send(s, "b", 1, 0);
        assert_int_equal(s_recv_error(s, reason, sizeof reason), 0);
        assert_non_null(strstr(reason, "frame"));
        assert_int_equal(s_code, DV_CODE_MALFORMED);

        /* Valid msgpack, wrong shape. */
        zmq_send(s, "\x93\x01\x02\x03", 4, 0);
        assert_int_equal(s_recv_error(s, reason, sizeof reason), 0);

        /* A future protocol version is refused with our version. */
        zmq_send(s, "\x82\xa1v\x09\xa1t\xa6status", 13, 0);
        assert_int_equal(s_recv_error(s, reason, sizeof reason), 0);
        assert_int_equal(s_code, DV_CODE_VERSION);

        /* A message for the other socket. */
        if (e == 0) {
            dv_msg_t hb = { .type = DV_MSG_HEARTBEAT };
            msgpack_sbuffer hs;
            msgpack_sbuffer_init(&hs);
            dv_msg_encode(&hb, &hs);
            zmq_send(s, hs.data, hs.size, 0);
            assert_int_equal(s_recv_error(s, reason, sizeof reason), 0);
            assert_non_null(strstr(reason, "unexpected"));
            assert_int_equal(s_code, DV_CODE_UNKNOWN_TYPE);
            msgpack_sbuffer_destroy(&hs);
        } else {
            /* A heartbeat from a worker that never said hello. */
            dv_msg_t hb = { .type = DV_MSG_HEARTBEAT };
            msgpack_sbuffer hs;
            msgpack_sbuffer_init(&hs);
            dv_msg_encode(&hb, &hs);
            zmq_send(s, hs.data, hs.size, 0);
            assert_int_equal(s_recv_error(s, reason, sizeof reason), 0);
            assert_int_equal(s_code, DV_CODE_UNKNOWN_WORKER);
            msgpack_sbuffer_destroy(&hs);
            /* A hello from a socket without a routing id of its own:
             * ZeroMQ's id starts with a NUL, so it is no worker name. */
            dv_str_t q = dv_str("default");
            dv_msg_t hello = { .type = DV_MSG_HELLO };
            hello.u.hello.name = dv_str("raw");
            hello.u.hello.host = dv_str("localhost");
            hello.u.hello.pid = 1;
            hello.u.hello.queues = &q;
            hello.u.hello.nqueues = 1;
            hello.u.hello.concurrency = 1;
            hello.u.hello.credit = 1;
            hello.u.hello.fencing = true;
            msgpack_sbuffer_init(&hs);
            assert_int_equal(dv_msg_encode(&hello, &hs), DV_OK);
            zmq_send(s, hs.data, hs.size, 0);
            assert_int_equal(s_recv_error(s, reason, sizeof reason), 0);
            assert_int_equal(s_code, DV_CODE_INVALID_ARGUMENT);
            assert_non_null(strstr(reason, "routing id"));
            msgpack_sbuffer_destroy(&hs);
        }
        msgpack_sbuffer_destroy(&sb);
        zmq_close(s);
    }
    zmq_ctx_term(ctx);
    /* The broker is alive and serving. */
    assert_int_equal(kill(b, 0), 0);
    char ids[5][37];
    assert_int_equal(harness_submit_n(h, "default", "noop", NULL, 5, ids), 0);
    assert_true(harness_start_worker(h, NULL) > 0);
    harness_results_t t = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 5, &t, 10000), DROVER_OK);
    assert_int_equal(t.succeeded, 5);
}

/* An invalid job in a batch is refused alone; the rest are stored. */
static void
t_invalid_job_in_batch(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    drover_client_t *c = drover_connect(h->clients, harness_scale(5000));
    assert_non_null(c);
    drover_job_t jobs[3];
    for (int i = 0; i < 3; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "noop";
    }
    jobs[1].priority = 42; /* invalid */
    drover_ack_t acks[3];
    drover_submit_many(c, jobs, 3, acks);
    assert_true(acks[0].id[0] != '\0');
    assert_true(acks[1].error[0] != '\0');
    assert_true(acks[2].id[0] != '\0');
    drover_close(&c);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM jobs"), 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_garbage_frames, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_invalid_job_in_batch, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_kill_worker_mid_job, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_sigterm_drains_worker, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_kill_broker_mid_batch, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
