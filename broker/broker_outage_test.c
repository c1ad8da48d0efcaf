/* Unit tests for a store that cannot be written (broker_group.c,
 * broker_writer.c) and for the check verb (broker_check.c), without
 * sockets: a broker made by broker_core_open on a real SQLite store in a
 * temp dir, with a fake clock. Store failures come from
 * broker_writer_fail_next (the writer fails the next batches as a full
 * disk would, without touching the store); the store's contents are read
 * through the broker's own read connection. What the broker would send is
 * not captured (it has no sockets); what waits on a group is seen in the
 * group itself and in the index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker_internal.h"
#include "broker_test_fx.h"
#include "dv_clock.h"
#include "dv_log.h"

/* The fixture's broker, with retries 1 ms doubling to 4 ms. */
static int
s_setup(void **state)
{
    int rc = broker_fx_setup(state);
    broker_fx_t *fx = *state;
    fx->b->store_retry_min_ms = 1;
    fx->b->store_retry_max_ms = 4;
    return rc;
}

/* Hands the current group to the writer and waits for one answer. */
static void
s_push(broker_fx_t *fx)
{
    broker_group_submit(fx->b);
    assert_non_null(fx->b->inflight);
}

static void
s_one_answer(broker_fx_t *fx)
{
    broker_writer_wait(fx->b->writer);
    broker_group_writer_ready(fx->b);
}

/* A client's submit of n jobs of queue q, as the clients socket hands it
 * over. */
static void
s_submit(broker_fx_t *fx, const char *q, uint32_t n)
{
    dv_jobspec_t js[4];
    assert_true(n <= 4);
    memset(js, 0, sizeof js);
    for (uint32_t i = 0; i < n; i++) {
        js[i].queue = dv_str(q);
        js[i].type = dv_str("noop");
        js[i].priority = 5;
    }
    dv_msg_t m = { .type = DV_MSG_SUBMIT };
    m.u.submit.req = 7;
    m.u.submit.jobs = js;
    m.u.submit.njobs = n;
    broker_rid_t rid = { .len = 3, .data = "cli" };
    broker_client_on_message(fx->b, &rid, &m);
}

typedef struct {
    dv_state_t state;
    int attempt;
} s_row_t;

static void
s_on_view(void *arg, const broker_jobview_t *v)
{
    s_row_t *r = arg;
    r->state = v->state;
    r->attempt = v->attempt;
}

/* The stored state of job (DV_STATE_NONE: no row). */
static dv_state_t
s_stored(broker_fx_t *fx, const broker_job_t *job)
{
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    s_row_t r = { DV_STATE_NONE, 0 };
    assert_true(broker_store_get(fx->b->store, id, s_on_view, &r) >= 0);
    return r.state;
}

/* ---- the writer ----------------------------------------------------------- */

static void
t_drop_inserts_keeps_the_rest(void **state)
{
    (void)state;
    broker_wbatch_t b;
    broker_wbatch_init(&b);
    broker_jobrec_t rec = { .id = "a", .queue = "q", .type = "t" };
    assert_int_equal(broker_wbatch_insert(&b, &rec), 0);
    assert_int_equal(broker_wbatch_running(&b, "x", 1, "w", 5), 0);
    assert_int_equal(broker_wbatch_insert(&b, &rec), 0);
    assert_int_equal(
        broker_wbatch_waiting(&b, "y", DV_STATE_QUEUED, 0, 1, NULL), 0);
    assert_int_equal(broker_wbatch_insert(&b, &rec), 0);
    assert_int_equal(broker_wbatch_drop_inserts(&b), 3);
    assert_int_equal(b.nops, 2);
    /* The tail is right: more ops append after the kept ones (a wrong
     * tail would write into a freed op, which the sanitizers see). */
    assert_int_equal(broker_wbatch_probe(&b), 0);
    assert_int_equal(broker_wbatch_insert(&b, &rec), 0);
    assert_int_equal(b.nops, 4);
    assert_int_equal(broker_wbatch_drop_inserts(&b), 1);
    assert_int_equal(b.nops, 3);
    broker_wbatch_free(&b);
    assert_int_equal(broker_wbatch_drop_inserts(&b), 0);
    assert_int_equal(b.nops, 0);
}

/* ---- a failed group ------------------------------------------------------- */

/* A group with an outcome, a lease and a submit fails three times: the
 * submit is refused at once, the rest is written again until it commits,
 * and what waits on it (the ended job) stays until then. Meanwhile new
 * submits are refused and nothing is dispatched. */
static void
t_failed_group_is_kept_until_it_commits(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_job_t *done = broker_fx_job(fx, "q", 0, 3);
    broker_job_t *other = broker_fx_job(fx, "q", 0, 3);
    broker_worker_t *w = broker_fx_worker(fx, "w1", "q", 2);
    assert_int_equal(broker_fx_dispatch(fx), 2);
    s_push(fx);
    s_one_answer(fx);
    assert_null(b->inflight);
    assert_int_equal(s_stored(fx, done), DV_STATE_RUNNING);
    w->credit = 1; /* as the worker's next update would give back */

    /* This group: done succeeds, other goes back to wait, one submit. */
    broker_sched_finish(b, done, DV_STATE_SUCCEEDED, "\xc0", 1, NULL);
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_UPSTREAM;
    f.retryable = true;
    f.message = dv_str("it broke");
    broker_sched_fail(b, other, &f);
    s_submit(fx, "q", 2);
    size_t live = b->index.count;
    assert_int_equal(live, 4); /* done (ended), other, two pending */
    broker_writer_fail_next(b->writer, DV_ENOSPC, 3);
    s_push(fx);
    broker_group_t *g = b->inflight;
    size_t sends = g->nsends;
    assert_true(sends > 0);

    s_one_answer(fx);
    assert_true(b->store_failed);
    assert_int_equal(b->store_err, DV_ENOSPC);
    assert_string_equal(b->store_reason,
                        "store unavailable: no space left on device");
    assert_ptr_equal(b->inflight, g);    /* kept, ahead of later groups */
    assert_int_equal(b->index.count, 2); /* the submits are gone */
    assert_int_equal(dv_map_size(b->pending_keys), 0);
    assert_null(g->acks);               /* refused, answered */
    assert_non_null(g->ended);          /* done waits for the commit */
    assert_int_equal(g->nsends, sends); /* so do its events */
    assert_int_equal(b->store_refused, 2);
    assert_int_equal(done->state, DV_STATE_SUCCEEDED);

    /* Meanwhile: a submit is refused at once, nothing is dispatched. */
    s_submit(fx, "q", 3);
    assert_null(b->cur->acks);
    assert_int_equal(b->store_refused, 5);
    broker_job_t *third = broker_fx_job(fx, "q", 0, 3);
    broker_group_end_pass(b); /* later writes wait in cur */
    assert_ptr_equal(b->inflight, g);
    assert_int_equal(broker_fx_dispatch(fx), 0);
    assert_int_equal(third->state, DV_STATE_QUEUED);
    assert_int_equal(w->credit, 1);

    s_one_answer(fx);
    s_one_answer(fx);
    assert_true(b->store_failed);
    assert_int_equal(b->store_retries, 2);
    dv_id_t done_id = done->id; /* done is freed once its result is out */
    s_one_answer(fx);           /* the fourth try commits */
    assert_false(b->store_failed);
    assert_null(b->inflight);
    assert_true(b->dispatch_needed);
    assert_null(broker_index_get(&b->index, &done_id)); /* result sent */
    assert_int_equal(s_stored(fx, other), DV_STATE_SCHEDULED);
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(third, id);
    s_row_t r = { DV_STATE_NONE, 0 };
    assert_int_equal(broker_store_get(b->store, id, s_on_view, &r), 0);

    /* The later group goes next, and dispatch runs again. */
    broker_group_end_pass(b);
    s_one_answer(fx);
    assert_int_equal(s_stored(fx, third), DV_STATE_QUEUED);
    assert_int_equal(broker_fx_dispatch(fx), 1);
    assert_int_equal(third->state, DV_STATE_RUNNING);
}

/* A group of submits only: nothing is left once they are refused, so a
 * probe tells when the store takes writes again. */
static void
t_submits_only_group_probes(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    s_submit(fx, "q", 4);
    assert_int_equal(b->index.count, 4);
    broker_writer_fail_next(b->writer, DV_ENOSPC, 2);
    s_push(fx);
    s_one_answer(fx);
    assert_true(b->store_failed);
    assert_int_equal(b->index.count, 0);
    assert_int_equal(b->inflight->wb.nops, 1); /* the probe */
    s_one_answer(fx);
    assert_true(b->store_failed);
    s_one_answer(fx);
    assert_false(b->store_failed);
    assert_null(b->inflight);
    /* Submits are taken again. */
    s_submit(fx, "q", 1);
    assert_int_equal(b->index.count, 1);
    s_push(fx);
    s_one_answer(fx);
    assert_int_equal(b->index.count, 1);
    assert_int_equal(b->counters.submitted, 1);
}

/* Stopping while the store cannot be written ends after a few seconds,
 * with the writes given up. */
static void
t_shutdown_gives_up(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_job_t *job = broker_fx_job(fx, "q", 0, 3);
    (void)job;
    broker_writer_fail_next(b->writer, DV_EIO, 1000000);
    s_push(fx);
    s_one_answer(fx);
    assert_true(b->store_failed);
    assert_int_equal(b->store_err, DV_EIO);
    int64_t t0 = dv_mono_ms();
    broker_group_drain_all(b);
    int64_t took = dv_mono_ms() - t0;
    assert_null(b->inflight);
    assert_true(took >= 2000 && took < 10000);
}

/* ---- check ---------------------------------------------------------------- */

typedef struct {
    bool ok;
    int64_t jobs, stored, differences;
    char memory[4][96], store[4][96];
    int nitems;
} s_report_t;

static void
s_copy_str(const msgpack_object *o, char *out, size_t size)
{
    size_t n = o->type == MSGPACK_OBJECT_STR ? o->via.str.size : 0;
    if (n >= size)
        n = size - 1;
    memcpy(out, n ? o->via.str.ptr : "", n);
    out[n] = '\0';
}

/* Runs the check and decodes its body. Returns its code. */
static dv_code_t
s_check(broker_fx_t *fx, s_report_t *rep)
{
    memset(rep, 0, sizeof *rep);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char why[192] = "";
    dv_code_t code = broker_check_body(fx->b, &sb, why, sizeof why);
    if (code != DV_CODE_NONE) {
        msgpack_sbuffer_destroy(&sb);
        return code;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    const msgpack_object_map *m = &u.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key, *v = &m->ptr[i].val;
        char key[16];
        s_copy_str(k, key, sizeof key);
        if (!strcmp(key, "ok"))
            rep->ok = v->via.boolean;
        else if (!strcmp(key, "jobs"))
            rep->jobs = (int64_t)v->via.u64;
        else if (!strcmp(key, "stored"))
            rep->stored = (int64_t)v->via.u64;
        else if (!strcmp(key, "differences"))
            rep->differences = (int64_t)v->via.u64;
        else if (!strcmp(key, "items")) {
            for (uint32_t j = 0; j < v->via.array.size && j < 4; j++) {
                const msgpack_object_map *it = &v->via.array.ptr[j].via.map;
                for (uint32_t x = 0; x < it->size; x++) {
                    char ik[8];
                    s_copy_str(&it->ptr[x].key, ik, sizeof ik);
                    if (!strcmp(ik, "memory"))
                        s_copy_str(&it->ptr[x].val, rep->memory[j], 96);
                    else if (!strcmp(ik, "store"))
                        s_copy_str(&it->ptr[x].val, rep->store[j], 96);
                }
                rep->nitems++;
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return code;
}

/* A second write connection to the broker's store, to make it disagree. */
static void
s_tamper(broker_fx_t *fx, const broker_job_t *job, dv_state_t state,
         int attempt, const char *worker)
{
    char err[256] = "", id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    broker_store_opts_t opts = { BROKER_SYNC_OFF };
    broker_store_t *s = broker_store_open(fx->url, &opts, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(broker_store_begin(s), 0);
    if (state == DV_STATE_RUNNING)
        assert_int_equal(broker_store_mark_running(s, id, attempt, worker, 1),
                         0);
    else if (dv_state_terminal(state))
        assert_int_equal(
            broker_store_mark_finished(s, id, state, attempt, NULL, 0, NULL, 1),
            0);
    else
        assert_int_equal(
            broker_store_mark_waiting(s, id, state, 0, attempt, NULL), 0);
    assert_int_equal(broker_store_commit(s), 0);
    broker_store_destroy(&s);
}

static void
t_check_consistent_after_sync(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    for (int i = 0; i < 5; i++)
        broker_fx_job(fx, "q", 0, 3);
    broker_fx_worker(fx, "w1", "q", 2);
    assert_int_equal(broker_fx_dispatch(fx), 2);
    /* Not pushed yet: check makes it durable first. */
    s_report_t rep;
    assert_int_equal(s_check(fx, &rep), DV_CODE_NONE);
    assert_true(rep.ok);
    assert_int_equal(rep.jobs, 5);
    assert_int_equal(rep.stored, 5);
    assert_int_equal(rep.differences, 0);
    assert_null(b->inflight);
}

static void
t_check_finds_differences(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    broker_job_t *j[4];
    for (int i = 0; i < 4; i++)
        j[i] = broker_fx_job(fx, "q", 0, 3);
    broker_fx_worker(fx, "w1", "q", 2);
    assert_int_equal(broker_fx_dispatch(fx), 2); /* j[0], j[1] run on w1 */
    s_report_t rep;
    assert_int_equal(s_check(fx, &rep), DV_CODE_NONE);
    assert_true(rep.ok);

    s_tamper(fx, j[0], DV_STATE_RUNNING, 1, "w9");   /* worker */
    s_tamper(fx, j[2], DV_STATE_QUEUED, 2, NULL);    /* attempts */
    s_tamper(fx, j[3], DV_STATE_SUCCEEDED, 0, NULL); /* finished */
    assert_int_equal(s_check(fx, &rep), DV_CODE_NONE);
    assert_false(rep.ok);
    assert_int_equal(rep.differences, 3);
    assert_int_equal(rep.jobs, 4);
    assert_int_equal(rep.stored, 3);
    assert_string_equal(rep.memory[0], "running attempt 1 on w1");
    assert_string_equal(rep.store[0], "running attempt 1 on w9");
    assert_string_equal(rep.memory[1], "queued attempt 0");
    assert_string_equal(rep.store[1], "queued attempt 2");
    assert_string_equal(rep.memory[2], "queued attempt 0");
    assert_string_equal(rep.store[2], "succeeded");

    /* Ended in memory, unfinished in the store; and a row memory lacks. */
    s_tamper(fx, j[0], DV_STATE_RUNNING, 1, "w1");
    s_tamper(fx, j[2], DV_STATE_QUEUED, 0, NULL);
    s_tamper(fx, j[3], DV_STATE_QUEUED, 0, NULL);
    broker_sched_finish(b, j[1], DV_STATE_SUCCEEDED, NULL, 0, NULL);
    broker_writer_fail_next(b->writer, DV_ENOSPC, 1);
    s_push(fx);
    s_one_answer(fx); /* failed: j[1] ended in memory only */
    assert_true(b->store_failed);
    assert_int_equal(s_check(fx, &rep), DV_CODE_STORE);
    broker_job_t copy = *j[1]; /* j[1] is freed once its result is out */
    s_one_answer(fx);
    assert_false(b->store_failed);
    assert_null(broker_index_get(&b->index, &copy.id));
    s_tamper(fx, &copy, DV_STATE_QUEUED, 1, NULL); /* unfinished again */
    broker_sched_unplace(b, j[3]); /* as if memory had lost it */
    broker_index_del(&b->index, j[3]);
    broker_job_destroy(&j[3]);
    assert_int_equal(s_check(fx, &rep), DV_CODE_NONE);
    assert_false(rep.ok);
    assert_int_equal(rep.differences, 2);
    assert_string_equal(rep.memory[0], "missing");
    assert_string_equal(rep.store[0], "queued attempt 1");
    assert_string_equal(rep.memory[1], "missing");
    assert_string_equal(rep.store[1], "queued attempt 0");
}

int
main(void)
{
    dv_log_init("broker_outage_test", DV_WARN, 1);
#define T(f) cmocka_unit_test_setup_teardown(f, s_setup, broker_fx_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_drop_inserts_keeps_the_rest),
        T(t_failed_group_is_kept_until_it_commits),
        T(t_submits_only_group_probes),
        T(t_shutdown_gives_up),
        T(t_check_consistent_after_sync),
        T(t_check_finds_differences),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
