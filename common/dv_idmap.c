/* dv_idmap - open addressing with linear probing; the table is kept at
 * most half full so probes stay short. */
#include "dv_idmap.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *key; /* NULL marks an empty slot */
    size_t len;      /* key length in bytes */
    size_t value;    /* what the key maps to */
    uint64_t hash;   /* cached, so growing does not hash again */
} s_slot_t;

struct dv_idmap_t {
    s_slot_t *slots; /* capacity entries, a power of two */
    size_t capacity;
    size_t size;     /* keys stored */
};

static uint64_t
s_hash(const char *key, size_t len)
{
    /* FNV-1a, then a final mix so the low bits depend on every byte. */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

dv_idmap_t *
dv_idmap_new(size_t expected)
{
    dv_idmap_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    size_t cap = 16;
    while (cap < expected * 2 && cap < ((size_t)1 << 40))
        cap <<= 1;
    self->slots = calloc(cap, sizeof *self->slots);
    if (!self->slots) {
        free(self);
        return NULL;
    }
    self->capacity = cap;
    return self;
}

void
dv_idmap_destroy(dv_idmap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->slots);
    free(*self_p);
    *self_p = NULL;
}

static s_slot_t *
s_find(const dv_idmap_t *self, const char *key, size_t len, uint64_t h)
{
    size_t mask = self->capacity - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        s_slot_t *s = &self->slots[i];
        if (!s->key ||
            (s->hash == h && s->len == len && !memcmp(s->key, key, len)))
            return s;
    }
}

static int
s_grow(dv_idmap_t *self)
{
    size_t cap = self->capacity * 2;
    s_slot_t *old = self->slots, *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    size_t old_cap = self->capacity;
    self->slots = slots;
    self->capacity = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key)
            *s_find(self, old[i].key, old[i].len, old[i].hash) = old[i];
    free(old);
    return 0;
}

size_t
dv_idmap_put(dv_idmap_t *self, const char *key, size_t len,
                   size_t value)
{
    if ((self->size + 1) * 2 > self->capacity && s_grow(self) != 0)
        return DV_IDMAP_NONE;
    uint64_t h = s_hash(key, len);
    s_slot_t *s = s_find(self, key, len, h);
    if (s->key)
        return s->value;
    s->key = key;
    s->len = len;
    s->value = value;
    s->hash = h;
    self->size++;
    return value;
}

size_t
dv_idmap_get(const dv_idmap_t *self, const char *key, size_t len)
{
    const s_slot_t *s = s_find(self, key, len, s_hash(key, len));
    return s->key ? s->value : DV_IDMAP_NONE;
}

size_t
dv_idmap_size(const dv_idmap_t *self)
{
    return self->size;
}
