/* http_response - a finished request becomes its job's outcome: the
 * status and curl's result decide success, a retry on another key, or
 * which failure; the key pool and the endpoint's breaker learn from it.
 * Called after curl ran (http_harvest); never blocks.
 *
 * Out of memory: an outcome the outbox cannot take stays with the job
 * (worker_jobs.h) and is sent on a later pass.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dv_clock.h"
#include "dv_json.h"
#include "dv_log.h"
#include "http_internal.h"

/* Longest Retry-After honoured: a day. */
#define S_RETRY_AFTER_MAX_MS (24 * 3600 * 1000LL)
/* Bytes of an error response quoted in a failure message. */
#define S_QUOTE_MAX 200

/* Parses Retry-After (seconds, or an HTTP date). Returns ms, or -1. */
static int64_t
s_retry_after(handler_http_t *self, CURL *e)
{
    struct curl_header *hd = NULL;
    if (curl_easy_header(e, "Retry-After", 0, CURLH_HEADER, -1, &hd) !=
            CURLHE_OK ||
        !hd || !hd->value)
        return -1;
    const char *s = hd->value;
    char *end;
    errno = 0;
    double secs = strtod(s, &end);
    int64_t ms;
    if (end != s && errno == 0) {
        while (*end == ' ')
            end++;
        if (*end || secs < 0 || secs != secs)
            return -1;
        ms = secs * 1000.0 > (double)S_RETRY_AFTER_MAX_MS
                 ? S_RETRY_AFTER_MAX_MS
                 : (int64_t)(secs * 1000.0 + 0.5);
    } else {
        time_t t = curl_getdate(s, NULL);
        if (t < 0)
            return -1;
        ms = (int64_t)t * 1000 - self->wall;
        if (ms < 0)
            ms = 0;
        if (ms > S_RETRY_AFTER_MAX_MS)
            ms = S_RETRY_AFTER_MAX_MS;
    }
    return ms;
}

/* The start of an error response, printable, with keys replaced by ids,
 * for a failure message ("" when there is none). */
static const char *
s_quote(const http_handler_t *h, const http_req_t *q, char *buf, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < q->resp_len && n + 4 < size && i < S_QUOTE_MAX;
         i++) {
        unsigned char c = (unsigned char)q->resp[i];
        buf[n++] = c >= 0x20 && c != 0x7f ? (char)c : ' ';
    }
    if (q->resp_len > S_QUOTE_MAX && n + 4 < size) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    keypool_redact(h->keys, buf, n);
    return buf;
}

/* Makes the job's result from a 2xx response and reports it. */
static void
s_succeed(handler_http_t *self, int idx, const http_req_t *q)
{
    http_job_t *j = http_job(self, idx);
    const http_handler_t *h = &self->handlers[j->handler];
    const char *kid = keypool_id(h->keys, q->key);
    json_t *doc = NULL;
    if (q->resp_len > 0)
        doc = json_loadb(q->resp, q->resp_len, JSON_DECODE_ANY, NULL);
    /* Tokens the request used, for the key's token budget. */
    json_t *usage = json_is_object(doc) ? json_object_get(doc, "usage") : NULL;
    json_t *total = usage ? json_object_get(usage, "total_tokens") : NULL;
    if (json_is_integer(total))
        keypool_tokens(h->keys, q->key, (int64_t)json_integer_value(total));
    char *packed = NULL;
    size_t plen = 0;
    if (h->cfg->result) {
        json_t *v = doc ? http_template_pointer(doc, h->cfg->result) : NULL;
        if (!v) {
            http_fail_t f = { DV_CAT_UPSTREAM, true, 0, 0, kid };
            f.http_status = 200;
            http_fail(self, idx, &f, "response %s %s (%zu bytes)",
                      doc ? "has no" : "is not JSON, so it has no",
                      h->cfg->result, q->resp_len);
            json_decref(doc);
            return;
        }
        packed = dv_json_to_msgpack(v, &plen);
    } else if (doc) {
        packed = dv_json_to_msgpack(doc, &plen);
    } else if (q->resp_len == 0) {
        packed = dv_json_to_msgpack(json_null(), &plen);
    } else {
        /* Not JSON: the text itself. */
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_str_with_body(&pk, q->resp, q->resp_len);
        packed = sb.data;
        plen = sb.size;
    }
    json_decref(doc);
    if (!packed) {
        http_fail_t f = { DV_CAT_UPSTREAM, false, 0, 0, kid };
        http_fail(self, idx, &f, "the response cannot be stored as a result");
        return;
    }
    if (plen > DV_PAYLOAD_MAX) {
        free(packed);
        http_fail_t f = { DV_CAT_UPSTREAM, false, 0, 0, kid };
        http_fail(self, idx, &f, "result larger than 1 MiB (%zu bytes)", plen);
        return;
    }
    /* packed is handed over: kept with the job if the outbox has no room */
    worker_jobs_succeeded(self->jobs, idx, self->wall, dv_strn(packed, plen),
                          &packed);
}

/* curl errors that mean the endpoint did not answer: the breaker counts
 * them. */
static bool
s_connect_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static void
s_breaker_failure(handler_http_t *self, http_handler_t *h, breaker_verdict_t v,
                  const char *what)
{
    if (breaker_failure(h->breaker, v, self->mono)) {
        dv_log(DV_WARN, "worker.breaker_open",
               DV_STR("endpoint", breaker_endpoint(h->breaker)),
               DV_INT("failures", breaker_failures(h->breaker)),
               DV_STR("last", what),
               DV_INT("cooldown_ms", h->cfg->breaker_cooldown_ms));
        self->kick = true; /* waiting jobs fail fast now */
    }
}

static void
s_breaker_success(handler_http_t *self, http_handler_t *h, breaker_verdict_t v)
{
    bool was_open = breaker_open_until(h->breaker) != 0;
    breaker_success(h->breaker, v);
    if (was_open && breaker_open_until(h->breaker) == 0)
        dv_log(DV_INFO, "worker.breaker_closed",
               DV_STR("endpoint", breaker_endpoint(h->breaker)));
}

/* A request ended with curl's result rc: settle its job. */
static void
s_done(handler_http_t *self, int r, CURLcode rc)
{
    http_req_t *q = &self->reqs[r];
    int idx = q->job;
    http_job_t *j = http_job(self, idx);
    http_handler_t *h = &self->handlers[j->handler];
    const char *ep = breaker_endpoint(h->breaker);
    int k = q->key;
    const char *kid = keypool_id(h->keys, k);
    breaker_verdict_t v = q->verdict;
    long status = 0;
    curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
    /* The clock now, not the pass's: the request reached the server before
     * this moment, which is what the rate-limit window needs. */
    keypool_finish(h->keys, k, q->slot, dv_mono_ms());
    j->req = -1;
    char quote[S_QUOTE_MAX + 8];
    char text[1024];
    char what[64];

    if (rc == CURLE_OK) {
        if (status >= 500) {
            keypool_error(h->keys, k);
            snprintf(what, sizeof what, "HTTP %ld", status);
            s_breaker_failure(self, h, v, what);
            http_fail_t f = { DV_CAT_UPSTREAM, true,
                              s_retry_after(self, q->easy), (int)status, kid };
            http_fail(self, idx, &f, "HTTP %ld from %s: %s", status, ep,
                      s_quote(h, q, quote, sizeof quote));
        } else {
            s_breaker_success(self, h, v);
            if (status >= 200 && status < 300) {
                keypool_ok(h->keys, k);
                s_succeed(self, idx, q);
            } else if (status == 429) {
                int64_t cd = keypool_rate_limited(h->keys, k, self->mono,
                                                  s_retry_after(self, q->easy));
                dv_log(DV_DEBUG, "worker.key_cooling", DV_STR("key", kid),
                       DV_STR("type", h->cfg->type), DV_INT("cooldown_ms", cd));
                http_fail_t f = { DV_CAT_RATE_LIMITED, true, cd, 429, kid };
                http_fail(self, idx, &f,
                          "HTTP 429 from %s with %s: it cools down for %.1f s",
                          ep, kid, (double)cd / 1000.0);
            } else if (status == 401 || status == 403) {
                if (keypool_disable(h->keys, k, (int)status))
                    dv_log(DV_WARN, "worker.key_disabled", DV_STR("key", kid),
                           DV_STR("hash", keypool_hash(h->keys, k)),
                           DV_INT("status", status),
                           DV_STR("type", h->cfg->type),
                           DV_STR("endpoint", ep));
                if (j->sends > keypool_size(h->keys)) {
                    /* Every key was tried for this attempt. */
                    http_fail_t f = { DV_CAT_AUTH, true, 0, (int)status, kid };
                    http_fail(self, idx, &f, "%s",
                              keypool_explain(h->keys, self->mono, text,
                                              sizeof text));
                } else if (self->draining) {
                    worker_jobs_returned(self->jobs, idx);
                } else {
                    /* The same attempt again, first in line, on another
                     * key (or failed as auth if none is left). */
                    http_wait_push(self, idx, true);
                }
            } else if (status == 408) {
                keypool_error(h->keys, k);
                http_fail_t f = { DV_CAT_TIMEOUT, true, 0, 408, kid };
                http_fail(self, idx, &f, "HTTP 408 from %s", ep);
            } else {
                keypool_error(h->keys, k);
                http_fail_t f = { status >= 400 ? DV_CAT_INVALID_INPUT
                                                : DV_CAT_UPSTREAM,
                                  false, 0, (int)status, kid };
                http_fail(self, idx, &f, "HTTP %ld from %s: %s", status, ep,
                          s_quote(h, q, quote, sizeof quote));
            }
        }
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        keypool_error(h->keys, k);
        curl_off_t pre = 0;
        curl_easy_getinfo(q->easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
        if (pre == 0) {
            /* Never connected: the endpoint is down or unreachable. */
            s_breaker_failure(self, h, v, "connect timeout");
            http_fail_t f = { DV_CAT_UPSTREAM, true, 0, 0, kid };
            http_fail(self, idx, &f, "could not connect to %s within %.1f s",
                      ep, (double)h->cfg->connect_timeout_ms / 1000.0);
        } else {
            breaker_neutral(h->breaker, v);
            http_fail_t f = { DV_CAT_TIMEOUT, true, 0, 0, kid };
            http_fail(self, idx, &f, "no complete answer from %s within %.1f s",
                      ep, (double)j->timeout_ms / 1000.0);
        }
    } else if (q->too_big) {
        keypool_error(h->keys, k);
        breaker_neutral(h->breaker, v);
        http_fail_t f = { DV_CAT_UPSTREAM, false, 0, (int)status, kid };
        http_fail(self, idx, &f, "response from %s larger than %u MiB", ep,
                  HTTP_RESPONSE_MAX >> 20);
    } else {
        keypool_error(h->keys, k);
        bool conn = s_connect_error(rc);
        if (conn)
            s_breaker_failure(self, h, v, curl_easy_strerror(rc));
        else
            breaker_neutral(h->breaker, v);
        http_fail_t f = { DV_CAT_UPSTREAM, true, 0, 0, kid };
        http_fail(self, idx, &f, "%s: %s", ep,
                  q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
    }
    http_req_release(self, r);
}

void
http_harvest(handler_http_t *self)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(self->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        void *priv = NULL;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        curl_multi_remove_handle(self->multi, e);
        s_done(self, (int)(intptr_t)priv, rc);
    }
}

void
http_abort(handler_http_t *self, int idx)
{
    http_job_t *j = http_job(self, idx);
    http_req_t *q = &self->reqs[j->req];
    http_handler_t *h = &self->handlers[j->handler];
    curl_multi_remove_handle(self->multi, q->easy);
    keypool_finish(h->keys, q->key, q->slot, dv_mono_ms());
    breaker_neutral(h->breaker, q->verdict);
    int r = j->req;
    j->req = -1;
    http_req_release(self, r);
}
