/* broker_deps - jobs that wait for other jobs ("after", "after_any").
 *
 * A job submitted with dependencies that have not all ended is in state
 * waiting: in the index, in no queue FIFO, timer heap or running list. The
 * in-memory job record does not grow for it; what it waits for lives in
 * two side tables:
 *
 *   waits    the waiting job's id -> its broker_dwait_t: how many of its
 *            dependencies are still outstanding, and whether one of its
 *            "after" dependencies ended badly (doomed);
 *   by       a dependency's id -> the list of edges to the waiting records
 *            of the jobs that wait for it (each edge says which list, after
 *            or after_any).
 *
 * Both are dv_map tables keyed by the 16 id bytes inside their items, so
 * every step is O(1): a submit adds one record and one edge per dependency;
 * a job's end takes its list out of `by` and walks it once. An edge whose
 * waiting job went away meanwhile (cancelled, refused) points at a record
 * marked gone, which lives until its last edge is walked (refs).
 *
 * A dependency that ends: succeeded, or any end for after_any, takes one
 * off the count; the last one releases the job (queued, or scheduled for a
 * future run_at: a store write, and event job.released). An "after"
 * dependency that ends dead or cancelled cancels the job with the reason in
 * its last failure; that end is in turn a dependency's end, so it cascades.
 * The cancellations run from a work list, not by recursion, so a long
 * chain cannot exhaust the stack.
 *
 * A job whose insert is not durable yet (BROKER_JOB_PENDING) is neither
 * released nor cancelled at once: the record says what to do, and
 * broker_deps_durable() does it when the insert is durable.
 *
 * Loop thread only; never blocks. Start-up (broker_deps_recover) rebuilds
 * the tables from the store's deps rows of the waiting jobs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "dv_log.h"

typedef struct broker_dwait {
    dv_id_t id;         /* the waiting job (map key) */
    uint32_t left;      /* dependencies not yet satisfied */
    uint32_t refs;      /* edges pointing here, + 1 while in `waits` */
    bool gone;          /* the job waits no more (the edges are stale) */
    bool doomed;        /* an "after" dependency ended dead or cancelled */
    dv_state_t doom_st; /* how it ended */
    dv_id_t doomed_by;  /* which one */
} broker_dwait_t;

typedef struct broker_dedge {
    struct broker_dedge *next;
    broker_dwait_t *w;
    bool any;
} broker_dedge_t;

typedef struct {
    dv_id_t id; /* the dependency (map key) */
    broker_dedge_t *head;
} broker_dlist_t;

/* A cancellation to make: job id, and the dependency that caused it. */
typedef struct {
    dv_id_t job, by;
    dv_state_t st;
} broker_dcancel_t;

struct broker_deps {
    dv_map_t *waits; /* id bytes -> broker_dwait_t (freed by hand) */
    dv_map_t *by;    /* id bytes -> broker_dlist_t (freed by hand) */
    broker_dcancel_t *work;
    size_t nwork, work_cap;
    bool busy;    /* the work list is being run */
    size_t bytes; /* allocated for records, edges and lists */
};

int
broker_deps_init(broker_t *self)
{
    broker_deps_t *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    d->waits = dv_map_new(NULL);
    d->by = dv_map_new(NULL);
    if (!d->waits || !d->by) {
        dv_map_destroy(&d->waits);
        dv_map_destroy(&d->by);
        free(d);
        return -1;
    }
    self->deps = d;
    return 0;
}

void
broker_deps_free(broker_t *self)
{
    broker_deps_t *d = self->deps;
    if (!d)
        return;
    broker_dlist_t *l;
    DV_MAP_EACH(l, d->by)
    {
        while (l->head) {
            broker_dedge_t *e = l->head;
            l->head = e->next;
            if (--e->w->refs == 0)
                free(e->w);
            free(e);
        }
        free(l);
    }
    broker_dwait_t *w;
    DV_MAP_EACH(w, d->waits)
    {
        if (--w->refs == 0)
            free(w);
    }
    dv_map_destroy(&d->waits);
    dv_map_destroy(&d->by);
    free(d->work);
    free(d);
    self->deps = NULL;
}

broker_job_t **
broker_deps_of_queue(broker_t *self, const broker_queue_t *q, size_t *n)
{
    *n = 0;
    if (!self->deps)
        return NULL;
    size_t count = 0;
    broker_dwait_t *w;
    DV_MAP_EACH(w, self->deps->waits)
    {
        broker_job_t *job = broker_index_get(&self->index, &w->id);
        count += job && job->queue == q && job->state == DV_STATE_WAITING;
    }
    if (!count)
        return NULL;
    broker_job_t **out = malloc(count * sizeof *out);
    if (!out) {
        *n = SIZE_MAX;
        return NULL;
    }
    DV_MAP_EACH(w, self->deps->waits)
    {
        broker_job_t *job = broker_index_get(&self->index, &w->id);
        if (job && job->queue == q && job->state == DV_STATE_WAITING &&
            *n < count)
            out[(*n)++] = job;
    }
    return out;
}

size_t
broker_deps_waiting(const broker_t *self)
{
    return self->deps ? dv_map_size(self->deps->waits) : 0;
}

size_t
broker_deps_bytes(const broker_t *self)
{
    return self->deps ? self->deps->bytes : 0;
}

static void
s_unref(broker_deps_t *d, broker_dwait_t *w)
{
    if (--w->refs == 0) {
        d->bytes -= sizeof *w;
        free(w);
    }
}

/* The job's record leaves `waits` (its edges become stale). */
static void
s_forget(broker_deps_t *d, broker_dwait_t *w)
{
    if (w->gone)
        return;
    w->gone = true;
    dv_map_deleten(d->waits, (const char *)w->id.b, sizeof w->id.b);
    s_unref(d, w);
}

static broker_dwait_t *
s_wait_of(const broker_t *self, const broker_job_t *job)
{
    return dv_map_getn(self->deps->waits, (const char *)job->id.b,
                       sizeof job->id.b);
}

bool
broker_deps_has(const broker_t *self, const broker_job_t *job)
{
    return self->deps && s_wait_of(self, job) != NULL;
}

/* A record for job (left 0, in `waits`), or NULL on out of memory. */
static broker_dwait_t *
s_wait_new(broker_t *self, const dv_id_t *id)
{
    broker_deps_t *d = self->deps;
    broker_dwait_t *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->id = *id;
    w->refs = 1;
    if (dv_map_putn(d->waits, (const char *)w->id.b, sizeof w->id.b, w) != 0) {
        free(w);
        return NULL;
    }
    d->bytes += sizeof *w;
    return w;
}

/* An edge from dependency id to w. Returns 0 or -1 (out of memory). */
static int
s_edge_add(broker_t *self, const dv_id_t *id, broker_dwait_t *w, bool any)
{
    broker_deps_t *d = self->deps;
    broker_dlist_t *l = dv_map_getn(d->by, (const char *)id->b, sizeof id->b);
    if (!l) {
        l = calloc(1, sizeof *l);
        if (!l)
            return -1;
        l->id = *id;
        if (dv_map_putn(d->by, (const char *)l->id.b, sizeof l->id.b, l) != 0) {
            free(l);
            return -1;
        }
        d->bytes += sizeof *l;
    }
    broker_dedge_t *e = malloc(sizeof *e);
    if (!e)
        return -1; /* an empty list is harmless: freed at the end */
    e->w = w;
    e->any = any;
    e->next = l->head;
    l->head = e;
    w->refs++;
    w->left++;
    d->bytes += sizeof *e;
    return 0;
}

static void
s_doom(broker_dwait_t *w, const dv_id_t *by, dv_state_t st)
{
    if (w->doomed)
        return;
    w->doomed = true;
    w->doomed_by = *by;
    w->doom_st = st;
}

/* ---- submit ---------------------------------------------------------- */

/* How one named id stands for a new job. */
static int
s_plan_one(broker_t *self, dv_str_t sid, bool any,
           const broker_dep_found_t *found, broker_dplan_t *p, char *why,
           size_t why_size, dv_code_t *code)
{
    const char *list = any ? "after_any" : "after";
    dv_id_t id;
    if (sid.len != DV_ID_TEXT_LEN || dv_id_parse(sid.ptr, sid.len, &id) != 0) {
        snprintf(why, why_size, "%s: not a job id", list);
        *code = DV_CODE_INVALID_ARGUMENT;
        return -1;
    }
    /* Named twice (in one list, or in both: after wins). */
    for (uint32_t i = 0; i < p->ndeps; i++)
        if (!memcmp(p->ids[i].b, id.b, sizeof id.b)) {
            if (!any && p->deps[i].any) {
                p->deps[i].any = false;
                dv_state_t st = p->states[i];
                if (p->live[i] == NULL && st != DV_STATE_SUCCEEDED &&
                    !p->doomed) {
                    p->doomed = true;
                    p->doomed_by = id;
                    p->doom_st = st;
                }
            }
            return 0;
        }
    uint32_t i = p->ndeps;
    broker_job_t *job = broker_index_get(&self->index, &id);
    if (job &&
        !broker_auth_may_read(self, broker_sched_owner_name(self, job->owner)))
        job = NULL; /* another's: as if it did not exist */
    dv_state_t st = DV_STATE_NONE;
    if (job && dv_state_terminal(job->state)) {
        st = job->state; /* ended, not durable yet */
        job = NULL;
    } else if (!job) {
        if (!found || found->rc == BROKER_DEP_UNREAD) {
            /* Live when the submit came, gone since the read: it changed
             * state under us. */
            snprintf(why, why_size, "%s: job %.*s is changing; try again", list,
                     (int)sid.len, sid.ptr);
            *code = DV_CODE_TRY_AGAIN;
            return -1;
        }
        if (found->rc == BROKER_DEP_FAILED) {
            snprintf(why, why_size, "%s: store lookup failed", list);
            *code = DV_CODE_STORE;
            return -1;
        }
        bool visible = found->same_owner || broker_auth_may_read(self, NULL);
        if (found->rc == BROKER_DEP_NONE || !visible) {
            snprintf(why, why_size, "%s: no job %.*s", list, (int)sid.len,
                     sid.ptr);
            *code = DV_CODE_NOT_FOUND;
            return -1;
        }
        st = found->state;
        if (!dv_state_terminal(st)) {
            /* Stored unfinished, not live: it is being retried or it was
             * refused; the submit may try again. */
            snprintf(why, why_size, "%s: job %.*s is changing; try again", list,
                     (int)sid.len, sid.ptr);
            *code = DV_CODE_TRY_AGAIN;
            return -1;
        }
    }
    memcpy(p->deps[i].id, sid.ptr, DV_ID_TEXT_LEN);
    p->deps[i].id[DV_ID_TEXT_LEN] = '\0';
    p->deps[i].any = any;
    p->ids[i] = id;
    p->live[i] = job;
    p->states[i] = st;
    p->ndeps++;
    if (job)
        p->outstanding++;
    else if (!any && st != DV_STATE_SUCCEEDED && !p->doomed) {
        p->doomed = true;
        p->doomed_by = id;
        p->doom_st = st;
    }
    return 0;
}

int
broker_deps_plan(broker_t *self, const dv_jobspec_t *js,
                 const broker_dep_found_t *found, broker_dplan_t *p, char *why,
                 size_t why_size, dv_code_t *code)
{
    p->ndeps = 0;
    p->outstanding = 0;
    p->doomed = false;
    uint32_t k = 0;
    for (uint32_t i = 0; i < js->nafter; i++, k++)
        if (s_plan_one(self, js->after[i], false, found ? &found[k] : NULL, p,
                       why, why_size, code) != 0)
            return -1;
    for (uint32_t i = 0; i < js->nafter_any; i++, k++)
        if (s_plan_one(self, js->after_any[i], true, found ? &found[k] : NULL,
                       p, why, why_size, code) != 0)
            return -1;
    return 0;
}

int
broker_deps_attach(broker_t *self, const broker_job_t *job,
                   const broker_dplan_t *p)
{
    if (!p->outstanding && !p->doomed)
        return 0;
    broker_dwait_t *w = s_wait_new(self, &job->id);
    if (!w)
        return -1;
    for (uint32_t i = 0; i < p->ndeps; i++)
        if (p->live[i] &&
            s_edge_add(self, &p->ids[i], w, p->deps[i].any) != 0) {
            s_forget(self->deps, w);
            return -1;
        }
    if (p->doomed)
        s_doom(w, &p->doomed_by, p->doom_st);
    return 0;
}

void
broker_deps_detach(broker_t *self, const broker_job_t *job)
{
    broker_dwait_t *w = s_wait_of(self, job);
    if (w)
        s_forget(self->deps, w);
}

/* ---- release and cancel ------------------------------------------------ */

/* job (waiting, durable) goes to its queue or the timer heap. */
static void
s_release(broker_t *self, broker_job_t *job)
{
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    broker_sched_unplace(self, job); /* out of waiting (its count) */
    broker_sched_place(self, job, false);
    if (broker_wbatch_waiting(&self->cur->wb, id, (dv_state_t)job->state,
                              job->state == DV_STATE_SCHEDULED
                                  ? job->run_at_ms
                                  : broker_now_ms(self),
                              job->attempt, NULL) != 0)
        broker_write_lost(self);
    dv_event_t ev = { 0 };
    ev.state = (dv_state_t)job->state;
    ev.run_at_ms = job->state == DV_STATE_SCHEDULED ? job->run_at_ms : 0;
    ev.was = DV_STATE_WAITING;
    broker_out_job_event(self, DV_EV_JOB_RELEASED, job, &ev);
}

static void
s_push_cancel(broker_t *self, const dv_id_t *job, const dv_id_t *by,
              dv_state_t st)
{
    broker_deps_t *d = self->deps;
    if (d->nwork == d->work_cap) {
        size_t cap = d->work_cap ? d->work_cap * 2 : 64;
        broker_dcancel_t *n = realloc(d->work, cap * sizeof *n);
        if (!n) {
            char idt[DV_ID_TEXT_LEN + 1];
            dv_id_format(job, idt);
            dv_log(DV_ERROR, "broker.deps_cancel_dropped", DV_STR("job", idt),
                   DV_STR("error", "out of memory"));
            return;
        }
        d->work = n;
        d->work_cap = cap;
    }
    d->work[d->nwork++] = (broker_dcancel_t){ *job, *by, st };
}

static void
s_cancel(broker_t *self, broker_job_t *job, const dv_id_t *by, dv_state_t st)
{
    char byt[DV_ID_TEXT_LEN + 1], msg[96];
    dv_id_format(by, byt);
    snprintf(msg, sizeof msg, "dependency %s ended %s", byt,
             st == DV_STATE_DEAD || st == DV_STATE_CANCELLED ? dv_state_name(st)
                                                             : "unknown");
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = DV_CAT_CANCELLED;
    f.message = dv_str(msg);
    broker_sched_finish(self, job, DV_STATE_CANCELLED, NULL, 0, &f);
}

/* Runs the cancellations queued (each may queue more). */
static void
s_run_work(broker_t *self)
{
    broker_deps_t *d = self->deps;
    if (d->busy)
        return;
    d->busy = true;
    while (d->nwork) {
        broker_dcancel_t c = d->work[--d->nwork];
        broker_job_t *job = broker_index_get(&self->index, &c.job);
        if (job && job->state == DV_STATE_WAITING &&
            !(job->flags & BROKER_JOB_PENDING))
            s_cancel(self, job, &c.by, c.st);
    }
    d->busy = false;
}

/* w's count reached 0 or it was doomed: act on its job. */
static void
s_settle(broker_t *self, broker_dwait_t *w)
{
    broker_job_t *job = broker_index_get(&self->index, &w->id);
    if (!job || (job->flags & BROKER_JOB_PENDING))
        return; /* broker_deps_durable acts */
    if (job->state != DV_STATE_WAITING) {
        s_forget(self->deps, w);
        return;
    }
    if (w->doomed) {
        s_push_cancel(self, &w->id, &w->doomed_by, w->doom_st);
    } else if (w->left == 0) {
        s_forget(self->deps, w);
        s_release(self, job);
    }
}

void
broker_deps_ended(broker_t *self, const broker_job_t *job, dv_state_t state)
{
    broker_deps_t *d = self->deps;
    if (!d)
        return;
    broker_dwait_t *own = s_wait_of(self, job);
    if (own)
        s_forget(d, own);
    broker_dlist_t *l =
        dv_map_getn(d->by, (const char *)job->id.b, sizeof job->id.b);
    if (l) {
        /* Out of the map first: nothing walks it twice. */
        dv_map_deleten(d->by, (const char *)job->id.b, sizeof job->id.b);
        d->bytes -= sizeof *l;
        while (l->head) {
            broker_dedge_t *e = l->head;
            l->head = e->next;
            broker_dwait_t *w = e->w;
            bool any = e->any;
            d->bytes -= sizeof *e;
            free(e);
            if (w->gone) {
                s_unref(d, w);
                continue;
            }
            w->refs--; /* the edge's; `waits` still holds it */
            if (w->left)
                w->left--;
            if (!any && state != DV_STATE_SUCCEEDED)
                s_doom(w, &job->id, state);
            if (w->doomed || w->left == 0)
                s_settle(self, w);
        }
        free(l);
    }
    s_run_work(self);
}

bool
broker_deps_durable(broker_t *self, broker_job_t *job)
{
    broker_dwait_t *w = self->deps ? s_wait_of(self, job) : NULL;
    if (!w)
        return false;
    if (w->left == 0 && !w->doomed) {
        /* Released while its insert was being written. */
        s_forget(self->deps, w);
        char id[DV_ID_TEXT_LEN + 1];
        broker_id_text(job, id);
        job->state = DV_STATE_NONE;
        broker_sched_place(self, job, false);
        if (broker_wbatch_waiting(&self->cur->wb, id, (dv_state_t)job->state,
                                  job->state == DV_STATE_SCHEDULED
                                      ? job->run_at_ms
                                      : broker_now_ms(self),
                                  job->attempt, NULL) != 0)
            broker_write_lost(self);
        return true;
    }
    job->state = DV_STATE_WAITING;
    job->queue->waiting++;
    return true;
}

void
broker_deps_submitted(broker_t *self, broker_job_t *job)
{
    broker_dwait_t *w = self->deps ? s_wait_of(self, job) : NULL;
    if (w && w->doomed && job->state == DV_STATE_WAITING) {
        s_push_cancel(self, &w->id, &w->doomed_by, w->doom_st);
        s_run_work(self);
    }
}

/* ---- start-up ------------------------------------------------------------ */

typedef struct {
    broker_t *self;
    size_t edges;
} s_recover_t;

static int
s_on_dep(void *arg, const char *job_id, const char *after_id, bool any,
         dv_state_t after_state)
{
    s_recover_t *c = arg;
    broker_t *self = c->self;
    dv_id_t id, after;
    if (!job_id || !after_id ||
        dv_id_parse(job_id, (unsigned)strlen(job_id), &id) != 0 ||
        dv_id_parse(after_id, (unsigned)strlen(after_id), &after) != 0)
        return 0;
    broker_job_t *job = broker_index_get(&self->index, &id);
    if (!job || job->state != DV_STATE_WAITING)
        return 0;
    broker_dwait_t *w = s_wait_of(self, job);
    if (!w && !(w = s_wait_new(self, &id)))
        return DV_ENOMEM;
    broker_job_t *dep = broker_index_get(&self->index, &after);
    if (dep && !dv_state_terminal(dep->state)) {
        if (s_edge_add(self, &after, w, any) != 0)
            return DV_ENOMEM;
        c->edges++;
    } else if (!any && after_state != DV_STATE_SUCCEEDED) {
        /* Ended badly meanwhile, or no longer stored. */
        s_doom(w, &after, after_state);
    }
    return 0;
}

int
broker_deps_recover(broker_t *self)
{
    s_recover_t c = { self, 0 };
    int rc = broker_store_deps_replay(self->store, s_on_dep, &c);
    if (rc != 0)
        return rc;
    /* Waiting jobs whose dependencies all ended: released or cancelled. A
     * waiting job without any deps row (edited by hand) is released. */
    size_t released = 0, cancelled = 0, waiting = 0;
    broker_job_t **todo = NULL;
    size_t ntodo = 0;
    for (size_t i = 0; i < self->index.cap; i++) {
        broker_job_t *job = broker_index_at(&self->index, i);
        if (!job || job->state != DV_STATE_WAITING)
            continue;
        broker_dwait_t *w = s_wait_of(self, job);
        if (w && w->left && !w->doomed) {
            waiting++;
            continue;
        }
        broker_job_t **n = realloc(todo, (ntodo + 1) * sizeof *n);
        if (!n) {
            free(todo);
            return DV_ENOMEM;
        }
        todo = n;
        todo[ntodo++] = job;
    }
    for (size_t i = 0; i < ntodo; i++) {
        broker_job_t *job = todo[i];
        broker_dwait_t *w = s_wait_of(self, job);
        if (w && w->doomed) {
            s_push_cancel(self, &w->id, &w->doomed_by, w->doom_st);
            cancelled++;
        } else {
            if (w)
                s_forget(self->deps, w);
            s_release(self, job);
            released++;
        }
    }
    free(todo);
    s_run_work(self);
    dv_log(DV_INFO, "broker.deps_recovered",
           DV_INT("waiting", (int64_t)waiting),
           DV_INT("edges", (int64_t)c.edges),
           DV_INT("released", (int64_t)released),
           DV_INT("cancelled", (int64_t)cancelled));
    return 0;
}
