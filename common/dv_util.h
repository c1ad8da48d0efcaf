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

/* Reads a whole file into a new NUL-terminated buffer; caller frees. */
char *dv_read_file(const char *path, size_t *len);

#endif
