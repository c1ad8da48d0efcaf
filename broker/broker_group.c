/* broker_group - group commit: a pass's store writes go to the writer
 * thread as one group, and what depended on them leaves once it is
 * durable.
 *
 * Owns the groups (self->cur, being built; self->inflight, with the
 * writer) and their flushing: submit acks (jobs become placed and
 * dispatchable only now), results to waiting clients (ended jobs are freed
 * only now), and the replies and events queued with broker_out_send_later,
 * in the order they were produced. Also sends each pass's dispatched jobs
 * to their workers, before their leases are durable.
 *
 * Called by the loop: end_pass once per pass, writer_ready when the
 * writer's eventfd fires, drain_all at shutdown (the call that blocks,
 * waiting for the writer). One group is with the writer at a time; the
 * next grows meanwhile. While a check scans the store (broker_check.c) the
 * next group waits, so that the store stays as the check's copy of memory.
 *
 * Idempotency keys of a durable group stay in self->pending_keys until
 * every store read pushed before it was durable has come back
 * (self->settling): a key lookup that ran before the commit may have
 * missed the insert, and its submit must still find the key pending.
 *
 * A group the store could not commit (a full disk) is not dropped: its
 * submits are refused, the rest of it (state changes of existing jobs,
 * attempts, queue settings, and the output waiting on them) is kept and
 * written again after a backoff (100 ms doubling to 2 s) until it commits,
 * before any later group. Meanwhile the broker refuses new submits and
 * dispatches nothing (self->store_failed); the outage is logged once when
 * it starts (broker.store_failed), once a minute while it lasts and once
 * when it ends (broker.store_recovered). Only at shutdown is a failing
 * group given up, after a few seconds (broker.store_unwritten).
 *
 * Out of memory: jobs that cannot be sent to a worker are handed back to
 * the front of their queues, unleased, credit restored; an ack or result
 * that cannot be built or sent is logged as broker.reply_dropped.
 */
#include <assert.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "broker_internal.h"
#include "dv_log.h"

/* A group that failed is written again after this, doubling up to the
 * most (self->store_retry_min_ms / _max_ms when set). */
#define S_RETRY_MIN_MS 100
#define S_RETRY_MAX_MS 2000
/* While the store stays unwritable, a reminder this often. */
#define S_REMIND_MS 60000
/* At shutdown, a group that fails is tried this long, then given up. */
#define S_SHUTDOWN_TRY_MS 3000
/* Bytes of ended-job records a group keeps for the next round. */
#define S_ENDED_KEEP (1u << 20)
/* A durable group is kept for reuse if its output buffers are no bigger. */
#define S_SPARE_BYTES_MAX (4u << 20)

/* About what a job event takes in an events batch. */
#define S_EVENT_BYTES 200

/* Gives sb room for n bytes (at most S_RESERVE_MAX), if memory allows:
 * without it, it grows as it is written. */
#define S_RESERVE_MAX (64u << 20)
static void
s_reserve(msgpack_sbuffer *sb, size_t n)
{
    if (n > S_RESERVE_MAX)
        n = S_RESERVE_MAX;
    if (n <= sb->alloc)
        return;
    char *d = realloc(sb->data, n);
    if (d) {
        sb->data = d;
        sb->alloc = n;
    }
}

/* Sends the acks of g's submits. With refused NULL the group is durable:
 * the new jobs are placed (dispatchable from now on) and acknowledged.
 * Otherwise every ack not refused already is refused with that reason and
 * DV_CODE_STORE, the new jobs are forgotten, and a duplicate is refused
 * too (the job it names may be one of this group). Returns how many new
 * jobs were refused. */
static uint32_t
s_flush_acks(broker_t *self, broker_group_t *g, const char *refused)
{
    uint32_t nrefused = 0;
    broker_ack_batch_t *b = g->acks;
    if (!refused) {
        /* Their job.submitted events go into the current group's batch:
         * room for all at once, rather than doubling it as they come (each
         * doubling copied the batch so far). */
        size_t n = 0;
        for (broker_ack_batch_t *x = b; x; x = x->next)
            n += x->n;
        s_reserve(&self->cur->evbuf, self->cur->evbuf.size + n * S_EVENT_BYTES);
    }
    while (b) {
        for (uint32_t i = 0; i < b->n; i++) {
            broker_job_t *job = b->jobs[i];
            if (job && job->batch)
                broker_batch_durable(self, job, !refused);
            if (job && !refused) {
                job->flags &= (uint8_t)~BROKER_JOB_PENDING;
                if (!broker_deps_durable(self, job))
                    broker_sched_place(self, job, false);
                self->counters.submitted++;
                dv_event_t ev = { 0 };
                ev.state = job->state;
                ev.run_at_ms =
                    job->state == DV_STATE_SCHEDULED ? job->run_at_ms : 0;
                broker_out_job_event(self, DV_EV_JOB_SUBMITTED, job, &ev);
                if (job->state == DV_STATE_WAITING)
                    broker_deps_submitted(self, job);
            } else if (job) {
                /* Jobs that wait for it will not see it end: cancelled. */
                broker_deps_ended(self, job, DV_STATE_CANCELLED);
                broker_index_del(&self->index, job);
                broker_job_destroy(&job);
                b->ids[i][0] = '\0';
                b->errors[i] = refused;
                b->acks[i].code = DV_CODE_STORE;
                nrefused++;
            } else if (refused && !b->errors[i]) {
                b->acks[i].duplicate = false;
                b->errors[i] = refused;
                b->acks[i].code = DV_CODE_STORE;
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
        if (b->rid.len == 0) /* the broker's own (one job) */
            broker_self_acked(self, b->req, &b->acks[0]);
        else if (broker_out_send_now(self->clients, &b->rid, &m) != 0)
            broker_out_dropped(&b->rid, b->req, "submit reply");
        broker_ack_batch_t *next = b->next;
        free(b->acks);
        free(b->ids);
        free(b->errors);
        free(b->whys);
        free(b->jobs);
        free(b);
        b = next;
    }
    g->acks = NULL;
    g->acks_tail = &g->acks;
    return nrefused;
}

static void
s_flush_jobs(broker_t *self)
{
    for (size_t k = 0; k < self->noutq; k++) {
        broker_worker_t *w = self->outq[k];
        dv_job_t *jobs = calloc(w->out_count, sizeof *jobs);
        char(*ids)[DV_ID_TEXT_LEN + 1] = calloc(w->out_count, sizeof *ids);
        int rc = DV_ENOMEM;
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
                    j->payload =
                        dv_strn((const char *)job->payload, job->payload_len);
                j->trace = dv_str(job->trace);
                j->batch = dv_str(job->batch);
                j->attempt = job->attempt;
                j->max_attempts = job->max_attempts;
                j->timeout_ms = job->timeout_ms;
                j->enqueued_ms = dv_id_time_ms(&job->id); /* when submitted */
                j->lease = job->lease;
            }
            dv_msg_t m = { .type = DV_MSG_JOBS };
            m.u.jobs.jobs = jobs;
            m.u.jobs.njobs = n;
            rc = broker_out_send_now(self->workers, &w->rid, &m);
        }
        free(jobs);
        free(ids);
        if (rc != 0) {
            /* Not sent: not leased either. */
            dv_log(DV_ERROR, "broker.dispatch_failed",
                   DV_STR("worker", w->name), DV_INT("jobs", w->out_count),
                   DV_STR("error", "out of memory"));
            broker_sched_unsend(self, w);
        }
        w->out_count = 0;
    }
    self->noutq = 0;
}

static bool
s_every(const void *item, void *ctx)
{
    (void)item;
    (void)ctx;
    return true;
}

/* Forgets g's pending results and its ended jobs (out of the index). */
static void
s_free_ended(broker_t *self, broker_group_t *g)
{
    dv_map_delete_if(g->results_out, s_every, NULL);
    while (g->ended) {
        broker_ended_t *e = g->ended;
        g->ended = e->next;
        broker_index_del(&self->index, e->job);
        broker_job_destroy(&e->job);
    }
    g->ended_tail = &g->ended;
    dv_arena_reset(&g->ended_arena, S_ENDED_KEEP);
}

static void
s_flush_results(broker_t *self, broker_group_t *g)
{
    /* Outcomes of jobs that ended in this group, to their waiters. */
    for (broker_ended_t *e = g->ended; e; e = e->next) {
        /* The id's text lives as long as the group's ended jobs: until
         * s_free_ended, after the results went. */
        char *id = e->job->waiters
                       ? dv_arena_alloc(&g->ended_arena, DV_ID_TEXT_LEN + 1)
                       : NULL;
        if (id)
            dv_id_format(&e->job->id, id);
        for (broker_waiter_t *wt = e->job->waiters; wt; wt = wt->next) {
            broker_rid_t rid;
            rid.len = wt->len;
            memcpy(rid.data, wt->rid, wt->len);
            broker_results_t *r =
                e->incomplete ? NULL : broker_client_results_for(g, &rid);
            dv_result_t *it = r && id ? broker_client_results_add(r) : NULL;
            if (!it) {
                broker_out_dropped(&rid, 0, "result");
                continue;
            }
            it->id = dv_strn(id, DV_ID_TEXT_LEN);
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
    broker_results_t *r;
    DV_MAP_EACH(r, g->results_out)
    {
        /* Keep each message well under the frame limit. */
        uint32_t start = 0;
        while (start < r->n) {
            uint32_t count = r->n - start;
            if (count > 5000)
                count = 5000;
            dv_msg_t m = { .type = DV_MSG_RESULT };
            m.u.result.results = r->items + start;
            m.u.result.nresults = count;
            if (broker_out_send_now(self->clients, &r->rid, &m) != 0)
                broker_out_dropped(&r->rid, 0, "result");
            start += count;
        }
    }
    s_free_ended(self, g);
}

static void
s_flush_sends(broker_t *self, broker_group_t *g)
{
    for (size_t i = 0; i < g->nsends; i++) {
        broker_send_t *snd = &g->sends[i];
        if (snd->batch) {
            zmq_send(snd->socket, snd->topic, strlen(snd->topic), ZMQ_SNDMORE);
            zmq_send(snd->socket, g->evbuf.data + snd->off, snd->len,
                     ZMQ_DONTWAIT);
            continue;
        }
        const char *data = g->outbuf.data + snd->off;
        if (snd->rid) {
            broker_out_send_raw(snd->socket, snd->rid, data, snd->len);
            free(snd->rid);
        } else {
            zmq_send(snd->socket, snd->topic, strlen(snd->topic), ZMQ_SNDMORE);
            zmq_send(snd->socket, data, snd->len, ZMQ_DONTWAIT);
        }
    }
    g->nsends = 0;
    g->outbuf.size = 0; /* keep the memory for the next group */
    g->evbuf.size = 0;
    g->batch = SIZE_MAX;
    if (g->event_seq > self->event_seq_sent)
        self->event_seq_sent = g->event_seq;
    g->event_seq = 0;
}

/* Forgets g's replies and events unsent. */
static void
s_drop_sends(broker_group_t *g)
{
    for (size_t i = 0; i < g->nsends; i++)
        free(g->sends[i].rid);
    g->nsends = 0;
    g->outbuf.size = 0;
    g->evbuf.size = 0;
    g->batch = SIZE_MAX;
    g->event_seq = 0;
}

/* ---- groups -------------------------------------------------------------------- */

/* Frees the group's idempotency keys (out of self->pending_keys by now). */
static void
s_free_keys(broker_group_t *g)
{
    while (g->keys) {
        broker_pkey_t *k = g->keys;
        g->keys = k->next;
        free(k);
    }
}

broker_group_t *
broker_group_new(void)
{
    broker_group_t *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->results_out = dv_map_new(broker_client_results_destroy);
    if (!g->results_out) {
        free(g);
        return NULL;
    }
    broker_wbatch_init(&g->wb);
    g->acks_tail = &g->acks;
    g->ended_tail = &g->ended;
    msgpack_sbuffer_init(&g->outbuf);
    msgpack_sbuffer_init(&g->evbuf);
    g->batch = SIZE_MAX;
    return g;
}

void
broker_group_destroy(broker_group_t **g_p)
{
    broker_group_t *g = *g_p;
    if (!g)
        return;
    broker_wbatch_free(&g->wb);
    dv_arena_free(&g->ended_arena);
    for (size_t i = 0; i < g->nsends; i++)
        free(g->sends[i].rid);
    free(g->sends);
    msgpack_sbuffer_destroy(&g->outbuf);
    msgpack_sbuffer_destroy(&g->evbuf);
    dv_map_destroy(&g->results_out);
    s_free_keys(g);
    free(g);
    *g_p = NULL;
}

static bool
s_group_empty(const broker_group_t *g)
{
    return g->wb.nops == 0 && !g->wb.expire && !g->acks && !g->ended &&
           g->nsends == 0 && dv_map_size(g->results_out) == 0;
}

/* Output that waits on g: ended jobs (their results), replies and events. */
static size_t
s_held(const broker_group_t *g)
{
    size_t n = g->nsends + dv_map_size(g->results_out);
    for (const broker_ended_t *e = g->ended; e; e = e->next)
        n++;
    return n;
}

/* Takes g's idempotency keys out of self->pending_keys and frees them. */
static void
s_forget_keys(broker_t *self, broker_group_t *g)
{
    for (broker_pkey_t *k = g->keys; k; k = k->next)
        dv_map_delete(self->pending_keys, k->key);
    s_free_keys(g);
}

/* g is durable: its keys are forgotten now if no store read is out, else
 * once the reads out now have come back. */
static void
s_retire_keys(broker_t *self, broker_group_t *g)
{
    if (self->reads_popped == self->reads_pushed) {
        s_forget_keys(self, g);
        return;
    }
    while (g->keys) {
        broker_pkey_t *k = g->keys;
        g->keys = k->next;
        k->next = NULL;
        k->until = self->reads_pushed;
        *self->settling_tail = k;
        self->settling_tail = &k->next;
    }
}

void
broker_group_settle_keys(broker_t *self)
{
    while (self->settling && self->settling->until <= self->reads_popped) {
        broker_pkey_t *k = self->settling;
        self->settling = k->next;
        if (dv_map_get(self->pending_keys, k->key) == k)
            dv_map_delete(self->pending_keys, k->key);
        free(k);
    }
    if (!self->settling)
        self->settling_tail = &self->settling;
}

/* A group committed while the store was failing: the outage is over. */
static void
s_store_recovered(broker_t *self)
{
    dv_log(
        DV_INFO, "broker.store_recovered",
        DV_INT("duration_ms", broker_mono_ms(self) - self->store_failed_mono),
        DV_INT("retries", (int64_t)self->store_retries),
        DV_INT("refused", (int64_t)self->store_refused),
        DV_STR("was", dv_strerror(self->store_err)));
    self->store_failed = false;
    self->store_err = 0;
    self->store_reason[0] = '\0';
    self->store_retries = 0;
    self->store_refused = 0;
    self->dispatch_needed = true; /* dispatch was paused */
}

/* The writer could not commit g (a full disk, an I/O error). Its submits
 * are refused now, as they would wait for the disk without bound; every
 * other write stays, and so does everything that waits on it (results,
 * replies, events), and g goes back to the writer after a backoff, still
 * self->inflight, so that no later group overtakes it. The first failure
 * starts the outage (one broker.store_failed line), later ones are counted
 * (a reminder a minute). Returns false when g is given up instead (at
 * shutdown, once its deadline passed). */
static bool
s_group_failed(broker_t *self, broker_group_t *g)
{
    if (self->shutdown_deadline_mono &&
        dv_mono_ms() >= self->shutdown_deadline_mono)
        return false;
    int err = g->wb.store_rc;
    if (err == DV_EFENCED) {
        /* Another broker of the group has taken the store over: nothing
         * of this group was committed, and nothing of it is answered (the
         * clients send it again to the active broker). */
        broker_step_down(self, "fenced: another broker took the store over "
                               "(its generation is newer than ours)");
        g->wb.delay_ms = 0;
        return true; /* kept: the loop ends before anything else happens */
    }
    int64_t now = broker_mono_ms(self);
    int64_t lo = self->store_retry_min_ms > 0 ? self->store_retry_min_ms
                                              : S_RETRY_MIN_MS;
    int64_t hi = self->store_retry_max_ms > 0 ? self->store_retry_max_ms
                                              : S_RETRY_MAX_MS;
    self->store_err = err;
    snprintf(self->store_reason, sizeof self->store_reason,
             "store unavailable: %s", dv_strerror(err));
    s_forget_keys(self, g);
    uint32_t refused = s_flush_acks(self, g, self->store_reason);
    broker_wbatch_drop_inserts(&g->wb);
    if (!self->store_failed) {
        self->store_failed = true;
        self->store_failed_ms = broker_now_ms(self);
        self->store_failed_mono = now;
        self->store_retries = 0;
        self->store_refused = 0;
        self->store_backoff_ms = lo;
        self->store_remind_mono = now + S_REMIND_MS;
        dv_log(DV_ERROR, "broker.store_failed",
               DV_STR("error", dv_strerror(err)), DV_INT("refused", refused),
               DV_INT("kept", (int64_t)g->wb.nops),
               DV_INT("held", (int64_t)s_held(g)),
               DV_INT("retry_ms", self->store_backoff_ms),
               DV_STR("meanwhile",
                      "new submits are refused and no job is dispatched; "
                      "the kept writes are retried until they commit"));
    } else {
        self->store_retries++;
        if (now >= self->store_remind_mono) {
            self->store_remind_mono = now + S_REMIND_MS;
            dv_log(
                DV_WARN, "broker.store_still_failing",
                DV_STR("error", dv_strerror(err)),
                DV_INT("duration_ms", now - self->store_failed_mono),
                DV_INT("retries", (int64_t)self->store_retries),
                DV_INT("refused", (int64_t)(self->store_refused + refused)),
                DV_INT("kept", (int64_t)g->wb.nops),
                DV_INT("waiting", (int64_t)(self->cur->wb.nops + g->wb.nops)));
        }
    }
    self->store_refused += refused;
    /* Only the store failed: try again. A write the loop could not record
     * (rc set before the push) stays missing. */
    if (g->wb.rc == g->wb.store_rc)
        g->wb.rc = 0;
    g->wb.store_rc = 0;
    /* Nothing left to write: a probe tells when the store takes writes
     * again (without it the group would "commit" at once). */
    if (g->wb.nops == 0 && broker_wbatch_probe(&g->wb) != 0)
        dv_log(DV_ERROR, "broker.store_probe_failed",
               DV_STR("error", "out of memory"));
    g->wb.delay_ms = self->store_backoff_ms;
    self->store_backoff_ms =
        self->store_backoff_ms * 2 > hi ? hi : self->store_backoff_ms * 2;
    broker_writer_push(self->writer, &g->wb);
    return true;
}

/* The group's writes are durable, or given up: send what waited on them,
 * in the order it was produced (or, given up, drop it), then make the
 * group reusable. */
static void
s_group_done(broker_t *self, broker_group_t *g)
{
    bool committed = g->wb.store_rc == 0;
    if (committed && self->store_failed)
        s_store_recovered(self);
    if (committed && g->wb.rc != 0)
        dv_log(DV_ERROR, "broker.write_lost",
               DV_STR("error", dv_strerror(g->wb.rc)),
               DV_INT("writes", (int64_t)g->wb.nops),
               DV_STR("effect", "a state change that could not be recorded "
                                "is missing from the store until the job "
                                "changes again; drover check lists it"));
    if (g->wb.expired > 0)
        dv_log(DV_INFO, "broker.expired_results",
               DV_INT("jobs", g->wb.expired));
    if (committed)
        s_retire_keys(self, g);
    else
        s_forget_keys(self, g);
    if (committed) {
        s_flush_acks(self, g, NULL);
        s_flush_results(self, g);
        s_flush_sends(self, g);
    } else {
        size_t held = s_held(g);
        const char *why =
            self->store_reason[0] ? self->store_reason : "store unavailable";
        uint32_t refused = s_flush_acks(self, g, why);
        dv_log(DV_ERROR, "broker.store_unwritten",
               DV_STR("error", dv_strerror(g->wb.store_rc)),
               DV_INT("writes", (int64_t)g->wb.nops),
               DV_INT("refused", refused), DV_INT("dropped", (int64_t)held),
               DV_STR("effect", "stopping: these state changes are not "
                                "stored; recovery at the next start runs "
                                "their jobs again"));
        s_free_ended(self, g);
        s_drop_sends(g);
    }
    broker_wbatch_clear(&g->wb);
}

void
broker_group_writer_ready(broker_t *self)
{
    broker_wbatch_t *b;
    while ((b = broker_writer_pop_done(self->writer))) {
        broker_group_t *g = (broker_group_t *)b; /* wb is the first member */
        assert(g == self->inflight);
        broker_check_written(self, g, g->wb.store_rc == 0);
        if (g->wb.store_rc != 0 && s_group_failed(self, g))
            continue; /* with the writer again, still inflight */
        /* A big group's ops (copies of whole jobs) are freed below; the
         * loop gives the pages back once idle (trim_when_idle). */
        bool big = g->wb.nops > 50000;
        s_group_done(self, g);
        self->inflight = NULL;
        /* An ordinary group is kept for the next one, buffers and all
         * (they stay grown to the working size); a big one goes. */
        if (!big && !self->spare && g->outbuf.alloc <= S_SPARE_BYTES_MAX &&
            g->evbuf.alloc <= S_SPARE_BYTES_MAX) {
            self->spare = g;
            continue;
        }
        self->outbuf_hint = g->outbuf.alloc;
        self->evbuf_hint = g->evbuf.alloc;
        if (big)
            self->trim_when_idle = true;
        broker_group_destroy(&g);
    }
}

/* Hands the current group to the writer if it is free; a group with no
 * writes needs no commit and goes out at once (after any group before it). */
void
broker_group_submit(broker_t *self)
{
    if (self->inflight)
        return;
    /* The group is sealed here: the leases it still runs get their rows. */
    bool holding = broker_check_holding(self);
    if (!holding)
        broker_sched_write_leases(self);
    if (self->cur->wb.nops == 0 && self->nleases == 0 &&
        !self->cur->wb.expire && self->cur->wb.rc == 0) {
        /* Nothing recorded is pending: memory is what the store says. */
        broker_check_synced(self);
        if (!s_group_empty(self->cur))
            s_group_done(self, self->cur);
        return;
    }
    if (holding)
        return; /* a check scans the store: writes wait for it */
    broker_group_t *next = self->spare;
    if (!next && (next = broker_group_new())) {
        s_reserve(&next->outbuf, self->outbuf_hint);
        s_reserve(&next->evbuf, self->evbuf_hint);
    }
    if (!next)
        return; /* try again next pass */
    self->spare = NULL;
    broker_check_at_submit(self, self->cur);
    self->inflight = self->cur;
    self->cur = next;
    broker_writer_push(self->writer, &self->inflight->wb);
}

void
broker_group_end_pass(broker_t *self)
{
    /* Jobs go to workers before their leases are durable: a lease need not
     * be stored before the work starts (at worst a crash runs the job
     * again), and the worker then works while the broker waits for the
     * disk. */
    s_flush_jobs(self);
    broker_group_submit(self);
}

void
broker_group_drain_all(broker_t *self)
{
    if (!self->writer)
        return;
    if (!self->shutdown_deadline_mono)
        self->shutdown_deadline_mono = dv_mono_ms() + S_SHUTDOWN_TRY_MS;
    for (int round = 0; round < 2; round++) {
        while (self->inflight) {
            broker_writer_wait(self->writer);
            broker_group_writer_ready(self);
        }
        broker_group_submit(self);
    }
}
