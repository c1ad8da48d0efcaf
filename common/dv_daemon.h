/* dv_daemon - what the broker, worker and collector daemons share: their
 * flags (own table plus --log-level and --log-format), the wording and exit
 * code of usage errors, logging set-up and signals.
 *
 *     dv_daemon_t d = { .name = "broker", .usage = s_usage, .flags = flags };
 *     int rc = dv_daemon_parse(&d, argc, argv);
 *     if (rc >= 0)
 *         return rc;                  // --help (0) or a usage error (2)
 *     ...cross-flag checks: return dv_daemon_fail(&d, "...");
 *     dv_daemon_start(&d, &stop, &dump);  // logging, SIGINT/TERM/USR1/PIPE
 *
 * One daemon per process: the signal handlers write to the flags given to
 * the last dv_daemon_start().
 */
#ifndef DV_DAEMON_H
#define DV_DAEMON_H

#include <stdio.h>

#include "dv_flags.h"

typedef struct {
    const char *name;         /* "broker": messages say "drover broker: ..." */
    void (*usage)(FILE *out); /* prints the --help text */
    const dv_flag_t *flags;   /* the daemon's own flags */
    int log_level;            /* dv_level_t; DV_INFO unless --log-level */
    int log_text;             /* 1 after --log-format text */
} dv_daemon_t;

/* Parses argv[1..] (no positional arguments). Returns -1 to go on; 0 after
 * printing the usage for --help; 2 after printing a usage error on stderr.
 * Sets d->log_level and d->log_text (their defaults first). */
int dv_daemon_parse(dv_daemon_t *d, int argc, char **argv);

/* Fills out[0..2] with the flags every daemon takes, --log-level (a
 * dv_level_t into *level) and --log-format (json 0, text 1 into *text), and
 * the end of a table: for a daemon that parses its flags itself. */
void dv_daemon_log_flags(dv_flag_t out[3], int *level, int *text);

/* Prints "drover NAME: <reason> (see --help)" on stderr; returns 2, the exit
 * code of a usage error. */
int dv_daemon_fail(const dv_daemon_t *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Starts logging (component d->name) and installs the signal handlers:
 * SIGINT and SIGTERM set *stop, SIGUSR1 sets *dump (if dump is not NULL),
 * SIGPIPE is ignored. */
void dv_daemon_start(const dv_daemon_t *d, volatile int *stop,
                     volatile int *dump);

/* After dv_daemon_start(): SIGHUP sets *reload (without it, SIGHUP ends
 * the process). The loop sees it at its next wake-up (a blocking poll
 * returns EINTR). */
void dv_daemon_on_reload(volatile int *reload);

/* Starts logging like dv_daemon_start(), ignores SIGPIPE, blocks SIGCHLD,
 * SIGTERM, SIGINT, SIGQUIT, SIGUSR1 and SIGHUP (call it before any thread or child
 * exists, so they inherit the mask) and returns a non-blocking signalfd that
 * reads them, or -1. For a daemon whose loop polls file descriptors. */
int dv_daemon_start_signalfd(const dv_daemon_t *d);

#endif
