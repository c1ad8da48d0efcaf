/* lineref - the job dependencies of `drover submit`: a JSON line's
 * "after"/"after_any" naming earlier lines by number (jobline keeps them
 * as "#N"), and the ids of --after/--after-any.
 *
 * The jobs of a file are in input order with the line each came from
 * (lines[], ascending). Pure functions over the caller's arrays; no I/O. */
#ifndef LINEREF_H
#define LINEREF_H

#include <stddef.h>

#include "drover.h"

/* The index of the job read from line (1-based), or SIZE_MAX when that
 * line held no job. */
size_t lineref_job_at(const unsigned *lines, size_t n, unsigned line);

/* Checks the line references of job, read from line (the jobs before it
 * are lines[0..n)): each must name an earlier line that holds a job.
 * Returns 0, or -1 with why. */
int lineref_check(const unsigned *lines, size_t n, const drover_job_t *job,
                  unsigned line, char *why, size_t why_size);

/* Gets jobs[base..base + *m) ready to send: their references to jobs
 * before base become those jobs' ids (ids[i], "" when not accepted). The
 * slice ends before the first job that names a job of the slice itself
 * (its id comes with the slice's acks): *m shrinks. Returns SIZE_MAX, or
 * the index of the first job that names a job not accepted (the slice
 * then ends before it; that job is not to be sent) with the line it names
 * in *ref. */
size_t lineref_resolve(drover_job_t *jobs, const unsigned *lines, size_t n,
                       char (*ids)[DROVER_ID_SIZE], size_t base, size_t *m,
                       unsigned *ref);

/* Comma-separated job ids (--after, --after-any) into *out and *nout, in
 * storage of slot (0 or 1) that lives as long as the program. Returns 0,
 * or -1 with why. */
int lineref_parse_ids(int slot, const char *text, const char *const **out,
                      size_t *nout, char *why, size_t why_size);

#endif
