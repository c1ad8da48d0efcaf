/* collector_store - picks a history backend by the --store URL and forwards
 * every call to it.
 *
 * The URL rules are the broker's (broker/broker_store.c): "sqlite:PATH",
 * "sqlite://PATH" or a bare path is a SQLite file; "postgres://..." and
 * "postgresql://..." go to PostgreSQL whole (libpq parses them); any other
 * "scheme://" is refused, never created as a file by that name.
 */
#include "collector_store_be.h"

#include <stdlib.h>
#include <string.h>

#include "dv_log.h"
#include "dv_util.h"

struct collector_store_t {
    const collector_store_ops_t *ops; /* the backend's vtable */
    collector_store_be_t *be;         /* the backend's handle */
};

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
    self->be = ops->open(arg);
    if (!self->be) {
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
    self->ops->close(&self->be);
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
    return self->ops->event(self->be, broker, ev, run_ms, NULL);
}

int
collector_store_event_fold(collector_store_t *self, const char *broker,
                           const dv_event_t *ev, int64_t run_ms,
                           const collector_store_fold_t *fold)
{
    return self->ops->event(self->be, broker, ev, run_ms, fold);
}

int
collector_store_backfill(collector_store_t *self, const char *broker,
                         const dv_finished_job_t *job)
{
    return self->ops->backfill(self->be, broker, job);
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

int
collector_store_commit(collector_store_t *self)
{
    return self->ops->commit(self->be);
}

json_t *
collector_store_jobs(collector_store_t *self, const collector_jobs_filter_t *f)
{
    return self->ops->jobs(self->be, f);
}

json_t *
collector_store_job(collector_store_t *self, const char *id, int *found)
{
    return self->ops->job(self->be, id, found);
}

json_t *
collector_store_batch(collector_store_t *self, const char *name,
                      int64_t since_ms)
{
    return self->ops->batch(self->be, name, since_ms);
}

json_t *
collector_store_failures(collector_store_t *self, int64_t since_ms)
{
    return self->ops->failures(self->be, since_ms);
}

int
collector_store_expire(collector_store_t *self, int64_t cutoff_ms, int max_rows)
{
    return self->ops->expire(self->be, cutoff_ms, max_rows);
}
