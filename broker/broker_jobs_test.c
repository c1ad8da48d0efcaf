/* Unit tests for the scheduler's structures: id index, priority FIFOs,
 * timer heap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker_jobs.h"

static broker_job_t *
s_job(int priority, int64_t run_at)
{
    dv_id_t id;
    dv_id_new(&id);
    broker_job_t *job = broker_job_new(&id, "\x93\x01\x02\x03", 4);
    assert_non_null(job);
    job->priority = (uint8_t)priority;
    job->run_at_ms = run_at;
    return job;
}

static void
t_index_put_get_del(void **state)
{
    (void)state;
    broker_index_t ix;
    assert_int_equal(broker_index_init(&ix), 0);
    enum { N = 50000 };
    broker_job_t **jobs = calloc(N, sizeof *jobs);
    for (int i = 0; i < N; i++) {
        jobs[i] = s_job(0, 0);
        assert_int_equal(broker_index_put(&ix, jobs[i]), 0);
    }
    assert_int_equal(ix.count, N);
    assert_true(ix.cap >= 2 * N); /* load stays under one half */
    for (int i = 0; i < N; i++)
        assert_ptr_equal(broker_index_get(&ix, &jobs[i]->id), jobs[i]);
    /* Delete every other one; the rest must stay findable (backward shift
     * keeps probe runs intact). */
    for (int i = 0; i < N; i += 2)
        broker_index_del(&ix, jobs[i]);
    assert_int_equal(ix.count, N / 2);
    for (int i = 0; i < N; i++) {
        broker_job_t *got = broker_index_get(&ix, &jobs[i]->id);
        if (i % 2)
            assert_ptr_equal(got, jobs[i]);
        else
            assert_null(got);
    }
    dv_id_t absent;
    dv_id_new(&absent);
    assert_null(broker_index_get(&ix, &absent));
    /* A walk over the slots gives back each job left, as it was put (the
     * slots themselves carry hash bits). */
    size_t walked = 0;
    for (size_t k = 0; k < ix.cap; k++) {
        broker_job_t *job = broker_index_at(&ix, k);
        if (!job)
            continue;
        walked++;
        assert_ptr_equal(broker_index_get(&ix, &job->id), job);
    }
    assert_int_equal(walked, N / 2);
    assert_null(broker_index_at(&ix, ix.cap));
    for (int i = 0; i < N; i++)
        broker_job_destroy(&jobs[i]);
    free(jobs);
    broker_index_free(&ix);
}

static void
t_queue_priority_then_fifo(void **state)
{
    (void)state;
    broker_queue_t *q = broker_queue_new("q");
    broker_job_t *jobs[12];
    int prio[12] = { 0, 5, 9, 5, 0, 9, 3, 3, 9, 0, 5, 3 };
    for (int i = 0; i < 12; i++) {
        jobs[i] = s_job(prio[i], 0);
        broker_queue_push(q, jobs[i], false);
    }
    assert_int_equal(q->ready, 12);
    /* 9s in order, then 5s, 3s, 0s. */
    int want[12] = { 2, 5, 8, 1, 3, 10, 6, 7, 11, 0, 4, 9 };
    for (int k = 0; k < 12; k++)
        assert_ptr_equal(broker_queue_pop(q), jobs[want[k]]);
    assert_null(broker_queue_pop(q));
    assert_int_equal(q->ready, 0);
    assert_int_equal(q->nonempty, 0);
    for (int i = 0; i < 12; i++)
        broker_job_destroy(&jobs[i]);
    broker_queue_destroy(&q);
}

static void
t_queue_front_and_remove(void **state)
{
    (void)state;
    broker_queue_t *q = broker_queue_new("q");
    broker_job_t *a = s_job(4, 0), *b = s_job(4, 0), *c = s_job(4, 0);
    broker_queue_push(q, a, false);
    broker_queue_push(q, b, false);
    broker_queue_push(q, c, true); /* returned job: goes first */
    broker_queue_remove(q, a);     /* cancelled from the middle... */
    assert_int_equal(q->ready, 2);
    assert_ptr_equal(broker_queue_pop(q), c);
    assert_ptr_equal(broker_queue_pop(q), b);
    assert_null(broker_queue_pop(q));
    broker_job_destroy(&a);
    broker_job_destroy(&b);
    broker_job_destroy(&c);
    broker_queue_destroy(&q);
}

/* The oldest ready job over all priorities, as status reports it. */
static void
t_queue_oldest(void **state)
{
    (void)state;
    broker_queue_t *q = broker_queue_new("q");
    int64_t at = 0;
    assert_false(broker_queue_oldest(q, &at));
    broker_job_t *a = s_job(9, 0), *b = s_job(1, 0), *c = s_job(9, 0);
    a->ready_us = 5000;
    b->ready_us = 2000; /* lower priority, waiting longer */
    c->ready_us = 1000; /* put back at the front: its wait goes on */
    broker_queue_push(q, a, false);
    broker_queue_push(q, b, false);
    assert_true(broker_queue_oldest(q, &at));
    assert_int_equal(at, 2000);
    broker_queue_push(q, c, true);
    assert_true(broker_queue_oldest(q, &at));
    assert_int_equal(at, 1000);
    assert_ptr_equal(broker_queue_pop(q), c);
    assert_ptr_equal(broker_queue_pop(q), a);
    assert_true(broker_queue_oldest(q, &at));
    assert_int_equal(at, 2000);
    assert_ptr_equal(broker_queue_pop(q), b);
    assert_false(broker_queue_oldest(q, &at));
    broker_job_destroy(&a);
    broker_job_destroy(&b);
    broker_job_destroy(&c);
    broker_queue_destroy(&q);
}

static void
t_heap_orders_by_time(void **state)
{
    (void)state;
    broker_heap_t h = { 0 };
    enum { N = 5000 };
    broker_job_t **jobs = calloc(N, sizeof *jobs);
    srand(7);
    for (int i = 0; i < N; i++) {
        jobs[i] = s_job(0, rand() % 100000);
        assert_int_equal(broker_heap_push(&h, jobs[i]), 0);
    }
    /* Remove a third from arbitrary places (cancel, reclaim). */
    for (int i = 0; i < N; i += 3) {
        broker_heap_remove(&h, jobs[i]);
        assert_int_equal(jobs[i]->heap_idx, UINT32_MAX);
    }
    int64_t last = -1;
    int popped = 0;
    broker_job_t *job;
    while ((job = broker_heap_pop(&h))) {
        assert_true(job->run_at_ms >= last);
        last = job->run_at_ms;
        popped++;
    }
    assert_int_equal(popped, N - (N + 2) / 3);
    for (int i = 0; i < N; i++)
        broker_job_destroy(&jobs[i]);
    free(jobs);
    broker_heap_free(&h);
}

static void
t_heap_equal_times_fifo(void **state)
{
    (void)state;
    broker_heap_t h = { 0 };
    broker_job_t *jobs[50];
    for (int i = 0; i < 50; i++) {
        jobs[i] = s_job(0, 1000); /* ids are increasing */
        broker_heap_push(&h, jobs[i]);
    }
    for (int i = 0; i < 50; i++)
        assert_ptr_equal(broker_heap_pop(&h), jobs[i]);
    for (int i = 0; i < 50; i++)
        broker_job_destroy(&jobs[i]);
    broker_heap_free(&h);
}

static void
t_job_record_is_small(void **state)
{
    (void)state;
    /* The memory budget per queued job (docs/architecture.md) depends on it. */
    assert_true(sizeof(broker_job_t) <= 128);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_index_put_get_del),
        cmocka_unit_test(t_queue_priority_then_fifo),
        cmocka_unit_test(t_queue_front_and_remove),
        cmocka_unit_test(t_queue_oldest),
        cmocka_unit_test(t_heap_orders_by_time),
        cmocka_unit_test(t_heap_equal_times_fifo),
        cmocka_unit_test(t_job_record_is_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
