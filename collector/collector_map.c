/* collector_map - open addressing with linear probing and deletion
 * markers; the table is rebuilt when live items and markers fill half. */
#include "collector_map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define S_MIN_CAPACITY 16

/* A slot whose item was deleted: probes go on past it. */
static const char s_deleted[1];

typedef struct {
    const char *key; /* NULL: empty; s_deleted: deleted */
    void *item;
    uint64_t hash;
} s_slot_t;

struct collector_map_t {
    s_slot_t *slots; /* capacity entries, a power of two */
    size_t capacity;
    size_t size;    /* live items */
    size_t deleted; /* deletion markers */
    collector_map_free_fn *free_fn;
};

static uint64_t
s_hash(const char *key)
{
    /* FNV-1a, then a final mix so the low bits depend on every byte. */
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

collector_map_t *
collector_map_new(collector_map_free_fn *free_fn)
{
    collector_map_t *self = calloc(1, sizeof *self);
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
collector_map_destroy(collector_map_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    collector_map_t *self = *self_p;
    for (size_t i = 0; i < self->capacity; i++) {
        s_slot_t *s = &self->slots[i];
        if (s->key && s->key != s_deleted && self->free_fn)
            self->free_fn(s->item);
    }
    free(self->slots);
    free(self);
    *self_p = NULL;
}

/* The live slot holding key, or NULL. */
static s_slot_t *
s_find(const collector_map_t *self, const char *key, uint64_t h)
{
    size_t mask = self->capacity - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        s_slot_t *s = &self->slots[i];
        if (!s->key)
            return NULL;
        if (s->key != s_deleted && s->hash == h && !strcmp(s->key, key))
            return s;
    }
}

/* Rebuilds the table at a capacity that keeps it at most half full with
 * one more item, dropping the deletion markers. Returns 0 or -1. */
static int
s_rebuild(collector_map_t *self)
{
    size_t cap = S_MIN_CAPACITY;
    while (cap < (self->size + 1) * 4)
        cap <<= 1;
    s_slot_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < self->capacity; i++) {
        const s_slot_t *s = &self->slots[i];
        if (!s->key || s->key == s_deleted)
            continue;
        size_t j = (size_t)s->hash & (cap - 1);
        while (slots[j].key)
            j = (j + 1) & (cap - 1);
        slots[j] = *s;
    }
    free(self->slots);
    self->slots = slots;
    self->capacity = cap;
    self->deleted = 0;
    return 0;
}

void *
collector_map_get(const collector_map_t *self, const char *key)
{
    if (!self)
        return NULL;
    const s_slot_t *s = s_find(self, key, s_hash(key));
    return s ? s->item : NULL;
}

int
collector_map_put(collector_map_t *self, const char *key, void *item)
{
    uint64_t h = s_hash(key);
    if (s_find(self, key, h))
        return -1;
    if ((self->size + self->deleted + 1) * 2 > self->capacity &&
        s_rebuild(self) != 0)
        return -1;
    size_t mask = self->capacity - 1;
    size_t i = (size_t)h & mask;
    while (self->slots[i].key && self->slots[i].key != s_deleted)
        i = (i + 1) & mask;
    s_slot_t *s = &self->slots[i];
    if (s->key == s_deleted)
        self->deleted--;
    s->key = key;
    s->item = item;
    s->hash = h;
    self->size++;
    return 0;
}

void
collector_map_delete(collector_map_t *self, const char *key)
{
    s_slot_t *s = s_find(self, key, s_hash(key));
    if (!s)
        return;
    void *item = s->item;
    s->key = s_deleted;
    s->item = NULL;
    self->size--;
    self->deleted++;
    if (self->free_fn)
        self->free_fn(item);
}

size_t
collector_map_size(const collector_map_t *self)
{
    return self ? self->size : 0;
}

void *
collector_map_next(const collector_map_t *self, size_t *pos)
{
    if (!self)
        return NULL;
    for (; *pos < self->capacity; (*pos)++) {
        const s_slot_t *s = &self->slots[*pos];
        if (s->key && s->key != s_deleted) {
            (*pos)++;
            return s->item;
        }
    }
    return NULL;
}
