/* dv_log - structured logging, one JSON object per line on stderr.
 *
 *   dv_log(DV_WARN, "broker.worker_expired", DV_STR("worker", id),
 *          DV_INT("idle_ms", ms));
 *
 * The first string is a stable dotted event id (tests and operators filter on
 * it). The level is checked before anything is formatted. Never pass secrets
 * or bodies: log sizes and ids. Writes are one write(2) per line, so lines from
 * several processes sharing stderr do not interleave.
 */
#ifndef DV_LOG_H
#define DV_LOG_H

#include <stdint.h>

typedef enum { DV_DEBUG = 0, DV_INFO, DV_WARN, DV_ERROR, DV_OFF } dv_level_t;

typedef enum {
    DV_F_END = 0,
    DV_F_STR,
    DV_F_INT,
    DV_F_DBL,
    DV_F_BOOL
} dv_ftype_t;

typedef struct {
    const char *key; /* field name; NULL marks the sentinel */
    dv_ftype_t type; /* which member below holds the value */
    const char *s;   /* DV_F_STR: NUL-terminated, NULL prints null */
    long long i;     /* DV_F_INT / DV_F_BOOL */
    double d;        /* DV_F_DBL */
} dv_field_t;

#define DV_STR(k, v)  ((dv_field_t){ (k), DV_F_STR, (v), 0, 0 })
#define DV_INT(k, v)  ((dv_field_t){ (k), DV_F_INT, NULL, (long long)(v), 0 })
#define DV_DBL(k, v)  ((dv_field_t){ (k), DV_F_DBL, NULL, 0, (double)(v) })
#define DV_BOOL(k, v) ((dv_field_t){ (k), DV_F_BOOL, NULL, !!(v), 0 })

extern dv_level_t dv_log_threshold;

#define dv_log(lvl, event, ...)                                                \
    do {                                                                       \
        if ((lvl) >= dv_log_threshold) {                                       \
            const dv_field_t dv__f[] = { { 0 }, __VA_ARGS__ };                 \
            dv_log_emit((lvl), (event), __FILE__, __LINE__, dv__f + 1,         \
                        sizeof dv__f / sizeof dv__f[0] - 1);                   \
        }                                                                      \
    } while (0)

/* Sets the component name printed in every line ("broker", "worker", ...),
 * the threshold, and the format (text = human-readable, else JSON lines). */
void dv_log_init(const char *component, dv_level_t threshold, int text);

/* Parses "debug|info|warn|error|off"; returns -1 if unknown. */
int dv_log_level_parse(const char *name);

/* Implementation of dv_log(); call the macro instead. */
void dv_log_emit(dv_level_t lvl, const char *event, const char *file, int line,
                 const dv_field_t *fields, unsigned nfields);

#endif
