/* collector_query - verbs over live state and history. */
#include "collector_query.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_clock.h"
#include "dv_id.h"

/* Failures by category are counted over this window in `status`. */
#define S_FAILURE_WINDOW_MS (3600 * 1000)
/* A batch's rate is measured over at most this window. */
#define S_BATCH_RATE_WINDOW_MS 60000
#define S_JOBS_LIMIT_DEFAULT   50

static json_t *
s_fail(dv_code_t *code, dv_code_t c, char *why, size_t size, const char *fmt,
       ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, size, fmt, ap);
    va_end(ap);
    *code = c;
    return NULL;
}

/* A name argument: absent gives *out NULL and 0; else it must be a string
 * of 1..DV_NAME_MAX bytes. Returns 0 or -1 (why filled). */
static int
s_arg_name(const json_t *args, const char *verb, const char *key,
           const char **out, char *why, size_t size)
{
    const json_t *v = json_object_get(args, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    size_t len = json_string_length(v);
    if (!json_is_string(v) || len == 0 || len > DV_NAME_MAX) {
        snprintf(why, size, "%s: %s: must be a name of 1..%d characters", verb,
                 key, DV_NAME_MAX);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* A number argument (or a string holding one). Returns 1 if present, 0 if
 * absent, -1 if it is not a number. */
static int
s_arg_number(const json_t *args, const char *key, double *out)
{
    const json_t *v = json_object_get(args, key);
    if (!v || json_is_null(v))
        return 0;
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return isfinite(*out) ? 1 : -1;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        double d = strtod(s, &end);
        if (end != s && *end == '\0' && isfinite(d)) {
            *out = d;
            return 1;
        }
    }
    return -1;
}

static int
s_arg_since(const json_t *args, const char *verb, int64_t now_ms, int64_t *out,
            char *why, size_t size)
{
    *out = 0;
    double d;
    int r = s_arg_number(args, "since", &d);
    if (r == 0)
        return 0;
    if (r < 0) {
        /* A duration ("10m", "2h") means that long ago. */
        const json_t *v = json_object_get(args, "since");
        int64_t ms;
        if (json_is_string(v) &&
            dv_duration_parse(json_string_value(v), &ms) == 0) {
            *out = now_ms - ms;
            return 0;
        }
        snprintf(why, size,
                 "%s: since: must be epoch ms, seconds ago, or a duration "
                 "such as 10m",
                 verb);
        return -1;
    }
    if (d < 0) {
        snprintf(why, size, "%s: since: must not be negative", verb);
        return -1;
    }
    *out = d < 1e11 ? now_ms - (int64_t)(d * 1000) : (int64_t)d;
    return 0;
}

static json_t *
s_status(const collector_query_t *q, int64_t now_ms, dv_code_t *code, char *why,
         size_t size)
{
    json_t *failures =
        collector_store_failures(q->store, now_ms - S_FAILURE_WINDOW_MS);
    if (!failures)
        return s_fail(code, DV_CODE_STORE, why, size,
                      "status: history store error");
    json_t *collector =
        json_pack("{s:I, s:I, s:I, s:s, s:s?, s:s?}", "uptime_ms",
                  (json_int_t)(now_ms - q->started_ms), "events",
                  (json_int_t)collector_state_events_total(q->state), "gaps",
                  (json_int_t)collector_state_gaps_total(q->state), "store",
                  collector_store_path(q->store), "bind", q->bind, "http",
                  q->http[0] ? q->http : NULL);
    return json_pack(
        "{s:o, s:o, s:o, s:o, s:o, s:o, s:{s:I, s:o}, s:o}", "collector",
        collector, "brokers", collector_state_brokers(q->state, now_ms),
        "workers", collector_state_worker_summary(q->state, now_ms), "queues",
        collector_state_queues(q->state, now_ms), "types",
        collector_state_types(q->state, now_ms), "rates",
        collector_state_rates(q->state, now_ms), "failures", "window_ms",
        (json_int_t)S_FAILURE_WINDOW_MS, "categories", failures, "health",
        collector_state_health(q->state, now_ms));
}

static json_t *
s_jobs(const collector_query_t *q, const json_t *args, int64_t now_ms,
       dv_code_t *code, char *why, size_t size)
{
    collector_jobs_filter_t f = { .limit = S_JOBS_LIMIT_DEFAULT };
    if (s_arg_name(args, "jobs", "state", &f.state, why, size) ||
        s_arg_name(args, "jobs", "queue", &f.queue, why, size) ||
        s_arg_name(args, "jobs", "type", &f.type, why, size) ||
        s_arg_name(args, "jobs", "batch", &f.batch, why, size) ||
        s_arg_since(args, "jobs", now_ms, &f.since_ms, why, size)) {
        *code = DV_CODE_INVALID_ARGUMENT;
        return NULL;
    }
    if (f.state) {
        dv_state_t st = dv_state_parse(f.state, strlen(f.state));
        if (st == DV_STATE_NONE || st == DV_STATE_FAILED ||
            st == DV_STATE_UNKNOWN)
            return s_fail(code, DV_CODE_INVALID_ARGUMENT, why, size,
                          "jobs: state: '%s' is not one of queued, "
                          "scheduled, waiting, running, succeeded, dead, "
                          "cancelled",
                          f.state);
    }
    double limit;
    int r = s_arg_number(args, "limit", &limit);
    if (r < 0 || (r > 0 && (limit < 1 || limit > COLLECTOR_JOBS_LIMIT_MAX ||
                            limit != floor(limit))))
        return s_fail(code, DV_CODE_INVALID_ARGUMENT, why, size,
                      "jobs: limit: must be a whole number 1..%d",
                      COLLECTOR_JOBS_LIMIT_MAX);
    if (r > 0)
        f.limit = (int)limit;
    json_t *jobs = collector_store_jobs(q->store, &f);
    if (!jobs)
        return s_fail(code, DV_CODE_STORE, why, size,
                      "jobs: history store error");
    return json_pack("{s:o, s:I, s:i}", "jobs", jobs, "count",
                     (json_int_t)json_array_size(jobs), "limit", f.limit);
}

static json_t *
s_job(const collector_query_t *q, const json_t *args, dv_code_t *code,
      char *why, size_t size)
{
    const char *id = json_string_value(json_object_get(args, "id"));
    dv_id_t parsed;
    if (!id || strlen(id) != DV_ID_TEXT_LEN ||
        dv_id_parse(id, DV_ID_TEXT_LEN, &parsed) != 0)
        return s_fail(code, DV_CODE_INVALID_ARGUMENT, why, size,
                      "job: id: must be a job id (36 characters)");
    int found;
    json_t *job = collector_store_job(q->store, id, &found);
    if (!job && found == 0)
        return s_fail(code, DV_CODE_NOT_FOUND, why, size,
                      "job %s: not in the collector's history (it may be "
                      "older than the retention, or from before the "
                      "collector started)",
                      id);
    if (!job)
        return s_fail(code, DV_CODE_STORE, why, size,
                      "job: history store error");
    json_t *live = collector_state_running_job(q->state, id);
    int rc = live ? json_object_set_new(job, "live", live) : 0;
    rc |= json_object_set_new(job, "result",
                              json_string("not kept by the collector: "
                                          "`drover job ID` asks the broker "
                                          "for it"));
    if (rc) {
        json_decref(job);
        return NULL; /* out of memory: collector_query_run() says so */
    }
    return job;
}

static json_t *
s_batch(const collector_query_t *q, const json_t *args, int64_t now_ms,
        dv_code_t *code, char *why, size_t size)
{
    const char *name = NULL;
    if (s_arg_name(args, "batch", "name", &name, why, size) != 0) {
        *code = DV_CODE_INVALID_ARGUMENT;
        return NULL;
    }
    if (!name && s_arg_name(args, "batch", "batch", &name, why, size) != 0) {
        *code = DV_CODE_INVALID_ARGUMENT;
        return NULL;
    }
    if (!name)
        return s_fail(code, DV_CODE_INVALID_ARGUMENT, why, size,
                      "batch: name: required");
    json_t *b =
        collector_store_batch(q->store, name, now_ms - S_BATCH_RATE_WINDOW_MS);
    if (!b)
        return s_fail(code, DV_CODE_STORE, why, size,
                      "batch: history store error");
    json_t *counts = json_object_get(b, "counts");
    int64_t total = json_integer_value(json_object_get(b, "total"));
    int64_t done = json_integer_value(json_object_get(counts, "succeeded")) +
                   json_integer_value(json_object_get(counts, "dead")) +
                   json_integer_value(json_object_get(counts, "cancelled"));
    int64_t first_started =
        json_integer_value(json_object_get(b, "first_started_at"));
    int64_t recent = json_integer_value(json_object_get(b, "ended_recent"));
    /* A batch younger than the window: its rate over its own age. */
    int64_t window = S_BATCH_RATE_WINDOW_MS;
    if (first_started && now_ms - first_started < window)
        window = now_ms - first_started > 1000 ? now_ms - first_started : 1000;
    double rate = (double)recent * 1000.0 / (double)window;
    int rc = json_object_set_new(b, "name", json_string(name));
    rc |= json_object_set_new(b, "done", json_integer(done));
    rc |= json_object_set_new(b, "remaining", json_integer(total - done));
    rc |= json_object_set_new(b, "rate", json_real(round(rate * 1000) / 1000));
    rc |= json_object_set_new(b, "finished",
                              json_boolean(total > 0 && done == total));
    rc |= json_object_set_new(
        b, "eta_s",
        rate > 0 && total > done
            ? json_real(round((double)(total - done) / rate * 10) / 10)
            : json_null());
    json_object_del(b, "ended_recent");
    if (rc) {
        json_decref(b);
        return NULL; /* out of memory: collector_query_run() says so */
    }
    return b;
}

static json_t *
s_run(const collector_query_t *q, const char *verb, const json_t *args,
      int64_t now_ms, dv_code_t *code, char *why, size_t why_size)
{
    if (args && !json_is_object(args))
        return s_fail(code, DV_CODE_INVALID_ARGUMENT, why, why_size,
                      "%s: args: must be a map", verb);
    if (!strcmp(verb, "status"))
        return s_status(q, now_ms, code, why, why_size);
    if (!strcmp(verb, "workers"))
        return json_pack("{s:o, s:o}", "workers",
                         collector_state_workers(q->state, now_ms), "summary",
                         collector_state_worker_summary(q->state, now_ms));
    if (!strcmp(verb, "queues"))
        return json_pack("{s:o, s:o}", "queues",
                         collector_state_queues(q->state, now_ms), "types",
                         collector_state_types(q->state, now_ms));
    if (!strcmp(verb, "jobs"))
        return s_jobs(q, args, now_ms, code, why, why_size);
    if (!strcmp(verb, "job"))
        return s_job(q, args, code, why, why_size);
    if (!strcmp(verb, "keys"))
        return json_pack("{s:o}", "keys",
                         collector_state_keys(q->state, now_ms));
    if (!strcmp(verb, "fleet_keys"))
        return collector_state_fleet_keys(q->state, now_ms);
    if (!strcmp(verb, "batch"))
        return s_batch(q, args, now_ms, code, why, why_size);
    if (!strcmp(verb, "health"))
        return collector_state_health(q->state, now_ms);
    if (!strcmp(verb, "running"))
        return json_pack("{s:o}", "running",
                         collector_state_running(q->state, 1000));
    return s_fail(code, DV_CODE_UNKNOWN_VERB, why, why_size,
                  "unknown verb '%.64s': the collector answers status, "
                  "workers, queues, jobs, job, keys, fleet_keys, batch, "
                  "health",
                  verb);
}

json_t *
collector_query_run(const collector_query_t *q, const char *verb,
                    const json_t *args, int64_t now_ms, dv_code_t *code,
                    char *why, size_t why_size)
{
    *code = DV_CODE_NONE;
    if (why_size)
        why[0] = '\0';
    json_t *body = s_run(q, verb, args, now_ms, code, why, why_size);
    /* A verb that failed without saying why could not build its answer. */
    if (!body && *code == DV_CODE_NONE)
        return s_fail(code, DV_CODE_NO_MEMORY, why, why_size,
                      "%.64s: out of memory", verb);
    return body;
}

int
collector_query_http_status(dv_code_t code)
{
    switch (code) {
    case DV_CODE_NONE:
        return 200;
    case DV_CODE_INVALID_ARGUMENT:
    case DV_CODE_UNKNOWN_VERB:
        return 400;
    case DV_CODE_NOT_FOUND:
        return 404;
    default: /* store, out of memory, anything else */
        return 500;
    }
}
