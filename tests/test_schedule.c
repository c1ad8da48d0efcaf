/* Integration test of periodic jobs: `drover schedule add tick --every 1s`
 * on a real broker and worker; the broker is killed (-9) in the middle and
 * started again. Then: as many jobs carry the schedule as there are
 * distinct firing times, each firing time once, every firing time on the
 * schedule's grid, no gap longer than the outage, a total in range for the
 * time it ran; `schedule list --json` shows the last and next firing and
 * the last job's state. With DROVER_TEST_STORE=pg (test_schedule_pg) the
 * same on PostgreSQL. */
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dv_clock.h"
#include "harness.h"

static int64_t
s_jobs(harness_t *h)
{
    return harness_sql_int(h,
                           "SELECT count(*) FROM jobs WHERE schedule = 'tick'");
}

typedef struct {
    harness_t *h;
    int64_t want;
} s_count_t;

static bool
s_has_jobs(void *arg)
{
    s_count_t *c = arg;
    return s_jobs(c->h) >= c->want;
}

/* The firing times, in order, read from the keys. */
typedef struct {
    int64_t *t;
    int n, cap;
} s_times_t;

static int
s_on_key(const harness_row_t *row, void *arg)
{
    s_times_t *t = arg;
    const char *key = harness_row_text(row, 0);
    const char *colon = key ? strrchr(key, ':') : NULL;
    assert_non_null(colon);
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->t = realloc(t->t, (size_t)t->cap * sizeof *t->t);
        assert_non_null(t->t);
    }
    t->t[t->n++] = strtoll(colon + 1, NULL, 10);
    return 0;
}

static int
s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static json_t *
s_list(harness_t *h)
{
    static char out[65536];
    int rc = harness_cli(out, sizeof out, "schedule", "list", "--json",
                         "--broker", h->clients, NULL);
    assert_int_equal(rc, 0);
    json_t *doc = json_loads(out, 0, NULL);
    assert_non_null(doc);
    return doc;
}

static bool
s_last_job_done(void *arg)
{
    harness_t *h = arg;
    json_t *doc = s_list(h);
    json_t *s = json_array_get(json_object_get(doc, "schedules"), 0);
    const char *st = json_string_value(json_object_get(s, "last_job_state"));
    bool done = st && !strcmp(st, "succeeded");
    json_decref(doc);
    return done;
}

static void
t_every_second_across_a_kill(void **state)
{
    harness_t *h = *state;
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--concurrency", "4", NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    char out[8192];
    int rc =
        harness_cli(out, sizeof out, "schedule", "add", "tick", "--every", "1s",
                    "--type", "noop", "--json", "--broker", h->clients, NULL);
    assert_int_equal(rc, 0);
    json_t *added = json_loads(out, 0, NULL);
    assert_non_null(added);
    int64_t anchor = json_integer_value(json_object_get(added, "created_at"));
    assert_true(anchor > 0);
    assert_int_equal(json_integer_value(json_object_get(added, "next_fire_at")),
                     anchor + 1000);
    json_decref(added);
    /* The same name again: refused. */
    rc = harness_cli(out, sizeof out, "schedule", "add", "tick", "--every",
                     "2s", "--type", "noop", "--broker", h->clients, NULL);
    assert_int_equal(rc, 1);
    int64_t t0 = dv_now_ms();

    /* About 4 s of firings, then kill -9, down for about 2 s. */
    s_count_t c = { h, 4 };
    assert_true(harness_wait_until(s_has_jobs, &c, 20000));
    assert_true(harness_signal(h, h->broker, SIGKILL, 5000) >= 0);
    int64_t down_at = dv_now_ms();
    h->broker = 0;
    struct timespec ts = { 2, 0 }; /* the outage itself, not a wait */
    nanosleep(&ts, NULL);
    assert_true(harness_start_broker(h, NULL) > 0);
    int64_t up_at = dv_now_ms();
    c.want = s_jobs(h) + 4;
    assert_true(harness_wait_until(s_has_jobs, &c, 20000));
    assert_true(harness_wait_until(s_last_job_done, h, 20000));
    int64_t t1 = dv_now_ms();

    /* Each firing time once, on the grid, as many jobs as firings. */
    s_times_t t = { 0 };
    assert_true(harness_sql_each(h,
                                 "SELECT key FROM jobs WHERE schedule = "
                                 "'tick' ORDER BY key",
                                 s_on_key, &t) >= 0);
    int64_t n = s_jobs(h);
    assert_int_equal(t.n, n);
    qsort(t.t, (size_t)t.n, sizeof *t.t, s_cmp);
    for (int i = 0; i < t.n; i++) {
        assert_int_equal((t.t[i] - anchor) % 1000, 0);
        if (i)
            assert_true(t.t[i] > t.t[i - 1]);
    }
    /* No gap longer than the outage (a firing right before the kill may
     * not have been made; catch-up once fires the last missed one). */
    int64_t outage = up_at - down_at + 1000;
    for (int i = 1; i < t.n; i++)
        if (t.t[i] - t.t[i - 1] > outage + 1000)
            fail_msg("gap of %lld ms between firings (outage %lld ms)",
                     (long long)(t.t[i] - t.t[i - 1]), (long long)outage);
    /* In range: one per second of the run, less the outage's. */
    int64_t secs = (t1 - t0) / 1000;
    int64_t lost = (up_at - down_at) / 1000 + 2;
    if (n > secs + 2 || n < secs - lost - 2)
        fail_msg("%lld firings in %lld s (outage %lld ms)", (long long)n,
                 (long long)secs, (long long)(up_at - down_at));
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM jobs WHERE key LIKE "
                           "'drover:schedule:tick:%' AND schedule IS NULL"),
        0);

    /* The list: last and next firing, the last job and its state. */
    json_t *doc = s_list(h);
    json_t *s = json_array_get(json_object_get(doc, "schedules"), 0);
    assert_non_null(s);
    assert_string_equal(json_string_value(json_object_get(s, "name")), "tick");
    assert_string_equal(json_string_value(json_object_get(s, "spec")),
                        "every 1s");
    int64_t last = json_integer_value(json_object_get(s, "last_fire_at"));
    int64_t next = json_integer_value(json_object_get(s, "next_fire_at"));
    assert_true(last >= t.t[t.n - 1]);
    assert_true(next > last);
    assert_int_equal((next - anchor) % 1000, 0);
    const char *last_job = json_string_value(json_object_get(s, "last_job"));
    assert_non_null(last_job);
    /* drover job: the job says which schedule fired it. */
    static char jo[65536];
    rc = harness_cli(jo, sizeof jo, "job", last_job, "--json", "--broker",
                     h->clients, "--collector", "ipc:///nonexistent/collector",
                     NULL);
    assert_int_equal(rc, 0);
    json_t *jd = json_loads(jo, 0, NULL);
    assert_non_null(jd);
    assert_string_equal(json_string_value(json_object_get(jd, "schedule")),
                        "tick");
    json_decref(jd);
    assert_true(json_integer_value(json_object_get(s, "firings")) >= 1);
    json_decref(doc);
    free(t.t);

    /* status: the number of schedules and the next to fire. */
    static char st[65536];
    rc = harness_cli(st, sizeof st, "status", "--json", "--broker", h->clients,
                     "--collector", "ipc:///nonexistent/collector", NULL);
    assert_int_equal(rc, 0);
    doc = json_loads(st, 0, NULL);
    assert_non_null(doc);
    json_t *b = json_array_get(json_object_get(doc, "brokers"), 0);
    assert_int_equal(json_integer_value(json_object_get(b, "schedules")), 1);
    json_t *nx = json_object_get(b, "next_schedule");
    assert_string_equal(json_string_value(json_object_get(nx, "name")), "tick");
    assert_true(json_integer_value(json_object_get(nx, "at")) > last);
    json_decref(doc);

    /* pause: no more firings; remove: gone (exit 4 after). */
    rc = harness_cli(out, sizeof out, "schedule", "pause", "tick", "--broker",
                     h->clients, NULL);
    assert_int_equal(rc, 0);
    rc = harness_cli(out, sizeof out, "schedule", "remove", "tick", "--broker",
                     h->clients, NULL);
    assert_int_equal(rc, 0);
    rc = harness_cli(out, sizeof out, "schedule", "show", "tick", "--broker",
                     h->clients, NULL);
    assert_int_equal(rc, 4);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM schedules"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_every_second_across_a_kill,
                                        harness_setup, harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
