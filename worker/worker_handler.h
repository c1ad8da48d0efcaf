/* worker_handler - the one interface a pool child runs jobs through. The
 * builtin handlers (handler_builtin.c), exec commands (handler_exec.h) and
 * plugins (handler_plugin.h) each implement it; the child chooses one by
 * the job's type from the configuration (an exec handler, else a plugin,
 * else a builtin) and reports the outcome, whichever it was.
 *
 * A handler runs one attempt to completion in the calling child and
 * blocks it; the supervisor enforces the hard timeout by killing the
 * child's process group. It reports progress through a callback and
 * fills an outcome. It runs only in children, never in the supervisor.
 */
#ifndef WORKER_HANDLER_H
#define WORKER_HANDLER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_proto.h"

/* The attempt a handler runs. Views valid for the call. */
typedef struct {
    const char *worker; /* worker name (DROVER_WORKER) */
    dv_str_t id, type, queue, trace;
    dv_str_t payload; /* one msgpack value; ptr NULL = nil */
    int32_t attempt;
    /* Raised (non-zero) by the child when the attempt passes its soft
     * timeout. */
    volatile sig_atomic_t *stop;
} worker_handler_job_t;

/* Called for each progress report; msg is not NUL-terminated. */
typedef void (*worker_progress_fn)(void *arg, int64_t current, int64_t total,
                                   const char *msg, size_t msg_len);

/* What became of an attempt, for every kind of handler. */
typedef struct {
    bool ok;              /* succeeded: result holds the value */
    dv_str_t result;      /* one msgpack value: a view into owned, the
                              payload or static bytes */
    char *owned;          /* freed by worker_outcome_clear */
    dv_failure_t failure; /* !ok; failure.message points into text or
                              at static text; failure.details and
                              failure.stderr_tail into details and
                              stderr_tail (or are absent) */
    char text[DV_TEXT_MAX + 1];
    char details[DV_DETAILS_MAX + 1];
    char stderr_tail[DV_DETAILS_MAX + 1];
} worker_outcome_t;

/* An empty outcome ("none" failure, no result, no details). */
void worker_outcome_init(worker_outcome_t *out);

/* Frees what the outcome owns (the result goes; ok and the failure
 * stay readable). */
void worker_outcome_clear(worker_outcome_t *out);

/* Sets a failure whose message is the printf-style text (cut to
 * DV_TEXT_MAX bytes at a UTF-8 boundary). */
void worker_outcome_fail(worker_outcome_t *out, dv_category_t cat,
                         bool retryable, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sets the failure's details and stderr tail: the last DV_DETAILS_MAX
 * bytes at most of each (starting at a UTF-8 sequence), copied, with each
 * byte that is not valid UTF-8 and each NUL replaced by '?'. Empty (or
 * ptr NULL) leaves that field absent. */
void worker_outcome_details(worker_outcome_t *out, const char *details,
                            size_t dlen, const char *err, size_t elen);

/* Sets success with a result the outcome takes over (malloc'd, len
 * bytes). */
void worker_outcome_own(worker_outcome_t *out, char *result, size_t len);

typedef struct {
    const char *kind; /* "builtin", "exec", "plugin" */
    /* Runs one attempt; fills out (initialised by the caller). impl is
     * the handler's own object. */
    void (*run)(void *impl, const worker_handler_job_t *job,
                worker_progress_fn progress, void *arg, worker_outcome_t *out);
    /* May take time: the child sends STARTED before it runs, so the
     * supervisor knows the attempt began. */
    bool slow;
    /* Its own processes hear SIGTERM and get to end on their terms: the
     * child reports how the attempt ended, then leaves. */
    bool waits_on_term;
} worker_handler_ops_t;

/* A handler: its operations and the object they act on. */
typedef struct {
    const worker_handler_ops_t *ops;
    void *impl;
} worker_handler_t;

/* The builtin handler for a job type: noop, echo, sleep, fail
 * (docs/handlers.md), or for any other type one that fails it
 * "unknown_type". */
worker_handler_t handler_builtin_for(dv_str_t type);

#endif
