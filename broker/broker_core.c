#include "broker_core.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "dv_clock.h"
#include "dv_log.h"

/* ---- small helpers ------------------------------------------------------- */

/* A message encoded during the pass, sent after its commit. The bytes are
 * in self->outbuf (one buffer reused pass after pass, so deferring costs no
 * allocation per message); a routing id only for replies, a topic only for
 * events. */
typedef struct broker_send {
    void *socket;
    size_t off, len;
    char topic[32];
    broker_rid_t *rid;      /* NULL for events */
} s_send_t;

/* Results pending for one client. */
typedef struct {
    broker_rid_t rid;
    dv_result_t *items;
    uint32_t n, cap;
    zlistx_t *owned;        /* buffers the items point into */
} s_results_t;

static void
s_results_destroy(void **item)
{
    s_results_t *r = *item;
    free(r->items);
    zlistx_destroy(&r->owned);
    free(r);
    *item = NULL;
}

static void
s_free_item(void **item)
{
    free(*item);
    *item = NULL;
}

static void
s_rid_hex(const broker_rid_t *rid, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < rid->len; i++) {
        out[2 * i] = hex[rid->data[i] >> 4];
        out[2 * i + 1] = hex[rid->data[i] & 15];
    }
    out[2 * rid->len] = '\0';
}

static void
s_send_raw(void *socket, const broker_rid_t *rid, const void *data,
           size_t len)
{
    if (rid && rid->len)
        zmq_send(socket, rid->data, rid->len, ZMQ_SNDMORE);
    if (zmq_send(socket, data, len, ZMQ_DONTWAIT) < 0 && errno != EAGAIN &&
        errno != EHOSTUNREACH)
        dv_log(DV_WARN, "broker.send_failed", DV_STR("error", zmq_strerror(errno)));
}

/* Encodes msg and sends it at once (not deferred to after the commit). */
static void
s_send_now(void *socket, const broker_rid_t *rid, const dv_msg_t *msg)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dv_msg_encode(msg, &sb);
    s_send_raw(socket, rid, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* Encodes msg now, sends it after this pass's commit. */
static void
s_send_later(broker_t *self, void *socket, const broker_rid_t *rid,
             const char *topic, const dv_msg_t *msg)
{
    broker_group_t *g = self->cur;
    if (g->nsends == g->sends_cap) {
        size_t ncap = g->sends_cap ? g->sends_cap * 2 : 1024;
        s_send_t *n = realloc(g->sends, ncap * sizeof *n);
        if (!n)
            return;
        g->sends = n;
        g->sends_cap = ncap;
    }
    s_send_t *snd = &g->sends[g->nsends];
    snd->socket = socket;
    snd->rid = NULL;
    if (rid) {
        snd->rid = malloc(sizeof *rid);
        if (!snd->rid)
            return;
        *snd->rid = *rid;
    }
    snd->topic[0] = '\0';
    if (topic)
        snprintf(snd->topic, sizeof snd->topic, "%s", topic);
    snd->off = g->outbuf.size;
    dv_msg_encode(msg, &g->outbuf);
    snd->len = g->outbuf.size - snd->off;
    g->nsends++;
}

static void
s_send_error(broker_t *self, void *socket, const broker_rid_t *rid,
             uint64_t req, const char *reason)
{
    dv_msg_t m = { .type = DV_MSG_ERROR };
    m.u.error.req = req;
    m.u.error.reason = dv_str(reason);
    m.u.error.version = DV_PROTO_VERSION;
    s_send_now(socket, rid, &m);
    (void)self;
}

static const char *
s_intern(broker_t *self, dv_str_t name)
{
    if (!name.ptr || !name.len)
        return NULL;
    char buf[DV_NAME_MAX + 1];
    dv_str_copy(name, buf, sizeof buf);
    const char *s = zhashx_lookup(self->types, buf);
    if (s)
        return s;
    char *copy = strdup(buf);
    if (!copy)
        return NULL;
    zhashx_insert(self->types, copy, copy);
    return copy;
}

static broker_queue_t *
s_queue(broker_t *self, const char *name)
{
    broker_queue_t *q = zhashx_lookup(self->queues, name);
    if (!q) {
        q = broker_queue_new(name);
        if (q)
            zhashx_insert(self->queues, name, q);
    }
    return q;
}

/* A store write could not even be recorded (out of memory): the group
 * must not count as durable. */
static void
s_write_lost(broker_t *self)
{
    self->cur->wb.rc = DV_ENOMEM;
}

static broker_job_t *s_job_from_rec(broker_t *self, const broker_jobrec_t *rec,
                                    int *err);

static void
s_id_text(const broker_job_t *job, char out[DV_ID_TEXT_LEN + 1])
{
    dv_id_format(&job->id, out);
}

/* ---- events -------------------------------------------------------------- */

static void
s_event(broker_t *self, dv_event_t *ev)
{
    ev->seq = ++self->event_seq;
    ev->broker = dv_str(self->instance);
    ev->ts_ms = dv_now_ms();
    dv_msg_t m = { .type = DV_MSG_EVENT };
    m.u.event = *ev;
    char topic[48];
    dv_str_copy(ev->kind, topic, sizeof topic);
    s_send_later(self, self->events, NULL, topic, &m);
}

static void
s_job_event(broker_t *self, const char *kind, const broker_job_t *job,
            dv_event_t *ev)
{
    char id[DV_ID_TEXT_LEN + 1];
    s_id_text(job, id);
    ev->kind = dv_str(kind);
    ev->id = dv_str(id);
    ev->queue = dv_str(job->queue->name);
    ev->type = dv_str(job->type);
    ev->batch = dv_str(job->batch);
    if (job->worker)
        ev->worker = dv_str(job->worker->name);
    if (!ev->attempt)
        ev->attempt = job->attempt;
    s_event(self, ev);
}

/* ---- job life cycle ------------------------------------------------------- */

/* Puts a job where its state says: ready FIFO or timer heap. */
static void
s_place(broker_t *self, broker_job_t *job, bool front)
{
    int64_t now = dv_now_ms();
    if (job->run_at_ms > now) {
        job->state = DV_STATE_SCHEDULED;
        job->queue->scheduled++;
        broker_heap_push(&self->timers, job);
    } else {
        job->state = DV_STATE_QUEUED;
        job->ready_us = dv_mono_us();
        broker_queue_push(job->queue, job, front);
        self->dispatch_needed = true;
    }
}

/* Takes a job out of whatever container holds it. */
static void
s_unplace(broker_t *self, broker_job_t *job)
{
    switch (job->state) {
    case DV_STATE_QUEUED:
        broker_queue_remove(job->queue, job);
        break;
    case DV_STATE_SCHEDULED:
        broker_heap_remove(&self->timers, job);
        job->queue->scheduled--;
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

/* The job ended: store it, queue its outcome for waiters, forget it. */
static void
s_finish(broker_t *self, broker_job_t *job, dv_state_t state,
         const void *result, size_t result_len, const dv_failure_t *failure)
{
    char id[DV_ID_TEXT_LEN + 1];
    s_id_text(job, id);
    broker_worker_t *worker = job->worker;
    const char *worker_name = worker ? worker->name : NULL;
    char wname[DV_NAME_MAX + 1] = "";
    if (worker_name)
        snprintf(wname, sizeof wname, "%s", worker_name);
    int64_t now = dv_now_ms();
    int64_t run_ms = job->state == DV_STATE_RUNNING && (job->flags & BROKER_JOB_STARTED)
                         ? now - job->started_ms
                         : 0;
    s_unplace(self, job);
    /* It stays in the index, terminal, until its group is durable: a wait
     * that comes in meanwhile still finds it. */
    job->state = (uint8_t)state;
    if (broker_wbatch_finished(&self->cur->wb, id, state, job->attempt, result,
                               result_len, failure, now) != 0)
        s_write_lost(self);

    dv_event_t ev = { 0 };
    ev.state = state;
    ev.worker = wname[0] ? dv_str(wname) : (dv_str_t){ 0 };
    ev.run_ms = run_ms;
    if (failure) {
        ev.has_failure = true;
        ev.failure = *failure;
    }
    const char *kind = state == DV_STATE_SUCCEEDED ? "job.succeeded"
                       : state == DV_STATE_DEAD    ? "job.dead"
                                                   : "job.cancelled";
    s_job_event(self, kind, job, &ev);
    if (state == DV_STATE_SUCCEEDED)
        self->counters.succeeded++;
    else if (state == DV_STATE_DEAD)
        self->counters.dead++;
    else
        self->counters.cancelled++;

    broker_ended_t *e = calloc(1, sizeof *e);
    if (!e) {
        broker_job_destroy(&job);
        return;
    }
    e->job = job;
    e->state = state;
    e->finished_ms = now;
    if (result_len) { /* a late waiter may still ask for it */
        e->result = malloc(result_len);
        if (e->result) {
            memcpy(e->result, result, result_len);
            e->result_len = result_len;
        }
    }
    if (failure) {
        e->has_failure = true;
        e->failure = *failure;
        size_t ml = failure->message.len, kl = failure->key_id.len;
        e->msg = malloc(ml + kl + 2);
        if (e->msg) {
            memcpy(e->msg, failure->message.ptr ? failure->message.ptr : "", ml);
            e->msg[ml] = '\0';
            memcpy(e->msg + ml + 1, failure->key_id.ptr ? failure->key_id.ptr : "", kl);
            e->msg[ml + 1 + kl] = '\0';
            e->failure.message = failure->message.ptr ? dv_strn(e->msg, ml) : (dv_str_t){ 0 };
            e->failure.key_id = failure->key_id.ptr ? dv_strn(e->msg + ml + 1, kl) : (dv_str_t){ 0 };
        } else {
            e->failure.message = (dv_str_t){ 0 };
            e->failure.key_id = (dv_str_t){ 0 };
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
    s_id_text(job, id);
    broker_attempt_t a = {
        .job_id = id,
        .attempt = job->attempt,
        .worker = worker,
        .started_ms = (job->flags & BROKER_JOB_STARTED) ? job->started_ms : 0,
        .finished_ms = dv_now_ms(),
        .outcome = outcome,
        .failure = failure,
    };
    if (broker_wbatch_attempt(&self->cur->wb, &a) != 0)
        s_write_lost(self);
}

/* An attempt failed: retry after backoff, or the job is dead. */
static void
s_fail(broker_t *self, broker_job_t *job, const dv_failure_t *failure)
{
    char wname[DV_NAME_MAX + 1] = "";
    if (job->worker)
        snprintf(wname, sizeof wname, "%s", job->worker->name);
    s_record_attempt(self, job, wname[0] ? wname : NULL, DV_STATE_FAILED,
                     failure);
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
        s_job_event(self, "job.failed", job, &ev);
        s_finish(self, job, DV_STATE_DEAD, NULL, 0, failure);
        return;
    }
    s_unplace(self, job);
    dv_backoff_t b = { job->backoff_base_ms, job->backoff_factor,
                       job->backoff_cap_ms, (job->flags & BROKER_JOB_JITTER) != 0 };
    int64_t delay = dv_backoff_delay(&b, job->attempt, failure->retry_after_ms,
                                     dv_rand01());
    job->run_at_ms = dv_now_ms() + delay;
    s_place(self, job, false);
    char id[DV_ID_TEXT_LEN + 1];
    s_id_text(job, id);
    if (broker_wbatch_waiting(&self->cur->wb, id, job->state, job->run_at_ms,
                              job->attempt, failure) != 0)
        s_write_lost(self);
    self->counters.retried++;
    ev.state = job->state;
    ev.run_at_ms = job->run_at_ms;
    s_job_event(self, "job.failed", job, &ev);
}

static void
s_lease(broker_t *self, broker_job_t *job, broker_worker_t *w, bool new_attempt)
{
    if (new_attempt)
        job->attempt++;
    job->state = DV_STATE_RUNNING;
    job->worker = w;
    job->flags &= (uint8_t)~BROKER_JOB_STARTED; /* ready_us stays: wait time */
    job->queue->running++;
    broker_list_add(&w->running, job);
    char id[DV_ID_TEXT_LEN + 1];
    s_id_text(job, id);
    if (broker_wbatch_running(&self->cur->wb, id, job->attempt, w->name,
                              dv_now_ms()) != 0)
        s_write_lost(self);
}

/* ---- workers ---------------------------------------------------------------- */

static void
s_worker_free(broker_worker_t *w)
{
    free(w->name);
    free(w->host);
    free(w->queues);
    free(w->out);
    free(w);
}

/* Fails every job leased to w as lost and forgets w. */
static void
s_worker_remove(broker_t *self, broker_worker_t *w, const char *kind,
                const char *why)
{
    int lost = 0;
    while (w->running.head) {
        broker_job_t *job = w->running.head;
        dv_failure_t f;
        dv_failure_init(&f);
        f.category = DV_CAT_LOST;
        f.retryable = true;
        f.message = dv_str(why);
        s_fail(self, job, &f);
        lost++;
    }
    dv_log(DV_WARN - (strcmp(kind, "worker.left") == 0), "broker.worker_removed",
           DV_STR("worker", w->name), DV_STR("reason", why),
           DV_INT("jobs_lost", lost));
    dv_event_t ev = { 0 };
    ev.kind = dv_str(kind);
    ev.worker = dv_str(w->name);
    s_event(self, &ev);
    for (size_t k = 0; k < self->noutq; k++)
        if (self->outq[k] == w)
            self->outq[k] = self->outq[--self->noutq];
    zhashx_delete(self->worker_by_name, w->name);
    s_worker_free(w);
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

/* Hands ready jobs to workers with credit, one job per worker per round so
 * that load spreads, each worker's queues taken round-robin. */
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

static void
s_dispatch(broker_t *self)
{
    self->dispatch_needed = false;
    self->next_token_us = 0;
    int64_t now_us = dv_mono_us();
    bool progress = true;
    while (progress) {
        progress = false;
        for (broker_worker_t *w = zhashx_first(self->worker_by_name); w;
             w = zhashx_next(self->worker_by_name)) {
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
                broker_queue_push(job->queue, job, true); /* next pass */
                return;
            }
            s_lease(self, job, w, true);
            w->credit--;
            self->counters.dispatched++;
            progress = true;
        }
    }
}

/* ---- client messages ---------------------------------------------------------- */

static void
s_on_submit(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg)
{
    uint32_t n = msg->u.submit.njobs;
    broker_ack_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return;
    b->rid = *rid;
    b->req = msg->u.submit.req;
    b->n = n;
    b->acks = calloc(n ? n : 1, sizeof *b->acks);
    b->ids = calloc(n ? n : 1, sizeof *b->ids);
    b->errors = calloc(n ? n : 1, sizeof *b->errors);
    b->jobs = calloc(n ? n : 1, sizeof *b->jobs);
    if (!b->acks || !b->ids || !b->errors || !b->jobs) {
        free(b->acks);
        free(b->ids);
        free(b->errors);
        free(b->jobs);
        free(b);
        s_send_error(self, self->clients, rid, msg->u.submit.req,
                     "broker out of memory");
        return;
    }
    int64_t now = dv_now_ms();
    for (uint32_t i = 0; i < n; i++) {
        const dv_jobspec_t *js = &msg->u.submit.jobs[i];
        char keybuf[DV_KEY_MAX + 1];
        const char *key = NULL;
        if (js->key.ptr && js->key.len) {
            key = dv_str_copy(js->key, keybuf, sizeof keybuf);
            /* Keys whose insert is not durable yet are only in memory; the
             * rest are in the store. */
            const char *pending = zhashx_lookup(self->pending_keys, key);
            int r = pending ? 1 : broker_store_find_key(self->store, key, b->ids[i]);
            if (pending)
                snprintf(b->ids[i], sizeof b->ids[i], "%s", pending);
            if (r == 1) {
                b->acks[i].duplicate = true;
                continue;
            }
            if (r < 0) {
                b->errors[i] = strdup("store lookup of the idempotency key failed");
                continue;
            }
        }
        char qname[DV_NAME_MAX + 1];
        dv_str_copy(js->queue, qname, sizeof qname);
        broker_queue_t *q = s_queue(self, qname);
        dv_id_t id;
        dv_id_new(&id);
        broker_job_t *job = broker_job_new(&id, js->payload.ptr, js->payload.len);
        if (!q || !job) {
            broker_job_destroy(&job);
            b->errors[i] = strdup("broker out of memory");
            continue;
        }
        job->queue = q;
        job->type = s_intern(self, js->type);
        job->batch = s_intern(self, js->batch);
        job->trace = js->trace.ptr && js->trace.len ? dv_str_dup(js->trace) : NULL;
        job->priority = (uint8_t)js->priority;
        job->run_at_ms = js->run_at_ms > now ? js->run_at_ms : now;
        job->max_attempts = (uint16_t)(js->max_attempts > 0
                                           ? js->max_attempts
                                           : self->cfg.default_max_attempts);
        job->timeout_ms = (uint32_t)(js->timeout_ms > UINT32_MAX ? UINT32_MAX
                                                                 : js->timeout_ms);
        dv_backoff_t bo = js->has_backoff ? js->backoff : self->cfg.default_backoff;
        job->backoff_base_ms = (uint32_t)(bo.base_ms > UINT32_MAX ? UINT32_MAX : bo.base_ms);
        job->backoff_cap_ms = (uint32_t)(bo.cap_ms > UINT32_MAX ? UINT32_MAX : bo.cap_ms);
        job->backoff_factor = (float)bo.factor;
        if (bo.jitter)
            job->flags |= BROKER_JOB_JITTER;
        dv_id_format(&id, b->ids[i]);

        broker_jobrec_t rec = {
            .id = b->ids[i],
            .queue = q->name,
            .type = job->type,
            .key = key,
            .batch = job->batch,
            .trace = job->trace,
            .payload = job->payload,
            .payload_len = job->payload_len,
            .state = job->run_at_ms > now ? DV_STATE_SCHEDULED : DV_STATE_QUEUED,
            .priority = job->priority,
            .created_ms = now,
            .run_at_ms = job->run_at_ms,
            .attempt = 0,
            .max_attempts = job->max_attempts,
            .timeout_ms = job->timeout_ms,
            .backoff = bo,
            .result_ttl_ms = js->result_ttl_ms > 0 ? js->result_ttl_ms
                                                   : self->cfg.default_result_ttl_ms,
        };
        if (broker_index_put(&self->index, job) != 0 ||
            broker_wbatch_insert(&self->cur->wb, &rec) != 0) {
            /* An index entry without its insert (or the reverse) would be
             * half a job: refuse it whole. The index entry goes with the
             * group's failure handling if the insert was recorded. */
            broker_index_del(&self->index, job);
            b->errors[i] = strdup("broker out of memory");
            b->ids[i][0] = '\0';
            broker_job_destroy(&job);
            continue;
        }
        job->flags |= BROKER_JOB_PENDING;
        job->state = DV_STATE_NONE;
        if (key) {
            char *k = strdup(key);
            if (k) {
                zhashx_insert(self->pending_keys, k, b->ids[i]);
                zlistx_add_end(self->cur->keys, k);
            }
        }
        b->jobs[i] = job;
    }
    *self->cur->acks_tail = b;
    self->cur->acks_tail = &b->next;
}

static s_results_t *
s_results_for(broker_group_t *g, const broker_rid_t *rid)
{
    char hex[2 * 255 + 1];
    s_rid_hex(rid, hex);
    s_results_t *r = zhashx_lookup(g->results_out, hex);
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
        r->rid = *rid;
        r->owned = zlistx_new();
        zlistx_set_destructor(r->owned, s_free_item);
        zhashx_insert(g->results_out, hex, r);
    }
    return r;
}

static dv_result_t *
s_results_add(s_results_t *r)
{
    if (r->n == r->cap) {
        uint32_t ncap = r->cap ? r->cap * 2 : 64;
        dv_result_t *ni = realloc(r->items, ncap * sizeof *ni);
        if (!ni)
            return NULL;
        r->items = ni;
        r->cap = ncap;
    }
    dv_result_t *it = &r->items[r->n++];
    memset(it, 0, sizeof *it);
    return it;
}

/* Copies s into memory owned by r; returns the view. */
static dv_str_t
s_results_own(s_results_t *r, const void *p, size_t len)
{
    if (!p)
        return (dv_str_t){ 0 };
    char *c = malloc(len + 1);
    if (!c)
        return (dv_str_t){ 0 };
    memcpy(c, p, len);
    c[len] = '\0';
    zlistx_add_end(r->owned, c);
    return dv_strn(c, len);
}

typedef struct {
    s_results_t *r;
    dv_result_t *it;
} s_view_ctx_t;

static void
s_on_view(void *arg, const broker_jobview_t *v)
{
    s_view_ctx_t *c = arg;
    c->it->state = v->state;
    c->it->attempts = v->attempt;
    c->it->finished_ms = v->finished_ms;
    if (v->result && v->result_len)
        c->it->result = s_results_own(c->r, v->result, v->result_len);
    if (v->category) {
        c->it->has_failure = true;
        dv_failure_init(&c->it->failure);
        c->it->failure.category = dv_category_parse(v->category, strlen(v->category));
        if (v->error)
            c->it->failure.message = s_results_own(c->r, v->error, strlen(v->error));
    }
}

static void
s_on_wait(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg)
{
    for (uint32_t i = 0; i < msg->u.wait.nids; i++) {
        dv_str_t sid = msg->u.wait.ids[i];
        dv_id_t id;
        broker_job_t *job = NULL;
        if (dv_id_parse(sid.ptr, sid.len, &id) == 0)
            job = broker_index_get(&self->index, &id);
        if (job) {
            bool already = false;
            for (broker_waiter_t *w = job->waiters; w; w = w->next)
                if (w->len == rid->len && !memcmp(w->rid, rid->data, rid->len))
                    already = true;
            if (!already) {
                broker_waiter_t *w = calloc(1, sizeof *w);
                if (w) {
                    w->len = rid->len;
                    memcpy(w->rid, rid->data, rid->len);
                    w->next = job->waiters;
                    job->waiters = w;
                }
            }
            continue;
        }
        s_results_t *r = s_results_for(self->cur, rid);
        if (!r)
            continue;
        dv_result_t *it = s_results_add(r);
        if (!it)
            continue;
        it->id = s_results_own(r, sid.ptr, sid.len);
        it->state = DV_STATE_UNKNOWN;
        char idtext[DV_ID_TEXT_LEN + 1];
        if (sid.len == DV_ID_TEXT_LEN) {
            dv_str_copy(sid, idtext, sizeof idtext);
            s_view_ctx_t ctx = { r, it };
            broker_store_get(self->store, idtext, s_on_view, &ctx);
            if (!dv_state_terminal(it->state) && it->state != DV_STATE_UNKNOWN)
                it->state = DV_STATE_UNKNOWN; /* stored but not live: lost track */
        }
    }
}

static void
s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void
s_pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    s_pack_str(pk, k);
    if (v)
        s_pack_str(pk, v);
    else
        msgpack_pack_nil(pk);
}

static void
s_pack_kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
    s_pack_str(pk, k);
    msgpack_pack_int64(pk, v);
}

static void
s_status_body(broker_t *self, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    s_pack_kv_str(&pk, "broker", self->instance);
    s_pack_kv_str(&pk, "store", broker_store_backend(self->store));
    s_pack_kv_int(&pk, "uptime_ms", dv_now_ms() - self->started_ms);

    s_pack_str(&pk, "queues");
    msgpack_pack_array(&pk, zhashx_size(self->queues));
    for (broker_queue_t *q = zhashx_first(self->queues); q;
         q = zhashx_next(self->queues)) {
        msgpack_pack_map(&pk, 7);
        s_pack_kv_str(&pk, "name", q->name);
        s_pack_str(&pk, "rate");
        msgpack_pack_double(&pk, q->rate);
        s_pack_kv_int(&pk, "max_running", q->max_running);
        s_pack_kv_int(&pk, "queued", (int64_t)q->ready);
        s_pack_kv_int(&pk, "scheduled", (int64_t)q->scheduled);
        s_pack_kv_int(&pk, "running", (int64_t)q->running);
        s_pack_str(&pk, "paused");
        if (q->paused)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
    }

    s_pack_str(&pk, "workers");
    msgpack_pack_array(&pk, zhashx_size(self->worker_by_name));
    for (broker_worker_t *w = zhashx_first(self->worker_by_name); w;
         w = zhashx_next(self->worker_by_name)) {
        msgpack_pack_map(&pk, 10);
        s_pack_kv_str(&pk, "name", w->name);
        s_pack_str(&pk, "draining");
        if (w->draining)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
        s_pack_kv_str(&pk, "host", w->host);
        s_pack_kv_int(&pk, "pid", w->pid);
        s_pack_kv_int(&pk, "concurrency", w->concurrency);
        s_pack_kv_int(&pk, "credit", w->credit);
        s_pack_kv_int(&pk, "running", (int64_t)w->running.count);
        s_pack_kv_int(&pk, "processed", w->processed);
        s_pack_kv_int(&pk, "failed", w->failed);
        s_pack_str(&pk, "queues");
        msgpack_pack_array(&pk, (size_t)w->nqueues);
        for (int i = 0; i < w->nqueues; i++)
            s_pack_str(&pk, w->queues[i]->name);
    }

    const broker_counters_t *c = &self->counters;
    s_pack_str(&pk, "counters");
    msgpack_pack_map(&pk, 11);
    s_pack_kv_int(&pk, "submitted", (int64_t)c->submitted);
    s_pack_kv_int(&pk, "dispatched", (int64_t)c->dispatched);
    s_pack_kv_int(&pk, "succeeded", (int64_t)c->succeeded);
    s_pack_kv_int(&pk, "failed", (int64_t)c->failed);
    s_pack_kv_int(&pk, "retried", (int64_t)c->retried);
    s_pack_kv_int(&pk, "dead", (int64_t)c->dead);
    s_pack_kv_int(&pk, "cancelled", (int64_t)c->cancelled);
    s_pack_kv_int(&pk, "lost", (int64_t)c->lost);
    s_pack_kv_int(&pk, "live_jobs", (int64_t)self->index.count);
    s_pack_kv_int(&pk, "dispatch_p50_us",
                  (int64_t)dv_hist_quantile(&self->dispatch_us, 0.50));
    s_pack_kv_int(&pk, "dispatch_p99_us",
                  (int64_t)dv_hist_quantile(&self->dispatch_us, 0.99));
}

typedef struct {
    msgpack_packer *pk;
} s_jobview_ctx_t;

static void
s_on_jobview(void *arg, const broker_jobview_t *v)
{
    msgpack_packer *pk = ((s_jobview_ctx_t *)arg)->pk;
    msgpack_pack_map(pk, 8);
    s_pack_kv_str(pk, "id", v->id);
    s_pack_kv_str(pk, "queue", v->queue);
    s_pack_kv_str(pk, "type", v->type);
    s_pack_kv_str(pk, "state", dv_state_name(v->state));
    s_pack_kv_int(pk, "attempt", v->attempt);
    s_pack_str(pk, "result");
    /* The stored result is one msgpack value: embed its bytes as they are. */
    if (v->result && v->result_len &&
        dv_mp_validate(v->result, v->result_len, DV_VALUE_DEPTH_MAX) == DV_OK)
        pk->callback(pk->data, v->result, v->result_len);
    else
        msgpack_pack_nil(pk);
    s_pack_kv_str(pk, "category", v->category);
    s_pack_kv_str(pk, "error", v->error);
}

static void
s_reply(broker_t *self, const broker_rid_t *rid, uint64_t req, bool ok,
        const char *error, const msgpack_sbuffer *body, bool later)
{
    dv_msg_t m = { .type = DV_MSG_REPLY };
    m.u.reply.req = req;
    m.u.reply.ok = ok;
    m.u.reply.error = dv_str(error);
    if (body && body->size)
        m.u.reply.body = dv_strn(body->data, body->size);
    if (later)
        s_send_later(self, self->clients, rid, NULL, &m);
    else
        s_send_now(self->clients, rid, &m);
}

static void
s_cancel(broker_t *self, broker_job_t *job)
{
    if (job->state == DV_STATE_RUNNING && job->worker) {
        char id[DV_ID_TEXT_LEN + 1];
        s_id_text(job, id);
        dv_msg_t k = { .type = DV_MSG_KILL };
        k.u.kill.id = dv_str(id);
        k.u.kill.reason = dv_str("cancelled");
        s_send_later(self, self->workers, &job->worker->rid, NULL, &k);
    }
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_CANCELLED;
    f.message = dv_str("cancelled by request");
    s_finish(self, job, DV_STATE_CANCELLED, NULL, 0, &f);
}

/* ---- queue control: pause, resume, limits, purge, retry ------------------- */

/* Records q's settings as a write of this group, and tells subscribers. */
static void
s_queue_save(broker_t *self, broker_queue_t *q, const char *event_kind)
{
    broker_queue_settings_t st = { q->name, q->paused, q->rate,
                                   (int)q->max_running };
    if (broker_wbatch_queue(&self->cur->wb, &st) != 0)
        s_write_lost(self);
    dv_event_t ev = { 0 };
    ev.kind = dv_str(event_kind);
    ev.queue = dv_str(q->name);
    s_event(self, &ev);
    dv_log(DV_INFO, "broker.queue_settings", DV_STR("queue", q->name),
           DV_BOOL("paused", q->paused), DV_DBL("rate", q->rate),
           DV_INT("max_running", q->max_running));
    self->dispatch_needed = true;
}

static void
s_set_rate(broker_queue_t *q, double rate)
{
    q->rate = rate;
    q->tokens = 1.0;
    q->tokens_us = dv_mono_us();
}

/* Cancels every job of q that waits (ready or scheduled). */
static int
s_purge(broker_t *self, broker_queue_t *q)
{
    char why[DV_NAME_MAX + 32];
    snprintf(why, sizeof why, "purged from queue %s", q->name);
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_CANCELLED;
    f.message = dv_str(why);
    int n = 0;
    broker_job_t *job;
    while ((job = broker_queue_pop(q))) {
        job->state = DV_STATE_NONE; /* popped: in no container now */
        s_finish(self, job, DV_STATE_CANCELLED, NULL, 0, &f);
        n++;
    }
    /* Scheduled ones of this queue: collect first, the heap shifts. */
    zlistx_t *later = zlistx_new();
    for (uint32_t i = 0; i < self->timers.count; i++)
        if (self->timers.items[i]->queue == q)
            zlistx_add_end(later, self->timers.items[i]);
    for (job = zlistx_first(later); job; job = zlistx_next(later)) {
        s_finish(self, job, DV_STATE_CANCELLED, NULL, 0, &f);
        n++;
    }
    zlistx_destroy(&later);
    return n;
}

typedef struct {
    broker_t *self;
    const char *error;      /* static reason when not retried */
    char buf[96];
} s_retry_ctx_t;

static int
s_retry_rec(void *arg, const broker_jobrec_t *rec)
{
    s_retry_ctx_t *c = arg;
    if (rec->state != DV_STATE_DEAD && rec->state != DV_STATE_CANCELLED) {
        snprintf(c->buf, sizeof c->buf, "job is %s; only dead or cancelled "
                 "jobs can be retried", dv_state_name(rec->state));
        c->error = c->buf;
        return 0;
    }
    int err = 0;
    broker_job_t *job = s_job_from_rec(c->self, rec, &err);
    if (!job) {
        c->error = "broker out of memory";
        return 0;
    }
    /* A fresh start: all its attempts again, now. */
    job->attempt = 0;
    job->run_at_ms = 0;
    s_place(c->self, job, false);
    if (broker_wbatch_waiting(&c->self->cur->wb, rec->id, DV_STATE_QUEUED,
                              dv_now_ms(), 0, NULL) != 0)
        s_write_lost(c->self);
    dv_event_t ev = { 0 };
    ev.state = DV_STATE_QUEUED;
    s_job_event(c->self, "job.retried", job, &ev);
    return 0;
}

/* Puts one dead or cancelled job back in its queue. Returns NULL, or why
 * not. */
static const char *
s_retry_one(broker_t *self, const char *idtext, s_retry_ctx_t *ctx)
{
    dv_id_t id;
    if (dv_id_parse(idtext, (unsigned)strlen(idtext), &id) != 0)
        return "not a job id";
    broker_job_t *job = broker_index_get(&self->index, &id);
    if (job) {
        if (dv_state_terminal(job->state))
            return "the job has just ended; try again in a moment";
        snprintf(ctx->buf, sizeof ctx->buf, "job is %s; only dead or "
                 "cancelled jobs can be retried",
                 (job->flags & BROKER_JOB_PENDING) ? "queued"
                                                   : dv_state_name(job->state));
        return ctx->buf;
    }
    ctx->self = self;
    ctx->error = NULL;
    int r = broker_store_load(self->store, idtext, s_retry_rec, ctx);
    if (r == 0)
        return "no such job";
    if (r < 0)
        return "store read failed";
    return ctx->error;
}

typedef struct {
    zlistx_t *ids;
} s_list_ctx_t;

static int
s_collect_id(void *arg, const char *id)
{
    s_list_ctx_t *c = arg;
    zlistx_add_end(c->ids, strdup(id));
    return 0;
}

static void
s_reply_count(broker_t *self, const broker_rid_t *rid, uint64_t req,
              const char *key, int64_t n)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    s_pack_kv_int(&pk, key, n);
    s_reply(self, rid, req, true, NULL, &sb, true);
    msgpack_sbuffer_destroy(&sb);
}

/* The verbs that act on a queue, and retry. Returns false for a verb it
 * does not know. Replies that follow a store write wait for its commit. */
static bool
s_on_queue_ctrl(broker_t *self, const broker_rid_t *rid, const dv_ctrl_t *c)
{
    char qname[DV_NAME_MAX + 1] = "";
    if (c->queue.ptr)
        dv_str_copy(c->queue, qname, sizeof qname);

    if (dv_str_eq(c->verb, "retry")) {
        s_retry_ctx_t ctx = { 0 };
        if (c->id.ptr) {
            char idtext[DV_ID_TEXT_LEN + 1];
            dv_str_copy(c->id, idtext, sizeof idtext);
            const char *why = s_retry_one(self, idtext, &ctx);
            if (why)
                s_reply(self, rid, c->req, false, why, NULL, false);
            else
                s_reply_count(self, rid, c->req, "retried", 1);
            return true;
        }
        if (!c->dead || !qname[0]) {
            s_reply(self, rid, c->req, false,
                    "retry needs a job id, or dead and a queue", NULL, false);
            return true;
        }
        s_list_ctx_t lc = { zlistx_new() };
        zlistx_set_destructor(lc.ids, s_free_item);
        int n = broker_store_list(self->store, qname, DV_STATE_DEAD, 100000,
                                  s_collect_id, &lc);
        int retried = 0;
        for (char *id = zlistx_first(lc.ids); id; id = zlistx_next(lc.ids))
            if (!s_retry_one(self, id, &ctx))
                retried++;
        zlistx_destroy(&lc.ids);
        if (n < 0)
            s_reply(self, rid, c->req, false, "store read failed", NULL, false);
        else
            s_reply_count(self, rid, c->req, "retried", retried);
        return true;
    }

    bool pause = dv_str_eq(c->verb, "pause"), resume = dv_str_eq(c->verb, "resume");
    bool rate = dv_str_eq(c->verb, "rate");
    bool maxrun = dv_str_eq(c->verb, "max-running");
    bool purge = dv_str_eq(c->verb, "purge");
    if (!pause && !resume && !rate && !maxrun && !purge)
        return false;
    if (!qname[0]) {
        s_reply(self, rid, c->req, false, "this verb needs a queue", NULL, false);
        return true;
    }
    if ((rate || maxrun) &&
        (!c->has_value || c->value < 0 || c->value > 1e9)) {
        s_reply(self, rid, c->req, false,
                "needs a value: 0 (no limit) or a positive number", NULL, false);
        return true;
    }
    broker_queue_t *q = s_queue(self, qname);
    if (!q) {
        s_reply(self, rid, c->req, false, "broker out of memory", NULL, false);
        return true;
    }
    if (purge) {
        s_reply_count(self, rid, c->req, "purged", s_purge(self, q));
        return true;
    }
    if (pause || resume)
        q->paused = pause;
    else if (rate)
        s_set_rate(q, c->value);
    else
        q->max_running = (uint32_t)c->value;
    s_queue_save(self, q, pause    ? "queue.paused"
                          : resume ? "queue.resumed"
                                   : "queue.limits");
    s_reply(self, rid, c->req, true, NULL, NULL, true);
    return true;
}

static void
s_on_ctrl(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg)
{
    const dv_ctrl_t *c = &msg->u.ctrl;
    char idtext[DV_ID_TEXT_LEN + 1] = "";
    broker_job_t *job = NULL;
    if (c->id.ptr) {
        dv_id_t id;
        if (dv_id_parse(c->id.ptr, c->id.len, &id) != 0) {
            s_reply(self, rid, c->req, false, "not a job id", NULL, false);
            return;
        }
        dv_str_copy(c->id, idtext, sizeof idtext);
        job = broker_index_get(&self->index, &id);
    }
    if (dv_str_eq(c->verb, "status")) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        s_status_body(self, &sb);
        s_reply(self, rid, c->req, true, NULL, &sb, false);
        msgpack_sbuffer_destroy(&sb);
    } else if (dv_str_eq(c->verb, "cancel")) {
        if (!idtext[0]) {
            s_reply(self, rid, c->req, false, "cancel needs a job id", NULL, false);
        } else if (job && dv_state_terminal(job->state)) {
            char why[64];
            snprintf(why, sizeof why, "job already %s", dv_state_name(job->state));
            s_reply(self, rid, c->req, false, why, NULL, false);
        } else if (job && !(job->flags & BROKER_JOB_PENDING)) {
            s_cancel(self, job);
            s_reply(self, rid, c->req, true, NULL, NULL, true);
        } else if (job) {
            s_reply(self, rid, c->req, false, "job not committed yet; try again",
                    NULL, false);
        } else {
            s_view_ctx_t ctx;
            s_results_t tmp = { 0 };
            tmp.owned = zlistx_new();
            zlistx_set_destructor(tmp.owned, s_free_item);
            dv_result_t it = { 0 };
            ctx.r = &tmp;
            ctx.it = &it;
            int r = broker_store_get(self->store, idtext, s_on_view, &ctx);
            char why[128];
            if (r == 1)
                snprintf(why, sizeof why, "job already %s", dv_state_name(it.state));
            else
                snprintf(why, sizeof why, "no such job");
            s_reply(self, rid, c->req, false, why, NULL, false);
            zlistx_destroy(&tmp.owned);
        }
    } else if (dv_str_eq(c->verb, "job")) {
        if (!idtext[0]) {
            s_reply(self, rid, c->req, false, "job needs a job id", NULL, false);
            return;
        }
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (job) {
            msgpack_pack_map(&pk, 7);
            s_pack_kv_str(&pk, "id", idtext);
            s_pack_kv_str(&pk, "queue", job->queue->name);
            s_pack_kv_str(&pk, "type", job->type);
            s_pack_kv_str(&pk, "state", (job->flags & BROKER_JOB_PENDING) ? "queued"
                                                     : dv_state_name(job->state));
            s_pack_kv_int(&pk, "attempt", job->attempt);
            s_pack_kv_int(&pk, "max_attempts", job->max_attempts);
            s_pack_kv_str(&pk, "worker", job->worker ? job->worker->name : NULL);
            s_reply(self, rid, c->req, true, NULL, &sb, false);
        } else {
            s_jobview_ctx_t ctx = { &pk };
            if (broker_store_get(self->store, idtext, s_on_jobview, &ctx) == 1)
                s_reply(self, rid, c->req, true, NULL, &sb, false);
            else
                s_reply(self, rid, c->req, false, "no such job", NULL, false);
        }
        msgpack_sbuffer_destroy(&sb);
    } else if (dv_str_eq(c->verb, "drain")) {
        char wname[DV_NAME_MAX + 1] = "";
        if (c->worker.ptr)
            dv_str_copy(c->worker, wname, sizeof wname);
        broker_worker_t *w = wname[0] ? zhashx_lookup(self->worker_by_name, wname)
                                      : NULL;
        if (!wname[0]) {
            s_reply(self, rid, c->req, false, "drain needs a worker name", NULL, false);
        } else if (!w) {
            s_reply(self, rid, c->req, false, "no such worker", NULL, false);
        } else {
            /* No more jobs for it from now; it finishes what it runs, hands
             * back the rest, says bye and exits. */
            w->draining = true;
            dv_msg_t d = { .type = DV_MSG_DRAIN };
            s_send_now(self->workers, &w->rid, &d);
            dv_log(DV_INFO, "broker.worker_draining", DV_STR("worker", w->name),
                   DV_INT("running", (int64_t)w->running.count));
            dv_event_t ev = { 0 };
            ev.kind = dv_str("worker.draining");
            ev.worker = dv_str(w->name);
            s_event(self, &ev);
            s_reply(self, rid, c->req, true, NULL, NULL, false);
        }
    } else if (!s_on_queue_ctrl(self, rid, c)) {
        char why[DV_NAME_MAX + 40];
        char verb[DV_NAME_MAX + 1];
        dv_str_copy(c->verb, verb, sizeof verb);
        snprintf(why, sizeof why, "unknown verb \"%s\"", verb);
        s_reply(self, rid, c->req, false, why, NULL, false);
    }
}

/* ---- worker messages ------------------------------------------------------------ */

static broker_worker_t *
s_worker_by_rid(broker_t *self, const broker_rid_t *rid)
{
    char name[256];
    memcpy(name, rid->data, rid->len);
    name[rid->len] = '\0';
    return zhashx_lookup(self->worker_by_name, name);
}

/* Publishes a worker event whose body describes the worker: host, pid,
 * concurrency, queues, credit, running, its own counters, and (heartbeats)
 * the metrics map it sent, embedded as it came. */
static void
s_worker_event(broker_t *self, broker_worker_t *w, const char *kind,
               const dv_str_t *metrics)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bool with_metrics = metrics && metrics->ptr && metrics->len;
    msgpack_pack_map(&pk, 10 + (with_metrics ? 1 : 0));
    s_pack_kv_str(&pk, "host", w->host);
    s_pack_kv_int(&pk, "pid", w->pid);
    s_pack_kv_int(&pk, "concurrency", w->concurrency);
    s_pack_kv_int(&pk, "credit", w->credit);
    s_pack_kv_int(&pk, "running", (int64_t)w->running.count);
    s_pack_kv_int(&pk, "busy", w->busy);
    s_pack_kv_int(&pk, "idle", w->idle);
    s_pack_kv_int(&pk, "processed", w->processed);
    s_pack_kv_int(&pk, "failed", w->failed);
    s_pack_str(&pk, "queues");
    msgpack_pack_array(&pk, (size_t)w->nqueues);
    for (int i = 0; i < w->nqueues; i++)
        s_pack_str(&pk, w->queues[i]->name);
    if (with_metrics) {
        /* Already validated as one msgpack value by the decoder. */
        s_pack_str(&pk, "metrics");
        pk.callback(pk.data, metrics->ptr, metrics->len);
    }
    dv_event_t ev = { 0 };
    ev.kind = dv_str(kind);
    ev.worker = dv_str(w->name);
    ev.body = dv_strn(sb.data, sb.size);
    s_event(self, &ev);
    msgpack_sbuffer_destroy(&sb);
}

static void
s_on_hello(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg)
{
    const dv_hello_t *h = &msg->u.hello;
    char name[256];
    memcpy(name, rid->data, rid->len);
    name[rid->len] = '\0';
    broker_worker_t *w = zhashx_lookup(self->worker_by_name, name);
    bool rejoin = w != NULL;
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w)
            return;
        w->name = strdup(name);
        w->rid = *rid;
        zhashx_insert(self->worker_by_name, name, w);
    }
    free(w->host);
    w->host = dv_str_dup(h->host);
    w->pid = h->pid;
    w->concurrency = h->concurrency;
    free(w->queues);
    w->queues = calloc(h->nqueues, sizeof *w->queues);
    w->nqueues = 0;
    for (uint32_t i = 0; w->queues && i < h->nqueues; i++) {
        char qn[DV_NAME_MAX + 1];
        dv_str_copy(h->queues[i], qn, sizeof qn);
        broker_queue_t *q = s_queue(self, qn);
        if (q)
            w->queues[w->nqueues++] = q;
    }
    w->rr = 0;
    w->credit = h->credit;
    w->draining = false;
    w->last_seen_ms = dv_mono_ms();
    w->known = true;

    /* Jobs it still runs: keep them leased to it. Jobs we think it runs but
     * it does not mention are gone with its previous incarnation. */
    int reclaimed = 0;
    for (uint32_t i = 0; i < h->nheld; i++) {
        dv_id_t id;
        if (dv_id_parse(h->held[i].id.ptr, h->held[i].id.len, &id) != 0)
            continue;
        broker_job_t *job = broker_index_get(&self->index, &id);
        if (!job || (job->flags & BROKER_JOB_PENDING))
            continue;
        if (job->state == DV_STATE_RUNNING && job->worker == w)
            continue;
        if (job->state == DV_STATE_QUEUED || job->state == DV_STATE_SCHEDULED) {
            s_unplace(self, job);
            job->ready_us = dv_mono_us();
            job->attempt = (uint16_t)h->held[i].attempt;
            s_lease(self, job, w, false);
            reclaimed++;
        }
    }
    if (rejoin) {
        broker_job_t *next;
        for (broker_job_t *job = w->running.head; job; job = next) {
            next = job->next;
            bool held = false;
            for (uint32_t i = 0; i < h->nheld && !held; i++) {
                dv_id_t id;
                if (dv_id_parse(h->held[i].id.ptr, h->held[i].id.len, &id) == 0 &&
                    dv_id_eq(&id, &job->id))
                    held = true;
            }
            if (!held) {
                dv_failure_t f;
                dv_failure_init(&f);
                f.category = DV_CAT_LOST;
                f.retryable = true;
                f.message = dv_str("worker rejoined without this job");
                s_fail(self, job, &f);
            }
        }
    }

    dv_msg_t m = { .type = DV_MSG_WELCOME };
    m.u.welcome.broker = dv_str(self->instance);
    m.u.welcome.heartbeat_ms = self->cfg.heartbeat_ms;
    m.u.welcome.worker_timeout_ms = self->cfg.worker_timeout_ms;
    s_send_now(self->workers, rid, &m);
    self->dispatch_needed = true;

    dv_log(DV_INFO, "broker.worker_joined", DV_STR("worker", w->name),
           DV_INT("concurrency", w->concurrency), DV_INT("credit", w->credit),
           DV_INT("queues", w->nqueues), DV_INT("reclaimed", reclaimed),
           DV_BOOL("rejoin", rejoin));
    s_worker_event(self, w, "worker.joined", NULL);
}

static void
s_on_update(broker_t *self, broker_worker_t *w, const dv_msg_t *msg)
{
    for (uint32_t i = 0; i < msg->u.update.nitems; i++) {
        const dv_update_t *u = &msg->u.update.items[i];
        dv_id_t id;
        if (dv_id_parse(u->id.ptr, u->id.len, &id) != 0)
            continue;
        broker_job_t *job = broker_index_get(&self->index, &id);
        if (!job || (job->flags & BROKER_JOB_PENDING) || dv_state_terminal(job->state))
            continue; /* ended already, or never ours: a late duplicate */
        bool mine = w && job->state == DV_STATE_RUNNING && job->worker == w &&
                    job->attempt == u->attempt;
        switch (u->kind) {
        case DV_UPD_STARTED:
            if (mine) {
                int64_t now_us = dv_mono_us();
                int64_t wait_us = now_us - job->ready_us;
                job->started_ms = u->ts_ms ? u->ts_ms : dv_now_ms();
                job->flags |= BROKER_JOB_STARTED;
                if (wait_us < 0)
                    wait_us = 0;
                dv_hist_record(&self->dispatch_us, (uint64_t)wait_us);
                dv_event_t ev = { 0 };
                ev.wait_ms = wait_us / 1000;
                ev.state = DV_STATE_RUNNING;
                s_job_event(self, "job.started", job, &ev);
            }
            break;
        case DV_UPD_PROGRESS:
            if (mine) {
                dv_event_t ev = { 0 };
                ev.current = u->current;
                ev.total = u->total;
                ev.message = u->message;
                s_job_event(self, "job.progress", job, &ev);
            }
            break;
        case DV_UPD_SUCCEEDED:
            /* Accepted even from a stale lease: the work is done. The
             * successful attempt is the jobs row itself (worker, started,
             * finished); only failed attempts get an attempts row, which
             * saves a write per job on the hot path. */
            if (job->state == DV_STATE_RUNNING && !(job->flags & BROKER_JOB_STARTED)) {
                job->started_ms = u->ts_ms;
                job->flags |= BROKER_JOB_STARTED;
            }
            s_finish(self, job, DV_STATE_SUCCEEDED, u->result.ptr,
                     u->result.len, NULL);
            break;
        case DV_UPD_FAILED:
            if (mine)
                s_fail(self, job, &u->failure);
            break;
        case DV_UPD_RETURNED:
            if (mine) {
                s_unplace(self, job);
                job->attempt--;
                job->run_at_ms = 0;
                s_place(self, job, true);
                char idt[DV_ID_TEXT_LEN + 1];
                s_id_text(job, idt);
                if (broker_wbatch_waiting(&self->cur->wb, idt, DV_STATE_QUEUED,
                                          0, job->attempt, NULL) != 0)
                    s_write_lost(self);
            }
            break;
        }
    }
    if (w && msg->u.update.credit > 0) {
        w->credit += msg->u.update.credit;
        self->dispatch_needed = true;
    }
}

/* ---- sockets ------------------------------------------------------------------------ */

/* Reads one ROUTER message: routing id + exactly one body frame. Returns 1
 * with body filled (caller closes it), 0 if nothing to read, -1 if a
 * malformed envelope was consumed. */
static int
s_recv(void *socket, broker_rid_t *rid, zmq_msg_t *body)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, socket, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return 0;
    }
    size_t rl = zmq_msg_size(&part);
    rid->len = (uint8_t)(rl > 255 ? 255 : rl);
    memcpy(rid->data, zmq_msg_data(&part), rid->len);
    int more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    if (!more)
        return -1;
    zmq_msg_init(body);
    zmq_msg_recv(body, socket, 0);
    int frames = 2;
    while (zmq_msg_more(body)) {
        /* Extra frames: drain them; the message is malformed. */
        zmq_msg_close(body);
        zmq_msg_init(body);
        zmq_msg_recv(body, socket, 0);
        frames++;
    }
    if (frames != 2) {
        zmq_msg_close(body);
        return -1;
    }
    return 1;
}

static void
s_bad_message(broker_t *self, void *socket, const broker_rid_t *rid,
              const char *why)
{
    dv_log(DV_WARN, "broker.bad_message",
           DV_STR("socket", socket == self->clients ? "clients" : "workers"),
           DV_STR("reason", why));
    s_send_error(self, socket, rid, 0, why);
}

/* Handles one decoded message from a socket. */
typedef void (s_handler_fn)(broker_t *self, const broker_rid_t *rid,
                            const dv_msg_t *msg);

/* Reads up to batch_max messages from a ROUTER socket, rejects malformed
 * ones with a reason, and hands the rest to handler. */
static void
s_drain(broker_t *self, void *socket, s_handler_fn *handler)
{
    for (int n = 0; n < self->cfg.batch_max; n++) {
        broker_rid_t rid;
        zmq_msg_t body;
        int r = s_recv(socket, &rid, &body);
        if (r == 0)
            return;
        if (r < 0) {
            s_bad_message(self, socket, &rid,
                          "expected exactly one frame after the routing id "
                          "(use a DEALER socket)");
            continue;
        }
        dv_msg_t msg;
        char why[256];
        int rc = dv_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), &msg,
                               why, sizeof why);
        if (rc != DV_OK)
            s_bad_message(self, socket, &rid, why);
        else
            handler(self, &rid, &msg);
        dv_msg_release(&msg);
        zmq_msg_close(&body);
    }
}

static void
s_unexpected(broker_t *self, void *socket, const broker_rid_t *rid,
             const dv_msg_t *msg)
{
    char why[96];
    snprintf(why, sizeof why, "unexpected message \"%s\" on the %s socket",
             dv_msg_type_name(msg->type),
             socket == self->clients ? "clients" : "workers");
    s_bad_message(self, socket, rid, why);
}

static void
s_on_client_message(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg)
{
    switch (msg->type) {
    case DV_MSG_SUBMIT:
        s_on_submit(self, rid, msg);
        break;
    case DV_MSG_WAIT:
        s_on_wait(self, rid, msg);
        break;
    case DV_MSG_CTRL:
        s_on_ctrl(self, rid, msg);
        break;
    default:
        s_unexpected(self, self->clients, rid, msg);
    }
}

static void
s_on_worker_message(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg)
{
    broker_worker_t *w = s_worker_by_rid(self, rid);
    if (w)
        w->last_seen_ms = dv_mono_ms();
    switch (msg->type) {
    case DV_MSG_HELLO:
        s_on_hello(self, rid, msg);
        break;
    case DV_MSG_UPDATE:
        s_on_update(self, w, msg);
        if (!w)
            s_send_error(self, self->workers, rid, 0, "unknown worker: send hello");
        break;
    case DV_MSG_HEARTBEAT:
        if (w) {
            w->busy = msg->u.heartbeat.busy;
            w->idle = msg->u.heartbeat.idle;
            w->processed = msg->u.heartbeat.processed;
            w->failed = msg->u.heartbeat.failed;
            s_worker_event(self, w, "worker.heartbeat", &msg->u.heartbeat.body);
        } else {
            s_send_error(self, self->workers, rid, 0, "unknown worker: send hello");
        }
        break;
    case DV_MSG_BYE:
        if (w)
            s_worker_remove(self, w, "worker.left", "worker said bye");
        break;
    default:
        s_unexpected(self, self->workers, rid, msg);
    }
}

/* ---- timers ------------------------------------------------------------------------ */

static void
s_promote_due(broker_t *self)
{
    int64_t now = dv_now_ms();
    broker_job_t *job;
    while ((job = broker_heap_peek(&self->timers)) && job->run_at_ms <= now) {
        broker_heap_pop(&self->timers);
        job->queue->scheduled--;
        job->state = DV_STATE_NONE;
        s_place(self, job, false);
    }
}

static void
s_heartbeats(broker_t *self)
{
    int64_t now = dv_mono_ms();
    if (now < self->next_heartbeat_ms)
        return;
    self->next_heartbeat_ms = now + self->cfg.heartbeat_ms;
    dv_msg_t hb = { .type = DV_MSG_HEARTBEAT };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dv_msg_encode(&hb, &sb);
    zlistx_t *expired = zlistx_new();
    for (broker_worker_t *w = zhashx_first(self->worker_by_name); w;
         w = zhashx_next(self->worker_by_name)) {
        if (now - w->last_seen_ms > self->cfg.worker_timeout_ms)
            zlistx_add_end(expired, w);
        else
            s_send_raw(self->workers, &w->rid, sb.data, sb.size);
    }
    msgpack_sbuffer_destroy(&sb);
    for (broker_worker_t *w = zlistx_first(expired); w; w = zlistx_next(expired)) {
        char why[128];
        snprintf(why, sizeof why, "worker %s went silent for %" PRId64 " ms",
                 w->name, now - w->last_seen_ms);
        s_worker_remove(self, w, "worker.expired", why);
    }
    zlistx_destroy(&expired);
}

/* ---- after the commit ----------------------------------------------------------- */

static void
s_flush_acks(broker_t *self, broker_group_t *g, bool committed)
{
    broker_ack_batch_t *b = g->acks;
    while (b) {
        for (uint32_t i = 0; i < b->n; i++) {
            broker_job_t *job = b->jobs[i];
            if (job) {
                if (committed) {
                    job->flags &= (uint8_t)~BROKER_JOB_PENDING;
                    s_place(self, job, false);
                    self->counters.submitted++;
                    dv_event_t ev = { 0 };
                    ev.state = job->state;
                    ev.run_at_ms = job->state == DV_STATE_SCHEDULED ? job->run_at_ms : 0;
                    s_job_event(self, "job.submitted", job, &ev);
                } else {
                    broker_index_del(&self->index, job);
                    broker_job_destroy(&job);
                    b->ids[i][0] = '\0';
                    b->errors[i] = strdup("store commit failed; job not accepted");
                }
            } else if (!committed && b->acks[i].duplicate == false && !b->errors[i]) {
                b->errors[i] = strdup("store commit failed; job not accepted");
            }
            if (b->errors[i]) {
                b->acks[i].error = dv_str(b->errors[i]);
            } else {
                b->acks[i].id = dv_str(b->ids[i]);
            }
        }
        dv_msg_t m = { .type = DV_MSG_SUBMIT_REPLY };
        m.u.submit_reply.req = b->req;
        m.u.submit_reply.acks = b->acks;
        m.u.submit_reply.nacks = b->n;
        s_send_now(self->clients, &b->rid, &m);
        broker_ack_batch_t *next = b->next;
        for (uint32_t i = 0; i < b->n; i++)
            free(b->errors[i]);
        free(b->acks);
        free(b->ids);
        free(b->errors);
        free(b->jobs);
        free(b);
        b = next;
    }
    g->acks = NULL;
    g->acks_tail = &g->acks;
}

static void
s_flush_jobs(broker_t *self)
{
    for (size_t k = 0; k < self->noutq; k++) {
        broker_worker_t *w = self->outq[k];
        dv_job_t *jobs = calloc(w->out_count, sizeof *jobs);
        char(*ids)[DV_ID_TEXT_LEN + 1] = calloc(w->out_count, sizeof *ids);
        if (jobs && ids) {
            uint32_t n = 0;
            for (uint32_t i = 0; i < w->out_count; i++) {
                broker_job_t *job = w->out[i];
                dv_id_format(&job->id, ids[n]);
                dv_job_t *j = &jobs[n++];
                j->id = dv_str(ids[n - 1]);
                j->queue = dv_str(job->queue->name);
                j->type = dv_str(job->type);
                if (job->payload_len)
                    j->payload = dv_strn((const char *)job->payload, job->payload_len);
                j->trace = dv_str(job->trace);
                j->batch = dv_str(job->batch);
                j->attempt = job->attempt;
                j->max_attempts = job->max_attempts;
                j->timeout_ms = job->timeout_ms;
                j->enqueued_ms = dv_id_time_ms(&job->id); /* when submitted */
            }
            dv_msg_t m = { .type = DV_MSG_JOBS };
            m.u.jobs.jobs = jobs;
            m.u.jobs.njobs = n;
            s_send_now(self->workers, &w->rid, &m);
        }
        free(jobs);
        free(ids);
        w->out_count = 0;
    }
    self->noutq = 0;
}

static void
s_flush_results(broker_t *self, broker_group_t *g)
{
    /* Outcomes of jobs that ended in this group, to their waiters. */
    for (broker_ended_t *e = g->ended; e; e = e->next) {
        for (broker_waiter_t *wt = e->job->waiters; wt; wt = wt->next) {
            broker_rid_t rid;
            rid.len = wt->len;
            memcpy(rid.data, wt->rid, wt->len);
            s_results_t *r = s_results_for(g, &rid);
            dv_result_t *it = r ? s_results_add(r) : NULL;
            if (!it)
                continue;
            char id[DV_ID_TEXT_LEN + 1];
            dv_id_format(&e->job->id, id);
            it->id = s_results_own(r, id, DV_ID_TEXT_LEN);
            it->state = e->state;
            it->attempts = e->job->attempt;
            it->finished_ms = e->finished_ms;
            if (e->result_len)
                it->result = dv_strn(e->result, e->result_len);
            it->has_failure = e->has_failure;
            if (e->has_failure)
                it->failure = e->failure;
        }
    }
    for (s_results_t *r = zhashx_first(g->results_out); r;
         r = zhashx_next(g->results_out)) {
        /* Keep each message well under the frame limit. */
        uint32_t start = 0;
        while (start < r->n) {
            uint32_t count = r->n - start;
            if (count > 5000)
                count = 5000;
            dv_msg_t m = { .type = DV_MSG_RESULT };
            m.u.result.results = r->items + start;
            m.u.result.nresults = count;
            s_send_now(self->clients, &r->rid, &m);
            start += count;
        }
    }
    zhashx_purge(g->results_out);
    while (g->ended) {
        broker_ended_t *e = g->ended;
        g->ended = e->next;
        broker_index_del(&self->index, e->job);
        broker_job_destroy(&e->job);
        free(e->result);
        free(e->msg);
        free(e);
    }
    g->ended_tail = &g->ended;
}

static void
s_flush_sends(broker_t *self, broker_group_t *g)
{
    for (size_t i = 0; i < g->nsends; i++) {
        s_send_t *snd = &g->sends[i];
        const char *data = g->outbuf.data + snd->off;
        if (snd->rid) {
            s_send_raw(snd->socket, snd->rid, data, snd->len);
            free(snd->rid);
        } else {
            zmq_send(snd->socket, snd->topic, strlen(snd->topic), ZMQ_SNDMORE);
            zmq_send(snd->socket, data, snd->len, ZMQ_DONTWAIT);
        }
    }
    g->nsends = 0;
    g->outbuf.size = 0; /* keep the memory for the next group */
}

/* ---- groups -------------------------------------------------------------------- */

static broker_group_t *
s_group_new(void)
{
    broker_group_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    broker_wbatch_init(&g->wb);
    g->acks_tail = &g->acks;
    g->ended_tail = &g->ended;
    msgpack_sbuffer_init(&g->outbuf);
    g->results_out = zhashx_new();
    zhashx_set_destructor(g->results_out, s_results_destroy);
    g->keys = zlistx_new();
    zlistx_set_destructor(g->keys, s_free_item);
    return g;
}

static void
s_group_destroy(broker_group_t **g_p)
{
    broker_group_t *g = *g_p;
    if (!g)
        return;
    broker_wbatch_clear(&g->wb);
    for (size_t i = 0; i < g->nsends; i++)
        free(g->sends[i].rid);
    free(g->sends);
    msgpack_sbuffer_destroy(&g->outbuf);
    zhashx_destroy(&g->results_out);
    zlistx_destroy(&g->keys);
    free(g);
    *g_p = NULL;
}

static bool
s_group_empty(const broker_group_t *g)
{
    return g->wb.nops == 0 && !g->wb.expire && !g->acks && !g->ended &&
           g->nsends == 0 && zhashx_size(g->results_out) == 0;
}

/* The group's writes are durable (or failed): send what waited on them, in
 * the order it was produced, then make the group reusable. */
static void
s_group_done(broker_t *self, broker_group_t *g)
{
    bool committed = g->wb.rc == 0;
    if (!committed) {
        if (!self->store_failed)
            dv_log(DV_ERROR, "broker.commit_failed",
                   DV_STR("error", dv_strerror(g->wb.rc)),
                   DV_INT("writes", (int64_t)g->wb.nops));
        self->store_failed = true;
    } else if (self->store_failed && g->wb.nops) {
        dv_log(DV_INFO, "broker.commit_recovered");
        self->store_failed = false;
    }
    if (g->wb.expired > 0)
        dv_log(DV_INFO, "broker.expired_results", DV_INT("jobs", g->wb.expired));
    for (char *k = zlistx_first(g->keys); k; k = zlistx_next(g->keys))
        zhashx_delete(self->pending_keys, k);
    zlistx_purge(g->keys);
    s_flush_acks(self, g, committed);
    s_flush_results(self, g);
    s_flush_sends(self, g);
    broker_wbatch_clear(&g->wb);
}

/* Collects what the writer finished. */
static void
s_writer_ready(broker_t *self)
{
    broker_wbatch_t *b;
    while ((b = broker_writer_pop_done(self->writer))) {
        broker_group_t *g = (broker_group_t *)b; /* wb is the first member */
        assert(g == self->inflight);
        /* A big group's ops (copies of whole jobs) are freed below; give
         * the pages back rather than keep the peak as resident memory. */
        bool big = g->wb.nops > 50000;
        s_group_done(self, g);
        self->inflight = NULL;
        s_group_destroy(&g);
        if (big)
            malloc_trim(0);
    }
}

/* Hands the current group to the writer if it is free; a group with no
 * writes needs no commit and goes out at once (after any group before it). */
static void
s_group_submit(broker_t *self)
{
    if (self->inflight || s_group_empty(self->cur))
        return;
    if (self->cur->wb.nops == 0 && !self->cur->wb.expire &&
        self->cur->wb.rc == 0) {
        s_group_done(self, self->cur);
        return;
    }
    broker_group_t *next = s_group_new();
    if (!next)
        return; /* try again next pass */
    self->inflight = self->cur;
    self->cur = next;
    broker_writer_push(self->writer, &self->inflight->wb);
}

static void
s_end_pass(broker_t *self)
{
    /* Jobs go to workers before their leases are durable: a lease need not
     * be stored before the work starts (at worst a crash runs the job
     * again), and the worker then works while the broker waits for the
     * disk. */
    s_flush_jobs(self);
    s_group_submit(self);
}

/* ---- recovery -------------------------------------------------------------------- */

typedef struct {
    broker_t *self;
    zlistx_t *was_running;
    size_t count;
} s_replay_ctx_t;

/* Rebuilds a job from its stored record and indexes it (not placed yet).
 * Returns the job, or NULL with *err set (DV_EPROTO: a bad id). */
static broker_job_t *
s_job_from_rec(broker_t *self, const broker_jobrec_t *rec, int *err)
{
    dv_id_t id;
    if (dv_id_parse(rec->id, (unsigned)strlen(rec->id), &id) != 0) {
        *err = DV_EPROTO;
        return NULL;
    }
    broker_queue_t *q = s_queue(self, rec->queue);
    broker_job_t *job = broker_job_new(&id, rec->payload, rec->payload_len);
    if (!q || !job) {
        broker_job_destroy(&job);
        *err = DV_ENOMEM;
        return NULL;
    }
    job->queue = q;
    job->type = s_intern(self, dv_str(rec->type));
    job->batch = s_intern(self, dv_str(rec->batch));
    job->trace = rec->trace ? strdup(rec->trace) : NULL;
    job->priority = (uint8_t)rec->priority;
    job->run_at_ms = rec->run_at_ms;
    job->attempt = (uint16_t)rec->attempt;
    job->max_attempts = (uint16_t)rec->max_attempts;
    job->timeout_ms = (uint32_t)rec->timeout_ms;
    job->backoff_base_ms = (uint32_t)rec->backoff.base_ms;
    job->backoff_cap_ms = (uint32_t)rec->backoff.cap_ms;
    job->backoff_factor = (float)rec->backoff.factor;
    if (rec->backoff.jitter)
        job->flags |= BROKER_JOB_JITTER;
    if (broker_index_put(&self->index, job) != 0) {
        broker_job_destroy(&job);
        *err = DV_ENOMEM;
        return NULL;
    }
    return job;
}

static int
s_on_replay(void *arg, const broker_jobrec_t *rec)
{
    s_replay_ctx_t *c = arg;
    broker_t *self = c->self;
    int err = 0;
    broker_job_t *job = s_job_from_rec(self, rec, &err);
    if (!job) {
        if (err == DV_EPROTO) {
            dv_log(DV_WARN, "broker.replay_bad_id", DV_STR("job", rec->id));
            return 0;
        }
        return err;
    }
    if (rec->state == DV_STATE_RUNNING) {
        /* It was leased when the broker stopped: park it as queued so the
         * failure path can move it; it is failed as lost below. */
        job->state = DV_STATE_NONE;
        zlistx_add_end(c->was_running, job);
    } else {
        s_place(self, job, false);
    }
    c->count++;
    return 0;
}

static int
s_recover(broker_t *self)
{
    s_replay_ctx_t c = { self, zlistx_new(), 0 };
    int rc = broker_store_replay(self->store, s_on_replay, &c);
    if (rc != 0) {
        zlistx_destroy(&c.was_running);
        return rc;
    }
    size_t lost = zlistx_size(c.was_running);
    for (broker_job_t *job = zlistx_first(c.was_running); job;
         job = zlistx_next(c.was_running)) {
        dv_failure_t f;
        dv_failure_init(&f);
        f.category = DV_CAT_LOST;
        f.retryable = true;
        f.message = dv_str("broker restarted while the job was running");
        s_fail(self, job, &f);
    }
    zlistx_destroy(&c.was_running);
    /* The failures just recorded are the first group the writer commits. */
    dv_log(DV_INFO, "broker.recovered", DV_INT("jobs", (int64_t)c.count),
           DV_INT("requeued_lost", (int64_t)lost));
    return 0;
}

static int
s_on_queue_settings(void *arg, const broker_queue_settings_t *st)
{
    broker_t *self = arg;
    broker_queue_t *q = s_queue(self, st->name);
    if (!q)
        return DV_ENOMEM;
    q->paused = st->paused;
    s_set_rate(q, st->rate);
    q->max_running = st->max_running > 0 ? (uint32_t)st->max_running : 0;
    if (q->paused || q->rate > 0 || q->max_running)
        dv_log(DV_INFO, "broker.queue_restored", DV_STR("queue", q->name),
               DV_BOOL("paused", q->paused), DV_DBL("rate", q->rate),
               DV_INT("max_running", q->max_running));
    return 0;
}

/* Splits "QUEUE=VALUE". Returns 0, or -1 if it is not that shape. */
static int
s_split_limit(const char *spec, char *queue, size_t qsize, double *value)
{
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec || (size_t)(eq - spec) >= qsize)
        return -1;
    char *end;
    *value = strtod(eq + 1, &end);
    if (end == eq + 1 || *end || *value < 0 || *value > 1e9)
        return -1;
    memcpy(queue, spec, (size_t)(eq - spec));
    queue[eq - spec] = '\0';
    return 0;
}

static int
s_apply_limits(broker_t *self)
{
    for (int k = 0; k < 2; k++) {
        const char *const *specs = k ? self->cfg.queue_max_running
                                     : self->cfg.queue_rates;
        int n = k ? self->cfg.nqueue_max_running : self->cfg.nqueue_rates;
        for (int i = 0; i < n; i++) {
            char qn[DV_NAME_MAX + 1];
            double v;
            if (s_split_limit(specs[i], qn, sizeof qn, &v) != 0) {
                dv_log(DV_ERROR, "broker.bad_queue_limit", DV_STR("spec", specs[i]));
                return -1;
            }
            broker_queue_t *q = s_queue(self, qn);
            if (!q)
                return -1;
            if (k)
                q->max_running = (uint32_t)v;
            else
                s_set_rate(q, v);
            s_queue_save(self, q, "queue.limits");
        }
    }
    return 0;
}

/* ---- life cycle ------------------------------------------------------------------ */

static void
s_queue_destructor(void **item)
{
    broker_queue_destroy((broker_queue_t **)item);
}

static void *
s_bind(broker_t *self, int type, const char *ep, const char *what)
{
    void *s = zmq_socket(self->zctx, type);
    int hwm = 1000000, linger = 500;
    int64_t maxmsg = DV_MSG_MAX;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (type == ZMQ_ROUTER) {
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        int on = 1;
        zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &on, sizeof on);
    }
    if (zmq_bind(s, ep) != 0) {
        dv_log(DV_ERROR, "broker.bind_failed", DV_STR("socket", what),
               DV_STR("endpoint", ep), DV_STR("error", zmq_strerror(errno)));
        zmq_close(s);
        return NULL;
    }
    char actual[256];
    size_t al = sizeof actual;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, actual, &al);
    dv_log(DV_INFO, "broker.listening", DV_STR("socket", what),
           DV_STR("endpoint", actual));
    return s;
}

broker_t *
broker_new(const broker_config_t *cfg)
{
    /* Jobs live long and are small; a pass's buffers are big and short-lived.
     * A fixed mmap threshold keeps the big ones in their own mappings, which
     * go back to the system when freed, instead of fragmenting the heap the
     * jobs live in (glibc would otherwise raise the threshold as they come
     * and go). */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    broker_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    dv_id_t iid;
    dv_id_new(&iid);
    dv_id_format(&iid, self->instance);
    self->started_ms = dv_now_ms();
    self->queues = zhashx_new();
    zhashx_set_destructor(self->queues, s_queue_destructor);
    self->types = zhashx_new();
    zhashx_set_destructor(self->types, s_free_item);
    self->worker_by_name = zhashx_new();
    self->pending_keys = zhashx_new(); /* values point into ack batches */
    self->cur = s_group_new();
    if (!self->cur || broker_index_init(&self->index) != 0)
        goto fail;

    /* Two connections: the writer thread's, and this thread's for reads
     * (recovery, idempotency keys, finished jobs). */
    char err[512] = "";
    broker_store_opts_t opts = { cfg->sync };
    broker_store_t *wstore = broker_store_open(cfg->store_url, &opts, err, sizeof err);
    if (wstore)
        self->store = broker_store_open(cfg->store_url, &opts, err, sizeof err);
    if (!wstore || !self->store) {
        dv_log(DV_ERROR, "broker.store_open_failed", DV_STR("store", cfg->store_url),
               DV_STR("error", err));
        broker_store_destroy(&wstore);
        goto fail;
    }
    self->writer = broker_writer_new(wstore);
    if (!self->writer) {
        broker_store_destroy(&wstore);
        goto fail;
    }
    if (s_recover(self) != 0) {
        dv_log(DV_ERROR, "broker.recovery_failed", DV_STR("store", cfg->store_url));
        goto fail;
    }
    if (broker_store_load_queues(self->store, s_on_queue_settings, self) != 0 ||
        s_apply_limits(self) != 0)
        goto fail;
    self->zctx = zmq_ctx_new();
    self->clients = s_bind(self, ZMQ_ROUTER, cfg->clients_ep, "clients");
    self->workers = s_bind(self, ZMQ_ROUTER, cfg->workers_ep, "workers");
    self->events = s_bind(self, ZMQ_PUB, cfg->events_ep, "events");
    if (!self->clients || !self->workers || !self->events)
        goto fail;
    dv_log(DV_INFO, "broker.started", DV_STR("broker", self->instance),
           DV_STR("store", cfg->store_url),
           DV_STR("backend", broker_store_backend(self->store)));
    return self;
fail:
    broker_destroy(&self);
    return NULL;
}

/* Waits until every group recorded so far is durable and its output sent. */
static void
s_drain_groups(broker_t *self)
{
    if (!self->writer)
        return;
    for (int round = 0; round < 2; round++) {
        while (self->inflight) {
            broker_writer_wait(self->writer);
            s_writer_ready(self);
        }
        s_group_submit(self);
    }
}

void
broker_destroy(broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_t *self = *self_p;
    s_drain_groups(self);
    broker_writer_destroy(&self->writer);
    s_group_destroy(&self->inflight);
    if (self->cur) {
        /* Not written (the writer never ran): forget its ended jobs here,
         * they are freed with the index below. */
        while (self->cur->ended) {
            broker_ended_t *e = self->cur->ended;
            self->cur->ended = e->next;
            free(e->result);
            free(e->msg);
            free(e);
        }
        s_group_destroy(&self->cur);
    }
    /* Free live jobs. */
    for (size_t i = 0; i < self->index.cap; i++) {
        broker_job_t *job = self->index.slots ? self->index.slots[i] : NULL;
        if (job)
            broker_job_destroy(&job);
    }
    broker_index_free(&self->index);
    broker_heap_free(&self->timers);
    if (self->worker_by_name) {
        for (broker_worker_t *w = zhashx_first(self->worker_by_name); w;
             w = zhashx_next(self->worker_by_name))
            s_worker_free(w);
        zhashx_destroy(&self->worker_by_name);
    }
    zhashx_destroy(&self->queues);
    zhashx_destroy(&self->types);
    zhashx_destroy(&self->pending_keys);
    free(self->outq);
    if (self->clients)
        zmq_close(self->clients);
    if (self->workers)
        zmq_close(self->workers);
    if (self->events)
        zmq_close(self->events);
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    broker_store_destroy(&self->store);
    free(self);
    *self_p = NULL;
}

void
broker_dump(broker_t *self)
{
    dv_log(DV_INFO, "broker.dump", DV_STR("broker", self->instance),
           DV_INT("live_jobs", (int64_t)self->index.count),
           DV_INT("scheduled", (int64_t)self->timers.count),
           DV_INT("workers", (int64_t)zhashx_size(self->worker_by_name)),
           DV_INT("submitted", (int64_t)self->counters.submitted),
           DV_INT("succeeded", (int64_t)self->counters.succeeded),
           DV_INT("dead", (int64_t)self->counters.dead),
           DV_INT("event_seq", (int64_t)self->event_seq));
    for (broker_queue_t *q = zhashx_first(self->queues); q;
         q = zhashx_next(self->queues))
        dv_log(DV_INFO, "broker.dump_queue", DV_STR("queue", q->name),
               DV_INT("queued", (int64_t)q->ready),
               DV_INT("scheduled", (int64_t)q->scheduled),
               DV_INT("running", (int64_t)q->running), DV_BOOL("paused", q->paused));
    int64_t now = dv_mono_ms();
    for (broker_worker_t *w = zhashx_first(self->worker_by_name); w;
         w = zhashx_next(self->worker_by_name))
        dv_log(DV_INFO, "broker.dump_worker", DV_STR("worker", w->name),
               DV_INT("credit", w->credit), DV_INT("running", (int64_t)w->running.count),
               DV_INT("silent_ms", now - w->last_seen_ms));
}

static bool
s_has_ready_work(broker_t *self)
{
    if (!self->dispatch_needed)
        return false;
    for (broker_worker_t *w = zhashx_first(self->worker_by_name); w;
         w = zhashx_next(self->worker_by_name))
        if (w->credit > 0)
            return true;
    self->dispatch_needed = false;
    return false;
}

/* While one group commits, the next may grow to this many writes; beyond
 * that the broker stops reading new submits until the disk catches up
 * (they wait in ZeroMQ), so memory stays bounded. */
#define BROKER_GROUP_MAX_WRITES 200000

int
broker_run(broker_t *self, volatile int *stop, volatile int *dump)
{
    self->stop = stop;
    zmq_pollitem_t items[] = {
        { self->clients, 0, ZMQ_POLLIN, 0 },
        { self->workers, 0, ZMQ_POLLIN, 0 },
        { NULL, broker_writer_fd(self->writer), ZMQ_POLLIN, 0 },
    };
    while (!*stop) {
        long timeout = self->cfg.heartbeat_ms;
        broker_job_t *next = broker_heap_peek(&self->timers);
        if (next) {
            int64_t until = next->run_at_ms - dv_now_ms();
            if (until < timeout)
                timeout = until < 0 ? 0 : (long)until;
        }
        if (self->next_token_us) {
            int64_t until = (self->next_token_us - dv_mono_us()) / 1000 + 1;
            if (until < timeout)
                timeout = until < 0 ? 0 : (long)until;
        }
        if (s_has_ready_work(self))
            timeout = 0;
        int rc = zmq_poll(items, 3, timeout);
        if (rc < 0 && errno != EINTR)
            break;
        if (self->next_token_us && dv_mono_us() >= self->next_token_us)
            self->dispatch_needed = true;

        s_writer_ready(self);
        s_drain(self, self->workers, s_on_worker_message);
        if (!self->inflight || self->cur->wb.nops < BROKER_GROUP_MAX_WRITES)
            s_drain(self, self->clients, s_on_client_message);
        s_promote_due(self);
        s_heartbeats(self);
        if (self->dispatch_needed)
            s_dispatch(self);
        int64_t now = dv_mono_ms();
        if (now >= self->next_expire_ms) {
            self->next_expire_ms = now + 60000;
            self->cur->wb.expire = true;
            self->cur->wb.expire_now_ms = dv_now_ms();
        }
        s_end_pass(self);

        if (*dump) {
            *dump = 0;
            broker_dump(self);
        }
    }
    dv_log(DV_INFO, "broker.stopping", DV_INT("live_jobs", (int64_t)self->index.count));
    return 0;
}
