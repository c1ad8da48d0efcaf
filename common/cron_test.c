/* Tests for common/dv_cron and dv_tz: the cron parser, the next firing in
 * UTC and across DST changes, tzfiles (the system's and hand-made ones in a
 * temp TZDIR, whole and truncated), and --every intervals.
 *
 * Expected instants were worked out while writing the tables, not at test
 * time: next firings with a brute-force Python reference (every matching
 * local time, mapped to UTC with zoneinfo), offsets with zoneinfo and
 * `TZ=... date -d @EPOCH`. The system zones come from Debian's tzdata
 * (scripts/deps.sh). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dv_cron.h"

#define ALL60 ((uint64_t)0x0fffffffffffffffULL)
#define B(n)  ((uint64_t)1 << (n))

/* ---- parsing ------------------------------------------------------------ */

typedef struct {
    const char *expr;
    uint64_t second, minute;
    uint32_t hour, mday;
    uint16_t month;
    uint8_t wday;
    bool mday_star, wday_star, hour_star, has_seconds;
} parse_case_t;

static const parse_case_t s_valid[] = {
    { "* * * * *", B(0), ALL60, 0xffffff, 0xfffffffe, 0x1ffe, 0x7f, true, true,
      true, false },
    { "0 0 1 1 *", B(0), B(0), B(0), B(1), B(1), 0x7f, false, true, false,
      false },
    { "*/15 */6 * * *", B(0), B(0) | B(15) | B(30) | B(45),
      B(0) | B(6) | B(12) | B(18), 0xfffffffe, 0x1ffe, 0x7f, true, true, true,
      false },
    { "5/20 1-3 1,15,31 * *", B(0), B(5) | B(25) | B(45), B(1) | B(2) | B(3),
      B(1) | B(15) | B(31), 0x1ffe, 0x7f, false, true, false, false },
    { "0-10/5,59 10-20/4 * * *", B(0), B(0) | B(5) | B(10) | B(59),
      B(10) | B(14) | B(18), 0xfffffffe, 0x1ffe, 0x7f, true, true, false,
      false },
    { "0 9 ? JAN-mar,Dec mon-FRI", B(0), B(0), B(9), 0xfffffffe,
      B(1) | B(2) | B(3) | B(12), 0x3e, true, false, false, false },
    { "0 0 * * 7", B(0), B(0), B(0), 0xfffffffe, 0x1ffe, B(0), true, false,
      false, false },
    { "0 0 * * 5-7", B(0), B(0), B(0), 0xfffffffe, 0x1ffe, B(5) | B(6) | B(0),
      true, false, false, false },
    { "0 0 * * sun,sat", B(0), B(0), B(0), 0xfffffffe, 0x1ffe, B(0) | B(6),
      true, false, false, false },
    { "0 0 * * */2", B(0), B(0), B(0), 0xfffffffe, 0x1ffe,
      B(0) | B(2) | B(4) | B(6), true, false, false, false },
    { "0 0 */10 feb/5 ?", B(0), B(0), B(0), B(1) | B(11) | B(21) | B(31),
      B(2) | B(7) | B(12), 0x7f, false, true, false, false },
    { "  30\t*/1 * * *  ", B(0), B(30), 0xffffff, 0xfffffffe, 0x1ffe, 0x7f,
      true, true, true, false },
    { "*/20 0 12 * * *", B(0) | B(20) | B(40), B(0), B(12), 0xfffffffe, 0x1ffe,
      0x7f, true, true, false, true },
    { "59 59 23 31 12 6", B(59), B(59), B(23), B(31), B(12), B(6), false, false,
      false, true },
    { "@yearly", B(0), B(0), B(0), B(1), B(1), 0x7f, false, true, false,
      false },
    { "@annually", B(0), B(0), B(0), B(1), B(1), 0x7f, false, true, false,
      false },
    { "@monthly", B(0), B(0), B(0), B(1), 0x1ffe, 0x7f, false, true, false,
      false },
    { "@weekly", B(0), B(0), B(0), 0xfffffffe, 0x1ffe, B(0), true, false, false,
      false },
    { "@daily", B(0), B(0), B(0), 0xfffffffe, 0x1ffe, 0x7f, true, true, false,
      false },
    { "@Midnight", B(0), B(0), B(0), 0xfffffffe, 0x1ffe, 0x7f, true, true,
      false, false },
    { "@hourly", B(0), B(0), 0xffffff, 0xfffffffe, 0x1ffe, 0x7f, true, true,
      true, false },
};

static void
t_parse_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_valid / sizeof s_valid[0]; i++) {
        const parse_case_t *pc = &s_valid[i];
        dv_cron_t c;
        char err[256] = "";
        if (dv_cron_parse(pc->expr, &c, err, sizeof err) != 0)
            fail_msg("\"%s\": %s", pc->expr, err);
        if (c.second != pc->second || c.minute != pc->minute ||
            c.hour != pc->hour || c.mday != pc->mday || c.month != pc->month ||
            c.wday != pc->wday || c.mday_star != pc->mday_star ||
            c.wday_star != pc->wday_star || c.hour_star != pc->hour_star ||
            c.has_seconds != pc->has_seconds)
            fail_msg("\"%s\": got s=%llx m=%llx h=%x dom=%x mon=%x dow=%x "
                     "stars %d%d%d sec %d",
                     pc->expr, (unsigned long long)c.second,
                     (unsigned long long)c.minute, c.hour, c.mday, c.month,
                     c.wday, c.mday_star, c.wday_star, c.hour_star,
                     c.has_seconds);
    }
}

static const struct {
    const char *expr;
    const char *want; /* a part of the reason */
} s_invalid[] = {
    { "", "empty" },
    { "   ", "empty" },
    { "* * * *", "4 fields" },
    { "* * * * * * *", "7 fields" },
    { "60 * * * *", "minute: 60 is out of range 0-59" },
    { "* 24 * * *", "hour: 24 is out of range 0-23" },
    { "* * 0 * *", "day-of-month: 0 is out of range 1-31" },
    { "* * 32 * *", "day-of-month: 32" },
    { "* * * 13 *", "month: 13 is out of range 1-12" },
    { "* * * 0 *", "month: 0" },
    { "* * * * 8", "day-of-week: 8 is out of range 0-7" },
    { "60 * * * * *", "second: 60" },
    { "* 99999999999999999999 * * *", "hour: " },
    { "10-5 * * * *", "minute: range 10-5 is reversed" },
    { "* * * * fri-mon", "day-of-week: range 5-1 is reversed" },
    { "*/0 * * * *", "minute: step 0" },
    { "* 1-5/0 * * *", "hour: step 0" },
    { "*/61 * * * *", "minute: step 61" },
    { "* * * * */8", "day-of-week: step 8" },
    { "*/ * * * *", "minute: step missing" },
    { "1,,2 * * * *", "minute: empty item" },
    { ",1 * * * *", "minute: empty item" },
    { "1, * * * *", "minute: empty item" },
    { "* 1- * * *", "hour: a value is missing" },
    { "5x * * * *", "minute: unexpected \"x\"" },
    { "1-2-3 * * * *", "minute: unexpected \"-\"" },
    { "** * * * *", "minute: unexpected \"*\"" },
    { "* * * * monday", "day-of-week: unknown name" },
    { "* * * foo *", "month: unknown name" },
    { "* * * * jan", "day-of-week: unknown name" },
    { "* jan * * *", "hour: unexpected \"j\"" },
    { "? * * * *", "minute: unexpected \"?\"" },
    { "* * ?/2 * *", "day-of-month: \"?\" takes no step" },
    { "-1 * * * *", "minute: unexpected \"-\"" },
    { "@reboot", "unknown macro" },
    { "@daily *", "takes no fields" },
    { "@", "unknown macro" },
};

static void
t_parse_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_invalid / sizeof s_invalid[0]; i++) {
        dv_cron_t c;
        char err[256] = "";
        if (dv_cron_parse(s_invalid[i].expr, &c, err, sizeof err) != -1)
            fail_msg("\"%s\" was accepted", s_invalid[i].expr);
        if (!strstr(err, s_invalid[i].want))
            fail_msg("\"%s\": \"%s\" lacks \"%s\"", s_invalid[i].expr, err,
                     s_invalid[i].want);
        assert_non_null(strstr(err, "cron: "));
    }
    /* Over 256 bytes, and NULL. */
    char big[300];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memcpy(big, "* * * * *", 9);
    dv_cron_t c;
    char err[256];
    assert_int_equal(dv_cron_parse(big, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "longer than 256"));
    big[256] = '\0'; /* exactly 256 bytes is fine */
    assert_int_equal(dv_cron_parse(big, &c, err, sizeof err), 0);
    assert_int_equal(dv_cron_parse(NULL, &c, err, sizeof err), -1);
    /* err may be NULL */
    assert_int_equal(dv_cron_parse("61 * * * *", &c, NULL, 0), -1);
}

/* ---- next firing ---------------------------------------------------------- */

typedef struct {
    const char *expr;
    const char *zone;
    int64_t after_s;
    int n;
    int64_t want[6]; /* successive firings, epoch s; -1: none */
} next_case_t;

/* Each row: the local time after which to look, then the firings that
 * follow, in local time. */
static const next_case_t s_next_cases[] = {
    /* 2026-01-15 10:17:23 UTC: 01-15 10:20:00 UTC, 01-15 10:25:00 UTC */
    { "*/5 * * * *", "UTC", 1768472243, 2, { 1768472400, 1768472700 } },
    /* 2026-01-15 10:17:23 UTC: 01-15 10:45:00 UTC, 01-15 11:00:00 UTC, 01-15 11:15:00 UTC */
    { "0,15,45 * * * *",
      "UTC",
      1768472243,
      3,
      { 1768473900, 1768474800, 1768475700 } },
    /* 2026-01-15 10:46:00 UTC: 01-15 11:05:00 UTC, 01-15 11:25:00 UTC, 01-15 11:45:00 UTC */
    { "5/20 * * * *",
      "UTC",
      1768473960,
      3,
      { 1768475100, 1768476300, 1768477500 } },
    /* 2026-01-15 10:17:23 UTC: 01-15 12:30:00 UTC, 01-15 18:30:00 UTC */
    { "30 */6 * * *", "UTC", 1768472243, 2, { 1768480200, 1768501800 } },
    /* 2026-01-16 17:30:00 UTC: 01-19 09:00:00 UTC, 01-19 10:00:00 UTC */
    { "0 9-17 * * mon-fri", "UTC", 1768584600, 2, { 1768813200, 1768816800 } },
    /* 2026-04-01 00:00:00 UTC: 05-31 00:00:00 UTC, 07-31 00:00:00 UTC */
    { "0 0 31 * *", "UTC", 1775001600, 2, { 1780185600, 1785456000 } },
    /* 2026-03-01 00:00:00 UTC: 02-29 00:00:00 UTC */
    { "0 0 29 2 *", "UTC", 1772323200, 1, { 1835395200 } },
    /* 2026-02-01 00:00:00 UTC: 02-06 12:00:00 UTC, 02-13 12:00:00 UTC, 02-20 12:00:00 UTC, 02-27 12:00:00 UTC */
    { "0 12 13 * 5",
      "UTC",
      1769904000,
      4,
      { 1770379200, 1770984000, 1771588800, 1772193600 } },
    /* 2026-03-05 00:00:00 UTC: 03-06 00:00:00 UTC, 03-07 00:00:00 UTC, 03-09 00:00:00 UTC, 03-16 00:00:00 UTC, 03-23 00:00:00 UTC */
    { "0 0 1-7 * mon",
      "UTC",
      1772668800,
      5,
      { 1772755200, 1772841600, 1773014400, 1773619200, 1774224000 } },
    /* 2026-03-05 00:00:00 UTC: 03-09 00:00:00 UTC */
    { "0 0 ? * MON", "UTC", 1772668800, 1, { 1773014400 } },
    /* 2026-03-05 00:00:00 UTC: 03-08 00:00:00 UTC */
    { "0 0 * * 7", "UTC", 1772668800, 1, { 1772928000 } },
    /* 2026-03-05 00:00:00 UTC: 07-01 00:00:00 UTC, 01-01 00:00:00 UTC */
    { "0 0 1 jan,jul *", "UTC", 1772668800, 2, { 1782864000, 1798761600 } },
    /* 2026-06-01 00:00:00 UTC: 12-31 23:59:00 UTC, 12-31 23:59:00 UTC */
    { "59 23 31 12 *", "UTC", 1780272000, 2, { 1798761540, 1830297540 } },
    /* 2026-01-15 10:17:23 UTC: 01-15 10:17:40 UTC, 01-15 10:18:00 UTC, 01-15 10:18:20 UTC */
    { "*/20 * * * * *",
      "UTC",
      1768472243,
      3,
      { 1768472260, 1768472280, 1768472300 } },
    /* 2026-01-15 10:17:23 UTC: 01-16 10:15:30 UTC, 01-17 10:15:30 UTC */
    { "30 15 10 * * *", "UTC", 1768472243, 2, { 1768558530, 1768644930 } },
    /* 2027-02-20 00:00:00 UTC: 02-22 00:00:00 UTC, 02-07 00:00:00 UTC, 02-14 00:00:00 UTC */
    { "0 0 29 2 1",
      "UTC",
      1803081600,
      3,
      { 1803254400, 1833494400, 1834099200 } },
    /* 2026-01-15 10:17:23 UTC: 01-01 00:00:00 UTC */
    { "@yearly", "UTC", 1768472243, 1, { 1798761600 } },
    /* 2026-01-15 10:17:23 UTC: 02-01 00:00:00 UTC */
    { "@monthly", "UTC", 1768472243, 1, { 1769904000 } },
    /* 2026-01-15 10:17:23 UTC: 01-18 00:00:00 UTC */
    { "@weekly", "UTC", 1768472243, 1, { 1768694400 } },
    /* 2026-01-15 10:17:23 UTC: 01-16 00:00:00 UTC */
    { "@daily", "UTC", 1768472243, 1, { 1768521600 } },
    /* 2026-01-15 10:17:23 UTC: 01-15 11:00:00 UTC */
    { "@hourly", "UTC", 1768472243, 1, { 1768474800 } },
    /* 2026-03-28 12:00:00 CET: 03-29 03:00:00 CEST, 03-30 02:30:00 CEST, 03-31 02:30:00 CEST */
    { "30 2 * * *",
      "Europe/Berlin",
      1774695600,
      3,
      { 1774746000, 1774830600, 1774917000 } },
    /* 2026-03-29 01:40:00 CET: 03-29 03:00:00 CEST, 03-29 03:30:00 CEST */
    { "*/30 * * * *",
      "Europe/Berlin",
      1774744800,
      2,
      { 1774746000, 1774747800 } },
    /* 2026-03-29 00:00:00 CET: 03-29 03:00:00 CEST */
    { "0 30 2 * * *", "Europe/Berlin", 1774738800, 1, { 1774746000 } },
    /* 2026-10-25 01:30:00 CEST: 10-25 02:00:00 CEST, 10-25 02:00:00 CET, 10-25 03:00:00 CET, 10-25 04:00:00 CET */
    { "0 * * * *",
      "Europe/Berlin",
      1792884600,
      4,
      { 1792886400, 1792890000, 1792893600, 1792897200 } },
    /* 2026-10-24 12:00:00 CEST: 10-25 02:30:00 CEST, 10-26 02:30:00 CET */
    { "30 2 * * *",
      "Europe/Berlin",
      1792836000,
      2,
      { 1792888200, 1792978200 } },
    /* 2026-03-08 00:00:00 EST: 03-08 03:00:00 EDT, 03-09 02:30:00 EDT */
    { "30 2 * * *",
      "America/New_York",
      1772946000,
      2,
      { 1772953200, 1773037800 } },
    /* 2026-03-08 01:00:00 EST: 03-08 01:30:00 EST, 03-08 03:00:00 EDT, 03-08 03:30:00 EDT */
    { "*/30 * * * *",
      "America/New_York",
      1772949600,
      3,
      { 1772951400, 1772953200, 1772955000 } },
    /* 2026-10-31 12:00:00 EDT: 11-01 01:30:00 EDT, 11-02 01:30:00 EST, 11-03 01:30:00 EST */
    { "30 1 * * *",
      "America/New_York",
      1793462400,
      3,
      { 1793511000, 1793601000, 1793687400 } },
    /* 2026-11-01 00:15:00 EDT: 11-01 00:30:00 EDT, 11-01 01:00:00 EDT, 11-01 01:30:00 EDT, 11-01 01:00:00 EST, 11-01 01:30:00 EST, 11-01 02:00:00 EST */
    { "*/30 * * * *",
      "America/New_York",
      1793506500,
      6,
      { 1793507400, 1793509200, 1793511000, 1793512800, 1793514600,
        1793516400 } },
    /* 2026-10-03 12:00:00 AEST: 10-04 03:00:00 AEDT, 10-05 02:30:00 AEDT */
    { "30 2 * * *",
      "Australia/Sydney",
      1790992800,
      2,
      { 1791043200, 1791127800 } },
    /* 2026-04-04 12:00:00 AEDT: 04-05 02:30:00 AEDT, 04-06 02:30:00 AEST */
    { "30 2 * * *",
      "Australia/Sydney",
      1775264400,
      2,
      { 1775316600, 1775406600 } },
    /* 2040-03-24 12:00:00 CET: 03-25 03:00:00 CEST, 03-26 02:30:00 CEST */
    { "30 2 * * *",
      "Europe/Berlin",
      2216199600,
      2,
      { 2216250000, 2216334600 } },
    /* 2040-11-04 00:30:00 EDT: 11-04 01:00:00 EDT, 11-04 01:00:00 EST, 11-04 02:00:00 EST, 11-04 03:00:00 EST */
    { "0 * * * *",
      "America/New_York",
      2235616200,
      4,
      { 2235618000, 2235621600, 2235625200, 2235628800 } },
    /* 2040-01-01 00:00:00 CET: 07-01 12:00:00 CEST */
    { "0 12 1 7 *", "Europe/Berlin", 2208985200, 1, { 2224749600 } },
};

static void
t_next_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_next_cases / sizeof s_next_cases[0]; i++) {
        const next_case_t *nc = &s_next_cases[i];
        dv_cron_t c;
        char err[256] = "";
        if (dv_cron_parse(nc->expr, &c, err, sizeof err) != 0)
            fail_msg("\"%s\": %s", nc->expr, err);
        dv_tz_t *tz = dv_tz_load(nc->zone, err, sizeof err);
        if (!tz)
            fail_msg("%s: %s", nc->zone, err);
        int64_t t = nc->after_s * 1000;
        for (int k = 0; k < nc->n; k++) {
            int64_t got = dv_cron_next(&c, tz, t);
            int64_t want = nc->want[k] < 0 ? -1 : nc->want[k] * 1000;
            if (got != want)
                fail_msg("\"%s\" in %s, firing %d after %lld: got %lld, "
                         "want %lld",
                         nc->expr, nc->zone, k + 1, (long long)t,
                         (long long)got, (long long)want);
            t = got;
        }
        dv_tz_free(&tz);
        assert_null(tz);
    }
}

static int64_t
s_next(const char *expr, const dv_tz_t *tz, int64_t after_ms)
{
    dv_cron_t c;
    char err[256] = "";
    if (dv_cron_parse(expr, &c, err, sizeof err) != 0)
        fail_msg("\"%s\": %s", expr, err);
    return dv_cron_next(&c, tz, after_ms);
}

static void
t_next_edges(void **state)
{
    (void)state;
    /* Strictly after, at ms resolution: 2026-01-15 10:20:00 UTC. */
    const int64_t f = 1768472400000LL;
    assert_int_equal(s_next("*/5 * * * *", NULL, f - 1), f);
    assert_int_equal(s_next("*/5 * * * *", NULL, f), f + 300000);
    assert_int_equal(s_next("*/5 * * * *", NULL, f + 999), f + 300000);
    assert_int_equal(s_next("* * * * * *", NULL, f), f + 1000);
    assert_int_equal(s_next("* * * * * *", NULL, f + 999), f + 1000);
    assert_int_equal(s_next("* * * * * *", NULL, f - 1), f);
    /* Before and across 1970 (floor division of negative instants). */
    assert_int_equal(s_next("0 0 1 1 *", NULL, -1), 0);
    assert_int_equal(s_next("0 0 1 1 *", NULL, -1000), 0);
    assert_int_equal(s_next("0 0 1 1 *", NULL, 0), 31536000000LL);
    assert_int_equal(s_next("0 0 31 12 *", NULL, -86400001), -86400000);
    /* Never, within 8 years (and the search is bounded). */
    assert_int_equal(s_next("0 0 30 2 *", NULL, f), -1);
    assert_int_equal(s_next("0 0 31 4,6,9,11 *", NULL, f), -1);
    assert_int_equal(s_next("0 0 30 2 * ", NULL, -1000000000000LL), -1);
    /* Feb 29 on a Monday... and the OR rule: any Feb 29, any Monday in
     * February. 2028-02-29 is a Tuesday: a day-of-month match. */
    assert_int_equal(s_next("0 0 29 2 mon", NULL, 1834099200000LL),
                     1834704000000LL); /* 2028-02-21 Mon */
    assert_int_equal(s_next("0 0 29 2 mon", NULL, 1834704000000LL),
                     1835308800000LL); /* 2028-02-28 Mon */
    assert_int_equal(s_next("0 0 29 2 mon", NULL, 1835308800000LL),
                     1835395200000LL); /* 2028-02-29 Tue */
    /* Out of the supported range: none. */
    assert_int_equal(s_next("* * * * *", NULL, INT64_MAX), -1);
    assert_int_equal(s_next("* * * * *", NULL, INT64_MIN), -1);
}

/* Every firing of "* * * * * *" for a whole day around the Berlin and New
 * York changes: one second apart, except across the gap (one hour less)
 * and the overlap (the hour twice, each second firing twice). */
static void
t_next_every_second(void **state)
{
    (void)state;
    char err[256];
    dv_tz_t *ny = dv_tz_load("America/New_York", err, sizeof err);
    assert_non_null(ny);
    dv_cron_t c;
    assert_int_equal(dv_cron_parse("* * * * * *", &c, err, sizeof err), 0);
    int64_t t = 1793505600000LL; /* 2026-11-01 00:00 EDT */
    int n = 0;
    while (t < 1793505600000LL + 6 * 3600000LL) {
        int64_t nt = dv_cron_next(&c, ny, t);
        assert_int_equal(nt, t + 1000);
        t = nt;
        n++;
    }
    assert_int_equal(n, 6 * 3600);
    /* The same with a fixed hour: "* * 1 * * *" fires through the first
     * 01:xx only (01:00:00 EDT = 05:00Z .. 01:59:59 EDT = 05:59:59Z), then
     * the next day at 01:00:00 EST (11-02 06:00Z). */
    assert_int_equal(dv_cron_parse("* * 1 * * *", &c, err, sizeof err), 0);
    assert_int_equal(dv_cron_next(&c, ny, 1793505600000LL), 1793509200000LL);
    assert_int_equal(dv_cron_next(&c, ny, 1793512798000LL), 1793512799000LL);
    assert_int_equal(dv_cron_next(&c, ny, 1793512799000LL), 1793599200000LL);
    dv_tz_free(&ny);
}

/* ---- time zones --------------------------------------------------------- */

static void
t_tz_offsets(void **state)
{
    (void)state;
    static const struct {
        const char *zone;
        int64_t t;
        int32_t off;
        bool dst;
    } cases[] = {
        { "UTC", 1774746000, 0, false },
        { "Europe/Berlin", 1768472243, 3600, false },  /* 2026-01-15 */
        { "Europe/Berlin", 1774745999, 3600, false },  /* 03-29 01:59:59 CET */
        { "Europe/Berlin", 1774746000, 7200, true },   /* 03-29 03:00 CEST */
        { "Europe/Berlin", 1792889999, 7200, true },   /* 10-25 02:59:59 */
        { "Europe/Berlin", 1792890000, 3600, false },  /* 10-25 02:00 CET */
        { "Europe/Berlin", -2422054409, 3208, false }, /* 1893, LMT */
        { "Europe/Berlin", -1000000000, 3600, false }, /* 1938-04-24 */
        { "Europe/Berlin", -800000000, 7200, true },   /* 1944-08-25 */
        { "Europe/Berlin", 2224749600, 7200, true },   /* 2040-07-01 */
        { "Europe/Berlin", 4102444800, 3600, false },  /* 2100-01-01 */
        { "Europe/Berlin", 4118083200, 7200, true },   /* 2100-07-01 */
        { "America/New_York", 1772953199, -18000, false },
        { "America/New_York", 1772953200, -14400, true },
        { "America/New_York", 1793512799, -14400, true },
        { "America/New_York", 1793512800, -18000, false },
        { "America/New_York", 2235621599, -14400, true }, /* 2040-11-04 */
        { "America/New_York", 2235621600, -18000, false },
        { "Australia/Sydney", 1775318399, 39600, true }, /* 2026-04-05 */
        { "Australia/Sydney", 1775318400, 36000, false },
        { "Australia/Sydney", 1791043199, 36000, false }, /* 2026-10-04 */
        { "Australia/Sydney", 1791043200, 39600, true },
        { "Australia/Lord_Howe", 1783000000, 37800, false },
        { "Australia/Lord_Howe", 1798761600, 39600, true },
        { "Asia/Kolkata", 1768472243, 19800, false },
        { "Asia/Kathmandu", 1768472243, 20700, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        dv_tz_t *tz = dv_tz_load(cases[i].zone, err, sizeof err);
        if (!tz)
            fail_msg("%s: %s", cases[i].zone, err);
        assert_string_equal(dv_tz_name(tz), cases[i].zone);
        bool dst = !cases[i].dst;
        int32_t off = dv_tz_offset(tz, cases[i].t, &dst);
        if (off != cases[i].off || dst != cases[i].dst)
            fail_msg("%s at %lld: got %d dst %d, want %d dst %d", cases[i].zone,
                     (long long)cases[i].t, off, dst, cases[i].off,
                     cases[i].dst);
        assert_int_equal(dv_tz_offset(tz, cases[i].t, NULL), cases[i].off);
        dv_tz_free(&tz);
    }
    /* NULL is UTC; dv_tz_free is NULL-safe. */
    assert_int_equal(dv_tz_offset(NULL, 1774746000, NULL), 0);
    assert_string_equal(dv_tz_name(NULL), "UTC");
    dv_tz_free(NULL);
    dv_tz_t *none = NULL;
    dv_tz_free(&none);
    /* The transitions of 2026 in Berlin, from the table and (2040) from the
     * footer rule. */
    char err[256];
    dv_tz_t *be = dv_tz_load("Europe/Berlin", err, sizeof err);
    assert_non_null(be);
    assert_int_equal(dv_tz_next_transition(be, 1768472243), 1774746000);
    assert_int_equal(dv_tz_next_transition(be, 1774746000), 1792890000);
    assert_int_equal(dv_tz_next_transition(be, 2208985200), 2216250000);
    assert_int_equal(dv_tz_next_transition(NULL, 0), INT64_MAX);
    dv_tz_free(&be);
}

static void
t_tz_names(void **state)
{
    (void)state;
    static const char *bad[] = {
        "../etc/passwd",
        "/etc/localtime",
        "Europe/../../etc/passwd",
        "",
        "Europe/Berlin;x",
        "Europe/Berlin\n",
        "a b",
        "Europe/Ber.lin",
        "Europe/*",
        "Europe\\Berlin",
    };
    char err[256];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (dv_tz_load(bad[i], err, sizeof err) != NULL)
            fail_msg("\"%s\" was accepted", bad[i]);
        if (!strstr(err, "invalid zone name"))
            fail_msg("\"%s\": %s", bad[i], err);
    }
    assert_null(dv_tz_load(NULL, err, sizeof err));
    char longname[200];
    memset(longname, 'A', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_null(dv_tz_load(longname, err, sizeof err));
    assert_non_null(strstr(err, "invalid zone name"));
    /* Missing, and not a file. */
    assert_null(dv_tz_load("Foo/Bar", err, sizeof err));
    assert_non_null(strstr(err, "unknown zone \"Foo/Bar\""));
    assert_null(dv_tz_load("Europe", err, sizeof err));
    assert_non_null(strstr(err, "not a regular file"));
    /* Names with '+', '-' and '_' are fine. */
    dv_tz_t *tz = dv_tz_load("Etc/GMT+5", err, sizeof err);
    assert_non_null(tz);
    assert_int_equal(dv_tz_offset(tz, 0, NULL), -18000);
    dv_tz_free(&tz);
    tz = dv_tz_load("America/Port-au-Prince", err, sizeof err);
    assert_non_null(tz);
    dv_tz_free(&tz);
}

/* ---- hand-made tzfiles in a temp TZDIR ----------------------------------- */

static char s_dir[64];

static int
s_dir_setup(void **state)
{
    (void)state;
    snprintf(s_dir, sizeof s_dir, "/tmp/cron_test.XXXXXX");
    if (!mkdtemp(s_dir))
        return -1;
    setenv("TZDIR", s_dir, 1);
    return 0;
}

static int
s_dir_teardown(void **state)
{
    (void)state;
    unsetenv("TZDIR");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
s_write(const char *name, const void *data, size_t len)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static size_t
s_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    return (size_t)n;
}

/* A tzfile: version ('\0', '2', '3'), transitions, types (offset, isdst;
 * designation "XXX" for all), the footer (v2+). Returns its length. */
static size_t
s_tzif(unsigned char *buf, char version, int ntrans, const int64_t *trans,
       const uint8_t *idx, int ntypes, const int32_t *offs, const uint8_t *dsts,
       const char *footer)
{
    size_t n = 0;
    for (int pass = 0; pass < (version ? 2 : 1); pass++) {
        int tsize = pass ? 8 : 4;
        memcpy(buf + n, "TZif", 4);
        buf[n + 4] = (unsigned char)version;
        memset(buf + n + 5, 0, 15);
        n += 20;
        n += s_be(buf + n, 0, 4); /* isutcnt */
        n += s_be(buf + n, 0, 4); /* isstdcnt */
        n += s_be(buf + n, 0, 4); /* leapcnt */
        n += s_be(buf + n, (uint64_t)ntrans, 4);
        n += s_be(buf + n, (uint64_t)ntypes, 4);
        n += s_be(buf + n, 4, 4); /* charcnt */
        for (int i = 0; i < ntrans; i++)
            n += s_be(buf + n, (uint64_t)trans[i], tsize);
        for (int i = 0; i < ntrans; i++)
            buf[n++] = idx[i];
        for (int i = 0; i < ntypes; i++) {
            n += s_be(buf + n, (uint32_t)offs[i], 4);
            buf[n++] = dsts[i];
            buf[n++] = 0;
        }
        memcpy(buf + n, "XXX", 4);
        n += 4;
    }
    if (version) {
        n += (size_t)sprintf((char *)buf + n, "\n%s\n", footer);
    }
    return n;
}

typedef struct {
    int64_t t;
    int32_t off;
    bool dst;
} probe_t;

static void
s_probe(const char *name, const probe_t *p, size_t n)
{
    char err[256] = "";
    dv_tz_t *tz = dv_tz_load(name, err, sizeof err);
    if (!tz)
        fail_msg("%s: %s", name, err);
    for (size_t i = 0; i < n; i++) {
        bool dst;
        int32_t off = dv_tz_offset(tz, p[i].t, &dst);
        if (off != p[i].off || dst != p[i].dst)
            fail_msg("%s at %lld: got %d dst %d, want %d dst %d", name,
                     (long long)p[i].t, off, dst, p[i].off, p[i].dst);
    }
    dv_tz_free(&tz);
}

/* Footer rules (no transitions in the file: the rule is all there is). The
 * expected offsets are CPython zoneinfo's for the same bytes, but for the
 * zero-based "n" form where CPython is a day late: there glibc's
 * `TZ='AAA3BBB,59/2,299/2' date -d @T`. */
static void
t_tz_footer_rules(void **state)
{
    (void)state;
    unsigned char buf[4096];
    static const uint8_t d0[] = { 0 }, d1[] = { 1 };
    size_t n;

    /* The US rule (2026: 03-08 07:00Z, 11-01 06:00Z). */
    n = s_tzif(buf, '2', 0, NULL, NULL, 1, (int32_t[]){ -18000 }, d0,
               "EST5EDT,M3.2.0,M11.1.0");
    s_write("us", buf, n);
    static const probe_t us[] = {
        { 1772953199, -18000, false }, { 1772953200, -14400, true },
        { 1793512799, -14400, true },  { 1793512800, -18000, false },
        { -100000, -18000, false },    { 999999999, -14400, true },
    };
    s_probe("us", us, sizeof us / sizeof us[0]);

    /* Israel: 26:00 on the fourth Thursday of March (02:00 on Friday);
     * 2026: 03-27 00:00Z. Ends on the last Sunday of October, 02:00 IDT
     * (10-24 23:00Z). */
    n = s_tzif(buf, '3', 0, NULL, NULL, 1, (int32_t[]){ 7200 }, d0,
               "IST-2IDT,M3.4.4/26,M10.5.0");
    s_write("israel", buf, n);
    static const probe_t il[] = {
        { 1774569599, 7200, false }, { 1774569600, 10800, true },
        { 1774573200, 10800, true }, { 1792972800, 7200, false },
        { 1792882799, 10800, true }, { 1792882800, 7200, false },
    };
    s_probe("israel", il, sizeof il / sizeof il[0]);

    /* Nuuk: negative transition times, and <...> names. 2026: starts
     * 03-29 -01:00 local (-02) = 01:00Z, ends 10-25 00:00 (-01) = 01:00Z. */
    n = s_tzif(buf, '3', 0, NULL, NULL, 1, (int32_t[]){ -7200 }, d0,
               "<-02>2<-01>,M3.5.0/-1,M10.5.0/0");
    s_write("nuuk", buf, n);
    static const probe_t gl[] = {
        { 1774745999, -7200, false },
        { 1774746000, -3600, true },
        { 1792889999, -3600, true },
        { 1792890000, -7200, false },
    };
    s_probe("nuuk", gl, sizeof gl / sizeof gl[0]);

    /* DST all year (v3): ends at 25:00 on Dec 31 when it begins again. */
    n = s_tzif(buf, '3', 0, NULL, NULL, 1, (int32_t[]){ -14400 }, d1,
               "EST5EDT,0/0,J365/25");
    s_write("alldst", buf, n);
    static const probe_t ad[] = {
        { 1767225600, -14400, true }, { 1767243599, -14400, true },
        { 1767243600, -14400, true }, { 1783000000, -14400, true },
        { -100000, -14400, true },
    };
    s_probe("alldst", ad, sizeof ad / sizeof ad[0]);

    /* Jn (Feb 29 not counted: J60 is Mar 1) and n (zero-based, Feb 29
     * counted: 59 is Mar 1 in 2026, Feb 29 in 2028). 02:00 -03 = 05:00Z. */
    n = s_tzif(buf, '2', 0, NULL, NULL, 1, (int32_t[]){ -10800 }, d0,
               "AAA3BBB,J60/2,J300/2");
    s_write("julian", buf, n);
    static const probe_t jn[] = {
        { 1772341199, -10800, false }, /* 2026-03-01 04:59:59Z */
        { 1772341200, -7200, true },   /* 05:00Z */
        { 1793512800, -10800, false },
        { 1835413200, -10800, false }, /* 2028-02-29 05:00Z */
        { 1835499599, -10800, false },
        { 1835499600, -7200, true }, /* 2028-03-01 05:00Z */
    };
    s_probe("julian", jn, sizeof jn / sizeof jn[0]);
    n = s_tzif(buf, '2', 0, NULL, NULL, 1, (int32_t[]){ -10800 }, d0,
               "AAA3BBB,59/2,299/2");
    s_write("zerobased", buf, n);
    static const probe_t zb[] = {
        { 1772337600, -10800, false }, /* 2026-03-01 04:00Z */
        { 1772341199, -10800, false }, { 1772341200, -7200, true },
        { 1835413199, -10800, false }, /* 2028-02-29 04:59:59Z */
        { 1835413200, -7200, true },
    };
    s_probe("zerobased", zb, sizeof zb / sizeof zb[0]);

    /* Lord Howe: hh:mm offsets, southern hemisphere, 30-minute DST. */
    n = s_tzif(buf, '2', 0, NULL, NULL, 1, (int32_t[]){ 37800 }, d0,
               "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0");
    s_write("howe", buf, n);
    static const probe_t lh[] = {
        { 1775343600, 37800, false },
        { 1783000000, 37800, false },
        { 1793512800, 39600, true },
        { 1767225600, 39600, true },
    };
    s_probe("howe", lh, sizeof lh / sizeof lh[0]);

    /* A v1 file: no footer; after the last transition, its type. */
    n = s_tzif(buf, '\0', 2, (int64_t[]){ 1000000000, 1010000000 },
               (uint8_t[]){ 1, 0 }, 2, (int32_t[]){ 3600, 7200 },
               (uint8_t[]){ 0, 1 }, NULL);
    s_write("v1", buf, n);
    static const probe_t v1[] = {
        { -100000, 3600, false },    { 999999999, 3600, false },
        { 1000000000, 7200, true },  { 1009999999, 7200, true },
        { 1010000000, 3600, false }, { 1783000000, 3600, false },
    };
    s_probe("v1", v1, sizeof v1 / sizeof v1[0]);

    /* Transitions, then the footer: the table up to and at the last
     * transition, the rule after it. */
    n = s_tzif(buf, '2', 1, (int64_t[]){ 1500000000 }, (uint8_t[]){ 1 }, 2,
               (int32_t[]){ 0, 3600 }, (uint8_t[]){ 0, 0 },
               "CET-1CEST,M3.5.0,M10.5.0/3");
    s_write("mixed", buf, n);
    static const probe_t mx[] = {
        { 1499999999, 0, false },   { 1500000000, 3600, false },
        { 1500000001, 7200, true }, { 1774745999, 3600, false },
        { 1774746000, 7200, true }, { 1792890000, 3600, false },
    };
    s_probe("mixed", mx, sizeof mx / sizeof mx[0]);

    /* A cron expression across the rule's change: "30 2 * * *" in the US
     * rule, 2026-03-08 (the gap) fires at 03:00 EDT = 07:00Z. */
    dv_tz_t *tz = dv_tz_load("us", NULL, 0);
    assert_non_null(tz);
    dv_cron_t c;
    assert_int_equal(dv_cron_parse("30 2 * * *", &c, NULL, 0), 0);
    assert_int_equal(dv_cron_next(&c, tz, 1772946000000LL), 1772953200000LL);
    dv_tz_free(&tz);
}

/* Bad files: each refused with a reason. */
static void
t_tz_bad_files(void **state)
{
    (void)state;
    unsigned char good[4096], buf[4096];
    char err[256];
    size_t n = s_tzif(good, '2', 2, (int64_t[]){ 1000000000, 1010000000 },
                      (uint8_t[]){ 1, 0 }, 2, (int32_t[]){ 3600, 7200 },
                      (uint8_t[]){ 0, 1 }, "CET-1CEST,M3.5.0,M10.5.0/3");
    s_write("good", good, n);
    dv_tz_t *tz = dv_tz_load("good", err, sizeof err);
    if (!tz)
        fail_msg("good: %s", err);
    dv_tz_free(&tz);

    /* Truncated at every length: refused, never read past the end. */
    for (size_t len = 0; len < n; len++) {
        s_write("cut", good, len);
        err[0] = '\0';
        if (dv_tz_load("cut", err, sizeof err) != NULL)
            fail_msg("cut at %zu of %zu was accepted", len, n);
        assert_non_null(strstr(err, "tz: cut: "));
    }
    s_write("cut", good, 100);
    assert_null(dv_tz_load("cut", err, sizeof err));
    assert_non_null(strstr(err, "truncated"));

    /* A copy of the system's Berlin, truncated. */
    FILE *f = fopen("/usr/share/zoneinfo/Europe/Berlin", "rb");
    assert_non_null(f);
    size_t blen = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(blen > 1000 && blen < sizeof buf);
    s_write("berlin", buf, blen);
    tz = dv_tz_load("berlin", err, sizeof err);
    assert_non_null(tz);
    assert_int_equal(dv_tz_offset(tz, 1774746000, NULL), 7200);
    dv_tz_free(&tz);
    const size_t cuts[] = { 4, 43, 44, 500, blen / 2, blen - 30, blen - 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        s_write("berlin", buf, cuts[i]);
        if (dv_tz_load("berlin", err, sizeof err) != NULL)
            fail_msg("Berlin cut at %zu was accepted", cuts[i]);
        assert_non_null(strstr(err, "tz: berlin: "));
    }

    /* Inconsistent contents. Offsets into the v2 file: the v1 header at 0,
     * its block (2*4 + 2 + 2*6 + 4 = 26 bytes) at 44, the v2 header at 70,
     * the v2 block at 114 (times, then indices at 130, types at 132, the
     * designations at 144), the footer at 148. */
    static const struct {
        size_t at;
        unsigned char byte;
        const char *want;
    } pokes[] = {
        { 0, 'X', "TZif magic" },
        { 4, '9', "version" },
        { 70 + 4, '3', "differ in version" },
        { 70 + 39, 0, "typecnt" },          /* typecnt 0 */
        { 70 + 31, 1, "leap-second" },      /* leapcnt 1 */
        { 70 + 35, 200, "truncated" },      /* timecnt 202 */
        { 70 + 32, 1, "truncated" },        /* timecnt 2^24 + 2 */
        { 70 + 23, 3, "isutcnt" },          /* isutcnt 3 */
        { 114 + 4, 0x7f, "not ascending" }, /* first > second */
        { 130, 2, "type 2 of 2" },          /* index out of range */
        { 132 + 4, 2, "isdst" },            /* isdst 2 */
        { 132 + 5, 9, "designation" },      /* past charcnt */
        { 132, 0x80, "offset" },            /* offset -2^31 + ... */
        { 148, 'x', "no footer" },          /* its "\n" -> "x" */
    };
    for (size_t i = 0; i < sizeof pokes / sizeof pokes[0]; i++) {
        memcpy(buf, good, n);
        buf[pokes[i].at] = pokes[i].byte;
        s_write("poked", buf, n);
        err[0] = '\0';
        if (dv_tz_load("poked", err, sizeof err) != NULL)
            fail_msg("poke %zu was accepted", i);
        if (!strstr(err, pokes[i].want))
            fail_msg("poke %zu: \"%s\" lacks \"%s\"", i, err, pokes[i].want);
    }
    /* Footers: unterminated, bytes after it, bad rules. */
    memcpy(buf, good, n);
    s_write("poked", buf, n - 1);
    assert_null(dv_tz_load("poked", err, sizeof err));
    assert_non_null(strstr(err, "unterminated footer"));
    buf[n] = 'x';
    s_write("poked", buf, n + 1);
    assert_null(dv_tz_load("poked", err, sizeof err));
    assert_non_null(strstr(err, "after the footer"));
    static const char *bad_rules[] = {
        "CET",
        "CET-1CEST",
        "CET-1CEST,M3.5.0",
        "CET-1CEST,M13.5.0,M10.5.0",
        "CET-1CEST,M3.6.0,M10.5.0",
        "CET-1CEST,M3.5.7,M10.5.0",
        "CET-1CEST,J0,J100",
        "CET-1CEST,366,100",
        "CET-1CEST,M3.5.0/168,M10.5.0",
        "CET-25",
        "C-1",
        "<CET-1",
        "CET-1CEST,M3.5.0,M10.5.0x",
        "CET-1:60",
    };
    for (size_t i = 0; i < sizeof bad_rules / sizeof bad_rules[0]; i++) {
        n = s_tzif(buf, '2', 0, NULL, NULL, 1, (int32_t[]){ 3600 },
                   (uint8_t[]){ 0 }, bad_rules[i]);
        s_write("rule", buf, n);
        if (dv_tz_load("rule", err, sizeof err) != NULL)
            fail_msg("footer \"%s\" was accepted", bad_rules[i]);
        assert_non_null(strstr(err, "footer"));
    }
    /* Over 256 KiB. */
    unsigned char *huge = calloc(1, 300 * 1024);
    assert_non_null(huge);
    memcpy(huge, good, 44);
    s_write("huge", huge, 300 * 1024);
    free(huge);
    assert_null(dv_tz_load("huge", err, sizeof err));
    assert_non_null(strstr(err, "at most 262144 bytes"));
}

/* UTC works with no tzdata at all; other zones do not. */
static void
t_tz_utc_without_file(void **state)
{
    (void)state;
    char err[256];
    dv_tz_t *tz = dv_tz_load("UTC", err, sizeof err); /* s_dir has none */
    assert_non_null(tz);
    assert_string_equal(dv_tz_name(tz), "UTC");
    bool dst = true;
    assert_int_equal(dv_tz_offset(tz, 1774746000, &dst), 0);
    assert_false(dst);
    assert_int_equal(dv_tz_next_transition(tz, 0), INT64_MAX);
    dv_cron_t c;
    assert_int_equal(dv_cron_parse("@daily", &c, NULL, 0), 0);
    assert_int_equal(dv_cron_next(&c, tz, 1768472243000LL), 1768521600000LL);
    dv_tz_free(&tz);
    assert_null(dv_tz_load("Europe/Berlin", err, sizeof err));
    assert_non_null(strstr(err, "unknown zone"));
}

/* ---- --every ------------------------------------------------------------ */

static void
t_every(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t ms;
    } ok[] = {
        { "1s", 1000 },
        { "30s", 30000 },
        { "5m", 300000 },
        { "2h", 7200000 },
        { "1d", 86400000 },
        { "1h30m", 5400000 },
        { "1d2h3m4s", 93784000 },
        { "0h1s", 1000 },
        { "366d", 31622400000LL },
        { "365d24h", 31622400000LL },
        { "31622400s", 31622400000LL },
        { "0090s", 90000 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t ms = -1;
        char err[256] = "";
        if (dv_every_parse(ok[i].text, &ms, err, sizeof err) != 0)
            fail_msg("\"%s\": %s", ok[i].text, err);
        assert_int_equal(ms, ok[i].ms);
    }
    static const struct {
        const char *text;
        const char *want;
    } bad[] = {
        { "", "empty" },
        { "0s", "less than 1s" },
        { "0d0h", "less than 1s" },
        { "-5m", "expected a number" },
        { "+5m", "expected a number" },
        { "5", "missing unit" },
        { "5x", "unknown unit" },
        { "500ms", "ms is not a unit" },
        { "1.5h", "unknown unit" },
        { "5 m", "unknown unit" },
        { " 5m", "expected a number" },
        { "5m ", "expected a number" },
        { "5M", "unknown unit" },
        { "30m1h", "from days down" },
        { "1m1m", "from days down" },
        { "367d", "more than 366 days" },
        { "366d1s", "more than 366 days" },
        { "31622401s", "more than 366 days" },
        { "99999999999999999999999s", "more than 366 days" },
        { "h", "expected a number" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 42;
        char err[256] = "";
        if (dv_every_parse(bad[i].text, &ms, err, sizeof err) != -1)
            fail_msg("\"%s\" was accepted", bad[i].text);
        if (!strstr(err, bad[i].want))
            fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i].text, err,
                     bad[i].want);
        assert_int_equal(ms, 42);
    }
    int64_t ms;
    assert_int_equal(dv_every_parse(NULL, &ms, NULL, 0), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_parse_valid),
        cmocka_unit_test(t_parse_invalid),
        cmocka_unit_test(t_next_table),
        cmocka_unit_test(t_next_edges),
        cmocka_unit_test(t_next_every_second),
        cmocka_unit_test(t_tz_offsets),
        cmocka_unit_test(t_tz_names),
        cmocka_unit_test_setup_teardown(t_tz_footer_rules, s_dir_setup,
                                        s_dir_teardown),
        cmocka_unit_test_setup_teardown(t_tz_bad_files, s_dir_setup,
                                        s_dir_teardown),
        cmocka_unit_test_setup_teardown(t_tz_utc_without_file, s_dir_setup,
                                        s_dir_teardown),
        cmocka_unit_test(t_every),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
