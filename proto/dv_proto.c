/* dv_proto - the wire codec: names, msgpack validation, decode and encode.
 *
 * Decoding runs in three steps. dv_mp_validate() walks the raw bytes first,
 * so msgpack-c never sees a header that claims more elements than the frame
 * can hold (it would allocate for the claim before reading a single element).
 * msgpack_unpack_next() then builds the object tree; its strings and bins
 * point into the caller's frame, so every dv_str_t we hand out is a view into
 * that frame and the tree itself can be dropped before we return. Last, one
 * function per struct copies the known keys out with strict type and range
 * checks. Each message gets at most one allocation (its arrays), kept in
 * priv_ for dv_msg_release().
 *
 * Encoding walks the same structs. Each map is written by a fields function
 * run twice, once to count the keys that are present and once to write them,
 * so the map header is exact and the list of keys lives in one place. */
#include "dv_proto.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The envelope nests at most four deep (message, jobs array, job, backoff);
 * payloads and results are bins and add nothing. Leave room for newer peers
 * adding a level or two, and stay well under msgpack-c's own limit of 32. */
#define S_ENVELOPE_DEPTH 16

/* Largest max_depth dv_mp_validate() honours; deeper asks are clamped. */
#define S_MP_STACK 256

#define S_ID_LEN 36

/* ---- small helpers ----------------------------------------------------- */

void
dv_failure_init(dv_failure_t *f)
{
    memset(f, 0, sizeof *f);
    f->exit_code = -1;
}

/* A name with its length, so lookups compare lengths before bytes. */
typedef struct {
    const char *name;
    uint32_t len;
} s_name_t;

#define S_N(s) { s, sizeof(s) - 1 }

static const s_name_t s_state_names[DV_STATE_COUNT_] = {
    S_N("none"),      S_N("queued"), S_N("scheduled"),
    S_N("running"),   S_N("succeeded"), S_N("failed"),
    S_N("dead"),      S_N("cancelled"), S_N("unknown"),
};

static const s_name_t s_category_names[DV_CAT_COUNT_] = {
    S_N("none"),          S_N("timeout"),
    S_N("rate_limited"),  S_N("auth"),
    S_N("invalid_input"), S_N("upstream"),
    S_N("resource_exhausted"), S_N("crashed"),
    S_N("lost"),          S_N("handler"),
    S_N("unknown_type"),  S_N("cancelled"),
};

static const s_name_t s_msg_names[DV_MSG_COUNT_] = {
    S_N("none"),   S_N("submit"),  S_N("submitted"), S_N("wait"),
    S_N("result"), S_N("ctrl"),    S_N("reply"),     S_N("error"),
    S_N("hello"),  S_N("welcome"), S_N("jobs"),      S_N("update"),
    S_N("heartbeat"), S_N("bye"),  S_N("kill"),      S_N("event"),
    S_N("drain"),
};

#define S_UPD_COUNT_ (DV_UPD_RETURNED + 1)
static const s_name_t s_kind_names[S_UPD_COUNT_] = {
    S_N("none"),      S_N("started"), S_N("progress"),
    S_N("succeeded"), S_N("failed"),  S_N("returned"),
};

/* Index of name in table[1..count-1], or 0 (the "none" slot) if absent. */
static int
s_name_find(const s_name_t *table, int count, const char *name, size_t len)
{
    if (!name)
        return 0;
    for (int i = 1; i < count; i++)
        if (table[i].len == len && memcmp(table[i].name, name, len) == 0)
            return i;
    return 0;
}

static const char *
s_name_of(const s_name_t *table, int count, int i)
{
    return i > 0 && i < count ? table[i].name : table[0].name;
}

const char *
dv_state_name(dv_state_t s)
{
    return s_name_of(s_state_names, DV_STATE_COUNT_, (int)s);
}

dv_state_t
dv_state_parse(const char *name, size_t len)
{
    return (dv_state_t)s_name_find(s_state_names, DV_STATE_COUNT_, name, len);
}

const char *
dv_category_name(dv_category_t c)
{
    return s_name_of(s_category_names, DV_CAT_COUNT_, (int)c);
}

dv_category_t
dv_category_parse(const char *name, size_t len)
{
    return (dv_category_t)s_name_find(s_category_names, DV_CAT_COUNT_, name,
                                      len);
}

const char *
dv_msg_type_name(dv_msg_type_t t)
{
    return s_name_of(s_msg_names, DV_MSG_COUNT_, (int)t);
}

/* ---- dv_mp_validate ---------------------------------------------------- */

static uint64_t
s_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int
dv_mp_validate(const void *data, size_t size, int max_depth)
{
    const uint8_t *p = data;
    /* left[d] counts the values still to read in the container open at
     * depth d; depth 0 is the frame itself, which holds one value. */
    uint64_t left[S_MP_STACK];
    int top = 0;
    size_t pos = 0;

    if (!p)
        return DV_ETRUNC;
    if (max_depth < 0)
        max_depth = 0;
    if (max_depth > S_MP_STACK - 1)
        max_depth = S_MP_STACK - 1;
    left[0] = 1;
    for (;;) {
        while (left[top] == 0) {
            if (top == 0)
                return pos == size ? DV_OK : DV_ETRUNC;
            top--;
        }
        left[top]--;
        if (pos >= size)
            return DV_ETRUNC;
        uint8_t b = p[pos++];
        size_t avail = size - pos;
        unsigned lenbytes = 0; /* width of a length field after b */
        uint64_t body = 0;     /* bytes after the length field */
        int container = 0;     /* 1 array, 2 map */
        uint64_t n = 0;

        if (b <= 0x7f || b >= 0xe0) {
            /* fixint */
        } else if (b <= 0x8f) {
            container = 2;
            n = b & 0x0f;
        } else if (b <= 0x9f) {
            container = 1;
            n = b & 0x0f;
        } else if (b <= 0xbf) {
            body = b & 0x1f;
        } else {
            switch (b) {
            case 0xc0: /* nil */
            case 0xc2: /* false */
            case 0xc3: /* true */
                break;
            case 0xc4: /* bin 8 */
            case 0xd9: /* str 8 */
                lenbytes = 1;
                break;
            case 0xc5: /* bin 16 */
            case 0xda: /* str 16 */
                lenbytes = 2;
                break;
            case 0xc6: /* bin 32 */
            case 0xdb: /* str 32 */
                lenbytes = 4;
                break;
            case 0xc7: /* ext 8: length, type, data */
                lenbytes = 1;
                body = 1;
                break;
            case 0xc8:
                lenbytes = 2;
                body = 1;
                break;
            case 0xc9:
                lenbytes = 4;
                body = 1;
                break;
            case 0xcc: /* uint 8 */
            case 0xd0: /* int 8 */
                body = 1;
                break;
            case 0xcd:
            case 0xd1:
                body = 2;
                break;
            case 0xca: /* float 32 */
            case 0xce:
            case 0xd2:
                body = 4;
                break;
            case 0xcb: /* float 64 */
            case 0xcf:
            case 0xd3:
                body = 8;
                break;
            case 0xd4: /* fixext 1: type, data */
                body = 2;
                break;
            case 0xd5:
                body = 3;
                break;
            case 0xd6:
                body = 5;
                break;
            case 0xd7:
                body = 9;
                break;
            case 0xd8:
                body = 17;
                break;
            case 0xdc: /* array 16 */
                container = 1;
                lenbytes = 2;
                break;
            case 0xdd:
                container = 1;
                lenbytes = 4;
                break;
            case 0xde: /* map 16 */
                container = 2;
                lenbytes = 2;
                break;
            case 0xdf:
                container = 2;
                lenbytes = 4;
                break;
            default: /* 0xc1 is never used */
                return DV_ETRUNC;
            }
        }
        if (lenbytes) {
            if (avail < lenbytes)
                return DV_ETRUNC;
            uint64_t len = s_be(p + pos, lenbytes);
            pos += lenbytes;
            avail -= lenbytes;
            if (container)
                n = len;
            else
                body += len;
        }
        if (!container) {
            if (body > avail)
                return DV_ETRUNC;
            pos += (size_t)body;
            continue;
        }
        if (container == 2)
            n *= 2;
        /* Every element takes at least one byte: a count the frame cannot
         * hold is a lie, refused before anyone allocates for it. */
        if (n > avail)
            return DV_ETRUNC;
        if (top + 1 > max_depth)
            return DV_ETOOBIG;
        left[++top] = n;
    }
}

/* ---- decoding ---------------------------------------------------------- */

/* Where the decoder is, for the reason of a failure:
 * "<msg>: <arr>[<idx>].<sub>.<key>: <text>". */
typedef struct {
    char *why;
    size_t why_size;
    const char *msg; /* message type name, NULL before it is known */
    const char *arr; /* array being walked */
    int64_t idx;     /* index in arr, -1 for none */
    const char *sub; /* nested map (backoff, failure) */
    const char *key; /* key being read */
} s_dec_t;

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

static int
s_fail(s_dec_t *d, int rc, const char *fmt, ...)
{
    if (!d->why || d->why_size == 0)
        return rc;
    char path[256];
    size_t n = 0;
    path[0] = '\0';
    if (d->arr) {
        s_append(path, sizeof path, &n, "%s", d->arr);
        if (d->idx >= 0)
            s_append(path, sizeof path, &n, "[%" PRId64 "]", d->idx);
    }
    if (d->sub)
        s_append(path, sizeof path, &n, "%s%s", n ? "." : "", d->sub);
    if (d->key)
        s_append(path, sizeof path, &n, "%s%s", n ? "." : "", d->key);

    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);

    size_t w = 0;
    d->why[0] = '\0';
    if (d->msg)
        s_append(d->why, d->why_size, &w, "%s: ", d->msg);
    if (n)
        s_append(d->why, d->why_size, &w, "%s: ", path);
    s_append(d->why, d->why_size, &w, "%s", text);
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

static int
s_read_uint(s_dec_t *d, const msgpack_object *o, uint64_t *out)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return s_fail(d, DV_EPROTO, "must be an unsigned integer");
    *out = o->via.u64;
    return DV_OK;
}

static int
s_read_int(s_dec_t *d, const msgpack_object *o, int64_t min, int64_t max,
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
        return s_fail(d, DV_EPROTO, "must be an integer");
    }
    if (v < min || v > max)
        goto range;
    *out = v;
    return DV_OK;
range:
    if (max == INT64_MAX)
        return s_fail(d, DV_EPROTO, "must be >= %" PRId64, min);
    return s_fail(d, DV_EPROTO, "must be %" PRId64 "..%" PRId64, min, max);
}

static int
s_read_i32(s_dec_t *d, const msgpack_object *o, int32_t min, int32_t max,
           int32_t *out)
{
    int64_t v = 0;
    int rc = s_read_int(d, o, min, max, &v);
    if (rc == DV_OK)
        *out = (int32_t)v;
    return rc;
}

static int
s_read_double(s_dec_t *d, const msgpack_object *o, double *out)
{
    double v;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        v = o->via.f64;
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        v = (double)o->via.u64;
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        v = (double)o->via.i64;
        break;
    default:
        return s_fail(d, DV_EPROTO, "must be a number");
    }
    if (!isfinite(v))
        return s_fail(d, DV_EPROTO, "must be a finite number");
    *out = v;
    return DV_OK;
}

static int
s_read_bool(s_dec_t *d, const msgpack_object *o, bool *out)
{
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return s_fail(d, DV_EPROTO, "must be a boolean");
    *out = o->via.boolean;
    return DV_OK;
}

static int
s_read_str(s_dec_t *d, const msgpack_object *o, uint32_t min, uint32_t max,
           dv_str_t *out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return s_fail(d, DV_EPROTO, "must be a string");
    uint32_t n = o->via.str.size;
    if (n > max)
        return s_fail(d, DV_ETOOBIG, "longer than %" PRIu32 " bytes", max);
    if (n < min)
        return s_fail(d, DV_EPROTO, "must not be empty");
    /* An empty string is present, so its view must not look absent. */
    out->ptr = o->via.str.ptr ? o->via.str.ptr : "";
    out->len = n;
    return DV_OK;
}

static int
s_read_name(s_dec_t *d, const msgpack_object *o, dv_str_t *out)
{
    return s_read_str(d, o, 1, DV_NAME_MAX, out);
}

static int
s_read_text(s_dec_t *d, const msgpack_object *o, dv_str_t *out)
{
    return s_read_str(d, o, 0, DV_TEXT_MAX, out);
}

static int
s_read_id(s_dec_t *d, const msgpack_object *o, dv_str_t *out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return s_fail(d, DV_EPROTO, "must be a string");
    if (o->via.str.size != S_ID_LEN)
        return s_fail(d, DV_EPROTO, "must be a %d-character job id, not %"
                      PRIu32 " bytes", S_ID_LEN, o->via.str.size);
    out->ptr = o->via.str.ptr;
    out->len = S_ID_LEN;
    return DV_OK;
}

/* A bin that holds exactly one msgpack value (payload, result, body). */
static int
s_read_value(s_dec_t *d, const msgpack_object *o, dv_str_t *out)
{
    if (o->type != MSGPACK_OBJECT_BIN)
        return s_fail(d, DV_EPROTO, "must be bin holding one msgpack value");
    uint32_t n = o->via.bin.size;
    if (n > DV_PAYLOAD_MAX)
        return s_fail(d, DV_ETOOBIG, "larger than %u bytes", DV_PAYLOAD_MAX);
    int rc = dv_mp_validate(o->via.bin.ptr, n, DV_VALUE_DEPTH_MAX);
    if (rc == DV_ETOOBIG)
        return s_fail(d, DV_ETOOBIG, "nested deeper than %d",
                      DV_VALUE_DEPTH_MAX);
    if (rc != DV_OK)
        return s_fail(d, DV_EPROTO, "bin does not hold exactly one msgpack "
                      "value");
    out->ptr = o->via.bin.ptr;
    out->len = n;
    return DV_OK;
}

static int
s_read_array(s_dec_t *d, const msgpack_object *o, uint32_t max, uint32_t *n)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return s_fail(d, DV_EPROTO, "must be an array");
    if (o->via.array.size > max)
        return s_fail(d, DV_ETOOBIG, "more than %" PRIu32 " items", max);
    *n = o->via.array.size;
    return DV_OK;
}

static int
s_read_state(s_dec_t *d, const msgpack_object *o, dv_state_t *out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return s_fail(d, DV_EPROTO, "must be a string");
    dv_state_t s = dv_state_parse(o->via.str.ptr, o->via.str.size);
    if (s == DV_STATE_NONE) {
        char q[64];
        return s_fail(d, DV_EPROTO, "unknown state \"%s\"",
                      s_quote(q, sizeof q, o->via.str.ptr, o->via.str.size));
    }
    *out = s;
    return DV_OK;
}

static int
s_read_category(s_dec_t *d, const msgpack_object *o, dv_category_t *out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return s_fail(d, DV_EPROTO, "must be a string");
    dv_category_t c = dv_category_parse(o->via.str.ptr, o->via.str.size);
    if (c == DV_CAT_NONE) {
        char q[64];
        return s_fail(d, DV_EPROTO, "unknown category \"%s\"",
                      s_quote(q, sizeof q, o->via.str.ptr, o->via.str.size));
    }
    *out = c;
    return DV_OK;
}

static int
s_read_kind(s_dec_t *d, const msgpack_object *o, dv_update_kind_t *out)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return s_fail(d, DV_EPROTO, "must be a string");
    int k = s_name_find(s_kind_names, S_UPD_COUNT_, o->via.str.ptr,
                        o->via.str.size);
    if (k == 0) {
        char q[64];
        return s_fail(d, DV_EPROTO, "unknown kind \"%s\"",
                      s_quote(q, sizeof q, o->via.str.ptr, o->via.str.size));
    }
    *out = (dv_update_kind_t)k;
    return DV_OK;
}

static int
s_need_map(s_dec_t *d, const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return s_fail(d, DV_EPROTO, "must be a map");
    return DV_OK;
}

/* Looks kv's key up in keys. Returns its index and marks it seen, -1 for a
 * key this side does not know (ignored), or -2 having failed on a key given
 * twice (a peer could otherwise smuggle a second value past a proxy that
 * reads the first). */
static int
s_key(s_dec_t *d, const msgpack_object_kv *kv, const s_name_t *keys,
      int nkeys, uint32_t *seen)
{
    if (kv->key.type != MSGPACK_OBJECT_STR)
        return -1;
    uint32_t len = kv->key.via.str.size;
    const char *p = kv->key.via.str.ptr;
    for (int i = 0; i < nkeys; i++) {
        if (keys[i].len != len || memcmp(keys[i].name, p, len) != 0)
            continue;
        d->key = keys[i].name;
        if (*seen & (1u << i)) {
            s_fail(d, DV_EPROTO, "key given twice");
            return -2;
        }
        *seen |= 1u << i;
        return i;
    }
    return -1;
}

static int
s_require(s_dec_t *d, uint32_t seen, uint32_t need, const s_name_t *keys)
{
    uint32_t miss = need & ~seen;
    d->key = NULL;
    if (!miss)
        return DV_OK;
    return s_fail(d, DV_EPROTO, "missing key \"%s\"",
                  keys[__builtin_ctz(miss)].name);
}

#define S_BIT(i) (1u << (i))

#define S_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int
s_dec_backoff(s_dec_t *d, const msgpack_object *o, dv_backoff_t *b)
{
    enum { K_BASE, K_FACTOR, K_CAP, K_JITTER };
    static const s_name_t keys[] = {
        S_N("base"), S_N("factor"), S_N("cap"), S_N("jitter"),
    };
    int rc = s_need_map(d, o);
    uint32_t seen = 0;
    *b = DV_BACKOFF_DEFAULT;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_BASE:
            rc = s_read_int(d, v, 0, INT64_MAX, &b->base_ms);
            break;
        case K_FACTOR:
            rc = s_read_double(d, v, &b->factor);
            if (rc == DV_OK && b->factor < 1.0)
                rc = s_fail(d, DV_EPROTO, "must be >= 1");
            break;
        case K_CAP:
            rc = s_read_int(d, v, 0, INT64_MAX, &b->cap_ms);
            break;
        case K_JITTER:
            rc = s_read_bool(d, v, &b->jitter);
            break;
        }
    }
    d->key = NULL;
    if (rc == DV_OK && b->cap_ms < b->base_ms) {
        d->key = "cap";
        rc = s_fail(d, DV_EPROTO, "must be >= base (%" PRId64 ")", b->base_ms);
    }
    return rc;
}

static int
s_dec_failure(s_dec_t *d, const msgpack_object *o, dv_failure_t *f)
{
    enum { K_CATEGORY, K_MESSAGE, K_RETRYABLE, K_RETRY_AFTER, K_EXIT_CODE,
           K_SIGNAL, K_HTTP_STATUS, K_KEY_ID };
    static const s_name_t keys[] = {
        S_N("category"),  S_N("message"),     S_N("retryable"),
        S_N("retry_after"), S_N("exit_code"), S_N("signal"),
        S_N("http_status"), S_N("key_id"),
    };
    int rc = s_need_map(d, o);
    uint32_t seen = 0;
    dv_failure_init(f);
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_CATEGORY:
            rc = s_read_category(d, v, &f->category);
            break;
        case K_MESSAGE:
            rc = s_read_text(d, v, &f->message);
            break;
        case K_RETRYABLE:
            rc = s_read_bool(d, v, &f->retryable);
            break;
        case K_RETRY_AFTER:
            rc = s_read_int(d, v, 0, INT64_MAX, &f->retry_after_ms);
            break;
        case K_EXIT_CODE:
            rc = s_read_i32(d, v, INT32_MIN, INT32_MAX, &f->exit_code);
            break;
        case K_SIGNAL:
            rc = s_read_i32(d, v, 0, INT32_MAX, &f->signal);
            break;
        case K_HTTP_STATUS:
            rc = s_read_i32(d, v, 0, 999, &f->http_status);
            break;
        case K_KEY_ID:
            rc = s_read_name(d, v, &f->key_id);
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_CATEGORY), keys);
    d->key = NULL;
    return rc;
}

/* Decodes the nested map at v as sub (e.g. "failure") of the current item,
 * so reasons read "jobs[2].backoff.cap: ...". */
#define S_NESTED(d, name, call)                                             \
    ((d)->key = NULL, (d)->sub = (name), s_nested_done((d), (call)))

static int
s_nested_done(s_dec_t *d, int rc)
{
    d->sub = NULL;
    d->key = NULL;
    return rc;
}

static int
s_dec_jobspec(s_dec_t *d, const msgpack_object *o, dv_jobspec_t *j)
{
    enum { K_QUEUE, K_TYPE, K_PAYLOAD, K_KEY, K_BATCH, K_TRACE, K_PRIORITY,
           K_RUN_AT, K_MAX_ATTEMPTS, K_TIMEOUT, K_BACKOFF, K_RESULT_TTL };
    static const s_name_t keys[] = {
        S_N("queue"),    S_N("type"),   S_N("payload"),      S_N("key"),
        S_N("batch"),    S_N("trace"),  S_N("priority"),     S_N("run_at"),
        S_N("max_attempts"), S_N("timeout"), S_N("backoff"), S_N("result_ttl"),
    };
    int rc = s_need_map(d, o);
    uint32_t seen = 0;
    j->priority = DV_PRIORITY_DEFAULT;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_QUEUE:
            rc = s_read_name(d, v, &j->queue);
            break;
        case K_TYPE:
            rc = s_read_name(d, v, &j->type);
            break;
        case K_PAYLOAD:
            rc = s_read_value(d, v, &j->payload);
            break;
        case K_KEY:
            rc = s_read_str(d, v, 1, DV_KEY_MAX, &j->key);
            break;
        case K_BATCH:
            rc = s_read_name(d, v, &j->batch);
            break;
        case K_TRACE:
            rc = s_read_text(d, v, &j->trace);
            break;
        case K_PRIORITY:
            rc = s_read_i32(d, v, 0, 9, &j->priority);
            break;
        case K_RUN_AT:
            rc = s_read_int(d, v, 0, INT64_MAX, &j->run_at_ms);
            break;
        case K_MAX_ATTEMPTS:
            rc = s_read_i32(d, v, 0, 1000, &j->max_attempts);
            break;
        case K_TIMEOUT:
            rc = s_read_int(d, v, 0, INT64_MAX, &j->timeout_ms);
            break;
        case K_BACKOFF:
            rc = S_NESTED(d, "backoff", s_dec_backoff(d, v, &j->backoff));
            j->has_backoff = true;
            break;
        case K_RESULT_TTL:
            rc = s_read_int(d, v, 0, INT64_MAX, &j->result_ttl_ms);
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_QUEUE) | S_BIT(K_TYPE), keys);
    return rc;
}

static int
s_dec_ack(s_dec_t *d, const msgpack_object *o, dv_submit_ack_t *a)
{
    enum { K_ID, K_DUPLICATE, K_ERROR };
    static const s_name_t keys[] = {
        S_N("id"), S_N("duplicate"), S_N("error"),
    };
    int rc = s_need_map(d, o);
    uint32_t seen = 0;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_ID:
            rc = s_read_id(d, v, &a->id);
            break;
        case K_DUPLICATE:
            rc = s_read_bool(d, v, &a->duplicate);
            break;
        case K_ERROR:
            rc = s_read_text(d, v, &a->error);
            break;
        }
    }
    /* An ack is either an id or an error. */
    if (rc == DV_OK && !(seen & S_BIT(K_ERROR)))
        rc = s_require(d, seen, S_BIT(K_ID), keys);
    d->key = NULL;
    return rc;
}

static int
s_dec_result(s_dec_t *d, const msgpack_object *o, dv_result_t *r)
{
    enum { K_ID, K_STATE, K_ATTEMPTS, K_RESULT, K_FAILURE, K_FINISHED };
    static const s_name_t keys[] = {
        S_N("id"),     S_N("state"),   S_N("attempts"),
        S_N("result"), S_N("failure"), S_N("finished"),
    };
    int rc = s_need_map(d, o);
    uint32_t seen = 0;
    dv_failure_init(&r->failure);
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_ID:
            rc = s_read_id(d, v, &r->id);
            break;
        case K_STATE:
            rc = s_read_state(d, v, &r->state);
            break;
        case K_ATTEMPTS:
            rc = s_read_i32(d, v, 0, INT32_MAX, &r->attempts);
            break;
        case K_RESULT:
            rc = s_read_value(d, v, &r->result);
            break;
        case K_FAILURE:
            rc = S_NESTED(d, "failure", s_dec_failure(d, v, &r->failure));
            r->has_failure = true;
            break;
        case K_FINISHED:
            rc = s_read_int(d, v, 0, INT64_MAX, &r->finished_ms);
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_ID) | S_BIT(K_STATE), keys);
    return rc;
}

static int
s_dec_job(s_dec_t *d, const msgpack_object *o, dv_job_t *j)
{
    enum { K_ID, K_QUEUE, K_TYPE, K_PAYLOAD, K_TRACE, K_BATCH, K_ATTEMPT,
           K_MAX_ATTEMPTS, K_TIMEOUT, K_ENQUEUED };
    static const s_name_t keys[] = {
        S_N("id"),      S_N("queue"),   S_N("type"),
        S_N("payload"), S_N("trace"),   S_N("batch"),
        S_N("attempt"), S_N("max_attempts"), S_N("timeout"),
        S_N("enqueued"),
    };
    int rc = s_need_map(d, o);
    uint32_t seen = 0;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_ID:
            rc = s_read_id(d, v, &j->id);
            break;
        case K_QUEUE:
            rc = s_read_name(d, v, &j->queue);
            break;
        case K_TYPE:
            rc = s_read_name(d, v, &j->type);
            break;
        case K_PAYLOAD:
            rc = s_read_value(d, v, &j->payload);
            break;
        case K_TRACE:
            rc = s_read_text(d, v, &j->trace);
            break;
        case K_BATCH:
            rc = s_read_name(d, v, &j->batch);
            break;
        case K_ATTEMPT:
            rc = s_read_i32(d, v, 1, INT32_MAX, &j->attempt);
            break;
        case K_MAX_ATTEMPTS:
            rc = s_read_i32(d, v, 0, 1000, &j->max_attempts);
            break;
        case K_TIMEOUT:
            rc = s_read_int(d, v, 0, INT64_MAX, &j->timeout_ms);
            break;
        case K_ENQUEUED:
            rc = s_read_int(d, v, 0, INT64_MAX, &j->enqueued_ms);
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_ID) | S_BIT(K_QUEUE) | S_BIT(K_TYPE) |
                       S_BIT(K_ATTEMPT), keys);
    return rc;
}

static int
s_dec_update(s_dec_t *d, const msgpack_object *o, dv_update_t *u)
{
    enum { K_KIND, K_ID, K_ATTEMPT, K_TS, K_CURRENT, K_TOTAL, K_MESSAGE,
           K_RESULT, K_FAILURE };
    static const s_name_t keys[] = {
        S_N("kind"),    S_N("id"),    S_N("attempt"),
        S_N("ts"),      S_N("current"), S_N("total"),
        S_N("message"), S_N("result"), S_N("failure"),
    };
    int rc = s_need_map(d, o);
    uint32_t seen = 0;
    dv_failure_init(&u->failure);
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_KIND:
            rc = s_read_kind(d, v, &u->kind);
            break;
        case K_ID:
            rc = s_read_id(d, v, &u->id);
            break;
        case K_ATTEMPT:
            rc = s_read_i32(d, v, 1, INT32_MAX, &u->attempt);
            break;
        case K_TS:
            rc = s_read_int(d, v, 0, INT64_MAX, &u->ts_ms);
            break;
        case K_CURRENT:
            rc = s_read_int(d, v, 0, INT64_MAX, &u->current);
            break;
        case K_TOTAL:
            rc = s_read_int(d, v, 0, INT64_MAX, &u->total);
            break;
        case K_MESSAGE:
            rc = s_read_text(d, v, &u->message);
            break;
        case K_RESULT:
            rc = s_read_value(d, v, &u->result);
            break;
        case K_FAILURE:
            rc = S_NESTED(d, "failure", s_dec_failure(d, v, &u->failure));
            break;
        }
    }
    uint32_t need = S_BIT(K_KIND) | S_BIT(K_ID) | S_BIT(K_ATTEMPT);
    /* A failed attempt without its failure could not be retried right. */
    if (u->kind == DV_UPD_FAILED)
        need |= S_BIT(K_FAILURE);
    if (rc == DV_OK)
        rc = s_require(d, seen, need, keys);
    return rc;
}

static int
s_dec_held(s_dec_t *d, const msgpack_object *o, dv_held_t *h)
{
    enum { K_ID, K_ATTEMPT };
    static const s_name_t keys[] = { S_N("id"), S_N("attempt") };
    int rc = s_need_map(d, o);
    uint32_t seen = 0;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_ID:
            rc = s_read_id(d, v, &h->id);
            break;
        case K_ATTEMPT:
            rc = s_read_i32(d, v, 1, INT32_MAX, &h->attempt);
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_ID) | S_BIT(K_ATTEMPT), keys);
    return rc;
}

/* Allocates the message's one block of arrays (zeroed), owned by priv_. */
static void *
s_alloc(s_dec_t *d, dv_msg_t *m, size_t bytes)
{
    if (bytes == 0)
        return NULL;
    m->priv_ = calloc(1, bytes);
    if (!m->priv_)
        s_fail(d, DV_ENOMEM, "out of memory");
    return m->priv_;
}

/* Decodes array a of maps, element i into base + i * size, with fn. */
typedef int(s_elem_fn)(s_dec_t *d, const msgpack_object *o, void *out);

static int
s_dec_each(s_dec_t *d, const char *name, const msgpack_object *a, void *base,
           size_t size, s_elem_fn *fn)
{
    int rc = DV_OK;
    d->key = NULL;
    d->arr = name;
    for (uint32_t i = 0; rc == DV_OK && i < a->via.array.size; i++) {
        d->idx = i;
        rc = fn(d, &a->via.array.ptr[i], (char *)base + i * size);
    }
    if (rc == DV_OK) {
        d->arr = NULL;
        d->idx = -1;
    }
    return rc;
}

/* Adapters so the element decoders keep their typed signatures. */
#define S_ELEM_FN(name, type)                                               \
    static int name##_any(s_dec_t *d, const msgpack_object *o, void *out)   \
    {                                                                       \
        return name(d, o, (type *)out);                                     \
    }
S_ELEM_FN(s_dec_jobspec, dv_jobspec_t)
S_ELEM_FN(s_dec_ack, dv_submit_ack_t)
S_ELEM_FN(s_dec_result, dv_result_t)
S_ELEM_FN(s_dec_job, dv_job_t)
S_ELEM_FN(s_dec_update, dv_update_t)
S_ELEM_FN(s_dec_held, dv_held_t)
S_ELEM_FN(s_read_id, dv_str_t)
S_ELEM_FN(s_read_name, dv_str_t)

/* Reads a required array of maps (or ids) under key name: checks its length
 * against max, allocates n elements of size and decodes each with fn. */
static int
s_dec_array(s_dec_t *d, dv_msg_t *m, const char *name,
            const msgpack_object *a, uint32_t max, size_t size,
            s_elem_fn *fn, void **out, uint32_t *n)
{
    d->key = name;
    int rc = s_read_array(d, a, max, n);
    if (rc != DV_OK)
        return rc;
    if (*n == 0)
        return DV_OK;
    *out = s_alloc(d, m, (size_t)*n * size);
    if (!*out)
        return DV_ENOMEM;
    return s_dec_each(d, name, a, *out, size, fn);
}

static int
s_dec_submit(s_dec_t *d, const msgpack_object *o, dv_msg_t *m)
{
    enum { K_REQ, K_JOBS };
    static const s_name_t keys[] = { S_N("req"), S_N("jobs") };
    const msgpack_object *jobs = NULL;
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        int k = s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen);
        if (k == -2)
            rc = DV_EPROTO;
        else if (k == K_REQ)
            rc = s_read_uint(d, v, &m->u.submit.req);
        else if (k == K_JOBS)
            jobs = v;
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_REQ) | S_BIT(K_JOBS), keys);
    if (rc == DV_OK)
        rc = s_dec_array(d, m, "jobs", jobs, DV_ITEMS_MAX,
                         sizeof(dv_jobspec_t), s_dec_jobspec_any,
                         (void **)&m->u.submit.jobs, &m->u.submit.njobs);
    return rc;
}

static int
s_dec_submitted(s_dec_t *d, const msgpack_object *o, dv_msg_t *m)
{
    enum { K_REQ, K_ACKS };
    static const s_name_t keys[] = { S_N("req"), S_N("acks") };
    const msgpack_object *acks = NULL;
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        int k = s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen);
        if (k == -2)
            rc = DV_EPROTO;
        else if (k == K_REQ)
            rc = s_read_uint(d, v, &m->u.submit_reply.req);
        else if (k == K_ACKS)
            acks = v;
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_REQ) | S_BIT(K_ACKS), keys);
    if (rc == DV_OK)
        rc = s_dec_array(d, m, "acks", acks, DV_ITEMS_MAX,
                         sizeof(dv_submit_ack_t), s_dec_ack_any,
                         (void **)&m->u.submit_reply.acks,
                         &m->u.submit_reply.nacks);
    return rc;
}

static int
s_dec_wait(s_dec_t *d, const msgpack_object *o, dv_msg_t *m)
{
    enum { K_REQ, K_IDS };
    static const s_name_t keys[] = { S_N("req"), S_N("ids") };
    const msgpack_object *ids = NULL;
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        int k = s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen);
        if (k == -2)
            rc = DV_EPROTO;
        else if (k == K_REQ)
            rc = s_read_uint(d, v, &m->u.wait.req);
        else if (k == K_IDS)
            ids = v;
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_REQ) | S_BIT(K_IDS), keys);
    if (rc == DV_OK)
        rc = s_dec_array(d, m, "ids", ids, DV_ITEMS_MAX, sizeof(dv_str_t),
                         s_read_id_any, (void **)&m->u.wait.ids,
                         &m->u.wait.nids);
    return rc;
}

static int
s_dec_results(s_dec_t *d, const msgpack_object *o, dv_msg_t *m)
{
    enum { K_RESULTS };
    static const s_name_t keys[] = { S_N("results") };
    const msgpack_object *results = NULL;
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        int k = s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen);
        if (k == -2)
            rc = DV_EPROTO;
        else if (k == K_RESULTS)
            results = v;
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_RESULTS), keys);
    if (rc == DV_OK)
        rc = s_dec_array(d, m, "results", results, DV_ITEMS_MAX,
                         sizeof(dv_result_t), s_dec_result_any,
                         (void **)&m->u.result.results,
                         &m->u.result.nresults);
    return rc;
}

static int
s_dec_ctrl(s_dec_t *d, const msgpack_object *o, dv_ctrl_t *c)
{
    enum { K_REQ, K_VERB, K_ID, K_QUEUE, K_WORKER, K_DEAD, K_VALUE, K_ARGS };
    static const s_name_t keys[] = {
        S_N("req"),    S_N("verb"), S_N("id"),    S_N("queue"),
        S_N("worker"), S_N("dead"), S_N("value"), S_N("args"),
    };
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_REQ:
            rc = s_read_uint(d, v, &c->req);
            break;
        case K_VERB:
            rc = s_read_name(d, v, &c->verb);
            break;
        case K_ID:
            rc = s_read_id(d, v, &c->id);
            break;
        case K_QUEUE:
            rc = s_read_name(d, v, &c->queue);
            break;
        case K_WORKER:
            rc = s_read_name(d, v, &c->worker);
            break;
        case K_DEAD:
            rc = s_read_bool(d, v, &c->dead);
            break;
        case K_VALUE:
            rc = s_read_double(d, v, &c->value);
            c->has_value = true;
            break;
        case K_ARGS:
            rc = s_read_value(d, v, &c->args);
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_REQ) | S_BIT(K_VERB), keys);
    return rc;
}

static int
s_dec_reply(s_dec_t *d, const msgpack_object *o, dv_reply_t *r)
{
    enum { K_REQ, K_OK, K_ERROR, K_BODY };
    static const s_name_t keys[] = {
        S_N("req"), S_N("ok"), S_N("error"), S_N("body"),
    };
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_REQ:
            rc = s_read_uint(d, v, &r->req);
            break;
        case K_OK:
            rc = s_read_bool(d, v, &r->ok);
            break;
        case K_ERROR:
            rc = s_read_text(d, v, &r->error);
            break;
        case K_BODY:
            rc = s_read_value(d, v, &r->body);
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_REQ) | S_BIT(K_OK), keys);
    return rc;
}

static int
s_dec_error(s_dec_t *d, const msgpack_object *o, dv_error_t *e)
{
    enum { K_REQ, K_REASON, K_VERSION };
    static const s_name_t keys[] = {
        S_N("req"), S_N("reason"), S_N("version"),
    };
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        int64_t ver = 0;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_REQ:
            rc = s_read_uint(d, v, &e->req);
            break;
        case K_REASON:
            rc = s_read_text(d, v, &e->reason);
            break;
        case K_VERSION:
            rc = s_read_int(d, v, 0, UINT32_MAX, &ver);
            if (rc == DV_OK)
                e->version = (uint32_t)ver;
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_REASON), keys);
    return rc;
}

static int
s_dec_hello(s_dec_t *d, const msgpack_object *o, dv_msg_t *m)
{
    enum { K_NAME, K_HOST, K_PID, K_QUEUES, K_CONCURRENCY, K_CREDIT,
           K_HELD };
    static const s_name_t keys[] = {
        S_N("name"),   S_N("host"),   S_N("pid"),  S_N("queues"),
        S_N("concurrency"), S_N("credit"), S_N("held"),
    };
    dv_hello_t *h = &m->u.hello;
    const msgpack_object *queues = NULL, *held = NULL;
    uint32_t seen = 0, nq = 0, nh = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_NAME:
            rc = s_read_name(d, v, &h->name);
            break;
        case K_HOST:
            rc = s_read_name(d, v, &h->host);
            break;
        case K_PID:
            rc = s_read_i32(d, v, 0, INT32_MAX, &h->pid);
            break;
        case K_QUEUES:
            rc = s_read_array(d, v, DV_QUEUES_MAX, &nq);
            if (rc == DV_OK && nq == 0)
                rc = s_fail(d, DV_EPROTO, "must name at least one queue");
            queues = v;
            break;
        case K_CONCURRENCY:
            rc = s_read_i32(d, v, 1, INT32_MAX, &h->concurrency);
            break;
        case K_CREDIT:
            rc = s_read_i32(d, v, 0, INT32_MAX, &h->credit);
            break;
        case K_HELD:
            rc = s_read_array(d, v, DV_ITEMS_MAX, &nh);
            held = v;
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_NAME) | S_BIT(K_QUEUES) |
                       S_BIT(K_CONCURRENCY) | S_BIT(K_CREDIT), keys);
    if (rc != DV_OK)
        return rc;
    /* One block for both arrays: queues first (dv_str_t), then held. */
    size_t qbytes = (size_t)nq * sizeof(dv_str_t);
    char *block = s_alloc(d, m, qbytes + (size_t)nh * sizeof(dv_held_t));
    if (!block)
        return DV_ENOMEM;
    h->queues = (dv_str_t *)block;
    h->nqueues = nq;
    rc = s_dec_each(d, "queues", queues, h->queues, sizeof(dv_str_t),
                    s_read_name_any);
    if (rc == DV_OK && nh) {
        h->held = (dv_held_t *)(block + qbytes);
        h->nheld = nh;
        rc = s_dec_each(d, "held", held, h->held, sizeof(dv_held_t),
                        s_dec_held_any);
    }
    return rc;
}

static int
s_dec_welcome(s_dec_t *d, const msgpack_object *o, dv_welcome_t *w)
{
    enum { K_BROKER, K_HEARTBEAT, K_WORKER_TIMEOUT };
    static const s_name_t keys[] = {
        S_N("broker"), S_N("heartbeat"), S_N("worker_timeout"),
    };
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_BROKER:
            rc = s_read_name(d, v, &w->broker);
            break;
        case K_HEARTBEAT:
            rc = s_read_int(d, v, 1, INT64_MAX, &w->heartbeat_ms);
            break;
        case K_WORKER_TIMEOUT:
            rc = s_read_int(d, v, 1, INT64_MAX, &w->worker_timeout_ms);
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_BROKER) | S_BIT(K_HEARTBEAT) |
                       S_BIT(K_WORKER_TIMEOUT), keys);
    return rc;
}

static int
s_dec_jobs(s_dec_t *d, const msgpack_object *o, dv_msg_t *m)
{
    enum { K_JOBS };
    static const s_name_t keys[] = { S_N("jobs") };
    const msgpack_object *jobs = NULL;
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        int k = s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen);
        if (k == -2)
            rc = DV_EPROTO;
        else if (k == K_JOBS)
            jobs = v;
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_JOBS), keys);
    if (rc == DV_OK)
        rc = s_dec_array(d, m, "jobs", jobs, DV_ITEMS_MAX, sizeof(dv_job_t),
                         s_dec_job_any, (void **)&m->u.jobs.jobs,
                         &m->u.jobs.njobs);
    return rc;
}

static int
s_dec_updates(s_dec_t *d, const msgpack_object *o, dv_msg_t *m)
{
    enum { K_CREDIT, K_ITEMS };
    static const s_name_t keys[] = { S_N("credit"), S_N("items") };
    const msgpack_object *items = NULL;
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        int k = s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen);
        if (k == -2)
            rc = DV_EPROTO;
        else if (k == K_CREDIT)
            rc = s_read_i32(d, v, 0, INT32_MAX, &m->u.update.credit);
        else if (k == K_ITEMS)
            items = v;
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_ITEMS), keys);
    if (rc == DV_OK)
        rc = s_dec_array(d, m, "items", items, DV_ITEMS_MAX,
                         sizeof(dv_update_t), s_dec_update_any,
                         (void **)&m->u.update.items, &m->u.update.nitems);
    return rc;
}

static int
s_dec_heartbeat(s_dec_t *d, const msgpack_object *o, dv_heartbeat_t *h)
{
    enum { K_BUSY, K_IDLE, K_PROCESSED, K_FAILED, K_BODY };
    static const s_name_t keys[] = {
        S_N("busy"), S_N("idle"), S_N("processed"), S_N("failed"),
        S_N("body"),
    };
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_BUSY:
            rc = s_read_i32(d, v, 0, INT32_MAX, &h->busy);
            break;
        case K_IDLE:
            rc = s_read_i32(d, v, 0, INT32_MAX, &h->idle);
            break;
        case K_PROCESSED:
            rc = s_read_int(d, v, 0, INT64_MAX, &h->processed);
            break;
        case K_FAILED:
            rc = s_read_int(d, v, 0, INT64_MAX, &h->failed);
            break;
        case K_BODY:
            rc = s_read_value(d, v, &h->body);
            break;
        }
    }
    d->key = NULL;
    return rc;
}

static int
s_dec_kill(s_dec_t *d, const msgpack_object *o, dv_kill_t *kl)
{
    enum { K_ID, K_REASON };
    static const s_name_t keys[] = { S_N("id"), S_N("reason") };
    uint32_t seen = 0;
    int rc = DV_OK;
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        int k = s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen);
        if (k == -2)
            rc = DV_EPROTO;
        else if (k == K_ID)
            rc = s_read_id(d, v, &kl->id);
        else if (k == K_REASON)
            rc = s_read_text(d, v, &kl->reason);
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_ID), keys);
    return rc;
}

static int
s_dec_event(s_dec_t *d, const msgpack_object *o, dv_event_t *e)
{
    enum { K_SEQ, K_BROKER, K_TS, K_KIND, K_ID, K_QUEUE, K_TYPE, K_BATCH,
           K_WORKER, K_ATTEMPT, K_STATE, K_RUN_AT, K_WAIT, K_RUN, K_CURRENT,
           K_TOTAL, K_MESSAGE, K_FAILURE, K_BODY };
    static const s_name_t keys[] = {
        S_N("seq"),     S_N("broker"), S_N("ts"),      S_N("kind"),
        S_N("id"),      S_N("queue"),  S_N("type"),    S_N("batch"),
        S_N("worker"),  S_N("attempt"), S_N("state"),  S_N("run_at"),
        S_N("wait"),    S_N("run"),    S_N("current"), S_N("total"),
        S_N("message"), S_N("failure"), S_N("body"),
    };
    uint32_t seen = 0;
    int rc = DV_OK;
    dv_failure_init(&e->failure);
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object *v = &o->via.map.ptr[i].val;
        switch (s_key(d, &o->via.map.ptr[i], keys, S_COUNT(keys), &seen)) {
        case -2:
            rc = DV_EPROTO;
            break;
        case K_SEQ:
            rc = s_read_uint(d, v, &e->seq);
            if (rc == DV_OK && e->seq == 0)
                rc = s_fail(d, DV_EPROTO, "must be >= 1");
            break;
        case K_BROKER:
            rc = s_read_name(d, v, &e->broker);
            break;
        case K_TS:
            rc = s_read_int(d, v, 0, INT64_MAX, &e->ts_ms);
            break;
        case K_KIND:
            rc = s_read_name(d, v, &e->kind);
            break;
        case K_ID:
            rc = s_read_id(d, v, &e->id);
            break;
        case K_QUEUE:
            rc = s_read_name(d, v, &e->queue);
            break;
        case K_TYPE:
            rc = s_read_name(d, v, &e->type);
            break;
        case K_BATCH:
            rc = s_read_name(d, v, &e->batch);
            break;
        case K_WORKER:
            rc = s_read_name(d, v, &e->worker);
            break;
        case K_ATTEMPT:
            rc = s_read_i32(d, v, 0, INT32_MAX, &e->attempt);
            break;
        case K_STATE:
            rc = s_read_state(d, v, &e->state);
            break;
        case K_RUN_AT:
            rc = s_read_int(d, v, 0, INT64_MAX, &e->run_at_ms);
            break;
        case K_WAIT:
            rc = s_read_int(d, v, 0, INT64_MAX, &e->wait_ms);
            break;
        case K_RUN:
            rc = s_read_int(d, v, 0, INT64_MAX, &e->run_ms);
            break;
        case K_CURRENT:
            rc = s_read_int(d, v, 0, INT64_MAX, &e->current);
            break;
        case K_TOTAL:
            rc = s_read_int(d, v, 0, INT64_MAX, &e->total);
            break;
        case K_MESSAGE:
            rc = s_read_text(d, v, &e->message);
            break;
        case K_FAILURE:
            rc = S_NESTED(d, "failure", s_dec_failure(d, v, &e->failure));
            e->has_failure = true;
            break;
        case K_BODY:
            rc = s_read_value(d, v, &e->body);
            break;
        }
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_SEQ) | S_BIT(K_BROKER) | S_BIT(K_KIND),
                       keys);
    return rc;
}

static int
s_dec_body(s_dec_t *d, const msgpack_object *o, dv_msg_t *m)
{
    switch (m->type) {
    case DV_MSG_SUBMIT:
        return s_dec_submit(d, o, m);
    case DV_MSG_SUBMIT_REPLY:
        return s_dec_submitted(d, o, m);
    case DV_MSG_WAIT:
        return s_dec_wait(d, o, m);
    case DV_MSG_RESULT:
        return s_dec_results(d, o, m);
    case DV_MSG_CTRL:
        return s_dec_ctrl(d, o, &m->u.ctrl);
    case DV_MSG_REPLY:
        return s_dec_reply(d, o, &m->u.reply);
    case DV_MSG_ERROR:
        return s_dec_error(d, o, &m->u.error);
    case DV_MSG_HELLO:
        return s_dec_hello(d, o, m);
    case DV_MSG_WELCOME:
        return s_dec_welcome(d, o, &m->u.welcome);
    case DV_MSG_JOBS:
        return s_dec_jobs(d, o, m);
    case DV_MSG_UPDATE:
        return s_dec_updates(d, o, m);
    case DV_MSG_HEARTBEAT:
        return s_dec_heartbeat(d, o, &m->u.heartbeat);
    case DV_MSG_BYE:
    case DV_MSG_DRAIN:
        return DV_OK;
    case DV_MSG_KILL:
        return s_dec_kill(d, o, &m->u.kill);
    case DV_MSG_EVENT:
        return s_dec_event(d, o, &m->u.event);
    default:
        return s_fail(d, DV_EPROTO, "no decoder for this type");
    }
}

/* Reads "v", "t" and (for error replies) "req" from the top-level map, then
 * the type's own keys. *req gets the request number when it could be read. */
static int
s_dec_message(s_dec_t *d, const msgpack_object *o, dv_msg_t *m, uint64_t *req)
{
    enum { K_V, K_T };
    static const s_name_t keys[] = { S_N("v"), S_N("t") };
    const msgpack_object *t = NULL;
    uint64_t v = 0;
    uint32_t seen = 0;
    int rc = DV_OK;

    if (o->type != MSGPACK_OBJECT_MAP)
        return s_fail(d, DV_EPROTO, "message must be a msgpack map");
    for (uint32_t i = 0; rc == DV_OK && i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        int k = s_key(d, kv, keys, S_COUNT(keys), &seen);
        if (k == -2)
            rc = DV_EPROTO;
        else if (k == K_V)
            rc = s_read_uint(d, &kv->val, &v);
        else if (k == K_T)
            t = &kv->val;
        else if (kv->key.type == MSGPACK_OBJECT_STR &&
                 kv->key.via.str.size == 3 &&
                 memcmp(kv->key.via.str.ptr, "req", 3) == 0 &&
                 kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            *req = kv->val.via.u64;
    }
    if (rc == DV_OK)
        rc = s_require(d, seen, S_BIT(K_V), keys);
    if (rc != DV_OK)
        return rc;
    m->version = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
    /* Version first: a newer peer may use types this side has never heard
     * of, and deserves to hear about the version, not the type. */
    if (v > DV_PROTO_VERSION)
        return s_fail(d, DV_EVERSION, "protocol version %" PRIu64 " is not "
                      "supported (this side speaks %d)", v, DV_PROTO_VERSION);
    if (v == 0) {
        d->key = "v";
        return s_fail(d, DV_EPROTO, "must be >= 1");
    }
    rc = s_require(d, seen, S_BIT(K_T), keys);
    if (rc != DV_OK)
        return rc;
    if (t->type != MSGPACK_OBJECT_STR) {
        d->key = "t";
        return s_fail(d, DV_EPROTO, "must be a string");
    }
    int type = s_name_find(s_msg_names, DV_MSG_COUNT_, t->via.str.ptr,
                           t->via.str.size);
    if (type == DV_MSG_NONE) {
        char q[64];
        return s_fail(d, DV_EPROTO, "unknown message type \"%s\"",
                      s_quote(q, sizeof q, t->via.str.ptr, t->via.str.size));
    }
    m->type = (dv_msg_type_t)type;
    d->msg = s_msg_names[type].name;
    d->key = NULL;
    return s_dec_body(d, o, m);
}

int
dv_msg_decode(const void *data, size_t size, dv_msg_t *msg, char *why,
              size_t why_size)
{
    s_dec_t d = { why, why_size, NULL, NULL, -1, NULL, NULL };
    uint64_t req = 0;
    int rc;

    memset(msg, 0, sizeof *msg);
    if (why && why_size)
        why[0] = '\0';
    if (size > DV_MSG_MAX)
        return s_fail(&d, DV_ETOOBIG, "frame of %zu bytes is over the %u byte "
                      "limit", size, DV_MSG_MAX);
    rc = dv_mp_validate(data, size, S_ENVELOPE_DEPTH);
    if (rc == DV_ETOOBIG)
        return s_fail(&d, rc, "frame nests deeper than %d", S_ENVELOPE_DEPTH);
    if (rc != DV_OK)
        return s_fail(&d, rc, "frame is not exactly one complete msgpack "
                      "value");

    msgpack_unpacked up;
    size_t off = 0;
    msgpack_unpacked_init(&up);
    msgpack_unpack_return ur = msgpack_unpack_next(&up, data, size, &off);
    if (ur == MSGPACK_UNPACK_SUCCESS && off == size)
        rc = s_dec_message(&d, &up.data, msg, &req);
    else if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = s_fail(&d, DV_ENOMEM, "out of memory");
    else
        rc = s_fail(&d, DV_ETRUNC, "frame is not exactly one msgpack value");
    /* Views point into data, not into the unpacked tree: drop it now. */
    msgpack_unpacked_destroy(&up);

    if (rc != DV_OK) {
        /* Keep what an error reply needs (type, version, req), nothing that
         * points at memory we are about to free. */
        dv_msg_type_t type = msg->type;
        uint32_t version = msg->version;
        free(msg->priv_);
        memset(msg, 0, sizeof *msg);
        msg->type = type;
        msg->version = version;
        switch (type) {
        case DV_MSG_SUBMIT:
            msg->u.submit.req = req;
            break;
        case DV_MSG_SUBMIT_REPLY:
            msg->u.submit_reply.req = req;
            break;
        case DV_MSG_WAIT:
            msg->u.wait.req = req;
            break;
        case DV_MSG_CTRL:
            msg->u.ctrl.req = req;
            break;
        case DV_MSG_REPLY:
            msg->u.reply.req = req;
            break;
        case DV_MSG_ERROR:
            msg->u.error.req = req;
            break;
        default:
            break;
        }
    }
    return rc;
}

void
dv_msg_release(dv_msg_t *msg)
{
    if (!msg)
        return;
    free(msg->priv_);
    memset(msg, 0, sizeof *msg);
}

/* ---- encoding ---------------------------------------------------------- */

typedef struct {
    msgpack_packer *pk; /* NULL while counting keys */
    uint32_t n;         /* keys counted or written */
    int rc;             /* non-zero once a write failed */
} s_enc_t;

typedef void(s_fields_fn)(s_enc_t *e, const void *obj);

/* Counts the key; when writing, writes it and returns true so the caller
 * writes the value. */
static bool
s_put_key(s_enc_t *e, const char *key, size_t len)
{
    e->n++;
    if (!e->pk)
        return false;
    e->rc |= msgpack_pack_str_with_body(e->pk, key, len);
    return true;
}

#define S_KEY(e, k) s_put_key((e), (k), sizeof(k) - 1)

static int
s_pack_map(msgpack_packer *pk, s_fields_fn *fields, const void *obj)
{
    s_enc_t count = { NULL, 0, 0 };
    fields(&count, obj);
    s_enc_t e = { pk, 0, msgpack_pack_map(pk, count.n) };
    fields(&e, obj);
    assert(e.n == count.n);
    return e.rc;
}

static void
s_put_str(s_enc_t *e, const char *k, size_t kl, dv_str_t v)
{
    if (v.ptr && s_put_key(e, k, kl))
        e->rc |= msgpack_pack_str_with_body(e->pk, v.ptr, v.len);
}

static void
s_put_bin(s_enc_t *e, const char *k, size_t kl, dv_str_t v)
{
    if (v.ptr && s_put_key(e, k, kl))
        e->rc |= msgpack_pack_bin_with_body(e->pk, v.ptr, v.len);
}

static void
s_put_int(s_enc_t *e, const char *k, size_t kl, int64_t v)
{
    if (s_put_key(e, k, kl))
        e->rc |= msgpack_pack_int64(e->pk, v);
}

static void
s_put_uint(s_enc_t *e, const char *k, size_t kl, uint64_t v)
{
    if (s_put_key(e, k, kl))
        e->rc |= msgpack_pack_uint64(e->pk, v);
}

static void
s_put_bool(s_enc_t *e, const char *k, size_t kl, bool v)
{
    if (s_put_key(e, k, kl))
        e->rc |= v ? msgpack_pack_true(e->pk) : msgpack_pack_false(e->pk);
}

static void
s_put_double(s_enc_t *e, const char *k, size_t kl, double v)
{
    if (s_put_key(e, k, kl))
        e->rc |= msgpack_pack_double(e->pk, v);
}

static void
s_put_name(s_enc_t *e, const char *k, size_t kl, const char *name)
{
    if (s_put_key(e, k, kl))
        e->rc |= msgpack_pack_str_with_body(e->pk, name, strlen(name));
}

static void
s_put_map(s_enc_t *e, const char *k, size_t kl, s_fields_fn *fn,
          const void *obj)
{
    if (s_put_key(e, k, kl))
        e->rc |= s_pack_map(e->pk, fn, obj);
}

/* Writes an array of n maps, element i at base + i * size. */
static void
s_put_array(s_enc_t *e, const char *k, size_t kl, s_fields_fn *fn,
            const void *base, size_t size, uint32_t n)
{
    if (!s_put_key(e, k, kl))
        return;
    e->rc |= msgpack_pack_array(e->pk, n);
    for (uint32_t i = 0; i < n; i++)
        e->rc |= s_pack_map(e->pk, fn, (const char *)base + i * size);
}

static void
s_put_strs(s_enc_t *e, const char *k, size_t kl, const dv_str_t *v,
           uint32_t n)
{
    if (!s_put_key(e, k, kl))
        return;
    e->rc |= msgpack_pack_array(e->pk, n);
    for (uint32_t i = 0; i < n; i++)
        e->rc |= msgpack_pack_str_with_body(e->pk, v[i].ptr ? v[i].ptr : "",
                                            v[i].len);
}

#define S_STR(e, k, v) s_put_str((e), k, sizeof(k) - 1, (v))
#define S_BIN(e, k, v) s_put_bin((e), k, sizeof(k) - 1, (v))
#define S_INT(e, k, v) s_put_int((e), k, sizeof(k) - 1, (v))
#define S_UINT(e, k, v) s_put_uint((e), k, sizeof(k) - 1, (v))
#define S_BOOL(e, k, v) s_put_bool((e), k, sizeof(k) - 1, (v))
#define S_DBL(e, k, v) s_put_double((e), k, sizeof(k) - 1, (v))
#define S_NAME(e, k, v) s_put_name((e), k, sizeof(k) - 1, (v))
#define S_MAP(e, k, fn, obj) s_put_map((e), k, sizeof(k) - 1, (fn), (obj))
#define S_ARRAY(e, k, fn, base, n)                                          \
    s_put_array((e), k, sizeof(k) - 1, (fn), (base), sizeof *(base), (n))
#define S_STRS(e, k, v, n) s_put_strs((e), k, sizeof(k) - 1, (v), (n))
/* Optional numbers: zero means absent. */
#define S_INT_NZ(e, k, v)                                                   \
    do {                                                                    \
        if ((v) != 0)                                                       \
            S_INT(e, k, v);                                                 \
    } while (0)

static void
s_enc_backoff(s_enc_t *e, const void *obj)
{
    const dv_backoff_t *b = obj;
    S_INT(e, "base", b->base_ms);
    S_DBL(e, "factor", b->factor);
    S_INT(e, "cap", b->cap_ms);
    S_BOOL(e, "jitter", b->jitter);
}

static void
s_enc_failure(s_enc_t *e, const void *obj)
{
    const dv_failure_t *f = obj;
    S_NAME(e, "category", dv_category_name(f->category));
    S_STR(e, "message", f->message);
    S_BOOL(e, "retryable", f->retryable);
    S_INT_NZ(e, "retry_after", f->retry_after_ms);
    if (f->exit_code != -1)
        S_INT(e, "exit_code", f->exit_code);
    S_INT_NZ(e, "signal", f->signal);
    S_INT_NZ(e, "http_status", f->http_status);
    S_STR(e, "key_id", f->key_id);
}

static void
s_enc_jobspec(s_enc_t *e, const void *obj)
{
    const dv_jobspec_t *j = obj;
    S_STR(e, "queue", j->queue);
    S_STR(e, "type", j->type);
    S_BIN(e, "payload", j->payload);
    S_STR(e, "key", j->key);
    S_STR(e, "batch", j->batch);
    S_STR(e, "trace", j->trace);
    /* Always written: 0 is a real priority, and absent would mean 5. */
    S_INT(e, "priority", j->priority);
    S_INT_NZ(e, "run_at", j->run_at_ms);
    S_INT_NZ(e, "max_attempts", j->max_attempts);
    S_INT_NZ(e, "timeout", j->timeout_ms);
    if (j->has_backoff)
        S_MAP(e, "backoff", s_enc_backoff, &j->backoff);
    S_INT_NZ(e, "result_ttl", j->result_ttl_ms);
}

static void
s_enc_ack(s_enc_t *e, const void *obj)
{
    const dv_submit_ack_t *a = obj;
    S_STR(e, "id", a->id);
    S_BOOL(e, "duplicate", a->duplicate);
    S_STR(e, "error", a->error);
}

static void
s_enc_result(s_enc_t *e, const void *obj)
{
    const dv_result_t *r = obj;
    S_STR(e, "id", r->id);
    S_NAME(e, "state", dv_state_name(r->state));
    S_INT_NZ(e, "attempts", r->attempts);
    S_BIN(e, "result", r->result);
    if (r->has_failure)
        S_MAP(e, "failure", s_enc_failure, &r->failure);
    S_INT_NZ(e, "finished", r->finished_ms);
}

static void
s_enc_job(s_enc_t *e, const void *obj)
{
    const dv_job_t *j = obj;
    S_STR(e, "id", j->id);
    S_STR(e, "queue", j->queue);
    S_STR(e, "type", j->type);
    S_BIN(e, "payload", j->payload);
    S_STR(e, "trace", j->trace);
    S_STR(e, "batch", j->batch);
    S_INT(e, "attempt", j->attempt);
    S_INT_NZ(e, "max_attempts", j->max_attempts);
    S_INT_NZ(e, "timeout", j->timeout_ms);
    S_INT_NZ(e, "enqueued", j->enqueued_ms);
}

static void
s_enc_update(s_enc_t *e, const void *obj)
{
    const dv_update_t *u = obj;
    S_NAME(e, "kind", s_name_of(s_kind_names, S_UPD_COUNT_, (int)u->kind));
    S_STR(e, "id", u->id);
    S_INT(e, "attempt", u->attempt);
    S_INT_NZ(e, "ts", u->ts_ms);
    S_INT_NZ(e, "current", u->current);
    S_INT_NZ(e, "total", u->total);
    S_STR(e, "message", u->message);
    S_BIN(e, "result", u->result);
    /* dv_update_t has no has_failure: a failed item always carries one, any
     * other item only when a category was set. */
    if (u->kind == DV_UPD_FAILED || u->failure.category != DV_CAT_NONE)
        S_MAP(e, "failure", s_enc_failure, &u->failure);
}

static void
s_enc_held(s_enc_t *e, const void *obj)
{
    const dv_held_t *h = obj;
    S_STR(e, "id", h->id);
    S_INT(e, "attempt", h->attempt);
}

static void
s_enc_event(s_enc_t *e, const dv_event_t *ev)
{
    S_UINT(e, "seq", ev->seq);
    S_STR(e, "broker", ev->broker);
    S_INT_NZ(e, "ts", ev->ts_ms);
    S_STR(e, "kind", ev->kind);
    S_STR(e, "id", ev->id);
    S_STR(e, "queue", ev->queue);
    S_STR(e, "type", ev->type);
    S_STR(e, "batch", ev->batch);
    S_STR(e, "worker", ev->worker);
    S_INT_NZ(e, "attempt", ev->attempt);
    if (ev->state != DV_STATE_NONE)
        S_NAME(e, "state", dv_state_name(ev->state));
    S_INT_NZ(e, "run_at", ev->run_at_ms);
    S_INT_NZ(e, "wait", ev->wait_ms);
    S_INT_NZ(e, "run", ev->run_ms);
    S_INT_NZ(e, "current", ev->current);
    S_INT_NZ(e, "total", ev->total);
    S_STR(e, "message", ev->message);
    if (ev->has_failure)
        S_MAP(e, "failure", s_enc_failure, &ev->failure);
    S_BIN(e, "body", ev->body);
}

static void
s_enc_message(s_enc_t *e, const void *obj)
{
    const dv_msg_t *m = obj;
    S_UINT(e, "v", DV_PROTO_VERSION);
    S_NAME(e, "t", dv_msg_type_name(m->type));
    switch (m->type) {
    case DV_MSG_SUBMIT:
        S_UINT(e, "req", m->u.submit.req);
        S_ARRAY(e, "jobs", s_enc_jobspec, m->u.submit.jobs, m->u.submit.njobs);
        break;
    case DV_MSG_SUBMIT_REPLY:
        S_UINT(e, "req", m->u.submit_reply.req);
        S_ARRAY(e, "acks", s_enc_ack, m->u.submit_reply.acks,
                m->u.submit_reply.nacks);
        break;
    case DV_MSG_WAIT:
        S_UINT(e, "req", m->u.wait.req);
        S_STRS(e, "ids", m->u.wait.ids, m->u.wait.nids);
        break;
    case DV_MSG_RESULT:
        S_ARRAY(e, "results", s_enc_result, m->u.result.results,
                m->u.result.nresults);
        break;
    case DV_MSG_CTRL: {
        const dv_ctrl_t *c = &m->u.ctrl;
        S_UINT(e, "req", c->req);
        S_STR(e, "verb", c->verb);
        S_STR(e, "id", c->id);
        S_STR(e, "queue", c->queue);
        S_STR(e, "worker", c->worker);
        S_BOOL(e, "dead", c->dead);
        if (c->has_value)
            S_DBL(e, "value", c->value);
        S_BIN(e, "args", c->args);
        break;
    }
    case DV_MSG_REPLY:
        S_UINT(e, "req", m->u.reply.req);
        S_BOOL(e, "ok", m->u.reply.ok);
        S_STR(e, "error", m->u.reply.error);
        S_BIN(e, "body", m->u.reply.body);
        break;
    case DV_MSG_ERROR:
        if (m->u.error.req)
            S_UINT(e, "req", m->u.error.req);
        /* Required: an absent reason is sent as an empty one. */
        S_STR(e, "reason", m->u.error.reason.ptr ? m->u.error.reason
                                                 : dv_strn("", 0));
        S_INT_NZ(e, "version", m->u.error.version);
        break;
    case DV_MSG_HELLO: {
        const dv_hello_t *h = &m->u.hello;
        S_STR(e, "name", h->name);
        S_STR(e, "host", h->host);
        S_INT_NZ(e, "pid", h->pid);
        S_STRS(e, "queues", h->queues, h->nqueues);
        S_INT(e, "concurrency", h->concurrency);
        S_INT(e, "credit", h->credit);
        if (h->nheld)
            S_ARRAY(e, "held", s_enc_held, h->held, h->nheld);
        break;
    }
    case DV_MSG_WELCOME:
        S_STR(e, "broker", m->u.welcome.broker);
        S_INT(e, "heartbeat", m->u.welcome.heartbeat_ms);
        S_INT(e, "worker_timeout", m->u.welcome.worker_timeout_ms);
        break;
    case DV_MSG_JOBS:
        S_ARRAY(e, "jobs", s_enc_job, m->u.jobs.jobs, m->u.jobs.njobs);
        break;
    case DV_MSG_UPDATE:
        S_INT_NZ(e, "credit", m->u.update.credit);
        S_ARRAY(e, "items", s_enc_update, m->u.update.items,
                m->u.update.nitems);
        break;
    case DV_MSG_HEARTBEAT: {
        const dv_heartbeat_t *h = &m->u.heartbeat;
        S_INT_NZ(e, "busy", h->busy);
        S_INT_NZ(e, "idle", h->idle);
        S_INT_NZ(e, "processed", h->processed);
        S_INT_NZ(e, "failed", h->failed);
        S_BIN(e, "body", h->body);
        break;
    }
    case DV_MSG_KILL:
        S_STR(e, "id", m->u.kill.id);
        S_STR(e, "reason", m->u.kill.reason);
        break;
    case DV_MSG_EVENT:
        s_enc_event(e, &m->u.event);
        break;
    default: /* DV_MSG_BYE, DV_MSG_DRAIN: nothing but v and t */
        break;
    }
}

int
dv_msg_encode(const dv_msg_t *msg, msgpack_sbuffer *out)
{
    if (!msg || !out || msg->type <= DV_MSG_NONE ||
        msg->type >= DV_MSG_COUNT_)
        return DV_EPROTO;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    return s_pack_map(&pk, s_enc_message, msg) ? DV_ENOMEM : DV_OK;
}
