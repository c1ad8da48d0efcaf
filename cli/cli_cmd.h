/* cli_cmd - drover's commands: one table, one parser, one error style.
 *
 * Every command is a cli_cmd_t: its name, a one-line summary, its
 * positional arguments, what it does, its own flags (a dv_flags table with
 * help, defaults and completion hints) and the shared flags it takes
 * (--json, --broker, --collector, --wide, --yes, the CurveZMQ files).
 * cli_main() finds the command, sets every flag to its default, parses
 * argv against the tables and calls run with the positional arguments.
 * --help, `drover help CMD`, the man pages and the shell completion are
 * made from the same table (cli_doc.c), so none of them can disagree with
 * the parser.
 *
 * Output: text for people, or with --json one JSON document on stdout
 * (docs/json.md). Errors go to stderr through cli_fail() / cli_usage()
 * only: "drover CMD: what went wrong", or under --json
 * {"error": {"code": "not_found", "message": "...", "exit": 4}}.
 *
 *     static struct { const char *state; int limit; } s_o;
 *     static const dv_flag_t s_flags[] = {
 *         DV_FLAG_INTEGER("limit", &s_o.limit, 1, 1000, .arg = "N",
 *                         .help = "at most N jobs", .dflt = "50"),
 *         DV_FLAG_TABLE_END,
 *     };
 *     const cli_cmd_t cli_jobs = {
 *         .name = "jobs", .summary = "...", .flags = s_flags,
 *         .shared = CLI_JSON | CLI_COLLECTOR, .run = s_jobs,
 *     };
 */
#ifndef CLI_CMD_H
#define CLI_CMD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "dv_flags.h"

/* Exit codes, the same for every command (drover --help, docs). `drover
 * health` keeps its own (0 healthy, 1 degraded, 2 down, 3 collector
 * unreachable): probes depend on them. */
typedef enum {
    CLI_OK = 0,
    CLI_FAILED = 1,      /* refused or failed; or a job waited for did not
                          * succeed */
    CLI_USAGE = 2,       /* bad flags or arguments */
    CLI_UNREACHABLE = 3, /* the broker or collector did not answer */
    CLI_NOT_FOUND = 4,   /* no such job, queue, worker, batch or key */
    CLI_DENIED = 5,      /* not allowed (the certificate's role) */
    CLI_TIMEOUT = 6,     /* --timeout passed first */
} cli_exit_t;

/* Shared flags a command takes (cli_cmd_t.shared). */
enum {
    CLI_JSON = 1u << 0,      /* --json */
    CLI_BROKER = 1u << 1,    /* --broker EP (+ CurveZMQ: the broker's) */
    CLI_COLLECTOR = 1u << 2, /* --collector EP (+ CurveZMQ) */
    CLI_WIDE = 1u << 3,      /* --wide: no column is cut */
    CLI_YES = 1u << 4,       /* --yes: no confirmation asked */
    CLI_DAEMON = 1u << 5,    /* --log-level, --log-format (dv_daemon_flags):
                              * a daemon, whose own function parses them */
};

typedef struct cli cli_t;

typedef struct cli_cmd {
    const char *name;
    const char *summary;         /* one line, for `drover --help` */
    const char *args;            /* the positional part of the usage line:
                          * "JOB_ID", "[QUEUE]", "TYPE [PAYLOAD]"; NULL:
                          * none */
    int min_args, max_args;      /* positional arguments; max -1: any */
    dv_complete_t args_complete; /* what a shell completes them with */
    const char *about;      /* what it does: paragraphs split by "\n\n", each
                           * wrapped for the terminal and man page */
    const char *examples;   /* lines of examples, or NULL */
    const char *notes;      /* paragraphs after the options (durations,
                             * signals), or NULL */
    const dv_flag_t *flags; /* its own flags, or NULL */
    unsigned shared;        /* CLI_* */
    const char *exits;      /* its own exit codes, when the common table does
                        * not say it all (health), or NULL */
    /* Runs the command with its positional arguments (argv[0..argc)). */
    int (*run)(cli_t *c, int argc, char **argv);
    /* A command that parses its own argv: called with argv[0] its name.
     * With flags too (the daemons: the same static table it parses), its
     * help, man page and completion are made from them. */
    int (*own)(int argc, char **argv);
} cli_cmd_t;

/* What every command gets: the shared flags, parsed. */
struct cli {
    const cli_cmd_t *cmd;
    bool json;
    bool wide;
    bool yes;
    const char *broker;    /* --broker or DROVER_BROKER; NULL: libdrover's
                            * default */
    const char *collector; /* --collector, DROVER_COLLECTOR or the
                            * default */
};

/* The commands, in the order `drover --help` lists them (cli/main.c). */
extern const cli_cmd_t *const cli_commands[];
extern const size_t cli_ncommands;

/* The command named name, or NULL. */
const cli_cmd_t *cli_find(const char *name);

/* drover's main: global options, the command, its flags, run. */
int cli_main(int argc, char **argv);

/* Prints the error on stderr in the one style (JSON under --json) and
 * returns code. what names it for scripts ("not_found", "unreachable",
 * "usage", ...); NULL: from code. c may be NULL (before a command). */
int cli_fail(const cli_t *c, cli_exit_t code, const char *what, const char *fmt,
             ...) __attribute__((format(printf, 4, 5)));

/* A usage error: the reason, the command's usage line, the help line of
 * flag (if not NULL) and where the rest is; returns CLI_USAGE. */
int cli_usage(const cli_t *c, const dv_flag_t *flag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 0 if text is a job id; else a usage error saying what one looks like
 * (returns CLI_USAGE): the same answer from every command that takes one. */
int cli_job_id(const cli_t *c, const char *text);

/* The exit code for a libdrover error rc (DROVER_E*), with the broker's
 * code text (drover_last_code) when it gave one: not_found 4,
 * unauthorized/forbidden 5, unreachable/timeout 3, else 1. */
cli_exit_t cli_exit_of(int rc, const char *code);

/* Prints j on stdout as the command's --json output: indented, keys in
 * their order, reals at 10 significant digits (41.017, not
 * 41.017000000000003). */
void cli_print_json(const json_t *j);

/* --help of cmd (or drover's own with cmd NULL). */
void cli_help(const cli_cmd_t *cmd, FILE *out);

/* "usage: drover CMD [OPTIONS] ARGS" and a newline. */
void cli_usage_line(const cli_cmd_t *cmd, FILE *out);

/* The flag tables cmd is parsed against: its own, then the shared ones it
 * takes, then help. Returns how many (at most 8). */
int cli_tables(const cli_cmd_t *cmd, const dv_flag_t *tables[8]);

/* The version ("0.1.0"). */
const char *cli_version(void);

/* `drover help [CMD]` and `drover version`. */
extern const cli_cmd_t cli_help_cmd;
extern const cli_cmd_t cli_version_cmd;

/* cli_doc.c: `drover completion bash|zsh` and `drover man [CMD|--dir D]`. */
extern const cli_cmd_t cli_completion;
extern const cli_cmd_t cli_man;

#endif
