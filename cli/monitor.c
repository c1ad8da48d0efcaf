/* Commands that ask the collector: `drover status`, `workers`, `queues`,
 * `jobs`, `job`, `result`, `watch`, `health`; and the workers' view of the
 * API keys that `drover keys` (cli/keys.c) falls back to.
 *
 * They speak the same wire protocol as the broker's clients socket (ctrl
 * in, reply out), so libdrover is the client. Each is an entry of the
 * command table (cli_cmd.h): --json prints a documented shape
 * (docs/json.md, docs/json/), errors go through cli_fail, and the tables
 * cut nothing silently (cli_col; --wide shows everything). */
#include <errno.h>
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_cmd.h"
#include "drover.h"
#include "dv_clock.h"
#include "dv_curve_client.h"
#include "dv_id.h"
#include "dv_str.h"
#include "monitor.h"

#define S_TIMEOUT_MS 3000

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
        code = CLI_UNREACHABLE;
    } else if (rc != DROVER_OK) {
        s_said(quiet, cmd, "%s", drover_last_error(c));
        code = (int)cli_exit_of(rc, drover_last_code(c));
        if (code == CLI_OK || code == CLI_UNREACHABLE || code == CLI_USAGE)
            code = CLI_FAILED; /* it answered: refused */
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

/* ---- shared by the commands ---------------------------------------------- */

/* Asks the collector for verb (id, args as an object or NULL); on failure
 * says why through cli_fail and returns the exit code. */
static int
s_ask(const cli_t *c, const char *verb, const char *id, const json_t *args,
      int timeout_ms, json_t **out)
{
    char *aj = args ? json_dumps(args, JSON_COMPACT) : NULL;
    int code = monitor_query(monitor_endpoint(c->collector), c->cmd->name, verb,
                             id, aj, timeout_ms, out, true);
    free(aj);
    if (code)
        return cli_fail(c, (cli_exit_t)code, NULL, "%s", monitor_query_error());
    return 0;
}

/* "1.2s ago", or "never" for 0. */
static const char *
s_ago(int64_t now, int64_t at)
{
    if (at <= 0)
        return "never";
    char *b = s_buf();
    snprintf(b, 48, "%s ago", cli_dur(now > at ? now - at : 0));
    return b;
}

/* A queue's rate limit ("5/s") and running limit ("20"), "-" for none. */
static const char *
s_rate_limit(const json_t *q)
{
    const json_t *v = json_object_get(q, "rate_limit");
    double r = json_number_value(v);
    if (!(r > 0))
        return "-";
    char *b = s_buf();
    snprintf(b, 48, "%s/s", cli_rate(r));
    return b;
}

static const char *
s_max_running(const json_t *q)
{
    int64_t m = monitor_int(q, "max_running");
    return m > 0 ? cli_num(m) : "-";
}

/* ---- status -------------------------------------------------------------- */

void
monitor_queue_table(FILE *out, const json_t *queues, bool wide)
{
    fprintf(out, "%-16s %-6s %7s %9s %7s %7s %7s %10s %11s\n", "QUEUE", "STATE",
            "QUEUED", "SCHEDULED", "WAITING", "RUNNING", "WORKERS",
            "RATE LIMIT", "MAX RUNNING");
    size_t i;
    json_t *q;
    json_array_foreach(queues, i, q)
    {
        cli_col(out, monitor_str(q, "name", "?"), 16, wide, " ");
        const json_t *w = json_object_get(q, "workers");
        fprintf(out, "%-6s %7s %9s %7s %7s %7s %10s %11s\n",
                json_is_true(json_object_get(q, "paused")) ? "paused"
                                                           : "active",
                cli_num(monitor_int(q, "queued")),
                cli_num(monitor_int(q, "scheduled")),
                cli_num(monitor_int(q, "waiting")),
                cli_num(monitor_int(q, "running")),
                json_is_number(w) ? cli_num(monitor_int(q, "workers")) : "?",
                s_rate_limit(q), s_max_running(q));
    }
    if (json_array_size(queues) == 0)
        fprintf(out, "(no queues yet)\n");
}

/* Jobs per second over the last minute and the 99th percentiles of wait
 * and run time, one row per queue. */
static void
s_print_rates_table(const json_t *queues, bool wide)
{
    if (json_array_size(queues) == 0)
        return;
    printf("\n%-16s %9s %9s %9s %9s %9s\n", "QUEUE", "SUBMIT/s", "OK/s",
           "FAILED/s", "WAIT p99", "RUN p99");
    size_t i;
    json_t *q;
    json_array_foreach(queues, i, q)
    {
        const json_t *rates = json_object_get(q, "rates");
        const json_t *wait = json_object_get(q, "wait_ms");
        const json_t *run = json_object_get(q, "run_ms");
        cli_col(stdout, monitor_str(q, "name", "?"), 16, wide, " ");
        printf("%9s %9s %9s %9s %9s\n", cli_rate(s_rate1(rates, "submitted")),
               cli_rate(s_rate1(rates, "succeeded")),
               cli_rate(s_rate1(rates, "failed")),
               monitor_int(wait, "count") ? cli_dur(monitor_int(wait, "p99"))
                                          : "-",
               monitor_int(run, "count") ? cli_dur(monitor_int(run, "p99"))
                                         : "-");
    }
}

static void
s_print_failures(const json_t *failures, bool wide)
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
        printf("  %-18s %7s  %s\n", cat, cli_num(monitor_int(c, "count")),
               cli_cell(hint ? hint : "", 49, wide));
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

/* "  schedules 3, next nightly in 2h05m" when the broker has some. */
static void
s_print_schedules(const json_t *b, int64_t now)
{
    const json_t *n = json_object_get(b, "schedules");
    if (!json_is_integer(n) || !json_integer_value(n))
        return;
    printf("  schedules %s", cli_num(json_integer_value(n)));
    const json_t *next = json_object_get(b, "next_schedule");
    if (json_is_object(next))
        printf(", next %s in %s", monitor_str(next, "name", "?"),
               cli_dur(monitor_int(next, "at") - now));
    printf("\n");
}

static void
s_print_store_failure(const json_t *b, int64_t now)
{
    const json_t *sf = json_object_get(b, "store_failure");
    if (!json_is_object(sf))
        return;
    int64_t since = monitor_int(sf, "since_ms");
    printf("  store FAILING: %s for %s; %s jobs refused, %s writes "
           "waiting (submits refused, dispatch paused)\n",
           monitor_str(sf, "error", "?"),
           since > 0 ? cli_dur(now - since) : "?",
           cli_num(monitor_int(sf, "refused")),
           cli_num(monitor_int(sf, "waiting")));
}

static void
s_print_workers_line(const json_t *w)
{
    printf("workers %s online: %s busy, %s idle, %s draining; %s of %s "
           "slots busy",
           cli_num(monitor_int(w, "online")), cli_num(monitor_int(w, "busy")),
           cli_num(monitor_int(w, "idle")), cli_num(monitor_int(w, "draining")),
           cli_num(monitor_int(w, "busy_slots")),
           cli_num(monitor_int(w, "slots")));
    if (monitor_int(w, "offline"))
        printf("; %s gone", cli_num(monitor_int(w, "offline")));
    printf("\n");
}

static void
s_print_status(const json_t *st, bool wide)
{
    int64_t now = dv_now_ms();
    const json_t *col = json_object_get(st, "collector");
    if (json_is_object(col))
        printf("collector up %s, %s events, %s gaps, history %s\n",
               cli_dur(monitor_int(col, "uptime_ms")),
               cli_num(monitor_int(col, "events")),
               cli_num(monitor_int(col, "gaps")),
               monitor_str(col, "store", "?"));
    else
        printf("collector DOWN: %s\nthe broker's own view follows (no rates, "
               "latencies, failures or health)\n",
               monitor_str(st, "note", "it does not answer"));
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(st, "brokers"), i, b)
    {
        const json_t *last = json_object_get(b, "last_event_ms");
        printf("broker %s  %s%s", monitor_str(b, "endpoint", "?"),
               monitor_str(b, "state", "?"),
               json_is_false(json_object_get(b, "synced")) ? " (resyncing)"
                                                           : "");
        if (json_is_string(json_object_get(b, "role")))
            printf("  %s", monitor_str(b, "role", ""));
        if (json_is_integer(json_object_get(b, "last_seq")))
            printf("  seq %s  last event %s",
                   cli_num(monitor_int(b, "last_seq")),
                   json_is_integer(last) ? s_ago(now, json_integer_value(last))
                                         : "never");
        if (json_is_integer(json_object_get(b, "uptime_ms")))
            printf("  store %s  up %s", monitor_str(b, "store", "?"),
                   cli_dur(monitor_int(b, "uptime_ms")));
        printf("\n");
        if (json_object_get(b, "error"))
            printf("  %s\n", monitor_str(b, "error", ""));
        monitor_print_leases(json_object_get(b, "counters"));
        s_print_store_failure(b, now);
        s_print_schedules(b, now);
    }
    s_print_workers_line(json_object_get(st, "workers"));
    const json_t *r = json_object_get(st, "rates");
    if (json_is_object(r))
        printf("jobs/s over 1m: in %s, succeeded %s, failed %s, dead %s\n",
               cli_rate(s_rate1(r, "submitted")),
               cli_rate(s_rate1(r, "succeeded")),
               cli_rate(s_rate1(r, "failed")), cli_rate(s_rate1(r, "dead")));
    printf("\n");
    monitor_queue_table(stdout, json_object_get(st, "queues"), wide);
    if (json_is_object(col)) {
        s_print_rates_table(json_object_get(st, "queues"), wide);
        s_print_failures(json_object_get(st, "failures"), wide);
        s_print_health(json_object_get(st, "health"));
    }
}

/* The broker's status answer in the shape of the collector's (source
 * "broker"): its queues with their limits, a summary of its workers, no
 * rates, latencies, failures or health. Returns a new object. */
static json_t *
s_status_from_broker(const json_t *bs, const char *endpoint, const char *note)
{
    json_t *brokers = json_array();
    json_t *b =
        json_pack("{s:s, s:s?, s:s, s:s, s:s?, s:I}", "endpoint", endpoint,
                  "instance", json_string_value(json_object_get(bs, "broker")),
                  "state", "up", "role", monitor_str(bs, "role", "active"),
                  "store", json_string_value(json_object_get(bs, "store")),
                  "uptime_ms", (json_int_t)monitor_int(bs, "uptime_ms"));
    static const char *const keep[] = { "counters", "store_failure", "lock",
                                        "schedules" };
    for (size_t k = 0; b && k < 4; k++) {
        json_t *v = json_object_get(bs, keep[k]);
        if (v && !json_is_null(v))
            json_object_set(b, keep[k], v);
    }
    /* The next schedule as the collector shows it: {name, at}. */
    const char *next = json_string_value(json_object_get(bs, "next_schedule"));
    if (b && next)
        json_object_set_new(
            b, "next_schedule",
            json_pack("{s:s, s:I}", "name", next, "at",
                      (json_int_t)monitor_int(bs, "next_schedule_at")));
    json_array_append_new(brokers, b);
    int64_t online = 0, busy = 0, idle = 0, draining = 0, slots = 0,
            running = 0;
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(bs, "workers"), i, w)
    {
        online++;
        int64_t r = monitor_int(w, "running");
        if (json_is_true(json_object_get(w, "draining")))
            draining++;
        else if (r > 0)
            busy++;
        else
            idle++;
        slots += monitor_int(w, "concurrency");
        running += r;
    }
    json_t *queues = json_array();
    json_t *q;
    json_array_foreach(json_object_get(bs, "queues"), i, q)
    {
        double rate = json_number_value(json_object_get(q, "rate"));
        json_array_append_new(
            queues,
            json_pack("{s:s, s:I, s:I, s:I, s:I, s:b, s:f, s:I}", "name",
                      monitor_str(q, "name", "?"), "queued",
                      (json_int_t)monitor_int(q, "queued"), "scheduled",
                      (json_int_t)monitor_int(q, "scheduled"), "waiting",
                      (json_int_t)monitor_int(q, "waiting"), "running",
                      (json_int_t)monitor_int(q, "running"), "paused",
                      json_is_true(json_object_get(q, "paused")), "rate_limit",
                      rate > 0 ? rate : 0.0, "max_running",
                      (json_int_t)monitor_int(q, "max_running")));
    }
    return json_pack(
        "{s:s, s:s, s:n, s:o, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, "
        "s:o, s:[], s:n, s:n, s:n}",
        "source", "broker", "note", note, "collector", "brokers", brokers,
        "workers", "online", (json_int_t)online, "busy", (json_int_t)busy,
        "idle", (json_int_t)idle, "draining", (json_int_t)draining, "offline",
        (json_int_t)0, "slots", (json_int_t)slots, "busy_slots",
        (json_int_t)running, "running_jobs", (json_int_t)running, "queues",
        queues, "types", "rates", "failures", "health");
}

/* Asks the broker for its status. Returns the answer (a new object), or
 * NULL with why and *code. */
static json_t *
s_broker_status(const char *broker, char *why, size_t size, int *code)
{
    drover_client_t *cl = drover_connect(broker, 1500);
    char *text = NULL;
    int rc =
        cl ? drover_ctrl(cl, "status", NULL, NULL, &text) : DROVER_EUNREACHABLE;
    json_t *st = rc == DROVER_OK && text ? json_loads(text, 0, NULL) : NULL;
    *code = 0;
    if (!cl) { /* a bad endpoint or CurveZMQ file: the user's to fix */
        *code = CLI_USAGE;
        snprintf(why, size, "%s", drover_last_error(NULL));
    } else if (!json_is_object(st)) {
        json_decref(st);
        st = NULL;
        *code = rc == DROVER_OK ? CLI_FAILED
                                : (int)cli_exit_of(rc, drover_last_code(cl));
        snprintf(why, size, "%s",
                 rc == DROVER_OK ? "unreadable answer"
                 : rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT
                     ? "it does not answer"
                     : drover_last_error(cl));
    }
    free(text);
    drover_close(&cl);
    return st;
}

static int
s_status(cli_t *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const char *ep = monitor_endpoint(c->collector);
    json_t *st = NULL;
    int code =
        monitor_query(ep, "status", "status", NULL, NULL, 1500, &st, true);
    if (code == 0) {
        json_t *out = json_pack("{s:s, s:n}", "source", "collector", "note");
        json_object_update(out, st);
        json_decref(st);
        if (c->json)
            cli_print_json(out);
        else
            s_print_status(out, c->wide);
        json_decref(out);
        return 0;
    }
    char cwhy[600], bwhy[300];
    snprintf(cwhy, sizeof cwhy, "%s", monitor_query_error());
    int bcode;
    json_t *bs = s_broker_status(c->broker, bwhy, sizeof bwhy, &bcode);
    if (!bs && bcode == CLI_USAGE)
        return cli_fail(c, CLI_USAGE, "usage", "%s", bwhy);
    if (!bs)
        return cli_fail(c, (cli_exit_t)code, NULL,
                        "%s (and the broker at %s cannot stand in for it: %s)",
                        cwhy, c->broker ? c->broker : DROVER_DEFAULT_ENDPOINT,
                        bwhy);
    json_t *out = s_status_from_broker(
        bs, c->broker ? c->broker : DROVER_DEFAULT_ENDPOINT, cwhy);
    json_decref(bs);
    if (!out)
        return cli_fail(c, CLI_FAILED, "no_memory", "out of memory");
    if (c->json) {
        cli_print_json(out);
    } else {
        fprintf(stderr,
                "drover status: the collector at %s does not answer; "
                "showing the broker's own view\n",
                ep);
        s_print_status(out, c->wide);
    }
    json_decref(out);
    return 0;
}

static const char s_status_about[] =
    "One screen: the collector, each broker, workers online and busy, "
    "jobs per second, every queue with its depth, state (active or "
    "paused), rate limit and running limit, then its rates and 99th "
    "percentile wait and run times, failed attempts of the last hour by "
    "category with a hint, and health.\n\n"
    "When the collector cannot be reached, shows the broker's own view "
    "instead (its queues with their limits and paused state, a summary of "
    "its workers, its counters) and says so: on stderr, and with --json as "
    "\"source\": \"broker\" with \"collector\", \"rates\", \"failures\" and "
    "\"health\" null. Exit 0 when either answered, 3 when neither did.";

const cli_cmd_t cli_status = {
    .name = "status",
    .summary = "one screen: workers, queues and their limits, failures",
    .about = s_status_about,
    .examples = "  drover status\n"
                "  drover status --json | jq '.queues[] | select(.paused)'\n",
    .shared = CLI_JSON | CLI_BROKER | CLI_COLLECTOR | CLI_WIDE,
    .run = s_status,
};

/* ---- workers ------------------------------------------------------------- */

static int
s_workers(cli_t *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    json_t *body;
    int code = s_ask(c, "workers", NULL, NULL, S_TIMEOUT_MS, &body);
    if (code)
        return code;
    if (c->json) {
        cli_print_json(body);
        json_decref(body);
        return 0;
    }
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
    printf("%-22s %-8s %5s %4s %6s %9s %6s %9s\n", "WORKER", "STATE", "SLOTS",
           "BUSY", "LEASED", "PROCESSED", "FAILED", "LAST SEEN");
    last_broker = NULL;
    json_array_foreach(workers, i, w)
    {
        const char *b = monitor_str(w, "broker", "");
        if (many && (!last_broker || strcmp(b, last_broker)))
            printf("broker %s\n", b);
        last_broker = b;
        const json_t *busy = json_object_get(w, "busy");
        cli_col(stdout, monitor_str(w, "name", "?"), 22, c->wide, " ");
        cli_col(stdout, monitor_str(w, "state", "?"), 8, c->wide, " ");
        printf("%5s %4s %6s %9s %6s %9s\n",
               cli_num(monitor_int(w, "concurrency")),
               json_is_integer(busy) ? cli_num(json_integer_value(busy)) : "-",
               cli_num(monitor_int(w, "running")),
               cli_num(monitor_int(w, "processed")),
               cli_num(monitor_int(w, "failed")),
               s_ago(now, now - monitor_int(w, "heartbeat_age_ms")));
        const json_t *jobs = json_object_get(w, "jobs");
        size_t j;
        json_t *job;
        json_array_foreach(jobs, j, job)
        {
            if (j == 5 && !c->wide) {
                printf("    ... and %zu more (--wide shows them)\n",
                       json_array_size(jobs) - 5);
                break;
            }
            char prog[64] = "";
            if (monitor_int(job, "total"))
                snprintf(prog, sizeof prog, "  %" PRId64 "/%" PRId64,
                         monitor_int(job, "current"),
                         monitor_int(job, "total"));
            printf("    %s ", monitor_str(job, "id", "?"));
            cli_col(stdout, monitor_str(job, "type", "?"), 12, c->wide, " ");
            printf("#%" PRId64 " running %s%s\n", monitor_int(job, "attempt"),
                   cli_dur(now - monitor_int(job, "started_at")), prog);
        }
    }
    if (json_array_size(workers) == 0)
        printf("(no workers)\n");
    json_decref(body);
    return 0;
}

const cli_cmd_t cli_workers = {
    .name = "workers",
    .summary = "list workers and what they run",
    .about = "Every worker supervisor the collector knows: its state (busy, "
             "idle, draining; left or expired for ten minutes after it "
             "went), child slots, busy children, jobs leased to it (running, "
             "or held ahead of a free child), attempts processed and failed, "
             "when it was last heard of, and the jobs it runs (five each; "
             "--wide: all).",
    .examples = "  drover workers\n  drover workers --json | jq "
                "'.workers[] | {name, state}'\n",
    .shared = CLI_JSON | CLI_COLLECTOR | CLI_WIDE,
    .run = s_workers,
};

/* ---- queues -------------------------------------------------------------- */

static void
s_print_latency(const char *what, const json_t *list, bool wide)
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
        cli_col(stdout, monitor_str(q, "name", "?"), 16, wide, " ");
        printf("%8s %8s %8s %8s %8s %8s\n",
               hw ? cli_dur(monitor_int(wt, "p50")) : "-",
               hw ? cli_dur(monitor_int(wt, "p95")) : "-",
               hw ? cli_dur(monitor_int(wt, "p99")) : "-",
               hr ? cli_dur(monitor_int(rn, "p50")) : "-",
               hr ? cli_dur(monitor_int(rn, "p95")) : "-",
               hr ? cli_dur(monitor_int(rn, "p99")) : "-");
    }
}

static int
s_queues(cli_t *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    json_t *body;
    int code = s_ask(c, "queues", NULL, NULL, S_TIMEOUT_MS, &body);
    if (code)
        return code;
    if (c->json) {
        cli_print_json(body);
        json_decref(body);
        return 0;
    }
    const json_t *queues = json_object_get(body, "queues");
    monitor_queue_table(stdout, queues, c->wide);
    s_print_rates_table(queues, c->wide);
    if (json_array_size(queues)) {
        s_print_latency("QUEUE", queues, c->wide);
        s_print_latency("TYPE", json_object_get(body, "types"), c->wide);
    }
    json_decref(body);
    return 0;
}

const cli_cmd_t cli_queues = {
    .name = "queues",
    .summary = "list queues: depth, limits, rates, latency",
    .about = "Every queue over all brokers: its state (active, or paused by "
             "`drover pause`), jobs queued, scheduled and running, workers "
             "serving it, its rate limit and running limit (`drover limit`; "
             "- for none); then jobs per second submitted, succeeded and "
             "failed over the last minute, and wait and run time percentiles "
             "(last 5-10 minutes), per queue and per job type.",
    .examples = "  drover queues\n  drover queues --json | jq '.queues[] | "
                "{name, paused, rate_limit, max_running}'\n",
    .shared = CLI_JSON | CLI_COLLECTOR | CLI_WIDE,
    .run = s_queues,
};

/* ---- jobs ---------------------------------------------------------------- */

static const char *const s_states[] = { "any",     "queued",    "scheduled",
                                        "waiting", "running",   "succeeded",
                                        "dead",    "cancelled", NULL };

static struct {
    int state;
    const char *queue, *type, *batch, *since;
    int limit;
} s_jo;

static const dv_flag_t s_jobs_flags[] = {
    DV_FLAG_ONE_OF("state", &s_jo.state, s_states, .dflt = "any",
                   .help = "only jobs in this state"),
    DV_FLAG_STR("queue", &s_jo.queue, .arg = "QUEUE",
                .help = "only jobs of this queue"),
    DV_FLAG_STR("type", &s_jo.type, .arg = "TYPE",
                .help = "only jobs of this type"),
    DV_FLAG_STR("batch", &s_jo.batch, .arg = "BATCH",
                .help = "only jobs of this batch (submit --batch)"),
    DV_FLAG_STR("since", &s_jo.since, .arg = "WHEN",
                .help = "only jobs active since then: a duration ago (30s, "
                        "10m, 2h), an ISO 8601 time or @EPOCH_SECONDS"),
    DV_FLAG_INTEGER("limit", &s_jo.limit, 1, 1000, .arg = "N", .dflt = "50",
                    .help = "at most N jobs"),
    DV_FLAG_TABLE_END,
};

/* A job of the collector's listing in the documented shape: "attempt" is
 * the number of its last attempt (the collector says "attempts"; `drover
 * job` keeps that name for the list of attempts). */
static void
s_job_row_shape(json_t *j)
{
    json_t *n = json_object_get(j, "attempts");
    if (json_is_number(n)) {
        json_object_set(j, "attempt", n);
        json_object_del(j, "attempts");
    }
}

static int
s_jobs(cli_t *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    json_t *args = json_pack("{s:i}", "limit", s_jo.limit);
    if (s_jo.state > 0)
        json_object_set_new(args, "state", json_string(s_states[s_jo.state]));
    if (s_jo.queue)
        json_object_set_new(args, "queue", json_string(s_jo.queue));
    if (s_jo.type)
        json_object_set_new(args, "type", json_string(s_jo.type));
    if (s_jo.batch)
        json_object_set_new(args, "batch", json_string(s_jo.batch));
    if (s_jo.since) {
        int64_t ms;
        if (dv_duration_parse(s_jo.since, &ms) == 0) {
            ms = dv_now_ms() - ms;
        } else if (dv_time_parse(s_jo.since, &ms) != 0) {
            json_decref(args);
            return cli_usage(c, &s_jobs_flags[4],
                             "--since: '%s' is not a duration (10m), an ISO "
                             "8601 time or @EPOCH_SECONDS",
                             s_jo.since);
        }
        json_object_set_new(args, "since", json_integer(ms > 0 ? ms : 1));
    }
    json_t *body;
    int code = s_ask(c, "jobs", NULL, args, S_TIMEOUT_MS, &body);
    json_decref(args);
    if (code)
        return code;
    json_t *jobs = json_object_get(body, "jobs");
    size_t i;
    json_t *j;
    json_array_foreach(jobs, i, j) s_job_row_shape(j);
    if (c->json) {
        cli_print_json(body);
        json_decref(body);
        return 0;
    }
    int64_t now = dv_now_ms();
    printf("%-36s %-9s %-10s %-10s %5s %9s\n", "ID", "STATE", "QUEUE", "TYPE",
           "TRIES", "UPDATED");
    json_array_foreach(jobs, i, j)
    {
        printf("%-36s ", monitor_str(j, "id", "?"));
        cli_col(stdout, monitor_str(j, "state", "?"), 9, c->wide, " ");
        cli_col(stdout, monitor_str(j, "queue", "?"), 10, c->wide, " ");
        cli_col(stdout, monitor_str(j, "type", "?"), 10, c->wide, " ");
        printf("%5" PRId64 " %9s\n", monitor_int(j, "attempt"),
               s_ago(now, monitor_int(j, "updated_at")));
        const char *state = monitor_str(j, "state", "");
        const char *cat = monitor_str(j, "category", NULL);
        if (cat && strcmp(state, "succeeded") && strcmp(state, "running")) {
            int room = 80 - 4 - (int)strlen(cat) - 2;
            printf("    %s: %s\n", cat,
                   cli_cell(monitor_str(j, "error", ""), room > 20 ? room : 20,
                            c->wide));
        }
    }
    if (json_array_size(jobs) == 0)
        printf("(no jobs match)\n");
    else if ((int)json_array_size(jobs) >= s_jo.limit)
        printf("(first %d; --limit shows more)\n", s_jo.limit);
    json_decref(body);
    return 0;
}

const cli_cmd_t cli_jobs = {
    .name = "jobs",
    .summary = "list jobs from the collector's history",
    .about = "Jobs from the collector's history, most recently updated "
             "first: state, queue, type, attempts made (TRIES) and when it "
             "last changed. Failed, dead and cancelled jobs show their last "
             "error below them (cut with … to the line; --wide: in full).",
    .examples = "  drover jobs --state dead --since 1h\n"
                "  drover jobs --batch nightly --limit 1000 --json | jq "
                "'.jobs[].id'\n",
    .flags = s_jobs_flags,
    .shared = CLI_JSON | CLI_COLLECTOR | CLI_WIDE,
    .run = s_jobs,
};

/* ---- job ----------------------------------------------------------------- */

static struct {
    bool payload;
} s_jb;

static const dv_flag_t s_job_flags[] = {
    DV_FLAG_ON("payload", &s_jb.payload,
               .help = "print the whole payload, not its start"),
    DV_FLAG_TABLE_END,
};

/* Asks the broker for its view of job id (ctrl job). Returns a new JSON
 * object, or NULL with a note saying why there is none and *code (3 it
 * does not answer, 4 it does not know the job, else 1). */
static json_t *
s_broker_job(const char *broker, const char *id, char *note, size_t size,
             int *code)
{
    drover_client_t *c = drover_connect(broker, 1500);
    char *text = NULL;
    int rc = c ? drover_ctrl(c, "job", id, NULL, &text) : DROVER_EUNREACHABLE;
    json_t *job = NULL;
    *code = 0;
    if (rc == DROVER_OK && text) {
        job = json_loads(text, 0, NULL);
        if (!json_is_object(job)) {
            json_decref(job);
            job = NULL;
            *code = CLI_FAILED;
            snprintf(note, size, "unknown: unreadable answer from the broker");
        } else if (json_is_object(json_object_get(job, "options"))) {
            /* What it was submitted with: beside the rest, as the
             * collector's view has its keys. */
            json_t *o = json_incref(json_object_get(job, "options"));
            json_object_del(job, "options");
            json_object_update_missing(job, o);
            json_decref(o);
        }
    } else if (!c) { /* a bad endpoint or CurveZMQ file */
        *code = CLI_USAGE;
        snprintf(note, size, "unknown: %s", drover_last_error(NULL));
    } else if (rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT) {
        *code = CLI_UNREACHABLE;
        snprintf(note, size, "unknown: the broker does not answer");
    } else {
        *code = (int)cli_exit_of(rc, c ? drover_last_code(c) : NULL);
        if (*code == CLI_OK)
            *code = CLI_FAILED;
        snprintf(note, size, "unknown: %s",
                 c ? drover_last_error(c) : drover_last_error(NULL));
    }
    free(text);
    drover_close(&c);
    return job;
}

/* The result in the broker's view of a job (NULL: none, with a note
 * saying why). Returns a new reference. */
static json_t *
s_broker_result(const json_t *bjob, const char *state, char *note, size_t size)
{
    json_t *result = bjob ? json_object_get(bjob, "result") : NULL;
    if (result && !json_is_null(result))
        return json_incref(result);
    if (strcmp(state, "succeeded"))
        snprintf(note, size, "none: the job %s",
                 !strcmp(state, "dead") || !strcmp(state, "cancelled")
                     ? "did not succeed"
                     : "has not finished");
    else if (bjob && json_object_get(bjob, "result"))
        snprintf(note, size, "none: the handler gave no result");
    else if (bjob)
        snprintf(note, size,
                 "none: the broker did not give it (it keeps results for its "
                 "--result-ttl)");
    else if (!note[0])
        snprintf(note, size, "unknown: the broker does not answer");
    return NULL;
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

/* What the broker says of the job beyond the collector's history (its
 * options and payload, when its answer has them): copied into job. */
static void
s_merge_options(json_t *job, const json_t *bjob)
{
    static const char *const keys[] = {
        "max_attempts",  "priority", "timeout_ms", "backoff",       "key",
        "batch",         "trace",    "created_at", "result_ttl_ms", "payload",
        "payload_bytes", "schedule", "waits_for",  "waited_by"
    };
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        json_t *v = bjob ? json_object_get(bjob, keys[k]) : NULL;
        if (v && !json_is_null(v))
            json_object_set(job, keys[k], v);
    }
    if (!json_object_get(job, "max_attempts"))
        json_object_set_new(job, "max_attempts", json_null());
}

/* Why an attempt was, or was not, followed by another, into buf ("" when
 * it did not fail). a is attempt i of the current round's n; max 0 when
 * not known. */
static void
s_retry_note(const json_t *job, const json_t *const *round, size_t i, size_t n,
             int64_t max, char *buf, size_t size)
{
    const json_t *a = round[i];
    buf[0] = '\0';
    const char *outcome = monitor_str(a, "outcome", "");
    const char *cat = monitor_str(a, "category", NULL);
    if (!cat || !strcmp(outcome, "succeeded") || !strcmp(outcome, "running"))
        return;
    int64_t num = monitor_int(a, "attempt");
    char of[32] = "";
    if (max > 0)
        snprintf(of, sizeof of, " of %" PRId64, max);
    if (i + 1 < n) {
        const json_t *next = round[i + 1];
        int64_t gap =
            monitor_int(next, "started_at") - monitor_int(a, "finished_at");
        snprintf(buf, size, "retried: attempt %" PRId64 "%s started %s later",
                 monitor_int(next, "attempt"), of,
                 gap >= 0 ? cli_dur(gap) : "?");
        return;
    }
    const char *state = monitor_str(job, "state", "");
    if (!strcmp(state, "scheduled") || !strcmp(state, "queued")) {
        int64_t at = monitor_int(job, "run_at");
        int64_t now = dv_now_ms();
        if (at > now)
            snprintf(buf, size,
                     "to be retried: attempt %" PRId64 "%s in %s (backoff)",
                     num + 1, of, cli_dur(at - now));
        else
            snprintf(buf, size, "to be retried: attempt %" PRId64 "%s", num + 1,
                     of);
        return;
    }
    if (!strcmp(state, "running")) {
        snprintf(buf, size, "retried: attempt %" PRId64 "%s runs now", num + 1,
                 of);
        return;
    }
    if (!strcmp(cat, "cancelled") || !strcmp(state, "cancelled")) {
        snprintf(buf, size, "not retried: it was cancelled");
        return;
    }
    if (strcmp(state, "dead"))
        return;
    if (max > 0 && num >= max)
        snprintf(buf, size, "dead: %" PRId64 " of %" PRId64 " attempts used",
                 num, max);
    else if (max > 0)
        snprintf(buf, size,
                 "not retried: the handler said this %s failure is not "
                 "retryable (%" PRId64 " of %" PRId64 " attempts used)",
                 cat, num, max);
    else
        snprintf(buf, size,
                 "dead after %" PRId64 " attempt%s: this %s failure was not "
                 "retryable, or the attempts were used up (the broker no "
                 "longer says how many it had)",
                 num, num == 1 ? "" : "s", cat);
}

/* Adds "retry_note" to every attempt of the current round and to the job
 * (the last one's). */
static void
s_add_retry_notes(json_t *job)
{
    const json_t *attempts = json_object_get(job, "attempts");
    int64_t round = monitor_int(job, "round");
    int64_t max = monitor_int(job, "max_attempts");
    const json_t *cur[256];
    size_t n = 0, i;
    json_t *a;
    json_array_foreach(attempts, i, a)
    {
        if (json_is_integer(json_object_get(a, "round")) &&
            monitor_int(a, "round") != round)
            continue;
        if (n < sizeof cur / sizeof cur[0])
            cur[n++] = a;
    }
    char note[256] = "";
    for (i = 0; i < n; i++) {
        s_retry_note(job, cur, i, n, max, note, sizeof note);
        json_object_set_new((json_t *)cur[i], "retry_note",
                            note[0] ? json_string(note) : json_null());
    }
    json_object_set_new(job, "retry_note",
                        n && note[0] ? json_string(note) : json_null());
}

/* The jobs it waits for and that wait for it (job dependencies), one per
 * line: "waits for ID (succeeded)", "waited by ID (waiting, any)". */
static void
s_print_deps(const json_t *job)
{
    static const char *const keys[] = { "waits_for", "waited_by" };
    static const char *const labels[] = { "waits for", "waited by" };
    for (int k = 0; k < 2; k++) {
        const json_t *arr = json_object_get(job, keys[k]);
        size_t i;
        json_t *d;
        json_array_foreach(arr, i, d)
        {
            printf("%-9s %s (%s%s)\n", i ? "" : labels[k],
                   monitor_str(d, "id", "?"), monitor_str(d, "state", "?"),
                   json_is_true(json_object_get(d, "any")) ? ", any end" : "");
        }
        if (json_array_size(arr) >= 100)
            printf("%-9s (the first 100)\n", "");
    }
}

/* The payload line: its size and start (all of it with --payload). */
static void
s_print_payload(const json_t *job, bool all)
{
    const json_t *p = json_object_get(job, "payload");
    if (!p) {
        printf("payload   not shown: the collector does not keep payloads "
               "and the broker's answer has none\n");
        return;
    }
    char *text = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t n = text ? strlen(text) : 0;
    if (all)
        printf("payload   %zu bytes of JSON:\n%s\n", n, text ? text : "");
    else
        printf("payload   %zu bytes of JSON: %s\n", n,
               cli_cell(text ? text : "", 60, false));
    free(text);
}

/* Prints a result (JSON), or the note saying why there is none. */
static void
s_print_result(const json_t *result, const char *note, bool wide)
{
    if (!result) {
        printf("result    %s\n", note);
        return;
    }
    char *text = json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t n = text ? strlen(text) : 0;
    printf("result    %zu bytes of JSON: %s%s\n", n,
           cli_cell(text ? text : "", 60, wide),
           n > 60 && !wide ? " (drover result ID: all of it)" : "");
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
    /* Line by line, each escaped as monitor_str would (a terminal escape
     * in a handler's stderr must not reach the terminal). */
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char *e = dv_text_escape(p, n);
        printf("        %s\n", e ? e : "?");
        free(e);
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
                s_shown_t *shown, bool wide)
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
    printf("%-5s ", num);
    cli_col(stdout, monitor_str(a, "worker", "-"), 20, wide, " ");
    printf("%-24s %8s  %s\n", started_at ? s_time(started_at) : "-",
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
    if (json_is_string(json_object_get(a, "retry_note")))
        printf("      %s\n", monitor_str(a, "retry_note", ""));
    int64_t at = monitor_int(a, "attempt");
    const char *prev = shown->details;
    s_print_block("details", json_string_value(json_object_get(a, "details")),
                  &shown->details, shown->details_at);
    if (shown->details != prev)
        shown->details_at = at;
    prev = shown->stderr_tail;
    s_print_block("stderr (its end)",
                  json_string_value(json_object_get(a, "stderr")),
                  &shown->stderr_tail, shown->stderr_at);
    if (shown->stderr_tail != prev)
        shown->stderr_at = at;
}

/* The attempts table under a job. */
static void
s_print_attempts(const json_t *attempts, int64_t rounds,
                 const char *job_category, bool wide)
{
    printf("\n%-5s %-20s %-24s %8s  %s\n", "TRY", "WORKER", "STARTED", "TOOK",
           "OUTCOME");
    s_shown_t shown = { 0 };
    size_t i;
    json_t *a;
    json_array_foreach(attempts, i, a)
        s_print_attempt(a, rounds, job_category, &shown, wide);
    if (json_array_size(attempts) == 0)
        printf("(no attempt yet)\n");
}

/* The lines every job shows: state, queue, type, options, error, payload,
 * result. */
static void
s_print_job_head(const json_t *job, const char *id, bool payload, bool wide)
{
    int64_t attempt = monitor_int(job, "attempt");
    int64_t max = monitor_int(job, "max_attempts");
    printf("job       %s\n", monitor_str(job, "id", id));
    printf("state     %s after %" PRId64 " attempt%s",
           monitor_str(job, "state", "?"), attempt, attempt == 1 ? "" : "s");
    if (max > 0)
        printf(" (of %" PRId64 ")", max);
    if (monitor_int(job, "round"))
        printf(" (retried by an operator)");
    printf("\n");
    printf("queue     %s\ntype      %s\n", monitor_str(job, "queue", "?"),
           monitor_str(job, "type", "?"));
    if (json_string_value(json_object_get(job, "batch")))
        printf("batch     %s\n", monitor_str(job, "batch", ""));
    if (json_string_value(json_object_get(job, "schedule")))
        printf("schedule  %s\n", monitor_str(job, "schedule", ""));
    char opts[256] = "";
    size_t n = 0;
    if (max > 0)
        n += (size_t)snprintf(opts + n, sizeof opts - n, ", max attempts %s",
                              cli_num(max));
    if (json_is_integer(json_object_get(job, "priority")) && n < sizeof opts)
        n += (size_t)snprintf(opts + n, sizeof opts - n, ", priority %" PRId64,
                              monitor_int(job, "priority"));
    if (json_is_integer(json_object_get(job, "timeout_ms")) && n < sizeof opts)
        n += (size_t)snprintf(opts + n, sizeof opts - n, ", timeout %s",
                              monitor_int(job, "timeout_ms") > 0
                                  ? cli_dur(monitor_int(job, "timeout_ms"))
                                  : "the worker's");
    if (json_is_string(json_object_get(job, "key")) && n < sizeof opts)
        snprintf(opts + n, sizeof opts - n, ", key %s",
                 monitor_str(job, "key", ""));
    if (opts[0])
        printf("options   %s\n", opts + 2);
    if (json_is_string(json_object_get(job, "worker")) &&
        !strcmp(monitor_str(job, "state", ""), "running"))
        printf("worker    %s\n", monitor_str(job, "worker", ""));
    if (json_is_string(json_object_get(job, "broker")))
        printf("broker    %s\n", monitor_str(job, "broker", "?"));
    if (monitor_int(job, "submitted_at"))
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
    if (json_is_string(json_object_get(job, "retry_note")))
        printf("retries   %s\n", monitor_str(job, "retry_note", ""));
    s_print_deps(job);
    s_print_payload(job, payload);
    const json_t *result = json_object_get(job, "result");
    s_print_result(json_is_null(result) ? NULL : result,
                   monitor_str(job, "result_note", "none"), wide);
}

/* The broker's view of a job in the documented shape of `drover job
 * --json` (source "broker"): its attempts (the failed ones it keeps), no
 * history. */
static json_t *
s_job_from_broker(json_t *bjob, const char *why)
{
    json_t *job = json_pack("{s:s, s:s}", "source", "broker", "note", why);
    json_object_update(job, bjob);
    const char *state = monitor_str(bjob, "state", "?");
    char note[160] = "";
    json_t *result = s_broker_result(bjob, state, note, sizeof note);
    json_object_set_new(job, "result", result ? result : json_null());
    json_object_set_new(job, "result_note",
                        result ? json_null() : json_string(note));
    if (!json_is_array(json_object_get(job, "attempts")))
        json_object_set_new(job, "attempts", json_array());
    if (!json_object_get(job, "max_attempts"))
        json_object_set_new(job, "max_attempts", json_null());
    s_add_retry_notes(job);
    return job;
}

static int
s_job(cli_t *c, int argc, char **argv)
{
    (void)argc;
    const char *id = argv[0];
    int code = cli_job_id(c, id);
    if (code)
        return code;
    json_t *job;
    int ccode = monitor_query(monitor_endpoint(c->collector), "job", "job", id,
                              NULL, S_TIMEOUT_MS, &job, true);
    char cwhy[600];
    snprintf(cwhy, sizeof cwhy, "%s", monitor_query_error());
    char note[300] = "";
    int bcode;
    json_t *bjob = s_broker_job(c->broker, id, note, sizeof note, &bcode);
    if (ccode) {
        /* The broker knows the job while it lives and for its
         * --result-ttl after. */
        if (!bjob) {
            if (bcode == CLI_USAGE)
                return cli_fail(c, CLI_USAGE, "usage", "%s",
                                note + strlen("unknown: "));
            if (ccode == CLI_NOT_FOUND && bcode == CLI_NOT_FOUND)
                return cli_fail(c, CLI_NOT_FOUND, NULL,
                                "no job %s: neither the collector's history "
                                "nor the broker has it",
                                id);
            if (ccode == CLI_NOT_FOUND)
                return cli_fail(c, CLI_NOT_FOUND, NULL, "%s; the broker: %s",
                                cwhy, note);
            return cli_fail(c, (cli_exit_t)ccode, NULL, "%s; the broker: %s",
                            cwhy, note);
        }
        job = s_job_from_broker(bjob, cwhy);
        json_decref(bjob);
        if (c->json) {
            cli_print_json(job);
        } else {
            s_print_job_head(job, id, s_jb.payload, c->wide);
            s_print_attempts(json_object_get(job, "attempts"), 0,
                             monitor_str(job, "category", NULL), c->wide);
            printf("\n(from the broker, which keeps the failed attempts only: "
                   "the collector did not show the job: %s)\n",
                   cwhy);
        }
        json_decref(job);
        return 0;
    }
    const char *state = monitor_str(job, "state", "?");
    json_t *result = s_broker_result(bjob, state, note, sizeof note);
    json_t *out = json_pack("{s:s, s:n}", "source", "collector", "note");
    json_object_update(out, job);
    json_decref(job);
    job = out;
    if (bjob) {
        s_merge_details(job, bjob);
        s_merge_options(job, bjob);
    } else {
        s_merge_options(job, NULL);
    }
    json_decref(bjob);
    json_object_set_new(job, "result", result ? result : json_null());
    json_object_set_new(job, "result_note",
                        result ? json_null() : json_string(note));
    s_add_retry_notes(job);
    if (c->json) {
        cli_print_json(job);
        json_decref(job);
        return 0;
    }
    s_print_job_head(job, id, s_jb.payload, c->wide);
    s_print_attempts(json_object_get(job, "attempts"),
                     monitor_int(job, "round"),
                     monitor_str(job, "category", NULL), c->wide);
    json_decref(job);
    return 0;
}

const cli_cmd_t cli_job = {
    .name = "job",
    .summary = "one job and every attempt, with why it was retried or not",
    .args = "JOB_ID",
    .min_args = 1,
    .max_args = 1,
    .about =
        "One job from the collector's history: its state, queue, type, "
        "batch and options (max attempts, priority, timeout, key: what the "
        "broker tells), its payload (the start and its size; --payload: all "
        "of it; when the broker's answer carries it), its result, and every "
        "attempt: worker, start, duration, outcome, last progress, failure "
        "category and message with a hint, what the handler said about a "
        "failure (its details, e.g. a traceback) and the end of its stderr, "
        "and why it was or was not retried (\"retried: attempt 2 of 3 "
        "started 1.2s later\", \"dead: 3 of 3 attempts used\").\n\n"
        "The result, details and stderr come from the broker, which keeps "
        "them for its --result-ttl. When the collector cannot show the job "
        "(down, not allowed for a client key, or it has not seen it), the "
        "broker's view, with the failed attempts it keeps.\n\n"
        "Exit 2 if JOB_ID is not a job id, 4 if neither has the job, 3 if "
        "the collector does not answer and the broker cannot show it.",
    .examples = "  drover job 0190a6f2-7c4e-7d1a-9b2e-3f4a5b6c7d8e\n"
                "  drover job ID --json | jq '.attempts[] | {attempt, "
                "category, retry_note}'\n",
    .flags = s_job_flags,
    .shared = CLI_JSON | CLI_BROKER | CLI_COLLECTOR | CLI_WIDE,
    .run = s_job,
};

/* ---- result -------------------------------------------------------------- */

static struct {
    bool wait;
    int64_t timeout_ms;
} s_ro;

static const dv_flag_t s_result_flags[] = {
    DV_FLAG_ON("wait", &s_ro.wait,
               .help = "wait until the job ended, then print its result"),
    DV_FLAG_DUR("timeout", &s_ro.timeout_ms, 0, 31 * 86400 * 1000.0,
                .arg = "SECONDS",
                .help = "with --wait, give up after this long (exit 6); 0 "
                        "waits for ever",
                .dflt = "0"),
    DV_FLAG_TABLE_END,
};

typedef struct {
    char state[16];
    char *result_json;
    char category[64];
    char *error;
    int attempts;
} s_waited_t;

static int
s_on_result(const drover_result_t *r, void *arg)
{
    s_waited_t *w = arg;
    snprintf(w->state, sizeof w->state, "%s", r->state ? r->state : "unknown");
    w->result_json = r->result_json ? strdup(r->result_json) : NULL;
    snprintf(w->category, sizeof w->category, "%s",
             r->category ? r->category : "");
    w->error = r->error ? strdup(r->error) : NULL;
    w->attempts = r->attempts;
    return 0;
}

/* Prints the result (JSON text, or a value) for scripts: as it is, or
 * with --json in {"id", "state", "result"}. */
static int
s_put_result(const cli_t *c, const char *id, const char *text,
             const json_t *value)
{
    json_t *v = value  ? json_incref((json_t *)value)
                : text ? json_loads(text, JSON_DECODE_ANY, NULL)
                       : json_null();
    if (!v)
        v = json_string(text); /* not JSON: as a string */
    if (c->json) {
        json_t *o = json_pack("{s:s, s:s, s:O}", "id", id, "state", "succeeded",
                              "result", v);
        cli_print_json(o);
        json_decref(o);
    } else {
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("%s\n", t ? t : "null");
        free(t);
    }
    json_decref(v);
    return 0;
}

/* An ended job that did not succeed: exit 1 with its error. */
static int
s_not_succeeded(const cli_t *c, const char *id, const char *state,
                const char *category, const char *error)
{
    if (category && *category)
        return cli_fail(c, CLI_FAILED, state, "job %s is %s: %s: %s", id, state,
                        category, error ? error : "");
    return cli_fail(c, CLI_FAILED, state, "job %s is %s: it has no result", id,
                    state);
}

static int
s_result_wait(cli_t *c, const char *id)
{
    drover_client_t *cl = drover_connect(c->broker, 5000);
    if (!cl)
        return cli_fail(c, CLI_USAGE, NULL, "%s", drover_last_error(NULL));
    s_waited_t w = { .state = "" };
    const char *ids[1] = { id };
    int rc =
        drover_wait(cl, ids, 1, s_ro.timeout_ms > 0 ? (int)s_ro.timeout_ms : -1,
                    s_on_result, &w);
    int code;
    if (rc == DROVER_ETIMEOUT)
        code = cli_fail(c, CLI_TIMEOUT, NULL,
                        "--timeout passed before job %s ended", id);
    else if (rc != DROVER_OK)
        code = cli_fail(c, cli_exit_of(rc, drover_last_code(cl)), NULL, "%s",
                        drover_last_error(cl));
    else if (!strcmp(w.state, "succeeded"))
        code = s_put_result(c, id, w.result_json, NULL);
    else if (!strcmp(w.state, "unknown") || !w.state[0])
        code = cli_fail(c, CLI_NOT_FOUND, NULL,
                        "no job %s: the broker does not know it (or no "
                        "longer keeps it: --result-ttl)",
                        id);
    else
        code = s_not_succeeded(c, id, w.state, w.category, w.error);
    free(w.result_json);
    free(w.error);
    drover_close(&cl);
    return code;
}

static int
s_result(cli_t *c, int argc, char **argv)
{
    (void)argc;
    const char *id = argv[0];
    int code = cli_job_id(c, id);
    if (code)
        return code;
    if (s_ro.timeout_ms > 0 && !s_ro.wait)
        return cli_usage(c, &s_result_flags[1], "--timeout goes with --wait");
    if (s_ro.wait)
        return s_result_wait(c, id);
    char note[300] = "";
    int bcode;
    json_t *bjob = s_broker_job(c->broker, id, note, sizeof note, &bcode);
    if (!bjob && bcode != CLI_NOT_FOUND)
        return cli_fail(c, (cli_exit_t)bcode, NULL, "job %s: %s", id,
                        note + strlen("unknown: "));
    if (!bjob) {
        /* The collector may still know it: ended longer ago than the
         * broker keeps results. */
        json_t *cj;
        int ccode = monitor_query(monitor_endpoint(c->collector), "result",
                                  "job", id, NULL, S_TIMEOUT_MS, &cj, true);
        if (ccode)
            return cli_fail(c, CLI_NOT_FOUND, NULL,
                            "no job %s: the broker does not know it%s", id,
                            ccode == CLI_NOT_FOUND
                                ? ", nor does the collector's history"
                                : "");
        const char *state = monitor_str(cj, "state", "?");
        if (!strcmp(state, "succeeded"))
            code = cli_fail(c, CLI_FAILED, "expired",
                            "job %s succeeded, but its result is no longer "
                            "kept (the broker keeps results for its "
                            "--result-ttl)",
                            id);
        else
            code =
                s_not_succeeded(c, id, state, monitor_str(cj, "category", NULL),
                                monitor_str(cj, "error", NULL));
        json_decref(cj);
        return code;
    }
    const char *state = monitor_str(bjob, "state", "?");
    if (!strcmp(state, "succeeded")) {
        json_t *r = json_object_get(bjob, "result");
        code = r ? s_put_result(c, id, NULL, r) : s_result_wait(c, id);
    } else if (!strcmp(state, "dead") || !strcmp(state, "cancelled")) {
        code =
            s_not_succeeded(c, id, state, monitor_str(bjob, "category", NULL),
                            monitor_str(bjob, "error", NULL));
    } else {
        code = cli_fail(c, CLI_FAILED, "not_finished",
                        "job %s is %s: no result yet (--wait waits for it)", id,
                        state);
    }
    json_decref(bjob);
    return code;
}

const cli_cmd_t cli_result = {
    .name = "result",
    .summary = "print a job's result as JSON (for scripts)",
    .args = "JOB_ID",
    .min_args = 1,
    .max_args = 1,
    .about = "Prints just the job's result, as the JSON its handler gave, "
             "on stdout: for scripts (drover result ID | jq .). Asks the "
             "broker, which keeps results for its --result-ttl.\n\n"
             "Exit 0 with the result; 1 when the job has not finished (no "
             "--wait), ended dead or cancelled (its error on stderr), or "
             "succeeded longer ago than the broker keeps results; 4 when "
             "no one knows the job; 6 when --timeout passed first.",
    .examples = "  drover result ID | jq .\n"
                "  drover result --wait --timeout 60 ID > out.json\n",
    .flags = s_result_flags,
    .shared = CLI_JSON | CLI_BROKER | CLI_COLLECTOR,
    .run = s_result,
};

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
        cli_print_json(body);
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
        cli_col(stdout, monitor_str(k, "id", "?"), 12, false, " ");
        printf("%-8.8s %-8s %4" PRId64 " %4" PRId64 " %4" PRId64
               " %10s %9s %7s %6s\n",
               monitor_str(k, "hash", "-"), monitor_str(k, "state", "?"),
               monitor_int(st, "ok"), monitor_int(st, "cooling"),
               monitor_int(st, "disabled"), cli_num(monitor_int(k, "requests")),
               cli_num(monitor_int(k, "ok")),
               cli_num(monitor_int(k, "rate_limited")),
               cli_num(monitor_int(k, "errors")));
    }
    json_decref(body);
    return 0;
}

/* ---- health -------------------------------------------------------------- */

static struct {
    const char *self;        /* --self: broker, collector, worker; NULL */
    const char *health_file; /* --health-file (worker) */
    int64_t max_age_ms;      /* --max-age (worker) */
    int64_t timeout_ms;      /* --timeout (broker, collector) */
} s_ho;

static const dv_flag_t s_health_flags[] = {
    DV_FLAG_STR("self", &s_ho.self, .arg = "broker|collector|worker",
                .help = "is this one process alive (a probe), not the "
                        "fleet: a broker or collector answers, a worker's "
                        "--health-file is fresh; 0 alive, 2 not"),
    DV_FLAG_STR("health-file", &s_ho.health_file, .arg = "FILE",
                .complete = DV_COMPLETE_FILE,
                .help = "with --self worker: the worker's --health-file"),
    DV_FLAG_DUR("max-age", &s_ho.max_age_ms, 10, 86400 * 1000.0,
                .arg = "SECONDS", .dflt = "10",
                .help = "with --self worker: alive if the file was touched "
                        "this recently"),
    DV_FLAG_DUR("timeout", &s_ho.timeout_ms, 100, 600 * 1000.0,
                .arg = "SECONDS", .dflt = "3",
                .help = "how long to wait for the collector's answer (with "
                        "--self broker or collector: that process's)"),
    DV_FLAG_TABLE_END,
};

/* The verdict of --self: printed, and the exit status (0 alive, 2 not). */
static int
s_self_verdict(const cli_t *c, json_t *v)
{
    bool alive = json_is_true(json_object_get(v, "alive"));
    json_object_set_new(v, "status", json_integer(alive ? 0 : 2));
    if (c->json) {
        cli_print_json(v);
    } else {
        const char *what = monitor_str(v, "self", "?");
        const char *role = monitor_str(v, "role", NULL);
        const char *at = monitor_str(v, "endpoint", NULL);
        if (!at)
            at = monitor_str(v, "health_file", "?");
        printf("%s: %s at %s%s%s%s\n", alive ? "alive" : "not alive", what, at,
               role ? " (" : "", role ? role : "", role ? ")" : "");
        if (!alive)
            printf("  - %s\n", monitor_str(v, "reason", "?"));
    }
    json_decref(v);
    return alive ? 0 : 2;
}

/* --self broker: its clients socket answers status (an active broker or a
 * standby: both are alive). Any answer counts, a refusal too: the process
 * runs its loop. */
static int
s_self_broker(const cli_t *c)
{
    const char *ep = c->broker;
    if (!ep || !*ep) {
        const char *env = getenv("DROVER_BROKER");
        ep = env && *env ? env : DROVER_DEFAULT_ENDPOINT;
    }
    json_t *v =
        json_pack("{s:s, s:s, s:b, s:i, s:n, s:n, s:n, s:n, s:n}", "self",
                  "broker", "endpoint", ep, "alive", false, "status", 2, "role",
                  "health_file", "age_ms", "max_age_ms", "reason");
    if (!v)
        return cli_fail(c, CLI_FAILED, "no_memory", "out of memory");
    drover_client_t *cl = drover_connect(ep, (int)s_ho.timeout_ms);
    if (!cl) {
        json_decref(v);
        return cli_fail(c, CLI_USAGE, "usage", "%s", drover_last_error(NULL));
    }
    char *text = NULL;
    int rc = drover_ctrl(cl, "status", NULL, NULL, &text);
    if (rc == DROVER_OK || rc == DROVER_EREJECTED) {
        json_t *st = text ? json_loads(text, 0, NULL) : NULL;
        const char *role = monitor_str(st, "role", "active");
        json_object_set_new(v, "alive", json_true());
        json_object_set_new(v, "role",
                            rc == DROVER_OK ? json_string(role) : json_null());
        if (rc != DROVER_OK)
            json_object_set_new(v, "reason",
                                json_sprintf("it answered, refusing status: %s",
                                             drover_last_error(cl)));
        json_decref(st);
    } else {
        json_object_set_new(v, "reason", json_string(drover_last_error(cl)));
    }
    free(text);
    drover_close(&cl);
    return s_self_verdict(c, v);
}

/* --self collector: its query socket answers health (in memory, cheap). A
 * refusal (a key not allowed) is an answer too. */
static int
s_self_collector(const cli_t *c)
{
    const char *ep = monitor_endpoint(c->collector);
    json_t *v =
        json_pack("{s:s, s:s, s:b, s:i, s:n, s:n, s:n, s:n, s:n}", "self",
                  "collector", "endpoint", ep, "alive", false, "status", 2,
                  "role", "health_file", "age_ms", "max_age_ms", "reason");
    if (!v)
        return cli_fail(c, CLI_FAILED, "no_memory", "out of memory");
    json_t *h = NULL;
    int code = monitor_query(ep, "health", "health", NULL, NULL,
                             (int)s_ho.timeout_ms, &h, true);
    json_decref(h);
    if (code == CLI_USAGE) { /* a malformed endpoint or certificate */
        json_decref(v);
        return cli_fail(c, CLI_USAGE, "usage", "%s", monitor_query_error());
    }
    if (code != CLI_UNREACHABLE) {
        json_object_set_new(v, "alive", json_true());
        if (code)
            json_object_set_new(v, "reason",
                                json_sprintf("it answered, refusing health: %s",
                                             monitor_query_error()));
    } else {
        json_object_set_new(v, "reason", json_string(monitor_query_error()));
    }
    return s_self_verdict(c, v);
}

/* --self worker: the worker touches its --health-file at every heartbeat it
 * sends (so only while the broker knows it) and removes it on exit. */
static int
s_self_worker(const cli_t *c)
{
    if (!s_ho.health_file || !*s_ho.health_file)
        return cli_usage(c, &s_health_flags[1],
                         "--self worker needs --health-file: the file the "
                         "worker's --health-file touches");
    json_t *v =
        json_pack("{s:s, s:n, s:b, s:i, s:n, s:s, s:n, s:I, s:n}", "self",
                  "worker", "endpoint", "alive", false, "status", 2, "role",
                  "health_file", s_ho.health_file, "age_ms", "max_age_ms",
                  (json_int_t)s_ho.max_age_ms, "reason");
    if (!v)
        return cli_fail(c, CLI_FAILED, "no_memory", "out of memory");
    struct stat sb;
    if (stat(s_ho.health_file, &sb) != 0) {
        json_object_set_new(
            v, "reason",
            json_sprintf("%s: %s (the worker is not running, or has not "
                         "reached a broker)",
                         s_ho.health_file, strerror(errno)));
        return s_self_verdict(c, v);
    }
    int64_t mtime = (int64_t)sb.st_mtim.tv_sec * 1000 +
                    (int64_t)sb.st_mtim.tv_nsec / 1000000;
    int64_t age = dv_now_ms() - mtime;
    if (age < 0)
        age = 0;
    json_object_set_new(v, "age_ms", json_integer(age));
    if (age <= s_ho.max_age_ms)
        json_object_set_new(v, "alive", json_true());
    else
        json_object_set_new(
            v, "reason",
            json_sprintf("last touched %.1f s ago, more than --max-age %.1f "
                         "s: the worker is stuck or has lost its broker",
                         age / 1000.0, s_ho.max_age_ms / 1000.0));
    return s_self_verdict(c, v);
}

static int
s_health(cli_t *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (s_ho.self) {
        if (!strcmp(s_ho.self, "broker"))
            return s_self_broker(c);
        if (!strcmp(s_ho.self, "collector"))
            return s_self_collector(c);
        if (!strcmp(s_ho.self, "worker"))
            return s_self_worker(c);
        return cli_usage(c, &s_health_flags[0],
                         "--self: '%s' is not broker, collector or worker",
                         s_ho.self);
    }
    json_t *h;
    if (monitor_query(monitor_endpoint(c->collector), "health", "health", NULL,
                      NULL, (int)s_ho.timeout_ms, &h, true))
        /* cannot tell: not 1 or 2, which say something */
        return cli_fail(c, CLI_UNREACHABLE, NULL, "%s", monitor_query_error());
    int status = (int)monitor_int(h, "status");
    if (c->json) {
        cli_print_json(h);
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

const cli_cmd_t cli_health = {
    .name = "health",
    .summary = "exit 0 healthy, 1 degraded, 2 down",
    .about = "The collector's verdict on the fleet, with its reasons: "
             "degraded when a queue has jobs and no worker serving it, every "
             "API key is cooling down or disabled, or a broker cannot write "
             "its store; down when a broker does not answer. Usable as a "
             "liveness probe of the fleet.\n\n"
             "With --self, a probe of one process instead, asking neither "
             "the collector nor any other process: --self broker asks the "
             "broker (--broker) for its status, and an active broker or a "
             "standby that answers is alive; --self collector asks the "
             "collector (--collector) for its health and is alive when it "
             "answers, whatever the verdict; --self worker checks that the "
             "file the worker's --health-file touches at every heartbeat is "
             "at most --max-age old. 0 alive, 2 not; with --json "
             "{self, endpoint, alive, status, role, health_file, age_ms, "
             "max_age_ms, reason} (docs/json.md).",
    .examples = "  drover health || page-someone\n"
                "  drover health --self broker --broker tcp://127.0.0.1:7700\n"
                "  drover health --self worker --health-file "
                "/run/drover/health --max-age 10\n",
    .exits = "0 healthy (--self: alive); 1 degraded; 2 down (--self: not "
             "alive); 3 the collector cannot be reached or answer (usage "
             "errors are 2 as well)",
    .flags = s_health_flags,
    .shared = CLI_JSON | CLI_BROKER | CLI_COLLECTOR,
    .run = s_health,
};

/* ---- watch --------------------------------------------------------------- */

static volatile sig_atomic_t s_interrupted;

static void
s_on_int(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

static struct {
    int64_t interval_ms, timeout_ms;
} s_wo;

static const dv_flag_t s_watch_flags[] = {
    DV_FLAG_DUR("interval", &s_wo.interval_ms, 100, 3600 * 1000.0,
                .arg = "SECONDS", .dflt = "1",
                .help = "how often to ask the collector"),
    DV_FLAG_DUR("timeout", &s_wo.timeout_ms, 0, 31 * 86400 * 1000.0,
                .arg = "SECONDS", .dflt = "0",
                .help = "give up after this long (exit 6); 0 waits for ever"),
    DV_FLAG_TABLE_END,
};

/* The batch answer as the one progress bar's numbers. */
static cli_progress_t
s_progress(const json_t *b)
{
    const json_t *c = json_object_get(b, "counts");
    const json_t *eta = json_object_get(b, "eta_s");
    return (cli_progress_t){
        .done = monitor_int(b, "done"),
        .total = monitor_int(b, "total"),
        .succeeded = monitor_int(c, "succeeded"),
        .dead = monitor_int(c, "dead"),
        .cancelled = monitor_int(c, "cancelled"),
        .running = monitor_int(c, "running"),
        .rate = json_number_value(json_object_get(b, "rate")),
        .eta_s = json_is_number(eta) ? json_number_value(eta) : -1,
    };
}

static int
s_watch(cli_t *c, int argc, char **argv)
{
    (void)argc;
    const char *name = argv[0];
    json_t *args = json_pack("{s:s}", "name", name);
    bool bar = !c->json && isatty(STDERR_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_int;
    sigaction(SIGINT, &sa, NULL);
    char label[160];
    snprintf(label, sizeof label, "batch %s", name);
    int64_t start = dv_mono_ms(), last_line = 0;
    bool waiting_said = false;
    int code = CLI_FAILED;
    for (;;) {
        json_t *b;
        int rc = s_ask(c, "batch", NULL, args, S_TIMEOUT_MS, &b);
        if (rc) {
            if (bar && last_line)
                fputs("\n", stderr);
            code = rc;
            break;
        }
        int64_t total = monitor_int(b, "total");
        bool finished = json_is_true(json_object_get(b, "finished"));
        int64_t mono = dv_mono_ms();
        cli_progress_t p = s_progress(b);
        if (total == 0 && !waiting_said && !c->json) {
            fprintf(stderr,
                    "drover watch: no job of batch %s seen yet; "
                    "waiting\n",
                    name);
            waiting_said = true;
        } else if (total > 0 && !c->json && bar) {
            cli_bar(stderr, &p, finished);
            last_line = mono;
        } else if (total > 0 && !c->json &&
                   (finished || mono - last_line >= 5000)) {
            if (finished)
                p.eta_s = 0;
            cli_progress_line(stdout, label, &p);
            last_line = mono;
        }
        if (finished) {
            code = p.dead || p.cancelled ? CLI_FAILED : CLI_OK;
            if (c->json)
                cli_print_json(b);
            json_decref(b);
            break;
        }
        json_decref(b);
        bool late = s_wo.timeout_ms > 0 && mono - start >= s_wo.timeout_ms;
        if (s_interrupted || late) {
            if (bar && last_line)
                fputs("\n", stderr);
            if (s_interrupted)
                code = cli_fail(c, 130, "interrupted",
                                "interrupted before batch %s ended", name);
            else
                code = cli_fail(c, CLI_TIMEOUT, NULL,
                                "--timeout passed before batch %s ended", name);
            break;
        }
        poll(NULL, 0, (int)s_wo.interval_ms);
    }
    json_decref(args);
    return code;
}

const cli_cmd_t cli_watch = {
    .name = "watch",
    .summary = "follow a batch: progress bar and ETA",
    .args = "BATCH",
    .min_args = 1,
    .max_args = 1,
    .about = "Follows a batch (submit --batch NAME) until every job of it "
             "ended: a progress bar with rate and ETA on a terminal, else a "
             "line every five seconds. Waits for the batch to appear if it "
             "is not known yet. With --json, prints the batch's counts once "
             "it ended.\n\n"
             "Exit 0 every job succeeded; 1 a job ended dead or cancelled; 3 "
             "the collector cannot be reached; 6 --timeout passed first.",
    .examples = "  drover submit --batch nightly --jsonl jobs.jsonl && "
                "drover watch nightly\n"
                "  drover watch nightly --timeout 1h --json\n",
    .flags = s_watch_flags,
    .shared = CLI_JSON | CLI_COLLECTOR,
    .run = s_watch,
};
