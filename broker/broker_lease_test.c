/* Unit tests for lease fencing and revocation (broker_worker.c) and the
 * rejoin window after a restart (broker_recover.c), without sockets: a
 * broker made by broker_core_open_at on a real SQLite store, workers that
 * join by HELLO messages handed to broker_worker_on_message, reports
 * handed in the same way, and a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "broker_internal.h"
#include "broker_test_fx.h"
#include "dv_log.h"

static broker_rid_t
s_rid(const char *name)
{
    broker_rid_t rid = { .len = (uint8_t)strlen(name) };
    memcpy(rid.data, name, rid.len);
    return rid;
}

static broker_job_t *
s_find(broker_fx_t *fx, const dv_id_t *id)
{
    return broker_index_get(&fx->b->index, id);
}

/* HELLO from name (serving "q", credit), holding held[0..nheld). */
static void
s_hello(broker_fx_t *fx, const char *name, int credit, bool fencing,
        dv_held_t *held, uint32_t nheld)
{
    dv_str_t q = dv_str("q");
    dv_msg_t m = { .type = DV_MSG_HELLO };
    m.u.hello.name = dv_str(name);
    m.u.hello.queues = &q;
    m.u.hello.nqueues = 1;
    m.u.hello.concurrency = credit ? credit : 1;
    m.u.hello.credit = credit;
    m.u.hello.held = held;
    m.u.hello.nheld = nheld;
    m.u.hello.fencing = fencing;
    broker_rid_t rid = s_rid(name);
    broker_worker_on_message(fx->b, &rid, &m);
}

static broker_worker_t *
s_worker(broker_fx_t *fx, const char *name)
{
    return dv_map_get(fx->b->worker_by_name, name);
}

/* One report from name about job, under lease and attempt. */
static void
s_report(broker_fx_t *fx, const char *name, dv_update_kind_t kind,
         const dv_id_t *job, int32_t attempt, uint64_t lease)
{
    char id[DV_ID_TEXT_LEN + 1];
    dv_id_format(job, id);
    dv_update_t u;
    memset(&u, 0, sizeof u);
    dv_failure_init(&u.failure);
    u.kind = kind;
    u.id = dv_str(id);
    u.attempt = attempt;
    u.lease = lease;
    u.ts_ms = fx->clock.now_ms;
    if (kind == DV_UPD_SUCCEEDED)
        u.result = dv_strn("\xc3", 1);
    if (kind == DV_UPD_FAILED) {
        u.failure.category = DV_CAT_HANDLER;
        u.failure.retryable = true;
        u.failure.message = dv_str("it broke");
    }
    dv_msg_t m = { .type = DV_MSG_UPDATE };
    m.u.update.items = &u;
    m.u.update.nitems = 1;
    broker_rid_t rid = s_rid(name);
    broker_worker_on_message(fx->b, &rid, &m);
}

/* Every write so far made durable, the store opened and sql prepared
 * with id's text bound to ?1. */
static sqlite3_stmt *
s_query(broker_fx_t *fx, const dv_id_t *id, const char *sql, sqlite3 **db)
{
    broker_group_end_pass(fx->b);
    broker_group_drain_all(fx->b);
    char idtext[DV_ID_TEXT_LEN + 1];
    dv_id_format(id, idtext);
    char path[1200];
    snprintf(path, sizeof path, "%s/drover.db", fx->dir);
    assert_int_equal(sqlite3_open(path, db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(*db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, idtext, -1, SQLITE_TRANSIENT);
    return st;
}

/* Rows of the attempts table for job with this outcome ("failed"...). */
static int
s_attempt_rows(broker_fx_t *fx, const dv_id_t *id, const char *outcome)
{
    sqlite3 *db;
    sqlite3_stmt *st = s_query(fx, id,
                               "SELECT count(*) FROM attempts WHERE "
                               "job_id = ?1 AND outcome = ?2",
                               &db);
    sqlite3_bind_text(st, 2, outcome, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* The jobs row of id: state, worker and started_at ("" / 0 for NULL),
 * after every write so far is durable. */
static void
s_job_row(broker_fx_t *fx, const dv_id_t *id, char *state, size_t ssize,
          char *worker, size_t wsize, int64_t *started)
{
    sqlite3 *db;
    sqlite3_stmt *st = s_query(fx, id,
                               "SELECT state, coalesce(worker, ''), "
                               "coalesce(started_at, 0) FROM jobs "
                               "WHERE id = ?1",
                               &db);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(state, ssize, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(worker, wsize, "%s", (const char *)sqlite3_column_text(st, 1));
    *started = sqlite3_column_int64(st, 2);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ---- tests ---------------------------------------------------------------- */

static void
t_leases_are_unique(void **state)
{
    broker_fx_t *fx = *state;
    broker_job_t *a = broker_fx_job(fx, "q", 0, 3);
    broker_job_t *b = broker_fx_job(fx, "q", 0, 3);
    s_hello(fx, "w1", 2, true, NULL, 0);
    broker_fx_dispatch(fx);
    assert_int_equal(a->state, DV_STATE_RUNNING);
    assert_true(a->lease != 0 && b->lease != 0 && a->lease != b->lease);
    assert_true(dv_lease_generation(a->lease) == fx->b->generation);
    uint64_t gen = fx->b->generation;
    broker_fx_restart(fx);
    assert_true(fx->b->generation == gen + 1);
}

static void
t_no_hello_nothing_applied(void **state)
{
    broker_fx_t *fx = *state;
    broker_job_t *job = broker_fx_job(fx, "q", 0, 3);
    dv_id_t id = job->id;
    /* A forged success for a queued job, from a peer that never said
     * hello: nothing changes. */
    s_report(fx, "forger", DV_UPD_SUCCEEDED, &id, 1, 1);
    assert_ptr_equal(s_find(fx, &id), job);
    assert_int_equal(job->state, DV_STATE_QUEUED);
    assert_int_equal(job->attempt, 0);
    assert_null(s_worker(fx, "forger"));
}

static void
t_old_worker_refused(void **state)
{
    broker_fx_t *fx = *state;
    broker_fx_job(fx, "q", 0, 3);
    s_hello(fx, "old", 4, false, NULL, 0);
    assert_null(s_worker(fx, "old"));
    broker_fx_dispatch(fx);
    assert_int_equal(fx->b->counters.dispatched, 0);
}

static void
t_only_the_lease_holder_reports(void **state)
{
    broker_fx_t *fx = *state;
    broker_job_t *job = broker_fx_job(fx, "q", 0, 3);
    dv_id_t id = job->id;
    s_hello(fx, "w1", 1, true, NULL, 0);
    s_hello(fx, "w2", 0, true, NULL, 0);
    broker_fx_dispatch(fx);
    assert_ptr_equal(job->worker, s_worker(fx, "w1"));
    uint64_t lease = job->lease;

    /* Another worker, a wrong lease, an older attempt: all stale. */
    s_report(fx, "w2", DV_UPD_SUCCEEDED, &job->id, 1, lease);
    s_report(fx, "w1", DV_UPD_SUCCEEDED, &job->id, 1, lease + 1);
    s_report(fx, "w1", DV_UPD_FAILED, &job->id, 1, 0);
    s_report(fx, "w1", DV_UPD_PROGRESS, &job->id, 1, lease - 1);
    assert_int_equal(fx->b->counters.stale, 4);
    assert_int_equal(job->state, DV_STATE_RUNNING);
    assert_int_equal(job->attempt, 1);

    s_report(fx, "w1", DV_UPD_STARTED, &job->id, 1, lease);
    assert_true(job->flags & BROKER_JOB_STARTED);
    s_report(fx, "w1", DV_UPD_SUCCEEDED, &job->id, 1, lease);
    assert_int_equal(job->state, DV_STATE_SUCCEEDED);
    assert_int_equal(fx->b->counters.stale, 4);
    broker_group_end_pass(fx->b);
    broker_group_drain_all(fx->b);
    assert_null(s_find(fx, &id));
    /* Late, after the job ended: stale too. */
    s_report(fx, "w1", DV_UPD_SUCCEEDED, &id, 1, lease);
    assert_int_equal(fx->b->counters.stale, 5);
}

/* A lease's row write waits for the group's seal: a job that ended before
 * it is written once, by its outcome, with the worker and start folded in;
 * one still running then gets its running row. An outcome that carries
 * its start counts as the start too. */
static void
t_lease_folded_into_outcome(void **state)
{
    broker_fx_t *fx = *state;
    broker_job_t *fast = broker_fx_job(fx, "q", 0, 3);
    broker_job_t *slow = broker_fx_job(fx, "q", 0, 3);
    dv_id_t fid = fast->id, sid = slow->id;
    broker_group_end_pass(fx->b); /* the inserts are durable */
    broker_group_drain_all(fx->b);
    s_hello(fx, "w1", 2, true, NULL, 0);
    assert_int_equal(broker_fx_dispatch(fx), 2);
    uint64_t flease = fast->lease;
    assert_int_equal(fx->b->nleases, 2); /* no running write recorded yet */

    /* The fast job's outcome comes with its start (the worker folded the
     * "started" item into it). */
    char id[DV_ID_TEXT_LEN + 1];
    dv_id_format(&fid, id);
    dv_update_t u;
    memset(&u, 0, sizeof u);
    dv_failure_init(&u.failure);
    u.kind = DV_UPD_SUCCEEDED;
    u.id = dv_str(id);
    u.attempt = 1;
    u.lease = flease;
    u.ts_ms = fx->clock.now_ms;
    u.started_ms = fx->clock.now_ms - 5;
    u.result = dv_strn("\xc3", 1);
    dv_msg_t m = { .type = DV_MSG_UPDATE };
    m.u.update.items = &u;
    m.u.update.nitems = 1;
    uint64_t before = fx->b->dispatch_us.total;
    broker_rid_t rid = s_rid("w1");
    broker_worker_on_message(fx->b, &rid, &m);
    assert_int_equal(fx->b->dispatch_us.total, before + 1); /* a start */
    assert_int_equal(fast->state, DV_STATE_SUCCEEDED);

    char st[32], w[64];
    int64_t started;
    s_job_row(fx, &fid, st, sizeof st, w, sizeof w, &started);
    assert_string_equal(st, "succeeded");
    assert_string_equal(w, "w1");
    assert_true(started == u.started_ms);
    assert_int_equal(fx->b->nleases, 0);
    s_job_row(fx, &sid, st, sizeof st, w, sizeof w, &started);
    assert_string_equal(st, "running");
    assert_string_equal(w, "w1");
}

static void
t_expired_lease_is_revoked(void **state)
{
    broker_fx_t *fx = *state;
    broker_job_t *job = broker_fx_job(fx, "q", 0, 3);
    dv_id_t id = job->id;
    s_hello(fx, "w1", 1, true, NULL, 0);
    broker_fx_dispatch(fx);
    uint64_t old = job->lease;
    char idtext[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, idtext);

    /* w1 goes silent past its timeout: the attempt is failed as lost and
     * the job goes to w2 under a new lease, attempt 2. */
    broker_fx_advance_ms(fx, 6000);
    s_hello(fx, "w2", 1, true, NULL, 0);
    broker_worker_expire(fx->b);
    assert_null(s_worker(fx, "w1"));
    job->run_at_ms = 0; /* skip the backoff */
    broker_sched_promote_due(fx->b);
    broker_fx_advance_ms(fx, 60000);
    broker_sched_promote_due(fx->b);
    broker_fx_dispatch(fx);
    assert_ptr_equal(job->worker, s_worker(fx, "w2"));
    assert_int_equal(job->attempt, 2);
    assert_true(job->lease != old);

    /* w1 comes back holding its copy: it is revoked, not given back, and
     * its late success changes nothing. */
    dv_held_t held = { dv_str(idtext), 1, old, true };
    s_hello(fx, "w1", 0, true, &held, 1);
    assert_int_equal(fx->b->counters.revoked, 1);
    assert_ptr_equal(job->worker, s_worker(fx, "w2"));
    s_report(fx, "w1", DV_UPD_SUCCEEDED, &job->id, 1, old);
    assert_int_equal(job->state, DV_STATE_RUNNING);
    assert_ptr_equal(job->worker, s_worker(fx, "w2"));

    s_report(fx, "w2", DV_UPD_SUCCEEDED, &job->id, 2, job->lease);
    assert_int_equal(job->state, DV_STATE_SUCCEEDED);
    /* History: the lost attempt 1, and the success in the jobs row. */
    assert_int_equal(s_attempt_rows(fx, &id, "failed"), 1);
}

/* The previous start leased job a (durably: running in the store) and job
 * b (not durably: the crash took the group). Both wait in limbo; the
 * worker that holds them takes them back, and no second execution runs. */
static void
t_restart_adopts_held_jobs(void **state)
{
    broker_fx_t *fx = *state;
    broker_job_t *a = broker_fx_job(fx, "q", 0, 3);
    broker_job_t *b = broker_fx_job(fx, "q", 0, 3);
    dv_id_t ida = a->id, idb = b->id;
    s_hello(fx, "w1", 1, true, NULL, 0);
    broker_fx_dispatch(fx); /* a, recorded */
    broker_group_end_pass(fx->b);
    broker_group_drain_all(fx->b);
    uint64_t lease_a = a->lease;
    s_worker(fx, "w1")->credit = 1;
    broker_fx_dispatch(fx); /* b: its lease is lost with the crash */
    uint64_t lease_b = b->lease;
    assert_int_equal(b->attempt, 1);
    broker_wbatch_clear(&fx->b->cur->wb);
    char ta[DV_ID_TEXT_LEN + 1], tb[DV_ID_TEXT_LEN + 1];
    broker_id_text(a, ta);
    broker_id_text(b, tb);

    broker_fx_restart(fx);
    assert_int_equal(fx->b->limbo.count, 2);
    /* Another worker with credit gets neither while they wait. */
    s_hello(fx, "w2", 4, true, NULL, 0);
    broker_fx_dispatch(fx);
    assert_int_equal(fx->b->counters.dispatched, 0);

    dv_held_t held[2] = { { dv_str(ta), 1, lease_a, true },
                          { dv_str(tb), 1, lease_b, false } };
    s_hello(fx, "w1", 0, true, held, 2);
    assert_int_equal(fx->b->counters.adopted, 2);
    assert_int_equal(fx->b->limbo.count, 0);
    a = s_find(fx, &ida);
    b = s_find(fx, &idb);
    assert_ptr_equal(a->worker, s_worker(fx, "w1"));
    assert_ptr_equal(b->worker, s_worker(fx, "w1"));
    assert_int_equal(a->attempt, 1);
    assert_int_equal(b->attempt, 1);
    s_report(fx, "w1", DV_UPD_SUCCEEDED, &a->id, 1, lease_a);
    s_report(fx, "w1", DV_UPD_SUCCEEDED, &b->id, 1, lease_b);
    assert_int_equal(a->state, DV_STATE_SUCCEEDED);
    assert_int_equal(b->state, DV_STATE_SUCCEEDED);
    assert_int_equal(fx->b->counters.stale, 0);
    assert_int_equal(s_attempt_rows(fx, &ida, "failed"), 0);
}

/* An outcome that waited in the worker's outbox through the restart is
 * taken as the outcome of the execution it names. */
static void
t_restart_takes_late_outcome(void **state)
{
    broker_fx_t *fx = *state;
    broker_job_t *job = broker_fx_job(fx, "q", 0, 3);
    dv_id_t id = job->id;
    s_hello(fx, "w1", 1, true, NULL, 0);
    broker_fx_dispatch(fx);
    uint64_t lease = job->lease;
    broker_fx_restart(fx);
    s_hello(fx, "w1", 1, true, NULL, 0); /* it no longer holds it */
    job = s_find(fx, &id);
    assert_true(job->flags & BROKER_JOB_LIMBO);
    s_report(fx, "w1", DV_UPD_SUCCEEDED, &job->id, 1, lease);
    assert_int_equal(job->state, DV_STATE_SUCCEEDED);
    assert_int_equal(fx->b->counters.adopted, 1);
}

/* Nobody takes a running job back: when the window closes, its attempt
 * is failed as lost and the next one gets attempt 2; a due queued job is
 * released as it was. */
static void
t_window_closes(void **state)
{
    broker_fx_t *fx = *state;
    broker_job_t *a = broker_fx_job(fx, "q", 0, 3);
    dv_id_t ida = a->id;
    s_hello(fx, "w1", 1, true, NULL, 0);
    broker_fx_dispatch(fx);
    broker_job_t *b = broker_fx_job(fx, "q", 0, 3);
    dv_id_t idb = b->id;
    broker_fx_restart(fx);
    assert_int_equal(fx->b->limbo.count, 2);
    s_hello(fx, "w2", 4, true, NULL, 0);
    broker_fx_advance_ms(fx, fx->b->cfg.rejoin_ms + 1);
    broker_recover_end_rejoin(fx->b);
    assert_int_equal(fx->b->limbo.count, 0);
    a = s_find(fx, &ida);
    b = s_find(fx, &idb);
    a->run_at_ms = 0; /* skip the backoff */
    broker_sched_unplace(fx->b, a);
    broker_sched_place(fx->b, a, false);
    broker_fx_dispatch(fx);
    assert_ptr_equal(a->worker, s_worker(fx, "w2"));
    assert_int_equal(a->attempt, 2);
    assert_ptr_equal(b->worker, s_worker(fx, "w2"));
    assert_int_equal(b->attempt, 1);
    assert_int_equal(s_attempt_rows(fx, &ida, "failed"), 1);
}

int
main(void)
{
    dv_log_init("broker_lease_test", DV_WARN, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_leases_are_unique, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_no_hello_nothing_applied,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_old_worker_refused, broker_fx_setup,
                                        broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_lease_folded_into_outcome,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_only_the_lease_holder_reports,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_expired_lease_is_revoked,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_restart_adopts_held_jobs,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_restart_takes_late_outcome,
                                        broker_fx_setup, broker_fx_teardown),
        cmocka_unit_test_setup_teardown(t_window_closes, broker_fx_setup,
                                        broker_fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
