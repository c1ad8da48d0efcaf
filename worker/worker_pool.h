/* worker_pool - the supervisor's children and the jobs it holds.
 *
 * Jobs from the broker wait in a FIFO and go to children two deep: a child
 * runs one job and already holds the next in its socket, so it never waits
 * for the supervisor between jobs. Every read and write on a child's socket
 * is non-blocking and buffered; the supervisor never waits on a child.
 *
 * What becomes of a job (reports go to the outbox):
 *   - the child reports started / progress / succeeded / failed;
 *   - past its timeout: SIGTERM to the child's process group, SIGKILL after
 *     kill_grace, failed "timeout" (retryable), child respawned;
 *   - the child dies by a signal we did not send, or exits: failed
 *     "crashed" (retryable); a job it held but had not started goes to
 *     another child (at most twice, then it fails "crashed" too);
 *   - cancel (KILL from the broker): a running job is stopped like a
 *     timeout and fails "cancelled" (not retryable); a job not started is
 *     dropped and fails "cancelled";
 *   - drain: jobs not started are returned (no attempt counted); running
 *     ones finish, or are stopped at the end of the grace period and fail
 *     "timeout";
 *   - soft timeout (--soft-timeout, by default 80% of the timeout): the
 *     child is sent SIGUSR1 with the job's tag, once; the job goes on, and
 *     the hard timeout above still applies;
 *   - a child whose resident memory is above max_rss_per_child after a job
 *     says so (RECYCLE) and starts no more jobs: the ones it holds are
 *     skipped and go to other children, and once it holds none its socket
 *     is closed; it exits and is replaced.
 * Progress is coalesced: only the latest per job per pass is reported.
 *
 * Times are passed in (monotonic ms for deadlines, epoch ms for report
 * timestamps) so one loop pass reads the clock once.
 */
#ifndef WORKER_POOL_H
#define WORKER_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <zmq.h>

#include "dv_proto.h"
#include "worker_config.h"
#include "worker_outbox.h"

typedef struct worker_pool_t worker_pool_t;

/* Makes a pool for cfg->concurrency children (none started yet). cfg and
 * name must outlive the pool; reports go to outbox. NULL if out of
 * memory. */
worker_pool_t *worker_pool_new(const worker_config_t *cfg, const char *name,
                               worker_outbox_t *outbox);

/* Kills (SIGKILL) and reaps any children left, frees the pool. */
void worker_pool_destroy(worker_pool_t **self_p);

/* Forks every missing child. Returns the number that could not be started
 * now (fork failure; retried later by worker_pool_tick). */
int worker_pool_spawn(worker_pool_t *self, int64_t mono_ms);

/* Sets the clock for this loop pass. */
void worker_pool_set_time(worker_pool_t *self, int64_t mono_ms,
                          int64_t wall_ms);

/* Appends a poll item per child socket to items (at most max); returns how
 * many. Call worker_pool_io() with the same items after zmq_poll. */
int worker_pool_poll_items(worker_pool_t *self, zmq_pollitem_t *items,
                           int max);
void worker_pool_io(worker_pool_t *self, const zmq_pollitem_t *items, int n);

/* Reaps children that exited (after SIGCHLD): reads their last reports,
 * settles their jobs, respawns them unless draining. */
void worker_pool_reap(worker_pool_t *self);

/* Takes a job from the broker. Returns 0 if taken, 1 if it is already
 * held (a duplicate delivery: only a newer attempt number is adopted), -1
 * if refused (id too long; logged). While draining the job is returned at
 * once (returns 0). */
int worker_pool_add(worker_pool_t *self, const dv_job_t *job);

/* KILL from the broker: stop or drop that job, report "cancelled".
 * Unknown ids are ignored (the job may have just ended). */
void worker_pool_cancel(worker_pool_t *self, dv_str_t id, dv_str_t reason);

/* Sends waiting jobs to children that have room. */
void worker_pool_dispatch(worker_pool_t *self);

/* Writes buffered frames to children (non-blocking). */
void worker_pool_flush(worker_pool_t *self);

/* Adds the latest progress of each job that reported some this pass to
 * the outbox. */
void worker_pool_flush_progress(worker_pool_t *self);

/* Timers: job timeouts, SIGKILL escalation, respawn retries. */
void worker_pool_tick(worker_pool_t *self);

/* Earliest monotonic ms at which worker_pool_tick has work, or INT64_MAX. */
int64_t worker_pool_next_deadline(const worker_pool_t *self);

/* Starts draining: stop dispatching, return jobs not started, ask
 * children holding unstarted jobs to skip them, let idle children exit. */
void worker_pool_drain(worker_pool_t *self);

/* End of the grace period: stop every running job (SIGTERM, then SIGKILL
 * after kill_grace); each fails "timeout". */
void worker_pool_stop_running(worker_pool_t *self);

/* Immediate stop: SIGKILL every child's process group and reap them,
 * waiting at most wait_ms. No reports. */
void worker_pool_kill_all(worker_pool_t *self, int64_t wait_ms);

/* Jobs held (waiting, queued in a child or running). */
size_t worker_pool_held_count(const worker_pool_t *self);

/* Fills held (capacity max) with the jobs held, for HELLO. The id views
 * stay valid until the pool next changes. Returns the count. */
size_t worker_pool_held(const worker_pool_t *self, dv_held_t *held,
                        size_t max);

/* Children running a job / alive and not running one / alive at all. */
int worker_pool_busy(const worker_pool_t *self);
int worker_pool_idle(const worker_pool_t *self);
int worker_pool_alive(const worker_pool_t *self);

/* Writes the children and jobs to the log (SIGUSR1). */
void worker_pool_dump(const worker_pool_t *self);

/* One live child, for the heartbeat's metrics. */
typedef struct {
    pid_t pid;
    int64_t rss;   /* resident memory in bytes, read now; -1 if unknown */
    int64_t jobs;  /* jobs given to it since it started */
} worker_pool_child_stat_t;

/* Fills stats (capacity max) with the live children, reading each one's
 * resident memory from /proc. Returns the count. */
size_t worker_pool_child_stats(const worker_pool_t *self,
                               worker_pool_child_stat_t *stats, size_t max);

#endif
