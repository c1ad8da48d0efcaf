/* broker_internal - the broker's shared state and the calls between its
 * files. Only broker/ includes this; broker_main.c sees broker_core.h.
 *
 * One thread (the loop, broker_core.c) owns struct broker and everything it
 * points to; no function declared here locks or blocks, except where said
 * (broker_group_drain_all at shutdown, broker_check_body for tests). Store
 * reads go to the reader thread (broker_reader.h) and are answered when
 * they come back; only start-up reads the store on the loop's own
 * connection. The files and what each owns:
 *
 *   broker_core.c     the loop: sockets, new/destroy/run/dump
 *   broker_out.c      output: send now, send after the commit, replies,
 *                     errors, events and their sequence numbers
 *   broker_sched.c    scheduling: place/unplace, lease, fail, finish,
 *                     dispatch against credit, queue limits, due timers
 *   broker_worker.c   worker protocol: hello, update, heartbeat, bye, expiry
 *   broker_client.c   client API: submit, wait
 *   broker_views.c    the status and job views
 *   broker_ctrl.c     control verbs: cancel, retry, pause, resume, purge,
 *                     limits, drain
 *   broker_group.c    group commit: what waits on a group, and flushing it
 *   broker_recover.c  start-up: replay of the store, queue settings, limits
 *   broker_check.c    the check verb: memory against the store
 *   broker_reads.c    store reads off the loop: the reader's completions,
 *                     copies of stored jobs, the sender of a late answer
 *   broker_auth.c     CurveZMQ roles: who may send each message
 *   broker_self.c     jobs the broker submits itself (firings, callbacks)
 *   broker_schedule.c periodic jobs: schedules, their heap, firings
 *   broker_schedule_ctrl.c  the schedule.* verbs
 *   broker_batch.c    batch records: counts, callbacks, batch.* verbs
 *   broker_batch_reads.c  batch.show and batch.jobs, read off the loop
 *   broker_deps.c     jobs waiting for other jobs: side tables, release,
 *                     cascading cancel, start-up edges
 *
 * Invariants kept across files:
 *   - a live job is in the index and in exactly one of: its queue's FIFO
 *     (queued), the timer heap (scheduled), a worker's running list
 *     (running); or in none while its insert is pending (BROKER_JOB_PENDING),
 *     while it waits for other jobs (waiting: in broker_deps.c's tables
 *     instead), or after it ended (terminal state, in the current group's
 *     ended list);
 *   - every state change of a job is recorded in self->cur->wb in the same
 *     call that makes it, and output that depends on it is queued with
 *     broker_out_send_later, so it leaves only once the group is durable;
 *   - a job on a worker's out list is leased to that worker and is sent to
 *     it at the end of the pass, or handed back to the front of its queue.
 */
#ifndef BROKER_INTERNAL_H
#define BROKER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker_core.h"
#include "broker_jobs.h"
#include "broker_keys.h"
#include "broker_reader.h"
#include "broker_store.h"
#include "broker_writer.h"
#include "dv_clock.h"
#include "dv_err.h"
#include "dv_hist.h"
#include "dv_map.h"
#include "dv_proto.h"

/* An interned job owner: its index (job->owner) and name. */
typedef struct {
    uint16_t ix;
    char name[];
} broker_owner_t;

/* A ROUTER routing id, copied out of its frame. */
typedef struct {
    uint8_t len;
    uint8_t data[255];
} broker_rid_t;

/* Who sent a message, from its CurveZMQ identity (role NONE without
 * CurveZMQ, or for a key no longer listed). */
typedef struct {
    dv_role_t role;
    char name[DV_NAME_MAX + 1]; /* the certificate's name */
    char key[41];               /* its public key, Z85 */
} broker_peer_t;

struct broker_worker {
    broker_rid_t rid;
    char *name; /* routing id as text (the worker's name) */
    char *host;
    int pid;
    int concurrency;
    broker_queue_t **queues; /* queues it serves */
    int nqueues;
    int rr;                    /* next queue to take from (round-robin) */
    int credit;                /* jobs it can take now */
    broker_list_t running;     /* jobs leased to it */
    int64_t last_seen_ms;      /* monotonic, last message from it */
    int64_t processed, failed; /* from its heartbeats */
    int busy, idle;
    broker_job_t **out; /* jobs dispatched to it this pass */
    uint32_t out_count, out_cap;
    bool known;     /* sent hello (not just a stray message) */
    bool draining;  /* told to drain: gets no more jobs */
    uint64_t seq;   /* last update seq applied */
    uint64_t acked; /* last seq a heartbeat acked (sent after a commit) */
};

/* Per-pass pending output to one client: acks of one submit message. */
typedef struct broker_ack_batch {
    struct broker_ack_batch *next;
    broker_rid_t rid;
    uint64_t req;
    uint32_t n;
    dv_submit_ack_t *acks; /* ids point into ids[] */
    char (*ids)[DV_ID_TEXT_LEN + 1];
    const char **errors; /* static reasons, or NULL */
    char (*whys)[96];    /* room for reasons made per job, or NULL */
    broker_job_t **jobs; /* the new jobs (NULL for refused/duplicate) */
} broker_ack_batch_t;

/* A job that ended; it stays findable by id (state terminal) until its
 * group is durable and its result went out, then it is freed. */
typedef struct broker_ended {
    struct broker_ended *next;
    broker_job_t *job;
    dv_state_t state;
    void *result; /* copy (the group's ended_arena) */
    size_t result_len;
    bool has_failure;
    bool incomplete;      /* a copy failed: no result can be built */
    dv_failure_t failure; /* strings point into msg (owned copy) */
    char *msg;            /* in the group's ended_arena */
    int64_t finished_ms;
} broker_ended_t;

/* A message encoded during the pass, sent after its commit. The bytes are
 * in the group's outbuf (one buffer reused pass after pass, so deferring
 * costs no allocation per message), or for a batch of job events in its
 * evbuf; a routing id only for replies, a topic only for events. */
typedef struct broker_send {
    void *socket;
    size_t off, len; /* len: for a batch, set when it is sent */
    char topic[32];
    broker_rid_t *rid; /* NULL for events */
    bool batch;        /* an "events" message in evbuf */
} broker_send_t;

/* A buffer result items point into, owned by their results. */
typedef struct broker_owned {
    struct broker_owned *next;
    char data[];
} broker_owned_t;

/* Results pending for one client; the group's results_out map keys it by
 * the bytes of rid. */
typedef struct {
    broker_rid_t rid;
    dv_result_t *items;
    uint32_t n, cap;
    broker_owned_t *owned; /* buffers the items point into */
} broker_results_t;

/* An idempotency key whose insert is not durable yet, and the id of the
 * job that holds it: self->pending_keys maps "OWNER_INDEX:KEY" to it, its
 * group's keys list owns it. One allocation per keyed job. Once durable it
 * stays pending (on self->settling) until every store read pushed before
 * that has come back: such a read may not have seen the insert. */
typedef struct broker_pkey {
    struct broker_pkey *next;
    uint64_t until; /* settling: forgotten once reads_popped reaches it */
    char id[DV_ID_TEXT_LEN + 1];
    char key[]; /* the map's key */
} broker_pkey_t;

/* The sender of a message answered later (after a store read): the
 * ownership checks (broker_auth_may_read, broker_auth_owner) look at
 * self->sender, which the answer puts back from this copy. */
typedef struct {
    bool set; /* self->sender was set (CurveZMQ) */
    broker_peer_t peer;
} broker_sender_t;

typedef struct broker_check_run broker_check_run_t;
typedef struct broker_self_sub broker_self_sub_t;
typedef struct broker_schedule broker_schedule_t; /* broker_schedule.h */
typedef struct broker_batch broker_batch_t;
typedef struct broker_deps broker_deps_t;

/* Everything one group of store writes carries: the writes, and the output
 * that may leave only once they are durable. */
typedef struct broker_group {
    broker_wbatch_t wb; /* first member: the writer hands it back */
    broker_ack_batch_t *acks, **acks_tail;
    broker_ended_t *ended, **ended_tail;
    dv_arena_t ended_arena; /* the ended records and their copies */
    broker_send_t *sends;   /* replies and events, in order */
    size_t nsends, sends_cap;
    msgpack_sbuffer outbuf; /* their encoded bytes */
    /* The job events go out together: one "events" message (topic "jobs")
     * per run of them, in evbuf, built in place as they come. A run ends
     * at another kind of event (so the PUB socket carries every event in
     * seq order) or when it is full. batch is the index in sends of the
     * run being built, SIZE_MAX when none. */
    msgpack_sbuffer evbuf;
    dv_events_enc_t evenc;
    size_t batch;
    dv_map_t *results_out; /* client rid bytes -> broker_results_t (owned) */
    broker_pkey_t *keys;   /* idempotency keys inserted in this group */
    uint64_t event_seq;    /* of the last event queued in it; 0: none */
} broker_group_t;

/* A lease handed out since the current group was last sealed, whose
 * "running" row write waits for the seal (broker_sched_write_leases): a
 * job that ends before then is written once, finished, with its lease
 * folded in. */
typedef struct {
    dv_id_t id;
    uint64_t lease;
    int64_t at_ms; /* when it was leased (epoch ms) */
} broker_lease_note_t;

typedef struct {
    uint64_t submitted, succeeded, failed, retried, dead, cancelled, lost;
    uint64_t dispatched;
    uint64_t stale;   /* reports refused: not under the job's current lease */
    uint64_t adopted; /* executions of an earlier start taken over */
    uint64_t revoked; /* held jobs a rejoining worker was told to drop */
} broker_counters_t;

/* A clock the tests set and move by hand; the loop runs with none. */
typedef struct {
    int64_t now_ms;  /* epoch ms */
    int64_t mono_us; /* monotonic microseconds */
} broker_clock_t;

struct broker {
    broker_config_t cfg;
    char instance[DV_ID_TEXT_LEN + 1]; /* new at each start */
    uint64_t generation; /* starts on this store, this one included */
    uint64_t lease_seq;  /* leases handed out in this start */
    /* Jobs recovered that a worker of the previous start may still hold
     * (running, or due and perhaps dispatched in a group that never
     * committed): out of dispatch until rejoin_until_ms (monotonic), so
     * that rejoining workers can take theirs back instead of a second
     * execution starting. */
    broker_list_t limbo;
    int64_t rejoin_until_ms;
    int64_t started_ms;
    /* A standby of a broker group (broker_standby.c): why it does not
     * serve, and the requests it turned away. */
    char standby_why[256];
    uint64_t standby_refused;
    struct broker_ha *ha; /* a group's lock (PostgreSQL store), or NULL */
    char step_down[128];  /* why this broker must stop serving, or "" */
    const broker_clock_t *fake_clock; /* NULL: dv_clock */
    /* The loop's clock (broker_clock_tick): read once when a pass wakes
     * and once for each message it takes, not for each job. */
    bool clock_on;
    int64_t clock_now_ms, clock_mono_us;
    broker_store_t *store; /* start-up reads (the threads have their own) */
    broker_writer_t *writer;
    broker_reader_t *reader;
    uint64_t reads_pushed; /* reads handed to the reader so far */
    uint64_t reads_popped; /* and back (in the same order) */
    broker_pkey_t *settling, **settling_tail; /* durable keys, by until */
    broker_check_run_t *check;                /* the check under way */
    broker_group_t *cur;                      /* being built by this pass */
    broker_group_t *inflight;                 /* with the writer, or NULL */
    broker_group_t *spare; /* a durable group emptied for reuse, or NULL */
    /* A big group freed its memory: the heap is trimmed once the loop is
     * idle (trimming under load cost a quarter of the loop: the pages came
     * straight back as page faults). */
    bool trim_when_idle;
    /* The output buffers' sizes of the last group not kept for reuse,
     * which a new group starts with: grown from nothing by doubling, each
     * such group copied its buffers over and over (reallocs were a tenth
     * of the loop on the drover up path). */
    size_t outbuf_hint, evbuf_hint;
    dv_map_t *pending_keys; /* key -> broker_pkey_t (the groups own them) */
    void *zctx;
    void *clients, *workers, *events;
    dv_curve_server_t *curve; /* NULL: no CurveZMQ */
    volatile int *reload;     /* SIGHUP: reload the certificates */

    broker_index_t index; /* live jobs by id */
    broker_heap_t timers; /* scheduled jobs by run_at */
    dv_map_t *queues;     /* name -> broker_queue_t (owned) */
    dv_map_t *types;      /* interned type and batch names (owned) */
    /* Job owners' certificate names, interned by broker_sched_owner: a
     * job holds a uint16_t index (job->owner), owners[i - 1] is the name
     * of index i, owner_ix maps a name to its broker_owner_t (owned).
     * One entry per certificate that ever submitted since the start. */
    dv_map_t *owner_ix;
    const char **owners;
    uint16_t nowners;
    size_t owners_cap;
    /* The sender of the message being handled, while a handler runs on
     * a broker with CurveZMQ; NULL otherwise. */
    const broker_peer_t *sender;
    dv_map_t *worker_by_name; /* name -> broker_worker_t (freed by hand) */
    broker_keys_t *keys;      /* the fleet's API keys */

    broker_worker_t **outq; /* workers with jobs to send this pass */
    size_t noutq, outq_cap;
    broker_lease_note_t *leases; /* leases not written yet (this group) */
    size_t nleases, leases_cap;
    bool dispatch_needed;
    int64_t next_token_us;  /* monotonic: a rate-limited queue may go on */
    int64_t next_expire_ms; /* monotonic: next purge of old results */
    dv_hist_t dispatch_us;  /* ready -> started report, microseconds */

    uint64_t event_seq;
    uint64_t event_seq_sent;   /* of the last event published (status) */
    int64_t next_heartbeat_ms; /* monotonic */
    broker_counters_t counters;
    bool store_failed; /* last commit failed */
    volatile int *stop;

    /* ---- store outage (broker_group.c) -----------------------------------
     * While the store cannot be written (store_failed), the group that
     * failed stays self->inflight and is pushed to the writer again after
     * a backoff until it commits; later groups wait behind it in
     * self->cur. Meanwhile new submits are refused (broker_client.c) and
     * no job is dispatched (broker_sched.c). */
    int store_err;                  /* dv_err_t of the last failure */
    char store_reason[96];          /* "store unavailable: CAUSE" (acks) */
    int64_t store_failed_ms;        /* epoch ms the outage began */
    int64_t store_failed_mono;      /* monotonic ms the outage began */
    int64_t store_backoff_ms;       /* before the next retry */
    int64_t store_remind_mono;      /* monotonic ms of the next reminder */
    uint64_t store_retries;         /* retries of the kept group */
    uint64_t store_refused;         /* jobs refused during the outage */
    int64_t store_retry_min_ms;     /* backoff bounds; 0: 100 ms, 2 s */
    int64_t store_retry_max_ms;     /* (tests shorten them) */
    int64_t shutdown_deadline_mono; /* drain_all: a failed group is given
                                     * up after this (0: not stopping) */

    /* Jobs the broker submitted itself, waiting for their acks
     * (broker_self.c). */
    broker_self_sub_t *self_subs;
    uint64_t self_seq;

    /* The job whose success is being recorded carries its attempt's start
     * (one report had both): its job.succeeded says so (started, wait)
     * and no job.started is published (broker_worker.c sets it around
     * broker_sched_finish). */
    const broker_job_t *fold_start;
    int64_t fold_wait_ms;

    /* Periodic jobs (broker_schedule.h): by name, in a min-heap by the
     * time each needs attention next, the removed ones still waiting for
     * an ack, and the time zones they use (name -> dv_tz_t, owned). */
    dv_map_t *schedules;
    broker_schedule_t **sheap;
    uint32_t nsheap, sheap_cap;
    broker_schedule_t *sched_zombies;
    struct broker_sched_token *sched_tokens; /* submits awaiting acks */
    dv_map_t *tzs;

    /* Batch records (broker_batch.c): "OWNER\x1fNAME" -> broker_batch_t;
     * callback job id -> its callback, while it is live; records
     * forgotten (freed at destroy); whether a tick has work now, and when
     * the next one looks anyway (monotonic ms). */
    dv_map_t *batches;
    dv_map_t *batch_cbs;
    broker_batch_t *batches_gone;
    bool batch_due;
    int64_t batch_next_ms;

    /* Jobs waiting for other jobs (broker_deps.c). */
    broker_deps_t *deps;
};

/* ---- small inline helpers ------------------------------------------------ */

/* Reads the clocks for what the loop does next. Jobs handled in one
 * message share its time: a clock read costs as much as the rest of a
 * no-op job's dispatch on some virtual machines. */
static inline void
broker_clock_tick(broker_t *self)
{
    self->clock_now_ms = dv_now_ms();
    self->clock_mono_us = dv_mono_us();
    self->clock_on = true;
}

/* Epoch milliseconds: the fake clock if one is set, else the loop's (in
 * broker_run), else the system's. */
static inline int64_t
broker_now_ms(const broker_t *self)
{
    return self->fake_clock ? self->fake_clock->now_ms
           : self->clock_on ? self->clock_now_ms
                            : dv_now_ms();
}

/* Monotonic microseconds, from the same clocks as broker_now_ms. */
static inline int64_t
broker_mono_us(const broker_t *self)
{
    return self->fake_clock ? self->fake_clock->mono_us
           : self->clock_on ? self->clock_mono_us
                            : dv_mono_us();
}

/* Monotonic milliseconds, from the same clocks as broker_now_ms. */
static inline int64_t
broker_mono_ms(const broker_t *self)
{
    return broker_mono_us(self) / 1000;
}

/* A store write could not even be recorded (out of memory): the group
 * must not count as durable. */
static inline void
broker_write_lost(broker_t *self)
{
    self->cur->wb.rc = DV_ENOMEM;
}

static inline void
broker_id_text(const broker_job_t *job, char out[DV_ID_TEXT_LEN + 1])
{
    dv_id_format(&job->id, out);
}

static inline void
broker_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static inline void
broker_pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    broker_pack_str(pk, k);
    if (v)
        broker_pack_str(pk, v);
    else
        msgpack_pack_nil(pk);
}

static inline void
broker_pack_kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
    broker_pack_str(pk, k);
    msgpack_pack_int64(pk, v);
}

/* ---- broker_out.c: output and events ------------------------------------- */

/* A msgpack buffer that remembers whether any write into it failed (out of
 * memory), so a body packed field by field is checked once at the end. */
typedef struct {
    msgpack_sbuffer sb; /* first member */
    bool failed;
} broker_body_t;

void broker_body_init(broker_body_t *b, msgpack_packer *pk);
void broker_body_destroy(broker_body_t *b);

/* rid as lower-case hex into out (2 * 255 + 1 bytes). */
void broker_out_rid_hex(const broker_rid_t *rid, char *out);

/* Sends bytes at once (not deferred); a full or gone peer is not an error. */
void broker_out_send_raw(void *socket, const broker_rid_t *rid,
                         const void *data, size_t len);

/* Encodes msg and sends it at once. Returns 0, or DV_ENOMEM when it could
 * not be encoded (nothing was sent). */
int broker_out_send_now(void *socket, const broker_rid_t *rid,
                        const dv_msg_t *msg);

/* Encodes msg now, sends it after this pass's commit. Returns 0, or
 * DV_ENOMEM (nothing was queued). */
int broker_out_send_later(broker_t *self, void *socket, const broker_rid_t *rid,
                          const char *topic, const dv_msg_t *msg);

/* Logs a reply or result that could not be built or queued
 * (broker.reply_dropped). */
void broker_out_dropped(const broker_rid_t *rid, uint64_t req,
                        const char *what);

/* Sends an ERROR message at once; logs if it cannot be built. */
void broker_out_error(broker_t *self, void *socket, const broker_rid_t *rid,
                      uint64_t req, dv_code_t code, const char *reason);

/* Replies to a client, at once or (later) after the commit: ok when error
 * is NULL, else refused with error and its code. Logs if the reply cannot
 * be built or queued. */
void broker_out_reply(broker_t *self, const broker_rid_t *rid, uint64_t req,
                      dv_code_t code, const char *error,
                      const msgpack_sbuffer *body, bool later);

/* Logs and answers a message that did not decode or does not belong. */
void broker_out_bad_message(broker_t *self, void *socket,
                            const broker_rid_t *rid, dv_code_t code,
                            const char *why);
void broker_out_unexpected(broker_t *self, void *socket,
                           const broker_rid_t *rid, const dv_msg_t *msg);

/* Publishes ev after the commit with the next sequence number; one that
 * cannot be built is logged and still consumes its number. */
void broker_out_event(broker_t *self, dv_event_t *ev);

/* An event of this kind could not be built: logs it and consumes its
 * sequence number. */
void broker_out_event_dropped(broker_t *self, dv_event_kind_t kind);

/* A job event: fills id, queue, type, batch, worker, attempt from job. */
void broker_out_job_event(broker_t *self, dv_event_kind_t kind,
                          const broker_job_t *job, dv_event_t *ev);

/* ---- broker_sched.c: scheduling ------------------------------------------ */

/* The interned copy of name (NULL for an empty name, or out of memory). */
const char *broker_sched_intern(broker_t *self, dv_str_t name);

/* The owner index of name, interned if new: 1.. for a name, 0 for NULL
 * or an empty name, -1 on out of memory or when the table is full
 * (UINT16_MAX names). */
int broker_sched_owner(broker_t *self, const char *name);

/* The name of owner index ix, or NULL for 0 (no owner). */
const char *broker_sched_owner_name(const broker_t *self, uint16_t ix);

/* The queue called name, made if new. NULL on out of memory. */
broker_queue_t *broker_sched_queue(broker_t *self, const char *name);

/* Puts a job where its run_at says: ready FIFO (front: before the others
 * of its priority) or timer heap. The job must be in no container. */
void broker_sched_place(broker_t *self, broker_job_t *job, bool front);

/* Takes a job out of whatever container holds it (state NONE after). */
void broker_sched_unplace(broker_t *self, broker_job_t *job);

/* Leases job to w and records it. lease 0: a new execution (attempt + 1,
 * a new token); otherwise w takes over an execution it already runs under
 * that token (the caller set the attempt). */
void broker_sched_lease(broker_t *self, broker_job_t *job, broker_worker_t *w,
                        uint64_t lease);

/* Writes the "running" row of each job leased since the last call that
 * still runs under that lease, into the current group; called when the
 * group is sealed. Jobs that ended meanwhile were written once, by their
 * outcome. */
void broker_sched_write_leases(broker_t *self);

/* The job ended: records it, publishes its event, and keeps it (terminal)
 * on the group's ended list until the group is durable. */
void broker_sched_finish(broker_t *self, broker_job_t *job, dv_state_t state,
                         const void *result, size_t result_len,
                         const dv_failure_t *failure);

/* An attempt failed: retried after backoff, or the job is dead. */
void broker_sched_fail(broker_t *self, broker_job_t *job,
                       const dv_failure_t *failure);

/* Hands ready jobs to workers with credit (round-robin over workers, each
 * worker's queues round-robin), within each queue's limits. */
void broker_sched_dispatch(broker_t *self);

/* Scheduled jobs whose time has come become ready. */
void broker_sched_promote_due(broker_t *self);

/* Puts every job on w's out list back at the front of its queue, unleased,
 * w's credit restored (they could not be sent); dispatch runs again
 * shortly. */
void broker_sched_unsend(broker_t *self, broker_worker_t *w);

/* ---- broker_worker.c: worker protocol ------------------------------------ */

/* A new worker named after its routing id (known = false, no queues, no
 * credit), registered by name. NULL on out of memory. */
broker_worker_t *broker_worker_new(broker_t *self, const broker_rid_t *rid);

/* Sets the queues w serves. Returns 0, or -1 (out of memory: unchanged). */
int broker_worker_set_queues(broker_t *self, broker_worker_t *w,
                             const dv_str_t *names, uint32_t n);

void broker_worker_free(broker_worker_t *w);

/* Fails every job leased to w as lost, publishes kind, forgets w. */
void broker_worker_remove(broker_t *self, broker_worker_t *w,
                          dv_event_kind_t kind, const char *why);

/* Removes the workers silent for longer than the timeout. */
void broker_worker_expire(broker_t *self);

/* Once per heartbeat period: expires silent workers, heartbeats the rest. */
void broker_worker_heartbeats(broker_t *self);

void broker_worker_on_message(broker_t *self, const broker_rid_t *rid,
                              const dv_msg_t *msg);

/* ---- broker_client.c: client API ----------------------------------------- */

void broker_client_on_message(broker_t *self, const broker_rid_t *rid,
                              const dv_msg_t *msg);

/* Handles a submit message as if it had just come from rid (an empty rid:
 * the broker's own, broker_self.c; its acks go to broker_self_acked). */
void broker_client_submit(broker_t *self, const broker_rid_t *rid,
                          const dv_msg_t *msg);

/* Keys beginning with this are the broker's own (a firing's, a callback's):
 * a client's submit may not use them. */
#define BROKER_SELF_KEY_PREFIX "drover:"

/* ---- broker_self.c: jobs the broker submits itself ------------------------ */

/* Told how a job the broker submitted itself went: ack->id set and not
 * duplicate: its insert is durable; duplicate: its key was taken (ack->id
 * is the job holding it); otherwise refused (ack->error, ack->code). The
 * ack's strings are valid only during the call. */
typedef void (*broker_self_cb_t)(broker_t *self, void *arg,
                                 const dv_submit_ack_t *ack);

/* Submits one job as owner (NULL: none) through the client submit path;
 * cb is called once with its ack (maybe during this call, when it is
 * refused at once), or never if the ack is lost (out of memory): the
 * caller keeps a deadline and submits again, with the same key. Returns
 * 0, or DV_ENOMEM (cb will not be called). */
int broker_self_submit(broker_t *self, const dv_jobspec_t *js,
                       const char *owner, broker_self_cb_t cb, void *arg);

/* The ack of request req of the broker's own (an empty rid). */
void broker_self_acked(broker_t *self, uint64_t req,
                       const dv_submit_ack_t *ack);

/* Forgets every submit still waiting (the broker stops). */
void broker_self_free_all(broker_t *self);

/* ---- broker_batch.c: batch records -------------------------------------- */

/* Whether a job of owner (NULL: none) in batch must be refused: its record
 * is closed (or called, done); *why is then the reason (valid while the
 * broker runs). */
bool broker_batch_refuses(const broker_t *self, const char *owner,
                          dv_str_t batch, const char **why);

/* A job was inserted (its insert not durable yet). */
void broker_batch_inserted(broker_t *self, const broker_job_t *job);

/* Its insert became durable (ok), or was refused. */
void broker_batch_durable(broker_t *self, const broker_job_t *job, bool ok);

/* A job ended in state (succeeded, dead, cancelled). */
void broker_batch_ended(broker_t *self, const broker_job_t *job,
                        dv_state_t state);

/* A finished job (was: dead or cancelled) goes back to waiting. */
void broker_batch_retried(broker_t *self, const broker_job_t *job,
                          dv_state_t was);

/* Submits the callbacks that are due (once per loop pass; cheap when
 * there is nothing to do). */
void broker_batch_tick(broker_t *self);

struct json_t; /* jansson's, for the verbs' args */

/* The callbacks of a record (complete, success, failure), and the room
 * for its map key ("OWNER\x1fNAME"). */
#define BROKER_BATCH_CBS     3
#define BROKER_BATCH_KEY_MAX (2 * DV_NAME_MAX + 2)

/* The record of (owner, name) ("" for no owner), or NULL. */
broker_batch_t *broker_batch_find(const broker_t *self, const char *owner,
                                  const char *name);
/* Its map key; the id after which its jobs are its own; the job id of its
 * callback i (0..BROKER_BATCH_CBS - 1), "" until acked. */
const char *broker_batch_key(const broker_batch_t *b);
const char *broker_batch_since(const broker_batch_t *b);
const char *broker_batch_cb_id(const broker_batch_t *b, int i);

/* Replies with b's record body (states: its callbacks' job states, or
 * NULL), after the commit with later. */
void broker_batch_reply(broker_t *self, const broker_rid_t *rid, uint64_t req,
                        const broker_batch_t *b, const dv_state_t *states,
                        bool later);

/* Whose batch a verb is about: the sender's own (its certificate name, ""
 * without CurveZMQ), or args {owner} from an operator. */
const char *broker_batch_owner(const broker_t *self, const struct json_t *args);
/* Whose jobs the sender may list: a client's own name under CurveZMQ,
 * NULL (everyone's) otherwise. */
const char *broker_batch_reader_owner(const broker_t *self);

/* broker_batch_reads.c: batch.show and batch.jobs, read off the loop. */
void broker_batch_show(broker_t *self, const broker_rid_t *rid,
                       const dv_ctrl_t *c, const struct json_t *args,
                       const char *name);
void broker_batch_jobs(broker_t *self, const broker_rid_t *rid,
                       const dv_ctrl_t *c, const struct json_t *args,
                       const char *name);

/* ctrl batch.open, .close, .show, .jobs, .forget; false for another verb. */
bool broker_batch_ctrl(broker_t *self, const broker_rid_t *rid,
                       const dv_ctrl_t *c);

/* Start-up: loads the records, recounts the jobs of those not called.
 * Returns 0 or -1 (logged). */
int broker_batch_recover(broker_t *self);

/* Frees every record (the broker stops). */
void broker_batch_free_all(broker_t *self);

/* This broker of a group lost the store to another (its lock, or its
 * fence): logs why; broker_run stops serving at once and returns
 * BROKER_STEP_DOWN (nothing more is committed or answered). */
void broker_step_down(broker_t *self, const char *why);

/* broker_standby.c: a standby's answers (code standby; status says so). */
void broker_standby_on_client(broker_t *self, const broker_rid_t *rid,
                              const dv_msg_t *msg);
void broker_standby_on_worker(broker_t *self, const broker_rid_t *rid,
                              const dv_msg_t *msg);

/* Pending results of one client in group g, made if new (NULL: out of
 * memory). */
broker_results_t *broker_client_results_for(broker_group_t *g,
                                            const broker_rid_t *rid);
/* One more zeroed result item, or NULL (out of memory). */
dv_result_t *broker_client_results_add(broker_results_t *r);
/* Copies p into memory owned by r; returns the view (empty on failure, and
 * then *failed is set). */
dv_str_t broker_client_results_own(broker_results_t *r, const void *p,
                                   size_t len, bool *failed);
/* Frees the buffers r owns (the items pointing into them are left as they
 * are). */
void broker_client_results_free_owned(broker_results_t *r);
/* dv_map item destructor of the group's results_out. */
void broker_client_results_destroy(void *item);

/* broker_store_get callback filling a result item from a stored job. */
typedef struct {
    broker_results_t *r;
    dv_result_t *it;
    bool failed; /* a copy failed (out of memory) */
    /* Set: the item is filled in only if the current sender may read the
     * job (broker_auth_may_read); otherwise it is left as it was. */
    const broker_t *reader;
} broker_view_ctx_t;

void broker_client_on_view(void *arg, const broker_jobview_t *v);

/* Replies to the status verb with the broker's state (broker_views.c). */
void broker_client_status(broker_t *self, const broker_rid_t *rid,
                          uint64_t req);

/* Replies to the job verb: the live job at once, the stored one once the
 * reader has read it (broker_views.c). */
void broker_client_job(broker_t *self, const broker_rid_t *rid, uint64_t req,
                       const char *idtext, const broker_job_t *job);

/* ---- broker_ctrl.c: control verbs ---------------------------------------- */

void broker_ctrl_on_message(broker_t *self, const broker_rid_t *rid,
                            const dv_msg_t *msg);

/* Records q's settings as a write of this group, and tells subscribers. */
void broker_ctrl_queue_save(broker_t *self, broker_queue_t *q,
                            dv_event_kind_t event_kind);

/* Sets q's rate limit (starts per second, 0 = none), bucket full. */
void broker_ctrl_set_rate(broker_t *self, broker_queue_t *q, double rate);

/* ---- broker_group.c: group commit ---------------------------------------- */

/* NULL on out of memory. */
broker_group_t *broker_group_new(void);
void broker_group_destroy(broker_group_t **g_p);

/* Collects what the writer finished and sends what waited on it. */
void broker_group_writer_ready(broker_t *self);

/* Hands the current group to the writer if it is free. */
void broker_group_submit(broker_t *self);

/* End of a pass: jobs go to workers, the group to the writer. */
void broker_group_end_pass(broker_t *self);

/* Blocks until every group recorded so far is durable and its output sent
 * (shutdown). While the store cannot be written it keeps trying for a few
 * seconds, then gives the writes up (logged as broker.store_unwritten). */
void broker_group_drain_all(broker_t *self);

/* Takes the keys of settling groups out of self->pending_keys once every
 * read pushed before they were durable has come back. */
void broker_group_settle_keys(broker_t *self);

/* ---- broker_check.c: the check verb -------------------------------------- */

/* Starts ctrl "check" and answers it later: memory is copied at the moment
 * the store will say the same (when every write recorded so far is in the
 * group handed to the writer next, or nothing is pending), the group is
 * committed, and the reader compares the copy with the store's unfinished
 * rows. Meanwhile later groups wait (the store must not move under the
 * scan); the loop goes on. Refused with DV_CODE_STORE while the store
 * cannot be written, and with DV_CODE_TRY_AGAIN while another check runs. */
void broker_check(broker_t *self, const broker_rid_t *rid, uint64_t req);

/* broker_group.c's calls into a check under way. A group with no writes
 * is about to go out with nothing pending: a waiting check takes its copy
 * now and scans. */
void broker_check_synced(broker_t *self);
/* Whether group commits must wait (a scan is running). */
bool broker_check_holding(const broker_t *self);
/* Group g (holding every write recorded so far) goes to the writer now: a
 * waiting check takes its copy of memory. */
void broker_check_at_submit(broker_t *self, broker_group_t *g);
/* The writer finished g: committed (ok) or not. */
void broker_check_written(broker_t *self, broker_group_t *g, bool ok);
/* Stopping: a check still waiting is answered "broker stopping". */
void broker_check_stop(broker_t *self);

/* Tests: runs a check to its end, blocking on the writer and the reader,
 * and returns its body in out. Returns DV_CODE_NONE, or why not
 * (DV_CODE_STORE: the store cannot be written or read; DV_CODE_NO_MEMORY;
 * DV_CODE_TRY_AGAIN) with the reason in why. */
dv_code_t broker_check_body(broker_t *self, msgpack_sbuffer *out, char *why,
                            size_t why_size);

/* ---- broker_reads.c: store reads off the loop ---------------------------- */

/* Pushes r to the reader, counting it (self->reads_pushed). Returns 0 or
 * the reader's refusal (BROKER_READER_FULL, _STOPPED); then the caller
 * still owns r. bounded: see broker_reader_push. */
int broker_reads_push(broker_t *self, broker_read_t *r, bool bounded);

/* The reason to answer a refused push with (code DV_CODE_TRY_AGAIN). */
const char *broker_reads_refusal(int rc);

/* Answers every read the reader has finished (its eventfd fired). */
void broker_reads_ready(broker_t *self);

/* ctrl "finished": a page of the jobs that finished in a time window
 * (args: dv_finished_args_t), read by the reader and answered with a
 * dv_finished_t body. Answers at once when the args do not decode or the
 * read cannot be pushed. */
void broker_reads_finished(broker_t *self, const broker_rid_t *rid,
                           const dv_ctrl_t *c);

/* Keeps the current sender (self->sender) in s. */
void broker_sender_save(const broker_t *self, broker_sender_t *s);

/* Makes s the current sender; returns the one before, to put back. */
const broker_peer_t *broker_sender_use(broker_t *self,
                                       const broker_sender_t *s);

/* A job of a ctrl "job" answer's waits_for or waited_by, as stored. */
typedef struct {
    char id[DV_ID_TEXT_LEN + 1];
    dv_state_t state; /* DV_STATE_UNKNOWN: not stored any more */
    bool any;         /* after_any */
} broker_dep_row_t;

/* The most of each a ctrl "job" answer lists. */
#define BROKER_JOB_DEPS_MAX 100

/* One stored job as a read found it. */
typedef struct {
    char id[DV_ID_TEXT_LEN + 1];
    int rc;                 /* broker_store_get: 1, 0 none, or an error
                             * (DV_ENOMEM: found, but not copied) */
    broker_jobview_t *view; /* rc 1: a copy, its strings after it */
    /* With want_attempts, the job's last BROKER_JOB_ATTEMPTS_MAX stored
     * attempts too (ctrl "job"), packed by the reader: nattempts msgpack
     * maps one after another (no array header), as broker_views.c
     * answers them. arc: broker_store_attempts' count, or an error. */
    bool want_attempts;
    int arc;
    uint32_t nattempts;
    char *attempts;
    size_t attempts_len;
    /* With want_attempts, also the options it was submitted with, from
     * its stored record (broker_store_load), packed by the reader as one
     * msgpack map (broker_pack_options); NULL when not stored (yet). */
    char *options;
    size_t options_len;
    /* With want_attempts, also what it waits for and what waits for it
     * (table deps): rows[0..nfor) then rows[nfor..nfor + nby); drc: 0 or
     * the read's error. */
    broker_dep_row_t *deps;
    uint32_t nfor, nby;
    int drc;
} broker_viewed_t;

/* A job's options as submitted, for ctrl "job". Views; NULL/0 absent. */
typedef struct {
    int priority, max_attempts;
    int64_t timeout_ms;    /* 0: the worker's default */
    int64_t created_ms;    /* 0: not known */
    int64_t result_ttl_ms; /* 0: not known */
    dv_backoff_t backoff;
    const char *key, *batch, *trace;
    const char *schedule; /* the schedule that fired it, or NULL */
    const void *payload;  /* one msgpack value */
    size_t payload_len;
} broker_options_t;

/* Packs o as one map: priority, max_attempts, timeout_ms, backoff {base_ms,
 * factor, cap_ms, jitter}, batch, key, trace, schedule?, created_at?,
 * result_ttl_ms?, payload_bytes, payload (the value; nil if it is not
 * one). */
void broker_pack_options(msgpack_packer *pk, const broker_options_t *o);

/* The stored attempts a ctrl "job" answer carries, at most (the last). */
#define BROKER_JOB_ATTEMPTS_MAX 100

/* A read of stored jobs by id (wait, job, cancel). */
typedef struct broker_views broker_views_t;
struct broker_views {
    broker_read_t base; /* first member */
    /* Loop: answers once the read is back, with the request's sender as
     * self->sender; the views are freed after it. base.stopped: not read
     * (the broker is stopping). */
    void (*answer)(broker_t *self, broker_views_t *v);
    broker_rid_t rid;
    uint64_t req;
    broker_sender_t sender;
    uint32_t n;
    broker_viewed_t items[];
};

/* A read of n jobs (ids to be filled in by the caller) answered by answer,
 * with the current sender kept. NULL on out of memory. */
broker_views_t *
broker_views_new(broker_t *self, const broker_rid_t *rid, uint64_t req,
                 uint32_t n, void (*answer)(broker_t *self, broker_views_t *v));

/* Frees v (and its copies). NULL-safe. */
void broker_views_free(broker_views_t *v);

/* ---- broker_recover.c: start-up ------------------------------------------ */

/* Rebuilds a job from its stored record and indexes it (not placed yet).
 * Returns the job, or NULL with *err set (DV_EPROTO: a bad id; DV_ENOMEM). */
broker_job_t *broker_recover_job_from_rec(broker_t *self,
                                          const broker_jobrec_t *rec, int *err);

/* Replays unfinished jobs from the store. Returns 0 or an error code. */
int broker_recover_jobs(broker_t *self);

/* The rejoin window has passed: jobs in limbo that no worker took back go
 * to their queues, and those that were running fail as lost. */
void broker_recover_end_rejoin(broker_t *self);

/* Loads stored queue settings, then applies the limits given at start.
 * Returns 0 or -1 (logged). */
int broker_recover_queues(broker_t *self);
/* Loads the API keys' stored states into the ledger. Returns 0 or -1
 * (logged). */
int broker_recover_keys(broker_t *self);

/* ---- broker_auth.c: roles ------------------------------------------------ */

/* Whether peer may send msg on the clients (broker_auth_client) or workers
 * socket. If not, the peer is answered with code not_allowed and a reason
 * naming its role, and the refusal is logged once per key and verb. */
bool broker_auth_client(broker_t *self, const broker_rid_t *rid,
                        const broker_peer_t *peer, const dv_msg_t *msg);
bool broker_auth_worker(broker_t *self, const broker_rid_t *rid,
                        const broker_peer_t *peer, const dv_msg_t *msg);

/* The owner to record for a job the current sender submits: its
 * certificate name, or NULL without CurveZMQ (or outside a handler). */
const char *broker_auth_owner(const broker_t *self);

/* Whether the current sender may read (wait on, view) a job of owner (a
 * certificate name, or NULL for none): a client only the jobs it owns;
 * every other role, and any sender without CurveZMQ, every job. */
bool broker_auth_may_read(const broker_t *self, const char *owner);

/* ---- broker_deps.c: jobs waiting for other jobs -------------------------- */

/* What a submit's read found for one id of a job's after/after_any (in
 * that order, after first). */
enum {
    BROKER_DEP_UNREAD = 0, /* not read: it was live when the submit came */
    BROKER_DEP_FOUND,      /* stored: state, same_owner */
    BROKER_DEP_NONE,       /* no such job stored */
    BROKER_DEP_FAILED,     /* the read failed */
};
typedef struct {
    uint8_t rc;
    bool same_owner; /* stored with the submitter's owner */
    dv_state_t state;
} broker_dep_found_t;

/* What a new job's dependencies say, worked out before it is made. */
typedef struct {
    broker_dep_t deps[2 * DV_AFTER_MAX]; /* to store (no duplicates) */
    dv_id_t ids[2 * DV_AFTER_MAX];
    broker_job_t *live[2 * DV_AFTER_MAX]; /* NULL: ended (states[i]) */
    dv_state_t states[2 * DV_AFTER_MAX];
    uint32_t ndeps;
    uint32_t outstanding; /* live ones: it waits */
    bool doomed;          /* an "after" one ended badly: cancelled at once */
    dv_id_t doomed_by;
    dv_state_t doom_st;
} broker_dplan_t;

/* Makes and frees the tables. init returns 0 or -1 (out of memory). */
int broker_deps_init(broker_t *self);
void broker_deps_free(broker_t *self);

/* Works out js's dependencies (found: the store read's answers, NULL when
 * nothing was read). Returns 0, or -1 with the reason and code (not_found:
 * an unknown id; try_again; store). */
int broker_deps_plan(broker_t *self, const dv_jobspec_t *js,
                     const broker_dep_found_t *found, broker_dplan_t *p,
                     char *why, size_t why_size, dv_code_t *code);

/* Whether a planned job waits (state waiting on insert). */
static inline bool
broker_deps_waits(const broker_dplan_t *p)
{
    return p->outstanding || p->doomed;
}

/* Records what the new job (pending) waits for. Returns 0 or -1 (out of
 * memory: nothing recorded). detach undoes it (the job is refused). */
int broker_deps_attach(broker_t *self, const broker_job_t *job,
                       const broker_dplan_t *p);
void broker_deps_detach(broker_t *self, const broker_job_t *job);

/* The insert of a pending job is durable: false if it waits for nothing
 * (the caller places it); true when handled: state waiting, or released
 * meanwhile (placed, its row written). */
bool broker_deps_durable(broker_t *self, broker_job_t *job);
/* After its job.submitted event: a job doomed while pending is cancelled. */
void broker_deps_submitted(broker_t *self, broker_job_t *job);

/* A job ended in state (or its insert was refused: cancelled): the jobs
 * waiting for it count it, are released or cancelled (cascading). */
void broker_deps_ended(broker_t *self, const broker_job_t *job,
                       dv_state_t state);

/* Whether job has a waiting record (waits, or waited while pending). */
bool broker_deps_has(const broker_t *self, const broker_job_t *job);

/* The waiting jobs of queue q, in a new array (the caller frees it) of
 * *n; NULL with *n = 0 when there are none, NULL with *n = SIZE_MAX when
 * out of memory. For purge: cancelling them (broker_sched_finish) goes
 * through broker_deps_ended like any end. */
broker_job_t **broker_deps_of_queue(broker_t *self, const broker_queue_t *q,
                                    size_t *n);

/* Jobs waiting, and the bytes the tables allocated for them. */
size_t broker_deps_waiting(const broker_t *self);
size_t broker_deps_bytes(const broker_t *self);

/* Start-up, after the jobs are replayed: rebuilds the edges of waiting
 * jobs; those whose dependencies ended meanwhile are released or
 * cancelled. Returns 0 or an error. */
int broker_deps_recover(broker_t *self);

/* ---- broker_core.c: the loop --------------------------------------------- */

/* The broker's state without sockets: store, writer, recovered jobs and
 * queue settings. broker_new() binds the sockets on top; tests use this
 * alone. Returns NULL after logging the reason. */
broker_t *broker_core_open(const broker_config_t *cfg);

/* The same on a fake clock (tests), set before recovery runs. */
broker_t *broker_core_open_at(const broker_config_t *cfg,
                              const broker_clock_t *clock);

#endif
