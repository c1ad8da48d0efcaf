/* Plugin handlers and worker limits, in one process: loading (and every
 * way it fails), the io calls, the example plugin, sizes and soft timeouts,
 * RSS, passing SIGUSR1 on, and the settings. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "dv_json.h"
#include "handler_plugin.h"
#include "worker_config.h"
#include "worker_limits.h"

/* ---- helpers ------------------------------------------------------------- */

typedef struct {
    int calls;
    int64_t last_cur, last_tot;
    char last_msg[128];
} s_prog_t;

static void
s_on_progress(void *arg, int64_t cur, int64_t tot, const char *msg, size_t len)
{
    s_prog_t *p = arg;
    p->calls++;
    p->last_cur = cur;
    p->last_tot = tot;
    snprintf(p->last_msg, sizeof p->last_msg, "%.*s", (int)len, msg);
}

typedef struct {
    char *payload; /* msgpack */
    size_t len;
    volatile sig_atomic_t stop;
    s_prog_t prog;
    worker_outcome_t out;
    char result[4096]; /* the result as JSON text */
} s_call_t;

/* Runs one job with payload_json through plugin p. */
static void
s_run(handler_plugin_t *p, const char *payload_json, s_call_t *c,
      const char *trace)
{
    memset(c->result, 0, sizeof c->result);
    memset(&c->prog, 0, sizeof c->prog);
    json_t *j = json_loads(payload_json, JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    c->payload = dv_json_to_msgpack(j, &c->len);
    json_decref(j);
    worker_handler_job_t job = {
        .worker = "w-test",
        .id = dv_str("0190a1b2-0000-7000-8000-000000000001"),
        .type = dv_str(handler_plugin_type(p)),
        .queue = dv_str("default"),
        .trace = trace ? dv_str(trace) : dv_strn(NULL, 0),
        .payload = dv_strn(c->payload, c->len),
        .attempt = 2,
        .stop = &c->stop,
    };
    handler_plugin_run(p, &job, s_on_progress, &c->prog, &c->out);
    free(c->payload);
    if (c->out.ok) {
        char *t = dv_msgpack_to_json_text(c->out.result.ptr, c->out.result.len);
        assert_non_null(t);
        snprintf(c->result, sizeof c->result, "%s", t);
        free(t);
    }
    worker_outcome_clear(&c->out);
}

static const char *
s_msg(const s_call_t *c)
{
    return c->out.failure.message.ptr ? c->out.failure.message.ptr : "";
}

/* ---- the example plugin -------------------------------------------------- */

static void
test_upper(void **state)
{
    (void)state;
    handler_plugin_t *p = handler_plugin_new("upper", PLUGIN_UPPER, NULL);
    assert_non_null(p);
    assert_null(handler_plugin_error(p));
    s_call_t c = { 0 };
    s_run(p, "{\"id\": 1, \"text\": \"hello, World \\u00e9 \\\"q\\\"\"}", &c,
          NULL);
    assert_true(c.out.ok);
    assert_string_equal(c.result,
                        "{\"text\":\"HELLO, WORLD \xc3\xa9 \\\"Q\\\"\","
                        "\"bytes\":19}");
    assert_int_equal(c.prog.calls, 1);
    assert_int_equal(c.prog.last_cur, 1);
    assert_int_equal(c.prog.last_tot, 1);
    handler_plugin_destroy(&p);
    assert_null(p);
}

static void
test_upper_details(void **state)
{
    (void)state;
    handler_plugin_t *p = handler_plugin_new("upper", PLUGIN_UPPER, NULL);
    s_call_t c = { 0 };
    /* Progress: one step per 4 KiB. */
    char *big = malloc(10000 + 32);
    strcpy(big, "{\"text\": \"");
    memset(big + 10, 'a', 9000);
    strcpy(big + 9010, "\"}");
    s_run(p, big, &c, NULL);
    free(big);
    assert_true(c.out.ok);
    assert_int_equal(c.prog.calls, 3);
    assert_int_equal(c.prog.last_cur, 3);
    assert_int_equal(c.prog.last_tot, 3);
    assert_string_equal(c.prog.last_msg, "9000 of 9000 bytes");
    /* No such field: invalid_input, not retried. */
    s_run(p, "{\"body\": \"x\"}", &c, NULL);
    assert_false(c.out.ok);
    assert_int_equal(c.out.failure.category, DV_CAT_INVALID_INPUT);
    assert_false(c.out.failure.retryable);
    assert_non_null(strstr(s_msg(&c), "\"text\""));
    /* Past the soft timeout: fails retryable, category timeout. */
    c.stop = 1;
    s_run(p, "{\"text\": \"x\"}", &c, NULL);
    assert_false(c.out.ok);
    assert_int_equal(c.out.failure.category, DV_CAT_TIMEOUT);
    assert_true(c.out.failure.retryable);
    handler_plugin_destroy(&p);

    /* Its config picks the field. */
    p = handler_plugin_new("upper", PLUGIN_UPPER, "{\"field\": \"body\"}");
    assert_null(handler_plugin_error(p));
    c.stop = 0;
    s_run(p, "{\"body\": \"abc\"}", &c, NULL);
    assert_true(c.out.ok);
    assert_non_null(strstr(c.result, "\"body\":\"ABC\""));
    handler_plugin_destroy(&p);
    /* A bad config: init() fails, and the jobs fail retryable. */
    p = handler_plugin_new("upper", PLUGIN_UPPER, "{\"field\": 3}");
    assert_non_null(handler_plugin_error(p));
    assert_non_null(strstr(handler_plugin_error(p), "init() returned 2"));
    s_run(p, "{\"text\": \"abc\"}", &c, NULL);
    assert_false(c.out.ok);
    assert_int_equal(c.out.failure.category, DV_CAT_HANDLER);
    assert_true(c.out.failure.retryable);
    handler_plugin_destroy(&p);
}

/* ---- the io calls, through the probe ------------------------------------- */

static void
test_probe_io(void **state)
{
    (void)state;
    handler_plugin_t *p =
        handler_plugin_new("probe", PLUGIN_PROBE, "{\"k\":[1,2]}");
    assert_non_null(p);
    assert_null(handler_plugin_error(p));
    s_call_t c = { 0 };

    s_run(p, "{\"op\": \"info\"}", &c, "00-abc-def-01");
    assert_true(c.out.ok);
    assert_non_null(
        strstr(c.result, "\"id\":\"0190a1b2-0000-7000-8000-000000000001\""));
    assert_non_null(strstr(c.result, "\"attempt\":2"));
    assert_non_null(strstr(c.result, "\"type\":\"probe\""));
    assert_non_null(strstr(c.result, "\"queue\":\"default\""));
    assert_non_null(strstr(c.result, "\"trace\":\"00-abc-def-01\""));
    assert_non_null(strstr(c.result, "\"worker\":\"w-test\""));
    assert_non_null(strstr(c.result, "\"payload_len\":13"));
    s_run(p, "{\"op\": \"info\"}", &c, NULL);
    assert_non_null(strstr(c.result, "\"trace\":null"));

    s_run(p, "{\"op\": \"config\"}", &c, NULL);
    assert_string_equal(c.result, "{\"k\":[1,2]}");

    s_run(p, "{\"op\": \"progress\", \"n\": 2}", &c, NULL);
    assert_true(c.out.ok);
    assert_int_equal(c.prog.calls, 2);
    assert_string_equal(c.prog.last_msg, "step 2");

    s_run(p,
          "{\"op\": \"fail\", \"category\": \"upstream\", \"message\": "
          "\"bad gateway\", \"retryable\": true, \"retry_after\": 2.5}",
          &c, NULL);
    assert_false(c.out.ok);
    assert_int_equal(c.out.failure.category, DV_CAT_UPSTREAM);
    assert_true(c.out.failure.retryable);
    assert_int_equal(c.out.failure.retry_after_ms, 2500);
    assert_string_equal(s_msg(&c), "bad gateway");
    s_run(p, "{\"op\": \"fail\", \"category\": \"nonsense\"}", &c, NULL);
    assert_int_equal(c.out.failure.category, DV_CAT_HANDLER);
    assert_false(c.out.failure.retryable);
    assert_string_equal(s_msg(&c), "plugin probe failed");

    s_run(p, "{\"op\": \"return\", \"code\": 75}", &c, NULL);
    assert_false(c.out.ok);
    assert_int_equal(c.out.failure.category, DV_CAT_HANDLER);
    assert_true(c.out.failure.retryable);
    assert_int_equal(c.out.failure.exit_code, 75);
    assert_string_equal(s_msg(&c), "plugin probe returned 75");
    s_run(p, "{\"op\": \"return\", \"code\": 3}", &c, NULL);
    assert_false(c.out.failure.retryable);

    s_run(p, "{\"op\": \"bad_result\"}", &c, NULL);
    assert_true(c.out.ok);
    assert_string_equal(c.result, "{\"rc\":-1}");
    /* No result set: null. */
    s_run(p, "{\"op\": \"log\"}", &c, NULL);
    assert_true(c.out.ok);
    assert_string_equal(c.result, "null");

    /* The stop flag, polled and as a callback (already raised: the
     * callback comes at once). */
    c.stop = 1;
    s_run(p, "{\"op\": \"wait_stop\", \"max\": 5}", &c, NULL);
    assert_non_null(strstr(c.result, "\"stopped\":true"));
    s_run(p, "{\"op\": \"on_stop\", \"max\": 5}", &c, NULL);
    assert_string_equal(c.result, "{\"callback\":true}");
    c.stop = 0;
    s_run(p, "{\"op\": \"wait_stop\", \"max\": 0.05}", &c, NULL);
    assert_non_null(strstr(c.result, "\"stopped\":false"));
    handler_plugin_destroy(&p);
}

/* The callback also comes from the signal handler's side. */
static volatile sig_atomic_t *s_alarm_flag;

/* What the worker child does on SIGUSR1: raise the flag, then call the
 * plugin's callback. */
static void
s_on_alarm(int sig)
{
    (void)sig;
    *s_alarm_flag = 1;
    handler_plugin_soft_stop();
}

static void
s_alarm_in(long ms)
{
    struct itimerval it = { { 0, 0 }, { ms / 1000, (ms % 1000) * 1000 } };
    setitimer(ITIMER_REAL, &it, NULL);
}

static void
test_soft_stop_signal(void **state)
{
    (void)state;
    /* Nothing registered, no job running: a no-op. */
    handler_plugin_soft_stop();
    handler_plugin_t *p = handler_plugin_new("probe", PLUGIN_PROBE, NULL);
    s_call_t c = { 0 };
    s_alarm_flag = &c.stop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);

    s_alarm_in(100);
    s_run(p, "{\"op\": \"on_stop\", \"max\": 5}", &c, NULL);
    assert_string_equal(c.result, "{\"callback\":true}");
    c.stop = 0;
    s_alarm_in(100);
    s_run(p, "{\"op\": \"wait_stop\", \"max\": 5}", &c, NULL);
    assert_non_null(strstr(c.result, "\"stopped\":true"));
    /* After run() the registration is gone: a late signal calls nothing. */
    c.stop = 0;
    handler_plugin_soft_stop();
    signal(SIGALRM, SIG_DFL);
    handler_plugin_destroy(&p);
}

/* ---- loading failures ---------------------------------------------------- */

static void
test_load_failures(void **state)
{
    (void)state;
    s_call_t c = { 0 };
    struct {
        const char *path, *config, *want;
        bool retryable;
    } cases[] = {
        { "/nonexistent/plugin.so", NULL, "cannot be loaded", false },
        { PLUGIN_PROBE_NOENTRY, NULL, "does not export drover_handler_entry",
          false },
        { PLUGIN_PROBE_ABI2, NULL,
          "built for handler ABI version 2, and this worker has version 1",
          false },
        { PLUGIN_PROBE, "{\"fail_init\": 7}", "init() returned 7", true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        handler_plugin_t *p =
            handler_plugin_new("probe", cases[i].path, cases[i].config);
        assert_non_null(p);
        const char *e = handler_plugin_error(p);
        assert_non_null(e);
        if (!strstr(e, cases[i].want))
            fail_msg("case %zu: '%s' lacks '%s'", i, e, cases[i].want);
        s_run(p, "{\"op\": \"echo\"}", &c, NULL);
        assert_false(c.out.ok);
        assert_int_equal(c.out.failure.category, DV_CAT_HANDLER);
        assert_int_equal(c.out.failure.retryable, cases[i].retryable);
        assert_non_null(strstr(s_msg(&c), cases[i].want));
        handler_plugin_destroy(&p);
    }
}

/* ---- limits -------------------------------------------------------------- */

static void
test_sizes_and_soft(void **state)
{
    (void)state;
    int64_t b;
    assert_int_equal(worker_limits_parse_size("512", &b), 0);
    assert_int_equal(b, 512);
    assert_int_equal(worker_limits_parse_size("1K", &b), 0);
    assert_int_equal(b, 1024);
    assert_int_equal(worker_limits_parse_size("300m", &b), 0);
    assert_int_equal(b, 300LL << 20);
    assert_int_equal(worker_limits_parse_size("2G", &b), 0);
    assert_int_equal(b, 2LL << 30);
    assert_int_equal(worker_limits_parse_size("10MB", &b), 0);
    assert_int_equal(b, 10LL << 20);
    assert_int_equal(worker_limits_parse_size("10MiB", &b), 0);
    assert_int_equal(b, 10LL << 20);
    assert_int_equal(worker_limits_parse_size("0", &b), 0);
    assert_int_equal(b, 0);
    const char *bad[] = { "",
                          "-1",
                          "1.5G",
                          "8T",
                          "G",
                          "1 G x",
                          "99999999999999999999",
                          "9000000000000G" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (worker_limits_parse_size(bad[i], &b) == 0)
            fail_msg("'%s' was taken as a size", bad[i]);

    int64_t ms;
    int pct;
    assert_int_equal(worker_limits_parse_soft("80%", &ms, &pct), 0);
    assert_int_equal(pct, 80);
    assert_int_equal(ms, 0);
    assert_int_equal(worker_limits_parse_soft("1.5", &ms, &pct), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(pct, 0);
    assert_int_equal(worker_limits_parse_soft("250ms", &ms, &pct), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(worker_limits_parse_soft("0", &ms, &pct), 0);
    assert_int_equal(ms + pct, 0);
    const char *bad_soft[] = { "", "0%", "100%", "x%", "%", "abc", "-1" };
    for (size_t i = 0; i < sizeof bad_soft / sizeof bad_soft[0]; i++)
        if (worker_limits_parse_soft(bad_soft[i], &ms, &pct) == 0)
            fail_msg("'%s' was taken as a soft timeout", bad_soft[i]);

    assert_int_equal(worker_limits_soft_ms(0, 80, 10000), 8000);
    assert_int_equal(worker_limits_soft_ms(0, 80, 0), 0); /* no hard */
    assert_int_equal(worker_limits_soft_ms(3000, 0, 10000), 3000);
    assert_int_equal(worker_limits_soft_ms(3000, 0, 0), 3000);
    assert_int_equal(worker_limits_soft_ms(10000, 0, 10000), 0); /* too late */
    assert_int_equal(worker_limits_soft_ms(0, 0, 10000), 0);     /* off */
}

static void
test_rss(void **state)
{
    (void)state;
    int64_t before = worker_limits_rss(getpid());
    assert_true(before > 0);
    size_t n = 32u << 20;
    char *block = malloc(n);
    memset(block, 1, n);
    /* Keep the compiler from eliding the unused block. */
    __asm__ volatile("" : : "r"(block) : "memory");
    int64_t after = worker_limits_rss(getpid());
    assert_true(after >= before + (int64_t)n / 2);
    free(block);
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    waitpid(gone, NULL, 0);
    assert_int_equal(worker_limits_rss(gone), -1);
}

static volatile sig_atomic_t s_got;

static void
s_on_usr1(int sig)
{
    (void)sig;
    s_got = 1;
}

/* Makes a child: catching SIGUSR1 or not; it reports on a pipe whether
 * it got the signal (or dies of it). */
static pid_t
s_spawn_listener(bool catches, int wfd, int ready)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    if (catches)
        signal(SIGUSR1, s_on_usr1);
    ssize_t r = write(ready, "r", 1);
    for (int i = 0; i < 500 && !s_got; i++) {
        struct timespec ts = { 0, 10 * 1000000 };
        nanosleep(&ts, NULL);
    }
    r = write(wfd, s_got ? "y" : "n", 1);
    (void)r;
    _exit(0);
}

static void
test_tell_catchers(void **state)
{
    (void)state;
    int out[2], ready[2];
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(ready), 0);
    pid_t a = s_spawn_listener(true, out[1], ready[1]);
    pid_t b = s_spawn_listener(false, out[1], ready[1]);
    char buf[2];
    assert_int_equal(read(ready[0], buf, 1), 1);
    assert_int_equal(read(ready[0], buf, 1), 1);
    /* Only the one that catches it is sent it; the other would die. */
    assert_int_equal(worker_limits_tell_catchers(SIGUSR1), 1);
    kill(b, SIGTERM);
    int st;
    assert_int_equal(waitpid(a, &st, 0), a);
    assert_true(WIFEXITED(st));
    assert_int_equal(waitpid(b, &st, 0), b);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGTERM); /* not SIGUSR1 */
    assert_int_equal(read(out[0], buf, 1), 1);
    assert_int_equal(buf[0], 'y');
    close(out[0]);
    close(out[1]);
    close(ready[0]);
    close(ready[1]);
}

/* ---- settings ------------------------------------------------------------ */

static int
s_parse(worker_config_t *cfg, char *err, size_t es, ...)
{
    char *argv[32] = { "worker" };
    int argc = 1;
    va_list ap;
    va_start(ap, es);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    worker_config_defaults(cfg);
    return worker_config_parse(cfg, argc, argv, err, es);
}

static void
test_config(void **state)
{
    (void)state;
    worker_config_t cfg;
    char err[512];
    assert_int_equal(s_parse(&cfg, err, sizeof err, NULL), 0);
    assert_int_equal(cfg.soft_timeout_pct, 80);
    assert_int_equal(cfg.max_rss_per_child, 0);
    worker_config_clear(&cfg);

    char plug[512];
    snprintf(plug, sizeof plug, "up=%s", PLUGIN_UPPER);
    assert_int_equal(s_parse(&cfg, err, sizeof err, "--plugin", plug,
                             "--max-rss-per-child", "256M", "--soft-timeout",
                             "2.5", "--exec", "shout=echo hi", NULL),
                     0);
    assert_int_equal(cfg.max_rss_per_child, 256LL << 20);
    assert_int_equal(cfg.soft_timeout_ms, 2500);
    assert_int_equal(cfg.soft_timeout_pct, 0);
    const worker_plugin_t *wp = worker_config_plugin(&cfg, "up", 2);
    assert_non_null(wp);
    assert_string_equal(wp->path, PLUGIN_UPPER);
    assert_null(wp->config);
    worker_config_clear(&cfg);

    /* One handler per type: the later setting wins. */
    char ex[64] = "up=echo";
    assert_int_equal(
        s_parse(&cfg, err, sizeof err, "--plugin", plug, "--exec", ex, NULL),
        0);
    assert_null(worker_config_plugin(&cfg, "up", 2));
    assert_non_null(worker_config_handler(&cfg, "up", 2));
    worker_config_clear(&cfg);
    assert_int_equal(
        s_parse(&cfg, err, sizeof err, "--exec", ex, "--plugin", plug, NULL),
        0);
    assert_non_null(worker_config_plugin(&cfg, "up", 2));
    assert_null(worker_config_handler(&cfg, "up", 2));
    worker_config_clear(&cfg);

    struct {
        const char *flag, *value, *want;
    } bad[] = {
        { "--plugin", "nothing", "expected TYPE=PATH" },
        { "--plugin", "x=/nonexistent/x.so",
          "cannot read '/nonexistent/x.so'" },
        { "--plugin", "x=", "empty path" },
        { "--plugin", "=/tmp", "job type must be" },
        { "--max-rss-per-child", "lots", "not a size in bytes" },
        { "--soft-timeout", "120%", "percentage" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(
            s_parse(&cfg, err, sizeof err, bad[i].flag, bad[i].value, NULL),
            -1);
        if (!strstr(err, bad[i].want))
            fail_msg("%s %s: '%s' lacks '%s'", bad[i].flag, bad[i].value, err,
                     bad[i].want);
        worker_config_clear(&cfg);
    }

    /* The file. */
    char doc[1024];
    snprintf(doc, sizeof doc,
             "{\"max_rss_per_child\": \"1G\", \"soft_timeout\": \"50%%\", "
             "\"plugins\": {\"up\": {\"path\": \"%s\", \"config\": "
             "{\"field\": \"body\"}}, \"p2\": {\"path\": \"%s\"}}}",
             PLUGIN_UPPER, PLUGIN_PROBE);
    worker_config_defaults(&cfg);
    assert_int_equal(worker_config_load_json(&cfg, doc, strlen(doc), "f.json",
                                             err, sizeof err),
                     0);
    assert_int_equal(cfg.max_rss_per_child, 1LL << 30);
    assert_int_equal(cfg.soft_timeout_pct, 50);
    assert_int_equal(cfg.nplugins, 2);
    wp = worker_config_plugin(&cfg, "up", 2);
    assert_string_equal(wp->config, "{\"field\":\"body\"}");
    assert_null(worker_config_plugin(&cfg, "p2", 2)->config);
    worker_config_clear(&cfg);

    worker_config_defaults(&cfg);
    const char *num = "{\"max_rss_per_child\": 1048576, \"soft_timeout\": 0}";
    assert_int_equal(
        worker_config_load_json(&cfg, num, strlen(num), "f", err, sizeof err),
        0);
    assert_int_equal(cfg.max_rss_per_child, 1048576);
    assert_int_equal(cfg.soft_timeout_pct + cfg.soft_timeout_ms, 0);
    worker_config_clear(&cfg);

    const char *bad_docs[][2] = {
        { "{\"plugins\": []}", "plugins: must be an object" },
        { "{\"plugins\": {\"x\": {\"path\": 1}}}", "plugins.x.path" },
        { "{\"plugins\": {\"x\": {\"path\": \"/nonexistent/p.so\"}}}",
          "cannot read" },
        { "{\"plugins\": {\"x\": {\"path\": \"a.so\", \"cfg\": 1}}}",
          "unknown setting 'cfg'" },
        { "{\"max_rss_per_child\": true}", "max_rss_per_child" },
        { "{\"soft_timeout\": \"soon\"}", "soft_timeout" },
    };
    for (size_t i = 0; i < sizeof bad_docs / sizeof bad_docs[0]; i++) {
        worker_config_defaults(&cfg);
        assert_int_equal(worker_config_load_json(&cfg, bad_docs[i][0],
                                                 strlen(bad_docs[i][0]), "f",
                                                 err, sizeof err),
                         -1);
        if (!strstr(err, bad_docs[i][1]))
            fail_msg("'%s': '%s' lacks '%s'", bad_docs[i][0], err,
                     bad_docs[i][1]);
        worker_config_clear(&cfg);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upper),
        cmocka_unit_test(test_upper_details),
        cmocka_unit_test(test_probe_io),
        cmocka_unit_test(test_soft_stop_signal),
        cmocka_unit_test(test_load_failures),
        cmocka_unit_test(test_sizes_and_soft),
        cmocka_unit_test(test_rss),
        cmocka_unit_test(test_tell_catchers),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
