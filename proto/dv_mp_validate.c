/* dv_mp_validate - checks raw msgpack bytes before anything is allocated
 * for them: exactly one well-formed value, containers nested at most
 * max_depth deep, and no container claiming more elements than the bytes
 * left could hold (so msgpack-c never allocates for a lie). The decoder runs
 * it on every frame and on every bin that must hold one value; dv_mp_span()
 * measures one value inside a larger buffer (RAW fields of a body).
 * Pure function, no allocation; any thread. */
#include "dv_schema.h"

#include <stdint.h>

/* Largest max_depth honoured; deeper asks are clamped. */
#define S_MP_STACK 256

static uint64_t
s_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Walks the one value at data; *end gets the offset just past it. */
static int
s_walk(const void *data, size_t size, int max_depth, size_t *end)
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
            if (top == 0) {
                *end = pos;
                return DV_OK;
            }
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

int
dv_mp_validate(const void *data, size_t size, int max_depth)
{
    size_t end = 0;
    int rc = s_walk(data, size, max_depth, &end);
    if (rc == DV_OK && end != size)
        return DV_ETRUNC;
    return rc;
}

size_t
dv_mp_span(const void *data, size_t size, int max_depth)
{
    size_t end = 0;
    return s_walk(data, size, max_depth, &end) == DV_OK ? end : 0;
}
