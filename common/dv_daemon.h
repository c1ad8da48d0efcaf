/* dv_daemon - what the broker, worker and collector daemons share: their
 * flags (own table plus --log-level and --log-format), their help made from
 * the tables, the wording and exit code of usage errors, logging set-up and
 * signals.
 *
 *     static const dv_flag_t s_flags[] = { ...with .help, .arg, .dflt... };
 *     dv_daemon_t d = { .name = "broker", .about = s_about,
 *                       .notes = s_notes, .flags = s_flags };
 *     int rc = dv_daemon_parse(&d, argc, argv);
 *     if (rc >= 0)
 *         return rc;                  // --help (0) or a usage error (2)
 *     ...cross-flag checks: return dv_daemon_fail(&d, "...");
 *     dv_daemon_start(&d, &stop, &dump);  // logging, SIGINT/TERM/USR1/PIPE
 *
 * The help (`drover broker --help`) is the one `drover help broker` prints
 * from the command table (cli/cli_cmd.c: the daemon's entry carries the
 * same flags, about, notes and exits): the usage line, the about text, every
 * flag's help line (dv_flags_help), the notes and the exit status.
 *
 * One daemon per process: the signal handlers write to the flags given to
 * the last dv_daemon_start().
 */
#ifndef DV_DAEMON_H
#define DV_DAEMON_H

#include <stdio.h>

#include "dv_flags.h"

typedef struct {
    const char *name;       /* "broker": messages say "drover broker: ..." */
    const char *about;      /* what it does: paragraphs split by "\n\n" */
    const char *notes;      /* paragraphs after the options (durations,
                             * signals), or NULL */
    const char *exits;      /* its exit status, or NULL: dv_daemon_exits */
    const dv_flag_t *flags; /* the daemon's own flags: a static table, each
                             * with its help, value name and default */
    int log_level;          /* dv_level_t; DV_INFO unless --log-level */
    int log_text;           /* 1 after --log-format text */
} dv_daemon_t;

/* The flags every daemon takes after its own: --log-level and
 * --log-format (for the help, the man pages and the completion; the values
 * parsed go to the dv_daemon_t). */
extern const dv_flag_t dv_daemon_flags[];

/* The exit status of a daemon that says no other: 0 after a clean stop, 1
 * when it cannot start or fails, 2 on a usage error. */
extern const char dv_daemon_exits[];

/* Sets the daemon's flags to their defaults (dv_flags_reset: .dflt, or the
 * .env variable when set; and an FN flag's .dflt or .env through its fn),
 * then parses argv[1..] (no positional arguments). Returns -1 to go on; 0
 * after printing the help for --help; 2 after printing a usage error on
 * stderr. Sets d->log_level and d->log_text (their defaults first). */
int dv_daemon_parse(dv_daemon_t *d, int argc, char **argv);

/* Prints the daemon's --help on out: "usage: drover NAME [OPTIONS]", the
 * about text, every flag (its own, the log flags, -h), the notes and the
 * exit status, wrapped to DV_FLAGS_WIDTH. */
void dv_daemon_help(const dv_daemon_t *d, FILE *out);

/* Fills out[0..2] with dv_daemon_flags, --log-level storing a dv_level_t
 * into *level and --log-format json 0, text 1 into *text: for a daemon that
 * parses its flags itself. */
void dv_daemon_log_flags(dv_flag_t out[3], int *level, int *text);

/* A usage error, in the style of every drover command: "drover NAME:
 * <reason>", the usage line, flag's help line (if not NULL; for an unknown
 * option, the closest flag's, with "did you mean --X?") and "(drover NAME
 * --help: every option)" on stderr. Returns 2. */
int dv_daemon_usage(const dv_daemon_t *d, const dv_flag_t *flag,
                    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A usage error found after parsing (flags that do not go together, a file
 * that cannot be read): as dv_daemon_usage(), with the help line of the
 * flag the reason starts with ("--worker-timeout must be ..."), if any.
 * Returns 2. */
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
