/* `drover up`: a broker, a collector and N workers in one process tree, for
 * development and demos. Each part is this same executable started with its
 * subcommand, so what runs here is exactly what runs in production. It
 * waits for each part to answer before it says the tree is up, restarts a
 * part that dies, and with `-- CMD ...` runs CMD once everything is up
 * (with DROVER_BROKER set), then stops the tree and exits with CMD's
 * status. An entry of the command table (cli_cmd.h). */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "cli_cmd.h"
#include "cli_out.h"
#include "drover.h"
#include "dv_clock.h"
#include "dv_curve.h"
#include "dv_err.h"
#include "dv_flags.h"
#include "monitor.h"

#define UP_MAX_WORKERS 64
#define UP_MAX_ARGS    64
#define UP_READY_MS    15000 /* for the broker and collector to answer */
#define UP_BACKOFF_MS  500   /* first restart delay, doubling */
#define UP_BACKOFF_MAX 30000
#define UP_STABLE_MS   60000 /* a part that ran this long starts over */
#define UP_TAIL_LINES  5     /* log lines shown when a part fails */

static volatile sig_atomic_t s_signalled;

static void
s_on_signal(int sig)
{
    s_signalled = sig;
}

/* ---- flags --------------------------------------------------------------- */

static struct {
    const char *dir, *store, *queues, *sync;
    int port, workers, concurrency;
    bool quiet, no_collector, keep;
    const char *execs[UP_MAX_ARGS], *bargs[UP_MAX_ARGS], *wargs[UP_MAX_ARGS];
    int nexec, nbargs, nwargs;
} s_o;

/* A repeatable flag's values (--exec, --broker-arg, --worker-arg). */
typedef struct {
    const char **items;
    int *n;
} s_list_t;

static s_list_t s_el = { s_o.execs, &s_o.nexec },
                s_bl = { s_o.bargs, &s_o.nbargs },
                s_wl = { s_o.wargs, &s_o.nwargs };

static int
s_list_add(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    s_list_t *l = f->ctx;
    if (*l->n >= UP_MAX_ARGS)
        return dv_err_set(err, es, "--%s: at most %d times", f->name,
                          UP_MAX_ARGS);
    l->items[(*l->n)++] = v;
    return 0;
}

static const dv_flag_t s_flags[] = {
    DV_FLAG_STR("dir", &s_o.dir, .arg = "DIR", .complete = DV_COMPLETE_DIR,
                .help = "working directory for the stores and logs, kept at "
                        "exit (else a new /tmp/drover-up-XXXXXX, removed at "
                        "a clean exit)"),
    DV_FLAG_ON("keep", &s_o.keep,
               .help = "keep the directory up made at exit (its logs)"),
    DV_FLAG_STR("store", &s_o.store, .arg = "URL",
                .help = "the broker's store (else DIR/drover.db); a "
                        "postgres:// URL keeps the collector's history there "
                        "too"),
    DV_FLAG_INTEGER("port", &s_o.port, 1, 65400, .arg = "N", .dflt = "7700",
                    .help = "the broker's clients port on 127.0.0.1; N+1 "
                            "workers, N+2 events, N+3 the collector, N+80 "
                            "/metrics"),
    DV_FLAG_INTEGER("workers", &s_o.workers, 0, UP_MAX_WORKERS, .arg = "N",
                    .dflt = "1", .help = "worker supervisors to start"),
    DV_FLAG_INTEGER("concurrency", &s_o.concurrency, 0, 4096, .arg = "N",
                    .dflt = "0",
                    .help = "child processes per worker (0: the number of "
                            "CPUs)"),
    DV_FLAG_STR("queues", &s_o.queues, .arg = "Q1,Q2", .dflt = "default",
                .help = "the queues the workers serve"),
    DV_FLAG_CALL("exec", s_list_add, &s_el, .arg = "TYPE=CMD",
                 .help = "an exec handler for the workers (repeatable)"),
    DV_FLAG_STR("sync", &s_o.sync, .arg = "MODE", .dflt = "full",
                .help = "the broker store's sync: full, normal or off"),
    DV_FLAG_CALL("broker-arg", s_list_add, &s_bl, .arg = "ARG",
                 .help = "an extra argument for the broker (repeatable)"),
    DV_FLAG_CALL("worker-arg", s_list_add, &s_wl, .arg = "ARG",
                 .help = "an extra argument for each worker (repeatable)"),
    DV_FLAG_ON("no-collector", &s_o.no_collector, .help = "start no collector"),
    DV_FLAG_ON("quiet", &s_o.quiet,
               .help = "print no banner and no export line"),
    DV_FLAG_TABLE_END,
};

/* ---- the parts ----------------------------------------------------------- */

/* One part of the tree: how to start it and how it is doing. */
typedef struct {
    char what[32]; /* "broker", "collector", "worker 2" */
    char *argv[2 * UP_MAX_ARGS + 24];
    char log[PATH_MAX + 32];
    pid_t pid;          /* -1: not running */
    bool restart;       /* restart it when it exits */
    int64_t started_ms; /* when it was last started */
    int64_t restart_at; /* when to start it again; 0: not due */
    int64_t backoff_ms; /* the next restart's delay */
} s_part_t;

static pid_t
s_spawn(s_part_t *p)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        FILE *f = freopen(p->log, "a", stderr);
        (void)f;
        signal(SIGINT, SIG_IGN); /* the tree stops in order, on our signal */
        execv("/proc/self/exe", p->argv);
        fprintf(stderr, "drover up: cannot exec: %s\n", strerror(errno));
        _exit(127);
    }
    p->pid = pid;
    p->started_ms = dv_mono_ms();
    p->restart_at = 0;
    return pid;
}

/* "exit status 1" or "killed by signal 9". */
static const char *
s_how(int status, char *buf, size_t size)
{
    if (WIFEXITED(status))
        snprintf(buf, size, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, size, "status %d", status);
    return buf;
}

static void
s_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Waits for pid to exit within timeout_ms, then SIGKILLs it. */
static int
s_reap(pid_t pid, int64_t timeout_ms)
{
    int64_t deadline = dv_mono_ms() + timeout_ms;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -1;
        if (dv_mono_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return status;
        }
        s_sleep_ms(20);
    }
}

/* Asks glibc's allocator for transparent huge pages in every part up
 * starts (and CMD): the tunable glibc.malloc.hugetlb=1 (glibc 2.35 and
 * later; an older one ignores it) makes malloc madvise(MADV_HUGEPAGE) what
 * it takes from the kernel. Under load the broker, collector and workers
 * grow their heaps by tens of megabytes, and faulting that in 4 KiB at a
 * time cost the `drover up` path about a tenth of its CPU
 * (bench/README.md). A GLIBC_TUNABLES that already names it is left as it
 * is. */
static void
s_huge_pages(void)
{
    const char *t = getenv("GLIBC_TUNABLES");
    if (t && strstr(t, "glibc.malloc.hugetlb"))
        return;
    char v[1024];
    int n = snprintf(v, sizeof v, "%s%sglibc.malloc.hugetlb=1", t ? t : "",
                     t && *t ? ":" : "");
    if (n > 0 && (size_t)n < sizeof v)
        setenv("GLIBC_TUNABLES", v, 1);
}

/* How many workers the broker at endpoint has joined, or -1 when it does
 * not answer `status`. */
static int
s_broker_workers(const char *endpoint)
{
    drover_client_t *c = drover_connect(endpoint, 500);
    if (!c)
        return -1;
    char *body = NULL;
    int rc = drover_ctrl(c, "status", NULL, NULL, &body);
    drover_close(&c);
    json_t *st = rc == DROVER_OK && body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    int n = st ? (int)json_array_size(json_object_get(st, "workers")) : -1;
    json_decref(st);
    return n;
}

/* The broker answers `status`. */
static bool
s_broker_answers(const char *endpoint)
{
    return s_broker_workers(endpoint) >= 0;
}

/* Waits until the broker has all n workers joined: "up" means jobs
 * submitted now start at once. Returns 0, 1 when one exited first (its
 * index in *which, its status in *status), -1 when the time passed (how
 * many had joined in *which), -2 signalled. */
static int
s_wait_workers(s_part_t *workers, int n, const char *endpoint, int *which,
               int *status)
{
    int64_t deadline = dv_mono_ms() + UP_READY_MS;
    for (;;) {
        for (int w = 0; w < n; w++)
            if (workers[w].pid > 0 &&
                waitpid(workers[w].pid, status, WNOHANG) == workers[w].pid) {
                workers[w].pid = -1;
                *which = w;
                return 1;
            }
        if (s_signalled)
            return -2;
        int joined = s_broker_workers(endpoint);
        if (joined >= n)
            return 0;
        if (dv_mono_ms() > deadline) {
            *which = joined > 0 ? joined : 0;
            return -1;
        }
        s_sleep_ms(20);
    }
}

/* The collector answers `status`. */
static bool
s_collector_answers(const char *endpoint)
{
    json_t *body = NULL;
    int rc =
        monitor_query(endpoint, "up", "status", NULL, NULL, 500, &body, true);
    json_decref(body);
    return rc == 0;
}

/* Waits until p answers (ask) or exits, or the deadline passes. Returns 0
 * ready, 1 exited (*status), -1 no answer in time, -2 signalled. */
static int
s_wait_ready(s_part_t *p, bool (*ask)(const char *), const char *endpoint,
             int *status)
{
    int64_t deadline = dv_mono_ms() + UP_READY_MS;
    for (;;) {
        if (waitpid(p->pid, status, WNOHANG) == p->pid) {
            p->pid = -1;
            return 1;
        }
        if (s_signalled)
            return -2;
        if (ask(endpoint))
            return 0;
        if (dv_mono_ms() > deadline)
            return -1;
        s_sleep_ms(50);
    }
}

/* The last lines of p's log that say an error (else its last lines), into
 * lines[0..*n); and the reason of the last error, said for people: "cannot
 * bind tcp://...: Address already in use". */
static void
s_log_tail(const s_part_t *p, char lines[UP_TAIL_LINES][512], int *n, char *why,
           size_t why_size)
{
    *n = 0;
    why[0] = '\0';
    FILE *f = fopen(p->log, "r");
    if (!f)
        return;
    char line[4096], last[UP_TAIL_LINES][512], err[UP_TAIL_LINES][512];
    int nlast = 0, nerr = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!*line)
            continue;
        bool bad = strstr(line, "\"level\":\"error\"") ||
                   strstr(line, "\"level\":\"fatal\"") ||
                   !strncmp(line, "drover", 6);
        char(*into)[512] = bad ? err : last;
        int *k = bad ? &nerr : &nlast;
        if (*k == UP_TAIL_LINES) {
            memmove(into, into + 1, (UP_TAIL_LINES - 1) * sizeof *into);
            *k = UP_TAIL_LINES - 1;
        }
        snprintf(into[(*k)++], sizeof *into, "%.500s", line);
        if (!bad)
            continue;
        json_t *j = json_loads(line, 0, NULL);
        const char *msg = json_string_value(json_object_get(j, "msg"));
        const char *e = json_string_value(json_object_get(j, "error"));
        const char *ep = json_string_value(json_object_get(j, "endpoint"));
        if (msg && strstr(msg, "bind_failed") && ep)
            snprintf(why, why_size, "cannot bind %s: %s", ep, e ? e : "?");
        else if (msg)
            snprintf(why, why_size, "%s%s%s", msg, e ? ": " : "", e ? e : "");
        else
            snprintf(why, why_size, "%.400s", line);
        json_decref(j);
    }
    fclose(f);
    char(*src)[512] = nerr ? err : last;
    *n = nerr ? nerr : nlast;
    for (int i = 0; i < *n; i++)
        memcpy(lines[i], src[i], sizeof lines[i]);
}

/* Says why p did not come up: the cause from its log, then the log's last
 * error lines (text only). Returns CLI_FAILED. */
static int
s_not_up(const cli_t *c, s_part_t *p, int rc, int status)
{
    char lines[UP_TAIL_LINES][512], why[600], how[64];
    int n;
    s_log_tail(p, lines, &n, why, sizeof why);
    if (rc == 1 && why[0])
        cli_fail(c, CLI_FAILED, "not_started", "the %s %s (it exited, %s)",
                 p->what, why, s_how(status, how, sizeof how));
    else if (rc == 1)
        cli_fail(c, CLI_FAILED, "not_started",
                 "the %s exited before it answered (%s); see %s", p->what,
                 s_how(status, how, sizeof how), p->log);
    else
        cli_fail(c, CLI_FAILED, "not_started",
                 "the %s was not ready within %d s; see %s", p->what,
                 UP_READY_MS / 1000, p->log);
    if (!c->json && n) {
        fprintf(stderr, "drover up: the last lines of %s:\n", p->log);
        for (int i = 0; i < n; i++)
            fprintf(stderr, "  %s\n", lines[i]);
    }
    return CLI_FAILED;
}

/* An exited part: restarted after its backoff, unless it should not be. */
static void
s_exited(s_part_t *p, int status, bool worker)
{
    char how[64];
    int64_t now = dv_mono_ms();
    p->pid = -1;
    if (worker && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        fprintf(stderr,
                "drover up: %s stopped (exit status 0, drained); not "
                "restarted\n",
                p->what);
        p->restart = false;
        return;
    }
    if (now - p->started_ms >= UP_STABLE_MS)
        p->backoff_ms = UP_BACKOFF_MS;
    p->restart_at = now + p->backoff_ms;
    fprintf(stderr, "drover up: %s exited (%s); restarting in %s; see %s\n",
            p->what, s_how(status, how, sizeof how), cli_dur(p->backoff_ms),
            p->log);
    p->backoff_ms =
        p->backoff_ms * 2 > UP_BACKOFF_MAX ? UP_BACKOFF_MAX : p->backoff_ms * 2;
}

static int
s_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- the command --------------------------------------------------------- */

static void
s_part_init(s_part_t *p, const char *what, const char *dir, const char *log)
{
    memset(p, 0, sizeof *p);
    snprintf(p->what, sizeof p->what, "%s", what);
    snprintf(p->log, sizeof p->log, "%s/%s", dir, log);
    p->pid = -1;
    p->restart = true;
    p->backoff_ms = UP_BACKOFF_MS;
}

static int
s_up(cli_t *c, int argc, char **argv)
{
    /* Everything here is plain ZeroMQ on loopback: the broker, workers,
     * collector and CMD must not pick up certificates meant for a real
     * broker from the environment. */
    unsetenv("DROVER_CURVE_SECRET");
    unsetenv("DROVER_CURVE_SERVER");
    unsetenv("DROVER_COLLECTOR_CURVE_SERVER");
    for (int r = DV_ROLE_CLIENT; r < DV_ROLE_COUNT_; r++)
        unsetenv(dv_role_env((dv_role_t)r));
    char **cmd = argc > 0 ? argv : NULL;
    int port = s_o.port, nworkers = s_o.workers;
    bool collector = !s_o.no_collector;

    char dirbuf[PATH_MAX];
    const char *dir = s_o.dir;
    bool made_dir = false;
    if (!dir) {
        snprintf(dirbuf, sizeof dirbuf, "/tmp/drover-up-XXXXXX");
        if (!mkdtemp(dirbuf))
            return cli_fail(c, CLI_FAILED, NULL, "cannot make a directory: %s",
                            strerror(errno));
        dir = dirbuf;
        made_dir = true;
    } else if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        return cli_fail(c, CLI_FAILED, NULL, "%s: %s", dir, strerror(errno));
    }
    char storebuf[PATH_MAX + 16], ep_c[64], ep_w[64], ep_e[64], ep_q[64],
        http[64], cstore[PATH_MAX + 32], conc[16];
    const char *store = s_o.store;
    if (!store) {
        snprintf(storebuf, sizeof storebuf, "%s/drover.db", dir);
        store = storebuf;
    }
    snprintf(ep_c, sizeof ep_c, "tcp://127.0.0.1:%d", port);
    snprintf(ep_w, sizeof ep_w, "tcp://127.0.0.1:%d", port + 1);
    snprintf(ep_e, sizeof ep_e, "tcp://127.0.0.1:%d", port + 2);
    snprintf(ep_q, sizeof ep_q, "tcp://127.0.0.1:%d", port + 3);
    snprintf(http, sizeof http, "127.0.0.1:%d", port + 80);
    snprintf(cstore, sizeof cstore, "%s/collector.db", dir);
    snprintf(conc, sizeof conc, "%d", s_o.concurrency);
    bool pg_store = strncasecmp(store, "postgres://", 11) == 0 ||
                    strncasecmp(store, "postgresql://", 13) == 0;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* The parts: broker, collector, workers. */
    static s_part_t parts[2 + UP_MAX_WORKERS];
    s_part_t *broker = &parts[0], *coll = &parts[1], *workers = &parts[2];
    s_part_init(broker, "broker", dir, "broker.log");
    int n = 0;
    char **a = broker->argv;
    a[n++] = "drover";
    a[n++] = "broker";
    a[n++] = "--clients";
    a[n++] = ep_c;
    a[n++] = "--workers";
    a[n++] = ep_w;
    a[n++] = "--events";
    a[n++] = ep_e;
    a[n++] = "--store";
    a[n++] = (char *)store;
    a[n++] = "--sync";
    a[n++] = (char *)s_o.sync;
    for (int i = 0; i < s_o.nbargs; i++)
        a[n++] = (char *)s_o.bargs[i];
    a[n] = NULL;

    /* collector: events and snapshots from the broker, history next to the
     * broker's store: a file in DIR, or the same PostgreSQL database (the
     * collector's tables are in a schema of their own there) */
    s_part_init(coll, "collector", dir, "collector.log");
    coll->restart = collector;
    char *cargv[] = { "drover", "collector", "--events",
                      ep_e,     "--broker",  ep_c,
                      "--bind", ep_q,        "--http",
                      http,     "--store",   pg_store ? (char *)store : cstore,
                      NULL };
    memcpy(coll->argv, cargv, sizeof cargv);

    static char names[UP_MAX_WORKERS][64];
    for (int w = 0; w < nworkers; w++) {
        char what[32], log[32];
        snprintf(what, sizeof what, "worker %d", w + 1);
        snprintf(log, sizeof log, "worker-%d.log", w + 1);
        s_part_init(&workers[w], what, dir, log);
        snprintf(names[w], sizeof names[w], "up-worker-%d-%d", (int)getpid(),
                 w + 1);
        n = 0;
        a = workers[w].argv;
        a[n++] = "drover";
        a[n++] = "worker";
        a[n++] = "--broker";
        a[n++] = ep_w;
        a[n++] = "--queues";
        a[n++] = (char *)s_o.queues;
        a[n++] = "--name";
        a[n++] = names[w];
        if (s_o.concurrency > 0) {
            a[n++] = "--concurrency";
            a[n++] = conc;
        }
        for (int i = 0; i < s_o.nexec; i++) {
            a[n++] = "--exec";
            a[n++] = (char *)s_o.execs[i];
        }
        for (int i = 0; i < s_o.nwargs; i++)
            a[n++] = (char *)s_o.wargs[i];
        a[n] = NULL;
    }
    int nparts = 2 + nworkers;

    /* Start them in order, each answering before the next starts. */
    int exit_code = CLI_OK, status = 0, rc;
    pid_t child = -1;
    s_huge_pages();
    if (s_spawn(broker) < 0) {
        exit_code = cli_fail(c, CLI_FAILED, NULL, "cannot start the broker: %s",
                             strerror(errno));
        goto stop;
    }
    rc = s_wait_ready(broker, s_broker_answers, ep_c, &status);
    if (rc == -2)
        goto stop;
    if (rc != 0) {
        exit_code = s_not_up(c, broker, rc, status);
        goto stop;
    }
    if (collector) {
        if (s_spawn(coll) < 0) {
            exit_code =
                cli_fail(c, CLI_FAILED, NULL, "cannot start the collector: %s",
                         strerror(errno));
            goto stop;
        }
        rc = s_wait_ready(coll, s_collector_answers, ep_q, &status);
        if (rc == -2)
            goto stop;
        if (rc != 0) {
            exit_code = s_not_up(c, coll, rc, status);
            goto stop;
        }
    }
    for (int w = 0; w < nworkers; w++)
        s_spawn(&workers[w]);
    int which = 0;
    rc = s_wait_workers(workers, nworkers, ep_c, &which, &status);
    if (rc == -2)
        goto stop;
    if (rc == 1) {
        exit_code = s_not_up(c, &workers[which], rc, status);
        goto stop;
    }
    if (rc != 0) {
        exit_code = cli_fail(c, CLI_FAILED, "not_started",
                             "%d of %d workers joined the broker within %d s; "
                             "their logs are in %s",
                             which, nworkers, UP_READY_MS / 1000, dir);
        goto stop;
    }

    if (c->json) {
        json_t *j = json_pack(
            "{s:s, s:s, s:s, s:o, s:o, s:s, s:o, s:i, s:i}", "broker", ep_c,
            "workers", ep_w, "events", ep_e, "collector",
            collector ? json_string(ep_q) : json_null(), "http",
            collector ? json_sprintf("http://%s/metrics", http) : json_null(),
            "dir", dir, "store", pg_store ? json_null() : json_string(store),
            "worker_count", nworkers, "pid", (int)getpid());
        cli_print_json(j);
        json_decref(j);
        fflush(stdout);
    } else if (!s_o.quiet) {
        fprintf(stderr,
                "drover up: broker %s (workers %s, events %s), %d worker%s, "
                "store %s, logs in %s%s\n",
                ep_c, ep_w, ep_e, nworkers, nworkers == 1 ? "" : "s",
                pg_store ? "PostgreSQL (--store)" : store, dir,
                made_dir && !s_o.keep ? " (removed at exit; --keep keeps it)"
                                      : "");
        if (collector)
            fprintf(stderr,
                    "drover up: collector %s, metrics http://%s/metrics\n",
                    ep_q, http);
        if (!cmd) {
            fprintf(stderr, "drover up: in another terminal:\n");
            fprintf(stderr, "  export DROVER_BROKER=%s", ep_c);
            if (collector)
                fprintf(stderr, " DROVER_COLLECTOR=%s", ep_q);
            fprintf(stderr, "\ndrover up: press Ctrl-C to stop\n");
        }
        fflush(stderr);
    }

    if (cmd) {
        setenv("DROVER_BROKER", ep_c, 1);
        setenv("DROVER_EVENTS", ep_e, 1);
        if (collector)
            setenv("DROVER_COLLECTOR", ep_q, 1);
        child = fork();
        if (child == 0) {
            signal(SIGINT, SIG_DFL);
            execvp(cmd[0], cmd);
            fprintf(stderr, "drover up: %s: %s\n", cmd[0], strerror(errno));
            _exit(127);
        }
    }

    /* Supervise until a signal or the command's end: a part that exits is
     * started again after its backoff. */
    while (!s_signalled) {
        pid_t r;
        bool cmd_done = false;
        while ((r = waitpid(-1, &status, WNOHANG)) > 0) {
            if (r == child) {
                exit_code = WIFEXITED(status) ? WEXITSTATUS(status)
                                              : 128 + WTERMSIG(status);
                child = -1;
                cmd_done = true;
                continue;
            }
            for (int i = 0; i < nparts; i++)
                if (parts[i].pid == r)
                    s_exited(&parts[i], status, i >= 2);
        }
        if (cmd_done)
            break;
        int64_t now = dv_mono_ms();
        for (int i = 0; i < nparts; i++) {
            s_part_t *p = &parts[i];
            if (p->pid > 0 || !p->restart || !p->restart_at ||
                now < p->restart_at)
                continue;
            if (s_spawn(p) > 0)
                fprintf(stderr, "drover up: %s restarted (pid %d)\n", p->what,
                        (int)p->pid);
            else
                p->restart_at = now + p->backoff_ms;
        }
        s_sleep_ms(50);
    }

stop:
    /* Stop in order: the command, workers (they drain), the collector,
     * then the broker. */
    if (child > 0) {
        kill(child, SIGTERM);
        s_reap(child, 5000);
    }
    for (int w = 0; w < nworkers; w++)
        if (workers[w].pid > 0)
            kill(workers[w].pid, SIGTERM);
    for (int w = 0; w < nworkers; w++)
        if (workers[w].pid > 0)
            s_reap(workers[w].pid, 35000);
    if (coll->pid > 0) {
        kill(coll->pid, SIGTERM);
        s_reap(coll->pid, 5000);
    }
    if (broker->pid > 0) {
        kill(broker->pid, SIGTERM);
        s_reap(broker->pid, 10000);
    }
    if (made_dir && !s_o.keep && exit_code == CLI_OK)
        nftw(dir, s_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    else if (made_dir && !c->json)
        fprintf(stderr, "drover up: logs kept in %s\n", dir);
    if (s_signalled && !cmd && !c->json)
        fprintf(stderr, "drover up: stopped\n");
    return exit_code;
}

const cli_cmd_t cli_up = {
    .name = "up",
    .summary = "run broker, collector and workers in one process tree (dev, "
               "demos)",
    .args = "[-- COMMAND ARGS...]",
    .max_args = -1,
    .about =
        "Runs a broker (embedded SQLite store), a collector and worker "
        "supervisors as one process tree until Ctrl-C or SIGTERM, each "
        "started only once the one before answers. Once all are up it "
        "prints the endpoints and the export line that points the next "
        "drover command, in another terminal, at them. A port in use, or "
        "another reason a part cannot start, is said with its cause from "
        "the part's log, and up exits 1 without starting the rest.\n\n"
        "A part that dies is started again after 0.5 s, then 1, 2, ... up "
        "to 30 s, starting over once it has run a minute; a worker that "
        "stopped with status 0 (drained on purpose) is not.\n\n"
        "Up means the broker and the collector answer and every worker "
        "has joined the broker, so jobs submitted then start at once.\n\n"
        "With a COMMAND (after --), runs it once everything is up, with "
        "DROVER_BROKER, DROVER_COLLECTOR and DROVER_EVENTS pointing at the "
        "tree, then stops the tree and exits with the command's status.\n\n"
        "With --json, prints the endpoints as one JSON object on stdout once "
        "everything is up (docs/json.md), then runs as usual.",
    .examples = "  drover up --workers 2 --exec 'echo=cat'\n"
                "  drover up --port 7800 --keep\n"
                "  drover up --json > up.json &\n"
                "  drover up -- drover submit --file jobs.jsonl --wait\n",
    .notes = "Daemon logs go to DIR/broker.log, DIR/collector.log and "
             "DIR/worker-N.log; a directory up made itself is removed at a "
             "clean exit (status 0) unless --keep, one given with --dir "
             "never.",
    .exits = "exit status: 0 stopped by a signal; 1 a part could not start; "
             "2 usage error; with a COMMAND, the command's.",
    .flags = s_flags,
    .shared = CLI_JSON,
    .run = s_up,
};
