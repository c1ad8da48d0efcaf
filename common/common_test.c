/* Tests for common/: backoff, ids, clock parsing, JSON<->msgpack, string
 * lists. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dv_arena.h"
#include "dv_backoff.h"
#include "dv_clock.h"
#include "dv_daemon.h"
#include "dv_err.h"
#include "dv_flags.h"
#include "dv_hist.h"
#include "dv_id.h"
#include "dv_map.h"
#include "dv_json.h"
#include "dv_access.h"
#include "dv_str.h"
#include "dv_util.h"

/* ---- backoff ----------------------------------------------------------- */

static void
t_backoff_growth(void **state)
{
    (void)state;
    dv_backoff_t b = { 1000, 2.0, 300000, false };
    assert_int_equal(dv_backoff_delay(&b, 1, 0, 0.5), 1000);
    assert_int_equal(dv_backoff_delay(&b, 2, 0, 0.5), 2000);
    assert_int_equal(dv_backoff_delay(&b, 3, 0, 0.5), 4000);
    assert_int_equal(dv_backoff_delay(&b, 8, 0, 0.5), 128000);
    /* 1000 * 2^8 = 256000 is still under the cap, 2^9 is not. */
    assert_int_equal(dv_backoff_delay(&b, 9, 0, 0.5), 256000);
    assert_int_equal(dv_backoff_delay(&b, 10, 0, 0.5), 300000);
    assert_int_equal(dv_backoff_delay(&b, 1000, 0, 0.5), 300000);
    /* pow() overflows to infinity: still the cap */
    assert_int_equal(dv_backoff_delay(&b, 100000, 0, 0.5), 300000);

    dv_backoff_t f15 = { 100, 1.5, 1000000, false };
    assert_int_equal(dv_backoff_delay(&f15, 3, 0, 0), 225);
}

static void
t_backoff_jitter(void **state)
{
    (void)state;
    dv_backoff_t b = { 1000, 2.0, 300000, true };
    assert_int_equal(dv_backoff_delay(&b, 3, 0, 0.0), 0);
    assert_int_equal(dv_backoff_delay(&b, 3, 0, 0.5), 2000);
    assert_int_equal(dv_backoff_delay(&b, 3, 0, 0.999), 3996);
    assert_int_equal(dv_backoff_delay(&b, 30, 0, 0.999), 299700);
    /* Out-of-range draws are clamped into [0, 1). */
    assert_true(dv_backoff_delay(&b, 3, 0, 1.5) < 4000);
    assert_int_equal(dv_backoff_delay(&b, 3, 0, -1.0), 0);
    assert_int_equal(dv_backoff_delay(&b, 3, 0, NAN), 0);

    /* Random draws stay within [0, delay]. */
    for (int i = 0; i < 1000; i++) {
        int64_t d = dv_backoff_delay(&b, 4, 0, dv_rand01());
        assert_true(d >= 0 && d <= 8000);
    }
}

static void
t_backoff_retry_after(void **state)
{
    (void)state;
    dv_backoff_t b = { 1000, 2.0, 300000, true };
    /* The hint is a floor, applied after jitter. */
    assert_int_equal(dv_backoff_delay(&b, 1, 5000, 0.0), 5000);
    assert_int_equal(dv_backoff_delay(&b, 1, 5000, 0.999), 5000);
    /* Even above the cap: the upstream said so. */
    assert_int_equal(dv_backoff_delay(&b, 1, 900000, 0.5), 900000);
    dv_backoff_t nj = { 1000, 2.0, 300000, false };
    assert_int_equal(dv_backoff_delay(&nj, 5, 100, 0.0), 16000);
}

static void
t_backoff_edges(void **state)
{
    (void)state;
    /* factor < 1 is treated as 1: a constant delay */
    dv_backoff_t shrink = { 1000, 0.5, 300000, false };
    assert_int_equal(dv_backoff_delay(&shrink, 1, 0, 0), 1000);
    assert_int_equal(dv_backoff_delay(&shrink, 10, 0, 0), 1000);
    dv_backoff_t nanf = { 1000, NAN, 300000, false };
    assert_int_equal(dv_backoff_delay(&nanf, 10, 0, 0), 1000);
    /* attempt < 1 counts as the first attempt */
    dv_backoff_t b = { 1000, 2.0, 300000, false };
    assert_int_equal(dv_backoff_delay(&b, 0, 0, 0), 1000);
    assert_int_equal(dv_backoff_delay(&b, -5, 0, 0), 1000);
    /* cap below base: the cap wins */
    dv_backoff_t low = { 1000, 2.0, 10, false };
    assert_int_equal(dv_backoff_delay(&low, 1, 0, 0), 10);
    /* a cap at INT64_MAX must not overflow the conversion */
    dv_backoff_t huge = { INT64_MAX / 2, 10.0, INT64_MAX, false };
    assert_int_equal(dv_backoff_delay(&huge, 50, 0, 0), INT64_MAX);
    huge.jitter = true;
    int64_t d = dv_backoff_delay(&huge, 50, 0, 0.999999999);
    assert_true(d > 0 && d <= INT64_MAX);
    /* zero and negative inputs give zero */
    dv_backoff_t zero = { 0, 2.0, 0, false };
    assert_int_equal(dv_backoff_delay(&zero, 3, 0, 0), 0);
    dv_backoff_t neg = { -100, 2.0, 1000, false };
    assert_int_equal(dv_backoff_delay(&neg, 3, 0, 0), 0);
}

static void
t_rand01(void **state)
{
    (void)state;
    double lo = 1, hi = 0;
    for (int i = 0; i < 10000; i++) {
        double r = dv_rand01();
        assert_true(r >= 0.0 && r < 1.0);
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    assert_true(lo < 0.01);
    assert_true(hi > 0.99);
}

/* ---- ids --------------------------------------------------------------- */

static void
t_id_format_parse(void **state)
{
    (void)state;
    dv_id_t id, back;
    char text[DV_ID_TEXT_LEN + 1];
    dv_id_new(&id);
    dv_id_format(&id, text);
    assert_int_equal(strlen(text), DV_ID_TEXT_LEN);
    assert_int_equal(text[8], '-');
    assert_int_equal(text[13], '-');
    assert_int_equal(text[18], '-');
    assert_int_equal(text[23], '-');
    /* version 7, variant 10xx */
    assert_int_equal(text[14], '7');
    assert_int_equal(id.b[6] >> 4, 7);
    assert_int_equal(id.b[8] >> 6, 2);
    assert_non_null(strchr("89ab", text[19]));
    assert_int_equal(dv_id_parse(text, DV_ID_TEXT_LEN, &back), 0);
    assert_true(dv_id_eq(&id, &back));

    /* upper case parses to the same id */
    char upper[DV_ID_TEXT_LEN + 1];
    for (int i = 0; i <= DV_ID_TEXT_LEN; i++)
        upper[i] =
            (char)(text[i] >= 'a' && text[i] <= 'f' ? text[i] - 32 : text[i]);
    assert_int_equal(dv_id_parse(upper, DV_ID_TEXT_LEN, &back), 0);
    assert_true(dv_id_eq(&id, &back));

    /* need not be NUL-terminated */
    char framed[64];
    memcpy(framed, text, DV_ID_TEXT_LEN);
    memcpy(framed + DV_ID_TEXT_LEN, "XYZ", 4);
    assert_int_equal(dv_id_parse(framed, DV_ID_TEXT_LEN, &back), 0);
    assert_true(dv_id_eq(&id, &back));
}

static void
t_id_parse_rejects(void **state)
{
    (void)state;
    dv_id_t id;
    const char *good = "0190f3a2-7b4c-7def-8123-456789abcdef";
    assert_int_equal(dv_id_parse(good, 36, &id), 0);
    assert_int_equal(dv_id_parse(good, 35, &id), -1);
    assert_int_equal(dv_id_parse(NULL, 36, &id), -1);
    assert_int_equal(dv_id_parse("", 0, &id), -1);
    const char *bad[] = {
        "0190f3a2-7b4c-7def-8123-456789abcdeg", /* not hex */
        "0190f3a2x7b4c-7def-8123-456789abcdef", /* dash missing */
        "0190f3a27-b4c-7def-8123-456789abcdef", /* dash moved */
        "0190f3a2-7b4c-7def-8123-456789abcde ", /* space */
        "0190f3a2-7b4c-7def-8123-456789abcd-f",
        "{190f3a2-7b4c-7def-8123-456789abcdef",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(dv_id_parse(bad[i], 36, &id), -1);
}

static void
t_id_monotonic(void **state)
{
    (void)state;
    char prev[DV_ID_TEXT_LEN + 1], cur[DV_ID_TEXT_LEN + 1];
    dv_id_t id;
    dv_id_new(&id);
    dv_id_format(&id, prev);
    for (int i = 0; i < 10000; i++) {
        dv_id_new(&id);
        dv_id_format(&id, cur);
        if (strcmp(prev, cur) >= 0)
            fail_msg("id %d not increasing: %s then %s", i, prev, cur);
        assert_int_equal(cur[14], '7');
        memcpy(prev, cur, sizeof cur);
    }
}

static void
t_id_time(void **state)
{
    (void)state;
    int64_t before = dv_now_ms();
    dv_id_t id;
    dv_id_new(&id);
    int64_t after = dv_now_ms();
    int64_t t = dv_id_time_ms(&id);
    /* Ids made in a burst may run a little ahead of the clock; never far. */
    assert_true(t >= before - 1000);
    assert_true(t <= after + 1000);
}

/* ---- clock ------------------------------------------------------------- */

static void
t_duration_parse(void **state)
{
    (void)state;
    int64_t ms = -1;
    assert_int_equal(dv_duration_parse("1.5", &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(dv_duration_parse("30", &ms), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(dv_duration_parse("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(dv_duration_parse("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(dv_duration_parse("1h", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(dv_duration_parse("2s", &ms), 0);
    assert_int_equal(ms, 2000);
    assert_int_equal(dv_duration_parse("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(dv_duration_parse(".5", &ms), 0);
    assert_int_equal(ms, 500);

    const char *bad[] = {
        "-1", "abc",  "nan", "NaN", "inf", "1e300", "",     "1.5x",    "5 s",
        " 5", "0x10", "-0",  "+1",  "1d",  "ms",    "1mss", "400000d",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms = 42;
        if (dv_duration_parse(bad[i], &ms) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(ms, 42);
    }
    assert_int_equal(dv_duration_parse(NULL, &ms), -1);
    /* more than ten years is refused */
    assert_int_equal(dv_duration_parse("87600h", &ms), 0);
    assert_int_equal(dv_duration_parse("87700h", &ms), -1);
}

static void
t_time_round_trip(void **state)
{
    (void)state;
    char buf[32];
    int64_t ms;
    const int64_t samples[] = {
        0, 1, 999, 1000, 1700000000123, 1790000000000, 4102444799999,
    };
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        dv_time_format(samples[i], buf, sizeof buf);
        assert_int_equal(dv_time_parse(buf, &ms), 0);
        assert_int_equal(ms, samples[i]);
    }
    assert_string_equal(dv_time_format(1700000000123, buf, sizeof buf),
                        "2023-11-14T22:13:20.123Z");
    assert_string_equal(dv_time_format(0, buf, sizeof buf),
                        "1970-01-01T00:00:00.000Z");
    /* before the epoch the milliseconds stay positive */
    assert_string_equal(dv_time_format(-1, buf, sizeof buf),
                        "1969-12-31T23:59:59.999Z");

    assert_int_equal(dv_time_parse("2026-11-22T17:41:00Z", &ms), 0);
    assert_int_equal(ms, 1795369260000);
    assert_int_equal(dv_time_parse("2026-11-22T17:41:00", &ms), 0);
    assert_int_equal(ms, 1795369260000);
    assert_int_equal(dv_time_parse("2026-11-22 17:41:00.5Z", &ms), 0);
    assert_int_equal(ms, 1795369260500);
    assert_int_equal(dv_time_parse("2026-11-22T17:41:00.123456Z", &ms), 0);
    assert_int_equal(ms, 1795369260123);
    assert_int_equal(dv_time_parse("@1795369260.5", &ms), 0);
    assert_int_equal(ms, 1795369260500);

    const char *bad[] = {
        "",
        "yesterday",
        "2026-11-22",
        "2026-11-22T17:41:00+02:00",
        "2026-11-22T17:41:00Zjunk",
        "@",
        "@-5",
        "@nan",
        "@inf",
        "@1e300",
        "@ 5",
        "@0x10",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dv_time_parse(bad[i], &ms) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    assert_int_equal(dv_time_parse(NULL, &ms), -1);
}

static void
t_clocks(void **state)
{
    (void)state;
    int64_t a = dv_mono_us(), b = dv_mono_us();
    assert_true(b >= a);
    /* after 2020, before 2100 */
    int64_t now = dv_now_ms();
    assert_true(now > 1577836800000LL && now < 4102444800000LL);
    assert_true(dv_mono_ms() >= a / 1000);
}

/* ---- JSON <-> msgpack -------------------------------------------------- */

static json_t *
s_json(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!j)
        fail_msg("bad test JSON: %s", err.text);
    return j;
}

/* JSON text -> msgpack -> JSON must give an equal value, straight from the
 * bytes and (if via_object) through msgpack-c's unpacker, which stops at 32
 * levels of nesting. */
static void
s_round_trip_(const char *text, bool via_object)
{
    json_t *in = s_json(text);
    size_t len = 0;
    char *mp = dv_json_to_msgpack(in, &len);
    assert_non_null(mp);
    assert_true(len > 0);
    char why[128] = "";
    json_t *out = dv_msgpack_to_json(mp, len, why, sizeof why);
    if (!out)
        fail_msg("%s: %s", text, why);
    if (!json_equal(in, out)) {
        char *got = json_dumps(out, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("round trip of %s gave %s", text, got);
    }
    /* Integers stay integers and reals stay reals. */
    char *a = json_dumps(in, JSON_ENCODE_ANY | JSON_COMPACT);
    char *b = json_dumps(out, JSON_ENCODE_ANY | JSON_COMPACT);
    assert_string_equal(a, b);
    free(a);
    free(b);
    if (!via_object)
        goto done;
    /* The same through an unpacked msgpack_object. */
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&up, mp, len, &off),
                     MSGPACK_UNPACK_SUCCESS);
    json_t *out2 = dv_msgpack_object_to_json(&up.data, why, sizeof why);
    assert_non_null(out2);
    assert_true(json_equal(in, out2));
    json_decref(out2);
    msgpack_unpacked_destroy(&up);
done:
    json_decref(out);
    json_decref(in);
    free(mp);
}

static void
s_round_trip(const char *text)
{
    s_round_trip_(text, true);
}

static void
t_json_round_trip(void **state)
{
    (void)state;
    s_round_trip("null");
    s_round_trip("true");
    s_round_trip("false");
    s_round_trip("0");
    s_round_trip("-1");
    s_round_trip("-32");
    s_round_trip("-33");
    s_round_trip("127");
    s_round_trip("128");
    s_round_trip("-129");
    s_round_trip("65536");
    s_round_trip("-2147483649");
    s_round_trip("9223372036854775807");
    s_round_trip("-9223372036854775808");
    s_round_trip("1.5");
    s_round_trip("-0.25");
    s_round_trip("1e300");
    s_round_trip("\"\"");
    s_round_trip("\"plain\"");
    s_round_trip("\"caf\\u00e9 \\u65e5\\u672c \\ud83d\\ude80\"");
    s_round_trip("\"nul \\u0000 inside\"");
    s_round_trip("[]");
    s_round_trip("{}");
    s_round_trip("[1, 2.5, \"x\", null, true, false, [], {}]");
    s_round_trip("{\"prompt\": \"hello\", \"n\": 3, \"t\": 0.7, "
                 "\"stop\": [\"\\n\", \"END\"], \"opts\": {\"a\": {\"b\": "
                 "[{\"c\": null}]}}, \"\\u00fcber\": true}");
    /* longer than the fix* and 8-bit forms */
    char big[70000 + 3];
    big[0] = '"';
    memset(big + 1, 'a', 70000);
    big[70001] = '"';
    big[70002] = '\0';
    s_round_trip(big);
    json_t *arr = json_array();
    for (int i = 0; i < 70000; i++)
        json_array_append_new(arr, json_integer(i - 35000));
    char *text = json_dumps(arr, JSON_COMPACT);
    s_round_trip(text);
    free(text);
    json_decref(arr);
}

/* "[[[...]]]" n deep around a 1. */
static char *
s_nested(int n)
{
    char *s = malloc((size_t)n * 2 + 2);
    for (int i = 0; i < n; i++)
        s[i] = '[';
    s[n] = '1';
    for (int i = 0; i < n; i++)
        s[n + 1 + i] = ']';
    s[2 * n + 1] = '\0';
    return s;
}

static void
t_json_depth(void **state)
{
    (void)state;
    /* 64 levels are fine both ways (deeper than msgpack-c's unpacker goes) */
    char *ok = s_nested(DV_JSON_MAX_DEPTH);
    s_round_trip_(ok, false);
    free(ok);

    char *deep = s_nested(DV_JSON_MAX_DEPTH + 1);
    json_t *j = s_json(deep);
    size_t len = 0;
    assert_null(dv_json_to_msgpack(j, &len));
    json_decref(j);
    free(deep);

    /* 65 nested msgpack arrays */
    uint8_t mp[DV_JSON_MAX_DEPTH + 2];
    memset(mp, 0x91, DV_JSON_MAX_DEPTH + 1);
    mp[DV_JSON_MAX_DEPTH + 1] = 0x01;
    char why[128] = "";
    assert_null(dv_msgpack_to_json(mp, sizeof mp, why, sizeof why));
    assert_non_null(strstr(why, "deep"));
    /* 64 of them are fine */
    json_t *back = dv_msgpack_to_json(mp + 1, sizeof mp - 1, why, sizeof why);
    assert_non_null(back);
    json_decref(back);
}

static void
t_json_bin_and_rejects(void **state)
{
    (void)state;
    char why[128];

    /* bin that is UTF-8 becomes a string */
    const uint8_t bin_text[] = { 0xc4, 0x02, 'h', 'i' };
    char *t = dv_msgpack_to_json_text(bin_text, sizeof bin_text);
    assert_string_equal(t, "\"hi\"");
    free(t);

    /* bin that is not UTF-8 becomes {"$bin": base64} */
    const uint8_t bin_raw[] = { 0xc4, 0x03, 0xff, 0x00, 0xfe };
    t = dv_msgpack_to_json_text(bin_raw, sizeof bin_raw);
    assert_string_equal(t, "{\"$bin\":\"/wD+\"}");
    free(t);
    const uint8_t str_raw[] = { 0xa2, 0xc3, 0x28 };
    t = dv_msgpack_to_json_text(str_raw, sizeof str_raw);
    assert_string_equal(t, "{\"$bin\":\"wyg=\"}");
    free(t);

    /* non-string map key: {1: 2} */
    const uint8_t intkey[] = { 0x81, 0x01, 0x02 };
    why[0] = '\0';
    assert_null(dv_msgpack_to_json(intkey, sizeof intkey, why, sizeof why));
    assert_non_null(strstr(why, "not a string"));
    /* the same through an unpacked object */
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    assert_int_equal(
        msgpack_unpack_next(&up, (const char *)intkey, sizeof intkey, &off),
        MSGPACK_UNPACK_SUCCESS);
    why[0] = '\0';
    assert_null(dv_msgpack_object_to_json(&up.data, why, sizeof why));
    assert_non_null(strstr(why, "not a string"));
    msgpack_unpacked_destroy(&up);

    /* map key that is not UTF-8 */
    const uint8_t badkey[] = { 0x81, 0xa1, 0xff, 0x02 };
    assert_null(dv_msgpack_to_json(badkey, sizeof badkey, why, sizeof why));

    /* ext values have no JSON form */
    const uint8_t ext[] = { 0xd4, 0x01, 0x00 };
    assert_null(dv_msgpack_to_json(ext, sizeof ext, why, sizeof why));
    assert_non_null(strstr(why, "ext"));

    /* NaN has no JSON form */
    const uint8_t nan64[] = { 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0 };
    assert_null(dv_msgpack_to_json(nan64, sizeof nan64, why, sizeof why));

    /* truncated, trailing bytes, never-used byte */
    const uint8_t trunc[] = { 0x92, 0x01 };
    assert_null(dv_msgpack_to_json(trunc, sizeof trunc, why, sizeof why));
    const uint8_t trail[] = { 0x01, 0x02 };
    assert_null(dv_msgpack_to_json(trail, sizeof trail, why, sizeof why));
    const uint8_t c1[] = { 0xc1 };
    assert_null(dv_msgpack_to_json(c1, sizeof c1, why, sizeof why));
    assert_null(dv_msgpack_to_json_text(trunc, sizeof trunc));

    /* an array claiming four billion items in a few bytes fails fast,
     * without allocating for the claim */
    const uint8_t huge[] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02 };
    assert_null(dv_msgpack_to_json(huge, sizeof huge, why, sizeof why));
    const uint8_t hugemap[] = { 0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a' };
    assert_null(dv_msgpack_to_json(hugemap, sizeof hugemap, why, sizeof why));

    /* empty input is null */
    t = dv_msgpack_to_json_text("", 0);
    assert_string_equal(t, "null");
    free(t);

    /* every wire form of numbers decodes to the right value */
    const uint8_t nums[] = {
        0x9c,                                                 /* array of 12 */
        0xcc, 0xff,                                           /* 255 */
        0xcd, 0x01, 0x00,                                     /* 256 */
        0xce, 0x00, 0x01, 0x00, 0x00,                         /* 65536 */
        0xcf, 0,    0,    0,    1,    0,    0,    0,    0,    /* 2^32 */
        0xd0, 0x80,                                           /* -128 */
        0xd1, 0xff, 0x7f,                                     /* -129 */
        0xd2, 0xff, 0xff, 0x7f, 0xff,                         /* -32769 */
        0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, /* -2^31-1 */
        0xca, 0x3f, 0xc0, 0x00, 0x00,                         /* 1.5f */
        0xff,                                                 /* -1 */
        0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 2^64-1 */
        0xd0, 0x05,                                           /* 5 as int 8 */
    };
    t = dv_msgpack_to_json_text(nums, sizeof nums);
    assert_non_null(t);
    assert_string_equal(t, "[255,256,65536,4294967296,-128,-129,-32769,"
                           "-2147483649,1.5,-1,1.8446744073709552e19,5]");
    free(t);
}

static void
t_json_pack_direct(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    json_t *j = s_json("{\"a\": [1, 2]}");
    assert_int_equal(dv_json_pack(&pk, j), 0);
    /* {"a": [1, 2]} is 81 a1 61 92 01 02 */
    const uint8_t want[] = { 0x81, 0xa1, 'a', 0x92, 0x01, 0x02 };
    assert_int_equal(sb.size, sizeof want);
    assert_memory_equal(sb.data, want, sizeof want);
    json_decref(j);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- util -------------------------------------------------------------- */

static void
t_strv_split(void **state)
{
    (void)state;
    char **v = NULL;
    assert_int_equal(dv_strv_split("a,b, c", &v), 3);
    assert_string_equal(v[0], "a");
    assert_string_equal(v[1], "b");
    assert_string_equal(v[2], "c");
    assert_null(v[3]);
    dv_strv_free(&v);
    assert_null(v);

    assert_int_equal(dv_strv_split(" tcp://a:1 ,, ,tcp://b:2,", &v), 2);
    assert_string_equal(v[0], "tcp://a:1");
    assert_string_equal(v[1], "tcp://b:2");
    assert_null(v[2]);
    dv_strv_free(&v);

    assert_int_equal(dv_strv_split("", &v), 0);
    assert_non_null(v);
    assert_null(v[0]);
    dv_strv_free(&v);
    assert_int_equal(dv_strv_split(NULL, &v), 0);
    assert_null(v[0]);
    dv_strv_free(&v);
    assert_int_equal(dv_strv_split(" , ,", &v), 0);
    dv_strv_free(&v);
    dv_strv_free(&v); /* harmless twice */
    dv_strv_free(NULL);

    /* more than the initial capacity */
    assert_int_equal(dv_strv_split("1,2,3,4,5,6,7,8,9,10,11", &v), 11);
    assert_string_equal(v[10], "11");
    assert_null(v[11]);
    dv_strv_free(&v);
}

static void
t_env_and_file(void **state)
{
    (void)state;
    setenv("DV_TEST_EMPTY", "", 1);
    setenv("DV_TEST_SET", "x", 1);
    assert_string_equal(dv_env_or("DV_TEST_EMPTY", "d"), "d");
    assert_string_equal(dv_env_or("DV_TEST_SET", "d"), "x");
    assert_string_equal(dv_env_or("DV_TEST_UNSET_ZZZ", "d"), "d");

    char path[] = "/tmp/dv_common_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 3000; i++)
        fputs("line\n", f);
    fclose(f);
    size_t len = 0;
    char *text = dv_read_file(path, &len);
    assert_non_null(text);
    assert_int_equal(len, 15000);
    assert_int_equal(text[len], '\0');
    free(text);
    unlink(path);
    assert_null(dv_read_file("/nonexistent/dv/file", &len));
}

/* ---- map ---------------------------------------------------------------- */

typedef struct {
    char key[16];
    int value;
} s_item_t;

static int s_freed;

static void
s_item_free(void *item)
{
    s_freed++;
    free(item);
}

static bool
s_odd(const void *item, void *ctx)
{
    (void)ctx;
    return ((const s_item_t *)item)->value % 2;
}

static s_item_t *
s_item(int value)
{
    s_item_t *it = calloc(1, sizeof *it);
    assert_non_null(it);
    snprintf(it->key, sizeof it->key, "k%d", value);
    it->value = value;
    return it;
}

static void
t_map(void **state)
{
    (void)state;
    s_freed = 0;
    assert_null(dv_map_get(NULL, "k1"));
    assert_int_equal(dv_map_size(NULL), 0);
    size_t pos = 0;
    assert_null(dv_map_next(NULL, &pos));

    dv_map_t *m = dv_map_new(s_item_free);
    assert_non_null(m);
    for (int i = 0; i < 1000; i++) {
        s_item_t *it = s_item(i);
        assert_int_equal(dv_map_put(m, it->key, it), 0);
    }
    assert_int_equal(dv_map_size(m), 1000);
    s_item_t *it;
    s_item_t *dup = s_item(7);
    assert_int_equal(dv_map_put(m, dup->key, dup), -1); /* there */
    free(dup);
    for (int i = 0; i < 1000; i += 37) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        it = dv_map_get(m, key);
        assert_non_null(it);
        assert_int_equal(it->value, i);
    }
    assert_null(dv_map_get(m, "k1000"));
    /* Keys with a length: "k12" inside longer text, and a prefix of it. */
    it = dv_map_getn(m, "k12xyz", 3);
    assert_true(it && it->value == 12);
    it = dv_map_getn(m, "k12", 2);
    assert_true(it && it->value == 1);
    assert_null(dv_map_getn(m, "k12", 1));

    /* Odd ones go; every other one is still found, and walked once. */
    dv_map_delete_if(m, s_odd, NULL);
    assert_int_equal(s_freed, 500);
    assert_int_equal(dv_map_size(m), 500);
    int seen = 0;
    DV_MAP_EACH(it, m)
    {
        assert_int_equal(it->value % 2, 0);
        seen++;
    }
    assert_int_equal(seen, 500);
    for (int i = 0; i < 1000; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        it = dv_map_get(m, key);
        if (i % 2)
            assert_null(it);
        else
            assert_true(it && it->value == i);
    }
    dv_map_delete(m, "k1"); /* gone already: nothing happens */
    assert_int_equal(s_freed, 500);

    /* Churn, as running jobs come and go: 300 at a time, the oldest
     * leaving as a new one comes; every live one stays findable. */
    for (int i = 1000; i < 20300; i++) {
        char key[16];
        if (i < 20000) {
            it = s_item(i);
            assert_int_equal(dv_map_put(m, it->key, it), 0);
        }
        if (i - 300 >= 1000) {
            snprintf(key, sizeof key, "k%d", i - 300);
            dv_map_delete(m, key);
        }
        for (int j = i - 299; i % 997 == 0 && j <= i; j++) {
            snprintf(key, sizeof key, "k%d", j);
            assert_non_null(dv_map_get(m, key));
        }
    }
    assert_int_equal(dv_map_size(m), 500);
    assert_non_null(dv_map_get(m, "k998"));
    dv_map_destroy(&m);
    assert_null(m);
    assert_int_equal(s_freed, 1000 + 19000);
    dv_map_destroy(&m); /* NULL-safe */
}

/* ---- flags ------------------------------------------------------------ */

static int
t_flag_fn(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    if (strcmp(v, "bad") == 0)
        return dv_err_set(err, es, "--%s: no '%s'", f->name, v);
    *(const char **)f->ctx = v;
    return 0;
}

static void
t_flags(void **state)
{
    (void)state;
    static const char *const colours[] = { "red", "green", NULL };
    const char *name = "dflt", *fn = NULL;
    int64_t ms = 0;
    int n = 0, colour = -1;
    double f = 0;
    bool on = false;
    const dv_flag_t table[] = {
        DV_FLAG_STR("name", &name),
        DV_FLAG_DUR("wait", &ms, 10, 60000),
        DV_FLAG_INTEGER("count", &n, 1, 9),
        DV_FLAG_NUMBER("factor", &f, 1, 10),
        DV_FLAG_ON("on", &on),
        DV_FLAG_ONE_OF("colour", &colour, colours),
        DV_FLAG_CALL("fn", t_flag_fn, &fn),
        DV_FLAG_TABLE_END,
    };
    const dv_flag_t *tables[] = { table };
    char err[256];
    char *ok[] = { "x",     "--name",   "a",   "--wait=1.5", "--count",
                   "3",     "--factor", "2.5", "--on",       "--colour",
                   "green", "--fn=z",   "pos", "--name",     "b" };
    int first = 0;
    assert_int_equal(
        dv_flags_parse(tables, 1, 15, ok, true, &first, err, sizeof err),
        DV_FLAGS_OK);
    assert_string_equal(name, "a");
    assert_int_equal(ms, 1500);
    assert_int_equal(n, 3);
    assert_true(f == 2.5);
    assert_true(on);
    assert_int_equal(colour, 1);
    assert_string_equal(fn, "z");
    assert_int_equal(first, 12);
    /* Without positional arguments, "pos" is an error. */
    assert_int_equal(
        dv_flags_parse(tables, 1, 15, ok, false, NULL, err, sizeof err),
        DV_FLAGS_ERROR);
    assert_string_equal(err, "unexpected argument 'pos'");
    struct {
        char *argv[3];
        const char *why;
    } bad[] = {
        { { "x", "--wait", "2x" },
          "--wait: '2x' is not a duration in seconds" },
        { { "x", "--wait", "1m5" },
          "--wait: '1m5' is not a duration in seconds" },
        { { "x", "--wait", "0.001" },
          "--wait: '0.001' is not in 0.01..60 seconds" },
        { { "x", "--count", "10" },
          "--count: '10' is not a whole number in 1..9" },
        { { "x", "--count=", "" },
          "--count: '' is not a whole number in 1..9" },
        { { "x", "--factor", "nan" }, "--factor: 'nan' is not a number" },
        { { "x", "--colour", "blue" },
          "--colour: 'blue' is not one of red, green" },
        { { "x", "--fn", "bad" }, "--fn: no 'bad'" },
        { { "x", "--on=1", "" }, "--on takes no value" },
        { { "x", "--nope", "" }, "unknown option '--nope'" },
        { { "x", "-q", "" }, "unknown option '-q'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int argc = bad[i].argv[2][0] ? 3 : 2;
        assert_int_equal(dv_flags_parse(tables, 1, argc, bad[i].argv, false,
                                        NULL, err, sizeof err),
                         DV_FLAGS_ERROR);
        assert_string_equal(err, bad[i].why);
    }
    char *missing[] = { "x", "--name" };
    assert_int_equal(
        dv_flags_parse(tables, 1, 2, missing, false, NULL, err, sizeof err),
        DV_FLAGS_ERROR);
    assert_string_equal(err, "--name needs a value");
    char *help[] = { "x", "--count", "2", "-h" };
    assert_int_equal(
        dv_flags_parse(tables, 1, 4, help, false, NULL, err, sizeof err),
        DV_FLAGS_HELP);
    char *dashdash[] = { "x", "--", "--name" };
    assert_int_equal(
        dv_flags_parse(tables, 1, 3, dashdash, true, &first, err, sizeof err),
        DV_FLAGS_OK);
    assert_int_equal(first, 2);
}

static void
t_text_escape(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        { "plain text", 10, "plain text" },
        { "caf\xc3\xa9 \xe2\x9c\x93", 9, "caf\xc3\xa9 \xe2\x9c\x93" },
        { "a\nb\tc\rd", 7, "a\\nb\\tc\\rd" },
        { "\x1b[31mred\x1b[0m", 12, "\\x1b[31mred\\x1b[0m" },
        { "del\x7f", 4, "del\\x7f" },
        { "c1\xc2\x9b", 4, "c1\\u009b" },      /* CSI as a C1 character */
        { "bad\xff\xc3", 5, "bad\\xff\\xc3" }, /* not UTF-8, cut short */
        { "nul\0x", 5, "nul\\x00x" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *e = dv_text_escape(cases[i].in, cases[i].n);
        assert_non_null(e);
        assert_string_equal(e, cases[i].out);
        /* What comes out is printable as it is. */
        assert_null(dv_name_check(e, strlen(e)));
        free(e);
    }
}

static void
t_text_valid(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t n;
        bool ok;
    } cases[] = {
        { "", 0, true },
        { "Traceback (most recent call last):\n\tValueError", 46, true },
        { "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x90\x8d", 14, true },
        { "\x1b[31mred\x7f", 9, true }, /* control characters are text */
        { "nul\0x", 5, false },
        { "bad\xff", 4, false },
        { "cut \xe2\x9c", 6, false },  /* a sequence cut short */
        { "over \xc0\xaf", 7, false }, /* overlong '/' */
        { "surrogate \xed\xa0\x80", 13, false },
        { "past \xf4\x90\x80\x80", 9, false }, /* U+110000 */
        { "lone \x80", 6, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (dv_text_valid(cases[i].in, cases[i].n) != cases[i].ok)
            fail_msg("case %zu: want %d", i, cases[i].ok);
}

/* Which endpoints stay on this host. */
static void
t_endpoint_is_local(void **state)
{
    (void)state;
    const char *local[] = { "ipc:///tmp/x",         "inproc://q",
                            "tcp://127.0.0.1:7703", "tcp://127.1.2.3:1",
                            "tcp://[::1]:7703",     "tcp://localhost:7703",
                            "tcp://lo:7703" };
    for (size_t i = 0; i < sizeof local / sizeof *local; i++)
        assert_true(dv_endpoint_is_local(local[i]));
    const char *open_eps[] = { "tcp://*:7703",        "tcp://0.0.0.0:7703",
                               "tcp://10.0.0.1:7703", "tcp://[::]:7703",
                               "tcp://eth0:7703",     "tcp://host:1",
                               "pgm://eth0;1.2.3.4:5" };
    for (size_t i = 0; i < sizeof open_eps / sizeof *open_eps; i++)
        assert_false(dv_endpoint_is_local(open_eps[i]));
}

/* A quantile is never below the value at its rank: with two values p99
 * and p95 are the larger, p50 the smaller; one value is every quantile. */
static void
t_hist_quantile_rank(void **state)
{
    (void)state;
    dv_hist_t h;
    dv_hist_reset(&h);
    assert_int_equal(dv_hist_quantile(&h, 0.99), 0);
    dv_hist_record(&h, 40);
    assert_int_equal(dv_hist_quantile(&h, 0.0), 40);
    assert_int_equal(dv_hist_quantile(&h, 0.99), 40);
    dv_hist_record(&h, 5000);
    assert_int_equal(dv_hist_quantile(&h, 0.99), 5000);
    assert_int_equal(dv_hist_quantile(&h, 0.95), 5000);
    assert_true(dv_hist_quantile(&h, 0.50) >= 40);
    assert_true(dv_hist_quantile(&h, 0.50) < 5000);
    /* 100 values 1..100: p99 is the 99th, p50 the 50th (bucket edges may
     * round up, never down, never past the max) */
    dv_hist_reset(&h);
    for (uint64_t v = 1; v <= 100; v++)
        dv_hist_record(&h, v);
    assert_true(dv_hist_quantile(&h, 0.99) >= 99);
    assert_true(dv_hist_quantile(&h, 0.99) <= 100);
    assert_true(dv_hist_quantile(&h, 0.50) >= 50);
    assert_true(dv_hist_quantile(&h, 0.50) < 60);
    assert_int_equal(dv_hist_quantile(&h, 1.0), 100);
}

/* ---- dv_daemon: defaults, help and usage errors from the table ---------- */

static struct {
    const char *store;
    int64_t keep_ms;
    int workers;
} s_d;

static int
t_daemon_keep(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    if (strcmp(v, "7d") == 0) {
        *(int64_t *)f->ctx = 7LL * 86400000;
        return 0;
    }
    if (dv_duration_parse(v, f->ctx) != 0)
        return dv_err_set(err, es, "--%s: '%s' is not a duration", f->name, v);
    return 0;
}

static const dv_flag_t s_daemon_flags[] = {
    DV_FLAG_STR("store", &s_d.store, .arg = "URL", .env = "COMMON_TEST_STORE",
                .dflt = "t.db", .complete = DV_COMPLETE_FILE,
                .help = "where things are kept"),
    DV_FLAG_CALL("keep", t_daemon_keep, &s_d.keep_ms, .arg = "DURATION",
                 .dflt = "7d", .help = "keep things this long"),
    DV_FLAG_INTEGER("workers", &s_d.workers, 1, 9, .arg = "N", .dflt = "2",
                    .help = "how many"),
    DV_FLAG_TABLE_END,
};

/* Runs dv_daemon_parse on the words (NULL-ended) with stdout and stderr
 * in out and err. */
static int
t_daemon_run(dv_daemon_t *d, char *out, char *err, size_t size, ...)
{
    char *argv[16] = { "testd" };
    int argc = 1;
    va_list ap;
    va_start(ap, size);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 15)
        argv[argc++] = (char *)a;
    va_end(ap);
    fflush(stdout);
    fflush(stderr);
    FILE *fo = tmpfile(), *fe = tmpfile();
    int so = dup(1), se = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    int rc = dv_daemon_parse(d, argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    FILE *fs[2] = { fo, fe };
    char *bufs[2] = { out, err };
    for (int i = 0; i < 2; i++) {
        rewind(fs[i]);
        size_t n = fread(bufs[i], 1, size - 1, fs[i]);
        bufs[i][n] = '\0';
        fclose(fs[i]);
    }
    return rc;
}

static void
t_daemon(void **state)
{
    (void)state;
    static char out[8192], err[8192];
    dv_daemon_t d = { .name = "testd",
                      .about = "Does things.\n\nSecond paragraph.",
                      .notes = "signals: SIGHUP does nothing.",
                      .flags = s_daemon_flags };
    /* Defaults: .dflt, the variable, an FN flag's through its fn. */
    unsetenv("COMMON_TEST_STORE");
    assert_int_equal(t_daemon_run(&d, out, err, sizeof out, NULL), -1);
    assert_string_equal(s_d.store, "t.db");
    assert_true(s_d.keep_ms == 7LL * 86400000);
    assert_int_equal(s_d.workers, 2);
    assert_int_equal(d.log_level, 1); /* DV_INFO */
    assert_int_equal(d.log_text, 0);
    setenv("COMMON_TEST_STORE", "env.db", 1);
    assert_int_equal(t_daemon_run(&d, out, err, sizeof out, "--keep", "2m",
                                  "--log-format", "text", NULL),
                     -1);
    assert_string_equal(s_d.store, "env.db");
    assert_true(s_d.keep_ms == 120000);
    assert_int_equal(d.log_text, 1);
    assert_int_equal(
        t_daemon_run(&d, out, err, sizeof out, "--store=x.db", NULL), -1);
    assert_string_equal(s_d.store, "x.db");
    unsetenv("COMMON_TEST_STORE");

    /* --help: made from the tables. */
    assert_int_equal(t_daemon_run(&d, out, err, sizeof out, "--help", NULL), 0);
    assert_non_null(strstr(out, "usage: drover testd [OPTIONS]\n\nDoes "
                                "things.\n\nSecond paragraph.\n\noptions:\n"));
    assert_non_null(strstr(out, "  --store URL             where things are "
                                "kept ($COMMON_TEST_STORE; else t.db)\n"));
    assert_non_null(strstr(out, "  --keep DURATION         keep things this "
                                "long (default 7d)\n"));
    assert_non_null(strstr(out, "  --workers N             how many (1..9; "
                                "default 2)\n"));
    assert_non_null(strstr(out, "  --log-level LEVEL "));
    assert_non_null(strstr(out, "  --log-format FORMAT "));
    assert_non_null(strstr(out, "  -h, --help              show this help\n"
                                "\nsignals: SIGHUP does nothing.\n\n"));
    assert_non_null(strstr(out, "\n\nexit status: 0 after a clean stop; "));
    assert_string_equal(err, "");

    /* Usage errors: the reason, the usage line, the flag's help. */
    assert_int_equal(
        t_daemon_run(&d, out, err, sizeof out, "--workers", "10", NULL), 2);
    assert_string_equal(err,
                        "drover testd: --workers: '10' is not a whole number "
                        "in 1..9\n"
                        "usage: drover testd [OPTIONS]\n"
                        "  --workers N             how many (1..9; default "
                        "2)\n"
                        "(drover testd --help: every option)\n");
    assert_int_equal(
        t_daemon_run(&d, out, err, sizeof out, "--keep", "x", NULL), 2);
    assert_non_null(strstr(err, "\n  --keep DURATION "));
    assert_int_equal(
        t_daemon_run(&d, out, err, sizeof out, "--log-level", "loud", NULL), 2);
    assert_non_null(strstr(err, "\n  --log-level LEVEL "));
    assert_int_equal(
        t_daemon_run(&d, out, err, sizeof out, "--wokers", "3", NULL), 2);
    assert_non_null(strstr(err, "unknown option '--wokers'; did you mean "
                                "--workers?\nusage: drover testd [OPTIONS]\n"
                                "  --workers N "));
    assert_int_equal(t_daemon_run(&d, out, err, sizeof out, "extra", NULL), 2);
    assert_non_null(strstr(err, "unexpected argument 'extra'"));
}

/* The arena hands out aligned, disjoint memory; a reset keeps chunks up to
 * the bytes asked and reuses them; an allocation bigger than a chunk gets
 * its own. */
static void
t_arena(void **state)
{
    (void)state;
    dv_arena_t a = { 0 };
    char *p[3000];
    for (int i = 0; i < 3000; i++) {
        p[i] = dv_arena_alloc(&a, 1 + (size_t)(i % 61));
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % _Alignof(max_align_t), 0);
        memset(p[i], i & 0xff, 1 + (size_t)(i % 61));
    }
    for (int i = 0; i < 3000; i++)
        assert_int_equal((unsigned char)p[i][i % 61], i & 0xff);
    char *big = dv_arena_alloc(&a, 3 * DV_ARENA_CHUNK);
    assert_non_null(big);
    memset(big, 1, 3 * DV_ARENA_CHUNK);
    dv_arena_reset(&a, DV_ARENA_CHUNK);
    char *again = dv_arena_alloc(&a, 100);
    assert_ptr_equal(again, p[0]); /* the first chunk, kept */
    for (int i = 0; i < 5000; i++)
        assert_non_null(dv_arena_alloc(&a, 64));
    dv_arena_free(&a);
    assert_null(a.chunks);
    assert_non_null(dv_arena_alloc(&a, 8)); /* usable after free */
    dv_arena_free(&a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_backoff_growth),
        cmocka_unit_test(t_backoff_jitter),
        cmocka_unit_test(t_backoff_retry_after),
        cmocka_unit_test(t_backoff_edges),
        cmocka_unit_test(t_rand01),
        cmocka_unit_test(t_id_format_parse),
        cmocka_unit_test(t_id_parse_rejects),
        cmocka_unit_test(t_id_monotonic),
        cmocka_unit_test(t_id_time),
        cmocka_unit_test(t_duration_parse),
        cmocka_unit_test(t_time_round_trip),
        cmocka_unit_test(t_clocks),
        cmocka_unit_test(t_json_round_trip),
        cmocka_unit_test(t_json_depth),
        cmocka_unit_test(t_json_bin_and_rejects),
        cmocka_unit_test(t_json_pack_direct),
        cmocka_unit_test(t_strv_split),
        cmocka_unit_test(t_env_and_file),
        cmocka_unit_test(t_map),
        cmocka_unit_test(t_flags),
        cmocka_unit_test(t_daemon),
        cmocka_unit_test(t_text_escape),
        cmocka_unit_test(t_text_valid),
        cmocka_unit_test(t_endpoint_is_local),
        cmocka_unit_test(t_hist_quantile_rank),
        cmocka_unit_test(t_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
