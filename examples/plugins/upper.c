/* upper - an example drover plugin handler: upper-cases payload["text"].
 *
 *   payload  {"text": "hello"}
 *   result   {"text": "HELLO", "bytes": 5}
 *   config   {"field": "text"}   (optional: which payload field to take)
 *
 * It reports progress as it goes, stops early when the worker says the
 * soft timeout has passed, and fails "invalid_input" (not retried) when
 * the payload has no such string field. ASCII letters are upper-cased;
 * everything else is kept as it is.
 *
 * It needs nothing but drover_handler.h, so it carries a small JSON
 * reader of its own (a real plugin would use a JSON library):
 *
 *   cc -shared -fPIC -O2 -I/usr/local/include -o upper.so upper.c
 *   drover worker --plugin upper=$PWD/upper.so
 *   drover submit --type upper --payload '{"text": "hello"}' --wait
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drover_handler.h"

/* Progress is reported once per this many bytes (and at the end). */
#define CHUNK 4096

typedef struct {
    char field[64]; /* the payload field to upper-case */
} upper_state;

/* ---- a small JSON reader ---------------------------------------------- */

static const char *
skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* Appends the UTF-8 form of code point c to out. */
static char *
put_utf8(char *out, unsigned long c)
{
    if (c < 0x80) {
        *out++ = (char)c;
    } else if (c < 0x800) {
        *out++ = (char)(0xc0 | (c >> 6));
        *out++ = (char)(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        *out++ = (char)(0xe0 | (c >> 12));
        *out++ = (char)(0x80 | ((c >> 6) & 0x3f));
        *out++ = (char)(0x80 | (c & 0x3f));
    } else {
        *out++ = (char)(0xf0 | (c >> 18));
        *out++ = (char)(0x80 | ((c >> 12) & 0x3f));
        *out++ = (char)(0x80 | ((c >> 6) & 0x3f));
        *out++ = (char)(0x80 | (c & 0x3f));
    }
    return out;
}

static int
hex4(const char *p, unsigned long *v)
{
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        *v = *v * 16 + (unsigned long)d;
    }
    return 0;
}

/* Reads the string at p (at its opening quote). If out is not NULL, the
 * decoded text goes there (it needs room for as many bytes as the JSON
 * text; the worker gives valid JSON, and decoding never grows a string)
 * and *len gets its length. Returns the position after the closing quote,
 * or NULL if malformed. */
static const char *
read_string(const char *p, char *out, size_t *len)
{
    char *o = out;
    if (*p++ != '"')
        return NULL;
    while (*p != '"') {
        if (!*p)
            return NULL;
        if (*p != '\\') {
            if (o)
                *o++ = *p;
            p++;
            continue;
        }
        p++;
        char c = *p++, e;
        unsigned long u, lo;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            e = c;
            break;
        case 'b':
            e = '\b';
            break;
        case 'f':
            e = '\f';
            break;
        case 'n':
            e = '\n';
            break;
        case 'r':
            e = '\r';
            break;
        case 't':
            e = '\t';
            break;
        case 'u':
            if (hex4(p, &u) != 0)
                return NULL;
            p += 4;
            /* A surrogate pair is two escapes for one code point. */
            if (u >= 0xd800 && u < 0xdc00 && p[0] == '\\' && p[1] == 'u' &&
                hex4(p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            if (o)
                o = put_utf8(o, u);
            continue;
        default:
            return NULL;
        }
        if (o)
            *o++ = e;
    }
    if (len)
        *len = (size_t)(o - out);
    return p + 1;
}

/* Skips any one value at p; returns the position after it, or NULL. */
static const char *
skip_value(const char *p, int depth)
{
    p = skip_ws(p);
    if (depth > 64)
        return NULL;
    if (*p == '"')
        return read_string(p, NULL, NULL);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                p = read_string(skip_ws(p), NULL, NULL);
                if (!p || *(p = skip_ws(p)) != ':')
                    return NULL;
                p++;
            }
            p = skip_value(p, depth + 1);
            if (!p)
                return NULL;
            p = skip_ws(p);
            if (*p == close)
                return p + 1;
            if (*p++ != ',')
                return NULL;
        }
    }
    /* A number, true, false or null. */
    const char *s = p;
    while (*p && strchr("+-.0123456789eEtruefalsn", *p))
        p++;
    return p > s ? p : NULL;
}

/* Finds member key of the object at json; returns its value (after
 * white space), or NULL if json is not an object or has no such key. */
static const char *
find_member(const char *json, const char *key)
{
    const char *p = skip_ws(json);
    if (*p++ != '{')
        return NULL;
    p = skip_ws(p);
    if (*p == '}')
        return NULL;
    size_t klen = strlen(key);
    char name[256];
    for (;;) {
        p = skip_ws(p);
        /* Member names longer than any key we look for are skipped. */
        const char *end = read_string(p, NULL, NULL);
        size_t n = 0;
        if (!end)
            return NULL;
        if ((size_t)(end - p) < sizeof name)
            read_string(p, name, &n);
        else
            n = (size_t)-1;
        p = skip_ws(end);
        if (*p++ != ':')
            return NULL;
        p = skip_ws(p);
        if (n == klen && memcmp(name, key, klen) == 0)
            return p;
        p = skip_value(p, 1);
        if (!p || *(p = skip_ws(p)) != ',')
            return NULL;
        p++;
    }
}

/* Writes s[0..n) as a JSON string (quotes included) at out; out needs
 * 6 * n + 3 bytes. Returns the end. */
static char *
write_string(char *out, const char *s, size_t n)
{
    *out++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char)c;
        } else if (c < 0x20) {
            out += sprintf(out, "\\u%04x", c);
        } else {
            *out++ = (char)c;
        }
    }
    *out++ = '"';
    return out;
}

/* ---- the handler --------------------------------------------------------- */

static int
upper_init(const char *config_json, void **state)
{
    upper_state *st = calloc(1, sizeof *st);
    if (!st)
        return 1;
    strcpy(st->field, "text");
    const char *v = find_member(config_json, "field");
    if (v) {
        size_t n = 0;
        const char *end = read_string(v, NULL, NULL);
        if (!end || (size_t)(end - v) >= sizeof st->field) {
            fprintf(stderr, "upper: config.field must be a short string\n");
            free(st);
            return 2;
        }
        read_string(v, st->field, &n);
        st->field[n] = '\0';
    }
    *state = st;
    return 0;
}

static int
upper_run(void *state, const drover_job_info *job, drover_handler_io *io)
{
    const upper_state *st = state;
    const char *v = find_member(job->payload, st->field);
    char msg[128];
    if (!v || *v != '"') {
        snprintf(msg, sizeof msg, "payload must be {\"%s\": \"...\"}",
                 st->field);
        io->fail(io, "invalid_input", msg, 0, 0);
        return DROVER_HANDLER_FAILED;
    }
    /* Decoding never makes a string longer than its JSON text. */
    char *text = malloc(job->payload_len + 1);
    size_t n = 0;
    if (!text) {
        io->fail(io, "resource_exhausted", "out of memory", 1, 0);
        return DROVER_HANDLER_FAILED;
    }
    if (!read_string(v, text, &n)) {
        free(text);
        io->fail(io, "invalid_input", "payload is not valid JSON", 0, 0);
        return DROVER_HANDLER_FAILED;
    }
    int64_t steps = n ? (int64_t)((n + CHUNK - 1) / CHUNK) : 1;
    size_t i = 0;
    for (int64_t step = 1;; step++) {
        if (io->should_stop(io)) {
            /* Out of time: ask for another attempt rather than hand back
             * half the text. */
            free(text);
            io->fail(io, "timeout", "stopped at the soft timeout", 1, 0);
            return DROVER_HANDLER_RETRY;
        }
        size_t end = i + CHUNK < n ? i + CHUNK : n;
        for (; i < end; i++)
            if (text[i] >= 'a' && text[i] <= 'z')
                text[i] = (char)(text[i] - 'a' + 'A');
        snprintf(msg, sizeof msg, "%zu of %zu bytes", i, n);
        io->progress(io, step, steps, msg);
        if (i >= n)
            break;
    }
    char *out = malloc(6 * n + 64);
    if (!out) {
        free(text);
        io->fail(io, "resource_exhausted", "out of memory", 1, 0);
        return DROVER_HANDLER_FAILED;
    }
    char *o = out;
    *o++ = '{';
    o = write_string(o, st->field, strlen(st->field));
    *o++ = ':';
    o = write_string(o, text, n);
    sprintf(o, ",\"bytes\":%zu}", n);
    int rc = io->set_result_json(io, out);
    free(out);
    free(text);
    if (rc != 0) {
        io->fail(io, "handler",
                 "result is larger than 1 MiB or not valid UTF-8", 0, 0);
        return DROVER_HANDLER_FAILED;
    }
    return DROVER_HANDLER_OK;
}

static void
upper_cleanup(void *state)
{
    free(state);
}

static const drover_handler_v1 upper_handler = {
    .abi_version = DROVER_HANDLER_ABI,
    .name = "upper",
    .init = upper_init,
    .run = upper_run,
    .cleanup = upper_cleanup,
};

DROVER_HANDLER_EXPORT const drover_handler_v1 *
drover_handler_entry(void)
{
    return &upper_handler;
}
