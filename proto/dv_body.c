/* dv_body - the tables and codecs of the typed bodies (dv_body.h): status,
 * heartbeat metrics, worker info, and the args and answer of "finished".
 *
 * Each table lists the keys in the order the broker and the worker have
 * always packed them, with the same msgpack formats (integers in their
 * shortest form, doubles as float 64, absent strings as nil where the key
 * is always there), so dv_X_encode() writes byte for byte what the hand
 * packing wrote and an older peer reads it unchanged. Counters are 0 or
 * more; values the components may send negative (credit, rss_kb, tokens)
 * take any 64-bit integer. The engine is dv_schema.c; no I/O. */
#include "dv_body.h"

#include <string.h>

#include "dv_schema.h"

/* A count (0 or more), and any 64-bit integer. */
#define S_CNT(k, T, m) DV_F_I64(k, T, m, 0, 0, INT64_MAX)
#define S_ANY(k, T, m) DV_F_I64(k, T, m, 0, INT64_MIN, INT64_MAX)

static const dv_field_t s_name_item = {
    .name = "",
    .type = DV_FT_STR,
    .min = 1,
    .max = DV_NAME_MAX,
};

/* ---- status --------------------------------------------------------------- */

#define T dv_status_queue_t
static const dv_field_t s_st_queue_fields[] = {
    { DV_F_NAME("name", T, name, DV_FF_NIL) },
    { DV_F_DBL("rate", T, rate, 0) },
    { S_CNT("max_running", T, max_running) },
    { S_CNT("queued", T, queued) },
    { S_CNT("scheduled", T, scheduled) },
    { S_CNT("running", T, running) },
    { DV_F_BOOL("paused", T, paused, 0) },
    /* Only while a job waits, so the body is otherwise as it always was. */
    { DV_F_I64("oldest_ms", T, oldest_ms, DV_FF_OMIT, 0, INT64_MAX) },
    /* Only while a job waits for other jobs (job dependencies). */
    { DV_F_I64("waiting", T, waiting, DV_FF_OMIT, 0, INT64_MAX) },
};
#undef T
static const dv_schema_t s_st_queue = {
    DV_SCHEMA("queue", s_st_queue_fields, dv_status_queue_t),
};

#define T dv_status_worker_t
static const dv_field_t s_st_worker_fields[] = {
    { DV_F_NAME("name", T, name, DV_FF_NIL) },
    { DV_F_BOOL("draining", T, draining, 0) },
    { DV_F_NAME("host", T, host, DV_FF_NIL) },
    { DV_F_I64("pid", T, pid, 0, 0, INT32_MAX) },
    { S_ANY("concurrency", T, concurrency) },
    { S_ANY("credit", T, credit) },
    { S_CNT("running", T, running) },
    { S_CNT("processed", T, processed) },
    { S_CNT("failed", T, failed) },
    { DV_F_ARRAY_OF("queues", T, queues, nqueues, 0, &s_name_item,
                    DV_QUEUES_MAX) },
};
#undef T
static const dv_schema_t s_st_worker = {
    DV_SCHEMA("worker", s_st_worker_fields, dv_status_worker_t),
};

#define T dv_status_counters_t
static const dv_field_t s_st_counters_fields[] = {
    { S_CNT("submitted", T, submitted) },
    { S_CNT("dispatched", T, dispatched) },
    { S_CNT("succeeded", T, succeeded) },
    { S_CNT("failed", T, failed) },
    { S_CNT("retried", T, retried) },
    { S_CNT("dead", T, dead) },
    { S_CNT("cancelled", T, cancelled) },
    { S_CNT("lost", T, lost) },
    { S_CNT("live_jobs", T, live_jobs) },
    { S_CNT("dispatch_p50_us", T, dispatch_p50_us) },
    { S_CNT("dispatch_p99_us", T, dispatch_p99_us) },
    { DV_F_I64("stale", T, stale, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_I64("adopted", T, adopted, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_I64("revoked", T, revoked, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_I64("rejoining", T, rejoining, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_I64("store_reads", T, store_reads, DV_FF_OMIT, 0, INT64_MAX) },
};
#undef T
static const dv_schema_t s_st_counters = {
    DV_SCHEMA("counters", s_st_counters_fields, dv_status_counters_t),
};

#define T dv_status_store_t
static const dv_field_t s_st_store_fields[] = {
    { DV_F_TEXT("error", T, error, 0) }, { S_ANY("since_ms", T, since_ms) },
    { S_CNT("retries", T, retries) },    { S_CNT("refused", T, refused) },
    { S_CNT("waiting", T, waiting) },
};
#undef T
static const dv_schema_t s_st_store = {
    DV_SCHEMA("store_failure", s_st_store_fields, dv_status_store_t),
};

#define T dv_status_t
static const dv_field_t s_status_fields[] = {
    { DV_F_NAME("broker", T, broker, DV_FF_NIL) },
    { DV_F_NAME("store", T, store, DV_FF_NIL) },
    { S_ANY("uptime_ms", T, uptime_ms) },
    { DV_F_ARRAY("queues", T, queues, nqueues, 0, &s_st_queue, DV_ITEMS_MAX) },
    { DV_F_ARRAY("workers", T, workers, nworkers, 0, &s_st_worker,
                 DV_ITEMS_MAX) },
    { DV_F_MAP("counters", T, counters, 0, &s_st_counters) },
    /* Only while the store fails, so a healthy broker's body is as it
     * always was. */
    { DV_F_MAP("store_failure", T, store_failure, DV_FF_HAS, &s_st_store),
      DV_HAS(T, store_failing) },
    /* Only from a standby broker. */
    { DV_F_TEXT("role", T, role, 0) },
    { DV_F_TEXT("lock", T, lock, 0) },
    /* Only once an event was published. */
    { DV_F_U64("seq", T, seq, DV_FF_OMIT) },
    /* Only while the broker has schedules. */
    { DV_F_I64("schedules", T, schedules, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_NAME("next_schedule", T, next_schedule, 0) },
    { DV_F_I64("next_schedule_at", T, next_schedule_ms, DV_FF_OMIT, 0,
               INT64_MAX) },
};
#undef T
static const dv_schema_t s_status = {
    DV_SCHEMA("status", s_status_fields, dv_status_t),
};

/* ---- hbmetrics ------------------------------------------------------------ */

#define T dv_hb_breaker_t
static const dv_field_t s_hb_breaker_fields[] = {
    { DV_F_TEXT("endpoint", T, endpoint, 0) },
    { DV_F_TEXT("state", T, state, 0) },
    { S_CNT("failures", T, failures) },
    { S_CNT("opened", T, opened) },
};
#undef T
static const dv_schema_t s_hb_breaker = {
    DV_SCHEMA("breaker", s_hb_breaker_fields, dv_hb_breaker_t),
};

#define T dv_hb_http_t
static const dv_field_t s_hb_http_fields[] = {
    { S_CNT("in_flight", T, in_flight) },
    { S_CNT("waiting", T, waiting) },
    { S_CNT("concurrency", T, concurrency) },
    { DV_F_ARRAY("breakers", T, breakers, nbreakers, 0, &s_hb_breaker,
                 DV_ITEMS_MAX) },
};
#undef T
static const dv_schema_t s_hb_http = {
    DV_SCHEMA("http", s_hb_http_fields, dv_hb_http_t),
};

#define T dv_hb_key_t
static const dv_field_t s_hb_key_fields[] = {
    { DV_F_TEXT("type", T, type, 0) },
    { DV_F_TEXT("id", T, id, 0) },
    { DV_F_TEXT("hash", T, hash, 0) },
    { DV_F_TEXT("state", T, state, 0) },
    { S_CNT("requests", T, requests) },
    { S_CNT("ok", T, ok) },
    { S_CNT("rate_limited", T, rate_limited) },
    { S_CNT("errors", T, errors) },
    { S_ANY("cooldown_until_ms", T, cooldown_until_ms) },
    { S_ANY("tokens", T, tokens) },
    { S_ANY("disabled_status", T, disabled_status) },
};
#undef T
static const dv_schema_t s_hb_key = {
    DV_SCHEMA("key", s_hb_key_fields, dv_hb_key_t),
};

#define T dv_hb_child_t
static const dv_field_t s_hb_child_fields[] = {
    { DV_F_I64("pid", T, pid, 0, 0, INT32_MAX) },
    { S_ANY("rss_kb", T, rss_kb) },
    { S_CNT("jobs", T, jobs) },
};
#undef T
static const dv_schema_t s_hb_child = {
    DV_SCHEMA("child", s_hb_child_fields, dv_hb_child_t),
};

/* "http" and "keys" come as a pair, from a worker with http handlers. */
#define T dv_hbmetrics_t
static const dv_field_t s_hbmetrics_fields[] = {
    { DV_F_MAP("http", T, http, DV_FF_HAS, &s_hb_http), DV_HAS(T, has_http) },
    { DV_F_ARRAY("keys", T, keys, nkeys, DV_FF_HAS, &s_hb_key, DV_ITEMS_MAX),
      DV_HAS(T, has_http) },
    { DV_F_ARRAY("per_child", T, per_child, nper_child, 0, &s_hb_child,
                 DV_ITEMS_MAX) },
    { S_CNT("held", T, held) },
    { S_CNT("children", T, children) },
    { S_ANY("capacity", T, capacity) },
    { S_CNT("outbox", T, outbox) },
    { DV_F_DBL("load1", T, load1, 0) },
};
#undef T
static const dv_schema_t s_hbmetrics = {
    DV_SCHEMA("metrics", s_hbmetrics_fields, dv_hbmetrics_t),
};

/* ---- workerinfo ----------------------------------------------------------- */

#define T dv_workerinfo_t
static const dv_field_t s_workerinfo_fields[] = {
    { DV_F_NAME("host", T, host, DV_FF_NIL) },
    { DV_F_I64("pid", T, pid, 0, 0, INT32_MAX) },
    { S_ANY("concurrency", T, concurrency) },
    { S_ANY("credit", T, credit) },
    { S_CNT("running", T, running) },
    { S_CNT("busy", T, busy) },
    { S_CNT("idle", T, idle) },
    { S_CNT("processed", T, processed) },
    { S_CNT("failed", T, failed) },
    { DV_F_ARRAY_OF("queues", T, queues, nqueues, 0, &s_name_item,
                    DV_QUEUES_MAX) },
    { DV_F_RAW("metrics", T, metrics, 0) },
};
#undef T
static const dv_schema_t s_workerinfo = {
    DV_SCHEMA("workerinfo", s_workerinfo_fields, dv_workerinfo_t),
};

/* ---- finished ------------------------------------------------------------- */

static void
s_fargs_init(void *obj)
{
    ((dv_finished_args_t *)obj)->limit = DV_FINISHED_LIMIT_MAX;
}

static int
s_fargs_check(dv_dec_t *d, const void *obj)
{
    const dv_finished_args_t *a = obj;
    if (a->until_ms < a->since_ms)
        return dv_dec_fail_at(d, "until", DV_EPROTO, "must be >= since");
    return DV_OK;
}

#define T dv_finished_args_t
static const dv_field_t s_fargs_fields[] = {
    { DV_F_I64("since", T, since_ms, DV_FF_REQ, 0, INT64_MAX) },
    { DV_F_I64("until", T, until_ms, DV_FF_REQ, 0, INT64_MAX) },
    { DV_F_ID("after", T, after, 0) },
    { DV_F_I32("limit", T, limit, DV_FF_OMIT, 1, DV_FINISHED_LIMIT_MAX),
      .dflt = DV_FINISHED_LIMIT_MAX },
};
#undef T
static const dv_schema_t s_fargs = {
    DV_SCHEMA("finished_args", s_fargs_fields, dv_finished_args_t),
    .init = s_fargs_init,
    .check = s_fargs_check,
};

static int
s_fjob_check(dv_dec_t *d, const void *obj)
{
    if (!dv_state_terminal(((const dv_finished_job_t *)obj)->state))
        return dv_dec_fail_at(d, "state", DV_EPROTO,
                              "must be succeeded, dead or cancelled");
    return DV_OK;
}

#define T dv_finished_job_t
static const dv_field_t s_fjob_fields[] = {
    { DV_F_ID("id", T, id, DV_FF_REQ) },
    { DV_F_NAME("queue", T, queue, DV_FF_REQ) },
    { DV_F_NAME("type", T, type, DV_FF_REQ) },
    { DV_F_NAME("batch", T, batch, 0) },
    { DV_F_ENUM("state", T, state, DV_FF_REQ, &dv_enum_state) },
    { DV_F_I32("attempt", T, attempt, DV_FF_OMIT, 0, INT32_MAX) },
    { DV_F_NAME("worker", T, worker, 0) },
    { DV_F_I64("finished", T, finished_ms, DV_FF_REQ, 0, INT64_MAX) },
    { DV_F_I64("run", T, run_ms, DV_FF_OMIT, 0, INT64_MAX) },
    { DV_F_ENUM("category", T, category, DV_FF_OMIT, &dv_enum_category) },
    { DV_F_TEXT("message", T, message, 0) },
};
#undef T
static const dv_schema_t s_fjob = {
    DV_SCHEMA("job", s_fjob_fields, dv_finished_job_t),
    .check = s_fjob_check,
};

#define T dv_finished_t
static const dv_field_t s_finished_fields[] = {
    { DV_F_ARRAY("jobs", T, jobs, njobs, DV_FF_REQ, &s_fjob,
                 DV_FINISHED_LIMIT_MAX) },
    { DV_F_BOOL("more", T, more, 0) },
};
#undef T
static const dv_schema_t s_finished = {
    DV_SCHEMA("finished", s_finished_fields, dv_finished_t),
};

/* ---- the functions -------------------------------------------------------- */

#define S_BODY_FNS(nm, type, schema)                                           \
    int dv_##nm##_encode(const type *x, msgpack_sbuffer *out)                  \
    {                                                                          \
        return dv_body_encode(&(schema), x, out);                              \
    }                                                                          \
    int dv_##nm##_decode(const void *data, size_t size, type *x, char *why,    \
                         size_t why_size)                                      \
    {                                                                          \
        void *priv = NULL;                                                     \
        int rc =                                                               \
            dv_body_decode(&(schema), data, size, x, &priv, why, why_size);    \
        x->priv_ = priv;                                                       \
        return rc;                                                             \
    }                                                                          \
    void dv_##nm##_release(type *x)                                            \
    {                                                                          \
        if (!x)                                                                \
            return;                                                            \
        dv_dec_free(x->priv_);                                                 \
        memset(x, 0, sizeof *x);                                               \
    }                                                                          \
    bool dv_##nm##_equal(const type *a, const type *b, char *diff,             \
                         size_t diff_size)                                     \
    {                                                                          \
        return dv_schema_equal(&(schema), (schema).name, a, b, diff,           \
                               diff_size);                                     \
    }

S_BODY_FNS(status, dv_status_t, s_status)
S_BODY_FNS(hbmetrics, dv_hbmetrics_t, s_hbmetrics)
S_BODY_FNS(workerinfo, dv_workerinfo_t, s_workerinfo)
S_BODY_FNS(finished_args, dv_finished_args_t, s_fargs)
S_BODY_FNS(finished, dv_finished_t, s_finished)
