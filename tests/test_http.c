/* The http handler against the stand-in LLM API (tests/fixtures/llm_stub),
 * with the real broker and worker: API keys that are rate limited, revoked
 * or wrong; a burst of 500s that opens the circuit breaker; the failure
 * categories; keys never leaving the worker's request headers.
 *
 * The stub counts each key's requests in a rolling 60 s window and answers
 * 429 with a Retry-After of the seconds until the oldest leaves it, so a
 * job that got a 429 is retried about a minute later: the rate-limit test
 * takes a little over a minute, the others a few seconds. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>

#include "dv_clock.h"
#include "dv_json.h"
#include "dv_proto.h"
#include "dv_util.h"
#include "harness.h"

#ifndef LLM_STUB_BIN
#define LLM_STUB_BIN "llm_stub"
#endif

/* Key strings: long and distinctive, so finding one anywhere means it
 * leaked. */
#define KEY_A       "sk-drover-test-A-7f3e91c0b2d84a65"
#define KEY_B       "sk-drover-test-B-19d0c3e8a7f25b46"
#define KEY_REVOKED "sk-drover-test-R-0c8e5f2a9b1d7e34"

/* ---- helpers ------------------------------------------------------------ */

static void
s_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Starts the stub (harness_start_stub) as NAME with the given flags. */
static void
s_stub_start(harness_t *h, const char *name, const char *const *args,
             harness_stub_t *st)
{
    assert_int_equal(harness_start_stub(h, LLM_STUB_BIN, name, args, st), 0);
}

/* Outcomes of a batch, and every result and failure text, to search for
 * keys. */
typedef struct {
    int n, succeeded, dead, other;
    int max_attempts;
    char *texts;
    size_t len, cap;
    char category[16][32];
    char error[16][512];
    int attempts[16];
} s_outcome_t;

static void
s_text(s_outcome_t *o, const char *s)
{
    if (!s)
        return;
    size_t n = strlen(s);
    if (o->len + n + 2 > o->cap) {
        o->cap = (o->len + n + 2) * 2;
        o->texts = realloc(o->texts, o->cap);
        assert_non_null(o->texts);
    }
    memcpy(o->texts + o->len, s, n);
    o->len += n;
    o->texts[o->len++] = '\n';
    o->texts[o->len] = '\0';
}

static int
s_on_result(const drover_result_t *r, void *arg)
{
    s_outcome_t *o = arg;
    o->n++;
    if (!strcmp(r->state, "succeeded"))
        o->succeeded++;
    else if (!strcmp(r->state, "dead"))
        o->dead++;
    else
        o->other++;
    if (r->attempts > o->max_attempts)
        o->max_attempts = r->attempts;
    s_text(o, r->result_json);
    s_text(o, r->error);
    if (r->index < 16) {
        snprintf(o->category[r->index], 32, "%s",
                 r->category ? r->category : "");
        snprintf(o->error[r->index], 512, "%s", r->error ? r->error : "");
        o->attempts[r->index] = r->attempts;
    }
    return 0;
}

/* Submits n jobs of type with payloads {"prompt": "<prefix> N"} (or the
 * given payload for all), waits for all of them. */
static void
s_run_batch(harness_t *h, const char *type, const char *prefix,
            const char *payload, int n, int max_attempts, double timeout_s,
            s_outcome_t *o, int wait_ms)
{
    drover_job_t *jobs = calloc((size_t)n, sizeof *jobs);
    drover_ack_t *acks = calloc((size_t)n, sizeof *acks);
    char(*payloads)[128] = calloc((size_t)n, sizeof *payloads);
    const char **ids = calloc((size_t)n, sizeof *ids);
    assert_true(jobs && acks && payloads && ids);
    for (int i = 0; i < n; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = type;
        if (payload)
            snprintf(payloads[i], sizeof payloads[i], "%s", payload);
        else
            snprintf(payloads[i], sizeof payloads[i], "{\"prompt\": \"%s %d\"}",
                     prefix, i + 1);
        jobs[i].payload_json = payloads[i];
        jobs[i].max_attempts = max_attempts;
        jobs[i].timeout_s = timeout_s;
        jobs[i].backoff_base_s = 0.1;
        jobs[i].backoff_cap_s = 0.5;
    }
    if (!h->client)
        h->client = drover_connect(h->clients, harness_scale(5000));
    assert_non_null(h->client);
    assert_int_equal(drover_submit_many(h->client, jobs, (size_t)n, acks),
                     DROVER_OK);
    for (int i = 0; i < n; i++) {
        assert_string_equal(acks[i].error, "");
        ids[i] = acks[i].id;
    }
    assert_int_equal(drover_wait(h->client, ids, (size_t)n,
                                 harness_scale(wait_ms), s_on_result, o),
                     DROVER_OK);
    assert_int_equal(o->n, n);
    free(jobs);
    free(acks);
    free(payloads);
    free(ids);
}

/* The stub's record: one line per answered request. */
typedef struct {
    int64_t ts, done;
    char key[64];
    int status;
    int retry_after;
    char prompt[24];
    char model[72];
} s_rec_t;

static s_rec_t *
s_read_record(const char *path, int *n_out)
{
    size_t len;
    char *text = dv_read_file(path, &len);
    if (!text)
        fail_msg("cannot read the stub's record %s: %s", path, strerror(errno));
    int cap = 1024, n = 0;
    s_rec_t *r = malloc((size_t)cap * sizeof *r);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        if (n == cap)
            r = realloc(r, (size_t)(cap *= 2) * sizeof *r);
        memset(&r[n], 0, sizeof r[n]);
        r[n].ts = json_integer_value(json_object_get(j, "ts_ms"));
        r[n].done = json_integer_value(json_object_get(j, "done_ms"));
        r[n].status = (int)json_integer_value(json_object_get(j, "status"));
        r[n].retry_after =
            (int)json_integer_value(json_object_get(j, "retry_after"));
        const char *k = json_string_value(json_object_get(j, "key"));
        const char *p = json_string_value(json_object_get(j, "prompt"));
        snprintf(r[n].key, sizeof r[n].key, "%s", k ? k : "");
        snprintf(r[n].prompt, sizeof r[n].prompt, "%s", p ? p : "");
        const char *m = json_string_value(json_object_get(j, "model"));
        snprintf(r[n].model, sizeof r[n].model, "%s", m ? m : "");
        json_decref(j);
        n++;
    }
    free(text);
    *n_out = n;
    return r;
}

static int
s_count(const s_rec_t *r, int n, const char *key, int status)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        if ((!key || !strcmp(r[i].key, key)) &&
            (!status || r[i].status == status))
            c++;
    return c;
}

/* Most requests with key (any answer) that arrived within any window_ms. */
static int
s_max_in_window(const s_rec_t *r, int n, const char *key, int64_t window_ms)
{
    int64_t *t = malloc((size_t)(n ? n : 1) * sizeof *t);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(r[i].key, key))
            t[m++] = r[i].ts;
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && t[j - 1] > t[j]; j--) {
            int64_t x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    int best = 0;
    for (int i = 0, lo = 0; i < m; i++) {
        while (t[i] - t[lo] >= window_ms)
            lo++;
        if (i - lo + 1 > best)
            best = i - lo + 1;
    }
    free(t);
    return best;
}

/* Most requests with key (any answer) that arrived within any 60 s. */
static int
s_max_in_60s(const s_rec_t *r, int n, const char *key)
{
    return s_max_in_window(r, n, key, 60000);
}

/* The broker's log, every worker log and every store file. */
static void
s_assert_no_keys(harness_t *h, const s_outcome_t *o, const char *const *keys)
{
    const char *files[] = { "broker.log", "worker-1.log",  "worker-2.log",
                            "drover.db",  "drover.db-wal", "drover.db-shm" };
    for (int k = 0; keys[k]; k++) {
        for (size_t f = 0; f < sizeof files / sizeof files[0]; f++)
            if (harness_file_has(h, files[f], keys[k]))
                fail_msg("%s holds a key string", files[f]);
        if (o->texts && strstr(o->texts, keys[k]))
            fail_msg("a result or failure message holds a key string");
    }
}

/* Waits for a worker heartbeat on the events socket and returns the
 * worker's metrics body as JSON (new reference), or NULL. */
static json_t *
s_heartbeat_body(harness_t *h)
{
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int linger = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "worker.heartbeat", 16);
    assert_int_equal(zmq_connect(sub, h->events), 0);
    json_t *body = NULL;
    int64_t deadline = dv_mono_ms() + harness_scale(5000);
    harness_events_t rd;
    harness_events_init(&rd, sub);
    while (!body && dv_mono_ms() < deadline) {
        const dv_event_t *ev = harness_events_next(&rd, 200);
        if (!ev || !ev->body.ptr)
            continue;
        /* The broker passes the worker's body on as "metrics". */
        json_t *b = dv_msgpack_to_json(ev->body.ptr, ev->body.len, NULL, 0);
        json_t *metrics = json_object_get(b, "metrics");
        if (metrics && json_object_get(metrics, "keys"))
            body = json_incref(metrics);
        json_decref(b);
    }
    harness_events_close(&rd);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return body;
}

static const char *
s_config(harness_t *h, const char *json)
{
    static char path[320];
    snprintf(path, sizeof path, "%s/worker.json", h->dir);
    s_write(path, json);
    return path;
}

/* ---- tests --------------------------------------------------------------- */

/* 300 jobs over three keys: key-1's limit at the server is the worker's
 * rpm, key-2's is far lower (429s, a cooldown), key-3 is revoked (401).
 * Every job succeeds; the revoked key is used once; no key goes over the
 * worker's rate; no retry comes before the Retry-After it was given; no
 * key string is written anywhere. */
static void
t_keys_and_rates(void **state)
{
    harness_t *h = *state;
    enum { N = 300, RPM = 300 };
    const char *stub_args[] = { "--key",     KEY_A ":300", "--key",
                                KEY_B ":40", "--revoked",  KEY_REVOKED,
                                "--latency", "20",         NULL };
    harness_stub_t stub;
    s_stub_start(h, "stub", stub_args, &stub);
    char keys[320];
    snprintf(keys, sizeof keys, "%s/keys.txt", h->dir);
    s_write(keys, "# test keys\n" KEY_A "\n" KEY_B "\n" KEY_REVOKED "\n");
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\"http_concurrency\": 50, \"http\": {\"title\": {"
             "\"url\": \"http://127.0.0.1:%d/v1/chat/completions\", "
             "\"headers\": {\"X-Request-Id\": \"{{job.id}}\"}, "
             "\"body\": {\"model\": \"stub-1\", \"messages\": [{\"role\": "
             "\"user\", \"content\": \"{{payload.prompt}}\"}]}, "
             "\"result\": \"/choices/0/message/content\", "
             "\"connect_timeout\": 2, \"timeout\": 10, "
             "\"keys\": {\"file\": \"%s\"}, \"rpm\": %d, "
             "\"breaker\": {\"failures\": 5, \"cooldown\": 1}}}}",
             stub.port, keys, RPM);
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--config", s_config(h, cfg), "--concurrency",
                            "1",        "--prefetch",     "0",
                            NULL };
    assert_true(harness_start_worker(h, wargs) > 0);

    s_outcome_t o = { 0 };
    s_run_batch(h, "title", "a title for article", NULL, N, 10, 0, &o, 150000);
    assert_int_equal(o.succeeded, N);
    assert_non_null(strstr(o.texts, "Title: A Title For Article"));

    int n;
    s_rec_t *r = s_read_record(stub.record, &n);
    /* The revoked key: one request, its first 401, never again. */
    assert_int_equal(s_count(r, n, KEY_REVOKED, 0), 1);
    assert_int_equal(s_count(r, n, KEY_REVOKED, 401), 1);
    /* key-2's low limit at the server was hit: 429s with Retry-After. */
    int r429 = s_count(r, n, KEY_B, 429);
    assert_true(r429 >= 1);
    /* No key went over the worker's rate, and key-1, limited at the server
     * to exactly that rate, never heard a 429. */
    assert_true(s_max_in_60s(r, n, KEY_A) <= RPM);
    assert_true(s_max_in_60s(r, n, KEY_B) <= RPM);
    assert_int_equal(s_count(r, n, KEY_A, 429), 0);
    assert_int_equal(s_count(r, n, NULL, 200), N);
    /* After a 429, that job's next request (on any key) came no earlier
     * than the Retry-After it was given. */
    int checked = 0;
    for (int i = 0; i < n; i++) {
        if (r[i].status != 429)
            continue;
        assert_true(r[i].retry_after >= 1);
        int64_t earliest = r[i].done + (int64_t)r[i].retry_after * 1000;
        for (int j = 0; j < n; j++)
            if (j != i && !strcmp(r[j].prompt, r[i].prompt) &&
                r[j].ts >= r[i].ts && r[j].ts < earliest &&
                !(r[j].ts == r[i].ts && j < i))
                fail_msg("request %d came %lld ms before its Retry-After "
                         "ended",
                         j, (long long)(earliest - r[j].ts));
        checked++;
    }
    assert_int_equal(checked, r429);
    free(r);
    /* The store saw the 429s as rate_limited with key-2's id. */
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM attempts WHERE "
                           "category='rate_limited' AND key_id='key-2' AND "
                           "http_status=429 AND retry_after_ms>=1000"),
        r429);

    /* Key health travels in the heartbeats, by id. */
    json_t *body = s_heartbeat_body(h);
    assert_non_null(body);
    json_t *ks = json_object_get(body, "keys");
    assert_int_equal(json_array_size(ks), 3);
    json_t *k1 = json_array_get(ks, 0), *k2 = json_array_get(ks, 1),
           *k3 = json_array_get(ks, 2);
    assert_string_equal(json_string_value(json_object_get(k1, "id")), "key-1");
    assert_string_equal(json_string_value(json_object_get(k3, "state")),
                        "disabled");
    assert_int_equal(json_integer_value(json_object_get(k3, "requests")), 1);
    assert_int_equal(json_integer_value(json_object_get(k2, "rate_limited")),
                     r429);
    assert_true(json_integer_value(json_object_get(k1, "ok")) > 0);
    assert_int_equal(strlen(json_string_value(json_object_get(k1, "hash"))), 8);
    json_t *http = json_object_get(body, "http");
    assert_non_null(http);
    json_t *b0 = json_array_get(json_object_get(http, "breakers"), 0);
    char ep[64];
    snprintf(ep, sizeof ep, "127.0.0.1:%d", stub.port);
    assert_string_equal(json_string_value(json_object_get(b0, "endpoint")), ep);
    assert_string_equal(json_string_value(json_object_get(b0, "state")),
                        "closed");
    char *dumped = json_dumps(body, 0);
    s_text(&o, dumped);
    free(dumped);
    json_decref(body);

    /* SIGUSR1 dumps key states, by id. */
    assert_int_equal(kill(h->procs[h->nprocs - 1], SIGUSR1), 0);
    char wlog[320];
    snprintf(wlog, sizeof wlog, "%s/worker-1.log", h->dir);
    int64_t deadline = dv_mono_ms() + harness_scale(5000);
    bool dumped_keys = false;
    while (!dumped_keys && dv_mono_ms() < deadline) {
        char *text = dv_read_file(wlog, NULL);
        dumped_keys = text && strstr(text, "\"worker.state_key\"") &&
                      strstr(text, "\"key\":\"key-3\"") &&
                      strstr(text, "\"worker.state_breaker\"");
        free(text);
        if (!dumped_keys)
            poll(NULL, 0, 20); /* look again */
    }
    assert_true(dumped_keys);
    assert_non_null(strstr(o.texts, "key-1"));

    const char *secrets[] = { KEY_A, KEY_B, KEY_REVOKED, NULL };
    s_assert_no_keys(h, &o, secrets);
    free(o.texts);
}

/* The breaker tests' setting: a stub whose first 8 answers are 500s, and a
 * worker with one key, 4 requests at a time, and a breaker that opens after
 * 5 failures for 1 s. max_wait_json is "" (the default) or a config entry. */
static void
s_breaker_setup(harness_t *h, const char *max_wait_json, harness_stub_t *stub)
{
    const char *stub_args[] = { "--key",        KEY_A, "--latency", "20",
                                "--fail-burst", "1:8", NULL };
    s_stub_start(h, "stub", stub_args, stub);
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"http_concurrency\": 4, \"http\": {\"title\": {"
             "\"url\": \"http://127.0.0.1:%d/v1/chat/completions\", "
             "\"body\": {\"model\": \"stub-1\", \"messages\": [{\"role\": "
             "\"user\", \"content\": \"{{payload.prompt}}\"}]}, "
             "\"result\": \"/choices/0/message/content\", "
             "\"keys\": {\"env\": \"DROVER_TEST_HTTP_KEY\"}, %s"
             "\"breaker\": {\"failures\": 5, \"cooldown\": 1}}}}",
             stub->port, max_wait_json);
    setenv("DROVER_TEST_HTTP_KEY", KEY_A, 1);
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--config", s_config(h, cfg), "--concurrency",
                            "1",        "--prefetch",     "0",
                            NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    unsetenv("DROVER_TEST_HTTP_KEY");
}

/* A burst of 500s opens the breaker. With max_wait 0, waiting jobs fail
 * fast, retryable, saying the circuit is open; after the cooldown a probe
 * closes it and every job succeeds. */
static void
t_breaker(void **state)
{
    harness_t *h = *state;
    enum { N = 40 };
    harness_stub_t stub;
    s_breaker_setup(h, "\"max_wait\": 0, ", &stub);

    s_outcome_t o = { 0 };
    s_run_batch(h, "title", "breaker", NULL, N, 50, 0, &o, 60000);
    assert_int_equal(o.succeeded, N);

    int n;
    s_rec_t *r = s_read_record(stub.record, &n);
    assert_int_equal(s_count(r, n, NULL, 500), 8);
    assert_int_equal(s_count(r, n, NULL, 200), N);
    free(r);
    assert_int_equal(
        harness_sql_int(h, "SELECT count(*) FROM attempts WHERE "
                           "category='upstream' AND http_status=500 AND "
                           "retryable=1 AND key_id='key-1'"),
        8);
    /* Failed fast while open: no request, retryable, with the time left. */
    assert_true(harness_sql_int(h, "SELECT count(*) FROM attempts WHERE "
                                   "category='upstream' AND retryable=1 AND "
                                   "message LIKE 'circuit open for "
                                   "127.0.0.1:%' AND retry_after_ms>0") >= 1);
    char wlog[320];
    snprintf(wlog, sizeof wlog, "%s/worker-1.log", h->dir);
    char *text = dv_read_file(wlog, NULL);
    assert_non_null(text);
    char *open = strstr(text, "\"worker.breaker_open\"");
    assert_non_null(open);
    assert_non_null(strstr(open, "\"worker.breaker_half_open\""));
    assert_non_null(strstr(open, "\"worker.breaker_closed\""));
    free(text);
    json_t *body = s_heartbeat_body(h);
    assert_non_null(body);
    json_t *b0 = json_array_get(
        json_object_get(json_object_get(body, "http"), "breakers"), 0);
    assert_string_equal(json_string_value(json_object_get(b0, "state")),
                        "closed");
    assert_true(json_integer_value(json_object_get(b0, "opened")) >= 1);
    json_decref(body);
    const char *secrets[] = { KEY_A, NULL };
    s_assert_no_keys(h, &o, secrets);
    free(o.texts);
}

/* How other outcomes map to categories: a 404, a payload the template
 * cannot use, an answer slower than the timeout, a response without the
 * result field, every key revoked. */
static void
t_failures(void **state)
{
    harness_t *h = *state;
    const char *stub_args[] = { "--key", KEY_A, "--revoked", KEY_REVOKED,
                                NULL };
    harness_stub_t fast, slow;
    s_stub_start(h, "stub", stub_args, &fast);
    const char *slow_args[] = { "--key", KEY_A,       "--slow-every",
                                "1",     "--slow-ms", "3000",
                                NULL };
    s_stub_start(h, "slow", slow_args, &slow);
    char keys[320], revoked[320];
    snprintf(keys, sizeof keys, "%s/keys.txt", h->dir);
    s_write(keys, KEY_A "\n");
    snprintf(revoked, sizeof revoked, "%s/revoked.txt", h->dir);
    s_write(revoked, KEY_REVOKED "\n");
    const char *body = "\"body\": {\"model\": \"m\", \"messages\": "
                       "[{\"role\": \"user\", \"content\": "
                       "\"{{payload.prompt}}\"}]}";
    char cfg[4096];
    snprintf(cfg, sizeof cfg,
             "{\"http\": {"
             "\"notfound\": {\"url\": \"http://127.0.0.1:%d/v1/nope\", %s, "
             "\"keys\": {\"file\": \"%s\"}}, "
             "\"title\": {\"url\": \"http://127.0.0.1:%d/v1/chat/"
             "completions\", %s, \"keys\": {\"file\": \"%s\"}, "
             "\"result\": \"/choices/0/message/content\"}, "
             "\"nofield\": {\"url\": \"http://127.0.0.1:%d/v1/chat/"
             "completions\", %s, \"keys\": {\"file\": \"%s\"}, "
             "\"result\": \"/choices/0/answer\"}, "
             "\"whole\": {\"url\": \"http://127.0.0.1:%d/v1/chat/"
             "completions\", %s, \"keys\": {\"file\": \"%s\"}}, "
             "\"slow\": {\"url\": \"http://127.0.0.1:%d/v1/chat/"
             "completions\", %s, \"keys\": {\"file\": \"%s\"}, "
             "\"timeout\": 0.3}, "
             "\"revoked\": {\"url\": \"http://127.0.0.1:%d/v1/chat/"
             "completions\", %s, \"keys\": {\"file\": \"%s\"}}}}",
             fast.port, body, keys, fast.port, body, keys, fast.port, body,
             keys, fast.port, body, keys, slow.port, body, keys, fast.port,
             body, revoked);
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--config", s_config(h, cfg), "--concurrency", "1",
                            NULL };
    assert_true(harness_start_worker(h, wargs) > 0);

    s_outcome_t o = { 0 };
    s_run_batch(h, "notfound", "x", NULL, 1, 3, 0, &o, 20000);
    assert_int_equal(o.dead, 1);
    assert_int_equal(o.attempts[0], 1);
    assert_string_equal(o.category[0], "invalid_input");
    assert_non_null(strstr(o.error[0], "HTTP 404 from 127.0.0.1:"));

    memset(o.category, 0, sizeof o.category);
    o.n = o.dead = 0;
    s_run_batch(h, "title", NULL, "{\"text\": \"no prompt\"}", 1, 3, 0, &o,
                20000);
    assert_int_equal(o.dead, 1);
    assert_string_equal(o.category[0], "invalid_input");
    assert_non_null(strstr(o.error[0], "no field \"prompt\""));

    o.n = o.dead = 0;
    s_run_batch(h, "nofield", "p", NULL, 1, 1, 0, &o, 20000);
    assert_int_equal(o.dead, 1);
    assert_string_equal(o.category[0], "upstream");
    assert_non_null(strstr(o.error[0], "response has no /choices/0/answer"));

    o.n = o.succeeded = 0;
    s_run_batch(h, "whole", "p", NULL, 1, 1, 0, &o, 20000);
    assert_int_equal(o.succeeded, 1);
    assert_non_null(strstr(o.texts, "\"choices\""));

    o.n = o.dead = 0;
    s_run_batch(h, "slow", "p", NULL, 1, 1, 0, &o, 20000);
    assert_int_equal(o.dead, 1);
    assert_string_equal(o.category[0], "timeout");

    /* A job's own timeout wins over the handler's. */
    o.n = o.dead = 0;
    int64_t t0 = dv_mono_ms();
    s_run_batch(h, "slow", "p", NULL, 1, 1, 1.0, &o, 20000);
    assert_int_equal(o.dead, 1);
    assert_string_equal(o.category[0], "timeout");
    assert_true(dv_mono_ms() - t0 >= 900);

    o.n = o.dead = 0;
    s_run_batch(h, "revoked", "p", NULL, 1, 2, 0, &o, 20000);
    assert_int_equal(o.dead, 1);
    assert_int_equal(o.attempts[0], 2);
    assert_string_equal(o.category[0], "auth");
    assert_string_equal(o.error[0],
                        "the only API key is disabled (401/403): key-1 401");

    const char *secrets[] = { KEY_A, KEY_REVOKED, NULL };
    s_assert_no_keys(h, &o, secrets);
    free(o.texts);
}

/* By default (max_wait 60 s) a short open circuit holds jobs in the lane:
 * only the 500s themselves cost attempts, no job fails "circuit open". */
static void
t_breaker_holds_jobs(void **state)
{
    harness_t *h = *state;
    enum { N = 40 };
    harness_stub_t stub;
    s_breaker_setup(h, "", &stub);

    s_outcome_t o = { 0 };
    s_run_batch(h, "title", "breaker", NULL, N, 50, 0, &o, 60000);
    assert_int_equal(o.succeeded, N);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM attempts WHERE "
                                        "message LIKE 'circuit open%'"),
                     0);
    assert_int_equal(harness_sql_int(h, "SELECT count(*) FROM attempts"), 8);
    free(o.texts);
}

/* A JSON Lines key file: two entries, each with its own id, rpm and
 * template value ("model", used in the body as {{key.model}}), one key
 * inline and one from a variable, the second with its own url (another
 * stub). Each key's requests went to its url and carried its own model,
 * each key kept to its own rpm (the stub, limited to exactly that,
 * never answered 429, though the handler's rpm is higher), and failures
 * and heartbeats name the keys by their ids. A second type on the same
 * keys uses {{key.region}}, which no key has: its job fails as invalid
 * input naming the key and the value, and sends nothing. */
static void
t_key_entries(void **state)
{
    harness_t *h = *state;
    enum { N = 60, RPM_WEST = 5, RPM_EAST = 10, WINDOW_MS = 2000 };
    char west[64], east[64];
    snprintf(west, sizeof west, "%s:%d", KEY_A, RPM_WEST);
    snprintf(east, sizeof east, "%s:%d", KEY_B, RPM_EAST);
    /* The east key has its own url: a second stub. */
    const char *stub_args[] = { "--key",     west, "--window", "2000",
                                "--latency", "20", NULL };
    const char *stub2_args[] = { "--key",     east, "--window", "2000",
                                 "--latency", "20", NULL };
    harness_stub_t stub, stub2;
    s_stub_start(h, "stub", stub_args, &stub);
    s_stub_start(h, "stub2", stub2_args, &stub2);
    char keys[320];
    snprintf(keys, sizeof keys, "%s/keys.jsonl", h->dir);
    char text[1024];
    snprintf(text, sizeof text,
             "# one entry per region\n"
             "{\"id\": \"west\", \"key\": \"%s\", \"model\": \"m-west\", "
             "\"rpm\": %d}\n"
             "{\"id\": \"east\", \"key_env\": \"DROVER_TEST_EAST_KEY\", "
             "\"url\": \"http://127.0.0.1:%d/v1/chat/completions\", "
             "\"model\": \"m-east\", \"rpm\": %d, \"tpm\": 1000000}\n",
             KEY_A, RPM_WEST, stub2.port, RPM_EAST);
    s_write(keys, text);
    setenv("DROVER_TEST_EAST_KEY", KEY_B, 1);
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\"http_concurrency\": 20, \"http\": {\"title\": {"
             "\"url\": \"http://127.0.0.1:%d/v1/chat/completions\", "
             "\"body\": {\"model\": \"{{key.model}}\", \"messages\": "
             "[{\"role\": \"user\", \"content\": \"{{payload.prompt}}\"}]}, "
             "\"result\": \"/choices/0/message/content\", "
             "\"connect_timeout\": 2, \"timeout\": 10, \"max_wait\": 30, "
             "\"keys\": {\"file\": \"%s\"}, \"rpm\": 100, \"window\": 2}, "
             "\"region\": {"
             "\"url\": \"http://127.0.0.1:%d/v1/chat/completions\", "
             "\"body\": {\"model\": \"{{key.region}}\", \"messages\": "
             "[{\"role\": \"user\", \"content\": \"{{payload.prompt}}\"}]}, "
             "\"keys\": {\"file\": \"%s\"}, \"rpm\": 100, \"window\": 2}}}",
             stub.port, keys, stub.port, keys);
    assert_true(harness_start_broker(h, NULL) > 0);
    const char *wargs[] = { "--config", s_config(h, cfg), "--concurrency",
                            "1",        "--prefetch",     "0",
                            NULL };
    assert_true(harness_start_worker(h, wargs) > 0);
    unsetenv("DROVER_TEST_EAST_KEY");

    s_outcome_t o = { 0 };
    s_run_batch(h, "title", "regional title", NULL, N, 10, 0, &o, 120000);
    assert_int_equal(o.succeeded, N);
    assert_non_null(strstr(o.texts, "Title: Regional Title"));

    /* West's requests went to the handler's url, east's to its own. */
    int n, n2;
    s_rec_t *r = s_read_record(stub.record, &n);
    s_rec_t *r2 = s_read_record(stub2.record, &n2);
    assert_int_equal(s_count(r, n, NULL, 200) + s_count(r2, n2, NULL, 200), N);
    assert_true(n > 0);
    assert_true(n2 > 0);
    for (int i = 0; i < n; i++) {
        assert_string_equal(r[i].key, KEY_A);
        assert_string_equal(r[i].model, "m-west");
    }
    for (int i = 0; i < n2; i++) {
        assert_string_equal(r2[i].key, KEY_B);
        assert_string_equal(r2[i].model, "m-east");
    }
    /* Each key's own rpm held: never a 429, never more in a window. */
    assert_int_equal(s_count(r, n, NULL, 429), 0);
    assert_int_equal(s_count(r2, n2, NULL, 429), 0);
    assert_true(s_max_in_window(r, n, KEY_A, WINDOW_MS) <= RPM_WEST);
    assert_true(s_max_in_window(r2, n2, KEY_B, WINDOW_MS) <= RPM_EAST);
    free(r);
    free(r2);

    /* A template value the key lacks: invalid input, naming the key by id
     * and the value, and no request sent. */
    s_outcome_t bad = { 0 };
    s_run_batch(h, "region", "no region", NULL, 1, 1, 0, &bad, 30000);
    assert_int_equal(bad.dead, 1);
    assert_string_equal(bad.category[0], "invalid_input");
    assert_non_null(strstr(bad.error[0], "has no value \"region\""));
    assert_true(strstr(bad.error[0], "API key west ") ||
                strstr(bad.error[0], "API key east "));
    s_text(&o, bad.texts);
    free(bad.texts);
    r = s_read_record(stub.record, &n);
    r2 = s_read_record(stub2.record, &n2);
    assert_int_equal(n + n2, N);
    free(r);
    free(r2);

    /* The heartbeat names the keys by their entries' ids (listed under
     * each of the two handlers, which share one pool). */
    json_t *body = s_heartbeat_body(h);
    assert_non_null(body);
    json_t *ks = json_object_get(body, "keys");
    assert_int_equal(json_array_size(ks), 4);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(ks, 0), "id")),
        "west");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(ks, 1), "id")),
        "east");
    char *dumped = json_dumps(body, 0);
    s_text(&o, dumped);
    free(dumped);
    json_decref(body);
    const char *secrets[] = { KEY_A, KEY_B, NULL };
    s_assert_no_keys(h, &o, secrets);
    free(o.texts);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_failures, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_breaker, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_breaker_holds_jobs, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_keys_and_rates, harness_setup,
                                        harness_teardown),
        cmocka_unit_test_setup_teardown(t_key_entries, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
