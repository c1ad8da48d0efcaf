/* broker_worker - the worker protocol: hello, update, heartbeat, bye, and
 * the expiry of workers that went silent.
 *
 * Owns the worker records (struct broker_worker, by name in
 * self->worker_by_name) and their life: a hello makes or refreshes one
 * (queues, credit, the jobs it still holds), updates report job outcomes
 * and return credit, heartbeats refresh last_seen and publish the
 * worker's metrics, bye or silence removes it and fails its leased jobs as
 * lost (retried per their attempts). Job state changes go through
 * broker_sched.c.
 *
 * Called by the loop for each message on the workers socket, and once per
 * pass for heartbeats. Never blocks.
 *
 * Out of memory: a hello that cannot be handled gets no welcome (logged as
 * broker.reply_dropped) and changes nothing; the worker says hello again
 * after its timeout. A worker event that cannot be built is logged and
 * keeps its sequence number (broker_out.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

#include "dv_body.h"
#include "dv_log.h"

broker_worker_t *
broker_worker_new(broker_t *self, const broker_rid_t *rid)
{
    char name[256];
    memcpy(name, rid->data, rid->len);
    name[rid->len] = '\0';
    broker_worker_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->name = strdup(name);
    if (!w->name) {
        free(w);
        return NULL;
    }
    w->rid = *rid;
    /* Keyed by the name the worker holds. */
    if (dv_map_put(self->worker_by_name, w->name, w) != 0) {
        broker_worker_free(w);
        return NULL;
    }
    return w;
}

int
broker_worker_set_queues(broker_t *self, broker_worker_t *w,
                         const dv_str_t *names, uint32_t n)
{
    broker_queue_t **queues = calloc(n ? n : 1, sizeof *queues);
    if (!queues)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        char qn[DV_NAME_MAX + 1];
        dv_str_copy(names[i], qn, sizeof qn);
        queues[i] = broker_sched_queue(self, qn);
        if (!queues[i]) {
            free(queues);
            return -1;
        }
    }
    free(w->queues);
    w->queues = queues;
    w->nqueues = (int)n;
    w->rr = 0;
    return 0;
}

void
broker_worker_free(broker_worker_t *w)
{
    free(w->name);
    free(w->host);
    free(w->queues);
    free(w->out);
    free(w);
}

void
broker_worker_remove(broker_t *self, broker_worker_t *w, dv_event_kind_t kind,
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
        broker_sched_fail(self, job, &f);
        lost++;
    }
    dv_log(DV_WARN - (kind == DV_EV_WORKER_LEFT), "broker.worker_removed",
           DV_STR("worker", w->name), DV_STR("reason", why),
           DV_INT("jobs_lost", lost));
    dv_event_t ev = { 0 };
    ev.kind_enum = kind;
    ev.worker = dv_str(w->name);
    broker_out_event(self, &ev);
    broker_keys_worker_gone(self->keys, w, broker_now_ms(self));
    for (size_t k = 0; k < self->noutq; k++)
        if (self->outq[k] == w)
            self->outq[k] = self->outq[--self->noutq];
    dv_map_delete(self->worker_by_name, w->name);
    broker_worker_free(w);
}

static broker_worker_t *
s_worker_by_rid(broker_t *self, const broker_rid_t *rid)
{
    char name[256];
    memcpy(name, rid->data, rid->len);
    name[rid->len] = '\0';
    return dv_map_get(self->worker_by_name, name);
}

/* Publishes a worker event whose body (proto's dv_workerinfo_t) describes
 * the worker: host, pid, concurrency, queues, credit, running, its own
 * counters, and (heartbeats) the metrics map it sent, embedded as it came
 * (the decoder checked it is one msgpack value). */
static void
s_worker_event(broker_t *self, broker_worker_t *w, dv_event_kind_t kind,
               const dv_str_t *metrics)
{
    dv_str_t names[DV_QUEUES_MAX];
    int nq = w->nqueues < DV_QUEUES_MAX ? w->nqueues : DV_QUEUES_MAX;
    for (int i = 0; i < nq; i++)
        names[i] = dv_str(w->queues[i]->name);
    dv_workerinfo_t info = {
        .host = dv_str(w->host),
        .pid = w->pid,
        .concurrency = w->concurrency,
        .credit = w->credit,
        .running = (int64_t)w->running.count,
        .busy = w->busy,
        .idle = w->idle,
        .processed = w->processed,
        .failed = w->failed,
        .queues = names,
        .nqueues = (uint32_t)nq,
    };
    if (metrics && metrics->ptr && metrics->len)
        info.metrics = *metrics;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (dv_workerinfo_encode(&info, &sb) != DV_OK) {
        broker_out_event_dropped(self, kind);
    } else {
        dv_event_t ev = { 0 };
        ev.kind_enum = kind;
        ev.worker = dv_str(w->name);
        ev.body = dv_strn(sb.data, sb.size);
        broker_out_event(self, &ev);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* ---- leases: who may report about a job -------------------------------- */

/* w holds job's current lease, the one named. */
static bool
s_holds(const broker_job_t *job, const broker_worker_t *w, uint64_t lease)
{
    return lease && job->state == DV_STATE_RUNNING && job->worker == w &&
           job->lease == lease &&
           !(job->flags & (BROKER_JOB_LIMBO | BROKER_JOB_PENDING));
}

/* A worker may take over an execution that an earlier start of the broker
 * leased to it when nobody runs the job now and the attempt is the one
 * the store expects: the attempt stored as running (still in limbo), or
 * the next one of a waiting job (its lease was sent but never recorded).
 * A lease of this start that is no longer current was revoked for a
 * reason (its worker expired and the attempt was failed): never. */
static bool
s_adoptable(const broker_t *self, const broker_job_t *job, uint64_t lease,
            int32_t attempt)
{
    if (!lease || dv_lease_generation(lease) >= self->generation ||
        (job->flags & BROKER_JOB_PENDING))
        return false;
    if (job->flags & BROKER_JOB_LIMBO)
        return attempt ==
               job->attempt + (job->state == DV_STATE_RUNNING ? 0 : 1);
    return (job->state == DV_STATE_QUEUED ||
            job->state == DV_STATE_SCHEDULED) &&
           attempt == job->attempt + 1;
}

static void
s_adopt(broker_t *self, broker_job_t *job, broker_worker_t *w, uint64_t lease,
        int32_t attempt, bool started)
{
    broker_sched_unplace(self, job);
    job->ready_us = broker_mono_us(self);
    job->attempt = (uint16_t)attempt;
    broker_sched_lease(self, job, w, lease);
    if (started) {
        job->flags |= BROKER_JOB_STARTED;
        job->started_ms = broker_now_ms(self);
    }
    self->counters.adopted++;
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    dv_log(DV_INFO, "broker.lease_adopted", DV_STR("job", id),
           DV_STR("worker", w->name), DV_INT("attempt", attempt),
           DV_INT("generation", (int64_t)dv_lease_generation(lease)));
}

/* A report about a job w does not hold under that lease: it changes
 * nothing, and is answered with a kill naming that lease (stale_lease), so
 * that a copy still held is dropped or stopped; a worker that holds no
 * such copy (its outcome was the last word) ignores it. */
static void
s_stale(broker_t *self, broker_worker_t *w, const broker_job_t *job,
        const dv_update_t *u)
{
    self->counters.stale++;
    const char *why = !job                            ? "no such live job"
                      : dv_state_terminal(job->state) ? "the job has ended"
                      : job->lease == u->lease
                          ? "the lease is no longer this worker's"
                          : "the job is under another lease now";
    char id[DV_ID_TEXT_LEN + 1];
    dv_str_copy(u->id, id, sizeof id);
    dv_log(DV_INFO, "broker.stale_report", DV_STR("job", id),
           DV_STR("worker", w->name),
           DV_STR("kind", dv_update_kind_name(u->kind)),
           DV_INT("attempt", u->attempt),
           DV_INT("generation", (int64_t)dv_lease_generation(u->lease)),
           DV_STR("reason", why));
    char reason[96];
    snprintf(reason, sizeof reason, "stale lease: %s", why);
    dv_msg_t k = { .type = DV_MSG_KILL };
    k.u.kill.id = u->id;
    k.u.kill.lease = u->lease;
    k.u.kill.code = DV_CODE_STALE_LEASE;
    k.u.kill.reason = dv_str(reason);
    if (broker_out_send_now(self->workers, &w->rid, &k) != 0)
        dv_log(DV_ERROR, "broker.kill_dropped", DV_STR("worker", w->name),
               DV_STR("job", id), DV_STR("error", "out of memory"));
}

static void
s_on_hello(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg)
{
    const dv_hello_t *h = &msg->u.hello;
    /* The routing id is the worker's name everywhere (status, events,
     * drain), so it must be a name too: ZeroMQ's own ids start with a NUL. */
    const char *bad = rid->len == 0 ? "is empty"
                      : rid->len > DV_NAME_MAX
                          ? "is too long"
                          : dv_name_check((const char *)rid->data, rid->len);
    if (bad) {
        char why[160];
        snprintf(why, sizeof why,
                 "worker name (the socket's routing id) %s: set "
                 "ZMQ_ROUTING_ID to a name of 1..%d printable UTF-8 bytes",
                 bad, DV_NAME_MAX);
        broker_out_bad_message(self, self->workers, rid,
                               DV_CODE_INVALID_ARGUMENT, why);
        return;
    }
    if (!h->fencing) {
        broker_out_bad_message(
            self, self->workers, rid, DV_CODE_VERSION,
            "this broker fences leases and the worker does not: upgrade the "
            "worker (its reports must carry the lease of their job)");
        return;
    }
    char name[256];
    memcpy(name, rid->data, rid->len);
    name[rid->len] = '\0';
    broker_worker_t *w = dv_map_get(self->worker_by_name, name);
    bool rejoin = w != NULL;
    if (!w && !(w = broker_worker_new(self, rid))) {
        broker_out_dropped(rid, 0, "welcome");
        return;
    }
    if (broker_worker_set_queues(self, w, h->queues, h->nqueues) != 0) {
        /* Not welcomed: it says hello again. */
        if (!rejoin) {
            dv_map_delete(self->worker_by_name, w->name);
            broker_worker_free(w);
        }
        broker_out_dropped(rid, 0, "welcome");
        return;
    }
    free(w->host);
    w->host = dv_str_dup(h->host);
    w->pid = h->pid;
    w->concurrency = h->concurrency;
    w->credit = h->credit;
    w->draining = false;
    w->last_seen_ms = broker_mono_ms(self);
    w->known = true;
    w->seq = w->acked = 0; /* a new session: its updates are acked afresh */
    /* Its API-key grants were its previous session's: void now (it drops
     * them too, and declares its keys again after the welcome). */
    if (rejoin)
        broker_keys_worker_gone(self->keys, w, broker_now_ms(self));

    /* Jobs it still holds: its own stay, executions of an earlier start
     * that nobody else runs are taken over, the rest are revoked (the
     * welcome tells it to drop or stop them). Jobs we think it runs but it
     * does not mention are gone with its previous incarnation. */
    dv_held_t *revoked = h->nheld ? calloc(h->nheld, sizeof *revoked) : NULL;
    if (h->nheld && !revoked) {
        broker_out_dropped(rid, 0, "welcome");
        return;
    }
    uint32_t nrevoked = 0;
    int adopted = 0;
    for (uint32_t i = 0; i < h->nheld; i++) {
        const dv_held_t *hd = &h->held[i];
        dv_id_t id;
        broker_job_t *job = dv_id_parse(hd->id.ptr, hd->id.len, &id) == 0
                                ? broker_index_get(&self->index, &id)
                                : NULL;
        if (job && s_holds(job, w, hd->lease))
            continue;
        if (job && s_adoptable(self, job, hd->lease, hd->attempt)) {
            s_adopt(self, job, w, hd->lease, hd->attempt, hd->started);
            adopted++;
            continue;
        }
        revoked[nrevoked++] = *hd;
    }
    self->counters.revoked += nrevoked;
    if (rejoin) {
        broker_job_t *next;
        for (broker_job_t *job = w->running.head; job; job = next) {
            next = job->next;
            bool held = false;
            for (uint32_t i = 0; i < h->nheld && !held; i++)
                held = h->held[i].lease == job->lease;
            if (!held) {
                dv_failure_t f;
                dv_failure_init(&f);
                f.category = DV_CAT_LOST;
                f.retryable = true;
                f.message = dv_str("worker rejoined without this job");
                broker_sched_fail(self, job, &f);
            }
        }
    }

    dv_msg_t m = { .type = DV_MSG_WELCOME };
    m.u.welcome.broker = dv_str(self->instance);
    m.u.welcome.heartbeat_ms = self->cfg.heartbeat_ms;
    m.u.welcome.worker_timeout_ms = self->cfg.worker_timeout_ms;
    m.u.welcome.revoked = revoked;
    m.u.welcome.nrevoked = nrevoked;
    if (broker_out_send_now(self->workers, rid, &m) != 0)
        broker_out_dropped(rid, 0, "welcome");
    free(revoked);
    self->dispatch_needed = true;

    dv_log(DV_INFO, "broker.worker_joined", DV_STR("worker", w->name),
           DV_INT("concurrency", w->concurrency), DV_INT("credit", w->credit),
           DV_INT("queues", w->nqueues), DV_INT("held", h->nheld),
           DV_INT("adopted", adopted), DV_INT("revoked", nrevoked),
           DV_BOOL("rejoin", rejoin));
    s_worker_event(self, w, DV_EV_WORKER_JOINED, NULL);
}

/* Reports from a worker that said hello: each is applied only under the
 * job's current lease (or takes over an execution of an earlier start,
 * s_adoptable); anything else is stale. */
/* The worker began job's attempt at ts_ms (its clock; 0: now). Returns
 * how long it waited (ms); publishes job.started unless quiet (its outcome
 * comes in the same report and says it). */
static int64_t
s_started(broker_t *self, broker_job_t *job, int64_t ts_ms, bool quiet)
{
    int64_t now_us = broker_mono_us(self);
    int64_t wait_us = now_us - job->ready_us;
    job->started_ms = ts_ms ? ts_ms : broker_now_ms(self);
    job->flags |= BROKER_JOB_STARTED;
    if (wait_us < 0)
        wait_us = 0;
    dv_hist_record(&self->dispatch_us, (uint64_t)wait_us);
    if (!quiet) {
        dv_event_t ev = { 0 };
        ev.wait_ms = wait_us / 1000;
        ev.state = DV_STATE_RUNNING;
        broker_out_job_event(self, DV_EV_JOB_STARTED, job, &ev);
    }
    return wait_us / 1000;
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
        if (job && !s_holds(job, w, u->lease) && u->kind != DV_UPD_RETURNED &&
            s_adoptable(self, job, u->lease, u->attempt))
            s_adopt(self, job, w, u->lease, u->attempt,
                    u->kind != DV_UPD_STARTED);
        if (!job || !s_holds(job, w, u->lease)) {
            s_stale(self, w, job, u);
            continue;
        }
        /* An outcome may carry its attempt's start (a fast job); a
         * success then says it in its own event, without a job.started. */
        bool folded = u->started_ms > 0 && !(job->flags & BROKER_JOB_STARTED) &&
                      (u->kind == DV_UPD_SUCCEEDED || u->kind == DV_UPD_FAILED);
        int64_t wait_ms = 0;
        if (u->kind == DV_UPD_STARTED || folded)
            wait_ms = s_started(
                self, job, u->kind == DV_UPD_STARTED ? u->ts_ms : u->started_ms,
                folded && u->kind == DV_UPD_SUCCEEDED);
        switch (u->kind) {
        case DV_UPD_STARTED:
            break;
        case DV_UPD_PROGRESS: {
            dv_event_t ev = { 0 };
            ev.current = u->current;
            ev.total = u->total;
            ev.message = u->message;
            broker_out_job_event(self, DV_EV_JOB_PROGRESS, job, &ev);
            break;
        }
        case DV_UPD_SUCCEEDED:
            /* The successful attempt is the jobs row itself (worker,
             * started, finished); only failed attempts get an attempts
             * row, which saves a write per job on the hot path. */
            if (!(job->flags & BROKER_JOB_STARTED)) {
                job->started_ms = u->ts_ms;
                job->flags |= BROKER_JOB_STARTED;
            }
            if (folded) {
                self->fold_start = job;
                self->fold_wait_ms = wait_ms;
            }
            broker_sched_finish(self, job, DV_STATE_SUCCEEDED, u->result.ptr,
                                u->result.len, NULL);
            self->fold_start = NULL;
            break;
        case DV_UPD_FAILED:
            broker_sched_fail(self, job, &u->failure);
            break;
        case DV_UPD_RETURNED: {
            broker_sched_unplace(self, job);
            job->attempt--;
            job->run_at_ms = 0;
            broker_sched_place(self, job, true);
            char idt[DV_ID_TEXT_LEN + 1];
            broker_id_text(job, idt);
            if (broker_wbatch_waiting(&self->cur->wb, idt, DV_STATE_QUEUED, 0,
                                      job->attempt, NULL) != 0)
                broker_write_lost(self);
            break;
        }
        }
    }
    if (msg->u.update.seq > w->seq)
        w->seq = msg->u.update.seq;
    if (msg->u.update.credit > 0) {
        w->credit += msg->u.update.credit;
        self->dispatch_needed = true;
    }
}

/* A worker's lines about the API keys it uses (broker_keys.h). */
static void
s_on_keys(broker_t *self, broker_worker_t *w, const dv_msg_t *msg)
{
    int64_t now = broker_now_ms(self);
    for (uint32_t i = 0; i < msg->u.keys.nitems; i++) {
        int rc = broker_keys_on_line(self->keys, w, w->name,
                                     &msg->u.keys.items[i], now);
        if (rc != 0)
            dv_log(DV_ERROR, "broker.keys_dropped", DV_STR("worker", w->name),
                   DV_STR("error", rc == DV_ETOOBIG
                                       ? "more API keys than the broker holds "
                                         "(10000)"
                                       : "out of memory"));
    }
}

void
broker_worker_on_message(broker_t *self, const broker_rid_t *rid,
                         const dv_msg_t *msg)
{
    broker_worker_t *w = s_worker_by_rid(self, rid);
    if (w)
        w->last_seen_ms = broker_mono_ms(self);
    switch (msg->type) {
    case DV_MSG_HELLO:
        s_on_hello(self, rid, msg);
        break;
    case DV_MSG_UPDATE:
        /* Nothing is taken from a peer that has not said hello. */
        if (w && w->known)
            s_on_update(self, w, msg);
        else
            broker_out_error(self, self->workers, rid, 0,
                             DV_CODE_UNKNOWN_WORKER,
                             "unknown worker: send hello");
        break;
    case DV_MSG_HEARTBEAT:
        if (w) {
            w->busy = msg->u.heartbeat.busy;
            w->idle = msg->u.heartbeat.idle;
            w->processed = msg->u.heartbeat.processed;
            w->failed = msg->u.heartbeat.failed;
            s_worker_event(self, w, DV_EV_WORKER_HEARTBEAT,
                           &msg->u.heartbeat.body);
        } else {
            broker_out_error(self, self->workers, rid, 0,
                             DV_CODE_UNKNOWN_WORKER,
                             "unknown worker: send hello");
        }
        break;
    case DV_MSG_KEYS:
        if (w && w->known)
            s_on_keys(self, w, msg);
        else
            broker_out_error(self, self->workers, rid, 0,
                             DV_CODE_UNKNOWN_WORKER,
                             "unknown worker: send hello");
        break;
    case DV_MSG_BYE:
        if (w)
            broker_worker_remove(self, w, DV_EV_WORKER_LEFT, "worker said bye");
        break;
    default:
        broker_out_unexpected(self, self->workers, rid, msg);
    }
}

/* Workers removed per walk of the map in broker_worker_expire. */
#define S_EXPIRE_BATCH 64

void
broker_worker_expire(broker_t *self)
{
    int64_t now = broker_mono_ms(self);
    /* Removing a worker changes the map: collect a batch on the stack,
     * remove it, and walk again while a walk fills a whole batch. */
    for (;;) {
        broker_worker_t *expired[S_EXPIRE_BATCH], *w;
        size_t n = 0;
        DV_MAP_EACH(w, self->worker_by_name)
        {
            if (n < S_EXPIRE_BATCH &&
                now - w->last_seen_ms > self->cfg.worker_timeout_ms)
                expired[n++] = w;
        }
        if (n == 0)
            return;
        for (size_t i = 0; i < n; i++) {
            char why[128];
            snprintf(why, sizeof why,
                     "worker %s went silent for %" PRId64 " ms",
                     expired[i]->name, now - expired[i]->last_seen_ms);
            broker_worker_remove(self, expired[i], DV_EV_WORKER_EXPIRED, why);
        }
        if (n < S_EXPIRE_BATCH)
            return; /* that walk saw them all */
    }
}

/* The fleet's API keys as `drover keys` shows them, for the collector
 * (/metrics): one "keys.state" event per heartbeat while there are keys. */
static void
s_keys_event(broker_t *self)
{
    if (broker_keys_count(self->keys) == 0)
        return;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    broker_keys_describe(self->keys, broker_now_ms(self), &pk);
    dv_event_t ev = { 0 };
    ev.kind = dv_str("keys.state");
    ev.body = dv_strn(sb.data, sb.size);
    broker_out_event(self, &ev);
    msgpack_sbuffer_destroy(&sb);
}

void
broker_worker_heartbeats(broker_t *self)
{
    int64_t now = broker_mono_ms(self);
    if (now < self->next_heartbeat_ms)
        return;
    self->next_heartbeat_ms = now + self->cfg.heartbeat_ms;
    broker_worker_expire(self);
    s_keys_event(self);
    /* A sign of life now, the same bytes for all; and to each worker with
     * updates applied since its last ack, a heartbeat that acks them. That
     * one leaves after this pass's commit, so what it acks is durable (and
     * while the store cannot be written, nothing is acked, but the workers
     * still hear from us). */
    dv_msg_t hb = { .type = DV_MSG_HEARTBEAT };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    bool encoded = dv_msg_encode(&hb, &sb) == DV_OK;
    broker_worker_t *w;
    DV_MAP_EACH(w, self->worker_by_name)
    {
        if (encoded)
            broker_out_send_raw(self->workers, &w->rid, sb.data, sb.size);
        if (w->seq == w->acked)
            continue;
        dv_msg_t ack = { .type = DV_MSG_HEARTBEAT };
        ack.u.heartbeat.ack = w->seq;
        if (broker_out_send_later(self, self->workers, &w->rid, NULL, &ack) ==
            0)
            w->acked = w->seq;
        else
            encoded = false;
    }
    if (!encoded)
        dv_log(DV_ERROR, "broker.heartbeat_dropped",
               DV_STR("error", "out of memory"));
    msgpack_sbuffer_destroy(&sb);
}
