/* proto_fuzz - fuzz target for the wire decoder and the typed bodies.
 *
 * Each input is decoded as a message, and as each typed body (status,
 * heartbeat metrics, worker info; dv_body.h). A failed decode must own
 * nothing and say why. Whatever decodes must encode, decode again to an
 * equal value, and encode to the same bytes: decode and encode agree on
 * every field. The bin bodies of a message that decodes (reply, heartbeat,
 * event) go through the typed body decoders too.
 *
 * Built with clang and -DDROVER_FUZZ=ON this is a libFuzzer target;
 * otherwise cmake/fuzz_replay.c replays the seed corpus and every input
 * that ever crashed (regressions/) through it as a ctest
 * (cmake/DroverFuzz.cmake). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_body.h"
#include "dv_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
s_die(const char *what, const char *why)
{
    fprintf(stderr, "proto_fuzz: %s: %s\n", what, why ? why : "");
    abort();
}

/* One typed body's functions, with void pointers. */
typedef struct {
    const char *name;
    int (*decode)(const void *, size_t, void *, char *, size_t);
    int (*encode)(const void *, msgpack_sbuffer *);
    void (*release)(void *);
    bool (*equal)(const void *, const void *, char *, size_t);
    void *(*priv)(const void *);
} s_body_t;

#define S_BODY_FNS(nm, T)                                                      \
    static int s_##nm##_dec(const void *d, size_t n, void *x, char *w,         \
                            size_t ws)                                         \
    {                                                                          \
        return dv_##nm##_decode(d, n, x, w, ws);                               \
    }                                                                          \
    static int s_##nm##_enc(const void *x, msgpack_sbuffer *out)               \
    {                                                                          \
        return dv_##nm##_encode(x, out);                                       \
    }                                                                          \
    static void s_##nm##_rel(void *x)                                          \
    {                                                                          \
        dv_##nm##_release(x);                                                  \
    }                                                                          \
    static bool s_##nm##_eq(const void *a, const void *b, char *d, size_t ds)  \
    {                                                                          \
        return dv_##nm##_equal(a, b, d, ds);                                   \
    }                                                                          \
    static void *s_##nm##_priv(const void *x)                                  \
    {                                                                          \
        return ((const T *)x)->priv_;                                          \
    }
S_BODY_FNS(status, dv_status_t)
S_BODY_FNS(hbmetrics, dv_hbmetrics_t)
S_BODY_FNS(workerinfo, dv_workerinfo_t)

#define S_BODY(nm)                                                             \
    {                                                                          \
#nm, s_##nm##_dec, s_##nm##_enc, s_##nm##_rel, s_##nm##_eq,            \
            s_##nm##_priv                                                      \
    }

static const s_body_t s_bodies[] = {
    S_BODY(status),
    S_BODY(hbmetrics),
    S_BODY(workerinfo),
};

typedef union {
    dv_status_t status;
    dv_hbmetrics_t hbmetrics;
    dv_workerinfo_t workerinfo;
} s_any_body_t;

static void
s_check_body(const s_body_t *b, const uint8_t *data, size_t size)
{
    s_any_body_t x, again;
    char why[512], diff[512];
    int rc = b->decode(data, size, &x, why, sizeof why);
    if (rc != DV_OK) {
        if (b->priv(&x) || why[0] == '\0')
            s_die("failed body decode kept memory or gave no reason", why);
        b->release(&x);
        return;
    }
    msgpack_sbuffer first, second;
    msgpack_sbuffer_init(&first);
    msgpack_sbuffer_init(&second);
    if (b->encode(&x, &first) != DV_OK)
        s_die("encode of a decoded body failed", b->name);
    if (b->decode(first.data, first.size, &again, why, sizeof why) != DV_OK)
        s_die("body re-decode failed", why);
    if (!b->equal(&x, &again, diff, sizeof diff))
        s_die("body re-decode changed a field", diff);
    if (b->encode(&again, &second) != DV_OK)
        s_die("second body encode failed", b->name);
    if (first.size != second.size ||
        memcmp(first.data, second.data, first.size) != 0)
        s_die("body encode(decode(x)) is not a fixed point", b->name);
    /* the worker info's metrics are a heartbeat body */
    if (b == &s_bodies[2] && x.workerinfo.metrics.ptr)
        s_check_body(&s_bodies[1], (const uint8_t *)x.workerinfo.metrics.ptr,
                     x.workerinfo.metrics.len);
    b->release(&again);
    b->release(&x);
    msgpack_sbuffer_destroy(&second);
    msgpack_sbuffer_destroy(&first);
}

static void
s_check_bodies(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < sizeof s_bodies / sizeof s_bodies[0]; i++)
        s_check_body(&s_bodies[i], data, size);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dv_msg_t m, again;
    s_check_bodies(data, size);
    char why[512];
    int rc = dv_msg_decode(data, size, &m, why, sizeof why);
    if (rc != DV_OK) {
        if (m.priv_ || why[0] == '\0')
            s_die("failed decode kept memory or gave no reason", why);
        dv_msg_release(&m);
        return 0;
    }

    msgpack_sbuffer first, second;
    msgpack_sbuffer_init(&first);
    msgpack_sbuffer_init(&second);
    if (dv_msg_encode(&m, &first) != DV_OK)
        s_die("encode of a decoded message failed", dv_msg_type_name(m.type));
    rc = dv_msg_decode(first.data, first.size, &again, why, sizeof why);
    if (rc != DV_OK)
        s_die("re-decode failed", why);
    if (again.type != m.type)
        s_die("re-decode changed the type", dv_msg_type_name(again.type));
    char diff[512];
    if (!dv_msg_equal(&m, &again, diff, sizeof diff))
        s_die("re-decode changed a field", diff);
    const dv_str_t *body = m.type == DV_MSG_REPLY       ? &m.u.reply.body
                           : m.type == DV_MSG_HEARTBEAT ? &m.u.heartbeat.body
                           : m.type == DV_MSG_EVENT     ? &m.u.event.body
                                                        : NULL;
    if (body && body->ptr)
        s_check_bodies((const uint8_t *)body->ptr, body->len);
    if (m.type == DV_MSG_EVENTS)
        for (uint32_t i = 0; i < m.u.events.nevents; i++)
            if (m.u.events.events[i].body.ptr)
                s_check_bodies((const uint8_t *)m.u.events.events[i].body.ptr,
                               m.u.events.events[i].body.len);
    if (dv_msg_encode(&again, &second) != DV_OK)
        s_die("second encode failed", dv_msg_type_name(m.type));
    if (first.size != second.size ||
        memcmp(first.data, second.data, first.size) != 0)
        s_die("encode(decode(x)) is not a fixed point",
              dv_msg_type_name(m.type));

    dv_msg_release(&again);
    dv_msg_release(&m);
    msgpack_sbuffer_destroy(&second);
    msgpack_sbuffer_destroy(&first);
    return 0;
}
