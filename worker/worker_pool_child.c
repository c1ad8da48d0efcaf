/* worker_pool_child - the pool's children as processes: fork, stop
 * (SIGTERM to the process group, SIGKILL after kill_grace), reap and
 * respawn, and the per-child timers (hard and soft timeouts, SIGKILL
 * escalation, fork retries). Called from the pool's lane operations and
 * the supervisor's SIGCHLD handling; never waits on a child except in
 * pool_kill_all, which is bounded.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dv_log.h"
#include "worker_child.h"
#include "worker_limits.h"
#include "worker_pool_internal.h"

/* Times a job may come back unstarted from a dying child before we blame
 * it for the deaths. */
#define S_MAX_BOUNCES 2

const char *const pool_kill_names[] = { "none", "timeout", "cancel", "shutdown",
                                        "protocol" };

static void
s_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

void
pool_child_reset(pool_child_t *c)
{
    c->pid = 0;
    c->fd = -1;
    c->eof = c->wr_shut = false;
    c->reaped = false;
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
s_spawn_failed(worker_pool_t *self, pool_child_t *c, const char *op)
{
    dv_log(DV_ERROR, "worker.spawn_failed", DV_STR("op", op),
           DV_STR("error", strerror(errno)));
    c->respawn_at = self->mono + POOL_RESPAWN_RETRY_MS;
    return -1;
}

int
pool_spawn(worker_pool_t *self, int ci, bool quiet)
{
    pool_child_t *c = &self->children[ci];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return s_spawn_failed(self, c, "socketpair");
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(sv[0]);
        close(sv[1]);
        errno = saved;
        return s_spawn_failed(self, c, "fork");
    }
    if (pid == 0) {
        close(sv[0]);
        worker_child_main(sv[1], self->cfg, self->name, self->self_pid);
    }
    /* Also set here: we may signal the group before the child runs. */
    setpgid(pid, pid);
    close(sv[1]);
    s_nonblock(sv[0]);
    pool_child_reset(c);
    c->pid = pid;
    c->fd = sv[0];
    c->spawned = self->mono;
    dv_log(quiet ? DV_DEBUG : DV_INFO, "worker.child_spawned",
           DV_INT("child", pid), DV_INT("slot", ci));
    return 0;
}

/* Starts stopping a child: SIGTERM to its group (SIGKILL for a corrupt
 * one), SIGKILL after kill_grace. The job queued behind is asked to be
 * skipped, so it is not started in between and killed with the child. */
void
pool_kill(worker_pool_t *self, int ci, pool_kill_t why, int job)
{
    pool_child_t *c = &self->children[ci];
    if (!pool_alive(c) || c->reaped || c->kill != K_NONE)
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
        pool_send_skip(self, c, c->q[k]);
}

/* Builds the failure for a job that was running in a child that died. */
static void
s_settle_running(worker_pool_t *self, int ci, int idx, int status)
{
    pool_child_t *c = &self->children[ci];
    pool_job_t *j = pool_job(self, idx);
    char text[256];
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (pool_report_stopped(self, ci, idx, sig))
        return; /* reported as what we stopped it for */
    if (sig)
        snprintf(text, sizeof text, "worker child killed by signal %d (%s)",
                 sig, strsignal(sig));
    else
        snprintf(text, sizeof text,
                 "worker child exited with status %d while running the job",
                 code);
    dv_log(DV_WARN, "worker.job_crashed", DV_STR("job", pool_idz(j)),
           DV_STR("trace", pool_trace(j)), DV_INT("attempt", j->base.attempt),
           DV_INT("child", c->pid), DV_INT("signal", sig),
           DV_INT("exit_code", code));
    pool_fail(self, idx, DV_CAT_CRASHED, true, sig ? -1 : code, sig, text);
}

/* The rest of a child's death, once its last reports are handled (not
 * before: they may be its running job's outcome). */
static void
s_child_finish(worker_pool_t *self, int ci)
{
    pool_child_t *c = &self->children[ci];
    if (!c->stalled)
        pool_child_read(self, ci, 1 << 20); /* until EOF: it writes no more */
    if (c->stalled)
        return; /* a report waits for memory; the tick comes back */
    int status = c->reap_status;
    pid_t pid = c->pid;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    /* Take down anything it started that is still in its group. */
    kill(-pid, SIGKILL);

    bool ours = c->kill != K_NONE;
    bool had_running = false;
    for (int k = 0; k < c->nq; k++) {
        int idx = c->q[k];
        pool_job_t *j = pool_job(self, idx);
        if (j->base.state == J_RUNNING) {
            had_running = true;
            s_settle_running(self, ci, idx, status);
            continue;
        }
        if (k == 0 && !ours && !j->cancel && ++j->bounces > S_MAX_BOUNCES) {
            pool_fail(self, idx, DV_CAT_CRASHED, true, -1, 0,
                      "worker children died repeatedly before starting "
                      "the job");
            continue;
        }
        pool_unstarted(self, idx);
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
           DV_STR("stopped_for", pool_kill_names[c->kill]),
           DV_INT("jobs", c->assigned));
    pool_child_reset(c);
    if (!self->draining)
        pool_spawn(self, ci, clean);
}

void
pool_child_dead(worker_pool_t *self, int ci, int status)
{
    pool_child_t *c = &self->children[ci];
    c->reaped = true;
    c->reap_status = status;
    s_child_finish(self, ci);
}

void
pool_reap(void *pool)
{
    worker_pool_t *self = pool;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break;
        for (int i = 0; i < self->nchildren; i++)
            if (self->children[i].pid == pid && !self->children[i].reaped) {
                pool_child_dead(self, i, status);
                break;
            }
    }
}

/* Timers of one live child. */
static void
s_tick_child(worker_pool_t *self, int i)
{
    pool_child_t *c = &self->children[i];
    if (c->kill == K_NONE && c->deadline && self->mono >= c->deadline &&
        c->nq > 0) {
        pool_job_t *j = pool_job(self, c->q[0]);
        dv_log(DV_WARN, "worker.job_timeout", DV_STR("job", pool_idz(j)),
               DV_STR("trace", pool_trace(j)),
               DV_INT("attempt", j->base.attempt), DV_INT("child", c->pid),
               DV_INT("timeout_ms", j->timeout_ms));
        pool_kill(self, i, K_TIMEOUT, c->q[0]);
    }
    if (c->kill == K_NONE && c->soft_at && self->mono >= c->soft_at &&
        c->nq > 0 && pool_job(self, c->q[0])->base.state == J_RUNNING) {
        /* The tag rides along, so the child can tell this signal from one
         * for a job that has ended meanwhile. */
        pool_job_t *j = pool_job(self, c->q[0]);
        dv_log(DV_INFO, "worker.job_soft_timeout", DV_STR("job", pool_idz(j)),
               DV_INT("attempt", j->base.attempt),
               DV_STR("trace", pool_trace(j)), DV_INT("child", c->pid),
               DV_INT("after_ms", self->mono - j->started_mono),
               DV_INT("timeout_ms", j->timeout_ms));
        sigqueue(c->pid, SIGUSR1, (union sigval){ .sival_int = c->q[0] });
        c->soft_at = 0;
    }
    if (c->kill_at && self->mono >= c->kill_at) {
        dv_log(DV_WARN, "worker.child_sigkill", DV_INT("child", c->pid),
               DV_STR("stopped_for", pool_kill_names[c->kill]));
        kill(-c->pid, SIGKILL);
        c->kill_at = 0;
    }
}

void
pool_tick(void *pool)
{
    worker_pool_t *self = pool;
    for (int i = 0; i < self->nchildren; i++) {
        pool_child_t *c = &self->children[i];
        if (c->stalled) {
            pool_child_resume(self, i);
            if (!c->stalled && c->reaped)
                s_child_finish(self, i);
        }
        if (pool_alive(c) && !c->reaped)
            s_tick_child(self, i);
        else if (!pool_alive(c) && c->respawn_at &&
                 self->mono >= c->respawn_at && !self->draining)
            pool_spawn(self, i, false);
    }
}

int64_t
pool_next_deadline(const void *pool)
{
    const worker_pool_t *self = pool;
    int64_t t = INT64_MAX;
    if (self->nstalled > 0 || worker_jobs_unreported(self->jobs) > 0)
        t = self->mono + POOL_RETRY_MS;
    for (int i = 0; i < self->nchildren; i++) {
        const pool_child_t *c = &self->children[i];
        if (c->deadline && c->kill == K_NONE && c->deadline < t)
            t = c->deadline;
        if (c->soft_at && c->kill == K_NONE && c->soft_at < t)
            t = c->soft_at;
        if (c->kill_at && c->kill_at < t)
            t = c->kill_at;
        if (!pool_alive(c) && c->respawn_at && !self->draining &&
            c->respawn_at < t)
            t = c->respawn_at;
    }
    return t;
}

void
pool_kill_all(void *pool, int64_t wait_ms)
{
    worker_pool_t *self = pool;
    int left = 0;
    for (int i = 0; i < self->nchildren; i++) {
        pool_child_t *c = &self->children[i];
        if (pool_alive(c) && !c->reaped) {
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

void
pool_dump(const void *pool)
{
    const worker_pool_t *self = pool;
    worker_lane_stats_t st;
    pool_stats(self, &st);
    dv_log(DV_INFO, "worker.state_pool", DV_INT("children", self->nchildren),
           DV_INT("alive", st.alive), DV_INT("busy", st.busy),
           DV_INT("held", worker_jobs_held_count(self->jobs)),
           DV_INT("waiting", worker_jobs_queued(self->jobs)),
           DV_BOOL("draining", self->draining));
    for (int i = 0; i < self->nchildren; i++) {
        const pool_child_t *c = &self->children[i];
        const char *state = "idle";
        const char *job = NULL;
        int64_t running_ms = 0;
        const pool_job_t *j = c->nq > 0 ? pool_job(self, c->q[0]) : NULL;
        if (!pool_alive(c))
            state = "dead";
        else if (c->kill != K_NONE)
            state = "stopping";
        else if (j && j->base.state == J_RUNNING)
            state = "running";
        else if (j)
            state = "starting";
        if (j) {
            job = pool_idz(j);
            if (j->base.state == J_RUNNING)
                running_ms = self->mono - j->started_mono;
        }
        dv_log(DV_INFO, "worker.state_child", DV_INT("slot", i),
               DV_INT("child", c->pid), DV_STR("state", state),
               DV_STR("job", job), DV_INT("running_ms", running_ms),
               DV_INT("queued", c->nq), DV_INT("jobs", c->assigned),
               DV_STR("stopping_for", pool_kill_names[c->kill]),
               DV_INT("rss_kb",
                      pool_alive(c) ? worker_limits_rss(c->pid) / 1024 : 0),
               DV_BOOL("recycling", c->recycle));
    }
}
