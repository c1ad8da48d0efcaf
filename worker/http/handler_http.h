/* handler_http - the http lane: jobs whose type has an http handler run in
 * the supervisor itself, as requests on libcurl's multi interface, next to
 * the prefork pool. One lane carries hundreds of requests at once
 * (--http-concurrency) without a process or a thread each: curl tells the
 * lane which sockets it waits on and when its next timeout is, the
 * supervisor adds those sockets to its zmq_poll set, and the lane hands
 * readiness and timeouts back to curl.
 *
 * A job that arrives waits in the lane's FIFO until a request slot is free,
 * its endpoint's breaker lets it go and its handler's key pool has a usable
 * key (see keypool.h, breaker.h). Then the lane renders the request from the
 * handler's templates and the payload (http_template.h) and sends it. What
 * becomes of it (reports go to the outbox):
 *   - 2xx: succeeded; the result is the response (JSON if it parses, else
 *     text), or the value at the handler's "result" JSON pointer;
 *   - 429: failed rate_limited, retryable, retry_after = the key's
 *     cooldown (Retry-After, else a backoff), key_id set;
 *   - 401/403: the key is disabled and the same attempt goes again at once
 *     on another key; with every key disabled: failed auth, retryable;
 *   - 5xx, no connection, connection reset: failed upstream, retryable,
 *     counted by the endpoint's breaker; while it is open, jobs fail
 *     upstream at once with retry_after = the time left;
 *   - the attempt's time limit: failed timeout, retryable;
 *   - other 4xx, a payload the template cannot use: failed invalid_input,
 *     not retryable;
 *   - no key usable within the handler's max_wait: failed rate_limited
 *     with retry_after = when one will be.
 * Keys appear in request headers only; failures and logs carry key ids.
 *
 * Out of memory while serving: a job that cannot be taken is returned; a
 * request that cannot be built waits in line and is tried again shortly;
 * an outcome the outbox cannot take stays with the job for a later pass.
 *
 * Times are set per loop pass (the lane's set_time). Not thread-safe.
 */
#ifndef HANDLER_HTTP_H
#define HANDLER_HTTP_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "dv_proto.h"
#include "worker_config.h"
#include "worker_lane.h"
#include "worker_outbox.h"

typedef struct handler_http_t handler_http_t;

/* A lane for the http handlers in cfg->http (may be none: then the lane
 * owns no type and every call is cheap). cfg and name must outlive it;
 * reports go to outbox. Returns NULL with a reason in err if curl cannot
 * start or out of memory. */
handler_http_t *handler_http_new(const worker_config_t *cfg, const char *name,
                                 worker_outbox_t *outbox, char *err,
                                 size_t err_size);

/* Aborts every request (no reports) and frees the lane. NULL-safe. */
void handler_http_destroy(handler_http_t **self_p);

/* The lane (worker_lane.h). It owns the job types that have an http
 * handler; its capacity is --http-concurrency (0 without handlers). Its
 * heartbeat entries are "http" and "keys" (none without handlers); shapes
 * in docs/protocol.md. */
worker_lane_t handler_http_lane(handler_http_t *self);

#endif
