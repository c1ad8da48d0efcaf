/* dv_flags - command-line flags from a table.
 *
 * Every command (the daemons and the operator commands) describes its flags
 * once, as a table of dv_flag_t; one parser reads argv against it, so all
 * of them take "--flag value" and "--flag=value", check numbers, durations
 * and choices the same way, and word their errors the same way
 * ("--heartbeat: '1x' is not a duration in seconds"). The same table holds
 * each flag's help, value name, default and what a shell completes it with,
 * from which --help, the man pages and the completion scripts are made
 * (cli/cli_cmd.c, cli/cli_doc.c). Not reentrant: it keeps no state, but the
 * values it stores point into argv.
 */
#ifndef DV_FLAGS_H
#define DV_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    DV_FLAG_END = 0, /* ends a table */
    DV_FLAG_STRING,  /* dest: const char ** (points into argv) */
    DV_FLAG_DURATION, /* dest: int64_t * in ms; "1.5", "250ms", "2m"; min/max in ms */
    DV_FLAG_INT,    /* dest: int *; whole number in [min, max] */
    DV_FLAG_DOUBLE, /* dest: double *; number in [min, max] */
    DV_FLAG_SWITCH, /* dest: bool *; takes no value, sets true */
    DV_FLAG_CHOICE, /* dest: int *; index of the value in choices */
    DV_FLAG_FN,     /* fn(ctx, value, err, es) does the work */
} dv_flag_kind_t;

/* What a shell completes a flag's value (or an argument) with. */
typedef enum {
    DV_COMPLETE_NONE = 0, /* nothing (free text); a CHOICE completes its
                           * choices */
    DV_COMPLETE_FILE,     /* a file name */
    DV_COMPLETE_DIR,      /* a directory name */
    DV_COMPLETE_COMMAND,  /* a drover command name */
} dv_complete_t;

typedef struct dv_flag {
    const char *name; /* without the dashes: "heartbeat" */
    dv_flag_kind_t kind;
    void *dest;                 /* where the value goes (see the kinds) */
    double min, max;            /* bounds; both 0 means none */
    const char *const *choices; /* CHOICE: NULL-terminated names */
    /* FN: parses and stores value; returns 0, or -1 with the whole reason
     * in err ("--name: ...": flag->name is at hand). */
    int (*fn)(const struct dv_flag *flag, const char *value, char *err,
              size_t err_size);
    void *ctx; /* FN: what it works on */
    int tag;   /* FN: a number it may switch on */
    /* Documentation and defaults (all optional). */
    const char *arg;        /* the value's name in help ("SECONDS"); NULL: from
                       * the kind */
    const char *help;       /* what it does: one sentence, no final period */
    const char *dflt;       /* default, as it would be given; dv_flags_reset()
                       * applies it */
    const char *env;        /* a variable whose value, when set and not empty,
                       * is the default instead */
    char alias;             /* a one-letter form: 'q' for -q (switches only) */
    dv_complete_t complete; /* what a shell completes the value with */
} dv_flag_t;

/* Table entries, by kind (bounds: both 0 for none). Each takes, after its
 * own arguments, designated initialisers for the documentation fields:
 *     DV_FLAG_INTEGER("limit", &o.limit, 1, 1000, .arg = "N",
 *                     .help = "at most N jobs", .dflt = "50") */
#define DV_FLAG_STR(n, d, ...)                                                 \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_STRING, .dest = (d), __VA_ARGS__          \
    }
#define DV_FLAG_DUR(n, d, lo, hi, ...)                                         \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_DURATION, .dest = (d), .min = (lo),       \
        .max = (hi), __VA_ARGS__                                               \
    }
#define DV_FLAG_INTEGER(n, d, lo, hi, ...)                                     \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_INT, .dest = (d), .min = (lo),            \
        .max = (hi), __VA_ARGS__                                               \
    }
#define DV_FLAG_NUMBER(n, d, lo, hi, ...)                                      \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_DOUBLE, .dest = (d), .min = (lo),         \
        .max = (hi), __VA_ARGS__                                               \
    }
#define DV_FLAG_ON(n, d, ...)                                                  \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_SWITCH, .dest = (d), __VA_ARGS__          \
    }
#define DV_FLAG_ONE_OF(n, d, c, ...)                                           \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_CHOICE, .dest = (d), .choices = (c),      \
        __VA_ARGS__                                                            \
    }
#define DV_FLAG_CALL(n, f, c, ...)                                             \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_FN, .fn = (f), .ctx = (c), __VA_ARGS__    \
    }
#define DV_FLAG_CALL_TAG(n, f, c, t, ...)                                      \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_FN, .fn = (f), .ctx = (c), .tag = (t),    \
        __VA_ARGS__                                                            \
    }
#define DV_FLAG_TABLE_END                                                      \
    {                                                                          \
        .name = NULL, .kind = DV_FLAG_END                                      \
    }

/* What dv_flags_parse() found. */
typedef enum {
    DV_FLAGS_OK = 0,    /* all flags parsed */
    DV_FLAGS_HELP = 1,  /* -h or --help */
    DV_FLAGS_ERROR = -1 /* a reason is in err */
} dv_flags_rc_t;

/* Parses argv[1..argc-1] against the tables (an array of ntables tables,
 * each ended by a DV_FLAG_END entry; a later table's flag of the same name is
 * never reached). -h and --help need no entry. With allow_args, the first
 * argument that is not a flag (or everything after "--") ends the flags and
 * *first_arg is its index (argc if none); without, such an argument is an
 * error. Returns DV_FLAGS_OK, DV_FLAGS_HELP, or DV_FLAGS_ERROR with a
 * one-line reason in err. Values already stored stay stored on error. */
dv_flags_rc_t dv_flags_parse(const dv_flag_t *const *tables, int ntables,
                             int argc, char **argv, bool allow_args,
                             int *first_arg, char *err, size_t err_size);

/* As dv_flags_parse; on an error about a known flag (a bad or missing
 * value), *bad is that flag (else NULL). */
dv_flags_rc_t dv_flags_parse_ex(const dv_flag_t *const *tables, int ntables,
                                int argc, char **argv, bool allow_args,
                                int *first_arg, const dv_flag_t **bad,
                                char *err, size_t err_size);

/* Sets every flag of the tables to its default (the value of its env
 * variable when set and not empty, else dflt; none: NULL, 0, false), as if
 * given first. FN flags are left alone. Returns 0, or -1 with a reason
 * (a default from the environment that does not parse: "DROVER_X: ..."). */
int dv_flags_reset(const dv_flag_t *const *tables, int ntables, char *err,
                   size_t err_size);

/* The value's name for help ("N", "SECONDS", "a|b|c"); "" for a switch. */
const char *dv_flag_arg(const dv_flag_t *f, char *buf, size_t size);

/* The flag named name (without dashes; n bytes) in the tables, or NULL. */
const dv_flag_t *dv_flags_find(const dv_flag_t *const *tables, int ntables,
                               const char *name, size_t n);

/* Help is wrapped to this many columns; a flag's text starts at the
 * second. */
#define DV_FLAGS_WIDTH    79
#define DV_FLAGS_HELP_COL 26

/* Writes text wrapped to width: the first line goes on from column col
 * (already printed), the next ones start at indent. Breaks at spaces; a
 * word longer than a line goes on a line of its own, whole; a newline in
 * text is kept. Ends with a newline. */
void dv_flags_wrap(FILE *out, const char *text, int col, int indent, int width);

/* The flag's annotation: its range, variable and default ("1..1000;
 * $DROVER_X; else 50"), "" if none. */
const char *dv_flag_note(const dv_flag_t *f, char *buf, size_t size);

/* The flag's help line ("  --limit N   at most N jobs (1..1000; default
 * 50)"), wrapped to width. */
void dv_flag_help(const dv_flag_t *f, FILE *out, int width);

/* Every flag's help line, table by table. */
void dv_flags_help(const dv_flag_t *const *tables, int ntables, FILE *out);

/* Edit distance of a (la bytes) and b, for "did you mean" (names up to 40
 * bytes; longer: 99). */
size_t dv_flags_distance(const char *a, size_t la, const char *b);

/* For an "unknown option '--NAME'" reason from dv_flags_parse: the flag of
 * the tables closest to NAME (at most 2 edits), or NULL. */
const dv_flag_t *dv_flags_suggest(const dv_flag_t *const *tables, int ntables,
                                  const char *err);

#endif
