/* dv_schema - the table-driven engine: decode, encode and compare any
 * struct described by a dv_schema_t (dv_schema.h has the table format).
 *
 * Decoding reads a msgpack object tree that msgpack-c built over the
 * caller's bytes (its strings and bins point into them), so every dv_str_t
 * handed out is a view into those bytes. For each key of a map the field is
 * found in the table (starting after the previous key's field, since peers
 * write keys in table order), its value checked and stored at its offset. Arrays are checked (type, count) when their key
 * is read and filled after the whole map was read and its required keys
 * checked, from one zeroed block per map: the count was checked against the
 * bytes by dv_mp_validate() before, so nothing is allocated for a lie. The
 * blocks of one decode are chained for one release.
 *
 * Encoding counts the fields that are present, writes the map header, then
 * the fields, so the header is exact. Comparing walks the same tables.
 *
 * Called by dv_msg.c (messages) and dv_body.c (typed bodies); no I/O. */
#include "dv_schema.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_ID_LEN 36

_Static_assert(sizeof(dv_state_t) == sizeof(int) &&
                   sizeof(dv_category_t) == sizeof(int) &&
                   sizeof(dv_update_kind_t) == sizeof(int) &&
                   sizeof(dv_event_kind_t) == sizeof(int) &&
                   sizeof(dv_code_t) == sizeof(int32_t),
               "enum fields are stored as int");

#define S_AT(obj, off, T) ((T *)(void *)((char *)(obj) + (off)))
#define S_CAT(obj, off, T)                                                     \
    ((const T *)(const void *)((const char *)(obj) + (off)))

/* ---- reasons ------------------------------------------------------------- */

void
dv_dec_init(dv_dec_t *d, char *why, size_t why_size)
{
    d->why = why;
    d->why_size = why_size;
    d->msg = NULL;
    d->depth = 0;
    d->leaf = NULL;
    d->blocks = NULL;
}

static void
s_append(char *buf, size_t size, size_t *n, const char *fmt, ...)
{
    if (*n >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf + *n, size - *n, fmt, ap);
    va_end(ap);
    if (r > 0)
        *n += (size_t)r;
}

static void
s_push_key(dv_dec_t *d, const char *key)
{
    if (d->depth < DV_PATH_MAX) {
        d->path[d->depth].key = key;
        d->path[d->depth].idx = -1;
    }
    d->depth++;
}

static void
s_push_idx(dv_dec_t *d, int64_t idx)
{
    if (d->depth < DV_PATH_MAX) {
        d->path[d->depth].key = NULL;
        d->path[d->depth].idx = idx;
    }
    d->depth++;
}

static int
s_vfail(dv_dec_t *d, int rc, const char *fmt, va_list ap)
{
    if (!d->why || d->why_size == 0)
        return rc;
    char path[256];
    size_t n = 0;
    path[0] = '\0';
    int depth = d->depth < DV_PATH_MAX ? d->depth : DV_PATH_MAX;
    for (int i = 0; i < depth; i++) {
        if (d->path[i].key)
            s_append(path, sizeof path, &n, "%s%s", n ? "." : "",
                     d->path[i].key);
        else
            s_append(path, sizeof path, &n, "[%" PRId64 "]", d->path[i].idx);
    }
    if (d->leaf)
        s_append(path, sizeof path, &n, "%s%s", n ? "." : "", d->leaf);
    char text[256];
    vsnprintf(text, sizeof text, fmt, ap);

    size_t w = 0;
    d->why[0] = '\0';
    if (d->msg)
        s_append(d->why, d->why_size, &w, "%s: ", d->msg);
    if (path[0])
        s_append(d->why, d->why_size, &w, "%s: ", path);
    s_append(d->why, d->why_size, &w, "%s", text);
    return rc;
}

int
dv_dec_fail(dv_dec_t *d, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rc = s_vfail(d, rc, fmt, ap);
    va_end(ap);
    return rc;
}

int
dv_dec_fail_at(dv_dec_t *d, const char *key, int rc, const char *fmt, ...)
{
    const char *leaf = d->leaf;
    d->leaf = key;
    va_list ap;
    va_start(ap, fmt);
    rc = s_vfail(d, rc, fmt, ap);
    va_end(ap);
    d->leaf = leaf;
    return rc;
}

/* Copies at most 40 bytes of peer-supplied text for a reason, with anything
 * unprintable replaced, so a reason is always one clean line. */
static const char *
s_quote(char *buf, size_t size, const char *p, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < size && i < 40; i++) {
        unsigned char c = (unsigned char)p[i];
        buf[n++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
    }
    if (len > 40 && n + 4 < size) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* ---- allocation ---------------------------------------------------------- */

/* One zeroed allocation, chained to the decoder's others. */
typedef union s_block {
    union s_block *next;
    max_align_t align_;
} s_block_t;

static void *
s_alloc(dv_dec_t *d, size_t bytes)
{
    s_block_t *b = calloc(1, sizeof *b + bytes);
    if (!b) {
        dv_dec_fail(d, DV_ENOMEM, "out of memory");
        return NULL;
    }
    b->next = d->blocks;
    d->blocks = b;
    return b + 1;
}

void
dv_dec_free(void *blocks)
{
    s_block_t *b = blocks;
    while (b) {
        s_block_t *next = b->next;
        free(b);
        b = next;
    }
}

/* ---- reading values ------------------------------------------------------ */

static int
s_read_int(dv_dec_t *d, const msgpack_object *o, int64_t min, int64_t max,
           int64_t *out)
{
    int64_t v;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX)
            goto range;
        v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        v = o->via.i64;
    } else {
        return dv_dec_fail(d, DV_EPROTO, "must be an integer");
    }
    if (v < min || v > max)
        goto range;
    *out = v;
    return DV_OK;
range:
    if (max == INT64_MAX)
        return dv_dec_fail(d, DV_EPROTO, "must be >= %" PRId64, min);
    return dv_dec_fail(d, DV_EPROTO, "must be %" PRId64 "..%" PRId64, min, max);
}

static int
s_read_str(dv_dec_t *d, const dv_field_t *f, const msgpack_object *o,
           dv_str_t *out)
{
    if (o->type != MSGPACK_OBJECT_STR) {
        if (o->type == MSGPACK_OBJECT_NIL && (f->flags & DV_FF_NIL))
            return DV_OK; /* nil: absent */
        return dv_dec_fail(d, DV_EPROTO, "must be a string");
    }
    uint32_t n = o->via.str.size;
    if (n > (uint64_t)f->max)
        return dv_dec_fail(d, DV_ETOOBIG, "longer than %" PRId64 " bytes",
                           f->max);
    if (n < (uint64_t)f->min)
        return dv_dec_fail(d, DV_EPROTO, "must not be empty");
    const char *bad;
    if ((f->flags & DV_FF_NAME) && (bad = dv_name_check(o->via.str.ptr, n)))
        return dv_dec_fail(d, DV_EPROTO, "%s", bad);
    /* An empty string is present, so its view must not look absent. */
    out->ptr = o->via.str.ptr ? o->via.str.ptr : "";
    out->len = n;
    return DV_OK;
}

static int
s_read_id(dv_dec_t *d, const msgpack_object *o, dv_str_t *out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return dv_dec_fail(d, DV_EPROTO, "must be a string");
    if (o->via.str.size != S_ID_LEN)
        return dv_dec_fail(d, DV_EPROTO,
                           "must be a %d-character job id, not %" PRIu32
                           " bytes",
                           S_ID_LEN, o->via.str.size);
    out->ptr = o->via.str.ptr;
    out->len = S_ID_LEN;
    return DV_OK;
}

/* A bin that holds exactly one msgpack value (payload, result, body). */
static int
s_read_value(dv_dec_t *d, const msgpack_object *o, dv_str_t *out)
{
    if (o->type != MSGPACK_OBJECT_BIN)
        return dv_dec_fail(d, DV_EPROTO,
                           "must be bin holding one msgpack value");
    uint32_t n = o->via.bin.size;
    if (n > DV_PAYLOAD_MAX)
        return dv_dec_fail(d, DV_ETOOBIG, "larger than %u bytes",
                           DV_PAYLOAD_MAX);
    int rc = dv_mp_validate(o->via.bin.ptr, n, DV_VALUE_DEPTH_MAX);
    if (rc == DV_ETOOBIG)
        return dv_dec_fail(d, DV_ETOOBIG, "nested deeper than %d",
                           DV_VALUE_DEPTH_MAX);
    if (rc != DV_OK)
        return dv_dec_fail(d, DV_EPROTO,
                           "bin does not hold exactly one msgpack value");
    out->ptr = o->via.bin.ptr;
    out->len = n;
    return DV_OK;
}

static int
s_read_enum(dv_dec_t *d, const dv_enum_t *e, const msgpack_object *o, int *out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return dv_dec_fail(d, DV_EPROTO, "must be a string");
    int v = dv_enum_find(e, o->via.str.ptr, o->via.str.size);
    if (v == 0) {
        char q[64];
        return dv_dec_fail(
            d, DV_EPROTO, "unknown %s \"%s\"", e->noun,
            s_quote(q, sizeof q, o->via.str.ptr, o->via.str.size));
    }
    *out = v;
    return DV_OK;
}

/* Reads one scalar value of field f into obj (at f->off). */
static inline __attribute__((always_inline)) int
s_read_scalar(dv_dec_t *d, const dv_field_t *f, const msgpack_object *o,
              void *obj)
{
    int64_t v = 0;
    int rc;
    switch ((dv_ftype_t)f->type) {
    case DV_FT_U64:
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return dv_dec_fail(d, DV_EPROTO, "must be an unsigned integer");
        if (o->via.u64 < (uint64_t)f->min)
            return dv_dec_fail(d, DV_EPROTO, "must be >= %" PRId64, f->min);
        *S_AT(obj, f->off, uint64_t) = o->via.u64;
        return DV_OK;
    case DV_FT_I64:
        return s_read_int(d, o, f->min, f->max, S_AT(obj, f->off, int64_t));
    case DV_FT_I32:
        rc = s_read_int(d, o, f->min, f->max, &v);
        if (rc == DV_OK)
            *S_AT(obj, f->off, int32_t) = (int32_t)v;
        return rc;
    case DV_FT_U32:
        rc = s_read_int(d, o, f->min, f->max, &v);
        if (rc == DV_OK)
            *S_AT(obj, f->off, uint32_t) = (uint32_t)v;
        return rc;
    case DV_FT_DOUBLE: {
        double x;
        switch (o->type) {
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            x = o->via.f64;
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            x = (double)o->via.u64;
            break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            x = (double)o->via.i64;
            break;
        default:
            return dv_dec_fail(d, DV_EPROTO, "must be a number");
        }
        if (!isfinite(x))
            return dv_dec_fail(d, DV_EPROTO, "must be a finite number");
        *S_AT(obj, f->off, double) = x;
        if ((f->flags & DV_FF_DMIN) && x < (double)f->min)
            return dv_dec_fail(d, DV_EPROTO, "must be >= %" PRId64, f->min);
        return DV_OK;
    }
    case DV_FT_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return dv_dec_fail(d, DV_EPROTO, "must be a boolean");
        *S_AT(obj, f->off, bool) = o->via.boolean;
        return DV_OK;
    case DV_FT_STR:
        return s_read_str(d, f, o, S_AT(obj, f->off, dv_str_t));
    case DV_FT_ID:
        return s_read_id(d, o, S_AT(obj, f->off, dv_str_t));
    case DV_FT_VALUE:
        return s_read_value(d, o, S_AT(obj, f->off, dv_str_t));
    case DV_FT_ENUM:
        return s_read_enum(d, f->ref, o, S_AT(obj, f->off, int));
    case DV_FT_KIND: {
        dv_str_t *s = S_AT(obj, f->off, dv_str_t);
        rc = s_read_str(d, f, o, s);
        if (rc == DV_OK)
            *S_AT(obj, f->aux, int) = dv_enum_find(f->ref, s->ptr, s->len);
        return rc;
    }
    case DV_FT_RAW:
        /* The bytes are found by dv_body_decode(); any value will do. */
        return DV_OK;
    case DV_FT_MAP:
    case DV_FT_ARRAY:
        break;
    }
    return dv_dec_fail(d, DV_EPROTO, "no reader for this field");
}

/* ---- decoding maps -------------------------------------------------------- */

static int s_dec_fields(dv_dec_t *d, const dv_schema_t *s,
                        const msgpack_object *o, void *obj, uint32_t need);

/* Keys are short: a loop beats a call to memcmp. */
static inline bool
s_same(const char *a, const char *b, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* Index of the field whose key is k, or -1. Peers write the keys in table
 * order (our encoder does, leaving out absent ones), so the search starts
 * at the field after the previous key (next) and wraps around. */
static inline int
s_find(const dv_schema_t *s, const msgpack_object *k, uint32_t next)
{
    if (k->type != MSGPACK_OBJECT_STR)
        return -1;
    uint32_t len = k->via.str.size, n = s->nfields;
    const char *p = k->via.str.ptr;
    if (next >= n)
        next = 0;
    for (uint32_t j = 0, i = next; j < n; j++, i = i + 1 < n ? i + 1 : 0) {
        const dv_field_t *f = &s->fields[i];
        if (f->len == len && s_same(f->name, p, len))
            return (int)i;
    }
    return -1;
}

/* The required fields of s, as a mask. */
static uint32_t
s_need(const dv_schema_t *s)
{
    uint32_t need = 0;
    for (uint32_t i = 0; i < s->nfields; i++)
        if (s->fields[i].flags & DV_FF_REQ)
            need |= 1u << i;
    return need;
}

/* Decodes the items of array a (count checked) of field f into its block. */
static int
s_dec_items(dv_dec_t *d, const dv_field_t *f, const msgpack_object *a,
            void *base)
{
    uint32_t n = a->via.array.size;
    int rc = DV_OK;
    s_push_key(d, f->name);
    if (f->flags & DV_FF_SCALAR) {
        const dv_field_t *ef = f->ref;
        for (uint32_t i = 0; rc == DV_OK && i < n; i++) {
            s_push_idx(d, i);
            rc = s_read_scalar(d, ef, &a->via.array.ptr[i],
                               (char *)base + (size_t)i * sizeof(dv_str_t));
            d->depth--;
        }
    } else {
        const dv_schema_t *es = f->ref;
        uint32_t need = s_need(es); /* once for all the items */
        for (uint32_t i = 0; rc == DV_OK && i < n; i++) {
            const msgpack_object *o = &a->via.array.ptr[i];
            s_push_idx(d, i);
            if (o->type != MSGPACK_OBJECT_MAP)
                return dv_dec_fail(d, DV_EPROTO, "must be a map");
            rc = s_dec_fields(d, es, o, (char *)base + (size_t)i * es->size,
                              need);
            d->depth--;
        }
    }
    d->depth--;
    return rc;
}

static size_t
s_item_size(const dv_field_t *f)
{
    if (f->flags & DV_FF_SCALAR)
        return sizeof(dv_str_t);
    return ((const dv_schema_t *)f->ref)->size;
}

int
dv_dec_map(dv_dec_t *d, const dv_schema_t *s, const msgpack_object *o,
           void *obj)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return dv_dec_fail(d, DV_EPROTO, "must be a map");
    return s_dec_fields(d, s, o, obj, s_need(s));
}

int
dv_dec_keys(dv_dec_t *d, const dv_schema_t *s, const msgpack_object *o,
            void *obj)
{
    return s_dec_fields(d, s, o, obj, s_need(s));
}

static int
s_dec_fields(dv_dec_t *d, const dv_schema_t *s, const msgpack_object *o,
             void *obj, uint32_t need)
{
    const msgpack_object *arrays[32];
    uint32_t seen = 0, narrays = 0;
    int rc = DV_OK;

    assert(s->nfields <= 32);
    if (s->init)
        s->init(obj);
    uint32_t next = 0;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        int k = s_find(s, &kv->key, next);
        if (k < 0)
            continue; /* unknown keys are ignored */
        next = (uint32_t)k + 1;
        const dv_field_t *f = &s->fields[k];
        uint32_t bit = 1u << k;
        d->leaf = f->name;
        /* A peer could otherwise smuggle a second value past a proxy that
         * reads the first. */
        if (seen & bit)
            return dv_dec_fail(d, DV_EPROTO, "key given twice");
        seen |= bit;
        if (f->flags & DV_FF_HAS)
            *S_AT(obj, f->has, bool) = true;
        const msgpack_object *v = &kv->val;
        if (f->type == DV_FT_MAP) {
            d->leaf = NULL;
            s_push_key(d, f->name);
            rc = dv_dec_map(d, f->ref, v, S_AT(obj, f->off, void));
            d->depth--;
        } else if (f->type == DV_FT_ARRAY) {
            if (v->type != MSGPACK_OBJECT_ARRAY)
                return dv_dec_fail(d, DV_EPROTO, "must be an array");
            uint32_t n = v->via.array.size;
            if (n > (uint64_t)f->max)
                return dv_dec_fail(d, DV_ETOOBIG, "more than %" PRId64 " items",
                                   f->max);
            if (n < (uint64_t)f->min)
                return dv_dec_fail(d, DV_EPROTO, "%s",
                                   f->hint ? f->hint : "too few items");
            *S_AT(obj, f->aux, uint32_t) = n;
            arrays[k] = v;
            narrays++;
        } else {
            rc = s_read_scalar(d, f, v, obj);
        }
        if (rc != DV_OK)
            return rc;
        d->leaf = NULL;
    }

    if (s->need)
        need = s->need(obj, seen, need);
    uint32_t miss = need & ~seen;
    if (miss)
        return dv_dec_fail(d, DV_EPROTO, "missing key \"%s\"",
                           s->fields[__builtin_ctz(miss)].name);
    if (s->check && (rc = s->check(d, obj)) != DV_OK)
        return rc;
    if (!narrays)
        return DV_OK;

    /* The arrays of this map, in one block, in field order. */
    size_t bytes = 0;
    for (uint32_t i = 0; i < s->nfields; i++)
        if ((seen & (1u << i)) && s->fields[i].type == DV_FT_ARRAY)
            bytes += (size_t)*S_AT(obj, s->fields[i].aux, uint32_t) *
                     s_item_size(&s->fields[i]);
    if (bytes == 0)
        return DV_OK;
    char *block = s_alloc(d, bytes);
    if (!block)
        return DV_ENOMEM;
    for (uint32_t i = 0; rc == DV_OK && i < s->nfields; i++) {
        const dv_field_t *f = &s->fields[i];
        if (!(seen & (1u << i)) || f->type != DV_FT_ARRAY)
            continue;
        uint32_t n = *S_AT(obj, f->aux, uint32_t);
        if (n == 0)
            continue;
        memcpy(S_AT(obj, f->off, void *), &block, sizeof block);
        rc = s_dec_items(d, f, arrays[i], block);
        block += (size_t)n * s_item_size(f);
    }
    return rc;
}

/* ---- encoding ------------------------------------------------------------ */

/* Whether the encoder writes field f of obj. */
static inline bool
s_present(const dv_field_t *f, const void *obj)
{
    uint32_t fl = f->flags;
    if (f->present)
        return f->present(obj);
    if (fl & DV_FF_HAS)
        return *S_CAT(obj, f->has, bool);
    bool omit = fl & DV_FF_OMIT;
    switch ((dv_ftype_t)f->type) {
    case DV_FT_STR:
    case DV_FT_ID:
    case DV_FT_VALUE:
        return (fl & (DV_FF_NIL | DV_FF_ALWAYS)) ||
               S_CAT(obj, f->off, dv_str_t)->ptr != NULL;
    case DV_FT_KIND:
        return S_CAT(obj, f->off, dv_str_t)->ptr != NULL ||
               *S_CAT(obj, f->aux, int) != 0;
    case DV_FT_RAW: {
        const dv_str_t *v = S_CAT(obj, f->off, dv_str_t);
        return v->ptr && v->len;
    }
    case DV_FT_U64:
        return !omit || *S_CAT(obj, f->off, uint64_t) != (uint64_t)f->dflt;
    case DV_FT_I64:
        return !omit || *S_CAT(obj, f->off, int64_t) != f->dflt;
    case DV_FT_I32:
        return !omit || *S_CAT(obj, f->off, int32_t) != f->dflt;
    case DV_FT_U32:
        return !omit || *S_CAT(obj, f->off, uint32_t) != (uint64_t)f->dflt;
    case DV_FT_ENUM:
        return !omit || *S_CAT(obj, f->off, int) != f->dflt;
    case DV_FT_ARRAY:
        return !omit || *S_CAT(obj, f->aux, uint32_t) != 0;
    case DV_FT_BOOL:
        return !omit || *S_CAT(obj, f->off, bool);
    case DV_FT_DOUBLE:
    case DV_FT_MAP:
        break;
    }
    return true;
}

/* A string; a short one (fixstr) in one append, header and body. */
/* The encoder writes straight into the buffer: it makes room once for a
 * key and a scalar value (or a string's header and bytes) and stores the
 * bytes, where msgpack_pack_*() made a call through the packer for each
 * header and each body, each with its own check for room. The bytes are
 * the ones msgpack-c writes: the smallest form of each number, str8 for
 * strings of 32 to 255 bytes. */

/* Makes room for n more bytes at the end of out (growing it as
 * msgpack_sbuffer_write does) and returns where they go; NULL when out of
 * memory. */
static char *
s_room(msgpack_sbuffer *out, size_t n)
{
    if (out->alloc - out->size >= n)
        return out->data + out->size;
    size_t cap = out->alloc ? out->alloc : MSGPACK_SBUFFER_INIT_SIZE;
    while (cap < out->size + n) {
        if (cap > SIZE_MAX / 2)
            return NULL;
        cap *= 2;
    }
    char *data = realloc(out->data, cap);
    if (!data)
        return NULL;
    out->data = data;
    out->alloc = cap;
    return data + out->size;
}

static inline char *
s_put_be(char *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        p[i] = (char)(v & 0xff);
        v >>= 8;
    }
    return p + bytes;
}

/* A tag byte and v in bytes big-endian bytes. */
static inline char *
s_put_tagged(char *p, unsigned char tag, uint64_t v, int bytes)
{
    *p++ = (char)tag;
    return s_put_be(p, v, bytes);
}

static inline char *
s_put_uint(char *p, uint64_t v)
{
    if (v < 128) {
        *p++ = (char)v;
        return p;
    }
    if (v < 256)
        return s_put_tagged(p, 0xcc, v, 1);
    if (v < 65536)
        return s_put_tagged(p, 0xcd, v, 2);
    if (v <= UINT32_MAX)
        return s_put_tagged(p, 0xce, v, 4);
    return s_put_tagged(p, 0xcf, v, 8);
}

static inline char *
s_put_int(char *p, int64_t v)
{
    if (v >= 0)
        return s_put_uint(p, (uint64_t)v);
    if (v >= -32) {
        *p++ = (char)(int8_t)v;
        return p;
    }
    if (v >= INT8_MIN)
        return s_put_tagged(p, 0xd0, (uint64_t)v, 1);
    if (v >= INT16_MIN)
        return s_put_tagged(p, 0xd1, (uint64_t)v, 2);
    if (v >= INT32_MIN)
        return s_put_tagged(p, 0xd2, (uint64_t)v, 4);
    return s_put_tagged(p, 0xd3, (uint64_t)v, 8);
}

/* A str, bin, map or array header for n (fix forms where msgpack has
 * them: fix is their tag, 0 for bin; small: the max of the fix form). */
static inline char *
s_put_head(char *p, size_t n, unsigned char fix, uint32_t small,
           unsigned char t8, unsigned char t16, unsigned char t32)
{
    if (fix && n < small) {
        *p++ = (char)(fix | n);
        return p;
    }
    if (t8 && n < 256)
        return s_put_tagged(p, t8, n, 1);
    if (n < 65536)
        return s_put_tagged(p, t16, n, 2);
    return s_put_tagged(p, t32, n, 4);
}

#define S_STR_HEAD(p, n) s_put_head(p, n, 0xa0, 32, 0xd9, 0xda, 0xdb)
#define S_BIN_HEAD(p, n) s_put_head(p, n, 0, 0, 0xc4, 0xc5, 0xc6)
#define S_MAP_HEAD(p, n) s_put_head(p, n, 0x80, 16, 0, 0xde, 0xdf)
#define S_ARR_HEAD(p, n) s_put_head(p, n, 0x90, 16, 0, 0xdc, 0xdd)
#define S_HEAD_MAX       5 /* the most a header takes */
#define S_SCALAR_MAX     9 /* the most a number takes */

/* Appends len bytes of p (NULL: none) as a str, or with bin as a bin. */
static int
s_put_body(msgpack_sbuffer *out, bool bin, const char *p, size_t len)
{
    char *w = s_room(out, len + S_HEAD_MAX);
    if (!w)
        return -1;
    w = bin ? S_BIN_HEAD(w, len) : S_STR_HEAD(w, len);
    if (len)
        memcpy(w, p, len);
    out->size = (size_t)(w + len - out->data);
    return 0;
}

static int
s_put_str(msgpack_sbuffer *out, const char *p, size_t len)
{
    return s_put_body(out, false, p, len);
}

/* Writes f's value at p if it is a number or a bool (at most S_SCALAR_MAX
 * bytes) and returns the end; NULL for the other types. */
static inline char *
s_put_scalar(char *p, const dv_field_t *f, const void *obj)
{
    switch ((dv_ftype_t)f->type) {
    case DV_FT_U64:
        return s_put_uint(p, *S_CAT(obj, f->off, uint64_t));
    case DV_FT_I64:
        return s_put_int(p, *S_CAT(obj, f->off, int64_t));
    case DV_FT_I32:
        return s_put_int(p, *S_CAT(obj, f->off, int32_t));
    case DV_FT_U32:
        return s_put_uint(p, *S_CAT(obj, f->off, uint32_t));
    case DV_FT_DOUBLE: {
        uint64_t bits;
        memcpy(&bits, S_CAT(obj, f->off, double), sizeof bits);
        return s_put_tagged(p, 0xcb, bits, 8);
    }
    case DV_FT_BOOL:
        *p++ = *S_CAT(obj, f->off, bool) ? (char)0xc3 : (char)0xc2;
        return p;
    default:
        return NULL;
    }
}

static int s_enc_value(msgpack_sbuffer *out, const dv_field_t *f,
                       const void *obj);

static int
s_enc_items(msgpack_sbuffer *out, const dv_field_t *f, const void *obj)
{
    uint32_t n = *S_CAT(obj, f->aux, uint32_t);
    const char *base;
    memcpy(&base, S_CAT(obj, f->off, void *), sizeof base);
    char *p = s_room(out, S_HEAD_MAX);
    if (!p)
        return -1;
    out->size = (size_t)(S_ARR_HEAD(p, n) - out->data);
    int rc = 0;
    if (f->flags & DV_FF_SCALAR) {
        for (uint32_t i = 0; i < n; i++)
            rc |= s_enc_value(out, f->ref, base + (size_t)i * sizeof(dv_str_t));
    } else {
        const dv_schema_t *es = f->ref;
        for (uint32_t i = 0; i < n; i++)
            rc |= dv_enc_map(out, es, base + (size_t)i * es->size);
    }
    return rc;
}

/* Writes f's value when it is not a number or a bool (s_put_scalar). */
static int
s_enc_other(msgpack_sbuffer *out, const dv_field_t *f, const void *obj)
{
    const dv_str_t *s;
    char *p;
    switch ((dv_ftype_t)f->type) {
    case DV_FT_STR:
    case DV_FT_ID:
        s = S_CAT(obj, f->off, dv_str_t);
        if (!s->ptr && (f->flags & DV_FF_NIL)) {
            if (!(p = s_room(out, 1)))
                return -1;
            *p = (char)0xc0;
            out->size++;
            return 0;
        }
        return s_put_str(out, s->ptr, s->len);
    case DV_FT_VALUE:
        s = S_CAT(obj, f->off, dv_str_t);
        return s_put_body(out, true, s->ptr, s->len);
    case DV_FT_ENUM: {
        const dv_name_t *n = dv_enum_name(f->ref, *S_CAT(obj, f->off, int));
        return s_put_str(out, n->name, n->len);
    }
    case DV_FT_KIND:
        s = S_CAT(obj, f->off, dv_str_t);
        if (s->ptr)
            return s_put_str(out, s->ptr, s->len);
        {
            const dv_name_t *n = dv_enum_name(f->ref, *S_CAT(obj, f->aux, int));
            return s_put_str(out, n->name, n->len);
        }
    case DV_FT_RAW:
        s = S_CAT(obj, f->off, dv_str_t);
        p = s_room(out, s->len);
        if (!p)
            return -1;
        if (s->len)
            memcpy(p, s->ptr, s->len);
        out->size += s->len;
        return 0;
    case DV_FT_MAP:
        return dv_enc_map(out, f->ref, S_CAT(obj, f->off, void));
    case DV_FT_ARRAY:
        return s_enc_items(out, f, obj);
    default:
        return -1;
    }
}

static int
s_enc_value(msgpack_sbuffer *out, const dv_field_t *f, const void *obj)
{
    char *p = s_room(out, S_SCALAR_MAX);
    if (!p)
        return -1;
    char *end = s_put_scalar(p, f, obj);
    if (!end)
        return s_enc_other(out, f, obj);
    out->size = (size_t)(end - out->data);
    return 0;
}

uint32_t
dv_enc_mask(const dv_schema_t *s, const void *obj, uint32_t *n)
{
    uint32_t mask = 0, count = 0;
    for (uint32_t i = 0; i < s->nfields; i++)
        if (s_present(&s->fields[i], obj)) {
            mask |= 1u << i;
            count++;
        }
    *n = count;
    return mask;
}

int
dv_enc_fields(msgpack_sbuffer *out, const dv_schema_t *s, const void *obj,
              uint32_t mask)
{
    while (mask) {
        const dv_field_t *f = &s->fields[__builtin_ctz(mask)];
        mask &= mask - 1;
        /* The key and, for a number, its value: one room check. */
        char *p = s_room(out, S_HEAD_MAX + f->len + S_SCALAR_MAX);
        if (!p)
            return -1;
        p = S_STR_HEAD(p, f->len);
        memcpy(p, f->name, f->len);
        p += f->len;
        char *end = s_put_scalar(p, f, obj);
        out->size = (size_t)((end ? end : p) - out->data);
        if (!end && s_enc_other(out, f, obj) != 0)
            return -1;
    }
    return 0;
}

int
dv_enc_map(msgpack_sbuffer *out, const dv_schema_t *s, const void *obj)
{
    uint32_t n = 0;
    uint32_t mask = dv_enc_mask(s, obj, &n);
    char *p = s_room(out, S_HEAD_MAX);
    if (!p)
        return -1;
    out->size = (size_t)(S_MAP_HEAD(p, n) - out->data);
    return dv_enc_fields(out, s, obj, mask);
}

/* ---- comparing ------------------------------------------------------------ */

static bool s_equal_fields(dv_dec_t *d, const dv_schema_t *s, const void *a,
                           const void *b);

static bool
s_str_equal(dv_dec_t *d, dv_str_t x, dv_str_t y)
{
    if (!x.ptr || !y.ptr) {
        if (x.ptr == y.ptr)
            return true;
        dv_dec_fail(d, 1, "%s != %s", x.ptr ? "present" : "absent",
                    y.ptr ? "present" : "absent");
        return false;
    }
    if (x.len == y.len && memcmp(x.ptr, y.ptr, x.len) == 0)
        return true;
    char qx[64], qy[64];
    dv_dec_fail(d, 1, "\"%s\" != \"%s\"", s_quote(qx, sizeof qx, x.ptr, x.len),
                s_quote(qy, sizeof qy, y.ptr, y.len));
    return false;
}

static bool
s_int_equal(dv_dec_t *d, int64_t x, int64_t y)
{
    if (x == y)
        return true;
    dv_dec_fail(d, 1, "%" PRId64 " != %" PRId64, x, y);
    return false;
}

static dv_str_t
s_kind_text(const dv_field_t *f, const void *obj)
{
    dv_str_t v = *S_CAT(obj, f->off, dv_str_t);
    int k = *S_CAT(obj, f->aux, int);
    if (!v.ptr && k != 0) {
        const dv_name_t *n = dv_enum_name(f->ref, k);
        v = dv_strn(n->name, n->len);
    }
    return v;
}

static bool
s_equal_value(dv_dec_t *d, const dv_field_t *f, const void *a, const void *b)
{
    switch ((dv_ftype_t)f->type) {
    case DV_FT_U64: {
        uint64_t x = *S_CAT(a, f->off, uint64_t),
                 y = *S_CAT(b, f->off, uint64_t);
        if (x == y)
            return true;
        dv_dec_fail(d, 1, "%" PRIu64 " != %" PRIu64, x, y);
        return false;
    }
    case DV_FT_I64:
        return s_int_equal(d, *S_CAT(a, f->off, int64_t),
                           *S_CAT(b, f->off, int64_t));
    case DV_FT_I32:
        return s_int_equal(d, *S_CAT(a, f->off, int32_t),
                           *S_CAT(b, f->off, int32_t));
    case DV_FT_U32:
        return s_int_equal(d, *S_CAT(a, f->off, uint32_t),
                           *S_CAT(b, f->off, uint32_t));
    case DV_FT_ENUM:
        return s_int_equal(d, *S_CAT(a, f->off, int), *S_CAT(b, f->off, int));
    case DV_FT_BOOL:
        return s_int_equal(d, *S_CAT(a, f->off, bool), *S_CAT(b, f->off, bool));
    case DV_FT_DOUBLE: {
        double x = *S_CAT(a, f->off, double), y = *S_CAT(b, f->off, double);
        if (x == y)
            return true;
        dv_dec_fail(d, 1, "%g != %g", x, y);
        return false;
    }
    case DV_FT_KIND:
        /* The kind as it goes on the wire: the text, else the enum's name. */
        return s_str_equal(d, s_kind_text(f, a), s_kind_text(f, b));
    case DV_FT_STR:
    case DV_FT_ID:
    case DV_FT_VALUE:
    case DV_FT_RAW:
        return s_str_equal(d, *S_CAT(a, f->off, dv_str_t),
                           *S_CAT(b, f->off, dv_str_t));
    case DV_FT_MAP:
        return s_equal_fields(d, f->ref, S_CAT(a, f->off, void),
                              S_CAT(b, f->off, void));
    case DV_FT_ARRAY: {
        uint32_t n = *S_CAT(a, f->aux, uint32_t);
        if (!s_int_equal(d, n, *S_CAT(b, f->aux, uint32_t)))
            return false;
        const char *xa, *xb;
        memcpy(&xa, S_CAT(a, f->off, void *), sizeof xa);
        memcpy(&xb, S_CAT(b, f->off, void *), sizeof xb);
        size_t size = s_item_size(f);
        for (uint32_t i = 0; i < n; i++) {
            s_push_idx(d, i);
            bool ok =
                (f->flags & DV_FF_SCALAR)
                    ? s_equal_value(d, f->ref, xa + i * size, xb + i * size)
                    : s_equal_fields(d, f->ref, xa + i * size, xb + i * size);
            d->depth--;
            if (!ok)
                return false;
        }
        return true;
    }
    }
    return false;
}

static bool
s_equal_fields(dv_dec_t *d, const dv_schema_t *s, const void *a, const void *b)
{
    for (uint32_t i = 0; i < s->nfields; i++) {
        const dv_field_t *f = &s->fields[i];
        s_push_key(d, f->name);
        if (f->flags & DV_FF_HAS) {
            bool ha = *S_CAT(a, f->has, bool), hb = *S_CAT(b, f->has, bool);
            if (ha != hb) {
                dv_dec_fail(d, 1, "%s != %s", ha ? "present" : "absent",
                            hb ? "present" : "absent");
                return false;
            }
            if (!ha) {
                d->depth--;
                continue;
            }
        }
        if (!s_equal_value(d, f, a, b))
            return false;
        d->depth--;
    }
    return true;
}

bool
dv_schema_equal(const dv_schema_t *s, const char *prefix, const void *a,
                const void *b, char *diff, size_t diff_size)
{
    dv_dec_t d;
    dv_dec_init(&d, diff, diff_size);
    d.msg = prefix;
    if (diff && diff_size)
        diff[0] = '\0';
    return s_equal_fields(&d, s, a, b);
}

/* ---- whole bodies --------------------------------------------------------- */

/* Reads the str header at p (size bytes); its body's offset and length. */
static bool
s_raw_str(const uint8_t *p, size_t size, size_t *body, size_t *len)
{
    if (size < 1)
        return false;
    size_t h, n;
    if (p[0] >= 0xa0 && p[0] <= 0xbf) {
        h = 1;
        n = p[0] & 0x1f;
    } else if (p[0] == 0xd9 && size >= 2) {
        h = 2;
        n = p[1];
    } else if (p[0] == 0xda && size >= 3) {
        h = 3;
        n = (size_t)p[1] << 8 | p[2];
    } else if (p[0] == 0xdb && size >= 5) {
        h = 5;
        n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
    } else {
        return false;
    }
    if (n > size - h)
        return false;
    *body = h;
    *len = n;
    return true;
}

/* Points the RAW fields of s in obj at their bytes in the top-level map at
 * data (already validated). */
static void
s_find_raw(const dv_schema_t *s, const uint8_t *data, size_t size, void *obj)
{
    size_t pos, n;
    if (size < 1)
        return;
    if (data[0] >= 0x80 && data[0] <= 0x8f) {
        n = data[0] & 0x0f;
        pos = 1;
    } else if (data[0] == 0xde && size >= 3) {
        n = (size_t)data[1] << 8 | data[2];
        pos = 3;
    } else if (data[0] == 0xdf && size >= 5) {
        n = (size_t)data[1] << 24 | (size_t)data[2] << 16 |
            (size_t)data[3] << 8 | data[4];
        pos = 5;
    } else {
        return;
    }
    for (size_t i = 0; i < n && pos < size; i++) {
        size_t body = 0, len = 0;
        bool is_str = s_raw_str(data + pos, size - pos, &body, &len);
        const char *key = (const char *)data + pos + body;
        size_t kspan = dv_mp_span(data + pos, size - pos, DV_VALUE_DEPTH_MAX);
        if (!kspan)
            return;
        pos += kspan;
        size_t vspan = dv_mp_span(data + pos, size - pos, DV_VALUE_DEPTH_MAX);
        if (!vspan)
            return;
        for (uint32_t k = 0; is_str && k < s->nfields; k++) {
            const dv_field_t *f = &s->fields[k];
            if (f->type == DV_FT_RAW && f->len == len &&
                memcmp(f->name, key, len) == 0)
                *S_AT(obj, f->off, dv_str_t) =
                    dv_strn((const char *)data + pos, vspan);
        }
        pos += vspan;
    }
}

int
dv_body_decode(const dv_schema_t *s, const void *data, size_t size, void *obj,
               void **priv, char *why, size_t why_size)
{
    dv_dec_t d;
    dv_dec_init(&d, why, why_size);
    d.msg = s->name;
    memset(obj, 0, s->size);
    *priv = NULL;
    if (why && why_size)
        why[0] = '\0';
    if (size > DV_PAYLOAD_MAX)
        return dv_dec_fail(&d, DV_ETOOBIG,
                           "body of %zu bytes is over the %u "
                           "byte limit",
                           size, DV_PAYLOAD_MAX);
    int rc = dv_mp_validate(data, size, DV_VALUE_DEPTH_MAX);
    if (rc == DV_ETOOBIG)
        return dv_dec_fail(&d, rc, "nested deeper than %d", DV_VALUE_DEPTH_MAX);
    if (rc != DV_OK)
        return dv_dec_fail(&d, rc, "not exactly one complete msgpack value");

    msgpack_unpacked up;
    size_t off = 0;
    msgpack_unpacked_init(&up);
    msgpack_unpack_return ur = msgpack_unpack_next(&up, data, size, &off);
    if (ur == MSGPACK_UNPACK_SUCCESS && off == size)
        rc = dv_dec_map(&d, s, &up.data, obj);
    else if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = dv_dec_fail(&d, DV_ENOMEM, "out of memory");
    else
        rc = dv_dec_fail(&d, DV_ETRUNC, "not exactly one msgpack value");
    msgpack_unpacked_destroy(&up);
    if (rc != DV_OK) {
        dv_dec_free(d.blocks);
        memset(obj, 0, s->size);
        return rc;
    }
    s_find_raw(s, data, size, obj);
    *priv = d.blocks;
    return DV_OK;
}

int
dv_body_encode(const dv_schema_t *s, const void *obj, msgpack_sbuffer *out)
{
    return dv_enc_map(out, s, obj) ? DV_ENOMEM : DV_OK;
}
