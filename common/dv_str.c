/* dv_str - string views; see dv_str.h. */
#include "dv_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
dv_str_eq(dv_str_t v, const char *s)
{
    if (!v.ptr || !s)
        return !v.ptr && !s;
    size_t n = strlen(s);
    return n == v.len && memcmp(v.ptr, s, n) == 0;
}

char *
dv_str_dup(dv_str_t v)
{
    if (!v.ptr)
        return NULL;
    char *s = malloc((size_t)v.len + 1);
    if (!s)
        return NULL;
    memcpy(s, v.ptr, v.len);
    s[v.len] = '\0';
    return s;
}

char *
dv_str_copy(dv_str_t v, char *buf, size_t size)
{
    if (!buf || size == 0)
        return buf;
    size_t n = v.ptr ? v.len : 0;
    if (n > size - 1)
        n = size - 1;
    if (n)
        memcpy(buf, v.ptr, n);
    buf[n] = '\0';
    return buf;
}

/* Decodes one UTF-8 character at p (before end) into *cp. Returns its
 * length in bytes, or 0 if the bytes there are not valid UTF-8 (overlong,
 * surrogate, past U+10FFFF, cut short). */
static int
s_utf8_next(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
    unsigned c = *p;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : -1;
    if (n < 0 || c > 0xf4 || end - p <= n)
        return 0;
    uint32_t v = c & (0x3f >> n);
    for (int i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if ((n == 2 && v < 0x800) || (n == 3 && v < 0x10000) || v > 0x10ffff ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n + 1;
}

static bool
s_control(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f);
}

const char *
dv_name_check(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        uint32_t cp;
        int n = s_utf8_next(p, end, &cp);
        if (!n)
            return "is not valid UTF-8";
        if (s_control(cp))
            return "has a control character";
        p += n;
    }
    return NULL;
}

bool
dv_text_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        uint32_t cp;
        int n = s_utf8_next(p, end, &cp);
        if (!n || cp == 0)
            return false;
        p += n;
    }
    return true;
}

char *
dv_text_escape(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    /* At worst every byte becomes \xNN or \u00NN (6 bytes). */
    char *out = malloc(len * 6 + 1), *o = out;
    if (!out)
        return NULL;
    while (p < end) {
        uint32_t cp;
        int n = s_utf8_next(p, end, &cp);
        if (n && !s_control(cp)) {
            memcpy(o, p, (size_t)n);
            o += n;
            p += n;
            continue;
        }
        if (!n) { /* not UTF-8: the byte as it is, escaped */
            o += sprintf(o, "\\x%02x", *p++);
            continue;
        }
        const char *named = cp == '\n'   ? "\\n"
                            : cp == '\t' ? "\\t"
                            : cp == '\r' ? "\\r"
                                         : NULL;
        if (named)
            o += sprintf(o, "%s", named);
        else if (cp < 0x80)
            o += sprintf(o, "\\x%02x", (unsigned)cp);
        else
            o += sprintf(o, "\\u%04x", (unsigned)cp);
        p += n;
    }
    *o = '\0';
    return out;
}
