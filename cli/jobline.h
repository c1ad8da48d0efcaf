/* jobline - one line of a JSON Lines job file, checked and turned into a
 * drover_job_t.
 *
 * A line is a JSON object; every field is optional except type (which the
 * defaults may give) and null means "use the default":
 *
 *   {"queue": "q", "type": "echo", "payload": <any JSON>, "priority": 0..9,
 *    "delay": seconds | "at": "2026-11-22T17:41:00Z" | "@1795000000" | epoch s,
 *    "max_attempts": 1..1000, "timeout": seconds, "key": "...",
 *    "batch": "...", "trace": "00-<32 hex>-<16 hex>-<2 hex>",
 *    "result_ttl": seconds,
 *    "after": [id | line, ...], "after_any": [id | line, ...],
 *    "backoff": {"base": seconds, "factor": >= 1, "cap": seconds,
 *                "jitter": true|false}}
 *
 * Durations are numbers of seconds (fractions allowed) or strings such as
 * "1.5", "250ms", "2m", "1h". Unknown fields are refused, so a typo does not
 * silently submit a job without the setting it meant. */
#ifndef JOBLINE_H
#define JOBLINE_H

#include <stddef.h>
#include <stdint.h>

#include "drover.h"

/* Where parsed lines keep their strings and payloads: a list of large
 * blocks, freed all at once. */
typedef struct jobline_arena_t jobline_arena_t;

/* New empty arena, or NULL when out of memory. Caller destroys it. */
jobline_arena_t *jobline_arena_new(void);

/* Frees the arena and everything allocated in it; sets *self_p to NULL.
 * NULL-safe. */
void jobline_arena_destroy(jobline_arena_t **self_p);

/* size bytes (aligned for any type) that live as long as the arena, or NULL
 * when out of memory. */
void *jobline_arena_alloc(jobline_arena_t *self, size_t size);

/* A NUL-terminated copy of s[0..len) in the arena, or NULL. */
char *jobline_arena_strndup(jobline_arena_t *self, const char *s, size_t len);

typedef enum {
    JOBLINE_JOB = 0,    /* *job is filled */
    JOBLINE_SKIP = 1,   /* blank line or comment ('#' first) */
    JOBLINE_BAD = -1,   /* not a valid job: reason in why */
    JOBLINE_NOMEM = -2, /* out of memory */
} jobline_rc_t;

/* Parses one line (len bytes, no newline needed, a trailing '\r' is fine)
 * into *job, starting from *defaults (from the command line) for whatever
 * the line does not give. Strings and the payload (as msgpack) of *job live
 * in arena or in *defaults. On JOBLINE_BAD why gets a one-line reason without
 * the line number, e.g. "priority must be 0..9". Never aborts on any
 * input. */
int jobline_parse(const char *line, size_t len, const drover_job_t *defaults,
                  jobline_arena_t *arena, drover_job_t *job, char *why,
                  size_t why_size);

/* In "after" and "after_any" a string is a job id and an integer the
 * 1-based number of a line of the same file, whose job it names.
 * jobline_parse keeps such a reference as the string "#N", which the
 * caller replaces with that line's job id (drover submit --file);
 * jobline_line_ref() returns N for it, 0 for an id. */
#define JOBLINE_REF_MARK '#'
unsigned jobline_line_ref(const char *s);

/* Parses a duration given as text ("1.5", "250ms", "2m") into seconds.
 * Returns 0, or -1 if it is not a duration of 0 to 10 years. */
int jobline_seconds(const char *text, double *seconds);

/* Parses a time: ISO 8601 UTC ("2026-11-22T17:41:00Z") or "@<epoch s>".
 * Returns 0 with epoch ms, or -1. */
int jobline_time(const char *text, int64_t *ms);

/* True (1) if s is a W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>. */
int jobline_trace_ok(const char *s);

#endif
