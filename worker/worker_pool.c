/* worker_pool - see worker_pool.h. This file is the pool as a lane: jobs
 * taken, cancelled, dispatched to children, drained; the held list for
 * HELLO and the pool's heartbeat metrics. Children as processes are in
 * worker_pool_child.c, their sockets in worker_pool_io.c. Never blocks.
 */
#include "worker_pool.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dv_log.h"
#include "worker_limits.h"
#include "worker_pool_internal.h"

/* Reads per child per pass, so one chatty child cannot starve the rest. */
#define S_READS_PER_PASS 8
/* "per_child" entries in a heartbeat at most, so the body stays small on
 * a big pool. */
#define S_PER_CHILD_MAX 256

/* ---- jobs --------------------------------------------------------------- */

/* The lane's fields of a job that leaves it: buffers kept for the next
 * job in the slot (freed on destroy). */
static void
s_clear(worker_job_t *job, bool destroying)
{
    pool_job_t *j = (pool_job_t *)job;
    if (destroying) {
        worker_buf_free(&j->pmsg);
        worker_buf_free(&j->frame);
        return;
    }
    worker_buf_reset(&j->pmsg);
    worker_buf_reset(&j->frame);
    j->child = -1;
    j->progress_dirty = false;
}

void
pool_fail(worker_pool_t *self, int idx, dv_category_t cat, bool retryable,
          int32_t exit_code, int32_t sig, const char *msg)
{
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = cat;
    f.retryable = retryable;
    f.exit_code = exit_code;
    f.signal = sig;
    f.message = dv_str(msg);
    worker_jobs_failed(self->jobs, idx, self->wall, &f, true);
}

static void
s_pend(worker_pool_t *self, int idx, bool front)
{
    pool_job_t *j = pool_job(self, idx);
    j->base.state = J_PENDING;
    j->child = -1;
    j->skip_sent = false;
    worker_jobs_push(self->jobs, idx, front);
}

void
pool_unstarted(worker_pool_t *self, int idx)
{
    pool_job_t *j = pool_job(self, idx);
    j->child = -1;
    j->skip_sent = false;
    if (j->cancel)
        worker_jobs_drop(self->jobs, idx); /* no longer ours: no report */
    else if (self->draining)
        worker_jobs_returned(self->jobs, idx);
    else
        s_pend(self, idx, true);
}

void
pool_send_skip(worker_pool_t *self, pool_child_t *c, int idx)
{
    pool_job_t *j = pool_job(self, idx);
    if (j->skip_sent || j->base.state != J_ASSIGNED)
        return;
    /* Out of memory: not sent now; the flush tries again. */
    if (worker_ipc_put_tag(&c->out, WORKER_IPC_SKIP, (uint32_t)idx) == 0)
        j->skip_sent = true;
}

/* SKIPs that should have gone but found no memory: jobs of a recycling
 * child, or any while draining, or cancelled ones. */
static void
s_resend_skips(worker_pool_t *self, pool_child_t *c)
{
    for (int k = 0; k < c->nq; k++) {
        pool_job_t *j = pool_job(self, c->q[k]);
        if (j->base.state != J_ASSIGNED || j->skip_sent)
            continue;
        if (self->draining || c->recycle || j->cancel ||
            (c->kill != K_NONE && k > 0))
            pool_send_skip(self, c, c->q[k]);
    }
}

/* ---- lane operations ------------------------------------------------------ */

static bool
s_owns(const void *pool, dv_str_t type)
{
    (void)pool;
    (void)type;
    return true;
}

static int
s_capacity(const void *pool)
{
    const worker_pool_t *self = pool;
    return self->cfg->concurrency + (self->cfg->prefetch_adaptive
                                         ? self->prefetch_now
                                         : self->cfg->prefetch);
}

/* Adaptive prefetch: the outcomes of a window give the job rate, and the
 * worker aims to hold S_HOLD_MS of work beyond what runs (at least one job
 * per child, at most cfg->prefetch): fast jobs get a deep buffer that hides
 * the round trip to the broker, slow ones a shallow one, so no worker
 * hoards them. It grows as soon as a window of S_GROW_MS asks for more (a
 * worker starved of credit finishes as many jobs as it holds per round
 * trip, so each step multiplies what it holds: a burst after a lull is up
 * to speed in tens of milliseconds), and shrinks by a quarter per window of
 * S_ADAPT_MS, so a short lull does not throw the buffer away. */
#define S_GROW_MS  10
#define S_ADAPT_MS 100
#define S_HOLD_MS  5

static void
s_adapt(worker_pool_t *self)
{
    if (!self->cfg->prefetch_adaptive)
        return;
    /* The pool's own outcomes: an http lane's share of the worker's
     * outbox says nothing about how fast the children's jobs go. */
    int64_t done = worker_jobs_ended(self->jobs);
    if (!self->adapt_mono || self->mono < self->adapt_mono) {
        self->adapt_mono = self->mono;
        self->adapt_processed = done;
        return;
    }
    int64_t span = self->mono - self->adapt_mono;
    if (span < S_GROW_MS)
        return;
    int64_t rate_x1000 = (done - self->adapt_processed) * 1000 / span;
    int64_t target = (rate_x1000 * S_HOLD_MS + 999) / 1000;
    int lo = self->cfg->concurrency, hi = self->cfg->prefetch;
    if (target < lo)
        target = lo;
    if (target > hi)
        target = hi;
    int now = self->prefetch_now;
    if (target <= now && span < S_ADAPT_MS)
        return; /* no growth: the window goes on, for a shrink */
    if (target > now) {
        worker_outbox_grant(self->outbox, (int)target - now);
        self->prefetch_now = (int)target;
    } else if (target < now) {
        int next = now - (now - (int)target + 3) / 4;
        worker_outbox_withhold(self->outbox, now - next);
        self->prefetch_now = next;
    }
    self->adapt_mono = self->mono;
    self->adapt_processed = done;
}

static void
s_tick(void *pool)
{
    pool_tick(pool);
    s_adapt(pool);
}

static void
s_set_time(void *pool, int64_t mono_ms, int64_t wall_ms)
{
    worker_pool_t *self = pool;
    self->mono = mono_ms;
    self->wall = wall_ms;
}

static int
s_poll_count(const void *pool)
{
    return ((const worker_pool_t *)pool)->nchildren;
}

static int
s_poll_items(void *pool, zmq_pollitem_t *items, int max)
{
    worker_pool_t *self = pool;
    int n = 0;
    for (int i = 0; i < self->nchildren && n < max; i++) {
        pool_child_t *c = &self->children[i];
        if (c->fd < 0 || c->eof)
            continue;
        items[n].socket = NULL;
        items[n].fd = c->fd;
        /* A stalled child is not read until its report found room. */
        items[n].events = c->stalled ? 0 : ZMQ_POLLIN;
        if (c->out.off < c->out.len)
            items[n].events |= ZMQ_POLLOUT;
        items[n].revents = 0;
        self->poll_map[n] = i;
        n++;
    }
    return n;
}

static void
s_io(void *pool, const zmq_pollitem_t *items, int n)
{
    worker_pool_t *self = pool;
    for (int k = 0; k < n; k++) {
        int ci = self->poll_map[k];
        if (items[k].revents & (ZMQ_POLLIN | ZMQ_POLLERR))
            pool_child_read(self, ci, S_READS_PER_PASS);
        if (items[k].revents & ZMQ_POLLOUT)
            pool_child_write(self, ci);
    }
}

static int
s_add(void *pool, const dv_job_t *job)
{
    worker_pool_t *self = pool;
    int idx;
    int rc = worker_jobs_admit(self->jobs, job, self->draining, &idx);
    if (rc != WORKER_JOBS_TAKEN)
        return rc;
    pool_job_t *j = pool_job(self, idx);
    dv_str_copy(job->trace, j->trace, sizeof j->trace);
    j->timeout_ms =
        job->timeout_ms > 0 ? job->timeout_ms : self->cfg->timeout_ms;
    j->child = -1;
    j->cancel = j->skip_sent = j->progress_dirty = false;
    j->bounces = 0;
    j->started_mono = 0;
    j->cur = j->tot = 0;
    rc = worker_ipc_put_run(&j->frame, (uint32_t)idx, job->id, job->type,
                            job->queue, job->attempt, job->payload, job->trace);
    if (rc == DV_ETOOBIG) {
        pool_fail(self, idx, DV_CAT_INVALID_INPUT, false, -1, 0,
                  "job too large for this worker");
        return 0;
    }
    if (rc != 0) {
        dv_log(DV_ERROR, "worker.job_returned", DV_STR("job", j->base.id),
               DV_STR("error", "out of memory"));
        worker_jobs_returned(self->jobs, idx);
        return 0;
    }
    s_pend(self, idx, false);
    return 0;
}

static int
s_cancel(void *pool, dv_str_t id, uint64_t lease, dv_str_t reason)
{
    worker_pool_t *self = pool;
    int idx = worker_jobs_revoked(self->jobs, id, lease);
    if (idx < 0 || pool_job(self, idx)->base.state < WORKER_JOB_LANE)
        return -1;
    pool_job_t *j = pool_job(self, idx);
    char why[128];
    dv_str_copy(reason, why, sizeof why);
    dv_log(DV_INFO, "worker.job_cancelled", DV_STR("job", pool_idz(j)),
           DV_STR("trace", pool_trace(j)), DV_STR("reason", why),
           DV_STR("state", j->base.state == J_RUNNING ? "running" : "queued"));
    j->cancel = true;
    switch (j->base.state) {
    case J_PENDING:
        worker_jobs_drop(self->jobs, idx);
        break;
    case J_ASSIGNED:
        pool_send_skip(self, &self->children[j->child], idx);
        break;
    case J_RUNNING:
        pool_kill(self, j->child, K_CANCEL, idx);
        break;
    default:
        break;
    }
    return 0;
}

/* Jobs each child may hold now: POOL_DEPTH, or with an adaptive prefetch
 * its share of the prefetch (fast jobs), at most POOL_DEPTH_MAX. */
static int
s_depth(const worker_pool_t *self)
{
    if (!self->cfg->prefetch_adaptive)
        return POOL_DEPTH;
    int d = self->prefetch_now / self->cfg->concurrency;
    return d < POOL_DEPTH       ? POOL_DEPTH
           : d > POOL_DEPTH_MAX ? POOL_DEPTH_MAX
                                : d;
}

static bool
s_can_take(const worker_pool_t *self, const pool_child_t *c)
{
    return c->pid > 0 && c->fd >= 0 && !c->eof && !c->wr_shut && !c->reaped &&
           c->kill == K_NONE && c->nq < s_depth(self) && !c->recycle &&
           (self->cfg->max_jobs_per_child <= 0 ||
            c->assigned < self->cfg->max_jobs_per_child);
}

/* Gives the first waiting job to child ci. Returns 0, or -1 if its frame
 * found no memory (the job stays first in line). */
static int
s_assign(worker_pool_t *self, int ci)
{
    pool_child_t *c = &self->children[ci];
    int idx = worker_jobs_first(self->jobs);
    pool_job_t *j = pool_job(self, idx);
    if (worker_buf_append(&c->out, j->frame.data, j->frame.len) != 0)
        return -1;
    worker_jobs_unlink(self->jobs, idx);
    j->base.state = J_ASSIGNED;
    j->child = ci;
    c->q[c->nq++] = idx;
    c->assigned++;
    return 0;
}

static void
s_dispatch(void *pool)
{
    worker_pool_t *self = pool;
    if (self->draining)
        return;
    /* Idle children first, then a second job each, so work spreads out
     * before it queues up. */
    for (int depth = 0, max = s_depth(self); depth < max; depth++)
        for (int i = 0;
             i < self->nchildren && worker_jobs_queued(self->jobs) > 0; i++) {
            pool_child_t *c = &self->children[i];
            if (c->nq == depth && s_can_take(self, c) && s_assign(self, i) != 0)
                return; /* out of memory: try again next pass */
        }
}

/* Adds the latest progress of each job that reported some this pass to
 * the outbox; what finds no memory waits for the next pass. */
static void
s_flush_progress(worker_pool_t *self)
{
    int kept = 0;
    for (int k = 0; k < self->ndirty; k++) {
        int idx = self->dirty[k];
        pool_job_t *j = pool_job(self, idx);
        if (!j->progress_dirty)
            continue;
        if (j->base.state == J_RUNNING &&
            worker_outbox_progress(self->outbox, worker_job_exec(&j->base),
                                   j->cur, j->tot,
                                   dv_strn(j->pmsg.data, j->pmsg.len)) != 0) {
            self->dirty[kept++] = idx;
            continue;
        }
        j->progress_dirty = false;
    }
    self->ndirty = kept;
}

static void
s_flush(void *pool, bool reports)
{
    worker_pool_t *self = pool;
    for (int i = 0; i < self->nchildren; i++) {
        pool_child_t *c = &self->children[i];
        if (c->nq > 0)
            s_resend_skips(self, c);
        if (c->out.off < c->out.len)
            pool_child_write(self, i);
        /* Draining, or recycling this child: with nothing left to do it
         * is told to exit by closing our side of its socket (EOF). */
        if ((self->draining || c->recycle) && c->fd >= 0 && !c->wr_shut &&
            c->nq == 0 && c->out.off == c->out.len) {
            shutdown(c->fd, SHUT_WR);
            c->wr_shut = true;
        }
    }
    if (reports) {
        s_flush_progress(self);
        worker_jobs_retry(self->jobs);
    }
}

static void
s_drain(void *pool)
{
    worker_pool_t *self = pool;
    if (self->draining)
        return;
    self->draining = true;
    int idx;
    while ((idx = worker_jobs_first(self->jobs)) >= 0) {
        if (pool_job(self, idx)->cancel)
            worker_jobs_drop(self->jobs, idx);
        else
            worker_jobs_returned(self->jobs, idx);
    }
    for (int i = 0; i < self->nchildren; i++) {
        pool_child_t *c = &self->children[i];
        for (int k = 0; k < c->nq; k++)
            pool_send_skip(self, c, c->q[k]);
    }
}

static void
s_stop_running(void *pool)
{
    worker_pool_t *self = pool;
    for (int i = 0; i < self->nchildren; i++) {
        pool_child_t *c = &self->children[i];
        if (pool_alive(c) && c->nq > 0 &&
            pool_job(self, c->q[0])->base.state == J_RUNNING)
            pool_kill(self, i, K_SHUTDOWN, c->q[0]);
    }
}

static size_t
s_held_count(const void *pool)
{
    return worker_jobs_held_count(((const worker_pool_t *)pool)->jobs);
}

static size_t
s_held(const void *pool, dv_held_t *held, size_t max)
{
    return worker_jobs_held(((const worker_pool_t *)pool)->jobs, held, max);
}

void
pool_stats(const void *pool, worker_lane_stats_t *st)
{
    const worker_pool_t *self = pool;
    memset(st, 0, sizeof *st);
    for (int i = 0; i < self->nchildren; i++) {
        const pool_child_t *c = &self->children[i];
        if (!pool_alive(c))
            continue;
        st->alive++;
        if (c->nq > 0 && pool_job(self, c->q[0])->base.state == J_RUNNING)
            st->busy++;
    }
    st->idle = st->alive - st->busy;
}

/* "per_child" (at most S_PER_CHILD_MAX alive children) and "children"
 * (alive). The array is allocated at the first heartbeat and reused: the
 * number of children never changes. */
static int
s_fill_metrics(void *pool, dv_hbmetrics_t *m)
{
    worker_pool_t *self = pool;
    int cap =
        self->nchildren < S_PER_CHILD_MAX ? self->nchildren : S_PER_CHILD_MAX;
    if (!self->hb_children && cap > 0) {
        self->hb_children = calloc((size_t)cap, sizeof *self->hb_children);
        if (!self->hb_children)
            return DV_ENOMEM;
    }
    uint32_t n = 0;
    int alive = 0;
    for (int i = 0; i < self->nchildren; i++) {
        const pool_child_t *c = &self->children[i];
        if (!pool_alive(c))
            continue;
        alive++;
        if (n == (uint32_t)cap)
            continue;
        int64_t rss = worker_limits_rss(c->pid);
        self->hb_children[n++] = (dv_hb_child_t){
            .pid = c->pid,
            .rss_kb = rss < 0 ? -1 : rss / 1024,
            .jobs = c->assigned,
        };
    }
    m->per_child = self->hb_children;
    m->nper_child = n;
    m->children = alive;
    return DV_OK;
}

static const worker_lane_ops_t s_ops = {
    .name = "pool",
    .owns = s_owns,
    .capacity = s_capacity,
    .set_time = s_set_time,
    .poll_count = s_poll_count,
    .poll_items = s_poll_items,
    .io = s_io,
    .tick = s_tick,
    .add = s_add,
    .cancel = s_cancel,
    .dispatch = s_dispatch,
    .flush = s_flush,
    .next_deadline = pool_next_deadline,
    .drain = s_drain,
    .stop_running = s_stop_running,
    .kill_all = pool_kill_all,
    .reap = pool_reap,
    .held_count = s_held_count,
    .held = s_held,
    .stats = pool_stats,
    .fill_metrics = s_fill_metrics,
    .dump = pool_dump,
};

worker_lane_t
worker_pool_lane(worker_pool_t *self)
{
    return (worker_lane_t){ &s_ops, self };
}

/* ---- setup ---------------------------------------------------------------- */

worker_pool_t *
worker_pool_new(const worker_config_t *cfg, const char *name,
                worker_outbox_t *outbox)
{
    worker_pool_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = cfg;
    self->name = name;
    self->outbox = outbox;
    self->self_pid = getpid();
    self->nchildren = cfg->concurrency;
    self->prefetch_now =
        cfg->concurrency < cfg->prefetch ? cfg->concurrency : cfg->prefetch;
    self->children = calloc((size_t)self->nchildren, sizeof *self->children);
    self->poll_map = calloc((size_t)self->nchildren, sizeof *self->poll_map);
    for (int i = 0; self->children && i < self->nchildren; i++)
        pool_child_reset(&self->children[i]); /* fd -1: nothing to close */
    /* Room for the full capacity up front: no growth on the hot path. */
    self->jobs = worker_jobs_new(
        sizeof(pool_job_t), cfg->concurrency + cfg->prefetch + POOL_DEPTH_MAX,
        outbox, s_clear);
    if (!self->children || !self->poll_map || !self->jobs) {
        worker_pool_destroy(&self);
        return NULL;
    }
    return self;
}

void
worker_pool_destroy(worker_pool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    worker_pool_t *self = *self_p;
    if (self->children) {
        pool_kill_all(self, 1000);
        for (int i = 0; i < self->nchildren; i++) {
            worker_buf_free(&self->children[i].in);
            worker_buf_free(&self->children[i].out);
        }
    }
    worker_jobs_destroy(&self->jobs);
    free(self->children);
    free(self->hb_children);
    free(self->poll_map);
    free(self->dirty);
    free(self);
    *self_p = NULL;
}

int
worker_pool_spawn(worker_pool_t *self, int64_t mono_ms)
{
    self->mono = mono_ms;
    int failed = 0;
    for (int i = 0; i < self->nchildren; i++)
        if (!pool_alive(&self->children[i]) && pool_spawn(self, i, false) != 0)
            failed++;
    return failed;
}
