#include "dv_util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
