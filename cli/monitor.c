/* Commands that ask the collector: `drover status`, `workers`, `queues`,
 * `jobs`, `job`, `watch`, `health`; and the workers' view of the API keys
 * that `drover keys` (cli/keys.c) falls back to.
 *
 * They speak the same wire protocol as the broker's clients socket (ctrl
 * in, reply out), so libdrover is the client. Every listing has --json,
 * which prints the collector's answer as it is; the tables fit in 80
 * columns. Exit 3 whenever the collector (or, for `status`, the broker
 * too) cannot be reached. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "drover.h"
#include "dv_clock.h"
#include "dv_curve_client.h"
#include "dv_str.h"
#include "monitor.h"

#define S_EXIT_UNREACHABLE 3
#define S_TIMEOUT_MS       3000

/* ---- talking to the collector -------------------------------------------- */

const char *
monitor_endpoint(const char *flag)
{
    if (flag && *flag)
        return flag;
    const char *env = getenv("DROVER_COLLECTOR");
    return env && *env ? env : MONITOR_DEFAULT_ENDPOINT;
}

/* Why the last monitor_query failed. */
static char s_query_err[512];

/* Keeps why a query failed, and prints it as "drover CMD: ..." unless
 * quiet. */
__attribute__((format(printf, 3, 4))) static void
s_said(bool quiet, const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_query_err, sizeof s_query_err, fmt, ap);
    va_end(ap);
    if (!quiet)
        fprintf(stderr, "drover %s: %s\n", cmd, s_query_err);
}

const char *
monitor_query_error(void)
{
    return s_query_err;
}

int
monitor_query(const char *endpoint, const char *cmd, const char *verb,
              const char *id, const char *args_json, int timeout_ms,
              json_t **body_out, bool quiet)
{
    *body_out = NULL;
    s_query_err[0] = '\0';
    /* The collector's query socket: CurveZMQ when the collector's
     * certificate is given (DROVER_COLLECTOR_CURVE_SERVER, which
     * --collector-curve-server sets), with our own key
     * (DROVER_CURVE_SECRET); else plain. DROVER_CURVE_SERVER names the
     * broker's certificate, never the collector's. */
    const char *server = getenv(DV_CURVE_ENV_COLLECTOR_SERVER);
    bool curve = server && *server;
    drover_opts_t opts;
    drover_opts_init(&opts);
    opts.endpoints = endpoint;
    opts.timeout_ms = timeout_ms;
    opts.curve_secret = curve ? NULL : "";
    opts.curve_server = curve ? server : "";
    drover_client_t *c = drover_connect_opts(&opts);
    if (!c) {
        s_said(quiet, cmd, "%s", drover_last_error(NULL));
        return 2;
    }
    drover_ctrl_t req = { .verb = verb, .id = id, .args_json = args_json };
    char *text = NULL;
    int rc = drover_ctrl_ex(c, &req, &text);
    int code = 0;
    if (rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT) {
        s_said(quiet, cmd,
               "cannot reach the collector at %s (no answer within %.1f s). "
               "Is `drover collector` running? Point at it with --collector "
               "or DROVER_COLLECTOR.%s",
               endpoint, timeout_ms / 1000.0,
               curve ? " CurveZMQ: is DROVER_COLLECTOR_CURVE_SERVER "
                       "the collector's certificate, and our key in one "
                       "of its allow-lists?"
                     : "");
        code = S_EXIT_UNREACHABLE;
    } else if (rc != DROVER_OK) {
        s_said(quiet, cmd, "%s", drover_last_error(c));
        code = 1;
    } else {
        json_error_t err;
        *body_out = text ? json_loads(text, 0, &err) : json_object();
        if (!*body_out) {
            s_said(quiet, cmd, "unreadable answer: %s", err.text);
            code = 1;
        }
    }
    free(text);
    drover_close(&c);
    return code;
}

/* ---- formatting ---------------------------------------------------------- */

/* Rotating buffers, so several formatted values fit in one printf. */
static char *
s_buf(void)
{
    static char bufs[16][48];
    static int next;
    return bufs[next++ & 15];
}

static const char *
s_time(int64_t ms)
{
    char *b = s_buf();
    if (ms <= 0)
        return "-";
    return dv_time_format(ms, b, 48);
}

int64_t
monitor_int(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? json_integer_value(v)
                              : (int64_t)json_number_value(v);
}

const char *
monitor_str(const json_t *o, const char *key, const char *dflt)
{
    const json_t *v = json_object_get(o, key);
    const char *s = json_string_value(v);
    if (!s)
        return dflt;
    /* Text from the wire (handler messages, results) may hold terminal
     * escapes: printed escaped. Names are checked at the broker already,
     * so this is rarely more than the check. */
    size_t len = json_string_length(v);
    if (!dv_name_check(s, len))
        return s;
    static char *escaped[16];
    static int next;
    char *e = dv_text_escape(s, len);
    if (!e)
        return "?";
    char **slot = &escaped[next++ & 15];
    free(*slot);
    *slot = e;
    return e;
}

/* The first of a rates array [1m, 5m, 15m]. */
static double
s_rate1(const json_t *rates, const char *kind)
{
    return json_number_value(json_array_get(json_object_get(rates, kind), 0));
}

const char *
monitor_hint(const char *category)
{
    static const struct {
        const char *category, *hint;
    } hints[] = {
        { "timeout", "the attempt ran past its timeout: raise --timeout or "
                     "look at slow upstreams" },
        { "rate_limited", "the upstream said slow down (429): add keys, lower "
                          "the queue's rate (drover limit), or wait" },
        { "auth", "credentials were refused (401/403): check the API key; "
                  "`drover keys` shows disabled ones" },
        { "invalid_input", "the payload cannot be processed: fix it; a "
                           "retry will fail the same way" },
        { "upstream", "the upstream failed (5xx, reset, no answer): often "
                      "transient; check the service" },
        { "resource_exhausted", "the handler hit a memory or size limit: "
                                "raise the worker's limits or split the job" },
        { "crashed", "the handler process died from a signal: see the "
                     "worker's log and the handler" },
        { "lost", "its worker died or went silent: see that worker's host "
                  "and log" },
        { "handler", "the handler reported a failure: its message says why" },
        { "unknown_type", "no handler for this type on that worker: start "
                          "workers that have it (--exec TYPE=CMD)" },
        { "cancelled", "it was cancelled on request" },
    };
    for (size_t i = 0; category && i < sizeof hints / sizeof hints[0]; i++)
        if (!strcmp(hints[i].category, category))
            return hints[i].hint;
    return NULL;
}

static void
s_print_json(const json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (text)
        printf("%s\n", text);
    free(text);
}

/* ---- option parsing ------------------------------------------------------ */

typedef struct {
    const char *collector;
    const char *broker;
    bool json;
    /* jobs */
    const char *state, *queue, *type, *batch, *since;
    int limit;
    /* watch */
    double interval_s, timeout_s;
} s_opts_t;

enum {
    O_COLLECTOR = 256,
    O_BROKER,
    O_JSON,
    O_STATE,
    O_QUEUE,
    O_TYPE,
    O_BATCH,
    O_SINCE,
    O_LIMIT,
    O_INTERVAL,
    O_TIMEOUT
};

/* Parses the options every monitor command shares plus those in allowed (a
 * set of O_* flags), and requires exactly nargs arguments after them (at
 * argv[optind]). Returns -1 to go on, else an exit code. */
static int
s_parse(int argc, char **argv, const char *usage, const int *allowed, int nargs,
        s_opts_t *o)
{
    static const struct option all[] = {
        { "collector", required_argument, 0, O_COLLECTOR },
        { "broker", required_argument, 0, O_BROKER },
        { "json", no_argument, 0, O_JSON },
        { "state", required_argument, 0, O_STATE },
        { "queue", required_argument, 0, O_QUEUE },
        { "type", required_argument, 0, O_TYPE },
        { "batch", required_argument, 0, O_BATCH },
        { "since", required_argument, 0, O_SINCE },
        { "limit", required_argument, 0, O_LIMIT },
        { "interval", required_argument, 0, O_INTERVAL },
        { "timeout", required_argument, 0, O_TIMEOUT },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    memset(o, 0, sizeof *o);
    o->limit = 50;
    o->interval_s = 1.0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", all, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        bool ok = c == O_COLLECTOR || c == O_JSON;
        for (int i = 0; allowed && allowed[i]; i++)
            ok |= allowed[i] == c;
        if (!ok || c == '?') {
            fputs(usage, stderr);
            return 2;
        }
        char *end;
        switch (c) {
        case O_COLLECTOR:
            o->collector = optarg;
            break;
        case O_BROKER:
            o->broker = optarg;
            break;
        case O_JSON:
            o->json = true;
            break;
        case O_STATE:
            o->state = optarg;
            break;
        case O_QUEUE:
            o->queue = optarg;
            break;
        case O_TYPE:
            o->type = optarg;
            break;
        case O_BATCH:
            o->batch = optarg;
            break;
        case O_SINCE:
            o->since = optarg;
            break;
        case O_LIMIT:
            o->limit = (int)strtol(optarg, &end, 10);
            if (*end || end == optarg || o->limit < 1 || o->limit > 1000) {
                fprintf(stderr, "drover: --limit: a number 1..1000\n");
                return 2;
            }
            break;
        case O_INTERVAL:
        case O_TIMEOUT: {
            int64_t ms;
            if (dv_duration_parse(optarg, &ms) != 0 ||
                (c == O_INTERVAL && ms < 100)) {
                fprintf(stderr, "drover: --%s: not a duration: '%s'\n",
                        c == O_INTERVAL ? "interval" : "timeout", optarg);
                return 2;
            }
            if (c == O_INTERVAL)
                o->interval_s = ms / 1000.0;
            else
                o->timeout_s = ms / 1000.0;
            break;
        }
        }
    }
    if (optind != argc - nargs) {
        fputs(usage, stderr);
        return 2;
    }
    return -1;
}

/* ---- status -------------------------------------------------------------- */

static void
s_print_queue_table(const json_t *queues)
{
    printf("%-16s %7s %6s %5s %4s %6s %6s %6s %8s %8s\n", "QUEUE", "QUEUED",
           "SCHED", "RUN", "WRK", "IN/s", "OK/s", "FAIL/s", "WAIT p99",
           "RUN p99");
    size_t i;
    json_t *q;
    json_array_foreach(queues, i, q)
    {
        const json_t *rates = json_object_get(q, "rates");
        const json_t *wait = json_object_get(q, "wait_ms");
        const json_t *run = json_object_get(q, "run_ms");
        char name[32];
        snprintf(name, sizeof name, "%s%s", monitor_str(q, "name", "?"),
                 json_is_true(json_object_get(q, "paused")) ? " (p)" : "");
        printf("%-16.16s %7s %6s %5s %4s %6s %6s %6s %8s %8s\n", name,
               cli_num(monitor_int(q, "queued")),
               cli_num(monitor_int(q, "scheduled")),
               cli_num(monitor_int(q, "running")),
               cli_num(monitor_int(q, "workers")),
               cli_rate(s_rate1(rates, "submitted")),
               cli_rate(s_rate1(rates, "succeeded")),
               cli_rate(s_rate1(rates, "failed")),
               monitor_int(wait, "count") ? cli_dur(monitor_int(wait, "p99"))
                                          : "-",
               monitor_int(run, "count") ? cli_dur(monitor_int(run, "p99"))
                                         : "-");
    }
    if (json_array_size(queues) == 0)
        printf("(no queues yet)\n");
}

static void
s_print_failures(const json_t *failures)
{
    const json_t *cats = json_object_get(failures, "categories");
    if (json_array_size(cats) == 0) {
        printf("\nno failed attempts in the last hour\n");
        return;
    }
    printf("\nfailed attempts in the last hour, by category:\n");
    size_t i;
    json_t *c;
    json_array_foreach(cats, i, c)
    {
        const char *cat = monitor_str(c, "category", "unknown");
        const char *hint = monitor_hint(cat);
        printf("  %-18s %7s  %.49s\n", cat, cli_num(monitor_int(c, "count")),
               hint ? hint : "");
    }
}

void
monitor_print_leases(const json_t *counters)
{
    int64_t stale = monitor_int(counters, "stale");
    int64_t adopted = monitor_int(counters, "adopted");
    int64_t revoked = monitor_int(counters, "revoked");
    int64_t rejoining = monitor_int(counters, "rejoining");
    if (!stale && !adopted && !revoked && !rejoining)
        return;
    printf("  leases: %s stale reports refused, %s executions taken back "
           "after a restart, %s held jobs revoked",
           cli_num(stale), cli_num(adopted), cli_num(revoked));
    if (rejoining)
        printf("; %s recovered jobs wait for their workers to rejoin",
               cli_num(rejoining));
    printf("\n");
}

static void
s_print_health(const json_t *h)
{
    const json_t *reasons = json_object_get(h, "reasons");
    printf("\nhealth: %s\n", monitor_str(h, "state", "?"));
    size_t i;
    json_t *r;
    json_array_foreach(reasons, i, r) printf("  - %s\n", json_string_value(r));
}

static void
s_print_status(const json_t *st)
{
    int64_t now = dv_now_ms();
    const json_t *col = json_object_get(st, "collector");
    printf("collector up %s, %s events, %s gaps, history %s\n",
           cli_dur(monitor_int(col, "uptime_ms")),
           cli_num(monitor_int(col, "events")),
           cli_num(monitor_int(col, "gaps")), monitor_str(col, "store", "?"));
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(st, "brokers"), i, b)
    {
        const json_t *last = json_object_get(b, "last_event_ms");
        printf("broker %s  %s%s  seq %s  last event %s\n",
               monitor_str(b, "endpoint", "?"), monitor_str(b, "state", "?"),
               json_is_true(json_object_get(b, "synced")) ? "" : " (resyncing)",
               cli_num(monitor_int(b, "last_seq")),
               json_is_integer(last) ? cli_dur(now - json_integer_value(last))
                                     : "never");
        if (json_object_get(b, "error"))
            printf("  %s\n", monitor_str(b, "error", ""));
        monitor_print_leases(json_object_get(b, "counters"));
        const json_t *sf = json_object_get(b, "store_failure");
        if (sf) {
            int64_t since = monitor_int(sf, "since_ms");
            printf("  store FAILING: %s for %s; %s jobs refused, %s writes "
                   "waiting (submits refused, dispatch paused)\n",
                   monitor_str(sf, "error", "?"),
                   since > 0 ? cli_dur(now - since) : "?",
                   cli_num(monitor_int(sf, "refused")),
                   cli_num(monitor_int(sf, "waiting")));
        }
    }
    const json_t *w = json_object_get(st, "workers");
    printf("workers %s online: %s busy, %s idle, %s draining; %s of %s "
           "slots busy",
           cli_num(monitor_int(w, "online")), cli_num(monitor_int(w, "busy")),
           cli_num(monitor_int(w, "idle")), cli_num(monitor_int(w, "draining")),
           cli_num(monitor_int(w, "busy_slots")),
           cli_num(monitor_int(w, "slots")));
    if (monitor_int(w, "offline"))
        printf("; %s gone", cli_num(monitor_int(w, "offline")));
    printf("\n");
    const json_t *r = json_object_get(st, "rates");
    printf("jobs/s over 1m: in %s, succeeded %s, failed %s, dead %s\n\n",
           cli_rate(s_rate1(r, "submitted")), cli_rate(s_rate1(r, "succeeded")),
           cli_rate(s_rate1(r, "failed")), cli_rate(s_rate1(r, "dead")));
    s_print_queue_table(json_object_get(st, "queues"));
    s_print_failures(json_object_get(st, "failures"));
    s_print_health(json_object_get(st, "health"));
}

int
monitor_status_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover status [--collector EP] [--broker EP] [--json]\n"
        "\n"
        "One screen: brokers, workers online and busy, queues with depth,\n"
        "rates and latency, failed attempts by category, health. Asks the\n"
        "collector; when it cannot be reached, shows the broker's own view\n"
        "(queues, workers, counters) instead. Exit 3 if neither answers.\n";
    static const int allowed[] = { O_BROKER, 0 };
    s_opts_t o;
    int r = s_parse(argc, argv, usage, allowed, 0, &o);
    if (r >= 0)
        return r;
    const char *ep = monitor_endpoint(o.collector);
    json_t *st = NULL;
    int code =
        monitor_query(ep, "status", "status", NULL, NULL, 1500, &st, true);
    if (code == 0) {
        if (o.json)
            s_print_json(st);
        else
            s_print_status(st);
        json_decref(st);
        return 0;
    }
    fprintf(stderr,
            "drover status: the collector at %s does not answer; showing the "
            "broker's own view\n",
            ep);
    char *args[6];
    int n = 0;
    args[n++] = "status";
    if (o.broker) {
        args[n++] = "--broker";
        args[n++] = (char *)o.broker;
    }
    if (o.json)
        args[n++] = "--json";
    args[n] = NULL;
    return status_main(n, args);
}

/* The start of a listing command without filters (workers, queues):
 * parses its flags, asks the collector for verb, and with --json prints the
 * answer. Returns -1 with *body (caller releases it) for the text view,
 * else the exit code. */
static int
s_listing(int argc, char **argv, const char *usage, const char *verb,
          json_t **body)
{
    s_opts_t o;
    int r = s_parse(argc, argv, usage, NULL, 0, &o);
    if (r >= 0)
        return r;
    int code = monitor_query(monitor_endpoint(o.collector), verb, verb, NULL,
                             NULL, S_TIMEOUT_MS, body, false);
    if (code)
        return code;
    if (o.json) {
        s_print_json(*body);
        json_decref(*body);
        return 0;
    }
    return -1;
}

/* ---- workers ------------------------------------------------------------- */

int
workers_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover workers [--collector EP] [--json]\n"
        "\n"
        "Every worker supervisor the collector knows: state (busy, idle,\n"
        "draining; left or expired for ten minutes after it went), child\n"
        "slots, busy children, jobs leased to it (running, or held ahead of\n"
        "a free child), attempts processed and failed, time since it was\n"
        "last heard of, and the jobs it runs.\n";
    json_t *body;
    int r = s_listing(argc, argv, usage, "workers", &body);
    if (r >= 0)
        return r;
    int64_t now = dv_now_ms();
    const json_t *workers = json_object_get(body, "workers");
    /* With several brokers, say which one each group belongs to. */
    const char *last_broker = NULL;
    bool many = false;
    size_t i;
    json_t *w;
    json_array_foreach(workers, i, w)
    {
        const char *b = monitor_str(w, "broker", "");
        if (last_broker && strcmp(b, last_broker))
            many = true;
        last_broker = b;
    }
    printf("%-22s %-8s %5s %4s %7s %10s %7s %6s\n", "WORKER", "STATE", "SLOTS",
           "BUSY", "LEASED", "PROCESSED", "FAILED", "SEEN");
    last_broker = NULL;
    json_array_foreach(workers, i, w)
    {
        const char *b = monitor_str(w, "broker", "");
        if (many && (!last_broker || strcmp(b, last_broker)))
            printf("broker %s\n", b);
        last_broker = b;
        const json_t *busy = json_object_get(w, "busy");
        printf("%-22.22s %-8s %5s %4s %7s %10s %7s %6s\n",
               monitor_str(w, "name", "?"), monitor_str(w, "state", "?"),
               cli_num(monitor_int(w, "concurrency")),
               json_is_integer(busy) ? cli_num(json_integer_value(busy)) : "-",
               cli_num(monitor_int(w, "running")),
               cli_num(monitor_int(w, "processed")),
               cli_num(monitor_int(w, "failed")),
               cli_dur(monitor_int(w, "heartbeat_age_ms")));
        const json_t *jobs = json_object_get(w, "jobs");
        size_t j;
        json_t *job;
        json_array_foreach(jobs, j, job)
        {
            if (j == 5) {
                printf("    ... and %zu more\n", json_array_size(jobs) - 5);
                break;
            }
            char prog[64] = "";
            if (monitor_int(job, "total"))
                snprintf(prog, sizeof prog, "  %" PRId64 "/%" PRId64,
                         monitor_int(job, "current"),
                         monitor_int(job, "total"));
            printf("    %s %-12.12s #%" PRId64 " %s%s\n",
                   monitor_str(job, "id", "?"), monitor_str(job, "type", "?"),
                   monitor_int(job, "attempt"),
                   cli_dur(now - monitor_int(job, "started_at")), prog);
        }
    }
    if (json_array_size(workers) == 0)
        printf("(no workers)\n");
    json_decref(body);
    return 0;
}

/* ---- queues -------------------------------------------------------------- */

static void
s_print_latency(const char *what, const json_t *list)
{
    printf("\n%-16s %8s %8s %8s %8s %8s %8s\n", what, "WAIT p50", "p95", "p99",
           "RUN p50", "p95", "p99");
    size_t i;
    json_t *q;
    json_array_foreach(list, i, q)
    {
        const json_t *wt = json_object_get(q, "wait_ms");
        const json_t *rn = json_object_get(q, "run_ms");
        bool hw = monitor_int(wt, "count") > 0;
        bool hr = monitor_int(rn, "count") > 0;
        printf("%-16.16s %8s %8s %8s %8s %8s %8s\n",
               monitor_str(q, "name", "?"),
               hw ? cli_dur(monitor_int(wt, "p50")) : "-",
               hw ? cli_dur(monitor_int(wt, "p95")) : "-",
               hw ? cli_dur(monitor_int(wt, "p99")) : "-",
               hr ? cli_dur(monitor_int(rn, "p50")) : "-",
               hr ? cli_dur(monitor_int(rn, "p95")) : "-",
               hr ? cli_dur(monitor_int(rn, "p99")) : "-");
    }
}

int
queues_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover queues [--collector EP] [--json]\n"
        "\n"
        "Every queue over all brokers: jobs queued, scheduled and running,\n"
        "workers serving it, jobs/s submitted, succeeded and failed over the\n"
        "last minute, and wait and run time percentiles (last 5-10 minutes),\n"
        "then the same percentiles per job type. (p) marks a paused queue.\n";
    json_t *body;
    int r = s_listing(argc, argv, usage, "queues", &body);
    if (r >= 0)
        return r;
    s_print_queue_table(json_object_get(body, "queues"));
    s_print_latency("QUEUE", json_object_get(body, "queues"));
    s_print_latency("TYPE", json_object_get(body, "types"));
    json_decref(body);
    return 0;
}

/* ---- jobs ---------------------------------------------------------------- */

static bool
s_valid_state(const char *s)
{
    static const char *states[] = { "queued",    "scheduled", "running",
                                    "succeeded", "dead",      "cancelled" };
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        if (!strcmp(states[i], s))
            return true;
    return false;
}

int
jobs_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover jobs [--state S] [--queue Q] [--type T] [--batch B]\n"
        "                   [--since WHEN] [--limit N] [--collector EP]\n"
        "                   [--json]\n"
        "\n"
        "Jobs from the collector's history, most recently active first.\n"
        "  --state S     queued, scheduled, running, succeeded, dead or\n"
        "                cancelled\n"
        "  --since WHEN  active since: a duration ago (30s, 10m, 2h), an ISO\n"
        "                8601 time, or @EPOCH_SECONDS\n"
        "  --limit N     at most N jobs (1..1000, default 50)\n"
        "Failed, dead and cancelled jobs show their last error below them.\n";
    static const int allowed[] = { O_STATE, O_QUEUE, O_TYPE, O_BATCH,
                                   O_SINCE, O_LIMIT, 0 };
    s_opts_t o;
    int r = s_parse(argc, argv, usage, allowed, 0, &o);
    if (r >= 0)
        return r;
    if (o.state && !s_valid_state(o.state)) {
        fprintf(stderr, "drover jobs: --state: one of queued, scheduled, "
                        "running, succeeded, dead, cancelled\n");
        return 2;
    }
    json_t *args = json_pack("{s:i}", "limit", o.limit);
    if (o.state)
        json_object_set_new(args, "state", json_string(o.state));
    if (o.queue)
        json_object_set_new(args, "queue", json_string(o.queue));
    if (o.type)
        json_object_set_new(args, "type", json_string(o.type));
    if (o.batch)
        json_object_set_new(args, "batch", json_string(o.batch));
    if (o.since) {
        int64_t ms;
        if (dv_duration_parse(o.since, &ms) == 0) {
            ms = dv_now_ms() - ms;
        } else if (dv_time_parse(o.since, &ms) != 0) {
            fprintf(stderr, "drover jobs: --since: a duration (10m), an ISO "
                            "8601 time or @EPOCH_SECONDS\n");
            json_decref(args);
            return 2;
        }
        json_object_set_new(args, "since", json_integer(ms > 0 ? ms : 1));
    }
    char *args_json = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    json_t *body;
    int code = monitor_query(monitor_endpoint(o.collector), "jobs", "jobs",
                             NULL, args_json, S_TIMEOUT_MS, &body, false);
    free(args_json);
    if (code)
        return code;
    if (o.json) {
        s_print_json(body);
        json_decref(body);
        return 0;
    }
    int64_t now = dv_now_ms();
    const json_t *jobs = json_object_get(body, "jobs");
    printf("%-36s %-9s %-9s %-9s %3s %7s\n", "ID", "STATE", "QUEUE", "TYPE",
           "ATT", "ACTIVE");
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j)
    {
        printf("%-36s %-9.9s %-9.9s %-9.9s %3" PRId64 " %7s\n",
               monitor_str(j, "id", "?"), monitor_str(j, "state", "?"),
               monitor_str(j, "queue", "?"), monitor_str(j, "type", "?"),
               monitor_int(j, "attempts"),
               cli_dur(now - monitor_int(j, "updated_at")));
        const char *state = monitor_str(j, "state", "");
        const char *cat = monitor_str(j, "category", NULL);
        if (cat && strcmp(state, "succeeded") && strcmp(state, "running"))
            printf("    %s: %.66s\n", cat, monitor_str(j, "error", ""));
    }
    if (json_array_size(jobs) == 0)
        printf("(no jobs match)\n");
    else if ((int)json_array_size(jobs) >= o.limit)
        printf("(first %d; --limit shows more)\n", o.limit);
    json_decref(body);
    return 0;
}

/* ---- job ----------------------------------------------------------------- */

/* Asks the broker for its view of job id (ctrl job). Returns a new JSON
 * object, or NULL with a note saying why there is none. */
static json_t *
s_broker_job(const char *broker, const char *id, char *note, size_t size)
{
    drover_client_t *c = drover_connect(broker, 1500);
    char *text = NULL;
    int rc = c ? drover_ctrl(c, "job", id, NULL, &text) : DROVER_EUNREACHABLE;
    json_t *job = NULL;
    if (rc == DROVER_OK && text) {
        job = json_loads(text, 0, NULL);
        if (!json_is_object(job)) {
            json_decref(job);
            job = NULL;
            snprintf(note, size, "unknown: unreadable answer from the broker");
        }
    } else if (rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT) {
        snprintf(note, size, "unknown: the broker does not answer");
    } else {
        snprintf(note, size, "unknown: %s", c ? drover_last_error(c) : "");
    }
    free(text);
    drover_close(&c);
    return job;
}

/* The result in the broker's view of a job (NULL: none, with a note
 * saying why). Returns a new reference. */
static json_t *
s_broker_result(const json_t *bjob, char *note, size_t size)
{
    json_t *result = bjob ? json_object_get(bjob, "result") : NULL;
    if (!result || json_is_null(result)) {
        if (bjob)
            snprintf(note, size,
                     "none (the broker keeps results for its "
                     "--result-ttl)");
        return NULL;
    }
    return json_incref(result);
}

/* The broker's stored attempt number n (its failure details and stderr
 * tail), or NULL. */
static const json_t *
s_broker_attempt(const json_t *bjob, int64_t n)
{
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(bjob, "attempts"), i, a)
    {
        if (monitor_int(a, "attempt") == n)
            return a;
    }
    return NULL;
}

/* Copies the broker's details and stderr tail into the collector's
 * attempts of the current round (the broker keeps the latest attempt of
 * each number; an operator's retry starts the numbers again). */
static void
s_merge_details(json_t *job, const json_t *bjob)
{
    int64_t round = monitor_int(job, "round");
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(job, "attempts"), i, a)
    {
        if (json_is_integer(json_object_get(a, "round")) &&
            monitor_int(a, "round") != round)
            continue;
        const json_t *b = s_broker_attempt(bjob, monitor_int(a, "attempt"));
        static const char *const keys[] = { "details", "stderr" };
        for (size_t k = 0; b && k < 2; k++) {
            json_t *v = json_object_get(b, keys[k]);
            if (json_is_string(v))
                json_object_set(a, keys[k], v);
        }
    }
}

/* Prints a result (JSON), or the note saying why there is none. */
static void
s_print_result(json_t *result, const char *note)
{
    if (!result) {
        printf("result    %s\n", note);
        return;
    }
    char *text = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t n = text ? strlen(text) : 0;
    printf("result    %zu bytes of JSON: %.60s%s\n", n, text ? text : "",
           n > 60 ? "..." : "");
    free(text);
}

/* Prints text (details or a stderr tail) as an indented block under
 * its label; a text the attempt before showed is named, not repeated. */
static void
s_print_block(const char *label, const char *text, const char **prev,
              int64_t prev_attempt)
{
    if (!text || !*text)
        return;
    if (*prev && !strcmp(*prev, text)) {
        printf("      %s: as attempt %" PRId64 "\n", label, prev_attempt);
        return;
    }
    *prev = text;
    printf("      %s:\n", label);
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        printf("        %.*s\n", n, p);
        p += n + (nl ? 1 : 0);
    }
}

/* What the attempts printed so far showed (for s_print_block). */
typedef struct {
    const char *details, *stderr_tail;
    int64_t details_at, stderr_at;
} s_shown_t;

/* One attempt: a row, then its progress and failure below it. The hint
 * is left out when the job's own error line gave the same one. */
static void
s_print_attempt(const json_t *a, int64_t rounds, const char *job_category,
                s_shown_t *shown)
{
    char num[32];
    if (rounds > 0)
        snprintf(num, sizeof num, "%" PRId64 ".%" PRId64,
                 monitor_int(a, "round"), monitor_int(a, "attempt"));
    else
        snprintf(num, sizeof num, "%" PRId64, monitor_int(a, "attempt"));
    const json_t *run = json_object_get(a, "run_ms");
    int64_t started_at = monitor_int(a, "started_at");
    int64_t took = json_is_integer(run) ? json_integer_value(run) : -1;
    if (took < 0 && started_at && monitor_int(a, "finished_at") >= started_at)
        took = monitor_int(a, "finished_at") - started_at; /* broker's view */
    printf("%-5s %-20.20s %-24s %8s  %s\n", num, monitor_str(a, "worker", "-"),
           started_at ? s_time(started_at) : "-",
           took >= 0 ? cli_dur(took) : "-",
           monitor_str(a, "outcome", "running"));
    if (json_is_integer(json_object_get(a, "progress_current")))
        printf("      progress %" PRId64 "/%" PRId64 " %s\n",
               monitor_int(a, "progress_current"),
               monitor_int(a, "progress_total"),
               monitor_str(a, "progress_message", ""));
    const char *cat = monitor_str(a, "category", NULL);
    if (!cat)
        return;
    printf("      %s: %s\n", cat, monitor_str(a, "message", ""));
    char extra[160] = "";
    size_t n = 0;
    if (json_is_integer(json_object_get(a, "exit_code")))
        n += (size_t)snprintf(extra + n, sizeof extra - n, " exit %" PRId64,
                              monitor_int(a, "exit_code"));
    if (json_is_integer(json_object_get(a, "signal")) && n < sizeof extra)
        n += (size_t)snprintf(extra + n, sizeof extra - n, " signal %" PRId64,
                              monitor_int(a, "signal"));
    if (json_is_integer(json_object_get(a, "http_status")) && n < sizeof extra)
        n += (size_t)snprintf(extra + n, sizeof extra - n, " http %" PRId64,
                              monitor_int(a, "http_status"));
    if (json_is_string(json_object_get(a, "key_id")) && n < sizeof extra)
        snprintf(extra + n, sizeof extra - n, " key %s",
                 monitor_str(a, "key_id", ""));
    if (extra[0])
        printf("     %s\n", extra);
    const char *hint = monitor_hint(cat);
    if (hint && (!job_category || strcmp(job_category, cat)))
        printf("      hint: %s\n", hint);
    int64_t at = monitor_int(a, "attempt");
    const char *prev = shown->details;
    s_print_block("details", monitor_str(a, "details", NULL), &shown->details,
                  shown->details_at);
    if (shown->details != prev)
        shown->details_at = at;
    prev = shown->stderr_tail;
    s_print_block("stderr (its end)", monitor_str(a, "stderr", NULL),
                  &shown->stderr_tail, shown->stderr_at);
    if (shown->stderr_tail != prev)
        shown->stderr_at = at;
}

/* The attempts table under a job. */
static void
s_print_attempts(const json_t *attempts, int64_t rounds,
                 const char *job_category)
{
    printf("\n%-5s %-20s %-24s %8s  %s\n", "TRY", "WORKER", "STARTED", "TOOK",
           "OUTCOME");
    s_shown_t shown = { 0 };
    size_t i;
    json_t *a;
    json_array_foreach(attempts, i, a)
        s_print_attempt(a, rounds, job_category, &shown);
    if (json_array_size(attempts) == 0)
        printf("(no attempt yet)\n");
}

/* drover job when the collector cannot show the job (a client key may not
 * read its history; it is down; it has not seen the job): the broker's
 * view, with the attempts it keeps (those that failed). Returns the exit
 * code, or -1 when the broker cannot show it either. */
static int
s_job_from_broker(const char *broker, const char *id, bool json,
                  const char *why)
{
    char note[160] = "";
    json_t *job = s_broker_job(broker, id, note, sizeof note);
    if (!job)
        return -1;
    if (json) {
        s_print_json(job);
        json_decref(job);
        return 0;
    }
    printf("job       %s\n", monitor_str(job, "id", id));
    int64_t attempt = monitor_int(job, "attempt");
    printf("state     %s after %" PRId64 " attempt%s\n",
           monitor_str(job, "state", "?"), attempt, attempt == 1 ? "" : "s");
    printf("queue     %s\ntype      %s\n", monitor_str(job, "queue", "?"),
           monitor_str(job, "type", "?"));
    if (json_is_string(json_object_get(job, "worker")))
        printf("worker    %s\n", monitor_str(job, "worker", ""));
    const char *cat = monitor_str(job, "category", NULL);
    if (cat) {
        printf("error     %s: %s\n", cat, monitor_str(job, "error", ""));
        const char *hint = monitor_hint(cat);
        if (hint)
            printf("hint      %s\n", hint);
    }
    json_t *result = json_object_get(job, "result");
    if (json_is_string(json_object_get(job, "state")) &&
        !strcmp(monitor_str(job, "state", ""), "succeeded"))
        s_print_result(json_is_null(result) ? NULL : result,
                       "none (the broker keeps results for its "
                       "--result-ttl)");
    if (json_is_array(json_object_get(job, "attempts")))
        s_print_attempts(json_object_get(job, "attempts"), 0, cat);
    else if (json_is_string(json_object_get(job, "attempts_error")))
        printf("\nattempts  unknown: %s\n",
               monitor_str(job, "attempts_error", ""));
    printf("\n(from the broker, which keeps the failed attempts only: the "
           "collector did not show the job: %s)\n",
           why);
    json_decref(job);
    return 0;
}

int
job_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover job [--collector EP] [--broker EP] [--json] JOB_ID\n"
        "\n"
        "One job from the collector's history and every attempt: worker,\n"
        "start, duration, outcome, last progress, failure category and\n"
        "message with a hint, and what the handler said about a failure\n"
        "(its details, e.g. a traceback) and the end of its stderr. The\n"
        "result, details and stderr come from the broker (which keeps them\n"
        "for its --result-ttl). With --json, one object per attempt under\n"
        "\"attempts\". When the collector cannot show it (down, not\n"
        "allowed for a client key, or it has not seen the job), the\n"
        "broker's view, with the failed attempts. Exit 1 if neither has it.\n";
    static const int allowed[] = { O_BROKER, 0 };
    s_opts_t o;
    int r = s_parse(argc, argv, usage, allowed, 1, &o);
    if (r >= 0)
        return r;
    const char *id = argv[optind];
    if (strlen(id) != DROVER_ID_LEN) {
        fprintf(stderr, "drover job: '%s' is not a job id\n", id);
        return 2;
    }
    json_t *job;
    int code = monitor_query(monitor_endpoint(o.collector), "job", "job", id,
                             NULL, S_TIMEOUT_MS, &job, true);
    if (code) {
        /* The broker knows the job while it lives and for its
         * --result-ttl after. */
        char why[512];
        snprintf(why, sizeof why, "%s", monitor_query_error());
        if (s_job_from_broker(o.broker, id, o.json, why) == 0)
            return 0;
        fprintf(stderr, "drover job: %s\n", why);
        return code;
    }
    char note[160] = "";
    json_t *bjob = s_broker_job(o.broker, id, note, sizeof note);
    json_t *result = s_broker_result(bjob, note, sizeof note);
    if (bjob)
        s_merge_details(job, bjob);
    json_decref(bjob);
    if (o.json) {
        json_object_set_new(job, "result", result ? result : json_string(note));
        s_print_json(job);
        json_decref(job);
        return 0;
    }
    const json_t *attempts = json_object_get(job, "attempts");
    int64_t rounds = monitor_int(job, "round");
    printf("job       %s\n", monitor_str(job, "id", id));
    printf("state     %s after %zu attempt%s%s\n",
           monitor_str(job, "state", "?"), json_array_size(attempts),
           json_array_size(attempts) == 1 ? "" : "s",
           rounds ? " (retried by an operator)" : "");
    printf("queue     %s\ntype      %s\n", monitor_str(job, "queue", "?"),
           monitor_str(job, "type", "?"));
    if (json_string_value(json_object_get(job, "batch")))
        printf("batch     %s\n", monitor_str(job, "batch", ""));
    printf("broker    %s\n", monitor_str(job, "broker", "?"));
    printf("submitted %s\n", s_time(monitor_int(job, "submitted_at")));
    if (monitor_int(job, "finished_at")) {
        int64_t since = monitor_int(job, "submitted_at");
        printf("finished  %s", s_time(monitor_int(job, "finished_at")));
        if (since)
            printf(" (%s after submit)",
                   cli_dur(monitor_int(job, "finished_at") - since));
        printf("\n");
    }
    if (json_is_integer(json_object_get(job, "run_at")) &&
        !strcmp(monitor_str(job, "state", ""), "scheduled"))
        printf("next try  %s\n", s_time(monitor_int(job, "run_at")));
    const char *cat = monitor_str(job, "category", NULL);
    if (cat) {
        printf("error     %s: %s\n", cat, monitor_str(job, "error", ""));
        const char *hint = monitor_hint(cat);
        if (hint)
            printf("hint      %s\n", hint);
    }
    s_print_result(result, note);
    json_decref(result);
    s_print_attempts(attempts, rounds, cat);
    json_decref(job);
    return 0;
}

/* ---- keys (the workers' view) ------------------------------------------ */

int
monitor_keys(const char *collector, bool json, const char *note)
{
    json_t *body;
    int code = monitor_query(monitor_endpoint(collector), "keys", "keys", NULL,
                             NULL, S_TIMEOUT_MS, &body, false);
    if (code) {
        if (note) /* why the collector was asked at all */
            fprintf(stderr, "drover keys: %s\n", note);
        return code;
    }
    if (json) {
        if (note)
            fprintf(stderr, "drover keys: %s\n", note);
        s_print_json(body);
        json_decref(body);
        return 0;
    }
    if (note)
        printf("%s\n\n", note);
    const json_t *keys = json_object_get(body, "keys");
    if (json_array_size(keys) == 0) {
        printf("no API keys reported (workers report them when they run the "
               "http handler)\n");
        json_decref(body);
        return 0;
    }
    printf("%-12s %-8s %-8s %4s %4s %4s %10s %9s %7s %6s\n", "KEY", "HASH",
           "STATE", "OK", "COOL", "DIS", "REQUESTS", "2XX", "429", "ERRORS");
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        const json_t *st = json_object_get(k, "states");
        printf("%-12.12s %-8.8s %-8s %4" PRId64 " %4" PRId64 " %4" PRId64
               " %10s %9s %7s %6s\n",
               monitor_str(k, "id", "?"), monitor_str(k, "hash", "-"),
               monitor_str(k, "state", "?"), monitor_int(st, "ok"),
               monitor_int(st, "cooling"), monitor_int(st, "disabled"),
               cli_num(monitor_int(k, "requests")),
               cli_num(monitor_int(k, "ok")),
               cli_num(monitor_int(k, "rate_limited")),
               cli_num(monitor_int(k, "errors")));
    }
    json_decref(body);
    return 0;
}

/* ---- health -------------------------------------------------------------- */

int
health_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover health [--collector EP] [--json]\n"
        "\n"
        "Exit 0 healthy; 1 degraded (a queue with jobs and no worker serving\n"
        "it, every API key cooling down or disabled, a broker that cannot\n"
        "write its store); 2 down (a broker does not answer); 3 the\n"
        "collector cannot be reached or answer. Prints the reasons.\n"
        "Usable as a liveness probe.\n";
    s_opts_t o;
    int r = s_parse(argc, argv, usage, NULL, 0, &o);
    if (r >= 0)
        return r;
    json_t *h;
    int code = monitor_query(monitor_endpoint(o.collector), "health", "health",
                             NULL, NULL, S_TIMEOUT_MS, &h, false);
    if (code)
        return 3; /* cannot tell: not 1 or 2, which say something */
    int status = (int)monitor_int(h, "status");
    if (o.json) {
        s_print_json(h);
    } else {
        printf("%s\n", monitor_str(h, "state", "?"));
        size_t i;
        json_t *reason;
        json_array_foreach(json_object_get(h, "reasons"), i, reason)
            printf("  - %s\n", json_string_value(reason));
    }
    json_decref(h);
    return status >= 0 && status <= 2 ? status : 2;
}

/* ---- watch --------------------------------------------------------------- */

static volatile sig_atomic_t s_interrupted;

static void
s_on_int(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

static void
s_draw_batch(const char *name, const json_t *b, bool bar, bool final)
{
    const json_t *c = json_object_get(b, "counts");
    int64_t total = monitor_int(b, "total"), done = monitor_int(b, "done");
    int64_t ok = monitor_int(c, "succeeded"), dead = monitor_int(c, "dead"),
            cancelled = monitor_int(c, "cancelled"),
            running = monitor_int(c, "running");
    double frac = total > 0 ? (double)done / (double)total : 0;
    const json_t *eta = json_object_get(b, "eta_s");
    char etas[32] = "?";
    if (json_is_number(eta))
        snprintf(etas, sizeof etas, "%s",
                 cli_dur((int64_t)(json_number_value(eta) * 1000)));
    char extra[96] = "";
    size_t n = 0;
    if (dead)
        n += (size_t)snprintf(extra, sizeof extra, " dead %" PRId64, dead);
    if (cancelled && n < sizeof extra)
        snprintf(extra + n, sizeof extra - n, " cancelled %" PRId64, cancelled);
    if (bar) {
        enum { W = 24 };
        char b24[W + 1];
        for (int i = 0; i < W; i++)
            b24[i] = i < (int)(frac * W) ? '#' : '-';
        b24[W] = '\0';
        fprintf(stderr,
                "\r[%s] %" PRId64 "/%" PRId64 " %3d%% ok %" PRId64 "%s "
                "run %" PRId64 " %s/s ETA %s\033[K",
                b24, done, total, (int)(frac * 100), ok, extra, running,
                cli_rate(json_number_value(json_object_get(b, "rate"))), etas);
        if (final)
            fputs("\n", stderr);
        fflush(stderr);
    } else {
        printf("batch %s: %" PRId64 "/%" PRId64 " done (%d%%), succeeded "
               "%" PRId64 "%s, running %" PRId64 ", %s jobs/s, ETA %s\n",
               name, done, total, (int)(frac * 100), ok, extra, running,
               cli_rate(json_number_value(json_object_get(b, "rate"))),
               final ? "-" : etas);
        fflush(stdout);
    }
}

int
watch_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover watch [--collector EP] [--interval S] [--timeout S]\n"
        "                    [--json] BATCH\n"
        "\n"
        "Follows a batch (submit --batch NAME) until every job of it ended:\n"
        "a progress bar with rate and ETA on a terminal, else a line every\n"
        "few seconds. Waits for the batch to appear if it is not known yet.\n"
        "\n"
        "Exit status (as submit --wait): 0 every job succeeded; 1 a job\n"
        "ended dead or cancelled, or --timeout passed first; 2 usage; 3 the\n"
        "collector cannot be reached.\n";
    static const int allowed[] = { O_INTERVAL, O_TIMEOUT, 0 };
    s_opts_t o;
    int r = s_parse(argc, argv, usage, allowed, 1, &o);
    if (r >= 0)
        return r;
    const char *name = argv[optind];
    json_t *args = json_pack("{s:s}", "name", name);
    char *args_json = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    const char *ep = monitor_endpoint(o.collector);
    bool bar = !o.json && isatty(STDERR_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_int;
    sigaction(SIGINT, &sa, NULL);
    int64_t start = dv_mono_ms(), last_line = 0;
    bool waiting_said = false;
    int code = 1;
    for (;;) {
        json_t *b;
        int rc = monitor_query(ep, "watch", "batch", NULL, args_json,
                               S_TIMEOUT_MS, &b, false);
        if (rc) {
            code = rc;
            break;
        }
        int64_t total = monitor_int(b, "total");
        bool finished = json_is_true(json_object_get(b, "finished"));
        int64_t mono = dv_mono_ms();
        if (total == 0 && !waiting_said && !o.json) {
            fprintf(stderr,
                    "drover watch: no job of batch %s seen yet; "
                    "waiting\n",
                    name);
            waiting_said = true;
        } else if (total > 0 && !o.json &&
                   (bar || finished || mono - last_line >= 5000)) {
            s_draw_batch(name, b, bar, finished);
            last_line = mono;
        }
        if (finished) {
            const json_t *c = json_object_get(b, "counts");
            code = monitor_int(c, "dead") || monitor_int(c, "cancelled");
            if (o.json)
                s_print_json(b);
            json_decref(b);
            break;
        }
        json_decref(b);
        bool late =
            o.timeout_s > 0 && mono - start >= (int64_t)(o.timeout_s * 1000);
        if (s_interrupted || late) {
            if (bar)
                fputs("\n", stderr);
            fprintf(stderr, "drover watch: %s before batch %s ended\n",
                    s_interrupted ? "interrupted" : "--timeout passed", name);
            code = s_interrupted ? 130 : 1;
            break;
        }
        poll(NULL, 0, (int)(o.interval_s * 1000));
    }
    free(args_json);
    return code;
}
