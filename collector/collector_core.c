/* collector_core - sockets, the loop, snapshots and queries. Events come
 * one message per broker batch (a group's job events) or per lone event;
 * the history is committed once a second; gaps are repaired by snapshots
 * (live state) and by collector_backfill (history). Loop thread only. */
#include "collector_core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "collector_backfill.h"
#include "collector_http.h"
#include "collector_query.h"
#include "collector_state.h"
#include "collector_store.h"
#include "dv_body.h"
#include "dv_clock.h"
#include "dv_json.h"
#include "dv_log.h"
#include "dv_proto.h"

/* Events read from one broker per pass before the others get a turn (a
 * batch is read whole, so a pass may take a batch's worth more). */
#define S_EVENTS_PER_PASS 5000
/* The history's writes of several passes go in one transaction: it is
 * committed this long after its first write. One commit writes each page
 * the group touched once (the tables' and indexes' hot pages are the same
 * from pass to pass), so under load this is what keeps the store's cost
 * per event low; a query reads the open group's writes all the same. */
#define S_COMMIT_MS 1000
/* After a pass that read events, the next read of events waits this long,
 * so that each wake-up of the loop (a poll, a receive, a pass) serves a
 * group of broker batches, not each one; queries are served meanwhile. */
#define S_EVENTS_EVERY_MS 20
/* Queries answered per pass. */
#define S_QUERIES_PER_PASS 100
/* Longest poll sleep. */
#define S_POLL_MAX_MS 1000
/* Retention runs this often, and deletes at most this many rows a run (a
 * run that hits the limit runs again a second later). */
#define S_EXPIRE_EVERY_MS 60000
#define S_EXPIRE_ROWS     10000
/* After a failed snapshot request, the next one waits this long. */
#define S_RETRY_MS 1000

typedef struct {
    void *sub;    /* events */
    void *dealer; /* status requests; NULL without endpoint */
    const char *clients_ep;
    uint64_t req;       /* request in flight, 0 if none */
    int64_t sent_mono;  /* when it was sent */
    int64_t next_mono;  /* next periodic snapshot */
    int64_t retry_mono; /* no request before this (after a failure) */
    bool again;         /* a gap came while a request was in flight */
    bool dirty;         /* events this pass: save its sequence */
    /* Gaps seen this pass, logged as one line after it: a slow consumer
     * loses events in many small runs, one line each would flood the log. */
    uint64_t gap_from, gap_to, gap_missed;
    int gap_runs;
    /* Events this pass that could not be applied in full (out of memory),
     * logged as one line after it too, with the first one's number. */
    uint64_t partial, partial_seq;
    bool down;       /* last request failed */
    int64_t last_ts; /* time of the last event received (broker's clock) */
} s_link_t;

struct collector_t {
    collector_config_t cfg;
    void *zctx;
    void *router;
    s_link_t links[COLLECTOR_BROKERS_MAX];
    int nlinks;
    collector_state_t *state;
    collector_store_t *store;
    collector_http_t *http;
    collector_query_t query;
    uint64_t next_req;
    int64_t next_expire_mono;
    int64_t next_tick_mono;
    zmq_pollitem_t *items;
    int nitems;
    dv_curve_server_t *curve; /* CurveZMQ on the query socket; NULL: plain */
    volatile int *reload;     /* set by SIGHUP */
    int64_t failed_passes;    /* passes in a row whose commit failed */
    int64_t open_mono;        /* first write of the open group; 0 none */
    collector_backfill_t *backfill; /* lost events' finished jobs */
};

static void *
s_socket(collector_t *self, int type)
{
    void *s = zmq_socket(self->zctx, type);
    if (!s)
        return NULL;
    int linger = 0;
    int64_t maxmsg = DV_MSG_MAX;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    return s;
}

/* Sets the CurveZMQ keys on a socket to a broker and connects it to ep.
 * Returns 0, or -1 after logging why. */
static int
s_connect(collector_t *self, void *s, const char *ep)
{
    char why[256];
    if (dv_curve_client_apply(&self->cfg.curve, s, why, sizeof why) != 0) {
        dv_log(DV_ERROR, "collector.connect_failed", DV_STR("endpoint", ep),
               DV_STR("error", why));
        return -1;
    }
    if (zmq_connect(s, ep) != 0) {
        dv_log(DV_ERROR, "collector.connect_failed", DV_STR("endpoint", ep),
               DV_STR("error", zmq_strerror(errno)));
        return -1;
    }
    return 0;
}

static int
s_dealer_open(collector_t *self, s_link_t *l)
{
    l->dealer = s_socket(self, ZMQ_DEALER);
    if (!l->dealer || s_connect(self, l->dealer, l->clients_ep) != 0) {
        if (!l->dealer)
            dv_log(DV_ERROR, "collector.connect_failed",
                   DV_STR("endpoint", l->clients_ep),
                   DV_STR("error", zmq_strerror(errno)));
        if (l->dealer)
            zmq_close(l->dealer);
        l->dealer = NULL;
        return -1;
    }
    return 0;
}

collector_t *
collector_new(const collector_config_t *cfg)
{
    if (cfg->nevents < 1 || cfg->nevents > COLLECTOR_BROKERS_MAX) {
        dv_log(DV_ERROR, "collector.config", DV_STR("error", "1..16 brokers"));
        return NULL;
    }
    collector_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    int64_t now = dv_now_ms();
    self->state = collector_state_new(now);
    self->store = collector_store_open(cfg->store);
    self->zctx = zmq_ctx_new();
    self->backfill = collector_backfill_new(COLLECTOR_BROKERS_MAX);
    if (!self->state || !self->store || !self->zctx || !self->backfill)
        goto fail;

    if (cfg->query_curve.secret_file) {
        char err[512] = "";
        self->curve =
            dv_curve_server_new(self->zctx, &cfg->query_curve, err, sizeof err);
        if (!self->curve) {
            dv_log(DV_ERROR, "collector.curve_failed", DV_STR("error", err));
            goto fail;
        }
        size_t keys = dv_curve_server_keys(self->curve);
        dv_log(DV_INFO, "collector.curve", DV_INT("keys", (int64_t)keys));
        if (!keys)
            dv_log(DV_WARN, "collector.curve_no_keys",
                   DV_STR("why", "no key in any allow-list: every query is "
                                 "refused until one is added (SIGHUP)"));
    }
    self->router = s_socket(self, ZMQ_ROUTER);
    /* Every listed key may connect; each query's role is checked, and a
     * worker key is answered not_allowed. */
    if (self->router && self->curve &&
        dv_curve_server_socket(self->curve, self->router, "drover.collector",
                               0) != 0) {
        dv_log(DV_ERROR, "collector.bind_failed", DV_STR("endpoint", cfg->bind),
               DV_STR("error", zmq_strerror(errno)));
        goto fail;
    }
    if (!self->router || zmq_bind(self->router, cfg->bind) != 0) {
        dv_log(DV_ERROR, "collector.bind_failed", DV_STR("endpoint", cfg->bind),
               DV_STR("error", zmq_strerror(errno)));
        goto fail;
    }
    int64_t mono = dv_mono_ms();
    for (int b = 0; b < cfg->nevents; b++) {
        s_link_t *l = &self->links[b];
        l->clients_ep = b < cfg->nbrokers ? cfg->brokers[b] : NULL;
        if (collector_state_add_broker(self->state, cfg->events[b],
                                       l->clients_ep) != b)
            goto fail;
        self->nlinks++;
        l->sub = s_socket(self, ZMQ_SUB);
        int hwm = cfg->events_hwm > 0 ? cfg->events_hwm : 1000;
        if (l->sub)
            zmq_setsockopt(l->sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
        if (!l->sub || zmq_setsockopt(l->sub, ZMQ_SUBSCRIBE, "", 0) != 0) {
            dv_log(DV_ERROR, "collector.connect_failed",
                   DV_STR("endpoint", cfg->events[b]),
                   DV_STR("error", zmq_strerror(errno)));
            goto fail;
        }
        if (s_connect(self, l->sub, cfg->events[b]) != 0)
            goto fail;
        if (l->clients_ep && s_dealer_open(self, l) != 0)
            goto fail;
        l->next_mono = mono;
        /* What the previous run saw last, to tell what it missed. */
        char inst[DV_NAME_MAX + 1];
        uint64_t seq;
        int64_t saved_ms = 0;
        if (collector_store_broker_load(self->store, cfg->events[b], inst,
                                        sizeof inst, &seq, &saved_ms) == 1) {
            collector_state_broker_known(self->state, b, inst, seq);
            /* What finished since then is read back at the first event. */
            l->last_ts = saved_ms;
        }
    }

    self->query.state = self->state;
    self->query.store = self->store;
    self->query.bind = cfg->bind;
    self->query.started_ms = now;
    if (cfg->http) {
        self->http =
            collector_http_new(cfg->http, &self->query, &cfg->http_access);
        if (!self->http)
            goto fail;
        snprintf(self->query.http, sizeof self->query.http, "%s",
                 collector_http_address(self->http));
    }

    self->nitems = 2 * self->nlinks + 2;
    self->items = calloc((size_t)self->nitems, sizeof *self->items);
    if (!self->items)
        goto fail;
    self->next_expire_mono = mono;
    self->next_tick_mono = mono + 10000;
    dv_log(DV_INFO, "collector.started", DV_STR("bind", cfg->bind),
           DV_STR("query_security", self->curve ? "curve" : "none"),
           DV_STR("http", self->http ? self->query.http : "off"),
           DV_BOOL("https", self->http && cfg->http_access.cert),
           DV_STR("http_auth", !self->http || !cfg->http_access.token ? "none"
                               : cfg->http_access.metrics_token       ? "all"
                                                                      : "api"),
           DV_STR("store", cfg->store), DV_INT("brokers", self->nlinks),
           DV_INT("retention_s", cfg->retention_ms / 1000),
           DV_INT("snapshot_ms", cfg->snapshot_ms),
           DV_STR("broker_security", cfg->curve.on ? "curve" : "none"));
    return self;
fail:
    collector_destroy(&self);
    return NULL;
}

void
collector_destroy(collector_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    collector_t *self = *self_p;
    collector_http_destroy(&self->http);
    for (int b = 0; b < COLLECTOR_BROKERS_MAX; b++) {
        if (self->links[b].sub)
            zmq_close(self->links[b].sub);
        if (self->links[b].dealer)
            zmq_close(self->links[b].dealer);
    }
    if (self->router)
        zmq_close(self->router);
    dv_curve_server_destroy(&self->curve);
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    collector_store_close(&self->store);
    collector_state_destroy(&self->state);
    collector_backfill_destroy(&self->backfill);
    free(self->items);
    dv_curve_client_wipe(&self->cfg.curve);
    free(self);
    *self_p = NULL;
}

/* ---- events -------------------------------------------------------------- */

/* Reads one multipart message into body (the last frame). Returns 1 with
 * body filled (caller closes it), 0 if nothing is waiting. */
static int
s_recv_last(void *socket, zmq_msg_t *body)
{
    zmq_msg_init(body);
    if (zmq_msg_recv(body, socket, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(body);
        return 0;
    }
    while (zmq_msg_more(body)) {
        zmq_msg_close(body);
        zmq_msg_init(body);
        zmq_msg_recv(body, socket, 0);
    }
    return 1;
}

static void
s_log_gap(const char *endpoint, const char *instance, uint64_t from,
          uint64_t to, uint64_t missed, int runs, const char *why)
{
    dv_log(DV_WARN, "collector.gap", DV_STR("broker", endpoint),
           DV_STR("instance", instance), DV_INT("from", from), DV_INT("to", to),
           DV_INT("missed", missed), DV_INT("runs", runs), DV_STR("why", why));
}

/* Logs the gaps broker b had this pass, if any, and the events it could
 * not apply in full. */
static void
s_flush_gaps(collector_t *self, int b)
{
    s_link_t *l = &self->links[b];
    if (l->partial) {
        dv_log(DV_WARN, "collector.event_incomplete",
               DV_STR("broker", self->cfg.events[b]),
               DV_INT("seq", l->partial_seq), DV_INT("events", l->partial),
               DV_STR("error", "out of memory; a snapshot will repair it"));
        l->partial = 0;
    }
    if (!l->gap_runs)
        return;
    s_log_gap(self->cfg.events[b],
              collector_state_broker_instance(self->state, b), l->gap_from,
              l->gap_to, l->gap_missed, l->gap_runs,
              "events were dropped on the way (slow subscriber or network)");
    l->gap_runs = 0;
    l->gap_missed = 0;
}

static void
s_on_event(collector_t *self, int b, const dv_event_t *ev, int64_t now,
           const collector_store_fold_t *fold)
{
    s_link_t *l = &self->links[b];
    const char *ep = self->cfg.events[b];
    char prev[DV_NAME_MAX + 1];
    snprintf(prev, sizeof prev, "%s",
             collector_state_broker_instance(self->state, b));
    uint64_t from, to;
    collector_seq_t r = collector_state_seq(self->state, b, ev, &from, &to);
    const char *inst = collector_state_broker_instance(self->state, b);
    switch (r) {
    case COLLECTOR_SEQ_OLD:
        dv_log(DV_DEBUG, "collector.event_old", DV_STR("broker", ep),
               DV_INT("seq", ev->seq));
        return;
    case COLLECTOR_SEQ_FIRST:
        dv_log(DV_INFO, "collector.broker_heard", DV_STR("broker", ep),
               DV_STR("instance", inst), DV_INT("seq", ev->seq));
        break;
    case COLLECTOR_SEQ_GAP:
        if (!prev[0]) {
            s_log_gap(ep, inst, from, to, to - from + 1, 1,
                      "events came while the collector was not running");
            break;
        }
        if (!l->gap_runs++)
            l->gap_from = from;
        l->gap_to = to;
        l->gap_missed += to - from + 1;
        break;
    case COLLECTOR_SEQ_RESTART:
        dv_log(DV_WARN, "collector.broker_restarted", DV_STR("broker", ep),
               DV_STR("instance", inst), DV_STR("previous", prev),
               DV_INT("seq", ev->seq));
        if (to >= from && to > 0)
            s_log_gap(ep, inst, from, to, to - from + 1, 1,
                      "the broker restarted");
        break;
    case COLLECTOR_SEQ_OK:
        break;
    }
    if ((r == COLLECTOR_SEQ_GAP || r == COLLECTOR_SEQ_RESTART) && l->req)
        l->again = true; /* the answer in flight may predate the gap */
    /* Jobs that finished in the gap are read back from the broker's store
     * (after the collector itself was away too: from its last commit). */
    if ((r == COLLECTOR_SEQ_GAP || r == COLLECTOR_SEQ_RESTART) && l->last_ts &&
        l->clients_ep)
        collector_backfill_gap(self->backfill, b, l->last_ts, ev->ts_ms);
    if (ev->ts_ms > l->last_ts)
        l->last_ts = ev->ts_ms;
    int64_t run_ms = 0;
    if (collector_state_apply(self->state, b, ev, now, &run_ms) != 0 &&
        !l->partial++)
        l->partial_seq = ev->seq;
    /* A success that carries its start (no job.started was sent) is
     * written as a start folded into its end. */
    collector_store_fold_t own;
    if (ev->kind_enum == DV_EV_JOB_SUCCEEDED && ev->started_ms > 0 &&
        !(fold && fold->started)) {
        own = (collector_store_fold_t){ .started = true,
                                        .started_ms = ev->started_ms,
                                        .wait_ms = ev->wait_ms };
        fold = &own;
    }
    collector_store_event_fold(self->store, ep, ev, run_ms, fold);
    l->dirty = true;
}

static bool
s_same_id(dv_str_t a, dv_str_t b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

static uint32_t
s_id_hash(dv_str_t id)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < id.len; i++)
        h = (h ^ (unsigned char)id.ptr[i]) * 16777619u;
    return h;
}

/* The folds of a batch (collector_store_fold_t): each job.started whose
 * attempt ends (job.succeeded or job.failed) later in the batch, with
 * nothing but progress of that job in between, is written with its end.
 * Returns an array of n (free it), or NULL when there is nothing to fold
 * or no memory (then every event is written on its own). */
static collector_store_fold_t *
s_folds(const dv_event_t *evs, uint32_t n)
{
    uint32_t size = 16;
    while (size < 2 * n)
        size *= 2;
    /* slot: 1 + the index of the job's event that opened it, 0 empty;
     * open: that event is a job.started still waiting for its end */
    struct {
        uint32_t at;
        bool open;
    } *slot = calloc(size, sizeof *slot);
    collector_store_fold_t *fold = calloc(n, sizeof *fold);
    if (!slot || !fold) {
        free(slot);
        free(fold);
        return NULL;
    }
    bool any = false;
    for (uint32_t i = 0; i < n; i++) {
        const dv_event_t *ev = &evs[i];
        if (!ev->id.ptr || ev->id.len == 0 ||
            ev->kind_enum == DV_EV_JOB_PROGRESS)
            continue;
        uint32_t k = s_id_hash(ev->id) & (size - 1);
        while (slot[k].at && !s_same_id(evs[slot[k].at - 1].id, ev->id))
            k = (k + 1) & (size - 1);
        bool end = ev->kind_enum == DV_EV_JOB_SUCCEEDED ||
                   ev->kind_enum == DV_EV_JOB_FAILED;
        if (end && slot[k].at && slot[k].open) {
            const dv_event_t *st = &evs[slot[k].at - 1];
            if (st->attempt == ev->attempt) {
                fold[slot[k].at - 1].history_only = true;
                fold[i].started = true;
                fold[i].started_ms = st->ts_ms;
                fold[i].wait_ms = st->wait_ms;
                any = true;
            }
        }
        slot[k].at = i + 1;
        slot[k].open = ev->kind_enum == DV_EV_JOB_STARTED;
    }
    free(slot);
    if (!any) {
        free(fold);
        return NULL;
    }
    return fold;
}

static void
s_on_events(collector_t *self, int b, const dv_event_t *evs, uint32_t n,
            int64_t now)
{
    collector_store_fold_t *fold = n > 1 ? s_folds(evs, n) : NULL;
    for (uint32_t i = 0; i < n; i++)
        s_on_event(self, b, &evs[i], now, fold ? &fold[i] : NULL);
    free(fold);
}

static int
s_drain_events(collector_t *self, int b, int64_t now)
{
    s_link_t *l = &self->links[b];
    int n = 0;
    while (n < S_EVENTS_PER_PASS) {
        zmq_msg_t body;
        if (!s_recv_last(l->sub, &body))
            break;
        n++;
        dv_msg_t msg;
        char why[256];
        int rc = dv_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), &msg,
                               why, sizeof why);
        if (rc == DV_OK && msg.type == DV_MSG_EVENTS) {
            s_on_events(self, b, msg.u.events.events, msg.u.events.nevents,
                        now);
            n += (int)msg.u.events.nevents - 1;
        } else if (rc == DV_OK && msg.type == DV_MSG_EVENT)
            s_on_events(self, b, &msg.u.event, 1, now);
        else
            dv_log(DV_WARN, "collector.bad_event",
                   DV_STR("broker", self->cfg.events[b]),
                   DV_STR("error", rc != DV_OK ? why : "not an event"));
        dv_msg_release(&msg);
        zmq_msg_close(&body);
    }
    return n;
}

/* ---- snapshots ----------------------------------------------------------- */

static void
s_request_snapshot(collector_t *self, int b, int64_t mono)
{
    s_link_t *l = &self->links[b];
    dv_msg_t m = { .type = DV_MSG_CTRL };
    m.u.ctrl.req = ++self->next_req;
    m.u.ctrl.verb = dv_str("status");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (dv_msg_encode(&m, &sb) == DV_OK &&
        zmq_send(l->dealer, sb.data, sb.size, ZMQ_DONTWAIT) >= 0) {
        l->req = m.u.ctrl.req;
        l->sent_mono = mono;
        l->again = false;
    } else {
        l->next_mono = l->retry_mono = mono + S_RETRY_MS;
    }
    msgpack_sbuffer_destroy(&sb);
}

static void
s_broker_failed(collector_t *self, int b, const char *why, int64_t mono)
{
    s_link_t *l = &self->links[b];
    if (!l->down)
        dv_log(DV_WARN, "collector.broker_unreachable",
               DV_STR("broker", l->clients_ep), DV_STR("error", why));
    l->down = true;
    collector_state_broker_answer(self->state, b, false, dv_now_ms(), why);
    l->req = 0;
    l->next_mono = l->retry_mono = mono + S_RETRY_MS;
}

static void
s_on_snapshot_answer(collector_t *self, int b, const dv_msg_t *msg,
                     int64_t mono)
{
    s_link_t *l = &self->links[b];
    uint64_t req =
        msg->type == DV_MSG_REPLY ? msg->u.reply.req : msg->u.error.req;
    if (!l->req || req != l->req)
        return; /* an answer we gave up waiting for */
    char why[512];
    if (msg->type == DV_MSG_ERROR || !msg->u.reply.ok) {
        dv_str_t r = msg->type == DV_MSG_ERROR ? msg->u.error.reason
                                               : msg->u.reply.error;
        dv_code_t code =
            msg->type == DV_MSG_ERROR ? msg->u.error.code : msg->u.reply.code;
        snprintf(why, sizeof why, "status refused (%s): %.*s",
                 dv_code_name(code), (int)r.len, r.ptr ? r.ptr : "");
        s_broker_failed(self, b, why, mono);
        return;
    }
    if (!msg->u.reply.body.ptr) {
        s_broker_failed(self, b, "status answer without a snapshot", mono);
        return;
    }
    dv_status_t st;
    char decode_why[256];
    int rc = dv_status_decode(msg->u.reply.body.ptr, msg->u.reply.body.len, &st,
                              decode_why, sizeof decode_why);
    if (rc == DV_ENOMEM) {
        /* Not the broker's fault: ask again after a pause. */
        dv_log(DV_WARN, "collector.snapshot_incomplete",
               DV_STR("broker", self->cfg.events[b]),
               DV_STR("error", "out of memory"));
        l->req = 0;
        l->next_mono = l->retry_mono = mono + S_RETRY_MS;
        return;
    }
    if (rc != DV_OK) {
        snprintf(why, sizeof why, "status answer does not decode: %s",
                 decode_why);
        s_broker_failed(self, b, why, mono);
        return;
    }
    int64_t now = dv_now_ms();
    bool was_synced = !collector_state_wants_snapshot(self->state, b);
    rc = collector_state_snapshot(self->state, b, &st, now);
    collector_state_broker_answer(self->state, b, true, now, NULL);
    if (l->down)
        dv_log(DV_INFO, "collector.broker_reachable",
               DV_STR("broker", l->clients_ep));
    if (rc == 0) {
        char inst[DV_NAME_MAX + 1];
        dv_log(was_synced ? DV_DEBUG : DV_INFO, "collector.resynced",
               DV_STR("broker", self->cfg.events[b]),
               DV_STR("instance",
                      st.broker.ptr ? dv_str_copy(st.broker, inst, sizeof inst)
                                    : NULL),
               DV_INT("seq", collector_state_broker_seq(self->state, b)));
    } else { /* the broker stays unsynced and is asked again after a pause */
        dv_log(DV_WARN, "collector.snapshot_incomplete",
               DV_STR("broker", self->cfg.events[b]),
               DV_STR("error", "out of memory"));
    }
    dv_status_release(&st);
    l->down = false;
    l->req = 0;
    l->next_mono = mono + self->cfg.snapshot_ms;
    if (rc != 0)
        l->retry_mono = mono + S_RETRY_MS;
    else if (l->again)
        l->next_mono = mono; /* a gap came after it was asked for */
    l->again = false;
}

/* An answer to a backfill page: what it added goes into the open group. */
static void
s_on_backfill_answer(collector_t *self, int b, const dv_msg_t *msg,
                     int64_t mono)
{
    int added = collector_backfill_answer(self->backfill, b, msg, self->store,
                                          self->state, self->cfg.events[b],
                                          dv_now_ms(), mono);
    if (added > 0 && !self->open_mono)
        self->open_mono = mono;
}

/* Sends the backfill pages due; returns ms until the next thing to do. */
static int64_t
s_backfill_requests(collector_t *self, int64_t mono)
{
    int64_t next = S_POLL_MAX_MS;
    for (int b = 0; b < self->nlinks; b++) {
        s_link_t *l = &self->links[b];
        if (!l->dealer)
            continue;
        int64_t t = collector_backfill_check(self->backfill, b, mono,
                                             self->cfg.timeout_ms, next);
        if (t < next)
            next = t;
        msgpack_sbuffer args;
        msgpack_sbuffer_init(&args);
        if (collector_backfill_due(self->backfill, b, mono, &args)) {
            dv_msg_t m = { .type = DV_MSG_CTRL };
            m.u.ctrl.req = ++self->next_req;
            m.u.ctrl.verb = dv_str("finished");
            m.u.ctrl.args = dv_strn(args.data, args.size);
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            bool sent =
                dv_msg_encode(&m, &sb) == DV_OK &&
                zmq_send(l->dealer, sb.data, sb.size, ZMQ_DONTWAIT) >= 0;
            msgpack_sbuffer_destroy(&sb);
            collector_backfill_sent(self->backfill, b, sent ? m.u.ctrl.req : 0,
                                    mono);
            int64_t due = collector_backfill_check(self->backfill, b, mono,
                                                   self->cfg.timeout_ms, next);
            if (due < next)
                next = due;
        }
        msgpack_sbuffer_destroy(&args);
    }
    return next;
}

static void
s_drain_snapshots(collector_t *self, int b, int64_t mono)
{
    s_link_t *l = &self->links[b];
    for (int n = 0; l->dealer && n < 16; n++) {
        zmq_msg_t body;
        if (!s_recv_last(l->dealer, &body))
            break;
        dv_msg_t msg;
        char why[256] = "not a reply";
        if (dv_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), &msg, why,
                          sizeof why) == DV_OK &&
            (msg.type == DV_MSG_REPLY || msg.type == DV_MSG_ERROR)) {
            uint64_t req =
                msg.type == DV_MSG_REPLY ? msg.u.reply.req : msg.u.error.req;
            if (collector_backfill_owns(self->backfill, b, req))
                s_on_backfill_answer(self, b, &msg, mono);
            else
                s_on_snapshot_answer(self, b, &msg, mono);
        } else
            dv_log(DV_WARN, "collector.bad_answer",
                   DV_STR("broker", l->clients_ep), DV_STR("error", why));
        dv_msg_release(&msg);
        zmq_msg_close(&body);
    }
}

/* Sends due requests, gives up on late ones. Returns ms until the next
 * thing to do here. */
static int64_t
s_snapshots(collector_t *self, int64_t mono)
{
    int64_t next = S_POLL_MAX_MS;
    for (int b = 0; b < self->nlinks; b++) {
        s_link_t *l = &self->links[b];
        if (!l->clients_ep)
            continue;
        if (!l->dealer && (mono < l->retry_mono || s_dealer_open(self, l))) {
            l->retry_mono = mono + S_RETRY_MS;
            continue;
        }
        if (l->req) {
            int64_t late = mono - l->sent_mono;
            if (late >= self->cfg.timeout_ms) {
                char why[128];
                snprintf(why, sizeof why, "no answer to status for %.1f s",
                         (double)late / 1000.0);
                s_broker_failed(self, b, why, mono);
                /* A fresh socket: drop what is queued for a dead peer. */
                zmq_close(l->dealer);
                l->dealer = NULL;
                if (s_dealer_open(self, l) != 0)
                    l->retry_mono = mono + S_RETRY_MS;
            } else if (self->cfg.timeout_ms - late < next) {
                next = self->cfg.timeout_ms - late;
            }
            continue;
        }
        bool want = collector_state_wants_snapshot(self->state, b);
        if (mono >= l->next_mono || (want && mono >= l->retry_mono)) {
            s_request_snapshot(self, b, mono);
            continue;
        }
        int64_t due = want ? l->retry_mono : l->next_mono;
        if (due - mono < next)
            next = due - mono;
    }
    return next < 0 ? 0 : next;
}

/* ---- queries ------------------------------------------------------------- */

/* Logs a reply that could not be built or queued: the peer (its routing
 * id in hex) and the request number; the peer's timeout covers the loss. */
static void
s_reply_dropped(zmq_msg_t *rid, uint64_t req, const char *why)
{
    char peer[2 * 32 + 1];
    const unsigned char *p = zmq_msg_data(rid);
    size_t n = zmq_msg_size(rid);
    if (n > 32)
        n = 32;
    for (size_t i = 0; i < n; i++)
        snprintf(peer + 2 * i, 3, "%02x", p[i]);
    peer[2 * n] = '\0';
    dv_log(DV_WARN, "collector.reply_dropped", DV_STR("peer", peer),
           DV_INT("req", req), DV_STR("error", why));
}

static void
s_send_reply(collector_t *self, zmq_msg_t *rid, uint64_t req, const dv_msg_t *m)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (dv_msg_encode(m, &sb) == DV_OK) {
        zmq_msg_t id;
        zmq_msg_init(&id);
        zmq_msg_copy(&id, rid);
        if (zmq_msg_send(&id, self->router, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            zmq_send(self->router, sb.data, sb.size, ZMQ_DONTWAIT) < 0)
            s_reply_dropped(rid, req, zmq_strerror(errno));
        zmq_msg_close(&id);
    } else {
        s_reply_dropped(rid, req, "out of memory");
    }
    msgpack_sbuffer_destroy(&sb);
}

/* Refuses a request: a reply (ok false) to a ctrl, else an error, with
 * code and the reason why. */
static void
s_reply_error(collector_t *self, zmq_msg_t *rid, uint64_t req, bool ctrl,
              dv_code_t code, const char *why)
{
    dv_msg_t m = { .type = ctrl ? DV_MSG_REPLY : DV_MSG_ERROR };
    if (ctrl) {
        m.u.reply.req = req;
        m.u.reply.ok = false;
        m.u.reply.error = dv_str(why);
        m.u.reply.code = code;
    } else {
        m.u.error.req = req;
        m.u.error.reason = dv_str(why);
        m.u.error.version = DV_PROTO_VERSION;
        m.u.error.code = code;
    }
    s_send_reply(self, rid, req, &m);
}

/* The largest array member of body (where long listings are). */
static json_t *
s_largest_array(json_t *body, const char **key_out)
{
    const char *key;
    json_t *v, *best = NULL;
    json_object_foreach(body, key, v)
    {
        if (json_is_array(v) &&
            (!best || json_array_size(v) > json_array_size(best))) {
            best = v;
            *key_out = key;
        }
    }
    return best;
}

/* Encodes body as msgpack, shortening its longest listing until it fits
 * in one reply (DV_PAYLOAD_MAX); the answer then says "truncated". */
static char *
s_encode_body(json_t *body, size_t *len)
{
    for (int round = 0; round < 24; round++) {
        char *mp = dv_json_to_msgpack(body, len);
        if (!mp || *len <= DV_PAYLOAD_MAX - 64)
            return mp;
        free(mp);
        const char *key = NULL;
        json_t *a = s_largest_array(body, &key);
        size_t n = json_array_size(a);
        if (!a || n == 0)
            return NULL;
        size_t keep = n / 2;
        while (json_array_size(a) > keep)
            json_array_remove(a, json_array_size(a) - 1);
        json_object_set_new(body, "truncated", json_true());
    }
    return NULL;
}

/* The verbs a client key may ask the collector: the fleet's totals. The
 * others (jobs, job, batch, running) show every client's jobs; a client's
 * own jobs are the broker's to show. */
static bool
s_client_verb(const dv_msg_t *msg)
{
    static const char *const totals[] = { "status", "workers",    "queues",
                                          "keys",   "fleet_keys", "health",
                                          NULL };
    for (int i = 0; totals[i]; i++)
        if (dv_str_eq(msg->u.ctrl.verb, totals[i]))
            return true;
    return false;
}

/* Whether the sender of body may query: with CurveZMQ, the roles operator
 * and observer anything (every verb is read-only), a client the totals
 * only; a worker key, or one removed from the lists since it connected,
 * gets not_allowed, logged once. */
static bool
s_may_query(collector_t *self, zmq_msg_t *rid, zmq_msg_t *body)
{
    if (!self->curve)
        return true;
    char name[128], key[DV_CURVE_KEY_SIZE];
    dv_role_t role = dv_curve_peer(self->curve, body, name, sizeof name, key);
    if (role == DV_ROLE_OPERATOR || role == DV_ROLE_OBSERVER)
        return true;
    dv_msg_t msg;
    bool ctrl = dv_msg_decode(zmq_msg_data(body), zmq_msg_size(body), &msg,
                              NULL, 0) == DV_OK &&
                msg.type == DV_MSG_CTRL;
    uint64_t req = ctrl ? msg.u.ctrl.req : 0;
    char verb[DV_NAME_MAX + 1] = "query";
    if (ctrl)
        dv_str_copy(msg.u.ctrl.verb, verb, sizeof verb);
    bool totals = ctrl && s_client_verb(&msg);
    dv_msg_release(&msg);
    if (role == DV_ROLE_CLIENT && (!ctrl || totals))
        return true; /* a message that is no query is refused as such */
    char why[512];
    if (role == DV_ROLE_NONE)
        snprintf(why, sizeof why,
                 "key no longer allowed: it was removed from the "
                 "allow-lists");
    else if (role == DV_ROLE_CLIENT)
        snprintf(why, sizeof why,
                 "a client key may ask the collector for totals only "
                 "(status, workers, queues, keys, fleet_keys, health): '%s' "
                 "shows every client's jobs; a client's own jobs are the "
                 "broker's to show (drover job ID, drover wait)",
                 verb);
    else
        snprintf(why, sizeof why, "role %s may not query the collector",
                 dv_role_name(role));
    /* Logged once per key (a client's, once per verb). */
    if (dv_curve_server_first_refusal(self->curve, key,
                                      role == DV_ROLE_CLIENT ? verb : "query"))
        dv_log(DV_WARN, "collector.not_allowed",
               DV_STR("role", dv_role_name(role)), DV_STR("name", name),
               DV_STR("key", key), DV_STR("verb", verb), DV_STR("reason", why));
    s_reply_error(self, rid, req, ctrl, DV_CODE_DENIED, why);
    return false;
}

static void
s_on_query(collector_t *self, zmq_msg_t *rid, const void *data, size_t size)
{
    dv_msg_t msg;
    char why[512];
    int rc = dv_msg_decode(data, size, &msg, why, sizeof why);
    if (rc != DV_OK) {
        dv_log(DV_WARN, "collector.bad_query", DV_STR("error", why));
        s_reply_error(self, rid, msg.type == DV_MSG_CTRL ? msg.u.ctrl.req : 0,
                      false, dv_code_from_err(rc), why);
        dv_msg_release(&msg);
        return;
    }
    if (msg.type != DV_MSG_CTRL) {
        snprintf(why, sizeof why,
                 "the collector answers ctrl messages only, not %s",
                 dv_msg_type_name(msg.type));
        s_reply_error(self, rid, 0, false, DV_CODE_UNKNOWN_TYPE, why);
        dv_msg_release(&msg);
        return;
    }
    const dv_ctrl_t *c = &msg.u.ctrl;
    char verb[DV_NAME_MAX + 1];
    dv_str_copy(c->verb, verb, sizeof verb);
    json_t *args = NULL;
    if (c->args.ptr) {
        args = dv_msgpack_to_json(c->args.ptr, c->args.len, why, sizeof why);
        if (!json_is_object(args)) {
            json_decref(args);
            s_reply_error(self, rid, c->req, true, DV_CODE_INVALID_ARGUMENT,
                          "args: must be a map of arguments");
            dv_msg_release(&msg);
            return;
        }
    } else {
        args = json_object();
    }
    rc = args ? 0 : -1;
    if (c->id.ptr)
        rc |=
            json_object_set_new(args, "id", json_stringn(c->id.ptr, c->id.len));
    if (c->queue.ptr && !json_object_get(args, "queue"))
        rc |= json_object_set_new(args, "queue",
                                  json_stringn(c->queue.ptr, c->queue.len));
    if (c->worker.ptr && !json_object_get(args, "worker"))
        rc |= json_object_set_new(args, "worker",
                                  json_stringn(c->worker.ptr, c->worker.len));
    if (rc) {
        json_decref(args);
        s_reply_error(self, rid, c->req, true, DV_CODE_NO_MEMORY,
                      "out of memory");
        dv_msg_release(&msg);
        return;
    }
    dv_code_t code;
    json_t *body = collector_query_run(&self->query, verb, args, dv_now_ms(),
                                       &code, why, sizeof why);
    json_decref(args);
    if (!body) {
        s_reply_error(self, rid, c->req, true, code, why);
        dv_msg_release(&msg);
        return;
    }
    size_t len = 0;
    char *mp = s_encode_body(body, &len);
    json_decref(body);
    if (!mp) {
        s_reply_error(self, rid, c->req, true, DV_CODE_INTERNAL,
                      "answer too large or not encodable");
    } else {
        dv_msg_t m = { .type = DV_MSG_REPLY };
        m.u.reply.req = c->req;
        m.u.reply.ok = true;
        m.u.reply.body = dv_strn(mp, len);
        s_send_reply(self, rid, c->req, &m);
        free(mp);
    }
    dv_msg_release(&msg);
}

static void
s_drain_queries(collector_t *self)
{
    for (int n = 0; n < S_QUERIES_PER_PASS; n++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, self->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            return;
        }
        int frames = 0;
        zmq_msg_init(&body);
        while (zmq_msg_more(frames ? &body : &rid)) {
            zmq_msg_close(&body);
            zmq_msg_init(&body);
            zmq_msg_recv(&body, self->router, 0);
            frames++;
        }
        if (frames != 1)
            s_reply_error(self, &rid, 0, false, DV_CODE_MALFORMED,
                          "expected exactly one frame after the routing id");
        else if (s_may_query(self, &rid, &body))
            s_on_query(self, &rid, zmq_msg_data(&body), zmq_msg_size(&body));
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
}

/* ---- loop ---------------------------------------------------------------- */

static void
s_dump(collector_t *self)
{
    dv_log(DV_INFO, "collector.dump_collector",
           DV_STR("store", collector_store_path(self->store)),
           DV_STR("bind", self->cfg.bind),
           DV_STR("http", self->http ? self->query.http : "off"));
    collector_state_dump(self->state, dv_now_ms());
}

void
collector_set_reload_flag(collector_t *self, volatile int *reload)
{
    self->reload = reload;
}

/* SIGHUP: the query socket's certificate and allow-lists again; on failure
 * the old ones stay. */
static void
s_reload(collector_t *self)
{
    if (!self->curve) {
        dv_log(DV_INFO, "collector.reload_skipped",
               DV_STR("reason", "no CurveZMQ on the query socket: nothing to "
                                "reload"));
        return;
    }
    char err[512] = "";
    if (dv_curve_server_reload(self->curve, err, sizeof err) != 0) {
        dv_log(DV_ERROR, "collector.curve_reload_failed", DV_STR("error", err),
               DV_STR("kept", "the lists loaded before"));
        return;
    }
    dv_log(DV_INFO, "collector.curve_reloaded",
           DV_INT("keys", (int64_t)dv_curve_server_keys(self->curve)));
}

/* Ends the open group of history writes: the brokers' last sequence
 * numbers go with it, then the commit. */
static void
s_commit(collector_t *self)
{
    for (int b = 0; b < self->nlinks; b++) {
        s_link_t *l = &self->links[b];
        if (!l->dirty)
            continue;
        l->dirty = false;
        collector_store_broker_save(
            self->store, self->cfg.events[b],
            collector_state_broker_instance(self->state, b),
            collector_state_broker_seq(self->state, b));
    }
    self->open_mono = 0;
    /* A store that stays away (a PostgreSQL server down) fails every
     * commit: one line when it starts, one when it ends. */
    if (collector_store_commit(self->store) != 0) {
        dv_log(self->failed_passes++ ? DV_DEBUG : DV_ERROR,
               "collector.store_commit_failed");
    } else if (self->failed_passes) {
        dv_log(DV_INFO, "collector.store_commit_recovered",
               DV_INT("failed_passes", self->failed_passes));
        self->failed_passes = 0;
    }
}

static int64_t
s_timers(collector_t *self, int64_t mono)
{
    if (mono >= self->next_expire_mono) {
        s_commit(self); /* expiry runs in a transaction of its own */
        int64_t cutoff = dv_now_ms() - self->cfg.retention_ms;
        int n = collector_store_expire(self->store, cutoff, S_EXPIRE_ROWS);
        if (n > 0)
            dv_log(DV_INFO, "collector.expired", DV_INT("rows", n),
                   DV_INT("retention_s", self->cfg.retention_ms / 1000));
        self->next_expire_mono =
            mono + (n >= S_EXPIRE_ROWS ? 1000 : S_EXPIRE_EVERY_MS);
    }
    if (mono >= self->next_tick_mono) {
        collector_state_tick(self->state, dv_now_ms());
        self->next_tick_mono = mono + 10000;
    }
    int64_t a = self->next_expire_mono - mono, b = self->next_tick_mono - mono;
    return a < b ? a : b;
}

int
collector_run(collector_t *self, volatile int *stop, volatile int *dump)
{
    int n = 0;
    for (int b = 0; b < self->nlinks; b++)
        self->items[n++] =
            (zmq_pollitem_t){ self->links[b].sub, 0, ZMQ_POLLIN, 0 };
    int first_dealer = n;
    for (int b = 0; b < self->nlinks; b++)
        self->items[n++] = (zmq_pollitem_t){ NULL, -1, 0, 0 };
    self->items[n++] = (zmq_pollitem_t){ self->router, 0, ZMQ_POLLIN, 0 };
    if (self->http)
        self->items[n++] =
            (zmq_pollitem_t){ NULL, collector_http_fd(self->http), ZMQ_POLLIN,
                              0 };
    int nitems = n;
    int64_t timeout = 0;
    int64_t events_mono = 0; /* no reading of events before this */
    while (!*stop) {
        int64_t m0 = dv_mono_ms();
        for (int b = 0; b < self->nlinks; b++)
            self->items[b].events = m0 >= events_mono ? ZMQ_POLLIN : 0;
        if (m0 < events_mono && events_mono - m0 < timeout)
            timeout = events_mono - m0;
        /* Dealers are recreated after a timeout: refresh their slots. */
        for (int b = 0; b < self->nlinks; b++) {
            zmq_pollitem_t *it = &self->items[first_dealer + b];
            it->socket = self->links[b].dealer;
            it->fd = -1;
            it->events = it->socket ? ZMQ_POLLIN : 0;
        }
        long t = (long)timeout;
        if (self->http) {
            long h = collector_http_timeout(self->http);
            if (h >= 0 && h < t)
                t = h;
        }
        int rc = zmq_poll(self->items, nitems, t);
        if (rc < 0 && errno != EINTR) {
            dv_log(DV_ERROR, "collector.poll_failed",
                   DV_STR("error", zmq_strerror(errno)));
            return -1;
        }
        int64_t now = dv_now_ms();
        bool more = false;
        if (dv_mono_ms() >= events_mono) {
            int got = 0;
            for (int b = 0; b < self->nlinks; b++) {
                int k = s_drain_events(self, b, now);
                got += k;
                if (k >= S_EVENTS_PER_PASS)
                    more = true;
            }
            if (got && !more)
                events_mono = dv_mono_ms() + S_EVENTS_EVERY_MS;
        }
        for (int b = 0; b < self->nlinks; b++)
            s_flush_gaps(self, b);
        int64_t mono = dv_mono_ms();
        for (int b = 0; b < self->nlinks && !self->open_mono; b++)
            if (self->links[b].dirty)
                self->open_mono = mono;
        if (self->open_mono && mono - self->open_mono >= S_COMMIT_MS)
            s_commit(self);
        for (int b = 0; b < self->nlinks; b++)
            s_drain_snapshots(self, b, mono);
        int64_t next = s_snapshots(self, mono);
        int64_t bnext = s_backfill_requests(self, mono);
        if (bnext < next)
            next = bnext;
        s_drain_queries(self);
        if (self->http)
            collector_http_run(self->http);
        int64_t tnext = s_timers(self, mono);
        if (tnext < next)
            next = tnext;
        if (*dump) {
            *dump = 0;
            s_dump(self);
        }
        if (self->reload && *self->reload) {
            *self->reload = 0;
            s_reload(self);
        }
        if (self->open_mono && self->open_mono + S_COMMIT_MS - mono < next)
            next = self->open_mono + S_COMMIT_MS - mono;
        timeout = more ? 0 : next > S_POLL_MAX_MS ? S_POLL_MAX_MS : next;
        if (timeout < 0)
            timeout = 0;
    }
    s_commit(self);
    dv_log(DV_INFO, "collector.stopping",
           DV_INT("events", collector_state_events_total(self->state)));
    return 0;
}
