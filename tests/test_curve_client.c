/* test_curve_client - the client sides of CurveZMQ as real processes: a
 * worker, the CLI and the collector reach a CURVE server made here (a
 * ROUTER with ZMQ_CURVE_SERVER and no ZAP handler, so any client key that
 * knows the server's public key is let in) and say what they should say
 * first; with the wrong server certificate nothing arrives; missing, too
 * open or half-given certificates stop each of them with a clear message
 * and exit 2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zmq.h>

#include "dv_clock.h"
#include "dv_proto.h"
#include "harness.h"

#define S_ID "01a2046f-a012-753e-8bb6-41246e880ddf"

typedef struct {
    harness_t *h;
    char server_secret[41];
    char ep[320], secret[320], server[320], other[320];
    void *ctx, *router;
} s_fix_t;

static void
s_keygen(harness_t *h, const char *name, char *secret_z85)
{
    char path[320];
    snprintf(path, sizeof path, "%s/%s.key", h->dir, name);
    zcert_t *c = zcert_new();
    assert_non_null(c);
    assert_int_equal(zcert_save(c, path), 0);
    snprintf(path, sizeof path, "%s/%s.key_secret", h->dir, name);
    assert_int_equal(chmod(path, 0600), 0);
    if (secret_z85)
        snprintf(secret_z85, 41, "%s", zcert_secret_txt(c));
    zcert_destroy(&c);
}

static int
s_setup(void **state)
{
    if (harness_setup(state) != 0)
        return -1;
    s_fix_t *f = calloc(1, sizeof *f);
    f->h = *state;
    s_keygen(f->h, "broker", f->server_secret);
    s_keygen(f->h, "client", NULL);
    s_keygen(f->h, "other", NULL);
    snprintf(f->secret, sizeof f->secret, "%s/client.key_secret", f->h->dir);
    snprintf(f->server, sizeof f->server, "%s/broker.key", f->h->dir);
    snprintf(f->other, sizeof f->other, "%s/other.key", f->h->dir);
    snprintf(f->ep, sizeof f->ep, "ipc://%s/curve.sock", f->h->dir);
    f->ctx = zmq_ctx_new();
    f->router = zmq_socket(f->ctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(f->router, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(f->router, ZMQ_CURVE_SECRETKEY, f->server_secret, 40);
    if (zmq_bind(f->router, f->ep) != 0)
        return -1;
    *state = f;
    return 0;
}

static int
s_teardown(void **state)
{
    s_fix_t *f = *state;
    zmq_close(f->router);
    zmq_ctx_term(f->ctx);
    *state = f->h;
    free(f);
    return harness_teardown(state);
}

/* Waits up to timeout_ms for a message on the ROUTER; returns its type
 * (DV_MSG_NONE if none came), with the peer's routing id in peer and a
 * ctrl's verb in verb. */
static int
s_recv(s_fix_t *f, int timeout_ms, char *peer, size_t peer_size, char *verb,
       size_t verb_size)
{
    zmq_pollitem_t it = { f->router, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, harness_scale(timeout_ms)) <= 0)
        return DV_MSG_NONE;
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    zmq_msg_recv(&id, f->router, 0);
    zmq_msg_recv(&body, f->router, 0);
    size_t n =
        zmq_msg_size(&id) < peer_size - 1 ? zmq_msg_size(&id) : peer_size - 1;
    memcpy(peer, zmq_msg_data(&id), n);
    peer[n] = '\0';
    dv_msg_t m;
    memset(&m, 0, sizeof m);
    char why[160];
    int type = DV_MSG_NONE;
    if (dv_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), &m, why,
                      sizeof why) == DV_OK) {
        type = m.type;
        if (verb && type == DV_MSG_CTRL)
            dv_str_copy(m.u.ctrl.verb, verb, verb_size);
    }
    dv_msg_release(&m);
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    return type;
}

/* The exit code of pid, which must end within a few seconds. */
static int
s_exit_code(harness_t *h, pid_t pid)
{
    int st = harness_wait_exit(h, pid, harness_scale(10000));
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
t_worker(void **state)
{
    s_fix_t *f = *state;
    const char *args[] = {
        "worker",  "--broker",       f->ep,     "--name",
        "cw",      "--heartbeat",    "0.1",     "--curve-secret",
        f->secret, "--curve-server", f->server, NULL
    };
    assert_true(harness_spawn(f->h, args, NULL, "worker.log") > 0);
    char peer[64], verb[32];
    int type = s_recv(f, 10000, peer, sizeof peer, verb, sizeof verb);
    assert_int_equal(type, DV_MSG_HELLO);
    assert_string_equal(peer, "cw");

    /* The wrong server certificate: the handshake fails, nothing comes. */
    const char *wrong[] = { "worker", "--broker",    f->ep, "--name",
                            "cw2",    "--heartbeat", "0.1", "--curve-server",
                            f->other, NULL };
    setenv("DROVER_CURVE_SECRET", f->secret, 1); /* the other half */
    pid_t w2 = harness_spawn(f->h, wrong, NULL, "worker2.log");
    unsetenv("DROVER_CURVE_SECRET");
    assert_true(w2 > 0);
    int64_t until = dv_mono_ms() + 1500;
    while (dv_mono_ms() < until) {
        if (s_recv(f, 200, peer, sizeof peer, NULL, 0) != DV_MSG_NONE)
            assert_string_equal(peer, "cw"); /* the first one's heartbeats */
    }
}

static void
t_cli_and_collector(void **state)
{
    s_fix_t *f = *state;
    const char *cancel[] = { "--curve-secret", f->secret, "cancel",
                             "--broker",       f->ep,     "--curve-server",
                             f->server,        S_ID,      NULL };
    assert_true(harness_spawn(f->h, cancel, NULL, "cancel.log") > 0);
    char peer[64], verb[32] = "";
    assert_int_equal(s_recv(f, 10000, peer, sizeof peer, verb, sizeof verb),
                     DV_MSG_CTRL);
    assert_string_equal(verb, "cancel");

    char events[320], store[320], bind[320];
    snprintf(events, sizeof events, "ipc://%s/events.sock", f->h->dir);
    snprintf(bind, sizeof bind, "ipc://%s/query.sock", f->h->dir);
    snprintf(store, sizeof store, "%s/collector.db", f->h->dir);
    const char *coll[] = {
        "collector", "--events",       events,    "--broker",
        f->ep,       "--bind",         bind,      "--http",
        "off",       "--store",        store,     "--curve-secret",
        f->secret,   "--curve-server", f->server, NULL
    };
    assert_true(harness_spawn(f->h, coll, NULL, "collector.log") > 0);
    verb[0] = '\0';
    int64_t until = dv_mono_ms() + harness_scale(10000);
    while (dv_mono_ms() < until && strcmp(verb, "status") != 0)
        s_recv(f, 500, peer, sizeof peer, verb, sizeof verb);
    assert_string_equal(verb, "status");
}

static void
t_refusals(void **state)
{
    s_fix_t *f = *state;
    harness_t *h = f->h;
    char loose[320], missing[320];
    snprintf(loose, sizeof loose, "%s/client.key_secret", h->dir);
    snprintf(missing, sizeof missing, "%s/nobody.key_secret", h->dir);
    assert_int_equal(chmod(loose, 0644), 0);

    /* worker: a secret file readable by others */
    const char *w[] = { "worker", "--broker",       f->ep,     "--curve-secret",
                        loose,    "--curve-server", f->server, NULL };
    assert_int_equal(s_exit_code(h, harness_spawn(h, w, NULL, "w.log")), 2);
    char *log = harness_read(h, "w.log");
    assert_non_null(log);
    assert_non_null(strstr(log, "mode 0644"));
    assert_non_null(strstr(log, "client.key_secret"));
    free(log);

    /* worker: one half only */
    const char *half[] = { "worker",         "--broker", f->ep,
                           "--curve-server", f->server,  NULL };
    assert_int_equal(s_exit_code(h, harness_spawn(h, half, NULL, "h.log")), 2);
    log = harness_read(h, "h.log");
    assert_non_null(strstr(log, "--curve-secret"));
    free(log);

    /* CLI: a missing file */
    const char *c[] = { "status", "--broker",       f->ep,     "--curve-secret",
                        missing,  "--curve-server", f->server, NULL };
    assert_int_equal(s_exit_code(h, harness_spawn(h, c, NULL, "c.log")), 2);
    log = harness_read(h, "c.log");
    assert_non_null(strstr(log, "nobody.key_secret"));
    assert_non_null(strstr(log, "No such file"));
    free(log);
    const char *s[] = { "submit", "--broker",       f->ep,
                        "--type", "echo",           "--curve-secret",
                        loose,    "--curve-server", f->server,
                        NULL };
    assert_int_equal(s_exit_code(h, harness_spawn(h, s, NULL, "s.log")), 2);
    log = harness_read(h, "s.log");
    assert_non_null(strstr(log, "mode 0644"));
    free(log);

    /* collector: an unreadable server certificate */
    char events[320];
    snprintf(events, sizeof events, "ipc://%s/events.sock", h->dir);
    const char *k[] = {
        "collector",      "--events", events,           "--http",  "off",
        "--curve-secret", missing,    "--curve-server", f->server, NULL
    };
    assert_int_equal(s_exit_code(h, harness_spawn(h, k, NULL, "k.log")), 2);

    /* libdrover: no client, a reason naming the file */
    drover_opts_t o;
    drover_opts_init(&o);
    o.endpoints = f->ep;
    o.curve_secret = loose;
    o.curve_server = f->server;
    assert_null(drover_connect_opts(&o));
    assert_non_null(strstr(drover_last_error(NULL), "mode 0644"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_worker, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_cli_and_collector, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_refusals, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
