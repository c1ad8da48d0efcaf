/* dv_civil - proleptic Gregorian calendar arithmetic on day numbers (days
 * since 1970-01-01), for dv_tz and dv_cron. Integer only; no time zone, no
 * libc time functions. Internal to common/: not part of dv_cron.h's
 * contract. The algorithms are Howard Hinnant's days_from_civil and
 * civil_from_days (valid for any year an int64_t day number reaches). */
#ifndef DV_CIVIL_H
#define DV_CIVIL_H

#include <stdbool.h>
#include <stdint.h>

#define DV_DAY_S 86400

/* Floor division and its remainder (b > 0), for instants before 1970. */
static inline int64_t
dv_floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

static inline int64_t
dv_floor_mod(int64_t a, int64_t b)
{
    int64_t r = a % b;
    return r < 0 ? r + b : r;
}

static inline bool
dv_is_leap(int64_t y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static inline int
dv_month_days(int64_t y, int m)
{
    static const int days[12] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };
    return m == 2 && dv_is_leap(y) ? 29 : days[m - 1];
}

/* The day number of y-m-d (m 1..12, d 1..31). */
static inline int64_t
dv_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = dv_floor_div(y, 400);
    int64_t yoe = y - era * 400;                                  /* 0..399 */
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; /* 0..365 */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; /* 0..146096 */
    return era * 146097 + doe - 719468;
}

/* The civil date of day number z. */
static inline void
dv_civil_from_days(int64_t z, int64_t *y_out, int *m_out, int *d_out)
{
    z += 719468;
    int64_t era = dv_floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y_out = yoe + era * 400 + (m <= 2);
    *m_out = m;
    *d_out = d;
}

/* Day of the week of day number z, Sunday = 0 (1970-01-01 was a
 * Thursday). */
static inline int
dv_weekday(int64_t z)
{
    return (int)dv_floor_mod(z + 4, 7);
}

#endif
