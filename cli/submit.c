/* submit - `drover submit`: one job from flags, or many from JSON Lines,
 * optionally waiting for their results. Talks to the broker through
 * libdrover (drover.h), like any other producer. */
#include "submit.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <jansson.h>

#include "drover.h"
#include "dv_clock.h"
#include "dv_json.h"
#include "dv_log.h"
#include "jobline.h"
#include "dv_map.h"

/* Exit codes (docs/producer.md). */
#define S_EXIT_OK          0
#define S_EXIT_FAILED      1
#define S_EXIT_USAGE       2
#define S_EXIT_UNREACHABLE 3
#define S_EXIT_REJECTED    4

#define S_SLICE          65536 /* jobs per drover_submit_many call */
#define S_REPORT_MAX     50    /* refused/bad lines printed one by one */
#define S_CATEGORIES_MAX 16    /* failure categories tracked for the summary */
#define S_BAR_WIDTH      24

static const char s_help[] =
    "usage: drover submit --type TYPE [--queue Q] [--payload JSON] [OPTIONS]\n"
    "       drover submit --file FILE|- [OPTIONS]\n"
    "\n"
    "Submits one job described by flags, or many from a JSON Lines file (one\n"
    "job object per line), and prints the job ids, one per line. With --wait\n"
    "it then waits for the jobs to end and writes their results.\n"
    "\n"
    "Job (flags are the defaults for fields a --file line leaves out):\n"
    "  --queue Q             queue name (default \"default\")\n"
    "  --type T              job type, i.e. handler name (required unless\n"
    "                        every line has \"type\")\n"
    "  --payload JSON        payload, any JSON value (default null); not with\n"
    "                        --file\n"
    "  --priority N          0..9, higher runs first (default 5)\n"
    "  --delay S             run no earlier than S seconds from now\n"
    "  --at TIME             run no earlier than TIME: ISO 8601 UTC\n"
    "                        (2026-11-22T17:41:00Z) or @EPOCH_SECONDS\n"
    "  --max-attempts N      1..1000 (default: the broker's, 5)\n"
    "  --timeout S           hard limit per attempt, seconds\n"
    "  --key K               idempotency key: a second submit with the same\n"
    "                        key returns the first job's id; not with --file\n"
    "  --backoff-base S      retry delay after the first failure (default 1)\n"
    "  --backoff-factor F    growth per attempt, >= 1 (default 2)\n"
    "  --backoff-cap S       largest retry delay (default 300)\n"
    "  --no-jitter           exact retry delays (default: full jitter)\n"
    "  --trace TP            W3C traceparent handed to the handler\n"
    "  --result-ttl S        how long the broker keeps the result\n"
    "  --batch NAME          batch name (drover watch NAME follows it)\n"
    "  Durations are seconds, fractions allowed; 250ms, 2m, 1h work too.\n"
    "\n"
    "Input:\n"
    "  --file FILE           JSON Lines, one job per line; - reads stdin.\n"
    "                        Fields: queue, type, payload, priority, delay,\n"
    "                        at, max_attempts, timeout, key, batch, trace,\n"
    "                        result_ttl, backoff {base, factor, cap, jitter}.\n"
    "                        Blank lines and lines starting with # are\n"
    "                        skipped. Every line is checked before anything\n"
    "                        is submitted.\n"
    "\n"
    "Broker:\n"
    "  --broker ENDPOINTS    comma-separated broker endpoints, tried in turn\n"
    "                        (default $DROVER_BROKER, else\n"
    "                        " DROVER_DEFAULT_ENDPOINT ")\n"
    "  --connect-timeout S   how long to wait for an answer from a broker\n"
    "                        before trying the next one (default 5)\n"
    "  --curve-secret FILE   CurveZMQ: our certificate's secret file\n"
    "                        (default $DROVER_CURVE_SECRET)\n"
    "  --curve-server FILE   CurveZMQ: the broker's public certificate\n"
    "                        (default $DROVER_CURVE_SERVER)\n"
    "\n"
    "Output:\n"
    "  (default)             job ids on stdout, one per line, in input order\n"
    "                        (refused lines have none); \"submitted N jobs\"\n"
    "                        on stderr\n"
    "  --wait                wait for every accepted job to end; write one\n"
    "                        JSON line per job as it ends: {\"id\",\n"
    "                        \"line\" (with --file), \"state\", \"attempts\",\n"
    "                        \"result\"} or {..., \"error\": {\"category\",\n"
    "                        \"message\"}}; then a summary on stderr\n"
    "  --out FILE            write the results there instead of stdout\n"
    "  --wait-timeout S      stop waiting after S seconds (default: never)\n"
    "  --progress            show a progress bar on stderr (default when\n"
    "                        stderr is a terminal)\n"
    "  --no-progress         never show it\n"
    "  -q, --quiet           no \"submitted\" line, no summary\n"
    "  --log-level L         debug, info, warn (default), error, off\n"
    "  --log-format F        json (default) or text, for log lines; messages\n"
    "                        for people are always plain text\n"
    "  -h, --help            this text\n"
    "\n"
    "Exit status:\n"
    "  0  every job was accepted (and, with --wait, succeeded)\n"
    "  1  with --wait: a job ended dead, cancelled or unknown, or\n"
    "     --wait-timeout passed first\n"
    "  2  usage error: unknown flag, bad flag value, conflicting flags\n"
    "  3  no broker could be reached (jobs whose ids were printed were\n"
    "     accepted; the others may or may not have been)\n"
    "  4  rejected input: a bad line (reported with its number; nothing was\n"
    "     submitted), or jobs the broker refused (the others were submitted\n"
    "     and, with --wait, waited for)\n";

/* Everything the command line says. */
typedef struct {
    const char *broker;     /* --broker; NULL = environment / default */
    int connect_timeout_ms; /* --connect-timeout */
    const char *file;       /* --file; NULL = one job from the flags */
    const char *payload;    /* --payload (JSON text) */
    drover_job_t defaults;  /* the job flags describe */
    bool wait;              /* --wait */
    const char *out;        /* --out */
    int progress;           /* --progress 1, --no-progress 0, -1 auto */
    int wait_timeout_ms;    /* --wait-timeout; -1 = never */
    bool quiet;             /* --quiet */
} s_opts_t;

/* One job to submit and what became of it. */
typedef struct {
    drover_job_t *jobs; /* parsed jobs, input order */
    unsigned *lines;    /* line number of each job (1-based), 0 = flags */
    size_t n, cap;
    char (*ids)[DROVER_ID_SIZE]; /* id per job; "" if not accepted */
} s_input_t;

/* A failure category seen while waiting. */
typedef struct {
    char name[32]; /* category, or the state if none */
    size_t count;
    char example[160]; /* one message, shortened */
} s_category_t;

/* State of --wait. */
typedef struct {
    const s_opts_t *opts;
    const s_input_t *in;
    size_t *job_of;    /* waited index -> job index */
    size_t *next_same; /* waited index -> next with the same id */
    FILE *out;
    bool bar;           /* draw the progress bar */
    size_t total, done; /* jobs (lines) to wait for, ended */
    size_t succeeded, dead, cancelled, unknown;
    long long retries; /* attempts beyond the first, summed */
    s_category_t cats[S_CATEGORIES_MAX];
    size_t ncats;
    int64_t start_us;     /* when waiting began */
    int64_t last_draw_us; /* last progress bar redraw */
    bool write_error;     /* writing results failed */
} s_wait_t;

static void s_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A plain message for the user on stderr. */
static void
s_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("drover submit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int s_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int
s_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("drover submit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(drover submit --help for usage)\n", stderr);
    va_end(ap);
    return S_EXIT_USAGE;
}

/* ---- flags ------------------------------------------------------------- */

enum {
    O_QUEUE = 256,
    O_TYPE,
    O_PAYLOAD,
    O_PRIORITY,
    O_DELAY,
    O_AT,
    O_MAX_ATTEMPTS,
    O_TIMEOUT,
    O_KEY,
    O_BACKOFF_BASE,
    O_BACKOFF_FACTOR,
    O_BACKOFF_CAP,
    O_NO_JITTER,
    O_TRACE,
    O_RESULT_TTL,
    O_BATCH,
    O_FILE,
    O_BROKER,
    O_CONNECT_TIMEOUT,
    O_WAIT,
    O_OUT,
    O_WAIT_TIMEOUT,
    O_PROGRESS,
    O_NO_PROGRESS,
    O_LOG_LEVEL,
    O_LOG_FORMAT,
};

static const struct option s_options[] = {
    { "queue", required_argument, NULL, O_QUEUE },
    { "type", required_argument, NULL, O_TYPE },
    { "payload", required_argument, NULL, O_PAYLOAD },
    { "priority", required_argument, NULL, O_PRIORITY },
    { "delay", required_argument, NULL, O_DELAY },
    { "at", required_argument, NULL, O_AT },
    { "max-attempts", required_argument, NULL, O_MAX_ATTEMPTS },
    { "timeout", required_argument, NULL, O_TIMEOUT },
    { "key", required_argument, NULL, O_KEY },
    { "backoff-base", required_argument, NULL, O_BACKOFF_BASE },
    { "backoff-factor", required_argument, NULL, O_BACKOFF_FACTOR },
    { "backoff-cap", required_argument, NULL, O_BACKOFF_CAP },
    { "no-jitter", no_argument, NULL, O_NO_JITTER },
    { "trace", required_argument, NULL, O_TRACE },
    { "result-ttl", required_argument, NULL, O_RESULT_TTL },
    { "batch", required_argument, NULL, O_BATCH },
    { "file", required_argument, NULL, O_FILE },
    { "broker", required_argument, NULL, O_BROKER },
    { "connect-timeout", required_argument, NULL, O_CONNECT_TIMEOUT },
    { "wait", no_argument, NULL, O_WAIT },
    { "out", required_argument, NULL, O_OUT },
    { "wait-timeout", required_argument, NULL, O_WAIT_TIMEOUT },
    { "progress", no_argument, NULL, O_PROGRESS },
    { "no-progress", no_argument, NULL, O_NO_PROGRESS },
    { "quiet", no_argument, NULL, 'q' },
    { "log-level", required_argument, NULL, O_LOG_LEVEL },
    { "log-format", required_argument, NULL, O_LOG_FORMAT },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
};

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
s_parse_name(const char *flag, const char *s, size_t max, const char **out)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) {
        s_usage_error("%s must be 1..%zu bytes", flag, max);
        return -1;
    }
    *out = s;
    return 0;
}

/* Parses argv into *o. Returns -1 to go on, or an exit code (help, usage). */
static int
s_parse_args(int argc, char **argv, s_opts_t *o)
{
    memset(o, 0, sizeof *o);
    drover_job_init(&o->defaults);
    o->connect_timeout_ms = 5000;
    o->progress = -1;
    o->wait_timeout_ms = -1;
    bool has_delay = false, has_at = false;
    int log_level = DV_WARN, log_text = 0;

    opterr = 0;
    optind = 0; /* full re-initialisation (glibc), so tests may call twice */
    int c;
    while ((c = getopt_long(argc, argv, "+qh", s_options, NULL)) != -1) {
        double d;
        const char *arg = optarg;
        switch (c) {
        case 'h':
            fputs(s_help, stdout);
            return S_EXIT_OK;
        case 'q':
            o->quiet = true;
            break;
        case O_QUEUE:
            if (s_parse_name("--queue", arg, 200, &o->defaults.queue))
                return S_EXIT_USAGE;
            break;
        case O_TYPE:
            if (s_parse_name("--type", arg, 200, &o->defaults.type))
                return S_EXIT_USAGE;
            break;
        case O_PAYLOAD:
            o->payload = arg;
            break;
        case O_PRIORITY:
            if (s_parse_int(arg, 0, 9, &o->defaults.priority))
                return s_usage_error("--priority must be 0..9, not '%s'", arg);
            break;
        case O_DELAY:
            if (jobline_seconds(arg, &o->defaults.delay_s))
                return s_usage_error("--delay must be seconds >= 0, not '%s'",
                                     arg);
            has_delay = true;
            break;
        case O_AT:
            if (jobline_time(arg, &o->defaults.run_at_ms))
                return s_usage_error("--at must be an ISO 8601 UTC time "
                                     "(2026-11-22T17:41:00Z) or @EPOCH, "
                                     "not '%s'",
                                     arg);
            has_at = true;
            break;
        case O_MAX_ATTEMPTS:
            if (s_parse_int(arg, 1, 1000, &o->defaults.max_attempts))
                return s_usage_error("--max-attempts must be 1..1000, not "
                                     "'%s'",
                                     arg);
            break;
        case O_TIMEOUT:
            if (jobline_seconds(arg, &o->defaults.timeout_s) ||
                o->defaults.timeout_s <= 0)
                return s_usage_error("--timeout must be seconds > 0, not "
                                     "'%s'",
                                     arg);
            break;
        case O_KEY:
            if (s_parse_name("--key", arg, 512, &o->defaults.key))
                return S_EXIT_USAGE;
            break;
        case O_BACKOFF_BASE:
            if (jobline_seconds(arg, &o->defaults.backoff_base_s))
                return s_usage_error("--backoff-base must be seconds >= 0, "
                                     "not '%s'",
                                     arg);
            break;
        case O_BACKOFF_FACTOR: {
            char *end;
            d = strtod(arg, &end);
            if (end == arg || *end || !(d >= 1 && d <= 1000))
                return s_usage_error("--backoff-factor must be 1..1000, not "
                                     "'%s'",
                                     arg);
            o->defaults.backoff_factor = d;
            break;
        }
        case O_BACKOFF_CAP:
            if (jobline_seconds(arg, &o->defaults.backoff_cap_s))
                return s_usage_error("--backoff-cap must be seconds >= 0, "
                                     "not '%s'",
                                     arg);
            break;
        case O_NO_JITTER:
            o->defaults.backoff_jitter = 0;
            break;
        case O_TRACE:
            if (!jobline_trace_ok(arg))
                return s_usage_error("--trace must be a W3C traceparent "
                                     "(00-<32 hex>-<16 hex>-<2 hex>)");
            o->defaults.trace = arg;
            break;
        case O_RESULT_TTL:
            if (jobline_seconds(arg, &o->defaults.result_ttl_s))
                return s_usage_error("--result-ttl must be seconds >= 0, "
                                     "not '%s'",
                                     arg);
            break;
        case O_BATCH:
            if (s_parse_name("--batch", arg, 200, &o->defaults.batch))
                return S_EXIT_USAGE;
            break;
        case O_FILE:
            if (!*arg)
                return s_usage_error("--file needs a file name (or -)");
            o->file = arg;
            break;
        case O_BROKER:
            o->broker = arg;
            break;
        case O_CONNECT_TIMEOUT:
            if (jobline_seconds(arg, &d) || d <= 0 || d > 86400)
                return s_usage_error("--connect-timeout must be seconds > 0, "
                                     "not '%s'",
                                     arg);
            o->connect_timeout_ms = (int)ceil(d * 1000);
            break;
        case O_WAIT:
            o->wait = true;
            break;
        case O_OUT:
            if (!*arg)
                return s_usage_error("--out needs a file name");
            o->out = arg;
            break;
        case O_WAIT_TIMEOUT:
            if (jobline_seconds(arg, &d) || d > 2e6)
                return s_usage_error("--wait-timeout must be seconds >= 0, "
                                     "not '%s'",
                                     arg);
            o->wait_timeout_ms = (int)ceil(d * 1000);
            break;
        case O_PROGRESS:
            o->progress = 1;
            break;
        case O_NO_PROGRESS:
            o->progress = 0;
            break;
        case O_LOG_LEVEL:
            log_level = dv_log_level_parse(arg);
            if (log_level < 0)
                return s_usage_error("--log-level must be debug, info, warn, "
                                     "error or off, not '%s'",
                                     arg);
            break;
        case O_LOG_FORMAT:
            if (strcmp(arg, "json") && strcmp(arg, "text"))
                return s_usage_error("--log-format must be json or text, not "
                                     "'%s'",
                                     arg);
            log_text = !strcmp(arg, "text");
            break;
        case ':':
            return s_usage_error("%s needs a value", argv[optind - 1]);
        default:
            if (optopt && optopt < 256)
                return s_usage_error("unknown option '-%c'", optopt);
            return s_usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    dv_log_init("submit", (dv_level_t)log_level, log_text);
    if (optind < argc)
        return s_usage_error("unexpected argument '%s'", argv[optind]);
    if (has_delay && has_at)
        return s_usage_error("give --delay or --at, not both");
    if (o->file && o->payload)
        return s_usage_error("--payload is for one job; with --file each "
                             "line has its own \"payload\"");
    if (o->file && o->defaults.key)
        return s_usage_error("--key is for one job; with --file give each "
                             "line its own \"key\"");
    if (!o->file && !o->defaults.type)
        return s_usage_error("--type is required (or --file)");
    if (o->out && !o->wait)
        return s_usage_error("--out needs --wait");
    if (o->wait_timeout_ms >= 0 && !o->wait)
        return s_usage_error("--wait-timeout needs --wait");
    return -1;
}

/* ---- input ------------------------------------------------------------- */

static char *
s_read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (!buf || ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static int
s_input_add(s_input_t *in, const drover_job_t *job, unsigned line)
{
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 1024;
        drover_job_t *jobs = realloc(in->jobs, cap * sizeof *jobs);
        if (!jobs)
            return -1;
        in->jobs = jobs;
        unsigned *lines = realloc(in->lines, cap * sizeof *lines);
        if (!lines)
            return -1;
        in->lines = lines;
        in->cap = cap;
    }
    in->jobs[in->n] = *job;
    in->lines[in->n] = line;
    in->n++;
    return 0;
}

/* Reads and checks every line. Returns -1 when all are good, else an exit
 * code (bad lines are reported). */
static int
s_read_jobs(const s_opts_t *o, jobline_arena_t *arena, s_input_t *in)
{
    FILE *f = stdin;
    const char *name = "stdin";
    if (strcmp(o->file, "-") != 0) {
        f = fopen(o->file, "rb");
        name = o->file;
        if (!f) {
            s_err("cannot open %s: %s", o->file, strerror(errno));
            return S_EXIT_USAGE;
        }
    }
    size_t len = 0;
    char *text = s_read_all(f, &len);
    int err = errno;
    if (f != stdin)
        fclose(f);
    if (!text) {
        s_err("cannot read %s: %s", name, strerror(err));
        return S_EXIT_USAGE;
    }
    size_t bad = 0, pos = 0;
    unsigned line = 0;
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
        pos = 3; /* a UTF-8 byte order mark, as some editors write */
    while (pos < len) {
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - start) : len - pos;
        pos += n + 1;
        line++;
        drover_job_t job;
        char why[256];
        int rc =
            jobline_parse(start, n, &o->defaults, arena, &job, why, sizeof why);
        if (rc == JOBLINE_SKIP)
            continue;
        if (rc == JOBLINE_NOMEM ||
            (rc == JOBLINE_JOB && s_input_add(in, &job, line) != 0)) {
            free(text);
            s_err("out of memory at line %u", line);
            return S_EXIT_REJECTED;
        }
        if (rc == JOBLINE_BAD) {
            if (bad < S_REPORT_MAX)
                s_err("line %u: %s", line, why);
            bad++;
        }
    }
    free(text);
    if (bad) {
        if (bad > S_REPORT_MAX)
            s_err("... and %zu more bad lines", bad - S_REPORT_MAX);
        s_err("%zu bad line%s in %s; nothing was submitted", bad,
              bad == 1 ? "" : "s", name);
        return S_EXIT_REJECTED;
    }
    return -1;
}

/* The one job the flags describe. Returns -1 to go on, or an exit code. */
static int
s_flag_job(const s_opts_t *o, jobline_arena_t *arena, s_input_t *in)
{
    drover_job_t job = o->defaults;
    if (o->payload) {
        json_error_t err;
        json_t *j = json_loads(o->payload, JSON_DECODE_ANY, &err);
        if (!j)
            return s_usage_error("--payload is not valid JSON: %s (column "
                                 "%d)",
                                 err.text, err.column);
        size_t len = 0;
        char *mp = dv_json_to_msgpack(j, &len);
        json_decref(j);
        if (!mp)
            return s_usage_error("--payload is nested too deep");
        char *copy = jobline_arena_alloc(arena, len ? len : 1);
        if (copy)
            memcpy(copy, mp, len);
        free(mp);
        if (!copy)
            return S_EXIT_REJECTED;
        job.payload_msgpack = copy;
        job.payload_len = len;
    }
    if (s_input_add(in, &job, 0) != 0)
        return S_EXIT_REJECTED;
    return -1;
}

/* ---- waiting ----------------------------------------------------------- */

static void
s_fmt_duration(char *buf, size_t size, double s)
{
    long t = s < 0 || !isfinite(s) ? 0 : (long)(s + 0.5);
    snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

static void
s_draw_bar(s_wait_t *w, bool final)
{
    double elapsed = (double)(dv_mono_us() - w->start_us) / 1e6;
    double rate = elapsed > 0 ? (double)w->done / elapsed : 0;
    double frac = w->total ? (double)w->done / (double)w->total : 1;
    int filled = (int)(frac * S_BAR_WIDTH);
    char bar[S_BAR_WIDTH + 1];
    for (int i = 0; i < S_BAR_WIDTH; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[S_BAR_WIDTH] = '\0';
    char eta[32] = "?";
    if (rate > 0)
        s_fmt_duration(eta, sizeof eta, (double)(w->total - w->done) / rate);
    char extra[96] = "";
    size_t used = 0;
    if (w->dead)
        used += (size_t)snprintf(extra + used, sizeof extra - used,
                                 "  dead %zu", w->dead);
    if (w->cancelled && used < sizeof extra)
        used += (size_t)snprintf(extra + used, sizeof extra - used,
                                 "  cancelled %zu", w->cancelled);
    if (w->unknown && used < sizeof extra)
        snprintf(extra + used, sizeof extra - used, "  unknown %zu",
                 w->unknown);
    fprintf(stderr,
            "\r[%s] %zu/%zu %3d%%  succeeded %zu%s  %.0f jobs/s  "
            "ETA %s\033[K",
            bar, w->done, w->total, (int)(frac * 100), w->succeeded, extra,
            rate, eta);
    if (final)
        fputs("\r\033[K", stderr);
    fflush(stderr);
    w->last_draw_us = dv_mono_us();
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

static int
s_on_result(const drover_result_t *r, void *arg)
{
    s_wait_t *w = arg;
    bool ok = !strcmp(r->state, "succeeded");
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
    int64_t now = dv_mono_us();
    if (!r->more) {
        if (fflush(w->out) != 0)
            w->write_error = true;
        if (w->bar && now - w->last_draw_us >= 100000)
            s_draw_bar(w, false);
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
    double secs = (double)(dv_mono_us() - started_us) / 1e6;
    fprintf(stderr,
            "%zu job%s in %.1f s (%.0f jobs/s): %zu succeeded, %zu dead, "
            "%zu cancelled",
            w->total, w->total == 1 ? "" : "s", secs,
            secs > 0 ? (double)w->done / secs : 0.0, w->succeeded, w->dead,
            w->cancelled);
    if (w->unknown)
        fprintf(stderr, ", %zu unknown", w->unknown);
    if (w->done < w->total)
        fprintf(stderr, ", %zu unfinished", w->total - w->done);
    fprintf(stderr, "; %lld retr%s\n", w->retries,
            w->retries == 1 ? "y" : "ies");
    if (w->ncats == 0)
        return;
    qsort(w->cats, w->ncats, sizeof w->cats[0], s_cat_cmp);
    fputs("failures by category:\n", stderr);
    for (size_t i = 0; i < w->ncats && i < 5; i++)
        fprintf(stderr, "  %-18s %6zu  e.g. %s\n", w->cats[i].name,
                w->cats[i].count, w->cats[i].example);
}

/* Waits for the accepted jobs. Returns the exit code so far (0 or 1). */
static int
s_wait_all(const s_opts_t *o, s_input_t *in, drover_client_t *client,
           int64_t started_us)
{
    size_t n = 0;
    for (size_t i = 0; i < in->n; i++)
        n += in->ids[i][0] != '\0';
    const char **ids = malloc((n ? n : 1) * sizeof *ids);
    s_wait_t w = { .opts = o, .in = in };
    w.job_of = malloc((n ? n : 1) * sizeof *w.job_of);
    w.next_same = malloc((n ? n : 1) * sizeof *w.next_same);
    size_t *tail = malloc((n ? n : 1) * sizeof *tail);
    dv_map_t *map = dv_map_new(NULL); /* id -> &ids[its first place] */
    int rc = S_EXIT_OK;
    if (!ids || !w.job_of || !w.next_same || !tail || !map) {
        s_err("out of memory");
        rc = S_EXIT_FAILED;
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < in->n; i++) {
        if (!in->ids[i][0])
            continue;
        ids[k] = in->ids[i];
        w.job_of[k] = i;
        w.next_same[k] = SIZE_MAX;
        const char **seen = dv_map_getn(map, ids[k], DROVER_ID_LEN);
        size_t first = seen ? (size_t)(seen - ids) : k;
        if (!seen && dv_map_putn(map, ids[k], DROVER_ID_LEN, &ids[k])) {
            s_err("out of memory");
            rc = S_EXIT_FAILED;
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
    w.out = stdout;
    if (o->out) {
        w.out = fopen(o->out, "w");
        if (!w.out) {
            s_err("cannot write %s: %s", o->out, strerror(errno));
            rc = S_EXIT_FAILED;
            goto done;
        }
    }
    w.bar = o->progress == 1 || (o->progress == -1 && isatty(2));
    w.start_us = dv_mono_us();
    if (w.bar)
        s_draw_bar(&w, false);
    int wrc = drover_wait(client, ids, n, o->wait_timeout_ms, s_on_result, &w);
    if (w.bar)
        s_draw_bar(&w, true);
    if (fflush(w.out) != 0 || ferror(w.out))
        w.write_error = true;
    if (w.out != stdout && fclose(w.out) != 0)
        w.write_error = true;
    if (!o->quiet)
        s_summary(&w, started_us);
    if (wrc == DROVER_ETIMEOUT)
        s_err("%zu job%s still unfinished after the wait timeout", n - w.done,
              n - w.done == 1 ? "" : "s");
    else if (wrc != DROVER_OK)
        s_err("waiting failed: %s", drover_last_error(client));
    if (w.write_error)
        s_err("writing results failed: %s", strerror(errno));
    if (wrc != DROVER_OK || w.write_error || w.succeeded < w.total)
        rc = S_EXIT_FAILED;
done:
    free(ids);
    free(w.job_of);
    free(w.next_same);
    free(tail);
    dv_map_destroy(&map);
    return rc;
}

/* ---- submitting -------------------------------------------------------- */

/* CPU time this process has used (user + system), in ms. */
static int64_t
s_cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/* Shows "line 5" for file input, "the job" for a flag job. */
static const char *
s_where(const s_input_t *in, size_t i, char *buf, size_t size)
{
    if (in->lines[i] == 0)
        return "job";
    snprintf(buf, size, "line %u", in->lines[i]);
    return buf;
}

/* Submits every job. Returns the exit code so far: 0, 3 (no answer for some
 * jobs: they are reported), 4 (some refused: reported). */
static int
s_submit_all(const s_opts_t *o, s_input_t *in, drover_client_t *client,
             size_t *accepted_out)
{
    in->ids = calloc(in->n ? in->n : 1, sizeof *in->ids);
    drover_ack_t *acks = malloc(S_SLICE * sizeof *acks);
    if (!in->ids || !acks) {
        free(acks);
        s_err("out of memory");
        return S_EXIT_REJECTED;
    }
    size_t accepted = 0, refused = 0, unanswered = 0, duplicates = 0;
    size_t first_unanswered = 0;
    int lib_rc = DROVER_OK;
    char where[32];
    for (size_t base = 0; base < in->n; base += S_SLICE) {
        size_t m = in->n - base < S_SLICE ? in->n - base : S_SLICE;
        if (lib_rc == DROVER_EUNREACHABLE || lib_rc == DROVER_ETIMEOUT ||
            lib_rc == DROVER_EREJECTED || lib_rc == DROVER_ENOMEM) {
            /* Do not send more to a broker that stopped answering. */
            unanswered += m;
            continue;
        }
        int rc = drover_submit_many(client, in->jobs + base, m, acks);
        if (rc != DROVER_OK)
            lib_rc = rc;
        for (size_t k = 0; k < m; k++) {
            size_t i = base + k;
            if (!acks[k].error[0]) {
                memcpy(in->ids[i], acks[k].id, DROVER_ID_SIZE);
                accepted++;
                duplicates += acks[k].duplicate != 0;
            } else if (acks[k].unanswered) {
                if (!unanswered)
                    first_unanswered = i;
                unanswered++;
            } else {
                if (refused < S_REPORT_MAX) {
                    if (in->lines[i])
                        s_err("%s: refused: %s",
                              s_where(in, i, where, sizeof where),
                              acks[k].error);
                    else
                        s_err("refused: %s", acks[k].error);
                }
                refused++;
            }
        }
    }
    free(acks);
    *accepted_out = accepted;

    /* The ids of accepted jobs, whatever else happened: the caller needs
     * them to know what exists. With --wait the results say it instead. */
    if (!o->wait || unanswered) {
        for (size_t i = 0; i < in->n; i++)
            if (in->ids[i][0]) {
                fputs(in->ids[i], stdout);
                fputc('\n', stdout);
            }
        fflush(stdout);
    }
    if (refused > S_REPORT_MAX)
        s_err("... and %zu more refused", refused - S_REPORT_MAX);
    if (unanswered) {
        if (accepted == 0 && refused == 0)
            s_err("cannot reach the broker: %s", drover_last_error(client));
        else
            s_err("%zu of %zu jobs accepted; no answer from the broker for "
                  "%zu, from %s on (%s); those may or may not have been "
                  "stored",
                  accepted, in->n, unanswered,
                  s_where(in, first_unanswered, where, sizeof where),
                  drover_last_error(client));
        return S_EXIT_UNREACHABLE;
    }
    if (lib_rc != DROVER_OK && lib_rc != DROVER_EPROTO) {
        s_err("%s", drover_last_error(client));
        return S_EXIT_UNREACHABLE;
    }
    if (refused) {
        s_err("%zu of %zu job%s accepted, %zu refused", accepted, in->n,
              in->n == 1 ? "" : "s", refused);
        return S_EXIT_REJECTED;
    }
    if (!o->quiet && !o->wait) {
        if (duplicates)
            fprintf(stderr, "submitted %zu job%s (%zu already known by key)\n",
                    accepted, accepted == 1 ? "" : "s", duplicates);
        else
            fprintf(stderr, "submitted %zu job%s\n", accepted,
                    accepted == 1 ? "" : "s");
    }
    return S_EXIT_OK;
}

int
submit_main(int argc, char **argv)
{
    s_opts_t o;
    int rc = s_parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    int64_t started_us = dv_mono_us();
    jobline_arena_t *arena = jobline_arena_new();
    s_input_t in;
    memset(&in, 0, sizeof in);
    drover_client_t *client = NULL;
    if (!arena) {
        s_err("out of memory");
        return S_EXIT_REJECTED;
    }
    rc = o.file ? s_read_jobs(&o, arena, &in) : s_flag_job(&o, arena, &in);
    if (rc >= 0)
        goto done;
    if (in.n == 0) {
        if (!o.quiet)
            s_err("no jobs in %s", strcmp(o.file, "-") ? o.file : "stdin");
        rc = S_EXIT_OK;
        goto done;
    }
    client = drover_connect(o.broker, o.connect_timeout_ms);
    if (!client) {
        rc = s_usage_error("%s", drover_last_error(NULL));
        goto done;
    }
    size_t accepted = 0;
    int64_t parsed_us = dv_mono_us(), parsed_cpu = s_cpu_ms();
    rc = s_submit_all(&o, &in, client, &accepted);
    dv_log(DV_DEBUG, "submit.timing", DV_INT("jobs", in.n),
           DV_INT("accepted", accepted),
           DV_INT("parse_ms", (parsed_us - started_us) / 1000),
           DV_INT("parse_cpu_ms", parsed_cpu),
           DV_INT("submit_ms", (dv_mono_us() - parsed_us) / 1000),
           DV_INT("submit_cpu_ms", s_cpu_ms() - parsed_cpu));
    if (rc == S_EXIT_UNREACHABLE || !o.wait || accepted == 0)
        goto done;
    int wrc = s_wait_all(&o, &in, client, started_us);
    if (rc == S_EXIT_OK)
        rc = wrc;
done:
    drover_close(&client);
    free(in.jobs);
    free(in.lines);
    free(in.ids);
    jobline_arena_destroy(&arena);
    return rc;
}
