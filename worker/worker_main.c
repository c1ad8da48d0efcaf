/* worker_main - `drover worker`: settings, signals and the supervisor loop.
 *
 * One loop pass: poll the broker socket, the children's sockets and a
 * signalfd; read everything that is ready; act on it (jobs to the pool,
 * reports to the outbox); then write: frames to children, one UPDATE with
 * everything the pass produced, a heartbeat if due. Batching per pass is
 * what lets small jobs flow at tens of thousands per second.
 *
 * The work itself is done by lanes (worker_lane.h): the http lane, then
 * the prefork pool, which takes every job type no other lane owns. The
 * loop goes over them; it knows none by name except to make them.
 *
 * Out of memory while serving: HELLO and the heartbeat are skipped and
 * tried again on a later pass; poll items that cannot grow are left out
 * this pass (a lane's timers still run); the lanes keep their own state
 * consistent (worker_pool.h, handler_http.h).
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "dv_body.h"
#include "dv_clock.h"
#include "dv_daemon.h"
#include "dv_curve_client.h"
#include "dv_log.h"
#include "dv_proto.h"
#include "handler_http.h"
#include "worker_config.h"
#include "worker_link.h"
#include "worker_outbox.h"
#include "worker_lane.h"
#include "worker_pool.h"

/* Broker messages handled per pass before children get a turn. */
#define S_RECV_BUDGET 512
/* Longest poll sleep, so a missed wake-up costs at most this. */
#define S_POLL_MAX_MS 1000
/* After the last job is settled on shutdown: time to deliver the final
 * reports and BYE. */
#define S_FINISH_MS 5000
/* How long ZeroMQ may keep trying to deliver BYE at exit. */
#define S_LINGER_MS 2000
/* After a HELLO or heartbeat found no memory: when to try again. */
#define S_STANDBY_RETRY_MS 250 /* a standby asked again after this */
/* How long one standby is asked again before the worker goes round its
 * list once more: longer than a takeover takes (broker_ha.h: about 3.5 s
 * after the holder stops), since a standby that stays one past that means
 * another broker of the list holds the lock (say, the one just left, back
 * after its database restarted). */
#define S_STANDBY_PATIENCE_MS 4000
#define S_RETRY_MS            100
/* The http lane and the pool. */
#define S_LANES 2

typedef enum {
    P_RUN,    /* taking jobs */
    P_DRAIN,  /* no new jobs; running ones finish */
    P_FINISH, /* nothing held; delivering the last reports, then BYE */
    P_DONE,
} s_phase_t;

typedef struct {
    worker_config_t cfg;
    char name[DV_NAME_MAX + 1];
    char host[256];
    int sigfd;
    worker_outbox_t *outbox;
    worker_pool_t *pool;
    void *zctx;
    worker_link_t *link;
    s_phase_t phase;
    int64_t mono, wall;
    int64_t drain_deadline; /* end of the grace period */
    bool stopped_running;   /* grace period over, running jobs stopped */
    int64_t finish_deadline;
    int sigints;
    int quit_signal;       /* immediate stop requested by this signal */
    bool socket_full;      /* updates waiting for room to send */
    bool hello_due;        /* a HELLO found no memory: send it again */
    int64_t retry_at;      /* when to try it (mono ms) */
    int64_t standby_since; /* first standby answer of this round (mono ms);
                            * 0 when none */
    dv_held_t *held;
    size_t held_cap;
    zmq_pollitem_t *items;
    int items_cap;
    handler_http_t *http;         /* the http lane, beside the pool */
    worker_lane_t lanes[S_LANES]; /* owners first: the pool is last */
    int nlanes;
    int lane_items[S_LANES]; /* poll items per lane this pass */
    msgpack_sbuffer hb_body; /* the heartbeat's body, reused */
    bool health_warned;      /* the health file could not be touched: said
                              * once */
} s_worker_t;

static const char *s_phase_names[] = { "running", "draining", "finishing",
                                       "done" };

/* Jobs held by every lane. */
static size_t
s_held_count(const s_worker_t *w)
{
    size_t n = 0;
    for (int i = 0; i < w->nlanes; i++)
        n += w->lanes[i].ops->held_count(w->lanes[i].self);
    return n;
}

/* Jobs the worker takes at once: the lanes' shares. The broker sends by
 * queue, not by type, so the credit is their sum; a job that does not fit
 * its lane yet waits there, first in, first out. */
static int32_t
s_capacity(const s_worker_t *w)
{
    int32_t n = 0;
    for (int i = 0; i < w->nlanes; i++)
        n += w->lanes[i].ops->capacity(w->lanes[i].self);
    return n;
}

/* The processes of every lane. */
static worker_lane_stats_t
s_stats(const s_worker_t *w)
{
    worker_lane_stats_t all = { 0, 0, 0 }, st;
    for (int i = 0; i < w->nlanes; i++) {
        w->lanes[i].ops->stats(w->lanes[i].self, &st);
        all.busy += st.busy;
        all.idle += st.idle;
        all.alive += st.alive;
    }
    return all;
}

/* The lane that runs jobs of this type (the last one takes the rest). */
static const worker_lane_t *
s_lane_for(const s_worker_t *w, dv_str_t type)
{
    for (int i = 0; i < w->nlanes - 1; i++)
        if (w->lanes[i].ops->owns(w->lanes[i].self, type))
            return &w->lanes[i];
    return &w->lanes[w->nlanes - 1];
}

/* ---- setup ---------------------------------------------------------- */

/* Children and exec'd commands expect 0..2 to exist; a descriptor opened
 * later must never land there by accident. */
static void
s_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0) {
            int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (n >= 0 && n != fd) {
                dup2(n, fd);
                close(n);
            }
        }
}

/* ---- broker conversation ---------------------------------------------- */

static void
s_hello(s_worker_t *w)
{
    size_t n = s_held_count(w);
    if (n > w->held_cap) {
        dv_held_t *h = realloc(w->held, n * sizeof *h);
        if (!h) {
            /* A HELLO must list every job held: send it when it can. */
            dv_log(DV_ERROR, "worker.hello_deferred", DV_INT("held", n),
                   DV_STR("error", "out of memory"));
            w->hello_due = true;
            w->retry_at = w->mono + S_RETRY_MS;
            return;
        }
        w->held = h;
        w->held_cap = n;
    }
    w->hello_due = false;
    n = 0;
    for (int i = 0; i < w->nlanes; i++)
        n += w->lanes[i].ops->held(w->lanes[i].self, w->held + n,
                                   w->held_cap - n);
    int32_t credit = 0;
    if (w->phase == P_RUN)
        credit = s_capacity(w) - (int32_t)n;
    /* HELLO states the whole truth, so earlier owed credit is moot. */
    worker_outbox_reset_credit(w->outbox);
    worker_link_send_hello(w->link, credit < 0 ? 0 : credit, w->held,
                           (uint32_t)n, w->mono);
}

static void
s_reconnect(s_worker_t *w, const char *reason)
{
    w->standby_since = 0; /* another broker, another round of patience */
    worker_link_reconnect(w->link, reason, w->mono);
    s_hello(w);
}

static void s_drain(s_worker_t *w, const char *why);

/* KILL, or a job a WELCOME revokes: the lane holding that copy drops or
 * stops it. Unknown ids are ignored (the job may have just ended). */
static void
s_cancel(s_worker_t *w, dv_str_t id, uint64_t lease, dv_str_t reason)
{
    for (int i = 0; i < w->nlanes; i++)
        if (w->lanes[i].ops->cancel(w->lanes[i].self, id, lease, reason) == 0)
            return;
    char idz[WORKER_ID_MAX + 1];
    dv_log(DV_DEBUG, "worker.cancel_unknown",
           DV_STR("job", dv_str_copy(id, idz, sizeof idz)));
}

/* The broker does not know us (it restarted, or expired us): say HELLO.
 * By its code; a broker older than the codes (DV_CODE_NONE) is known by
 * its reason text. */
static bool
s_unknown_worker(const dv_error_t *e)
{
    if (e->code != DV_CODE_NONE)
        return e->code == DV_CODE_UNKNOWN_WORKER;
    static const char unknown[] = "unknown worker";
    dv_str_t r = e->reason;
    return r.ptr && r.len >= sizeof unknown - 1 &&
           memcmp(r.ptr, unknown, sizeof unknown - 1) == 0;
}

static void
s_on_message(s_worker_t *w, dv_msg_t *m)
{
    switch (m->type) {
    case DV_MSG_JOBS:
        dv_log(DV_DEBUG, "worker.jobs", DV_INT("count", m->u.jobs.njobs));
        for (uint32_t i = 0; i < m->u.jobs.njobs; i++) {
            /* A duplicate or a refused job still used up a credit. */
            const dv_job_t *job = &m->u.jobs.jobs[i];
            const worker_lane_t *l = s_lane_for(w, job->type);
            if (l->ops->add(l->self, job) != 0)
                worker_outbox_grant(w->outbox, 1);
        }
        break;
    case DV_MSG_KILL:
        s_cancel(w, m->u.kill.id, m->u.kill.lease, m->u.kill.reason);
        break;
    case DV_MSG_DRAIN: /* `drover drain`: as on SIGTERM */
        s_drain(w, "broker asked (drover drain)");
        break;
    case DV_MSG_ERROR:
        if (m->u.error.code == DV_CODE_STANDBY) {
            /* Another broker of the group is active: go and find it. */
            bool next = worker_link_welcomed(w->link) ||
                        worker_link_standby_next(w->link);
            if (!next && !w->standby_since)
                w->standby_since = w->mono;
            else if (!next &&
                     w->mono - w->standby_since >= S_STANDBY_PATIENCE_MS)
                next = true; /* it stays a standby: try the others again */
            dv_log(next ? DV_INFO : DV_DEBUG, "worker.standby_broker",
                   DV_STR("endpoint", worker_link_endpoint(w->link)));
            if (next) {
                s_reconnect(w, "standby broker");
            } else {
                /* Every broker of the list was tried: a takeover is under
                 * way, and this standby may be the next active one. Ask
                 * it again shortly rather than go round the list again
                 * (a dead broker costs a whole hello timeout), for up to
                 * S_STANDBY_PATIENCE_MS. */
                w->hello_due = true;
                w->retry_at = w->mono + S_STANDBY_RETRY_MS;
            }
        } else if (s_unknown_worker(&m->u.error) &&
                   !worker_link_hello_pending(w->link)) {
            s_hello(w);
        }
        break;
    case DV_MSG_WELCOME:
        w->standby_since = 0;
        /* Before anything starts: jobs that are no longer ours go, and
         * outcomes the broker did not ack go again. */
        for (uint32_t i = 0; i < m->u.welcome.nrevoked; i++)
            s_cancel(w, m->u.welcome.revoked[i].id,
                     m->u.welcome.revoked[i].lease,
                     dv_str("revoked: the broker leased it elsewhere or it "
                            "ended"));
        if (m->u.welcome.nrevoked)
            dv_log(DV_WARN, "worker.jobs_revoked",
                   DV_INT("jobs", m->u.welcome.nrevoked));
        worker_outbox_resend(w->outbox);
        for (int i = 0; i < w->nlanes; i++)
            if (w->lanes[i].ops->keys_reset)
                w->lanes[i].ops->keys_reset(w->lanes[i].self);
        break;
    case DV_MSG_KEYS:
        for (int i = 0; i < w->nlanes; i++)
            if (w->lanes[i].ops->keys_in)
                w->lanes[i].ops->keys_in(w->lanes[i].self, m->u.keys.items,
                                         m->u.keys.nitems);
        break;
    case DV_MSG_HEARTBEAT:
        if (m->u.heartbeat.ack)
            worker_outbox_ack(w->outbox, m->u.heartbeat.ack);
        break;
    default:
        dv_log(DV_DEBUG, "worker.unexpected_message",
               DV_STR("type", dv_msg_type_name(m->type)));
        break;
    }
}

/* Lines about the fleet's API keys, from every lane that has keys. */
static void
s_keys_out(s_worker_t *w)
{
    dv_keyitem_t items[256];
    for (int i = 0; i < w->nlanes; i++) {
        const worker_lane_t *l = &w->lanes[i];
        if (!l->ops->keys_out)
            continue;
        int n;
        while ((n = l->ops->keys_out(l->self, items, 256)) > 0) {
            if (worker_link_send_keys(w->link, items, (uint32_t)n) != 0)
                dv_log(DV_WARN, "worker.keys_unsent",
                       DV_INT("lines", n)); /* the broker's ttl covers it */
            if (n < 256)
                break;
        }
    }
}

/* Reads broker messages; returns true if the budget ran out (more may be
 * waiting). */
static bool
s_broker_read(s_worker_t *w)
{
    for (int i = 0; i < S_RECV_BUDGET; i++) {
        dv_msg_t m;
        int rc = worker_link_recv(w->link, &m, w->mono);
        if (rc == 0)
            return false;
        if (rc < 0)
            continue;
        s_on_message(w, &m);
        worker_link_release(w->link, &m);
    }
    return true;
}

/* Touches --health-file (creating it): the worker is alive and the broker
 * knows it. A probe (drover health --self worker) checks its age. */
static void
s_touch_health(s_worker_t *w)
{
    const char *path = w->cfg.health_file;
    if (!path)
        return;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
    if (fd >= 0 && futimens(fd, NULL) == 0) {
        close(fd);
        w->health_warned = false;
        return;
    }
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (!w->health_warned)
        dv_log(DV_WARN, "worker.health_file_failed", DV_STR("path", path),
               DV_STR("error", strerror(e)));
    w->health_warned = true;
}

static void
s_heartbeat(s_worker_t *w)
{
    if (!worker_link_heartbeat_due(w->link, w->mono))
        return;
    /* A small metrics body; the broker passes it on to monitors. The
     * lanes fill their parts into arrays they keep, and the buffer is
     * kept too: no allocation once the first heartbeat has gone. */
    double load[1] = { 0 };
    if (getloadavg(load, 1) < 1)
        load[0] = 0;
    dv_hbmetrics_t m = {
        .held = (int64_t)s_held_count(w),
        .capacity = s_capacity(w),
        .outbox = (int64_t)worker_outbox_size(w->outbox),
        .load1 = load[0],
    };
    int rc = DV_OK;
    for (int i = 0; i < w->nlanes && rc == DV_OK; i++)
        rc = worker_lane_fill_metrics(&w->lanes[i], &m);
    msgpack_sbuffer_clear(&w->hb_body);
    if (rc == DV_OK)
        rc = dv_hbmetrics_encode(&m, &w->hb_body);
    worker_lane_stats_t st = s_stats(w);
    dv_heartbeat_t hb = {
        .busy = st.busy,
        .idle = st.idle,
        .processed = worker_outbox_processed(w->outbox),
        .failed = worker_outbox_failures(w->outbox),
        .body = dv_strn(w->hb_body.data, w->hb_body.size),
    };
    /* Without memory for the body the heartbeat goes without it: the
     * broker must still hear from us. */
    if (rc != DV_OK) {
        dv_log(DV_WARN, "worker.heartbeat_body_dropped",
               DV_STR("error", dv_strerror(rc)));
        hb.body = dv_strn(NULL, 0);
    }
    if (worker_link_heartbeat(w->link, &hb, w->mono) == 0)
        s_touch_health(w);
}

/* ---- shutdown --------------------------------------------------------- */

static void
s_drain(s_worker_t *w, const char *why)
{
    if (w->phase != P_RUN)
        return;
    w->phase = P_DRAIN;
    w->drain_deadline = w->mono + w->cfg.grace_ms;
    dv_log(DV_INFO, "worker.draining", DV_STR("reason", why),
           DV_INT("held", s_held_count(w)),
           DV_INT("grace_ms", w->cfg.grace_ms));
    worker_outbox_stop_credit(w->outbox);
    for (int i = 0; i < w->nlanes; i++)
        w->lanes[i].ops->drain(w->lanes[i].self);
}

static void
s_phase_step(s_worker_t *w)
{
    if (w->phase == P_DRAIN) {
        if (!w->stopped_running && w->mono >= w->drain_deadline) {
            w->stopped_running = true;
            dv_log(DV_WARN, "worker.grace_expired",
                   DV_INT("busy", s_stats(w).busy));
            for (int i = 0; i < w->nlanes; i++)
                w->lanes[i].ops->stop_running(w->lanes[i].self);
        }
        if (s_held_count(w) == 0) {
            w->phase = P_FINISH;
            w->finish_deadline = w->mono + S_FINISH_MS;
        }
    }
    if (w->phase == P_FINISH) {
        bool delivered = worker_outbox_size(w->outbox) == 0 &&
                         worker_outbox_unacked(w->outbox) == 0 &&
                         worker_link_welcomed(w->link) && !w->socket_full;
        int alive = s_stats(w).alive;
        if (delivered && alive == 0) {
            worker_link_send_bye(w->link);
            w->phase = P_DONE;
        } else if (w->mono >= w->finish_deadline) {
            dv_log(DV_WARN, "worker.finish_timeout",
                   DV_INT("unsent", worker_outbox_size(w->outbox)),
                   DV_INT("children", alive),
                   DV_BOOL("connected", worker_link_welcomed(w->link)));
            if (worker_link_welcomed(w->link))
                worker_link_send_bye(w->link);
            w->phase = P_DONE;
        }
    }
}

static void
s_dump(s_worker_t *w)
{
    dv_log(DV_INFO, "worker.state", DV_STR("worker", w->name),
           DV_STR("phase", s_phase_names[w->phase]),
           DV_STR("endpoint", worker_link_endpoint(w->link)),
           DV_BOOL("welcomed", worker_link_welcomed(w->link)),
           DV_INT("credit_owed", worker_outbox_credit(w->outbox)),
           DV_INT("outbox", worker_outbox_size(w->outbox)),
           DV_INT("held", s_held_count(w)),
           DV_INT("processed", worker_outbox_processed(w->outbox)),
           DV_INT("failed", worker_outbox_failures(w->outbox)));
    for (int i = 0; i < w->nlanes; i++)
        w->lanes[i].ops->dump(w->lanes[i].self);
}

/* SIGHUP: reads the certificate files again (the paths it started with).
 * When the keys changed, connects anew with them and says hello again, as
 * after a lost connection: the broker hands back the jobs we hold (their
 * leases are adopted), and nothing running is stopped. A file that cannot
 * be read leaves the keys in use as they are. */
static void
s_reload_keys(s_worker_t *w)
{
    if (!w->cfg.curve_secret && !w->cfg.curve_server) {
        dv_log(DV_INFO, "worker.reloaded",
               DV_STR("certificates", "none (plain ZeroMQ)"));
        return;
    }
    dv_curve_keys_t keys;
    char err[512];
    if (dv_curve_client_load(&keys, w->cfg.curve_secret, w->cfg.curve_server,
                             err, sizeof err) != 0) {
        dv_log(DV_ERROR, "worker.reload_failed", DV_STR("error", err),
               DV_STR("keeping", "the certificates in use"));
        return;
    }
    bool changed = worker_link_set_curve(w->link, &keys);
    dv_curve_client_wipe(&keys);
    dv_log(DV_INFO, "worker.reloaded",
           DV_STR("certificates",
                  changed ? "changed: reconnecting" : "unchanged"));
    if (changed) {
        worker_link_connect(w->link, w->mono);
        s_hello(w);
    }
}

static void
s_signals(s_worker_t *w)
{
    struct signalfd_siginfo si;
    while (read(w->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        switch (si.ssi_signo) {
        case SIGCHLD:
            for (int i = 0; i < w->nlanes; i++)
                worker_lane_reap(&w->lanes[i]);
            break;
        case SIGTERM:
            s_drain(w, "SIGTERM");
            break;
        case SIGINT:
            if (++w->sigints >= 2)
                w->quit_signal = SIGINT;
            else
                s_drain(w, "SIGINT");
            break;
        case SIGQUIT:
            w->quit_signal = SIGQUIT;
            break;
        case SIGUSR1:
            s_dump(w);
            break;
        case SIGHUP:
            s_reload_keys(w);
            break;
        default:
            break;
        }
    }
}

/* ---- the loop ----------------------------------------------------------- */

static int64_t
s_min(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Makes room for n poll items. Returns the room there is (out of memory
 * leaves the old room). */
static int
s_items_room(s_worker_t *w, int n)
{
    if (n <= w->items_cap)
        return w->items_cap;
    zmq_pollitem_t *items = realloc(w->items, (size_t)(2 * n) * sizeof *items);
    if (!items) {
        dv_log(DV_ERROR, "worker.poll_items_short", DV_INT("wanted", n),
               DV_INT("have", w->items_cap), DV_STR("error", "out of memory"));
        return w->items_cap;
    }
    w->items = items;
    w->items_cap = 2 * n;
    return w->items_cap;
}

static void
s_loop(s_worker_t *w)
{
    bool more = false; /* broker messages left unread last pass */
    while (w->phase != P_DONE && !w->quit_signal) {
        w->mono = dv_mono_ms();
        int want = 3;
        for (int i = 0; i < w->nlanes; i++)
            want += w->lanes[i].ops->poll_count(w->lanes[i].self);
        int room = s_items_room(w, want);
        int64_t next = worker_link_next_deadline(w->link);
        for (int i = 0; i < w->nlanes; i++)
            next =
                s_min(next, w->lanes[i].ops->next_deadline(w->lanes[i].self));
        if (w->hello_due)
            next = s_min(next, w->retry_at);
        if (w->phase == P_DRAIN && !w->stopped_running)
            next = s_min(next, w->drain_deadline);
        if (w->phase == P_FINISH)
            next = s_min(next, w->finish_deadline);
        long timeout = 0;
        if (!more)
            timeout =
                (long)(next <= w->mono ? 0
                                       : s_min(next - w->mono, S_POLL_MAX_MS));

        zmq_pollitem_t *it = w->items;
        it[0] =
            (zmq_pollitem_t){ worker_link_socket(w->link), 0, ZMQ_POLLIN, 0 };
        if (w->socket_full)
            it[0].events |= ZMQ_POLLOUT;
        if (!it[0].socket) {
            it[0].fd = -1; /* poll() skips it */
            it[0].events = 0;
        }
        it[1] = (zmq_pollitem_t){ NULL, w->sigfd, ZMQ_POLLIN, 0 };
        it[2] =
            (zmq_pollitem_t){ worker_link_monitor(w->link), 0, ZMQ_POLLIN, 0 };
        if (!it[2].socket) {
            it[2].fd = -1;
            it[2].events = 0;
        }
        int nitems = 3;
        for (int i = 0; i < w->nlanes; i++) {
            w->lane_items[i] = w->lanes[i].ops->poll_items(
                w->lanes[i].self, it + nitems, room - nitems);
            nitems += w->lane_items[i];
        }
        if (zmq_poll(it, nitems, timeout) < 0 && errno != EINTR) {
            dv_log(DV_ERROR, "worker.poll_failed",
                   DV_STR("error", zmq_strerror(errno)));
            break;
        }
        w->mono = dv_mono_ms();
        w->wall = dv_now_ms();

        /* Lanes first: their outcomes free slots for the jobs below. */
        nitems = 3;
        for (int i = 0; i < w->nlanes; i++) {
            const worker_lane_t *l = &w->lanes[i];
            l->ops->set_time(l->self, w->mono, w->wall);
            l->ops->io(l->self, it + nitems, w->lane_items[i]);
            nitems += w->lane_items[i];
        }
        if (it[1].revents)
            s_signals(w);
        if (w->quit_signal)
            break;
        more = s_broker_read(w);
        if (it[2].revents && worker_link_lost(w->link)) {
            /* The broker went away (died, restarted, stepped down): the
             * next one of the list, at once. */
            s_reconnect(w, "connection lost");
        } else if (worker_link_expired(w->link, w->mono)) {
            s_reconnect(w, worker_link_welcomed(w->link) ? "broker silent"
                                                         : "no welcome");
        } else if (worker_link_silent(w->link, w->mono)) {
            /* Stopped or stalled past the broker's patience: our leases
             * may be someone else's now. Ask before starting anything. */
            dv_log(DV_WARN, "worker.session_stale",
                   DV_INT("held", s_held_count(w)));
            s_hello(w);
        } else if (w->hello_due && w->mono >= w->retry_at) {
            s_hello(w);
        }
        for (int i = 0; i < w->nlanes; i++)
            worker_lane_tick(&w->lanes[i]);

        /* Only while the broker knows us: a lease is ours only as far as
         * the last WELCOME says. */
        bool welcomed = worker_link_welcomed(w->link);
        for (int i = 0; i < w->nlanes && welcomed; i++)
            w->lanes[i].ops->dispatch(w->lanes[i].self);
        for (int i = 0; i < w->nlanes; i++)
            w->lanes[i].ops->flush(w->lanes[i].self, welcomed);
        if (welcomed) {
            w->socket_full = worker_link_send_updates(w->link, w->outbox) == 1;
            if (!w->socket_full)
                s_keys_out(w); /* else they wait, counted, for a pass with
                                * room: a lost line would leave grants
                                * counted at the broker */
            s_heartbeat(w);
        }
        s_phase_step(w);
    }
}

int
worker_main(int argc, char **argv)
{
    s_worker_t w;
    memset(&w, 0, sizeof w);
    w.sigfd = -1;
    worker_config_defaults(&w.cfg);
    char err[512];
    const dv_flag_t *bad;
    int rc = worker_config_parse_ex(&w.cfg, argc, argv, &bad, err, sizeof err);
    if (rc == 1) {
        worker_config_usage(stdout);
        worker_config_clear(&w.cfg);
        return 0;
    }
    dv_daemon_t d = { .name = "worker",
                      .about = worker_about,
                      .notes = worker_notes,
                      .exits = worker_exits,
                      .flags = worker_flags,
                      .log_level = w.cfg.log_level,
                      .log_text = w.cfg.log_text };
    if (rc != 0) {
        worker_config_clear(&w.cfg);
        return bad ? dv_daemon_usage(&d, bad, "%s", err)
                   : dv_daemon_fail(&d, "%s", err);
    }
    s_std_fds();

    if (gethostname(w.host, sizeof w.host - 1) != 0)
        snprintf(w.host, sizeof w.host, "localhost");
    /* The default name is host:pid, cut to the protocol's name limit. */
    char pid[16];
    snprintf(pid, sizeof pid, ":%d", (int)getpid());
    if (w.cfg.name) {
        snprintf(w.name, sizeof w.name, "%s", w.cfg.name);
    } else {
        size_t hl = strnlen(w.host, sizeof w.name - 1 - strlen(pid));
        memcpy(w.name, w.host, hl);
        memcpy(w.name + hl, pid, strlen(pid) + 1);
    }

    int exit_code = 1;
    /* Check the endpoints before anything starts, with a context of its
     * own: the real one must not exist yet when the children are forked. */
    void *probe = zmq_ctx_new();
    rc = probe ? worker_link_check_endpoints(probe, &w.cfg, err, sizeof err)
               : -1;
    if (probe)
        zmq_ctx_term(probe);
    if (rc != 0) {
        worker_config_clear(&w.cfg);
        return dv_daemon_fail(&d, "%s", probe ? err : "cannot start ZeroMQ");
    }
    /* The certificates too: a missing or too open file stops us here. */
    dv_curve_keys_t curve;
    if (dv_curve_client_load(&curve, w.cfg.curve_secret, w.cfg.curve_server,
                             err, sizeof err) != 0) {
        worker_config_clear(&w.cfg);
        return dv_daemon_fail(&d, "%s", err);
    }
    /* Before any thread or child exists, so they inherit the signal mask. */
    w.sigfd = dv_daemon_start_signalfd(&d);
    w.outbox = worker_outbox_new();
    w.pool = w.outbox ? worker_pool_new(&w.cfg, w.name, w.outbox) : NULL;
    w.items_cap = 3 + w.cfg.concurrency;
    w.items = calloc((size_t)w.items_cap, sizeof *w.items);
    if (w.sigfd < 0 || !w.pool || !w.items) {
        dv_log(DV_ERROR, "worker.setup_failed",
               DV_STR("error", strerror(errno)));
        goto out;
    }
    w.http = handler_http_new(&w.cfg, w.name, w.outbox, err, sizeof err);
    if (!w.http) {
        dv_log(DV_ERROR, "worker.setup_failed", DV_STR("error", err));
        goto out;
    }
    w.lanes[w.nlanes++] = handler_http_lane(w.http);
    w.lanes[w.nlanes++] = worker_pool_lane(w.pool); /* takes the rest */
    char queues[1024] = "";
    for (int i = 0; i < w.cfg.nqueues; i++)
        snprintf(queues + strlen(queues), sizeof queues - strlen(queues),
                 "%s%s", i ? "," : "", w.cfg.queues[i]);
    dv_log(DV_INFO, "worker.started", DV_STR("worker", w.name),
           DV_STR("queues", queues), DV_INT("concurrency", w.cfg.concurrency),
           w.cfg.prefetch_adaptive ? DV_STR("prefetch", "adaptive")
                                   : DV_INT("prefetch", w.cfg.prefetch),
           DV_INT("handlers", w.cfg.nhandlers));
    w.mono = dv_mono_ms();
    /* Fork before ZeroMQ starts its threads: the children begin life in
     * a single-threaded copy of the process. */
    worker_pool_spawn(w.pool, w.mono);

    w.zctx = zmq_ctx_new();
    w.link = w.zctx ? worker_link_new(w.zctx, &w.cfg, w.name, w.host) : NULL;
    if (w.link)
        worker_link_set_curve(w.link, &curve);
    dv_curve_client_wipe(&curve);
    if (!w.link) {
        dv_log(DV_ERROR, "worker.setup_failed", DV_STR("error", "zeromq"));
        goto out;
    }
    w.mono = dv_mono_ms();
    worker_link_connect(w.link, w.mono);
    s_hello(&w);
    s_loop(&w);

    if (w.quit_signal) {
        dv_log(DV_WARN, "worker.stopped",
               DV_STR("reason",
                      w.quit_signal == SIGQUIT ? "SIGQUIT" : "second SIGINT"),
               DV_INT("abandoned", s_held_count(&w)));
        for (int i = 0; i < w.nlanes; i++)
            worker_lane_kill_all(&w.lanes[i], 1000);
        worker_link_destroy(&w.link, 0);
        exit_code = 128 + w.quit_signal;
    } else {
        dv_log(DV_INFO, "worker.stopped", DV_STR("reason", "drained"),
               DV_INT("processed", worker_outbox_processed(w.outbox)),
               DV_INT("failed", worker_outbox_failures(w.outbox)));
        worker_link_destroy(&w.link, S_LINGER_MS);
        exit_code = w.phase == P_DONE ? 0 : 1;
    }

out:
    /* Gone with us: a probe sees at once that this worker is not alive. */
    if (w.cfg.health_file)
        unlink(w.cfg.health_file);
    dv_curve_client_wipe(&curve);
    worker_link_destroy(&w.link, 0);
    if (w.zctx)
        zmq_ctx_term(w.zctx);
    handler_http_destroy(&w.http);
    worker_pool_destroy(&w.pool);
    worker_outbox_destroy(&w.outbox);
    free(w.held);
    free(w.items);
    msgpack_sbuffer_destroy(&w.hb_body);
    if (w.sigfd >= 0)
        close(w.sigfd);
    worker_config_clear(&w.cfg);
    return exit_code;
}
