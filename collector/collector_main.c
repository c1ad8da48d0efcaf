/* `drover collector`: its flags (dv_daemon), then the loop in collector_core. */
#include "collector.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector_core.h"
#include "dv_clock.h"
#include "dv_curve_client.h"
#include "dv_daemon.h"
#include "dv_err.h"
#include "dv_log.h"
#include "dv_util.h"

#define S_DEFAULT_EVENTS "tcp://127.0.0.1:7702"
#define S_DEFAULT_BROKER "tcp://127.0.0.1:7700"

static volatile int s_stop;
static volatile int s_dump;

static void
s_usage(FILE *out)
{
    fprintf(
        out,
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
        "  --curve-secret FILE  CurveZMQ to the brokers: our certificate's\n"
        "                       secret file (env DROVER_CURVE_SECRET)\n"
        "  --curve-server FILE  the brokers' public certificate (env\n"
        "                       DROVER_CURVE_SERVER); both or neither\n"
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
s_duration(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    int64_t *out = f->ctx;
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
    return dv_err_set(err, es, "--%s: '%s' is not a duration in seconds",
                      f->name, v);
}

/* --http ADDR, or "off". */
static int
s_http(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    *(const char **)f->ctx = strcmp(v, "off") ? v : NULL;
    return 0;
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
    const char *curve_secret = NULL, *curve_server = NULL;
    const dv_flag_t flags[] = {
        DV_FLAG_STR("events", &events),
        DV_FLAG_STR("broker", &brokers),
        DV_FLAG_STR("bind", &cfg.bind),
        DV_FLAG_CALL("http", s_http, &cfg.http),
        DV_FLAG_STR("store", &cfg.store),
        DV_FLAG_CALL("retention", s_duration, &cfg.retention_ms),
        DV_FLAG_CALL("snapshot", s_duration, &cfg.snapshot_ms),
        DV_FLAG_CALL("timeout", s_duration, &cfg.timeout_ms),
        DV_FLAG_INTEGER("events-hwm", &cfg.events_hwm, 1, 1 << 30),
        DV_FLAG_STR("curve-secret", &curve_secret),
        DV_FLAG_STR("curve-server", &curve_server),
        DV_FLAG_TABLE_END,
    };
    dv_daemon_t d = { .name = "collector", .usage = s_usage, .flags = flags };
    int rc = dv_daemon_parse(&d, argc, argv);
    if (rc >= 0)
        return rc;
    if (cfg.snapshot_ms < 100 || cfg.timeout_ms < 100)
        return dv_daemon_fail(&d, "--snapshot and --timeout must be at least "
                                  "0.1 s");
    if (cfg.retention_ms < 60000)
        return dv_daemon_fail(&d, "--retention must be at least 1m");
    /* The brokers of one group share one server certificate. */
    dv_curve_client_env(&curve_secret, &curve_server);
    char err[512];
    if (dv_curve_client_load(
            &cfg.curve, curve_secret && *curve_secret ? curve_secret : NULL,
            curve_server && *curve_server ? curve_server : NULL, err,
            sizeof err) != 0)
        return dv_daemon_fail(&d, "%s", err);
    cfg.nevents = dv_strv_split(events, &cfg.events);
    if (cfg.nevents < 1 || cfg.nevents > 16) {
        dv_curve_client_wipe(&cfg.curve);
        dv_strv_free(&cfg.events);
        return dv_daemon_fail(&d, "--events: 1 to 16 endpoints");
    }
    if (brokers && !strcmp(brokers, "off"))
        cfg.nbrokers = 0;
    else if (brokers && *brokers)
        cfg.nbrokers = dv_strv_split(brokers, &cfg.brokers);
    else if (cfg.nevents == 1)
        cfg.nbrokers = dv_strv_split(S_DEFAULT_BROKER, &cfg.brokers);
    if (cfg.nbrokers && cfg.nbrokers != cfg.nevents) {
        int nb = cfg.nbrokers;
        dv_curve_client_wipe(&cfg.curve);
        dv_strv_free(&cfg.events);
        dv_strv_free(&cfg.brokers);
        return dv_daemon_fail(&d,
                              "--broker lists %d endpoints, --events %d: "
                              "give each broker's clients endpoint in the "
                              "same order",
                              nb, cfg.nevents);
    }
    dv_daemon_start(&d, &s_stop, &s_dump);
    if (!cfg.nbrokers)
        dv_log(DV_WARN, "collector.no_snapshots",
               DV_STR("why", "no --broker endpoints: queue depths and worker "
                             "lists come from events only"));

    collector_t *collector = collector_new(&cfg);
    rc = 1;
    if (collector) {
        rc = collector_run(collector, &s_stop, &s_dump) == 0 ? 0 : 1;
        collector_destroy(&collector);
        dv_log(DV_INFO, "collector.stopped");
    }
    dv_curve_client_wipe(&cfg.curve);
    dv_strv_free(&cfg.events);
    dv_strv_free(&cfg.brokers);
    return rc;
}
