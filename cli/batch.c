/* `drover batch open|add|close|show|jobs|forget NAME`: batch records and
 * their callbacks, through the broker's batch.* ctrl verbs
 * (docs/batches.md); and the one-shot form `drover submit --batch NAME
 * --on-complete TYPE` (cli/submit.c calls batch_open / batch_close). */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "cli.h"
#include "cli_cmd.h"
#include "drover.h"

#define S_TIMEOUT_MS 5000

static struct {
    const char *on_complete, *on_success, *on_failure, *queue, *payload;
    const char *file, *after;
    int limit;
    bool all;
} s_o;

static const dv_flag_t s_flags[] = {
    DV_FLAG_STR("on-complete", &s_o.on_complete, .arg = "TYPE",
                .help = "open: the job type submitted once every job ended"),
    DV_FLAG_STR("on-success", &s_o.on_success, .arg = "TYPE",
                .help = "open: the job type submitted if every job "
                        "succeeded"),
    DV_FLAG_STR("on-failure", &s_o.on_failure, .arg = "TYPE",
                .help = "open: the job type submitted if any job ended dead "
                        "or cancelled"),
    DV_FLAG_STR("queue", &s_o.queue, .arg = "QUEUE", .dflt = "default",
                .help = "open: the callbacks' queue"),
    DV_FLAG_STR("payload", &s_o.payload, .arg = "JSON",
                .help = "open: a JSON object merged into the callbacks' "
                        "payload"),
    DV_FLAG_STR("file", &s_o.file, .arg = "FILE", .complete = DV_COMPLETE_FILE,
                .help = "add: the jobs, JSON Lines as for drover submit "
                        "--file ('-': stdin)"),
    DV_FLAG_STR("after", &s_o.after, .arg = "JOB_ID",
                .help = "jobs: the page after this job id"),
    DV_FLAG_INTEGER("limit", &s_o.limit, 1, 1000, .arg = "N", .dflt = "100",
                    .help = "jobs: at most N jobs per page"),
    DV_FLAG_ON("all", &s_o.all, .help = "jobs: every page, not just one"),
    DV_FLAG_TABLE_END,
};

/* Sends verb with args (consumed) on d; 0 with *body (an object), or the
 * exit code after saying why. */
static int
s_ask(const cli_t *c, drover_client_t *d, const char *verb, json_t *args,
      json_t **body)
{
    *body = NULL;
    char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    if (!text)
        return cli_fail(c, CLI_FAILED, "no_memory", "out of memory");
    drover_ctrl_t req = { .verb = verb, .args_json = text };
    char *out = NULL;
    int rc = drover_ctrl_ex(d, &req, &out);
    free(text);
    if (rc != DROVER_OK) {
        const char *code = drover_last_code(d);
        cli_exit_t e = cli_exit_of(rc, code);
        const char *msg = drover_last_error(d);
        return cli_fail(c, e, e == CLI_UNREACHABLE ? NULL : code, "%s",
                        msg && *msg ? msg : drover_strerror(rc));
    }
    json_error_t err;
    *body = out ? json_loads(out, 0, &err) : json_object();
    free(out);
    if (!json_is_object(*body)) {
        json_decref(*body);
        *body = NULL;
        return cli_fail(c, CLI_FAILED, "unreadable",
                        "unreadable answer from the broker");
    }
    return 0;
}

static json_int_t
s_int(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static const char *
s_str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* A record (or a label's counts) for people. */
static void
s_print_batch(const json_t *b)
{
    const json_t *n = json_object_get(b, "counts");
    bool record = json_is_true(json_object_get(b, "record"));
    printf("batch %s: %s%s\n", s_str(b, "name"), s_str(b, "state"),
           record ? "" : " (a label: no record, no callbacks)");
    printf("  jobs       %lld total: %lld succeeded, %lld dead, %lld "
           "cancelled; %lld live, %lld pending\n",
           (long long)s_int(n, "total"), (long long)s_int(n, "succeeded"),
           (long long)s_int(n, "dead"), (long long)s_int(n, "cancelled"),
           (long long)s_int(n, "live"), (long long)s_int(n, "pending"));
    printf("  complete   %s\n",
           json_is_true(json_object_get(b, "complete")) ? "yes" : "no");
    size_t i;
    const json_t *cb;
    json_array_foreach(json_object_get(b, "callbacks"), i, cb)
    {
        printf("  %-10s %s%s%s%s%s\n", i == 0 ? "callbacks" : "",
               s_str(cb, "on"), " ", s_str(cb, "type"),
               json_object_get(cb, "id") ? "  " : "", s_str(cb, "id"));
        if (json_object_get(cb, "state"))
            printf("  %-10s   state %s\n", "", s_str(cb, "state"));
    }
}

static json_t *
s_name_args(const char *name)
{
    return json_pack("{s:s}", "name", name);
}

static int
s_open_args(const cli_t *c, const char *name, const char *const types[3],
            const char *queue, const char *payload, json_t **out)
{
    static const char *const keys[3] = { "on_complete", "on_success",
                                         "on_failure" };
    json_t *a = s_name_args(name);
    for (int i = 0; a && i < 3; i++)
        if (types[i] && types[i][0])
            json_object_set_new(a, keys[i], json_string(types[i]));
    if (a && queue && queue[0])
        json_object_set_new(a, "queue", json_string(queue));
    if (a && payload) {
        json_error_t err;
        json_t *p = json_loads(payload, JSON_DECODE_ANY, &err);
        if (!json_is_object(p)) {
            json_decref(p);
            json_decref(a);
            return cli_usage(c, &s_flags[4], "--payload must be a JSON object");
        }
        json_object_set_new(a, "payload", p);
    }
    if (!a)
        return cli_fail(c, CLI_FAILED, "no_memory", "out of memory");
    *out = a;
    return 0;
}

int
batch_open(const cli_t *c, drover_client_t *d, const char *name,
           const char *const types[3], const char *queue)
{
    json_t *args = NULL, *body = NULL;
    int code = s_open_args(c, name, types, queue, NULL, &args);
    if (!code)
        code = s_ask(c, d, "batch.open", args, &body);
    json_decref(body);
    return code;
}

int
batch_close(const cli_t *c, drover_client_t *d, const char *name)
{
    json_t *body = NULL;
    int code = s_ask(c, d, "batch.close", s_name_args(name), &body);
    json_decref(body);
    return code;
}

/* Prints a page's jobs for people. */
static void
s_print_jobs(const json_t *jobs, bool wide)
{
    size_t i;
    const json_t *j;
    json_array_foreach(jobs, i, j)
    {
        const json_t *r = json_object_get(j, "result");
        char *text = r ? json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        const char *show = text                          ? text
                           : json_object_get(j, "error") ? s_str(j, "error")
                                                         : "";
        int cut = wide ? 1 << 20 : 60;
        printf("%-36s  %-16s  %-9s  %3lld  %.*s\n", s_str(j, "id"),
               s_str(j, "type"), s_str(j, "state"),
               (long long)s_int(j, "attempt"), cut, show);
        free(text);
    }
}

static int
s_jobs(const cli_t *c, drover_client_t *d, const char *name)
{
    json_t *all = c->json && s_o.all ? json_array() : NULL;
    char after[64] = "";
    if (s_o.after)
        snprintf(after, sizeof after, "%s", s_o.after);
    if (s_o.after && cli_job_id(c, s_o.after))
        return CLI_USAGE;
    bool header = !c->json;
    for (;;) {
        json_t *args = json_pack("{s:s, s:i}", "name", name, "limit",
                                 s_o.all ? 1000 : s_o.limit);
        if (args && after[0])
            json_object_set_new(args, "after", json_string(after));
        json_t *body;
        int code = s_ask(c, d, "batch.jobs", args, &body);
        if (code) {
            json_decref(all);
            return code;
        }
        if (header) {
            header = false;
            printf("%-36s  %-16s  %-9s  %3s  %s\n", "ID", "TYPE", "STATE",
                   "ATT", "RESULT / ERROR");
        }
        json_t *jobs = json_object_get(body, "jobs");
        bool more = json_is_true(json_object_get(body, "more"));
        if (!s_o.all) {
            if (c->json)
                cli_print_json(body);
            else
                s_print_jobs(jobs, c->wide);
            json_decref(body);
            return 0;
        }
        if (c->json)
            json_array_extend(all, jobs);
        else
            s_print_jobs(jobs, c->wide);
        size_t n = json_array_size(jobs);
        if (n)
            snprintf(after, sizeof after, "%s",
                     s_str(json_array_get(jobs, n - 1), "id"));
        json_decref(body);
        if (!more || !n)
            break;
    }
    if (c->json) {
        json_t *doc = json_pack("{s:o, s:b}", "jobs", all, "more", 0);
        cli_print_json(doc);
        json_decref(doc);
    }
    return 0;
}

/* `batch add NAME --file F`: drover submit --batch NAME --file F. */
static int
s_add(const cli_t *c, const char *name)
{
    if (!s_o.file)
        return cli_usage(c, &s_flags[5], "batch add needs --file FILE");
    char *argv[12];
    int argc = 0;
    argv[argc++] = "drover";
    argv[argc++] = "submit";
    argv[argc++] = "--batch";
    argv[argc++] = (char *)name;
    argv[argc++] = "--file";
    argv[argc++] = (char *)s_o.file;
    if (c->broker) {
        argv[argc++] = "--broker";
        argv[argc++] = (char *)c->broker;
    }
    if (c->json)
        argv[argc++] = "--json";
    argv[argc] = NULL;
    return cli_main(argc, argv);
}

static int
s_batch(cli_t *c, int argc, char **argv)
{
    static const char *const subs[] = { "open", "add",  "close",
                                        "show", "jobs", "forget" };
    const char *sub = argv[0];
    bool known = false;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        known = known || !strcmp(sub, subs[i]);
    if (!known)
        return cli_usage(c, NULL,
                         "unknown subcommand '%s' (open, add, close, show, "
                         "jobs, forget)",
                         sub);
    if (argc != 2 || !argv[1][0])
        return cli_usage(c, NULL, "batch %s needs a NAME", sub);
    const char *name = argv[1];
    if (strlen(name) > 200)
        return cli_usage(c, NULL, "a batch name is at most 200 bytes");
    if (!strcmp(sub, "add"))
        return s_add(c, name);
    drover_client_t *d = drover_connect(c->broker, S_TIMEOUT_MS);
    if (!d)
        return cli_fail(c, CLI_USAGE, NULL, "%s", drover_last_error(NULL));
    int code = 0;
    json_t *body = NULL;
    if (!strcmp(sub, "jobs")) {
        code = s_jobs(c, d, name);
    } else if (!strcmp(sub, "open")) {
        const char *types[3] = { s_o.on_complete, s_o.on_success,
                                 s_o.on_failure };
        json_t *args = NULL;
        code = s_open_args(c, name, types, s_o.queue, s_o.payload, &args);
        if (!code)
            code = s_ask(c, d, "batch.open", args, &body);
    } else {
        const char *verb = !strcmp(sub, "close")    ? "batch.close"
                           : !strcmp(sub, "forget") ? "batch.forget"
                                                    : "batch.show";
        code = s_ask(c, d, verb, s_name_args(name), &body);
    }
    if (!code && body) {
        if (!strcmp(sub, "forget")) {
            json_t *doc = json_pack("{s:s, s:b}", "name", name, "forgotten", 1);
            if (c->json)
                cli_print_json(doc);
            else
                printf("batch %s forgotten\n", name);
            json_decref(doc);
        } else if (c->json) {
            cli_print_json(body);
        } else {
            s_print_batch(body);
        }
    }
    json_decref(body);
    drover_close(&d);
    return code;
}

const cli_cmd_t cli_batch = {
    .name = "batch",
    .summary = "batches with callbacks: open, add, close, show, list jobs",
    .args = "open|add|close|show|jobs|forget NAME",
    .min_args = 1,
    .max_args = 2,
    .about =
        "A batch record groups jobs under a NAME and submits callback jobs "
        "once they all ended (docs/batches.md).\n\n"
        "'batch open NAME' makes the record, with the callbacks: "
        "--on-complete TYPE (always), --on-success TYPE (every job "
        "succeeded), --on-failure TYPE (some ended dead or cancelled), in "
        "--queue QUEUE, their payload {batch, total, succeeded, dead, "
        "cancelled} plus the fields of --payload. Opening an open batch "
        "again with the same callbacks is fine; with others, or a closed "
        "one, it is refused.\n\n"
        "'batch add NAME --file FILE' submits jobs to it (drover submit "
        "--batch NAME --file FILE). 'batch close NAME' says no more jobs "
        "come: once every job ended the callbacks are submitted, once. Jobs "
        "submitted to a closed batch are refused (not_allowed).\n\n"
        "'batch show NAME' prints its state (open, closed, called, done), "
        "its jobs' counts and its callbacks with their job ids and states; "
        "a NAME without a record (a plain --batch label) shows its counts "
        "from the store. 'batch jobs NAME' lists its jobs with their "
        "results, a page of --limit at a time after --after JOB_ID (--all: "
        "every page). 'batch forget NAME' removes a done record, so that "
        "the name can be opened again.\n\n"
        "--json prints the broker's answer: the batch (docs/json/"
        "batch.schema.json), or for jobs {\"jobs\": [...], \"more\", "
        "\"next\"} (batch_jobs.schema.json). Exit 4 when there is no such "
        "batch, 1 when the broker refuses.",
    .examples =
        "  drover batch open nightly --on-complete report.build\n"
        "  drover batch add nightly --file jobs.jsonl\n"
        "  drover batch close nightly\n"
        "  drover batch show nightly\n"
        "  drover batch jobs nightly --all --json | jq '.jobs[].result'\n"
        "  drover submit --batch b7 --on-complete notify --file "
        "jobs.jsonl\n",
    .flags = s_flags,
    .shared = CLI_BROKER | CLI_JSON | CLI_WIDE,
    .run = s_batch,
};
