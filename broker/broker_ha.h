/* broker_ha - which broker of a group serves, when several share one
 * PostgreSQL store.
 *
 * The active broker holds a PostgreSQL session advisory lock on a
 * connection of its own (not the store's). The others are standbys: they
 * ask for the lock every poll interval (pg_try_advisory_lock, which never
 * waits) and answer clients and workers with code `standby` meanwhile.
 *
 * A session lock lives as long as its session, so the holder must not be
 * able to keep it while it cannot serve:
 * - a holder that dies (kill -9, a crash) closes its TCP connection or
 *   Unix socket at once; the server ends the session, the lock is free;
 * - a holder that is stopped (SIGSTOP, a stall) keeps its socket open and
 *   its kernel still answers TCP, so keepalives do not notice. The lock's
 *   session therefore runs with idle_session_timeout (3 ping intervals),
 *   and the active broker sends a ping (SELECT 1) every ping interval:
 *   stopped past the timeout, its session is ended by the server and the
 *   lock freed;
 * - a holder cut off by the network: tcp_user_timeout and keepalives of a
 *   few seconds end the connection on the server side as well.
 * With the defaults (ping 1 s, timeout 3 s, standby poll 0.5 s) a standby
 * holds the lock within about 3.5 s of the holder stopping, and within
 * 0.5 s of it dying.
 *
 * The lock alone cannot stop a broker that wakes up after losing it from
 * committing what it had in hand: the store's fencing generation does that
 * (every commit checks it; broker_store_fence).
 *
 * Everything here is non-blocking: the connection is made with
 * PQconnectStart/PQconnectPoll and queries are sent with PQsendQuery; the
 * loop polls broker_ha_fd() and calls broker_ha_step() when it is ready or
 * broker_ha_next() has come. Loop thread only.
 */
#ifndef BROKER_HA_H
#define BROKER_HA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct broker_ha broker_ha_t;

typedef enum {
    BROKER_HA_STANDBY = 0, /* waiting for the lock */
    BROKER_HA_ACTIVE,      /* holding it: serve */
    BROKER_HA_LOST,        /* held it, and lost it: step down */
} broker_ha_role_t;

typedef struct {
    int64_t poll_ms;  /* standby: ask for the lock this often (500) */
    int64_t ping_ms;  /* active: keep the session busy this often (1000);
                      * idle_session_timeout is 3 x ping_ms */
    const char *name; /* this broker, for application_name (pg_stat_activity) */
} broker_ha_opts_t;

/* A broker of the group whose store is at url (postgres://...). Connects
 * in the background from the first broker_ha_step(). Returns NULL with a
 * reason in err (a URL libpq cannot parse; out of memory). */
broker_ha_t *broker_ha_new(const char *url, const broker_ha_opts_t *opts,
                           char *err, size_t err_size);

/* Closes the lock's connection (which frees the lock) and frees self.
 * NULL-safe. */
void broker_ha_destroy(broker_ha_t **self_p);

/* The socket to poll, and whether for writing (connecting) or reading;
 * -1 when there is none (waiting to reconnect). */
int broker_ha_fd(const broker_ha_t *self, bool *want_write);

/* When broker_ha_step() is due next (monotonic ms) whatever the socket. */
int64_t broker_ha_next(const broker_ha_t *self);

/* Does what is due at now (connect, read answers, ask for the lock, ping)
 * and returns the role: STANDBY until the lock is held, ACTIVE while it
 * is, LOST (for good) once an active broker's lock session failed. */
broker_ha_role_t broker_ha_step(broker_ha_t *self, int64_t now);

broker_ha_role_t broker_ha_role(const broker_ha_t *self);

/* Why the lock's connection last failed ("" if it did not), one line, no
 * password. */
const char *broker_ha_error(const broker_ha_t *self);

/* The advisory lock's key: the same for every drover broker, so one
 * database holds one group. */
#define BROKER_HA_LOCK_KEY 0x64726f766572LL /* "drover" */

#endif
