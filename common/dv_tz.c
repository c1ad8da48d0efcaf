/* dv_tz - time zones read from tzfiles (RFC 8536), for dv_cron.
 *
 * A zone is its transition times (ascending, from the 64-bit data block of
 * a version 2+ file, else the 32-bit one), the local time type of each, and
 * the footer's POSIX TZ rule for instants past the last transition. The
 * file is read whole (at most DV_TZ_MAX_FILE bytes) and every count is
 * checked against its length before anything is read from it. Offsets are
 * looked up by binary search; nothing uses TZ, tzset() or localtime(). */
#include "dv_cron.h"

#include "dv_civil.h"
#include "dv_err.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DV_TZ_MAX_FILE (256 * 1024)
#define DV_TZ_MAX_NAME 128
#define TZ_HDR_LEN     44

typedef struct {
    int32_t off; /* seconds east of UTC */
    bool dst;
} tz_type_t;

/* One end of daylight saving time in a POSIX TZ rule. */
typedef struct {
    char kind;    /* 'J' (1..365, no Feb 29), 'n' (0..365), 'M' */
    int day;      /* J/n: the day; M: the weekday 0..6 */
    int week;     /* M: 1..5 (5 = the last) */
    int month;    /* M: 1..12 */
    int32_t time; /* seconds after local midnight, -167h..167h */
} tz_when_t;

typedef struct {
    bool present;
    bool has_dst;
    int32_t std_off; /* seconds east */
    int32_t dst_off;
    tz_when_t start, end;
} tz_rule_t;

struct dv_tz {
    char name[DV_TZ_MAX_NAME];
    int64_t *trans; /* ntrans, strictly ascending */
    uint8_t *trans_type;
    tz_type_t *types;
    uint32_t ntrans;
    uint32_t ntypes;
    tz_rule_t rule;
};

/* ---- the POSIX TZ string of the footer --------------------------------- */

static bool
s_num(const char **p, int max_digits, long *out)
{
    const char *s = *p;
    long v = 0;
    int n = 0;
    while (*s >= '0' && *s <= '9' && n < max_digits) {
        v = v * 10 + (*s - '0');
        s++;
        n++;
    }
    if (n == 0)
        return false;
    *p = s;
    *out = v;
    return true;
}

/* [+-]hh[:mm[:ss]], hh at most max_h: seconds, signed as written. */
static bool
s_hms(const char **p, long max_h, int32_t *out)
{
    const char *s = *p;
    int sign = 1;
    if (*s == '+' || *s == '-') {
        sign = *s == '-' ? -1 : 1;
        s++;
    }
    long h, m = 0, sec = 0;
    if (!s_num(&s, 3, &h) || h > max_h)
        return false;
    if (*s == ':') {
        s++;
        if (!s_num(&s, 2, &m) || m > 59)
            return false;
        if (*s == ':') {
            s++;
            if (!s_num(&s, 2, &sec) || sec > 59)
                return false;
        }
    }
    *out = (int32_t)(sign * (h * 3600 + m * 60 + sec));
    *p = s;
    return true;
}

/* A zone abbreviation: three or more letters, or <...> of [A-Za-z0-9+-]. */
static bool
s_abbr(const char **p)
{
    const char *s = *p;
    size_t n = 0;
    if (*s == '<') {
        s++;
        while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
               (*s >= '0' && *s <= '9') || *s == '+' || *s == '-') {
            s++;
            n++;
        }
        if (*s != '>' || n < 1)
            return false;
        s++;
    } else {
        while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')) {
            s++;
            n++;
        }
        if (n < 3)
            return false;
    }
    *p = s;
    return true;
}

static bool
s_when(const char **p, tz_when_t *w)
{
    const char *s = *p;
    long a, b, c;
    if (*s == 'J') {
        s++;
        if (!s_num(&s, 3, &a) || a < 1 || a > 365)
            return false;
        w->kind = 'J';
        w->day = (int)a;
    } else if (*s == 'M') {
        s++;
        if (!s_num(&s, 2, &a) || a < 1 || a > 12 || *s++ != '.' ||
            !s_num(&s, 1, &b) || b < 1 || b > 5 || *s++ != '.' ||
            !s_num(&s, 1, &c) || c > 6)
            return false;
        w->kind = 'M';
        w->month = (int)a;
        w->week = (int)b;
        w->day = (int)c;
    } else {
        if (!s_num(&s, 3, &a) || a > 365)
            return false;
        w->kind = 'n';
        w->day = (int)a;
    }
    w->time = 2 * 3600;
    if (*s == '/') {
        s++;
        /* RFC 8536 (version 3): -167..167 hours */
        if (!s_hms(&s, 167, &w->time))
            return false;
    }
    *p = s;
    return true;
}

/* Parses the footer's TZ string (len bytes, no NUL) into r. An empty string
 * leaves r absent. */
static int
s_rule_parse(const char *text, size_t len, tz_rule_t *r, char *err,
             size_t err_size)
{
    char buf[128];
    memset(r, 0, sizeof *r);
    if (len == 0)
        return 0;
    if (len >= sizeof buf)
        return dv_err_set(err, err_size, "footer TZ string too long");
    memcpy(buf, text, len);
    buf[len] = '\0';
    const char *s = buf;
    int32_t west;
    if (!s_abbr(&s) || !s_hms(&s, 24, &west))
        return dv_err_set(err, err_size, "bad footer TZ string \"%s\"", buf);
    r->std_off = -west;
    if (*s != '\0') {
        if (!s_abbr(&s))
            return dv_err_set(err, err_size, "bad footer TZ string \"%s\"",
                              buf);
        r->has_dst = true;
        r->dst_off = r->std_off + 3600;
        if (*s != ',' && *s != '\0') {
            if (!s_hms(&s, 24, &west))
                return dv_err_set(err, err_size, "bad footer TZ string \"%s\"",
                                  buf);
            r->dst_off = -west;
        }
        /* The rule is optional in POSIX, its default implementation
         * defined; zic always writes one. */
        if (*s++ != ',' || !s_when(&s, &r->start) || *s++ != ',' ||
            !s_when(&s, &r->end) || *s != '\0')
            return dv_err_set(err, err_size,
                              "bad footer TZ string \"%s\": rule", buf);
    }
    r->present = true;
    return 0;
}

/* Day number of a rule's day in year y. */
static int64_t
s_when_day(const tz_when_t *w, int64_t y)
{
    int64_t jan1 = dv_days_from_civil(y, 1, 1);
    if (w->kind == 'J')
        return jan1 + w->day - 1 + (dv_is_leap(y) && w->day >= 60);
    if (w->kind == 'n')
        return jan1 + w->day;
    int64_t first = dv_days_from_civil(y, w->month, 1);
    int64_t d = first + (w->day - dv_weekday(first) + 7) % 7 +
                7 * (int64_t)(w->week - 1);
    while (d >= first + dv_month_days(y, w->month))
        d -= 7;
    return d;
}

typedef struct {
    int64_t at;
    bool on; /* DST begins (true) or ends */
} tz_event_t;

/* The rule's transitions in years y0..y0+3, in time order; at equal times
 * an end sorts before a start, so a rule with DST all year (v3's
 * "EST5EDT,0/0,J365/25") stays in DST. */
static void
s_rule_events(const tz_rule_t *r, int64_t y0, tz_event_t ev[8])
{
    for (int i = 0; i < 4; i++) {
        int64_t y = y0 + i;
        ev[2 * i].at =
            s_when_day(&r->start, y) * DV_DAY_S + r->start.time - r->std_off;
        ev[2 * i].on = true;
        ev[2 * i + 1].at =
            s_when_day(&r->end, y) * DV_DAY_S + r->end.time - r->dst_off;
        ev[2 * i + 1].on = false;
    }
    for (int i = 1; i < 8; i++) { /* insertion sort */
        tz_event_t e = ev[i];
        int j = i - 1;
        while (j >= 0 &&
               (ev[j].at > e.at || (ev[j].at == e.at && ev[j].on && !e.on))) {
            ev[j + 1] = ev[j];
            j--;
        }
        ev[j + 1] = e;
    }
}

static int64_t
s_year_of(int64_t t)
{
    int64_t y;
    int m, d;
    dv_civil_from_days(dv_floor_div(t, DV_DAY_S), &y, &m, &d);
    return y;
}

/* Instants this far out are clamped before the rule's calendar arithmetic
 * (about 35 million years), so nothing there overflows. */
#define TZ_RULE_SPAN ((int64_t)1 << 50)

static int64_t
s_clamp(int64_t t)
{
    return t > TZ_RULE_SPAN    ? TZ_RULE_SPAN
           : t < -TZ_RULE_SPAN ? -TZ_RULE_SPAN
                               : t;
}

static int32_t
s_rule_offset(const tz_rule_t *r, int64_t t, bool *is_dst)
{
    bool dst = false;
    t = s_clamp(t);
    if (r->has_dst) {
        tz_event_t ev[8];
        s_rule_events(r, s_year_of(t) - 2, ev);
        for (int i = 0; i < 8 && ev[i].at <= t; i++)
            dst = ev[i].on;
    }
    if (is_dst)
        *is_dst = dst;
    return dst ? r->dst_off : r->std_off;
}

/* ---- the tzfile --------------------------------------------------------- */

static uint32_t
s_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

static int64_t
s_be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)s_be32(p) << 32 | s_be32(p + 4));
}

typedef struct {
    char version;
    uint32_t isut, isstd, leap, time, type, chars;
} tz_hdr_t;

static int
s_hdr(const unsigned char *p, size_t avail, tz_hdr_t *h, char *err,
      size_t err_size)
{
    if (avail < TZ_HDR_LEN)
        return dv_err_set(err, err_size, "truncated header");
    if (memcmp(p, "TZif", 4) != 0)
        return dv_err_set(err, err_size, "not a tzfile (no TZif magic)");
    h->version = (char)p[4];
    /* Version 4 (RFC 9636) differs only in leap-second tables, which are
     * refused below anyway. */
    if (h->version != 0 && h->version != '2' && h->version != '3' &&
        h->version != '4')
        return dv_err_set(err, err_size, "unknown tzfile version 0x%02x",
                          (unsigned)p[4]);
    h->isut = s_be32(p + 20);
    h->isstd = s_be32(p + 24);
    h->leap = s_be32(p + 28);
    h->time = s_be32(p + 32);
    h->type = s_be32(p + 36);
    h->chars = s_be32(p + 40);
    if (h->type == 0 || h->type > 256)
        return dv_err_set(err, err_size, "bad typecnt %u", h->type);
    if (h->chars == 0)
        return dv_err_set(err, err_size, "charcnt is 0");
    if (h->isut != 0 && h->isut != h->type)
        return dv_err_set(err, err_size, "isutcnt %u != typecnt %u", h->isut,
                          h->type);
    if (h->isstd != 0 && h->isstd != h->type)
        return dv_err_set(err, err_size, "isstdcnt %u != typecnt %u", h->isstd,
                          h->type);
    return 0;
}

/* The size of the data block after header h (time_size 4 or 8); counts are
 * below 2^32, so the sum cannot overflow 64 bits. */
static uint64_t
s_block_size(const tz_hdr_t *h, unsigned time_size)
{
    return (uint64_t)h->time * time_size + h->time + (uint64_t)h->type * 6 +
           h->chars + (uint64_t)h->leap * (time_size + 4) + h->isstd + h->isut;
}

/* Reads the data block at p (checked to be whole) into tz. */
static int
s_block(dv_tz_t *tz, const tz_hdr_t *h, const unsigned char *p,
        unsigned time_size, char *err, size_t err_size)
{
    if (h->leap != 0)
        return dv_err_set(err, err_size,
                          "leap-second tzfiles (\"right/\") are not supported");
    tz->ntrans = h->time;
    tz->ntypes = h->type;
    tz->trans = malloc(((size_t)h->time + 1) * sizeof *tz->trans);
    tz->trans_type = malloc((size_t)h->time + 1);
    tz->types = malloc((size_t)h->type * sizeof *tz->types);
    if (!tz->trans || !tz->trans_type || !tz->types)
        return dv_err_set(err, err_size, "out of memory");
    for (uint32_t i = 0; i < h->time; i++) {
        tz->trans[i] = time_size == 8 ? s_be64(p + 8 * (size_t)i)
                                      : (int32_t)s_be32(p + 4 * (size_t)i);
        if (i > 0 && tz->trans[i] <= tz->trans[i - 1])
            return dv_err_set(err, err_size,
                              "transition times not ascending at %u", i);
    }
    p += (size_t)h->time * time_size;
    for (uint32_t i = 0; i < h->time; i++) {
        if (p[i] >= h->type)
            return dv_err_set(err, err_size, "transition %u has type %u of %u",
                              i, p[i], h->type);
        tz->trans_type[i] = p[i];
    }
    p += h->time;
    for (uint32_t i = 0; i < h->type; i++, p += 6) {
        int32_t off = (int32_t)s_be32(p);
        /* RFC 8536: never -2^31; offsets past a day are not real. */
        if (off < -89999 || off > 93599)
            return dv_err_set(err, err_size, "type %u: offset %d", i, (int)off);
        if (p[4] > 1)
            return dv_err_set(err, err_size, "type %u: isdst %u", i, p[4]);
        if (p[5] >= h->chars)
            return dv_err_set(err, err_size, "type %u: designation %u", i,
                              p[5]);
        tz->types[i].off = off;
        tz->types[i].dst = p[4] != 0;
    }
    p += h->chars;
    for (uint32_t i = 0; i < h->isstd + h->isut; i++)
        if (p[i] > 1)
            return dv_err_set(err, err_size, "bad std/ut indicator %u", p[i]);
    return 0;
}

/* Parses the whole file (len bytes) into tz. */
static int
s_parse(dv_tz_t *tz, const unsigned char *buf, size_t len, char *err,
        size_t err_size)
{
    tz_hdr_t h;
    if (s_hdr(buf, len, &h, err, err_size) < 0)
        return -1;
    uint64_t size1 = s_block_size(&h, 4);
    if (size1 > len - TZ_HDR_LEN)
        return dv_err_set(err, err_size,
                          "truncated: the v1 data block needs %llu bytes, "
                          "%zu remain",
                          (unsigned long long)size1, len - TZ_HDR_LEN);
    if (h.version == 0) {
        if (TZ_HDR_LEN + size1 != len)
            return dv_err_set(err, err_size,
                              "%zu bytes after the v1 data block",
                              (size_t)(len - TZ_HDR_LEN - size1));
        return s_block(tz, &h, buf + TZ_HDR_LEN, 4, err, err_size);
    }
    size_t off = TZ_HDR_LEN + (size_t)size1;
    tz_hdr_t h2;
    if (s_hdr(buf + off, len - off, &h2, err, err_size) < 0)
        return -1;
    if (h2.version != h.version)
        return dv_err_set(err, err_size, "the two headers differ in version");
    off += TZ_HDR_LEN;
    uint64_t size2 = s_block_size(&h2, 8);
    if (size2 > len - off)
        return dv_err_set(err, err_size,
                          "truncated: the v2 data block needs %llu bytes, "
                          "%zu remain",
                          (unsigned long long)size2, len - off);
    if (s_block(tz, &h2, buf + off, 8, err, err_size) < 0)
        return -1;
    off += (size_t)size2;
    /* The footer: "\n" TZ string "\n", the end of the file. */
    if (off >= len || buf[off] != '\n')
        return dv_err_set(err, err_size, "truncated: no footer");
    const unsigned char *nl = memchr(buf + off + 1, '\n', len - off - 1);
    if (!nl)
        return dv_err_set(err, err_size, "truncated: unterminated footer");
    if ((size_t)(nl - buf) + 1 != len)
        return dv_err_set(err, err_size, "bytes after the footer");
    return s_rule_parse((const char *)buf + off + 1,
                        (size_t)(nl - (buf + off + 1)), &tz->rule, err,
                        err_size);
}

static bool
s_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= DV_TZ_MAX_NAME || name[0] == '/' ||
        strstr(name, "..") != NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '+' || c == '-' ||
              c == '/'))
            return false;
    }
    return true;
}

/* Reads path whole into *buf_out (caller frees). 1: no such file. */
static int
s_read_file(const char *path, unsigned char **buf_out, size_t *len_out,
            char *err, size_t err_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 1;
        return dv_err_set(err, err_size, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        st.st_size > DV_TZ_MAX_FILE) {
        close(fd);
        return dv_err_set(err, err_size,
                          "%s: not a regular file of at most "
                          "%d bytes",
                          path, DV_TZ_MAX_FILE);
    }
    unsigned char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return dv_err_set(err, err_size, "out of memory");
    }
    size_t len = 0;
    for (;;) { /* read to the end, in case the file grew */
        ssize_t r = read(fd, buf + len, (size_t)st.st_size + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return dv_err_set(err, err_size, "%s: %s", path, strerror(e));
        }
        if (r == 0 || len + (size_t)r > (size_t)st.st_size)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (len != (size_t)st.st_size) {
        free(buf);
        return dv_err_set(err, err_size, "%s: changed while read", path);
    }
    *buf_out = buf;
    *len_out = len;
    return 0;
}

dv_tz_t *
dv_tz_load(const char *name, char *err, size_t err_size)
{
    if (!name || !s_name_ok(name)) {
        dv_err_set(err, err_size, "tz: invalid zone name \"%s\"",
                   name ? name : "(null)");
        return NULL;
    }
    dv_tz_t *tz = calloc(1, sizeof *tz);
    if (!tz) {
        dv_err_set(err, err_size, "tz: out of memory");
        return NULL;
    }
    snprintf(tz->name, sizeof tz->name, "%s", name);
    const char *dir = getenv("TZDIR");
    if (!dir || !*dir)
        dir = "/usr/share/zoneinfo";
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        dv_err_set(err, err_size, "tz: %s: path too long", name);
        dv_tz_free(&tz);
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t len = 0;
    char why[256] = "";
    int rc = s_read_file(path, &buf, &len, why, sizeof why);
    if (rc == 1 && strcmp(name, "UTC") == 0) {
        /* UTC works without tzdata: one type, offset 0. */
        tz->types = calloc(1, sizeof *tz->types);
        tz->ntypes = 1;
        if (tz->types)
            return tz;
        snprintf(why, sizeof why, "out of memory");
        rc = -1;
    }
    if (rc == 1) {
        dv_err_set(err, err_size, "tz: unknown zone \"%s\" (no %s)", name,
                   path);
        dv_tz_free(&tz);
        return NULL;
    }
    if (rc == 0)
        rc = s_parse(tz, buf, len, why, sizeof why);
    free(buf);
    if (rc < 0) {
        dv_err_set(err, err_size, "tz: %s: %s", name, why);
        dv_tz_free(&tz);
        return NULL;
    }
    return tz;
}

void
dv_tz_free(dv_tz_t **tz_p)
{
    if (!tz_p || !*tz_p)
        return;
    dv_tz_t *tz = *tz_p;
    free(tz->trans);
    free(tz->trans_type);
    free(tz->types);
    free(tz);
    *tz_p = NULL;
}

const char *
dv_tz_name(const dv_tz_t *tz)
{
    return tz ? tz->name : "UTC";
}

/* The index of the last transition at or before t, or -1. */
static int64_t
s_find(const dv_tz_t *tz, int64_t t)
{
    int64_t lo = 0, hi = tz->ntrans; /* answer in [lo - 1, hi - 1] */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (tz->trans[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

int32_t
dv_tz_offset(const dv_tz_t *tz, int64_t utc_s, bool *is_dst)
{
    const tz_type_t *ty = NULL;
    if (tz) {
        int64_t i = s_find(tz, utc_s);
        bool past = tz->ntrans == 0 ||
                    (i == (int64_t)tz->ntrans - 1 && utc_s > tz->trans[i]);
        if (past && tz->rule.present)
            return s_rule_offset(&tz->rule, utc_s, is_dst);
        /* RFC 8536: before the first transition, type 0. */
        ty = &tz->types[i < 0 ? 0 : tz->trans_type[i]];
    }
    if (is_dst)
        *is_dst = ty ? ty->dst : false;
    return ty ? ty->off : 0;
}

int64_t
dv_tz_next_transition(const dv_tz_t *tz, int64_t utc_s)
{
    if (!tz)
        return INT64_MAX;
    int64_t i = s_find(tz, utc_s);
    if (i + 1 < (int64_t)tz->ntrans)
        return tz->trans[i + 1];
    if (!tz->rule.present || !tz->rule.has_dst)
        return INT64_MAX;
    if (utc_s >= TZ_RULE_SPAN)
        return INT64_MAX;
    utc_s = s_clamp(utc_s);
    tz_event_t ev[8];
    s_rule_events(&tz->rule, s_year_of(utc_s) - 1, ev);
    for (int k = 0; k < 8; k++)
        if (ev[k].at > utc_s)
            return ev[k].at;
    return INT64_MAX;
}
