/* dv_backoff - retry delays.
 *
 * delay(attempt) = min(cap, base * factor^(attempt-1)), then with full jitter
 * a uniform draw in [0, delay], and never less than a retry_after hint the
 * handler gave (e.g. HTTP Retry-After). attempt counts from 1 (the attempt
 * that just failed). */
#ifndef DV_BACKOFF_H
#define DV_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int64_t base_ms; /* delay after the first failure, before jitter */
    double factor;   /* growth per attempt, >= 1 */
    int64_t cap_ms;  /* largest delay, before the retry_after floor */
    bool jitter;     /* full jitter: uniform in [0, delay] */
} dv_backoff_t;

#define DV_BACKOFF_DEFAULT ((dv_backoff_t){ 1000, 2.0, 300000, true })

/* Returns the delay in ms before attempt+1. rnd01 is a uniform draw in
 * [0, 1) (pass dv_rand01()); it is ignored without jitter. */
int64_t dv_backoff_delay(const dv_backoff_t *b, int attempt,
                         int64_t retry_after_ms, double rnd01);

/* Uniform double in [0, 1) from a per-process xorshift generator. */
double dv_rand01(void);

#endif
