/* producer_idmap - a hash map from job id text to an index, for matching
 * results to the jobs a caller asked about. Internal to producer/.
 *
 * Keys are not copied: the caller keeps every key's bytes alive and unchanged
 * for as long as the map lives. Not thread-safe. */
#ifndef PRODUCER_IDMAP_H
#define PRODUCER_IDMAP_H

#include <stddef.h>
#include <stdint.h>

#define PRODUCER_IDMAP_NONE SIZE_MAX

typedef struct producer_idmap_t producer_idmap_t;

/* New empty map sized for about `expected` keys (it grows past that).
 * Returns NULL when out of memory. Caller destroys it. */
producer_idmap_t *producer_idmap_new(size_t expected);

/* Frees the map (not the keys); sets *self_p to NULL. NULL-safe. */
void producer_idmap_destroy(producer_idmap_t **self_p);

/* Maps key (len bytes) to value unless the key is already there. Returns the
 * value the key maps to afterwards (the earlier one if it was present), or
 * PRODUCER_IDMAP_NONE when out of memory. value must not be
 * PRODUCER_IDMAP_NONE. */
size_t producer_idmap_put(producer_idmap_t *self, const char *key, size_t len,
                          size_t value);

/* The value for key, or PRODUCER_IDMAP_NONE if absent. */
size_t producer_idmap_get(const producer_idmap_t *self, const char *key,
                          size_t len);

/* Number of keys. */
size_t producer_idmap_size(const producer_idmap_t *self);

#endif
