/* dv_util - small helpers: string lists, environment defaults. */
#ifndef DV_UTIL_H
#define DV_UTIL_H

#include <stddef.h>

/* Splits a comma-separated list ("a,b, c") into a NULL-terminated vector of
 * trimmed, non-empty strings. Caller frees with dv_strv_free(). Returns the
 * number of items (0 for NULL or empty input). */
int dv_strv_split(const char *s, char ***out);
void dv_strv_free(char ***v);

/* getenv(name) if set and non-empty, else dflt. */
const char *dv_env_or(const char *name, const char *dflt);

/* Which store a --store URL names (the broker's and the collector's use
 * the same rules): "sqlite:PATH", "sqlite://PATH" or a bare path is
 * SQLite, *arg the path; "postgres://..." or "postgresql://..." (any case)
 * is PostgreSQL, *arg the whole URL; any other "scheme://..." is unknown,
 * *scheme_len the scheme's length (say only the scheme: the rest may hold
 * a password). */
typedef enum { DV_STORE_SQLITE, DV_STORE_PG, DV_STORE_UNKNOWN } dv_store_kind_t;
dv_store_kind_t dv_store_url(const char *url, const char **arg,
                             size_t *scheme_len);

/* Reads a whole file into a new NUL-terminated buffer; caller frees. */
char *dv_read_file(const char *path, size_t *len);

#endif
