/* libdrover's submits: drover_submit(), drover_submit_many() and
 * drover_submit_many_ex() (see drover.h for the contract). A batch goes
 * out in messages of up to S_CHUNK_JOBS jobs (about S_CHUNK_BYTES), with
 * S_WINDOW of them in flight; each message's acks come back whole, and a
 * message unanswered after a failover is sent again to the next endpoint,
 * where the broker's idempotency keys keep a job from being taken twice. */
#include "drover.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>
#include <zmq.h>

#include "dv_clock.h"
#include "dv_id.h"
#include "dv_json.h"
#include "dv_proto.h"
#include "drover_internal.h"

#define S_CHUNK_JOBS   1000       /* jobs per submit message */
#define S_CHUNK_BYTES  (4u << 20) /* bytes per submit message, about */
#define S_WINDOW       32         /* submit messages in flight */
#define S_JOB_OVERHEAD 160        /* msgpack keys and numbers of one job */
#define S_MAX_SECONDS  (10.0 * 365 * 86400)
#define S_NO_ANSWER    "no answer from broker"

static void
s_copy_str(char *dst, size_t size, dv_str_t v)
{
    size_t n = v.len < size - 1 ? v.len : size - 1;
    if (v.ptr && n)
        memcpy(dst, v.ptr, n);
    dst[n] = '\0';
}

/* Seconds from the user to milliseconds for the wire; -1 if not a sane
 * duration. A positive duration never rounds down to 0 ("default"). */
static int
s_seconds_ms(double s, int64_t *ms)
{
    if (!isfinite(s) || s < 0 || s > S_MAX_SECONDS)
        return -1;
    *ms = (int64_t)llround(s * 1000.0);
    if (*ms == 0 && s > 0)
        *ms = 1;
    return 0;
}

/* ---- jobs -------------------------------------------------------------- */

void
drover_job_init(drover_job_t *job)
{
    memset(job, 0, sizeof *job);
    job->priority = -1;
    job->backoff_base_s = -1;
    job->backoff_factor = -1;
    job->backoff_cap_s = -1;
    job->backoff_jitter = -1;
}

static int
s_check_name(const char *what, const char *s, size_t min, size_t max, char *why,
             size_t why_size)
{
    size_t n = s ? strlen(s) : 0;
    if (n < min || n > max) {
        if (min)
            snprintf(why, why_size, "%s must be %zu..%zu bytes", what, min,
                     max);
        else
            snprintf(why, why_size, "%s must be at most %zu bytes", what, max);
        return -1;
    }
    const char *bad = n ? dv_name_check(s, n) : NULL;
    if (bad) {
        snprintf(why, why_size, "%s %s", what, bad);
        return -1;
    }
    return 0;
}

/* Checks job's after and after_any and points spec's at them: one block
 * holds both arrays, then the payload, which moves there if *owned held it
 * (*owned is the block then). Returns 0, -1 (reason in why) or -2. */
static int
s_job_after(const drover_job_t *job, dv_jobspec_t *spec, char **owned,
            char *why, size_t why_size)
{
    size_t na = job->after ? job->nafter : 0;
    size_t ny = job->after_any ? job->nafter_any : 0;
    if (!na && !ny)
        return 0;
    if (na > DV_AFTER_MAX || ny > DV_AFTER_MAX) {
        snprintf(why, why_size, "after and after_any take at most %d ids each",
                 DV_AFTER_MAX);
        return -1;
    }
    for (size_t i = 0; i < na + ny; i++) {
        const char *id = i < na ? job->after[i] : job->after_any[i - na];
        if (!id || strlen(id) != DV_ID_TEXT_LEN) {
            snprintf(why, why_size, "%s: not a job id: '%.40s'",
                     i < na ? "after" : "after_any", id ? id : "(null)");
            return -1;
        }
    }
    size_t arr = (na + ny) * sizeof(dv_str_t);
    size_t plen = *owned ? spec->payload.len : 0;
    char *block = malloc(arr + plen + 1);
    if (!block)
        return -2;
    dv_str_t *a = (dv_str_t *)(void *)block;
    for (size_t i = 0; i < na + ny; i++)
        a[i] = dv_str(i < na ? job->after[i] : job->after_any[i - na]);
    if (*owned) {
        memcpy(block + arr, *owned, plen);
        free(*owned);
        spec->payload = dv_strn(block + arr, plen);
    }
    *owned = block;
    spec->after = na ? a : NULL;
    spec->nafter = (uint32_t)na;
    spec->after_any = ny ? a + na : NULL;
    spec->nafter_any = (uint32_t)ny;
    return 0;
}

/* Checks a job and fills the wire form. Strings point into the job; a payload
 * converted from JSON is a new buffer returned in *owned (caller frees).
 * Returns 0, -1 (not valid: reason in why) or -2 (out of memory). */
static int
s_job_spec(const drover_job_t *job, int64_t now_ms, dv_jobspec_t *spec,
           char **owned, char *why, size_t why_size)
{
    *owned = NULL;
    memset(spec, 0, sizeof *spec);
    const char *queue = job->queue ? job->queue : "default";
    if (s_check_name("queue", queue, 1, DV_NAME_MAX, why, why_size) ||
        s_check_name("type", job->type, 1, DV_NAME_MAX, why, why_size) ||
        s_check_name("key", job->key, 0, DV_KEY_MAX, why, why_size) ||
        s_check_name("batch", job->batch, 0, DV_NAME_MAX, why, why_size) ||
        s_check_name("trace", job->trace, 0, DV_TEXT_MAX, why, why_size))
        return -1;
    spec->queue = dv_str(queue);
    spec->type = dv_str(job->type);
    if (job->key && *job->key)
        spec->key = dv_str(job->key);
    if (job->batch && *job->batch)
        spec->batch = dv_str(job->batch);
    if (job->trace && *job->trace)
        spec->trace = dv_str(job->trace);

    if (job->payload_json) {
        json_error_t err;
        json_t *j = json_loads(job->payload_json, JSON_DECODE_ANY, &err);
        if (!j) {
            snprintf(why, why_size, "payload_json is not valid JSON: %s",
                     err.text);
            return -1;
        }
        size_t len = 0;
        char *mp = dv_json_to_msgpack(j, &len);
        json_decref(j);
        if (!mp) {
            snprintf(why, why_size, "payload nested deeper than %d levels",
                     DV_JSON_MAX_DEPTH);
            return -1;
        }
        *owned = mp;
        spec->payload = dv_strn(mp, len);
    } else if (job->payload_msgpack && job->payload_len) {
        if (dv_mp_validate(job->payload_msgpack, job->payload_len,
                           DV_VALUE_DEPTH_MAX) != DV_OK) {
            snprintf(why, why_size,
                     "payload_msgpack is not one valid msgpack value");
            return -1;
        }
        spec->payload = dv_strn(job->payload_msgpack, job->payload_len);
    }
    if (spec->payload.len > DV_PAYLOAD_MAX) {
        snprintf(why, why_size,
                 "payload is %u bytes as msgpack; the limit is %u",
                 (unsigned)spec->payload.len, DV_PAYLOAD_MAX);
        free(*owned);
        *owned = NULL;
        return -1;
    }

    int rc = -1;
    if (job->priority == -1)
        spec->priority = DV_PRIORITY_DEFAULT;
    else if (job->priority >= 0 && job->priority <= 9)
        spec->priority = job->priority;
    else {
        snprintf(why, why_size, "priority must be 0..9");
        goto bad;
    }
    int64_t delay_ms = 0;
    if (s_seconds_ms(job->delay_s, &delay_ms) != 0) {
        snprintf(why, why_size, "delay must be 0 to 10 years in seconds");
        goto bad;
    }
    if (job->run_at_ms < 0) {
        snprintf(why, why_size, "run_at must be an epoch time in ms");
        goto bad;
    }
    if (job->run_at_ms > 0 && delay_ms > 0) {
        snprintf(why, why_size, "give a delay or a run_at time, not both");
        goto bad;
    }
    spec->run_at_ms = job->run_at_ms ? job->run_at_ms
                      : delay_ms     ? now_ms + delay_ms
                                     : 0;
    if (job->max_attempts < 0 || job->max_attempts > 1000) {
        snprintf(why, why_size, "max_attempts must be 1..1000");
        goto bad;
    }
    spec->max_attempts = job->max_attempts;
    if (s_seconds_ms(job->timeout_s, &spec->timeout_ms) != 0) {
        snprintf(why, why_size, "timeout must be 0 to 10 years in seconds");
        goto bad;
    }
    if (s_seconds_ms(job->result_ttl_s, &spec->result_ttl_ms) != 0) {
        snprintf(why, why_size, "result_ttl must be 0 to 10 years in seconds");
        goto bad;
    }
    int arc = s_job_after(job, spec, owned, why, why_size);
    if (arc != 0) {
        rc = arc;
        goto bad;
    }
    if (job->backoff_base_s >= 0 || job->backoff_factor >= 0 ||
        job->backoff_cap_s >= 0 || job->backoff_jitter >= 0) {
        spec->has_backoff = true;
        spec->backoff = DV_BACKOFF_DEFAULT;
        if (job->backoff_base_s >= 0 &&
            s_seconds_ms(job->backoff_base_s, &spec->backoff.base_ms) != 0) {
            snprintf(why, why_size, "backoff base must be 0 to 10 years");
            goto bad;
        }
        if (job->backoff_cap_s >= 0 &&
            s_seconds_ms(job->backoff_cap_s, &spec->backoff.cap_ms) != 0) {
            snprintf(why, why_size, "backoff cap must be 0 to 10 years");
            goto bad;
        }
        if (job->backoff_factor >= 0) {
            if (!isfinite(job->backoff_factor) || job->backoff_factor < 1 ||
                job->backoff_factor > 1000) {
                snprintf(why, why_size, "backoff factor must be 1..1000");
                goto bad;
            }
            spec->backoff.factor = job->backoff_factor;
        }
        if (job->backoff_jitter >= 0)
            spec->backoff.jitter = job->backoff_jitter != 0;
    } else if (isnan(job->backoff_base_s) || isnan(job->backoff_factor) ||
               isnan(job->backoff_cap_s)) {
        snprintf(why, why_size, "backoff values must be numbers");
        goto bad;
    }
    return 0;
bad:
    free(*owned);
    *owned = NULL;
    return rc;
}

/* One submit message on its way. */
typedef struct {
    uint64_t req;   /* 0: slot free */
    size_t *idx;    /* job index of each job in the message */
    uint32_t njobs; /* jobs in the message */
    char *buf;      /* the encoded message, kept to send again */
    size_t len;
} s_flight_t;

static void
s_flight_free(s_flight_t *f)
{
    free(f->idx);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

/* Marks every job of a message with the same error: the broker refused
 * the message (with code), or no answer came (unanswered). */
static void
s_flight_error(const s_flight_t *f, drover_ack_t *acks, dv_code_t code,
               bool unanswered, const char *fmt, dv_str_t reason)
{
    for (uint32_t k = 0; k < f->njobs; k++) {
        drover_ack_t *a = &acks[f->idx[k]];
        a->id[0] = '\0';
        snprintf(a->error, sizeof a->error, fmt, (int)reason.len,
                 reason.ptr ? reason.ptr : "");
        a->unanswered = unanswered;
        a->code = producer_code_name(code);
    }
}

/* Builds the next message from jobs[*next...]: at most S_CHUNK_JOBS valid
 * jobs and about S_CHUNK_BYTES. Jobs that are not valid get their reason in
 * acks and are left out. Advances *next past the jobs it consumed. Returns 0
 * (f->njobs may be 0 if every job was invalid), or -2 out of memory. */
static int
s_build_chunk(drover_client_t *self, const drover_job_t *jobs, size_t n,
              size_t *next, drover_ack_t *acks, s_flight_t *f, bool wait)
{
    size_t cap = n - *next < S_CHUNK_JOBS ? n - *next : S_CHUNK_JOBS;
    dv_jobspec_t *specs = malloc(cap * sizeof *specs);
    char **owned = malloc(cap * sizeof *owned);
    f->idx = malloc(cap * sizeof *f->idx);
    if (!specs || !owned || !f->idx) {
        free(specs);
        free(owned);
        s_flight_free(f);
        return -2;
    }
    int64_t now = dv_now_ms();
    size_t bytes = 0;
    uint32_t k = 0;
    int rc = 0;
    while (*next < n && k < cap) {
        const drover_job_t *job = &jobs[*next];
        drover_ack_t *a = &acks[*next];
        dv_jobspec_t spec;
        char *mine = NULL;
        int vrc = s_job_spec(job, now, &spec, &mine, a->error, sizeof a->error);
        if (vrc == -2) {
            rc = -2;
            break;
        }
        if (vrc == -1) {
            a->id[0] = '\0';
            (*next)++;
            continue;
        }
        size_t size = S_JOB_OVERHEAD + spec.queue.len + spec.type.len +
                      spec.payload.len + spec.key.len + spec.batch.len +
                      spec.trace.len +
                      (spec.nafter + spec.nafter_any) * (DV_ID_TEXT_LEN + 4);
        if (k > 0 && bytes + size > S_CHUNK_BYTES) {
            free(mine);
            break;
        }
        bytes += size;
        specs[k] = spec;
        owned[k] = mine;
        f->idx[k] = *next;
        k++;
        (*next)++;
    }
    f->njobs = k;
    if (rc == 0 && k > 0) {
        dv_msg_t m;
        memset(&m, 0, sizeof m);
        m.type = DV_MSG_SUBMIT;
        m.u.submit.req = self->next_req++;
        m.u.submit.jobs = specs;
        m.u.submit.njobs = k;
        m.u.submit.wait = wait;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (dv_msg_encode(&m, &sb) != DV_OK || sb.size == 0) {
            msgpack_sbuffer_destroy(&sb);
            rc = -2;
        } else {
            f->req = m.u.submit.req;
            f->len = sb.size;
            f->buf = msgpack_sbuffer_release(&sb);
        }
    }
    for (uint32_t i = 0; i < k; i++)
        free(owned[i]);
    free(specs);
    free(owned);
    if (rc != 0)
        s_flight_free(f);
    return rc;
}

/* Applies a "submitted" answer to the jobs of its message; the code of a
 * refused job is also the client's last code. Returns 0, or -1 if the
 * answer does not fit the message (the jobs are then marked). */
static int
s_apply_acks(drover_client_t *self, const s_flight_t *f, const dv_msg_t *m,
             drover_ack_t *acks)
{
    if (m->u.submit_reply.nacks != f->njobs) {
        for (uint32_t k = 0; k < f->njobs; k++)
            snprintf(acks[f->idx[k]].error, sizeof acks[0].error,
                     "protocol error: broker sent %u answers for %u jobs",
                     m->u.submit_reply.nacks, f->njobs);
        return -1;
    }
    int rc = 0;
    for (uint32_t k = 0; k < f->njobs; k++) {
        const dv_submit_ack_t *in = &m->u.submit_reply.acks[k];
        drover_ack_t *a = &acks[f->idx[k]];
        a->id[0] = '\0';
        a->error[0] = '\0';
        a->duplicate = 0;
        if (in->error.ptr) {
            s_copy_str(a->error, sizeof a->error, in->error);
            if (!a->error[0])
                snprintf(a->error, sizeof a->error, "refused");
            a->code = producer_code_name(in->code);
            self->code = in->code;
        } else if (in->id.ptr && in->id.len == DROVER_ID_LEN) {
            s_copy_str(a->id, sizeof a->id, in->id);
            a->duplicate = in->duplicate;
        } else {
            snprintf(a->error, sizeof a->error,
                     "protocol error: broker sent no job id");
            rc = -1;
        }
    }
    return rc;
}

int
drover_submit_many(drover_client_t *self, const drover_job_t *jobs, size_t n,
                   drover_ack_t *acks)
{
    return drover_submit_many_ex(self, jobs, n, acks, 0);
}

int
drover_submit_many_ex(drover_client_t *self, const drover_job_t *jobs, size_t n,
                      drover_ack_t *acks, unsigned flags)
{
    if (!self)
        return DROVER_EINVAL;
    if (n == 0)
        return DROVER_OK;
    if (!jobs || !acks)
        return producer_fail(self, DROVER_EINVAL, "jobs and acks are required");
    producer_clear(self);
    for (size_t i = 0; i < n; i++) {
        acks[i].id[0] = '\0';
        acks[i].duplicate = 0;
        acks[i].error[0] = '\0';
        acks[i].unanswered = 0;
        acks[i].code = NULL;
    }
    s_flight_t flights[S_WINDOW];
    memset(flights, 0, sizeof flights);
    int inflight = 0, tries = 0, rc = DROVER_OK;
    bool heard = false, proto_error = false;
    bool standby = false; /* a standby broker answered since the last
                           * progress */
    size_t next = 0;
    int64_t last_progress = dv_mono_ms();

    while (next < n || inflight > 0) {
        /* Fill the window. */
        while (next < n && inflight < S_WINDOW) {
            s_flight_t *f = NULL;
            for (int i = 0; i < S_WINDOW && !f; i++)
                if (!flights[i].req)
                    f = &flights[i];
            if (s_build_chunk(self, jobs, n, &next, acks, f,
                              (flags & DROVER_SUBMIT_WAIT) != 0) != 0) {
                rc = producer_fail(self, DROVER_ENOMEM, "out of memory");
                goto give_up;
            }
            if (!f->req)
                continue; /* every job of the chunk was invalid */
            if (inflight == 0)
                last_progress = dv_mono_ms();
            inflight++;
            /* If the socket stays full, the answer timeout below fails
             * over and sends the message again. */
            producer_send(self, f->buf, f->len, 0);
        }
        if (inflight == 0)
            break;

        producer_in_t in;
        int64_t left = producer_remaining(last_progress + self->timeout_ms);
        int r = left > 0 ? producer_recv(self, left, &in) : 0;
        if (r < 0) {
            rc = producer_fail(self, DROVER_EUNREACHABLE, "socket closed");
            goto give_up;
        }
        /* The broker went away, or a standby answered (it took none of
         * them): every message in flight goes to the next endpoint (the
         * same one, reconnected, if there is only one) at once. */
        int moved = producer_move_on(self, r, &in, &standby);
        if (moved < 0) {
            rc = DROVER_EUNREACHABLE;
            goto give_up;
        }
        if (moved > 0) {
            for (int i = 0; i < S_WINDOW; i++)
                if (flights[i].req)
                    producer_send(self, flights[i].buf, flights[i].len, 0);
            continue;
        }
        if (r == 1) {
            const dv_msg_t *m = &in.msg;
            uint64_t req = 0;
            if (m->type == DV_MSG_SUBMIT_REPLY)
                req = m->u.submit_reply.req;
            else if (m->type == DV_MSG_ERROR)
                req = m->u.error.req;
            s_flight_t *f = NULL;
            for (int i = 0; i < S_WINDOW && req && !f; i++)
                if (flights[i].req == req)
                    f = &flights[i];
            if (m->type == DV_MSG_RESULT && (flags & DROVER_SUBMIT_WAIT))
                producer_keep(self, &in.frame); /* for drover_wait() */
            if (f && m->type == DV_MSG_SUBMIT_REPLY) {
                if (s_apply_acks(self, f, m, acks) != 0)
                    proto_error = true;
            } else if (f) {
                s_flight_error(f, acks, m->u.error.code, false,
                               "broker refused the message: %.*s",
                               m->u.error.reason);
                producer_refused(self, m->u.error.code, "broker: %.*s",
                                 (int)m->u.error.reason.len,
                                 m->u.error.reason.ptr ? m->u.error.reason.ptr
                                                       : "");
            } else if (m->type == DV_MSG_ERROR && m->u.error.req == 0) {
                /* The broker could not even read a request number: it will
                 * not read the others either. */
                rc = producer_refused(
                    self, m->u.error.code, "broker: %.*s",
                    (int)m->u.error.reason.len,
                    m->u.error.reason.ptr ? m->u.error.reason.ptr : "");
                producer_in_release(&in);
                goto give_up;
            }
            if (f) {
                s_flight_free(f);
                inflight--;
                heard = true;
                standby = false;
                tries = 0;
                last_progress = dv_mono_ms();
            }
            producer_in_release(&in);
            continue;
        }
        if (producer_remaining(last_progress + self->timeout_ms) > 0)
            continue;
        /* No answer within the timeout: next endpoint, or give up. */
        if (tries + 1 < self->nendpoints) {
            tries++;
            if (producer_failover(self) != 0) {
                rc = DROVER_EUNREACHABLE;
                goto give_up;
            }
            for (int i = 0; i < S_WINDOW; i++)
                if (flights[i].req)
                    producer_send(self, flights[i].buf, flights[i].len, 0);
            last_progress = dv_mono_ms();
            continue;
        }
        rc = heard && !standby ? DROVER_ETIMEOUT : DROVER_EUNREACHABLE;
        if (standby)
            producer_fail(self, rc,
                          "no active broker within %d ms: %s answered as a "
                          "standby (%s)",
                          self->timeout_ms,
                          self->nendpoints > 1 ? "the brokers" : "the broker",
                          self->standby_why);
        else
            producer_fail(
                self, rc,
                heard ? "the broker at %s stopped answering for %d ms"
                      : "no answer from the broker at %s within %d ms%s",
                self->endpoints[self->cur], self->timeout_ms,
                heard ? "" : producer_curve_hint(self));
        /* A fresh socket drops the requests still queued in this one, so
         * they do not reach a broker later; those already delivered may
         * still be committed, hence "no answer" means "unknown". */
        producer_failover(self);
        goto give_up;
    }
    if (proto_error)
        return producer_fail(self, DROVER_EPROTO,
                             "the broker's answer did not match the request");
    return DROVER_OK;

give_up:
    for (int i = 0; i < S_WINDOW; i++)
        if (flights[i].req) {
            s_flight_error(&flights[i], acks, DV_CODE_NONE, true,
                           S_NO_ANSWER "%.*s", dv_strn("", 0));
            s_flight_free(&flights[i]);
        }
    for (; next < n; next++) {
        snprintf(acks[next].error, sizeof acks[next].error, S_NO_ANSWER);
        acks[next].unanswered = 1;
    }
    return rc;
}

int
drover_submit(drover_client_t *self, const drover_job_t *job,
              char id_out[DROVER_ID_SIZE])
{
    if (!self)
        return DROVER_EINVAL;
    if (!job || !id_out)
        return producer_fail(self, DROVER_EINVAL,
                             "job and id_out are required");
    id_out[0] = '\0';
    dv_jobspec_t spec;
    char *owned = NULL, why[256];
    int vrc = s_job_spec(job, dv_now_ms(), &spec, &owned, why, sizeof why);
    free(owned);
    if (vrc == -2)
        return producer_fail(self, DROVER_ENOMEM, "out of memory");
    if (vrc != 0)
        return producer_fail(self, DROVER_EINVAL, "%s", why);
    drover_ack_t ack;
    int rc = drover_submit_many(self, job, 1, &ack);
    if (rc != DROVER_OK)
        return rc;
    if (ack.error[0])
        return producer_refused(self, self->code, "%s", ack.error);
    memcpy(id_out, ack.id, DROVER_ID_SIZE);
    return DROVER_OK;
}
