/* broker_sched - scheduling: where each live job is, and who runs it next.
 *
 * Owns the job life cycle in memory and the store writes that record it:
 * place (ready FIFO or timer heap) and unplace, lease to a worker, finish
 * (terminal: recorded, event, kept until the group is durable), fail
 * (retried after backoff, or dead), and dispatch: ready jobs go to workers
 * with credit, one job per worker per round so that load spreads, each
 * worker's queues taken round-robin, each queue within its limits (paused,
 * fleet-wide max-running, token-bucket rate). Due timers are promoted here.
 *
 * Called by the worker protocol, client API, control verbs and recovery,
 * and by the loop once per pass (promote_due, dispatch). Never blocks and
 * does no I/O: store writes go into the current group (self->cur->wb),
 * events into its output, jobs for workers onto the worker's out list,
 * which broker_group.c sends at the end of the pass.
 *
 * Invariants: a worker never gets more jobs than its credit; while a
 * worker with credit serves a queue that may start a job, dispatch does not
 * leave that queue's ready jobs waiting; a job that cannot be put on a
 * worker's out list (out of memory) is not leased: it goes back to the
 * front of its queue, the worker's credit unchanged, and dispatch runs
 * again shortly.
 *
 * Time comes from broker_now_ms/broker_mono_us, so tests drive it with a
 * fake clock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "dv_backoff.h"
#include "dv_log.h"

/* After an allocation failure, dispatch runs again this much later (not at
 * once: that would spin while memory is short). */
#define BROKER_RETRY_US 10000

/* Has the loop run dispatch again at now_us + BROKER_RETRY_US at the
 * latest. */
static void
s_retry_soon(broker_t *self, int64_t now_us)
{
    int64_t at = now_us + BROKER_RETRY_US;
    if (!self->next_token_us || at < self->next_token_us)
        self->next_token_us = at;
}

const char *
broker_sched_intern(broker_t *self, dv_str_t name)
{
    if (!name.ptr || !name.len)
        return NULL;
    char buf[DV_NAME_MAX + 1];
    dv_str_copy(name, buf, sizeof buf);
    const char *s = dv_map_get(self->types, buf);
    if (s)
        return s;
    char *copy = strdup(buf);
    if (!copy)
        return NULL;
    if (dv_map_put(self->types, copy, copy) != 0) {
        free(copy);
        return NULL;
    }
    return copy;
}

int
broker_sched_owner(broker_t *self, const char *name)
{
    if (!name || !name[0])
        return 0;
    const broker_owner_t *o = dv_map_get(self->owner_ix, name);
    if (o)
        return o->ix;
    if (self->nowners == UINT16_MAX)
        return -1;
    if (self->nowners == self->owners_cap) {
        size_t ncap = self->owners_cap ? self->owners_cap * 2 : 16;
        const char **n = realloc(self->owners, ncap * sizeof *n);
        if (!n)
            return -1;
        self->owners = n;
        self->owners_cap = ncap;
    }
    size_t len = strlen(name);
    broker_owner_t *e = malloc(sizeof *e + len + 1);
    if (!e)
        return -1;
    e->ix = (uint16_t)(self->nowners + 1);
    memcpy(e->name, name, len + 1);
    /* Keyed by the name the entry holds. */
    if (dv_map_put(self->owner_ix, e->name, e) != 0) {
        free(e);
        return -1;
    }
    self->owners[self->nowners++] = e->name;
    return e->ix;
}

const char *
broker_sched_owner_name(const broker_t *self, uint16_t ix)
{
    return ix && ix <= self->nowners ? self->owners[ix - 1] : NULL;
}

broker_queue_t *
broker_sched_queue(broker_t *self, const char *name)
{
    broker_queue_t *q = dv_map_get(self->queues, name);
    if (!q) {
        q = broker_queue_new(name);
        /* Keyed by the name the queue holds. */
        if (q && dv_map_put(self->queues, q->name, q) != 0)
            broker_queue_destroy(&q);
    }
    return q;
}

void
broker_sched_place(broker_t *self, broker_job_t *job, bool front)
{
    int64_t now = broker_now_ms(self);
    if (job->run_at_ms > now && broker_heap_push(&self->timers, job) == 0) {
        job->state = DV_STATE_SCHEDULED;
        job->queue->scheduled++;
    } else {
        if (job->run_at_ms > now) /* the heap could not grow */
            dv_log(DV_ERROR, "broker.schedule_failed",
                   DV_STR("queue", job->queue->name),
                   DV_STR("error", "out of memory; queued now instead"));
        job->state = DV_STATE_QUEUED;
        job->ready_us = broker_mono_us(self);
        broker_queue_push(job->queue, job, front);
        self->dispatch_needed = true;
    }
}

void
broker_sched_unplace(broker_t *self, broker_job_t *job)
{
    if (job->flags & BROKER_JOB_LIMBO) {
        broker_list_remove(&self->limbo, job);
        job->flags &= (uint8_t)~BROKER_JOB_LIMBO;
        job->state = DV_STATE_NONE;
        return;
    }
    switch (job->state) {
    case DV_STATE_QUEUED:
        broker_queue_remove(job->queue, job);
        break;
    case DV_STATE_SCHEDULED:
        broker_heap_remove(&self->timers, job);
        job->queue->scheduled--;
        break;
    case DV_STATE_WAITING:
        job->queue->waiting--;
        break;
    case DV_STATE_RUNNING:
        if (job->worker) {
            broker_list_remove(&job->worker->running, job);
            job->worker = NULL;
        }
        job->queue->running--;
        if (job->queue->max_running)
            self->dispatch_needed = true; /* a slot under the limit opened */
        break;
    default:
        break;
    }
    job->state = DV_STATE_NONE;
}

/* f without what stays with the attempt (details, stderr tail). */
static dv_failure_t
s_public(const dv_failure_t *f)
{
    dv_failure_t p = *f;
    p.details = (dv_str_t){ 0 };
    p.stderr_tail = (dv_str_t){ 0 };
    return p;
}

void
broker_sched_finish(broker_t *self, broker_job_t *job, dv_state_t state,
                    const void *result, size_t result_len,
                    const dv_failure_t *failure)
{
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    broker_worker_t *worker = job->worker;
    const char *worker_name = worker ? worker->name : NULL;
    char wname[DV_NAME_MAX + 1] = "";
    if (worker_name)
        snprintf(wname, sizeof wname, "%s", worker_name);
    int64_t now = broker_now_ms(self);
    int64_t run_ms =
        job->state == DV_STATE_RUNNING && (job->flags & BROKER_JOB_STARTED)
            ? now - job->started_ms
            : 0;
    bool waited = job->state == DV_STATE_WAITING;
    broker_sched_unplace(self, job);
    /* It stays in the index, terminal, until its group is durable: a wait
     * that comes in meanwhile still finds it. */
    job->state = (uint8_t)state;
    /* Who ran it and when it started go with the outcome: if its lease was
     * not written yet, this is the job's only write since its insert. */
    int64_t started =
        (job->flags & BROKER_JOB_STARTED) && worker_name ? job->started_ms : 0;
    if (broker_wbatch_finished(&self->cur->wb, id, state, job->attempt,
                               wname[0] ? wname : NULL, started, result,
                               result_len, failure, now) != 0)
        broker_write_lost(self);

    dv_event_t ev = { 0 };
    ev.state = state;
    ev.worker = wname[0] ? dv_str(wname) : (dv_str_t){ 0 };
    ev.run_ms = run_ms;
    if (self->fold_start == job && started) {
        /* No job.started was published: this event carries the start. */
        ev.started_ms = started;
        ev.wait_ms = self->fold_wait_ms;
    }
    if (waited)
        ev.was = DV_STATE_WAITING; /* the collector's depths */
    if (failure) {
        ev.has_failure = true;
        ev.failure = s_public(failure);
    }
    dv_event_kind_t kind = state == DV_STATE_SUCCEEDED ? DV_EV_JOB_SUCCEEDED
                           : state == DV_STATE_DEAD    ? DV_EV_JOB_DEAD
                                                       : DV_EV_JOB_CANCELLED;
    broker_out_job_event(self, kind, job, &ev);
    broker_batch_ended(self, job, state);
    broker_deps_ended(self, job, state);
    if (state == DV_STATE_SUCCEEDED)
        self->counters.succeeded++;
    else if (state == DV_STATE_DEAD)
        self->counters.dead++;
    else
        self->counters.cancelled++;

    dv_arena_t *arena = &self->cur->ended_arena;
    broker_ended_t *e = dv_arena_alloc(arena, sizeof *e);
    if (e)
        memset(e, 0, sizeof *e);
    if (!e) {
        /* Its waiters cannot be told: say so, and forget it now. */
        for (broker_waiter_t *wt = job->waiters; wt; wt = wt->next) {
            broker_rid_t rid = { .len = wt->len };
            memcpy(rid.data, wt->rid, wt->len);
            broker_out_dropped(&rid, 0, "result");
        }
        broker_index_del(&self->index, job);
        broker_job_destroy(&job);
        return;
    }
    e->job = job;
    e->state = state;
    e->finished_ms = now;
    if (result_len) { /* a late waiter may still ask for it */
        e->result = dv_arena_alloc(arena, result_len);
        if (e->result) {
            memcpy(e->result, result, result_len);
            e->result_len = result_len;
        } else {
            e->incomplete = true;
        }
    }
    if (failure) {
        e->has_failure = true;
        e->failure = s_public(failure);
        size_t ml = failure->message.len, kl = failure->key_id.len;
        e->msg = dv_arena_alloc(arena, ml + kl + 2);
        if (e->msg) {
            memcpy(e->msg, failure->message.ptr ? failure->message.ptr : "",
                   ml);
            e->msg[ml] = '\0';
            memcpy(e->msg + ml + 1,
                   failure->key_id.ptr ? failure->key_id.ptr : "", kl);
            e->msg[ml + 1 + kl] = '\0';
            e->failure.message =
                failure->message.ptr ? dv_strn(e->msg, ml) : (dv_str_t){ 0 };
            e->failure.key_id = failure->key_id.ptr
                                    ? dv_strn(e->msg + ml + 1, kl)
                                    : (dv_str_t){ 0 };
        } else {
            e->failure.message = (dv_str_t){ 0 };
            e->failure.key_id = (dv_str_t){ 0 };
            e->incomplete = true;
        }
    }
    *self->cur->ended_tail = e;
    self->cur->ended_tail = &e->next;
}

static void
s_record_attempt(broker_t *self, broker_job_t *job, const char *worker,
                 dv_state_t outcome, const dv_failure_t *failure)
{
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    broker_attempt_t a = {
        .job_id = id,
        .attempt = job->attempt,
        .worker = worker,
        .started_ms = (job->flags & BROKER_JOB_STARTED) ? job->started_ms : 0,
        .finished_ms = broker_now_ms(self),
        .outcome = outcome,
        .failure = failure,
    };
    if (broker_wbatch_attempt(&self->cur->wb, &a) != 0)
        broker_write_lost(self);
}

/* A failure's details or stderr tail that is not text (not UTF-8, or
 * holding a NUL) is dropped, the failure kept: it could not be shown or
 * rendered as JSON later. Empty ones are absent. */
static void
s_check_texts(const broker_job_t *job, dv_failure_t *f)
{
    dv_str_t *texts[] = { &f->details, &f->stderr_tail };
    static const char *names[] = { "details", "stderr" };
    for (int i = 0; i < 2; i++) {
        dv_str_t *t = texts[i];
        if (!t->ptr || !t->len) {
            *t = (dv_str_t){ 0 };
            continue;
        }
        if (dv_text_valid(t->ptr, t->len))
            continue;
        char id[DV_ID_TEXT_LEN + 1];
        broker_id_text(job, id);
        dv_log(DV_WARN, "broker.failure_text_dropped", DV_STR("job", id),
               DV_STR("field", names[i]),
               DV_STR("reason", "not valid UTF-8 text"));
        *t = (dv_str_t){ 0 };
    }
}

void
broker_sched_fail(broker_t *self, broker_job_t *job,
                  const dv_failure_t *failure_in)
{
    /* The details and stderr tail go with the attempt only; events, the
     * job's last failure and results get the rest. */
    dv_failure_t kept = *failure_in;
    s_check_texts(job, &kept);
    dv_failure_t pub = s_public(failure_in);
    const dv_failure_t *failure = &pub;
    char wname[DV_NAME_MAX + 1] = "";
    if (job->worker)
        snprintf(wname, sizeof wname, "%s", job->worker->name);
    s_record_attempt(self, job, wname[0] ? wname : NULL, DV_STATE_FAILED,
                     &kept);
    self->counters.failed++;
    if (failure->category == DV_CAT_LOST)
        self->counters.lost++;

    bool retry = failure->retryable && job->attempt < job->max_attempts &&
                 failure->category != DV_CAT_CANCELLED;
    dv_event_t ev = { 0 };
    ev.has_failure = true;
    ev.failure = *failure;
    ev.worker = wname[0] ? dv_str(wname) : (dv_str_t){ 0 };
    if (!retry) {
        ev.state = DV_STATE_DEAD;
        broker_out_job_event(self, DV_EV_JOB_FAILED, job, &ev);
        broker_sched_finish(self, job, DV_STATE_DEAD, NULL, 0, failure);
        return;
    }
    broker_sched_unplace(self, job);
    dv_backoff_t b = { job->backoff_base_ms, job->backoff_factor,
                       job->backoff_cap_ms,
                       (job->flags & BROKER_JOB_JITTER) != 0 };
    int64_t delay = dv_backoff_delay(&b, job->attempt, failure->retry_after_ms,
                                     dv_rand01());
    job->run_at_ms = broker_now_ms(self) + delay;
    broker_sched_place(self, job, false);
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    if (broker_wbatch_waiting(&self->cur->wb, id, job->state, job->run_at_ms,
                              job->attempt, failure) != 0)
        broker_write_lost(self);
    self->counters.retried++;
    ev.state = job->state;
    ev.run_at_ms = job->run_at_ms;
    broker_out_job_event(self, DV_EV_JOB_FAILED, job, &ev);
}

void
broker_sched_lease(broker_t *self, broker_job_t *job, broker_worker_t *w,
                   uint64_t lease)
{
    if (!lease) {
        job->attempt++;
        lease = dv_lease_make(self->generation, ++self->lease_seq);
    }
    job->lease = lease;
    job->state = DV_STATE_RUNNING;
    job->worker = w;
    job->flags &= (uint8_t)~BROKER_JOB_STARTED; /* ready_us stays: wait time */
    job->queue->running++;
    broker_list_add(&w->running, job);
    /* The row write waits for the seal of the group: most fast jobs end
     * before it, and their outcome's write then carries the lease. */
    if (self->nleases == self->leases_cap) {
        size_t ncap = self->leases_cap ? self->leases_cap * 2 : 256;
        broker_lease_note_t *n = realloc(self->leases, ncap * sizeof *n);
        if (!n) {
            char id[DV_ID_TEXT_LEN + 1];
            broker_id_text(job, id);
            if (broker_wbatch_running(&self->cur->wb, id, job->attempt, w->name,
                                      broker_now_ms(self)) != 0)
                broker_write_lost(self);
            return;
        }
        self->leases = n;
        self->leases_cap = ncap;
    }
    self->leases[self->nleases++] = (broker_lease_note_t){
        .id = job->id, .lease = lease, .at_ms = broker_now_ms(self)
    };
}

void
broker_sched_write_leases(broker_t *self)
{
    for (size_t i = 0; i < self->nleases; i++) {
        const broker_lease_note_t *n = &self->leases[i];
        broker_job_t *job = broker_index_get(&self->index, &n->id);
        if (!job || job->state != DV_STATE_RUNNING || job->lease != n->lease ||
            !job->worker)
            continue;
        char id[DV_ID_TEXT_LEN + 1];
        broker_id_text(job, id);
        if (broker_wbatch_running(&self->cur->wb, id, job->attempt,
                                  job->worker->name, n->at_ms) != 0)
            broker_write_lost(self);
    }
    self->nleases = 0;
}

/* Queues job to be sent to w at the end of the pass; w joins the list of
 * workers with jobs to send. Returns 0, or -1 (out of memory: nothing
 * changed). */
static int
s_out_add(broker_t *self, broker_worker_t *w, broker_job_t *job)
{
    if (w->out_count == w->out_cap) {
        uint32_t ncap = w->out_cap ? w->out_cap * 2 : 16;
        broker_job_t **n = realloc(w->out, ncap * sizeof *n);
        if (!n)
            return -1;
        w->out = n;
        w->out_cap = ncap;
    }
    if (w->out_count == 0) {
        if (self->noutq == self->outq_cap) {
            size_t ncap = self->outq_cap ? self->outq_cap * 2 : 16;
            broker_worker_t **n = realloc(self->outq, ncap * sizeof *n);
            if (!n)
                return -1;
            self->outq = n;
            self->outq_cap = ncap;
        }
        self->outq[self->noutq++] = w;
    }
    w->out[w->out_count++] = job;
    return 0;
}

/* Whether q may start one more job now: not paused, under its fleet-wide
 * running limit, and a token in its rate bucket (refilled here). When only
 * the rate holds it back, notes when the next token comes so the loop wakes
 * then. */
static bool
s_queue_can_start(broker_t *self, broker_queue_t *q, int64_t now_us)
{
    if (q->paused)
        return false;
    if (q->max_running && q->running >= q->max_running)
        return false;
    if (q->rate > 0) {
        /* Burst: a tenth of a second's worth, at least one job. */
        double burst = q->rate * 0.1 < 1.0 ? 1.0 : q->rate * 0.1;
        q->tokens += (double)(now_us - q->tokens_us) * q->rate / 1e6;
        if (q->tokens > burst)
            q->tokens = burst;
        q->tokens_us = now_us;
        if (q->tokens < 1.0) {
            int64_t wait_us = (int64_t)((1.0 - q->tokens) * 1e6 / q->rate) + 1;
            if (!self->next_token_us || now_us + wait_us < self->next_token_us)
                self->next_token_us = now_us + wait_us;
            return false;
        }
    }
    return true;
}

void
broker_sched_dispatch(broker_t *self)
{
    self->dispatch_needed = false;
    self->next_token_us = 0;
    if (self->store_failed) /* no new leases while the store is down */
        return;
    int64_t now_us = broker_mono_us(self);
    bool progress = true;
    while (progress) {
        progress = false;
        broker_worker_t *w;
        DV_MAP_EACH(w, self->worker_by_name)
        {
            if (w->credit <= 0 || !w->known || w->draining)
                continue;
            broker_job_t *job = NULL;
            for (int k = 0; k < w->nqueues && !job; k++) {
                broker_queue_t *q = w->queues[(w->rr + k) % w->nqueues];
                if (!q->ready || !s_queue_can_start(self, q, now_us))
                    continue;
                job = broker_queue_pop(q);
                if (job) {
                    w->rr = (w->rr + k + 1) % w->nqueues;
                    if (q->rate > 0)
                        q->tokens -= 1.0;
                }
            }
            if (!job)
                continue;
            if (s_out_add(self, w, job) != 0) {
                /* Not leased: back first in line, credit and token kept. */
                broker_queue_push(job->queue, job, true);
                if (job->queue->rate > 0)
                    job->queue->tokens += 1.0;
                dv_log(DV_ERROR, "broker.dispatch_failed",
                       DV_STR("worker", w->name),
                       DV_STR("error", "out of memory"));
                s_retry_soon(self, now_us);
                return;
            }
            broker_sched_lease(self, job, w, 0);
            w->credit--;
            self->counters.dispatched++;
            progress = true;
        }
    }
}

void
broker_sched_unsend(broker_t *self, broker_worker_t *w)
{
    /* Last first, each to the front: they end up in their old order. */
    for (uint32_t i = w->out_count; i-- > 0;) {
        broker_job_t *job = w->out[i];
        if (job->state != DV_STATE_RUNNING || job->worker != w)
            continue;                    /* ended or moved since dispatch */
        broker_sched_unplace(self, job); /* ready_us stays: the wait goes on */
        job->attempt--;
        job->state = DV_STATE_QUEUED;
        broker_queue_push(job->queue, job, true);
        w->credit++;
        self->counters.dispatched--;
        char id[DV_ID_TEXT_LEN + 1];
        broker_id_text(job, id);
        if (broker_wbatch_waiting(&self->cur->wb, id, DV_STATE_QUEUED, 0,
                                  job->attempt, NULL) != 0)
            broker_write_lost(self);
    }
    w->out_count = 0;
    s_retry_soon(self, broker_mono_us(self));
}

void
broker_sched_promote_due(broker_t *self)
{
    int64_t now = broker_now_ms(self);
    broker_job_t *job;
    while ((job = broker_heap_peek(&self->timers)) && job->run_at_ms <= now) {
        broker_heap_pop(&self->timers);
        job->queue->scheduled--;
        job->state = DV_STATE_NONE;
        broker_sched_place(self, job, false);
    }
}
