/* Unit tests for job dependencies (broker_deps.c): a chain A -> B -> C runs
 * in order; a dead dependency cancels its dependants and theirs, with the
 * reason; after_any runs after a failure; dependencies already finished at
 * submit (succeeded, dead); an unknown id refused; a restart with waiting
 * jobs keeps their edges; cancel of a waiting job cascades, and retry
 * ignores dependencies; 100,000 jobs waiting on one are released by its
 * end (and the memory each costs is reported). A broker without sockets on
 * a real SQLite store and a fake clock (broker_test_fx.h), with a client
 * socket of its own as in broker_batch_test.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>
#include <sqlite3.h>
#include <zmq.h>

#include "broker_internal.h"
#include "broker_test_fx.h"

static void *s_dealer;
static const broker_rid_t s_rid = { .len = 3, .data = "cli" };

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

static void
s_restart(broker_fx_t *fx)
{
    s_detach();
    broker_fx_restart(fx);
    s_attach(fx);
}

/* Answers reads, commits, sends what waited: one pass of the loop. */
static void
s_pass(broker_t *b)
{
    for (int i = 0; i < 2; i++) {
        broker_fx_answer_reads(b);
        broker_fx_commit(b);
    }
}

/* The next message of type the client got (others skipped). */
static void
s_recv(dv_msg_type_t type, dv_msg_t *out, zmq_msg_t *f)
{
    broker_fx_recv(s_dealer, type, 5000, out, f);
}

/* One answer of a submit. */
typedef struct {
    char id[DV_ID_TEXT_LEN + 1]; /* "" when refused */
    dv_code_t code;
    char error[160];
} s_ack_t;

/* Submits n jobs of type, each waiting for after (nafter ids) and
 * after_any (nany ids); acks into out (n of them). */
static void
s_submit_n(broker_t *b, const char *type, int n, const char **after,
           uint32_t nafter, const char **any, uint32_t nany, s_ack_t *out)
{
    static uint64_t req;
    dv_str_t a[8], y[8];
    for (uint32_t i = 0; i < nafter; i++)
        a[i] = dv_str(after[i]);
    for (uint32_t i = 0; i < nany; i++)
        y[i] = dv_str(any[i]);
    dv_jobspec_t *js = calloc((size_t)n, sizeof *js);
    for (int i = 0; i < n; i++) {
        js[i].queue = dv_str("q");
        js[i].type = dv_str(type);
        js[i].priority = 5;
        js[i].after = nafter ? a : NULL;
        js[i].nafter = nafter;
        js[i].after_any = nany ? y : NULL;
        js[i].nafter_any = nany;
    }
    dv_msg_t m = { .type = DV_MSG_SUBMIT };
    m.u.submit.req = ++req;
    m.u.submit.jobs = js;
    m.u.submit.njobs = (uint32_t)n;
    broker_client_on_message(b, &s_rid, &m);
    free(js);
    s_pass(b);
    dv_msg_t r;
    zmq_msg_t f;
    s_recv(DV_MSG_SUBMIT_REPLY, &r, &f);
    assert_int_equal(r.u.submit_reply.req, req);
    assert_int_equal(r.u.submit_reply.nacks, (uint32_t)n);
    for (int i = 0; out && i < n; i++) {
        const dv_submit_ack_t *k = &r.u.submit_reply.acks[i];
        memset(&out[i], 0, sizeof out[i]);
        dv_str_copy(k->id, out[i].id, sizeof out[i].id);
        dv_str_copy(k->error, out[i].error, sizeof out[i].error);
        out[i].code = k->code;
    }
    dv_msg_release(&r);
    zmq_msg_close(&f);
}

/* Submits one job; returns its id (static, per call site copy it). */
static s_ack_t
s_submit(broker_t *b, const char *type, const char *after, const char *any)
{
    s_ack_t a;
    s_submit_n(b, type, 1, after ? &after : NULL, after ? 1 : 0,
               any ? &any : NULL, any ? 1 : 0, &a);
    return a;
}

static broker_job_t *
s_live(broker_t *b, const char *id)
{
    dv_id_t x;
    assert_int_equal(dv_id_parse(id, (unsigned)strlen(id), &x), 0);
    return broker_index_get(&b->index, &x);
}

/* The job's state: live in memory, else as stored (NONE: not stored). */
static dv_state_t
s_state(broker_t *b, const char *id)
{
    broker_job_t *job = s_live(b, id);
    if (job)
        return (dv_state_t)job->state;
    dv_state_t st = DV_STATE_NONE;
    broker_fx_answer_reads(b);
    return st;
}

/* A stored column of job id (text), into out. */
static const char *
s_col(broker_fx_t *fx, const char *id, const char *col, char *out, size_t size)
{
    char path[1200], sql[256];
    snprintf(path, sizeof path, "%s/drover.db", fx->dir);
    snprintf(sql, sizeof sql, "SELECT %s FROM jobs WHERE id = '%s'", col, id);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    out[0] = '\0';
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* Ends live job id in state, as a worker's report would. */
static void
s_end(broker_t *b, const char *id, dv_state_t state)
{
    broker_job_t *job = s_live(b, id);
    assert_non_null(job);
    dv_failure_t f = { .category = DV_CAT_HANDLER,
                       .message = dv_str("boom"),
                       .exit_code = -1 };
    broker_sched_finish(b, job, state, NULL, 0,
                        state == DV_STATE_SUCCEEDED ? NULL : &f);
    s_pass(b);
}

/* Runs a check: memory against the store; returns its differences. */
static int64_t
s_check(broker_fx_t *fx)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char why[192] = "";
    assert_int_equal(broker_check_body(fx->b, &sb, why, sizeof why),
                     DV_CODE_NONE);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    int64_t diff = -1;
    const msgpack_object_map *m = &u.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 11 &&
            !memcmp(k->via.str.ptr, "differences", 11))
            diff = (int64_t)m->ptr[i].val.via.u64;
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return diff;
}

/* ---- tests ------------------------------------------------------------ */

static void
t_chain_runs_in_order(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char buf[64];
    s_ack_t a = s_submit(b, "a", NULL, NULL);
    assert_string_equal(a.error, "");
    s_ack_t bb = s_submit(b, "b", a.id, NULL);
    assert_string_equal(bb.error, "");
    s_ack_t c = s_submit(b, "c", bb.id, NULL);
    assert_string_equal(c.error, "");

    assert_int_equal(s_state(b, a.id), DV_STATE_QUEUED);
    assert_int_equal(s_state(b, bb.id), DV_STATE_WAITING);
    assert_int_equal(s_state(b, c.id), DV_STATE_WAITING);
    assert_string_equal(s_col(fx, bb.id, "state", buf, sizeof buf), "waiting");
    broker_queue_t *q = dv_map_get(b->queues, "q");
    assert_non_null(q);
    assert_int_equal(q->ready, 1); /* a waiting job is in no FIFO */
    assert_int_equal(broker_deps_waiting(b), 2);
    assert_int_equal(s_check(fx), 0);

    s_end(b, a.id, DV_STATE_SUCCEEDED);
    assert_int_equal(s_state(b, bb.id), DV_STATE_QUEUED);
    assert_int_equal(s_state(b, c.id), DV_STATE_WAITING);
    assert_string_equal(s_col(fx, bb.id, "state", buf, sizeof buf), "queued");
    assert_int_equal(q->ready, 1);
    assert_int_equal(s_check(fx), 0);

    s_end(b, bb.id, DV_STATE_SUCCEEDED);
    assert_int_equal(s_state(b, c.id), DV_STATE_QUEUED);
    assert_int_equal(broker_deps_waiting(b), 0);
    s_end(b, c.id, DV_STATE_SUCCEEDED);
    assert_string_equal(s_col(fx, c.id, "state", buf, sizeof buf), "succeeded");
    assert_int_equal(broker_deps_bytes(b), 0);
}

static void
t_dead_cascades(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char buf[160];
    s_ack_t a = s_submit(b, "a", NULL, NULL);
    s_ack_t bb = s_submit(b, "b", a.id, NULL);
    s_ack_t c = s_submit(b, "c", bb.id, NULL);
    s_ack_t d = s_submit(b, "d", NULL, a.id); /* after_any */
    s_ack_t e = s_submit(b, "e", NULL, bb.id);
    assert_int_equal(s_state(b, d.id), DV_STATE_WAITING);

    s_end(b, a.id, DV_STATE_DEAD);
    assert_null(s_live(b, bb.id));
    assert_null(s_live(b, c.id));
    assert_string_equal(s_col(fx, bb.id, "state", buf, sizeof buf),
                        "cancelled");
    assert_string_equal(s_col(fx, c.id, "state", buf, sizeof buf), "cancelled");
    assert_string_equal(s_col(fx, bb.id, "category", buf, sizeof buf),
                        "cancelled");
    char want[128];
    snprintf(want, sizeof want, "dependency %s ended dead", a.id);
    assert_string_equal(s_col(fx, bb.id, "error", buf, sizeof buf), want);
    snprintf(want, sizeof want, "dependency %s ended cancelled", bb.id);
    assert_string_equal(s_col(fx, c.id, "error", buf, sizeof buf), want);
    /* after_any: runs whatever the end. */
    assert_int_equal(s_state(b, d.id), DV_STATE_QUEUED);
    assert_int_equal(s_state(b, e.id), DV_STATE_QUEUED);
    assert_int_equal(broker_deps_waiting(b), 0);
    assert_int_equal(s_check(fx), 0);
}

static void
t_finished_at_submit(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char buf[160];
    s_ack_t ok = s_submit(b, "ok", NULL, NULL);
    s_ack_t bad = s_submit(b, "bad", NULL, NULL);
    s_end(b, ok.id, DV_STATE_SUCCEEDED);
    s_end(b, bad.id, DV_STATE_DEAD);
    s_pass(b);
    assert_null(s_live(b, ok.id)); /* only in the store now */
    assert_null(s_live(b, bad.id));

    s_ack_t x = s_submit(b, "x", ok.id, NULL);
    assert_string_equal(x.error, "");
    assert_int_equal(s_state(b, x.id), DV_STATE_QUEUED);

    s_ack_t y = s_submit(b, "y", bad.id, NULL);
    assert_string_equal(y.error, ""); /* accepted, ends cancelled at once */
    s_pass(b);
    assert_null(s_live(b, y.id));
    assert_string_equal(s_col(fx, y.id, "state", buf, sizeof buf), "cancelled");

    s_ack_t z = s_submit(b, "z", NULL, bad.id);
    assert_string_equal(z.error, "");
    assert_int_equal(s_state(b, z.id), DV_STATE_QUEUED);

    /* Both lists, one finished and one live. */
    s_ack_t live = s_submit(b, "live", NULL, NULL);
    const char *after[] = { ok.id, live.id };
    s_ack_t w;
    s_submit_n(b, "w", 1, after, 2, NULL, 0, &w);
    assert_string_equal(w.error, "");
    assert_int_equal(s_state(b, w.id), DV_STATE_WAITING);
    s_end(b, live.id, DV_STATE_SUCCEEDED);
    assert_int_equal(s_state(b, w.id), DV_STATE_QUEUED);
    assert_int_equal(s_check(fx), 0);
}

static void
t_unknown_refused(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    const char *none = "0190a0b0-0000-7000-8000-000000000001";
    s_ack_t a = s_submit(b, "a", none, NULL);
    assert_string_equal(a.id, "");
    assert_int_equal(a.code, DV_CODE_NOT_FOUND);
    char want[96];
    snprintf(want, sizeof want, "after: no job %s", none);
    assert_string_equal(a.error, want);
    s_ack_t y = s_submit(b, "y", NULL, none);
    assert_int_equal(y.code, DV_CODE_NOT_FOUND);
    snprintf(want, sizeof want, "after_any: no job %s", none);
    assert_string_equal(y.error, want);
    /* One refused job does not refuse the others of its message. */
    s_ack_t live = s_submit(b, "live", NULL, NULL);
    const char *ids[] = { live.id, none };
    s_ack_t acks[2];
    s_submit_n(b, "two", 1, ids, 1, NULL, 0, &acks[0]);
    assert_string_equal(acks[0].error, "");
    s_submit_n(b, "two", 1, ids, 2, NULL, 0, &acks[1]);
    assert_int_equal(acks[1].code, DV_CODE_NOT_FOUND);
    assert_int_equal(broker_deps_waiting(b), 1);
    (void)fx;
}

static void
t_restart_keeps_edges(void **state)
{
    broker_fx_t *fx = *state;
    s_ack_t a = s_submit(fx->b, "a", NULL, NULL);
    s_ack_t bb = s_submit(fx->b, "b", a.id, NULL);
    s_ack_t c = s_submit(fx->b, "c", bb.id, NULL);
    s_ack_t gone = s_submit(fx->b, "gone", NULL, NULL);
    s_ack_t doomed = s_submit(fx->b, "doomed", gone.id, NULL);
    s_restart(fx);
    broker_t *b = fx->b;
    assert_int_equal(s_state(b, bb.id), DV_STATE_WAITING);
    assert_int_equal(s_state(b, c.id), DV_STATE_WAITING);
    assert_int_equal(broker_deps_waiting(b), 3);
    assert_int_equal(s_check(fx), 0);

    /* Recovered jobs wait out the rejoin window before they are queued. */
    broker_fx_advance_ms(fx, fx->cfg.rejoin_ms + 1000);
    broker_recover_end_rejoin(b);
    s_pass(b);
    s_end(b, gone.id, DV_STATE_CANCELLED);
    assert_null(s_live(b, doomed.id));
    s_end(b, a.id, DV_STATE_SUCCEEDED);
    assert_int_equal(s_state(b, bb.id), DV_STATE_QUEUED);
    assert_int_equal(s_state(b, c.id), DV_STATE_WAITING);
    s_end(b, bb.id, DV_STATE_SUCCEEDED);
    assert_int_equal(s_state(b, c.id), DV_STATE_QUEUED);
}

static void
t_finished_while_down(void **state)
{
    broker_fx_t *fx = *state;
    char buf[160];
    s_ack_t a = s_submit(fx->b, "a", NULL, NULL);
    s_ack_t a2 = s_submit(fx->b, "a2", NULL, NULL);
    s_ack_t bb = s_submit(fx->b, "b", a.id, NULL);
    s_ack_t c = s_submit(fx->b, "c", a2.id, NULL);
    /* Stopped: everything durable. Then a and a2 end behind its back
     * (as if their ends were the last writes before a crash). */
    s_detach();
    broker_group_end_pass(fx->b);
    broker_group_drain_all(fx->b);
    broker_destroy(&fx->b);
    char path[1200], sql[512];
    snprintf(path, sizeof path, "%s/drover.db", fx->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET state = 'succeeded', finished_at = 1, "
             "expires_at = 9000000000000 WHERE id = '%s';"
             "UPDATE jobs SET state = 'dead', finished_at = 1, "
             "expires_at = 9000000000000 WHERE id = '%s'",
             a.id, a2.id);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    fx->b = broker_core_open_at(&fx->cfg, &fx->clock);
    assert_non_null(fx->b);
    s_attach(fx);
    s_pass(fx->b);
    assert_int_equal(s_state(fx->b, bb.id), DV_STATE_QUEUED);
    assert_null(s_live(fx->b, c.id));
    assert_string_equal(s_col(fx, c.id, "state", buf, sizeof buf), "cancelled");
    assert_int_equal(broker_deps_waiting(fx->b), 0);
}

/* Sends ctrl verb for job id; returns whether it was ok. */
static bool
s_ctrl_id(broker_t *b, const char *verb, const char *id)
{
    static uint64_t req = 5000;
    dv_msg_t m = { .type = DV_MSG_CTRL };
    m.u.ctrl.req = ++req;
    m.u.ctrl.verb = dv_str(verb);
    m.u.ctrl.id = dv_str(id);
    broker_client_on_message(b, &s_rid, &m);
    s_pass(b);
    dv_msg_t r;
    zmq_msg_t f;
    s_recv(DV_MSG_REPLY, &r, &f);
    assert_int_equal(r.u.reply.req, req);
    bool ok = r.u.reply.ok;
    dv_msg_release(&r);
    zmq_msg_close(&f);
    return ok;
}

static void
t_cancel_and_retry(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char buf[160];
    s_ack_t a = s_submit(b, "a", NULL, NULL);
    s_ack_t bb = s_submit(b, "b", a.id, NULL);
    s_ack_t c = s_submit(b, "c", bb.id, NULL);
    s_ack_t d = s_submit(b, "d", NULL, bb.id);
    broker_queue_t *q = dv_map_get(b->queues, "q");
    assert_int_equal(q->waiting, 3);
    /* Cancelling a waiting job cancels what waits for it (after) and
     * releases what waits with after_any. */
    assert_true(s_ctrl_id(b, "cancel", bb.id));
    s_pass(b);
    assert_string_equal(s_col(fx, bb.id, "state", buf, sizeof buf),
                        "cancelled");
    assert_string_equal(s_col(fx, bb.id, "error", buf, sizeof buf),
                        "cancelled by request");
    assert_string_equal(s_col(fx, c.id, "state", buf, sizeof buf), "cancelled");
    assert_int_equal(s_state(b, d.id), DV_STATE_QUEUED);
    assert_int_equal(s_state(b, a.id), DV_STATE_QUEUED);
    assert_int_equal(q->waiting, 0);
    assert_int_equal(broker_deps_waiting(b), 0);
    /* Retry ignores dependencies: c runs now, although b did not
     * succeed. */
    assert_true(s_ctrl_id(b, "retry", c.id));
    s_pass(b);
    assert_int_equal(s_state(b, c.id), DV_STATE_QUEUED);
    assert_int_equal(s_check(fx), 0);
}

/* purge cancels the queue's waiting jobs too (and what waits on them,
 * wherever it is). */
static void
t_purge_takes_waiting_jobs(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char buf[160];
    s_ack_t a = s_submit(b, "a", NULL, NULL);
    s_ack_t bb = s_submit(b, "b", a.id, NULL);
    s_ack_t c = s_submit(b, "c", bb.id, NULL);
    broker_queue_t *q = dv_map_get(b->queues, "q");
    assert_int_equal(q->waiting, 2);
    /* a runs: purge leaves it alone, so b and c go as waiting jobs. */
    broker_fx_worker(fx, "w1", "q", 1);
    assert_int_equal(broker_fx_dispatch(fx), 1);
    assert_int_equal(s_state(b, a.id), DV_STATE_RUNNING);
    dv_msg_t m = { .type = DV_MSG_CTRL };
    m.u.ctrl.req = 7001;
    m.u.ctrl.verb = dv_str("purge");
    m.u.ctrl.queue = dv_str("q");
    broker_client_on_message(b, &s_rid, &m);
    s_pass(b);
    dv_msg_t r;
    zmq_msg_t f;
    s_recv(DV_MSG_REPLY, &r, &f);
    assert_true(r.u.reply.ok);
    dv_msg_release(&r);
    zmq_msg_close(&f);
    const char *ids[2] = { bb.id, c.id };
    for (int i = 0; i < 2; i++)
        assert_string_equal(s_col(fx, ids[i], "state", buf, sizeof buf),
                            "cancelled");
    assert_int_equal(s_state(b, a.id), DV_STATE_RUNNING);
    assert_int_equal(q->waiting, 0);
    assert_int_equal(q->ready, 0);
    assert_int_equal(broker_deps_waiting(b), 0);
    assert_int_equal(s_check(fx), 0);
}

static void
t_many_waiting(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    enum { N = 100000, PER = 1000 };
    s_ack_t a = s_submit(b, "a", NULL, NULL);
    s_ack_t *acks = calloc(PER, sizeof *acks);
    struct mallinfo2 before = mallinfo2();
    size_t bytes0 = broker_deps_bytes(b);
    for (int i = 0; i < N / PER; i++) {
        const char *after = a.id;
        s_submit_n(b, "w", PER, &after, 1, NULL, 0, acks);
        assert_string_equal(acks[PER - 1].error, "");
    }
    struct mallinfo2 after = mallinfo2();
    assert_int_equal(broker_deps_waiting(b), N);
    double tables = (double)(broker_deps_bytes(b) - bytes0) / N;
    double heap = (double)(after.uordblks - before.uordblks) / N;
    /* Reported: the side tables' records and edges per waiting job, and
     * everything the heap grew by per job (the job record, its index
     * slot, the maps' slots). */
    printf("deps memory: %.1f bytes per waiting job in records and edges, "
           "%.1f bytes of heap per job in all\n",
           tables, heap);
    assert_true(tables <= 128);
    broker_queue_t *q = dv_map_get(b->queues, "q");
    assert_int_equal(q->ready, 1);
    s_end(b, a.id, DV_STATE_SUCCEEDED);
    assert_int_equal(q->ready, N);
    assert_int_equal(broker_deps_waiting(b), 0);
    assert_int_equal(broker_deps_bytes(b), 0);
    free(acks);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_chain_runs_in_order, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_dead_cascades, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_finished_at_submit, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_unknown_refused, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_restart_keeps_edges, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_finished_while_down, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_cancel_and_retry, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_purge_takes_waiting_jobs, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_many_waiting, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
