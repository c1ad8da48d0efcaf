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

/* What the flags set; broker_main() clears it, then dv_daemon_parse() sets
 * every flag's default. */
static broker_config_t s_cfg;
static struct {
    int sync; /* s_syncs is in broker_sync_t order */
    bool insecure_bind;
} s_o;
static s_limits_t s_rates = { s_cfg.queue_rates, &s_cfg.nqueue_rates };
static s_limits_t s_maxrun = { s_cfg.queue_max_running,
                               &s_cfg.nqueue_max_running };

const char broker_about[] =
    "Accepts jobs, keeps them durably in its store, hands them to workers "
    "and publishes what happens to them as events.";

const char broker_notes[] =
    "Durations are seconds, fractions allowed (0.5), or with a unit (250ms, "
    "2m, 1h). Without --curve-secret every endpoint must be loopback "
    "(127.0.0.0/8, ::1, localhost, ipc://, inproc://) unless "
    "--insecure-bind; the role allow-lists from the environment are ignored "
    "without a certificate, given as flags they need one.\n\n"
    "signals: SIGUSR1 writes a state dump to the log; SIGHUP reloads the "
    "CurveZMQ certificate and allow-lists; SIGTERM or SIGINT stop after the "
    "current pass (every acknowledged job is already stored). See "
    "docs/security.md and docs/configuration.md.";

const char broker_exits[] =
    "exit status: 0 after a clean stop; 1 when it cannot start or fails; 2 "
    "on a usage error; 75 when a broker that stepped down for another of "
    "its group cannot start again as a standby.";

const dv_flag_t broker_flags[] = {
    DV_FLAG_STR("clients", &s_cfg.clients_ep, .arg = "ENDPOINT",
                .dflt = "tcp://127.0.0.1:7700",
                .help = "bind for producers and the drover commands (role "
                        "client or operator)"),
    DV_FLAG_STR("workers", &s_cfg.workers_ep, .arg = "ENDPOINT",
                .dflt = "tcp://127.0.0.1:7701",
                .help = "bind for worker supervisors (role worker)"),
    DV_FLAG_STR("events", &s_cfg.events_ep, .arg = "ENDPOINT",
                .dflt = "tcp://127.0.0.1:7702",
                .help = "bind for the event PUB socket: collectors and "
                        "monitors (role observer)"),
    DV_FLAG_STR("store", &s_cfg.store_url, .arg = "URL", .env = "DROVER_STORE",
                .dflt = "drover.db", .complete = DV_COMPLETE_FILE,
                .help = "where jobs are kept: sqlite:PATH or a path (SQLite), "
                        "or postgres://... (PostgreSQL)"),
    DV_FLAG_ONE_OF("sync", &s_o.sync, s_syncs, .dflt = "full",
                   .help = "full: a commit survives power loss; normal: it "
                           "survives a crash of the broker; off: tests only"),
    DV_FLAG_DUR("heartbeat", &s_cfg.heartbeat_ms, 10, 86400000, .dflt = "1",
                .help = "heartbeat period, both ways"),
    DV_FLAG_DUR("worker-timeout", &s_cfg.worker_timeout_ms, 0, 0, .dflt = "5",
                .help = "a worker silent this long is lost and its jobs are "
                        "requeued; at least two heartbeats"),
    DV_FLAG_DUR("rejoin-window", &s_cfg.rejoin_ms, 0, 0,
                .help = "after a start, how long recovered jobs wait for the "
                        "workers that held them to rejoin (default and 0: "
                        "three heartbeats, at least 0.5)"),
    DV_FLAG_INTEGER("events-hwm", &s_cfg.events_hwm, 1, 1 << 24, .arg = "N",
                    .dflt = "1000",
                    .help = "event messages queued for each subscriber before "
                            "it loses them (a group's job events are one "
                            "message); a subscriber that falls behind resyncs"),
    DV_FLAG_INTEGER("max-attempts", &s_cfg.default_max_attempts, 1, 1000,
                    .arg = "N", .dflt = "5",
                    .help = "attempts of a job that gives none"),
    DV_FLAG_DUR("backoff-base", &s_cfg.default_backoff.base_ms, 0, 0,
                .dflt = "1",
                .help = "first retry delay of a job that gives none"),
    DV_FLAG_NUMBER("backoff-factor", &s_cfg.default_backoff.factor, 1, 1000,
                   .arg = "F", .dflt = "2",
                   .help = "growth of the retry delay per attempt, for a job "
                           "that gives none"),
    DV_FLAG_DUR("backoff-cap", &s_cfg.default_backoff.cap_ms, 0, 0,
                .dflt = "300",
                .help = "largest retry delay of a job that gives none"),
    DV_FLAG_DUR("result-ttl", &s_cfg.default_result_ttl_ms, 0, 0,
                .dflt = "86400",
                .help = "how long a finished job and its result are kept, for "
                        "a job that gives none"),
    DV_FLAG_DUR("key-grant-ttl", &s_cfg.key_grant_ttl_ms, 10, 60000,
                .dflt = "1",
                .help = "how long a worker may use an API-key grant before it "
                        "returns what is left (docs/keys.md)"),
    DV_FLAG_DUR("key-probe", &s_cfg.key_probe_ms, 0, 0, .dflt = "300",
                .help = "how often a disabled API key is probed with one "
                        "request (0: never)"),
    DV_FLAG_CALL("queue-rate", s_limit, &s_rates, .arg = "Q=R",
                 .help = "start at most R jobs a second of queue Q, "
                         "fleet-wide (repeatable; 0: no limit; kept in the "
                         "store)"),
    DV_FLAG_CALL("queue-max-running", s_limit, &s_maxrun, .arg = "Q=N",
                 .help = "at most N jobs of queue Q running at once, "
                         "fleet-wide (repeatable; 0: no limit)"),
    DV_FLAG_STR("curve-secret", &s_cfg.curve_secret, .arg = "FILE",
                .env = DV_CURVE_ENV_SECRET, .complete = DV_COMPLETE_FILE,
                .help = "CurveZMQ on all three sockets: the broker's secret "
                        "certificate (NAME.key_secret from drover keygen, "
                        "mode 0600; empty: none)"),
    DV_FLAG_STR("curve-clients", &s_cfg.curve_dirs[DV_ROLE_CLIENT],
                .arg = "DIR", .env = "DROVER_CURVE_CLIENTS",
                .complete = DV_COMPLETE_DIR,
                .help = "public certificates of role client: submit, wait, "
                        "status, job"),
    DV_FLAG_STR("curve-operators", &s_cfg.curve_dirs[DV_ROLE_OPERATOR],
                .arg = "DIR", .env = "DROVER_CURVE_OPERATORS",
                .complete = DV_COMPLETE_DIR,
                .help = "public certificates of role operator: everything, "
                        "the control verbs too"),
    DV_FLAG_STR("curve-workers", &s_cfg.curve_dirs[DV_ROLE_WORKER],
                .arg = "DIR", .env = "DROVER_CURVE_WORKERS",
                .complete = DV_COMPLETE_DIR,
                .help = "public certificates of role worker (a worker's "
                        "--name must be its certificate's name)"),
    DV_FLAG_STR("curve-observers", &s_cfg.curve_dirs[DV_ROLE_OBSERVER],
                .arg = "DIR", .env = "DROVER_CURVE_OBSERVERS",
                .complete = DV_COMPLETE_DIR,
                .help = "public certificates of role observer: events, "
                        "status"),
    DV_FLAG_ON("insecure-bind", &s_o.insecure_bind,
               .help = "without --curve-secret, allow binding beyond "
                       "loopback: anyone who reaches the ports may submit, "
                       "control and pose as a worker"),
    DV_FLAG_TABLE_END,
};

int
broker_main(int argc, char **argv)
{
    memset(&s_cfg, 0, sizeof s_cfg);
    memset(&s_o, 0, sizeof s_o);
    /* What no flag sets (the backoff's jitter), before the defaults. */
    s_cfg.default_backoff = DV_BACKOFF_DEFAULT;
    s_cfg.batch_max = 2000;
    dv_daemon_t d = { .name = "broker",
                      .about = broker_about,
                      .notes = broker_notes,
                      .exits = broker_exits,
                      .flags = broker_flags };
    int rc = dv_daemon_parse(&d, argc, argv);
    if (rc >= 0)
        return rc;
    broker_config_t cfg = s_cfg;
    bool insecure_bind = s_o.insecure_bind;
    cfg.sync = (broker_sync_t)s_o.sync;
    /* The allow-lists as the environment gives them (an empty flag value
     * turns one off). */
    const char *env_dirs[DV_ROLE_COUNT_] = { NULL };
    for (int r = DV_ROLE_CLIENT; r < DV_ROLE_COUNT_; r++)
        env_dirs[r] = getenv(dv_role_env((dv_role_t)r));
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
