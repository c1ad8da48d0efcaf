/* `drover broker`: its flags (dv_daemon), then the loop in broker_core. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "broker_core.h"
#include "broker_keys.h"
#include "dv_access.h"
#include "dv_clock.h"
#include "dv_curve_client.h"
#include "dv_daemon.h"
#include "dv_err.h"
#include "dv_log.h"
#include "dv_util.h"

static volatile int s_stop;
static volatile int s_dump;
static volatile int s_reload;

static void
s_usage(FILE *out)
{
    fprintf(
        out,
        "usage: drover broker [OPTIONS]\n"
        "\n"
        "Accepts jobs, keeps them durably, hands them to workers.\n"
        "\n"
        "  --clients EP         bind for producers and the CLI   "
        "(tcp://127.0.0.1:7700)\n"
        "  --workers EP         bind for worker supervisors      "
        "(tcp://127.0.0.1:7701)\n"
        "  --events EP          bind for the event PUB socket    "
        "(tcp://127.0.0.1:7702)\n"
        "  --curve-secret FILE  CurveZMQ on all three sockets: the broker's\n"
        "                       secret certificate (NAME.key_secret from\n"
        "                       `drover keygen`, mode 0600; env\n"
        "                       DROVER_CURVE_SECRET)\n"
        "  --curve-clients DIR  public certificates of role client (submit,\n"
        "                       wait, status, job; env DROVER_CURVE_CLIENTS)\n"
        "  --curve-operators DIR  role operator (everything, control verbs;\n"
        "                       env DROVER_CURVE_OPERATORS)\n"
        "  --curve-workers DIR  role worker (a worker's --name must be its\n"
        "                       certificate's name; env DROVER_CURVE_WORKERS)\n"
        "  --curve-observers DIR  role observer (events, status; env\n"
        "                       DROVER_CURVE_OBSERVERS)\n"
        "  --insecure-bind      without --curve-secret, allow binding beyond\n"
        "                       loopback: anyone who reaches the ports may\n"
        "                       submit, control and pose as a worker\n"
        "  --store URL          sqlite:PATH or a path            (env "
        "DROVER_STORE,\n"
        "                       default ./drover.db)\n"
        "  --sync MODE          full (default: survives power loss), normal\n"
        "                       (survives a crash of the broker), off (tests)\n"
        "  --heartbeat S        heartbeat period, seconds         (1)\n"
        "  --worker-timeout S   silence before a worker's jobs are requeued "
        "(5)\n"
        "  --rejoin-window S    after a start, how long recovered jobs wait "
        "for\n"
        "                       the workers that held them to rejoin (3 "
        "heartbeats,\n"
        "                       at least 0.5)\n"
        "  --max-attempts N     default attempts per job          (5)\n"
        "  --backoff-base S     default first retry delay         (1)\n"
        "  --backoff-factor F   default growth per attempt        (2)\n"
        "  --backoff-cap S      default largest retry delay       (300)\n"
        "  --result-ttl S       keep finished jobs this long      (86400)\n"
        "  --key-grant-ttl S    life of an API-key grant at a worker (1)\n"
        "  --key-probe S        probe a disabled API key this often (300;\n"
        "                       0: never)\n"
        "  --queue-rate Q=R     start at most R jobs/s of queue Q, fleet-wide\n"
        "                       (repeatable; 0 = no limit; kept in the store)\n"
        "  --queue-max-running Q=N  at most N jobs of queue Q running at "
        "once,\n"
        "                       fleet-wide (repeatable; 0 = no limit)\n"
        "  --log-level L        debug|info|warn|error             (info)\n"
        "  --log-format F       json (default) | text\n"
        "  -h, --help\n"
        "\n"
        "Durations are seconds, fractions allowed (0.5), or with a unit "
        "(250ms,\n"
        "2m, 1h). SIGUSR1 writes a state dump to the log; SIGHUP reloads the\n"
        "CurveZMQ certificate and allow-lists; SIGTERM/SIGINT stop after the\n"
        "current pass (every acknowledged job is already stored). See\n"
        "docs/security.md.\n");
}

/* --queue-rate / --queue-max-running: QUEUE=NUMBER, kept as given. */
typedef struct {
    const char **list;
    int *n;
} s_limits_t;

static int
s_limit(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    s_limits_t *l = f->ctx;
    const char *eq = strrchr(v, '=');
    char *end = NULL;
    double d = eq ? strtod(eq + 1, &end) : -1;
    if (!eq || eq == v || end == eq + 1 || *end || d < 0)
        return dv_err_set(err, es, "--%s: expected QUEUE=NUMBER, got '%s'",
                          f->name, v);
    if (*l->n >= 32)
        return dv_err_set(err, es, "--%s: at most 32 queues", f->name);
    l->list[(*l->n)++] = v;
    return 0;
}

static const char *const s_syncs[] = { "full", "normal", "off", NULL };

int
broker_main(int argc, char **argv)
{
    broker_config_t cfg = {
        .clients_ep = "tcp://127.0.0.1:7700",
        .workers_ep = "tcp://127.0.0.1:7701",
        .events_ep = "tcp://127.0.0.1:7702",
        .store_url = dv_env_or("DROVER_STORE", "drover.db"),
        .sync = BROKER_SYNC_FULL,
        .heartbeat_ms = 1000,
        .worker_timeout_ms = 5000,
        .default_max_attempts = 5,
        .default_result_ttl_ms = 86400000,
        .default_backoff = DV_BACKOFF_DEFAULT,
        .batch_max = 2000,
        .key_probe_ms = BROKER_KEYS_PROBE_DEFAULT_MS,
    };
    /* CurveZMQ from the environment where no flag says otherwise (an empty
     * flag value turns one off). */
    const char *env_dirs[DV_ROLE_COUNT_] = { NULL };
    cfg.curve_secret = getenv(DV_CURVE_ENV_SECRET);
    for (int r = DV_ROLE_CLIENT; r < DV_ROLE_COUNT_; r++)
        cfg.curve_dirs[r] = env_dirs[r] = getenv(dv_role_env((dv_role_t)r));
    int sync = 0;
    bool insecure_bind = false;
    s_limits_t rates = { cfg.queue_rates, &cfg.nqueue_rates };
    s_limits_t maxrun = { cfg.queue_max_running, &cfg.nqueue_max_running };
    const dv_flag_t flags[] = {
        DV_FLAG_STR("clients", &cfg.clients_ep),
        DV_FLAG_STR("workers", &cfg.workers_ep),
        DV_FLAG_STR("events", &cfg.events_ep),
        DV_FLAG_STR("store", &cfg.store_url),
        DV_FLAG_ONE_OF("sync", &sync, s_syncs),
        DV_FLAG_DUR("heartbeat", &cfg.heartbeat_ms, 10, 86400000),
        DV_FLAG_DUR("worker-timeout", &cfg.worker_timeout_ms, 0, 0),
        DV_FLAG_DUR("rejoin-window", &cfg.rejoin_ms, 0, 0),
        DV_FLAG_INTEGER("max-attempts", &cfg.default_max_attempts, 1, 1000),
        DV_FLAG_DUR("backoff-base", &cfg.default_backoff.base_ms, 0, 0),
        DV_FLAG_NUMBER("backoff-factor", &cfg.default_backoff.factor, 1, 1000),
        DV_FLAG_DUR("backoff-cap", &cfg.default_backoff.cap_ms, 0, 0),
        DV_FLAG_DUR("result-ttl", &cfg.default_result_ttl_ms, 0, 0),
        DV_FLAG_DUR("key-grant-ttl", &cfg.key_grant_ttl_ms, 10, 60000),
        DV_FLAG_DUR("key-probe", &cfg.key_probe_ms, 0, 0),
        DV_FLAG_CALL("queue-rate", s_limit, &rates),
        DV_FLAG_CALL("queue-max-running", s_limit, &maxrun),
        DV_FLAG_STR("curve-secret", &cfg.curve_secret),
        DV_FLAG_STR("curve-clients", &cfg.curve_dirs[DV_ROLE_CLIENT]),
        DV_FLAG_STR("curve-operators", &cfg.curve_dirs[DV_ROLE_OPERATOR]),
        DV_FLAG_STR("curve-workers", &cfg.curve_dirs[DV_ROLE_WORKER]),
        DV_FLAG_STR("curve-observers", &cfg.curve_dirs[DV_ROLE_OBSERVER]),
        DV_FLAG_ON("insecure-bind", &insecure_bind),
        DV_FLAG_TABLE_END,
    };
    dv_daemon_t d = { .name = "broker", .usage = s_usage, .flags = flags };
    int rc = dv_daemon_parse(&d, argc, argv);
    if (rc >= 0)
        return rc;
    cfg.sync = (broker_sync_t)sync; /* s_syncs is in broker_sync_t order */
    if (cfg.curve_secret && !*cfg.curve_secret)
        cfg.curve_secret = NULL;
    /* Lists from the environment without a certificate are ignored (so
     * that emptying DROVER_CURVE_SECRET turns CurveZMQ off); given as
     * flags, they are an error below. */
    for (int r = 0; r < DV_ROLE_COUNT_; r++)
        if ((cfg.curve_dirs[r] && !*cfg.curve_dirs[r]) ||
            (!cfg.curve_secret && cfg.curve_dirs[r] == env_dirs[r]))
            cfg.curve_dirs[r] = NULL;
    if (cfg.worker_timeout_ms < 2 * cfg.heartbeat_ms)
        return dv_daemon_fail(&d, "--worker-timeout must be at least two "
                                  "heartbeats");

    const char *eps[] = { cfg.clients_ep, cfg.workers_ep, cfg.events_ep };
    const char *open_ep = NULL;
    for (int i = 0; i < 3 && !open_ep; i++)
        if (!dv_endpoint_is_local(eps[i]))
            open_ep = eps[i];
    if (!cfg.curve_secret) {
        for (int r = 0; r < DV_ROLE_COUNT_; r++)
            if (cfg.curve_dirs[r])
                return dv_daemon_fail(&d, "--curve-%ss needs --curve-secret",
                                      dv_role_name((dv_role_t)r));
        if (open_ep && !insecure_bind)
            return dv_daemon_fail(
                &d,
                "%s is not a loopback address: without --curve-secret "
                "anyone who reaches it may submit, control and pose as a "
                "worker; set up CurveZMQ (docs/security.md) or say "
                "--insecure-bind",
                open_ep);
    }

    dv_daemon_start(&d, &s_stop, &s_dump);
    dv_daemon_on_reload(&s_reload);
    if (!cfg.curve_secret && open_ep)
        dv_log(DV_WARN, "broker.insecure_bind", DV_STR("endpoint", open_ep),
               DV_STR("reason",
                      "no CurveZMQ: any peer that reaches this endpoint is "
                      "trusted (--insecure-bind)"));
    broker_t *broker = broker_new(&cfg);
    if (!broker)
        return 1;
    broker_set_reload_flag(broker, &s_reload);
    int run = broker_run(broker, &s_stop, &s_dump);
    if (run == BROKER_STEP_DOWN) {
        /* Another broker of the group serves now. Nothing of ours may be
         * committed or answered any more, so no orderly shutdown: this
         * process becomes a new broker, a standby, with the same settings
         * (what it held is in the store; its sockets, threads and store
         * connections end with the old image). */
        char **again = calloc((size_t)argc + 2, sizeof *again);
        if (again) {
            again[0] = "drover"; /* argv[0] is "broker": the command */
            for (int i = 0; i < argc; i++)
                again[i + 1] = argv[i];
            execv("/proc/self/exe", again);
        }
        dv_log(DV_ERROR, "broker.restart_failed",
               DV_STR("error", strerror(errno)));
        _exit(75);
    }
    broker_destroy(&broker);
    dv_log(run == 0 ? DV_INFO : DV_ERROR, "broker.stopped");
    return run == 0 ? 0 : 1;
}
