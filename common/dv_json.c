#include "dv_json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* depth counts the containers around j, so JSON and the wire (and
 * dv_mp_validate) agree on what "nested 64 deep" means. */
static int
s_pack(msgpack_packer *pk, const json_t *j, int depth)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        if (depth >= DV_JSON_MAX_DEPTH ||
            msgpack_pack_map(pk, json_object_size(j)) != 0)
            return -1;
        const char *k;
        size_t kl;
        json_t *v;
        json_object_keylen_foreach((json_t *)j, k, kl, v)
        {
            if (msgpack_pack_str_with_body(pk, k, kl) != 0 ||
                s_pack(pk, v, depth + 1) != 0)
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        if (depth >= DV_JSON_MAX_DEPTH || msgpack_pack_array(pk, n) != 0)
            return -1;
        for (size_t i = 0; i < n; i++)
            if (s_pack(pk, json_array_get(j, i), depth + 1) != 0)
                return -1;
        return 0;
    }
    case JSON_STRING:
        return msgpack_pack_str_with_body(pk, json_string_value(j),
                                          json_string_length(j));
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(j));
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(j));
    case JSON_TRUE:
        return msgpack_pack_true(pk);
    case JSON_FALSE:
        return msgpack_pack_false(pk);
    case JSON_NULL:
        return msgpack_pack_nil(pk);
    }
    return -1;
}

int
dv_json_pack(msgpack_packer *pk, const json_t *j)
{
    return s_pack(pk, j, 0);
}

char *
dv_json_to_msgpack(const json_t *j, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (s_pack(&pk, j, 0) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return NULL;
    }
    *len = sb.size;
    if (sb.size == 0) {
        msgpack_sbuffer_destroy(&sb);
        return malloc(1);
    }
    return msgpack_sbuffer_release(&sb);
}

static void
s_why(char *why, size_t size, const char *msg)
{
    if (why && size)
        snprintf(why, size, "%s", msg);
}

static char *
s_base64(const char *p, size_t n)
{
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    if (!out)
        return NULL;
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        *o++ = t[u[i] >> 2];
        *o++ = t[((u[i] & 3) << 4) | (u[i + 1] >> 4)];
        *o++ = t[((u[i + 1] & 15) << 2) | (u[i + 2] >> 6)];
        *o++ = t[u[i + 2] & 63];
    }
    if (i < n) {
        *o++ = t[u[i] >> 2];
        if (i + 1 < n) {
            *o++ = t[((u[i] & 3) << 4) | (u[i + 1] >> 4)];
            *o++ = t[(u[i + 1] & 15) << 2];
        } else {
            *o++ = t[(u[i] & 3) << 4];
            *o++ = '=';
        }
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

/* Text for a msgpack str or bin: a JSON string when the bytes are UTF-8,
 * else {"$bin": base64} so they stay visible rather than failing. */
static json_t *
s_bytes_to_json(const char *p, size_t n)
{
    json_t *s = json_stringn(p ? p : "", n);
    if (s)
        return s;
    char *b = s_base64(p, n);
    if (!b)
        return NULL;
    json_t *r = json_pack("{s:s}", "$bin", b);
    free(b);
    return r;
}

static json_t *
s_real(double v, char *why, size_t ws)
{
    /* JSON has no NaN or infinity; jansson refuses them too. */
    if (!isfinite(v)) {
        s_why(why, ws, "non-finite number has no JSON form");
        return NULL;
    }
    return json_real(v);
}

/* Adds v under the key of n bytes at k; consumes v. */
static int
s_set_key(json_t *m, const char *k, size_t n, json_t *v, char *why, size_t ws)
{
    if (json_object_setn_new(m, k, n, v) != 0) {
        s_why(why, ws, "map key is not valid UTF-8");
        return -1;
    }
    return 0;
}

static json_t *
s_to_json(const msgpack_object *o, int depth, char *why, size_t ws)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return json_real((double)o->via.u64);
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return s_real(o->via.f64, why, ws);
    case MSGPACK_OBJECT_STR:
        return s_bytes_to_json(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN:
        return s_bytes_to_json(o->via.bin.ptr, o->via.bin.size);
    case MSGPACK_OBJECT_ARRAY: {
        if (depth >= DV_JSON_MAX_DEPTH) {
            s_why(why, ws, "nested too deeply");
            return NULL;
        }
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++) {
            json_t *v = s_to_json(&o->via.array.ptr[i], depth + 1, why, ws);
            if (!v || json_array_append_new(a, v) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        if (depth >= DV_JSON_MAX_DEPTH) {
            s_why(why, ws, "nested too deeply");
            return NULL;
        }
        json_t *m = json_object();
        for (uint32_t i = 0; m && i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                s_why(why, ws, "map key is not a string");
                json_decref(m);
                return NULL;
            }
            json_t *v = s_to_json(&kv->val, depth + 1, why, ws);
            if (!v ||
                s_set_key(m, kv->key.via.str.ptr ? kv->key.via.str.ptr : "",
                          kv->key.via.str.size, v, why, ws) != 0) {
                json_decref(m);
                return NULL;
            }
        }
        return m;
    }
    default:
        s_why(why, ws, "msgpack ext values have no JSON form");
        return NULL;
    }
}

json_t *
dv_msgpack_object_to_json(const msgpack_object *o, char *why, size_t why_size)
{
    return s_to_json(o, 0, why, why_size);
}

/* ---- straight from bytes -------------------------------------------------
 *
 * dv_msgpack_to_json() reads the bytes itself rather than through
 * msgpack_unpack_next(): msgpack-c's unpacker stops at 32 levels of nesting,
 * while payloads may nest DV_JSON_MAX_DEPTH (64) deep, and it allocates for
 * an array's claimed length before reading it, so a 5-byte header claiming
 * four billion items would ask for 64 GiB. Here containers grow as items are
 * read, and a short buffer ends the read. */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    char *why;
    size_t ws;
} s_rd_t;

static int
s_rd_take(s_rd_t *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n) {
        s_why(r->why, r->ws, "msgpack value is truncated");
        return -1;
    }
    *out = r->p;
    r->p += n;
    return 0;
}

static int
s_rd_be(s_rd_t *r, unsigned n, uint64_t *out)
{
    const uint8_t *b;
    if (s_rd_take(r, n, &b) != 0)
        return -1;
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | b[i];
    *out = v;
    return 0;
}

static json_t *s_rd_value(s_rd_t *r, int depth);

static json_t *
s_rd_bytes(s_rd_t *r, uint64_t n)
{
    const uint8_t *b;
    if (s_rd_take(r, (size_t)n, &b) != 0)
        return NULL;
    return s_bytes_to_json((const char *)b, (size_t)n);
}

static json_t *
s_rd_array(s_rd_t *r, uint64_t n, int depth)
{
    if (depth >= DV_JSON_MAX_DEPTH) {
        s_why(r->why, r->ws, "nested too deeply");
        return NULL;
    }
    json_t *a = json_array();
    for (uint64_t i = 0; a && i < n; i++) {
        json_t *v = s_rd_value(r, depth + 1);
        if (!v || json_array_append_new(a, v) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *
s_rd_map(s_rd_t *r, uint64_t n, int depth)
{
    if (depth >= DV_JSON_MAX_DEPTH) {
        s_why(r->why, r->ws, "nested too deeply");
        return NULL;
    }
    json_t *m = json_object();
    for (uint64_t i = 0; m && i < n; i++) {
        uint64_t klen;
        const uint8_t *k;
        uint8_t b;
        if (r->p >= r->end) {
            s_why(r->why, r->ws, "msgpack value is truncated");
            goto fail;
        }
        b = *r->p++;
        if (b >= 0xa0 && b <= 0xbf)
            klen = b & 0x1f;
        else if (b == 0xd9 || b == 0xda || b == 0xdb) {
            if (s_rd_be(r, 1u << (b - 0xd9), &klen) != 0)
                goto fail;
        } else {
            s_why(r->why, r->ws, "map key is not a string");
            goto fail;
        }
        if (s_rd_take(r, (size_t)klen, &k) != 0)
            goto fail;
        json_t *v = s_rd_value(r, depth + 1);
        if (!v ||
            s_set_key(m, (const char *)k, (size_t)klen, v, r->why, r->ws) != 0)
            goto fail;
    }
    return m;
fail:
    json_decref(m);
    return NULL;
}

static json_t *
s_rd_value(s_rd_t *r, int depth)
{
    uint64_t n;
    if (r->p >= r->end) {
        s_why(r->why, r->ws, "msgpack value is truncated");
        return NULL;
    }
    uint8_t c = *r->p++;
    if (c <= 0x7f)
        return json_integer(c);
    if (c >= 0xe0)
        return json_integer((int8_t)c);
    if (c <= 0x8f)
        return s_rd_map(r, c & 0x0f, depth);
    if (c <= 0x9f)
        return s_rd_array(r, c & 0x0f, depth);
    if (c <= 0xbf)
        return s_rd_bytes(r, c & 0x1f);
    switch (c) {
    case 0xc0:
        return json_null();
    case 0xc2:
        return json_false();
    case 0xc3:
        return json_true();
    case 0xc4: /* bin 8/16/32 */
    case 0xc5:
    case 0xc6:
        if (s_rd_be(r, 1u << (c - 0xc4), &n) != 0)
            return NULL;
        return s_rd_bytes(r, n);
    case 0xd9: /* str 8/16/32 */
    case 0xda:
    case 0xdb:
        if (s_rd_be(r, 1u << (c - 0xd9), &n) != 0)
            return NULL;
        return s_rd_bytes(r, n);
    case 0xca: {
        if (s_rd_be(r, 4, &n) != 0)
            return NULL;
        uint32_t u = (uint32_t)n;
        float f;
        memcpy(&f, &u, sizeof f);
        return s_real(f, r->why, r->ws);
    }
    case 0xcb: {
        if (s_rd_be(r, 8, &n) != 0)
            return NULL;
        double d;
        memcpy(&d, &n, sizeof d);
        return s_real(d, r->why, r->ws);
    }
    case 0xcc: /* uint 8/16/32/64 */
    case 0xcd:
    case 0xce:
    case 0xcf:
        if (s_rd_be(r, 1u << (c - 0xcc), &n) != 0)
            return NULL;
        if (n > (uint64_t)INT64_MAX)
            return json_real((double)n);
        return json_integer((json_int_t)n);
    case 0xd0: /* int 8/16/32/64, sign-extended from their width */
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        unsigned w = 1u << (c - 0xd0);
        if (s_rd_be(r, w, &n) != 0)
            return NULL;
        if (w < 8 && (n >> (8 * w - 1)) & 1)
            n |= ~0ULL << (8 * w);
        return json_integer((json_int_t)(int64_t)n);
    }
    case 0xdc:
    case 0xdd:
        if (s_rd_be(r, c == 0xdc ? 2 : 4, &n) != 0)
            return NULL;
        return s_rd_array(r, n, depth);
    case 0xde:
    case 0xdf:
        if (s_rd_be(r, c == 0xde ? 2 : 4, &n) != 0)
            return NULL;
        return s_rd_map(r, n, depth);
    case 0xc7: /* ext */
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        s_why(r->why, r->ws, "msgpack ext values have no JSON form");
        return NULL;
    default: /* 0xc1 */
        s_why(r->why, r->ws, "not msgpack");
        return NULL;
    }
}

json_t *
dv_msgpack_to_json(const void *data, size_t len, char *why, size_t why_size)
{
    if (len == 0)
        return json_null();
    if (!data) {
        s_why(why, why_size, "not a single msgpack value");
        return NULL;
    }
    s_rd_t r = { data, (const uint8_t *)data + len, why, why_size };
    json_t *j = s_rd_value(&r, 0);
    if (j && r.p != r.end) {
        s_why(why, why_size, "not a single msgpack value: trailing bytes");
        json_decref(j);
        return NULL;
    }
    return j;
}

char *
dv_msgpack_to_json_text(const void *data, size_t len)
{
    json_t *j = dv_msgpack_to_json(data, len, NULL, 0);
    if (!j)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}
