/* broker_auth - who may send what, when the broker runs CurveZMQ.
 *
 * broker_core.c reads each message's sender (role and certificate name,
 * dv_curve_peer) and asks here before the message reaches its handler:
 *
 *   workers socket: role worker only, and a worker's name (its routing id)
 *                   must be its certificate's name;
 *   clients socket: submit and wait: client, operator; ctrl status,
 *                   schedule.list and schedule.show: client, operator,
 *                   observer; ctrl job: client, operator; ctrl
 *                   finished (what events said already): operator,
 *                   observer; batch.open, .close, .forget: client (its
 *                   own batches), operator; batch.show, batch.jobs:
 *                   client (its own), operator, observer; every
 *                   other verb (check, cancel, retry, pause, resume, purge,
 *                   rate, max-running, drain, schedule.add, .remove,
 *                   .pause, .resume): operator.
 *
 * Jobs have owners: a job remembers the certificate name of the peer that
 * submitted it (broker_auth_owner), and a client may wait on and view only
 * its own jobs (broker_auth_may_read, asked by broker_client.c and
 * broker_views.c). Another's job, or one without an owner, is answered as
 * if it did not exist (wait: state unknown; job: not_found), so a client
 * learns nothing of the jobs of others, not even that they exist.
 * Operators read every job.
 *
 * A refused message is answered with code not_allowed and a reason naming
 * the role ("role observer may not cancel"), and logged once per key and
 * verb (broker.not_allowed, with the certificate's name and public key).
 * Without CurveZMQ nothing is checked. Loop thread; never blocks.
 */
#include <stdio.h>
#include <string.h>

#include "broker_internal.h"
#include "dv_log.h"

/* Logs a refusal the first time this key sends this verb. */
static void
s_log_once(broker_t *self, const char *socket, const broker_peer_t *peer,
           const char *verb, const char *why)
{
    if (!dv_curve_server_first_refusal(self->curve, peer->key, verb))
        return;
    dv_log(DV_WARN, "broker.not_allowed", DV_STR("socket", socket),
           DV_STR("role", dv_role_name(peer->role)), DV_STR("name", peer->name),
           DV_STR("key", peer->key), DV_STR("verb", verb),
           DV_STR("reason", why));
}

/* The reason for a refusal of verb to peer. */
static void
s_reason(const broker_peer_t *peer, const char *verb, char *why, size_t size)
{
    if (peer->role == DV_ROLE_NONE)
        snprintf(why, size,
                 "key no longer allowed: it was removed from the "
                 "allow-lists");
    else
        snprintf(why, size, "role %s may not %s", dv_role_name(peer->role),
                 verb);
}

static bool
s_may_ctrl(dv_role_t role, dv_str_t verb)
{
    switch (role) {
    case DV_ROLE_OPERATOR:
        return true;
    case DV_ROLE_CLIENT:
        /* batch.*: its own batches (broker_batch.c scopes them). */
        return dv_str_eq(verb, "status") || dv_str_eq(verb, "job") ||
               dv_str_eq(verb, "batch.open") ||
               dv_str_eq(verb, "batch.close") ||
               dv_str_eq(verb, "batch.show") || dv_str_eq(verb, "batch.jobs") ||
               dv_str_eq(verb, "batch.forget") ||
               dv_str_eq(verb, "schedule.list") ||
               dv_str_eq(verb, "schedule.show");
    case DV_ROLE_OBSERVER:
        return dv_str_eq(verb, "status") || dv_str_eq(verb, "keys") ||
               dv_str_eq(verb, "finished") || dv_str_eq(verb, "batch.show") ||
               dv_str_eq(verb, "batch.jobs") ||
               dv_str_eq(verb, "schedule.list") ||
               dv_str_eq(verb, "schedule.show");
    default:
        return false;
    }
}

bool
broker_auth_client(broker_t *self, const broker_rid_t *rid,
                   const broker_peer_t *peer, const dv_msg_t *msg)
{
    if (!self->curve)
        return true;
    bool ok;
    char verb[64];
    uint64_t req = 0;
    dv_role_t r = peer->role;
    switch (msg->type) {
    case DV_MSG_SUBMIT:
    case DV_MSG_WAIT:
        ok = r == DV_ROLE_CLIENT || r == DV_ROLE_OPERATOR;
        snprintf(verb, sizeof verb, "%s", dv_msg_type_name(msg->type));
        req = msg->type == DV_MSG_SUBMIT ? msg->u.submit.req : msg->u.wait.req;
        break;
    case DV_MSG_CTRL:
        ok = s_may_ctrl(r, msg->u.ctrl.verb);
        dv_str_copy(msg->u.ctrl.verb, verb, sizeof verb);
        req = msg->u.ctrl.req;
        break;
    default:
        /* Anything else is answered as unexpected on this socket, to the
         * roles that may use it at all. */
        ok = r == DV_ROLE_CLIENT || r == DV_ROLE_OPERATOR;
        snprintf(verb, sizeof verb, "%s", dv_msg_type_name(msg->type));
        break;
    }
    if (ok)
        return true;
    char why[128];
    s_reason(peer, verb, why, sizeof why);
    s_log_once(self, "clients", peer, verb, why);
    if (msg->type == DV_MSG_CTRL)
        broker_out_reply(self, rid, req, DV_CODE_DENIED, why, NULL, false);
    else
        broker_out_error(self, self->clients, rid, req, DV_CODE_DENIED, why);
    return false;
}

const char *
broker_auth_owner(const broker_t *self)
{
    const broker_peer_t *p = self->sender;
    return p && p->role != DV_ROLE_NONE && p->name[0] ? p->name : NULL;
}

bool
broker_auth_may_read(const broker_t *self, const char *owner)
{
    const broker_peer_t *p = self->sender;
    if (!p || p->role != DV_ROLE_CLIENT)
        return true;
    return owner && !strcmp(owner, p->name);
}

bool
broker_auth_worker(broker_t *self, const broker_rid_t *rid,
                   const broker_peer_t *peer, const dv_msg_t *msg)
{
    if (!self->curve)
        return true;
    const char *verb = dv_msg_type_name(msg->type);
    char why[DV_NAME_MAX * 2 + 64];
    if (peer->role != DV_ROLE_WORKER) {
        s_reason(peer, verb, why, sizeof why);
    } else if (rid->len == strlen(peer->name) &&
               !memcmp(rid->data, peer->name, rid->len)) {
        return true;
    } else {
        /* The routing id is another worker's. With ROUTER_HANDOVER the
         * connection under that id may now be this peer's: send that
         * worker nothing more until it speaks again with its own key. */
        char rtext[sizeof rid->data + 1];
        memcpy(rtext, rid->data, rid->len);
        rtext[rid->len] = '\0';
        broker_worker_t *w = dv_map_get(self->worker_by_name, rtext);
        if (w)
            w->credit = 0;
        snprintf(why, sizeof why,
                 "certificate '%s' may not speak as worker '%.*s': a "
                 "worker's name must be its certificate's name",
                 peer->name, (int)strnlen(rtext, DV_NAME_MAX), rtext);
    }
    s_log_once(self, "workers", peer, verb, why);
    broker_out_error(self, self->workers, rid, 0, DV_CODE_DENIED, why);
    return false;
}
