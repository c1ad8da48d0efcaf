/* collector_access - who may reach the collector: its secret files (the
 * HTTP bearer token, the TLS key), whether an endpoint stays on this host,
 * and the bearer check of an HTTP request.
 *
 * Called by collector_main at start (files, endpoints) and by
 * collector_http per request (collector_access_bearer_ok). Nothing here
 * logs, and no secret is ever written into err: only paths and reasons.
 * Never blocks, except on reading the files.
 */
#ifndef COLLECTOR_ACCESS_H
#define COLLECTOR_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

/* Reads a secret file whole: path must name a regular file that neither
 * its group nor others may read or write (mode 0600 or 0400). what names
 * the flag in err ("--http-token"). Returns the text, NUL-terminated, with
 * its length in *len; caller owns it and frees it with
 * collector_access_free_secret(). NULL with the reason in err. */
char *collector_access_read_secret(const char *path, const char *what,
                                   size_t *len, char *err, size_t err_size);

/* Like collector_access_read_secret, for a file of one bearer token: a
 * trailing newline ("\n" or "\r\n") is dropped; an empty token, or one with
 * spaces or control characters, is refused. */
char *collector_access_read_token(const char *path, const char *what, char *err,
                                  size_t err_size);

/* Reads a file that need not be secret (a certificate). Caller frees.
 * NULL with the reason in err. */
char *collector_access_read_public(const char *path, const char *what,
                                   char *err, size_t err_size);

/* Wipes and frees a secret from the functions above; sets *secret_p to
 * NULL. NULL-safe. */
void collector_access_free_secret(char **secret_p);

/* True when the Authorization header value is "Bearer TOKEN" with exactly
 * token (the scheme's case does not matter). The comparison takes the same
 * time wherever the first difference lies. header may be NULL. */
bool collector_access_bearer_ok(const char *header, const char *token);

#endif
