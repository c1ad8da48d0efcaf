/* broker_out - what the broker sends: at once, or after the commit.
 *
 * Owns the encoding of outgoing messages and the order they leave in.
 * "Now" messages (errors for bad input, replies that depend on no write,
 * welcomes, jobs to workers) are encoded and handed to ZeroMQ at once.
 * "Later" messages (replies that follow a write, events) are encoded into
 * the current group's buffer and go out when broker_group.c sees the group
 * durable, in the order they were produced. Events get their sequence
 * number here, one per event, gap-free unless one could not be built.
 * Job events are not sent one by one: each is encoded straight into the
 * group's batch (an "events" message, topic "jobs"), which takes the place
 * of its first event among the group's output. A worker, queue or other
 * event ends the batch and goes alone under its kind as topic, so the PUB
 * socket carries the events in seq order; the next job event starts a new
 * batch. A batch is also ended at S_BATCH_MAX events or S_BATCH_BYTES.
 *
 * Called from every other broker file, on the loop thread. Never blocks:
 * sends use ZMQ_DONTWAIT, and a full or vanished peer loses the message.
 *
 * Out of memory: a reply that cannot be built or queued is logged as
 * broker.reply_dropped (peer and request number); an event that cannot be
 * built is logged as broker.event_dropped and keeps its sequence number,
 * so subscribers see the gap and resync.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "broker_internal.h"
#include "dv_log.h"

static int
s_body_write(void *data, const char *buf, size_t len)
{
    broker_body_t *b = data;
    if (b->failed)
        return -1;
    if (msgpack_sbuffer_write(&b->sb, buf, len) != 0) {
        b->failed = true;
        return -1;
    }
    return 0;
}

void
broker_body_init(broker_body_t *b, msgpack_packer *pk)
{
    msgpack_sbuffer_init(&b->sb);
    b->failed = false;
    msgpack_packer_init(pk, b, s_body_write);
}

void
broker_body_destroy(broker_body_t *b)
{
    msgpack_sbuffer_destroy(&b->sb);
}

void
broker_out_rid_hex(const broker_rid_t *rid, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < rid->len; i++) {
        out[2 * i] = hex[rid->data[i] >> 4];
        out[2 * i + 1] = hex[rid->data[i] & 15];
    }
    out[2 * rid->len] = '\0';
}

void
broker_out_send_raw(void *socket, const broker_rid_t *rid, const void *data,
                    size_t len)
{
    if (rid && rid->len)
        zmq_send(socket, rid->data, rid->len, ZMQ_SNDMORE);
    if (zmq_send(socket, data, len, ZMQ_DONTWAIT) < 0 && errno != EAGAIN &&
        errno != EHOSTUNREACH)
        dv_log(DV_WARN, "broker.send_failed",
               DV_STR("error", zmq_strerror(errno)));
}

int
broker_out_send_now(void *socket, const broker_rid_t *rid, const dv_msg_t *msg)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = dv_msg_encode(msg, &sb);
    if (rc == DV_OK)
        broker_out_send_raw(socket, rid, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rc == DV_OK ? 0 : DV_ENOMEM;
}

/* The next free slot of g->sends (not yet counted), or NULL when out of
 * memory. */
static broker_send_t *
s_send_slot(broker_group_t *g)
{
    if (g->nsends == g->sends_cap) {
        size_t ncap = g->sends_cap ? g->sends_cap * 2 : 1024;
        broker_send_t *n = realloc(g->sends, ncap * sizeof *n);
        if (!n)
            return NULL;
        g->sends = n;
        g->sends_cap = ncap;
    }
    broker_send_t *snd = &g->sends[g->nsends];
    memset(snd, 0, sizeof *snd);
    return snd;
}

int
broker_out_send_later(broker_t *self, void *socket, const broker_rid_t *rid,
                      const char *topic, const dv_msg_t *msg)
{
    broker_group_t *g = self->cur;
    broker_send_t *snd = s_send_slot(g);
    if (!snd)
        return DV_ENOMEM;
    snd->socket = socket;
    if (rid) {
        snd->rid = malloc(sizeof *rid);
        if (!snd->rid)
            return DV_ENOMEM;
        *snd->rid = *rid;
    }
    snd->topic[0] = '\0';
    if (topic)
        snprintf(snd->topic, sizeof snd->topic, "%s", topic);
    snd->off = g->outbuf.size;
    if (dv_msg_encode(msg, &g->outbuf) != DV_OK) {
        g->outbuf.size = snd->off; /* drop the partial encoding */
        free(snd->rid);
        snd->rid = NULL;
        return DV_ENOMEM;
    }
    snd->len = g->outbuf.size - snd->off;
    g->nsends++;
    return 0;
}

void
broker_out_dropped(const broker_rid_t *rid, uint64_t req, const char *what)
{
    char peer[2 * 255 + 1];
    broker_out_rid_hex(rid, peer);
    dv_log(DV_ERROR, "broker.reply_dropped", DV_STR("peer", peer),
           DV_INT("req", (int64_t)req), DV_STR("what", what),
           DV_STR("error", "out of memory"));
}

void
broker_out_error(broker_t *self, void *socket, const broker_rid_t *rid,
                 uint64_t req, dv_code_t code, const char *reason)
{
    if (self && rid && rid->len == 0 && socket == self->clients) {
        /* A submit of the broker's own (broker_self.c) refused whole. */
        dv_submit_ack_t ack = { .error = dv_str(reason), .code = code };
        broker_self_acked(self, req, &ack);
        return;
    }
    dv_msg_t m = { .type = DV_MSG_ERROR };
    m.u.error.req = req;
    m.u.error.code = code;
    m.u.error.reason = dv_str(reason);
    m.u.error.version = DV_PROTO_VERSION;
    if (broker_out_send_now(socket, rid, &m) != 0)
        broker_out_dropped(rid, req, "error");
}

/* A batch ends here: subscribers decode it whole, so it stays well under
 * the frame limit and the item limit. */
#define S_BATCH_MAX   20000
#define S_BATCH_BYTES (16u << 20)

/* Adds the job event ev to the current group's batch, starting one if
 * none is open or the open one is full. Returns 0 or DV_ENOMEM (the
 * batch is then as it was). */
static int
s_batch_add(broker_t *self, const dv_event_t *ev)
{
    broker_group_t *g = self->cur;
    if (g->batch != SIZE_MAX &&
        (g->evenc.n >= S_BATCH_MAX ||
         g->evbuf.size - g->evenc.start >= S_BATCH_BYTES))
        g->batch = SIZE_MAX;
    if (g->batch == SIZE_MAX) {
        broker_send_t *snd = s_send_slot(g);
        if (!snd || dv_events_begin(&g->evenc, &g->evbuf) != DV_OK)
            return DV_ENOMEM;
        snd->socket = self->events;
        snd->batch = true;
        snd->off = g->evenc.start;
        memcpy(snd->topic, DV_EVENTS_TOPIC, sizeof DV_EVENTS_TOPIC);
        if (dv_events_add(&g->evenc, &g->evbuf, ev) != DV_OK) {
            g->evbuf.size = snd->off;
            return DV_ENOMEM;
        }
        g->batch = g->nsends++;
    } else if (dv_events_add(&g->evenc, &g->evbuf, ev) != DV_OK) {
        return DV_ENOMEM;
    }
    broker_send_t *snd = &g->sends[g->batch];
    snd->len = g->evbuf.size - snd->off;
    return 0;
}

void
broker_out_event(broker_t *self, dv_event_t *ev)
{
    ev->seq = ++self->event_seq;
    ev->broker = dv_str(self->instance);
    ev->ts_ms = broker_now_ms(self);
    char topic[48];
    int rc;
    if (dv_event_is_job(ev)) {
        rc = s_batch_add(self, ev);
    } else {
        dv_str_copy(dv_event_topic(ev), topic, sizeof topic);
        self->cur->batch = SIZE_MAX; /* the next job event starts a batch */
        dv_msg_t m = { .type = DV_MSG_EVENT };
        m.u.event = *ev;
        rc = broker_out_send_later(self, self->events, NULL, topic, &m);
    }
    if (rc == 0)
        self->cur->event_seq = ev->seq;
    else
        dv_log(DV_ERROR, "broker.event_dropped",
               DV_STR("kind",
                      dv_str_copy(dv_event_topic(ev), topic, sizeof topic)),
               DV_INT("seq", (int64_t)ev->seq),
               DV_STR("error", "out of memory"));
}

void
broker_out_event_dropped(broker_t *self, dv_event_kind_t kind)
{
    dv_log(DV_ERROR, "broker.event_dropped",
           DV_STR("kind", dv_event_kind_name(kind)),
           DV_INT("seq", (int64_t)++self->event_seq),
           DV_STR("error", "out of memory"));
}

void
broker_out_job_event(broker_t *self, dv_event_kind_t kind,
                     const broker_job_t *job, dv_event_t *ev)
{
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    ev->kind_enum = kind;
    ev->id = dv_str(id);
    ev->queue = dv_str(job->queue->name);
    ev->type = dv_str(job->type);
    ev->batch = dv_str(job->batch);
    if (job->worker)
        ev->worker = dv_str(job->worker->name);
    if (!ev->attempt)
        ev->attempt = job->attempt;
    broker_out_event(self, ev);
}

void
broker_out_reply(broker_t *self, const broker_rid_t *rid, uint64_t req,
                 dv_code_t code, const char *error, const msgpack_sbuffer *body,
                 bool later)
{
    dv_msg_t m = { .type = DV_MSG_REPLY };
    m.u.reply.req = req;
    m.u.reply.ok = error == NULL;
    m.u.reply.code = code;
    m.u.reply.error = dv_str(error);
    if (body && body->size)
        m.u.reply.body = dv_strn(body->data, body->size);
    int rc = later ? broker_out_send_later(self, self->clients, rid, NULL, &m)
                   : broker_out_send_now(self->clients, rid, &m);
    if (rc != 0)
        broker_out_dropped(rid, req, "reply");
}

void
broker_out_bad_message(broker_t *self, void *socket, const broker_rid_t *rid,
                       dv_code_t code, const char *why)
{
    dv_log(DV_WARN, "broker.bad_message",
           DV_STR("socket", socket == self->clients ? "clients" : "workers"),
           DV_STR("reason", why));
    broker_out_error(self, socket, rid, 0, code, why);
}

void
broker_out_unexpected(broker_t *self, void *socket, const broker_rid_t *rid,
                      const dv_msg_t *msg)
{
    char why[96];
    snprintf(why, sizeof why, "unexpected message \"%s\" on the %s socket",
             dv_msg_type_name(msg->type),
             socket == self->clients ? "clients" : "workers");
    broker_out_bad_message(self, socket, rid, DV_CODE_UNKNOWN_TYPE, why);
}
