/* collector_state - the live state itself: making and freeing it, finding
 * or making its queues, types, series, workers and running jobs, and
 * forgetting workers that left long ago. The other files of the state
 * (listed in collector_internal.h) apply events and snapshots to it and
 * read it out.
 *
 * A failed allocation fails the one lookup that needed it (NULL), and the
 * state stays as it was: the caller reports it, the collector goes on.
 * Called from the loop thread only; nothing here blocks.
 */
#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector_internal.h"

const char *const collector_state_outcome_names[COLLECTOR_OUT_KINDS] = {
    "submitted", "succeeded", "failed", "dead", "cancelled", "retried"
};

static const char *const s_wstate_names[] = { "online", "draining", "left",
                                              "expired" };

/* ---- items ---------------------------------------------------------------- */

static void
s_worker_free(void *item)
{
    collector_worker_t *w = item;
    if (!w)
        return;
    free(w->name);
    free(w->host);
    json_decref(w->queues);
    dv_hbmetrics_release(&w->metrics);
    free(w->mp);
    free(w);
}

static void
s_run_free(void *item)
{
    collector_run_t *r = item;
    if (!r)
        return;
    free(r->queue);
    free(r->type);
    free(r->batch);
    free(r->worker);
    free(r->message);
    free(r);
}

collector_state_t *
collector_state_new(int64_t now_ms)
{
    collector_state_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->started_ms = now_ms;
    self->queues = dv_map_new(free);
    self->types = dv_map_new(free);
    self->series = dv_map_new(free);
    self->workers = dv_map_new(s_worker_free);
    self->running = dv_map_new(s_run_free);
    self->schedules = dv_map_new(free);
    self->ring = calloc(1, sizeof *self->ring);
    if (!self->queues || !self->types || !self->series || !self->workers ||
        !self->running || !self->schedules || !self->ring) {
        collector_state_destroy(&self);
        return NULL;
    }
    return self;
}

void
collector_state_destroy(collector_state_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    collector_state_t *self = *self_p;
    dv_map_destroy(&self->queues);
    dv_map_destroy(&self->types);
    dv_map_destroy(&self->series);
    dv_map_destroy(&self->workers);
    dv_map_destroy(&self->running);
    dv_map_destroy(&self->schedules);
    json_decref(self->fleet.body);
    for (int b = 0; b < self->nbrokers; b++) {
        free(self->brokers[b].events_ep);
        free(self->brokers[b].clients_ep);
        json_decref(self->brokers[b].snapshot);
    }
    free(self->ring);
    free(self);
    *self_p = NULL;
}

/* ---- finding or making --------------------------------------------------- */

/* Queues and types begin with their name, which is their map key. */
static_assert(offsetof(collector_queue_t, name) == 0, "name first");
static_assert(offsetof(collector_type_t, name) == 0, "name first");

/* A new zeroed item of size bytes that begins with name (its map key),
 * added to map. NULL when out of memory or the name is too long. */
static void *
s_make(dv_map_t *map, size_t size, const char *name)
{
    size_t len = strlen(name);
    if (len > DV_NAME_MAX)
        return NULL;
    char *item = calloc(1, size);
    if (!item)
        return NULL;
    memcpy(item, name, len + 1);
    if (dv_map_put(map, item, item) != 0) {
        free(item);
        return NULL;
    }
    return item;
}

collector_queue_t *
collector_state_queue(collector_state_t *self, const char *name)
{
    collector_queue_t *q = dv_map_get(self->queues, name);
    return q ? q : s_make(self->queues, sizeof *q, name);
}

collector_type_t *
collector_state_type(collector_state_t *self, const char *name)
{
    collector_type_t *t = dv_map_get(self->types, name);
    return t ? t : s_make(self->types, sizeof *t, name);
}

collector_series_t *
collector_state_series(collector_state_t *self, const char *queue,
                       const char *type)
{
    char key[COLLECTOR_SERIES_KEY_MAX];
    snprintf(key, sizeof key, "%s\x1f%s", queue, type);
    collector_series_t *s = dv_map_get(self->series, key);
    if (s)
        return s;
    if (strlen(queue) > DV_NAME_MAX || strlen(type) > DV_NAME_MAX)
        return NULL;
    s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    memcpy(s->key, key, sizeof key);
    strcpy(s->queue, queue);
    strcpy(s->type, type);
    if (dv_map_put(self->series, s->key, s) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void
collector_state_worker_key(int b, const char *name, char *key, size_t size)
{
    snprintf(key, size, "%d\x1f%s", b, name);
}

collector_worker_t *
collector_state_worker(collector_state_t *self, int b, const char *name,
                       bool create)
{
    char key[COLLECTOR_WORKER_KEY_MAX];
    collector_state_worker_key(b, name, key, sizeof key);
    collector_worker_t *w = dv_map_get(self->workers, key);
    if (w || !create)
        return w;
    w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    memcpy(w->key, key, sizeof key);
    w->broker = b;
    w->name = strdup(name);
    w->busy = w->idle = -1;
    if (!w->name || dv_map_put(self->workers, w->key, w) != 0) {
        s_worker_free(w);
        return NULL;
    }
    return w;
}

static char *
s_dup(dv_str_t v)
{
    return v.ptr && v.len ? dv_str_dup(v) : NULL;
}

collector_run_t *
collector_state_run(collector_state_t *self, int b, const dv_event_t *ev,
                    bool create)
{
    char id[DV_ID_TEXT_LEN + 1];
    dv_str_copy(ev->id, id, sizeof id);
    collector_run_t *r = dv_map_get(self->running, id);
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
    if ((ev->queue.len && !r->queue) || (ev->type.len && !r->type) ||
        (ev->batch.len && !r->batch) ||
        dv_map_put(self->running, r->id, r) != 0) {
        s_run_free(r);
        return NULL;
    }
    return r;
}

/* ---- workers ------------------------------------------------------------- */

/* True when the JSON array of names a holds the names qs, in order. */
static bool
s_same_queues(const json_t *a, const dv_str_t *qs, uint32_t n)
{
    if (!json_is_array(a) || json_array_size(a) != n)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(a, i);
        if (!json_is_string(v) || json_string_length(v) != qs[i].len ||
            memcmp(json_string_value(v), qs[i].ptr, qs[i].len) != 0)
            return false;
    }
    return true;
}

/* Replaces the worker's queue names, unless they are the same. */
static int
s_worker_queues(collector_worker_t *w, const dv_str_t *qs, uint32_t n)
{
    if (s_same_queues(w->queues, qs, n))
        return 0;
    json_t *a = json_array();
    int rc = a ? 0 : -1;
    for (uint32_t i = 0; i < n && rc == 0; i++)
        rc = json_array_append_new(a, json_stringn(qs[i].ptr, qs[i].len));
    if (rc) {
        json_decref(a);
        return -1;
    }
    json_decref(w->queues);
    w->queues = a;
    return 0;
}

/* Keeps a heartbeat's metrics: copied into the worker's buffer and decoded
 * there. Metrics that do not decode are dropped (the worker shows none). */
static int
s_worker_metrics(collector_worker_t *w, dv_str_t mp)
{
    dv_hbmetrics_release(&w->metrics);
    w->has_metrics = false;
    w->mp_len = 0;
    if (mp.len > w->mp_cap) {
        char *p = realloc(w->mp, mp.len);
        if (!p)
            return -1;
        w->mp = p;
        w->mp_cap = mp.len;
    }
    memcpy(w->mp, mp.ptr, mp.len);
    w->mp_len = mp.len;
    int rc = dv_hbmetrics_decode(w->mp, w->mp_len, &w->metrics, NULL, 0);
    if (rc != DV_OK) {
        w->mp_len = 0;
        return rc == DV_ENOMEM ? -1 : 0;
    }
    w->has_metrics = true;
    return 0;
}

int
collector_state_worker_fill(collector_worker_t *w, const dv_workerinfo_t *wi,
                            bool children)
{
    int rc = 0;
    if (wi->host.ptr && wi->host.len &&
        (!w->host || !dv_str_eq(wi->host, w->host))) {
        char *copy = dv_str_dup(wi->host);
        if (copy) {
            free(w->host);
            w->host = copy;
        } else {
            rc = -1;
        }
    }
    w->pid = wi->pid;
    w->concurrency = wi->concurrency;
    w->credit = wi->credit;
    w->running = wi->running;
    w->processed = wi->processed;
    w->failed = wi->failed;
    if (children) {
        w->busy = wi->busy;
        w->idle = wi->idle;
    }
    rc |= s_worker_queues(w, wi->queues, wi->nqueues);
    if (wi->metrics.ptr && wi->metrics.len)
        rc |= s_worker_metrics(w, wi->metrics);
    return rc;
}

bool
collector_state_worker_online(const collector_worker_t *w)
{
    return w->state == COLLECTOR_W_ONLINE || w->state == COLLECTOR_W_DRAINING;
}

const char *
collector_state_worker_state(const collector_worker_t *w)
{
    if (w->state != COLLECTOR_W_ONLINE)
        return s_wstate_names[w->state];
    if (w->busy > 0 || (w->busy < 0 && w->running > 0))
        return "busy";
    return "idle";
}

/* A worker that left or expired longer ago than the state keeps them. */
static bool
s_long_gone(const void *item, void *ctx)
{
    const collector_worker_t *w = item;
    int64_t now_ms = *(const int64_t *)ctx;
    return (w->state == COLLECTOR_W_LEFT || w->state == COLLECTOR_W_EXPIRED) &&
           now_ms - w->gone_ms > COLLECTOR_GONE_KEEP_MS;
}

void
collector_state_tick(collector_state_t *self, int64_t now_ms)
{
    dv_map_delete_if(self->workers, s_long_gone, &now_ms);
    collector_keys_tick(self, now_ms);
}

/* ---- helpers ------------------------------------------------------------- */

const char *
collector_state_broker_state(const collector_broker_t *br)
{
    if (!br->clients_ep)
        return br->heard ? "up" : "waiting";
    return br->reach == COLLECTOR_REACH_UP     ? "up"
           : br->reach == COLLECTOR_REACH_DOWN ? "unreachable"
                                               : "connecting";
}

void
collector_state_queue_depth(const collector_state_t *self,
                            const collector_queue_t *q, int64_t v[3])
{
    v[0] = v[1] = v[2] = 0;
    for (int b = 0; b < self->nbrokers; b++) {
        v[0] += q->per[b].queued;
        v[1] += q->per[b].scheduled;
        v[2] += q->per[b].running;
    }
}

int64_t
collector_state_json_int(const json_t *o, const char *key, int64_t dflt)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    return dflt;
}

const char *
collector_state_json_str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}
