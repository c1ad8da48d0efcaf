/* test_curve - CurveZMQ on the broker's sockets and the collector's query
 * socket, with roles.
 *
 * Keys are made with `drover keygen` in the test dir; the broker runs with
 * --curve-secret and one allow-list directory per role. Peers are raw
 * ZeroMQ sockets configured as CURVE clients (keys read with zcert), and
 * messages are built with dv_msg_encode. Checked: a peer without a key and
 * one with an unlisted key get nothing (the handshake fails); each role may
 * send what docs/security.md says and is refused with code denied
 * otherwise; a worker key cannot speak under another worker's name; a key
 * removed and SIGHUP is refused afterwards while other peers go on; keygen
 * makes a 0600 secret and the broker refuses a 0644 one; without CurveZMQ
 * a non-loopback bind needs --insecure-bind. The collector, with one
 * certificate as the brokers' observer and as its query socket's server,
 * answers `drover status` to an observer key, code denied to a worker
 * key, nothing to a peer without a key; SIGHUP after removing a key
 * refuses it; with CurveZMQ it may bind beyond loopback.
 */
#include <czmq.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

#include "dv_clock.h"
#include "dv_proto.h"
#include "harness.h"

/* Role of each key the tests make; "stranger" is in no list. */
static const struct {
    const char *name, *dir;
} s_keys[] = {
    { "client1", "allow-clients" }, { "op1", "allow-operators" },
    { "w1", "allow-workers" },      { "w2", "allow-workers" },
    { "obs1", "allow-observers" },  { "stranger", NULL },
};

static void *s_ctx;

static void
s_path(harness_t *h, char *out, size_t size, const char *fmt, ...)
{
    char rel[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    snprintf(out, size, "%s/%s", h->dir, rel);
}

static void
s_keygen(harness_t *h, const char *name)
{
    char dir[512], out[512];
    s_path(h, dir, sizeof dir, "keys");
    assert_int_equal(
        harness_cli(out, sizeof out, "keygen", name, "--dir", dir, NULL), 0);
}

/* Makes every key, moves each public file into its role's directory, and
 * spawns the broker with CurveZMQ (not waiting for it): by its flags, or,
 * with from_env, by DROVER_CURVE_SECRET and DROVER_CURVE_<ROLE>S. */
static pid_t
s_spawn_curve_broker_as(harness_t *h, bool from_env)
{
    const char *dirs[] = { "keys", "allow-clients", "allow-operators",
                           "allow-workers", "allow-observers" };
    for (size_t i = 0; i < 5; i++) {
        char p[512];
        s_path(h, p, sizeof p, "%s", dirs[i]);
        mkdir(p, 0700);
    }
    s_keygen(h, "broker");
    for (size_t i = 0; i < sizeof s_keys / sizeof s_keys[0]; i++) {
        s_keygen(h, s_keys[i].name);
        if (s_keys[i].dir) {
            char from[512], to[512];
            s_path(h, from, sizeof from, "keys/%s.key", s_keys[i].name);
            s_path(h, to, sizeof to, "%s/%s.key", s_keys[i].dir,
                   s_keys[i].name);
            assert_int_equal(rename(from, to), 0);
        }
    }
    char secret[512], cl[512], op[512], wk[512], ob[512];
    s_path(h, secret, sizeof secret, "keys/broker.key_secret");
    s_path(h, cl, sizeof cl, "allow-clients");
    s_path(h, op, sizeof op, "allow-operators");
    s_path(h, wk, sizeof wk, "allow-workers");
    s_path(h, ob, sizeof ob, "allow-observers");
    const char *args[] = { "broker",   "--store",
                           h->store,   "--clients",
                           h->clients, "--workers",
                           h->workers, "--events",
                           h->events,  "--sync",
                           "off",      "--heartbeat",
                           "0.1",      "--worker-timeout",
                           "1",        "--log-format",
                           "text",     "--curve-secret",
                           secret,     "--curve-clients",
                           cl,         "--curve-operators",
                           op,         "--curve-workers",
                           wk,         "--curve-observers",
                           ob,         NULL };
    const char *env[][2] = {
        { "DROVER_CURVE_SECRET", secret }, { "DROVER_CURVE_CLIENTS", cl },
        { "DROVER_CURVE_OPERATORS", op },  { "DROVER_CURVE_WORKERS", wk },
        { "DROVER_CURVE_OBSERVERS", ob },
    };
    if (from_env) {
        args[17] = NULL; /* no --curve-* flag */
        for (size_t i = 0; i < 5; i++)
            setenv(env[i][0], env[i][1], 1);
    }
    pid_t pid = harness_spawn(h, args, NULL, "broker.log");
    for (size_t i = 0; from_env && i < 5; i++)
        unsetenv(env[i][0]);
    if (pid > 0)
        h->broker = pid;
    return pid;
}

static pid_t
s_spawn_curve_broker(harness_t *h)
{
    return s_spawn_curve_broker_as(h, false);
}

/* A socket of type connected to ep as a CURVE client with key name (NULL:
 * no CurveZMQ at all) of the server whose pair is KEYS/server.*, with
 * routing id rid if not NULL; KEYS is the directory keys under the test
 * dir. */
static void *
s_socket_keys(harness_t *h, const char *keys, int type, const char *ep,
              const char *name, const char *rid, const char *server_name)
{
    void *s = zmq_socket(s_ctx, type);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (rid)
        zmq_setsockopt(s, ZMQ_ROUTING_ID, rid, strlen(rid));
    if (name) {
        char p[512];
        s_path(h, p, sizeof p, "%s/%s.key_secret", keys, name);
        zcert_t *mine = zcert_load(p);
        assert_non_null(mine);
        s_path(h, p, sizeof p, "%s/%s.key_secret", keys, server_name);
        zcert_t *server = zcert_load(p);
        assert_non_null(server);
        zcert_apply(mine, s);
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, zcert_public_key(server), 32);
        zcert_destroy(&mine);
        zcert_destroy(&server);
    }
    assert_int_equal(zmq_connect(s, ep), 0);
    return s;
}

/* s_socket_keys with the keys in keys/. */
static void *
s_socket_to(harness_t *h, int type, const char *ep, const char *name,
            const char *rid, const char *server_name)
{
    return s_socket_keys(h, "keys", type, ep, name, rid, server_name);
}

/* A socket to the broker (s_socket_to with the broker's pair). */
static void *
s_socket(harness_t *h, int type, const char *ep, const char *name,
         const char *rid)
{
    return s_socket_to(h, type, ep, name, rid, "broker");
}

/* Sends msg and waits up to timeout_ms for one message back, decoded into
 * *out with its bytes in buf. Returns 0, or -1 when nothing came. */
static int
s_ask(void *s, const dv_msg_t *msg, dv_msg_t *out, char *buf, size_t size,
      int timeout_ms)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_msg_encode(msg, &sb), DV_OK);
    zmq_send(s, sb.data, sb.size, ZMQ_DONTWAIT);
    msgpack_sbuffer_destroy(&sb);
    zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, harness_scale(timeout_ms)) <= 0)
        return -1;
    int n = zmq_recv(s, buf, size, 0);
    if (n < 0)
        return -1;
    return dv_msg_decode(buf, (size_t)n, out, NULL, 0) == DV_OK ? 0 : -1;
}

static dv_msg_t
s_ctrl(const char *verb, const char *queue, const char *id)
{
    dv_msg_t m = { .type = DV_MSG_CTRL };
    m.u.ctrl.req = 42;
    m.u.ctrl.verb = dv_str(verb);
    if (queue)
        m.u.ctrl.queue = dv_str(queue);
    if (id)
        m.u.ctrl.id = dv_str(id);
    return m;
}

/* The code of the answer to msg (0 for an ok reply, or a welcome or
 * submitted), the reason into why; -1 when no answer came. */
static int
s_code_of(void *s, const dv_msg_t *msg, char *why, size_t size)
{
    char buf[65536];
    dv_msg_t r;
    if (s_ask(s, msg, &r, buf, sizeof buf, 5000) != 0)
        return -1;
    int code = 0;
    if (why)
        why[0] = '\0';
    if (r.type == DV_MSG_ERROR) {
        code = (int)r.u.error.code;
        if (why)
            dv_str_copy(r.u.error.reason, why, size);
    } else if (r.type == DV_MSG_REPLY && !r.u.reply.ok) {
        code = (int)r.u.reply.code;
        if (why)
            dv_str_copy(r.u.reply.error, why, size);
    }
    dv_msg_release(&r);
    return code;
}

/* Waits until the broker answers status to op1. */
static void *
s_wait_ready(harness_t *h)
{
    void *op = s_socket(h, ZMQ_DEALER, h->clients, "op1", NULL);
    dv_msg_t st = s_ctrl("status", NULL, NULL);
    char buf[65536];
    for (int i = 0; i < 50; i++) {
        dv_msg_t r;
        if (s_ask(op, &st, &r, buf, sizeof buf, 200) == 0) {
            bool ok = r.type == DV_MSG_REPLY && r.u.reply.ok;
            dv_msg_release(&r);
            assert_true(ok);
            /* Answers to the other requests sent while it started. */
            zmq_pollitem_t it = { op, 0, ZMQ_POLLIN, 0 };
            while (zmq_poll(&it, 1, 300) > 0)
                zmq_recv(op, buf, sizeof buf, 0);
            return op;
        }
    }
    char *log = harness_read(h, "broker.log");
    fprintf(stderr, "broker.log:\n%s\n", log ? log : "(none)");
    free(log);
    fail_msg("the broker with CurveZMQ did not answer status");
    return NULL;
}

static dv_msg_t
s_hello(const char *name, dv_str_t *queue)
{
    dv_msg_t m = { .type = DV_MSG_HELLO };
    m.u.hello.name = dv_str(name);
    m.u.hello.host = dv_str("localhost");
    m.u.hello.pid = 1;
    m.u.hello.queues = queue;
    m.u.hello.nqueues = 1;
    m.u.hello.concurrency = 1;
    m.u.hello.credit = 1;
    m.u.hello.fencing = true;
    return m;
}

static dv_msg_t
s_submit(dv_jobspec_t *js)
{
    memset(js, 0, sizeof *js);
    js->queue = dv_str("default");
    js->type = dv_str("noop");
    js->priority = 5;
    dv_msg_t m = { .type = DV_MSG_SUBMIT };
    m.u.submit.req = 7;
    m.u.submit.jobs = js;
    m.u.submit.njobs = 1;
    return m;
}

/* One context for the whole run, never terminated: a failed assertion
 * leaves sockets open, and zmq_ctx_term would wait for them. */
static int
s_setup(void **state)
{
    if (!s_ctx)
        s_ctx = zmq_ctx_new();
    return harness_setup(state);
}

static int
s_teardown(void **state)
{
    return harness_teardown(state);
}

/* ---- tests ---------------------------------------------------------------- */

/* No key, or a key in no list: the handshake fails and nothing comes back,
 * on every socket; the unlisted key is logged once by its public key. */
static void
t_handshake_refused(void **state)
{
    harness_t *h = *state;
    assert_true(s_spawn_curve_broker(h) > 0);
    void *op = s_wait_ready(h);
    dv_msg_t st = s_ctrl("status", NULL, NULL);

    void *plain = s_socket(h, ZMQ_DEALER, h->clients, NULL, NULL);
    void *stranger = s_socket(h, ZMQ_DEALER, h->clients, "stranger", NULL);
    void *wstranger = s_socket(h, ZMQ_DEALER, h->workers, "stranger", "x");
    char buf[4096];
    dv_msg_t r;
    assert_int_equal(s_ask(plain, &st, &r, buf, sizeof buf, 1500), -1);
    assert_int_equal(s_ask(stranger, &st, &r, buf, sizeof buf, 1500), -1);
    dv_str_t q = dv_str("default");
    dv_msg_t hello = s_hello("x", &q);
    assert_int_equal(s_ask(wstranger, &hello, &r, buf, sizeof buf, 1500), -1);

    /* Events: an observer hears them; a stranger, a plain SUB, a worker
     * key and a client key (events carry every client's jobs) do not. */
    void *sub_obs = s_socket(h, ZMQ_SUB, h->events, "obs1", NULL);
    void *sub_str = s_socket(h, ZMQ_SUB, h->events, "stranger", NULL);
    void *sub_plain = s_socket(h, ZMQ_SUB, h->events, NULL, NULL);
    void *sub_wk = s_socket(h, ZMQ_SUB, h->events, "w1", NULL);
    void *sub_cl = s_socket(h, ZMQ_SUB, h->events, "client1", NULL);
    void *subs[] = { sub_obs, sub_str, sub_plain, sub_wk, sub_cl };
    for (int i = 0; i < 5; i++)
        zmq_setsockopt(subs[i], ZMQ_SUBSCRIBE, "", 0);
    void *client = s_socket(h, ZMQ_DEALER, h->clients, "client1", NULL);
    bool heard = false;
    for (int i = 0; i < 50 && !heard; i++) {
        dv_jobspec_t js;
        dv_msg_t sub = s_submit(&js);
        assert_int_equal(s_code_of(client, &sub, NULL, 0), 0);
        zmq_pollitem_t it = { sub_obs, 0, ZMQ_POLLIN, 0 };
        heard = zmq_poll(&it, 1, 100) > 0;
    }
    assert_true(heard);
    /* Worker and client keys are listed, but not for the events socket. */
    zmq_pollitem_t its[] = { { sub_str, 0, ZMQ_POLLIN, 0 },
                             { sub_plain, 0, ZMQ_POLLIN, 0 },
                             { sub_wk, 0, ZMQ_POLLIN, 0 },
                             { sub_cl, 0, ZMQ_POLLIN, 0 } };
    assert_int_equal(zmq_poll(its, 4, 500), 0);

    /* The stranger was refused at least three times, logged once. */
    char p[512];
    s_path(h, p, sizeof p, "keys/stranger.key_secret");
    zcert_t *c = zcert_load(p);
    assert_non_null(c);
    assert_int_equal(harness_count_lines(h, "broker.log", "curve.key_refused",
                                         zcert_public_txt(c), NULL),
                     1);
    /* ... and no secret key is in the log. */
    char *log = harness_read(h, "broker.log");
    assert_non_null(log);
    assert_null(strstr(log, zcert_secret_txt(c)));
    free(log);
    zcert_destroy(&c);
    void *all[] = { op,      plain,   stranger,  wstranger, client,
                    sub_obs, sub_str, sub_plain, sub_wk,    sub_cl };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        zmq_close(all[i]);
}

/* What each role may send, and the denied refusals. */
static void
t_roles(void **state)
{
    harness_t *h = *state;
    assert_true(s_spawn_curve_broker(h) > 0);
    void *op = s_wait_ready(h);
    void *client = s_socket(h, ZMQ_DEALER, h->clients, "client1", NULL);
    void *obs = s_socket(h, ZMQ_DEALER, h->clients, "obs1", NULL);
    void *wk = s_socket(h, ZMQ_DEALER, h->clients, "w1", NULL);
    void *cw = s_socket(h, ZMQ_DEALER, h->workers, "client1", "client1");
    char why[512];
    dv_jobspec_t js;
    dv_msg_t submit = s_submit(&js);
    static const char id[] = "01a2046f-a012-753e-8bb6-41246e880ddf";

    /* A worker key: no submit, no cancel, not even status. */
    assert_int_equal(s_code_of(wk, &submit, why, sizeof why), DV_CODE_DENIED);
    assert_non_null(strstr(why, "role worker may not submit"));
    dv_msg_t cancel = s_ctrl("cancel", NULL, id);
    assert_int_equal(s_code_of(wk, &cancel, why, sizeof why), DV_CODE_DENIED);
    assert_non_null(strstr(why, "role worker may not cancel"));

    /* A client key: submit, status, job; no hello, no check, no pause. */
    assert_int_equal(s_code_of(client, &submit, NULL, 0), 0);
    dv_msg_t st = s_ctrl("status", NULL, NULL);
    assert_int_equal(s_code_of(client, &st, NULL, 0), 0);
    dv_msg_t job = s_ctrl("job", NULL, id);
    assert_int_equal(s_code_of(client, &job, NULL, 0), DV_CODE_NOT_FOUND);
    dv_msg_t check = s_ctrl("check", NULL, NULL);
    assert_int_equal(s_code_of(client, &check, why, sizeof why),
                     DV_CODE_DENIED);
    assert_non_null(strstr(why, "role client may not check"));
    dv_msg_t pause = s_ctrl("pause", "default", NULL);
    assert_int_equal(s_code_of(client, &pause, NULL, 0), DV_CODE_DENIED);
    dv_str_t q = dv_str("default");
    dv_msg_t hello = s_hello("client1", &q);
    assert_int_equal(s_code_of(cw, &hello, why, sizeof why), DV_CODE_DENIED);
    assert_non_null(strstr(why, "role client may not hello"));

    /* An observer: status only. */
    assert_int_equal(s_code_of(obs, &cancel, why, sizeof why), DV_CODE_DENIED);
    assert_non_null(strstr(why, "role observer may not cancel"));
    assert_int_equal(s_code_of(obs, &submit, NULL, 0), DV_CODE_DENIED);
    assert_int_equal(s_code_of(obs, &st, NULL, 0), 0);

    /* An operator: pause, check, resume. */
    assert_int_equal(s_code_of(op, &pause, NULL, 0), 0);
    assert_int_equal(s_code_of(op, &check, NULL, 0), 0);
    dv_msg_t resume = s_ctrl("resume", "default", NULL);
    assert_int_equal(s_code_of(op, &resume, NULL, 0), 0);

    /* Schedules: list and show for every role that reads, the changes
     * for operators only (an add without args gets as far as its check). */
    dv_msg_t slist = s_ctrl("schedule.list", NULL, NULL);
    assert_int_equal(s_code_of(client, &slist, NULL, 0), 0);
    assert_int_equal(s_code_of(obs, &slist, NULL, 0), 0);
    assert_int_equal(s_code_of(wk, &slist, NULL, 0), DV_CODE_DENIED);
    dv_msg_t sadd = s_ctrl("schedule.add", NULL, NULL);
    assert_int_equal(s_code_of(client, &sadd, why, sizeof why), DV_CODE_DENIED);
    assert_non_null(strstr(why, "role client may not schedule.add"));
    assert_int_equal(s_code_of(obs, &sadd, NULL, 0), DV_CODE_DENIED);
    assert_int_equal(s_code_of(op, &sadd, NULL, 0), DV_CODE_INVALID_ARGUMENT);

    /* The observer's cancel, refused twice, is logged once. */
    assert_int_equal(s_code_of(obs, &cancel, NULL, 0), DV_CODE_DENIED);
    assert_int_equal(harness_count_lines(h, "broker.log", "broker.not_allowed",
                                         "role=observer", "verb=cancel", NULL),
                     1);
    void *all[] = { op, client, obs, wk, cw };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        zmq_close(all[i]);
}

/* A worker key speaks only under its own name. */
static void
t_worker_name(void **state)
{
    harness_t *h = *state;
    assert_true(s_spawn_curve_broker(h) > 0);
    void *op = s_wait_ready(h);
    dv_str_t q = dv_str("default");
    char why[512];

    /* w2's key under w1's routing id. */
    void *thief = s_socket(h, ZMQ_DEALER, h->workers, "w2", "w1");
    dv_msg_t hello1 = s_hello("w1", &q);
    assert_int_equal(s_code_of(thief, &hello1, why, sizeof why),
                     DV_CODE_DENIED);
    assert_non_null(strstr(why, "may not speak as worker 'w1'"));
    zmq_close(thief);

    /* w1's key under its own name is welcome, and so is w2's. */
    void *w1 = s_socket(h, ZMQ_DEALER, h->workers, "w1", "w1");
    assert_int_equal(s_code_of(w1, &hello1, NULL, 0), 0);
    void *w2 = s_socket(h, ZMQ_DEALER, h->workers, "w2", "w2");
    dv_msg_t hello2 = s_hello("w2", &q);
    assert_int_equal(s_code_of(w2, &hello2, NULL, 0), 0);
    zmq_close(w1);
    zmq_close(w2);
    zmq_close(op);
}

/* SIGHUP after removing a key: its connected peer is refused from then on,
 * a new connection with it fails at the handshake, and other peers go on.
 */
static void
t_reload_removes_key(void **state)
{
    harness_t *h = *state;
    pid_t b = s_spawn_curve_broker(h);
    assert_true(b > 0);
    void *op = s_wait_ready(h);
    void *client = s_socket(h, ZMQ_DEALER, h->clients, "client1", NULL);
    dv_msg_t st = s_ctrl("status", NULL, NULL);
    assert_int_equal(s_code_of(client, &st, NULL, 0), 0);

    char p[512];
    s_path(h, p, sizeof p, "allow-clients/client1.key");
    assert_int_equal(unlink(p), 0);
    assert_int_equal(kill(b, SIGHUP), 0);
    assert_true(
        harness_wait_line(h, "broker.log", "broker.curve_reloaded", 5000));
    assert_int_equal(
        harness_count_lines(h, "broker.log", "broker.curve_reloaded", NULL), 1);

    char why[512];
    assert_int_equal(s_code_of(client, &st, why, sizeof why), DV_CODE_DENIED);
    assert_non_null(strstr(why, "no longer allowed"));
    assert_int_equal(s_code_of(op, &st, NULL, 0), 0);
    void *again = s_socket(h, ZMQ_DEALER, h->clients, "client1", NULL);
    char buf[4096];
    dv_msg_t r;
    assert_int_equal(s_ask(again, &st, &r, buf, sizeof buf, 1500), -1);
    /* The broker is still alive after the SIGHUP. */
    assert_int_equal(kill(b, 0), 0);
    zmq_close(again);
    zmq_close(client);
    zmq_close(op);
}

/* Whether the job (arg: harness and id) is running, as its client sees. */
typedef struct {
    harness_t *h;
    const char *id;
} s_job_ref_t;

static bool
s_job_running(void *arg)
{
    s_job_ref_t *r = arg;
    char *body = NULL;
    if (drover_ctrl(r->h->client, "job", r->id, NULL, &body) != DROVER_OK)
        return false;
    bool yes = strstr(body, "\"state\":\"running\"") != NULL;
    free(body);
    return yes;
}

/* A worker's key rotated in place (a new pair of the same name): the
 * broker's allow-list and the worker's secret file replaced, SIGHUP to
 * both. The worker reconnects with its new key and keeps its job: the job
 * it was running across the rotation succeeds in one attempt (its lease
 * adopted), and a new one runs too. */
static void
t_worker_rotation(void **state)
{
    harness_t *h = *state;
    const char *clients[] = { "client1", NULL };
    const char *workers[] = { "w1", NULL };
    assert_int_equal(harness_curve(h, "client1", clients, NULL, workers, NULL),
                     0);
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--concurrency", "1", NULL };
    pid_t w = harness_start_worker(h, wargs);
    assert_true(w > 0);
    char ids[2][37];
    assert_int_equal(harness_submit_n(h, "default", "sleep", "2", 1, ids), 0);
    s_job_ref_t ref = { h, ids[0] };
    assert_true(harness_wait_until(s_job_running, &ref, 10000));

    char dir[512], out[512], from[600], to[600];
    s_path(h, dir, sizeof dir, "curve/new");
    assert_int_equal(mkdir(dir, 0700), 0);
    assert_int_equal(
        harness_cli(out, sizeof out, "keygen", "w1", "--dir", dir, NULL), 0);
    snprintf(from, sizeof from, "%s/w1.key", dir);
    s_path(h, to, sizeof to, "curve/allow-workers/w1.key");
    assert_int_equal(rename(from, to), 0);
    snprintf(from, sizeof from, "%s/w1.key_secret", dir);
    s_path(h, to, sizeof to, "curve/keys/w1.key_secret");
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(kill(h->broker, SIGHUP), 0);
    assert_true(
        harness_wait_line(h, "broker.log", "broker.curve_reloaded", 5000));
    assert_int_equal(kill(w, SIGHUP), 0);
    assert_true(
        harness_wait_line(h, "worker-1.log", "changed: reconnecting", 5000));

    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, 1, &r, 20000), DROVER_OK);
    assert_int_equal(r.succeeded, 1);
    assert_int_equal(r.max_attempts, 1);
    assert_int_equal(harness_submit_n(h, "default", "echo", "{}", 1, ids + 1),
                     0);
    memset(&r, 0, sizeof r);
    assert_int_equal(harness_wait_ids(h, ids + 1, 1, &r, 20000), DROVER_OK);
    assert_int_equal(r.succeeded, 1);
    /* A second SIGHUP with nothing changed keeps the connection. */
    assert_int_equal(kill(w, SIGHUP), 0);
    assert_true(harness_wait_line(h, "worker-1.log", "unchanged", 5000));
    assert_int_equal(kill(w, 0), 0);
}

/* keygen: a 0600 secret, never overwritten; the broker refuses a secret
 * others may read. */
static void
t_keygen_modes(void **state)
{
    harness_t *h = *state;
    char dir[512], p[512], out[512];
    s_path(h, dir, sizeof dir, "keys");
    mkdir(dir, 0700);
    s_keygen(h, "broker");
    s_path(h, p, sizeof p, "keys/broker.key_secret");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(
        harness_cli(out, sizeof out, "keygen", "broker", "--dir", dir, NULL),
        1);

    assert_int_equal(chmod(p, 0644), 0);
    const char *args[] = {
        "broker",   "--store",        h->store,   "--clients",
        h->clients, "--workers",      h->workers, "--events",
        h->events,  "--sync",         "off",      "--log-format",
        "text",     "--curve-secret", p,          NULL
    };
    pid_t b = harness_spawn(h, args, NULL, "broker.log");
    assert_true(b > 0);
    int status = harness_wait_exit(h, b, 5000);
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_int_equal(harness_count_lines(h, "broker.log", "broker.curve_failed",
                                         "mode 0644", "broker.key_secret",
                                         NULL),
                     1);
}

/* Without CurveZMQ: a non-loopback bind is a start error, unless
 * --insecure-bind, which warns. */
static void
t_insecure_bind(void **state)
{
    harness_t *h = *state;
    const char *args[] = {
        "broker",    "--store",      h->store,   "--clients", "tcp://0.0.0.0:*",
        "--workers", h->workers,     "--events", h->events,   "--sync",
        "off",       "--log-format", "text",     NULL,        NULL
    };
    pid_t b = harness_spawn(h, args, NULL, "refused.log");
    assert_true(b > 0);
    int status = harness_wait_exit(h, b, 5000);
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    assert_int_equal(harness_count_lines(h, "refused.log", "--insecure-bind",
                                         "tcp://0.0.0.0:*", NULL),
                     1);

    args[13] = "--insecure-bind";
    b = harness_spawn(h, args, NULL, "open.log");
    assert_true(b > 0);
    assert_true(harness_wait_line(h, "open.log", "broker.started", 5000));
    assert_int_equal(
        harness_count_lines(h, "open.log", "broker.insecure_bind", NULL), 1);
    assert_int_equal(harness_count_lines(h, "open.log", "broker.started", NULL),
                     1);
}

/* Submits one echo job (run_at 0: now) as s's key; its id into id. */
/* Submits one echo job with idempotency key key (or none); true when the
 * broker said it was a duplicate. */
static bool
s_submit_keyed(void *s, int64_t run_at_ms, const char *key, char id[37])
{
    dv_jobspec_t js;
    dv_msg_t m = s_submit(&js);
    js.type = dv_str("echo");
    js.payload = dv_strn("\x2a", 1); /* msgpack 42 */
    js.run_at_ms = run_at_ms;
    if (key)
        js.key = dv_str(key);
    char buf[4096];
    dv_msg_t r;
    assert_int_equal(s_ask(s, &m, &r, buf, sizeof buf, 5000), 0);
    assert_int_equal(r.type, DV_MSG_SUBMIT_REPLY);
    assert_int_equal(r.u.submit_reply.nacks, 1);
    assert_int_equal(r.u.submit_reply.acks[0].id.len, 36);
    dv_str_copy(r.u.submit_reply.acks[0].id, id, 37);
    bool duplicate = r.u.submit_reply.acks[0].duplicate;
    dv_msg_release(&r);
    return duplicate;
}

static void
s_submit_echo(void *s, int64_t run_at_ms, char id[37])
{
    assert_false(s_submit_keyed(s, run_at_ms, NULL, id));
}

/* What a wait on id tells s within timeout_ms: the job's state (-1 when
 * nothing came), its result's bytes into result. */
static int
s_wait_state(void *s, const char *id, int timeout_ms, char *result, size_t size)
{
    dv_str_t ids[] = { dv_str(id) };
    dv_msg_t m = { .type = DV_MSG_WAIT };
    m.u.wait.req = 9;
    m.u.wait.ids = ids;
    m.u.wait.nids = 1;
    char buf[4096];
    dv_msg_t r;
    if (s_ask(s, &m, &r, buf, sizeof buf, timeout_ms) != 0)
        return -1;
    assert_int_equal(r.type, DV_MSG_RESULT);
    assert_int_equal(r.u.result.nresults, 1);
    assert_true(dv_str_eq(r.u.result.results[0].id, id));
    int state = (int)r.u.result.results[0].state;
    if (result)
        dv_str_copy(r.u.result.results[0].result, result, size);
    dv_msg_release(&r);
    return state;
}

/* The code of ctrl job on id asked by s (0: the job was shown). */
static int
s_job_code(void *s, const char *id)
{
    dv_msg_t job = s_ctrl("job", NULL, id);
    return s_code_of(s, &job, NULL, 0);
}

/* Two client keys: each reads only its own jobs, and another's is
 * answered as one that does not exist (job: not_found; wait: unknown),
 * live or finished; an operator reads both. Idempotency keys are per
 * owner. The owners are in the store,
 * so a restarted broker still knows them. */
static void
t_job_owner(void **state)
{
    harness_t *h = *state;
    const char *clients[] = { "client1", "client2", NULL };
    const char *operators[] = { "op1", NULL };
    const char *workers[] = { "w1", NULL };
    assert_int_equal(
        harness_curve(h, "client1", clients, operators, workers, NULL), 0);
    assert_true(harness_start_broker(h, NULL) > 0);
    void *a = s_socket_keys(h, "curve/keys", ZMQ_DEALER, h->clients, "client1",
                            NULL, "broker");
    void *b = s_socket_keys(h, "curve/keys", ZMQ_DEALER, h->clients, "client2",
                            NULL, "broker");
    void *op = s_socket_keys(h, "curve/keys", ZMQ_DEALER, h->clients, "op1",
                             NULL, "broker");
    char id[37], later[37], result[16];
    static const char none[] = "01a2046f-a012-753e-8bb6-41246e880ddf";

    /* Live (queued: no worker yet). */
    s_submit_echo(a, 0, id);
    assert_int_equal(s_job_code(a, id), 0);
    assert_int_equal(s_job_code(op, id), 0);
    assert_int_equal(s_job_code(b, id), DV_CODE_NOT_FOUND);
    assert_int_equal(s_job_code(b, none), DV_CODE_NOT_FOUND);
    assert_int_equal(s_wait_state(b, id, 5000, NULL, 0), DV_STATE_UNKNOWN);
    assert_int_equal(s_wait_state(b, none, 5000, NULL, 0), DV_STATE_UNKNOWN);

    /* Finished: A's wait gets its result. */
    assert_true(harness_start_worker(h, NULL) > 0);
    result[0] = '\0';
    assert_int_equal(s_wait_state(a, id, 10000, result, sizeof result),
                     DV_STATE_SUCCEEDED);
    assert_string_equal(result, "\x2a");
    assert_int_equal(s_wait_state(b, id, 5000, NULL, 0), DV_STATE_UNKNOWN);
    assert_int_equal(s_job_code(b, id), DV_CODE_NOT_FOUND);
    assert_int_equal(s_job_code(a, id), 0);
    assert_int_equal(s_job_code(op, id), 0);
    assert_int_equal(s_wait_state(op, id, 5000, result, sizeof result),
                     DV_STATE_SUCCEEDED);
    assert_string_equal(result, "\x2a");

    /* Idempotency keys are per owner: B's use of A's key is a job of
     * B's own, and tells B nothing of A's. */
    char ka[37], kb[37], again[37];
    assert_false(s_submit_keyed(a, dv_now_ms() + 3600 * 1000, "nightly", ka));
    assert_false(s_submit_keyed(b, dv_now_ms() + 3600 * 1000, "nightly", kb));
    assert_string_not_equal(ka, kb);
    assert_true(s_submit_keyed(a, 0, "nightly", again));
    assert_string_equal(again, ka);
    assert_true(s_submit_keyed(b, 0, "nightly", again));
    assert_string_equal(again, kb);
    assert_int_equal(s_job_code(b, ka), DV_CODE_NOT_FOUND);

    /* One more that stays live across a restart (due in an hour). */
    s_submit_echo(a, dv_now_ms() + 3600 * 1000, later);
    assert_int_equal(s_job_code(b, later), DV_CODE_NOT_FOUND);
    harness_kill_all(h);
    assert_true(harness_start_broker(h, NULL) > 0);
    assert_int_equal(s_job_code(a, id), 0);
    assert_int_equal(s_job_code(a, later), 0);
    assert_int_equal(s_job_code(op, later), 0);
    assert_int_equal(s_job_code(b, id), DV_CODE_NOT_FOUND);
    assert_int_equal(s_job_code(b, later), DV_CODE_NOT_FOUND);
    assert_int_equal(s_wait_state(b, id, 5000, NULL, 0), DV_STATE_UNKNOWN);
    assert_int_equal(s_wait_state(b, later, 5000, NULL, 0), DV_STATE_UNKNOWN);
    assert_int_equal(s_wait_state(a, id, 5000, result, sizeof result),
                     DV_STATE_SUCCEEDED);
    assert_string_equal(result, "\x2a");
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM jobs WHERE "
                                        "owner = 'client1'"),
                     3);
    /* The keys survive the restart, each in its owner's namespace. */
    assert_true(s_submit_keyed(b, 0, "nightly", again));
    assert_string_equal(again, kb);
    assert_true(s_submit_keyed(a, 0, "nightly", again));
    assert_string_equal(again, ka);
    zmq_close(a);
    zmq_close(b);
    zmq_close(op);
}

/* The pipeline with CurveZMQ on (harness_curve: the broker, two workers and
 * the client all with keys): 10,000 jobs end succeeded. Then no secret key
 * is anywhere it should not be: the logs, the store, the status, --help. */
static void
t_pipeline_and_no_secret(void **state)
{
    harness_t *h = *state;
    const char *clients[] = { "client1", NULL };
    const char *workers[] = { "w1", "w2", NULL };
    assert_int_equal(harness_curve(h, "client1", clients, NULL, workers, NULL),
                     0);
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--concurrency", "2", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    assert_true(harness_start_worker(h, wargs) > 0);
    enum { N = 10000 };
    char(*ids)[37] = calloc(N, 37);
    assert_non_null(ids);
    assert_int_equal(
        harness_submit_n(h, "default", "echo", "{\"x\":1}", N, ids), 0);
    harness_results_t r = { 0 };
    assert_int_equal(harness_wait_ids(h, ids, N, &r, 120000), DROVER_OK);
    assert_int_equal(r.succeeded, N);
    free(ids);
    char *status = harness_status(h);
    assert_non_null(status);

    const char *names[] = { "broker", "client1", "w1", "w2" };
    char secret[4][64];
    for (int i = 0; i < 4; i++) {
        char p[512];
        s_path(h, p, sizeof p, "curve/keys/%s.key_secret", names[i]);
        zcert_t *c = zcert_load(p);
        assert_non_null(c);
        snprintf(secret[i], sizeof secret[i], "%s", zcert_secret_txt(c));
        zcert_destroy(&c);
        assert_int_equal(strlen(secret[i]), 40);
    }
    /* A state dump too (SIGUSR1), then stop the processes so every log is
     * complete. */
    assert_int_equal(harness_signal(h, h->broker, SIGUSR1, 0), 0);
    char help[8192];
    assert_int_equal(harness_cli(help, sizeof help, "broker", "--help", NULL),
                     0);
    harness_kill_all(h);
    const char *files[] = { "broker.log", "worker-1.log", "worker-2.log",
                            "drover.db", "drover.db-wal" };
    for (int i = 0; i < 4; i++) {
        assert_null(strstr(status, secret[i]));
        assert_null(strstr(help, secret[i]));
        for (size_t k = 0; k < sizeof files / sizeof files[0]; k++)
            if (harness_file_has(h, files[k], secret[i]))
                fail_msg("%s's secret key is in %s", names[i], files[k]);
    }
    free(status);
}

/* ---- the collector's query socket ---------------------------------------- */

/* A CurveZMQ broker (its keys and lists from the environment) and a
 * collector with one certificate, "collector": an observer of the broker,
 * and the server of its query socket at query, with the broker's allow-list
 * directories. Returns the collector's PID once it has synced. */
static pid_t
s_start_curve_collector(harness_t *h, char *query, size_t size)
{
    char keys[512], from[512], to[512];
    s_path(h, keys, sizeof keys, "keys");
    mkdir(keys, 0700);
    s_path(h, to, sizeof to, "allow-observers");
    mkdir(to, 0700);
    s_keygen(h, "collector");
    s_path(h, from, sizeof from, "keys/collector.key");
    s_path(h, to, sizeof to, "allow-observers/collector.key");
    assert_int_equal(link(from, to), 0);
    assert_true(s_spawn_curve_broker_as(h, true) > 0);
    zmq_close(s_wait_ready(h));

    char store[512], secret[512], server[512], cl[512], op[512], wk[512],
        ob[512];
    snprintf(query, size, "ipc://%s/query.sock", h->dir);
    s_path(h, store, sizeof store, "collector.db");
    s_path(h, secret, sizeof secret, "keys/collector.key_secret");
    s_path(h, server, sizeof server, "keys/broker.key");
    s_path(h, cl, sizeof cl, "allow-clients");
    s_path(h, op, sizeof op, "allow-operators");
    s_path(h, wk, sizeof wk, "allow-workers");
    s_path(h, ob, sizeof ob, "allow-observers");
    const char *args[] = { "collector", "--events",
                           h->events,   "--broker",
                           h->clients,  "--bind",
                           query,       "--http",
                           "off",       "--store",
                           store,       "--log-format",
                           "text",      "--curve-secret",
                           secret,      "--curve-server",
                           server,      "--curve-clients",
                           cl,          "--curve-operators",
                           op,          "--curve-workers",
                           wk,          "--curve-observers",
                           ob,          NULL };
    pid_t pid = harness_spawn(h, args, NULL, "collector.log");
    assert_true(pid > 0);
    /* Synced from the broker as its observer, over CurveZMQ. */
    if (!harness_wait_line(h, "collector.log", "collector.resynced", 10000)) {
        char *log = harness_read(h, "collector.log");
        fprintf(stderr, "collector.log:\n%s\n", log ? log : "(none)");
        free(log);
        fail_msg("the collector with CurveZMQ did not sync");
    }
    return pid;
}

/* `drover status` with an observer key is answered by the collector; a
 * client key gets the totals but no job history (drover job shows its own
 * job from the broker); a worker key gets denied (logged once); no
 * key, or an unlisted one, gets nothing. */
static void
t_collector_roles(void **state)
{
    harness_t *h = *state;
    char query[320], secret[512], server[512], none[512], out[16384];
    s_start_curve_collector(h, query, sizeof query);
    s_path(h, server, sizeof server, "keys/collector.key");
    snprintf(none, sizeof none, "ipc://%s/no-broker.sock", h->dir);

    /* The CLI, with an observer key: the collector's own answer (no
     * fallback to a broker: there is none at --broker). */
    s_path(h, secret, sizeof secret, "keys/obs1.key_secret");
    assert_int_equal(harness_cli(out, sizeof out, "--curve-secret", secret,
                                 "--collector-curve-server", server, "status",
                                 "--collector", query, "--broker", none,
                                 "--json", NULL),
                     0);
    assert_non_null(strstr(out, "\"collector\""));
    /* After a collector-only command, --curve-server is the collector's. */
    assert_int_equal(harness_cli(out, sizeof out, "workers", "--collector",
                                 query, "--curve-secret", secret,
                                 "--curve-server", server, "--json", NULL),
                     0);
    /* From the environment. */
    setenv("DROVER_CURVE_SECRET", secret, 1);
    setenv("DROVER_COLLECTOR_CURVE_SERVER", server, 1);
    int rc = harness_cli(out, sizeof out, "queues", "--collector", query,
                         "--json", NULL);
    unsetenv("DROVER_CURVE_SECRET");
    unsetenv("DROVER_COLLECTOR_CURVE_SERVER");
    assert_int_equal(rc, 0);

    /* Operators and observers may ask anything; a client the totals
     * only, not the jobs of every client. */
    dv_msg_t st = s_ctrl("status", NULL, NULL);
    const char *readers[] = { "client1", "op1", "obs1" };
    const char *totals[] = { "status", "workers", "queues", "keys", "health" };
    const char *histories[] = { "jobs", "batch", "running" };
    char why[512];
    for (size_t i = 0; i < 3; i++) {
        void *s =
            s_socket_to(h, ZMQ_DEALER, query, readers[i], NULL, "collector");
        for (size_t v = 0; v < 5; v++) {
            dv_msg_t q = s_ctrl(totals[v], NULL, NULL);
            if (s_code_of(s, &q, why, sizeof why) != 0)
                fail_msg("%s asking %s: %s", readers[i], totals[v], why);
        }
        for (size_t v = 0; v < 3; v++) {
            dv_msg_t q = s_ctrl(histories[v], NULL, NULL);
            if (!strcmp(histories[v], "batch"))
                q.u.ctrl.args = dv_strn("\x81\xa4name\xa1x", 8);
            int code = s_code_of(s, &q, why, sizeof why);
            if (i == 0 && code != DV_CODE_DENIED)
                fail_msg("a client asking %s: code %d", histories[v], code);
            if (i > 0 && code != 0)
                fail_msg("%s asking %s: %s", readers[i], histories[v], why);
        }
        zmq_close(s);
    }
    assert_int_equal(harness_count_lines(h, "collector.log",
                                         "collector.not_allowed", "client1",
                                         NULL),
                     3);

    /* drover job with a client key: the collector may not show it, the
     * broker shows its own job. */
    void *b = s_socket(h, ZMQ_DEALER, h->clients, "client1", NULL);
    char id[37];
    s_submit_echo(b, dv_now_ms() + 3600 * 1000, id);
    zmq_close(b);
    char bserver[512];
    s_path(h, secret, sizeof secret, "keys/client1.key_secret");
    s_path(h, bserver, sizeof bserver, "keys/broker.key");
    setenv("DROVER_CURVE_SECRET", secret, 1);
    setenv("DROVER_CURVE_SERVER", bserver, 1);
    setenv("DROVER_COLLECTOR_CURVE_SERVER", server, 1);
    rc = harness_cli(out, sizeof out, "job", id, "--collector", query,
                     "--broker", h->clients, NULL);
    unsetenv("DROVER_CURVE_SECRET");
    unsetenv("DROVER_CURVE_SERVER");
    unsetenv("DROVER_COLLECTOR_CURVE_SERVER");
    if (rc != 0 || !strstr(out, id) || !strstr(out, "scheduled") ||
        !strstr(out, "from the broker"))
        fail_msg("drover job with a client key: exit %d:\n%s", rc, out);

    /* A worker key: admitted, every query refused, logged once. */
    void *w = s_socket_to(h, ZMQ_DEALER, query, "w1", NULL, "collector");
    assert_int_equal(s_code_of(w, &st, why, sizeof why), DV_CODE_DENIED);
    assert_non_null(strstr(why, "role worker"));
    dv_msg_t jobs = s_ctrl("jobs", NULL, NULL);
    assert_int_equal(s_code_of(w, &jobs, NULL, 0), DV_CODE_DENIED);
    zmq_close(w);
    assert_int_equal(harness_count_lines(h, "collector.log",
                                         "collector.not_allowed", "w1", NULL),
                     1);
    s_path(h, secret, sizeof secret, "keys/w1.key_secret");
    assert_int_equal(harness_cli(out, sizeof out, "workers", "--collector",
                                 query, "--curve-secret", secret,
                                 "--curve-server", server, NULL),
                     5); /* denied */

    /* No key, or a key in no list: no answer at all. */
    char buf[4096];
    dv_msg_t r;
    void *plain = s_socket_to(h, ZMQ_DEALER, query, NULL, NULL, "collector");
    assert_int_equal(s_ask(plain, &st, &r, buf, sizeof buf, 1500), -1);
    zmq_close(plain);
    void *stranger =
        s_socket_to(h, ZMQ_DEALER, query, "stranger", NULL, "collector");
    assert_int_equal(s_ask(stranger, &st, &r, buf, sizeof buf, 1500), -1);
    zmq_close(stranger);
    assert_int_equal(
        harness_cli(out, sizeof out, "health", "--collector", query, NULL), 3);
}

/* SIGHUP after removing the observer's key: its open connection is refused
 * from then on, a new one gets nothing; a key added is admitted. */
static void
t_collector_reload(void **state)
{
    harness_t *h = *state;
    char query[320], p[512], q[512];
    pid_t c = s_start_curve_collector(h, query, sizeof query);
    dv_msg_t st = s_ctrl("status", NULL, NULL);
    void *obs = s_socket_to(h, ZMQ_DEALER, query, "obs1", NULL, "collector");
    assert_int_equal(s_code_of(obs, &st, NULL, 0), 0);

    /* stranger becomes an observer, obs1 is removed */
    s_path(h, p, sizeof p, "allow-observers/obs1.key");
    assert_int_equal(unlink(p), 0);
    s_path(h, p, sizeof p, "keys/stranger.key");
    s_path(h, q, sizeof q, "allow-observers/stranger.key");
    assert_int_equal(rename(p, q), 0);
    assert_int_equal(kill(c, SIGHUP), 0);
    assert_true(harness_wait_line(h, "collector.log",
                                  "collector.curve_reloaded", 10000));

    char why[512];
    assert_int_equal(s_code_of(obs, &st, why, sizeof why), DV_CODE_DENIED);
    assert_non_null(strstr(why, "no longer allowed"));
    zmq_close(obs);
    char out[4096], secret[512], server[512];
    s_path(h, secret, sizeof secret, "keys/obs1.key_secret");
    s_path(h, server, sizeof server, "keys/collector.key");
    assert_int_equal(harness_cli(out, sizeof out, "workers", "--collector",
                                 query, "--curve-secret", secret,
                                 "--curve-server", server, NULL),
                     3);
    void *added =
        s_socket_to(h, ZMQ_DEALER, query, "stranger", NULL, "collector");
    assert_int_equal(s_code_of(added, &st, NULL, 0), 0);
    zmq_close(added);
    assert_int_equal(kill(c, 0), 0);
}

/* With CurveZMQ on the query socket, --bind beyond loopback needs no
 * --insecure-bind (and logs no warning); without it, it does. */
static void
t_collector_open_bind(void **state)
{
    harness_t *h = *state;
    char keys[512], ob[512], secret[512], store[512];
    s_path(h, keys, sizeof keys, "keys");
    mkdir(keys, 0700);
    s_path(h, ob, sizeof ob, "allow-observers");
    mkdir(ob, 0700);
    s_keygen(h, "collector");
    s_path(h, secret, sizeof secret, "keys/collector.key_secret");
    s_path(h, store, sizeof store, "collector.db");
    const char *args[] = { "collector",
                           "--events",
                           h->events,
                           "--broker",
                           "off",
                           "--bind",
                           "tcp://0.0.0.0:*",
                           "--http",
                           "off",
                           "--store",
                           store,
                           "--log-format",
                           "text",
                           NULL,
                           NULL,
                           NULL,
                           NULL,
                           NULL };
    pid_t c = harness_spawn(h, args, NULL, "refused.log");
    assert_true(c > 0);
    int status = harness_wait_exit(h, c, 5000);
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    assert_int_equal(
        harness_count_lines(h, "refused.log", "--insecure-bind", NULL), 1);

    args[13] = "--curve-secret";
    args[14] = secret;
    args[15] = "--curve-observers";
    args[16] = ob;
    c = harness_spawn(h, args, NULL, "open.log");
    assert_true(c > 0);
    assert_true(harness_wait_line(h, "open.log", "collector.started", 10000));
    assert_int_equal(
        harness_count_lines(h, "open.log", "collector.insecure_bind", NULL), 0);
    assert_int_equal(
        harness_count_lines(h, "open.log", "query_security=curve", NULL), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_handshake_refused, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_roles, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_worker_name, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_job_owner, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_reload_removes_key, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_worker_rotation, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_keygen_modes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_pipeline_and_no_secret, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_insecure_bind, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_collector_roles, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_collector_reload, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_collector_open_bind, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
