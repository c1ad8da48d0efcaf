/* dv_cron - cron expressions: parsing, the next firing in a time zone, and
 * --every intervals. The contract is in dv_cron.h; time zones are dv_tz.c.
 *
 * The next firing is found on local wall-clock times: the next local time
 * the fields match is found with whole months, days, hours and minutes
 * skipped at once (dv_civil.h's integer calendar), and each is mapped to
 * the UTC instants that show it (none in a gap, two in an overlap) with the
 * DST rules of dv_cron.h. */
#include "dv_cron.h"

#include "dv_civil.h"
#include "dv_err.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

#define CRON_MAX_LEN 256
/* How far ahead dv_cron_next looks: 8 years of local time. */
#define CRON_HORIZON_S ((int64_t)8 * 366 * DV_DAY_S)
/* Offsets from UTC are within +-26 h (RFC 8536: -89999..93599 s). */
#define CRON_OFF_MAX_S (26 * 3600)
/* The instants dv_cron_next accepts: about years -1200..5100, so that
 * nothing below overflows and the result in ms fits. */
#define CRON_RANGE_S ((int64_t)100000000000)

/* ---- parsing ------------------------------------------------------------ */

typedef struct {
    const char *name;
    int min, max;      /* values as written (day-of-week: 0..7) */
    int star_max;      /* the last value of "*" and "a/n" */
    const char *names; /* three-letter names for min.., or NULL */
    bool question;     /* "?" accepted (the day fields) */
} cron_field_t;

enum { F_SEC, F_MIN, F_HOUR, F_MDAY, F_MONTH, F_WDAY };

static const cron_field_t s_fields[] = {
    [F_SEC] = { "second", 0, 59, 59, NULL, false },
    [F_MIN] = { "minute", 0, 59, 59, NULL, false },
    [F_HOUR] = { "hour", 0, 23, 23, NULL, false },
    [F_MDAY] = { "day-of-month", 1, 31, 31, NULL, true },
    [F_MONTH] = { "month", 1, 12, 12, "janfebmaraprmayjunjulaugsepoctnovdec",
                  false },
    [F_WDAY] = { "day-of-week", 0, 7, 6, "sunmontuewedthufrisat", true },
};

/* A number or (if the field has them) a name at *p. */
static int
s_value(const cron_field_t *f, const char **p, int *out, char *err,
        size_t err_size)
{
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        long v = 0;
        while (isdigit((unsigned char)*s)) {
            if (v < 100000)
                v = v * 10 + (*s - '0');
            s++;
        }
        if (v < f->min || v > f->max)
            return dv_err_set(err, err_size,
                              "cron: %s: %ld is out of range %d-%d", f->name, v,
                              f->min, f->max);
        *out = (int)v;
        *p = s;
        return 0;
    }
    if (f->names && isalpha((unsigned char)s[0])) {
        size_t n = 0;
        while (isalpha((unsigned char)s[n]))
            n++;
        for (int i = 0; n == 3 && f->names[3 * i]; i++) {
            if (strncasecmp(s, f->names + 3 * i, 3) == 0) {
                *out = f->min + i;
                *p = s + 3;
                return 0;
            }
        }
        return dv_err_set(err, err_size, "cron: %s: unknown name \"%.*s\"",
                          f->name, (int)(n > 16 ? 16 : n), s);
    }
    if (*s == '\0')
        return dv_err_set(err, err_size, "cron: %s: a value is missing",
                          f->name);
    return dv_err_set(err, err_size, "cron: %s: unexpected \"%c\"", f->name,
                      *s);
}

/* One field's text (len bytes at text) into *bits. */
static int
s_field(const cron_field_t *f, const char *text, size_t len, uint64_t *bits,
        bool *star, char *err, size_t err_size)
{
    char buf[CRON_MAX_LEN + 1];
    memcpy(buf, text, len);
    buf[len] = '\0';
    *bits = 0;
    *star = strcmp(buf, "*") == 0 || (f->question && strcmp(buf, "?") == 0);
    const char *p = buf;
    for (;;) {
        int lo, hi;
        bool open_end = false; /* "*" or "a/n": up to star_max */
        if (*p == ',' || *p == '\0')
            return dv_err_set(err, err_size, "cron: %s: empty item in \"%s\"",
                              f->name, buf);
        if (*p == '*' || (*p == '?' && f->question)) {
            bool q = *p == '?';
            lo = f->min;
            hi = f->star_max;
            p++;
            if (q && *p == '/')
                return dv_err_set(err, err_size,
                                  "cron: %s: \"?\" takes no step", f->name);
        } else {
            if (s_value(f, &p, &lo, err, err_size) < 0)
                return -1;
            hi = lo;
            if (*p == '-') {
                p++;
                if (s_value(f, &p, &hi, err, err_size) < 0)
                    return -1;
                if (hi < lo)
                    return dv_err_set(err, err_size,
                                      "cron: %s: range %d-%d is reversed",
                                      f->name, lo, hi);
            } else if (*p == '/') {
                open_end = true;
            }
        }
        int step = 1;
        if (*p == '/') {
            p++;
            int count = f->star_max - f->min + 1;
            if (!isdigit((unsigned char)*p))
                return dv_err_set(err, err_size, "cron: %s: step missing",
                                  f->name);
            long v = 0;
            while (isdigit((unsigned char)*p)) {
                if (v < 100000)
                    v = v * 10 + (*p - '0');
                p++;
            }
            if (v < 1 || v > count)
                return dv_err_set(err, err_size,
                                  "cron: %s: step %ld is out of range 1-%d",
                                  f->name, v, count);
            step = (int)v;
            if (open_end)
                hi = lo > f->star_max ? lo : f->star_max;
        }
        for (int v = lo; v <= hi; v += step)
            *bits |= (uint64_t)1 << (f == &s_fields[F_WDAY] ? v % 7 : v);
        if (*p == '\0')
            return 0;
        if (*p != ',')
            return dv_err_set(err, err_size,
                              "cron: %s: unexpected \"%c\" in \"%s\"", f->name,
                              *p, buf);
        p++;
    }
}

static const struct {
    const char *name;
    const char *expr;
} s_macros[] = {
    { "@yearly", "0 0 1 1 *" },  { "@annually", "0 0 1 1 *" },
    { "@monthly", "0 0 1 * *" }, { "@weekly", "0 0 * * 0" },
    { "@daily", "0 0 * * *" },   { "@midnight", "0 0 * * *" },
    { "@hourly", "0 * * * *" },
};

int
dv_cron_parse(const char *expr, dv_cron_t *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    if (!expr)
        return dv_err_set(err, err_size, "cron: no expression");
    if (strnlen(expr, CRON_MAX_LEN + 1) > CRON_MAX_LEN)
        return dv_err_set(err, err_size,
                          "cron: expression longer than %d bytes",
                          CRON_MAX_LEN);
    /* Fields, split on blanks. */
    const char *start[7];
    size_t len[7];
    int n = 0;
    for (const char *p = expr; *p;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        const char *b = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (n < 7) {
            start[n] = b;
            len[n] = (size_t)(p - b);
        }
        n++;
    }
    if (n == 0)
        return dv_err_set(err, err_size, "cron: empty expression");
    if (start[0][0] == '@') {
        if (n != 1)
            return dv_err_set(err, err_size,
                              "cron: %.*s takes no fields after it",
                              (int)len[0], start[0]);
        for (size_t i = 0; i < sizeof s_macros / sizeof s_macros[0]; i++)
            if (strlen(s_macros[i].name) == len[0] &&
                strncasecmp(start[0], s_macros[i].name, len[0]) == 0)
                return dv_cron_parse(s_macros[i].expr, out, err, err_size);
        return dv_err_set(err, err_size,
                          "cron: unknown macro \"%.*s\" (@yearly, "
                          "@annually, @monthly, @weekly, @daily, "
                          "@midnight, @hourly)",
                          (int)len[0], start[0]);
    }
    if (n != 5 && n != 6)
        return dv_err_set(err, err_size,
                          "cron: %d fields, expected 5 (minute hour "
                          "day-of-month month day-of-week) or 6 (with "
                          "seconds first)",
                          n);
    out->has_seconds = n == 6;
    int first = n == 6 ? F_SEC : F_MIN;
    uint64_t bits[6] = { 1, 0, 0, 0, 0, 0 }; /* no seconds field: second 0 */
    bool star[6] = { false };
    for (int i = 0; i < n; i++) {
        int fi = first + i;
        if (s_field(&s_fields[fi], start[i], len[i], &bits[fi], &star[fi], err,
                    err_size) < 0)
            return -1;
    }
    out->second = bits[F_SEC];
    out->minute = bits[F_MIN];
    out->hour = (uint32_t)bits[F_HOUR];
    out->mday = (uint32_t)bits[F_MDAY];
    out->month = (uint16_t)bits[F_MONTH];
    out->wday = (uint8_t)bits[F_WDAY];
    out->mday_star = star[F_MDAY];
    out->wday_star = star[F_WDAY];
    const char *h = start[first == F_SEC ? 2 : 1];
    out->hour_star = h[0] == '*';
    return 0;
}

/* ---- the next matching local time ---------------------------------------- */

/* The lowest bit of mask at from or above, or -1. */
static int
s_next_bit(uint64_t mask, int from)
{
    if (from > 63)
        return -1;
    mask &= ~(uint64_t)0 << from;
    return mask ? __builtin_ctzll(mask) : -1;
}

static bool
s_day_ok(const dv_cron_t *c, int64_t day, int mday)
{
    bool dom = (c->mday >> mday) & 1;
    bool dow = (c->wday >> dv_weekday(day)) & 1;
    if (c->mday_star && c->wday_star)
        return true;
    if (c->mday_star)
        return dow;
    if (c->wday_star)
        return dom;
    return dom || dow; /* both restricted: cron's OR */
}

/* The first local wall time (seconds on the local calendar, as if it were
 * UTC) at or after l that the fields match, or INT64_MAX past limit. */
static int64_t
s_next_local(const dv_cron_t *c, int64_t l, int64_t limit)
{
    int64_t day = dv_floor_div(l, DV_DAY_S);
    int sod = (int)(l - day * DV_DAY_S);
    int h = sod / 3600, mi = sod / 60 % 60, s = sod % 60;
    int64_t y;
    int m, d;
    dv_civil_from_days(day, &y, &m, &d);
    for (;;) {
        if (day * DV_DAY_S > limit)
            return INT64_MAX;
        if (!((c->month >> m) & 1)) { /* to the next allowed month */
            int nm = s_next_bit(c->month, m + 1);
            if (nm < 0) {
                y++;
                nm = s_next_bit(c->month, 1);
            }
            m = nm;
            d = 1;
            day = dv_days_from_civil(y, m, d);
            h = mi = s = 0;
            continue;
        }
        if (!s_day_ok(c, day, d))
            goto next_day;
        /* (h, mi, s) is the earliest time of day still possible. */
        int nh = s_next_bit(c->hour, h);
        if (nh < 0)
            goto next_day;
        if (nh != h) {
            h = nh;
            mi = s = 0;
        }
        int nmi = s_next_bit(c->minute, mi);
        if (nmi < 0) {
            h++;
            mi = s = 0;
            if (h > 23)
                goto next_day;
            continue;
        }
        if (nmi != mi) {
            mi = nmi;
            s = 0;
        }
        int ns = s_next_bit(c->second, s);
        if (ns < 0) {
            s = 0;
            if (++mi > 59) {
                mi = 0;
                if (++h > 23)
                    goto next_day;
            }
            continue;
        }
        return day * DV_DAY_S + h * 3600 + mi * 60 + ns;
    next_day:
        day++;
        h = mi = s = 0;
        if (++d > dv_month_days(y, m)) {
            d = 1;
            if (++m > 12) {
                m = 1;
                y++;
            }
        }
    }
}

/* ---- local time to UTC -------------------------------------------------- */

/* The UTC instants that show local time l in tz: *n is 0 (a gap; *gap_end
 * is the instant the gap ends), 1, or 2 (an overlap, earlier first). */
static void
s_local_to_utc(const dv_tz_t *tz, int64_t l, int64_t inst[2], int *n,
               int64_t *gap_end)
{
    int32_t offs[8];
    int noffs = 0;
    int64_t u = l - CRON_OFF_MAX_S - 3600;
    *n = 0;
    *gap_end = INT64_MAX;
    offs[noffs++] = dv_tz_offset(tz, u, NULL);
    for (int k = 0; k < 6; k++) {
        int64_t t = dv_tz_next_transition(tz, u);
        if (t > l + CRON_OFF_MAX_S + 3600)
            break;
        int32_t before = dv_tz_offset(tz, t - 1, NULL);
        int32_t after = dv_tz_offset(tz, t, NULL);
        if (t + before <= l && l < t + after && t < *gap_end)
            *gap_end = t;
        bool seen = false;
        for (int i = 0; i < noffs; i++)
            seen |= offs[i] == after;
        if (!seen && noffs < 8)
            offs[noffs++] = after;
        u = t;
    }
    int64_t found[8];
    int nf = 0;
    for (int i = 0; i < noffs; i++) {
        int64_t cand = l - offs[i];
        if (dv_tz_offset(tz, cand, NULL) != offs[i])
            continue;
        int j = nf++; /* insertion, ascending; offsets are distinct */
        while (j > 0 && found[j - 1] > cand) {
            found[j] = found[j - 1];
            j--;
        }
        found[j] = cand;
    }
    /* Two at most in any real zone; were there more, the first two. */
    *n = nf > 2 ? 2 : nf;
    for (int i = 0; i < *n; i++)
        inst[i] = found[i];
}

/* Over the stretches of constant offset that meet [from, to) (from < to),
 * clipped to it: the least local time shown at a stretch's start (*lo_l)
 * and the greatest shown at its end (*hi_l). Every instant u in [from, to)
 * shows a local time in [*lo_l, *hi_l]. */
static void
s_local_span(const dv_tz_t *tz, int64_t from, int64_t to, int64_t *lo_l,
             int64_t *hi_l)
{
    int64_t a = from;
    int32_t o = dv_tz_offset(tz, a, NULL);
    *lo_l = INT64_MAX;
    *hi_l = INT64_MIN;
    for (int k = 0; k < 64; k++) {
        int64_t t = dv_tz_next_transition(tz, a);
        int64_t b = t < to ? t : to;
        if (a + o < *lo_l)
            *lo_l = a + o;
        if (b - 1 + o > *hi_l)
            *hi_l = b - 1 + o;
        if (t >= to)
            return;
        a = t;
        o = dv_tz_offset(tz, a, NULL);
    }
    *lo_l = from - CRON_OFF_MAX_S; /* that many changes: the widest bounds */
    *hi_l = to + CRON_OFF_MAX_S;
}

int64_t
dv_cron_next(const dv_cron_t *c, const dv_tz_t *tz, int64_t after_ms)
{
    /* Firings are whole seconds: the first candidate is the next one. */
    int64_t t0 = dv_floor_div(after_ms, 1000) + 1;
    if (t0 > CRON_RANGE_S || t0 < -CRON_RANGE_S)
        return -1;
    /* The first local time that can fire at t0 or later: one an instant in
     * the next 3 days shows (later instants show later local times, offsets
     * being within 26 h), or one in a gap that ends at t0 (fixed hours). */
    int64_t l, hi_l;
    s_local_span(tz, t0, t0 + 3 * DV_DAY_S, &l, &hi_l);
    if (t0 + dv_tz_offset(tz, t0 - 1, NULL) < l)
        l = t0 + dv_tz_offset(tz, t0 - 1, NULL);
    int64_t limit = l + CRON_HORIZON_S;
    int64_t best = INT64_MAX;
    int64_t stop_l = INT64_MAX; /* past it, nothing fires before best */
    for (;;) {
        l = s_next_local(c, l, limit);
        if (l == INT64_MAX || l > stop_l)
            break;
        int64_t inst[2], gap_end;
        int n;
        s_local_to_utc(tz, l, inst, &n, &gap_end);
        int64_t cands[2];
        int nc = 0;
        if (n == 0 && !c->hour_star && gap_end != INT64_MAX)
            cands[nc++] = gap_end; /* fixed hours: after the gap */
        else if (n == 1 || (n == 2 && !c->hour_star))
            cands[nc++] = inst[0]; /* overlap, fixed hours: the first */
        else if (n == 2) {
            cands[nc++] = inst[0];
            cands[nc++] = inst[1];
        }
        for (int i = 0; i < nc; i++) {
            if (cands[i] < t0 || cands[i] >= best)
                continue;
            best = cands[i];
            /* A firing before best is an instant (or a gap's end) in
             * [t0, best), whose local time is at most hi_l; instants
             * before best - 3 days show local times below those near
             * best. */
            int64_t lo_l;
            int64_t from = best - 3 * DV_DAY_S > t0 ? best - 3 * DV_DAY_S : t0;
            if (best == t0)
                stop_l = INT64_MIN;
            else {
                s_local_span(tz, from, best, &lo_l, &stop_l);
            }
        }
        l++;
    }
    return best == INT64_MAX ? -1 : best * 1000;
}

/* ---- --every ------------------------------------------------------------ */

int
dv_every_parse(const char *text, int64_t *ms_out, char *err, size_t err_size)
{
    static const char units[] = "dhms";
    static const int64_t unit_s[] = { DV_DAY_S, 3600, 60, 1 };
    const int64_t max_s = (int64_t)366 * DV_DAY_S;
    if (!text || !*text)
        return dv_err_set(err, err_size, "every: empty interval");
    const char *p = text;
    int64_t total = 0;
    int last_unit = -1;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return dv_err_set(err, err_size,
                              "every: \"%s\": expected a number at \"%.16s\"",
                              text, p);
        int64_t v = 0;
        while (isdigit((unsigned char)*p)) {
            if (v <= max_s) /* larger is refused below anyway */
                v = v * 10 + (*p - '0');
            p++;
        }
        const char *u = *p ? strchr(units, *p) : NULL;
        if (!u)
            return dv_err_set(err, err_size,
                              "every: \"%s\": %s (units: d, h, m, s)", text,
                              *p ? "unknown unit" : "missing unit");
        if (u[0] == 'm' && p[1] == 's')
            return dv_err_set(err, err_size,
                              "every: \"%s\": ms is not a unit here; the "
                              "least interval is 1s",
                              text);
        int ui = (int)(u - units);
        if (ui <= last_unit)
            return dv_err_set(err, err_size,
                              "every: \"%s\": units must go from days down "
                              "to seconds, each once",
                              text);
        last_unit = ui;
        p++;
        if (v > max_s || v * unit_s[ui] > max_s ||
            (total += v * unit_s[ui]) > max_s)
            return dv_err_set(err, err_size,
                              "every: \"%s\": more than 366 days", text);
    }
    if (total < 1)
        return dv_err_set(err, err_size, "every: \"%s\": less than 1s", text);
    *ms_out = total * 1000;
    return 0;
}
