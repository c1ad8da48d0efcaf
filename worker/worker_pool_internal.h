/* worker_pool_internal - the pool's state, shared by its files:
 *   worker_pool.c        the lane: jobs in and out, drain, HELLO, metrics
 *   worker_pool_child.c  children: spawn, stop, reap, timers, dump
 *   worker_pool_io.c     a child's socket: frames read and written, and
 *                        what each report does to its job
 * Nothing outside worker_pool*.c includes this.
 */
#ifndef WORKER_POOL_INTERNAL_H
#define WORKER_POOL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "worker_ipc.h"
#include "worker_jobs.h"
#include "worker_pool.h"

/* Jobs a child holds at once: the one running and the next; with an
 * adaptive prefetch deep enough (fast jobs), up to POOL_DEPTH_MAX, so that
 * one write to a child and one read of its reports cover several jobs. */
#define POOL_DEPTH     2
#define POOL_DEPTH_MAX 16
/* Delay before retrying what failed for want of memory or a fork. */
#define POOL_RETRY_MS         100
#define POOL_RESPAWN_RETRY_MS 1000

/* Job states, after worker_jobs' own. */
enum {
    J_PENDING = WORKER_JOB_LANE, /* in the FIFO */
    J_ASSIGNED,                  /* in a child's socket, not started */
    J_RUNNING,
};

typedef struct {
    worker_job_t base;    /* id, attempt, state, FIFO links */
    char trace[64];       /* W3C traceparent, for log lines; "" = none */
    int64_t timeout_ms;   /* effective limit per attempt; 0 = none */
    int child;            /* child index while assigned/running, else -1 */
    bool cancel;          /* the broker cancelled it */
    bool skip_sent;       /* SKIP sent to its child, no answer yet */
    bool progress_dirty;  /* progress to report this pass */
    int bounces;          /* returned unstarted by a dying child */
    int64_t started_mono; /* when the child began it */
    int64_t cur, tot;     /* latest progress */
    worker_buf_t pmsg;    /* latest progress message */
    worker_buf_t frame;   /* its RUN frame, ready to write to a child */
} pool_job_t;

typedef enum {
    K_NONE,     /* not being stopped */
    K_TIMEOUT,  /* its running job passed its timeout */
    K_CANCEL,   /* its running job was cancelled */
    K_SHUTDOWN, /* the shutdown grace period ended */
    K_PROTOCOL, /* it sent a malformed frame */
} pool_kill_t;

extern const char *const pool_kill_names[];

typedef struct {
    pid_t pid;             /* 0 when no process */
    int fd;                /* supervisor's end of the socketpair, or -1 */
    bool eof;              /* no more reading: EOF or corrupt stream */
    bool wr_shut;          /* told to exit (drain) by closing our side */
    bool stalled;          /* a report waits for memory: input kept */
    bool reaped;           /* exited; settled once its input is handled */
    int reap_status;       /* its wait status */
    int q[POOL_DEPTH_MAX]; /* job indices it holds, q[0] first */
    int nq;
    worker_buf_t in, out;
    int64_t assigned;   /* jobs given since spawn, minus skipped */
    int64_t deadline;   /* mono ms when q[0] times out; 0 = none */
    int64_t soft_at;    /* mono ms to tell q[0] to wrap up; 0 = none */
    bool recycle;       /* over --max-rss-per-child: takes no more
                                jobs, is told to exit once it holds none */
    pool_kill_t kill;   /* why we are stopping it */
    int kill_job;       /* the job the stop is about */
    int64_t kill_at;    /* mono ms to send SIGKILL; 0 = none */
    int64_t respawn_at; /* mono ms to retry a failed fork; 0 = none */
    int64_t spawned;    /* mono ms */
} pool_child_t;

struct worker_pool_t {
    const worker_config_t *cfg;
    const char *name;
    worker_outbox_t *outbox;
    pid_t self_pid;
    pool_child_t *children;
    int nchildren;
    worker_jobs_t *jobs; /* a slot index is a child frame's tag */
    int *dirty;          /* jobs with progress this pass */
    int ndirty, dirty_cap;
    int *poll_map; /* poll item -> child index */
    int nstalled;  /* children with stalled input */
    bool draining;
    int64_t mono, wall;
    dv_hb_child_t *hb_children; /* the heartbeat's per_child, reused */
    /* Adaptive prefetch (no --prefetch): the jobs held beyond concurrency
     * now, and the window its job rate is measured over. */
    int prefetch_now;
    int64_t adapt_mono;      /* window start (0: not started) */
    int64_t adapt_processed; /* outcomes counted at its start */
};

static inline pool_job_t *
pool_job(const worker_pool_t *self, int idx)
{
    return (pool_job_t *)worker_jobs_at(self->jobs, idx);
}

static inline bool
pool_alive(const pool_child_t *c)
{
    return c->pid > 0;
}

/* NUL-terminated id, for log lines. */
static inline const char *
pool_idz(const pool_job_t *j)
{
    return j->base.id;
}

static inline const char *
pool_trace(const pool_job_t *j)
{
    return j->trace[0] ? j->trace : NULL;
}

/* ---- worker_pool.c ---- */

/* Reports job idx failed (kept with the job if the outbox has no room)
 * and frees it. */
void pool_fail(worker_pool_t *self, int idx, dv_category_t cat, bool retryable,
               int32_t exit_code, int32_t sig, const char *msg);
/* A job that never started came back (skipped, or its child died): it
 * waits again, or is returned (draining) or failed (cancelled). */
void pool_unstarted(worker_pool_t *self, int idx);
/* The lane's stats: children busy, idle, alive. */
void pool_stats(const void *pool, worker_lane_stats_t *st);
/* Appends SKIP for job idx to its child's output, once. */
void pool_send_skip(worker_pool_t *self, pool_child_t *c, int idx);

/* ---- worker_pool_child.c ---- */

void pool_child_reset(pool_child_t *c);
int pool_spawn(worker_pool_t *self, int ci, bool quiet);
/* Starts stopping child ci (SIGTERM, SIGKILL after kill_grace) for why,
 * about job. */
void pool_kill(worker_pool_t *self, int ci, pool_kill_t why, int job);
/* Child ci was reaped with status: settle its jobs, respawn it. */
void pool_child_dead(worker_pool_t *self, int ci, int status);
void pool_tick(void *pool);
int64_t pool_next_deadline(const void *pool);
void pool_reap(void *pool);
void pool_kill_all(void *pool, int64_t wait_ms);
void pool_dump(const void *pool);

/* ---- worker_pool_io.c ---- */

/* Reads what child ci sent (up to max_reads reads) and handles each
 * frame. */
void pool_child_read(worker_pool_t *self, int ci, int max_reads);
/* Handles frames already read from a stalled child ci. */
void pool_child_resume(worker_pool_t *self, int ci);
void pool_child_write(worker_pool_t *self, int ci);
/* If we are stopping job idx (cancel, timeout, shutdown, corrupt child),
 * reports the failure that says so and returns true. */
bool pool_report_stopped(worker_pool_t *self, int ci, int idx, int sig);

#endif
