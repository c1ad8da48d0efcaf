/* broker_client - the client API: submit and wait (the status and job
 * views are in broker_views.c).
 *
 * Owns what a submit builds until its group is durable (an ack batch per
 * message, new jobs marked pending, their idempotency keys in
 * self->pending_keys), the waiters of live jobs, and results pending for
 * clients in the current group. Acks and results leave from
 * broker_group.c once the group is durable; views are answered at once.
 *
 * Called by the loop for each message on the clients socket; control verbs
 * go on to broker_ctrl.c. Never waits for the store: what needs a store
 * read (idempotency keys not pending in memory, jobs no longer in memory)
 * goes to the reader thread and is answered when the read comes back
 * (broker_reads.c); the rest is answered meanwhile. A submit with no key
 * to look up never waits for the reader.
 *
 * Idempotency under concurrency: a submit whose keys are not all pending
 * waits for one read of all its keys, and is then handled whole, in the
 * order reads were pushed, as if it had just arrived, except that a key
 * not pending (again: a job may have taken it meanwhile) is answered by
 * the read. A key that became durable while reads were out stays pending
 * until they are back (broker_group.c), so a read that ran before an
 * insert committed never lets a second job take its key.
 *
 * Out of memory: a job that cannot be built, indexed, recorded or have
 * its idempotency key marked pending is refused in its ack (the others in
 * the message go on; broker.submit_refused counts them); a reply or result
 * that cannot be built is logged as broker.reply_dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

#include "dv_log.h"

static const char s_oom[] = "broker out of memory";

/* Refuses every job of a submit at once with reason and code: the store
 * cannot be written (none could be acknowledged for as long as that
 * lasts: counted, not logged, the outage is logged where it starts and
 * ends, broker_group.c), or the reader is busy or stopping. The client may
 * submit again later. */
static void
s_refuse_submit(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg,
                dv_code_t code, const char *reason)
{
    uint32_t n = msg->u.submit.njobs;
    dv_submit_ack_t *acks = calloc(n ? n : 1, sizeof *acks);
    if (!acks) {
        broker_out_error(self, self->clients, rid, msg->u.submit.req,
                         DV_CODE_NO_MEMORY, s_oom);
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        acks[i].error = dv_str(reason);
        acks[i].code = code;
    }
    dv_msg_t m = { .type = DV_MSG_SUBMIT_REPLY };
    m.u.submit_reply.req = msg->u.submit.req;
    m.u.submit_reply.acks = acks;
    m.u.submit_reply.nacks = n;
    if (rid->len == 0)
        broker_self_acked(self, msg->u.submit.req, &acks[0]);
    else if (broker_out_send_now(self->clients, rid, &m) != 0)
        broker_out_dropped(rid, msg->u.submit.req, "submit reply");
    free(acks);
    if (code == DV_CODE_STORE)
        self->store_refused += n;
}

/* What the read of a submit's keys found for job i. */
typedef struct {
    int rc;                      /* find_key: 1, 0, or an error */
    char id[DV_ID_TEXT_LEN + 1]; /* rc 1: the job holding the key */
} s_found_t;

/* A submit waiting for the read of its idempotency keys. */
typedef struct {
    broker_read_t base; /* first member */
    broker_rid_t rid;
    uint64_t req;
    broker_sender_t sender;
    char owner[DV_NAME_MAX + 1]; /* the jobs' owner ("": none) */
    bool has_owner;
    msgpack_sbuffer bytes; /* the submit, encoded again */
    dv_msg_t msg;          /* decoded from bytes by the reader */
    bool decoded;
    s_found_t *found; /* per job */
    uint32_t n;
    /* The broker's own submit of one job: its schedule, which is not on
     * the wire (dv_jobspec_t.schedule), put back after the decode. */
    char schedule[DV_NAME_MAX + 1];
    /* Per id of the jobs' after and after_any lists, in order: what the
     * read found (S_DEP_WANT: to be read; unread: live in memory). */
    broker_dep_found_t *dfound;
    uint32_t ndfound;
} s_keys_read_t;

/* dfound[i].rc of an id the reader is to look up. */
#define S_DEP_WANT 0xff

/* The number of ids a submit's jobs depend on (after, after_any). */
static uint32_t
s_count_deps(const dv_msg_t *msg)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < msg->u.submit.njobs; i++)
        n += msg->u.submit.jobs[i].nafter + msg->u.submit.jobs[i].nafter_any;
    return n;
}

/* The i-th id of js's after and after_any, in that order. */
static dv_str_t
s_dep_id(const dv_jobspec_t *js, uint32_t i)
{
    return i < js->nafter ? js->after[i] : js->after_any[i - js->nafter];
}

/* Whether an id of a dependency needs a store read: a job id not live in
 * memory. */
static bool
s_dep_unread(const broker_t *self, dv_str_t sid)
{
    dv_id_t id;
    return sid.len == DV_ID_TEXT_LEN &&
           dv_id_parse(sid.ptr, sid.len, &id) == 0 &&
           !broker_index_get(&self->index, &id);
}

/* broker_store_get callback of a dependency's read. */
typedef struct {
    broker_dep_found_t *f;
    const char *owner; /* the submitter's, or NULL */
} s_dep_view_t;

static void
s_on_dep_view(void *arg, const broker_jobview_t *v)
{
    s_dep_view_t *c = arg;
    c->f->state = v->state;
    c->f->same_owner = c->owner && v->owner ? !strcmp(c->owner, v->owner)
                                            : !c->owner && !v->owner;
}

static void
s_keys_free(s_keys_read_t *k)
{
    if (!k)
        return;
    if (k->decoded)
        dv_msg_release(&k->msg);
    msgpack_sbuffer_destroy(&k->bytes);
    free(k->found);
    free(k->dfound);
    free(k);
}

static void
s_keys_free_read(broker_read_t *r)
{
    s_keys_free((s_keys_read_t *)r);
}

/* Reader thread: decodes the submit again and looks up each key. */
static int
s_keys_run(broker_store_t *store, broker_read_t *r)
{
    s_keys_read_t *k = (s_keys_read_t *)r;
    char why[128];
    int rc =
        dv_msg_decode(k->bytes.data, k->bytes.size, &k->msg, why, sizeof why);
    if (rc != DV_OK)
        return rc;
    k->decoded = true;
    if (k->msg.type != DV_MSG_SUBMIT || k->msg.u.submit.njobs != k->n)
        return DV_EPROTO;
    const char *owner = k->has_owner ? k->owner : NULL;
    for (uint32_t i = 0; i < k->n; i++) {
        const dv_jobspec_t *js = &k->msg.u.submit.jobs[i];
        if (!js->key.ptr || !js->key.len)
            continue;
        char key[DV_KEY_MAX + 1];
        dv_str_copy(js->key, key, sizeof key);
        k->found[i].rc =
            broker_store_find_key(store, owner, key, k->found[i].id);
    }
    /* Dependencies not live when the submit came: stored, or unknown. */
    uint32_t d = 0;
    for (uint32_t i = 0; i < k->n; i++) {
        const dv_jobspec_t *js = &k->msg.u.submit.jobs[i];
        for (uint32_t j = 0; j < js->nafter + js->nafter_any && d < k->ndfound;
             j++, d++) {
            broker_dep_found_t *f = &k->dfound[d];
            if (f->rc != S_DEP_WANT)
                continue;
            char id[DV_ID_TEXT_LEN + 1];
            dv_str_copy(s_dep_id(js, j), id, sizeof id);
            s_dep_view_t c = { f, owner };
            int grc = broker_store_get(store, id, s_on_dep_view, &c);
            f->rc = grc == 1   ? BROKER_DEP_FOUND
                    : grc == 0 ? BROKER_DEP_NONE
                               : BROKER_DEP_FAILED;
        }
    }
    return 0;
}

static int s_add_waiter(broker_job_t *job, const broker_rid_t *rid);
static void s_submit(broker_t *self, const broker_rid_t *rid,
                     const dv_msg_t *msg, const s_found_t *found,
                     const broker_dep_found_t *dfound);

static void
s_keys_done(void *owner, broker_read_t *r)
{
    broker_t *self = owner;
    s_keys_read_t *k = (s_keys_read_t *)r;
    const broker_peer_t *before = broker_sender_use(self, &k->sender);
    if (r->stopped || r->rc != 0) {
        /* Not decoded: answer from what is known without the message. */
        dv_msg_t m = { .type = DV_MSG_SUBMIT };
        const dv_msg_t *msg = k->decoded ? &k->msg : &m;
        if (!k->decoded) {
            m.u.submit.njobs = k->n;
            m.u.submit.req = k->req;
        }
        if (r->stopped)
            s_refuse_submit(self, &k->rid, msg, DV_CODE_TRY_AGAIN,
                            broker_reads_refusal(BROKER_READER_STOPPED));
        else {
            dv_log(DV_ERROR, "broker.submit_read_failed",
                   DV_STR("error", dv_strerror(r->rc)));
            s_refuse_submit(self, &k->rid, msg,
                            r->rc == DV_ENOMEM ? DV_CODE_NO_MEMORY
                                               : DV_CODE_INTERNAL,
                            r->rc == DV_ENOMEM ? s_oom
                                               : "the submit could not be "
                                                 "read again");
        }
    } else if (self->store_failed) {
        s_refuse_submit(self, &k->rid, &k->msg, DV_CODE_STORE,
                        self->store_reason);
    } else {
        if (k->schedule[0] && k->msg.u.submit.njobs == 1)
            k->msg.u.submit.jobs[0].schedule = dv_str(k->schedule);
        s_submit(self, &k->rid, &k->msg, k->found, k->dfound);
    }
    self->sender = before;
    s_keys_free(k);
}

/* The submit has keys that are not pending: one read of all of them, the
 * submit handled when it is back. */
static void
s_submit_later(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg,
               const char *owner)
{
    uint32_t n = msg->u.submit.njobs;
    s_keys_read_t *k = calloc(1, sizeof *k);
    uint32_t nd = s_count_deps(msg);
    if (k) {
        msgpack_sbuffer_init(&k->bytes);
        k->found = calloc(n ? n : 1, sizeof *k->found);
        k->dfound = calloc(nd ? nd : 1, sizeof *k->dfound);
        k->ndfound = nd;
    }
    if (k && k->dfound)
        for (uint32_t i = 0, d = 0; i < n; i++) {
            const dv_jobspec_t *js = &msg->u.submit.jobs[i];
            for (uint32_t j = 0; j < js->nafter + js->nafter_any; j++, d++)
                if (s_dep_unread(self, s_dep_id(js, j)))
                    k->dfound[d].rc = S_DEP_WANT;
        }
    if (!k || !k->found || !k->dfound ||
        dv_msg_encode(msg, &k->bytes) != DV_OK || !k->bytes.data) {
        s_keys_free(k);
        broker_out_error(self, self->clients, rid, msg->u.submit.req,
                         DV_CODE_NO_MEMORY, s_oom);
        return;
    }
    k->base.run = s_keys_run;
    k->base.done = s_keys_done;
    k->base.free = s_keys_free_read;
    k->rid = *rid;
    k->req = msg->u.submit.req;
    k->n = n;
    if (rid->len == 0 && n == 1 && msg->u.submit.jobs[0].schedule.len)
        dv_str_copy(msg->u.submit.jobs[0].schedule, k->schedule,
                    sizeof k->schedule);
    broker_sender_save(self, &k->sender);
    if (owner) {
        k->has_owner = true;
        snprintf(k->owner, sizeof k->owner, "%s", owner);
    }
    int rc = broker_reads_push(self, &k->base, true);
    if (rc != 0) {
        s_keys_free(k);
        s_refuse_submit(self, rid, msg, DV_CODE_TRY_AGAIN,
                        broker_reads_refusal(rc));
    }
}

void
broker_client_submit(broker_t *self, const broker_rid_t *rid,
                     const dv_msg_t *msg)
{
    uint32_t n = msg->u.submit.njobs;
    if (self->store_failed) {
        s_refuse_submit(self, rid, msg, DV_CODE_STORE, self->store_reason);
        return;
    }
    /* A dependency not live in memory may be in the store: read first. */
    for (uint32_t i = 0; i < n; i++) {
        const dv_jobspec_t *js = &msg->u.submit.jobs[i];
        for (uint32_t j = 0; j < js->nafter + js->nafter_any; j++)
            if (s_dep_unread(self, s_dep_id(js, j))) {
                s_submit_later(self, rid, msg, broker_auth_owner(self));
                return;
            }
    }
    /* A key not pending in memory may be in the store: read first. */
    int owner_ix = -1;
    for (uint32_t i = 0; i < n; i++) {
        const dv_jobspec_t *js = &msg->u.submit.jobs[i];
        if (!js->key.ptr || !js->key.len)
            continue;
        if (owner_ix < 0) {
            owner_ix = broker_sched_owner(self, broker_auth_owner(self));
            if (owner_ix < 0)
                break; /* refused below, job by job */
        }
        char keybuf[DV_KEY_MAX + 1];
        char scoped[DV_KEY_MAX + 16];
        snprintf(scoped, sizeof scoped, "%d:%s", owner_ix,
                 dv_str_copy(js->key, keybuf, sizeof keybuf));
        if (!dv_map_get(self->pending_keys, scoped)) {
            s_submit_later(self, rid, msg, broker_auth_owner(self));
            return;
        }
    }
    s_submit(self, rid, msg, NULL, NULL);
}

/* Accepts a submit: every job new, refused, or a duplicate of the job
 * holding its key (pending in memory, or found by the read: found, per
 * job; NULL when every key was pending). */
static void
s_submit(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg,
         const s_found_t *found, const broker_dep_found_t *dfound)
{
    broker_dplan_t *plan = NULL; /* made for the first job with deps */
    uint32_t doff = 0;           /* the job's first entry in dfound */
    uint32_t n = msg->u.submit.njobs;
    broker_ack_batch_t *b = calloc(1, sizeof *b);
    if (!b) {
        broker_out_error(self, self->clients, rid, msg->u.submit.req,
                         DV_CODE_NO_MEMORY, s_oom);
        return;
    }
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
        broker_out_error(self, self->clients, rid, msg->u.submit.req,
                         DV_CODE_NO_MEMORY, s_oom);
        return;
    }
    int64_t now = broker_now_ms(self);
    uint32_t nomem = 0; /* jobs refused for lack of memory */
    /* The jobs' owner: the sender's certificate name (CurveZMQ), or none. */
    const char *owner = broker_auth_owner(self);
    int owner_ix = broker_sched_owner(self, owner);
    for (uint32_t i = 0; i < n; i++) {
        const dv_jobspec_t *js = &msg->u.submit.jobs[i];
        const broker_dep_found_t *jdf = dfound ? dfound + doff : NULL;
        doff += js->nafter + js->nafter_any;
        char keybuf[DV_KEY_MAX + 1];
        char scoped[DV_KEY_MAX + 16];
        /* Only the broker's own submits name a schedule. */
        char schedbuf[DV_NAME_MAX + 1];
        const char *schedule =
            rid->len == 0 && js->schedule.len
                ? dv_str_copy(js->schedule, schedbuf, sizeof schedbuf)
                : NULL;
        const char *key = NULL;
        if (js->key.ptr && js->key.len) {
            key = dv_str_copy(js->key, keybuf, sizeof keybuf);
            if (rid->len != 0 && !strncmp(key, BROKER_SELF_KEY_PREFIX,
                                          sizeof BROKER_SELF_KEY_PREFIX - 1)) {
                b->errors[i] = "idempotency keys beginning with 'drover:' "
                               "are the broker's own";
                b->acks[i].code = DV_CODE_INVALID_ARGUMENT;
                continue;
            }
            /* Keys are unique per owner. Those whose insert is not durable
             * yet are only in memory (as owner index + key); the rest are
             * in the store. */
            snprintf(scoped, sizeof scoped, "%d:%s", owner_ix, key);
            const broker_pkey_t *pending =
                dv_map_get(self->pending_keys, scoped);
            /* Not pending: as the read found it (found is NULL only when
             * every key was pending as the submit arrived). */
            int r = pending ? 1 : found ? found[i].rc : 0;
            if (pending)
                snprintf(b->ids[i], sizeof b->ids[i], "%s", pending->id);
            else if (r == 1)
                memcpy(b->ids[i], found[i].id, sizeof b->ids[i]);
            if (r == 1) {
                b->acks[i].duplicate = true;
                continue;
            }
            if (r < 0) {
                b->errors[i] = "store lookup of the idempotency key failed";
                b->acks[i].code = DV_CODE_STORE;
                continue;
            }
        }
        const char *closed = NULL;
        if (js->batch.len &&
            broker_batch_refuses(self, owner, js->batch, &closed)) {
            b->errors[i] = closed;
            b->acks[i].code = DV_CODE_NOT_ALLOWED;
            continue;
        }
        /* Its dependencies: every id must name a job (live, or stored). */
        bool has_deps = js->nafter || js->nafter_any;
        if (has_deps) {
            if (!plan && !(plan = malloc(sizeof *plan))) {
                b->errors[i] = s_oom;
                b->acks[i].code = DV_CODE_NO_MEMORY;
                nomem++;
                continue;
            }
            char why[96];
            dv_code_t code = DV_CODE_NONE;
            if (broker_deps_plan(self, js, jdf, plan, why, sizeof why, &code) !=
                0) {
                if (!b->whys)
                    b->whys = calloc(n, sizeof *b->whys);
                b->errors[i] = b->whys ? b->whys[i] : s_oom;
                if (b->whys)
                    memcpy(b->whys[i], why, sizeof why);
                b->acks[i].code = code;
                continue;
            }
        }
        char qname[DV_NAME_MAX + 1];
        dv_str_copy(js->queue, qname, sizeof qname);
        broker_queue_t *q = broker_sched_queue(self, qname);
        dv_id_t id;
        dv_id_new(&id);
        broker_job_t *job =
            broker_job_new(&id, js->payload.ptr, js->payload.len);
        size_t klen = key ? strlen(scoped) : 0;
        broker_pkey_t *k = key ? malloc(sizeof *k + klen + 1) : NULL;
        if (k) {
            k->next = NULL;
            memcpy(k->key, scoped, klen + 1);
        }
        if (job) {
            job->type = broker_sched_intern(self, js->type);
            job->batch = broker_sched_intern(self, js->batch);
            job->trace =
                js->trace.ptr && js->trace.len ? dv_str_dup(js->trace) : NULL;
        }
        if (!q || !job || (key && !k) || owner_ix < 0 ||
            (js->type.len && !job->type) || (js->batch.len && !job->batch) ||
            (js->trace.len && !job->trace)) {
            broker_job_destroy(&job);
            free(k);
            b->errors[i] = s_oom;
            b->acks[i].code = DV_CODE_NO_MEMORY;
            nomem++;
            continue;
        }
        job->queue = q;
        job->owner = (uint16_t)owner_ix;
        job->priority = (uint8_t)js->priority;
        job->run_at_ms = js->run_at_ms > now ? js->run_at_ms : now;
        job->max_attempts =
            (uint16_t)(js->max_attempts > 0 ? js->max_attempts
                                            : self->cfg.default_max_attempts);
        job->timeout_ms =
            (uint32_t)(js->timeout_ms > UINT32_MAX ? UINT32_MAX
                                                   : js->timeout_ms);
        dv_backoff_t bo =
            js->has_backoff ? js->backoff : self->cfg.default_backoff;
        job->backoff_base_ms =
            (uint32_t)(bo.base_ms > UINT32_MAX ? UINT32_MAX : bo.base_ms);
        job->backoff_cap_ms =
            (uint32_t)(bo.cap_ms > UINT32_MAX ? UINT32_MAX : bo.cap_ms);
        job->backoff_factor = (float)bo.factor;
        if (bo.jitter)
            job->flags |= BROKER_JOB_JITTER;
        dv_id_format(&id, b->ids[i]);
        /* The key is pending before the insert is recorded, so that a
         * failure here leaves nothing to undo in the group. */
        if (k) {
            memcpy(k->id, b->ids[i], sizeof k->id);
            if (dv_map_put(self->pending_keys, k->key, k) != 0) {
                b->errors[i] = s_oom;
                b->acks[i].code = DV_CODE_NO_MEMORY;
                nomem++;
                b->ids[i][0] = '\0';
                broker_job_destroy(&job);
                free(k);
                continue;
            }
        }

        broker_jobrec_t rec = {
            .id = b->ids[i],
            .queue = q->name,
            .type = job->type,
            .key = key,
            .batch = job->batch,
            .trace = job->trace,
            .payload = job->payload,
            .payload_len = job->payload_len,
            .state = has_deps && broker_deps_waits(plan) ? DV_STATE_WAITING
                     : job->run_at_ms > now              ? DV_STATE_SCHEDULED
                                                         : DV_STATE_QUEUED,
            .priority = job->priority,
            .created_ms = now,
            .run_at_ms = job->run_at_ms,
            .attempt = 0,
            .max_attempts = job->max_attempts,
            .timeout_ms = job->timeout_ms,
            .backoff = bo,
            .result_ttl_ms = js->result_ttl_ms > 0
                                 ? js->result_ttl_ms
                                 : self->cfg.default_result_ttl_ms,
            .owner = owner,
            .schedule = schedule,
            .deps = has_deps ? plan->deps : NULL,
            .ndeps = has_deps ? plan->ndeps : 0,
        };
        bool attached = false;
        if (broker_index_put(&self->index, job) != 0 ||
            (has_deps && broker_deps_attach(self, job, plan) != 0) ||
            !(attached = true) ||
            broker_wbatch_insert(&self->cur->wb, &rec) != 0) {
            if (attached)
                broker_deps_detach(self, job);
            /* An index entry without its insert (or the reverse) would be
             * half a job: refuse it whole. The index entry goes with the
             * group's failure handling if the insert was recorded. */
            broker_index_del(&self->index, job);
            if (k)
                dv_map_delete(self->pending_keys, k->key);
            b->errors[i] = s_oom;
            b->acks[i].code = DV_CODE_NO_MEMORY;
            nomem++;
            b->ids[i][0] = '\0';
            broker_job_destroy(&job);
            free(k);
            continue;
        }
        job->flags |= BROKER_JOB_PENDING;
        job->state = DV_STATE_NONE;
        if (job->batch)
            broker_batch_inserted(self, job);
        /* submit {wait:true}: the sender waits for it from the start, so
         * its result is pushed without a wait (and a store read) later. */
        if (msg->u.submit.wait && s_add_waiter(job, rid) != 0)
            broker_out_dropped(rid, b->req, "result");
        if (k) {
            k->next = self->cur->keys;
            self->cur->keys = k;
        }
        b->jobs[i] = job;
    }
    free(plan);
    if (nomem) {
        char peer[2 * 255 + 1];
        broker_out_rid_hex(rid, peer);
        dv_log(DV_ERROR, "broker.submit_refused", DV_STR("peer", peer),
               DV_INT("req", (int64_t)b->req), DV_INT("jobs", nomem),
               DV_STR("error", "out of memory"));
    }
    *self->cur->acks_tail = b;
    self->cur->acks_tail = &b->next;
}

void
broker_client_results_free_owned(broker_results_t *r)
{
    while (r->owned) {
        broker_owned_t *o = r->owned;
        r->owned = o->next;
        free(o);
    }
}

void
broker_client_results_destroy(void *item)
{
    broker_results_t *r = item;
    free(r->items);
    broker_client_results_free_owned(r);
    free(r);
}

broker_results_t *
broker_client_results_for(broker_group_t *g, const broker_rid_t *rid)
{
    broker_results_t *r =
        dv_map_getn(g->results_out, (const char *)rid->data, rid->len);
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return NULL;
        r->rid = *rid;
        /* Keyed by the copy of the routing id it holds. */
        if (dv_map_putn(g->results_out, (const char *)r->rid.data, r->rid.len,
                        r) != 0) {
            free(r);
            return NULL;
        }
    }
    return r;
}

dv_result_t *
broker_client_results_add(broker_results_t *r)
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

dv_str_t
broker_client_results_own(broker_results_t *r, const void *p, size_t len,
                          bool *failed)
{
    if (!p)
        return (dv_str_t){ 0 };
    broker_owned_t *o = malloc(sizeof *o + len + 1);
    if (!o) {
        *failed = true;
        return (dv_str_t){ 0 };
    }
    memcpy(o->data, p, len);
    o->data[len] = '\0';
    o->next = r->owned;
    r->owned = o;
    return dv_strn(o->data, len);
}

void
broker_client_on_view(void *arg, const broker_jobview_t *v)
{
    broker_view_ctx_t *c = arg;
    if (c->reader && !broker_auth_may_read(c->reader, v->owner))
        return; /* not the sender's: left as it is (unknown) */
    c->it->state = v->state;
    c->it->attempts = v->attempt;
    c->it->finished_ms = v->finished_ms;
    if (v->result && v->result_len)
        c->it->result = broker_client_results_own(c->r, v->result,
                                                  v->result_len, &c->failed);
    if (v->category) {
        c->it->has_failure = true;
        dv_failure_init(&c->it->failure);
        c->it->failure.category =
            dv_category_parse(v->category, strlen(v->category));
        if (v->error)
            c->it->failure.message = broker_client_results_own(
                c->r, v->error, strlen(v->error), &c->failed);
    }
}

/* Adds a waiter for rid to a live job (once per client). Returns 0, or
 * -1 on out of memory. */
static int
s_add_waiter(broker_job_t *job, const broker_rid_t *rid)
{
    for (broker_waiter_t *w = job->waiters; w; w = w->next)
        if (w->len == rid->len && !memcmp(w->rid, rid->data, rid->len))
            return 0;
    broker_waiter_t *w = malloc(sizeof *w + rid->len);
    if (!w)
        return -1;
    w->len = rid->len;
    memcpy(w->rid, rid->data, rid->len);
    w->next = job->waiters;
    job->waiters = w;
    return 0;
}

/* The live job with id sid that the sender may read, or NULL; *hidden
 * set when it is live but not the sender's. */
static broker_job_t *
s_live(broker_t *self, dv_str_t sid, bool *hidden)
{
    dv_id_t id;
    broker_job_t *job = NULL;
    if (dv_id_parse(sid.ptr, sid.len, &id) == 0)
        job = broker_index_get(&self->index, &id);
    *hidden = job && !broker_auth_may_read(
                         self, broker_sched_owner_name(self, job->owner));
    return *hidden ? NULL : job;
}

/* Adds a result for sid to this group's results for rid: from view (a
 * stored job; NULL: unknown). */
static void
s_wait_result(broker_t *self, const broker_rid_t *rid, uint64_t req,
              dv_str_t sid, const broker_jobview_t *view)
{
    broker_results_t *r = broker_client_results_for(self->cur, rid);
    dv_result_t *it = r ? broker_client_results_add(r) : NULL;
    if (!it) {
        broker_out_dropped(rid, req, "result");
        return;
    }
    broker_view_ctx_t ctx = { r, it, false, self };
    it->id = broker_client_results_own(r, sid.ptr, sid.len, &ctx.failed);
    it->state = DV_STATE_UNKNOWN;
    if (view && !ctx.failed) {
        broker_client_on_view(&ctx, view);
        /* Stored but not live: lost track of it. */
        if (!dv_state_terminal(it->state) && it->state != DV_STATE_UNKNOWN)
            it->state = DV_STATE_UNKNOWN;
    }
    if (ctx.failed) { /* it is the last item: take it back */
        r->n--;
        broker_out_dropped(rid, req, "result");
    }
}

/* The read of a wait's ended jobs is back (sender as self->sender). A job
 * live again meanwhile (retried) is waited for instead. */
static void
s_wait_answer(broker_t *self, broker_views_t *v)
{
    for (uint32_t i = 0; i < v->n; i++) {
        broker_viewed_t *it = &v->items[i];
        dv_str_t sid = dv_strn(it->id, DV_ID_TEXT_LEN);
        bool hidden = false;
        broker_job_t *job = s_live(self, sid, &hidden);
        if (job && !v->base.stopped) {
            if (s_add_waiter(job, &v->rid) != 0)
                broker_out_dropped(&v->rid, v->req, "result");
            continue;
        }
        if (v->base.stopped || it->rc < 0) {
            /* Not read: unknown would say the broker lost track of it. */
            broker_out_error(
                self, self->clients, &v->rid, v->req,
                v->base.stopped ? DV_CODE_TRY_AGAIN : DV_CODE_STORE,
                v->base.stopped ? broker_reads_refusal(BROKER_READER_STOPPED)
                                : "store read failed");
            return;
        }
        s_wait_result(self, &v->rid, v->req, sid,
                      it->rc == 1 && !hidden ? it->view : NULL);
    }
}

static void
s_on_wait(broker_t *self, const broker_rid_t *rid, const dv_msg_t *msg)
{
    uint64_t req = msg->u.wait.req;
    uint32_t nread = 0; /* ids to look up in the store */
    for (uint32_t i = 0; i < msg->u.wait.nids; i++) {
        dv_str_t sid = msg->u.wait.ids[i];
        bool hidden = false;
        broker_job_t *job = s_live(self, sid, &hidden);
        /* A job the sender may not read is answered as one that does not
         * exist: state unknown, whether or not it is live. */
        if (job) {
            if (s_add_waiter(job, rid) != 0)
                broker_out_dropped(rid, req, "result");
        } else if (sid.len == DV_ID_TEXT_LEN && !hidden) {
            nread++;
        } else {
            s_wait_result(self, rid, req, sid, NULL);
        }
    }
    if (!nread)
        return;
    broker_views_t *v = broker_views_new(self, rid, req, nread, s_wait_answer);
    if (!v) {
        broker_out_error(self, self->clients, rid, req, DV_CODE_NO_MEMORY,
                         s_oom);
        return;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < msg->u.wait.nids; i++) {
        dv_str_t sid = msg->u.wait.ids[i];
        bool hidden = false;
        if (!s_live(self, sid, &hidden) && sid.len == DV_ID_TEXT_LEN && !hidden)
            dv_str_copy(sid, v->items[k++].id, sizeof v->items[0].id);
    }
    int rc = broker_reads_push(self, &v->base, true);
    if (rc != 0) {
        broker_views_free(v);
        broker_out_error(self, self->clients, rid, req, DV_CODE_TRY_AGAIN,
                         broker_reads_refusal(rc));
    }
}

void
broker_client_on_message(broker_t *self, const broker_rid_t *rid,
                         const dv_msg_t *msg)
{
    switch (msg->type) {
    case DV_MSG_SUBMIT:
        broker_client_submit(self, rid, msg);
        break;
    case DV_MSG_WAIT:
        s_on_wait(self, rid, msg);
        break;
    case DV_MSG_CTRL:
        broker_ctrl_on_message(self, rid, msg);
        break;
    default:
        broker_out_unexpected(self, self->clients, rid, msg);
    }
}
