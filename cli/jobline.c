/* jobline - JSON Lines job parsing (see jobline.h). */
#include "jobline.h"

#include <ctype.h>
#include <math.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "dv_clock.h"
#include "dv_json.h"
#include "dv_id.h"
#include "dv_proto.h"

#define S_BLOCK_SIZE  (1u << 20)
#define S_MAX_SECONDS (10.0 * 365 * 86400)

/* ---- arena ------------------------------------------------------------- */

typedef struct s_block_t {
    struct s_block_t *next; /* older block */
    size_t used;            /* bytes handed out from data */
    size_t cap;             /* bytes in data */
    alignas(max_align_t) char data[];
} s_block_t;

struct jobline_arena_t {
    s_block_t *head;         /* newest block, the one being filled */
    msgpack_sbuffer scratch; /* payloads are packed here, then copied */
};

jobline_arena_t *
jobline_arena_new(void)
{
    jobline_arena_t *self = calloc(1, sizeof *self);
    if (self)
        msgpack_sbuffer_init(&self->scratch);
    return self;
}

void
jobline_arena_destroy(jobline_arena_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_block_t *b = (*self_p)->head;
    while (b) {
        s_block_t *next = b->next;
        free(b);
        b = next;
    }
    msgpack_sbuffer_destroy(&(*self_p)->scratch);
    free(*self_p);
    *self_p = NULL;
}

void *
jobline_arena_alloc(jobline_arena_t *self, size_t size)
{
    const size_t align = alignof(max_align_t);
    size = (size + align - 1) & ~(align - 1);
    s_block_t *b = self->head;
    if (!b || b->cap - b->used < size) {
        if (size > S_BLOCK_SIZE / 4) {
            /* A big one gets its own block, behind the current one, so the
             * space left in the current block is not wasted. */
            s_block_t *big = malloc(sizeof *big + size);
            if (!big)
                return NULL;
            big->used = big->cap = size;
            if (b) {
                big->next = b->next;
                b->next = big;
            } else {
                big->next = NULL;
                self->head = big;
            }
            return big->data;
        }
        b = malloc(sizeof *b + S_BLOCK_SIZE);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = S_BLOCK_SIZE;
        b->next = self->head;
        self->head = b;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

char *
jobline_arena_strndup(jobline_arena_t *self, const char *s, size_t len)
{
    char *p = jobline_arena_alloc(self, len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

/* ---- helpers ----------------------------------------------------------- */

int
jobline_seconds(const char *text, double *seconds)
{
    int64_t ms;
    if (dv_duration_parse(text, &ms) != 0)
        return -1;
    *seconds = (double)ms / 1000.0;
    return 0;
}

int
jobline_time(const char *text, int64_t *ms)
{
    return dv_time_parse(text, ms) == 0 && *ms > 0 ? 0 : -1;
}

static int
s_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

int
jobline_trace_ok(const char *s)
{
    /* version-traceid-parentid-flags; a later version may add fields. */
    if (!s || strlen(s) < 55)
        return 0;
    if (!s_hex(s, 2) || s[2] != '-' || !s_hex(s + 3, 32) || s[35] != '-' ||
        !s_hex(s + 36, 16) || s[52] != '-' || !s_hex(s + 53, 2))
        return 0;
    if (s[55] == '\0')
        return 1;
    return strncmp(s, "00", 2) != 0 && s[55] == '-';
}

static int s_bad(char *why, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
s_bad(char *why, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    return JOBLINE_BAD;
}

/* A duration field: number of seconds or a duration string. */
static int
s_duration(const json_t *v, const char *name, double *out, char *why,
           size_t size)
{
    if (json_is_number(v)) {
        double d = json_number_value(v);
        if (!isfinite(d))
            return s_bad(why, size, "%s must be a number of seconds", name);
        if (d < 0)
            return s_bad(why, size, "%s must be >= 0 seconds", name);
        if (d > S_MAX_SECONDS)
            return s_bad(why, size, "%s must be at most 10 years", name);
        *out = d;
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (s[0] == '-')
            return s_bad(why, size, "%s must be >= 0 seconds", name);
        if (jobline_seconds(s, out) == 0)
            return 0;
    }
    return s_bad(why, size, "%s must be a number of seconds", name);
}

/* A string field copied into the arena; NULL (the default) for JSON null. */
static int
s_string(const json_t *v, const char *name, size_t min, size_t max,
         jobline_arena_t *arena, const char **out, char *why, size_t size)
{
    if (!json_is_string(v))
        return s_bad(why, size, "%s must be a string", name);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n < min || n > max)
        return s_bad(why, size, "%s must be %zu..%zu bytes", name, min, max);
    if (memchr(s, '\0', n))
        return s_bad(why, size, "%s must not contain NUL characters", name);
    *out = jobline_arena_strndup(arena, s, n);
    return *out ? 0 : JOBLINE_NOMEM;
}

static int
s_backoff(const json_t *v, drover_job_t *job, char *why, size_t size)
{
    if (!json_is_object(v))
        return s_bad(why, size,
                     "backoff must be an object {base, factor, cap, jitter}");
    const char *k;
    json_t *f;
    json_object_foreach((json_t *)v, k, f)
    {
        if (json_is_null(f))
            continue;
        int rc = 0;
        if (!strcmp(k, "base"))
            rc = s_duration(f, "backoff.base", &job->backoff_base_s, why, size);
        else if (!strcmp(k, "cap"))
            rc = s_duration(f, "backoff.cap", &job->backoff_cap_s, why, size);
        else if (!strcmp(k, "factor")) {
            if (!json_is_number(f))
                return s_bad(why, size, "backoff.factor must be a number");
            double d = json_number_value(f);
            if (!(d >= 1 && d <= 1000))
                return s_bad(why, size, "backoff.factor must be 1..1000");
            job->backoff_factor = d;
        } else if (!strcmp(k, "jitter")) {
            if (!json_is_boolean(f))
                return s_bad(why, size, "backoff.jitter must be true or false");
            job->backoff_jitter = json_is_true(f);
        } else
            return s_bad(why, size, "unknown field \"backoff.%s\"", k);
        if (rc)
            return rc;
    }
    return 0;
}

static int
s_payload(const json_t *v, jobline_arena_t *arena, drover_job_t *job, char *why,
          size_t size)
{
    /* Pack into a buffer reused across lines, then copy the exact bytes into
     * the arena: no allocation per line besides the arena's blocks. */
    msgpack_sbuffer *sb = &arena->scratch;
    sb->size = 0;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (dv_json_pack(&pk, v) != 0)
        return s_bad(why, size, "payload is nested deeper than %d levels",
                     DV_JSON_MAX_DEPTH);
    if (sb->size > DV_PAYLOAD_MAX)
        return s_bad(why, size,
                     "payload is %zu bytes as msgpack; the limit is %u",
                     sb->size, DV_PAYLOAD_MAX);
    char *p = jobline_arena_alloc(arena, sb->size);
    if (!p)
        return JOBLINE_NOMEM;
    memcpy(p, sb->data, sb->size);
    job->payload_json = NULL;
    job->payload_msgpack = p;
    job->payload_len = sb->size;
    return 0;
}

unsigned
jobline_line_ref(const char *s)
{
    if (!s || s[0] != JOBLINE_REF_MARK)
        return 0;
    char *end = NULL;
    unsigned long n = strtoul(s + 1, &end, 10);
    return end && !*end && n > 0 && n <= UINT32_MAX ? (unsigned)n : 0;
}

/* "after" or "after_any": an array of job ids and line numbers (kept as
 * "#N", jobline_line_ref). */
static int
s_after(const json_t *v, const char *name, jobline_arena_t *arena,
        const char *const **out, size_t *n_out, char *why, size_t size)
{
    if (!json_is_array(v))
        return s_bad(why, size,
                     "%s must be an array of job ids and line numbers", name);
    size_t n = json_array_size(v);
    if (n > DV_AFTER_MAX)
        return s_bad(why, size, "%s takes at most %d ids", name, DV_AFTER_MAX);
    const char **ids = jobline_arena_alloc(arena, (n ? n : 1) * sizeof *ids);
    if (!ids)
        return JOBLINE_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        char buf[32];
        const char *s;
        size_t len;
        if (json_is_integer(e)) {
            json_int_t line = json_integer_value(e);
            if (line < 1 || line > UINT32_MAX)
                return s_bad(why, size, "%s: line numbers start at 1", name);
            len = (size_t)snprintf(buf, sizeof buf, "%c%lld", JOBLINE_REF_MARK,
                                   (long long)line);
            s = buf;
        } else if (json_is_string(e) &&
                   json_string_length(e) == DV_ID_TEXT_LEN) {
            s = json_string_value(e);
            len = DV_ID_TEXT_LEN;
        } else {
            return s_bad(why, size,
                         "%s: each item must be a job id (36 characters) or "
                         "a line number",
                         name);
        }
        if (!(ids[i] = jobline_arena_strndup(arena, s, len)))
            return JOBLINE_NOMEM;
    }
    *out = ids;
    *n_out = n;
    return 0;
}

/* Applies one field of the line to *job. */
static int
s_field(const char *k, const json_t *v, jobline_arena_t *arena,
        drover_job_t *job, int *has_delay, int *has_at, char *why, size_t size)
{
    if (!strcmp(k, "payload"))
        return s_payload(v, arena, job, why, size);
    if (json_is_null(v))
        return 0; /* the default stays */
    if (!strcmp(k, "queue"))
        return s_string(v, "queue", 1, DV_NAME_MAX, arena, &job->queue, why,
                        size);
    if (!strcmp(k, "type"))
        return s_string(v, "type", 1, DV_NAME_MAX, arena, &job->type, why,
                        size);
    if (!strcmp(k, "key"))
        return s_string(v, "key", 1, DV_KEY_MAX, arena, &job->key, why, size);
    if (!strcmp(k, "batch"))
        return s_string(v, "batch", 1, DV_NAME_MAX, arena, &job->batch, why,
                        size);
    if (!strcmp(k, "trace")) {
        int rc =
            s_string(v, "trace", 1, DV_TEXT_MAX, arena, &job->trace, why, size);
        if (rc == 0 && !jobline_trace_ok(job->trace))
            return s_bad(why, size,
                         "trace must be a W3C traceparent "
                         "(00-<32 hex>-<16 hex>-<2 hex>)");
        return rc;
    }
    if (!strcmp(k, "priority")) {
        if (!json_is_integer(v))
            return s_bad(why, size, "priority must be an integer 0..9");
        json_int_t p = json_integer_value(v);
        if (p < 0 || p > 9)
            return s_bad(why, size, "priority must be 0..9");
        job->priority = (int)p;
        return 0;
    }
    if (!strcmp(k, "max_attempts")) {
        if (!json_is_integer(v))
            return s_bad(why, size, "max_attempts must be an integer 1..1000");
        json_int_t n = json_integer_value(v);
        if (n < 1 || n > 1000)
            return s_bad(why, size, "max_attempts must be 1..1000");
        job->max_attempts = (int)n;
        return 0;
    }
    if (!strcmp(k, "delay")) {
        *has_delay = 1;
        job->run_at_ms = 0;
        return s_duration(v, "delay", &job->delay_s, why, size);
    }
    if (!strcmp(k, "at")) {
        *has_at = 1;
        job->delay_s = 0;
        if (json_is_string(v) &&
            jobline_time(json_string_value(v), &job->run_at_ms) == 0)
            return 0;
        if (json_is_number(v)) {
            double s = json_number_value(v);
            if (isfinite(s) && s > 0 && s < 1e11) {
                job->run_at_ms = (int64_t)llround(s * 1000.0);
                return 0;
            }
        }
        return s_bad(why, size,
                     "at must be an ISO 8601 UTC time "
                     "(2026-11-22T17:41:00Z) or epoch seconds");
    }
    if (!strcmp(k, "timeout")) {
        int rc = s_duration(v, "timeout", &job->timeout_s, why, size);
        if (rc == 0 && job->timeout_s <= 0)
            return s_bad(why, size, "timeout must be > 0 seconds");
        return rc;
    }
    if (!strcmp(k, "result_ttl"))
        return s_duration(v, "result_ttl", &job->result_ttl_s, why, size);
    if (!strcmp(k, "backoff"))
        return s_backoff(v, job, why, size);
    if (!strcmp(k, "after"))
        return s_after(v, "after", arena, &job->after, &job->nafter, why, size);
    if (!strcmp(k, "after_any"))
        return s_after(v, "after_any", arena, &job->after_any, &job->nafter_any,
                       why, size);
    return s_bad(why, size, "unknown field \"%s\"", k);
}

int
jobline_parse(const char *line, size_t len, const drover_job_t *defaults,
              jobline_arena_t *arena, drover_job_t *job, char *why,
              size_t why_size)
{
    why[0] = '\0';
    size_t i = 0;
    while (i < len && isspace((unsigned char)line[i]))
        i++;
    if (i == len || line[i] == '#')
        return JOBLINE_SKIP;
    *job = *defaults;

    json_error_t err;
    json_t *root = json_loadb(line + i, len - i,
                              JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return s_bad(why, why_size, "invalid JSON at column %d: %s",
                     err.column + (int)i, err.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = s_bad(why, why_size, "a job line must be a JSON object");
        goto done;
    }
    int has_delay = 0, has_at = 0;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        rc = s_field(k, v, arena, job, &has_delay, &has_at, why, why_size);
        if (rc)
            goto done;
    }
    if (has_delay && has_at) {
        rc = s_bad(why, why_size, "give delay or at, not both");
        goto done;
    }
    if (!job->type || !*job->type)
        rc = s_bad(why, why_size, "type is required");
done:
    json_decref(root);
    return rc;
}
