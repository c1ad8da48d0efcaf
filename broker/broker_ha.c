/* broker_ha - the advisory lock that makes one broker of a group active;
 * see broker_ha.h. */
#include "broker_ha.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_err.h"
#include "dv_log.h"

/* Reconnecting a standby's lock session: 100 ms, doubling, at most 2 s. */
#define S_RETRY_MIN_MS 100
#define S_RETRY_MAX_MS 2000
/* A connect that has not finished by then failed (non-blocking connects
 * do not honour libpq's connect_timeout). */
#define S_CONNECT_MS 3000
/* An answer that has not come by then: a standby reconnects; an active
 * broker's session is as good as gone (the network is cut, or the server
 * stopped), and it steps down. */
#define S_ANSWER_MS 3000

typedef enum {
    S_DOWN,       /* no connection; next_at: when to try again */
    S_CONNECTING, /* PQconnectPoll until OK */
    S_IDLE,       /* connected, nothing asked; next_at: the next query */
    S_BUSY,       /* a query sent, its answer awaited until next_at */
} s_conn_t;

typedef enum { Q_SETUP, Q_TRY, Q_PING } s_query_t;

struct broker_ha {
    char *url;
    char *name;
    int64_t poll_ms, ping_ms;
    PGconn *conn;
    s_conn_t state;
    s_query_t query;
    bool want_write; /* connecting, or a query not fully sent */
    bool got_lock;   /* the answer to Q_TRY said true */
    broker_ha_role_t role;
    int64_t next_at;
    int64_t retry_ms;
    char error[256];
};

static int64_t
s_or(int64_t v, int64_t dflt)
{
    return v > 0 ? v : dflt;
}

broker_ha_t *
broker_ha_new(const char *url, const broker_ha_opts_t *opts, char *err,
              size_t err_size)
{
    char *why = NULL;
    PQconninfoOption *parsed = PQconninfoParse(url, &why);
    if (!parsed) {
        dv_err_set(err, err_size, "store URL: %s", why ? why : "out of memory");
        PQfreemem(why);
        return NULL;
    }
    PQconninfoFree(parsed);
    broker_ha_t *self = calloc(1, sizeof *self);
    if (self) {
        self->url = strdup(url);
        self->name = strdup(opts && opts->name ? opts->name : "drover");
        self->poll_ms = s_or(opts ? opts->poll_ms : 0, 500);
        self->ping_ms = s_or(opts ? opts->ping_ms : 0, 1000);
        self->retry_ms = S_RETRY_MIN_MS;
    }
    if (!self || !self->url || !self->name) {
        broker_ha_destroy(&self);
        dv_err_set(err, err_size, "out of memory");
        return NULL;
    }
    return self;
}

void
broker_ha_destroy(broker_ha_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_ha_t *self = *self_p;
    if (self->conn)
        PQfinish(self->conn);
    if (self->url)
        explicit_bzero(self->url, strlen(self->url)); /* may hold a password */
    free(self->url);
    free(self->name);
    free(self);
    *self_p = NULL;
}

int
broker_ha_fd(const broker_ha_t *self, bool *want_write)
{
    *want_write = self->want_write;
    return self->conn && self->state != S_DOWN ? PQsocket(self->conn) : -1;
}

int64_t
broker_ha_next(const broker_ha_t *self)
{
    return self->next_at;
}

broker_ha_role_t
broker_ha_role(const broker_ha_t *self)
{
    return self->role;
}

const char *
broker_ha_error(const broker_ha_t *self)
{
    return self->error;
}

/* Keeps the first line of libpq's message (they name host and port, never
 * the password). */
static void
s_set_error(broker_ha_t *self, const char *what, const char *msg)
{
    size_t n = msg ? strcspn(msg, "\n") : 0;
    snprintf(self->error, sizeof self->error, "%s%s%.*s", what, n ? ": " : "",
             (int)n, msg ? msg : "");
}

/* The lock's session failed: an active broker has lost the lock for good;
 * a standby tries again after a backoff. */
static void
s_fail(broker_ha_t *self, int64_t now, const char *what)
{
    s_set_error(self, what, self->conn ? PQerrorMessage(self->conn) : NULL);
    if (self->conn)
        PQfinish(self->conn);
    self->conn = NULL;
    self->state = S_DOWN;
    self->want_write = false;
    if (self->role == BROKER_HA_ACTIVE) {
        self->role = BROKER_HA_LOST;
        dv_log(DV_ERROR, "broker.ha_lock_lost", DV_STR("error", self->error));
        self->next_at = INT64_MAX;
        return;
    }
    if (self->role == BROKER_HA_LOST) {
        self->next_at = INT64_MAX;
        return;
    }
    dv_log(DV_WARN, "broker.ha_lock_session_failed",
           DV_STR("error", self->error), DV_INT("retry_ms", self->retry_ms));
    self->next_at = now + self->retry_ms;
    self->retry_ms = self->retry_ms * 2 > S_RETRY_MAX_MS ? S_RETRY_MAX_MS
                                                         : self->retry_ms * 2;
}

static void
s_connect(broker_ha_t *self, int64_t now)
{
    /* Keepalives and tcp_user_timeout end the session of a host that is
     * cut off within seconds (TCP only; a Unix socket needs none). */
    const char *keys[] = { "dbname",
                           "application_name",
                           "keepalives",
                           "keepalives_idle",
                           "keepalives_interval",
                           "keepalives_count",
                           "tcp_user_timeout",
                           NULL };
    char app[128];
    snprintf(app, sizeof app, "drover-broker-lock %s", self->name);
    const char *vals[] = { self->url, app, "1", "1", "1", "3", "3000", NULL };
    self->conn = PQconnectStartParams(keys, vals, 1);
    if (!self->conn || PQstatus(self->conn) == CONNECTION_BAD) {
        s_fail(self, now, "cannot connect");
        return;
    }
    self->state = S_CONNECTING;
    self->want_write = true;
    self->next_at = now + S_CONNECT_MS;
}

static void
s_send(broker_ha_t *self, int64_t now, s_query_t q, const char *sql)
{
    if (!PQsendQuery(self->conn, sql)) {
        s_fail(self, now, "cannot send a query");
        return;
    }
    int f = PQflush(self->conn);
    if (f < 0) {
        s_fail(self, now, "cannot send a query");
        return;
    }
    self->want_write = f == 1;
    self->query = q;
    self->state = S_BUSY;
    self->got_lock = false;
    self->next_at = now + S_ANSWER_MS;
}

/* The connection is up: its session must die when it idles (a stopped
 * holder), then the lock is asked for. */
static void
s_setup(broker_ha_t *self, int64_t now)
{
    if (PQsetnonblocking(self->conn, 1) != 0) {
        s_fail(self, now, "cannot make the connection non-blocking");
        return;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "SET idle_session_timeout = %lld",
             (long long)(3 * self->ping_ms));
    s_send(self, now, Q_SETUP, sql);
}

/* Reads what arrived; handles a finished query. */
static void
s_read(broker_ha_t *self, int64_t now)
{
    if (self->want_write) {
        int f = PQflush(self->conn);
        if (f < 0) {
            s_fail(self, now, "connection lost");
            return;
        }
        self->want_write = f == 1;
    }
    if (!PQconsumeInput(self->conn)) {
        s_fail(self, now, "connection lost");
        return;
    }
    if (self->state == S_IDLE) {
        /* Nothing asked: anything readable is the server ending the
         * session (idle_session_timeout, a terminate). */
        if (PQstatus(self->conn) == CONNECTION_BAD)
            s_fail(self, now, "connection lost");
        return;
    }
    while (self->state == S_BUSY && !PQisBusy(self->conn)) {
        PGresult *r = PQgetResult(self->conn);
        if (!r)
            break;
        ExecStatusType st = PQresultStatus(r);
        bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
        if (ok && self->query == Q_TRY && PQntuples(r) == 1)
            self->got_lock = !strcmp(PQgetvalue(r, 0, 0), "t");
        if (!ok) {
            char why[256];
            const char *m = PQresultErrorMessage(r);
            snprintf(why, sizeof why, "query failed: %.*s",
                     (int)strcspn(m, "\n"), m);
            PQclear(r);
            s_fail(self, now, why);
            return;
        }
        PQclear(r);
    }
    if (self->state != S_BUSY || PQisBusy(self->conn))
        return;
    /* The query is done (PQgetResult gave NULL). */
    self->state = S_IDLE;
    switch (self->query) {
    case Q_SETUP:
        self->retry_ms = S_RETRY_MIN_MS;
        self->next_at = now;
        break;
    case Q_TRY:
        if (self->got_lock) {
            self->role = BROKER_HA_ACTIVE;
            self->error[0] = '\0';
            dv_log(DV_INFO, "broker.ha_lock_taken",
                   DV_STR("broker", self->name));
            self->next_at = now + self->ping_ms;
        } else {
            self->next_at = now + self->poll_ms;
        }
        break;
    case Q_PING:
        self->next_at = now + self->ping_ms;
        break;
    }
}

broker_ha_role_t
broker_ha_step(broker_ha_t *self, int64_t now)
{
    switch (self->state) {
    case S_DOWN:
        if (self->role != BROKER_HA_LOST && now >= self->next_at)
            s_connect(self, now);
        break;
    case S_CONNECTING: {
        PostgresPollingStatusType p = PQconnectPoll(self->conn);
        if (p == PGRES_POLLING_OK)
            s_setup(self, now);
        else if (p == PGRES_POLLING_FAILED)
            s_fail(self, now, "cannot connect");
        else if (now >= self->next_at)
            s_fail(self, now, "cannot connect: no answer within 3 s");
        else
            self->want_write = p == PGRES_POLLING_WRITING;
        break;
    }
    case S_BUSY:
        s_read(self, now);
        if (self->state == S_BUSY && now >= self->next_at)
            s_fail(self, now, "no answer within 3 s");
        break;
    case S_IDLE:
        s_read(self, now);
        if (self->state == S_IDLE && now >= self->next_at) {
            if (self->role == BROKER_HA_ACTIVE)
                s_send(self, now, Q_PING, "SELECT 1");
            else {
                char sql[96];
                snprintf(sql, sizeof sql, "SELECT pg_try_advisory_lock(%lld)",
                         (long long)BROKER_HA_LOCK_KEY);
                s_send(self, now, Q_TRY, sql);
            }
        }
        break;
    }
    return self->role;
}
