/* keys_view - the text of `drover keys` (see keys_view.h). */
#include "keys_view.h"

#include "cli_out.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Widest KEY cell; longer ids are cut to fit, with "…" (not with wide). */
#define S_KEY_MAX 20
#define S_GAP     2

enum {
    C_KEY,
    C_HASH,
    C_STATE,
    C_LIMIT,
    C_REQS,
    C_TOKENS,
    C_SHARE,
    C_429,
    C_ERRORS,
    C_WORKERS,
    C_COUNT
};

static const char *const s_heads[C_COUNT] = {
    "KEY",    "HASH",  "STATE", "LIMIT",  "REQS",
    "TOKENS", "SHARE", "429s",  "ERRORS", "WORKERS",
};
/* Right-aligned columns: the counts. */
static const bool s_right[C_COUNT] = {
    [C_REQS] = true, [C_TOKENS] = true, [C_SHARE] = true,
    [C_429] = true,  [C_ERRORS] = true,
};

typedef struct {
    char cell[C_COUNT][128];
} s_row_t;

static long long
s_int(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v)
                              : (long long)json_number_value(v);
}

/* Display columns of UTF-8 text: bytes that do not continue a character. */
static size_t
s_cols(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* A copy of o[key] (dflt when absent) into buf, control characters as
 * '?', at most max display columns: a longer text keeps what fits whole
 * characters before "…". */
static void
s_text(char *buf, size_t size, const json_t *o, const char *key,
       const char *dflt, size_t max)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || !*s)
        s = dflt;
    size_t o_ = 0;
    for (; *s && o_ + 1 < size; s++) {
        unsigned char c = (unsigned char)*s;
        buf[o_++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    buf[o_] = '\0';
    if (max == 0 || s_cols(buf) <= max)
        return;
    /* Keep max - 1 columns, then "…". */
    size_t cols = 0, i = 0;
    for (; buf[i]; i++) {
        if (((unsigned char)buf[i] & 0xC0) != 0x80 && cols++ == max - 1)
            break;
    }
    if (i + 4 <= size)
        memcpy(buf + i, "\xe2\x80\xa6", 4);
}

const char *
keys_view_window(long long ms, char *buf, size_t size)
{
    if (ms <= 0)
        ms = 60000; /* the protocol's default window */
    if (ms % 1000)
        snprintf(buf, size, "%gs", (double)ms / 1000.0);
    else if (ms % 3600000 == 0)
        snprintf(buf, size, "%lldh", ms / 3600000);
    else if (ms > 120000 && ms % 60000 == 0)
        snprintf(buf, size, "%lldm", ms / 60000);
    else
        snprintf(buf, size, "%llds", ms / 1000);
    return buf;
}

static void
s_state(char *buf, size_t size, const json_t *k)
{
    char st[32];
    s_text(st, sizeof st, k, "state", "?", 0);
    long long cool = s_int(k, "cool"), dis = s_int(k, "disabled");
    if (!strcmp(st, "cooling") && cool > 0)
        snprintf(buf, size, "cooling %s", cli_dur(cool));
    else if (!strcmp(st, "disabled") && dis > 0)
        snprintf(buf, size, "disabled %lld", dis);
    else
        snprintf(buf, size, "%s", st);
}

/* "600/60s", "38/60s learned (rpm 600)", "600/60s, tpm 90,000",
 * "tpm 90,000/60s", "none". */
static void
s_limit(char *buf, size_t size, const json_t *k)
{
    char w[32];
    long long limit = s_int(k, "limit"), learned = s_int(k, "learned");
    long long rpm = s_int(k, "rpm"), tpm = s_int(k, "tpm");
    keys_view_window(s_int(k, "window"), w, sizeof w);
    size_t n = 0;
    buf[0] = '\0';
    if (limit > 0) {
        n = (size_t)snprintf(buf, size, "%lld/%s", limit, w);
        if (learned > 0 && (rpm <= 0 || learned < rpm) && n < size)
            n += (size_t)snprintf(buf + n, size - n, " learned");
        if (learned > 0 && rpm > 0 && learned < rpm && n < size)
            n += (size_t)snprintf(buf + n, size - n, " (rpm %lld)", rpm);
    }
    if (tpm > 0 && n < size)
        n += (size_t)snprintf(buf + n, size - n,
                              limit > 0 ? ", tpm %s" : "tpm %s/%s",
                              cli_num(tpm), w);
    if (n == 0)
        snprintf(buf, size, "none");
}

static void
s_share(char *buf, size_t size, double share)
{
    if (share <= 0)
        snprintf(buf, size, "0%%");
    else if (share < 0.005)
        snprintf(buf, size, "<1%%");
    else
        snprintf(buf, size, "%.0f%%",
                 share * 100.0 > 100 ? 100.0 : share * 100.0);
}

/* "3 w-a,w-b,w-c" when it fits in avail columns, else as many whole names
 * as fit then "+N" (the ones left out), else just the count. A name is
 * shown only when the "+N" after it fits too, so it never needs cutting. */
static void
s_workers(char *buf, size_t size, const json_t *k, size_t avail)
{
    const json_t *ws = json_object_get(k, "workers");
    size_t n = json_array_size(ws);
    int used = snprintf(buf, size, "%zu", n);
    if (used < 0 || (size_t)used >= size)
        return;
    size_t len = (size_t)used;
    for (size_t i = 0; i < n; i++) {
        char name[128], more[32];
        s_text(name, sizeof name, json_array_get(ws, i), "name", "?", 0);
        /* What must still fit after this name when it is not the last. */
        snprintf(more, sizeof more, ",+%zu", n - i - 1);
        size_t need =
            s_cols(buf) + 1 + s_cols(name) + (i + 1 < n ? strlen(more) : 0);
        bool fits = need <= avail && len + 1 + strlen(name) + 1 < size;
        if (!fits) {
            /* "+N" only after a name: "2 +2" would read as a sum. */
            snprintf(more, sizeof more, ",+%zu", n - i);
            if (i && s_cols(buf) + strlen(more) <= avail &&
                len + strlen(more) < size)
                memcpy(buf + len, more, strlen(more) + 1);
            return;
        }
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? "," : " ",
                                name);
    }
}

static void
s_pad(FILE *out, const char *s, size_t width, bool right)
{
    size_t cols = s_cols(s);
    if (right)
        for (size_t i = cols; i < width; i++)
            fputc(' ', out);
    fputs(s, out);
    if (!right)
        for (size_t i = cols; i < width; i++)
            fputc(' ', out);
}

/* Prints text after prefix, wrapped at spaces to width; continuation lines
 * start with two spaces. Words longer than a line are printed whole. */
static void
s_wrap(FILE *out, const char *prefix, const char *text, size_t width)
{
    fputs(prefix, out);
    size_t col = s_cols(prefix);
    const char *p = text;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        size_t wl = strcspn(p, " ");
        char word[512];
        size_t take = wl < sizeof word - 1 ? wl : sizeof word - 1;
        memcpy(word, p, take);
        word[take] = '\0';
        size_t wc = s_cols(word);
        if (col + 1 + wc > width) {
            fputs("\n  ", out);
            col = 2;
        } else {
            fputc(' ', out);
            col++;
        }
        fputs(word, out);
        col += wc;
        p += wl;
    }
    fputc('\n', out);
}

void
keys_view_table(FILE *out, const json_t *body, int width, bool wide)
{
    size_t w = width > 0 ? (size_t)width : 80;
    const json_t *keys = json_object_get(body, "keys");
    size_t n = json_array_size(keys);
    if (n == 0) {
        fputs("no API keys known to the broker (workers declare their keys "
              "when they connect with an http handler that has keys)\n",
              out);
        return;
    }
    s_row_t *rows = calloc(n, sizeof *rows);
    if (!rows) {
        fputs("out of memory\n", out);
        return;
    }
    size_t widths[C_COUNT];
    for (int c = 0; c < C_COUNT; c++)
        widths[c] = strlen(s_heads[c]);
    for (size_t i = 0; i < n; i++) {
        const json_t *k = json_array_get(keys, i);
        char(*cell)[128] = rows[i].cell;
        s_text(cell[C_KEY], sizeof cell[C_KEY], k, "id", "?",
               wide ? 0 : S_KEY_MAX);
        s_text(cell[C_HASH], sizeof cell[C_HASH], k, "hash", "-",
               wide ? 0 : 16);
        s_state(cell[C_STATE], sizeof cell[C_STATE], k);
        s_limit(cell[C_LIMIT], sizeof cell[C_LIMIT], k);
        snprintf(cell[C_REQS], sizeof cell[C_REQS], "%s",
                 cli_num(s_int(k, "requests")));
        snprintf(cell[C_TOKENS], sizeof cell[C_TOKENS], "%s",
                 cli_num(s_int(k, "tokens")));
        s_share(cell[C_SHARE], sizeof cell[C_SHARE],
                json_number_value(json_object_get(k, "share")));
        snprintf(cell[C_429], sizeof cell[C_429], "%s",
                 cli_num(s_int(k, "limited")));
        snprintf(cell[C_ERRORS], sizeof cell[C_ERRORS], "%s",
                 cli_num(s_int(k, "errors")));
        for (int c = 0; c < C_WORKERS; c++)
            if (s_cols(cell[c]) > widths[c])
                widths[c] = s_cols(cell[c]);
    }
    size_t start = 0;
    for (int c = 0; c < C_WORKERS; c++)
        start += widths[c] + S_GAP;
    size_t avail = w > start ? w - start : 0;
    for (size_t i = 0; i < n; i++)
        s_workers(rows[i].cell[C_WORKERS], sizeof rows[i].cell[C_WORKERS],
                  json_array_get(keys, i), avail);
    for (int c = 0; c < C_COUNT; c++) {
        s_pad(out, s_heads[c], c == C_WORKERS ? 0 : widths[c], s_right[c]);
        if (c < C_WORKERS)
            fprintf(out, "%*s", S_GAP, "");
    }
    fputc('\n', out);
    for (size_t i = 0; i < n; i++) {
        for (int c = 0; c < C_COUNT; c++) {
            s_pad(out, rows[i].cell[c], c == C_WORKERS ? 0 : widths[c],
                  s_right[c]);
            if (c < C_WORKERS)
                fprintf(out, "%*s", S_GAP, "");
        }
        fputc('\n', out);
    }
    bool conflicts = false;
    for (size_t i = 0; i < n; i++) {
        const json_t *k = json_array_get(keys, i);
        if (!json_is_string(json_object_get(k, "conflict")))
            continue;
        char text[1024], prefix[2 * 128 + 16];
        s_text(text, sizeof text, k, "conflict", "", 0);
        snprintf(prefix, sizeof prefix,
                 "conflict %s (%s):", rows[i].cell[C_KEY],
                 rows[i].cell[C_HASH]);
        if (!conflicts)
            fputc('\n', out);
        conflicts = true;
        s_wrap(out, prefix, text, w);
    }
    fputs("\nREQS, TOKENS, SHARE: the last window; 429s, ERRORS: since the "
          "broker\nstarted. LIMIT: the working limit per window.\n",
          out);
    free(rows);
}

void
keys_view_enabled(FILE *out, const json_t *body, const char *asked)
{
    char id[128], hash[32], was[32];
    s_text(id, sizeof id, body, "id", asked ? asked : "?", 0);
    s_text(hash, sizeof hash, body, "hash", "", 0);
    s_text(was, sizeof was, body, "was", "", 0);
    fputs(id, out);
    if (hash[0])
        fprintf(out, " (%s)", hash);
    fputs(" enabled", out);
    if (was[0])
        fprintf(out, " (was %s)", was);
    fputc('\n', out);
}
