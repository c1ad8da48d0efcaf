/* broker_recover - start-up: the jobs and queue settings the store holds.
 *
 * Owns rebuilding the in-memory picture from the store: every unfinished
 * job is indexed; one that is not due yet is placed at once, while one
 * that was running or is due waits in limbo for the rejoin window, since
 * a worker of the previous start may hold it (broker_worker.c takes such
 * executions over when the worker rejoins). When the window closes, the
 * rest are queued, and those that were running fail as lost (retried per
 * their attempts). Then the stored queue
 * settings, then the limits given at start ("QUEUE=VALUE"), which override
 * them and are stored in turn. The writes this makes are the first group
 * the writer commits.
 *
 * Called once from broker_core_open, before any socket exists; it blocks
 * on store reads (the loop's own connection), the only reads the loop
 * makes itself. Retry (a control verb) rebuilds jobs with
 * broker_recover_job_from_rec from records the reader thread loaded,
 * which reads nothing. A failure here is a start-up error: logged, the
 * broker does not start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "dv_log.h"

typedef struct {
    broker_t *self;
    size_t count, running, due;
} s_replay_ctx_t;

broker_job_t *
broker_recover_job_from_rec(broker_t *self, const broker_jobrec_t *rec,
                            int *err)
{
    dv_id_t id;
    if (dv_id_parse(rec->id, (unsigned)strlen(rec->id), &id) != 0) {
        *err = DV_EPROTO;
        return NULL;
    }
    broker_queue_t *q = broker_sched_queue(self, rec->queue);
    broker_job_t *job = broker_job_new(&id, rec->payload, rec->payload_len);
    if (!q || !job) {
        broker_job_destroy(&job);
        *err = DV_ENOMEM;
        return NULL;
    }
    int owner_ix = broker_sched_owner(self, rec->owner);
    job->queue = q;
    job->owner = owner_ix > 0 ? (uint16_t)owner_ix : 0;
    job->type = broker_sched_intern(self, dv_str(rec->type));
    job->batch = broker_sched_intern(self, dv_str(rec->batch));
    job->trace = rec->trace ? strdup(rec->trace) : NULL;
    job->priority = (uint8_t)rec->priority;
    job->run_at_ms = rec->run_at_ms;
    job->attempt = (uint16_t)rec->attempt;
    job->max_attempts = (uint16_t)rec->max_attempts;
    job->timeout_ms = (uint32_t)rec->timeout_ms;
    job->backoff_base_ms = (uint32_t)rec->backoff.base_ms;
    job->backoff_cap_ms = (uint32_t)rec->backoff.cap_ms;
    job->backoff_factor = (float)rec->backoff.factor;
    if (rec->backoff.jitter)
        job->flags |= BROKER_JOB_JITTER;
    if (owner_ix < 0 || (rec->type && rec->type[0] && !job->type) ||
        (rec->batch && rec->batch[0] && !job->batch) ||
        (rec->trace && !job->trace) ||
        broker_index_put(&self->index, job) != 0) {
        broker_job_destroy(&job);
        *err = DV_ENOMEM;
        return NULL;
    }
    return job;
}

static int
s_on_replay(void *arg, const broker_jobrec_t *rec)
{
    s_replay_ctx_t *c = arg;
    broker_t *self = c->self;
    int err = 0;
    broker_job_t *job = broker_recover_job_from_rec(self, rec, &err);
    if (!job) {
        if (err == DV_EPROTO) {
            dv_log(DV_WARN, "broker.replay_bad_id", DV_STR("job", rec->id));
            return 0;
        }
        return err;
    }
    c->count++;
    /* Running: its worker may still run it. Due: it may have been
     * dispatched in a group that never committed (leases are sent before
     * they are durable). Either way a rejoining worker may hold it, so it
     * waits in limbo for the rejoin window. Not due yet: it cannot have
     * been dispatched. */
    if (rec->state == DV_STATE_WAITING) {
        /* In no container: its edges come from the deps table after the
         * replay (broker_deps_recover). */
        job->state = DV_STATE_WAITING;
        job->queue->waiting++;
        return 0;
    }
    bool running = rec->state == DV_STATE_RUNNING;
    if (running || rec->run_at_ms <= broker_now_ms(self)) {
        job->state = running ? DV_STATE_RUNNING : DV_STATE_QUEUED;
        job->ready_us = broker_mono_us(self);
        job->flags |= BROKER_JOB_LIMBO;
        broker_list_add(&self->limbo, job);
        if (running)
            c->running++;
        else
            c->due++;
    } else {
        broker_sched_place(self, job, false);
    }
    return 0;
}

int
broker_recover_jobs(broker_t *self)
{
    s_replay_ctx_t c = { self, 0, 0, 0 };
    int rc = broker_store_replay(self->store, s_on_replay, &c);
    if (rc == 0)
        rc = broker_deps_recover(self);
    if (rc != 0)
        return rc;
    if (self->limbo.count)
        self->rejoin_until_ms = broker_mono_ms(self) + self->cfg.rejoin_ms;
    dv_log(DV_INFO, "broker.recovered", DV_INT("jobs", (int64_t)c.count),
           DV_INT("was_running", (int64_t)c.running),
           DV_INT("due", (int64_t)c.due),
           DV_INT("rejoin_window_ms",
                  self->limbo.count ? self->cfg.rejoin_ms : 0));
    return 0;
}

void
broker_recover_end_rejoin(broker_t *self)
{
    size_t lost = 0, queued = 0;
    while (self->limbo.head) {
        broker_job_t *job = self->limbo.head;
        bool running = job->state == DV_STATE_RUNNING;
        broker_sched_unplace(self, job); /* out of limbo, state none */
        if (running) {
            /* Its lease died with the previous start and no worker took
             * it back: the execution is lost. */
            dv_failure_t f;
            dv_failure_init(&f);
            f.category = DV_CAT_LOST;
            f.retryable = true;
            f.message = dv_str("broker restarted while the job was running, "
                               "and no worker took it back");
            broker_sched_fail(self, job, &f);
            lost++;
        } else {
            broker_sched_place(self, job, false);
            queued++;
        }
    }
    dv_log(DV_INFO, "broker.rejoin_window_closed",
           DV_INT("requeued_lost", (int64_t)lost),
           DV_INT("released", (int64_t)queued),
           DV_INT("adopted", (int64_t)self->counters.adopted));
}

static int
s_on_queue_settings(void *arg, const broker_queue_settings_t *st)
{
    broker_t *self = arg;
    broker_queue_t *q = broker_sched_queue(self, st->name);
    if (!q)
        return DV_ENOMEM;
    q->paused = st->paused;
    broker_ctrl_set_rate(self, q, st->rate);
    q->max_running = st->max_running > 0 ? (uint32_t)st->max_running : 0;
    if (q->paused || q->rate > 0 || q->max_running)
        dv_log(DV_INFO, "broker.queue_restored", DV_STR("queue", q->name),
               DV_BOOL("paused", q->paused), DV_DBL("rate", q->rate),
               DV_INT("max_running", q->max_running));
    return 0;
}

/* Splits "QUEUE=VALUE". Returns 0, or -1 if it is not that shape. */
static int
s_split_limit(const char *spec, char *queue, size_t qsize, double *value)
{
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec || (size_t)(eq - spec) >= qsize)
        return -1;
    char *end;
    *value = strtod(eq + 1, &end);
    if (end == eq + 1 || *end || *value < 0 || *value > 1e9)
        return -1;
    memcpy(queue, spec, (size_t)(eq - spec));
    queue[eq - spec] = '\0';
    return 0;
}

static int
s_apply_limits(broker_t *self)
{
    for (int k = 0; k < 2; k++) {
        const char *const *specs =
            k ? self->cfg.queue_max_running : self->cfg.queue_rates;
        int n = k ? self->cfg.nqueue_max_running : self->cfg.nqueue_rates;
        for (int i = 0; i < n; i++) {
            char qn[DV_NAME_MAX + 1];
            double v;
            if (s_split_limit(specs[i], qn, sizeof qn, &v) != 0) {
                dv_log(DV_ERROR, "broker.bad_queue_limit",
                       DV_STR("spec", specs[i]));
                return -1;
            }
            broker_queue_t *q = broker_sched_queue(self, qn);
            if (!q) {
                dv_log(DV_ERROR, "broker.start_failed",
                       DV_STR("error", "out of memory"));
                return -1;
            }
            if (k)
                q->max_running = (uint32_t)v;
            else
                broker_ctrl_set_rate(self, q, v);
            broker_ctrl_queue_save(self, q, DV_EV_QUEUE_LIMITS);
        }
    }
    return 0;
}

int
broker_recover_queues(broker_t *self)
{
    int rc = broker_store_load_queues(self->store, s_on_queue_settings, self);
    if (rc != 0) {
        dv_log(DV_ERROR, "broker.queue_settings_failed",
               DV_STR("error", dv_strerror(rc)));
        return -1;
    }
    return s_apply_limits(self);
}

static int
s_on_key_state(void *arg, const broker_key_state_t *k)
{
    broker_t *self = arg;
    return broker_keys_restore(self->keys, k);
}

int
broker_recover_keys(broker_t *self)
{
    int rc = broker_store_load_keys(self->store, s_on_key_state, self);
    if (rc != 0) {
        dv_log(DV_ERROR, "broker.key_states_failed",
               DV_STR("error", dv_strerror(rc)));
        return -1;
    }
    if (broker_keys_count(self->keys) > 0)
        dv_log(DV_INFO, "broker.key_states",
               DV_INT("keys", broker_keys_count(self->keys)));
    return 0;
}
