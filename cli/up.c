/* `drover up`: a broker and N workers in one process tree, for development
 * and demos. Each part is this same executable started with its subcommand,
 * so what runs here is exactly what runs in production. With `-- CMD ...`
 * it runs CMD once everything is up (with DROVER_BROKER set), then stops the
 * tree and exits with CMD's status. */
#include <errno.h>
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

#include "cli.h"
#include "drover.h"
#include "dv_clock.h"
#include "dv_curve.h"
#include "dv_err.h"
#include "dv_flags.h"

#define UP_MAX_WORKERS 64
#define UP_MAX_ARGS    64

static volatile sig_atomic_t s_signalled;

static void
s_on_signal(int sig)
{
    s_signalled = sig;
}

/* A repeatable flag's values (--exec, --broker-arg, --worker-arg). */
typedef struct {
    const char **items;
    int *n;
} s_list_t;

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

static void
s_usage(FILE *out)
{
    fprintf(
        out,
        "usage: drover up [OPTIONS] [-- COMMAND ARGS...]\n"
        "\n"
        "Runs a broker (embedded SQLite store) and worker supervisors as one\n"
        "process tree until Ctrl-C. With a COMMAND, runs it once everything "
        "is\n"
        "up, with DROVER_BROKER pointing at the broker, then stops and exits\n"
        "with the command's status.\n"
        "\n"
        "  --dir DIR          working directory for the store and logs\n"
        "                     (default: a new /tmp/drover-up-XXXXXX)\n"
        "  --store URL        store (default DIR/drover.db); a postgres://\n"
        "                     URL keeps the collector's history there too\n"
        "  --port N           first of three TCP ports on 127.0.0.1 (7700)\n"
        "  --workers N        worker supervisors to start (1)\n"
        "  --concurrency N    child processes per worker (number of CPUs)\n"
        "  --queues Q1,Q2     queues the workers serve (default)\n"
        "  --exec TYPE=CMD    an exec handler for the workers (repeatable)\n"
        "  --sync MODE        broker store sync: full (default), normal, off\n"
        "  --broker-arg ARG   extra argument for the broker (repeatable)\n"
        "  --worker-arg ARG   extra argument for each worker (repeatable)\n"
        "  --no-collector     do not start a collector (it listens on port+3\n"
        "                     for queries and 127.0.0.1:port+80 for /metrics)\n"
        "  --quiet            do not print the endpoints banner\n"
        "  -h, --help\n"
        "\n"
        "Daemon logs go to DIR/broker.log, DIR/collector.log and\n"
        "DIR/worker-N.log.\n");
}

static pid_t
s_spawn(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (log_path) {
            FILE *f = freopen(log_path, "a", stderr);
            (void)f;
        }
        signal(SIGINT, SIG_IGN); /* the tree stops in order, on our signal */
        execv("/proc/self/exe", argv);
        fprintf(stderr, "drover up: cannot exec: %s\n", strerror(errno));
        _exit(127);
    }
    return pid;
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
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
    }
}

/* Polls the broker with `status` until it answers or the deadline passes. */
static int
s_wait_ready(const char *endpoint, int64_t timeout_ms)
{
    int64_t deadline = dv_mono_ms() + timeout_ms;
    while (dv_mono_ms() < deadline) {
        drover_client_t *c = drover_connect(endpoint, 500);
        if (c) {
            char *body = NULL;
            int rc = drover_ctrl(c, "status", NULL, NULL, &body);
            free(body);
            drover_close(&c);
            if (rc == DROVER_OK)
                return 0;
        }
    }
    return -1;
}

int
up_main(int argc, char **argv)
{
    /* Everything here is plain ZeroMQ on loopback: the broker, workers,
     * collector and CMD must not pick up certificates meant for a real
     * broker from the environment. */
    unsetenv("DROVER_CURVE_SECRET");
    unsetenv("DROVER_CURVE_SERVER");
    unsetenv("DROVER_COLLECTOR_CURVE_SERVER");
    for (int r = DV_ROLE_CLIENT; r < DV_ROLE_COUNT_; r++)
        unsetenv(dv_role_env((dv_role_t)r));
    const char *dir = NULL, *store = NULL, *queues = "default", *sync = "full";
    int port = 7700, nworkers = 1, concurrency = 0, quiet = 0, collector = 1;
    const char *execs[UP_MAX_ARGS], *bargs[UP_MAX_ARGS], *wargs[UP_MAX_ARGS];
    int nexec = 0, nbargs = 0, nwargs = 0;
    s_list_t el = { execs, &nexec }, bl = { bargs, &nbargs },
             wl = { wargs, &nwargs };
    bool quiet_on = false, no_collector = false;
    const dv_flag_t flags[] = {
        DV_FLAG_STR("dir", &dir),
        DV_FLAG_STR("store", &store),
        DV_FLAG_INTEGER("port", &port, 1, 65400),
        DV_FLAG_INTEGER("workers", &nworkers, 0, UP_MAX_WORKERS),
        DV_FLAG_INTEGER("concurrency", &concurrency, 0, 4096),
        DV_FLAG_STR("queues", &queues),
        DV_FLAG_CALL("exec", s_list_add, &el),
        DV_FLAG_STR("sync", &sync),
        DV_FLAG_CALL("broker-arg", s_list_add, &bl),
        DV_FLAG_CALL("worker-arg", s_list_add, &wl),
        DV_FLAG_ON("quiet", &quiet_on),
        DV_FLAG_ON("no-collector", &no_collector),
        DV_FLAG_TABLE_END,
    };
    const dv_flag_t *tables[] = { flags };
    char err[256];
    int first = argc;
    /* The first argument that is not a flag (or "--") starts COMMAND, which
     * keeps its own flags. */
    switch (
        dv_flags_parse(tables, 1, argc, argv, true, &first, err, sizeof err)) {
    case DV_FLAGS_HELP:
        s_usage(stdout);
        return 0;
    case DV_FLAGS_ERROR:
        fprintf(stderr, "drover up: %s (see drover up --help)\n", err);
        return 2;
    case DV_FLAGS_OK:
        break;
    }
    quiet = quiet_on;
    collector = !no_collector;
    char **cmd = first < argc ? argv + first : NULL;

    char dirbuf[PATH_MAX];
    if (!dir) {
        snprintf(dirbuf, sizeof dirbuf, "/tmp/drover-up-XXXXXX");
        if (!mkdtemp(dirbuf)) {
            fprintf(stderr, "drover up: cannot make a directory: %s\n",
                    strerror(errno));
            return 1;
        }
        dir = dirbuf;
    } else if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "drover up: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char storebuf[PATH_MAX + 16], ep_c[64], ep_w[64], ep_e[64], ep_cc[64],
        ep_wc[64];
    if (!store) {
        snprintf(storebuf, sizeof storebuf, "%s/drover.db", dir);
        store = storebuf;
    }
    snprintf(ep_c, sizeof ep_c, "tcp://127.0.0.1:%d", port);
    snprintf(ep_w, sizeof ep_w, "tcp://127.0.0.1:%d", port + 1);
    snprintf(ep_e, sizeof ep_e, "tcp://127.0.0.1:%d", port + 2);
    snprintf(ep_cc, sizeof ep_cc, "tcp://127.0.0.1:%d", port);
    snprintf(ep_wc, sizeof ep_wc, "tcp://127.0.0.1:%d", port + 1);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* broker */
    char *bargv[UP_MAX_ARGS + 16];
    int n = 0;
    bargv[n++] = "drover";
    bargv[n++] = "broker";
    bargv[n++] = "--clients";
    bargv[n++] = ep_c;
    bargv[n++] = "--workers";
    bargv[n++] = ep_w;
    bargv[n++] = "--events";
    bargv[n++] = ep_e;
    bargv[n++] = "--store";
    bargv[n++] = (char *)store;
    bargv[n++] = "--sync";
    bargv[n++] = (char *)sync;
    for (int i = 0; i < nbargs; i++)
        bargv[n++] = (char *)bargs[i];
    bargv[n] = NULL;
    char logpath[PATH_MAX + 32];
    snprintf(logpath, sizeof logpath, "%s/broker.log", dir);
    pid_t broker = s_spawn(bargv, logpath);
    if (broker < 0 || s_wait_ready(ep_cc, 10000) != 0) {
        fprintf(stderr, "drover up: the broker did not start; see %s\n",
                logpath);
        if (broker > 0) {
            kill(broker, SIGTERM);
            s_reap(broker, 5000);
        }
        return 1;
    }

    /* collector: events and snapshots from the broker, history next to the
     * broker's store: a file in DIR, or the same PostgreSQL database (the
     * collector's tables are in a schema of their own there) */
    pid_t coll = -1;
    char ep_q[64], http[64], cstore[PATH_MAX + 32];
    snprintf(ep_q, sizeof ep_q, "tcp://127.0.0.1:%d", port + 3);
    snprintf(http, sizeof http, "127.0.0.1:%d", port + 80);
    snprintf(cstore, sizeof cstore, "%s/collector.db", dir);
    bool pg_store = strncasecmp(store, "postgres://", 11) == 0 ||
                    strncasecmp(store, "postgresql://", 13) == 0;
    if (collector) {
        char *cargv[] = { "drover",   "collector",
                          "--events", ep_e,
                          "--broker", ep_c,
                          "--bind",   ep_q,
                          "--http",   http,
                          "--store",  pg_store ? (char *)store : cstore,
                          NULL };
        snprintf(logpath, sizeof logpath, "%s/collector.log", dir);
        coll = s_spawn(cargv, logpath);
    }

    /* workers */
    pid_t workers[UP_MAX_WORKERS];
    char conc[16];
    snprintf(conc, sizeof conc, "%d", concurrency);
    for (int w = 0; w < nworkers; w++) {
        char *wargv[2 * UP_MAX_ARGS + 16];
        char name[64];
        snprintf(name, sizeof name, "up-worker-%d-%d", (int)getpid(), w + 1);
        n = 0;
        wargv[n++] = "drover";
        wargv[n++] = "worker";
        wargv[n++] = "--broker";
        wargv[n++] = ep_wc;
        wargv[n++] = "--queues";
        wargv[n++] = (char *)queues;
        wargv[n++] = "--name";
        wargv[n++] = name;
        if (concurrency > 0) {
            wargv[n++] = "--concurrency";
            wargv[n++] = conc;
        }
        for (int i = 0; i < nexec; i++) {
            wargv[n++] = "--exec";
            wargv[n++] = (char *)execs[i];
        }
        for (int i = 0; i < nwargs; i++)
            wargv[n++] = (char *)wargs[i];
        wargv[n] = NULL;
        snprintf(logpath, sizeof logpath, "%s/worker-%d.log", dir, w + 1);
        workers[w] = s_spawn(wargv, logpath);
    }
    if (!quiet) {
        fprintf(stderr,
                "drover up: broker %s (workers %s, events %s), %d worker%s, "
                "store %s, logs in %s\n",
                ep_c, ep_w, ep_e, nworkers, nworkers == 1 ? "" : "s",
                pg_store ? "PostgreSQL (--store)" : store, dir);
        if (coll > 0)
            fprintf(stderr,
                    "drover up: collector %s, metrics http://%s/metrics\n",
                    ep_q, http);
    }

    int exit_code = 0;
    pid_t child = -1;
    if (cmd) {
        setenv("DROVER_BROKER", ep_cc, 1);
        setenv("DROVER_EVENTS", ep_e, 1);
        if (coll > 0)
            setenv("DROVER_COLLECTOR", ep_q, 1);
        child = fork();
        if (child == 0) {
            signal(SIGINT, SIG_DFL);
            execvp(cmd[0], cmd);
            fprintf(stderr, "drover up: %s: %s\n", cmd[0], strerror(errno));
            _exit(127);
        }
    } else if (!quiet) {
        fprintf(stderr, "drover up: press Ctrl-C to stop\n");
    }

    /* Supervise until a signal, the command's end, or the broker's death. */
    while (!s_signalled) {
        int status;
        pid_t r = waitpid(-1, &status, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (r == child) {
            exit_code = WIFEXITED(status) ? WEXITSTATUS(status)
                                          : 128 + WTERMSIG(status);
            child = -1;
            break;
        }
        if (r == coll) {
            fprintf(stderr,
                    "drover up: the collector exited (status %d); see "
                    "%s/collector.log\n",
                    WIFEXITED(status) ? WEXITSTATUS(status)
                                      : 128 + WTERMSIG(status),
                    dir);
            coll = -1;
            continue;
        }
        if (r == broker) {
            fprintf(stderr, "drover up: the broker exited unexpectedly\n");
            broker = -1;
            exit_code = 1;
            break;
        }
        for (int w = 0; w < nworkers; w++)
            if (workers[w] == r) {
                fprintf(stderr, "drover up: worker %d exited (status %d)\n",
                        w + 1,
                        WIFEXITED(status) ? WEXITSTATUS(status)
                                          : 128 + WTERMSIG(status));
                workers[w] = -1;
            }
    }

    /* Stop in order: the command, workers (they drain), then the broker. */
    if (child > 0) {
        kill(child, SIGTERM);
        s_reap(child, 5000);
    }
    for (int w = 0; w < nworkers; w++)
        if (workers[w] > 0)
            kill(workers[w], SIGTERM);
    for (int w = 0; w < nworkers; w++)
        if (workers[w] > 0)
            s_reap(workers[w], 35000);
    if (coll > 0) {
        kill(coll, SIGTERM);
        s_reap(coll, 5000);
    }
    if (broker > 0) {
        kill(broker, SIGTERM);
        s_reap(broker, 10000);
    }
    if (s_signalled && !cmd)
        fprintf(stderr, "drover up: stopped\n");
    return exit_code;
}
