/* `drover collector`: its flags (dv_daemon), then the loop in collector_core. */
#include "collector.h"

#include <malloc.h>
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

/* What the flags set; collector_main() clears them, then dv_daemon_parse()
 * sets every flag's default. */
static collector_config_t s_cfg;
static s_access_t s_acc;
static struct {
    const char *events, *brokers, *curve_secret, *curve_server;
} s_o;

const char collector_about[] =
    "Subscribes to brokers' events, keeps live state and job history, "
    "answers drover status, jobs, job, workers, ... on its query socket and "
    "serves /metrics (Prometheus) and /api (JSON) over HTTP.";

const char collector_notes[] =
    "Durations are seconds, fractions allowed, or with a unit (250ms, 2m, "
    "1h, 7d).\n\n"
    "signals: SIGUSR1 writes a state dump to the log; SIGHUP reloads the "
    "query socket's certificate and allow-lists; SIGTERM or SIGINT stop "
    "after the current pass (its history is committed). See "
    "docs/collector.md and docs/security.md.";

const dv_flag_t collector_flags[] = {
    DV_FLAG_STR("events", &s_o.events, .arg = "ENDPOINT[,...]",
                .env = "DROVER_EVENTS", .dflt = S_DEFAULT_EVENTS,
                .help = "the brokers' event (PUB) endpoints to subscribe to, "
                        "1 to 16"),
    DV_FLAG_STR("broker", &s_o.brokers, .arg = "ENDPOINT[,...]",
                .env = "DROVER_BROKER",
                .help = "the same brokers' clients endpoints, in the same "
                        "order, for snapshots; off: events only; with one "
                        "broker, " S_DEFAULT_BROKER " by default"),
    DV_FLAG_STR("bind", &s_cfg.bind, .arg = "ENDPOINT", .dflt = S_DEFAULT_BIND,
                .help = "bind the query socket, which the drover commands "
                        "ask; beyond loopback it needs CurveZMQ"),
    DV_FLAG_ON("insecure-bind", &s_acc.insecure_bind,
               .help = "allow --bind beyond loopback without CurveZMQ: "
                       "anyone who reaches it can query every job"),
    DV_FLAG_STR("http", &s_cfg.http, .arg = "ADDR:PORT",
                .dflt = "127.0.0.1:7780",
                .help = "serve /metrics and /api over HTTP here (off: no "
                        "HTTP; port 0: any free port)"),
    DV_FLAG_STR("http-token", &s_acc.token_file, .arg = "FILE",
                .complete = DV_COMPLETE_FILE,
                .help = "/api needs \"Authorization: Bearer TOKEN\"; FILE "
                        "holds the token, mode 0600"),
    DV_FLAG_ON("metrics-token", &s_cfg.http_access.metrics_token,
               .help = "/metrics needs the token too"),
    DV_FLAG_ON("insecure-http", &s_acc.insecure_http,
               .help = "serve --http beyond loopback without a token"),
    DV_FLAG_STR("http-cert", &s_acc.cert_file, .arg = "FILE",
                .complete = DV_COMPLETE_FILE,
                .help = "serve HTTPS: the certificate (PEM, chain allowed), "
                        "with --http-key"),
    DV_FLAG_STR("http-key", &s_acc.key_file, .arg = "FILE",
                .complete = DV_COMPLETE_FILE,
                .help = "HTTPS: the certificate's private key (PEM), mode "
                        "0600"),
    DV_FLAG_STR("store", &s_cfg.store, .arg = "URL", .dflt = "collector.db",
                .complete = DV_COMPLETE_FILE,
                .help = "the history: a SQLite file (PATH or sqlite:PATH) or "
                        "a PostgreSQL database (postgres://...)"),
    DV_FLAG_CALL("retention", s_duration, &s_cfg.retention_ms,
                 .arg = "DURATION", .dflt = "7d",
                 .help = "keep history this long, at least 1m (days "
                         "allowed: 14d)"),
    DV_FLAG_CALL("snapshot", s_duration, &s_cfg.snapshot_ms, .arg = "SECONDS",
                 .dflt = "5",
                 .help = "ask each broker for a snapshot this often, at "
                         "least 0.1"),
    DV_FLAG_CALL("timeout", s_duration, &s_cfg.timeout_ms, .arg = "SECONDS",
                 .dflt = "3",
                 .help = "a broker that does not answer a status request for "
                         "this long is reported down, at least 0.1"),
    DV_FLAG_INTEGER("events-hwm", &s_cfg.events_hwm, 1, 1 << 30, .arg = "N",
                    .dflt = "1000",
                    .help = "event messages queued from each broker before "
                            "ZeroMQ drops more (a broker's batch of job "
                            "events is one)"),
    DV_FLAG_STR("curve-secret", &s_o.curve_secret, .arg = "FILE",
                .env = DV_CURVE_ENV_SECRET, .complete = DV_COMPLETE_FILE,
                .help = "our certificate's secret file: our key as a client "
                        "of the brokers, and the query socket's server "
                        "certificate when an allow-list is given"),
    DV_FLAG_STR("curve-server", &s_o.curve_server, .arg = "FILE",
                .env = DV_CURVE_ENV_SERVER, .complete = DV_COMPLETE_FILE,
                .help = "the brokers' public certificate: CurveZMQ to the "
                        "brokers"),
    DV_FLAG_STR("curve-clients", &s_cfg.query_curve.dirs[DV_ROLE_CLIENT],
                .arg = "DIR", .complete = DV_COMPLETE_DIR,
                .help = "CurveZMQ on the query socket: public certificates "
                        "that may query (read-only), role client"),
    DV_FLAG_STR("curve-operators", &s_cfg.query_curve.dirs[DV_ROLE_OPERATOR],
                .arg = "DIR", .complete = DV_COMPLETE_DIR,
                .help = "the same, role operator"),
    DV_FLAG_STR("curve-workers", &s_cfg.query_curve.dirs[DV_ROLE_WORKER],
                .arg = "DIR", .complete = DV_COMPLETE_DIR,
                .help = "worker keys: admitted, every query refused"),
    DV_FLAG_STR("curve-observers", &s_cfg.query_curve.dirs[DV_ROLE_OBSERVER],
                .arg = "DIR", .complete = DV_COMPLETE_DIR,
                .help = "the same as --curve-clients, role observer"),
    DV_FLAG_TABLE_END,
};

int
collector_main(int argc, char **argv)
{
    memset(&s_cfg, 0, sizeof s_cfg);
    memset(&s_acc, 0, sizeof s_acc);
    memset(&s_o, 0, sizeof s_o);
    dv_daemon_t d = { .name = "collector",
                      .about = collector_about,
                      .notes = collector_notes,
                      .flags = collector_flags };
    int rc = dv_daemon_parse(&d, argc, argv);
    if (rc >= 0)
        return rc;
    collector_config_t cfg = s_cfg;
    s_access_t acc = s_acc;
    const char *events = s_o.events, *brokers = s_o.brokers;
    const char *curve_secret = s_o.curve_secret;
    const char *curve_server = s_o.curve_server;
    if (cfg.http && !strcmp(cfg.http, "off"))
        cfg.http = NULL;
    if (cfg.snapshot_ms < 100 || cfg.timeout_ms < 100)
        return dv_daemon_fail(&d, "--snapshot and --timeout must be at least "
                                  "0.1 s");
    if (cfg.retention_ms < 60000)
        return dv_daemon_fail(&d, "--retention must be at least 1m");
    /* One certificate is our identity both ways: as a client of the
     * brokers (with --curve-server; the brokers of one group share one
     * server certificate) and as the server of the query socket (with an
     * allow-list). */
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

    /* A batch of events is decoded into one array, large enough for
     * malloc to map and unmap it each time (and to trim the heap after
     * it): keep such blocks on the heap, and the heap's top. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
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
