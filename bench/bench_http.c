/* bench_http - http jobs through the real broker and one worker against the
 * stand-in LLM API (tests/fixtures/llm_stub) with a fixed latency.
 *
 * For each concurrency C: a fresh broker (SQLite) and stub, one worker with
 * --http-concurrency C and no children to speak of, N jobs submitted in one
 * batch; it prints jobs/s from the first submit to the last result, the
 * ideal C / latency, the worker supervisor's peak resident memory (VmHWM)
 * and the CPU seconds each process used, which says where the time goes.
 *
 *   bench_http [--jobs N] [--concurrency C[,C...]] [--latency MS]
 *              [--keys K] [--stub-threads T] [--sync MODE]
 *
 * DROVER_BIN names the drover executable, LLM_STUB_BIN the stub (both are
 * set by CMake for the build tree's copies).
 */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drover.h"
#include "dv_clock.h"
#include "dv_util.h"
#include "harness.h"

#ifndef LLM_STUB_BIN
#define LLM_STUB_BIN "llm_stub"
#endif

typedef struct {
    int jobs; /* 0: 25 x concurrency */
    int conc[8];
    int nconc;
    int latency_ms;
    int keys;
    int stub_threads;
    const char *sync;
} s_opts_t;

static long
s_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* User + system CPU seconds a process has used so far. */
static double
s_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                     "%lu %lu",
                     &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static bool
s_file_exists(void *arg)
{
    struct stat st;
    return stat((const char *)arg, &st) == 0 && st.st_size > 0;
}

static pid_t
s_start_stub(harness_t *h, const s_opts_t *o, int *port)
{
    char portfile[320], log[320], lat[16], thr[16];
    snprintf(portfile, sizeof portfile, "%s/stub.port", h->dir);
    snprintf(log, sizeof log, "%s/stub.log", h->dir);
    snprintf(lat, sizeof lat, "%d", o->latency_ms);
    snprintf(thr, sizeof thr, "%d", o->stub_threads);
    char *argv[80];
    static char keys[16][32];
    int n = 0;
    argv[n++] = "llm_stub";
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--port-file";
    argv[n++] = portfile;
    argv[n++] = "--latency";
    argv[n++] = lat;
    argv[n++] = "--threads";
    argv[n++] = thr;
    for (int i = 0; i < o->keys && i < 16; i++) {
        snprintf(keys[i], sizeof keys[i], "sk-bench-%02d", i + 1);
        argv[n++] = "--key";
        argv[n++] = keys[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
            close(fd);
        }
        execv(LLM_STUB_BIN, argv);
        _exit(127);
    }
    h->procs[h->nprocs++] = pid;
    if (!harness_wait_until(s_file_exists, portfile, 10000))
        return -1;
    char *text = dv_read_file(portfile, NULL);
    *port = text ? atoi(text) : 0;
    free(text);
    return *port > 0 ? pid : -1;
}

static int
s_count(const drover_result_t *r, void *arg)
{
    int *ok = arg;
    if (!strcmp(r->state, "succeeded"))
        (*ok)++;
    return 0;
}

static int
s_run(const s_opts_t *o, int conc)
{
    int njobs = o->jobs > 0 ? o->jobs : 25 * conc;
    harness_t *h = harness_new();
    int port = 0;
    pid_t stub = h ? s_start_stub(h, o, &port) : -1;
    const char *bargs[] = { "--sync",      o->sync, "--log-level",      "info",
                            "--heartbeat", "1",     "--worker-timeout", "5",
                            NULL };
    if (stub <= 0 || harness_start_broker(h, bargs) <= 0) {
        fprintf(stderr, "bench: stub or broker did not start\n");
        harness_destroy(&h);
        return -1;
    }
    char keys[320], cfg[320], text[2048];
    snprintf(keys, sizeof keys, "%s/keys.txt", h->dir);
    FILE *f = fopen(keys, "w");
    for (int i = 0; f && i < o->keys && i < 16; i++)
        fprintf(f, "sk-bench-%02d\n", i + 1);
    if (f)
        fclose(f);
    snprintf(cfg, sizeof cfg, "%s/worker.json", h->dir);
    snprintf(text, sizeof text,
             "{\"http_concurrency\": %d, \"http\": {\"gen\": {"
             "\"url\": \"http://127.0.0.1:%d/v1/chat/completions\", "
             "\"body\": {\"model\": \"stub-1\", \"messages\": [{\"role\": "
             "\"user\", \"content\": \"{{payload.prompt}}\"}]}, "
             "\"result\": \"/choices/0/message/content\", "
             "\"keys\": {\"file\": \"%s\"}}}}",
             conc, port, keys);
    f = fopen(cfg, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    const char *wargs[] = { "--config",    cfg,          "--concurrency",
                            "1",           "--prefetch", "0",
                            "--log-level", "info",       "--heartbeat",
                            "1",           NULL };
    pid_t worker = harness_start_worker(h, wargs);
    if (worker <= 0) {
        fprintf(stderr, "bench: worker did not start\n");
        harness_destroy(&h);
        return -1;
    }

    drover_job_t *jobs = calloc((size_t)njobs, sizeof *jobs);
    drover_ack_t *acks = calloc((size_t)njobs, sizeof *acks);
    char(*payloads)[64] = calloc((size_t)njobs, sizeof *payloads);
    const char **ids = calloc((size_t)njobs, sizeof *ids);
    for (int i = 0; i < njobs; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "gen";
        snprintf(payloads[i], sizeof payloads[i],
                 "{\"prompt\": \"a title for article %d\"}", i + 1);
        jobs[i].payload_json = payloads[i];
    }
    double cpu0[3] = { s_cpu_s(h->broker), s_cpu_s(worker), s_cpu_s(stub) };
    int64_t t0 = dv_mono_us();
    int rc = drover_submit_many(h->client, jobs, (size_t)njobs, acks);
    int ok = 0;
    if (rc == DROVER_OK) {
        for (int i = 0; i < njobs; i++)
            ids[i] = acks[i].id;
        rc = drover_wait(h->client, ids, (size_t)njobs, 600000, s_count, &ok);
    }
    double secs = (double)(dv_mono_us() - t0) / 1e6;
    double cpu1[3] = { s_cpu_s(h->broker), s_cpu_s(worker), s_cpu_s(stub) };
    long hwm = s_status_kb(worker, "VmHWM");
    double ideal = conc * 1000.0 / o->latency_ms;
    printf("http-concurrency %5d: %6d jobs in %6.2f s = %7.0f jobs/s "
           "(ideal %.0f, %.0f%%); %d succeeded\n",
           conc, njobs, secs, njobs / secs, ideal,
           100.0 * (njobs / secs) / ideal, ok);
    printf("    worker supervisor peak RSS (VmHWM) %ld kB; CPU s: worker "
           "%.2f, broker %.2f, stub %.2f (of %.2f s wall)\n",
           hwm, cpu1[1] - cpu0[1], cpu1[0] - cpu0[0], cpu1[2] - cpu0[2], secs);
    fflush(stdout);
    free(jobs);
    free(acks);
    free(payloads);
    free(ids);
    harness_destroy(&h);
    return rc == DROVER_OK && ok == njobs ? 0 : -1;
}

int
main(int argc, char **argv)
{
    s_opts_t o = { .jobs = 0,
                   .conc = { 200, 1000 },
                   .nconc = 2,
                   .latency_ms = 50,
                   .keys = 8,
                   .stub_threads = 2,
                   .sync = "full" };
    static const struct option opts[] = {
        { "jobs", required_argument, NULL, 'n' },
        { "concurrency", required_argument, NULL, 'c' },
        { "latency", required_argument, NULL, 'l' },
        { "keys", required_argument, NULL, 'k' },
        { "stub-threads", required_argument, NULL, 't' },
        { "sync", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
            o.jobs = atoi(optarg);
            break;
        case 'c': {
            o.nconc = 0;
            char *save = NULL;
            for (char *t = strtok_r(optarg, ",", &save); t && o.nconc < 8;
                 t = strtok_r(NULL, ",", &save))
                o.conc[o.nconc++] = atoi(t);
            break;
        }
        case 'l':
            o.latency_ms = atoi(optarg);
            break;
        case 'k':
            o.keys = atoi(optarg);
            break;
        case 't':
            o.stub_threads = atoi(optarg);
            break;
        case 's':
            o.sync = optarg;
            break;
        default:
            printf("usage: bench_http [--jobs N] [--concurrency C[,C...]] "
                   "[--latency MS]\n"
                   "                  [--keys K] [--stub-threads T] "
                   "[--sync MODE]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (o.latency_ms < 1 || o.keys < 1 || o.keys > 16) {
        fprintf(stderr, "bench_http: --latency >= 1, --keys 1..16\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    printf("bench_http: latency %d ms, %d keys without a limit, stub "
           "threads %d, sync %s, %ld CPUs\n",
           o.latency_ms, o.keys, o.stub_threads, o.sync,
           sysconf(_SC_NPROCESSORS_ONLN));
    int rc = 0;
    for (int i = 0; i < o.nconc; i++)
        if (s_run(&o, o.conc[i]) != 0)
            rc = 1;
    return rc;
}
