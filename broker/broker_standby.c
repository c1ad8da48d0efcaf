/* broker_standby - what a standby broker answers.
 *
 * A standby (one of a group sharing a PostgreSQL store, without the
 * group's lock: broker_ha.h) has its sockets bound so that peers find it,
 * and serves nothing: it holds no job, reads no store and writes none.
 * Every request gets an error with code `standby` at once, so that
 * libdrover and workers move to the next endpoint of their list without
 * waiting out a timeout; `status` (the collector's resync, `drover status`,
 * `drover health`) gets a body that says it is a standby and why. Role
 * checks (CurveZMQ) still apply before any of this.
 */
#include "broker_internal.h"
#include "dv_body.h"

/* The refusal's reason: a standby, and why (another broker holds the
 * store's lock, or the lock cannot be reached: the database is down). */
static const char *
s_why(broker_t *self, char *buf, size_t size)
{
    snprintf(buf, size, "standby broker: %s; try the next endpoint",
             self->standby_why[0] ? self->standby_why
                                  : "another broker holds the store's lock");
    return buf;
}

/* The request number of a client message, 0 if it has none. */
static uint64_t
s_req(const dv_msg_t *msg)
{
    switch (msg->type) {
    case DV_MSG_SUBMIT:
        return msg->u.submit.req;
    case DV_MSG_WAIT:
        return msg->u.wait.req;
    case DV_MSG_CTRL:
        return msg->u.ctrl.req;
    default:
        return 0;
    }
}

static void
s_status(broker_t *self, const broker_rid_t *rid, uint64_t req)
{
    dv_status_t st = {
        .broker = dv_str(self->instance),
        .uptime_ms = broker_now_ms(self) - self->started_ms,
        .role = dv_str("standby"),
        .lock = dv_str(self->standby_why[0] ? self->standby_why
                                            : "waiting for the store's lock"),
    };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (dv_status_encode(&st, &sb) != DV_OK)
        broker_out_reply(self, rid, req, DV_CODE_NO_MEMORY,
                         "broker out of memory", NULL, false);
    else
        broker_out_reply(self, rid, req, DV_CODE_NONE, NULL, &sb, false);
    msgpack_sbuffer_destroy(&sb);
}

void
broker_standby_on_client(broker_t *self, const broker_rid_t *rid,
                         const dv_msg_t *msg)
{
    if (msg->type == DV_MSG_CTRL && dv_str_eq(msg->u.ctrl.verb, "status")) {
        s_status(self, rid, msg->u.ctrl.req);
        return;
    }
    self->standby_refused++;
    char why[400];
    broker_out_error(self, self->clients, rid, s_req(msg), DV_CODE_STANDBY,
                     s_why(self, why, sizeof why));
}

void
broker_standby_on_worker(broker_t *self, const broker_rid_t *rid,
                         const dv_msg_t *msg)
{
    (void)msg;
    self->standby_refused++;
    char why[400];
    broker_out_error(self, self->workers, rid, 0, DV_CODE_STANDBY,
                     s_why(self, why, sizeof why));
}
