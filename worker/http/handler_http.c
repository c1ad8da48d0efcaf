/* handler_http - see handler_http.h. This file is the lane itself: setup
 * and teardown of the handlers (templates, key pools, breakers) and curl,
 * jobs taken, cancelled, drained, the held list for HELLO. Requests are
 * made in http_request.c, settled in http_response.c; curl's sockets are
 * in http_curl.c. Never blocks.
 */
#include "handler_http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_err.h"
#include "dv_log.h"
#include "http_internal.h"

void
http_fail(handler_http_t *self, int idx, const http_fail_t *f, const char *fmt,
          ...)
{
    http_job_t *j = http_job(self, idx);
    char msg[DV_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dv_failure_t df;
    dv_failure_init(&df);
    df.category = f->category;
    df.retryable = f->retryable;
    df.retry_after_ms = f->retry_after_ms > 0 ? f->retry_after_ms : 0;
    df.http_status = f->http_status;
    df.key_id = dv_str(f->key_id);
    df.message = dv_str(msg);
    dv_log(DV_DEBUG, "worker.http_failed", DV_STR("job", j->base.id),
           DV_INT("attempt", j->base.attempt),
           DV_STR("type", http_type(self, j)),
           DV_STR("category", dv_category_name(f->category)),
           DV_INT("http_status", f->http_status), DV_STR("key", f->key_id));
    worker_jobs_failed(self->jobs, idx, self->wall, &df, true);
}

void
http_slist_free_secret(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p; p = p->next)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

void
http_wait_push(handler_http_t *self, int idx, bool front)
{
    http_job_t *j = http_job(self, idx);
    j->base.state = J_WAITING;
    j->waiting_since = self->mono;
    worker_jobs_push(self->jobs, idx, front);
    self->kick = true;
}

/* The lane's fields of a job that leaves it. */
static void
s_clear(worker_job_t *job, bool destroying)
{
    (void)destroying;
    http_job_t *j = (http_job_t *)job;
    free(j->payload);
    free(j->url);
    free(j->body);
    curl_slist_free_all(j->headers);
    j->payload = j->url = j->body = NULL;
    j->headers = NULL;
    j->payload_len = 0;
    j->body_len = 0;
    j->req = -1;
}

static int
s_handler_init(handler_http_t *self, http_handler_t *h,
               const http_handler_cfg_t *c, char *err, size_t es)
{
    char why[300];
    h->cfg = c;
    h->url = http_template_new_text(c->url, HTTP_TEXT_URL, why, sizeof why);
    if (!h->url)
        return dv_err_set(err, es, "http.%s.url: %s", c->type, why);
    if (c->nheaders > 0) {
        h->headers = calloc((size_t)c->nheaders, sizeof *h->headers);
        if (!h->headers)
            return dv_err_set(err, es, "out of memory");
    }
    for (int i = 0; i < c->nheaders; i++) {
        h->headers[i] = http_template_new_text(c->headers[i], HTTP_TEXT_HEADER,
                                               why, sizeof why);
        if (!h->headers[i])
            return dv_err_set(err, es, "http.%s.headers: %s", c->type, why);
        h->nheaders++;
    }
    h->send_body =
        strcmp(c->method, "GET") != 0 && strcmp(c->method, "HEAD") != 0 &&
        (c->body || c->body_text || strcmp(c->method, "DELETE") != 0);
    if (c->body)
        h->body = http_template_new_json(c->body, why, sizeof why);
    else if (c->body_text)
        h->body = http_template_new_text(c->body_text, HTTP_TEXT_PLAIN, why,
                                         sizeof why);
    if ((c->body || c->body_text) && !h->body)
        return dv_err_set(err, es, "http.%s.body: %s", c->type, why);
    /* One state per key, whatever the types that use it: handlers that
     * read the same keys with the same limits share a pool. */
    for (int i = 0; i < self->nhandlers && c->nkeys > 0; i++) {
        const http_handler_cfg_t *o = self->handlers[i].cfg;
        if (o->keys_from && c->keys_from &&
            strcmp(o->keys_from, c->keys_from) == 0 && o->rpm == c->rpm &&
            o->tpm == c->tpm && o->window_ms == c->window_ms) {
            h->keys = self->handlers[i].keys;
            break;
        }
    }
    if (c->entries) {
        h->key_urls = calloc((size_t)c->nkeys, sizeof *h->key_urls);
        if (!h->key_urls)
            return dv_err_set(err, es, "out of memory");
        for (int i = 0; i < c->nkeys; i++) {
            if (!c->entries[i].url)
                continue;
            h->key_urls[i] = http_template_new_text(
                c->entries[i].url, HTTP_TEXT_URL, why, sizeof why);
            if (!h->key_urls[i])
                return dv_err_set(err, es, "http.%s: key %s: url: %s", c->type,
                                  c->entries[i].id, why);
        }
    }
    if (!h->keys && c->entries) {
        keypool_key_t *ks = calloc((size_t)c->nkeys, sizeof *ks);
        if (!ks)
            return dv_err_set(err, es, "out of memory");
        for (int i = 0; i < c->nkeys; i++)
            ks[i] = (keypool_key_t){ c->keys[i], c->entries[i].id,
                                     c->entries[i].rpm, c->entries[i].tpm };
        h->keys = keypool_new_keys(ks, c->nkeys, c->rpm);
        free(ks);
        if (!h->keys)
            return dv_err_set(err, es, "http.%s: cannot make the key pool",
                              c->type);
        h->owns_keys = true;
        keypool_set_window(h->keys, c->window_ms);
        keypool_set_tpm(h->keys, c->tpm);
        keypool_fleet(h->keys, true);
    }
    if (!h->keys) {
        h->keys = keypool_new((const char *const *)c->keys, c->nkeys, c->rpm);
        if (!h->keys)
            return dv_err_set(err, es, "http.%s: cannot make the key pool",
                              c->type);
        h->owns_keys = true;
        keypool_set_window(h->keys, c->window_ms);
        keypool_set_tpm(h->keys, c->tpm);
        keypool_fleet(h->keys, c->nkeys > 0);
    }
    for (int i = 0; i < self->nbreakers; i++)
        if (strcmp(breaker_endpoint(self->breakers[i]), c->endpoint) == 0)
            h->breaker = self->breakers[i];
    if (!h->breaker) {
        breaker_t **b =
            realloc(self->breakers, (size_t)(self->nbreakers + 1) * sizeof *b);
        if (!b)
            return dv_err_set(err, es, "out of memory");
        self->breakers = b;
        h->breaker = breaker_new(c->endpoint, c->breaker_failures,
                                 c->breaker_cooldown_ms);
        if (!h->breaker)
            return dv_err_set(err, es, "out of memory");
        self->breakers[self->nbreakers++] = h->breaker;
    }
    return 0;
}

static void
s_handler_clear(http_handler_t *h)
{
    http_template_destroy(&h->url);
    for (int i = 0; i < h->nheaders; i++)
        http_template_destroy(&h->headers[i]);
    free(h->headers);
    http_template_destroy(&h->body);
    for (int i = 0; h->key_urls && i < h->cfg->nkeys; i++)
        http_template_destroy(&h->key_urls[i]);
    free(h->key_urls);
    h->key_urls = NULL;
    if (h->owns_keys)
        keypool_destroy(&h->keys);
    h->keys = NULL;
}

handler_http_t *
handler_http_new(const worker_config_t *cfg, const char *name,
                 worker_outbox_t *outbox, char *err, size_t es)
{
    handler_http_t *self = calloc(1, sizeof *self);
    if (!self) {
        dv_err_set(err, es, "out of memory");
        return NULL;
    }
    self->cfg = cfg;
    self->name = name;
    self->outbox = outbox;
    self->req_free = -1;
    self->timer_at = INT64_MAX;
    self->wake_at = INT64_MAX;
    const http_config_t *hc = cfg->http;
    /* Room for the most jobs the broker can send at once: no growth on the
     * hot path. */
    int concurrency =
        hc && hc->n > 0 ? (cfg->http_concurrency > 0 ? cfg->http_concurrency
                                                     : HTTP_CONCURRENCY_DEFAULT)
                        : 0;
    /* Without handlers the lane holds no job: the smallest table. */
    int room =
        concurrency > 0 ? cfg->concurrency + cfg->prefetch + concurrency : 0;
    self->jobs = worker_jobs_new(sizeof(http_job_t), room, outbox, s_clear);
    if (!self->jobs) {
        dv_err_set(err, es, "out of memory");
        goto fail;
    }
    if (concurrency == 0)
        return self;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        dv_err_set(err, es, "cannot start libcurl");
        goto fail;
    }
    self->curl_inited = true;
    self->concurrency = concurrency;
    self->handlers = calloc((size_t)hc->n, sizeof *self->handlers);
    self->reqs = calloc((size_t)self->concurrency, sizeof *self->reqs);
    if (!self->handlers || !self->reqs) {
        dv_err_set(err, es, "out of memory");
        goto fail;
    }
    for (int i = 0; i < hc->n; i++) {
        self->nhandlers++;
        if (s_handler_init(self, &self->handlers[i], &hc->h[i], err, es) != 0)
            goto fail;
    }
    for (int i = self->concurrency - 1; i >= 0; i--) {
        self->reqs[i].job = -1;
        self->reqs[i].next_free = self->req_free;
        self->req_free = i;
    }
    self->multi = curl_multi_init();
    if (!self->multi) {
        dv_err_set(err, es, "cannot start libcurl's multi interface");
        goto fail;
    }
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETFUNCTION, http_on_socket);
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERFUNCTION, http_on_timer);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERDATA, self);
    /* One open connection per request slot is enough to reuse them all. */
    curl_multi_setopt(self->multi, CURLMOPT_MAXCONNECTS,
                      (long)self->concurrency);
    for (int i = 0; i < self->nhandlers; i++) {
        const http_handler_cfg_t *c = self->handlers[i].cfg;
        dv_log(DV_INFO, "worker.http_handler", DV_STR("type", c->type),
               DV_STR("endpoint", c->endpoint), DV_STR("method", c->method),
               DV_INT("keys", c->nkeys), DV_STR("keys_from", c->keys_from),
               DV_INT("rpm", c->rpm),
               DV_INT("breaker_failures", c->breaker_failures));
    }
    return self;
fail:
    handler_http_destroy(&self);
    return NULL;
}

void
handler_http_destroy(handler_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    handler_http_t *self = *self_p;
    for (int i = 0; self->reqs && i < self->concurrency; i++) {
        http_req_t *q = &self->reqs[i];
        if (q->easy) {
            if (q->job >= 0 && self->multi)
                curl_multi_remove_handle(self->multi, q->easy);
            curl_easy_cleanup(q->easy);
        }
        http_slist_free_secret(q->hdrs);
        free(q->resp);
    }
    if (self->multi)
        curl_multi_cleanup(self->multi);
    worker_jobs_destroy(&self->jobs);
    for (int i = 0; self->handlers && i < self->nhandlers; i++)
        s_handler_clear(&self->handlers[i]);
    for (int i = 0; i < self->nbreakers; i++)
        breaker_destroy(&self->breakers[i]);
    free(self->breakers);
    free(self->handlers);
    free(self->reqs);
    free(self->socks);
    free(self->fdmap);
    free(self->poll_map);
    free(self->hb_breakers);
    free(self->hb_keys);
    if (self->curl_inited)
        curl_global_cleanup();
    free(self);
    *self_p = NULL;
}

/* The handler for jobs of this type, or -1. */
static int
s_handler_of(const handler_http_t *self, dv_str_t type)
{
    for (int i = 0; i < self->nhandlers; i++) {
        const char *t = self->handlers[i].cfg->type;
        if (strlen(t) == type.len && memcmp(t, type.ptr, type.len) == 0)
            return i;
    }
    return -1;
}

static bool
s_owns(const void *lane, dv_str_t type)
{
    return s_handler_of(lane, type) >= 0;
}

static int
s_capacity(const void *lane)
{
    const handler_http_t *self = lane;
    return self->nhandlers > 0 ? self->concurrency : 0;
}

static void
s_set_time(void *lane, int64_t mono_ms, int64_t wall_ms)
{
    handler_http_t *self = lane;
    self->mono = mono_ms;
    self->wall = wall_ms;
}

static int
s_add(void *lane, const dv_job_t *job)
{
    handler_http_t *self = lane;
    int hi = s_handler_of(self, job->type);
    if (hi < 0)
        return -1;
    int idx;
    int rc = worker_jobs_admit(self->jobs, job, self->draining, &idx);
    if (rc != WORKER_JOBS_TAKEN)
        return rc;
    http_job_t *j = http_job(self, idx);
    j->handler = hi;
    j->rendered = j->started = false;
    j->rendered_key = -1;
    j->deadline = 0;
    j->sends = 0;
    j->req = -1;
    const http_handler_cfg_t *c = self->handlers[hi].cfg;
    j->timeout_ms = job->timeout_ms > 0         ? job->timeout_ms
                    : c->timeout_ms > 0         ? c->timeout_ms
                    : self->cfg->timeout_ms > 0 ? self->cfg->timeout_ms
                                                : HTTP_TIMEOUT_DEFAULT_MS;
    if (job->payload.ptr && job->payload.len > 0) {
        j->payload = malloc(job->payload.len);
        if (!j->payload) {
            dv_log(DV_ERROR, "worker.job_returned", DV_STR("job", j->base.id),
                   DV_STR("error", "out of memory"));
            worker_jobs_returned(self->jobs, idx);
            return 0;
        }
        memcpy(j->payload, job->payload.ptr, job->payload.len);
        j->payload_len = job->payload.len;
    }
    http_wait_push(self, idx, false);
    return 0;
}

static int
s_cancel(void *lane, dv_str_t id, uint64_t lease, dv_str_t reason)
{
    handler_http_t *self = lane;
    int idx = worker_jobs_revoked(self->jobs, id, lease);
    if (idx < 0 || http_job(self, idx)->base.state < WORKER_JOB_LANE)
        return -1;
    http_job_t *j = http_job(self, idx);
    char why[128];
    dv_str_copy(reason, why, sizeof why);
    dv_log(DV_INFO, "worker.job_cancelled", DV_STR("job", j->base.id),
           DV_STR("reason", why),
           DV_STR("state", j->base.state == J_FLIGHT ? "running" : "queued"));
    if (j->base.state == J_FLIGHT)
        http_abort(self, idx);
    worker_jobs_drop(self->jobs, idx); /* no longer ours: no report */
    return 0;
}

static int64_t
s_next_deadline(const void *lane)
{
    const handler_http_t *self = lane;
    int64_t t = self->timer_at;
    for (int i = 0; i < self->nhandlers; i++)
        if (self->handlers[i].owns_keys) {
            int64_t e = keypool_next_expiry(self->handlers[i].keys);
            if (e < t)
                t = e;
        }
    if (worker_jobs_unreported(self->jobs) > 0 &&
        self->mono + HTTP_RETRY_MS < t)
        t = self->mono + HTTP_RETRY_MS;
    if (worker_jobs_queued(self->jobs) > 0 && !self->draining) {
        if (self->kick && self->in_flight < self->concurrency)
            return self->mono;
        if (self->wake_at < t)
            t = self->wake_at;
    }
    return t;
}

static void
s_drain(void *lane)
{
    handler_http_t *self = lane;
    if (self->draining)
        return;
    self->draining = true;
    int idx;
    while ((idx = worker_jobs_first(self->jobs)) >= 0)
        worker_jobs_returned(self->jobs, idx);
}

static void
s_stop_running(void *lane)
{
    handler_http_t *self = lane;
    http_fail_t f = { DV_CAT_TIMEOUT, true, 0, 0, NULL };
    for (int i = 0; i < worker_jobs_slots(self->jobs); i++) {
        if (http_job(self, i)->base.state != J_FLIGHT)
            continue;
        http_abort(self, i);
        http_fail(self, i, &f,
                  "still running when the worker's shutdown grace period "
                  "ended");
    }
}

static size_t
s_held_count(const void *lane)
{
    return worker_jobs_held_count(((const handler_http_t *)lane)->jobs);
}

static size_t
s_held(const void *lane, dv_held_t *held, size_t max)
{
    return worker_jobs_held(((const handler_http_t *)lane)->jobs, held, max);
}

static void
s_stats(const void *lane, worker_lane_stats_t *st)
{
    (void)lane;
    memset(st, 0, sizeof *st); /* no processes of its own */
}

static void
s_flush(void *lane, bool reports)
{
    handler_http_t *self = lane;
    if (reports)
        worker_jobs_retry(self->jobs);
}

/* ---- the fleet's API keys -------------------------------------------------- */

static void
s_keys_reset(void *lane)
{
    handler_http_t *self = lane;
    for (int i = 0; i < self->nhandlers; i++)
        if (self->handlers[i].owns_keys)
            keypool_fleet_reset(self->handlers[i].keys);
}

static void
s_keys_in(void *lane, const dv_keyitem_t *items, uint32_t n)
{
    handler_http_t *self = lane;
    for (uint32_t k = 0; k < n; k++)
        for (int i = 0; i < self->nhandlers; i++)
            if (self->handlers[i].owns_keys &&
                keypool_apply(self->handlers[i].keys, &items[k], self->mono))
                self->kick = true;
}

static int
s_keys_out(void *lane, dv_keyitem_t *items, int max)
{
    handler_http_t *self = lane;
    /* What it could start now: jobs in line, up to the free request
     * slots (draining: nothing). */
    int want = 0;
    if (!self->draining) {
        want = (int)worker_jobs_queued(self->jobs);
        if (want > self->concurrency - self->in_flight)
            want = self->concurrency - self->in_flight;
    }
    int n = 0;
    for (int i = 0; i < self->nhandlers && n < max; i++)
        if (self->handlers[i].owns_keys)
            n += keypool_lines(self->handlers[i].keys, self->mono, want,
                               items + n, max - n);
    return n;
}

static const worker_lane_ops_t s_ops = {
    .name = "http",
    .owns = s_owns,
    .capacity = s_capacity,
    .set_time = s_set_time,
    .poll_count = http_poll_count,
    .poll_items = http_poll_items,
    .io = http_io,
    .add = s_add,
    .cancel = s_cancel,
    .dispatch = http_dispatch,
    .flush = s_flush,
    .next_deadline = s_next_deadline,
    .drain = s_drain,
    .stop_running = s_stop_running,
    .held_count = s_held_count,
    .held = s_held,
    .stats = s_stats,
    .fill_metrics = http_fill_metrics,
    .dump = http_dump,
    .keys_reset = s_keys_reset,
    .keys_in = s_keys_in,
    .keys_out = s_keys_out,
};

worker_lane_t
handler_http_lane(handler_http_t *self)
{
    return (worker_lane_t){ &s_ops, self };
}
