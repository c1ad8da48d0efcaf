/* broker_check - the check verb: does the store say what memory says?
 *
 * First makes the two comparable: every group recorded so far is made
 * durable and its output sent (broker_group_sync, which blocks the loop
 * for as long as the writer takes). While the store cannot be written the
 * verb is refused with DV_CODE_STORE: memory is ahead of the store then,
 * by design, and catches up by itself.
 *
 * Then one scan of the store's unfinished rows (broker_store_replay on the
 * loop's read connection, in id order) is matched against the live jobs in
 * memory (sorted by id, looked up by binary search):
 *   - a row and a job: the state must agree (waiting = queued or
 *     scheduled, as a due job is promoted in memory only; running; a job
 *     that ended in memory must not be unfinished in the store), so must
 *     the attempt count, and for a running job the worker;
 *   - a row without a live job: the store would run it after a restart;
 *   - a live job without an unfinished row: looked up on its own, to show
 *     what the store says instead (finished, or no such job).
 * Jobs whose insert is not durable yet are skipped (after the sync there
 * are none). The reply body: {ok, jobs (live in memory), stored
 * (unfinished rows), differences (how many), items (the first 100: {id,
 * memory, store}, each side in words)}; ok iff no difference.
 *
 * Called by broker_ctrl.c for ctrl "check". Blocks the loop (the sync, the
 * scan); meant for an operator now and then, not for a probe every second.
 *
 * Out of memory: the verb fails with DV_CODE_NO_MEMORY before anything is
 * compared; the broker's state is not touched either way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "dv_log.h"

#define S_ITEMS_MAX 100

typedef struct {
    char id[DV_ID_TEXT_LEN + 1];
    char memory[DV_NAME_MAX + 48];
    char store[DV_NAME_MAX + 48];
} s_diff_t;

typedef struct {
    broker_job_t **jobs; /* live jobs, sorted by id */
    bool *seen;          /* jobs[i] has an unfinished row */
    size_t njobs;
    int64_t stored; /* unfinished rows scanned */
    int64_t ndiff;
    s_diff_t items[S_ITEMS_MAX];
    int nitems;
} s_check_t;

static int
s_cmp_job(const void *a, const void *b)
{
    const broker_job_t *x = *(broker_job_t *const *)a;
    const broker_job_t *y = *(broker_job_t *const *)b;
    return memcmp(x->id.b, y->id.b, sizeof x->id.b);
}

/* The live job with this id, by binary search; its slot in *at. */
static broker_job_t *
s_find(const s_check_t *c, const dv_id_t *id, size_t *at)
{
    size_t lo = 0, hi = c->njobs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = memcmp(c->jobs[mid]->id.b, id->b, sizeof id->b);
        if (r == 0) {
            *at = mid;
            return c->jobs[mid];
        }
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static bool
s_waiting(dv_state_t s)
{
    return s == DV_STATE_QUEUED || s == DV_STATE_SCHEDULED;
}

/* One side in words: "running attempt 2 on w1", "queued attempt 0",
 * "succeeded". */
static void
s_words(char *out, size_t size, dv_state_t state, int attempt,
        const char *worker)
{
    if (dv_state_terminal(state))
        snprintf(out, size, "%s", dv_state_name(state));
    else if (state == DV_STATE_RUNNING)
        snprintf(out, size, "running attempt %d on %s", attempt,
                 worker ? worker : "no worker");
    else
        snprintf(out, size, "%s attempt %d", dv_state_name(state), attempt);
}

static void
s_job_words(const broker_job_t *job, char *out, size_t size)
{
    s_words(out, size, (dv_state_t)job->state, job->attempt,
            job->worker ? job->worker->name : NULL);
}

/* Counts a difference; the first ones are kept with both views. */
static s_diff_t *
s_diff(s_check_t *c, const char *id)
{
    c->ndiff++;
    if (c->nitems == S_ITEMS_MAX)
        return NULL;
    s_diff_t *d = &c->items[c->nitems++];
    snprintf(d->id, sizeof d->id, "%s", id);
    snprintf(d->memory, sizeof d->memory, "missing");
    snprintf(d->store, sizeof d->store, "missing");
    return d;
}

/* broker_store_replay callback: one unfinished row against memory. */
static int
s_on_row(void *arg, const broker_jobrec_t *rec)
{
    s_check_t *c = arg;
    c->stored++;
    dv_id_t id;
    size_t at = 0;
    const broker_job_t *job =
        dv_id_parse(rec->id, (unsigned)strlen(rec->id), &id) == 0
            ? s_find(c, &id, &at)
            : NULL;
    if (job)
        c->seen[at] = true;
    bool same =
        job && !dv_state_terminal((dv_state_t)job->state) &&
        job->attempt == rec->attempt &&
        (s_waiting((dv_state_t)job->state)
             ? s_waiting(rec->state)
             : job->state == DV_STATE_RUNNING &&
                   rec->state == DV_STATE_RUNNING && job->worker &&
                   rec->worker && strcmp(job->worker->name, rec->worker) == 0);
    if (same)
        return 0;
    s_diff_t *d = s_diff(c, rec->id);
    if (d) {
        if (job)
            s_job_words(job, d->memory, sizeof d->memory);
        s_words(d->store, sizeof d->store, rec->state, rec->attempt,
                rec->worker);
    }
    return 0;
}

/* broker_store_get callback: the store's view of a job it has finished. */
static void
s_on_view(void *arg, const broker_jobview_t *v)
{
    s_diff_t *d = arg;
    s_words(d->store, sizeof d->store, v->state, v->attempt, NULL);
}

/* The reply body (see the top of the file) into out. */
static int
s_pack(const s_check_t *c, msgpack_sbuffer *out)
{
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    msgpack_pack_map(&pk, 5);
    broker_pack_str(&pk, "ok");
    if (c->ndiff == 0)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    broker_pack_kv_int(&pk, "jobs", (int64_t)c->njobs);
    broker_pack_kv_int(&pk, "stored", c->stored);
    broker_pack_kv_int(&pk, "differences", c->ndiff);
    broker_pack_str(&pk, "items");
    msgpack_pack_array(&pk, (size_t)c->nitems);
    for (int i = 0; i < c->nitems; i++) {
        msgpack_pack_map(&pk, 3);
        broker_pack_kv_str(&pk, "id", c->items[i].id);
        broker_pack_kv_str(&pk, "memory", c->items[i].memory);
        broker_pack_kv_str(&pk, "store", c->items[i].store);
    }
    int rc = body.failed ? DV_ENOMEM : DV_OK;
    if (rc == DV_OK)
        rc = msgpack_sbuffer_write(out, body.sb.data, body.sb.size) == 0
                 ? DV_OK
                 : DV_ENOMEM;
    broker_body_destroy(&body);
    return rc;
}

/* Compares; c->jobs and c->seen are set up by the caller. Returns 0 or a
 * store error. */
static int
s_compare(broker_t *self, s_check_t *c)
{
    for (size_t i = 0; i < self->index.cap && c->njobs < self->index.count;
         i++) {
        broker_job_t *job = self->index.slots[i];
        if (job && !(job->flags & BROKER_JOB_PENDING))
            c->jobs[c->njobs++] = job;
    }
    qsort(c->jobs, c->njobs, sizeof *c->jobs, s_cmp_job);
    int rc = broker_store_replay(self->store, s_on_row, c);
    /* Live in memory, not unfinished in the store: what does it say? */
    for (size_t i = 0; rc == 0 && i < c->njobs; i++) {
        const broker_job_t *job = c->jobs[i];
        if (c->seen[i] || dv_state_terminal((dv_state_t)job->state))
            continue;
        char id[DV_ID_TEXT_LEN + 1];
        broker_id_text(job, id);
        s_diff_t *d = s_diff(c, id);
        if (!d)
            continue;
        s_job_words(job, d->memory, sizeof d->memory);
        int r = broker_store_get(self->store, id, s_on_view, d);
        if (r < 0)
            rc = r;
    }
    return rc;
}

dv_code_t
broker_check_body(broker_t *self, msgpack_sbuffer *out, char *why,
                  size_t why_size)
{
    if (broker_group_sync(self) != 0) {
        dv_err_set(why, why_size,
                   "%s; memory is ahead of the store until it can be written",
                   self->store_reason[0] ? self->store_reason
                                         : "store unavailable");
        return DV_CODE_STORE;
    }
    s_check_t *c = calloc(1, sizeof *c);
    size_t cap = self->index.count;
    broker_job_t **jobs = calloc(cap ? cap : 1, sizeof *jobs);
    bool *seen = calloc(cap ? cap : 1, sizeof *seen);
    dv_code_t code = DV_CODE_NONE;
    if (!c || !jobs || !seen) {
        dv_err_set(why, why_size, "broker out of memory");
        code = DV_CODE_NO_MEMORY;
        goto done;
    }
    c->jobs = jobs;
    c->seen = seen;
    if (s_compare(self, c) != 0) {
        dv_err_set(why, why_size, "store read failed; see the broker's log");
        code = DV_CODE_STORE;
        goto done;
    }
    dv_log(c->ndiff ? DV_WARN : DV_INFO, "broker.check",
           DV_INT("jobs", (int64_t)c->njobs), DV_INT("stored", c->stored),
           DV_INT("differences", c->ndiff));
    if (s_pack(c, out) != DV_OK) {
        dv_err_set(why, why_size, "broker out of memory");
        code = DV_CODE_NO_MEMORY;
    }
done:
    free(jobs);
    free(seen);
    free(c);
    return code;
}

void
broker_check(broker_t *self, const broker_rid_t *rid, uint64_t req)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char why[192];
    dv_code_t code = broker_check_body(self, &sb, why, sizeof why);
    if (code != DV_CODE_NONE)
        broker_out_reply(self, rid, req, code, why, NULL, false);
    else
        broker_out_reply(self, rid, req, DV_CODE_NONE, NULL, &sb, false);
    msgpack_sbuffer_destroy(&sb);
}
