/* Tests for the wire codec: round trips of every message type, the exact
 * error (code and reason) for each kind of bad input, and dv_mp_validate().
 *
 * Hostile messages are written as JSON text and packed by s_pack_json(),
 * where a string "bin:<hex>" becomes a msgpack bin, so each case reads like
 * the message it sends.
 *
 * With DROVER_WRITE_CORPUS=<dir> in the environment, the round-trip tests
 * also write each encoded message there: that is how proto/fuzz/corpus/ is
 * made. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_body.h"
#include "dv_proto.h"

#define ID1 "0190f3a2-7b4c-7def-8123-456789abcdef"
#define ID2 "0190f3a2-7b4c-7def-8123-456789abcde0"
#define ID3 "0190f3a2-7b4d-7000-8000-000000000001"

/* {"prompt": "hi", "n": [1, 2, 3]} */
static const char s_payload[] = "\x82\xa6prompt\xa2hi\xa1n\x93\x01\x02\x03";
/* {"text": "ok"} */
static const char s_result[] = "\x81\xa4text\xa2ok";

static dv_str_t
s_value(const char *bytes, size_t size_with_nul)
{
    return dv_strn(bytes, size_with_nul - 1);
}

#define S_PAYLOAD s_value(s_payload, sizeof s_payload)
#define S_RESULT  s_value(s_result, sizeof s_result)

/* ---- helpers ----------------------------------------------------------- */

static void
s_write_corpus(const char *name, const msgpack_sbuffer *sb)
{
    const char *dir = getenv("DROVER_WRITE_CORPUS");
    if (!dir || !*dir)
        return;
    char path[512];
    snprintf(path, sizeof path, "%s/%s.msgpack", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(sb->data, 1, sb->size, f), sb->size);
    fclose(f);
}

/* Encodes in, decodes it into out; the caller releases out and sb. */
static void
s_round_trip(const char *name, const dv_msg_t *in, dv_msg_t *out,
             msgpack_sbuffer *sb)
{
    char why[256] = "";
    msgpack_sbuffer_init(sb);
    assert_int_equal(dv_msg_encode(in, sb), DV_OK);
    s_write_corpus(name, sb);
    int rc = dv_msg_decode(sb->data, sb->size, out, why, sizeof why);
    if (rc != DV_OK)
        fail_msg("%s: decode failed (%d): %s", name, rc, why);
    assert_int_equal(out->type, in->type);
    assert_int_equal(out->version, DV_PROTO_VERSION);
    assert_string_equal(why, "");
    /* every field the schema knows came back as it went */
    char diff[256];
    if (!dv_msg_equal(in, out, diff, sizeof diff))
        fail_msg("%s: round trip changed %s", name, diff);
}

static void
s_done(dv_msg_t *out, msgpack_sbuffer *sb)
{
    dv_msg_release(out);
    msgpack_sbuffer_destroy(sb);
}

static void
s_str_equal_(dv_str_t a, dv_str_t b, const char *what, int line)
{
    if (!a.ptr || !b.ptr) {
        if (a.ptr != b.ptr)
            fail_msg("line %d: %s: one side absent", line, what);
        return;
    }
    if (a.len != b.len || memcmp(a.ptr, b.ptr, a.len) != 0)
        fail_msg("line %d: %s: \"%.*s\" != \"%.*s\"", line, what, (int)a.len,
                 a.ptr, (int)b.len, b.ptr);
}

#define S_STR_EQ(a, b) s_str_equal_((a), (b), #a, __LINE__)

/* True if the view points into the encoded frame (decode copies nothing). */
static bool
s_in_frame(dv_str_t v, const msgpack_sbuffer *sb)
{
    return v.ptr >= sb->data && v.ptr + v.len <= sb->data + sb->size;
}

static dv_failure_t
s_full_failure(void)
{
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_RATE_LIMITED;
    f.message = dv_str("429 Too Many Requests");
    f.retryable = true;
    f.retry_after_ms = 30000;
    f.exit_code = 0; /* 0 is a real exit code, distinct from none (-1) */
    f.signal = 9;
    f.http_status = 429;
    f.key_id = dv_str("key-3");
    f.details = dv_str("Traceback (most recent call last):\n  ...\n"
                       "ValueError: no prompt");
    f.stderr_tail = dv_str("warming up\nValueError: no prompt\n");
    return f;
}

/* ---- round trips ------------------------------------------------------- */

static void
t_submit(void **state)
{
    (void)state;
    dv_jobspec_t jobs[2];
    memset(jobs, 0, sizeof jobs);
    jobs[0].queue = dv_str("llm");
    jobs[0].type = dv_str("http");
    jobs[0].payload = S_PAYLOAD;
    jobs[0].key = dv_str("prompt-0001");
    jobs[0].batch = dv_str("batch-7");
    jobs[0].trace = dv_str("00-0af7651916cd43dd8448eb211c80319c-"
                           "b7ad6b7169203331-01");
    jobs[0].priority = 0; /* lowest, not "absent" */
    jobs[0].run_at_ms = 1795369260000;
    jobs[0].max_attempts = 1000;
    jobs[0].timeout_ms = 30000;
    jobs[0].has_backoff = true;
    jobs[0].backoff = (dv_backoff_t){ 500, 1.5, 60000, false };
    jobs[0].result_ttl_ms = 86400000;
    jobs[1].queue = dv_str("q");
    jobs[1].type = dv_str("noop");
    jobs[1].priority = DV_PRIORITY_DEFAULT;

    dv_msg_t in = { .type = DV_MSG_SUBMIT, .version = 99 };
    in.u.submit.req = UINT64_MAX;
    in.u.submit.jobs = jobs;
    in.u.submit.njobs = 2;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("submit", &in, &out, &sb);
    assert_true(out.u.submit.req == UINT64_MAX);
    assert_int_equal(out.u.submit.njobs, 2);
    /* zero-copy views into the frame */
    assert_true(s_in_frame(out.u.submit.jobs[0].queue, &sb));
    assert_true(s_in_frame(out.u.submit.jobs[0].payload, &sb));
    assert_non_null(out.priv_);
    s_done(&out, &sb);

    /* only the required keys: defaults come back */
    dv_jobspec_t min;
    memset(&min, 0, sizeof min);
    min.queue = dv_str("q");
    min.type = dv_str("t");
    min.priority = DV_PRIORITY_DEFAULT;
    in.u.submit.req = 0;
    in.u.submit.jobs = &min;
    in.u.submit.njobs = 1;
    s_round_trip("submit_min", &in, &out, &sb);
    const dv_jobspec_t *j = &out.u.submit.jobs[0];
    assert_int_equal(j->priority, DV_PRIORITY_DEFAULT);
    assert_false(j->has_backoff);
    assert_null(j->payload.ptr);
    assert_null(j->key.ptr);
    /* absent optional numbers are not on the wire */
    assert_null(memmem(sb.data, sb.size, "run_at", 6));
    assert_null(memmem(sb.data, sb.size, "backoff", 7));
    s_done(&out, &sb);

    /* an empty submit is legal */
    in.u.submit.jobs = NULL;
    in.u.submit.njobs = 0;
    s_round_trip("submit_empty", &in, &out, &sb);
    assert_int_equal(out.u.submit.njobs, 0);
    assert_null(out.u.submit.jobs);
    s_done(&out, &sb);
}

static void
t_submitted(void **state)
{
    (void)state;
    dv_submit_ack_t acks[3];
    memset(acks, 0, sizeof acks);
    acks[0].id = dv_str(ID1);
    acks[1].id = dv_str(ID2);
    acks[1].duplicate = true;
    acks[2].error = dv_str("jobs[2].queue: no such queue");
    dv_msg_t in = { .type = DV_MSG_SUBMIT_REPLY };
    in.u.submit_reply.req = 12;
    in.u.submit_reply.acks = acks;
    in.u.submit_reply.nacks = 3;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("submitted", &in, &out, &sb);
    assert_int_equal(out.u.submit_reply.req, 12);
    assert_int_equal(out.u.submit_reply.nacks, 3);
    assert_null(memmem(sb.data, sb.size, "code", 4));
    s_done(&out, &sb);

    /* an ack's error may carry a code */
    acks[2].error = dv_str("store commit failed; job not accepted");
    acks[2].code = DV_CODE_STORE;
    s_round_trip("submitted_code", &in, &out, &sb);
    assert_int_equal(out.u.submit_reply.acks[2].code, DV_CODE_STORE);
    s_done(&out, &sb);

    in.u.submit_reply.nacks = 1;
    s_round_trip("submitted_min", &in, &out, &sb);
    assert_int_equal(out.u.submit_reply.nacks, 1);
    S_STR_EQ(out.u.submit_reply.acks[0].id, dv_str(ID1));
    assert_null(out.u.submit_reply.acks[0].error.ptr);
    s_done(&out, &sb);
}

static void
t_wait(void **state)
{
    (void)state;
    dv_str_t ids[3] = { dv_str(ID1), dv_str(ID2), dv_str(ID3) };
    dv_msg_t in = { .type = DV_MSG_WAIT };
    in.u.wait.req = 3;
    in.u.wait.ids = ids;
    in.u.wait.nids = 3;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("wait", &in, &out, &sb);
    assert_int_equal(out.u.wait.req, 3);
    assert_int_equal(out.u.wait.nids, 3);
    s_done(&out, &sb);
}

static void
t_result(void **state)
{
    (void)state;
    dv_result_t r[2];
    memset(r, 0, sizeof r);
    r[0].id = dv_str(ID1);
    r[0].state = DV_STATE_SUCCEEDED;
    r[0].attempts = 1;
    r[0].result = S_RESULT;
    dv_failure_init(&r[0].failure);
    r[0].finished_ms = 1795369261234;
    r[1].id = dv_str(ID2);
    r[1].state = DV_STATE_DEAD;
    r[1].attempts = 5;
    r[1].has_failure = true;
    r[1].failure = s_full_failure();
    r[1].finished_ms = 1795369262000;
    dv_msg_t in = { .type = DV_MSG_RESULT };
    in.u.result.results = r;
    in.u.result.nresults = 2;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("result", &in, &out, &sb);
    assert_int_equal(out.u.result.nresults, 2);
    s_done(&out, &sb);

    /* required only: id and state */
    dv_result_t m;
    memset(&m, 0, sizeof m);
    m.id = dv_str(ID3);
    m.state = DV_STATE_UNKNOWN;
    dv_failure_init(&m.failure);
    in.u.result.results = &m;
    in.u.result.nresults = 1;
    s_round_trip("result_min", &in, &out, &sb);
    s_done(&out, &sb);
}

static void
t_ctrl(void **state)
{
    (void)state;
    dv_msg_t in = { .type = DV_MSG_CTRL };
    dv_ctrl_t *c = &in.u.ctrl;
    c->req = 77;
    c->verb = dv_str("retry");
    c->id = dv_str(ID1);
    c->queue = dv_str("llm");
    c->worker = dv_str("host-a:4242");
    c->dead = true;
    c->has_value = true;
    c->value = 2.5;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("ctrl", &in, &out, &sb);
    const dv_ctrl_t *o = &out.u.ctrl;
    assert_int_equal(o->req, 77);
    assert_true(o->dead);
    assert_true(o->has_value);
    assert_true(o->value == 2.5);
    assert_null(out.priv_);
    s_done(&out, &sb);

    dv_msg_t min = { .type = DV_MSG_CTRL };
    min.u.ctrl.req = 1;
    min.u.ctrl.verb = dv_str("status");
    s_round_trip("ctrl_min", &min, &out, &sb);
    assert_int_equal(out.u.ctrl.req, 1);
    S_STR_EQ(out.u.ctrl.verb, dv_str("status"));
    assert_null(out.u.ctrl.id.ptr);
    assert_null(out.u.ctrl.queue.ptr);
    assert_null(out.u.ctrl.worker.ptr);
    assert_false(out.u.ctrl.dead);
    assert_false(out.u.ctrl.has_value);
    s_done(&out, &sb);
}

static void
t_reply(void **state)
{
    (void)state;
    dv_msg_t in = { .type = DV_MSG_REPLY };
    in.u.reply.req = 5;
    in.u.reply.ok = false;
    in.u.reply.error = dv_str("no such job");
    in.u.reply.body = S_RESULT;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("reply", &in, &out, &sb);
    assert_int_equal(out.u.reply.req, 5);
    assert_false(out.u.reply.ok);
    s_done(&out, &sb);

    dv_msg_t min = { .type = DV_MSG_REPLY };
    min.u.reply.req = 6;
    min.u.reply.ok = true;
    s_round_trip("reply_min", &min, &out, &sb);
    assert_int_equal(out.u.reply.req, 6);
    assert_true(out.u.reply.ok);
    assert_null(out.u.reply.error.ptr);
    assert_null(out.u.reply.body.ptr);
    s_done(&out, &sb);
}

static void
t_error(void **state)
{
    (void)state;
    dv_msg_t in = { .type = DV_MSG_ERROR };
    in.u.error.req = 9;
    in.u.error.reason = dv_str("submit: jobs[3].priority: must be 0..9");
    in.u.error.version = 1;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("error", &in, &out, &sb);
    assert_int_equal(out.u.error.req, 9);
    assert_int_equal(out.u.error.version, 1);
    s_done(&out, &sb);

    dv_msg_t min = { .type = DV_MSG_ERROR };
    min.u.error.reason = dv_str("unknown worker: send hello");
    s_round_trip("error_min", &min, &out, &sb);
    assert_int_equal(out.u.error.req, 0);
    assert_int_equal(out.u.error.version, 0);
    s_done(&out, &sb);
}

static void
t_hello(void **state)
{
    (void)state;
    dv_str_t queues[3] = { dv_str("llm"), dv_str("email"), dv_str("q") };
    dv_held_t held[2] = { { dv_str(ID1), 1, UINT64_C(7) << 40 | 12, true },
                          { dv_str(ID2), 3, 0, false } };
    dv_msg_t in = { .type = DV_MSG_HELLO };
    dv_hello_t *h = &in.u.hello;
    h->name = dv_str("host-a:4242");
    h->host = dv_str("host-a");
    h->pid = 4242;
    h->queues = queues;
    h->nqueues = 3;
    h->concurrency = 16;
    h->credit = 16;
    h->held = held;
    h->nheld = 2;
    h->fencing = true;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("hello", &in, &out, &sb);
    const dv_hello_t *o = &out.u.hello;
    assert_int_equal(o->pid, 4242);
    assert_int_equal(o->nqueues, 3);
    for (int i = 0; i < 3; i++)
        S_STR_EQ(queues[i], o->queues[i]);
    assert_int_equal(o->concurrency, 16);
    assert_int_equal(o->credit, 16);
    assert_int_equal(o->nheld, 2);
    for (int i = 0; i < 2; i++) {
        S_STR_EQ(held[i].id, o->held[i].id);
        assert_int_equal(held[i].attempt, o->held[i].attempt);
        assert_true(held[i].lease == o->held[i].lease);
        assert_int_equal(held[i].started, o->held[i].started);
    }
    assert_true(o->fencing);
    s_done(&out, &sb);

    dv_msg_t min = { .type = DV_MSG_HELLO };
    min.u.hello.name = dv_str("w");
    min.u.hello.queues = queues;
    min.u.hello.nqueues = 1;
    min.u.hello.concurrency = 1;
    min.u.hello.credit = 0;
    s_round_trip("hello_min", &min, &out, &sb);
    S_STR_EQ(out.u.hello.name, dv_str("w"));
    assert_null(out.u.hello.host.ptr);
    assert_int_equal(out.u.hello.pid, 0);
    assert_int_equal(out.u.hello.nqueues, 1);
    assert_int_equal(out.u.hello.concurrency, 1);
    assert_int_equal(out.u.hello.credit, 0);
    assert_int_equal(out.u.hello.nheld, 0);
    assert_null(out.u.hello.held);
    s_done(&out, &sb);
}

static void
t_welcome(void **state)
{
    (void)state;
    dv_msg_t in = { .type = DV_MSG_WELCOME };
    in.u.welcome.broker = dv_str("b-0190f3a2");
    in.u.welcome.heartbeat_ms = 1000;
    in.u.welcome.worker_timeout_ms = 5000;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("welcome", &in, &out, &sb);
    assert_int_equal(out.u.welcome.heartbeat_ms, 1000);
    assert_int_equal(out.u.welcome.worker_timeout_ms, 5000);
    assert_int_equal(out.u.welcome.nrevoked, 0);
    s_done(&out, &sb);

    dv_held_t revoked[1] = { { dv_str(ID2), 2, UINT64_C(3) << 40 | 9, false } };
    in.u.welcome.revoked = revoked;
    in.u.welcome.nrevoked = 1;
    s_round_trip("welcome_revoked", &in, &out, &sb);
    assert_int_equal(out.u.welcome.nrevoked, 1);
    S_STR_EQ(out.u.welcome.revoked[0].id, dv_str(ID2));
    assert_true(out.u.welcome.revoked[0].lease == revoked[0].lease);
    s_done(&out, &sb);
}

static void
t_jobs(void **state)
{
    (void)state;
    dv_job_t jobs[2];
    memset(jobs, 0, sizeof jobs);
    jobs[0].id = dv_str(ID1);
    jobs[0].queue = dv_str("llm");
    jobs[0].type = dv_str("http");
    jobs[0].payload = S_PAYLOAD;
    jobs[0].trace = dv_str("00-0af7651916cd43dd8448eb211c80319c-"
                           "b7ad6b7169203331-01");
    jobs[0].batch = dv_str("batch-7");
    jobs[0].attempt = 2;
    jobs[0].max_attempts = 5;
    jobs[0].timeout_ms = 30000;
    jobs[0].enqueued_ms = 1795369260000;
    jobs[0].lease = dv_lease_make(5, 123456);
    jobs[1].id = dv_str(ID2);
    jobs[1].queue = dv_str("q");
    jobs[1].type = dv_str("noop");
    jobs[1].attempt = 1;
    dv_msg_t in = { .type = DV_MSG_JOBS };
    in.u.jobs.jobs = jobs;
    in.u.jobs.njobs = 2;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("jobs", &in, &out, &sb);
    assert_int_equal(out.u.jobs.njobs, 2);
    assert_true(out.u.jobs.jobs[0].lease == dv_lease_make(5, 123456));
    assert_true(dv_lease_generation(out.u.jobs.jobs[0].lease) == 5);
    assert_true(out.u.jobs.jobs[1].lease == 0);
    s_done(&out, &sb);
}

static void
t_update(void **state)
{
    (void)state;
    dv_update_t it[5];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 5; i++)
        dv_failure_init(&it[i].failure);
    it[0].kind = DV_UPD_STARTED;
    it[0].id = dv_str(ID1);
    it[0].attempt = 1;
    it[0].ts_ms = 1795369260001;
    it[0].lease = dv_lease_make(1, 1);
    it[1].kind = DV_UPD_PROGRESS;
    it[1].id = dv_str(ID1);
    it[1].attempt = 1;
    it[1].current = 40;
    it[1].total = 100;
    it[1].message = dv_str("tokens");
    it[2].kind = DV_UPD_SUCCEEDED;
    it[2].id = dv_str(ID1);
    it[2].attempt = 1;
    it[2].ts_ms = 1795369260900;
    it[2].result = S_RESULT;
    it[3].kind = DV_UPD_FAILED;
    it[3].id = dv_str(ID2);
    it[3].attempt = 4;
    it[3].ts_ms = 1795369260950;
    it[3].failure = s_full_failure();
    it[4].kind = DV_UPD_RETURNED;
    it[4].id = dv_str(ID3);
    it[4].attempt = 1;
    dv_msg_t in = { .type = DV_MSG_UPDATE };
    in.u.update.credit = 3;
    in.u.update.items = it;
    in.u.update.nitems = 5;
    in.u.update.seq = 41;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("update", &in, &out, &sb);
    assert_int_equal(out.u.update.credit, 3);
    assert_int_equal(out.u.update.nitems, 5);
    assert_true(out.u.update.seq == 41);
    assert_true(out.u.update.items[0].lease == dv_lease_make(1, 1));
    assert_true(out.u.update.items[1].lease == 0);
    s_done(&out, &sb);

    /* a failure with only its category: the "none" markers come back */
    dv_update_t f;
    memset(&f, 0, sizeof f);
    f.kind = DV_UPD_FAILED;
    f.id = dv_str(ID2);
    f.attempt = 1;
    dv_failure_init(&f.failure);
    f.failure.category = DV_CAT_CRASHED;
    in.u.update.credit = 0;
    in.u.update.items = &f;
    in.u.update.nitems = 1;
    in.u.update.seq = 0;
    s_round_trip("update_min", &in, &out, &sb);
    assert_int_equal(out.u.update.credit, 0);
    assert_int_equal(out.u.update.items[0].failure.exit_code, -1);
    s_done(&out, &sb);

    /* credit alone, no items */
    in.u.update.credit = 8;
    in.u.update.items = NULL;
    in.u.update.nitems = 0;
    s_round_trip("update_credit", &in, &out, &sb);
    assert_int_equal(out.u.update.credit, 8);
    assert_int_equal(out.u.update.nitems, 0);
    s_done(&out, &sb);
}

static void
t_heartbeat(void **state)
{
    (void)state;
    dv_msg_t in = { .type = DV_MSG_HEARTBEAT };
    in.u.heartbeat.busy = 3;
    in.u.heartbeat.idle = 13;
    in.u.heartbeat.processed = 123456789012;
    in.u.heartbeat.failed = 17;
    in.u.heartbeat.body = S_RESULT;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("heartbeat", &in, &out, &sb);
    assert_int_equal(out.u.heartbeat.busy, 3);
    assert_int_equal(out.u.heartbeat.idle, 13);
    assert_int_equal(out.u.heartbeat.processed, 123456789012);
    assert_int_equal(out.u.heartbeat.failed, 17);
    assert_true(out.u.heartbeat.ack == 0);
    s_done(&out, &sb);

    dv_msg_t ack = { .type = DV_MSG_HEARTBEAT };
    ack.u.heartbeat.ack = 90210;
    s_round_trip("heartbeat_ack", &ack, &out, &sb);
    assert_true(out.u.heartbeat.ack == 90210);
    s_done(&out, &sb);

    dv_msg_t min = { .type = DV_MSG_HEARTBEAT };
    s_round_trip("heartbeat_min", &min, &out, &sb);
    assert_int_equal(out.u.heartbeat.busy, 0);
    assert_null(out.u.heartbeat.body.ptr);
    /* {"v": 1, "t": "heartbeat"}: nothing else */
    assert_int_equal((uint8_t)sb.data[0], 0x82);
    s_done(&out, &sb);
}

static void
t_bye(void **state)
{
    (void)state;
    dv_msg_t in = { .type = DV_MSG_BYE };
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("bye", &in, &out, &sb);
    const uint8_t want[] = { 0x82, 0xa1, 'v', 0x01, 0xa1,
                             't',  0xa3, 'b', 'y',  'e' };
    assert_int_equal(sb.size, sizeof want);
    assert_memory_equal(sb.data, want, sizeof want);
    s_done(&out, &sb);
}

static void
t_kill(void **state)
{
    (void)state;
    dv_msg_t in = { .type = DV_MSG_KILL };
    in.u.kill.id = dv_str(ID1);
    in.u.kill.reason = dv_str("cancelled by operator");
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("kill", &in, &out, &sb);
    s_done(&out, &sb);

    in.u.kill.reason = dv_strn(NULL, 0);
    s_round_trip("kill_min", &in, &out, &sb);
    assert_null(out.u.kill.reason.ptr);
    assert_true(out.u.kill.lease == 0);
    assert_int_equal(out.u.kill.code, DV_CODE_NONE);
    s_done(&out, &sb);

    in.u.kill.lease = dv_lease_make(2, 77);
    in.u.kill.code = DV_CODE_STALE_LEASE;
    s_round_trip("kill_stale", &in, &out, &sb);
    assert_true(out.u.kill.lease == dv_lease_make(2, 77));
    assert_int_equal(out.u.kill.code, DV_CODE_STALE_LEASE);
    assert_string_equal(dv_code_name(out.u.kill.code), "stale_lease");
    s_done(&out, &sb);
}

static void
t_event(void **state)
{
    (void)state;
    dv_msg_t in = { .type = DV_MSG_EVENT };
    dv_event_t *e = &in.u.event;
    e->seq = 1234567;
    e->broker = dv_str("b-0190f3a2");
    e->ts_ms = 1795369260000;
    e->kind = dv_str("job.failed");
    e->id = dv_str(ID1);
    e->queue = dv_str("llm");
    e->type = dv_str("http");
    e->batch = dv_str("batch-7");
    e->worker = dv_str("host-a:4242");
    e->attempt = 2;
    e->state = DV_STATE_SCHEDULED;
    e->run_at_ms = 1795369290000;
    e->wait_ms = 12;
    e->run_ms = 2400;
    e->current = 7;
    e->total = 9;
    e->message = dv_str("step 7");
    e->has_failure = true;
    e->failure = s_full_failure();
    e->body = S_RESULT;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("event", &in, &out, &sb);
    s_done(&out, &sb);

    dv_msg_t min = { .type = DV_MSG_EVENT };
    min.u.event.seq = 1;
    min.u.event.broker = dv_str("b");
    min.u.event.kind = dv_str("worker.left");
    dv_failure_init(&min.u.event.failure);
    s_round_trip("event_min", &min, &out, &sb);
    assert_int_equal(out.u.event.state, DV_STATE_NONE);
    s_done(&out, &sb);
}

/* Appends the bytes msgpack-c writes for key k with value v (an int64 or
 * a uint64 by is_signed, or a string of n bytes when str). */
static void
s_msgpack_kv(msgpack_sbuffer *sb, const char *k, bool is_signed, int64_t v,
             const char *str, size_t n)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_str_with_body(&pk, k, strlen(k));
    if (str)
        msgpack_pack_str_with_body(&pk, str, n);
    else if (is_signed)
        msgpack_pack_int64(&pk, v);
    else
        msgpack_pack_uint64(&pk, (uint64_t)v);
}

/* The encoder writes numbers, strings and headers in the forms msgpack-c
 * writes them (the smallest that holds the value), at each boundary, and
 * they decode back to the same values. "ts" takes the numbers (decoded
 * when in its range, 0 and up), a failure's "exit_code" the int32 ones,
 * "message" the strings. */
static void
t_encoded_forms(void **state)
{
    (void)state;
    static const int64_t ints[] = {
        1,
        127,
        128,
        255,
        256,
        65535,
        65536,
        4294967295LL,
        4294967296LL,
        INT64_MAX,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32768,
        -32769,
        INT32_MIN,
        (int64_t)INT32_MIN - 1,
        INT64_MIN,
    };
    static const size_t lens[] = { 0, 1, 31, 32, 255, 256, 65535, 65536 };
    static char text[65536];
    memset(text, 'x', sizeof text);
    msgpack_sbuffer sb, want;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&want);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
            int64_t v = ints[i];
            bool in_i32 = v >= INT32_MIN && v <= INT32_MAX && v != -1;
            dv_msg_t in = { .type = DV_MSG_EVENT };
            dv_event_t *e = &in.u.event;
            dv_failure_init(&e->failure);
            e->seq = v > 0 ? (uint64_t)v : 1;
            e->broker = dv_str("b");
            e->kind = dv_str("job.progress");
            e->ts_ms = v;
            e->message = dv_strn(text, lens[l]);
            e->has_failure = true;
            e->failure.category = DV_CAT_HANDLER;
            e->failure.exit_code = in_i32 ? (int32_t)v : 0;
            sb.size = 0;
            assert_int_equal(dv_msg_encode(&in, &sb), DV_OK);
            want.size = 0;
            s_msgpack_kv(&want, "seq", false, (int64_t)e->seq, NULL, 0);
            assert_non_null(memmem(sb.data, sb.size, want.data, want.size));
            want.size = 0;
            s_msgpack_kv(&want, "ts", true, v, NULL, 0);
            assert_non_null(memmem(sb.data, sb.size, want.data, want.size));
            want.size = 0;
            s_msgpack_kv(&want, "exit_code", true, e->failure.exit_code, NULL,
                         0);
            assert_non_null(memmem(sb.data, sb.size, want.data, want.size));
            want.size = 0;
            s_msgpack_kv(&want, "message", false, 0, text, lens[l]);
            assert_non_null(memmem(sb.data, sb.size, want.data, want.size));
            if (v < 0 || lens[l] > DV_TEXT_MAX)
                continue; /* out of the fields' ranges: encoded only */
            dv_msg_t out;
            char why[256];
            assert_int_equal(
                dv_msg_decode(sb.data, sb.size, &out, why, sizeof why), DV_OK);
            assert_int_equal(out.u.event.ts_ms, v);
            assert_int_equal(out.u.event.seq, e->seq);
            assert_int_equal(out.u.event.failure.exit_code,
                             e->failure.exit_code);
            assert_int_equal(out.u.event.message.len, lens[l]);
            dv_msg_release(&out);
        }
    }
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&want);
}

static void
t_keys(void **state)
{
    (void)state;
    /* every field set, at the top of its range where that is not huge */
    dv_keyitem_t items[2];
    memset(items, 0, sizeof items);
    dv_keyitem_t *k = &items[0];
    k->hash = dv_str("3fa9c2e1");
    k->id = dv_str("az-west");
    k->rpm = 10000000;
    k->tpm = INT64_MAX / 2;
    k->window_ms = 86400000;
    k->recent = 10000000;
    k->want = 1000000;
    k->sent = INT32_MAX;
    k->done = 41;
    k->returned = 3;
    k->ok = 37;
    k->limited = 2;
    k->errors = 2;
    k->tokens = 123456789012;
    k->cool_ms = 86400000;
    k->disabled = 999;
    k->grant = 1000000;
    k->ttl_ms = 3600000;
    k->limit = 10000000;
    k->revoke = true;
    k->probe = true;
    items[1].hash = dv_str("0b7d51aa");
    items[1].id = dv_str("key-2");
    items[1].grant = 4;
    items[1].ttl_ms = 5000;
    dv_msg_t in = { .type = DV_MSG_KEYS };
    in.u.keys.items = items;
    in.u.keys.nitems = 2;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("keys", &in, &out, &sb);
    assert_int_equal(out.u.keys.nitems, 2);
    S_STR_EQ(out.u.keys.items[0].hash, dv_str("3fa9c2e1"));
    assert_true(s_in_frame(out.u.keys.items[0].hash, &sb));
    assert_true(out.u.keys.items[0].tokens == 123456789012);
    assert_int_equal(out.u.keys.items[0].disabled, 999);
    assert_true(out.u.keys.items[0].revoke);
    assert_true(out.u.keys.items[0].probe);
    assert_int_equal(out.u.keys.items[1].grant, 4);
    assert_false(out.u.keys.items[1].revoke);
    s_done(&out, &sb);

    /* a change in any one field is a difference */
    dv_keyitem_t other[2];
    memcpy(other, items, sizeof other);
    other[0].probe = false;
    dv_msg_t changed = in;
    changed.u.keys.items = other;
    char diff[256];
    assert_false(dv_msg_equal(&in, &changed, diff, sizeof diff));
    assert_non_null(strstr(diff, "items[0].probe"));

    /* only the hash: the rest (zero) is left out */
    dv_keyitem_t one = { .hash = dv_str("3fa9c2e1") };
    dv_msg_t min = { .type = DV_MSG_KEYS };
    min.u.keys.items = &one;
    min.u.keys.nitems = 1;
    s_round_trip("keys_min", &min, &out, &sb);
    assert_int_equal(out.u.keys.nitems, 1);
    S_STR_EQ(out.u.keys.items[0].hash, dv_str("3fa9c2e1"));
    assert_null(out.u.keys.items[0].id.ptr);
    assert_int_equal(out.u.keys.items[0].grant, 0);
    assert_false(out.u.keys.items[0].revoke);
    /* {"v": 1, "t": "keys", "items": [{"hash": "3fa9c2e1"}]} */
    const uint8_t want[] = { 0x83, 0xa1, 'v',  0x01, 0xa1, 't', 0xa4, 'k', 'e',
                             'y',  's',  0xa5, 'i',  't',  'e', 'm',  's', 0x91,
                             0x81, 0xa4, 'h',  'a',  's',  'h', 0xa8, '3', 'f',
                             'a',  '9',  'c',  '2',  'e',  '1' };
    assert_int_equal(sb.size, sizeof want);
    assert_memory_equal(sb.data, want, sizeof want);
    s_done(&out, &sb);
}

static void
t_encode_invalid_type(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dv_msg_t m = { .type = DV_MSG_NONE };
    assert_int_equal(dv_msg_encode(&m, &sb), DV_EPROTO);
    m.type = DV_MSG_COUNT_;
    assert_int_equal(dv_msg_encode(&m, &sb), DV_EPROTO);
    m.type = (dv_msg_type_t)-3;
    assert_int_equal(dv_msg_encode(&m, &sb), DV_EPROTO);
    assert_int_equal(sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- rejections -------------------------------------------------------- */

static int
s_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* JSON to msgpack for tests; "bin:<hex>" strings become bin. */
static void
s_pack_json(msgpack_packer *pk, const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        size_t kl;
        json_t *v;
        msgpack_pack_map(pk, json_object_size(j));
        json_object_keylen_foreach((json_t *)j, k, kl, v)
        {
            msgpack_pack_str_with_body(pk, k, kl);
            s_pack_json(pk, v);
        }
        break;
    }
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++)
            s_pack_json(pk, json_array_get(j, i));
        break;
    case JSON_STRING: {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        if (n >= 4 && memcmp(s, "bin:", 4) == 0) {
            size_t bn = (n - 4) / 2;
            char *b = malloc(bn + 1);
            for (size_t i = 0; i < bn; i++)
                b[i] = (char)(s_hexval(s[4 + 2 * i]) << 4 |
                              s_hexval(s[5 + 2 * i]));
            msgpack_pack_bin_with_body(pk, b, bn);
            free(b);
        } else {
            msgpack_pack_str_with_body(pk, s, n);
        }
        break;
    }
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(j));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(j));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        break;
    }
}

/* Packs the printf-formatted JSON text into sb (initialised here). */
static void
s_frame(msgpack_sbuffer *sb, const char *fmt, va_list ap)
{
    char *text = NULL;
    assert_true(vasprintf(&text, fmt, ap) >= 0);
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    if (!j)
        fail_msg("bad test JSON (%s): %s", err.text, text);
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    s_pack_json(&pk, j);
    json_decref(j);
    free(text);
}

static void
s_framef(msgpack_sbuffer *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_frame(sb, fmt, ap);
    va_end(ap);
}

/* Decodes data and checks the code and that the reason holds want. */
static void
s_expect_bytes(const void *data, size_t size, int code, const char *want,
               int line)
{
    dv_msg_t m;
    char why[256];
    memset(why, 'x', sizeof why);
    int rc = dv_msg_decode(data, size, &m, why, sizeof why);
    if (rc != code)
        fail_msg("line %d: got %d (%s), want %d", line, rc, rc ? why : "ok",
                 code);
    if (want && !strstr(why, want))
        fail_msg("line %d: reason \"%s\" lacks \"%s\"", line, why, want);
    if (code != DV_OK) {
        /* a failed decode owns nothing */
        assert_null(m.priv_);
        assert_true(strlen(why) > 0 && strlen(why) < sizeof why);
    }
    dv_msg_release(&m);
    dv_msg_release(&m);
}

static void
s_expect_(int line, int code, const char *want, const char *fmt, ...)
{
    msgpack_sbuffer sb;
    va_list ap;
    va_start(ap, fmt);
    s_frame(&sb, fmt, ap);
    va_end(ap);
    s_expect_bytes(sb.data, sb.size, code, want, line);
    msgpack_sbuffer_destroy(&sb);
}

#define S_EXPECT(code, want, ...)                                              \
    s_expect_(__LINE__, (code), (want), __VA_ARGS__)

/* n copies of c, NUL-terminated; caller frees. */
static char *
s_rep(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void
t_reject_envelope(void **state)
{
    (void)state;
    S_EXPECT(DV_EPROTO, "must be a msgpack map", "[1, 2]");
    S_EXPECT(DV_EPROTO, "must be a msgpack map", "\"submit\"");
    S_EXPECT(DV_EPROTO, "must be a msgpack map", "null");
    S_EXPECT(DV_EPROTO, "missing key \"v\"", "{\"t\": \"bye\"}");
    S_EXPECT(DV_EPROTO, "missing key \"v\"", "{}");
    S_EXPECT(DV_EPROTO, "missing key \"t\"", "{\"v\": 1}");
    S_EXPECT(DV_EPROTO, "unknown message type \"nope\"",
             "{\"v\": 1, \"t\": \"nope\"}");
    S_EXPECT(DV_EPROTO, "unknown message type \"\"", "{\"v\": 1, \"t\": \"\"}");
    S_EXPECT(DV_EPROTO, "t: must be a string", "{\"v\": 1, \"t\": 5}");
    S_EXPECT(DV_EPROTO, "v: must be an unsigned integer",
             "{\"v\": -1, \"t\": \"bye\"}");
    S_EXPECT(DV_EPROTO, "v: must be an unsigned integer",
             "{\"v\": \"1\", \"t\": \"bye\"}");
    S_EXPECT(DV_EPROTO, "v: must be an unsigned integer",
             "{\"v\": 1.0, \"t\": \"bye\"}");
    S_EXPECT(DV_EPROTO, "v: must be >= 1", "{\"v\": 0, \"t\": \"bye\"}");
    S_EXPECT(DV_EVERSION, "protocol version 2 is not supported",
             "{\"v\": 2, \"t\": \"bye\"}");
    /* a newer peer may use a type this side has never heard of */
    S_EXPECT(DV_EVERSION, "this side speaks 1",
             "{\"v\": 7, \"t\": \"newtype\", \"x\": [1]}");
    S_EXPECT(DV_OK, NULL, "{\"t\": \"bye\", \"v\": 1}");

    /* the version reaches the caller, for its error reply */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint64(&pk, 3);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "hello", 5);
    dv_msg_t m;
    assert_int_equal(dv_msg_decode(sb.data, sb.size, &m, NULL, 0), DV_EVERSION);
    assert_int_equal(m.version, 3);
    dv_msg_release(&m);
    msgpack_sbuffer_destroy(&sb);
}

/* A submit of one job whose queue is the n bytes at q. */
static void
s_submit_queue(msgpack_sbuffer *sb, const char *q, size_t n)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint32(&pk, DV_PROTO_VERSION);
    msgpack_pack_str_with_body(&pk, "t", 1);
    msgpack_pack_str_with_body(&pk, "submit", 6);
    msgpack_pack_str_with_body(&pk, "req", 3);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_str_with_body(&pk, "jobs", 4);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "queue", 5);
    msgpack_pack_str_with_body(&pk, q, n);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_str_with_body(&pk, "t", 1);
}

/* Names on the wire are valid UTF-8 without control characters. */
static void
t_reject_names(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t n;
        const char *why; /* NULL: accepted */
    } cases[] = {
        { "caf\xc3\xa9", 5, NULL },
        { "\xe6\x97\xa5\xe6\x9c\xac", 6, NULL },
        { "\xf0\x9f\x98\x80", 4, NULL },
        { "a\0b", 3, "control character" },
        { "a\nb", 3, "control character" },
        { "a\x1b[31m", 7, "control character" },
        { "a\x7f", 2, "control character" },
        { "\xc2\x85", 2, "control character" },
        { "\xc3\x28", 2, "not valid UTF-8" },
        { "\xc0\xaf", 2, "not valid UTF-8" },
        { "\xe0\x80\xaf", 3, "not valid UTF-8" },
        { "\xed\xa0\x80", 3, "not valid UTF-8" },
        { "\xf4\x90\x80\x80", 4, "not valid UTF-8" },
        { "ab\xe6\x97", 4, "not valid UTF-8" },
        { "\xff", 1, "not valid UTF-8" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        msgpack_sbuffer sb;
        s_submit_queue(&sb, cases[i].bytes, cases[i].n);
        s_expect_bytes(sb.data, sb.size, cases[i].why ? DV_EPROTO : DV_OK,
                       cases[i].why, (int)i);
        msgpack_sbuffer_destroy(&sb);
        assert_true((dv_name_check(cases[i].bytes, cases[i].n) == NULL) ==
                    (cases[i].why == NULL));
    }
}

/* A full job event and a worker event, as items of a batch. */
static void
s_sample_events(dv_event_t ev[3])
{
    memset(ev, 0, 3 * sizeof *ev);
    for (int i = 0; i < 3; i++) {
        dv_failure_init(&ev[i].failure);
        ev[i].seq = 41 + (uint64_t)i;
        ev[i].broker = dv_str("b-0190f3a2");
        ev[i].ts_ms = 1795369260000 + i;
        ev[i].id = dv_str(ID1);
        ev[i].queue = dv_str("llm");
        ev[i].type = dv_str("http");
    }
    ev[0].kind = dv_str("job.submitted");
    ev[0].state = DV_STATE_QUEUED;
    ev[1].kind = dv_str("job.started");
    ev[1].worker = dv_str("host-a:4242");
    ev[1].attempt = 1;
    ev[1].wait_ms = 12;
    ev[2].kind = dv_str("job.failed");
    ev[2].batch = dv_str("batch-7");
    ev[2].worker = dv_str("host-a:4242");
    ev[2].attempt = 1;
    ev[2].state = DV_STATE_SCHEDULED;
    ev[2].run_at_ms = 1795369290000;
    ev[2].run_ms = 2400;
    ev[2].has_failure = true;
    ev[2].failure = s_full_failure();
    ev[2].body = S_RESULT;
}

static void
t_events(void **state)
{
    (void)state;
    dv_event_t ev[3];
    s_sample_events(ev);
    dv_msg_t in = { .type = DV_MSG_EVENTS };
    in.u.events.events = ev;
    in.u.events.nevents = 3;
    dv_msg_t out;
    msgpack_sbuffer sb;
    s_round_trip("events", &in, &out, &sb);
    assert_int_equal(out.u.events.nevents, 3);
    assert_int_equal(out.u.events.events[1].kind_enum, DV_EV_JOB_STARTED);
    S_STR_EQ(out.u.events.events[1].kind, dv_str("job.started"));
    assert_int_equal(out.u.events.events[0].failure.exit_code, -1);
    assert_true(out.u.events.events[2].has_failure);
    assert_false(out.u.events.events[0].has_failure);
    s_done(&out, &sb);

    /* built one event at a time, behind other bytes in the buffer: the
     * same message, whatever the count's width */
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_sbuffer_write(&b, "junk", 4);
    dv_events_enc_t e;
    assert_int_equal(dv_events_begin(&e, &b), DV_OK);
    assert_int_equal(e.start, 4);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(dv_events_add(&e, &b, &ev[i]), DV_OK);
        assert_int_equal(e.n, i + 1);
        char why[256];
        assert_int_equal(dv_msg_decode(b.data + e.start, b.size - e.start, &out,
                                       why, sizeof why),
                         DV_OK);
        assert_int_equal(out.type, DV_MSG_EVENTS);
        assert_int_equal(out.u.events.nevents, i + 1);
        dv_msg_t want = in;
        want.u.events.nevents = i + 1;
        char diff[256];
        if (!dv_msg_equal(&want, &out, diff, sizeof diff))
            fail_msg("built batch differs: %s", diff);
        dv_msg_release(&out);
    }
    msgpack_sbuffer_destroy(&b);

    /* a kind given as the enum alone goes out as its name */
    msgpack_sbuffer_init(&b);
    assert_int_equal(dv_events_begin(&e, &b), DV_OK);
    dv_event_t one = ev[1];
    one.kind = (dv_str_t){ 0 };
    one.kind_enum = DV_EV_JOB_STARTED;
    assert_int_equal(dv_events_add(&e, &b, &one), DV_OK);
    assert_int_equal(dv_msg_decode(b.data, b.size, &out, NULL, 0), DV_OK);
    S_STR_EQ(out.u.events.events[0].kind, dv_str("job.started"));
    assert_int_equal(out.u.events.events[0].kind_enum, DV_EV_JOB_STARTED);
    dv_msg_release(&out);
    msgpack_sbuffer_destroy(&b);

    /* an empty batch is not a message anyone should send */
    msgpack_sbuffer_init(&b);
    assert_int_equal(dv_events_begin(&e, &b), DV_OK);
    s_expect_bytes(b.data, b.size, DV_EPROTO,
                   "events: events: must hold at least one event", __LINE__);
    msgpack_sbuffer_destroy(&b);

    assert_true(dv_event_is_job(&ev[0]));
    assert_true(dv_event_is_job(&ev[1]));
    dv_event_t w = { .kind_enum = DV_EV_WORKER_JOINED };
    assert_false(dv_event_is_job(&w));
    w.kind = dv_str("job.");
    assert_false(dv_event_is_job(&w));
    w.kind = dv_str("jobs.x");
    assert_false(dv_event_is_job(&w));
    w.kind = dv_str("job.new_kind");
    assert_true(dv_event_is_job(&w));
    w = (dv_event_t){ 0 };
    assert_false(dv_event_is_job(&w));
}

/* Malformed batches: every item is checked like a lone event, and the
 * reason names the item. */
static void
t_reject_events(void **state)
{
    (void)state;
    const char *ok = "{\"seq\": 1, \"broker\": \"b\", \"kind\": "
                     "\"job.started\"}";
    S_EXPECT(DV_OK, NULL, "{\"v\": 1, \"t\": \"events\", \"events\": [%s]}",
             ok);
    S_EXPECT(DV_EPROTO, "events: missing key \"events\"",
             "{\"v\": 1, \"t\": \"events\"}");
    S_EXPECT(DV_EPROTO, "events: events: must be an array",
             "{\"v\": 1, \"t\": \"events\", \"events\": %s}", ok);
    S_EXPECT(DV_EPROTO, "events: events: must hold at least one event",
             "{\"v\": 1, \"t\": \"events\", \"events\": []}");
    S_EXPECT(DV_EPROTO, "events: events[1]: must be a map",
             "{\"v\": 1, \"t\": \"events\", \"events\": [%s, 7]}", ok);
    S_EXPECT(DV_EPROTO, "events: events[1]: missing key \"seq\"",
             "{\"v\": 1, \"t\": \"events\", \"events\": [%s, "
             "{\"broker\": \"b\", \"kind\": \"job.started\"}]}",
             ok);
    S_EXPECT(DV_EPROTO, "events: events[0]: missing key \"kind\"",
             "{\"v\": 1, \"t\": \"events\", \"events\": "
             "[{\"seq\": 1, \"broker\": \"b\"}]}");
    S_EXPECT(DV_EPROTO, "events: events[0].seq: must be >= 1",
             "{\"v\": 1, \"t\": \"events\", \"events\": "
             "[{\"seq\": 0, \"broker\": \"b\", \"kind\": \"job.x\"}]}");
    S_EXPECT(DV_EPROTO, "events: events[0].seq: must be an unsigned integer",
             "{\"v\": 1, \"t\": \"events\", \"events\": "
             "[{\"seq\": \"1\", \"broker\": \"b\", \"kind\": \"job.x\"}]}");
    S_EXPECT(DV_EPROTO, "events: events[0].id: ",
             "{\"v\": 1, \"t\": \"events\", \"events\": "
             "[{\"seq\": 1, \"broker\": \"b\", \"kind\": \"job.x\", "
             "\"id\": \"short\"}]}");
    S_EXPECT(DV_EPROTO, "events: events[0].attempt: must be",
             "{\"v\": 1, \"t\": \"events\", \"events\": "
             "[{\"seq\": 1, \"broker\": \"b\", \"kind\": \"job.x\", "
             "\"attempt\": -1}]}");
    S_EXPECT(DV_EPROTO, "events: events[0].state: unknown state",
             "{\"v\": 1, \"t\": \"events\", \"events\": "
             "[{\"seq\": 1, \"broker\": \"b\", \"kind\": \"job.x\", "
             "\"state\": \"sleepy\"}]}");
    S_EXPECT(DV_EPROTO, "events: events[0].failure: missing key \"category\"",
             "{\"v\": 1, \"t\": \"events\", \"events\": "
             "[{\"seq\": 1, \"broker\": \"b\", \"kind\": \"job.x\", "
             "\"failure\": {\"message\": \"m\"}}]}");
    S_EXPECT(DV_EPROTO, "events: events[0].queue: ",
             "{\"v\": 1, \"t\": \"events\", \"events\": "
             "[{\"seq\": 1, \"broker\": \"b\", \"kind\": \"job.x\", "
             "\"queue\": \"\"}]}");

    /* a count claimed past the bytes is refused before any allocation,
     * and a count past DV_ITEMS_MAX is too big */
    static const unsigned char claim[] = {
        0x83, 0xa1, 'v',  1,    0xa1, 't',  0xa6, 'e',  'v',
        'e',  'n',  't',  's',  0xa6, 'e',  'v',  'e',  'n',
        't',  's',  0xdd, 0xff, 0xff, 0xff, 0xff, 0x80,
    };
    s_expect_bytes(claim, sizeof claim, DV_ETRUNC, NULL, __LINE__);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dv_events_enc_t e;
    assert_int_equal(dv_events_begin(&e, &sb), DV_OK);
    dv_event_t ev = { .seq = 1,
                      .broker = dv_str("b"),
                      .kind_enum = DV_EV_JOB_STARTED };
    dv_failure_init(&ev.failure);
    for (uint32_t i = 0; i < DV_ITEMS_MAX; i++)
        assert_int_equal(dv_events_add(&e, &sb, &ev), DV_OK);
    assert_int_equal(dv_events_add(&e, &sb, &ev), DV_ETOOBIG);
    dv_msg_t m;
    assert_int_equal(dv_msg_decode(sb.data, sb.size, &m, NULL, 0), DV_OK);
    assert_int_equal(m.u.events.nevents, DV_ITEMS_MAX);
    dv_msg_release(&m);
    /* one more item, and the count says so: refused */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 0);
    uint32_t n = DV_ITEMS_MAX + 1;
    unsigned char *c = (unsigned char *)sb.data + 21;
    c[0] = (unsigned char)(n >> 24);
    c[1] = (unsigned char)(n >> 16);
    c[2] = (unsigned char)(n >> 8);
    c[3] = (unsigned char)n;
    s_expect_bytes(sb.data, sb.size, DV_ETOOBIG,
                   "events: events: more than 100000 items", __LINE__);
    msgpack_sbuffer_destroy(&sb);
}

static void
t_reject_fields(void **state)
{
    (void)state;
    const char *job = "{\"queue\": \"q\", \"type\": \"t\"}";
    /* the example from the header, to the letter */
    S_EXPECT(DV_EPROTO, "submit: jobs[3].priority: must be 0..9",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": [%s, %s, %s, "
             "{\"queue\": \"q\", \"type\": \"t\", \"priority\": 10}]}",
             job, job, job);
    S_EXPECT(DV_EPROTO, "submit: jobs[0].priority: must be 0..9",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"q\", \"type\": \"t\", \"priority\": -1}]}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].priority: must be an integer",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"q\", \"type\": \"t\", \"priority\": 1.5}]}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].priority: must be an integer",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"q\", \"type\": \"t\", \"priority\": \"5\"}]}");
    S_EXPECT(DV_OK, NULL,
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"q\", \"type\": \"t\", \"priority\": 9}]}");
    S_EXPECT(DV_EPROTO, "hello: missing key \"queues\"",
             "{\"v\": 1, \"t\": \"hello\", \"name\": \"w\", "
             "\"concurrency\": 1, \"credit\": 1}");
    S_EXPECT(DV_EPROTO, "update: items[0].kind: unknown kind \"foo\"",
             "{\"v\": 1, \"t\": \"update\", \"items\": [{\"kind\": \"foo\", "
             "\"id\": \"" ID1 "\", \"attempt\": 1}]}");
    S_EXPECT(DV_EPROTO, "submit: missing key \"jobs\"",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1}");
    S_EXPECT(DV_EPROTO, "submit: missing key \"req\"",
             "{\"v\": 1, \"t\": \"submit\", \"jobs\": []}");
    S_EXPECT(DV_EPROTO, "submit: jobs[1]: missing key \"type\"",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[%s, {\"queue\": \"q\"}]}",
             job);
    S_EXPECT(DV_EPROTO, "submit: jobs[0]: must be a map",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": [7]}");
    S_EXPECT(DV_EPROTO, "submit: jobs: must be an array",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": {}}");
    S_EXPECT(DV_EPROTO, "submit: req: must be an unsigned integer",
             "{\"v\": 1, \"t\": \"submit\", \"req\": -4, \"jobs\": []}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].queue: must be a string",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": 5, \"type\": \"t\"}]}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].queue: must not be empty",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"\", \"type\": \"t\"}]}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].batch: must not be empty",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"q\", \"type\": \"t\", \"batch\": \"\"}]}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].max_attempts: must be 0..1000",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"q\", \"type\": \"t\", \"max_attempts\": 1001}]}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].timeout: must be >= 0",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"q\", \"type\": \"t\", \"timeout\": -1}]}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].run_at: must be >= 0",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"q\", \"type\": \"t\", \"run_at\": -5}]}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].result_ttl: must be an integer",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"q\", \"type\": \"t\", \"result_ttl\": true}]}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].payload: must be bin",
             "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
             "[{\"queue\": \"q\", \"type\": \"t\", \"payload\": {}}]}");
    S_EXPECT(DV_EPROTO, "reply: ok: must be a boolean",
             "{\"v\": 1, \"t\": \"reply\", \"req\": 1, \"ok\": 1}");
    S_EXPECT(DV_EPROTO, "reply: missing key \"ok\"",
             "{\"v\": 1, \"t\": \"reply\", \"req\": 1}");
    S_EXPECT(DV_EPROTO, "ctrl: dead: must be a boolean",
             "{\"v\": 1, \"t\": \"ctrl\", \"req\": 1, \"verb\": \"retry\", "
             "\"dead\": \"yes\"}");
    S_EXPECT(DV_EPROTO, "ctrl: value: must be a number",
             "{\"v\": 1, \"t\": \"ctrl\", \"req\": 1, \"verb\": \"rate\", "
             "\"value\": \"fast\"}");
    /* doubles accept integers */
    S_EXPECT(DV_OK, NULL,
             "{\"v\": 1, \"t\": \"ctrl\", \"req\": 1, \"verb\": \"rate\", "
             "\"value\": 3}");
    S_EXPECT(DV_EPROTO, "ctrl: missing key \"verb\"",
             "{\"v\": 1, \"t\": \"ctrl\", \"req\": 1}");
    S_EXPECT(DV_EPROTO, "error: missing key \"reason\"",
             "{\"v\": 1, \"t\": \"error\", \"req\": 1}");
    S_EXPECT(DV_EPROTO, "error: version: must be 0..4294967295",
             "{\"v\": 1, \"t\": \"error\", \"reason\": \"x\", "
             "\"version\": 4294967296}");
}

#define S_KEYS "{\"v\": 1, \"t\": \"keys\", \"items\": "

static void
t_reject_keys(void **state)
{
    (void)state;
    S_EXPECT(DV_OK, NULL, S_KEYS "[{\"hash\": \"3fa9c2e1\"}]}");
    S_EXPECT(DV_OK, NULL,
             S_KEYS "[{\"hash\": \"3fa9c2e1\", \"disabled\": 999, "
                    "\"window\": 0, \"revoke\": false}]}");
    S_EXPECT(DV_EPROTO, "keys: missing key \"items\"",
             "{\"v\": 1, \"t\": \"keys\"}");
    S_EXPECT(DV_EPROTO, "keys: items: must name at least one key",
             S_KEYS "[]}");
    S_EXPECT(DV_EPROTO, "keys: items: must be an array", S_KEYS "{}}");
    S_EXPECT(DV_EPROTO, "keys: items[0]: must be a map", S_KEYS "[\"k\"]}");
    S_EXPECT(DV_EPROTO, "keys: items[1]: missing key \"hash\"",
             S_KEYS "[{\"hash\": \"a\"}, {\"id\": \"key-2\", "
                    "\"want\": 3}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].hash: must not be empty",
             S_KEYS "[{\"hash\": \"\"}]}");
    char *h65 = s_rep('a', 65);
    S_EXPECT(DV_ETOOBIG, "keys: items[0].hash: longer than 64 bytes",
             S_KEYS "[{\"hash\": \"%s\"}]}", h65);
    h65[64] = '\0';
    S_EXPECT(DV_OK, NULL, S_KEYS "[{\"hash\": \"%s\"}]}", h65);
    free(h65);
    S_EXPECT(DV_EPROTO, "keys: items[0].hash: must be a string",
             S_KEYS "[{\"hash\": 12345678}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].hash: has a control character",
             S_KEYS "[{\"hash\": \"3fa9\\u001bc2e1\"}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].id: must not be empty",
             S_KEYS "[{\"hash\": \"a\", \"id\": \"\"}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].disabled: must be 0..999",
             S_KEYS "[{\"hash\": \"a\", \"disabled\": 1000}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].window: must be 0..86400000",
             S_KEYS "[{\"hash\": \"a\", \"window\": -1}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].grant: must be 0..1000000",
             S_KEYS "[{\"hash\": \"a\", \"grant\": 1000001}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].ttl: must be 0..3600000",
             S_KEYS "[{\"hash\": \"a\", \"ttl\": 3600001}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].sent: must be 0..2147483647",
             S_KEYS "[{\"hash\": \"a\", \"sent\": 2147483648}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].want: must be an integer",
             S_KEYS "[{\"hash\": \"a\", \"want\": \"3\"}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].cool: must be an integer",
             S_KEYS "[{\"hash\": \"a\", \"cool\": 1.5}]}");
    S_EXPECT(DV_EPROTO, "keys: items[0].revoke: must be a boolean",
             S_KEYS "[{\"hash\": \"a\", \"revoke\": 1}]}");
}

static void
t_reject_ids_and_limits(void **state)
{
    (void)state;
    S_EXPECT(DV_EPROTO, "wait: ids[1]: must be a 36-character job id",
             "{\"v\": 1, \"t\": \"wait\", \"req\": 1, \"ids\": [\"" ID1
             "\", \"abc\"]}");
    S_EXPECT(DV_EPROTO, "kill: id: must be a 36-character job id",
             "{\"v\": 1, \"t\": \"kill\", \"id\": \"" ID1 "0\"}");
    S_EXPECT(DV_EPROTO, "kill: id: must be a string",
             "{\"v\": 1, \"t\": \"kill\", \"id\": 42}");
    S_EXPECT(DV_EPROTO, "kill: missing key \"id\"",
             "{\"v\": 1, \"t\": \"kill\", \"reason\": \"x\"}");
    S_EXPECT(DV_EPROTO, "jobs: jobs[0].attempt: must be 1..2147483647",
             "{\"v\": 1, \"t\": \"jobs\", \"jobs\": [{\"id\": \"" ID1 "\", "
             "\"queue\": \"q\", \"type\": \"t\", \"attempt\": 0}]}");
    S_EXPECT(DV_EPROTO, "jobs: jobs[0]: missing key \"attempt\"",
             "{\"v\": 1, \"t\": \"jobs\", \"jobs\": [{\"id\": \"" ID1 "\", "
             "\"queue\": \"q\", \"type\": \"t\"}]}");

    char *name200 = s_rep('n', DV_NAME_MAX), *name201 = s_rep('n', 201);
    char *key512 = s_rep('k', DV_KEY_MAX), *key513 = s_rep('k', 513);
    char *text4096 = s_rep('m', DV_TEXT_MAX), *text4097 = s_rep('m', 4097);
    const char *sub = "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
                      "[{\"queue\": \"%s\", \"type\": \"t\", \"key\": \"%s\", "
                      "\"trace\": \"%s\"}]}";
    S_EXPECT(DV_OK, NULL, sub, name200, key512, text4096);
    S_EXPECT(DV_ETOOBIG, "submit: jobs[0].queue: longer than 200 bytes", sub,
             name201, key512, text4096);
    S_EXPECT(DV_ETOOBIG, "submit: jobs[0].key: longer than 512 bytes", sub,
             name200, key513, text4096);
    S_EXPECT(DV_EPROTO, "submit: jobs[0].key: must not be empty", sub, name200,
             "", text4096);
    S_EXPECT(DV_ETOOBIG, "submit: jobs[0].trace: longer than 4096 bytes", sub,
             name200, key512, text4097);
    S_EXPECT(DV_OK, NULL, sub, "q", "k", ""); /* empty text is fine */
    S_EXPECT(DV_ETOOBIG, "error: reason: longer than 4096 bytes",
             "{\"v\": 1, \"t\": \"error\", \"reason\": \"%s\"}", text4097);
    S_EXPECT(DV_ETOOBIG, "hello: name: longer than 200 bytes",
             "{\"v\": 1, \"t\": \"hello\", \"name\": \"%s\", \"queues\": "
             "[\"q\"], \"concurrency\": 1, \"credit\": 1}",
             name201);
    S_EXPECT(DV_ETOOBIG, "hello: queues[1]: longer than 200 bytes",
             "{\"v\": 1, \"t\": \"hello\", \"name\": \"w\", \"queues\": "
             "[\"q\", \"%s\"], \"concurrency\": 1, \"credit\": 1}",
             name201);
    free(name200);
    free(name201);
    free(key512);
    free(key513);
    free(text4096);
    free(text4097);

    S_EXPECT(DV_EPROTO, "hello: queues: must name at least one queue",
             "{\"v\": 1, \"t\": \"hello\", \"name\": \"w\", \"queues\": [], "
             "\"concurrency\": 1, \"credit\": 1}");
    S_EXPECT(DV_EPROTO, "hello: queues[0]: must be a string",
             "{\"v\": 1, \"t\": \"hello\", \"name\": \"w\", \"queues\": [1], "
             "\"concurrency\": 1, \"credit\": 1}");
    S_EXPECT(DV_EPROTO, "hello: concurrency: must be 1..2147483647",
             "{\"v\": 1, \"t\": \"hello\", \"name\": \"w\", \"queues\": "
             "[\"q\"], \"concurrency\": 0, \"credit\": 1}");
    S_EXPECT(DV_EPROTO, "hello: credit: must be 0..2147483647",
             "{\"v\": 1, \"t\": \"hello\", \"name\": \"w\", \"queues\": "
             "[\"q\"], \"concurrency\": 1, \"credit\": -1}");
    S_EXPECT(DV_EPROTO, "hello: concurrency: must be 1..2147483647",
             "{\"v\": 1, \"t\": \"hello\", \"name\": \"w\", \"queues\": "
             "[\"q\"], \"concurrency\": 4294967296, \"credit\": 1}");
    S_EXPECT(DV_EPROTO, "hello: held[0]: missing key \"attempt\"",
             "{\"v\": 1, \"t\": \"hello\", \"name\": \"w\", \"queues\": "
             "[\"q\"], \"concurrency\": 1, \"credit\": 1, \"held\": "
             "[{\"id\": \"" ID1 "\"}]}");

    /* 257 queues */
    char buf[257 * 6 + 256];
    size_t n = 0;
    for (int i = 0; i < 257; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\"q\"", i ? "," : "");
    S_EXPECT(DV_ETOOBIG, "hello: queues: more than 256 items",
             "{\"v\": 1, \"t\": \"hello\", \"name\": \"w\", \"queues\": "
             "[%s], \"concurrency\": 1, \"credit\": 1}",
             buf);

    S_EXPECT(DV_EPROTO, "welcome: heartbeat: must be >= 1",
             "{\"v\": 1, \"t\": \"welcome\", \"broker\": \"b\", "
             "\"heartbeat\": 0, \"worker_timeout\": 1}");
    S_EXPECT(DV_EPROTO, "welcome: missing key \"worker_timeout\"",
             "{\"v\": 1, \"t\": \"welcome\", \"broker\": \"b\", "
             "\"heartbeat\": 1}");
    S_EXPECT(DV_EPROTO, "update: credit: must be 0..2147483647",
             "{\"v\": 1, \"t\": \"update\", \"credit\": -1, \"items\": []}");
    S_EXPECT(DV_EPROTO, "update: missing key \"items\"",
             "{\"v\": 1, \"t\": \"update\", \"credit\": 1}");
    S_EXPECT(DV_EPROTO, "update: items[0]: missing key \"failure\"",
             "{\"v\": 1, \"t\": \"update\", \"items\": [{\"kind\": "
             "\"failed\", \"id\": \"" ID1 "\", \"attempt\": 1}]}");
    S_EXPECT(DV_EPROTO, "update: items[0].failure: missing key \"category\"",
             "{\"v\": 1, \"t\": \"update\", \"items\": [{\"kind\": "
             "\"failed\", \"id\": \"" ID1 "\", \"attempt\": 1, \"failure\": "
             "{\"message\": \"x\"}}]}");
    S_EXPECT(DV_EPROTO, "update: items[0].kind: must be a string",
             "{\"v\": 1, \"t\": \"update\", \"items\": [{\"kind\": 1, "
             "\"id\": \"" ID1 "\", \"attempt\": 1}]}");
    S_EXPECT(DV_EPROTO,
             "result: results[1].failure.category: unknown "
             "category \"meh\"",
             "{\"v\": 1, \"t\": \"result\", \"results\": [{\"id\": \"" ID1
             "\", \"state\": \"succeeded\"}, {\"id\": \"" ID2 "\", \"state\": "
             "\"dead\", \"failure\": {\"category\": \"meh\"}}]}");
    S_EXPECT(DV_EPROTO,
             "result: results[0].failure.http_status: must be "
             "0..999",
             "{\"v\": 1, \"t\": \"result\", \"results\": [{\"id\": \"" ID1
             "\", \"state\": \"dead\", \"failure\": {\"category\": \"auth\", "
             "\"http_status\": 1000}}]}");
    S_EXPECT(DV_EPROTO,
             "result: results[0].failure.exit_code: must be an "
             "integer",
             "{\"v\": 1, \"t\": \"result\", \"results\": [{\"id\": \"" ID1
             "\", \"state\": \"dead\", \"failure\": {\"category\": \"auth\", "
             "\"exit_code\": 2.0}}]}");
    S_EXPECT(DV_EPROTO, "result: results[0].failure: must be a map",
             "{\"v\": 1, \"t\": \"result\", \"results\": [{\"id\": \"" ID1
             "\", \"state\": \"dead\", \"failure\": \"auth\"}]}");
    S_EXPECT(DV_EPROTO, "result: results[0].state: unknown state \"done\"",
             "{\"v\": 1, \"t\": \"result\", \"results\": [{\"id\": \"" ID1
             "\", \"state\": \"done\"}]}");
    S_EXPECT(DV_EPROTO, "unknown state \"none\"",
             "{\"v\": 1, \"t\": \"result\", \"results\": [{\"id\": \"" ID1
             "\", \"state\": \"none\"}]}");
    S_EXPECT(DV_EPROTO, "submitted: acks[0]: missing key \"id\"",
             "{\"v\": 1, \"t\": \"submitted\", \"req\": 1, \"acks\": "
             "[{\"duplicate\": false}]}");
    S_EXPECT(DV_EPROTO, "event: seq: must be >= 1",
             "{\"v\": 1, \"t\": \"event\", \"seq\": 0, \"broker\": \"b\", "
             "\"kind\": \"job.started\"}");
    S_EXPECT(DV_EPROTO, "event: missing key \"kind\"",
             "{\"v\": 1, \"t\": \"event\", \"seq\": 1, \"broker\": \"b\"}");
    S_EXPECT(DV_EPROTO, "event: state: unknown state \"sleepy\"",
             "{\"v\": 1, \"t\": \"event\", \"seq\": 1, \"broker\": \"b\", "
             "\"kind\": \"job.x\", \"state\": \"sleepy\"}");
    S_EXPECT(DV_EPROTO, "heartbeat: busy: must be 0..2147483647",
             "{\"v\": 1, \"t\": \"heartbeat\", \"busy\": -2}");
}

static void
t_reject_backoff(void **state)
{
    (void)state;
    const char *fmt = "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
                      "[{\"queue\": \"q\", \"type\": \"t\", \"backoff\": %s}]}";
    S_EXPECT(DV_EPROTO, "submit: jobs[0].backoff.factor: must be >= 1", fmt,
             "{\"base\": 100, \"factor\": 0.5, \"cap\": 1000}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].backoff.cap: must be >= base", fmt,
             "{\"base\": 1000, \"cap\": 10}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].backoff.base: must be >= 0", fmt,
             "{\"base\": -1, \"cap\": 10}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].backoff.jitter: must be a boolean",
             fmt, "{\"jitter\": 1}");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].backoff: must be a map", fmt, "[]");
    S_EXPECT(DV_EPROTO, "submit: jobs[0].backoff.factor: must be a number", fmt,
             "{\"factor\": \"2\"}");

    /* defaults fill what is absent; an integer factor is fine */
    msgpack_sbuffer sb;
    dv_msg_t m;
    char why[256];
    s_framef(&sb, fmt, "{\"base\": 250, \"factor\": 3}");
    assert_int_equal(dv_msg_decode(sb.data, sb.size, &m, why, sizeof why),
                     DV_OK);
    const dv_jobspec_t *js = &m.u.submit.jobs[0];
    assert_true(js->has_backoff);
    assert_int_equal(js->backoff.base_ms, 250);
    assert_true(js->backoff.factor == 3.0);
    assert_int_equal(js->backoff.cap_ms, DV_BACKOFF_DEFAULT.cap_ms);
    assert_true(js->backoff.jitter);
    dv_msg_release(&m);
    msgpack_sbuffer_destroy(&sb);
}

static void
t_reject_payloads(void **state)
{
    (void)state;
    const char *fmt = "{\"v\": 1, \"t\": \"submit\", \"req\": 1, \"jobs\": "
                      "[{\"queue\": \"q\", \"type\": \"t\", \"payload\": "
                      "\"bin:%s\"}]}";
    S_EXPECT(DV_OK, NULL, fmt, "c0");       /* nil */
    S_EXPECT(DV_OK, NULL, fmt, "81a16101"); /* {"a": 1} */
    S_EXPECT(DV_EPROTO,
             "submit: jobs[0].payload: bin does not hold exactly "
             "one msgpack value",
             fmt, "c1"); /* never-used byte */
    S_EXPECT(DV_EPROTO, "exactly one msgpack value", fmt, "0102");   /* trail */
    S_EXPECT(DV_EPROTO, "exactly one msgpack value", fmt, "81a161"); /* cut */
    S_EXPECT(DV_EPROTO, "exactly one msgpack value", fmt, "");
    S_EXPECT(DV_EPROTO, "exactly one msgpack value", fmt, "ddffffffff01");
    S_EXPECT(DV_EPROTO, "result: results[0].result: bin does not hold",
             "{\"v\": 1, \"t\": \"result\", \"results\": [{\"id\": \"" ID1
             "\", \"state\": \"succeeded\", \"result\": \"bin:0102\"}]}");
    S_EXPECT(DV_EPROTO, "reply: body: bin does not hold",
             "{\"v\": 1, \"t\": \"reply\", \"req\": 1, \"ok\": true, "
             "\"body\": \"bin:92\"}");

    /* nesting: 64 is the limit inside a payload */
    char hex[2 * (DV_VALUE_DEPTH_MAX + 1) + 3];
    for (int depth = DV_VALUE_DEPTH_MAX; depth <= DV_VALUE_DEPTH_MAX + 1;
         depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++)
            n += (size_t)snprintf(hex + n, sizeof hex - n, "91");
        snprintf(hex + n, sizeof hex - n, "01");
        if (depth == DV_VALUE_DEPTH_MAX)
            S_EXPECT(DV_OK, NULL, fmt, hex);
        else
            S_EXPECT(DV_ETOOBIG,
                     "submit: jobs[0].payload: nested deeper "
                     "than 64",
                     fmt, hex);
    }

    /* 1 MiB of payload is the limit */
    for (uint32_t size = DV_PAYLOAD_MAX; size <= DV_PAYLOAD_MAX + 1; size++) {
        /* a bin holding one str of the right total size */
        char *body = malloc(size);
        body[0] = (char)0xdb;
        uint32_t sl = size - 5;
        body[1] = (char)(sl >> 24);
        body[2] = (char)(sl >> 16);
        body[3] = (char)(sl >> 8);
        body[4] = (char)sl;
        memset(body + 5, 'p', sl);
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        msgpack_pack_str_with_body(&pk, "v", 1);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_str_with_body(&pk, "t", 1);
        msgpack_pack_str_with_body(&pk, "jobs", 4);
        msgpack_pack_str_with_body(&pk, "jobs", 4);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 5);
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_str_with_body(&pk, ID1, 36);
        msgpack_pack_str_with_body(&pk, "queue", 5);
        msgpack_pack_str_with_body(&pk, "q", 1);
        msgpack_pack_str_with_body(&pk, "type", 4);
        msgpack_pack_str_with_body(&pk, "t", 1);
        msgpack_pack_str_with_body(&pk, "attempt", 7);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_str_with_body(&pk, "payload", 7);
        msgpack_pack_bin_with_body(&pk, body, size);
        msgpack_pack_str_with_body(&pk, "extra", 5);
        msgpack_pack_nil(&pk);
        if (size == DV_PAYLOAD_MAX)
            s_expect_bytes(sb.data, sb.size, DV_OK, NULL, __LINE__);
        else
            s_expect_bytes(sb.data, sb.size, DV_ETOOBIG,
                           "jobs: jobs[0].payload: larger than 1048576 bytes",
                           __LINE__);
        msgpack_sbuffer_destroy(&sb);
        free(body);
    }
}

static void
t_unknown_keys_ignored(void **state)
{
    (void)state;
    S_EXPECT(DV_OK, NULL,
             "{\"v\": 1, \"t\": \"submit\", \"future\": {\"x\": [1, 2.5]}, "
             "\"req\": 1, \"jobs\": [{\"queue\": \"q\", \"type\": \"t\", "
             "\"priority_v2\": \"high\", \"backoff\": {\"base\": 1, "
             "\"cap\": 2, \"shape\": \"sine\"}}]}");
    S_EXPECT(DV_OK, NULL,
             "{\"v\": 1, \"t\": \"bye\", \"req\": \"not a number\", "
             "\"why\": [null]}");
    /* keys inside nested maps too */
    S_EXPECT(DV_OK, NULL,
             "{\"v\": 1, \"t\": \"result\", \"results\": [{\"id\": \"" ID1
             "\", \"state\": \"unknown\", \"failure\": {\"category\": "
             "\"lost\", \"hint\": \"check the worker\"}}]}");

    /* a non-string key and a duplicated unknown key are ignored too;
     * a duplicated known key is not */
    for (int dup_known = 0; dup_known <= 1; dup_known++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 7);
        msgpack_pack_str_with_body(&pk, "v", 1);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_str_with_body(&pk, "t", 1);
        msgpack_pack_str_with_body(&pk, "kill", 4);
        msgpack_pack_int(&pk, 12); /* key 12 */
        msgpack_pack_int(&pk, 34);
        msgpack_pack_str_with_body(&pk, "x", 1);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_str_with_body(&pk, "x", 1);
        msgpack_pack_int(&pk, 2);
        msgpack_pack_str_with_body(&pk, "id", 2);
        msgpack_pack_str_with_body(&pk, ID1, 36);
        if (dup_known) {
            msgpack_pack_str_with_body(&pk, "id", 2);
            msgpack_pack_str_with_body(&pk, ID2, 36);
            s_expect_bytes(sb.data, sb.size, DV_EPROTO,
                           "kill: id: key given twice", __LINE__);
        } else {
            msgpack_pack_str_with_body(&pk, "ext", 3);
            msgpack_pack_ext_with_body(&pk, "abcd", 4, 5);
            s_expect_bytes(sb.data, sb.size, DV_OK, NULL, __LINE__);
        }
        msgpack_sbuffer_destroy(&sb);
    }
}

/* What an error reply needs survives a failed decode. */
static void
t_failed_decode_keeps_req(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    s_framef(&sb, "{\"v\": 1, \"t\": \"submit\", \"req\": 42, \"jobs\": "
                  "[{\"queue\": \"q\", \"type\": \"t\"}, {\"queue\": "
                  "\"q\", \"type\": \"t\", \"priority\": 99}]}");

    dv_msg_t m;
    char why[256];
    assert_int_equal(dv_msg_decode(sb.data, sb.size, &m, why, sizeof why),
                     DV_EPROTO);
    assert_string_equal(why, "submit: jobs[1].priority: must be 0..9");
    assert_int_equal(m.type, DV_MSG_SUBMIT);
    assert_int_equal(m.version, 1);
    assert_int_equal(m.u.submit.req, 42);
    assert_null(m.u.submit.jobs);
    assert_int_equal(m.u.submit.njobs, 0);
    assert_null(m.priv_);
    dv_msg_release(&m);

    /* why may be NULL, or too small for the whole reason */
    assert_int_equal(dv_msg_decode(sb.data, sb.size, &m, NULL, 0), DV_EPROTO);
    char tiny[8];
    assert_int_equal(dv_msg_decode(sb.data, sb.size, &m, tiny, sizeof tiny),
                     DV_EPROTO);
    assert_string_equal(tiny, "submit:");
    assert_int_equal(dv_msg_decode(sb.data, sb.size, &m, tiny, 1), DV_EPROTO);
    assert_string_equal(tiny, "");
    msgpack_sbuffer_destroy(&sb);

    /* release of a zeroed message */
    dv_msg_t z;
    memset(&z, 0, sizeof z);
    dv_msg_release(&z);
    dv_msg_release(NULL);
}

/* Every strict prefix of a valid frame is refused as truncated. */
static void
s_prefixes(const dv_msg_t *in)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_msg_encode(in, &sb), DV_OK);
    for (size_t n = 0; n < sb.size; n++) {
        /* a copy of exactly n bytes, so ASan sees any read past the end */
        char *cut = malloc(n ? n : 1);
        memcpy(cut, sb.data, n);
        dv_msg_t m;
        char why[256];
        int rc = dv_msg_decode(cut, n, &m, why, sizeof why);
        if (rc != DV_ETRUNC)
            fail_msg("prefix %zu of %zu: got %d (%s)", n, sb.size, rc, why);
        assert_null(m.priv_);
        dv_msg_release(&m);
        free(cut);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void
t_truncated(void **state)
{
    (void)state;
    dv_jobspec_t js;
    memset(&js, 0, sizeof js);
    js.queue = dv_str("q");
    js.type = dv_str("t");
    js.payload = S_PAYLOAD;
    js.has_backoff = true;
    js.backoff = DV_BACKOFF_DEFAULT;
    dv_msg_t sub = { .type = DV_MSG_SUBMIT };
    sub.u.submit.req = 1;
    sub.u.submit.jobs = &js;
    sub.u.submit.njobs = 1;
    s_prefixes(&sub);

    dv_update_t it;
    memset(&it, 0, sizeof it);
    it.kind = DV_UPD_FAILED;
    it.id = dv_str(ID1);
    it.attempt = 1;
    it.failure = s_full_failure();
    dv_msg_t upd = { .type = DV_MSG_UPDATE };
    upd.u.update.credit = 1;
    upd.u.update.items = &it;
    upd.u.update.nitems = 1;
    s_prefixes(&upd);

    dv_event_t *e;
    dv_msg_t ev = { .type = DV_MSG_EVENT };
    e = &ev.u.event;
    e->seq = 1;
    e->broker = dv_str("b");
    e->kind = dv_str("job.progress");
    e->current = 1;
    e->body = S_RESULT;
    e->has_failure = true;
    e->failure = s_full_failure();
    s_prefixes(&ev);

    dv_msg_t bye = { .type = DV_MSG_BYE };
    s_prefixes(&bye);
}

static void
t_hostile_frames(void **state)
{
    (void)state;
    /* an array header claiming 4 billion items in a 10-byte frame */
    const uint8_t arr[] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5 };
    s_expect_bytes(arr, sizeof arr, DV_ETRUNC, "not exactly one", __LINE__);
    const uint8_t map[] = { 0xdf, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5 };
    s_expect_bytes(map, sizeof map, DV_ETRUNC, NULL, __LINE__);
    /* the same claim inside a plausible message:
     * {"v":1,"t":"wait","req":1,"ids":<array32 of 2^32-1>} */
    const uint8_t inner[] = {
        0x84, 0xa1, 'v',  0x01, 0xa1, 't',  0xa4, 'w',  'a',
        'i',  't',  0xa3, 'r',  'e',  'q',  0x01, 0xa3, 'i',
        'd',  's',  0xdd, 0xff, 0xff, 0xff, 0xff, 0xa0,
    };
    s_expect_bytes(inner, sizeof inner, DV_ETRUNC, NULL, __LINE__);
    /* a str claiming 4 GiB */
    const uint8_t str[] = { 0xdb, 0xff, 0xff, 0xff, 0xff, 'a' };
    s_expect_bytes(str, sizeof str, DV_ETRUNC, NULL, __LINE__);

    /* depth bomb: 100000 nested arrays */
    size_t n = 100000;
    uint8_t *bomb = malloc(n + 1);
    memset(bomb, 0x91, n);
    bomb[n] = 0x01;
    s_expect_bytes(bomb, n + 1, DV_ETOOBIG, "frame nests deeper than 16",
                   __LINE__);
    /* and nested maps {"a": {"a": ...}} */
    for (size_t i = 0; i + 3 <= n; i += 3) {
        bomb[i] = 0x81;
        bomb[i + 1] = 0xa1;
        bomb[i + 2] = 'a';
    }
    bomb[n - (n % 3)] = 0x01;
    s_expect_bytes(bomb, n - (n % 3) + 1, DV_ETOOBIG, NULL, __LINE__);
    free(bomb);

    /* trailing bytes after the map */
    const uint8_t trail[] = { 0x82, 0xa1, 'v', 0x01, 0xa1, 't',
                              0xa3, 'b',  'y', 'e',  0xc0 };
    s_expect_bytes(trail, sizeof trail, DV_ETRUNC, NULL, __LINE__);
    s_expect_bytes(trail, sizeof trail - 1, DV_OK, NULL, __LINE__);
    /* not msgpack at all */
    const uint8_t c1[] = { 0xc1 };
    s_expect_bytes(c1, sizeof c1, DV_ETRUNC, NULL, __LINE__);
    s_expect_bytes("", 0, DV_ETRUNC, NULL, __LINE__);
    s_expect_bytes(NULL, 0, DV_ETRUNC, NULL, __LINE__);

    /* over the frame limit: refused on size alone */
    size_t big = (size_t)DV_MSG_MAX + 1;
    char *huge = calloc(1, big);
    assert_non_null(huge);
    s_expect_bytes(huge, big, DV_ETOOBIG, "over the 67108864 byte limit",
                   __LINE__);
    free(huge);
}

static void
t_items_limit(void **state)
{
    (void)state;
    /* DV_ITEMS_MAX ids pass, one more is refused before anything is
     * allocated for it */
    for (uint32_t count = DV_ITEMS_MAX; count <= DV_ITEMS_MAX + 1; count++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        msgpack_pack_str_with_body(&pk, "v", 1);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_str_with_body(&pk, "t", 1);
        msgpack_pack_str_with_body(&pk, "wait", 4);
        msgpack_pack_str_with_body(&pk, "req", 3);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_str_with_body(&pk, "ids", 3);
        msgpack_pack_array(&pk, count);
        for (uint32_t i = 0; i < count; i++)
            msgpack_pack_str_with_body(&pk, ID1, 36);
        if (count == DV_ITEMS_MAX) {
            dv_msg_t m;
            assert_int_equal(dv_msg_decode(sb.data, sb.size, &m, NULL, 0),
                             DV_OK);
            assert_int_equal(m.u.wait.nids, DV_ITEMS_MAX);
            dv_msg_release(&m);
        } else {
            s_expect_bytes(sb.data, sb.size, DV_ETOOBIG,
                           "wait: ids: more than 100000 items", __LINE__);
        }
        msgpack_sbuffer_destroy(&sb);
    }
}

/* ---- equality, codes, event kinds -------------------------------------- */

static void
t_equal(void **state)
{
    (void)state;
    dv_jobspec_t a[2], b[2];
    memset(a, 0, sizeof a);
    a[0].queue = dv_str("q");
    a[0].type = dv_str("t");
    a[1] = a[0];
    a[1].priority = 5;
    memcpy(b, a, sizeof a);
    dv_msg_t ma = { .type = DV_MSG_SUBMIT }, mb;
    ma.u.submit.req = 1;
    ma.u.submit.jobs = a;
    ma.u.submit.njobs = 2;
    mb = ma;
    mb.u.submit.jobs = b;
    char diff[128];
    assert_true(dv_msg_equal(&ma, &mb, diff, sizeof diff));
    assert_string_equal(diff, "");
    b[1].priority = 6;
    assert_false(dv_msg_equal(&ma, &mb, diff, sizeof diff));
    assert_string_equal(diff, "submit: jobs[1].priority: 5 != 6");
    b[1].priority = 5;
    b[0].queue = dv_str("r");
    assert_false(dv_msg_equal(&ma, &mb, diff, sizeof diff));
    assert_string_equal(diff, "submit: jobs[0].queue: \"q\" != \"r\"");
    b[0].queue = dv_strn(NULL, 0);
    assert_false(dv_msg_equal(&ma, &mb, NULL, 0));
    b[0].queue = dv_str("q");
    /* behind has_backoff: compared only when set */
    b[0].backoff.cap_ms = 99;
    assert_true(dv_msg_equal(&ma, &mb, diff, sizeof diff));
    b[0].has_backoff = true;
    assert_false(dv_msg_equal(&ma, &mb, diff, sizeof diff));
    assert_string_equal(diff, "submit: jobs[0].backoff: absent != present");
    mb.u.submit.njobs = 1;
    assert_false(dv_msg_equal(&ma, &mb, diff, sizeof diff));
    assert_string_equal(diff, "submit: jobs: 2 != 1");
    mb.type = DV_MSG_WAIT;
    assert_false(dv_msg_equal(&ma, &mb, diff, sizeof diff));
    assert_string_equal(diff, "type: submit != wait");
}

static void
t_codes(void **state)
{
    (void)state;
    /* the numbers are the protocol: they never move */
    assert_int_equal(DV_CODE_MALFORMED, 1);
    assert_int_equal(DV_CODE_UNKNOWN_WORKER, 5);
    assert_int_equal(DV_CODE_INTERNAL, 13);
    for (int c = DV_CODE_NONE; c < DV_CODE_COUNT_; c++) {
        const char *name = dv_code_name((dv_code_t)c);
        if (c)
            assert_int_equal(dv_code_parse(name, strlen(name)), c);
        for (int k = 0; k < c; k++)
            assert_string_not_equal(name, dv_code_name((dv_code_t)k));
    }
    assert_string_equal(dv_code_name(DV_CODE_NOT_FOUND), "not_found");
    assert_string_equal(dv_code_name((dv_code_t)999), "unknown");
    assert_int_equal(dv_code_parse("nope", 4), DV_CODE_NONE);
    assert_int_equal(dv_code_from_err(DV_EPROTO), DV_CODE_MALFORMED);
    assert_int_equal(dv_code_from_err(DV_ETRUNC), DV_CODE_MALFORMED);
    assert_int_equal(dv_code_from_err(DV_ETOOBIG), DV_CODE_TOO_BIG);
    assert_int_equal(dv_code_from_err(DV_EVERSION), DV_CODE_VERSION);
    assert_int_equal(dv_code_from_err(DV_ENOMEM), DV_CODE_NO_MEMORY);

    /* error and reply carry the code; without one the bytes are as before */
    dv_msg_t in = { .type = DV_MSG_ERROR }, out;
    in.u.error.reason = dv_str("unknown worker: send hello");
    in.u.error.version = 1;
    msgpack_sbuffer sb;
    s_round_trip("error_nocode", &in, &out, &sb);
    assert_null(memmem(sb.data, sb.size, "code", 4));
    assert_int_equal(out.u.error.code, DV_CODE_NONE);
    s_done(&out, &sb);
    in.u.error.code = DV_CODE_UNKNOWN_WORKER;
    s_round_trip("error_code", &in, &out, &sb);
    assert_int_equal(out.u.error.code, DV_CODE_UNKNOWN_WORKER);
    s_done(&out, &sb);

    dv_msg_t r = { .type = DV_MSG_REPLY };
    r.u.reply.req = 4;
    r.u.reply.error = dv_str("no such job");
    r.u.reply.code = DV_CODE_NOT_FOUND;
    s_round_trip("reply_code", &r, &out, &sb);
    assert_false(out.u.reply.ok);
    assert_int_equal(out.u.reply.code, DV_CODE_NOT_FOUND);
    s_done(&out, &sb);

    /* a code from a newer peer is kept as its number; a bad one refused */
    S_EXPECT(DV_OK, NULL,
             "{\"v\": 1, \"t\": \"error\", \"reason\": \"x\", \"code\": 77}");
    S_EXPECT(DV_EPROTO, "error: code: must be 0..2147483647",
             "{\"v\": 1, \"t\": \"error\", \"reason\": \"x\", \"code\": -1}");
    S_EXPECT(DV_EPROTO, "reply: code: must be an integer",
             "{\"v\": 1, \"t\": \"reply\", \"req\": 1, \"ok\": false, "
             "\"code\": \"not_found\"}");
}

static void
t_event_kinds(void **state)
{
    (void)state;
    const char *kinds[] = {
        "job.submitted",   "job.started",    "job.progress",
        "job.succeeded",   "job.failed",     "job.dead",
        "job.cancelled",   "job.retried",    "queue.paused",
        "queue.resumed",   "queue.limits",   "worker.joined",
        "worker.left",     "worker.expired", "worker.heartbeat",
        "worker.draining", "job.released",
    };
    assert_int_equal(sizeof kinds / sizeof kinds[0], DV_EV_COUNT_ - 1);
    for (int k = DV_EV_JOB_SUBMITTED; k < DV_EV_COUNT_; k++) {
        assert_string_equal(dv_event_kind_name((dv_event_kind_t)k),
                            kinds[k - 1]);
        assert_int_equal(
            dv_event_kind_parse(kinds[k - 1], strlen(kinds[k - 1])), k);
    }
    assert_string_equal(dv_event_kind_name(DV_EV_OTHER), "other");
    assert_int_equal(dv_event_kind_parse("job.teleported", 14), DV_EV_OTHER);
    assert_int_equal(dv_event_kind_parse("other", 5), DV_EV_OTHER);

    /* decoded: the enum next to the text; an unknown kind keeps its text */
    dv_msg_t in = { .type = DV_MSG_EVENT }, out;
    in.u.event.seq = 3;
    in.u.event.broker = dv_str("b");
    in.u.event.kind = dv_str("worker.draining");
    dv_failure_init(&in.u.event.failure);
    msgpack_sbuffer sb;
    s_round_trip("event_kind", &in, &out, &sb);
    assert_int_equal(out.u.event.kind_enum, DV_EV_WORKER_DRAINING);
    s_done(&out, &sb);
    in.u.event.kind = dv_str("job.teleported");
    s_round_trip("event_kind_other", &in, &out, &sb);
    assert_int_equal(out.u.event.kind_enum, DV_EV_OTHER);
    S_STR_EQ(out.u.event.kind, dv_str("job.teleported"));
    s_done(&out, &sb);

    /* encoded from the enum alone, the same bytes as from the text */
    msgpack_sbuffer a, b;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    in.u.event.kind = dv_str("job.retried");
    assert_int_equal(dv_msg_encode(&in, &a), DV_OK);
    S_STR_EQ(dv_event_topic(&in.u.event), dv_str("job.retried"));
    in.u.event.kind = dv_strn(NULL, 0);
    in.u.event.kind_enum = DV_EV_JOB_RETRIED;
    S_STR_EQ(dv_event_topic(&in.u.event), dv_str("job.retried"));
    assert_int_equal(dv_msg_encode(&in, &b), DV_OK);
    assert_int_equal(a.size, b.size);
    assert_memory_equal(a.data, b.data, a.size);
    in.u.event.kind_enum = DV_EV_OTHER;
    assert_null(dv_event_topic(&in.u.event).ptr);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

/* ---- typed bodies ------------------------------------------------------ */

/* The packing helpers the broker uses (broker_core.c), to check that the
 * typed encoders write the same bytes. */
static void
s_hp_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void
s_hp_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    s_hp_str(pk, k);
    if (v)
        s_hp_str(pk, v);
    else
        msgpack_pack_nil(pk);
}

static void
s_hp_kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
    s_hp_str(pk, k);
    msgpack_pack_int64(pk, v);
}

static void
s_hp_kv_bool(msgpack_packer *pk, const char *k, bool v)
{
    s_hp_str(pk, k);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static void
s_same_bytes(const msgpack_sbuffer *want, const msgpack_sbuffer *got,
             const char *what)
{
    if (want->size != got->size ||
        memcmp(want->data, got->data, want->size) != 0) {
        size_t i = 0;
        while (i < want->size && i < got->size && want->data[i] == got->data[i])
            i++;
        fail_msg("%s: %zu bytes by hand, %zu typed; first difference at %zu",
                 what, want->size, got->size, i);
    }
}

static void
t_status_body(void **state)
{
    (void)state;
    dv_str_t wq[2] = { dv_str("llm"), dv_str("email") };
    dv_status_queue_t qs[2] = {
        { dv_str("llm"), 2.5, 10, 120, 3, 7, false, 0, 0 },
        { dv_str("email"), 0, 0, 0, 0, 0, true, 0, 0 },
    };
    dv_status_worker_t ws[2] = {
        { dv_str("host-a:4242"), false, dv_str("host-a"), 4242, 16, 9, 7,
          123456, 17, wq, 2 },
        { dv_str("w2"), true, dv_strn(NULL, 0), 0, 1, -1, 0, 0, 0, NULL, 0 },
    };
    dv_status_t st;
    memset(&st, 0, sizeof st);
    st.broker = dv_str("b-0190f3a2");
    st.store = dv_str("sqlite");
    st.uptime_ms = 86400123;
    st.queues = qs;
    st.nqueues = 2;
    st.workers = ws;
    st.nworkers = 2;
    st.counters =
        (dv_status_counters_t){ 1000000, 999000, 990000, 12000, 11000, 1000,
                                5,       3,      1000,   250,   90000, 0,
                                0,       0,      0,      0 };

    /* by hand, as s_status_body() in broker/broker_core.c */
    msgpack_sbuffer want, got;
    msgpack_sbuffer_init(&want);
    msgpack_sbuffer_init(&got);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &want, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    s_hp_kv_str(&pk, "broker", "b-0190f3a2");
    s_hp_kv_str(&pk, "store", "sqlite");
    s_hp_kv_int(&pk, "uptime_ms", 86400123);
    s_hp_str(&pk, "queues");
    msgpack_pack_array(&pk, 2);
    for (int i = 0; i < 2; i++) {
        msgpack_pack_map(&pk, 7);
        s_hp_kv_str(&pk, "name", i ? "email" : "llm");
        s_hp_str(&pk, "rate");
        msgpack_pack_double(&pk, qs[i].rate);
        s_hp_kv_int(&pk, "max_running", qs[i].max_running);
        s_hp_kv_int(&pk, "queued", qs[i].queued);
        s_hp_kv_int(&pk, "scheduled", qs[i].scheduled);
        s_hp_kv_int(&pk, "running", qs[i].running);
        s_hp_kv_bool(&pk, "paused", qs[i].paused);
    }
    s_hp_str(&pk, "workers");
    msgpack_pack_array(&pk, 2);
    for (int i = 0; i < 2; i++) {
        const dv_status_worker_t *w = &ws[i];
        msgpack_pack_map(&pk, 10);
        s_hp_kv_str(&pk, "name", i ? "w2" : "host-a:4242");
        s_hp_kv_bool(&pk, "draining", w->draining);
        s_hp_kv_str(&pk, "host", i ? NULL : "host-a");
        s_hp_kv_int(&pk, "pid", w->pid);
        s_hp_kv_int(&pk, "concurrency", w->concurrency);
        s_hp_kv_int(&pk, "credit", w->credit);
        s_hp_kv_int(&pk, "running", w->running);
        s_hp_kv_int(&pk, "processed", w->processed);
        s_hp_kv_int(&pk, "failed", w->failed);
        s_hp_str(&pk, "queues");
        msgpack_pack_array(&pk, w->nqueues);
        for (uint32_t k = 0; k < w->nqueues; k++)
            s_hp_str(&pk, k ? "email" : "llm");
    }
    const dv_status_counters_t *c = &st.counters;
    s_hp_str(&pk, "counters");
    msgpack_pack_map(&pk, 11);
    s_hp_kv_int(&pk, "submitted", c->submitted);
    s_hp_kv_int(&pk, "dispatched", c->dispatched);
    s_hp_kv_int(&pk, "succeeded", c->succeeded);
    s_hp_kv_int(&pk, "failed", c->failed);
    s_hp_kv_int(&pk, "retried", c->retried);
    s_hp_kv_int(&pk, "dead", c->dead);
    s_hp_kv_int(&pk, "cancelled", c->cancelled);
    s_hp_kv_int(&pk, "lost", c->lost);
    s_hp_kv_int(&pk, "live_jobs", c->live_jobs);
    s_hp_kv_int(&pk, "dispatch_p50_us", c->dispatch_p50_us);
    s_hp_kv_int(&pk, "dispatch_p99_us", c->dispatch_p99_us);

    assert_int_equal(dv_status_encode(&st, &got), DV_OK);
    s_same_bytes(&want, &got, "status");
    s_write_corpus("body_status", &got);

    dv_status_t back;
    char why[256], diff[256];
    assert_int_equal(
        dv_status_decode(got.data, got.size, &back, why, sizeof why), DV_OK);
    if (!dv_status_equal(&st, &back, diff, sizeof diff))
        fail_msg("status round trip changed %s", diff);
    assert_null(back.workers[1].host.ptr); /* nil: absent */
    assert_int_equal(back.workers[0].nqueues, 2);
    assert_non_null(back.priv_);
    dv_status_release(&back);
    assert_null(back.priv_);
    dv_status_release(&back);

    /* an empty broker: no queues, no workers */
    dv_status_t empty;
    memset(&empty, 0, sizeof empty);
    msgpack_sbuffer_destroy(&got);
    msgpack_sbuffer_init(&got);
    assert_int_equal(dv_status_encode(&empty, &got), DV_OK);
    s_write_corpus("body_status_empty", &got);
    assert_int_equal(
        dv_status_decode(got.data, got.size, &back, why, sizeof why), DV_OK);
    assert_true(dv_status_equal(&empty, &back, NULL, 0));
    assert_null(back.priv_);
    assert_null(back.role.ptr); /* an active broker says no role */
    dv_status_release(&back);

    /* a standby: its role and why */
    dv_status_t standby;
    memset(&standby, 0, sizeof standby);
    standby.broker = dv_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    standby.role = dv_str("standby");
    standby.lock = dv_str("waiting for the store's lock");
    msgpack_sbuffer_destroy(&got);
    msgpack_sbuffer_init(&got);
    assert_int_equal(dv_status_encode(&standby, &got), DV_OK);
    assert_int_equal(
        dv_status_decode(got.data, got.size, &back, why, sizeof why), DV_OK);
    assert_true(dv_status_equal(&standby, &back, NULL, 0));
    assert_true(dv_str_eq(back.role, "standby"));
    assert_true(dv_str_eq(back.lock, "waiting for the store's lock"));
    dv_status_release(&back);
    msgpack_sbuffer_destroy(&want);
    msgpack_sbuffer_destroy(&got);
}

/* The oldest queued job's age per queue and the last event's sequence
 * number: round trip, left out while 0, and a body without them (an
 * older broker's) reads as 0. */
static void
t_status_oldest_seq(void **state)
{
    (void)state;
    dv_status_queue_t qs[2] = {
        { dv_str("llm"), 0, 0, 3, 0, 0, false, 90500, 0 },
        { dv_str("email"), 0, 0, 0, 0, 0, false, 0, 0 },
    };
    dv_status_t st;
    memset(&st, 0, sizeof st);
    st.broker = dv_str("b-1");
    st.queues = qs;
    st.nqueues = 2;
    st.seq = 4294967301u; /* past 32 bits */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_status_encode(&st, &sb), DV_OK);
    dv_status_t back;
    char why[256], diff[256];
    assert_int_equal(dv_status_decode(sb.data, sb.size, &back, why, sizeof why),
                     DV_OK);
    if (!dv_status_equal(&st, &back, diff, sizeof diff))
        fail_msg("status round trip changed %s", diff);
    assert_int_equal(back.queues[0].oldest_ms, 90500);
    assert_int_equal(back.queues[1].oldest_ms, 0);
    assert_true(back.seq == 4294967301u);
    dv_status_release(&back);

    /* left out while 0: the keys are not in the body */
    st.seq = 0;
    qs[0].oldest_ms = 0;
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_status_encode(&st, &sb), DV_OK);
    assert_null(memmem(sb.data, sb.size, "oldest_ms", 9));
    assert_null(memmem(sb.data, sb.size, "\xa3seq", 4));
    assert_int_equal(dv_status_decode(sb.data, sb.size, &back, why, sizeof why),
                     DV_OK);
    assert_true(dv_status_equal(&st, &back, NULL, 0));
    assert_int_equal(back.queues[0].oldest_ms, 0);
    assert_true(back.seq == 0);
    dv_status_release(&back);

    /* a negative age is refused */
    qs[0].oldest_ms = -1;
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_status_encode(&st, &sb), DV_OK);
    assert_int_not_equal(
        dv_status_decode(sb.data, sb.size, &back, why, sizeof why), DV_OK);
    dv_status_release(&back);
    msgpack_sbuffer_destroy(&sb);
}

/* The heartbeat body as worker/worker_main.c (s_heartbeat) and
 * handler_http_pack_metrics() pack it. */
static void
s_hand_metrics(msgpack_sbuffer *sb, const dv_hbmetrics_t *m)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6 + (m->has_http ? 2 : 0));
    if (m->has_http) {
        msgpack_packer *p = &pk;
        msgpack_pack_str_with_body(p, "http", 4);
        msgpack_pack_map(p, 4);
        msgpack_pack_str_with_body(p, "in_flight", 9);
        msgpack_pack_int(p, (int)m->http.in_flight);
        msgpack_pack_str_with_body(p, "waiting", 7);
        msgpack_pack_uint64(p, (uint64_t)m->http.waiting);
        msgpack_pack_str_with_body(p, "concurrency", 11);
        msgpack_pack_int(p, (int)m->http.concurrency);
        msgpack_pack_str_with_body(p, "breakers", 8);
        msgpack_pack_array(p, m->http.nbreakers);
        for (uint32_t i = 0; i < m->http.nbreakers; i++) {
            const dv_hb_breaker_t *b = &m->http.breakers[i];
            msgpack_pack_map(p, 4);
            msgpack_pack_str_with_body(p, "endpoint", 8);
            msgpack_pack_str_with_body(p, b->endpoint.ptr, b->endpoint.len);
            msgpack_pack_str_with_body(p, "state", 5);
            msgpack_pack_str_with_body(p, b->state.ptr, b->state.len);
            msgpack_pack_str_with_body(p, "failures", 8);
            msgpack_pack_int(p, (int)b->failures);
            msgpack_pack_str_with_body(p, "opened", 6);
            msgpack_pack_int64(p, b->opened);
        }
        msgpack_pack_str_with_body(p, "keys", 4);
        msgpack_pack_array(p, m->nkeys);
        for (uint32_t i = 0; i < m->nkeys; i++) {
            const dv_hb_key_t *k = &m->keys[i];
            msgpack_pack_map(p, 11);
            msgpack_pack_str_with_body(p, "type", 4);
            msgpack_pack_str_with_body(p, k->type.ptr, k->type.len);
            msgpack_pack_str_with_body(p, "id", 2);
            msgpack_pack_str_with_body(p, k->id.ptr, k->id.len);
            msgpack_pack_str_with_body(p, "hash", 4);
            msgpack_pack_str_with_body(p, k->hash.ptr, k->hash.len);
            msgpack_pack_str_with_body(p, "state", 5);
            msgpack_pack_str_with_body(p, k->state.ptr, k->state.len);
            msgpack_pack_str_with_body(p, "requests", 8);
            msgpack_pack_int64(p, k->requests);
            msgpack_pack_str_with_body(p, "ok", 2);
            msgpack_pack_int64(p, k->ok);
            msgpack_pack_str_with_body(p, "rate_limited", 12);
            msgpack_pack_int64(p, k->rate_limited);
            msgpack_pack_str_with_body(p, "errors", 6);
            msgpack_pack_int64(p, k->errors);
            msgpack_pack_str_with_body(p, "cooldown_until_ms", 17);
            msgpack_pack_int64(p, k->cooldown_until_ms);
            msgpack_pack_str_with_body(p, "tokens", 6);
            msgpack_pack_int(p, (int)k->tokens);
            msgpack_pack_str_with_body(p, "disabled_status", 15);
            msgpack_pack_int(p, (int)k->disabled_status);
        }
    }
    msgpack_pack_str_with_body(&pk, "per_child", 9);
    msgpack_pack_array(&pk, m->nper_child);
    for (uint32_t i = 0; i < m->nper_child; i++) {
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "pid", 3);
        msgpack_pack_int64(&pk, m->per_child[i].pid);
        msgpack_pack_str_with_body(&pk, "rss_kb", 6);
        msgpack_pack_int64(&pk, m->per_child[i].rss_kb);
        msgpack_pack_str_with_body(&pk, "jobs", 4);
        msgpack_pack_int64(&pk, m->per_child[i].jobs);
    }
    msgpack_pack_str_with_body(&pk, "held", 4);
    msgpack_pack_uint64(&pk, (uint64_t)m->held);
    msgpack_pack_str_with_body(&pk, "children", 8);
    msgpack_pack_int(&pk, (int)m->children);
    msgpack_pack_str_with_body(&pk, "capacity", 8);
    msgpack_pack_int(&pk, (int)m->capacity);
    msgpack_pack_str_with_body(&pk, "outbox", 6);
    msgpack_pack_uint64(&pk, (uint64_t)m->outbox);
    msgpack_pack_str_with_body(&pk, "load1", 5);
    msgpack_pack_double(&pk, m->load1);
}

static void
s_sample_metrics(dv_hbmetrics_t *m, dv_hb_breaker_t *br, dv_hb_key_t *keys,
                 dv_hb_child_t *ch)
{
    memset(m, 0, sizeof *m);
    br[0] =
        (dv_hb_breaker_t){ dv_str("127.0.0.1:8080"), dv_str("closed"), 0, 2 };
    br[1] = (dv_hb_breaker_t){ dv_str("api.example.com:443"),
                               dv_str("half_open"), 5, 300 };
    keys[0] = (dv_hb_key_t){ dv_str("title"),
                             dv_str("key-1"),
                             dv_str("ab12cd34"),
                             dv_str("ok"),
                             1200,
                             1150,
                             40,
                             10,
                             0,
                             17,
                             0 };
    keys[1] = (dv_hb_key_t){ dv_str("title"),
                             dv_str("key-2"),
                             dv_str("ff00ee11"),
                             dv_str("disabled"),
                             3,
                             0,
                             0,
                             3,
                             1795369260000,
                             -1,
                             401 };
    ch[0] = (dv_hb_child_t){ 5001, 24576, 1000 };
    ch[1] = (dv_hb_child_t){ 5002, -1, 0 };
    m->has_http = true;
    m->http = (dv_hb_http_t){ 37, 120, 100, br, 2 };
    m->keys = keys;
    m->nkeys = 2;
    m->per_child = ch;
    m->nper_child = 2;
    m->held = 157;
    m->children = 2;
    m->capacity = 102;
    m->outbox = 3;
    m->load1 = 1.25;
}

static void
t_hbmetrics_body(void **state)
{
    (void)state;
    dv_hb_breaker_t br[2];
    dv_hb_key_t keys[2];
    dv_hb_child_t ch[2];
    dv_hbmetrics_t m, back;
    s_sample_metrics(&m, br, keys, ch);
    char why[256], diff[256];
    for (int http = 1; http >= 0; http--) {
        if (!http) {
            /* a worker without http handlers sends neither key */
            memset(&m.http, 0, sizeof m.http);
            m.has_http = false;
            m.keys = NULL;
            m.nkeys = 0;
        }
        msgpack_sbuffer want, got;
        msgpack_sbuffer_init(&want);
        msgpack_sbuffer_init(&got);
        s_hand_metrics(&want, &m);
        assert_int_equal(dv_hbmetrics_encode(&m, &got), DV_OK);
        s_same_bytes(&want, &got, http ? "metrics with http" : "metrics");
        s_write_corpus(http ? "body_metrics_http" : "body_metrics", &got);
        assert_int_equal(
            dv_hbmetrics_decode(got.data, got.size, &back, why, sizeof why),
            DV_OK);
        if (!dv_hbmetrics_equal(&m, &back, diff, sizeof diff))
            fail_msg("metrics round trip changed %s", diff);
        assert_int_equal(back.has_http, http);
        dv_hbmetrics_release(&back);
        msgpack_sbuffer_destroy(&want);
        msgpack_sbuffer_destroy(&got);
    }
}

/* The worker event body as s_worker_event() in broker/broker_core.c packs
 * it; metrics (the heartbeat's body) embedded as they came. */
static void
s_hand_workerinfo(msgpack_sbuffer *sb, const dv_workerinfo_t *w,
                  const char *host)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    bool with_metrics = w->metrics.ptr && w->metrics.len;
    msgpack_pack_map(&pk, 10 + (with_metrics ? 1 : 0));
    s_hp_kv_str(&pk, "host", host);
    s_hp_kv_int(&pk, "pid", w->pid);
    s_hp_kv_int(&pk, "concurrency", w->concurrency);
    s_hp_kv_int(&pk, "credit", w->credit);
    s_hp_kv_int(&pk, "running", w->running);
    s_hp_kv_int(&pk, "busy", w->busy);
    s_hp_kv_int(&pk, "idle", w->idle);
    s_hp_kv_int(&pk, "processed", w->processed);
    s_hp_kv_int(&pk, "failed", w->failed);
    s_hp_str(&pk, "queues");
    msgpack_pack_array(&pk, w->nqueues);
    for (uint32_t i = 0; i < w->nqueues; i++) {
        char q[64];
        s_hp_str(&pk, dv_str_copy(w->queues[i], q, sizeof q));
    }
    if (with_metrics) {
        s_hp_str(&pk, "metrics");
        pk.callback(pk.data, w->metrics.ptr, w->metrics.len);
    }
}

static void
t_workerinfo_body(void **state)
{
    (void)state;
    dv_hb_breaker_t br[2];
    dv_hb_key_t keys[2];
    dv_hb_child_t ch[2];
    dv_hbmetrics_t m;
    s_sample_metrics(&m, br, keys, ch);
    msgpack_sbuffer msb;
    msgpack_sbuffer_init(&msb);
    assert_int_equal(dv_hbmetrics_encode(&m, &msb), DV_OK);

    dv_str_t queues[2] = { dv_str("llm"), dv_str("email") };
    dv_workerinfo_t w;
    memset(&w, 0, sizeof w);
    w.host = dv_str("host-a");
    w.pid = 4242;
    w.concurrency = 16;
    w.credit = 3;
    w.running = 13;
    w.busy = 12;
    w.idle = 4;
    w.processed = 123456789012;
    w.failed = 17;
    w.queues = queues;
    w.nqueues = 2;
    char why[256], diff[256];
    for (int step = 0; step < 3; step++) {
        /* joined (no metrics), heartbeat (metrics), no host */
        w.metrics = step == 1 ? dv_strn(msb.data, msb.size) : dv_strn(NULL, 0);
        if (step == 2)
            w.host = dv_strn(NULL, 0);
        msgpack_sbuffer want, got;
        msgpack_sbuffer_init(&want);
        msgpack_sbuffer_init(&got);
        s_hand_workerinfo(&want, &w, step == 2 ? NULL : "host-a");
        assert_int_equal(dv_workerinfo_encode(&w, &got), DV_OK);
        s_same_bytes(&want, &got, "workerinfo");
        s_write_corpus(step == 1 ? "body_workerinfo_metrics"
                       : step    ? "body_workerinfo_nohost"
                                 : "body_workerinfo",
                       &got);
        dv_workerinfo_t back;
        assert_int_equal(
            dv_workerinfo_decode(got.data, got.size, &back, why, sizeof why),
            DV_OK);
        if (!dv_workerinfo_equal(&w, &back, diff, sizeof diff))
            fail_msg("workerinfo round trip changed %s", diff);
        if (step == 1) {
            /* metrics: a view of the embedded map, typed on demand */
            assert_true(s_in_frame(back.metrics, &got));
            dv_hbmetrics_t mb;
            assert_int_equal(dv_hbmetrics_decode(back.metrics.ptr,
                                                 back.metrics.len, &mb, why,
                                                 sizeof why),
                             DV_OK);
            assert_true(dv_hbmetrics_equal(&m, &mb, diff, sizeof diff));
            dv_hbmetrics_release(&mb);
        } else {
            assert_null(back.metrics.ptr);
        }
        dv_workerinfo_release(&back);
        msgpack_sbuffer_destroy(&want);
        msgpack_sbuffer_destroy(&got);
    }
    msgpack_sbuffer_destroy(&msb);
}

/* Decodes the JSON text as a body with fn; checks the code and reason. */
typedef int(s_body_dec_fn)(const void *data, size_t size, void *out, char *why,
                           size_t why_size);

static int
s_dec_status(const void *d, size_t n, void *out, char *why, size_t ws)
{
    int rc = dv_status_decode(d, n, out, why, ws);
    dv_status_release(out);
    return rc;
}

static int
s_dec_metrics(const void *d, size_t n, void *out, char *why, size_t ws)
{
    int rc = dv_hbmetrics_decode(d, n, out, why, ws);
    dv_hbmetrics_release(out);
    return rc;
}

static int
s_dec_winfo(const void *d, size_t n, void *out, char *why, size_t ws)
{
    int rc = dv_workerinfo_decode(d, n, out, why, ws);
    dv_workerinfo_release(out);
    return rc;
}

static void
s_expect_body_(int line, s_body_dec_fn *fn, int code, const char *want,
               const char *json)
{
    msgpack_sbuffer sb;
    s_framef(&sb, "%s", json);
    union {
        dv_status_t s;
        dv_hbmetrics_t m;
        dv_workerinfo_t w;
        dv_finished_args_t fa;
        dv_finished_t f;
    } out;
    char why[256];
    int rc = fn(sb.data, sb.size, &out, why, sizeof why);
    if (rc != code)
        fail_msg("line %d: got %d (%s), want %d", line, rc, rc ? why : "ok",
                 code);
    if (want && !strstr(why, want))
        fail_msg("line %d: reason \"%s\" lacks \"%s\"", line, why, want);
    msgpack_sbuffer_destroy(&sb);
}

#define S_EXPECT_BODY(fn, code, want, json)                                    \
    s_expect_body_(__LINE__, (fn), (code), (want), (json))

static int
s_dec_fargs(const void *d, size_t n, void *out, char *why, size_t ws)
{
    int rc = dv_finished_args_decode(d, n, out, why, ws);
    dv_finished_args_release(out);
    return rc;
}

static int
s_dec_finished(const void *d, size_t n, void *out, char *why, size_t ws)
{
    int rc = dv_finished_decode(d, n, out, why, ws);
    dv_finished_release(out);
    return rc;
}

static void
t_finished_bodies(void **state)
{
    (void)state;
    dv_finished_args_t a = { 0 }, a2;
    a.since_ms = 1795369260000;
    a.until_ms = 1795369290000;
    a.after = dv_str(ID1);
    a.limit = 250;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_finished_args_encode(&a, &sb), DV_OK);
    char why[256], diff[256];
    assert_int_equal(
        dv_finished_args_decode(sb.data, sb.size, &a2, why, sizeof why), DV_OK);
    if (!dv_finished_args_equal(&a, &a2, diff, sizeof diff))
        fail_msg("finished args: %s", diff);
    dv_finished_args_release(&a2);
    msgpack_sbuffer_destroy(&sb);
    /* absent limit: the most */
    S_EXPECT_BODY(s_dec_fargs, DV_OK, NULL, "{\"since\": 1, \"until\": 1}");
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "\x82\xa5since\x01\xa5until\x02", 15);
    assert_int_equal(
        dv_finished_args_decode(sb.data, sb.size, &a2, why, sizeof why), DV_OK);
    assert_int_equal(a2.limit, DV_FINISHED_LIMIT_MAX);
    dv_finished_args_release(&a2);
    msgpack_sbuffer_destroy(&sb);

    dv_finished_job_t jobs[2];
    memset(jobs, 0, sizeof jobs);
    jobs[0].id = dv_str(ID1);
    jobs[0].queue = dv_str("llm");
    jobs[0].type = dv_str("http");
    jobs[0].batch = dv_str("b7");
    jobs[0].state = DV_STATE_SUCCEEDED;
    jobs[0].attempt = 2;
    jobs[0].worker = dv_str("host-a:1");
    jobs[0].finished_ms = 1795369260000;
    jobs[0].run_ms = 2400;
    jobs[1].id = dv_str(ID1);
    jobs[1].queue = dv_str("llm");
    jobs[1].type = dv_str("http");
    jobs[1].state = DV_STATE_DEAD;
    jobs[1].finished_ms = 1795369260001;
    jobs[1].category = DV_CAT_TIMEOUT;
    jobs[1].message = dv_str("took too long");
    dv_finished_t f = { .jobs = jobs, .njobs = 2, .more = true }, f2;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_finished_encode(&f, &sb), DV_OK);
    assert_int_equal(dv_finished_decode(sb.data, sb.size, &f2, why, sizeof why),
                     DV_OK);
    if (!dv_finished_equal(&f, &f2, diff, sizeof diff))
        fail_msg("finished: %s", diff);
    assert_int_equal(f2.jobs[1].category, DV_CAT_TIMEOUT);
    dv_finished_release(&f2);
    msgpack_sbuffer_destroy(&sb);
}

static void
t_reject_bodies(void **state)
{
    (void)state;
    S_EXPECT_BODY(s_dec_status, DV_OK, NULL, "{}");
    S_EXPECT_BODY(s_dec_status, DV_EPROTO, "status: must be a map", "[]");
    S_EXPECT_BODY(s_dec_status, DV_EPROTO,
                  "status: workers[1].pid: must be 0..2147483647",
                  "{\"workers\": [{\"name\": \"a\"}, {\"pid\": -4}]}");
    S_EXPECT_BODY(s_dec_status, DV_EPROTO,
                  "status: queues[0].paused: must be a boolean",
                  "{\"queues\": [{\"name\": \"q\", \"paused\": 1}]}");
    S_EXPECT_BODY(s_dec_status, DV_EPROTO,
                  "status: workers[0].queues[1]: must be a string",
                  "{\"workers\": [{\"queues\": [\"q\", 7]}]}");
    S_EXPECT_BODY(s_dec_status, DV_EPROTO,
                  "status: counters.lost: must be >= 0",
                  "{\"counters\": {\"lost\": -1}}");
    S_EXPECT_BODY(s_dec_status, DV_EPROTO,
                  "status: queues[0].rate: must be "
                  "a number",
                  "{\"queues\": [{\"rate\": \"fast\"}]}");
    S_EXPECT_BODY(s_dec_status, DV_OK, NULL,
                  "{\"broker\": null, \"store\": null, \"future\": [1]}");
    S_EXPECT_BODY(s_dec_status, DV_EPROTO,
                  "status: broker: must not be "
                  "empty",
                  "{\"broker\": \"\"}");
    S_EXPECT_BODY(s_dec_metrics, DV_EPROTO,
                  "metrics: http.breakers[0].failures: must be an integer",
                  "{\"http\": {\"breakers\": [{\"failures\": \"x\"}]}}");
    S_EXPECT_BODY(s_dec_metrics, DV_EPROTO,
                  "metrics: per_child: must be an array",
                  "{\"per_child\": {}}");
    S_EXPECT_BODY(s_dec_metrics, DV_EPROTO,
                  "metrics: load1: must be a "
                  "number",
                  "{\"load1\": null}");
    S_EXPECT_BODY(s_dec_winfo, DV_EPROTO, "workerinfo: busy: must be >= 0",
                  "{\"busy\": -1}");
    S_EXPECT_BODY(s_dec_winfo, DV_OK, NULL,
                  "{\"host\": null, \"metrics\": {\"anything\": [1, 2]}}");

    S_EXPECT_BODY(s_dec_fargs, DV_EPROTO, "finished_args: missing key",
                  "{\"since\": 1}");
    S_EXPECT_BODY(s_dec_fargs, DV_EPROTO,
                  "finished_args: until: must be >= since",
                  "{\"since\": 5, \"until\": 4}");
    S_EXPECT_BODY(s_dec_fargs, DV_EPROTO, "finished_args: limit: must be",
                  "{\"since\": 1, \"until\": 2, \"limit\": 1001}");
    S_EXPECT_BODY(s_dec_fargs, DV_EPROTO, "finished_args: limit: must be",
                  "{\"since\": 1, \"until\": 2, \"limit\": 0}");
    S_EXPECT_BODY(s_dec_fargs, DV_EPROTO, "finished_args: after: ",
                  "{\"since\": 1, \"until\": 2, \"after\": \"x\"}");
    S_EXPECT_BODY(s_dec_fargs, DV_EPROTO, "finished_args: since: must be",
                  "{\"since\": -1, \"until\": 2}");
    S_EXPECT_BODY(s_dec_finished, DV_OK, NULL, "{\"jobs\": []}");
    S_EXPECT_BODY(s_dec_finished, DV_EPROTO, "finished: missing key \"jobs\"",
                  "{\"more\": true}");
    S_EXPECT_BODY(s_dec_finished, DV_EPROTO,
                  "finished: jobs[0].state: must be succeeded, dead or "
                  "cancelled",
                  "{\"jobs\": [{\"id\": \"" ID1 "\", \"queue\": \"q\", "
                  "\"type\": \"t\", \"state\": \"running\", "
                  "\"finished\": 1}]}");
    S_EXPECT_BODY(s_dec_finished, DV_EPROTO,
                  "finished: jobs[0]: missing key \"finished\"",
                  "{\"jobs\": [{\"id\": \"" ID1 "\", \"queue\": \"q\", "
                  "\"type\": \"t\", \"state\": \"dead\"}]}");
    S_EXPECT_BODY(s_dec_finished, DV_EPROTO,
                  "finished: jobs[0].category: unknown category",
                  "{\"jobs\": [{\"id\": \"" ID1 "\", \"queue\": \"q\", "
                  "\"type\": \"t\", \"state\": \"dead\", \"finished\": "
                  "1, \"category\": \"gremlins\"}]}");
    S_EXPECT_BODY(s_dec_finished, DV_EPROTO, "finished: jobs[0].run: must be",
                  "{\"jobs\": [{\"id\": \"" ID1 "\", \"queue\": \"q\", "
                  "\"type\": \"t\", \"state\": \"dead\", \"finished\": "
                  "1, \"run\": -3}]}");

    /* not one value, or a lie about a count: refused before allocating */
    const uint8_t claim[] = { 0x81, 0xa6, 'q',  'u',  'e',  'u',  'e',
                              's',  0xdd, 0xff, 0xff, 0xff, 0xff, 0x80 };
    dv_status_t st;
    char why[256];
    assert_int_equal(
        dv_status_decode(claim, sizeof claim, &st, why, sizeof why), DV_ETRUNC);
    assert_null(st.priv_);
    assert_int_equal(dv_status_decode("\x80\xc0", 2, &st, why, sizeof why),
                     DV_ETRUNC);
    assert_int_equal(dv_status_decode(NULL, 0, &st, NULL, 0), DV_ETRUNC);
    const char twice[] = "\x82\xa9uptime_ms\x01\xa9uptime_ms\x02";
    assert_int_equal(
        dv_status_decode(twice, sizeof twice - 1, &st, why, sizeof why),
        DV_EPROTO);
    assert_string_equal(why, "status: uptime_ms: key given twice");
    size_t big = DV_PAYLOAD_MAX + 1;
    char *huge = calloc(1, big);
    assert_int_equal(dv_workerinfo_decode(huge, big, (dv_workerinfo_t *)&st,
                                          why, sizeof why),
                     DV_ETOOBIG);
    free(huge);
    /* nesting past the value limit */
    char deep[DV_VALUE_DEPTH_MAX + 2];
    memset(deep, 0x91, sizeof deep);
    deep[sizeof deep - 1] = 0x01;
    assert_int_equal(dv_hbmetrics_decode(deep, sizeof deep,
                                         (dv_hbmetrics_t *)&st, why,
                                         sizeof why),
                     DV_ETOOBIG);
}

/* ---- dv_mp_validate ---------------------------------------------------- */

static int
s_validate_hex(const char *hex, int depth)
{
    size_t n = strlen(hex) / 2;
    uint8_t *b = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(s_hexval(hex[2 * i]) << 4 | s_hexval(hex[2 * i + 1]));
    int rc = dv_mp_validate(b, n, depth);
    free(b);
    return rc;
}

static void
t_validate_formats(void **state)
{
    (void)state;
    /* one of each format, then every strict prefix of it */
    const char *ok[] = {
        "00",
        "7f",
        "e0",
        "ff",
        "c0",
        "c2",
        "c3",
        "cc01",
        "cd0102",
        "ce01020304",
        "cf0102030405060708",
        "d001",
        "d10102",
        "d201020304",
        "d30102030405060708",
        "ca3fc00000",
        "cb3ff8000000000000",
        "a0",
        "a3616263",
        "d903616263",
        "da0003616263",
        "db00000003616263",
        "c40101",
        "c5000101",
        "c600000001ff",
        "d40101",
        "d5010102",
        "d60101020304",
        "d7010102030405060708",
        "d80101020304050607080910111213141516",
        "c7020501ff",
        "c800020501ff",
        "c9000000020501ff",
        "c70005", /* ext 8 of length 0 */
        "90",
        "9101",
        "dc0000",
        "dc000101",
        "dd00000000",
        "dd0000000101",
        "80",
        "81a16101",
        "de0000",
        "de0001a16101",
        "df00000000",
        "df00000001a16101",
        "92c0c0",
        "82a161c0a162c0",
        "8291c090c0c0",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (s_validate_hex(ok[i], 4) != DV_OK)
            fail_msg("refused %s", ok[i]);
        char cut[64];
        size_t len = strlen(ok[i]);
        for (size_t n = 0; n < len; n += 2) {
            memcpy(cut, ok[i], n);
            cut[n] = '\0';
            if (s_validate_hex(cut, 4) != DV_ETRUNC)
                fail_msg("accepted prefix \"%s\" of %s", cut, ok[i]);
        }
        /* and with a trailing byte */
        char more[64];
        snprintf(more, sizeof more, "%sc0", ok[i]);
        if (s_validate_hex(more, 4) != DV_ETRUNC)
            fail_msg("accepted %s with a trailing byte", ok[i]);
    }
    assert_int_equal(s_validate_hex("c1", 4), DV_ETRUNC);
    assert_int_equal(s_validate_hex("91c1", 4), DV_ETRUNC);
    assert_int_equal(dv_mp_validate(NULL, 0, 4), DV_ETRUNC);
    assert_int_equal(dv_mp_validate(NULL, 5, 4), DV_ETRUNC);
}

static void
t_validate_counts(void **state)
{
    (void)state;
    /* claims that cannot fit the bytes left */
    assert_int_equal(s_validate_hex("ddffffffff0102030405", 4), DV_ETRUNC);
    assert_int_equal(s_validate_hex("dfffffffff0102030405", 4), DV_ETRUNC);
    assert_int_equal(s_validate_hex("dcffff01", 4), DV_ETRUNC);
    assert_int_equal(s_validate_hex("deffff0101", 4), DV_ETRUNC);
    /* a map of 2 needs 4 values */
    assert_int_equal(s_validate_hex("82010203", 4), DV_ETRUNC);
    assert_int_equal(s_validate_hex("8201020304", 4), DV_OK);
    /* fixarray of 15 with 15 bytes */
    assert_int_equal(s_validate_hex("9f000102030405060708090a0b0c0d0e", 4),
                     DV_OK);
    assert_int_equal(s_validate_hex("9f000102030405060708090a0b0c0d", 4),
                     DV_ETRUNC);
    assert_int_equal(s_validate_hex("dbffffffff61", 4), DV_ETRUNC);
    assert_int_equal(s_validate_hex("c6ffffffff61", 4), DV_ETRUNC);
    assert_int_equal(s_validate_hex("c9ffffffff0561", 4), DV_ETRUNC);
}

static void
t_validate_depth(void **state)
{
    (void)state;
    assert_int_equal(s_validate_hex("01", 0), DV_OK);
    assert_int_equal(s_validate_hex("90", 0), DV_ETOOBIG);
    assert_int_equal(s_validate_hex("80", 0), DV_ETOOBIG);
    assert_int_equal(s_validate_hex("90", 1), DV_OK);
    assert_int_equal(s_validate_hex("9190", 1), DV_ETOOBIG);
    assert_int_equal(s_validate_hex("9190", 2), DV_OK);
    assert_int_equal(s_validate_hex("81a16181a16101", 2), DV_OK);
    assert_int_equal(s_validate_hex("81a16181a16101", 1), DV_ETOOBIG);
    /* siblings do not add depth */
    assert_int_equal(s_validate_hex("939101910291039104", 2), DV_ETRUNC);
    assert_int_equal(s_validate_hex("94910191029103910401", 2), DV_ETRUNC);
    assert_int_equal(s_validate_hex("93910191029103", 2), DV_OK);
    assert_int_equal(s_validate_hex("01", -3), DV_OK);
    assert_int_equal(s_validate_hex("90", -3), DV_ETOOBIG);

    /* huge asks are clamped, never overflow a fixed stack */
    size_t n = 1000;
    uint8_t *b = malloc(n + 1);
    memset(b, 0x91, n);
    b[n] = 0x01;
    assert_int_equal(dv_mp_validate(b, n + 1, 1 << 30), DV_ETOOBIG);
    assert_int_equal(dv_mp_validate(b, n + 1, 999), DV_ETOOBIG);
    assert_int_equal(dv_mp_validate(b + n - 200, 201, 1 << 30), DV_OK);
    assert_int_equal(dv_mp_validate(b + n - 64, 65, 64), DV_OK);
    assert_int_equal(dv_mp_validate(b + n - 65, 66, 64), DV_ETOOBIG);
    free(b);
}

/* ---- names and small helpers ------------------------------------------- */

static void
t_names(void **state)
{
    (void)state;
    const char *states[] = { "queued",    "scheduled", "running",
                             "succeeded", "failed",    "dead",
                             "cancelled", "unknown",   "waiting" };
    for (int s = DV_STATE_QUEUED; s < DV_STATE_COUNT_; s++) {
        const char *name = dv_state_name((dv_state_t)s);
        assert_string_equal(name, states[s - 1]);
        assert_int_equal(dv_state_parse(name, strlen(name)), s);
    }
    assert_int_equal(dv_state_parse("queue", 5), DV_STATE_NONE);
    assert_int_equal(dv_state_parse("queuedx", 7), DV_STATE_NONE);
    assert_int_equal(dv_state_parse("queuedx", 6), DV_STATE_QUEUED);
    assert_int_equal(dv_state_parse(NULL, 0), DV_STATE_NONE);
    assert_int_equal(dv_state_parse("none", 4), DV_STATE_NONE);
    assert_string_equal(dv_state_name(DV_STATE_NONE), "none");
    assert_string_equal(dv_state_name((dv_state_t)99), "none");
    assert_true(dv_state_terminal(DV_STATE_DEAD));
    assert_false(dv_state_terminal(DV_STATE_FAILED));

    const char *cats[] = {
        "timeout",  "rate_limited",       "auth",     "invalid_input",
        "upstream", "resource_exhausted", "crashed",  "lost",
        "handler",  "unknown_type",       "cancelled"
    };
    for (int c = DV_CAT_TIMEOUT; c < DV_CAT_COUNT_; c++) {
        const char *name = dv_category_name((dv_category_t)c);
        assert_string_equal(name, cats[c - 1]);
        assert_int_equal(dv_category_parse(name, strlen(name)), c);
    }
    assert_int_equal(dv_category_parse("Timeout", 7), DV_CAT_NONE);
    assert_string_equal(dv_category_name((dv_category_t)-1), "none");

    const char *types[] = { "submit", "submitted", "wait",  "result",  "ctrl",
                            "reply",  "error",     "hello", "welcome", "jobs",
                            "update", "heartbeat", "bye",   "kill",    "event",
                            "drain",  "keys",      "events" };
    assert_int_equal(sizeof types / sizeof types[0], DV_MSG_COUNT_ - 1);
    for (int t = DV_MSG_SUBMIT; t < DV_MSG_COUNT_; t++)
        assert_string_equal(dv_msg_type_name((dv_msg_type_t)t), types[t - 1]);
    /* drain carries nothing but v and t. */
    dv_msg_t dm = { .type = DV_MSG_DRAIN }, back;
    msgpack_sbuffer dsb;
    msgpack_sbuffer_init(&dsb);
    assert_int_equal(dv_msg_encode(&dm, &dsb), DV_OK);
    assert_int_equal(dv_msg_decode(dsb.data, dsb.size, &back, NULL, 0), DV_OK);
    assert_int_equal(back.type, DV_MSG_DRAIN);
    dv_msg_release(&back);
    msgpack_sbuffer_destroy(&dsb);

    /* ctrl carries an optional args map (query filters) through intact. */
    dv_msg_t cm = { .type = DV_MSG_CTRL };
    cm.u.ctrl.req = 9;
    cm.u.ctrl.verb = dv_str("jobs");
    cm.u.ctrl.args = dv_strn("\x81\xa5state\xa4"
                             "dead",
                             12);
    msgpack_sbuffer_init(&dsb);
    assert_int_equal(dv_msg_encode(&cm, &dsb), DV_OK);
    assert_int_equal(dv_msg_decode(dsb.data, dsb.size, &back, NULL, 0), DV_OK);
    assert_int_equal(back.u.ctrl.args.len, 12);
    assert_memory_equal(back.u.ctrl.args.ptr,
                        "\x81\xa5state\xa4"
                        "dead",
                        12);
    dv_msg_release(&back);
    msgpack_sbuffer_destroy(&dsb);
    assert_string_equal(dv_msg_type_name(DV_MSG_NONE), "none");

    const int codes[] = { DV_OK,       DV_ETRUNC, DV_EPROTO,     DV_ETOOBIG,
                          DV_EVERSION, DV_ENOMEM, DV_ETRANSIENT, DV_EIO };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_true(strlen(dv_strerror(codes[i])) > 0);
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(dv_strerror(codes[i]),
                                    dv_strerror(codes[k]));
    }
    assert_string_equal(dv_strerror(DV_ETRUNC), "truncated message");
    assert_string_equal(dv_strerror(12345), "unknown error");
}

static void
t_str_helpers(void **state)
{
    (void)state;
    dv_str_t absent = dv_str(NULL);
    assert_null(absent.ptr);
    assert_int_equal(absent.len, 0);
    dv_str_t v = dv_strn("queue-name", 5);
    assert_true(dv_str_eq(v, "queue"));
    assert_false(dv_str_eq(v, "queue-name"));
    assert_false(dv_str_eq(v, "queu"));
    assert_false(dv_str_eq(absent, ""));
    assert_false(dv_str_eq(dv_str(""), NULL));
    assert_true(dv_str_eq(absent, NULL));
    assert_true(dv_str_eq(dv_str(""), ""));

    char *d = dv_str_dup(v);
    assert_string_equal(d, "queue");
    free(d);
    assert_null(dv_str_dup(absent));
    d = dv_str_dup(dv_str(""));
    assert_string_equal(d, "");
    free(d);

    char buf[4];
    assert_string_equal(dv_str_copy(v, buf, sizeof buf), "que");
    assert_string_equal(dv_str_copy(dv_str("ab"), buf, sizeof buf), "ab");
    assert_string_equal(dv_str_copy(absent, buf, sizeof buf), "");
    buf[0] = 'z';
    dv_str_copy(v, buf, 0);
    assert_int_equal(buf[0], 'z');

    dv_failure_t f;
    memset(&f, 0x5a, sizeof f);
    dv_failure_init(&f);
    assert_int_equal(f.category, DV_CAT_NONE);
    assert_int_equal(f.exit_code, -1);
    assert_int_equal(f.signal, 0);
    assert_int_equal(f.http_status, 0);
    assert_int_equal(f.retry_after_ms, 0);
    assert_false(f.retryable);
    assert_null(f.message.ptr);
    assert_null(f.key_id.ptr);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_submit),
        cmocka_unit_test(t_encoded_forms),
        cmocka_unit_test(t_reject_names),
        cmocka_unit_test(t_submitted),
        cmocka_unit_test(t_wait),
        cmocka_unit_test(t_result),
        cmocka_unit_test(t_ctrl),
        cmocka_unit_test(t_reply),
        cmocka_unit_test(t_error),
        cmocka_unit_test(t_hello),
        cmocka_unit_test(t_welcome),
        cmocka_unit_test(t_jobs),
        cmocka_unit_test(t_update),
        cmocka_unit_test(t_heartbeat),
        cmocka_unit_test(t_bye),
        cmocka_unit_test(t_kill),
        cmocka_unit_test(t_event),
        cmocka_unit_test(t_events),
        cmocka_unit_test(t_reject_events),
        cmocka_unit_test(t_keys),
        cmocka_unit_test(t_encode_invalid_type),
        cmocka_unit_test(t_reject_envelope),
        cmocka_unit_test(t_reject_fields),
        cmocka_unit_test(t_reject_keys),
        cmocka_unit_test(t_reject_ids_and_limits),
        cmocka_unit_test(t_reject_backoff),
        cmocka_unit_test(t_reject_payloads),
        cmocka_unit_test(t_unknown_keys_ignored),
        cmocka_unit_test(t_failed_decode_keeps_req),
        cmocka_unit_test(t_truncated),
        cmocka_unit_test(t_hostile_frames),
        cmocka_unit_test(t_items_limit),
        cmocka_unit_test(t_validate_formats),
        cmocka_unit_test(t_validate_counts),
        cmocka_unit_test(t_validate_depth),
        cmocka_unit_test(t_names),
        cmocka_unit_test(t_str_helpers),
        cmocka_unit_test(t_equal),
        cmocka_unit_test(t_codes),
        cmocka_unit_test(t_event_kinds),
        cmocka_unit_test(t_status_body),
        cmocka_unit_test(t_status_oldest_seq),
        cmocka_unit_test(t_hbmetrics_body),
        cmocka_unit_test(t_workerinfo_body),
        cmocka_unit_test(t_reject_bodies),
        cmocka_unit_test(t_finished_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
