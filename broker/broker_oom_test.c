/* Out-of-memory tests of the broker's containers (queues, interned names,
 * workers by name, pending idempotency keys, purge): a submit, a hello and
 * a purge are run again and again with the Nth allocation failing, until
 * one runs with none failing. Nothing may crash or abort, and what is
 * left must be consistent: a job is either accepted (indexed, pending,
 * its key pending with its id) or refused (nowhere, its key not pending);
 * a worker is either known with its queues or not there; a purge cancels
 * all of a queue's waiting jobs or none.
 *
 * Like broker_sched_test, without sockets (what would be sent goes
 * nowhere). The allocator is wrapped at link time (-Wl,--wrap, see
 * CMakeLists.txt) for the code linked into this program; failures are
 * only injected while the loop's calls run, with the writer and reader
 * threads idle: a submit whose keys need a store read is counted while it
 * is handed to the reader and again while its answer is built, not while
 * the reader reads. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker_internal.h"
#include "broker_test_fx.h"
#include "dv_log.h"
#include "oom_inject.h"

/* Answers every store read handed to the reader. */
static void
s_reads(broker_t *b)
{
    while (broker_reader_wait(b->reader))
        broker_reads_ready(b);
}

/* Commits everything recorded so far and sends what waited on it. */
static void
s_settle(broker_t *b)
{
    s_reads(b);
    broker_group_end_pass(b);
    broker_group_drain_all(b);
}

/* A client message handled with the nth allocation on the loop failing:
 * counted while the message is handled and, if it waits for a store read,
 * again while the read's answer is built. Returns whether the nth was
 * reached. */
static bool
s_client_oom(broker_t *b, const broker_rid_t *rid, const dv_msg_t *msg, long n)
{
    oom_inject(n, false);
    broker_client_on_message(b, rid, msg);
    long used = oom_count();
    bool hit = oom_injected();
    if (!hit && broker_reader_outstanding(b->reader) > 0) {
        broker_reader_wait(b->reader); /* read, the reader idle again */
        oom_inject(n - used, false);
        broker_reads_ready(b);
        hit = oom_injected();
    }
    s_reads(b);
    return hit;
}

static broker_ack_batch_t *
s_last_batch(broker_t *b)
{
    broker_ack_batch_t *last = NULL;
    for (broker_ack_batch_t *a = b->cur->acks; a; a = a->next)
        last = a;
    return last;
}

/* A submit of three jobs (two with keys, one with a batch) to a new queue
 * with a new type, with the nth allocation failing. */
/* The pending idempotency key of a job without an owner (owner index 0). */
static const broker_pkey_t *
s_pkey(broker_t *b, const char *key)
{
    char scoped[64];
    snprintf(scoped, sizeof scoped, "0:%s", key);
    return dv_map_get(b->pending_keys, scoped);
}

static void
t_submit(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_rid_t rid = { .len = 6 };
    memcpy(rid.data, "client", 6);
    for (long n = 1;; n++) {
        char queue[32], type[32], batch[32], key0[32], key2[32];
        snprintf(queue, sizeof queue, "q%ld", n);
        snprintf(type, sizeof type, "t%ld", n);
        snprintf(batch, sizeof batch, "b%ld", n);
        snprintf(key0, sizeof key0, "k%ld-0", n);
        snprintf(key2, sizeof key2, "k%ld-2", n);
        const char *keys[3] = { key0, NULL, key2 };
        dv_jobspec_t js[3];
        memset(js, 0, sizeof js);
        for (int i = 0; i < 3; i++) {
            js[i].queue = dv_str(queue);
            js[i].type = dv_str(type);
            js[i].payload = dv_strn("\x90", 1);
            js[i].key = dv_str(keys[i]);
            js[i].priority = 5;
        }
        js[1].batch = dv_str(batch);
        dv_msg_t msg = { .type = DV_MSG_SUBMIT };
        msg.u.submit.req = (uint64_t)n;
        msg.u.submit.jobs = js;
        msg.u.submit.njobs = 3;

        s_settle(b);
        broker_ack_batch_t *before = s_last_batch(b);
        bool hit = s_client_oom(b, &rid, &msg, n);

        broker_ack_batch_t *a = s_last_batch(b);
        if (a == before) { /* the batch itself could not be made */
            assert_true(hit);
            assert_null(s_pkey(b, key0));
            assert_null(s_pkey(b, key2));
            continue;
        }
        int accepted = 0;
        for (int i = 0; i < 3; i++) {
            const broker_pkey_t *pk = keys[i] ? s_pkey(b, keys[i]) : NULL;
            if (a->jobs[i]) {
                dv_id_t id;
                assert_int_equal(dv_id_parse(a->ids[i], DV_ID_TEXT_LEN, &id),
                                 0);
                assert_ptr_equal(broker_index_get(&b->index, &id), a->jobs[i]);
                assert_true(a->jobs[i]->flags & BROKER_JOB_PENDING);
                assert_non_null(a->jobs[i]->queue);
                assert_ptr_equal(dv_map_get(b->queues, queue),
                                 a->jobs[i]->queue);
                assert_ptr_equal(dv_map_get(b->types, type), a->jobs[i]->type);
                if (keys[i]) {
                    assert_non_null(pk);
                    assert_string_equal(pk->id, a->ids[i]);
                }
                accepted++;
            } else {
                assert_non_null(a->errors[i]);
                assert_null(pk);
            }
        }
        if (!hit) {
            assert_int_equal(accepted, 3);
            break;
        }
    }
    s_settle(b);
    assert_int_equal(dv_map_size(b->pending_keys), 0);
    assert_null(b->cur->keys);
}

/* A hello from a new worker serving a new queue, with the nth allocation
 * failing. */
static void
t_hello(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    for (long n = 1;; n++) {
        char name[32], queue[32];
        snprintf(name, sizeof name, "w%ld", n);
        snprintf(queue, sizeof queue, "hq%ld", n);
        broker_rid_t rid = { .len = (uint8_t)strlen(name) };
        memcpy(rid.data, name, rid.len);
        dv_str_t queues[1] = { dv_str(queue) };
        dv_msg_t msg = { .type = DV_MSG_HELLO };
        msg.u.hello.name = dv_str(name);
        msg.u.hello.host = dv_str("host");
        msg.u.hello.pid = 1;
        msg.u.hello.queues = queues;
        msg.u.hello.nqueues = 1;
        msg.u.hello.concurrency = 1;
        msg.u.hello.credit = 1;
        msg.u.hello.fencing = true;

        size_t nworkers = dv_map_size(b->worker_by_name);
        oom_inject(n, false);
        broker_worker_on_message(b, &rid, &msg);
        bool hit = oom_injected();

        broker_worker_t *w = dv_map_get(b->worker_by_name, name);
        if (w) {
            assert_true(w->known);
            assert_int_equal(w->nqueues, 1);
            assert_ptr_equal(w->queues[0], dv_map_get(b->queues, queue));
            assert_string_equal(w->queues[0]->name, queue);
            assert_int_equal(dv_map_size(b->worker_by_name), nworkers + 1);
        } else {
            assert_true(hit);
            assert_int_equal(dv_map_size(b->worker_by_name), nworkers);
        }
        broker_worker_t *any;
        DV_MAP_EACH(any, b->worker_by_name)
        {
            assert_true(any->known);
        }
        if (!hit) {
            assert_non_null(w);
            break;
        }
    }
}

/* A job of queue, ready or scheduled delay_ms from now, as a committed
 * submit leaves it: the fixture's ready job, moved to its time in memory
 * and in the group that records it. */
static void
s_job(broker_fx_t *fx, const char *queue, int64_t delay_ms)
{
    broker_job_t *job = broker_fx_job(fx, queue, 0, 3);
    if (!delay_ms)
        return;
    broker_sched_unplace(fx->b, job);
    job->run_at_ms = fx->clock.now_ms + delay_ms; /* ready_us until now */
    broker_sched_place(fx->b, job, false);
    assert_int_equal(job->state, DV_STATE_SCHEDULED);
    char idtext[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, idtext);
    assert_int_equal(broker_wbatch_waiting(&fx->b->cur->wb, idtext, job->state,
                                           job->run_at_ms, 0, NULL),
                     0);
}

/* A purge of a queue with two ready and two scheduled jobs (and a
 * scheduled job of another queue), with the nth allocation failing. */
static void
t_purge(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    s_job(fx, "other", 60000);
    for (long n = 1;; n++) {
        char queue[32];
        snprintf(queue, sizeof queue, "pq%ld", n);
        s_job(fx, queue, 0);
        s_job(fx, queue, 60000);
        s_job(fx, queue, 0);
        s_job(fx, queue, 120000);
        s_settle(b);
        broker_queue_t *q = dv_map_get(b->queues, queue);
        assert_non_null(q);
        size_t live = b->index.count;
        broker_rid_t rid = { .len = 6 };
        memcpy(rid.data, "client", 6);
        dv_msg_t msg = { .type = DV_MSG_CTRL };
        msg.u.ctrl.req = (uint64_t)n;
        msg.u.ctrl.verb = dv_str("purge");
        msg.u.ctrl.queue = dv_str(queue);

        oom_inject(n, false);
        broker_client_on_message(b, &rid, &msg);
        bool hit = oom_injected();

        if (q->ready == 2) { /* failed: nothing changed */
            assert_true(hit);
            assert_int_equal(q->scheduled, 2);
            assert_int_equal(b->index.count, live);
        } else {
            assert_int_equal(q->ready, 0);
            assert_int_equal(q->scheduled, 0);
        }
        s_settle(b);
        assert_int_equal(b->index.count, live - (q->ready ? 0 : 4));
        const broker_queue_t *other = dv_map_get(b->queues, "other");
        assert_int_equal(other->scheduled, 1);
        if (!hit)
            break;
    }
}

/* Items a dv_map holds when its next put doubles its table (it starts
 * with 16 slots and is kept at most half full). */
#define S_FULL 8

/* Each map of the broker with S_FULL items, so that the next put needs
 * memory, and that put failing: the item is not there, nothing else
 * changed, and the next try succeeds. */
static void
t_map_growth(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char name[32];
    long n;

    /* queues */
    for (int i = 0; dv_map_size(b->queues) < S_FULL; i++) {
        snprintf(name, sizeof name, "pad%d", i);
        assert_non_null(broker_sched_queue(b, name));
    }
    for (n = 1;; n++) {
        oom_inject(n, false);
        broker_queue_t *q = broker_sched_queue(b, "grown");
        bool hit = oom_injected();
        assert_ptr_equal(dv_map_get(b->queues, "grown"), q);
        assert_int_equal(dv_map_size(b->queues), S_FULL + (q ? 1 : 0));
        if (!hit)
            break;
        assert_null(q);
    }
    assert_true(n > 3); /* the queue, its name, the table */

    /* interned names */
    for (int i = 0; dv_map_size(b->types) < S_FULL; i++) {
        snprintf(name, sizeof name, "type%d", i);
        assert_non_null(broker_sched_intern(b, dv_str(name)));
    }
    for (n = 1;; n++) {
        oom_inject(n, false);
        const char *t = broker_sched_intern(b, dv_str("grown"));
        bool hit = oom_injected();
        assert_ptr_equal(dv_map_get(b->types, "grown"), t);
        if (!hit)
            break;
        assert_null(t);
    }
    assert_true(n > 2); /* the copy, the table */

    /* workers, by hello */
    for (int i = 0; dv_map_size(b->worker_by_name) < S_FULL; i++) {
        broker_rid_t rid = { .len = (uint8_t)snprintf(name, sizeof name,
                                                      "pad%d", i) };
        memcpy(rid.data, name, rid.len);
        assert_non_null(broker_worker_new(b, &rid));
    }
    broker_rid_t wrid = { .len = 5 };
    memcpy(wrid.data, "grown", 5);
    dv_str_t queues[1] = { dv_str("grown") };
    dv_msg_t hello = { .type = DV_MSG_HELLO };
    hello.u.hello.queues = queues;
    hello.u.hello.nqueues = 1;
    hello.u.hello.credit = 1;
    hello.u.hello.fencing = true;
    for (n = 1;; n++) {
        oom_inject(n, false);
        broker_worker_on_message(b, &wrid, &hello);
        bool hit = oom_injected();
        broker_worker_t *w = dv_map_get(b->worker_by_name, "grown");
        assert_int_equal(dv_map_size(b->worker_by_name), S_FULL + (w ? 1 : 0));
        if (w) { /* joined (a later failure may have lost its welcome) */
            assert_true(w->known);
            assert_int_equal(w->nqueues, 1);
            break;
        }
        assert_true(hit);
    }
    assert_true(n > 4); /* the worker, its name, the table, its queues */

    /* pending idempotency keys: S_FULL keyed jobs not committed yet */
    s_settle(b);
    broker_rid_t crid = { .len = 6 };
    memcpy(crid.data, "client", 6);
    char keys[S_FULL][16];
    dv_jobspec_t js[S_FULL];
    memset(js, 0, sizeof js);
    for (int i = 0; i < S_FULL; i++) {
        snprintf(keys[i], sizeof keys[i], "pad%d", i);
        js[i].queue = dv_str("grown");
        js[i].type = dv_str("grown");
        js[i].key = dv_str(keys[i]);
    }
    dv_msg_t submit = { .type = DV_MSG_SUBMIT };
    submit.u.submit.jobs = js;
    submit.u.submit.njobs = S_FULL;
    broker_client_on_message(b, &crid, &submit);
    s_reads(b);
    assert_int_equal(dv_map_size(b->pending_keys), S_FULL);
    js[0].key = dv_str("grown");
    submit.u.submit.njobs = 1;
    for (n = 1;; n++) {
        bool hit = s_client_oom(b, &crid, &submit, n);
        broker_ack_batch_t *a = s_last_batch(b);
        const broker_pkey_t *pk = s_pkey(b, "grown");
        assert_int_equal(dv_map_size(b->pending_keys), S_FULL + (pk ? 1 : 0));
        if (pk) {
            assert_non_null(a->jobs[0]);
            assert_string_equal(pk->id, a->ids[0]);
        }
        if (!hit)
            break;
        assert_null(pk);
    }
    assert_true(n > 3); /* the batch, the job, the key, the table */
    s_settle(b);
    assert_int_equal(dv_map_size(b->pending_keys), 0);

    /* a group's results, by client */
    for (int i = 0; dv_map_size(b->cur->results_out) < S_FULL; i++) {
        broker_rid_t rid = { .len = (uint8_t)snprintf(name, sizeof name,
                                                      "client%d", i) };
        memcpy(rid.data, name, rid.len);
        assert_non_null(broker_client_results_for(b->cur, &rid));
    }
    for (n = 1;; n++) {
        oom_inject(n, false);
        broker_results_t *r = broker_client_results_for(b->cur, &wrid);
        bool hit = oom_injected();
        assert_ptr_equal(
            dv_map_getn(b->cur->results_out, (const char *)wrid.data, wrid.len),
            r);
        if (!hit)
            break;
        assert_null(r);
    }
    assert_true(n > 2); /* the results, the table */
    s_settle(b);
    assert_int_equal(dv_map_size(b->cur->results_out), 0);
}

int
main(void)
{
    dv_log_init("broker_oom_test", DV_OFF, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_submit, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_hello, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_purge, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_map_growth, broker_fx_setup,
                                        broker_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
