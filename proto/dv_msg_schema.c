/* dv_msg_schema - the wire schema of every message, as tables: one row per
 * key (key, type, flags, bounds, where it lives in the struct), in the order
 * the encoder writes them. docs/protocol.md ("Messages, key by key") is the
 * same information for people; a change here is a change there.
 *
 * Top-level tables describe fields of dv_msg_t (offsets into its union);
 * nested tables describe the item structs. The few rules a row cannot say
 * are the hooks at the end of each table: defaults (init), "required
 * unless" (need), rules across fields (check), and when the encoder writes
 * a field (present). Read by dv_msg.c through dv_msg_schema(). Constant
 * data; any thread. */
#include "dv_msg_schema.h"

#include <inttypes.h>

/* ---- shared maps ---------------------------------------------------------- */

static void
s_backoff_init(void *obj)
{
    *(dv_backoff_t *)obj = DV_BACKOFF_DEFAULT;
}

static int
s_backoff_check(dv_dec_t *d, const void *obj)
{
    const dv_backoff_t *b = obj;
    if (b->cap_ms < b->base_ms)
        return dv_dec_fail_at(d, "cap", DV_EPROTO,
                              "must be >= base (%" PRId64 ")", b->base_ms);
    return DV_OK;
}

#define T dv_backoff_t
static const dv_field_t s_backoff_fields[] = {
    { DV_F_I64("base", T, base_ms, 0, 0, INT64_MAX) },
    { DV_F_DBL("factor", T, factor, DV_FF_DMIN), .min = 1 },
    { DV_F_I64("cap", T, cap_ms, 0, 0, INT64_MAX) },
    { DV_F_BOOL("jitter", T, jitter, 0) },
};
#undef T
static const dv_schema_t s_backoff = {
    DV_SCHEMA("backoff", s_backoff_fields, dv_backoff_t),
    .init = s_backoff_init,
    .check = s_backoff_check,
};

static void
s_failure_init(void *obj)
{
    dv_failure_init(obj);
}

#define T dv_failure_t
static const dv_field_t s_failure_fields[] = {
    { DV_F_ENUM("category", T, category, DV_FF_REQ, &dv_enum_category) },
    { DV_F_TEXT("message", T, message, 0) },
    { DV_F_BOOL("retryable", T, retryable, 0) },
    { DV_F_I64("retry_after", T, retry_after_ms, DV_FF_OMIT, 0, INT64_MAX) },
    /* absent = -1 (none), so 0 is a real exit code and is sent */
    { DV_F_I32("exit_code", T, exit_code, DV_FF_OMIT, INT32_MIN, INT32_MAX),
      .dflt = -1 },
    { DV_F_I32("signal", T, signal, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_I32("http_status", T, http_status, DV_FF_OMIT, 0, 999) },
    { DV_F_NAME("key_id", T, key_id, 0) },
    { DV_F_STR("details", T, details, 0, 0, DV_DETAILS_MAX) },
    { DV_F_STR("stderr", T, stderr_tail, 0, 0, DV_DETAILS_MAX) },
};
#undef T
static const dv_schema_t s_failure = {
    DV_SCHEMA("failure", s_failure_fields, dv_failure_t),
    .init = s_failure_init,
};

/* ---- producer <-> broker -------------------------------------------------- */

static void
s_jobspec_init(void *obj)
{
    ((dv_jobspec_t *)obj)->priority = DV_PRIORITY_DEFAULT;
}

/* An item of a job's "after" and "after_any": a job id. */
static const dv_field_t s_after_item = {
    .name = "",
    .type = DV_FT_ID,
};

#define T dv_jobspec_t
static const dv_field_t s_jobspec_fields[] = {
    { DV_F_NAME("queue", T, queue, DV_FF_REQ) },
    { DV_F_NAME("type", T, type, DV_FF_REQ) },
    { DV_F_VALUE("payload", T, payload, 0) },
    { DV_F_STR("key", T, key, DV_FF_NAME, 1, DV_KEY_MAX) },
    { DV_F_NAME("batch", T, batch, 0) },
    { DV_F_TEXT("trace", T, trace, 0) },
    /* always written: 0 is a real priority, and absent would mean 5 */
    { DV_F_I32("priority", T, priority, 0, 0, 9) },
    { DV_F_I64("run_at", T, run_at_ms, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_I32("max_attempts", T, max_attempts, DV_FF_OMIT, 0, 1000) },
    { DV_F_I64("timeout", T, timeout_ms, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_MAP("backoff", T, backoff, DV_FF_HAS, &s_backoff),
      DV_HAS(T, has_backoff) },
    { DV_F_I64("result_ttl", T, result_ttl_ms, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_ARRAY_OF("after", T, after, nafter, DV_FF_OMIT, &s_after_item,
                    DV_AFTER_MAX) },
    { DV_F_ARRAY_OF("after_any", T, after_any, nafter_any, DV_FF_OMIT,
                    &s_after_item, DV_AFTER_MAX) },
};
#undef T
static const dv_schema_t s_jobspec = {
    DV_SCHEMA("jobspec", s_jobspec_fields, dv_jobspec_t),
    .init = s_jobspec_init,
};

enum { ACK_ID, ACK_DUPLICATE, ACK_ERROR, ACK_CODE };

/* An ack is either an id or an error. */
static uint32_t
s_ack_need(const void *obj, uint32_t seen, uint32_t need)
{
    return (seen & (1u << ACK_ERROR)) ? 0 : need;
}

#define T dv_submit_ack_t
static const dv_field_t s_ack_fields[] = {
    [ACK_ID] = { DV_F_ID("id", T, id, DV_FF_REQ) },
    [ACK_DUPLICATE] = { DV_F_BOOL("duplicate", T, duplicate, 0) },
    [ACK_ERROR] = { DV_F_TEXT("error", T, error, 0) },
    /* optional, like the code of error and reply */
    [ACK_CODE] = { DV_F_I32("code", T, code, DV_FF_OMIT, 0, INT32_MAX) },
};
#undef T
static const dv_schema_t s_ack = {
    DV_SCHEMA("ack", s_ack_fields, dv_submit_ack_t),
    .need = s_ack_need,
};

static void
s_result_init(void *obj)
{
    dv_failure_init(&((dv_result_t *)obj)->failure);
}

#define T dv_result_t
static const dv_field_t s_result_fields[] = {
    { DV_F_ID("id", T, id, DV_FF_REQ) },
    { DV_F_ENUM("state", T, state, DV_FF_REQ, &dv_enum_state) },
    { DV_F_I32("attempts", T, attempts, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_VALUE("result", T, result, 0) },
    { DV_F_MAP("failure", T, failure, DV_FF_HAS, &s_failure),
      DV_HAS(T, has_failure) },
    { DV_F_I64("finished", T, finished_ms, DV_FF_OMIT, 0, INT64_MAX) },
};
#undef T
static const dv_schema_t s_result = {
    DV_SCHEMA("result", s_result_fields, dv_result_t),
    .init = s_result_init,
};

/* ---- worker supervisor <-> broker ----------------------------------------- */

#define T dv_job_t
static const dv_field_t s_job_fields[] = {
    { DV_F_ID("id", T, id, DV_FF_REQ) },
    { DV_F_NAME("queue", T, queue, DV_FF_REQ) },
    { DV_F_NAME("type", T, type, DV_FF_REQ) },
    { DV_F_VALUE("payload", T, payload, 0) },
    { DV_F_TEXT("trace", T, trace, 0) },
    { DV_F_NAME("batch", T, batch, 0) },
    { DV_F_I32("attempt", T, attempt, DV_FF_REQ, 1, INT32_MAX) },
    { DV_F_I32("max_attempts", T, max_attempts, DV_FF_OMIT, 0, 1000) },
    { DV_F_I64("timeout", T, timeout_ms, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_I64("enqueued", T, enqueued_ms, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_U64("lease", T, lease, DV_FF_OMIT) },
};
#undef T
static const dv_schema_t s_job = {
    DV_SCHEMA("job", s_job_fields, dv_job_t),
};

enum {
    UPD_KIND,
    UPD_ID,
    UPD_ATTEMPT,
    UPD_TS,
    UPD_CURRENT,
    UPD_TOTAL,
    UPD_MESSAGE,
    UPD_RESULT,
    UPD_FAILURE,
    UPD_LEASE,
    UPD_STARTED
};

static void
s_update_init(void *obj)
{
    dv_failure_init(&((dv_update_t *)obj)->failure);
}

/* A failed attempt without its failure could not be retried right. */
static uint32_t
s_update_need(const void *obj, uint32_t seen, uint32_t need)
{
    if (((const dv_update_t *)obj)->kind == DV_UPD_FAILED)
        need |= 1u << UPD_FAILURE;
    return need;
}

/* dv_update_t has no has_failure: a failed item always carries one, any
 * other item only when a category was set. */
static bool
s_update_has_failure(const void *obj)
{
    const dv_update_t *u = obj;
    return u->kind == DV_UPD_FAILED || u->failure.category != DV_CAT_NONE;
}

#define T dv_update_t
static const dv_field_t s_update_fields[] = {
    [UPD_KIND] = { DV_F_ENUM("kind", T, kind, DV_FF_REQ, &dv_enum_update) },
    [UPD_ID] = { DV_F_ID("id", T, id, DV_FF_REQ) },
    [UPD_ATTEMPT] = { DV_F_I32("attempt", T, attempt, DV_FF_REQ, 1,
                               INT32_MAX) },
    [UPD_TS] = { DV_F_I64("ts", T, ts_ms, DV_FF_OMIT, 0, INT64_MAX) },
    [UPD_CURRENT] = { DV_F_I64("current", T, current, DV_FF_OMIT, 0,
                               INT64_MAX) },
    [UPD_TOTAL] = { DV_F_I64("total", T, total, DV_FF_OMIT, 0, INT64_MAX) },
    [UPD_MESSAGE] = { DV_F_TEXT("message", T, message, 0) },
    [UPD_RESULT] = { DV_F_VALUE("result", T, result, 0) },
    [UPD_FAILURE] = { DV_F_MAP("failure", T, failure, 0, &s_failure),
                      .present = s_update_has_failure },
    [UPD_LEASE] = { DV_F_U64("lease", T, lease, DV_FF_OMIT) },
    [UPD_STARTED] = { DV_F_I64("started", T, started_ms, DV_FF_OMIT, 0,
                               INT64_MAX) },
};
#undef T
static const dv_schema_t s_update = {
    DV_SCHEMA("item", s_update_fields, dv_update_t),
    .init = s_update_init,
    .need = s_update_need,
};

#define T dv_held_t
static const dv_field_t s_held_fields[] = {
    { DV_F_ID("id", T, id, DV_FF_REQ) },
    { DV_F_I32("attempt", T, attempt, DV_FF_REQ, 1, INT32_MAX) },
    { DV_F_U64("lease", T, lease, DV_FF_OMIT) },
    { DV_F_BOOL("started", T, started, DV_FF_OMIT) },
};
#undef T
static const dv_schema_t s_held = {
    DV_SCHEMA("held", s_held_fields, dv_held_t),
};

/* One API key's line in a "keys" message, both ways. A key is named by
 * its short hash and its id, never by its text. Every number and flag is
 * omitted when zero: a line says only what changed. The bounds are sanity
 * limits, well above any real key's. */
#define T dv_keyitem_t
static const dv_field_t s_keyitem_fields[] = {
    { DV_F_STR("hash", T, hash, DV_FF_REQ | DV_FF_NAME, 1, 64) },
    { DV_F_NAME("id", T, id, 0) },
    /* worker -> broker: declaration */
    { DV_F_I32("rpm", T, rpm, DV_FF_OMIT, 0, 10000000) },
    { DV_F_I64("tpm", T, tpm, DV_FF_OMIT, 0, INT64_MAX / 2) },
    { DV_F_I64("window", T, window_ms, DV_FF_OMIT, 0, 86400000) },
    { DV_F_I32("recent", T, recent, DV_FF_OMIT, 0, 10000000) },
    /* worker -> broker: demand and outcomes */
    { DV_F_I32("want", T, want, DV_FF_OMIT, 0, 1000000) },
    { DV_F_I32("sent", T, sent, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_I32("done", T, done, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_I32("returned", T, returned, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_I32("ok", T, ok, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_I32("limited", T, limited, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_I32("errors", T, errors, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_I64("tokens", T, tokens, DV_FF_OMIT, 0, INT64_MAX / 2) },
    /* both ways */
    { DV_F_I64("cool", T, cool_ms, DV_FF_OMIT, 0, 86400000) },
    { DV_F_I32("disabled", T, disabled, DV_FF_OMIT, 0, 999) },
    /* broker -> worker */
    { DV_F_I32("grant", T, grant, DV_FF_OMIT, 0, 1000000) },
    { DV_F_I64("ttl", T, ttl_ms, DV_FF_OMIT, 0, 3600000) },
    { DV_F_I32("limit", T, limit, DV_FF_OMIT, 0, 10000000) },
    { DV_F_BOOL("revoke", T, revoke, DV_FF_OMIT) },
    { DV_F_BOOL("probe", T, probe, DV_FF_OMIT) },
};
#undef T
static const dv_schema_t s_keyitem = {
    DV_SCHEMA("key", s_keyitem_fields, dv_keyitem_t),
};

/* ---- broker -> PUB ---------------------------------------------------------- */

/* An event's keys, for the "event" message (fields of dv_msg_t under
 * u.event) and for an item of "events" (a dv_event_t): T is the struct, P
 * the path to the event's fields in it ("u.event." or nothing). */
#define S_EVENT_FIELDS(T, P)                                                   \
    { DV_F_U64("seq", T, P seq, DV_FF_REQ), .min = 1 },                        \
        { DV_F_NAME("broker", T, P broker, DV_FF_REQ) },                       \
        { DV_F_I64("ts", T, P ts_ms, DV_FF_OMIT, 0, INT64_MAX) },              \
        { DV_F_KIND("kind", T, P kind, P kind_enum, DV_FF_REQ,                 \
                    &dv_enum_event) },                                         \
        { DV_F_ID("id", T, P id, 0) }, { DV_F_NAME("queue", T, P queue, 0) },  \
        { DV_F_NAME("type", T, P type, 0) },                                   \
        { DV_F_NAME("batch", T, P batch, 0) },                                 \
        { DV_F_NAME("worker", T, P worker, 0) },                               \
        { DV_F_I32("attempt", T, P attempt, DV_FF_OMIT, 0, INT32_MAX) },       \
        { DV_F_ENUM("state", T, P state, DV_FF_OMIT, &dv_enum_state) },        \
        { DV_F_ENUM("was", T, P was, DV_FF_OMIT, &dv_enum_state) },            \
        { DV_F_I64("run_at", T, P run_at_ms, DV_FF_OMIT, 0, INT64_MAX) },      \
        { DV_F_I64("wait", T, P wait_ms, DV_FF_OMIT, 0, INT64_MAX) },          \
        { DV_F_I64("run", T, P run_ms, DV_FF_OMIT, 0, INT64_MAX) },            \
        { DV_F_I64("started", T, P started_ms, DV_FF_OMIT, 0, INT64_MAX) },    \
        { DV_F_I64("current", T, P current, DV_FF_OMIT, 0, INT64_MAX) },       \
        { DV_F_I64("total", T, P total, DV_FF_OMIT, 0, INT64_MAX) },           \
        { DV_F_TEXT("message", T, P message, 0) },                             \
        { DV_F_MAP("failure", T, P failure, DV_FF_HAS, &s_failure),            \
          DV_HAS(T, P has_failure) },                                          \
    {                                                                          \
        DV_F_VALUE("body", T, P body, 0)                                       \
    }

static void
s_event_item_init(void *obj)
{
    dv_failure_init(&((dv_event_t *)obj)->failure);
}

static const dv_field_t s_event_item_fields[] = { S_EVENT_FIELDS(
    dv_event_t, ) };
static const dv_schema_t s_event = {
    DV_SCHEMA("event", s_event_item_fields, dv_event_t),
    .init = s_event_item_init,
};

/* Items of arrays of plain values. */
static const dv_field_t s_id_item = {
    .name = "",
    .type = DV_FT_ID,
};
static const dv_field_t s_name_item = {
    .name = "",
    .type = DV_FT_STR,
    .flags = DV_FF_NAME,
    .min = 1,
    .max = DV_NAME_MAX,
};

/* ---- messages ------------------------------------------------------------- */

/* Fields of dv_msg_t, through its union. */
#define T dv_msg_t

static const dv_field_t s_submit_fields[] = {
    { DV_F_U64("req", T, u.submit.req, DV_FF_REQ) },
    { DV_F_ARRAY("jobs", T, u.submit.jobs, u.submit.njobs, DV_FF_REQ,
                 &s_jobspec, DV_ITEMS_MAX) },
    { DV_F_BOOL("wait", T, u.submit.wait, DV_FF_OMIT) },
};

static const dv_field_t s_submitted_fields[] = {
    { DV_F_U64("req", T, u.submit_reply.req, DV_FF_REQ) },
    { DV_F_ARRAY("acks", T, u.submit_reply.acks, u.submit_reply.nacks,
                 DV_FF_REQ, &s_ack, DV_ITEMS_MAX) },
};

static const dv_field_t s_wait_fields[] = {
    { DV_F_U64("req", T, u.wait.req, DV_FF_REQ) },
    { DV_F_ARRAY_OF("ids", T, u.wait.ids, u.wait.nids, DV_FF_REQ, &s_id_item,
                    DV_ITEMS_MAX) },
};

static const dv_field_t s_results_fields[] = {
    { DV_F_ARRAY("results", T, u.result.results, u.result.nresults, DV_FF_REQ,
                 &s_result, DV_ITEMS_MAX) },
};

static const dv_field_t s_ctrl_fields[] = {
    { DV_F_U64("req", T, u.ctrl.req, DV_FF_REQ) },
    { DV_F_NAME("verb", T, u.ctrl.verb, DV_FF_REQ) },
    { DV_F_ID("id", T, u.ctrl.id, 0) },
    { DV_F_NAME("queue", T, u.ctrl.queue, 0) },
    { DV_F_NAME("worker", T, u.ctrl.worker, 0) },
    { DV_F_BOOL("dead", T, u.ctrl.dead, 0) },
    { DV_F_DBL("value", T, u.ctrl.value, DV_FF_HAS),
      DV_HAS(T, u.ctrl.has_value) },
    { DV_F_VALUE("args", T, u.ctrl.args, 0) },
};

/* "code" is new in version 1 replies and errors: optional, written only
 * when set, so the bytes of a message without one did not change. Any
 * number is taken: a newer peer may know codes this side does not. */
static const dv_field_t s_reply_fields[] = {
    { DV_F_U64("req", T, u.reply.req, DV_FF_REQ) },
    { DV_F_BOOL("ok", T, u.reply.ok, DV_FF_REQ) },
    { DV_F_TEXT("error", T, u.reply.error, 0) },
    { DV_F_VALUE("body", T, u.reply.body, 0) },
    { DV_F_I32("code", T, u.reply.code, DV_FF_OMIT, 0, INT32_MAX) },
};

static const dv_field_t s_error_fields[] = {
    { DV_F_U64("req", T, u.error.req, DV_FF_OMIT) },
    /* required: an absent reason is sent as an empty one */
    { DV_F_TEXT("reason", T, u.error.reason, DV_FF_REQ | DV_FF_ALWAYS) },
    { DV_F_U32("version", T, u.error.version, DV_FF_OMIT, 0, UINT32_MAX) },
    { DV_F_I32("code", T, u.error.code, DV_FF_OMIT, 0, INT32_MAX) },
};

static const dv_field_t s_hello_fields[] = {
    { DV_F_NAME("name", T, u.hello.name, DV_FF_REQ) },
    { DV_F_NAME("host", T, u.hello.host, 0) },
    { DV_F_I32("pid", T, u.hello.pid, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_ARRAY_OF("queues", T, u.hello.queues, u.hello.nqueues, DV_FF_REQ,
                    &s_name_item, DV_QUEUES_MAX),
      .min = 1, .hint = "must name at least one queue" },
    { DV_F_I32("concurrency", T, u.hello.concurrency, DV_FF_REQ, 1,
               INT32_MAX) },
    { DV_F_I32("credit", T, u.hello.credit, DV_FF_REQ, 0, INT32_MAX) },
    { DV_F_ARRAY("held", T, u.hello.held, u.hello.nheld, DV_FF_OMIT, &s_held,
                 DV_ITEMS_MAX) },
    { DV_F_BOOL("fencing", T, u.hello.fencing, DV_FF_OMIT) },
};

static const dv_field_t s_welcome_fields[] = {
    { DV_F_NAME("broker", T, u.welcome.broker, DV_FF_REQ) },
    { DV_F_I64("heartbeat", T, u.welcome.heartbeat_ms, DV_FF_REQ, 1,
               INT64_MAX) },
    { DV_F_I64("worker_timeout", T, u.welcome.worker_timeout_ms, DV_FF_REQ, 1,
               INT64_MAX) },
    { DV_F_ARRAY("revoked", T, u.welcome.revoked, u.welcome.nrevoked,
                 DV_FF_OMIT, &s_held, DV_ITEMS_MAX) },
};

static const dv_field_t s_jobs_fields[] = {
    { DV_F_ARRAY("jobs", T, u.jobs.jobs, u.jobs.njobs, DV_FF_REQ, &s_job,
                 DV_ITEMS_MAX) },
};

static const dv_field_t s_updates_fields[] = {
    { DV_F_I32("credit", T, u.update.credit, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_ARRAY("items", T, u.update.items, u.update.nitems, DV_FF_REQ,
                 &s_update, DV_ITEMS_MAX) },
    { DV_F_U64("seq", T, u.update.seq, DV_FF_OMIT) },
};

static const dv_field_t s_heartbeat_fields[] = {
    { DV_F_I32("busy", T, u.heartbeat.busy, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_I32("idle", T, u.heartbeat.idle, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_I64("processed", T, u.heartbeat.processed, DV_FF_OMIT, 0,
               INT64_MAX) },
    { DV_F_I64("failed", T, u.heartbeat.failed, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_VALUE("body", T, u.heartbeat.body, 0) },
    { DV_F_U64("ack", T, u.heartbeat.ack, DV_FF_OMIT) },
};

static const dv_field_t s_kill_fields[] = {
    { DV_F_ID("id", T, u.kill.id, DV_FF_REQ) },
    { DV_F_TEXT("reason", T, u.kill.reason, 0) },
    { DV_F_U64("lease", T, u.kill.lease, DV_FF_OMIT) },
    { DV_F_I32("code", T, u.kill.code, DV_FF_OMIT, 0, INT32_MAX) },
};

static void
s_event_init(void *obj)
{
    dv_failure_init(&((dv_msg_t *)obj)->u.event.failure);
}

/* kind is a name, not checked against a list: new kinds need no new
 * version. The enum next to it says which known kind it is, if any. */
static const dv_field_t s_event_fields[] = { S_EVENT_FIELDS(T, u.event.) };

static const dv_field_t s_events_fields[] = {
    { DV_F_ARRAY("events", T, u.events.events, u.events.nevents, DV_FF_REQ,
                 &s_event, DV_ITEMS_MAX),
      .min = 1, .hint = "must hold at least one event" },
};

/* worker <-> broker, both ways */
static const dv_field_t s_keys_fields[] = {
    { DV_F_ARRAY("items", T, u.keys.items, u.keys.nitems, DV_FF_REQ, &s_keyitem,
                 DV_ITEMS_MAX),
      .min = 1, .hint = "must name at least one key" },
};

#undef T

#define S_MSG(type, fields, init_fn)                                           \
    [type] = { DV_SCHEMA(#type, fields, dv_msg_t), .init = init_fn }

static const dv_schema_t s_messages[DV_MSG_COUNT_] = {
    S_MSG(DV_MSG_SUBMIT, s_submit_fields, NULL),
    S_MSG(DV_MSG_SUBMIT_REPLY, s_submitted_fields, NULL),
    S_MSG(DV_MSG_WAIT, s_wait_fields, NULL),
    S_MSG(DV_MSG_RESULT, s_results_fields, NULL),
    S_MSG(DV_MSG_CTRL, s_ctrl_fields, NULL),
    S_MSG(DV_MSG_REPLY, s_reply_fields, NULL),
    S_MSG(DV_MSG_ERROR, s_error_fields, NULL),
    S_MSG(DV_MSG_HELLO, s_hello_fields, NULL),
    S_MSG(DV_MSG_WELCOME, s_welcome_fields, NULL),
    S_MSG(DV_MSG_JOBS, s_jobs_fields, NULL),
    S_MSG(DV_MSG_UPDATE, s_updates_fields, NULL),
    S_MSG(DV_MSG_HEARTBEAT, s_heartbeat_fields, NULL),
    /* bye and drain: nothing but v and t */
    [DV_MSG_BYE] = { .name = "DV_MSG_BYE", .size = sizeof(dv_msg_t) },
    S_MSG(DV_MSG_KILL, s_kill_fields, NULL),
    S_MSG(DV_MSG_EVENT, s_event_fields, s_event_init),
    [DV_MSG_DRAIN] = { .name = "DV_MSG_DRAIN", .size = sizeof(dv_msg_t) },
    S_MSG(DV_MSG_KEYS, s_keys_fields, NULL),
    S_MSG(DV_MSG_EVENTS, s_events_fields, NULL),
};

const dv_schema_t *
dv_msg_event_schema(void)
{
    return &s_event;
}

const dv_schema_t *
dv_msg_schema(dv_msg_type_t type)
{
    if ((int)type <= DV_MSG_NONE || (int)type >= DV_MSG_COUNT_)
        return NULL;
    return &s_messages[type];
}

/* Where each message type with a "req" keeps it, for the error reply to a
 * message that failed to decode. */
uint64_t *
dv_msg_req(dv_msg_t *m)
{
    switch (m->type) {
    case DV_MSG_SUBMIT:
        return &m->u.submit.req;
    case DV_MSG_SUBMIT_REPLY:
        return &m->u.submit_reply.req;
    case DV_MSG_WAIT:
        return &m->u.wait.req;
    case DV_MSG_CTRL:
        return &m->u.ctrl.req;
    case DV_MSG_REPLY:
        return &m->u.reply.req;
    case DV_MSG_ERROR:
        return &m->u.error.req;
    default:
        return NULL;
    }
}
