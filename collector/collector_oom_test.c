/* Out-of-memory tests of the collector's live state and query verbs: the
 * same events, snapshots and views are run again and again, with the Nth
 * allocation failing (and, in a second pass, every one after it too).
 * Nothing may crash, abort or leak (the sanitizer builds check the last
 * two), and a verb whose answer could not be built fails with 500 and
 * "out of memory" (or "history store error" where the store's reads
 * failed).
 *
 * The allocator is wrapped at link time (-Wl,--wrap, see CMakeLists.txt)
 * for the collector's own code, and through json_set_alloc_funcs() for
 * jansson's (libpq's own allocations are not wrapped).
 *
 * `collector_oom_test pg` keeps the history in PostgreSQL instead, on a
 * server of its own (tests/fixtures/pg_server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "collector_query.h"
#include "collector_state.h"
#include "collector_store.h"
#include "dv_json.h"
#include "dv_log.h"
#include "oom_inject.h"
#include "pg_server.h"

#define INST  "01a20000-0000-7000-8000-00000000000a"
#define NJOBS 12

static char s_ids[NJOBS][40];
static char *s_beat[2];
static size_t s_beat_len[2];
static char *s_keys; /* a keys.state body */
static size_t s_keys_len;
static json_t *s_snap;
static char *s_snap_mp; /* s_snap as msgpack */
static size_t s_snap_len;
static char s_dir[64], s_path[512];
static bool s_pg_run;              /* the history is in PostgreSQL */
static pg_server_t *s_pg;          /* its server */
static collector_store_t *s_store; /* history of the same jobs */
static json_t *s_args[3];          /* for jobs, job and batch */

static dv_event_t
s_ev(const char *kind, int job, const char *queue, const char *type)
{
    static uint64_t seq;
    dv_event_t ev;
    memset(&ev, 0, sizeof ev);
    ev.seq = ++seq;
    ev.broker = dv_str(INST);
    ev.ts_ms = 1000000 + (int64_t)seq * 37;
    ev.kind = dv_str(kind);
    ev.kind_enum = dv_event_kind_parse(kind, strlen(kind));
    if (job >= 0)
        ev.id = dv_str(s_ids[job]);
    ev.queue = dv_str(queue);
    ev.type = dv_str(type);
    ev.worker = dv_str(job % 2 ? "w3" : "w1");
    ev.attempt = 1;
    return ev;
}

static void
s_view(json_t *view)
{
    json_decref(view); /* NULL when it could not be built: fine */
}

/* Broker 0's status answer, decoded as the collector decodes it (which
 * may fail for want of memory too), then applied. */
static void
s_snapshot(collector_state_t *st, int64_t now_ms)
{
    dv_status_t status;
    if (dv_status_decode(s_snap_mp, s_snap_len, &status, NULL, 0) == DV_OK)
        collector_state_snapshot(st, 0, &status, now_ms);
    dv_status_release(&status);
}

/* One life of a state: a snapshot, heartbeats, jobs, another snapshot,
 * every view, the query verbs that need no store, /metrics. */
static void
s_scenario(void)
{
    int64_t now = 1000000;
    collector_state_t *st = collector_state_new(now - 200000);
    if (!st)
        return;
    collector_state_add_broker(st, "tcp://b1:7702", "tcp://b1:7700");
    collector_state_add_broker(st, "tcp://b2:7702", NULL);
    collector_state_broker_answer(st, 0, true, now, NULL);
    s_snapshot(st, now);
    for (int w = 0; w < 2; w++) {
        dv_event_t ev = s_ev("worker.heartbeat", -1, NULL, NULL);
        ev.worker = dv_str(w ? "w3" : "w1");
        ev.body = dv_strn(s_beat[w], s_beat_len[w]);
        collector_state_apply(st, 0, &ev, now, NULL);
    }
    for (int i = 0; i < 2; i++) { /* a body kept, then one replacing it */
        dv_event_t ev = s_ev("keys.state", -1, NULL, NULL);
        ev.body = dv_strn(s_keys, s_keys_len);
        collector_state_apply(st, 0, &ev, now + 39000 + i * 1000, NULL);
    }
    static const char *queues[] = { "q", "p", "r" }, *types[] = { "t", "u" };
    static const char *ends[] = { "job.succeeded", "job.failed", "job.dead",
                                  "job.cancelled" };
    for (int i = 0; i < NJOBS; i++) {
        const char *q = queues[i % 3], *t = types[i % 2];
        int b = i % 2;
        dv_event_t ev = s_ev("job.submitted", i, q, t);
        collector_state_apply(st, b, &ev, now, NULL);
        ev = s_ev("job.started", i, q, t);
        ev.batch = dv_str("batch");
        collector_state_apply(st, b, &ev, now, NULL);
        ev = s_ev("job.progress", i, q, t);
        ev.message = dv_str("half way");
        collector_state_apply(st, b, &ev, now, NULL);
        ev = s_ev(ends[i % 4], i, q, t);
        if (i % 5)
            collector_state_apply(st, b, &ev, now, NULL);
    }
    s_snapshot(st, now + 100);
    int64_t t = now + 40000;
    s_view(collector_state_brokers(st, t));
    s_view(collector_state_types(st, t));
    s_view(collector_state_rates(st, t));
    collector_query_t qq = { .state = st,
                             .store = s_store,
                             .bind = "tcp://*:7703" };
    static const char *verbs[] = { "workers", "queues",  "keys",   "fleet_keys",
                                   "health",  "running", "status", "jobs",
                                   "job",     "batch" };
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        dv_code_t code;
        char why[128];
        const json_t *args = i >= 7 ? s_args[i - 7] : NULL;
        json_t *body =
            collector_query_run(&qq, verbs[i], args, t, &code, why, sizeof why);
        if (!body) {
            assert_int_equal(collector_query_http_status(code), 500);
            if (code == DV_CODE_NO_MEMORY)
                assert_non_null(strstr(why, "out of memory"));
            else if (code == DV_CODE_STORE)
                assert_non_null(strstr(why, "history store error"));
            else
                fail_msg("%s: code %s: %s", verbs[i], dv_code_name(code), why);
        }
        json_decref(body);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out) {
        collector_state_metrics(st, out, t);
        fclose(out);
    }
    free(text);
    collector_state_tick(st, t + 11 * 60 * 1000);
    collector_state_destroy(&st);
}

static int
s_setup(void **state)
{
    (void)state;
    for (int i = 0; i < NJOBS; i++)
        snprintf(s_ids[i], sizeof s_ids[i],
                 "01a20000-0000-7000-8000-0000000000%02d", i);
    s_snap = json_loads(
        "{\"broker\": \"" INST "\", \"store\": \"sqlite\", \"uptime_ms\": 5,"
        " \"queues\": [{\"name\": \"q\", \"queued\": 20, \"running\": 2},"
        "  {\"name\": \"idle\", \"queued\": 7}],"
        " \"workers\": [{\"name\": \"w1\", \"host\": \"h\", \"running\": 1,"
        "  \"queues\": [\"q\", \"p\"]}, {\"name\": \"w3\","
        "  \"queues\": [\"q\"]}],"
        " \"counters\": {\"submitted\": 3}}",
        0, NULL);
    s_snap_mp = s_snap ? dv_json_to_msgpack(s_snap, &s_snap_len) : NULL;
    if (!s_snap_mp)
        return -1;
    const char *beats[] = {
        "{\"host\": \"h\", \"busy\": 1, \"queues\": [\"q\"], \"metrics\":"
        " {\"keys\": [{\"id\": \"k1\", \"hash\": \"a\", \"state\": \"ok\","
        " \"requests\": 3}, {\"id\": \"k2\", \"state\": \"cooling\"}]}}",
        "{\"host\": \"h3\", \"metrics\": {\"keys\": [{\"id\": \"k1\","
        " \"hash\": \"a\", \"state\": \"disabled\", \"errors\": 2}]}}"
    };
    for (int w = 0; w < 2; w++) {
        json_t *j = json_loads(beats[w], 0, NULL);
        s_beat[w] = dv_json_to_msgpack(j, &s_beat_len[w]);
        json_decref(j);
        if (!s_beat[w])
            return -1;
    }
    json_t *keys = json_loads(
        "{\"now\": 5, \"keys\": [{\"id\": \"k1\", \"hash\": \"3fa2c0d1\","
        " \"state\": \"cooling\", \"limit\": 38, \"cool\": 1200,"
        " \"share\": 0.5, \"conflict\": \"w1 says rpm 6\", \"workers\":"
        " [{\"name\": \"w1\", \"requests\": 3}]}, {\"id\": \"k2\","
        " \"hash\": \"ab\", \"state\": \"ok\"}]}",
        0, NULL);
    s_keys = keys ? dv_json_to_msgpack(keys, &s_keys_len) : NULL;
    json_decref(keys);
    if (!s_keys)
        return -1;
    snprintf(s_dir, sizeof s_dir, "/tmp/collector-oom-XXXXXX");
    if (!mkdtemp(s_dir))
        return -1;
    snprintf(s_path, sizeof s_path, "%s/c.db", s_dir);
    if (s_pg_run) {
        char err[1600];
        s_pg = pg_server_start(s_dir, err, sizeof err);
        if (!s_pg) {
            print_error("collector_oom_test pg: %s\n", err);
            return -1;
        }
        pg_server_url(s_pg, "drover", s_path, sizeof s_path);
    }
    s_store = collector_store_open(s_path);
    if (!s_store)
        return -1;
    static const char *kinds[] = { "job.submitted", "job.started",
                                   "job.succeeded" };
    for (int i = 0; i < NJOBS; i++)
        for (int k = 0; k < 3; k++) {
            dv_event_t ev = s_ev(kinds[k], i, "q", "t");
            ev.batch = dv_str("batch");
            if (collector_store_event(s_store, "tcp://b1:7702", &ev, 5) != 0)
                return -1;
        }
    if (collector_store_commit(s_store) != 0)
        return -1;
    s_args[0] = json_pack("{s:s, s:i}", "state", "succeeded", "limit", 5);
    s_args[1] = json_pack("{s:s}", "id", s_ids[3]);
    s_args[2] = json_pack("{s:s}", "name", "batch");
    json_set_alloc_funcs(oom_inject_malloc, free);
    return s_snap && s_args[0] && s_args[1] && s_args[2] ? 0 : -1;
}

static int
s_teardown(void **state)
{
    (void)state;
    json_decref(s_snap);
    free(s_snap_mp);
    free(s_beat[0]);
    free(s_beat[1]);
    free(s_keys);
    for (int i = 0; i < 3; i++)
        json_decref(s_args[i]);
    collector_store_close(&s_store);
    pg_server_stop(&s_pg);
    char side[600];
    static const char *ends[] = { "", "-wal", "-shm" };
    for (int i = 0; i < 3; i++) {
        snprintf(side, sizeof side, "%s%s", s_path, ends[i]);
        unlink(side);
    }
    rmdir(s_dir);
    return 0;
}

/* Runs the scenario failing allocation 1, 2, ... up to one past the
 * number a clean run makes. */
static void
s_fail_each(bool sticky)
{
    oom_inject(-1, false); /* count, but fail none */
    s_scenario();
    long total = oom_count();
    oom_injected();
    assert_true(total > 100);
    for (long k = 1; k <= total + 1; k++) {
        oom_inject(k, sticky);
        s_scenario();
    }
    oom_injected();
}

static void
t_each_allocation_fails_once(void **state)
{
    (void)state;
    s_fail_each(false);
}

static void
t_allocations_fail_from_then_on(void **state)
{
    (void)state;
    s_fail_each(true);
}

int
main(int argc, char **argv)
{
    dv_log_init("collector_oom_test", DV_ERROR, 1);
    s_pg_run = argc > 1 && strcmp(argv[1], "pg") == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_each_allocation_fails_once),
        cmocka_unit_test(t_allocations_fail_from_then_on),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
