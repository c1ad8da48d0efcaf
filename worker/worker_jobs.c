/* worker_jobs - see worker_jobs.h. Owns the slots, the id hash and the
 * reports kept for want of memory; used by the pool and the http lane;
 * never blocks.
 *
 * The id hash is the table's own, not dv_idmap: jobs leave the table all
 * the time (dv_idmap has no removal), and dv_idmap keeps pointers to its
 * keys, which move here when the slots grow. */
#include "worker_jobs.h"

#include <stdlib.h>
#include <string.h>

#include "dv_err.h"
#include "dv_log.h"
#include "worker_ipc.h"

struct worker_jobs_t {
    struct worker_jobs_hdr hdr; /* first: worker_jobs_at() reads it */
    int nslots;
    int free_head;
    int *buckets;      /* id hash -> first slot, -1 */
    unsigned nbuckets; /* power of two */
    int head, tail;    /* the FIFO */
    size_t nqueued;
    size_t held;
    size_t unreported; /* slots in WORKER_JOB_REPORTING */
    int64_t ended;     /* outcomes (succeeded, failed) since start */
    worker_outbox_t *outbox;
    worker_jobs_clear_fn clear;
};

static uint32_t
s_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static worker_job_t *
s_at(const worker_jobs_t *self, int idx)
{
    return worker_jobs_at(self, idx);
}

static dv_str_t
s_id(const worker_job_t *j)
{
    return dv_strn(j->id, j->idlen);
}

/* Rebuilds the hash for the current number of slots. Returns 0 or -1
 * (out of memory; the old hash stays). */
static int
s_rehash(worker_jobs_t *self)
{
    unsigned nb = 16;
    while (nb < (unsigned)self->nslots * 2)
        nb *= 2;
    if (nb == self->nbuckets)
        return 0;
    int *b = malloc(nb * sizeof *b);
    if (!b)
        return -1;
    for (unsigned i = 0; i < nb; i++)
        b[i] = -1;
    for (int i = 0; i < self->nslots; i++) {
        worker_job_t *j = s_at(self, i);
        if (j->state == WORKER_JOB_FREE)
            continue;
        unsigned h = s_hash(j->id, j->idlen) & (nb - 1);
        j->hnext = b[h];
        b[h] = i;
    }
    free(self->buckets);
    self->buckets = b;
    self->nbuckets = nb;
    return 0;
}

/* Doubles the slots. Returns 0 or -1 (out of memory; nothing changed). */
static int
s_grow(worker_jobs_t *self, int want)
{
    int old = self->nslots;
    int cap = old ? old * 2 : 16;
    while (cap < want)
        cap *= 2;
    size_t sz = self->hdr.slot_size;
    char *slots = realloc(self->hdr.slots, (size_t)cap * sz);
    if (!slots)
        return -1;
    self->hdr.slots = slots;
    memset(slots + (size_t)old * sz, 0, (size_t)(cap - old) * sz);
    self->nslots = cap;
    if (s_rehash(self) != 0) {
        self->nslots = old; /* the extra slots stay unused */
        return -1;
    }
    for (int i = cap - 1; i >= old; i--) {
        worker_job_t *j = s_at(self, i);
        j->state = WORKER_JOB_FREE;
        j->prev = -1;
        j->next = self->free_head;
        self->free_head = i;
    }
    return 0;
}

worker_jobs_t *
worker_jobs_new(size_t slot_size, int capacity, worker_outbox_t *outbox,
                worker_jobs_clear_fn clear)
{
    worker_jobs_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->hdr.slot_size = slot_size;
    self->free_head = -1;
    self->head = self->tail = -1;
    self->outbox = outbox;
    self->clear = clear;
    if (s_grow(self, capacity) != 0) {
        worker_jobs_destroy(&self);
        return NULL;
    }
    return self;
}

void
worker_jobs_destroy(worker_jobs_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    worker_jobs_t *self = *self_p;
    for (int i = 0; i < self->nslots; i++) {
        worker_job_t *j = s_at(self, i);
        if (j->state == WORKER_JOB_REPORTING)
            free(j->result);
        else if (self->clear)
            self->clear(j, true);
    }
    free(self->hdr.slots);
    free(self->buckets);
    free(self);
    *self_p = NULL;
}

int
worker_jobs_slots(const worker_jobs_t *self)
{
    return self->nslots;
}

int
worker_jobs_find(const worker_jobs_t *self, dv_str_t id)
{
    if (!self->nbuckets || !id.ptr)
        return -1;
    unsigned h = s_hash(id.ptr, id.len) & (self->nbuckets - 1);
    for (int i = self->buckets[h]; i >= 0; i = s_at(self, i)->hnext) {
        const worker_job_t *j = s_at(self, i);
        if (j->idlen == id.len && memcmp(j->id, id.ptr, id.len) == 0)
            return i;
    }
    return -1;
}

int
worker_jobs_take(worker_jobs_t *self, dv_str_t id, int32_t attempt)
{
    if (self->free_head < 0 && s_grow(self, self->nslots + 1) != 0)
        return -1;
    int idx = self->free_head;
    worker_job_t *j = s_at(self, idx);
    self->free_head = j->next;
    j->state = WORKER_JOB_LANE;
    j->idlen = (uint8_t)id.len;
    memcpy(j->id, id.ptr, id.len);
    j->id[id.len] = '\0';
    j->attempt = attempt;
    j->lease = 0;
    j->started = false;
    j->prev = j->next = -1;
    j->queued = false;
    unsigned h = s_hash(j->id, j->idlen) & (self->nbuckets - 1);
    j->hnext = self->buckets[h];
    self->buckets[h] = idx;
    self->held++;
    return idx;
}

/* Back to the free list (the lane's fields were cleared already). */
static void
s_free(worker_jobs_t *self, int idx)
{
    worker_job_t *j = s_at(self, idx);
    unsigned h = s_hash(j->id, j->idlen) & (self->nbuckets - 1);
    int *pp = &self->buckets[h];
    while (*pp >= 0 && *pp != idx)
        pp = &s_at(self, *pp)->hnext;
    if (*pp == idx)
        *pp = j->hnext;
    if (j->state == WORKER_JOB_REPORTING)
        self->unreported--;
    j->state = WORKER_JOB_FREE;
    j->result = NULL;
    j->prev = -1;
    j->next = self->free_head;
    self->free_head = idx;
    self->held--;
}

int
worker_jobs_hand_back(worker_jobs_t *self, const dv_job_t *job)
{
    if (worker_outbox_returned(
            self->outbox,
            (worker_exec_t){ job->id, job->attempt, job->lease }) == 0)
        return 0;
    char idz[WORKER_ID_MAX + 1];
    dv_log(DV_ERROR, "worker.reply_dropped", DV_STR("msg", "returned"),
           DV_STR("job", dv_str_copy(job->id, idz, sizeof idz)),
           DV_INT("attempt", job->attempt), DV_STR("error", "out of memory"));
    return -1;
}

int
worker_jobs_admit(worker_jobs_t *self, const dv_job_t *job, bool draining,
                  int *idx)
{
    if (!job->id.ptr || job->id.len == 0 || job->id.len > WORKER_ID_MAX) {
        dv_log(DV_WARN, "worker.bad_job", DV_STR("reason", "id length"),
               DV_INT("bytes", job->id.len));
        return -1;
    }
    int dup = worker_jobs_find(self, job->id);
    if (dup >= 0) {
        /* Delivered again while we hold it (the broker leased it to us
         * anew): this copy goes on under the new lease, or the broker
         * would refuse its reports as stale. */
        worker_job_t *j = s_at(self, dup);
        if (job->lease && j->state != WORKER_JOB_REPORTING) {
            j->attempt = job->attempt;
            j->lease = job->lease;
        }
        return 1;
    }
    if (draining)
        return worker_jobs_hand_back(self, job);
    *idx = worker_jobs_take(self, job->id, job->attempt);
    if (*idx < 0) {
        dv_log(DV_ERROR, "worker.job_returned",
               DV_STR("error", "out of memory"));
        return worker_jobs_hand_back(self, job);
    }
    s_at(self, *idx)->lease = job->lease;
    return WORKER_JOBS_TAKEN;
}

size_t
worker_jobs_held_count(const worker_jobs_t *self)
{
    return self->held;
}

size_t
worker_jobs_held(const worker_jobs_t *self, dv_held_t *held, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < self->nslots && n < max; i++) {
        const worker_job_t *j = s_at(self, i);
        if (j->state == WORKER_JOB_FREE)
            continue;
        held[n].id = s_id(j);
        held[n].attempt = j->attempt;
        held[n].lease = j->lease;
        held[n].started = j->started;
        n++;
    }
    return n;
}

/* ---- FIFO ----------------------------------------------------------- */

void
worker_jobs_push(worker_jobs_t *self, int idx, bool front)
{
    worker_job_t *j = s_at(self, idx);
    if (front) {
        j->prev = -1;
        j->next = self->head;
        if (self->head >= 0)
            s_at(self, self->head)->prev = idx;
        else
            self->tail = idx;
        self->head = idx;
    } else {
        j->next = -1;
        j->prev = self->tail;
        if (self->tail >= 0)
            s_at(self, self->tail)->next = idx;
        else
            self->head = idx;
        self->tail = idx;
    }
    j->queued = true;
    self->nqueued++;
}

void
worker_jobs_unlink(worker_jobs_t *self, int idx)
{
    worker_job_t *j = s_at(self, idx);
    if (!j->queued)
        return;
    if (j->prev >= 0)
        s_at(self, j->prev)->next = j->next;
    else
        self->head = j->next;
    if (j->next >= 0)
        s_at(self, j->next)->prev = j->prev;
    else
        self->tail = j->prev;
    j->prev = j->next = -1;
    j->queued = false;
    self->nqueued--;
}

int
worker_jobs_pop(worker_jobs_t *self)
{
    int idx = self->head;
    if (idx >= 0)
        worker_jobs_unlink(self, idx);
    return idx;
}

int
worker_jobs_first(const worker_jobs_t *self)
{
    return self->head;
}

size_t
worker_jobs_queued(const worker_jobs_t *self)
{
    return self->nqueued;
}

int64_t
worker_jobs_ended(const worker_jobs_t *self)
{
    return self->ended;
}

/* ---- outcomes ------------------------------------------------------- */

/* The job's outcome is known: out of the FIFO, lane fields cleared. */
static void
s_settle(worker_jobs_t *self, int idx)
{
    worker_job_t *j = s_at(self, idx);
    worker_jobs_unlink(self, idx);
    if (j->state != WORKER_JOB_REPORTING && self->clear)
        self->clear(j, false);
}

void
worker_jobs_drop(worker_jobs_t *self, int idx)
{
    worker_job_t *j = s_at(self, idx);
    s_settle(self, idx);
    if (j->state == WORKER_JOB_REPORTING)
        free(j->result);
    s_free(self, idx);
    worker_outbox_grant(self->outbox, 1);
}

int
worker_jobs_revoked(const worker_jobs_t *self, dv_str_t id, uint64_t lease)
{
    int idx = worker_jobs_find(self, id);
    if (idx < 0 || (lease && s_at(self, idx)->lease != lease))
        return -1;
    return idx;
}

/* Keeps the report in the slot for worker_jobs_retry(). */
static void
s_keep(worker_jobs_t *self, int idx, dv_update_kind_t kind, int64_t ts)
{
    worker_job_t *j = s_at(self, idx);
    if (j->state != WORKER_JOB_REPORTING)
        self->unreported++;
    j->state = WORKER_JOB_REPORTING;
    j->report = kind;
    j->report_ts = ts;
    dv_log(DV_ERROR, "worker.report_deferred", DV_STR("job", j->id),
           DV_INT("attempt", j->attempt), DV_STR("error", "out of memory"));
}

int
worker_jobs_succeeded(worker_jobs_t *self, int idx, int64_t wall_ms,
                      dv_str_t result, char **owned)
{
    worker_job_t *j = s_at(self, idx);
    if (worker_outbox_succeeded(self->outbox, worker_job_exec(j), wall_ms,
                                result) == 0) {
        self->ended++;
        if (owned) {
            free(*owned);
            *owned = NULL;
        }
        s_settle(self, idx);
        s_free(self, idx);
        return 0;
    }
    if (!owned)
        return DV_ENOMEM;
    self->ended++;
    s_settle(self, idx);
    j->result = *owned;
    j->result_len = result.len;
    *owned = NULL;
    s_keep(self, idx, DV_UPD_SUCCEEDED, wall_ms);
    return 0;
}

int
worker_jobs_failed(worker_jobs_t *self, int idx, int64_t wall_ms,
                   const dv_failure_t *f, bool keep)
{
    worker_job_t *j = s_at(self, idx);
    if (worker_outbox_failed(self->outbox, worker_job_exec(j), wall_ms, f) ==
        0) {
        self->ended++;
        s_settle(self, idx);
        s_free(self, idx);
        return 0;
    }
    if (!keep)
        return DV_ENOMEM;
    self->ended++;
    /* Copy the message first: it may point into the lane's fields. */
    size_t n = 0;
    if (f->message.ptr) {
        n = worker_utf8_cut(f->message.ptr, f->message.len,
                            WORKER_JOB_TEXT_MAX);
        memmove(j->text, f->message.ptr, n);
    }
    j->text[n] = '\0';
    dv_failure_t copy = *f;
    copy.message = dv_strn(j->text, n);
    /* Details and the stderr tail (up to 8 KiB each) point into the
     * child's frame, which does not outlive this call; a report waiting
     * for memory goes without them rather than holding 16 KiB per job. */
    copy.details = dv_strn(NULL, 0);
    copy.stderr_tail = dv_strn(NULL, 0);
    s_settle(self, idx);
    j->failure = copy;
    j->result = NULL;
    s_keep(self, idx, DV_UPD_FAILED, wall_ms);
    return 0;
}

void
worker_jobs_returned(worker_jobs_t *self, int idx)
{
    worker_job_t *j = s_at(self, idx);
    s_settle(self, idx);
    if (worker_outbox_returned(self->outbox, worker_job_exec(j)) == 0) {
        s_free(self, idx);
        return;
    }
    j->result = NULL;
    s_keep(self, idx, DV_UPD_RETURNED, 0);
}

size_t
worker_jobs_retry(worker_jobs_t *self)
{
    if (self->unreported == 0)
        return 0;
    for (int i = 0; i < self->nslots && self->unreported > 0; i++) {
        worker_job_t *j = s_at(self, i);
        if (j->state != WORKER_JOB_REPORTING)
            continue;
        int rc;
        switch (j->report) {
        case DV_UPD_SUCCEEDED:
            rc = worker_outbox_succeeded(self->outbox, worker_job_exec(j),
                                         j->report_ts,
                                         dv_strn(j->result, j->result_len));
            break;
        case DV_UPD_FAILED:
            rc = worker_outbox_failed(self->outbox, worker_job_exec(j),
                                      j->report_ts, &j->failure);
            break;
        default:
            rc = worker_outbox_returned(self->outbox, worker_job_exec(j));
            break;
        }
        if (rc != 0)
            break; /* still no memory: the rest wait too */
        free(j->result);
        s_free(self, i);
    }
    return self->unreported;
}

size_t
worker_jobs_unreported(const worker_jobs_t *self)
{
    return self->unreported;
}
