/* http_request - from a waiting job to a request in flight: the
 * endpoint's breaker must admit it, its handler's key pool must have a
 * usable key, and the request is rendered from the handler's templates
 * (once per attempt; kept for a resend on another key). When the keys
 * carry a url or template values (a JSON Lines key file), the request
 * depends on the key: the key is chosen first, the request rendered with
 * it, and rendered again if a resend goes on another key (the payload is
 * kept for that until the job leaves the lane). The dispatch
 * looks at waiting jobs in order and stops looking at a handler once it
 * is blocked this pass. Never blocks.
 *
 * Out of memory: the job keeps its place in line, nothing is reported,
 * and the dispatch looks again after HTTP_RETRY_MS.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_err.h"
#include "dv_json.h"
#include "dv_log.h"
#include "http_internal.h"

typedef enum { T_SENT, T_DONE, T_BLOCKED } s_try_t;

/* Undoes a partial render. */
static void
s_unrender(http_job_t *j)
{
    free(j->url);
    free(j->body);
    curl_slist_free_all(j->headers);
    j->url = j->body = NULL;
    j->headers = NULL;
    j->body_len = 0;
}

/* Appends line to *l. Returns 0 or DV_ENOMEM (*l unchanged). */
static int
s_append(struct curl_slist **l, const char *line)
{
    struct curl_slist *n = curl_slist_append(*l, line);
    if (!n)
        return DV_ENOMEM;
    *l = n;
    return 0;
}

/* Renders a job's URL, headers and body from its handler's templates,
 * for key k (-1: a request the same for every key). Returns 0, -1 (the
 * job cannot be rendered: why), or DV_ENOMEM (nothing kept; try again
 * later). */
static int
s_render(handler_http_t *self, http_job_t *j, int k, char *why, size_t ws)
{
    http_handler_t *h = &self->handlers[j->handler];
    json_t *payload = NULL;
    if (j->payload_len > 0) {
        char reason[200];
        payload = dv_msgpack_to_json(j->payload, j->payload_len, reason,
                                     sizeof reason);
        if (!payload)
            return dv_err_set(why, ws, "the payload cannot be read as JSON: %s",
                              reason);
    }
    bool oom = false;
    http_template_ctx_t ctx = { payload, j->base.id, j->base.attempt,
                                &oom,    NULL,       NULL };
    const http_template_t *url = h->url;
    if (k >= 0) {
        ctx.key_id = keypool_id(h->keys, k);
        if (h->cfg->entries)
            ctx.key_vars = h->cfg->entries[k].vars;
        if (h->key_urls && h->key_urls[k])
            url = h->key_urls[k];
    }
    size_t len;
    int rc = -1;
    j->url = http_template_render(url, &ctx, &len, why, ws);
    if (!j->url)
        goto done;
    for (int i = 0; i < h->nheaders; i++) {
        char *line = http_template_render(h->headers[i], &ctx, &len, why, ws);
        if (!line)
            goto done;
        int arc = s_append(&j->headers, line);
        free(line);
        if (arc != 0) {
            rc = arc;
            goto done;
        }
    }
    if (h->send_body) {
        if (h->body) {
            j->body =
                http_template_render(h->body, &ctx, &j->body_len, why, ws);
        } else {
            j->body = json_dumps(payload ? payload : json_null(),
                                 JSON_COMPACT | JSON_ENCODE_ANY);
            j->body_len = j->body ? strlen(j->body) : 0;
            if (!j->body)
                rc = DV_ENOMEM;
        }
        if (!j->body)
            goto done;
        if (!h->cfg->has_content_type && !h->cfg->body_text &&
            (rc = s_append(&j->headers, "Content-Type: application/json")) != 0)
            goto done;
    }
    /* No "Expect: 100-continue" round trip before larger bodies. */
    if ((rc = s_append(&j->headers, "Expect:")) != 0)
        goto done;
    j->rendered = true;
    j->rendered_key = k;
    if (!h->cfg->keys_vary) {
        free(j->payload);
        j->payload = NULL;
        j->payload_len = 0;
    }
    rc = 0;
done:
    if (rc != 0 && oom)
        rc = DV_ENOMEM;
    if (rc != 0)
        s_unrender(j);
    json_decref(payload);
    return rc;
}

/* Appends the "Name: value" auth line for key k to *l (if the handler
 * has one). Returns 0 or DV_ENOMEM. */
static int
s_auth_line(const http_handler_t *h, int k, struct curl_slist **l)
{
    const char *secret = keypool_secret(h->keys, k);
    const char *tmpl = h->cfg->auth_header;
    if (!secret || !tmpl)
        return 0;
    const char *at = strstr(tmpl, "{key}");
    size_t n = strlen(tmpl) - 5 + strlen(secret) + 1;
    char *line = malloc(n);
    if (!line)
        return DV_ENOMEM;
    snprintf(line, n, "%.*s%s%s", (int)(at - tmpl), tmpl, secret, at + 5);
    int rc = s_append(l, line);
    explicit_bzero(line, n);
    free(line);
    return rc;
}

static int
s_req_alloc(handler_http_t *self)
{
    int r = self->req_free;
    if (r < 0)
        return -1;
    self->req_free = self->reqs[r].next_free;
    http_req_t *q = &self->reqs[r];
    if (!q->easy && !(q->easy = curl_easy_init())) {
        self->req_free = r;
        return -1;
    }
    q->next_free = -1;
    return r;
}

void
http_req_release(handler_http_t *self, int r)
{
    http_req_t *q = &self->reqs[r];
    http_slist_free_secret(q->hdrs);
    q->hdrs = NULL;
    q->job = -1;
    q->resp_len = 0;
    q->too_big = false;
    /* A big response's buffer is not kept for the next one. */
    if (q->resp_cap > 65536) {
        free(q->resp);
        q->resp = NULL;
        q->resp_cap = 0;
    }
    q->next_free = self->req_free;
    self->req_free = r;
    self->in_flight--;
    self->kick = true;
}

/* Gives request slot r back without it having been in flight. */
static void
s_req_unalloc(handler_http_t *self, int r)
{
    http_req_t *q = &self->reqs[r];
    http_slist_free_secret(q->hdrs);
    q->hdrs = NULL;
    q->job = -1;
    q->next_free = self->req_free;
    self->req_free = r;
}

/* Sets up and adds the request for job idx with key k. Returns 0, -1
 * (curl refused), or DV_ENOMEM (nothing changed; try again later). */
static int
s_send(handler_http_t *self, int idx, int k, int slot, breaker_verdict_t v)
{
    http_job_t *j = http_job(self, idx);
    http_handler_t *h = &self->handlers[j->handler];
    int r = s_req_alloc(self);
    if (r < 0)
        return -1;
    http_req_t *q = &self->reqs[r];
    q->job = idx;
    q->key = k;
    q->slot = slot;
    q->verdict = v;
    q->errbuf[0] = '\0';
    q->resp_len = 0;
    q->too_big = false;
    int rc = 0;
    for (struct curl_slist *p = j->headers; p && rc == 0; p = p->next)
        rc = s_append(&q->hdrs, p->data);
    if (rc == 0)
        rc = s_auth_line(h, k, &q->hdrs);
    /* "started" before the request goes, so nothing needs undoing if the
     * outbox has no room. */
    if (rc == 0 && !j->started) {
        if (worker_outbox_started(self->outbox, worker_job_exec(&j->base),
                                  self->wall) == 0)
            j->started = j->base.started = true;
        else
            rc = DV_ENOMEM;
    }
    if (rc != 0) {
        s_req_unalloc(self, r);
        return rc;
    }
    if (j->deadline == 0)
        j->deadline = self->mono + j->timeout_ms;
    int64_t left = j->deadline - self->mono;
    if (left < 1)
        left = 1;

    CURL *e = q->easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, j->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "drover-worker");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)h->cfg->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)left);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, q->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)(intptr_t)r);
    const char *m = h->cfg->method;
    if (h->send_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)j->body_len);
        if (strcmp(m, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    } else if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
    }
    if (curl_multi_add_handle(self->multi, e) != CURLM_OK) {
        s_req_unalloc(self, r);
        return -1;
    }
    self->in_flight++;
    j->req = r;
    worker_jobs_unlink(self->jobs, idx);
    j->base.state = J_FLIGHT;
    j->sends++;
    return 0;
}

/* Out of memory: the job keeps its place; the lane looks again in a
 * while. */
static s_try_t
s_later(handler_http_t *self)
{
    int64_t at = self->mono + HTTP_RETRY_MS;
    if (at < self->wake_at)
        self->wake_at = at;
    return T_BLOCKED;
}

/* Tries to send waiting job idx now. T_DONE: it failed (and is gone);
 * T_BLOCKED: its handler cannot send now (self->wake_at updated). */
static s_try_t
s_try(handler_http_t *self, int idx)
{
    http_job_t *j = http_job(self, idx);
    http_handler_t *h = &self->handlers[j->handler];
    const char *ep = breaker_endpoint(h->breaker);
    int64_t until = 0;
    breaker_verdict_t v = breaker_admit(h->breaker, self->mono, &until);
    if (v == BREAKER_WAIT)
        return T_BLOCKED; /* the probe's outcome kicks us */
    if (v == BREAKER_DENY && until - self->mono <= h->cfg->max_wait_ms) {
        /* Open, but not for long: wait in the lane as for a cooling key,
         * rather than fail and spend one of the job's attempts. */
        if (until < self->wake_at)
            self->wake_at = until;
        return T_BLOCKED;
    }
    if (v == BREAKER_DENY) {
        http_fail_t f = { DV_CAT_UPSTREAM, true, until - self->mono, 0, NULL };
        http_fail(self, idx, &f,
                  "circuit open for %s after %d consecutive failures (5xx or "
                  "no connection); next try in %.1f s",
                  ep, breaker_failures(h->breaker),
                  (double)(until - self->mono) / 1000.0);
        return T_DONE;
    }
    if (v == BREAKER_PROBE)
        dv_log(DV_INFO, "worker.breaker_half_open", DV_STR("endpoint", ep),
               DV_STR("job", j->base.id));
    char why[512];
    bool vary = h->cfg->keys_vary;
    int rc = j->rendered || vary ? 0 : s_render(self, j, -1, why, sizeof why);
    if (rc == DV_ENOMEM) {
        breaker_neutral(h->breaker, v);
        return s_later(self);
    }
    if (rc != 0) {
        breaker_neutral(h->breaker, v);
        http_fail_t f = { DV_CAT_INVALID_INPUT, false, 0, 0, NULL };
        http_fail(self, idx, &f, "%s", why);
        return T_DONE;
    }
    int slot = -1;
    int64_t ready = 0;
    bool cooling = false;
    int k = keypool_acquire(h->keys, self->mono, &slot, &ready, &cooling);
    if (k < 0) {
        breaker_neutral(h->breaker, v);
        if (keypool_all_disabled(h->keys)) {
            http_fail_t f = { DV_CAT_AUTH, true, 0, 0, NULL };
            http_fail(self, idx, &f, "%s",
                      keypool_explain(h->keys, self->mono, why, sizeof why));
            return T_DONE;
        }
        /* A key waiting for a request in flight frees up a window after
         * it ends, and one waiting for a grant when the grant comes: that
         * end or that grant kicks the dispatch again. */
        if (ready != KEYPOOL_AFTER_FINISH && ready != KEYPOOL_AFTER_GRANT &&
            ready - self->mono > h->cfg->max_wait_ms) {
            http_fail_t f = { DV_CAT_RATE_LIMITED, true, ready - self->mono, 0,
                              NULL };
            http_fail(self, idx, &f, "%s",
                      keypool_explain(h->keys, self->mono, why, sizeof why));
            return T_DONE;
        }
        if (ready < self->wake_at)
            self->wake_at = ready;
        return T_BLOCKED;
    }
    if (vary && (!j->rendered || j->rendered_key != k)) {
        /* The request depends on the key: rendered for this one. */
        s_unrender(j);
        j->rendered = false;
        rc = s_render(self, j, k, why, sizeof why);
        if (rc != 0) {
            keypool_unacquire(h->keys, k, slot);
            breaker_neutral(h->breaker, v);
        }
        if (rc == DV_ENOMEM)
            return s_later(self);
        if (rc != 0) {
            http_fail_t f = { DV_CAT_INVALID_INPUT, false, 0, 0,
                              keypool_id(h->keys, k) };
            http_fail(self, idx, &f, "%s", why);
            return T_DONE;
        }
    }
    rc = s_send(self, idx, k, slot, v);
    if (rc != 0) {
        keypool_unacquire(h->keys, k, slot);
        breaker_neutral(h->breaker, v);
    }
    if (rc == DV_ENOMEM)
        return s_later(self);
    if (rc != 0) {
        http_fail_t f = { DV_CAT_UPSTREAM, true, 0, 0, NULL };
        http_fail(self, idx, &f, "the request could not be started (curl)");
        return T_DONE;
    }
    return T_SENT;
}

void
http_dispatch(void *lane)
{
    handler_http_t *self = lane;
    if (!self->multi || self->draining || worker_jobs_queued(self->jobs) == 0)
        return;
    if (!self->kick && self->mono < self->wake_at)
        return;
    self->kick = false;
    self->wake_at = INT64_MAX;
    self->pass++;
    int blocked = 0, sent = 0;
    int idx = worker_jobs_first(self->jobs);
    while (idx >= 0 && self->in_flight < self->concurrency &&
           blocked < self->nhandlers) {
        int next = http_job(self, idx)->base.next;
        http_handler_t *h = &self->handlers[http_job(self, idx)->handler];
        if (h->blocked_pass != self->pass) {
            s_try_t t = s_try(self, idx);
            if (t == T_BLOCKED) {
                h->blocked_pass = self->pass;
                blocked++;
            } else if (t == T_SENT) {
                sent++;
            }
        }
        idx = next;
    }
    if (sent > 0) {
        /* Start the new transfers now rather than on the next pass. */
        int running;
        self->timer_at = INT64_MAX;
        curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        http_harvest(self);
    }
}
