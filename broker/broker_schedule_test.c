/* Unit tests for periodic jobs (broker_schedule.c, broker_schedule_ctrl.c):
 * firings over a clock the test moves, across restarts (catch-up once and
 * skip), pause, resume, remove, --no-overlap, a firing refused while the
 * store fails, and 10,000 schedules. A broker without sockets but a client
 * socket of its own (as in broker_ctrl_test.c), on a real SQLite store
 * that the test reads with SQL to count the jobs each schedule made. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>
#include <zmq.h>

#include "broker_internal.h"
#include "broker_schedule.h"
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

static int
s_setup(void **state)
{
    broker_fx_setup(state);
    broker_fx_t *fx = *state;
    fx->b->store_retry_min_ms = 1;
    fx->b->store_retry_max_ms = 4;
    s_attach(fx);
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
    fx->b->store_retry_min_ms = 1;
    fx->b->store_retry_max_ms = 4;
    s_attach(fx);
}

/* Everything recorded so far made durable, and what waited on it done
 * (acks to their callbacks, whose own writes are committed too), with the
 * store reads answered. */
static void
s_settle(broker_t *b)
{
    for (int round = 0; round < 4; round++) {
        broker_fx_answer_reads(b);
        broker_fx_commit(b);
    }
}

/* One pass at the clock's time: due schedules fire, and settle. */
static void
s_pass(broker_fx_t *fx)
{
    do {
        broker_schedule_run_due(fx->b);
        s_settle(fx->b);
    } while (broker_schedule_next_due(fx->b) <= fx->clock.now_ms);
}

/* Moves the clock by step ms n times, a pass after each. */
static void
s_run(broker_fx_t *fx, int n, int64_t step)
{
    for (int i = 0; i < n; i++) {
        broker_fx_advance_ms(fx, step);
        s_pass(fx);
    }
}

typedef struct {
    bool ok;
    dv_code_t code;
    char error[320];
    json_t *body;
} s_answer_t;

/* Sends ctrl verb with args (JSON text, or NULL), settles, and returns the
 * answer. */
static s_answer_t
s_ctrl(broker_t *b, const char *verb, const char *args_json)
{
    static uint64_t req;
    dv_msg_t m = { .type = DV_MSG_CTRL };
    m.u.ctrl.req = ++req;
    m.u.ctrl.verb = dv_str(verb);
    char *args = NULL;
    if (args_json) {
        json_t *j = json_loads(args_json, 0, NULL);
        assert_non_null(j);
        size_t len = 0;
        args = dv_json_to_msgpack(j, &len);
        json_decref(j);
        m.u.ctrl.args = dv_strn(args, len);
    }
    broker_client_on_message(b, &s_rid, &m);
    free(args);
    s_settle(b);

    s_answer_t a = { 0 };
    zmq_pollitem_t it = { s_dealer, 0, ZMQ_POLLIN, 0 };
    assert_int_equal(zmq_poll(&it, 1, 5000), 1);
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
    dv_str_copy(r.u.reply.error, a.error, sizeof a.error);
    if (r.u.reply.body.len)
        a.body =
            dv_msgpack_to_json(r.u.reply.body.ptr, r.u.reply.body.len, NULL, 0);
    dv_msg_release(&r);
    zmq_msg_close(&f);
    return a;
}

static void
s_ok(broker_t *b, const char *verb, const char *args)
{
    s_answer_t a = s_ctrl(b, verb, args);
    if (!a.ok)
        fail_msg("%s %s: %s", verb, args ? args : "", a.error);
    json_decref(a.body);
}

/* ---- the store, read with SQL ---------------------------------------------- */

static int64_t
s_sql_int(broker_fx_t *fx, const char *sql)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/drover.db", fx->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* The jobs schedule name made, and the distinct firing times among them
 * (their keys); both must be equal (no firing twice). */
static int64_t
s_jobs(broker_fx_t *fx, const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE schedule = '%s'",
             name);
    int64_t n = s_sql_int(fx, sql);
    snprintf(sql, sizeof sql,
             "SELECT count(DISTINCT key) FROM jobs WHERE schedule = '%s' "
             "AND key LIKE 'drover:schedule:%s:%%'",
             name, name);
    assert_int_equal(s_sql_int(fx, sql), n);
    return n;
}

static broker_schedule_t *
s_get(broker_fx_t *fx, const char *name)
{
    broker_schedule_t *s = dv_map_get(fx->b->schedules, name);
    assert_non_null(s);
    return s;
}

/* ---- tests ------------------------------------------------------------------ */

/* Every second over a clock moved 10 s by steps of 1 s, then 10 s by steps
 * of 250 ms: one job per second, at anchor + k s. */
static void
t_every_fires_the_right_count(void **state)
{
    broker_fx_t *fx = *state;
    int64_t t0 = fx->clock.now_ms;
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"tick\", \"every\": \"1s\", \"type\": \"noop\"}");
    s_pass(fx);
    assert_int_equal(s_jobs(fx, "tick"), 0);
    s_run(fx, 10, 1000);
    assert_int_equal(s_jobs(fx, "tick"), 10);
    s_run(fx, 40, 250);
    assert_int_equal(s_jobs(fx, "tick"), 20);
    broker_schedule_t *s = s_get(fx, "tick");
    assert_int_equal(s->firings, 20);
    assert_int_equal(s->last_fire_ms, t0 + 20000);
    assert_int_equal(s->next_ms, t0 + 21000);
    char sql[200];
    snprintf(
        sql, sizeof sql,
        "SELECT count(*) FROM jobs WHERE key = 'drover:schedule:tick:%lld'",
        (long long)(t0 + 20000));
    assert_int_equal(s_sql_int(fx, sql), 1);
    /* The row says the same. */
    assert_int_equal(
        s_sql_int(fx, "SELECT firings FROM schedules WHERE name = 'tick'"), 20);
    assert_int_equal(
        s_sql_int(fx, "SELECT next_at FROM schedules WHERE name = 'tick'"),
        t0 + 21000);
}

/* A restart in the middle loses and duplicates nothing; with catch-up once
 * the broker, down for 32 s, fires the last missed firing once; with skip
 * it fires none of them (the last was 2 s ago) and goes on at the next. */
static void
s_restart_case(broker_fx_t *fx, const char *catch_up, int64_t want_after)
{
    int64_t t0 = fx->clock.now_ms;
    char args[200];
    snprintf(args, sizeof args,
             "{\"name\": \"tick\", \"every\": \"5s\", \"type\": \"noop\", "
             "\"catch_up\": \"%s\"}",
             catch_up);
    s_ok(fx->b, "schedule.add", args);
    s_run(fx, 3, 5000);
    assert_int_equal(s_jobs(fx, "tick"), 3);
    /* A firing submitted, its ack not back, when the broker stops. */
    broker_fx_advance_ms(fx, 5000);
    broker_schedule_run_due(fx->b);
    s_restart(fx);
    s_pass(fx);
    assert_int_equal(s_jobs(fx, "tick"), 4);
    assert_int_equal(s_get(fx, "tick")->firings, 4);
    /* Down for 32 s: firings at t0 + 25 s .. 50 s missed. */
    s_restart(fx);
    broker_fx_advance_ms(fx, 32000);
    s_pass(fx);
    assert_int_equal(s_jobs(fx, "tick"), 4 + want_after);
    broker_schedule_t *s = s_get(fx, "tick");
    assert_int_equal(s->next_ms, t0 + 55000);
    assert_int_equal(s->last_fire_ms, want_after ? t0 + 50000 : t0 + 20000);
    s_run(fx, 1, 3000);
    s_run(fx, 1, 5000);
    assert_int_equal(s_jobs(fx, "tick"), 6 + want_after);
    assert_int_equal(s_get(fx, "tick")->firings, 6 + want_after);
}

static void
t_restart_catch_up_once(void **state)
{
    s_restart_case(*state, "once", 1);
}

static void
t_restart_catch_up_skip(void **state)
{
    s_restart_case(*state, "skip", 0);
}

/* The same firing submitted twice (no ack within 60 s, or after a crash)
 * is one job. */
static void
t_firing_again_is_a_duplicate(void **state)
{
    broker_fx_t *fx = *state;
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"tick\", \"every\": \"1h\", \"type\": \"noop\"}");
    broker_fx_advance_ms(fx, 3600 * 1000);
    broker_schedule_run_due(fx->b);
    /* The ack lost: the submit is forgotten. */
    broker_self_free_all(fx->b);
    s_settle(fx->b);
    assert_int_equal(s_jobs(fx, "tick"), 1);
    broker_schedule_t *s = s_get(fx, "tick");
    assert_int_equal(s->phase, BROKER_SCHED_INFLIGHT);
    assert_int_equal(s->firings, 0);
    /* 60 s later it is submitted again: a duplicate, and it advances. */
    s_run(fx, 1, 60000);
    assert_int_equal(s_jobs(fx, "tick"), 1);
    assert_int_equal(s->phase, BROKER_SCHED_IDLE);
    assert_int_equal(s->firings, 1);
    assert_true(s->has_last_job);
}

/* A six-field cron expression: every 5 s on the wall clock; after two
 * days down, catch-up once fires the last missed firing once, without
 * walking every second of the outage. */
static void
t_cron_fires_and_catches_up(void **state)
{
    broker_fx_t *fx = *state;
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"five\", \"cron\": \"*/5 * * * * *\", "
         "\"tz\": \"Europe/Berlin\", \"type\": \"noop\"}");
    s_run(fx, 20, 1000);
    assert_int_equal(s_jobs(fx, "five"), 4);
    broker_schedule_t *s = s_get(fx, "five");
    assert_int_equal(s->last_fire_ms % 5000, 0);
    assert_int_equal(s->next_ms, s->last_fire_ms + 5000);
    s_restart(fx);
    broker_fx_advance_ms(fx, 2 * 86400 * 1000 + 2000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    s_pass(fx);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(s_jobs(fx, "five"), 5);
    s = s_get(fx, "five");
    assert_int_equal(s->last_fire_ms, fx->clock.now_ms / 5000 * 5000);
    assert_true(s->next_ms > fx->clock.now_ms);
    assert_true((t1.tv_sec - t0.tv_sec) * 1000 +
                    (t1.tv_nsec - t0.tv_nsec) / 1000000 <
                2000);
}

static void
t_pause_resume(void **state)
{
    broker_fx_t *fx = *state;
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"tick\", \"every\": \"1s\", \"type\": \"noop\"}");
    s_run(fx, 2, 1000);
    s_answer_t a = s_ctrl(fx->b, "schedule.pause", "{\"name\": \"tick\"}");
    assert_true(a.ok);
    assert_true(json_is_true(json_object_get(a.body, "paused")));
    assert_true(json_is_null(json_object_get(a.body, "next_fire_at")));
    json_decref(a.body);
    s_run(fx, 5, 1000);
    assert_int_equal(s_jobs(fx, "tick"), 2);
    /* Paused across a restart too. */
    s_restart(fx);
    s_run(fx, 2, 1000);
    assert_int_equal(s_jobs(fx, "tick"), 2);
    assert_true(s_get(fx, "tick")->paused);
    s_ok(fx->b, "schedule.resume", "{\"name\": \"tick\"}");
    /* The firings missed while paused are not made up for. */
    s_pass(fx);
    assert_int_equal(s_jobs(fx, "tick"), 2);
    s_run(fx, 3, 1000);
    assert_int_equal(s_jobs(fx, "tick"), 5);
    a = s_ctrl(fx->b, "schedule.pause", "{\"name\": \"nosuch\"}");
    assert_false(a.ok);
    assert_int_equal(a.code, DV_CODE_NOT_FOUND);
}

static void
t_remove(void **state)
{
    broker_fx_t *fx = *state;
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"tick\", \"every\": \"1s\", \"type\": \"noop\"}");
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"tock\", \"every\": \"2s\", \"type\": \"noop\"}");
    s_run(fx, 2, 1000);
    s_ok(fx->b, "schedule.remove", "{\"name\": \"tick\"}");
    s_run(fx, 4, 1000);
    assert_int_equal(s_jobs(fx, "tick"), 2);
    assert_int_equal(s_jobs(fx, "tock"), 3);
    assert_null(dv_map_get(fx->b->schedules, "tick"));
    s_restart(fx);
    assert_null(dv_map_get(fx->b->schedules, "tick"));
    assert_non_null(dv_map_get(fx->b->schedules, "tock"));
    assert_int_equal(s_sql_int(fx, "SELECT count(*) FROM schedules"), 1);
    s_answer_t a = s_ctrl(fx->b, "schedule.remove", "{\"name\": \"tick\"}");
    assert_false(a.ok);
    assert_int_equal(a.code, DV_CODE_NOT_FOUND);
    /* Removed while its firing waits for the ack: no harm. */
    broker_fx_advance_ms(fx, 2000);
    broker_schedule_run_due(fx->b);
    assert_int_equal(s_get(fx, "tock")->phase, BROKER_SCHED_INFLIGHT);
    s_ok(fx->b, "schedule.remove", "{\"name\": \"tock\"}");
    assert_null(fx->b->sched_zombies);
    assert_int_equal(s_sql_int(fx, "SELECT count(*) FROM schedules"), 0);
}

/* --no-overlap: while the last job is live the firing is skipped. */
static void
t_no_overlap(void **state)
{
    broker_fx_t *fx = *state;
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"slow\", \"every\": \"1s\", \"type\": \"noop\", "
         "\"no_overlap\": true}");
    s_run(fx, 1, 1000);
    assert_int_equal(s_jobs(fx, "slow"), 1);
    /* The job is queued (no worker): the next two firings are skipped. */
    s_run(fx, 2, 1000);
    broker_schedule_t *s = s_get(fx, "slow");
    assert_int_equal(s_jobs(fx, "slow"), 1);
    assert_int_equal(s->skipped, 2);
    assert_int_equal(s->firings, 1);
    /* It runs, still live: skipped. */
    broker_fx_worker(fx, "w1", "default", 1);
    assert_int_equal(broker_fx_dispatch(fx), 1);
    s_run(fx, 1, 1000);
    assert_int_equal(s->skipped, 3);
    /* Cancelled: the next firing makes a job. */
    broker_job_t *job = broker_index_get(&fx->b->index, &s->last_job);
    assert_non_null(job);
    broker_sched_finish(fx->b, job, DV_STATE_CANCELLED, NULL, 0, NULL);
    s_settle(fx->b);
    s_run(fx, 1, 1000);
    assert_int_equal(s_jobs(fx, "slow"), 2);
    assert_int_equal(s->skipped, 3);
    assert_int_equal(
        s_sql_int(fx, "SELECT skipped FROM schedules WHERE name = 'slow'"), 3);
}

/* A firing refused while the store fails is tried again (1 s, 2 s, ...)
 * until it is durable: one job for the firing. */
static void
t_refused_firing_is_retried(void **state)
{
    broker_fx_t *fx = *state;
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"tick\", \"every\": \"1h\", \"type\": \"noop\"}");
    broker_t *b = fx->b;
    broker_fx_advance_ms(fx, 3600 * 1000);
    /* The store is failing when the firing is due. */
    b->store_failed = true;
    snprintf(b->store_reason, sizeof b->store_reason,
             "store unavailable: disk full");
    broker_schedule_run_due(b);
    broker_schedule_t *s = s_get(fx, "tick");
    assert_int_equal(s->phase, BROKER_SCHED_RETRY);
    assert_int_equal(s->backoff_ms, 1000);
    s_run(fx, 1, 1000);
    assert_int_equal(s->phase, BROKER_SCHED_RETRY);
    assert_int_equal(s->backoff_ms, 2000);
    assert_int_equal(s_jobs(fx, "tick"), 0);
    /* A failing group, too: its insert is refused, the firing retried. */
    b->store_failed = false;
    broker_writer_fail_next(b->writer, DV_ENOSPC, 2);
    for (int i = 0; i < 20 && s->phase != BROKER_SCHED_IDLE; i++)
        s_run(fx, 1, 1000);
    assert_int_equal(s->phase, BROKER_SCHED_IDLE);
    assert_int_equal(s_jobs(fx, "tick"), 1);
    assert_int_equal(s->firings, 1);
    assert_int_equal(s->last_fire_ms, s->next_ms - 3600 * 1000);
    assert_true(s->last_lag_ms >= 3000);
}

/* Bad arguments name their field. */
static void
t_bad_args(void **state)
{
    broker_fx_t *fx = *state;
    static const struct {
        const char *args, *want;
    } cases[] = {
        { "{\"every\": \"1s\", \"type\": \"noop\"}", "name: required" },
        { "{\"name\": \"x\", \"every\": \"1s\"}", "type: required" },
        { "{\"name\": \"x\", \"type\": \"noop\"}", "cron, every:" },
        { "{\"name\": \"x\", \"type\": \"noop\", \"every\": \"1s\", "
          "\"cron\": \"* * * * *\"}",
          "cron, every:" },
        { "{\"name\": \"x\", \"type\": \"noop\", \"every\": \"soon\"}",
          "every: " },
        { "{\"name\": \"x\", \"type\": \"noop\", \"every\": 5}", "every: " },
        { "{\"name\": \"x\", \"type\": \"noop\", \"cron\": \"61 * * * *\"}",
          "cron: " },
        { "{\"name\": \"x\", \"type\": \"noop\", \"cron\": \"* * * * *\", "
          "\"tz\": \"Nowhere/Atlantis\"}",
          "tz: " },
        { "{\"name\": \"x\", \"type\": \"noop\", \"every\": \"1s\", "
          "\"priority\": 12}",
          "priority: " },
        { "{\"name\": \"x\", \"type\": \"noop\", \"every\": \"1s\", "
          "\"catch_up\": \"all\"}",
          "catch_up: " },
        { "{\"name\": \"a\\u0001b\", \"type\": \"noop\", \"every\": \"1s\"}",
          "name: " },
        { "{\"name\": \"x\", \"type\": \"noop\", \"every\": \"1s\", "
          "\"no_overlap\": 1}",
          "no_overlap: " },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_answer_t a = s_ctrl(fx->b, "schedule.add", cases[i].args);
        if (a.ok || a.code != DV_CODE_INVALID_ARGUMENT ||
            strncmp(a.error, cases[i].want, strlen(cases[i].want)))
            fail_msg("%s: got %d '%s'", cases[i].args, a.code, a.error);
    }
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"x\", \"type\": \"noop\", \"every\": \"1s\"}");
    s_answer_t a = s_ctrl(fx->b, "schedule.add",
                          "{\"name\": \"x\", \"type\": \"noop\", "
                          "\"every\": \"2s\"}");
    assert_false(a.ok);
    assert_int_equal(a.code, DV_CODE_INVALID_ARGUMENT);
    assert_int_equal(dv_map_size(fx->b->schedules), 1);
    assert_int_equal(s_sql_int(fx, "SELECT count(*) FROM schedules"), 1);
}

/* list and show: every field, the last job's state from memory or the
 * store. */
static void
t_list_show(void **state)
{
    broker_fx_t *fx = *state;
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"b\", \"cron\": \"*/5 * * * * *\", \"tz\": "
         "\"Europe/Berlin\", \"type\": \"report\", \"queue\": \"q\", "
         "\"payload\": {\"x\": 1}, \"priority\": 7}");
    s_ok(fx->b, "schedule.add",
         "{\"name\": \"a\", \"every\": \"90s\", \"type\": \"noop\"}");
    s_run(fx, 1, 5000);
    s_answer_t a = s_ctrl(fx->b, "schedule.list", NULL);
    assert_true(a.ok);
    json_t *list = json_object_get(a.body, "schedules");
    assert_int_equal(json_array_size(list), 2);
    json_t *sa = json_array_get(list, 0), *sb = json_array_get(list, 1);
    assert_string_equal(json_string_value(json_object_get(sa, "name")), "a");
    assert_string_equal(json_string_value(json_object_get(sa, "spec")),
                        "every 90s");
    assert_true(json_is_null(json_object_get(sa, "last_job")));
    assert_string_equal(json_string_value(json_object_get(sb, "tz")),
                        "Europe/Berlin");
    assert_string_equal(
        json_string_value(json_object_get(sb, "last_job_state")), "queued");
    assert_int_equal(json_integer_value(json_object_get(sb, "firings")), 1);
    assert_int_equal(json_integer_value(json_object_get(sb, "payload_bytes")),
                     4);
    assert_true(json_integer_value(json_object_get(sb, "next_fire_at")) >
                fx->clock.now_ms);
    json_decref(a.body);
    /* After a restart the job is not in memory... it is (queued jobs are
     * recovered); cancel it and restart, so its state comes from the
     * store. */
    broker_schedule_t *s = s_get(fx, "b");
    broker_job_t *job = broker_index_get(&fx->b->index, &s->last_job);
    broker_sched_finish(fx->b, job, DV_STATE_CANCELLED, NULL, 0, NULL);
    s_settle(fx->b);
    s_restart(fx);
    a = s_ctrl(fx->b, "schedule.show", "{\"name\": \"b\"}");
    assert_true(a.ok);
    assert_string_equal(
        json_string_value(json_object_get(a.body, "last_job_state")),
        "cancelled");
    json_decref(a.body);
    a = s_ctrl(fx->b, "schedule.show", "{\"name\": \"zzz\"}");
    assert_false(a.ok);
    assert_int_equal(a.code, DV_CODE_NOT_FOUND);
}

/* 10,000 schedules: one round of firings, O(log n) each. */
static void
t_ten_thousand(void **state)
{
    broker_fx_t *fx = *state;
    broker_t *b = fx->b;
    enum { N = 10000 };
    struct mallinfo2 m0 = mallinfo2();
    int64_t now = fx->clock.now_ms;
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%05d", i);
        broker_schedule_rec_t r = {
            .name = name,
            .every_ms = 60000,
            .anchor_ms = now + i, /* spread over 10 s */
            .queue = "default",
            .type = "noop",
            .priority = 5,
            .created_ms = now,
        };
        char err[128];
        broker_schedule_t *s = broker_schedule_from_rec(b, &r, err, sizeof err);
        assert_non_null(s);
        s->next_ms = broker_schedule_next_after(s, now);
        assert_int_equal(broker_schedule_insert(b, s), 0);
    }
    struct mallinfo2 m1 = mallinfo2();
    broker_schedule_t *s;
    DV_MAP_EACH(s, b->schedules)
    {
        assert_int_equal(broker_schedule_save(b, s), 0);
    }
    s_settle(b);
    assert_int_equal(s_sql_int(fx, "SELECT count(*) FROM schedules"), N);
    broker_fx_advance_ms(fx, 60000 + N);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    s_pass(fx);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_int_equal(s_sql_int(fx, "SELECT count(*) FROM jobs WHERE schedule "
                                   "IS NOT NULL"),
                     N);
    assert_int_equal(s_sql_int(fx, "SELECT count(*) FROM schedules WHERE "
                                   "firings = 1"),
                     N);
    DV_MAP_EACH(s, b->schedules)
    {
        assert_int_equal(s->firings, 1);
        assert_int_equal(s->phase, BROKER_SCHED_IDLE);
        assert_true(s->next_ms > fx->clock.now_ms);
    }
    assert_int_equal(b->nsheap, N);
    print_message("10000 schedules: %zu bytes in memory (%zu per schedule), "
                  "one round of firings submitted and committed in %.1f ms\n",
                  (size_t)(m1.uordblks - m0.uordblks),
                  (size_t)(m1.uordblks - m0.uordblks) / N,
                  (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                      (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, s_setup, s_teardown)
    const struct CMUnitTest tests[] = {
        T(t_every_fires_the_right_count),
        T(t_restart_catch_up_once),
        T(t_restart_catch_up_skip),
        T(t_firing_again_is_a_duplicate),
        T(t_cron_fires_and_catches_up),
        T(t_pause_resume),
        T(t_remove),
        T(t_no_overlap),
        T(t_refused_firing_is_retried),
        T(t_bad_args),
        T(t_list_show),
        T(t_ten_thousand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
