/* broker_store - picks a backend by URL and forwards every call to it.
 *
 * This file owns the rules that are the same for every backend: which URL
 * means which backend, and the write-group state machine. A misuse of that
 * state machine (nested begin, commit without begin, replay inside a group,
 * calling the store from inside its own callback) is a bug in the broker, so
 * it is an assert, not an error code.
 */
#include "broker_store.h"
#include "dv_err.h"
#include "dv_pg.h"
#include "dv_util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct broker_store {
    const broker_store_ops_t *ops; /* the backend's vtable */
    void *be;                      /* the backend's handle */
    bool in_group;                 /* between begin() and commit/rollback */
    bool in_callback;              /* inside a replay() or get() callback */
};

char *
broker_store_redact_url(const char *url, char *out, size_t size)
{
    return dv_pg_redact_url(url, out, size);
}

bool
broker_store_is_shared(const char *url)
{
    const char *arg;
    size_t n;
    return url && dv_store_url(url, &arg, &n) == DV_STORE_PG;
}

broker_store_t *
broker_store_open(const char *url, const broker_store_opts_t *opts, char *err,
                  size_t err_size)
{
    static const broker_store_opts_t default_opts = { BROKER_SYNC_FULL };
    if (!opts)
        opts = &default_opts;
    if (!url || !*url) {
        dv_err_set(err, err_size, "store URL is empty");
        return NULL;
    }

    /* The backend gets its own part of the URL: the file path for SQLite
     * (so "sqlite:///var/lib/drover.db" opens "/var/lib/drover.db");
     * PostgreSQL gets the whole URL, which libpq understands. */
    const char *arg = NULL;
    size_t scheme_len;
    dv_store_kind_t kind = dv_store_url(url, &arg, &scheme_len);
    if (kind == DV_STORE_UNKNOWN) {
        dv_err_set(err, err_size,
                   "unknown store URL scheme '%.*s' (expected sqlite:PATH, a "
                   "file path, or postgres://...)",
                   (int)scheme_len, url);
        return NULL;
    }
    const broker_store_ops_t *ops =
        kind == DV_STORE_PG ? &broker_store_pg_ops : &broker_store_sqlite_ops;
    if (!*arg) {
        dv_err_set(err, err_size, "store URL '%s' names no file", url);
        return NULL;
    }

    void *be = ops->open(arg, opts, err, err_size);
    if (!be)
        return NULL;
    broker_store_t *self = calloc(1, sizeof *self);
    if (!self) {
        ops->close(be);
        dv_err_set(err, err_size, "out of memory");
        return NULL;
    }
    self->ops = ops;
    self->be = be;
    return self;
}

void
broker_store_destroy(broker_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_store_t *self = *self_p;
    assert(!self->in_callback);
    /* The backend rolls back an open group itself when it closes. */
    self->ops->close(self->be);
    free(self);
    *self_p = NULL;
}

const char *
broker_store_backend(const broker_store_t *self)
{
    assert(self);
    return self->ops->name;
}

int
broker_store_begin(broker_store_t *self)
{
    assert(self);
    assert(!self->in_callback);
    assert(!self->in_group && "nested broker_store_begin()");
    int rc = self->ops->begin(self->be);
    if (rc == 0)
        self->in_group = true;
    return rc;
}

int
broker_store_commit(broker_store_t *self)
{
    assert(self);
    assert(!self->in_callback);
    assert(self->in_group && "broker_store_commit() without begin()");
    /* A failed commit rolls the group back, so either way the group ends;
     * the broker retries a DV_ETRANSIENT group with a fresh begin(). */
    self->in_group = false;
    return self->ops->commit(self->be);
}

int
broker_store_rollback(broker_store_t *self)
{
    assert(self);
    assert(!self->in_callback);
    assert(self->in_group && "broker_store_rollback() without begin()");
    self->in_group = false;
    return self->ops->rollback(self->be);
}

void
broker_store_read_begin(broker_store_t *self)
{
    assert(self && !self->in_group && !self->in_callback);
    if (self->ops->read_snapshot)
        self->ops->read_snapshot(self->be, true);
}

void
broker_store_read_end(broker_store_t *self)
{
    assert(self && !self->in_group && !self->in_callback);
    if (self->ops->read_snapshot)
        self->ops->read_snapshot(self->be, false);
}

bool
broker_store_in_group(const broker_store_t *self)
{
    assert(self);
    return self->in_group;
}

int
broker_store_insert(broker_store_t *self, const broker_jobrec_t *rec)
{
    assert(self && rec);
    assert(!self->in_callback);
    return self->ops->insert(self->be, rec);
}

int
broker_store_mark_running(broker_store_t *self, const char *id, int attempt,
                          const char *worker, int64_t started_ms)
{
    assert(self && id);
    assert(!self->in_callback);
    return self->ops->mark_running(self->be, id, attempt, worker, started_ms);
}

int
broker_store_mark_waiting(broker_store_t *self, const char *id,
                          dv_state_t state, int64_t run_at_ms, int attempt,
                          const dv_failure_t *last_failure)
{
    assert(self && id);
    assert(!self->in_callback);
    return self->ops->mark_waiting(self->be, id, state, run_at_ms, attempt,
                                   last_failure);
}

int
broker_store_mark_finished(broker_store_t *self, const char *id,
                           dv_state_t state, int attempt, const void *result,
                           size_t result_len, const dv_failure_t *failure,
                           int64_t finished_ms)
{
    assert(self && id);
    assert(!self->in_callback);
    return self->ops->mark_finished(self->be, id, state, attempt, NULL, 0,
                                    result, result_len, failure, finished_ms);
}

int
broker_store_mark_done(broker_store_t *self, const char *id, dv_state_t state,
                       int attempt, const char *worker, int64_t started_ms,
                       const void *result, size_t result_len,
                       const dv_failure_t *failure, int64_t finished_ms)
{
    assert(self && id);
    assert(!self->in_callback);
    return self->ops->mark_finished(self->be, id, state, attempt, worker,
                                    started_ms, result, result_len, failure,
                                    finished_ms);
}

int
broker_store_add_attempt(broker_store_t *self, const broker_attempt_t *a)
{
    assert(self && a);
    assert(!self->in_callback);
    return self->ops->add_attempt(self->be, a);
}

int
broker_store_replay(broker_store_t *self,
                    int (*cb)(void *arg, const broker_jobrec_t *rec), void *arg)
{
    assert(self && cb);
    assert(!self->in_callback);
    assert(!self->in_group && "broker_store_replay() inside a write group");
    /* The callback's record points into the backend's current row, so the
     * callback must not call the store (it would reset that row). */
    self->in_callback = true;
    int rc = self->ops->replay(self->be, cb, arg);
    self->in_callback = false;
    return rc;
}

int
broker_store_find_key(broker_store_t *self, const char *owner, const char *key,
                      char id_out[37])
{
    assert(self && key && id_out);
    assert(!self->in_callback);
    return self->ops->find_key(self->be, owner, key, id_out);
}

int
broker_store_get(broker_store_t *self, const char *id,
                 void (*cb)(void *arg, const broker_jobview_t *view), void *arg)
{
    assert(self && id && cb);
    assert(!self->in_callback);
    self->in_callback = true;
    int rc = self->ops->get(self->be, id, cb, arg);
    self->in_callback = false;
    return rc;
}

int
broker_store_attempts(broker_store_t *self, const char *id, int limit,
                      int (*cb)(void *arg, const broker_attempt_row_t *a),
                      void *arg)
{
    assert(self && id && cb && limit > 0);
    assert(!self->in_callback);
    self->in_callback = true;
    int rc = self->ops->attempts(self->be, id, limit, cb, arg);
    self->in_callback = false;
    return rc;
}

int
broker_store_expire(broker_store_t *self, int64_t now_ms, int limit)
{
    assert(self);
    assert(!self->in_callback);
    assert(!self->in_group && "broker_store_expire() inside a write group");
    return self->ops->expire(self->be, now_ms, limit);
}

int
broker_store_load(broker_store_t *self, const char *id,
                  int (*cb)(void *arg, const broker_jobrec_t *rec), void *arg)
{
    assert(self && id && cb);
    assert(!self->in_callback);
    self->in_callback = true;
    int rc = self->ops->load(self->be, id, cb, arg);
    self->in_callback = false;
    return rc;
}

int
broker_store_list(broker_store_t *self, const char *queue, dv_state_t state,
                  int limit, int (*cb)(void *arg, const char *id), void *arg)
{
    assert(self && queue && cb);
    assert(!self->in_callback);
    self->in_callback = true;
    int rc = self->ops->list(self->be, queue, state, limit, cb, arg);
    self->in_callback = false;
    return rc;
}

int
broker_store_finished(broker_store_t *self, int64_t since_ms, int64_t until_ms,
                      const char *after_id, int limit,
                      int (*cb)(void *arg, const broker_finished_t *f),
                      void *arg)
{
    assert(self && cb && limit > 0);
    assert(!self->in_callback);
    self->in_callback = true;
    int rc = self->ops->finished(self->be, since_ms, until_ms, after_id, limit,
                                 cb, arg);
    self->in_callback = false;
    return rc;
}

int
broker_store_set_queue(broker_store_t *self, const broker_queue_settings_t *q)
{
    assert(self && q && q->name);
    assert(!self->in_callback);
    assert(self->in_group && "broker_store_set_queue() outside a write group");
    return self->ops->set_queue(self->be, q);
}

int
broker_store_load_queues(broker_store_t *self,
                         int (*cb)(void *arg, const broker_queue_settings_t *q),
                         void *arg)
{
    assert(self && cb);
    assert(!self->in_callback);
    self->in_callback = true;
    int rc = self->ops->load_queues(self->be, cb, arg);
    self->in_callback = false;
    return rc;
}

int
broker_store_set_key(broker_store_t *self, const broker_key_state_t *k)
{
    assert(self && k && k->hash && k->id);
    assert(!self->in_callback);
    assert(self->in_group && "broker_store_set_key() outside a write group");
    return self->ops->set_key(self->be, k);
}

int
broker_store_load_keys(broker_store_t *self,
                       int (*cb)(void *arg, const broker_key_state_t *k),
                       void *arg)
{
    assert(self && cb);
    assert(!self->in_callback);
    assert(!self->in_group && "broker_store_load_keys() inside a write group");
    self->in_callback = true;
    int rc = self->ops->load_keys(self->be, cb, arg);
    self->in_callback = false;
    return rc;
}

int
broker_store_next_generation(broker_store_t *self, uint64_t *out)
{
    assert(self && out);
    assert(!self->in_group && !self->in_callback);
    return self->ops->next_generation(self->be, out);
}

int
broker_store_fence(broker_store_t *self, uint64_t generation)
{
    assert(self);
    assert(!self->in_group);
    return self->ops->fence ? self->ops->fence(self->be, generation) : 0;
}

int
broker_store_probe(broker_store_t *self)
{
    assert(self);
    assert(!self->in_callback);
    assert(self->in_group && "broker_store_probe() outside a write group");
    return self->ops->probe(self->be);
}

/* ---- batches --------------------------------------------------------------- */

int
broker_store_set_batch(broker_store_t *self, const broker_batchrec_t *b)
{
    assert(self && b && b->owner && b->name && b->state);
    assert(!self->in_callback);
    assert(self->in_group && "broker_store_set_batch() outside a write group");
    return self->ops->set_batch(self->be, b);
}

int
broker_store_del_batch(broker_store_t *self, const char *owner,
                       const char *name)
{
    assert(self && owner && name);
    assert(!self->in_callback);
    assert(self->in_group && "broker_store_del_batch() outside a write group");
    return self->ops->del_batch(self->be, owner, name);
}

int
broker_store_load_batches(broker_store_t *self,
                          int (*cb)(void *arg, const broker_batchrec_t *b),
                          void *arg)
{
    assert(self && cb);
    assert(!self->in_callback);
    self->in_callback = true;
    int rc = self->ops->load_batches(self->be, cb, arg);
    self->in_callback = false;
    return rc;
}

int
broker_store_batch_counts(broker_store_t *self, const char *owner,
                          const char *batch, const char *since_id,
                          broker_batch_counts_t *out)
{
    assert(self && batch && out);
    assert(!self->in_callback);
    memset(out, 0, sizeof *out);
    return self->ops->batch_counts(self->be, owner, batch, since_id, out);
}

int
broker_store_batch_jobs(broker_store_t *self, const char *owner,
                        const char *batch, const char *after_id, int limit,
                        int (*cb)(void *arg, const broker_jobview_t *v),
                        void *arg)
{
    assert(self && batch && cb && limit > 0);
    assert(!self->in_callback);
    self->in_callback = true;
    int rc =
        self->ops->batch_jobs(self->be, owner, batch, after_id, limit, cb, arg);
    self->in_callback = false;
    return rc;
}

/* ---- schedules ------------------------------------------------------------ */

int
broker_store_set_schedule(broker_store_t *self, const broker_schedule_rec_t *s)
{
    assert(self && s && s->name);
    assert(!self->in_callback);
    assert(self->in_group &&
           "broker_store_set_schedule() outside a write group");
    return self->ops->set_schedule(self->be, s);
}

int
broker_store_delete_schedule(broker_store_t *self, const char *owner,
                             const char *name)
{
    assert(self && name);
    assert(!self->in_callback);
    assert(self->in_group &&
           "broker_store_delete_schedule() outside a write group");
    return self->ops->delete_schedule(self->be, owner, name);
}

int
broker_store_load_schedules(broker_store_t *self,
                            int (*cb)(void *arg,
                                      const broker_schedule_rec_t *s),
                            void *arg)
{
    assert(self && cb);
    assert(!self->in_callback);
    assert(!self->in_group &&
           "broker_store_load_schedules() inside a write group");
    self->in_callback = true;
    int rc = self->ops->load_schedules(self->be, cb, arg);
    self->in_callback = false;
    return rc;
}

/* ---- job dependencies ---------------------------------------------------- */

int
broker_store_deps_replay(broker_store_t *self,
                         int (*cb)(void *arg, const char *job_id,
                                   const char *after_id, bool any,
                                   dv_state_t after_state),
                         void *arg)
{
    assert(self && cb);
    assert(!self->in_callback);
    self->in_callback = true;
    int rc = self->ops->deps_replay(self->be, cb, arg);
    self->in_callback = false;
    return rc;
}

int
broker_store_deps_of(
    broker_store_t *self, const char *id, bool waited_by, int limit,
    int (*cb)(void *arg, const char *id, bool any, dv_state_t state), void *arg)
{
    assert(self && id && cb && limit > 0);
    assert(!self->in_callback);
    self->in_callback = true;
    int rc = self->ops->deps_of(self->be, id, waited_by, limit, cb, arg);
    self->in_callback = false;
    return rc;
}
