/* submit - `drover submit`: one job from flags and arguments, or many from
 * JSON Lines, optionally waiting for their results. Talks to the broker
 * through libdrover (drover.h), like any other producer. An entry of the
 * command table (cli_cmd.h). */
#include "submit.h"
#include "batch.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>

#include "cli_out.h"
#include "drover.h"
#include "dv_clock.h"
#include "dv_json.h"
#include "dv_log.h"
#include "dv_map.h"
#include "jobline.h"
#include "lineref.h"
#include "submit_input.h"

#define S_SLICE          65536 /* jobs per drover_submit_many call */
#define S_REPORT_MAX     SUBMIT_BAD_LISTED /* refused/bad lines said one by one */
#define S_CATEGORIES_MAX 16 /* failure categories tracked for the summary */
#define S_LINE_EVERY_US  5000000 /* progress lines when not a terminal */

/* ---- flags --------------------------------------------------------------- */

/* The flags as given; checked and turned into s_opts_t by s_check(). The
 * job's fields are text so that "not given" stays the broker's default. */
static struct {
    const char *queue, *type, *payload, *priority, *delay, *at;
    const char *max_attempts, *timeout, *key, *backoff_base;
    const char *backoff_factor, *backoff_cap, *trace, *result_ttl, *batch;
    const char *file, *connect_timeout, *out, *wait_timeout;
    const char *after, *after_any;
    bool no_jitter, wait, progress, no_progress, quiet, ids;
    int log_level, log_format;
    /* The one-shot batch: open with these callbacks, submit, close. */
    const char *on_complete, *on_success, *on_failure;
} s_f;

static const char *const s_levels[] = { "debug", "info", "warn",
                                        "error", "off",  NULL };
static const char *const s_formats[] = { "json", "text", NULL };

static const dv_flag_t s_flags[] = {
    DV_FLAG_STR("type", &s_f.type, .arg = "TYPE",
                .help = "the job type, i.e. the handler's name (as the TYPE "
                        "argument; with --file, for lines without \"type\")"),
    DV_FLAG_STR("queue", &s_f.queue, .arg = "QUEUE", .dflt = "default",
                .help = "the queue"),
    DV_FLAG_STR("payload", &s_f.payload, .arg = "JSON",
                .help = "the payload, any JSON value (as the PAYLOAD "
                        "argument; - reads it from stdin); not with --file"),
    DV_FLAG_STR("priority", &s_f.priority, .arg = "N",
                .help = "0..9, higher runs first (else the broker's, 5)"),
    DV_FLAG_STR("delay", &s_f.delay, .arg = "SECONDS",
                .help = "run no earlier than this long from now"),
    DV_FLAG_STR("at", &s_f.at, .arg = "TIME",
                .help = "run no earlier than TIME: ISO 8601 UTC "
                        "(2026-11-22T17:41:00Z) or @EPOCH_SECONDS"),
    DV_FLAG_STR("max-attempts", &s_f.max_attempts, .arg = "N",
                .help = "attempts before the job is dead, 1..1000 (else the "
                        "broker's, 5)"),
    DV_FLAG_STR("timeout", &s_f.timeout, .arg = "SECONDS",
                .help = "hard limit for each attempt"),
    DV_FLAG_STR("key", &s_f.key, .arg = "KEY",
                .help = "idempotency key: a second submit with the same key "
                        "returns the first job's id; not with --file"),
    DV_FLAG_STR("backoff-base", &s_f.backoff_base, .arg = "SECONDS",
                .help = "retry delay after the first failure (else the "
                        "broker's, 1)"),
    DV_FLAG_STR("backoff-factor", &s_f.backoff_factor, .arg = "F",
                .help = "growth of the retry delay per attempt, 1..1000 "
                        "(else the broker's, 2)"),
    DV_FLAG_STR("backoff-cap", &s_f.backoff_cap, .arg = "SECONDS",
                .help = "largest retry delay (else the broker's, 300)"),
    DV_FLAG_ON("no-jitter", &s_f.no_jitter,
               .help = "exact retry delays (else full jitter)"),
    DV_FLAG_STR("trace", &s_f.trace, .arg = "TRACEPARENT",
                .help = "W3C traceparent handed to the handler"),
    DV_FLAG_STR("result-ttl", &s_f.result_ttl, .arg = "SECONDS",
                .help = "how long the broker keeps the result"),
    DV_FLAG_STR("after", &s_f.after, .arg = "IDS",
                .help = "job ids (comma-separated, at most 100) that must "
                        "all succeed before it runs; it waits in state "
                        "waiting, and is cancelled if one ends dead or "
                        "cancelled; not with --file (a line's \"after\" "
                        "may name earlier lines by number)"),
    DV_FLAG_STR("after-any", &s_f.after_any, .arg = "IDS",
                .help = "job ids (comma-separated) that must all end, "
                        "however, before it runs; not with --file"),
    DV_FLAG_STR("batch", &s_f.batch, .arg = "NAME",
                .help = "the batch the jobs belong to (drover watch NAME "
                        "follows it)"),
    DV_FLAG_STR("on-complete", &s_f.on_complete, .arg = "TYPE",
                .help = "with --batch: open it with this callback (once "
                        "every job ended), submit, close it (drover batch)"),
    DV_FLAG_STR("on-success", &s_f.on_success, .arg = "TYPE",
                .help = "with --batch: a callback if every job succeeded"),
    DV_FLAG_STR("on-failure", &s_f.on_failure, .arg = "TYPE",
                .help = "with --batch: a callback if any job ended dead or "
                        "cancelled"),
    DV_FLAG_STR("file", &s_f.file, .arg = "FILE", .complete = DV_COMPLETE_FILE,
                .help = "submit the jobs of a JSON Lines file, one per line "
                        "(- reads stdin); every line is checked before any "
                        "is submitted"),
    DV_FLAG_STR("connect-timeout", &s_f.connect_timeout, .arg = "SECONDS",
                .dflt = "5",
                .help = "how long to wait for a broker's answer before "
                        "trying the next one"),
    DV_FLAG_ON("wait", &s_f.wait,
               .help = "wait for every accepted job to end and write one "
                       "JSON line per job as it ends"),
    DV_FLAG_STR("out", &s_f.out, .arg = "FILE", .complete = DV_COMPLETE_FILE,
                .help = "with --wait: write the results to FILE instead of "
                        "stdout"),
    DV_FLAG_STR("wait-timeout", &s_f.wait_timeout, .arg = "SECONDS",
                .help = "with --wait: stop waiting after this long (exit 6; "
                        "else never)"),
    DV_FLAG_ON("progress", &s_f.progress,
               .help = "with --wait: show progress on stderr, a bar on a "
                       "terminal, else a line every 5 s (default on a "
                       "terminal)"),
    DV_FLAG_ON("no-progress", &s_f.no_progress, .help = "never show progress"),
    DV_FLAG_ON("ids", &s_f.ids,
               .help = "with --json and --file: list every line's job id "
                       "in \"ids\""),
    DV_FLAG_ON("quiet", &s_f.quiet, .alias = 'q',
               .help = "no \"submitted\" line and no summary on stderr"),
    DV_FLAG_ONE_OF("log-level", &s_f.log_level, s_levels, .dflt = "warn",
                   .help = "the least severe log line written to stderr"),
    DV_FLAG_ONE_OF("log-format", &s_f.log_format, s_formats, .dflt = "json",
                   .help = "how log lines are written (messages for people "
                           "are always plain text)"),
    DV_FLAG_TABLE_END,
};

/* The entry of s_flags named name. */
static const dv_flag_t *
s_flag(const char *name)
{
    const dv_flag_t *tables[] = { s_flags };
    return dv_flags_find(tables, 1, name, strlen(name));
}

/* Everything the command line says, checked. */
typedef struct {
    const cli_t *c;
    const char *broker;     /* NULL = libdrover's default */
    int connect_timeout_ms; /* --connect-timeout */
    const char *file;       /* --file; NULL = one job from the flags */
    const char *payload;    /* PAYLOAD or --payload (JSON text, "-" stdin) */
    drover_job_t defaults;  /* the job flags describe */
    bool wait;              /* --wait */
    const char *out;        /* --out */
    int progress;           /* --progress 1, --no-progress 0, -1 auto */
    int wait_timeout_ms;    /* --wait-timeout; -1 = never */
    bool quiet;             /* --quiet, or --json */
    bool json;              /* --json */
    bool ids;               /* --ids */
} s_opts_t;

/* What submitting did. */
typedef struct {
    size_t accepted, duplicates, refused, unanswered;
    json_t *refusals; /* [{"line", "message"}], the first S_REPORT_MAX */
    int64_t done_us;  /* when submitting ended */
} s_sent_t;

/* A failure category seen while waiting. */
typedef struct {
    char name[32]; /* category, or the state if none */
    size_t count;
    char example[160]; /* one message, shortened */
} s_category_t;

/* State of --wait. */
typedef struct {
    const s_opts_t *opts;
    const submit_input_t *in;
    size_t *job_of;     /* waited index -> job index */
    size_t *next_same;  /* waited index -> next with the same id */
    FILE *out;          /* where results go; NULL: nowhere (--json) */
    bool bar;           /* draw the progress bar (a terminal) */
    bool lines;         /* print progress lines (not a terminal) */
    size_t total, done; /* jobs (lines) to wait for, ended */
    size_t succeeded, dead, cancelled, unknown;
    long long retries; /* attempts beyond the first, summed */
    s_category_t cats[S_CATEGORIES_MAX];
    size_t ncats;
    int64_t start_us;     /* when waiting began */
    int64_t last_draw_us; /* last progress redraw */
    bool write_error;     /* writing results failed */
    json_t *one;          /* --json, one job: its outcome */
} s_wait_t;

static int
s_parse_int(const char *s, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static int
s_parse_name(const cli_t *c, const char *flag, const char *s, size_t max,
             const char **out)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return cli_usage(c, s_flag(flag), "--%s must be 1..%zu bytes", flag,
                         max);
    *out = s;
    return -1;
}

/* Seconds of flag name (text v) into *out: 0 ok, else the usage error's
 * exit code. positive: must be > 0. */
static int
s_seconds(const cli_t *c, const char *name, const char *v, bool positive,
          double *out)
{
    if (jobline_seconds(v, out) || (positive && *out <= 0))
        return cli_usage(c, s_flag(name), "--%s must be seconds %s, not '%s'",
                         name, positive ? "> 0" : ">= 0", v);
    return 0;
}

/* --after or --after-any (flag) into *ids. Returns -1 to go on, or an
 * exit code. */
static int
s_parse_ids(const cli_t *c, const char *flag, const char *text,
            const char *const **ids, size_t *n)
{
    char why[128];
    if (lineref_parse_ids(strcmp(flag, "after") != 0, text, ids, n, why,
                          sizeof why) != 0)
        return cli_usage(c, s_flag(flag), "--%s %s", flag, why);
    return -1;
}

/* Checks the flags and arguments into *o. Returns -1 to go on, or an exit
 * code (a usage error, said). */
static int
s_check(const cli_t *c, int argc, char **argv, s_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->c = c;
    o->json = c->json;
    o->broker = c->broker;
    o->file = s_f.file;
    o->wait = s_f.wait;
    o->out = s_f.out;
    o->quiet = s_f.quiet || c->json;
    o->ids = s_f.ids;
    o->progress = s_f.no_progress ? 0 : s_f.progress ? 1 : -1;
    o->wait_timeout_ms = -1;
    drover_job_t *d = &o->defaults;
    drover_job_init(d);
    dv_log_init("submit",
                (dv_level_t)dv_log_level_parse(s_levels[s_f.log_level]),
                s_f.log_format == 1);
    int rc;
    double v;

    const char *type = s_f.type;
    if (argc >= 1) {
        if (type)
            return cli_usage(c, s_flag("type"),
                             "give the type as TYPE or --type, not both");
        type = argv[0];
    }
    o->payload = s_f.payload;
    if (argc >= 2) {
        if (o->payload)
            return cli_usage(c, s_flag("payload"),
                             "give the payload as PAYLOAD or --payload, not "
                             "both");
        o->payload = argv[1];
    }
    if (type && (rc = s_parse_name(c, "type", type, 200, &d->type)) >= 0)
        return rc;
    if ((rc = s_parse_name(c, "queue", s_f.queue, 200, &d->queue)) >= 0)
        return rc;
    if (s_f.priority && s_parse_int(s_f.priority, 0, 9, &d->priority))
        return cli_usage(c, s_flag("priority"),
                         "--priority must be 0..9, not '%s'", s_f.priority);
    if (s_f.delay &&
        (rc = s_seconds(c, "delay", s_f.delay, false, &d->delay_s)) != 0)
        return rc;
    if (s_f.at && jobline_time(s_f.at, &d->run_at_ms))
        return cli_usage(c, s_flag("at"),
                         "--at must be an ISO 8601 UTC time "
                         "(2026-11-22T17:41:00Z) or @EPOCH, not '%s'",
                         s_f.at);
    if (s_f.max_attempts &&
        s_parse_int(s_f.max_attempts, 1, 1000, &d->max_attempts))
        return cli_usage(c, s_flag("max-attempts"),
                         "--max-attempts must be 1..1000, not '%s'",
                         s_f.max_attempts);
    if (s_f.timeout &&
        (rc = s_seconds(c, "timeout", s_f.timeout, true, &d->timeout_s)) != 0)
        return rc;
    if (s_f.key && (rc = s_parse_name(c, "key", s_f.key, 512, &d->key)) >= 0)
        return rc;
    if (s_f.backoff_base && (rc = s_seconds(c, "backoff-base", s_f.backoff_base,
                                            false, &d->backoff_base_s)) != 0)
        return rc;
    if (s_f.backoff_factor) {
        char *end;
        double f = strtod(s_f.backoff_factor, &end);
        if (end == s_f.backoff_factor || *end || !(f >= 1 && f <= 1000))
            return cli_usage(c, s_flag("backoff-factor"),
                             "--backoff-factor must be 1..1000, not '%s'",
                             s_f.backoff_factor);
        d->backoff_factor = f;
    }
    if (s_f.backoff_cap && (rc = s_seconds(c, "backoff-cap", s_f.backoff_cap,
                                           false, &d->backoff_cap_s)) != 0)
        return rc;
    if (s_f.no_jitter)
        d->backoff_jitter = 0;
    if (s_f.trace) {
        if (!jobline_trace_ok(s_f.trace))
            return cli_usage(c, s_flag("trace"),
                             "--trace must be a W3C traceparent "
                             "(00-<32 hex>-<16 hex>-<2 hex>)");
        d->trace = s_f.trace;
    }
    if (s_f.result_ttl && (rc = s_seconds(c, "result-ttl", s_f.result_ttl,
                                          false, &d->result_ttl_s)) != 0)
        return rc;
    if (s_f.batch &&
        (rc = s_parse_name(c, "batch", s_f.batch, 200, &d->batch)) >= 0)
        return rc;
    if (s_f.after &&
        (rc = s_parse_ids(c, "after", s_f.after, &d->after, &d->nafter)) >= 0)
        return rc;
    if (s_f.after_any && (rc = s_parse_ids(c, "after-any", s_f.after_any,
                                           &d->after_any, &d->nafter_any)) >= 0)
        return rc;
    if (o->file && !*o->file)
        return cli_usage(c, s_flag("file"), "--file needs a file name (or -)");
    if ((rc = s_seconds(c, "connect-timeout", s_f.connect_timeout, true, &v)) !=
        0)
        return rc;
    if (v > 86400)
        return cli_usage(c, s_flag("connect-timeout"),
                         "--connect-timeout must be at most 86400 seconds");
    o->connect_timeout_ms = (int)ceil(v * 1000);
    if (o->out && !*o->out)
        return cli_usage(c, s_flag("out"), "--out needs a file name");
    if (s_f.wait_timeout) {
        if ((rc = s_seconds(c, "wait-timeout", s_f.wait_timeout, false, &v)) !=
            0)
            return rc;
        if (v > 2e6)
            return cli_usage(c, s_flag("wait-timeout"),
                             "--wait-timeout must be at most 2000000 "
                             "seconds");
        o->wait_timeout_ms = (int)ceil(v * 1000);
    }

    if (s_f.delay && s_f.at)
        return cli_usage(c, NULL, "give --delay or --at, not both");
    if (o->file && o->payload)
        return cli_usage(c, s_flag("payload"),
                         "a payload is for one job; with --file each line "
                         "has its own \"payload\"");
    if (o->file && d->key)
        return cli_usage(c, s_flag("key"),
                         "--key is for one job; with --file give each line "
                         "its own \"key\"");
    if (o->file && (d->nafter || d->nafter_any))
        return cli_usage(c, s_flag(d->nafter ? "after" : "after-any"),
                         "--after and --after-any are for one job; with "
                         "--file give each line its own \"after\"");
    if (!o->file && !d->type)
        return cli_usage(c, NULL, "needs TYPE (or --type, or --file)");
    if (o->out && !o->wait)
        return cli_usage(c, s_flag("out"), "--out needs --wait");
    if (o->wait_timeout_ms >= 0 && !o->wait)
        return cli_usage(c, s_flag("wait-timeout"),
                         "--wait-timeout needs --wait");
    if (o->ids && !(o->json && o->file))
        return cli_usage(c, s_flag("ids"), "--ids needs --json and --file");
    return -1;
}

/* A message for people on stderr, in the one style ("drover submit: ...");
 * nothing under --json, where the document or the error says it. */
static void s_note(const s_opts_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
s_note(const s_opts_t *o, const char *fmt, ...)
{
    if (o->json)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_fail(o->c, CLI_FAILED, NULL, "%s", msg);
}

/* ---- input --------------------------------------------------------------- */

/* Reads and checks every line. Returns -1 when all are good, else an exit
 * code (the bad lines said, each with its number and reason; nothing is
 * submitted then). */
static int
s_read_jobs(const s_opts_t *o, jobline_arena_t *arena, submit_input_t *in)
{
    const char *name = strcmp(o->file, "-") ? o->file : "stdin";
    submit_bads_t *bads = calloc(1, sizeof *bads);
    if (!bads)
        return cli_fail(o->c, CLI_FAILED, "no_memory", "out of memory");
    unsigned line = 0;
    int rc = submit_input_read(o->file, &o->defaults, arena, in, bads, &line);
    if (rc == SUBMIT_INPUT_NO_OPEN || rc == SUBMIT_INPUT_NO_READ) {
        int err = errno;
        free(bads);
        return cli_fail(o->c, CLI_USAGE, "bad_input", "cannot %s %s: %s",
                        rc == SUBMIT_INPUT_NO_OPEN ? "open" : "read", name,
                        strerror(err));
    }
    if (rc == SUBMIT_INPUT_NOMEM) {
        free(bads);
        return cli_fail(o->c, CLI_FAILED, "no_memory",
                        "out of memory at line %u", line);
    }
    size_t bad = bads->count;
    if (!bad) {
        free(bads);
        return -1;
    }
    for (size_t i = 0; i < bads->n; i++)
        s_note(o, "line %u: %s", bads->list[i].line, bads->list[i].why);
    if (bad > S_REPORT_MAX)
        s_note(o, "... and %zu more bad lines", bad - S_REPORT_MAX);
    unsigned first_bad = bads->list[0].line;
    char first_why[256];
    snprintf(first_why, sizeof first_why, "%s", bads->list[0].why);
    bool only_refs = bads->refs == bad;
    free(bads);
    if (only_refs)
        /* Only references to no (earlier) job: exit 4, as for a job that
         * does not exist. */
        return cli_fail(o->c, CLI_NOT_FOUND, "bad_line",
                        "line %u: %s; %zu bad line%s in %s; nothing was "
                        "submitted",
                        first_bad, first_why, bad, bad == 1 ? "" : "s", name);
    if (o->json)
        return cli_fail(o->c, CLI_USAGE, "bad_line",
                        "line %u: %s; %zu bad line%s in %s; nothing was "
                        "submitted",
                        first_bad, first_why, bad, bad == 1 ? "" : "s", name);
    return cli_fail(o->c, CLI_USAGE, "bad_line",
                    "%zu bad line%s in %s; nothing was submitted", bad,
                    bad == 1 ? "" : "s", name);
}

/* The one job the flags and arguments describe. Returns -1 to go on, or an
 * exit code. */
static int
s_flag_job(const s_opts_t *o, jobline_arena_t *arena, submit_input_t *in)
{
    drover_job_t job = o->defaults;
    if (o->payload) {
        const char *text = o->payload;
        char *read = NULL;
        if (!strcmp(text, "-")) { /* the payload from stdin */
            size_t len = 0;
            read = submit_input_read_all(stdin, &len);
            char *z = read ? realloc(read, len + 1) : NULL;
            if (!z) {
                free(read);
                return cli_fail(o->c, CLI_USAGE, "bad_input",
                                "cannot read the payload from stdin: %s",
                                strerror(errno));
            }
            read = z;
            read[len] = '\0';
            text = read;
        }
        json_error_t err;
        json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
        free(read);
        if (!j)
            return cli_usage(o->c, s_flag("payload"),
                             "the payload is not valid JSON: %s (line %d, "
                             "column %d)",
                             err.text, err.line, err.column);
        size_t len = 0;
        char *mp = dv_json_to_msgpack(j, &len);
        json_decref(j);
        if (!mp)
            return cli_usage(o->c, s_flag("payload"),
                             "the payload is nested too deep");
        char *copy = jobline_arena_alloc(arena, len ? len : 1);
        if (copy)
            memcpy(copy, mp, len);
        free(mp);
        if (!copy)
            return cli_fail(o->c, CLI_FAILED, "no_memory", "out of memory");
        job.payload_msgpack = copy;
        job.payload_len = len;
    }
    if (submit_input_add(in, &job, 0) != 0)
        return cli_fail(o->c, CLI_FAILED, "no_memory", "out of memory");
    return -1;
}

/* ---- waiting ------------------------------------------------------------- */

/* Shows progress: the bar on a terminal, a line now and then elsewhere. */
static void
s_draw(s_wait_t *w, bool final)
{
    int64_t now = dv_mono_us();
    if (!w->bar &&
        !(w->lines && (final || now - w->last_draw_us >= S_LINE_EVERY_US)))
        return;
    double elapsed = (double)(now - w->start_us) / 1e6;
    double rate = elapsed > 0 ? (double)w->done / elapsed : 0;
    cli_progress_t p = {
        .done = (int64_t)w->done,
        .total = (int64_t)w->total,
        .succeeded = (int64_t)w->succeeded,
        .dead = (int64_t)w->dead,
        .cancelled = (int64_t)w->cancelled,
        .running = -1,
        .rate = rate,
        .eta_s = final      ? 0
                 : rate > 0 ? (double)(w->total - w->done) / rate
                            : -1,
    };
    if (w->bar)
        cli_bar(stderr, &p, final);
    else
        cli_progress_line(stderr, "submit", &p);
    w->last_draw_us = now;
}

/* Counts a failure under its category, keeping one example message. */
static void
s_count_failure(s_wait_t *w, const char *category, const char *message)
{
    const char *name = category ? category : "(none)";
    size_t i = 0;
    while (i < w->ncats && strcmp(w->cats[i].name, name) != 0)
        i++;
    if (i == w->ncats) {
        if (w->ncats == S_CATEGORIES_MAX)
            i = S_CATEGORIES_MAX - 1; /* lump the rarest tail together */
        else {
            w->ncats++;
            snprintf(w->cats[i].name, sizeof w->cats[i].name, "%s", name);
            snprintf(w->cats[i].example, sizeof w->cats[i].example, "%s",
                     message ? message : "");
        }
    }
    w->cats[i].count++;
}

/* Writes s as a JSON string. */
static void
s_put_json_string(FILE *out, const char *s)
{
    json_t *j = json_string(s);
    if (!j) /* not UTF-8: keep what can be shown */
        j = json_string("(message not valid UTF-8)");
    json_dumpf(j, out, JSON_ENCODE_ANY);
    json_decref(j);
}

static void
s_write_result(s_wait_t *w, const drover_result_t *r, unsigned line)
{
    FILE *out = w->out;
    if (!out)
        return;
    fprintf(out, "{\"id\":\"%s\"", r->id);
    if (line)
        fprintf(out, ",\"line\":%u", line);
    fprintf(out, ",\"state\":\"%s\",\"attempts\":%d", r->state, r->attempts);
    if (r->result_json)
        fprintf(out, ",\"result\":%s", r->result_json);
    else if (!strcmp(r->state, "succeeded"))
        fputs(",\"result\":null", out);
    else if (r->category || r->error) {
        fputs(",\"error\":{\"category\":", out);
        if (r->category)
            s_put_json_string(out, r->category);
        else
            fputs("null", out);
        fputs(",\"message\":", out);
        s_put_json_string(out, r->error ? r->error : "");
        fputc('}', out);
    }
    fputs("}\n", out);
}

/* One job's outcome for --json: {"state", "attempts", "result" | "error"}
 * added to doc. */
static void
s_outcome_json(json_t *doc, const drover_result_t *r)
{
    json_object_set_new(doc, "state", json_string(r->state));
    json_object_set_new(doc, "attempts", json_integer(r->attempts));
    if (!strcmp(r->state, "succeeded")) {
        json_t *v = r->result_json
                        ? json_loads(r->result_json, JSON_DECODE_ANY, NULL)
                        : NULL;
        json_object_set_new(doc, "result", v ? v : json_null());
    } else {
        json_t *e = json_object();
        json_object_set_new(e, "category",
                            r->category ? json_string(r->category)
                                        : json_null());
        json_object_set_new(e, "message",
                            json_string(r->error ? r->error : ""));
        json_object_set_new(doc, "error", e);
    }
}

static int
s_on_result(const drover_result_t *r, void *arg)
{
    s_wait_t *w = arg;
    bool ok = !strcmp(r->state, "succeeded");
    if (w->one)
        s_outcome_json(w->one, r);
    /* Several lines may have led to the same job (a repeated key). */
    for (size_t i = r->index; i != SIZE_MAX; i = w->next_same[i]) {
        unsigned line = w->in->lines[w->job_of[i]];
        s_write_result(w, r, line);
        w->done++;
        if (ok)
            w->succeeded++;
        else if (!strcmp(r->state, "dead"))
            w->dead++;
        else if (!strcmp(r->state, "cancelled"))
            w->cancelled++;
        else
            w->unknown++;
        if (!ok)
            s_count_failure(w, r->category ? r->category : r->state,
                            r->error ? r->error : r->state);
        if (r->attempts > 1)
            w->retries += r->attempts - 1;
    }
    if (!r->more) {
        if (w->out && fflush(w->out) != 0)
            w->write_error = true;
        if (dv_mono_us() - w->last_draw_us >= 100000)
            s_draw(w, false);
    }
    return 0;
}

static int
s_cat_cmp(const void *a, const void *b)
{
    const s_category_t *x = a, *y = b;
    return x->count < y->count ? 1 : x->count > y->count ? -1 : 0;
}

static void
s_summary(s_wait_t *w, int64_t started_us)
{
    int64_t ms = (dv_mono_us() - started_us) / 1000;
    double rate = ms > 0 ? (double)w->done * 1000.0 / (double)ms : 0.0;
    fprintf(stderr,
            "%s job%s in %s (%s jobs/s): %s succeeded, %s dead, %s "
            "cancelled",
            cli_num((int64_t)w->total), w->total == 1 ? "" : "s", cli_dur(ms),
            cli_rate(rate), cli_num((int64_t)w->succeeded),
            cli_num((int64_t)w->dead), cli_num((int64_t)w->cancelled));
    if (w->unknown)
        fprintf(stderr, ", %s unknown", cli_num((int64_t)w->unknown));
    if (w->done < w->total)
        fprintf(stderr, ", %s unfinished",
                cli_num((int64_t)(w->total - w->done)));
    fprintf(stderr, "; %s retr%s\n", cli_num(w->retries),
            w->retries == 1 ? "y" : "ies");
    if (w->ncats == 0)
        return;
    fputs("failures by category:\n", stderr);
    for (size_t i = 0; i < w->ncats && i < 5; i++)
        fprintf(stderr, "  %-18s %6s  e.g. %s\n", w->cats[i].name,
                cli_num((int64_t)w->cats[i].count), w->cats[i].example);
}

/* The outcome counts of --file --wait --json, added to doc. */
static void
s_counts_json(json_t *doc, const s_wait_t *w)
{
    json_object_set_new(doc, "succeeded",
                        json_integer((json_int_t)w->succeeded));
    json_object_set_new(doc, "dead", json_integer((json_int_t)w->dead));
    json_object_set_new(doc, "cancelled",
                        json_integer((json_int_t)w->cancelled));
    json_object_set_new(doc, "unknown", json_integer((json_int_t)w->unknown));
    json_object_set_new(doc, "unfinished",
                        json_integer((json_int_t)(w->total - w->done)));
    json_object_set_new(doc, "retries", json_integer(w->retries));
    json_t *f = json_object();
    for (size_t i = 0; i < w->ncats; i++)
        json_object_set_new(f, w->cats[i].name,
                            json_pack("{s:I, s:s}", "count",
                                      (json_int_t)w->cats[i].count, "example",
                                      w->cats[i].example));
    json_object_set_new(doc, "failures", f);
}

/* Waits for the accepted jobs; under --json adds what became of them to
 * doc. Returns the exit code so far: 0, 1 (some job did not succeed, or
 * the wait failed), 6 (--wait-timeout passed first). */
static int
s_wait_all(const s_opts_t *o, submit_input_t *in, drover_client_t *client,
           int64_t started_us, json_t *doc)
{
    size_t n = 0;
    for (size_t i = 0; i < in->n; i++)
        n += in->ids[i][0] != '\0';
    const char **ids = malloc((n ? n : 1) * sizeof *ids);
    s_wait_t w = { .opts = o, .in = in };
    w.job_of = malloc((n ? n : 1) * sizeof *w.job_of);
    w.next_same = malloc((n ? n : 1) * sizeof *w.next_same);
    size_t *tail = malloc((n ? n : 1) * sizeof *tail);
    /* Lines share an id only when the broker said a key made one a
     * duplicate: without that every id is new, and none is looked up. */
    bool dups = false;
    for (size_t i = 0; i < in->n && !dups; i++)
        dups = in->ids[i][0] && in->dup[i];
    dv_map_t *map = dups ? dv_map_new(NULL) : NULL; /* id -> &ids[first] */
    int rc = CLI_OK;
    if (!ids || !w.job_of || !w.next_same || !tail ||
        (dups && (!map || dv_map_reserve(map, n) != 0))) {
        rc = cli_fail(o->c, CLI_FAILED, "no_memory", "out of memory");
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < in->n; i++) {
        if (!in->ids[i][0])
            continue;
        ids[k] = in->ids[i];
        w.job_of[k] = i;
        w.next_same[k] = SIZE_MAX;
        const char **seen =
            dups ? dv_map_getn(map, ids[k], DROVER_ID_LEN) : NULL;
        size_t first = seen ? (size_t)(seen - ids) : k;
        if (dups && !seen && dv_map_putn(map, ids[k], DROVER_ID_LEN, &ids[k])) {
            rc = cli_fail(o->c, CLI_FAILED, "no_memory", "out of memory");
            goto done;
        }
        if (first == k)
            tail[k] = k;
        else {
            w.next_same[tail[first]] = k;
            tail[first] = k;
        }
        k++;
    }
    w.total = n;
    w.out = o->json ? NULL : stdout;
    if (o->out) {
        w.out = fopen(o->out, "w");
        if (!w.out) {
            rc = cli_fail(o->c, CLI_FAILED, NULL, "cannot write %s: %s", o->out,
                          strerror(errno));
            goto done;
        }
    }
    if (o->json && !o->file)
        w.one = doc;
    bool tty = isatty(STDERR_FILENO);
    w.bar = tty && (o->progress == 1 || (o->progress == -1 && !o->json));
    w.lines = !tty && o->progress == 1;
    w.start_us = dv_mono_us();
    w.last_draw_us = w.start_us;
    if (w.bar)
        s_draw(&w, false);
    int wrc = drover_wait(client, ids, n, o->wait_timeout_ms, s_on_result, &w);
    s_draw(&w, true);
    if (w.out && (fflush(w.out) != 0 || ferror(w.out)))
        w.write_error = true;
    if (w.out && w.out != stdout && fclose(w.out) != 0)
        w.write_error = true;
    qsort(w.cats, w.ncats, sizeof w.cats[0], s_cat_cmp);
    if (!o->quiet)
        s_summary(&w, started_us);
    if (o->json && o->file)
        s_counts_json(doc, &w);
    if (o->json && !o->file && w.done == 0)
        json_object_set_new(doc, "state", json_string("unfinished"));
    if (w.write_error)
        rc = cli_fail(o->c, CLI_FAILED, NULL, "writing results failed: %s",
                      strerror(errno));
    else if (wrc == DROVER_ETIMEOUT)
        rc = cli_fail(o->c, CLI_TIMEOUT, NULL,
                      "%s job%s still unfinished after the wait timeout",
                      cli_num((int64_t)(n - w.done)),
                      n - w.done == 1 ? "" : "s");
    else if (wrc != DROVER_OK)
        rc = cli_fail(o->c, cli_exit_of(wrc, drover_last_code(client)), NULL,
                      "waiting failed: %s", drover_last_error(client));
    else if (w.succeeded < w.total)
        rc = CLI_FAILED;
done:
    free(ids);
    free(w.job_of);
    free(w.next_same);
    free(tail);
    dv_map_destroy(&map);
    return rc;
}

/* ---- submitting ---------------------------------------------------------- */

/* CPU time this process has used (user + system), in ms. */
static int64_t
s_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/* Shows "line 5" for file input, "job" for the one job. */
static const char *
s_where(const submit_input_t *in, size_t i, char *buf, size_t size)
{
    if (in->lines[i] == 0)
        return "job";
    snprintf(buf, size, "line %u", in->lines[i]);
    return buf;
}

/* Submits every job into *s. Returns the exit code so far: 0, 3 (no answer
 * for some jobs), 1 (some refused); each said. */
static int
s_submit_all(const s_opts_t *o, submit_input_t *in, drover_client_t *client,
             s_sent_t *s)
{
    in->ids = submit_big_alloc((in->n ? in->n : 1) * sizeof *in->ids);
    in->dup = calloc(in->n ? in->n : 1, sizeof *in->dup);
    drover_ack_t *acks = submit_big_alloc(S_SLICE * sizeof *acks);
    s->refusals = json_array();
    if (!in->ids || !in->dup || !acks || !s->refusals) {
        free(acks);
        return cli_fail(o->c, CLI_FAILED, "no_memory", "out of memory");
    }
    memset(in->ids, 0, (in->n ? in->n : 1) * sizeof *in->ids);
    size_t first_unanswered = 0;
    int lib_rc = DROVER_OK;
    char where[32];
    unsigned dep_refused = 0, dep_on = 0; /* first line not sent, its ref */
    for (size_t base = 0, m = 0; base < in->n; base += m) {
        m = in->n - base < S_SLICE ? in->n - base : S_SLICE;
        /* Line references: a job waiting for a job of this slice ends the
         * slice (its id comes with the slice's acks); one waiting for a
         * job that was not accepted is not sent. */
        size_t unsent = lineref_resolve(in->jobs, in->lines, in->n, in->ids,
                                        base, &m, &dep_on);
        if (unsent == base) {
            if (!dep_refused)
                dep_refused = in->lines[base];
            if (s->refused < S_REPORT_MAX) {
                char msg[128];
                snprintf(msg, sizeof msg,
                         "not sent: it waits for line %u, whose job was "
                         "not accepted",
                         dep_on);
                s_note(o, "%s: %s", s_where(in, base, where, sizeof where),
                       msg);
                json_array_append_new(s->refusals,
                                      json_pack("{s:I, s:s}", "line",
                                                (json_int_t)in->lines[base],
                                                "message", msg));
            }
            s->refused++;
            m = 1;
            continue;
        }
        if (lib_rc == DROVER_EUNREACHABLE || lib_rc == DROVER_ETIMEOUT ||
            lib_rc == DROVER_EREJECTED || lib_rc == DROVER_ENOMEM) {
            /* Do not send more to a broker that stopped answering. */
            if (!s->unanswered)
                first_unanswered = base;
            s->unanswered += m;
            continue;
        }
        int rc = drover_submit_many_ex(client, in->jobs + base, m, acks,
                                       o->wait ? DROVER_SUBMIT_WAIT : 0);
        if (rc != DROVER_OK)
            lib_rc = rc;
        for (size_t k = 0; k < m; k++) {
            size_t i = base + k;
            if (!acks[k].error[0]) {
                memcpy(in->ids[i], acks[k].id, DROVER_ID_SIZE);
                s->accepted++;
                in->dup[i] = acks[k].duplicate != 0;
                s->duplicates += acks[k].duplicate != 0;
            } else if (acks[k].unanswered) {
                if (!s->unanswered)
                    first_unanswered = i;
                s->unanswered++;
            } else {
                if (s->refused < S_REPORT_MAX) {
                    if (in->lines[i])
                        s_note(o, "%s: refused: %s",
                               s_where(in, i, where, sizeof where),
                               acks[k].error);
                    else
                        s_note(o, "refused: %s", acks[k].error);
                    json_array_append_new(s->refusals,
                                          json_pack("{s:I, s:s}", "line",
                                                    (json_int_t)in->lines[i],
                                                    "message", acks[k].error));
                }
                s->refused++;
            }
        }
    }
    free(acks);
    s->done_us = dv_mono_us();

    /* The ids of accepted jobs, whatever else happened: the caller needs
     * them to know what exists. With --wait the results say it instead;
     * under --json the document. */
    if (!o->json && (!o->wait || s->unanswered)) {
        for (size_t i = 0; i < in->n; i++)
            if (in->ids[i][0]) {
                fputs(in->ids[i], stdout);
                fputc('\n', stdout);
            }
        fflush(stdout);
    }
    if (s->refused > S_REPORT_MAX)
        s_note(o, "... and %zu more refused", s->refused - S_REPORT_MAX);
    if (s->unanswered) {
        if (s->accepted == 0 && s->refused == 0)
            return cli_fail(o->c, CLI_UNREACHABLE, NULL,
                            "cannot reach the broker: %s",
                            drover_last_error(client));
        return cli_fail(o->c, CLI_UNREACHABLE, NULL,
                        "%zu of %zu jobs accepted; no answer from the broker "
                        "for %zu, from %s on (%s); those may or may not have "
                        "been stored",
                        s->accepted, in->n, s->unanswered,
                        s_where(in, first_unanswered, where, sizeof where),
                        drover_last_error(client));
    }
    if (lib_rc != DROVER_OK && lib_rc != DROVER_EPROTO)
        return cli_fail(o->c, CLI_UNREACHABLE, NULL, "%s",
                        drover_last_error(client));
    if (dep_refused)
        return cli_fail(o->c, CLI_NOT_FOUND, "refused",
                        "line %u: not sent: it waits for a line whose job was "
                        "not accepted; %zu of %zu job%s accepted, %zu refused",
                        dep_refused, s->accepted, in->n, in->n == 1 ? "" : "s",
                        s->refused);
    if (s->refused)
        return cli_fail(o->c, CLI_FAILED, "refused",
                        "%zu of %zu job%s accepted, %zu refused", s->accepted,
                        in->n, in->n == 1 ? "" : "s", s->refused);
    return CLI_OK;
}

/* "submitted N jobs" on stderr. */
static void
s_submitted(const s_opts_t *o, const s_sent_t *s, int64_t started_us)
{
    char tail[160] = "";
    if (o->file) {
        int64_t ms = (s->done_us - started_us) / 1000;
        snprintf(
            tail, sizeof tail, " in %s (%s jobs/s)", cli_dur(ms),
            cli_rate(ms > 0 ? (double)s->accepted * 1000.0 / (double)ms : 0));
    }
    if (s->duplicates)
        fprintf(stderr, "submitted %s job%s%s (%s already known by key)\n",
                cli_num((int64_t)s->accepted), s->accepted == 1 ? "" : "s",
                tail, cli_num((int64_t)s->duplicates));
    else
        fprintf(stderr, "submitted %s job%s%s\n", cli_num((int64_t)s->accepted),
                s->accepted == 1 ? "" : "s", tail);
}

/* The --json document before waiting: {"id", "duplicate"} for the one job,
 * the summary for --file. */
static json_t *
s_doc(const s_opts_t *o, const submit_input_t *in, const s_sent_t *s)
{
    if (!o->file) {
        bool ok = in->n == 1 && in->ids && in->ids[0][0];
        return json_pack("{s:o, s:b}", "id",
                         ok ? json_string(in->ids[0]) : json_null(),
                         "duplicate", ok && in->dup && in->dup[0]);
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "jobs", json_integer((json_int_t)in->n));
    json_object_set_new(doc, "submitted",
                        json_integer((json_int_t)s->accepted));
    json_object_set_new(doc, "duplicates",
                        json_integer((json_int_t)s->duplicates));
    json_object_set_new(doc, "refused", json_integer((json_int_t)s->refused));
    json_object_set_new(doc, "unanswered",
                        json_integer((json_int_t)s->unanswered));
    json_object_set_new(doc, "refusals",
                        s->refusals ? json_incref(s->refusals) : json_array());
    if (o->ids) {
        json_t *ids = json_array();
        for (size_t i = 0; in->ids && i < in->n; i++)
            json_array_append_new(ids, in->ids[i][0] ? json_string(in->ids[i])
                                                     : json_null());
        json_object_set_new(doc, "ids", ids);
    }
    return doc;
}

/* elapsed_ms and rate of the --file summary: ended jobs per second with
 * --wait, accepted ones without. */
static void
s_doc_time(json_t *doc, const s_opts_t *o, int64_t started_us)
{
    int64_t ms = (dv_mono_us() - started_us) / 1000;
    json_int_t n = json_integer_value(
        json_object_get(doc, o->wait ? "succeeded" : "submitted"));
    if (o->wait)
        n += json_integer_value(json_object_get(doc, "dead")) +
             json_integer_value(json_object_get(doc, "cancelled")) +
             json_integer_value(json_object_get(doc, "unknown"));
    json_object_set_new(doc, "elapsed_ms", json_integer(ms));
    json_object_set_new(
        doc, "rate", json_real(ms > 0 ? (double)n * 1000.0 / (double)ms : 0.0));
}

static int
s_submit(cli_t *c, int argc, char **argv)
{
    s_opts_t o;
    int rc = s_check(c, argc, argv, &o);
    if (rc >= 0)
        return rc;
    int64_t started_us = dv_mono_us();
    jobline_arena_t *arena = jobline_arena_new();
    submit_input_t in;
    memset(&in, 0, sizeof in);
    s_sent_t sent;
    memset(&sent, 0, sizeof sent);
    drover_client_t *client = NULL;
    json_t *doc = NULL;
    if (!arena)
        return cli_fail(c, CLI_FAILED, "no_memory", "out of memory");
    const char *types[3] = { s_f.on_complete, s_f.on_success, s_f.on_failure };
    bool oneshot = types[0] || types[1] || types[2];
    if (oneshot && !s_f.batch) {
        rc = cli_usage(c, NULL,
                       "--on-complete, --on-success and --on-failure "
                       "go with --batch NAME");
        goto done;
    }
    rc = o.file ? s_read_jobs(&o, arena, &in) : s_flag_job(&o, arena, &in);
    if (rc >= 0)
        goto done;
    if (in.n == 0) {
        s_note(&o, "no jobs in %s", strcmp(o.file, "-") ? o.file : "stdin");
        sent.done_us = dv_mono_us();
        rc = CLI_OK;
        goto report;
    }
    client = drover_connect(o.broker, o.connect_timeout_ms);
    if (!client) {
        rc = cli_usage(c, NULL, "%s", drover_last_error(NULL));
        goto done;
    }
    if (oneshot &&
        (rc = batch_open(c, client, s_f.batch, types, s_f.queue)) != 0)
        goto done;
    int64_t parsed_us = dv_mono_us(), parsed_cpu = s_cpu_ms();
    rc = s_submit_all(&o, &in, client, &sent);
    if (oneshot && rc != CLI_UNREACHABLE) {
        int crc = batch_close(c, client, s_f.batch);
        if (rc == CLI_OK)
            rc = crc;
    }
    dv_log(DV_DEBUG, "submit.timing", DV_INT("jobs", in.n),
           DV_INT("accepted", sent.accepted),
           DV_INT("parse_ms", (parsed_us - started_us) / 1000),
           DV_INT("parse_cpu_ms", parsed_cpu),
           DV_INT("submit_ms", (dv_mono_us() - parsed_us) / 1000),
           DV_INT("submit_cpu_ms", s_cpu_ms() - parsed_cpu));
report:
    if (rc == CLI_OK && !o.quiet && !o.wait)
        s_submitted(&o, &sent, started_us);
    if (o.json && (sent.accepted || rc != CLI_UNREACHABLE))
        doc = s_doc(&o, &in, &sent);
    if (rc != CLI_UNREACHABLE && o.wait && sent.accepted) {
        int wrc = s_wait_all(&o, &in, client, started_us, doc);
        if (rc == CLI_OK || wrc == CLI_TIMEOUT)
            rc = wrc;
    }
    if (doc) {
        if (o.file)
            s_doc_time(doc, &o, started_us);
        cli_print_json(doc);
    }
done:
    json_decref(doc);
    json_decref(sent.refusals);
    drover_close(&client);
    submit_input_free(&in);
    jobline_arena_destroy(&arena);
    return rc;
}

const cli_cmd_t cli_submit = {
    .name = "submit",
    .summary = "submit one job, or many from JSON Lines",
    .args = "[TYPE [PAYLOAD]]",
    .max_args = 2,
    .about =
        "Submits one job of type TYPE with the JSON value PAYLOAD (null if "
        "not given; - reads it from stdin), or with --file many, one JSON "
        "object per line, and prints the job ids on stdout, one per line in "
        "input order (a refused line has none), and \"submitted N jobs\" on "
        "stderr. The job flags are the defaults for the fields a line leaves "
        "out.\n\n"
        "A line of --file: {\"queue\", \"type\", \"payload\", \"priority\", "
        "\"delay\" or \"at\", \"max_attempts\", \"timeout\", \"key\", "
        "\"batch\", \"trace\", \"result_ttl\", \"backoff\": {\"base\", "
        "\"factor\", \"cap\", \"jitter\"}, \"after\", \"after_any\"}. Blank "
        "lines and lines starting with # are skipped. Every line is checked "
        "before anything is submitted: a bad one is reported with its number "
        "and the reason, and then nothing is submitted (exit 2).\n\n"
        "\"after\" (jobs that must succeed first) and \"after_any\" (jobs "
        "that must end, however) list job ids, or line numbers (1-based) of "
        "earlier lines of the same file: {\"type\": \"load\", \"after\": [2]} "
        "waits for line 2's job (docs/dependencies-between-jobs.md). A line "
        "naming a line that is not an earlier job line stops the run before "
        "anything is submitted (exit 4, naming the line); a line is sent "
        "once the ack of the line it names came back, and is not sent (exit "
        "4) if that line's job was not accepted.\n\n"
        "With --wait it then waits for every accepted job to end and writes "
        "one JSON line per job as it ends: {\"id\", \"line\" (with --file), "
        "\"state\", \"attempts\", \"result\"} or {..., \"error\": "
        "{\"category\", \"message\"}}, then a summary on stderr: counts, "
        "rate and the failures by category.\n\n"
        "With --json, one document on stdout instead (docs/json.md): "
        "{\"id\", \"duplicate\"} for one job (with --wait also its "
        "\"state\", \"attempts\" and \"result\" or \"error\"); for --file "
        "the counts, the refusals, \"elapsed_ms\" and \"rate\" (with --wait "
        "the outcome counts and failures too). The results of --wait then "
        "go only to --out.",
    .examples =
        "  drover submit echo '{\"n\": 1}'\n"
        "  drover submit sum -5 --queue math --priority 9\n"
        "  drover submit llm --delay 2m --key report-42 --wait\n"
        "  drover submit --file jobs.jsonl --type llm --batch nightly\n"
        "  generate | drover submit --file - --wait --out results.jsonl\n"
        "  drover submit --file jobs.jsonl --json --ids | jq -r '.ids[]'\n",
    .notes = "Durations are seconds, fractions allowed; 250ms, 2m and 1h "
             "work too.\n\n"
             "Exit 3 (no broker answered) after some jobs were accepted: "
             "those whose ids were printed were stored, the others may or "
             "may not have been.",
    .exits = "exit status: 0 every job accepted (with --wait: every one "
             "succeeded); 1 the broker refused a job (the others were "
             "submitted and, with --wait, waited for), or with --wait a job "
             "ended dead, cancelled or unknown; 2 usage error, or a bad "
             "line in --file (nothing was submitted); 3 no broker answered; "
             "6 --wait-timeout passed first.",
    .flags = s_flags,
    .shared = CLI_JSON | CLI_BROKER,
    .run = s_submit,
};
