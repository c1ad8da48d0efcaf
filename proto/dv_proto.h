/* dv_proto - drover's wire protocol: message types, msgpack encode/decode with
 * strict validation, protocol version. No I/O here.
 *
 * Every message is one ZeroMQ frame (after the ROUTER routing envelope) that
 * holds one msgpack map. Two keys are always present:
 *
 *     "v": protocol version (unsigned int, DV_PROTO_VERSION)
 *     "t": message type name (string, see dv_msg_type_name())
 *
 * The other keys depend on the type; docs/protocol.md lists them. Unknown keys
 * are ignored (so a newer peer may add optional fields); a known key with the
 * wrong type, a missing required key, a value out of range, or a string, array
 * or frame over its limit rejects the whole message with a reason. Job payloads
 * and results are carried as msgpack *bin* values holding one msgpack value, so
 * the broker stores and forwards them without decoding; the decoder still
 * checks that the bytes are exactly one well-formed value.
 *
 * Events on the PUB socket are two frames: a topic and the msgpack body.
 * The job events one group commit produced travel together: topic "jobs",
 * body type "events" (["events"], an array of event maps). Every other
 * event travels alone: topic = its kind ("worker.joined"), type "event".
 *
 * The schema is data: each message is one table (dv_msg_schema.c) of key,
 * type, bounds, required and place in the struct, and one engine
 * (dv_schema.c) decodes, encodes and compares by it; dv_msg.c is the
 * envelope, dv_mp_validate.c the raw-bytes check, dv_proto_names.c the enum
 * names. Typed bodies carried in bins are in dv_body.h.
 */
#ifndef DV_PROTO_H
#define DV_PROTO_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_backoff.h"
#include "dv_err.h"
#include "dv_str.h"

#define DV_PROTO_VERSION 1

/* Limits; the decoder rejects anything larger (DV_ETOOBIG). */
#define DV_MSG_MAX         (64u << 20) /* one frame */
#define DV_PAYLOAD_MAX     (1u << 20)  /* one job's payload or result */
#define DV_NAME_MAX        200         /* queue, type, worker, batch names */
#define DV_KEY_MAX         512         /* idempotency key */
#define DV_TEXT_MAX        4096        /* messages, reasons, traces */
#define DV_DETAILS_MAX     8192        /* a failure's details, stderr tail */
#define DV_ITEMS_MAX       100000      /* jobs / ids / updates in one message */
#define DV_QUEUES_MAX      256         /* queues one worker may serve */
#define DV_VALUE_DEPTH_MAX 64          /* nesting inside a payload or result */

/* ---- job states and failure categories (sent as their names) ---------- */

typedef enum {
    DV_STATE_NONE = 0,
    DV_STATE_QUEUED,    /* ready, waiting for a worker */
    DV_STATE_SCHEDULED, /* waiting for run_at (delayed, or retry backoff) */
    DV_STATE_RUNNING,   /* leased to a worker */
    DV_STATE_SUCCEEDED, /* terminal */
    DV_STATE_FAILED,    /* an attempt failed (event only; the job moves on) */
    DV_STATE_DEAD,      /* terminal: attempts exhausted or not retryable */
    DV_STATE_CANCELLED, /* terminal */
    DV_STATE_UNKNOWN,   /* the broker has no such job */
    DV_STATE_WAITING,   /* waits for other jobs to end ("after") */
    DV_STATE_COUNT_
} dv_state_t;

const char *dv_state_name(dv_state_t s);
dv_state_t dv_state_parse(const char *name, size_t len); /* NONE if unknown */
static inline bool
dv_state_terminal(dv_state_t s)
{
    return s == DV_STATE_SUCCEEDED || s == DV_STATE_DEAD ||
           s == DV_STATE_CANCELLED;
}

typedef enum {
    DV_CAT_NONE = 0,
    DV_CAT_TIMEOUT,            /* attempt exceeded its timeout */
    DV_CAT_RATE_LIMITED,       /* upstream said slow down (429) */
    DV_CAT_AUTH,               /* credentials refused (401/403) */
    DV_CAT_INVALID_INPUT,      /* the payload cannot be processed */
    DV_CAT_UPSTREAM,           /* 5xx, connect/reset */
    DV_CAT_RESOURCE_EXHAUSTED, /* memory limit, recycle */
    DV_CAT_CRASHED,            /* handler process killed by a signal */
    DV_CAT_LOST,               /* worker vanished or broker restarted */
    DV_CAT_HANDLER,            /* the handler reported failure */
    DV_CAT_UNKNOWN_TYPE,       /* no handler for the job type */
    DV_CAT_CANCELLED,          /* cancelled while running */
    DV_CAT_COUNT_
} dv_category_t;

const char *dv_category_name(dv_category_t c);
dv_category_t dv_category_parse(const char *name,
                                size_t len); /* NONE if unknown */

/* ---- error codes (sent as numbers) ------------------------------------- */

/* Why a request or message was refused, as a number peers branch on (the
 * reason text next to it is for people). Sent as ["code"] in error and
 * reply; absent means DV_CODE_NONE, which is what older peers send. The
 * numbers are part of the protocol: new codes are added at the end, and a
 * code this side does not know is kept as its number (treat it like
 * DV_CODE_INTERNAL). docs/protocol.md lists which reasons use which. */
typedef enum {
    DV_CODE_NONE = 0,         /* unspecified (an older peer, or success) */
    DV_CODE_MALFORMED = 1,    /* not a valid message (decode failed, framing) */
    DV_CODE_TOO_BIG = 2,      /* a frame, string, array or nesting too big */
    DV_CODE_VERSION = 3,      /* a protocol version this side does not speak */
    DV_CODE_UNKNOWN_TYPE = 4, /* a message type not taken on this socket */
    DV_CODE_UNKNOWN_WORKER = 5,   /* a worker the broker does not know: hello */
    DV_CODE_UNKNOWN_VERB = 6,     /* a ctrl verb this side does not serve */
    DV_CODE_NOT_FOUND = 7,        /* no such job, worker, queue */
    DV_CODE_INVALID_ARGUMENT = 8, /* a missing or bad argument to a verb */
    DV_CODE_NOT_ALLOWED = 9,  /* not in this state (job already ended, ...) */
    DV_CODE_TRY_AGAIN = 10,   /* not yet possible; the same request may
                               * succeed in a moment (job not committed) */
    DV_CODE_STORE = 11,       /* the store failed or is unavailable */
    DV_CODE_NO_MEMORY = 12,   /* the peer ran out of memory */
    DV_CODE_INTERNAL = 13,    /* anything else that went wrong on the peer */
    DV_CODE_STALE_LEASE = 14, /* a report about a job under a lease that is
                               * not (or no longer) the sender's: drop or
                               * stop that copy of the job */
    DV_CODE_STANDBY = 15,     /* a standby broker: another one is active;
                               * try the next endpoint at once */
    DV_CODE_DENIED = 16,      /* the sender's certificate (its role, or a key
                          * no longer in the allow-lists) may not do this */
    DV_CODE_COUNT_
} dv_code_t;

/* The code's wire-stable name ("not_found"); "none" for DV_CODE_NONE,
 * "unknown" for a number this side does not know. */
const char *dv_code_name(dv_code_t c);
/* DV_CODE_NONE if name is not a code name. */
dv_code_t dv_code_parse(const char *name, size_t len);
/* The code that answers a failed dv_msg_decode() with error err
 * (DV_ETRUNC, DV_EPROTO -> MALFORMED; DV_ETOOBIG -> TOO_BIG; DV_EVERSION ->
 * VERSION; DV_ENOMEM -> NO_MEMORY; anything else -> INTERNAL). */
dv_code_t dv_code_from_err(int err);

/* ---- message bodies ---------------------------------------------------- */

/* A job as submitted. Wire keys in brackets. */
typedef struct {
    dv_str_t queue;       /* ["queue"] required, 1..DV_NAME_MAX */
    dv_str_t type;        /* ["type"] required, 1..DV_NAME_MAX */
    dv_str_t payload;     /* ["payload"] bin: one msgpack value; absent = nil */
    dv_str_t key;         /* ["key"] idempotency key, optional */
    dv_str_t batch;       /* ["batch"] optional, <= DV_NAME_MAX */
    dv_str_t trace;       /* ["trace"] W3C traceparent, optional */
    int32_t priority;     /* ["priority"] 0..9, higher first; default 5 */
    int64_t run_at_ms;    /* ["run_at"] epoch ms; 0 = now */
    int32_t max_attempts; /* ["max_attempts"] 1..1000; 0 = broker default */
    int64_t timeout_ms;   /* ["timeout"] ms per attempt; 0 = worker default */
    bool has_backoff;     /* ["backoff"] present */
    dv_backoff_t backoff; /* ["backoff"] map {base, factor, cap, jitter}, ms */
    int64_t result_ttl_ms; /* ["result_ttl"] 0 = broker default */
    /* Not on the wire (the decoder never fills it): the schedule whose
     * firing the broker submits itself (broker_schedule.c), stored with
     * the job (jobs.schedule). */
    dv_str_t schedule;
    /* ["after"] ids of jobs that must all have succeeded before it runs;
     * ["after_any"] ids of jobs that must all have ended, however. At most
     * DV_AFTER_MAX each; absent = none (docs/dependencies-between-jobs.md). */
    dv_str_t *after;
    uint32_t nafter;
    dv_str_t *after_any;
    uint32_t nafter_any;
} dv_jobspec_t;

#define DV_AFTER_MAX 100

#define DV_PRIORITY_DEFAULT 5

/* Broker's answer for one submitted job, in submit order. Either id (the new
 * job's, or with duplicate the first job with the same key) or error. */
typedef struct {
    dv_str_t id;    /* ["id"] */
    bool duplicate; /* ["duplicate"] */
    dv_str_t error; /* ["error"] reason the job was refused */
    dv_code_t code; /* ["code"] why error; 0 = unspecified
                              * (absent) */
} dv_submit_ack_t;

/* Why an attempt failed. Never holds secrets. */
typedef struct {
    dv_category_t category; /* ["category"] name */
    dv_str_t message;       /* ["message"] <= DV_TEXT_MAX */
    bool retryable;         /* ["retryable"] */
    int64_t retry_after_ms; /* ["retry_after"] ms; 0 = none */
    int32_t exit_code;      /* ["exit_code"] -1 = none */
    int32_t signal;         /* ["signal"] 0 = none */
    int32_t http_status;    /* ["http_status"] 0 = none */
    dv_str_t key_id;        /* ["key_id"] API key id, never the key */
    /* What the handler said about the failure beyond its message (a
     * traceback: exec DETAIL lines), and the tail of what it wrote to
     * stderr; each valid UTF-8, <= DV_DETAILS_MAX, absent when empty.
     * Workers send them in reports; the broker keeps them with the attempt
     * (store, `drover job`) and leaves them out of events and results. */
    dv_str_t details;     /* ["details"] */
    dv_str_t stderr_tail; /* ["stderr"] */
} dv_failure_t;

/* Initialise a failure with "none" markers (exit_code -1). */
void dv_failure_init(dv_failure_t *f);

/* A job as delivered to a worker. */
typedef struct {
    dv_str_t id;          /* ["id"] 36-char UUIDv7 */
    dv_str_t queue;       /* ["queue"] */
    dv_str_t type;        /* ["type"] */
    dv_str_t payload;     /* ["payload"] bin */
    dv_str_t trace;       /* ["trace"] optional */
    dv_str_t batch;       /* ["batch"] optional */
    int32_t attempt;      /* ["attempt"] 1-based */
    int32_t max_attempts; /* ["max_attempts"] */
    int64_t timeout_ms;   /* ["timeout"] 0 = worker default */
    int64_t enqueued_ms;  /* ["enqueued"] when it became ready (epoch ms) */
    uint64_t lease;       /* ["lease"] this execution's lease token: every
                           * report about it names it (DV_LEASE_*) */
} dv_job_t;

/* A lease token names one execution of a job: the broker's generation
 * (stored once per start) in the high bits, a counter of leases handed out
 * in that start in the low bits. Unique across restarts without a write
 * per lease; 0 means none. */
#define DV_LEASE_COUNTER_BITS 40
static inline uint64_t
dv_lease_make(uint64_t generation, uint64_t counter)
{
    return (generation << DV_LEASE_COUNTER_BITS) |
           (counter & ((UINT64_C(1) << DV_LEASE_COUNTER_BITS) - 1));
}
static inline uint64_t
dv_lease_generation(uint64_t lease)
{
    return lease >> DV_LEASE_COUNTER_BITS;
}

typedef enum {
    DV_UPD_STARTED = 1, /* a child began the attempt */
    DV_UPD_PROGRESS,    /* current/total/message */
    DV_UPD_SUCCEEDED,   /* result */
    DV_UPD_FAILED,      /* failure */
    DV_UPD_RETURNED,    /* never started; give it back without an attempt */
} dv_update_kind_t;

/* "started", "progress", ...; "none" for a value out of range. */
const char *dv_update_kind_name(dv_update_kind_t k);

/* One report from a worker about one job. ["kind"] is the lower-case name:
 * "started", "progress", "succeeded", "failed", "returned". */
typedef struct {
    dv_update_kind_t kind;
    dv_str_t id;          /* ["id"] */
    int32_t attempt;      /* ["attempt"] */
    int64_t ts_ms;        /* ["ts"] epoch ms at the worker */
    int64_t current;      /* ["current"] progress */
    int64_t total;        /* ["total"] progress; 0 = unknown */
    dv_str_t message;     /* ["message"] progress text */
    dv_str_t result;      /* ["result"] bin: one msgpack value */
    dv_failure_t failure; /* ["failure"] map */
    uint64_t lease;       /* ["lease"] the lease the job came with */
    /* ["started"] succeeded/failed only: epoch ms at the worker when the
     * attempt began, sent instead of a separate "started" item when both
     * go in one update (a fast job); 0 = absent. */
    int64_t started_ms;
} dv_update_t;

/* A terminal outcome told to a waiting client. */
typedef struct {
    dv_str_t id;          /* ["id"] */
    dv_state_t state;     /* ["state"] succeeded|dead|cancelled|unknown */
    int32_t attempts;     /* ["attempts"] attempts made */
    dv_str_t result;      /* ["result"] bin, when succeeded */
    bool has_failure;     /* ["failure"] present */
    dv_failure_t failure; /* ["failure"] the last failure */
    int64_t finished_ms;  /* ["finished"] epoch ms */
} dv_result_t;

/* A job the worker still holds when it (re)joins; also a job the broker
 * revokes (welcome). */
typedef struct {
    dv_str_t id;     /* ["id"] */
    int32_t attempt; /* ["attempt"] */
    uint64_t lease;  /* ["lease"] */
    bool started;    /* ["started"] its execution began (held only) */
} dv_held_t;

/* Event kinds the broker publishes. The wire carries the kind as text
 * (["kind"], also the PUB topic); a kind this side does not know decodes as
 * DV_EV_OTHER with its text kept in dv_event_t.kind, so new kinds need no
 * new protocol version. Names: see dv_event_kind_name(). */
typedef enum {
    DV_EV_OTHER = 0,        /* not one of these; the text says which */
    DV_EV_JOB_SUBMITTED,    /* "job.submitted" */
    DV_EV_JOB_STARTED,      /* "job.started" */
    DV_EV_JOB_PROGRESS,     /* "job.progress" */
    DV_EV_JOB_SUCCEEDED,    /* "job.succeeded" */
    DV_EV_JOB_FAILED,       /* "job.failed" */
    DV_EV_JOB_DEAD,         /* "job.dead" */
    DV_EV_JOB_CANCELLED,    /* "job.cancelled" */
    DV_EV_JOB_RETRIED,      /* "job.retried" */
    DV_EV_QUEUE_PAUSED,     /* "queue.paused" */
    DV_EV_QUEUE_RESUMED,    /* "queue.resumed" */
    DV_EV_QUEUE_LIMITS,     /* "queue.limits" */
    DV_EV_WORKER_JOINED,    /* "worker.joined" */
    DV_EV_WORKER_LEFT,      /* "worker.left" */
    DV_EV_WORKER_EXPIRED,   /* "worker.expired" */
    DV_EV_WORKER_HEARTBEAT, /* "worker.heartbeat" */
    DV_EV_WORKER_DRAINING,  /* "worker.draining" */
    DV_EV_JOB_RELEASED,     /* "job.released": left state waiting */
    DV_EV_COUNT_
} dv_event_kind_t;

/* The kind's wire name ("job.succeeded"); "other" for DV_EV_OTHER or a
 * value out of range. */
const char *dv_event_kind_name(dv_event_kind_t k);
/* DV_EV_OTHER if name is not a known kind. */
dv_event_kind_t dv_event_kind_parse(const char *name, size_t len);

/* Broker event (PUB). Fields that do not apply are absent. */
typedef struct {
    uint64_t seq;    /* ["seq"] per broker, +1 per event, from 1 */
    dv_str_t broker; /* ["broker"] broker instance id */
    int64_t ts_ms;   /* ["ts"] */
    dv_str_t kind;   /* ["kind"] e.g. "job.succeeded"; also the topic */
    dv_event_kind_t kind_enum; /* the same kind as an enum (decoded); when
                              * encoding, used only if kind is absent */
    dv_str_t id;               /* ["id"] job id */
    dv_str_t queue;            /* ["queue"] */
    dv_str_t type;             /* ["type"] */
    dv_str_t batch;            /* ["batch"] */
    dv_str_t worker;           /* ["worker"] */
    int32_t attempt;           /* ["attempt"] */
    dv_state_t state;          /* ["state"] */
    dv_state_t was;    /* ["was"] job.cancelled, job.released: the state the
                     * job left when it was "waiting"; absent otherwise */
    int64_t run_at_ms; /* ["run_at"] next attempt, for retries */
    int64_t wait_ms;   /* ["wait"] queued -> started */
    int64_t run_ms;    /* ["run"] started -> finished */
    /* ["started"] job.succeeded only: the attempt's start (epoch ms) when
     * no job.started was sent for it (its start and its outcome came in
     * one report); then "wait" is the start's wait too. */
    int64_t started_ms;
    int64_t current, total; /* ["current"], ["total"] */
    dv_str_t message;       /* ["message"] progress text */
    bool has_failure;
    dv_failure_t failure; /* ["failure"] */
    dv_str_t body;        /* ["body"] bin: extra msgpack map (stats) */
} dv_event_t;

/* The event's kind as it goes on the wire and as its PUB topic: the kind
 * text when set, else the name of kind_enum; absent if neither is set. */
dv_str_t dv_event_topic(const dv_event_t *ev);

/* The PUB topic of an "events" message (the job events of one group). */
#define DV_EVENTS_TOPIC "jobs"

/* Whether ev goes in a "jobs" batch: a kind that starts with "job.". */
bool dv_event_is_job(const dv_event_t *ev);

/* Builds an "events" message one event at a time, straight into one
 * buffer: dv_events_begin() appends the envelope with an empty events
 * array, each dv_events_add() appends one event's map and counts it in the
 * array's header (a fixed-width array32 header, so nothing moves). Between
 * calls the bytes from start to the end of out are always a complete
 * message; nothing else may be appended to out while one is being built.
 * Holds offsets, not pointers, so out may grow. */
typedef struct {
    size_t start; /* where the message starts in out */
    uint32_t n;   /* events added */
} dv_events_enc_t;

/* DV_OK or DV_ENOMEM (out is then as it was). */
int dv_events_begin(dv_events_enc_t *e, msgpack_sbuffer *out);
/* DV_OK, or DV_ENOMEM (out is then as before the call) or DV_ETOOBIG
 * (already DV_ITEMS_MAX events). */
int dv_events_add(dv_events_enc_t *e, msgpack_sbuffer *out,
                  const dv_event_t *ev);

typedef enum {
    DV_MSG_NONE = 0,
    /* client <-> broker (clients ROUTER) */
    DV_MSG_SUBMIT,       /* "submit"  req, jobs[] */
    DV_MSG_SUBMIT_REPLY, /* "submitted" req, acks[] */
    DV_MSG_WAIT,         /* "wait"    req, ids[]: tell me when these end */
    DV_MSG_RESULT,       /* "result"  results[] (pushed, batched) */
    DV_MSG_CTRL,  /* "ctrl"    req, verb, id/queue/worker/...: control verbs */
    DV_MSG_REPLY, /* "reply"   req, ok, error, body */
    DV_MSG_ERROR, /* "error"   req, reason, version: message rejected */
    /* worker supervisor <-> broker (workers ROUTER) */
    DV_MSG_HELLO, /* "hello"   name, host, pid, queues[], concurrency, credit, held[], fencing */
    DV_MSG_WELCOME, /* "welcome" broker, heartbeat, worker_timeout, revoked[] */
    DV_MSG_JOBS,    /* "jobs"    jobs[] */
    DV_MSG_UPDATE,  /* "update"  credit, items[] */
    DV_MSG_HEARTBEAT, /* "heartbeat" busy, idle, processed, failed, body; ack */
    DV_MSG_BYE,       /* "bye"     worker leaves (after returning its jobs) */
    DV_MSG_KILL, /* "kill"    id, reason, lease, code: drop or stop a job */
    /* broker -> PUB */
    DV_MSG_EVENT, /* "event" */
    /* broker -> worker (added after event: names, not numbers, go on the
     * wire, but the enum stays stable for code that stores it) */
    DV_MSG_DRAIN, /* "drain"   stop taking jobs, finish, say bye */
    /* worker <-> broker, both ways: the fleet's API keys (dv_keyitem_t) */
    DV_MSG_KEYS, /* "keys"    items[] */
    /* broker -> PUB: the job events of one group commit, topic "jobs" */
    DV_MSG_EVENTS, /* "events"  events[] */
    DV_MSG_COUNT_
} dv_msg_type_t;

const char *dv_msg_type_name(dv_msg_type_t t);

typedef struct {
    uint64_t req;    /* ["req"] the client's request number */
    dv_str_t verb;   /* ["verb"] cancel, status, job, retry, ... */
    dv_str_t id;     /* ["id"] job id */
    dv_str_t queue;  /* ["queue"] */
    dv_str_t worker; /* ["worker"] */
    bool dead;       /* ["dead"] e.g. retry --dead */
    bool has_value;
    double value;  /* ["value"] e.g. a rate */
    dv_str_t args; /* ["args"] bin: a msgpack map of further
                              * arguments (query filters), optional */
} dv_ctrl_t;

typedef struct {
    uint64_t req;   /* ["req"] */
    bool ok;        /* ["ok"] */
    dv_str_t error; /* ["error"] when !ok */
    dv_str_t body;  /* ["body"] bin: a msgpack value, optional */
    dv_code_t code; /* ["code"] when !ok; 0 = unspecified (absent) */
} dv_reply_t;

typedef struct {
    uint64_t req;     /* ["req"] of the rejected message, 0 if unknown */
    dv_str_t reason;  /* ["reason"] */
    uint32_t version; /* ["version"] protocol version the sender speaks */
    dv_code_t code;   /* ["code"] 0 = unspecified (absent) */
} dv_error_t;

typedef struct {
    dv_str_t name;    /* ["name"] unique worker name (host:pid default) */
    dv_str_t host;    /* ["host"] */
    int32_t pid;      /* ["pid"] */
    dv_str_t *queues; /* ["queues"] 1..DV_QUEUES_MAX names */
    uint32_t nqueues;
    int32_t concurrency; /* ["concurrency"] child processes */
    int32_t credit;      /* ["credit"] jobs the broker may send now */
    dv_held_t *held;     /* ["held"] jobs it still runs (after reconnect) */
    uint32_t nheld;
    bool fencing; /* ["fencing"] its reports carry lease tokens; a broker
                   * that fences leases refuses a hello without it */
} dv_hello_t;

typedef struct {
    dv_str_t broker;           /* ["broker"] broker instance id */
    int64_t heartbeat_ms;      /* ["heartbeat"] how often to send heartbeats */
    int64_t worker_timeout_ms; /* ["worker_timeout"] silence before expiry */
    dv_held_t *revoked;        /* ["revoked"] jobs the hello listed that are no
                         * longer the worker's: drop or stop them */
    uint32_t nrevoked;
} dv_welcome_t;

typedef struct {
    int32_t busy;      /* ["busy"] children running a job */
    int32_t idle;      /* ["idle"] */
    int64_t processed; /* ["processed"] attempts finished */
    int64_t failed;    /* ["failed"] attempts failed */
    dv_str_t body;     /* ["body"] bin: metrics map, optional */
    uint64_t ack;      /* ["ack"] broker -> worker: every update up to this seq
                   * was applied and its effects are durable */
} dv_heartbeat_t;

typedef struct {
    dv_str_t id;     /* ["id"] */
    dv_str_t reason; /* ["reason"] */
    uint64_t lease;  /* ["lease"] the copy to stop; 0 = whichever is held */
    dv_code_t code;  /* ["code"] why: stale_lease, or none (cancelled) */
} dv_kill_t;

/* One API key's line in a "keys" message (docs/keys.md). The broker holds
 * each key's fleet-wide state (budget per window, cooldown, disabled,
 * learned limit) and hands workers request allowances in small grants. A
 * key is named by its short hash (the first 8 hex digits of its SHA-256)
 * and its id, never by its text. Counts are since the sender's previous
 * line about the key; zero fields are omitted.
 *
 * Worker -> broker: what its key file says (rpm, tpm, window, when it
 * first names the key after a WELCOME, with recent), what it wants, and
 * what happened since its last line (sent .. disabled). Broker -> worker:
 * grant, ttl, cool, disabled, limit, revoke, probe. */
typedef struct {
    dv_str_t hash; /* ["hash"] required, 1..64 */
    dv_str_t id;   /* ["id"] display id ("key-2", "az-west"), <= DV_NAME_MAX */
    /* worker -> broker: declaration */
    int32_t rpm;       /* ["rpm"] requests per window its config allows;
                        * 0 = not set */
    int64_t tpm;       /* ["tpm"] tokens per window; 0 = not set */
    int64_t window_ms; /* ["window"] the limits' window; 0 = 60 s */
    int32_t recent;    /* ["recent"] requests it ended within the last window
                        * (sent with the declaration after a WELCOME, so a
                        * restarted broker counts them) */
    /* worker -> broker: demand and outcomes */
    int32_t want;     /* ["want"] requests it would like to hold */
    int32_t sent;     /* ["sent"] requests started on grants */
    int32_t done;     /* ["done"] of those, requests that ended */
    int32_t returned; /* ["returned"] granted, never sent (expired, revoked,
                       * no longer needed) */
    int32_t ok;       /* ["ok"] answered 2xx */
    int32_t limited;  /* ["limited"] answered 429 */
    int32_t errors;   /* ["errors"] other failures (5xx, no answer) */
    int64_t tokens;   /* ["tokens"] tokens the ended requests used (the
                       * response's usage) */
    /* both ways */
    int64_t cool_ms;  /* ["cool"] worker: the cooldown its 429s ask for
                       * (Retry-After, else its backoff); broker: the
                       * cooldown left */
    int32_t disabled; /* ["disabled"] the 401/403 that disabled the key;
                       * broker: 0 = enabled */
    /* broker -> worker */
    int32_t grant;  /* ["grant"] more requests it may start */
    int64_t ttl_ms; /* ["ttl"] for how long after it arrives the grant may be
                     * used; what is left then is returned */
    int32_t limit;  /* ["limit"] the fleet's working limit per window now;
                     * 0 = none */
    bool revoke;    /* ["revoke"] drop every grant held on the key (return
                     * it): a 429 or a 401/403 elsewhere in the fleet */
    bool probe;     /* ["probe"] the grant (of 1) tests a disabled key */
} dv_keyitem_t;

/* A decoded (or to-be-encoded) message. */
typedef struct {
    dv_msg_type_t type;
    uint32_t version;
    union {
        struct {
            uint64_t req;
            dv_jobspec_t *jobs;
            uint32_t njobs;
            /* ["wait"] the sender waits for these jobs too: each accepted
             * one pushes its result when it ends, as if "wait" had been
             * sent for it at once */
            bool wait;
        } submit;
        struct {
            uint64_t req;
            dv_submit_ack_t *acks;
            uint32_t nacks;
        } submit_reply;
        struct {
            uint64_t req;
            dv_str_t *ids;
            uint32_t nids;
        } wait;
        struct {
            dv_result_t *results;
            uint32_t nresults;
        } result;
        dv_ctrl_t ctrl;
        dv_reply_t reply;
        dv_error_t error;
        dv_hello_t hello;
        dv_welcome_t welcome;
        struct {
            dv_job_t *jobs;
            uint32_t njobs;
        } jobs;
        struct {
            int32_t credit;
            dv_update_t *items;
            uint32_t nitems;
            uint64_t seq; /* ["seq"] per worker process, +1 per update;
                           * the broker's heartbeat acks it */
        } update;
        dv_heartbeat_t heartbeat;
        dv_kill_t kill;
        dv_event_t event;
        struct {
            dv_event_t *events; /* ["events"] 1..DV_ITEMS_MAX, in seq order */
            uint32_t nevents;
        } events;
        struct {
            dv_keyitem_t *items; /* ["items"] 1..DV_ITEMS_MAX */
            uint32_t nitems;
        } keys;
    } u;
    void *priv_; /* decoder's own allocations; freed by dv_msg_release() */
} dv_msg_t;

/* Decodes one frame into *msg. String views in msg point into data, which
 * must stay alive and unchanged until dv_msg_release(msg). Arrays are
 * allocated by the decoder. Returns DV_OK, or an error code with a one-line
 * reason written to why (if not NULL), e.g. "submit: jobs[3].priority: must be
 * 0..9". On error msg needs no release (releasing it is harmless). Never
 * aborts on any input. */
int dv_msg_decode(const void *data, size_t size, dv_msg_t *msg, char *why,
                  size_t why_size);

/* Frees what dv_msg_decode() allocated. Safe on a zeroed or released msg. */
void dv_msg_release(dv_msg_t *msg);

/* Appends the encoding of msg (version DV_PROTO_VERSION, msg->version is
 * ignored) to out. Absent optional fields (ptr NULL, zero numbers) are
 * omitted. Returns DV_OK or DV_EPROTO if msg->type is not a message type. The
 * caller owns out. */
int dv_msg_encode(const dv_msg_t *msg, msgpack_sbuffer *out);

/* True if a and b hold the same message: the same type and the same value
 * in every field the schema of that type knows (strings and bins by their
 * bytes, absent differing from empty; arrays item by item; a nested map
 * behind a has_ flag only when the flag is set). version and priv_ are not
 * compared. When they differ and diff is not NULL, the first difference is
 * described there, e.g. "submit: jobs[1].priority: 0 != 5". */
bool dv_msg_equal(const dv_msg_t *a, const dv_msg_t *b, char *diff,
                  size_t diff_size);

/* Checks that data holds exactly one well-formed msgpack value whose
 * containers nest at most max_depth deep and whose element counts fit the
 * bytes available. Returns DV_OK, DV_ETRUNC or DV_ETOOBIG. Used on payloads
 * and results, and before unpacking any frame, so a header that claims four
 * billion elements is refused before anything is allocated. */
int dv_mp_validate(const void *data, size_t size, int max_depth);

#endif
