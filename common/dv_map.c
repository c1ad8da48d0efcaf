/* dv_map - open addressing with linear probing, kept at most half
 * full, with backward-shift deletion: no deletion markers, so a map whose
 * items come and go (running jobs) never needs rebuilding, only growing. */
#include "dv_map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define S_MIN_CAPACITY 16

typedef struct {
    const char *key; /* NULL: empty */
    size_t len;      /* key length in bytes */
    void *item;
    uint64_t hash; /* cached, so growing does not hash again */
} s_slot_t;

struct dv_map_t {
    s_slot_t *slots; /* capacity entries, a power of two */
    size_t capacity;
    size_t size;
    dv_map_free_fn *free_fn;
};

/* The multiplier of the mixing steps (MurmurHash3's fmix64). */
#define S_MUL 0xff51afd7ed558ccdull

static uint64_t
s_hash(const char *key, size_t len)
{
    /* Eight bytes a step (keys are mostly 36-byte job ids: five steps, not
     * 36 of a byte-wise hash), each multiplied in and folded down; then
     * fmix64, so that the low bits the table uses depend on every byte. */
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, key + i, 8);
        h = (h ^ w) * S_MUL;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, key + i, len - i);
    h = (h ^ w) * S_MUL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

dv_map_t *
dv_map_new(dv_map_free_fn *free_fn)
{
    dv_map_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->slots = calloc(S_MIN_CAPACITY, sizeof *self->slots);
    if (!self->slots) {
        free(self);
        return NULL;
    }
    self->capacity = S_MIN_CAPACITY;
    self->free_fn = free_fn;
    return self;
}

void
dv_map_destroy(dv_map_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dv_map_t *self = *self_p;
    for (size_t i = 0; i < self->capacity; i++)
        if (self->slots[i].key && self->free_fn)
            self->free_fn(self->slots[i].item);
    free(self->slots);
    free(self);
    *self_p = NULL;
}

/* The slot holding key, or the empty slot where it would go. */
static s_slot_t *
s_find(const dv_map_t *self, const char *key, size_t len, uint64_t h)
{
    size_t mask = self->capacity - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        s_slot_t *s = &self->slots[i];
        if (!s->key ||
            (s->hash == h && s->len == len && !memcmp(s->key, key, len)))
            return s;
    }
}

/* Moves the table to cap slots (a power of two, more than twice the
 * size). Returns 0, or -1 when out of memory (nothing changed). */
static int
s_resize(dv_map_t *self, size_t cap)
{
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

void *
dv_map_getn(const dv_map_t *self, const char *key, size_t len)
{
    if (!self)
        return NULL;
    const s_slot_t *s = s_find(self, key, len, s_hash(key, len));
    return s->key ? s->item : NULL;
}

void *
dv_map_get(const dv_map_t *self, const char *key)
{
    return dv_map_getn(self, key, strlen(key));
}

int
dv_map_putn(dv_map_t *self, const char *key, size_t len, void *item)
{
    uint64_t h = s_hash(key, len);
    if (s_find(self, key, len, h)->key)
        return -1;
    if ((self->size + 1) * 2 > self->capacity &&
        s_resize(self, self->capacity * 2) != 0)
        return -1;
    s_slot_t *s = s_find(self, key, len, h);
    s->key = key;
    s->len = len;
    s->item = item;
    s->hash = h;
    self->size++;
    return 0;
}

/* Empties slot i, moving back the entries after it that would no longer
 * be found past the hole. */
static void
s_remove_at(dv_map_t *self, size_t i)
{
    size_t mask = self->capacity - 1;
    for (size_t j = (i + 1) & mask; self->slots[j].key; j = (j + 1) & mask) {
        size_t home = (size_t)self->slots[j].hash & mask;
        /* The entry at j stays if its home lies cyclically in (i, j]. */
        bool stays = i < j ? home > i && home <= j : home > i || home <= j;
        if (!stays) {
            self->slots[i] = self->slots[j];
            i = j;
        }
    }
    memset(&self->slots[i], 0, sizeof self->slots[i]);
    self->size--;
}

int
dv_map_reserve(dv_map_t *self, size_t n)
{
    size_t cap = self->capacity;
    while (cap / 2 < n) {
        if (cap > SIZE_MAX / 2 / sizeof(s_slot_t))
            return -1;
        cap *= 2;
    }
    return cap == self->capacity ? 0 : s_resize(self, cap);
}

int
dv_map_put(dv_map_t *self, const char *key, void *item)
{
    return dv_map_putn(self, key, strlen(key), item);
}

void
dv_map_delete(dv_map_t *self, const char *key)
{
    dv_map_deleten(self, key, strlen(key));
}

void
dv_map_deleten(dv_map_t *self, const char *key, size_t len)
{
    s_slot_t *s = s_find(self, key, len, s_hash(key, len));
    if (!s->key)
        return;
    void *item = s->item;
    s_remove_at(self, (size_t)(s - self->slots));
    if (self->free_fn)
        self->free_fn(item);
}

void
dv_map_delete_if(dv_map_t *self, bool (*drop)(const void *item, void *ctx),
                 void *ctx)
{
    /* A removal can move a later entry into slot i, so i is looked at
     * again; an entry moved from the table's start to its end is asked
     * twice, which is harmless since drop is a pure test. */
    for (size_t i = 0; i < self->capacity;) {
        s_slot_t *s = &self->slots[i];
        if (s->key && drop(s->item, ctx)) {
            void *item = s->item;
            s_remove_at(self, i);
            if (self->free_fn)
                self->free_fn(item);
        } else {
            i++;
        }
    }
}

size_t
dv_map_size(const dv_map_t *self)
{
    return self ? self->size : 0;
}

void *
dv_map_next(const dv_map_t *self, size_t *pos)
{
    if (!self)
        return NULL;
    for (; *pos < self->capacity; (*pos)++) {
        const s_slot_t *s = &self->slots[*pos];
        if (s->key) {
            (*pos)++;
            return s->item;
        }
    }
    return NULL;
}
