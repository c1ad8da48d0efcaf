/* cli_test - `drover submit`: JSON Lines job parsing (jobline) and the
 * command itself against a scripted broker (tests/fixtures/scripted_broker.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drover.h"
#include "dv_clock.h"
#include "dv_json.h"
#include "dv_proto.h"
#include "dv_util.h"
#include "jobline.h"
#include "scripted_broker.h"
#include "submit.h"

/* The table cli_main dispatches on: submit alone. */
const cli_cmd_t *const cli_commands[] = { &cli_submit };
const size_t cli_ncommands = 1;

/* ---- jobline ----------------------------------------------------------- */

typedef struct {
    jobline_arena_t *arena;
    drover_job_t defaults;
    drover_job_t job;
    char why[256];
} s_jl_t;

static int
s_jl_setup(void **state)
{
    s_jl_t *t = calloc(1, sizeof *t);
    t->arena = jobline_arena_new();
    drover_job_init(&t->defaults);
    *state = t;
    return 0;
}

static int
s_jl_teardown(void **state)
{
    s_jl_t *t = *state;
    jobline_arena_destroy(&t->arena);
    free(t);
    return 0;
}

static int
s_parse(s_jl_t *t, const char *line)
{
    return jobline_parse(line, strlen(line), &t->defaults, t->arena, &t->job,
                         t->why, sizeof t->why);
}

/* Asserts that line is refused with exactly the reason want. */
#define assert_bad(t, line, want)                                              \
    do {                                                                       \
        assert_int_equal(s_parse((t), (line)), JOBLINE_BAD);                   \
        assert_string_equal((t)->why, (want));                                 \
    } while (0)

static void
test_jobline_minimal(void **state)
{
    s_jl_t *t = *state;
    assert_int_equal(s_parse(t, "{\"type\": \"echo\"}"), JOBLINE_JOB);
    assert_string_equal(t->job.type, "echo");
    assert_null(t->job.queue); /* the library's default, "default" */
    assert_int_equal(t->job.priority, -1);
    assert_null(t->job.payload_msgpack);
    assert_int_equal(t->job.backoff_jitter, -1);
    assert_string_equal(t->why, "");
}

static void
test_jobline_all_fields(void **state)
{
    s_jl_t *t = *state;
    const char *line =
        "{\"queue\":\"llm\",\"type\":\"http\",\"payload\":{\"prompt\":\"hi\","
        "\"n\":[1,2.5,true,null]},\"priority\":9,\"delay\":1.5,"
        "\"max_attempts\":3,\"timeout\":\"2m\",\"key\":\"k-1\","
        "\"batch\":\"b1\",\"trace\":"
        "\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\","
        "\"result_ttl\":3600,\"backoff\":{\"base\":0.5,\"factor\":3,"
        "\"cap\":60,\"jitter\":false}}\r";
    assert_int_equal(s_parse(t, line), JOBLINE_JOB);
    drover_job_t *j = &t->job;
    assert_string_equal(j->queue, "llm");
    assert_string_equal(j->type, "http");
    assert_int_equal(j->priority, 9);
    assert_true(j->delay_s == 1.5);
    assert_int_equal(j->run_at_ms, 0);
    assert_int_equal(j->max_attempts, 3);
    assert_true(j->timeout_s == 120.0);
    assert_string_equal(j->key, "k-1");
    assert_string_equal(j->batch, "b1");
    assert_string_equal(
        j->trace, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_true(j->result_ttl_s == 3600.0);
    assert_true(j->backoff_base_s == 0.5);
    assert_true(j->backoff_factor == 3.0);
    assert_true(j->backoff_cap_s == 60.0);
    assert_int_equal(j->backoff_jitter, 0);
    /* The payload is msgpack of the JSON value, in key order. */
    assert_non_null(j->payload_msgpack);
    char *text = dv_msgpack_to_json_text(j->payload_msgpack, j->payload_len);
    assert_string_equal(text, "{\"prompt\":\"hi\",\"n\":[1,2.5,true,null]}");
    free(text);
}

static void
test_jobline_defaults(void **state)
{
    s_jl_t *t = *state;
    t->defaults.type = "echo";
    t->defaults.queue = "q1";
    t->defaults.priority = 7;
    t->defaults.run_at_ms = 1795000000000;
    t->defaults.batch = "nightly";
    /* Omitted and null fields keep the defaults. */
    assert_int_equal(s_parse(t, "{\"queue\":null,\"payload\":42}"),
                     JOBLINE_JOB);
    assert_string_equal(t->job.type, "echo");
    assert_string_equal(t->job.queue, "q1");
    assert_int_equal(t->job.priority, 7);
    assert_int_equal(t->job.run_at_ms, 1795000000000);
    assert_string_equal(t->job.batch, "nightly");
    /* A line's delay replaces the default time. */
    assert_int_equal(s_parse(t, "{\"delay\":\"250ms\",\"priority\":0}"),
                     JOBLINE_JOB);
    assert_int_equal(t->job.run_at_ms, 0);
    assert_true(t->job.delay_s == 0.25);
    assert_int_equal(t->job.priority, 0);
    /* "at" as ISO text, @epoch, or epoch seconds. */
    assert_int_equal(s_parse(t, "{\"at\":\"2026-11-22T17:41:00Z\"}"),
                     JOBLINE_JOB);
    assert_int_equal(t->job.run_at_ms, 1795369260000);
    assert_int_equal(s_parse(t, "{\"at\":\"@1795000000.5\"}"), JOBLINE_JOB);
    assert_int_equal(t->job.run_at_ms, 1795000000500);
    assert_int_equal(s_parse(t, "{\"at\":1795000001}"), JOBLINE_JOB);
    assert_int_equal(t->job.run_at_ms, 1795000001000);
    /* "payload": null is an explicit null payload. */
    assert_int_equal(s_parse(t, "{\"payload\":null}"), JOBLINE_JOB);
    assert_int_equal(t->job.payload_len, 1);
    assert_int_equal(((const unsigned char *)t->job.payload_msgpack)[0], 0xc0);
}

static void
test_jobline_skip(void **state)
{
    s_jl_t *t = *state;
    assert_int_equal(s_parse(t, ""), JOBLINE_SKIP);
    assert_int_equal(s_parse(t, "   \t\r"), JOBLINE_SKIP);
    assert_int_equal(s_parse(t, "# a comment {"), JOBLINE_SKIP);
    assert_int_equal(s_parse(t, "  # indented comment"), JOBLINE_SKIP);
}

static void
test_jobline_bad(void **state)
{
    s_jl_t *t = *state;
    assert_bad(t, "{\"type\":\"echo\"",
               "invalid JSON at column 14: "
               "'}' expected near end of file");
    assert_bad(t, "{\"type\":\"echo\",\"type\":\"x\"}",
               "invalid JSON at column 21: duplicate object key near "
               "'\"type\"'");
    assert_bad(t, "[1,2]", "a job line must be a JSON object");
    assert_bad(t, "\"echo\"", "a job line must be a JSON object");
    assert_bad(t, "{}", "type is required");
    assert_bad(t, "{\"payload\":1}", "type is required");
    assert_bad(t, "{\"type\":\"echo\",\"priorty\":3}",
               "unknown field \"priorty\"");
    assert_bad(t, "{\"type\":3}", "type must be a string");
    assert_bad(t, "{\"type\":\"\"}", "type must be 1..200 bytes");
    assert_bad(t, "{\"type\":\"echo\",\"queue\":\"\"}",
               "queue must be 1..200 bytes");
    assert_bad(t, "{\"type\":\"echo\",\"priority\":10}",
               "priority must be 0..9");
    assert_bad(t, "{\"type\":\"echo\",\"priority\":-1}",
               "priority must be 0..9");
    assert_bad(t, "{\"type\":\"echo\",\"priority\":\"high\"}",
               "priority must be an integer 0..9");
    assert_bad(t, "{\"type\":\"echo\",\"priority\":1.5}",
               "priority must be an integer 0..9");
    assert_bad(t, "{\"type\":\"echo\",\"delay\":-1}",
               "delay must be >= 0 seconds");
    assert_bad(t, "{\"type\":\"echo\",\"delay\":\"-1s\"}",
               "delay must be >= 0 seconds");
    assert_bad(t, "{\"type\":\"echo\",\"delay\":\"soon\"}",
               "delay must be a number of seconds");
    assert_bad(t, "{\"type\":\"echo\",\"delay\":1e12}",
               "delay must be at most 10 years");
    assert_bad(t, "{\"type\":\"echo\",\"delay\":1,\"at\":\"@1795000000\"}",
               "give delay or at, not both");
    assert_bad(t, "{\"type\":\"echo\",\"at\":\"tomorrow\"}",
               "at must be an ISO 8601 UTC time (2026-11-22T17:41:00Z) or "
               "epoch seconds");
    assert_bad(t, "{\"type\":\"echo\",\"max_attempts\":0}",
               "max_attempts must be 1..1000");
    assert_bad(t, "{\"type\":\"echo\",\"max_attempts\":\"3\"}",
               "max_attempts must be an integer 1..1000");
    assert_bad(t, "{\"type\":\"echo\",\"timeout\":0}",
               "timeout must be > 0 seconds");
    assert_bad(t, "{\"type\":\"echo\",\"result_ttl\":true}",
               "result_ttl must be a number of seconds");
    assert_bad(t, "{\"type\":\"echo\",\"key\":\"\"}",
               "key must be 1..512 bytes");
    assert_bad(t, "{\"type\":\"echo\",\"batch\":[]}", "batch must be a string");
    assert_bad(t, "{\"type\":\"echo\",\"trace\":\"abc\"}",
               "trace must be a W3C traceparent "
               "(00-<32 hex>-<16 hex>-<2 hex>)");
    assert_bad(t, "{\"type\":\"echo\",\"backoff\":5}",
               "backoff must be an object {base, factor, cap, jitter}");
    assert_bad(t, "{\"type\":\"echo\",\"backoff\":{\"factor\":0.5}}",
               "backoff.factor must be 1..1000");
    assert_bad(t, "{\"type\":\"echo\",\"backoff\":{\"base\":-2}}",
               "backoff.base must be >= 0 seconds");
    assert_bad(t, "{\"type\":\"echo\",\"backoff\":{\"jitter\":1}}",
               "backoff.jitter must be true or false");
    assert_bad(t, "{\"type\":\"echo\",\"backoff\":{\"max\":1}}",
               "unknown field \"backoff.max\"");

    /* Over the nesting limit. */
    char deep[200];
    size_t k = 0;
    k += (size_t)sprintf(deep, "{\"type\":\"x\",\"payload\":");
    for (int i = 0; i < 70; i++)
        deep[k++] = '[';
    for (int i = 0; i < 70; i++)
        deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = '\0';
    assert_bad(t, deep, "payload is nested deeper than 64 levels");

    /* Over the payload size limit (1 MiB as msgpack). */
    size_t big = (1u << 20) + 100;
    char *line = malloc(big + 64);
    k = (size_t)sprintf(line, "{\"type\":\"x\",\"payload\":\"");
    memset(line + k, 'a', big);
    strcpy(line + k + big, "\"}");
    assert_bad(t, line,
               "payload is 1048681 bytes as msgpack; the limit is "
               "1048576");
    free(line);
}

static void
test_jobline_helpers(void **state)
{
    (void)state;
    double s;
    assert_int_equal(jobline_seconds("1.5", &s), 0);
    assert_true(s == 1.5);
    assert_int_equal(jobline_seconds("2m", &s), 0);
    assert_true(s == 120);
    assert_int_equal(jobline_seconds("-1", &s), -1);
    assert_int_equal(jobline_seconds("x", &s), -1);
    int64_t ms;
    assert_int_equal(jobline_time("@10", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(jobline_time("2026-13-01T00:00:00Z", &ms), -1);
    assert_true(jobline_trace_ok(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
    assert_false(jobline_trace_ok(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"));
    assert_false(jobline_trace_ok(
        "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01"));
}

/* ---- drover submit ----------------------------------------------------- */

typedef struct {
    char dir[64];
    char out[96], err[96], in[96], res[96];
    char *stdout_text, *stderr_text;
} s_cli_t;

static int
s_cli_setup(void **state)
{
    s_cli_t *t = calloc(1, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/drover-ptest-cli-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->out, sizeof t->out, "%s/stdout", t->dir);
    snprintf(t->err, sizeof t->err, "%s/stderr", t->dir);
    snprintf(t->in, sizeof t->in, "%s/jobs.jsonl", t->dir);
    snprintf(t->res, sizeof t->res, "%s/results.jsonl", t->dir);
    *state = t;
    return 0;
}

static int
s_cli_teardown(void **state)
{
    s_cli_t *t = *state;
    unlink(t->out);
    unlink(t->err);
    unlink(t->in);
    unlink(t->res);
    rmdir(t->dir);
    free(t->stdout_text);
    free(t->stderr_text);
    free(t);
    return 0;
}

static void
s_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Runs `drover submit ARGS` through cli_main with stdout and stderr
 * captured into t. NULL ends the arguments. */
static int
s_cli_run(s_cli_t *t, ...)
{
    const char *argv[40] = { "drover", "submit" };
    int argc = 2;
    va_list ap;
    va_start(ap, t);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 39)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(1), saved_err = dup(2);
    int fo = open(t->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(t->err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fo, 1);
    dup2(fe, 2);
    close(fo);
    close(fe);
    int rc = cli_main(argc, (char **)argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    free(t->stdout_text);
    free(t->stderr_text);
    t->stdout_text = dv_read_file(t->out, NULL);
    t->stderr_text = dv_read_file(t->err, NULL);
    return rc;
}

static size_t
s_count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

static void
test_cli_usage(void **state)
{
    s_cli_t *t = *state;
    assert_int_equal(s_cli_run(t, "--help", NULL), 0);
    assert_non_null(strstr(t->stdout_text, "usage: drover submit [OPTIONS] "
                                           "[TYPE [PAYLOAD]]\n"));
    assert_non_null(strstr(t->stdout_text, "exit status:"));
    assert_int_equal(s_cli_run(t, "--bogus", NULL), 2);
    assert_non_null(strstr(t->stderr_text, "unknown option '--bogus'"));
    assert_int_equal(s_cli_run(t, "--queue", "q", NULL), 2);
    assert_non_null(strstr(t->stderr_text,
                           "drover submit: needs TYPE (or --type, or "
                           "--file)\n"));
    assert_int_equal(s_cli_run(t, "--type", "echo", "--priority", "12", NULL),
                     2);
    assert_non_null(strstr(t->stderr_text, "--priority must be 0..9"));
    assert_int_equal(s_cli_run(t, "--file", t->in, "--payload", "1", NULL), 2);
    assert_int_equal(s_cli_run(t, "--type", "echo", "--payload", "{x", NULL),
                     2);
    assert_non_null(strstr(t->stderr_text, "the payload is not valid JSON"));
    assert_int_equal(s_cli_run(t, "--type", "echo", "--delay", "1", "--at",
                               "@1795000000", NULL),
                     2);
    assert_int_equal(s_cli_run(t, "--type", "echo", "--out", "x", NULL), 2);
    assert_int_equal(s_cli_run(t, "--type", "echo", "extra", NULL), 2);
    assert_non_null(strstr(t->stderr_text, "as TYPE or --type, not both"));
    assert_int_equal(s_cli_run(t, "echo", "1", "2", NULL), 2);
    assert_non_null(strstr(t->stderr_text, "unexpected argument '2'"));
    assert_int_equal(s_cli_run(t, "echo", "1", "--payload", "2", NULL), 2);
    assert_int_equal(s_cli_run(t, "echo", "--ids", NULL), 2);
    assert_int_equal(s_cli_run(t, "echo", "--wait-timeout", "1", NULL), 2);
    /* Under --json a usage error is one JSON object on stderr. */
    assert_int_equal(s_cli_run(t, "--json", "--priority", "x", NULL), 2);
    assert_string_equal(t->stdout_text, "");
    json_t *e = json_loads(t->stderr_text, 0, NULL);
    assert_non_null(e);
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(e, "error"), "exit")),
                     2);
    json_decref(e);
    assert_int_equal(
        s_cli_run(t, "--type", "echo", "--broker", "nope://", NULL), 2);
    assert_int_equal(s_cli_run(t, "--file", "/nonexistent/jobs", NULL), 2);
}

static void
test_cli_bad_lines(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = fake_start(FAKE_NORMAL);
    fake_go(f);
    s_write_file(t->in, "{\"payload\": 1}\n"
                        "# comment\n"
                        "\n"
                        "{\"priority\": 12}\n"
                        "{\"bogus\": 1}\n"
                        "not json\n");
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", NULL),
                     2);
    const char *want =
        "drover submit: line 4: priority must be 0..9\n"
        "drover submit: line 5: unknown field \"bogus\"\n"
        "drover submit: line 6: invalid JSON at column 3: invalid token near "
        "'not'\n"
        "drover submit: 3 bad lines in ";
    assert_memory_equal(t->stderr_text, want, strlen(want));
    assert_non_null(strstr(t->stderr_text, "; nothing was submitted\n"));
    assert_string_equal(t->stdout_text, "");
    assert_int_equal(f->jobs, 0); /* nothing was submitted */
    /* Under --json: the first bad line and the count, one JSON error. */
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", "--json", NULL),
                     2);
    assert_string_equal(t->stdout_text, "");
    const char *want_json =
        "{\"error\": {\"code\": \"bad_line\", \"message\": \"line 4: "
        "priority must be 0..9; 3 bad lines in ";
    assert_memory_equal(t->stderr_text, want_json, strlen(want_json));
    assert_non_null(strstr(t->stderr_text, "nothing was submitted\", "
                                           "\"exit\": 2}}\n"));
    assert_int_equal(f->jobs, 0);
    fake_stop(&f);
}

/* A file of many lines is parsed in two halves at once: bad lines of both
 * are said in line order, and references to lines may cross the middle
 * (a good one to the first half, and one to a line that had no job). */
static void
test_cli_bad_lines_big(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = fake_start(FAKE_NORMAL);
    fake_go(f);
    enum { S_LINES = 20000 };
    size_t cap = (size_t)S_LINES * 32, n = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    for (int line = 1; line <= S_LINES; line++) {
        const char *l = "{\"payload\": 1}";
        if (line == 3)
            l = "{\"priority\": 12}";
        else if (line == 15000)
            l = "{\"after\": [2]}";
        else if (line == 15001)
            l = "{\"after\": [3]}";
        else if (line == 19000)
            l = "{\"bogus\": 1}";
        n += (size_t)snprintf(text + n, cap - n, "%s\n", l);
    }
    s_write_file(t->in, text);
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", NULL),
                     2);
    const char *want =
        "drover submit: line 3: priority must be 0..9\n"
        "drover submit: line 15001: after: line 3 is not an earlier line "
        "with a job (a line may wait only for the jobs of lines before it)\n"
        "drover submit: line 19000: unknown field \"bogus\"\n"
        "drover submit: 3 bad lines in ";
    assert_memory_equal(t->stderr_text, want, strlen(want));
    assert_int_equal(f->jobs, 0);

    /* The same file, good: every job goes, the reference across the
     * middle resolved. */
    n = 0;
    for (int line = 1; line <= S_LINES; line++)
        n += (size_t)snprintf(text + n, cap - n, "%s\n",
                              line == 15000 ? "{\"after\": [2]}"
                                            : "{\"payload\": 1}");
    s_write_file(t->in, text);
    free(text);
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", "--quiet", NULL),
                     0);
    assert_int_equal(f->jobs, S_LINES);
    fake_stop(&f);
}

static void
test_cli_refused(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = fake_start(FAKE_NORMAL);
    fake_go(f);
    s_write_file(t->in, "{\"payload\": 1}\n"
                        "{\"type\": \"refuse\"}\n"
                        "{\"payload\": [3]}\n");
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", NULL),
                     1);
    assert_int_equal(s_count_lines(t->stdout_text), 2);
    assert_string_equal(t->stderr_text,
                        "drover submit: line 2: refused: queue is paused\n"
                        "drover submit: 2 of 3 jobs accepted, 1 refused\n");
    /* --json: the summary on stdout, the refusal in it, exit 1. */
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", "--json", "--ids", NULL),
                     1);
    json_t *doc = json_loads(t->stdout_text, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "jobs")), 3);
    assert_int_equal(json_integer_value(json_object_get(doc, "submitted")), 2);
    assert_int_equal(json_integer_value(json_object_get(doc, "refused")), 1);
    json_t *r0 = json_array_get(json_object_get(doc, "refusals"), 0);
    assert_int_equal(json_integer_value(json_object_get(r0, "line")), 2);
    assert_string_equal(json_string_value(json_object_get(r0, "message")),
                        "queue is paused");
    json_t *ids = json_object_get(doc, "ids");
    assert_int_equal(json_array_size(ids), 3);
    assert_true(json_is_null(json_array_get(ids, 1)));
    assert_int_equal(strlen(json_string_value(json_array_get(ids, 0))),
                     DROVER_ID_LEN);
    assert_true(json_is_number(json_object_get(doc, "rate")));
    assert_true(json_is_integer(json_object_get(doc, "elapsed_ms")));
    json_decref(doc);
    assert_non_null(strstr(t->stderr_text, "\"code\": \"refused\""));
    fake_stop(&f);
}

static void
test_cli_one_job(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = fake_start(FAKE_NORMAL);
    fake_go(f);
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--type", "echo",
                               "--queue", "q7", "--payload", "{\"a\":1}",
                               "--priority", "0", "--max-attempts", "2",
                               "--timeout", "1.5", "--no-jitter", NULL),
                     0);
    assert_int_equal(strlen(t->stdout_text), DROVER_ID_LEN + 1);
    assert_string_equal(t->stderr_text, "submitted 1 job\n");
    assert_string_equal(f->first_queue, "q7");
    assert_int_equal(f->first.priority, 0);
    assert_int_equal(f->first.max_attempts, 2);
    assert_int_equal(f->first.timeout_ms, 1500);
    assert_true(f->first.has_backoff);
    assert_false(f->first.backoff.jitter);
    assert_int_equal(
        s_cli_run(t, "--broker", f->endpoint, "--type", "echo", "-q", NULL), 0);
    assert_string_equal(t->stderr_text, "");
    /* TYPE and PAYLOAD as arguments; a negative number is a payload. */
    assert_int_equal(
        s_cli_run(t, "--broker", f->endpoint, "sum", "-5", "-q", NULL), 0);
    assert_int_equal(strlen(t->stdout_text), DROVER_ID_LEN + 1);
    /* --json: {"id", "duplicate"} and nothing else on stdout or stderr. */
    assert_int_equal(
        s_cli_run(t, "--broker", f->endpoint, "echo", "[1]", "--json", NULL),
        0);
    assert_string_equal(t->stderr_text, "");
    json_t *doc = json_loads(t->stdout_text, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(json_object_size(doc), 2);
    assert_int_equal(strlen(json_string_value(json_object_get(doc, "id"))),
                     DROVER_ID_LEN);
    assert_true(json_is_false(json_object_get(doc, "duplicate")));
    json_decref(doc);
    fake_stop(&f);
}

static void
test_cli_wait_timeout(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = fake_start(FAKE_NORMAL);
    f->wait_ignore_first = 1; /* no result within the wait timeout */
    fake_go(f);
    int64_t t0 = dv_mono_ms();
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "echo", "--wait",
                               "--wait-timeout", "0.3", "--no-progress",
                               "--json", NULL),
                     6);
    assert_true(dv_mono_ms() - t0 < 4000);
    json_t *doc = json_loads(t->stdout_text, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "state")),
                        "unfinished");
    json_decref(doc);
    assert_non_null(strstr(t->stderr_text, "\"code\": \"timeout\""));
    fake_stop(&f);
}

static void
test_cli_unreachable(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = fake_start(FAKE_SILENT);
    fake_go(f);
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--type", "echo",
                               "--connect-timeout", "0.2", NULL),
                     3);
    assert_non_null(strstr(t->stderr_text, "cannot reach the broker"));
    assert_string_equal(t->stdout_text, "");
    fake_stop(&f);
}

static void
test_cli_wait(void **state)
{
    s_cli_t *t = *state;
    fake_t *f = fake_start(FAKE_NORMAL);
    fake_go(f);
    s_write_file(t->in, "{\"payload\": 1}\n"
                        "{\"payload\": 2}\n"
                        "\n"
                        "{\"payload\": 3}\n"
                        "{\"payload\": 4}\n");
    /* The scripted broker ends the second job it is asked about as dead. */
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", "--wait", "--out", t->res,
                               "--no-progress", NULL),
                     1);
    assert_string_equal(t->stdout_text, "");
    assert_non_null(strstr(t->stderr_text, "4 jobs in "));
    assert_non_null(strstr(t->stderr_text,
                           "3 succeeded, 1 dead, 0 cancelled; 2 retries\n"
                           "failures by category:\n"
                           "  handler                 1  e.g. boom\n"));
    char *res = dv_read_file(t->res, NULL);
    assert_int_equal(s_count_lines(res), 4);
    assert_non_null(strstr(res, "\"line\":2,\"state\":\"dead\",\"attempts\":3,"
                                "\"error\":{\"category\":\"handler\","
                                "\"message\":\"boom\"}}\n"));
    assert_non_null(strstr(res, "\"line\":5,\"state\":\"succeeded\","
                                "\"attempts\":1,\"result\":42}\n"));
    free(res);
    fake_stop(&f);
    /* --json: the counts and failures on stdout, the results in --out. */
    f = fake_start(FAKE_NORMAL);
    fake_go(f);
    assert_int_equal(s_cli_run(t, "--broker", f->endpoint, "--file", t->in,
                               "--type", "echo", "--wait", "--out", t->res,
                               "--json", NULL),
                     1);
    assert_string_equal(t->stderr_text, "");
    json_t *doc = json_loads(t->stdout_text, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(json_integer_value(json_object_get(doc, "submitted")), 4);
    assert_int_equal(json_integer_value(json_object_get(doc, "succeeded")), 3);
    assert_int_equal(json_integer_value(json_object_get(doc, "dead")), 1);
    json_t *h = json_object_get(json_object_get(doc, "failures"), "handler");
    assert_int_equal(json_integer_value(json_object_get(h, "count")), 1);
    assert_string_equal(json_string_value(json_object_get(h, "example")),
                        "boom");
    json_decref(doc);
    res = dv_read_file(t->res, NULL);
    assert_int_equal(s_count_lines(res), 4);
    free(res);
    fake_stop(&f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jobline_minimal, s_jl_setup,
                                        s_jl_teardown),
        cmocka_unit_test_setup_teardown(test_jobline_all_fields, s_jl_setup,
                                        s_jl_teardown),
        cmocka_unit_test_setup_teardown(test_jobline_defaults, s_jl_setup,
                                        s_jl_teardown),
        cmocka_unit_test_setup_teardown(test_jobline_skip, s_jl_setup,
                                        s_jl_teardown),
        cmocka_unit_test_setup_teardown(test_jobline_bad, s_jl_setup,
                                        s_jl_teardown),
        cmocka_unit_test(test_jobline_helpers),
        cmocka_unit_test_setup_teardown(test_cli_usage, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_bad_lines, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_bad_lines_big, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_refused, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_one_job, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_unreachable, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_wait, s_cli_setup,
                                        s_cli_teardown),
        cmocka_unit_test_setup_teardown(test_cli_wait_timeout, s_cli_setup,
                                        s_cli_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
