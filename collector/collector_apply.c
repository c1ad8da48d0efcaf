/* collector_apply - applies one broker event to the live state: worker
 * events to the worker list, queue events to pause flags, job events to
 * rates, totals, latencies, running jobs and (while the broker is synced)
 * queue depths.
 *
 * This runs for every event the brokers publish, so it does no more than
 * a few hash lookups and adds no allocation beyond a new queue, type,
 * series, worker or running job (and a heartbeat's body). When such an
 * allocation fails the event is applied as far as it can be, the broker
 * is marked unsynced and wants a snapshot (which repairs depths and the
 * worker list), and the caller is told so it can log it.
 */
#include <stdlib.h>
#include <string.h>

#include "collector_internal.h"
#include "dv_json.h"

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
s_depth_unwait(collector_depth_t *d)
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

/* Replaces *dst with a copy of v, unless v is empty. Returns 0, or -1 when
 * out of memory (*dst is kept). */
static int
s_str_set(char **dst, dv_str_t v)
{
    if (!v.ptr || !v.len)
        return 0;
    char *copy = dv_str_dup(v);
    if (!copy)
        return -1;
    free(*dst);
    *dst = copy;
    return 0;
}

static int
s_on_worker_event(collector_state_t *self, int b, const dv_event_t *ev,
                  int64_t now_ms)
{
    char name[DV_NAME_MAX + 1];
    if (!ev->worker.ptr)
        return 0;
    dv_str_copy(ev->worker, name, sizeof name);
    const dv_str_t k = ev->kind;
    bool joined = dv_str_eq(k, "worker.joined");
    bool beat = dv_str_eq(k, "worker.heartbeat");
    collector_worker_t *w =
        collector_state_worker(self, b, name, joined || beat);
    if (!w)
        return joined || beat ? -1 : 0;
    int rc = 0;
    w->last_seen_ms = now_ms;
    if (joined || beat) {
        json_t *body = s_body(ev);
        if (body)
            rc = collector_state_worker_fill(w, body);
        json_decref(body);
        if (joined) {
            w->joined_ms = ev->ts_ms ? ev->ts_ms : now_ms;
            w->state = COLLECTOR_W_ONLINE;
        } else if (w->state == COLLECTOR_W_LEFT ||
                   w->state == COLLECTOR_W_EXPIRED) {
            w->state = COLLECTOR_W_ONLINE; /* it came back */
        }
        if (!w->joined_ms)
            w->joined_ms = now_ms;
    } else if (dv_str_eq(k, "worker.draining")) {
        w->state = COLLECTOR_W_DRAINING;
    } else if (dv_str_eq(k, "worker.left") || dv_str_eq(k, "worker.expired")) {
        w->state = dv_str_eq(k, "worker.left") ? COLLECTOR_W_LEFT
                                               : COLLECTOR_W_EXPIRED;
        w->gone_ms = now_ms;
        w->running = 0;
        w->busy = 0;
    }
    return rc;
}

static void
s_drop_run(collector_state_t *self, const dv_event_t *ev)
{
    char id[DV_ID_TEXT_LEN + 1];
    dv_str_copy(ev->id, id, sizeof id);
    dv_map_delete(self->running, id);
}

/* What one job event touches: its queue, type and series (each NULL if
 * the event has none, or it could not be made), and the queue's depth on
 * this broker (NULL unless the broker is synced). */
typedef struct {
    collector_queue_t *q;
    collector_type_t *t;
    collector_series_t *s;
    collector_depth_t *d;
} s_job_ctx_t;

static void
s_count(const s_job_ctx_t *c, int outcome)
{
    if (c->q)
        c->q->totals[outcome]++;
    if (c->t)
        c->t->totals[outcome]++;
    if (c->s)
        c->s->totals[outcome]++;
}

/* Counts a rate kind over all queues and in the event's queue. */
static void
s_rate(collector_state_t *self, const s_job_ctx_t *c, int64_t now_ms, int kind)
{
    collector_stats_ring_add(self->ring, now_ms, kind);
    if (c->q)
        collector_stats_ring_add(&c->q->ring, now_ms, kind);
}

static void
s_on_submitted(collector_state_t *self, const s_job_ctx_t *c,
               const dv_event_t *ev, int64_t now_ms)
{
    s_rate(self, c, now_ms, COLLECTOR_RATE_SUBMITTED);
    s_count(c, COLLECTOR_OUT_SUBMITTED);
    if (c->d) {
        if (ev->state == DV_STATE_SCHEDULED)
            c->d->scheduled++;
        else
            c->d->queued++;
    }
}

static int
s_on_started(collector_state_t *self, int b, const s_job_ctx_t *c,
             const dv_event_t *ev, int64_t now_ms)
{
    int rc = 0;
    if (c->q)
        collector_stats_lat_record(&c->q->wait, now_ms, ev->wait_ms);
    if (c->t)
        collector_stats_lat_record(&c->t->wait, now_ms, ev->wait_ms);
    if (c->s)
        collector_stats_prom_record(&c->s->wait, ev->wait_ms);
    collector_run_t *r = collector_state_run(self, b, ev, true);
    if (r) {
        r->attempt = ev->attempt;
        r->started_ms = ev->ts_ms ? ev->ts_ms : now_ms;
        r->current = r->total = 0;
        free(r->message);
        r->message = NULL;
        rc |= s_str_set(&r->worker, ev->worker);
        rc |= s_str_set(&r->batch, ev->batch);
    } else {
        rc = -1;
    }
    if (c->d && c->d->prefetched > 0) {
        c->d->prefetched--;
    } else if (c->d) {
        s_depth_unwait(c->d);
        c->d->running++;
    }
    return rc;
}

static int
s_on_progress(collector_state_t *self, int b, const dv_event_t *ev)
{
    collector_run_t *r = collector_state_run(self, b, ev, true);
    if (!r)
        return -1;
    r->attempt = ev->attempt;
    r->current = ev->current;
    r->total = ev->total;
    return s_str_set(&r->message, ev->message) |
           s_str_set(&r->worker, ev->worker);
}

/* job.succeeded or job.failed: the attempt ended. Returns its run time. */
static int64_t
s_on_attempt_end(collector_state_t *self, int b, const s_job_ctx_t *c,
                 const dv_event_t *ev, int64_t now_ms, bool ok)
{
    collector_run_t *r = collector_state_run(self, b, ev, false);
    int64_t run_ms = ev->run_ms;
    if (!run_ms && r && r->started_ms && ev->ts_ms >= r->started_ms)
        run_ms = ev->ts_ms - r->started_ms;
    if (run_ms > 0 || r) {
        if (c->q)
            collector_stats_lat_record(&c->q->run, now_ms, run_ms);
        if (c->t)
            collector_stats_lat_record(&c->t->run, now_ms, run_ms);
        if (c->s)
            collector_stats_prom_record(&c->s->run, run_ms);
    }
    s_rate(self, c, now_ms,
           ok ? COLLECTOR_RATE_SUCCEEDED : COLLECTOR_RATE_FAILED);
    s_count(c, ok ? COLLECTOR_OUT_SUCCEEDED : COLLECTOR_OUT_FAILED);
    s_drop_run(self, ev);
    if (c->d) {
        if (ok) {
            s_dec(&c->d->running);
        } else if (ev->state == DV_STATE_SCHEDULED) {
            s_dec(&c->d->running);
            c->d->scheduled++;
        }
        /* failed and dead: job.dead follows and takes it off. */
    }
    return run_ms;
}

/* job.dead or job.cancelled: the job ended without success. */
static void
s_on_job_end(collector_state_t *self, const s_job_ctx_t *c,
             const dv_event_t *ev, int64_t now_ms, bool dead)
{
    if (dead)
        s_rate(self, c, now_ms, COLLECTOR_RATE_DEAD);
    s_count(c, dead ? COLLECTOR_OUT_DEAD : COLLECTOR_OUT_CANCELLED);
    s_drop_run(self, ev);
    if (c->d) {
        if (ev->worker.ptr && ev->worker.len)
            s_dec(&c->d->running);
        else
            s_depth_unwait(c->d);
    }
}

static int
s_on_queue_event(collector_broker_t *br, collector_queue_t *q, int b,
                 dv_str_t k)
{
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

static int
s_on_job_event(collector_state_t *self, int b, s_job_ctx_t *c,
               const dv_event_t *ev, const char *qname, int64_t now_ms,
               int64_t *run_ms)
{
    const dv_str_t k = ev->kind;
    int rc = 0;
    char tname[DV_NAME_MAX + 1] = "";
    if (ev->type.ptr)
        dv_str_copy(ev->type, tname, sizeof tname);
    if (c->d)
        c->d->present = true;
    if (tname[0] && !(c->t = collector_state_type(self, tname)))
        rc = -1;
    if (qname[0] && tname[0] &&
        !(c->s = collector_state_series(self, qname, tname)))
        rc = -1;
    if (dv_str_eq(k, "job.submitted"))
        s_on_submitted(self, c, ev, now_ms);
    else if (dv_str_eq(k, "job.started"))
        rc |= s_on_started(self, b, c, ev, now_ms);
    else if (dv_str_eq(k, "job.progress"))
        rc |= s_on_progress(self, b, ev);
    else if (dv_str_eq(k, "job.succeeded") || dv_str_eq(k, "job.failed"))
        *run_ms = s_on_attempt_end(self, b, c, ev, now_ms,
                                   dv_str_eq(k, "job.succeeded"));
    else if (dv_str_eq(k, "job.dead") || dv_str_eq(k, "job.cancelled"))
        s_on_job_end(self, c, ev, now_ms, dv_str_eq(k, "job.dead"));
    else if (dv_str_eq(k, "job.retried")) {
        s_count(c, COLLECTOR_OUT_RETRIED);
        if (c->d)
            c->d->queued++;
    }
    return rc;
}

int
collector_state_apply(collector_state_t *self, int b, const dv_event_t *ev,
                      int64_t now_ms, int64_t *run_ms)
{
    collector_broker_t *br = &self->brokers[b];
    int64_t run = 0;
    int rc = 0;
    br->events++;
    br->last_event_ms = now_ms;
    const dv_str_t k = ev->kind;
    if (k.len > 7 && memcmp(k.ptr, "worker.", 7) == 0) {
        rc = s_on_worker_event(self, b, ev, now_ms);
    } else {
        char qname[DV_NAME_MAX + 1] = "";
        if (ev->queue.ptr)
            dv_str_copy(ev->queue, qname, sizeof qname);
        s_job_ctx_t c = { 0 };
        if (qname[0] && !(c.q = collector_state_queue(self, qname)))
            rc = -1;
        c.d = c.q && br->synced ? &c.q->per[b] : NULL;
        if (k.len > 6 && memcmp(k.ptr, "queue.", 6) == 0)
            rc |= s_on_queue_event(br, c.q, b, k);
        else if (k.len >= 4 && memcmp(k.ptr, "job.", 4) == 0 && ev->id.ptr)
            rc |= s_on_job_event(self, b, &c, ev, qname, now_ms, &run);
    }
    if (rc) {
        /* Something was not recorded: a snapshot repairs what it can. */
        br->synced = false;
        br->want_snapshot = br->clients_ep != NULL;
    }
    if (run_ms)
        *run_ms = run;
    return rc;
}
