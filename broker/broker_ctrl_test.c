/* Unit tests for the queue verbs of broker_ctrl.c: pause, resume, rate,
 * max-running and purge act only on a queue the broker knows (it has had
 * a job, has stored settings, or a worker serves it), unless the ctrl's
 * args say {create: true}; and they answer with the queue's settings.
 * A broker made by broker_core_open on a real SQLite store in a temp dir,
 * with a client socket of its own (a ROUTER on inproc, and a DEALER the
 * test reads the answers from), as in broker_reads_test.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <zmq.h>

#include "broker_internal.h"
#include "broker_test_fx.h"
#include "dv_json.h"

static void *s_dealer; /* the client */
static const broker_rid_t s_rid = { .len = 3, .data = "cli" };

/* Gives fx->b a client socket and connects the test's DEALER to it. */
static void
s_attach(broker_fx_t *fx)
{
    s_dealer = broker_fx_client(fx);
}

static void
s_detach(void)
{
    zmq_close(s_dealer);
    s_dealer = NULL;
}

static int
s_setup(void **state)
{
    broker_fx_setup(state);
    s_attach(*state);
    return 0;
}

static int
s_teardown(void **state)
{
    s_detach();
    return broker_fx_teardown(state);
}

/* What the client got for one request. */
typedef struct {
    bool ok;
    dv_code_t code;
    char error[160];
    json_t *body; /* NULL: none */
} s_answer_t;

/* Sends a ctrl verb for queue (value < 0: none; create: args
 * {create: true}), commits, and returns the answer. */
static s_answer_t
s_ctrl(broker_t *b, const char *verb, const char *queue, double value,
       bool create)
{
    static uint64_t req;
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    dv_msg_t m = { .type = DV_MSG_CTRL };
    m.u.ctrl.req = ++req;
    m.u.ctrl.verb = dv_str(verb);
    m.u.ctrl.queue = dv_str(queue);
    if (value >= 0) {
        m.u.ctrl.has_value = true;
        m.u.ctrl.value = value;
    }
    if (create) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "create", 6);
        msgpack_pack_true(&pk);
        m.u.ctrl.args = dv_strn(args.data, args.size);
    }
    broker_client_on_message(b, &s_rid, &m);
    msgpack_sbuffer_destroy(&args);
    broker_fx_commit(b);

    s_answer_t a = { 0 };
    zmq_pollitem_t it = { s_dealer, 0, ZMQ_POLLIN, 0 };
    assert_int_equal(zmq_poll(&it, 1, 2000), 1);
    zmq_msg_t f;
    zmq_msg_init(&f);
    assert_true(zmq_msg_recv(&f, s_dealer, 0) >= 0);
    dv_msg_t r;
    char why[128] = "";
    assert_int_equal(
        dv_msg_decode(zmq_msg_data(&f), zmq_msg_size(&f), &r, why, sizeof why),
        DV_OK);
    assert_int_equal(r.type, DV_MSG_REPLY);
    assert_int_equal(r.u.reply.req, req);
    a.ok = r.u.reply.ok;
    a.code = r.u.reply.code;
    size_t n = r.u.reply.error.len < sizeof a.error - 1 ? r.u.reply.error.len
                                                        : sizeof a.error - 1;
    if (n)
        memcpy(a.error, r.u.reply.error.ptr, n);
    if (r.u.reply.body.len)
        a.body =
            dv_msgpack_to_json(r.u.reply.body.ptr, r.u.reply.body.len, NULL, 0);
    dv_msg_release(&r);
    zmq_msg_close(&f);
    return a;
}

static void
s_not_found(broker_t *b, const char *verb, double value)
{
    s_answer_t a = s_ctrl(b, verb, "nosuch", value, false);
    assert_false(a.ok);
    assert_int_equal(a.code, DV_CODE_NOT_FOUND);
    assert_string_equal(a.error, "no queue 'nosuch': it has never had a job");
    assert_null(a.body);
}

static void
t_unknown_queue_is_not_made(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    s_not_found(b, "pause", -1);
    s_not_found(b, "resume", -1);
    s_not_found(b, "rate", 5);
    s_not_found(b, "max-running", 2);
    s_not_found(b, "purge", -1);
    assert_null(dv_map_get(b->queues, "nosuch"));
    /* Nothing was written for it either. */
    s_detach();
    broker_fx_restart(fx);
    s_attach(fx);
    assert_null(dv_map_get(fx->b->queues, "nosuch"));
}

static void
t_create_makes_it_and_answers_settings(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    s_answer_t a = s_ctrl(b, "pause", "later", -1, true);
    assert_true(a.ok);
    assert_non_null(a.body);
    assert_string_equal(json_string_value(json_object_get(a.body, "queue")),
                        "later");
    assert_true(json_is_true(json_object_get(a.body, "paused")));
    assert_true(json_number_value(json_object_get(a.body, "rate")) == 0);
    assert_int_equal(json_integer_value(json_object_get(a.body, "max_running")),
                     0);
    json_decref(a.body);
    broker_queue_t *q = dv_map_get(b->queues, "later");
    assert_non_null(q);
    assert_true(q->paused);

    /* Known now: no create needed; the answer has every setting. */
    a = s_ctrl(b, "rate", "later", 2.5, false);
    assert_true(a.ok);
    assert_true(json_number_value(json_object_get(a.body, "rate")) == 2.5);
    assert_true(json_is_true(json_object_get(a.body, "paused")));
    json_decref(a.body);
    a = s_ctrl(b, "max-running", "later", 3, false);
    assert_true(a.ok);
    assert_int_equal(json_integer_value(json_object_get(a.body, "max_running")),
                     3);
    json_decref(a.body);

    /* Known after a restart too, from its stored settings. */
    s_detach();
    broker_fx_restart(fx);
    s_attach(fx);
    b = fx->b;
    assert_non_null(dv_map_get(b->queues, "later"));
    a = s_ctrl(b, "resume", "later", -1, false);
    assert_true(a.ok);
    assert_false(json_is_true(json_object_get(a.body, "paused")));
    assert_true(json_number_value(json_object_get(a.body, "rate")) == 2.5);
    json_decref(a.body);
}

static void
t_queue_with_jobs_or_worker_is_known(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_fx_job(fx, "busy", 0, 1);
    broker_fx_commit(b);
    s_answer_t a = s_ctrl(b, "purge", "busy", -1, false);
    assert_true(a.ok);
    assert_int_equal(json_integer_value(json_object_get(a.body, "purged")), 1);
    json_decref(a.body);
    a = s_ctrl(b, "pause", "busy", -1, false);
    assert_true(a.ok);
    json_decref(a.body);
    /* A queue a worker serves, before its first job. */
    broker_fx_worker(fx, "w1", "served", 1);
    a = s_ctrl(b, "max-running", "served", 4, false);
    assert_true(a.ok);
    json_decref(a.body);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_unknown_queue_is_not_made, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_create_makes_it_and_answers_settings,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_queue_with_jobs_or_worker_is_known,
                                        s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
