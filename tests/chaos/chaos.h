/* chaos - what the chaos scenarios share: the seed, the exec handler that
 * logs every execution, submitting with keys and retries, and the
 * accounting every scenario ends with.
 *
 * The accounting compares three records of one run: the ids the broker
 * acknowledged, the store (the jobs table), and the handler's own log (one
 * line per execution that ran to its end: `job_id attempt worker pid
 * start_ms end_ms`). It prints them as figures, one line starting with
 * "chaos[SCENARIO]", and the scenario asserts on them.
 */
#ifndef CHAOS_H
#define CHAOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

/* ---- randomness -------------------------------------------------------- */

/* The run's seed: DROVER_CHAOS_SEED when set, else from the clock. Printed
 * with the scenario's name, so a failed run can be replayed. */
uint64_t chaos_seed(const char *scenario);
/* Uniform in lo..hi (inclusive), from the state *s (xorshift64*). */
int chaos_range(uint64_t *s, int lo, int hi);
/* Sleeps ms: only for the chaos itself (time between kills), never to wait
 * for a condition. */
void chaos_pause_ms(int ms);

/* ---- the handler ------------------------------------------------------- */

/* The --exec value that runs the logging handler for jobs of type "chaos":
 * "chaos=HANDLER DIR/handler.log". The payload is the run time in ms (a
 * number, or an object with "ms"). */
void chaos_exec_flag(harness_t *h, char *buf, size_t size);

/* The arguments a scenario's worker supervisors take: --concurrency,
 * --prefetch (when prefetch > 0) and --exec with the logging handler.
 * args points into the struct itself: fill it in place, do not copy it. */
typedef struct {
    char exec[600], concurrency[16], prefetch[16];
    const char *args[7]; /* NULL-terminated, for harness_start_worker */
} chaos_wargs_t;

void chaos_wargs(harness_t *h, int concurrency, int prefetch, chaos_wargs_t *w);

/* Starts the broker, then n worker supervisors with w's args, each listed
 * by the broker before the next starts; their PIDs go to pids when it is
 * not NULL. Fails the test if one does not start. */
void chaos_start(harness_t *h, const chaos_wargs_t *w, int n, pid_t *pids);

typedef struct {
    char id[37];
    int attempt;
    char worker[64];
    long pid;
    int64_t start_ms, end_ms;
} chaos_exec_t;

/* The handler log, sorted by job id then start. Caller frees *out. Returns
 * the number of lines (0 when there is no log yet), or -1. */
int chaos_execs_load(harness_t *h, chaos_exec_t **out);

/* ---- ids --------------------------------------------------------------- */

typedef struct {
    char (*v)[37];
    size_t n, cap;
} chaos_ids_t;

int chaos_ids_add(chaos_ids_t *ids, const char *id);
/* Sorts and removes duplicates (a keyed resubmit returns the same id). */
void chaos_ids_unique(chaos_ids_t *ids);
void chaos_ids_free(chaos_ids_t *ids);

/* ---- submitting -------------------------------------------------------- */

typedef struct {
    int submits;         /* drover_submit_many calls */
    int failures;        /* calls that left a job without an ack */
    int refused;         /* jobs the broker answered with an error */
    int refused_nospace; /* ... whose error names "no space left on device" */
    char last_error[256];
} chaos_submit_stats_t;

/* Submits n jobs of type "chaos" (payload: run time ms_lo..ms_hi, drawn from
 * *rng; pad bytes of padding when pad > 0) with keys PREFIX-i, max_attempts
 * 25, and a short backoff. Jobs without an ack are sent again with the same
 * key, until every job has one or deadline_ms passes. Accepted ids go to
 * acked. Returns how many jobs stayed without an ack. */
int chaos_submit_keyed(drover_client_t *c, const char *prefix, int n, int ms_lo,
                       int ms_hi, int pad, uint64_t *rng, int deadline_ms,
                       chaos_ids_t *acked, chaos_submit_stats_t *st);

/* chaos_submit_keyed on h's client, without padding, with keys
 * TAG-SEED-i; fails the test unless every job got an ack within
 * deadline_ms. */
void chaos_submit_all(harness_t *h, const char *tag, uint64_t seed, int n,
                      int ms_lo, int ms_hi, uint64_t *rng, int deadline_ms,
                      chaos_ids_t *acked);

/* ---- the broker's status ----------------------------------------------- */

/* A worker's entry in status: -1 when not listed (or no answer), else its
 * "running" count. */
int chaos_worker_running(harness_t *h, const char *name);

/* ---- accounting -------------------------------------------------------- */

typedef struct {
    size_t acknowledged;
    size_t ended;      /* acknowledged jobs reported ended by drover_wait */
    size_t succeeded;  /* acknowledged and succeeded in the store */
    size_t lost;       /* acknowledged but not succeeded in the store */
    size_t executions; /* handler log lines for acknowledged jobs */
    size_t runs[4];    /* jobs run 0, 1, 2, 3+ times */
    size_t ran_twice;  /* jobs run twice or more */
    size_t never_ran_succeeded; /* succeeded without any execution */
    size_t uncredited;          /* succeeded with no worker in the store */
    size_t wrong_credit;      /* succeeded, but no execution of that worker and
                          * attempt ran to its end */
    size_t started_after_end; /* executions that began after their job had
                               * ended (finished_at) */
    /* Attempt history (the attempts table plus the succeeded attempt in
     * the jobs row) against the handler's log: */
    size_t same_attempt;   /* two executions with one DROVER_ATTEMPT */
    size_t unrecorded;     /* an execution with no history row */
    size_t wrong_row;      /* a history row naming another worker */
    size_t failed_success; /* a failed or lost row for the attempt that
                            * succeeded */
    bool store_ok;
    char store_how[64];
    char store_detail[256];
} chaos_account_t;

/* Waits (bounded by wait_ms) for every acknowledged job to end, then counts
 * and prints the figures. Asserts nothing: the scenario does. */
void chaos_account(harness_t *h, const char *scenario, chaos_ids_t *acked,
                   int wait_ms, chaos_account_t *a);

/* The assertions every scenario shares: every acknowledged job ended and
 * succeeded, none lost, none succeeded without running, no success credited
 * to an execution that did not end, at most twice_bound jobs run twice or
 * more, and the store agrees with the broker. */
void chaos_assert_account(const chaos_account_t *a, size_t twice_bound);

/* The store check, by itself (chaos_account runs it). */
bool chaos_store_check(harness_t *h, char *how, size_t how_size, char *detail,
                       size_t detail_size);

#endif
