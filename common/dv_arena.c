#include "dv_arena.h"

#include <stdalign.h>
#include <stdlib.h>

struct dv_arena_chunk {
    dv_arena_chunk_t *next;
    size_t used, cap;
    max_align_t data[];
};

void *
dv_arena_alloc(dv_arena_t *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    n = (n + align - 1) & ~(align - 1);
    /* The chunk being filled, else the next one (kept from an earlier
     * round, empty), else a new one after it. */
    dv_arena_chunk_t *c = a->cur ? a->cur : a->chunks;
    if (c && c->cap - c->used < n) {
        c = a->cur ? c->next : NULL;
        if (c && c->cap < n)
            c = NULL;
    }
    if (!c) {
        size_t cap = n > DV_ARENA_CHUNK ? n : DV_ARENA_CHUNK;
        c = malloc(sizeof *c + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        /* After the one being filled: the empty ones kept stay after it. */
        if (a->cur) {
            c->next = a->cur->next;
            a->cur->next = c;
        } else {
            c->next = a->chunks;
            a->chunks = c;
        }
    }
    a->cur = c;
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

void
dv_arena_reset(dv_arena_t *a, size_t keep_bytes)
{
    size_t kept = 0;
    dv_arena_chunk_t **pp = &a->chunks;
    while (*pp) {
        dv_arena_chunk_t *c = *pp;
        if (kept + c->cap <= keep_bytes) {
            kept += c->cap;
            c->used = 0;
            pp = &c->next;
        } else {
            *pp = c->next;
            free(c);
        }
    }
    a->cur = NULL;
}

void
dv_arena_free(dv_arena_t *a)
{
    dv_arena_reset(a, 0);
}
