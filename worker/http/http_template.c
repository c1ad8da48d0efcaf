#include "http_template.h"
#include "dv_err.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    S_LIT,     /* literal text */
    S_PAYLOAD, /* {{payload}} */
    S_FIELD,   /* {{payload.FIELD}}: p/n hold FIELD */
    S_JOB_ID,  /* {{job.id}} */
    S_ATTEMPT, /* {{job.attempt}} */
    S_KEY,     /* {{key.NAME}}: p/n hold NAME */
} s_kind_t;

typedef struct {
    s_kind_t kind;
    const char *p; /* literal text, or the field name */
    size_t n;
} s_seg_t;

struct http_template_t {
    json_t *json; /* JSON template, or NULL */
    char *text;   /* text template, or NULL */
    http_text_mode_t mode;
    bool constant; /* no placeholder anywhere */
};

/* ---- placeholders ---------------------------------------------------- */

/* Reads the segment of s (len bytes) at *pos. Returns 1 with *seg and
 * *pos advanced, 0 at the end, -1 with a reason in why. */
static int
s_next(const char *s, size_t len, size_t *pos, s_seg_t *seg, char *why,
       size_t ws)
{
    size_t i = *pos;
    if (i >= len)
        return 0;
    const char *open = memmem(s + i, len - i, "{{", 2);
    if (open != s + i) {
        seg->kind = S_LIT;
        seg->p = s + i;
        seg->n = open ? (size_t)(open - (s + i)) : len - i;
        *pos = i + seg->n;
        return 1;
    }
    const char *close = memmem(s + i + 2, len - i - 2, "}}", 2);
    /* The error paths return -1 themselves rather than dv_err_set's
     * result, so the compiler sees that 1 always comes with *seg set. */
    if (!close) {
        dv_err_set(why, ws, "'{{' without '}}' in \"%.60s\"", s);
        return -1;
    }
    const char *a = s + i + 2, *b = close;
    while (a < b && *a == ' ')
        a++;
    while (b > a && b[-1] == ' ')
        b--;
    size_t n = (size_t)(b - a);
    *pos = (size_t)(close + 2 - s);
    if (n == 7 && memcmp(a, "payload", 7) == 0) {
        seg->kind = S_PAYLOAD;
    } else if (n > 8 && memcmp(a, "payload.", 8) == 0) {
        seg->kind = S_FIELD;
        seg->p = a + 8;
        seg->n = n - 8;
    } else if (n > 4 && memcmp(a, "key.", 4) == 0) {
        seg->kind = S_KEY;
        seg->p = a + 4;
        seg->n = n - 4;
    } else if (n == 6 && memcmp(a, "job.id", 6) == 0) {
        seg->kind = S_JOB_ID;
    } else if (n == 11 && memcmp(a, "job.attempt", 11) == 0) {
        seg->kind = S_ATTEMPT;
    } else {
        dv_err_set(why, ws,
                   "unknown placeholder {{%.*s}} (known: payload, "
                   "payload.FIELD, job.id, job.attempt, key.NAME)",
                   (int)(n > 60 ? 60 : n), a);
        return -1;
    }
    return 1;
}

/* Checks every placeholder in s; sets *constant false if there is one. */
static int
s_check_text(const char *s, size_t len, bool *constant, char *err, size_t es)
{
    size_t pos = 0;
    s_seg_t seg;
    int rc;
    while ((rc = s_next(s, len, &pos, &seg, err, es)) == 1)
        if (seg.kind != S_LIT)
            *constant = false;
    return rc;
}

static int
s_check_json(const json_t *j, bool *constant, char *err, size_t es)
{
    size_t i;
    const char *k;
    json_t *v;
    switch (json_typeof(j)) {
    case JSON_STRING:
        return s_check_text(json_string_value(j), json_string_length(j),
                            constant, err, es);
    case JSON_OBJECT:
        json_object_foreach((json_t *)j, k,
                            v) if (s_check_json(v, constant, err, es) !=
                                   0) return -1;
        return 0;
    case JSON_ARRAY:
        json_array_foreach(j, i, v) if (s_check_json(v, constant, err, es) !=
                                        0) return -1;
        return 0;
    default:
        return 0;
    }
}

/* A render step found no memory: says so in why and in ctx->oom. */
static void
s_oom(const http_template_ctx_t *ctx, char *why, size_t ws)
{
    dv_err_set(why, ws, "out of memory");
    if (ctx->oom)
        *ctx->oom = true;
}

/* v, or NULL after s_oom() if v is NULL (a failed allocation). */
static json_t *
s_mem(const http_template_ctx_t *ctx, json_t *v, char *why, size_t ws)
{
    if (!v)
        s_oom(ctx, why, ws);
    return v;
}

/* The value a placeholder stands for: a new reference, or NULL with why. */
static json_t *
s_value(const s_seg_t *seg, const http_template_ctx_t *ctx, char *why,
        size_t ws)
{
    switch (seg->kind) {
    case S_PAYLOAD:
        return ctx->payload ? json_incref((json_t *)ctx->payload) : json_null();
    case S_FIELD: {
        if (!json_is_object(ctx->payload)) {
            dv_err_set(why, ws,
                       "the payload is not a JSON object, but the request "
                       "template uses {{payload.%.*s}}",
                       (int)(seg->n > 60 ? 60 : seg->n), seg->p);
            return NULL;
        }
        json_t *v = json_object_getn(ctx->payload, seg->p, seg->n);
        if (!v) {
            dv_err_set(why, ws,
                       "the payload has no field \"%.*s\", which the request "
                       "template uses",
                       (int)(seg->n > 60 ? 60 : seg->n), seg->p);
            return NULL;
        }
        return json_incref(v);
    }
    case S_KEY: {
        json_t *v = ctx->key_vars
                        ? json_object_getn(ctx->key_vars, seg->p, seg->n)
                        : NULL;
        int n = (int)(seg->n > 60 ? 60 : seg->n);
        if (!v && ctx->key_id) {
            dv_err_set(why, ws,
                       "the API key %s has no value \"%.*s\", which the "
                       "request template uses as {{key.%.*s}}",
                       ctx->key_id, n, seg->p, n, seg->p);
            return NULL;
        }
        if (!v) {
            dv_err_set(why, ws,
                       "the request template uses {{key.%.*s}}, but the "
                       "handler's API keys carry no values (a JSON Lines key "
                       "file gives them)",
                       n, seg->p);
            return NULL;
        }
        return json_incref(v);
    }
    case S_JOB_ID:
        return s_mem(ctx, json_string(ctx->job_id ? ctx->job_id : ""), why, ws);
    case S_ATTEMPT:
        return s_mem(ctx, json_integer(ctx->attempt), why, ws);
    default:
        return NULL;
    }
}

/* Growable output text. */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} s_buf_t;

static void
s_put(s_buf_t *b, const char *p, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static bool
s_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

/* Adds the text form of v to b, as mode says. Returns 0 or -1 (why). */
static int
s_put_value(s_buf_t *b, const json_t *v, http_text_mode_t mode,
            const s_seg_t *seg, char *why, size_t ws)
{
    char *dumped = NULL;
    const char *p;
    size_t n;
    if (json_is_string(v)) {
        p = json_string_value(v);
        n = json_string_length(v);
    } else {
        dumped = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!dumped) {
            b->oom = true;
            return -1;
        }
        p = dumped;
        n = strlen(dumped);
    }
    int rc = 0;
    if (mode == HTTP_TEXT_URL) {
        static const char hex[] = "0123456789ABCDEF";
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[i];
            if (s_unreserved(c)) {
                s_put(b, (const char *)&c, 1);
            } else {
                char e[3] = { '%', hex[c >> 4], hex[c & 15] };
                s_put(b, e, 3);
            }
        }
    } else if (mode == HTTP_TEXT_HEADER &&
               (memchr(p, '\r', n) || memchr(p, '\n', n) ||
                memchr(p, '\0', n))) {
        rc = dv_err_set(why, ws,
                        "a header value from the payload%s%.*s holds a line "
                        "break",
                        seg->kind == S_FIELD ? " field " : "",
                        seg->kind == S_FIELD ? (int)(seg->n > 60 ? 60 : seg->n)
                                             : 0,
                        seg->kind == S_FIELD ? seg->p : "");
    } else {
        s_put(b, p, n);
    }
    free(dumped);
    return rc;
}

/* Renders the text s (len bytes) into b. */
static int
s_render_text(s_buf_t *b, const char *s, size_t len, http_text_mode_t mode,
              const http_template_ctx_t *ctx, char *why, size_t ws)
{
    size_t pos = 0;
    s_seg_t seg;
    int rc;
    while ((rc = s_next(s, len, &pos, &seg, why, ws)) == 1) {
        if (seg.kind == S_LIT) {
            s_put(b, seg.p, seg.n);
            continue;
        }
        json_t *v = s_value(&seg, ctx, why, ws);
        if (!v)
            return -1;
        rc = s_put_value(b, v, mode, &seg, why, ws);
        json_decref(v);
        if (rc != 0)
            return -1;
    }
    return rc;
}

/* Renders a JSON template node: a new reference, or NULL (why). */
static json_t *
s_render_json(const json_t *t, const http_template_ctx_t *ctx, char *why,
              size_t ws)
{
    size_t i;
    const char *k;
    json_t *v, *out;
    switch (json_typeof(t)) {
    case JSON_STRING: {
        const char *s = json_string_value(t);
        size_t len = json_string_length(t), pos = 0;
        s_seg_t seg;
        int rc = s_next(s, len, &pos, &seg, why, ws);
        if (rc == 1 && seg.kind != S_LIT && pos == len)
            return s_value(&seg, ctx, why, ws); /* the whole string */
        if (rc == 1 && seg.kind == S_LIT && pos == len)
            return json_incref((json_t *)t);
        s_buf_t b = { 0 };
        if (s_render_text(&b, s, len, HTTP_TEXT_PLAIN, ctx, why, ws) != 0 ||
            b.oom) {
            if (b.oom)
                s_oom(ctx, why, ws);
            free(b.p);
            return NULL;
        }
        out = json_stringn_nocheck(b.p ? b.p : "", b.n);
        free(b.p);
        return s_mem(ctx, out, why, ws);
    }
    case JSON_OBJECT:
        if (!(out = s_mem(ctx, json_object(), why, ws)))
            return NULL;
        json_object_foreach((json_t *)t, k, v)
        {
            json_t *r = s_render_json(v, ctx, why, ws);
            if (r && json_object_set_new(out, k, r) != 0)
                r = s_mem(ctx, NULL, why, ws);
            if (!r) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    case JSON_ARRAY:
        if (!(out = s_mem(ctx, json_array(), why, ws)))
            return NULL;
        json_array_foreach(t, i, v)
        {
            json_t *r = s_render_json(v, ctx, why, ws);
            if (r && json_array_append_new(out, r) != 0)
                r = s_mem(ctx, NULL, why, ws);
            if (!r) {
                json_decref(out);
                return NULL;
            }
        }
        return out;
    default:
        return json_incref((json_t *)t);
    }
}

/* ---- public ---------------------------------------------------------- */

http_template_t *
http_template_new_json(const json_t *tmpl, char *err, size_t es)
{
    bool constant = true;
    if (s_check_json(tmpl, &constant, err, es) != 0)
        return NULL;
    http_template_t *self = calloc(1, sizeof *self);
    if (!self || !(self->json = json_deep_copy(tmpl))) {
        free(self);
        dv_err_set(err, es, "out of memory");
        return NULL;
    }
    self->constant = constant;
    return self;
}

http_template_t *
http_template_new_text(const char *text, http_text_mode_t mode, char *err,
                       size_t es)
{
    bool constant = true;
    if (s_check_text(text, strlen(text), &constant, err, es) != 0)
        return NULL;
    http_template_t *self = calloc(1, sizeof *self);
    if (!self || !(self->text = strdup(text))) {
        free(self);
        dv_err_set(err, es, "out of memory");
        return NULL;
    }
    self->mode = mode;
    self->constant = constant;
    return self;
}

void
http_template_destroy(http_template_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    http_template_t *self = *self_p;
    json_decref(self->json);
    free(self->text);
    free(self);
    *self_p = NULL;
}

char *
http_template_render(const http_template_t *self,
                     const http_template_ctx_t *ctx, size_t *len, char *why,
                     size_t ws)
{
    if (self->text) {
        s_buf_t b = { 0 };
        int rc = s_render_text(&b, self->text, strlen(self->text), self->mode,
                               ctx, why, ws);
        if (rc == 0 && !b.oom && !b.p)
            s_put(&b, "", 0);
        if (rc != 0 || b.oom) {
            if (b.oom)
                s_oom(ctx, why, ws);
            free(b.p);
            return NULL;
        }
        *len = b.n;
        return b.p;
    }
    json_t *out = s_render_json(self->json, ctx, why, ws);
    if (!out)
        return NULL;
    char *s = json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(out);
    if (!s) {
        s_oom(ctx, why, ws);
        return NULL;
    }
    *len = strlen(s);
    return s;
}

int
http_template_is_constant(const http_template_t *self)
{
    return self->constant;
}

int
http_template_check_pointer(const char *ptr)
{
    if (!ptr)
        return -1;
    if (*ptr == '\0')
        return 0;
    if (*ptr != '/')
        return -1;
    for (const char *p = ptr; *p; p++)
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return -1;
    return 0;
}

json_t *
http_template_pointer(json_t *doc, const char *ptr)
{
    if (!doc || http_template_check_pointer(ptr) != 0)
        return NULL;
    const char *p = ptr;
    json_t *cur = doc;
    char tok[256];
    while (*p == '/') {
        p++;
        size_t n = 0;
        while (*p && *p != '/') {
            char c = *p++;
            if (c == '~')
                c = *p++ == '0' ? '~' : '/';
            if (n + 1 >= sizeof tok)
                return NULL;
            tok[n++] = c;
        }
        tok[n] = '\0';
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, tok, n);
        } else if (json_is_array(cur)) {
            if (n == 0 || (n > 1 && tok[0] == '0') || n > 18)
                return NULL;
            size_t idx = 0;
            for (size_t i = 0; i < n; i++) {
                if (tok[i] < '0' || tok[i] > '9')
                    return NULL;
                idx = idx * 10 + (size_t)(tok[i] - '0');
            }
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
        if (!cur)
            return NULL;
    }
    return cur;
}
