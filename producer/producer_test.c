/* producer_test - JSON Lines job parsing (jobline), the id map, and the
 * client library against a scripted broker (a ROUTER in a thread on ipc://).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>
#include <zmq.h>

#include "drover.h"
#include "dv_clock.h"
#include "dv_id.h"
#include "dv_json.h"
#include "dv_proto.h"
#include "jobline.h"
#include "dv_util.h"
#include "dv_idmap.h"
#include "submit.h"

/* ---- jobline ----------------------------------------------------------- */

typedef struct {
    jobline_arena_t *arena;
    drover_job_t defaults;
    drover_job_t job;
    char why[256];
} s_jl_t;

static int
s_jl_setup(void **state)
{
    s_jl_t *t = calloc(1, sizeof *t);
    t->arena = jobline_arena_new();
    drover_job_init(&t->defaults);
    *state = t;
    return 0;
}

static int
s_jl_teardown(void **state)
{
    s_jl_t *t = *state;
    jobline_arena_destroy(&t->arena);
    free(t);
    return 0;
}

static int
s_parse(s_jl_t *t, const char *line)
{
    return jobline_parse(line, strlen(line), &t->defaults, t->arena, &t->job,
                         t->why, sizeof t->why);
}

/* Asserts that line is refused with exactly the reason want. */
#define assert_bad(t, line, want)                                           \
    do {                                                                    \
        assert_int_equal(s_parse((t), (line)), JOBLINE_BAD);                \
        assert_string_equal((t)->why, (want));                              \
    } while (0)

static void
test_jobline_minimal(void **state)
{
    s_jl_t *t = *state;
    assert_int_equal(s_parse(t, "{\"type\": \"echo\"}"), JOBLINE_JOB);
    assert_string_equal(t->job.type, "echo");
    assert_null(t->job.queue); /* the library's default, "default" */
    assert_int_equal(t->job.priority, -1);
    assert_null(t->job.payload_msgpack);
    assert_int_equal(t->job.backoff_jitter, -1);
    assert_string_equal(t->why, "");
}

static void
test_jobline_all_fields(void **state)
{
    s_jl_t *t = *state;
    const char *line =
        "{\"queue\":\"llm\",\"type\":\"http\",\"payload\":{\"prompt\":\"hi\","
        "\"n\":[1,2.5,true,null]},\"priority\":9,\"delay\":1.5,"
        "\"max_attempts\":3,\"timeout\":\"2m\",\"key\":\"k-1\","
        "\"batch\":\"b1\",\"trace\":"
        "\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\","
        "\"result_ttl\":3600,\"backoff\":{\"base\":0.5,\"factor\":3,"
        "\"cap\":60,\"jitter\":false}}\r";
    assert_int_equal(s_parse(t, line), JOBLINE_JOB);
    drover_job_t *j = &t->job;
    assert_string_equal(j->queue, "llm");
    assert_string_equal(j->type, "http");
    assert_int_equal(j->priority, 9);
    assert_true(j->delay_s == 1.5);
    assert_int_equal(j->run_at_ms, 0);
    assert_int_equal(j->max_attempts, 3);
    assert_true(j->timeout_s == 120.0);
    assert_string_equal(j->key, "k-1");
    assert_string_equal(j->batch, "b1");
    assert_string_equal(
        j->trace, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_true(j->result_ttl_s == 3600.0);
    assert_true(j->backoff_base_s == 0.5);
    assert_true(j->backoff_factor == 3.0);
    assert_true(j->backoff_cap_s == 60.0);
    assert_int_equal(j->backoff_jitter, 0);
    /* The payload is msgpack of the JSON value, in key order. */
    assert_non_null(j->payload_msgpack);
    char *text = dv_msgpack_to_json_text(j->payload_msgpack, j->payload_len);
    assert_string_equal(text, "{\"prompt\":\"hi\",\"n\":[1,2.5,true,null]}");
    free(text);
}

static void
test_jobline_defaults(void **state)
{
    s_jl_t *t = *state;
    t->defaults.type = "echo";
    t->defaults.queue = "q1";
    t->defaults.priority = 7;
    t->defaults.run_at_ms = 1795000000000;
    t->defaults.batch = "nightly";
    /* Omitted and null fields keep the defaults. */
    assert_int_equal(s_parse(t, "{\"queue\":null,\"payload\":42}"),
                     JOBLINE_JOB);
    assert_string_equal(t->job.type, "echo");
    assert_string_equal(t->job.queue, "q1");
    assert_int_equal(t->job.priority, 7);
    assert_int_equal(t->job.run_at_ms, 1795000000000);
    assert_string_equal(t->job.batch, "nightly");
    /* A line's delay replaces the default time. */
    assert_int_equal(s_parse(t, "{\"delay\":\"250ms\",\"priority\":0}"),
                     JOBLINE_JOB);
    assert_int_equal(t->job.run_at_ms, 0);
    assert_true(t->job.delay_s == 0.25);
    assert_int_equal(t->job.priority, 0);
    /* "at" as ISO text, @epoch, or epoch seconds. */
    assert_int_equal(s_parse(t, "{\"at\":\"2026-11-22T17:41:00Z\"}"),
                     JOBLINE_JOB);
    assert_int_equal(t->job.run_at_ms, 1795369260000);
    assert_int_equal(s_parse(t, "{\"at\":\"@1795000000.5\"}"), JOBLINE_JOB);
    assert_int_equal(t->job.run_at_ms, 1795000000500);
    assert_int_equal(s_parse(t, "{\"at\":1795000001}"), JOBLINE_JOB);
    assert_int_equal(t->job.run_at_ms, 1795000001000);
    /* "payload": null is an explicit null payload. */
    assert_int_equal(s_parse(t, "{\"payload\":null}"), JOBLINE_JOB);
    assert_int_equal(t->job.payload_len, 1);
    assert_int_equal(((const unsigned char *)t->job.payload_msgpack)[0],
                     0xc0);
}

static void
test_jobline_skip(void **state)
{
    s_jl_t *t = *state;
    assert_int_equal(s_parse(t, ""), JOBLINE_SKIP);
    assert_int_equal(s_parse(t, "   \t\r"), JOBLINE_SKIP);
    assert_int_equal(s_parse(t, "# a comment {"), JOBLINE_SKIP);
    assert_int_equal(s_parse(t, "  # indented comment"), JOBLINE_SKIP);
}

static void
test_jobline_bad(void **state)
{
    s_jl_t *t = *state;
    assert_bad(t, "{\"type\":\"echo\"", "invalid JSON at column 14: "
                                       "'}' expected near end of file");
    assert_bad(t, "{\"type\":\"echo\",\"type\":\"x\"}",
               "invalid JSON at column 21: duplicate object key near "
               "'\"type\"'");
    assert_bad(t, "[1,2]", "a job line must be a JSON object");
    assert_bad(t, "\"echo\"", "a job line must be a JSON object");
    assert_bad(t, "{}", "type is required");
    assert_bad(t, "{\"payload\":1}", "type is required");
    assert_bad(t, "{\"type\":\"echo\",\"priorty\":3}",
               "unknown field \"priorty\"");
    assert_bad(t, "{\"type\":3}", "type must be a string");
    assert_bad(t, "{\"type\":\"\"}", "type must be 1..200 bytes");
    assert_bad(t, "{\"type\":\"echo\",\"queue\":\"\"}",
               "queue must be 1..200 bytes");
    assert_bad(t, "{\"type\":\"echo\",\"priority\":10}",
               "priority must be 0..9");
    assert_bad(t, "{\"type\":\"echo\",\"priority\":-1}",
               "priority must be 0..9");
    assert_bad(t, "{\"type\":\"echo\",\"priority\":\"high\"}",
               "priority must be an integer 0..9");
    assert_bad(t, "{\"type\":\"echo\",\"priority\":1.5}",
               "priority must be an integer 0..9");
    assert_bad(t, "{\"type\":\"echo\",\"delay\":-1}",
               "delay must be >= 0 seconds");
    assert_bad(t, "{\"type\":\"echo\",\"delay\":\"-1s\"}",
               "delay must be >= 0 seconds");
    assert_bad(t, "{\"type\":\"echo\",\"delay\":\"soon\"}",
               "delay must be a number of seconds");
    assert_bad(t, "{\"type\":\"echo\",\"delay\":1e12}",
               "delay must be at most 10 years");
    assert_bad(t, "{\"type\":\"echo\",\"delay\":1,\"at\":\"@1795000000\"}",
               "give delay or at, not both");
    assert_bad(t, "{\"type\":\"echo\",\"at\":\"tomorrow\"}",
               "at must be an ISO 8601 UTC time (2026-11-22T17:41:00Z) or "
               "epoch seconds");
    assert_bad(t, "{\"type\":\"echo\",\"max_attempts\":0}",
               "max_attempts must be 1..1000");
    assert_bad(t, "{\"type\":\"echo\",\"max_attempts\":\"3\"}",
               "max_attempts must be an integer 1..1000");
    assert_bad(t, "{\"type\":\"echo\",\"timeout\":0}",
               "timeout must be > 0 seconds");
    assert_bad(t, "{\"type\":\"echo\",\"result_ttl\":true}",
               "result_ttl must be a number of seconds");
    assert_bad(t, "{\"type\":\"echo\",\"key\":\"\"}",
               "key must be 1..512 bytes");
    assert_bad(t, "{\"type\":\"echo\",\"batch\":[]}",
               "batch must be a string");
    assert_bad(t, "{\"type\":\"echo\",\"trace\":\"abc\"}",
               "trace must be a W3C traceparent "
               "(00-<32 hex>-<16 hex>-<2 hex>)");
    assert_bad(t, "{\"type\":\"echo\",\"backoff\":5}",
               "backoff must be an object {base, factor, cap, jitter}");
    assert_bad(t, "{\"type\":\"echo\",\"backoff\":{\"factor\":0.5}}",
               "backoff.factor must be 1..1000");
    assert_bad(t, "{\"type\":\"echo\",\"backoff\":{\"base\":-2}}",
               "backoff.base must be >= 0 seconds");
    assert_bad(t, "{\"type\":\"echo\",\"backoff\":{\"jitter\":1}}",
               "backoff.jitter must be true or false");
    assert_bad(t, "{\"type\":\"echo\",\"backoff\":{\"max\":1}}",
               "unknown field \"backoff.max\"");

    /* Over the nesting limit. */
    char deep[200];
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"type\":\"x\",\"payload\":");
    for (int i = 0; i < 70; i++)
        deep[k++] = '[';
    for (int i = 0; i < 70; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = '\0';
    assert_bad(t, deep, "payload is nested deeper than 64 levels");

    /* Over the payload size limit (1 MiB as msgpack). */
    size_t big = (1u << 20) + 100;
    char *line = malloc(big + 64);
    k = (size_t)sprintf(line, "{\"type\":\"x\",\"payload\":\"");
    memset(line + k, 'a', big);
    strcpy(line + k + big, "\"}");
    assert_bad(t, line, "payload is 1048681 bytes as msgpack; the limit is "
                        "1048576");
    free(line);
}

static void
test_jobline_helpers(void **state)
{
    (void)state;
    double s;
    assert_int_equal(jobline_seconds("1.5", &s), 0);
    assert_true(s == 1.5);
    assert_int_equal(jobline_seconds("2m", &s), 0);
    assert_true(s == 120);
    assert_int_equal(jobline_seconds("-1", &s), -1);
    assert_int_equal(jobline_seconds("x", &s), -1);
    int64_t ms;
    assert_int_equal(jobline_time("@10", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(jobline_time("2026-13-01T00:00:00Z", &ms), -1);
    assert_true(jobline_trace_ok(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
    assert_false(jobline_trace_ok(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"));
    assert_false(jobline_trace_ok(
        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01"));
}

/* ---- idmap ------------------------------------------------------------- */

static void
test_idmap(void **state)
{
    (void)state;
    enum { N = 5000 };
    static char ids[N][DROVER_ID_SIZE];
    dv_idmap_t *m = dv_idmap_new(4); /* must grow */
    assert_non_null(m);
    for (size_t i = 0; i < N; i++) {
        dv_id_t id;
        dv_id_new(&id);
        dv_id_format(&id, ids[i]);
        assert_int_equal(dv_idmap_put(m, ids[i], DROVER_ID_LEN, i), i);
    }
    assert_int_equal(dv_idmap_size(m), N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(dv_idmap_get(m, ids[i], DROVER_ID_LEN), i);
    /* A second put keeps the first value. */
    assert_int_equal(dv_idmap_put(m, ids[7], DROVER_ID_LEN, 99), 7);
    assert_int_equal(dv_idmap_get(m, "nope", 4), DV_IDMAP_NONE);
    dv_idmap_destroy(&m);
    assert_null(m);
    dv_idmap_destroy(&m);
}

/* ---- a scripted broker ------------------------------------------------- */

typedef enum {
    FAKE_NORMAL = 0,  /* answer everything */
    FAKE_SILENT,      /* read, never answer */
    FAKE_ERROR_REQ,   /* answer submits with error {req} */
} fake_mode_t;

typedef struct {
    char endpoint[128];
    void *ctx, *sock;
    pthread_t thread;
    volatile int stop;
    fake_mode_t mode;
    int wait_ignore_first;  /* drop the first wait message */
    int stray_first;        /* send unrelated answers before real ones */
    int slow;               /* pause after each wake-up, so requests pile up */
    /* what it saw */
    int submits, waits, ctrls, probes;
    size_t jobs;
    int max_burst;          /* most messages read before answering */
    dv_jobspec_t first;     /* the first job (strings not kept) */
    char first_queue[64];
    int64_t first_seen_ms;
    /* wait bookkeeping */
    char waiting[64][DROVER_ID_SIZE];
    int nwaiting;
    zmq_msg_t waiter;       /* routing id of the waiting client */
    int has_waiter;
    char last_verb[32], last_id[64];
} fake_t;

static void
s_fake_send(fake_t *f, zmq_msg_t *rid, const dv_msg_t *m)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_msg_encode(m, &sb), DV_OK);
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, rid);
    zmq_msg_send(&copy, f->sock, ZMQ_SNDMORE);
    zmq_send(f->sock, sb.data, sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
}

/* Results for the ids of one wait: first a duplicate-laden batch for the
 * first half, then the rest with one "dead". */
static void
s_fake_results(fake_t *f, zmq_msg_t *rid, int from, int to, int repeat)
{
    dv_result_t res[130];
    int k = 0;
    static const unsigned char mp42[] = { 0x2a };
    for (int rep = 0; rep <= repeat; rep++)
        for (int i = from; i < to && k < 130; i++) {
            dv_result_t *r = &res[k++];
            memset(r, 0, sizeof *r);
            r->id = dv_strn(f->waiting[i], DROVER_ID_LEN);
            r->attempts = 1;
            r->finished_ms = 1795000000000;
            if (i == 1) {
                r->state = DV_STATE_DEAD;
                r->attempts = 3;
                r->has_failure = true;
                dv_failure_init(&r->failure);
                r->failure.category = DV_CAT_HANDLER;
                r->failure.message = dv_str("boom");
            } else {
                r->state = DV_STATE_SUCCEEDED;
                r->result = dv_strn((const char *)mp42, 1);
            }
        }
    dv_msg_t m = { .type = DV_MSG_RESULT };
    m.u.result.results = res;
    m.u.result.nresults = (uint32_t)k;
    s_fake_send(f, rid, &m);
}

static void
s_fake_handle(fake_t *f, zmq_msg_t *rid, const dv_msg_t *m)
{
    if (f->mode == FAKE_SILENT) {
        f->submits += m->type == DV_MSG_SUBMIT;
        f->jobs += m->type == DV_MSG_SUBMIT ? m->u.submit.njobs : 0;
        f->waits += m->type == DV_MSG_WAIT;
        return;
    }
    if (m->type == DV_MSG_SUBMIT) {
        f->submits++;
        if (f->jobs == 0 && m->u.submit.njobs) {
            f->first = m->u.submit.jobs[0];
            dv_str_copy(f->first.queue, f->first_queue,
                        sizeof f->first_queue);
            f->first_seen_ms = dv_now_ms();
        }
        f->jobs += m->u.submit.njobs;
        if (f->mode == FAKE_ERROR_REQ) {
            dv_msg_t e = { .type = DV_MSG_ERROR };
            e.u.error.req = m->u.submit.req;
            e.u.error.reason = dv_str("submit: too big");
            s_fake_send(f, rid, &e);
            return;
        }
        uint32_t n = m->u.submit.njobs;
        dv_submit_ack_t *acks = calloc(n ? n : 1, sizeof *acks);
        char(*ids)[DROVER_ID_SIZE] = calloc(n ? n : 1, DROVER_ID_SIZE);
        for (uint32_t i = 0; i < n; i++) {
            if (dv_str_eq(m->u.submit.jobs[i].type, "refuse")) {
                acks[i].error = dv_str("queue is paused");
                continue;
            }
            dv_id_t id;
            dv_id_new(&id);
            dv_id_format(&id, ids[i]);
            acks[i].id = dv_strn(ids[i], DROVER_ID_LEN);
            acks[i].duplicate = dv_str_eq(m->u.submit.jobs[i].key, "dup");
        }
        dv_msg_t r = { .type = DV_MSG_SUBMIT_REPLY };
        r.u.submit_reply.req = m->u.submit.req;
        r.u.submit_reply.acks = acks;
        r.u.submit_reply.nacks = n;
        s_fake_send(f, rid, &r);
        free(acks);
        free(ids);
    } else if (m->type == DV_MSG_WAIT) {
        f->waits++;
        if (f->wait_ignore_first && f->waits == 1)
            return;
        f->nwaiting = 0;
        for (uint32_t i = 0; i < m->u.wait.nids && f->nwaiting < 64; i++)
            dv_str_copy(m->u.wait.ids[i], f->waiting[f->nwaiting++],
                        DROVER_ID_SIZE);
        if (f->has_waiter)
            zmq_msg_close(&f->waiter);
        zmq_msg_init(&f->waiter);
        zmq_msg_copy(&f->waiter, rid);
        f->has_waiter = 1;
        /* Half at once (each twice), the rest a moment later. */
        s_fake_results(f, rid, 0, f->nwaiting / 2, 1);
    } else if (m->type == DV_MSG_CTRL) {
        f->ctrls++;
        dv_str_copy(m->u.ctrl.verb, f->last_verb, sizeof f->last_verb);
        dv_str_copy(m->u.ctrl.id, f->last_id, sizeof f->last_id);
        dv_msg_t r = { .type = DV_MSG_REPLY };
        r.u.reply.req = m->u.ctrl.req;
        static const unsigned char body[] = { 0x81, 0xa2, 'o', 'k', 0xc3 };
        if (dv_str_eq(m->u.ctrl.verb, "status")) {
            r.u.reply.ok = true;
            r.u.reply.body = dv_strn((const char *)body, sizeof body);
        } else if (dv_str_eq(m->u.ctrl.verb, "job")) {
            f->probes++;
            r.u.reply.ok = true;
        } else {
            r.u.reply.ok = false;
            r.u.reply.error = dv_str("job already ended");
        }
        s_fake_send(f, rid, &r);
    }
}

static void *
s_fake_run(void *arg)
{
    fake_t *f = arg;
    int sent_rest = 0;
    int64_t rest_at = 0;
    while (!f->stop) {
        zmq_pollitem_t it = { f->sock, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, 10) > 0 && f->slow)
            usleep(20000);
        /* Drain a burst first, then answer: shows pipelining. */
        zmq_msg_t rids[64], bodies[64];
        int n = 0;
        while (n < 64) {
            zmq_msg_init(&rids[n]);
            if (zmq_msg_recv(&rids[n], f->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&rids[n]);
                break;
            }
            zmq_msg_init(&bodies[n]);
            zmq_msg_recv(&bodies[n], f->sock, 0);
            n++;
        }
        /* A pipelining client sends its next message without waiting for an
         * answer: until that has been seen once, wait for a second message
         * (with a deadline) before answering the first. A client that waits
         * for each answer never sends one, and the test fails. */
        if (f->slow && n == 1 && f->max_burst < 2) {
            zmq_pollitem_t more = { f->sock, 0, ZMQ_POLLIN, 0 };
            if (zmq_poll(&more, 1, 10000) > 0) {
                zmq_msg_init(&rids[n]);
                zmq_msg_recv(&rids[n], f->sock, 0);
                zmq_msg_init(&bodies[n]);
                zmq_msg_recv(&bodies[n], f->sock, 0);
                n++;
            }
        }
        /* Before answering: the client may check as soon as it has them. */
        if (n > f->max_burst)
            f->max_burst = n;
        for (int i = 0; i < n; i++) {
            dv_msg_t m;
            char why[128];
            if (dv_msg_decode(zmq_msg_data(&bodies[i]),
                              zmq_msg_size(&bodies[i]), &m, why,
                              sizeof why) == DV_OK) {
                if (m.type == DV_MSG_WAIT && f->nwaiting == 0)
                    rest_at = 0;
                if (f->stray_first && i == 0) {
                    /* Late answers to requests nobody waits for. */
                    dv_msg_t s = { .type = DV_MSG_SUBMIT_REPLY };
                    s.u.submit_reply.req = 999999;
                    s_fake_send(f, &rids[i], &s);
                    dv_msg_t e = { .type = DV_MSG_ERROR };
                    e.u.error.req = 888888;
                    e.u.error.reason = dv_str("stray");
                    s_fake_send(f, &rids[i], &e);
                    f->stray_first = 0;
                }
                int had = f->nwaiting;
                s_fake_handle(f, &rids[i], &m);
                if (m.type == DV_MSG_WAIT && f->nwaiting && !had) {
                    rest_at = dv_mono_ms() + 50;
                    sent_rest = 0;
                }
            }
            dv_msg_release(&m);
            zmq_msg_close(&rids[i]);
            zmq_msg_close(&bodies[i]);
        }
        if (f->has_waiter && !sent_rest && rest_at &&
            dv_mono_ms() >= rest_at) {
            s_fake_results(f, &f->waiter, f->nwaiting / 2, f->nwaiting, 0);
            sent_rest = 1;
        }
    }
    return NULL;
}

static fake_t *
s_fake_start(fake_mode_t mode)
{
    static int seq;
    fake_t *f = calloc(1, sizeof *f);
    f->mode = mode;
    snprintf(f->endpoint, sizeof f->endpoint, "ipc:///tmp/drover-ptest-%d-%d",
             (int)getpid(), seq++);
    f->ctx = zmq_ctx_new();
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(f->sock, ZMQ_LINGER, &zero, sizeof zero);
    assert_int_equal(zmq_bind(f->sock, f->endpoint), 0);
    return f;
}

static void
s_fake_go(fake_t *f)
{
    pthread_create(&f->thread, NULL, s_fake_run, f);
}

static void
s_fake_stop(fake_t **fp)
{
    fake_t *f = *fp;
    f->stop = 1;
    pthread_join(f->thread, NULL);
    if (f->has_waiter)
        zmq_msg_close(&f->waiter);
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
    unlink(f->endpoint + strlen("ipc://"));
    free(f);
    *fp = NULL;
}

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
    fake_t *f = s_fake_start(FAKE_NORMAL);
    f->stray_first = 1;
    f->slow = 1;
    s_fake_go(f);
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
        else if (i % 1000 == 17)
            assert_string_equal(acks[i].error, "queue is paused");
        else {
            assert_string_equal(acks[i].error, "");
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
    drover_close(&c);
    s_fake_stop(&f);
    free(jobs);
    free(acks);
}

static void
test_client_message_refused(void **state)
{
    (void)state;
    fake_t *f = s_fake_start(FAKE_ERROR_REQ);
    s_fake_go(f);
    drover_client_t *c = drover_connect(f->endpoint, 2000);
    drover_job_t jobs[3];
    drover_ack_t acks[3];
    for (int i = 0; i < 3; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "echo";
    }
    assert_int_equal(drover_submit_many(c, jobs, 3, acks), DROVER_OK);
    for (int i = 0; i < 3; i++)
        assert_string_equal(acks[i].error,
                            "broker refused the message: submit: too big");
    assert_string_equal(drover_last_error(c), "broker: submit: too big");
    drover_close(&c);
    s_fake_stop(&f);
}

static void
test_client_unreachable(void **state)
{
    (void)state;
    fake_t *f = s_fake_start(FAKE_SILENT);
    s_fake_go(f);
    drover_client_t *c = drover_connect(f->endpoint, 200);
    enum { N = 2500 };
    drover_job_t *jobs = calloc(N, sizeof *jobs);
    drover_ack_t *acks = calloc(N, sizeof *acks);
    for (int i = 0; i < N; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "echo";
    }
    int64_t t0 = dv_mono_ms();
    assert_int_equal(drover_submit_many(c, jobs, N, acks),
                     DROVER_EUNREACHABLE);
    int64_t took = dv_mono_ms() - t0;
    assert_true(took >= 200 && took < 2000);
    for (int i = 0; i < N; i++)
        assert_string_equal(acks[i].error, "no answer from broker");
    assert_non_null(strstr(drover_last_error(c), "no answer"));
    char *body = (char *)1;
    assert_int_equal(drover_ctrl(c, "status", NULL, NULL, &body),
                     DROVER_EUNREACHABLE);
    assert_null(body);
    drover_close(&c);
    s_fake_stop(&f);
    free(jobs);
    free(acks);
}

static void
test_client_failover(void **state)
{
    (void)state;
    fake_t *dead = s_fake_start(FAKE_SILENT), *live = s_fake_start(FAKE_NORMAL);
    s_fake_go(dead);
    s_fake_go(live);
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
    s_fake_stop(&dead);
    s_fake_stop(&live);
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
    fake_t *f = s_fake_start(FAKE_NORMAL);
    s_fake_go(f);
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
    assert_string_equal(f->last_verb, "cancel");
    assert_string_equal(f->last_id, ids[0]);
    drover_close(&c);
    s_fake_stop(&f);
}

static void
test_client_wait_resend(void **state)
{
    (void)state;
    /* The broker loses the first wait (as if it restarted): the client asks
     * again after 5 s of silence, with a probe. */
    fake_t *f = s_fake_start(FAKE_NORMAL);
    f->wait_ignore_first = 1;
    s_fake_go(f);
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
    s_fake_stop(&f);
}

static void
test_client_wait_timeout(void **state)
{
    (void)state;
    fake_t *f = s_fake_start(FAKE_SILENT);
    s_fake_go(f);
    drover_client_t *c = drover_connect(f->endpoint, 100);
    char ids[2][DROVER_ID_SIZE];
    const char *ptrs[2];
    s_make_ids(ids, ptrs, 2);
    int64_t t0 = dv_mono_ms();
    assert_int_equal(drover_wait(c, ptrs, 2, 300, NULL, NULL),
                     DROVER_ETIMEOUT);
    assert_true(dv_mono_ms() - t0 >= 300);
    assert_string_equal(drover_last_error(c),
                        "2 of 2 jobs had not ended after 300 ms");
    drover_close(&c);
    s_fake_stop(&f);
}


/* ---- drover submit ----------------------------------------------------- */

typedef struct {
    char dir[64];
    char out[96], err[96], in[96], res[96];
    char *stdout_text, *stderr_text;
} s_cli_t;

static int
s_cli_setup(void **state)
{
    s_cli_t *t = calloc(1, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/drover-ptest-cli-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->out, sizeof t->out, "%s/stdout", t->dir);
    snprintf(t->err, sizeof t->err, "%s/stderr", t->dir);
    snprintf(t->in, sizeof t->in, "%s/jobs.jsonl", t->dir);
    snprintf(t->res, sizeof t->res, "%s/results.jsonl", t->dir);
    *state = t;
    return 0;
}

static int
s_cli_teardown(void **state)
{
    s_cli_t *t = *state;
    unlink(t->out);
    unlink(t->err);
    unlink(t->in);
    unlink(t->res);
    rmdir(t->dir);
    free(t->stdout_text);
    free(t->stderr_text);
    free(t);
    return 0;
}

static void
s_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs submit_main with stdout and stderr captured into t. NULL ends argv. */
static int
s_cli_run(s_cli_t *t, ...)
{
    const char *argv[40] = { "submit" };
    int argc = 1;
    va_list ap;
    va_start(ap, t);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 39)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int fo = open(t->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(t->err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fo, 1);
    dup2(fe, 2);
    close(fo);
    close(fe);
    int rc = submit_main(argc, (char **)argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    free(t->stdout_text);
    free(t->stderr_text);
    t->stdout_text = dv_read_file(t->out, NULL);
    t->stderr_text = dv_read_file(t->err, NULL);
    return rc;
}

static size_t
s_count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

static void
test_cli_usage(void **state)
{
    s_cli_t *t = *state;
    assert_int_equal(s_cli_run(t, "--help", NULL), 0);
    assert_non_null(strstr(t->stdout_text, "Exit status:"));
    assert_int_equal(s_cli_run(t, "--bogus", NULL), 2);
    assert_non_null(strstr(t->stderr_text, "unknown option '--bogus'"));
    assert_int_equal(s_cli_run(t, "--queue", "q", NULL), 2);
    assert_non_null(strstr(t->stderr_text, "--type is required"));
    assert_int_equal(s_cli_run(t, "--type", "echo", "--priority", "12", NULL),
                     2);
    assert_non_null(strstr(t->stderr_text, "--priority must be 0..9"));
    assert_int_equal(s_cli_run(t, "--file", t->in, "--payload", "1", NULL),
                     2);
    assert_int_equal(s_cli_run(t, "--type", "echo", "--payload", "{x", NULL),
                     2);
    assert_non_null(strstr(t->stderr_text, "--payload is not valid JSON"));
    assert_int_equal(s_cli_run(t, "--type", "echo", "--delay", "1", "--at",
                               "@1795000000", NULL),
                     2);
    assert_int_equal(s_cli_run(t, "--type", "echo", "--out", "x", NULL), 2);
    assert_int_equal(s_cli_run(t, "--type", "echo", "extra", NULL), 2);
    assert_int_equal(s_cli_run(t, "--type", "echo", "--broker", "nope://",
                               NULL),
                     2);
    assert_int_equal(s_cli_run(t, "--file", "/nonexistent/jobs", NULL), 2);
}

static void
test_cli_bad_lines(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = s_fake_start(FAKE_NORMAL);
    s_fake_go(f);
    s_write_file(t->in, "{\"payload\": 1}\n"
                        "# comment\n"
                        "\n"
                        "{\"priority\": 12}\n"
                        "{\"bogus\": 1}\n"
                        "not json\n");
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", NULL),
                     4);
    const char *want =
        "drover submit: line 4: priority must be 0..9\n"
        "drover submit: line 5: unknown field \"bogus\"\n"
        "drover submit: line 6: invalid JSON at column 3: invalid token near "
        "'not'\n"
        "drover submit: 3 bad lines in ";
    assert_memory_equal(t->stderr_text, want, strlen(want));
    assert_non_null(strstr(t->stderr_text, "; nothing was submitted\n"));
    assert_string_equal(t->stdout_text, "");
    assert_int_equal(f->jobs, 0); /* nothing was submitted */
    s_fake_stop(&f);
}

static void
test_cli_refused(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = s_fake_start(FAKE_NORMAL);
    s_fake_go(f);
    s_write_file(t->in, "{\"payload\": 1}\n"
                        "{\"type\": \"refuse\"}\n"
                        "{\"payload\": [3]}\n");
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", NULL),
                     4);
    assert_int_equal(s_count_lines(t->stdout_text), 2);
    assert_string_equal(t->stderr_text,
                        "drover submit: line 2: refused: queue is paused\n"
                        "drover submit: 2 of 3 jobs accepted, 1 refused\n");
    s_fake_stop(&f);
}

static void
test_cli_one_job(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = s_fake_start(FAKE_NORMAL);
    s_fake_go(f);
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--type", "echo",
                               "--queue", "q7", "--payload", "{\"a\":1}",
                               "--priority", "0", "--max-attempts", "2",
                               "--timeout", "1.5", "--no-jitter", NULL),
                     0);
    assert_int_equal(strlen(t->stdout_text), DROVER_ID_LEN + 1);
    assert_string_equal(t->stderr_text, "submitted 1 job\n");
    assert_string_equal(f->first_queue, "q7");
    assert_int_equal(f->first.priority, 0);
    assert_int_equal(f->first.max_attempts, 2);
    assert_int_equal(f->first.timeout_ms, 1500);
    assert_true(f->first.has_backoff);
    assert_false(f->first.backoff.jitter);
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--type", "echo",
                               "-q", NULL),
                     0);
    assert_string_equal(t->stderr_text, "");
    s_fake_stop(&f);
}

static void
test_cli_unreachable(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = s_fake_start(FAKE_SILENT);
    s_fake_go(f);
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--type", "echo",
                               "--connect-timeout", "0.2", NULL),
                     3);
    assert_non_null(strstr(t->stderr_text, "cannot reach the broker"));
    assert_string_equal(t->stdout_text, "");
    s_fake_stop(&f);
}

static void
test_cli_wait(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = s_fake_start(FAKE_NORMAL);
    s_fake_go(f);
    s_write_file(t->in, "{\"payload\": 1}\n"
                        "{\"payload\": 2}\n"
                        "\n"
                        "{\"payload\": 3}\n"
                        "{\"payload\": 4}\n");
    /* The scripted broker ends the second job it is asked about as dead. */
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", "--wait", "--out", t->res,
                               "--no-progress", NULL),
                     1);
    assert_string_equal(t->stdout_text, "");
    assert_non_null(strstr(t->stderr_text, "4 jobs in "));
    assert_non_null(strstr(t->stderr_text,
                           "3 succeeded, 1 dead, 0 cancelled; 2 retries\n"
                           "failures by category:\n"
                           "  handler                 1  e.g. boom\n"));
    char *res = dv_read_file(t->res, NULL);
    assert_int_equal(s_count_lines(res), 4);
    assert_non_null(strstr(res, "\"line\":2,\"state\":\"dead\",\"attempts\":3,"
                                "\"error\":{\"category\":\"handler\","
                                "\"message\":\"boom\"}}\n"));
    assert_non_null(strstr(res, "\"line\":5,\"state\":\"succeeded\","
                                "\"attempts\":1,\"result\":42}\n"));
    free(res);
    s_fake_stop(&f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jobline_minimal, s_jl_setup,
                                        s_jl_teardown),
        cmocka_unit_test_setup_teardown(test_jobline_all_fields, s_jl_setup,
                                        s_jl_teardown),
        cmocka_unit_test_setup_teardown(test_jobline_defaults, s_jl_setup,
                                        s_jl_teardown),
        cmocka_unit_test_setup_teardown(test_jobline_skip, s_jl_setup,
                                        s_jl_teardown),
        cmocka_unit_test_setup_teardown(test_jobline_bad, s_jl_setup,
                                        s_jl_teardown),
        cmocka_unit_test(test_jobline_helpers),
        cmocka_unit_test(test_idmap),
        cmocka_unit_test(test_client_connect),
        cmocka_unit_test(test_client_invalid_job),
        cmocka_unit_test(test_client_submit_many),
        cmocka_unit_test(test_client_message_refused),
        cmocka_unit_test(test_client_unreachable),
        cmocka_unit_test(test_client_failover),
        cmocka_unit_test(test_client_wait),
        cmocka_unit_test(test_client_wait_resend),
        cmocka_unit_test(test_client_wait_timeout),
        cmocka_unit_test_setup_teardown(test_cli_usage, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_bad_lines, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_refused, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_one_job, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_unreachable, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_wait, s_cli_setup,
                                        s_cli_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
