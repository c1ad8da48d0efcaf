/* test_secrets - no secret in the clear, in one run that uses every kind
 * drover handles: CurveZMQ secret keys (the broker's, a client's, an
 * operator's, a worker's, an observer's, the collector's), the collector's
 * HTTP bearer token, and the API keys of a worker's http lane (one of them
 * revoked, so its failure is reported too).
 *
 * A batch runs through broker, worker (against the stand-in LLM API) and
 * collector, all with CurveZMQ. Then everything a person or a program can
 * read is gathered: the events stream (as an observer receives it), the
 * results and failure texts, the `drover` commands' JSON, the collector's
 * HTTP answers and /metrics, state dumps (SIGUSR1) of every daemon, the
 * --help of every command. After the processes are stopped, every file of
 * the run (logs, both stores with their WAL files) is read as bytes. None
 * may hold a secret, neither as text nor, for the CurveZMQ keys, as the
 * raw 32 bytes. The only files allowed to hold one are those that are the
 * secret: the secret key files, the token file, the API key file, and the
 * stand-in API's own files (it is sent the keys). */
#define _XOPEN_SOURCE 700 /* nftw */
#include <czmq.h>
#include <curl/curl.h>
#include <ftw.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>

#include "dv_clock.h"
#include "dv_curve_client.h"
#include "harness.h"

#ifndef LLM_STUB_BIN
#define LLM_STUB_BIN "llm_stub"
#endif

/* Long and distinctive, so that finding one anywhere means it leaked. */
#define KEY_A   "sk-drover-secret-A-5b1e0f7c9d2a4e68"
#define KEY_B   "sk-drover-secret-B-8c3d6a1f0e9b2754"
#define KEY_R   "sk-drover-secret-R-2f7a9c4e1b8d6035"
#define TOKEN   "drover-http-token-9e4c2b7a1f6d8053"
#define N_JOBS  40
#define N_CERTS 6

static const char *const s_certs[N_CERTS] = {
    "broker", "client1", "op1", "w1", "obs1", "collector"
};

/* Everything read from the outside during the run. */
typedef struct {
    char *buf;
    size_t len, cap;
} s_text_t;

static void
s_add(s_text_t *t, const void *p, size_t n)
{
    if (t->len + n + 2 > t->cap) {
        t->cap = (t->len + n + 2) * 2;
        t->buf = realloc(t->buf, t->cap);
        assert_non_null(t->buf);
    }
    memcpy(t->buf + t->len, p, n);
    t->len += n;
    t->buf[t->len++] = '\n';
    t->buf[t->len] = '\0';
}

static void
s_add_str(s_text_t *t, const char *s)
{
    if (s)
        s_add(t, s, strlen(s));
}

/* The secrets: each as text, and the CurveZMQ ones as raw bytes too. */
typedef struct {
    char text[N_CERTS + 4][64];
    unsigned char raw[N_CERTS][32];
    int ntext;
} s_secrets_t;

static void
s_path(harness_t *h, char *out, size_t size, const char *fmt, ...)
{
    int n = snprintf(out, size, "%s/", h->dir);
    assert_true(n > 0 && (size_t)n < size);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + n, size - (size_t)n, fmt, ap);
    va_end(ap);
}

static void
s_write_secret(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fchmod(fileno(f), 0600), 0);
    fputs(text, f);
    fclose(f);
}

static void
s_load_secrets(harness_t *h, s_secrets_t *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < N_CERTS; i++) {
        char p[512];
        s_path(h, p, sizeof p, "curve/keys/%s.key_secret", s_certs[i]);
        zcert_t *c = zcert_load(p);
        assert_non_null(c);
        snprintf(s->text[s->ntext++], 64, "%s", zcert_secret_txt(c));
        memcpy(s->raw[i], zcert_secret_key(c), 32);
        zcert_destroy(&c);
    }
    const char *plain[] = { TOKEN, KEY_A, KEY_B, KEY_R };
    for (int i = 0; i < 4; i++)
        snprintf(s->text[s->ntext++], 64, "%s", plain[i]);
}

/* Which secret bytes holds (its index), or -1. */
static int
s_leak(const s_secrets_t *s, const void *bytes, size_t len)
{
    for (int i = 0; i < s->ntext; i++)
        if (memmem(bytes, len, s->text[i], strlen(s->text[i])))
            return i;
    for (int i = 0; i < N_CERTS; i++)
        if (memmem(bytes, len, s->raw[i], 32))
            return s->ntext + i;
    return -1;
}

static const char *
s_secret_name(int i)
{
    static const char *const plain[] = { "the HTTP token", "API key A",
                                         "API key B", "the revoked API key" };
    static char name[64];
    if (i < N_CERTS)
        snprintf(name, sizeof name, "%s's secret key (text)", s_certs[i]);
    else if (i < N_CERTS + 4)
        snprintf(name, sizeof name, "%s", plain[i - N_CERTS]);
    else
        snprintf(name, sizeof name, "%s's secret key (bytes)",
                 s_certs[i - N_CERTS - 4]);
    return name;
}

/* ---- the file walk --------------------------------------------------------
 * nftw has no user argument: the walk's state is file-static. */

static const s_secrets_t *s_walk_secrets;
static int s_walk_files;
static char s_walk_seen[2048];

/* The files that are a secret themselves, and the stand-in API's own
 * (it is sent the keys: that is its job). */
static bool
s_is_secret_file(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    return (n > 11 && !strcmp(base + n - 11, ".key_secret")) ||
           !strcmp(base, "token") || !strcmp(base, "api-keys.txt") ||
           !strncmp(base, "stub.", 5);
}

static int
s_walk(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || !S_ISREG(st->st_mode) || s_is_secret_file(path))
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0; /* a socket or a file gone meanwhile */
    char *bytes = malloc((size_t)st->st_size + 1);
    assert_non_null(bytes);
    size_t len = fread(bytes, 1, (size_t)st->st_size, f);
    fclose(f);
    int leak = s_leak(s_walk_secrets, bytes, len);
    free(bytes);
    if (leak >= 0)
        fail_msg("%s holds %s", path, s_secret_name(leak));
    s_walk_files++;
    const char *base = strrchr(path, '/');
    size_t used = strlen(s_walk_seen);
    snprintf(s_walk_seen + used, sizeof s_walk_seen - used, " %s",
             base ? base + 1 : path);
    return 0;
}

/* ---- the outside views ---------------------------------------------------- */

static size_t
s_curl_write(char *p, size_t size, size_t n, void *arg)
{
    s_add(arg, p, size * n);
    return size * n;
}

/* GET http://127.0.0.1:port/path with the bearer token; the body goes to
 * t. Returns the HTTP status. */
static long
s_http_get(int port, const char *path, s_text_t *t)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    struct curl_slist *hd =
        curl_slist_append(NULL, "Authorization: Bearer " TOKEN);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_curl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hd);
    curl_easy_cleanup(c);
    return status;
}

/* Every event waiting on the events socket (the frames they came in, into
 * t); returns how many events. */
static int
s_drain_events(void *sub, s_text_t *t, int wait_ms)
{
    int n = 0;
    harness_events_t rd;
    harness_events_init(&rd, sub);
    uint64_t frames = 0;
    const dv_event_t *ev;
    while ((ev = harness_events_next(&rd, wait_ms)) != NULL) {
        if (rd.frames != frames) {
            frames = rd.frames;
            s_add(t, rd.topic, strlen(rd.topic));
            s_add(t, rd.buf, rd.len);
        }
        n++;
        wait_ms = 0;
    }
    harness_events_close(&rd);
    return n;
}

/* The port in the collector's "collector.started" line (http=HOST:PORT). */
static int
s_collector_http_port(harness_t *h)
{
    char *log = harness_read(h, "collector.log");
    assert_non_null(log);
    char *line = strstr(log, "collector.started");
    char *http = line ? strstr(line, "http=") : NULL;
    char *end = http ? strpbrk(http, " \n") : NULL;
    int port = 0;
    if (http && end) {
        *end = '\0';
        char *colon = strrchr(http, ':');
        port = colon ? atoi(colon + 1) : 0;
    }
    free(log);
    return port;
}

/* Runs `drover ARGS...` (NULL-ended), which must succeed; its output goes
 * to t. */
static void
s_cli(s_text_t *t, const char *first, ...)
{
    const char *args[16] = { first };
    int n = 1;
    va_list ap;
    va_start(ap, first);
    for (const char *a = va_arg(ap, const char *); a && n < 15;
         a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    char out[65536];
    int rc = harness_cliv(out, sizeof out, args);
    if (rc != 0)
        fail_msg("drover %s: exit %d:\n%s", first, rc, out);
    s_add_str(t, out);
}

/* ---- the run --------------------------------------------------------------- */

static void
t_no_secret_anywhere(void **state)
{
    harness_t *h = *state;
    const char *clients[] = { "client1", NULL };
    const char *operators[] = { "op1", NULL };
    const char *workers[] = { "w1", NULL };
    const char *observers[] = { "obs1", "collector", NULL };
    assert_int_equal(
        harness_curve(h, "client1", clients, operators, workers, observers), 0);
    s_secrets_t secrets;
    s_load_secrets(h, &secrets);

    /* The stand-in API, and the worker's key file and http type. */
    const char *stub_args[] = { "--key",      KEY_A ":600", "--key",
                                KEY_B ":600", "--revoked",  KEY_R,
                                "--latency",  "5",          NULL };
    harness_stub_t stub;
    assert_int_equal(
        harness_start_stub(h, LLM_STUB_BIN, "stub", stub_args, &stub), 0);
    char keys[512], token[512], cfg_path[512], cfg[2048];
    s_path(h, keys, sizeof keys, "api-keys.txt");
    s_write_secret(keys, KEY_R "\n" KEY_A "\n" KEY_B "\n");
    s_path(h, token, sizeof token, "token");
    s_write_secret(token, TOKEN "\n");
    snprintf(cfg, sizeof cfg,
             "{\"http_concurrency\": 8, \"http\": {\"title\": {"
             "\"url\": \"http://127.0.0.1:%d/v1/chat/completions\", "
             "\"body\": {\"model\": \"stub-1\", \"messages\": [{\"role\": "
             "\"user\", \"content\": \"{{payload.prompt}}\"}]}, "
             "\"result\": \"/choices/0/message/content\", "
             "\"timeout\": 10, \"keys\": {\"file\": \"%s\"}, \"rpm\": 600}}}",
             stub.port, keys);
    assert_int_equal(
        harness_write(h, "worker.json", cfg, cfg_path, sizeof cfg_path), 0);

    /* Broker, collector (CurveZMQ both ways, HTTP with the token), an
     * observer on the events, the worker. */
    assert_true(harness_start_broker(h, NULL) > 0);
    char query[400], store[512], secret[512], server[512], dirs[4][512];
    snprintf(query, sizeof query, "ipc://%s/query.sock", h->dir);
    s_path(h, store, sizeof store, "collector.db");
    s_path(h, secret, sizeof secret, "curve/keys/collector.key_secret");
    s_path(h, server, sizeof server, "curve/keys/broker.key");
    const char *roles[] = { "clients", "operators", "workers", "observers" };
    for (int i = 0; i < 4; i++)
        s_path(h, dirs[i], sizeof dirs[i], "curve/allow-%s", roles[i]);
    const char *cargs[] = { "collector",
                            "--events",
                            h->events,
                            "--broker",
                            h->clients,
                            "--bind",
                            query,
                            "--http",
                            "127.0.0.1:0",
                            "--http-token",
                            token,
                            "--metrics-token",
                            "--store",
                            store,
                            "--log-format",
                            "text",
                            "--log-level",
                            "debug",
                            "--curve-secret",
                            secret,
                            "--curve-server",
                            server,
                            "--curve-clients",
                            dirs[0],
                            "--curve-operators",
                            dirs[1],
                            "--curve-workers",
                            dirs[2],
                            "--curve-observers",
                            dirs[3],
                            NULL };
    pid_t collector = harness_spawn(h, cargs, NULL, "collector.log");
    assert_true(collector > 0);
    assert_true(harness_wait_line(h, "collector.log", "collector.resynced",
                                  harness_scale(10000)));
    int http_port = s_collector_http_port(h);
    assert_true(http_port > 0);

    void *zctx = zmq_ctx_new();
    void *sub = zmq_socket(zctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    char obs_secret[512], err[256];
    s_path(h, obs_secret, sizeof obs_secret, "curve/keys/obs1.key_secret");
    assert_int_equal(
        dv_curve_client_socket(sub, obs_secret, server, err, sizeof err), 0);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    assert_int_equal(zmq_connect(sub, h->events), 0);

    const char *wargs[] = { "--config", cfg_path, NULL };
    pid_t worker = harness_start_worker(h, wargs);
    assert_true(worker > 0);

    /* The batch: every job succeeds (the revoked key fails once and is
     * set aside). */
    s_text_t seen = { 0 };
    drover_job_t jobs[N_JOBS];
    drover_ack_t acks[N_JOBS];
    char payloads[N_JOBS][64];
    const char *ids[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "title";
        snprintf(payloads[i], sizeof payloads[i],
                 "{\"prompt\": \"an article %d\"}", i);
        jobs[i].payload_json = payloads[i];
        jobs[i].max_attempts = 5;
    }
    assert_int_equal(drover_submit_many(h->client, jobs, N_JOBS, acks),
                     DROVER_OK);
    for (int i = 0; i < N_JOBS; i++)
        ids[i] = acks[i].id;
    harness_results_t r = { 0 };
    char(*idbuf)[37] = calloc(N_JOBS, 37);
    assert_non_null(idbuf);
    for (int i = 0; i < N_JOBS; i++)
        snprintf(idbuf[i], 37, "%s", ids[i]);
    assert_int_equal(harness_wait_ids(h, idbuf, N_JOBS, &r, 60000), DROVER_OK);
    assert_int_equal(r.succeeded, N_JOBS);
    for (int i = 0; i < N_JOBS && i < 64; i++) {
        s_add_str(&seen, r.result[i]);
        s_add_str(&seen, r.error[i]);
    }
    /* The revoked key was tried, and answered 401. */
    assert_true(harness_count_lines(h, "stub.jsonl", "\"status\":401", NULL) >=
                1);

    /* What an operator reads: the commands' JSON (the collector's and the
     * broker's), with the operator's key. */
    char op_secret[512], coll_server[512];
    s_path(h, op_secret, sizeof op_secret, "curve/keys/op1.key_secret");
    s_path(h, coll_server, sizeof coll_server,
           "curve/allow-observers/collector.key");
    setenv("DROVER_CURVE_SECRET", op_secret, 1);
    setenv("DROVER_COLLECTOR_CURVE_SERVER", coll_server, 1);
    setenv("DROVER_COLLECTOR", query, 1);
    setenv("DROVER_BROKER", h->clients, 1);
    s_cli(&seen, "status", "--json", NULL);
    s_cli(&seen, "workers", "--json", NULL);
    s_cli(&seen, "queues", "--json", NULL);
    s_cli(&seen, "keys", "--json", NULL);
    s_cli(&seen, "jobs", "--json", "--limit", "100", NULL);
    s_cli(&seen, "job", ids[0], "--json", NULL);
    s_cli(&seen, "health", "--json", NULL);
    unsetenv("DROVER_COLLECTOR");
    unsetenv("DROVER_BROKER");
    unsetenv("DROVER_COLLECTOR_CURVE_SERVER");
    s_path(h, secret, sizeof secret, "curve/keys/client1.key_secret");
    setenv("DROVER_CURVE_SECRET", secret, 1); /* as harness_curve set it */
    /* The keys are there by id, the revoked one disabled (a positive
     * control for the search). */
    assert_non_null(strstr(seen.buf, "key-2"));
    assert_non_null(strstr(seen.buf, "disabled"));

    /* The collector's HTTP side. */
    const char *paths[] = { "/api/status",         "/api/workers", "/api/keys",
                            "/api/jobs?limit=100", "/api/health",  "/metrics" };
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (s_http_get(http_port, paths[i], &seen) != 200)
            fail_msg("GET %s did not answer 200", paths[i]);

    /* State dumps. */
    assert_int_equal(kill(h->broker, SIGUSR1), 0);
    assert_int_equal(kill(worker, SIGUSR1), 0);
    assert_int_equal(kill(collector, SIGUSR1), 0);
    assert_true(harness_wait_line(h, "broker.log", "broker.dump", 5000));
    assert_true(harness_wait_line(h, "worker-1.log", "worker.state", 5000));
    assert_true(harness_wait_line(h, "collector.log",
                                  "collector.dump_collector", 5000));

    /* --help of every command that takes a secret, and the top level. */
    const char *cmds[] = { "broker", "worker", "collector", "submit", "keygen",
                           "up",     "status", "job",       "keys" };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char out[32768];
        harness_cli(out, sizeof out, cmds[i], "--help", NULL);
        s_add_str(&seen, out);
    }

    /* The events an observer received (job events and heartbeats with the
     * key health of the http lane). */
    int events = s_drain_events(sub, &seen, 1000);
    assert_true(events >= N_JOBS);
    zmq_close(sub);
    zmq_ctx_term(zctx);

    int leak = s_leak(&secrets, seen.buf, seen.len);
    if (leak >= 0)
        fail_msg("%s is in what the run showed (events, results, commands, "
                 "HTTP, --help)",
                 s_secret_name(leak));
    free(seen.buf);
    free(idbuf);

    /* Every file of the run, with the processes stopped. */
    harness_kill_all(h);
    s_walk_secrets = &secrets;
    s_walk_files = 0;
    s_walk_seen[0] = '\0';
    assert_int_equal(nftw(h->dir, s_walk, 16, FTW_PHYS), 0);
    const char *must[] = { "broker.log", "worker-1.log", "collector.log",
                           "drover.db",  "collector.db", "worker.json" };
    for (size_t i = 0; i < sizeof must / sizeof *must; i++) {
        char word[64];
        snprintf(word, sizeof word, " %s", must[i]);
        if (!strstr(s_walk_seen, word))
            fail_msg("%s was not searched (searched:%s)", must[i], s_walk_seen);
    }
    assert_true(s_walk_files >= 8);
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_no_secret_anywhere, harness_setup,
                                        harness_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
