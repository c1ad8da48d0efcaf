/* `drover collector`: flags, signals, then the loop in collector_core. */
#include "collector.h"

#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector_core.h"
#include "dv_clock.h"
#include "dv_log.h"
#include "dv_util.h"

#define S_DEFAULT_EVENTS "tcp://127.0.0.1:7702"
#define S_DEFAULT_BROKER "tcp://127.0.0.1:7700"

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
        "usage: drover collector [OPTIONS]\n"
        "\n"
        "Subscribes to brokers' events, keeps live state and job history,\n"
        "answers `drover status`, `jobs`, `job`, `workers`, ... and serves\n"
        "/metrics (Prometheus) and /api (JSON) over HTTP.\n"
        "\n"
        "  --events EP[,EP...]  brokers' event endpoints (env DROVER_EVENTS,\n"
        "                       default " S_DEFAULT_EVENTS ")\n"
        "  --broker EP[,EP...]  the same brokers' clients endpoints, in the\n"
        "                       same order, for snapshots (env DROVER_BROKER,\n"
        "                       default " S_DEFAULT_BROKER " for one broker;\n"
        "                       off: events only)\n"
        "  --bind EP            query socket                 (tcp://*:7703)\n"
        "  --http ADDR:PORT     /metrics and /api     (127.0.0.1:7780; off)\n"
        "  --store PATH         SQLite history file          (collector.db)\n"
        "  --retention D        keep history this long       (7d)\n"
        "  --snapshot S         refresh each broker's snapshot this often (5)\n"
        "  --timeout S          a broker silent this long to a status\n"
        "                       request is reported down      (3)\n"
        "  --log-level L        debug|info|warn|error         (info)\n"
        "  --log-format F       json (default) | text\n"
        "  -h, --help\n"
        "\n"
        "Durations are seconds, fractions allowed, or with a unit (250ms, 2m,\n"
        "1h, 7d). SIGUSR1 writes a state dump to the log; SIGTERM/SIGINT\n"
        "stop after the current pass (its history is committed).\n");
}

/* Seconds or a duration, plus "Nd" for days (retention is in days). */
static int
s_duration(const char *flag, const char *v, int64_t *out)
{
    size_t n = strlen(v);
    if (n > 1 && v[n - 1] == 'd') {
        char *end;
        double d = strtod(v, &end);
        if (end == v + n - 1 && isfinite(d) && d >= 0 && d <= 3650) {
            *out = (int64_t)(d * 86400000.0);
            return 0;
        }
    } else if (dv_duration_parse(v, out) == 0) {
        return 0;
    }
    fprintf(stderr, "drover collector: %s: not a duration: '%s'\n", flag, v);
    return -1;
}

int
collector_main(int argc, char **argv)
{
    collector_config_t cfg = {
        .bind = "tcp://*:7703",
        .http = "127.0.0.1:7780",
        .store = "collector.db",
        .retention_ms = 7LL * 86400 * 1000,
        .snapshot_ms = 5000,
        .timeout_ms = 3000,
    };
    const char *events = dv_env_or("DROVER_EVENTS", S_DEFAULT_EVENTS);
    const char *brokers = getenv("DROVER_BROKER");
    int level = DV_INFO, text = 0;
    enum { OPT_EVENTS = 256, OPT_BROKER, OPT_BIND, OPT_HTTP, OPT_STORE,
           OPT_RETENTION, OPT_SNAPSHOT, OPT_TIMEOUT, OPT_LOGLEVEL, OPT_LOGFMT,
           OPT_HWM };
    static const struct option opts[] = {
        { "events", required_argument, 0, OPT_EVENTS },
        { "broker", required_argument, 0, OPT_BROKER },
        { "bind", required_argument, 0, OPT_BIND },
        { "http", required_argument, 0, OPT_HTTP },
        { "store", required_argument, 0, OPT_STORE },
        { "retention", required_argument, 0, OPT_RETENTION },
        { "snapshot", required_argument, 0, OPT_SNAPSHOT },
        { "timeout", required_argument, 0, OPT_TIMEOUT },
        { "events-hwm", required_argument, 0, OPT_HWM },
        { "log-level", required_argument, 0, OPT_LOGLEVEL },
        { "log-format", required_argument, 0, OPT_LOGFMT },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_EVENTS: events = optarg; break;
        case OPT_BROKER: brokers = optarg; break;
        case OPT_BIND: cfg.bind = optarg; break;
        case OPT_HTTP: cfg.http = strcmp(optarg, "off") ? optarg : NULL; break;
        case OPT_STORE: cfg.store = optarg; break;
        case OPT_RETENTION:
            if (s_duration("--retention", optarg, &cfg.retention_ms))
                return 2;
            break;
        case OPT_SNAPSHOT:
            if (s_duration("--snapshot", optarg, &cfg.snapshot_ms))
                return 2;
            break;
        case OPT_TIMEOUT:
            if (s_duration("--timeout", optarg, &cfg.timeout_ms))
                return 2;
            break;
        case OPT_HWM:
            cfg.events_hwm = atoi(optarg);
            if (cfg.events_hwm < 1) {
                fprintf(stderr, "drover collector: --events-hwm: at least 1\n");
                return 2;
            }
            break;
        case OPT_LOGLEVEL:
            level = dv_log_level_parse(optarg);
            if (level < 0) {
                fprintf(stderr, "drover collector: --log-level: debug, info, "
                                "warn or error\n");
                return 2;
            }
            break;
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
        fprintf(stderr, "drover collector: unexpected argument '%s'\n",
                argv[optind]);
        return 2;
    }
    if (cfg.snapshot_ms < 100 || cfg.timeout_ms < 100) {
        fprintf(stderr, "drover collector: --snapshot and --timeout must be "
                        "at least 0.1 s\n");
        return 2;
    }
    if (cfg.retention_ms < 60000) {
        fprintf(stderr, "drover collector: --retention must be at least 1m\n");
        return 2;
    }
    cfg.nevents = dv_strv_split(events, &cfg.events);
    if (cfg.nevents < 1 || cfg.nevents > 16) {
        fprintf(stderr, "drover collector: --events: 1 to 16 endpoints\n");
        dv_strv_free(&cfg.events);
        return 2;
    }
    if (brokers && !strcmp(brokers, "off"))
        cfg.nbrokers = 0;
    else if (brokers && *brokers)
        cfg.nbrokers = dv_strv_split(brokers, &cfg.brokers);
    else if (cfg.nevents == 1)
        cfg.nbrokers = dv_strv_split(S_DEFAULT_BROKER, &cfg.brokers);
    if (cfg.nbrokers && cfg.nbrokers != cfg.nevents) {
        fprintf(stderr,
                "drover collector: --broker lists %d endpoints, --events %d: "
                "give each broker's clients endpoint in the same order\n",
                cfg.nbrokers, cfg.nevents);
        dv_strv_free(&cfg.events);
        dv_strv_free(&cfg.brokers);
        return 2;
    }
    dv_log_init("collector", (dv_level_t)level, text);
    if (!cfg.nbrokers)
        dv_log(DV_WARN, "collector.no_snapshots",
               DV_STR("why", "no --broker endpoints: queue depths and worker "
                             "lists come from events only"));

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    collector_t *collector = collector_new(&cfg);
    int rc = 1;
    if (collector) {
        rc = collector_run(collector, &s_stop, &s_dump) == 0 ? 0 : 1;
        collector_destroy(&collector);
        dv_log(DV_INFO, "collector.stopped");
    }
    dv_strv_free(&cfg.events);
    dv_strv_free(&cfg.brokers);
    return rc;
}
