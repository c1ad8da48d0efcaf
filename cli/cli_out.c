/* cli_out - how drover's commands print for people; see cli_out.h. */
#include "cli_out.h"

#include <inttypes.h>
#include <string.h>

#define S_BUFS 16
#define S_BUF  512

static char *
s_buf(void)
{
    static char bufs[S_BUFS][S_BUF];
    static unsigned next;
    return bufs[next++ % S_BUFS];
}

const char *
cli_num(int64_t v)
{
    char *b = s_buf();
    char digits[32];
    snprintf(digits, sizeof digits, "%" PRIu64,
             v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
    size_t n = strlen(digits), o = 0;
    if (v < 0)
        b[o++] = '-';
    for (size_t i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0)
            b[o++] = ',';
        b[o++] = digits[i];
    }
    b[o] = '\0';
    return b;
}

const char *
cli_dur(int64_t ms)
{
    char *b = s_buf();
    if (ms < 0)
        snprintf(b, S_BUF, "-");
    else if (ms < 1000)
        snprintf(b, S_BUF, "%" PRId64 "ms", ms);
    else if (ms < 60000)
        snprintf(b, S_BUF, "%.1fs", ms / 1000.0);
    else if (ms < 3600000)
        snprintf(b, S_BUF, "%" PRId64 "m%02" PRId64 "s", ms / 60000,
                 ms / 1000 % 60);
    else if (ms < 86400000)
        snprintf(b, S_BUF, "%" PRId64 "h%02" PRId64 "m", ms / 3600000,
                 ms / 60000 % 60);
    else
        snprintf(b, S_BUF, "%" PRId64 "d%02" PRId64 "h", ms / 86400000,
                 ms / 3600000 % 24);
    return b;
}

const char *
cli_rate(double r)
{
    if (!(r > 0))
        return "0";
    if (r >= 1000)
        return cli_num((int64_t)(r + 0.5));
    char *b = s_buf();
    snprintf(b, S_BUF, r < 10 ? "%.2g" : r < 100 ? "%.3g" : "%.0f", r);
    return b;
}

/* Bytes of the UTF-8 sequence starting with c (1 for a stray byte). */
static size_t
s_seq(unsigned char c)
{
    return c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* Columns in s (one per character) and, in *cut, the bytes of its first
 * keep characters. */
static int
s_cols(const char *s, int keep, size_t *cut)
{
    int cols = 0;
    size_t i = 0, n = strlen(s);
    *cut = n;
    while (i < n) {
        if (cols == keep)
            *cut = i;
        size_t k = s_seq((unsigned char)s[i]);
        i += i + k <= n ? k : n - i;
        cols++;
    }
    return cols;
}

const char *
cli_cell(const char *s, int width, bool wide)
{
    if (!s)
        return "-";
    size_t cut;
    int cols = s_cols(s, width > 1 ? width - 1 : 0, &cut);
    if (wide || cols <= width || width < 1)
        return s;
    char *b = s_buf();
    if (cut > S_BUF - 4)
        cut = S_BUF - 4;
    memcpy(b, s, cut);
    memcpy(b + cut, "\xe2\x80\xa6", 4); /* "…" and the NUL */
    return b;
}

void
cli_col(FILE *out, const char *s, int width, bool wide, const char *sep)
{
    const char *c = cli_cell(s, width, wide);
    size_t cut;
    int cols = s_cols(c, 0, &cut);
    fputs(c, out);
    for (int i = cols; i < width; i++)
        fputc(' ', out);
    fputs(sep, out);
}

static void
s_counts(char *b, size_t size, const cli_progress_t *p, const char *sep)
{
    size_t n = 0;
    int k = snprintf(b, size, "ok %s", cli_num(p->succeeded));
    n = k > 0 ? (size_t)k : 0;
    if (p->dead && n < size)
        n += (size_t)snprintf(b + n, size - n, "%sdead %s", sep,
                              cli_num(p->dead));
    if (p->cancelled && n < size)
        n += (size_t)snprintf(b + n, size - n, "%scancelled %s", sep,
                              cli_num(p->cancelled));
    if (p->running >= 0 && n < size)
        snprintf(b + n, size - n, "%srunning %s", sep, cli_num(p->running));
}

static int
s_pct(const cli_progress_t *p)
{
    return p->total > 0 ? (int)(100.0 * (double)p->done / (double)p->total)
                        : 100;
}

void
cli_bar(FILE *out, const cli_progress_t *p, bool final)
{
    enum { W = 24 };
    char bar[W + 1];
    double frac = p->total > 0 ? (double)p->done / (double)p->total : 1;
    for (int i = 0; i < W; i++)
        bar[i] = i < (int)(frac * W) ? '#' : '-';
    bar[W] = '\0';
    char counts[256];
    s_counts(counts, sizeof counts, p, "  ");
    fprintf(out, "\r[%s] %s/%s %3d%%  %s  %s/s  ETA %s\033[K", bar,
            cli_num(p->done), cli_num(p->total), s_pct(p), counts,
            cli_rate(p->rate),
            final           ? "-"
            : p->eta_s >= 0 ? cli_dur((int64_t)(p->eta_s * 1000))
                            : "?");
    if (final)
        fputc('\n', out);
    fflush(out);
}

void
cli_progress_line(FILE *out, const char *label, const cli_progress_t *p)
{
    char counts[256];
    s_counts(counts, sizeof counts, p, ", ");
    fprintf(out, "%s: %s/%s done (%d%%), %s, %s jobs/s, ETA %s\n", label,
            cli_num(p->done), cli_num(p->total), s_pct(p), counts,
            cli_rate(p->rate),
            p->eta_s >= 0 ? cli_dur((int64_t)(p->eta_s * 1000)) : "?");
    fflush(out);
}
