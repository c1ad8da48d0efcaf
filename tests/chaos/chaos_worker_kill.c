/* Chaos 2: while a batch runs, every 1-3 s one worker supervisor is killed
 * with SIGKILL (and a new one started in its place), or one of a
 * supervisor's child processes (a pool child or the handler it runs) is.
 * Every acknowledged job must end succeeded; jobs may run twice only as
 * often as the kills explain. */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "chaos.h"
#include "dv_clock.h"

enum {
    WORKERS = 3,
    CONCURRENCY = 2,
    PREFETCH = 2,
    JOBS = 700,
    CHAOS_MS = 40000, /* kills stop after this, or when the batch is done */
};

static bool
s_all_ended(harness_t *h)
{
    return harness_sql_int(h, "SELECT count(*) FROM jobs WHERE finished_at "
                              "IS NOT NULL") >= JOBS;
}

/* The pool children of supervisor w and their own children (the handler,
 * or the sh running it), into out; returns how many. */
static int
s_descendants(pid_t w, pid_t *out, int max)
{
    int n = harness_children(w, out, max);
    if (n < 0)
        return 0;
    int all = n;
    for (int i = 0; i < n && all < max; i++) {
        int m = harness_children(out[i], out + all, max - all);
        all += m > 0 ? m : 0;
    }
    return all;
}

static void
t_worker_kill(void **state)
{
    harness_t *h = *state;
    uint64_t seed = chaos_seed("worker_kill");
    uint64_t rng = seed;
    chaos_wargs_t wargs;
    chaos_wargs(h, CONCURRENCY, PREFETCH, &wargs);
    pid_t w[WORKERS];
    chaos_start(h, &wargs, WORKERS, w);

    chaos_ids_t acked = { 0 };
    chaos_submit_all(h, "wk", seed, JOBS, 20, 150, &rng, 30000, &acked);

    int sup_kills = 0, child_kills = 0;
    int64_t stop = dv_mono_ms() + CHAOS_MS;
    while (dv_mono_ms() < stop && !s_all_ended(h)) {
        chaos_pause_ms(chaos_range(&rng, 1000, 3000));
        int i = chaos_range(&rng, 0, WORKERS - 1);
        if (chaos_range(&rng, 0, 1) == 0) {
            assert_true(harness_signal(h, w[i], SIGKILL, 5000) >= 0);
            sup_kills++;
            w[i] = harness_spawn_worker(h, wargs.args, NULL, 0);
            assert_true(w[i] > 0);
        } else {
            pid_t d[64];
            int n = s_descendants(w[i], d, 64);
            if (n > 0) {
                pid_t victim = d[chaos_range(&rng, 0, n - 1)];
                if (kill(victim, SIGKILL) == 0)
                    child_kills++;
            }
        }
    }
    printf("chaos[worker_kill] supervisor_kills=%d child_kills=%d "
           "all_ended_during_chaos=%s\n",
           sup_kills, child_kills, s_all_ended(h) ? "yes" : "no");
    fflush(stdout);

    chaos_account_t a;
    chaos_account(h, "worker_kill", &acked, 180000, &a);
    chaos_ids_free(&acked);
    assert_int_equal(a.acknowledged, JOBS);
    assert_true(sup_kills + child_kills > 0);
    /* Run twice: a killed supervisor takes with it at most the jobs it held
     * (CONCURRENCY running, PREFETCH waiting; a finished job's report frees
     * the slot the next job takes, so finished-but-unreported ones are among
     * them); each may have run to its end before its report was lost. A
     * killed child re-runs at most the one job it was running. */
    chaos_assert_account(&a, (size_t)sup_kills * (CONCURRENCY + PREFETCH) +
                                 (size_t)child_kills);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_worker_kill, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
