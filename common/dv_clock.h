/* dv_clock - wall clock for timestamps that are stored or sent (ms since the
 * Unix epoch), monotonic clock for deadlines and latency (never goes back). */
#ifndef DV_CLOCK_H
#define DV_CLOCK_H

#include <stdint.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t dv_now_ms(void);

/* Microseconds from an arbitrary origin (CLOCK_MONOTONIC). */
int64_t dv_mono_us(void);

/* Milliseconds from an arbitrary origin (CLOCK_MONOTONIC). */
int64_t dv_mono_ms(void);

/* Formats epoch milliseconds as ISO 8601 UTC ("2026-11-22T17:41:00.123Z")
 * into buf (at least 25 bytes). Returns buf. */
char *dv_time_format(int64_t ms, char *buf, unsigned size);

/* Parses an ISO 8601 UTC time ("2026-11-22T17:41:00Z", fraction and "Z"
 * optional) or "@<epoch seconds>" into epoch ms. Returns 0 or -1. */
int dv_time_parse(const char *s, int64_t *ms_out);

/* Parses a user-facing duration in seconds, fractions allowed ("1.5", "30",
 * also "250ms", "2m", "1h"), into milliseconds. Rejects negative, NaN and
 * absurd values (more than 10 years). Returns 0 or -1. */
int dv_duration_parse(const char *s, int64_t *ms_out);

#endif
