/* broker_ctrl - the control verbs: cancel, retry, pause, resume, rate,
 * max-running, purge, drain (and, handed on to broker_client.c, status and
 * job, and to broker_check.c, check).
 *
 * Owns the queue settings' changes (each a store write of the current
 * group plus an event) and the verbs' replies. A reply that follows a
 * store write waits for its commit (broker_out_reply later); one that
 * changes nothing durable goes at once.
 *
 * Called by broker_client.c for each ctrl message, and by recovery for the
 * limits given at start. Reads the store (retry, cancel of an ended job)
 * on the loop's connection; never waits for a commit.
 *
 * Out of memory: the verb fails with "broker out of memory" where nothing
 * was changed yet (a drain that cannot tell the worker; a retry that
 * cannot list its jobs, or a purge its scheduled jobs, logged as
 * broker.retry_failed, broker.purge_failed); a reply that cannot be built
 * is logged as broker.reply_dropped; a kill that cannot be queued is
 * logged as broker.kill_dropped (the job is cancelled all the same, and
 * its late outcome is ignored).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "dv_log.h"

static void
s_cancel(broker_t *self, broker_job_t *job)
{
    if (job->state == DV_STATE_RUNNING && job->worker) {
        char id[DV_ID_TEXT_LEN + 1];
        broker_id_text(job, id);
        dv_msg_t k = { .type = DV_MSG_KILL };
        k.u.kill.id = dv_str(id);
        k.u.kill.reason = dv_str("cancelled");
        k.u.kill.lease = job->lease;
        if (broker_out_send_later(self, self->workers, &job->worker->rid, NULL,
                                  &k) != 0)
            dv_log(DV_ERROR, "broker.kill_dropped",
                   DV_STR("worker", job->worker->name), DV_STR("job", id),
                   DV_STR("error", "out of memory"));
    }
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_CANCELLED;
    f.message = dv_str("cancelled by request");
    broker_sched_finish(self, job, DV_STATE_CANCELLED, NULL, 0, &f);
}

/* ---- queue control: pause, resume, limits, purge, retry ------------------- */

void
broker_ctrl_queue_save(broker_t *self, broker_queue_t *q,
                       dv_event_kind_t event_kind)
{
    broker_queue_settings_t st = { q->name, q->paused, q->rate,
                                   (int)q->max_running };
    if (broker_wbatch_queue(&self->cur->wb, &st) != 0)
        broker_write_lost(self);
    dv_event_t ev = { 0 };
    ev.kind_enum = event_kind;
    ev.queue = dv_str(q->name);
    broker_out_event(self, &ev);
    dv_log(DV_INFO, "broker.queue_settings", DV_STR("queue", q->name),
           DV_BOOL("paused", q->paused), DV_DBL("rate", q->rate),
           DV_INT("max_running", q->max_running));
    self->dispatch_needed = true;
}

void
broker_ctrl_set_rate(broker_t *self, broker_queue_t *q, double rate)
{
    q->rate = rate;
    q->tokens = 1.0;
    q->tokens_us = broker_mono_us(self);
}

/* Cancels every job of q that waits (ready or scheduled). Returns how
 * many, or -1 when out of memory (then nothing was cancelled). */
static int
s_purge(broker_t *self, broker_queue_t *q)
{
    /* Scheduled ones of this queue are collected first (the heap shifts as
     * they go), before anything changes. */
    uint32_t nlater = 0;
    for (uint32_t i = 0; i < self->timers.count; i++)
        if (self->timers.items[i]->queue == q)
            nlater++;
    broker_job_t **later = NULL;
    if (nlater) {
        later = malloc(nlater * sizeof *later);
        if (!later)
            return -1;
        nlater = 0;
        for (uint32_t i = 0; i < self->timers.count; i++)
            if (self->timers.items[i]->queue == q)
                later[nlater++] = self->timers.items[i];
    }
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
        broker_sched_finish(self, job, DV_STATE_CANCELLED, NULL, 0, &f);
        n++;
    }
    for (uint32_t i = 0; i < nlater; i++) {
        broker_sched_finish(self, later[i], DV_STATE_CANCELLED, NULL, 0, &f);
        n++;
    }
    free(later);
    return n;
}

typedef struct {
    broker_t *self;
    const char *error; /* static reason when not retried */
    dv_code_t code;    /* and its code */
    char buf[96];
} s_retry_ctx_t;

static int
s_retry_rec(void *arg, const broker_jobrec_t *rec)
{
    s_retry_ctx_t *c = arg;
    if (rec->state != DV_STATE_DEAD && rec->state != DV_STATE_CANCELLED) {
        snprintf(c->buf, sizeof c->buf,
                 "job is %s; only dead or cancelled "
                 "jobs can be retried",
                 dv_state_name(rec->state));
        c->error = c->buf;
        c->code = DV_CODE_NOT_ALLOWED;
        return 0;
    }
    int err = 0;
    broker_job_t *job = broker_recover_job_from_rec(c->self, rec, &err);
    if (!job) {
        c->error = "broker out of memory";
        c->code = DV_CODE_NO_MEMORY;
        return 0;
    }
    /* A fresh start: all its attempts again, now. */
    job->attempt = 0;
    job->run_at_ms = 0;
    broker_sched_place(c->self, job, false);
    if (broker_wbatch_waiting(&c->self->cur->wb, rec->id, DV_STATE_QUEUED,
                              broker_now_ms(c->self), 0, NULL) != 0)
        broker_write_lost(c->self);
    dv_event_t ev = { 0 };
    ev.state = DV_STATE_QUEUED;
    broker_out_job_event(c->self, DV_EV_JOB_RETRIED, job, &ev);
    return 0;
}

/* Puts one dead or cancelled job back in its queue. Returns NULL, or why
 * not (with its code in ctx->code). */
static const char *
s_retry_one(broker_t *self, const char *idtext, s_retry_ctx_t *ctx)
{
    dv_id_t id;
    ctx->code = DV_CODE_INVALID_ARGUMENT;
    if (dv_id_parse(idtext, (unsigned)strlen(idtext), &id) != 0)
        return "not a job id";
    broker_job_t *job = broker_index_get(&self->index, &id);
    if (job) {
        ctx->code = DV_CODE_TRY_AGAIN;
        if (dv_state_terminal(job->state))
            return "the job has just ended; try again in a moment";
        ctx->code = DV_CODE_NOT_ALLOWED;
        snprintf(ctx->buf, sizeof ctx->buf,
                 "job is %s; only dead or "
                 "cancelled jobs can be retried",
                 (job->flags & BROKER_JOB_PENDING) ? "queued"
                                                   : dv_state_name(job->state));
        return ctx->buf;
    }
    ctx->self = self;
    ctx->error = NULL;
    int r = broker_store_load(self->store, idtext, s_retry_rec, ctx);
    if (r <= 0) {
        ctx->code = r == 0 ? DV_CODE_NOT_FOUND : DV_CODE_STORE;
        return r == 0 ? "no such job" : "store read failed";
    }
    if (!ctx->error)
        ctx->code = DV_CODE_NONE;
    return ctx->error; /* s_retry_rec set its code */
}

/* Ids of stored jobs, listed before any is retried. */
typedef struct {
    char (*ids)[DV_ID_TEXT_LEN + 1];
    size_t n, cap;
} s_list_ctx_t;

static int
s_collect_id(void *arg, const char *id)
{
    s_list_ctx_t *c = arg;
    if (strlen(id) != DV_ID_TEXT_LEN)
        return 0; /* not a job id: it could not be retried */
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        char(*ni)[DV_ID_TEXT_LEN + 1] = realloc(c->ids, ncap * sizeof *ni);
        if (!ni)
            return DV_ENOMEM;
        c->ids = ni;
        c->cap = ncap;
    }
    memcpy(c->ids[c->n++], id, DV_ID_TEXT_LEN + 1);
    return 0;
}

static void
s_reply_count(broker_t *self, const broker_rid_t *rid, uint64_t req,
              const char *key, int64_t n)
{
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    msgpack_pack_map(&pk, 1);
    broker_pack_kv_int(&pk, key, n);
    if (body.failed)
        broker_out_dropped(rid, req, "reply");
    else
        broker_out_reply(self, rid, req, DV_CODE_NONE, NULL, &body.sb, true);
    broker_body_destroy(&body);
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
                broker_out_reply(self, rid, c->req, ctx.code, why, NULL, false);
            else
                s_reply_count(self, rid, c->req, "retried", 1);
            return true;
        }
        if (!c->dead || !qname[0]) {
            broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                             "retry needs a job id, or dead and a queue", NULL,
                             false);
            return true;
        }
        s_list_ctx_t lc = { 0 };
        int n = broker_store_list(self->store, qname, DV_STATE_DEAD, 100000,
                                  s_collect_id, &lc);
        int retried = 0;
        /* Short of memory, none is retried: the verb fails whole. */
        for (size_t i = 0; i < lc.n && n != DV_ENOMEM; i++)
            if (!s_retry_one(self, lc.ids[i], &ctx))
                retried++;
        free(lc.ids);
        if (n == DV_ENOMEM) {
            dv_log(DV_ERROR, "broker.retry_failed", DV_STR("queue", qname),
                   DV_STR("error", "out of memory"));
            broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY,
                             "broker out of memory", NULL, false);
        } else if (n < 0)
            broker_out_reply(self, rid, c->req, DV_CODE_STORE,
                             "store read failed", NULL, false);
        else
            s_reply_count(self, rid, c->req, "retried", retried);
        return true;
    }

    bool pause = dv_str_eq(c->verb, "pause"),
         resume = dv_str_eq(c->verb, "resume");
    bool rate = dv_str_eq(c->verb, "rate");
    bool maxrun = dv_str_eq(c->verb, "max-running");
    bool purge = dv_str_eq(c->verb, "purge");
    if (!pause && !resume && !rate && !maxrun && !purge)
        return false;
    if (!qname[0]) {
        broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                         "this verb needs a queue", NULL, false);
        return true;
    }
    if ((rate || maxrun) && (!c->has_value || c->value < 0 || c->value > 1e9)) {
        broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                         "needs a value: 0 (no limit) or a positive number",
                         NULL, false);
        return true;
    }
    broker_queue_t *q = broker_sched_queue(self, qname);
    if (!q) {
        broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
        return true;
    }
    if (purge) {
        int n = s_purge(self, q);
        if (n < 0) {
            dv_log(DV_ERROR, "broker.purge_failed", DV_STR("queue", q->name),
                   DV_STR("error", "out of memory"));
            broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY,
                             "broker out of memory", NULL, false);
        } else {
            s_reply_count(self, rid, c->req, "purged", n);
        }
        return true;
    }
    if (pause || resume)
        q->paused = pause;
    else if (rate)
        broker_ctrl_set_rate(self, q, c->value);
    else
        q->max_running = (uint32_t)c->value;
    broker_ctrl_queue_save(self, q,
                           pause    ? DV_EV_QUEUE_PAUSED
                           : resume ? DV_EV_QUEUE_RESUMED
                                    : DV_EV_QUEUE_LIMITS);
    broker_out_reply(self, rid, c->req, DV_CODE_NONE, NULL, NULL, true);
    return true;
}

void
broker_ctrl_on_message(broker_t *self, const broker_rid_t *rid,
                       const dv_msg_t *msg)
{
    const dv_ctrl_t *c = &msg->u.ctrl;
    char idtext[DV_ID_TEXT_LEN + 1] = "";
    broker_job_t *job = NULL;
    if (c->id.ptr) {
        dv_id_t id;
        if (dv_id_parse(c->id.ptr, c->id.len, &id) != 0) {
            broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                             "not a job id", NULL, false);
            return;
        }
        dv_str_copy(c->id, idtext, sizeof idtext);
        job = broker_index_get(&self->index, &id);
    }
    if (dv_str_eq(c->verb, "status")) {
        broker_client_status(self, rid, c->req);
    } else if (dv_str_eq(c->verb, "check")) {
        broker_check(self, rid, c->req);
    } else if (dv_str_eq(c->verb, "cancel")) {
        if (!idtext[0]) {
            broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                             "cancel needs a job id", NULL, false);
        } else if (job && dv_state_terminal(job->state)) {
            char why[64];
            snprintf(why, sizeof why, "job already %s",
                     dv_state_name(job->state));
            broker_out_reply(self, rid, c->req, DV_CODE_NOT_ALLOWED, why, NULL,
                             false);
        } else if (job && !(job->flags & BROKER_JOB_PENDING)) {
            s_cancel(self, job);
            broker_out_reply(self, rid, c->req, DV_CODE_NONE, NULL, NULL, true);
        } else if (job) {
            broker_out_reply(self, rid, c->req, DV_CODE_TRY_AGAIN,
                             "job not committed yet; try again", NULL, false);
        } else {
            broker_results_t tmp = { 0 };
            dv_result_t it = { 0 };
            broker_view_ctx_t ctx = { &tmp, &it, false, NULL };
            int r = broker_store_get(self->store, idtext, broker_client_on_view,
                                     &ctx);
            char why[128];
            if (r == 1)
                snprintf(why, sizeof why, "job already %s",
                         dv_state_name(it.state));
            else
                snprintf(why, sizeof why, "no such job");
            broker_out_reply(self, rid, c->req,
                             r == 1  ? DV_CODE_NOT_ALLOWED
                             : r < 0 ? DV_CODE_STORE
                                     : DV_CODE_NOT_FOUND,
                             why, NULL, false);
            broker_client_results_free_owned(&tmp);
        }
    } else if (dv_str_eq(c->verb, "job")) {
        if (!idtext[0]) {
            broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                             "job needs a job id", NULL, false);
            return;
        }
        broker_client_job(self, rid, c->req, idtext, job);
    } else if (dv_str_eq(c->verb, "drain")) {
        char wname[DV_NAME_MAX + 1] = "";
        if (c->worker.ptr)
            dv_str_copy(c->worker, wname, sizeof wname);
        broker_worker_t *w =
            wname[0] ? dv_map_get(self->worker_by_name, wname) : NULL;
        if (!wname[0]) {
            broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                             "drain needs a worker name", NULL, false);
        } else if (!w) {
            broker_out_reply(self, rid, c->req, DV_CODE_NOT_FOUND,
                             "no such worker", NULL, false);
        } else {
            /* No more jobs for it from now; it finishes what it runs, hands
             * back the rest, says bye and exits. */
            dv_msg_t d = { .type = DV_MSG_DRAIN };
            if (broker_out_send_now(self->workers, &w->rid, &d) != 0) {
                broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY,
                                 "broker out of memory", NULL, false);
                return;
            }
            w->draining = true;
            dv_log(DV_INFO, "broker.worker_draining", DV_STR("worker", w->name),
                   DV_INT("running", (int64_t)w->running.count));
            dv_event_t ev = { 0 };
            ev.kind_enum = DV_EV_WORKER_DRAINING;
            ev.worker = dv_str(w->name);
            broker_out_event(self, &ev);
            broker_out_reply(self, rid, c->req, DV_CODE_NONE, NULL, NULL,
                             false);
        }
    } else if (!s_on_queue_ctrl(self, rid, c)) {
        char why[DV_NAME_MAX + 40];
        char verb[DV_NAME_MAX + 1];
        dv_str_copy(c->verb, verb, sizeof verb);
        snprintf(why, sizeof why, "unknown verb \"%s\"", verb);
        broker_out_reply(self, rid, c->req, DV_CODE_UNKNOWN_VERB, why, NULL,
                         false);
    }
}
