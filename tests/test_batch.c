/* Batches with real processes: a 100-job batch with --on-complete whose
 * broker is killed (SIGKILL) and started again while the jobs run gets its
 * callback exactly once, with the counts of all 100, and the callback
 * reads the 100 results back with `drover batch jobs`; the one-shot
 * `drover submit --batch NAME --on-complete TYPE --file F`; batches and
 * their jobs per owner under CurveZMQ. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

enum { N = 100 };

typedef struct {
    harness_t *h;
    const char *sql;
    int64_t want;
} s_sql_ctx_t;

static bool
s_sql_at_least(void *arg)
{
    s_sql_ctx_t *c = arg;
    return harness_sql_int(c->h, c->sql) >= c->want;
}

static void
s_wait_sql(harness_t *h, const char *sql, int64_t want, int timeout_ms)
{
    s_sql_ctx_t c = { h, sql, want };
    if (!harness_wait_until(s_sql_at_least, &c, timeout_ms))
        fail_msg("not within %d ms: %s >= %lld (is %lld)", timeout_ms, sql,
                 (long long)want, (long long)harness_sql_int(h, sql));
}

static void
s_ctrl(harness_t *h, const char *verb, const char *args)
{
    drover_ctrl_t req = { .verb = verb, .args_json = args };
    char *body = NULL;
    int rc = drover_ctrl_ex(h->client, &req, &body);
    if (rc != DROVER_OK)
        fail_msg("%s: %s", verb, drover_last_error(h->client));
    free(body);
}

/* A worker whose "work" echoes its payload after a moment and whose "cb"
 * appends its payload to DIR/cb.jsonl and writes the batch's jobs, read
 * with `drover batch jobs NAME --all --json`, to DIR/cb-jobs.json. */
static void
s_worker(harness_t *h, const char *name)
{
    const char *bin = getenv("DROVER_BIN");
    assert_non_null(bin);
    static char cb[2048];
    snprintf(cb, sizeof cb,
             "cb=sh -c 'cat >> %s/cb.jsonl && echo >> %s/cb.jsonl && "
             "%s batch jobs %s --all --json --broker %s > %s/cb-jobs.json "
             "&& echo null'",
             h->dir, h->dir, bin, name, h->clients, h->dir);
    const char *wargs[] = {
        "--concurrency", "4", "--exec", "work=sh -c 'sleep 0.03; cat'",
        "--exec",        cb,  NULL
    };
    assert_true(harness_start_worker(h, wargs) > 0);
}

static void
t_callback_once_across_a_kill(void **state)
{
    harness_t *h = *state;
    pid_t b = harness_start_broker(h, NULL);
    assert_true(b > 0);
    s_worker(h, "b100");
    s_ctrl(h, "batch.open",
           "{\"name\": \"b100\", \"on_complete\": \"cb\", "
           "\"payload\": {\"report\": \"r-1\"}}");
    drover_job_t *jobs = calloc(N, sizeof *jobs);
    drover_ack_t *acks = calloc(N, sizeof *acks);
    char payloads[N][32];
    for (int i = 0; i < N; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "work";
        jobs[i].batch = "b100";
        snprintf(payloads[i], sizeof payloads[i], "{\"n\": %d}", i);
        jobs[i].payload_json = payloads[i];
    }
    assert_int_equal(drover_submit_many(h->client, jobs, N, acks), DROVER_OK);
    for (int i = 0; i < N; i++)
        assert_string_equal(acks[i].error, "");
    free(jobs);
    free(acks);
    s_ctrl(h, "batch.close", "{\"name\": \"b100\"}");

    /* Part of it done and stored, then kill -9 and start again. */
    s_wait_sql(h,
               "SELECT count(*) FROM jobs WHERE batch = 'b100' "
               "AND state = 'succeeded'",
               10, 30000);
    assert_true(harness_sql_int(h,
                                "SELECT count(*) FROM jobs WHERE "
                                "batch = 'b100' AND state = 'succeeded'") < N);
    assert_true(harness_signal(h, b, SIGKILL, 5000) >= 0);
    assert_true(harness_start_broker(h, NULL) > 0);

    s_wait_sql(h,
               "SELECT count(*) FROM batches WHERE name = 'b100' "
               "AND state = 'done'",
               1, 120000);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM jobs WHERE "
                                        "batch = 'b100' AND state = "
                                        "'succeeded'"),
                     N);
    /* One callback job, run once, with the counts of all 100. */
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE type = 'cb'"), 1);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM jobs WHERE "
                                        "type = 'cb' AND key = "
                                        "'drover:batch:b100:complete'"),
                     1);
    assert_int_equal(harness_count_lines(h, "cb.jsonl", "\"batch\"", NULL), 1);
    assert_int_equal(harness_count_lines(h, "cb.jsonl", "\"total\":100",
                                         "\"succeeded\":100", "\"dead\":0",
                                         "\"report\":\"r-1\"", NULL),
                     1);
    /* The callback read every result back. */
    char *text = harness_read(h, "cb-jobs.json");
    assert_non_null(text);
    json_error_t err;
    json_t *doc = json_loads(text, 0, &err);
    free(text);
    assert_non_null(doc);
    json_t *list = json_object_get(doc, "jobs");
    assert_int_equal(json_array_size(list), N);
    int seen[N] = { 0 };
    size_t i;
    json_t *j;
    json_array_foreach(list, i, j)
    {
        assert_string_equal(json_string_value(json_object_get(j, "state")),
                            "succeeded");
        json_t *n = json_object_get(json_object_get(j, "result"), "n");
        assert_true(json_is_integer(n));
        assert_true(json_integer_value(n) >= 0 && json_integer_value(n) < N);
        seen[json_integer_value(n)]++;
    }
    for (int k = 0; k < N; k++)
        assert_int_equal(seen[k], 1);
    json_decref(doc);
}

/* `drover submit --batch NAME --on-complete TYPE --file F`: opened,
 * submitted, closed; the callback follows; more jobs are refused. */
static void
t_one_shot_submit(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    s_worker(h, "once");
    char path[512];
    assert_int_equal(harness_write(h, "jobs.jsonl",
                                   "{\"type\": \"work\", \"payload\": 1}\n"
                                   "{\"type\": \"work\", \"payload\": 2}\n"
                                   "{\"type\": \"work\", \"payload\": 3}\n",
                                   path, sizeof path),
                     0);
    static char out[65536];
    assert_int_equal(harness_cli(out, sizeof out, "submit", "--broker",
                                 h->clients, "--batch", "once", "--on-complete",
                                 "cb", "--file", path, "--quiet", NULL),
                     0);
    s_wait_sql(h,
               "SELECT count(*) FROM batches WHERE name = 'once' "
               "AND state = 'done'",
               1, 60000);
    assert_int_equal(harness_count_lines(h, "cb.jsonl", "\"total\":3", NULL),
                     1);
    assert_int_equal(harness_cli(out, sizeof out, "batch", "show", "once",
                                 "--json", "--broker", h->clients, NULL),
                     0);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "state")),
                        "done");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(doc, "counts"), "succeeded")),
                     3);
    json_decref(doc);
    /* Closed: a job more is refused (exit 1). */
    assert_int_equal(harness_cli(out, sizeof out, "batch", "add", "once",
                                 "--file", path, "--broker", h->clients, NULL),
                     1);
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE batch = 'once'"),
        3);
}

/* Runs `drover --curve-secret KEY ARGS...` as certificate name: its exit
 * code, its stdout in out. */
static int
s_cli_as(harness_t *h, const char *name, char *out, size_t size,
         const char *const *args)
{
    char secret[512];
    snprintf(secret, sizeof secret, "%s/keys/%s.key_secret", h->curve_dir,
             name);
    const char *argv[32];
    int n = 0;
    argv[n++] = "--curve-secret";
    argv[n++] = secret;
    for (int i = 0; args[i] && n < 30; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return harness_cliv(out, size, argv);
}

/* How many jobs `drover batch jobs NAME --all --json` lists for name. */
static int
s_listed(harness_t *h, const char *as, const char *batch)
{
    static char out[65536];
    const char *jobs[] = { "batch",  "jobs",     batch,      "--all",
                           "--json", "--broker", h->clients, NULL };
    if (s_cli_as(h, as, out, sizeof out, jobs) != 0)
        return -1;
    json_t *doc = json_loads(out, 0, NULL);
    int n = (int)json_array_size(json_object_get(doc, "jobs"));
    json_decref(doc);
    return n;
}

/* Under CurveZMQ a batch record is its opener's: the same name from
 * another client is that client's own label, refused nothing; batch jobs
 * lists a client's own jobs only, an operator's every one; the callback
 * counts the owner's jobs and is the owner's job. */
static void
t_owners(void **state)
{
    harness_t *h = *state;
    const char *clients[] = { "client1", "client2", NULL };
    const char *operators[] = { "op1", NULL };
    const char *workers[] = { "w1", NULL };
    assert_int_equal(
        harness_curve(h, "client1", clients, operators, workers, NULL), 0);
    assert_true(harness_start_broker(h, NULL) > 0);
    s_worker(h, "shared");
    static char out[65536];
    const char *open[] = { "batch", "open",     "shared",   "--on-complete",
                           "cb",    "--broker", h->clients, NULL };
    assert_int_equal(s_cli_as(h, "client1", out, sizeof out, open), 0);
    const char *sub[] = { "submit", "work",     "7",        "--batch",
                          "shared", "--broker", h->clients, NULL };
    assert_int_equal(s_cli_as(h, "client1", out, sizeof out, sub), 0);
    assert_int_equal(s_cli_as(h, "client1", out, sizeof out, sub), 0);
    assert_int_equal(s_cli_as(h, "client2", out, sizeof out, sub), 0);
    /* client2 has no record of that name: nothing to close. */
    const char *close[] = { "batch",    "close",    "shared",
                            "--broker", h->clients, NULL };
    assert_int_equal(s_cli_as(h, "client2", out, sizeof out, close), 4);
    assert_int_equal(s_cli_as(h, "client1", out, sizeof out, close), 0);
    s_wait_sql(h,
               "SELECT count(*) FROM batches WHERE name = 'shared' "
               "AND owner = 'client1' AND state = 'done'",
               1, 60000);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM jobs WHERE "
                                        "type = 'cb' AND owner = 'client1'"),
                     1);
    assert_int_equal(harness_count_lines(h, "cb.jsonl", "\"total\":2", NULL),
                     1);
    s_wait_sql(h,
               "SELECT count(*) FROM jobs WHERE batch = 'shared' "
               "AND state = 'succeeded'",
               3, 30000);
    assert_int_equal(s_listed(h, "client1", "shared"), 2);
    assert_int_equal(s_listed(h, "client2", "shared"), 1);
    assert_int_equal(s_listed(h, "op1", "shared"), 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_callback_once_across_a_kill,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_one_shot_submit, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_owners, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
