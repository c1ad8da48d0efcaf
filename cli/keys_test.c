/* cli_keys_test - the text of `drover keys` (cli/keys_view.c) from answers
 * built as the broker sends them: msgpack, made into JSON the way libdrover
 * hands a ctrl answer's body to the CLI; and the command itself against a
 * scripted broker (tests/fixtures/scripted_broker.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "dv_json.h"
#include "cli_out.h"
#include "keys_view.h"
#include "scripted_broker.h"

/* ---- building an answer ------------------------------------------------ */

typedef struct {
    const char *id, *hash, *state;
    int64_t rpm, tpm, window, limit, learned, requests, tokens, in_flight, ok,
        limited, errors, cool, disabled;
    double share;
    const char *workers[4]; /* names; NULL ends */
    const char *conflict;   /* NULL: absent */
} s_key_t;

static void
s_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void
s_kint(msgpack_packer *pk, const char *k, int64_t v)
{
    s_str(pk, k);
    msgpack_pack_int64(pk, v);
}

static void
s_pack_key(msgpack_packer *pk, const s_key_t *k)
{
    msgpack_pack_map(pk, 20 + (k->conflict != NULL));
    s_str(pk, "id");
    s_str(pk, k->id);
    s_str(pk, "hash");
    s_str(pk, k->hash);
    s_str(pk, "state");
    s_str(pk, k->state);
    s_kint(pk, "rpm", k->rpm);
    s_kint(pk, "tpm", k->tpm);
    s_kint(pk, "window", k->window);
    s_kint(pk, "limit", k->limit);
    s_kint(pk, "learned", k->learned);
    s_kint(pk, "requests", k->requests);
    s_kint(pk, "tokens", k->tokens);
    s_kint(pk, "in_flight", k->in_flight);
    s_kint(pk, "ok", k->ok);
    s_kint(pk, "limited", k->limited);
    s_kint(pk, "errors", k->errors);
    s_kint(pk, "cool", k->cool);
    s_kint(pk, "disabled", k->disabled);
    s_str(pk, "share");
    msgpack_pack_double(pk, k->share);
    s_str(pk, "workers");
    size_t n = 0;
    while (n < 4 && k->workers[n])
        n++;
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_map(pk, 2);
        s_str(pk, "name");
        s_str(pk, k->workers[i]);
        s_kint(pk, "requests", 10 * (int64_t)(i + 1));
    }
    /* Two more members the CLI does not show, as a newer broker may send
     * (unknown members are left alone). */
    s_kint(pk, "probe_at", 0);
    s_str(pk, "note");
    s_str(pk, "-");
    if (k->conflict) {
        s_str(pk, "conflict");
        s_str(pk, k->conflict);
    }
}

/* The answer {"now", "keys": [...]} as the broker sends it. */
static void
s_pack_body(msgpack_sbuffer *sb, const s_key_t *keys, size_t n)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    s_kint(&pk, "now", 1796400000000LL);
    s_str(&pk, "keys");
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++)
        s_pack_key(&pk, &keys[i]);
}

/* The same as libdrover gives it to the CLI. */
static json_t *
s_body(const s_key_t *keys, size_t n)
{
    msgpack_sbuffer sb;
    s_pack_body(&sb, keys, n);
    char *text = dv_msgpack_to_json_text(sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    assert_non_null(text);
    json_t *body = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(body);
    return body;
}

static const s_key_t s_fleet[] = {
    { .id = "key-1",
      .hash = "3fa2c0d1",
      .state = "ok",
      .rpm = 600,
      .window = 60000,
      .limit = 600,
      .requests = 412,
      .tokens = 81200,
      .ok = 9120,
      .share = 0.52,
      .workers = { "worker-alpha", "worker-bravo", "worker-charlie" } },
    { .id = "key-2",
      .hash = "9b1e4420",
      .state = "cooling",
      .rpm = 600,
      .window = 60000,
      .limit = 38,
      .learned = 38,
      .requests = 38,
      .tokens = 7100,
      .limited = 14,
      .cool = 12300,
      .share = 0.048,
      .workers = { "worker-alpha", "worker-bravo" } },
    { .id = "key-3",
      .hash = "1c2d3e4f",
      .state = "disabled",
      .rpm = 600,
      .window = 60000,
      .limit = 600,
      .errors = 2,
      .disabled = 401,
      .workers = { "worker-alpha" } },
    { .id = "a-very-long-key-identifier-for-azure-west",
      .hash = "5e6f7a8b",
      .state = "unproven",
      .rpm = 60,
      .tpm = 90000,
      .window = 60000,
      .limit = 60,
      .requests = 1,
      .tokens = 300,
      .share = 0.001,
      .workers = { "worker-charlie", "worker-delta" },
      .conflict = "worker-charlie says rpm 60, worker-delta says rpm 600 "
                  "(the broker uses the lower)" },
};
#define S_NFLEET (sizeof s_fleet / sizeof s_fleet[0])

/* ---- rendering into a string ------------------------------------------ */

typedef struct {
    char *buf;
    size_t len;
} s_out_t;

static char *
s_table(const json_t *body, int width)
{
    s_out_t o = { 0 };
    FILE *f = open_memstream(&o.buf, &o.len);
    assert_non_null(f);
    keys_view_table(f, body, width, false);
    fclose(f);
    return o.buf;
}

/* The line that starts with prefix (a copy, without its newline). */
static char *
s_line(const char *text, const char *prefix)
{
    const char *p = text;
    size_t n = strlen(prefix);
    while (p && *p) {
        if (!strncmp(p, prefix, n)) {
            size_t len = strcspn(p, "\n");
            char *line = malloc(len + 1);
            memcpy(line, p, len);
            line[len] = '\0';
            return line;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    fail_msg("no line starting '%s' in:\n%s", prefix, text);
    return NULL;
}

static void
s_ends(const char *line, const char *suffix)
{
    size_t a = strlen(line), b = strlen(suffix);
    if (a < b || strcmp(line + a - b, suffix))
        fail_msg("'%s' does not end with '%s'", line, suffix);
}

/* ---- tests ------------------------------------------------------------- */

static void
test_keys_header(void **state)
{
    (void)state;
    json_t *body = s_body(s_fleet, S_NFLEET);
    char *t = s_table(body, 200);
    char *head = s_line(t, "KEY");
    const char *cols[] = { "HASH",  "STATE", "LIMIT",  "REQS",   "TOKENS",
                           "SHARE", "429s",  "ERRORS", "WORKERS" };
    const char *at = head;
    for (size_t i = 0; i < sizeof cols / sizeof *cols; i++) {
        const char *p = strstr(at, cols[i]);
        if (!p)
            fail_msg("no %s after the previous column in '%s'", cols[i], head);
        at = p;
    }
    assert_non_null(strstr(t, "REQS, TOKENS, SHARE: the last window"));
    free(head);
    free(t);
    json_decref(body);
}

static void
test_keys_learned(void **state)
{
    (void)state;
    json_t *body = s_body(s_fleet, S_NFLEET);
    char *t = s_table(body, 200);
    char *k2 = s_line(t, "key-2 ");
    assert_non_null(strstr(k2, " 38/60s learned (rpm 600) "));
    assert_non_null(strstr(k2, " 14 ")); /* its 429s */
    assert_non_null(strstr(k2, " 5% "));
    /* A key at its configured rpm is not marked. */
    char *k1 = s_line(t, "key-1 ");
    assert_non_null(strstr(k1, " 600/60s "));
    assert_null(strstr(k1, "learned"));
    assert_non_null(strstr(k1, " 412 "));
    assert_non_null(strstr(k1, " 81,200 "));
    assert_non_null(strstr(k1, " 52% "));
    /* Tokens per window next to the request limit. */
    char *k4 = s_line(t, "a-very-long");
    assert_non_null(strstr(k4, " 60/60s, tpm 90,000 "));
    assert_non_null(strstr(k4, " <1% "));
    free(k1);
    free(k2);
    free(k4);
    free(t);
    json_decref(body);
}

static void
test_keys_cooling_disabled(void **state)
{
    (void)state;
    json_t *body = s_body(s_fleet, S_NFLEET);
    char *t = s_table(body, 200);
    char *k2 = s_line(t, "key-2 ");
    assert_non_null(strstr(k2, " 9b1e4420  cooling 12.3s "));
    char *k3 = s_line(t, "key-3 ");
    assert_non_null(strstr(k3, " 1c2d3e4f  disabled 401 "));
    assert_non_null(strstr(k3, " 2  1 worker-alpha"));
    char *k4 = s_line(t, "a-very-long");
    assert_non_null(strstr(k4, " unproven "));
    free(k2);
    free(k3);
    free(k4);
    free(t);
    json_decref(body);
}

static void
test_keys_conflict(void **state)
{
    (void)state;
    json_t *body = s_body(s_fleet, S_NFLEET);
    char *t = s_table(body, 200);
    char *c = s_line(t, "conflict ");
    assert_string_equal(c,
                        "conflict a-very-long-key-ide\xe2\x80\xa6 (5e6f7a8b): "
                        "worker-charlie says rpm 60, worker-delta says "
                        "rpm 600 (the broker uses the lower)");
    /* One conflict line: the keys without "conflict" have none. */
    assert_null(strstr(strstr(t, "conflict ") + 1, "conflict "));
    free(c);
    free(t);
    /* Narrow: wrapped between words, never inside one. */
    t = s_table(body, 40);
    c = s_line(t, "conflict ");
    assert_string_equal(c,
                        "conflict a-very-long-key-ide\xe2\x80\xa6 (5e6f7a8b):");
    assert_non_null(strstr(t, "(5e6f7a8b):\n  worker-charlie says rpm 60,\n"
                              "  worker-delta says rpm 600 (the broker\n"
                              "  uses the lower)\n"));
    free(c);
    free(t);
    json_decref(body);
}

static void
test_keys_cut_with_ellipsis(void **state)
{
    (void)state;
    json_t *body = s_body(s_fleet, S_NFLEET);
    /* A long id: its first 19 characters and "…", 20 columns. */
    char *t = s_table(body, 200);
    assert_null(strstr(t, "a-very-long-key-identifier-for-azure-west"));
    char *k4 = s_line(t, "a-very-long-key-ide\xe2\x80\xa6  5e6f7a8b ");
    free(k4);
    /* Wide: every worker's name. */
    char *k1 = s_line(t, "key-1 ");
    s_ends(k1, "  3 worker-alpha,worker-bravo,worker-charlie");
    free(k1);
    free(t);
    /* Narrower: whole names that fit, then how many were left out. */
    t = s_table(body, 130);
    k1 = s_line(t, "key-1 ");
    s_ends(k1, "  3 worker-alpha,+2");
    assert_true(strlen(k1) <= 130);
    char *k3 = s_line(t, "key-3 ");
    s_ends(k3, "  1 worker-alpha");
    free(k1);
    free(k3);
    free(t);
    /* No room: the count alone, no name cut. */
    t = s_table(body, 80);
    k1 = s_line(t, "key-1 ");
    s_ends(k1, "  3");
    assert_null(strstr(k1, "worker-"));
    free(k1);
    free(t);
    json_decref(body);
}

static void
test_keys_escapes_and_empty(void **state)
{
    (void)state;
    s_key_t k = s_fleet[0];
    k.id = "key-\x1b[31m";
    json_t *body = s_body(&k, 1);
    char *t = s_table(body, 200);
    assert_null(strchr(t, '\x1b'));
    char *line = s_line(t, "key-?[31m ");
    free(line);
    free(t);
    json_decref(body);
    body = s_body(NULL, 0);
    t = s_table(body, 80);
    assert_non_null(strstr(t, "no API keys known to the broker"));
    free(t);
    json_decref(body);
}

static void
test_keys_enabled_line(void **state)
{
    (void)state;
    json_t *body = json_pack("{s:s, s:s, s:s}", "id", "key-2", "hash",
                             "3fa2c0d1", "was", "disabled");
    s_out_t o = { 0 };
    FILE *f = open_memstream(&o.buf, &o.len);
    keys_view_enabled(f, body, "3fa2c0d1");
    fclose(f);
    assert_string_equal(o.buf, "key-2 (3fa2c0d1) enabled (was disabled)\n");
    free(o.buf);
    json_decref(body);
    /* An answer without a body: the key as asked. */
    body = json_object();
    f = open_memstream(&o.buf, &o.len);
    keys_view_enabled(f, body, "key-9");
    fclose(f);
    assert_string_equal(o.buf, "key-9 enabled\n");
    free(o.buf);
    json_decref(body);
}

static void
test_keys_formats(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(keys_view_window(60000, b, sizeof b), "60s");
    assert_string_equal(keys_view_window(0, b, sizeof b), "60s");
    assert_string_equal(keys_view_window(1500, b, sizeof b), "1.5s");
    assert_string_equal(keys_view_window(300000, b, sizeof b), "5m");
    assert_string_equal(keys_view_window(3600000, b, sizeof b), "1h");
    assert_string_equal(keys_view_window(86400000, b, sizeof b), "24h");
    assert_string_equal(cli_dur(850), "850ms");
    assert_string_equal(cli_dur(12300), "12.3s");
    assert_string_equal(cli_dur(245000), "4m05s");
    assert_string_equal(cli_dur(7500000), "2h05m");
    assert_string_equal(cli_num(1234567), "1,234,567");
    assert_string_equal(cli_num(999), "999");
    assert_string_equal(cli_num(-1000), "-1,000");
}

/* ---- the command against a scripted broker ----------------------------- */

/* Runs `drover ARGS` (DROVER_BIN), stdout and stderr into out; returns its
 * exit status. */
static int
s_drover(char *out, size_t size, const char *args)
{
    const char *bin = getenv("DROVER_BIN");
    assert_non_null(bin);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void
test_keys_command(void **state)
{
    (void)state;
    unsetenv("DROVER_CURVE_SECRET");
    unsetenv("DROVER_CURVE_SERVER");
    unsetenv("DROVER_COLLECTOR_CURVE_SERVER");
    msgpack_sbuffer sb;
    s_pack_body(&sb, s_fleet, S_NFLEET);
    fake_t *f = fake_start(FAKE_NORMAL);
    f->keys_body = sb.data;
    f->keys_body_len = sb.size;
    fake_go(f);
    char out[16384], args[512];
    snprintf(args, sizeof args, "keys --broker %s", f->endpoint);
    assert_int_equal(s_drover(out, sizeof out, args), 0);
    assert_non_null(strstr(out, " 38/60s learned (rpm 600) "));
    assert_non_null(strstr(out, "\nconflict a-very-long-key-ide\xe2\x80\xa6 "));
    assert_string_equal(f->last_verb, "keys");
    snprintf(args, sizeof args, "keys --json --broker %s", f->endpoint);
    assert_int_equal(s_drover(out, sizeof out, args), 0);
    /* One object, the broker's answer as it is. */
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_array_size(json_object_get(j, "keys")), S_NFLEET);
    json_t *want = s_body(s_fleet, S_NFLEET);
    assert_true(json_equal(j, want));
    json_decref(want);
    json_decref(j);
    /* Usage. */
    snprintf(args, sizeof args, "keys extra --broker %s", f->endpoint);
    assert_int_equal(s_drover(out, sizeof out, args), 2);
    assert_int_equal(s_drover(out, sizeof out, "keys enable"), 2);
    assert_non_null(strstr(out, "drover keys: keys enable needs a KEY"));
    assert_int_equal(s_drover(out, sizeof out, "keys enable --help"), 0);
    assert_non_null(strstr(out, "usage: drover keys [OPTIONS] [enable KEY]"));
    fake_stop(&f);
    msgpack_sbuffer_destroy(&sb);

    /* A broker without the verb: the collector's view, here unreachable. */
    f = fake_start(FAKE_NORMAL);
    fake_go(f);
    snprintf(args, sizeof args,
             "keys --broker %s --collector ipc:///nonexistent/drover-q",
             f->endpoint);
    assert_int_equal(s_drover(out, sizeof out, args), 3);
    assert_non_null(strstr(out, "the workers' own view"));
    assert_non_null(strstr(out, "cannot reach the collector"));
    fake_stop(&f);

    /* No broker answers. */
    f = fake_start(FAKE_SILENT);
    fake_go(f);
    snprintf(args, sizeof args, "keys --broker %s", f->endpoint);
    assert_int_equal(s_drover(out, sizeof out, args), 3);
    fake_stop(&f);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_header),
        cmocka_unit_test(test_keys_learned),
        cmocka_unit_test(test_keys_cooling_disabled),
        cmocka_unit_test(test_keys_conflict),
        cmocka_unit_test(test_keys_cut_with_ellipsis),
        cmocka_unit_test(test_keys_escapes_and_empty),
        cmocka_unit_test(test_keys_enabled_line),
        cmocka_unit_test(test_keys_formats),
        cmocka_unit_test(test_keys_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
