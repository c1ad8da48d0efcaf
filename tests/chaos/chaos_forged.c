/* Chaos 5: forged and stale outcomes from a raw ZeroMQ peer on the
 * broker's workers endpoint (a DEALER speaking the wire protocol through
 * dv_msg_encode):
 *
 *   (a) a peer that never said hello reports "succeeded", with a forged
 *       result, for queued jobs that were never dispatched: it gets an
 *       error (unknown_worker), the jobs stay queued, later run on a real
 *       worker, and end with the real result;
 *   (b) a peer that said hello reports an outcome under a wrong lease
 *       token: it is told to drop that copy (kill, code stale_lease) and
 *       the job is unchanged;
 *   (c) a peer whose hello lacks the fencing flag (an older worker) is
 *       refused with code version and a reason saying to upgrade. */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

#include "chaos.h"
#include "dv_clock.h"
#include "dv_proto.h"

/* A msgpack str "forged": the result no real execution gives. */
static const char s_forged[] = "\xa6"
                               "forged";

typedef struct {
    void *ctx, *sock;
    char buf[65536]; /* the last message received; msg points into it */
    dv_msg_t msg;
} s_peer_t;

static void
s_peer_open(s_peer_t *p, harness_t *h, const char *name)
{
    memset(p, 0, sizeof *p);
    p->ctx = zmq_ctx_new();
    assert_non_null(p->ctx);
    p->sock = zmq_socket(p->ctx, ZMQ_DEALER);
    assert_non_null(p->sock);
    int linger = 0;
    zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(p->sock, ZMQ_ROUTING_ID, name, strlen(name));
    assert_int_equal(zmq_connect(p->sock, h->workers), 0);
}

static void
s_peer_close(s_peer_t *p)
{
    dv_msg_release(&p->msg);
    if (p->sock)
        zmq_close(p->sock);
    if (p->ctx)
        zmq_ctx_term(p->ctx);
    p->sock = p->ctx = NULL;
}

static void
s_send(s_peer_t *p, const dv_msg_t *m)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_msg_encode(m, &sb), DV_OK);
    assert_int_equal(zmq_send(p->sock, sb.data, sb.size, 0), (int)sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* The next message that is not a heartbeat, within 5 s; its type, or
 * DV_MSG_NONE when none came. */
static dv_msg_type_t
s_recv(s_peer_t *p)
{
    int64_t deadline = dv_mono_ms() + harness_scale(5000);
    for (;;) {
        dv_msg_release(&p->msg);
        memset(&p->msg, 0, sizeof p->msg);
        int left = (int)(deadline - dv_mono_ms());
        if (left <= 0)
            return DV_MSG_NONE;
        zmq_pollitem_t it = { p->sock, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, left) <= 0)
            return DV_MSG_NONE;
        int n = zmq_recv(p->sock, p->buf, sizeof p->buf, 0);
        if (n < 0 || n > (int)sizeof p->buf)
            continue;
        if (dv_msg_decode(p->buf, (size_t)n, &p->msg, NULL, 0) != DV_OK)
            continue;
        if (p->msg.type != DV_MSG_HEARTBEAT)
            return p->msg.type;
    }
}

/* Opens peer p as name and says hello (with the fencing flag or not);
 * returns the type of the broker's answer. */
static dv_msg_type_t
s_peer_hello(s_peer_t *p, harness_t *h, const char *name, bool fencing)
{
    s_peer_open(p, h, name);
    dv_str_t q = dv_str("default");
    dv_msg_t m = { .type = DV_MSG_HELLO };
    m.u.hello.name = dv_str(name);
    m.u.hello.host = dv_str("localhost");
    m.u.hello.pid = (int32_t)getpid();
    m.u.hello.queues = &q;
    m.u.hello.nqueues = 1;
    m.u.hello.concurrency = 1;
    m.u.hello.credit = 1;
    m.u.hello.fencing = fencing;
    s_send(p, &m);
    return s_recv(p);
}

static void
s_report(s_peer_t *p, dv_update_kind_t kind, const char *id, int attempt,
         uint64_t lease)
{
    dv_update_t it = { .kind = kind };
    dv_failure_init(&it.failure);
    it.id = dv_str(id);
    it.attempt = attempt;
    it.ts_ms = dv_now_ms();
    it.lease = lease;
    if (kind == DV_UPD_SUCCEEDED)
        it.result = (dv_str_t){ s_forged, sizeof s_forged - 1 };
    dv_msg_t m = { .type = DV_MSG_UPDATE };
    m.u.update.items = &it;
    m.u.update.nitems = 1;
    s_send(p, &m);
}

/* The job's state in the broker's memory ("queued", ...), into out. */
static void
s_job_state(harness_t *h, const char *id, char *out, size_t size)
{
    char *body = NULL;
    snprintf(out, size, "?");
    if (drover_ctrl(h->client, "job", id, NULL, &body) != DROVER_OK)
        return;
    const char *s = strstr(body, "\"state\":\"");
    if (s) {
        s += 9;
        size_t n = strcspn(s, "\"");
        snprintf(out, size, "%.*s", (int)(n < size ? n : size - 1), s);
    }
    free(body);
}

static void
s_start_worker(harness_t *h)
{
    chaos_wargs_t w;
    chaos_wargs(h, 2, 0, &w);
    assert_true(harness_start_worker(h, w.args) > 0);
}

/* Every result is the handler's, none the forged one. */
static int
s_real_results(harness_t *h, chaos_ids_t *ids)
{
    harness_results_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    int n = (int)(ids->n < 64 ? ids->n : 64), real = 0;
    harness_wait_ids(h, ids->v, n, r, 30000);
    for (int i = 0; i < n; i++)
        real +=
            strstr(r->result[i], "\"by\"") && !strstr(r->result[i], "forged");
    free(r);
    return real;
}

static void
t_update_without_hello(void **state)
{
    harness_t *h = *state;
    uint64_t seed = chaos_seed("forged_no_hello");
    uint64_t rng = seed;
    assert_true(harness_start_broker(h, NULL) > 0);
    chaos_ids_t acked = { 0 };
    chaos_submit_all(h, "fa", seed, 5, 20, 60, &rng, 10000, &acked);

    s_peer_t p;
    s_peer_open(&p, h, "forger");
    for (size_t i = 0; i < acked.n; i++)
        s_report(&p, DV_UPD_SUCCEEDED, acked.v[i], 1, 0);
    int errors = 0, unknown_worker = 0;
    for (size_t i = 0; i < acked.n; i++) {
        if (s_recv(&p) != DV_MSG_ERROR)
            break;
        errors++;
        unknown_worker += p.msg.u.error.code == DV_CODE_UNKNOWN_WORKER;
    }
    s_peer_close(&p);
    int queued = 0;
    for (size_t i = 0; i < acked.n; i++) {
        char s[32];
        s_job_state(h, acked.v[i], s, sizeof s);
        queued += !strcmp(s, "queued");
    }
    s_start_worker(h);
    int real = s_real_results(h, &acked);
    printf("chaos[forged_no_hello] forged_reports=%zu errors=%d "
           "unknown_worker=%d still_queued=%d real_results=%d\n",
           acked.n, errors, unknown_worker, queued, real);
    chaos_account_t a;
    chaos_account(h, "forged_no_hello", &acked, 30000, &a);
    assert_int_equal(queued, (int)acked.n);
    assert_int_equal(real, (int)acked.n);
    assert_int_equal(unknown_worker, (int)acked.n);
    /* Nothing was killed or cut off: every job runs exactly once. */
    chaos_assert_account(&a, 0);
    assert_int_equal(a.runs[1], acked.n);
    chaos_ids_free(&acked);
}

static void
t_stale_lease(void **state)
{
    harness_t *h = *state;
    uint64_t seed = chaos_seed("forged_stale_lease");
    uint64_t rng = seed;
    assert_true(harness_start_broker(h, NULL) > 0);
    s_peer_t p;
    dv_msg_type_t t = s_peer_hello(&p, h, "rogue", true);
    if (t != DV_MSG_WELCOME)
        fail_msg("a hello with fencing got %s, not welcome (code %d)",
                 dv_msg_type_name(t),
                 t == DV_MSG_ERROR ? (int)p.msg.u.error.code : 0);

    chaos_ids_t acked = { 0 };
    chaos_submit_all(h, "fb", seed, 1, 20, 60, &rng, 10000, &acked);
    assert_int_equal(s_recv(&p), DV_MSG_JOBS);
    assert_int_equal(p.msg.u.jobs.njobs, 1);
    char id[37];
    dv_str_copy(p.msg.u.jobs.jobs[0].id, id, sizeof id);
    assert_string_equal(id, acked.v[0]);
    int attempt = p.msg.u.jobs.jobs[0].attempt;
    uint64_t lease = p.msg.u.jobs.jobs[0].lease;
    char before[32], after[32];
    s_job_state(h, id, before, sizeof before);

    /* It starts under its lease, then claims success under another one. */
    s_report(&p, DV_UPD_STARTED, id, attempt, lease);
    s_report(&p, DV_UPD_SUCCEEDED, id, attempt, lease + 1);
    t = s_recv(&p);
    bool killed = t == DV_MSG_KILL;
    char kill_id[37] = "";
    uint64_t kill_lease = 0;
    dv_code_t kill_code = DV_CODE_NONE;
    if (killed) {
        dv_str_copy(p.msg.u.kill.id, kill_id, sizeof kill_id);
        kill_lease = p.msg.u.kill.lease;
        kill_code = p.msg.u.kill.code;
    }
    s_job_state(h, id, after, sizeof after);
    /* The peer goes silent: past the worker timeout its lease is lost and
     * a real worker runs the job. */
    s_peer_close(&p);
    s_start_worker(h);
    int real = s_real_results(h, &acked);
    printf("chaos[forged_stale_lease] lease=%" PRIu64 " reply=%s "
           "kill_lease=%" PRIu64 " kill_code=%s state_before=%s "
           "state_after=%s real_results=%d\n",
           lease, dv_msg_type_name(t), kill_lease, dv_code_name(kill_code),
           before, after, real);
    chaos_account_t a;
    chaos_account(h, "forged_stale_lease", &acked, 30000, &a);
    if (lease == 0)
        fail_msg("the broker dispatched the job without a lease token");
    if (!killed)
        fail_msg("an outcome under a wrong lease got %s, not kill",
                 dv_msg_type_name(t));
    assert_string_equal(kill_id, id);
    assert_true(kill_lease == lease + 1);
    assert_int_equal(kill_code, DV_CODE_STALE_LEASE);
    assert_string_equal(before, "running");
    assert_string_equal(after, "running");
    assert_int_equal(real, 1);
    /* Run twice: the rogue peer ran nothing (no handler line); the real
     * worker runs the job once. */
    chaos_assert_account(&a, 0);
    chaos_ids_free(&acked);
}

static void
t_hello_without_fencing(void **state)
{
    harness_t *h = *state;
    uint64_t seed = chaos_seed("forged_old_worker");
    uint64_t rng = seed;
    assert_true(harness_start_broker(h, NULL) > 0);
    s_peer_t p;
    dv_msg_type_t t = s_peer_hello(&p, h, "oldie", false);
    dv_code_t code = DV_CODE_NONE;
    char reason[512] = "";
    if (t == DV_MSG_ERROR) {
        code = p.msg.u.error.code;
        dv_str_copy(p.msg.u.error.reason, reason, sizeof reason);
    }
    int listed = chaos_worker_running(h, "oldie");
    /* The broker goes on with workers that fence. */
    chaos_ids_t acked = { 0 };
    chaos_submit_all(h, "fc", seed, 3, 20, 60, &rng, 10000, &acked);
    s_peer_close(&p);
    s_start_worker(h);
    printf("chaos[forged_old_worker] reply=%s code=%s reason='%s' "
           "listed=%s\n",
           dv_msg_type_name(t), dv_code_name(code), reason,
           listed >= 0 ? "yes" : "no");
    chaos_account_t a;
    chaos_account(h, "forged_old_worker", &acked, 30000, &a);
    if (t != DV_MSG_ERROR)
        fail_msg("a hello without the fencing flag got %s, not an error",
                 dv_msg_type_name(t));
    assert_int_equal(code, DV_CODE_VERSION);
    assert_non_null(strstr(reason, "upgrade"));
    assert_int_equal(listed, -1);
    /* Run twice: the refused peer got no job; the real worker runs each
     * once. */
    chaos_assert_account(&a, 0);
    chaos_ids_free(&acked);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_update_without_hello, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_stale_lease, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_hello_without_fencing, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
