/* Unit tests for the store reads off the loop (broker_reader.c,
 * broker_reads.c and the requests that read: submits with idempotency
 * keys, ctrl job, retry, cancel of an ended job). A broker made by
 * broker_core_open on a real SQLite store in a temp dir, with a client
 * socket of its own: a ROUTER on inproc, and a DEALER (routing id "cli")
 * the test reads the answers from. Messages are handed to
 * broker_client_on_message as the loop would; the test runs the loop's
 * other steps itself (commits, answering reads). A slow store is the
 * reader held (broker_reader_hold): its reads wait, nothing else does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <zmq.h>

#include "broker_internal.h"
#include "broker_test_fx.h"
#include "dv_body.h"
#include "dv_log.h"

static void *s_dealer; /* the client */
static const broker_rid_t s_rid = { .len = 3, .data = "cli" };

static int
s_setup(void **state)
{
    broker_fx_setup(state);
    s_dealer = broker_fx_client(*state);
    return 0;
}

static int
s_teardown(void **state)
{
    zmq_close(s_dealer);
    s_dealer = NULL;
    return broker_fx_teardown(state);
}

/* The next message the client got within ms, decoded into m (release
 * with s_release), or false. */
static bool
s_next(int ms, dv_msg_t *m, zmq_msg_t *f)
{
    zmq_pollitem_t it = { s_dealer, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, ms) <= 0)
        return false;
    zmq_msg_init(f);
    assert_true(zmq_msg_recv(f, s_dealer, 0) >= 0);
    char why[128] = "";
    assert_int_equal(
        dv_msg_decode(zmq_msg_data(f), zmq_msg_size(f), m, why, sizeof why),
        DV_OK);
    return true;
}

static void
s_release(dv_msg_t *m, zmq_msg_t *f)
{
    dv_msg_release(m);
    zmq_msg_close(f);
}

/* Answers the oldest read out, once it is back. */
static void
s_answer_one(broker_t *b)
{
    assert_true(broker_reader_wait(b->reader));
    broker_read_t *r = broker_reader_pop_done(b->reader);
    assert_non_null(r);
    b->reads_popped++;
    r->done(b, r);
    broker_group_settle_keys(b);
}

/* A submit of one job of queue q, with key (or none). */
static void
s_submit(broker_t *b, uint64_t req, const char *key)
{
    dv_jobspec_t js;
    memset(&js, 0, sizeof js);
    js.queue = dv_str("q");
    js.type = dv_str("noop");
    js.priority = 5;
    if (key)
        js.key = dv_str(key);
    dv_msg_t m = { .type = DV_MSG_SUBMIT };
    m.u.submit.req = req;
    m.u.submit.jobs = &js;
    m.u.submit.njobs = 1;
    broker_client_on_message(b, &s_rid, &m);
}

static void
s_ctrl(broker_t *b, uint64_t req, const char *verb, const char *id,
       const char *queue)
{
    dv_msg_t m = { .type = DV_MSG_CTRL };
    m.u.ctrl.req = req;
    m.u.ctrl.verb = dv_str(verb);
    if (id)
        m.u.ctrl.id = dv_str(id);
    if (queue) {
        m.u.ctrl.queue = dv_str(queue);
        m.u.ctrl.dead = true;
    }
    broker_client_on_message(b, &s_rid, &m);
}

/* What the client got for one request. */
typedef struct {
    bool got;
    bool ok;
    dv_code_t code;
    bool duplicate;
    char id[DV_ID_TEXT_LEN + 1];
    char error[128];
    char state[16];  /* ctrl job: the body's state */
    int64_t retried; /* ctrl retry: the body's count */
    int nkeys;       /* the body's keys */
    /* ctrl job: its attempts (-1: no "attempts" key) and what each said
     * (up to 4), or the "attempts_error" */
    int nattempts;
    struct {
        int attempt;
        char worker[32];
        char outcome[16];
        char category[32];
        char message[64];
        char details[256];
        char stderr_tail[256];
        bool has_details, has_stderr, retryable;
        int nkeys;
    } att[4];
    char attempts_error[128];
    /* ctrl job: "options" (-1 priority: none or nil) */
    int64_t opt_priority, opt_payload_bytes, opt_max_attempts;
    bool opt_key; /* has a string "key" */
} s_answer_t;

static void
s_copy(dv_str_t s, char *out, size_t size)
{
    size_t n = s.len < size - 1 ? s.len : size - 1;
    memcpy(out, s.ptr ? s.ptr : "", n);
    out[n] = '\0';
}

static bool
s_key_is(const msgpack_object *k, const char *name)
{
    return k->type == MSGPACK_OBJECT_STR &&
           dv_str_eq(dv_strn(k->via.str.ptr, k->via.str.size), name);
}

static void
s_obj_copy(const msgpack_object *v, char *out, size_t size)
{
    assert_int_equal(v->type, MSGPACK_OBJECT_STR);
    s_copy(dv_strn(v->via.str.ptr, v->via.str.size), out, size);
}

/* A ctrl job answer's "attempts" array into a. */
static void
s_attempts(const msgpack_object *arr, s_answer_t *a)
{
    assert_int_equal(arr->type, MSGPACK_OBJECT_ARRAY);
    a->nattempts = (int)arr->via.array.size;
    for (uint32_t i = 0; i < arr->via.array.size && i < 4; i++) {
        const msgpack_object *e = &arr->via.array.ptr[i];
        assert_int_equal(e->type, MSGPACK_OBJECT_MAP);
        a->att[i].nkeys = (int)e->via.map.size;
        for (uint32_t j = 0; j < e->via.map.size; j++) {
            const msgpack_object *k = &e->via.map.ptr[j].key,
                                 *v = &e->via.map.ptr[j].val;
            if (s_key_is(k, "attempt"))
                a->att[i].attempt = (int)v->via.i64;
            else if (s_key_is(k, "worker") && v->type != MSGPACK_OBJECT_NIL)
                s_obj_copy(v, a->att[i].worker, sizeof a->att[i].worker);
            else if (s_key_is(k, "outcome"))
                s_obj_copy(v, a->att[i].outcome, sizeof a->att[i].outcome);
            else if (s_key_is(k, "category"))
                s_obj_copy(v, a->att[i].category, sizeof a->att[i].category);
            else if (s_key_is(k, "message"))
                s_obj_copy(v, a->att[i].message, sizeof a->att[i].message);
            else if (s_key_is(k, "retryable"))
                a->att[i].retryable = v->via.boolean;
            else if (s_key_is(k, "details")) {
                a->att[i].has_details = true;
                s_obj_copy(v, a->att[i].details, sizeof a->att[i].details);
            } else if (s_key_is(k, "stderr")) {
                a->att[i].has_stderr = true;
                s_obj_copy(v, a->att[i].stderr_tail,
                           sizeof a->att[i].stderr_tail);
            }
        }
    }
}

/* ctrl job's "options" map into a. */
static void
s_options(const msgpack_object *o, s_answer_t *a)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        const msgpack_object *v = &o->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            continue;
        dv_str_t key = dv_strn(k->via.str.ptr, k->via.str.size);
        if (dv_str_eq(key, "priority"))
            a->opt_priority = (int64_t)v->via.u64;
        else if (dv_str_eq(key, "payload_bytes"))
            a->opt_payload_bytes = (int64_t)v->via.u64;
        else if (dv_str_eq(key, "max_attempts"))
            a->opt_max_attempts = (int64_t)v->via.u64;
        else if (dv_str_eq(key, "key"))
            a->opt_key = v->type == MSGPACK_OBJECT_STR;
    }
}

/* Reads the body of a reply: state (job) and retried (retry). */
static void
s_body(dv_str_t body, s_answer_t *a)
{
    a->nattempts = -1;
    a->opt_priority = -1;
    if (!body.len)
        return;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, body.ptr, body.len, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    if (u.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *m = &u.data.via.map;
        a->nkeys = (int)m->size;
        for (uint32_t i = 0; i < m->size; i++) {
            const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR)
                continue;
            dv_str_t key = dv_strn(k->via.str.ptr, k->via.str.size);
            if (dv_str_eq(key, "state") && v->type == MSGPACK_OBJECT_STR)
                s_copy(dv_strn(v->via.str.ptr, v->via.str.size), a->state,
                       sizeof a->state);
            else if (dv_str_eq(key, "retried"))
                a->retried = (int64_t)v->via.u64;
            else if (dv_str_eq(key, "attempts"))
                s_attempts(v, a);
            else if (dv_str_eq(key, "attempts_error"))
                s_obj_copy(v, a->attempts_error, sizeof a->attempts_error);
            else if (dv_str_eq(key, "options"))
                s_options(v, a);
        }
    }
    msgpack_unpacked_destroy(&u);
}

/* Takes every answer the client has (waiting up to ms for the first),
 * into answers[req] (req < n). Returns how many. */
static int
s_collect(s_answer_t *answers, size_t n, int ms)
{
    int count = 0;
    dv_msg_t m;
    zmq_msg_t f;
    while (s_next(count ? 50 : ms, &m, &f)) {
        uint64_t req = 0;
        s_answer_t a = { .got = true };
        if (m.type == DV_MSG_SUBMIT_REPLY) {
            req = m.u.submit_reply.req;
            assert_int_equal(m.u.submit_reply.nacks, 1);
            const dv_submit_ack_t *ack = &m.u.submit_reply.acks[0];
            a.ok = !ack->error.len;
            a.code = ack->code;
            a.duplicate = ack->duplicate;
            s_copy(ack->id, a.id, sizeof a.id);
            s_copy(ack->error, a.error, sizeof a.error);
        } else if (m.type == DV_MSG_REPLY) {
            req = m.u.reply.req;
            a.ok = m.u.reply.ok;
            a.code = m.u.reply.code;
            s_copy(m.u.reply.error, a.error, sizeof a.error);
            s_body(m.u.reply.body, &a);
        } else {
            fail_msg("unexpected %s", dv_msg_type_name(m.type));
        }
        assert_true(req < n);
        assert_false(answers[req].got); /* one answer per request */
        answers[req] = a;
        count++;
        s_release(&m, &f);
    }
    return count;
}

/* A job that ended (succeeded): in the store only, no longer in memory. */
static void
s_ended_job(broker_fx_t *fx, char id[DV_ID_TEXT_LEN + 1], dv_state_t state)
{
    broker_job_t *job = broker_fx_job(fx, "q", 0, 1);
    broker_id_text(job, id);
    dv_id_t jid = job->id;
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_HANDLER;
    f.message = dv_str("failed for good");
    broker_sched_finish(fx->b, job, state, NULL, 0,
                        state == DV_STATE_SUCCEEDED ? NULL : &f);
    broker_fx_commit(fx->b);
    assert_null(broker_index_get(&fx->b->index, &jid));
}

/* ---- a slow read delays only its own request ---------------------------- */

static void
t_slow_read_delays_only_its_request(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char ended[DV_ID_TEXT_LEN + 1];
    s_ended_job(fx, ended, DV_STATE_SUCCEEDED);

    broker_reader_hold(b->reader, true); /* the store does not answer */
    s_submit(b, 1, "order-1");           /* keyed: needs a read */
    s_ctrl(b, 2, "job", ended, NULL);    /* ended: needs a read */
    s_submit(b, 3, NULL);                /* unkeyed */
    s_ctrl(b, 4, "status", NULL, NULL);
    broker_fx_commit(b);

    s_answer_t a[8] = { 0 };
    assert_int_equal(s_collect(a, 8, 2000), 2);
    assert_true(a[3].got && a[3].ok);
    assert_int_equal(strlen(a[3].id), DV_ID_TEXT_LEN);
    assert_true(a[4].got && a[4].ok);
    assert_false(a[1].got);
    assert_false(a[2].got);
    assert_int_equal(broker_reader_outstanding(b->reader), 2);
    assert_null(b->cur->acks); /* the keyed submit built nothing yet */

    broker_reader_hold(b->reader, false); /* the store answers */
    broker_fx_answer_reads(b);
    broker_fx_commit(b);
    assert_int_equal(s_collect(a, 8, 2000), 2);
    assert_true(a[1].got && a[1].ok);
    assert_false(a[1].duplicate);
    assert_int_equal(strlen(a[1].id), DV_ID_TEXT_LEN);
    assert_true(a[2].got && a[2].ok);
    assert_string_equal(a[2].state, "succeeded");

    /* The same key again: pending or stored, the first job's id. */
    s_submit(b, 5, "order-1");
    broker_fx_answer_reads(b);
    broker_fx_commit(b);
    assert_int_equal(s_collect(a, 8, 2000), 1);
    assert_true(a[5].duplicate);
    assert_string_equal(a[5].id, a[1].id);
}

/* ---- two submits of one key in flight at once ----------------------------- */

static void
t_duplicate_key_race_gives_one_job(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    /* Both reads run before either job exists, so both find nothing. The
     * first answer makes the job, its insert commits, and only then is the
     * second answered: the key must still be pending for it. */
    broker_reader_hold(b->reader, true);
    s_submit(b, 1, "nightly");
    s_submit(b, 2, "nightly");
    broker_reader_hold(b->reader, false);
    s_answer_one(b);
    broker_fx_commit(b); /* the first job is durable; a read is still out */
    s_answer_one(b);
    broker_fx_commit(b);
    s_answer_t a[4] = { 0 };
    assert_int_equal(s_collect(a, 4, 2000), 2);
    assert_true(a[1].ok);
    assert_false(a[1].duplicate);
    assert_true(a[2].ok);
    assert_true(a[2].duplicate);
    assert_string_equal(a[2].id, a[1].id);
    /* Every read is back: the key left memory, the store has it. */
    assert_int_equal(dv_map_size(b->pending_keys), 0);
    assert_null(b->settling);
    char found[DV_ID_TEXT_LEN + 1] = "";
    assert_int_equal(broker_store_find_key(b->store, NULL, "nightly", found),
                     1);
    assert_string_equal(found, a[1].id);
    assert_int_equal(b->index.count, 1);

    /* Both answered before anything commits: the same. */
    broker_reader_hold(b->reader, true);
    s_submit(b, 3, "weekly");
    s_submit(b, 1, "weekly");
    broker_reader_hold(b->reader, false);
    broker_fx_answer_reads(b);
    broker_fx_commit(b);
    memset(a, 0, sizeof a);
    assert_int_equal(s_collect(a, 4, 2000), 2);
    assert_false(a[3].duplicate);
    assert_true(a[1].duplicate);
    assert_string_equal(a[1].id, a[3].id);
    assert_int_equal(b->index.count, 2);
}

/* ---- busy, and stopping ----------------------------------------------------- */

static void
t_full_queue_answers_busy(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char ended[DV_ID_TEXT_LEN + 1];
    s_ended_job(fx, ended, DV_STATE_SUCCEEDED);
    broker_reader_hold(b->reader, true);
    for (int i = 0; i < BROKER_READS_MAX; i++)
        s_ctrl(b, 100, "cancel", ended, NULL); /* answered later */
    s_submit(b, 1, "k");
    s_ctrl(b, 2, "job", ended, NULL);
    s_answer_t a[4] = { 0 };
    assert_int_equal(s_collect(a, 4, 2000), 2);
    assert_false(a[1].ok);
    assert_int_equal(a[1].code, DV_CODE_TRY_AGAIN);
    assert_non_null(strstr(a[1].error, "busy"));
    assert_false(a[2].ok);
    assert_int_equal(a[2].code, DV_CODE_TRY_AGAIN);
    broker_reader_hold(b->reader, false);
    broker_fx_answer_reads(b);
    /* The cancels: the job ended already. */
    int n = 0;
    dv_msg_t m;
    zmq_msg_t f;
    while (s_next(n ? 50 : 2000, &m, &f)) {
        assert_int_equal(m.type, DV_MSG_REPLY);
        assert_int_equal(m.u.reply.req, 100);
        assert_int_equal(m.u.reply.code, DV_CODE_NOT_ALLOWED);
        n++;
        s_release(&m, &f);
    }
    assert_int_equal(n, BROKER_READS_MAX);
    assert_int_equal(broker_reader_outstanding(b->reader), 0);
}

static void
t_stop_fails_pending_reads(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char ended[DV_ID_TEXT_LEN + 1];
    s_ended_job(fx, ended, DV_STATE_SUCCEEDED);
    broker_reader_hold(b->reader, true);
    s_submit(b, 1, "k");
    s_ctrl(b, 2, "job", ended, NULL);
    /* What broker_destroy does first. */
    broker_reader_stop(b->reader);
    broker_reads_ready(b);
    s_answer_t a[4] = { 0 };
    assert_int_equal(s_collect(a, 4, 2000), 2);
    assert_false(a[1].ok);
    assert_int_equal(a[1].code, DV_CODE_TRY_AGAIN);
    assert_non_null(strstr(a[1].error, "stopping"));
    assert_false(a[2].ok);
    assert_non_null(strstr(a[2].error, "stopping"));
    /* Later reads are refused at once. */
    s_ctrl(b, 3, "job", ended, NULL);
    assert_int_equal(s_collect(a, 4, 2000), 1);
    assert_non_null(strstr(a[3].error, "stopping"));
    assert_null(b->cur->acks);
    assert_int_equal(b->index.count, 0);
}

/* ---- retry through the reader ---------------------------------------------- */

static void
t_retry_dead_in_chunks(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    enum { N = 2500 }; /* three reads of records */
    for (int i = 0; i < N; i++) {
        broker_job_t *job = broker_fx_job(fx, "q", 0, 1);
        dv_failure_t f;
        dv_failure_init(&f);
        f.category = DV_CAT_HANDLER;
        broker_sched_finish(b, job, DV_STATE_DEAD, NULL, 0, &f);
    }
    char one[DV_ID_TEXT_LEN + 1];
    s_ended_job(fx, one, DV_STATE_DEAD);
    assert_int_equal(b->index.count, 0);

    broker_reader_hold(b->reader, true);
    s_ctrl(b, 1, "retry", one, NULL);
    s_ctrl(b, 2, "retry", NULL, "q");
    s_ctrl(b, 3, "status", NULL, NULL);
    s_answer_t a[4] = { 0 };
    assert_int_equal(s_collect(a, 4, 2000), 1);
    assert_true(a[3].got);
    broker_reader_hold(b->reader, false);
    broker_fx_answer_reads(b);
    broker_fx_commit(b);
    assert_int_equal(s_collect(a, 4, 2000), 2);
    assert_true(a[1].ok);
    assert_int_equal(a[1].retried, 1);
    assert_true(a[2].ok);
    /* The one retried first was live again when the list's chunk came:
     * not retried twice. */
    assert_int_equal(a[2].retried, N);
    assert_int_equal(b->index.count, N + 1);
    broker_queue_t *q = dv_map_get(b->queues, "q");
    assert_int_equal(q->ready, N + 1);

    /* The check agrees with the store. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char why[192] = "";
    assert_int_equal(broker_check_body(b, &sb, why, sizeof why), DV_CODE_NONE);
    msgpack_sbuffer_destroy(&sb);

    /* Retry of a job that is queued now: refused at once. */
    s_ctrl(b, 1, "retry", one, NULL);
    memset(a, 0, sizeof a);
    assert_int_equal(s_collect(a, 4, 2000), 1);
    assert_int_equal(a[1].code, DV_CODE_NOT_ALLOWED);
}

/* ---- the check does not stop the loop -------------------------------------- */

static void
t_check_waits_for_its_scan_only(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    for (int i = 0; i < 3; i++)
        broker_fx_job(fx, "q", 0, 3);
    broker_reader_hold(b->reader, true);
    s_ctrl(b, 1, "check", NULL, NULL);
    broker_fx_commit(b); /* the copied group commits; the scan waits */
    assert_non_null(b->check);
    assert_true(broker_check_holding(b));
    /* Meanwhile: status is answered, a submit is taken (its ack waits
     * for its commit, which waits for the scan). */
    s_ctrl(b, 2, "status", NULL, NULL);
    s_submit(b, 3, NULL);
    broker_group_end_pass(b);
    assert_null(b->inflight);
    s_answer_t a[4] = { 0 };
    assert_int_equal(s_collect(a, 4, 2000), 1);
    assert_true(a[2].ok);
    broker_reader_hold(b->reader, false);
    broker_fx_answer_reads(b);
    broker_fx_commit(b);
    assert_int_equal(s_collect(a, 4, 2000), 2);
    assert_true(a[1].ok);
    assert_true(a[3].ok);
    assert_null(b->check);
}

/* ---- ctrl job: the attempts and what each said ------------------------------ */

static int
s_check_failure_texts(const dv_event_t *ev, uint64_t after_seq)
{
    if (ev->seq <= after_seq || !ev->has_failure)
        return 0;
    assert_null(ev->failure.details.ptr);
    assert_null(ev->failure.stderr_tail.ptr);
    assert_non_null(ev->failure.message.ptr);
    return 1;
}

/* Every event the current group holds past sequence number after_seq
 * (alone or in a batch): none carries a failure's details or stderr.
 * Returns how many carried a failure. */
static int
s_failure_events_without_texts(broker_t *b, uint64_t after_seq)
{
    int n = 0;
    const broker_group_t *g = b->cur;
    for (size_t i = 0; i < g->nsends; i++) {
        const broker_send_t *snd = &g->sends[i];
        if (snd->socket != b->events)
            continue;
        const msgpack_sbuffer *buf = snd->batch ? &g->evbuf : &g->outbuf;
        dv_msg_t m;
        char why[128] = "";
        assert_int_equal(
            dv_msg_decode(buf->data + snd->off, snd->len, &m, why, sizeof why),
            DV_OK);
        if (m.type == DV_MSG_EVENT)
            n += s_check_failure_texts(&m.u.event, after_seq);
        else if (m.type == DV_MSG_EVENTS)
            for (uint32_t k = 0; k < m.u.events.nevents; k++)
                n += s_check_failure_texts(&m.u.events.events[k], after_seq);
        else
            fail_msg("not an event on the events socket");
        dv_msg_release(&m);
    }
    return n;
}

/* Leases job to w (after its backoff), starts it and fails the attempt
 * with f 1.5 s later. */
static void
s_run_and_fail(broker_fx_t *fx, broker_worker_t *w, broker_job_t *job,
               const dv_failure_t *f, int *events)
{
    broker_t *b = fx->b;
    broker_fx_advance_ms(fx, 120000);
    broker_sched_promote_due(b);
    w->credit = 1; /* as the worker's report gives it back */
    assert_int_equal(broker_fx_dispatch(fx), 1);
    assert_int_equal(job->state, DV_STATE_RUNNING);
    /* As the worker's "started" report leaves it. */
    job->started_ms = broker_now_ms(b);
    job->flags |= BROKER_JOB_STARTED;
    broker_fx_advance_ms(fx, 1500);
    uint64_t from = b->event_seq;
    broker_sched_fail(b, job, f);
    *events += s_failure_events_without_texts(b, from);
}

static const char s_trace[] = "Traceback (most recent call last):\n"
                              "  File \"handler.py\", line 12, in run\n"
                              "    raise ValueError(\"no prompt\")\n"
                              "ValueError: no prompt \xe2\x9c\x97";
static const char s_stderr[] = "loading model\nwarning: low memory\n";

static void
t_job_attempts_keep_details(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_worker_t *w = broker_fx_worker(fx, "w1", "q", 1);
    broker_job_t *job = broker_fx_job(fx, "q", 0, 2);
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    dv_id_t jid = job->id;
    broker_fx_commit(b);

    /* A live job that never ran: no attempts yet. */
    s_ctrl(b, 1, "job", id, NULL);
    broker_fx_answer_reads(b);
    s_answer_t a[8] = { 0 };
    assert_int_equal(s_collect(a, 8, 2000), 1);
    assert_true(a[1].ok);
    /* id, queue, type, state, attempt, max_attempts, worker, attempts,
     * options, waits_for, waited_by */
    assert_string_equal(a[1].state, "queued");
    assert_int_equal(a[1].nkeys, 11);
    /* with what it was submitted with */
    assert_true(a[1].opt_priority >= 0 && a[1].opt_priority <= 9);
    assert_true(a[1].opt_payload_bytes > 0);
    assert_true(a[1].opt_max_attempts >= 2);
    assert_int_equal(a[1].nattempts, 0);

    /* Attempt 1 fails, retryable, with a traceback and stderr. */
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_HANDLER;
    f.message = dv_str("ValueError: no prompt");
    f.retryable = true;
    f.exit_code = 1;
    f.details = dv_str(s_trace);
    f.stderr_tail = dv_str(s_stderr);
    int events = 0;
    s_run_and_fail(fx, w, job, &f, &events);
    assert_int_equal(events, 1); /* job.failed, retrying */
    assert_int_equal(job->state, DV_STATE_SCHEDULED);
    broker_fx_commit(b);

    /* Live (retrying): answered from memory, with the stored attempt. */
    s_ctrl(b, 2, "job", id, NULL);
    assert_int_equal(s_collect(a, 8, 100), 0); /* waits for its read */
    broker_fx_answer_reads(b);
    assert_int_equal(s_collect(a, 8, 2000), 1);
    assert_true(a[2].ok);
    assert_string_equal(a[2].state, "scheduled");
    assert_int_equal(a[2].nkeys, 11);
    assert_int_equal(a[2].nattempts, 1);
    assert_int_equal(a[2].att[0].attempt, 1);
    assert_string_equal(a[2].att[0].worker, "w1");
    assert_string_equal(a[2].att[0].outcome, "failed");
    assert_string_equal(a[2].att[0].category, "handler");
    assert_string_equal(a[2].att[0].message, "ValueError: no prompt");
    assert_true(a[2].att[0].retryable);
    assert_string_equal(a[2].att[0].details, s_trace);
    assert_string_equal(a[2].att[0].stderr_tail, s_stderr);

    /* Attempt 2 fails for good; its stderr is not UTF-8 (dropped, the
     * failure and its details kept). */
    dv_failure_t g = f;
    g.details = dv_str("second try");
    g.stderr_tail = dv_str("bad \xff byte");
    s_run_and_fail(fx, w, job, &g, &events);
    assert_int_equal(events, 3); /* and job.failed, job.dead */
    /* Nor does the result its waiters get. */
    assert_non_null(b->cur->ended);
    assert_true(b->cur->ended->has_failure);
    assert_null(b->cur->ended->failure.details.ptr);
    assert_null(b->cur->ended->failure.stderr_tail.ptr);
    broker_fx_commit(b);
    assert_null(broker_index_get(&b->index, &jid));

    /* Ended (dead): answered from the store, with both attempts. */
    s_ctrl(b, 3, "job", id, NULL);
    broker_fx_answer_reads(b);
    assert_int_equal(s_collect(a, 8, 2000), 1);
    assert_true(a[3].ok);
    assert_string_equal(a[3].state, "dead");
    assert_int_equal(a[3].nkeys, 12);
    assert_true(a[3].opt_payload_bytes > 0); /* from the stored record */
    assert_int_equal(a[3].nattempts, 2);
    assert_int_equal(a[3].att[0].attempt, 1);
    assert_string_equal(a[3].att[0].details, s_trace);
    assert_string_equal(a[3].att[0].stderr_tail, s_stderr);
    assert_int_equal(a[3].att[1].attempt, 2);
    assert_string_equal(a[3].att[1].details, "second try");
    assert_false(a[3].att[1].has_stderr);
    /* attempt, worker, started_at, finished_at, outcome, category,
     * message, retryable, exit_code, key_id, details */
    assert_int_equal(a[3].att[1].nkeys, 11);
}

/* The attempts cannot be read: the job is answered all the same, with
 * why; a live one from memory, an ended one from its row. */
static void
t_job_attempts_read_fails(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char ended[DV_ID_TEXT_LEN + 1], live[DV_ID_TEXT_LEN + 1];
    s_ended_job(fx, ended, DV_STATE_DEAD);
    broker_job_t *job = broker_fx_job(fx, "q", 0, 2);
    broker_id_text(job, live);
    broker_fx_commit(b);
    char path[1200];
    snprintf(path, sizeof path, "%s/drover.db", fx->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE attempts", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    s_ctrl(b, 1, "job", live, NULL);
    s_ctrl(b, 2, "job", ended, NULL);
    broker_fx_answer_reads(b);
    s_answer_t a[4] = { 0 };
    assert_int_equal(s_collect(a, 4, 2000), 2);
    for (int i = 1; i <= 2; i++) {
        assert_true(a[i].ok);
        assert_int_equal(a[i].nattempts, -1);
        assert_true(a[i].attempts_error[0] != '\0');
    }
    assert_string_equal(a[1].state, "queued");
    assert_string_equal(a[2].state, "dead");
}

/* ---- ctrl finished: finished jobs by time, page by page -------------------- */

/* The body a page's views point into; freed with the page. */
static char *s_page_body;

static void
s_page_release(dv_finished_t *p)
{
    dv_finished_release(p);
    free(s_page_body);
    s_page_body = NULL;
}

/* Sends ctrl finished with args, answers the read, and decodes the page
 * into *out (s_page_release it); returns the reply's code. */
static dv_code_t
s_finished(broker_t *b, uint64_t req, int64_t since, int64_t until,
           const char *after, int limit, dv_finished_t *out)
{
    dv_finished_args_t a = { .since_ms = since,
                             .until_ms = until,
                             .after = dv_str(after),
                             .limit = limit };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(dv_finished_args_encode(&a, &sb), DV_OK);
    dv_msg_t m = { .type = DV_MSG_CTRL };
    m.u.ctrl.req = req;
    m.u.ctrl.verb = dv_str("finished");
    m.u.ctrl.args = dv_strn(sb.data, sb.size);
    broker_client_on_message(b, &s_rid, &m);
    msgpack_sbuffer_destroy(&sb);
    broker_fx_answer_reads(b);
    dv_msg_t r;
    zmq_msg_t f;
    assert_true(s_next(2000, &r, &f));
    assert_int_equal(r.type, DV_MSG_REPLY);
    assert_int_equal(r.u.reply.req, req);
    dv_code_t code = r.u.reply.code;
    memset(out, 0, sizeof *out);
    if (r.u.reply.ok) {
        char why[256];
        assert_non_null(r.u.reply.body.ptr);
        /* The views must outlive the frame: decode a copy. */
        char *copy = malloc(r.u.reply.body.len);
        assert_non_null(copy);
        memcpy(copy, r.u.reply.body.ptr, r.u.reply.body.len);
        int rc =
            dv_finished_decode(copy, r.u.reply.body.len, out, why, sizeof why);
        if (rc != DV_OK)
            fail_msg("finished body: %s", why);
        s_page_body = copy;
    }
    s_release(&r, &f);
    return code;
}

static void
t_finished_pages(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    enum { N = 7 };
    char ids[N][DV_ID_TEXT_LEN + 1];
    int64_t t0 = broker_now_ms(b);
    for (int i = 0; i < N; i++) {
        broker_job_t *job = broker_fx_job(fx, "q", 0, 1);
        broker_id_text(job, ids[i]);
        dv_failure_t f;
        dv_failure_init(&f);
        f.category = DV_CAT_HANDLER;
        f.message = dv_str("no");
        /* two at each time, so a page may end inside one millisecond */
        if (i % 2 == 0)
            broker_fx_advance_ms(fx, 10);
        broker_sched_finish(b, job, i == 3 ? DV_STATE_DEAD : DV_STATE_SUCCEEDED,
                            NULL, 0, i == 3 ? &f : NULL);
    }
    broker_job_t *live = broker_fx_job(fx, "q", 0, 1); /* not finished */
    (void)live;
    broker_fx_commit(b);
    int64_t t1 = broker_now_ms(b);

    /* The whole window, three at a time: every job once, in order. */
    int seen = 0;
    int64_t since = t0;
    char after[DV_ID_TEXT_LEN + 1] = "";
    for (int page = 0; page < 10; page++) {
        dv_finished_t p;
        assert_int_equal(s_finished(b, 10 + (uint64_t)page, since, t1,
                                    after[0] ? after : NULL, 3, &p),
                         DV_CODE_NONE);
        for (uint32_t k = 0; k < p.njobs; k++) {
            const dv_finished_job_t *j = &p.jobs[k];
            assert_true(seen < N);
            assert_true(dv_str_eq(j->id, ids[seen]));
            assert_true(dv_str_eq(j->queue, "q"));
            assert_true(dv_str_eq(j->type, "noop"));
            assert_int_equal(j->state,
                             seen == 3 ? DV_STATE_DEAD : DV_STATE_SUCCEEDED);
            if (seen == 3) {
                assert_int_equal(j->category, DV_CAT_HANDLER);
                assert_true(dv_str_eq(j->message, "no"));
            }
            assert_true(j->finished_ms >= t0 && j->finished_ms <= t1);
            since = j->finished_ms;
            dv_str_copy(j->id, after, sizeof after);
            seen++;
        }
        bool more = p.more;
        assert_int_equal(more, p.njobs == 3);
        s_page_release(&p);
        if (!more)
            break;
    }
    assert_int_equal(seen, N);

    /* A window before them all: nothing. */
    dv_finished_t p;
    assert_int_equal(s_finished(b, 30, 0, t0 - 1, NULL, 5, &p), DV_CODE_NONE);
    assert_int_equal(p.njobs, 0);
    assert_false(p.more);
    s_page_release(&p);

    /* Args that do not decode: refused at once, with the reason. */
    dv_msg_t m = { .type = DV_MSG_CTRL };
    m.u.ctrl.req = 31;
    m.u.ctrl.verb = dv_str("finished");
    broker_client_on_message(b, &s_rid, &m);
    s_answer_t a[40] = { 0 };
    assert_int_equal(s_collect(a, 40, 2000), 1);
    assert_int_equal(a[31].code, DV_CODE_INVALID_ARGUMENT);
}

/* The job events of a group are one batch in seq order; a worker event
 * in between ends it. */
static void
t_job_events_batched(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_job_t *jobs[3];
    for (int i = 0; i < 3; i++)
        jobs[i] = broker_fx_job(fx, "q", 0, 1);
    broker_fx_commit(b);
    uint64_t first = b->event_seq;
    broker_sched_finish(b, jobs[0], DV_STATE_SUCCEEDED, NULL, 0, NULL);
    broker_sched_finish(b, jobs[1], DV_STATE_SUCCEEDED, NULL, 0, NULL);
    dv_event_t w = { .kind_enum = DV_EV_WORKER_LEFT, .worker = dv_str("w9") };
    broker_out_event(b, &w);
    broker_sched_finish(b, jobs[2], DV_STATE_SUCCEEDED, NULL, 0, NULL);
    const broker_group_t *g = b->cur;
    uint64_t seq = first;
    int batches = 0, lone = 0;
    for (size_t i = 0; i < g->nsends; i++) {
        const broker_send_t *snd = &g->sends[i];
        if (snd->socket != b->events)
            continue;
        const msgpack_sbuffer *buf = snd->batch ? &g->evbuf : &g->outbuf;
        dv_msg_t m;
        assert_int_equal(
            dv_msg_decode(buf->data + snd->off, snd->len, &m, NULL, 0), DV_OK);
        if (snd->batch) {
            assert_string_equal(snd->topic, "jobs");
            assert_int_equal(m.type, DV_MSG_EVENTS);
            for (uint32_t k = 0; k < m.u.events.nevents; k++) {
                assert_int_equal(m.u.events.events[k].seq, ++seq);
                assert_true(dv_event_is_job(&m.u.events.events[k]));
            }
            batches++;
        } else {
            assert_string_equal(snd->topic, "worker.left");
            assert_int_equal(m.type, DV_MSG_EVENT);
            assert_int_equal(m.u.event.seq, ++seq);
            lone++;
        }
        dv_msg_release(&m);
    }
    assert_int_equal(seq, b->event_seq);
    assert_int_equal(batches, 2);
    assert_int_equal(lone, 1);
}

int
main(void)
{
    dv_log_init("broker_reads_test", DV_WARN, 1);
#define T(f) cmocka_unit_test_setup_teardown(f, s_setup, s_teardown)
    const struct CMUnitTest tests[] = {
        T(t_slow_read_delays_only_its_request),
        T(t_duplicate_key_race_gives_one_job),
        T(t_full_queue_answers_busy),
        T(t_stop_fails_pending_reads),
        T(t_retry_dead_in_chunks),
        T(t_check_waits_for_its_scan_only),
        T(t_job_attempts_keep_details),
        T(t_job_attempts_read_fails),
        T(t_finished_pages),
        T(t_job_events_batched),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
