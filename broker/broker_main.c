/* `drover broker`: flags, signals, then the loop in broker_core. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "broker_core.h"
#include "dv_clock.h"
#include "dv_log.h"
#include "dv_util.h"

static volatile int s_stop;
static volatile int s_dump;

static void
s_on_signal(int sig)
{
    if (sig == SIGUSR1)
        s_dump = 1;
    else
        s_stop = 1;
}

static void
s_usage(FILE *out)
{
    fprintf(out,
        "usage: drover broker [OPTIONS]\n"
        "\n"
        "Accepts jobs, keeps them durably, hands them to workers.\n"
        "\n"
        "  --clients EP         bind for producers and the CLI   (tcp://*:7700)\n"
        "  --workers EP         bind for worker supervisors      (tcp://*:7701)\n"
        "  --events EP          bind for the event PUB socket    (tcp://*:7702)\n"
        "  --store URL          sqlite:PATH or a path            (env DROVER_STORE,\n"
        "                       default ./drover.db)\n"
        "  --sync MODE          full (default: survives power loss), normal\n"
        "                       (survives a crash of the broker), off (tests)\n"
        "  --heartbeat S        heartbeat period, seconds         (1)\n"
        "  --worker-timeout S   silence before a worker's jobs are requeued (5)\n"
        "  --max-attempts N     default attempts per job          (5)\n"
        "  --backoff-base S     default first retry delay         (1)\n"
        "  --backoff-factor F   default growth per attempt        (2)\n"
        "  --backoff-cap S      default largest retry delay       (300)\n"
        "  --result-ttl S       keep finished jobs this long      (86400)\n"
        "  --queue-rate Q=R     start at most R jobs/s of queue Q, fleet-wide\n"
        "                       (repeatable; 0 = no limit; kept in the store)\n"
        "  --queue-max-running Q=N  at most N jobs of queue Q running at once,\n"
        "                       fleet-wide (repeatable; 0 = no limit)\n"
        "  --log-level L        debug|info|warn|error             (info)\n"
        "  --log-format F       json (default) | text\n"
        "  -h, --help\n"
        "\n"
        "Durations are seconds, fractions allowed (0.5), or with a unit (250ms,\n"
        "2m, 1h). SIGUSR1 writes a state dump to the log; SIGTERM/SIGINT stop\n"
        "after the current pass (every acknowledged job is already stored).\n");
}

static int
s_duration(const char *flag, const char *v, int64_t *out)
{
    if (dv_duration_parse(v, out) != 0) {
        fprintf(stderr, "drover broker: %s: not a duration: '%s'\n", flag, v);
        return -1;
    }
    return 0;
}

int
broker_main(int argc, char **argv)
{
    broker_config_t cfg = {
        .clients_ep = "tcp://*:7700",
        .workers_ep = "tcp://*:7701",
        .events_ep = "tcp://*:7702",
        .store_url = dv_env_or("DROVER_STORE", "drover.db"),
        .sync = BROKER_SYNC_FULL,
        .heartbeat_ms = 1000,
        .worker_timeout_ms = 5000,
        .default_max_attempts = 5,
        .default_result_ttl_ms = 86400000,
        .default_backoff = DV_BACKOFF_DEFAULT,
        .batch_max = 2000,
    };
    int level = DV_INFO, text = 0;
    enum { OPT_CLIENTS = 256, OPT_WORKERS, OPT_EVENTS, OPT_STORE, OPT_SYNC, OPT_HB, OPT_WT,
           OPT_MAXATT, OPT_BBASE, OPT_BFACT, OPT_BCAP, OPT_TTL, OPT_LOGLEVEL, OPT_LOGFMT,
           OPT_QRATE, OPT_QMAXRUN };
    static const struct option opts[] = {
        { "clients", required_argument, 0, OPT_CLIENTS },
        { "workers", required_argument, 0, OPT_WORKERS },
        { "events", required_argument, 0, OPT_EVENTS },
        { "store", required_argument, 0, OPT_STORE },
        { "sync", required_argument, 0, OPT_SYNC },
        { "heartbeat", required_argument, 0, OPT_HB },
        { "worker-timeout", required_argument, 0, OPT_WT },
        { "max-attempts", required_argument, 0, OPT_MAXATT },
        { "backoff-base", required_argument, 0, OPT_BBASE },
        { "backoff-factor", required_argument, 0, OPT_BFACT },
        { "backoff-cap", required_argument, 0, OPT_BCAP },
        { "result-ttl", required_argument, 0, OPT_TTL },
        { "queue-rate", required_argument, 0, OPT_QRATE },
        { "queue-max-running", required_argument, 0, OPT_QMAXRUN },
        { "log-level", required_argument, 0, OPT_LOGLEVEL },
        { "log-format", required_argument, 0, OPT_LOGFMT },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_CLIENTS: cfg.clients_ep = optarg; break;
        case OPT_WORKERS: cfg.workers_ep = optarg; break;
        case OPT_EVENTS: cfg.events_ep = optarg; break;
        case OPT_STORE: cfg.store_url = optarg; break;
        case OPT_SYNC:
            if (!strcmp(optarg, "full"))
                cfg.sync = BROKER_SYNC_FULL;
            else if (!strcmp(optarg, "normal"))
                cfg.sync = BROKER_SYNC_NORMAL;
            else if (!strcmp(optarg, "off"))
                cfg.sync = BROKER_SYNC_OFF;
            else {
                fprintf(stderr, "drover broker: --sync: full, normal or off\n");
                return 2;
            }
            break;
        case OPT_HB:
            if (s_duration("--heartbeat", optarg, &cfg.heartbeat_ms) || cfg.heartbeat_ms < 10)
                return 2;
            break;
        case OPT_WT:
            if (s_duration("--worker-timeout", optarg, &cfg.worker_timeout_ms))
                return 2;
            break;
        case OPT_MAXATT:
            cfg.default_max_attempts = atoi(optarg);
            if (cfg.default_max_attempts < 1 || cfg.default_max_attempts > 1000) {
                fprintf(stderr, "drover broker: --max-attempts: 1..1000\n");
                return 2;
            }
            break;
        case OPT_BBASE:
            if (s_duration("--backoff-base", optarg, &cfg.default_backoff.base_ms))
                return 2;
            break;
        case OPT_BFACT:
            cfg.default_backoff.factor = atof(optarg);
            if (cfg.default_backoff.factor < 1.0) {
                fprintf(stderr, "drover broker: --backoff-factor: at least 1\n");
                return 2;
            }
            break;
        case OPT_BCAP:
            if (s_duration("--backoff-cap", optarg, &cfg.default_backoff.cap_ms))
                return 2;
            break;
        case OPT_TTL:
            if (s_duration("--result-ttl", optarg, &cfg.default_result_ttl_ms))
                return 2;
            break;
        case OPT_LOGLEVEL:
            level = dv_log_level_parse(optarg);
            if (level < 0) {
                fprintf(stderr, "drover broker: --log-level: debug, info, warn or error\n");
                return 2;
            }
            break;
        case OPT_QRATE:
        case OPT_QMAXRUN: {
            const char *eq = strrchr(optarg, '=');
            char *end = NULL;
            double v = eq ? strtod(eq + 1, &end) : -1;
            if (!eq || eq == optarg || end == eq + 1 || *end || v < 0) {
                fprintf(stderr, "drover broker: --%s: expected QUEUE=NUMBER, got '%s'\n",
                        c == OPT_QRATE ? "queue-rate" : "queue-max-running", optarg);
                return 2;
            }
            if (c == OPT_QRATE && cfg.nqueue_rates < 32)
                cfg.queue_rates[cfg.nqueue_rates++] = optarg;
            else if (c == OPT_QMAXRUN && cfg.nqueue_max_running < 32)
                cfg.queue_max_running[cfg.nqueue_max_running++] = optarg;
            break;
        }
        case OPT_LOGFMT:
            text = !strcmp(optarg, "text");
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "drover broker: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (cfg.worker_timeout_ms < 2 * cfg.heartbeat_ms) {
        fprintf(stderr, "drover broker: --worker-timeout must be at least two heartbeats\n");
        return 2;
    }
    dv_log_init("broker", (dv_level_t)level, text);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    broker_t *broker = broker_new(&cfg);
    if (!broker)
        return 1;
    broker_run(broker, &s_stop, &s_dump);
    broker_destroy(&broker);
    dv_log(DV_INFO, "broker.stopped");
    return 0;
}
