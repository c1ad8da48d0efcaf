/* broker_batch_reads - the batch verbs answered off the loop: batch.show
 * (a record from memory, its callbacks' states and a label's counts from
 * the store) and batch.jobs (a page of a batch's jobs with their results,
 * in id order, over the jobs(batch, id) index), both read by the reader
 * thread (broker_reader.h) like ctrl "finished". A client under CurveZMQ
 * sees only its own jobs. Loop thread, except the run functions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

#include "dv_json.h"

#define S_NCB      BROKER_BATCH_CBS
#define S_KEY_MAX  BROKER_BATCH_KEY_MAX
#define S_PAGE_MAX 1000
#define S_PAGE_DEF 100

/* ---- batch.show: a record, or a label's counts from the store ------------- */

typedef struct {
    broker_read_t base; /* first */
    broker_rid_t rid;
    uint64_t req;
    broker_sender_t sender;
    char key[S_KEY_MAX + 1]; /* the record's, if one */
    char name[DV_NAME_MAX + 1];
    char owner[DV_NAME_MAX + 1];
    bool any_owner;
    bool record;
    char ids[S_NCB][DV_ID_TEXT_LEN + 1];
    dv_state_t states[S_NCB];
    broker_batch_counts_t counts;
} s_show_t;

static void
s_on_cb_view(void *arg, const broker_jobview_t *v)
{
    *(dv_state_t *)arg = v->state;
}

static int
s_show_run(broker_store_t *store, broker_read_t *r)
{
    s_show_t *t = (s_show_t *)r;
    if (!t->record)
        return broker_store_batch_counts(store, t->any_owner ? NULL : t->owner,
                                         t->name, NULL, &t->counts);
    for (int i = 0; i < S_NCB; i++) {
        if (!t->ids[i][0])
            continue;
        int rc =
            broker_store_get(store, t->ids[i], s_on_cb_view, &t->states[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void
s_show_free(broker_read_t *r)
{
    free(r);
}

static void
s_show_done(void *owner, broker_read_t *r)
{
    broker_t *self = owner;
    s_show_t *t = (s_show_t *)r;
    if (r->stopped || r->rc != 0) {
        broker_out_reply(self, &t->rid, t->req,
                         r->stopped ? DV_CODE_TRY_AGAIN : DV_CODE_STORE,
                         r->stopped
                             ? broker_reads_refusal(BROKER_READER_STOPPED)
                             : "store read failed",
                         NULL, false);
        free(t);
        return;
    }
    broker_batch_t *b = t->record ? dv_map_get(self->batches, t->key) : NULL;
    if (b) {
        /* A callback still live: its state in memory is the newer. */
        for (int i = 0; i < S_NCB; i++) {
            dv_id_t id;
            const char *cid = broker_batch_cb_id(b, i);
            broker_job_t *job =
                cid[0] && dv_id_parse(cid, DV_ID_TEXT_LEN, &id) == 0
                    ? broker_index_get(&self->index, &id)
                    : NULL;
            if (job && job->state != DV_STATE_NONE)
                t->states[i] = (dv_state_t)job->state;
        }
        broker_batch_reply(self, &t->rid, t->req, b, t->states, false);
        free(t);
        return;
    }
    const broker_batch_counts_t *c = &t->counts;
    int64_t live = c->queued + c->scheduled + c->running;
    int64_t total = live + c->succeeded + c->dead + c->cancelled;
    if (total == 0) {
        char why[DV_NAME_MAX + 32];
        snprintf(why, sizeof why, "no batch '%s'", t->name);
        broker_out_reply(self, &t->rid, t->req, DV_CODE_NOT_FOUND, why, NULL,
                         false);
        free(t);
        return;
    }
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    msgpack_pack_map(&pk, 6);
    broker_pack_kv_str(&pk, "name", t->name);
    broker_pack_str(&pk, "record");
    msgpack_pack_false(&pk);
    broker_pack_kv_str(&pk, "state", live ? "open" : "complete");
    broker_pack_str(&pk, "complete");
    if (live)
        msgpack_pack_false(&pk);
    else
        msgpack_pack_true(&pk);
    broker_pack_str(&pk, "counts");
    msgpack_pack_map(&pk, 6);
    broker_pack_kv_int(&pk, "total", total);
    broker_pack_kv_int(&pk, "succeeded", c->succeeded);
    broker_pack_kv_int(&pk, "dead", c->dead);
    broker_pack_kv_int(&pk, "cancelled", c->cancelled);
    broker_pack_kv_int(&pk, "pending", 0);
    broker_pack_kv_int(&pk, "live", live);
    broker_pack_str(&pk, "callbacks");
    msgpack_pack_array(&pk, 0);
    if (body.failed)
        broker_out_reply(self, &t->rid, t->req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
    else
        broker_out_reply(self, &t->rid, t->req, DV_CODE_NONE, NULL, &body.sb,
                         false);
    broker_body_destroy(&body);
    free(t);
}

void
broker_batch_show(broker_t *self, const broker_rid_t *rid, const dv_ctrl_t *c,
                  const json_t *args, const char *name)
{
    const char *owner = broker_batch_owner(self, args);
    s_show_t *t = calloc(1, sizeof *t);
    if (!t) {
        broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
        return;
    }
    t->base.run = s_show_run;
    t->base.done = s_show_done;
    t->base.free = s_show_free;
    t->rid = *rid;
    t->req = c->req;
    broker_sender_save(self, &t->sender);
    snprintf(t->name, sizeof t->name, "%s", name);
    const broker_batch_t *b = broker_batch_find(self, owner, name);
    if (b) {
        t->record = true;
        snprintf(t->key, sizeof t->key, "%s", broker_batch_key(b));
        for (int i = 0; i < S_NCB; i++)
            snprintf(t->ids[i], sizeof t->ids[i], "%s",
                     broker_batch_cb_id(b, i));
    } else {
        const char *ro = broker_batch_reader_owner(self);
        t->any_owner = ro == NULL;
        snprintf(t->owner, sizeof t->owner, "%s", ro ? ro : "");
    }
    int rc = broker_reads_push(self, &t->base, true);
    if (rc != 0) {
        free(t);
        broker_out_reply(self, rid, c->req, DV_CODE_TRY_AGAIN,
                         broker_reads_refusal(rc), NULL, false);
    }
}

/* ---- batch.jobs: a page of a batch's jobs with their results -------------- */

typedef struct {
    char id[DV_ID_TEXT_LEN + 1];
    dv_state_t state;
    int attempt;
    int64_t finished_ms;
    const char *type, *category, *error; /* into data */
    const void *result;
    size_t result_len;
    char data[];
} s_jrow_t;

typedef struct {
    broker_read_t base; /* first */
    broker_rid_t rid;
    uint64_t req;
    char name[DV_NAME_MAX + 1];
    char owner[DV_NAME_MAX + 1];
    bool any_owner;
    char after[DV_ID_TEXT_LEN + 1];
    int limit; /* asked; one more is read to tell whether there is more */
    int nrows;
    bool oom;
    s_jrow_t *rows[];
} s_jobs_t;

static size_t
s_slen(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static const char *
s_sput(char **cur, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*cur, s, n);
    const char *c = *cur;
    *cur += n;
    return c;
}

static int
s_on_job(void *arg, const broker_jobview_t *v)
{
    s_jobs_t *t = arg;
    if (t->nrows > t->limit)
        return 0;
    s_jrow_t *row = malloc(sizeof *row + s_slen(v->type) + s_slen(v->category) +
                           s_slen(v->error) + v->result_len);
    if (!row) {
        t->oom = true;
        return DV_ENOMEM;
    }
    snprintf(row->id, sizeof row->id, "%s", v->id);
    row->state = v->state;
    row->attempt = v->attempt;
    row->finished_ms = v->finished_ms;
    char *cur = row->data;
    row->type = s_sput(&cur, v->type);
    row->category = s_sput(&cur, v->category);
    row->error = s_sput(&cur, v->error);
    row->result = NULL;
    row->result_len = 0;
    if (v->result && v->result_len) {
        memcpy(cur, v->result, v->result_len);
        row->result = cur;
        row->result_len = v->result_len;
    }
    t->rows[t->nrows++] = row;
    return 0;
}

static int
s_jobs_run(broker_store_t *store, broker_read_t *r)
{
    s_jobs_t *t = (s_jobs_t *)r;
    int rc = broker_store_batch_jobs(store, t->any_owner ? NULL : t->owner,
                                     t->name, t->after[0] ? t->after : NULL,
                                     t->limit + 1, s_on_job, t);
    return t->oom ? DV_ENOMEM : rc < 0 ? rc : 0;
}

static void
s_jobs_free(broker_read_t *r)
{
    s_jobs_t *t = (s_jobs_t *)r;
    for (int i = 0; i < t->nrows; i++)
        free(t->rows[i]);
    free(t);
}

/* Appends raw msgpack bytes (one value) through the packer. */
static void
s_pack_raw(msgpack_packer *pk, const void *p, size_t n)
{
    pk->callback(pk->data, p, n);
}

static void
s_jobs_done(void *owner, broker_read_t *r)
{
    broker_t *self = owner;
    s_jobs_t *t = (s_jobs_t *)r;
    if (r->stopped || r->rc != 0) {
        broker_out_reply(self, &t->rid, t->req,
                         r->stopped           ? DV_CODE_TRY_AGAIN
                         : r->rc == DV_ENOMEM ? DV_CODE_NO_MEMORY
                                              : DV_CODE_STORE,
                         r->stopped
                             ? broker_reads_refusal(BROKER_READER_STOPPED)
                         : r->rc == DV_ENOMEM ? "broker out of memory"
                                              : "store read failed",
                         NULL, false);
        s_jobs_free(r);
        return;
    }
    bool more = t->nrows > t->limit;
    int n = more ? t->limit : t->nrows;
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    msgpack_pack_map(&pk, 2 + (more && n > 0));
    broker_pack_str(&pk, "jobs");
    msgpack_pack_array(&pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        const s_jrow_t *j = t->rows[i];
        bool finished = j->finished_ms > 0;
        msgpack_pack_map(&pk, 4 + (j->result != NULL) + (j->category != NULL) +
                                  (j->error != NULL) + finished);
        broker_pack_kv_str(&pk, "id", j->id);
        broker_pack_kv_str(&pk, "type", j->type);
        broker_pack_kv_str(&pk, "state", dv_state_name(j->state));
        broker_pack_kv_int(&pk, "attempt", j->attempt);
        if (j->result) {
            broker_pack_str(&pk, "result");
            s_pack_raw(&pk, j->result, j->result_len);
        }
        if (j->category)
            broker_pack_kv_str(&pk, "category", j->category);
        if (j->error)
            broker_pack_kv_str(&pk, "error", j->error);
        if (finished)
            broker_pack_kv_int(&pk, "finished", j->finished_ms);
    }
    broker_pack_str(&pk, "more");
    if (more)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    if (more && n > 0)
        broker_pack_kv_str(&pk, "next", t->rows[n - 1]->id);
    if (body.failed)
        broker_out_reply(self, &t->rid, t->req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
    else
        broker_out_reply(self, &t->rid, t->req, DV_CODE_NONE, NULL, &body.sb,
                         false);
    broker_body_destroy(&body);
    s_jobs_free(r);
}

void
broker_batch_jobs(broker_t *self, const broker_rid_t *rid, const dv_ctrl_t *c,
                  const json_t *args, const char *name)
{
    const json_t *jl = json_object_get(args, "limit");
    const json_t *ja = json_object_get(args, "after");
    json_int_t limit = jl ? json_integer_value(jl) : S_PAGE_DEF;
    const char *after = json_string_value(ja);
    dv_id_t aid;
    if ((jl && (!json_is_integer(jl) || limit < 1 || limit > S_PAGE_MAX)) ||
        (ja && !json_is_null(ja) &&
         (!after || dv_id_parse(after, (unsigned)strlen(after), &aid) != 0))) {
        broker_out_reply(self, rid, c->req, DV_CODE_INVALID_ARGUMENT,
                         "batch.jobs takes {name, after: JOB_ID, limit: "
                         "1..1000}",
                         NULL, false);
        return;
    }
    s_jobs_t *t = calloc(1, sizeof *t + ((size_t)limit + 1) * sizeof(void *));
    if (!t) {
        broker_out_reply(self, rid, c->req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
        return;
    }
    t->base.run = s_jobs_run;
    t->base.done = s_jobs_done;
    t->base.free = s_jobs_free;
    t->rid = *rid;
    t->req = c->req;
    t->limit = (int)limit;
    snprintf(t->name, sizeof t->name, "%s", name);
    const char *ro = broker_batch_reader_owner(self);
    t->any_owner = ro == NULL;
    snprintf(t->owner, sizeof t->owner, "%s", ro ? ro : "");
    if (after)
        snprintf(t->after, sizeof t->after, "%s", after);
    /* A record's jobs are those after its since id. */
    const broker_batch_t *b =
        broker_batch_find(self, broker_batch_owner(self, args), name);
    if (b && strcmp(broker_batch_since(b), t->after) > 0)
        snprintf(t->after, sizeof t->after, "%s", broker_batch_since(b));
    int rc = broker_reads_push(self, &t->base, true);
    if (rc != 0) {
        s_jobs_free(&t->base);
        broker_out_reply(self, rid, c->req, DV_CODE_TRY_AGAIN,
                         broker_reads_refusal(rc), NULL, false);
    }
}
