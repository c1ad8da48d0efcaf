/* collector_http - the collector's HTTP side (libmicrohttpd): GET /metrics
 * in the Prometheus text format and GET /api/... in JSON.
 *
 * The daemon has no thread of its own: it runs in the collector's loop
 * (its epoll descriptor joins the loop's zmq_poll, and collector_http_run()
 * does the work), so handlers read the live state without locks and an
 * answer is always consistent with one pass.
 *
 * Routes: /metrics, /api/status, /api/workers, /api/queues, /api/keys,
 * /api/health, /api/jobs?state=&queue=&type=&batch=&since=&limit=,
 * /api/jobs/ID, /api/batches/NAME. Errors are JSON {"error": reason} with
 * 400, 401, 404, 405 or 500.
 *
 * Access: with a token, every path but /metrics needs "Authorization:
 * Bearer TOKEN" (and /metrics too with metrics_token); a request without
 * it gets 401 with "WWW-Authenticate: Bearer". With a certificate and key,
 * the server speaks HTTPS only (libmicrohttpd's GnuTLS support).
 */
#ifndef COLLECTOR_HTTP_H
#define COLLECTOR_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "collector_query.h"

typedef struct collector_http_t collector_http_t;

/* Who may ask, and over what. The strings are read at collector_http_new
 * and must outlive the server; the server never logs them. */
typedef struct {
    const char *token;  /* bearer token, or NULL: no token asked for */
    bool metrics_token; /* /metrics needs the token too */
    const char *cert;   /* PEM certificate (chain), or NULL: plain HTTP */
    const char *key;    /* PEM private key of cert; both or neither */
} collector_http_access_t;

/* Listens on addr ("127.0.0.1:7780", "[::1]:7780", "*:7780"; port 0 picks
 * a free one) and answers from q, which must outlive the server. access
 * may be NULL (open, plain HTTP). Returns NULL after logging why
 * (collector.http_failed). */
collector_http_t *collector_http_new(const char *addr,
                                     const collector_query_t *q,
                                     const collector_http_access_t *access);

/* The HTTP status of a successful answer to verb: 404 for a batch no job
 * of which was seen, 503 for health when a broker is down, else 200. */
unsigned collector_http_status_of(const char *verb, const json_t *body);

/* 1 when addr resolves, as collector_http_new would bind it, to a loopback
 * address (127.0.0.0/8, ::1); 0 when it reaches beyond this host ("*",
 * another address); -1 with the reason in err when it does not resolve. */
int collector_http_addr_is_loopback(const char *addr, char *err,
                                    size_t err_size);

/* True when this libmicrohttpd was built with TLS (GnuTLS). */
bool collector_http_tls_supported(void);

/* Stops listening, closes connections, frees; sets *self_p to NULL.
 * NULL-safe. */
void collector_http_destroy(collector_http_t **self_p);

/* The descriptor to poll for input (an epoll set). */
int collector_http_fd(const collector_http_t *self);

/* Milliseconds until the server needs collector_http_run() even without
 * input (connection timeouts), or -1 for no such need. */
long collector_http_timeout(collector_http_t *self);

/* Does whatever is ready: accepts, reads, answers. Never blocks. */
void collector_http_run(collector_http_t *self);

/* "ADDRESS:PORT" as bound (the port resolved when 0 was asked for). */
const char *collector_http_address(const collector_http_t *self);

#endif
