/* broker_core - the broker's one event loop, and its life cycle.
 *
 * One thread owns everything. Each pass of the loop:
 *   1. waits on the two ROUTER sockets and the writer's and the reader's
 *      eventfds (or a timer: the next scheduled job, the next rate token,
 *      the heartbeat),
 *   2. sends what the writer made durable (broker_group.c), and answers
 *      the requests whose store reads came back (broker_reads.c),
 *   3. drains a bounded batch from the workers socket (broker_worker.c),
 *      then from the clients socket (broker_client.c, broker_ctrl.c) unless
 *      the group being built is already full; with CurveZMQ each message's
 *      sender role is checked first (broker_auth.c),
 *   4. promotes due scheduled jobs, heartbeats and expires workers, and
 *      dispatches ready jobs against worker credit (broker_sched.c),
 *   5. sends the pass's jobs to workers and hands its store writes to the
 *      writer thread (broker_group.c).
 *
 * Owns the sockets, the framing check of incoming messages (routing id and
 * exactly one body frame) and their decoding, and creation and teardown of
 * struct broker (broker_internal.h). Blocks only in zmq_poll, and at
 * shutdown while the last groups commit. Reads the store itself only at
 * start-up (recovery, queue settings), before it serves.
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "broker_ha.h"
#include "broker_internal.h"
#include "broker_schedule.h"
#include "dv_log.h"

/* Reads one ROUTER message: routing id + exactly one body frame. Returns 1
 * with body filled (caller closes it), 0 if nothing to read, -1 if a
 * malformed envelope was consumed. */
static int
s_recv(void *socket, broker_rid_t *rid, zmq_msg_t *body)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, socket, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return 0;
    }
    size_t rl = zmq_msg_size(&part);
    rid->len = (uint8_t)(rl > 255 ? 255 : rl);
    memcpy(rid->data, zmq_msg_data(&part), rid->len);
    int more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    if (!more)
        return -1;
    zmq_msg_init(body);
    zmq_msg_recv(body, socket, 0);
    int frames = 2;
    while (zmq_msg_more(body)) {
        /* Extra frames: drain them; the message is malformed. */
        zmq_msg_close(body);
        zmq_msg_init(body);
        zmq_msg_recv(body, socket, 0);
        frames++;
    }
    if (frames != 2) {
        zmq_msg_close(body);
        return -1;
    }
    return 1;
}

/* Handles one decoded message from a socket. */
typedef void(s_handler_fn)(broker_t *self, const broker_rid_t *rid,
                           const dv_msg_t *msg);

/* Whether the sender may send this message (broker_auth.c). */
typedef bool(s_auth_fn)(broker_t *self, const broker_rid_t *rid,
                        const broker_peer_t *peer, const dv_msg_t *msg);

/* Reads up to batch_max messages from a ROUTER socket, rejects malformed
 * ones with a reason, and those its sender's role may not send (auth), and
 * hands the rest to handler. Stops early once the current group holds
 * max_writes store writes (SIZE_MAX: no such limit). */
static void
s_drain(broker_t *self, void *socket, s_auth_fn *auth, s_handler_fn *handler,
        size_t max_writes)
{
    for (int n = 0; n < self->cfg.batch_max && self->cur->wb.nops < max_writes;
         n++) {
        broker_rid_t rid;
        zmq_msg_t body;
        int r = s_recv(socket, &rid, &body);
        if (r == 0)
            return;
        if (self->clock_on)
            broker_clock_tick(self);
        if (r < 0) {
            broker_out_bad_message(
                self, socket, &rid, DV_CODE_MALFORMED,
                "expected exactly one frame after the routing id "
                "(use a DEALER socket)");
            continue;
        }
        broker_peer_t peer = { DV_ROLE_NONE, "", "" };
        if (self->curve)
            peer.role = dv_curve_peer(self->curve, &body, peer.name,
                                      sizeof peer.name, peer.key);
        dv_msg_t msg;
        char why[256];
        int rc = dv_msg_decode(zmq_msg_data(&body), zmq_msg_size(&body), &msg,
                               why, sizeof why);
        if (rc != DV_OK)
            broker_out_bad_message(self, socket, &rid, dv_code_from_err(rc),
                                   why);
        else if (auth(self, &rid, &peer, &msg)) {
            self->sender = self->curve ? &peer : NULL;
            handler(self, &rid, &msg);
            self->sender = NULL;
        }
        dv_msg_release(&msg);
        zmq_msg_close(&body);
    }
}

/* ---- life cycle ------------------------------------------------------------------ */

static void
s_queue_free(void *item)
{
    broker_queue_t *q = item;
    broker_queue_destroy(&q);
}

static void *
s_bind(broker_t *self, int type, const char *ep, const char *what)
{
    void *s = zmq_socket(self->zctx, type);
    int hwm = 1000000, linger = 500;
    int64_t maxmsg = DV_MSG_MAX;
    /* Events: a subscriber that falls this far behind loses messages (the
     * broker never waits for one); a message is a group's job events, so
     * the queue stays small in bytes and still spans seconds. */
    if (type == ZMQ_PUB)
        hwm = self->cfg.events_hwm > 0 ? self->cfg.events_hwm : 1000;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (type == ZMQ_ROUTER) {
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        int on = 1;
        zmq_setsockopt(s, ZMQ_ROUTER_HANDOVER, &on, sizeof on);
    }
    /* A ZAP domain per socket. Any listed key may connect to the ROUTERs,
     * where each message's role is checked and a refusal is answered;
     * the PUB socket cannot refuse a message, so only the roles that may
     * read events connect to it: operators and observers. Not clients:
     * events carry every job's id and outcome, and a client reads only
     * its own jobs. */
    unsigned roles = 0;
    if (type == ZMQ_PUB)
        roles = DV_ROLE_BIT(DV_ROLE_OPERATOR) | DV_ROLE_BIT(DV_ROLE_OBSERVER);
    char domain[32];
    snprintf(domain, sizeof domain, "drover.%s", what);
    if (self->curve &&
        dv_curve_server_socket(self->curve, s, domain, roles) != 0) {
        dv_log(DV_ERROR, "broker.bind_failed", DV_STR("socket", what),
               DV_STR("endpoint", ep), DV_STR("error", zmq_strerror(errno)));
        zmq_close(s);
        return NULL;
    }
    if (zmq_bind(s, ep) != 0) {
        dv_log(DV_ERROR, "broker.bind_failed", DV_STR("socket", what),
               DV_STR("endpoint", ep), DV_STR("error", zmq_strerror(errno)));
        zmq_close(s);
        return NULL;
    }
    char actual[256];
    size_t al = sizeof actual;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, actual, &al);
    dv_log(DV_INFO, "broker.listening", DV_STR("socket", what),
           DV_STR("endpoint", actual), DV_BOOL("curve", self->curve != NULL));
    return s;
}

broker_t *
broker_core_open(const broker_config_t *cfg)
{
    return broker_core_open_at(cfg, NULL);
}

/* The key ledger's lines to a worker leave at once (grants are small and
 * short-lived: holding them for the group would only shorten their life). */
static void
s_keys_send(void *arg, void *worker, const dv_keyitem_t *items, uint32_t n)
{
    broker_t *self = arg;
    broker_worker_t *w = worker;
    dv_msg_t m = { .type = DV_MSG_KEYS };
    m.u.keys.items = (dv_keyitem_t *)items;
    m.u.keys.nitems = n;
    if (broker_out_send_now(self->workers, &w->rid, &m) != 0)
        dv_log(DV_ERROR, "broker.keys_dropped", DV_STR("worker", w->name),
               DV_STR("error", "out of memory"));
}

/* A key's changed state goes into this pass's group. */
static void
s_keys_save(void *arg, const broker_key_state_t *st)
{
    broker_t *self = arg;
    if (broker_wbatch_key(&self->cur->wb, st) != 0)
        broker_write_lost(self);
}

/* The broker without its store: maps, the first group, the instance id. */
static broker_t *
s_alloc(const broker_config_t *cfg, const broker_clock_t *clock)
{
    broker_t *self = calloc(1, sizeof *self);
    if (!self) {
        dv_log(DV_ERROR, "broker.start_failed",
               DV_STR("error", "out of memory"));
        return NULL;
    }
    self->cfg = *cfg;
    self->fake_clock = clock;
    dv_id_t iid;
    dv_id_new(&iid);
    dv_id_format(&iid, self->instance);
    self->started_ms = broker_now_ms(self);
    self->queues = dv_map_new(s_queue_free);
    self->types = dv_map_new(free);
    self->owner_ix = dv_map_new(free);
    self->worker_by_name = dv_map_new(NULL);
    self->pending_keys = dv_map_new(NULL); /* items owned by the groups */
    self->settling_tail = &self->settling;
    self->cur = broker_group_new();
    broker_keys_cfg_t kc = { .ttl_ms = cfg->key_grant_ttl_ms,
                             .probe_ms = cfg->key_probe_ms,
                             .send = s_keys_send,
                             .save = s_keys_save,
                             .arg = self };
    self->keys = broker_keys_new(&kc);
    if (!self->keys || !self->queues || !self->types || !self->owner_ix ||
        !self->worker_by_name || !self->pending_keys || !self->cur ||
        broker_index_init(&self->index) != 0) {
        dv_log(DV_ERROR, "broker.start_failed",
               DV_STR("error", "out of memory"));
        broker_destroy(&self);
        return NULL;
    }
    if (self->cfg.rejoin_ms <= 0) {
        self->cfg.rejoin_ms = 3 * self->cfg.heartbeat_ms;
        if (self->cfg.rejoin_ms < 500)
            self->cfg.rejoin_ms = 500;
    }
    return self;
}

/* The store's URL as it may be logged: without its password. */
static const char *
s_safe_url(const broker_t *self, char *buf, size_t size)
{
    return broker_store_redact_url(self->cfg.store_url, buf, size);
}

/* Opens the store, counts this start's generation, starts the writer and
 * the reader, recovers the unfinished jobs and the queue settings. A
 * broker of a group fences its writes with the generation. Returns 0, or
 * -1 after logging why. */
static int
s_open_store(broker_t *self)
{
    const broker_config_t *cfg = &self->cfg;
    char safe[512];
    s_safe_url(self, safe, sizeof safe);
    /* Three connections: the writer thread's, the reader thread's (the
     * reads that answer requests: idempotency keys, finished jobs, retry,
     * check), and this thread's for start-up (recovery, queue settings). */
    char err[512] = "";
    broker_store_opts_t opts = { cfg->sync };
    broker_store_t *wstore =
        broker_store_open(cfg->store_url, &opts, err, sizeof err);
    broker_store_t *rstore =
        wstore ? broker_store_open(cfg->store_url, &opts, err, sizeof err)
               : NULL;
    if (rstore)
        self->store = broker_store_open(cfg->store_url, &opts, err, sizeof err);
    if (!wstore || !rstore || !self->store) {
        dv_log(DV_ERROR, "broker.store_open_failed", DV_STR("store", safe),
               DV_STR("error", err));
        broker_store_destroy(&wstore);
        broker_store_destroy(&rstore);
        return -1;
    }
    int grc = broker_store_next_generation(self->store, &self->generation);
    if (grc == 0 && self->ha)
        grc = broker_store_fence(wstore, self->generation);
    if (grc != 0 || self->generation == 0 ||
        self->generation >= (UINT64_C(1) << (64 - DV_LEASE_COUNTER_BITS))) {
        dv_log(DV_ERROR, "broker.store_open_failed", DV_STR("store", safe),
               DV_STR("error", grc ? dv_strerror(grc)
                                   : "the store's generation is out of range"));
        broker_store_destroy(&wstore);
        broker_store_destroy(&rstore);
        return -1;
    }
    self->writer = broker_writer_new(wstore);
    if (!self->writer) {
        dv_log(DV_ERROR, "broker.start_failed",
               DV_STR("error", "the store writer thread did not start"));
        broker_store_destroy(&wstore);
        broker_store_destroy(&rstore);
        return -1;
    }
    self->reader = broker_reader_new(rstore);
    if (!self->reader) {
        dv_log(DV_ERROR, "broker.start_failed",
               DV_STR("error", "the store reader thread did not start"));
        broker_store_destroy(&rstore);
        return -1;
    }
    if (broker_deps_init(self) != 0) {
        dv_log(DV_ERROR, "broker.start_failed",
               DV_STR("error", "out of memory"));
        return -1;
    }
    if (broker_recover_jobs(self) != 0) {
        dv_log(DV_ERROR, "broker.recovery_failed", DV_STR("store", safe));
        return -1;
    }
    if (broker_recover_queues(self) != 0 || broker_recover_keys(self) != 0 ||
        broker_schedule_load(self) != 0 || broker_batch_recover(self) != 0)
        return -1;
    return 0;
}

broker_t *
broker_core_open_at(const broker_config_t *cfg, const broker_clock_t *clock)
{
    broker_t *self = s_alloc(cfg, clock);
    if (self && s_open_store(self) != 0)
        broker_destroy(&self);
    return self;
}

broker_t *
broker_new(const broker_config_t *cfg)
{
    /* Jobs live long and are small; a group's buffers are big and
     * short-lived: at full rate its events batch, ZeroMQ's copy of it and
     * its results pass 1 MiB. In mappings of their own (the threshold was
     * 1 MiB) every group faulted all their pages in afresh, a fifth of the
     * loop's time; from the heap they reuse the pages the group before
     * freed. A fixed threshold (glibc would otherwise move it as they come
     * and go) still keeps the exceptional ones, over 32 MiB, apart. The top
     * of the heap is given back only past 32 MiB free (glibc's default is
     * 128 KiB once the threshold is fixed): under load each group frees
     * what the next allocates again. After a big group the loop trims the
     * heap on purpose once it is idle (trim_when_idle). */
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
    broker_t *self = s_alloc(cfg, NULL);
    if (!self)
        return NULL;
    /* Several brokers may share a PostgreSQL store: one serves, holding
     * the group's lock; this one waits as a standby until it has it
     * (broker_run). One broker alone on a SQLite file opens it now. */
    if (broker_store_is_shared(cfg->store_url)) {
        char err[256] = "";
        broker_ha_opts_t ho = { .name = self->instance };
        self->ha = broker_ha_new(cfg->store_url, &ho, err, sizeof err);
        if (!self->ha) {
            dv_log(DV_ERROR, "broker.start_failed", DV_STR("error", err));
            broker_destroy(&self);
            return NULL;
        }
    } else if (s_open_store(self) != 0) {
        broker_destroy(&self);
        return NULL;
    }
    self->zctx = zmq_ctx_new();
    if (cfg->curve_secret) {
        dv_curve_config_t cc = { .secret_file = cfg->curve_secret };
        for (int r = 0; r < DV_ROLE_COUNT_; r++)
            cc.dirs[r] = cfg->curve_dirs[r];
        char err[512] = "";
        self->curve = dv_curve_server_new(self->zctx, &cc, err, sizeof err);
        if (!self->curve) {
            dv_log(DV_ERROR, "broker.curve_failed", DV_STR("error", err));
            broker_destroy(&self);
            return NULL;
        }
        size_t keys = dv_curve_server_keys(self->curve);
        dv_log(DV_INFO, "broker.curve", DV_INT("keys", (int64_t)keys));
        if (!keys)
            dv_log(DV_WARN, "broker.curve_no_keys",
                   DV_STR("why", "no key in any allow-list: every peer is "
                                 "refused until one is added (SIGHUP)"));
    }
    self->clients = s_bind(self, ZMQ_ROUTER, cfg->clients_ep, "clients");
    self->workers = s_bind(self, ZMQ_ROUTER, cfg->workers_ep, "workers");
    self->events = s_bind(self, ZMQ_PUB, cfg->events_ep, "events");
    if (!self->clients || !self->workers || !self->events) {
        broker_destroy(&self);
        return NULL;
    }
    char safe[512];
    if (self->ha)
        dv_log(DV_INFO, "broker.standby", DV_STR("broker", self->instance),
               DV_STR("store", s_safe_url(self, safe, sizeof safe)),
               DV_STR("until", "it holds the group's lock"));
    else
        dv_log(DV_INFO, "broker.started", DV_STR("broker", self->instance),
               DV_INT("generation", (int64_t)self->generation),
               DV_STR("store", s_safe_url(self, safe, sizeof safe)),
               DV_STR("backend", broker_store_backend(self->store)));
    return self;
}

void
broker_destroy(broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_t *self = *self_p;
    /* Reads first: those not done yet are answered "broker stopping", the
     * rest as usual (a submit's jobs are then written below); a check
     * still waiting for its group is answered too, so no group is held. */
    if (self->reader) {
        broker_reader_stop(self->reader);
        broker_reads_ready(self);
    }
    broker_check_stop(self);
    broker_group_drain_all(self);
    broker_writer_destroy(&self->writer);
    broker_reader_destroy(&self->reader);
    broker_self_free_all(self);
    broker_schedule_free_all(self);
    broker_batch_free_all(self);
    broker_deps_free(self);
    while (self->settling) {
        broker_pkey_t *k = self->settling;
        self->settling = k->next;
        free(k);
    }
    broker_group_destroy(&self->inflight);
    broker_group_destroy(&self->spare);
    if (self->cur) {
        /* Not written (the writer never ran): its ended jobs are freed
         * with the index below, their records with the group. */
        self->cur->ended = NULL;
        broker_group_destroy(&self->cur);
    }
    /* Free live jobs. */
    for (size_t i = 0; i < self->index.cap; i++) {
        broker_job_t *job = broker_index_at(&self->index, i);
        if (job)
            broker_job_destroy(&job);
    }
    broker_index_free(&self->index);
    broker_heap_free(&self->timers);
    broker_worker_t *w;
    DV_MAP_EACH(w, self->worker_by_name)
    {
        broker_worker_free(w);
    }
    dv_map_destroy(&self->worker_by_name);
    broker_keys_destroy(&self->keys);
    dv_map_destroy(&self->queues);
    dv_map_destroy(&self->types);
    dv_map_destroy(&self->owner_ix);
    free(self->owners);
    dv_map_destroy(&self->pending_keys);
    free(self->outq);
    free(self->leases);
    if (self->clients)
        zmq_close(self->clients);
    if (self->workers)
        zmq_close(self->workers);
    if (self->events)
        zmq_close(self->events);
    dv_curve_server_destroy(&self->curve);
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    broker_store_destroy(&self->store);
    broker_ha_destroy(&self->ha); /* last: frees the lock */
    free(self);
    *self_p = NULL;
}

void
broker_set_reload_flag(broker_t *self, volatile int *reload)
{
    self->reload = reload;
}

/* SIGHUP: the certificates and allow-lists again; on failure the old ones
 * stay. */
static void
s_reload(broker_t *self)
{
    if (!self->curve) {
        dv_log(DV_INFO, "broker.reload_skipped",
               DV_STR("reason", "no --curve-secret: nothing to reload"));
        return;
    }
    char err[512] = "";
    if (dv_curve_server_reload(self->curve, err, sizeof err) != 0) {
        dv_log(DV_ERROR, "broker.curve_reload_failed", DV_STR("error", err),
               DV_STR("kept", "the lists loaded before"));
        return;
    }
    dv_log(DV_INFO, "broker.curve_reloaded",
           DV_INT("keys", (int64_t)dv_curve_server_keys(self->curve)));
}

void
broker_dump(broker_t *self)
{
    dv_log(DV_INFO, "broker.dump", DV_STR("broker", self->instance),
           DV_INT("live_jobs", (int64_t)self->index.count),
           DV_INT("scheduled", (int64_t)self->timers.count),
           DV_INT("workers", (int64_t)dv_map_size(self->worker_by_name)),
           DV_INT("submitted", (int64_t)self->counters.submitted),
           DV_INT("succeeded", (int64_t)self->counters.succeeded),
           DV_INT("dead", (int64_t)self->counters.dead),
           DV_INT("event_seq", (int64_t)self->event_seq));
    broker_queue_t *q;
    DV_MAP_EACH(q, self->queues)
    {
        dv_log(DV_INFO, "broker.dump_queue", DV_STR("queue", q->name),
               DV_INT("queued", (int64_t)q->ready),
               DV_INT("scheduled", (int64_t)q->scheduled),
               DV_INT("running", (int64_t)q->running),
               DV_BOOL("paused", q->paused));
    }
    int64_t now = broker_mono_ms(self);
    broker_worker_t *w;
    DV_MAP_EACH(w, self->worker_by_name)
    {
        dv_log(DV_INFO, "broker.dump_worker", DV_STR("worker", w->name),
               DV_INT("credit", w->credit),
               DV_INT("running", (int64_t)w->running.count),
               DV_INT("silent_ms", now - w->last_seen_ms));
    }
}

static bool
s_has_ready_work(broker_t *self)
{
    if (!self->dispatch_needed)
        return false;
    broker_worker_t *w;
    DV_MAP_EACH(w, self->worker_by_name)
    {
        if (w->credit > 0)
            return true;
    }
    self->dispatch_needed = false;
    return false;
}

/* While one group commits (or waits for a check's scan), the next may
 * grow to this many writes; beyond that the broker stops reading new
 * submits until the disk catches up (they wait in ZeroMQ), so memory stays
 * bounded. */
#define BROKER_GROUP_MAX_WRITES 200000

/* A writer with nothing to do is given a group at once, however small: the
 * submits read in one pass stop at this many writes (a message or so). */
#define S_GROUP_START_WRITES 1000

/* How many store writes the current group may hold before this pass stops
 * reading submits (the rest wait in ZeroMQ for the next pass). Jobs are
 * dispatched once their group is durable, so a burst (a client with 32
 * messages of 1,000 jobs in flight) read whole into one group would leave
 * the workers idle while all of it commits: about a quarter of a second
 * for 32,000 jobs. Instead the first group is small, and each next one may
 * grow to twice the group being committed, up to BROKER_GROUP_MAX_WRITES:
 * the workers run the jobs of one group while the next, at most twice as
 * big, commits. */
static size_t
s_submit_room(const broker_t *self)
{
    if (broker_check_holding(self))
        return BROKER_GROUP_MAX_WRITES; /* the group waits for a scan */
    if (!self->inflight)
        return S_GROUP_START_WRITES;
    size_t room = 2 * self->inflight->wb.nops;
    if (room < S_GROUP_START_WRITES)
        room = S_GROUP_START_WRITES;
    return room < BROKER_GROUP_MAX_WRITES ? room : BROKER_GROUP_MAX_WRITES;
}

void
broker_step_down(broker_t *self, const char *why)
{
    if (self->step_down[0])
        return;
    snprintf(self->step_down, sizeof self->step_down, "%s", why);
    dv_log(DV_ERROR, "broker.stepping_down", DV_STR("broker", self->instance),
           DV_INT("generation", (int64_t)self->generation),
           DV_STR("reason", why),
           DV_STR("effect", "nothing more is committed or answered; it "
                            "starts again as a standby"));
}

/* The group's lock as a poll item (a raw fd), and the time its next step
 * is due. Returns whether there is an item. */
static bool
s_ha_item(broker_t *self, zmq_pollitem_t *it, long *timeout)
{
    bool w;
    int fd = broker_ha_fd(self->ha, &w);
    int64_t until = broker_ha_next(self->ha) - dv_mono_ms();
    if (until < *timeout)
        *timeout = until < 0 ? 0 : (long)until;
    if (fd < 0)
        return false;
    *it =
        (zmq_pollitem_t){ NULL, fd, (short)(w ? ZMQ_POLLOUT : ZMQ_POLLIN), 0 };
    return true;
}

/* A standby of a group: answers every request with code standby (status
 * says why), and asks for the group's lock until it holds it. Returns true
 * then, false when *stop came first. */
static bool
s_standby(broker_t *self, volatile int *stop, volatile int *dump)
{
    while (!*stop) {
        if (broker_ha_step(self->ha, dv_mono_ms()) == BROKER_HA_ACTIVE)
            return true;
        const char *e = broker_ha_error(self->ha);
        if (e[0])
            snprintf(self->standby_why, sizeof self->standby_why,
                     "cannot reach the store's lock: %s", e);
        else
            snprintf(self->standby_why, sizeof self->standby_why,
                     "another broker holds the store's lock");
        zmq_pollitem_t items[3] = {
            { self->clients, 0, ZMQ_POLLIN, 0 },
            { self->workers, 0, ZMQ_POLLIN, 0 },
        };
        long timeout = self->cfg.heartbeat_ms;
        int n = s_ha_item(self, &items[2], &timeout) ? 3 : 2;
        if (zmq_poll(items, n, timeout) < 0 && errno != EINTR)
            return false;
        if (self->reload && *self->reload) {
            *self->reload = 0;
            s_reload(self);
        }
        s_drain(self, self->clients, broker_auth_client,
                broker_standby_on_client, SIZE_MAX);
        s_drain(self, self->workers, broker_auth_worker,
                broker_standby_on_worker, SIZE_MAX);
        if (*dump) {
            *dump = 0;
            dv_log(DV_INFO, "broker.dump", DV_STR("broker", self->instance),
                   DV_STR("role", "standby"), DV_STR("why", self->standby_why),
                   DV_INT("refused", (int64_t)self->standby_refused));
        }
    }
    return false;
}

/* Lowers *timeout (ms) to until when that is sooner; a time already past
 * gives 0 (a negative timeout would make zmq_poll wait for ever). */
static void
s_sooner(long *timeout, int64_t until)
{
    if (until < *timeout)
        *timeout = until < 0 ? 0 : (long)until;
}

int
broker_run(broker_t *self, volatile int *stop, volatile int *dump)
{
    self->stop = stop;
    if (self->ha) {
        int64_t t0 = dv_mono_ms();
        if (!s_standby(self, stop, dump)) {
            dv_log(DV_INFO, "broker.stopping", DV_STR("role", "standby"));
            return 0;
        }
        /* Ours now: recover from the store (a broker that held it before
         * may have died mid-batch) and serve. */
        if (s_open_store(self) != 0)
            return -1;
        char safe[512];
        dv_log(DV_INFO, "broker.started", DV_STR("broker", self->instance),
               DV_STR("role", "active"),
               DV_INT("generation", (int64_t)self->generation),
               DV_STR("store", s_safe_url(self, safe, sizeof safe)),
               DV_STR("backend", broker_store_backend(self->store)),
               DV_INT("standby_ms", dv_mono_ms() - t0),
               DV_INT("live_jobs", (int64_t)self->index.count));
        self->standby_why[0] = '\0';
    }
    zmq_pollitem_t items[] = {
        { self->clients, 0, ZMQ_POLLIN, 0 },
        { self->workers, 0, ZMQ_POLLIN, 0 },
        { NULL, broker_writer_fd(self->writer), ZMQ_POLLIN, 0 },
        { NULL, broker_reader_fd(self->reader), ZMQ_POLLIN, 0 },
        { NULL, -1, 0, 0 }, /* the group's lock, when there is one */
    };
    while (!*stop && !self->step_down[0]) {
        broker_clock_tick(self);
        long timeout = self->cfg.heartbeat_ms;
        int64_t now = broker_now_ms(self);
        broker_job_t *next = broker_heap_peek(&self->timers);
        if (next)
            s_sooner(&timeout, next->run_at_ms - now);
        if (self->next_token_us)
            s_sooner(&timeout,
                     (self->next_token_us - broker_mono_us(self)) / 1000 + 1);
        if (self->limbo.count)
            s_sooner(&timeout,
                     self->rejoin_until_ms - broker_mono_ms(self) + 1);
        int64_t at = broker_keys_next_deadline(self->keys, now);
        if (at != INT64_MAX)
            s_sooner(&timeout, at - now + 1);
        at = broker_schedule_next_due(self);
        if (at != INT64_MAX)
            s_sooner(&timeout, at - now + 1);
        if (s_has_ready_work(self))
            timeout = 0;
        /* Submits beyond the group's room wait in ZeroMQ: polling for them
         * would only spin until the writer is done (its fd wakes us). */
        items[0].events =
            self->cur->wb.nops < s_submit_room(self) ? ZMQ_POLLIN : 0;
        int nitems = self->ha && s_ha_item(self, &items[4], &timeout) ? 5 : 4;
        int rc = zmq_poll(items, nitems, timeout);
        if (rc < 0 && errno != EINTR)
            break;
        broker_clock_tick(self);
        if (rc == 0 && timeout > 0 && self->trim_when_idle) {
            /* Nothing came for a while: give back what the last big group
             * freed, rather than keep the peak as resident memory. */
            self->trim_when_idle = false;
            malloc_trim(0);
        }
        if (self->ha &&
            broker_ha_step(self->ha, dv_mono_ms()) == BROKER_HA_LOST) {
            broker_step_down(self, "lost the group's lock (its session "
                                   "ended: stopped too long, cut off, or "
                                   "ended by the server)");
            break;
        }
        if (self->next_token_us && broker_mono_us(self) >= self->next_token_us)
            self->dispatch_needed = true;

        broker_group_writer_ready(self);
        broker_reads_ready(self);
        if (self->reload && *self->reload) {
            *self->reload = 0;
            s_reload(self);
        }
        s_drain(self, self->workers, broker_auth_worker,
                broker_worker_on_message, SIZE_MAX);
        s_drain(self, self->clients, broker_auth_client,
                broker_client_on_message, s_submit_room(self));
        broker_sched_promote_due(self);
        broker_schedule_run_due(self);
        if (self->limbo.count && broker_mono_ms(self) >= self->rejoin_until_ms)
            broker_recover_end_rejoin(self);
        broker_worker_heartbeats(self);
        if (self->dispatch_needed)
            broker_sched_dispatch(self);
        broker_keys_flush(self->keys, broker_now_ms(self));
        broker_batch_tick(self);
        int64_t mono = broker_mono_ms(self);
        if (mono >= self->next_expire_ms) {
            self->next_expire_ms = mono + 60000;
            self->cur->wb.expire = true;
            self->cur->wb.expire_now_ms = broker_now_ms(self);
        }
        broker_group_end_pass(self);

        if (*dump) {
            *dump = 0;
            broker_dump(self);
        }
    }
    self->clock_on = false; /* what follows (the drain) reads the system's */
    if (self->step_down[0])
        return BROKER_STEP_DOWN;
    dv_log(DV_INFO, "broker.stopping",
           DV_INT("live_jobs", (int64_t)self->index.count));
    return 0;
}
