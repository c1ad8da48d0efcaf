/* Unit tests for jobs the broker submits itself (broker_self.c): the ack
 * comes back to the submitter's callback once the insert is durable, a
 * second submit with the same key is a duplicate (from memory, and from the
 * store after a restart), a store outage refuses it, and a client may not
 * use the broker's own key prefix. A broker without sockets on a real
 * SQLite store (broker_test_fx.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker_internal.h"
#include "broker_test_fx.h"

typedef struct {
    int calls;
    bool duplicate;
    char id[DV_ID_TEXT_LEN + 1];
    char error[128];
    dv_code_t code;
} s_seen_t;

static void
s_cb(broker_t *self, void *arg, const dv_submit_ack_t *ack)
{
    (void)self;
    s_seen_t *s = arg;
    s->calls++;
    s->duplicate = ack->duplicate;
    dv_str_copy(ack->id, s->id, sizeof s->id);
    dv_str_copy(ack->error, s->error, sizeof s->error);
    s->code = ack->code;
}

static dv_jobspec_t
s_spec(const char *key)
{
    dv_jobspec_t js = { 0 };
    js.queue = dv_str("q");
    js.type = dv_str("report");
    js.key = dv_str(key);
    js.priority = 5;
    return js;
}

static void
t_durable_then_duplicate(void **state)
{
    broker_fx_t *fx = *state;
    dv_jobspec_t js = s_spec("drover:schedule:nightly:1");
    s_seen_t a = { 0 };
    assert_int_equal(broker_self_submit(fx->b, &js, NULL, s_cb, &a), 0);
    broker_fx_answer_reads(fx->b); /* the key was not pending: a store read */
    assert_int_equal(a.calls, 0);  /* not before the insert is durable */
    broker_fx_commit(fx->b);
    assert_int_equal(a.calls, 1);
    assert_false(a.duplicate);
    assert_int_equal(strlen(a.id), DV_ID_TEXT_LEN);
    assert_int_equal(fx->b->counters.submitted, 1);

    /* Again, while the key is known: the same job. */
    s_seen_t b = { 0 };
    assert_int_equal(broker_self_submit(fx->b, &js, NULL, s_cb, &b), 0);
    broker_fx_answer_reads(fx->b);
    broker_fx_commit(fx->b);
    assert_int_equal(b.calls, 1);
    assert_true(b.duplicate);
    assert_string_equal(b.id, a.id);

    /* After a restart the key is found in the store. */
    broker_fx_restart(fx);
    s_seen_t c = { 0 };
    assert_int_equal(broker_self_submit(fx->b, &js, NULL, s_cb, &c), 0);
    broker_fx_answer_reads(fx->b);
    broker_fx_commit(fx->b);
    assert_int_equal(c.calls, 1);
    assert_true(c.duplicate);
    assert_string_equal(c.id, a.id);
    assert_null(fx->b->self_subs);
}

static void
t_owner_scopes_the_key(void **state)
{
    broker_fx_t *fx = *state;
    dv_jobspec_t js = s_spec("drover:batch:b1:complete");
    s_seen_t a = { 0 }, b = { 0 };
    assert_int_equal(broker_self_submit(fx->b, &js, "alice", s_cb, &a), 0);
    broker_fx_answer_reads(fx->b);
    broker_fx_commit(fx->b);
    assert_int_equal(broker_self_submit(fx->b, &js, "bob", s_cb, &b), 0);
    broker_fx_answer_reads(fx->b);
    broker_fx_commit(fx->b);
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 1);
    assert_false(b.duplicate);
    assert_string_not_equal(a.id, b.id);
    dv_id_t id;
    assert_int_equal(dv_id_parse(a.id, strlen(a.id), &id), 0);
    broker_job_t *job = broker_index_get(&fx->b->index, &id);
    assert_non_null(job);
    assert_string_equal(broker_sched_owner_name(fx->b, job->owner), "alice");
}

static void
t_refused_while_the_store_fails(void **state)
{
    broker_fx_t *fx = *state;
    fx->b->store_failed = true;
    snprintf(fx->b->store_reason, sizeof fx->b->store_reason,
             "store unavailable: disk full");
    dv_jobspec_t js = s_spec("drover:schedule:x:1");
    s_seen_t a = { 0 };
    assert_int_equal(broker_self_submit(fx->b, &js, NULL, s_cb, &a), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.code, DV_CODE_STORE);
    assert_string_equal(a.error, "store unavailable: disk full");
    assert_null(fx->b->self_subs);
    fx->b->store_failed = false;
}

/* The client of the prefix test; closed by its teardown even when the
 * test fails (an open socket would hang the context's end). */
static void *s_dealer;

static int
s_teardown_client(void **state)
{
    zmq_close(s_dealer);
    s_dealer = NULL;
    return broker_fx_teardown(state);
}

/* A client may not take the broker's own keys (it could block a firing). */
static void
t_client_may_not_use_the_prefix(void **state)
{
    broker_fx_t *fx = *state;
    s_dealer = broker_fx_client(fx);
    dv_jobspec_t js = s_spec("drover:schedule:nightly:1");
    dv_msg_t m = { .type = DV_MSG_SUBMIT };
    m.u.submit.req = 7;
    m.u.submit.jobs = &js;
    m.u.submit.njobs = 1;
    broker_rid_t rid = { .len = 3, .data = "cli" };
    broker_client_on_message(fx->b, &rid, &m);
    broker_fx_answer_reads(fx->b);
    broker_fx_commit(fx->b);
    dv_msg_t r;
    zmq_msg_t f;
    broker_fx_recv(s_dealer, DV_MSG_SUBMIT_REPLY, 2000, &r, &f);
    assert_int_equal(r.u.submit_reply.req, 7);
    assert_int_equal(r.u.submit_reply.nacks, 1);
    assert_int_equal(r.u.submit_reply.acks[0].code, DV_CODE_INVALID_ARGUMENT);
    assert_int_equal(r.u.submit_reply.acks[0].id.len, 0);
    dv_msg_release(&r);
    zmq_msg_close(&f);
    assert_int_equal(fx->b->counters.submitted, 0);
    assert_int_equal(fx->b->index.count, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_durable_then_duplicate,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_owner_scopes_the_key, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_refused_while_the_store_fails,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_client_may_not_use_the_prefix,
                                        broker_fx_setup, s_teardown_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
