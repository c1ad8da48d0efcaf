#include "worker_link.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "dv_backoff.h"
#include "dv_log.h"
#include "dv_zmon.h"

/* Largest wait for a WELCOME while the broker stays away. */
#define S_HELLO_TIMEOUT_CAP_MS 30000
/* After a message found no memory to decode: when to try again. */
#define S_RETRY_MS 100

struct worker_link_t {
    void *zctx;
    const worker_config_t *cfg;
    char *name, *host;
    dv_str_t *queues; /* cfg->queues as views, for HELLO */
    void *sock;       /* DEALER, NULL when closed */
    int endpoint;     /* index into cfg->endpoints */
    bool welcomed;
    bool hello_pending;
    int failures;             /* reconnects since the last WELCOME */
    int64_t heartbeat_ms;     /* ours; the broker's after WELCOME */
    int64_t timeout_ms;       /* silence before we give up on the broker */
    int64_t last_heard;       /* mono ms */
    int64_t hello_sent;       /* mono ms */
    int64_t hello_timeout_ms; /* current wait for WELCOME */
    int64_t next_heartbeat;   /* mono ms */
    int64_t last_sent;        /* mono ms: last heartbeat or hello sent */
    zmq_msg_t frame;          /* the frame behind the last recv'd msg */
    bool frame_live;
    bool frame_retry;      /* its decode found no memory: kept, and
                                  decoded again at retry_at */
    int64_t retry_at;      /* mono ms */
    msgpack_sbuffer sb;    /* encode scratch, reused */
    dv_curve_keys_t curve; /* set on each new socket; wiped at the end */
    dv_zmon_t mon;         /* the socket's connection: lost? */
};

static void
s_set_int(void *sock, int opt, int v)
{
    zmq_setsockopt(sock, opt, &v, sizeof v);
}

static void
s_close(worker_link_t *self, int linger_ms)
{
    dv_zmon_stop(&self->mon, self->sock);
    if (!self->sock)
        return;
    s_set_int(self->sock, ZMQ_LINGER, linger_ms);
    zmq_close(self->sock);
    self->sock = NULL;
}

worker_link_t *
worker_link_new(void *zctx, const worker_config_t *cfg, const char *name,
                const char *host)
{
    worker_link_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->zctx = zctx;
    self->cfg = cfg;
    self->name = strdup(name);
    self->host = strdup(host);
    self->queues = calloc((size_t)cfg->nqueues, sizeof *self->queues);
    if (!self->name || !self->host || !self->queues) {
        free(self->name);
        free(self->host);
        free(self->queues);
        free(self);
        return NULL;
    }
    for (int i = 0; i < cfg->nqueues; i++)
        self->queues[i] = dv_str(cfg->queues[i]);
    self->heartbeat_ms = cfg->heartbeat_ms;
    self->timeout_ms = 3 * cfg->heartbeat_ms;
    self->hello_timeout_ms = self->timeout_ms;
    msgpack_sbuffer_init(&self->sb);
    return self;
}

void
worker_link_destroy(worker_link_t **self_p, int linger_ms)
{
    if (!self_p || !*self_p)
        return;
    worker_link_t *self = *self_p;
    if (self->frame_live)
        zmq_msg_close(&self->frame);
    s_close(self, linger_ms);
    dv_curve_client_wipe(&self->curve);
    msgpack_sbuffer_destroy(&self->sb);
    free(self->name);
    free(self->host);
    free(self->queues);
    free(self);
    *self_p = NULL;
}

bool
worker_link_set_curve(worker_link_t *self, const dv_curve_keys_t *keys)
{
    bool changed = self->curve.on != keys->on ||
                   strcmp(self->curve.public_key, keys->public_key) ||
                   strcmp(self->curve.secret_key, keys->secret_key) ||
                   strcmp(self->curve.server_key, keys->server_key);
    dv_curve_client_wipe(&self->curve);
    self->curve = *keys;
    return changed;
}

int
worker_link_connect(worker_link_t *self, int64_t mono_ms)
{
    s_close(self, 0);
    const char *ep = self->cfg->endpoints[self->endpoint];
    /* A failed attempt is retried after the hello timeout, like silence. */
    self->welcomed = false;
    self->hello_pending = false;
    self->last_heard = mono_ms;
    self->sock = zmq_socket(self->zctx, ZMQ_DEALER);
    if (!self->sock) {
        dv_log(DV_ERROR, "worker.socket_failed",
               DV_STR("error", zmq_strerror(errno)));
        return -1;
    }
    /* The broker's ROUTER knows us by this id; a reconnect takes it over. */
    zmq_setsockopt(self->sock, ZMQ_ROUTING_ID, self->name, strlen(self->name));
    s_set_int(self->sock, ZMQ_LINGER, 0);
    /* Jobs come only against credit, so the receive side stays small;
     * the send side may hold a backlog of updates while the broker is
     * slow. */
    s_set_int(self->sock, ZMQ_SNDHWM, 10000);
    s_set_int(self->sock, ZMQ_RCVHWM, 10000);
    char why[256];
    if (dv_curve_client_apply(&self->curve, self->sock, why, sizeof why)) {
        dv_log(DV_ERROR, "worker.connect_failed", DV_STR("endpoint", ep),
               DV_STR("error", why));
        s_close(self, 0);
        return -1;
    }
    /* A broker that dies or restarts ends the connection; we learn it at
     * once instead of after the broker's silence timeout. */
    dv_zmon_start(&self->mon, self->zctx, self->sock);
    if (zmq_connect(self->sock, ep) != 0) {
        dv_log(DV_ERROR, "worker.connect_failed", DV_STR("endpoint", ep),
               DV_STR("error", zmq_strerror(errno)));
        s_close(self, 0);
        return -1;
    }
    dv_log(DV_INFO, "worker.connected", DV_STR("endpoint", ep),
           DV_STR("security", self->curve.on ? "curve" : "none"));
    return 0;
}

int
worker_link_reconnect(worker_link_t *self, const char *reason, int64_t mono_ms)
{
    self->failures++;
    if (self->cfg->nendpoints > 0)
        self->endpoint = (self->endpoint + 1) % self->cfg->nendpoints;
    /* Back off only once every endpoint has been tried, so a standby
     * broker is found quickly; jitter spreads a fleet's reconnects. */
    int rounds = self->failures /
                 (self->cfg->nendpoints > 0 ? self->cfg->nendpoints : 1);
    int64_t base = 3 * self->cfg->heartbeat_ms;
    int64_t cap = base > S_HELLO_TIMEOUT_CAP_MS ? base : S_HELLO_TIMEOUT_CAP_MS;
    dv_backoff_t b = { base, 2.0, cap, false };
    int64_t t = dv_backoff_delay(&b, rounds + 1, 0, 0);
    self->hello_timeout_ms = t + (int64_t)(dv_rand01() * (double)t * 0.2);
    dv_log(DV_WARN, "worker.reconnecting",
           DV_STR("endpoint", self->cfg->endpoints[self->endpoint]),
           DV_STR("reason", reason), DV_INT("attempt", self->failures),
           DV_INT("wait_ms", self->hello_timeout_ms));
    if (self->frame_live) {
        zmq_msg_close(&self->frame);
        self->frame_live = false;
    }
    self->frame_retry = false; /* what it said is moot after a HELLO */
    return worker_link_connect(self, mono_ms);
}

void *
worker_link_socket(worker_link_t *self)
{
    return self->sock;
}

void *
worker_link_monitor(worker_link_t *self)
{
    return dv_zmon_socket(&self->mon);
}

bool
worker_link_lost(worker_link_t *self)
{
    return dv_zmon_lost(&self->mon);
}

bool
worker_link_welcomed(const worker_link_t *self)
{
    return self->welcomed;
}

bool
worker_link_hello_pending(const worker_link_t *self)
{
    return self->hello_pending;
}

const char *
worker_link_endpoint(const worker_link_t *self)
{
    return self->cfg->endpoints[self->endpoint];
}

int
worker_link_check_endpoints(void *zctx, const worker_config_t *cfg, char *err,
                            size_t err_size)
{
    void *s = zmq_socket(zctx, ZMQ_DEALER);
    if (!s) {
        snprintf(err, err_size, "cannot create a socket: %s",
                 zmq_strerror(errno));
        return -1;
    }
    s_set_int(s, ZMQ_LINGER, 0);
    int rc = 0;
    for (int i = 0; i < cfg->nendpoints && rc == 0; i++)
        if (zmq_connect(s, cfg->endpoints[i]) != 0) {
            snprintf(err, err_size, "bad broker endpoint '%s': %s",
                     cfg->endpoints[i], zmq_strerror(errno));
            rc = -1;
        }
    zmq_close(s);
    return rc;
}

/* Encodes msg and queues it. Returns 0, 1 if the socket is full, -1. */
static int
s_send(worker_link_t *self, const dv_msg_t *msg)
{
    if (!self->sock)
        return -1;
    self->sb.size = 0;
    if (dv_msg_encode(msg, &self->sb) != DV_OK) {
        dv_log(DV_ERROR, "worker.encode_failed",
               DV_STR("msg", dv_msg_type_name(msg->type)));
        return -1;
    }
    if (zmq_send(self->sock, self->sb.data, self->sb.size, ZMQ_DONTWAIT) < 0)
        return errno == EAGAIN ? 1 : -1;
    return 0;
}

int
worker_link_send_hello(worker_link_t *self, int32_t credit, dv_held_t *held,
                       uint32_t nheld, int64_t mono_ms)
{
    dv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = DV_MSG_HELLO;
    m.u.hello.name = dv_str(self->name);
    m.u.hello.host = dv_str(self->host);
    m.u.hello.pid = (int32_t)getpid();
    m.u.hello.queues = self->queues;
    m.u.hello.nqueues = (uint32_t)self->cfg->nqueues;
    m.u.hello.concurrency = self->cfg->concurrency;
    m.u.hello.credit = credit < 0 ? 0 : credit;
    m.u.hello.held = held;
    m.u.hello.nheld = nheld;
    m.u.hello.fencing = true;
    int rc = s_send(self, &m);
    self->welcomed = false;
    self->hello_pending = rc == 0;
    self->hello_sent = mono_ms;
    if (rc == 0)
        self->last_sent = mono_ms;
    dv_log(DV_DEBUG, "worker.hello", DV_INT("credit", m.u.hello.credit),
           DV_INT("held", nheld), DV_INT("rc", rc));
    return rc == 0 ? 0 : -1;
}

int
worker_link_recv(worker_link_t *self, dv_msg_t *msg, int64_t mono_ms)
{
    memset(msg, 0, sizeof *msg);
    if (!self->sock)
        return 0;
    if (self->frame_retry) {
        /* A message whose decode found no memory (jobs leased to us, say)
         * is decoded again rather than lost. */
        if (mono_ms < self->retry_at)
            return 0;
        self->frame_retry = false;
        goto decode;
    }
    if (self->frame_live) {
        zmq_msg_close(&self->frame);
        self->frame_live = false;
    }
    zmq_msg_init(&self->frame);
    if (zmq_msg_recv(&self->frame, self->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&self->frame);
        return 0;
    }
    self->frame_live = true;
    self->last_heard = mono_ms;
decode:;
    char why[256];
    why[0] = '\0';
    int rc = dv_msg_decode(zmq_msg_data(&self->frame),
                           zmq_msg_size(&self->frame), msg, why, sizeof why);
    if (rc == DV_ENOMEM) {
        dv_log(DV_ERROR, "worker.message_deferred",
               DV_INT("bytes", zmq_msg_size(&self->frame)),
               DV_STR("error", "out of memory"));
        dv_msg_release(msg);
        self->frame_retry = true;
        self->retry_at = mono_ms + S_RETRY_MS;
        return 0;
    }
    if (rc != DV_OK) {
        dv_log(DV_WARN, "worker.bad_message", DV_STR("reason", why),
               DV_STR("error", dv_strerror(rc)),
               DV_INT("bytes", zmq_msg_size(&self->frame)));
        dv_msg_release(msg);
        return -1;
    }
    switch (msg->type) {
    case DV_MSG_WELCOME: {
        const dv_welcome_t *w = &msg->u.welcome;
        if (w->heartbeat_ms > 0)
            self->heartbeat_ms = w->heartbeat_ms;
        if (w->worker_timeout_ms > 0)
            self->timeout_ms = w->worker_timeout_ms;
        if (self->timeout_ms < 2 * self->heartbeat_ms)
            self->timeout_ms = 2 * self->heartbeat_ms;
        self->welcomed = true;
        self->hello_pending = false;
        self->failures = 0;
        self->last_sent = mono_ms;
        self->next_heartbeat = mono_ms + self->heartbeat_ms;
        char broker[128];
        dv_log(DV_INFO, "worker.welcome",
               DV_STR("broker", dv_str_copy(w->broker, broker, sizeof broker)),
               DV_STR("endpoint", worker_link_endpoint(self)),
               DV_INT("heartbeat_ms", self->heartbeat_ms),
               DV_INT("worker_timeout_ms", self->timeout_ms));
        break;
    }
    case DV_MSG_ERROR: {
        char reason[DV_TEXT_MAX + 1];
        /* A standby's answer is routine during a takeover (the worker
         * logs where it goes next). */
        dv_log(msg->u.error.code == DV_CODE_STANDBY ? DV_DEBUG : DV_WARN,
               "worker.broker_error",
               DV_STR("code", dv_code_name(msg->u.error.code)),
               DV_STR("reason",
                      dv_str_copy(msg->u.error.reason, reason, sizeof reason)),
               DV_INT("version", msg->u.error.version));
        break;
    }
    default:
        break;
    }
    return 1;
}

void
worker_link_release(worker_link_t *self, dv_msg_t *msg)
{
    dv_msg_release(msg);
    if (self->frame_live) {
        zmq_msg_close(&self->frame);
        self->frame_live = false;
    }
}

int
worker_link_send_updates(worker_link_t *self, worker_outbox_t *outbox)
{
    if (!self->welcomed || !self->sock)
        return 0;
    uint32_t n;
    while (worker_outbox_encode(outbox, &self->sb, &n) == 0) {
        if (zmq_send(self->sock, self->sb.data, self->sb.size, ZMQ_DONTWAIT) <
            0)
            return errno == EAGAIN ? 1 : 0;
        worker_outbox_consume(outbox, n);
    }
    return 0;
}

bool
worker_link_heartbeat_due(const worker_link_t *self, int64_t mono_ms)
{
    return self->welcomed && mono_ms >= self->next_heartbeat;
}

int
worker_link_heartbeat(worker_link_t *self, const dv_heartbeat_t *hb,
                      int64_t mono_ms)
{
    if (!self->welcomed || mono_ms < self->next_heartbeat)
        return 0;
    self->next_heartbeat = mono_ms + self->heartbeat_ms;
    dv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = DV_MSG_HEARTBEAT;
    m.u.heartbeat = *hb;
    if (s_send(self, &m) != 0)
        return -1;
    self->last_sent = mono_ms;
    return 0;
}

int
worker_link_send_keys(worker_link_t *self, const dv_keyitem_t *items,
                      uint32_t n)
{
    if (!self->welcomed || n == 0)
        return 0;
    dv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = DV_MSG_KEYS;
    m.u.keys.items = (dv_keyitem_t *)items;
    m.u.keys.nitems = n;
    return s_send(self, &m) == 0 ? 0 : -1;
}

int
worker_link_send_bye(worker_link_t *self)
{
    dv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = DV_MSG_BYE;
    return s_send(self, &m) == 0 ? 0 : -1;
}

bool
worker_link_expired(const worker_link_t *self, int64_t mono_ms)
{
    if (self->welcomed)
        return mono_ms - self->last_heard > self->timeout_ms;
    int64_t since = self->hello_sent > self->last_heard ? self->hello_sent
                                                        : self->last_heard;
    return mono_ms - since > self->hello_timeout_ms;
}

bool
worker_link_standby_next(const worker_link_t *self)
{
    int n = self->cfg->nendpoints > 0 ? self->cfg->nendpoints : 1;
    return self->failures % n + 1 < n;
}

bool
worker_link_silent(const worker_link_t *self, int64_t mono_ms)
{
    return self->welcomed &&
           mono_ms - self->last_sent > self->timeout_ms * 3 / 4;
}

int64_t
worker_link_next_deadline(const worker_link_t *self)
{
    int64_t t;
    if (self->welcomed) {
        t = self->last_heard + self->timeout_ms + 1;
        if (self->next_heartbeat < t)
            t = self->next_heartbeat;
    } else {
        int64_t since = self->hello_sent > self->last_heard ? self->hello_sent
                                                            : self->last_heard;
        t = since + self->hello_timeout_ms + 1;
    }
    if (self->frame_retry && self->retry_at < t)
        t = self->retry_at;
    return t;
}
