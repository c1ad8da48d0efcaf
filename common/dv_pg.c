/* dv_pg - text, URLs and messages for the PostgreSQL stores; see dv_pg.h. */
#include "dv_pg.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Length of the well-formed UTF-8 sequence at s (n > 0 bytes left), or 0:
 * no NUL, no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t
s_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c >= 0x01 && c < 0x80)
        return 1;
    size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                 : c >= 0xe0 && c <= 0xef ? 3
                 : c >= 0xf0 && c <= 0xf4 ? 4
                                          : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
        (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return len;
}

const char *
dv_pg_text(const char *s, size_t n, char **copy)
{
    *copy = NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, len;
    while (i < n && (len = s_utf8_seq(u + i, n - i)) > 0)
        i += len;
    if (i == n)
        return s;
    char *out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (i = 0; i < n;) {
        len = s_utf8_seq(u + i, n - i);
        if (len > 0) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    *copy = out;
    return out;
}

char *
dv_pg_password(const char *url)
{
    char *perr = NULL, *pw = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &perr);
    PQfreemem(perr);
    if (!opts)
        return NULL;
    for (PQconninfoOption *o = opts; o->keyword && !pw; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
            pw = strdup(o->val);
    PQconninfoFree(opts);
    return pw;
}

/* Appends n bytes of s to out (size bytes) at *o, as far as they fit. */
static void
s_put(char *out, size_t size, size_t *o, const char *s, size_t n)
{
    if (*o + 1 >= size)
        return;
    if (n > size - 1 - *o)
        n = size - 1 - *o;
    memcpy(out + *o, s, n);
    *o += n;
}

char *
dv_pg_redact_url(const char *url, char *out, size_t size)
{
    if (!out || size == 0)
        return out;
    size_t o = 0;
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    s_put(out, size, &o, url, (size_t)(p - url));
    /* The authority ends at the path, the query or the fragment; the user
     * info is up to its last '@', the password after the first ':'. */
    size_t alen = strcspn(p, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (p[i] == '@')
            at = p + i;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            s_put(out, size, &o, p, (size_t)(colon - p) + 1);
            s_put(out, size, &o, "***", 3);
            p = at;
        }
    }
    /* Then parameter by parameter after the '?'. */
    const char *q = strchr(p, '?');
    if (!q) {
        s_put(out, size, &o, p, strlen(p));
        out[o] = '\0';
        return out;
    }
    s_put(out, size, &o, p, (size_t)(q - p) + 1);
    p = q + 1;
    while (*p) {
        size_t plen = strcspn(p, "&#");
        if (plen >= 9 && strncasecmp(p, "password=", 9) == 0)
            s_put(out, size, &o, "password=***", 12);
        else
            s_put(out, size, &o, p, plen);
        p += plen;
        if (*p == '#') {
            s_put(out, size, &o, p, strlen(p));
            break;
        }
        if (*p == '&')
            s_put(out, size, &o, p++, 1);
    }
    out[o] = '\0';
    return out;
}

void
dv_pg_scrub(const char *password, const char *s, char *out, size_t size)
{
    size_t o = 0;
    size_t pwlen = password ? strlen(password) : 0;
    if (!size)
        return;
    while (s && *s && o + 1 < size) {
        if (pwlen && strncmp(s, password, pwlen) == 0) {
            for (const char *m = "***"; *m && o + 1 < size; m++)
                out[o++] = *m;
            s += pwlen;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = '\0';
    while (o > 0 && (out[o - 1] == '\n' || out[o - 1] == ' '))
        out[--o] = '\0';
}

/* ---- statement parameters ------------------------------------------------ */

/* Room for one more parameter; sets oom when there is none. */
static bool
s_room(dv_pg_params_t *p)
{
    if (p->n < DV_PG_MAX_PARAMS)
        return true;
    p->oom = true;
    return false;
}

static void
s_param(dv_pg_params_t *p, const char *v, int len, int format)
{
    p->values[p->n] = v;
    p->lengths[p->n] = len;
    p->formats[p->n] = format;
    p->n++;
}

void
dv_pg_params_free(dv_pg_params_t *p)
{
    for (int i = 0; i < DV_PG_MAX_PARAMS; i++) {
        free(p->owned[i]);
        p->owned[i] = NULL;
    }
}

void
dv_pg_p_null(dv_pg_params_t *p)
{
    if (s_room(p))
        s_param(p, NULL, 0, 0);
}

/* s's n bytes as PostgreSQL takes them: s itself, or a repaired copy kept
 * in p; NULL when out of memory. */
static const char *
s_fixed(dv_pg_params_t *p, const char *s, size_t n)
{
    char *copy;
    const char *ok = dv_pg_text(s, n, &copy);
    if (!ok)
        p->oom = true;
    p->owned[p->n] = copy;
    return ok;
}

void
dv_pg_p_text(dv_pg_params_t *p, const char *s)
{
    if (s_room(p))
        s_param(p, s ? s_fixed(p, s, strlen(s)) : NULL, 0, 0);
}

void
dv_pg_p_str(dv_pg_params_t *p, dv_str_t v)
{
    if (!v.ptr) {
        dv_pg_p_null(p);
        return;
    }
    if (!s_room(p))
        return;
    const char *ok = s_fixed(p, v.ptr, v.len);
    s_param(p, ok, ok == v.ptr ? (int)v.len : ok ? (int)strlen(ok) : 0, 1);
}

void
dv_pg_p_int(dv_pg_params_t *p, int64_t v)
{
    if (!s_room(p))
        return;
    snprintf(p->num[p->n], sizeof p->num[p->n], "%" PRId64, v);
    s_param(p, p->num[p->n], 0, 0);
}

void
dv_pg_p_double(dv_pg_params_t *p, double v)
{
    if (!s_room(p))
        return;
    snprintf(p->num[p->n], sizeof p->num[p->n], "%.17g", v);
    s_param(p, p->num[p->n], 0, 0);
}

void
dv_pg_p_bytes(dv_pg_params_t *p, const void *ptr, size_t len)
{
    if (!ptr || !len) {
        dv_pg_p_null(p);
        return;
    }
    if (s_room(p))
        s_param(p, ptr, (int)len, 1);
}
