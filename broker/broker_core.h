/* broker_core - the broker daemon's state and its one event loop: what
 * broker_main.c needs. The state itself and the calls between the broker's
 * files are in broker_internal.h.
 *
 * One thread owns everything. Each pass of the loop:
 *   1. waits on the three sockets (or a timer),
 *   2. opens a store write group and drains a bounded batch from each socket,
 *   3. runs due timers (scheduled jobs become ready, silent workers expire),
 *   4. dispatches ready jobs against worker credit,
 *   5. sends jobs to workers at once, and hands the pass's store writes to
 *      the writer thread (broker_writer.h), which commits them as one
 *      transaction (one fsync) while the loop goes on;
 *   6. when the writer reports a group durable, sends what depended on it:
 *      submit acks, results to waiting clients, events.
 * So nothing is acknowledged before it is durable, the cost of a commit is
 * shared by everything that arrived while the previous one was running
 * (group commit), and the loop never waits for the disk.
 */
#ifndef BROKER_CORE_H
#define BROKER_CORE_H

#include <stdint.h>

#include "broker_store.h"
#include "dv_backoff.h"
#include "dv_curve.h"

typedef struct {
    const char *clients_ep; /* bind for producers / CLI */
    const char *workers_ep; /* bind for worker supervisors */
    const char *events_ep;  /* bind for PUB */
    const char *store_url;
    broker_sync_t sync;
    int64_t heartbeat_ms;      /* heartbeat period, both ways */
    int64_t worker_timeout_ms; /* silence before a worker expires */
    int64_t rejoin_ms; /* after a start, how long recovered jobs wait for
                        * their workers to rejoin; 0 = 3 heartbeats, at
                        * least 500 ms */
    int default_max_attempts;
    int64_t default_result_ttl_ms;
    dv_backoff_t default_backoff;
    int batch_max;  /* messages drained per socket per pass */
    int events_hwm; /* messages the PUB socket queues per subscriber before
                     * it drops (a batch of job events is one); 0 = 1000 */
    /* The fleet's API keys (broker_keys.h): a grant's life at the worker
     * (0 = 1 s), and the interval between probes of a disabled key (0 =
     * never). */
    int64_t key_grant_ttl_ms;
    int64_t key_probe_ms;
    /* Per-queue limits given at start ("QUEUE=VALUE"); they override the
     * stored settings and are stored in turn. */
    const char *queue_rates[32];
    int nqueue_rates;
    const char *queue_max_running[32];
    int nqueue_max_running;
    /* CurveZMQ (docs/security.md): the server's secret certificate file,
     * or NULL for none; the allow-list directory of each role (indexed by
     * dv_role_t; NULL: nobody has that role). */
    const char *curve_secret;
    const char *curve_dirs[DV_ROLE_COUNT_];
} broker_config_t;

typedef struct broker broker_t;

/* Creates the broker: opens the store, recovers unfinished jobs, binds the
 * sockets. Returns NULL after logging the reason. With a PostgreSQL store
 * the broker is one of a group (broker_ha.h): it binds its sockets and
 * starts as a standby; broker_run opens the store and recovers once it
 * holds the group's lock. */
broker_t *broker_new(const broker_config_t *cfg);
void broker_destroy(broker_t **self_p);

/* Runs passes until *stop becomes non-zero. When *dump is set (SIGUSR1) it
 * writes a state dump and clears it; the loop wakes at least once per
 * heartbeat, so that takes at most one heartbeat. Returns 0 after a stop,
 * BROKER_STEP_DOWN when this broker of a group lost the store to another
 * (its lock, or its fence: start again as a standby), or -1 when it could
 * not become active (the store could not be opened). */
int broker_run(broker_t *self, volatile int *stop, volatile int *dump);
#define BROKER_STEP_DOWN 2

/* From now on, broker_run reloads the CurveZMQ certificates and
 * allow-lists (SIGHUP) when *reload becomes non-zero, and clears it. */
void broker_set_reload_flag(broker_t *self, volatile int *reload);

/* Writes queues, workers and counters to the log (SIGUSR1). */
void broker_dump(broker_t *self);

#endif
