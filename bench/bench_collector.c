/* bench_collector - what the collector's history costs per job.
 *
 *   bench_collector [-n JOBS] [-l LAG] [-d DIR]
 *
 * Feeds JOBS no-op jobs' events through the collector's store
 * (collector_store), as the collector's loop hands them over at full rate:
 * groups of 1000 job.submitted events, and each job's job.started and
 * job.succeeded from one broker batch (the start folded into its end),
 * LAG jobs after its submit (default 1000: a job runs as soon as it is
 * submitted; a batch submitted faster than it runs has a larger lag), one
 * commit per 25,000 jobs (about a second of them). Prints the CPU
 * time (user + system of this process) per job. The SQLite file is made
 * in DIR (default: a new directory under the current one, not /tmp,
 * which may be tmpfs) and removed afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "collector_store.h"
#include "dv_clock.h"
#include "dv_id.h"

static double
s_cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

static dv_event_t
s_ev(const char *kind, dv_event_kind_t k, const char *id, uint64_t seq,
     int64_t ts)
{
    dv_event_t ev = { 0 };
    dv_failure_init(&ev.failure);
    ev.kind = dv_str(kind);
    ev.kind_enum = k;
    ev.id = dv_str(id);
    ev.queue = dv_str("default");
    ev.type = dv_str("noop");
    ev.broker = dv_str("01a20000-0000-7000-8000-00000000000b");
    ev.seq = seq;
    ev.ts_ms = ts;
    return ev;
}

int
main(int argc, char **argv)
{
    int jobs = 100000, lag = 1000;
    const char *dir = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "n:l:d:h")) != -1) {
        if (opt == 'n')
            jobs = atoi(optarg);
        else if (opt == 'l')
            lag = atoi(optarg) / 1000 * 1000;
        else if (opt == 'd')
            dir = optarg;
        else {
            fprintf(stderr,
                    "usage: bench_collector [-n JOBS] [-l LAG] [-d DIR]\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (jobs < 1000)
        jobs = 1000;
    char tmpl[] = "bench-collector-XXXXXX";
    char made[1100];
    if (!dir) {
        if (!mkdtemp(tmpl)) {
            perror("mkdtemp");
            return 1;
        }
        dir = tmpl;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/collector.db", dir);
    snprintf(made, sizeof made, "%s", dir);
    collector_store_t *st = collector_store_open(path);
    if (!st)
        return 1;
    char(*ids)[37] = calloc((size_t)jobs, sizeof *ids);
    for (int i = 0; i < jobs; i++) {
        dv_id_t id;
        dv_id_new(&id);
        dv_id_format(&id, ids[i]);
    }
    const char *broker = "tcp://127.0.0.1:7702";
    uint64_t seq = 0;
    int64_t ts = dv_now_ms();
    double t0 = s_cpu_us();
    int64_t w0 = dv_mono_us();
    if (lag < 1000)
        lag = 1000;
    /* Group g submits jobs g..g+999 and ends those LAG - 1000 before. */
    for (int g = 0; g < jobs + lag - 1000; g += 1000) {
        int n = g >= jobs ? 0 : jobs - g < 1000 ? jobs - g : 1000;
        for (int i = 0; i < n; i++) {
            dv_event_t ev = s_ev("job.submitted", DV_EV_JOB_SUBMITTED,
                                 ids[g + i], ++seq, ts);
            ev.state = DV_STATE_QUEUED;
            collector_store_event(st, broker, &ev, 0);
        }
        ts++;
        int e0 = g - (lag - 1000);
        int ne = e0 < 0 ? 0 : jobs - e0 < 1000 ? jobs - e0 : 1000;
        for (int i = 0; i < ne; i++) {
            int j = e0 + i;
            dv_event_t s =
                s_ev("job.started", DV_EV_JOB_STARTED, ids[j], ++seq, ts);
            s.worker = dv_str("w1");
            s.attempt = 1;
            dv_event_t e = s_ev("job.succeeded", DV_EV_JOB_SUCCEEDED, ids[j],
                                ++seq, ts + 1);
            e.worker = dv_str("w1");
            e.attempt = 1;
            collector_store_fold_t none = { .history_only = true };
            collector_store_fold_t f = { .started = true,
                                         .started_ms = ts,
                                         .wait_ms = 1 };
            collector_store_event_fold(st, broker, &s, 0, &none);
            collector_store_event_fold(st, broker, &e, 1, &f);
        }
        ts++;
        if ((g + 1000) % 25000 == 0)
            collector_store_commit(st);
    }
    collector_store_commit(st);
    double cpu = s_cpu_us() - t0;
    int64_t wall = dv_mono_us() - w0;
    printf("collector history: %d jobs, %.2f us of CPU per job, %.0f jobs/s "
           "(one thread)\n",
           jobs, cpu / jobs, (double)jobs * 1e6 / (double)wall);
    collector_store_close(&st);
    free(ids);
    char rm[1300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", made);
    if (system(rm) != 0)
        fprintf(stderr, "bench_collector: could not remove %s\n", made);
    return 0;
}
