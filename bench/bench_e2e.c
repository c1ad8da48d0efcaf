/* bench_e2e - end-to-end figures for the real processes on one machine.
 *
 *   1. throughput: N no-op jobs, batched submit, submit -> succeeded, with W
 *      workers of C children each, on the SQLite store (sync full).
 *   2. dispatch latency (queued -> started) at a steady 1,000 jobs/s: p50,
 *      p99 as the broker measured them.
 *   3. memory: broker RSS growth per queued job with M jobs queued and no
 *      workers.
 *
 * Each part runs against a fresh broker and store in a temp dir. Usage:
 *   bench_e2e [--jobs N] [--workers W] [--concurrency C] [--sync MODE]
 *             [--queued M] [--rate R] [--only throughput|latency|memory]
 *             [--curve]   (CurveZMQ on every socket, keys made per run)
 *             [--pg]      (the PostgreSQL store: a throw-away server of the
 *                          bench's own, tests/fixtures/pg_server, a fresh
 *                          database per part; fsync and synchronous_commit
 *                          on, as --sync full on SQLite)
 * DROVER_BIN names the drover executable (default: drover on PATH).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drover.h"
#include "dv_clock.h"
#include "harness.h"
#include "pg_server.h"

typedef struct {
    int jobs, workers, concurrency, prefetch, queued, rate;
    const char *sync, *only;
    bool curve; /* CurveZMQ on every socket */
    bool pg;    /* the PostgreSQL store */
} s_opts_t;

static pg_server_t *s_pg;

/* A fresh database on the bench's own server for one part; its URL goes
 * where the harness keeps the store. */
static void
s_pg_store(harness_t *h)
{
    static int parts;
    char err[1600] = "";
    if (!s_pg) {
        static char dir[] = "/tmp/drover-bench-pg-XXXXXX";
        if (!mkdtemp(dir) || !(s_pg = pg_server_start(dir, err, sizeof err))) {
            fprintf(stderr, "bench: no PostgreSQL server: %s\n", err);
            exit(1);
        }
    }
    char db[32], sql[64];
    snprintf(db, sizeof db, "bench%d", ++parts);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    if (pg_server_exec(s_pg, "postgres", sql, err, sizeof err) != 0) {
        fprintf(stderr, "bench: %s: %s\n", sql, err);
        exit(1);
    }
    pg_server_url(s_pg, db, h->store, sizeof h->store);
}

static int
s_count(const drover_result_t *r, void *arg)
{
    int *ok = arg;
    if (!strcmp(r->state, "succeeded"))
        (*ok)++;
    return 0;
}

static long
s_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* The part running now: a failure exits, and its processes must not
 * outlive the bench. */
static harness_t *s_live;

static void
s_at_exit(void)
{
    harness_destroy(&s_live);
    pg_server_stop(&s_pg);
}

static harness_t *
s_start(const s_opts_t *o, int workers)
{
    harness_t *h = harness_new();
    s_live = h;
    if (h && o->curve) {
        static const char *const client[] = { "bench", NULL };
        char names[16][8];
        const char *ws[17];
        int n = workers < 16 ? workers : 16;
        for (int i = 0; i < n; i++) {
            snprintf(names[i], sizeof names[i], "w%d", i + 1);
            ws[i] = names[i];
        }
        ws[n] = NULL;
        if (harness_curve(h, "bench", client, NULL, ws, NULL) != 0) {
            fprintf(stderr, "bench: cannot make CurveZMQ keys\n");
            exit(1);
        }
    }
    const char *bargs[] = { "--sync",      o->sync, "--log-level",      "info",
                            "--heartbeat", "1",     "--worker-timeout", "5",
                            NULL };
    if (h && o->pg)
        s_pg_store(h);
    if (!h || harness_start_broker(h, bargs) <= 0) {
        fprintf(stderr, "bench: broker did not start\n");
        exit(1);
    }
    char conc[16], pre[16];
    snprintf(conc, sizeof conc, "%d", o->concurrency);
    snprintf(pre, sizeof pre, "%d", o->prefetch);
    const char *wargs[] = { "--concurrency",
                            conc,
                            "--log-level",
                            "info",
                            "--heartbeat",
                            "1",
                            o->prefetch >= 0 ? "--prefetch" : NULL,
                            pre,
                            NULL };
    for (int i = 0; i < workers; i++)
        if (harness_start_worker(h, wargs) <= 0) {
            fprintf(stderr, "bench: worker did not start\n");
            exit(1);
        }
    return h;
}

static int
s_submit(harness_t *h, int n, char (**ids_out)[37], double *secs)
{
    drover_job_t *jobs = calloc((size_t)n, sizeof *jobs);
    drover_ack_t *acks = calloc((size_t)n, sizeof *acks);
    char(*ids)[37] = calloc((size_t)n, 37);
    for (int i = 0; i < n; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "noop";
    }
    /* A client of its own with a long timeout (the harness's waits 1 s):
     * a group of many thousand inserts may take longer to commit. */
    drover_close(&h->client);
    h->client = drover_connect(h->clients, 30000);
    int64_t t0 = dv_mono_us();
    int rc = drover_submit_many(h->client, jobs, (size_t)n, acks);
    *secs = (double)(dv_mono_us() - t0) / 1e6;
    int accepted = 0;
    for (int i = 0; i < n; i++)
        if (!acks[i].error[0])
            memcpy(ids[accepted++], acks[i].id, 37);
    free(jobs);
    free(acks);
    if (rc != DROVER_OK || accepted != n) {
        fprintf(stderr, "bench: submit: %s (%d of %d accepted)\n",
                drover_last_error(h->client), accepted, n);
        exit(1);
    }
    *ids_out = ids;
    return accepted;
}

static void
s_throughput(const s_opts_t *o)
{
    harness_t *h = s_start(o, o->workers);
    char(*ids)[37];
    int64_t t0 = dv_mono_us();
    double submit_s;
    int n = s_submit(h, o->jobs, &ids, &submit_s);
    const char **p = calloc((size_t)n, sizeof *p);
    for (int i = 0; i < n; i++)
        p[i] = ids[i];
    int ok = 0;
    drover_wait(h->client, p, (size_t)n, 600000, s_count, &ok);
    double total_s = (double)(dv_mono_us() - t0) / 1e6;
    char pre[16] = "default";
    if (o->prefetch >= 0)
        snprintf(pre, sizeof pre, "%d", o->prefetch);
    printf(
        "throughput: %d no-op jobs, %d worker(s) x %d, prefetch %s, sync=%s: "
        "submit %.0f jobs/s, end-to-end %.0f jobs/s (%.2f s), %d succeeded\n",
        n, o->workers, o->concurrency, pre, o->sync, n / submit_s, n / total_s,
        total_s, ok);
    free(p);
    free(ids);
    harness_destroy(&h);
    s_live = NULL;
}

static void
s_latency(const s_opts_t *o)
{
    harness_t *h = s_start(o, 1);
    int n = o->rate * 5; /* five seconds */
    char(*ids)[37] = calloc((size_t)n, 37);
    h->client = drover_connect(h->clients, 30000);
    drover_job_t job;
    drover_job_init(&job);
    job.type = "noop";
    int64_t t0 = dv_mono_us(), period = 1000000 / o->rate;
    for (int i = 0; i < n; i++) {
        int64_t due = t0 + i * period, now = dv_mono_us();
        if (due > now) {
            struct timespec ts = { 0, (long)(due - now) * 1000 };
            nanosleep(&ts, NULL);
        }
        if (drover_submit(h->client, &job, ids[i]) != DROVER_OK) {
            fprintf(stderr, "bench: submit: %s\n",
                    drover_last_error(h->client));
            exit(1);
        }
    }
    const char **p = calloc((size_t)n, sizeof *p);
    for (int i = 0; i < n; i++)
        p[i] = ids[i];
    int ok = 0;
    drover_wait(h->client, p, (size_t)n, 60000, s_count, &ok);
    char *body = harness_status(h);
    json_t *st = body ? json_loads(body, 0, NULL) : NULL;
    json_t *c = json_object_get(st, "counters");
    printf(
        "dispatch latency (queued -> started) at %d jobs/s, %d jobs: "
        "p50 %lld us, p99 %lld us\n",
        o->rate, ok,
        (long long)json_integer_value(json_object_get(c, "dispatch_p50_us")),
        (long long)json_integer_value(json_object_get(c, "dispatch_p99_us")));
    json_decref(st);
    free(body);
    free(p);
    free(ids);
    harness_destroy(&h);
    s_live = NULL;
}

/* Memory per queued job is the slope between two fill levels, so fixed
 * costs (SQLite's page caches, socket buffers) do not count as per-job. */
static void
s_memory(const s_opts_t *o)
{
    harness_t *h = s_start(o, 0);
    long empty = s_rss_kb(h->broker);
    int first = o->queued / 10;
    char(*ids)[37];
    double s1, s2;
    int n1 = s_submit(h, first, &ids, &s1);
    free(ids);
    long at_first = s_rss_kb(h->broker);
    int n2 = s_submit(h, o->queued - first, &ids, &s2);
    free(ids);
    long full = s_rss_kb(h->broker);
    int n = n1 + n2;
    printf("memory: %d jobs queued (no payload): broker RSS %ld KiB empty, "
           "%ld KiB at %d, %ld KiB at %d; %.0f bytes per queued job "
           "(slope), %.0f overall; submitted at %.0f jobs/s\n",
           n, empty, at_first, n1, full, n,
           (double)(full - at_first) * 1024.0 / n2,
           (double)(full - empty) * 1024.0 / n, n / (s1 + s2));
    harness_destroy(&h);
    s_live = NULL;
}

int
main(int argc, char **argv)
{
    s_opts_t o = {
        100000, 1, 2, -1, 1000000, 1000, "full", NULL, false, false
    };
    static const struct option opts[] = {
        { "jobs", required_argument, 0, 'n' },
        { "workers", required_argument, 0, 'w' },
        { "concurrency", required_argument, 0, 'c' },
        { "prefetch", required_argument, 0, 'p' },
        { "sync", required_argument, 0, 's' },
        { "queued", required_argument, 0, 'q' },
        { "rate", required_argument, 0, 'r' },
        { "only", required_argument, 0, 'o' },
        { "curve", no_argument, 0, 'z' },
        { "pg", no_argument, 0, 'g' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            o.jobs = atoi(optarg);
            break;
        case 'w':
            o.workers = atoi(optarg);
            break;
        case 'c':
            o.concurrency = atoi(optarg);
            break;
        case 'p':
            o.prefetch = atoi(optarg);
            break;
        case 's':
            o.sync = optarg;
            break;
        case 'q':
            o.queued = atoi(optarg);
            break;
        case 'r':
            o.rate = atoi(optarg);
            break;
        case 'o':
            o.only = optarg;
            break;
        case 'z':
            o.curve = true;
            break;
        case 'g':
            o.pg = true;
            break;
        default:
            printf(
                "usage: bench_e2e [--jobs N] [--workers W] [--concurrency C]\n"
                "       [--prefetch P]\n"
                "       [--sync full|normal|off] [--queued M] [--rate R]\n"
                "       [--only throughput|latency|memory] [--curve] [--pg]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (o.jobs < 1 || o.workers < 1 || o.concurrency < 1 || o.queued < 1 ||
        o.rate < 1) {
        fprintf(stderr, "bench_e2e: counts must be positive\n");
        return 2;
    }
    atexit(s_at_exit);
    if (!o.only || !strcmp(o.only, "throughput"))
        s_throughput(&o);
    if (!o.only || !strcmp(o.only, "latency"))
        s_latency(&o);
    if (!o.only || !strcmp(o.only, "memory"))
        s_memory(&o);
    pg_server_stop(&s_pg);
    return 0;
}
