/* dv_str - string views; see dv_str.h. */
#include "dv_str.h"

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

const char *
dv_name_check(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return "has a control character";
            p++;
            continue;
        }
        int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : -1;
        if (n < 0 || c > 0xf4 || end - p <= n)
            return "is not valid UTF-8";
        uint32_t cp = c & (0x3f >> n);
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return "is not valid UTF-8";
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return "is not valid UTF-8";
        if (cp >= 0x80 && cp <= 0x9f)
            return "has a control character";
        p += n + 1;
    }
    return NULL;
}
