/* bench_e2e - end-to-end figures for the real processes on one machine.
 *
 *   1. throughput: N no-op jobs, batched submit, submit -> succeeded, with W
 *      workers of C children each, on the SQLite store (sync full); then
 *      the CPU each process and each broker thread used per job
 *      (bench_cpu.h).
 *   2. dispatch latency (queued -> started) at steady rates (--rate R1,R2,
 *      default 1,000 jobs/s), five seconds each, with the same W workers:
 *      p50, p99 as the broker measured them, and the CPU per job (which,
 *      at one rate, compares 10 worker slots with 1,000).
 *   3. memory: broker RSS growth per queued job with M jobs queued and no
 *      workers.
 *
 * Each part (and each rate) runs against a fresh broker and store in a
 * temp dir. bench_e2e --help lists the flags; among them --curve
 * (CurveZMQ on every socket, keys made per run), --pg (the PostgreSQL
 * store: a throw-away server of the bench's own, tests/fixtures/pg_server,
 * a fresh database per part; fsync and synchronous_commit on, as --sync
 * full on SQLite) and --collector (a collector on the broker's events,
 * whose CPU is counted too).
 * DROVER_BIN names the drover executable (default: drover on PATH).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_cpu.h"
#include "bench_flags.h"
#include "drover.h"
#include "dv_clock.h"
#include "harness.h"
#include "pg_server.h"

#define S_MAX_WORKERS 60 /* the harness runs at most 64 processes */
#define S_MAX_RATES   16

static const char *const s_parts[] = { "all", "throughput", "latency", "memory",
                                       NULL };

static struct {
    int jobs, workers, concurrency, prefetch, queued, only;
    const char *sync, *rate;
    bool curve;     /* CurveZMQ on every socket */
    bool pg;        /* the PostgreSQL store */
    bool collector; /* run a collector too */
    int rates[S_MAX_RATES], nrates;
} s_o;

static const dv_flag_t s_flags[] = {
    DV_FLAG_INTEGER("jobs", &s_o.jobs, 1, 100000000, .arg = "N",
                    .dflt = "100000", .help = "jobs of the throughput part"),
    DV_FLAG_INTEGER("workers", &s_o.workers, 1, S_MAX_WORKERS, .arg = "W",
                    .dflt = "1",
                    .help = "worker supervisors (throughput, latency)"),
    DV_FLAG_INTEGER("concurrency", &s_o.concurrency, 1, 4096, .arg = "C",
                    .dflt = "2", .help = "children per worker"),
    DV_FLAG_INTEGER("prefetch", &s_o.prefetch, -1, 100000, .arg = "P",
                    .dflt = "-1",
                    .help = "the workers' --prefetch (-1: "
                            "theirs)"),
    DV_FLAG_STR("sync", &s_o.sync, .arg = "full|normal|off", .dflt = "full",
                .help = "the broker's --sync"),
    DV_FLAG_INTEGER("queued", &s_o.queued, 1, 100000000, .arg = "M",
                    .dflt = "1000000", .help = "jobs queued (memory part)"),
    DV_FLAG_STR("rate", &s_o.rate, .arg = "R1,R2", .dflt = "1000",
                .help = "submit rates of the latency part, jobs/s, "
                        "comma-separated"),
    DV_FLAG_ONE_OF("only", &s_o.only, s_parts, .dflt = "all",
                   .help = "run only this part"),
    DV_FLAG_ON("curve", &s_o.curve, .help = "CurveZMQ on every socket"),
    DV_FLAG_ON("pg", &s_o.pg,
               .help = "the PostgreSQL store (a throw-away "
                       "server)"),
    DV_FLAG_ON("collector", &s_o.collector,
               .help = "run a collector on the broker's events and count "
                       "its CPU"),
    DV_FLAG_TABLE_END,
};

/* What s_start started. */
typedef struct {
    harness_t *h;
    pid_t workers[S_MAX_WORKERS];
    int nworkers;
    pid_t collector; /* 0: none */
} s_run_t;

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

/* Starts a broker, workers supervisors (of s_o.concurrency children each)
 * and, with collector, a collector, into *r. Exits when one does not
 * start. */
static void
s_start(s_run_t *r, int workers, bool collector)
{
    memset(r, 0, sizeof *r);
    harness_t *h = harness_new();
    r->h = s_live = h;
    if (h && s_o.curve) {
        static const char *const client[] = { "bench", NULL };
        char names[S_MAX_WORKERS][16];
        const char *ws[S_MAX_WORKERS + 1];
        for (int i = 0; i < workers; i++) {
            snprintf(names[i], sizeof names[i], "w%d", i + 1);
            ws[i] = names[i];
        }
        ws[workers] = NULL;
        if (harness_curve(h, "bench", client, NULL, ws, NULL) != 0) {
            fprintf(stderr, "bench: cannot make CurveZMQ keys\n");
            exit(1);
        }
    }
    const char *bargs[] = { "--sync",      s_o.sync, "--log-level",      "info",
                            "--heartbeat", "1",      "--worker-timeout", "5",
                            NULL };
    if (h && s_o.pg)
        s_pg_store(h);
    if (!h || harness_start_broker(h, bargs) <= 0) {
        fprintf(stderr, "bench: broker did not start\n");
        exit(1);
    }
    char conc[16], pre[16];
    snprintf(conc, sizeof conc, "%d", s_o.concurrency);
    snprintf(pre, sizeof pre, "%d", s_o.prefetch);
    const char *wargs[] = { "--concurrency",
                            conc,
                            "--log-level",
                            "info",
                            "--heartbeat",
                            "1",
                            s_o.prefetch >= 0 ? "--prefetch" : NULL,
                            pre,
                            NULL };
    for (int i = 0; i < workers; i++)
        if ((r->workers[r->nworkers++] = harness_start_worker(h, wargs)) <= 0) {
            fprintf(stderr, "bench: worker did not start\n");
            exit(1);
        }
    if (collector) {
        char bind[300], store[300];
        snprintf(bind, sizeof bind, "ipc://%s/collector", h->dir);
        snprintf(store, sizeof store, "%s/collector.db", h->dir);
        const char *cargs[] = { "--events",    h->events,     "--broker",
                                h->clients,    "--bind",      bind,
                                "--store",     store,         "--http",
                                "127.0.0.1:0", "--log-level", "warn",
                                NULL };
        if ((r->collector = harness_start_collector(
                 h, bind, cargs, "collector.log", NULL)) <= 0) {
            fprintf(stderr, "bench: collector did not start\n");
            exit(1);
        }
    }
}

static void
s_stop(s_run_t *r)
{
    harness_destroy(&r->h);
    s_live = NULL;
}

static int
s_submit(harness_t *h, int n, char (**ids_out)[37], double *secs,
         unsigned flags)
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
    int rc = drover_submit_many_ex(h->client, jobs, (size_t)n, acks, flags);
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

/* Waits up to timeout_ms for the n jobs of ids; returns how many
 * succeeded. */
static int
s_wait(harness_t *h, char (*ids)[37], int n, int timeout_ms)
{
    const char **p = calloc((size_t)n, sizeof *p);
    for (int i = 0; i < n; i++)
        p[i] = ids[i];
    int ok = 0;
    drover_wait(h->client, p, (size_t)n, timeout_ms, s_count, &ok);
    free(p);
    return ok;
}

static void
s_throughput(void)
{
    s_run_t r;
    s_start(&r, s_o.workers, s_o.collector);
    harness_t *h = r.h;
    char(*ids)[37];
    bench_cpu_t *before =
        bench_cpu_sample(h->broker, r.workers, r.nworkers, r.collector);
    int64_t t0 = dv_mono_us();
    double submit_s;
    int n = s_submit(h, s_o.jobs, &ids, &submit_s, DROVER_SUBMIT_WAIT);
    int ok = s_wait(h, ids, n, 600000);
    double total_s = (double)(dv_mono_us() - t0) / 1e6;
    /* The collector may still be writing the history of the last jobs
     * (it commits once a second): its share counts once it is idle again
     * (under 20 ms of CPU in 1.5 s; at most 60 s). */
    if (r.collector) {
        int64_t give_up = dv_mono_ms() + 60000;
        for (;;) {
            double a = bench_cpu_process_us(r.collector);
            usleep(1500000);
            double b = bench_cpu_process_us(r.collector);
            if (b - a < 20000 || dv_mono_ms() >= give_up)
                break;
        }
    }
    bench_cpu_t *after =
        bench_cpu_sample(h->broker, r.workers, r.nworkers, r.collector);
    char pre[16] = "default";
    if (s_o.prefetch >= 0)
        snprintf(pre, sizeof pre, "%d", s_o.prefetch);
    printf(
        "throughput: %d no-op jobs, %d worker(s) x %d, prefetch %s, sync=%s%s: "
        "submit %.0f jobs/s, end-to-end %.0f jobs/s (%.2f s), %d succeeded\n",
        n, s_o.workers, s_o.concurrency, pre, s_o.sync,
        r.collector ? ", collector" : "", n / submit_s, n / total_s, total_s,
        ok);
    bench_cpu_print(before, after, n, stdout);
    fflush(stdout);
    bench_cpu_free(&before);
    bench_cpu_free(&after);
    free(ids);
    s_stop(&r);
}

/* The latency part at one rate: jobs due on a schedule of rate a second
 * for five seconds; each pass submits the ones due by then (one at a time
 * while the broker keeps up, else those due together in one message, so
 * a slow commit does not lower the rate). */
static void
s_latency(int rate)
{
    s_run_t r;
    s_start(&r, s_o.workers, s_o.collector);
    harness_t *h = r.h;
    int n = rate * 5, batch = 1000;
    char(*ids)[37] = calloc((size_t)n, 37);
    drover_job_t *jobs = calloc((size_t)batch, sizeof *jobs);
    drover_ack_t *acks = calloc((size_t)batch, sizeof *acks);
    for (int i = 0; i < batch; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "noop";
    }
    h->client = drover_connect(h->clients, 30000);
    bench_cpu_t *before =
        bench_cpu_sample(h->broker, r.workers, r.nworkers, r.collector);
    int64_t t0 = dv_mono_us();
    int sent = 0, rc = DROVER_OK;
    while (sent < n && rc == DROVER_OK) {
        int64_t now = dv_mono_us();
        int64_t due = (now - t0) * rate / 1000000 + 1;
        if (due > n)
            due = n;
        if (due <= sent) {
            int64_t at = t0 + (int64_t)sent * 1000000 / rate;
            struct timespec ts = { 0, (long)(at - now) * 1000 };
            nanosleep(&ts, NULL);
            continue;
        }
        int k = (int)(due - sent) < batch ? (int)(due - sent) : batch;
        if (k == 1) {
            rc = drover_submit(h->client, &jobs[0], ids[sent]);
        } else {
            rc = drover_submit_many(h->client, jobs, (size_t)k, acks);
            for (int i = 0; i < k && rc == DROVER_OK; i++) {
                if (acks[i].error[0])
                    rc = DROVER_EREJECTED;
                memcpy(ids[sent + i], acks[i].id, 37);
            }
        }
        sent += k;
    }
    if (rc != DROVER_OK) {
        fprintf(stderr, "bench: submit: %s\n", drover_last_error(h->client));
        exit(1);
    }
    double achieved = n / ((double)(dv_mono_us() - t0) / 1e6);
    int ok = s_wait(h, ids, n, 120000);
    bench_cpu_t *after =
        bench_cpu_sample(h->broker, r.workers, r.nworkers, r.collector);
    char *body = harness_status(h);
    json_t *st = body ? json_loads(body, 0, NULL) : NULL;
    json_t *c = json_object_get(st, "counters");
    printf(
        "dispatch latency (queued -> started) at %d jobs/s (%.0f reached), "
        "%d jobs, %d worker(s) x %d: p50 %lld us, p99 %lld us\n",
        rate, achieved, ok, s_o.workers, s_o.concurrency,
        (long long)json_integer_value(json_object_get(c, "dispatch_p50_us")),
        (long long)json_integer_value(json_object_get(c, "dispatch_p99_us")));
    /* At a fixed rate, the CPU per job compares set-ups of different
     * sizes (10 slots against 1,000) doing the same work. */
    bench_cpu_print(before, after, n, stdout);
    fflush(stdout);
    bench_cpu_free(&before);
    bench_cpu_free(&after);
    json_decref(st);
    free(body);
    free(jobs);
    free(acks);
    free(ids);
    s_stop(&r);
}

/* Memory per queued job is the slope between two fill levels, so fixed
 * costs (SQLite's page caches, socket buffers) do not count as per-job. */
static void
s_memory(void)
{
    s_run_t r;
    s_start(&r, 0, false);
    harness_t *h = r.h;
    long empty = s_rss_kb(h->broker);
    int first = s_o.queued / 10;
    char(*ids)[37];
    double s1, s2;
    int n1 = s_submit(h, first, &ids, &s1, 0);
    free(ids);
    long at_first = s_rss_kb(h->broker);
    int n2 = s_submit(h, s_o.queued - first, &ids, &s2, 0);
    free(ids);
    long full = s_rss_kb(h->broker);
    int n = n1 + n2;
    printf("memory: %d jobs queued (no payload): broker RSS %ld KiB empty, "
           "%ld KiB at %d, %ld KiB at %d; %.0f bytes per queued job "
           "(slope), %.0f overall; submitted at %.0f jobs/s\n",
           n, empty, at_first, n1, full, n,
           (double)(full - at_first) * 1024.0 / n2,
           (double)(full - empty) * 1024.0 / n, n / (s1 + s2));
    s_stop(&r);
}

/* --rate's list into s_o.rates; 0, or -1 if it is not one. */
static int
s_rates(const char *text)
{
    const char *p = text;
    s_o.nrates = 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1000000 || s_o.nrates == S_MAX_RATES ||
            (*end && *end != ','))
            return -1;
        s_o.rates[s_o.nrates++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return s_o.nrates ? 0 : -1;
}

int
main(int argc, char **argv)
{
    int rc = bench_flags("bench_e2e", s_flags, argc, argv);
    if (rc >= 0)
        return rc;
    if (s_rates(s_o.rate) != 0) {
        fprintf(stderr,
                "bench_e2e: --rate: '%s' is not a list of rates "
                "(1..1000000 jobs/s, at most 16)\n",
                s_o.rate);
        return 2;
    }
    if (s_o.collector && s_o.curve) {
        fprintf(stderr, "bench_e2e: --collector does not go with --curve\n");
        return 2;
    }
    atexit(s_at_exit);
    const char *only = s_parts[s_o.only];
    bool all = !strcmp(only, "all");
    if (all || !strcmp(only, "throughput"))
        s_throughput();
    if (all || !strcmp(only, "latency"))
        for (int i = 0; i < s_o.nrates; i++)
            s_latency(s_o.rates[i]);
    if (all || !strcmp(only, "memory"))
        s_memory();
    pg_server_stop(&s_pg);
    return 0;
}
