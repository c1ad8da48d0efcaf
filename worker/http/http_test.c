/* http_test - unit tests for the http handler's pure parts: the key pool
 * (round robin, rate window, cooldowns, disabling, ids instead of keys),
 * the circuit breaker, request templates, JSON pointers and the "http"
 * settings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "breaker.h"
#include "http_config.h"
#include "http_template.h"
#include "keypool.h"
#include "worker_config.h"

static const char *const s_keys3[] = { "sk-alpha-0123456789",
                                       "sk-bravo-0123456789",
                                       "sk-charlie-0123456789" };

/* ---- key pool ----------------------------------------------------------- */

static void
test_short_hash(void **state)
{
    (void)state;
    char h[9];
    keypool_short_hash("", 0, h);
    assert_string_equal(h, "e3b0c442");
    keypool_short_hash("abc", 3, h);
    assert_string_equal(h, "ba7816bf");
    const char *two =
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    keypool_short_hash(two, strlen(two), h);
    assert_string_equal(h, "248d6a61");
    /* 1,000 bytes: many blocks and a tail. */
    char big[1000];
    memset(big, 'a', sizeof big);
    keypool_short_hash(big, sizeof big, h);
    assert_string_equal(h, "41edece4");
}

static void
test_keypool_round_robin(void **state)
{
    (void)state;
    keypool_t *p = keypool_new(s_keys3, 3, 0);
    assert_non_null(p);
    assert_int_equal(keypool_size(p), 3);
    assert_string_equal(keypool_id(p, 0), "key-1");
    assert_string_equal(keypool_id(p, 2), "key-3");
    char h[9];
    keypool_short_hash(s_keys3[1], strlen(s_keys3[1]), h);
    assert_string_equal(keypool_hash(p, 1), h);
    assert_string_equal(keypool_secret(p, 1), s_keys3[1]);
    int slot;
    int64_t ready;
    bool cooling;
    /* Keys not yet known to work carry one request at a time. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(keypool_acquire(p, 1000, &slot, &ready, &cooling), i);
    assert_int_equal(keypool_acquire(p, 1000, &slot, &ready, &cooling), -1);
    assert_int_equal(ready, KEYPOOL_AFTER_FINISH);
    assert_false(cooling);
    keypool_finish(p, 1, 0, 1000);
    assert_int_equal(keypool_acquire(p, 1000, &slot, &ready, &cooling), 1);
    for (int i = 0; i < 3; i++) {
        keypool_finish(p, i, 0, 1000);
        keypool_ok(p, i);
    }
    /* The turn goes on from the key after the last one used (key-2). */
    for (int i = 0; i < 7; i++)
        assert_int_equal(keypool_acquire(p, 1000, &slot, &ready, &cooling),
                         (i + 2) % 3);
    /* A cooling key is skipped, the others keep their turns. */
    keypool_rate_limited(p, 1, 1000, 5000);
    int seen[3] = { 0 };
    for (int i = 0; i < 6; i++)
        seen[keypool_acquire(p, 2000, &slot, &ready, &cooling)]++;
    assert_int_equal(seen[0], 3);
    assert_int_equal(seen[1], 0);
    assert_int_equal(seen[2], 3);
    keypool_stats_t st;
    keypool_stats(p, 0, 2000, &st);
    assert_int_equal(st.requests, 1 + 2 + 3);
    assert_int_equal(st.ok, 1);
    assert_int_equal(st.tokens, -1);
    keypool_destroy(&p);
    assert_null(p);

    /* No keys: one key without a secret. */
    p = keypool_new(NULL, 0, 0);
    assert_int_equal(keypool_size(p), 1);
    assert_null(keypool_secret(p, 0));
    assert_string_equal(keypool_id(p, 0), "none");
    assert_int_equal(keypool_acquire(p, 0, &slot, &ready, &cooling), 0);
    keypool_destroy(&p);
}

static void
test_keypool_window(void **state)
{
    (void)state;
    keypool_t *p = keypool_new(s_keys3, 1, 3);
    int slot[4];
    int64_t ready;
    bool cooling;
    keypool_ok(p, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(keypool_acquire(p, 0, &slot[i], &ready, &cooling), 0);
    /* Out of requests with all three in flight: it depends on them. */
    assert_int_equal(keypool_acquire(p, 5, &slot[3], &ready, &cooling), -1);
    assert_int_equal(ready, KEYPOOL_AFTER_FINISH);
    assert_false(cooling);
    keypool_finish(p, 0, slot[0], 100);
    keypool_finish(p, 0, slot[1], 200);
    keypool_finish(p, 0, slot[2], 300);
    keypool_stats_t st;
    keypool_stats(p, 0, 1000, &st);
    assert_int_equal(st.tokens, 0);
    /* The window runs from each request's end. */
    assert_int_equal(keypool_acquire(p, 1000, &slot[3], &ready, &cooling), -1);
    assert_int_equal(ready, 100 + KEYPOOL_WINDOW_MS);
    assert_int_equal(keypool_acquire(p, 100 + KEYPOOL_WINDOW_MS - 1, &slot[3],
                                     &ready, &cooling),
                     -1);
    assert_int_equal(
        keypool_acquire(p, 100 + KEYPOOL_WINDOW_MS, &slot[3], &ready, &cooling),
        0);
    /* A request that was never sent gives its slot back. */
    keypool_unacquire(p, 0, slot[3]);
    assert_int_equal(
        keypool_acquire(p, 100 + KEYPOOL_WINDOW_MS, &slot[3], &ready, &cooling),
        0);
    keypool_stats(p, 0, 100 + KEYPOOL_WINDOW_MS, &st);
    assert_int_equal(st.requests, 4);
    char text[300];
    keypool_explain(p, 100 + KEYPOOL_WINDOW_MS, text, sizeof text);
    assert_non_null(strstr(text, "key-1"));
    assert_null(strstr(text, s_keys3[0]));
    keypool_destroy(&p);
}

/* Whatever the latencies, no 60 s window at the server ever sees more than
 * rpm requests of a key: each request reaches the server at some moment
 * between its start and its end. */
static void
test_keypool_window_property(void **state)
{
    (void)state;
    enum { RPM = 7, N = 400 };
    keypool_t *p = keypool_new(s_keys3, 2, RPM);
    int64_t arrive[2][N];
    int narr[2] = { 0, 0 };
    struct {
        int key, slot;
        int64_t end, arrival;
    } fl[64];
    int nfl = 0;
    unsigned seed = 12345;
    int64_t now = 0;
    keypool_ok(p, 0);
    keypool_ok(p, 1);
    for (int sent = 0; sent < N;) {
        /* End what is due; start what may start; advance the clock. */
        for (int i = 0; i < nfl;) {
            if (fl[i].end <= now) {
                arrive[fl[i].key][narr[fl[i].key]++] = fl[i].arrival;
                keypool_finish(p, fl[i].key, fl[i].slot, fl[i].end);
                fl[i] = fl[--nfl];
            } else {
                i++;
            }
        }
        int slot;
        int64_t ready;
        bool cooling;
        int k;
        while (nfl < 64 && sent < N &&
               (k = keypool_acquire(p, now, &slot, &ready, &cooling)) >= 0) {
            seed = seed * 1103515245u + 12345u;
            int64_t lat = 1 + (seed >> 8) % 20000;
            seed = seed * 1103515245u + 12345u;
            fl[nfl].key = k;
            fl[nfl].slot = slot;
            fl[nfl].end = now + lat;
            fl[nfl].arrival = now + (int64_t)((seed >> 8) % (uint64_t)lat);
            nfl++;
            sent++;
        }
        now += 97;
    }
    for (int k = 0; k < 2; k++) {
        /* Sort the arrivals, then slide a window over them. */
        for (int i = 1; i < narr[k]; i++)
            for (int j = i; j > 0 && arrive[k][j - 1] > arrive[k][j]; j--) {
                int64_t t = arrive[k][j];
                arrive[k][j] = arrive[k][j - 1];
                arrive[k][j - 1] = t;
            }
        for (int i = 0; i + RPM < narr[k]; i++)
            assert_true(arrive[k][i + RPM] - arrive[k][i] >= KEYPOOL_WINDOW_MS);
    }
    assert_true(narr[0] + narr[1] > N - 64);
    keypool_destroy(&p);
}

static void
test_keypool_cooldown(void **state)
{
    (void)state;
    keypool_t *p = keypool_new(s_keys3, 2, 0);
    int slot;
    int64_t ready;
    bool cooling;
    /* Retry-After is honoured as given. */
    assert_int_equal(keypool_rate_limited(p, 0, 1000, 2500), 2500);
    assert_int_equal(keypool_state(p, 0, 3499), KEYPOOL_COOLING);
    assert_int_equal(keypool_state(p, 0, 3500), KEYPOOL_OK);
    /* A shorter Retry-After does not cut a running cooldown. */
    assert_int_equal(keypool_rate_limited(p, 0, 1000, 100), 2500);
    /* Without one: 1 s, doubling per consecutive 429, at most 60 s. */
    assert_int_equal(keypool_rate_limited(p, 1, 0, -1), 1000);
    assert_int_equal(keypool_rate_limited(p, 1, 10000, -1), 2000);
    assert_int_equal(keypool_rate_limited(p, 1, 20000, -1), 4000);
    for (int i = 0; i < 10; i++)
        keypool_rate_limited(p, 1, 100000 + i * 100000, -1);
    assert_int_equal(keypool_rate_limited(p, 1, 2000000, -1),
                     KEYPOOL_BACKOFF_MAX_MS);
    /* A 2xx ends the run. */
    keypool_ok(p, 1);
    assert_int_equal(keypool_rate_limited(p, 1, 3000000, -1), 1000);
    /* Both cooling: nothing to acquire, ready at the earliest end. */
    keypool_rate_limited(p, 0, 3000000, 4000);
    assert_int_equal(keypool_acquire(p, 3000100, &slot, &ready, &cooling), -1);
    assert_true(cooling);
    assert_int_equal(ready, 3001000);
    char text[400];
    keypool_explain(p, 3000100, text, sizeof text);
    assert_non_null(strstr(text, "key-1 cools down for 3.9 s"));
    assert_non_null(strstr(text, "key-2 cools down for 0.9 s"));
    assert_null(strstr(text, "sk-"));
    keypool_stats_t st;
    keypool_stats(p, 0, 3000100, &st);
    assert_int_equal(st.state, KEYPOOL_COOLING);
    assert_int_equal(st.cooldown_until, 3004000);
    assert_int_equal(st.rate_limited, 3);
    assert_int_equal(keypool_acquire(p, 3001000, &slot, &ready, &cooling), 1);
    keypool_destroy(&p);
}

static void
test_keypool_disable(void **state)
{
    (void)state;
    keypool_t *p = keypool_new(s_keys3, 3, 0);
    int slot;
    int64_t ready;
    bool cooling;
    keypool_ok(p, 0);
    keypool_ok(p, 2);
    assert_true(keypool_disable(p, 1, 401));
    assert_false(keypool_disable(p, 1, 401)); /* logged once */
    for (int i = 0; i < 6; i++)
        assert_int_not_equal(keypool_acquire(p, 0, &slot, &ready, &cooling), 1);
    assert_false(keypool_all_disabled(p));
    assert_true(keypool_disable(p, 0, 403));
    assert_true(keypool_disable(p, 2, 401));
    assert_true(keypool_all_disabled(p));
    assert_int_equal(keypool_acquire(p, 0, &slot, &ready, &cooling), -1);
    assert_int_equal(ready, INT64_MAX);
    assert_false(cooling);
    char text[400];
    keypool_explain(p, 0, text, sizeof text);
    assert_string_equal(text, "all 3 API keys are disabled (401/403): "
                              "key-1 403, key-2 401, key-3 401");
    keypool_stats_t st;
    keypool_stats(p, 1, 0, &st);
    assert_int_equal(st.state, KEYPOOL_DISABLED);
    assert_int_equal(st.disabled_status, 401);
    assert_int_equal(st.errors, 2);
    keypool_destroy(&p);

    p = keypool_new(s_keys3, 1, 0);
    keypool_disable(p, 0, 401);
    keypool_explain(p, 0, text, sizeof text);
    assert_string_equal(text,
                        "the only API key is disabled (401/403): key-1 401");
    keypool_destroy(&p);
}

static void
test_keypool_redact(void **state)
{
    (void)state;
    keypool_t *p = keypool_new(s_keys3, 3, 0);
    char buf[200];
    snprintf(buf, sizeof buf, "{\"error\": \"bad key %s, also %s.\"}",
             s_keys3[2], s_keys3[0]);
    size_t n = keypool_redact(p, buf, strlen(buf));
    assert_int_equal(n, strlen(buf));
    assert_string_equal(buf, "{\"error\": \"bad key key-3, also key-1.\"}");
    keypool_destroy(&p);
    /* A key shorter than its id is starred out. */
    const char *shortk[] = { "ab" };
    p = keypool_new(shortk, 1, 0);
    snprintf(buf, sizeof buf, "xabx");
    keypool_redact(p, buf, strlen(buf));
    assert_string_equal(buf, "x**x");
    keypool_destroy(&p);
}

/* ---- breaker ------------------------------------------------------------- */

static void
test_breaker(void **state)
{
    (void)state;
    breaker_t *b = breaker_new("127.0.0.1:8080", 3, 1000);
    assert_non_null(b);
    int64_t until = 0;
    assert_int_equal(breaker_admit(b, 0, &until), BREAKER_GO);
    assert_false(breaker_failure(b, BREAKER_GO, 0));
    assert_false(breaker_failure(b, BREAKER_GO, 0));
    breaker_success(b, BREAKER_GO); /* the run is broken */
    assert_int_equal(breaker_failures(b), 0);
    assert_false(breaker_failure(b, BREAKER_GO, 10));
    assert_false(breaker_failure(b, BREAKER_GO, 10));
    assert_true(breaker_failure(b, BREAKER_GO, 10)); /* third: opens */
    assert_int_equal(breaker_state(b, 10), BREAKER_OPEN);
    assert_int_equal(breaker_opened(b), 1);
    assert_int_equal(breaker_admit(b, 500, &until), BREAKER_DENY);
    assert_int_equal(until, 1010);
    /* Late outcomes of requests sent before it opened change nothing. */
    assert_false(breaker_failure(b, BREAKER_GO, 600));
    breaker_success(b, BREAKER_GO);
    assert_int_equal(breaker_state(b, 600), BREAKER_OPEN);
    /* After the cooldown: one probe, the rest wait for it. */
    assert_int_equal(breaker_state(b, 1010), BREAKER_HALF_OPEN);
    assert_int_equal(breaker_admit(b, 1010, &until), BREAKER_PROBE);
    assert_int_equal(breaker_admit(b, 1011, &until), BREAKER_WAIT);
    /* The probe fails: open again for a cooldown. */
    assert_true(breaker_failure(b, BREAKER_PROBE, 1100));
    assert_int_equal(breaker_admit(b, 1200, &until), BREAKER_DENY);
    assert_int_equal(until, 2100);
    /* A probe that ends neither way lets the next request probe. */
    assert_int_equal(breaker_admit(b, 2100, &until), BREAKER_PROBE);
    breaker_neutral(b, BREAKER_PROBE);
    assert_int_equal(breaker_admit(b, 2101, &until), BREAKER_PROBE);
    /* It succeeds: closed. */
    breaker_success(b, BREAKER_PROBE);
    assert_int_equal(breaker_state(b, 2200), BREAKER_CLOSED);
    assert_int_equal(breaker_admit(b, 2200, &until), BREAKER_GO);
    assert_int_equal(breaker_failures(b), 0);
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
    breaker_destroy(&b);
    assert_null(b);

    /* failures 0: never opens. */
    b = breaker_new("h:1", 0, 1000);
    for (int i = 0; i < 100; i++)
        assert_false(breaker_failure(b, BREAKER_GO, i));
    assert_int_equal(breaker_admit(b, 100, &until), BREAKER_GO);
    breaker_destroy(&b);
}

/* ---- templates --------------------------------------------------------- */

static char *
s_render(http_template_t *t, const char *payload_json, const char *id,
         int attempt, char *why, size_t ws)
{
    json_t *payload =
        payload_json ? json_loads(payload_json, JSON_DECODE_ANY, NULL) : NULL;
    http_template_ctx_t ctx = { payload, id, attempt, NULL, NULL, NULL };
    size_t len;
    char *out = http_template_render(t, &ctx, &len, why, ws);
    if (out)
        assert_int_equal(len, strlen(out));
    json_decref(payload);
    return out;
}

static void
test_template_json(void **state)
{
    (void)state;
    char err[200], why[200];
    json_t *tmpl =
        json_loads("{\"model\": \"m-1\", \"messages\": [{\"role\": \"user\", "
                   "\"content\": \"Title for: {{payload.prompt}}!\"}], "
                   "\"n\": \"{{payload.n}}\", \"all\": \"{{ payload }}\", "
                   "\"id\": \"{{job.id}}\", \"try\": \"{{job.attempt}}\", "
                   "\"note\": \"attempt {{job.attempt}} of {{payload.n}}\", "
                   "\"keep\": [1, 2.5, true, null]}",
                   0, NULL);
    http_template_t *t = http_template_new_json(tmpl, err, sizeof err);
    json_decref(tmpl);
    assert_non_null(t);
    assert_false(http_template_is_constant(t));
    char *out = s_render(t, "{\"prompt\": \"say \\\"hi\\\"\\n\", \"n\": 3}",
                         "0190-abc", 2, why, sizeof why);
    assert_non_null(out);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    /* Quotes and newlines from the payload stay inside their string. */
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(doc, "messages"), 0), "content")),
        "Title for: say \"hi\"\n!");
    assert_int_equal(json_integer_value(json_object_get(doc, "n")), 3);
    assert_true(json_is_object(json_object_get(doc, "all")));
    assert_string_equal(json_string_value(json_object_get(doc, "id")),
                        "0190-abc");
    assert_int_equal(json_integer_value(json_object_get(doc, "try")), 2);
    assert_string_equal(json_string_value(json_object_get(doc, "note")),
                        "attempt 2 of 3");
    assert_int_equal(json_array_size(json_object_get(doc, "keep")), 4);
    json_decref(doc);
    free(out);

    /* A missing field, a payload that is not an object. */
    assert_null(s_render(t, "{\"n\": 1}", "x", 1, why, sizeof why));
    assert_non_null(strstr(why, "no field \"prompt\""));
    assert_null(s_render(t, "[1, 2]", "x", 1, why, sizeof why));
    assert_non_null(strstr(why, "not a JSON object"));
    assert_null(s_render(t, NULL, "x", 1, why, sizeof why));
    http_template_destroy(&t);
    assert_null(t);

    /* Bad placeholders are refused when the settings are read. */
    tmpl = json_loads("{\"a\": \"{{payload.x}\"}", 0, NULL);
    assert_null(http_template_new_json(tmpl, err, sizeof err));
    assert_non_null(strstr(err, "without '}}'"));
    json_decref(tmpl);
    tmpl = json_loads("[\"{{job.name}}\"]", 0, NULL);
    assert_null(http_template_new_json(tmpl, err, sizeof err));
    assert_non_null(strstr(err, "unknown placeholder {{job.name}}"));
    json_decref(tmpl);
    tmpl = json_loads("{\"a\": 1}", 0, NULL);
    t = http_template_new_json(tmpl, err, sizeof err);
    assert_true(http_template_is_constant(t));
    out = s_render(t, NULL, "x", 1, why, sizeof why);
    assert_string_equal(out, "{\"a\":1}");
    free(out);
    http_template_destroy(&t);
    json_decref(tmpl);
}

static void
test_template_text(void **state)
{
    (void)state;
    char err[200], why[200];
    http_template_t *t = http_template_new_text(
        "http://h/v1/items/{{payload.name}}?try={{job.attempt}}", HTTP_TEXT_URL,
        err, sizeof err);
    assert_non_null(t);
    char *out = s_render(t, "{\"name\": \"a b/c&d\"}", "x", 3, why, sizeof why);
    assert_string_equal(out, "http://h/v1/items/a%20b%2Fc%26d?try=3");
    free(out);
    http_template_destroy(&t);

    t = http_template_new_text("X-Job: {{job.id}} {{payload.tag}}",
                               HTTP_TEXT_HEADER, err, sizeof err);
    out = s_render(t, "{\"tag\": [1,2]}", "abc", 1, why, sizeof why);
    assert_string_equal(out, "X-Job: abc [1,2]");
    free(out);
    assert_null(s_render(t, "{\"tag\": \"a\\r\\nX-Evil: 1\"}", "abc", 1, why,
                         sizeof why));
    assert_non_null(strstr(why, "line break"));
    http_template_destroy(&t);

    t = http_template_new_text("plain", HTTP_TEXT_PLAIN, err, sizeof err);
    assert_true(http_template_is_constant(t));
    out = s_render(t, NULL, "x", 1, why, sizeof why);
    assert_string_equal(out, "plain");
    free(out);
    http_template_destroy(&t);
    t = http_template_new_text("", HTTP_TEXT_PLAIN, err, sizeof err);
    out = s_render(t, NULL, "x", 1, why, sizeof why);
    assert_string_equal(out, "");
    free(out);
    http_template_destroy(&t);
}

static void
test_pointer(void **state)
{
    (void)state;
    json_t *doc =
        json_loads("{\"choices\": [{\"message\": {\"content\": \"Hello\"}}], "
                   "\"a/b\": 1, \"m~n\": 2, \"\": 3}",
                   0, NULL);
    assert_string_equal(json_string_value(http_template_pointer(
                            doc, "/choices/0/message/content")),
                        "Hello");
    assert_ptr_equal(http_template_pointer(doc, ""), doc);
    assert_int_equal(json_integer_value(http_template_pointer(doc, "/a~1b")),
                     1);
    assert_int_equal(json_integer_value(http_template_pointer(doc, "/m~0n")),
                     2);
    assert_int_equal(json_integer_value(http_template_pointer(doc, "/")), 3);
    assert_null(http_template_pointer(doc, "/choices/1/message"));
    assert_null(http_template_pointer(doc, "/choices/00/message"));
    assert_null(http_template_pointer(doc, "/choices/-/message"));
    assert_null(http_template_pointer(doc, "/choices/0/message/content/x"));
    assert_null(http_template_pointer(doc, "/nope"));
    assert_null(http_template_pointer(doc, "choices"));
    assert_int_equal(http_template_check_pointer("/a/~2"), -1);
    assert_int_equal(http_template_check_pointer("/a/~1"), 0);
    assert_int_equal(http_template_check_pointer("x"), -1);
    json_decref(doc);
}

/* ---- settings ------------------------------------------------------------ */

static void
test_parse_keys(void **state)
{
    (void)state;
    char err[300];
    char **keys = NULL;
    int n = http_config_parse_keys(
        "# production keys, one per line\n"
        "  sk-one  \r\n\nsk-two,sk-three\n# sk-commented, out\n",
        "file k.txt", &keys, err, sizeof err);
    assert_int_equal(n, 3);
    assert_string_equal(keys[0], "sk-one");
    assert_string_equal(keys[1], "sk-two");
    assert_string_equal(keys[2], "sk-three");
    http_config_free_keys(keys, n);

    assert_int_equal(http_config_parse_keys("sk-a\nsk-b c\n", "env K", &keys,
                                            err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "line 2"));
    assert_null(strstr(err, "sk-b"));
    assert_int_equal(http_config_parse_keys("sk-secret,sk-x,sk-secret", "env K",
                                            &keys, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "key-3 is the same as key-1"));
    assert_null(strstr(err, "sk-secret"));
    assert_int_equal(
        http_config_parse_keys("\n#x\n", "env K", &keys, err, sizeof err), 0);
    free(keys);
}

static void
test_endpoint(void **state)
{
    (void)state;
    char ep[100];
    assert_int_equal(
        http_config_endpoint("http://127.0.0.1:8080/v1/x", ep, sizeof ep), 0);
    assert_string_equal(ep, "127.0.0.1:8080");
    assert_int_equal(
        http_config_endpoint("https://api.example.com", ep, sizeof ep), 0);
    assert_string_equal(ep, "api.example.com:443");
    assert_int_equal(http_config_endpoint("HTTP://u:p@h/x?y", ep, sizeof ep),
                     0);
    assert_string_equal(ep, "h:80");
    assert_int_equal(http_config_endpoint("http://[::1]:9/x", ep, sizeof ep),
                     0);
    assert_string_equal(ep, "[::1]:9");
    assert_int_equal(http_config_endpoint("ftp://h/", ep, sizeof ep), -1);
    assert_int_equal(
        http_config_endpoint("http://{{payload.h}}/", ep, sizeof ep), -1);
    assert_int_equal(http_config_endpoint("http://h:99999/", ep, sizeof ep),
                     -1);
    assert_int_equal(http_config_endpoint("http:///x", ep, sizeof ep), -1);
}

static int
s_load(http_config_t **cfg, const char *json, char *err, size_t es)
{
    json_t *v = json_loads(json, 0, NULL);
    assert_non_null(v);
    int rc = http_config_load_json(cfg, v, err, es);
    json_decref(v);
    return rc;
}

static void
test_http_config(void **state)
{
    (void)state;
    char err[400];
    char path[] = "/tmp/drover-http-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "sk-file-one\nsk-file-two\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    setenv("DROVER_HTTP_TEST_KEYS", "sk-env-1,sk-env-2,sk-env-3", 1);

    http_config_t *cfg = NULL;
    char json[1500];
    snprintf(json, sizeof json,
             "{\"title\": {\"url\": \"http://127.0.0.1:9/v1/chat\", "
             "\"method\": \"post\", "
             "\"headers\": {\"X-Trace\": \"{{job.id}}\"}, "
             "\"body\": {\"p\": \"{{payload.prompt}}\"}, "
             "\"result\": \"/choices/0/message/content\", "
             "\"connect_timeout\": 2, \"timeout\": \"1500ms\", "
             "\"max_wait\": 5, \"keys\": {\"file\": \"%s\"}, \"rpm\": 60, "
             "\"breaker\": {\"failures\": 3, \"cooldown\": 0.5}}, "
             "\"plain\": {\"url\": \"https://h.example/x\", "
             "\"keys\": {\"env\": \"DROVER_HTTP_TEST_KEYS\"}, "
             "\"breaker\": false, \"method\": \"GET\"}}",
             path);
    assert_int_equal(s_load(&cfg, json, err, sizeof err), 0);
    assert_int_equal(cfg->n, 2);
    const http_handler_cfg_t *h = http_config_find(cfg, "title", 5);
    assert_non_null(h);
    assert_string_equal(h->method, "POST");
    assert_string_equal(h->endpoint, "127.0.0.1:9");
    assert_int_equal(h->nheaders, 1);
    assert_string_equal(h->headers[0], "X-Trace: {{job.id}}");
    assert_false(h->has_content_type);
    assert_string_equal(h->auth_header, "Authorization: Bearer {key}");
    assert_non_null(h->body);
    assert_string_equal(h->result, "/choices/0/message/content");
    assert_int_equal(h->connect_timeout_ms, 2000);
    assert_int_equal(h->timeout_ms, 1500);
    assert_int_equal(h->max_wait_ms, 5000);
    assert_int_equal(h->nkeys, 2);
    assert_string_equal(h->keys[1], "sk-file-two");
    assert_int_equal(h->rpm, 60);
    assert_int_equal(h->breaker_failures, 3);
    assert_int_equal(h->breaker_cooldown_ms, 500);
    h = http_config_find(cfg, "plain", 5);
    assert_int_equal(h->nkeys, 3);
    assert_string_equal(h->keys_from, "env DROVER_HTTP_TEST_KEYS");
    assert_int_equal(h->breaker_failures, 0);
    assert_null(http_config_find(cfg, "other", 5));

    /* --http TYPE=URL adds one with the defaults, or replaces. */
    assert_int_equal(
        http_config_add_flag(&cfg, "title=http://h:1/y", err, sizeof err), 0);
    assert_int_equal(cfg->n, 2);
    h = http_config_find(cfg, "title", 5);
    assert_string_equal(h->url, "http://h:1/y");
    assert_int_equal(h->nkeys, 0);
    assert_null(h->auth_header);
    assert_int_equal(h->breaker_failures, 5);
    assert_int_equal(http_config_add_flag(&cfg, "nourl", err, sizeof err), -1);
    http_config_destroy(&cfg);
    assert_null(cfg);

    /* Mistakes name the type and the setting, never a key. */
    struct {
        const char *json, *want;
    } bad[] = {
        { "{\"t\": {\"method\": \"POST\"}}", "http.t: url: missing" },
        { "{\"t\": {\"url\": \"ftp://x/\"}}", "http.t: url:" },
        { "{\"t\": {\"url\": \"http://h/\", \"result\": \"choices\"}}",
          "result: must be a JSON pointer" },
        { "{\"t\": {\"url\": \"http://h/\", \"keys\": {\"file\": "
          "\"/nonexistent/keys\"}}}",
          "keys: cannot read /nonexistent/keys" },
        { "{\"t\": {\"url\": \"http://h/\", \"keys\": {\"env\": "
          "\"DROVER_HTTP_TEST_UNSET\"}}}",
          "DROVER_HTTP_TEST_UNSET is not set" },
        { "{\"t\": {\"url\": \"http://h/\", \"keys\": {\"env\": "
          "\"DROVER_HTTP_TEST_KEYS\"}, \"auth_header\": \"X-Key: k\"}}",
          "auth_header: must be" },
        { "{\"t\": {\"url\": \"http://h/\", \"auth_header\": "
          "\"X-Key: {key}\"}}",
          "auth_header: set, but no keys" },
        { "{\"t\": {\"url\": \"http://h/\", \"colour\": 1}}",
          "unknown setting 'colour'" },
        { "{\"t\": {\"url\": \"http://h/\", \"body\": \"{{x}}\"}}",
          "body: unknown placeholder" },
        { "{\"t\": {\"url\": \"http://h/\", \"method\": \"GET\", "
          "\"body\": {}}}",
          "body: a GET request has none" },
        { "{\"t\": {\"url\": \"http://h/\", \"rpm\": -1}}", "rpm: must be" },
        { "{\"t\": {\"url\": \"http://h/\", \"headers\": {\"A B\": \"x\"}}}",
          "not a header name" },
        { "{\"t\": {\"url\": \"http://h/\", \"breaker\": {\"n\": 1}}}",
          "breaker: unknown setting 'n'" },
        { "{\"t\": 5}", "http.t: must be an object" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg = NULL;
        assert_int_equal(s_load(&cfg, bad[i].json, err, sizeof err), -1);
        if (!strstr(err, bad[i].want))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].want);
        assert_null(strstr(err, "sk-env"));
        http_config_destroy(&cfg);
    }
    unlink(path);
    unsetenv("DROVER_HTTP_TEST_KEYS");
}

/* ---- JSON Lines key files ---------------------------------------------- */

static void
s_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    fclose(f);
}

/* Loads a handler whose keys are the file at path. */
static int
s_load_keyfile(http_config_t **cfg, const char *path, const char *extra,
               char *err, size_t es)
{
    char json[1200];
    snprintf(json, sizeof json,
             "{\"t\": {\"url\": \"http://127.0.0.1:9/v1/chat\", "
             "\"keys\": {\"file\": \"%s\"}%s}}",
             path, extra ? extra : "");
    return s_load(cfg, json, err, es);
}

static void
test_key_entries(void **state)
{
    (void)state;
    char err[400];
    char dir[] = "/tmp/drover-http-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char keys[300], secret[300];
    snprintf(keys, sizeof keys, "%s/keys.jsonl", dir);
    snprintf(secret, sizeof secret, "%s/east.key", dir);
    s_write_file(secret, "sk-east-from-file\n");
    setenv("DROVER_HTTP_TEST_WEST", "sk-west-from-env", 1);

    char text[2000];
    snprintf(text, sizeof text,
             "# regions\n"
             "{\"id\": \"az-west\", \"key_env\": \"DROVER_HTTP_TEST_WEST\", "
             "\"url\": \"https://west.example/openai/deployments/"
             "{{key.deployment}}/chat/completions?api-version="
             "{{key.api_version}}\", \"deployment\": \"gpt4o-west\", "
             "\"api_version\": \"2024-06-01\", \"rpm\": 600, \"tpm\": 90000}\n"
             "\n"
             "{\"key_file\": \"%s\", \"deployment\": \"gpt4o-east\", "
             "\"weight\": 2, \"beta\": true}\n"
             "  {\"key\": \"sk-inline-0001\", \"rpm\": 5}\n",
             secret);
    s_write_file(keys, text);
    http_config_t *cfg = NULL;
    assert_int_equal(s_load_keyfile(&cfg, keys, ", \"rpm\": 60, \"tpm\": 1000",
                                    err, sizeof err),
                     0);
    const http_handler_cfg_t *h = http_config_find(cfg, "t", 1);
    assert_non_null(h);
    assert_int_equal(h->nkeys, 3);
    assert_non_null(h->entries);
    assert_true(h->keys_vary);
    assert_string_equal(h->keys[0], "sk-west-from-env");
    assert_string_equal(h->keys[1], "sk-east-from-file");
    assert_string_equal(h->keys[2], "sk-inline-0001");
    assert_string_equal(h->entries[0].id, "az-west");
    assert_string_equal(h->entries[1].id, "key-2");
    assert_string_equal(h->entries[2].id, "key-3");
    assert_non_null(strstr(h->entries[0].url, "{{key.deployment}}"));
    assert_null(h->entries[1].url);
    assert_int_equal(h->entries[0].rpm, 600);
    assert_int_equal(h->entries[0].tpm, 90000);
    assert_int_equal(h->entries[1].rpm, -1);
    assert_int_equal(h->entries[1].tpm, -1);
    assert_int_equal(h->entries[2].rpm, 5);
    assert_string_equal(
        json_string_value(json_object_get(h->entries[0].vars, "deployment")),
        "gpt4o-west");
    assert_int_equal(
        json_integer_value(json_object_get(h->entries[1].vars, "weight")), 2);
    assert_true(json_is_true(json_object_get(h->entries[1].vars, "beta")));
    assert_int_equal(json_object_size(h->entries[2].vars), 0);
    assert_null(json_object_get(h->entries[0].vars, "rpm"));
    assert_null(json_object_get(h->entries[0].vars, "key_env"));
    http_config_destroy(&cfg);

    /* Entries with neither url nor values: the request is the same for
     * every key. Plain files keep working. */
    s_write_file(keys, "{\"key\": \"sk-a-0001\", \"id\": \"a\"}\n"
                       "{\"key\": \"sk-b-0001\", \"rpm\": 3}\n");
    assert_int_equal(s_load_keyfile(&cfg, keys, NULL, err, sizeof err), 0);
    h = http_config_find(cfg, "t", 1);
    assert_int_equal(h->nkeys, 2);
    assert_false(h->keys_vary);
    http_config_destroy(&cfg);
    s_write_file(keys, "sk-plain-1\nsk-plain-2\n");
    assert_int_equal(s_load_keyfile(&cfg, keys, NULL, err, sizeof err), 0);
    h = http_config_find(cfg, "t", 1);
    assert_int_equal(h->nkeys, 2);
    assert_null(h->entries);
    assert_false(h->keys_vary);
    http_config_destroy(&cfg);

    /* Mistakes name the line, the variable or the file, never a key. */
    struct {
        const char *text, *want;
    } bad[] = {
        { "{\"key\": \"sk-secret-1\"}\nsk-secret-2\n",
          "line 2: a plain key in a file of JSON entries" },
        { "sk-secret-2\n{\"key\": \"sk-secret-1\"}\n",
          "line 1: a plain key in a file of JSON entries" },
        { "# c\n{\"key\": \"sk-secret-1\",}\n", "line 2: not a JSON object" },
        { "{\"key\": \"sk-secret-1\", \"key\": \"sk-secret-3\"}\n",
          "line 1: not a JSON object" },
        { "{\"id\": \"x\"}\n", "line 1: none of \"key\", \"key_env\"" },
        { "{\"key\": \"sk-secret-1\", \"key_env\": \"HOME\"}\n",
          "line 1: more than one of \"key\"" },
        { "{\"key\": 5}\n", "\"key\" must be a non-empty string" },
        { "{\"key\": \"sk secret\"}\n", "blank or control character" },
        { "{\"key_env\": \"DROVER_HTTP_TEST_UNSET\"}\n",
          "line 1: the environment variable DROVER_HTTP_TEST_UNSET is not "
          "set" },
        { "{\"key_file\": \"/nonexistent/k\"}\n",
          "line 1: cannot read /nonexistent/k" },
        { "{\"key\": \"sk-secret-1\", \"id\": \"a\"}\n"
          "{\"key\": \"sk-secret-2\", \"id\": \"a\"}\n",
          "line 2: the id \"a\" is taken" },
        { "{\"key\": \"sk-secret-1\", \"id\": \"key-2\"}\n"
          "{\"key\": \"sk-secret-2\"}\n",
          "line 2: the id \"key-2\" is taken" },
        { "{\"key\": \"sk-secret-1\"}\n{\"key\": \"sk-secret-1\"}\n",
          "line 2: the key of key-2 is the same as that of key-1" },
        { "{\"key\": \"sk-secret-1\", \"id\": \"a b\"}\n",
          "\"id\" must be 1..64 printable characters" },
        { "{\"key\": \"sk-secret-1\", \"id\": \"\"}\n", "\"id\" must be" },
        { "{\"key\": \"sk-secret-1\", \"id\": 7}\n", "\"id\" must be" },
        { "{\"key\": \"sk-secret-1\", \"id\": "
          "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
          "\"}\n",
          "\"id\" must be" },
        { "{\"key\": \"sk-secret-1\", \"rpm\": \"60\"}\n",
          "line 1: \"rpm\" must be a whole number" },
        { "{\"key\": \"sk-secret-1\", \"rpm\": -2}\n", "\"rpm\" must be" },
        { "{\"key\": \"sk-secret-1\", \"tpm\": 1.5}\n", "\"tpm\" must be" },
        { "{\"key\": \"sk-secret-1\", \"url\": \"ftp://x/\"}\n",
          "line 1: \"url\" must be an http:// or https:// URL" },
        { "{\"key\": \"sk-secret-1\", \"url\": \"http://h/{{nope}}\"}\n",
          "line 1: url: unknown placeholder" },
        { "{\"key\": \"sk-secret-1\", \"extra\": {\"a\": 1}}\n",
          "line 1: \"extra\" must be a string, a number or a boolean" },
        { "{\"key\": \"sk-secret-1\", \"list\": [1]}\n",
          "\"list\" must be a string, a number or a boolean" },
        { "{\"key\": \"sk-secret-1\", \"n\": null}\n", "\"n\" must be" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_write_file(keys, bad[i].text);
        cfg = NULL;
        assert_int_equal(s_load_keyfile(&cfg, keys, NULL, err, sizeof err), -1);
        if (!strstr(err, bad[i].want))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].want);
        assert_non_null(strstr(err, "http.t: keys from file "));
        assert_null(strstr(err, "sk-secret"));
        assert_null(strstr(err, "sk secret"));
        http_config_destroy(&cfg);
    }
    /* A key file holding a key with a blank. */
    s_write_file(secret, "sk-secret bad\n");
    snprintf(text, sizeof text, "{\"key_file\": \"%s\"}\n", secret);
    s_write_file(keys, text);
    assert_int_equal(s_load_keyfile(&cfg, keys, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "the key from \"key_file\" is empty or holds"));
    assert_null(strstr(err, "sk-secret"));
    http_config_destroy(&cfg);

    /* A variable holds plain keys only. */
    setenv("DROVER_HTTP_TEST_KEYS", "{\"key\": \"sk-secret-1\"}", 1);
    assert_int_equal(s_load(&cfg,
                            "{\"t\": {\"url\": \"http://h/\", \"keys\": "
                            "{\"env\": \"DROVER_HTTP_TEST_KEYS\"}}}",
                            err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "JSON entries are read from a key file"));
    assert_null(strstr(err, "sk-secret"));
    http_config_destroy(&cfg);

    unsetenv("DROVER_HTTP_TEST_KEYS");
    unsetenv("DROVER_HTTP_TEST_WEST");
    unlink(keys);
    unlink(secret);
    rmdir(dir);
}

static void
test_template_key(void **state)
{
    (void)state;
    char err[200], why[300];
    /* {{key.NAME}} compiles in every kind of template. */
    http_template_t *url = http_template_new_text(
        "https://w.example/d/{{key.deployment}}/c?api-version="
        "{{key.api_version}}",
        HTTP_TEXT_URL, err, sizeof err);
    assert_non_null(url);
    assert_false(http_template_is_constant(url));
    json_t *tmpl = json_loads("{\"model\": \"{{key.model}}\", \"n\": "
                              "\"{{key.n}}\", \"p\": \"{{payload.prompt}}\"}",
                              0, NULL);
    http_template_t *body = http_template_new_json(tmpl, err, sizeof err);
    json_decref(tmpl);
    assert_non_null(body);
    http_template_t *hdr = http_template_new_text(
        "X-Region: {{key.region}}", HTTP_TEXT_HEADER, err, sizeof err);
    assert_non_null(hdr);
    assert_null(
        http_template_new_text("{{keys.x}}", HTTP_TEXT_PLAIN, err, sizeof err));
    assert_non_null(strstr(err, "key.NAME"));

    json_t *vars = json_loads("{\"deployment\": \"gpt4o west\", "
                              "\"api_version\": \"2024-06-01\", \"model\": "
                              "\"m-west\", \"n\": 3, \"region\": \"west\"}",
                              0, NULL);
    json_t *payload = json_loads("{\"prompt\": \"hi\"}", 0, NULL);
    http_template_ctx_t ctx = { payload, "j1", 1, NULL, vars, "az-west" };
    size_t len;
    char *out = http_template_render(url, &ctx, &len, why, sizeof why);
    assert_non_null(out);
    assert_string_equal(
        out, "https://w.example/d/gpt4o%20west/c?api-version=2024-06-01");
    free(out);
    out = http_template_render(body, &ctx, &len, why, sizeof why);
    assert_non_null(out);
    assert_string_equal(out, "{\"model\":\"m-west\",\"n\":3,\"p\":\"hi\"}");
    free(out);
    out = http_template_render(hdr, &ctx, &len, why, sizeof why);
    assert_non_null(out);
    assert_string_equal(out, "X-Region: west");
    free(out);

    /* A key without the value: fails naming the key by id and the value. */
    json_object_del(vars, "model");
    assert_null(http_template_render(body, &ctx, &len, why, sizeof why));
    assert_non_null(strstr(why, "the API key az-west has no value \"model\""));
    /* No key values at all. */
    http_template_ctx_t none = { payload, "j1", 1, NULL, NULL, NULL };
    assert_null(http_template_render(body, &none, &len, why, sizeof why));
    assert_non_null(strstr(why, "{{key.model}}"));
    assert_non_null(strstr(why, "carry no values"));
    json_decref(vars);
    json_decref(payload);
    http_template_destroy(&url);
    http_template_destroy(&body);
    http_template_destroy(&hdr);
}

static void
test_keypool_entries(void **state)
{
    (void)state;
    keypool_key_t ks[] = {
        { "sk-west-0001", "az-west", 2, 90000 },
        { "sk-east-0001", NULL, -1, -1 },
        { "sk-south-0001", "south", 0, 0 },
    };
    keypool_t *p = keypool_new_keys(ks, 3, 4);
    assert_non_null(p);
    keypool_set_tpm(p, 500);
    assert_string_equal(keypool_id(p, 0), "az-west");
    assert_string_equal(keypool_id(p, 1), "key-2");
    assert_string_equal(keypool_id(p, 2), "south");

    /* Each key's ring is its own rpm: 2, 4 (the pool's), no limit. */
    int64_t now = 1000;
    int counts[3] = { 0 }, slot;
    int64_t ready;
    bool cooling;
    for (int n = 0; n < 30; n++) {
        int k = keypool_acquire(p, now, &slot, &ready, &cooling);
        if (k < 0)
            break;
        keypool_ok(p, k);
        keypool_finish(p, k, slot, now);
        counts[k]++;
    }
    assert_int_equal(counts[0], 2);
    assert_int_equal(counts[1], 4);
    assert_true(counts[2] >= 20);
    keypool_stats_t st;
    keypool_stats(p, 0, now, &st);
    assert_int_equal(st.tokens, 0);
    assert_string_equal(st.id, "az-west");
    keypool_stats(p, 2, now, &st);
    assert_int_equal(st.tokens, -1);
    /* A window later key 0 has its 2 again. */
    keypool_stats(p, 0, now + KEYPOOL_WINDOW_MS, &st);
    assert_int_equal(st.tokens, 2);

    /* The broker hears each key's own limits, by its id. */
    keypool_fleet(p, true);
    keypool_fleet_reset(p);
    dv_keyitem_t items[8];
    int n = keypool_lines(p, now, 1, items, 8);
    assert_int_equal(n, 3);
    assert_true(dv_str_eq(items[0].id, "az-west"));
    assert_int_equal(items[0].rpm, 2);
    assert_int_equal(items[0].tpm, 90000);
    assert_int_equal(items[0].recent, 2);
    assert_true(dv_str_eq(items[1].id, "key-2"));
    assert_int_equal(items[1].rpm, 4);
    assert_int_equal(items[1].tpm, 500);
    assert_int_equal(items[1].recent, 4);
    assert_true(dv_str_eq(items[2].id, "south"));
    assert_int_equal(items[2].rpm, 0);
    assert_int_equal(items[2].tpm, 0);
    char h[9];
    keypool_short_hash("sk-west-0001", 12, h);
    assert_true(dv_str_eq(items[0].hash, h));
    keypool_destroy(&p);

    /* Out of range: an id too long, an rpm too high. */
    char longid[KEYPOOL_ID_MAX + 2];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    keypool_key_t bad1[] = { { "sk-a", longid, -1, -1 } };
    assert_null(keypool_new_keys(bad1, 1, 0));
    keypool_key_t bad2[] = { { "sk-a", "a", KEYPOOL_RPM_MAX + 1, -1 } };
    assert_null(keypool_new_keys(bad2, 1, 0));
    /* keypool_new still names keys key-N with the pool's rpm. */
    p = keypool_new(s_keys3, 3, 1);
    keypool_fleet(p, true);
    n = keypool_lines(p, now, 1, items, 8);
    assert_int_equal(n, 3);
    assert_true(dv_str_eq(items[2].id, "key-3"));
    assert_int_equal(items[2].rpm, 1);
    keypool_destroy(&p);
}

static void
test_worker_flags(void **state)
{
    (void)state;
    worker_config_t c;
    worker_config_defaults(&c);
    assert_int_equal(c.http_concurrency, HTTP_CONCURRENCY_DEFAULT);
    char err[300];
    char *argv[] = {
        "worker", "--http", "title=http://127.0.0.1:1/x", "--http-concurrency",
        "250",    NULL
    };
    assert_int_equal(worker_config_parse(&c, 5, argv, err, sizeof err), 0);
    assert_int_equal(c.http_concurrency, 250);
    assert_non_null(http_config_find(c.http, "title", 5));
    worker_config_clear(&c);

    /* One type, one handler. */
    worker_config_defaults(&c);
    char *argv2[] = { "worker", "--http", "t=http://h/",
                      "--exec", "t=true", NULL };
    assert_int_equal(worker_config_parse(&c, 5, argv2, err, sizeof err), -1);
    assert_non_null(strstr(err, "'t' has an http handler and an exec"));
    worker_config_clear(&c);

    worker_config_defaults(&c);
    const char *file = "{\"http_concurrency\": 20, \"http\": {\"t\": "
                       "{\"url\": \"http://h:2/\"}}}";
    assert_int_equal(worker_config_load_json(&c, file, strlen(file), "f.json",
                                             err, sizeof err),
                     0);
    assert_int_equal(c.http_concurrency, 20);
    assert_non_null(http_config_find(c.http, "t", 1));
    const char *badf = "{\"http_concurrency\": 0}";
    assert_int_equal(worker_config_load_json(&c, badf, strlen(badf), "f.json",
                                             err, sizeof err),
                     -1);
    worker_config_clear(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_short_hash),
        cmocka_unit_test(test_keypool_round_robin),
        cmocka_unit_test(test_keypool_window),
        cmocka_unit_test(test_keypool_window_property),
        cmocka_unit_test(test_keypool_cooldown),
        cmocka_unit_test(test_keypool_disable),
        cmocka_unit_test(test_keypool_redact),
        cmocka_unit_test(test_breaker),
        cmocka_unit_test(test_template_json),
        cmocka_unit_test(test_template_text),
        cmocka_unit_test(test_pointer),
        cmocka_unit_test(test_parse_keys),
        cmocka_unit_test(test_endpoint),
        cmocka_unit_test(test_http_config),
        cmocka_unit_test(test_key_entries),
        cmocka_unit_test(test_template_key),
        cmocka_unit_test(test_keypool_entries),
        cmocka_unit_test(test_worker_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
