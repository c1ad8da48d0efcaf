/* broker_self - jobs the broker submits itself: a schedule's firing, a
 * batch's callback.
 *
 * Such a job goes through the same submit path as a client's (validation,
 * its owner's idempotency keys, pending keys, the store read of a key not
 * in memory, the group commit), as a submit of one job from a client with
 * an empty routing id. Its ack, instead of being sent, comes back here and
 * is handed to the callback the submitter gave: once the job's insert is
 * durable (the ack's id), when its key was taken already (duplicate, the
 * id of the job holding it), or when it was refused (error and code). The
 * key is what makes such a submission happen once: a firing or callback
 * submitted again after a crash or a takeover finds its key and becomes a
 * duplicate.
 *
 * A callback that never comes (an ack lost for lack of memory) leaves its
 * entry here: the submitter keeps its own deadline and submits again; the
 * key keeps that safe. Entries older than S_STALE_MS are dropped.
 *
 * Loop thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"

#include "dv_log.h"

/* Requests submitted here carry this bit, so they cannot be confused with
 * a client's (which never reach this file anyway: their rid is not
 * empty). */
#define S_REQ_BIT  (UINT64_C(1) << 62)
#define S_STALE_MS (10 * 60 * 1000)

struct broker_self_sub {
    struct broker_self_sub *next;
    uint64_t req;
    int64_t at_mono_ms;
    broker_self_cb_t cb;
    void *arg;
};

static void
s_drop_stale(broker_t *self, int64_t now)
{
    broker_self_sub_t **pp = &self->self_subs;
    while (*pp) {
        broker_self_sub_t *s = *pp;
        if (now - s->at_mono_ms > S_STALE_MS) {
            *pp = s->next;
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

int
broker_self_submit(broker_t *self, const dv_jobspec_t *js, const char *owner,
                   broker_self_cb_t cb, void *arg)
{
    int64_t now = broker_mono_ms(self);
    s_drop_stale(self, now);
    broker_self_sub_t *s = calloc(1, sizeof *s);
    if (!s)
        return DV_ENOMEM;
    s->req = S_REQ_BIT | ++self->self_seq;
    s->at_mono_ms = now;
    s->cb = cb;
    s->arg = arg;
    s->next = self->self_subs;
    self->self_subs = s;

    dv_msg_t msg = { .type = DV_MSG_SUBMIT };
    msg.u.submit.req = s->req;
    msg.u.submit.jobs = (dv_jobspec_t *)js;
    msg.u.submit.njobs = 1;
    broker_sender_t sender = { .set = owner && owner[0] };
    if (sender.set) {
        sender.peer.role = DV_ROLE_CLIENT;
        snprintf(sender.peer.name, sizeof sender.peer.name, "%s", owner);
    }
    const broker_peer_t *before = broker_sender_use(self, &sender);
    broker_rid_t none = { .len = 0 };
    broker_client_submit(self, &none, &msg);
    self->sender = before;
    return 0;
}

void
broker_self_acked(broker_t *self, uint64_t req, const dv_submit_ack_t *ack)
{
    broker_self_sub_t **pp = &self->self_subs;
    while (*pp && (*pp)->req != req)
        pp = &(*pp)->next;
    broker_self_sub_t *s = *pp;
    if (!s) {
        dv_log(DV_WARN, "broker.self_ack_unknown", DV_INT("req", (int64_t)req));
        return;
    }
    *pp = s->next;
    broker_self_cb_t cb = s->cb;
    void *arg = s->arg;
    free(s);
    cb(self, arg, ack);
}

void
broker_self_free_all(broker_t *self)
{
    while (self->self_subs) {
        broker_self_sub_t *s = self->self_subs;
        self->self_subs = s->next;
        free(s);
    }
}
