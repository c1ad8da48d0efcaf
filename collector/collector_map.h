/* collector_map - a hash map from a C string to an item, for the
 * collector's live state (queues, types, series, workers, running jobs)
 * and the temporary tables its views build.
 *
 * Unlike czmq's zhashx, a failed allocation is an error the caller sees
 * (collector_map_put() returns -1), never an abort: the collector keeps
 * serving when memory runs short (docs/conventions.md, "Out of memory").
 *
 * Keys are not copied: a key must stay valid and unchanged for as long as
 * its item is in the map, so it lives inside the item. Open addressing
 * with linear probing, kept at most half full; a lookup or a delete
 * allocates nothing, and a put only when the table doubles. Not
 * thread-safe: the collector's loop thread owns every map.
 */
#ifndef COLLECTOR_MAP_H
#define COLLECTOR_MAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct collector_map_t collector_map_t;

/* Frees one item; called on delete and destroy. */
typedef void(collector_map_free_fn)(void *item);

/* New empty map whose items free_fn frees (NULL: items are not freed).
 * Returns NULL when out of memory. Caller destroys it. */
collector_map_t *collector_map_new(collector_map_free_fn *free_fn);

/* Frees every item and the map; sets *self_p to NULL. NULL-safe. */
void collector_map_destroy(collector_map_t **self_p);

/* The item under key, or NULL. A NULL map is empty (here, in
 * collector_map_size() and in collector_map_next()). */
void *collector_map_get(const collector_map_t *self, const char *key);

/* Adds item under key, which must not be in the map yet. The map owns the
 * item from then on. Returns 0, or -1 when out of memory (or key is
 * there already): then the caller still owns the item. Must not be
 * called while walking the map. */
int collector_map_put(collector_map_t *self, const char *key, void *item);

/* Removes key's item, if any, and frees it. Not while walking the map
 * (it moves items): collect first, or use collector_map_delete_if(). */
void collector_map_delete(collector_map_t *self, const char *key);

/* Removes and frees every item for which drop(item, ctx) is true. drop
 * may be asked more than once about an item, so it must only look. */
void collector_map_delete_if(collector_map_t *self,
                             bool (*drop)(const void *item, void *ctx),
                             void *ctx);

/* Number of items. */
size_t collector_map_size(const collector_map_t *self);

/* Walks the items in table order: start with *pos = 0; returns the next
 * item, or NULL at the end.
 *     size_t pos = 0;
 *     for (item_t *it; (it = collector_map_next(map, &pos));) ...
 */
void *collector_map_next(const collector_map_t *self, size_t *pos);

/* The same walk as a loop header: `COLLECTOR_EACH(q, self->queues) {...}`
 * with q a pointer of the items' type. Nothing may be added or deleted
 * during the walk. */
#define COLLECTOR_EACH(it, map)                                                \
    for (size_t it##_pos = 0; ((it) = collector_map_next((map), &it##_pos));)

#endif
