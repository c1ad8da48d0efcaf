/* http_internal - the http lane's state, shared by its files:
 *   handler_http.c   the lane: setup, jobs in, cancel, drain, HELLO
 *   http_request.c   waiting jobs to requests: breaker, key, render, send
 *   http_response.c  finished requests to outcomes, breaker and key upkeep
 *   http_curl.c      curl's sockets and timer in the supervisor's poll
 *   http_metrics.c   heartbeat metrics and the SIGUSR1 dump
 * Nothing outside worker/http/ includes this.
 */
#ifndef HTTP_INTERNAL_H
#define HTTP_INTERNAL_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "breaker.h"
#include "handler_http.h"
#include "http_config.h"
#include "http_template.h"
#include "keypool.h"
#include "worker_jobs.h"

/* Largest response body read; a bigger one fails the attempt. */
#define HTTP_RESPONSE_MAX (8u << 20)
/* Delay before trying again what failed for want of memory. */
#define HTTP_RETRY_MS 100

/* Job states, after worker_jobs' own. */
enum {
    J_WAITING = WORKER_JOB_LANE, /* in the FIFO */
    J_FLIGHT,                    /* its request is in flight */
};

typedef struct {
    worker_job_t base; /* id, attempt, state, FIFO links */
    int handler;       /* index into self->handlers */
    char *payload;     /* msgpack, until the request is rendered (while
                          the job is here if its keys vary the request) */
    uint32_t payload_len;
    char *url; /* rendered request, kept for a resend */
    char *body;
    size_t body_len;
    struct curl_slist *headers; /* rendered headers, without the key */
    bool rendered;
    int rendered_key;      /* the key it was rendered for; -1: any key */
    bool started;          /* "started" reported */
    int64_t timeout_ms;    /* attempt limit */
    int64_t deadline;      /* mono ms, from the first send */
    int64_t waiting_since; /* mono ms */
    int sends;             /* requests made for this attempt */
    int req;               /* request slot while in flight, else -1 */
} http_job_t;

typedef struct {
    CURL *easy;    /* reused: keeps its connection and DNS cache */
    int job;       /* -1 when free */
    int key, slot; /* the key used and its rate-limit slot */
    breaker_verdict_t verdict;
    struct curl_slist *hdrs; /* this request's headers, with the key */
    char *resp;              /* response body */
    size_t resp_len, resp_cap;
    bool too_big; /* body passed HTTP_RESPONSE_MAX */
    char errbuf[CURL_ERROR_SIZE];
    int next_free;
} http_req_t;

typedef struct {
    const http_handler_cfg_t *cfg;
    http_template_t *url;
    http_template_t **headers;
    int nheaders;
    http_template_t *body;      /* NULL: the payload as JSON (or none) */
    http_template_t **key_urls; /* per key: its entry's url, or NULL (the
                                   handler's); NULL without entries */
    bool send_body;             /* the method carries a body */
    keypool_t *keys;       /* shared with handlers of the same key source */
    bool owns_keys;        /* the first handler of that source: frees it */
    breaker_t *breaker;    /* shared with handlers of the same endpoint */
    uint64_t blocked_pass; /* the dispatch pass that found it blocked */
} http_handler_t;

typedef struct {
    int fd;
    int what; /* CURL_POLL_IN/OUT/INOUT */
} http_sock_t;

struct handler_http_t {
    const worker_config_t *cfg;
    const char *name;
    worker_outbox_t *outbox;
    http_handler_t *handlers;
    int nhandlers;
    breaker_t **breakers;
    int nbreakers;
    CURLM *multi;
    int concurrency;
    worker_jobs_t *jobs;
    http_req_t *reqs; /* concurrency slots */
    int req_free;
    int in_flight;
    http_sock_t *socks;
    int nsocks, socks_cap;
    int *fdmap; /* fd -> index in socks, -1 */
    int fdmap_len;
    int *poll_map; /* poll item -> fd */
    int poll_cap;
    int64_t timer_at; /* curl's timeout, mono ms; INT64_MAX = none */
    int64_t wake_at;  /* a blocked waiting job may go then */
    bool kick;        /* something changed: look at waiting jobs */
    uint64_t pass;
    bool draining;
    bool curl_inited;
    int64_t mono, wall;
    dv_hb_breaker_t *hb_breakers; /* the heartbeat's arrays, reused */
    dv_hb_key_t *hb_keys;
};

static inline http_job_t *
http_job(const handler_http_t *self, int idx)
{
    return (http_job_t *)worker_jobs_at(self->jobs, idx);
}

static inline const char *
http_type(const handler_http_t *self, const http_job_t *j)
{
    return self->handlers[j->handler].cfg->type;
}

/* What a failure report says besides its message. */
typedef struct {
    dv_category_t category;
    bool retryable;
    int64_t retry_after_ms;
    int http_status;
    const char *key_id;
} http_fail_t;

/* ---- handler_http.c ---- */

/* Reports job idx failed (kept with the job if the outbox has no room);
 * the job leaves the lane. */
void http_fail(handler_http_t *self, int idx, const http_fail_t *f,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Puts job idx (back) in line. */
void http_wait_push(handler_http_t *self, int idx, bool front);
/* Frees a header list whose strings may hold a key: zeroed first. */
void http_slist_free_secret(struct curl_slist *l);

/* ---- http_request.c ---- */

void http_req_release(handler_http_t *self, int r);
void http_dispatch(void *lane);

/* ---- http_response.c ---- */

/* Settles every request curl has finished. */
void http_harvest(handler_http_t *self);
/* Aborts job idx's request (cancel, shutdown): no outcome from curl. */
void http_abort(handler_http_t *self, int idx);

/* ---- http_curl.c ---- */

int http_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                   void *socketp);
int http_on_timer(CURLM *multi, long timeout_ms, void *userp);
size_t http_on_body(char *data, size_t size, size_t n, void *userp);
int http_poll_count(const void *lane);
int http_poll_items(void *lane, zmq_pollitem_t *items, int max);
void http_io(void *lane, const zmq_pollitem_t *items, int n);

/* ---- http_metrics.c ---- */

/* The lane's fill_metrics (worker_lane.h). */
int http_fill_metrics(void *lane, dv_hbmetrics_t *m);
void http_dump(const void *lane);

#endif
