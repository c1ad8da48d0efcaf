/* Unit tests for scheduling and dispatch (broker_sched.c, worker expiry in
 * broker_worker.c), without sockets: a broker made by broker_core_open on a
 * real SQLite store in a temp dir, fake workers made through the internal
 * API, and a fake clock the tests move by hand. What a pass would send to
 * a worker is read from the worker's out list and then dropped, as the end
 * of a pass would. */
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

/* No worker with credit serves a queue that could start a job and has one
 * ready. */
static void
s_assert_no_idle_slot(broker_t *b)
{
    broker_worker_t *w;
    DV_MAP_EACH(w, b->worker_by_name)
    {
        if (w->credit <= 0 || !w->known || w->draining)
            continue;
        for (int i = 0; i < w->nqueues; i++) {
            broker_queue_t *q = w->queues[i];
            bool limited = q->paused ||
                           (q->max_running && q->running >= q->max_running) ||
                           (q->rate > 0 && q->tokens < 1.0);
            if (!limited && q->ready)
                fail_msg("worker %s has credit %d and queue %s has %zu ready",
                         w->name, w->credit, q->name, q->ready);
        }
    }
}

/* Dispatches, checks the invariants, and returns how many jobs went out
 * (then drops the out lists, as the end of a pass sends them). */
static int
s_dispatch(broker_fx_t *fx)
{
    broker_t *b = fx->b;
    uint64_t before = b->counters.dispatched;
    broker_sched_dispatch(b);
    s_assert_no_idle_slot(b);
    int sent = 0;
    for (size_t k = 0; k < b->noutq; k++) {
        broker_worker_t *w = b->outq[k];
        for (uint32_t i = 0; i < w->out_count; i++) {
            broker_job_t *job = w->out[i];
            assert_int_equal(job->state, DV_STATE_RUNNING);
            assert_ptr_equal(job->worker, w);
        }
        sent += (int)w->out_count;
        assert_true(w->credit >= 0);
    }
    assert_int_equal(b->counters.dispatched - before, sent);
    return sent;
}

static void
s_end_pass(broker_fx_t *fx)
{
    broker_t *b = fx->b;
    for (size_t k = 0; k < b->noutq; k++)
        b->outq[k]->out_count = 0;
    b->noutq = 0;
}

static dv_failure_t
s_failure(dv_category_t cat, bool retryable, int64_t retry_after_ms)
{
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = cat;
    f.retryable = retryable;
    f.retry_after_ms = retry_after_ms;
    f.message = dv_str("it broke");
    return f;
}

/* ---- tests ---------------------------------------------------------------- */

static void
t_priority_then_fifo(void **state)
{
    broker_fx_t *fx = *state;
    int prio[8] = { 0, 5, 9, 5, 0, 9, 3, 9 };
    broker_job_t *jobs[8];
    for (int i = 0; i < 8; i++)
        jobs[i] = broker_fx_job(fx, "q", prio[i], 3);
    broker_worker_t *w = broker_fx_worker(fx, "w1", "q", 8);
    assert_int_equal(s_dispatch(fx), 8);
    int want[8] = { 2, 5, 7, 1, 3, 6, 0, 4 };
    for (int k = 0; k < 8; k++)
        assert_ptr_equal(w->out[k], jobs[want[k]]);
    for (int i = 0; i < 8; i++)
        assert_int_equal(jobs[i]->attempt, 1);
    assert_int_equal(w->credit, 0);
    assert_int_equal(w->running.count, 8);
    s_end_pass(fx);
}

static void
t_round_robin_over_queues(void **state)
{
    broker_fx_t *fx = *state;
    for (int i = 0; i < 3; i++) {
        broker_fx_job(fx, "a", 0, 3);
        broker_fx_job(fx, "b", 0, 3);
        broker_fx_job(fx, "c", 0, 3);
    }
    /* Priority does not beat the rotation between queues. */
    broker_fx_job(fx, "c", 9, 3);
    broker_worker_t *w = broker_fx_worker(fx, "w1", "a,b,c", 7);
    assert_int_equal(s_dispatch(fx), 7);
    const char *want[7] = { "a", "b", "c", "a", "b", "c", "a" };
    for (int k = 0; k < 7; k++)
        assert_string_equal(w->out[k]->queue->name, want[k]);
    assert_int_equal(w->out[2]->priority, 9); /* c's best first */
    s_end_pass(fx);

    /* The rotation goes on where it stopped. */
    w->credit = 2;
    assert_int_equal(s_dispatch(fx), 2);
    assert_string_equal(w->out[0]->queue->name, "b");
    assert_string_equal(w->out[1]->queue->name, "c");
    s_end_pass(fx);
}

static void
t_credit_never_exceeded(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    for (int i = 0; i < 10; i++)
        broker_fx_job(fx, "q", i % 10, 3);
    broker_worker_t *w1 = broker_fx_worker(fx, "w1", "q", 1);
    broker_worker_t *w2 = broker_fx_worker(fx, "w2", "q", 2);
    broker_worker_t *w3 = broker_fx_worker(fx, "w3", "q", 3);
    broker_worker_t *wx = broker_fx_worker(fx, "wx", "other", 5);
    assert_int_equal(s_dispatch(fx), 6);
    assert_int_equal(w1->running.count, 1);
    assert_int_equal(w2->running.count, 2);
    assert_int_equal(w3->running.count, 3);
    assert_int_equal(wx->running.count, 0);
    assert_int_equal(w1->credit + w2->credit + w3->credit, 0);
    assert_int_equal(wx->credit, 5);
    broker_queue_t *q = broker_sched_queue(b, "q");
    assert_int_equal(q->ready, 4);
    assert_int_equal(q->running, 6);
    s_end_pass(fx);

    /* Nothing more without credit. */
    assert_int_equal(s_dispatch(fx), 0);

    /* Credit comes back: exactly that much goes out. */
    w2->credit += 3;
    assert_int_equal(s_dispatch(fx), 3);
    assert_int_equal(w2->running.count, 5);
    assert_int_equal(q->ready, 1);
    s_end_pass(fx);

    /* A draining worker gets nothing. */
    w3->credit = 4;
    w3->draining = true;
    assert_int_equal(s_dispatch(fx), 0);
    assert_int_equal(q->ready, 1);
}

static void
t_paused_queue(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_queue_t *p = broker_sched_queue(b, "p");
    p->paused = true;
    broker_ctrl_queue_save(b, p, DV_EV_QUEUE_PAUSED);
    for (int i = 0; i < 3; i++) {
        broker_fx_job(fx, "p", 0, 3);
        broker_fx_job(fx, "r", 0, 3);
    }
    broker_worker_t *w = broker_fx_worker(fx, "w1", "p,r", 10);
    assert_int_equal(s_dispatch(fx), 3);
    for (int k = 0; k < 3; k++)
        assert_string_equal(w->out[k]->queue->name, "r");
    assert_int_equal(p->ready, 3);
    s_end_pass(fx);

    p->paused = false;
    broker_ctrl_queue_save(b, p, DV_EV_QUEUE_RESUMED);
    assert_true(b->dispatch_needed);
    assert_int_equal(s_dispatch(fx), 3);
    assert_int_equal(p->ready, 0);
    assert_int_equal(p->running, 3);
    s_end_pass(fx);
}

static void
t_rate_limit(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_queue_t *q = broker_sched_queue(b, "q");
    broker_ctrl_set_rate(b, q, 10.0); /* burst: 1 */
    for (int i = 0; i < 40; i++)
        broker_fx_job(fx, "q", 0, 3);
    broker_fx_worker(fx, "w1", "q", 100);

    assert_int_equal(s_dispatch(fx), 1);
    /* The loop is told when the next token comes: 100 ms on. */
    assert_int_equal(b->next_token_us, fx->clock.mono_us + 100001);
    s_end_pass(fx);
    broker_fx_advance_ms(fx, 50);
    assert_int_equal(s_dispatch(fx), 0);
    broker_fx_advance_ms(fx, 51);
    assert_int_equal(s_dispatch(fx), 1);
    s_end_pass(fx);

    /* Idle for a second: the bucket holds one burst, no more. */
    broker_fx_advance_ms(fx, 1000);
    assert_int_equal(s_dispatch(fx), 1);
    s_end_pass(fx);

    /* 100/s: burst of 10, then 100 per second. */
    broker_ctrl_set_rate(b, q, 100.0);
    broker_fx_advance_ms(fx, 1000);
    assert_int_equal(s_dispatch(fx), 10);
    s_end_pass(fx);
    int total = 0;
    for (int i = 0; i < 10; i++) {
        broker_fx_advance_ms(fx, 20);
        total += s_dispatch(fx);
        s_end_pass(fx);
    }
    assert_int_equal(total, 20);

    /* No limit: the rest at once. */
    broker_ctrl_set_rate(b, q, 0);
    b->dispatch_needed = true;
    assert_int_equal(s_dispatch(fx), 40 - 33);
    assert_int_equal(q->ready, 0);
    assert_int_equal(b->next_token_us, 0);
}

static void
t_max_running(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_queue_t *q = broker_sched_queue(b, "q");
    q->max_running = 2;
    for (int i = 0; i < 5; i++)
        broker_fx_job(fx, "q", 0, 3);
    broker_worker_t *w1 = broker_fx_worker(fx, "w1", "q", 10);
    broker_worker_t *w2 = broker_fx_worker(fx, "w2", "q", 10);
    assert_int_equal(s_dispatch(fx), 2);
    assert_int_equal(q->running, 2);
    assert_int_equal(w1->running.count + w2->running.count, 2);
    s_end_pass(fx);
    assert_int_equal(s_dispatch(fx), 0);

    /* One ends: one slot opens, and only one. */
    broker_job_t *done = w1->running.head ? w1->running.head : w2->running.head;
    broker_sched_finish(b, done, DV_STATE_SUCCEEDED, "\xc0", 1, NULL);
    assert_int_equal(done->state, DV_STATE_SUCCEEDED);
    assert_true(b->dispatch_needed);
    assert_int_equal(s_dispatch(fx), 1);
    assert_int_equal(q->running, 2);
    assert_int_equal(q->ready, 2);
    assert_int_equal(b->counters.succeeded, 1);
    s_end_pass(fx);
}

static void
t_retry_after_backoff(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_job_t *job = broker_fx_job(fx, "q", 0, 3);
    broker_worker_t *w = broker_fx_worker(fx, "w1", "q", 1);
    assert_int_equal(s_dispatch(fx), 1);
    s_end_pass(fx);
    assert_int_equal(job->attempt, 1);

    /* Backoff after the first attempt is 1 s; the hint says 5 s. */
    dv_failure_t f = s_failure(DV_CAT_RATE_LIMITED, true, 5000);
    int64_t t0 = fx->clock.now_ms;
    broker_sched_fail(b, job, &f);
    w->credit++;
    assert_int_equal(job->state, DV_STATE_SCHEDULED);
    assert_int_equal(job->run_at_ms, t0 + 5000);
    assert_null(job->worker);
    assert_int_equal(w->running.count, 0);
    assert_int_equal(b->counters.retried, 1);
    assert_int_equal(b->timers.count, 1);

    broker_fx_advance_ms(fx, 4999);
    broker_sched_promote_due(b);
    assert_int_equal(job->state, DV_STATE_SCHEDULED);
    assert_int_equal(s_dispatch(fx), 0);
    broker_fx_advance_ms(fx, 1);
    broker_sched_promote_due(b);
    assert_int_equal(job->state, DV_STATE_QUEUED);
    assert_int_equal(s_dispatch(fx), 1);
    assert_int_equal(job->attempt, 2);
    s_end_pass(fx);

    /* Without a hint: base * factor^(attempt-1) = 2 s after attempt 2. */
    f = s_failure(DV_CAT_UPSTREAM, true, 0);
    t0 = fx->clock.now_ms;
    broker_sched_fail(b, job, &f);
    assert_int_equal(job->state, DV_STATE_SCHEDULED);
    assert_int_equal(job->run_at_ms, t0 + 2000);
}

static void
t_attempts_exhausted_dead(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_job_t *job = broker_fx_job(fx, "q", 0, 2);
    broker_job_t *fatal = broker_fx_job(fx, "q", 0, 5);
    broker_worker_t *w = broker_fx_worker(fx, "w1", "q", 2);
    assert_int_equal(s_dispatch(fx), 2);
    s_end_pass(fx);

    dv_failure_t f = s_failure(DV_CAT_HANDLER, true, 0);
    broker_sched_fail(b, job, &f);
    assert_int_equal(job->state, DV_STATE_SCHEDULED);
    broker_fx_advance_ms(fx, 1000);
    broker_sched_promote_due(b);
    w->credit++;
    assert_int_equal(s_dispatch(fx), 1);
    assert_int_equal(job->attempt, 2);
    s_end_pass(fx);
    broker_sched_fail(b, job, &f);
    assert_int_equal(job->state, DV_STATE_DEAD);

    /* Not retryable: dead at the first failure, attempts left or not. */
    dv_failure_t nf = s_failure(DV_CAT_INVALID_INPUT, false, 0);
    broker_sched_fail(b, fatal, &nf);
    assert_int_equal(fatal->state, DV_STATE_DEAD);
    assert_int_equal(fatal->attempt, 1);

    assert_int_equal(b->counters.dead, 2);
    assert_int_equal(b->counters.failed, 3);
    assert_int_equal(b->counters.retried, 1);
    assert_int_equal(w->running.count, 0);
    /* Ended, findable until the group is durable. */
    int ended = 0;
    for (broker_ended_t *e = b->cur->ended; e; e = e->next) {
        assert_int_equal(e->state, DV_STATE_DEAD);
        assert_true(e->has_failure);
        ended++;
    }
    assert_int_equal(ended, 2);
    assert_ptr_equal(broker_index_get(&b->index, &job->id), job);
    broker_queue_t *q = broker_sched_queue(b, "q");
    assert_int_equal(q->running + q->ready + q->scheduled, 0);
}

static void
t_worker_expiry_requeues_as_lost(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_job_t *jobs[3];
    for (int i = 0; i < 3; i++)
        jobs[i] = broker_fx_job(fx, "q", 0, 3);
    broker_worker_t *gone = broker_fx_worker(fx, "gone", "q", 2);
    assert_int_equal(s_dispatch(fx), 2);
    s_end_pass(fx);
    /* The last job waits; a second worker comes later. */
    broker_fx_advance_ms(fx, 4000);
    broker_worker_t *alive = broker_fx_worker(fx, "alive", "other", 1);
    (void)alive;
    broker_fx_advance_ms(fx, 1001); /* gone: 5001 ms silent; alive: 1001 */
    broker_worker_expire(b);

    assert_null(dv_map_get(b->worker_by_name, "gone"));
    assert_non_null(dv_map_get(b->worker_by_name, "alive"));
    (void)gone;
    assert_int_equal(b->counters.lost, 2);
    assert_int_equal(b->counters.failed, 2);
    int requeued = 0;
    for (int i = 0; i < 3; i++) {
        assert_null(jobs[i]->worker);
        if (jobs[i]->attempt == 1) {
            /* Lost is retryable: back after its backoff (1 s). */
            assert_int_equal(jobs[i]->state, DV_STATE_SCHEDULED);
            assert_int_equal(jobs[i]->run_at_ms, fx->clock.now_ms + 1000);
            requeued++;
        } else {
            assert_int_equal(jobs[i]->state, DV_STATE_QUEUED);
        }
    }
    assert_int_equal(requeued, 2);
    broker_queue_t *q = broker_sched_queue(b, "q");
    assert_int_equal(q->running, 0);
    assert_int_equal(q->scheduled, 2);
    assert_int_equal(q->ready, 1);

    /* A new worker takes them all once they are due. */
    broker_fx_worker(fx, "next", "q", 3);
    broker_fx_advance_ms(fx, 1000);
    broker_sched_promote_due(b);
    assert_int_equal(s_dispatch(fx), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(jobs[i]->state, DV_STATE_RUNNING);
    s_end_pass(fx);
}

static void
t_unsent_jobs_go_back(void **state)
{
    /* What the end of a pass does when it cannot send a worker its jobs:
     * they are not left leased. */
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_job_t *jobs[4];
    for (int i = 0; i < 4; i++)
        jobs[i] = broker_fx_job(fx, "q", 0, 3);
    broker_worker_t *w = broker_fx_worker(fx, "w1", "q", 3);
    assert_int_equal(s_dispatch(fx), 3);
    broker_sched_unsend(b, w);
    s_end_pass(fx);
    assert_int_equal(w->credit, 3);
    assert_int_equal(w->running.count, 0);
    assert_int_equal(b->counters.dispatched, 0);
    broker_queue_t *q = broker_sched_queue(b, "q");
    assert_int_equal(q->running, 0);
    assert_int_equal(q->ready, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jobs[i]->state, DV_STATE_QUEUED);
        assert_int_equal(jobs[i]->attempt, 0);
    }
    /* Same order as before, and dispatch tries again shortly. */
    assert_true(b->next_token_us > 0);
    for (int i = 0; i < 4; i++)
        assert_ptr_equal(broker_queue_pop(q), jobs[i]);
    for (int i = 0; i < 4; i++)
        broker_queue_push(q, jobs[i], false);
    b->dispatch_needed = true;
    assert_int_equal(s_dispatch(fx), 3);
    assert_ptr_equal(w->out[0], jobs[0]);
    assert_int_equal(jobs[0]->attempt, 1);
    s_end_pass(fx);
}

/* Sends a wait on job's id as rid; returns whether the job took rid as a
 * waiter, and the state answered at once (NONE when nothing was). */
static bool
s_wait_as(broker_fx_t *fx, const broker_rid_t *rid, broker_job_t *job,
          dv_state_t *now)
{
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    dv_str_t ids[] = { dv_str(id) };
    dv_msg_t m = { .type = DV_MSG_WAIT };
    m.u.wait.req = 3;
    m.u.wait.ids = ids;
    m.u.wait.nids = 1;
    broker_client_on_message(fx->b, rid, &m);
    broker_results_t *r =
        dv_map_getn(fx->b->cur->results_out, (const char *)rid->data, rid->len);
    *now = r && r->n ? r->items[r->n - 1].state : DV_STATE_NONE;
    for (broker_waiter_t *w = job->waiters; w; w = w->next)
        if (w->len == rid->len && !memcmp(w->rid, rid->data, rid->len))
            return true;
    return false;
}

/* Owner names are interned to small indexes; a client reads only the jobs
 * it owns (one without an owner is not its), an operator and a sender
 * without CurveZMQ every job. */
static void
t_job_owner(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    assert_int_equal(broker_sched_owner(b, NULL), 0);
    assert_int_equal(broker_sched_owner(b, ""), 0);
    assert_int_equal(broker_sched_owner(b, "alice"), 1);
    assert_int_equal(broker_sched_owner(b, "bob"), 2);
    assert_int_equal(broker_sched_owner(b, "alice"), 1);
    assert_null(broker_sched_owner_name(b, 0));
    assert_string_equal(broker_sched_owner_name(b, 1), "alice");
    assert_string_equal(broker_sched_owner_name(b, 2), "bob");
    assert_null(broker_sched_owner_name(b, 3));

    broker_peer_t alice = { DV_ROLE_CLIENT, "alice", "" };
    broker_peer_t op = { DV_ROLE_OPERATOR, "op", "" };
    assert_null(broker_auth_owner(b));
    assert_true(broker_auth_may_read(b, NULL));
    b->sender = &alice;
    assert_string_equal(broker_auth_owner(b), "alice");
    assert_true(broker_auth_may_read(b, "alice"));
    assert_false(broker_auth_may_read(b, "bob"));
    assert_false(broker_auth_may_read(b, NULL));
    b->sender = &op;
    assert_true(broker_auth_may_read(b, "bob"));
    assert_true(broker_auth_may_read(b, NULL));

    broker_job_t *mine = broker_fx_job(fx, "q", 5, 3);
    broker_job_t *bobs = broker_fx_job(fx, "q", 5, 3);
    broker_job_t *nobodys = broker_fx_job(fx, "q", 5, 3);
    mine->owner = 1;
    bobs->owner = 2;
    broker_rid_t ra = { .len = 1, .data = "a" }, ro = { .len = 1, .data = "o" };
    dv_state_t now;
    b->sender = &alice;
    assert_true(s_wait_as(fx, &ra, mine, &now));
    assert_int_equal(now, DV_STATE_NONE);
    assert_false(s_wait_as(fx, &ra, bobs, &now));
    assert_int_equal(now, DV_STATE_UNKNOWN);
    assert_false(s_wait_as(fx, &ra, nobodys, &now));
    assert_int_equal(now, DV_STATE_UNKNOWN);
    b->sender = &op;
    assert_true(s_wait_as(fx, &ro, bobs, &now));
    assert_true(s_wait_as(fx, &ro, nobodys, &now));
    b->sender = NULL;
}

int
main(void)
{
    dv_log_init("broker_sched_test", DV_WARN, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_priority_then_fifo, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_round_robin_over_queues,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_credit_never_exceeded,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_paused_queue, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_rate_limit, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_max_running, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_retry_after_backoff, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_attempts_exhausted_dead,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_worker_expiry_requeues_as_lost,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_job_owner, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_unsent_jobs_go_back, broker_fx_setup,
                                        broker_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
