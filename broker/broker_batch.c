/* broker_batch - batch records: a named group of one owner's jobs that,
 * once closed and every job ended, gets its callbacks submitted (once).
 *
 * A job's batch name alone is a label (plain `--batch NAME`): nothing here
 * knows of it and it costs nothing. `drover batch open` makes a record,
 * keyed by (owner, name): the owner is the certificate name of who opened
 * it ("" without CurveZMQ). Its jobs are that owner's jobs of that name
 * submitted after the open (ids greater than the record's since_id, so a
 * name used as a label before is not mixed in). In memory the record
 * counts them: pending (inserted, insert not durable yet), total
 * (durable), succeeded, dead, cancelled; each step O(1), found from
 * job->batch and job->owner.
 *
 * Complete = closed, nothing pending, every job ended. Then the callbacks
 * (on_complete always, on_success if every job succeeded, on_failure if
 * any ended dead or cancelled) are submitted with broker_self_submit()
 * under the keys drover:batch:NAME:complete (:success, :failure), owner
 * the batch's: a second submit of one is a duplicate, which is what makes
 * them happen once across restarts. Once every callback has its ack (a
 * durable insert or a duplicate) the record is written `called` with
 * their ids; once they ended, `done`. A refused callback is submitted
 * again after a backoff, one without an ack after S_ACK_MS.
 *
 * At start-up (broker_batch_recover) the records are loaded, those open
 * or closed recount their jobs from the store, and the callbacks of a
 * complete one are submitted (again: duplicates if they were). The expiry
 * keeps the jobs of a batch whose record is not done (store_*.c).
 *
 * Firing is deferred to broker_batch_tick (once per loop pass) so that no
 * submit starts inside a finish or a group flush.
 *
 * Loop thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

#include "dv_json.h"
#include "dv_log.h"

#define S_NCB       BROKER_BATCH_CBS
#define S_ACK_MS    60000 /* no ack this long after a submit: again */
#define S_RETRY_MIN 500
#define S_RETRY_MAX 30000
#define S_TICK_MS   1000
#define S_KEY_MAX   BROKER_BATCH_KEY_MAX

typedef enum { S_OPEN, S_CLOSED, S_CALLED, S_DONE } s_state_t;

static const char *const s_states[] = { "open", "closed", "called", "done" };
static const char *const s_cb_names[S_NCB] = { "complete", "success",
                                               "failure" };

typedef struct {
    broker_batch_t *b;
    char *type;                  /* NULL: none */
    char id[DV_ID_TEXT_LEN + 1]; /* its job, once acked; "" */
    bool want;                   /* to be submitted (decided at completion) */
    bool inflight;               /* submitted, no ack yet */
    bool ended;                  /* its job ended */
    int64_t sent_mono;
} s_cb_t;

struct broker_batch {
    char *key; /* owner "\x1f" name: the map's key */
    char *owner;
    char *name;
    char *queue;
    char *since_id;
    void *extra; /* msgpack map merged into the callbacks' payload */
    size_t extra_len;
    s_state_t state;
    bool decided; /* complete: the callbacks wanted are known */
    bool recount; /* loaded open or closed: its jobs are counted from the
                   * store once every record is loaded */
    int64_t pending, total, succeeded, dead, cancelled;
    dv_id_t since; /* jobs with a greater id are its own */
    s_cb_t cbs[S_NCB];
    int64_t created_ms, closed_ms, done_ms;
    int64_t retry_mono, backoff_ms;
    char *closed_why; /* "batch 'X' is closed" (acks point at it) */
    broker_batch_t *gone_next;
};

/* ---- records -------------------------------------------------------------- */

static void
s_free(void *item)
{
    broker_batch_t *b = item;
    if (!b)
        return;
    free(b->key);
    free(b->owner);
    free(b->name);
    free(b->queue);
    free(b->since_id);
    free(b->extra);
    free(b->closed_why);
    for (int i = 0; i < S_NCB; i++)
        free(b->cbs[i].type);
    free(b);
}

static void
s_key(char *out, const char *owner, const char *name)
{
    snprintf(out, S_KEY_MAX + 1, "%s\x1f%s", owner ? owner : "", name);
}

/* A new record (not in the map yet); NULL on out of memory. */
static broker_batch_t *
s_new(const char *owner, const char *name, const char *queue,
      const char *types[S_NCB], const void *extra, size_t extra_len,
      const char *since_id)
{
    broker_batch_t *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    char key[S_KEY_MAX + 1];
    s_key(key, owner, name);
    char why[DV_NAME_MAX + 32];
    snprintf(why, sizeof why, "batch '%s' is closed", name);
    b->key = strdup(key);
    b->owner = strdup(owner ? owner : "");
    b->name = strdup(name);
    b->queue = strdup(queue && queue[0] ? queue : "default");
    b->since_id = strdup(since_id ? since_id : "");
    b->closed_why = strdup(why);
    bool ok = b->key && b->owner && b->name && b->queue && b->since_id &&
              b->closed_why &&
              dv_id_parse(since_id, (unsigned)strlen(since_id), &b->since) == 0;
    for (int i = 0; i < S_NCB; i++) {
        b->cbs[i].b = b;
        if (types[i] && types[i][0] && !(b->cbs[i].type = strdup(types[i])))
            ok = false;
    }
    if (ok && extra && extra_len) {
        b->extra = malloc(extra_len);
        if (b->extra) {
            memcpy(b->extra, extra, extra_len);
            b->extra_len = extra_len;
        } else {
            ok = false;
        }
    }
    if (!ok) {
        s_free(b);
        return NULL;
    }
    return b;
}

broker_batch_t *
broker_batch_find(const broker_t *self, const char *owner, const char *name)
{
    if (!name || dv_map_size(self->batches) == 0)
        return NULL;
    char key[S_KEY_MAX + 1];
    s_key(key, owner, name);
    return dv_map_get(self->batches, key);
}

/* The record job counts toward, or NULL (a plain label, or a job made
 * before the record). */
static broker_batch_t *
s_of_job(const broker_t *self, const broker_job_t *job)
{
    if (!job->batch || dv_map_size(self->batches) == 0)
        return NULL;
    broker_batch_t *b = broker_batch_find(
        self, broker_sched_owner_name(self, job->owner), job->batch);
    if (!b || memcmp(job->id.b, b->since.b, sizeof b->since.b) <= 0)
        return NULL;
    return b;
}

static int64_t
s_ended(const broker_batch_t *b)
{
    return b->succeeded + b->dead + b->cancelled;
}

/* Records b as it stands in the current group. */
static void
s_save(broker_t *self, const broker_batch_t *b)
{
    broker_batchrec_t r = {
        .owner = b->owner,
        .name = b->name,
        .state = s_states[b->state],
        .on_complete = b->cbs[0].type,
        .on_success = b->cbs[1].type,
        .on_failure = b->cbs[2].type,
        .queue = b->queue,
        .payload = b->extra,
        .payload_len = b->extra_len,
        .complete_id = b->cbs[0].id[0] ? b->cbs[0].id : NULL,
        .success_id = b->cbs[1].id[0] ? b->cbs[1].id : NULL,
        .failure_id = b->cbs[2].id[0] ? b->cbs[2].id : NULL,
        .created_ms = b->created_ms,
        .closed_ms = b->closed_ms,
        .done_ms = b->done_ms,
        .since_id = b->since_id,
    };
    if (broker_wbatch_batch(&self->cur->wb, &r) != 0)
        broker_write_lost(self);
}

/* Packs {total, succeeded, dead, cancelled} (pending and live with
 * live_too). */
static void
s_pack_counts(msgpack_packer *pk, const broker_batch_t *b, bool live_too)
{
    msgpack_pack_map(pk, live_too ? 6 : 4);
    broker_pack_kv_int(pk, "total", b->total);
    broker_pack_kv_int(pk, "succeeded", b->succeeded);
    broker_pack_kv_int(pk, "dead", b->dead);
    broker_pack_kv_int(pk, "cancelled", b->cancelled);
    if (live_too) {
        int64_t live = b->total - s_ended(b);
        broker_pack_kv_int(pk, "pending", b->pending);
        broker_pack_kv_int(pk, "live", live > 0 ? live : 0);
    }
}

static void
s_pack_callbacks(msgpack_packer *pk, const broker_batch_t *b,
                 const dv_state_t *states)
{
    int n = 0;
    for (int i = 0; i < S_NCB; i++)
        n += b->cbs[i].type != NULL;
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < S_NCB; i++) {
        const s_cb_t *cb = &b->cbs[i];
        if (!cb->type)
            continue;
        bool st = states && states[i] != DV_STATE_NONE;
        msgpack_pack_map(pk, 2 + (cb->id[0] != 0) + st);
        broker_pack_kv_str(pk, "on", s_cb_names[i]);
        broker_pack_kv_str(pk, "type", cb->type);
        if (cb->id[0])
            broker_pack_kv_str(pk, "id", cb->id);
        if (st)
            broker_pack_kv_str(pk, "state", dv_state_name(states[i]));
    }
}

/* batch.closed / batch.completed {name, owner, counts, callbacks}. */
static void
s_event(broker_t *self, const broker_batch_t *b, const char *kind)
{
    if (!self->events)
        return; /* start-up, before the sockets: subscribers resync */
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    msgpack_pack_map(&pk, 4);
    broker_pack_kv_str(&pk, "name", b->name);
    broker_pack_kv_str(&pk, "owner", b->owner);
    broker_pack_str(&pk, "counts");
    s_pack_counts(&pk, b, false);
    broker_pack_str(&pk, "callbacks");
    s_pack_callbacks(&pk, b, NULL);
    dv_event_t ev = { 0 };
    ev.kind = dv_str(kind);
    ev.batch = dv_str(b->name);
    if (body.failed) {
        dv_log(DV_ERROR, "broker.event_dropped", DV_STR("kind", kind),
               DV_INT("seq", (int64_t)++self->event_seq),
               DV_STR("error", "out of memory"));
    } else {
        ev.body = dv_strn(body.sb.data, body.sb.size);
        broker_out_event(self, &ev);
    }
    broker_body_destroy(&body);
}

static void
s_set_state(broker_t *self, broker_batch_t *b, s_state_t st)
{
    b->state = st;
    if (st == S_CLOSED && !b->closed_ms)
        b->closed_ms = broker_now_ms(self);
    if (st == S_DONE)
        b->done_ms = broker_now_ms(self);
    s_save(self, b);
    dv_log(DV_INFO, "broker.batch_state", DV_STR("batch", b->name),
           DV_STR("owner", b->owner), DV_STR("state", s_states[st]),
           DV_INT("total", b->total), DV_INT("succeeded", b->succeeded),
           DV_INT("dead", b->dead), DV_INT("cancelled", b->cancelled));
}

/* Called: done once every callback submitted has ended. */
static void
s_maybe_done(broker_t *self, broker_batch_t *b)
{
    if (b->state != S_CALLED)
        return;
    for (int i = 0; i < S_NCB; i++)
        if (b->cbs[i].want && !b->cbs[i].ended)
            return;
    s_set_state(self, b, S_DONE);
}

/* Closed, nothing pending, every job ended: decides the callbacks, which
 * the next tick submits. */
static void
s_check(broker_t *self, broker_batch_t *b)
{
    if (b->state != S_CLOSED || b->decided || b->pending > 0 ||
        s_ended(b) < b->total)
        return;
    b->decided = true;
    bool failed = b->dead + b->cancelled > 0;
    b->cbs[0].want = b->cbs[0].type != NULL;
    b->cbs[1].want = b->cbs[1].type != NULL && !failed;
    b->cbs[2].want = b->cbs[2].type != NULL && failed;
    s_event(self, b, "batch.completed");
    if (!b->cbs[0].want && !b->cbs[1].want && !b->cbs[2].want) {
        s_set_state(self, b, S_CALLED);
        s_maybe_done(self, b);
        return;
    }
    self->batch_due = true;
}

/* Tracks a callback's job: live, its end is seen in broker_batch_ended;
 * not live (it ended before), ended now. */
static void
s_track(broker_t *self, s_cb_t *cb)
{
    dv_id_t id;
    broker_job_t *job = dv_id_parse(cb->id, DV_ID_TEXT_LEN, &id) == 0
                            ? broker_index_get(&self->index, &id)
                            : NULL;
    bool live = job && job->state != DV_STATE_SUCCEEDED &&
                job->state != DV_STATE_DEAD && job->state != DV_STATE_CANCELLED;
    if (!live || dv_map_put(self->batch_cbs, cb->id, cb) != 0)
        cb->ended = true; /* (out of memory: taken as ended) */
}

const char *
broker_batch_key(const broker_batch_t *b)
{
    return b->key;
}

const char *
broker_batch_since(const broker_batch_t *b)
{
    return b->since_id;
}

const char *
broker_batch_cb_id(const broker_batch_t *b, int i)
{
    return b->cbs[i].id;
}

/* ---- callbacks ------------------------------------------------------------ */

static void
s_acked(broker_t *self, void *arg, const dv_submit_ack_t *ack)
{
    s_cb_t *cb = arg;
    broker_batch_t *b = cb->b;
    cb->inflight = false;
    if (cb->id[0] || b->state != S_CLOSED)
        return; /* the ack of a submit made again: known already */
    if (ack->id.len == DV_ID_TEXT_LEN && !ack->error.len) {
        dv_str_copy(ack->id, cb->id, sizeof cb->id);
        b->backoff_ms = 0;
        s_track(self, cb);
        for (int i = 0; i < S_NCB; i++)
            if (b->cbs[i].want && !b->cbs[i].id[0])
                return;
        s_set_state(self, b, S_CALLED);
        s_maybe_done(self, b);
        return;
    }
    b->backoff_ms = b->backoff_ms ? b->backoff_ms * 2 : S_RETRY_MIN;
    if (b->backoff_ms > S_RETRY_MAX)
        b->backoff_ms = S_RETRY_MAX;
    b->retry_mono = broker_mono_ms(self) + b->backoff_ms;
    char why[128];
    dv_log(DV_WARN, "broker.batch_callback_refused", DV_STR("batch", b->name),
           DV_STR("owner", b->owner),
           DV_STR("error", dv_str_copy(ack->error, why, sizeof why)),
           DV_INT("retry_ms", b->backoff_ms));
}

/* The callback's payload: {batch, total, succeeded, dead, cancelled} and
 * the record's extra fields. Returns 0 or -1 (out of memory). */
static int
s_payload(const broker_batch_t *b, broker_body_t *body)
{
    msgpack_packer pk;
    broker_body_init(body, &pk);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    uint32_t nextra = 0;
    if (b->extra &&
        msgpack_unpack_next(&u, b->extra, b->extra_len, NULL) ==
            MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP)
        nextra = u.data.via.map.size;
    msgpack_pack_map(&pk, 5 + nextra);
    broker_pack_kv_str(&pk, "batch", b->name);
    broker_pack_kv_int(&pk, "total", b->total);
    broker_pack_kv_int(&pk, "succeeded", b->succeeded);
    broker_pack_kv_int(&pk, "dead", b->dead);
    broker_pack_kv_int(&pk, "cancelled", b->cancelled);
    for (uint32_t i = 0; i < nextra; i++) {
        msgpack_pack_object(&pk, u.data.via.map.ptr[i].key);
        msgpack_pack_object(&pk, u.data.via.map.ptr[i].val);
    }
    msgpack_unpacked_destroy(&u);
    return body->failed ? -1 : 0;
}

static void
s_submit(broker_t *self, broker_batch_t *b, int i)
{
    s_cb_t *cb = &b->cbs[i];
    broker_body_t body;
    char key[DV_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s%s:%s:%s", BROKER_SELF_KEY_PREFIX, "batch",
             b->name, s_cb_names[i]);
    int rc = s_payload(b, &body);
    if (rc == 0) {
        dv_jobspec_t js = { 0 };
        js.queue = dv_str(b->queue);
        js.type = dv_str(cb->type);
        js.key = dv_str(key);
        js.payload = dv_strn(body.sb.data, body.sb.size);
        js.priority = 5;
        cb->inflight = true;
        cb->sent_mono = broker_mono_ms(self);
        rc = broker_self_submit(self, &js, b->owner[0] ? b->owner : NULL,
                                s_acked, cb);
        if (rc != 0)
            cb->inflight = false;
    }
    broker_body_destroy(&body);
    if (rc != 0) {
        b->retry_mono = broker_mono_ms(self) + S_RETRY_MIN;
        dv_log(DV_ERROR, "broker.batch_callback_failed",
               DV_STR("batch", b->name), DV_STR("error", "out of memory"));
    }
}

void
broker_batch_tick(broker_t *self)
{
    if (dv_map_size(self->batches) == 0)
        return;
    int64_t now = broker_mono_ms(self);
    if (!self->batch_due && now < self->batch_next_ms)
        return;
    self->batch_due = false;
    self->batch_next_ms = now + S_TICK_MS;
    broker_batch_t *b;
    DV_MAP_EACH(b, self->batches)
    {
        if (b->state != S_CLOSED || !b->decided)
            continue;
        for (int i = 0; i < S_NCB; i++) {
            s_cb_t *cb = &b->cbs[i];
            if (!cb->want || cb->id[0] || b->state != S_CLOSED)
                continue;
            if (cb->inflight ? now - cb->sent_mono < S_ACK_MS
                             : now < b->retry_mono)
                continue;
            s_submit(self, b, i);
        }
    }
}

/* ---- the jobs' steps ------------------------------------------------------ */

bool
broker_batch_refuses(const broker_t *self, const char *owner, dv_str_t batch,
                     const char **why)
{
    if (!batch.len || dv_map_size(self->batches) == 0)
        return false;
    char name[DV_NAME_MAX + 1];
    dv_str_copy(batch, name, sizeof name);
    const broker_batch_t *b = broker_batch_find(self, owner, name);
    if (!b || b->state == S_OPEN)
        return false;
    *why = b->closed_why;
    return true;
}

void
broker_batch_inserted(broker_t *self, const broker_job_t *job)
{
    broker_batch_t *b = s_of_job(self, job);
    if (b)
        b->pending++;
}

void
broker_batch_durable(broker_t *self, const broker_job_t *job, bool ok)
{
    broker_batch_t *b = s_of_job(self, job);
    if (!b || b->pending <= 0)
        return;
    b->pending--;
    if (ok)
        b->total++;
    s_check(self, b);
}

void
broker_batch_ended(broker_t *self, const broker_job_t *job, dv_state_t state)
{
    if (dv_map_size(self->batch_cbs) != 0 && !job->batch) {
        char id[DV_ID_TEXT_LEN + 1];
        broker_id_text(job, id);
        s_cb_t *cb = dv_map_get(self->batch_cbs, id);
        if (cb) {
            dv_map_delete(self->batch_cbs, id);
            cb->ended = true;
            s_maybe_done(self, cb->b);
        }
        return;
    }
    broker_batch_t *b = s_of_job(self, job);
    if (!b)
        return;
    if (state == DV_STATE_SUCCEEDED)
        b->succeeded++;
    else if (state == DV_STATE_DEAD)
        b->dead++;
    else
        b->cancelled++;
    s_check(self, b);
}

void
broker_batch_retried(broker_t *self, const broker_job_t *job, dv_state_t was)
{
    broker_batch_t *b = s_of_job(self, job);
    if (!b || b->decided)
        return;
    if (was == DV_STATE_DEAD && b->dead > 0)
        b->dead--;
    else if (was == DV_STATE_CANCELLED && b->cancelled > 0)
        b->cancelled--;
}

/* ---- start-up ------------------------------------------------------------- */

static int
s_on_rec(void *arg, const broker_batchrec_t *r)
{
    broker_t *self = arg;
    s_state_t st = S_OPEN;
    for (int i = 0; i < 4; i++)
        if (!strcmp(r->state, s_states[i]))
            st = (s_state_t)i;
    const char *types[S_NCB] = { r->on_complete, r->on_success, r->on_failure };
    broker_batch_t *b = s_new(
        r->owner, r->name, r->queue, types, r->payload, r->payload_len,
        r->since_id ? r->since_id : "00000000-0000-7000-8000-000000000000");
    if (!b)
        return DV_ENOMEM;
    b->state = st;
    b->created_ms = r->created_ms;
    b->closed_ms = r->closed_ms;
    b->done_ms = r->done_ms;
    const char *ids[S_NCB] = { r->complete_id, r->success_id, r->failure_id };
    if (dv_map_put(self->batches, b->key, b) != 0) {
        s_free(b);
        return DV_ENOMEM;
    }
    if (st == S_DONE)
        return 0;
    if (st == S_CALLED) {
        b->decided = true;
        for (int i = 0; i < S_NCB; i++) {
            if (!ids[i])
                continue;
            snprintf(b->cbs[i].id, sizeof b->cbs[i].id, "%s", ids[i]);
            b->cbs[i].want = true;
            s_track(self, &b->cbs[i]);
        }
        s_maybe_done(self, b);
        return 0;
    }
    /* Open or closed: counted once the load is over (no store call
     * inside another one's callback). */
    b->recount = true;
    return 0;
}

/* Counts the jobs of a batch loaded open or closed as the store has them
 * (the live ones are in memory too and are counted again when they end),
 * and submits its callbacks if it is complete. */
static int
s_recount(broker_t *self, broker_batch_t *b)
{
    broker_batch_counts_t c;
    int rc = broker_store_batch_counts(self->store, b->owner, b->name,
                                       b->since_id, &c);
    if (rc != 0)
        return rc;
    b->recount = false;
    b->total =
        c.queued + c.scheduled + c.running + c.succeeded + c.dead + c.cancelled;
    b->succeeded = c.succeeded;
    b->dead = c.dead;
    b->cancelled = c.cancelled;
    s_check(self, b);
    return 0;
}

int
broker_batch_recover(broker_t *self)
{
    if (!self->batches)
        self->batches = dv_map_new(NULL); /* freed by hand: see forget */
    if (!self->batch_cbs)
        self->batch_cbs = dv_map_new(NULL);
    if (!self->batches || !self->batch_cbs) {
        dv_log(DV_ERROR, "broker.start_failed",
               DV_STR("error", "out of memory"));
        return -1;
    }
    int rc = broker_store_load_batches(self->store, s_on_rec, self);
    /* Collected first: s_check may submit a callback, which does not
     * change the map but is kept out of the walk anyway. */
    size_t n = 0, i = 0;
    broker_batch_t *b;
    DV_MAP_EACH(b, self->batches)
    {
        n += b->recount;
    }
    broker_batch_t **todo = n ? calloc(n, sizeof *todo) : NULL;
    if (n && !todo && rc == 0)
        rc = DV_ENOMEM;
    if (todo) {
        DV_MAP_EACH(b, self->batches)
        {
            if (b->recount)
                todo[i++] = b;
        }
        for (i = 0; i < n && rc == 0; i++)
            rc = s_recount(self, todo[i]);
        free(todo);
    }
    if (rc != 0) {
        dv_log(DV_ERROR, "broker.start_failed",
               DV_STR("error", "cannot load the batch records"),
               DV_STR("cause", dv_strerror(rc)));
        return -1;
    }
    if (dv_map_size(self->batches))
        dv_log(DV_INFO, "broker.batches_loaded",
               DV_INT("batches", (int64_t)dv_map_size(self->batches)));
    return 0;
}

void
broker_batch_free_all(broker_t *self)
{
    dv_map_destroy(&self->batch_cbs);
    broker_batch_t *b;
    DV_MAP_EACH(b, self->batches)
    {
        s_free(b);
    }
    dv_map_destroy(&self->batches);
    while (self->batches_gone) {
        broker_batch_t *g = self->batches_gone;
        self->batches_gone = g->gone_next;
        s_free(g);
    }
}

/* ---- control verbs: batch.open, .close, .show, .jobs, .forget ------------- */

/* The verb's args as JSON, or NULL after answering why not. */
static json_t *
s_args(broker_t *self, const broker_rid_t *rid, const dv_ctrl_t *c,
       char name[DV_NAME_MAX + 1])
{
    char why[128] = "";
    json_t *a = c->args.ptr ? dv_msgpack_to_json(c->args.ptr, c->args.len, why,
                                                 sizeof why)
                            : NULL;
    const char *n = json_string_value(json_object_get(a, "name"));
    if (!n)
        n = json_string_value(json_object_get(a, "batch"));
    if (!json_is_object(a) || !n || !n[0] || strlen(n) > DV_NAME_MAX) {
        char reason[256];
        char verb[DV_NAME_MAX + 1];
        snprintf(reason, sizeof reason,
                 "%s needs args {name: BATCH (1..%d bytes)}%s%s",
                 dv_str_copy(c->verb, verb, sizeof verb), DV_NAME_MAX,
                 why[0] ? ": " : "", why);
        broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT, reason,
                         NULL, false);
        json_decref(a);
        return NULL;
    }
    snprintf(name, DV_NAME_MAX + 1, "%s", n);
    return a;
}

/* Whose batch the verb is about: the sender's own (its certificate name,
 * "" without CurveZMQ); an operator (or anyone without CurveZMQ) may name
 * another owner with args {owner}. */
const char *
broker_batch_owner(const broker_t *self, const json_t *args)
{
    const char *asked = json_string_value(json_object_get(args, "owner"));
    if (asked && (!self->sender || self->sender->role == DV_ROLE_OPERATOR))
        return asked;
    const char *own = broker_auth_owner(self);
    return own ? own : "";
}

/* Whose jobs the sender may list: a client under CurveZMQ only its own;
 * NULL (any owner's) for everyone else. */
const char *
broker_batch_reader_owner(const broker_t *self)
{
    if (self->sender && self->sender->role == DV_ROLE_CLIENT)
        return self->sender->name;
    return NULL;
}

static void
s_pack_record(msgpack_packer *pk, const broker_batch_t *b,
              const dv_state_t *states)
{
    bool complete = b->state == S_CALLED || b->state == S_DONE || b->decided;
    msgpack_pack_map(pk, 9 + (b->closed_ms > 0) + (b->done_ms > 0));
    broker_pack_kv_str(pk, "name", b->name);
    broker_pack_kv_str(pk, "owner", b->owner);
    broker_pack_str(pk, "record");
    msgpack_pack_true(pk);
    broker_pack_kv_str(pk, "state", s_states[b->state]);
    broker_pack_kv_str(pk, "queue", b->queue);
    broker_pack_str(pk, "complete");
    if (complete)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    broker_pack_str(pk, "counts");
    s_pack_counts(pk, b, true);
    broker_pack_str(pk, "callbacks");
    s_pack_callbacks(pk, b, states);
    broker_pack_kv_int(pk, "created_at", b->created_ms);
    if (b->closed_ms > 0)
        broker_pack_kv_int(pk, "closed_at", b->closed_ms);
    if (b->done_ms > 0)
        broker_pack_kv_int(pk, "done_at", b->done_ms);
}

/* Replies with b's record (after the commit with later). */
void
broker_batch_reply(broker_t *self, const broker_rid_t *rid, uint64_t req,
                   const broker_batch_t *b, const dv_state_t *states,
                   bool later)
{
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    s_pack_record(&pk, b, states);
    if (body.failed)
        broker_out_reply(self, rid, req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
    else
        broker_out_reply(self, rid, req, DV_CODE_NONE, NULL, &body.sb, later);
    broker_body_destroy(&body);
}

static bool
s_same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static void
s_open(broker_t *self, const broker_rid_t *rid, const dv_ctrl_t *c,
       const json_t *args, const char *name)
{
    const char *owner = broker_batch_owner(self, args);
    const char *types[S_NCB];
    static const char *const keys[S_NCB] = { "on_complete", "on_success",
                                             "on_failure" };
    for (int i = 0; i < S_NCB; i++) {
        types[i] = json_string_value(json_object_get(args, keys[i]));
        if (types[i] && (!types[i][0] || strlen(types[i]) > DV_NAME_MAX)) {
            broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                             "a callback's type must be 1..200 bytes", NULL,
                             false);
            return;
        }
    }
    const char *queue = json_string_value(json_object_get(args, "queue"));
    if (!queue || !queue[0])
        queue = "default";
    const json_t *payload = json_object_get(args, "payload");
    if ((queue && strlen(queue) > DV_NAME_MAX) ||
        (payload && !json_is_object(payload) && !json_is_null(payload))) {
        broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                         "queue must be 1..200 bytes and payload a map", NULL,
                         false);
        return;
    }
    size_t extra_len = 0;
    char *extra = json_is_object(payload) && json_object_size(payload)
                      ? dv_json_to_msgpack(payload, &extra_len)
                      : NULL;
    if (json_is_object(payload) && json_object_size(payload) && !extra) {
        broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                         "payload cannot be encoded (nested too deep)", NULL,
                         false);
        return;
    }
    broker_batch_t *b = broker_batch_find(self, owner, name);
    if (b) {
        bool same = b->state == S_OPEN && !strcmp(b->queue, queue) &&
                    b->extra_len == extra_len &&
                    (!extra_len || !memcmp(b->extra, extra, extra_len));
        for (int i = 0; i < S_NCB; i++)
            same = same && s_same_str(b->cbs[i].type, types[i]);
        free(extra);
        if (same) {
            broker_batch_reply(self, rid, c->req, b, NULL, true);
            return;
        }
        char why[DV_NAME_MAX + 128];
        if (b->state == S_DONE)
            snprintf(why, sizeof why,
                     "batch '%s' is done: `drover batch forget %s` first", name,
                     name);
        else if (b->state != S_OPEN)
            snprintf(why, sizeof why, "%s", b->closed_why);
        else
            snprintf(why, sizeof why, "batch '%s' is open with other callbacks",
                     name);
        broker_out_reply(self, rid, c->req, DV_CODE_NOT_ALLOWED, why, NULL,
                         false);
        return;
    }
    dv_id_t since;
    dv_id_new(&since);
    char since_text[DV_ID_TEXT_LEN + 1];
    dv_id_format(&since, since_text);
    b = s_new(owner, name, queue, types, extra, extra_len, since_text);
    free(extra);
    if (!b || dv_map_put(self->batches, b->key, b) != 0) {
        s_free(b);
        broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
        return;
    }
    b->created_ms = broker_now_ms(self);
    s_save(self, b);
    dv_log(DV_INFO, "broker.batch_opened", DV_STR("batch", name),
           DV_STR("owner", owner));
    broker_batch_reply(self, rid, c->req, b, NULL, true);
}

static void
s_close(broker_t *self, const broker_rid_t *rid, const dv_ctrl_t *c,
        const json_t *args, const char *name)
{
    broker_batch_t *b =
        broker_batch_find(self, broker_batch_owner(self, args), name);
    if (!b) {
        char why[DV_NAME_MAX + 96];
        snprintf(why, sizeof why,
                 "no batch record '%s' (a plain --batch label needs no close)",
                 name);
        broker_out_reply(self, rid, c->req, DV_CODE_NOT_FOUND, why, NULL,
                         false);
        return;
    }
    if (b->state == S_OPEN) {
        s_set_state(self, b, S_CLOSED);
        s_event(self, b, "batch.closed");
        s_check(self, b);
    }
    broker_batch_reply(self, rid, c->req, b, NULL, true);
}

static void
s_forget(broker_t *self, const broker_rid_t *rid, const dv_ctrl_t *c,
         const json_t *args, const char *name)
{
    broker_batch_t *b =
        broker_batch_find(self, broker_batch_owner(self, args), name);
    if (!b) {
        broker_out_reply(self, rid, c->req, DV_CODE_NOT_FOUND,
                         "no such batch record", NULL, false);
        return;
    }
    if (b->state != S_DONE &&
        !(b->state == S_OPEN && b->total == 0 && b->pending == 0)) {
        broker_out_reply(self, rid, c->req, DV_CODE_NOT_ALLOWED,
                         "only a done batch (or an open one without jobs) "
                         "can be forgotten",
                         NULL, false);
        return;
    }
    if (broker_wbatch_batch_del(&self->cur->wb, b->owner, b->name) != 0)
        broker_write_lost(self);
    for (int i = 0; i < S_NCB; i++)
        if (b->cbs[i].id[0])
            dv_map_delete(self->batch_cbs, b->cbs[i].id);
    dv_map_delete(self->batches, b->key);
    /* An ack of a callback submitted twice may still come: the record
     * stays allocated until the broker stops. */
    b->state = S_DONE;
    b->gone_next = self->batches_gone;
    self->batches_gone = b;
    broker_out_reply(self, rid, c->req, DV_CODE_NONE, NULL, NULL, true);
}

bool
broker_batch_ctrl(broker_t *self, const broker_rid_t *rid, const dv_ctrl_t *c)
{
    void (*fn)(broker_t *, const broker_rid_t *, const dv_ctrl_t *,
               const json_t *, const char *) = NULL;
    if (dv_str_eq(c->verb, "batch.open"))
        fn = s_open;
    else if (dv_str_eq(c->verb, "batch.close"))
        fn = s_close;
    else if (dv_str_eq(c->verb, "batch.show"))
        fn = broker_batch_show;
    else if (dv_str_eq(c->verb, "batch.jobs"))
        fn = broker_batch_jobs;
    else if (dv_str_eq(c->verb, "batch.forget"))
        fn = s_forget;
    else
        return false;
    char name[DV_NAME_MAX + 1];
    json_t *args = s_args(self, rid, c, name);
    if (args) {
        fn(self, rid, c, args, name);
        json_decref(args);
    }
    return true;
}
