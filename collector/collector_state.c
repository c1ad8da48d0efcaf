/* collector_state - live state from snapshots and events. */
#include "collector_state.h"

#include <czmq.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dv_hist.h"
#include "dv_id.h"
#include "dv_json.h"
#include "dv_log.h"

/* A worker that left is still listed (as left or expired) this long. */
#define S_GONE_KEEP_MS (10 * 60 * 1000)
/* Percentile windows. */
#define S_LAT_WINDOW_MS (5 * 60 * 1000)
/* Rate ring: one slot per second, 15 minutes. */
#define S_RING 900
/* Running jobs listed per worker. */
#define S_JOBS_PER_WORKER 20

/* ---- small containers ---------------------------------------------------- */

enum { R_SUBMITTED, R_SUCCEEDED, R_FAILED, R_DEAD, R_KINDS };
static const char *s_rate_names[R_KINDS] = { "submitted", "succeeded",
                                             "failed", "dead" };

/* Per-second counts of the last S_RING seconds. */
typedef struct {
    int64_t sec[S_RING];
    uint32_t n[S_RING][R_KINDS];
} s_ring_t;

/* Latency over the current and the previous window. */
typedef struct {
    dv_hist_t h[2];
    int64_t epoch[2];
} s_lat_t;

/* Prometheus buckets, upper bounds in ms; one more for +Inf. */
static const int64_t s_bucket_ms[] = { 5,    10,   25,    50,    100,
                                       250,  500,  1000,  2500,  5000,
                                       10000, 30000, 60000 };
#define S_NBUCKETS (sizeof s_bucket_ms / sizeof s_bucket_ms[0])
static const char *s_bucket_le[S_NBUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
    "1",     "2.5",  "5",     "10",   "30",  "60"
};

typedef struct {
    uint64_t counts[S_NBUCKETS + 1]; /* not cumulative; last is +Inf */
    uint64_t count;
    double sum_s;
} s_prom_hist_t;

enum { O_SUBMITTED, O_SUCCEEDED, O_FAILED, O_DEAD, O_CANCELLED, O_RETRIED,
       O_KINDS };
static const char *s_outcome_names[O_KINDS] = {
    "submitted", "succeeded", "failed", "dead", "cancelled", "retried"
};

/* One broker's view of a queue. */
typedef struct {
    bool present;      /* the broker has this queue */
    int64_t queued, scheduled, running;
    /* Of running (leased, as the broker counts), how many had not started
     * at the last snapshot: a worker holds jobs ahead of its free children
     * (prefetch), and their job.started must not be counted as leaving
     * the queue again. */
    int64_t prefetched;
    bool paused;
    double rate;       /* jobs/s limit; 0 none */
    int64_t max_running;
} s_depth_t;

typedef struct {
    char *name;
    s_depth_t per[COLLECTOR_BROKERS_MAX];
    s_ring_t *ring;
    s_lat_t *wait, *run;
    uint64_t totals[O_KINDS];
} s_queue_t;

typedef struct {
    char *name;
    s_lat_t *wait, *run;
    uint64_t totals[O_KINDS];
} s_type_t;

/* One (queue, type) pair: what /metrics labels by. */
typedef struct {
    char *queue, *type;
    uint64_t totals[O_KINDS];
    s_prom_hist_t wait, run;
} s_series_t;

typedef enum { W_ONLINE, W_DRAINING, W_LEFT, W_EXPIRED } s_wstate_t;
static const char *s_wstate_names[] = { "online", "draining", "left",
                                        "expired" };

typedef struct {
    int broker;
    char *name;
    char *host;
    int64_t pid, concurrency, credit, running, processed, failed;
    int64_t busy, idle;  /* children; -1 until a heartbeat says */
    json_t *queues;      /* array of names */
    json_t *metrics;     /* the worker's own map, or NULL */
    s_wstate_t state;
    int64_t joined_ms, last_seen_ms, gone_ms;
    bool unseen;         /* not in the snapshot being applied */
} s_worker_t;

typedef struct {
    int broker;
    char id[DV_ID_TEXT_LEN + 1];
    char *queue, *type, *batch, *worker, *message;
    int attempt;
    int64_t started_ms, current, total;
} s_run_t;

typedef enum { B_UNKNOWN, B_UP, B_DOWN } s_reach_t;

typedef struct {
    char *events_ep, *clients_ep;
    char instance[DV_NAME_MAX + 1];
    uint64_t last_seq;
    bool heard;            /* an event of this run came */
    char known_instance[DV_NAME_MAX + 1]; /* from the previous run */
    uint64_t known_seq;
    uint64_t events, gaps;
    int64_t last_event_ms;
    bool synced, want_snapshot;
    s_reach_t reach;
    int64_t last_answer_ms;
    char why[256];         /* why it is down */
    json_t *snapshot;      /* {store, uptime_ms, counters, broker} */
    int64_t snapshot_ms;
} s_broker_t;

struct collector_state_t {
    int64_t started_ms;
    s_broker_t brokers[COLLECTOR_BROKERS_MAX];
    int nbrokers;
    zhashx_t *queues;   /* name -> s_queue_t */
    zhashx_t *types;    /* name -> s_type_t */
    zhashx_t *series;   /* "queue\x1ftype" -> s_series_t */
    zhashx_t *workers;  /* "b\x1fname" -> s_worker_t */
    zhashx_t *running;  /* job id -> s_run_t */
    s_ring_t *ring;     /* all queues */
};

/* ---- rings and histograms ------------------------------------------------ */

static void
s_ring_add(s_ring_t *r, int64_t now_ms, int kind)
{
    int64_t sec = now_ms / 1000;
    size_t i = (size_t)(sec % S_RING);
    if (r->sec[i] != sec) {
        r->sec[i] = sec;
        memset(r->n[i], 0, sizeof r->n[i]);
    }
    r->n[i][kind]++;
}

static double
s_ring_rate(const collector_state_t *self, const s_ring_t *r, int64_t now_ms,
            int kind, int window_s)
{
    int64_t sec = now_ms / 1000;
    uint64_t sum = 0;
    for (int k = 0; k < window_s && sec - k >= 0; k++) {
        int64_t s = sec - k;
        size_t i = (size_t)(s % S_RING);
        if (r->sec[i] == s)
            sum += r->n[i][kind];
    }
    /* Until the collector has run a whole window, divide by what it has. */
    int64_t up = (now_ms - self->started_ms) / 1000 + 1;
    if (up < window_s)
        window_s = up < 1 ? 1 : (int)up;
    return (double)sum / window_s;
}

static json_t *
s_ring_json(const collector_state_t *self, const s_ring_t *r, int64_t now_ms)
{
    json_t *o = json_object();
    for (int k = 0; k < R_KINDS; k++) {
        json_t *a = json_array();
        static const int windows[] = { 60, 300, 900 };
        for (int w = 0; w < 3; w++) {
            double v = s_ring_rate(self, r, now_ms, k, windows[w]);
            json_array_append_new(a, json_real(round(v * 1000) / 1000));
        }
        json_object_set_new(o, s_rate_names[k], a);
    }
    return o;
}

static void
s_lat_record(s_lat_t *l, int64_t now_ms, int64_t value_ms)
{
    int64_t e = now_ms / S_LAT_WINDOW_MS;
    int i = (int)(e & 1);
    if (l->epoch[i] != e) {
        dv_hist_reset(&l->h[i]);
        l->epoch[i] = e;
    }
    dv_hist_record(&l->h[i], (uint64_t)(value_ms < 0 ? 0 : value_ms));
}

static json_t *
s_lat_json(const s_lat_t *l, int64_t now_ms)
{
    int64_t e = now_ms / S_LAT_WINDOW_MS;
    dv_hist_t *m = calloc(1, sizeof *m);
    if (!m)
        return json_null();
    for (int i = 0; i < 2; i++) {
        if (l->epoch[i] != e && l->epoch[i] != e - 1)
            continue;
        for (int k = 0; k < DV_HIST_BUCKETS; k++)
            m->counts[k] += l->h[i].counts[k];
        m->total += l->h[i].total;
        if (l->h[i].max > m->max)
            m->max = l->h[i].max;
    }
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I}", "count",
                          (json_int_t)m->total, "p50",
                          (json_int_t)dv_hist_quantile(m, 0.50), "p95",
                          (json_int_t)dv_hist_quantile(m, 0.95), "p99",
                          (json_int_t)dv_hist_quantile(m, 0.99), "max",
                          (json_int_t)m->max);
    free(m);
    return o;
}

static void
s_prom_record(s_prom_hist_t *h, int64_t ms)
{
    size_t i = 0;
    while (i < S_NBUCKETS && ms > s_bucket_ms[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum_s += (double)ms / 1000.0;
}

/* ---- containers ---------------------------------------------------------- */

static void
s_queue_free(void **item)
{
    s_queue_t *q = *item;
    if (!q)
        return;
    free(q->name);
    free(q->ring);
    free(q->wait);
    free(q->run);
    free(q);
    *item = NULL;
}

static void
s_type_free(void **item)
{
    s_type_t *t = *item;
    if (!t)
        return;
    free(t->name);
    free(t->wait);
    free(t->run);
    free(t);
    *item = NULL;
}

static void
s_series_free(void **item)
{
    s_series_t *s = *item;
    if (!s)
        return;
    free(s->queue);
    free(s->type);
    free(s);
    *item = NULL;
}

static void
s_worker_free(void **item)
{
    s_worker_t *w = *item;
    if (!w)
        return;
    free(w->name);
    free(w->host);
    json_decref(w->queues);
    json_decref(w->metrics);
    free(w);
    *item = NULL;
}

static void
s_run_free(void **item)
{
    s_run_t *r = *item;
    if (!r)
        return;
    free(r->queue);
    free(r->type);
    free(r->batch);
    free(r->worker);
    free(r->message);
    free(r);
    *item = NULL;
}

collector_state_t *
collector_state_new(int64_t now_ms)
{
    collector_state_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->started_ms = now_ms;
    self->queues = zhashx_new();
    self->types = zhashx_new();
    self->series = zhashx_new();
    self->workers = zhashx_new();
    self->running = zhashx_new();
    self->ring = calloc(1, sizeof *self->ring);
    if (!self->queues || !self->types || !self->series || !self->workers ||
        !self->running || !self->ring) {
        collector_state_destroy(&self);
        return NULL;
    }
    zhashx_set_destructor(self->queues, s_queue_free);
    zhashx_set_destructor(self->types, s_type_free);
    zhashx_set_destructor(self->series, s_series_free);
    zhashx_set_destructor(self->workers, s_worker_free);
    zhashx_set_destructor(self->running, s_run_free);
    return self;
}

void
collector_state_destroy(collector_state_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    collector_state_t *self = *self_p;
    zhashx_destroy(&self->queues);
    zhashx_destroy(&self->types);
    zhashx_destroy(&self->series);
    zhashx_destroy(&self->workers);
    zhashx_destroy(&self->running);
    for (int b = 0; b < self->nbrokers; b++) {
        free(self->brokers[b].events_ep);
        free(self->brokers[b].clients_ep);
        json_decref(self->brokers[b].snapshot);
    }
    free(self->ring);
    free(self);
    *self_p = NULL;
}

/* NUL-terminated copy of a wire string into a fixed buffer. */
#define S_COPY(buf, v) dv_str_copy((v), (buf), sizeof(buf))

static s_queue_t *
s_queue(collector_state_t *self, const char *name)
{
    s_queue_t *q = zhashx_lookup(self->queues, name);
    if (q)
        return q;
    q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->name = strdup(name);
    q->ring = calloc(1, sizeof *q->ring);
    q->wait = calloc(1, sizeof *q->wait);
    q->run = calloc(1, sizeof *q->run);
    if (!q->name || !q->ring || !q->wait || !q->run) {
        void *p = q;
        s_queue_free(&p);
        return NULL;
    }
    zhashx_insert(self->queues, name, q);
    return q;
}

static s_type_t *
s_type(collector_state_t *self, const char *name)
{
    s_type_t *t = zhashx_lookup(self->types, name);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->name = strdup(name);
    t->wait = calloc(1, sizeof *t->wait);
    t->run = calloc(1, sizeof *t->run);
    if (!t->name || !t->wait || !t->run) {
        void *p = t;
        s_type_free(&p);
        return NULL;
    }
    zhashx_insert(self->types, name, t);
    return t;
}

static s_series_t *
s_series(collector_state_t *self, const char *queue, const char *type)
{
    char key[2 * DV_NAME_MAX + 2];
    snprintf(key, sizeof key, "%s\x1f%s", queue, type);
    s_series_t *s = zhashx_lookup(self->series, key);
    if (s)
        return s;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->queue = strdup(queue);
    s->type = strdup(type);
    if (!s->queue || !s->type) {
        void *p = s;
        s_series_free(&p);
        return NULL;
    }
    zhashx_insert(self->series, key, s);
    return s;
}

static void
s_worker_key(int b, const char *name, char *key, size_t size)
{
    snprintf(key, size, "%d\x1f%s", b, name);
}

static s_worker_t *
s_worker(collector_state_t *self, int b, const char *name, bool create)
{
    char key[DV_NAME_MAX + 16];
    s_worker_key(b, name, key, sizeof key);
    s_worker_t *w = zhashx_lookup(self->workers, key);
    if (w || !create)
        return w;
    w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->broker = b;
    w->name = strdup(name);
    w->busy = w->idle = -1;
    if (!w->name) {
        free(w);
        return NULL;
    }
    zhashx_insert(self->workers, key, w);
    return w;
}

/* ---- brokers ------------------------------------------------------------- */

int
collector_state_add_broker(collector_state_t *self, const char *events_ep,
                           const char *clients_ep)
{
    if (self->nbrokers >= COLLECTOR_BROKERS_MAX)
        return -1;
    s_broker_t *br = &self->brokers[self->nbrokers];
    memset(br, 0, sizeof *br);
    br->events_ep = strdup(events_ep);
    br->clients_ep = clients_ep ? strdup(clients_ep) : NULL;
    if (!br->events_ep)
        return -1;
    br->want_snapshot = clients_ep != NULL;
    return self->nbrokers++;
}

int
collector_state_broker_count(const collector_state_t *self)
{
    return self->nbrokers;
}

const char *
collector_state_broker_endpoint(const collector_state_t *self, int b)
{
    return self->brokers[b].events_ep;
}

void
collector_state_broker_known(collector_state_t *self, int b,
                             const char *instance, uint64_t seq)
{
    s_broker_t *br = &self->brokers[b];
    snprintf(br->known_instance, sizeof br->known_instance, "%s", instance);
    br->known_seq = seq;
}

const char *
collector_state_broker_instance(const collector_state_t *self, int b)
{
    return self->brokers[b].instance;
}

uint64_t
collector_state_broker_seq(const collector_state_t *self, int b)
{
    return self->brokers[b].last_seq;
}

collector_seq_t
collector_state_seq(collector_state_t *self, int b, const dv_event_t *ev,
                    uint64_t *from, uint64_t *to)
{
    s_broker_t *br = &self->brokers[b];
    char inst[DV_NAME_MAX + 1];
    S_COPY(inst, ev->broker);
    collector_seq_t r = COLLECTOR_SEQ_OK;
    *from = *to = 0;
    if (!br->heard) {
        br->heard = true;
        r = COLLECTOR_SEQ_FIRST;
        /* What happened while this collector was not running. */
        if (br->known_instance[0] && !strcmp(br->known_instance, inst) &&
            ev->seq > br->known_seq + 1) {
            r = COLLECTOR_SEQ_GAP;
            *from = br->known_seq + 1;
            *to = ev->seq - 1;
        } else if (br->known_instance[0] && strcmp(br->known_instance, inst)) {
            r = COLLECTOR_SEQ_RESTART;
        }
    } else if (strcmp(br->instance, inst) != 0) {
        r = COLLECTOR_SEQ_RESTART;
        if (ev->seq > 1) {
            *from = 1;
            *to = ev->seq - 1;
        }
    } else if (ev->seq <= br->last_seq) {
        return COLLECTOR_SEQ_OLD;
    } else if (ev->seq != br->last_seq + 1) {
        r = COLLECTOR_SEQ_GAP;
        *from = br->last_seq + 1;
        *to = ev->seq - 1;
    }
    if (r == COLLECTOR_SEQ_GAP || (*to >= *from && *to > 0))
        br->gaps++;
    if (r == COLLECTOR_SEQ_GAP || r == COLLECTOR_SEQ_RESTART) {
        br->synced = false;
        br->want_snapshot = br->clients_ep != NULL;
    }
    snprintf(br->instance, sizeof br->instance, "%s", inst);
    br->last_seq = ev->seq;
    return r;
}

bool
collector_state_wants_snapshot(const collector_state_t *self, int b)
{
    return self->brokers[b].want_snapshot;
}

void
collector_state_broker_answer(collector_state_t *self, int b, bool ok,
                              int64_t now_ms, const char *why)
{
    s_broker_t *br = &self->brokers[b];
    br->reach = ok ? B_UP : B_DOWN;
    if (ok)
        br->last_answer_ms = now_ms;
    snprintf(br->why, sizeof br->why, "%s", ok || !why ? "" : why);
}

uint64_t
collector_state_events_total(const collector_state_t *self)
{
    uint64_t n = 0;
    for (int b = 0; b < self->nbrokers; b++)
        n += self->brokers[b].events;
    return n;
}

uint64_t
collector_state_gaps_total(const collector_state_t *self)
{
    uint64_t n = 0;
    for (int b = 0; b < self->nbrokers; b++)
        n += self->brokers[b].gaps;
    return n;
}

/* ---- events -------------------------------------------------------------- */

static int64_t
s_dec(int64_t *v)
{
    if (*v > 0)
        (*v)--;
    return *v;
}

/* A waiting job left its queue: from queued if any, else from scheduled
 * (a scheduled job that became due has no event of its own). */
static void
s_depth_unwait(s_depth_t *d)
{
    if (d->queued > 0)
        d->queued--;
    else
        s_dec(&d->scheduled);
}

/* Copies a msgpack body map (the event's "body") into JSON, or NULL. */
static json_t *
s_body(const dv_event_t *ev)
{
    if (!ev->body.ptr || !ev->body.len)
        return NULL;
    json_t *j = dv_msgpack_to_json(ev->body.ptr, ev->body.len, NULL, 0);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static int64_t
s_int(const json_t *o, const char *key, int64_t dflt)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return dflt;
}

static const char *
s_strv(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Fills a worker from a heartbeat / joined body or a snapshot entry. */
static void
s_worker_fill(s_worker_t *w, const json_t *o)
{
    const char *host = s_strv(o, "host");
    if (host && (!w->host || strcmp(w->host, host))) {
        free(w->host);
        w->host = strdup(host);
    }
    w->pid = s_int(o, "pid", w->pid);
    w->concurrency = s_int(o, "concurrency", w->concurrency);
    w->credit = s_int(o, "credit", w->credit);
    w->running = s_int(o, "running", w->running);
    w->processed = s_int(o, "processed", w->processed);
    w->failed = s_int(o, "failed", w->failed);
    w->busy = s_int(o, "busy", w->busy);
    w->idle = s_int(o, "idle", w->idle);
    json_t *qs = json_object_get(o, "queues");
    if (json_is_array(qs)) {
        json_decref(w->queues);
        w->queues = json_incref(qs);
    }
    json_t *m = json_object_get(o, "metrics");
    if (json_is_object(m)) {
        json_decref(w->metrics);
        w->metrics = json_incref(m);
    }
}

static void
s_on_worker_event(collector_state_t *self, int b, const dv_event_t *ev,
                  int64_t now_ms)
{
    char name[DV_NAME_MAX + 1];
    if (!ev->worker.ptr)
        return;
    S_COPY(name, ev->worker);
    const dv_str_t k = ev->kind;
    bool joined = dv_str_eq(k, "worker.joined");
    bool beat = dv_str_eq(k, "worker.heartbeat");
    s_worker_t *w = s_worker(self, b, name, joined || beat);
    if (!w)
        return;
    w->last_seen_ms = now_ms;
    if (joined || beat) {
        json_t *body = s_body(ev);
        if (body)
            s_worker_fill(w, body);
        json_decref(body);
        if (joined) {
            w->joined_ms = ev->ts_ms ? ev->ts_ms : now_ms;
            w->state = W_ONLINE;
        } else if (w->state == W_LEFT || w->state == W_EXPIRED) {
            w->state = W_ONLINE; /* it came back */
        }
        if (!w->joined_ms)
            w->joined_ms = now_ms;
    } else if (dv_str_eq(k, "worker.draining")) {
        w->state = W_DRAINING;
    } else if (dv_str_eq(k, "worker.left") || dv_str_eq(k, "worker.expired")) {
        w->state = dv_str_eq(k, "worker.left") ? W_LEFT : W_EXPIRED;
        w->gone_ms = now_ms;
        w->running = 0;
        w->busy = 0;
    }
}

static char *
s_dup(dv_str_t v)
{
    return v.ptr && v.len ? dv_str_dup(v) : NULL;
}

static void
s_str_set(char **dst, dv_str_t v)
{
    if (!v.ptr || !v.len)
        return;
    free(*dst);
    *dst = dv_str_dup(v);
}

static s_run_t *
s_run_get(collector_state_t *self, int b, const dv_event_t *ev, bool create)
{
    char id[DV_ID_TEXT_LEN + 1];
    S_COPY(id, ev->id);
    s_run_t *r = zhashx_lookup(self->running, id);
    if (r || !create)
        return r;
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->broker = b;
    memcpy(r->id, id, sizeof r->id);
    r->queue = s_dup(ev->queue);
    r->type = s_dup(ev->type);
    r->batch = s_dup(ev->batch);
    zhashx_insert(self->running, id, r);
    return r;
}

static void
s_run_drop(collector_state_t *self, const dv_event_t *ev)
{
    char id[DV_ID_TEXT_LEN + 1];
    S_COPY(id, ev->id);
    zhashx_delete(self->running, id);
}

static void
s_count(s_queue_t *q, s_type_t *t, s_series_t *s, int outcome)
{
    if (q)
        q->totals[outcome]++;
    if (t)
        t->totals[outcome]++;
    if (s)
        s->totals[outcome]++;
}

int64_t
collector_state_apply(collector_state_t *self, int b, const dv_event_t *ev,
                      int64_t now_ms)
{
    s_broker_t *br = &self->brokers[b];
    br->events++;
    br->last_event_ms = now_ms;
    const dv_str_t k = ev->kind;
    if (k.len > 7 && memcmp(k.ptr, "worker.", 7) == 0) {
        s_on_worker_event(self, b, ev, now_ms);
        return 0;
    }
    char qname[DV_NAME_MAX + 1] = "", tname[DV_NAME_MAX + 1] = "";
    if (ev->queue.ptr)
        S_COPY(qname, ev->queue);
    if (ev->type.ptr)
        S_COPY(tname, ev->type);
    s_queue_t *q = qname[0] ? s_queue(self, qname) : NULL;
    s_depth_t *d = q && br->synced ? &q->per[b] : NULL;
    if (k.len > 6 && memcmp(k.ptr, "queue.", 6) == 0) {
        if (q) {
            q->per[b].present = true;
            if (dv_str_eq(k, "queue.paused"))
                q->per[b].paused = true;
            else if (dv_str_eq(k, "queue.resumed"))
                q->per[b].paused = false;
        }
        if (dv_str_eq(k, "queue.limits") && br->clients_ep)
            br->want_snapshot = true; /* the event does not carry them */
        return 0;
    }
    if (k.len < 4 || memcmp(k.ptr, "job.", 4) != 0 || !ev->id.ptr)
        return 0;
    if (d)
        d->present = true;
    s_type_t *t = tname[0] ? s_type(self, tname) : NULL;
    s_series_t *s = qname[0] && tname[0] ? s_series(self, qname, tname) : NULL;
    int64_t run_ms = 0;

    if (dv_str_eq(k, "job.submitted")) {
        s_ring_add(self->ring, now_ms, R_SUBMITTED);
        if (q)
            s_ring_add(q->ring, now_ms, R_SUBMITTED);
        s_count(q, t, s, O_SUBMITTED);
        if (d) {
            if (ev->state == DV_STATE_SCHEDULED)
                d->scheduled++;
            else
                d->queued++;
        }
    } else if (dv_str_eq(k, "job.started")) {
        if (q)
            s_lat_record(q->wait, now_ms, ev->wait_ms);
        if (t)
            s_lat_record(t->wait, now_ms, ev->wait_ms);
        if (s)
            s_prom_record(&s->wait, ev->wait_ms);
        s_run_t *r = s_run_get(self, b, ev, true);
        if (r) {
            r->attempt = ev->attempt;
            r->started_ms = ev->ts_ms ? ev->ts_ms : now_ms;
            r->current = r->total = 0;
            free(r->message);
            r->message = NULL;
            s_str_set(&r->worker, ev->worker);
            s_str_set(&r->batch, ev->batch);
        }
        if (d && d->prefetched > 0) {
            d->prefetched--;
        } else if (d) {
            s_depth_unwait(d);
            d->running++;
        }
    } else if (dv_str_eq(k, "job.progress")) {
        s_run_t *r = s_run_get(self, b, ev, true);
        if (r) {
            r->attempt = ev->attempt;
            r->current = ev->current;
            r->total = ev->total;
            s_str_set(&r->message, ev->message);
            s_str_set(&r->worker, ev->worker);
        }
    } else if (dv_str_eq(k, "job.succeeded") || dv_str_eq(k, "job.failed")) {
        bool ok = dv_str_eq(k, "job.succeeded");
        s_run_t *r = s_run_get(self, b, ev, false);
        run_ms = ev->run_ms;
        if (!run_ms && r && r->started_ms && ev->ts_ms >= r->started_ms)
            run_ms = ev->ts_ms - r->started_ms;
        if (run_ms > 0 || r) {
            if (q)
                s_lat_record(q->run, now_ms, run_ms);
            if (t)
                s_lat_record(t->run, now_ms, run_ms);
            if (s)
                s_prom_record(&s->run, run_ms);
        }
        s_ring_add(self->ring, now_ms, ok ? R_SUCCEEDED : R_FAILED);
        if (q)
            s_ring_add(q->ring, now_ms, ok ? R_SUCCEEDED : R_FAILED);
        s_count(q, t, s, ok ? O_SUCCEEDED : O_FAILED);
        s_run_drop(self, ev);
        if (d) {
            if (ok) {
                s_dec(&d->running);
            } else if (ev->state == DV_STATE_SCHEDULED) {
                s_dec(&d->running);
                d->scheduled++;
            }
            /* failed and dead: job.dead follows and takes it off. */
        }
    } else if (dv_str_eq(k, "job.dead") || dv_str_eq(k, "job.cancelled")) {
        bool dead = dv_str_eq(k, "job.dead");
        if (dead) {
            s_ring_add(self->ring, now_ms, R_DEAD);
            if (q)
                s_ring_add(q->ring, now_ms, R_DEAD);
        }
        s_count(q, t, s, dead ? O_DEAD : O_CANCELLED);
        s_run_drop(self, ev);
        if (d) {
            if (ev->worker.ptr && ev->worker.len)
                s_dec(&d->running);
            else
                s_depth_unwait(d);
        }
    } else if (dv_str_eq(k, "job.retried")) {
        s_count(q, t, s, O_RETRIED);
        if (d)
            d->queued++;
    }
    return run_ms;
}

/* ---- snapshots ----------------------------------------------------------- */

static void s_prune_running(collector_state_t *self, int b);

void
collector_state_snapshot(collector_state_t *self, int b, const json_t *st,
                         int64_t now_ms)
{
    s_broker_t *br = &self->brokers[b];
    br->synced = true;
    br->want_snapshot = false;
    br->snapshot_ms = now_ms;
    json_decref(br->snapshot);
    br->snapshot = json_pack("{s:O?, s:O?, s:O?, s:O?}", "broker",
                             json_object_get(st, "broker"), "store",
                             json_object_get(st, "store"), "uptime_ms",
                             json_object_get(st, "uptime_ms"), "counters",
                             json_object_get(st, "counters"));

    /* Queues: the snapshot is the truth for this broker. */
    for (s_queue_t *q = zhashx_first(self->queues); q;
         q = zhashx_next(self->queues))
        memset(&q->per[b], 0, sizeof q->per[b]);
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(st, "queues"), i, o) {
        const char *name = s_strv(o, "name");
        s_queue_t *q = name ? s_queue(self, name) : NULL;
        if (!q)
            continue;
        s_depth_t *d = &q->per[b];
        d->present = true;
        d->queued = s_int(o, "queued", 0);
        d->scheduled = s_int(o, "scheduled", 0);
        d->running = s_int(o, "running", 0);
        d->paused = json_is_true(json_object_get(o, "paused"));
        d->rate = json_number_value(json_object_get(o, "rate"));
        d->max_running = s_int(o, "max_running", 0);
        d->prefetched = d->running;
    }
    /* Leased but not started: running minus the jobs seen starting. */
    for (s_run_t *r = zhashx_first(self->running); r;
         r = zhashx_next(self->running)) {
        s_queue_t *q = r->broker == b && r->queue
                           ? zhashx_lookup(self->queues, r->queue)
                           : NULL;
        if (q && q->per[b].prefetched > 0)
            q->per[b].prefetched--;
    }

    /* Workers: those it lists are online; ours of b it does not are gone. */
    for (s_worker_t *w = zhashx_first(self->workers); w;
         w = zhashx_next(self->workers))
        w->unseen = w->broker == b &&
                    (w->state == W_ONLINE || w->state == W_DRAINING);
    json_array_foreach(json_object_get(st, "workers"), i, o) {
        const char *name = s_strv(o, "name");
        s_worker_t *w = name ? s_worker(self, b, name, true) : NULL;
        if (!w)
            continue;
        s_worker_fill(w, o);
        w->unseen = false;
        if (!w->last_seen_ms)
            w->last_seen_ms = now_ms;
        if (!w->joined_ms)
            w->joined_ms = now_ms;
        w->state = json_is_true(json_object_get(o, "draining")) ? W_DRAINING
                                                                 : W_ONLINE;
    }
    for (s_worker_t *w = zhashx_first(self->workers); w;
         w = zhashx_next(self->workers)) {
        if (w->unseen) {
            w->unseen = false;
            w->state = W_LEFT;
            w->gone_ms = now_ms;
            w->running = w->busy = 0;
        }
    }
    s_prune_running(self, b);
}

static int
s_cmp_run(const void *a, const void *b)
{
    const s_run_t *x = *(s_run_t *const *)a, *y = *(s_run_t *const *)b;
    int c = strcmp(x->worker ? x->worker : "", y->worker ? y->worker : "");
    if (c)
        return c;
    return x->started_ms < y->started_ms ? 1 : x->started_ms > y->started_ms;
}

/* After a snapshot of broker b: forgets running jobs whose end was missed.
 * A worker runs at most the jobs the broker leased to it, so beyond that
 * count its oldest ones ended unseen; a worker that is gone runs none. */
static void
s_prune_running(collector_state_t *self, int b)
{
    size_t n = 0, cap = zhashx_size(self->running);
    s_run_t **v = cap ? malloc(cap * sizeof *v) : NULL;
    if (!v)
        return;
    for (s_run_t *r = zhashx_first(self->running); r;
         r = zhashx_next(self->running))
        if (r->broker == b)
            v[n++] = r;
    qsort(v, n, sizeof *v, s_cmp_run);
    zlistx_t *drop = zlistx_new();
    zlistx_set_duplicator(drop, (zlistx_duplicator_fn *)strdup);
    zlistx_set_destructor(drop, (zlistx_destructor_fn *)zstr_free);
    const char *cur = NULL;
    int64_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const char *wn = v[i]->worker ? v[i]->worker : "";
        if (!cur || strcmp(cur, wn)) {
            cur = wn;
            kept = 0;
        }
        const s_worker_t *w = *wn ? s_worker(self, b, wn, false) : NULL;
        bool alive = w && (w->state == W_ONLINE || w->state == W_DRAINING);
        if (alive && kept < w->running)
            kept++;
        else
            zlistx_add_end(drop, v[i]->id);
    }
    for (const char *id = zlistx_first(drop); id; id = zlistx_next(drop))
        zhashx_delete(self->running, id);
    zlistx_destroy(&drop);
    free(v);
}

void
collector_state_tick(collector_state_t *self, int64_t now_ms)
{
    zlistx_t *drop = zlistx_new();
    if (!drop)
        return;
    zlistx_set_duplicator(drop, (zlistx_duplicator_fn *)strdup);
    zlistx_set_destructor(drop, (zlistx_destructor_fn *)zstr_free);
    for (s_worker_t *w = zhashx_first(self->workers); w;
         w = zhashx_next(self->workers))
        if ((w->state == W_LEFT || w->state == W_EXPIRED) &&
            now_ms - w->gone_ms > S_GONE_KEEP_MS)
            zlistx_add_end(drop, (void *)zhashx_cursor(self->workers));
    for (const char *key = zlistx_first(drop); key; key = zlistx_next(drop))
        zhashx_delete(self->workers, key);
    zlistx_destroy(&drop);
}

/* ---- views --------------------------------------------------------------- */

static const char *s_sort_key;

static int
s_cmp_by_key(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a,
                                                      s_sort_key));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b,
                                                      s_sort_key));
    return strcmp(x ? x : "", y ? y : "");
}

/* Sorts an array of objects by the string member key, in place, so that
 * listings come out in a stable order (hash order is not). */
static void
s_sort_by(json_t *a, const char *key)
{
    size_t n = json_array_size(a);
    json_t **v = n ? malloc(n * sizeof *v) : NULL;
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(a, i));
    s_sort_key = key;
    qsort(v, n, sizeof *v, s_cmp_by_key);
    json_array_clear(a);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, v[i]);
    free(v);
}

static void
s_json_free(void **item)
{
    json_decref(*item);
    *item = NULL;
}

static const char *
s_reach_name(const s_broker_t *br)
{
    if (!br->clients_ep)
        return br->heard ? "up" : "waiting";
    return br->reach == B_UP ? "up" : br->reach == B_DOWN ? "unreachable"
                                                           : "connecting";
}

json_t *
collector_state_brokers(const collector_state_t *self, int64_t now_ms)
{
    json_t *a = json_array();
    for (int b = 0; b < self->nbrokers; b++) {
        const s_broker_t *br = &self->brokers[b];
        json_t *o = json_pack(
            "{s:s, s:s?, s:s, s:s, s:b, s:I, s:I, s:I}", "endpoint",
            br->events_ep, "clients", br->clients_ep, "instance", br->instance,
            "state", s_reach_name(br), "synced", br->synced, "last_seq",
            (json_int_t)br->last_seq, "events", (json_int_t)br->events, "gaps",
            (json_int_t)br->gaps);
        json_object_set_new(o, "last_event_ms",
                            br->last_event_ms ? json_integer(br->last_event_ms)
                                              : json_null());
        if (br->why[0])
            json_object_set_new(o, "error", json_string(br->why));
        if (br->snapshot) {
            json_t *v;
            if ((v = json_object_get(br->snapshot, "store")))
                json_object_set(o, "store", v);
            if ((v = json_object_get(br->snapshot, "uptime_ms")) &&
                json_is_integer(v))
                json_object_set_new(
                    o, "uptime_ms",
                    json_integer(json_integer_value(v) + now_ms -
                                 br->snapshot_ms));
            if ((v = json_object_get(br->snapshot, "counters")))
                json_object_set(o, "counters", v);
        }
        json_array_append_new(a, o);
    }
    return a;
}

static const char *
s_worker_state(const s_worker_t *w)
{
    if (w->state != W_ONLINE)
        return s_wstate_names[w->state];
    if (w->busy > 0 || (w->busy < 0 && w->running > 0))
        return "busy";
    return "idle";
}

static bool
s_online(const s_worker_t *w)
{
    return w->state == W_ONLINE || w->state == W_DRAINING;
}

json_t *
collector_state_worker_summary(const collector_state_t *self, int64_t now_ms)
{
    (void)now_ms;
    int64_t online = 0, busy = 0, idle = 0, draining = 0, offline = 0,
            slots = 0, busy_slots = 0;
    for (s_worker_t *w = zhashx_first(self->workers); w;
         w = zhashx_next(self->workers)) {
        if (!s_online(w)) {
            offline++;
            continue;
        }
        online++;
        const char *st = s_worker_state(w);
        if (!strcmp(st, "busy"))
            busy++;
        else if (!strcmp(st, "idle"))
            idle++;
        else
            draining++;
        slots += w->concurrency;
        busy_slots += w->busy > 0 ? w->busy : 0;
    }
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "online",
                     (json_int_t)online, "busy", (json_int_t)busy, "idle",
                     (json_int_t)idle, "draining", (json_int_t)draining,
                     "offline", (json_int_t)offline, "slots",
                     (json_int_t)slots, "busy_slots", (json_int_t)busy_slots,
                     "running_jobs", (json_int_t)zhashx_size(self->running));
}

static json_t *
s_run_json(const s_run_t *r)
{
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:i, s:I}", "id",
                          r->id, "queue", r->queue, "type", r->type, "batch",
                          r->batch, "worker", r->worker, "attempt", r->attempt,
                          "started_at", (json_int_t)r->started_ms);
    if (r->current || r->total || r->message) {
        json_object_set_new(o, "current", json_integer(r->current));
        json_object_set_new(o, "total", json_integer(r->total));
        if (r->message)
            json_object_set_new(o, "message", json_string(r->message));
    }
    return o;
}

json_t *
collector_state_workers(const collector_state_t *self, int64_t now_ms)
{
    /* Running jobs by worker key, listed with each worker. */
    zhashx_t *jobs = zhashx_new();
    zhashx_set_destructor(jobs, s_json_free);
    for (s_run_t *r = zhashx_first(self->running); r;
         r = zhashx_next(self->running)) {
        if (!r->worker)
            continue;
        char key[DV_NAME_MAX + 16];
        s_worker_key(r->broker, r->worker, key, sizeof key);
        json_t *a = zhashx_lookup(jobs, key);
        if (!a) {
            a = json_array();
            zhashx_insert(jobs, key, a);
        }
        if (json_array_size(a) < S_JOBS_PER_WORKER)
            json_array_append_new(a, s_run_json(r));
    }
    json_t *out = json_array();
    for (s_worker_t *w = zhashx_first(self->workers); w;
         w = zhashx_next(self->workers)) {
        const char *key = zhashx_cursor(self->workers);
        json_t *mine = zhashx_lookup(jobs, key);
        json_t *o = json_pack(
            "{s:s, s:s, s:s?, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:O*}",
            "name", w->name, "broker", self->brokers[w->broker].events_ep,
            "host", w->host, "pid", (json_int_t)w->pid, "state",
            s_worker_state(w), "concurrency", (json_int_t)w->concurrency,
            "credit", (json_int_t)w->credit, "running",
            (json_int_t)w->running, "processed", (json_int_t)w->processed,
            "failed", (json_int_t)w->failed, "queues", w->queues);
        json_object_set_new(o, "busy", w->busy >= 0 ? json_integer(w->busy)
                                                    : json_null());
        json_object_set_new(o, "idle", w->idle >= 0 ? json_integer(w->idle)
                                                    : json_null());
        json_object_set_new(o, "joined_at", json_integer(w->joined_ms));
        json_object_set_new(o, "last_seen_at", json_integer(w->last_seen_ms));
        json_object_set_new(o, "heartbeat_age_ms",
                            json_integer(now_ms - w->last_seen_ms));
        if (w->gone_ms)
            json_object_set_new(o, "gone_at", json_integer(w->gone_ms));
        json_object_set_new(o, "jobs", mine ? json_incref(mine) : json_array());
        if (w->metrics)
            json_object_set(o, "metrics", w->metrics);
        json_array_append_new(out, o);
    }
    zhashx_destroy(&jobs);
    s_sort_by(out, "name");
    return out;
}

static bool
s_serves(const s_worker_t *w, const char *queue)
{
    size_t i;
    json_t *v;
    json_array_foreach(w->queues, i, v) {
        const char *s = json_string_value(v);
        if (s && !strcmp(s, queue))
            return true;
    }
    return false;
}

/* Workers of broker b (or any broker, b < 0) that take jobs of queue. */
static int
s_serving(const collector_state_t *self, int b, const char *queue)
{
    int n = 0;
    for (s_worker_t *w = zhashx_first(self->workers); w;
         w = zhashx_next(self->workers))
        if (w->state == W_ONLINE && (b < 0 || w->broker == b) &&
            s_serves(w, queue))
            n++;
    return n;
}

static json_t *
s_totals_json(const uint64_t *totals)
{
    json_t *o = json_object();
    for (int k = 0; k < O_KINDS; k++)
        json_object_set_new(o, s_outcome_names[k],
                            json_integer((json_int_t)totals[k]));
    return o;
}

json_t *
collector_state_queues(const collector_state_t *self, int64_t now_ms)
{
    json_t *out = json_array();
    for (s_queue_t *q = zhashx_first(self->queues); q;
         q = zhashx_next(self->queues)) {
        int64_t queued = 0, scheduled = 0, running = 0, max_running = 0;
        double rate = 0;
        bool paused = false;
        json_t *brokers = json_array();
        for (int b = 0; b < self->nbrokers; b++) {
            const s_depth_t *d = &q->per[b];
            if (!d->present)
                continue;
            queued += d->queued;
            scheduled += d->scheduled;
            running += d->running;
            paused |= d->paused;
            rate += d->rate;
            max_running += d->max_running;
            json_array_append_new(brokers,
                                  json_string(self->brokers[b].events_ep));
        }
        json_t *o = json_pack(
            "{s:s, s:I, s:I, s:I, s:b, s:f, s:I, s:i, s:o}", "name", q->name,
            "queued", (json_int_t)queued, "scheduled", (json_int_t)scheduled,
            "running", (json_int_t)running, "paused", paused, "rate_limit",
            rate, "max_running", (json_int_t)max_running, "workers",
            s_serving(self, -1, q->name), "brokers", brokers);
        json_object_set_new(o, "rates", s_ring_json(self, q->ring, now_ms));
        json_object_set_new(o, "wait_ms", s_lat_json(q->wait, now_ms));
        json_object_set_new(o, "run_ms", s_lat_json(q->run, now_ms));
        json_object_set_new(o, "totals", s_totals_json(q->totals));
        json_array_append_new(out, o);
    }
    s_sort_by(out, "name");
    return out;
}

json_t *
collector_state_types(const collector_state_t *self, int64_t now_ms)
{
    json_t *out = json_array();
    for (s_type_t *t = zhashx_first(self->types); t;
         t = zhashx_next(self->types)) {
        json_t *o = json_pack("{s:s}", "name", t->name);
        json_object_set_new(o, "wait_ms", s_lat_json(t->wait, now_ms));
        json_object_set_new(o, "run_ms", s_lat_json(t->run, now_ms));
        json_object_set_new(o, "totals", s_totals_json(t->totals));
        json_array_append_new(out, o);
    }
    s_sort_by(out, "name");
    return out;
}

json_t *
collector_state_rates(const collector_state_t *self, int64_t now_ms)
{
    return s_ring_json(self, self->ring, now_ms);
}

/* ---- keys ---------------------------------------------------------------- */

typedef struct {
    json_t *o;
    int64_t states[3]; /* ok, cooling, disabled */
} s_key_t;

static void
s_key_free(void **item)
{
    s_key_t *k = *item;
    if (!k)
        return;
    json_decref(k->o);
    free(k);
    *item = NULL;
}

static void
s_add_int(json_t *o, const char *key, const json_t *from)
{
    const json_t *v = json_object_get(from, key);
    if (!json_is_integer(v))
        return;
    json_t *cur = json_object_get(o, key);
    json_object_set_new(o, key,
                        json_integer(json_integer_value(cur) +
                                     json_integer_value(v)));
}

/* Keys aggregated over online workers: key id + hash -> s_key_t. */
static zhashx_t *
s_keys(const collector_state_t *self)
{
    zhashx_t *keys = zhashx_new();
    if (!keys)
        return NULL;
    zhashx_set_destructor(keys, s_key_free);
    for (s_worker_t *w = zhashx_first(self->workers); w;
         w = zhashx_next(self->workers)) {
        if (!s_online(w) || !w->metrics)
            continue;
        size_t i;
        json_t *k;
        json_array_foreach(json_object_get(w->metrics, "keys"), i, k) {
            const char *id = s_strv(k, "id");
            const char *hash = s_strv(k, "hash");
            if (!id)
                continue;
            char name[DV_NAME_MAX * 2];
            snprintf(name, sizeof name, "%s\x1f%s", id, hash ? hash : "");
            s_key_t *e = zhashx_lookup(keys, name);
            if (!e) {
                e = calloc(1, sizeof *e);
                if (!e)
                    continue;
                e->o = json_pack("{s:s, s:s?, s:i, s:i, s:i, s:i, s:i}", "id",
                                 id, "hash", hash, "workers", 0, "requests", 0,
                                 "ok", 0, "rate_limited", 0, "errors", 0);
                zhashx_insert(keys, name, e);
            }
            json_object_set_new(
                e->o, "workers",
                json_integer(s_int(e->o, "workers", 0) + 1));
            s_add_int(e->o, "requests", k);
            s_add_int(e->o, "ok", k);
            s_add_int(e->o, "rate_limited", k);
            s_add_int(e->o, "errors", k);
            s_add_int(e->o, "tokens", k);
            const char *st = s_strv(k, "state");
            if (st && !strcmp(st, "cooling"))
                e->states[1]++;
            else if (st && !strcmp(st, "disabled"))
                e->states[2]++;
            else
                e->states[0]++;
        }
    }
    return keys;
}

/* A key's overall state: ok if usable on any worker, else cooling if it
 * cools anywhere, else disabled. */
static const char *
s_key_state(const s_key_t *k)
{
    return k->states[0] ? "ok" : k->states[1] ? "cooling" : "disabled";
}

json_t *
collector_state_keys(const collector_state_t *self, int64_t now_ms)
{
    (void)now_ms;
    json_t *out = json_array();
    zhashx_t *keys = s_keys(self);
    for (s_key_t *k = keys ? zhashx_first(keys) : NULL; k;
         k = zhashx_next(keys)) {
        json_t *o = json_deep_copy(k->o);
        json_object_set_new(o, "state", json_string(s_key_state(k)));
        json_object_set_new(o, "states",
                            json_pack("{s:I, s:I, s:I}", "ok",
                                      (json_int_t)k->states[0], "cooling",
                                      (json_int_t)k->states[1], "disabled",
                                      (json_int_t)k->states[2]));
        json_array_append_new(out, o);
    }
    zhashx_destroy(&keys);
    s_sort_by(out, "id");
    return out;
}

/* ---- health -------------------------------------------------------------- */

json_t *
collector_state_health(const collector_state_t *self, int64_t now_ms)
{
    int status = 0;
    json_t *reasons = json_array();
    char text[1024];
    for (int b = 0; b < self->nbrokers; b++) {
        const s_broker_t *br = &self->brokers[b];
        if (br->clients_ep && br->reach == B_DOWN) {
            status = 2;
            snprintf(text, sizeof text, "broker %s is unreachable: %s",
                     br->clients_ep, br->why[0] ? br->why : "no answer");
            json_array_append_new(reasons, json_string(text));
        }
    }
    for (s_queue_t *q = zhashx_first(self->queues); q;
         q = zhashx_next(self->queues)) {
        for (int b = 0; b < self->nbrokers; b++) {
            const s_depth_t *d = &q->per[b];
            if (!d->present || d->queued <= 0 || d->paused ||
                self->brokers[b].reach == B_DOWN ||
                s_serving(self, b, q->name) > 0)
                continue;
            if (status < 1)
                status = 1;
            snprintf(text, sizeof text,
                     "queue %s has %" PRId64 " queued job%s and no worker "
                     "serves it (broker %s)",
                     q->name, d->queued, d->queued == 1 ? "" : "s",
                     self->brokers[b].events_ep);
            json_array_append_new(reasons, json_string(text));
        }
    }
    zhashx_t *keys = s_keys(self);
    int nkeys = 0, usable = 0, cooling = 0;
    for (s_key_t *k = keys ? zhashx_first(keys) : NULL; k;
         k = zhashx_next(keys)) {
        nkeys++;
        if (k->states[0])
            usable++;
        else if (k->states[1])
            cooling++;
    }
    zhashx_destroy(&keys);
    if (nkeys > 0 && usable == 0) {
        if (status < 1)
            status = 1;
        snprintf(text, sizeof text,
                 "no API key is usable: %d of %d cooling down after 429s, "
                 "%d disabled",
                 cooling, nkeys, nkeys - cooling);
        json_array_append_new(reasons, json_string(text));
    }
    (void)now_ms;
    static const char *names[] = { "healthy", "degraded", "down" };
    return json_pack("{s:i, s:s, s:o}", "status", status, "state",
                     names[status], "reasons", reasons);
}

/* ---- running jobs -------------------------------------------------------- */

json_t *
collector_state_running(const collector_state_t *self, int limit)
{
    json_t *out = json_array();
    for (s_run_t *r = zhashx_first(self->running);
         r && (int)json_array_size(out) < limit;
         r = zhashx_next(self->running))
        json_array_append_new(out, s_run_json(r));
    return out;
}

json_t *
collector_state_running_job(const collector_state_t *self, const char *id)
{
    const s_run_t *r = zhashx_lookup(self->running, id);
    return r ? s_run_json(r) : NULL;
}

/* ---- metrics ------------------------------------------------------------- */

/* A label value with \, " and newline escaped. */
static void
s_label(FILE *out, const char *v)
{
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '"')
            fputs("\\\"", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

static void
s_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
s_prom_hist(FILE *out, const char *name, const s_series_t *s,
            const s_prom_hist_t *h)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= S_NBUCKETS; i++) {
        cum += h->counts[i];
        fprintf(out, "%s_bucket{queue=\"", name);
        s_label(out, s->queue);
        fputs("\",type=\"", out);
        s_label(out, s->type);
        fprintf(out, "\",le=\"%s\"} %" PRIu64 "\n",
                i < S_NBUCKETS ? s_bucket_le[i] : "+Inf", cum);
    }
    fprintf(out, "%s_sum{queue=\"", name);
    s_label(out, s->queue);
    fputs("\",type=\"", out);
    s_label(out, s->type);
    fprintf(out, "\"} %.6f\n%s_count{queue=\"", h->sum_s, name);
    s_label(out, s->queue);
    fputs("\",type=\"", out);
    s_label(out, s->type);
    fprintf(out, "\"} %" PRIu64 "\n", h->count);
}

void
collector_state_metrics(const collector_state_t *self, FILE *out,
                        int64_t now_ms)
{
    s_family(out, "drover_jobs_total", "counter",
             "Jobs seen by queue, type and outcome (failed counts failed "
             "attempts).");
    for (s_series_t *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series)) {
        for (int k = 0; k < O_KINDS; k++) {
            fputs("drover_jobs_total{queue=\"", out);
            s_label(out, s->queue);
            fputs("\",type=\"", out);
            s_label(out, s->type);
            fprintf(out, "\",outcome=\"%s\"} %" PRIu64 "\n",
                    s_outcome_names[k], s->totals[k]);
        }
    }
    s_family(out, "drover_job_duration_seconds", "histogram",
             "Run time of finished attempts.");
    for (s_series_t *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series))
        s_prom_hist(out, "drover_job_duration_seconds", s, &s->run);
    s_family(out, "drover_job_wait_seconds", "histogram",
             "Time from ready to started.");
    for (s_series_t *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series))
        s_prom_hist(out, "drover_job_wait_seconds", s, &s->wait);

    s_family(out, "drover_queue_depth", "gauge",
             "Jobs per queue and state, over all brokers.");
    for (s_queue_t *q = zhashx_first(self->queues); q;
         q = zhashx_next(self->queues)) {
        int64_t v[3] = { 0, 0, 0 };
        for (int b = 0; b < self->nbrokers; b++) {
            v[0] += q->per[b].queued;
            v[1] += q->per[b].scheduled;
            v[2] += q->per[b].running;
        }
        static const char *names[] = { "queued", "scheduled", "running" };
        for (int i = 0; i < 3; i++) {
            fputs("drover_queue_depth{queue=\"", out);
            s_label(out, q->name);
            fprintf(out, "\",state=\"%s\"} %" PRId64 "\n", names[i], v[i]);
        }
    }

    json_t *sum = collector_state_worker_summary(self, now_ms);
    s_family(out, "drover_workers", "gauge", "Worker supervisors by state.");
    static const char *wstates[] = { "busy", "idle", "draining", "offline" };
    for (size_t i = 0; i < sizeof wstates / sizeof wstates[0]; i++)
        fprintf(out, "drover_workers{state=\"%s\"} %" PRId64 "\n", wstates[i],
                s_int(sum, wstates[i], 0));
    json_decref(sum);
    s_family(out, "drover_worker_busy", "gauge",
             "Child processes running a job, per worker.");
    for (s_worker_t *w = zhashx_first(self->workers); w;
         w = zhashx_next(self->workers)) {
        if (!s_online(w))
            continue;
        fputs("drover_worker_busy{worker=\"", out);
        s_label(out, w->name);
        fputs("\",broker=\"", out);
        s_label(out, self->brokers[w->broker].events_ep);
        fprintf(out, "\"} %" PRId64 "\n",
                w->busy >= 0 ? w->busy : w->running);
    }

    zhashx_t *keys = s_keys(self);
    s_family(out, "drover_key_state", "gauge",
             "Workers on which an API key is in each state.");
    for (s_key_t *k = keys ? zhashx_first(keys) : NULL; k;
         k = zhashx_next(keys)) {
        static const char *ks[] = { "ok", "cooling", "disabled" };
        for (int i = 0; i < 3; i++) {
            fputs("drover_key_state{key=\"", out);
            s_label(out, s_strv(k->o, "id"));
            fprintf(out, "\",state=\"%s\"} %" PRId64 "\n", ks[i],
                    k->states[i]);
        }
    }
    s_family(out, "drover_key_requests_total", "counter",
             "Requests per API key and outcome, summed over online workers.");
    for (s_key_t *k = keys ? zhashx_first(keys) : NULL; k;
         k = zhashx_next(keys)) {
        static const char *ko[] = { "ok", "rate_limited", "errors" };
        static const char *kl[] = { "ok", "rate_limited", "error" };
        for (int i = 0; i < 3; i++) {
            fputs("drover_key_requests_total{key=\"", out);
            s_label(out, s_strv(k->o, "id"));
            fprintf(out, "\",outcome=\"%s\"} %" PRId64 "\n", kl[i],
                    s_int(k->o, ko[i], 0));
        }
    }
    zhashx_destroy(&keys);

    s_family(out, "drover_broker_up", "gauge",
             "1 when the broker answers status requests.");
    for (int b = 0; b < self->nbrokers; b++) {
        fputs("drover_broker_up{broker=\"", out);
        s_label(out, self->brokers[b].events_ep);
        fprintf(out, "\"} %d\n", self->brokers[b].reach == B_UP ? 1 : 0);
    }
    s_family(out, "drover_collector_events_total", "counter",
             "Events received from all brokers.");
    fprintf(out, "drover_collector_events_total %" PRIu64 "\n",
            collector_state_events_total(self));
    s_family(out, "drover_collector_gaps_total", "counter",
             "Gaps in the brokers' event sequence numbers (missed events).");
    fprintf(out, "drover_collector_gaps_total %" PRIu64 "\n",
            collector_state_gaps_total(self));
}

/* ---- dump ---------------------------------------------------------------- */

void
collector_state_dump(const collector_state_t *self, int64_t now_ms)
{
    dv_log(DV_INFO, "collector.dump",
           DV_INT("brokers", self->nbrokers),
           DV_INT("queues", zhashx_size(self->queues)),
           DV_INT("workers", zhashx_size(self->workers)),
           DV_INT("running_jobs", zhashx_size(self->running)),
           DV_INT("events", collector_state_events_total(self)),
           DV_INT("gaps", collector_state_gaps_total(self)));
    for (int b = 0; b < self->nbrokers; b++) {
        const s_broker_t *br = &self->brokers[b];
        dv_log(DV_INFO, "collector.dump_broker",
               DV_STR("broker", br->events_ep),
               DV_STR("clients", br->clients_ep),
               DV_STR("instance", br->instance),
               DV_STR("state", s_reach_name(br)), DV_BOOL("synced", br->synced),
               DV_INT("last_seq", br->last_seq), DV_INT("events", br->events),
               DV_INT("gaps", br->gaps),
               DV_INT("silent_ms",
                      br->last_event_ms ? now_ms - br->last_event_ms : -1));
    }
    for (s_queue_t *q = zhashx_first(self->queues); q;
         q = zhashx_next(self->queues)) {
        int64_t v[3] = { 0, 0, 0 };
        for (int b = 0; b < self->nbrokers; b++) {
            v[0] += q->per[b].queued;
            v[1] += q->per[b].scheduled;
            v[2] += q->per[b].running;
        }
        dv_log(DV_INFO, "collector.dump_queue", DV_STR("queue", q->name),
               DV_INT("queued", v[0]), DV_INT("scheduled", v[1]),
               DV_INT("running", v[2]),
               DV_INT("succeeded", q->totals[O_SUCCEEDED]),
               DV_INT("failed", q->totals[O_FAILED]),
               DV_INT("dead", q->totals[O_DEAD]));
    }
    for (s_worker_t *w = zhashx_first(self->workers); w;
         w = zhashx_next(self->workers))
        dv_log(DV_INFO, "collector.dump_worker", DV_STR("worker", w->name),
               DV_STR("broker", self->brokers[w->broker].events_ep),
               DV_STR("state", s_worker_state(w)), DV_INT("busy", w->busy),
               DV_INT("running", w->running), DV_INT("processed", w->processed),
               DV_INT("heartbeat_age_ms", now_ms - w->last_seen_ms));
}
