/* collector_store - picks a history backend by the --store URL and forwards
 * every call to it.
 *
 * The URL rules are the broker's (broker/broker_store.c): "sqlite:PATH",
 * "sqlite://PATH" or a bare path is a SQLite file; "postgres://..." and
 * "postgresql://..." go to PostgreSQL whole (libpq parses them); any other
 * "scheme://" is refused, never created as a file by that name.
 */
#include "collector_store_be.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "collector_state.h"
#include "dv_clock.h"
#include "dv_log.h"
#include "dv_map.h"
#include "dv_util.h"

struct collector_store_t {
    const collector_store_ops_t *ops; /* the backend's vtable */
    collector_store_be_t *be;         /* the backend's handle */
    dv_map_t *stash; /* job id -> s_stash_t: submits not written yet */
    int64_t hold_ms; /* S_HOLD_MS, or collector_store_hold's */
};

/* ---- submits held until their job ends -------------------------------------
 * A job.submitted is held here (not written) and, when the job's
 * job.succeeded comes, the two are written as one row write (the end with
 * the submit folded in: collector_store_fold_t.submitted) instead of an
 * insert, then an update that moves the row in two indexes. A batch
 * submitted faster than it runs has its jobs' ends come seconds after
 * their submits, so a held submit outlives commits: it is written by the
 * first commit after it is S_HOLD_MS old. Any other write about a held job
 * writes its submit first, in order; a read, a backfill, closing the store
 * or a full stash (S_STASH_MAX) write them all, so a read never misses a
 * job. A collector that stops without closing loses the held submits
 * (their jobs' rows come with their next events, without submitted_at),
 * never a finished job. */

#define S_STASH_MAX 100000 /* submits held at most */
#define S_HOLD_MS   10000  /* written by the first commit after this */

void
collector_store_hold(collector_store_t *self, int64_t ms)
{
    self->hold_ms = ms < 0 ? 0 : ms;
}

typedef struct {
    const char *broker; /* into data */
    dv_str_t id, queue, type, batch;
    int64_t ts_ms, run_at_ms;
    int64_t held_mono; /* when it was held (monotonic ms) */
    uint64_t seq;
    dv_state_t state;
    bool written; /* by s_flush_old, before it is deleted */
    char data[];
} s_stash_t;

static void
s_put(char **cursor, dv_str_t v, dv_str_t *out)
{
    char *at = *cursor;
    if (v.ptr && v.len)
        memcpy(at, v.ptr, v.len);
    at[v.len] = '\0';
    *out = v.ptr ? (dv_str_t){ .ptr = at, .len = v.len } : (dv_str_t){ 0 };
    *cursor += v.len + 1;
}

static s_stash_t *
s_stash_new(const char *broker, const dv_event_t *ev)
{
    size_t bl = strlen(broker);
    size_t n = bl + 1 + ev->id.len + 1 + ev->queue.len + 1 + ev->type.len + 1 +
               ev->batch.len + 1;
    s_stash_t *h = malloc(sizeof *h + n);
    if (!h)
        return NULL;
    char *c = h->data;
    memcpy(c, broker, bl + 1);
    h->broker = c;
    c += bl + 1;
    s_put(&c, ev->id, &h->id);
    s_put(&c, ev->queue, &h->queue);
    s_put(&c, ev->type, &h->type);
    s_put(&c, ev->batch, &h->batch);
    h->state = ev->state;
    h->ts_ms = ev->ts_ms;
    h->run_at_ms = ev->run_at_ms;
    h->seq = ev->seq;
    h->held_mono = dv_mono_ms();
    h->written = false;
    return h;
}

static int
s_write_held(collector_store_t *self, const s_stash_t *h)
{
    dv_event_t ev = { 0 };
    dv_failure_init(&ev.failure);
    ev.kind = dv_str("job.submitted");
    ev.kind_enum = DV_EV_JOB_SUBMITTED;
    ev.id = h->id;
    ev.queue = h->queue;
    ev.type = h->type;
    ev.batch = h->batch;
    ev.state = h->state;
    ev.ts_ms = h->ts_ms;
    ev.run_at_ms = h->run_at_ms;
    ev.seq = h->seq;
    return self->ops->event(self->be, h->broker, &ev, 0, NULL);
}

/* Writes the held submit of job id (len bytes), if any, and forgets it.
 * Returns 0, or -1 when the write failed. */
static int
s_write_one(collector_store_t *self, const char *id, size_t len)
{
    s_stash_t *h = id ? dv_map_getn(self->stash, id, len) : NULL;
    if (!h)
        return 0;
    int rc = s_write_held(self, h);
    dv_map_delete(self->stash, h->id.ptr); /* read before it is freed */
    return rc;
}

static bool
s_is_written(const void *item, void *ctx)
{
    (void)ctx;
    return ((const s_stash_t *)item)->written;
}

/* Writes the submits held since before cutoff (monotonic ms; INT64_MAX:
 * all). Returns 0, or -1 when a write failed. */
static int
s_flush_old(collector_store_t *self, int64_t cutoff)
{
    if (!dv_map_size(self->stash))
        return 0;
    int rc = 0;
    size_t n = 0;
    s_stash_t *h;
    DV_MAP_EACH(h, self->stash)
    {
        if (h->held_mono < cutoff) {
            rc |= s_write_held(self, h);
            h->written = true;
            n++;
        }
    }
    if (n)
        dv_map_delete_if(self->stash, s_is_written, NULL);
    return rc ? -1 : 0;
}

/* Writes every held submit. Returns 0, or -1 when a write failed. */
static int
s_flush_held(collector_store_t *self)
{
    return s_flush_old(self, INT64_MAX);
}

collector_store_t *
collector_store_open(const char *url)
{
    const collector_store_ops_t *ops = NULL;
    const char *arg = NULL;
    size_t scheme_len;
    if (!url || !*url) {
        dv_log(DV_ERROR, "collector.store_open_failed",
               DV_STR("error", "store URL is empty"));
        return NULL;
    }
    dv_store_kind_t kind = dv_store_url(url, &arg, &scheme_len);
    if (kind == DV_STORE_SQLITE) {
        ops = &collector_store_sqlite_ops;
    } else if (kind == DV_STORE_PG) {
        ops = &collector_store_pg_ops;
    } else {
        /* The scheme alone: the rest of an unknown URL may hold a
         * password. */
        char scheme[32];
        size_t n =
            scheme_len < sizeof scheme - 1 ? scheme_len : sizeof scheme - 1;
        memcpy(scheme, url, n);
        scheme[n] = '\0';
        dv_log(DV_ERROR, "collector.store_open_failed",
               DV_STR("scheme", scheme),
               DV_STR("error", "unknown store URL scheme (expected "
                               "sqlite:PATH, a file path, or "
                               "postgres://...)"));
        return NULL;
    }
    if (!*arg) {
        dv_log(DV_ERROR, "collector.store_open_failed", DV_STR("path", url),
               DV_STR("error", "the store URL names no file"));
        return NULL;
    }
    collector_store_t *self = calloc(1, sizeof *self);
    if (!self) {
        dv_log(DV_ERROR, "collector.store_open_failed",
               DV_STR("error", "out of memory"));
        return NULL;
    }
    self->ops = ops;
    self->stash = dv_map_new(free);
    self->hold_ms = S_HOLD_MS;
    self->be = self->stash ? ops->open(arg) : NULL;
    if (!self->be) {
        if (!self->stash)
            dv_log(DV_ERROR, "collector.store_open_failed",
                   DV_STR("error", "out of memory"));
        dv_map_destroy(&self->stash);
        free(self);
        return NULL;
    }
    return self;
}

void
collector_store_close(collector_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    collector_store_t *self = *self_p;
    s_flush_held(self);
    self->ops->close(&self->be);
    dv_map_destroy(&self->stash);
    free(self);
    *self_p = NULL;
}

const char *
collector_store_path(const collector_store_t *self)
{
    return self->ops->path(self->be);
}

const char *
collector_store_backend(const collector_store_t *self)
{
    return self->ops->name;
}

int
collector_store_event(collector_store_t *self, const char *broker,
                      const dv_event_t *ev, int64_t run_ms)
{
    return collector_store_event_fold(self, broker, ev, run_ms, NULL);
}

int
collector_store_event_fold(collector_store_t *self, const char *broker,
                           const dv_event_t *ev, int64_t run_ms,
                           const collector_store_fold_t *fold)
{
    bool job = collector_event_family(ev) == COLLECTOR_EV_JOB && ev->id.ptr &&
               ev->id.len;
    if (!job)
        return self->ops->event(self->be, broker, ev, run_ms, fold);
    if (fold && fold->history_only) /* a start written with its end */
        return self->ops->event(self->be, broker, ev, run_ms, fold);
    int rc = 0;
    s_stash_t *held = dv_map_getn(self->stash, ev->id.ptr, ev->id.len);
    if (ev->kind_enum == DV_EV_JOB_SUBMITTED && !collector_event_recorded(ev)) {
        if (held)
            rc |= s_write_one(self, ev->id.ptr, ev->id.len);
        if (dv_map_size(self->stash) >= S_STASH_MAX)
            rc |= s_flush_held(self);
        s_stash_t *h = s_stash_new(broker, ev);
        /* The key is the held copy's id (the map keeps the pointer). */
        if (h && dv_map_putn(self->stash, h->id.ptr, h->id.len, h) == 0)
            return rc ? -1 : 0;
        free(h); /* no memory to hold it: written now */
        rc |= self->ops->event(self->be, broker, ev, run_ms, fold);
        return rc ? -1 : 0;
    }
    if (!held)
        return self->ops->event(self->be, broker, ev, run_ms, fold);
    if (ev->kind_enum == DV_EV_JOB_SUCCEEDED) {
        collector_store_fold_t f = fold ? *fold : (collector_store_fold_t){ 0 };
        f.submitted = true;
        f.submitted_ms = held->ts_ms;
        f.run_at_ms = held->run_at_ms;
        rc = self->ops->event(self->be, broker, ev, run_ms, &f);
        dv_map_delete(self->stash, held->id.ptr); /* read before freed */
    } else {
        rc = s_write_one(self, ev->id.ptr, ev->id.len);
        rc |= self->ops->event(self->be, broker, ev, run_ms, fold);
    }
    return rc ? -1 : 0;
}

int
collector_store_backfill(collector_store_t *self, const char *broker,
                         const dv_finished_job_t *job)
{
    int rc = s_write_one(self, job->id.ptr, job->id.len); /* it came first */
    int r = self->ops->backfill(self->be, broker, job);
    return rc ? -1 : r;
}

int
collector_store_broker_save(collector_store_t *self, const char *endpoint,
                            const char *instance, uint64_t seq)
{
    return self->ops->broker_save(self->be, endpoint, instance, seq);
}

int
collector_store_broker_load(collector_store_t *self, const char *endpoint,
                            char *instance, size_t size, uint64_t *seq,
                            int64_t *saved_ms)
{
    int64_t saved = 0;
    int rc =
        self->ops->broker_load(self->be, endpoint, instance, size, seq, &saved);
    if (saved_ms)
        *saved_ms = saved;
    return rc;
}

/* Appends text to sql[*n...]; false when it does not fit. */
static bool
s_append(char *sql, size_t size, size_t *n, const char *text)
{
    size_t len = strlen(text);
    if (*n + len >= size)
        return false;
    memcpy(sql + *n, text, len + 1);
    *n += len;
    return true;
}

int
collector_store_all_states(char *sql, size_t size, const char *branch,
                           const char *head, const char *open,
                           const char *close, const char *tail)
{
    size_t n = 0;
    if (size == 0 || (sql[0] = '\0', !s_append(sql, size, &n, head)))
        return -1;
    for (int s = DV_STATE_QUEUED; s < DV_STATE_COUNT_; s++) {
        char name[32], one[1024];
        snprintf(name, sizeof name, "'%s'", dv_state_name((dv_state_t)s));
        int w = snprintf(one, sizeof one, branch, name);
        if (w < 0 || (size_t)w >= sizeof one ||
            (s > DV_STATE_QUEUED && !s_append(sql, size, &n, " UNION ALL ")) ||
            !s_append(sql, size, &n, open) || !s_append(sql, size, &n, one) ||
            !s_append(sql, size, &n, close))
            return -1;
    }
    return s_append(sql, size, &n, tail) ? 0 : -1;
}

int
collector_store_commit(collector_store_t *self)
{
    /* A failed write fails the commit. */
    s_flush_old(self, self->hold_ms ? dv_mono_ms() - self->hold_ms : INT64_MAX);
    return self->ops->commit(self->be);
}

json_t *
collector_store_jobs(collector_store_t *self, const collector_jobs_filter_t *f)
{
    s_flush_held(self);
    return self->ops->jobs(self->be, f);
}

/* ---- a job's timeline ------------------------------------------------------
 * The routine steps of a job (submitted, started, succeeded) have no
 * `events` rows (collector_event_recorded): they are put back here from
 * the job's `jobs` and `attempts` rows, each with the time its event had.
 * A history written before that has them as rows already: a step whose
 * kind, attempt and time match a row is not added twice. */

#define S_TIMELINE_MAX 200 /* events of one job in a view */

typedef struct {
    json_t *ev; /* borrowed from the array being built */
    int64_t ts;
    int rank; /* at one time: submitted, started, then the rest */
    size_t ix;
} s_step_t;

static int
s_step_cmp(const void *a, const void *b)
{
    const s_step_t *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    return x->ix < y->ix ? -1 : x->ix > y->ix;
}

static int
s_rank(const char *kind)
{
    if (!kind)
        return 2;
    if (!strcmp(kind, "job.submitted"))
        return 0;
    return !strcmp(kind, "job.started") ? 1 : 2;
}

/* Whether events has a row of kind for attempt (0: none) at ts. */
static bool
s_has_row(json_t *events, const char *kind, json_int_t attempt, json_int_t ts)
{
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        const char *k = json_string_value(json_object_get(e, "kind"));
        if (k && !strcmp(k, kind) &&
            json_integer_value(json_object_get(e, "ts")) == ts &&
            json_integer_value(json_object_get(e, "attempt")) == attempt)
            return true;
    }
    return false;
}

/* Appends a routine step unless events has it. Returns 0 or -1. */
static int
s_add_step(json_t *events, const char *kind, json_t *ts, json_t *worker,
           json_int_t attempt, const char *state)
{
    if (!json_is_integer(ts) ||
        s_has_row(events, kind, attempt, json_integer_value(ts)))
        return 0;
    json_t *e = json_pack("{sOsssOsosssnsn}", "ts", ts, "kind", kind, "worker",
                          worker ? worker : json_null(), "attempt",
                          attempt ? json_integer(attempt) : json_null(),
                          "state", state, "category", "message");
    return e ? json_array_append_new(events, e) : -1;
}

/* Adds the job's routine steps to its "events" and sorts them by time.
 * Returns 0, or -1 when out of memory. */
static int
s_timeline(json_t *job)
{
    json_t *events = json_object_get(job, "events");
    json_t *attempts = json_object_get(job, "attempts");
    if (!json_is_array(events))
        return 0;
    json_t *sub = json_object_get(job, "submitted_at");
    json_t *run_at = json_object_get(job, "run_at");
    bool later = json_is_integer(run_at) && json_is_integer(sub) &&
                 json_integer_value(run_at) > json_integer_value(sub);
    int rc = s_add_step(events, "job.submitted", sub, NULL, 0,
                        later ? "scheduled" : "queued");
    size_t i;
    json_t *a;
    json_array_foreach(attempts, i, a)
    {
        json_int_t n = json_integer_value(json_object_get(a, "attempt"));
        json_t *w = json_object_get(a, "worker");
        rc |= s_add_step(events, "job.started",
                         json_object_get(a, "started_at"), w, n, "running");
        const char *outcome = json_string_value(json_object_get(a, "outcome"));
        if (outcome && !strcmp(outcome, "succeeded"))
            rc |= s_add_step(events, "job.succeeded",
                             json_object_get(a, "finished_at"), w, n,
                             "succeeded");
    }
    if (rc)
        return -1;
    size_t n = json_array_size(events);
    s_step_t *steps = calloc(n ? n : 1, sizeof *steps);
    json_t *sorted = json_array();
    if (!steps || !sorted) {
        free(steps);
        json_decref(sorted);
        return -1;
    }
    json_t *e;
    json_array_foreach(events, i, e)
    {
        steps[i].ev = e;
        steps[i].ts = json_integer_value(json_object_get(e, "ts"));
        steps[i].rank = s_rank(json_string_value(json_object_get(e, "kind")));
        steps[i].ix = i;
    }
    qsort(steps, n, sizeof *steps, s_step_cmp);
    for (i = 0; i < n && i < S_TIMELINE_MAX && !rc; i++)
        rc |= json_array_append(sorted, steps[i].ev);
    free(steps);
    rc |= json_object_set_new(job, "events", sorted);
    return rc ? -1 : 0;
}

/* Sets key in o to v (taken) unless o has a non-null value there. */
static int
s_default(json_t *o, const char *key, json_t *v)
{
    json_t *cur = json_object_get(o, key);
    if (cur && !json_is_null(cur)) {
        json_decref(v);
        return 0;
    }
    return json_object_set_new(o, key, v ? v : json_null());
}

/* A success that carried its start has no attempts row (the jobs row says
 * it all, which saves two index writes a job): the last attempt of a
 * succeeded job is made from the jobs row, or completed from it when only
 * its progress was written. */
static int
s_success_attempt(json_t *job)
{
    const char *state = json_string_value(json_object_get(job, "state"));
    json_t *attempts = json_object_get(job, "attempts");
    json_int_t n = json_integer_value(json_object_get(job, "attempt"));
    json_int_t round = json_integer_value(json_object_get(job, "round"));
    if (!state || strcmp(state, "succeeded") || !json_is_array(attempts) ||
        n < 1)
        return 0;
    json_t *a = NULL, *x;
    size_t i;
    json_array_foreach(attempts, i, x)
    {
        if (json_integer_value(json_object_get(x, "round")) == round &&
            json_integer_value(json_object_get(x, "attempt")) == n)
            a = x;
    }
    if (a && json_is_string(json_object_get(a, "outcome")))
        return 0;
    int rc = 0;
    if (!a) {
        /* The rest of an attempt's columns, as both stores' job() list
         * them. */
        static const char *const cols[] = {
            "category",         "exit_code",      "http_status",
            "key_id",           "message",        "progress_current",
            "progress_message", "progress_total", "signal"
        };
        a = json_pack("{s:I, s:I}", "round", round, "attempt", n);
        if (!a || json_array_append_new(attempts, a) != 0)
            return -1;
        for (size_t k = 0; k < sizeof cols / sizeof cols[0]; k++)
            rc |= json_object_set_new(a, cols[k], json_null());
    }
    static const char *const from_job[] = { "worker", "started_at",
                                            "finished_at", "run_ms" };
    for (size_t k = 0; k < sizeof from_job / sizeof from_job[0]; k++)
        rc |= s_default(a, from_job[k],
                        json_incref(json_object_get(job, from_job[k])));
    rc |= json_object_set_new(a, "outcome", json_string("succeeded"));
    return rc ? -1 : 0;
}

json_t *
collector_store_job(collector_store_t *self, const char *id, int *found)
{
    s_flush_held(self);
    json_t *job = self->ops->job(self->be, id, found);
    if (job && (s_success_attempt(job) != 0 || s_timeline(job) != 0)) {
        json_decref(job);
        *found = -1; /* out of memory */
        return NULL;
    }
    return job;
}

json_t *
collector_store_batch(collector_store_t *self, const char *name,
                      int64_t since_ms)
{
    s_flush_held(self);
    return self->ops->batch(self->be, name, since_ms);
}

json_t *
collector_store_failures(collector_store_t *self, int64_t since_ms)
{
    s_flush_held(self);
    return self->ops->failures(self->be, since_ms);
}

int
collector_store_expire(collector_store_t *self, int64_t cutoff_ms, int max_rows)
{
    s_flush_held(self);
    return self->ops->expire(self->be, cutoff_ms, max_rows);
}
