#include "worker_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dv_log.h"
#include "worker_child.h"
#include "worker_ipc.h"
#include "worker_limits.h"

/* Jobs a child holds at once: the one running and the next. */
#define S_DEPTH 2
/* Times a job may come back unstarted from a dying child before we blame
 * it for the deaths. */
#define S_MAX_BOUNCES 2
/* Reads per child per pass, so one chatty child cannot starve the rest. */
#define S_READS_PER_PASS 8
/* Delay before retrying a fork that failed. */
#define S_RESPAWN_RETRY_MS 1000

typedef enum { J_FREE, J_PENDING, J_ASSIGNED, J_RUNNING } s_jstate_t;

typedef struct {
    s_jstate_t state;
    uint8_t idlen;
    char id[WORKER_ID_MAX];
    int32_t attempt;
    char trace[64];          /* W3C traceparent, for log lines; "" = none */
    int64_t timeout_ms;      /* effective limit per attempt; 0 = none */
    int child;               /* child index while assigned/running, else -1 */
    int next;                /* pending FIFO or free list link */
    int hnext;               /* hash chain link */
    bool cancel;             /* the broker cancelled it */
    bool skip_sent;          /* SKIP sent to its child, no answer yet */
    bool progress_dirty;     /* progress to report this pass */
    int bounces;             /* returned unstarted by a dying child */
    int64_t started_mono;    /* when the child began it */
    int64_t cur, tot;        /* latest progress */
    worker_buf_t pmsg;       /* latest progress message */
    worker_buf_t frame;      /* its RUN frame, ready to write to a child */
} s_job_t;

typedef enum {
    K_NONE,      /* not being stopped */
    K_TIMEOUT,   /* its running job passed its timeout */
    K_CANCEL,    /* its running job was cancelled */
    K_SHUTDOWN,  /* the shutdown grace period ended */
    K_PROTOCOL,  /* it sent a malformed frame */
} s_kill_t;

static const char *s_kill_names[] = { "none", "timeout", "cancel",
                                      "shutdown", "protocol" };

typedef struct {
    pid_t pid;               /* 0 when no process */
    int fd;                  /* supervisor's end of the socketpair, or -1 */
    bool eof;                /* no more reading: EOF or corrupt stream */
    bool wr_shut;            /* told to exit (drain) by closing our side */
    int q[S_DEPTH];          /* job indices it holds, q[0] first */
    int nq;
    worker_buf_t in, out;
    int64_t assigned;        /* jobs given since spawn, minus skipped */
    int64_t deadline;        /* mono ms when q[0] times out; 0 = none */
    int64_t soft_at;         /* mono ms to tell q[0] to wrap up; 0 = none */
    bool recycle;            /* over --max-rss-per-child: takes no more
                                jobs, is told to exit once it holds none */
    s_kill_t kill;           /* why we are stopping it */
    int kill_job;            /* the job the stop is about */
    int64_t kill_at;         /* mono ms to send SIGKILL; 0 = none */
    int64_t respawn_at;      /* mono ms to retry a failed fork; 0 = none */
    int64_t spawned;         /* mono ms */
} s_child_t;

struct worker_pool_t {
    const worker_config_t *cfg;
    const char *name;
    worker_outbox_t *outbox;
    pid_t self_pid;
    s_child_t *children;
    int nchildren;
    s_job_t *jobs;           /* job slots; an index is a child frame's tag */
    int njobs;
    int free_head;
    int pend_head, pend_tail;
    size_t npending;
    size_t held;             /* slots not free */
    int *buckets;            /* id hash -> first job index, -1 */
    unsigned nbuckets;       /* power of two */
    int *dirty;              /* jobs with progress this pass */
    int ndirty, dirty_cap;
    int *poll_map;           /* poll item -> child index */
    bool draining;
    int64_t mono, wall;
};

/* ---- small helpers ---------------------------------------------------- */

static void
s_oom(void)
{
    dv_log(DV_ERROR, "worker.oom", DV_STR("where", "pool"));
    abort();
}

static uint32_t
s_hash(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

static dv_str_t
s_id(const s_job_t *j)
{
    return dv_strn(j->id, j->idlen);
}

/* NUL-terminated copy of a job id for log lines. */
static const char *
s_idz(const s_job_t *j, char buf[WORKER_ID_MAX + 1])
{
    memcpy(buf, j->id, j->idlen);
    buf[j->idlen] = '\0';
    return buf;
}

static void
s_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ---- job slots, hash, FIFO --------------------------------------------- */

static void
s_rehash(worker_pool_t *self)
{
    unsigned nb = 16;
    while (nb < (unsigned)self->njobs * 2)
        nb *= 2;
    int *b = malloc(nb * sizeof *b);
    if (!b)
        s_oom();
    for (unsigned i = 0; i < nb; i++)
        b[i] = -1;
    for (int i = 0; i < self->njobs; i++) {
        s_job_t *j = &self->jobs[i];
        if (j->state == J_FREE)
            continue;
        unsigned h = s_hash(j->id, j->idlen) & (nb - 1);
        j->hnext = b[h];
        b[h] = i;
    }
    free(self->buckets);
    self->buckets = b;
    self->nbuckets = nb;
}

static void
s_grow_jobs(worker_pool_t *self)
{
    int old = self->njobs;
    int cap = old ? old * 2 : 16;
    s_job_t *jobs = realloc(self->jobs, (size_t)cap * sizeof *jobs);
    if (!jobs)
        s_oom();
    memset(jobs + old, 0, (size_t)(cap - old) * sizeof *jobs);
    for (int i = cap - 1; i >= old; i--) {
        jobs[i].state = J_FREE;
        jobs[i].child = -1;
        jobs[i].next = self->free_head;
        self->free_head = i;
    }
    self->jobs = jobs;
    self->njobs = cap;
    s_rehash(self);
}

static int
s_find(const worker_pool_t *self, const char *id, size_t len)
{
    if (!self->nbuckets)
        return -1;
    unsigned h = s_hash(id, len) & (self->nbuckets - 1);
    for (int i = self->buckets[h]; i >= 0; i = self->jobs[i].hnext) {
        const s_job_t *j = &self->jobs[i];
        if (j->idlen == len && memcmp(j->id, id, len) == 0)
            return i;
    }
    return -1;
}

static int
s_job_alloc(worker_pool_t *self, dv_str_t id)
{
    if (self->free_head < 0)
        s_grow_jobs(self);
    int idx = self->free_head;
    s_job_t *j = &self->jobs[idx];
    self->free_head = j->next;
    j->idlen = (uint8_t)id.len;
    memcpy(j->id, id.ptr, id.len);
    j->state = J_PENDING;
    j->child = -1;
    j->next = -1;
    j->cancel = j->skip_sent = j->progress_dirty = false;
    j->bounces = 0;
    j->started_mono = 0;
    j->cur = j->tot = 0;
    worker_buf_reset(&j->pmsg);
    worker_buf_reset(&j->frame);
    unsigned h = s_hash(j->id, j->idlen) & (self->nbuckets - 1);
    j->hnext = self->buckets[h];
    self->buckets[h] = idx;
    self->held++;
    return idx;
}

static void
s_job_free(worker_pool_t *self, int idx)
{
    s_job_t *j = &self->jobs[idx];
    unsigned h = s_hash(j->id, j->idlen) & (self->nbuckets - 1);
    int *pp = &self->buckets[h];
    while (*pp >= 0 && *pp != idx)
        pp = &self->jobs[*pp].hnext;
    if (*pp == idx)
        *pp = j->hnext;
    j->state = J_FREE;
    j->child = -1;
    j->progress_dirty = false;
    j->next = self->free_head;
    self->free_head = idx;
    self->held--;
}

static void
s_pend_push(worker_pool_t *self, int idx, bool front)
{
    s_job_t *j = &self->jobs[idx];
    j->state = J_PENDING;
    j->child = -1;
    j->skip_sent = false;
    if (self->pend_head < 0) {
        j->next = -1;
        self->pend_head = self->pend_tail = idx;
    } else if (front) {
        j->next = self->pend_head;
        self->pend_head = idx;
    } else {
        j->next = -1;
        self->jobs[self->pend_tail].next = idx;
        self->pend_tail = idx;
    }
    self->npending++;
}

static int
s_pend_pop(worker_pool_t *self)
{
    int idx = self->pend_head;
    if (idx < 0)
        return -1;
    self->pend_head = self->jobs[idx].next;
    if (self->pend_head < 0)
        self->pend_tail = -1;
    self->jobs[idx].next = -1;
    self->npending--;
    return idx;
}

static void
s_pend_remove(worker_pool_t *self, int idx)
{
    int prev = -1;
    for (int i = self->pend_head; i >= 0; prev = i, i = self->jobs[i].next) {
        if (i != idx)
            continue;
        int next = self->jobs[i].next;
        if (prev < 0)
            self->pend_head = next;
        else
            self->jobs[prev].next = next;
        if (self->pend_tail == idx)
            self->pend_tail = prev;
        self->npending--;
        self->jobs[idx].next = -1;
        return;
    }
}

/* ---- reports ----------------------------------------------------------- */

static void
s_report_failed(worker_pool_t *self, int idx, dv_category_t cat,
                bool retryable, int32_t exit_code, int32_t sig,
                const char *msg)
{
    s_job_t *j = &self->jobs[idx];
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = cat;
    f.retryable = retryable;
    f.exit_code = exit_code;
    f.signal = sig;
    f.message = dv_str(msg);
    worker_outbox_failed(self->outbox, s_id(j), j->attempt, self->wall, &f);
}

/* A job that never started came back (skipped, or its child died). */
static void
s_unstarted(worker_pool_t *self, int idx)
{
    s_job_t *j = &self->jobs[idx];
    j->child = -1;
    j->skip_sent = false;
    if (j->cancel) {
        s_report_failed(self, idx, DV_CAT_CANCELLED, false, -1, 0,
                        "cancelled before it started");
        s_job_free(self, idx);
    } else if (self->draining) {
        worker_outbox_returned(self->outbox, s_id(j), j->attempt);
        s_job_free(self, idx);
    } else {
        s_pend_push(self, idx, true);
    }
}

/* ---- children ---------------------------------------------------------- */

static bool
s_alive(const s_child_t *c)
{
    return c->pid > 0;
}

static bool
s_can_take(const worker_pool_t *self, const s_child_t *c)
{
    return c->pid > 0 && c->fd >= 0 && !c->eof && !c->wr_shut &&
           c->kill == K_NONE && c->nq < S_DEPTH && !c->recycle &&
           (self->cfg->max_jobs_per_child <= 0 ||
            c->assigned < self->cfg->max_jobs_per_child);
}

static void
s_child_reset(s_child_t *c)
{
    c->pid = 0;
    c->fd = -1;
    c->eof = c->wr_shut = false;
    c->nq = 0;
    worker_buf_reset(&c->in);
    worker_buf_reset(&c->out);
    c->assigned = 0;
    c->deadline = 0;
    c->soft_at = 0;
    c->recycle = false;
    c->kill = K_NONE;
    c->kill_job = -1;
    c->kill_at = 0;
    c->respawn_at = 0;
}

static int
s_spawn(worker_pool_t *self, int ci, bool quiet)
{
    s_child_t *c = &self->children[ci];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        dv_log(DV_ERROR, "worker.spawn_failed", DV_STR("op", "socketpair"),
               DV_STR("error", strerror(errno)));
        c->respawn_at = self->mono + S_RESPAWN_RETRY_MS;
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        dv_log(DV_ERROR, "worker.spawn_failed", DV_STR("op", "fork"),
               DV_STR("error", strerror(errno)));
        close(sv[0]);
        close(sv[1]);
        c->respawn_at = self->mono + S_RESPAWN_RETRY_MS;
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        worker_child_main(sv[1], self->cfg, self->name, self->self_pid);
    }
    /* Also set here: we may signal the group before the child runs. */
    setpgid(pid, pid);
    close(sv[1]);
    s_nonblock(sv[0]);
    s_child_reset(c);
    c->pid = pid;
    c->fd = sv[0];
    c->spawned = self->mono;
    dv_log(quiet ? DV_DEBUG : DV_INFO, "worker.child_spawned",
           DV_INT("child", pid), DV_INT("slot", ci));
    return 0;
}

static void
s_send_skip(worker_pool_t *self, s_child_t *c, int idx)
{
    s_job_t *j = &self->jobs[idx];
    if (j->skip_sent || j->state != J_ASSIGNED)
        return;
    if (worker_ipc_put_tag(&c->out, WORKER_IPC_SKIP, (uint32_t)idx) != 0)
        s_oom();
    j->skip_sent = true;
}

/* Starts stopping a child: SIGTERM to its group (SIGKILL for a corrupt
 * one), SIGKILL after kill_grace. The job queued behind is asked to be
 * skipped, so it is not started in between and killed with the child. */
static void
s_kill(worker_pool_t *self, int ci, s_kill_t why, int job)
{
    s_child_t *c = &self->children[ci];
    if (!s_alive(c) || c->kill != K_NONE)
        return;
    c->kill = why;
    c->kill_job = job;
    c->deadline = 0;
    c->soft_at = 0;
    int64_t grace = self->cfg->kill_grace_ms;
    if (why == K_PROTOCOL || grace <= 0) {
        kill(-c->pid, SIGKILL);
        c->kill_at = 0;
    } else {
        kill(-c->pid, SIGTERM);
        c->kill_at = self->mono + grace;
    }
    for (int k = 1; k < c->nq; k++)
        s_send_skip(self, c, c->q[k]);
}

static void
s_protocol_error(worker_pool_t *self, int ci, const char *why)
{
    s_child_t *c = &self->children[ci];
    dv_log(DV_ERROR, "worker.child_protocol_error", DV_INT("child", c->pid),
           DV_STR("reason", why));
    c->eof = true; /* the stream is corrupt: stop reading it */
    worker_buf_reset(&c->in);
    s_kill(self, ci, K_PROTOCOL, c->nq ? c->q[0] : -1);
}

static void
s_pop_head(s_child_t *c)
{
    for (int k = 1; k < c->nq; k++)
        c->q[k - 1] = c->q[k];
    c->nq--;
    c->deadline = 0;
    c->soft_at = 0;
}

/* Child ci says it grew past --max-rss-per-child after a job. It has
 * stopped starting jobs; those it holds are skipped (and go to other
 * children), and once it holds none it is told to exit (worker_pool_flush)
 * and is replaced. */
static void
s_recycle(worker_pool_t *self, int ci, int64_t rss)
{
    s_child_t *c = &self->children[ci];
    dv_log(DV_INFO, "worker.child_recycled", DV_INT("child", c->pid),
           DV_INT("slot", ci), DV_INT("rss_kb", rss / 1024),
           DV_INT("limit_kb", self->cfg->max_rss_per_child / 1024),
           DV_INT("jobs", c->assigned - c->nq)); /* q: none started */
    c->recycle = true;
    for (int k = 0; k < c->nq; k++)
        s_send_skip(self, c, c->q[k]);
}

/* If we are stopping the job idx (cancel, timeout, shutdown, corrupt
 * child), reports the failure that says so and returns true. sig is the
 * signal that ended it, if known. */
static bool
s_report_stopped(worker_pool_t *self, int ci, int idx, int sig)
{
    s_child_t *c = &self->children[ci];
    s_job_t *j = &self->jobs[idx];
    char text[128];
    if (j->cancel) {
        s_report_failed(self, idx, DV_CAT_CANCELLED, false, -1, 0,
                        "cancelled while running");
    } else if (c->kill == K_TIMEOUT && c->kill_job == idx) {
        snprintf(text, sizeof text, "timed out after %.3g s",
                 (double)j->timeout_ms / 1000.0);
        s_report_failed(self, idx, DV_CAT_TIMEOUT, true, -1, sig, text);
    } else if (c->kill == K_SHUTDOWN && c->kill_job == idx) {
        s_report_failed(self, idx, DV_CAT_TIMEOUT, true, -1, sig,
                        "still running when the worker's shutdown grace "
                        "period ended");
    } else if (c->kill == K_PROTOCOL) {
        s_report_failed(self, idx, DV_CAT_CRASHED, true, -1, sig,
                        "the worker child sent a malformed report");
    } else {
        return false;
    }
    return true;
}

/* Handles one frame from child ci. Returns -1 on a protocol error. */
static int
s_child_frame(worker_pool_t *self, int ci, const char *body, uint32_t len)
{
    s_child_t *c = &self->children[ci];
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
    s_job_t *j = &self->jobs[idx];
    bool running = j->state == J_RUNNING;
    switch (m.kind) {
    case WORKER_IPC_STARTED:
        if (j->state != J_ASSIGNED)
            break;
        j->state = J_RUNNING;
        j->started_mono = self->mono;
        if (j->timeout_ms > 0)
            c->deadline = self->mono + j->timeout_ms;
        int64_t soft = worker_limits_soft_ms(self->cfg->soft_timeout_ms,
                                             self->cfg->soft_timeout_pct,
                                             j->timeout_ms);
        if (soft > 0)
            c->soft_at = self->mono + soft;
        worker_outbox_started(self->outbox, s_id(j), j->attempt, self->wall);
        if (j->cancel)
            s_kill(self, ci, K_CANCEL, idx);
        return 0;
    case WORKER_IPC_PROGRESS:
        if (!running)
            break;
        j->cur = m.current;
        j->tot = m.total;
        worker_buf_reset(&j->pmsg);
        if (m.message.ptr &&
            worker_buf_append(&j->pmsg, m.message.ptr, m.message.len) != 0)
            s_oom();
        if (!j->progress_dirty) {
            j->progress_dirty = true;
            if (self->ndirty == self->dirty_cap) {
                int cap = self->dirty_cap ? self->dirty_cap * 2 : 64;
                int *d = realloc(self->dirty, (size_t)cap * sizeof *d);
                if (!d)
                    s_oom();
                self->dirty = d;
                self->dirty_cap = cap;
            }
            self->dirty[self->ndirty++] = idx;
        }
        return 0;
    case WORKER_IPC_SUCCEEDED:
        if (!running)
            break;
        /* An exec command we are stopping may still end on its own terms
         * after our SIGTERM; it ends as what we stopped it for. */
        if (s_report_stopped(self, ci, idx, 0)) {
            /* reported as what we stopped it for */
        } else if (m.result.len > DV_PAYLOAD_MAX) {
            s_report_failed(self, idx, DV_CAT_HANDLER, false, -1, 0,
                            "result larger than 1 MiB");
        } else {
            worker_outbox_succeeded(self->outbox, s_id(j), j->attempt,
                                    self->wall, m.result);
        }
        s_pop_head(c);
        s_job_free(self, idx);
        return 0;
    case WORKER_IPC_FAILED:
        if (!running)
            break;
        if (!s_report_stopped(self, ci, idx, m.failure.signal))
            worker_outbox_failed(self->outbox, s_id(j), j->attempt,
                                 self->wall, &m.failure);
        s_pop_head(c);
        s_job_free(self, idx);
        return 0;
    case WORKER_IPC_SKIPPED:
        if (j->state != J_ASSIGNED || !j->skip_sent)
            break;
        s_pop_head(c);
        c->assigned--;
        s_unstarted(self, idx);
        return 0;
    default:
        break;
    }
    s_protocol_error(self, ci, "report out of order");
    return -1;
}

/* Reads what child ci sent (up to max reads) and handles each frame. */
static void
s_child_read(worker_pool_t *self, int ci, int max_reads)
{
    s_child_t *c = &self->children[ci];
    for (int r = 0; r < max_reads && c->fd >= 0 && !c->eof; r++) {
        worker_buf_compact(&c->in);
        if (worker_buf_reserve(&c->in, 65536) != 0)
            s_oom();
        ssize_t n = recv(c->fd, c->in.data + c->in.len,
                         c->in.cap - c->in.len, MSG_DONTWAIT);
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
        const char *body;
        uint32_t len;
        int rc;
        while ((rc = worker_ipc_next(&c->in, &body, &len)) == 1)
            if (s_child_frame(self, ci, body, len) != 0)
                return;
        if (rc < 0) {
            s_protocol_error(self, ci, "bad frame length");
            return;
        }
        if ((size_t)n < c->in.cap - (c->in.len - (size_t)n))
            break; /* short read: nothing more for now */
    }
}

static void
s_child_write(worker_pool_t *self, int ci)
{
    s_child_t *c = &self->children[ci];
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
    (void)self;
}

/* Builds the failure for a job that was running in a child that died. */
static void
s_settle_running(worker_pool_t *self, int ci, int idx, int status)
{
    s_child_t *c = &self->children[ci];
    s_job_t *j = &self->jobs[idx];
    char text[256], idz[WORKER_ID_MAX + 1];
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (s_report_stopped(self, ci, idx, sig)) {
        /* reported as what we stopped it for */
    } else {
        if (sig)
            snprintf(text, sizeof text,
                     "worker child killed by signal %d (%s)", sig,
                     strsignal(sig));
        else
            snprintf(text, sizeof text,
                     "worker child exited with status %d while running "
                     "the job",
                     code);
        dv_log(DV_WARN, "worker.job_crashed", DV_STR("job", s_idz(j, idz)),
               DV_STR("trace", j->trace[0] ? j->trace : NULL),
               DV_INT("attempt", j->attempt), DV_INT("child", c->pid),
               DV_INT("signal", sig), DV_INT("exit_code", code));
        s_report_failed(self, idx, DV_CAT_CRASHED, true, sig ? -1 : code,
                        sig, text);
    }
    s_job_free(self, idx);
}

/* Child ci was reaped with status: read its last words, settle the jobs
 * it held, respawn it. */
static void
s_child_dead(worker_pool_t *self, int ci, int status)
{
    s_child_t *c = &self->children[ci];
    pid_t pid = c->pid;
    s_child_read(self, ci, 1 << 20); /* until EOF: it can write no more */
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    /* Take down anything it started that is still in its group. */
    kill(-pid, SIGKILL);

    bool ours = c->kill != K_NONE;
    bool had_running = false;
    for (int k = 0; k < c->nq; k++) {
        int idx = c->q[k];
        s_job_t *j = &self->jobs[idx];
        if (j->state == J_RUNNING) {
            had_running = true;
            s_settle_running(self, ci, idx, status);
            continue;
        }
        if (k == 0 && !ours && !j->cancel && ++j->bounces > S_MAX_BOUNCES) {
            s_report_failed(self, idx, DV_CAT_CRASHED, true, -1, 0,
                            "worker children died repeatedly before "
                            "starting the job");
            s_job_free(self, idx);
            continue;
        }
        s_unstarted(self, idx);
    }
    c->nq = 0;

    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    bool clean = code == 0 && !had_running && c->kill == K_NONE;
    const char *reason = "crashed";
    if (c->kill != K_NONE)
        reason = "stopped";
    else if (clean && self->draining)
        reason = "drained";
    else if (clean && c->recycle)
        reason = "recycled";
    else if (clean && self->cfg->max_jobs_per_child > 0 &&
             c->assigned >= self->cfg->max_jobs_per_child)
        reason = "recycled";
    else if (clean)
        reason = "exited";
    dv_log(clean ? DV_DEBUG : DV_INFO, "worker.child_exited",
           DV_INT("child", pid), DV_INT("slot", ci), DV_STR("reason", reason),
           DV_STR("status", sig ? "signaled" : "exited"),
           DV_INT("exit_code", code), DV_INT("signal", sig),
           DV_STR("stopped_for", s_kill_names[c->kill]),
           DV_INT("jobs", c->assigned));
    s_child_reset(c);
    if (!self->draining)
        s_spawn(self, ci, clean);
}

/* ---- public ------------------------------------------------------------ */

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
    self->children = calloc((size_t)self->nchildren, sizeof *self->children);
    self->poll_map = calloc((size_t)self->nchildren, sizeof *self->poll_map);
    if (!self->children || !self->poll_map) {
        free(self->children);
        free(self->poll_map);
        free(self);
        return NULL;
    }
    for (int i = 0; i < self->nchildren; i++) {
        s_child_reset(&self->children[i]);
        worker_buf_init(&self->children[i].in);
        worker_buf_init(&self->children[i].out);
    }
    self->free_head = -1;
    self->pend_head = self->pend_tail = -1;
    /* Room for the full capacity up front: no growth on the hot path. */
    while (self->njobs < cfg->concurrency + cfg->prefetch + S_DEPTH)
        s_grow_jobs(self);
    return self;
}

void
worker_pool_destroy(worker_pool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    worker_pool_t *self = *self_p;
    worker_pool_kill_all(self, 1000);
    for (int i = 0; i < self->nchildren; i++) {
        worker_buf_free(&self->children[i].in);
        worker_buf_free(&self->children[i].out);
    }
    for (int i = 0; i < self->njobs; i++) {
        worker_buf_free(&self->jobs[i].frame);
        worker_buf_free(&self->jobs[i].pmsg);
    }
    free(self->children);
    free(self->poll_map);
    free(self->jobs);
    free(self->buckets);
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
        if (!s_alive(&self->children[i]) && s_spawn(self, i, false) != 0)
            failed++;
    return failed;
}

void
worker_pool_set_time(worker_pool_t *self, int64_t mono_ms, int64_t wall_ms)
{
    self->mono = mono_ms;
    self->wall = wall_ms;
}

int
worker_pool_poll_items(worker_pool_t *self, zmq_pollitem_t *items, int max)
{
    int n = 0;
    for (int i = 0; i < self->nchildren && n < max; i++) {
        s_child_t *c = &self->children[i];
        if (c->fd < 0 || c->eof)
            continue;
        items[n].socket = NULL;
        items[n].fd = c->fd;
        items[n].events = ZMQ_POLLIN;
        if (c->out.off < c->out.len)
            items[n].events |= ZMQ_POLLOUT;
        items[n].revents = 0;
        self->poll_map[n] = i;
        n++;
    }
    return n;
}

void
worker_pool_io(worker_pool_t *self, const zmq_pollitem_t *items, int n)
{
    for (int k = 0; k < n; k++) {
        int ci = self->poll_map[k];
        if (items[k].revents & (ZMQ_POLLIN | ZMQ_POLLERR))
            s_child_read(self, ci, S_READS_PER_PASS);
        if (items[k].revents & ZMQ_POLLOUT)
            s_child_write(self, ci);
    }
}

void
worker_pool_reap(worker_pool_t *self)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        for (int i = 0; i < self->nchildren; i++)
            if (self->children[i].pid == pid) {
                s_child_dead(self, i, status);
                break;
            }
    }
}

int
worker_pool_add(worker_pool_t *self, const dv_job_t *job)
{
    if (!job->id.ptr || job->id.len == 0 || job->id.len > WORKER_ID_MAX) {
        dv_log(DV_WARN, "worker.bad_job", DV_STR("reason", "id length"),
               DV_INT("bytes", job->id.len));
        return -1;
    }
    int dup = s_find(self, job->id.ptr, job->id.len);
    if (dup >= 0) {
        /* Delivered again while we hold it (a lease the broker renewed
         * after a reconnect): report under the attempt number the broker
         * now expects, or it would ignore our failure report. */
        s_job_t *j = &self->jobs[dup];
        if (job->attempt > j->attempt)
            j->attempt = job->attempt;
        return 1;
    }
    if (self->draining) {
        worker_outbox_returned(self->outbox, job->id, job->attempt);
        return 0;
    }
    int idx = s_job_alloc(self, job->id);
    s_job_t *j = &self->jobs[idx];
    j->attempt = job->attempt;
    dv_str_copy(job->trace, j->trace, sizeof j->trace);
    j->timeout_ms =
        job->timeout_ms > 0 ? job->timeout_ms : self->cfg->timeout_ms;
    if (worker_ipc_put_run(&j->frame, (uint32_t)idx, job->id, job->type,
                           job->queue, job->attempt, job->payload,
                           job->trace) != 0) {
        s_report_failed(self, idx, DV_CAT_INVALID_INPUT, false, -1, 0,
                        "job too large for this worker");
        s_job_free(self, idx);
        return 0;
    }
    s_pend_push(self, idx, false);
    return 0;
}

void
worker_pool_cancel(worker_pool_t *self, dv_str_t id, dv_str_t reason)
{
    char idz[WORKER_ID_MAX + 1], why[128];
    dv_str_copy(reason, why, sizeof why);
    int idx = id.ptr ? s_find(self, id.ptr, id.len) : -1;
    if (idx < 0) {
        dv_log(DV_DEBUG, "worker.cancel_unknown",
               DV_STR("job", dv_str_copy(id, idz, sizeof idz)));
        return;
    }
    s_job_t *j = &self->jobs[idx];
    dv_log(DV_INFO, "worker.job_cancelled", DV_STR("job", s_idz(j, idz)),
           DV_STR("trace", j->trace[0] ? j->trace : NULL),
           DV_STR("reason", why),
           DV_STR("state", j->state == J_RUNNING ? "running" : "queued"));
    j->cancel = true;
    switch (j->state) {
    case J_PENDING:
        s_pend_remove(self, idx);
        s_report_failed(self, idx, DV_CAT_CANCELLED, false, -1, 0,
                        "cancelled before it started");
        s_job_free(self, idx);
        break;
    case J_ASSIGNED:
        s_send_skip(self, &self->children[j->child], idx);
        break;
    case J_RUNNING:
        s_kill(self, j->child, K_CANCEL, idx);
        break;
    default:
        break;
    }
}

static void
s_assign(worker_pool_t *self, int ci)
{
    s_child_t *c = &self->children[ci];
    int idx = s_pend_pop(self);
    s_job_t *j = &self->jobs[idx];
    j->state = J_ASSIGNED;
    j->child = ci;
    c->q[c->nq++] = idx;
    c->assigned++;
    if (worker_buf_append(&c->out, j->frame.data, j->frame.len) != 0)
        s_oom();
}

void
worker_pool_dispatch(worker_pool_t *self)
{
    if (self->draining)
        return;
    /* Idle children first, then a second job each, so work spreads out
     * before it queues up. */
    for (int depth = 0; depth < S_DEPTH; depth++)
        for (int i = 0; i < self->nchildren && self->npending > 0; i++) {
            s_child_t *c = &self->children[i];
            if (c->nq == depth && s_can_take(self, c))
                s_assign(self, i);
        }
}

void
worker_pool_flush(worker_pool_t *self)
{
    for (int i = 0; i < self->nchildren; i++) {
        s_child_t *c = &self->children[i];
        if (c->out.off < c->out.len)
            s_child_write(self, i);
        /* Draining, or recycling this child: with nothing left to do it
         * is told to exit by closing our side of its socket (EOF). */
        if ((self->draining || c->recycle) && c->fd >= 0 && !c->wr_shut &&
            c->nq == 0 && c->out.off == c->out.len) {
            shutdown(c->fd, SHUT_WR);
            c->wr_shut = true;
        }
    }
}

void
worker_pool_flush_progress(worker_pool_t *self)
{
    for (int k = 0; k < self->ndirty; k++) {
        s_job_t *j = &self->jobs[self->dirty[k]];
        if (!j->progress_dirty)
            continue;
        j->progress_dirty = false;
        if (j->state != J_RUNNING)
            continue;
        worker_outbox_progress(self->outbox, s_id(j), j->attempt, j->cur,
                               j->tot, dv_strn(j->pmsg.data, j->pmsg.len));
    }
    self->ndirty = 0;
}

void
worker_pool_tick(worker_pool_t *self)
{
    char idz[WORKER_ID_MAX + 1];
    for (int i = 0; i < self->nchildren; i++) {
        s_child_t *c = &self->children[i];
        if (s_alive(c) && c->kill == K_NONE && c->deadline &&
            self->mono >= c->deadline && c->nq > 0) {
            s_job_t *j = &self->jobs[c->q[0]];
            dv_log(DV_WARN, "worker.job_timeout", DV_STR("job", s_idz(j, idz)),
                   DV_STR("trace", j->trace[0] ? j->trace : NULL),
                   DV_INT("attempt", j->attempt), DV_INT("child", c->pid),
                   DV_INT("timeout_ms", j->timeout_ms));
            s_kill(self, i, K_TIMEOUT, c->q[0]);
        }
        if (s_alive(c) && c->kill == K_NONE && c->soft_at &&
            self->mono >= c->soft_at && c->nq > 0 &&
            self->jobs[c->q[0]].state == J_RUNNING) {
            /* The tag rides along, so the child can tell this signal from
             * one for a job that has ended meanwhile. */
            s_job_t *j = &self->jobs[c->q[0]];
            dv_log(DV_INFO, "worker.job_soft_timeout",
                   DV_STR("job", s_idz(j, idz)), DV_INT("attempt", j->attempt),
                   DV_STR("trace", j->trace[0] ? j->trace : NULL),
                   DV_INT("child", c->pid),
                   DV_INT("after_ms", self->mono - j->started_mono),
                   DV_INT("timeout_ms", j->timeout_ms));
            sigqueue(c->pid, SIGUSR1, (union sigval){ .sival_int = c->q[0] });
            c->soft_at = 0;
        }
        if (s_alive(c) && c->kill_at && self->mono >= c->kill_at) {
            dv_log(DV_WARN, "worker.child_sigkill", DV_INT("child", c->pid),
                   DV_STR("stopped_for", s_kill_names[c->kill]));
            kill(-c->pid, SIGKILL);
            c->kill_at = 0;
        }
        if (!s_alive(c) && c->respawn_at && self->mono >= c->respawn_at &&
            !self->draining)
            s_spawn(self, i, false);
    }
}

int64_t
worker_pool_next_deadline(const worker_pool_t *self)
{
    int64_t t = INT64_MAX;
    for (int i = 0; i < self->nchildren; i++) {
        const s_child_t *c = &self->children[i];
        if (c->deadline && c->kill == K_NONE && c->deadline < t)
            t = c->deadline;
        if (c->soft_at && c->kill == K_NONE && c->soft_at < t)
            t = c->soft_at;
        if (c->kill_at && c->kill_at < t)
            t = c->kill_at;
        if (!s_alive(c) && c->respawn_at && !self->draining &&
            c->respawn_at < t)
            t = c->respawn_at;
    }
    return t;
}

void
worker_pool_drain(worker_pool_t *self)
{
    if (self->draining)
        return;
    self->draining = true;
    int idx;
    while ((idx = s_pend_pop(self)) >= 0) {
        s_job_t *j = &self->jobs[idx];
        if (j->cancel)
            s_report_failed(self, idx, DV_CAT_CANCELLED, false, -1, 0,
                            "cancelled before it started");
        else
            worker_outbox_returned(self->outbox, s_id(j), j->attempt);
        s_job_free(self, idx);
    }
    for (int i = 0; i < self->nchildren; i++) {
        s_child_t *c = &self->children[i];
        for (int k = 0; k < c->nq; k++)
            s_send_skip(self, c, c->q[k]);
    }
}

void
worker_pool_stop_running(worker_pool_t *self)
{
    for (int i = 0; i < self->nchildren; i++) {
        s_child_t *c = &self->children[i];
        if (s_alive(c) && c->nq > 0 &&
            self->jobs[c->q[0]].state == J_RUNNING)
            s_kill(self, i, K_SHUTDOWN, c->q[0]);
    }
}

void
worker_pool_kill_all(worker_pool_t *self, int64_t wait_ms)
{
    int left = 0;
    for (int i = 0; i < self->nchildren; i++) {
        s_child_t *c = &self->children[i];
        if (s_alive(c)) {
            kill(-c->pid, SIGKILL);
            left++;
        }
        if (c->fd >= 0)
            close(c->fd);
        c->fd = -1;
    }
    int64_t waited = 0;
    while (left > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            for (int i = 0; i < self->nchildren; i++)
                if (self->children[i].pid == pid) {
                    self->children[i].pid = 0;
                    left--;
                }
            continue;
        }
        if (pid < 0 || waited >= wait_ms)
            break;
        struct timespec ts = { 0, 10 * 1000000 };
        nanosleep(&ts, NULL);
        waited += 10;
    }
    for (int i = 0; i < self->nchildren; i++) {
        self->children[i].nq = 0;
        self->children[i].pid = 0;
    }
    self->draining = true; /* no respawns from here on */
}

size_t
worker_pool_held_count(const worker_pool_t *self)
{
    return self->held;
}

size_t
worker_pool_held(const worker_pool_t *self, dv_held_t *held, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < self->njobs && n < max; i++) {
        const s_job_t *j = &self->jobs[i];
        if (j->state == J_FREE)
            continue;
        held[n].id = s_id(j);
        held[n].attempt = j->attempt;
        n++;
    }
    return n;
}

int
worker_pool_busy(const worker_pool_t *self)
{
    int n = 0;
    for (int i = 0; i < self->nchildren; i++) {
        const s_child_t *c = &self->children[i];
        if (s_alive(c) && c->nq > 0 &&
            self->jobs[c->q[0]].state == J_RUNNING)
            n++;
    }
    return n;
}

int
worker_pool_alive(const worker_pool_t *self)
{
    int n = 0;
    for (int i = 0; i < self->nchildren; i++)
        if (s_alive(&self->children[i]))
            n++;
    return n;
}

int
worker_pool_idle(const worker_pool_t *self)
{
    return worker_pool_alive(self) - worker_pool_busy(self);
}

void
worker_pool_dump(const worker_pool_t *self)
{
    char idz[WORKER_ID_MAX + 1];
    dv_log(DV_INFO, "worker.state_pool", DV_INT("children", self->nchildren),
           DV_INT("alive", worker_pool_alive(self)),
           DV_INT("busy", worker_pool_busy(self)),
           DV_INT("held", self->held), DV_INT("waiting", self->npending),
           DV_BOOL("draining", self->draining));
    for (int i = 0; i < self->nchildren; i++) {
        const s_child_t *c = &self->children[i];
        const char *state = "idle";
        const char *job = NULL;
        int64_t running_ms = 0;
        if (!s_alive(c)) {
            state = "dead";
        } else if (c->kill != K_NONE) {
            state = "stopping";
        } else if (c->nq > 0 && self->jobs[c->q[0]].state == J_RUNNING) {
            state = "running";
        } else if (c->nq > 0) {
            state = "starting";
        }
        if (c->nq > 0) {
            const s_job_t *j = &self->jobs[c->q[0]];
            job = s_idz(j, idz);
            if (j->state == J_RUNNING)
                running_ms = self->mono - j->started_mono;
        }
        dv_log(DV_INFO, "worker.state_child", DV_INT("slot", i),
               DV_INT("child", c->pid), DV_STR("state", state),
               DV_STR("job", job), DV_INT("running_ms", running_ms),
               DV_INT("queued", c->nq), DV_INT("jobs", c->assigned),
               DV_STR("stopping_for", s_kill_names[c->kill]),
               DV_INT("rss_kb", s_alive(c) ? worker_limits_rss(c->pid) / 1024
                                           : 0),
               DV_BOOL("recycling", c->recycle));
    }
}

size_t
worker_pool_child_stats(const worker_pool_t *self,
                        worker_pool_child_stat_t *stats, size_t max)
{
    size_t n = 0;
    for (int i = 0; i < self->nchildren && n < max; i++) {
        const s_child_t *c = &self->children[i];
        if (!s_alive(c))
            continue;
        stats[n].pid = c->pid;
        stats[n].rss = worker_limits_rss(c->pid);
        stats[n].jobs = c->assigned;
        n++;
    }
    return n;
}
