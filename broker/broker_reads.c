/* broker_reads - the loop's side of the store reads done by the reader
 * thread (broker_reader.c).
 *
 * Owns the count of reads pushed and popped (which tells when a durable
 * idempotency key may leave self->pending_keys, broker_group.c), the
 * answering of finished reads, the sender kept for a late answer, and the
 * read of stored jobs by id that wait, job and cancel share: the reader
 * copies each view out of the store's callback, the loop answers with the
 * same callbacks as before (broker_client_on_view, ...) on the copy. And
 * ctrl "finished", the page of finished jobs a collector reads back after
 * it lost events: the reader copies each row, the loop encodes the page.
 *
 * Called by the loop: broker_reads_ready when the reader's eventfd fires,
 * the rest by the verbs that read. Never blocks.
 */
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "dv_body.h"
#include "dv_log.h"

int
broker_reads_push(broker_t *self, broker_read_t *r, bool bounded)
{
    int rc = broker_reader_push(self->reader, r, bounded);
    if (rc == 0)
        self->reads_pushed++;
    return rc;
}

const char *
broker_reads_refusal(int rc)
{
    return rc == BROKER_READER_STOPPED
               ? "broker stopping; try again (another broker may serve)"
               : "broker busy: too many store reads waiting; try again";
}

void
broker_reads_ready(broker_t *self)
{
    broker_read_t *r;
    while ((r = broker_reader_pop_done(self->reader))) {
        self->reads_popped++;
        r->done(self, r);
    }
    broker_group_settle_keys(self);
}

void
broker_sender_save(const broker_t *self, broker_sender_t *s)
{
    memset(s, 0, sizeof *s);
    if (self->sender) {
        s->set = true;
        s->peer = *self->sender;
    }
}

const broker_peer_t *
broker_sender_use(broker_t *self, const broker_sender_t *s)
{
    const broker_peer_t *before = self->sender;
    self->sender = s->set ? &s->peer : NULL;
    return before;
}

/* ---- stored jobs by id ---------------------------------------------------- */

static size_t
s_len(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *
s_put(char **cursor, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*cursor, s, n);
    const char *copy = *cursor;
    *cursor += n;
    return copy;
}

/* A copy of v in one allocation, or NULL (out of memory). */
static broker_jobview_t *
s_view_copy(const broker_jobview_t *v)
{
    size_t n = sizeof *v + s_len(v->id) + s_len(v->queue) + s_len(v->type) +
               s_len(v->category) + s_len(v->error) + s_len(v->owner) +
               v->result_len;
    broker_jobview_t *c = malloc(n);
    if (!c)
        return NULL;
    *c = *v;
    char *cur = (char *)(c + 1);
    c->id = s_put(&cur, v->id);
    c->queue = s_put(&cur, v->queue);
    c->type = s_put(&cur, v->type);
    c->category = s_put(&cur, v->category);
    c->error = s_put(&cur, v->error);
    c->owner = s_put(&cur, v->owner);
    if (v->result && v->result_len) {
        memcpy(cur, v->result, v->result_len);
        c->result = cur;
    } else {
        c->result = NULL;
        c->result_len = 0;
    }
    return c;
}

static void
s_on_view(void *arg, const broker_jobview_t *v)
{
    broker_viewed_t *it = arg;
    it->view = s_view_copy(v);
}

/* Packs one attempt as a map of every column (docs/protocol.md, ctrl
 * "job"): attempt, worker, outcome, category, message, retryable and
 * key_id always (nil when NULL); the times, retry_after, exit_code,
 * signal, http_status, details and stderr only when they hold something. */
static int
s_on_attempt(void *arg, const broker_attempt_row_t *a)
{
    msgpack_packer *pk = arg;
    bool started = a->started_ms != 0, finished = a->finished_ms != 0;
    bool retry_after = a->retry_after_ms != 0, exit_code = a->exit_code != -1;
    bool sig = a->signal != 0, http = a->http_status != 0;
    bool details = a->details && *a->details;
    bool stderr_tail = a->stderr_tail && *a->stderr_tail;
    uint32_t n = 7u + started + finished + retry_after + exit_code + sig +
                 http + details + stderr_tail;
    msgpack_pack_map(pk, n);
    broker_pack_kv_int(pk, "attempt", a->attempt);
    broker_pack_kv_str(pk, "worker", a->worker);
    if (started)
        broker_pack_kv_int(pk, "started_at", a->started_ms);
    if (finished)
        broker_pack_kv_int(pk, "finished_at", a->finished_ms);
    broker_pack_kv_str(pk, "outcome", a->outcome);
    broker_pack_kv_str(pk, "category", a->category);
    broker_pack_kv_str(pk, "message", a->message);
    broker_pack_str(pk, "retryable");
    if (a->retryable)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    if (retry_after)
        broker_pack_kv_int(pk, "retry_after", a->retry_after_ms);
    if (exit_code)
        broker_pack_kv_int(pk, "exit_code", a->exit_code);
    if (sig)
        broker_pack_kv_int(pk, "signal", a->signal);
    if (http)
        broker_pack_kv_int(pk, "http_status", a->http_status);
    broker_pack_kv_str(pk, "key_id", a->key_id);
    if (details)
        broker_pack_kv_str(pk, "details", a->details);
    if (stderr_tail)
        broker_pack_kv_str(pk, "stderr", a->stderr_tail);
    return 0;
}

/* Reader thread: a job's last attempts, packed into it->attempts. */
static void
s_read_attempts(broker_store_t *store, broker_viewed_t *it)
{
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    it->arc = broker_store_attempts(store, it->id, BROKER_JOB_ATTEMPTS_MAX,
                                    s_on_attempt, &pk);
    if (it->arc > 0 && body.failed)
        it->arc = DV_ENOMEM;
    if (it->arc > 0) {
        it->nattempts = (uint32_t)it->arc;
        it->attempts_len = body.sb.size;
        it->attempts = msgpack_sbuffer_release(&body.sb);
    }
    broker_body_destroy(&body);
}

void
broker_pack_options(msgpack_packer *pk, const broker_options_t *o)
{
    msgpack_pack_map(pk, 9 + (o->created_ms > 0) + (o->result_ttl_ms > 0) +
                             (o->schedule != NULL));
    broker_pack_kv_int(pk, "priority", o->priority);
    broker_pack_kv_int(pk, "max_attempts", o->max_attempts);
    broker_pack_kv_int(pk, "timeout_ms", o->timeout_ms);
    broker_pack_str(pk, "backoff");
    msgpack_pack_map(pk, 4);
    broker_pack_kv_int(pk, "base_ms", o->backoff.base_ms);
    broker_pack_str(pk, "factor");
    msgpack_pack_double(pk, o->backoff.factor);
    broker_pack_kv_int(pk, "cap_ms", o->backoff.cap_ms);
    broker_pack_str(pk, "jitter");
    if (o->backoff.jitter)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    broker_pack_kv_str(pk, "batch", o->batch);
    broker_pack_kv_str(pk, "key", o->key);
    broker_pack_kv_str(pk, "trace", o->trace);
    if (o->schedule)
        broker_pack_kv_str(pk, "schedule", o->schedule);
    if (o->created_ms > 0)
        broker_pack_kv_int(pk, "created_at", o->created_ms);
    if (o->result_ttl_ms > 0)
        broker_pack_kv_int(pk, "result_ttl_ms", o->result_ttl_ms);
    broker_pack_kv_int(pk, "payload_bytes", (int64_t)o->payload_len);
    broker_pack_str(pk, "payload");
    if (o->payload && o->payload_len &&
        dv_mp_validate(o->payload, o->payload_len, DV_VALUE_DEPTH_MAX) == DV_OK)
        pk->callback(pk->data, o->payload, o->payload_len);
    else
        msgpack_pack_nil(pk);
}

/* broker_store_load callback: the record's options, packed. */
static int
s_on_rec(void *arg, const broker_jobrec_t *rec)
{
    broker_viewed_t *it = arg;
    broker_options_t o = {
        .priority = rec->priority,
        .max_attempts = rec->max_attempts,
        .timeout_ms = rec->timeout_ms,
        .created_ms = rec->created_ms,
        .result_ttl_ms = rec->result_ttl_ms,
        .backoff = rec->backoff,
        .key = rec->key,
        .batch = rec->batch,
        .trace = rec->trace,
        .schedule = rec->schedule,
        .payload = rec->payload,
        .payload_len = rec->payload_len,
    };
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    broker_pack_options(&pk, &o);
    if (!body.failed) {
        it->options_len = body.sb.size;
        it->options = msgpack_sbuffer_release(&body.sb);
    }
    broker_body_destroy(&body);
    return 0;
}

/* broker_store_deps_of callback: one more row. */
typedef struct {
    broker_viewed_t *it;
    uint32_t *n;
} s_deps_ctx_t;

static int
s_on_dep_row(void *arg, const char *id, bool any, dv_state_t state)
{
    s_deps_ctx_t *c = arg;
    broker_dep_row_t *r = &c->it->deps[c->it->nfor + c->it->nby];
    snprintf(r->id, sizeof r->id, "%s", id ? id : "");
    r->state = state;
    r->any = any;
    (*c->n)++;
    return 0;
}

/* Reader thread: what job it->id waits for, and what waits for it. */
static void
s_read_deps(broker_store_t *store, broker_viewed_t *it)
{
    it->deps = calloc(2 * BROKER_JOB_DEPS_MAX, sizeof *it->deps);
    if (!it->deps) {
        it->drc = DV_ENOMEM;
        return;
    }
    s_deps_ctx_t c = { it, &it->nfor };
    int rc = broker_store_deps_of(store, it->id, false, BROKER_JOB_DEPS_MAX,
                                  s_on_dep_row, &c);
    if (rc >= 0) {
        c.n = &it->nby;
        rc = broker_store_deps_of(store, it->id, true, BROKER_JOB_DEPS_MAX,
                                  s_on_dep_row, &c);
    }
    it->drc = rc < 0 ? rc : 0;
}

/* Reader thread: every id, one get each (and its attempts if asked). */
static int
s_views_run(broker_store_t *store, broker_read_t *r)
{
    broker_views_t *v = (broker_views_t *)r;
    if (v->n > 1)
        broker_store_read_begin(store);
    for (uint32_t i = 0; i < v->n; i++) {
        broker_viewed_t *it = &v->items[i];
        it->rc = broker_store_get(store, it->id, s_on_view, it);
        if (it->rc == 1 && !it->view)
            it->rc = DV_ENOMEM;
        if (it->want_attempts) {
            s_read_attempts(store, it);
            /* Not found or failed: the answer goes without options, or
             * with a live job's own. */
            (void)broker_store_load(store, it->id, s_on_rec, it);
            s_read_deps(store, it);
        }
    }
    if (v->n > 1)
        broker_store_read_end(store);
    return 0;
}

static void
s_views_done(void *owner, broker_read_t *r)
{
    broker_t *self = owner;
    broker_views_t *v = (broker_views_t *)r;
    const broker_peer_t *before = broker_sender_use(self, &v->sender);
    v->answer(self, v);
    self->sender = before;
    broker_views_free(v);
}

static void
s_views_free(broker_read_t *r)
{
    broker_views_free((broker_views_t *)r);
}

broker_views_t *
broker_views_new(broker_t *self, const broker_rid_t *rid, uint64_t req,
                 uint32_t n, void (*answer)(broker_t *self, broker_views_t *v))
{
    broker_views_t *v = calloc(1, sizeof *v + n * sizeof v->items[0]);
    if (!v)
        return NULL;
    v->base.run = s_views_run;
    v->base.done = s_views_done;
    v->base.free = s_views_free;
    v->answer = answer;
    v->rid = *rid;
    v->req = req;
    v->n = n;
    broker_sender_save(self, &v->sender);
    return v;
}

void
broker_views_free(broker_views_t *v)
{
    if (!v)
        return;
    for (uint32_t i = 0; i < v->n; i++) {
        free(v->items[i].view);
        free(v->items[i].attempts);
        free(v->items[i].options);
        free(v->items[i].deps);
    }
    free(v);
}

/* ---- finished jobs by time ------------------------------------------------ */

/* One row of the page, its strings in the same allocation. */
typedef struct {
    dv_finished_job_t job;
    char data[];
} s_frow_t;

typedef struct {
    broker_read_t base; /* first */
    broker_rid_t rid;
    uint64_t req;
    int64_t since_ms, until_ms;
    char after[DV_ID_TEXT_LEN + 1]; /* "" none */
    int limit;
    s_frow_t **rows; /* limit slots */
    int nrows;
    bool oom; /* a row could not be copied */
} s_finished_read_t;

static dv_str_t
s_fput(char **cursor, const char *s)
{
    const char *c = s_put(cursor, s);
    return c ? dv_strn(c, strlen(c)) : (dv_str_t){ 0 };
}

static int
s_on_finished(void *arg, const broker_finished_t *f)
{
    s_finished_read_t *t = arg;
    if (t->nrows >= t->limit)
        return 0;
    size_t n = sizeof(s_frow_t) + s_len(f->id) + s_len(f->queue) +
               s_len(f->type) + s_len(f->batch) + s_len(f->worker) +
               s_len(f->error);
    s_frow_t *row = malloc(n);
    if (!row) {
        t->oom = true;
        return DV_ENOMEM;
    }
    memset(&row->job, 0, sizeof row->job);
    char *cur = row->data;
    dv_finished_job_t *j = &row->job;
    j->id = s_fput(&cur, f->id);
    j->queue = s_fput(&cur, f->queue);
    j->type = s_fput(&cur, f->type);
    j->batch = s_fput(&cur, f->batch);
    j->worker = s_fput(&cur, f->worker);
    j->message = s_fput(&cur, f->error);
    j->state = f->state;
    j->attempt = f->attempt > 0 ? f->attempt : 0;
    j->finished_ms = f->finished_ms > 0 ? f->finished_ms : 0;
    if (f->started_ms > 0 && f->finished_ms >= f->started_ms)
        j->run_ms = f->finished_ms - f->started_ms;
    j->category = f->category
                      ? dv_category_parse(f->category, strlen(f->category))
                      : DV_CAT_NONE;
    t->rows[t->nrows++] = row;
    return 0;
}

static int
s_finished_run(broker_store_t *store, broker_read_t *r)
{
    s_finished_read_t *t = (s_finished_read_t *)r;
    int rc = broker_store_finished(store, t->since_ms, t->until_ms,
                                   t->after[0] ? t->after : NULL, t->limit,
                                   s_on_finished, t);
    return rc < 0 || t->oom ? (t->oom ? DV_ENOMEM : rc) : 0;
}

static void
s_finished_free(s_finished_read_t *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->nrows; i++)
        free(t->rows[i]);
    free(t->rows);
    free(t);
}

static void
s_finished_free_read(broker_read_t *r)
{
    s_finished_free((s_finished_read_t *)r);
}

static void
s_finished_done(void *owner, broker_read_t *r)
{
    broker_t *self = owner;
    s_finished_read_t *t = (s_finished_read_t *)r;
    if (r->stopped) {
        broker_out_reply(self, &t->rid, t->req, DV_CODE_TRY_AGAIN,
                         broker_reads_refusal(BROKER_READER_STOPPED), NULL,
                         false);
    } else if (r->rc == DV_ENOMEM) {
        broker_out_reply(self, &t->rid, t->req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
    } else if (r->rc != 0) {
        broker_out_reply(self, &t->rid, t->req, DV_CODE_STORE,
                         "store read failed", NULL, false);
    } else {
        dv_finished_job_t *jobs =
            t->nrows ? malloc((size_t)t->nrows * sizeof *jobs) : NULL;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        int rc = t->nrows && !jobs ? DV_ENOMEM : DV_OK;
        if (rc == DV_OK) {
            for (int i = 0; i < t->nrows; i++)
                jobs[i] = t->rows[i]->job;
            dv_finished_t f = { .jobs = jobs,
                                .njobs = (uint32_t)t->nrows,
                                .more = t->nrows >= t->limit };
            rc = dv_finished_encode(&f, &sb);
        }
        if (rc == DV_OK)
            broker_out_reply(self, &t->rid, t->req, DV_CODE_NONE, NULL, &sb,
                             false);
        else
            broker_out_reply(self, &t->rid, t->req, DV_CODE_NO_MEMORY,
                             "broker out of memory", NULL, false);
        msgpack_sbuffer_destroy(&sb);
        free(jobs);
    }
    s_finished_free(t);
}

void
broker_reads_finished(broker_t *self, const broker_rid_t *rid,
                      const dv_ctrl_t *c)
{
    dv_finished_args_t a;
    char why[256];
    int rc = c->args.ptr ? dv_finished_args_decode(c->args.ptr, c->args.len, &a,
                                                   why, sizeof why)
                         : DV_EPROTO;
    if (!c->args.ptr)
        snprintf(why, sizeof why,
                 "finished needs args {since, until, after, limit}");
    if (rc != DV_OK) {
        broker_out_reply(self, rid, c->req,
                         rc == DV_ENOMEM ? DV_CODE_NO_MEMORY
                                         : DV_CODE_INVALID_ARGUMENT,
                         why, NULL, false);
        return;
    }
    s_finished_read_t *t = calloc(1, sizeof *t);
    if (t)
        t->rows = calloc((size_t)a.limit, sizeof *t->rows);
    if (!t || !t->rows) {
        dv_finished_args_release(&a);
        s_finished_free(t);
        broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
        return;
    }
    t->base.run = s_finished_run;
    t->base.done = s_finished_done;
    t->base.free = s_finished_free_read;
    t->rid = *rid;
    t->req = c->req;
    t->since_ms = a.since_ms;
    t->until_ms = a.until_ms;
    t->limit = a.limit;
    if (a.after.ptr)
        dv_str_copy(a.after, t->after, sizeof t->after);
    dv_finished_args_release(&a);
    rc = broker_reads_push(self, &t->base, true);
    if (rc != 0) {
        s_finished_free(t);
        broker_out_reply(self, rid, c->req, DV_CODE_TRY_AGAIN,
                         broker_reads_refusal(rc), NULL, false);
    }
}
