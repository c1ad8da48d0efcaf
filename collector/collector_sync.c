/* collector_sync - the brokers as the collector follows them: sequence
 * numbers, gaps and restarts, whether each answers `status`, and resync
 * from those snapshots (the ZeroMQ guide's Clone pattern).
 *
 * A gap or a new broker instance makes the broker unsynced: its depth
 * deltas are no longer applied (collector_apply.c) and it wants a
 * snapshot. Applying the snapshot replaces that broker's queue depths and
 * worker list, forgets running jobs whose end was missed, and makes it
 * synced again. Loop thread only; nothing here blocks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector_internal.h"

/* ---- brokers ------------------------------------------------------------- */

int
collector_state_add_broker(collector_state_t *self, const char *events_ep,
                           const char *clients_ep)
{
    if (self->nbrokers >= COLLECTOR_BROKERS_MAX)
        return -1;
    collector_broker_t *br = &self->brokers[self->nbrokers];
    memset(br, 0, sizeof *br);
    br->events_ep = strdup(events_ep);
    br->clients_ep = clients_ep ? strdup(clients_ep) : NULL;
    if (!br->events_ep || (clients_ep && !br->clients_ep)) {
        free(br->events_ep);
        free(br->clients_ep);
        memset(br, 0, sizeof *br);
        return -1;
    }
    br->want_snapshot = clients_ep != NULL;
    return self->nbrokers++;
}

void
collector_state_broker_known(collector_state_t *self, int b,
                             const char *instance, uint64_t seq)
{
    collector_broker_t *br = &self->brokers[b];
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
    collector_broker_t *br = &self->brokers[b];
    char inst[DV_NAME_MAX + 1];
    dv_str_copy(ev->broker, inst, sizeof inst);
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
    collector_broker_t *br = &self->brokers[b];
    br->reach = ok ? COLLECTOR_REACH_UP : COLLECTOR_REACH_DOWN;
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

/* ---- snapshots ----------------------------------------------------------- */

/* Queues: the snapshot is the truth for broker b. Returns 0 or -1 (a
 * queue could not be made). */
static int
s_snapshot_queues(collector_state_t *self, int b, const dv_status_t *st,
                  int64_t now_ms)
{
    int rc = 0;
    collector_queue_t *q;
    DV_MAP_EACH(q, self->queues)
    {
        int64_t oldest = q->per[b].oldest_ready_ms; /* for an older broker */
        memset(&q->per[b], 0, sizeof q->per[b]);
        q->per[b].oldest_ready_ms = oldest;
    }
    for (uint32_t i = 0; i < st->nqueues; i++) {
        const dv_status_queue_t *o = &st->queues[i];
        char name[DV_NAME_MAX + 1];
        if (!o->name.ptr)
            continue; /* nil: not a queue name the broker could have */
        dv_str_copy(o->name, name, sizeof name);
        q = collector_state_queue(self, name);
        if (!q) {
            rc = -1;
            continue;
        }
        collector_depth_t *d = &q->per[b];
        int64_t prev_oldest = d->oldest_ready_ms;
        d->present = true;
        d->queued = o->queued;
        d->scheduled = o->scheduled;
        d->running = o->running;
        d->waiting = o->waiting;
        d->paused = o->paused;
        d->rate = o->rate;
        d->max_running = o->max_running;
        d->prefetched = d->running;
        /* An older broker says no age: then from when this side saw it. */
        d->oldest_ready_ms = d->queued <= 0 ? 0
                             : o->oldest_ms
                                 ? now_ms - o->oldest_ms
                                 : (prev_oldest ? prev_oldest : now_ms);
    }
    /* Leased but not started: running minus the jobs seen starting. */
    collector_run_t *r;
    DV_MAP_EACH(r, self->running)
    {
        q = r->broker == b && r->queue ? dv_map_get(self->queues, r->queue)
                                       : NULL;
        if (q && q->per[b].prefetched > 0)
            q->per[b].prefetched--;
    }
    return rc;
}

/* Workers: those it lists are online; ours of b it does not are gone.
 * Returns 0 or -1 (a worker could not be made or filled). */
static int
s_snapshot_workers(collector_state_t *self, int b, const dv_status_t *st,
                   int64_t now_ms)
{
    int rc = 0;
    collector_worker_t *w;
    DV_MAP_EACH(w, self->workers)
    {
        w->unseen = w->broker == b && collector_state_worker_online(w);
    }
    for (uint32_t i = 0; i < st->nworkers; i++) {
        const dv_status_worker_t *o = &st->workers[i];
        char name[DV_NAME_MAX + 1];
        if (!o->name.ptr)
            continue;
        dv_str_copy(o->name, name, sizeof name);
        /* The status entry has no busy, idle or metrics: those stay. */
        const dv_workerinfo_t wi = {
            .host = o->host,
            .pid = o->pid,
            .concurrency = o->concurrency,
            .credit = o->credit,
            .running = o->running,
            .processed = o->processed,
            .failed = o->failed,
            .queues = o->queues,
            .nqueues = o->nqueues,
        };
        w = collector_state_worker(self, b, name, true);
        if (!w || collector_state_worker_fill(w, &wi, false) != 0)
            rc = -1;
        if (!w)
            continue;
        w->unseen = false;
        if (!w->last_seen_ms)
            w->last_seen_ms = now_ms;
        if (!w->joined_ms)
            w->joined_ms = now_ms;
        w->state = o->draining ? COLLECTOR_W_DRAINING : COLLECTOR_W_ONLINE;
    }
    DV_MAP_EACH(w, self->workers)
    {
        if (w->unseen) {
            w->unseen = false;
            w->state = COLLECTOR_W_LEFT;
            w->gone_ms = now_ms;
            w->running = w->busy = 0;
        }
    }
    return rc;
}

static int
s_cmp_run(const void *a, const void *b)
{
    const collector_run_t *x = *(collector_run_t *const *)a;
    const collector_run_t *y = *(collector_run_t *const *)b;
    int c = strcmp(x->worker ? x->worker : "", y->worker ? y->worker : "");
    if (c)
        return c;
    return x->started_ms < y->started_ms ? 1 : x->started_ms > y->started_ms;
}

/* After a snapshot of broker b: forgets running jobs whose end was missed.
 * A worker runs at most the jobs the broker leased to it, so beyond that
 * count its oldest ones ended unseen; a worker that is gone runs none.
 * Returns 0, or -1 when out of memory (nothing was forgotten). */
static int
s_prune_running(collector_state_t *self, int b)
{
    size_t n = 0, cap = dv_map_size(self->running);
    if (!cap)
        return 0;
    collector_run_t **v = malloc(cap * sizeof *v);
    if (!v)
        return -1;
    collector_run_t *r;
    DV_MAP_EACH(r, self->running)
    {
        if (r->broker == b)
            v[n++] = r;
    }
    qsort(v, n, sizeof *v, s_cmp_run);
    /* The ones to forget are gathered at the front of v (every slot before
     * i has been looked at), then deleted once the walk is done. */
    size_t ndrop = 0;
    const char *cur = NULL;
    int64_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const char *wn = v[i]->worker ? v[i]->worker : "";
        if (!cur || strcmp(cur, wn)) {
            cur = wn;
            kept = 0;
        }
        const collector_worker_t *w =
            *wn ? collector_state_worker(self, b, wn, false) : NULL;
        if (w && collector_state_worker_online(w) && kept < w->running)
            kept++;
        else
            v[ndrop++] = v[i];
    }
    for (size_t i = 0; i < ndrop; i++)
        dv_map_delete(self->running, v[i]->id);
    free(v);
    return 0;
}

/* What a snapshot says of the broker itself, for the brokers view and
 * health: {broker, store, uptime_ms, counters, store_failure (only while
 * the broker cannot write its store: {error, since_ms, retries, refused,
 * waiting})}. New reference, or NULL. */
static json_t *
s_snapshot_broker(const dv_status_t *st)
{
    const dv_status_counters_t *c = &st->counters;
    json_t *counters = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I}",
        "submitted", (json_int_t)c->submitted, "dispatched",
        (json_int_t)c->dispatched, "succeeded", (json_int_t)c->succeeded,
        "failed", (json_int_t)c->failed, "retried", (json_int_t)c->retried,
        "dead", (json_int_t)c->dead, "cancelled", (json_int_t)c->cancelled,
        "lost", (json_int_t)c->lost, "live_jobs", (json_int_t)c->live_jobs,
        "dispatch_p50_us", (json_int_t)c->dispatch_p50_us, "dispatch_p99_us",
        (json_int_t)c->dispatch_p99_us, "stale", (json_int_t)c->stale,
        "adopted", (json_int_t)c->adopted, "revoked", (json_int_t)c->revoked,
        "rejoining", (json_int_t)c->rejoining);
    json_t *o = json_pack("{s:o, s:I}", "counters", counters, "uptime_ms",
                          (json_int_t)st->uptime_ms);
    int rc = o ? 0 : -1;
    if (o && st->broker.ptr)
        rc |= json_object_set_new(o, "broker",
                                  json_stringn(st->broker.ptr, st->broker.len));
    if (o && st->store.ptr)
        rc |= json_object_set_new(o, "store",
                                  json_stringn(st->store.ptr, st->store.len));
    if (o && st->store_failing) {
        const dv_status_store_t *f = &st->store_failure;
        json_t *sf =
            json_pack("{s:s%, s:I, s:I, s:I, s:I}", "error",
                      f->error.ptr ? f->error.ptr : "", (size_t)f->error.len,
                      "since_ms", (json_int_t)f->since_ms, "retries",
                      (json_int_t)f->retries, "refused", (json_int_t)f->refused,
                      "waiting", (json_int_t)f->waiting);
        rc |= sf ? json_object_set_new(o, "store_failure", sf) : -1;
    }
    /* A standby of a broker group: it serves nothing, and says why. */
    if (o && st->role.ptr)
        rc |= json_object_set_new(o, "role",
                                  json_stringn(st->role.ptr, st->role.len));
    if (o && st->lock.ptr)
        rc |= json_object_set_new(o, "lock",
                                  json_stringn(st->lock.ptr, st->lock.len));
    /* Its periodic jobs: how many, and the next to fire. */
    if (o && st->schedules)
        rc |= json_object_set_new(o, "schedules",
                                  json_integer((json_int_t)st->schedules));
    if (o && st->next_schedule.ptr)
        rc |= json_object_set_new(o, "next_schedule",
                                  json_pack("{s:s%, s:I}", "name",
                                            st->next_schedule.ptr,
                                            (size_t)st->next_schedule.len, "at",
                                            (json_int_t)st->next_schedule_ms));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Whether the events received from br have reached sequence number seq of
 * broker instance inst. */
static bool
s_lag_reached(const collector_broker_t *br, const char *inst, uint64_t seq)
{
    return !strcmp(br->instance, inst) && br->last_seq >= seq;
}

/* The snapshot says which event the broker published last: the collector
 * lags from the first snapshot whose event it had not received yet, until
 * one at least that far comes. */
static void
s_snapshot_lag(collector_broker_t *br, const dv_status_t *st, int64_t now_ms)
{
    if (br->lag_ms && s_lag_reached(br, br->lag_instance, br->lag_seq))
        br->lag_ms = 0;
    if (br->lag_ms || !st->seq || !st->broker.ptr)
        return; /* behind since an earlier snapshot; or nothing to reach */
    char inst[DV_NAME_MAX + 1];
    dv_str_copy(st->broker, inst, sizeof inst);
    if (s_lag_reached(br, inst, st->seq))
        return;
    snprintf(br->lag_instance, sizeof br->lag_instance, "%s", inst);
    br->lag_seq = st->seq;
    br->lag_ms = now_ms;
}

int64_t
collector_state_lag_ms(const collector_state_t *self, int b, int64_t now_ms)
{
    const collector_broker_t *br = &self->brokers[b];
    if (br->reach != COLLECTOR_REACH_UP || !br->lag_ms ||
        s_lag_reached(br, br->lag_instance, br->lag_seq))
        return 0;
    return now_ms > br->lag_ms ? now_ms - br->lag_ms : 0;
}

int
collector_state_snapshot(collector_state_t *self, int b, const dv_status_t *st,
                         int64_t now_ms)
{
    collector_broker_t *br = &self->brokers[b];
    br->snapshot_ms = now_ms;
    br->standby = dv_str_eq(st->role, "standby");
    br->store_failing = st->store_failing;
    s_snapshot_lag(br, st, now_ms);
    json_decref(br->snapshot);
    br->snapshot = s_snapshot_broker(st);
    int rc = br->snapshot ? 0 : -1;
    rc |= s_snapshot_queues(self, b, st, now_ms);
    rc |= s_snapshot_workers(self, b, st, now_ms);
    rc |= s_prune_running(self, b);
    /* Synced only when all of it was applied; else ask again. */
    br->synced = rc == 0;
    br->want_snapshot = rc != 0 && br->clients_ep != NULL;
    return rc;
}
