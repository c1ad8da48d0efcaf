#include "handler_http.h"
#include "dv_err.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker.h"
#include "dv_clock.h"
#include "dv_json.h"
#include "dv_log.h"
#include "http_config.h"
#include "http_template.h"
#include "keypool.h"

/* Largest response body read; a bigger one fails the attempt. */
#define S_RESPONSE_MAX (8u << 20)
/* Longest Retry-After honoured: a day. */
#define S_RETRY_AFTER_MAX_MS (24 * 3600 * 1000LL)
/* Bytes of an error response quoted in a failure message. */
#define S_QUOTE_MAX 200

typedef enum { J_FREE, J_WAITING, J_FLIGHT } s_jstate_t;

typedef struct {
    s_jstate_t state;
    uint8_t idlen;
    char id[WORKER_ID_MAX + 1]; /* NUL-terminated for logs and templates */
    int32_t attempt;
    int handler;             /* index into self->handlers */
    char *payload;           /* msgpack, until the request is rendered */
    uint32_t payload_len;
    char *url;               /* rendered request, kept for a resend */
    char *body;
    size_t body_len;
    struct curl_slist *headers; /* rendered headers, without the key */
    bool rendered;
    bool started;            /* "started" reported */
    int64_t timeout_ms;      /* attempt limit */
    int64_t deadline;        /* mono ms, from the first send */
    int64_t waiting_since;   /* mono ms */
    int sends;               /* requests made for this attempt */
    int req;                 /* request slot while in flight, else -1 */
    int prev, next;          /* waiting list, or free list (next) */
    int hnext;               /* id hash chain */
} s_job_t;

typedef struct {
    CURL *easy;              /* reused: keeps its connection and DNS cache */
    int job;                 /* -1 when free */
    int key, slot;           /* the key used and its rate-limit slot */
    breaker_verdict_t verdict;
    struct curl_slist *hdrs; /* this request's headers, with the key */
    char *resp;              /* response body */
    size_t resp_len, resp_cap;
    bool too_big;            /* body passed S_RESPONSE_MAX */
    char errbuf[CURL_ERROR_SIZE];
    int next_free;
} s_req_t;

typedef struct {
    const http_handler_cfg_t *cfg;
    http_template_t *url;
    http_template_t **headers;
    int nheaders;
    http_template_t *body;   /* NULL: the payload as JSON (or none) */
    bool send_body;          /* the method carries a body */
    keypool_t *keys;
    breaker_t *breaker;      /* shared with handlers of the same endpoint */
    uint64_t blocked_pass;   /* the dispatch pass that found it blocked */
} s_handler_t;

typedef struct {
    int fd;
    int what;                /* CURL_POLL_IN/OUT/INOUT */
} s_sock_t;

struct handler_http_t {
    const worker_config_t *cfg;
    const char *name;
    worker_outbox_t *outbox;
    s_handler_t *handlers;
    int nhandlers;
    breaker_t **breakers;
    int nbreakers;
    CURLM *multi;
    int concurrency;
    s_job_t *jobs;
    int njobs;
    int free_head;
    int *buckets;            /* id hash -> first job, -1 */
    unsigned nbuckets;       /* power of two */
    int wait_head, wait_tail;
    size_t nwaiting;
    size_t held;
    s_req_t *reqs;           /* concurrency slots */
    int req_free;
    int in_flight;
    s_sock_t *socks;
    int nsocks, socks_cap;
    int *fdmap;              /* fd -> index in socks, -1 */
    int fdmap_len;
    int *poll_map;           /* poll item -> fd */
    int poll_cap;
    int64_t timer_at;        /* curl's timeout, mono ms; INT64_MAX = none */
    int64_t wake_at;         /* a blocked waiting job may go then */
    bool kick;               /* something changed: look at waiting jobs */
    uint64_t pass;
    bool draining;
    bool curl_inited;
    int64_t mono, wall;
};

/* ---- small helpers ------------------------------------------------------ */

static void
s_oom(void)
{
    dv_log(DV_ERROR, "worker.oom", DV_STR("where", "http"));
    abort();
}

static uint32_t
s_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static dv_str_t
s_id(const s_job_t *j)
{
    return dv_strn(j->id, j->idlen);
}

static const char *
s_type(const handler_http_t *self, const s_job_t *j)
{
    return self->handlers[j->handler].cfg->type;
}

/* Frees a header list whose strings may hold a key: zeroed first. */
static void
s_slist_free_secret(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p; p = p->next)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

/* ---- job slots, hash, waiting list -------------------------------------- */

static void
s_rehash(handler_http_t *self)
{
    unsigned nb = 16;
    while (nb < (unsigned)self->njobs * 2)
        nb *= 2;
    int *b = malloc(nb * sizeof *b);
    if (!b)
        s_oom();
    for (unsigned i = 0; i < nb; i++)
        b[i] = -1;
    for (int i = 0; i < self->njobs; i++) {
        s_job_t *j = &self->jobs[i];
        if (j->state == J_FREE)
            continue;
        unsigned h = s_hash(j->id, j->idlen) & (nb - 1);
        j->hnext = b[h];
        b[h] = i;
    }
    free(self->buckets);
    self->buckets = b;
    self->nbuckets = nb;
}

static void
s_grow_jobs(handler_http_t *self)
{
    int old = self->njobs;
    int cap = old ? old * 2 : 64;
    s_job_t *jobs = realloc(self->jobs, (size_t)cap * sizeof *jobs);
    if (!jobs)
        s_oom();
    memset(jobs + old, 0, (size_t)(cap - old) * sizeof *jobs);
    for (int i = cap - 1; i >= old; i--) {
        jobs[i].state = J_FREE;
        jobs[i].req = -1;
        jobs[i].next = self->free_head;
        self->free_head = i;
    }
    self->jobs = jobs;
    self->njobs = cap;
    s_rehash(self);
}

static int
s_find(const handler_http_t *self, const char *id, size_t len)
{
    if (!self->nbuckets)
        return -1;
    unsigned h = s_hash(id, len) & (self->nbuckets - 1);
    for (int i = self->buckets[h]; i >= 0; i = self->jobs[i].hnext) {
        const s_job_t *j = &self->jobs[i];
        if (j->idlen == len && memcmp(j->id, id, len) == 0)
            return i;
    }
    return -1;
}

static void
s_wait_push(handler_http_t *self, int idx, bool front)
{
    s_job_t *j = &self->jobs[idx];
    j->state = J_WAITING;
    j->waiting_since = self->mono;
    if (front) {
        j->prev = -1;
        j->next = self->wait_head;
        if (self->wait_head >= 0)
            self->jobs[self->wait_head].prev = idx;
        else
            self->wait_tail = idx;
        self->wait_head = idx;
    } else {
        j->next = -1;
        j->prev = self->wait_tail;
        if (self->wait_tail >= 0)
            self->jobs[self->wait_tail].next = idx;
        else
            self->wait_head = idx;
        self->wait_tail = idx;
    }
    self->nwaiting++;
    self->kick = true;
}

static void
s_wait_remove(handler_http_t *self, int idx)
{
    s_job_t *j = &self->jobs[idx];
    if (j->prev >= 0)
        self->jobs[j->prev].next = j->next;
    else
        self->wait_head = j->next;
    if (j->next >= 0)
        self->jobs[j->next].prev = j->prev;
    else
        self->wait_tail = j->prev;
    j->prev = j->next = -1;
    self->nwaiting--;
}

static int
s_job_alloc(handler_http_t *self, dv_str_t id)
{
    if (self->free_head < 0)
        s_grow_jobs(self);
    int idx = self->free_head;
    s_job_t *j = &self->jobs[idx];
    self->free_head = j->next;
    memset(j, 0, sizeof *j);
    j->idlen = (uint8_t)id.len;
    memcpy(j->id, id.ptr, id.len);
    j->id[id.len] = '\0';
    j->req = -1;
    j->prev = j->next = -1;
    unsigned h = s_hash(j->id, j->idlen) & (self->nbuckets - 1);
    j->hnext = self->buckets[h];
    self->buckets[h] = idx;
    self->held++;
    return idx;
}

/* Frees a job that is neither waiting nor in flight any more. */
static void
s_job_free(handler_http_t *self, int idx)
{
    s_job_t *j = &self->jobs[idx];
    unsigned h = s_hash(j->id, j->idlen) & (self->nbuckets - 1);
    int *pp = &self->buckets[h];
    while (*pp >= 0 && *pp != idx)
        pp = &self->jobs[*pp].hnext;
    if (*pp == idx)
        *pp = j->hnext;
    free(j->payload);
    free(j->url);
    free(j->body);
    curl_slist_free_all(j->headers);
    memset(j, 0, sizeof *j);
    j->state = J_FREE;
    j->req = -1;
    j->next = self->free_head;
    self->free_head = idx;
    self->held--;
}

/* ---- reports ------------------------------------------------------------ */

typedef struct {
    dv_category_t category;
    bool retryable;
    int64_t retry_after_ms;
    int http_status;
    const char *key_id;
} s_fail_t;

static void
s_fail(handler_http_t *self, int idx, const s_fail_t *f, const char *fmt,
       ...)
{
    s_job_t *j = &self->jobs[idx];
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
    dv_log(DV_DEBUG, "worker.http_failed", DV_STR("job", j->id),
           DV_INT("attempt", j->attempt), DV_STR("type", s_type(self, j)),
           DV_STR("category", dv_category_name(f->category)),
           DV_INT("http_status", f->http_status),
           DV_STR("key", f->key_id));
    worker_outbox_failed(self->outbox, s_id(j), j->attempt, self->wall, &df);
    s_job_free(self, idx);
}

/* ---- curl callbacks ------------------------------------------------------ */

static int
s_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
            void *socketp)
{
    (void)easy;
    (void)socketp;
    handler_http_t *self = userp;
    if (fd < 0)
        return 0;
    if (fd >= self->fdmap_len) {
        int n = self->fdmap_len ? self->fdmap_len : 256;
        while (n <= fd)
            n *= 2;
        int *m = realloc(self->fdmap, (size_t)n * sizeof *m);
        if (!m)
            s_oom();
        for (int i = self->fdmap_len; i < n; i++)
            m[i] = -1;
        self->fdmap = m;
        self->fdmap_len = n;
    }
    int k = self->fdmap[fd];
    if (what == CURL_POLL_REMOVE) {
        if (k >= 0) {
            /* Swap the last one into its place. */
            self->socks[k] = self->socks[--self->nsocks];
            if (k < self->nsocks)
                self->fdmap[self->socks[k].fd] = k;
            self->fdmap[fd] = -1;
        }
        return 0;
    }
    if (k < 0) {
        if (self->nsocks == self->socks_cap) {
            int cap = self->socks_cap ? self->socks_cap * 2 : 64;
            s_sock_t *s = realloc(self->socks, (size_t)cap * sizeof *s);
            if (!s)
                s_oom();
            self->socks = s;
            self->socks_cap = cap;
        }
        k = self->nsocks++;
        self->socks[k].fd = fd;
        self->fdmap[fd] = k;
    }
    self->socks[k].what = what;
    return 0;
}

static int
s_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    handler_http_t *self = userp;
    self->timer_at = timeout_ms < 0 ? INT64_MAX : dv_mono_ms() + timeout_ms;
    return 0;
}

static size_t
s_on_body(char *data, size_t size, size_t n, void *userp)
{
    s_req_t *r = userp;
    size_t len = size * n;
    if (r->resp_len + len > S_RESPONSE_MAX) {
        r->too_big = true;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    if (r->resp_len + len + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 1024;
        while (cap < r->resp_len + len + 1)
            cap *= 2;
        char *p = realloc(r->resp, cap);
        if (!p)
            return 0;
        r->resp = p;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, data, len);
    r->resp_len += len;
    r->resp[r->resp_len] = '\0';
    return len;
}

/* ---- requests ------------------------------------------------------------ */

/* Renders a job's URL, headers and body from its handler's templates. */
static int
s_render(handler_http_t *self, s_job_t *j, char *why, size_t ws)
{
    s_handler_t *h = &self->handlers[j->handler];
    json_t *payload = NULL;
    if (j->payload_len > 0) {
        char reason[200];
        payload = dv_msgpack_to_json(j->payload, j->payload_len, reason,
                                     sizeof reason);
        if (!payload)
            return dv_err_set(why, ws, "the payload cannot be read as JSON: %s",
                         reason);
    }
    http_template_ctx_t ctx = { payload, j->id, j->attempt };
    size_t len;
    int rc = -1;
    j->url = http_template_render(h->url, &ctx, &len, why, ws);
    if (!j->url)
        goto done;
    for (int i = 0; i < h->nheaders; i++) {
        char *line = http_template_render(h->headers[i], &ctx, &len, why, ws);
        if (!line)
            goto done;
        struct curl_slist *l = curl_slist_append(j->headers, line);
        free(line);
        if (!l)
            s_oom();
        j->headers = l;
    }
    if (h->send_body) {
        if (h->body) {
            j->body = http_template_render(h->body, &ctx, &j->body_len, why,
                                           ws);
        } else {
            j->body = json_dumps(payload ? payload : json_null(),
                                 JSON_COMPACT | JSON_ENCODE_ANY);
            j->body_len = j->body ? strlen(j->body) : 0;
            if (!j->body)
                dv_err_set(why, ws, "out of memory");
        }
        if (!j->body)
            goto done;
        if (!h->cfg->has_content_type && !h->cfg->body_text) {
            struct curl_slist *l =
                curl_slist_append(j->headers, "Content-Type: application/json");
            if (!l)
                s_oom();
            j->headers = l;
        }
    }
    /* No "Expect: 100-continue" round trip before larger bodies. */
    struct curl_slist *l = curl_slist_append(j->headers, "Expect:");
    if (!l)
        s_oom();
    j->headers = l;
    j->rendered = true;
    free(j->payload);
    j->payload = NULL;
    j->payload_len = 0;
    rc = 0;
done:
    json_decref(payload);
    return rc;
}

/* The "Name: value" auth line for key k, in a list of its own. */
static struct curl_slist *
s_auth_line(const s_handler_t *h, int k)
{
    const char *secret = keypool_secret(h->keys, k);
    const char *tmpl = h->cfg->auth_header;
    if (!secret || !tmpl)
        return NULL;
    const char *at = strstr(tmpl, "{key}");
    size_t n = strlen(tmpl) - 5 + strlen(secret) + 1;
    char *line = malloc(n);
    if (!line)
        s_oom();
    snprintf(line, n, "%.*s%s%s", (int)(at - tmpl), tmpl, secret, at + 5);
    struct curl_slist *l = curl_slist_append(NULL, line);
    explicit_bzero(line, n);
    free(line);
    if (!l)
        s_oom();
    return l;
}

static int
s_req_alloc(handler_http_t *self)
{
    int r = self->req_free;
    if (r < 0)
        return -1;
    self->req_free = self->reqs[r].next_free;
    s_req_t *q = &self->reqs[r];
    if (!q->easy && !(q->easy = curl_easy_init())) {
        self->req_free = r;
        return -1;
    }
    q->next_free = -1;
    return r;
}

static void
s_req_release(handler_http_t *self, int r)
{
    s_req_t *q = &self->reqs[r];
    s_slist_free_secret(q->hdrs);
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

/* Sets up and adds the request for job idx with key k. Returns 0 or -1. */
static int
s_send(handler_http_t *self, int idx, int k, int slot, breaker_verdict_t v)
{
    s_job_t *j = &self->jobs[idx];
    s_handler_t *h = &self->handlers[j->handler];
    int r = s_req_alloc(self);
    if (r < 0)
        return -1;
    s_req_t *q = &self->reqs[r];
    q->job = idx;
    q->key = k;
    q->slot = slot;
    q->verdict = v;
    q->errbuf[0] = '\0';
    q->resp_len = 0;
    q->too_big = false;
    for (struct curl_slist *p = j->headers; p; p = p->next) {
        struct curl_slist *l = curl_slist_append(q->hdrs, p->data);
        if (!l)
            s_oom();
        q->hdrs = l;
    }
    struct curl_slist *auth = s_auth_line(h, k);
    if (auth) {
        /* Splice the key's line on at the end. */
        struct curl_slist *t = q->hdrs;
        while (t && t->next)
            t = t->next;
        if (t)
            t->next = auth;
        else
            q->hdrs = auth;
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
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_on_body);
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
        s_slist_free_secret(q->hdrs);
        q->hdrs = NULL;
        q->job = -1;
        q->next_free = self->req_free;
        self->req_free = r;
        return -1;
    }
    self->in_flight++;
    j->req = r;
    j->state = J_FLIGHT;
    j->sends++;
    if (!j->started) {
        j->started = true;
        worker_outbox_started(self->outbox, s_id(j), j->attempt, self->wall);
    }
    return 0;
}

typedef enum { T_SENT, T_DONE, T_BLOCKED } s_try_t;

/* Tries to send waiting job idx now. T_DONE: it failed (and is gone);
 * T_BLOCKED: its handler cannot send now (self->wake_at updated). */
static s_try_t
s_try(handler_http_t *self, int idx)
{
    s_job_t *j = &self->jobs[idx];
    s_handler_t *h = &self->handlers[j->handler];
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
        s_wait_remove(self, idx);
        s_fail_t f = { DV_CAT_UPSTREAM, true, until - self->mono, 0, NULL };
        s_fail(self, idx, &f,
               "circuit open for %s after %d consecutive failures (5xx or "
               "no connection); next try in %.1f s",
               ep, breaker_failures(h->breaker),
               (double)(until - self->mono) / 1000.0);
        return T_DONE;
    }
    if (v == BREAKER_PROBE)
        dv_log(DV_INFO, "worker.breaker_half_open", DV_STR("endpoint", ep),
               DV_STR("job", j->id));
    char why[512];
    if (!j->rendered && s_render(self, j, why, sizeof why) != 0) {
        breaker_neutral(h->breaker, v);
        s_wait_remove(self, idx);
        s_fail_t f = { DV_CAT_INVALID_INPUT, false, 0, 0, NULL };
        s_fail(self, idx, &f, "%s", why);
        return T_DONE;
    }
    int slot = -1;
    int64_t ready = 0;
    bool cooling = false;
    int k = keypool_acquire(h->keys, self->mono, &slot, &ready, &cooling);
    if (k < 0) {
        breaker_neutral(h->breaker, v);
        if (keypool_all_disabled(h->keys)) {
            s_wait_remove(self, idx);
            s_fail_t f = { DV_CAT_AUTH, true, 0, 0, NULL };
            s_fail(self, idx, &f, "%s",
                   keypool_explain(h->keys, self->mono, why, sizeof why));
            return T_DONE;
        }
        /* A key waiting for a request in flight frees up 60 s after it
         * ends; that end kicks the dispatch again. */
        if (ready != KEYPOOL_AFTER_FINISH &&
            ready - self->mono > h->cfg->max_wait_ms) {
            s_wait_remove(self, idx);
            s_fail_t f = { DV_CAT_RATE_LIMITED, true, ready - self->mono, 0,
                           NULL };
            s_fail(self, idx, &f, "%s",
                   keypool_explain(h->keys, self->mono, why, sizeof why));
            return T_DONE;
        }
        if (ready < self->wake_at)
            self->wake_at = ready;
        return T_BLOCKED;
    }
    s_wait_remove(self, idx);
    if (s_send(self, idx, k, slot, v) != 0) {
        keypool_unacquire(h->keys, k, slot);
        breaker_neutral(h->breaker, v);
        s_fail_t f = { DV_CAT_UPSTREAM, true, 0, 0, NULL };
        s_fail(self, idx, &f, "the request could not be started (curl)");
        return T_DONE;
    }
    return T_SENT;
}

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
s_quote(const s_handler_t *h, const s_req_t *q, char *buf, size_t size)
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
s_succeed(handler_http_t *self, int idx, const s_req_t *q)
{
    s_job_t *j = &self->jobs[idx];
    const s_handler_t *h = &self->handlers[j->handler];
    const char *kid = keypool_id(h->keys, q->key);
    json_t *doc = NULL;
    if (q->resp_len > 0)
        doc = json_loadb(q->resp, q->resp_len, JSON_DECODE_ANY, NULL);
    char *packed = NULL;
    size_t plen = 0;
    if (h->cfg->result) {
        json_t *v = doc ? http_template_pointer(doc, h->cfg->result) : NULL;
        if (!v) {
            s_fail_t f = { DV_CAT_UPSTREAM, true, 0, 0, kid };
            f.http_status = 200;
            s_fail(self, idx, &f, "response %s %s (%zu bytes)",
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
        s_fail_t f = { DV_CAT_UPSTREAM, false, 0, 0, kid };
        s_fail(self, idx, &f, "the response cannot be stored as a result");
        return;
    }
    if (plen > DV_PAYLOAD_MAX) {
        free(packed);
        s_fail_t f = { DV_CAT_UPSTREAM, false, 0, 0, kid };
        s_fail(self, idx, &f, "result larger than 1 MiB (%zu bytes)", plen);
        return;
    }
    worker_outbox_succeeded(self->outbox, s_id(j), j->attempt, self->wall,
                            dv_strn(packed, plen));
    free(packed);
    s_job_free(self, idx);
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
s_breaker_failure(handler_http_t *self, s_handler_t *h, breaker_verdict_t v,
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
s_breaker_success(handler_http_t *self, s_handler_t *h, breaker_verdict_t v)
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
    s_req_t *q = &self->reqs[r];
    int idx = q->job;
    s_job_t *j = &self->jobs[idx];
    s_handler_t *h = &self->handlers[j->handler];
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
            s_fail_t f = { DV_CAT_UPSTREAM, true, s_retry_after(self, q->easy),
                           (int)status, kid };
            s_fail(self, idx, &f, "HTTP %ld from %s: %s", status, ep,
                   s_quote(h, q, quote, sizeof quote));
        } else {
            s_breaker_success(self, h, v);
            if (status >= 200 && status < 300) {
                keypool_ok(h->keys, k);
                s_succeed(self, idx, q);
            } else if (status == 429) {
                int64_t cd = keypool_rate_limited(
                    h->keys, k, self->mono, s_retry_after(self, q->easy));
                dv_log(DV_DEBUG, "worker.key_cooling", DV_STR("key", kid),
                       DV_STR("type", h->cfg->type), DV_INT("cooldown_ms", cd));
                s_fail_t f = { DV_CAT_RATE_LIMITED, true, cd, 429, kid };
                s_fail(self, idx, &f,
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
                    s_fail_t f = { DV_CAT_AUTH, true, 0, (int)status, kid };
                    s_fail(self, idx, &f, "%s",
                           keypool_explain(h->keys, self->mono, text,
                                           sizeof text));
                } else if (self->draining) {
                    worker_outbox_returned(self->outbox, s_id(j), j->attempt);
                    s_job_free(self, idx);
                } else {
                    /* The same attempt again, first in line, on another
                     * key (or failed as auth if none is left). */
                    s_wait_push(self, idx, true);
                }
            } else if (status == 408) {
                keypool_error(h->keys, k);
                s_fail_t f = { DV_CAT_TIMEOUT, true, 0, 408, kid };
                s_fail(self, idx, &f, "HTTP 408 from %s", ep);
            } else {
                keypool_error(h->keys, k);
                s_fail_t f = { status >= 400 ? DV_CAT_INVALID_INPUT
                                             : DV_CAT_UPSTREAM,
                               false, 0, (int)status, kid };
                s_fail(self, idx, &f, "HTTP %ld from %s: %s", status, ep,
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
            s_fail_t f = { DV_CAT_UPSTREAM, true, 0, 0, kid };
            s_fail(self, idx, &f, "could not connect to %s within %.1f s",
                   ep, (double)h->cfg->connect_timeout_ms / 1000.0);
        } else {
            breaker_neutral(h->breaker, v);
            s_fail_t f = { DV_CAT_TIMEOUT, true, 0, 0, kid };
            s_fail(self, idx, &f, "no complete answer from %s within %.1f s",
                   ep, (double)j->timeout_ms / 1000.0);
        }
    } else if (q->too_big) {
        keypool_error(h->keys, k);
        breaker_neutral(h->breaker, v);
        s_fail_t f = { DV_CAT_UPSTREAM, false, 0, (int)status, kid };
        s_fail(self, idx, &f, "response from %s larger than %u MiB", ep,
               S_RESPONSE_MAX >> 20);
    } else {
        keypool_error(h->keys, k);
        bool conn = s_connect_error(rc);
        if (conn)
            s_breaker_failure(self, h, v, curl_easy_strerror(rc));
        else
            breaker_neutral(h->breaker, v);
        s_fail_t f = { DV_CAT_UPSTREAM, true, 0, 0, kid };
        s_fail(self, idx, &f, "%s: %s", ep,
               q->errbuf[0] ? q->errbuf : curl_easy_strerror(rc));
    }
    s_req_release(self, r);
}

/* Settles every request curl has finished. */
static void
s_harvest(handler_http_t *self)
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

/* Aborts job idx's request (cancel, shutdown): no outcome from curl. */
static void
s_abort(handler_http_t *self, int idx)
{
    s_job_t *j = &self->jobs[idx];
    s_req_t *q = &self->reqs[j->req];
    s_handler_t *h = &self->handlers[j->handler];
    curl_multi_remove_handle(self->multi, q->easy);
    keypool_finish(h->keys, q->key, q->slot, dv_mono_ms());
    breaker_neutral(h->breaker, q->verdict);
    int r = j->req;
    j->req = -1;
    s_req_release(self, r);
}

/* ---- setup --------------------------------------------------------------- */

static int
s_handler_init(handler_http_t *self, s_handler_t *h,
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
        h->headers[i] = http_template_new_text(c->headers[i],
                                               HTTP_TEXT_HEADER, why,
                                               sizeof why);
        if (!h->headers[i])
            return dv_err_set(err, es, "http.%s.headers: %s", c->type, why);
        h->nheaders++;
    }
    h->send_body = strcmp(c->method, "GET") != 0 &&
                   strcmp(c->method, "HEAD") != 0 &&
                   (c->body || c->body_text ||
                    strcmp(c->method, "DELETE") != 0);
    if (c->body)
        h->body = http_template_new_json(c->body, why, sizeof why);
    else if (c->body_text)
        h->body = http_template_new_text(c->body_text, HTTP_TEXT_PLAIN, why,
                                         sizeof why);
    if ((c->body || c->body_text) && !h->body)
        return dv_err_set(err, es, "http.%s.body: %s", c->type, why);
    h->keys = keypool_new((const char *const *)c->keys, c->nkeys, c->rpm);
    if (!h->keys)
        return dv_err_set(err, es, "http.%s: cannot make the key pool", c->type);
    for (int i = 0; i < self->nbreakers; i++)
        if (strcmp(breaker_endpoint(self->breakers[i]), c->endpoint) == 0)
            h->breaker = self->breakers[i];
    if (!h->breaker) {
        breaker_t **b = realloc(self->breakers, (size_t)(self->nbreakers + 1) *
                                                    sizeof *b);
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
s_handler_clear(s_handler_t *h)
{
    http_template_destroy(&h->url);
    for (int i = 0; i < h->nheaders; i++)
        http_template_destroy(&h->headers[i]);
    free(h->headers);
    http_template_destroy(&h->body);
    keypool_destroy(&h->keys);
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
    self->free_head = -1;
    self->wait_head = self->wait_tail = -1;
    self->req_free = -1;
    self->timer_at = INT64_MAX;
    self->wake_at = INT64_MAX;
    const http_config_t *hc = cfg->http;
    if (!hc || hc->n == 0)
        return self;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        dv_err_set(err, es, "cannot start libcurl");
        goto fail;
    }
    self->curl_inited = true;
    self->concurrency = cfg->http_concurrency > 0 ? cfg->http_concurrency
                                                  : HTTP_CONCURRENCY_DEFAULT;
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
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETFUNCTION, s_on_socket);
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERFUNCTION, s_on_timer);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERDATA, self);
    /* One open connection per request slot is enough to reuse them all. */
    curl_multi_setopt(self->multi, CURLMOPT_MAXCONNECTS,
                      (long)self->concurrency);
    /* Room for the most jobs the broker can send at once: no growth on the
     * hot path. */
    while (self->njobs < cfg->concurrency + cfg->prefetch + self->concurrency)
        s_grow_jobs(self);
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
        s_req_t *q = &self->reqs[i];
        if (q->easy) {
            if (q->job >= 0 && self->multi)
                curl_multi_remove_handle(self->multi, q->easy);
            curl_easy_cleanup(q->easy);
        }
        s_slist_free_secret(q->hdrs);
        free(q->resp);
    }
    if (self->multi)
        curl_multi_cleanup(self->multi);
    for (int i = 0; i < self->njobs; i++)
        if (self->jobs[i].state != J_FREE) {
            free(self->jobs[i].payload);
            free(self->jobs[i].url);
            free(self->jobs[i].body);
            curl_slist_free_all(self->jobs[i].headers);
        }
    for (int i = 0; self->handlers && i < self->nhandlers; i++)
        s_handler_clear(&self->handlers[i]);
    for (int i = 0; i < self->nbreakers; i++)
        breaker_destroy(&self->breakers[i]);
    free(self->breakers);
    free(self->handlers);
    free(self->reqs);
    free(self->jobs);
    free(self->buckets);
    free(self->socks);
    free(self->fdmap);
    free(self->poll_map);
    if (self->curl_inited)
        curl_global_cleanup();
    free(self);
    *self_p = NULL;
}

/* ---- public -------------------------------------------------------------- */

bool
handler_http_owns(const handler_http_t *self, dv_str_t type)
{
    for (int i = 0; i < self->nhandlers; i++) {
        const char *t = self->handlers[i].cfg->type;
        if (strlen(t) == type.len && memcmp(t, type.ptr, type.len) == 0)
            return true;
    }
    return false;
}

int
handler_http_capacity(const handler_http_t *self)
{
    return self->nhandlers > 0 ? self->concurrency : 0;
}

void
handler_http_set_time(handler_http_t *self, int64_t mono_ms, int64_t wall_ms)
{
    self->mono = mono_ms;
    self->wall = wall_ms;
}

int
handler_http_add(handler_http_t *self, const dv_job_t *job)
{
    if (!job->id.ptr || job->id.len == 0 || job->id.len > WORKER_ID_MAX) {
        dv_log(DV_WARN, "worker.bad_job", DV_STR("reason", "id length"),
               DV_INT("bytes", job->id.len));
        return -1;
    }
    int dup = s_find(self, job->id.ptr, job->id.len);
    if (dup >= 0) {
        s_job_t *j = &self->jobs[dup];
        if (job->attempt > j->attempt)
            j->attempt = job->attempt;
        return 1;
    }
    if (self->draining) {
        worker_outbox_returned(self->outbox, job->id, job->attempt);
        return 0;
    }
    int hi = -1;
    for (int i = 0; i < self->nhandlers && hi < 0; i++) {
        const char *t = self->handlers[i].cfg->type;
        if (strlen(t) == job->type.len &&
            memcmp(t, job->type.ptr, job->type.len) == 0)
            hi = i;
    }
    if (hi < 0)
        return -1;
    int idx = s_job_alloc(self, job->id);
    s_job_t *j = &self->jobs[idx];
    j->attempt = job->attempt;
    j->handler = hi;
    const http_handler_cfg_t *c = self->handlers[hi].cfg;
    j->timeout_ms = job->timeout_ms > 0   ? job->timeout_ms
                    : c->timeout_ms > 0   ? c->timeout_ms
                    : self->cfg->timeout_ms > 0 ? self->cfg->timeout_ms
                                                : HTTP_TIMEOUT_DEFAULT_MS;
    if (job->payload.ptr && job->payload.len > 0) {
        j->payload = malloc(job->payload.len);
        if (!j->payload)
            s_oom();
        memcpy(j->payload, job->payload.ptr, job->payload.len);
        j->payload_len = job->payload.len;
    }
    s_wait_push(self, idx, false);
    return 0;
}

int
handler_http_cancel(handler_http_t *self, dv_str_t id, dv_str_t reason)
{
    int idx = id.ptr ? s_find(self, id.ptr, id.len) : -1;
    if (idx < 0)
        return -1;
    s_job_t *j = &self->jobs[idx];
    char why[128];
    dv_str_copy(reason, why, sizeof why);
    dv_log(DV_INFO, "worker.job_cancelled", DV_STR("job", j->id),
           DV_STR("reason", why),
           DV_STR("state", j->state == J_FLIGHT ? "running" : "queued"));
    s_fail_t f = { DV_CAT_CANCELLED, false, 0, 0, NULL };
    if (j->state == J_FLIGHT) {
        s_abort(self, idx);
        s_fail(self, idx, &f, "cancelled while running");
    } else {
        s_wait_remove(self, idx);
        s_fail(self, idx, &f, "cancelled before it started");
    }
    return 0;
}

int
handler_http_poll_count(const handler_http_t *self)
{
    return self->nsocks;
}

int
handler_http_poll_items(handler_http_t *self, zmq_pollitem_t *items, int max)
{
    if (self->poll_cap < self->nsocks) {
        int cap = self->nsocks * 2;
        int *m = realloc(self->poll_map, (size_t)cap * sizeof *m);
        if (!m)
            s_oom();
        self->poll_map = m;
        self->poll_cap = cap;
    }
    int n = 0;
    for (int i = 0; i < self->nsocks && n < max; i++) {
        const s_sock_t *s = &self->socks[i];
        short ev = 0;
        if (s->what == CURL_POLL_IN || s->what == CURL_POLL_INOUT)
            ev |= ZMQ_POLLIN;
        if (s->what == CURL_POLL_OUT || s->what == CURL_POLL_INOUT)
            ev |= ZMQ_POLLOUT;
        items[n] = (zmq_pollitem_t){ NULL, s->fd, ev, 0 };
        self->poll_map[n] = s->fd;
        n++;
    }
    return n;
}

void
handler_http_io(handler_http_t *self, const zmq_pollitem_t *items, int n)
{
    if (!self->multi)
        return;
    int running;
    for (int k = 0; k < n; k++) {
        short re = items[k].revents;
        if (!re)
            continue;
        int ev = 0;
        if (re & ZMQ_POLLIN)
            ev |= CURL_CSELECT_IN;
        if (re & ZMQ_POLLOUT)
            ev |= CURL_CSELECT_OUT;
        if (re & ZMQ_POLLERR)
            ev |= CURL_CSELECT_ERR | CURL_CSELECT_IN;
        curl_multi_socket_action(self->multi, self->poll_map[k], ev,
                                 &running);
    }
    if (self->timer_at <= dv_mono_ms()) {
        self->timer_at = INT64_MAX; /* curl may set a new one in there */
        curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0,
                                 &running);
    }
    s_harvest(self);
}

void
handler_http_dispatch(handler_http_t *self)
{
    if (!self->multi || self->draining || self->nwaiting == 0)
        return;
    if (!self->kick && self->mono < self->wake_at)
        return;
    self->kick = false;
    self->wake_at = INT64_MAX;
    self->pass++;
    int blocked = 0, sent = 0;
    int idx = self->wait_head;
    while (idx >= 0 && self->in_flight < self->concurrency &&
           blocked < self->nhandlers) {
        int next = self->jobs[idx].next;
        s_handler_t *h = &self->handlers[self->jobs[idx].handler];
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
        curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0,
                                 &running);
        s_harvest(self);
    }
}

int64_t
handler_http_next_deadline(const handler_http_t *self)
{
    int64_t t = self->timer_at;
    if (self->nwaiting > 0 && !self->draining) {
        if (self->kick && self->in_flight < self->concurrency)
            return self->mono;
        if (self->wake_at < t)
            t = self->wake_at;
    }
    return t;
}

void
handler_http_drain(handler_http_t *self)
{
    if (self->draining)
        return;
    self->draining = true;
    int idx;
    while ((idx = self->wait_head) >= 0) {
        s_job_t *j = &self->jobs[idx];
        s_wait_remove(self, idx);
        worker_outbox_returned(self->outbox, s_id(j), j->attempt);
        s_job_free(self, idx);
    }
}

void
handler_http_stop_running(handler_http_t *self)
{
    s_fail_t f = { DV_CAT_TIMEOUT, true, 0, 0, NULL };
    for (int i = 0; i < self->njobs; i++) {
        if (self->jobs[i].state != J_FLIGHT)
            continue;
        s_abort(self, i);
        s_fail(self, i, &f,
               "still running when the worker's shutdown grace period "
               "ended");
    }
}

size_t
handler_http_held_count(const handler_http_t *self)
{
    return self->held;
}

size_t
handler_http_held(const handler_http_t *self, dv_held_t *held, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < self->njobs && n < max; i++) {
        const s_job_t *j = &self->jobs[i];
        if (j->state == J_FREE)
            continue;
        held[n].id = s_id(j);
        held[n].attempt = j->attempt;
        n++;
    }
    return n;
}

int
handler_http_in_flight(const handler_http_t *self)
{
    return self->in_flight;
}

size_t
handler_http_waiting(const handler_http_t *self)
{
    return self->nwaiting;
}

int
handler_http_metrics_count(const handler_http_t *self)
{
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
    return s == KEYPOOL_DISABLED ? "disabled"
           : s == KEYPOOL_COOLING ? "cooling"
                                  : "ok";
}

void
handler_http_pack_metrics(const handler_http_t *self, msgpack_packer *pk)
{
    if (self->nhandlers == 0)
        return;
    int64_t now = self->mono;
    s_pack_str(pk, "http");
    msgpack_pack_map(pk, 4);
    s_pack_str(pk, "in_flight");
    msgpack_pack_int(pk, self->in_flight);
    s_pack_str(pk, "waiting");
    msgpack_pack_uint64(pk, self->nwaiting);
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
        const s_handler_t *h = &self->handlers[i];
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
handler_http_dump(const handler_http_t *self)
{
    if (self->nhandlers == 0)
        return;
    int64_t now = self->mono;
    dv_log(DV_INFO, "worker.state_http", DV_INT("in_flight", self->in_flight),
           DV_INT("waiting", self->nwaiting), DV_INT("held", self->held),
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
        const s_handler_t *h = &self->handlers[i];
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
