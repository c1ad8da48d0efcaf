#include "dv_log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

dv_level_t dv_log_threshold = DV_INFO;
static char s_component[32] = "drover";
static int s_text;

static const char *s_level_names[] = { "debug", "info", "warn", "error",
                                       "off" };

void
dv_log_init(const char *component, dv_level_t threshold, int text)
{
    if (component)
        snprintf(s_component, sizeof s_component, "%s", component);
    dv_log_threshold = threshold;
    s_text = text;
}

int
dv_log_level_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i <= DV_OFF; i++)
        if (strcmp(name, s_level_names[i]) == 0)
            return i;
    return -1;
}

typedef struct {
    char buf[4096];
    size_t len;
} s_line_t;

static void
s_put(s_line_t *l, const char *s, size_t n)
{
    if (l->len + n >= sizeof l->buf - 2)
        n = sizeof l->buf - 2 - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void
s_puts(s_line_t *l, const char *s)
{
    s_put(l, s, strlen(s));
}

/* JSON string escaping; control characters become \u00XX. */
static void
s_put_json_str(s_line_t *l, const char *s)
{
    s_put(l, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            s_put(l, esc, 2);
        } else if (c == '\n') {
            s_put(l, "\\n", 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            s_put(l, esc, 6);
        } else {
            s_put(l, (const char *)&c, 1);
        }
    }
    s_put(l, "\"", 1);
}

void
dv_log_emit(dv_level_t lvl, const char *event, const char *file, int line,
            const dv_field_t *fields, unsigned nfields)
{
    int saved_errno = errno;
    s_line_t l;
    l.len = 0;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    char num[64];

    if (s_text) {
        s_puts(&l, ts);
        s_puts(&l, " ");
        s_puts(&l, s_level_names[lvl]);
        s_puts(&l, " ");
        s_puts(&l, s_component);
        s_puts(&l, " ");
        s_puts(&l, event);
        for (unsigned i = 0; i < nfields; i++) {
            const dv_field_t *f = &fields[i];
            s_puts(&l, " ");
            s_puts(&l, f->key);
            s_puts(&l, "=");
            switch (f->type) {
            case DV_F_STR:
                s_puts(&l, f->s ? f->s : "-");
                break;
            case DV_F_INT:
                snprintf(num, sizeof num, "%lld", f->i);
                s_puts(&l, num);
                break;
            case DV_F_DBL:
                snprintf(num, sizeof num, "%g", f->d);
                s_puts(&l, num);
                break;
            case DV_F_BOOL:
                s_puts(&l, f->i ? "true" : "false");
                break;
            default:
                break;
            }
        }
    } else {
        s_puts(&l, "{\"ts\":\"");
        s_puts(&l, ts);
        s_puts(&l, "\",\"level\":\"");
        s_puts(&l, s_level_names[lvl]);
        s_puts(&l, "\",\"component\":");
        s_put_json_str(&l, s_component);
        s_puts(&l, ",\"msg\":");
        s_put_json_str(&l, event);
        snprintf(num, sizeof num, ",\"pid\":%d,\"src\":\"", (int)getpid());
        s_puts(&l, num);
        s_puts(&l, base);
        snprintf(num, sizeof num, ":%d\"", line);
        s_puts(&l, num);
        for (unsigned i = 0; i < nfields; i++) {
            const dv_field_t *f = &fields[i];
            s_puts(&l, ",");
            s_put_json_str(&l, f->key);
            s_puts(&l, ":");
            switch (f->type) {
            case DV_F_STR:
                if (f->s)
                    s_put_json_str(&l, f->s);
                else
                    s_puts(&l, "null");
                break;
            case DV_F_INT:
                snprintf(num, sizeof num, "%lld", f->i);
                s_puts(&l, num);
                break;
            case DV_F_DBL:
                /* JSON has no NaN or infinity. */
                if (isfinite(f->d))
                    snprintf(num, sizeof num, "%.6g", f->d);
                else
                    snprintf(num, sizeof num, "null");
                s_puts(&l, num);
                break;
            case DV_F_BOOL:
                s_puts(&l, f->i ? "true" : "false");
                break;
            default:
                s_puts(&l, "null");
                break;
            }
        }
        s_puts(&l, "}");
    }
    l.buf[l.len++] = '\n';
    ssize_t rc = write(STDERR_FILENO, l.buf, l.len);
    (void)rc;
    errno = saved_errno;
}
