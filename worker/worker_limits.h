/* worker_limits - helpers for the limits the worker puts on its children:
 * memory (--max-rss-per-child) and the soft timeout (--soft-timeout).
 *
 * Memory: a child reads its resident set size from /proc/PID/statm after
 * each job; above the limit it starts no more jobs and tells the
 * supervisor, which gives the jobs it holds to other children, then lets
 * it exit and replaces it (worker_child.c, worker_pool.c). The limit is on
 * the child process itself, where builtin and plugin handlers run and
 * where leaks pile up from job to job. An exec command is a process of its
 * own that exits with its attempt and takes its memory with it, so it is
 * not counted: recycling the child would not give any of it back.
 *
 * Soft timeout: the supervisor sends the child SIGUSR1 with the job's tag
 * (sigqueue), so a late signal cannot be taken for the next job's. The
 * child then raises the job's stop flag (builtin sleep and plugins look at
 * it) and passes SIGUSR1 on to each process it started that catches the
 * signal (worker_limits_tell_catchers).
 */
#ifndef WORKER_LIMITS_H
#define WORKER_LIMITS_H

#include <stdint.h>
#include <sys/types.h>

/* Default soft timeout: this percentage of the hard one. */
#define WORKER_SOFT_TIMEOUT_PCT 80

/* Parses a size in bytes: a whole number with an optional suffix K, M or
 * G, each 1024 times the one before ("512M", "2G"; "MB", "MiB" and lower
 * case also taken). Returns 0, or -1 if s is not such a size or does not
 * fit. */
int worker_limits_parse_size(const char *s, int64_t *bytes);

/* Parses a soft timeout: "0" (none), a duration in seconds ("30", "1.5",
 * "250ms"), or a percentage of the hard timeout ("80%", 1..99). Sets
 * exactly one of *ms and *pct (the other 0). Returns 0 or -1. */
int worker_limits_parse_soft(const char *s, int64_t *ms, int *pct);

/* When an attempt's soft timeout falls, in ms after it started, or 0 for
 * none. soft_ms (absolute) wins over soft_pct (of hard_ms); an absolute
 * one at or past the hard limit is none, and a percentage needs a hard
 * limit (hard_ms 0 = none). */
int64_t worker_limits_soft_ms(int64_t soft_ms, int soft_pct, int64_t hard_ms);

/* Resident set size of process pid in bytes, from /proc/PID/statm, or -1
 * if it cannot be read (the process is gone). */
int64_t worker_limits_rss(pid_t pid);

/* Sends sig to every process descended from the calling one that catches
 * sig (it installed a handler: a shell's `trap ... USR1`, Python's
 * signal.signal), found through /proc/PID/task/PID/children and the
 * SigCgt mask in /proc/PID/status. Processes that ignore sig or leave it
 * at its default action are left alone: the default action of SIGUSR1
 * ends a process, and a command that knows nothing of the soft timeout
 * must not die of it. Returns how many processes were sent sig.
 * Async-signal-safe (only open, read, close and kill). */
int worker_limits_tell_catchers(int sig);

#endif
