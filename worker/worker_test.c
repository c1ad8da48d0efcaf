/* worker_test - unit tests for the worker's pure parts: progress lines,
 * exec results, the child frame codec, config files and flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "handler_exec.h"
#include "oom_inject.h"
#include "worker.h"
#include "worker_config.h"
#include "worker_ipc.h"
#include "worker_jobs.h"
#include "worker_outbox.h"

static void
test_progress_line(void **state)
{
    (void)state;
    int64_t cur, tot;
    const char *msg;
    size_t ml;
    const char *l = "PROGRESS 3 10 fetching page 3\n";
    assert_int_equal(
        handler_exec_parse_progress(l, strlen(l), &cur, &tot, &msg, &ml), 0);
    assert_int_equal(cur, 3);
    assert_int_equal(tot, 10);
    assert_int_equal(ml, strlen("fetching page 3"));
    assert_memory_equal(msg, "fetching page 3", ml);

    l = "  PROGRESS 0 0";
    assert_int_equal(
        handler_exec_parse_progress(l, strlen(l), &cur, &tot, &msg, &ml), 0);
    assert_int_equal(ml, 0);

    const char *bad[] = { "PROGRESS",
                          "PROGRESS 1",
                          "PROGRESS x 2",
                          "PROGRESS -1 2",
                          "PROGRESS 1 2x msg",
                          "PROGRESSS 1 2",
                          "progress 1 2",
                          "1 2 msg",
                          "PROGRESS 99999999999999999999 1",
                          "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(handler_exec_parse_progress(bad[i], strlen(bad[i]),
                                                     &cur, &tot, &msg, &ml),
                         -1);
}

static void
test_last_line(void **state)
{
    (void)state;
    const char *line;
    const char *buf = "warning: x\nerror: it broke  \n\n  \n";
    size_t n = handler_exec_last_line(buf, strlen(buf), &line);
    assert_int_equal(n, strlen("error: it broke"));
    assert_memory_equal(line, "error: it broke", n);
    assert_int_equal(handler_exec_last_line("\n \n", 3, &line), 0);
    assert_int_equal(handler_exec_last_line("", 0, &line), 0);
    n = handler_exec_last_line("only", 4, &line);
    assert_int_equal(n, 4);
}

/* Unpacks one msgpack value for inspection. */
static msgpack_object
s_unpack(msgpack_unpacked *u, const char *p, size_t n)
{
    size_t off = 0;
    msgpack_unpacked_init(u);
    assert_int_equal(msgpack_unpack_next(u, p, n, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, n);
    return u->data;
}

static void
test_exec_result(void **state)
{
    (void)state;
    size_t n;
    msgpack_unpacked u;

    char *r = handler_exec_result("  {\"a\": [1, 2]}\n", 16, &n);
    msgpack_object o = s_unpack(&u, r, n);
    assert_int_equal(o.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(o.via.map.size, 1);
    msgpack_unpacked_destroy(&u);
    free(r);

    r = handler_exec_result("42\n", 3, &n);
    o = s_unpack(&u, r, n);
    assert_int_equal(o.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(o.via.u64, 42);
    msgpack_unpacked_destroy(&u);
    free(r);

    r = handler_exec_result("hello world\n\n", 13, &n);
    o = s_unpack(&u, r, n);
    assert_int_equal(o.type, MSGPACK_OBJECT_STR);
    assert_int_equal(o.via.str.size, 11);
    assert_memory_equal(o.via.str.ptr, "hello world", 11);
    msgpack_unpacked_destroy(&u);
    free(r);

    r = handler_exec_result(" \n", 2, &n);
    assert_int_equal(n, 1);
    assert_int_equal((unsigned char)r[0], 0xc0);
    free(r);

    r = handler_exec_result("\xff\xfe", 2, &n);
    o = s_unpack(&u, r, n);
    assert_int_equal(o.type, MSGPACK_OBJECT_BIN);
    msgpack_unpacked_destroy(&u);
    free(r);
}

/* The failure hints on DROVER_PROGRESS_FD: MESSAGE and RETRYABLE say what
 * the exit status and stderr would otherwise say. */
static void
test_exec_hints(void **state)
{
    (void)state;
    static const struct {
        const char *cmd;
        dv_category_t cat;
        bool retryable;
        const char *message;
    } cases[] = {
        { "echo boom >&2; exit 1", DV_CAT_HANDLER, false, "boom" },
        { "echo boom >&2; exit 75", DV_CAT_HANDLER, true, "boom" },
        { "echo 'MESSAGE ValueError: bad input' >&$DROVER_PROGRESS_FD; "
          "echo 'Traceback (most recent call last):' >&2; exit 1",
          DV_CAT_HANDLER, false, "ValueError: bad input" },
        { "echo 'RETRYABLE yes' >&$DROVER_PROGRESS_FD; "
          "echo 'CATEGORY upstream' >&$DROVER_PROGRESS_FD; exit 1",
          DV_CAT_UPSTREAM, true, "exit status 1" },
        { "echo 'RETRYABLE no' >&$DROVER_PROGRESS_FD; exit 75", DV_CAT_HANDLER,
          false, "exit status 75" },
        { "echo 'RETRYABLE maybe' >&$DROVER_PROGRESS_FD; exit 75",
          DV_CAT_HANDLER, true, "exit status 75" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        worker_handler_job_t job = { 0 };
        job.worker = "w";
        job.id = dv_str("01a24300-36a9-7916-8bb1-31d2ab913cf5");
        job.type = dv_str("t");
        job.queue = dv_str("default");
        job.attempt = 1;
        worker_outcome_t out;
        worker_outcome_init(&out);
        handler_exec_run(cases[i].cmd, &job, NULL, NULL, &out);
        assert_false(out.ok);
        assert_int_equal(out.failure.category, cases[i].cat);
        assert_int_equal(out.failure.retryable, cases[i].retryable);
        assert_true(dv_str_eq(out.failure.message, cases[i].message));
        worker_outcome_clear(&out);
    }
}

/* True if the view s ends with the text end. */
static bool
s_ends_with(dv_str_t s, const char *end)
{
    size_t n = strlen(end);
    return s.ptr && s.len >= n && memcmp(s.ptr + s.len - n, end, n) == 0;
}

static void
s_exec(const char *cmd, worker_outcome_t *out)
{
    worker_handler_job_t job = { 0 };
    job.worker = "w";
    job.id = dv_str("01a24300-36a9-7916-8bb1-31d2ab913cf5");
    job.type = dv_str("t");
    job.queue = dv_str("default");
    job.attempt = 1;
    worker_outcome_init(out);
    handler_exec_run(cmd, &job, NULL, NULL, out);
}

/* DETAIL lines become the failure's details and stderr's end its stderr
 * tail: each the last 8 KiB at most, valid UTF-8, the end kept. */
static void
test_exec_details(void **state)
{
    (void)state;
    /* Large: off the stack of a test. */
    worker_outcome_t *out = malloc(sizeof *out);
    assert_non_null(out);
    /* ~11 KiB of indented details with two-byte characters, then one
     * invalid byte and an empty line; ~11 KiB of stderr, with invalid
     * bytes. */
    s_exec("fd=$DROVER_PROGRESS_FD; i=0; while [ $i -lt 400 ]; do "
           "printf 'DETAIL   frame %d \303\251\303\251 in f()\n' $i >&$fd; "
           "printf 'stderr %d \303\251 \377\376 noise\n' $i >&2; "
           "i=$((i+1)); done; "
           "printf 'DETAIL bad \377 byte\nDETAIL\nDETAILS not one\n' >&$fd; "
           "printf 'DETAIL ValueError: last\n' >&$fd; "
           "printf 'last stderr line\n' >&2; exit 3",
           out);
    assert_false(out->ok);
    assert_int_equal(out->failure.exit_code, 3);
    assert_true(dv_str_eq(out->failure.message, "last stderr line"));

    dv_str_t d = out->failure.details;
    assert_non_null(d.ptr);
    assert_true(d.len <= DV_DETAILS_MAX);
    assert_true(d.len > DV_DETAILS_MAX - 64); /* trimmed, not emptied */
    assert_true(worker_utf8_clean(d.ptr, d.len));
    assert_true(s_ends_with(d, "  frame 399 \xc3\xa9\xc3\xa9 in f()\n"
                               "bad ? byte\n\nValueError: last\n"));
    assert_null(strstr(out->details, "frame 0 "));
    assert_int_equal(strlen(out->details), d.len);

    dv_str_t e = out->failure.stderr_tail;
    assert_non_null(e.ptr);
    assert_true(e.len <= DV_DETAILS_MAX);
    assert_true(e.len > DV_DETAILS_MAX - 64);
    assert_true(worker_utf8_clean(e.ptr, e.len));
    assert_true(s_ends_with(e, "stderr 399 \xc3\xa9 ?? noise\n"
                               "last stderr line\n"));
    worker_outcome_clear(out);

    /* MESSAGE still wins for the message; details alone, no stderr. */
    s_exec("printf 'MESSAGE boom\nDETAIL one\n' >&$DROVER_PROGRESS_FD; exit 1",
           out);
    assert_false(out->ok);
    assert_true(dv_str_eq(out->failure.message, "boom"));
    assert_true(dv_str_eq(out->failure.details, "one\n"));
    assert_null(out->failure.stderr_tail.ptr);
    worker_outcome_clear(out);

    /* Killed by a signal: what it said goes too. */
    s_exec("printf 'DETAIL dying\n' >&$DROVER_PROGRESS_FD; echo bye >&2; "
           "kill -9 $$",
           out);
    assert_false(out->ok);
    assert_int_equal(out->failure.category, DV_CAT_CRASHED);
    assert_true(dv_str_eq(out->failure.details, "dying\n"));
    assert_true(dv_str_eq(out->failure.stderr_tail, "bye\n"));
    worker_outcome_clear(out);

    /* Success: neither. */
    s_exec("printf 'DETAIL unused\n' >&$DROVER_PROGRESS_FD; echo hm >&2; "
           "echo 1",
           out);
    assert_true(out->ok);
    assert_null(out->failure.details.ptr);
    assert_null(out->failure.stderr_tail.ptr);
    worker_outcome_clear(out);

    /* Nothing said: both absent. */
    s_exec("exit 2", out);
    assert_false(out->ok);
    assert_null(out->failure.details.ptr);
    assert_null(out->failure.stderr_tail.ptr);
    worker_outcome_clear(out);

    /* Set directly: the end kept from a sequence's start, repaired. */
    char *big = malloc(10000);
    assert_non_null(big);
    big[0] = 'a';
    for (int i = 1; i < 10000; i += 3)
        memcpy(big + i, "\xe2\x82\xac", 3); /* the euro sign */
    worker_outcome_init(out);
    worker_outcome_details(out, big, 10000, "x\0y\xc3", 4);
    /* 10000 - 8192 = 1808 is the second byte of a sign: starts at 1810 */
    assert_int_equal(out->failure.details.len, 8190);
    assert_memory_equal(out->failure.details.ptr, "\xe2\x82\xac", 3);
    assert_true(worker_utf8_clean(out->failure.details.ptr, 8190));
    assert_true(dv_str_eq(out->failure.stderr_tail, "x?y?"));
    worker_outcome_details(out, "", 0, NULL, 0);
    assert_null(out->failure.details.ptr);
    assert_null(out->failure.stderr_tail.ptr);
    free(big);
    free(out);
}

static void
test_ipc_roundtrip(void **state)
{
    (void)state;
    worker_buf_t b;
    worker_buf_init(&b);
    const char payload[] = { (char)0x81, (char)0xa1, 'a', 0x01 }; /* {a:1} */
    assert_int_equal(worker_ipc_put_run(
                         &b, 7, dv_str("job-1"), dv_str("echo"), dv_str("q"), 3,
                         dv_strn(payload, sizeof payload), dv_strn(NULL, 0)),
                     0);
    assert_int_equal(worker_ipc_put_progress(&b, 7, 5, 9, dv_str("half")), 0);
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_TIMEOUT;
    f.retryable = true;
    f.message = dv_str("slow");
    f.signal = 15;
    assert_int_equal(worker_ipc_put_failed(&b, 7, &f), 0);
    assert_int_equal(worker_ipc_put_succeeded(&b, 8, dv_strn(NULL, 0)), 0);

    const char *body;
    uint32_t len;
    worker_ipc_msg_t m;
    assert_int_equal(worker_ipc_next(&b, &body, &len), 1);
    assert_int_equal(worker_ipc_decode(body, len, &m), 0);
    assert_int_equal(m.kind, WORKER_IPC_RUN);
    assert_int_equal(m.tag, 7);
    assert_true(dv_str_eq(m.id, "job-1"));
    assert_true(dv_str_eq(m.type, "echo"));
    assert_int_equal(m.attempt, 3);
    assert_int_equal(m.payload.len, sizeof payload);
    assert_null(m.trace.ptr);

    assert_int_equal(worker_ipc_next(&b, &body, &len), 1);
    assert_int_equal(worker_ipc_decode(body, len, &m), 0);
    assert_int_equal(m.kind, WORKER_IPC_PROGRESS);
    assert_int_equal(m.current, 5);
    assert_int_equal(m.total, 9);
    assert_true(dv_str_eq(m.message, "half"));

    assert_int_equal(worker_ipc_next(&b, &body, &len), 1);
    assert_int_equal(worker_ipc_decode(body, len, &m), 0);
    assert_int_equal(m.kind, WORKER_IPC_FAILED);
    assert_int_equal(m.failure.category, DV_CAT_TIMEOUT);
    assert_true(m.failure.retryable);
    assert_int_equal(m.failure.signal, 15);
    assert_int_equal(m.failure.exit_code, -1);
    assert_true(dv_str_eq(m.failure.message, "slow"));
    assert_null(m.failure.details.ptr);
    assert_null(m.failure.stderr_tail.ptr);

    assert_int_equal(worker_ipc_next(&b, &body, &len), 1);
    assert_int_equal(worker_ipc_decode(body, len, &m), 0);
    assert_int_equal(m.kind, WORKER_IPC_SUCCEEDED);
    assert_int_equal(m.tag, 8);
    assert_int_equal(m.result.len, 1);

    assert_int_equal(worker_ipc_next(&b, &body, &len), 0);

    /* Details and stderr: sent repaired, and only their ends. */
    worker_buf_reset(&b);
    char *big = malloc(DV_DETAILS_MAX + 100);
    assert_non_null(big);
    memset(big, 'x', DV_DETAILS_MAX + 100);
    memcpy(big + DV_DETAILS_MAX + 100 - 5, "tail\n", 5);
    f.details = dv_str("Traceback (most recent call last):\n"
                       "  File \"h.py\", line 3\nValueError: v\n");
    f.stderr_tail = dv_str("warn \xff\xc3\n");
    assert_int_equal(worker_ipc_put_failed(&b, 9, &f), 0);
    f.details = dv_strn(big, DV_DETAILS_MAX + 100);
    f.stderr_tail = dv_strn("", 0);
    assert_int_equal(worker_ipc_put_failed(&b, 10, &f), 0);
    assert_int_equal(worker_ipc_next(&b, &body, &len), 1);
    assert_int_equal(worker_ipc_decode(body, len, &m), 0);
    assert_int_equal(m.kind, WORKER_IPC_FAILED);
    assert_int_equal(m.tag, 9);
    assert_true(dv_str_eq(m.failure.message, "slow"));
    assert_true(dv_str_eq(m.failure.details,
                          "Traceback (most recent call last):\n"
                          "  File \"h.py\", line 3\nValueError: v\n"));
    assert_true(dv_str_eq(m.failure.stderr_tail, "warn ??\n"));
    assert_int_equal(worker_ipc_next(&b, &body, &len), 1);
    assert_int_equal(worker_ipc_decode(body, len, &m), 0);
    assert_int_equal(m.tag, 10);
    assert_int_equal(m.failure.details.len, DV_DETAILS_MAX);
    assert_memory_equal(m.failure.details.ptr + DV_DETAILS_MAX - 5, "tail\n",
                        5);
    assert_null(m.failure.stderr_tail.ptr); /* empty: absent */
    free(big);
    dv_failure_init(&f);

    /* A partial frame waits for more bytes; a bad length is refused. */
    worker_buf_reset(&b);
    assert_int_equal(worker_ipc_put_tag(&b, WORKER_IPC_STARTED, 1), 0);
    size_t full = b.len;
    b.len = full - 1;
    assert_int_equal(worker_ipc_next(&b, &body, &len), 0);
    b.len = full;
    assert_int_equal(worker_ipc_next(&b, &body, &len), 1);
    worker_buf_reset(&b);
    const char huge[4] = { 0x7f, 0, 0, 0 };
    worker_buf_append(&b, huge, 4);
    assert_int_equal(worker_ipc_next(&b, &body, &len), -1);
    worker_buf_free(&b);
}

static void
test_ipc_rejects(void **state)
{
    (void)state;
    worker_ipc_msg_t m;
    /* Truncated, wrong arity, wrong types, unknown kind, trailing bytes. */
    const char *bad[] = {
        "\x92",                     /* array of 2, no elements */
        "\x92\x0a",                 /* STARTED without tag */
        "\x93\x0a\x01\x01",         /* STARTED with an extra element */
        "\x92\x63\x01",             /* kind 99 */
        "\x92\x0a\xa1x",            /* tag as a string */
        "\x93\x0c\x01\xc0",         /* SUCCEEDED with nil result */
        "\x93\x0c\x01\xc4\x05\x01", /* bin longer than the frame */
    };
    size_t lens[] = { 1, 2, 4, 3, 4, 4, 6 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(worker_ipc_decode(bad[i], (uint32_t)lens[i], &m), -1);
    assert_int_equal(worker_ipc_decode("\x92\x0a\x01", 3, &m), 0);
    assert_int_equal(worker_ipc_decode("\x92\x0a\x01\x00", 4, &m), -1);

    /* FAILED: details or stderr that are not clean UTF-8, or too long. */
    static const char *const texts[] = { "ok", "\xff", "a\0b", "\xc3" };
    static const size_t tlens[] = { 2, 1, 3, 1 };
    for (size_t i = 0; i < 4; i++) {
        for (int which = 0; which < 2; which++) {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_array(&pk, 10);
            msgpack_pack_int(&pk, WORKER_IPC_FAILED);
            msgpack_pack_int(&pk, 1);
            msgpack_pack_int(&pk, DV_CAT_HANDLER);
            msgpack_pack_false(&pk);
            msgpack_pack_str_with_body(&pk, "m", 1);
            msgpack_pack_int(&pk, 0);
            msgpack_pack_int(&pk, 1);
            msgpack_pack_int(&pk, 0);
            for (int k = 0; k < 2; k++) {
                if (k == which)
                    msgpack_pack_str_with_body(&pk, texts[i], tlens[i]);
                else
                    msgpack_pack_nil(&pk);
            }
            assert_int_equal(worker_ipc_decode(sb.data, (uint32_t)sb.size, &m),
                             i == 0 ? 0 : -1);
            msgpack_sbuffer_destroy(&sb);
        }
    }
    char *big = calloc(1, DV_DETAILS_MAX + 1);
    assert_non_null(big);
    memset(big, 'x', DV_DETAILS_MAX + 1);
    for (int over = 0; over < 2; over++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 10);
        msgpack_pack_int(&pk, WORKER_IPC_FAILED);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_int(&pk, DV_CAT_HANDLER);
        msgpack_pack_false(&pk);
        msgpack_pack_str_with_body(&pk, "m", 1);
        msgpack_pack_int(&pk, 0);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_int(&pk, 0);
        msgpack_pack_nil(&pk);
        msgpack_pack_str_with_body(&pk, big, DV_DETAILS_MAX + (size_t)over);
        assert_int_equal(worker_ipc_decode(sb.data, (uint32_t)sb.size, &m),
                         over ? -1 : 0);
        msgpack_sbuffer_destroy(&sb);
    }
    free(big);
}

static void
test_utf8(void **state)
{
    (void)state;
    assert_true(worker_utf8_valid("h\xc3\xa9llo", 6));
    assert_false(worker_utf8_valid("\xc3", 1));
    assert_false(worker_utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    /* "é" is 2 bytes: cutting at 2 must not split it */
    assert_int_equal(worker_utf8_cut("a\xc3\xa9", 3, 2), 1);
    assert_int_equal(worker_utf8_cut("abc", 3, 5), 3);
    /* keeping the end: never from inside a sequence */
    assert_int_equal(worker_utf8_tail("abc", 3, 5), 0);
    assert_int_equal(worker_utf8_tail("a\xc3\xa9"
                                      "b",
                                      4, 3),
                     1);
    assert_int_equal(worker_utf8_tail("a\xc3\xa9"
                                      "b",
                                      4, 2),
                     3);
    assert_int_equal(worker_utf8_tail("\xe2\x82\xacz", 4, 3), 3);
    char t[] = "ok \xc3\xa9 \xff\xc3 \xed\xa0\x80 end";
    size_t tl = sizeof t - 1;
    assert_int_equal(worker_utf8_repair(t, tl), 5);
    assert_string_equal(t, "ok \xc3\xa9 ?? ??? end");
    assert_true(worker_utf8_clean(t, tl));
    assert_false(worker_utf8_clean("a\0b", 3));
    assert_false(worker_utf8_clean("\xff", 1));
}

static void
test_config_json(void **state)
{
    (void)state;
    worker_config_t c;
    char err[300];
    worker_config_defaults(&c);
    const char *doc =
        "{\"broker\": \"tcp://a:1,tcp://b:2\", \"queues\": [\"x\", \"y\"],\n"
        " \"concurrency\": 4, \"prefetch\": 8, \"timeout\": 1.5,\n"
        " \"max_jobs_per_child\": 100,\n"
        " \"handlers\": {\"resize\": {\"exec\": \"convert -\"}}}";
    assert_int_equal(worker_config_load_json(&c, doc, strlen(doc), "f.json",
                                             err, sizeof err),
                     0);
    assert_int_equal(c.nendpoints, 2);
    assert_string_equal(c.endpoints[1], "tcp://b:2");
    assert_int_equal(c.nqueues, 2);
    assert_string_equal(c.queues[0], "x");
    assert_int_equal(c.concurrency, 4);
    assert_int_equal(c.prefetch, 8);
    assert_int_equal(c.timeout_ms, 1500);
    assert_int_equal(c.max_jobs_per_child, 100);
    assert_string_equal(worker_config_handler(&c, "resize", 6), "convert -");
    assert_null(worker_config_handler(&c, "resiz", 5));
    worker_config_clear(&c);

    /* Syntax errors name the line and column. */
    worker_config_defaults(&c);
    const char *broken = "{\n  \"concurrency\": 4,\n  oops\n}";
    assert_int_equal(worker_config_load_json(&c, broken, strlen(broken),
                                             "w.json", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "w.json:3:"));
    const char *unknown = "{\"concurency\": 4}";
    assert_int_equal(worker_config_load_json(&c, unknown, strlen(unknown),
                                             "w.json", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "concurency"));
    const char *badh = "{\"handlers\": {\"t\": \"cmd\"}}";
    assert_int_equal(worker_config_load_json(&c, badh, strlen(badh), "w.json",
                                             err, sizeof err),
                     -1);
    const char *badc = "{\"concurrency\": 0}";
    assert_int_equal(worker_config_load_json(&c, badc, strlen(badc), "w.json",
                                             err, sizeof err),
                     -1);
    worker_config_clear(&c);
}

static void
test_config_flags(void **state)
{
    (void)state;
    worker_config_t c;
    char err[300];
    worker_config_defaults(&c);
    char *argv[] = { "worker",          "--queues", "a,b",
                     "--concurrency=3", "--exec",   "t=echo hi=there",
                     "--timeout",       "2.5",      "--grace",
                     "250ms",           "--broker", "ipc:///tmp/x",
                     "--log-format",    "text",     NULL };
    int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
    assert_int_equal(worker_config_parse(&c, argc, argv, err, sizeof err), 0);
    assert_int_equal(c.nqueues, 2);
    assert_int_equal(c.concurrency, 3);
    assert_true(c.prefetch_adaptive);                  /* adapts by default, */
    assert_int_equal(c.prefetch, WORKER_PREFETCH_MAX); /* up to this */
    assert_string_equal(worker_config_handler(&c, "t", 1), "echo hi=there");
    assert_int_equal(c.timeout_ms, 2500);
    assert_int_equal(c.grace_ms, 250);
    assert_string_equal(c.endpoints[0], "ipc:///tmp/x");
    assert_int_equal(c.log_text, 1);
    worker_config_clear(&c);

    char *bad[][3] = {
        { "worker", "--concurrency", "0" },  { "worker", "--concurrency", "x" },
        { "worker", "--timeout", "-1" },     { "worker", "--exec", "noequals" },
        { "worker", "--exec", "=cmd" },      { "worker", "--bogus", "1" },
        { "worker", "--log-level", "loud" }, { "worker", "--queues", " , " },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        worker_config_defaults(&c);
        assert_int_equal(worker_config_parse(&c, 3, bad[i], err, sizeof err),
                         -1);
        worker_config_clear(&c);
    }
    worker_config_defaults(&c);
    char *help[] = { "worker", "--help", NULL };
    assert_int_equal(worker_config_parse(&c, 2, help, err, sizeof err), 1);
    char *missing[] = { "worker", "--queues", NULL };
    assert_int_equal(worker_config_parse(&c, 2, missing, err, sizeof err), -1);
    worker_config_clear(&c);
}

/* --curve-secret / --curve-server, the config keys and the environment:
 * flags beat the file, the file beats the environment. */
static void
test_config_curve(void **state)
{
    (void)state;
    worker_config_t c;
    char err[300];
    unsetenv("DROVER_CURVE_SECRET");
    unsetenv("DROVER_CURVE_SERVER");
    worker_config_defaults(&c);
    char *plain[] = { "worker", NULL };
    assert_int_equal(worker_config_parse(&c, 1, plain, err, sizeof err), 0);
    assert_null(c.curve_secret);
    assert_null(c.curve_server);
    worker_config_clear(&c);

    worker_config_defaults(&c);
    char *flags[] = { "worker", "--curve-secret", "/k/w.key_secret",
                      "--curve-server=/k/broker.key", NULL };
    assert_int_equal(worker_config_parse(&c, 4, flags, err, sizeof err), 0);
    assert_string_equal(c.curve_secret, "/k/w.key_secret");
    assert_string_equal(c.curve_server, "/k/broker.key");
    worker_config_clear(&c);

    const char *doc = "{\"curve_secret\": \"/f/w.key_secret\", "
                      "\"curve_server\": \"/f/broker.key\"}";
    worker_config_defaults(&c);
    assert_int_equal(worker_config_load_json(&c, doc, strlen(doc), "w.json",
                                             err, sizeof err),
                     0);
    assert_string_equal(c.curve_secret, "/f/w.key_secret");
    assert_string_equal(c.curve_server, "/f/broker.key");
    worker_config_clear(&c);
    const char *bad = "{\"curve_secret\": 7}";
    worker_config_defaults(&c);
    assert_int_equal(worker_config_load_json(&c, bad, strlen(bad), "w.json",
                                             err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "curve_secret"));
    worker_config_clear(&c);

    /* The environment fills what neither file nor flag gave. */
    setenv("DROVER_CURVE_SECRET", "/e/w.key_secret", 1);
    setenv("DROVER_CURVE_SERVER", "/e/broker.key", 1);
    worker_config_defaults(&c);
    char *one[] = { "worker", "--curve-server", "/k/broker.key", NULL };
    assert_int_equal(worker_config_parse(&c, 3, one, err, sizeof err), 0);
    assert_string_equal(c.curve_secret, "/e/w.key_secret");
    assert_string_equal(c.curve_server, "/k/broker.key");
    worker_config_clear(&c);
    unsetenv("DROVER_CURVE_SECRET");
    unsetenv("DROVER_CURVE_SERVER");

    /* --help names them. */
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    worker_config_usage(out);
    fclose(out);
    assert_non_null(strstr(text, "--curve-secret FILE"));
    assert_non_null(strstr(text, "--curve-server FILE"));
    assert_non_null(strstr(text, "curve_server"));
    free(text);
}

/* --health-file and health_file: a path, the flag beating the file; none
 * by default. */
static void
test_config_health_file(void **state)
{
    (void)state;
    worker_config_t c;
    char err[300];
    worker_config_defaults(&c);
    char *plain[] = { "worker", NULL };
    assert_int_equal(worker_config_parse(&c, 1, plain, err, sizeof err), 0);
    assert_null(c.health_file);
    worker_config_clear(&c);

    worker_config_defaults(&c);
    char *flag[] = { "worker", "--health-file", "/run/drover/health", NULL };
    assert_int_equal(worker_config_parse(&c, 3, flag, err, sizeof err), 0);
    assert_string_equal(c.health_file, "/run/drover/health");
    worker_config_clear(&c);

    const char *doc = "{\"health_file\": \"/f/health\"}";
    worker_config_defaults(&c);
    assert_int_equal(worker_config_load_json(&c, doc, strlen(doc), "w.json",
                                             err, sizeof err),
                     0);
    assert_string_equal(c.health_file, "/f/health");
    worker_config_clear(&c);
    const char *bad = "{\"health_file\": 1}";
    worker_config_defaults(&c);
    assert_int_equal(worker_config_load_json(&c, bad, strlen(bad), "w.json",
                                             err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "health_file"));
    worker_config_clear(&c);
}

/* The defaults worker_flags shows are the ones the worker has: each flag
 * with a .dflt, given that value, leaves the settings as they were; and
 * every flag has its help and value name. */
static void
test_config_flag_defaults(void **state)
{
    (void)state;
    unsetenv("DROVER_WORKER_ENDPOINT");
    char err[300];
    worker_config_t base, c;
    worker_config_defaults(&base);
    char *plain[] = { "worker", NULL };
    assert_int_equal(worker_config_parse(&base, 1, plain, err, sizeof err), 0);
    int ndflt = 0;
    for (const dv_flag_t *f = worker_flags; f->kind != DV_FLAG_END; f++) {
        assert_non_null(f->help);
        assert_non_null(f->arg);
        assert_int_equal(f->kind, DV_FLAG_FN);
        if (!f->dflt)
            continue;
        ndflt++;
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", f->name);
        char *argv[] = { "worker", flag, (char *)f->dflt, NULL };
        worker_config_defaults(&c);
        assert_int_equal(worker_config_parse(&c, 3, argv, err, sizeof err), 0);
        assert_string_equal(c.endpoints[0], base.endpoints[0]);
        assert_int_equal(c.nendpoints, base.nendpoints);
        assert_string_equal(c.queues[0], base.queues[0]);
        assert_int_equal(c.nqueues, base.nqueues);
        assert_true(c.kill_grace_ms == base.kill_grace_ms);
        assert_true(c.grace_ms == base.grace_ms);
        assert_true(c.heartbeat_ms == base.heartbeat_ms);
        assert_true(c.max_jobs_per_child == base.max_jobs_per_child);
        assert_true(c.max_rss_per_child == base.max_rss_per_child);
        assert_true(c.soft_timeout_ms == base.soft_timeout_ms);
        assert_int_equal(c.soft_timeout_pct, base.soft_timeout_pct);
        assert_int_equal(c.http_concurrency, base.http_concurrency);
        worker_config_clear(&c);
    }
    assert_true(ndflt >= 8);
    worker_config_clear(&base);

    /* A bad value names its flag, for the usage message. */
    const dv_flag_t *bad = NULL;
    char *argv[] = { "worker", "--grace", "soon", NULL };
    worker_config_defaults(&c);
    assert_int_equal(worker_config_parse_ex(&c, 3, argv, &bad, err, sizeof err),
                     -1);
    assert_non_null(bad);
    assert_string_equal(bad->name, "grace");
    worker_config_clear(&c);
}

#define S_ID1 "01890a5d-ac96-774b-bcce-b302099a8057"
#define S_ID2 "01890a5d-ac96-774b-bcce-b302099a8058"

static void
test_outbox_credit(void **state)
{
    (void)state;
    worker_outbox_t *ob = worker_outbox_new();
    assert_non_null(ob);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint32_t n;
    assert_int_equal(worker_outbox_encode(ob, &sb, &n), -1); /* nothing */
    worker_exec_t x1 = { dv_str(S_ID1), 1, dv_lease_make(3, 1) };
    worker_exec_t x2 = { dv_str(S_ID2), 2, dv_lease_make(3, 2) };
    worker_outbox_started(ob, x1, 1000);
    worker_outbox_succeeded(ob, x1, 1001, dv_strn("\xc0", 1));
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_HANDLER;
    f.message = dv_str("nope");
    worker_outbox_failed(ob, x2, 1002, &f);
    assert_int_equal(worker_outbox_credit(ob), 2);
    /* x1 started and ended before anything was sent: one item, "started"
     * folded into the outcome. */
    assert_int_equal(worker_outbox_size(ob), 2);
    assert_int_equal(worker_outbox_encode(ob, &sb, &n), 0);
    assert_int_equal(n, 3); /* the reports it covers, the folded start too */

    dv_msg_t m;
    char why[200];
    int rc = dv_msg_decode(sb.data, sb.size, &m, why, sizeof why);
    if (rc != DV_OK)
        fail_msg("decode: %s", why);
    assert_int_equal(m.type, DV_MSG_UPDATE);
    assert_int_equal(m.u.update.credit, 2);
    assert_int_equal(m.u.update.nitems, 2);
    assert_int_equal(m.u.update.items[0].kind, DV_UPD_SUCCEEDED);
    assert_true(m.u.update.items[0].started_ms == 1000);
    assert_true(m.u.update.items[0].ts_ms == 1001);
    assert_int_equal(m.u.update.items[1].kind, DV_UPD_FAILED);
    assert_true(m.u.update.items[1].started_ms == 0); /* none was queued */
    assert_true(dv_str_eq(m.u.update.items[1].failure.message, "nope"));
    assert_true(m.u.update.items[0].lease == x1.lease);
    assert_true(m.u.update.items[1].lease == x2.lease);
    assert_true(m.u.update.seq == 1);
    dv_msg_release(&m);

    worker_outbox_consume(ob, n);
    assert_int_equal(worker_outbox_size(ob), 0);
    assert_int_equal(worker_outbox_credit(ob), 0);
    assert_int_equal(worker_outbox_processed(ob), 2);
    assert_int_equal(worker_outbox_failures(ob), 1);
    /* The two outcomes wait for the broker's ack. */
    assert_int_equal(worker_outbox_unacked(ob), 2);

    /* A new session before the ack: they go again, in order, then a new
     * report after them; an ack of the first update does not cover the
     * resent ones. */
    worker_outbox_resend(ob);
    worker_outbox_succeeded(ob, x2, 1003, dv_strn("\x01", 1));
    assert_int_equal(worker_outbox_size(ob), 3);
    assert_int_equal(worker_outbox_unacked(ob), 0);
    assert_int_equal(worker_outbox_encode(ob, &sb, &n), 0);
    assert_int_equal(n, 3);
    rc = dv_msg_decode(sb.data, sb.size, &m, why, sizeof why);
    assert_int_equal(rc, DV_OK);
    assert_true(m.u.update.seq == 2);
    assert_int_equal(m.u.update.items[0].kind, DV_UPD_SUCCEEDED);
    assert_int_equal(m.u.update.items[1].kind, DV_UPD_FAILED);
    assert_true(dv_str_eq(m.u.update.items[1].failure.message, "nope"));
    assert_int_equal(m.u.update.items[2].result.len, 1);
    dv_msg_release(&m);
    worker_outbox_consume(ob, n);
    worker_outbox_ack(ob, 1);
    assert_int_equal(worker_outbox_unacked(ob), 3);
    worker_outbox_ack(ob, 2);
    assert_int_equal(worker_outbox_unacked(ob), 0);

    /* A failure's details and stderr go in the update, after its
     * message; too long, only the end; not UTF-8, repaired. */
    char *err = malloc(DV_DETAILS_MAX + 10);
    assert_non_null(err);
    memset(err, 'e', DV_DETAILS_MAX + 10);
    memcpy(err + DV_DETAILS_MAX + 10 - 4, "end\xff", 4);
    f.message = dv_str("ValueError: v");
    f.details = dv_str("Traceback:\n  line 1\nValueError: v\n");
    f.stderr_tail = dv_strn(err, DV_DETAILS_MAX + 10);
    f.exit_code = 1;
    assert_int_equal(worker_outbox_failed(ob, x1, 1004, &f), 0);
    free(err); /* copied */
    f.message = dv_str("bare");
    f.details = f.stderr_tail = dv_strn(NULL, 0);
    assert_int_equal(worker_outbox_failed(ob, x2, 1005, &f), 0);
    assert_int_equal(worker_outbox_encode(ob, &sb, &n), 0);
    assert_int_equal(n, 2);
    rc = dv_msg_decode(sb.data, sb.size, &m, why, sizeof why);
    if (rc != DV_OK)
        fail_msg("decode: %s", why);
    const dv_failure_t *g = &m.u.update.items[0].failure;
    assert_true(dv_str_eq(g->message, "ValueError: v"));
    assert_true(dv_str_eq(g->details, "Traceback:\n  line 1\nValueError: v\n"));
    assert_int_equal(g->stderr_tail.len, DV_DETAILS_MAX);
    assert_memory_equal(g->stderr_tail.ptr, "eeee", 4);
    assert_memory_equal(g->stderr_tail.ptr + DV_DETAILS_MAX - 4, "end?", 4);
    assert_int_equal(g->exit_code, 1);
    g = &m.u.update.items[1].failure;
    assert_true(dv_str_eq(g->message, "bare"));
    assert_null(g->details.ptr);
    assert_null(g->stderr_tail.ptr);
    dv_msg_release(&m);
    worker_outbox_consume(ob, n);
    worker_outbox_ack(ob, 3);
    assert_int_equal(worker_outbox_unacked(ob), 0);

    /* Draining: returned jobs grant nothing. */
    worker_outbox_stop_credit(ob);
    worker_outbox_returned(ob, x1);
    assert_int_equal(worker_outbox_credit(ob), 0);
    assert_int_equal(worker_outbox_size(ob), 1);
    msgpack_sbuffer_destroy(&sb);
    worker_outbox_destroy(&ob);
    assert_null(ob);
}

/* A start is folded into its outcome only while it is unsent and nothing
 * about the job came after it; a capacity that shrinks takes back credit
 * not sent yet, then withholds what outcomes would grant. */
static void
test_outbox_fold_and_withhold(void **state)
{
    (void)state;
    worker_outbox_t *ob = worker_outbox_new();
    assert_non_null(ob);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    uint32_t n;
    worker_exec_t x1 = { dv_str(S_ID1), 1, dv_lease_make(3, 1) };
    worker_exec_t x2 = { dv_str(S_ID2), 1, dv_lease_make(3, 2) };
    /* x1: progress after the start keeps both (order); x2: its start
     * already went out, so the outcome carries none. */
    worker_outbox_started(ob, x1, 10);
    worker_outbox_progress(ob, x1, 1, 2, dv_str("half"));
    worker_outbox_started(ob, x2, 11);
    assert_int_equal(worker_outbox_encode(ob, &sb, &n), 0);
    worker_outbox_consume(ob, n);
    worker_outbox_succeeded(ob, x1, 20, dv_strn("\xc0", 1));
    worker_outbox_succeeded(ob, x2, 21, dv_strn("\xc0", 1));
    assert_int_equal(worker_outbox_encode(ob, &sb, &n), 0);
    dv_msg_t m;
    char why[200];
    assert_int_equal(dv_msg_decode(sb.data, sb.size, &m, why, sizeof why),
                     DV_OK);
    assert_int_equal(m.u.update.nitems, 2);
    assert_true(m.u.update.items[0].started_ms == 0);
    assert_true(m.u.update.items[1].started_ms == 0);
    assert_int_equal(m.u.update.credit, 2);
    dv_msg_release(&m);
    worker_outbox_consume(ob, n);

    /* Withhold 3 with 1 owed: the owed one is cancelled, the next two
     * outcomes grant nothing, the third does; a grant pays debt first. */
    worker_outbox_succeeded(ob, x1, 30, dv_strn("\xc0", 1));
    assert_int_equal(worker_outbox_credit(ob), 1);
    worker_outbox_withhold(ob, 3);
    assert_int_equal(worker_outbox_credit(ob), 0);
    worker_outbox_succeeded(ob, x2, 31, dv_strn("\xc0", 1));
    assert_int_equal(worker_outbox_credit(ob), 0);
    worker_outbox_grant(ob, 3);
    assert_int_equal(worker_outbox_credit(ob), 2);
    worker_outbox_succeeded(ob, x1, 32, dv_strn("\xc0", 1));
    assert_int_equal(worker_outbox_credit(ob), 3);
    /* A HELLO states the whole truth: debt is forgotten with credit. */
    worker_outbox_withhold(ob, 5);
    worker_outbox_reset_credit(ob);
    worker_outbox_succeeded(ob, x2, 33, dv_strn("\xc0", 1));
    assert_int_equal(worker_outbox_credit(ob), 1);
    msgpack_sbuffer_destroy(&sb);
    worker_outbox_destroy(&ob);
}

/* ---- job table ----------------------------------------------------------- */

/* Out of memory on demand (tests/fixtures/oom_inject): every allocation
 * fails while it is on, so the outbox's reports fail. */

typedef struct {
    worker_job_t base;
    int cleared;
} s_test_job_t;

static void
s_test_clear(worker_job_t *job, bool destroying)
{
    (void)destroying;
    ((s_test_job_t *)job)->cleared++;
}

static dv_job_t
s_job(const char *id, int32_t attempt)
{
    dv_job_t j;
    memset(&j, 0, sizeof j);
    j.id = dv_str(id);
    j.attempt = attempt;
    return j;
}

static void
test_jobs_table(void **state)
{
    (void)state;
    worker_outbox_t *ob = worker_outbox_new();
    worker_jobs_t *t =
        worker_jobs_new(sizeof(s_test_job_t), 2, ob, s_test_clear);
    assert_non_null(t);
    int a, b, c;
    dv_job_t j1 = s_job(S_ID1, 1), j2 = s_job(S_ID2, 1);
    dv_job_t j3 = s_job("01890a5d-ac96-774b-bcce-b302099a8059", 1);
    assert_int_equal(worker_jobs_admit(t, &j1, false, &a), WORKER_JOBS_TAKEN);
    assert_int_equal(worker_jobs_admit(t, &j2, false, &b), WORKER_JOBS_TAKEN);
    /* past the capacity it made room for: it grows */
    assert_int_equal(worker_jobs_admit(t, &j3, false, &c), WORKER_JOBS_TAKEN);
    assert_int_equal(worker_jobs_held_count(t), 3);
    assert_int_equal(worker_jobs_find(t, dv_str(S_ID2)), b);
    /* delivered again under a new lease: the copy held goes on under it */
    j1.attempt = 3;
    j1.lease = dv_lease_make(2, 9);
    assert_int_equal(worker_jobs_admit(t, &j1, false, &a), 1);
    assert_int_equal(worker_jobs_at(t, a)->attempt, 3);
    assert_true(worker_jobs_at(t, a)->lease == j1.lease);
    /* a revocation names the copy by its lease */
    assert_int_equal(worker_jobs_revoked(t, dv_str(S_ID1), j1.lease), a);
    assert_int_equal(worker_jobs_revoked(t, dv_str(S_ID1), 0), a);
    assert_int_equal(worker_jobs_revoked(t, dv_str(S_ID1), 77), -1);
    dv_job_t bad = s_job("", 1);
    assert_int_equal(worker_jobs_admit(t, &bad, false, &a), -1);

    worker_jobs_push(t, a, false);
    worker_jobs_push(t, b, false);
    worker_jobs_push(t, c, true);
    assert_int_equal(worker_jobs_queued(t), 3);
    worker_jobs_unlink(t, a);
    assert_int_equal(worker_jobs_pop(t), c);
    assert_int_equal(worker_jobs_pop(t), b);
    assert_int_equal(worker_jobs_pop(t), -1);

    /* An outcome the outbox cannot take stays with the job, held. */
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_HANDLER;
    f.message = dv_str("nope");
    oom_inject(1, true);
    assert_int_equal(worker_jobs_failed(t, b, 1000, &f, false), DV_ENOMEM);
    assert_int_equal(((s_test_job_t *)worker_jobs_at(t, b))->cleared, 0);
    assert_int_equal(worker_jobs_failed(t, b, 1000, &f, true), 0);
    worker_jobs_returned(t, c);
    assert_true(oom_injected());
    assert_int_equal(worker_outbox_size(ob), 0);
    assert_int_equal(worker_jobs_unreported(t), 2);
    assert_int_equal(worker_jobs_held_count(t), 3);
    dv_held_t held[4];
    assert_int_equal(worker_jobs_held(t, held, 4), 3);
    assert_int_equal(worker_jobs_retry(t), 0);
    assert_int_equal(worker_outbox_size(ob), 2);
    assert_int_equal(worker_jobs_held_count(t), 1);
    assert_int_equal(worker_jobs_find(t, dv_str(S_ID2)), -1);

    /* Draining: a new job is handed back as returned. */
    dv_job_t j4 = s_job("01890a5d-ac96-774b-bcce-b302099a8060", 1);
    assert_int_equal(worker_jobs_admit(t, &j4, true, &c), 0);
    assert_int_equal(worker_outbox_size(ob), 3);
    worker_jobs_destroy(&t);
    assert_null(t);
    worker_outbox_destroy(&ob);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_progress_line),
        cmocka_unit_test(test_last_line),
        cmocka_unit_test(test_exec_result),
        cmocka_unit_test(test_exec_hints),
        cmocka_unit_test(test_exec_details),
        cmocka_unit_test(test_ipc_roundtrip),
        cmocka_unit_test(test_ipc_rejects),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_config_json),
        cmocka_unit_test(test_config_flags),
        cmocka_unit_test(test_config_curve),
        cmocka_unit_test(test_config_health_file),
        cmocka_unit_test(test_config_flag_defaults),
        cmocka_unit_test(test_outbox_credit),
        cmocka_unit_test(test_outbox_fold_and_withhold),
        cmocka_unit_test(test_jobs_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
