/* cli_cmd - drover's commands: one table, one parser, one error style; see
 * cli_cmd.h. */
#include "cli_cmd.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drover.h"
#include "dv_id.h"
#include "dv_daemon.h"
#include "dv_curve_client.h"

#ifndef DROVER_VERSION
#define DROVER_VERSION "0.0.0"
#endif

#define S_WIDTH DV_FLAGS_WIDTH

const char *
cli_version(void)
{
    return DROVER_VERSION;
}

/* ---- shared flags -------------------------------------------------------- */

static struct {
    bool json, wide, yes, help;
    const char *broker, *collector;
    const char *curve_secret, *curve_server, *collector_curve_server;
} s_sh;

static const dv_flag_t s_json_flags[] = {
    DV_FLAG_ON("json", &s_sh.json,
               .help = "print JSON (shapes: docs/json.md); errors too, as "
                       "JSON on stderr"),
    DV_FLAG_TABLE_END,
};

static const dv_flag_t s_broker_flags[] = {
    DV_FLAG_STR("broker", &s_sh.broker, .arg = "ENDPOINT",
                .env = "DROVER_BROKER",
                .help = "the broker's clients endpoint; several, "
                        "comma-separated, for a group (else "
                        "" DROVER_DEFAULT_ENDPOINT ")"),
    DV_FLAG_STR("curve-secret", &s_sh.curve_secret, .arg = "FILE",
                .env = DV_CURVE_ENV_SECRET, .complete = DV_COMPLETE_FILE,
                .help = "our CurveZMQ secret certificate (drover keygen)"),
    DV_FLAG_STR("curve-server", &s_sh.curve_server, .arg = "FILE",
                .env = DV_CURVE_ENV_SERVER, .complete = DV_COMPLETE_FILE,
                .help = "the broker's public certificate"),
    DV_FLAG_TABLE_END,
};

/* With CLI_BROKER and CLI_COLLECTOR: the collector's certificate has its
 * own flag. */
static const dv_flag_t s_collector_flags[] = {
    DV_FLAG_STR("collector", &s_sh.collector, .arg = "ENDPOINT",
                .env = "DROVER_COLLECTOR", .dflt = "tcp://127.0.0.1:7703",
                .help = "the collector's query endpoint"),
    DV_FLAG_STR("collector-curve-server", &s_sh.collector_curve_server,
                .arg = "FILE", .env = DV_CURVE_ENV_COLLECTOR_SERVER,
                .complete = DV_COMPLETE_FILE,
                .help = "the collector's public certificate"),
    DV_FLAG_TABLE_END,
};

/* With CLI_COLLECTOR alone: --curve-server is the collector's, the one
 * server asked. */
static const dv_flag_t s_collector_only_flags[] = {
    DV_FLAG_STR("collector", &s_sh.collector, .arg = "ENDPOINT",
                .env = "DROVER_COLLECTOR", .dflt = "tcp://127.0.0.1:7703",
                .help = "the collector's query endpoint"),
    DV_FLAG_STR("curve-secret", &s_sh.curve_secret, .arg = "FILE",
                .env = DV_CURVE_ENV_SECRET, .complete = DV_COMPLETE_FILE,
                .help = "our CurveZMQ secret certificate (drover keygen)"),
    DV_FLAG_STR("curve-server", &s_sh.collector_curve_server, .arg = "FILE",
                .env = DV_CURVE_ENV_COLLECTOR_SERVER,
                .complete = DV_COMPLETE_FILE,
                .help = "the collector's public certificate"),
    DV_FLAG_TABLE_END,
};

static const dv_flag_t s_wide_flags[] = {
    DV_FLAG_ON("wide", &s_sh.wide,
               .help = "cut no column: every name and message in full"),
    DV_FLAG_TABLE_END,
};

static const dv_flag_t s_yes_flags[] = {
    DV_FLAG_ON("yes", &s_sh.yes, .alias = 'y',
               .help = "do not ask for confirmation (scripts)"),
    DV_FLAG_TABLE_END,
};

/* Documents -h (the parser answers it before any table). */
static const dv_flag_t s_help_flags[] = {
    DV_FLAG_ON("help", &s_sh.help, .alias = 'h', .help = "show this help"),
    DV_FLAG_TABLE_END,
};

int
cli_tables(const cli_cmd_t *cmd, const dv_flag_t *tables[8])
{
    int n = 0;
    if (cmd->flags)
        tables[n++] = cmd->flags;
    if (cmd->shared & CLI_BROKER)
        tables[n++] = s_broker_flags;
    if (cmd->shared & CLI_COLLECTOR)
        tables[n++] = (cmd->shared & CLI_BROKER) ? s_collector_flags
                                                 : s_collector_only_flags;
    if (cmd->shared & CLI_WIDE)
        tables[n++] = s_wide_flags;
    if (cmd->shared & CLI_YES)
        tables[n++] = s_yes_flags;
    if (cmd->shared & CLI_JSON)
        tables[n++] = s_json_flags;
    if (cmd->shared & CLI_DAEMON)
        tables[n++] = dv_daemon_flags;
    tables[n++] = s_help_flags;
    return n;
}

/* ---- errors -------------------------------------------------------------- */

static const char *
s_exit_name(cli_exit_t code)
{
    switch (code) {
    case CLI_OK:
        return "ok";
    case CLI_FAILED:
        return "failed";
    case CLI_USAGE:
        return "usage";
    case CLI_UNREACHABLE:
        return "unreachable";
    case CLI_NOT_FOUND:
        return "not_found";
    case CLI_DENIED:
        return "denied";
    case CLI_TIMEOUT:
        return "timeout";
    }
    return "failed";
}

static const char *
s_name(const cli_t *c)
{
    return c && c->cmd ? c->cmd->name : NULL;
}

static void
s_vfail(const cli_t *c, cli_exit_t code, const char *what, const char *fmt,
        va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (c && c->json) {
        json_t *j = json_pack("{s:{s:s, s:s, s:i}}", "error", "code",
                              what ? what : s_exit_name(code), "message", msg,
                              "exit", (int)code);
        char *text = j ? json_dumps(j, JSON_PRESERVE_ORDER) : NULL;
        fprintf(stderr, "%s\n", text ? text : msg);
        free(text);
        json_decref(j);
        return;
    }
    if (s_name(c))
        fprintf(stderr, "drover %s: %s\n", s_name(c), msg);
    else
        fprintf(stderr, "drover: %s\n", msg);
}

int
cli_fail(const cli_t *c, cli_exit_t code, const char *what, const char *fmt,
         ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vfail(c, code, what, fmt, ap);
    va_end(ap);
    return code;
}

int
cli_usage(const cli_t *c, const dv_flag_t *flag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    s_vfail(c, CLI_USAGE, "usage", fmt, ap);
    va_end(ap);
    if (c && c->json)
        return CLI_USAGE;
    if (c && c->cmd) {
        cli_usage_line(c->cmd, stderr);
        if (flag)
            dv_flag_help(flag, stderr, S_WIDTH);
        fprintf(stderr, "(drover help %s: every option)\n", c->cmd->name);
    } else {
        fprintf(stderr, "(drover --help: every command)\n");
    }
    return CLI_USAGE;
}

int
cli_job_id(const cli_t *c, const char *text)
{
    dv_id_t id;
    size_t n = strlen(text);
    if (n == DV_ID_TEXT_LEN && dv_id_parse(text, (unsigned)n, &id) == 0)
        return 0;
    return cli_usage(c, NULL,
                     "'%s' is not a job id (36 characters, as submit prints: "
                     "01a20470-abfa-73fc-8402-859771cc63e2)",
                     text);
}

cli_exit_t
cli_exit_of(int rc, const char *code)
{
    if (rc == DROVER_OK)
        return CLI_OK;
    if (rc == DROVER_EUNREACHABLE || rc == DROVER_ETIMEOUT)
        return CLI_UNREACHABLE;
    if (code && !strcmp(code, "not_found"))
        return CLI_NOT_FOUND;
    if (code && (!strcmp(code, "unauthorized") || !strcmp(code, "forbidden") ||
                 !strcmp(code, "denied")))
        return CLI_DENIED;
    if (rc == DROVER_EINVAL)
        return CLI_USAGE;
    return CLI_FAILED;
}

void
cli_print_json(const json_t *j)
{
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                   JSON_REAL_PRECISION(10) | JSON_ENCODE_ANY);
    if (text)
        printf("%s\n", text);
    free(text);
}

/* ---- help ---------------------------------------------------------------- */

void
cli_usage_line(const cli_cmd_t *cmd, FILE *out)
{
    const dv_flag_t *tables[8];
    int nt = cli_tables(cmd, tables);
    bool opts = nt > 1 || cmd->own;
    fprintf(out, "usage: drover %s%s%s%s\n", cmd->name,
            opts ? " [OPTIONS]" : "", cmd->args ? " " : "",
            cmd->args ? cmd->args : "");
}

static const char s_exits[] =
    "exit status: 0 ok; 1 failed (refused, or a job waited for did not "
    "succeed); 2 usage error; 3 the broker or collector did not answer; "
    "4 not found; 5 not allowed; 6 timed out.";

/* Paragraphs split by "\n\n", each wrapped, a blank line between. */
static void
s_paragraphs(const char *p, FILE *out)
{
    while (p && *p) {
        const char *e = strstr(p, "\n\n");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char para[4096];
        snprintf(para, sizeof para, "%.*s", (int)n, p);
        dv_flags_wrap(out, para, 0, 0, S_WIDTH);
        p = e ? e + 2 : NULL;
        if (p)
            fputc('\n', out);
    }
}

void
cli_help(const cli_cmd_t *cmd, FILE *out)
{
    if (!cmd) {
        fprintf(out,
                "usage: drover COMMAND [OPTIONS]\n"
                "\n"
                "drover is a job queue: a broker keeps jobs durably and hands "
                "them\nto pools of worker processes, with retries, backoff "
                "and progress;\na collector keeps their history for these "
                "commands and /metrics.\n\ncommands:\n");
        for (size_t i = 0; i < cli_ncommands; i++) {
            const cli_cmd_t *c = cli_commands[i];
            int n = fprintf(out, "  %-11s ", c->name);
            dv_flags_wrap(out, c->summary, n, n, S_WIDTH);
        }
        fprintf(out, "\n'drover help COMMAND' (or 'drover COMMAND --help') "
                     "describes one.\n\n");
        dv_flags_wrap(
            out,
            "CurveZMQ: --curve-secret FILE, --curve-server FILE and "
            "--collector-curve-server FILE go before the command or after "
            "it (docs/security.md).",
            0, 0, S_WIDTH);
        fputc('\n', out);
        dv_flags_wrap(
            out,
            "environment: DROVER_BROKER, DROVER_COLLECTOR, "
            "DROVER_WORKER_ENDPOINT, DROVER_EVENTS, DROVER_CURVE_SECRET, "
            "DROVER_CURVE_SERVER, DROVER_COLLECTOR_CURVE_SERVER.",
            0, 0, S_WIDTH);
        fputc('\n', out);
        dv_flags_wrap(out, s_exits, 0, 0, S_WIDTH);
        dv_flags_wrap(
            out,
            "drover health keeps its own: 0 healthy, 1 degraded, 2 down, "
            "3 collector unreachable.",
            0, 0, S_WIDTH);
        return;
    }
    if (cmd->own && !cmd->flags) { /* it words its own help */
        char *argv[] = { (char *)cmd->name, "--help", NULL };
        fflush(out);
        cmd->own(2, argv);
        return;
    }
    cli_usage_line(cmd, out);
    fputc('\n', out);
    s_paragraphs(cmd->about ? cmd->about : cmd->summary, out);
    fprintf(out, "\noptions:\n");
    const dv_flag_t *tables[8];
    int nt = cli_tables(cmd, tables);
    for (int t = 0; t < nt; t++)
        for (const dv_flag_t *f = tables[t]; f->kind != DV_FLAG_END; f++)
            dv_flag_help(f, out, S_WIDTH);
    if (cmd->examples)
        fprintf(out, "\nexamples:\n%s", cmd->examples);
    if (cmd->notes) {
        fputc('\n', out);
        s_paragraphs(cmd->notes, out);
    }
    fputc('\n', out);
    dv_flags_wrap(out, cmd->exits ? cmd->exits : s_exits, 0, 0, S_WIDTH);
}

/* ---- help and version as commands ----------------------------------------- */

static int
s_help_run(cli_t *c, int argc, char **argv)
{
    if (argc == 0) {
        cli_help(NULL, stdout);
        return CLI_OK;
    }
    const cli_cmd_t *cmd = cli_find(argv[0]);
    if (!cmd)
        return cli_usage(c, NULL, "no command '%s'", argv[0]);
    cli_help(cmd, stdout);
    return CLI_OK;
}

const cli_cmd_t cli_help_cmd = {
    .name = "help",
    .summary = "describe drover, or one command",
    .args = "[COMMAND]",
    .max_args = 1,
    .args_complete = DV_COMPLETE_COMMAND,
    .about = "Without COMMAND, every command and the exit codes they share; "
             "with it, that command's options (as 'drover COMMAND --help').",
    .run = s_help_run,
};

static int
s_version_run(cli_t *c, int argc, char **argv)
{
    if (c->json) {
        json_t *j = json_pack("{s:s}", "version", cli_version());
        cli_print_json(j);
        json_decref(j);
    } else {
        printf("drover %s\n", cli_version());
    }
    return CLI_OK;
}

const cli_cmd_t cli_version_cmd = {
    .name = "version",
    .summary = "print drover's version",
    .about = "Prints drover's version ('drover --version' too).",
    .shared = CLI_JSON,
    .run = s_version_run,
};

/* ---- dispatch -------------------------------------------------------------- */

const cli_cmd_t *
cli_find(const char *name)
{
    for (size_t i = 0; i < cli_ncommands; i++)
        if (!strcmp(cli_commands[i]->name, name))
            return cli_commands[i];
    return NULL;
}

static const cli_cmd_t *
s_closest_cmd(const char *name)
{
    const cli_cmd_t *best = NULL;
    size_t bd = 3;
    for (size_t i = 0; i < cli_ncommands; i++) {
        size_t d = dv_flags_distance(name, strlen(name), cli_commands[i]->name);
        if (d < bd) {
            bd = d;
            best = cli_commands[i];
        }
    }
    return best;
}

typedef struct {
    const char *flag, *env;
} s_curve_opt_t;

/* CurveZMQ flags given before the command (after it, they are the
 * command's own flags). */
static const s_curve_opt_t s_curve_broker[] = {
    { "--curve-secret", DV_CURVE_ENV_SECRET },
    { "--curve-server", DV_CURVE_ENV_SERVER },
    { "--collector-curve-server", DV_CURVE_ENV_COLLECTOR_SERVER },
    { NULL, NULL },
};

/* If argv[i] is one of opts' flags (value next or after '='), exports the
 * value as the variable the commands read, removes it from argv and
 * returns 1; 0 for another argument; -1 when the value is missing. */
static int
s_take_curve(const s_curve_opt_t *opts, int *argc, char **argv, int i)
{
    for (size_t k = 0; opts[k].flag; k++) {
        size_t n = strlen(opts[k].flag);
        if (strncmp(argv[i], opts[k].flag, n) != 0 ||
            (argv[i][n] != '\0' && argv[i][n] != '='))
            continue;
        int used = argv[i][n] == '=' ? 1 : 2;
        const char *v = used == 1       ? argv[i] + n + 1
                        : i + 1 < *argc ? argv[i + 1]
                                        : NULL;
        if (!v) {
            cli_fail(NULL, CLI_USAGE, "usage", "%s needs a FILE", opts[k].flag);
            return -1;
        }
        setenv(opts[k].env, v, 1);
        memmove(argv + i, argv + i + used,
                (size_t)(*argc - i - used + 1) * sizeof *argv);
        *argc -= used;
        return 1;
    }
    return 0;
}

static void
s_export(const char *env, const char *v)
{
    if (v)
        setenv(env, v, 1);
}

static int
s_run(const cli_cmd_t *cmd, int argc, char **argv)
{
    cli_t c = { .cmd = cmd };
    /* --json anywhere makes even a usage error JSON. */
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--json") && (cmd->shared & CLI_JSON))
            c.json = true;
    const dv_flag_t *tables[8];
    int nt = cli_tables(cmd, tables);
    char err[512];
    if (dv_flags_reset(tables, nt, err, sizeof err) != 0)
        return cli_usage(&c, NULL, "%s", err);
    /* Flags may come before, between and after the arguments; "--" ends
     * them. */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    if (!args)
        return cli_fail(&c, CLI_FAILED, "no_memory", "out of memory");
    int nargs = 0, at = 0;
    for (;;) {
        int first;
        const dv_flag_t *bad;
        dv_flags_rc_t rc =
            dv_flags_parse_ex(tables, nt, argc - at, argv + at, true, &first,
                              &bad, err, sizeof err);
        if (rc == DV_FLAGS_HELP) {
            free(args);
            cli_help(cmd, stdout);
            return CLI_OK;
        }
        if (rc == DV_FLAGS_ERROR) {
            free(args);
            const dv_flag_t *near =
                bad ? NULL : dv_flags_suggest(tables, nt, err);
            if (near)
                return cli_usage(&c, near, "%s; did you mean --%s?", err,
                                 near->name);
            return cli_usage(&c, bad, "%s", err);
        }
        first += at;
        if (first >= argc)
            break;
        if (!strcmp(argv[first - 1], "--") && first - 1 > at) {
            for (int i = first; i < argc; i++)
                args[nargs++] = argv[i];
            break;
        }
        args[nargs++] = argv[first];
        at = first;
    }
    int rc;
    if (nargs < cmd->min_args)
        rc = cli_usage(&c, NULL, "%s %s", cmd->args ? "needs" : "takes",
                       cmd->args ? cmd->args : "no arguments");
    else if (cmd->max_args >= 0 && nargs > cmd->max_args)
        rc = cli_usage(&c, NULL, "unexpected argument '%s'",
                       args[cmd->max_args]);
    else {
        c.json = s_sh.json;
        c.wide = s_sh.wide;
        c.yes = s_sh.yes;
        c.broker = s_sh.broker && *s_sh.broker ? s_sh.broker : NULL;
        c.collector = s_sh.collector;
        s_export(DV_CURVE_ENV_SECRET, s_sh.curve_secret);
        s_export(DV_CURVE_ENV_SERVER, s_sh.curve_server);
        s_export(DV_CURVE_ENV_COLLECTOR_SERVER, s_sh.collector_curve_server);
        rc = cmd->run(&c, nargs, args);
    }
    free(args);
    return rc;
}

int
cli_main(int argc, char **argv)
{
    /* CurveZMQ flags before the command. */
    int took;
    while (argc > 1 && (took = s_take_curve(s_curve_broker, &argc, argv, 1)))
        if (took < 0)
            return CLI_USAGE;
    if (argc < 2) {
        cli_help(NULL, stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
        cli_help(NULL, stdout);
        return CLI_OK;
    }
    if (!strcmp(name, "--version"))
        name = "version";
    const cli_cmd_t *cmd = cli_find(name);
    if (!cmd) {
        const cli_cmd_t *near = s_closest_cmd(name);
        if (near)
            cli_fail(NULL, CLI_USAGE, "usage",
                     "unknown command '%s'; did you mean '%s'?", name,
                     near->name);
        else
            cli_fail(NULL, CLI_USAGE, "usage", "unknown command '%s'", name);
        fprintf(stderr, "(drover --help: every command)\n");
        return CLI_USAGE;
    }
    if (cmd->own)
        return cmd->own(argc - 1, argv + 1);
    return s_run(cmd, argc - 1, argv + 1);
}
