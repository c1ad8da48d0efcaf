/* worker_child - see worker_child.h: the child's side of its socket (jobs
 * read and skipped, reports written, blocking) and the job loop; the
 * handlers themselves are behind worker_handler.h. Runs only in a forked
 * child. */
#include "worker_child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dv_clock.h"
#include "dv_log.h"
#include "handler_exec.h"
#include "handler_plugin.h"
#include "worker_handler.h"
#include "worker_ipc.h"
#include "worker_limits.h"

/* The child's socket always ends up on this descriptor. */
#define S_FD 3
/* A child holding several fast jobs sends their reports together, but no
 * later than this after the first (microseconds). */
#define S_FLUSH_US 1000

/* A job read from the socket and not yet run: its own copy of the frame,
 * so the read buffer can move while the job waits. */
typedef struct {
    worker_buf_t frame;
    worker_ipc_msg_t msg; /* views into frame */
} s_slot_t;

typedef struct {
    worker_buf_t in, out;
    s_slot_t *slots; /* FIFO of jobs read, slots[0] next */
    int nslots, cap;
    bool fresh;        /* slots[0] was read after the last job ran */
    int64_t out_since; /* monotonic us: when out last went non-empty */
    int64_t done;      /* jobs run */
    const worker_config_t *cfg;
    const char *name;
    handler_plugin_t **plugins; /* one per cfg->plugins entry, same order */
    int nplugins;
    bool recycling;           /* over max_rss_per_child: starts no more jobs */
    worker_outcome_t outcome; /* of the job running (large: not on the
                                 stack of a handler's deep calls) */
} s_child_t;

static s_child_t s_c;

/* Set by SIGTERM while an exec command runs: the command gets the signal
 * too (same process group) and its chance to clean up; we report how it
 * ended and then leave, as asked. */
static volatile sig_atomic_t s_term;

static void
s_on_term(int sig)
{
    (void)sig;
    s_term = 1;
}

/* The soft timeout. The supervisor sends SIGUSR1 with sigqueue() and the
 * job's tag as the value; the tag check keeps a signal that was meant for
 * a job that just ended from stopping the next one. s_tag is the tag of
 * the job running, -1 between jobs; s_soft is raised for it once. */
static volatile sig_atomic_t s_soft;
static volatile sig_atomic_t s_tag = -1;
static pid_t s_supervisor;

static void
s_on_usr1(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    if (si->si_code != SI_QUEUE || si->si_pid != s_supervisor || s_tag < 0 ||
        si->si_value.sival_int != s_tag || s_soft)
        return;
    int saved = errno;
    s_soft = 1;
    /* An exec command hears of it if it asked to (trap USR1); a plugin
     * through should_stop() and its on_stop() callback. */
    worker_limits_tell_catchers(SIGUSR1);
    handler_plugin_soft_stop();
    errno = saved;
}

_Noreturn static void
s_die(int code)
{
    _exit(code);
}

/* A clean exit (the supervisor closed our socket, or we are recycled):
 * plugins get their cleanup() first. */
_Noreturn static void s_leave(void);

/* Writes everything buffered. Blocking: the supervisor always reads. */
static void
s_flush(void)
{
    worker_buf_t *o = &s_c.out;
    while (o->off < o->len) {
        ssize_t n = send(S_FD, o->data + o->off, o->len - o->off, MSG_NOSIGNAL);
        if (n > 0) {
            o->off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            s_die(0); /* the supervisor is gone */
        }
    }
    worker_buf_reset(o);
}

_Noreturn static void
s_leave(void)
{
    s_flush();
    for (int i = 0; i < s_c.nplugins; i++)
        handler_plugin_destroy(&s_c.plugins[i]);
    _exit(0);
}

/* STARTED went out for the job running (s_tag): its outcome may follow. */
static bool s_started;

/* Out of memory in a child: it is disposable, so it leaves. If a job is
 * running, its failure (resource_exhausted) goes first when the frame
 * still fits in the buffer; else the supervisor sees the exit and fails
 * the job "crashed". */
_Noreturn static void
s_oom(void)
{
    dv_log(DV_ERROR, "worker.child_out_of_memory", DV_INT("tag", s_tag));
    if (s_tag >= 0 && s_started) {
        dv_failure_t f;
        dv_failure_init(&f);
        f.category = DV_CAT_RESOURCE_EXHAUSTED;
        f.retryable = true;
        f.message = dv_str("the worker child ran out of memory");
        if (worker_ipc_put_failed(&s_c.out, (uint32_t)s_tag, &f) == 0)
            s_flush();
    }
    s_die(70);
}

static void
s_put_tag(worker_ipc_kind_t kind, uint32_t tag)
{
    if (worker_ipc_put_tag(&s_c.out, kind, tag) != 0)
        s_oom();
}

static void
s_put_failed(uint32_t tag, dv_category_t cat, bool retryable, const char *msg)
{
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = cat;
    f.retryable = retryable;
    f.message = dv_str(msg);
    if (worker_ipc_put_failed(&s_c.out, tag, &f) != 0)
        s_oom();
}

static void
s_put_succeeded(uint32_t tag, const char *mp, size_t len)
{
    if (len > DV_PAYLOAD_MAX) {
        s_put_failed(tag, DV_CAT_HANDLER, false, "result larger than 1 MiB");
        return;
    }
    /* What the supervisor would refuse (and kill us for): said here as
     * the handler's failure instead. */
    if (len > 0 && dv_mp_validate(mp, len, DV_VALUE_DEPTH_MAX) != DV_OK) {
        s_put_failed(tag, DV_CAT_HANDLER, false,
                     "the result is not one msgpack value nested at most "
                     "64 deep");
        return;
    }
    if (worker_ipc_put_succeeded(&s_c.out, tag, dv_strn(mp, len)) != 0)
        s_oom();
}

/* Handles one frame from the supervisor. */
static void
s_frame(const char *body, uint32_t len)
{
    worker_ipc_msg_t m;
    if (worker_ipc_decode(body, len, &m) != 0 ||
        (m.kind != WORKER_IPC_RUN && m.kind != WORKER_IPC_SKIP)) {
        dv_log(DV_ERROR, "worker.child_bad_frame", DV_INT("bytes", len));
        s_die(2);
    }
    if (m.kind == WORKER_IPC_SKIP) {
        for (int i = 0; i < s_c.nslots; i++)
            if (s_c.slots[i].msg.tag == m.tag) {
                s_slot_t keep = s_c.slots[i];
                memmove(&s_c.slots[i], &s_c.slots[i + 1],
                        (size_t)(s_c.nslots - i - 1) * sizeof keep);
                s_c.slots[--s_c.nslots] = keep; /* reuse its buffer later */
                s_put_tag(WORKER_IPC_SKIPPED, m.tag);
                break;
            }
        /* Not found: it already started; its outcome will follow. */
        return;
    }
    if (s_c.nslots == s_c.cap) {
        int cap = s_c.cap ? s_c.cap * 2 : 4;
        s_slot_t *s = realloc(s_c.slots, (size_t)cap * sizeof *s);
        if (!s)
            s_oom();
        memset(s + s_c.cap, 0, (size_t)(cap - s_c.cap) * sizeof *s);
        s_c.slots = s;
        s_c.cap = cap;
    }
    s_slot_t *slot = &s_c.slots[s_c.nslots];
    worker_buf_reset(&slot->frame);
    if (worker_buf_append(&slot->frame, body, len) != 0)
        s_oom();
    if (worker_ipc_decode(slot->frame.data, len, &slot->msg) != 0)
        s_die(2);
    s_c.nslots++;
}

/* Reads what the socket has (blocking until something comes if block)
 * and handles every complete frame. EOF means the supervisor wants us
 * gone (or is gone). */
static void
s_read(bool block)
{
    worker_buf_t *in = &s_c.in;
    for (;;) {
        worker_buf_compact(in);
        if (worker_buf_reserve(in, 65536) != 0)
            s_oom();
        ssize_t n = recv(S_FD, in->data + in->len, in->cap - in->len,
                         block ? 0 : MSG_DONTWAIT);
        if (n == 0)
            s_leave();
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            s_die(1);
        }
        in->len += (size_t)n;
        const char *body;
        uint32_t len;
        int rc;
        while ((rc = worker_ipc_next(in, &body, &len)) == 1)
            s_frame(body, len);
        if (rc < 0) {
            dv_log(DV_ERROR, "worker.child_bad_frame", DV_INT("bytes", 0));
            s_die(2);
        }
        /* A partial frame: keep reading until it is whole. */
        if (worker_buf_pending(in) == 0 || !block || s_c.nslots > 0)
            return;
    }
}

/* ---- running a job --------------------------------------------------- */

static void
s_progress(void *arg, int64_t cur, int64_t tot, const char *msg, size_t len)
{
    if (worker_ipc_put_progress(&s_c.out, *(uint32_t *)arg, cur, tot,
                                dv_strn(msg, len)) != 0)
        s_oom();
    s_flush();
}

/* The plugin for a job type, or NULL. */
static handler_plugin_t *
s_find_plugin(dv_str_t type)
{
    const worker_plugin_t *p =
        worker_config_plugin(s_c.cfg, type.ptr, type.len);
    if (!p || !s_c.plugins)
        return NULL;
    return s_c.plugins[p - s_c.cfg->plugins];
}

/* Loads every configured plugin and calls its init(), once per child. A
 * plugin that cannot be used is logged here, when the child starts, and
 * its jobs fail with the same reason. */
static void
s_load_plugins(void)
{
    const worker_config_t *cfg = s_c.cfg;
    if (cfg->nplugins == 0)
        return;
    s_c.plugins = calloc((size_t)cfg->nplugins, sizeof *s_c.plugins);
    if (!s_c.plugins)
        s_oom();
    for (int i = 0; i < cfg->nplugins; i++) {
        const worker_plugin_t *wp = &cfg->plugins[i];
        s_c.plugins[i] = handler_plugin_new(wp->type, wp->path, wp->config);
        if (!s_c.plugins[i])
            s_oom();
        s_c.nplugins = i + 1;
        const char *e = handler_plugin_error(s_c.plugins[i]);
        if (e)
            dv_log(DV_ERROR, "worker.plugin_error", DV_STR("type", wp->type),
                   DV_STR("path", wp->path), DV_STR("error", e));
        else
            dv_log(DV_DEBUG, "worker.plugin_loaded", DV_STR("type", wp->type),
                   DV_STR("path", wp->path));
    }
}

/* The handler for a job type: an exec handler, else a plugin, else a
 * builtin. */
static worker_handler_t
s_handler_for(dv_str_t type)
{
    const char *cmd = worker_config_handler(s_c.cfg, type.ptr, type.len);
    if (cmd)
        return handler_exec_handler(cmd);
    handler_plugin_t *plugin = s_find_plugin(type);
    if (plugin)
        return handler_plugin_handler(plugin);
    return handler_builtin_for(type);
}

/* Runs one job. Fast handlers write STARTED and the outcome together;
 * slow ones get STARTED flushed first, so the supervisor knows the
 * attempt began (its timeout starts then). */
static void
s_run(const worker_ipc_msg_t *m)
{
    worker_handler_t h = s_handler_for(m->type);
    uint32_t tag = m->tag;
    s_put_tag(WORKER_IPC_STARTED, tag);
    s_started = true;
    if (h.ops->slow)
        s_flush();
    worker_handler_job_t job = {
        .worker = s_c.name,
        .id = m->id,
        .type = m->type,
        .queue = m->queue,
        .trace = m->trace,
        .payload = m->payload,
        .attempt = m->attempt,
        .stop = &s_soft,
    };
    worker_outcome_init(&s_c.outcome);
    if (h.ops->waits_on_term) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = s_on_term; /* no SA_RESTART: waits see EINTR */
        sigaction(SIGTERM, &sa, NULL);
    }
    h.ops->run(h.impl, &job, s_progress, &tag, &s_c.outcome);
    if (h.ops->waits_on_term)
        signal(SIGTERM, SIG_DFL);
    if (s_c.outcome.ok)
        s_put_succeeded(tag, s_c.outcome.result.ptr, s_c.outcome.result.len);
    else if (worker_ipc_put_failed(&s_c.out, tag, &s_c.outcome.failure) != 0)
        s_oom();
    s_started = false;
    worker_outcome_clear(&s_c.outcome);
    if (s_term)
        s_leave();
}

/* ---- setup and loop ------------------------------------------------ */

/* After a job: above max_rss_per_child, the child tells the supervisor
 * and starts no more jobs. Those it holds are skipped (SKIP, SKIPPED) and
 * run elsewhere, and it leaves when the supervisor closes the socket. The
 * check is here, between jobs, because only here is it sure that the
 * next job has not started yet. */
static void
s_check_rss(void)
{
    int64_t rss = worker_limits_rss(getpid());
    if (rss <= s_c.cfg->max_rss_per_child)
        return;
    if (worker_ipc_put_recycle(&s_c.out, rss) != 0)
        s_oom();
    s_flush();
    s_c.recycling = true;
}

static void
s_setup(int fd, pid_t supervisor)
{
    setpgid(0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL); /* fails harmlessly for KILL/STOP */
    /* Writes to a gone supervisor or a command's closed stdin must come
     * back as EPIPE, not kill us; exec'd commands get SIGPIPE back. */
    signal(SIGPIPE, SIG_IGN);
    /* SA_RESTART: a plugin's reads and writes should not see EINTR
     * because of us. (Waits in poll and sleep still wake up.) */
    s_supervisor = supervisor;
    sa.sa_handler = NULL;
    sa.sa_sigaction = s_on_usr1;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* A child must not outlive a supervisor killed with -9: its job is
     * already given up on and will run elsewhere. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != supervisor)
        _exit(0);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0 && null != STDIN_FILENO) {
        dup2(null, STDIN_FILENO);
        close(null);
    }
    if (fd != S_FD) {
        if (dup2(fd, S_FD) < 0)
            _exit(1);
    }
    /* Drop everything inherited: other children's sockets, the signalfd,
     * the ZeroMQ context's descriptors. */
    if (close_range(S_FD + 1, ~0U, 0) != 0) {
        long max = sysconf(_SC_OPEN_MAX);
        for (long i = S_FD + 1; i < (max > 0 ? max : 65536); i++)
            close((int)i);
    }
    fcntl(S_FD, F_SETFD, FD_CLOEXEC);
    fcntl(S_FD, F_SETFL, fcntl(S_FD, F_GETFL) & ~O_NONBLOCK);
}

_Noreturn void
worker_child_main(int fd, const worker_config_t *cfg, const char *name,
                  pid_t supervisor)
{
    s_setup(fd, supervisor);
    memset(&s_c, 0, sizeof s_c);
    s_c.cfg = cfg;
    s_c.name = name;
    s_load_plugins();
    int64_t max_jobs = cfg->max_jobs_per_child;
    for (;;) {
        if (s_c.recycling) {
            s_flush();
            s_read(true); /* SKIPs until EOF */
            continue;
        }
        if (s_c.nslots == 0) {
            s_flush();
            s_read(true);
            s_c.fresh = true;
            continue;
        }
        if (!s_c.fresh) {
            /* The job ahead may have been skipped meanwhile. */
            s_read(false);
            if (s_c.nslots == 0)
                continue;
        }
        s_c.fresh = false;
        s_slot_t job = s_c.slots[0];
        memmove(&s_c.slots[0], &s_c.slots[1],
                (size_t)(s_c.nslots - 1) * sizeof job);
        s_c.slots[--s_c.nslots] = job; /* keeps its buffer for reuse */
        s_soft = 0;
        s_tag = (sig_atomic_t)job.msg.tag;
        if (worker_buf_pending(&s_c.out) == 0)
            s_c.out_since = dv_mono_us();
        s_run(&s_c.slots[s_c.nslots].msg);
        s_tag = -1;
        /* Reports of fast jobs go out together when the child runs out of
         * jobs; with a deep queue, at the latest a millisecond after the
         * first of them. */
        if (worker_buf_pending(&s_c.out) > 0 &&
            dv_mono_us() - s_c.out_since >= S_FLUSH_US)
            s_flush();
        s_c.done++;
        if (max_jobs > 0 && s_c.done >= max_jobs)
            s_leave();
        if (cfg->max_rss_per_child > 0)
            s_check_rss();
    }
}
