/* dv_cron - cron expressions and time zones, for periodic jobs.
 *
 * An expression is the standard five fields "minute hour day-of-month month
 * day-of-week", or six with a leading seconds field. Each field is "*", a
 * number, a range "a-b", a list "a,b,c", a step "*" "/n" or "a-b/n" or
 * "a/n"; months and weekdays also take names (jan..dec, sun..sat, any case);
 * day-of-week 7 is Sunday too. As in cron, when both day-of-month and
 * day-of-week are restricted (neither is "*"), a day matches if either
 * does. The macros @yearly (@annually), @monthly, @weekly, @daily
 * (@midnight) and @hourly are accepted.
 *
 * Details: "?" is "*" in the two day fields only. A field counts as
 * restricted for the OR rule unless it is exactly "*" or "?" ("*" "/2" is
 * restricted; Vixie cron would treat it as "*"). A step is 1 up to the
 * field's count of values (60, 24, 31, 12, 7); "*" "/n" and "a/n" in
 * day-of-week run to 6. Refused: values out of range, reversed ranges
 * ("fri-mon"; write "fri,sat,sun,mon"), step 0, empty items, names other
 * than the three-letter ones, @reboot, more than 256 bytes.
 *
 * Firing times are wall-clock times in a time zone, read from the system's
 * tzfile for that zone (TZDIR, else /usr/share/zoneinfo) by dv_tz, never
 * through the process-wide TZ and localtime(): any thread may use a dv_tz_t
 * it owns, and two zones can be used side by side.
 *
 * Daylight saving time, as cron does it:
 *   - a wall-clock time that does not exist (the hour skipped when clocks go
 *     forward) fires at the first instant after the gap, if the expression
 *     names fixed hours (its hour field is not "*"); an expression with "*"
 *     for the hour just has no firings in the gap;
 *   - a wall-clock time that happens twice (the hour repeated when clocks go
 *     back) fires once, at its first occurrence, if the expression names
 *     fixed hours; with "*" for the hour it fires at both.
 *
 * Nothing here allocates except dv_tz_load. Thread-safe: no shared state.
 */
#ifndef DV_CRON_H
#define DV_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A time zone: its offsets from UTC over time, from a tzfile. */
typedef struct dv_tz dv_tz_t;

/* Loads zone name ("UTC", "Europe/Berlin", "America/New_York"). A name with
 * "..", a leading "/", or characters other than letters, digits, '_', '+',
 * '-' and '/' is refused (so is one of 128 bytes or more), as is a file that
 * is not a valid tzfile: versions 1, 2 and 3 (and 4, which only differs in
 * leap seconds) are read, the 64-bit block of a version 2+ file is used,
 * every count is checked against the file's length (at most 256 KiB), and a
 * file with leap seconds ("right/" zones) is refused. The footer's POSIX TZ
 * rule gives the offset for times past the last transition; before the
 * first transition, the file's type 0 applies (RFC 8536). "UTC" works even
 * without tzdata installed. Returns NULL with a reason in err. Caller owns
 * the result. */
dv_tz_t *dv_tz_load(const char *name, char *err, size_t err_size);

/* Frees tz; NULL-safe; sets *tz_p to NULL. */
void dv_tz_free(dv_tz_t **tz_p);

/* The zone's name as loaded. */
const char *dv_tz_name(const dv_tz_t *tz);

/* Seconds east of UTC in tz at the instant utc_s (epoch seconds); *is_dst
 * (may be NULL) tells whether daylight saving time is in force. */
int32_t dv_tz_offset(const dv_tz_t *tz, int64_t utc_s, bool *is_dst);

/* The first instant after utc_s at which tz's offset may change (a
 * transition in the file, or one of the footer rule's), or INT64_MAX when
 * there is none. tz NULL is UTC. */
int64_t dv_tz_next_transition(const dv_tz_t *tz, int64_t utc_s);

/* A parsed expression: one bit per allowed value of each field. */
typedef struct {
    uint64_t second; /* bits 0..59; only bit 0 when there is no seconds field */
    uint64_t minute; /* bits 0..59 */
    uint32_t hour;   /* bits 0..23 */
    uint32_t mday;   /* bits 1..31 */
    uint16_t month;  /* bits 1..12 */
    uint8_t wday;    /* bits 0..6, Sunday = 0 */
    bool mday_star;  /* day-of-month was "*" (or "?") */
    bool wday_star;  /* day-of-week was "*" (or "?") */
    bool hour_star;  /* hour was "*" or "*" "/n": DST rules above */
    bool has_seconds;
} dv_cron_t;

/* Parses expr into out. Returns 0, or -1 with a reason naming the field
 * ("cron: hour: 24 is out of range 0-23"). */
int dv_cron_parse(const char *expr, dv_cron_t *out, char *err, size_t err_size);

/* The first firing strictly after after_ms (epoch ms), in epoch ms, with
 * wall-clock times read in tz (NULL: UTC). Returns -1 when there is none
 * within the next 8 years (such as "0 0 30 2 *"). Bounded: it steps by
 * days, hours and minutes, never second by second over a whole year. */
int64_t dv_cron_next(const dv_cron_t *c, const dv_tz_t *tz, int64_t after_ms);

/* Parses an interval for --every: a positive number with a unit, "30s",
 * "5m", "2h", "1d" (or a combination such as "1h30m", units from days
 * down to seconds, each once), into *ms_out. No sign, blanks, fractions or
 * "ms". Returns 0, or -1 with a reason. At least 1 s, at most 366 days. */
int dv_every_parse(const char *text, int64_t *ms_out, char *err,
                   size_t err_size);

#endif
