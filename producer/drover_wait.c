/* libdrover's drover_wait(): results of many jobs as they end, over one
 * wait message per chunk of ids, sent again after a failover or a silence,
 * with a liveness probe so a dead broker is told from slow jobs. See
 * drover.h for the contract. */
#include "drover.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "drover_internal.h"
#include "dv_clock.h"
#include "dv_id.h"
#include "dv_json.h"
#include "dv_map.h"
#include "dv_proto.h"

#define S_WAIT_CHUNK     10000 /* ids per wait message */
#define S_WAIT_RESEND_MS 5000  /* silence before wait is sent again */

/* ---- wait -------------------------------------------------------------- */

typedef struct {
    drover_client_t *client;
    const char *const *ids;
    size_t n;
    dv_map_t *map;      /* id -> &ids[first place of the id] */
    uint8_t *done;      /* by index of first place: reported */
    size_t remaining;   /* distinct ids not reported yet */
    uint64_t first_req; /* requests of this call have req >= this */
    uint64_t probe_req; /* the liveness probe in flight, 0 if none */
    uint64_t probes[8]; /* recent probe reqs: errors to them are no
                              verdict on the wait */
    drover_result_cb cb;
    void *arg;
    bool stop;  /* cb asked to stop */
    bool asked; /* the ids went out at least once */
} s_wait_t;

/* Index of the first place of id in w->ids, or SIZE_MAX if not asked. */
static size_t
s_wait_index(const s_wait_t *w, const char *id, size_t len)
{
    const char *const *p = dv_map_getn(w->map, id, len);
    return p ? (size_t)(p - w->ids) : SIZE_MAX;
}

/* (Re)sends wait for every id still outstanding, S_WAIT_CHUNK per message.
 * Best effort: a message that does not fit in the socket now is skipped (it
 * is sent again on the next round). Returns 0 or -2 (no memory). */
static int
s_wait_send(s_wait_t *w)
{
    dv_str_t *chunk = malloc(S_WAIT_CHUNK * sizeof *chunk);
    if (!chunk)
        return -2;
    w->asked = true;
    uint32_t k = 0;
    int rc = 0;
    for (size_t i = 0; i <= w->n && rc == 0; i++) {
        if (i < w->n && !w->done[i] &&
            s_wait_index(w, w->ids[i], DROVER_ID_LEN) == i)
            chunk[k++] = dv_strn(w->ids[i], DROVER_ID_LEN);
        if (k == S_WAIT_CHUNK || (i == w->n && k > 0)) {
            dv_msg_t m;
            memset(&m, 0, sizeof m);
            m.type = DV_MSG_WAIT;
            m.u.wait.req = w->client->next_req++;
            m.u.wait.ids = chunk;
            m.u.wait.nids = k;
            if (producer_send_msg(w->client, &m, ZMQ_DONTWAIT) == -2)
                rc = -2;
            k = 0;
        }
    }
    free(chunk);
    return rc;
}

/* Sends a cheap request whose answer tells that the broker is alive: the
 * state of one outstanding job. */
static void
s_wait_probe(s_wait_t *w)
{
    for (size_t i = 0; i < w->n; i++) {
        if (w->done[i] || s_wait_index(w, w->ids[i], DROVER_ID_LEN) != i)
            continue;
        dv_msg_t m;
        memset(&m, 0, sizeof m);
        m.type = DV_MSG_CTRL;
        m.u.ctrl.req = w->client->next_req++;
        m.u.ctrl.verb = dv_str("job");
        m.u.ctrl.id = dv_strn(w->ids[i], DROVER_ID_LEN);
        if (producer_send_msg(w->client, &m, ZMQ_DONTWAIT) == 0) {
            w->probe_req = m.u.ctrl.req;
            w->probes[m.u.ctrl.req % 8] = m.u.ctrl.req;
        }
        return;
    }
}

/* Reports the results in m that we wait for and have not reported yet. The
 * first pass picks them (so the callback can be told which one is last),
 * the second reports them. */
static int
s_wait_results(s_wait_t *w, const dv_msg_t *m)
{
    uint32_t nres = m->u.result.nresults, npick = 0;
    if (nres == 0)
        return 0;
    uint32_t *pick = malloc(nres * sizeof *pick);
    size_t *index = malloc(nres * sizeof *index);
    if (!pick || !index) {
        free(pick);
        free(index);
        return -2;
    }
    for (uint32_t k = 0; k < nres; k++) {
        const dv_result_t *r = &m->u.result.results[k];
        if (!r->id.ptr || r->id.len != DROVER_ID_LEN)
            continue;
        size_t i = s_wait_index(w, r->id.ptr, r->id.len);
        if (i == SIZE_MAX || w->done[i])
            continue;
        if (!dv_state_terminal(r->state) && r->state != DV_STATE_UNKNOWN)
            continue;
        w->done[i] = 1;
        w->remaining--;
        pick[npick] = k;
        index[npick++] = i;
    }
    for (uint32_t j = 0; j < npick && !w->stop; j++) {
        const dv_result_t *r = &m->u.result.results[pick[j]];
        char *result = NULL, *error = NULL;
        if (r->result.ptr && r->state == DV_STATE_SUCCEEDED)
            result = dv_msgpack_to_json_text(r->result.ptr, r->result.len);
        if (r->has_failure && r->failure.message.ptr)
            error = dv_str_dup(r->failure.message);
        drover_result_t out = {
            .id = w->ids[index[j]],
            .index = index[j],
            .state = dv_state_name(r->state),
            .attempts = r->attempts,
            .result_json = result,
            .category = r->has_failure && r->failure.category != DV_CAT_NONE
                            ? dv_category_name(r->failure.category)
                            : NULL,
            .error = error,
            .finished_ms = r->finished_ms,
            .more = j + 1 < npick,
        };
        if (w->cb && w->cb(&out, w->arg) != 0)
            w->stop = true;
        free(result);
        free(error);
    }
    free(pick);
    free(index);
    return 0;
}

int
drover_wait(drover_client_t *self, const char *const *ids, size_t n,
            int timeout_ms, drover_result_cb cb, void *arg)
{
    if (!self)
        return DROVER_EINVAL;
    producer_clear(self);
    if (n == 0)
        return DROVER_OK;
    if (!ids)
        return producer_fail(self, DROVER_EINVAL, "ids is required");
    for (size_t i = 0; i < n; i++) {
        dv_id_t parsed;
        if (!ids[i] || strlen(ids[i]) != DROVER_ID_LEN ||
            dv_id_parse(ids[i], DROVER_ID_LEN, &parsed) != 0)
            return producer_fail(self, DROVER_EINVAL,
                                 "ids[%zu] '%s' is not a job id", i,
                                 ids[i] ? ids[i] : "(null)");
    }
    s_wait_t w = { .client = self, .ids = ids, .n = n, .cb = cb, .arg = arg };
    w.map = dv_map_new(NULL);
    w.done = calloc(n, 1);
    int rc = DROVER_OK;
    if (!w.map || !w.done || dv_map_reserve(w.map, n) != 0) {
        rc = producer_fail(self, DROVER_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        if (!dv_map_getn(w.map, ids[i], DROVER_ID_LEN) &&
            dv_map_putn(w.map, ids[i], DROVER_ID_LEN, (void *)&ids[i])) {
            rc = producer_fail(self, DROVER_ENOMEM, "out of memory");
            goto done;
        }
    w.remaining = dv_map_size(w.map);
    w.first_req = self->next_req;
    /* Results pushed since a DROVER_SUBMIT_WAIT submit: reported first,
     * and not asked for again. */
    for (size_t i = 0; i < self->nkept && !w.stop; i++) {
        dv_msg_t m;
        char why[128];
        if (dv_msg_decode(self->kept[i].data, self->kept[i].len, &m, why,
                          sizeof why) != DV_OK)
            continue;
        int krc = m.type == DV_MSG_RESULT ? s_wait_results(&w, &m) : 0;
        dv_msg_release(&m);
        if (krc != 0) {
            producer_drop_kept(self);
            rc = producer_fail(self, DROVER_ENOMEM, "out of memory");
            goto done;
        }
    }
    producer_drop_kept(self);

    int64_t now = dv_mono_ms();
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : now + timeout_ms;
    int64_t next_resend = now + S_WAIT_RESEND_MS;
    int64_t probe_sent = 0;
    /* The ids go out once what already waits in the socket is read:
     * results pushed since a DROVER_SUBMIT_WAIT submit that arrived after
     * it returned would otherwise be asked for again, and the broker,
     * which no longer holds those jobs, would read each from its store. */
    while (w.remaining > 0 && !w.stop) {
        now = dv_mono_ms();
        int64_t until = next_resend < deadline ? next_resend : deadline;
        if (w.probe_req && probe_sent + self->timeout_ms < until)
            until = probe_sent + self->timeout_ms;
        if (!w.asked)
            until = now;
        producer_in_t in;
        int r =
            until > now || !w.asked ? producer_recv(self, until - now, &in) : 0;
        if (r == 0 && !w.asked) {
            if (s_wait_send(&w) != 0) {
                rc = producer_fail(self, DROVER_ENOMEM, "out of memory");
                goto done;
            }
            continue;
        }
        if (r < 0) {
            rc = producer_fail(self, DROVER_EUNREACHABLE, "socket closed");
            goto done;
        }
        /* The broker went away, or a standby answered: ask the next
         * endpoint at once. */
        int moved = producer_move_on(self, r, &in, NULL);
        if (moved < 0) {
            rc = DROVER_EUNREACHABLE;
            goto done;
        }
        if (moved > 0) {
            w.probe_req = 0;
            if (s_wait_send(&w) != 0) {
                rc = producer_fail(self, DROVER_ENOMEM, "out of memory");
                goto done;
            }
            next_resend = dv_mono_ms() + S_WAIT_RESEND_MS;
            continue;
        }
        if (r == 1) {
            /* Anything from the broker shows it is alive. */
            w.probe_req = 0;
            next_resend = dv_mono_ms() + S_WAIT_RESEND_MS;
            const dv_msg_t *m = &in.msg;
            if (m->type == DV_MSG_RESULT) {
                if (s_wait_results(&w, m) != 0) {
                    producer_in_release(&in);
                    rc = producer_fail(self, DROVER_ENOMEM, "out of memory");
                    goto done;
                }
            } else if (m->type == DV_MSG_ERROR &&
                       m->u.error.req >= w.first_req &&
                       w.probes[m->u.error.req % 8] != m->u.error.req) {
                rc = producer_refused(
                    self, m->u.error.code, "broker: %.*s",
                    (int)m->u.error.reason.len,
                    m->u.error.reason.ptr ? m->u.error.reason.ptr : "");
                producer_in_release(&in);
                goto done;
            }
            producer_in_release(&in);
            continue;
        }
        now = dv_mono_ms();
        if (now >= deadline) {
            rc = producer_fail(self, DROVER_ETIMEOUT,
                               "%zu of %zu jobs had not ended after %d ms",
                               w.remaining, dv_map_size(w.map), timeout_ms);
            goto done;
        }
        if (w.probe_req && now >= probe_sent + self->timeout_ms) {
            /* The broker did not answer the probe: reconnect (next endpoint
             * if there are several) and ask again there. */
            w.probe_req = 0;
            if (producer_failover(self) != 0) {
                rc = DROVER_EUNREACHABLE;
                goto done;
            }
            if (s_wait_send(&w) != 0) {
                rc = producer_fail(self, DROVER_ENOMEM, "out of memory");
                goto done;
            }
            next_resend = now + S_WAIT_RESEND_MS;
        } else if (now >= next_resend) {
            /* Silence: results may have been lost with a broker that
             * restarted; asking again is harmless. */
            if (s_wait_send(&w) != 0) {
                rc = producer_fail(self, DROVER_ENOMEM, "out of memory");
                goto done;
            }
            if (!w.probe_req) {
                s_wait_probe(&w);
                probe_sent = now;
            }
            next_resend = now + S_WAIT_RESEND_MS;
        }
    }
done:
    dv_map_destroy(&w.map);
    free(w.done);
    return rc;
}
