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
