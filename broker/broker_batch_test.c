/* Unit tests for batch records (broker_batch.c): the counts through
 * submit, durable insert, refusal and the jobs' ends; the callbacks
 * submitted once whether the close comes before or after the last job
 * ended; on_success against on_failure; a restart between the callback's
 * durable insert and its `called` record (exactly one callback job in the
 * store); the expiry keeping a batch's jobs until its callback ended; and
 * batch.jobs pages with results. A broker without sockets on a real SQLite
 * store and a fake clock (broker_test_fx.h), with a client socket of its
 * own as in broker_ctrl_test.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>
#include <zmq.h>

#include "broker_internal.h"
#include "broker_test_fx.h"
#include "dv_json.h"

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

static void
s_restart(broker_fx_t *fx)
{
    s_detach();
    broker_fx_restart(fx);
    s_attach(fx);
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

/* Answers reads, commits, sends what waited: one pass of the loop. */
static void
s_pass(broker_t *b)
{
    broker_fx_answer_reads(b);
    broker_batch_tick(b);
    broker_fx_answer_reads(b);
    broker_fx_commit(b);
}

/* The next message of type the client got (others skipped). */
static void
s_recv(dv_msg_type_t type, dv_msg_t *out, zmq_msg_t *f)
{
    broker_fx_recv(s_dealer, type, 2000, out, f);
}

typedef struct {
    bool ok;
    dv_code_t code;
    char error[160];
    json_t *body;
} s_answer_t;

/* Sends ctrl verb with args (JSON text), runs a pass, returns the answer. */
static s_answer_t
s_ctrl(broker_t *b, const char *verb, const char *args_json)
{
    static uint64_t req = 1000;
    json_t *j = json_loads(args_json, 0, NULL);
    assert_non_null(j);
    size_t len = 0;
    char *args = dv_json_to_msgpack(j, &len);
    json_decref(j);
    dv_msg_t m = { .type = DV_MSG_CTRL };
    m.u.ctrl.req = ++req;
    m.u.ctrl.verb = dv_str(verb);
    m.u.ctrl.args = dv_strn(args, len);
    broker_client_on_message(b, &s_rid, &m);
    free(args);
    s_pass(b);
    dv_msg_t r;
    zmq_msg_t f;
    s_recv(DV_MSG_REPLY, &r, &f);
    assert_int_equal(r.u.reply.req, req);
    s_answer_t a = { .ok = r.u.reply.ok, .code = r.u.reply.code };
    dv_str_copy(r.u.reply.error, a.error, sizeof a.error);
    if (r.u.reply.body.len)
        a.body =
            dv_msgpack_to_json(r.u.reply.body.ptr, r.u.reply.body.len, NULL, 0);
    dv_msg_release(&r);
    zmq_msg_close(&f);
    return a;
}

/* batch.show's counts[field] for name. */
static json_int_t
s_count(broker_t *b, const char *name, const char *field)
{
    char args[256];
    snprintf(args, sizeof args, "{\"name\": \"%s\"}", name);
    s_answer_t a = s_ctrl(b, "batch.show", args);
    assert_true(a.ok);
    json_int_t n = json_integer_value(
        json_object_get(json_object_get(a.body, "counts"), field));
    json_decref(a.body);
    return n;
}

static char *
s_state(broker_t *b, const char *name, char *out, size_t size)
{
    char args[256];
    snprintf(args, sizeof args, "{\"name\": \"%s\"}", name);
    s_answer_t a = s_ctrl(b, "batch.show", args);
    assert_true(a.ok);
    snprintf(out, size, "%s",
             json_string_value(json_object_get(a.body, "state")));
    json_decref(a.body);
    return out;
}

/* Submits n jobs of batch (result_ttl_ms 0: the default); returns how many
 * were accepted, and the last refusal's code in *code. */
static int
s_submit(broker_t *b, const char *batch, int n, int64_t ttl_ms, dv_code_t *code)
{
    static uint64_t req;
    dv_jobspec_t *js = calloc((size_t)n, sizeof *js);
    for (int i = 0; i < n; i++) {
        js[i].queue = dv_str("q");
        js[i].type = dv_str("work");
        js[i].batch = dv_str(batch);
        js[i].priority = 5;
        js[i].result_ttl_ms = ttl_ms;
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
    int ok = 0;
    for (uint32_t i = 0; i < r.u.submit_reply.nacks; i++) {
        if (r.u.submit_reply.acks[i].error.len) {
            if (code)
                *code = r.u.submit_reply.acks[i].code;
        } else {
            ok++;
        }
    }
    dv_msg_release(&r);
    zmq_msg_close(&f);
    return ok;
}

/* Ends up to n live jobs of type (and batch, if not NULL) in state. */
static int
s_end(broker_t *b, const char *type, const char *batch, dv_state_t state, int n)
{
    broker_job_t **jobs = calloc(b->index.cap, sizeof *jobs);
    int k = 0;
    for (size_t i = 0; i < b->index.cap && k < n; i++) {
        broker_job_t *job = broker_index_at(&b->index, i);
        if (!job || strcmp(job->type, type) != 0 ||
            (batch && (!job->batch || strcmp(job->batch, batch) != 0)) ||
            job->state == DV_STATE_SUCCEEDED || job->state == DV_STATE_DEAD ||
            job->state == DV_STATE_CANCELLED)
            continue;
        jobs[k++] = job;
    }
    dv_failure_t f = { .category = DV_CAT_HANDLER,
                       .message = dv_str("boom"),
                       .exit_code = -1 };
    for (int i = 0; i < k; i++) {
        char result[16];
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        snprintf(result, sizeof result, "r%d", i);
        msgpack_pack_str_with_body(&pk, result, strlen(result));
        if (state == DV_STATE_SUCCEEDED)
            broker_sched_finish(b, jobs[i], state, sb.data, sb.size, NULL);
        else
            broker_sched_finish(b, jobs[i], state, NULL, 0, &f);
        msgpack_sbuffer_destroy(&sb);
    }
    free(jobs);
    s_pass(b);
    return k;
}

/* Rows in the store's jobs table matching where (SQL). */
static int
s_rows(broker_fx_t *fx, const char *where)
{
    char path[1200], sql[512];
    snprintf(path, sizeof path, "%s/drover.db", fx->dir);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE %s", where);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void
s_sql(broker_fx_t *fx, const char *sql)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/drover.db", fx->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* The payload of the one live job of type, as JSON (caller decrefs). */
static json_t *
s_payload_of(broker_t *b, const char *type)
{
    for (size_t i = 0; i < b->index.cap; i++) {
        broker_job_t *job = broker_index_at(&b->index, i);
        if (job && !strcmp(job->type, type))
            return dv_msgpack_to_json(job->payload, job->payload_len, NULL, 0);
    }
    return NULL;
}

static void
s_open(broker_t *b, const char *args)
{
    s_answer_t a = s_ctrl(b, "batch.open", args);
    assert_true(a.ok);
    assert_string_equal(json_string_value(json_object_get(a.body, "state")),
                        "open");
    json_decref(a.body);
}

static void
s_close(broker_t *b, const char *name)
{
    char args[256];
    snprintf(args, sizeof args, "{\"name\": \"%s\"}", name);
    s_answer_t a = s_ctrl(b, "batch.close", args);
    assert_true(a.ok);
    json_decref(a.body);
}

/* ---- tests ------------------------------------------------------------ */

static void
t_counts_and_one_callback(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char st[32];
    s_open(b, "{\"name\": \"b1\", \"on_complete\": \"cb.done\", "
              "\"queue\": \"cbq\", \"payload\": {\"report\": \"r-7\"}}");
    /* The same open again is fine; other callbacks are not. */
    s_open(b, "{\"name\": \"b1\", \"on_complete\": \"cb.done\", "
              "\"queue\": \"cbq\", \"payload\": {\"report\": \"r-7\"}}");
    s_answer_t a = s_ctrl(b, "batch.open",
                          "{\"name\": \"b1\", "
                          "\"on_complete\": \"other\"}");
    assert_false(a.ok);
    assert_int_equal(a.code, DV_CODE_NOT_ALLOWED);

    assert_int_equal(s_submit(b, "b1", 3, 0, NULL), 3);
    assert_int_equal(s_count(b, "b1", "total"), 3);
    assert_int_equal(s_count(b, "b1", "pending"), 0);
    assert_int_equal(s_count(b, "b1", "live"), 3);
    assert_int_equal(s_end(b, "work", "b1", DV_STATE_SUCCEEDED, 2), 2);
    assert_int_equal(s_count(b, "b1", "succeeded"), 2);
    s_close(b, "b1");
    assert_string_equal(s_state(b, "b1", st, sizeof st), "closed");
    assert_int_equal(s_rows(fx, "type = 'cb.done'"), 0);

    /* Closed: no more jobs. */
    dv_code_t code = DV_CODE_NONE;
    assert_int_equal(s_submit(b, "b1", 1, 0, &code), 0);
    assert_int_equal(code, DV_CODE_NOT_ALLOWED);

    assert_int_equal(s_end(b, "work", "b1", DV_STATE_SUCCEEDED, 5), 1);
    s_pass(b);
    assert_string_equal(s_state(b, "b1", st, sizeof st), "called");
    assert_int_equal(s_rows(fx, "type = 'cb.done' AND queue = 'cbq'"), 1);
    json_t *p = s_payload_of(b, "cb.done");
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "batch")), "b1");
    assert_int_equal(json_integer_value(json_object_get(p, "total")), 3);
    assert_int_equal(json_integer_value(json_object_get(p, "succeeded")), 3);
    assert_int_equal(json_integer_value(json_object_get(p, "dead")), 0);
    assert_string_equal(json_string_value(json_object_get(p, "report")), "r-7");
    json_decref(p);

    /* Ticks later, with time passing: still one. */
    for (int i = 0; i < 3; i++) {
        broker_fx_advance_ms(fx, 61000);
        s_pass(b);
    }
    assert_int_equal(s_rows(fx, "type = 'cb.done'"), 1);

    /* The callback ends: done. */
    assert_int_equal(s_end(b, "cb.done", NULL, DV_STATE_SUCCEEDED, 1), 1);
    assert_string_equal(s_state(b, "b1", st, sizeof st), "done");
    a = s_ctrl(b, "batch.open", "{\"name\": \"b1\"}");
    assert_int_equal(a.code, DV_CODE_NOT_ALLOWED);
    a = s_ctrl(b, "batch.forget", "{\"name\": \"b1\"}");
    assert_true(a.ok);
    s_open(b, "{\"name\": \"b1\"}");
}

static void
t_close_after_the_last_end(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    char st[32];
    s_open(b, "{\"name\": \"late\", \"on_complete\": \"cb.late\"}");
    assert_int_equal(s_submit(b, "late", 2, 0, NULL), 2);
    assert_int_equal(s_end(b, "work", "late", DV_STATE_SUCCEEDED, 2), 2);
    s_pass(b);
    assert_string_equal(s_state(b, "late", st, sizeof st), "open");
    assert_int_equal(s_rows(fx, "type = 'cb.late'"), 0);
    s_close(b, "late");
    s_pass(b);
    assert_string_equal(s_state(b, "late", st, sizeof st), "called");
    assert_int_equal(s_rows(fx, "type = 'cb.late'"), 1);
}

static void
t_success_or_failure(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    s_open(b, "{\"name\": \"good\", \"on_complete\": \"c\", "
              "\"on_success\": \"ok\", \"on_failure\": \"bad\"}");
    s_open(b, "{\"name\": \"mixed\", \"on_complete\": \"c\", "
              "\"on_success\": \"ok\", \"on_failure\": \"bad\"}");
    assert_int_equal(s_submit(b, "good", 2, 0, NULL), 2);
    assert_int_equal(s_submit(b, "mixed", 3, 0, NULL), 3);
    s_close(b, "good");
    s_close(b, "mixed");
    assert_int_equal(s_end(b, "work", "good", DV_STATE_SUCCEEDED, 2), 2);
    assert_int_equal(s_end(b, "work", "mixed", DV_STATE_SUCCEEDED, 2), 2);
    assert_int_equal(s_end(b, "work", "mixed", DV_STATE_DEAD, 1), 1);
    s_pass(b);
    assert_int_equal(s_rows(fx, "type = 'c'"), 2);
    assert_int_equal(s_rows(fx, "type = 'ok'"), 1);
    assert_int_equal(s_rows(fx, "type = 'bad'"), 1);
    assert_int_equal(s_rows(fx, "key = 'drover:batch:good:success'"), 1);
    assert_int_equal(s_rows(fx, "key = 'drover:batch:mixed:failure'"), 1);
    json_t *p = s_payload_of(b, "bad");
    assert_int_equal(json_integer_value(json_object_get(p, "dead")), 1);
    assert_int_equal(json_integer_value(json_object_get(p, "total")), 3);
    json_decref(p);
}

/* A refused insert is taken out of pending, not counted. */
static void
t_refused_insert(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    b->store_retry_min_ms = 1;
    b->store_retry_max_ms = 2;
    s_open(b, "{\"name\": \"r\", \"on_complete\": \"cb.r\"}");
    broker_writer_fail_next(b->writer, DV_ENOSPC, 1);
    dv_code_t code = DV_CODE_NONE;
    assert_int_equal(s_submit(b, "r", 2, 0, &code), 0);
    assert_int_equal(code, DV_CODE_STORE);
    s_pass(b);
    assert_int_equal(s_count(b, "r", "total"), 0);
    assert_int_equal(s_count(b, "r", "pending"), 0);
    assert_int_equal(s_submit(b, "r", 1, 0, NULL), 1);
    s_close(b, "r");
    assert_int_equal(s_end(b, "work", "r", DV_STATE_SUCCEEDED, 5), 1);
    s_pass(b);
    json_t *p = s_payload_of(b, "cb.r");
    assert_int_equal(json_integer_value(json_object_get(p, "total")), 1);
    json_decref(p);
}

/* The broker stops after the callback's insert was durable and before its
 * `called` record was: at the next start the callback is submitted again,
 * as a duplicate, and the store holds one callback job. */
static void
t_restart_before_called(void **state)
{
    broker_fx_t *fx = *state;
    char st[32];
    s_open(fx->b, "{\"name\": \"rs\", \"on_complete\": \"cb.rs\"}");
    assert_int_equal(s_submit(fx->b, "rs", 4, 0, NULL), 4);
    s_close(fx->b, "rs");
    assert_int_equal(s_end(fx->b, "work", "rs", DV_STATE_SUCCEEDED, 4), 4);
    s_pass(fx->b);
    assert_int_equal(s_rows(fx, "type = 'cb.rs'"), 1);
    s_restart(fx);
    /* As if the `called` write had been lost with the crash. */
    s_sql(fx, "UPDATE batches SET state = 'closed', complete_id = NULL "
              "WHERE name = 'rs'");
    s_restart(fx);
    assert_string_equal(s_state(fx->b, "rs", st, sizeof st), "closed");
    s_pass(fx->b);
    s_pass(fx->b);
    assert_string_equal(s_state(fx->b, "rs", st, sizeof st), "called");
    assert_int_equal(s_rows(fx, "type = 'cb.rs'"), 1);
    /* And when it stopped before the callback was even submitted. */
    s_open(fx->b, "{\"name\": \"rs2\", \"on_complete\": \"cb.rs2\"}");
    assert_int_equal(s_submit(fx->b, "rs2", 2, 0, NULL), 2);
    s_close(fx->b, "rs2");
    broker_job_t *two[2];
    int k = 0;
    for (size_t i = 0; i < fx->b->index.cap && k < 2; i++) {
        broker_job_t *job = broker_index_at(&fx->b->index, i);
        if (job && job->batch && !strcmp(job->batch, "rs2"))
            two[k++] = job;
    }
    assert_int_equal(k, 2);
    broker_sched_finish(fx->b, two[0], DV_STATE_SUCCEEDED, NULL, 0, NULL);
    broker_sched_finish(fx->b, two[1], DV_STATE_SUCCEEDED, NULL, 0, NULL);
    s_restart(fx); /* the ends durable, no tick ran */
    assert_int_equal(s_rows(fx, "type = 'cb.rs2'"), 0);
    s_pass(fx->b);
    s_pass(fx->b);
    assert_int_equal(s_rows(fx, "type = 'cb.rs2'"), 1);
    json_t *p = s_payload_of(fx->b, "cb.rs2");
    assert_int_equal(json_integer_value(json_object_get(p, "total")), 2);
    assert_int_equal(json_integer_value(json_object_get(p, "succeeded")), 2);
    json_decref(p);

    /* And when it stopped with the callback submitted, its ack not yet
     * back: the insert in the group, no commit. */
    s_open(fx->b, "{\"name\": \"rs3\", \"on_complete\": \"cb.rs3\"}");
    assert_int_equal(s_submit(fx->b, "rs3", 1, 0, NULL), 1);
    s_close(fx->b, "rs3");
    k = 0;
    for (size_t i = 0; i < fx->b->index.cap && k < 1; i++) {
        broker_job_t *job = broker_index_at(&fx->b->index, i);
        if (job && job->batch && !strcmp(job->batch, "rs3"))
            two[k++] = job;
    }
    assert_int_equal(k, 1);
    broker_sched_finish(fx->b, two[0], DV_STATE_SUCCEEDED, NULL, 0, NULL);
    broker_batch_tick(fx->b);
    broker_fx_answer_reads(fx->b); /* the key's read: the insert is recorded */
    assert_non_null(fx->b->self_subs);
    s_restart(fx);
    s_pass(fx->b);
    s_pass(fx->b);
    assert_string_equal(s_state(fx->b, "rs3", st, sizeof st), "called");
    assert_int_equal(s_rows(fx, "type = 'cb.rs3'"), 1);
}

/* A batch's jobs outlive their result_ttl until its callback ended. */
static void
t_expiry_waits_for_the_callback(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    s_open(b, "{\"name\": \"ex\", \"on_complete\": \"cb.ex\"}");
    assert_int_equal(s_submit(b, "ex", 2, 1000, NULL), 2);
    assert_int_equal(s_submit(b, "plain", 1, 1000, NULL), 1);
    s_close(b, "ex");
    assert_int_equal(s_end(b, "work", "ex", DV_STATE_SUCCEEDED, 2), 2);
    assert_int_equal(s_end(b, "work", "plain", DV_STATE_SUCCEEDED, 1), 1);
    s_pass(b);
    broker_fx_advance_ms(fx, 10000);
    int64_t now = broker_now_ms(b);
    assert_true(broker_store_expire(b->store, now, 100) >= 1);
    assert_int_equal(s_rows(fx, "batch = 'plain'"), 0);
    assert_int_equal(s_rows(fx, "batch = 'ex'"), 2);
    assert_int_equal(s_end(b, "cb.ex", NULL, DV_STATE_SUCCEEDED, 1), 1);
    s_pass(b);
    assert_true(broker_store_expire(b->store, now, 100) >= 2);
    assert_int_equal(s_rows(fx, "batch = 'ex'"), 0);
}

/* batch.jobs: pages in id order, with results; a label works too. */
static void
t_jobs_pages(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    assert_int_equal(s_submit(b, "lab", 5, 0, NULL), 5);
    assert_int_equal(s_end(b, "work", "lab", DV_STATE_SUCCEEDED, 4), 4);
    char args[256] = "{\"name\": \"lab\", \"limit\": 2}";
    int seen = 0, results = 0;
    char last[64] = "";
    for (int page = 0; page < 5; page++) {
        s_answer_t a = s_ctrl(b, "batch.jobs", args);
        assert_true(a.ok);
        json_t *jobs = json_object_get(a.body, "jobs");
        size_t i;
        json_t *j;
        json_array_foreach(jobs, i, j)
        {
            const char *id = json_string_value(json_object_get(j, "id"));
            assert_true(strcmp(id, last) > 0);
            snprintf(last, sizeof last, "%s", id);
            seen++;
            results += json_object_get(j, "result") != NULL;
        }
        bool more = json_is_true(json_object_get(a.body, "more"));
        json_decref(a.body);
        if (!more)
            break;
        snprintf(args, sizeof args,
                 "{\"name\": \"lab\", \"limit\": 2, \"after\": \"%s\"}", last);
    }
    assert_int_equal(seen, 5);
    assert_int_equal(results, 4);
    /* A label's show: counts from the store. */
    assert_int_equal(s_count(b, "lab", "total"), 5);
    assert_int_equal(s_count(b, "lab", "live"), 1);
    s_answer_t a = s_ctrl(b, "batch.jobs", "{\"name\": \"lab\", \"limit\": 0}");
    assert_int_equal(a.code, DV_CODE_INVALID_ARGUMENT);
    a = s_ctrl(b, "batch.show", "{\"name\": \"nosuch\"}");
    assert_int_equal(a.code, DV_CODE_NOT_FOUND);
    a = s_ctrl(b, "batch.close", "{}");
    assert_int_equal(a.code, DV_CODE_INVALID_ARGUMENT);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_counts_and_one_callback, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_close_after_the_last_end, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_success_or_failure, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_refused_insert, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_restart_before_called, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(t_expiry_waits_for_the_callback,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_jobs_pages, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
