/* Control verbs that go through the broker: `drover cancel`, `retry`,
 * `pause`, `resume`, `purge`, `limit`, `drain` and `check` (entries of the
 * command table). */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "cli_cmd.h"
#include "cli_out.h"
#include "drover.h"
#include "dv_clock.h"
#include "dv_id.h"
#include "dv_proto.h"
#include "dv_util.h"
#include "monitor.h"

static drover_client_t *
s_open(const cli_t *c, int timeout_ms, int *code)
{
    drover_client_t *d = drover_connect(c->broker, timeout_ms);
    if (!d)
        *code = cli_fail(c, CLI_USAGE, NULL, "%s", drover_last_error(NULL));
    return d;
}

/* The exit code of a request that failed with rc, and the name scripts
 * see (*what; NULL: the exit code's). */
static cli_exit_t
s_exit(drover_client_t *d, int rc, const char **what)
{
    const char *code = drover_last_code(d);
    *what = code;
    if (rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT)
        *what = NULL;
    return cli_exit_of(rc, code);
}

/* Says why the request failed (prefix, if not NULL, before the reason)
 * and returns its exit code. */
static int
s_failed(const cli_t *c, drover_client_t *d, int rc, const char *prefix)
{
    const char *what;
    cli_exit_t code = s_exit(d, rc, &what);
    const char *msg = drover_last_error(d);
    if (!msg || !*msg)
        msg = drover_strerror(rc);
    if (prefix)
        return cli_fail(c, code, what, "%s: %s", prefix, msg);
    return cli_fail(c, code, what, "%s", msg);
}

/* Sends req; on success *body is the answer parsed (an empty object when
 * it has none) and 0 is returned; else the exit code after saying why. */
static int
s_ask(const cli_t *c, drover_client_t *d, const drover_ctrl_t *req,
      json_t **body, const char *prefix)
{
    char *text = NULL;
    *body = NULL;
    int rc = drover_ctrl_ex(d, req, &text);
    if (rc != DROVER_OK)
        return s_failed(c, d, rc, prefix);
    json_error_t err;
    *body = text ? json_loads(text, 0, &err) : json_object();
    free(text);
    if (!json_is_object(*body)) {
        json_decref(*body);
        *body = NULL;
        return cli_fail(c, CLI_FAILED, "unreadable",
                        "unreadable answer from the broker");
    }
    return 0;
}

/* ---- cancel --------------------------------------------------------------- */

/* What cancel did to one job. */
static json_t *
s_cancelled(const char *id, const char *state, bool done, const char *reason)
{
    json_t *j = json_pack("{s:s, s:s, s:b}", "id", id, "state", state,
                          "cancelled", done);
    if (j && reason)
        json_object_set_new(j, "reason", json_string(reason));
    return j;
}

static int
s_cancel(cli_t *c, int argc, char **argv)
{
    int code = 0;
    drover_client_t *d = s_open(c, 5000, &code);
    if (!d)
        return code;
    json_t *all = json_array();
    bool one = argc == 1;
    for (int i = 0; i < argc && all; i++) {
        const char *id = argv[i];
        dv_id_t parsed;
        if (dv_id_parse(id, (unsigned)strlen(id), &parsed) != 0) {
            if (one || !c->json)
                cli_job_id(c, id);
            json_array_append_new(
                all, s_cancelled(id, "unknown", false, "not a job id"));
            code = code ? code : CLI_USAGE;
            continue;
        }
        int rc = drover_cancel(d, id);
        if (rc == DROVER_OK) {
            if (!c->json)
                printf("%s cancelled\n", id);
            json_array_append_new(all,
                                  s_cancelled(id, "cancelled", true, NULL));
            continue;
        }
        const char *what;
        cli_exit_t e = s_exit(d, rc, &what);
        if (e == CLI_UNREACHABLE || e == CLI_DENIED || e == CLI_USAGE) {
            /* Nothing more can be cancelled: the whole command failed. */
            code = s_failed(c, d, rc, NULL);
            json_decref(all);
            all = NULL;
            break;
        }
        /* Not found, or not in a state to cancel ("job already S"). */
        const char *msg = drover_last_error(d);
        char state[32] = "unknown";
        if (!strncmp(msg, "job already ", 12))
            snprintf(state, sizeof state, "%s", msg + 12);
        if (!c->json || (one && e == CLI_NOT_FOUND))
            cli_fail(c, e, what, "%s: %s", id, msg);
        json_array_append_new(all, s_cancelled(id, state, false, msg));
        code = code ? code : (int)e;
    }
    drover_close(&d);
    if (all && c->json && !(one && code == CLI_NOT_FOUND))
        cli_print_json(one ? json_array_get(all, 0) : all);
    json_decref(all);
    return code;
}

const cli_cmd_t cli_cancel = {
    .name = "cancel",
    .summary = "cancel jobs",
    .args = "JOB_ID...",
    .min_args = 1,
    .max_args = -1,
    .about =
        "Cancels jobs: a queued or scheduled one never runs; a running one "
        "is stopped on its worker. A job that has already ended is left as "
        "it is.\n\n"
        "--json prints, for one JOB_ID, {\"id\", \"state\", \"cancelled\"} "
        "(state: cancelled, or the state that kept it from being cancelled, "
        "with \"reason\"); for several, an array of those.\n\n"
        "Exit 0 when every job was cancelled; else as the first that was "
        "not: 1 it could not be (already ended), 4 it is not a job the "
        "broker knows.",
    .examples = "  drover cancel 01a20470-abfa-73fc-8402-859771cc63e2\n"
                "  drover jobs --state queued --json | jq -r '.jobs[].id' | "
                "xargs drover cancel\n",
    .shared = CLI_BROKER | CLI_JSON,
    .run = s_cancel,
};

/* ---- retry ---------------------------------------------------------------- */

static struct {
    bool dead;
    const char *queue;
} s_retry_o;

static const dv_flag_t s_retry_flags[] = {
    DV_FLAG_ON("dead", &s_retry_o.dead,
               .help = "retry every dead job of --queue instead of one job"),
    DV_FLAG_STR("queue", &s_retry_o.queue, .arg = "QUEUE",
                .help = "the queue whose dead jobs --dead retries"),
    DV_FLAG_TABLE_END,
};

static int
s_retry(cli_t *c, int argc, char **argv)
{
    const char *queue = s_retry_o.queue;
    if (s_retry_o.dead && (argc || !queue || !*queue))
        return cli_usage(c, &s_retry_flags[1],
                         argc ? "--dead retries a queue's jobs: give "
                                "--queue QUEUE, not a JOB_ID"
                              : "--dead needs --queue QUEUE");
    if (!s_retry_o.dead && queue)
        return cli_usage(c, &s_retry_flags[0],
                         "--queue goes with --dead (every dead job of it)");
    if (!s_retry_o.dead && argc != 1)
        return cli_usage(c, NULL, "needs a JOB_ID, or --dead --queue QUEUE");
    if (argc && cli_job_id(c, argv[0]))
        return CLI_USAGE;
    int code = 0;
    drover_client_t *d = s_open(c, 5000, &code);
    if (!d)
        return code;
    drover_ctrl_t req = { .verb = "retry" };
    if (argc) {
        req.id = argv[0];
    } else {
        req.queue = queue;
        req.dead = 1;
    }
    json_t *body;
    code = s_ask(c, d, &req, &body, argc ? argv[0] : NULL);
    drover_close(&d);
    if (code)
        return code;
    json_int_t n = json_integer_value(json_object_get(body, "retried"));
    json_decref(body);
    if (c->json) {
        json_t *j = argc
                        ? json_pack("{s:s, s:I}", "id", argv[0], "retried",
                                    (json_int_t)1)
                        : json_pack("{s:s, s:I}", "queue", queue, "retried", n);
        cli_print_json(j);
        json_decref(j);
    } else if (argc) {
        printf("%s retried: back in its queue with all its attempts\n",
               argv[0]);
    } else {
        printf("retried %s dead job%s of queue '%s'\n", cli_num(n),
               n == 1 ? "" : "s", queue);
    }
    return 0;
}

const cli_cmd_t cli_retry = {
    .name = "retry",
    .summary = "retry a dead job, or every dead job of a queue",
    .args = "[JOB_ID]",
    .max_args = 1,
    .about = "Puts a dead or cancelled job back in its queue with all its "
             "attempts again; with --dead --queue QUEUE, every dead job of "
             "QUEUE (up to 100,000).\n\n"
             "--json prints {\"id\", \"retried\": 1} for a job, {\"queue\", "
             "\"retried\": N} for a queue.\n\n"
             "Exit 1 when the broker refuses (the job has not ended dead or "
             "cancelled); 4 when it knows no such job.",
    .examples = "  drover retry 01a20470-abfa-73fc-8402-859771cc63e2\n"
                "  drover retry --dead --queue images\n",
    .flags = s_retry_flags,
    .shared = CLI_BROKER | CLI_JSON,
    .run = s_retry,
};

/* ---- queue settings: pause, resume, limit ---------------------------------- */

/* {"queue", "paused", "rate_limit", "max_running"} from an answer (the
 * broker's to a change, or its status entry of the queue, named "name"):
 * the names `status` and `queues` use. */
static json_t *
s_settings(const json_t *q)
{
    const char *name = json_string_value(json_object_get(q, "queue"));
    if (!name)
        name = json_string_value(json_object_get(q, "name"));
    return json_pack(
        "{s:s, s:b, s:f, s:I}", "queue", name ? name : "", "paused",
        json_is_true(json_object_get(q, "paused")), "rate_limit",
        json_number_value(json_object_get(q, "rate")), "max_running",
        (json_int_t)json_number_value(json_object_get(q, "max_running")));
}

/* The queue's entry in the broker's status ({name, rate, max_running,
 * queued, scheduled, running, paused}), or NULL with *code set after
 * saying why (4: the broker does not know the queue; hint after the
 * reason, if not NULL). */
static json_t *
s_queue_status(const cli_t *c, drover_client_t *d, const char *queue,
               const char *hint, int *code)
{
    drover_ctrl_t req = { .verb = "status" };
    json_t *st;
    *code = s_ask(c, d, &req, &st, NULL);
    if (*code)
        return NULL;
    json_t *found = NULL, *q;
    size_t i;
    json_array_foreach(json_object_get(st, "queues"), i, q)
    {
        const char *name = json_string_value(json_object_get(q, "name"));
        if (name && !strcmp(name, queue)) {
            found = json_incref(q);
            break;
        }
    }
    json_decref(st);
    if (!found)
        *code = cli_fail(c, CLI_NOT_FOUND, "not_found",
                         "no queue '%s': it has never had a job%s", queue,
                         hint ? hint : "");
    return found;
}

/* "images: paused; at most 5 started/s; at most 20 running" */
static void
s_print_settings(const json_t *s)
{
    double rate = json_number_value(json_object_get(s, "rate_limit"));
    json_int_t maxrun = json_integer_value(json_object_get(s, "max_running"));
    printf("%s: %s; ", json_string_value(json_object_get(s, "queue")),
           json_is_true(json_object_get(s, "paused")) ? "paused" : "running");
    if (rate > 0)
        printf("at most %s started/s; ", cli_rate(rate));
    else
        printf("no rate limit; ");
    if (maxrun > 0)
        printf("at most %s running at once\n", cli_num(maxrun));
    else
        printf("no running limit\n");
}

static const char s_create_hint[] = "; --create makes it";

/* Sends one queue verb (value < 0: none) with {"create": true} when
 * create; *settings gets the queue's settings after it. Returns 0 or the
 * exit code after saying why. */
static int
s_queue_change(const cli_t *c, drover_client_t *d, const char *verb,
               const char *queue, double value, bool create, json_t **settings)
{
    drover_ctrl_t req = { .verb = verb, .queue = queue };
    if (value >= 0) {
        req.has_value = 1;
        req.value = value;
    }
    if (create)
        req.args_json = "{\"create\": true}";
    char *text = NULL;
    *settings = NULL;
    int rc = drover_ctrl_ex(d, &req, &text);
    if (rc != DROVER_OK) {
        const char *what;
        if (s_exit(d, rc, &what) == CLI_NOT_FOUND)
            return cli_fail(c, CLI_NOT_FOUND, what, "%s%s",
                            drover_last_error(d), s_create_hint);
        return s_failed(c, d, rc, NULL);
    }
    json_t *body = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    int code = 0;
    if (json_is_string(json_object_get(body, "queue"))) {
        *settings = s_settings(body);
    } else { /* a broker that does not answer with them: ask */
        json_t *q = s_queue_status(c, d, queue, NULL, &code);
        *settings = q ? s_settings(q) : NULL;
        json_decref(q);
    }
    json_decref(body);
    if (!code && !*settings)
        code = cli_fail(c, CLI_FAILED, "no_memory", "out of memory");
    return code;
}

static struct {
    bool create;
} s_pause_o;

static const dv_flag_t s_pause_flags[] = {
    DV_FLAG_ON("create", &s_pause_o.create,
               .help = "make the queue if it has never had a job (to set it "
                       "up before its first job)"),
    DV_FLAG_TABLE_END,
};

static int
s_pause_resume(cli_t *c, const char *verb, const char *queue)
{
    int code = 0;
    drover_client_t *d = s_open(c, 5000, &code);
    if (!d)
        return code;
    json_t *s;
    code = s_queue_change(c, d, verb, queue, -1, s_pause_o.create, &s);
    drover_close(&d);
    if (code)
        return code;
    if (c->json)
        cli_print_json(s);
    else
        s_print_settings(s);
    json_decref(s);
    return 0;
}

static int
s_pause(cli_t *c, int argc, char **argv)
{
    (void)argc;
    return s_pause_resume(c, "pause", argv[0]);
}

static int
s_resume(cli_t *c, int argc, char **argv)
{
    (void)argc;
    return s_pause_resume(c, "resume", argv[0]);
}

#define S_QUEUE_JSON                                                           \
    "--json prints the queue's settings after it: {\"queue\", \"paused\", "    \
    "\"rate\", \"max_running\"} (0: no limit)."

#define S_NO_QUEUE                                                             \
    "A queue that has never had a job (nor a worker serving it) is not "       \
    "made by a typo: that is exit 4, unless --create says to make it."

const cli_cmd_t cli_pause = {
    .name = "pause",
    .summary = "stop starting jobs of a queue",
    .args = "QUEUE",
    .min_args = 1,
    .max_args = 1,
    .about = "Stops starting jobs of QUEUE, fleet-wide: running jobs finish, "
             "new ones are accepted and wait. Kept across broker restarts; "
             "'drover resume' undoes it.\n\n" S_NO_QUEUE "\n\n" S_QUEUE_JSON,
    .examples = "  drover pause images\n"
                "  drover pause --create reports   # before its first job\n",
    .flags = s_pause_flags,
    .shared = CLI_BROKER | CLI_JSON,
    .run = s_pause,
};

const cli_cmd_t cli_resume = {
    .name = "resume",
    .summary = "start jobs of a paused queue again",
    .args = "QUEUE",
    .min_args = 1,
    .max_args = 1,
    .about = "Starts jobs of a paused QUEUE again.\n\n" S_NO_QUEUE
             "\n\n" S_QUEUE_JSON,
    .examples = "  drover resume images\n",
    .flags = s_pause_flags,
    .shared = CLI_BROKER | CLI_JSON,
    .run = s_resume,
};

static struct {
    const char *rate, *max_running;
    bool create;
} s_limit_o;

static const dv_flag_t s_limit_flags[] = {
    DV_FLAG_STR("rate", &s_limit_o.rate, .arg = "PER_SECOND",
                .help = "start at most this many jobs of the queue per "
                        "second, fleet-wide (fractions allowed; 0: no "
                        "limit)"),
    DV_FLAG_STR("max-running", &s_limit_o.max_running, .arg = "N",
                .help = "run at most N jobs of the queue at once, "
                        "fleet-wide (0: no limit)"),
    DV_FLAG_ON("create", &s_limit_o.create,
               .help = "make the queue if it has never had a job (to limit "
                       "it before its first job)"),
    DV_FLAG_TABLE_END,
};

/* A limit's value: a number in [0, 1e9], whole when whole. -1 after
 * saying why (*code). */
static double
s_limit_value(const cli_t *c, const dv_flag_t *f, const char *text, bool whole,
              int *code)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !(v >= 0 && v <= 1e9) ||
        (whole && v != (double)(long long)v)) {
        *code = cli_usage(c, f, "--%s: '%s' is not %s from 0 to 1000000000",
                          f->name, text, whole ? "a whole number" : "a number");
        return -1;
    }
    return v;
}

static int
s_limit(cli_t *c, int argc, char **argv)
{
    (void)argc;
    const char *queue = argv[0];
    int code = 0;
    double rate = -1, maxrun = -1;
    if (s_limit_o.rate &&
        (rate = s_limit_value(c, &s_limit_flags[0], s_limit_o.rate, false,
                              &code)) < 0)
        return code;
    if (s_limit_o.max_running &&
        (maxrun = s_limit_value(c, &s_limit_flags[1], s_limit_o.max_running,
                                true, &code)) < 0)
        return code;
    drover_client_t *d = s_open(c, 5000, &code);
    if (!d)
        return code;
    json_t *s = NULL;
    if (rate < 0 && maxrun < 0) { /* show */
        json_t *q = s_queue_status(c, d, queue, NULL, &code);
        s = q ? s_settings(q) : NULL;
        json_decref(q);
    }
    if (rate >= 0)
        code = s_queue_change(c, d, "rate", queue, rate, s_limit_o.create, &s);
    if (!code && maxrun >= 0) {
        json_decref(s);
        code = s_queue_change(c, d, "max-running", queue, maxrun,
                              s_limit_o.create, &s);
    }
    drover_close(&d);
    if (!code && s) {
        if (c->json)
            cli_print_json(s);
        else
            s_print_settings(s);
    }
    json_decref(s);
    return code;
}

const cli_cmd_t cli_limit = {
    .name = "limit",
    .summary = "show or set a queue's fleet-wide rate and running limits",
    .args = "QUEUE",
    .min_args = 1,
    .max_args = 1,
    .about = "Without --rate or --max-running, shows QUEUE's limits (and "
             "whether it is paused). With them, sets them: enforced by the "
             "broker across all workers, kept across broker restarts; 0 "
             "removes a limit.\n\n" S_NO_QUEUE "\n\n" S_QUEUE_JSON,
    .examples = "  drover limit llm\n"
                "  drover limit llm --rate 5 --max-running 20\n"
                "  drover limit llm --rate 0   # no rate limit\n",
    .flags = s_limit_flags,
    .shared = CLI_BROKER | CLI_JSON,
    .run = s_limit,
};

/* ---- purge ---------------------------------------------------------------- */

/* Asks on the terminal; true for y or yes. */
static bool
s_confirm(const char *question)
{
    fprintf(stderr, "%s [y/N] ", question);
    fflush(stderr);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return false;
    line[strcspn(line, "\r\n")] = '\0';
    return !strcasecmp(line, "y") || !strcasecmp(line, "yes");
}

static int
s_purge(cli_t *c, int argc, char **argv)
{
    (void)argc;
    const char *queue = argv[0];
    if (!c->yes && !isatty(STDIN_FILENO))
        return cli_usage(c, NULL,
                         "purge cancels every waiting job of '%s' and asks "
                         "first, but stdin is not a terminal: pass --yes",
                         queue);
    int code = 0;
    drover_client_t *d = s_open(c, 5000, &code);
    if (!d)
        return code;
    if (!c->yes) {
        json_t *q = s_queue_status(c, d, queue, NULL, &code);
        if (!q) {
            drover_close(&d);
            return code;
        }
        json_int_t n = json_integer_value(json_object_get(q, "queued")) +
                       json_integer_value(json_object_get(q, "scheduled"));
        json_decref(q);
        char question[DV_NAME_MAX + 96];
        snprintf(question, sizeof question,
                 "purge %s waiting job%s of queue '%s'?", cli_num(n),
                 n == 1 ? "" : "s", queue);
        if (!s_confirm(question)) {
            drover_close(&d);
            return cli_fail(c, CLI_FAILED, NULL, "nothing purged");
        }
    }
    drover_ctrl_t req = { .verb = "purge", .queue = queue };
    json_t *body;
    code = s_ask(c, d, &req, &body, NULL);
    drover_close(&d);
    if (code)
        return code;
    json_int_t n = json_integer_value(json_object_get(body, "purged"));
    json_decref(body);
    if (c->json) {
        json_t *j = json_pack("{s:s, s:I}", "queue", queue, "purged", n);
        cli_print_json(j);
        json_decref(j);
    } else {
        printf("purged %s waiting job%s of queue '%s'\n", cli_num(n),
               n == 1 ? "" : "s", queue);
    }
    return 0;
}

const cli_cmd_t cli_purge = {
    .name = "purge",
    .summary = "cancel every waiting job of a queue",
    .args = "QUEUE",
    .min_args = 1,
    .max_args = 1,
    .about = "Cancels every job of QUEUE that is waiting (queued or "
             "scheduled); running jobs are left alone.\n\n"
             "On a terminal it says how many jobs that is and asks first; "
             "--yes does not ask. When stdin is not a terminal it does "
             "nothing without --yes (exit 2): a script says so.\n\n"
             "--json prints {\"queue\", \"purged\": N}. Exit 4 when the "
             "queue has never had a job.",
    .examples = "  drover purge images\n"
                "  drover purge --yes images   # in a script\n",
    .shared = CLI_BROKER | CLI_JSON | CLI_YES,
    .run = s_purge,
};

/* ---- drain ---------------------------------------------------------------- */

static int
s_drain(cli_t *c, int argc, char **argv)
{
    (void)argc;
    int code = 0;
    drover_client_t *d = s_open(c, 5000, &code);
    if (!d)
        return code;
    drover_ctrl_t req = { .verb = "drain", .worker = argv[0] };
    json_t *body;
    code = s_ask(c, d, &req, &body, argv[0]);
    drover_close(&d);
    json_decref(body);
    if (code)
        return code;
    if (c->json) {
        json_t *j = json_pack("{s:s, s:b}", "worker", argv[0], "draining", 1);
        cli_print_json(j);
        json_decref(j);
    } else {
        printf("%s draining: it takes no more jobs, finishes the ones it "
               "runs, hands back the rest and exits\n",
               argv[0]);
    }
    return 0;
}

const cli_cmd_t cli_drain = {
    .name = "drain",
    .summary = "tell a worker to finish its jobs and leave",
    .args = "WORKER",
    .min_args = 1,
    .max_args = 1,
    .about = "Tells a worker (by the name 'drover workers' lists) to drain: "
             "it takes no more jobs, finishes the ones it runs, hands back "
             "the ones it has not started (requeued without losing an "
             "attempt), then exits.\n\n"
             "--json prints {\"worker\", \"draining\": true}. Exit 4 when "
             "no such worker is connected.",
    .examples = "  drover drain host1-default\n",
    .shared = CLI_BROKER | CLI_JSON,
    .run = s_drain,
};

/* ---- check ---------------------------------------------------------------- */

static int
s_check(cli_t *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int code = 0;
    drover_client_t *d = s_open(c, 30000, &code);
    if (!d)
        return code;
    drover_ctrl_t req = { .verb = "check" };
    json_t *res;
    code = s_ask(c, d, &req, &res, NULL);
    drover_close(&d);
    if (code)
        return code;
    if (!json_is_boolean(json_object_get(res, "ok"))) {
        json_decref(res);
        return cli_fail(c, CLI_FAILED, "unreadable",
                        "unreadable answer from the broker");
    }
    bool ok = json_is_true(json_object_get(res, "ok"));
    json_int_t ndiff = json_integer_value(json_object_get(res, "differences"));
    if (c->json) {
        cli_print_json(res);
    } else {
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(res, "items"), i, it)
        {
            printf("%s memory: %s; store: %s\n",
                   json_string_value(json_object_get(it, "id")),
                   json_string_value(json_object_get(it, "memory")),
                   json_string_value(json_object_get(it, "store")));
        }
        json_int_t shown =
            (json_int_t)json_array_size(json_object_get(res, "items"));
        if (shown < ndiff)
            printf("... and %s more\n", cli_num(ndiff - shown));
        printf("%s live jobs, %s unfinished in the store: ",
               cli_num(json_integer_value(json_object_get(res, "jobs"))),
               cli_num(json_integer_value(json_object_get(res, "stored"))));
        if (ok)
            printf("consistent\n");
        else
            printf("%s difference%s\n", cli_num(ndiff), ndiff == 1 ? "" : "s");
    }
    json_decref(res);
    return ok ? CLI_OK : CLI_FAILED;
}

const cli_cmd_t cli_check = {
    .name = "check",
    .summary = "does the broker's store say what its memory says",
    .about = "Asks the broker whether its store says what its memory says: "
             "it first makes every write durable, then compares each live "
             "job (waiting or running, attempts, worker) with its stored "
             "row, and looks for unfinished rows of jobs memory does not "
             "have or has seen end. Prints each difference on a line (the "
             "first 100). The broker serves nothing while it compares; the "
             "time grows with the number of live jobs. Waits up to 30 s for "
             "the answer.\n\n"
             "--json prints the broker's report: {\"ok\", \"jobs\", "
             "\"stored\", \"differences\", \"items\": [{\"id\", \"memory\", "
             "\"store\"}]}.\n\n"
             "Exit 0 consistent; 1 differences found, or the broker cannot "
             "check (its store cannot be written, say).",
    .shared = CLI_BROKER | CLI_JSON,
    .run = s_check,
};
