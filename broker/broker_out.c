/* broker_out - what the broker sends: at once, or after the commit.
 *
 * Owns the encoding of outgoing messages and the order they leave in.
 * "Now" messages (errors for bad input, replies that depend on no write,
 * welcomes, jobs to workers) are encoded and handed to ZeroMQ at once.
 * "Later" messages (replies that follow a write, events) are encoded into
 * the current group's buffer and go out when broker_group.c sees the group
 * durable, in the order they were produced. Events get their sequence
 * number here, one per event.
 *
 * Called from every other broker file, on the loop thread. Never blocks:
 * sends use ZMQ_DONTWAIT, and a full or vanished peer loses the message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "broker_internal.h"
#include "dv_log.h"

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

void
broker_out_send_now(void *socket, const broker_rid_t *rid, const dv_msg_t *msg)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    dv_msg_encode(msg, &sb);
    broker_out_send_raw(socket, rid, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

void
broker_out_send_later(broker_t *self, void *socket, const broker_rid_t *rid,
                      const char *topic, const dv_msg_t *msg)
{
    broker_group_t *g = self->cur;
    if (g->nsends == g->sends_cap) {
        size_t ncap = g->sends_cap ? g->sends_cap * 2 : 1024;
        broker_send_t *n = realloc(g->sends, ncap * sizeof *n);
        if (!n)
            return;
        g->sends = n;
        g->sends_cap = ncap;
    }
    broker_send_t *snd = &g->sends[g->nsends];
    snd->socket = socket;
    snd->rid = NULL;
    if (rid) {
        snd->rid = malloc(sizeof *rid);
        if (!snd->rid)
            return;
        *snd->rid = *rid;
    }
    snd->topic[0] = '\0';
    if (topic)
        snprintf(snd->topic, sizeof snd->topic, "%s", topic);
    snd->off = g->outbuf.size;
    dv_msg_encode(msg, &g->outbuf);
    snd->len = g->outbuf.size - snd->off;
    g->nsends++;
}

void
broker_out_error(broker_t *self, void *socket, const broker_rid_t *rid,
                 uint64_t req, const char *reason)
{
    dv_msg_t m = { .type = DV_MSG_ERROR };
    m.u.error.req = req;
    m.u.error.reason = dv_str(reason);
    m.u.error.version = DV_PROTO_VERSION;
    broker_out_send_now(socket, rid, &m);
    (void)self;
}

void
broker_out_event(broker_t *self, dv_event_t *ev)
{
    ev->seq = ++self->event_seq;
    ev->broker = dv_str(self->instance);
    ev->ts_ms = broker_now_ms(self);
    dv_msg_t m = { .type = DV_MSG_EVENT };
    m.u.event = *ev;
    char topic[48];
    dv_str_copy(ev->kind, topic, sizeof topic);
    broker_out_send_later(self, self->events, NULL, topic, &m);
}

void
broker_out_job_event(broker_t *self, const char *kind, const broker_job_t *job,
                     dv_event_t *ev)
{
    char id[DV_ID_TEXT_LEN + 1];
    broker_id_text(job, id);
    ev->kind = dv_str(kind);
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
broker_out_reply(broker_t *self, const broker_rid_t *rid, uint64_t req, bool ok,
                 const char *error, const msgpack_sbuffer *body, bool later)
{
    dv_msg_t m = { .type = DV_MSG_REPLY };
    m.u.reply.req = req;
    m.u.reply.ok = ok;
    m.u.reply.error = dv_str(error);
    if (body && body->size)
        m.u.reply.body = dv_strn(body->data, body->size);
    if (later)
        broker_out_send_later(self, self->clients, rid, NULL, &m);
    else
        broker_out_send_now(self->clients, rid, &m);
}

void
broker_out_bad_message(broker_t *self, void *socket, const broker_rid_t *rid,
                       const char *why)
{
    dv_log(DV_WARN, "broker.bad_message",
           DV_STR("socket", socket == self->clients ? "clients" : "workers"),
           DV_STR("reason", why));
    broker_out_error(self, socket, rid, 0, why);
}

void
broker_out_unexpected(broker_t *self, void *socket, const broker_rid_t *rid,
                      const dv_msg_t *msg)
{
    char why[96];
    snprintf(why, sizeof why, "unexpected message \"%s\" on the %s socket",
             dv_msg_type_name(msg->type),
             socket == self->clients ? "clients" : "workers");
    broker_out_bad_message(self, socket, rid, why);
}
