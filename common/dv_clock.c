#include "dv_clock.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t
dv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
dv_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
dv_mono_ms(void)
{
    return dv_mono_us() / 1000;
}

char *
dv_time_format(int64_t ms, char *buf, unsigned size)
{
    /* Floor division, so times before 1970 keep a positive millisecond. */
    int64_t sec = ms / 1000, frac = ms % 1000;
    if (frac < 0) {
        sec--;
        frac += 1000;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, size, "invalid-time");
        return buf;
    }
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)frac);
    return buf;
}

int
dv_time_parse(const char *s, int64_t *ms_out)
{
    if (!s || !*s)
        return -1;
    if (s[0] == '@') {
        char *end;
        double v = strtod(s + 1, &end);
        /* Digits only (strtod() would take "inf", hex, signs and spaces),
         * and small enough that the milliseconds fit an int64_t. */
        if (s[1] == '\0' || strspn(s + 1, "0123456789.") != strlen(s + 1) ||
            *end || !isfinite(v) || v > 9.0e15)
            return -1;
        *ms_out = (int64_t)llround(v * 1000.0);
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        p = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (!p)
        return -1;
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3)
                frac = frac * 10 + (*p - '0');
            digits++;
            p++;
        }
        for (; digits < 3; digits++)
            frac *= 10;
    }
    if (*p == 'Z')
        p++;
    if (*p)
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *ms_out = (int64_t)t * 1000 + frac;
    return 0;
}

int
dv_duration_parse(const char *s, int64_t *ms_out)
{
    if (!s || !*s)
        return -1;
    /* A plain decimal number: strtod() alone would also take "-0", " 5",
     * "0x10" and "infinity". */
    if (!((s[0] >= '0' && s[0] <= '9') || s[0] == '.'))
        return -1;
    char *end;
    double v = strtod(s, &end);
    size_t used = (size_t)(end - s);
    if (end == s || !isfinite(v) || v < 0 || memchr(s, 'x', used) ||
        memchr(s, 'X', used))
        return -1;
    double scale = 1000.0;
    if (strcmp(end, "ms") == 0)
        scale = 1.0;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        scale = 1000.0;
    else if (strcmp(end, "m") == 0)
        scale = 60000.0;
    else if (strcmp(end, "h") == 0)
        scale = 3600000.0;
    else
        return -1;
    double ms = v * scale;
    if (ms > 10.0 * 365 * 86400 * 1000)
        return -1;
    *ms_out = (int64_t)llround(ms);
    return 0;
}
