/* dv_idmap - a hash map from job id text to an index, for matching
 * results to the jobs a caller asked about. Shared: libdrover matches results to ids with it; the worker finds its jobs by id.
 *
 * Keys are not copied: the caller keeps every key's bytes alive and unchanged
 * for as long as the map lives. Not thread-safe. */
#ifndef DV_IDMAP_H
#define DV_IDMAP_H

#include <stddef.h>
#include <stdint.h>

#define DV_IDMAP_NONE SIZE_MAX

typedef struct dv_idmap_t dv_idmap_t;

/* New empty map sized for about `expected` keys (it grows past that).
 * Returns NULL when out of memory. Caller destroys it. */
dv_idmap_t *dv_idmap_new(size_t expected);

/* Frees the map (not the keys); sets *self_p to NULL. NULL-safe. */
void dv_idmap_destroy(dv_idmap_t **self_p);

/* Maps key (len bytes) to value unless the key is already there. Returns the
 * value the key maps to afterwards (the earlier one if it was present), or
 * DV_IDMAP_NONE when out of memory. value must not be
 * DV_IDMAP_NONE. */
size_t dv_idmap_put(dv_idmap_t *self, const char *key, size_t len,
                          size_t value);

/* The value for key, or DV_IDMAP_NONE if absent. */
size_t dv_idmap_get(const dv_idmap_t *self, const char *key,
                          size_t len);

/* Number of keys. */
size_t dv_idmap_size(const dv_idmap_t *self);

#endif
