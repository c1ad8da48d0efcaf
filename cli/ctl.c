/* Control verbs that go through the broker: `drover cancel`, `drover
 * status`, `drover check`, and the queue and worker verbs. */
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "drover.h"
#include "dv_clock.h"
#include "dv_util.h"
#include "monitor.h"

#define CLI_EXIT_UNREACHABLE 3

/* Parses --broker and --json, and requires nargs arguments after them (at
 * argv[optind]; -1: one or more). Returns -1 to go on, else an exit code. */
static int
s_parse(int argc, char **argv, const char *usage, int nargs,
        const char **broker, int *json)
{
    static const struct option opts[] = {
        { "broker", required_argument, 0, 'b' },
        { "json", no_argument, 0, 'j' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            *broker = optarg;
            break;
        case 'j':
            *json = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (nargs < 0 ? optind >= argc : optind != argc - nargs) {
        fputs(usage, stderr);
        return 2;
    }
    return -1;
}

/* Connects to the broker (CurveZMQ from DROVER_CURVE_*). NULL after
 * printing why: a malformed endpoint, a certificate that cannot be used
 * (exit 2). */
static drover_client_t *
s_connect(const char *broker, int timeout_ms, const char *what)
{
    drover_client_t *c = drover_connect(broker, timeout_ms);
    if (!c)
        fprintf(stderr, "drover %s: %s\n", what, drover_last_error(NULL));
    return c;
}

static int
s_fail(drover_client_t *c, const char *what, int rc)
{
    fprintf(stderr, "drover %s: %s\n", what,
            c ? drover_last_error(c) : drover_strerror(rc));
    return rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT
               ? CLI_EXIT_UNREACHABLE
               : 1;
}

int
cancel_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover cancel [--broker EP] JOB_ID...\n"
        "\n"
        "Cancels jobs: queued or scheduled ones never run; a running one is\n"
        "stopped on its worker. Exit 0 when every job was cancelled, 1 when\n"
        "any could not be (already ended, unknown), 3 if the broker is\n"
        "unreachable.\n";
    const char *broker = NULL;
    int json = 0;
    int r = s_parse(argc, argv, usage, -1, &broker, &json);
    if (r >= 0)
        return r;
    drover_client_t *c = s_connect(broker, 5000, "cancel");
    if (!c)
        return 2;
    int exit_code = 0;
    for (int i = optind; i < argc; i++) {
        int rc = drover_cancel(c, argv[i]);
        if (rc == DROVER_OK) {
            printf("%s cancelled\n", argv[i]);
        } else if (rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT) {
            exit_code = s_fail(c, "cancel", rc);
            break;
        } else {
            fprintf(stderr, "drover cancel: %s: %s\n", argv[i],
                    drover_last_error(c));
            exit_code = 1;
        }
    }
    drover_close(&c);
    return exit_code;
}

static const char *
s_str(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

/* status from a broker group: with several endpoints each is asked on its
 * own, the answer shown is the active broker's (a standby's only when no
 * broker is active), and group gets one line per endpoint saying which is
 * which. Returns 0 with *body, or the exit code after saying why. */
static int
s_group_status(const char *broker, char **body, char *group, size_t size)
{
    char **eps = NULL;
    int n = dv_strv_split(
        broker ? broker : dv_env_or("DROVER_BROKER", DROVER_DEFAULT_ENDPOINT),
        &eps);
    int code = 0;
    size_t used = 0;
    for (int i = 0; i < n && n > 1; i++) {
        drover_client_t *c = drover_connect(eps[i], 1500);
        char *text = NULL;
        int rc = c ? drover_ctrl(c, "status", NULL, NULL, &text) : -1;
        drover_close(&c);
        json_t *st = rc == DROVER_OK && text ? json_loads(text, 0, NULL) : NULL;
        const char *role = !st                                     ? "no answer"
                           : !strcmp(s_str(st, "role"), "standby") ? "standby"
                                                                   : "active";
        if (used < size)
            used +=
                (size_t)snprintf(group + used, size - used, "%-8s %s %s\n",
                                 role, eps[i], st ? s_str(st, "broker") : "");
        bool active = st && !strcmp(role, "active");
        if (st && (active || !*body)) { /* a standby's only until then */
            free(*body);
            *body = text;
            text = NULL;
        }
        free(text);
        json_decref(st);
        if (active)
            break;
    }
    if (n > 1 && used < size)
        snprintf(group + used, size - used, "\n");
    if (n > 1 && !*body) {
        fprintf(stderr, "drover status: no broker of %s answers\n",
                broker ? broker : dv_env_or("DROVER_BROKER", ""));
        code = CLI_EXIT_UNREACHABLE;
    }
    dv_strv_free(&eps);
    if (n > 1)
        return code;
    group[0] = '\0';
    drover_client_t *c = s_connect(broker, 3000, "status");
    if (!c)
        return 2;
    int rc = drover_ctrl(c, "status", NULL, NULL, body);
    if (rc != DROVER_OK)
        code = s_fail(c, "status", rc);
    drover_close(&c);
    return code;
}

int
status_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover status [--broker EP] [--json]\n"
        "\n"
        "Shows the broker's queues (queued, scheduled, running), its workers\n"
        "and counters. With several endpoints (a group of brokers on one\n"
        "PostgreSQL store), asks each: says which is active and which are\n"
        "standbys, and shows the active one. Exit 3 if no broker answers.\n";
    const char *broker = NULL;
    int json = 0;
    int r = s_parse(argc, argv, usage, 0, &broker, &json);
    if (r >= 0)
        return r;
    char *body = NULL;
    char group[2048] = "";
    int code = s_group_status(broker, &body, group, sizeof group);
    if (code != 0)
        return code;
    if (json) {
        printf("%s\n", body);
        free(body);
        return 0;
    }
    json_error_t err;
    json_t *st = json_loads(body, 0, &err);
    free(body);
    if (!st) {
        fprintf(stderr, "drover status: unreadable answer: %s\n", err.text);
        return 1;
    }
    json_t *counters = json_object_get(st, "counters");
    if (group[0])
        printf("%s", group);
    if (!strcmp(s_str(st, "role"), "standby")) {
        printf("broker %s  STANDBY: %s\n", s_str(st, "broker"),
               s_str(st, "lock"));
        json_decref(st);
        return 0;
    }
    printf("broker %s  store %s  up %llds\n",
           json_string_value(json_object_get(st, "broker")),
           json_string_value(json_object_get(st, "store")),
           (long long)json_integer_value(json_object_get(st, "uptime_ms")) /
               1000);
    const json_t *sf = json_object_get(st, "store_failure");
    if (sf) {
        long long since =
            (long long)json_integer_value(json_object_get(sf, "since_ms"));
        printf("store FAILING: %s for %llds; %lld jobs refused, %lld writes "
               "waiting (submits refused, dispatch paused)\n",
               json_string_value(json_object_get(sf, "error")),
               since > 0 ? ((long long)dv_now_ms() - since) / 1000 : 0,
               (long long)json_integer_value(json_object_get(sf, "refused")),
               (long long)json_integer_value(json_object_get(sf, "waiting")));
    }
    printf("\n%-20s %9s %9s %8s  %s\n", "QUEUE", "QUEUED", "SCHEDULED",
           "RUNNING", "LIMITS");
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(st, "queues"), i, q)
    {
        char limits[64] = "";
        size_t n = 0;
        double rate = json_number_value(json_object_get(q, "rate"));
        long long maxrun =
            (long long)json_integer_value(json_object_get(q, "max_running"));
        if (json_is_true(json_object_get(q, "paused")))
            n += (size_t)snprintf(limits + n, sizeof limits - n, "paused ");
        if (rate > 0 && n < sizeof limits)
            n += (size_t)snprintf(limits + n, sizeof limits - n, "%g/s ", rate);
        if (maxrun > 0 && n < sizeof limits)
            snprintf(limits + n, sizeof limits - n, "max %lld running", maxrun);
        printf("%-20.20s %9lld %9lld %8lld  %s\n",
               json_string_value(json_object_get(q, "name")),
               (long long)json_integer_value(json_object_get(q, "queued")),
               (long long)json_integer_value(json_object_get(q, "scheduled")),
               (long long)json_integer_value(json_object_get(q, "running")),
               limits);
    }
    printf("\n%-30s %6s %7s %10s %8s\n", "WORKER", "SLOTS", "RUNNING",
           "PROCESSED", "FAILED");
    json_t *w;
    json_array_foreach(json_object_get(st, "workers"), i, w)
    {
        printf("%-30.30s %6lld %7lld %10lld %8lld\n",
               json_string_value(json_object_get(w, "name")),
               (long long)json_integer_value(json_object_get(w, "concurrency")),
               (long long)json_integer_value(json_object_get(w, "running")),
               (long long)json_integer_value(json_object_get(w, "processed")),
               (long long)json_integer_value(json_object_get(w, "failed")));
    }
    printf(
        "\nsubmitted %lld  succeeded %lld  failed attempts %lld  retried %lld  "
        "dead %lld  cancelled %lld  lost %lld\n",
        (long long)json_integer_value(json_object_get(counters, "submitted")),
        (long long)json_integer_value(json_object_get(counters, "succeeded")),
        (long long)json_integer_value(json_object_get(counters, "failed")),
        (long long)json_integer_value(json_object_get(counters, "retried")),
        (long long)json_integer_value(json_object_get(counters, "dead")),
        (long long)json_integer_value(json_object_get(counters, "cancelled")),
        (long long)json_integer_value(json_object_get(counters, "lost")));
    monitor_print_leases(counters);
    json_decref(st);
    return 0;
}

/* ---- queue control ------------------------------------------------------- */

/* Sends one control verb; prints the reply body's count (if any) as
 * "WHAT N". Returns the exit code. */
static int
s_queue_verb(const char *broker, const char *cmd, drover_ctrl_t *req,
             const char *count_key, const char *done_msg)
{
    drover_client_t *c = s_connect(broker, 5000, cmd);
    if (!c)
        return 2;
    char *body = NULL;
    int rc = drover_ctrl_ex(c, req, &body);
    if (rc != DROVER_OK) {
        int code = s_fail(c, cmd, rc);
        drover_close(&c);
        return code;
    }
    drover_close(&c);
    long long n = -1;
    if (body && count_key) {
        json_t *j = json_loads(body, 0, NULL);
        json_t *v = j ? json_object_get(j, count_key) : NULL;
        if (json_is_integer(v))
            n = json_integer_value(v);
        json_decref(j);
    }
    free(body);
    if (n >= 0)
        printf("%s %lld\n", done_msg, n);
    else
        printf("%s\n", done_msg);
    return 0;
}

int
retry_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover retry [--broker EP] JOB_ID\n"
        "       drover retry [--broker EP] --dead --queue QUEUE\n"
        "\n"
        "Puts a dead or cancelled job back in its queue with all its attempts\n"
        "again; with --dead, every dead job of QUEUE. Exit 1 if the broker\n"
        "refuses (the job is not dead or cancelled, unknown), 3 if it is\n"
        "unreachable.\n";
    const char *broker = NULL, *queue = NULL;
    int dead = 0;
    static const struct option opts[] = {
        { "broker", required_argument, 0, 'b' },
        { "queue", required_argument, 0, 'q' },
        { "dead", no_argument, 0, 'd' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            broker = optarg;
            break;
        case 'q':
            queue = optarg;
            break;
        case 'd':
            dead = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    drover_ctrl_t req = { .verb = "retry" };
    if (dead) {
        if (!queue || optind != argc) {
            fputs(usage, stderr);
            return 2;
        }
        req.queue = queue;
        req.dead = 1;
        return s_queue_verb(broker, "retry", &req, "retried", "retried");
    }
    if (optind != argc - 1 || queue) {
        fputs(usage, stderr);
        return 2;
    }
    req.id = argv[optind];
    return s_queue_verb(broker, "retry", &req, NULL, "retried");
}

/* pause, resume, purge: one queue argument. */
static int
s_one_queue_verb(int argc, char **argv, const char *verb, const char *usage,
                 const char *count_key, const char *done)
{
    const char *broker = NULL;
    int json = 0;
    int r = s_parse(argc, argv, usage, 1, &broker, &json);
    if (r >= 0)
        return r;
    drover_ctrl_t req = { .verb = verb, .queue = argv[optind] };
    char msg[256];
    snprintf(msg, sizeof msg, "%s %s", argv[optind], done);
    return s_queue_verb(broker, verb, &req, count_key, msg);
}

int
pause_main(int argc, char **argv)
{
    return s_one_queue_verb(
        argc, argv, "pause",
        "usage: drover pause [--broker EP] QUEUE\n\n"
        "Stops starting jobs of QUEUE, fleet-wide; running jobs finish, new\n"
        "ones are accepted and wait. Kept across broker restarts.\n",
        NULL, "paused");
}

int
resume_main(int argc, char **argv)
{
    return s_one_queue_verb(argc, argv, "resume",
                            "usage: drover resume [--broker EP] QUEUE\n\n"
                            "Starts jobs of a paused QUEUE again.\n",
                            NULL, "resumed");
}

int
purge_main(int argc, char **argv)
{
    return s_one_queue_verb(
        argc, argv, "purge",
        "usage: drover purge [--broker EP] QUEUE\n\n"
        "Cancels every job of QUEUE that is waiting (queued or scheduled);\n"
        "running jobs are left alone. Prints how many were purged.\n",
        "purged", "purged:");
}

int
limit_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover limit [--broker EP] QUEUE [--rate R] [--max-running N]\n"
        "\n"
        "Sets fleet-wide limits of QUEUE, enforced by the broker across all\n"
        "workers: at most R jobs started per second (fractions allowed), at\n"
        "most N jobs running at once. 0 removes a limit. Kept across broker\n"
        "restarts; `drover status` shows them.\n";
    const char *broker = NULL;
    double rate = -1, maxrun = -1;
    static const struct option opts[] = {
        { "broker", required_argument, 0, 'b' },
        { "rate", required_argument, 0, 'r' },
        { "max-running", required_argument, 0, 'm' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    optind = 1;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            broker = optarg;
            break;
        case 'r':
        case 'm': {
            double v = strtod(optarg, &end);
            if (end == optarg || *end || v < 0) {
                fprintf(stderr, "drover limit: --%s: not a number >= 0: '%s'\n",
                        c == 'r' ? "rate" : "max-running", optarg);
                return 2;
            }
            if (c == 'r')
                rate = v;
            else
                maxrun = v;
            break;
        }
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || (rate < 0 && maxrun < 0)) {
        fputs(usage, stderr);
        return 2;
    }
    const char *queue = argv[optind];
    int code = 0;
    if (rate >= 0) {
        drover_ctrl_t req = {
            .verb = "rate", .queue = queue, .has_value = 1, .value = rate
        };
        char msg[256];
        snprintf(msg, sizeof msg, "%s rate %g/s%s", queue, rate,
                 rate == 0 ? " (no limit)" : "");
        code = s_queue_verb(broker, "limit", &req, NULL, msg);
    }
    if (code == 0 && maxrun >= 0) {
        drover_ctrl_t req = { .verb = "max-running",
                              .queue = queue,
                              .has_value = 1,
                              .value = maxrun };
        char msg[256];
        snprintf(msg, sizeof msg, "%s max running %g%s", queue, maxrun,
                 maxrun == 0 ? " (no limit)" : "");
        code = s_queue_verb(broker, "limit", &req, NULL, msg);
    }
    return code;
}

int
drain_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover drain [--broker EP] WORKER\n"
        "\n"
        "Tells a worker (by the name `drover status` lists) to drain: it "
        "takes\n"
        "no more jobs, finishes the ones it runs, hands back the ones it has\n"
        "not started (requeued without losing an attempt), then exits.\n";
    const char *broker = NULL;
    int json = 0;
    int r = s_parse(argc, argv, usage, 1, &broker, &json);
    if (r >= 0)
        return r;
    drover_ctrl_t req = { .verb = "drain", .worker = argv[optind] };
    char msg[300];
    snprintf(msg, sizeof msg, "%s draining", argv[optind]);
    return s_queue_verb(broker, "drain", &req, NULL, msg);
}

/* ---- check --------------------------------------------------------------- */

int
check_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover check [--broker EP] [--json]\n"
        "\n"
        "Asks the broker whether its store says what its memory says: it\n"
        "first makes every write durable, then compares each live job\n"
        "(waiting or running, attempts, worker) with its stored row, and\n"
        "looks for unfinished rows of jobs memory does not have or has seen\n"
        "end. Prints each difference on a line (the first 100). The broker\n"
        "stops serving while it compares; the time grows with the number\n"
        "of live jobs. Waits up to 30 s for the answer.\n"
        "Exit 0 consistent; 1 differences found; 2 the broker cannot be\n"
        "reached or cannot check (its store cannot be written, say).\n";
    const char *broker = NULL;
    int json = 0;
    int r = s_parse(argc, argv, usage, 0, &broker, &json);
    if (r >= 0)
        return r;
    drover_client_t *c = s_connect(broker, 30000, "check");
    if (!c)
        return 2;
    char *body = NULL;
    int rc = drover_ctrl(c, "check", NULL, NULL, &body);
    if (rc != DROVER_OK) {
        fprintf(stderr, "drover check: %s\n", drover_last_error(c));
        drover_close(&c);
        return 2;
    }
    drover_close(&c);
    json_t *res = body ? json_loads(body, 0, NULL) : NULL;
    if (!res || !json_is_boolean(json_object_get(res, "ok"))) {
        fprintf(stderr, "drover check: unreadable answer\n");
        free(body);
        json_decref(res);
        return 2;
    }
    bool ok = json_is_true(json_object_get(res, "ok"));
    long long ndiff =
        (long long)json_integer_value(json_object_get(res, "differences"));
    if (json) {
        printf("%s\n", body);
    } else {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(res, "items"), i, d)
        {
            printf("%s memory: %s; store: %s\n",
                   json_string_value(json_object_get(d, "id")),
                   json_string_value(json_object_get(d, "memory")),
                   json_string_value(json_object_get(d, "store")));
        }
        size_t shown = json_array_size(json_object_get(res, "items"));
        if ((long long)shown < ndiff)
            printf("... and %lld more\n", ndiff - (long long)shown);
        printf("%lld live jobs, %lld unfinished in the store: %s",
               (long long)json_integer_value(json_object_get(res, "jobs")),
               (long long)json_integer_value(json_object_get(res, "stored")),
               ok ? "consistent\n" : "");
        if (!ok)
            printf("%lld difference%s\n", ndiff, ndiff == 1 ? "" : "s");
    }
    free(body);
    json_decref(res);
    return ok ? 0 : 1;
}
