#include "dv_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
s_pack(msgpack_packer *pk, const json_t *j, int depth)
{
    if (depth > DV_JSON_MAX_DEPTH)
        return -1;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        msgpack_pack_map(pk, json_object_size(j));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            size_t kl = strlen(k);
            msgpack_pack_str(pk, kl);
            msgpack_pack_str_body(pk, k, kl);
            if (s_pack(pk, v, depth + 1) != 0)
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        msgpack_pack_array(pk, n);
        for (size_t i = 0; i < n; i++)
            if (s_pack(pk, json_array_get(j, i), depth + 1) != 0)
                return -1;
        return 0;
    }
    case JSON_STRING: {
        size_t n = json_string_length(j);
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, json_string_value(j), n);
        return 0;
    }
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(j));
        return 0;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(j));
        return 0;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        return 0;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        return 0;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        return 0;
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

static json_t *
s_to_json(const msgpack_object *o, int depth, char *why, size_t ws)
{
    if (depth > DV_JSON_MAX_DEPTH) {
        s_why(why, ws, "nested too deeply");
        return NULL;
    }
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
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR: {
        json_t *s = json_stringn_nocheck(o->via.str.ptr, o->via.str.size);
        if (!s || !json_stringn(o->via.str.ptr, o->via.str.size)) {
            /* not UTF-8: keep the bytes visible rather than failing */
            json_decref(s);
            char *b = s_base64(o->via.str.ptr, o->via.str.size);
            json_t *r = json_pack("{s:s}", "$bin", b ? b : "");
            free(b);
            return r;
        }
        return s;
    }
    case MSGPACK_OBJECT_BIN: {
        json_t *s = json_stringn(o->via.bin.ptr, o->via.bin.size);
        if (s)
            return s;
        char *b = s_base64(o->via.bin.ptr, o->via.bin.size);
        json_t *r = json_pack("{s:s}", "$bin", b ? b : "");
        free(b);
        return r;
    }
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            json_t *v = s_to_json(&o->via.array.ptr[i], depth + 1, why, ws);
            if (!v) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR) {
                s_why(why, ws, "map key is not a string");
                json_decref(m);
                return NULL;
            }
            char key[1024];
            if (kv->key.via.str.size >= sizeof key) {
                s_why(why, ws, "map key longer than 1023 bytes");
                json_decref(m);
                return NULL;
            }
            memcpy(key, kv->key.via.str.ptr, kv->key.via.str.size);
            key[kv->key.via.str.size] = '\0';
            json_t *v = s_to_json(&kv->val, depth + 1, why, ws);
            if (!v) {
                json_decref(m);
                return NULL;
            }
            json_object_set_new(m, key, v);
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

json_t *
dv_msgpack_to_json(const void *data, size_t len, char *why, size_t why_size)
{
    if (len == 0)
        return json_null();
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&u, data, len, &off);
    json_t *j = NULL;
    if (r != MSGPACK_UNPACK_SUCCESS || off != len)
        s_why(why, why_size, "not a single msgpack value");
    else
        j = s_to_json(&u.data, 0, why, why_size);
    msgpack_unpacked_destroy(&u);
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
