/* cli_doc - the shell completion and the man pages, made from the command
 * table (cli_cmd.h) that also parses the arguments: `drover completion
 * bash|zsh` and `drover man`. The build runs both and installs their
 * output (cli/CMakeLists.txt).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_cmd.h"

/* ---- completion ------------------------------------------------------------ */

/* Every flag of cmd ("--json --limit ..."), with aliases. */
static void
s_flag_words(const cli_cmd_t *cmd, FILE *out)
{
    const dv_flag_t *tables[8];
    int nt = cli_tables(cmd, tables);
    const char *sep = "";
    for (int t = 0; t < nt; t++)
        for (const dv_flag_t *f = tables[t]; f->kind != DV_FLAG_END; f++) {
            fprintf(out, "%s--%s", sep, f->name);
            sep = " ";
            if (f->alias)
                fprintf(out, " -%c", f->alias);
        }
}

static void
s_command_words(FILE *out)
{
    for (size_t i = 0; i < cli_ncommands; i++)
        fprintf(out, "%s%s", i ? " " : "", cli_commands[i]->name);
}

static void
s_choices(const dv_flag_t *f, FILE *out)
{
    for (int i = 0; f->choices[i]; i++)
        fprintf(out, "%s%s", i ? " " : "", f->choices[i]);
}

static void
s_bash(FILE *out)
{
    fprintf(out,
            "# bash completion for drover %s: made by `drover "
            "completion bash`\n"
            "_drover() {\n"
            "    local cur=${COMP_WORDS[COMP_CWORD]}\n"
            "    local prev=${COMP_WORDS[COMP_CWORD-1]}\n"
            "    local cmds=\"",
            cli_version());
    s_command_words(out);
    fprintf(out, "\"\n"
                 "    if [[ $COMP_CWORD -eq 1 ]]; then\n"
                 "        COMPREPLY=($(compgen -W \"$cmds\" -- \"$cur\"))\n"
                 "        return\n"
                 "    fi\n"
                 "    local flags=\"\" args=none\n"
                 "    case ${COMP_WORDS[1]} in\n");
    for (size_t i = 0; i < cli_ncommands; i++) {
        const cli_cmd_t *cmd = cli_commands[i];
        fprintf(out, "    %s)\n        case $prev in\n", cmd->name);
        const dv_flag_t *tables[8];
        int nt = cli_tables(cmd, tables);
        for (int t = 0; t < nt; t++)
            for (const dv_flag_t *f = tables[t]; f->kind != DV_FLAG_END; f++) {
                if (f->kind == DV_FLAG_SWITCH)
                    continue;
                fprintf(out, "        --%s) ", f->name);
                if (f->kind == DV_FLAG_CHOICE && f->choices) {
                    fprintf(out, "COMPREPLY=($(compgen -W \"");
                    s_choices(f, out);
                    fprintf(out, "\" -- \"$cur\"))");
                } else if (f->complete == DV_COMPLETE_FILE) {
                    fprintf(out, "COMPREPLY=($(compgen -f -- \"$cur\"))");
                } else if (f->complete == DV_COMPLETE_DIR) {
                    fprintf(out, "COMPREPLY=($(compgen -d -- \"$cur\"))");
                } else {
                    fprintf(out, "COMPREPLY=()");
                }
                fprintf(out, "; return ;;\n");
            }
        fprintf(out, "        esac\n        flags=\"");
        s_flag_words(cmd, out);
        fprintf(out, "\"\n");
        const char *args = cmd->args_complete == DV_COMPLETE_FILE  ? "file"
                           : cmd->args_complete == DV_COMPLETE_DIR ? "dir"
                           : cmd->args_complete == DV_COMPLETE_COMMAND
                               ? "command"
                               : "none";
        fprintf(out, "        args=%s ;;\n", args);
    }
    fprintf(out, "    esac\n"
                 "    if [[ $cur == -* || $args == none ]]; then\n"
                 "        COMPREPLY=($(compgen -W \"$flags\" -- \"$cur\"))\n"
                 "    elif [[ $args == file ]]; then\n"
                 "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
                 "    elif [[ $args == dir ]]; then\n"
                 "        COMPREPLY=($(compgen -d -- \"$cur\"))\n"
                 "    else\n"
                 "        COMPREPLY=($(compgen -W \"$cmds\" -- \"$cur\"))\n"
                 "    fi\n"
                 "}\n"
                 "complete -F _drover drover\n");
}

/* Text inside a zsh single-quoted _arguments spec, in a [help] part:
 * quotes, brackets and colons escaped. */
static void
s_zsh_text(const char *s, FILE *out)
{
    for (; s && *s; s++) {
        if (*s == '\'')
            fputs("'\\''", out);
        else if (*s == '[' || *s == ']' || *s == ':' || *s == '\\')
            fprintf(out, "\\%c", *s);
        else
            fputc(*s, out);
    }
}

static void
s_zsh(FILE *out)
{
    fprintf(out,
            "#compdef drover\n"
            "# zsh completion for drover %s: made by `drover "
            "completion zsh`\n"
            "_drover() {\n"
            "    local -a cmds\n"
            "    cmds=(\n",
            cli_version());
    for (size_t i = 0; i < cli_ncommands; i++) {
        fprintf(out, "        '%s:", cli_commands[i]->name);
        s_zsh_text(cli_commands[i]->summary, out);
        fprintf(out, "'\n");
    }
    fprintf(out, "    )\n"
                 "    if (( CURRENT == 2 )); then\n"
                 "        _describe -t commands 'drover command' cmds\n"
                 "        return\n"
                 "    fi\n"
                 "    local cmd=$words[2]\n"
                 "    shift words\n"
                 "    (( CURRENT-- ))\n"
                 "    case $cmd in\n");
    for (size_t i = 0; i < cli_ncommands; i++) {
        const cli_cmd_t *cmd = cli_commands[i];
        fprintf(out, "    %s)\n        _arguments -s", cmd->name);
        const dv_flag_t *tables[8];
        int nt = cli_tables(cmd, tables);
        for (int t = 0; t < nt; t++)
            for (const dv_flag_t *f = tables[t]; f->kind != DV_FLAG_END; f++) {
                char argbuf[128];
                fprintf(out, " \\\n            '--%s[", f->name);
                s_zsh_text(f->help, out);
                fputc(']', out);
                if (f->kind != DV_FLAG_SWITCH) {
                    fputc(':', out);
                    s_zsh_text(dv_flag_arg(f, argbuf, sizeof argbuf), out);
                    if (f->kind == DV_FLAG_CHOICE && f->choices) {
                        fputs(":(", out);
                        s_choices(f, out);
                        fputc(')', out);
                    } else if (f->complete == DV_COMPLETE_FILE) {
                        fputs(":_files", out);
                    } else if (f->complete == DV_COMPLETE_DIR) {
                        fputs(":_files -/", out);
                    } else {
                        fputs(": ", out);
                    }
                }
                fputc('\'', out);
            }
        if (cmd->args_complete == DV_COMPLETE_FILE)
            fputs(" \\\n            '*:file:_files'", out);
        else if (cmd->args_complete == DV_COMPLETE_DIR)
            fputs(" \\\n            '*:directory:_files -/'", out);
        else if (cmd->args_complete == DV_COMPLETE_COMMAND)
            fputs(" \\\n            '1:command:(${cmds%%%%:*})'", out);
        fputs(" ;;\n", out);
    }
    fprintf(out, "    esac\n}\n_drover \"$@\"\n");
}

static int
s_completion_run(cli_t *c, int argc, char **argv)
{
    if (!strcmp(argv[0], "bash"))
        s_bash(stdout);
    else if (!strcmp(argv[0], "zsh"))
        s_zsh(stdout);
    else
        return cli_usage(c, NULL, "'%s': bash or zsh", argv[0]);
    return CLI_OK;
}

const cli_cmd_t cli_completion = {
    .name = "completion",
    .summary = "print a bash or zsh completion script",
    .args = "bash|zsh",
    .min_args = 1,
    .max_args = 1,
    .about = "Prints the completion script for the shell, made from the "
             "same table that parses every command's flags. For this "
             "shell: 'source <(drover completion bash)'; installed, "
             "cmake --install puts both where bash-completion and zsh "
             "look.",
    .examples = "  source <(drover completion bash)\n"
                "  drover completion zsh > ~/.zfunc/_drover\n",
    .run = s_completion_run,
};

/* ---- man pages ------------------------------------------------------------ */

/* Text as roff: backslashes and dashes escaped, a leading dot or quote
 * made literal. */
static void
s_roff(const char *s, FILE *out)
{
    bool bol = true;
    for (; s && *s; s++) {
        if (bol && (*s == '.' || *s == '\''))
            fputs("\\&", out);
        bol = *s == '\n';
        unsigned char c = (unsigned char)*s;
        if (c == '\\') {
            fputs("\\e", out);
        } else if (c == '-') {
            fputs("\\-", out);
        } else if (c >= 0xc0) { /* UTF-8: a named glyph, \[u2026] */
            int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
            unsigned cp = c & (0x3fu >> n);
            int k = 0;
            while (k < n && ((unsigned char)s[k + 1] & 0xc0) == 0x80)
                cp = (cp << 6) | ((unsigned char)s[++k] & 0x3f);
            if (k == n)
                fprintf(out, "\\[u%04X]", cp);
            s += k;
        } else if (c < 0x80) {
            fputc(c, out);
        } /* a stray continuation byte: dropped */
    }
}

/* Paragraphs split by "\n\n", as roff paragraphs. */
static void
s_roff_paragraphs(const char *p, FILE *out)
{
    while (p && *p) {
        const char *e = strstr(p, "\n\n");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char para[4096];
        snprintf(para, sizeof para, "%.*s", (int)n, p);
        s_roff(para, out);
        fputc('\n', out);
        p = e ? e + 2 : NULL;
        if (p)
            fputs(".PP\n", out);
    }
}

static void
s_upper(const char *s, FILE *out)
{
    for (; *s; s++)
        fputc(*s >= 'a' && *s <= 'z' ? *s - 32 : *s == '-' ? '_' : *s, out);
}

static const char s_exit_status[] =
    ".TP\n0\nsucceeded\n.TP\n1\nrefused or failed, or a job waited for did "
    "not succeed\n.TP\n2\nusage error\n.TP\n3\nthe broker or collector did "
    "not answer\n.TP\n4\nnot found\n.TP\n5\nnot allowed (the certificate's "
    "role)\n.TP\n6\ntimed out\n";

static void
s_man_page(const cli_cmd_t *cmd, FILE *out)
{
    fputs(".TH DROVER", out);
    if (cmd) {
        fputc('-', out);
        s_upper(cmd->name, out);
    }
    fprintf(out, " 1 \"\" \"drover %s\" \"drover manual\"\n.SH NAME\n",
            cli_version());
    if (!cmd) {
        fputs("drover \\- a job queue: broker, workers, collector and the "
              "commands to drive them\n.SH SYNOPSIS\n.B drover\n\\fICOMMAND\\fR"
              " [\\fIOPTIONS\\fR]\n.SH DESCRIPTION\n",
              out);
        s_roff("drover keeps jobs durably in a broker and hands them to pools "
               "of worker processes, with retries, backoff and progress; a "
               "collector keeps their history for the commands below and for "
               "/metrics.",
               out);
        fputs("\n.SH COMMANDS\n", out);
        for (size_t i = 0; i < cli_ncommands; i++) {
            fprintf(out, ".TP\n.BR drover\\-%s (1)\n", cli_commands[i]->name);
            s_roff(cli_commands[i]->summary, out);
            fputc('\n', out);
        }
        fputs(".SH ENVIRONMENT\n", out);
        s_roff("DROVER_BROKER, DROVER_COLLECTOR, DROVER_WORKER_ENDPOINT, "
               "DROVER_EVENTS, DROVER_CURVE_SECRET, DROVER_CURVE_SERVER, "
               "DROVER_COLLECTOR_CURVE_SERVER: defaults for the flags of the "
               "same meaning.",
               out);
        fprintf(out, "\n.SH EXIT STATUS\n%s", s_exit_status);
        s_roff("drover health keeps its own: 0 healthy, 1 degraded, 2 down, 3 "
               "collector unreachable.",
               out);
        fputc('\n', out);
        return;
    }
    fprintf(out, "drover\\-%s \\- ", cmd->name);
    s_roff(cmd->summary, out);
    fprintf(out, "\n.SH SYNOPSIS\n.B drover %s\n[\\fIOPTIONS\\fR]", cmd->name);
    if (cmd->args) {
        fputc(' ', out);
        s_roff(cmd->args, out);
    }
    fputs("\n.SH DESCRIPTION\n", out);
    s_roff_paragraphs(cmd->about ? cmd->about : cmd->summary, out);
    if (cmd->own && !cmd->flags) {
        fprintf(out, ".PP\n\\&'drover %s \\-\\-help' lists its options.\n",
                cmd->name);
    } else {
        fputs(".SH OPTIONS\n", out);
        const dv_flag_t *tables[8];
        int nt = cli_tables(cmd, tables);
        for (int t = 0; t < nt; t++)
            for (const dv_flag_t *f = tables[t]; f->kind != DV_FLAG_END; f++) {
                char argbuf[128], note[256];
                const char *arg = dv_flag_arg(f, argbuf, sizeof argbuf);
                fputs(".TP\n", out);
                if (f->alias)
                    fprintf(out, "\\fB\\-%c\\fR, ", f->alias);
                fputs("\\fB\\-\\-", out);
                s_roff(f->name, out);
                fputs("\\fR", out);
                if (*arg) {
                    fputs(" \\fI", out);
                    s_roff(arg, out);
                    fputs("\\fR", out);
                }
                fputc('\n', out);
                s_roff(f->help ? f->help : "", out);
                dv_flag_note(f, note, sizeof note);
                if (*note) {
                    fputs(" (", out);
                    s_roff(note, out);
                    fputc(')', out);
                }
                fputc('\n', out);
            }
    }
    if (cmd->notes) {
        fputs(".SH NOTES\n", out);
        s_roff_paragraphs(cmd->notes, out);
    }
    if (cmd->examples) {
        fputs(".SH EXAMPLES\n.nf\n", out);
        s_roff(cmd->examples, out);
        fputs(".fi\n", out);
    }
    fputs(".SH EXIT STATUS\n", out);
    if (cmd->exits) {
        s_roff(cmd->exits, out);
        fputc('\n', out);
    } else {
        fputs(s_exit_status, out);
    }
    fputs(".SH SEE ALSO\n.BR drover (1)\n", out);
}

static struct {
    const char *dir;
} s_man_o;

static const dv_flag_t s_man_flags[] = {
    DV_FLAG_STR("dir", &s_man_o.dir, .arg = "DIR", .complete = DV_COMPLETE_DIR,
                .help = "write drover.1 and drover-COMMAND.1 for every "
                        "command into DIR (made if missing)"),
    DV_FLAG_TABLE_END,
};

static int
s_man_file(const cli_t *c, const char *dir, const cli_cmd_t *cmd)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/drover%s%s.1", dir, cmd ? "-" : "",
             cmd ? cmd->name : "");
    FILE *f = fopen(path, "w");
    if (!f)
        return cli_fail(c, CLI_FAILED, "io", "%s: %s", path, strerror(errno));
    s_man_page(cmd, f);
    if (fclose(f) != 0)
        return cli_fail(c, CLI_FAILED, "io", "%s: %s", path, strerror(errno));
    return CLI_OK;
}

static int
s_man_run(cli_t *c, int argc, char **argv)
{
    const cli_cmd_t *cmd = NULL;
    if (argc == 1 && !(cmd = cli_find(argv[0])))
        return cli_usage(c, NULL, "no command '%s'", argv[0]);
    if (!s_man_o.dir) {
        s_man_page(cmd, stdout);
        return CLI_OK;
    }
    if (mkdir(s_man_o.dir, 0755) != 0 && errno != EEXIST)
        return cli_fail(c, CLI_FAILED, "io", "%s: %s", s_man_o.dir,
                        strerror(errno));
    int rc = s_man_file(c, s_man_o.dir, cmd);
    for (size_t i = 0; !cmd && rc == CLI_OK && i < cli_ncommands; i++)
        rc = s_man_file(c, s_man_o.dir, cli_commands[i]);
    return rc;
}

const cli_cmd_t cli_man = {
    .name = "man",
    .summary = "print the manual page of drover or of one command (roff)",
    .args = "[COMMAND]",
    .max_args = 1,
    .args_complete = DV_COMPLETE_COMMAND,
    .about = "Prints drover(1), or drover-COMMAND(1), as roff, made from the "
             "same table that parses the flags; 'drover man jobs | man -l -' "
             "reads it. With --dir, writes all of them (the build does, and "
             "cmake --install puts them in man1).",
    .flags = s_man_flags,
    .run = s_man_run,
};
