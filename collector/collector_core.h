/* collector_core - the collector's loop: one thread around zmq_poll.
 *
 * Sockets: one SUB per broker (its events), one DEALER per broker (its
 * clients socket, for `status` snapshots), one ROUTER for queries, and the
 * HTTP server's epoll descriptor. Each pass of the loop:
 *
 *   1. drains up to a bounded batch of events from each SUB: checks the
 *      sequence number (a gap or a new broker instance asks for a
 *      snapshot), applies the event to the live state, and records it in
 *      the store's open group;
 *   2. commits the group (one transaction per pass);
 *   3. reads snapshot answers, and sends the snapshot requests that are
 *      due (periodic, after a gap, or at start); a request unanswered for
 *      the timeout marks the broker unreachable;
 *   4. answers queries on the ROUTER and HTTP, from the state and store;
 *      with CurveZMQ on the ROUTER, only the roles client, operator and
 *      observer may query (every verb is read-only), a worker key gets
 *      not_allowed;
 *   5. runs timers: retention, forgetting workers that left long ago.
 *
 * The loop never waits on the network; the store is local.
 */
#ifndef COLLECTOR_CORE_H
#define COLLECTOR_CORE_H

#include <stdint.h>

#include "collector_http.h"
#include "dv_curve.h"
#include "dv_curve_client.h"

typedef struct {
    char **events; /* brokers' PUB endpoints */
    int nevents;
    char **brokers; /* their clients endpoints, same order; NULL
                               or fewer: no snapshots for the rest */
    int nbrokers;
    const char *bind;                    /* ROUTER for queries */
    const char *http;                    /* ADDRESS:PORT, or NULL for none */
    collector_http_access_t http_access; /* token, TLS: never logged */
    const char *store;                   /* SQLite path */
    int64_t retention_ms;  /* history older than this is deleted */
    int64_t snapshot_ms;   /* periodic snapshot of each broker */
    int64_t timeout_ms;    /* unanswered status: broker unreachable */
    int events_hwm;        /* SUB receive high-water mark */
    dv_curve_keys_t curve; /* CurveZMQ client keys for the SUB and DEALER
                              sockets to the brokers (off: plain); the
                              collector wipes its copy when destroyed */
    dv_curve_config_t query_curve; /* CurveZMQ server on the query socket:
                                      our certificate and the allow-lists;
                                      secret_file NULL: plain */
} collector_config_t;

typedef struct collector_t collector_t;

/* Opens the store, binds the query socket and HTTP, connects to every
 * broker. Returns NULL after logging why. Strings in cfg must outlive the
 * collector. */
collector_t *collector_new(const collector_config_t *cfg);

/* SIGHUP: the loop reads the query socket's certificate and allow-lists
 * again whenever *reload is set, and clears it. */
void collector_set_reload_flag(collector_t *self, volatile int *reload);

/* Runs the loop until *stop is set (by a signal handler); writes a state
 * dump to the log whenever *dump is set, and clears it. Returns 0, or -1
 * if polling failed. */
int collector_run(collector_t *self, volatile int *stop, volatile int *dump);

/* Commits what is pending, closes everything; sets *self_p to NULL.
 * NULL-safe. */
void collector_destroy(collector_t **self_p);

#endif
