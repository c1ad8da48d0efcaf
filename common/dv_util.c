#include "dv_util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
dv_strv_split(const char *s, char ***out)
{
    int n = 0, cap = 4;
    char **v = calloc((size_t)cap + 1, sizeof *v);
    if (!v) {
        *out = NULL;
        return 0;
    }
    while (s && *s) {
        const char *comma = strchr(s, ',');
        const char *end = comma ? comma : s + strlen(s);
        const char *b = s;
        while (b < end && isspace((unsigned char)*b))
            b++;
        const char *e = end;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e > b) {
            if (n == cap) {
                cap *= 2;
                char **nv = realloc(v, ((size_t)cap + 1) * sizeof *v);
                if (!nv)
                    break;
                v = nv;
            }
            char *item = strndup(b, (size_t)(e - b));
            if (!item)
                break;
            v[n++] = item;
        }
        s = comma ? comma + 1 : end;
    }
    v[n] = NULL;
    *out = v;
    return n;
}

void
dv_strv_free(char ***v)
{
    if (!v || !*v)
        return;
    for (char **p = *v; *p; p++)
        free(*p);
    free(*v);
    *v = NULL;
}

const char *
dv_env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

char *
dv_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = n;
    }
    return buf;
}

/* Returns what follows prefix in s (schemes are case-insensitive), or NULL. */
static const char *
s_after(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncasecmp(s, prefix, n) == 0 ? s + n : NULL;
}

dv_store_kind_t
dv_store_url(const char *url, const char **arg, size_t *scheme_len)
{
    *scheme_len = 0;
    if ((*arg = s_after(url, "sqlite://")) || (*arg = s_after(url, "sqlite:")))
        return DV_STORE_SQLITE;
    *arg = url;
    if (s_after(url, "postgres://") || s_after(url, "postgresql://"))
        return DV_STORE_PG;
    /* A bare path never looks like "scheme://", so anything that does is
     * a URL we do not know and must not be created as a file by that
     * name. */
    size_t n = 0;
    while (isalnum((unsigned char)url[n]) || url[n] == '+' || url[n] == '-' ||
           url[n] == '.')
        n++;
    if (n > 0 && strncmp(url + n, "://", 3) == 0) {
        *scheme_len = n;
        return DV_STORE_UNKNOWN;
    }
    return DV_STORE_SQLITE;
}
