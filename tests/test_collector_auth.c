/* The collector's HTTP access with real processes: `drover collector` on
 * ipc:// in a temp dir, its HTTP side on 127.0.0.1 read with libcurl.
 *
 * Covered: /api needs the bearer token (none or a wrong one: 401 with
 * WWW-Authenticate and a JSON reason; the right one: 200); /metrics open
 * unless --metrics-token; the same over HTTPS, with a certificate made by
 * openssl at test time and checked by curl (CURLOPT_CAINFO); start-up
 * refused for a token or key file others may read, a missing certificate,
 * HTTP or the query socket beyond loopback without a token or an
 * --insecure-* flag (and accepted with one, with a warning); the token
 * and the key never in the collector's log (state dump included), its
 * answers or --help. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

/* Everything one test uses; teardown kills what it started. */
typedef struct {
    harness_t *h;
    char bind[320];   /* the collector's query endpoint */
    char events[320]; /* nobody publishes there: the collector just waits */
    char store[320];
    char token[64]; /* the secret, random per test */
    char token_path[320];
    char cert[320], key[320]; /* made by s_make_cert */
    int nlogs;
    char logs[16][32]; /* every collector log name, to grep at the end */
} s_fx_t;

static int
s_setup(void **state)
{
    s_fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    fx->h = harness_new();
    if (!fx->h) {
        free(fx);
        return -1;
    }
    snprintf(fx->bind, sizeof fx->bind, "ipc://%s/collector", fx->h->dir);
    snprintf(fx->events, sizeof fx->events, "ipc://%s/events", fx->h->dir);
    snprintf(fx->store, sizeof fx->store, "%s/collector.db", fx->h->dir);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srandom((unsigned)(ts.tv_nsec ^ getpid()));
    snprintf(fx->token, sizeof fx->token, "tok-%08lx%08lx%08lx", random(),
             random(), random());
    char text[96];
    snprintf(text, sizeof text, "%s\n", fx->token);
    if (harness_write(fx->h, "token", text, fx->token_path,
                      sizeof fx->token_path) != 0 ||
        chmod(fx->token_path, 0600) != 0) {
        harness_destroy(&fx->h);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    s_fx_t *fx = *state;
    harness_destroy(&fx->h);
    free(fx);
    return 0;
}

/* A new log name for one collector run. */
static const char *
s_log(s_fx_t *fx)
{
    assert_true(fx->nlogs < 16);
    snprintf(fx->logs[fx->nlogs], sizeof fx->logs[0], "collector-%d.log",
             fx->nlogs + 1);
    return fx->logs[fx->nlogs++];
}

/* Starts a collector with HTTP on 127.0.0.1:0 plus extra args (NULL-ended);
 * its HTTP port goes to *port. */
static pid_t
s_start(s_fx_t *fx, const char *const *extra, int *port)
{
    const char *args[40] = {
        "--events", fx->events,    "--broker",    "off",
        "--bind",   fx->bind,      "--store",     fx->store,
        "--http",   "127.0.0.1:0", "--log-level", "debug",
    };
    int n = 12;
    for (int i = 0; extra && extra[i] && n < 39; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return harness_start_collector(fx->h, fx->bind, args, s_log(fx), port);
}

/* Runs a collector that must refuse to start: exit code 2, and the reason
 * on stderr (its log) holds want. */
static void
s_refused(s_fx_t *fx, const char *const *args, const char *want)
{
    const char *argv[40] = { "collector", "--events", fx->events, "--broker",
                             "off",       "--store",  fx->store };
    int n = 7;
    for (int i = 0; args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    const char *log = s_log(fx);
    pid_t pid = harness_spawn(fx->h, argv, NULL, log);
    assert_true(pid > 0);
    int status = harness_wait_exit(fx->h, pid, 10000);
    char *text = harness_read(fx->h, log);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 2 || !text ||
        !strstr(text, want))
        fail_msg("expected exit 2 with \"%s\"; status %d, said:\n%s", want,
                 status, text ? text : "(nothing)");
    free(text);
}

typedef struct {
    char *data;
    size_t len;
} s_buf_t;

static size_t
s_collect(char *p, size_t size, size_t n, void *arg)
{
    s_buf_t *b = arg;
    char *nd = realloc(b->data, b->len + size * n + 1);
    if (!nd)
        return 0;
    memcpy(nd + b->len, p, size * n);
    b->len += size * n;
    nd[b->len] = '\0';
    b->data = nd;
    return size * n;
}

/* One answer: status, body and the WWW-Authenticate header. */
typedef struct {
    long status; /* 0: no HTTP answer at all */
    char *body;
    char www_auth[256];
} s_answer_t;

static size_t
s_header(char *p, size_t size, size_t n, void *arg)
{
    s_answer_t *a = arg;
    size_t len = size * n;
    const char name[] = "WWW-Authenticate:";
    if (len > sizeof name && !strncasecmp(p, name, sizeof name - 1)) {
        size_t v = len - (sizeof name - 1);
        if (v >= sizeof a->www_auth)
            v = sizeof a->www_auth - 1;
        memcpy(a->www_auth, p + sizeof name - 1, v);
        a->www_auth[v] = '\0';
    }
    return len;
}

/* GETs scheme://127.0.0.1:port/path with the bearer token (NULL: no
 * header), checking the server against cainfo for https. Caller frees
 * a->body. */
static void
s_get(const char *scheme, int port, const char *path, const char *token,
      const char *cainfo, s_answer_t *a)
{
    memset(a, 0, sizeof *a);
    char url[256], auth[128];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d%s", scheme, port, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *hdrs = NULL;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    s_buf_t b = { 0 };
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, s_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)harness_scale(5000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (cainfo) {
        curl_easy_setopt(c, CURLOPT_CAINFO, cainfo);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    a->body = b.data ? b.data : strdup("");
}

/* The status of one GET; a 401 must carry WWW-Authenticate: Bearer and a
 * JSON {"error": ...}, and no answer may hold the token. */
static long
s_status(s_fx_t *fx, const char *scheme, int port, const char *path,
         const char *token, const char *cainfo)
{
    s_answer_t a;
    s_get(scheme, port, path, token, cainfo, &a);
    if (a.status == 401) {
        assert_non_null(strstr(a.www_auth, "Bearer"));
        assert_non_null(strstr(a.body, "{\"error\":\""));
    }
    assert_null(strstr(a.body, fx->token));
    free(a.body);
    return a.status;
}

/* The answers with a token set: /api needs it (none, wrong: 401; right:
 * 200); /metrics too when protected, else open. */
static void
s_check_answers(s_fx_t *fx, const char *scheme, int port, const char *cainfo,
                bool metrics_protected)
{
    const char *api[] = { "/api/status", "/api/health", "/api/jobs?limit=1",
                          "/api/workers" };
    for (size_t i = 0; i < sizeof api / sizeof *api; i++) {
        assert_int_equal(s_status(fx, scheme, port, api[i], NULL, cainfo), 401);
        assert_int_equal(
            s_status(fx, scheme, port, api[i], "not-the-token", cainfo), 401);
        assert_int_equal(s_status(fx, scheme, port, api[i], fx->token, cainfo),
                         200);
    }
    /* A prefix or an extension of the token is wrong too. */
    char longer[80];
    snprintf(longer, sizeof longer, "%sx", fx->token);
    assert_int_equal(s_status(fx, scheme, port, "/api/status", longer, cainfo),
                     401);
    char shorter[64];
    snprintf(shorter, sizeof shorter, "%.*s", (int)strlen(fx->token) - 1,
             fx->token);
    assert_int_equal(s_status(fx, scheme, port, "/api/status", shorter, cainfo),
                     401);
    assert_int_equal(s_status(fx, scheme, port, "/metrics", NULL, cainfo),
                     metrics_protected ? 401 : 200);
    assert_int_equal(
        s_status(fx, scheme, port, "/metrics", "not-the-token", cainfo),
        metrics_protected ? 401 : 200);
    assert_int_equal(s_status(fx, scheme, port, "/metrics", fx->token, cainfo),
                     200);
}

/* Asks for a state dump (SIGUSR1), waits until it is in the log, stops
 * the collector. */
static void
s_dump_and_stop(s_fx_t *fx, pid_t pid)
{
    assert_int_equal(kill(pid, SIGUSR1), 0);
    assert_true(harness_wait_line(fx->h, fx->logs[fx->nlogs - 1],
                                  "collector.dump_collector", 5000));
    int status = harness_signal(fx->h, pid, SIGTERM, 5000);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* needle appears in no collector log of this test. */
static void
s_logs_lack(s_fx_t *fx, const char *needle)
{
    for (int i = 0; i < fx->nlogs; i++)
        if (harness_file_has(fx->h, fx->logs[i], needle))
            fail_msg("%s holds a secret (%s)", fx->logs[i], needle);
}

/* Makes a self-signed certificate for 127.0.0.1 and its key (mode 0600)
 * in the test dir with openssl. */
static void
s_make_cert(s_fx_t *fx)
{
    snprintf(fx->cert, sizeof fx->cert, "%s/cert.pem", fx->h->dir);
    snprintf(fx->key, sizeof fx->key, "%s/key.pem", fx->h->dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "umask 077 && openssl req -x509 -newkey ec -pkeyopt "
             "ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost "
             "-addext subjectAltName=IP:127.0.0.1,DNS:localhost "
             "-keyout '%s' -out '%s' >'%s/openssl.log' 2>&1",
             fx->key, fx->cert, fx->h->dir);
    if (system(cmd) != 0)
        fail_msg("openssl could not make a test certificate (is the Debian "
                 "package 'openssl' installed? scripts/deps.sh lists it)");
}

/* The second line of the key file: base64 of the secret key. */
static void
s_key_line(s_fx_t *fx, char *out, size_t size)
{
    char *text = harness_read(fx->h, "key.pem");
    assert_non_null(text);
    char *nl = strchr(text, '\n');
    assert_non_null(nl);
    char *end = strchr(nl + 1, '\n');
    snprintf(out, size, "%.*s", (int)(end ? end - nl - 1 : 40), nl + 1);
    free(text);
    assert_true(strlen(out) >= 32);
}

static void
t_token_http(void **state)
{
    s_fx_t *fx = *state;
    int port = 0;
    /* Without a token: open, as before. */
    pid_t pid = s_start(fx, NULL, &port);
    assert_true(pid > 0 && port > 0);
    assert_int_equal(s_status(fx, "http", port, "/api/status", NULL, NULL),
                     200);
    assert_int_equal(s_status(fx, "http", port, "/metrics", NULL, NULL), 200);
    assert_true(harness_signal(fx->h, pid, SIGTERM, 5000) >= 0);

    const char *tok[] = { "--http-token", fx->token_path, NULL };
    pid = s_start(fx, tok, &port);
    assert_true(pid > 0 && port > 0);
    s_check_answers(fx, "http", port, NULL, false);
    s_dump_and_stop(fx, pid);

    const char *all[] = { "--http-token", fx->token_path, "--metrics-token",
                          NULL };
    pid = s_start(fx, all, &port);
    assert_true(pid > 0 && port > 0);
    s_check_answers(fx, "http", port, NULL, true);
    s_dump_and_stop(fx, pid);
    assert_int_equal(harness_count_lines(fx->h, fx->logs[fx->nlogs - 1],
                                         "collector.http_unauthorized",
                                         NULL) > 0,
                     1);

    /* --help shows the flags, never a secret. */
    char out[8192];
    assert_int_equal(harness_cli(out, sizeof out, "collector", "--help", NULL),
                     0);
    assert_non_null(strstr(out, "--http-token"));
    assert_null(strstr(out, fx->token));
    s_logs_lack(fx, fx->token);
}

static void
t_token_https(void **state)
{
    s_fx_t *fx = *state;
    s_make_cert(fx);
    int port = 0;
    const char *tls[] = {
        "--http-token", fx->token_path, "--http-cert", fx->cert,
        "--http-key",   fx->key,        NULL
    };
    pid_t pid = s_start(fx, tls, &port);
    assert_true(pid > 0 && port > 0);
    s_check_answers(fx, "https", port, fx->cert, false);
    /* Plain HTTP gets no answer from an HTTPS server. */
    assert_int_equal(s_status(fx, "http", port, "/metrics", NULL, NULL), 0);
    assert_int_equal(harness_count_lines(fx->h, fx->logs[fx->nlogs - 1],
                                         "collector.started", "\"https\":true",
                                         NULL),
                     1);
    s_dump_and_stop(fx, pid);

    const char *all[] = { "--http-token",    fx->token_path,
                          "--http-cert",     fx->cert,
                          "--http-key",      fx->key,
                          "--metrics-token", NULL };
    pid = s_start(fx, all, &port);
    assert_true(pid > 0 && port > 0);
    s_check_answers(fx, "https", port, fx->cert, true);
    s_dump_and_stop(fx, pid);

    char key_line[128];
    s_key_line(fx, key_line, sizeof key_line);
    s_logs_lack(fx, fx->token);
    s_logs_lack(fx, key_line);
    s_logs_lack(fx, "PRIVATE KEY");
}

static void
t_refused(void **state)
{
    s_fx_t *fx = *state;
    s_make_cert(fx);
    char open_token[320], open_key[320];
    char text[96];
    snprintf(text, sizeof text, "%s\n", fx->token);
    assert_int_equal(
        harness_write(fx->h, "token-0644", text, open_token, sizeof open_token),
        0);
    assert_int_equal(chmod(open_token, 0644), 0);
    char *key = harness_read(fx->h, "key.pem");
    assert_non_null(key);
    assert_int_equal(
        harness_write(fx->h, "key-0640", key, open_key, sizeof open_key), 0);
    free(key);
    assert_int_equal(chmod(open_key, 0640), 0);
    char missing[320];
    snprintf(missing, sizeof missing, "%s/no-such-cert.pem", fx->h->dir);

    const char *world_token[] = { "--bind", fx->bind, "--http-token",
                                  open_token, NULL };
    s_refused(fx, world_token, "chmod 600");
    const char *no_cert[] = { "--bind",     fx->bind, "--http-cert", missing,
                              "--http-key", fx->key,  NULL };
    s_refused(fx, no_cert, "--http-cert: cannot read");
    const char *world_key[] = { "--bind",     fx->bind, "--http-cert", fx->cert,
                                "--http-key", open_key, NULL };
    s_refused(fx, world_key, "--http-key");
    const char *half_tls[] = { "--bind", fx->bind, "--http-cert", fx->cert,
                               NULL };
    s_refused(fx, half_tls, "go together");
    const char *open_http[] = { "--bind", fx->bind, "--http", "0.0.0.0:0",
                                NULL };
    s_refused(fx, open_http, "--insecure-http");
    const char *open_bind[] = { "--bind", "tcp://*:*", "--http", "off", NULL };
    s_refused(fx, open_bind, "--insecure-bind");
    /* The default --bind is loopback: without one, it starts (on 7703
     * unless that port is taken; either way it is not refused for it). */

    /* With the flags it starts, and says so in a warning. */
    const char *insecure_http[] = { "--http", "0.0.0.0:0", "--insecure-http",
                                    NULL };
    int port = 0;
    pid_t pid = s_start(fx, insecure_http, &port);
    assert_true(pid > 0);
    assert_true(harness_count_lines(fx->h, fx->logs[fx->nlogs - 1],
                                    "collector.insecure_http", NULL) > 0);
    assert_true(harness_signal(fx->h, pid, SIGTERM, 5000) >= 0);

    /* A token beyond loopback is enough; over plain HTTP it warns. */
    const char *token_http[] = { "--http", "0.0.0.0:0", "--http-token",
                                 fx->token_path, NULL };
    pid = s_start(fx, token_http, &port);
    assert_true(pid > 0);
    assert_true(harness_count_lines(fx->h, fx->logs[fx->nlogs - 1],
                                    "collector.http_token_in_clear", NULL) > 0);
    assert_true(harness_signal(fx->h, pid, SIGTERM, 5000) >= 0);

    /* The query socket beyond loopback with --insecure-bind: it starts
     * (it answers on no ipc:// endpoint, so its log says when). */
    const char *bind_any[] = {
        "collector", "--events", fx->events, "--broker",  "off",
        "--store",   fx->store,  "--bind",   "tcp://*:*", "--insecure-bind",
        "--http",    "off",      NULL
    };
    const char *log = s_log(fx);
    pid = harness_spawn(fx->h, bind_any, NULL, log);
    assert_true(pid > 0);
    assert_true(harness_wait_line(fx->h, log, "collector.started", 10000));
    assert_true(
        harness_count_lines(fx->h, log, "collector.insecure_bind", NULL) > 0);
    assert_true(harness_signal(fx->h, pid, SIGTERM, 5000) >= 0);
    s_logs_lack(fx, fx->token);
}

int
main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_token_http, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_token_https, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(t_refused, s_setup, s_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
