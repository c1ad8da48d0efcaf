/* dv_daemon - flags, logging and signals for the daemons; see dv_daemon.h. */
#include "dv_daemon.h"

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>

#include "dv_err.h"
#include "dv_log.h"

static volatile int *s_stop_flag;
static volatile int *s_dump_flag;
static volatile int *s_reload_flag;

static void
s_on_signal(int sig)
{
    if (sig == SIGUSR1) {
        if (s_dump_flag)
            *s_dump_flag = 1;
    } else if (sig == SIGHUP) {
        if (s_reload_flag)
            *s_reload_flag = 1;
    } else if (s_stop_flag) {
        *s_stop_flag = 1;
    }
}

static const char *const s_levels[] = {
    "debug", "info", "warn", "error", "off", NULL
}; /* dv_level_t */
static const char *const s_formats[] = { "json", "text", NULL };

/* Where the static table points; dv_daemon_parse() parses a copy that
 * points into the dv_daemon_t. */
static struct {
    int level, text;
} s_log;

const dv_flag_t dv_daemon_flags[] = {
    DV_FLAG_ONE_OF("log-level", &s_log.level, s_levels, .arg = "LEVEL",
                   .dflt = "info",
                   .help = "log messages of this level and above: debug, "
                           "info, warn, error or off (none); the log goes to "
                           "stderr"),
    DV_FLAG_ONE_OF("log-format", &s_log.text, s_formats, .arg = "FORMAT",
                   .dflt = "json",
                   .help = "json: one JSON object a line (for the journal "
                           "and log shippers); text: lines for people"),
    DV_FLAG_TABLE_END,
};

const char dv_daemon_exits[] =
    "exit status: 0 after a clean stop; 1 when it cannot start or fails; "
    "2 on a usage error.";

/* Documents -h (the parser answers it before any table), as cli_cmd
 * does. */
static bool s_help;
static const dv_flag_t s_help_flags[] = {
    DV_FLAG_ON("help", &s_help, .alias = 'h', .help = "show this help"),
    DV_FLAG_TABLE_END,
};

void
dv_daemon_log_flags(dv_flag_t out[3], int *level, int *text)
{
    memcpy(out, dv_daemon_flags, 3 * sizeof *out);
    out[0].dest = level;
    out[1].dest = text;
}

/* Sets the FN flags of table that have a default to it, through their fn
 * (dv_flags_reset leaves them alone). */
static int
s_reset_fn(const dv_flag_t *table, char *err, size_t es)
{
    for (const dv_flag_t *f = table; f && f->kind != DV_FLAG_END; f++) {
        if (f->kind != DV_FLAG_FN)
            continue;
        const char *env = f->env ? getenv(f->env) : NULL;
        const char *v = env && *env ? env : f->dflt;
        if (v && f->fn(f, v, err, es) != 0)
            return -1;
    }
    return 0;
}

int
dv_daemon_parse(dv_daemon_t *d, int argc, char **argv)
{
    dv_flag_t common[3];
    dv_daemon_log_flags(common, &d->log_level, &d->log_text);
    const dv_flag_t *tables[] = { d->flags, common };
    char err[512];
    if (dv_flags_reset(tables, 2, err, sizeof err) != 0 ||
        s_reset_fn(d->flags, err, sizeof err) != 0)
        return dv_daemon_usage(d, NULL, "%s", err);
    const dv_flag_t *bad;
    dv_flags_rc_t rc = dv_flags_parse_ex(tables, 2, argc, argv, false, NULL,
                                         &bad, err, sizeof err);
    if (rc == DV_FLAGS_HELP) {
        dv_daemon_help(d, stdout);
        return 0;
    }
    if (rc == DV_FLAGS_ERROR) {
        /* the table's own entry for a log flag: same help, real name */
        if (bad == &common[0] || bad == &common[1])
            bad = &dv_daemon_flags[bad - common];
        return dv_daemon_usage(d, bad, "%s", err);
    }
    return -1;
}

/* Paragraphs split by "\n\n", each wrapped, a blank line before each. */
static void
s_paragraphs(const char *p, FILE *out, bool first_blank)
{
    bool blank = first_blank;
    while (p && *p) {
        const char *e = strstr(p, "\n\n");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char para[4096];
        snprintf(para, sizeof para, "%.*s", (int)n, p);
        if (blank)
            fputc('\n', out);
        dv_flags_wrap(out, para, 0, 0, DV_FLAGS_WIDTH);
        blank = true;
        p = e ? e + 2 : NULL;
    }
}

static void
s_usage_line(const dv_daemon_t *d, FILE *out)
{
    fprintf(out, "usage: drover %s [OPTIONS]\n", d->name);
}

void
dv_daemon_help(const dv_daemon_t *d, FILE *out)
{
    s_usage_line(d, out);
    s_paragraphs(d->about, out, true);
    fprintf(out, "\noptions:\n");
    const dv_flag_t *tables[] = { d->flags, dv_daemon_flags, s_help_flags };
    dv_flags_help(tables, 3, out);
    s_paragraphs(d->notes, out, true);
    s_paragraphs(d->exits ? d->exits : dv_daemon_exits, out, true);
}

int
dv_daemon_usage(const dv_daemon_t *d, const dv_flag_t *flag, const char *fmt,
                ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const dv_flag_t *tables[] = { d->flags, dv_daemon_flags };
    const dv_flag_t *near = flag ? NULL : dv_flags_suggest(tables, 2, msg);
    if (near) {
        flag = near;
        fprintf(stderr, "drover %s: %s; did you mean --%s?\n", d->name, msg,
                near->name);
    } else {
        fprintf(stderr, "drover %s: %s\n", d->name, msg);
    }
    s_usage_line(d, stderr);
    if (flag)
        dv_flag_help(flag, stderr, DV_FLAGS_WIDTH);
    fprintf(stderr, "(drover %s --help: every option)\n", d->name);
    return 2;
}

int
dv_daemon_fail(const dv_daemon_t *d, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The flag the reason starts with: "--http-cert and --http-key ..." */
    const dv_flag_t *flag = NULL;
    if (!strncmp(msg, "--", 2)) {
        const dv_flag_t *tables[] = { d->flags, dv_daemon_flags };
        flag = dv_flags_find(tables, 2, msg + 2, strcspn(msg + 2, " :=,"));
    }
    return dv_daemon_usage(d, flag, "%s", msg);
}

void
dv_daemon_start(const dv_daemon_t *d, volatile int *stop, volatile int *dump)
{
    dv_log_init(d->name, (dv_level_t)d->log_level, d->log_text);
    s_stop_flag = stop;
    s_dump_flag = dump;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void
dv_daemon_on_reload(volatile int *reload)
{
    s_reload_flag = reload;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGHUP, &sa, NULL);
}

int
dv_daemon_start_signalfd(const dv_daemon_t *d)
{
    dv_log_init(d->name, (dv_level_t)d->log_level, d->log_text);
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}
