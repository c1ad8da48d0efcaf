/* dv_arena - a bump allocator for records that die together.
 *
 * Memory for many small records that are all freed at one moment (the ops
 * of a write group, the jobs that ended in it) is carved out of chunks the
 * arena owns: an allocation is a pointer bump, and freeing them all is a
 * reset. A reset keeps up to keep_bytes of chunks for the next round, so
 * once the chunks have grown to the working size a round costs no malloc
 * at all. An allocation bigger than a chunk gets a chunk of its own.
 * Not thread-safe: one owner at a time (a write group passes between the
 * loop and the writer thread whole). */
#ifndef DV_ARENA_H
#define DV_ARENA_H

#include <stddef.h>

typedef struct dv_arena_chunk dv_arena_chunk_t;

typedef struct {
    dv_arena_chunk_t *chunks; /* in order; the ones after cur are empty */
    dv_arena_chunk_t *cur;    /* being filled, or NULL */
} dv_arena_t;

#define DV_ARENA_CHUNK (64u << 10)

/* n bytes aligned for any type, or NULL when out of memory. */
void *dv_arena_alloc(dv_arena_t *a, size_t n);

/* Forgets every allocation; keeps the first keep_bytes of chunks. */
void dv_arena_reset(dv_arena_t *a, size_t keep_bytes);

/* Frees everything (the arena is empty and usable after). */
void dv_arena_free(dv_arena_t *a);

#endif
