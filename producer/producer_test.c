/* producer_test - the client library (libdrover) against a scripted broker
 * (tests/fixtures/scripted_broker.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <czmq.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drover.h"
#include "dv_clock.h"
#include "dv_id.h"
#include "dv_proto.h"
#include "scripted_broker.h"

/* ---- library ----------------------------------------------------------- */

static void
test_client_connect(void **state)
{
    (void)state;
    drover_client_t *c = drover_connect("bogus://x", 100);
    assert_null(c);
    assert_non_null(strstr(drover_last_error(NULL), "bogus://x"));
    c = drover_connect(" , ", 100);
    assert_null(c);
    c = drover_connect("tcp://127.0.0.1:1, ipc:///tmp/x", 100);
    assert_non_null(c);
    assert_string_equal(drover_endpoint(c), "tcp://127.0.0.1:1");
    assert_string_equal(drover_last_error(c), "");
    drover_close(&c);
    assert_null(c);
    drover_close(&c);
    assert_string_equal(drover_strerror(DROVER_EUNREACHABLE),
                        "broker unreachable");
    assert_string_equal(drover_strerror(12345), "unknown error");
}

static void
test_client_invalid_job(void **state)
{
    (void)state;
    drover_client_t *c = drover_connect("ipc:///tmp/drover-nobody", 100);
    drover_job_t job;
    drover_job_init(&job);
    char id[DROVER_ID_SIZE];
    assert_int_equal(drover_submit(c, &job, id), DROVER_EINVAL);
    assert_string_equal(drover_last_error(c), "type must be 1..200 bytes");
    job.type = "echo";
    job.priority = 12;
    assert_int_equal(drover_submit(c, &job, id), DROVER_EINVAL);
    assert_string_equal(drover_last_error(c), "priority must be 0..9");
    job.priority = -1;
    job.payload_json = "{nope";
    assert_int_equal(drover_submit(c, &job, id), DROVER_EINVAL);
    assert_non_null(strstr(drover_last_error(c), "payload_json is not valid"));
    job.payload_json = NULL;
    job.delay_s = 5;
    job.run_at_ms = 1795000000000;
    assert_int_equal(drover_submit(c, &job, id), DROVER_EINVAL);
    assert_string_equal(drover_last_error(c),
                        "give a delay or a run_at time, not both");
    job.delay_s = 0;
    job.run_at_ms = 0;
    job.backoff_factor = 0.5;
    assert_int_equal(drover_submit(c, &job, id), DROVER_EINVAL);
    assert_string_equal(drover_last_error(c), "backoff factor must be 1..1000");
    assert_int_equal(drover_cancel(c, "not-an-id"), DROVER_EINVAL);
    const char *ids[] = { "x" };
    assert_int_equal(drover_wait(c, ids, 1, 10, NULL, NULL), DROVER_EINVAL);
    drover_close(&c);
}

static void
test_client_submit_many(void **state)
{
    (void)state;
    fake_t *f = fake_start(FAKE_NORMAL);
    f->stray_first = 1;
    f->slow = 1;
    fake_go(f);
    drover_client_t *c = drover_connect(f->endpoint, 2000);
    enum { N = 5000 };
    drover_job_t *jobs = calloc(N, sizeof *jobs);
    drover_ack_t *acks = calloc(N, sizeof *acks);
    for (int i = 0; i < N; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = i % 1000 == 17 ? "refuse" : "echo";
        jobs[i].payload_json = "{\"a\": [1, 2, 3]}";
        if (i == 3)
            jobs[i].priority = 11; /* refused before sending */
        if (i == 4)
            jobs[i].key = "dup";
    }
    jobs[0].delay_s = 2;
    jobs[0].backoff_cap_s = 10;
    int64_t before = dv_now_ms();
    assert_int_equal(drover_submit_many(c, jobs, N, acks), DROVER_OK);
    size_t ok = 0;
    for (int i = 0; i < N; i++) {
        if (i == 3)
            assert_string_equal(acks[i].error, "priority must be 0..9");
        else if (i % 1000 == 17) {
            assert_string_equal(acks[i].error, "queue is paused");
            assert_string_equal(acks[i].code, "not_allowed");
            assert_false(acks[i].unanswered);
        } else {
            assert_string_equal(acks[i].error, "");
            assert_null(acks[i].code);
            assert_int_equal(strlen(acks[i].id), DROVER_ID_LEN);
            assert_int_equal(acks[i].duplicate, i == 4);
            ok++;
        }
    }
    assert_int_equal(ok, N - 1 - N / 1000);
    assert_int_equal(f->jobs, N - 1);
    assert_true(f->submits >= 5);   /* at most 1000 jobs per message */
    assert_true(f->max_burst >= 2); /* several in flight at once */
    /* The first job as the broker saw it. */
    assert_string_equal(f->first_queue, "default");
    assert_int_equal(f->first.priority, 5);
    assert_true(f->first.run_at_ms >= before + 2000 &&
                f->first.run_at_ms <= f->first_seen_ms + 2000);
    assert_true(f->first.has_backoff);
    assert_int_equal(f->first.backoff.cap_ms, 10000);
    assert_int_equal(f->first.backoff.base_ms, 1000);
    assert_true(f->first.backoff.jitter);

    /* One job. */
    char id[DROVER_ID_SIZE];
    assert_int_equal(drover_submit(c, &jobs[1], id), DROVER_OK);
    assert_int_equal(strlen(id), DROVER_ID_LEN);
    assert_int_equal(drover_submit(c, &jobs[17], id), DROVER_EREJECTED);
    assert_string_equal(drover_last_error(c), "queue is paused");
    assert_string_equal(drover_last_code(c), "not_allowed");
    assert_int_equal(drover_submit(c, &jobs[1], id), DROVER_OK);
    assert_null(drover_last_code(c));
    drover_close(&c);
    fake_stop(&f);
    free(jobs);
    free(acks);
}

static void
test_client_message_refused(void **state)
{
    (void)state;
    fake_t *f = fake_start(FAKE_ERROR_REQ);
    fake_go(f);
    drover_client_t *c = drover_connect(f->endpoint, 2000);
    drover_job_t jobs[3];
    drover_ack_t acks[3];
    for (int i = 0; i < 3; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "echo";
    }
    assert_int_equal(drover_submit_many(c, jobs, 3, acks), DROVER_OK);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(acks[i].error,
                            "broker refused the message: submit: too big");
        assert_string_equal(acks[i].code, "too_big");
    }
    assert_string_equal(drover_last_error(c), "broker: submit: too big");
    assert_string_equal(drover_last_code(c), "too_big");
    drover_close(&c);
    fake_stop(&f);
}

static void
test_client_unreachable(void **state)
{
    (void)state;
    fake_t *f = fake_start(FAKE_SILENT);
    fake_go(f);
    drover_client_t *c = drover_connect(f->endpoint, 200);
    enum { N = 2500 };
    drover_job_t *jobs = calloc(N, sizeof *jobs);
    drover_ack_t *acks = calloc(N, sizeof *acks);
    for (int i = 0; i < N; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "echo";
    }
    int64_t t0 = dv_mono_ms();
    assert_int_equal(drover_submit_many(c, jobs, N, acks), DROVER_EUNREACHABLE);
    int64_t took = dv_mono_ms() - t0;
    assert_true(took >= 200 && took < 2000);
    for (int i = 0; i < N; i++) {
        assert_string_equal(acks[i].error, "no answer from broker");
        assert_true(acks[i].unanswered);
        assert_null(acks[i].code);
    }
    assert_non_null(strstr(drover_last_error(c), "no answer"));
    assert_null(drover_last_code(c)); /* not a refusal */
    char *body = (char *)1;
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body),
                     DROVER_EUNREACHABLE);
    assert_null(body);
    drover_close(&c);
    fake_stop(&f);
    free(jobs);
    free(acks);
}

static void
test_client_failover(void **state)
{
    (void)state;
    fake_t *dead = fake_start(FAKE_SILENT), *live = fake_start(FAKE_NORMAL);
    fake_go(dead);
    fake_go(live);
    char eps[300];
    snprintf(eps, sizeof eps, "%s,%s", dead->endpoint, live->endpoint);
    drover_client_t *c = drover_connect(eps, 300);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "echo";
    char id[DROVER_ID_SIZE];
    assert_int_equal(drover_submit(c, &job, id), DROVER_OK);
    assert_string_equal(drover_endpoint(c), live->endpoint);
    assert_int_equal(dead->jobs, 1);
    assert_int_equal(live->jobs, 1);
    /* Later requests stay on the endpoint that answered. */
    assert_int_equal(drover_submit(c, &job, id), DROVER_OK);
    assert_int_equal(dead->jobs, 1);
    drover_close(&c);
    fake_stop(&dead);
    fake_stop(&live);
}

/* A standby broker first in the list: submit, ctrl and wait move to the
 * next endpoint at once (well within the timeout), and stay there. With
 * only standbys, the call ends after the timeout, saying so. */
static void
test_client_standby(void **state)
{
    (void)state;
    fake_t *standby = fake_start(FAKE_STANDBY), *live = fake_start(FAKE_NORMAL);
    fake_go(standby);
    fake_go(live);
    char eps[300];
    snprintf(eps, sizeof eps, "%s,%s", standby->endpoint, live->endpoint);
    drover_client_t *c = drover_connect(eps, 5000);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "echo";
    char id[DROVER_ID_SIZE];
    int64_t t0 = dv_mono_ms();
    assert_int_equal(drover_submit(c, &job, id), DROVER_OK);
    assert_true(dv_mono_ms() - t0 < 2000);
    assert_string_equal(drover_endpoint(c), live->endpoint);
    assert_int_equal(standby->submits, 1);

    drover_close(&c);
    c = drover_connect(eps, 5000);
    char *body = NULL;
    t0 = dv_mono_ms();
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body), DROVER_OK);
    assert_true(dv_mono_ms() - t0 < 2000);
    assert_non_null(body);
    free(body);
    assert_int_equal(standby->ctrls, 1);

    drover_close(&c);
    c = drover_connect(eps, 5000);
    const char *ids[] = { id };
    t0 = dv_mono_ms();
    assert_int_equal(drover_wait(c, ids, 1, 4000, NULL, NULL), DROVER_OK);
    assert_true(dv_mono_ms() - t0 < 2000);
    assert_true(standby->waits >= 1);
    drover_close(&c);

    /* Only standbys: no active broker, said as such. */
    snprintf(eps, sizeof eps, "%s", standby->endpoint);
    c = drover_connect(eps, 600);
    assert_int_equal(drover_submit(c, &job, id), DROVER_EUNREACHABLE);
    assert_non_null(strstr(drover_last_error(c), "standby"));
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body),
                     DROVER_EUNREACHABLE);
    assert_non_null(strstr(drover_last_error(c), "standby"));
    drover_close(&c);
    fake_stop(&standby);
    fake_stop(&live);
}

/* The broker in use goes away (its socket closes, as when it dies): the
 * next request moves to the next endpoint at once instead of waiting out
 * the (long) timeout. */
static void
test_client_disconnect(void **state)
{
    (void)state;
    fake_t *first = fake_start(FAKE_NORMAL), *second = fake_start(FAKE_NORMAL);
    fake_go(first);
    fake_go(second);
    char eps[300];
    snprintf(eps, sizeof eps, "%s,%s", first->endpoint, second->endpoint);
    drover_client_t *c = drover_connect(eps, 20000);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "echo";
    char id[DROVER_ID_SIZE];
    assert_int_equal(drover_submit(c, &job, id), DROVER_OK);
    assert_string_equal(drover_endpoint(c), first->endpoint);
    fake_stop(&first);
    int64_t t0 = dv_mono_ms();
    assert_int_equal(drover_submit(c, &job, id), DROVER_OK);
    assert_true(dv_mono_ms() - t0 < 3000);
    assert_string_equal(drover_endpoint(c), second->endpoint);
    assert_int_equal(second->jobs, 1);
    char *body = NULL;
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body), DROVER_OK);
    free(body);
    drover_close(&c);
    fake_stop(&second);
}

typedef struct {
    int calls, dead, more_zero;
    int seen[64];
    char last_result[32];
} s_collect_t;

static int
s_collect(const drover_result_t *r, void *arg)
{
    s_collect_t *c = arg;
    c->calls++;
    c->seen[r->index]++;
    if (!strcmp(r->state, "dead")) {
        c->dead++;
        assert_string_equal(r->category, "handler");
        assert_string_equal(r->error, "boom");
        assert_int_equal(r->attempts, 3);
        assert_null(r->result_json);
    } else {
        assert_string_equal(r->state, "succeeded");
        snprintf(c->last_result, sizeof c->last_result, "%s", r->result_json);
    }
    c->more_zero += !r->more;
    return 0;
}

static void
s_make_ids(char ids[][DROVER_ID_SIZE], const char **ptrs, int n)
{
    for (int i = 0; i < n; i++) {
        dv_id_t id;
        dv_id_new(&id);
        dv_id_format(&id, ids[i]);
        ptrs[i] = ids[i];
    }
}

static void
test_client_wait(void **state)
{
    (void)state;
    fake_t *f = fake_start(FAKE_NORMAL);
    fake_go(f);
    drover_client_t *c = drover_connect(f->endpoint, 2000);
    char ids[10][DROVER_ID_SIZE];
    const char *ptrs[11];
    s_make_ids(ids, ptrs, 10);
    ptrs[10] = ids[4]; /* an id given twice is reported once */
    s_collect_t got;
    memset(&got, 0, sizeof got);
    assert_int_equal(drover_wait(c, ptrs, 11, 5000, s_collect, &got),
                     DROVER_OK);
    assert_int_equal(got.calls, 10);
    for (int i = 0; i < 10; i++)
        assert_int_equal(got.seen[i], 1);
    assert_int_equal(got.seen[10], 0);
    assert_int_equal(got.dead, 1);
    assert_int_equal(got.more_zero, 2); /* two answers */
    assert_string_equal(got.last_result, "42");
    assert_int_equal(f->waits, 1);

    /* Control verbs. */
    char *body = NULL;
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body), DROVER_OK);
    assert_string_equal(body, "{\"ok\":true}");
    free(body);
    assert_int_equal(drover_cancel(c, ids[0]), DROVER_EREJECTED);
    assert_string_equal(drover_last_error(c), "job already ended");
    assert_string_equal(drover_last_code(c), "not_allowed");
    assert_string_equal(f->last_verb, "cancel");
    assert_string_equal(f->last_id, ids[0]);
    drover_close(&c);
    fake_stop(&f);
}

static void
test_client_wait_resend(void **state)
{
    (void)state;
    /* The broker loses the first wait (as if it restarted): the client asks
     * again after 5 s of silence, with a probe. */
    fake_t *f = fake_start(FAKE_NORMAL);
    f->wait_ignore_first = 1;
    fake_go(f);
    drover_client_t *c = drover_connect(f->endpoint, 2000);
    char ids[4][DROVER_ID_SIZE];
    const char *ptrs[4];
    s_make_ids(ids, ptrs, 4);
    s_collect_t got;
    memset(&got, 0, sizeof got);
    int64_t t0 = dv_mono_ms();
    assert_int_equal(drover_wait(c, ptrs, 4, 20000, s_collect, &got),
                     DROVER_OK);
    int64_t took = dv_mono_ms() - t0;
    assert_true(took >= 5000 && took < 9000);
    assert_int_equal(got.calls, 4);
    assert_int_equal(f->waits, 2);
    assert_int_equal(f->probes, 1);
    drover_close(&c);
    fake_stop(&f);
}

static void
test_client_wait_timeout(void **state)
{
    (void)state;
    fake_t *f = fake_start(FAKE_SILENT);
    fake_go(f);
    drover_client_t *c = drover_connect(f->endpoint, 100);
    char ids[2][DROVER_ID_SIZE];
    const char *ptrs[2];
    s_make_ids(ids, ptrs, 2);
    int64_t t0 = dv_mono_ms();
    assert_int_equal(drover_wait(c, ptrs, 2, 300, NULL, NULL), DROVER_ETIMEOUT);
    assert_true(dv_mono_ms() - t0 >= 300);
    assert_string_equal(drover_last_error(c),
                        "2 of 2 jobs had not ended after 300 ms");
    drover_close(&c);
    fake_stop(&f);
}

/* ---- CurveZMQ ---------------------------------------------------------- */

/* Writes DIR/name.key and DIR/name.key_secret (0600); the secret key's Z85
 * text into secret if not NULL. */
static void
s_keygen(const char *dir, const char *name, char secret[41])
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s.key", dir, name);
    zcert_t *c = zcert_new();
    assert_non_null(c);
    assert_int_equal(zcert_save(c, path), 0);
    snprintf(path, sizeof path, "%s/%s.key_secret", dir, name);
    assert_int_equal(chmod(path, 0600), 0);
    if (secret)
        snprintf(secret, 41, "%s", zcert_secret_txt(c));
    zcert_destroy(&c);
}

static void
test_client_curve(void **state)
{
    (void)state;
    char dir[] = "/tmp/drover-test-pcurve-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char server_secret[41], p_secret[300], p_server[300], p_other[300];
    s_keygen(dir, "broker", server_secret);
    s_keygen(dir, "client", NULL);
    s_keygen(dir, "other", NULL);
    snprintf(p_secret, sizeof p_secret, "%s/client.key_secret", dir);
    snprintf(p_server, sizeof p_server, "%s/broker.key", dir);
    snprintf(p_other, sizeof p_other, "%s/other.key", dir);
    fake_t *f = fake_start_curve(FAKE_NORMAL, server_secret);
    fake_go(f);

    /* The right server certificate: the request arrives, the answer too. */
    drover_opts_t o;
    drover_opts_init(&o);
    o.endpoints = f->endpoint;
    o.timeout_ms = 2000;
    o.curve_secret = p_secret;
    o.curve_server = p_server;
    drover_client_t *c = drover_connect_opts(&o);
    assert_non_null(c);
    char *body = NULL;
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body), DROVER_OK);
    assert_string_equal(body, "{\"ok\":true}");
    free(body);
    assert_int_equal(f->ctrls, 1);
    drover_close(&c);

    /* The same from the environment, through drover_connect(). */
    setenv("DROVER_CURVE_SECRET", p_secret, 1);
    setenv("DROVER_CURVE_SERVER", p_server, 1);
    c = drover_connect(f->endpoint, 2000);
    assert_non_null(c);
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body), DROVER_OK);
    free(body);
    assert_int_equal(f->ctrls, 2);
    drover_close(&c);

    /* "" turns the environment off: a plain client is not heard. */
    o.curve_secret = "";
    o.curve_server = "";
    o.timeout_ms = 300;
    c = drover_connect_opts(&o);
    assert_non_null(c);
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body),
                     DROVER_EUNREACHABLE);
    drover_close(&c);
    unsetenv("DROVER_CURVE_SECRET");
    unsetenv("DROVER_CURVE_SERVER");

    /* A wrong server key: the handshake fails, the request times out with
     * a hint. */
    o.curve_secret = p_secret;
    o.curve_server = p_other;
    c = drover_connect_opts(&o);
    assert_non_null(c);
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body),
                     DROVER_EUNREACHABLE);
    assert_non_null(strstr(drover_last_error(c), "no answer"));
    assert_non_null(strstr(drover_last_error(c), "CurveZMQ"));
    drover_close(&c);
    assert_int_equal(f->ctrls, 2);

    /* Files missing, too open, or one without the other: no client, and a
     * reason that names the file and never holds a key. */
    o.curve_server = p_server;
    o.curve_secret = "/nonexistent/client.key_secret";
    assert_null(drover_connect_opts(&o));
    assert_non_null(
        strstr(drover_last_error(NULL), "/nonexistent/client.key_secret"));
    o.curve_secret = p_secret;
    assert_int_equal(chmod(p_secret, 0644), 0);
    assert_null(drover_connect_opts(&o));
    assert_non_null(strstr(drover_last_error(NULL), "mode 0644"));
    assert_non_null(strstr(drover_last_error(NULL), p_secret));
    assert_int_equal(chmod(p_secret, 0600), 0);
    o.curve_server = NULL;
    assert_null(drover_connect_opts(&o));
    assert_non_null(strstr(drover_last_error(NULL), "--curve-server"));
    char broker_secret_path[300];
    snprintf(broker_secret_path, sizeof broker_secret_path,
             "%s/broker.key_secret", dir);
    o.curve_server = broker_secret_path;
    assert_null(drover_connect_opts(&o));
    assert_null(strstr(drover_last_error(NULL), server_secret));

    fake_stop(&f);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_connect),
        cmocka_unit_test(test_client_invalid_job),
        cmocka_unit_test(test_client_submit_many),
        cmocka_unit_test(test_client_message_refused),
        cmocka_unit_test(test_client_unreachable),
        cmocka_unit_test(test_client_failover),
        cmocka_unit_test(test_client_standby),
        cmocka_unit_test(test_client_disconnect),
        cmocka_unit_test(test_client_wait),
        cmocka_unit_test(test_client_wait_resend),
        cmocka_unit_test(test_client_wait_timeout),
        cmocka_unit_test(test_client_curve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
