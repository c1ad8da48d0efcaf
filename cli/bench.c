/* bench - `drover bench`: the end-to-end benchmark against a running
 * broker. Submits N no-op jobs (type noop, which every worker runs without
 * a handler) in batches through libdrover, as a producer would, waits for
 * all of them, and reports the submit rate, the end-to-end rate (first
 * submit to last result) and the broker's dispatch latency (queued ->
 * started, p50 and p99, from its status counters). An entry of the
 * command table (cli_cmd.h). */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_cmd.h"
#include "cli_out.h"
#include "drover.h"
#include "dv_clock.h"

#define S_SLICE    65536 /* jobs per drover_submit_many call */
#define S_MAX_JOBS 1000000

static struct {
    int jobs;
    const char *queue;
    int64_t timeout_ms, connect_timeout_ms;
} s_o;

static const dv_flag_t s_flags[] = {
    DV_FLAG_INTEGER("jobs", &s_o.jobs, 1, S_MAX_JOBS, .arg = "N",
                    .dflt = "10000", .help = "no-op jobs to submit"),
    DV_FLAG_STR("queue", &s_o.queue, .arg = "QUEUE", .dflt = "default",
                .help = "the queue to submit them to (a worker must serve "
                        "it)"),
    DV_FLAG_DUR("timeout", &s_o.timeout_ms, 1, 86400000, .arg = "SECONDS",
                .dflt = "600",
                .help = "stop waiting for the jobs after this long (exit 6)"),
    DV_FLAG_DUR("connect-timeout", &s_o.connect_timeout_ms, 1, 86400000,
                .arg = "SECONDS", .dflt = "5",
                .help = "how long to wait for the broker's first answer "
                        "(exit 3)"),
    DV_FLAG_TABLE_END,
};

/* The broker's status counters, or NULL (the exit code in *code, said). */
static json_t *
s_counters(const cli_t *c, drover_client_t *d, int *code)
{
    char *text = NULL;
    int rc = drover_ctrl(d, "status", NULL, NULL, &text);
    if (rc != DROVER_OK) {
        const char *why = drover_last_code(d);
        *code = cli_fail(
            c, cli_exit_of(rc, why),
            rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT ? NULL : why,
            "status: %s", drover_last_error(d));
        return NULL;
    }
    json_t *st = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_t *counters = json_incref(json_object_get(st, "counters"));
    json_decref(st);
    if (!json_is_object(counters)) {
        json_decref(counters);
        *code = cli_fail(c, CLI_FAILED, "unreadable",
                         "unreadable status from the broker");
        return NULL;
    }
    return counters;
}

/* What came back while waiting. */
typedef struct {
    size_t succeeded, failed; /* failed: dead, cancelled or unknown */
} s_tally_t;

static int
s_tally(const drover_result_t *r, void *arg)
{
    s_tally_t *t = arg;
    if (!strcmp(r->state, "succeeded"))
        t->succeeded++;
    else
        t->failed++;
    return 0;
}

/* Submits n jobs in slices; their ids go to ids. Returns 0, or the exit
 * code after saying why. */
static int
s_submit(const cli_t *c, drover_client_t *d, size_t n, char (*ids)[37])
{
    drover_job_t *jobs = calloc(S_SLICE, sizeof *jobs);
    drover_ack_t *acks = calloc(S_SLICE, sizeof *acks);
    if (!jobs || !acks) {
        free(jobs);
        free(acks);
        return cli_fail(c, CLI_FAILED, NULL, "out of memory");
    }
    for (size_t i = 0; i < S_SLICE; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "noop";
        jobs[i].queue = s_o.queue;
    }
    int code = 0;
    for (size_t done = 0; done < n && !code;) {
        size_t k = n - done < S_SLICE ? n - done : S_SLICE;
        int rc = drover_submit_many_ex(d, jobs, k, acks, DROVER_SUBMIT_WAIT);
        for (size_t i = 0; i < k && !code; i++) {
            if (!acks[i].error[0]) {
                memcpy(ids[done + i], acks[i].id, 37);
                continue;
            }
            if (acks[i].unanswered)
                code = cli_fail(c, cli_exit_of(rc, NULL), NULL, "submit: %s",
                                acks[i].error);
            else
                code = cli_fail(
                    c, CLI_FAILED, acks[i].code ? acks[i].code : "refused",
                    "submit: the broker refused a job: %s", acks[i].error);
        }
        if (!code && rc != DROVER_OK)
            code = cli_fail(c, cli_exit_of(rc, drover_last_code(d)), NULL,
                            "submit: %s", drover_last_error(d));
        done += k;
    }
    free(jobs);
    free(acks);
    return code;
}

/* Prints the figures; returns the exit code. */
static int
s_report(const cli_t *c, const char *broker, size_t n, double submit_s,
         double total_s, const s_tally_t *t, json_t *counters)
{
    json_int_t p50 =
        json_integer_value(json_object_get(counters, "dispatch_p50_us"));
    json_int_t p99 =
        json_integer_value(json_object_get(counters, "dispatch_p99_us"));
    double submit_rate = submit_s > 0 ? (double)n / submit_s : 0;
    double rate = total_s > 0 ? (double)n / total_s : 0;
    if (c->json) {
        json_t *j = json_pack(
            "{s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:I, s:f, s:I, s:I}", "broker",
            broker, "queue", s_o.queue, "jobs", (json_int_t)n, "succeeded",
            (json_int_t)t->succeeded, "failed", (json_int_t)t->failed,
            "submit_ms", (json_int_t)(submit_s * 1000 + 0.5), "submit_per_s",
            submit_rate, "elapsed_ms", (json_int_t)(total_s * 1000 + 0.5),
            "end_to_end_per_s", rate, "dispatch_p50_us", p50, "dispatch_p99_us",
            p99);
        cli_print_json(j);
        json_decref(j);
    } else {
        printf("submitted %s no-op jobs to queue '%s' in %s: %s jobs/s\n",
               cli_num((int64_t)n), s_o.queue,
               cli_dur((int64_t)(submit_s * 1000 + 0.5)),
               cli_rate(submit_rate));
        printf("all ended in %s: %s jobs/s end to end (%s succeeded, %s "
               "did not)\n",
               cli_dur((int64_t)(total_s * 1000 + 0.5)), cli_rate(rate),
               cli_num((int64_t)t->succeeded), cli_num((int64_t)t->failed));
        printf("dispatch latency (queued -> started) at the broker, since "
               "it started: p50 %s us, p99 %s us\n",
               cli_num(p50), cli_num(p99));
    }
    if (t->failed)
        return cli_fail(c, CLI_FAILED, NULL, "%s job%s did not succeed",
                        cli_num((int64_t)t->failed), t->failed == 1 ? "" : "s");
    return CLI_OK;
}

static int
s_bench(cli_t *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (!*s_o.queue)
        return cli_usage(c, &s_flags[1], "--queue needs a queue name");
    size_t n = (size_t)s_o.jobs;
    int code = 0;
    /* The first answer within --connect-timeout; then a long one, as a
     * slice of many thousand jobs may take a while to commit. */
    drover_client_t *d = drover_connect(c->broker, (int)s_o.connect_timeout_ms);
    if (!d)
        return cli_fail(c, CLI_USAGE, NULL, "%s", drover_last_error(NULL));
    json_t *counters = s_counters(c, d, &code);
    char broker[256];
    snprintf(broker, sizeof broker, "%s", drover_endpoint(d));
    drover_close(&d);
    if (!counters)
        return code;
    json_decref(counters);
    counters = NULL;
    d = drover_connect(broker, 30000);
    char(*ids)[37] = calloc(n, 37);
    const char **p = calloc(n, sizeof *p);
    if (!d || !ids || !p) {
        drover_close(&d);
        free(ids);
        free(p);
        return cli_fail(c, CLI_FAILED, NULL, "out of memory");
    }
    int64_t t0 = dv_mono_us();
    code = s_submit(c, d, n, ids);
    double submit_s = (double)(dv_mono_us() - t0) / 1e6;
    s_tally_t t = { 0, 0 };
    if (!code) {
        for (size_t i = 0; i < n; i++)
            p[i] = ids[i];
        int rc = drover_wait(d, p, n, (int)s_o.timeout_ms, s_tally, &t);
        double total_s = (double)(dv_mono_us() - t0) / 1e6;
        if (rc == DROVER_ETIMEOUT)
            code = cli_fail(c, CLI_TIMEOUT, NULL,
                            "%s of %s jobs ended within --timeout %s",
                            cli_num((int64_t)(t.succeeded + t.failed)),
                            cli_num((int64_t)n), cli_dur(s_o.timeout_ms));
        else if (rc != DROVER_OK)
            code = cli_fail(c, cli_exit_of(rc, drover_last_code(d)), NULL,
                            "wait: %s", drover_last_error(d));
        else if ((counters = s_counters(c, d, &code)) != NULL)
            code = s_report(c, broker, n, submit_s, total_s, &t, counters);
        json_decref(counters);
    }
    drover_close(&d);
    free(ids);
    free(p);
    return code;
}

const cli_cmd_t cli_bench = {
    .name = "bench",
    .summary = "measure a running broker end to end with no-op jobs",
    .about =
        "Submits N no-op jobs (type noop: every worker runs them without a "
        "handler) to a running broker, in batches as a producer would, "
        "waits until all have ended, and prints the submit rate (the jobs "
        "committed by the broker per second), the end-to-end rate (from "
        "the first submit to the last result) and the broker's dispatch "
        "latency (queued -> started, p50 and p99, as its status counters "
        "give them: over every job since the broker started, so a fresh "
        "broker shows this run's alone).\n\n"
        "A worker must serve the queue (--queue), or the jobs wait until "
        "--timeout. The figures are the whole system's on this setup: the "
        "broker's store and sync, the workers' concurrency and prefetch, "
        "and the machine.\n\n"
        "--json prints {\"broker\", \"queue\", \"jobs\", \"succeeded\", "
        "\"failed\", \"submit_ms\", \"submit_per_s\", \"elapsed_ms\", "
        "\"end_to_end_per_s\", \"dispatch_p50_us\", \"dispatch_p99_us\"} "
        "(docs/json.md).\n\n"
        "Exit 0 when every job succeeded; 1 a job was refused or did not "
        "succeed; 3 the broker did not answer; 6 --timeout passed first.",
    .examples = "  drover bench\n"
                "  drover bench --jobs 100000 --json\n"
                "  drover up -- drover bench --jobs 50000\n",
    .flags = s_flags,
    .shared = CLI_BROKER | CLI_JSON,
    .run = s_bench,
};
