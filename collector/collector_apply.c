/* collector_apply - applies one broker event to the live state: worker
 * events to the worker list, queue events to pause flags, job events to
 * rates, totals, latencies, running jobs and (while the broker is synced)
 * queue depths.
 *
 * This runs for every event the brokers publish, so it does no more than
 * a few hash lookups and adds no allocation beyond a new queue, type,
 * series, worker or running job (and, for a worker event, decoding its
 * body: queue names, the metrics' arrays). When such an allocation fails
 * the event is applied as far as it can be, the broker is marked unsynced
 * and wants a snapshot (which repairs depths and the worker list), and the
 * caller is told so it can log it.
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
    if (d->queued > 0) {
        if (--d->queued == 0)
            d->oldest_ready_ms = 0;
    } else {
        s_dec(&d->scheduled);
    }
}

/* A job became queued at now_ms; into an empty queue it is the oldest. */
static void
s_depth_enqueue(collector_depth_t *d, int64_t now_ms)
{
    if (d->queued++ == 0 || !d->oldest_ready_ms)
        d->oldest_ready_ms = now_ms;
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

/* worker.joined or worker.heartbeat: the body (a dv_workerinfo_t, with
 * the heartbeat's metrics in it) fills the worker. A body that does not
 * decode is ignored; -1 when out of memory. */
static int
s_worker_body(collector_worker_t *w, const dv_event_t *ev)
{
    if (!ev->body.ptr || !ev->body.len)
        return 0;
    dv_workerinfo_t wi;
    int rc = dv_workerinfo_decode(ev->body.ptr, ev->body.len, &wi, NULL, 0);
    if (rc == DV_OK)
        rc = collector_state_worker_fill(w, &wi, true);
    else
        rc = rc == DV_ENOMEM ? -1 : 0;
    dv_workerinfo_release(&wi);
    return rc;
}

static int
s_on_worker_event(collector_state_t *self, int b, const dv_event_t *ev,
                  int64_t now_ms)
{
    char name[DV_NAME_MAX + 1];
    if (!ev->worker.ptr)
        return 0;
    dv_str_copy(ev->worker, name, sizeof name);
    const dv_event_kind_t k = ev->kind_enum;
    bool joined = k == DV_EV_WORKER_JOINED;
    bool beat = k == DV_EV_WORKER_HEARTBEAT;
    collector_worker_t *w =
        collector_state_worker(self, b, name, joined || beat);
    if (!w)
        return joined || beat ? -1 : 0;
    int rc = 0;
    w->last_seen_ms = now_ms;
    switch (k) {
    case DV_EV_WORKER_JOINED:
    case DV_EV_WORKER_HEARTBEAT:
        rc = s_worker_body(w, ev);
        if (joined) {
            w->joined_ms = ev->ts_ms ? ev->ts_ms : now_ms;
            w->state = COLLECTOR_W_ONLINE;
        } else if (w->state == COLLECTOR_W_LEFT ||
                   w->state == COLLECTOR_W_EXPIRED) {
            w->state = COLLECTOR_W_ONLINE; /* it came back */
        }
        if (!w->joined_ms)
            w->joined_ms = now_ms;
        break;
    case DV_EV_WORKER_DRAINING:
        w->state = COLLECTOR_W_DRAINING;
        break;
    case DV_EV_WORKER_LEFT:
    case DV_EV_WORKER_EXPIRED:
        w->state =
            k == DV_EV_WORKER_LEFT ? COLLECTOR_W_LEFT : COLLECTOR_W_EXPIRED;
        w->gone_ms = now_ms;
        w->running = 0;
        w->busy = 0;
        break;
    default: /* a kind this side does not know: the worker was heard */
        break;
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
        else if (ev->state == DV_STATE_WAITING)
            c->d->waiting++; /* not queued until job.released */
        else
            s_depth_enqueue(c->d, now_ms);
    }
}

/* job.released: a waiting job became queued or scheduled. */
static void
s_on_released(const s_job_ctx_t *c, const dv_event_t *ev, int64_t now_ms)
{
    if (!c->d)
        return;
    s_dec(&c->d->waiting);
    if (ev->state == DV_STATE_SCHEDULED)
        c->d->scheduled++;
    else
        s_depth_enqueue(c->d, now_ms);
}

/* An attempt started: its wait in the latencies, the job from waiting to
 * running in its queue's depth. */
static void
s_start_counts(const s_job_ctx_t *c, const dv_event_t *ev, int64_t now_ms)
{
    if (c->q)
        collector_stats_lat_record(&c->q->wait, now_ms, ev->wait_ms);
    if (c->t)
        collector_stats_lat_record(&c->t->wait, now_ms, ev->wait_ms);
    if (c->s)
        collector_stats_prom_record(&c->s->wait, ev->wait_ms);
    if (c->d && c->d->prefetched > 0) {
        c->d->prefetched--;
    } else if (c->d) {
        s_depth_unwait(c->d);
        c->d->running++;
    }
}

static int
s_on_started(collector_state_t *self, int b, const s_job_ctx_t *c,
             const dv_event_t *ev, int64_t now_ms)
{
    int rc = 0;
    s_start_counts(c, ev, now_ms);
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
    if (!ok && c->q) {
        dv_category_t cat =
            ev->has_failure ? ev->failure.category : DV_CAT_NONE;
        c->q->failures[cat < DV_CAT_COUNT_ ? cat : DV_CAT_NONE]++;
    }
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
        else if (ev->was == DV_STATE_WAITING)
            s_dec(&c->d->waiting);
        else
            s_depth_unwait(c->d);
    }
}

static int
s_on_queue_event(collector_broker_t *br, collector_queue_t *q, int b,
                 dv_event_kind_t k)
{
    if (q) {
        q->per[b].present = true;
        if (k == DV_EV_QUEUE_PAUSED)
            q->per[b].paused = true;
        else if (k == DV_EV_QUEUE_RESUMED)
            q->per[b].paused = false;
    }
    if (k == DV_EV_QUEUE_LIMITS && br->clients_ep)
        br->want_snapshot = true; /* the event does not carry them */
    return 0;
}

static int
s_on_job_event(collector_state_t *self, int b, s_job_ctx_t *c,
               const dv_event_t *ev, const char *qname, int64_t now_ms,
               int64_t *run_ms)
{
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
    switch (ev->kind_enum) {
    case DV_EV_JOB_SUBMITTED:
        s_on_submitted(self, c, ev, now_ms);
        break;
    case DV_EV_JOB_STARTED:
        rc |= s_on_started(self, b, c, ev, now_ms);
        break;
    case DV_EV_JOB_PROGRESS:
        rc |= s_on_progress(self, b, ev);
        break;
    case DV_EV_JOB_SUCCEEDED:
    case DV_EV_JOB_FAILED:
        /* A success that carries its start had no job.started. */
        if (ev->kind_enum == DV_EV_JOB_SUCCEEDED && ev->started_ms > 0)
            s_start_counts(c, ev, now_ms);
        *run_ms = s_on_attempt_end(self, b, c, ev, now_ms,
                                   ev->kind_enum == DV_EV_JOB_SUCCEEDED);
        break;
    case DV_EV_JOB_DEAD:
    case DV_EV_JOB_CANCELLED:
        s_on_job_end(self, c, ev, now_ms, ev->kind_enum == DV_EV_JOB_DEAD);
        break;
    case DV_EV_JOB_RETRIED:
        s_count(c, COLLECTOR_OUT_RETRIED);
        if (c->d)
            s_depth_enqueue(c->d, now_ms);
        break;
    case DV_EV_JOB_RELEASED:
        s_on_released(c, ev, now_ms);
        break;
    default: /* a job kind this side does not know: its queue, type and
                series are made, nothing is counted */
        break;
    }
    return rc;
}

void
collector_schedules_apply(collector_state_t *self, const dv_event_t *ev)
{
    if (!dv_str_eq(ev->kind, "schedule.fired") || !ev->body.len)
        return;
    json_t *body = dv_msgpack_to_json(ev->body.ptr, ev->body.len, NULL, 0);
    const char *name = json_string_value(json_object_get(body, "schedule"));
    json_t *lag = json_object_get(body, "lag_ms");
    if (name && name[0] && strlen(name) <= DV_NAME_MAX &&
        json_is_integer(lag)) {
        collector_schedule_t *s = dv_map_get(self->schedules, name);
        if (!s && dv_map_size(self->schedules) < COLLECTOR_SCHEDULES_MAX) {
            size_t n = strlen(name) + 1;
            s = calloc(1, sizeof *s + n);
            if (s) {
                memcpy(s->name, name, n);
                if (dv_map_put(self->schedules, s->name, s) != 0) {
                    free(s);
                    s = NULL;
                }
            }
        }
        if (s) {
            s->lag_ms = json_integer_value(lag);
            s->firings++;
        }
    }
    json_decref(body);
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
    collector_keys_apply(self, b, ev, now_ms);
    collector_schedules_apply(self, ev);
    collector_ev_family_t fam = collector_event_family(ev);
    if (fam == COLLECTOR_EV_WORKER) {
        rc = s_on_worker_event(self, b, ev, now_ms);
    } else {
        char qname[DV_NAME_MAX + 1] = "";
        if (ev->queue.ptr)
            dv_str_copy(ev->queue, qname, sizeof qname);
        s_job_ctx_t c = { 0 };
        if (qname[0] && !(c.q = collector_state_queue(self, qname)))
            rc = -1;
        c.d = c.q && br->synced ? &c.q->per[b] : NULL;
        if (fam == COLLECTOR_EV_QUEUE)
            rc |= s_on_queue_event(br, c.q, b, ev->kind_enum);
        else if (fam == COLLECTOR_EV_JOB && ev->id.ptr)
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

int
collector_state_backfill(collector_state_t *self, int b, const dv_event_t *ev,
                         int64_t now_ms)
{
    char qname[DV_NAME_MAX + 1] = "";
    if (ev->queue.ptr)
        dv_str_copy(ev->queue, qname, sizeof qname);
    s_job_ctx_t c = { 0 }; /* no depth: the snapshot after the gap has it */
    int rc = 0;
    if (qname[0] && !(c.q = collector_state_queue(self, qname)))
        rc = -1;
    int64_t run = 0;
    rc |= s_on_job_event(self, b, &c, ev, qname, now_ms, &run);
    return rc;
}
