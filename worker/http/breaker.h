/* breaker - a circuit breaker for one HTTP endpoint (host:port).
 *
 * closed: requests go. After `failures` consecutive failures (5xx, no
 * connection, connection reset) it opens.
 * open: requests are refused at once, for `cooldown`. Outcomes of requests
 * sent before it opened are ignored.
 * half_open: after the cooldown, one request (the probe) goes; the others
 * wait for its outcome. A success closes the breaker, a failure opens it
 * again for another cooldown, and a probe that ends neither way (timeout,
 * cancelled) lets the next request probe.
 *
 * Any HTTP answer that is not a 5xx counts as a success: the endpoint is
 * up, even if it said 429 or 401. Times are monotonic ms passed in.
 */
#ifndef BREAKER_H
#define BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct breaker_t breaker_t;

typedef enum {
    BREAKER_CLOSED,
    BREAKER_OPEN,
    BREAKER_HALF_OPEN,
} breaker_state_t;

typedef enum {
    BREAKER_GO,    /* send it */
    BREAKER_PROBE, /* send it: it is the half-open probe */
    BREAKER_WAIT,  /* half-open, a probe is in flight: wait for it */
    BREAKER_DENY,  /* open: fail fast */
} breaker_verdict_t;

/* A breaker for endpoint (copied) that opens after failures consecutive
 * failures (0: never) for cooldown_ms. NULL if out of memory. */
breaker_t *breaker_new(const char *endpoint, int failures, int64_t cooldown_ms);
void breaker_destroy(breaker_t **self_p);

/* May a request go at now? On BREAKER_DENY *open_until is when the
 * breaker goes half-open. */
breaker_verdict_t breaker_admit(breaker_t *self, int64_t now,
                                int64_t *open_until);

/* Outcome of a request admitted with verdict v (GO or PROBE). success:
 * any HTTP answer but a 5xx. failure: 5xx, connect error, reset; returns
 * true when this failure opened the breaker. neutral: neither (timeout,
 * cancelled, never sent). */
void breaker_success(breaker_t *self, breaker_verdict_t v);
bool breaker_failure(breaker_t *self, breaker_verdict_t v, int64_t now);
void breaker_neutral(breaker_t *self, breaker_verdict_t v);

/* State at now (open turns half_open once its cooldown has passed). */
breaker_state_t breaker_state(const breaker_t *self, int64_t now);
const char *breaker_state_name(breaker_state_t s);

/* Consecutive failures counted so far (while closed), or the run that
 * opened it. */
int breaker_failures(const breaker_t *self);
/* Failures needed to open; 0 = never opens. */
int breaker_threshold(const breaker_t *self);
/* When an open breaker goes half-open (mono ms); 0 when not open. */
int64_t breaker_open_until(const breaker_t *self);
/* Times it opened. */
int64_t breaker_opened(const breaker_t *self);
const char *breaker_endpoint(const breaker_t *self);

#endif
