#include "http_config.h"
#include "dv_err.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_clock.h"
#include "dv_proto.h"
#include "dv_util.h"
#include "http_template.h"
#include "keypool.h"

#define S_CONNECT_TIMEOUT_MS  10000
#define S_MAX_WAIT_MS         60000
#define S_BREAKER_FAILURES    5
#define S_BREAKER_COOLDOWN_MS 10000

/* ---- keys -------------------------------------------------------------- */

void
http_config_free_keys(char **keys, int n)
{
    for (int i = 0; keys && i < n; i++)
        if (keys[i]) {
            explicit_bzero(keys[i], strlen(keys[i]));
            free(keys[i]);
        }
    free(keys);
}

int
http_config_parse_keys(const char *text, const char *from, char ***keys_out,
                       char *err, size_t es)
{
    char **keys = NULL;
    int n = 0, line = 1;
    const char *p = text;
    while (*p) {
        /* One entry: up to a newline or a comma. */
        size_t len = strcspn(p, ",\n");
        const char *a = p, *b = p + len;
        bool comment = false;
        while (a < b && (*a == ' ' || *a == '\t' || *a == '\r'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
            b--;
        if (a < b && *a == '#') {
            /* A comment runs to the end of the line, commas included. */
            comment = true;
            len = strcspn(p, "\n");
        }
        if (!comment && a < b) {
            for (const char *c = a; c < b; c++)
                if (!isgraph((unsigned char)*c)) {
                    http_config_free_keys(keys, n);
                    return dv_err_set(err, es,
                                      "keys from %s, line %d: a key holds a "
                                      "blank or control character",
                                      from, line);
                }
            if (n >= HTTP_KEYS_MAX) {
                http_config_free_keys(keys, n);
                return dv_err_set(err, es, "keys from %s: more than %d keys",
                                  from, HTTP_KEYS_MAX);
            }
            char **k = realloc(keys, (size_t)(n + 1) * sizeof *k);
            if (!k) {
                http_config_free_keys(keys, n);
                return dv_err_set(err, es, "out of memory");
            }
            keys = k;
            keys[n] = strndup(a, (size_t)(b - a));
            if (!keys[n]) {
                http_config_free_keys(keys, n);
                return dv_err_set(err, es, "out of memory");
            }
            for (int i = 0; i < n; i++)
                if (strcmp(keys[i], keys[n]) == 0) {
                    http_config_free_keys(keys, n + 1);
                    return dv_err_set(err, es,
                                      "keys from %s: key-%d is the same as "
                                      "key-%d",
                                      from, n + 1, i + 1);
                }
            n++;
        }
        p += len;
        if (*p == '\n')
            line++;
        if (*p)
            p++;
    }
    *keys_out = keys;
    return n;
}

/* ---- JSON Lines key files ------------------------------------------------ */

#define S_ENTRY_ID_MAX 64

void
http_config_free_entries(http_key_entry_t *entries, int n)
{
    for (int i = 0; entries && i < n; i++) {
        free(entries[i].id);
        free(entries[i].url);
        json_decref(entries[i].vars);
    }
    free(entries);
}

/* Line l of text (len bytes from p), trimmed: [*a, *b). */
static void
s_trim(const char *p, size_t len, const char **a, const char **b)
{
    *a = p;
    *b = p + len;
    while (*a < *b && (**a == ' ' || **a == '\t' || **a == '\r'))
        (*a)++;
    while (*b > *a && ((*b)[-1] == ' ' || (*b)[-1] == '\t' ||
                       (*b)[-1] == '\r' || (*b)[-1] == '\n'))
        (*b)--;
}

/* True if text has a line that starts (after blanks) with '{'. */
static bool
s_has_entry_line(const char *text)
{
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, "\n");
        const char *a, *b;
        s_trim(p, len, &a, &b);
        if (a < b && *a == '{')
            return true;
        p += len;
        if (*p)
            p++;
    }
    return false;
}

/* Checks a secret: not empty, no blank or control character. */
static bool
s_secret_ok(const char *s)
{
    if (!*s)
        return false;
    for (const char *c = s; *c; c++)
        if (!isgraph((unsigned char)*c))
            return false;
    return true;
}

/* The secret of entry o (line, n-th entry): from "key", "key_env" or
 * "key_file". Returns a new string or NULL with a reason in err. */
static char *
s_entry_secret(const json_t *o, const char *from, int line, char *err,
               size_t es)
{
    const json_t *inl = json_object_get(o, "key");
    const json_t *env = json_object_get(o, "key_env");
    const json_t *file = json_object_get(o, "key_file");
    int given = (inl != NULL) + (env != NULL) + (file != NULL);
    if (given != 1) {
        dv_err_set(err, es,
                   "keys from %s, line %d: %s of \"key\", \"key_env\", "
                   "\"key_file\" (exactly one is needed)",
                   from, line, given == 0 ? "none" : "more than one");
        return NULL;
    }
    const json_t *v = inl ? inl : env ? env : file;
    const char *field = inl ? "key" : env ? "key_env" : "key_file";
    if (!json_is_string(v) || json_string_length(v) == 0) {
        dv_err_set(err, es,
                   "keys from %s, line %d: \"%s\" must be a non-empty string",
                   from, line, field);
        return NULL;
    }
    char *secret = NULL;
    if (inl) {
        secret = strdup(json_string_value(v));
        if (!secret) {
            dv_err_set(err, es, "out of memory");
            return NULL;
        }
    } else if (env) {
        const char *name = json_string_value(v);
        const char *val = getenv(name);
        if (!val || !*val) {
            dv_err_set(err, es,
                       "keys from %s, line %d: the environment variable %s "
                       "is not set",
                       from, line, name);
            return NULL;
        }
        secret = strdup(val);
        if (!secret) {
            dv_err_set(err, es, "out of memory");
            return NULL;
        }
    } else {
        const char *path = json_string_value(v);
        size_t len;
        char *text = dv_read_file(path, &len);
        if (!text) {
            dv_err_set(err, es, "keys from %s, line %d: cannot read %s: %s",
                       from, line, path, strerror(errno));
            return NULL;
        }
        if (strlen(text) != len) {
            explicit_bzero(text, len);
            free(text);
            dv_err_set(err, es, "keys from %s, line %d: %s holds a NUL byte",
                       from, line, path);
            return NULL;
        }
        const char *a, *b;
        s_trim(text, len, &a, &b);
        secret = strndup(a, (size_t)(b - a));
        explicit_bzero(text, len);
        free(text);
        if (!secret) {
            dv_err_set(err, es, "out of memory");
            return NULL;
        }
    }
    if (!s_secret_ok(secret)) {
        explicit_bzero(secret, strlen(secret));
        free(secret);
        dv_err_set(err, es,
                   "keys from %s, line %d: the key from \"%s\" is empty or "
                   "holds a blank or control character",
                   from, line, field);
        return NULL;
    }
    return secret;
}

/* Reads entry o (from line) into e; the secret is not its business. */
static int
s_entry_fields(const json_t *o, const char *from, int line, int pos,
               http_key_entry_t *e, char *err, size_t es)
{
    e->rpm = -1;
    e->tpm = -1;
    if (!(e->vars = json_object()))
        return dv_err_set(err, es, "out of memory");
    const char *k;
    json_t *x;
    char why[200];
    json_object_foreach((json_t *)o, k, x)
    {
        if (!strcmp(k, "key") || !strcmp(k, "key_env") ||
            !strcmp(k, "key_file"))
            continue;
        if (!strcmp(k, "id")) {
            const char *s = json_string_value(x);
            size_t n = s ? strlen(s) : 0;
            bool ok = n >= 1 && n <= S_ENTRY_ID_MAX;
            for (size_t i = 0; ok && i < n; i++)
                ok = isgraph((unsigned char)s[i]) != 0;
            if (!ok)
                return dv_err_set(err, es,
                                  "keys from %s, line %d: \"id\" must be 1..%d "
                                  "printable characters without blanks",
                                  from, line, S_ENTRY_ID_MAX);
            if (!(e->id = strdup(s)))
                return dv_err_set(err, es, "out of memory");
        } else if (!strcmp(k, "url")) {
            const char *s = json_string_value(x);
            char ep[300];
            if (!s || http_config_endpoint(s, ep, sizeof ep) != 0)
                return dv_err_set(err, es,
                                  "keys from %s, line %d: \"url\" must be an "
                                  "http:// or https:// URL with a fixed host",
                                  from, line);
            http_template_t *t =
                http_template_new_text(s, HTTP_TEXT_URL, why, sizeof why);
            if (!t)
                return dv_err_set(err, es, "keys from %s, line %d: url: %s",
                                  from, line, why);
            http_template_destroy(&t);
            if (!(e->url = strdup(s)))
                return dv_err_set(err, es, "out of memory");
        } else if (!strcmp(k, "rpm")) {
            if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                json_integer_value(x) > KEYPOOL_RPM_MAX)
                return dv_err_set(err, es,
                                  "keys from %s, line %d: \"rpm\" must be a "
                                  "whole number in 0..%d",
                                  from, line, KEYPOOL_RPM_MAX);
            e->rpm = (int)json_integer_value(x);
        } else if (!strcmp(k, "tpm")) {
            if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                json_integer_value(x) > (json_int_t)1 << 40)
                return dv_err_set(err, es,
                                  "keys from %s, line %d: \"tpm\" must be a "
                                  "whole number of tokens, 0 to 2^40",
                                  from, line);
            e->tpm = (int64_t)json_integer_value(x);
        } else if (json_is_string(x) || json_is_number(x) ||
                   json_is_boolean(x)) {
            if (json_object_set(e->vars, k, x) != 0)
                return dv_err_set(err, es, "out of memory");
        } else {
            return dv_err_set(err, es,
                              "keys from %s, line %d: \"%.60s\" must be a "
                              "string, a number or a boolean (%s are not "
                              "template values)",
                              from, line, k,
                              json_is_null(x) ? "nulls" : "objects and arrays");
        }
    }
    if (!e->id) {
        char id[32];
        snprintf(id, sizeof id, "key-%d", pos);
        if (!(e->id = strdup(id)))
            return dv_err_set(err, es, "out of memory");
    }
    return 0;
}

/* Overwrites an inline secret held by a parsed line before it is freed. */
static void
s_wipe_line(json_t *o)
{
    json_t *k = json_object_get(o, "key");
    if (json_is_string(k))
        explicit_bzero((char *)json_string_value(k), json_string_length(k));
}

int
http_config_parse_entries(const char *text, const char *from, char ***keys_out,
                          http_key_entry_t **entries_out, char *err, size_t es)
{
    if (!s_has_entry_line(text))
        return 0;
    char **keys = NULL;
    http_key_entry_t *ents = NULL;
    int n = 0, line = 0, rc = -1;
    json_t *o = NULL;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, "\n");
        const char *a, *b;
        s_trim(p, len, &a, &b);
        line++;
        p += len;
        if (*p)
            p++;
        if (a == b || *a == '#')
            continue;
        if (*a != '{') {
            dv_err_set(err, es,
                       "keys from %s, line %d: a plain key in a file of JSON "
                       "entries (one form per file: every key a line of "
                       "text, or every key a {...} line)",
                       from, line);
            goto done;
        }
        if (n >= HTTP_KEYS_MAX) {
            dv_err_set(err, es, "keys from %s: more than %d keys", from,
                       HTTP_KEYS_MAX);
            goto done;
        }
        json_error_t jerr;
        o = json_loadb(a, (size_t)(b - a), JSON_REJECT_DUPLICATES, &jerr);
        if (!o || !json_is_object(o)) {
            /* jansson's text may quote the line: only the column. */
            dv_err_set(err, es,
                       "keys from %s, line %d: not a JSON object (invalid "
                       "JSON near column %d, or a duplicate field)",
                       from, line, o ? 1 : jerr.column);
            goto done;
        }
        char **k2 = realloc(keys, (size_t)(n + 1) * sizeof *k2);
        if (k2)
            keys = k2;
        http_key_entry_t *e2 =
            k2 ? realloc(ents, (size_t)(n + 1) * sizeof *e2) : NULL;
        if (!e2) {
            dv_err_set(err, es, "out of memory");
            goto done;
        }
        ents = e2;
        memset(&ents[n], 0, sizeof ents[n]);
        keys[n] = NULL;
        n++;
        if (s_entry_fields(o, from, line, n, &ents[n - 1], err, es) != 0 ||
            !(keys[n - 1] = s_entry_secret(o, from, line, err, es)))
            goto done;
        for (int i = 0; i < n - 1; i++) {
            if (strcmp(ents[i].id, ents[n - 1].id) == 0) {
                dv_err_set(err, es,
                           "keys from %s, line %d: the id \"%s\" is taken by "
                           "an earlier entry",
                           from, line, ents[i].id);
                goto done;
            }
            if (strcmp(keys[i], keys[n - 1]) == 0) {
                dv_err_set(err, es,
                           "keys from %s, line %d: the key of %s is the same "
                           "as that of %s",
                           from, line, ents[n - 1].id, ents[i].id);
                goto done;
            }
        }
        s_wipe_line(o);
        json_decref(o);
        o = NULL;
    }
    rc = n;
done:
    if (o) {
        s_wipe_line(o);
        json_decref(o);
    }
    if (rc < 0) {
        http_config_free_keys(keys, n);
        http_config_free_entries(ents, n);
        return -1;
    }
    *keys_out = keys;
    *entries_out = ents;
    return n;
}

/* ---- one handler ------------------------------------------------------- */

static void
s_handler_clear(http_handler_cfg_t *h)
{
    free(h->type);
    free(h->url);
    free(h->endpoint);
    free(h->method);
    for (int i = 0; i < h->nheaders; i++)
        free(h->headers[i]);
    free(h->headers);
    free(h->auth_header);
    json_decref(h->body);
    free(h->body_text);
    free(h->result);
    http_config_free_keys(h->keys, h->nkeys);
    http_config_free_entries(h->entries, h->nkeys);
    free(h->keys_from);
    memset(h, 0, sizeof *h);
}

static void
s_handler_defaults(http_handler_cfg_t *h)
{
    memset(h, 0, sizeof *h);
    h->connect_timeout_ms = S_CONNECT_TIMEOUT_MS;
    h->max_wait_ms = S_MAX_WAIT_MS;
    h->window_ms = 60000;
    h->breaker_failures = S_BREAKER_FAILURES;
    h->breaker_cooldown_ms = S_BREAKER_COOLDOWN_MS;
}

int
http_config_endpoint(const char *url, char *out, size_t size)
{
    const char *p;
    int port;
    if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
        port = 80;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
        port = 443;
    } else {
        return -1;
    }
    size_t auth = strcspn(p, "/?#");
    const char *at = memchr(p, '@', auth);
    if (at) {
        auth -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (auth == 0 || memmem(p, auth, "{{", 2))
        return -1;
    /* host, [v6 host], and an optional :port */
    const char *end = p + auth, *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', auth);
        if (!rb)
            return -1;
        if (rb + 1 < end && rb[1] == ':')
            colon = rb + 1;
    } else {
        colon = memchr(p, ':', auth);
    }
    size_t hostlen = (size_t)((colon ? colon : end) - p);
    if (hostlen == 0)
        return -1;
    if (colon) {
        char *e;
        long v = strtol(colon + 1, &e, 10);
        if (e != end || v <= 0 || v > 65535)
            return -1;
        port = (int)v;
    }
    int w = snprintf(out, size, "%.*s:%d", (int)hostlen, p, port);
    return w > 0 && (size_t)w < size ? 0 : -1;
}

static int
s_duration(const json_t *v, const char *what, int64_t *out, char *err,
           size_t es)
{
    char buf[64];
    const char *s;
    if (json_is_string(v)) {
        s = json_string_value(v);
    } else if (json_is_number(v)) {
        snprintf(buf, sizeof buf, "%.17g", json_number_value(v));
        s = buf;
    } else {
        return dv_err_set(err, es, "%s: must be a number of seconds", what);
    }
    if (dv_duration_parse(s, out) != 0)
        return dv_err_set(err, es, "%s: '%s' is not a duration in seconds",
                          what, s);
    return 0;
}

static int
s_int(const json_t *v, const char *what, long long lo, long long hi, int *out,
      char *err, size_t es)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi)
        return dv_err_set(err, es, "%s: must be a whole number in %lld..%lld",
                          what, lo, hi);
    *out = (int)json_integer_value(v);
    return 0;
}

static bool
s_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("!#$%&'*+-.^_`|~", s[i]))
            return false;
    return true;
}

static int
s_keys(http_handler_cfg_t *h, const json_t *v, char *err, size_t es)
{
    const json_t *file = json_object_get(v, "file");
    const json_t *env = json_object_get(v, "env");
    if (!json_is_object(v) || json_object_size(v) != 1 ||
        (!json_is_string(file) && !json_is_string(env)))
        return dv_err_set(err, es,
                          "keys: must be {\"file\": PATH} or {\"env\": NAME}");
    char from[600];
    char *text = NULL;
    if (file) {
        const char *path = json_string_value(file);
        snprintf(from, sizeof from, "file %s", path);
        size_t len;
        text = dv_read_file(path, &len);
        if (!text)
            return dv_err_set(err, es, "keys: cannot read %s: %s", path,
                              strerror(errno));
        if (strlen(text) != len) {
            free(text);
            return dv_err_set(err, es, "keys: %s holds a NUL byte", path);
        }
    } else {
        const char *name = json_string_value(env);
        snprintf(from, sizeof from, "env %s", name);
        const char *val = getenv(name);
        if (!val || !*val)
            return dv_err_set(
                err, es, "keys: the environment variable %s is not set", name);
        text = strdup(val);
        if (!text)
            return dv_err_set(err, es, "out of memory");
    }
    char **keys = NULL;
    http_key_entry_t *entries = NULL;
    int n;
    if (file) {
        n = http_config_parse_entries(text, from, &keys, &entries, err, es);
        if (n == 0)
            n = http_config_parse_keys(text, from, &keys, err, es);
    } else if (s_has_entry_line(text)) {
        n = dv_err_set(err, es,
                       "keys from %s: JSON entries are read from a key file "
                       "only; a variable holds plain keys",
                       from);
    } else {
        n = http_config_parse_keys(text, from, &keys, err, es);
    }
    explicit_bzero(text, strlen(text));
    free(text);
    if (n < 0)
        return -1;
    if (n == 0)
        return dv_err_set(err, es, "keys: no key in %s", from);
    http_config_free_keys(h->keys, h->nkeys);
    http_config_free_entries(h->entries, h->nkeys);
    h->keys = keys;
    h->nkeys = n;
    h->entries = entries;
    h->keys_vary = false;
    for (int i = 0; entries && i < n; i++)
        if (entries[i].url || json_object_size(entries[i].vars) > 0)
            h->keys_vary = true;
    free(h->keys_from);
    h->keys_from = strdup(from);
    return h->keys_from ? 0 : dv_err_set(err, es, "out of memory");
}

static int
s_headers(http_handler_cfg_t *h, const json_t *v, char *err, size_t es)
{
    if (!json_is_object(v))
        return dv_err_set(err, es, "headers: must be an object of strings");
    const char *name;
    json_t *val;
    json_object_foreach((json_t *)v, name, val)
    {
        if (!s_token(name, strlen(name)))
            return dv_err_set(err, es, "headers: '%.60s' is not a header name",
                              name);
        if (!json_is_string(val))
            return dv_err_set(err, es, "headers.%s: must be a string", name);
        const char *s = json_string_value(val);
        if (strpbrk(s, "\r\n"))
            return dv_err_set(err, es, "headers.%s: holds a line break", name);
        char why[200];
        http_template_t *t =
            http_template_new_text(s, HTTP_TEXT_HEADER, why, sizeof why);
        if (!t)
            return dv_err_set(err, es, "headers.%s: %s", name, why);
        http_template_destroy(&t);
        size_t len = strlen(name) + 2 + strlen(s) + 1;
        char *line = malloc(len);
        char **hs = realloc(h->headers, (size_t)(h->nheaders + 1) * sizeof *hs);
        if (!line || !hs) {
            free(line);
            if (hs)
                h->headers = hs;
            return dv_err_set(err, es, "out of memory");
        }
        snprintf(line, len, "%s: %s", name, s);
        h->headers = hs;
        h->headers[h->nheaders++] = line;
        if (strcasecmp(name, "Content-Type") == 0)
            h->has_content_type = true;
    }
    return 0;
}

static int
s_breaker(http_handler_cfg_t *h, const json_t *v, char *err, size_t es)
{
    if (json_is_false(v)) {
        h->breaker_failures = 0;
        return 0;
    }
    if (!json_is_object(v))
        return dv_err_set(err, es,
                          "breaker: must be {\"failures\": N, \"cooldown\": S} "
                          "or false");
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x)
    {
        if (strcmp(k, "failures") == 0) {
            if (s_int(x, "breaker.failures", 0, 1000000, &h->breaker_failures,
                      err, es))
                return -1;
        } else if (strcmp(k, "cooldown") == 0) {
            if (s_duration(x, "breaker.cooldown", &h->breaker_cooldown_ms, err,
                           es))
                return -1;
        } else {
            return dv_err_set(err, es, "breaker: unknown setting '%s'", k);
        }
    }
    return 0;
}

static int
s_url(http_handler_cfg_t *h, const char *url, char *err, size_t es)
{
    char ep[300], why[200];
    if (http_config_endpoint(url, ep, sizeof ep) != 0)
        return dv_err_set(
            err, es,
            "url: '%.100s' is not an http:// or https:// URL with "
            "a fixed host",
            url);
    http_template_t *t =
        http_template_new_text(url, HTTP_TEXT_URL, why, sizeof why);
    if (!t)
        return dv_err_set(err, es, "url: %s", why);
    http_template_destroy(&t);
    free(h->url);
    free(h->endpoint);
    h->url = strdup(url);
    h->endpoint = strdup(ep);
    return h->url && h->endpoint ? 0 : dv_err_set(err, es, "out of memory");
}

/* Reads one handler's settings into h (which holds defaults). */
static int
s_handler_json(http_handler_cfg_t *h, const json_t *v, char *err, size_t es)
{
    if (!json_is_object(v))
        return dv_err_set(err, es, "must be an object with at least \"url\"");
    const char *k;
    json_t *x;
    char why[300];
    json_object_foreach((json_t *)v, k, x)
    {
        int rc = 0;
        if (strcmp(k, "url") == 0) {
            rc = json_is_string(x)
                     ? s_url(h, json_string_value(x), err, es)
                     : dv_err_set(err, es, "url: must be a string");
        } else if (strcmp(k, "method") == 0) {
            const char *m = json_string_value(x);
            if (!m || !s_token(m, strlen(m)) || strlen(m) > 16) {
                rc =
                    dv_err_set(err, es, "method: must be a method name (POST)");
            } else {
                free(h->method);
                h->method = strdup(m);
                for (char *c = h->method; c && *c; c++)
                    *c = (char)toupper((unsigned char)*c);
            }
        } else if (strcmp(k, "headers") == 0) {
            rc = s_headers(h, x, err, es);
        } else if (strcmp(k, "auth_header") == 0) {
            const char *s = json_string_value(x);
            const char *colon = s ? strchr(s, ':') : NULL;
            if (!s || !colon || !s_token(s, (size_t)(colon - s)) ||
                !strstr(s, "{key}") || strpbrk(s, "\r\n"))
                rc = dv_err_set(err, es,
                                "auth_header: must be \"Name: ...{key}...\", "
                                "e.g. \"Authorization: Bearer {key}\"");
            else {
                free(h->auth_header);
                h->auth_header = strdup(s);
            }
        } else if (strcmp(k, "body") == 0) {
            http_template_t *t =
                json_is_string(x)
                    ? http_template_new_text(json_string_value(x),
                                             HTTP_TEXT_PLAIN, why, sizeof why)
                    : http_template_new_json(x, why, sizeof why);
            if (!t) {
                rc = dv_err_set(err, es, "body: %s", why);
            } else {
                http_template_destroy(&t);
                json_decref(h->body);
                free(h->body_text);
                h->body = NULL;
                h->body_text = NULL;
                if (json_is_string(x))
                    h->body_text = strdup(json_string_value(x));
                else
                    h->body = json_deep_copy(x);
            }
        } else if (strcmp(k, "result") == 0) {
            const char *s = json_string_value(x);
            if (!s || http_template_check_pointer(s) != 0) {
                rc = dv_err_set(err, es,
                                "result: must be a JSON pointer such as "
                                "\"/choices/0/message/content\"");
            } else {
                free(h->result);
                h->result = strdup(s);
            }
        } else if (strcmp(k, "connect_timeout") == 0) {
            rc = s_duration(x, k, &h->connect_timeout_ms, err, es);
        } else if (strcmp(k, "timeout") == 0) {
            rc = s_duration(x, k, &h->timeout_ms, err, es);
        } else if (strcmp(k, "max_wait") == 0) {
            rc = s_duration(x, k, &h->max_wait_ms, err, es);
        } else if (strcmp(k, "keys") == 0) {
            rc = s_keys(h, x, err, es);
        } else if (strcmp(k, "rpm") == 0) {
            rc = s_int(x, k, 0, KEYPOOL_RPM_MAX, &h->rpm, err, es);
        } else if (strcmp(k, "tpm") == 0) {
            json_int_t n = json_integer_value(x);
            if (!json_is_integer(x) || n < 0 || n > (json_int_t)1 << 40)
                rc = dv_err_set(err, es,
                                "tpm: must be a whole number of tokens per "
                                "window, 0 to 2^40");
            else
                h->tpm = (int64_t)n;
        } else if (strcmp(k, "window") == 0) {
            rc = s_duration(x, k, &h->window_ms, err, es);
            if (rc == 0 && (h->window_ms < 100 || h->window_ms > 86400000))
                rc =
                    dv_err_set(err, es, "window: must be 0.1 to 86400 seconds");
        } else if (strcmp(k, "breaker") == 0) {
            rc = s_breaker(h, x, err, es);
        } else {
            rc = dv_err_set(err, es, "unknown setting '%s'", k);
        }
        if (rc)
            return -1;
    }
    if (!h->url)
        return dv_err_set(err, es, "url: missing");
    if (!h->method && !(h->method = strdup("POST")))
        return dv_err_set(err, es, "out of memory");
    if (h->auth_header && h->nkeys == 0)
        return dv_err_set(err, es, "auth_header: set, but no keys");
    if (h->nkeys > 0 && !h->auth_header &&
        !(h->auth_header = strdup("Authorization: Bearer {key}")))
        return dv_err_set(err, es, "out of memory");
    if ((h->body || h->body_text) &&
        (strcmp(h->method, "GET") == 0 || strcmp(h->method, "HEAD") == 0))
        return dv_err_set(err, es, "body: a %s request has none", h->method);
    return 0;
}

/* Puts h (consumed) under its type, replacing an earlier one. */
static int
s_put(http_config_t **cfg_p, http_handler_cfg_t *h, char *err, size_t es)
{
    if (!*cfg_p && !(*cfg_p = calloc(1, sizeof **cfg_p)))
        return dv_err_set(err, es, "out of memory");
    http_config_t *cfg = *cfg_p;
    for (int i = 0; i < cfg->n; i++)
        if (strcmp(cfg->h[i].type, h->type) == 0) {
            s_handler_clear(&cfg->h[i]);
            cfg->h[i] = *h;
            return 0;
        }
    http_handler_cfg_t *a = realloc(cfg->h, (size_t)(cfg->n + 1) * sizeof *a);
    if (!a)
        return dv_err_set(err, es, "out of memory");
    cfg->h = a;
    cfg->h[cfg->n++] = *h;
    return 0;
}

static int
s_type_ok(const char *type, char *err, size_t es)
{
    size_t n = strlen(type);
    if (n == 0 || n > DV_NAME_MAX)
        return dv_err_set(err, es, "job type must be 1..%d bytes", DV_NAME_MAX);
    return 0;
}

int
http_config_load_json(http_config_t **cfg, const json_t *http, char *err,
                      size_t es)
{
    if (!json_is_object(http))
        return dv_err_set(err, es, "http: must be an object of job types");
    const char *type;
    json_t *v;
    char why[400];
    json_object_foreach((json_t *)http, type, v)
    {
        http_handler_cfg_t h;
        s_handler_defaults(&h);
        h.type = strdup(type);
        if (!h.type || s_type_ok(type, why, sizeof why) != 0 ||
            s_handler_json(&h, v, why, sizeof why) != 0 ||
            s_put(cfg, &h, why, sizeof why) != 0) {
            if (!h.type)
                snprintf(why, sizeof why, "out of memory");
            s_handler_clear(&h);
            return dv_err_set(err, es, "http.%s: %s", type, why);
        }
    }
    return 0;
}

int
http_config_add_flag(http_config_t **cfg, const char *spec, char *err,
                     size_t es)
{
    const char *eq = strchr(spec, '=');
    if (!eq)
        return dv_err_set(err, es, "--http: expected TYPE=URL, got '%s'", spec);
    char why[400];
    http_handler_cfg_t h;
    s_handler_defaults(&h);
    h.type = strndup(spec, (size_t)(eq - spec));
    h.method = strdup("POST");
    if (!h.type || !h.method || s_type_ok(h.type, why, sizeof why) != 0 ||
        s_url(&h, eq + 1, why, sizeof why) != 0 ||
        s_put(cfg, &h, why, sizeof why) != 0) {
        if (!h.type || !h.method)
            snprintf(why, sizeof why, "out of memory");
        s_handler_clear(&h);
        return dv_err_set(err, es, "--http: %s", why);
    }
    return 0;
}

const http_handler_cfg_t *
http_config_find(const http_config_t *cfg, const char *type, size_t len)
{
    for (int i = 0; cfg && i < cfg->n; i++)
        if (strlen(cfg->h[i].type) == len &&
            memcmp(cfg->h[i].type, type, len) == 0)
            return &cfg->h[i];
    return NULL;
}

void
http_config_destroy(http_config_t **cfg_p)
{
    if (!cfg_p || !*cfg_p)
        return;
    http_config_t *cfg = *cfg_p;
    for (int i = 0; i < cfg->n; i++)
        s_handler_clear(&cfg->h[i]);
    free(cfg->h);
    free(cfg);
    *cfg_p = NULL;
}
