/* Chaos 3: a worker supervisor is stopped (SIGSTOP) for longer than the
 * broker's worker timeout while it holds jobs, those jobs are leased again
 * to other workers and end there, and then it is resumed (SIGCONT).
 *
 * From the handler's log: no execution may START after its job ended (the
 * store's finished_at): the resumed worker must drop what is no longer its
 * own, not run it. From the store: a succeeded job is credited to a worker
 * and attempt whose execution ran to its end. This needs lease fencing in
 * the broker and the worker; without it the resumed worker runs jobs that
 * already ended, and the test fails saying so. */
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
    CONCURRENCY = 2,
    PREFETCH = 4,
    JOBS = 40,
    JOB_MS = 300,
};

typedef struct {
    harness_t *h;
    const char *name;
    pid_t pid;
} s_worker_t;

static bool
s_listed(void *arg)
{
    s_worker_t *w = arg;
    return chaos_worker_running(w->h, w->name) >= 0;
}

static bool
s_not_listed(void *arg)
{
    return !s_listed(arg);
}

static bool
s_holds_all(void *arg)
{
    s_worker_t *w = arg;
    return chaos_worker_running(w->h, w->name) >= CONCURRENCY + PREFETCH;
}

/* Every job the stopped worker held (its attempts failed as lost) has
 * ended on another worker. */
static bool
s_held_jobs_ended(void *arg)
{
    s_worker_t *w = arg;
    int64_t lost = harness_sql_int(
        w->h, "SELECT count(*) FROM attempts WHERE worker='w1' AND "
              "category='lost'");
    int64_t open = harness_sql_int(
        w->h, "SELECT count(*) FROM attempts a JOIN jobs j ON j.id=a.job_id "
              "WHERE a.worker='w1' AND a.category='lost' AND j.finished_at "
              "IS NULL");
    return lost > 0 && open == 0;
}

/* The resumed worker holds nothing and runs no handler. */
static bool
s_settled(void *arg)
{
    s_worker_t *w = arg;
    if (chaos_worker_running(w->h, w->name) != 0)
        return false;
    pid_t kids[32];
    int n = harness_children(w->pid, kids, 32);
    for (int i = 0; i < n; i++) {
        pid_t g[8];
        if (harness_children(kids[i], g, 8) > 0)
            return false;
    }
    return n >= 0;
}

static void
t_stop_cont(void **state)
{
    harness_t *h = *state;
    uint64_t seed = chaos_seed("stop_cont");
    uint64_t rng = seed;
    chaos_wargs_t wargs;
    chaos_wargs(h, CONCURRENCY, PREFETCH, &wargs);
    s_worker_t w1 = { h, "w1", 0 };
    chaos_start(h, &wargs, 1, &w1.pid);

    chaos_ids_t acked = { 0 };
    chaos_submit_all(h, "sc", seed, JOBS, JOB_MS, JOB_MS, &rng, 30000, &acked);
    /* w1 holds a full window: two running, the rest waiting in it. */
    assert_true(harness_wait_until(s_holds_all, &w1, 10000));
    chaos_pause_ms(chaos_range(&rng, 0, JOB_MS)); /* a random moment */
    int held = chaos_worker_running(h, "w1");
    assert_int_equal(kill(w1.pid, SIGSTOP), 0);
    int64_t stopped = dv_mono_ms();

    char n2[32], n3[32];
    assert_true(harness_spawn_worker(h, wargs.args, n2, sizeof n2) > 0);
    assert_true(harness_spawn_worker(h, wargs.args, n3, sizeof n3) > 0);
    s_worker_t w2 = { h, n2, 0 }, w3 = { h, n3, 0 };
    assert_true(harness_wait_until(s_listed, &w2, 10000));
    assert_true(harness_wait_until(s_listed, &w3, 10000));
    /* Past the worker timeout (1 s) the broker expires w1... */
    assert_true(harness_wait_until(s_not_listed, &w1, 10000));
    int64_t expired_after = dv_mono_ms() - stopped;
    /* ... and its jobs run and end elsewhere while it is still stopped. */
    bool ended = harness_wait_until(s_held_jobs_ended, &w1, 30000);
    int64_t stop_ms = dv_mono_ms() - stopped;
    assert_int_equal(kill(w1.pid, SIGCONT), 0);
    /* It says hello again and settles: it holds nothing, runs nothing. */
    bool rejoined = harness_wait_until(s_listed, &w1, 10000);
    bool settled = harness_wait_until(s_settled, &w1, 20000);
    /* Then it leaves (SIGTERM drains), so every execution it started has
     * ended and is in the log. */
    int status = harness_signal(h, w1.pid, SIGTERM, 20000);
    printf("chaos[stop_cont] w1 held=%d stopped_ms=%" PRId64
           " expired_after_ms=%" PRId64
           " its_jobs_ended_elsewhere=%s rejoined=%s settled=%s "
           "exited=%s\n",
           held, stop_ms, expired_after, ended ? "yes" : "no",
           rejoined ? "yes" : "no", settled ? "yes" : "no",
           status >= 0 ? "yes" : "no");
    fflush(stdout);

    chaos_account_t a;
    chaos_account(h, "stop_cont", &acked, 120000, &a);
    chaos_ids_free(&acked);
    assert_true(ended);
    if (a.started_after_end > 0)
        fail_msg("%zu executions started after their job had ended: the "
                 "resumed worker ran jobs that were no longer its own "
                 "(lease fencing and revocation missing or broken)",
                 a.started_after_end);
    if (a.wrong_credit > 0)
        fail_msg("%zu successes credited to a worker and attempt that never "
                 "ran the job to its end (stale outcome accepted)",
                 a.wrong_credit);
    /* Run twice: only the jobs w1 held when it stopped (at most CONCURRENCY
     * + PREFETCH) can have two executions: the one its children finished
     * while it was stopped, and the one on the worker they went to. */
    chaos_assert_account(&a, CONCURRENCY + PREFETCH);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_stop_cont, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
