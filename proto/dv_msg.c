/* dv_msg - the message envelope and the public codec: dv_msg_decode(),
 * dv_msg_encode(), dv_msg_release(), dv_msg_equal().
 *
 * Decoding runs in three steps. dv_mp_validate() walks the raw bytes first,
 * so msgpack-c never sees a header that claims more elements than the frame
 * can hold (it would allocate for the claim before reading a single
 * element). msgpack_unpack_next() then builds the object tree; its strings
 * and bins point into the caller's frame, so every dv_str_t handed out is a
 * view into that frame and the tree itself is dropped before we return.
 * Last, "v" and "t" are read here, and the type's table (dv_msg_schema.c)
 * drives the engine (dv_schema.c) over the rest. Arrays are the only
 * allocations, chained in priv_ for dv_msg_release().
 *
 * Encoding writes "v" and "t", then the type's fields by the same table.
 * No I/O; any thread. */
#include "dv_msg_schema.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The envelope nests at most four deep (message, jobs array, job, backoff);
 * payloads and results are bins and add nothing. Leave room for newer peers
 * adding a level or two, and stay well under msgpack-c's own limit of 32. */
#define S_ENVELOPE_DEPTH 16

/* Reads "v", "t" and (for error replies) "req" from the top-level map, then
 * the type's own keys. *req gets the request number when it could be read. */
static int
s_dec_message(dv_dec_t *d, const msgpack_object *o, dv_msg_t *m, uint64_t *req)
{
    const msgpack_object *v = NULL, *t = NULL;

    if (o->type != MSGPACK_OBJECT_MAP)
        return dv_dec_fail(d, DV_EPROTO, "message must be a msgpack map");
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            continue;
        const char *k = kv->key.via.str.ptr;
        uint32_t kl = kv->key.via.str.size;
        const msgpack_object **slot = NULL;
        if (kl == 1 && k[0] == 'v')
            slot = &v;
        else if (kl == 1 && k[0] == 't')
            slot = &t;
        else if (kl == 3 && memcmp(k, "req", 3) == 0 &&
                 kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            *req = kv->val.via.u64;
        if (!slot)
            continue;
        if (*slot)
            return dv_dec_fail_at(d, slot == &v ? "v" : "t", DV_EPROTO,
                                  "key given twice");
        *slot = &kv->val;
        /* "v" is checked where it stands, as any key. */
        if (slot == &v && v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return dv_dec_fail_at(d, "v", DV_EPROTO,
                                  "must be an unsigned integer");
    }
    if (!v)
        return dv_dec_fail(d, DV_EPROTO, "missing key \"v\"");
    uint64_t ver = v->via.u64;
    m->version = ver > UINT32_MAX ? UINT32_MAX : (uint32_t)ver;
    /* Version first: a newer peer may use types this side has never heard
     * of, and deserves to hear about the version, not the type. */
    if (ver > DV_PROTO_VERSION)
        return dv_dec_fail(d, DV_EVERSION,
                           "protocol version %" PRIu64 " is not supported "
                           "(this side speaks %d)",
                           ver, DV_PROTO_VERSION);
    if (ver == 0)
        return dv_dec_fail_at(d, "v", DV_EPROTO, "must be >= 1");
    if (!t)
        return dv_dec_fail(d, DV_EPROTO, "missing key \"t\"");
    if (t->type != MSGPACK_OBJECT_STR)
        return dv_dec_fail_at(d, "t", DV_EPROTO, "must be a string");
    int type = dv_enum_find(&dv_enum_msg, t->via.str.ptr, t->via.str.size);
    if (type == DV_MSG_NONE) {
        char q[64];
        size_t n = 0, len = t->via.str.size;
        for (size_t i = 0; i < len && i < 40; i++) {
            unsigned char c = (unsigned char)t->via.str.ptr[i];
            q[n++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
        }
        if (len > 40) {
            memcpy(q + n, "...", 3);
            n += 3;
        }
        q[n] = '\0';
        return dv_dec_fail(d, DV_EPROTO, "unknown message type \"%s\"", q);
    }
    m->type = (dv_msg_type_t)type;
    d->msg = dv_enum_name(&dv_enum_msg, type)->name;
    return dv_dec_keys(d, dv_msg_schema(m->type), o, m);
}

int
dv_msg_decode(const void *data, size_t size, dv_msg_t *msg, char *why,
              size_t why_size)
{
    dv_dec_t d;
    uint64_t req = 0;
    int rc;

    dv_dec_init(&d, why, why_size);
    memset(msg, 0, sizeof *msg);
    if (why && why_size)
        why[0] = '\0';
    if (size > DV_MSG_MAX)
        return dv_dec_fail(&d, DV_ETOOBIG,
                           "frame of %zu bytes is over the "
                           "%u byte limit",
                           size, DV_MSG_MAX);
    rc = dv_mp_validate(data, size, S_ENVELOPE_DEPTH);
    if (rc == DV_ETOOBIG)
        return dv_dec_fail(&d, rc, "frame nests deeper than %d",
                           S_ENVELOPE_DEPTH);
    if (rc != DV_OK)
        return dv_dec_fail(&d, rc,
                           "frame is not exactly one complete "
                           "msgpack value");

    msgpack_unpacked up;
    size_t off = 0;
    msgpack_unpacked_init(&up);
    msgpack_unpack_return ur = msgpack_unpack_next(&up, data, size, &off);
    if (ur == MSGPACK_UNPACK_SUCCESS && off == size)
        rc = s_dec_message(&d, &up.data, msg, &req);
    else if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = dv_dec_fail(&d, DV_ENOMEM, "out of memory");
    else
        rc = dv_dec_fail(&d, DV_ETRUNC,
                         "frame is not exactly one msgpack "
                         "value");
    /* Views point into data, not into the unpacked tree: drop it now. */
    msgpack_unpacked_destroy(&up);

    if (rc != DV_OK) {
        /* Keep what an error reply needs (type, version, req), nothing that
         * points at memory we are about to free. */
        dv_msg_type_t type = msg->type;
        uint32_t version = msg->version;
        dv_dec_free(d.blocks);
        memset(msg, 0, sizeof *msg);
        msg->type = type;
        msg->version = version;
        uint64_t *r = dv_msg_req(msg);
        if (r)
            *r = req;
        return rc;
    }
    msg->priv_ = d.blocks;
    return DV_OK;
}

void
dv_msg_release(dv_msg_t *msg)
{
    if (!msg)
        return;
    dv_dec_free(msg->priv_);
    memset(msg, 0, sizeof *msg);
}

/* Writes "v", "t", then the fields of the type. */
static int
s_enc_message(msgpack_sbuffer *out, const dv_msg_t *m)
{
    const dv_schema_t *s = dv_msg_schema(m->type);
    const dv_name_t *t = dv_enum_name(&dv_enum_msg, (int)m->type);
    uint32_t n = 0;
    uint32_t mask = dv_enc_mask(s, m, &n);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, n + 2);
    rc |= msgpack_pack_str_with_body(&pk, "v", 1);
    rc |= msgpack_pack_uint64(&pk, DV_PROTO_VERSION);
    rc |= msgpack_pack_str_with_body(&pk, "t", 1);
    rc |= msgpack_pack_str_with_body(&pk, t->name, t->len);
    return rc | dv_enc_fields(out, s, m, mask);
}

int
dv_msg_encode(const dv_msg_t *msg, msgpack_sbuffer *out)
{
    if (!msg || !out || !dv_msg_schema(msg->type))
        return DV_EPROTO;
    return s_enc_message(out, msg) ? DV_ENOMEM : DV_OK;
}

/* The envelope of an "events" message up to its array's count: a map of
 * three keys, "v" 1, "t" "events", "events" and an array32 header whose
 * four count bytes follow. */
static const unsigned char s_events_head[] = {
    0x83, 0xa1, 'v',  DV_PROTO_VERSION,
    0xa1, 't',  0xa6, 'e',
    'v',  'e',  'n',  't',
    's',  0xa6, 'e',  'v',
    'e',  'n',  't',  's',
    0xdd,
};
_Static_assert(DV_PROTO_VERSION < 0x80, "the version is a positive fixint");

int
dv_events_begin(dv_events_enc_t *e, msgpack_sbuffer *out)
{
    static const unsigned char zero[4] = { 0 };
    e->start = out->size;
    e->n = 0;
    if (msgpack_sbuffer_write(out, (const char *)s_events_head,
                              sizeof s_events_head) != 0 ||
        msgpack_sbuffer_write(out, (const char *)zero, sizeof zero) != 0) {
        out->size = e->start;
        return DV_ENOMEM;
    }
    return DV_OK;
}

int
dv_events_add(dv_events_enc_t *e, msgpack_sbuffer *out, const dv_event_t *ev)
{
    if (e->n >= DV_ITEMS_MAX)
        return DV_ETOOBIG;
    size_t before = out->size;
    if (dv_enc_map(out, dv_msg_event_schema(), ev) != 0) {
        out->size = before;
        return DV_ENOMEM;
    }
    uint32_t n = ++e->n;
    unsigned char *c =
        (unsigned char *)out->data + e->start + sizeof s_events_head;
    c[0] = (unsigned char)(n >> 24);
    c[1] = (unsigned char)(n >> 16);
    c[2] = (unsigned char)(n >> 8);
    c[3] = (unsigned char)n;
    return DV_OK;
}

bool
dv_msg_equal(const dv_msg_t *a, const dv_msg_t *b, char *diff, size_t diff_size)
{
    if (diff && diff_size)
        diff[0] = '\0';
    if (a->type != b->type) {
        if (diff && diff_size)
            snprintf(diff, diff_size, "type: %s != %s",
                     dv_msg_type_name(a->type), dv_msg_type_name(b->type));
        return false;
    }
    const dv_schema_t *s = dv_msg_schema(a->type);
    if (!s)
        return true;
    return dv_schema_equal(s, dv_msg_type_name(a->type), a, b, diff, diff_size);
}
