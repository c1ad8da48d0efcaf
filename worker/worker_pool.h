/* worker_pool - the supervisor's children and the jobs it holds: the
 * prefork lane (worker_lane.h).
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
 * Out of memory while serving: a job that cannot be taken is returned; a
 * report that cannot be queued stays (a child's frame stays unread, a
 * report the supervisor makes stays with its job) and goes on a later
 * pass; a frame that cannot be queued to a child waits in the FIFO.
 */
#ifndef WORKER_POOL_H
#define WORKER_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "worker_config.h"
#include "worker_lane.h"
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
 * now (fork failure; retried later by the lane's tick). */
int worker_pool_spawn(worker_pool_t *self, int64_t mono_ms);

/* The pool as a lane; it owns every job type (put it last). */
worker_lane_t worker_pool_lane(worker_pool_t *self);

#endif
