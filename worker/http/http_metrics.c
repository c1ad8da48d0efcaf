/* http_metrics - what the http lane says about itself: the "http" and
 * "keys" entries of the heartbeat body (shapes in docs/protocol.md) and
 * the SIGUSR1 dump (key ids only, never keys). Read-only.
 */
#include <string.h>

#include "dv_log.h"
#include "http_internal.h"

int
http_metrics_count(const void *lane)
{
    const handler_http_t *self = lane;
    return self->nhandlers > 0 ? 2 : 0;
}

static void
s_pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static const char *
s_key_state(keypool_state_t s)
{
    return s == KEYPOOL_DISABLED  ? "disabled"
           : s == KEYPOOL_COOLING ? "cooling"
                                  : "ok";
}

void
http_pack_metrics(const void *lane, msgpack_packer *pk)
{
    const handler_http_t *self = lane;
    if (self->nhandlers == 0)
        return;
    int64_t now = self->mono;
    s_pack_str(pk, "http");
    msgpack_pack_map(pk, 4);
    s_pack_str(pk, "in_flight");
    msgpack_pack_int(pk, self->in_flight);
    s_pack_str(pk, "waiting");
    msgpack_pack_uint64(pk, worker_jobs_queued(self->jobs));
    s_pack_str(pk, "concurrency");
    msgpack_pack_int(pk, self->concurrency);
    s_pack_str(pk, "breakers");
    msgpack_pack_array(pk, (size_t)self->nbreakers);
    for (int i = 0; i < self->nbreakers; i++) {
        const breaker_t *b = self->breakers[i];
        msgpack_pack_map(pk, 4);
        s_pack_str(pk, "endpoint");
        s_pack_str(pk, breaker_endpoint(b));
        s_pack_str(pk, "state");
        s_pack_str(pk, breaker_state_name(breaker_state(b, now)));
        s_pack_str(pk, "failures");
        msgpack_pack_int(pk, breaker_failures(b));
        s_pack_str(pk, "opened");
        msgpack_pack_int64(pk, breaker_opened(b));
    }
    s_pack_str(pk, "keys");
    size_t nkeys = 0;
    for (int i = 0; i < self->nhandlers; i++)
        nkeys += (size_t)keypool_size(self->handlers[i].keys);
    msgpack_pack_array(pk, nkeys);
    for (int i = 0; i < self->nhandlers; i++) {
        const http_handler_t *h = &self->handlers[i];
        for (int k = 0; k < keypool_size(h->keys); k++) {
            keypool_stats_t st;
            keypool_stats(h->keys, k, now, &st);
            msgpack_pack_map(pk, 11);
            s_pack_str(pk, "type");
            s_pack_str(pk, h->cfg->type);
            s_pack_str(pk, "id");
            s_pack_str(pk, st.id);
            s_pack_str(pk, "hash");
            s_pack_str(pk, st.hash);
            s_pack_str(pk, "state");
            s_pack_str(pk, s_key_state(st.state));
            s_pack_str(pk, "requests");
            msgpack_pack_int64(pk, st.requests);
            s_pack_str(pk, "ok");
            msgpack_pack_int64(pk, st.ok);
            s_pack_str(pk, "rate_limited");
            msgpack_pack_int64(pk, st.rate_limited);
            s_pack_str(pk, "errors");
            msgpack_pack_int64(pk, st.errors);
            s_pack_str(pk, "cooldown_until_ms");
            msgpack_pack_int64(pk, st.cooldown_until
                                       ? self->wall + (st.cooldown_until - now)
                                       : 0);
            s_pack_str(pk, "tokens");
            msgpack_pack_int(pk, st.tokens);
            s_pack_str(pk, "disabled_status");
            msgpack_pack_int(pk, st.disabled_status);
        }
    }
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
