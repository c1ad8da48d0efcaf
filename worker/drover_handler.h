/* drover_handler.h - plugin handlers for drover workers, ABI version 1.
 *
 * A plugin is a shared object (`cc -shared -fPIC`) that runs the jobs of
 * one or more types inside a worker's child processes:
 *
 *     drover worker --plugin upper=/opt/drover/upper.so
 *
 * This header is all a plugin needs: it depends on nothing else of
 * drover's, and a plugin links against nothing but what it uses itself.
 *
 * The plugin exports one function, drover_handler_entry(), which returns a
 * drover_handler_v1 that lives as long as the plugin is loaded (a static
 * const struct). The worker calls it in each child process:
 *
 *   - when the child starts: dlopen(path, RTLD_NOW | RTLD_LOCAL), then
 *     drover_handler_entry(), checks abi_version, then init() once for
 *     each job type the plugin is configured for, with that type's config;
 *   - for each job of that type: run(), one job at a time per process;
 *   - when the child leaves cleanly (worker shutdown, or the child is
 *     recycled after --max-jobs-per-child or --max-rss-per-child): cleanup()
 *     with the state init() made.
 *
 * A child is a process of its own, so a crash in a plugin takes down that
 * child only: the job fails with category "crashed" (retryable) and the
 * child is replaced, as with any handler. The process is single-threaded
 * unless the plugin starts threads itself. The plugin must leave the
 * dispositions of SIGTERM and SIGUSR1 alone: the worker uses them to stop
 * a job (SIGTERM, at the hard timeout or on cancel) and to tell it about
 * the soft timeout (SIGUSR1).
 *
 * Strings given to the plugin are NUL-terminated UTF-8 and are valid only
 * during the call they are given to. Strings the plugin gives are copied
 * before the call returns.
 */
#ifndef DROVER_HANDLER_H
#define DROVER_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this interface. A worker loads only plugins that were
 * built for its version; a plugin with another abi_version is refused,
 * and its jobs fail with category "handler", not retried. */
#define DROVER_HANDLER_ABI 1

/* The name of the function every plugin exports (see the bottom). */
#define DROVER_HANDLER_ENTRY_SYMBOL "drover_handler_entry"

/* What run() returns. Any other non-zero value is a failure too (not
 * retried, like an exec handler's exit status). */
#define DROVER_HANDLER_OK     0  /* succeeded: the result, or null */
#define DROVER_HANDLER_FAILED 1  /* failed; not worth retrying */
#define DROVER_HANDLER_RETRY  75 /* failed; retry later (EX_TEMPFAIL) */

/* Levels for drover_handler_io.log. */
#define DROVER_LOG_DEBUG 0
#define DROVER_LOG_INFO  1
#define DROVER_LOG_WARN  2
#define DROVER_LOG_ERROR 3

/* The job an attempt runs. */
typedef struct drover_job_info {
    const char *id;      /* job id (a UUID); the same on every attempt */
    int32_t attempt;     /* attempt number, from 1 */
    const char *type;    /* job type (what picked this plugin) */
    const char *queue;   /* queue name */
    const char *payload; /* the payload as JSON text; "null" if none */
    size_t payload_len;  /* strlen(payload) */
    const char *trace;   /* W3C traceparent, or NULL */
    const char *worker;  /* the worker's name */
} drover_job_info;

typedef struct drover_handler_io drover_handler_io;

/* What the worker offers run(). Call these only from the thread that
 * called run(), and only before run() returns; always through the io
 * pointer run() was given, as io->progress(io, ...). */
struct drover_handler_io {
    /* DROVER_HANDLER_ABI of the worker. Later versions only add members
     * at the end. */
    uint32_t abi_version;

    /* The worker's; do not touch. */
    void *worker_private;

    /* Reports progress: current of total steps (total 0: unknown) and a
     * short message (may be NULL). The worker forwards the latest to the
     * broker, at most once per loop pass, so calling this often is
     * cheap. Returns 0, or -1 if current or total is negative. */
    int (*progress)(drover_handler_io *io, int64_t current, int64_t total,
                    const char *message);

    /* Sets the job's result to the JSON value in json (any value: an
     * object, a string, a number...). A later call replaces it. Used only
     * if the attempt succeeds; without a call the result is null. Returns
     * 0, or -1 if json is not valid JSON or is larger than 1 MiB (the
     * result is then unchanged). */
    int (*set_result_json)(drover_handler_io *io, const char *json);

    /* Makes the attempt fail, whatever run() then returns. category is a
     * drover failure category ("handler", "upstream", "rate_limited",
     * "auth", "invalid_input", "timeout", "resource_exhausted", ...; NULL
     * or an unknown name gives "handler"); message says why (may be NULL;
     * cut to 4 KiB); retryable non-zero lets the broker try again, no
     * sooner than retry_after_s seconds (0: after the usual backoff). A
     * later call replaces an earlier one. Returns 0. */
    int (*fail)(drover_handler_io *io, const char *category,
                const char *message, int retryable, double retry_after_s);

    /* Non-zero once the attempt has passed its soft timeout: wrap up now
     * (save what you have, set a result or fail retryable, return). The
     * hard timeout still follows: SIGTERM to the process, then SIGKILL. */
    int (*should_stop)(drover_handler_io *io);

    /* Registers fn(arg) to be called once when the soft timeout passes,
     * for a plugin that blocks where it cannot poll should_stop(). fn runs
     * in a signal handler: it may only do async-signal-safe things (set a
     * volatile sig_atomic_t flag, write(2) to a pipe or eventfd...). If the
     * soft timeout has already passed, fn is called before on_stop
     * returns. The registration ends with run(). Returns 0. */
    int (*on_stop)(drover_handler_io *io, void (*fn)(void *arg), void *arg);

    /* Writes message to the worker's log at level (DROVER_LOG_*), as a
     * "worker.plugin_log" line with the job id and the job type. Never
     * log secrets or whole payloads. */
    void (*log)(drover_handler_io *io, int level, const char *message);
};

/* What the plugin implements. */
typedef struct drover_handler_v1 {
    /* DROVER_HANDLER_ABI as this header defines it when the plugin is
     * built. Must stay the first member in every version. */
    uint32_t abi_version;

    /* A short name for log lines (e.g. "upper"). */
    const char *name;

    /* Called once per job type per child process, before any job of that
     * type. config_json is the JSON text of the type's "config" in the
     * worker's config file, or "null". Stores what run() needs in *state
     * (it starts as NULL). Returns 0, or non-zero if the plugin cannot
     * work, having freed what it made (*state is then ignored): its jobs
     * fail with category "handler", retryable, and init() is tried again
     * before the next one. May be NULL. */
    int (*init)(const char *config_json, void **state);

    /* Runs one attempt of one job: DROVER_HANDLER_OK with the result set
     * by io->set_result_json (null if none), or a failure (see
     * DROVER_HANDLER_FAILED and _RETRY above, and io->fail, which gives
     * the category and the message). Blocking is fine: the child does
     * nothing else meanwhile. Required. */
    int (*run)(void *state, const drover_job_info *job, drover_handler_io *io);

    /* Frees the state init() made, when the child leaves cleanly. Not
     * called after a crash or a kill (a timeout, a cancel). May be
     * NULL. */
    void (*cleanup)(void *state);
} drover_handler_v1;

#if defined(__GNUC__) || defined(__clang__)
#define DROVER_HANDLER_EXPORT __attribute__((visibility("default")))
#else
#define DROVER_HANDLER_EXPORT
#endif

/* Defined by the plugin: returns its handler. Called once per process
 * after dlopen. */
DROVER_HANDLER_EXPORT const drover_handler_v1 *drover_handler_entry(void);

#ifdef __cplusplus
}
#endif

#endif
