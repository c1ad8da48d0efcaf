/* Job dependencies with real processes: `drover submit --file` of a
 * three-line chain whose lines name earlier lines ("after": [1]) runs the
 * steps one after the other (each started after the one before finished);
 * a failing first step cancels the other two, each naming its dependency;
 * a line that names a later line exits 4 naming the line, and nothing is
 * submitted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

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
    if (!harness_wait_until(s_sql_at_least, &c, harness_scale(timeout_ms)))
        fail_msg("not within %d ms: %s >= %lld (is %lld)", timeout_ms, sql,
                 (long long)want, (long long)harness_sql_int(h, sql));
}

static void
s_worker(harness_t *h)
{
    const char *wargs[] = { "--concurrency",
                            "4",
                            "--exec",
                            "step=sh -c 'sleep 0.3; cat'",
                            "--exec",
                            "fail=sh -c 'exit 3'",
                            NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
}

/* Submits file path with `drover submit --file`; the ids it prints go to
 * ids (n of them). Returns the exit code. */
static int
s_submit_file(harness_t *h, const char *path, char (*ids)[37], int n)
{
    static char out[65536];
    int rc = harness_cli(out, sizeof out, "submit", "--broker", h->clients,
                         "--file", path, "--quiet", NULL);
    char *p = out;
    for (int i = 0; i < n; i++) {
        char *nl = strchr(p, '\n');
        if (!nl || nl - p != 36)
            fail_msg("line %d of the output is not an id: %s", i + 1, out);
        memcpy(ids[i], p, 36);
        ids[i][36] = '\0';
        p = nl + 1;
    }
    return rc;
}

static int64_t
s_col_int(harness_t *h, const char *col, const char *id)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM jobs WHERE id = '%s'", col, id);
    return harness_sql_int(h, sql);
}

static void
t_chain_by_line(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char path[512];
    assert_int_equal(
        harness_write(h, "chain.jsonl",
                      "{\"type\": \"step\", \"payload\": 1}\n"
                      "# the second waits for the first\n"
                      "{\"type\": \"step\", \"payload\": 2, \"after\": [1]}\n"
                      "{\"type\": \"step\", \"payload\": 3, \"after\": [3]}\n",
                      path, sizeof path),
        0);
    char ids[3][37];
    /* No worker yet: the second and third wait. */
    assert_int_equal(s_submit_file(h, path, ids, 3), 0);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM jobs WHERE state = 'waiting' "
             "AND id IN ('%s', '%s')",
             ids[1], ids[2]);
    assert_int_equal(harness_sql_int(h, sql), 2);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM deps"), 2);
    s_worker(h);
    s_wait_sql(h, "SELECT count(*) FROM jobs WHERE state = 'succeeded'", 3,
               30000);
    /* One after the other: each started after the one before finished. */
    assert_true(s_col_int(h, "started_at", ids[1]) >=
                s_col_int(h, "finished_at", ids[0]));
    assert_true(s_col_int(h, "started_at", ids[2]) >=
                s_col_int(h, "finished_at", ids[1]));
    assert_true(s_col_int(h, "finished_at", ids[0]) > 0);
    /* drover job: what the second waited for, and what waited for it. */
    static char out[65536];
    assert_int_equal(harness_cli(out, sizeof out, "job", ids[1], "--json",
                                 "--broker", h->clients, NULL),
                     0);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    json_t *wf = json_object_get(doc, "waits_for");
    json_t *wb = json_object_get(doc, "waited_by");
    assert_int_equal(json_array_size(wf), 1);
    assert_int_equal(json_array_size(wb), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(wf, 0), "id")),
        ids[0]);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(wf, 0), "state")),
        "succeeded");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(wb, 0), "id")),
        ids[2]);
    json_decref(doc);
    /* One job from the flags: --after ID. */
    assert_int_equal(harness_cli(out, sizeof out, "submit", "step", "4",
                                 "--after", ids[2], "--broker", h->clients,
                                 "--quiet", NULL),
                     0);
    s_wait_sql(h, "SELECT count(*) FROM jobs WHERE state = 'succeeded'", 4,
               30000);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM deps"), 3);
}

static void
t_failure_cancels_the_rest(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    s_worker(h);
    char path[512];
    assert_int_equal(harness_write(h, "fail.jsonl",
                                   "{\"type\": \"fail\", \"max_attempts\": 1}\n"
                                   "{\"type\": \"step\", \"after\": [1]}\n"
                                   "{\"type\": \"step\", \"after\": [2]}\n",
                                   path, sizeof path),
                     0);
    char ids[3][37];
    assert_int_equal(s_submit_file(h, path, ids, 3), 0);
    s_wait_sql(h, "SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL", 3,
               30000);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM jobs WHERE id = '%s' AND state = 'dead'",
             ids[0]);
    assert_int_equal(harness_sql_int(h, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM jobs WHERE id = '%s' AND state = "
             "'cancelled' AND category = 'cancelled' AND error = "
             "'dependency %s ended dead'",
             ids[1], ids[0]);
    assert_int_equal(harness_sql_int(h, sql), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM jobs WHERE id = '%s' AND state = "
             "'cancelled' AND error = 'dependency %s ended cancelled'",
             ids[2], ids[1]);
    assert_int_equal(harness_sql_int(h, sql), 1);
    /* Neither ever ran. */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM attempts WHERE job_id IN ('%s', '%s')",
             ids[1], ids[2]);
    assert_int_equal(harness_sql_int(h, sql), 0);
}

static void
t_later_line_refused(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    char path[512];
    assert_int_equal(harness_write(h, "later.jsonl",
                                   "{\"type\": \"step\"}\n"
                                   "{\"type\": \"step\", \"after\": [3]}\n"
                                   "{\"type\": \"step\"}\n",
                                   path, sizeof path),
                     0);
    const char *bin = getenv("DROVER_BIN");
    assert_non_null(bin);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "'%s' submit --broker '%s' --file '%s' > '%s/later.out' "
             "2> '%s/later.err'",
             bin, h->clients, path, h->dir, h->dir);
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 4);
    assert_true(harness_file_has(h, "later.err", "line 2: after: line 3"));
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM jobs"), 0);

    /* A line naming a line whose job the broker refused (its own "after"
     * names no job) is not sent: exit 4 naming it; the rest go. */
    assert_int_equal(
        harness_write(h, "refused.jsonl",
                      "{\"type\": \"step\", \"after\": "
                      "[\"01a20000-0000-7000-8000-000000000001\"]}\n"
                      "{\"type\": \"step\", \"after\": [1]}\n"
                      "{\"type\": \"step\"}\n",
                      path, sizeof path),
        0);
    snprintf(cmd, sizeof cmd,
             "'%s' submit --broker '%s' --file '%s' > '%s/refused.out' "
             "2> '%s/refused.err'",
             bin, h->clients, path, h->dir, h->dir);
    st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 4);
    assert_true(harness_file_has(h, "refused.err",
                                 "line 1: refused: after: "
                                 "no job 01a20000-"));
    assert_true(harness_file_has(h, "refused.err",
                                 "line 2: not sent: it waits for line 1"));
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM jobs"), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_chain_by_line, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_failure_cancels_the_rest,
                                        harness_setup, harness_teardown),
        cmocka_unit_test_setup_teardown(t_later_line_refused, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
