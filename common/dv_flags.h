/* dv_flags - command-line flags from a table.
 *
 * Every daemon (broker, worker, collector) describes its flags once, as a
 * table of dv_flag_t; one parser reads argv against it, so all of them take
 * "--flag value" and "--flag=value", check numbers, durations and choices the
 * same way, and word their errors the same way ("--heartbeat: '1x' is not a
 * duration in seconds"). Not reentrant: it keeps no state, but the values it
 * stores point into argv.
 */
#ifndef DV_FLAGS_H
#define DV_FLAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
} dv_flag_t;

/* Table entries, by kind (bounds: both 0 for none). */
#define DV_FLAG_STR(n, d)                                                      \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_STRING, .dest = (d)                       \
    }
#define DV_FLAG_DUR(n, d, lo, hi)                                              \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_DURATION, .dest = (d), .min = (lo),       \
        .max = (hi)                                                            \
    }
#define DV_FLAG_INTEGER(n, d, lo, hi)                                          \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_INT, .dest = (d), .min = (lo),            \
        .max = (hi)                                                            \
    }
#define DV_FLAG_NUMBER(n, d, lo, hi)                                           \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_DOUBLE, .dest = (d), .min = (lo),         \
        .max = (hi)                                                            \
    }
#define DV_FLAG_ON(n, d)                                                       \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_SWITCH, .dest = (d)                       \
    }
#define DV_FLAG_ONE_OF(n, d, c)                                                \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_CHOICE, .dest = (d), .choices = (c)       \
    }
#define DV_FLAG_CALL(n, f, c)                                                  \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_FN, .fn = (f), .ctx = (c)                 \
    }
#define DV_FLAG_CALL_TAG(n, f, c, t)                                           \
    {                                                                          \
        .name = (n), .kind = DV_FLAG_FN, .fn = (f), .ctx = (c), .tag = (t)     \
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

#endif
