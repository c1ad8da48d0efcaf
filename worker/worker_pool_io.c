/* worker_pool_io - a pool child's socket, supervisor side: reads frames
 * (never blocking, a bounded number per pass), checks each against the
 * job it is about, and turns it into a report; writes buffered frames.
 *
 * A child is untrusted: a frame that does not decode, or is about a job
 * the child does not hold, or comes out of order, is a protocol error:
 * the stream is dropped, the child killed, its running job failed
 * "crashed".
 *
 * Out of memory: a frame whose report the outbox cannot take is left
 * unread at the head of the child's input, the child is marked stalled
 * (not read from), and the pool's tick handles it again on a later pass.
 * Nothing about the job changes until its report is queued.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dv_log.h"
#include "worker_limits.h"
#include "worker_pool_internal.h"

static void
s_protocol_error(worker_pool_t *self, int ci, const char *why)
{
    pool_child_t *c = &self->children[ci];
    dv_log(DV_ERROR, "worker.child_protocol_error", DV_INT("child", c->pid),
           DV_STR("reason", why));
    c->eof = true; /* the stream is corrupt: stop reading it */
    worker_buf_reset(&c->in);
    pool_kill(self, ci, K_PROTOCOL, c->nq ? c->q[0] : -1);
}

static void
s_pop_head(pool_child_t *c)
{
    for (int k = 1; k < c->nq; k++)
        c->q[k - 1] = c->q[k];
    c->nq--;
    c->deadline = 0;
    c->soft_at = 0;
}

/* Child ci says it grew past --max-rss-per-child after a job. It has
 * stopped starting jobs; those it holds are skipped (and go to other
 * children), and once it holds none it is told to exit (the pool's flush)
 * and is replaced. */
static void
s_recycle(worker_pool_t *self, int ci, int64_t rss)
{
    pool_child_t *c = &self->children[ci];
    dv_log(DV_INFO, "worker.child_recycled", DV_INT("child", c->pid),
           DV_INT("slot", ci), DV_INT("rss_kb", rss / 1024),
           DV_INT("limit_kb", self->cfg->max_rss_per_child / 1024),
           DV_INT("jobs", c->assigned - c->nq)); /* q: none started */
    c->recycle = true;
    for (int k = 0; k < c->nq; k++)
        pool_send_skip(self, c, c->q[k]);
}

bool
pool_report_stopped(worker_pool_t *self, int ci, int idx, int sig)
{
    pool_child_t *c = &self->children[ci];
    pool_job_t *j = pool_job(self, idx);
    char text[128];
    if (j->cancel) {
        worker_jobs_drop(self->jobs, idx); /* no longer ours: no report */
    } else if (c->kill == K_TIMEOUT && c->kill_job == idx) {
        snprintf(text, sizeof text, "timed out after %.3g s",
                 (double)j->timeout_ms / 1000.0);
        pool_fail(self, idx, DV_CAT_TIMEOUT, true, -1, sig, text);
    } else if (c->kill == K_SHUTDOWN && c->kill_job == idx) {
        pool_fail(self, idx, DV_CAT_TIMEOUT, true, -1, sig,
                  "still running when the worker's shutdown grace "
                  "period ended");
    } else if (c->kill == K_PROTOCOL) {
        pool_fail(self, idx, DV_CAT_CRASHED, true, -1, sig,
                  "the worker child sent a malformed report");
    } else {
        return false;
    }
    return true;
}

/* The latest progress of job idx, reported at the end of the pass. Out of
 * memory drops this one update (a later one replaces it anyway). */
static void
s_progress(worker_pool_t *self, int idx, const worker_ipc_msg_t *m)
{
    pool_job_t *j = pool_job(self, idx);
    if (!j->progress_dirty && self->ndirty == self->dirty_cap) {
        int cap = self->dirty_cap ? self->dirty_cap * 2 : 64;
        int *d = realloc(self->dirty, (size_t)cap * sizeof *d);
        if (!d) {
            dv_log(DV_WARN, "worker.progress_dropped",
                   DV_STR("job", j->base.id), DV_STR("error", "out of memory"));
            return;
        }
        self->dirty = d;
        self->dirty_cap = cap;
    }
    worker_buf_reset(&j->pmsg);
    if (m->message.ptr &&
        worker_buf_append(&j->pmsg, m->message.ptr, m->message.len) != 0)
        worker_buf_reset(&j->pmsg); /* the numbers still go */
    j->cur = m->current;
    j->tot = m->total;
    if (!j->progress_dirty) {
        j->progress_dirty = true;
        self->dirty[self->ndirty++] = idx;
    }
}

/* Handles one frame from child ci. Returns 0, -1 on a protocol error, or
 * 1 if the outbox had no room for its report (nothing changed: handle the
 * frame again later). */
static int
s_child_frame(worker_pool_t *self, int ci, const char *body, uint32_t len)
{
    pool_child_t *c = &self->children[ci];
    worker_ipc_msg_t m;
    if (worker_ipc_decode(body, len, &m) != 0) {
        s_protocol_error(self, ci, "malformed frame");
        return -1;
    }
    if (m.kind == WORKER_IPC_RECYCLE) {
        /* About the child, not a job. */
        if (!c->recycle)
            s_recycle(self, ci, m.current);
        return 0;
    }
    if (c->nq == 0 || m.tag != (uint32_t)c->q[0]) {
        s_protocol_error(self, ci, "report for a job it does not hold");
        return -1;
    }
    int idx = c->q[0];
    pool_job_t *j = pool_job(self, idx);
    bool running = j->base.state == J_RUNNING;
    switch (m.kind) {
    case WORKER_IPC_STARTED:
        if (j->base.state != J_ASSIGNED)
            break;
        if (worker_outbox_started(self->outbox, worker_job_exec(&j->base),
                                  self->wall) != 0)
            return 1;
        j->base.started = true;
        j->base.state = J_RUNNING;
        j->started_mono = self->mono;
        if (j->timeout_ms > 0)
            c->deadline = self->mono + j->timeout_ms;
        int64_t soft =
            worker_limits_soft_ms(self->cfg->soft_timeout_ms,
                                  self->cfg->soft_timeout_pct, j->timeout_ms);
        if (soft > 0)
            c->soft_at = self->mono + soft;
        if (j->cancel)
            pool_kill(self, ci, K_CANCEL, idx);
        return 0;
    case WORKER_IPC_PROGRESS:
        if (!running)
            break;
        s_progress(self, idx, &m);
        return 0;
    case WORKER_IPC_SUCCEEDED:
        if (!running)
            break;
        /* An exec command we are stopping may still end on its own terms
         * after our SIGTERM; it ends as what we stopped it for. */
        if (pool_report_stopped(self, ci, idx, 0)) {
            /* reported as what we stopped it for */
        } else if (m.result.len > DV_PAYLOAD_MAX) {
            pool_fail(self, idx, DV_CAT_HANDLER, false, -1, 0,
                      "result larger than 1 MiB");
        } else if (worker_jobs_succeeded(self->jobs, idx, self->wall, m.result,
                                         NULL) != 0) {
            return 1;
        }
        s_pop_head(c);
        return 0;
    case WORKER_IPC_FAILED:
        if (!running)
            break;
        if (!pool_report_stopped(self, ci, idx, m.failure.signal) &&
            worker_jobs_failed(self->jobs, idx, self->wall, &m.failure,
                               false) != 0)
            return 1;
        s_pop_head(c);
        return 0;
    case WORKER_IPC_SKIPPED:
        if (j->base.state != J_ASSIGNED || !j->skip_sent)
            break;
        s_pop_head(c);
        c->assigned--;
        pool_unstarted(self, idx);
        return 0;
    default:
        break;
    }
    s_protocol_error(self, ci, "report out of order");
    return -1;
}

static void
s_stall(worker_pool_t *self, pool_child_t *c, bool on)
{
    if (c->stalled == on)
        return;
    c->stalled = on;
    self->nstalled += on ? 1 : -1;
}

/* Handles the complete frames in child ci's input. Returns 0, or -1 when
 * reading must stop (a protocol error, or stalled for want of memory). */
static int
s_child_frames(worker_pool_t *self, int ci)
{
    pool_child_t *c = &self->children[ci];
    const char *body;
    uint32_t len;
    int rc;
    while ((rc = worker_ipc_next(&c->in, &body, &len)) == 1) {
        int r = s_child_frame(self, ci, body, len);
        if (r < 0)
            return -1;
        if (r > 0) {
            c->in.off -= 4 + (size_t)len; /* unread: handled again later */
            dv_log(DV_ERROR, "worker.report_deferred", DV_INT("child", c->pid),
                   DV_STR("error", "out of memory"));
            s_stall(self, c, true);
            return -1;
        }
    }
    if (rc < 0) {
        s_protocol_error(self, ci, "bad frame length");
        return -1;
    }
    return 0;
}

void
pool_child_resume(worker_pool_t *self, int ci)
{
    pool_child_t *c = &self->children[ci];
    if (!c->stalled)
        return;
    s_stall(self, c, false);
    s_child_frames(self, ci);
}

void
pool_child_read(worker_pool_t *self, int ci, int max_reads)
{
    pool_child_t *c = &self->children[ci];
    for (int r = 0; r < max_reads && c->fd >= 0 && !c->eof && !c->stalled;
         r++) {
        worker_buf_compact(&c->in);
        if (worker_buf_reserve(&c->in, 65536) != 0) {
            /* Out of memory: leave the bytes in the socket for later. */
            dv_log(DV_ERROR, "worker.read_deferred", DV_INT("child", c->pid),
                   DV_STR("error", "out of memory"));
            s_stall(self, c, true);
            return;
        }
        ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len,
                         MSG_DONTWAIT);
        if (n == 0) {
            c->eof = true;
            break;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                c->eof = true;
            break;
        }
        c->in.len += (size_t)n;
        if (s_child_frames(self, ci) != 0)
            return;
        if ((size_t)n < c->in.cap - (c->in.len - (size_t)n))
            break; /* short read: nothing more for now */
    }
}

void
pool_child_write(worker_pool_t *self, int ci)
{
    pool_child_t *c = &self->children[ci];
    while (c->fd >= 0 && !c->eof && c->out.off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out.off,
                         c->out.len - c->out.off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c->out.off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EPIPE and the like: it died; the reaper settles its jobs. */
        worker_buf_reset(&c->out);
        return;
    }
    if (c->out.off == c->out.len)
        worker_buf_reset(&c->out);
}
