/* cli_cmd_test - the command table's machinery: parsing (defaults, the
 * environment, flags among arguments, "--"), the one error style (text and
 * JSON), help, completion scripts and man pages, on a table of test
 * commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_cmd.h"
#include "cli_out.h"

/* ---- a table of commands to drive -------------------------------------- */

static struct {
    const char *state;
    int limit;
    int64_t every_ms;
    int color;
    bool all;
} s_o;

static int s_nargs;
static char s_args[4][64];

static const char *const s_colors[] = { "red", "green", NULL };

static const dv_flag_t s_flags[] = {
    DV_FLAG_STR("state", &s_o.state, .arg = "STATE",
                .help = "only jobs in this state"),
    DV_FLAG_INTEGER("limit", &s_o.limit, 1, 1000, .arg = "N",
                    .help = "at most N jobs", .dflt = "50",
                    .env = "CLI_TEST_LIMIT"),
    DV_FLAG_DUR("every", &s_o.every_ms, 100, 60000, .dflt = "1",
                .help = "how often"),
    DV_FLAG_ONE_OF("color", &s_o.color, s_colors, .help = "which color"),
    DV_FLAG_ON("all", &s_o.all, .alias = 'a', .help = "every one"),
    DV_FLAG_TABLE_END,
};

static int
s_list_run(cli_t *c, int argc, char **argv)
{
    s_nargs = argc;
    for (int i = 0; i < argc && i < 4; i++)
        snprintf(s_args[i], sizeof s_args[i], "%s", argv[i]);
    if (argc && !strcmp(argv[0], "missing"))
        return cli_fail(c, CLI_NOT_FOUND, NULL, "no such job '%s'", argv[0]);
    return CLI_OK;
}

static const cli_cmd_t s_list = {
    .name = "list",
    .summary = "list things",
    .args = "[ID...]",
    .max_args = -1,
    .about = "Lists things.\n\nA second paragraph \xe2\x80\x94 with a dash.",
    .examples = "  drover list --limit 5\n",
    .flags = s_flags,
    .shared = CLI_JSON | CLI_COLLECTOR | CLI_WIDE,
    .run = s_list_run,
};

static const cli_cmd_t s_one = {
    .name = "one",
    .summary = "exactly one file",
    .args = "FILE",
    .min_args = 1,
    .max_args = 1,
    .args_complete = DV_COMPLETE_FILE,
    .shared = CLI_BROKER | CLI_YES,
    .run = s_list_run,
};

/* A daemon: parses its own argv (as dv_daemon does) from the table its
 * entry carries, and takes the log flags. */
static const char *s_daemon_store;
static int s_daemon_calls;

static const dv_flag_t s_daemon_flags[] = {
    DV_FLAG_STR("store", &s_daemon_store, .arg = "URL", .env = "CLI_TEST_STORE",
                .dflt = "d.db", .complete = DV_COMPLETE_FILE,
                .help = "where it keeps things"),
    DV_FLAG_TABLE_END,
};

static int
s_daemon_main(int argc, char **argv)
{
    s_daemon_calls++;
    return CLI_OK;
}

static const cli_cmd_t s_daemon = {
    .name = "daemon",
    .summary = "run a daemon",
    .about = "Runs.",
    .notes = "signals: SIGHUP reloads.",
    .exits = "exit status: 0 after a clean stop.",
    .flags = s_daemon_flags,
    .shared = CLI_DAEMON,
    .own = s_daemon_main,
};

const cli_cmd_t *const cli_commands[] = {
    &s_list,          &s_one,          &s_daemon, &cli_help_cmd,
    &cli_version_cmd, &cli_completion, &cli_man,
};
const size_t cli_ncommands = sizeof cli_commands / sizeof cli_commands[0];

/* ---- running drover with captured output ---------------------------------- */

typedef struct {
    int rc;
    char out[65536], err[8192];
} s_run_t;

static void
s_slurp(FILE *f, char *buf, size_t size)
{
    rewind(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs cli_main on the words (NULL-ended), stdout and stderr captured. */
static void
s_run(s_run_t *r, ...)
{
    char *argv[32] = { "drover" };
    int argc = 1;
    va_list ap;
    va_start(ap, r);
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 31)
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    fflush(stderr);
    FILE *fo = tmpfile(), *fe = tmpfile();
    int so = dup(1), se = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    s_nargs = -1;
    r->rc = cli_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    s_slurp(fo, r->out, sizeof r->out);
    s_slurp(fe, r->err, sizeof r->err);
}

/* ---- tests ----------------------------------------------------------------- */

static void
t_defaults_and_env(void **state)
{
    (void)state;
    s_run_t r;
    unsetenv("CLI_TEST_LIMIT");
    s_run(&r, "list", NULL);
    assert_int_equal(r.rc, CLI_OK);
    assert_int_equal(s_o.limit, 50);
    assert_true(s_o.every_ms == 1000);
    assert_null(s_o.state);
    assert_false(s_o.all);
    setenv("CLI_TEST_LIMIT", "7", 1);
    s_run(&r, "list", NULL);
    assert_int_equal(s_o.limit, 7);
    s_run(&r, "list", "--limit", "9", NULL); /* a flag beats the variable */
    assert_int_equal(s_o.limit, 9);
    setenv("CLI_TEST_LIMIT", "lots", 1);
    s_run(&r, "list", NULL);
    assert_int_equal(r.rc, CLI_USAGE);
    assert_non_null(strstr(r.err, "CLI_TEST_LIMIT"));
    unsetenv("CLI_TEST_LIMIT");
    /* values from an earlier run do not stay */
    s_run(&r, "list", "--state", "dead", "-a", NULL);
    assert_string_equal(s_o.state, "dead");
    assert_true(s_o.all);
    s_run(&r, "list", NULL);
    assert_null(s_o.state);
    assert_false(s_o.all);
}

static void
t_flags_among_args(void **state)
{
    (void)state;
    s_run_t r;
    s_run(&r, "list", "a", "--limit=3", "b", "--color", "green", "-5", NULL);
    assert_int_equal(r.rc, CLI_OK);
    assert_int_equal(s_nargs, 3);
    assert_string_equal(s_args[0], "a");
    assert_string_equal(s_args[1], "b");
    assert_string_equal(s_args[2], "-5"); /* a negative number is an arg */
    assert_int_equal(s_o.limit, 3);
    assert_int_equal(s_o.color, 1);
    s_run(&r, "list", "x", "--", "--limit", "-", NULL);
    assert_int_equal(r.rc, CLI_OK);
    assert_int_equal(s_nargs, 3);
    assert_string_equal(s_args[1], "--limit");
    assert_string_equal(s_args[2], "-");
    assert_int_equal(s_o.limit, 50);
}

static void
t_usage_errors(void **state)
{
    (void)state;
    s_run_t r;
    s_run(&r, "list", "--limit", "0", NULL);
    assert_int_equal(r.rc, CLI_USAGE);
    assert_non_null(strstr(r.err, "drover list: --limit: '0' is not a whole "
                                  "number in 1..1000\n"));
    assert_non_null(strstr(r.err, "usage: drover list [OPTIONS] [ID...]\n"));
    /* the flag's own help line, not the whole help */
    assert_non_null(strstr(r.err, "--limit N"));
    assert_null(strstr(r.err, "--every"));
    assert_non_null(strstr(r.err, "(drover help list: every option)"));
    s_run(&r, "list", "--limt", "3", NULL);
    assert_int_equal(r.rc, CLI_USAGE);
    assert_non_null(strstr(r.err, "did you mean --limit?"));
    s_run(&r, "one", NULL);
    assert_int_equal(r.rc, CLI_USAGE);
    assert_non_null(strstr(r.err, "drover one: needs FILE"));
    s_run(&r, "one", "a", "b", NULL);
    assert_int_equal(r.rc, CLI_USAGE);
    assert_non_null(strstr(r.err, "unexpected argument 'b'"));
    s_run(&r, "lsit", NULL);
    assert_int_equal(r.rc, CLI_USAGE);
    assert_non_null(strstr(r.err, "did you mean 'list'?"));
    s_run(&r, "one", "--json", "f", NULL); /* no --json on this one */
    assert_int_equal(r.rc, CLI_USAGE);
    assert_non_null(strstr(r.err, "unknown option '--json'"));
}

static void
t_json_errors(void **state)
{
    (void)state;
    s_run_t r;
    s_run(&r, "list", "--json", "--limit", "x", NULL);
    assert_int_equal(r.rc, CLI_USAGE);
    json_t *j = json_loads(r.err, 0, NULL);
    assert_non_null(j);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "usage");
    assert_int_equal(json_integer_value(json_object_get(e, "exit")), 2);
    assert_non_null(
        strstr(json_string_value(json_object_get(e, "message")), "--limit"));
    json_decref(j);
    s_run(&r, "list", "missing", "--json", NULL);
    assert_int_equal(r.rc, CLI_NOT_FOUND);
    j = json_loads(r.err, 0, NULL);
    e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")),
                        "not_found");
    json_decref(j);
    assert_string_equal(r.out, "");
}

static void
t_help(void **state)
{
    (void)state;
    s_run_t r;
    s_run(&r, "list", "--help", NULL);
    assert_int_equal(r.rc, CLI_OK);
    assert_non_null(strstr(r.out, "usage: drover list [OPTIONS] [ID...]"));
    assert_non_null(
        strstr(r.out, "A second paragraph \xe2\x80\x94 with a dash."));
    assert_non_null(strstr(r.out, "at most N jobs (1..1000; $CLI_TEST_LIMIT; "
                                  "else 50)"));
    assert_non_null(strstr(r.out, "--color red|green"));
    assert_non_null(strstr(r.out, "-a, --all"));
    assert_non_null(strstr(r.out, "--collector ENDPOINT"));
    assert_non_null(strstr(r.out, "--wide"));
    assert_non_null(strstr(r.out, "exit status:"));
    char same[sizeof r.out];
    memcpy(same, r.out, sizeof same);
    s_run(&r, "help", "list", NULL);
    assert_string_equal(r.out, same);
    s_run(&r, "--help", NULL);
    assert_non_null(strstr(r.out, "  list        list things\n"));
    s_run(&r, "--version", NULL);
    assert_int_equal(r.rc, CLI_OK);
    assert_non_null(strstr(r.out, "drover "));
    s_run(&r, "version", "--json", NULL);
    json_t *j = json_loads(r.out, 0, NULL);
    assert_true(json_is_string(json_object_get(j, "version")));
    json_decref(j);
}

/* Runs bash on script with the completion loaded; returns its output. */
static void
s_bash(const char *completion, const char *words, int cword, char *out,
       size_t size)
{
    char path[] = "/tmp/cli_cmd_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f,
            "%s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n_drover\n"
            "echo \"${COMPREPLY[*]}\"\n",
            completion, words, cword);
    fclose(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "bash %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    pclose(p);
    unlink(path);
}

static void
t_completion(void **state)
{
    (void)state;
    static s_run_t r;
    s_run(&r, "completion", "bash", NULL);
    assert_int_equal(r.rc, CLI_OK);
    char got[1024];
    s_bash(r.out, "drover l", 1, got, sizeof got);
    assert_string_equal(got, "list\n");
    s_bash(r.out, "drover list --co", 2, got, sizeof got);
    assert_string_equal(got, "--color --collector\n");
    s_bash(r.out, "drover list --color g", 3, got, sizeof got);
    assert_string_equal(got, "green\n");
    s_bash(r.out, "drover list -", 2, got, sizeof got);
    assert_non_null(strstr(got, "--limit"));
    assert_non_null(strstr(got, "--json"));
    s_bash(r.out, "drover help li", 2, got, sizeof got);
    assert_string_equal(got, "list\n");
    s_run(&r, "completion", "zsh", NULL);
    assert_int_equal(r.rc, CLI_OK);
    assert_non_null(strstr(r.out, "#compdef drover"));
    assert_non_null(strstr(r.out, "'--color[which color]:red|green:(red "
                                  "green)'"));
    if (system("command -v zsh >/dev/null 2>&1") == 0) {
        FILE *p = popen("zsh -n /dev/stdin", "w");
        fputs(r.out, p);
        assert_int_equal(WEXITSTATUS(pclose(p)), 0);
    }
    s_run(&r, "completion", "fish", NULL);
    assert_int_equal(r.rc, CLI_USAGE);
}

/* A daemon's entry: help, man page and completion from its table, with the
 * log flags; its own function is not called for them. */
static void
t_daemon(void **state)
{
    (void)state;
    static s_run_t r;
    s_daemon_calls = 0;
    s_run(&r, "help", "daemon", NULL);
    assert_int_equal(r.rc, CLI_OK);
    assert_int_equal(s_daemon_calls, 0);
    assert_non_null(strstr(r.out, "usage: drover daemon [OPTIONS]\n\nRuns.\n"
                                  "\noptions:\n  --store URL "));
    assert_non_null(strstr(r.out, "($CLI_TEST_STORE; else d.db)"));
    assert_non_null(strstr(r.out, "  --log-level LEVEL "));
    assert_non_null(strstr(r.out, "  --log-format FORMAT "));
    assert_non_null(strstr(r.out, "  -h, --help              show this help\n"
                                  "\nsignals: SIGHUP reloads.\n\n"
                                  "exit status: 0 after a clean stop.\n"));
    s_run(&r, "daemon", "--store", "x", NULL); /* runs its own */
    assert_int_equal(s_daemon_calls, 1);
    s_run(&r, "man", "daemon", NULL);
    assert_non_null(strstr(r.out, "\\fB\\-\\-log\\-level\\fR"));
    assert_non_null(strstr(r.out, ".SH NOTES\nsignals: SIGHUP reloads.\n"));
    assert_non_null(strstr(r.out, ".SH EXIT STATUS\nexit status: 0"));
    s_run(&r, "completion", "bash", NULL);
    char got[1024];
    s_bash(r.out, "drover daemon --st", 2, got, sizeof got);
    assert_string_equal(got, "--store\n");
    s_bash(r.out, "drover daemon --log-f", 2, got, sizeof got);
    assert_string_equal(got, "--log-format\n");
    s_bash(r.out, "drover daemon --log-level w", 3, got, sizeof got);
    assert_string_equal(got, "warn\n");
    assert_int_equal(s_daemon_calls, 1);
}

static void
t_man(void **state)
{
    (void)state;
    static s_run_t r;
    s_run(&r, "man", "list", NULL);
    assert_int_equal(r.rc, CLI_OK);
    assert_non_null(strstr(r.out, ".TH DROVER-LIST 1"));
    assert_non_null(strstr(r.out, "\\fB\\-\\-limit\\fR \\fIN\\fR\n"));
    assert_non_null(strstr(r.out, ".SH EXIT STATUS"));
    /* non-ASCII as named glyphs, so groff needs no preprocessor */
    assert_non_null(strstr(r.out, "paragraph \\[u2014] with"));
    s_run(&r, "man", NULL);
    assert_non_null(strstr(r.out, ".BR drover\\-list (1)"));
    char dir[] = "/tmp/cli_cmd_test_man_XXXXXX";
    assert_non_null(mkdtemp(dir));
    s_run(&r, "man", "--dir", dir, NULL);
    assert_int_equal(r.rc, CLI_OK);
    char path[256];
    snprintf(path, sizeof path, "%s/drover-one.1", dir);
    assert_int_equal(access(path, R_OK), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void
t_out(void **state)
{
    (void)state;
    assert_string_equal(cli_num(1234567), "1,234,567");
    assert_string_equal(cli_num(-1000), "-1,000");
    assert_string_equal(cli_rate(0), "0");
    assert_string_equal(cli_rate(0.42), "0.42");
    assert_string_equal(cli_rate(4.2), "4.2");
    assert_string_equal(cli_rate(41.017000000000003), "41");
    assert_string_equal(cli_rate(4200.4), "4,200");
    assert_string_equal(cli_dur(61000), "1m01s");
    assert_string_equal(cli_cell("short", 8, false), "short");
    assert_string_equal(cli_cell("a-long-queue-name", 8, false),
                        "a-long-\xe2\x80\xa6");
    assert_string_equal(cli_cell("a-long-queue-name", 8, true),
                        "a-long-queue-name");
    /* a cut never splits a UTF-8 character */
    assert_string_equal(cli_cell("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 3, false),
                        "\xc3\xa9\xc3\xa9\xe2\x80\xa6");
    assert_string_equal(cli_cell(NULL, 4, false), "-");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_defaults_and_env),
        cmocka_unit_test(t_flags_among_args),
        cmocka_unit_test(t_usage_errors),
        cmocka_unit_test(t_json_errors),
        cmocka_unit_test(t_help),
        cmocka_unit_test(t_completion),
        cmocka_unit_test(t_man),
        cmocka_unit_test(t_daemon),
        cmocka_unit_test(t_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
