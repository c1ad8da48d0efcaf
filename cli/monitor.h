/* monitor - what the collector-backed commands share (cli/monitor.c,
 * cli/top.c): asking the collector, and formatting for 80 columns. */
#ifndef MONITOR_H
#define MONITOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "cli_out.h"

/* Used when neither --collector nor DROVER_COLLECTOR says otherwise. */
#define MONITOR_DEFAULT_ENDPOINT "tcp://127.0.0.1:7703"

/* flag if set, else $DROVER_COLLECTOR, else MONITOR_DEFAULT_ENDPOINT. */
const char *monitor_endpoint(const char *flag);

/* The queue table of status, queues and top: name, state (active or
 * paused), depth, workers serving it, rate limit and running limit. Names
 * are cut with an ellipsis unless wide. */
void monitor_queue_table(FILE *out, const json_t *queues, bool wide);

/* Sends verb (with an optional job id and JSON object of arguments) to the
 * collector at endpoint and waits up to timeout_ms for the answer. On
 * success returns 0 with *body_out a new reference to the answer. Else
 * returns an exit code (cli_exit_t): 3 unreachable, 4 not found, 5 denied,
 * 1 otherwise refused or an unreadable answer, 2 a bad endpoint, after printing why to stderr
 * as "drover CMD: ..." unless quiet. Blocks. */
int monitor_query(const char *endpoint, const char *cmd, const char *verb,
                  const char *id, const char *args_json, int timeout_ms,
                  json_t **body_out, bool quiet);

/* Why the last monitor_query failed ("" after a success). */
const char *monitor_query_error(void);

/* Members of an answer: a number as an integer (0 if absent), a string
 * (dflt if absent). */
int64_t monitor_int(const json_t *o, const char *key);

/* Prints the broker's lease counters (stale, adopted, revoked,
 * rejoining) as one indented line, or nothing when all are 0. */
void monitor_print_leases(const json_t *counters);
const char *monitor_str(const json_t *o, const char *key, const char *dflt);

/* The collector's "keys" answer (API keys as the workers report them in
 * their heartbeats) as a table, or as JSON; note (if not NULL) first, on
 * stderr with json. Returns 0, or monitor_query's exit code. */
int monitor_keys(const char *collector, bool json, const char *note);

/* A one-line hint for a failure category, or NULL. */
const char *monitor_hint(const char *category);

#endif
