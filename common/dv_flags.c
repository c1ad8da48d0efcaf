/* dv_flags - command-line flags from a table; see dv_flags.h. */
#include "dv_flags.h"

#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_clock.h"
#include "dv_err.h"

static bool
s_bounded(const dv_flag_t *f)
{
    return f->min != 0 || f->max != 0;
}

static int
s_set_int(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    double lo = s_bounded(f) ? f->min : (double)INT32_MIN;
    double hi = s_bounded(f) ? f->max : (double)INT32_MAX;
    if (!*v || errno || *end || (double)n < lo || (double)n > hi)
        return dv_err_set(err, es, "'%s' is not a whole number in %.0f..%.0f",
                          v, lo, hi);
    *(int *)f->dest = (int)n;
    return 0;
}

static int
s_set_double(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (!*v || errno || *end || !isfinite(d))
        return dv_err_set(err, es, "'%s' is not a number", v);
    if (s_bounded(f) && (d < f->min || d > f->max))
        return dv_err_set(err, es, "'%s' is not in %g..%g", v, f->min, f->max);
    *(double *)f->dest = d;
    return 0;
}

static int
s_set_duration(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    int64_t ms;
    if (dv_duration_parse(v, &ms) != 0)
        return dv_err_set(err, es, "'%s' is not a duration in seconds", v);
    if (s_bounded(f) && ((double)ms < f->min || (double)ms > f->max))
        return dv_err_set(err, es, "'%s' is not in %g..%g seconds", v,
                          f->min / 1000.0, f->max / 1000.0);
    *(int64_t *)f->dest = ms;
    return 0;
}

static int
s_set_choice(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    char list[256] = "";
    size_t used = 0;
    for (int i = 0; f->choices[i]; i++) {
        if (strcmp(v, f->choices[i]) == 0) {
            *(int *)f->dest = i;
            return 0;
        }
        int n = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                         f->choices[i]);
        if (n > 0 && (size_t)n < sizeof list - used)
            used += (size_t)n;
    }
    return dv_err_set(err, es, "'%s' is not one of %s", v, list);
}

/* Stores v by f's kind (not FN); -1 with a reason without the flag's name. */
static int
s_set(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    switch (f->kind) {
    case DV_FLAG_STRING:
        *(const char **)f->dest = v;
        return 0;
    case DV_FLAG_DURATION:
        return s_set_duration(f, v, err, es);
    case DV_FLAG_INT:
        return s_set_int(f, v, err, es);
    case DV_FLAG_DOUBLE:
        return s_set_double(f, v, err, es);
    case DV_FLAG_SWITCH:
        *(bool *)f->dest = true;
        return 0;
    case DV_FLAG_CHOICE:
        return s_set_choice(f, v, err, es);
    case DV_FLAG_FN:
    case DV_FLAG_END:
        break;
    }
    return dv_err_set(err, es, "not a flag");
}

const dv_flag_t *
dv_flags_find(const dv_flag_t *const *tables, int ntables, const char *name,
              size_t n)
{
    for (int t = 0; t < ntables; t++)
        for (const dv_flag_t *f = tables[t]; f && f->kind != DV_FLAG_END; f++)
            if (strlen(f->name) == n && strncmp(f->name, name, n) == 0)
                return f;
    return NULL;
}

static const dv_flag_t *
s_find_alias(const dv_flag_t *const *tables, int ntables, char alias)
{
    for (int t = 0; t < ntables; t++)
        for (const dv_flag_t *f = tables[t]; f && f->kind != DV_FLAG_END; f++)
            if (f->alias && f->alias == alias)
                return f;
    return NULL;
}

int
dv_flags_reset(const dv_flag_t *const *tables, int ntables, char *err,
               size_t es)
{
    for (int t = 0; t < ntables; t++)
        for (const dv_flag_t *f = tables[t]; f && f->kind != DV_FLAG_END; f++) {
            if (f->kind == DV_FLAG_FN || !f->dest)
                continue;
            const char *env = f->env ? getenv(f->env) : NULL;
            const char *v = env && *env ? env : f->dflt;
            if (!v) {
                switch (f->kind) {
                case DV_FLAG_STRING:
                    *(const char **)f->dest = NULL;
                    break;
                case DV_FLAG_DURATION:
                    *(int64_t *)f->dest = 0;
                    break;
                case DV_FLAG_INT:
                case DV_FLAG_CHOICE:
                    *(int *)f->dest = 0;
                    break;
                case DV_FLAG_DOUBLE:
                    *(double *)f->dest = 0;
                    break;
                case DV_FLAG_SWITCH:
                    *(bool *)f->dest = false;
                    break;
                default:
                    break;
                }
                continue;
            }
            if (f->kind == DV_FLAG_SWITCH) {
                *(bool *)f->dest = v == f->dflt ? true : strcmp(v, "0") != 0;
                continue;
            }
            char why[256] = "";
            if (s_set(f, v, why, sizeof why) != 0)
                return dv_err_set(err, es, "%s: %s",
                                  v == env ? f->env : f->name, why);
        }
    return 0;
}

const char *
dv_flag_arg(const dv_flag_t *f, char *buf, size_t size)
{
    if (f->kind == DV_FLAG_SWITCH)
        return "";
    if (f->arg)
        return f->arg;
    switch (f->kind) {
    case DV_FLAG_DURATION:
        return "SECONDS";
    case DV_FLAG_INT:
    case DV_FLAG_DOUBLE:
        return "N";
    case DV_FLAG_CHOICE: {
        size_t used = 0;
        buf[0] = '\0';
        for (int i = 0; f->choices[i] && used < size; i++) {
            int n = snprintf(buf + used, size - used, "%s%s", i ? "|" : "",
                             f->choices[i]);
            if (n < 0)
                break;
            used += (size_t)n;
        }
        return buf;
    }
    default:
        return "VALUE";
    }
}

dv_flags_rc_t
dv_flags_parse(const dv_flag_t *const *tables, int ntables, int argc,
               char **argv, bool allow_args, int *first_arg, char *err,
               size_t es)
{
    return dv_flags_parse_ex(tables, ntables, argc, argv, allow_args, first_arg,
                             NULL, err, es);
}

dv_flags_rc_t
dv_flags_parse_ex(const dv_flag_t *const *tables, int ntables, int argc,
                  char **argv, bool allow_args, int *first_arg,
                  const dv_flag_t **bad, char *err, size_t es)
{
    if (bad)
        *bad = NULL;
    if (first_arg)
        *first_arg = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return DV_FLAGS_HELP;
        if (allow_args && strcmp(a, "--") == 0) {
            if (first_arg)
                *first_arg = i + 1;
            return DV_FLAGS_OK;
        }
        if (a[0] == '-' && a[1] && a[1] != '-' && !a[2]) {
            const dv_flag_t *f = s_find_alias(tables, ntables, a[1]);
            if (f && f->kind == DV_FLAG_SWITCH) {
                *(bool *)f->dest = true;
                continue;
            }
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            /* "-" (stdin) and negative numbers are arguments */
            bool arg = a[0] != '-' || a[1] == '\0' ||
                       (a[1] >= '0' && a[1] <= '9') || a[1] == '.';
            if (allow_args && arg) {
                if (first_arg)
                    *first_arg = i;
                return DV_FLAGS_OK;
            }
            dv_err_set(err, es,
                       a[0] == '-' ? "unknown option '%s'"
                                   : "unexpected argument '%s'",
                       a);
            return DV_FLAGS_ERROR;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        const dv_flag_t *f = dv_flags_find(tables, ntables, name, n);
        if (!f) {
            dv_err_set(err, es, "unknown option '--%.*s'", (int)n, name);
            return DV_FLAGS_ERROR;
        }
        if (bad)
            *bad = f;
        const char *v = NULL;
        if (f->kind == DV_FLAG_SWITCH) {
            if (eq) {
                dv_err_set(err, es, "--%s takes no value", f->name);
                return DV_FLAGS_ERROR;
            }
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            dv_err_set(err, es, "--%s needs a value", f->name);
            return DV_FLAGS_ERROR;
        }
        if (f->kind == DV_FLAG_FN) {
            if (f->fn(f, v, err, es) != 0)
                return DV_FLAGS_ERROR;
            if (bad)
                *bad = NULL;
            continue;
        }
        char why[256] = "";
        if (s_set(f, v, why, sizeof why) != 0) {
            dv_err_set(err, es, "--%s: %s", f->name, why);
            return DV_FLAGS_ERROR;
        }
        if (bad)
            *bad = NULL;
    }
    return DV_FLAGS_OK;
}

/* ---- help ---------------------------------------------------------------- */

void
dv_flags_wrap(FILE *out, const char *text, int col, int indent, int width)
{
    const char *p = text;
    bool first_word = true;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *e = p;
        while (*e && *e != ' ' && *e != '\n')
            e++;
        int n = (int)(e - p);
        if (!first_word && col + 1 + n > width) {
            fprintf(out, "\n%*s", indent, "");
            col = indent;
        } else if (!first_word) {
            fputc(' ', out);
            col++;
        }
        fprintf(out, "%.*s", n, p);
        col += n;
        first_word = false;
        p = e;
        if (*p == '\n') { /* a line break kept as it is */
            fprintf(out, "\n%*s", indent, "");
            col = indent;
            first_word = true;
            p++;
        }
    }
    fputc('\n', out);
}

const char *
dv_flag_note(const dv_flag_t *f, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
#define S_ADD(...)                                                             \
    do {                                                                       \
        int k_ = snprintf(buf + n, size - n, __VA_ARGS__);                     \
        if (k_ > 0 && (size_t)k_ < size - n)                                   \
            n += (size_t)k_;                                                   \
    } while (0)
    bool bounded = f->min != 0 || f->max != 0;
    if (bounded && f->kind == DV_FLAG_INT)
        S_ADD("%.0f..%.0f", f->min, f->max);
    else if (bounded && f->kind == DV_FLAG_DOUBLE)
        S_ADD("%g..%g", f->min, f->max);
    else if (bounded && f->kind == DV_FLAG_DURATION)
        S_ADD("%g..%g s", f->min / 1000.0, f->max / 1000.0);
    if (f->env)
        S_ADD("%s$%s", n ? "; " : "", f->env);
    if (f->dflt && f->kind != DV_FLAG_SWITCH)
        S_ADD("%s%s %s", n ? "; " : "", f->env ? "else" : "default", f->dflt);
#undef S_ADD
    return buf;
}

void
dv_flag_help(const dv_flag_t *f, FILE *out, int width)
{
    char argbuf[128], head[160], note[256];
    const char *arg = dv_flag_arg(f, argbuf, sizeof argbuf);
    int n;
    if (f->alias)
        n = snprintf(head, sizeof head, "  -%c, --%s%s%s", f->alias, f->name,
                     *arg ? " " : "", arg);
    else
        n = snprintf(head, sizeof head, "  --%s%s%s", f->name, *arg ? " " : "",
                     arg);
    fputs(head, out);
    if (n + 2 > DV_FLAGS_HELP_COL) {
        fprintf(out, "\n%*s", DV_FLAGS_HELP_COL, "");
    } else {
        fprintf(out, "%*s", DV_FLAGS_HELP_COL - n, "");
    }
    char text[1024];
    dv_flag_note(f, note, sizeof note);
    snprintf(text, sizeof text, "%s%s%s%s", f->help ? f->help : "",
             *note ? " (" : "", note, *note ? ")" : "");
    dv_flags_wrap(out, text, DV_FLAGS_HELP_COL, DV_FLAGS_HELP_COL, width);
}

void
dv_flags_help(const dv_flag_t *const *tables, int ntables, FILE *out)
{
    for (int t = 0; t < ntables; t++)
        for (const dv_flag_t *f = tables[t]; f && f->kind != DV_FLAG_END; f++)
            dv_flag_help(f, out, DV_FLAGS_WIDTH);
}

/* ---- did you mean ------------------------------------------------------------ */

size_t
dv_flags_distance(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    size_t d[41][41];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] =
                sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

const dv_flag_t *
dv_flags_suggest(const dv_flag_t *const *tables, int ntables, const char *err)
{
    const char *u = strstr(err, "unknown option '--");
    if (!u)
        return NULL;
    const char *name = u + strlen("unknown option '--");
    size_t n = strcspn(name, "'=");
    const dv_flag_t *best = NULL;
    size_t bd = 3;
    for (int t = 0; t < ntables; t++)
        for (const dv_flag_t *f = tables[t]; f && f->kind != DV_FLAG_END; f++) {
            size_t k = dv_flags_distance(name, n, f->name);
            if (k < bd) {
                bd = k;
                best = f;
            }
        }
    return best;
}
