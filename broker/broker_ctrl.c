/* broker_ctrl - the control verbs: cancel, retry, pause, resume, rate,
 * max-running, purge, drain (and, handed on to broker_views.c, status and
 * job, and to broker_check.c, check).
 *
 * Owns the queue settings' changes (each a store write of the current
 * group plus an event) and the verbs' replies. A reply that follows a
 * store write waits for its commit (broker_out_reply later); one that
 * changes nothing durable goes at once.
 *
 * Called by broker_client.c for each ctrl message, and by recovery for the
 * limits given at start. Never waits for the store: retry and the cancel
 * of an ended job read it through the reader thread and answer when the
 * read is back; a retry of all dead jobs of a queue lists their ids, then
 * loads and puts them back S_RETRY_CHUNK at a time, a read each, so that
 * neither the loop nor memory holds them all at once. What changed in
 * memory meanwhile wins: a job live again when its read comes back is not
 * retried twice.
 *
 * Out of memory: the verb fails with "broker out of memory" where nothing
 * was changed yet (a drain that cannot tell the worker; a retry that
 * cannot list its jobs, or a purge its scheduled jobs, logged as
 * broker.retry_failed, broker.purge_failed); a reply that cannot be built
 * is logged as broker.reply_dropped; a kill that cannot be queued is
 * logged as broker.kill_dropped (the job is cancelled all the same, and
 * its late outcome is ignored).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "broker_schedule.h"
#include "dv_json.h"
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

/* Cancels every job of q that waits (ready, scheduled, or waiting for
 * its dependencies). Returns how many, or -1 when out of memory (then
 * nothing was cancelled). */
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
    size_t nwait = 0;
    broker_job_t **waiting = broker_deps_of_queue(self, q, &nwait);
    if (nwait == SIZE_MAX) {
        free(later);
        return -1;
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
    /* Waiting ones: each may cancel others that wait on it (cascading),
     * so each is looked up again before it goes. */
    for (size_t i = 0; i < nwait; i++) {
        broker_job_t *w = waiting[i]; /* ended ones stay until durable */
        if (broker_index_get(&self->index, &w->id) != w ||
            w->state != DV_STATE_WAITING)
            continue;
        broker_sched_finish(self, w, DV_STATE_CANCELLED, NULL, 0, &f);
        n++;
    }
    free(waiting);
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
    if (job->batch)
        broker_batch_retried(c->self, job, rec->state);
    if (broker_wbatch_waiting(&c->self->cur->wb, rec->id, DV_STATE_QUEUED,
                              broker_now_ms(c->self), 0, NULL) != 0)
        broker_write_lost(c->self);
    dv_event_t ev = { 0 };
    ev.state = DV_STATE_QUEUED;
    broker_out_job_event(c->self, DV_EV_JOB_RETRIED, job, &ev);
    return 0;
}

/* Why a job live in memory cannot be retried (code in ctx->code), or
 * NULL if idtext is not live. */
static const char *
s_retry_live(broker_t *self, const char *idtext, s_retry_ctx_t *ctx)
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
    ctx->code = DV_CODE_NONE;
    return NULL;
}

/* Puts one dead or cancelled job back in its queue from its stored record
 * (load's result r: 1 found, 0 none, or an error). Returns NULL, or why
 * not (with its code in ctx->code). */
static const char *
s_retry_stored(broker_t *self, const char *idtext, int r,
               const broker_jobrec_t *rec, s_retry_ctx_t *ctx)
{
    const char *why = s_retry_live(self, idtext, ctx);
    if (why)
        return why;
    if (r <= 0 || !rec) {
        ctx->code = r == 0           ? DV_CODE_NOT_FOUND
                    : r == DV_ENOMEM ? DV_CODE_NO_MEMORY
                                     : DV_CODE_STORE;
        return r == 0           ? "no such job"
               : r == DV_ENOMEM ? "broker out of memory"
                                : "store read failed";
    }
    ctx->self = self;
    ctx->error = NULL;
    ctx->code = DV_CODE_NONE;
    s_retry_rec(ctx, rec);
    return ctx->error; /* s_retry_rec set its code */
}

/* ---- retry's reads ---------------------------------------------------------- */

/* Records loaded per read of a retry of all dead jobs. */
#define S_RETRY_CHUNK 1000
/* Dead jobs of one queue retried by one request, at most. */
#define S_RETRY_MAX 100000

/* A stored record, copied out of load's callback (one allocation). */
typedef struct {
    int rc; /* load: 1, 0 none, or an error */
    broker_jobrec_t *rec;
} s_loaded_t;

/* A retry waiting for the store: one job (id set), or all dead jobs of a
 * queue (queue set: the ids are listed by the first read, the records
 * loaded S_RETRY_CHUNK per read after that). */
typedef struct {
    broker_read_t base; /* first member */
    broker_rid_t rid;
    uint64_t req;
    char id[DV_ID_TEXT_LEN + 1];
    char queue[DV_NAME_MAX + 1];
    bool listed;                     /* the ids are in */
    int list_rc;                     /* list's result */
    char (*ids)[DV_ID_TEXT_LEN + 1]; /* queue: dead jobs' ids */
    size_t n, cap;
    size_t next;        /* queue: first id of the next chunk */
    s_loaded_t *loaded; /* this read's records */
    size_t nloaded;     /* this read's count */
    int64_t retried;    /* so far */
} s_retry_read_t;

/* list callback (reader thread): one more dead job's id. */
static int
s_collect_id(void *arg, const char *id)
{
    s_retry_read_t *c = arg;
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

static size_t
s_sz(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *
s_cp(char **cur, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*cur, s, n);
    const char *c = *cur;
    *cur += n;
    return c;
}

/* load callback: copies the record. */
static int
s_on_load(void *arg, const broker_jobrec_t *rec)
{
    s_loaded_t *l = arg;
    size_t n = sizeof *rec + s_sz(rec->id) + s_sz(rec->queue) +
               s_sz(rec->type) + s_sz(rec->key) + s_sz(rec->batch) +
               s_sz(rec->trace) + s_sz(rec->worker) + s_sz(rec->owner) +
               rec->payload_len;
    broker_jobrec_t *c = malloc(n);
    if (!c)
        return DV_ENOMEM;
    *c = *rec;
    char *cur = (char *)(c + 1);
    c->id = s_cp(&cur, rec->id);
    c->queue = s_cp(&cur, rec->queue);
    c->type = s_cp(&cur, rec->type);
    c->key = s_cp(&cur, rec->key);
    c->batch = s_cp(&cur, rec->batch);
    c->trace = s_cp(&cur, rec->trace);
    c->worker = s_cp(&cur, rec->worker);
    c->owner = s_cp(&cur, rec->owner);
    if (rec->payload && rec->payload_len) {
        memcpy(cur, rec->payload, rec->payload_len);
        c->payload = cur;
    } else {
        c->payload = NULL;
        c->payload_len = 0;
    }
    l->rec = c;
    return 0;
}

static void
s_retry_free_loaded(s_retry_read_t *t)
{
    for (size_t i = 0; i < t->nloaded; i++)
        free(t->loaded[i].rec);
    t->nloaded = 0;
}

static void
s_retry_free(s_retry_read_t *t)
{
    if (!t)
        return;
    s_retry_free_loaded(t);
    free(t->loaded);
    free(t->ids);
    free(t);
}

static void
s_retry_free_read(broker_read_t *r)
{
    s_retry_free((s_retry_read_t *)r);
}

/* Reader thread: lists the queue's dead jobs (first read), then loads
 * the next chunk, or the one job. */
static int
s_retry_run(broker_store_t *store, broker_read_t *r)
{
    s_retry_read_t *t = (s_retry_read_t *)r;
    if (t->queue[0] && !t->listed) {
        t->listed = true;
        t->list_rc = broker_store_list(store, t->queue, DV_STATE_DEAD,
                                       S_RETRY_MAX, s_collect_id, t);
        if (t->list_rc < 0)
            return t->list_rc;
    }
    const char *one = t->id;
    size_t n = t->queue[0] ? t->n - t->next : 1;
    if (n > S_RETRY_CHUNK)
        n = S_RETRY_CHUNK;
    for (size_t i = 0; i < n; i++) {
        const char *id = t->queue[0] ? t->ids[t->next + i] : one;
        s_loaded_t *l = &t->loaded[t->nloaded++];
        l->rec = NULL;
        l->rc = broker_store_load(store, id, s_on_load, l);
    }
    return 0;
}

static void s_reply_count(broker_t *self, const broker_rid_t *rid, uint64_t req,
                          const char *key, int64_t n);

/* Loop: a retry's read is back. */
static void
s_retry_done(void *owner, broker_read_t *r)
{
    broker_t *self = owner;
    s_retry_read_t *t = (s_retry_read_t *)r;
    s_retry_ctx_t ctx = { 0 };
    if (r->stopped) {
        /* Those put back so far stay; the rest are not retried. */
        if (t->queue[0] && t->retried)
            s_reply_count(self, &t->rid, t->req, "retried", t->retried);
        else
            broker_out_reply(self, &t->rid, t->req, DV_CODE_TRY_AGAIN,
                             broker_reads_refusal(BROKER_READER_STOPPED), NULL,
                             false);
        s_retry_free(t);
        return;
    }
    if (!t->queue[0]) {
        const s_loaded_t *l = &t->loaded[0];
        const char *why =
            s_retry_stored(self, t->id, r->rc ? r->rc : l->rc, l->rec, &ctx);
        if (why)
            broker_out_reply(self, &t->rid, t->req, ctx.code, why, NULL, false);
        else
            s_reply_count(self, &t->rid, t->req, "retried", 1);
        s_retry_free(t);
        return;
    }
    if (r->rc != 0 || t->list_rc == DV_ENOMEM) {
        /* Short of memory for the list, none is retried: the verb fails
         * whole. */
        bool oom = r->rc == DV_ENOMEM || t->list_rc == DV_ENOMEM;
        if (oom)
            dv_log(DV_ERROR, "broker.retry_failed", DV_STR("queue", t->queue),
                   DV_STR("error", "out of memory"));
        broker_out_reply(
            self, &t->rid, t->req, oom ? DV_CODE_NO_MEMORY : DV_CODE_STORE,
            oom ? "broker out of memory" : "store read failed", NULL, false);
        s_retry_free(t);
        return;
    }
    for (size_t i = 0; i < t->nloaded; i++) {
        const s_loaded_t *l = &t->loaded[i];
        if (!s_retry_stored(self, t->ids[t->next + i], l->rc, l->rec, &ctx))
            t->retried++;
    }
    t->next += t->nloaded;
    s_retry_free_loaded(t);
    int rc = t->next < t->n ? broker_reads_push(self, &t->base, false) : -1;
    if (rc == 0)
        return; /* the next chunk */
    if (rc == BROKER_READER_STOPPED)
        dv_log(DV_WARN, "broker.retry_cut_short", DV_STR("queue", t->queue),
               DV_INT("retried", t->retried),
               DV_INT("left", (int64_t)(t->n - t->next)),
               DV_STR("why", "stopping"));
    s_reply_count(self, &t->rid, t->req, "retried", t->retried);
    s_retry_free(t);
}

/* Starts a retry (of id, or of queue's dead jobs) through the reader;
 * answers at once if it cannot. */
static void
s_retry_later(broker_t *self, const broker_rid_t *rid, uint64_t req,
              const char *id, const char *queue)
{
    s_retry_read_t *t = calloc(1, sizeof *t);
    if (t)
        t->loaded = calloc(queue ? S_RETRY_CHUNK : 1, sizeof *t->loaded);
    if (!t || !t->loaded) {
        s_retry_free(t);
        broker_out_reply(self, rid, req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
        return;
    }
    t->base.run = s_retry_run;
    t->base.done = s_retry_done;
    t->base.free = s_retry_free_read;
    t->rid = *rid;
    t->req = req;
    if (id)
        snprintf(t->id, sizeof t->id, "%s", id);
    if (queue)
        snprintf(t->queue, sizeof t->queue, "%s", queue);
    int rc = broker_reads_push(self, &t->base, true);
    if (rc != 0) {
        s_retry_free(t);
        broker_out_reply(self, rid, req, DV_CODE_TRY_AGAIN,
                         broker_reads_refusal(rc), NULL, false);
    }
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

/* Whether the ctrl's args map has key set to true. */
static bool
s_arg_true(const dv_ctrl_t *c, const char *key)
{
    if (!c->args.ptr)
        return false;
    json_t *args = dv_msgpack_to_json(c->args.ptr, c->args.len, NULL, 0);
    bool yes = json_is_true(json_object_get(args, key));
    json_decref(args);
    return yes;
}

/* The queue's settings after a change: {queue, paused, rate,
 * max_running}. Sent once the change is durable. */
static void
s_reply_settings(broker_t *self, const broker_rid_t *rid, uint64_t req,
                 const broker_queue_t *q)
{
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    msgpack_pack_map(&pk, 4);
    broker_pack_kv_str(&pk, "queue", q->name);
    broker_pack_str(&pk, "paused");
    if (q->paused)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    broker_pack_str(&pk, "rate");
    msgpack_pack_double(&pk, q->rate);
    broker_pack_kv_int(&pk, "max_running", (int64_t)q->max_running);
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
            const char *why = s_retry_live(self, idtext, &ctx);
            if (why)
                broker_out_reply(self, rid, c->req, ctx.code, why, NULL, false);
            else
                s_retry_later(self, rid, c->req, idtext, NULL);
            return true;
        }
        if (!c->dead || !qname[0]) {
            broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                             "retry needs a job id, or dead and a queue", NULL,
                             false);
            return true;
        }
        s_retry_later(self, rid, c->req, NULL, qname);
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
    /* A queue the broker does not know (no job, no stored settings, no
     * worker serving it) is made only when asked: a typo must not become
     * a paused queue nobody uses. */
    broker_queue_t *q = dv_map_get(self->queues, qname);
    if (!q && !s_arg_true(c, "create")) {
        char why[DV_NAME_MAX + 64];
        snprintf(why, sizeof why, "no queue '%s': it has never had a job",
                 qname);
        broker_out_reply(self, rid, c->req, DV_CODE_NOT_FOUND, why, NULL,
                         false);
        return true;
    }
    if (!q)
        q = broker_sched_queue(self, qname);
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
    s_reply_settings(self, rid, c->req, q);
    return true;
}

/* Cancels a job live in memory, or says why not. */
static void
s_cancel_live(broker_t *self, const broker_rid_t *rid, uint64_t req,
              broker_job_t *job)
{
    if (dv_state_terminal(job->state)) {
        char why[64];
        snprintf(why, sizeof why, "job already %s", dv_state_name(job->state));
        broker_out_reply(self, rid, req, DV_CODE_NOT_ALLOWED, why, NULL, false);
    } else if (!(job->flags & BROKER_JOB_PENDING)) {
        s_cancel(self, job);
        broker_out_reply(self, rid, req, DV_CODE_NONE, NULL, NULL, true);
    } else {
        broker_out_reply(self, rid, req, DV_CODE_TRY_AGAIN,
                         "job not committed yet; try again", NULL, false);
    }
}

/* The read for the cancel of a job not in memory is back. A job live
 * again meanwhile (retried) is cancelled as it is now. */
static void
s_cancel_answer(broker_t *self, broker_views_t *v)
{
    const broker_viewed_t *it = &v->items[0];
    if (v->base.stopped) {
        broker_out_reply(self, &v->rid, v->req, DV_CODE_TRY_AGAIN,
                         broker_reads_refusal(BROKER_READER_STOPPED), NULL,
                         false);
        return;
    }
    dv_id_t id;
    broker_job_t *job = NULL;
    if (dv_id_parse(it->id, DV_ID_TEXT_LEN, &id) == 0)
        job = broker_index_get(&self->index, &id);
    if (job) {
        s_cancel_live(self, &v->rid, v->req, job);
        return;
    }
    char why[128];
    dv_code_t code;
    if (it->rc == 1 && dv_state_terminal(it->view->state)) {
        snprintf(why, sizeof why, "job already %s",
                 dv_state_name(it->view->state));
        code = DV_CODE_NOT_ALLOWED;
    } else if (it->rc == 1) { /* stored unfinished, not live: changing */
        snprintf(why, sizeof why, "job is changing; try again");
        code = DV_CODE_TRY_AGAIN;
    } else if (it->rc == 0) {
        snprintf(why, sizeof why, "no such job");
        code = DV_CODE_NOT_FOUND;
    } else {
        snprintf(why, sizeof why, "store read failed");
        code = it->rc == DV_ENOMEM ? DV_CODE_NO_MEMORY : DV_CODE_STORE;
    }
    broker_out_reply(self, &v->rid, v->req, code, why, NULL, false);
}

/* ---- the fleet's API keys: keys, keys.enable ------------------------------ */

static void
s_keys_ctrl(broker_t *self, const broker_rid_t *rid, const dv_ctrl_t *c)
{
    int64_t now = broker_now_ms(self);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (dv_str_eq(c->verb, "keys")) {
        broker_keys_describe(self->keys, now, &pk);
        broker_out_reply(self, rid, c->req, DV_CODE_NONE, NULL, &sb, false);
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    /* The key's id or hash: args {"key": NAME} (a ctrl's id is a job's). */
    char name[DV_NAME_MAX + 1] = "";
    json_t *args = c->args.ptr
                       ? dv_msgpack_to_json(c->args.ptr, c->args.len, NULL, 0)
                       : NULL;
    const char *key = json_string_value(json_object_get(args, "key"));
    if (key && strlen(key) <= DV_NAME_MAX)
        snprintf(name, sizeof name, "%s", key);
    json_decref(args);
    if (!name[0]) {
        broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                         "keys.enable needs a key's id or hash: args "
                         "{\"key\": NAME}",
                         NULL, false);
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    const char *was = NULL, *id = NULL, *hash = NULL;
    bool ambiguous = false;
    char why[DV_NAME_MAX + 96];
    if (broker_keys_enable(self->keys, name, now, &was, &id, &hash, &ambiguous,
                           why, sizeof why) != 0) {
        broker_out_reply(self, rid, c->req,
                         ambiguous ? DV_CODE_INVALID_ARGUMENT
                                   : DV_CODE_NOT_FOUND,
                         why, NULL, false);
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    msgpack_pack_map(&pk, 3);
    const char *kv[] = { "id", id, "hash", hash, "was", was };
    for (int i = 0; i < 6; i++)
        msgpack_pack_str_with_body(&pk, kv[i], strlen(kv[i]));
    /* Its state is written with this pass's group; the answer follows it. */
    broker_keys_flush(self->keys, now);
    broker_out_reply(self, rid, c->req, DV_CODE_NONE, NULL, &sb, true);
    msgpack_sbuffer_destroy(&sb);
}

void
broker_ctrl_on_message(broker_t *self, const broker_rid_t *rid,
                       const dv_msg_t *msg)
{
    const dv_ctrl_t *c = &msg->u.ctrl;
    if (dv_str_eq(c->verb, "keys") || dv_str_eq(c->verb, "keys.enable")) {
        s_keys_ctrl(self, rid, c);
        return;
    }
    if (broker_batch_ctrl(self, rid, c))
        return;
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
        } else if (job) {
            s_cancel_live(self, rid, c->req, job);
        } else {
            /* Not in memory: the store says whether it ended or never
             * was; answered once the read is back. */
            broker_views_t *v =
                broker_views_new(self, rid, c->req, 1, s_cancel_answer);
            int rc = v ? 0 : DV_ENOMEM;
            if (v) {
                snprintf(v->items[0].id, sizeof v->items[0].id, "%s", idtext);
                rc = broker_reads_push(self, &v->base, true);
            }
            if (rc == DV_ENOMEM)
                broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY,
                                 "broker out of memory", NULL, false);
            else if (rc != 0) {
                broker_views_free(v);
                broker_out_reply(self, rid, c->req, DV_CODE_TRY_AGAIN,
                                 broker_reads_refusal(rc), NULL, false);
            }
        }
    } else if (dv_str_eq(c->verb, "finished")) {
        broker_reads_finished(self, rid, c);
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
    } else if (broker_schedule_ctrl(self, rid, c)) {
        /* schedule.*: broker_schedule_ctrl.c */
    } else if (!s_on_queue_ctrl(self, rid, c)) {
        char why[DV_NAME_MAX + 40];
        char verb[DV_NAME_MAX + 1];
        dv_str_copy(c->verb, verb, sizeof verb);
        snprintf(why, sizeof why, "unknown verb \"%s\"", verb);
        broker_out_reply(self, rid, c->req, DV_CODE_UNKNOWN_VERB, why, NULL,
                         false);
    }
}
