/* dv_id - job ids: UUIDv7 (RFC 9562), time-ordered and globally unique,
 * 16 bytes in memory, 36 characters as text. */
#ifndef DV_ID_H
#define DV_ID_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define DV_ID_TEXT_LEN 36

typedef struct {
    uint8_t b[16];
} dv_id_t;

/* New UUIDv7: 48-bit ms timestamp, then a counter seeded randomly per ms so
 * ids made by one process are strictly increasing. Not thread-safe. */
void dv_id_new(dv_id_t *id);

/* Writes the 36-character text form plus NUL into out (37 bytes). */
void dv_id_format(const dv_id_t *id, char out[DV_ID_TEXT_LEN + 1]);

/* Parses the 36-character text form (len bytes, need not be NUL-terminated).
 * Returns 0, or -1 if it is not a UUID. */
int dv_id_parse(const char *text, unsigned len, dv_id_t *id);

/* The id's timestamp (ms since the epoch). */
int64_t dv_id_time_ms(const dv_id_t *id);

static inline bool
dv_id_eq(const dv_id_t *a, const dv_id_t *b)
{
    /* memcmp, not uint64_t loads: dv_id_t is byte-aligned. */
    return memcmp(a->b, b->b, sizeof a->b) == 0;
}

#endif
