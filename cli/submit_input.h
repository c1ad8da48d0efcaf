/* submit_input - the jobs of `drover submit --file`: the whole file is read
 * and every line checked before anything is sent (one bad line anywhere
 * and nothing is submitted, so a fixed file can simply be submitted
 * again).
 *
 * Checking is all the command does before its first job goes out, and the
 * broker and the workers wait for it: a file of many lines is parsed in
 * two halves at once, the second on a thread of its own, and the halves
 * joined in line order. References to earlier lines ("after": [3]) are
 * checked once both halves are in, so they may cross the middle.
 */
#ifndef SUBMIT_INPUT_H
#define SUBMIT_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "drover.h"
#include "jobline.h"

/* The jobs to submit, in input order, and what became of each. */
typedef struct {
    drover_job_t *jobs;          /* parsed jobs */
    unsigned *lines;             /* line number of each (1-based), 0 = flags */
    size_t n, cap;               /* jobs, room */
    char (*ids)[DROVER_ID_SIZE]; /* id per job once sent; "" if not accepted */
    bool *dup;                   /* per job: its key was known */
    jobline_arena_t *more;       /* the second half's strings, or NULL */
} submit_input_t;

/* Bad lines listed one by one; the others are only counted. */
#define SUBMIT_BAD_LISTED 50

/* The bad lines of a file. */
typedef struct {
    size_t count; /* bad lines in all */
    size_t refs;  /* of which: references to no earlier line with a job */
    size_t n;     /* listed: the first SUBMIT_BAD_LISTED, in line order */
    struct {
        unsigned line;
        char why[256];
    } list[SUBMIT_BAD_LISTED];
} submit_bads_t;

typedef enum {
    SUBMIT_INPUT_OK = 0,       /* read; bads->count says if lines were bad */
    SUBMIT_INPUT_NOMEM = -1,   /* out of memory at line *line */
    SUBMIT_INPUT_NO_OPEN = -2, /* the file cannot be opened (errno) */
    SUBMIT_INPUT_NO_READ = -3, /* it cannot be read (errno) */
} submit_input_rc_t;

/* Reads path ("-": stdin) and parses every line against *defaults, into
 * *in (zeroed by the caller) with strings in arena (and in->more), and the
 * bad lines into *bads (zeroed by the caller). A line with a bad reference
 * is a bad line, and is not among the jobs. Returns a submit_input_rc_t;
 * *line is the line where memory ran out. */
int submit_input_read(const char *path, const drover_job_t *defaults,
                      jobline_arena_t *arena, submit_input_t *in,
                      submit_bads_t *bads, unsigned *line);

/* Adds job, from line (0: the command line), to in. Returns 0, or -1 when
 * out of memory. */
int submit_input_add(submit_input_t *in, const drover_job_t *job,
                     unsigned line);

/* All of f, in a buffer the caller frees, its length in *len (not
 * NUL-terminated). NULL when out of memory or f cannot be read (errno). */
char *submit_input_read_all(FILE *f, size_t *len);

/* Room for an array of size bytes, freed with free(); NULL when out of
 * memory. A big one is asked for in huge pages (where the kernel has
 * them): touched 4 KiB at a time, the jobs of a file (170 bytes each) cost
 * a page fault every 24 jobs, and page faults were a third of the time
 * spent reading them. */
void *submit_big_alloc(size_t size);

/* Frees what in holds (not the caller's arena). */
void submit_input_free(submit_input_t *in);

#endif
