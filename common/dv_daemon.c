/* dv_daemon - flags, logging and signals for the daemons; see dv_daemon.h. */
#include "dv_daemon.h"

#include <signal.h>
#include <stdarg.h>
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

static int
s_log_level(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    int lvl = dv_log_level_parse(v);
    if (lvl < 0)
        return dv_err_set(err, es,
                          "--%s: '%s' is not debug, info, warn, error or off",
                          f->name, v);
    *(int *)f->ctx = lvl;
    return 0;
}

static const char *const s_formats[] = { "json", "text", NULL };

void
dv_daemon_log_flags(dv_flag_t out[3], int *level, int *text)
{
    const dv_flag_t flags[3] = {
        DV_FLAG_CALL("log-level", s_log_level, level),
        DV_FLAG_ONE_OF("log-format", text, s_formats),
        DV_FLAG_TABLE_END,
    };
    memcpy(out, flags, sizeof flags);
}

int
dv_daemon_parse(dv_daemon_t *d, int argc, char **argv)
{
    d->log_level = DV_INFO;
    d->log_text = 0;
    dv_flag_t common[3];
    dv_daemon_log_flags(common, &d->log_level, &d->log_text);
    const dv_flag_t *tables[] = { d->flags, common };
    char err[512];
    dv_flags_rc_t rc =
        dv_flags_parse(tables, 2, argc, argv, false, NULL, err, sizeof err);
    if (rc == DV_FLAGS_HELP) {
        d->usage(stdout);
        return 0;
    }
    if (rc == DV_FLAGS_ERROR)
        return dv_daemon_fail(d, "%s", err);
    return -1;
}

int
dv_daemon_fail(const dv_daemon_t *d, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "drover %s: %s (see drover %s --help)\n", d->name, msg,
            d->name);
    return 2;
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
