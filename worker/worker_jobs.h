/* worker_jobs - the table of jobs a lane holds, shared by the prefork pool
 * and the http lane.
 *
 * A slot is a worker_job_t (id, attempt, links) followed by the lane's own
 * fields: a lane declares `typedef struct { worker_job_t base; ... }` and
 * makes the table with that size. Slots are found by index (stable while
 * the job is held; the pool uses it as the tag of its child frames) or by
 * id (a hash of the ids in the slots). The table also keeps one FIFO of
 * waiting jobs, doubly linked, so a job can leave it from anywhere.
 *
 * Outcomes are reported through the table, which then frees the slot. If
 * the outbox has no room (out of memory), the report stays with the job:
 * the slot stays held (HELLO still lists it) in state WORKER_JOB_REPORTING,
 * and worker_jobs_retry() sends it on a later pass. The lane's fields are
 * cleared (its clear hook) as soon as the outcome is known either way.
 *
 * The table is made with room for a lane's full capacity, so taking a job
 * allocates nothing on the hot path; past that it grows, and a failure to
 * grow is the caller's to report (the job is handed back). Not
 * thread-safe.
 */
#ifndef WORKER_JOBS_H
#define WORKER_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_proto.h"
#include "worker_outbox.h"

/* Slot states: free, holding a report that is waiting for the outbox,
 * and from WORKER_JOB_LANE on the lane's own. */
enum { WORKER_JOB_FREE = 0, WORKER_JOB_REPORTING = 1, WORKER_JOB_LANE = 2 };

/* Longest failure message kept with a job whose report waits for memory
 * (longer ones are cut, at a UTF-8 boundary). */
#define WORKER_JOB_TEXT_MAX 511

/* The part of a slot that the table owns. Lanes read id, idlen, attempt
 * and state, and set state to their own values (>= WORKER_JOB_LANE). */
typedef struct {
    int state;
    uint8_t idlen;
    char id[WORKER_ID_MAX + 1]; /* NUL-terminated, for logs */
    int32_t attempt;
    uint64_t lease; /* the lease it came with: every report names it */
    bool started;   /* its "started" report was made (HELLO says so) */
    int prev, next; /* FIFO links; next is also the free list */
    int hnext;      /* id hash chain */
    bool queued;    /* in the FIFO */
    /* WORKER_JOB_REPORTING: the report kept for a later pass. */
    dv_update_kind_t report;
    int64_t report_ts;
    dv_failure_t failure; /* message points into text */
    char *result;         /* owned */
    size_t result_len;
    char text[WORKER_JOB_TEXT_MAX + 1];
} worker_job_t;

typedef struct worker_jobs_t worker_jobs_t;

/* Called when a job leaves its lane (outcome known, or returned), and for
 * every held slot on destroy: frees what the lane's fields own. A new or
 * reused slot's lane fields are left as the last clear left them (zero at
 * first), so a lane may keep buffers there for reuse. */
typedef void (*worker_jobs_clear_fn)(worker_job_t *job, bool destroying);

/* A table of slots of slot_size bytes (at least sizeof(worker_job_t)),
 * with room for capacity jobs; reports go to outbox (which must outlive
 * it). NULL if out of memory. */
worker_jobs_t *worker_jobs_new(size_t slot_size, int capacity,
                               worker_outbox_t *outbox,
                               worker_jobs_clear_fn clear);

/* Calls clear on every held slot, frees the table. NULL-safe. */
void worker_jobs_destroy(worker_jobs_t **self_p);

/* Slot idx (0 <= idx < worker_jobs_slots). Valid until the next take. */
static inline worker_job_t *worker_jobs_at(const worker_jobs_t *self, int idx);

/* Number of slots (free or not). */
int worker_jobs_slots(const worker_jobs_t *self);

/* The held job with this id, or -1. */
int worker_jobs_find(const worker_jobs_t *self, dv_str_t id);

/* Takes a slot for a new job (id 1..WORKER_ID_MAX bytes, not held), in
 * state WORKER_JOB_LANE. Returns its index, or -1 if out of memory. */
int worker_jobs_take(worker_jobs_t *self, dv_str_t id, int32_t attempt);

/* worker_jobs_admit() took a slot for the job. */
#define WORKER_JOBS_TAKEN 2

/* A lane's first steps with a job from the broker, the same in every
 * lane. An id not 1..WORKER_ID_MAX bytes: logged, -1. A job already held
 * (delivered again after a reconnect): it adopts a newer attempt number,
 * so its report is one the broker expects, 1. Draining, or no slot to be
 * had (out of memory): handed back as returned, 0 (or -1, logged, if even
 * that found no memory). Otherwise a slot is taken for it, in state
 * WORKER_JOB_LANE: WORKER_JOBS_TAKEN and its index in *idx. */
int worker_jobs_admit(worker_jobs_t *self, const dv_job_t *job, bool draining,
                      int *idx);

/* Hands a job the lane cannot take back to the broker (returned, no
 * attempt spent). Returns 0, or -1 (logged) if the outbox has no room. */
int worker_jobs_hand_back(worker_jobs_t *self, const dv_job_t *job);

/* Jobs held (every slot not free, reports waiting included). */
size_t worker_jobs_held_count(const worker_jobs_t *self);

/* Fills held (capacity max) with the jobs held, for HELLO. The id views
 * stay valid until the table next changes. Returns the count. */
size_t worker_jobs_held(const worker_jobs_t *self, dv_held_t *held, size_t max);

/* ---- the FIFO of waiting jobs ---- */

void worker_jobs_push(worker_jobs_t *self, int idx, bool front);
/* Removes and returns the first job, or -1. */
int worker_jobs_pop(worker_jobs_t *self);
/* Takes idx out of the FIFO (nothing if it is not in it). */
void worker_jobs_unlink(worker_jobs_t *self, int idx);
/* First job in the FIFO, or -1; then worker_jobs_at(idx)->next. */
int worker_jobs_first(const worker_jobs_t *self);
size_t worker_jobs_queued(const worker_jobs_t *self);

/* Jobs of this table whose outcome (succeeded or failed) was known, since
 * it was made: the lane's own job rate. */
int64_t worker_jobs_ended(const worker_jobs_t *self);

/* ---- outcomes: each takes the job out of the FIFO, clears the lane's
 * fields and frees the slot once the report is in the outbox ---- */

/* Succeeded with result (a view). owned, if not NULL, is the allocation
 * result is (result.ptr == *owned), handed over: freed here, or kept with
 * the job while the report waits for memory; *owned is set to NULL. Returns 0, or DV_ENOMEM if the outbox had no
 * room and owned was NULL: then nothing changed, and the caller tries
 * again later. */
int worker_jobs_succeeded(worker_jobs_t *self, int idx, int64_t wall_ms,
                          dv_str_t result, char **owned);

/* Failed with f. With keep, always 0: a report the outbox cannot take
 * stays with the job (its message cut to WORKER_JOB_TEXT_MAX bytes, its
 * details and stderr tail dropped).
 * Without keep, DV_ENOMEM leaves everything unchanged instead. */
int worker_jobs_failed(worker_jobs_t *self, int idx, int64_t wall_ms,
                       const dv_failure_t *f, bool keep);

/* Handed back unstarted (no attempt spent); kept like a failure. */
void worker_jobs_returned(worker_jobs_t *self, int idx);

/* The broker revoked the job (its lease is no longer ours): the slot is
 * freed without a report, and its credit goes back to the broker. */
void worker_jobs_drop(worker_jobs_t *self, int idx);

/* The held job a revocation of (id, lease) is about, or -1: lease 0 names
 * whichever copy is held; another lease names a copy we no longer hold. */
int worker_jobs_revoked(const worker_jobs_t *self, dv_str_t id, uint64_t lease);

/* Sends the reports that waited for memory. Returns how many still
 * wait. */
size_t worker_jobs_retry(worker_jobs_t *self);

/* Reports waiting for memory. */
size_t worker_jobs_unreported(const worker_jobs_t *self);

/* ---- inline ---- */

/* The execution j's reports are about. */
static inline worker_exec_t
worker_job_exec(const worker_job_t *j)
{
    return (worker_exec_t){ dv_strn(j->id, j->idlen), j->attempt, j->lease };
}

struct worker_jobs_hdr {
    char *slots;
    size_t slot_size;
};

static inline worker_job_t *
worker_jobs_at(const worker_jobs_t *self, int idx)
{
    const struct worker_jobs_hdr *h = (const struct worker_jobs_hdr *)self;
    return (worker_job_t *)(h->slots + (size_t)idx * h->slot_size);
}

#endif
