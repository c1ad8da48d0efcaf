#include "breaker.h"

#include <stdlib.h>
#include <string.h>

struct breaker_t {
    char *endpoint;      /* "host:port" */
    int threshold;       /* failures that open it; 0 = never */
    int64_t cooldown_ms; /* how long it stays open */
    bool open;           /* open or half-open (see open_until) */
    int64_t open_until;  /* mono ms: half-open from then on */
    bool probing;        /* half-open and the probe is in flight */
    int failures;        /* consecutive failures */
    int64_t opened;      /* times it opened */
};

breaker_t *
breaker_new(const char *endpoint, int failures, int64_t cooldown_ms)
{
    breaker_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->endpoint = strdup(endpoint);
    if (!self->endpoint) {
        free(self);
        return NULL;
    }
    self->threshold = failures > 0 ? failures : 0;
    self->cooldown_ms = cooldown_ms > 0 ? cooldown_ms : 0;
    return self;
}

void
breaker_destroy(breaker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->endpoint);
    free(*self_p);
    *self_p = NULL;
}

breaker_verdict_t
breaker_admit(breaker_t *self, int64_t now, int64_t *open_until)
{
    if (!self->open)
        return BREAKER_GO;
    if (now < self->open_until) {
        *open_until = self->open_until;
        return BREAKER_DENY;
    }
    if (self->probing)
        return BREAKER_WAIT;
    self->probing = true;
    return BREAKER_PROBE;
}

static void
s_open(breaker_t *self, int64_t now)
{
    self->open = true;
    self->probing = false;
    self->open_until = now + self->cooldown_ms;
    self->opened++;
}

void
breaker_success(breaker_t *self, breaker_verdict_t v)
{
    if (v == BREAKER_PROBE) {
        self->open = false;
        self->probing = false;
        self->failures = 0;
    } else if (!self->open) {
        self->failures = 0;
    }
    /* An answer to a request sent before the breaker opened says little
     * about now: the probe decides. */
}

bool
breaker_failure(breaker_t *self, breaker_verdict_t v, int64_t now)
{
    if (v == BREAKER_PROBE) {
        s_open(self, now);
        return true;
    }
    if (self->open)
        return false;
    self->failures++;
    if (self->threshold > 0 && self->failures >= self->threshold) {
        s_open(self, now);
        return true;
    }
    return false;
}

void
breaker_neutral(breaker_t *self, breaker_verdict_t v)
{
    if (v == BREAKER_PROBE && self->open)
        self->probing = false;
}

breaker_state_t
breaker_state(const breaker_t *self, int64_t now)
{
    if (!self->open)
        return BREAKER_CLOSED;
    return now < self->open_until ? BREAKER_OPEN : BREAKER_HALF_OPEN;
}

const char *
breaker_state_name(breaker_state_t s)
{
    switch (s) {
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half_open";
    default:
        return "closed";
    }
}

int
breaker_failures(const breaker_t *self)
{
    return self->failures;
}

int
breaker_threshold(const breaker_t *self)
{
    return self->threshold;
}

int64_t
breaker_open_until(const breaker_t *self)
{
    return self->open ? self->open_until : 0;
}

int64_t
breaker_opened(const breaker_t *self)
{
    return self->opened;
}

const char *
breaker_endpoint(const breaker_t *self)
{
    return self->endpoint;
}
