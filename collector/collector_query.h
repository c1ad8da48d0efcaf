/* collector_query - the collector's query verbs, shared by the ROUTER
 * socket (ctrl in, reply out) and HTTP /api.
 *
 * Verbs and their arguments (docs/collector.md has the answers' fields):
 *
 *   status                  brokers, workers online/busy, queues with depth,
 *                           rates and latency, types, failures by category
 *                           over the last hour, health
 *   workers                 every worker, with its running jobs
 *   queues                  every queue, and per-type latencies
 *   jobs    state, queue, type, batch, since, limit
 *                           history, most recently active first
 *   job     id              one job and every attempt
 *   keys                    API keys as the workers report them
 *   fleet_keys              API keys as the broker holds them fleet-wide
 *                           (its latest keys.state; {keys: []} if none)
 *   batch   name            counts by state, first/last, rate, ETA
 *   health                  0 healthy, 1 degraded, 2 down, with reasons
 *   running                 the jobs running now, as last seen
 *
 * Arguments come as one JSON object. Values may be strings where a number
 * is expected (HTTP query strings); `since` is epoch milliseconds, or,
 * when smaller than 10^11, seconds ago (a duration such as "10m" too).
 */
#ifndef COLLECTOR_QUERY_H
#define COLLECTOR_QUERY_H

#include <jansson.h>
#include <stdint.h>

#include "collector_state.h"
#include "collector_store.h"

typedef struct {
    collector_state_t *state;
    collector_store_t *store;
    const char *bind; /* query socket endpoint */
    char http[64];    /* HTTP address:port actually bound; "" = off */
    int64_t started_ms;
} collector_query_t;

/* Answers verb with args (a JSON object, or NULL for none). Returns a new
 * reference to the answer's body (*code DV_CODE_NONE); or NULL with a
 * one-line reason in why and *code saying why: DV_CODE_INVALID_ARGUMENT (a
 * bad argument), DV_CODE_UNKNOWN_VERB, DV_CODE_NOT_FOUND (no such job),
 * DV_CODE_STORE (the history store failed) or DV_CODE_NO_MEMORY. The code
 * goes to the peer as it is. Never aborts on any input, nor when an
 * allocation fails. */
json_t *collector_query_run(const collector_query_t *q, const char *verb,
                            const json_t *args, int64_t now_ms, dv_code_t *code,
                            char *why, size_t why_size);

/* The HTTP status that answers a query with that code: 200 for none, 400
 * for a bad argument or verb, 404 for not found, else 500. */
int collector_query_http_status(dv_code_t code);

#endif
