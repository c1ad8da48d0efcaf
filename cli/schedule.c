/* `drover schedule ACTION [NAME]`: periodic jobs the broker keeps (add,
 * list, show, remove, pause, resume), through the ctrl verbs schedule.*
 * (docs/protocol.md). */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli_cmd.h"
#include "cli_out.h"
#include "drover.h"
#include "dv_util.h"

static struct {
    const char *cron, *tz, *every, *type, *queue, *payload, *priority;
    const char *max_attempts, *timeout, *catch_up;
    bool no_overlap;
} s_o;

static const dv_flag_t s_flags[] = {
    DV_FLAG_STR("cron", &s_o.cron, .arg = "EXPR",
                .help = "add: fire at the times of a cron expression: five "
                        "fields (minute hour day month weekday) or six with "
                        "seconds first; names, ranges, lists, steps, @daily"),
    DV_FLAG_STR("tz", &s_o.tz, .arg = "ZONE",
                .help = "add: the time zone the cron expression is read in "
                        "(Europe/Berlin; default UTC)"),
    DV_FLAG_STR("every", &s_o.every, .arg = "INTERVAL",
                .help = "add: fire every INTERVAL (30s, 5m, 2h, 1d, 1h30m) "
                        "from the time it is added, without drifting"),
    DV_FLAG_STR("type", &s_o.type, .arg = "TYPE",
                .help = "add: the job type of each firing (required)"),
    DV_FLAG_STR("queue", &s_o.queue, .arg = "QUEUE", .dflt = "default",
                .help = "add: the queue of each firing"),
    DV_FLAG_STR("payload", &s_o.payload, .arg = "JSON",
                .help = "add: the payload of each firing, any JSON value"),
    DV_FLAG_STR("priority", &s_o.priority, .arg = "N",
                .help = "add: 0..9, higher first (default 5)"),
    DV_FLAG_STR("max-attempts", &s_o.max_attempts, .arg = "N",
                .help = "add: attempts per firing's job (default: the "
                        "broker's)"),
    DV_FLAG_STR("timeout", &s_o.timeout, .arg = "SECONDS",
                .help = "add: per attempt (default: the worker's)"),
    DV_FLAG_ON("no-overlap", &s_o.no_overlap,
               .help = "add: skip a firing while the last firing's job is "
                       "still queued or running"),
    DV_FLAG_STR("catch-up", &s_o.catch_up, .arg = "once|skip",
                .help = "add: firings missed while the broker was down: "
                        "fire the last of them once (once, the default), or "
                        "none (skip)"),
    DV_FLAG_TABLE_END,
};

static const dv_flag_t *
s_flag(const char *name)
{
    const dv_flag_t *tables[] = { s_flags };
    return dv_flags_find(tables, 1, name, strlen(name));
}

/* Epoch ms as "2026-12-05T06:02:47Z", "-" for none. */
static const char *
s_time(json_t *v, char *buf, size_t size)
{
    if (!json_is_integer(v))
        return "-";
    time_t t = (time_t)(json_integer_value(v) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

static const char *
s_str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

/* Sends verb with args (stolen, may be NULL); *body is the answer. Returns
 * 0 or the exit code after saying why. */
static int
s_ask(const cli_t *c, const char *verb, json_t *args, json_t **body)
{
    *body = NULL;
    char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    drover_client_t *d = drover_connect(c->broker, 5000);
    if (!d) {
        free(text);
        return cli_fail(c, CLI_USAGE, NULL, "%s", drover_last_error(NULL));
    }
    drover_ctrl_t req = { .verb = verb, .args_json = text };
    char *out = NULL;
    int rc = drover_ctrl_ex(d, &req, &out);
    free(text);
    int code = 0;
    if (rc != DROVER_OK) {
        const char *what = drover_last_code(d);
        if (rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT)
            what = NULL;
        const char *msg = drover_last_error(d);
        code = cli_fail(c, cli_exit_of(rc, drover_last_code(d)), what, "%s",
                        msg && *msg ? msg : drover_strerror(rc));
    } else {
        *body = out ? json_loads(out, 0, NULL) : NULL;
        if (!json_is_object(*body)) {
            json_decref(*body);
            *body = NULL;
            code = cli_fail(c, CLI_FAILED, "unreadable",
                            "unreadable answer from the broker");
        }
    }
    free(out);
    drover_close(&d);
    return code;
}

static void
s_print_one(json_t *s)
{
    char t1[32], t2[32];
    printf("name:         %s\n", s_str(s, "name"));
    printf("spec:         %s", s_str(s, "spec"));
    if (json_is_string(json_object_get(s, "tz")))
        printf(" (%s)", s_str(s, "tz"));
    printf("\nqueue, type:  %s, %s\n", s_str(s, "queue"), s_str(s, "type"));
    printf("paused:       %s\n",
           json_is_true(json_object_get(s, "paused")) ? "yes" : "no");
    printf("next firing:  %s\n",
           s_time(json_object_get(s, "next_fire_at"), t1, sizeof t1));
    printf("last firing:  %s",
           s_time(json_object_get(s, "last_fire_at"), t2, sizeof t2));
    json_t *lag = json_object_get(s, "last_lag_ms");
    if (json_is_integer(lag))
        printf(" (lag %s)", cli_dur(json_integer_value(lag)));
    printf("\nlast job:     %s (%s)\n", s_str(s, "last_job"),
           s_str(s, "last_job_state"));
    printf("firings:      %lld, skipped %lld\n",
           (long long)json_integer_value(json_object_get(s, "firings")),
           (long long)json_integer_value(json_object_get(s, "skipped")));
    printf("options:      priority %lld, catch-up %s%s\n",
           (long long)json_integer_value(json_object_get(s, "priority")),
           s_str(s, "catch_up"),
           json_is_true(json_object_get(s, "no_overlap")) ? ", no-overlap"
                                                          : "");
}

static void
s_print_list(const cli_t *c, json_t *list)
{
    if (!json_array_size(list)) {
        printf("no schedules\n");
        return;
    }
    printf("%-20s %-16s %-8s %-12s %-6s %-20s %-20s %-10s %7s %7s %8s\n",
           "NAME", "SPEC", "QUEUE", "TYPE", "PAUSED", "NEXT", "LAST",
           "LAST_STATE", "FIRINGS", "SKIPPED", "LAG");
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s)
    {
        char t1[32], t2[32];
        json_t *lag = json_object_get(s, "last_lag_ms");
        cli_col(stdout, s_str(s, "name"), 20, c->wide, " ");
        cli_col(stdout, s_str(s, "spec"), 16, c->wide, " ");
        cli_col(stdout, s_str(s, "queue"), 8, c->wide, " ");
        cli_col(stdout, s_str(s, "type"), 12, c->wide, " ");
        printf("%-6s %-20s %-20s ",
               json_is_true(json_object_get(s, "paused")) ? "yes" : "no",
               s_time(json_object_get(s, "next_fire_at"), t1, sizeof t1),
               s_time(json_object_get(s, "last_fire_at"), t2, sizeof t2));
        cli_col(stdout, s_str(s, "last_job_state"), 10, c->wide, " ");
        printf("%7lld %7lld %8s\n",
               (long long)json_integer_value(json_object_get(s, "firings")),
               (long long)json_integer_value(json_object_get(s, "skipped")),
               json_is_integer(lag) ? cli_dur(json_integer_value(lag)) : "-");
    }
}

/* The add request from the flags; NULL after a usage error (*code). */
static json_t *
s_add_args(const cli_t *c, const char *name, int *code)
{
    if (!s_o.type) {
        *code = cli_usage(c, s_flag("type"), "add needs --type");
        return NULL;
    }
    if (!s_o.cron == !s_o.every) {
        *code = cli_usage(c, s_flag(s_o.cron ? "every" : "cron"),
                          "add needs one of --cron and --every");
        return NULL;
    }
    if (s_o.tz && !s_o.cron) {
        *code = cli_usage(c, s_flag("tz"), "--tz goes with --cron");
        return NULL;
    }
    json_t *a = json_pack("{s:s, s:s, s:s}", "name", name, "type", s_o.type,
                          "queue", s_o.queue ? s_o.queue : "default");
    if (!a) {
        *code = cli_fail(c, CLI_FAILED, "no_memory", "out of memory");
        return NULL;
    }
    if (s_o.cron)
        json_object_set_new(a, "cron", json_string(s_o.cron));
    if (s_o.tz)
        json_object_set_new(a, "tz", json_string(s_o.tz));
    if (s_o.every)
        json_object_set_new(a, "every", json_string(s_o.every));
    if (s_o.payload) {
        json_error_t err;
        json_t *p = json_loads(s_o.payload, JSON_DECODE_ANY, &err);
        if (!p) {
            json_decref(a);
            *code = cli_usage(c, s_flag("payload"), "--payload: not JSON: %s",
                              err.text);
            return NULL;
        }
        json_object_set_new(a, "payload", p);
    }
    static const struct {
        const char *flag, *key;
        long long lo, hi, scale;
    } nums[] = {
        { "priority", "priority", 0, 9, 1 },
        { "max-attempts", "max_attempts", 1, 1000, 1 },
        { "timeout", "timeout_ms", 1, 4000000, 1000 },
    };
    const char *vals[] = { s_o.priority, s_o.max_attempts, s_o.timeout };
    for (size_t i = 0; i < 3; i++) {
        if (!vals[i])
            continue;
        char *end;
        long long v = strtoll(vals[i], &end, 10);
        if (end == vals[i] || *end || v < nums[i].lo || v > nums[i].hi) {
            json_decref(a);
            *code = cli_usage(c, s_flag(nums[i].flag),
                              "--%s: '%s' is not a whole number from %lld to "
                              "%lld",
                              nums[i].flag, vals[i], nums[i].lo, nums[i].hi);
            return NULL;
        }
        json_object_set_new(a, nums[i].key, json_integer(v * nums[i].scale));
    }
    if (s_o.no_overlap)
        json_object_set_new(a, "no_overlap", json_true());
    if (s_o.catch_up) {
        if (strcmp(s_o.catch_up, "once") && strcmp(s_o.catch_up, "skip")) {
            json_decref(a);
            *code =
                cli_usage(c, s_flag("catch-up"),
                          "--catch-up: '%s' is not once or skip", s_o.catch_up);
            return NULL;
        }
        json_object_set_new(a, "catch_up", json_string(s_o.catch_up));
    }
    return a;
}

static int
s_schedule(cli_t *c, int argc, char **argv)
{
    static const char *const actions[] = { "add",    "list",  "show",
                                           "remove", "pause", "resume" };
    size_t act = 0;
    while (act < 6 && strcmp(argv[0], actions[act]))
        act++;
    if (act == 6)
        return cli_usage(c, NULL,
                         "'%s' is not an action: add, list, show, remove, "
                         "pause or resume",
                         argv[0]);
    if (act == 1 && argc > 1)
        return cli_usage(c, NULL, "list takes no NAME");
    if (act != 1 && argc < 2)
        return cli_usage(c, NULL, "%s needs a NAME", argv[0]);
    int code = 0;
    json_t *args = NULL;
    if (act == 0 && !(args = s_add_args(c, argv[1], &code)))
        return code;
    if (act >= 2)
        args = json_pack("{s:s}", "name", argv[1]);
    char verb[32];
    snprintf(verb, sizeof verb, "schedule.%s", argv[0]);
    json_t *body = NULL;
    if ((code = s_ask(c, verb, args, &body)) != 0)
        return code;
    if (c->json)
        cli_print_json(body);
    else if (act == 1)
        s_print_list(c, json_object_get(body, "schedules"));
    else if (act == 3)
        printf("schedule %s removed\n", argv[1]);
    else
        s_print_one(body);
    json_decref(body);
    return 0;
}

const cli_cmd_t cli_schedule = {
    .name = "schedule",
    .summary = "periodic jobs the broker submits: add, list, show, remove, "
               "pause, resume",
    .args = "ACTION [NAME]",
    .min_args = 1,
    .max_args = 2,
    .about =
        "Schedules are kept by the broker, in its store: it submits a job "
        "of --type to --queue at each firing, with the key "
        "drover:schedule:NAME:FIRE_MS, so a firing is never submitted twice "
        "(after a restart or a takeover it comes back a duplicate).\n\n"
        "  add NAME (--cron EXPR [--tz ZONE] | --every INTERVAL) --type TYPE "
        "[options]\n"
        "  list | show NAME | remove NAME | pause NAME | resume NAME\n\n"
        "--every fires at the time it was added plus a whole number of "
        "intervals; --cron at the times of the expression in --tz (its "
        "daylight saving rules as cron's: a time skipped when clocks go "
        "forward fires right after the gap, a time that happens twice fires "
        "once). A broker that was down at a firing time fires the last "
        "missed firing once when it is back (--catch-up once) or none of "
        "them (--catch-up skip). A resumed schedule does not fire what it "
        "missed while paused. Names are unique per broker.\n\n"
        "Adding, removing, pausing and resuming need the operator role; "
        "list and show any role that may read.\n\n"
        "--json prints the schedule (add, show, pause, resume: "
        "docs/json/schedule.schema.json), {\"schedules\": [...]} (list: "
        "schedule_list.schema.json), or {\"name\", \"removed\"} (remove: "
        "schedule_remove.schema.json).",
    .examples =
        "  drover schedule add tick --every 30s --type noop\n"
        "  drover schedule add nightly --cron '0 3 * * *' --tz Europe/Berlin "
        "--type report --payload '{\"full\": true}' --no-overlap\n"
        "  drover schedule list\n"
        "  drover schedule pause nightly\n",
    .flags = s_flags,
    .shared = CLI_BROKER | CLI_JSON | CLI_WIDE,
    .run = s_schedule,
};
