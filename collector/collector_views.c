/* collector_views - the live state read out as JSON, for the query verbs
 * (collector_query.c sends them as msgpack on the ROUTER and as JSON over
 * HTTP), and as log lines for the SIGUSR1 dump. docs/collector.md lists
 * every view's members.
 *
 * Each view returns a new reference, or NULL when out of memory: a view is
 * never returned with members missing. Listings are sorted by name, since
 * hash order is not stable. Loop thread only; nothing here blocks.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector_internal.h"
#include "dv_json.h"
#include "dv_log.h"

/* j when rc is 0, else NULL (and j is freed): the end of every view. */
static json_t *
s_done(json_t *j, int rc)
{
    if (rc) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static const char *s_sort_key;

static int
s_cmp_by_key(const void *a, const void *b)
{
    const char *x = collector_state_json_str(*(json_t *const *)a, s_sort_key);
    const char *y = collector_state_json_str(*(json_t *const *)b, s_sort_key);
    return strcmp(x ? x : "", y ? y : "");
}

/* Sorts an array of objects by the string member key, in place, so that
 * listings come out in a stable order (hash order is not). Returns 0, or
 * -1 when out of memory. */
static int
s_sort_by(json_t *a, const char *key)
{
    size_t n = json_array_size(a);
    if (n < 2)
        return 0;
    json_t **v = malloc(n * sizeof *v);
    if (!v)
        return -1;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(a, i));
    s_sort_key = key;
    qsort(v, n, sizeof *v, s_cmp_by_key);
    json_array_clear(a);
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        rc |= json_array_append_new(a, v[i]);
    free(v);
    return rc;
}

/* One item of a listing as JSON: a new reference, or NULL when out of
 * memory. ctx is what the listing was given. */
typedef json_t *(s_item_json_fn)(const collector_state_t *self,
                                 const void *item, const void *ctx,
                                 int64_t now_ms);

/* Every item of map as JSON, sorted by the string member key. New
 * reference, or NULL when out of memory (also when map is NULL). */
static json_t *
s_listing(const collector_state_t *self, const dv_map_t *map,
          s_item_json_fn *item_json, const void *ctx, const char *key,
          int64_t now_ms)
{
    json_t *out = json_array();
    int rc = map && out ? 0 : -1;
    const void *item;
    DV_MAP_EACH(item, map)
    {
        if (rc)
            break;
        rc |= json_array_append_new(out, item_json(self, item, ctx, now_ms));
    }
    if (!rc)
        rc = s_sort_by(out, key);
    return s_done(out, rc);
}

/* ---- brokers ------------------------------------------------------------- */

/* What broker br's last snapshot said: store, uptime (moved on to now),
 * counters, and store_failure while it cannot write its store. */
static int
s_broker_snapshot(json_t *o, const collector_broker_t *br, int64_t now_ms)
{
    int rc = 0;
    json_t *v;
    if ((v = json_object_get(br->snapshot, "store")))
        rc |= json_object_set(o, "store", v);
    if ((v = json_object_get(br->snapshot, "uptime_ms")) && json_is_integer(v))
        rc |= json_object_set_new(
            o, "uptime_ms",
            json_integer(json_integer_value(v) + now_ms - br->snapshot_ms));
    if ((v = json_object_get(br->snapshot, "counters")))
        rc |= json_object_set(o, "counters", v);
    if ((v = json_object_get(br->snapshot, "store_failure")))
        rc |= json_object_set(o, "store_failure", v);
    if ((v = json_object_get(br->snapshot, "role")))
        rc |= json_object_set(o, "role", v);
    if ((v = json_object_get(br->snapshot, "lock")))
        rc |= json_object_set(o, "lock", v);
    if ((v = json_object_get(br->snapshot, "schedules")))
        rc |= json_object_set(o, "schedules", v);
    if ((v = json_object_get(br->snapshot, "next_schedule")))
        rc |= json_object_set(o, "next_schedule", v);
    return rc;
}

json_t *
collector_state_brokers(const collector_state_t *self, int64_t now_ms)
{
    json_t *a = json_array();
    int rc = a ? 0 : -1;
    for (int b = 0; b < self->nbrokers && !rc; b++) {
        const collector_broker_t *br = &self->brokers[b];
        json_t *o = json_pack(
            "{s:s, s:s?, s:s, s:s, s:b, s:I, s:I, s:I}", "endpoint",
            br->events_ep, "clients", br->clients_ep, "instance", br->instance,
            "state", collector_state_broker_state(br), "synced", br->synced,
            "last_seq", (json_int_t)br->last_seq, "events",
            (json_int_t)br->events, "gaps", (json_int_t)br->gaps);
        rc |= json_object_set_new(
            o, "last_event_ms",
            br->last_event_ms ? json_integer(br->last_event_ms) : json_null());
        if (br->why[0])
            rc |= json_object_set_new(o, "error", json_string(br->why));
        if (o && br->snapshot)
            rc |= s_broker_snapshot(o, br, now_ms);
        rc |= json_array_append_new(a, o);
    }
    return s_done(a, rc);
}

/* ---- workers ------------------------------------------------------------- */

json_t *
collector_state_worker_summary(const collector_state_t *self, int64_t now_ms)
{
    (void)now_ms;
    int64_t online = 0, busy = 0, idle = 0, draining = 0, offline = 0,
            slots = 0, busy_slots = 0;
    const collector_worker_t *w;
    DV_MAP_EACH(w, self->workers)
    {
        if (!collector_state_worker_online(w)) {
            offline++;
            continue;
        }
        online++;
        const char *st = collector_state_worker_state(w);
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
                     "offline", (json_int_t)offline, "slots", (json_int_t)slots,
                     "busy_slots", (json_int_t)busy_slots, "running_jobs",
                     (json_int_t)dv_map_size(self->running));
}

static json_t *
s_run_json(const collector_run_t *r)
{
    json_t *o = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?, s:i, s:I}", "id",
                          r->id, "queue", r->queue, "type", r->type, "batch",
                          r->batch, "worker", r->worker, "attempt", r->attempt,
                          "started_at", (json_int_t)r->started_ms);
    int rc = 0;
    if (r->current || r->total || r->message) {
        rc |= json_object_set_new(o, "current", json_integer(r->current));
        rc |= json_object_set_new(o, "total", json_integer(r->total));
        if (r->message)
            rc |= json_object_set_new(o, "message", json_string(r->message));
    }
    return s_done(o, rc);
}

/* The running jobs of one worker, while a view is built. */
typedef struct {
    char key[COLLECTOR_WORKER_KEY_MAX]; /* the worker's map key */
    json_t *jobs;
} s_jobs_t;

static void
s_jobs_free(void *item)
{
    s_jobs_t *j = item;
    if (!j)
        return;
    json_decref(j->jobs);
    free(j);
}

/* Running jobs by worker key, at most COLLECTOR_JOBS_PER_WORKER each: a
 * new map of s_jobs_t, or NULL when out of memory. */
static dv_map_t *
s_jobs_by_worker(const collector_state_t *self)
{
    dv_map_t *jobs = dv_map_new(s_jobs_free);
    int rc = jobs ? 0 : -1;
    const collector_run_t *r;
    DV_MAP_EACH(r, self->running)
    {
        if (rc || !r->worker)
            continue;
        char key[COLLECTOR_WORKER_KEY_MAX];
        collector_state_worker_key(r->broker, r->worker, key, sizeof key);
        s_jobs_t *j = dv_map_get(jobs, key);
        if (!j) {
            j = calloc(1, sizeof *j);
            if (j)
                memcpy(j->key, key, sizeof key);
            if (!j || !(j->jobs = json_array()) ||
                dv_map_put(jobs, j->key, j) != 0) {
                s_jobs_free(j);
                rc = -1;
                continue;
            }
        }
        if (json_array_size(j->jobs) < COLLECTOR_JOBS_PER_WORKER)
            rc |= json_array_append_new(j->jobs, s_run_json(r));
    }
    if (rc)
        dv_map_destroy(&jobs);
    return jobs;
}

static json_t *
s_worker_json(const collector_state_t *self, const void *item, const void *ctx,
              int64_t now_ms)
{
    const collector_worker_t *w = item;
    const s_jobs_t *mine = dv_map_get(ctx, w->key);
    json_t *o = json_pack(
        "{s:s, s:s, s:s?, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:O*}", "name",
        w->name, "broker", self->brokers[w->broker].events_ep, "host", w->host,
        "pid", (json_int_t)w->pid, "state", collector_state_worker_state(w),
        "concurrency", (json_int_t)w->concurrency, "credit",
        (json_int_t)w->credit, "running", (json_int_t)w->running, "processed",
        (json_int_t)w->processed, "failed", (json_int_t)w->failed, "queues",
        w->queues);
    int rc = 0;
    rc |= json_object_set_new(
        o, "busy", w->busy >= 0 ? json_integer(w->busy) : json_null());
    rc |= json_object_set_new(
        o, "idle", w->idle >= 0 ? json_integer(w->idle) : json_null());
    rc |= json_object_set_new(o, "joined_at", json_integer(w->joined_ms));
    rc |= json_object_set_new(o, "last_seen_at", json_integer(w->last_seen_ms));
    rc |= json_object_set_new(o, "heartbeat_age_ms",
                              json_integer(now_ms - w->last_seen_ms));
    if (w->gone_ms)
        rc |= json_object_set_new(o, "gone_at", json_integer(w->gone_ms));
    rc |= json_object_set_new(o, "jobs",
                              mine ? json_incref(mine->jobs) : json_array());
    if (w->has_metrics) /* the map as the worker sent it */
        rc |= json_object_set_new(
            o, "metrics", dv_msgpack_to_json(w->mp, w->mp_len, NULL, 0));
    return s_done(o, rc);
}

json_t *
collector_state_workers(const collector_state_t *self, int64_t now_ms)
{
    dv_map_t *jobs = s_jobs_by_worker(self);
    json_t *out = jobs ? s_listing(self, self->workers, s_worker_json, jobs,
                                   "name", now_ms)
                       : NULL;
    dv_map_destroy(&jobs);
    return out;
}

/* ---- queues and types ---------------------------------------------------- */

static bool
s_serves(const collector_worker_t *w, const char *queue)
{
    size_t i;
    json_t *v;
    json_array_foreach(w->queues, i, v)
    {
        const char *s = json_string_value(v);
        if (s && !strcmp(s, queue))
            return true;
    }
    return false;
}

int
collector_state_queue_workers(const collector_state_t *self, int b,
                              const char *queue)
{
    int n = 0;
    const collector_worker_t *w;
    DV_MAP_EACH(w, self->workers)
    {
        if (w->state == COLLECTOR_W_ONLINE && (b < 0 || w->broker == b) &&
            s_serves(w, queue))
            n++;
    }
    return n;
}

static json_t *
s_totals_json(const uint64_t *totals)
{
    json_t *o = json_object();
    int rc = o ? 0 : -1;
    for (int k = 0; k < COLLECTOR_OUT_KINDS; k++)
        rc |= json_object_set_new(o, collector_state_outcome_names[k],
                                  json_integer((json_int_t)totals[k]));
    return s_done(o, rc);
}

/* Adds wait_ms, run_ms and totals, which queues and types both have.
 * Returns 0 or -1. */
static int
s_latency_members(json_t *o, const collector_lat_t *wait,
                  const collector_lat_t *run, const uint64_t *totals,
                  int64_t now_ms)
{
    int rc = json_object_set_new(o, "wait_ms",
                                 collector_stats_lat_json(wait, now_ms));
    rc |=
        json_object_set_new(o, "run_ms", collector_stats_lat_json(run, now_ms));
    rc |= json_object_set_new(o, "totals", s_totals_json(totals));
    return rc;
}

static json_t *
s_queue_json(const collector_state_t *self, const void *item, const void *ctx,
             int64_t now_ms)
{
    (void)ctx;
    const collector_queue_t *q = item;
    int64_t queued = 0, scheduled = 0, running = 0, max_running = 0;
    int64_t waiting = 0;
    double rate = 0;
    bool paused = false;
    json_t *brokers = json_array();
    int rc = brokers ? 0 : -1;
    for (int b = 0; b < self->nbrokers; b++) {
        const collector_depth_t *d = &q->per[b];
        if (!d->present)
            continue;
        queued += d->queued;
        scheduled += d->scheduled;
        running += d->running;
        waiting += d->waiting;
        paused |= d->paused;
        rate += d->rate;
        max_running += d->max_running;
        rc |= json_array_append_new(brokers,
                                    json_string(self->brokers[b].events_ep));
    }
    if (rc) {
        json_decref(brokers);
        return NULL;
    }
    json_t *o = json_pack(
        "{s:s, s:I, s:I, s:I, s:b, s:f, s:I, s:i, s:o}", "name", q->name,
        "queued", (json_int_t)queued, "scheduled", (json_int_t)scheduled,
        "running", (json_int_t)running, "paused", paused, "rate_limit", rate,
        "max_running", (json_int_t)max_running, "workers",
        collector_state_queue_workers(self, -1, q->name), "brokers", brokers);
    if (o && waiting > 0) /* only while some wait (job dependencies) */
        rc |= json_object_set_new(o, "waiting", json_integer(waiting));
    rc |= json_object_set_new(
        o, "rates",
        collector_stats_ring_json(&q->ring, self->started_ms, now_ms));
    rc |= s_latency_members(o, &q->wait, &q->run, q->totals, now_ms);
    return s_done(o, rc);
}

json_t *
collector_state_queues(const collector_state_t *self, int64_t now_ms)
{
    return s_listing(self, self->queues, s_queue_json, NULL, "name", now_ms);
}

static json_t *
s_type_json(const collector_state_t *self, const void *item, const void *ctx,
            int64_t now_ms)
{
    (void)self;
    (void)ctx;
    const collector_type_t *t = item;
    json_t *o = json_pack("{s:s}", "name", t->name);
    int rc =
        o ? s_latency_members(o, &t->wait, &t->run, t->totals, now_ms) : -1;
    return s_done(o, rc);
}

json_t *
collector_state_types(const collector_state_t *self, int64_t now_ms)
{
    return s_listing(self, self->types, s_type_json, NULL, "name", now_ms);
}

json_t *
collector_state_rates(const collector_state_t *self, int64_t now_ms)
{
    return collector_stats_ring_json(self->ring, self->started_ms, now_ms);
}

/* ---- keys ---------------------------------------------------------------- */

static void
s_key_free(void *item)
{
    collector_key_t *k = item;
    if (!k)
        return;
    json_decref(k->o);
    free(k);
}

/* Adds v to o's integer member key. Returns 0 or -1. */
static int
s_add_int(json_t *o, const char *key, int64_t v)
{
    json_t *cur = json_object_get(o, key);
    return json_object_set_new(o, key,
                               json_integer(json_integer_value(cur) + v));
}

/* The entry of key k (id and hash) in keys, made if new, or NULL. */
static collector_key_t *
s_key_entry(dv_map_t *keys, const dv_hb_key_t *k)
{
    char name[2 * DV_NAME_MAX];
    char id[DV_NAME_MAX], hash[DV_NAME_MAX];
    dv_str_copy(k->id, id, sizeof id);
    dv_str_copy(k->hash, hash, sizeof hash);
    snprintf(name, sizeof name, "%s\x1f%s", id, hash);
    collector_key_t *e = dv_map_get(keys, name);
    if (e)
        return e;
    e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    memcpy(e->name, name, sizeof name);
    e->o = json_pack("{s:s, s:s?, s:i, s:i, s:i, s:i, s:i}", "id", id, "hash",
                     k->hash.ptr ? hash : NULL, "workers", 0, "requests", 0,
                     "ok", 0, "rate_limited", 0, "errors", 0);
    if (!e->o || dv_map_put(keys, e->name, e) != 0) {
        s_key_free(e);
        return NULL;
    }
    return e;
}

/* Adds what one worker reports of key k to its entry. */
static int
s_key_add(collector_key_t *e, const dv_hb_key_t *k)
{
    int rc = s_add_int(e->o, "workers", 1);
    rc |= s_add_int(e->o, "requests", k->requests);
    rc |= s_add_int(e->o, "ok", k->ok);
    rc |= s_add_int(e->o, "rate_limited", k->rate_limited);
    rc |= s_add_int(e->o, "errors", k->errors);
    rc |= s_add_int(e->o, "tokens", k->tokens);
    if (dv_str_eq(k->state, "cooling"))
        e->states[1]++;
    else if (dv_str_eq(k->state, "disabled"))
        e->states[2]++;
    else
        e->states[0]++;
    return rc;
}

dv_map_t *
collector_views_keys(const collector_state_t *self)
{
    dv_map_t *keys = dv_map_new(s_key_free);
    int rc = keys ? 0 : -1;
    const collector_worker_t *w;
    DV_MAP_EACH(w, self->workers)
    {
        if (rc || !collector_state_worker_online(w) || !w->has_metrics)
            continue;
        for (uint32_t i = 0; i < w->metrics.nkeys; i++) {
            const dv_hb_key_t *k = &w->metrics.keys[i];
            if (!k->id.ptr)
                continue;
            collector_key_t *e = s_key_entry(keys, k);
            rc |= e ? s_key_add(e, k) : -1;
        }
    }
    if (rc)
        dv_map_destroy(&keys);
    return keys;
}

/* A key's overall state: ok if usable on any worker, else cooling if it
 * cools anywhere, else disabled. */
static const char *
s_key_state(const collector_key_t *k)
{
    return k->states[0] ? "ok" : k->states[1] ? "cooling" : "disabled";
}

static json_t *
s_key_json(const collector_state_t *self, const void *item, const void *ctx,
           int64_t now_ms)
{
    (void)self;
    (void)ctx;
    (void)now_ms;
    const collector_key_t *k = item;
    json_t *o = json_deep_copy(k->o);
    int rc = json_object_set_new(o, "state", json_string(s_key_state(k)));
    rc |= json_object_set_new(o, "states",
                              json_pack("{s:I, s:I, s:I}", "ok",
                                        (json_int_t)k->states[0], "cooling",
                                        (json_int_t)k->states[1], "disabled",
                                        (json_int_t)k->states[2]));
    return s_done(o, rc);
}

json_t *
collector_state_keys(const collector_state_t *self, int64_t now_ms)
{
    dv_map_t *keys = collector_views_keys(self);
    json_t *out = s_listing(self, keys, s_key_json, NULL, "id", now_ms);
    dv_map_destroy(&keys);
    return out;
}

/* ---- health -------------------------------------------------------------- */

/* Appends a reason; returns 0 or -1. */
static int
s_reason(json_t *reasons, const char *text)
{
    return json_array_append_new(reasons, json_string(text));
}

json_t *
collector_state_health(const collector_state_t *self, int64_t now_ms)
{
    int status = 0;
    json_t *reasons = json_array();
    int rc = reasons ? 0 : -1;
    char text[1024];
    /* A group of brokers on one store: standbys are fine while one broker
     * is active; with none active nothing is served. */
    int answering = 0, standbys = 0;
    const char *standby_why = NULL;
    for (int b = 0; b < self->nbrokers; b++) {
        const collector_broker_t *br = &self->brokers[b];
        if (br->reach == COLLECTOR_REACH_DOWN)
            continue;
        answering++;
        const char *role = collector_state_json_str(br->snapshot, "role");
        if (role && !strcmp(role, "standby")) {
            standbys++;
            standby_why = collector_state_json_str(br->snapshot, "lock");
        }
    }
    if (standbys && standbys == answering) {
        status = 2;
        snprintf(text, sizeof text,
                 "no broker is active: every broker that answers is a "
                 "standby (%s)",
                 standby_why ? standby_why : "waiting for the store's lock");
        rc |= s_reason(reasons, text);
    }
    for (int b = 0; b < self->nbrokers; b++) {
        const collector_broker_t *br = &self->brokers[b];
        if (br->clients_ep && br->reach == COLLECTOR_REACH_DOWN) {
            status = 2;
            snprintf(text, sizeof text, "broker %s is unreachable: %s",
                     br->clients_ep, br->why[0] ? br->why : "no answer");
            rc |= s_reason(reasons, text);
            continue;
        }
        /* Degraded, not down: the broker answers and keeps what it holds
         * in memory, and catches up by itself once it can write again (a
         * restart would not help, and would lose that). */
        const json_t *sf = json_object_get(br->snapshot, "store_failure");
        if (sf) {
            if (status < 1)
                status = 1;
            int64_t since = collector_state_json_int(sf, "since_ms", 0);
            const char *err = collector_state_json_str(sf, "error");
            snprintf(text, sizeof text,
                     "broker %s cannot write its store: %s (for %" PRId64
                     " s; %" PRId64 " jobs refused, %" PRId64
                     " writes waiting; new submits are refused and no job "
                     "is dispatched until it can)",
                     br->clients_ep ? br->clients_ep : br->events_ep,
                     err ? err : "unknown error",
                     since > 0 && now_ms > since ? (now_ms - since) / 1000 : 0,
                     collector_state_json_int(sf, "refused", 0),
                     collector_state_json_int(sf, "waiting", 0));
            rc |= s_reason(reasons, text);
        }
    }
    const collector_queue_t *q;
    DV_MAP_EACH(q, self->queues)
    {
        for (int b = 0; b < self->nbrokers; b++) {
            const collector_depth_t *d = &q->per[b];
            if (!d->present || d->queued <= 0 || d->paused ||
                self->brokers[b].reach == COLLECTOR_REACH_DOWN ||
                collector_state_queue_workers(self, b, q->name) > 0)
                continue;
            if (status < 1)
                status = 1;
            snprintf(text, sizeof text,
                     "queue %s has %" PRId64 " queued job%s and no worker "
                     "serves it (broker %s)",
                     q->name, d->queued, d->queued == 1 ? "" : "s",
                     self->brokers[b].events_ep);
            rc |= s_reason(reasons, text);
        }
    }
    dv_map_t *keys = collector_views_keys(self);
    int nkeys = 0, usable = 0, cooling = 0;
    const collector_key_t *k;
    if (!keys)
        rc = -1;
    DV_MAP_EACH(k, keys)
    {
        nkeys++;
        if (k->states[0])
            usable++;
        else if (k->states[1])
            cooling++;
    }
    dv_map_destroy(&keys);
    if (nkeys > 0 && usable == 0) {
        if (status < 1)
            status = 1;
        snprintf(text, sizeof text,
                 "no API key is usable: %d of %d cooling down after 429s, "
                 "%d disabled",
                 cooling, nkeys, nkeys - cooling);
        rc |= s_reason(reasons, text);
    }
    if (rc) {
        json_decref(reasons);
        return NULL;
    }
    static const char *names[] = { "healthy", "degraded", "down" };
    return json_pack("{s:i, s:s, s:o}", "status", status, "state",
                     names[status], "reasons", reasons);
}

/* ---- running jobs -------------------------------------------------------- */

json_t *
collector_state_running(const collector_state_t *self, int limit)
{
    json_t *out = json_array();
    int rc = out ? 0 : -1;
    const collector_run_t *r;
    DV_MAP_EACH(r, self->running)
    {
        if (rc || (int)json_array_size(out) >= limit)
            break;
        rc |= json_array_append_new(out, s_run_json(r));
    }
    return s_done(out, rc);
}

json_t *
collector_state_running_job(const collector_state_t *self, const char *id)
{
    const collector_run_t *r = dv_map_get(self->running, id);
    return r ? s_run_json(r) : NULL;
}

/* ---- dump ---------------------------------------------------------------- */

void
collector_state_dump(const collector_state_t *self, int64_t now_ms)
{
    dv_log(DV_INFO, "collector.dump", DV_INT("brokers", self->nbrokers),
           DV_INT("queues", dv_map_size(self->queues)),
           DV_INT("workers", dv_map_size(self->workers)),
           DV_INT("running_jobs", dv_map_size(self->running)),
           DV_INT("events", collector_state_events_total(self)),
           DV_INT("gaps", collector_state_gaps_total(self)));
    for (int b = 0; b < self->nbrokers; b++) {
        const collector_broker_t *br = &self->brokers[b];
        dv_log(
            DV_INFO, "collector.dump_broker", DV_STR("broker", br->events_ep),
            DV_STR("clients", br->clients_ep), DV_STR("instance", br->instance),
            DV_STR("state", collector_state_broker_state(br)),
            DV_BOOL("synced", br->synced), DV_INT("last_seq", br->last_seq),
            DV_INT("events", br->events), DV_INT("gaps", br->gaps),
            DV_INT("silent_ms",
                   br->last_event_ms ? now_ms - br->last_event_ms : -1));
    }
    const collector_fleet_keys_t *f = &self->fleet;
    const json_t *fleet = collector_keys_fleet(self, now_ms);
    dv_log(DV_INFO, "collector.dump_fleet_keys",
           DV_STR("broker", fleet ? self->brokers[f->broker].events_ep : NULL),
           DV_INT("keys", json_array_size(json_object_get(fleet, "keys"))),
           DV_INT("age_ms", fleet ? now_ms - f->received_ms : -1),
           DV_INT("stale_ms", collector_keys_stale_ms(self)),
           DV_INT("ignored", f->ignored));
    const collector_queue_t *q;
    DV_MAP_EACH(q, self->queues)
    {
        int64_t v[3];
        collector_state_queue_depth(self, q, v);
        dv_log(DV_INFO, "collector.dump_queue", DV_STR("queue", q->name),
               DV_INT("queued", v[0]), DV_INT("scheduled", v[1]),
               DV_INT("running", v[2]),
               DV_INT("succeeded", q->totals[COLLECTOR_OUT_SUCCEEDED]),
               DV_INT("failed", q->totals[COLLECTOR_OUT_FAILED]),
               DV_INT("dead", q->totals[COLLECTOR_OUT_DEAD]));
    }
    const collector_worker_t *w;
    DV_MAP_EACH(w, self->workers)
    {
        dv_log(DV_INFO, "collector.dump_worker", DV_STR("worker", w->name),
               DV_STR("broker", self->brokers[w->broker].events_ep),
               DV_STR("state", collector_state_worker_state(w)),
               DV_INT("busy", w->busy), DV_INT("running", w->running),
               DV_INT("processed", w->processed),
               DV_INT("heartbeat_age_ms", now_ms - w->last_seen_ms));
    }
}
