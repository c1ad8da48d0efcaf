/* `drover collector`: its flags (dv_daemon), then the loop in collector_core. */
#include "collector.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collector_access.h"
#include "dv_access.h"
#include "collector_core.h"
#include "dv_clock.h"
#include "dv_curve_client.h"
#include "dv_daemon.h"
#include "dv_err.h"
#include "dv_log.h"
#include "dv_util.h"

#define S_DEFAULT_EVENTS "tcp://127.0.0.1:7702"
#define S_DEFAULT_BROKER "tcp://127.0.0.1:7700"
#define S_DEFAULT_BIND   "tcp://127.0.0.1:7703"

static volatile int s_stop;
static volatile int s_dump;
static volatile int s_reload;

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
        "  --bind EP            query socket   (" S_DEFAULT_BIND ")\n"
        "  --insecure-bind      allow --bind beyond loopback without\n"
        "                       CurveZMQ (anyone who reaches it can query)\n"
        "  --curve-secret FILE  our certificate's secret file (env\n"
        "                       DROVER_CURVE_SECRET): our key as a client of\n"
        "                       the brokers, and the query socket's server\n"
        "                       certificate when an allow-list is given\n"
        "  --curve-server FILE  the brokers' public certificate (env\n"
        "                       DROVER_CURVE_SERVER): CurveZMQ to the brokers\n"
        "  --curve-clients DIR, --curve-operators DIR, --curve-observers DIR\n"
        "                       CurveZMQ on the query socket: public\n"
        "                       certificates that may query (read-only)\n"
        "  --curve-workers DIR  worker keys: admitted, every query refused\n"
        "  --http ADDR:PORT     /metrics and /api     (127.0.0.1:7780; off)\n"
        "  --http-token FILE    /api needs \"Authorization: Bearer TOKEN\";\n"
        "                       FILE holds the token, mode 0600\n"
        "  --metrics-token      /metrics needs the token too\n"
        "  --insecure-http      serve --http beyond loopback without a token\n"
        "  --http-cert FILE     HTTPS: certificate (PEM), with --http-key\n"
        "  --http-key FILE      HTTPS: its private key (PEM), mode 0600\n"
        "  --store URL          history: a SQLite file (PATH or sqlite:PATH)\n"
        "                       or postgres://...       (collector.db)\n"
        "  --retention D        keep history this long       (7d)\n"
        "  --snapshot S         refresh each broker's snapshot this often (5)\n"
        "  --timeout S          a broker silent this long to a status\n"
        "                       request is reported down      (3)\n"
        "  --log-level L        debug|info|warn|error         (info)\n"
        "  --log-format F       json (default) | text\n"
        "  -h, --help\n"
        "\n"
        "Durations are seconds, fractions allowed, or with a unit (250ms, 2m,\n"
        "1h, 7d). SIGUSR1 writes a state dump to the log; SIGHUP reloads the\n"
        "query socket's certificate and allow-lists; SIGTERM/SIGINT stop\n"
        "after the current pass (its history is committed). See\n"
        "docs/security.md.\n");
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

/* The access flags, and the secrets read from their files. */
typedef struct {
    bool insecure_bind, insecure_http;
    const char *token_file, *cert_file, *key_file;
    char *token, *cert, *key; /* owned; wiped when freed */
    bool http_local;          /* --http is on loopback */
} s_access_t;

static void
s_access_free(s_access_t *a)
{
    collector_access_free_secret(&a->token);
    collector_access_free_secret(&a->cert);
    collector_access_free_secret(&a->key);
}

/* Checks the access flags against the endpoints, reads the token, the
 * certificate and the key into a and points cfg->http_access at them.
 * Returns 0, or -1 after printing the reason (a usage error). */
static int
s_access(const dv_daemon_t *d, collector_config_t *cfg, s_access_t *a)
{
    if (!cfg->query_curve.secret_file && !a->insecure_bind &&
        !dv_endpoint_is_local(cfg->bind)) {
        dv_daemon_fail(d,
                       "--bind %s listens beyond loopback, where anyone who "
                       "reaches it can query every job: set up CurveZMQ "
                       "(--curve-secret and allow-lists, docs/security.md), "
                       "bind 127.0.0.1, [::1] or ipc://, or give "
                       "--insecure-bind to accept that",
                       cfg->bind);
        return -1;
    }
    if (!cfg->http)
        return 0; /* no HTTP: its flags do not matter */
    if (!a->cert_file != !a->key_file) {
        dv_daemon_fail(d, "--http-cert and --http-key go together");
        return -1;
    }
    if (cfg->http_access.metrics_token && !a->token_file) {
        dv_daemon_fail(d, "--metrics-token needs --http-token FILE");
        return -1;
    }
    char err[768];
    int local = collector_http_addr_is_loopback(cfg->http, err, sizeof err);
    if (local < 0) {
        dv_daemon_fail(d, "--http %s: %s", cfg->http, err);
        return -1;
    }
    a->http_local = local;
    if (!local && !a->token_file && !a->insecure_http) {
        dv_daemon_fail(d,
                       "--http %s listens beyond loopback and no "
                       "--http-token is given, so anyone who reaches it "
                       "reads every job: give --http-token FILE (better with "
                       "--http-cert and --http-key), or --insecure-http to "
                       "serve it open anyway",
                       cfg->http);
        return -1;
    }
    if (a->cert_file && !collector_http_tls_supported()) {
        dv_daemon_fail(d, "--http-cert: this libmicrohttpd was built without "
                          "TLS (GnuTLS), so it cannot serve HTTPS");
        return -1;
    }
    size_t len;
    if ((a->token_file &&
         !(a->token = collector_access_read_token(a->token_file, "--http-token",
                                                  err, sizeof err))) ||
        (a->cert_file &&
         !(a->cert = collector_access_read_public(a->cert_file, "--http-cert",
                                                  err, sizeof err))) ||
        (a->key_file &&
         !(a->key = collector_access_read_secret(a->key_file, "--http-key",
                                                 &len, err, sizeof err)))) {
        s_access_free(a);
        dv_daemon_fail(d, "%s", err);
        return -1;
    }
    cfg->http_access.token = a->token;
    cfg->http_access.cert = a->cert;
    cfg->http_access.key = a->key;
    return 0;
}

/* The warnings of an open door, once logging runs. */
static void
s_access_warn(const collector_config_t *cfg, const s_access_t *a)
{
    if (!cfg->query_curve.secret_file && !dv_endpoint_is_local(cfg->bind))
        dv_log(DV_WARN, "collector.insecure_bind",
               DV_STR("endpoint", cfg->bind),
               DV_STR("why", "--insecure-bind: the query socket listens "
                             "beyond loopback without CurveZMQ; anyone who "
                             "reaches it can query every job"));
    if (!cfg->http || a->http_local)
        return;
    if (!a->token)
        dv_log(DV_WARN, "collector.insecure_http", DV_STR("address", cfg->http),
               DV_STR("why", "--insecure-http: /api and /metrics are served "
                             "beyond loopback without a token; anyone who "
                             "reaches them reads every job"));
    else if (!a->cert)
        dv_log(DV_WARN, "collector.http_token_in_clear",
               DV_STR("address", cfg->http),
               DV_STR("why", "--http-token without --http-cert: the token "
                             "crosses the network in plain HTTP"));
}

int
collector_main(int argc, char **argv)
{
    collector_config_t cfg = {
        .bind = S_DEFAULT_BIND,
        .http = "127.0.0.1:7780",
        .store = "collector.db",
        .retention_ms = 7LL * 86400 * 1000,
        .snapshot_ms = 5000,
        .timeout_ms = 3000,
    };
    const char *events = dv_env_or("DROVER_EVENTS", S_DEFAULT_EVENTS);
    const char *brokers = getenv("DROVER_BROKER");
    s_access_t acc = { 0 };
    const char *curve_secret = NULL, *curve_server = NULL;
    const dv_flag_t flags[] = {
        DV_FLAG_STR("events", &events),
        DV_FLAG_STR("broker", &brokers),
        DV_FLAG_STR("bind", &cfg.bind),
        DV_FLAG_ON("insecure-bind", &acc.insecure_bind),
        DV_FLAG_CALL("http", s_http, &cfg.http),
        DV_FLAG_STR("http-token", &acc.token_file),
        DV_FLAG_ON("metrics-token", &cfg.http_access.metrics_token),
        DV_FLAG_ON("insecure-http", &acc.insecure_http),
        DV_FLAG_STR("http-cert", &acc.cert_file),
        DV_FLAG_STR("http-key", &acc.key_file),
        DV_FLAG_STR("store", &cfg.store),
        DV_FLAG_CALL("retention", s_duration, &cfg.retention_ms),
        DV_FLAG_CALL("snapshot", s_duration, &cfg.snapshot_ms),
        DV_FLAG_CALL("timeout", s_duration, &cfg.timeout_ms),
        DV_FLAG_INTEGER("events-hwm", &cfg.events_hwm, 1, 1 << 30),
        DV_FLAG_STR("curve-secret", &curve_secret),
        DV_FLAG_STR("curve-server", &curve_server),
        DV_FLAG_STR("curve-clients", &cfg.query_curve.dirs[DV_ROLE_CLIENT]),
        DV_FLAG_STR("curve-operators", &cfg.query_curve.dirs[DV_ROLE_OPERATOR]),
        DV_FLAG_STR("curve-workers", &cfg.query_curve.dirs[DV_ROLE_WORKER]),
        DV_FLAG_STR("curve-observers", &cfg.query_curve.dirs[DV_ROLE_OBSERVER]),
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
    /* One certificate is our identity both ways: as a client of the
     * brokers (with --curve-server; the brokers of one group share one
     * server certificate) and as the server of the query socket (with an
     * allow-list). */
    dv_curve_client_env(&curve_secret, &curve_server);
    if (curve_secret && !*curve_secret)
        curve_secret = NULL;
    if (curve_server && !*curve_server)
        curve_server = NULL;
    bool query_curve = false;
    for (int r = 0; r < DV_ROLE_COUNT_; r++) {
        const char **dir = &cfg.query_curve.dirs[r];
        if (*dir && !**dir)
            *dir = NULL;
        if (*dir && !curve_secret)
            return dv_daemon_fail(&d, "--curve-%ss needs --curve-secret",
                                  dv_role_name((dv_role_t)r));
        query_curve = query_curve || *dir;
    }
    if (query_curve)
        cfg.query_curve.secret_file = curve_secret;
    char err[512];
    if ((curve_server || !query_curve) &&
        dv_curve_client_load(&cfg.curve, curve_secret, curve_server, err,
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
    if (s_access(&d, &cfg, &acc) != 0) {
        dv_curve_client_wipe(&cfg.curve);
        dv_strv_free(&cfg.events);
        dv_strv_free(&cfg.brokers);
        return 2;
    }
    dv_daemon_start(&d, &s_stop, &s_dump);
    dv_daemon_on_reload(&s_reload);
    s_access_warn(&cfg, &acc);
    if (!cfg.nbrokers)
        dv_log(DV_WARN, "collector.no_snapshots",
               DV_STR("why", "no --broker endpoints: queue depths and worker "
                             "lists come from events only"));

    collector_t *collector = collector_new(&cfg);
    rc = 1;
    if (collector) {
        collector_set_reload_flag(collector, &s_reload);
        rc = collector_run(collector, &s_stop, &s_dump) == 0 ? 0 : 1;
        collector_destroy(&collector);
        dv_log(DV_INFO, "collector.stopped");
    }
    dv_curve_client_wipe(&cfg.curve);
    dv_strv_free(&cfg.events);
    dv_strv_free(&cfg.brokers);
    s_access_free(&acc);
    return rc;
}
