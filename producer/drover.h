/* drover.h - libdrover, the C client library of the drover job queue.
 *
 * A producer connects to a broker, submits jobs (one, or many pipelined in
 * batches), waits for their results, and cancels or inspects them:
 *
 *     drover_client_t *c = drover_connect(NULL, 5000);
 *     drover_job_t job;
 *     drover_job_init(&job);
 *     job.type = "echo";
 *     job.payload_json = "{\"hello\": \"world\"}";
 *     char id[DROVER_ID_SIZE];
 *     if (drover_submit(c, &job, id) != DROVER_OK)
 *         fprintf(stderr, "submit: %s\n", drover_last_error(c));
 *     drover_close(&c);
 *
 * Threads: a client is not thread-safe; use one client per thread (clients
 * share nothing, so several may run side by side).
 *
 * Errors: every call that can fail returns DROVER_OK (0) or one of the
 * drover_err_t codes, and leaves a one-line reason in drover_last_error().
 * Nothing here aborts on bad input or on a misbehaving broker, and the
 * library writes nothing to stdout or stderr.
 *
 * Durations at this interface are seconds (double, fractions allowed); times
 * are milliseconds since the Unix epoch.
 *
 * Compile and link with: pkg-config --cflags --libs libdrover
 */
#ifndef DROVER_H
#define DROVER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DROVER_VERSION_MAJOR 0
#define DROVER_VERSION_MINOR 1
#define DROVER_VERSION_PATCH 0

/* A job id is a 36-character UUIDv7; buffers for one hold DROVER_ID_SIZE. */
#define DROVER_ID_LEN  36
#define DROVER_ID_SIZE 37

/* Endpoint used when drover_connect() is given NULL and DROVER_BROKER is not
 * set. */
#define DROVER_DEFAULT_ENDPOINT "tcp://127.0.0.1:7700"

typedef enum {
    DROVER_OK = 0,
    DROVER_EINVAL = 1,       /* bad argument, or a job that is not valid */
    DROVER_EUNREACHABLE = 2, /* no answer from any broker within the timeout */
    DROVER_ETIMEOUT = 3,     /* the broker answered, not everything in time */
    DROVER_EREJECTED = 4,    /* the broker refused the request or the job */
    DROVER_EPROTO = 5,       /* an answer that does not fit the protocol */
    DROVER_ENOMEM = 6,       /* out of memory */
} drover_err_t;

/* Short English text for an error code ("broker unreachable", ...). Never
 * NULL; unknown codes give "unknown error". */
const char *drover_strerror(int err);

/* Opaque client: one connection (a ZeroMQ DEALER socket) to one broker of a
 * list, with failover between them. */
typedef struct drover_client_t drover_client_t;

/* Creates a client for a comma-separated list of broker endpoints
 * ("tcp://b1:7700,tcp://b2:7700"); NULL or "" means the DROVER_BROKER
 * environment variable, else DROVER_DEFAULT_ENDPOINT. timeout_ms (> 0; 0 or
 * less means 5000) is how long a request waits for an answer before the
 * client fails over to the next endpoint; a request is tried once on each
 * endpoint before it fails with DROVER_EUNREACHABLE. CurveZMQ is used when
 * the DROVER_CURVE_SECRET and DROVER_CURVE_SERVER environment variables
 * name the certificates (see drover_connect_opts()).
 *
 * Does not block and does not contact the broker: ZeroMQ connects in the
 * background, so an unreachable broker shows up on the first request.
 * Returns NULL if an endpoint is malformed or memory runs out; the reason is
 * then in drover_last_error(NULL) (per thread). The caller owns the client
 * and frees it with drover_close(). */
drover_client_t *drover_connect(const char *endpoints, int timeout_ms);

/* Options for drover_connect_opts(). Initialise with drover_opts_init(),
 * then set what you need; strings are only read during the call. */
typedef struct {
    const char *endpoints; /* as for drover_connect(); NULL = the default */
    int timeout_ms;        /* as for drover_connect(); 0 = 5000 */
    /* CurveZMQ: the path of our certificate's secret file (zcert format,
     * as `drover keygen` writes it, mode 0600) and of the broker's public
     * certificate. NULL = the DROVER_CURVE_SECRET / DROVER_CURVE_SERVER
     * environment variable; "" = none, whatever the environment says.
     * Neither: plain ZeroMQ. Both are needed for CurveZMQ. */
    const char *curve_secret;
    const char *curve_server;
} drover_opts_t;

/* Fills o with the defaults (everything NULL or 0). */
void drover_opts_init(drover_opts_t *o);

/* drover_connect() with options. With CurveZMQ the certificates are read
 * here: a missing or unreadable file, a secret file that group or others
 * may read, or one of the two without the other fails at once (NULL, the
 * reason in drover_last_error(NULL), naming the file, never a key). A
 * broker that does not know our key, or that is not the server whose
 * certificate was given, does not answer: requests end with
 * DROVER_EUNREACHABLE. */
drover_client_t *drover_connect_opts(const drover_opts_t *o);

/* Closes the socket and frees the client; sets *self_p to NULL. NULL-safe.
 * Requests that were not answered are dropped (every call here returns only
 * after its answers came or it gave up, so nothing answered is lost). */
void drover_close(drover_client_t **self_p);

/* The reason the client's last failed call failed (empty if it has not
 * failed). With NULL: the reason the calling thread's last drover_connect()
 * failed. Valid until the next call on the client. Never NULL. */
const char *drover_last_error(const drover_client_t *self);

/* The broker's code for the refusal drover_last_error() tells, by name:
 * "not_found", "invalid_argument", "not_allowed", "try_again", ... (the
 * error codes of docs/protocol.md), to branch on instead of the reason
 * text. Set by a call that returned DROVER_EREJECTED, and by
 * drover_submit_many() for the last job the broker refused. NULL when the
 * last failure was not a refusal, when the broker sent no code (one older
 * than the codes), or with NULL. Static storage: never freed. */
const char *drover_last_code(const drover_client_t *self);

/* The endpoint the client is using now (it changes on failover). */
const char *drover_endpoint(const drover_client_t *self);

/* ---- submitting -------------------------------------------------------- */

/* A job to submit. Initialise with drover_job_init(), then set what you need.
 * Strings are NUL-terminated and only read during the submit call; the
 * library copies what it sends. */
typedef struct {
    const char *queue;           /* queue name; NULL = "default" */
    const char *type;            /* handler name; required */
    const char *payload_json;    /* payload as JSON text (any JSON value) */
    const void *payload_msgpack; /* ... or as one msgpack value, when */
    size_t payload_len;          /*     payload_json is NULL; none = null */
    int priority;                /* 0..9, higher first; -1 = default (5) */
    double delay_s;              /* run no earlier than now + delay_s */
    int64_t run_at_ms;           /* ... or at this epoch time; 0 = now */
    int max_attempts;            /* 1..1000; 0 = broker default (5) */
    double timeout_s;            /* limit per attempt; 0 = worker default */
    const char *key;             /* idempotency key; NULL = none */
    const char *batch;           /* batch name; NULL = none */
    const char *trace;           /* W3C traceparent; NULL = none */
    double backoff_base_s;       /* retry delay after 1st failure; <0 = dflt */
    double backoff_factor;       /* growth per attempt, >= 1; <0 = default */
    double backoff_cap_s;        /* largest retry delay; <0 = default */
    int backoff_jitter;          /* 1 full jitter, 0 none; -1 = default */
    double result_ttl_s;         /* keep the result this long; 0 = default */
    /* Jobs it waits for (docs/dependencies-between-jobs.md), by id: it
     * runs once all of after have succeeded and all of after_any have
     * ended (however); until then its state is "waiting". If one of after
     * ends dead or cancelled, it is cancelled. At most 100 ids each;
     * NULL/0 = none. Every id must name an existing job (else the broker
     * refuses the job with code not_found). */
    const char *const *after;
    size_t nafter;
    const char *const *after_any;
    size_t nafter_any;
} drover_job_t;

/* Sets every field to "default": NULL strings, zero times, -1 for priority
 * and the backoff fields. */
void drover_job_init(drover_job_t *job);

/* Submits one job and waits until the broker has committed it to its store.
 * Writes the job id (36 characters + NUL) to id_out. A job whose key was
 * submitted before is not added again: id_out gets the first job's id.
 * Returns DROVER_OK; DROVER_EINVAL if the job is not valid (nothing is sent);
 * DROVER_EREJECTED if the broker refused it; DROVER_EUNREACHABLE,
 * DROVER_ETIMEOUT, DROVER_EPROTO, DROVER_ENOMEM. The reason is in
 * drover_last_error().
 *
 * After a failover a request is sent again to the next broker; if the first
 * one committed the job but its answer was lost, the job then exists twice
 * unless it has a key. Give jobs a key where that matters. */
int drover_submit(drover_client_t *self, const drover_job_t *job,
                  char id_out[DROVER_ID_SIZE]);

/* One answer of drover_submit_many(), for the job at the same index. */
typedef struct {
    char id[DROVER_ID_SIZE]; /* the job id; "" if the job was not accepted */
    int duplicate;           /* 1: the key was seen; id is the first job's */
    char error[256];         /* why it was not accepted; "" if it was */
    int unanswered;          /* 1: no answer came for it (error says "no
                                answer from broker"): it may or may not
                                have been committed */
    const char *code;        /* the broker's code for refusing it, as
                                drover_last_code() names it; NULL if it
                                was accepted, not valid, unanswered, or
                                the broker sent no code */
} drover_ack_t;

/* Submits n jobs, many per message (at most 1000 jobs or 4 MiB each) with
 * up to 32 messages in flight, and fills acks[0..n-1] (caller-allocated) in
 * job order. A job is accepted (committed by the broker) exactly when its
 * acks[i].error is empty. Jobs that are not valid are not sent; their error
 * says why, as does the broker's reason for a job it refused.
 *
 * Returns DROVER_OK when every job has its answer (accepted or not: check
 * the acks). Returns DROVER_EUNREACHABLE (no broker answered anything) or
 * DROVER_ETIMEOUT (answers stopped coming) when some messages got no answer
 * from any endpoint: their jobs' error is "no answer from broker", and they
 * may or may not have been committed. DROVER_EREJECTED when the broker could
 * not read the messages at all (e.g. another protocol version);
 * DROVER_EINVAL for NULL arguments; DROVER_ENOMEM. */
int drover_submit_many(drover_client_t *self, const drover_job_t *jobs,
                       size_t n, drover_ack_t *acks);

/* drover_submit_many() with flags:
 *   DROVER_SUBMIT_WAIT  the caller means to drover_wait() for these jobs:
 *                       the broker pushes each accepted job's result as it
 *                       ends, and the client keeps what arrives until the
 *                       next drover_wait() on this client, which reports
 *                       it first and asks only for the rest. Without it,
 *                       a wait that follows a big submit makes the broker
 *                       look up every job that ended meanwhile in its
 *                       store. Results kept are dropped by a drover_wait()
 *                       that does not ask for them. */
#define DROVER_SUBMIT_WAIT 1u
int drover_submit_many_ex(drover_client_t *self, const drover_job_t *jobs,
                          size_t n, drover_ack_t *acks, unsigned flags);

/* ---- waiting for results ----------------------------------------------- */

/* One job's outcome, as given to a drover_result_cb. Strings are valid only
 * during the callback; copy what you keep. */
typedef struct {
    const char *id;          /* the job id */
    size_t index;            /* its position in the ids given to drover_wait */
    const char *state;       /* "succeeded", "dead", "cancelled", or
                                "unknown" (the broker has no such job) */
    int attempts;            /* attempts made */
    const char *result_json; /* the result as JSON text; NULL unless
                                succeeded */
    const char *category;    /* last failure's category ("timeout", ...);
                                NULL if none */
    const char *error;       /* last failure's message; NULL if none */
    int64_t finished_ms;     /* when it ended (epoch ms); 0 if unknown */
    int more;                /* 1: more results follow at once (they came
                                in the same answer); a hint for batching
                                output: flush or redraw when it is 0 */
} drover_result_t;

/* Called once per job as its result arrives. Return 0 to go on, anything
 * else to make drover_wait() return DROVER_OK at once (the remaining
 * results are then not reported). */
typedef int (*drover_result_cb)(const drover_result_t *result, void *arg);

/* Waits until each of the n jobs in ids has ended (succeeded, dead,
 * cancelled, or unknown to the broker) and calls cb once per distinct id as
 * its result arrives (an id given twice is reported once, with the index of
 * its first place). timeout_ms < 0 waits for ever.
 *
 * Blocks. Survives broker restarts and failover: when nothing has arrived for
 * 5 s it asks again for the jobs still outstanding, and when the broker stays
 * silent for the client's timeout it reconnects (to the next endpoint, if
 * there are several). It never gives up on its own before timeout_ms.
 *
 * Returns DROVER_OK when every job was reported (or cb asked to stop),
 * DROVER_ETIMEOUT when timeout_ms passed first, DROVER_EINVAL when an id is
 * not a job id, DROVER_EREJECTED if the broker refused the request. */
int drover_wait(drover_client_t *self, const char *const *ids, size_t n,
                int timeout_ms, drover_result_cb cb, void *arg);

/* ---- control ----------------------------------------------------------- */

/* Cancels a job: a queued or scheduled one becomes cancelled at once; a
 * running one is stopped by its worker. Returns DROVER_OK, DROVER_EREJECTED
 * when the broker says no (e.g. the job has already ended; the reason is in
 * drover_last_error()), DROVER_EINVAL, DROVER_EUNREACHABLE. */
int drover_cancel(drover_client_t *self, const char *id);

/* A control request; fields that do not apply to the verb are NULL/0. */
typedef struct {
    const char *verb;   /* "cancel", "status", "job", "retry", "pause", ... */
    const char *id;     /* job id */
    const char *queue;  /* queue name */
    const char *worker; /* worker name */
    int dead;           /* e.g. retry every dead job of the queue */
    int has_value;      /* value is set */
    double value;       /* e.g. a rate limit */
    const char *args_json; /* further arguments as a JSON object (query
                              filters); NULL = none */
} drover_ctrl_t;

/* Sends a control verb (see docs/protocol.md) and waits for the answer. When
 * body_json_out is not NULL, *body_json_out gets the answer's body as JSON
 * text (caller frees with free()), or NULL when the answer has no body.
 * Returns DROVER_OK, DROVER_EREJECTED if the broker answered ok:false (its
 * reason in drover_last_error()), DROVER_EINVAL, DROVER_EUNREACHABLE,
 * DROVER_EPROTO, DROVER_ENOMEM. */
int drover_ctrl_ex(drover_client_t *self, const drover_ctrl_t *req,
                   char **body_json_out);

/* The same with just a verb, an optional job id and an optional queue. */
int drover_ctrl(drover_client_t *self, const char *verb, const char *id,
                const char *queue, char **body_json_out);

/* ---- batches ------------------------------------------------------------ */

/* One page of the jobs of batch name (docs/batches.md), in id order: those
 * after job id after (NULL: from the first), at most limit (1..1000; 0 =
 * 100). *page_json_out gets the page as JSON text (caller frees with
 * free()): {"jobs": [{"id", "type", "state", "attempt", "result"?,
 * "category"?, "error"?, "finished"?}], "more": true|false, "next"?: the
 * id to pass as after for the next page}. A client under CurveZMQ sees
 * only its own jobs. Returns DROVER_OK, DROVER_EINVAL (a bad name, after
 * or limit: nothing is sent), DROVER_EREJECTED, DROVER_EUNREACHABLE,
 * DROVER_EPROTO, DROVER_ENOMEM. */
int drover_batch_jobs(drover_client_t *self, const char *name,
                      const char *after, int limit, char **page_json_out);

#ifdef __cplusplus
}
#endif

#endif
