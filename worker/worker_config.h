/* worker_config - the worker's settings: defaults, an optional JSON config
 * file, the environment, then command-line flags, each overriding the one
 * before. (A file named with --config is as explicit as a flag, so it beats
 * the ambient DROVER_WORKER_ENDPOINT; flags beat both.)
 *
 * Pure: no sockets, no processes; parsing errors come back as text.
 */
#ifndef WORKER_CONFIG_H
#define WORKER_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "dv_flags.h"

#define WORKER_DEFAULT_ENDPOINT "tcp://127.0.0.1:7701"
#define WORKER_CONCURRENCY_MAX  1024

/* One exec handler: jobs of type run `/bin/sh -c command`. */
typedef struct {
    char *type;
    char *command;
} worker_exec_handler_t;

/* One plugin handler: jobs of type run in the shared object at path. */
typedef struct {
    char *type;
    char *path;
    char *config; /* JSON text for its init(); NULL = null */
} worker_plugin_t;

/* The most an adaptive prefetch reaches (or 4 x concurrency if more). */
#define WORKER_PREFETCH_MAX 1000

typedef struct {
    char **endpoints; /* broker endpoints, tried in turn; NULL-ended */
    int nendpoints;
    char **queues; /* queues served; NULL-ended */
    int nqueues;
    int concurrency;        /* child processes */
    int prefetch;           /* jobs held beyond concurrency; -1 = default, which
                      * adapts (then the most it may reach after load) */
    bool prefetch_adaptive; /* no --prefetch: it follows the job rate */
    char *name;             /* worker name; NULL = host:pid */
    worker_exec_handler_t *handlers; /* exec handlers by job type */
    int nhandlers;
    int64_t timeout_ms;         /* default per-attempt limit; 0 = none */
    int64_t kill_grace_ms;      /* SIGTERM -> SIGKILL delay */
    int64_t grace_ms;           /* shutdown: time for running jobs to end */
    int64_t max_jobs_per_child; /* recycle a child after this many; 0 = never */
    int64_t max_rss_per_child;  /* recycle a child above this many bytes;
                                  0 = never */
    int64_t soft_timeout_ms;    /* tell the handler this long into a job... */
    int soft_timeout_pct;       /* ...or at this % of its hard limit; 0 = no */
    worker_plugin_t *plugins;   /* plugin handlers by job type */
    int nplugins;
    struct http_config_t *http; /* http handlers (http_config.h); NULL = none */
    int http_concurrency;       /* requests the http lane runs at once */
    int64_t heartbeat_ms;       /* heartbeat until the broker says otherwise */
    char *curve_secret;         /* CurveZMQ: our secret certificate's path */
    char *curve_server;         /* ... and the broker's public certificate's */
    char *health_file; /* touched at every heartbeat sent (liveness probes:
                        * drover health --self worker); NULL = none */
    int log_level;     /* dv_level_t */
    int log_text;      /* 1 = text lines, 0 = JSON lines */
} worker_config_t;

/* Fills cfg with the defaults (concurrency = online CPUs). */
void worker_config_defaults(worker_config_t *cfg);

/* Frees what cfg owns and zeroes it. */
void worker_config_clear(worker_config_t *cfg);

/* Parses argv (argv[0] is the command name, skipped): defaults, then the
 * --config file, then the environment, then the flags. Returns 0 on
 * success, 1 if --help was asked (nothing else done), -1 on a bad flag,
 * value or file, with a one-line reason in err. cfg must hold defaults. */
int worker_config_parse(worker_config_t *cfg, int argc, char **argv, char *err,
                        size_t err_size);

/* As worker_config_parse; on an error about a flag given (a bad or missing
 * value), *bad is that flag's entry in worker_flags or dv_daemon_flags
 * (else NULL), for the usage message. */
int worker_config_parse_ex(worker_config_t *cfg, int argc, char **argv,
                           const dv_flag_t **bad, char *err, size_t err_size);

/* Applies a JSON config document (text of len bytes; source names it in
 * errors, e.g. the path). Returns 0, or -1 with a reason in err that gives
 * the line and column of a syntax error. Unknown keys are errors, so a
 * misspelt setting does not go unnoticed. */
int worker_config_load_json(worker_config_t *cfg, const char *text, size_t len,
                            const char *source, char *err, size_t err_size);

/* Adds or replaces the exec handler for type. Returns 0 or -1. */
int worker_config_set_handler(worker_config_t *cfg, const char *type,
                              const char *command);

/* Adds or replaces the plugin handler for type (path to the shared
 * object, config JSON text or NULL), replacing an exec handler of that
 * type too; worker_config_set_handler likewise replaces a plugin. The
 * later setting wins. Returns 0 or -1 (out of memory). */
int worker_config_set_plugin(worker_config_t *cfg, const char *type,
                             const char *path, const char *config);

/* The plugin for a job type, or NULL if none is configured. */
const worker_plugin_t *worker_config_plugin(const worker_config_t *cfg,
                                            const char *type, size_t type_len);

/* The exec command for a job type, or NULL if none is configured. */
const char *worker_config_handler(const worker_config_t *cfg, const char *type,
                                  size_t type_len);

/* Prints the --help text, made from worker_flags (worker.h). */
void worker_config_usage(FILE *out);

#endif
