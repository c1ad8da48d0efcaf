/* broker_check - the check verb: does the store say what memory says?
 *
 * Memory and store are comparable only at a moment when every write
 * recorded so far is durable, and the loop must not stop for it. So a
 * check waits for such a moment without blocking anything: when the next
 * group is handed to the writer with nothing before it still pending (or
 * when nothing at all is pending), the live jobs are copied (id, state,
 * attempt, worker); once that group is durable, the reader thread compares
 * the copy with the store, and later groups wait meanwhile, so that the
 * store stays what the copy says (the loop goes on serving; acks of
 * submits made meanwhile wait for the scan). While the store cannot be
 * written the verb is refused with DV_CODE_STORE: memory is ahead of the
 * store then, by design, and catches up by itself. One check at a time;
 * another is refused with DV_CODE_TRY_AGAIN.
 *
 * The comparison (reader thread): one scan of the store's unfinished rows
 * (broker_store_replay, in id order) is matched against the copy (sorted
 * by id, looked up by binary search):
 *   - a row and a job: the state must agree (waiting = queued or
 *     scheduled, as a due job is promoted in memory only; running; a job
 *     that ended in memory must not be unfinished in the store), so must
 *     the attempt count, and for a running job the worker;
 *   - a row without a live job: the store would run it after a restart;
 *   - a live job without an unfinished row: looked up on its own, to show
 *     what the store says instead (finished, or no such job).
 * A job whose insert is in the copied group counts as queued, attempt 0.
 * The reply body: {ok, jobs (live in memory), stored (unfinished rows),
 * differences (how many), items (the first 100: {id, memory, store}, each
 * side in words)}; ok iff no difference.
 *
 * Called by broker_ctrl.c for ctrl "check", and by broker_group.c at the
 * moments above. Meant for an operator now and then, not for a probe every
 * second: the copy is one pass over the index on the loop.
 *
 * Out of memory: the verb fails with DV_CODE_NO_MEMORY; the broker's state
 * is not touched either way.
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

/* A live job as the check copied it. */
typedef struct {
    dv_id_t id;
    dv_state_t state;
    int attempt;
    const char *worker; /* running: a copy of its worker's name (names) */
} s_job_t;

typedef enum {
    S_WAIT_GROUP,   /* for the moment memory and store can agree */
    S_WAIT_DURABLE, /* copied; its group is with the writer */
    S_SCANNING,     /* with the reader; later groups wait */
} s_phase_t;

/* What a test waits for instead of a reply (broker_check_body). */
typedef struct {
    msgpack_sbuffer *out;
    char *why;
    size_t why_size;
    dv_code_t code;
    bool done;
} s_capture_t;

typedef struct {
    s_job_t *jobs; /* live jobs, sorted by id */
    bool *seen;    /* jobs[i] has an unfinished row */
    size_t njobs;
    int64_t stored; /* unfinished rows scanned */
    int64_t ndiff;
    s_diff_t items[S_ITEMS_MAX];
    int nitems;
} s_check_t;

struct broker_check_run {
    broker_read_t base; /* first member */
    s_phase_t phase;
    broker_rid_t rid;
    uint64_t req;
    const broker_group_t *group; /* S_WAIT_DURABLE: holds the copied state */
    s_check_t c;
    dv_map_t *names;      /* worker names copied: name -> copy (owned) */
    msgpack_sbuffer body; /* the reply, packed by the reader */
    int pack_rc;
    s_capture_t *capture; /* tests: no reply, this is filled in */
};

static int
s_cmp_job(const void *a, const void *b)
{
    const s_job_t *x = a, *y = b;
    return memcmp(x->id.b, y->id.b, sizeof x->id.b);
}

/* The live job with this id, by binary search; its slot in *at. */
static const s_job_t *
s_find(const s_check_t *c, const dv_id_t *id, size_t *at)
{
    size_t lo = 0, hi = c->njobs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = memcmp(c->jobs[mid].id.b, id->b, sizeof id->b);
        if (r == 0) {
            *at = mid;
            return &c->jobs[mid];
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
s_job_words(const s_job_t *job, char *out, size_t size)
{
    s_words(out, size, job->state, job->attempt, job->worker);
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
    const s_job_t *job =
        dv_id_parse(rec->id, (unsigned)strlen(rec->id), &id) == 0
            ? s_find(c, &id, &at)
            : NULL;
    if (job)
        c->seen[at] = true;
    bool same =
        job && !dv_state_terminal(job->state) && job->attempt == rec->attempt &&
        (s_waiting(job->state) ? s_waiting(rec->state)
         : job->state == DV_STATE_WAITING
             ? rec->state == DV_STATE_WAITING
             : job->state == DV_STATE_RUNNING &&
                   rec->state == DV_STATE_RUNNING && job->worker &&
                   rec->worker && strcmp(job->worker, rec->worker) == 0);
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

/* Reader thread: sorts the copy, scans the store, packs the reply. */
static int
s_run(broker_store_t *store, broker_read_t *r)
{
    broker_check_run_t *run = (broker_check_run_t *)r;
    s_check_t *c = &run->c;
    qsort(c->jobs, c->njobs, sizeof *c->jobs, s_cmp_job);
    int rc = broker_store_replay(store, s_on_row, c);
    /* Live in memory, not unfinished in the store: what does it say? */
    for (size_t i = 0; rc == 0 && i < c->njobs; i++) {
        const s_job_t *job = &c->jobs[i];
        if (c->seen[i] || dv_state_terminal(job->state))
            continue;
        char id[DV_ID_TEXT_LEN + 1];
        dv_id_format(&job->id, id);
        s_diff_t *d = s_diff(c, id);
        if (!d)
            continue;
        s_job_words(job, d->memory, sizeof d->memory);
        int g = broker_store_get(store, id, s_on_view, d);
        if (g < 0)
            rc = g;
    }
    if (rc == 0)
        run->pack_rc = s_pack(c, &run->body);
    return rc;
}

static void
s_free(broker_check_run_t *run)
{
    if (!run)
        return;
    free(run->c.jobs);
    free(run->c.seen);
    dv_map_destroy(&run->names);
    msgpack_sbuffer_destroy(&run->body);
    free(run);
}

static void
s_free_read(broker_read_t *r)
{
    s_free((broker_check_run_t *)r);
}

/* Answers the check and ends it: the body (code NONE) or why not. */
static void
s_answer(broker_t *self, broker_check_run_t *run, dv_code_t code,
         const char *why)
{
    if (self->check == run)
        self->check = NULL;
    if (run->capture) {
        s_capture_t *cap = run->capture;
        cap->code = code;
        if (code != DV_CODE_NONE)
            dv_err_set(cap->why, cap->why_size, "%s", why);
        else if (msgpack_sbuffer_write(cap->out, run->body.data,
                                       run->body.size) != 0) {
            cap->code = DV_CODE_NO_MEMORY;
            dv_err_set(cap->why, cap->why_size, "broker out of memory");
        }
        cap->done = true;
    } else if (code != DV_CODE_NONE) {
        broker_out_reply(self, &run->rid, run->req, code, why, NULL, false);
    } else {
        broker_out_reply(self, &run->rid, run->req, DV_CODE_NONE, NULL,
                         &run->body, false);
    }
    s_free(run);
}

static void
s_done(void *owner, broker_read_t *r)
{
    broker_t *self = owner;
    broker_check_run_t *run = (broker_check_run_t *)r;
    if (r->stopped) {
        s_answer(self, run, DV_CODE_TRY_AGAIN,
                 broker_reads_refusal(BROKER_READER_STOPPED));
    } else if (r->rc != 0) {
        dv_log(DV_ERROR, "broker.check_failed",
               DV_STR("error", dv_strerror(r->rc)));
        s_answer(self, run, DV_CODE_STORE,
                 "store read failed; see the broker's log");
    } else if (run->pack_rc != DV_OK) {
        s_answer(self, run, DV_CODE_NO_MEMORY, "broker out of memory");
    } else {
        const s_check_t *c = &run->c;
        dv_log(c->ndiff ? DV_WARN : DV_INFO, "broker.check",
               DV_INT("jobs", (int64_t)c->njobs), DV_INT("stored", c->stored),
               DV_INT("differences", c->ndiff));
        s_answer(self, run, DV_CODE_NONE, NULL);
    }
}

/* Copies the live jobs: memory as the store will say once every write
 * recorded so far is durable. Returns 0 or DV_ENOMEM. */
static int
s_copy(broker_t *self, broker_check_run_t *run)
{
    s_check_t *c = &run->c;
    size_t cap = self->index.count;
    c->jobs = calloc(cap ? cap : 1, sizeof *c->jobs);
    c->seen = calloc(cap ? cap : 1, sizeof *c->seen);
    run->names = dv_map_new(free);
    if (!c->jobs || !c->seen || !run->names)
        return DV_ENOMEM;
    for (size_t i = 0; i < self->index.cap && c->njobs < cap; i++) {
        const broker_job_t *job = broker_index_at(&self->index, i);
        if (!job)
            continue;
        s_job_t *j = &c->jobs[c->njobs++];
        j->id = job->id;
        j->attempt = job->attempt;
        /* Inserted by the group being written: queued (or scheduled). */
        j->state = (job->flags & BROKER_JOB_PENDING)
                       ? (broker_deps_has(self, job) ? DV_STATE_WAITING
                                                     : DV_STATE_QUEUED)
                       : (dv_state_t)job->state;
        if (job->worker && job->state == DV_STATE_RUNNING) {
            const char *name = job->worker->name;
            char *copy = dv_map_get(run->names, name);
            if (!copy) {
                copy = strdup(name);
                if (!copy || dv_map_put(run->names, copy, copy) != 0) {
                    free(copy);
                    return DV_ENOMEM;
                }
            }
            j->worker = copy;
        }
    }
    return 0;
}

/* Copies memory for run; with scan, hands it to the reader at once (the
 * store says it already). Answers and ends the check on failure. */
static void
s_take_copy(broker_t *self, broker_check_run_t *run, bool scan)
{
    if (s_copy(self, run) != 0) {
        dv_log(DV_ERROR, "broker.check_failed",
               DV_STR("error", "out of memory"));
        s_answer(self, run, DV_CODE_NO_MEMORY, "broker out of memory");
        return;
    }
    run->phase = S_WAIT_DURABLE;
    if (!scan)
        return;
    run->phase = S_SCANNING;
    int rc = broker_reads_push(self, &run->base, true);
    if (rc != 0)
        s_answer(self, run, DV_CODE_TRY_AGAIN, broker_reads_refusal(rc));
}

static broker_check_run_t *
s_start(broker_t *self, const broker_rid_t *rid, uint64_t req, char *why,
        size_t why_size, dv_code_t *code)
{
    if (self->store_failed) {
        dv_err_set(why, why_size,
                   "%s; memory is ahead of the store until it can be written",
                   self->store_reason[0] ? self->store_reason
                                         : "store unavailable");
        *code = DV_CODE_STORE;
        return NULL;
    }
    if (self->check) {
        dv_err_set(why, why_size, "a check is running; try again");
        *code = DV_CODE_TRY_AGAIN;
        return NULL;
    }
    broker_check_run_t *run = calloc(1, sizeof *run);
    if (!run) {
        dv_err_set(why, why_size, "broker out of memory");
        *code = DV_CODE_NO_MEMORY;
        return NULL;
    }
    run->base.run = s_run;
    run->base.done = s_done;
    run->base.free = s_free_read;
    run->phase = S_WAIT_GROUP;
    if (rid)
        run->rid = *rid;
    run->req = req;
    msgpack_sbuffer_init(&run->body);
    self->check = run;
    return run;
}

void
broker_check(broker_t *self, const broker_rid_t *rid, uint64_t req)
{
    char why[192];
    dv_code_t code = DV_CODE_NONE;
    if (!s_start(self, rid, req, why, sizeof why, &code))
        broker_out_reply(self, rid, req, code, why, NULL, false);
    /* Goes on at the end of the pass (broker_group_submit). */
}

void
broker_check_synced(broker_t *self)
{
    broker_check_run_t *run = self->check;
    if (run && run->phase == S_WAIT_GROUP)
        s_take_copy(self, run, true);
}

bool
broker_check_holding(const broker_t *self)
{
    return self->check && self->check->phase == S_SCANNING;
}

void
broker_check_at_submit(broker_t *self, broker_group_t *g)
{
    broker_check_run_t *run = self->check;
    if (run && run->phase == S_WAIT_GROUP) {
        run->group = g;
        s_take_copy(self, run, false);
    }
}

void
broker_check_written(broker_t *self, broker_group_t *g, bool ok)
{
    broker_check_run_t *run = self->check;
    /* A check still waiting for its moment would wait for as long as the
     * store cannot be written: refused now, as one asked then would be. */
    bool waiting = run && run->phase == S_WAIT_GROUP && !ok;
    if (!run || (!waiting && (run->phase != S_WAIT_DURABLE || run->group != g)))
        return;
    run->group = NULL;
    if (!ok) {
        char why[192];
        dv_err_set(why, sizeof why,
                   "store unavailable: %s; memory is ahead of the store "
                   "until it can be written",
                   dv_strerror(g->wb.store_rc ? g->wb.store_rc : g->wb.rc));
        s_answer(self, run, DV_CODE_STORE, why);
        return;
    }
    run->phase = S_SCANNING;
    int rc = broker_reads_push(self, &run->base, true);
    if (rc != 0)
        s_answer(self, run, DV_CODE_TRY_AGAIN, broker_reads_refusal(rc));
}

void
broker_check_stop(broker_t *self)
{
    broker_check_run_t *run = self->check;
    if (run && run->phase != S_SCANNING)
        s_answer(self, run, DV_CODE_TRY_AGAIN,
                 broker_reads_refusal(BROKER_READER_STOPPED));
}

dv_code_t
broker_check_body(broker_t *self, msgpack_sbuffer *out, char *why,
                  size_t why_size)
{
    dv_code_t code = DV_CODE_NONE;
    broker_check_run_t *run = s_start(self, NULL, 0, why, why_size, &code);
    if (!run)
        return code;
    s_capture_t cap = { out, why, why_size, DV_CODE_NONE, false };
    run->capture = &cap;
    while (!cap.done) {
        broker_group_submit(self);
        if (cap.done)
            break;
        if (self->inflight) {
            broker_writer_wait(self->writer);
            broker_group_writer_ready(self);
        } else if (broker_reader_wait(self->reader)) {
            broker_reads_ready(self);
        } else if (self->check == run && run->phase == S_WAIT_GROUP) {
            continue; /* out of memory for the next group: again */
        }
    }
    return cap.code;
}
