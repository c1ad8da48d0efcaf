/* handler_plugin - runs jobs with a plugin (a shared object implementing
 * drover_handler.h), in a worker child.
 *
 * Each child loads its plugins itself when it starts, so plugin code never
 * runs in the supervisor, and a crash in it takes down one child. One
 * handler_plugin_t is one configured job type: two types served by the
 * same file share the loaded object (dlopen counts references) but get an
 * init() and a state each.
 *
 * What can go wrong, and what the jobs of that type then get:
 *   - the file cannot be loaded, lacks drover_handler_entry, returns NULL
 *     from it, has another abi_version or no run(): every job fails with
 *     category "handler", not retryable, and the message says which (with
 *     dlerror()'s text). Nothing here will fix itself;
 *   - init() returned non-zero: the job fails "handler", retryable; init()
 *     is tried again before the next job of that type.
 *
 * Not thread-safe: a child runs one job at a time.
 */
#ifndef HANDLER_PLUGIN_H
#define HANDLER_PLUGIN_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_proto.h"
#include "worker_handler.h"

typedef struct handler_plugin_t handler_plugin_t;

/* Loads the plugin at path for jobs of type and calls its init() with
 * config_json (JSON text; NULL is passed on as "null"). Returns NULL only
 * when out of memory: a plugin that cannot be loaded or initialised is
 * still returned, holding the reason (handler_plugin_error), so that its
 * jobs fail with that reason. */
handler_plugin_t *handler_plugin_new(const char *type, const char *path,
                                     const char *config_json);

/* Calls cleanup() if init() succeeded, then dlclose()s. NULL-safe; sets
 * *self_p to NULL. */
void handler_plugin_destroy(handler_plugin_t **self_p);

/* Why the plugin cannot run jobs (a load, symbol, version or init
 * failure), or NULL if it can. Valid until the next call on self. */
const char *handler_plugin_error(const handler_plugin_t *self);

/* The job type it was made for. */
const char *handler_plugin_type(const handler_plugin_t *self);

/* Runs one attempt to completion (blocks the calling child; the
 * supervisor enforces the hard timeout by killing the process group).
 * progress (may be NULL) gets each progress report. Fills out, which the
 * caller clears with worker_outcome_clear(). */
void handler_plugin_run(handler_plugin_t *self, const worker_handler_job_t *job,
                        worker_progress_fn progress, void *arg,
                        worker_outcome_t *out);

/* The plugin as a handler (worker_handler.h): slow; should_stop() reads
 * the job's stop flag. self must outlive the handler. */
worker_handler_t handler_plugin_handler(handler_plugin_t *self);

/* Async-signal-safe: calls the callback the running job registered with
 * on_stop(), once. The child calls it from its SIGUSR1 handler after it
 * set the job's stop flag. Does nothing if no job runs or none was
 * registered. */
void handler_plugin_soft_stop(void);

#endif
