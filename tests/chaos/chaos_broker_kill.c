/* Chaos 1: the broker is killed with SIGKILL at random moments, several
 * times, while a libdrover producer submits keyed batches (sending again
 * what got no answer) and `drover submit --wait` submits and waits, with
 * three worker supervisors running the jobs. Every acknowledged job must
 * end succeeded.
 *
 * Then: the time a broker takes, from its start, to answer `status` with
 * 200,000 queued jobs in its store (the replay of every unfinished job
 * happens before the loop answers anything). */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
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
    KILLS = 4,
    WORKERS = 3,
    CONCURRENCY = 2,
    PREFETCH = 2,
    MIN_BATCHES = 4,
    MAX_BATCHES = 40,
    PER_BATCH = 100,
    CLI_JOBS = 300,
    CLI_RUNS = 8,
};

typedef struct {
    const char *endpoint;
    uint64_t seed, rng;
    chaos_ids_t acked;
    chaos_submit_stats_t st;
    int left; /* jobs that never got an ack */
    int batches;
    atomic_bool stop; /* the kills are over: end after this batch */
    atomic_bool done;
    atomic_bool in_submit; /* inside a submit (with its resends) now */
} s_producer_t;

static void *
s_produce(void *arg)
{
    s_producer_t *p = arg;
    drover_client_t *c = drover_connect(p->endpoint, 2000);
    /* Batches until the kills are over (at least MIN_BATCHES). */
    int b = 0;
    for (; c && b < MAX_BATCHES && (b < MIN_BATCHES || !atomic_load(&p->stop));
         b++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "lib-%" PRIu64 "-%d", p->seed, b);
        atomic_store(&p->in_submit, true);
        p->left += chaos_submit_keyed(c, prefix, PER_BATCH, 5, 40, 0, &p->rng,
                                      60000, &p->acked, &p->st);
        atomic_store(&p->in_submit, false);
        chaos_pause_ms(chaos_range(&p->rng, 50, 200)); /* producer pace */
    }
    if (!c)
        p->left = PER_BATCH;
    p->batches = b;
    drover_close(&c);
    atomic_store(&p->done, true);
    return NULL;
}

static pid_t
s_cli_start(harness_t *h, const char *file, int run)
{
    char out[64], log[64], results[400];
    snprintf(out, sizeof out, "cli-%d.out", run);
    snprintf(log, sizeof log, "cli-%d.log", run);
    snprintf(results, sizeof results, "%s/cli-%d.jsonl", h->dir, run);
    const char *args[] = { "submit",
                           "--broker",
                           h->clients,
                           "--file",
                           file,
                           "--wait",
                           "--out",
                           results,
                           "--connect-timeout",
                           "2",
                           "--wait-timeout",
                           "240",
                           NULL };
    return harness_spawn(h, args, out, log);
}

/* Ids from a failed run's stdout (the ids it had acknowledged) and from a
 * run's results file. Returns how many results said succeeded. */
static int
s_cli_ids(harness_t *h, int run, chaos_ids_t *ids)
{
    char name[64];
    int succeeded = 0;
    snprintf(name, sizeof name, "cli-%d.out", run);
    char *text = harness_read(h, name);
    char *save = NULL;
    for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l;
         l = strtok_r(NULL, "\n", &save))
        if (strlen(l) == 36)
            chaos_ids_add(ids, l);
    free(text);
    snprintf(name, sizeof name, "cli-%d.jsonl", run);
    text = harness_read(h, name);
    save = NULL;
    for (char *l = text ? strtok_r(text, "\n", &save) : NULL; l;
         l = strtok_r(NULL, "\n", &save)) {
        char *id = strstr(l, "\"id\":\"");
        if (id && strlen(id) > 42) {
            char buf[37];
            memcpy(buf, id + 6, 36);
            buf[36] = '\0';
            chaos_ids_add(ids, buf);
        }
        succeeded += strstr(l, "\"state\":\"succeeded\"") != NULL;
    }
    free(text);
    return succeeded;
}

static void
t_broker_kill(void **state)
{
    harness_t *h = *state;
    uint64_t seed = chaos_seed("broker_kill");
    uint64_t rng = seed;
    chaos_wargs_t w;
    chaos_wargs(h, CONCURRENCY, PREFETCH, &w);
    chaos_start(h, &w, WORKERS, NULL);

    /* The CLI's jobs: keyed, so a run after a failed one adds nothing. */
    size_t cap = CLI_JOBS * 160 + 1, used = 0;
    char *lines = malloc(cap);
    assert_non_null(lines);
    for (int i = 0; i < CLI_JOBS; i++)
        used += (size_t)snprintf(
            lines + used, cap - used,
            "{\"type\":\"chaos\",\"payload\":%d,\"key\":\"cli-%" PRIu64
            "-%d\",\"max_attempts\":25,\"backoff\":{\"base\":0.05,"
            "\"cap\":0.5}}\n",
            chaos_range(&rng, 20, 80), seed, i);
    char file[400];
    assert_int_equal(
        harness_write(h, "cli-jobs.jsonl", lines, file, sizeof file), 0);
    free(lines);

    /* Static: a failed assertion leaves this function while the thread
     * may still run. */
    static s_producer_t p;
    memset(&p, 0, sizeof p);
    p.endpoint = h->clients;
    p.seed = seed;
    p.rng = seed * 7;
    atomic_init(&p.stop, false);
    atomic_init(&p.done, false);
    atomic_init(&p.in_submit, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_produce, &p), 0);
    int run = 0, cli_exit = -1;
    chaos_pause_ms(chaos_range(&rng, 100, 400)); /* behind some of the lib's */
    pid_t cli = s_cli_start(h, file, run);
    assert_true(cli > 0);

    int64_t down_ms_max = 0;
    for (int k = 0; k < KILLS; k++) {
        chaos_pause_ms(chaos_range(&rng, 300, 2000));
        /* Most kills land inside a submit: the moment is random, but we
         * look for one where the producer is sending (for at most 2 s). */
        for (int i = 0; i < 2000 && !atomic_load(&p.in_submit) &&
                        !atomic_load(&p.done) && chaos_range(&rng, 0, 3);
             i++)
            chaos_pause_ms(1);
        int64_t t0 = dv_mono_ms();
        assert_true(harness_signal(h, h->broker, SIGKILL, 5000) >= 0);
        chaos_pause_ms(chaos_range(&rng, 0, 400));
        assert_true(harness_start_broker(h, NULL) > 0);
        int64_t down = dv_mono_ms() - t0;
        down_ms_max = down > down_ms_max ? down : down_ms_max;
        printf("chaos[broker_kill] kill %d: broker down %" PRId64
               " ms (producer %s)\n",
               k + 1, down, atomic_load(&p.done) ? "done" : "submitting");
        fflush(stdout);
        /* A CLI run that gave up is started again with the same keys. */
        int status = cli > 0 ? harness_wait_exit(h, cli, 0) : -1;
        if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            cli_exit = 0; /* done: all its jobs ended succeeded */
            cli = 0;
        } else if (status >= 0 && run + 1 < CLI_RUNS) {
            printf("chaos[broker_kill] drover submit run %d exited %d; "
                   "again\n",
                   run, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
            cli = s_cli_start(h, file, ++run);
            assert_true(cli > 0);
        }
    }
    atomic_store(&p.stop, true);
    assert_int_equal(pthread_join(th, NULL), 0);

    while (cli > 0 && run < CLI_RUNS) {
        int status = harness_wait_exit(h, cli, 240000);
        assert_true(status >= 0);
        cli_exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (cli_exit == 0 || run + 1 == CLI_RUNS)
            break;
        printf("chaos[broker_kill] drover submit run %d exited %d; again\n",
               run, cli_exit);
        cli = s_cli_start(h, file, ++run);
        assert_true(cli > 0);
    }
    chaos_ids_t ids = { 0 };
    int cli_ok = 0;
    for (int r = 0; r <= run; r++) {
        int s = s_cli_ids(h, r, &ids);
        if (r == run)
            cli_ok = s;
    }
    printf("chaos[broker_kill] kills=%d longest_down_ms=%" PRId64
           " lib: batches=%d submits=%d failed_submits=%d refused=%d "
           "never_acked=%d acked=%zu; cli: runs=%d last_exit=%d "
           "results_succeeded=%d\n",
           KILLS, down_ms_max, p.batches, p.st.submits, p.st.failures,
           p.st.refused, p.left, p.acked.n, run + 1, cli_exit, cli_ok);
    size_t lib_acked = p.acked.n;
    for (size_t i = 0; i < p.acked.n; i++)
        chaos_ids_add(&ids, p.acked.v[i]);
    chaos_ids_free(&p.acked);

    chaos_account_t a;
    chaos_account(h, "broker_kill", &ids, 180000, &a);
    chaos_ids_free(&ids);
    assert_int_equal(p.left, 0);
    assert_int_equal(cli_exit, 0);
    assert_int_equal(cli_ok, CLI_JOBS);
    /* Keys: a job sent again after a failed submit is the same job. */
    assert_int_equal(lib_acked, (size_t)p.batches * PER_BATCH);
    assert_int_equal(a.acknowledged, lib_acked + CLI_JOBS);
    /* Run twice: a kill can make a job run again only if it was held by a
     * worker then (running or prefetched: CONCURRENCY + PREFETCH per worker,
     * whose lease the restarted broker may fail as lost), or if its outcome
     * had reached the broker but not the store (the worker's reports free
     * its slots, so at most as many again). */
    chaos_assert_account(&a, (size_t)KILLS * 2 * WORKERS *
                                 (CONCURRENCY + PREFETCH));
}

enum { RECOVERY_JOBS = 200000 };

typedef struct {
    harness_t *h;
    int64_t live;
} s_live_t;

static bool
s_status_answers(void *arg)
{
    s_live_t *c = arg;
    c->live = harness_counter(c->h, "live_jobs");
    return c->live >= 0;
}

static void
t_recovery_200k(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    int64_t t0 = dv_mono_ms();
    /* No workers: every job stays queued, so each is replayed. */
    assert_int_equal(
        harness_submit_n(h, "default", "noop", NULL, RECOVERY_JOBS, NULL), 0);
    int64_t submit_ms = dv_mono_ms() - t0;
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM jobs"),
                     RECOVERY_JOBS);
    assert_true(harness_signal(h, h->broker, SIGKILL, 5000) >= 0);
    drover_close(&h->client);

    t0 = dv_mono_ms();
    assert_true(harness_spawn_broker(h, NULL) > 0);
    s_live_t c = { h, -1 };
    assert_true(harness_wait_until(s_status_answers, &c, 120000));
    int64_t recovery_ms = dv_mono_ms() - t0;
    printf("chaos[recovery] jobs_in_store=%d submit_ms=%" PRId64
           " recovery_ms=%" PRId64
           " (from the broker's start to its first status answer) "
           "live_jobs=%" PRId64 "\n",
           RECOVERY_JOBS, submit_ms, recovery_ms, c.live);
    fflush(stdout);
    /* The answer came after the replay: every job is back in memory. */
    assert_int_equal(c.live, RECOVERY_JOBS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_broker_kill, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_recovery_200k, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
