#include "worker_child.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <msgpack.h>
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
#include "worker_ipc.h"
#include "worker_limits.h"

/* The child's socket always ends up on this descriptor. */
#define S_FD 3

/* A job read from the socket and not yet run: its own copy of the frame,
 * so the read buffer can move while the job waits. */
typedef struct {
    worker_buf_t frame;
    worker_ipc_msg_t msg; /* views into frame */
} s_slot_t;

typedef struct {
    worker_buf_t in, out;
    s_slot_t *slots;       /* FIFO of jobs read, slots[0] next */
    int nslots, cap;
    bool fresh;            /* slots[0] was read after the last job ran */
    int64_t done;          /* jobs run */
    const worker_config_t *cfg;
    const char *name;
    handler_plugin_t **plugins; /* one per cfg->plugins entry, same order */
    int nplugins;
    bool recycling;        /* over max_rss_per_child: starts no more jobs */
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
    if (si->si_code != SI_QUEUE || si->si_pid != s_supervisor ||
        s_tag < 0 || si->si_value.sival_int != s_tag || s_soft)
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
_Noreturn static void
s_leave(void);

/* Writes everything buffered. Blocking: the supervisor always reads. */
static void
s_flush(void)
{
    worker_buf_t *o = &s_c.out;
    while (o->off < o->len) {
        ssize_t n = send(S_FD, o->data + o->off, o->len - o->off,
                         MSG_NOSIGNAL);
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

static void
s_oom(void)
{
    dv_log(DV_ERROR, "worker.oom", DV_STR("where", "child"));
    s_die(70);
}

static void
s_put_tag(worker_ipc_kind_t kind, uint32_t tag)
{
    if (worker_ipc_put_tag(&s_c.out, kind, tag) != 0)
        s_oom();
}

static void
s_put_failed(uint32_t tag, dv_category_t cat, bool retryable,
             const char *msg)
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

/* ---- builtin handlers ---------------------------------------------- */

/* Unpacks a payload; returns false if absent. The caller destroys u. */
static bool
s_unpack(const worker_ipc_msg_t *m, msgpack_unpacked *u)
{
    msgpack_unpacked_init(u);
    if (!m->payload.ptr)
        return false;
    size_t off = 0;
    return msgpack_unpack_next(u, m->payload.ptr, m->payload.len, &off) ==
           MSGPACK_UNPACK_SUCCESS;
}

static const msgpack_object *
s_get(const msgpack_object *o, const char *key)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
            memcmp(k->via.str.ptr, key, kl) == 0)
            return &o->via.map.ptr[i].val;
    }
    return NULL;
}

static bool
s_num(const msgpack_object *o, double *v)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *v = (double)o->via.u64; return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *v = (double)o->via.i64; return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: *v = o->via.f64; return !isnan(*v);
    default: return false;
    }
}

static bool
s_int(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        o->via.u64 <= (uint64_t)INT64_MAX)
        *v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = o->via.i64;
    else
        return false;
    return *v >= lo && *v <= hi;
}

static void
s_progress(uint32_t tag, int64_t cur, int64_t tot, const char *msg,
           size_t len)
{
    if (worker_ipc_put_progress(&s_c.out, tag, cur, tot,
                                dv_strn(msg, len)) != 0)
        s_oom();
    s_flush();
}

/* Sleeps until mono_ns, or until the soft timeout passes. */
static void
s_sleep_until(int64_t mono_ns)
{
    struct timespec ts = { (time_t)(mono_ns / 1000000000),
                           (long)(mono_ns % 1000000000) };
    while (!s_soft && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
                                      NULL) == EINTR)
        ;
}

static void
s_builtin_sleep(const worker_ipc_msg_t *m)
{
    static const char usage[] =
        "sleep: payload must be a number of seconds (0..86400) or "
        "{\"seconds\": s, \"steps\": n}";
    msgpack_unpacked u;
    double secs = -1;
    int64_t steps = 10;
    bool whole = false;
    if (s_unpack(m, &u)) {
        const msgpack_object *o = &u.data, *s = o;
        if (o->type == MSGPACK_OBJECT_MAP) {
            s = s_get(o, "seconds");
            const msgpack_object *st = s_get(o, "steps");
            if (st && !s_int(st, 1, 100000, &steps))
                secs = -2;
        }
        if (secs != -2 && s && s_num(s, &secs))
            whole = s->type != MSGPACK_OBJECT_FLOAT32 &&
                    s->type != MSGPACK_OBJECT_FLOAT64;
        else
            secs = -1;
    }
    msgpack_unpacked_destroy(&u);
    if (!(secs >= 0 && secs <= 86400)) {
        s_put_failed(m->tag, DV_CAT_INVALID_INPUT, false, usage);
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t start = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    int64_t total_ns = (int64_t)llround(secs * 1e9);
    char text[96];
    for (int64_t i = 1; i <= steps; i++) {
        s_sleep_until(start + (int64_t)((double)total_ns * (double)i /
                                        (double)steps));
        if (s_soft) {
            /* Told to wrap up: sleep has nothing to save, so it fails in
             * a way that is retried, before the hard timeout kills it. */
            clock_gettime(CLOCK_MONOTONIC, &now);
            snprintf(text, sizeof text,
                     "stopped at the soft timeout after %.3g s of %.3g s",
                     (double)((int64_t)now.tv_sec * 1000000000 +
                              now.tv_nsec - start) / 1e9,
                     secs);
            s_put_failed(m->tag, DV_CAT_TIMEOUT, true, text);
            return;
        }
        int n = snprintf(text, sizeof text, "slept %.3g s of %.3g s",
                         secs * (double)i / (double)steps, secs);
        s_progress(m->tag, i, steps, text, (size_t)n);
    }
    msgpack_packer pk;
    worker_buf_t rb;
    worker_buf_init(&rb);
    msgpack_packer_init(&pk, &rb, worker_buf_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str(&pk, 5);
    msgpack_pack_str_body(&pk, "slept", 5);
    if (whole)
        msgpack_pack_int64(&pk, (int64_t)secs);
    else
        msgpack_pack_double(&pk, secs);
    s_put_succeeded(m->tag, rb.data, rb.len);
    worker_buf_free(&rb);
}

static void
s_builtin_fail(const worker_ipc_msg_t *m)
{
    char msg[DV_TEXT_MAX + 1] = "failed on purpose";
    bool retryable = true;
    int64_t times = -1, sig = 0, code = -1;
    double retry_after = 0;
    dv_category_t cat = DV_CAT_HANDLER;
    const char *bad = NULL;
    msgpack_unpacked u;
    if (s_unpack(m, &u)) {
        const msgpack_object *o = &u.data, *v;
        if (o->type != MSGPACK_OBJECT_MAP && o->type != MSGPACK_OBJECT_NIL)
            bad = "fail: payload must be a map";
        if (!bad && (v = s_get(o, "message"))) {
            if (v->type != MSGPACK_OBJECT_STR)
                bad = "fail: message must be a string";
            else
                snprintf(msg, sizeof msg, "%.*s",
                         (int)worker_utf8_cut(v->via.str.ptr,
                                              v->via.str.size, DV_TEXT_MAX),
                         v->via.str.ptr);
        }
        if (!bad && (v = s_get(o, "retryable"))) {
            if (v->type != MSGPACK_OBJECT_BOOLEAN)
                bad = "fail: retryable must be true or false";
            else
                retryable = v->via.boolean;
        }
        if (!bad && (v = s_get(o, "times")) && !s_int(v, 0, 1000000, &times))
            bad = "fail: times must be a whole number >= 0";
        if (!bad && (v = s_get(o, "signal")) && !s_int(v, 1, 64, &sig))
            bad = "fail: signal must be 1..64";
        if (!bad && (v = s_get(o, "exit")) && !s_int(v, 0, 255, &code))
            bad = "fail: exit must be 0..255";
        if (!bad && (v = s_get(o, "retry_after")) &&
            !(s_num(v, &retry_after) && retry_after >= 0 &&
              retry_after <= 86400 * 365))
            bad = "fail: retry_after must be a number of seconds";
        if (!bad && (v = s_get(o, "category"))) {
            cat = v->type == MSGPACK_OBJECT_STR
                      ? dv_category_parse(v->via.str.ptr, v->via.str.size)
                      : DV_CAT_NONE;
            if (cat == DV_CAT_NONE)
                bad = "fail: category must be a failure category name";
        }
    }
    msgpack_unpacked_destroy(&u);
    if (bad) {
        s_put_failed(m->tag, DV_CAT_INVALID_INPUT, false, bad);
        return;
    }
    if (times >= 0 && m->attempt > times) {
        worker_buf_t rb;
        worker_buf_init(&rb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &rb, worker_buf_write);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str(&pk, 7);
        msgpack_pack_str_body(&pk, "attempt", 7);
        msgpack_pack_int32(&pk, m->attempt);
        s_put_succeeded(m->tag, rb.data, rb.len);
        worker_buf_free(&rb);
        return;
    }
    if (sig > 0) {
        s_flush();
        signal((int)sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, (int)sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise((int)sig);
        /* Still here: the default action of that signal is not fatal. */
        char text[80];
        snprintf(text, sizeof text, "fail: signal %d did not end the process",
                 (int)sig);
        s_put_failed(m->tag, DV_CAT_INVALID_INPUT, false, text);
        return;
    }
    if (code >= 0) {
        s_flush();
        _exit((int)code);
    }
    dv_failure_t f;
    dv_failure_init(&f);
    f.category = cat;
    f.retryable = retryable;
    f.message = dv_str(msg);
    f.retry_after_ms = (int64_t)llround(retry_after * 1000);
    if (worker_ipc_put_failed(&s_c.out, m->tag, &f) != 0)
        s_oom();
}

static void
s_exec_progress(void *arg, int64_t cur, int64_t tot, const char *msg,
                size_t len)
{
    s_progress(*(uint32_t *)arg, cur, tot, msg, len);
}

static void
s_exec(const worker_ipc_msg_t *m, const char *command)
{
    handler_exec_job_t job = {
        .command = command,
        .worker = s_c.name,
        .id = m->id,
        .type = m->type,
        .queue = m->queue,
        .trace = m->trace,
        .payload = m->payload,
        .attempt = m->attempt,
    };
    uint32_t tag = m->tag;
    handler_exec_outcome_t out;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_term; /* no SA_RESTART: waits see EINTR */
    sigaction(SIGTERM, &sa, NULL);
    handler_exec_run(&job, s_exec_progress, &tag, &out);
    signal(SIGTERM, SIG_DFL);
    if (!out.ok && s_soft && out.failure.signal == SIGUSR1) {
        /* It caught SIGUSR1 and then died of it: it was told and gave
         * up, which is a timeout, not a crash. */
        out.failure.category = DV_CAT_TIMEOUT;
        out.failure.message = dv_str("stopped at the soft timeout (the "
                                     "command ended on SIGUSR1)");
    }
    if (out.ok)
        s_put_succeeded(tag, out.result, out.result_len);
    else if (worker_ipc_put_failed(&s_c.out, tag, &out.failure) != 0)
        s_oom();
    handler_exec_outcome_clear(&out);
    if (s_term)
        s_leave();
}

static void
s_plugin_progress(void *arg, int64_t cur, int64_t tot, const char *msg,
                  size_t len)
{
    s_progress(*(uint32_t *)arg, cur, tot, msg, len);
}

static void
s_plugin(const worker_ipc_msg_t *m, handler_plugin_t *plugin)
{
    handler_plugin_job_t job = {
        .worker = s_c.name,
        .id = m->id,
        .type = m->type,
        .queue = m->queue,
        .trace = m->trace,
        .payload = m->payload,
        .attempt = m->attempt,
        .stop = &s_soft,
    };
    uint32_t tag = m->tag;
    handler_plugin_outcome_t out;
    handler_plugin_run(plugin, &job, s_plugin_progress, &tag, &out);
    if (out.ok)
        s_put_succeeded(tag, out.result, out.result_len);
    else if (worker_ipc_put_failed(&s_c.out, tag, &out.failure) != 0)
        s_oom();
    handler_plugin_outcome_clear(&out);
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

/* Runs one job. Fast builtins write STARTED and the outcome together;
 * anything that may take time flushes STARTED first, so the supervisor
 * knows the attempt began (its timeout starts then). */
static void
s_run(const worker_ipc_msg_t *m)
{
    static const char nil = (char)0xc0;
    const char *cmd =
        worker_config_handler(s_c.cfg, m->type.ptr, m->type.len);
    handler_plugin_t *plugin = cmd ? NULL : s_find_plugin(m->type);
    s_put_tag(WORKER_IPC_STARTED, m->tag);
    if (cmd) {
        s_flush();
        s_exec(m, cmd);
    } else if (plugin) {
        s_flush();
        s_plugin(m, plugin);
    } else if (dv_str_eq(m->type, "noop")) {
        s_put_succeeded(m->tag, &nil, 1);
    } else if (dv_str_eq(m->type, "echo")) {
        if (m->payload.ptr)
            s_put_succeeded(m->tag, m->payload.ptr, m->payload.len);
        else
            s_put_succeeded(m->tag, &nil, 1);
    } else if (dv_str_eq(m->type, "sleep")) {
        s_flush();
        s_builtin_sleep(m);
    } else if (dv_str_eq(m->type, "fail")) {
        s_flush();
        s_builtin_fail(m);
    } else {
        char text[DV_TEXT_MAX];
        snprintf(text, sizeof text, "no handler for type %.*s on worker %s",
                 (int)m->type.len, m->type.ptr, s_c.name);
        s_put_failed(m->tag, DV_CAT_UNKNOWN_TYPE, false, text);
    }
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
        s_run(&s_c.slots[s_c.nslots].msg);
        s_tag = -1;
        s_c.done++;
        if (max_jobs > 0 && s_c.done >= max_jobs)
            s_leave();
        if (cfg->max_rss_per_child > 0)
            s_check_rss();
    }
}
