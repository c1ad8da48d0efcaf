/* worker_child - a pool child: reads jobs from its socketpair with the
 * supervisor, runs them one at a time, writes reports back.
 *
 * A child is made with fork() and no exec. It never touches ZeroMQ (the
 * supervisor's context and its threads do not exist in the child) and
 * always leaves with _exit(), so nothing inherited gets flushed or torn
 * down twice. It makes itself a process-group leader, so the supervisor
 * can stop it and anything it started with kill(-pid, sig).
 *
 * Jobs arrive pipelined: the next one may already sit in the socket while
 * the current one runs. Before starting a job that was read earlier, the
 * child looks (without blocking) for a SKIP of it, which the supervisor
 * sends on drain or cancel; a skipped job is answered with SKIPPED.
 *
 * Plugins (handler_plugin.h) are loaded and initialised when the child
 * starts, and cleaned up when it leaves cleanly (its socket closed, or
 * max_jobs_per_child done).
 *
 * Soft timeout: SIGUSR1 from the supervisor, sent with sigqueue() and the
 * job's tag, raises the running job's stop flag (builtin sleep stops and
 * fails "timeout"; plugins see should_stop()) and is passed on to the
 * processes the child started that catch SIGUSR1 (worker_limits.h).
 *
 * Handlers (worker_handler.h), by job type: an exec handler, else a
 * plugin, else a builtin (handler_builtin.c). Out of memory: the child
 * leaves; a running job's failure (resource_exhausted) goes first if the
 * frame still fits in its buffer.
 */
#ifndef WORKER_CHILD_H
#define WORKER_CHILD_H

#include <sys/types.h>

#include "worker_config.h"

/* Runs in a freshly forked child: resets signals, joins its own process
 * group, keeps only stdio and fd (moved to descriptor 3), then serves jobs
 * until the supervisor closes the socket or max_jobs_per_child jobs are
 * done. name is the worker's name (for messages and DROVER_WORKER);
 * supervisor is the parent's pid (the child exits if it is already gone).
 * Never returns. */
_Noreturn void worker_child_main(int fd, const worker_config_t *cfg,
                                 const char *name, pid_t supervisor);

#endif
