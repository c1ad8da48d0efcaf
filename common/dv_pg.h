/* dv_pg - what every PostgreSQL store of drover needs besides libpq
 * itself: text PostgreSQL will take, and URLs and messages without the
 * password. The broker's store (broker/store_pg.c) and the collector's
 * (collector/collector_store_pg.c) share them.
 */
#ifndef DV_PG_H
#define DV_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_str.h"

/* PostgreSQL refuses text that is not valid UTF-8 (drover's databases are
 * UTF-8) and a NUL in any text, and one such string would fail its whole
 * group at every retry. Returns s itself when its n bytes are fine; else
 * a NUL-terminated copy (in *copy, the caller frees it) in which each byte
 * that is not part of a well-formed sequence became U+FFFD; NULL with
 * *copy NULL when out of memory. */
const char *dv_pg_text(const char *s, size_t n, char **copy);

/* The parameters of one statement, as PQsendQueryPrepared takes them:
 * numbers as text, text repaired where PostgreSQL would refuse it
 * (dv_pg_text; the copies are owned here), counted strings and BYTEA in
 * binary. Start from { 0 }, add in the statement's order, send, then
 * dv_pg_params_free(). A parameter that could not be added (out of memory,
 * or more than DV_PG_MAX_PARAMS) sets oom: do not send the statement. */
#define DV_PG_MAX_PARAMS 24
typedef struct {
    int n;
    const char *values[DV_PG_MAX_PARAMS];
    int lengths[DV_PG_MAX_PARAMS];
    int formats[DV_PG_MAX_PARAMS];
    char num[DV_PG_MAX_PARAMS][32];
    char *owned[DV_PG_MAX_PARAMS];
    bool oom;
} dv_pg_params_t;

void dv_pg_params_free(dv_pg_params_t *p);
void dv_pg_p_null(dv_pg_params_t *p);
/* A NUL-terminated text; NULL is SQL NULL. */
void dv_pg_p_text(dv_pg_params_t *p, const char *s);
/* A counted string, as text in binary form (its bytes); a NULL ptr is SQL
 * NULL, an empty one the empty string. */
void dv_pg_p_str(dv_pg_params_t *p, dv_str_t v);
void dv_pg_p_int(dv_pg_params_t *p, int64_t v);
void dv_pg_p_double(dv_pg_params_t *p, double v);
/* BYTEA in binary form; NULL or empty is SQL NULL. */
void dv_pg_p_bytes(dv_pg_params_t *p, const void *ptr, size_t len);

/* The password in a libpq URL or conninfo string (a new string: free it),
 * or NULL when it has none (or cannot be parsed). */
char *dv_pg_password(const char *url);

/* Writes url into out (size bytes, always NUL-terminated, cut if it does
 * not fit) with its password masked as "***", wherever a URL can carry
 * one (scheme://user:PASSWORD@host, a password= parameter). Returns out. */
char *dv_pg_redact_url(const char *url, char *out, size_t size);

/* Copies s into out (size bytes) with every occurrence of password
 * replaced by "***" (password NULL or "": copied as it is), and without
 * libpq's trailing newline. */
void dv_pg_scrub(const char *password, const char *s, char *out, size_t size);

#endif
