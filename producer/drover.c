/* libdrover - the client library (see drover.h for the contract): the
 * socket, connect and close, and one request with its answer; submits are
 * in drover_submit.c, waits in drover_wait.c.
 *
 * One DEALER socket to one endpoint of the list at a time. Requests carry a
 * req number that the broker echoes; answers with a req we are not waiting
 * for (late answers to a request we gave up on, results of an earlier wait)
 * are dropped. Failover closes the socket (linger 0, so nothing stale is
 * delivered later), opens a new one on the next endpoint and sends every
 * unanswered request again. */
#include "drover.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <msgpack.h>
#include <zmq.h>

#include "dv_clock.h"
#include "dv_id.h"
#include "dv_json.h"
#include "dv_proto.h"
#include "dv_util.h"
#include "dv_zmon.h"
#include "drover_internal.h"
#include "dv_map.h"

#define S_DEFAULT_TIMEOUT_MS 5000
#define S_STANDBY_PAUSE_MS   200 /* every endpoint said standby: wait this */

static _Thread_local char s_connect_error[512];

/* ---- small helpers ----------------------------------------------------- */

/* Records the reason for the failing call and returns its code. */
int
producer_fail(drover_client_t *self, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->error, sizeof self->error, fmt, ap);
    va_end(ap);
    self->code = DV_CODE_NONE;
    return code;
}

/* Records a refusal by the broker (its code why, and the reason) and
 * returns DROVER_EREJECTED. */
int
producer_refused(drover_client_t *self, dv_code_t why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->error, sizeof self->error, fmt, ap);
    va_end(ap);
    self->code = why;
    return DROVER_EREJECTED;
}

/* Forgets the last call's failure. */
void
producer_clear(drover_client_t *self)
{
    self->error[0] = '\0';
    self->code = DV_CODE_NONE;
}

const char *
producer_code_name(dv_code_t code)
{
    return code == DV_CODE_NONE ? NULL : dv_code_name(code);
}

int64_t
producer_remaining(int64_t deadline)
{
    int64_t left = deadline - dv_mono_ms();
    return left > 0 ? left : 0;
}

const char *
drover_strerror(int err)
{
    switch (err) {
    case DROVER_OK:
        return "ok";
    case DROVER_EINVAL:
        return "invalid argument";
    case DROVER_EUNREACHABLE:
        return "broker unreachable";
    case DROVER_ETIMEOUT:
        return "timed out";
    case DROVER_EREJECTED:
        return "rejected by the broker";
    case DROVER_EPROTO:
        return "protocol error";
    case DROVER_ENOMEM:
        return "out of memory";
    }
    return "unknown error";
}

const char *
producer_curve_hint(const drover_client_t *self)
{
    /* A CurveZMQ handshake that fails is silent on the client's side. */
    return self->curve.on ? " (CurveZMQ: is the server certificate the "
                            "broker's, and is our key in its allow-lists?)"
                          : "";
}

const char *
drover_last_error(const drover_client_t *self)
{
    return self ? self->error : s_connect_error;
}

const char *
drover_last_code(const drover_client_t *self)
{
    return self ? producer_code_name(self->code) : NULL;
}

const char *
drover_endpoint(const drover_client_t *self)
{
    return self ? self->endpoints[self->cur] : "";
}

/* ---- socket ------------------------------------------------------------ */

static void
s_close_socket(drover_client_t *self)
{
    if (self->sock) {
        int zero = 0;
        zmq_setsockopt(self->sock, ZMQ_LINGER, &zero, sizeof zero);
    }
    /* A broker that dies or restarts ends the connection: nothing sent
     * will be answered, and dv_zmon says so without waiting. */
    dv_zmon_stop(&self->mon, self->sock);
    if (self->sock) {
        zmq_close(self->sock);
        self->sock = NULL;
    }
}

/* Opens a DEALER on endpoints[cur]. Returns 0, or -1 with the reason set. */
static int
s_open_socket(drover_client_t *self)
{
    void *s = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!s) {
        producer_fail(self, DROVER_ENOMEM, "zmq_socket: %s",
                      zmq_strerror(errno));
        return -1;
    }
    int zero = 0, timeout = self->timeout_ms;
    /* A reply may be large (results of many jobs), never over the limit. */
    int64_t maxmsg = DV_MSG_MAX;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    char why[256];
    if (dv_curve_client_apply(&self->curve, s, why, sizeof why) != 0) {
        producer_fail(self, DROVER_EINVAL, "%s", why);
        zmq_close(s);
        return -1;
    }
    /* The monitor is watching before the connection starts: a handshake
     * it missed would make the later loss look like a failed attempt. */
    dv_zmon_start(&self->mon, self->ctx, s);
    self->sock = s;
    if (zmq_connect(s, self->endpoints[self->cur]) != 0) {
        producer_fail(self, DROVER_EINVAL, "cannot connect to '%s': %s",
                      self->endpoints[self->cur], zmq_strerror(errno));
        s_close_socket(self);
        return -1;
    }
    return 0;
}

/* Moves to the next endpoint of the list (the same one if there is only one)
 * with a fresh socket. Returns 0 or -1. */
int
producer_failover(drover_client_t *self)
{
    s_close_socket(self);
    self->cur = (self->cur + 1) % self->nendpoints;
    return s_open_socket(self);
}

bool
producer_is_standby(const dv_msg_t *m)
{
    return m->type == DV_MSG_ERROR && m->u.error.code == DV_CODE_STANDBY;
}

int
producer_standby_failover(drover_client_t *self)
{
    if (self->standby_streak >= self->nendpoints) {
        self->standby_streak = 0;
        struct timespec ts = { 0, S_STANDBY_PAUSE_MS * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
    return producer_failover(self);
}

int
producer_move_on(drover_client_t *self, int r, producer_in_t *in, bool *standby)
{
    bool sb = r == 1 && producer_is_standby(&in->msg);
    if (r != 2 && !sb)
        return 0;
    if (sb) {
        /* Why it is a standby, for the error if no broker is active. */
        dv_str_t why = in->msg.u.error.reason;
        snprintf(self->standby_why, sizeof self->standby_why, "%.*s",
                 (int)why.len, why.ptr ? why.ptr : "");
        producer_in_release(in);
        if (standby)
            *standby = true;
    }
    return (sb ? producer_standby_failover(self) : producer_failover(self)) == 0
               ? 1
               : -1;
}

int
producer_send(drover_client_t *self, const void *buf, size_t len, int flags)
{
    while (zmq_send(self->sock, buf, len, flags) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return 0;
}

/* Encodes msg and sends it. Returns 0, -1 (not sent) or -2 (no memory). */
int
producer_send_msg(drover_client_t *self, const dv_msg_t *msg, int flags)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (dv_msg_encode(msg, &sb) != DV_OK) {
        msgpack_sbuffer_destroy(&sb);
        return -2;
    }
    int rc = producer_send(self, sb.data, sb.size, flags);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

void
producer_in_release(producer_in_t *in)
{
    dv_msg_release(&in->msg);
    zmq_msg_close(&in->frame);
}

/* Waits up to timeout_ms (< 0: for ever) for one message. Returns 1 with *in
 * filled (release it with producer_in_release), 0 when the time passed (or a signal
 * came), -1 if the context is being torn down. A message that does not
 * decode is returned with type DV_MSG_NONE: it is a sign of life but
 * nothing more. */
int
producer_recv(drover_client_t *self, int64_t timeout_ms, producer_in_t *in)
{
    int64_t deadline = timeout_ms < 0 ? -1 : dv_mono_ms() + timeout_ms;
    for (;;) {
        void *mon = dv_zmon_socket(&self->mon);
        zmq_pollitem_t items[2] = { { self->sock, 0, ZMQ_POLLIN, 0 },
                                    { mon, 0, ZMQ_POLLIN, 0 } };
        long t = deadline < 0 ? -1 : (long)producer_remaining(deadline);
        int rc = zmq_poll(items, mon ? 2 : 1, t);
        if (rc < 0)
            return errno == EINTR ? 0 : -1;
        if (rc == 0)
            return 0;
        if (items[0].revents & ZMQ_POLLIN)
            break;
        if (dv_zmon_lost(&self->mon))
            return 2;
    }
    for (;;) {
        zmq_msg_init(&in->frame);
        if (zmq_msg_recv(&in->frame, self->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&in->frame);
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        }
        /* One frame per message; skip anything in front of the last one
         * (an empty delimiter a REQ-minded peer might add). */
        if (!zmq_msg_more(&in->frame))
            break;
        zmq_msg_close(&in->frame);
    }
    memset(&in->msg, 0, sizeof in->msg);
    char why[160];
    if (dv_msg_decode(zmq_msg_data(&in->frame), zmq_msg_size(&in->frame),
                      &in->msg, why, sizeof why) != DV_OK) {
        dv_msg_release(&in->msg);
        memset(&in->msg, 0, sizeof in->msg);
        in->msg.type = DV_MSG_NONE;
    }
    self->standby_streak =
        producer_is_standby(&in->msg) ? self->standby_streak + 1 : 0;
    return 1;
}

/* ---- connect / close --------------------------------------------------- */

void
drover_opts_init(drover_opts_t *o)
{
    memset(o, 0, sizeof *o);
}

drover_client_t *
drover_connect(const char *endpoints, int timeout_ms)
{
    drover_opts_t o;
    drover_opts_init(&o);
    o.endpoints = endpoints;
    o.timeout_ms = timeout_ms;
    return drover_connect_opts(&o);
}

drover_client_t *
drover_connect_opts(const drover_opts_t *o)
{
    s_connect_error[0] = '\0';
    if (!o) {
        snprintf(s_connect_error, sizeof s_connect_error, "no options");
        return NULL;
    }
    const char *endpoints = o->endpoints;
    int timeout_ms = o->timeout_ms;
    if (!endpoints || !*endpoints)
        endpoints = dv_env_or("DROVER_BROKER", DROVER_DEFAULT_ENDPOINT);
    drover_client_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(s_connect_error, sizeof s_connect_error, "out of memory");
        return NULL;
    }
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : S_DEFAULT_TIMEOUT_MS;
    self->next_req = 1;
    /* "" is "none"; NULL takes the environment. */
    const char *secret = o->curve_secret, *server = o->curve_server;
    dv_curve_client_env(&secret, &server);
    if (dv_curve_client_load(&self->curve, secret && *secret ? secret : NULL,
                             server && *server ? server : NULL, s_connect_error,
                             sizeof s_connect_error) != 0)
        goto fail;
    self->nendpoints = dv_strv_split(endpoints, &self->endpoints);
    if (self->nendpoints == 0) {
        snprintf(s_connect_error, sizeof s_connect_error,
                 "no broker endpoint in '%s'", endpoints);
        goto fail;
    }
    self->ctx = zmq_ctx_new();
    if (!self->ctx) {
        snprintf(s_connect_error, sizeof s_connect_error, "zmq_ctx_new: %s",
                 zmq_strerror(errno));
        goto fail;
    }
    /* Check every endpoint now, so a typo fails here and not at failover
     * time. Connecting is lazy; this socket goes away at once. */
    void *probe = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!probe) {
        snprintf(s_connect_error, sizeof s_connect_error, "zmq_socket: %s",
                 zmq_strerror(errno));
        goto fail;
    }
    int zero = 0;
    zmq_setsockopt(probe, ZMQ_LINGER, &zero, sizeof zero);
    for (int i = 0; i < self->nendpoints; i++) {
        if (zmq_connect(probe, self->endpoints[i]) != 0) {
            snprintf(s_connect_error, sizeof s_connect_error,
                     "bad broker endpoint '%s': %s", self->endpoints[i],
                     zmq_strerror(errno));
            zmq_close(probe);
            goto fail;
        }
    }
    zmq_close(probe);
    if (s_open_socket(self) != 0) {
        snprintf(s_connect_error, sizeof s_connect_error, "%s", self->error);
        goto fail;
    }
    return self;
fail:
    drover_close(&self);
    return NULL;
}

void
drover_close(drover_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    drover_client_t *self = *self_p;
    s_close_socket(self);
    producer_drop_kept(self);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    dv_curve_client_wipe(&self->curve);
    dv_strv_free(&self->endpoints);
    free(self);
    *self_p = NULL;
}

void
producer_keep(drover_client_t *self, const zmq_msg_t *frame)
{
    size_t len = zmq_msg_size((zmq_msg_t *)frame);
    if (self->nkept == self->kept_cap) {
        size_t cap = self->kept_cap ? self->kept_cap * 2 : 64;
        producer_raw_t *k = realloc(self->kept, cap * sizeof *k);
        if (!k)
            return;
        self->kept = k;
        self->kept_cap = cap;
    }
    void *data = malloc(len ? len : 1);
    if (!data)
        return;
    memcpy(data, zmq_msg_data((zmq_msg_t *)frame), len);
    self->kept[self->nkept++] = (producer_raw_t){ data, len };
}

void
producer_drop_kept(drover_client_t *self)
{
    for (size_t i = 0; i < self->nkept; i++)
        free(self->kept[i].data);
    free(self->kept);
    self->kept = NULL;
    self->nkept = self->kept_cap = 0;
}

/* ---- one request, one answer ------------------------------------------- */

/* Sends msg (whose req is set) and waits for the reply or error carrying the
 * same req, failing over once per endpoint. On DROVER_OK *in holds the answer
 * (caller releases it). */
static int
s_request(drover_client_t *self, const dv_msg_t *msg, uint64_t req,
          producer_in_t *in)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (dv_msg_encode(msg, &sb) != DV_OK) {
        msgpack_sbuffer_destroy(&sb);
        return producer_fail(self, DROVER_EINVAL, "cannot encode the request");
    }
    int rc = DROVER_EUNREACHABLE;
    /* Standby answers take no attempt: they move on at once, until the
     * timeout has passed. */
    int64_t give_up = dv_mono_ms() + self->timeout_ms;
    bool standby = false;
    for (int attempt = 0; attempt < self->nendpoints; attempt++) {
        if (attempt > 0 && producer_failover(self) != 0)
            break;
    again:
        producer_send(self, sb.data, sb.size, 0);
        int64_t deadline = dv_mono_ms() + self->timeout_ms;
        for (;;) {
            int64_t left = producer_remaining(deadline);
            int r = left > 0 ? producer_recv(self, left, in) : 0;
            if (r < 0) {
                attempt = self->nendpoints;
                break;
            }
            if (r == 0) {
                if (producer_remaining(deadline) > 0)
                    continue;
                break;
            }
            uint64_t got = r != 1                         ? 0
                           : in->msg.type == DV_MSG_REPLY ? in->msg.u.reply.req
                           : in->msg.type == DV_MSG_ERROR ? in->msg.u.error.req
                                                          : 0;
            /* The broker went away, or a standby answered this request:
             * ask the next one (or the same one, reconnected) at once,
             * until the timeout has passed. */
            if (r == 2 || (got == req && producer_is_standby(&in->msg))) {
                if (producer_move_on(self, r, in, &standby) < 0 ||
                    producer_remaining(give_up) == 0) {
                    attempt = self->nendpoints;
                    break;
                }
                goto again;
            }
            if (got == req ||
                (in->msg.type == DV_MSG_ERROR && in->msg.u.error.req == 0)) {
                msgpack_sbuffer_destroy(&sb);
                return DROVER_OK;
            }
            producer_in_release(in); /* stray or late: not ours */
        }
    }
    msgpack_sbuffer_destroy(&sb);
    if (standby)
        return producer_fail(self, rc,
                             "no active broker within %d ms: the brokers "
                             "answered as standbys (%s)",
                             self->timeout_ms, self->standby_why);
    producer_fail(self, rc,
                  "no answer from the broker (tried %s%s) within %d ms%s",
                  self->endpoints[self->cur],
                  self->nendpoints > 1 ? " and the others" : "",
                  self->timeout_ms, producer_curve_hint(self));
    if (self->nendpoints == 1)
        producer_failover(self); /* drop the unanswered request */
    return rc;
}

int
drover_ctrl_ex(drover_client_t *self, const drover_ctrl_t *req,
               char **body_json_out)
{
    if (body_json_out)
        *body_json_out = NULL;
    if (!self)
        return DROVER_EINVAL;
    if (!req || !req->verb || !*req->verb)
        return producer_fail(self, DROVER_EINVAL, "a control verb is required");
    producer_clear(self);
    dv_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = DV_MSG_CTRL;
    m.u.ctrl.req = self->next_req++;
    m.u.ctrl.verb = dv_str(req->verb);
    if (req->id)
        m.u.ctrl.id = dv_str(req->id);
    if (req->queue)
        m.u.ctrl.queue = dv_str(req->queue);
    if (req->worker)
        m.u.ctrl.worker = dv_str(req->worker);
    m.u.ctrl.dead = req->dead != 0;
    m.u.ctrl.has_value = req->has_value != 0;
    m.u.ctrl.value = req->value;
    char *args = NULL;
    if (req->args_json) {
        json_error_t jerr;
        json_t *j = json_loads(req->args_json, 0, &jerr);
        if (!json_is_object(j)) {
            json_decref(j);
            return producer_fail(self, DROVER_EINVAL,
                                 "args must be a JSON object");
        }
        size_t len = 0;
        args = dv_json_to_msgpack(j, &len);
        json_decref(j);
        if (!args)
            return producer_fail(self, DROVER_ENOMEM, "out of memory");
        m.u.ctrl.args = dv_strn(args, len);
    }
    producer_in_t in;
    int rc = s_request(self, &m, m.u.ctrl.req, &in);
    free(args);
    if (rc != DROVER_OK)
        return rc;
    const dv_msg_t *a = &in.msg;
    if (a->type == DV_MSG_ERROR) {
        rc = producer_refused(
            self, a->u.error.code, "broker: %.*s", (int)a->u.error.reason.len,
            a->u.error.reason.ptr ? a->u.error.reason.ptr : "");
    } else if (!a->u.reply.ok) {
        rc = producer_refused(self, a->u.reply.code, "%.*s",
                              (int)a->u.reply.error.len,
                              a->u.reply.error.ptr ? a->u.reply.error.ptr
                                                   : "refused by the broker");
    } else if (body_json_out && a->u.reply.body.ptr) {
        *body_json_out =
            dv_msgpack_to_json_text(a->u.reply.body.ptr, a->u.reply.body.len);
        if (!*body_json_out)
            rc = producer_fail(self, DROVER_EPROTO,
                               "the answer's body is not valid msgpack");
    }
    producer_in_release(&in);
    return rc;
}

int
drover_ctrl(drover_client_t *self, const char *verb, const char *id,
            const char *queue, char **body_json_out)
{
    drover_ctrl_t req;
    memset(&req, 0, sizeof req);
    req.verb = verb;
    req.id = id;
    req.queue = queue;
    return drover_ctrl_ex(self, &req, body_json_out);
}

int
drover_batch_jobs(drover_client_t *self, const char *name, const char *after,
                  int limit, char **page_json_out)
{
    if (page_json_out)
        *page_json_out = NULL;
    if (!self || !page_json_out)
        return DROVER_EINVAL;
    dv_id_t id;
    if (!name || !*name || strlen(name) > DV_NAME_MAX)
        return producer_fail(self, DROVER_EINVAL,
                             "a batch name is 1..200 bytes");
    if (after && dv_id_parse(after, (unsigned)strlen(after), &id) != 0)
        return producer_fail(self, DROVER_EINVAL, "after is not a job id");
    if (limit < 0 || limit > 1000)
        return producer_fail(self, DROVER_EINVAL, "limit is 1..1000");
    json_t *args =
        json_pack("{s:s, s:i}", "name", name, "limit", limit ? limit : 100);
    if (args && after)
        json_object_set_new(args, "after", json_string(after));
    char *text = args ? json_dumps(args, JSON_COMPACT) : NULL;
    json_decref(args);
    if (!text)
        return producer_fail(self, DROVER_ENOMEM, "out of memory");
    drover_ctrl_t req;
    memset(&req, 0, sizeof req);
    req.verb = "batch.jobs";
    req.args_json = text;
    int rc = drover_ctrl_ex(self, &req, page_json_out);
    free(text);
    if (rc == DROVER_OK && !*page_json_out)
        rc = producer_fail(self, DROVER_EPROTO, "the answer has no page");
    return rc;
}

int
drover_cancel(drover_client_t *self, const char *id)
{
    if (!self)
        return DROVER_EINVAL;
    dv_id_t parsed;
    if (!id || strlen(id) != DROVER_ID_LEN ||
        dv_id_parse(id, DROVER_ID_LEN, &parsed) != 0)
        return producer_fail(self, DROVER_EINVAL, "'%s' is not a job id",
                             id ? id : "(null)");
    return drover_ctrl(self, "cancel", id, NULL, NULL);
}
