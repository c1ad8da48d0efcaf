/* dv_map - a hash map from a string key to an item: the collector's live
 * state (queues, types, series, workers, running jobs) and the tables its
 * views build; libdrover and `drover submit` match results to the ids they
 * asked about with it.
 *
 * Unlike czmq's zhashx, a failed allocation is an error the caller sees
 * (dv_map_put() returns -1), never an abort: a daemon keeps serving when
 * memory runs short (docs/conventions.md, "Out of memory").
 *
 * Keys are bytes with a length (the *n functions) or C strings. They are
 * not copied: a key must stay valid and unchanged for as long as its item
 * is in the map, so it lives inside the item (or the caller's array). Open addressing
 * with linear probing, kept at most half full; a lookup or a delete
 * allocates nothing, and a put only when the table doubles. Not
 * thread-safe: one thread owns a map.
 */
#ifndef DV_MAP_H
#define DV_MAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct dv_map_t dv_map_t;

/* Frees one item; called on delete and destroy. */
typedef void(dv_map_free_fn)(void *item);

/* New empty map whose items free_fn frees (NULL: items are not freed).
 * Returns NULL when out of memory. Caller destroys it. */
dv_map_t *dv_map_new(dv_map_free_fn *free_fn);

/* Frees every item and the map; sets *self_p to NULL. NULL-safe. */
void dv_map_destroy(dv_map_t **self_p);

/* The item under key, or NULL. A NULL map is empty (here, in
 * dv_map_size() and in dv_map_next()). */
void *dv_map_get(const dv_map_t *self, const char *key);

/* The same for a key of len bytes (need not be NUL-terminated). */
void *dv_map_getn(const dv_map_t *self, const char *key, size_t len);

/* Adds item under key, which must not be in the map yet. The map owns the
 * item from then on. Returns 0, or -1 when out of memory (or key is
 * there already): then the caller still owns the item. Must not be
 * called while walking the map. */
int dv_map_put(dv_map_t *self, const char *key, void *item);

/* The same for a key of len bytes (need not be NUL-terminated). */
int dv_map_putn(dv_map_t *self, const char *key, size_t len, void *item);

/* Makes room for n items in all, so that putting them moves nothing (a
 * table grown by doubling moves every item each time). Returns 0, or -1
 * when out of memory (the map is unchanged). */
int dv_map_reserve(dv_map_t *self, size_t n);

/* Removes key's item, if any, and frees it. Not while walking the map
 * (it moves items): collect first, or use dv_map_delete_if(). */
void dv_map_delete(dv_map_t *self, const char *key);

/* The same for a key of len bytes (need not be NUL-terminated). */
void dv_map_deleten(dv_map_t *self, const char *key, size_t len);

/* Removes and frees every item for which drop(item, ctx) is true. drop
 * may be asked more than once about an item, so it must only look. */
void dv_map_delete_if(dv_map_t *self, bool (*drop)(const void *item, void *ctx),
                      void *ctx);

/* Number of items. */
size_t dv_map_size(const dv_map_t *self);

/* Walks the items in table order: start with *pos = 0; returns the next
 * item, or NULL at the end.
 *     size_t pos = 0;
 *     for (item_t *it; (it = dv_map_next(map, &pos));) ...
 */
void *dv_map_next(const dv_map_t *self, size_t *pos);

/* The same walk as a loop header: `DV_MAP_EACH(q, self->queues) {...}`
 * with q a pointer of the items' type. Nothing may be added or deleted
 * during the walk. */
#define DV_MAP_EACH(it, map)                                                   \
    for (size_t it##_pos = 0; ((it) = dv_map_next((map), &it##_pos));)

#endif
