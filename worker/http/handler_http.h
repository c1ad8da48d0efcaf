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
 * Times are set per loop pass (handler_http_set_time). Not thread-safe.
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
#include "worker_outbox.h"

typedef struct handler_http_t handler_http_t;

/* A lane for the http handlers in cfg->http (may be none: then the lane
 * owns no type and every call is cheap). cfg and name must outlive it;
 * reports go to outbox. Returns NULL with a reason in err if curl cannot
 * start or out of memory. */
handler_http_t *handler_http_new(const worker_config_t *cfg,
                                 const char *name, worker_outbox_t *outbox,
                                 char *err, size_t err_size);

/* Aborts every request (no reports) and frees the lane. NULL-safe. */
void handler_http_destroy(handler_http_t **self_p);

/* True if jobs of this type run in the lane. */
bool handler_http_owns(const handler_http_t *self, dv_str_t type);

/* Jobs the lane may have in flight, 0 with no http handler: what it adds
 * to the credit the worker announces. */
int handler_http_capacity(const handler_http_t *self);

/* Sets the clock for this loop pass. */
void handler_http_set_time(handler_http_t *self, int64_t mono_ms,
                           int64_t wall_ms);

/* Takes a job from the broker (its type is owned). Returns 0 if taken, 1
 * if already held (a newer attempt number is adopted), -1 if refused (id
 * too long; logged). While draining the job is returned at once. */
int handler_http_add(handler_http_t *self, const dv_job_t *job);

/* KILL from the broker: drops or aborts the job and reports it
 * "cancelled". Returns 0, or -1 if the lane does not hold it. */
int handler_http_cancel(handler_http_t *self, dv_str_t id, dv_str_t reason);

/* Sockets curl waits on now: an upper bound for poll items. */
int handler_http_poll_count(const handler_http_t *self);

/* Appends a poll item per curl socket to items (at most max); returns how
 * many. After zmq_poll, pass the same items to handler_http_io, which
 * also runs curl's timeout when due and settles finished requests. */
int handler_http_poll_items(handler_http_t *self, zmq_pollitem_t *items,
                            int max);
void handler_http_io(handler_http_t *self, const zmq_pollitem_t *items,
                     int n);

/* Starts waiting jobs that may go now. */
void handler_http_dispatch(handler_http_t *self);

/* Earliest monotonic ms at which the lane has work without socket
 * activity (curl's timeout, a key or breaker becoming usable), or
 * INT64_MAX. */
int64_t handler_http_next_deadline(const handler_http_t *self);

/* Draining: jobs not sent yet are returned; requests in flight finish. */
void handler_http_drain(handler_http_t *self);

/* End of the grace period: every request in flight is aborted and fails
 * "timeout". */
void handler_http_stop_running(handler_http_t *self);

/* Jobs held: waiting or in flight. */
size_t handler_http_held_count(const handler_http_t *self);

/* Appends the jobs held to held (capacity max), for HELLO. Id views stay
 * valid until the lane next changes. Returns the count. */
size_t handler_http_held(const handler_http_t *self, dv_held_t *held,
                         size_t max);

/* Requests in flight / jobs waiting for a slot, key or breaker. */
int handler_http_in_flight(const handler_http_t *self);
size_t handler_http_waiting(const handler_http_t *self);

/* Map entries the lane adds to the heartbeat body: 0 without http
 * handlers, else 2 ("http" and "keys"); handler_http_pack_metrics packs
 * them (keys and values) into pk. Shapes in docs/protocol.md. */
int handler_http_metrics_count(const handler_http_t *self);
void handler_http_pack_metrics(const handler_http_t *self,
                               msgpack_packer *pk);

/* Writes the lane, its breakers and its keys (ids only) to the log
 * (SIGUSR1). */
void handler_http_dump(const handler_http_t *self);

#endif
