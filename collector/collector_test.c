/* Unit tests of the collector's state, store and query verbs, fed with
 * events built here (tests/test_collector.c runs the real processes).
 *
 * One binary, two runs: `collector_test` runs everything with the history
 * in SQLite files; `collector_test pg` starts a PostgreSQL server of its
 * own (tests/fixtures/pg_server) and runs the store and query cases there,
 * each on a fresh database, plus what only PostgreSQL has: the collector
 * schema beside a broker's tables, the same JSON as SQLite for the same
 * events, a password kept out of logs, a lost connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "collector_access.h"
#include "collector_http.h"
#include "collector_query.h"
#include "collector_state.h"
#include "collector_store.h"
#include "collector_store_be.h"
#include "dv_body.h"
#include "dv_clock.h"
#include "dv_json.h"
#include "dv_log.h"
#include "pg_server.h"

#define BROKER "ipc:///tmp/b1"
#define INST   "01a20000-0000-7000-8000-00000000000a"
#define JOB_A  "01a20000-0000-7000-8000-0000000000a1"
#define JOB_B  "01a20000-0000-7000-8000-0000000000b1"

static uint64_t s_seq;

/* An event of kind for job id (may be NULL) in queue q, type t. */
static dv_event_t
s_ev(const char *kind, const char *id, const char *q, const char *t)
{
    dv_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.seq = ++s_seq;
    ev.broker = dv_str(INST);
    ev.ts_ms = 1000000 + (int64_t)s_seq * 10;
    ev.kind = dv_str(kind);
    ev.kind_enum = dv_event_kind_parse(kind, strlen(kind));
    ev.id = dv_str(id);
    ev.queue = dv_str(q);
    ev.type = dv_str(t);
    return ev;
}

static dv_event_t
s_failed(const char *id, int attempt, dv_state_t state, dv_category_t cat)
{
    dv_event_t ev = s_ev("job.failed", id, "q", "t");
    ev.worker = dv_str("w1");
    ev.attempt = attempt;
    ev.state = state;
    ev.has_failure = true;
    dv_failure_init(&ev.failure);
    ev.failure.category = cat;
    ev.failure.message = dv_str("boom");
    ev.failure.exit_code = 3;
    return ev;
}

static char *s_metrics(collector_state_t *st, int64_t now_ms);

/* ---- sequence numbers ---------------------------------------------------- */

static void
t_seq(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    assert_int_equal(collector_state_add_broker(st, BROKER, NULL), 0);
    uint64_t from, to;
    dv_event_t ev = s_ev("worker.heartbeat", NULL, NULL, NULL);
    ev.seq = 1;
    assert_int_equal(collector_state_seq(st, 0, &ev, &from, &to),
                     COLLECTOR_SEQ_FIRST);
    ev.seq = 2;
    assert_int_equal(collector_state_seq(st, 0, &ev, &from, &to),
                     COLLECTOR_SEQ_OK);
    ev.seq = 5;
    assert_int_equal(collector_state_seq(st, 0, &ev, &from, &to),
                     COLLECTOR_SEQ_GAP);
    assert_int_equal(from, 3);
    assert_int_equal(to, 4);
    assert_false(collector_state_wants_snapshot(st, 0)); /* no clients ep */
    assert_int_equal(collector_state_seq(st, 0, &ev, &from, &to),
                     COLLECTOR_SEQ_OLD);
    ev.broker = dv_str("01a20000-0000-7000-8000-00000000000b");
    ev.seq = 3;
    assert_int_equal(collector_state_seq(st, 0, &ev, &from, &to),
                     COLLECTOR_SEQ_RESTART);
    assert_int_equal(from, 1);
    assert_int_equal(to, 2);
    assert_int_equal(collector_state_gaps_total(st), 2);
    collector_state_destroy(&st);

    /* What a previous run saw: the first event tells what was missed. */
    st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, "ipc:///tmp/c1");
    assert_true(collector_state_wants_snapshot(st, 0));
    collector_state_broker_known(st, 0, INST, 10);
    ev.broker = dv_str(INST);
    ev.seq = 15;
    assert_int_equal(collector_state_seq(st, 0, &ev, &from, &to),
                     COLLECTOR_SEQ_GAP);
    assert_int_equal(from, 11);
    assert_int_equal(to, 14);
    collector_state_destroy(&st);
}

/* ---- depth from a snapshot plus deltas ----------------------------------- */

static json_t *
s_queue(collector_state_t *st, const char *name)
{
    json_t *qs = collector_state_queues(st, 1000100);
    json_t *q = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(
        qs, i, v) if (!strcmp(json_string_value(json_object_get(v, "name")),
                              name)) q = json_incref(v);
    json_decref(qs);
    return q;
}

static int64_t
s_int(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

/* Applies broker 0's status answer, given as JSON, as the collector gets
 * it: packed, then decoded with dv_status_decode(). */
static int
s_snapshot_of(collector_state_t *st, int b, json_t *snap, int64_t now_ms)
{
    size_t len;
    char *mp = dv_json_to_msgpack(snap, &len);
    assert_non_null(mp);
    dv_status_t status;
    char why[256];
    if (dv_status_decode(mp, len, &status, why, sizeof why) != DV_OK)
        fail_msg("status does not decode: %s", why);
    int rc = collector_state_snapshot(st, b, &status, now_ms);
    dv_status_release(&status);
    free(mp);
    return rc;
}

static int
s_snapshot(collector_state_t *st, json_t *snap, int64_t now_ms)
{
    return s_snapshot_of(st, 0, snap, now_ms);
}

/* A job.succeeded that carries its start (the broker sent no
 * job.started): the job goes from queued to done, its wait is counted. */
static void
t_success_carries_its_start(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, "ipc:///tmp/c1");
    json_t *snap = json_loads(
        "{\"broker\": \"" INST "\", \"store\": \"sqlite\", \"uptime_ms\": 5,"
        " \"queues\": [{\"name\": \"q\", \"queued\": 0, \"running\": 0}],"
        " \"workers\": [], \"counters\": {}}",
        0, NULL);
    assert_non_null(snap);
    assert_int_equal(s_snapshot(st, snap, 1000000), 0);
    dv_event_t ev = s_ev("job.submitted", JOB_A, "q", "t");
    ev.state = DV_STATE_QUEUED;
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    json_t *q = s_queue(st, "q");
    assert_int_equal(s_int(q, "queued"), 1);
    json_decref(q);
    ev = s_ev("job.succeeded", JOB_A, "q", "t");
    ev.worker = dv_str("w1");
    ev.attempt = 1;
    ev.started_ms = ev.ts_ms - 3;
    ev.run_ms = 3;
    ev.wait_ms = 7;
    int64_t run = 0;
    assert_int_equal(collector_state_apply(st, 0, &ev, 1000000, &run), 0);
    q = s_queue(st, "q");
    assert_int_equal(s_int(q, "queued"), 0);
    assert_int_equal(s_int(q, "running"), 0);
    assert_int_equal(s_int(json_object_get(q, "totals"), "succeeded"), 1);
    assert_int_equal(s_int(json_object_get(q, "wait_ms"), "p99"), 7);
    json_decref(q);
    json_decref(snap);
    collector_state_destroy(&st);
}

static void
t_snapshot_and_deltas(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, "ipc:///tmp/c1");
    json_t *snap = json_loads(
        "{\"broker\": \"" INST "\", \"store\": \"sqlite\", \"uptime_ms\": 5,"
        " \"queues\": [{\"name\": \"q\", \"queued\": 2, \"scheduled\": 1,"
        "  \"running\": 0, \"paused\": false, \"rate\": 0,"
        "  \"max_running\": 0}],"
        " \"workers\": [{\"name\": \"w1\", \"host\": \"h\", \"pid\": 7,"
        "  \"concurrency\": 4, \"credit\": 4, \"running\": 0, \"processed\": 9,"
        "  \"failed\": 1, \"queues\": [\"q\"], \"draining\": false},"
        "  {\"name\": \"w2\", \"concurrency\": 1, \"queues\": [\"other\"]}],"
        " \"counters\": {\"submitted\": 3}}",
        0, NULL);
    assert_non_null(snap);
    assert_int_equal(s_snapshot(st, snap, 1000000), 0);
    assert_false(collector_state_wants_snapshot(st, 0));

    dv_event_t ev = s_ev("job.submitted", JOB_A, "q", "t");
    ev.state = DV_STATE_QUEUED;
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    ev = s_ev("job.started", JOB_A, "q", "t");
    ev.worker = dv_str("w1");
    ev.attempt = 1;
    ev.wait_ms = 40;
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    json_t *q = s_queue(st, "q");
    assert_int_equal(s_int(q, "queued"), 2);
    assert_int_equal(s_int(q, "running"), 1);
    assert_int_equal(s_int(q, "workers"), 1);
    json_decref(q);
    /* Running jobs show under their worker. */
    json_t *ws = collector_state_workers(st, 1000000);
    json_t *w1 = json_array_get(ws, 0);
    assert_string_equal(json_string_value(json_object_get(w1, "name")), "w1");
    assert_int_equal(json_array_size(json_object_get(w1, "jobs")), 1);
    assert_int_equal(s_int(w1, "processed"), 9);
    json_decref(ws);

    ev = s_failed(JOB_A, 1, DV_STATE_SCHEDULED, DV_CAT_TIMEOUT);
    ev.ts_ms += 500;
    int64_t run = 0;
    assert_int_equal(collector_state_apply(st, 0, &ev, 1000000, &run), 0);
    assert_true(run >= 500); /* from its job.started */
    q = s_queue(st, "q");
    assert_int_equal(s_int(q, "running"), 0);
    assert_int_equal(s_int(q, "scheduled"), 2);
    assert_int_equal(s_int(json_object_get(q, "totals"), "failed"), 1);
    assert_int_equal(s_int(json_object_get(q, "wait_ms"), "p99"), 40);
    json_decref(q);
    char *fm = s_metrics(st, 1000000);
    assert_non_null(strstr(fm, "drover_job_failures_total{queue=\"q\","
                               "category=\"timeout\"} 1\n"));
    assert_null(strstr(fm, "category=\"handler\""));
    free(fm);

    /* A snapshot counts leased jobs as running, also those a worker holds
     * ahead of a free child: their job.started is no new departure. */
    ev = s_ev("job.started", JOB_A, "q", "t");
    ev.worker = dv_str("w1");
    ev.attempt = 2;
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    json_t *qs = json_loads(
        "[{\"name\": \"q\", \"queued\": 5, \"running\": 4}]", 0, NULL);
    json_object_set(snap, "queues", qs);
    assert_int_equal(s_snapshot(st, snap, 1000050), 0);
    ev = s_ev("job.started", JOB_B, "q", "t");
    ev.worker = dv_str("w1");
    ev.attempt = 1;
    collector_state_apply(st, 0, &ev, 1000050, NULL);
    q = s_queue(st, "q");
    assert_int_equal(s_int(q, "queued"), 5);
    assert_int_equal(s_int(q, "running"), 4);
    json_decref(q);
    json_array_clear(qs);
    json_array_append_new(
        qs, json_loads("{\"name\": \"q\", \"queued\": 2, \"scheduled\": 1}", 0,
                       NULL));
    json_decref(qs);

    /* Worker w2 is no longer listed: it is gone. */
    json_object_set_new(
        snap, "workers",
        json_loads(
            "[{\"name\": \"w1\", \"concurrency\": 4, \"queues\": [\"q\"]}]", 0,
            NULL));
    assert_int_equal(s_snapshot(st, snap, 1000100), 0);
    ws = collector_state_workers(st, 1000100);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(ws, 1), "state")),
        "left");
    json_decref(ws);
    json_t *sum = collector_state_worker_summary(st, 1000100);
    assert_int_equal(s_int(sum, "online"), 1);
    assert_int_equal(s_int(sum, "offline"), 1);
    /* The broker says w1 holds no job: the two seen starting ended
     * unseen, and are no longer listed as running. */
    assert_int_equal(s_int(sum, "running_jobs"), 0);
    json_decref(sum);
    /* The snapshot is the truth for depths. */
    q = s_queue(st, "q");
    assert_int_equal(s_int(q, "queued"), 2);
    assert_int_equal(s_int(q, "scheduled"), 1);
    json_decref(q);
    /* Gone workers are forgotten after ten minutes. */
    collector_state_tick(st, 1000100 + 11 * 60 * 1000);
    ws = collector_state_workers(st, 1000100);
    assert_int_equal(json_array_size(ws), 1);
    json_decref(ws);
    json_decref(snap);
    collector_state_destroy(&st);
}

/* Job dependencies: a waiting job is in no depth but waiting; released,
 * it is queued (or scheduled); cancelled while waiting, it leaves waiting
 * (not queued); a snapshot's waiting count is the truth. */
static void
t_waiting_depths(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, "ipc:///tmp/c1");
    json_t *snap = json_loads(
        "{\"broker\": \"" INST "\", \"store\": \"sqlite\", \"uptime_ms\": 5,"
        " \"queues\": [{\"name\": \"q\", \"queued\": 0, \"scheduled\": 0,"
        "  \"running\": 0, \"paused\": false, \"rate\": 0,"
        "  \"max_running\": 0}], \"workers\": [], \"counters\": {}}",
        0, NULL);
    assert_non_null(snap);
    assert_int_equal(s_snapshot(st, snap, 1000000), 0);
    dv_event_t ev = s_ev("job.submitted", JOB_A, "q", "t");
    ev.state = DV_STATE_WAITING;
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    ev = s_ev("job.submitted", JOB_B, "q", "t");
    ev.state = DV_STATE_WAITING;
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    json_t *q = s_queue(st, "q");
    assert_int_equal(s_int(q, "waiting"), 2);
    assert_int_equal(s_int(q, "queued"), 0);
    json_decref(q);
    ev = s_ev("job.released", JOB_A, "q", "t");
    ev.state = DV_STATE_QUEUED;
    ev.was = DV_STATE_WAITING;
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    ev = s_ev("job.cancelled", JOB_B, "q", "t");
    ev.state = DV_STATE_CANCELLED;
    ev.was = DV_STATE_WAITING;
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    q = s_queue(st, "q");
    assert_null(json_object_get(q, "waiting")); /* none waits */
    assert_int_equal(s_int(q, "queued"), 1);
    json_decref(q);
    json_t *qs = json_loads("[{\"name\": \"q\", \"queued\": 1, "
                            "\"waiting\": 7}]",
                            0, NULL);
    json_object_set_new(snap, "queues", qs);
    assert_int_equal(s_snapshot(st, snap, 1000100), 0);
    q = s_queue(st, "q");
    assert_int_equal(s_int(q, "waiting"), 7);
    json_decref(q);
    json_decref(snap);
    collector_state_destroy(&st);
}

/* ---- keys and health ----------------------------------------------------- */

/* A heartbeat of worker whose body is JSON written with ' for ". */
static void
s_heartbeat(collector_state_t *st, const char *worker, const char *body_json)
{
    char *text = strdup(body_json);
    for (char *p = text; *p; p++)
        if (*p == '\'')
            *p = '"';
    json_t *body = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(body);
    size_t len;
    char *mp = dv_json_to_msgpack(body, &len);
    json_decref(body);
    dv_event_t ev = s_ev("worker.heartbeat", NULL, NULL, NULL);
    ev.worker = dv_str(worker);
    ev.body = dv_strn(mp, len);
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    free(mp);
}

static void
t_keys_and_health(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, "ipc:///tmp/c1");
    collector_state_broker_answer(st, 0, true, 1000000, NULL);
    s_heartbeat(st, "w1",
                "{'host': 'h', 'pid': 1, 'concurrency': 2, 'busy': 1,"
                " 'idle': 1, 'queues': ['llm'], 'metrics': {'keys': ["
                " {'id': 'key-1', 'hash': 'aaaa0001', 'state': 'ok',"
                "  'requests': 10, 'ok': 9, 'rate_limited': 1, 'errors': 0},"
                " {'id': 'key-2', 'hash': 'aaaa0002', 'state': 'cooling',"
                "  'requests': 5, 'ok': 0, 'rate_limited': 5, 'errors': 0}]}}");
    s_heartbeat(st, "w2",
                "{'concurrency': 2, 'queues': ['llm'], 'metrics': {'keys': ["
                " {'id': 'key-1', 'hash': 'aaaa0001', 'state': 'cooling',"
                "  'requests': 4, 'ok': 1, 'rate_limited': 3, 'errors': 0},"
                " {'id': 'key-2', 'hash': 'aaaa0002', 'state': 'disabled',"
                "  'requests': 1, 'ok': 0, 'rate_limited': 0, 'errors': 1}]}}");
    json_t *keys = collector_state_keys(st, 1000000);
    assert_int_equal(json_array_size(keys), 2);
    json_t *k1 = json_array_get(keys, 0);
    assert_string_equal(json_string_value(json_object_get(k1, "id")), "key-1");
    assert_string_equal(json_string_value(json_object_get(k1, "state")), "ok");
    assert_int_equal(s_int(k1, "requests"), 14);
    assert_int_equal(s_int(k1, "workers"), 2);
    json_t *k2 = json_array_get(keys, 1);
    assert_string_equal(json_string_value(json_object_get(k2, "state")),
                        "cooling");
    json_decref(keys);
    json_t *h = collector_state_health(st, 1000000);
    assert_int_equal(s_int(h, "status"), 0);
    json_decref(h);

    /* Now every key cools down or is disabled everywhere. */
    s_heartbeat(st, "w1",
                "{'metrics': {'keys': ["
                " {'id': 'key-1', 'hash': 'aaaa0001', 'state': 'cooling'},"
                " {'id': 'key-2', 'hash': 'aaaa0002', 'state': 'cooling'}]}}");
    h = collector_state_health(st, 1000000);
    assert_int_equal(s_int(h, "status"), 1);
    char *text = json_dumps(h, 0);
    assert_non_null(strstr(text, "no API key is usable"));
    free(text);
    json_decref(h);

    /* A broker that does not answer: down. */
    collector_state_broker_answer(st, 0, false, 1000000, "no answer for 3 s");
    h = collector_state_health(st, 1000000);
    assert_int_equal(s_int(h, "status"), 2);
    json_decref(h);
    collector_state_destroy(&st);
}

/* A broker whose snapshot says it cannot write its store: the brokers view
 * shows why, health is degraded with the cause; the next snapshot without
 * it clears both. */
static void
t_store_failure_health(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, "ipc:///tmp/c1");
    collector_state_broker_answer(st, 0, true, 1000000, NULL);
    json_t *snap = json_pack(
        "{s:s, s:s, s:i, s:[], s:[], s:{}, s:{s:s, s:I, s:i, s:i, s:i}}",
        "broker", "b1", "store", "sqlite", "uptime_ms", 5000, "queues",
        "workers", "counters", "store_failure", "error",
        "no space left on device", "since_ms", (json_int_t)990000, "retries", 4,
        "refused", 12, "waiting", 30);
    assert_int_equal(s_snapshot(st, snap, 1000000), 0);
    json_t *brokers = collector_state_brokers(st, 1000000);
    json_t *sf = json_object_get(json_array_get(brokers, 0), "store_failure");
    assert_non_null(sf);
    assert_string_equal(json_string_value(json_object_get(sf, "error")),
                        "no space left on device");
    assert_int_equal(s_int(sf, "refused"), 12);
    json_decref(brokers);
    json_t *h = collector_state_health(st, 1000000);
    assert_int_equal(s_int(h, "status"), 1);
    char *text = json_dumps(h, 0);
    assert_non_null(strstr(text, "cannot write its store: no space left on "
                                 "device (for 10 s; 12 jobs refused"));
    free(text);
    json_decref(h);

    json_object_del(snap, "store_failure");
    assert_int_equal(s_snapshot(st, snap, 1001000), 0);
    json_decref(snap);
    brokers = collector_state_brokers(st, 1001000);
    assert_null(json_object_get(json_array_get(brokers, 0), "store_failure"));
    json_decref(brokers);
    h = collector_state_health(st, 1001000);
    assert_int_equal(s_int(h, "status"), 0);
    json_decref(h);
    collector_state_destroy(&st);
}

/* A group of brokers on one store: a standby next to an active broker is
 * fine (its role and why are in the brokers view); standbys alone mean
 * nothing is served: down, with the lock's reason. */
static void
t_standby_health(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, "ipc:///tmp/c1");
    collector_state_add_broker(st, "ipc:///tmp/b2", "ipc:///tmp/c2");
    collector_state_broker_answer(st, 0, true, 1000000, NULL);
    collector_state_broker_answer(st, 1, true, 1000000, NULL);
    json_t *standby = json_pack(
        "{s:s, s:n, s:i, s:[], s:[], s:{}, s:s, s:s}", "broker", "b1", "store",
        "uptime_ms", 5000, "queues", "workers", "counters", "role", "standby",
        "lock", "cannot reach the store's lock: connection refused");
    json_t *active = json_pack("{s:s, s:s, s:i, s:[], s:[], s:{}}", "broker",
                               "b2", "store", "postgres", "uptime_ms", 5000,
                               "queues", "workers", "counters");
    assert_int_equal(s_snapshot_of(st, 0, standby, 1000000), 0);
    assert_int_equal(s_snapshot_of(st, 1, active, 1000000), 0);
    json_t *h = collector_state_health(st, 1000000);
    assert_int_equal(s_int(h, "status"), 0);
    json_decref(h);
    json_t *brokers = collector_state_brokers(st, 1000000);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(brokers, 0), "role")),
        "standby");
    json_decref(brokers);

    /* The active one is a standby too now (it lost the lock). */
    json_object_set_new(active, "role", json_string("standby"));
    json_object_set_new(active, "lock", json_string("waiting"));
    assert_int_equal(s_snapshot_of(st, 1, active, 1001000), 0);
    h = collector_state_health(st, 1001000);
    assert_int_equal(s_int(h, "status"), 2);
    char *text = json_dumps(h, 0);
    assert_non_null(strstr(text, "no broker is active"));
    free(text);
    json_decref(h);
    json_decref(standby);
    json_decref(active);
    collector_state_destroy(&st);
}

/* ---- event kinds ---------------------------------------------------------- */

/* Kinds this side does not know (a newer broker's) decode as DV_EV_OTHER:
 * they still count as job or worker events by their prefix, and change
 * nothing they do not know about. */
static void
t_unknown_kinds(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, NULL);
    dv_event_t ev = s_ev("job.teleported", JOB_A, "newq", "t");
    assert_int_equal(ev.kind_enum, DV_EV_OTHER);
    assert_int_equal(collector_event_family(&ev), COLLECTOR_EV_JOB);
    assert_int_equal(collector_state_apply(st, 0, &ev, 1000000, NULL), 0);
    json_t *q = s_queue(st, "newq");
    assert_non_null(q); /* its queue is known now */
    assert_int_equal(s_int(json_object_get(q, "totals"), "submitted"), 0);
    json_decref(q);
    s_heartbeat(st, "w1", "{'concurrency': 2, 'queues': ['newq']}");
    ev = s_ev("worker.hibernating", NULL, NULL, NULL);
    ev.worker = dv_str("w1");
    assert_int_equal(collector_event_family(&ev), COLLECTOR_EV_WORKER);
    assert_int_equal(collector_state_apply(st, 0, &ev, 1000500, NULL), 0);
    json_t *ws = collector_state_workers(st, 1000500);
    json_t *w1 = json_array_get(ws, 0);
    assert_int_equal(s_int(w1, "last_seen_at"), 1000500);
    assert_int_equal(s_int(w1, "concurrency"), 2);
    json_decref(ws);
    ev = s_ev("broker.rebalanced", NULL, NULL, NULL);
    assert_int_equal(collector_event_family(&ev), COLLECTOR_EV_NONE);
    assert_int_equal(collector_state_apply(st, 0, &ev, 1000600, NULL), 0);
    /* A batch's events (batch.closed, batch.completed) change nothing. */
    const char *batch_kinds[] = { "batch.closed", "batch.completed" };
    for (int i = 0; i < 2; i++) {
        ev = s_ev(batch_kinds[i], NULL, NULL, NULL);
        ev.batch = dv_str("nightly");
        assert_int_equal(collector_event_family(&ev), COLLECTOR_EV_NONE);
        assert_int_equal(collector_state_apply(st, 0, &ev, 1000700, NULL), 0);
    }
    collector_state_destroy(&st);
}

/* ---- metrics ------------------------------------------------------------- */

static void
t_metrics_text(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, NULL);
    const char *q = "we\"ird\\q";
    dv_event_t ev = s_ev("job.started", JOB_A, q, "t");
    ev.worker = dv_str("w1");
    ev.attempt = 1;
    ev.wait_ms = 7;
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    ev = s_ev("job.succeeded", JOB_A, q, "t");
    ev.worker = dv_str("w1");
    ev.attempt = 1;
    ev.run_ms = 1500;
    collector_state_apply(st, 0, &ev, 1000000, NULL);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(collector_state_metrics(st, f, 1000000), 0);
    fclose(f);
    assert_non_null(strstr(buf, "# TYPE drover_jobs_total counter\n"));
    assert_non_null(strstr(buf, "drover_jobs_total{queue=\"we\\\"ird\\\\q\","
                                "type=\"t\",outcome=\"succeeded\"} 1\n"));
    /* 1.5 s: not in the 1 s bucket, in the 2.5 s one; cumulative. */
    assert_non_null(strstr(buf, "drover_job_duration_seconds_bucket{queue="
                                "\"we\\\"ird\\\\q\",type=\"t\",le=\"1\"} 0\n"));
    assert_non_null(strstr(buf, "le=\"2.5\"} 1\n"));
    assert_non_null(strstr(buf, "le=\"+Inf\"} 1\n"));
    assert_non_null(strstr(buf, "drover_job_duration_seconds_sum{queue="
                                "\"we\\\"ird\\\\q\",type=\"t\"} 1.500000\n"));
    assert_non_null(strstr(buf, "drover_collector_events_total 2\n"));
    assert_non_null(strstr(buf, "drover_collector_gaps_total 0\n"));
    free(buf);
    collector_state_destroy(&st);
}

/* schedule.fired events: a lag gauge and a firings counter per schedule;
 * schedule.skipped is taken without error and counts nothing. */
static void
t_schedule_metrics(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, NULL);
    const int64_t lags[] = { 40, 1250 };
    for (int i = 0; i < 2; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "schedule", 8);
        msgpack_pack_str_with_body(&pk, "nightly", 7);
        msgpack_pack_str_with_body(&pk, "fire_ms", 7);
        msgpack_pack_int64(&pk, 1000000);
        msgpack_pack_str_with_body(&pk, "lag_ms", 6);
        msgpack_pack_int64(&pk, lags[i]);
        dv_event_t ev = s_ev("schedule.fired", JOB_A, "q", "t");
        ev.body = dv_strn(sb.data, sb.size);
        assert_int_equal(collector_state_apply(st, 0, &ev, 1000000, NULL), 0);
        msgpack_sbuffer_destroy(&sb);
    }
    dv_event_t skipped = s_ev("schedule.skipped", NULL, "q", "t");
    assert_int_equal(collector_state_apply(st, 0, &skipped, 1000000, NULL), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(collector_state_metrics(st, f, 1000000), 0);
    fclose(f);
    assert_non_null(strstr(buf, "# TYPE drover_schedule_lag_seconds gauge\n"));
    assert_non_null(strstr(
        buf, "drover_schedule_lag_seconds{schedule=\"nightly\"} 1.250\n"));
    assert_non_null(
        strstr(buf, "drover_schedule_firings_total{schedule=\"nightly\"} 2\n"));
    free(buf);
    collector_state_destroy(&st);
}

/* ---- store --------------------------------------------------------------- */

static bool s_pg_run;     /* this run's history is in PostgreSQL */
static pg_server_t *s_pg; /* its server */
static char s_pg_dir[64]; /* the server's directory */
static int s_pg_seq;      /* databases made so far */
static char s_dir[64];    /* SQLite: the test's directory */
static char s_db[32];     /* PostgreSQL: the test's database */
static char s_path[512];  /* the store URL of the test */

/* A new, empty store URL for one test: a file in a new directory, or a
 * new database on the run's server. */
static const char *
s_store_new(void)
{
    if (!s_pg_run) {
        snprintf(s_dir, sizeof s_dir, "/tmp/collector-test-XXXXXX");
        assert_non_null(mkdtemp(s_dir));
        snprintf(s_path, sizeof s_path, "%s/c.db", s_dir);
        return s_path;
    }
    char sql[96], err[512];
    snprintf(s_db, sizeof s_db, "collector_test_%d", ++s_pg_seq);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", s_db);
    if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0)
        fail_msg("%s: %s", sql, err);
    pg_server_url(s_pg, s_db, s_path, sizeof s_path);
    return s_path;
}

/* Removes what s_store_new() made (the store must be closed). */
static void
s_store_done(void)
{
    if (s_pg_run) {
        char sql[96], err[512];
        snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", s_db);
        if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0)
            fail_msg("%s: %s", sql, err);
        return;
    }
    static const char *sides[] = { "", "-wal", "-shm" };
    for (size_t i = 0; i < 3; i++) {
        char side[600];
        snprintf(side, sizeof side, "%s%s", s_path, sides[i]);
        unlink(side);
    }
    rmdir(s_dir);
}

static void
s_record(collector_store_t *store, dv_event_t ev)
{
    assert_int_equal(collector_store_event(store, BROKER, &ev, 25), 0);
}

static void
t_store_history(void **state)
{
    (void)state;
    collector_store_t *store = collector_store_open(s_store_new());
    assert_non_null(store);

    dv_event_t ev = s_ev("job.submitted", JOB_A, "q", "t");
    ev.state = DV_STATE_QUEUED;
    s_record(store, ev);
    for (int a = 1; a <= 2; a++) {
        ev = s_ev("job.started", JOB_A, "q", "t");
        ev.worker = dv_str("w1");
        ev.attempt = a;
        s_record(store, ev);
        s_record(store,
                 s_failed(JOB_A, a, a == 1 ? DV_STATE_SCHEDULED : DV_STATE_DEAD,
                          DV_CAT_TIMEOUT));
    }
    ev = s_ev("job.dead", JOB_A, "q", "t");
    ev.worker = dv_str("w1");
    ev.attempt = 2;
    s_record(store, ev);
    /* B: a batch job, a progress report, success. */
    ev = s_ev("job.submitted", JOB_B, "q", "t");
    ev.batch = dv_str("nightly");
    s_record(store, ev);
    ev = s_ev("job.progress", JOB_B, "q", "t");
    ev.attempt = 1;
    ev.current = 3;
    ev.total = 10;
    ev.message = dv_str("three");
    s_record(store, ev);
    ev = s_ev("job.succeeded", JOB_B, "q", "t");
    ev.batch = dv_str("nightly");
    ev.attempt = 1;
    s_record(store, ev);
    assert_int_equal(collector_store_broker_save(store, BROKER, INST, s_seq),
                     0);
    assert_int_equal(collector_store_commit(store), 0);

    collector_jobs_filter_t f = { .state = "dead", .limit = 10 };
    json_t *jobs = collector_store_jobs(store, &f);
    assert_int_equal(json_array_size(jobs), 1);
    json_t *a = json_array_get(jobs, 0);
    assert_string_equal(json_string_value(json_object_get(a, "id")), JOB_A);
    assert_int_equal(s_int(a, "attempts"), 2);
    assert_string_equal(json_string_value(json_object_get(a, "category")),
                        "timeout");
    json_decref(jobs);

    /* An operator retries A: a new round, the old attempts stay. */
    s_record(store, s_ev("job.retried", JOB_A, "q", "t"));
    ev = s_ev("job.started", JOB_A, "q", "t");
    ev.worker = dv_str("w2");
    ev.attempt = 1;
    s_record(store, ev);
    ev = s_ev("job.succeeded", JOB_A, "q", "t");
    ev.worker = dv_str("w2");
    ev.attempt = 1;
    s_record(store, ev);
    assert_int_equal(collector_store_commit(store), 0);
    collector_store_close(&store);

    /* Reopened: everything is still there. */
    store = collector_store_open(s_path);
    assert_non_null(store);
    int found;
    json_t *job = collector_store_job(store, JOB_A, &found);
    assert_int_equal(found, 1);
    assert_string_equal(json_string_value(json_object_get(job, "state")),
                        "succeeded");
    assert_int_equal(s_int(job, "round"), 1);
    json_t *atts = json_object_get(job, "attempts");
    assert_int_equal(json_array_size(atts), 3);
    json_t *last = json_array_get(atts, 2);
    assert_int_equal(s_int(last, "round"), 1);
    assert_int_equal(s_int(last, "attempt"), 1);
    assert_string_equal(json_string_value(json_object_get(last, "outcome")),
                        "succeeded");
    json_t *first = json_array_get(atts, 0);
    assert_string_equal(json_string_value(json_object_get(first, "message")),
                        "boom");
    assert_int_equal(s_int(first, "exit_code"), 3);
    json_decref(job);
    job = collector_store_job(store, JOB_B, &found);
    json_t *b1 = json_array_get(json_object_get(job, "attempts"), 0);
    assert_int_equal(s_int(b1, "progress_current"), 3);
    assert_int_equal(s_int(b1, "progress_total"), 10);
    json_decref(job);
    assert_null(collector_store_job(
        store, "01a20000-0000-7000-8000-00000000ffff", &found));
    assert_int_equal(found, 0);

    json_t *b = collector_store_batch(store, "nightly", 0);
    assert_int_equal(s_int(b, "total"), 1);
    assert_int_equal(s_int(json_object_get(b, "counts"), "succeeded"), 1);
    json_decref(b);
    json_t *fails = collector_store_failures(store, 0);
    assert_int_equal(json_array_size(fails), 1);
    assert_int_equal(s_int(json_array_get(fails, 0), "count"), 2);
    json_decref(fails);
    char inst[64];
    uint64_t seq = 0;
    assert_int_equal(collector_store_broker_load(store, BROKER, inst,
                                                 sizeof inst, &seq, NULL),
                     1);
    assert_string_equal(inst, INST);
    assert_true(seq > 0);
    assert_int_equal(collector_store_broker_load(store, "ipc:///x", inst,
                                                 sizeof inst, &seq, NULL),
                     0);

    /* Retention: everything older than the cutoff goes, in chunks. */
    assert_int_equal(collector_store_expire(store, 0, 100), 0);
    int n = collector_store_expire(store, INT64_MAX, 1);
    assert_true(n >= 1);
    while (collector_store_expire(store, INT64_MAX, 1) > 0)
        ;
    collector_jobs_filter_t all = { .limit = 10 };
    jobs = collector_store_jobs(store, &all);
    assert_int_equal(json_array_size(jobs), 0);
    json_decref(jobs);
    collector_store_close(&store);
    s_store_done();
}

/* ---- query arguments ----------------------------------------------------- */

/* The job's row and attempts as collector_store_job() gives them, without
 * the events (their seq and times differ between the two jobs compared),
 * the id, and the times of the events. */
static char *
s_job_rows(collector_store_t *store, const char *id)
{
    int found = 0;
    json_t *j = collector_store_job(store, id, &found);
    assert_int_equal(found, 1);
    json_object_del(j, "events");
    json_object_del(j, "id");
    char *t = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(j);
    return t;
}

/* A job.started folded into the end of its attempt (one batch) leaves the
 * same rows as the two written one by one; and a finished job read back
 * (backfill) is written only when the history lacks its end. */
static void
t_store_fold_and_backfill(void **state)
{
    (void)state;
    collector_store_t *store = collector_store_open(s_store_new());
    assert_non_null(store);
    static const char *ids[2] = { JOB_A, JOB_B };
    for (int k = 0; k < 2; k++) {
        for (int ok = 0; ok < 2; ok++) {
            s_seq = 0; /* the same times for both jobs */
            char id[37];
            snprintf(id, sizeof id, "%s", ids[k]);
            id[35] = ok ? '2' : '3'; /* four jobs */
            dv_event_t sub = s_ev("job.submitted", id, "q", "t");
            s_record(store, sub);
            dv_event_t st = s_ev("job.started", id, "q", "t");
            st.worker = dv_str("w1");
            st.attempt = 1;
            st.wait_ms = 0; /* 0 is a wait too */
            dv_event_t end =
                ok ? s_ev("job.succeeded", id, "q", "t")
                   : s_failed(id, 1, DV_STATE_SCHEDULED, DV_CAT_TIMEOUT);
            end.worker = dv_str("w1");
            end.attempt = 1;
            if (k == 0) { /* one by one */
                s_record(store, st);
                s_record(store, end);
            } else {
                collector_store_fold_t none = { .history_only = true };
                collector_store_fold_t f = { .started = true,
                                             .started_ms = st.ts_ms,
                                             .wait_ms = st.wait_ms };
                assert_int_equal(
                    collector_store_event_fold(store, BROKER, &st, 25, &none),
                    0);
                assert_int_equal(
                    collector_store_event_fold(store, BROKER, &end, 25, &f), 0);
            }
        }
    }
    assert_int_equal(collector_store_commit(store), 0);
    for (int ok = 0; ok < 2; ok++) {
        char a[37], b[37];
        snprintf(a, sizeof a, "%s", JOB_A);
        snprintf(b, sizeof b, "%s", JOB_B);
        a[35] = b[35] = ok ? '2' : '3';
        char *one = s_job_rows(store, a), *two = s_job_rows(store, b);
        assert_string_equal(one, two);
        assert_non_null(strstr(one, "\"wait_ms\":0"));
        assert_non_null(strstr(one, "\"started_at\":"));
        free(one);
        free(two);
        /* both events of each are in the history */
        int found = 0;
        json_t *j = collector_store_job(store, b, &found);
        json_t *evs = json_object_get(j, "events");
        assert_int_equal(json_array_size(evs), 3);
        /* The routine steps come back from the rows, in order. */
        const char *kinds[3] = { "job.submitted", "job.started",
                                 ok ? "job.succeeded" : "job.failed" };
        for (size_t e = 0; e < 3; e++) {
            json_t *ev = json_array_get(evs, e);
            assert_string_equal(json_string_value(json_object_get(ev, "kind")),
                                kinds[e]);
            if (e > 0)
                assert_true(json_integer_value(json_object_get(ev, "ts")) >=
                            json_integer_value(json_object_get(
                                json_array_get(evs, e - 1), "ts")));
        }
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(evs, 1), "worker")),
                            "w1");
        json_decref(j);
    }

    /* Backfill: a job the history has finished is left alone; one it has
     * running, or lacks, is written. */
    char done[37], running[37], missing[37];
    snprintf(done, sizeof done, "%s", JOB_A);
    done[35] = '2'; /* succeeded above */
    snprintf(running, sizeof running, "%s", JOB_A);
    running[35] = '4';
    snprintf(missing, sizeof missing, "%s", JOB_A);
    missing[35] = '5';
    dv_event_t st = s_ev("job.started", running, "q", "t");
    st.worker = dv_str("w1");
    st.attempt = 1;
    s_record(store, st);
    dv_finished_job_t fj = { .queue = dv_str("q"),
                             .type = dv_str("t"),
                             .state = DV_STATE_SUCCEEDED,
                             .attempt = 1,
                             .worker = dv_str("w1"),
                             .finished_ms = 2000000,
                             .run_ms = 40 };
    fj.id = dv_str(done);
    assert_int_equal(collector_store_backfill(store, BROKER, &fj), 0);
    fj.id = dv_str(running);
    assert_int_equal(collector_store_backfill(store, BROKER, &fj), 1);
    fj.id = dv_str(missing);
    fj.state = DV_STATE_DEAD;
    fj.category = DV_CAT_HANDLER;
    fj.message = dv_str("no");
    assert_int_equal(collector_store_backfill(store, BROKER, &fj), 1);
    assert_int_equal(collector_store_backfill(store, BROKER, &fj), 0);
    assert_int_equal(collector_store_commit(store), 0);
    int found = 0;
    json_t *j = collector_store_job(store, running, &found);
    assert_string_equal(json_string_value(json_object_get(j, "state")),
                        "succeeded");
    assert_int_equal(s_int(j, "run_ms"), 40);
    json_decref(j);
    j = collector_store_job(store, missing, &found);
    assert_int_equal(found, 1);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "dead");
    assert_string_equal(json_string_value(json_object_get(j, "category")),
                        "handler");
    json_decref(j);
    collector_store_close(&store);
    s_store_done();
}

/* The ids listed, in order, as "i,j,..." of the jobs' last two digits. */
static void
s_listed(collector_store_t *store, collector_jobs_filter_t f, const char *want)
{
    json_t *jobs = collector_store_jobs(store, &f);
    assert_non_null(jobs);
    char got[64] = "";
    size_t n = 0, i;
    json_t *j;
    json_array_foreach(jobs, i, j)
    {
        const char *id = json_string_value(json_object_get(j, "id"));
        n += (size_t)snprintf(got + n, sizeof got - n, "%s%s", i ? "," : "",
                              id + strlen(id) - 1);
    }
    json_decref(jobs);
    assert_string_equal(got, want);
}

/* With no index on updated_at alone, a listing of all states merges each
 * state's newest rows (jobs_state) and retention reads each state's
 * oldest: newest first across states, with the limit and the filters. */
static void
t_store_newest_across_states(void **state)
{
    (void)state;
    /* The stores' list of states is every state there is. */
    char want[256] = "";
    size_t n = 0;
    for (int s = DV_STATE_QUEUED; s < DV_STATE_COUNT_; s++)
        n += (size_t)snprintf(want + n, sizeof want - n, "%s'%s'",
                              s > DV_STATE_QUEUED ? ", " : "",
                              dv_state_name((dv_state_t)s));
    assert_string_equal(want, COLLECTOR_STORE_STATES);

    collector_store_t *store = collector_store_open(s_store_new());
    assert_non_null(store);
    /* Job i was last updated before job i + 1, each in another state
     * (0 stays queued, 5 succeeds like 2). */
    static const char *const kinds[] = {
        NULL,       "job.started",   "job.succeeded",
        "job.dead", "job.cancelled", "job.succeeded"
    };
    static const dv_state_t states[] = {
        DV_STATE_QUEUED, DV_STATE_RUNNING,   DV_STATE_SUCCEEDED,
        DV_STATE_DEAD,   DV_STATE_CANCELLED, DV_STATE_SUCCEEDED
    };
    char ids[6][40];
    int64_t at[6];
    for (int i = 0; i < 6; i++) {
        snprintf(ids[i], sizeof ids[i], "01a20000-0000-7000-8000-00000000010%d",
                 i);
        dv_event_t ev = s_ev("job.submitted", ids[i], i % 2 ? "q2" : "q", "t");
        at[i] = ev.ts_ms;
        s_record(store, ev);
    }
    for (int i = 1; i < 6; i++) {
        dv_event_t ev = s_ev(kinds[i], ids[i], i % 2 ? "q2" : "q", "t");
        ev.worker = dv_str("w1");
        ev.attempt = 1;
        ev.state = states[i];
        at[i] = ev.ts_ms;
        s_record(store, ev);
    }
    assert_int_equal(collector_store_commit(store), 0);
    s_listed(store, (collector_jobs_filter_t){ .limit = 10 }, "5,4,3,2,1,0");
    s_listed(store, (collector_jobs_filter_t){ .limit = 3 }, "5,4,3");
    s_listed(store, (collector_jobs_filter_t){ .queue = "q2", .limit = 2 },
             "5,3");
    s_listed(store, (collector_jobs_filter_t){ .since_ms = at[3], .limit = 10 },
             "5,4,3");
    s_listed(store,
             (collector_jobs_filter_t){ .state = "succeeded", .limit = 10 },
             "5,2");
    s_listed(store, (collector_jobs_filter_t){ .state = "queued", .limit = 10 },
             "0");
    /* Retention takes the jobs updated before the cutoff, in any state. */
    assert_true(collector_store_expire(store, at[3], 100) >= 3);
    s_listed(store, (collector_jobs_filter_t){ .limit = 10 }, "5,4,3");
    collector_store_close(&store);
    s_store_done();
}

/* A success that carries its start writes no attempts row: the job view
 * makes the attempt from the jobs row, and completes one of which only the
 * progress was written (a progress report before the folded success). */
static void
t_store_success_without_attempt_row(void **state)
{
    (void)state;
    collector_store_t *store = collector_store_open(s_store_new());
    assert_non_null(store);
    s_record(store, s_ev("job.submitted", JOB_A, "q", "t"));
    s_record(store, s_ev("job.submitted", JOB_B, "q", "t"));
    dv_event_t p = s_ev("job.progress", JOB_B, "q", "t");
    p.attempt = 1;
    p.current = 3;
    p.total = 10;
    p.message = dv_str("three");
    s_record(store, p);
    const char *ids[2] = { JOB_A, JOB_B };
    for (int k = 0; k < 2; k++) {
        dv_event_t end = s_ev("job.succeeded", ids[k], "q", "t");
        end.worker = dv_str("w1");
        end.attempt = 1;
        collector_store_fold_t f = { .started = true,
                                     .started_ms = end.ts_ms - 5,
                                     .wait_ms = 2 };
        assert_int_equal(collector_store_event_fold(store, BROKER, &end, 5, &f),
                         0);
    }
    assert_int_equal(collector_store_commit(store), 0);
    for (int k = 0; k < 2; k++) {
        int found = 0;
        json_t *j = collector_store_job(store, ids[k], &found);
        assert_int_equal(found, 1);
        json_t *atts = json_object_get(j, "attempts");
        assert_int_equal(json_array_size(atts), 1);
        json_t *a = json_array_get(atts, 0);
        assert_string_equal(json_string_value(json_object_get(a, "outcome")),
                            "succeeded");
        assert_string_equal(json_string_value(json_object_get(a, "worker")),
                            "w1");
        assert_int_equal(json_integer_value(json_object_get(a, "run_ms")), 5);
        assert_int_equal(json_integer_value(json_object_get(a, "started_at")),
                         json_integer_value(json_object_get(j, "started_at")));
        assert_int_equal(json_integer_value(json_object_get(a, "finished_at")),
                         json_integer_value(json_object_get(j, "finished_at")));
        assert_int_equal(
            json_integer_value(json_object_get(a, "progress_current")),
            k ? 3 : 0);
        assert_true(json_is_null(json_object_get(a, "category")));
        /* The timeline has the attempt's start and end once each. */
        json_t *evs = json_object_get(j, "events");
        int started = 0, ended = 0;
        size_t i;
        json_t *e;
        json_array_foreach(evs, i, e)
        {
            const char *kind = json_string_value(json_object_get(e, "kind"));
            started += !strcmp(kind, "job.started");
            ended += !strcmp(kind, "job.succeeded");
        }
        assert_int_equal(started, 1);
        assert_int_equal(ended, 1);
        json_decref(j);
    }
    collector_store_close(&store);
}

static void
t_query_args(void **state)
{
    (void)state;
    collector_query_t q = { .bind = "ipc:///x" };
    q.state = collector_state_new(0);
    q.store = collector_store_open(s_store_new());
    assert_non_null(q.store);
    collector_state_add_broker(q.state, BROKER, NULL);
    static const struct {
        const char *verb, *args, *why;
        dv_code_t code;
        int status; /* over HTTP */
    } cases[] = {
        { "nope", NULL, "unknown verb", DV_CODE_UNKNOWN_VERB, 400 },
        { "jobs", "{\"limit\": 0}", "limit", DV_CODE_INVALID_ARGUMENT, 400 },
        { "jobs", "{\"limit\": 2.5}", "limit", DV_CODE_INVALID_ARGUMENT, 400 },
        { "jobs", "{\"limit\": \"ten\"}", "limit", DV_CODE_INVALID_ARGUMENT,
          400 },
        { "jobs", "{\"state\": \"failed\"}", "state", DV_CODE_INVALID_ARGUMENT,
          400 },
        { "jobs", "{\"queue\": \"\"}", "queue", DV_CODE_INVALID_ARGUMENT, 400 },
        { "jobs", "{\"since\": -1}", "since", DV_CODE_INVALID_ARGUMENT, 400 },
        { "jobs", "{\"since\": [1]}", "since", DV_CODE_INVALID_ARGUMENT, 400 },
        { "job", "{\"id\": \"short\"}", "job id", DV_CODE_INVALID_ARGUMENT,
          400 },
        { "job", "{\"id\": \"" JOB_A "\"}", "not in the collector",
          DV_CODE_NOT_FOUND, 404 },
        { "batch", "{}", "name", DV_CODE_INVALID_ARGUMENT, 400 },
        { "jobs", "[1, 2]", "args", DV_CODE_INVALID_ARGUMENT, 400 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *args =
            cases[i].args ? json_loads(cases[i].args, 0, NULL) : NULL;
        dv_code_t code;
        char why[256];
        json_t *body = collector_query_run(&q, cases[i].verb, args, 5000, &code,
                                           why, sizeof why);
        if (body || code != cases[i].code || !strstr(why, cases[i].why) ||
            collector_query_http_status(code) != cases[i].status)
            fail_msg("case %zu (%s %s): code %s, why '%s'", i, cases[i].verb,
                     cases[i].args ? cases[i].args : "", dv_code_name(code),
                     why);
        json_decref(args);
    }
    /* Good arguments, numbers as strings (HTTP), since as a duration. */
    json_t *args = json_loads("{\"limit\": \"5\", \"since\": \"10m\","
                              " \"state\": \"dead\"}",
                              0, NULL);
    dv_code_t code;
    char why[256];
    json_t *body =
        collector_query_run(&q, "jobs", args, 5000000, &code, why, sizeof why);
    assert_non_null(body);
    assert_int_equal(code, DV_CODE_NONE);
    assert_int_equal(s_int(body, "limit"), 5);
    json_decref(body);
    json_decref(args);
    static const char *verbs[] = { "status", "workers",    "queues", "keys",
                                   "health", "fleet_keys", "running" };
    for (size_t i = 0; i < 7; i++) {
        body = collector_query_run(&q, verbs[i], NULL, 5000, &code, why,
                                   sizeof why);
        assert_non_null(body);
        json_decref(body);
    }
    collector_store_close(&q.store);
    collector_state_destroy(&q.state);
    s_store_done();
}

/* ---- store URLs and backends -------------------------------------------- */

static int s_saved_stderr = -1;
static char s_log_path[64];

/* From here to s_log_end(), what is logged goes to a file. */
static void
s_log_start(void)
{
    snprintf(s_log_path, sizeof s_log_path, "/tmp/collector-test-log-XXXXXX");
    int fd = mkstemp(s_log_path);
    assert_true(fd >= 0);
    fflush(stderr);
    s_saved_stderr = dup(2);
    assert_true(s_saved_stderr >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    close(fd);
}

/* What was logged since s_log_start(); the caller frees it. */
static char *
s_log_end(void)
{
    fflush(stderr);
    assert_int_equal(dup2(s_saved_stderr, 2), 2);
    close(s_saved_stderr);
    FILE *f = fopen(s_log_path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    unlink(s_log_path);
    return buf;
}

/* The broker's URL rules: sqlite: and sqlite:// prefixes, a bare path;
 * unknown schemes refused without a word of the rest of the URL. */
static void
t_store_urls(void **state)
{
    (void)state;
    const char *path = s_store_new();
    char url[600];
    const char *forms[] = { "sqlite:%s", "SQLite://%s", "%s" };
    for (size_t i = 0; i < 3; i++) {
        snprintf(url, sizeof url, forms[i], path);
        collector_store_t *st = collector_store_open(url);
        assert_non_null(st);
        assert_string_equal(collector_store_backend(st), "sqlite");
        assert_string_equal(collector_store_path(st), path);
        collector_store_close(&st);
    }
    static const char *bad[] = { "", "sqlite:", "mysql://admin:pw0rd@db/h",
                                 "redis://x" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_log_start();
        collector_store_t *st = collector_store_open(bad[i]);
        char *log = s_log_end();
        if (st)
            fail_msg("'%s' opened", bad[i]);
        assert_non_null(strstr(log, "collector.store_open_failed"));
        assert_null(strstr(log, "pw0rd"));
        free(log);
    }
    assert_int_equal(access("mysql:", F_OK), -1);
    s_store_done();
}

/* Runs sql on the test's database as psql would; returns the first
 * column of the first row as a number. */
static long
s_pg_long(const char *sql)
{
    PGconn *c = PQconnectdb(s_path);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    long v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    PQfinish(c);
    return v;
}

/* The collector's tables live in the schema "collector", beside a
 * broker's store in the same database; a newer schema is refused. */
static void
t_pg_schema(void **state)
{
    (void)state;
    const char *url = s_store_new();
    char err[512];
    /* What broker/store_pg.c keeps in the default schema, abridged. */
    if (pg_server_exec(s_pg, s_db,
                       "CREATE TABLE jobs (id TEXT PRIMARY KEY, "
                       "queue TEXT NOT NULL);\n"
                       "CREATE TABLE schema_version (version INTEGER);\n"
                       "INSERT INTO schema_version VALUES (3);\n"
                       "INSERT INTO jobs VALUES ('b1', 'q')",
                       err, sizeof err) != 0)
        fail_msg("%s", err);
    collector_store_t *st = collector_store_open(url);
    assert_non_null(st);
    assert_string_equal(collector_store_backend(st), "postgres");
    collector_store_hold(st, 0); /* rows read from another connection */
    dv_event_t ev = s_ev("job.submitted", JOB_A, "q", "t");
    s_record(st, ev);
    assert_int_equal(collector_store_commit(st), 0);
    assert_int_equal(s_pg_long("SELECT count(*) FROM public.jobs"), 1);
    assert_int_equal(s_pg_long("SELECT version FROM public.schema_version"), 3);
    assert_int_equal(s_pg_long("SELECT version FROM collector.schema_version"),
                     1);
    assert_int_equal(s_pg_long("SELECT count(*) FROM collector.jobs "
                               "WHERE id = '" JOB_A "' AND state = 'queued'"),
                     1);
    /* job.submitted is a routine step: in jobs, not in events. */
    assert_int_equal(s_pg_long("SELECT count(*) FROM collector.events"), 0);
    collector_store_close(&st);
    /* Opened again: the schema is there, nothing is lost. */
    st = collector_store_open(url);
    assert_non_null(st);
    collector_jobs_filter_t all = { .limit = 10 };
    json_t *jobs = collector_store_jobs(st, &all);
    assert_int_equal(json_array_size(jobs), 1);
    json_decref(jobs);
    collector_store_close(&st);
    /* A user with rights on the collector's tables only, not CREATE on
     * the database, runs a collector on the schema made before. */
    if (pg_server_exec(s_pg, s_db,
                       "CREATE ROLE collector_rw LOGIN;\n"
                       "GRANT USAGE ON SCHEMA collector TO collector_rw;\n"
                       "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES "
                       "IN SCHEMA collector TO collector_rw",
                       err, sizeof err) != 0)
        fail_msg("%s", err);
    char rw_url[600];
    snprintf(rw_url, sizeof rw_url, "%s&user=collector_rw", url);
    st = collector_store_open(rw_url);
    assert_non_null(st);
    s_record(st, s_ev("job.submitted", JOB_B, "q", "t"));
    assert_int_equal(collector_store_commit(st), 0);
    /* Two jobs (their submits are routine steps: no events rows). */
    assert_int_equal(collector_store_expire(st, INT64_MAX, 10), 2);
    collector_store_close(&st);
    if (pg_server_exec(s_pg, s_db,
                       "UPDATE collector.schema_version SET version = 99", err,
                       sizeof err) != 0)
        fail_msg("%s", err);
    s_log_start();
    st = collector_store_open(url);
    char *log = s_log_end();
    assert_null(st);
    assert_non_null(strstr(log, "newer"));
    free(log);
    s_store_done();
}

/* One pass of history, the same for every backend: retries, a new
 * round, progress, a batch, cancellation, failure details, a worker
 * event, text beyond ASCII. */
static int
s_scenario(dv_event_t *evs, int max)
{
    int n = 0;
    dv_event_t ev = s_ev("job.submitted", JOB_A, "q", "t");
    ev.state = DV_STATE_QUEUED;
    evs[n++] = ev;
    for (int a = 1; a <= 2; a++) {
        ev = s_ev("job.started", JOB_A, "q", "t");
        ev.worker = dv_str("w1");
        ev.attempt = a;
        ev.wait_ms = 7;
        evs[n++] = ev;
        evs[n++] =
            s_failed(JOB_A, a, a == 1 ? DV_STATE_SCHEDULED : DV_STATE_DEAD,
                     DV_CAT_TIMEOUT);
    }
    ev = s_ev("job.dead", JOB_A, "q", "t");
    ev.attempt = 2;
    evs[n++] = ev;
    ev = s_ev("job.submitted", JOB_B, "q", "t");
    ev.batch = dv_str("nightly");
    ev.run_at_ms = 1000500;
    evs[n++] = ev;
    ev = s_ev("job.progress", JOB_B, "q", "t");
    ev.attempt = 1;
    ev.current = 3;
    ev.total = 10;
    ev.message = dv_str("trois \xc3\xa9tapes \xe2\x9c\x93");
    evs[n++] = ev;
    ev = s_ev("job.succeeded", JOB_B, "q", "t");
    ev.batch = dv_str("nightly");
    ev.attempt = 1;
    evs[n++] = ev;
    /* C: another queue and type, cancelled while running. */
    const char *c = "01a20000-0000-7000-8000-0000000000c1";
    ev = s_ev("job.submitted", c, "other", "t2");
    ev.batch = dv_str("nightly");
    evs[n++] = ev;
    ev = s_ev("job.started", c, "other", "t2");
    ev.worker = dv_str("w2");
    ev.attempt = 1;
    evs[n++] = ev;
    ev = s_ev("job.cancelled", c, "other", "t2");
    ev.attempt = 1;
    ev.has_failure = true;
    dv_failure_init(&ev.failure);
    ev.failure.category = DV_CAT_CANCELLED;
    ev.failure.message = dv_str("by an operator");
    evs[n++] = ev;
    /* D: an HTTP failure with every detail, then still scheduled. */
    const char *d = "01a20000-0000-7000-8000-0000000000d1";
    ev = s_failed(d, 1, DV_STATE_SCHEDULED, DV_CAT_RATE_LIMITED);
    ev.failure.exit_code = -1;
    ev.failure.http_status = 429;
    ev.failure.signal = 0;
    ev.failure.key_id = dv_str("k2");
    ev.failure.message = dv_str("slow down \xe2\x80\x94 429");
    ev.run_at_ms = 2000000;
    evs[n++] = ev;
    /* A retried: a new round. */
    evs[n++] = s_ev("job.retried", JOB_A, "q", "t");
    ev = s_ev("job.started", JOB_A, "q", "t");
    ev.worker = dv_str("w2");
    ev.attempt = 1;
    evs[n++] = ev;
    ev = s_ev("job.succeeded", JOB_A, "q", "t");
    ev.worker = dv_str("w2");
    ev.attempt = 1;
    evs[n++] = ev;
    ev = s_ev("worker.joined", NULL, NULL, NULL);
    ev.worker = dv_str("w3");
    evs[n++] = ev;
    assert_true(n <= max);
    return n;
}

static void
s_assert_same(const char *what, json_t *a, json_t *b)
{
    if (!a || !b || !json_equal(a, b)) {
        char *ta = a ? json_dumps(a, JSON_SORT_KEYS) : NULL;
        char *tb = b ? json_dumps(b, JSON_SORT_KEYS) : NULL;
        fail_msg("%s differs:\nsqlite:   %s\npostgres: %s", what,
                 ta ? ta : "NULL", tb ? tb : "NULL");
    }
    json_decref(a);
    json_decref(b);
}

/* The same events give the same JSON from every read on both backends
 * (the query verbs and the HTTP API are built on them). */
static void
t_pg_same_json(void **state)
{
    (void)state;
    char dir[] = "/tmp/collector-test-XXXXXX", file[64];
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/c.db", dir);
    collector_store_t *lite = collector_store_open(file);
    collector_store_t *pg = collector_store_open(s_store_new());
    assert_non_null(lite);
    assert_non_null(pg);
    dv_event_t evs[32];
    int n = s_scenario(evs, 32);
    for (int i = 0; i < n; i++) {
        assert_int_equal(collector_store_event(lite, BROKER, &evs[i], 25), 0);
        assert_int_equal(collector_store_event(pg, BROKER, &evs[i], 25), 0);
    }
    assert_int_equal(collector_store_broker_save(lite, BROKER, INST, 9), 0);
    assert_int_equal(collector_store_broker_save(pg, BROKER, INST, 9), 0);
    /* Reads inside the open group see its writes (PostgreSQL: queued
     * behind them in the pipeline). */
    collector_jobs_filter_t open_f = { .limit = 10 };
    s_assert_same("jobs in the open group", collector_store_jobs(lite, &open_f),
                  collector_store_jobs(pg, &open_f));
    char in[64];
    uint64_t in_seq = 0;
    assert_int_equal(
        collector_store_broker_load(pg, BROKER, in, sizeof in, &in_seq, NULL),
        1);
    assert_int_equal(in_seq, 9);
    assert_int_equal(collector_store_commit(lite), 0);
    assert_int_equal(collector_store_commit(pg), 0);

    const collector_jobs_filter_t filters[] = {
        { .limit = 10 },
        { .limit = 2 },
        { .state = "dead", .limit = 10 },
        { .state = "succeeded", .limit = 10 },
        { .queue = "q", .limit = 10 },
        { .type = "t2", .limit = 10 },
        { .batch = "nightly", .limit = 10 },
        { .queue = "q",
          .batch = "nightly",
          .state = "succeeded",
          .type = "t",
          .since_ms = 1000001,
          .limit = 5 },
        { .since_ms = evs[n / 2].ts_ms, .limit = 10 },
        { .queue = "nope", .limit = 10 },
    };
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        char what[32];
        snprintf(what, sizeof what, "jobs filter %zu", i);
        s_assert_same(what, collector_store_jobs(lite, &filters[i]),
                      collector_store_jobs(pg, &filters[i]));
    }
    const char *ids[] = { JOB_A, JOB_B, "01a20000-0000-7000-8000-0000000000c1",
                          "01a20000-0000-7000-8000-0000000000d1" };
    for (size_t i = 0; i < 4; i++) {
        int f1, f2;
        s_assert_same(ids[i], collector_store_job(lite, ids[i], &f1),
                      collector_store_job(pg, ids[i], &f2));
        assert_int_equal(f1, 1);
        assert_int_equal(f2, 1);
    }
    int f1, f2;
    assert_null(
        collector_store_job(lite, "01a20000-0000-7000-8000-00000000ffff", &f1));
    assert_null(
        collector_store_job(pg, "01a20000-0000-7000-8000-00000000ffff", &f2));
    assert_int_equal(f1, 0);
    assert_int_equal(f2, 0);
    const int64_t since[] = { 0, evs[n / 2].ts_ms, INT64_MAX };
    for (size_t i = 0; i < 3; i++) {
        s_assert_same("batch nightly",
                      collector_store_batch(lite, "nightly", since[i]),
                      collector_store_batch(pg, "nightly", since[i]));
        s_assert_same("failures", collector_store_failures(lite, since[i]),
                      collector_store_failures(pg, since[i]));
    }
    s_assert_same("batch none", collector_store_batch(lite, "none", 0),
                  collector_store_batch(pg, "none", 0));
    char i1[64], i2[64];
    uint64_t q1 = 0, q2 = 0;
    assert_int_equal(
        collector_store_broker_load(lite, BROKER, i1, sizeof i1, &q1, NULL), 1);
    assert_int_equal(
        collector_store_broker_load(pg, BROKER, i2, sizeof i2, &q2, NULL), 1);
    assert_string_equal(i1, i2);
    assert_int_equal(q1, q2);
    /* Retention takes the same rows, and leaves the same. */
    int64_t cutoff = evs[n / 2].ts_ms;
    for (;;) {
        int d1 = collector_store_expire(lite, cutoff, 2);
        int d2 = collector_store_expire(pg, cutoff, 2);
        assert_int_equal(d1, d2);
        if (d1 <= 0)
            break;
    }
    s_assert_same("jobs after expiry", collector_store_jobs(lite, &filters[0]),
                  collector_store_jobs(pg, &filters[0]));
    for (size_t i = 0; i < 4; i++)
        s_assert_same(ids[i], collector_store_job(lite, ids[i], &f1),
                      collector_store_job(pg, ids[i], &f2));
    collector_store_close(&lite);
    collector_store_close(&pg);
    unlink(file);
    char side[96];
    snprintf(side, sizeof side, "%s-wal", file);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", file);
    unlink(side);
    rmdir(dir);
    s_store_done();
}

/* The URL's password: masked in collector_store_path() (status answers,
 * dumps) and never in a log line, in either of libpq's URL forms. */
static void
t_pg_password(void **state)
{
    (void)state;
    const char *url = s_store_new();
    char pw_url[1000];
    snprintf(pw_url, sizeof pw_url, "%s&password=Xy9-secret-pw", url);
    collector_store_t *st = collector_store_open(pw_url);
    assert_non_null(st);
    assert_null(strstr(collector_store_path(st), "Xy9-secret-pw"));
    assert_non_null(strstr(collector_store_path(st), "***"));
    collector_store_close(&st);
    const char *query = strchr(url, '?');
    assert_non_null(query);
    /* A server that refuses the database, with the password in the
     * user-info part, then as a parameter. */
    char bad[2][1000], nodb[600];
    snprintf(bad[0], sizeof bad[0],
             "postgresql://postgres:Xy9-secret-pw@/no_such_db%s", query);
    pg_server_url(s_pg, "no_such_db", nodb, sizeof nodb);
    snprintf(bad[1], sizeof bad[1], "%s&password=Xy9-secret-pw", nodb);
    char bad2[2][1000];
    /* The scheme in capitals (the dispatcher takes it), and a URL libpq
     * cannot parse at all: neither shows the password. */
    snprintf(bad2[0], sizeof bad2[0],
             "POSTGRESQL://postgres:Xy9-secret-pw@/no_such_db%s", query);
    snprintf(bad2[1], sizeof bad2[1],
             "postgres://postgres:Xy9-secret-pw@/no_such_db?nonsense=1&"
             "password=Xy9-secret-pw");
    const char *bads[] = { bad[0], bad[1], bad2[0], bad2[1] };
    for (size_t i = 0; i < 4; i++) {
        s_log_start();
        st = collector_store_open(bads[i]);
        char *log = s_log_end();
        assert_null(st);
        assert_non_null(strstr(log, "collector.store_open_failed"));
        assert_non_null(strstr(log, "no_such_db"));
        if (strstr(log, "Xy9-secret-pw"))
            fail_msg("the password is in the log: %s", log);
        free(log);
    }
    s_store_done();
}

/* Ends the store's server sessions on the test's database, as a server
 * restart or a network cut would. */
static void
s_pg_kill_sessions(void)
{
    char sql[256], err[512];
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
             "WHERE datname = '%s' AND application_name = 'drover-collector'",
             s_db);
    if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0)
        fail_msg("%s: %s", sql, err);
}

/* A lost connection: a read opens a new one and answers; a group in
 * flight is lost (logged), the next one is written. */
static void
t_pg_connection_lost(void **state)
{
    (void)state;
    collector_store_t *st = collector_store_open(s_store_new());
    assert_non_null(st);
    collector_store_hold(st, 0); /* the submit is written by the commit */
    s_record(st, s_ev("job.submitted", JOB_A, "q", "t"));
    assert_int_equal(collector_store_commit(st), 0);
    s_pg_kill_sessions();
    collector_jobs_filter_t all = { .limit = 10 };
    json_t *jobs = collector_store_jobs(st, &all);
    assert_int_equal(json_array_size(jobs), 1);
    json_decref(jobs);

    s_pg_kill_sessions();
    dv_event_t ev = s_ev("job.submitted", JOB_B, "q", "t");
    collector_store_event(st, BROKER, &ev, 0); /* queued, or refused */
    s_log_start();
    int rc = collector_store_commit(st);
    char *log = s_log_end();
    assert_int_equal(rc, -1);
    assert_non_null(strstr(log, "collector.store_write_failed"));
    free(log);
    const char *c = "01a20000-0000-7000-8000-0000000000c1";
    s_record(st, s_ev("job.submitted", c, "q", "t"));
    assert_int_equal(collector_store_commit(st), 0);
    int found;
    json_t *job = collector_store_job(st, c, &found);
    assert_int_equal(found, 1);
    json_decref(job);
    job = collector_store_job(st, JOB_B, &found);
    assert_int_equal(found, 0);
    collector_store_close(&st);
    s_store_done();
}

/* A failed write fails its group only; text PostgreSQL would refuse is
 * repaired instead of failing a pass. */
static void
t_pg_bad_write(void **state)
{
    (void)state;
    collector_store_t *st = collector_store_open(s_store_new());
    assert_non_null(st);
    dv_event_t ev = s_failed(JOB_A, 1, DV_STATE_SCHEDULED, DV_CAT_HANDLER);
    ev.failure.message = (dv_str_t){ "bad \xff\xfe and \0 NUL", 17 };
    s_record(st, ev);
    assert_int_equal(collector_store_commit(st), 0);
    int found;
    json_t *job = collector_store_job(st, JOB_A, &found);
    assert_int_equal(found, 1);
    const char *err = json_string_value(json_object_get(job, "error"));
    assert_non_null(err);
    assert_non_null(strstr(err, "bad \xef\xbf\xbd\xef\xbf\xbd and"));
    json_decref(job);
    /* An event without a broker instance breaks events.instance NOT NULL
     * (as in SQLite): the group rolls back, the next one is fine. */
    ev = s_ev("job.cancelled", JOB_B, "q", "t");
    ev.broker = (dv_str_t){ 0 };
    s_log_start();
    collector_store_event(st, BROKER, &ev, 0);
    int rc = collector_store_commit(st);
    char *log = s_log_end();
    assert_int_equal(rc, -1);
    assert_non_null(strstr(log, "collector.store_write_failed"));
    free(log);
    assert_null(collector_store_job(st, JOB_B, &found));
    assert_int_equal(found, 0);
    s_record(st, s_ev("job.submitted", JOB_B, "q", "t"));
    assert_int_equal(collector_store_commit(st), 0);
    json_decref(collector_store_job(st, JOB_B, &found));
    assert_int_equal(found, 1);
    collector_store_close(&st);
    s_store_done();
}

/* More statements in one group than the pipeline holds at once. */
static void
t_pg_big_group(void **state)
{
    (void)state;
    collector_store_t *st = collector_store_open(s_store_new());
    assert_non_null(st);
    for (int i = 0; i < 2500; i++) {
        char id[40];
        snprintf(id, sizeof id, "01a20000-0000-7000-8000-%012d", i);
        dv_event_t ev = s_ev("job.started", id, "q", "t");
        ev.worker = dv_str("w1");
        ev.attempt = 1;
        s_record(st, ev);
    }
    assert_int_equal(collector_store_commit(st), 0);
    assert_int_equal(s_pg_long("SELECT count(*) FROM collector.attempts"),
                     2500);
    /* Starts are routine steps: attempts rows, no events rows. */
    assert_int_equal(s_pg_long("SELECT count(*) FROM collector.events"), 0);
    collector_store_close(&st);
    s_store_done();
}

static int
s_pg_setup(void **state)
{
    (void)state;
    snprintf(s_pg_dir, sizeof s_pg_dir, "/tmp/collector-test-pg-XXXXXX");
    if (!mkdtemp(s_pg_dir)) {
        print_error("mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    char err[1600] = "";
    s_pg = pg_server_start(s_pg_dir, err, sizeof err);
    if (!s_pg) {
        print_error("collector_test pg: %s\n", err);
        rmdir(s_pg_dir);
        return -1;
    }
    return 0;
}

static int
s_pg_teardown(void **state)
{
    (void)state;
    pg_server_stop(&s_pg);
    return rmdir(s_pg_dir);
}

/* The bearer check, and which HTTP addresses stay on this host. */
static void
t_access_checks(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(
        collector_http_addr_is_loopback("127.0.0.1:0", err, sizeof err), 1);
    assert_int_equal(
        collector_http_addr_is_loopback("[::1]:0", err, sizeof err), 1);
    assert_int_equal(collector_http_addr_is_loopback("*:0", err, sizeof err),
                     0);
    assert_int_equal(
        collector_http_addr_is_loopback("0.0.0.0:0", err, sizeof err), 0);
    assert_int_equal(collector_http_addr_is_loopback("nope", err, sizeof err),
                     -1);

    assert_true(collector_access_bearer_ok("Bearer s3cret", "s3cret"));
    assert_true(collector_access_bearer_ok("bearer s3cret", "s3cret"));
    assert_false(collector_access_bearer_ok(NULL, "s3cret"));
    assert_false(collector_access_bearer_ok("Basic s3cret", "s3cret"));
    assert_false(collector_access_bearer_ok("Bearer s3cre", "s3cret"));
    assert_false(collector_access_bearer_ok("Bearer s3crett", "s3cret"));
    assert_false(collector_access_bearer_ok("Bearer s3creT", "s3cret"));
    assert_false(collector_access_bearer_ok("Bearer ", "s3cret"));
}

/* A token file: its mode, its trailing newline, one token only. */
static void
t_access_token_file(void **state)
{
    (void)state;
    char path[] = "/tmp/drover-collector-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc-123\r\n", 9), 9);
    close(fd);
    char err[512];
    char *t =
        collector_access_read_token(path, "--http-token", err, sizeof err);
    assert_non_null(t);
    assert_string_equal(t, "abc-123");
    collector_access_free_secret(&t);
    assert_null(t);
    assert_int_equal(chmod(path, 0640), 0);
    assert_null(
        collector_access_read_token(path, "--http-token", err, sizeof err));
    assert_non_null(strstr(err, "chmod 600"));
    assert_null(strstr(err, "abc-123"));
    assert_int_equal(chmod(path, 0600), 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("two\nlines\n", f);
    fclose(f);
    assert_null(
        collector_access_read_token(path, "--http-token", err, sizeof err));
    f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_null(
        collector_access_read_token(path, "--http-token", err, sizeof err));
    assert_non_null(strstr(err, "empty"));
    unlink(path);
    assert_null(
        collector_access_read_token(path, "--http-token", err, sizeof err));
}

/* ---- the fleet's API keys (keys.state) ----------------------------------- */

#define INST2 "01a20000-0000-7000-8000-00000000000c"

/* A keys.state event of broker instance inst whose body is the msgpack of
 * json (single quotes for double), or body_mp as it is when json is NULL;
 * applied at now_ms. */
static void
s_keys_state(collector_state_t *st, const char *inst, const char *json,
             int64_t now_ms)
{
    char *mp = NULL;
    size_t len = 0;
    if (json) {
        char *text = strdup(json);
        for (char *p = text; *p; p++)
            if (*p == '\'')
                *p = '"';
        json_error_t err;
        json_t *body = json_loads(text, 0, &err);
        if (!body)
            fail_msg("test body: %s: %s", err.text, text);
        free(text);
        mp = dv_json_to_msgpack(body, &len);
        json_decref(body);
    }
    dv_event_t ev = s_ev("keys.state", NULL, NULL, NULL);
    assert_int_equal(ev.kind_enum, DV_EV_OTHER);
    ev.broker = dv_str(inst);
    ev.body = dv_strn(mp, len);
    assert_int_equal(collector_state_apply(st, 0, &ev, now_ms, NULL), 0);
    free(mp);
}

static const char s_fleet_body[] =
    "{'now': 999000, 'keys': ["
    " {'id': 'key-1', 'hash': '1c2d3e4f', 'state': 'ok', 'rpm': 600,"
    "  'window': 60000, 'limit': 600, 'requests': 412, 'tokens': 81200,"
    "  'in_flight': 4, 'ok': 5000, 'limited': 0, 'errors': 1,"
    "  'share': 0.83, 'workers': [{'name': 'w-1', 'requests': 300},"
    "  {'name': 'w-2', 'requests': 112}]},"
    " {'id': 'key-2', 'hash': '3fa2c0d1', 'state': 'cooling', 'rpm': 600,"
    "  'tpm': 90000, 'window': 60000, 'limit': 38, 'learned': 38,"
    "  'requests': 38, 'tokens': 7100, 'in_flight': 2, 'ok': 700,"
    "  'limited': 14, 'errors': 3, 'cool': 12300, 'share': 0.08,"
    "  'workers': [{'name': 'w-1', 'requests': 20},"
    "  {'name': 'w-2', 'requests': 18}],"
    "  'conflict': 'w-1 says rpm 600, w-2 says rpm 60', 'future': [1]},"
    " {'id': 'key-3', 'hash': '9b1e4420', 'state': 'disabled',"
    "  'disabled': 401, 'window': 60000}]}";

/* The /metrics text now. Caller frees. */
static char *
s_metrics(collector_state_t *st, int64_t now_ms)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(collector_state_metrics(st, f, now_ms), 0);
    fclose(f);
    return buf;
}

/* Checks the Prometheus text format the way promtool's parser would: every
 * family has HELP then TYPE once, samples follow their family's TYPE (a
 * histogram's with _bucket, _sum, _count), counters end in _total, labels
 * are name="value" with only \\, \" and \n escaped, values are numbers, and
 * no series is written twice. */
static void
s_prom_check(const char *text)
{
    char family[128] = "", type[16] = "";
    json_t *families = json_object(), *series = json_object();
    const char *line = text;
    int n = 0;
    while (*line) {
        const char *end = strchr(line, '\n');
        assert_non_null(end); /* every line ends with a newline */
        char l[1024];
        size_t ll = (size_t)(end - line);
        assert_true(ll < sizeof l);
        memcpy(l, line, ll);
        l[ll] = '\0';
        line = end + 1;
        n++;
        char name[128], rest[900];
        if (sscanf(l, "# HELP %127s %899[^\n]", name, rest) == 2) {
            if (json_object_get(families, name))
                fail_msg("line %d: family %s twice: %s", n, name, l);
            json_object_set_new(families, name, json_true());
            snprintf(family, sizeof family, "%s", name);
            type[0] = '\0';
            continue;
        }
        if (sscanf(l, "# TYPE %127s %15s", name, type) == 2) {
            if (strcmp(name, family))
                fail_msg("line %d: TYPE without its HELP: %s", n, l);
            if (strcmp(type, "counter") && strcmp(type, "gauge") &&
                strcmp(type, "histogram"))
                fail_msg("line %d: type %s", n, type);
            size_t fl = strlen(family);
            if (!strcmp(type, "counter") &&
                (fl < 6 || strcmp(family + fl - 6, "_total")))
                fail_msg("line %d: counter %s does not end in _total", n,
                         family);
            continue;
        }
        assert_true(l[0] != '#');
        if (!type[0])
            fail_msg("line %d: a sample before its TYPE: %s", n, l);
        size_t nl = strcspn(l, "{ ");
        char metric[128];
        assert_true(nl < sizeof metric);
        memcpy(metric, l, nl);
        metric[nl] = '\0';
        bool ok = !strcmp(metric, family);
        static const char *sfx[] = { "_bucket", "_sum", "_count" };
        for (int i = 0; i < 3 && !ok && !strcmp(type, "histogram"); i++)
            ok = strlen(metric) == strlen(family) + strlen(sfx[i]) &&
                 !strncmp(metric, family, strlen(family)) &&
                 !strcmp(metric + strlen(family), sfx[i]);
        if (!ok)
            fail_msg("line %d: sample %s in family %s", n, metric, family);
        const char *p = l + nl;
        if (*p == '{') {
            p++;
            while (*p != '}') {
                size_t kl = strspn(p, "abcdefghijklmnopqrstuvwxyz"
                                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789");
                if (!kl || p[kl] != '=' || p[kl + 1] != '"')
                    fail_msg("line %d: bad label: %s", n, l);
                p += kl + 2;
                while (*p && *p != '"') {
                    if (*p == '\\') {
                        p++;
                        if (*p != '\\' && *p != '"' && *p != 'n')
                            fail_msg("line %d: bad escape: %s", n, l);
                    }
                    p++;
                }
                if (*p != '"')
                    fail_msg("line %d: open label value: %s", n, l);
                p++;
                if (*p == ',')
                    p++;
                else if (*p != '}')
                    fail_msg("line %d: bad label list: %s", n, l);
            }
            p++;
        }
        if (*p != ' ')
            fail_msg("line %d: no value: %s", n, l);
        char key[1024];
        snprintf(key, sizeof key, "%.*s", (int)(p - l), l);
        if (json_object_get(series, key))
            fail_msg("line %d: series twice: %s", n, key);
        json_object_set_new(series, key, json_true());
        char *vend;
        p++;
        if (!strcmp(p, "+Inf") || !strcmp(p, "-Inf") || !strcmp(p, "NaN"))
            continue;
        strtod(p, &vend);
        if (vend == p || *vend)
            fail_msg("line %d: value '%s' is not a number", n, p);
    }
    json_decref(families);
    json_decref(series);
}

/* Broker 0's event ev as the loop takes it: its sequence number, then
 * what it says. */
static void
s_seq_apply(collector_state_t *st, dv_event_t *ev, int64_t now_ms, int64_t *run)
{
    uint64_t from, to;
    collector_state_seq(st, 0, ev, &from, &to);
    assert_int_equal(collector_state_apply(st, 0, ev, now_ms, run), 0);
}

/* What the alert rules read: the oldest queued job's age per queue, each
 * broker's role and store, and how far the collector lags behind it. */
static void
t_deploy_metrics(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, "ipc:///tmp/c1");
    collector_state_add_broker(st, "ipc:///tmp/b2", "ipc:///tmp/c2");
    collector_state_broker_answer(st, 0, true, 1000000, NULL);
    collector_state_broker_answer(st, 1, true, 1000000, NULL);
    s_seq = 0;
    dv_event_t ev = s_ev("job.submitted", JOB_A, "q", "t");
    ev.state = DV_STATE_QUEUED;
    s_seq_apply(st, &ev, 1000000, NULL);
    /* b1 published seq 3, of which this side has had 1: it lags from now.
     * Its oldest queued job has waited 90 s. */
    json_t *snap = json_pack(
        "{s:s, s:s, s:i, s:[{s:s, s:i, s:i, s:i, s:b, s:f, s:i, s:i}], s:[],"
        " s:{}, s:i}",
        "broker", INST, "store", "sqlite", "uptime_ms", 5000, "queues", "name",
        "q", "queued", 2, "scheduled", 0, "running", 0, "paused", 0, "rate",
        0.0, "max_running", 0, "oldest_ms", 90000, "workers", "counters", "seq",
        3);
    json_array_append_new(json_object_get(snap, "workers"),
                          json_pack("{s:s, s:i, s:[s]}", "name", "w1",
                                    "concurrency", 1, "queues", "q"));
    assert_int_equal(s_snapshot_of(st, 0, snap, 1000000), 0);
    /* b2: a standby of the group. */
    json_t *standby =
        json_pack("{s:s, s:n, s:i, s:[], s:[], s:{}, s:s, s:s}", "broker", "b2",
                  "store", "uptime_ms", 5000, "queues", "workers", "counters",
                  "role", "standby", "lock", "waiting");
    assert_int_equal(s_snapshot_of(st, 1, standby, 1000000), 0);

    char *m = s_metrics(st, 1002500);
    s_prom_check(m);
    assert_non_null(strstr(m, "# TYPE drover_queue_oldest_seconds gauge\n"));
    assert_non_null(strstr(m, "drover_queue_oldest_seconds{queue=\"q\"} "
                              "92.500\n"));
    assert_non_null(strstr(m, "drover_queue_workers{queue=\"q\"} 1\n"));
    assert_non_null(
        strstr(m, "drover_broker_active{broker=\"" BROKER "\"} 1\n"));
    assert_non_null(
        strstr(m, "drover_broker_active{broker=\"ipc:///tmp/b2\"} 0\n"));
    assert_non_null(
        strstr(m, "drover_broker_store_ok{broker=\"" BROKER "\"} 1\n"));
    assert_non_null(
        strstr(m, "drover_collector_lag_seconds{broker=\"" BROKER "\"} 2.5\n"));
    assert_non_null(strstr(
        m, "drover_collector_lag_seconds{broker=\"ipc:///tmp/b2\"} 0\n"));
    free(m);

    /* Events 2 and 3 come: caught up. Both queued jobs start: none waits. */
    for (int i = 0; i < 2; i++) {
        ev = s_ev("job.started", i ? JOB_B : JOB_A, "q", "t");
        ev.worker = dv_str("w1");
        ev.attempt = 1;
        s_seq_apply(st, &ev, 1003000, NULL);
    }
    m = s_metrics(st, 1003000);
    assert_non_null(strstr(m, "drover_queue_oldest_seconds{queue=\"q\"} "
                              "0.000\n"));
    assert_non_null(
        strstr(m, "drover_collector_lag_seconds{broker=\"" BROKER "\"} 0\n"));
    free(m);

    /* A job queued into the empty queue between snapshots is the oldest
     * from then. The store fails; the broker stops answering: not active,
     * and no lag counted while it is down. */
    ev = s_ev("job.submitted", JOB_A, "q", "t");
    ev.state = DV_STATE_QUEUED;
    s_seq_apply(st, &ev, 1004000, NULL);
    json_object_set_new(snap, "seq", json_integer(9));
    json_object_set_new(snap, "store_failure",
                        json_pack("{s:s, s:I, s:i, s:i, s:i}", "error",
                                  "disk full", "since_ms", (json_int_t)1004000,
                                  "retries", 1, "refused", 0, "waiting", 0));
    json_array_clear(json_object_get(snap, "queues"));
    assert_int_equal(s_snapshot_of(st, 0, snap, 1004000), 0);
    m = s_metrics(st, 1005000);
    assert_non_null(
        strstr(m, "drover_broker_store_ok{broker=\"" BROKER "\"} 0\n"));
    assert_non_null(
        strstr(m, "drover_collector_lag_seconds{broker=\"" BROKER "\"} 1\n"));
    free(m);
    collector_state_broker_answer(st, 0, false, 1006000, "timeout");
    m = s_metrics(st, 1006000);
    assert_non_null(
        strstr(m, "drover_broker_active{broker=\"" BROKER "\"} 0\n"));
    assert_non_null(
        strstr(m, "drover_collector_lag_seconds{broker=\"" BROKER "\"} 0\n"));
    free(m);
    json_decref(snap);
    json_decref(standby);
    collector_state_destroy(&st);
}

/* The broker's keys.state: kept, shown by fleet_keys (/api/keys) and in
 * /metrics with the right values; the heartbeat families stay. */
static void
t_fleet_keys(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, NULL);
    collector_query_t q = { .state = st, .bind = "ipc:///x" };
    dv_code_t code;
    char why[256];

    /* None known: an empty listing, and the families without samples. */
    json_t *body = collector_query_run(&q, "fleet_keys", NULL, 1000000, &code,
                                       why, sizeof why);
    assert_non_null(body);
    char *text = json_dumps(body, JSON_COMPACT);
    assert_string_equal(text, "{\"keys\":[]}");
    free(text);
    json_decref(body);
    char *m = s_metrics(st, 1000000);
    s_prom_check(m);
    assert_non_null(strstr(m, "# TYPE drover_fleet_key_state gauge\n"));
    assert_null(strstr(m, "drover_fleet_key_state{"));
    free(m);

    s_heartbeat(st, "w-1",
                "{'concurrency': 2, 'queues': ['llm'], 'metrics': {'keys': ["
                " {'id': 'key-1', 'hash': '1c2d3e4f', 'state': 'ok',"
                "  'requests': 10, 'ok': 9, 'rate_limited': 1}]}}");
    s_keys_state(st, INST, s_fleet_body, 1000000);

    body = collector_query_run(&q, "fleet_keys", NULL, 1000500, &code, why,
                               sizeof why);
    assert_non_null(body);
    assert_int_equal(s_int(body, "now"), 999000);
    assert_int_equal(s_int(body, "age_ms"), 500);
    assert_string_equal(json_string_value(json_object_get(body, "broker")),
                        BROKER);
    json_t *keys = json_object_get(body, "keys");
    assert_int_equal(json_array_size(keys), 3);
    json_t *k2 = json_array_get(keys, 1);
    assert_string_equal(json_string_value(json_object_get(k2, "id")), "key-2");
    assert_string_equal(json_string_value(json_object_get(k2, "hash")),
                        "3fa2c0d1");
    assert_int_equal(s_int(k2, "limit"), 38);
    assert_int_equal(s_int(k2, "cool"), 12300);
    assert_int_equal(json_array_size(json_object_get(k2, "workers")), 2);
    assert_non_null(json_object_get(k2, "conflict"));
    assert_null(json_object_get(k2, "future")); /* unknown members dropped */
    json_t *k3 = json_array_get(keys, 2);
    assert_int_equal(s_int(k3, "disabled"), 401);
    assert_int_equal(s_int(k3, "requests"), 0); /* left out: 0 */
    assert_null(json_object_get(k3, "conflict"));
    json_decref(body);

    m = s_metrics(st, 1000500);
    s_prom_check(m);
    static const char *want[] = {
        "# HELP drover_fleet_key_state ",
        "# TYPE drover_fleet_key_state gauge\n",
        "drover_fleet_key_state{key=\"key-2\",hash=\"3fa2c0d1\","
        "state=\"cooling\"} 1\n",
        "drover_fleet_key_state{key=\"key-2\",hash=\"3fa2c0d1\","
        "state=\"ok\"} 0\n",
        "drover_fleet_key_state{key=\"key-2\",hash=\"3fa2c0d1\","
        "state=\"unproven\"} 0\n",
        "drover_fleet_key_state{key=\"key-3\",hash=\"9b1e4420\","
        "state=\"disabled\"} 1\n",
        "drover_fleet_key_limit{key=\"key-2\",hash=\"3fa2c0d1\"} 38\n",
        "drover_fleet_key_learned_limit{key=\"key-2\",hash=\"3fa2c0d1\"} 38\n",
        "drover_fleet_key_learned_limit{key=\"key-1\",hash=\"1c2d3e4f\"} 0\n",
        "drover_fleet_key_configured_limit{key=\"key-2\",hash=\"3fa2c0d1\"} "
        "600\n",
        "drover_fleet_key_window_seconds{key=\"key-2\",hash=\"3fa2c0d1\"} 60\n",
        "drover_fleet_key_window_requests{key=\"key-1\",hash=\"1c2d3e4f\"} "
        "412\n",
        "drover_fleet_key_window_tokens{key=\"key-2\",hash=\"3fa2c0d1\"} "
        "7100\n",
        "drover_fleet_key_in_flight{key=\"key-1\",hash=\"1c2d3e4f\"} 4\n",
        "drover_fleet_key_cooldown_seconds{key=\"key-2\",hash=\"3fa2c0d1\"} "
        "12.3\n",
        "drover_fleet_key_cooldown_seconds{key=\"key-1\",hash=\"1c2d3e4f\"} "
        "0\n",
        "drover_fleet_key_disabled_status{key=\"key-3\",hash=\"9b1e4420\"} "
        "401\n",
        "drover_fleet_key_share{key=\"key-1\",hash=\"1c2d3e4f\"} 0.83\n",
        "drover_fleet_key_workers{key=\"key-2\",hash=\"3fa2c0d1\"} 2\n",
        "drover_fleet_key_workers{key=\"key-3\",hash=\"9b1e4420\"} 0\n",
        "# TYPE drover_fleet_key_requests_total counter\n",
        "drover_fleet_key_requests_total{key=\"key-2\",hash=\"3fa2c0d1\","
        "outcome=\"ok\"} 700\n",
        "drover_fleet_key_requests_total{key=\"key-2\",hash=\"3fa2c0d1\","
        "outcome=\"rate_limited\"} 14\n",
        "drover_fleet_key_requests_total{key=\"key-2\",hash=\"3fa2c0d1\","
        "outcome=\"error\"} 3\n",
        "drover_fleet_key_conflict{key=\"key-2\",hash=\"3fa2c0d1\"} 1\n",
        "drover_fleet_key_conflict{key=\"key-1\",hash=\"1c2d3e4f\"} 0\n",
        /* the heartbeat families are still there */
        "drover_key_state{key=\"key-1\",state=\"ok\"} 1\n",
        "drover_key_requests_total{key=\"key-1\",outcome=\"rate_limited\"} 1\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(m, want[i]))
            fail_msg("/metrics lacks: %s", want[i]);
    free(m);

    /* A state of a newer broker gets a series of its own; label values
     * are escaped. */
    s_keys_state(st, INST,
                 "{'now': 1, 'keys': [{'id': 'we\\\\\\\"ird', 'hash': 'ab',"
                 " 'state': 'paused'}]}",
                 1001000);
    m = s_metrics(st, 1001000);
    s_prom_check(m);
    assert_non_null(strstr(m, "drover_fleet_key_state{key=\"we\\\\\\\"ird\","
                              "hash=\"ab\",state=\"paused\"} 1\n"));
    assert_non_null(strstr(m, "drover_fleet_key_state{key=\"we\\\\\\\"ird\","
                              "hash=\"ab\",state=\"ok\"} 0\n"));
    free(m);
    collector_state_destroy(&st);
}

/* Malformed bodies are ignored (logged once) and the body kept stays;
 * nothing crashes. */
static void
t_fleet_keys_malformed(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, NULL);
    s_keys_state(st, INST, s_fleet_body, 1000000);
    static const char *bad[] = {
        NULL, /* no body */
        "[1, 2]",
        "{'keys': []}",
        "{'now': -1, 'keys': []}",
        "{'now': 1, 'keys': {}}",
        "{'now': 1, 'keys': [7]}",
        "{'now': 1, 'keys': [{'hash': 'ab', 'state': 'ok'}]}",
        "{'now': 1, 'keys': [{'id': '', 'hash': 'ab', 'state': 'ok'}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'xyz', 'state': 'ok'}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 'OK!'}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 3}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 'ok',"
        " 'rpm': -5}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 'ok',"
        " 'limit': '5'}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 'ok',"
        " 'tokens': 1.5}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 'ok',"
        " 'share': 1.5}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 'ok',"
        " 'disabled': 7}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 'ok',"
        " 'workers': [{'requests': 1}]}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 'ok',"
        " 'workers': {}}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 'ok',"
        " 'conflict': 5}]}",
        "{'now': 1, 'keys': [{'id': 'k\\u0001', 'hash': 'ab', 'state': 'ok'}]}",
        "{'now': 1, 'keys': [{'id': 'k', 'hash': 'ab', 'state': 'ok'},"
        " {'id': 'k', 'hash': 'ab', 'state': 'cooling'}]}",
    };
    s_log_start();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        s_keys_state(st, INST, bad[i], 1000100 + (int64_t)i);
    /* Bytes that are no msgpack at all, and a truncated map. */
    static const char junk[][4] = { { (char)0xc1 },
                                    { (char)0x82, (char)0xa3 } };
    for (size_t i = 0; i < 2; i++) {
        dv_event_t ev = s_ev("keys.state", NULL, NULL, NULL);
        ev.broker = dv_str(INST);
        ev.body = dv_strn(junk[i], i + 1);
        assert_int_equal(collector_state_apply(st, 0, &ev, 1000200, NULL), 0);
    }
    char *log = s_log_end();
    const char *first = strstr(log, "collector.bad_keys_state");
    assert_non_null(first);
    assert_non_null(strstr(first, "no body"));
    assert_null(strstr(first + 1, "collector.bad_keys_state")); /* once */
    free(log);
    /* The good body is still there, whole. */
    json_t *body = collector_state_fleet_keys(st, 1000300);
    assert_int_equal(json_array_size(json_object_get(body, "keys")), 3);
    assert_int_equal(s_int(body, "now"), 999000);
    json_decref(body);

    /* After a good one, the next malformed body is logged again. */
    s_keys_state(st, INST, "{'now': 5, 'keys': []}", 1000400);
    s_log_start();
    s_keys_state(st, INST, "{'now': 'x', 'keys': []}", 1000500);
    log = s_log_end();
    assert_non_null(strstr(log, "now: must be epoch ms"));
    free(log);
    body = collector_state_fleet_keys(st, 1000600);
    assert_int_equal(s_int(body, "now"), 5);
    json_decref(body);

    /* keys.state is state, not history: the store does not record it. */
    dv_event_t ev = s_ev("keys.state", NULL, NULL, NULL);
    assert_false(collector_event_recorded(&ev));
    ev = s_ev("job.failed", JOB_A, "q", "t");
    assert_true(collector_event_recorded(&ev));
    /* A job's routine steps are in its jobs and attempts rows instead. */
    ev = s_ev("job.succeeded", JOB_A, "q", "t");
    assert_false(collector_event_recorded(&ev));
    collector_state_destroy(&st);
}

/* The body kept is forgotten when it is stale (the broker stopped sending
 * it: 3 of its intervals, at least 5 s) and when its broker restarts. */
static void
t_fleet_keys_stale(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, NULL);
    collector_state_add_broker(st, "ipc:///tmp/b2", NULL);
    s_keys_state(st, INST, s_fleet_body, 1000000);
    /* One body: fresh for 5 s. */
    json_t *body = collector_state_fleet_keys(st, 1005000);
    assert_int_equal(json_array_size(json_object_get(body, "keys")), 3);
    json_decref(body);
    body = collector_state_fleet_keys(st, 1005001);
    assert_int_equal(json_array_size(json_object_get(body, "keys")), 0);
    json_decref(body);
    char *m = s_metrics(st, 1005001);
    s_prom_check(m);
    assert_null(strstr(m, "drover_fleet_key_state{"));
    assert_null(strstr(m, "drover_fleet_key_limit{"));
    free(m);
    /* The tick frees it, and says so. */
    s_log_start();
    collector_state_tick(st, 1005001);
    char *log = s_log_end();
    assert_non_null(strstr(log, "collector.fleet_keys_forgotten"));
    assert_non_null(strstr(log, "stale"));
    free(log);

    /* A broker whose heartbeat is 4 s: fresh for 3 x 4 s. */
    s_keys_state(st, INST, s_fleet_body, 2000000);
    s_keys_state(st, INST, s_fleet_body, 2004000);
    body = collector_state_fleet_keys(st, 2016000);
    assert_int_equal(json_array_size(json_object_get(body, "keys")), 3);
    json_decref(body);
    body = collector_state_fleet_keys(st, 2016001);
    assert_int_equal(json_array_size(json_object_get(body, "keys")), 0);
    json_decref(body);

    /* Any event of a new instance of the broker drops it at once. */
    s_keys_state(st, INST, s_fleet_body, 3000000);
    dv_event_t ev = s_ev("job.submitted", JOB_A, "q", "t");
    ev.broker = dv_str(INST2);
    collector_state_apply(st, 0, &ev, 3000100, NULL);
    body = collector_state_fleet_keys(st, 3000100);
    assert_int_equal(json_array_size(json_object_get(body, "keys")), 0);
    json_decref(body);
    /* An event of another broker does not. */
    s_keys_state(st, INST2, s_fleet_body, 3000200);
    ev = s_ev("job.submitted", JOB_B, "q", "t");
    ev.broker = dv_str(INST);
    collector_state_apply(st, 1, &ev, 3000300, NULL);
    body = collector_state_fleet_keys(st, 3000300);
    assert_int_equal(json_array_size(json_object_get(body, "keys")), 3);
    json_decref(body);
    collector_state_destroy(&st);
}

/* One GET of path on the collector's HTTP server at port, served from
 * this thread (collector_http_run between reads); with token, its bearer
 * header. Returns the status; *body gets the answer's body (caller
 * frees). */
static int
s_http(collector_http_t *http, int port, const char *path, const char *token,
       char **body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "%s%s%s\r\n",
                     path, token ? "Authorization: Bearer " : "",
                     token ? token : "", token ? "\r\n" : "");
    assert_int_equal(send(fd, req, (size_t)n, 0), n);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    size_t cap = 1 << 16, len = 0;
    char *buf = calloc(1, cap);
    assert_non_null(buf);
    for (int round = 0; round < 2000; round++) {
        collector_http_run(http);
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r == 0)
            break;
        if (r > 0)
            len += (size_t)r;
        else
            usleep(1000);
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &status), 1);
    char *start = strstr(buf, "\r\n\r\n");
    *body = strdup(start ? start + 4 : "");
    free(buf);
    return status;
}

/* GET /api/keys over HTTP: the fleet's keys (an empty listing before any
 * is known), behind the bearer token like every /api path; the workers'
 * view at /api/keys/workers. */
static void
t_fleet_keys_http(void **state)
{
    (void)state;
    collector_state_t *st = collector_state_new(0);
    collector_state_add_broker(st, BROKER, NULL);
    collector_query_t q = { .state = st, .bind = "ipc:///x" };
    collector_http_access_t access = { .token = "s3cret-token" };
    collector_http_t *http = collector_http_new("127.0.0.1:0", &q, &access);
    assert_non_null(http);
    const char *addr = collector_http_address(http);
    int port = atoi(strrchr(addr, ':') + 1);
    assert_true(port > 0);
    char *body;

    assert_int_equal(s_http(http, port, "/api/keys", NULL, &body), 401);
    free(body);
    assert_int_equal(s_http(http, port, "/api/keys", "s3cret-token", &body),
                     200);
    assert_string_equal(body, "{\"keys\":[]}\n");
    free(body);

    s_keys_state(st, INST, s_fleet_body, dv_now_ms());
    assert_int_equal(s_http(http, port, "/api/keys", "s3cret-token", &body),
                     200);
    json_t *j = json_loads(body, 0, NULL);
    free(body);
    assert_non_null(j);
    json_t *k2 = json_array_get(json_object_get(j, "keys"), 1);
    assert_string_equal(json_string_value(json_object_get(k2, "hash")),
                        "3fa2c0d1");
    assert_string_equal(json_string_value(json_object_get(k2, "state")),
                        "cooling");
    assert_int_equal(s_int(k2, "learned"), 38);
    json_decref(j);
    assert_int_equal(
        s_http(http, port, "/api/keys/workers", "s3cret-token", &body), 200);
    assert_non_null(strstr(body, "\"keys\":[]"));
    free(body);
    assert_int_equal(
        s_http(http, port, "/api/keys/nope", "s3cret-token", &body), 404);
    free(body);
    collector_http_destroy(&http);
    collector_state_destroy(&st);
}

int
main(int argc, char **argv)
{
    dv_log_init("collector_test", DV_WARN, 1);
    if (argc > 1 && strcmp(argv[1], "pg") == 0) {
        s_pg_run = true;
    } else if (argc > 1 && strcmp(argv[1], "sqlite") != 0) {
        fprintf(stderr, "usage: collector_test [sqlite|pg]\n");
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_seq),
        cmocka_unit_test(t_snapshot_and_deltas),
        cmocka_unit_test(t_success_carries_its_start),
        cmocka_unit_test(t_waiting_depths),
        cmocka_unit_test(t_keys_and_health),
        cmocka_unit_test(t_store_failure_health),
        cmocka_unit_test(t_standby_health),
        cmocka_unit_test(t_unknown_kinds),
        cmocka_unit_test(t_metrics_text),
        cmocka_unit_test(t_schedule_metrics),
        cmocka_unit_test(t_deploy_metrics),
        cmocka_unit_test(t_store_history),
        cmocka_unit_test(t_store_fold_and_backfill),
        cmocka_unit_test(t_store_success_without_attempt_row),
        cmocka_unit_test(t_store_newest_across_states),
        cmocka_unit_test(t_query_args),
        cmocka_unit_test(t_store_urls),
        cmocka_unit_test(t_access_checks),
        cmocka_unit_test(t_access_token_file),
        cmocka_unit_test(t_fleet_keys),
        cmocka_unit_test(t_fleet_keys_malformed),
        cmocka_unit_test(t_fleet_keys_stale),
        cmocka_unit_test(t_fleet_keys_http),
    };
    /* The store and query cases again, and PostgreSQL's own. */
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(t_store_history),
        cmocka_unit_test(t_store_fold_and_backfill),
        cmocka_unit_test(t_store_success_without_attempt_row),
        cmocka_unit_test(t_store_newest_across_states),
        cmocka_unit_test(t_query_args),
        cmocka_unit_test(t_pg_schema),
        cmocka_unit_test(t_pg_same_json),
        cmocka_unit_test(t_pg_password),
        cmocka_unit_test(t_pg_connection_lost),
        cmocka_unit_test(t_pg_bad_write),
        cmocka_unit_test(t_pg_big_group),
    };
    if (s_pg_run)
        return cmocka_run_group_tests_name("collector (postgres)", pg_tests,
                                           s_pg_setup, s_pg_teardown);
    return cmocka_run_group_tests_name("collector (sqlite)", tests, NULL, NULL);
}
