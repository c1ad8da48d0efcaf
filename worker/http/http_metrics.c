/* http_metrics - what the http lane says about itself: its part of the
 * heartbeat body (has_http, http and keys of a dv_hbmetrics_t; shapes in
 * docs/protocol.md) and the SIGUSR1 dump (key ids only, never keys).
 * Changes nothing but its own heartbeat arrays.
 */
#include <stdlib.h>
#include <string.h>

#include "dv_log.h"
#include "http_internal.h"

static const char *
s_key_state(keypool_state_t s)
{
    return s == KEYPOOL_DISABLED  ? "disabled"
           : s == KEYPOOL_COOLING ? "cooling"
                                  : "ok";
}

static size_t
s_nkeys(const handler_http_t *self)
{
    size_t n = 0;
    for (int i = 0; i < self->nhandlers; i++)
        n += (size_t)keypool_size(self->handlers[i].keys);
    return n;
}

/* The arrays the body points at, made at the first heartbeat and reused:
 * breakers and keys are fixed once the lane is made. */
static int
s_scratch(handler_http_t *self, size_t nkeys)
{
    if (!self->hb_breakers && self->nbreakers > 0) {
        self->hb_breakers =
            calloc((size_t)self->nbreakers, sizeof *self->hb_breakers);
        if (!self->hb_breakers)
            return DV_ENOMEM;
    }
    if (!self->hb_keys && nkeys > 0) {
        self->hb_keys = calloc(nkeys, sizeof *self->hb_keys);
        if (!self->hb_keys)
            return DV_ENOMEM;
    }
    return DV_OK;
}

int
http_fill_metrics(void *lane, dv_hbmetrics_t *m)
{
    handler_http_t *self = lane;
    if (self->nhandlers == 0)
        return DV_OK;
    size_t nkeys = s_nkeys(self);
    if (s_scratch(self, nkeys) != DV_OK)
        return DV_ENOMEM;
    int64_t now = self->mono;
    for (int i = 0; i < self->nbreakers; i++) {
        const breaker_t *b = self->breakers[i];
        self->hb_breakers[i] = (dv_hb_breaker_t){
            .endpoint = dv_str(breaker_endpoint(b)),
            .state = dv_str(breaker_state_name(breaker_state(b, now))),
            .failures = breaker_failures(b),
            .opened = breaker_opened(b),
        };
    }
    size_t n = 0;
    for (int i = 0; i < self->nhandlers; i++) {
        const http_handler_t *h = &self->handlers[i];
        for (int k = 0; k < keypool_size(h->keys); k++) {
            keypool_stats_t st;
            keypool_stats(h->keys, k, now, &st);
            self->hb_keys[n++] = (dv_hb_key_t){
                .type = dv_str(h->cfg->type),
                .id = dv_str(st.id),
                .hash = dv_str(st.hash),
                .state = dv_str(s_key_state(st.state)),
                .requests = st.requests,
                .ok = st.ok,
                .rate_limited = st.rate_limited,
                .errors = st.errors,
                .cooldown_until_ms =
                    st.cooldown_until ? self->wall + (st.cooldown_until - now)
                                      : 0,
                .tokens = st.tokens,
                .disabled_status = st.disabled_status,
            };
        }
    }
    m->has_http = true;
    m->http = (dv_hb_http_t){
        .in_flight = self->in_flight,
        .waiting = (int64_t)worker_jobs_queued(self->jobs),
        .concurrency = self->concurrency,
        .breakers = self->hb_breakers,
        .nbreakers = (uint32_t)self->nbreakers,
    };
    m->keys = self->hb_keys;
    m->nkeys = (uint32_t)n;
    return DV_OK;
}

void
http_dump(const void *lane)
{
    const handler_http_t *self = lane;
    if (self->nhandlers == 0)
        return;
    int64_t now = self->mono;
    dv_log(DV_INFO, "worker.state_http", DV_INT("in_flight", self->in_flight),
           DV_INT("waiting", worker_jobs_queued(self->jobs)),
           DV_INT("held", worker_jobs_held_count(self->jobs)),
           DV_INT("concurrency", self->concurrency),
           DV_INT("sockets", self->nsocks),
           DV_BOOL("draining", self->draining));
    for (int i = 0; i < self->nbreakers; i++) {
        const breaker_t *b = self->breakers[i];
        int64_t until = breaker_open_until(b);
        dv_log(DV_INFO, "worker.state_breaker",
               DV_STR("endpoint", breaker_endpoint(b)),
               DV_STR("state", breaker_state_name(breaker_state(b, now))),
               DV_INT("failures", breaker_failures(b)),
               DV_INT("threshold", breaker_threshold(b)),
               DV_INT("opened", breaker_opened(b)),
               DV_INT("open_ms_left", until > now ? until - now : 0));
    }
    for (int i = 0; i < self->nhandlers; i++) {
        const http_handler_t *h = &self->handlers[i];
        for (int k = 0; k < keypool_size(h->keys); k++) {
            keypool_stats_t st;
            keypool_stats(h->keys, k, now, &st);
            dv_log(DV_INFO, "worker.state_key", DV_STR("type", h->cfg->type),
                   DV_STR("key", st.id), DV_STR("hash", st.hash),
                   DV_STR("state", s_key_state(st.state)),
                   DV_INT("requests", st.requests), DV_INT("ok", st.ok),
                   DV_INT("rate_limited", st.rate_limited),
                   DV_INT("errors", st.errors),
                   DV_INT("cooldown_ms_left",
                          st.cooldown_until ? st.cooldown_until - now : 0),
                   DV_INT("tokens", st.tokens),
                   DV_INT("disabled_status", st.disabled_status));
        }
    }
}
