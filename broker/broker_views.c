/* broker_views - the read-only answers to clients: ctrl "status" (the
 * broker's counters, queues and workers, from memory) and ctrl "job" (one
 * job with its attempts, options and dependencies: from memory while it
 * is live, else from the store through the reader thread).
 *
 * Called by broker_ctrl.c for those verbs. Never waits for the store: a
 * job's read goes to the reader thread (broker_reads.c) and is answered
 * when it is back; a live job is answered without its attempts when the
 * reader is busy or stopping.
 *
 * Out of memory: the answer is the error "broker out of memory".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "broker_schedule.h"

#include "dv_body.h"
#include "dv_log.h"

static const char s_oom[] = "broker out of memory";

/* The status body (proto's dv_status_t) into out. Returns DV_OK or
 * DV_ENOMEM. Status is asked for now and then, so its arrays are made per
 * call. */
static int
s_status_body(broker_t *self, msgpack_sbuffer *out)
{
    dv_status_t st = {
        .broker = dv_str(self->instance),
        .store = dv_str(broker_store_backend(self->store)),
        .uptime_ms = broker_now_ms(self) - self->started_ms,
        .nqueues = (uint32_t)dv_map_size(self->queues),
        .nworkers = (uint32_t)dv_map_size(self->worker_by_name),
        .seq = self->event_seq_sent,
        .schedules = (int64_t)dv_map_size(self->schedules),
    };
    const broker_schedule_t *soonest = broker_schedule_next(self);
    if (soonest) {
        st.next_schedule = dv_str(soonest->name);
        st.next_schedule_ms = soonest->next_ms;
    }
    int64_t now_us = broker_mono_us(self);
    size_t nnames = 0;
    broker_worker_t *w;
    DV_MAP_EACH(w, self->worker_by_name)
    nnames += (size_t)w->nqueues;
    st.queues = calloc(st.nqueues ? st.nqueues : 1, sizeof *st.queues);
    st.workers = calloc(st.nworkers ? st.nworkers : 1, sizeof *st.workers);
    dv_str_t *names = calloc(nnames ? nnames : 1, sizeof *names);
    int rc = DV_ENOMEM;
    if (!st.queues || !st.workers || !names)
        goto done;
    uint32_t i = 0;
    broker_queue_t *q;
    DV_MAP_EACH(q, self->queues)
    {
        int64_t ready_us = 0;
        int64_t oldest_ms =
            broker_queue_oldest(q, &ready_us) && now_us > ready_us
                ? (now_us - ready_us) / 1000
                : 0;
        st.queues[i++] = (dv_status_queue_t){
            .name = dv_str(q->name),
            .rate = q->rate,
            .max_running = q->max_running,
            .queued = (int64_t)q->ready,
            .scheduled = (int64_t)q->scheduled,
            .running = (int64_t)q->running,
            .waiting = (int64_t)q->waiting,
            .paused = q->paused,
            .oldest_ms = oldest_ms,
        };
    }
    i = 0;
    dv_str_t *next = names;
    DV_MAP_EACH(w, self->worker_by_name)
    {
        dv_status_worker_t *sw = &st.workers[i++];
        *sw = (dv_status_worker_t){
            .name = dv_str(w->name),
            .draining = w->draining,
            .host = dv_str(w->host),
            .pid = w->pid,
            .concurrency = w->concurrency,
            .credit = w->credit,
            .running = (int64_t)w->running.count,
            .processed = w->processed,
            .failed = w->failed,
            .queues = next,
            .nqueues = (uint32_t)w->nqueues,
        };
        for (int k = 0; k < w->nqueues; k++)
            *next++ = dv_str(w->queues[k]->name);
    }
    const broker_counters_t *c = &self->counters;
    st.counters = (dv_status_counters_t){
        .submitted = (int64_t)c->submitted,
        .dispatched = (int64_t)c->dispatched,
        .succeeded = (int64_t)c->succeeded,
        .failed = (int64_t)c->failed,
        .retried = (int64_t)c->retried,
        .dead = (int64_t)c->dead,
        .cancelled = (int64_t)c->cancelled,
        .lost = (int64_t)c->lost,
        .live_jobs = (int64_t)self->index.count,
        .dispatch_p50_us = (int64_t)dv_hist_quantile(&self->dispatch_us, 0.50),
        .dispatch_p99_us = (int64_t)dv_hist_quantile(&self->dispatch_us, 0.99),
        .stale = (int64_t)c->stale,
        .adopted = (int64_t)c->adopted,
        .revoked = (int64_t)c->revoked,
        .rejoining = (int64_t)self->limbo.count,
        .store_reads = (int64_t)self->reads_pushed,
    };
    if (self->store_failed) {
        st.store_failing = true;
        st.store_failure = (dv_status_store_t){
            .error = dv_str(dv_strerror(self->store_err)),
            .since_ms = self->store_failed_ms,
            .retries = (int64_t)self->store_retries,
            .refused = (int64_t)self->store_refused,
            .waiting =
                (int64_t)(self->cur->wb.nops +
                          (self->inflight ? self->inflight->wb.nops : 0)),
        };
    }
    rc = dv_status_encode(&st, out);
done:
    free(st.queues);
    free(st.workers);
    free(names);
    return rc;
}

typedef struct {
    msgpack_packer *pk;
    const broker_t *self;
    bool hidden; /* the sender may not read it: nothing was packed */
} s_jobview_ctx_t;

/* The keys of a ctrl "job" answer beside the job's own: "attempts" or
 * "attempts_error", "options", "waits_for" and "waited_by". */
#define S_JOB_EXTRA_KEYS 4

static void
s_on_jobview(void *arg, const broker_jobview_t *v)
{
    s_jobview_ctx_t *c = arg;
    if (!broker_auth_may_read(c->self, v->owner)) {
        c->hidden = true;
        return;
    }
    msgpack_packer *pk = c->pk;
    msgpack_pack_map(pk, 8 + S_JOB_EXTRA_KEYS);
    broker_pack_kv_str(pk, "id", v->id);
    broker_pack_kv_str(pk, "queue", v->queue);
    broker_pack_kv_str(pk, "type", v->type);
    broker_pack_kv_str(pk, "state", dv_state_name(v->state));
    broker_pack_kv_int(pk, "attempt", v->attempt);
    broker_pack_str(pk, "result");
    /* The stored result is one msgpack value: embed its bytes as they are. */
    if (v->result && v->result_len &&
        dv_mp_validate(v->result, v->result_len, DV_VALUE_DEPTH_MAX) == DV_OK)
        pk->callback(pk->data, v->result, v->result_len);
    else
        msgpack_pack_nil(pk);
    broker_pack_kv_str(pk, "category", v->category);
    broker_pack_kv_str(pk, "error", v->error);
}

/* The keys of a live job (map header not included). */
static void
s_pack_live(const broker_t *self, msgpack_packer *pk, const char *idtext,
            const broker_job_t *job)
{
    broker_pack_kv_str(pk, "id", idtext);
    broker_pack_kv_str(pk, "queue", job->queue->name);
    broker_pack_kv_str(pk, "type", job->type);
    broker_pack_kv_str(pk, "state",
                       !(job->flags & BROKER_JOB_PENDING)
                           ? dv_state_name(job->state)
                       : broker_deps_has(self, job) ? "waiting"
                                                    : "queued");
    broker_pack_kv_int(pk, "attempt", job->attempt);
    broker_pack_kv_int(pk, "max_attempts", job->max_attempts);
    broker_pack_kv_str(pk, "worker", job->worker ? job->worker->name : NULL);
}
#define S_LIVE_KEYS 7

/* "attempts": the stored attempts the read packed (broker_reads.c), or,
 * when they could not be read, "attempts_error" with why: the job is
 * answered either way. */
/* "options": what the job was submitted with, from its stored record
 * (the read's), else a live job's own (key and creation time unknown
 * then), else nil. */
static void
s_pack_job_options(msgpack_packer *pk, const broker_viewed_t *it,
                   const broker_job_t *job)
{
    broker_pack_str(pk, "options");
    if (it->options && it->options_len) {
        pk->callback(pk->data, it->options, it->options_len);
    } else if (job) {
        broker_options_t o = {
            .priority = job->priority,
            .max_attempts = job->max_attempts,
            .timeout_ms = job->timeout_ms,
            .backoff = { .base_ms = job->backoff_base_ms,
                         .factor = job->backoff_factor,
                         .cap_ms = job->backoff_cap_ms,
                         .jitter = (job->flags & BROKER_JOB_JITTER) != 0 },
            .batch = job->batch,
            .trace = job->trace,
            .payload = job->payload,
            .payload_len = job->payload_len,
        };
        broker_pack_options(pk, &o);
    } else {
        msgpack_pack_nil(pk);
    }
}

static void
s_pack_attempts(msgpack_packer *pk, const broker_viewed_t *it, const char *why)
{
    if (why || it->arc < 0) {
        broker_pack_kv_str(pk, "attempts_error",
                           why ? why : dv_strerror(it->arc));
        return;
    }
    broker_pack_str(pk, "attempts");
    msgpack_pack_array(pk, it->nattempts);
    if (it->nattempts && it->attempts_len)
        pk->callback(pk->data, it->attempts, it->attempts_len);
}

/* "waits_for" and "waited_by": [{id, state, any}] as stored, a job live
 * in memory with its state there (the store's may lag). */
static void
s_pack_deps(const broker_t *self, msgpack_packer *pk, const broker_viewed_t *it)
{
    static const char *const keys[] = { "waits_for", "waited_by" };
    for (int k = 0; k < 2; k++) {
        uint32_t from = k ? it->nfor : 0, n = k ? it->nby : it->nfor;
        broker_pack_str(pk, keys[k]);
        msgpack_pack_array(pk, it->deps ? n : 0);
        for (uint32_t i = 0; it->deps && i < n; i++) {
            const broker_dep_row_t *r = &it->deps[from + i];
            dv_state_t st = r->state;
            dv_id_t id;
            const broker_job_t *job =
                dv_id_parse(r->id, (unsigned)strlen(r->id), &id) == 0
                    ? broker_index_get(&self->index, &id)
                    : NULL;
            if (job && !(job->flags & BROKER_JOB_PENDING))
                st = (dv_state_t)job->state;
            msgpack_pack_map(pk, 3);
            broker_pack_kv_str(pk, "id", r->id);
            broker_pack_kv_str(pk, "state", dv_state_name(st));
            broker_pack_str(pk, "any");
            if (r->any)
                msgpack_pack_true(pk);
            else
                msgpack_pack_false(pk);
        }
    }
}

/* Sends a packed ctrl "job" answer, or not_found / out of memory. */
static void
s_job_reply(broker_t *self, const broker_rid_t *rid, uint64_t req,
            broker_body_t *body, bool found)
{
    if (!found)
        broker_out_reply(self, rid, req, DV_CODE_NOT_FOUND, "no such job", NULL,
                         false);
    else if (body->failed)
        broker_out_reply(self, rid, req, DV_CODE_NO_MEMORY, s_oom, NULL, false);
    else
        broker_out_reply(self, rid, req, DV_CODE_NONE, NULL, &body->sb, false);
}

/* Answers ctrl "job" for a live job the sender may read, from memory, with
 * the attempts in it (a read), or why there are none. */
static void
s_job_live(broker_t *self, const broker_rid_t *rid, uint64_t req,
           const char *idtext, const broker_job_t *job,
           const broker_viewed_t *it, const char *why)
{
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    msgpack_pack_map(&pk, S_LIVE_KEYS + S_JOB_EXTRA_KEYS);
    s_pack_live(self, &pk, idtext, job);
    s_pack_attempts(&pk, it, why);
    s_pack_job_options(&pk, it, job);
    s_pack_deps(self, &pk, it);
    s_job_reply(self, rid, req, &body, true);
    broker_body_destroy(&body);
}

void
broker_client_status(broker_t *self, const broker_rid_t *rid, uint64_t req)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (s_status_body(self, &sb) != DV_OK)
        broker_out_reply(self, rid, req, DV_CODE_NO_MEMORY, s_oom, NULL, false);
    else
        broker_out_reply(self, rid, req, DV_CODE_NONE, NULL, &sb, false);
    msgpack_sbuffer_destroy(&sb);
}

/* The read for ctrl "job" is back (sender as self->sender): the job
 * from memory if it is live now (it may have become live again since:
 * retried), else from the store; with its attempts either way. */
static void
s_job_answer(broker_t *self, broker_views_t *v)
{
    const broker_viewed_t *it = &v->items[0];
    dv_id_t id;
    const broker_job_t *job = NULL;
    if (dv_id_parse(it->id, DV_ID_TEXT_LEN, &id) == 0)
        job = broker_index_get(&self->index, &id);
    if (v->base.stopped) {
        broker_out_reply(self, &v->rid, v->req, DV_CODE_TRY_AGAIN,
                         broker_reads_refusal(BROKER_READER_STOPPED), NULL,
                         false);
        return;
    }
    if (job) {
        /* A job the sender may not read is answered as one that does not
         * exist, live or stored. */
        if (!broker_auth_may_read(self,
                                  broker_sched_owner_name(self, job->owner)))
            broker_out_reply(self, &v->rid, v->req, DV_CODE_NOT_FOUND,
                             "no such job", NULL, false);
        else
            s_job_live(self, &v->rid, v->req, it->id, job, it, NULL);
        return;
    }
    if (it->rc < 0) {
        broker_out_reply(
            self, &v->rid, v->req,
            it->rc == DV_ENOMEM ? DV_CODE_NO_MEMORY : DV_CODE_STORE,
            it->rc == DV_ENOMEM ? s_oom : "store read failed", NULL, false);
        return;
    }
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    s_jobview_ctx_t ctx = { &pk, self, false };
    if (it->rc == 1)
        s_on_jobview(&ctx, it->view);
    bool found = it->rc == 1 && !ctx.hidden;
    if (found) {
        s_pack_attempts(&pk, it, NULL);
        s_pack_job_options(&pk, it, NULL);
        s_pack_deps(self, &pk, it);
    }
    s_job_reply(self, &v->rid, v->req, &body, found);
    broker_body_destroy(&body);
}

void
broker_client_job(broker_t *self, const broker_rid_t *rid, uint64_t req,
                  const char *idtext, const broker_job_t *job)
{
    /* A job the sender may not read is answered as one that does not
     * exist (not_found), live or stored: before any read. */
    if (job && !broker_auth_may_read(
                   self, broker_sched_owner_name(self, job->owner))) {
        broker_out_reply(self, rid, req, DV_CODE_NOT_FOUND, "no such job", NULL,
                         false);
        return;
    }
    /* One read either way: the attempts (and, for an ended job, the job
     * itself) are in the store. Answered once the read is back. */
    broker_views_t *v = broker_views_new(self, rid, req, 1, s_job_answer);
    int rc = v ? 0 : DV_ENOMEM;
    if (v) {
        snprintf(v->items[0].id, sizeof v->items[0].id, "%s", idtext);
        v->items[0].want_attempts = true;
        rc = broker_reads_push(self, &v->base, true);
    }
    if (rc != 0)
        broker_views_free(v);
    if (rc != 0 && job) {
        /* The live job is in memory: answered without its attempts. */
        broker_viewed_t none = { .arc = 0 };
        s_job_live(self, rid, req, idtext, job, &none,
                   rc == DV_ENOMEM ? s_oom : broker_reads_refusal(rc));
    } else if (rc == DV_ENOMEM) {
        broker_out_reply(self, rid, req, DV_CODE_NO_MEMORY, s_oom, NULL, false);
    } else if (rc != 0) {
        broker_out_reply(self, rid, req, DV_CODE_TRY_AGAIN,
                         broker_reads_refusal(rc), NULL, false);
    }
}
