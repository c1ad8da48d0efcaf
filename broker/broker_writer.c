#include "broker_writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dv_log.h"

typedef enum {
    OP_INSERT,
    OP_RUNNING,
    OP_WAITING,
    OP_FINISHED,
    OP_ATTEMPT,
    OP_QUEUE,
    OP_KEY,
    OP_PROBE,
    OP_SCHEDULE,
    OP_SCHEDULE_DEL,
    OP_BATCH,     /* a batch record (set_batch) */
    OP_BATCH_DEL, /* its removal (del_batch) */
} s_kind_t;

struct broker_op {
    broker_op_t *next;
    s_kind_t kind;
    char id[37];
    int attempt;
    dv_state_t state;
    int64_t t1, t2; /* run_at / started / finished, by kind */
    bool has_failure;
    const char *worker;                /* into data[] */
    union {                            /* by kind; strings point into data[] */
        dv_failure_t failure;          /* OP_WAITING, _FINISHED, _ATTEMPT */
        broker_jobrec_t rec;           /* OP_INSERT */
        broker_queue_settings_t queue; /* OP_QUEUE */
        broker_key_state_t key;        /* OP_KEY */
        broker_schedule_rec_t sched;   /* OP_SCHEDULE, _DEL (owner, name) */
        broker_batchrec_t batch;       /* OP_BATCH, OP_BATCH_DEL */
    };
    const void *blob; /* payload or result, into data[] */
    size_t blob_len;
    char data[];
};

struct broker_writer {
    broker_store_t *store;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work arrived, or stop */
    pthread_cond_t done_cv; /* a batch completed */
    broker_wbatch_t *todo, **todo_tail;
    broker_wbatch_t *done, **done_tail;
    bool stop;
    int efd;
    int fail_rc, fail_n; /* broker_writer_fail_next */
};

/* ---- ops -------------------------------------------------------------------- */

/* Room for a copied string (with its NUL) in data[]. */
static size_t
s_len(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies s into *cursor, returns the copy (NULL stays NULL). */
static const char *
s_put(char **cursor, const char *s, size_t n_with_nul)
{
    if (!s)
        return NULL;
    memcpy(*cursor, s, n_with_nul);
    const char *copy = *cursor;
    *cursor += n_with_nul;
    return copy;
}

/* Room for a failure's strings in data[]. Only an attempt keeps the
 * details and the stderr tail (the attempts table); a job's last failure
 * does not. */
static size_t
s_failure_len(const dv_failure_t *f, bool texts)
{
    if (!f)
        return 0;
    size_t n = (size_t)f->message.len + 1 + f->key_id.len + 1;
    if (texts)
        n += (size_t)f->details.len + 1 + f->stderr_tail.len + 1;
    return n;
}

/* Copies v into *cursor (NUL-terminated) and returns the copy; absent
 * stays absent. */
static dv_str_t
s_put_str(char **cursor, dv_str_t v)
{
    dv_str_t out = { 0 };
    if (v.ptr) {
        memcpy(*cursor, v.ptr, v.len);
        (*cursor)[v.len] = '\0';
        out = dv_strn(*cursor, v.len);
    }
    *cursor += v.len + 1;
    return out;
}

static void
s_failure_copy(broker_op_t *op, char **cursor, const dv_failure_t *f,
               bool texts)
{
    if (!f)
        return;
    op->has_failure = true;
    op->failure = *f;
    op->failure.message = s_put_str(cursor, f->message);
    op->failure.key_id = s_put_str(cursor, f->key_id);
    if (texts) {
        op->failure.details = s_put_str(cursor, f->details);
        op->failure.stderr_tail = s_put_str(cursor, f->stderr_tail);
    } else {
        op->failure.details = (dv_str_t){ 0 };
        op->failure.stderr_tail = (dv_str_t){ 0 };
    }
}

/* Ops are carved out of the batch's arena (common/dv_arena.h), so
 * recording a write costs no malloc once its chunks have grown to the
 * working size; clear() keeps S_ARENA_KEEP bytes of them for the next
 * batch. */
#define S_ARENA_KEEP (1u << 20)

static broker_op_t *
s_op_new(broker_wbatch_t *b, s_kind_t kind, const char *id, size_t extra)
{
    broker_op_t *op = dv_arena_alloc(&b->arena, sizeof *op + extra);
    if (!op)
        return NULL;
    memset(op, 0, sizeof *op);
    op->kind = kind;
    if (id) {
        size_t n = strnlen(id, sizeof op->id - 1);
        memcpy(op->id, id, n);
        op->id[n] = '\0';
    }
    *b->tail = op;
    b->tail = &op->next;
    b->nops++;
    return op;
}

void
broker_wbatch_init(broker_wbatch_t *b)
{
    memset(b, 0, sizeof *b);
    b->tail = &b->ops;
}

void
broker_wbatch_clear(broker_wbatch_t *b)
{
    /* A batch of a million inserts gives its memory back. */
    dv_arena_reset(&b->arena, b->nops < 50000 ? S_ARENA_KEEP : 0);
    b->ops = NULL;
    b->tail = &b->ops;
    b->nops = 0;
    b->expire = false;
    b->delay_ms = 0;
    b->rc = 0;
    b->store_rc = 0;
    b->expired = 0;
}

void
broker_wbatch_free(broker_wbatch_t *b)
{
    broker_wbatch_clear(b);
    dv_arena_free(&b->arena);
}

size_t
broker_wbatch_drop_inserts(broker_wbatch_t *b)
{
    size_t n = 0;
    broker_op_t **pp = &b->ops;
    while (*pp) {
        broker_op_t *op = *pp;
        if (op->kind == OP_INSERT) {
            *pp = op->next; /* its bytes stay in the arena until clear() */
            n++;
        } else {
            pp = &op->next;
        }
    }
    b->tail = pp;
    b->nops -= n;
    return n;
}

int
broker_wbatch_insert(broker_wbatch_t *b, const broker_jobrec_t *rec)
{
    size_t lq = s_len(rec->queue), lt = s_len(rec->type), lk = s_len(rec->key),
           lb = s_len(rec->batch), ltr = s_len(rec->trace),
           lo = s_len(rec->owner), ls = s_len(rec->schedule);
    size_t ld = (size_t)rec->ndeps * sizeof *rec->deps;
    broker_op_t *op =
        s_op_new(b, OP_INSERT, rec->id,
                 lq + lt + lk + lb + ltr + lo + ls + rec->payload_len + ld);
    if (!op)
        return -1;
    char *c = op->data;
    op->rec = *rec;
    op->rec.id = op->id;
    op->rec.queue = s_put(&c, rec->queue, lq);
    op->rec.type = s_put(&c, rec->type, lt);
    op->rec.key = s_put(&c, rec->key, lk);
    op->rec.batch = s_put(&c, rec->batch, lb);
    op->rec.trace = s_put(&c, rec->trace, ltr);
    op->rec.owner = s_put(&c, rec->owner, lo);
    op->rec.schedule = s_put(&c, rec->schedule, ls);
    op->rec.worker = NULL;
    if (rec->payload_len) {
        memcpy(c, rec->payload, rec->payload_len);
        op->rec.payload = c;
        c += rec->payload_len;
    } else {
        op->rec.payload = NULL;
    }
    if (ld) { /* byte copies: char arrays and a bool need no alignment */
        memcpy(c, rec->deps, ld);
        op->rec.deps = (const broker_dep_t *)(void *)c;
    } else {
        op->rec.deps = NULL;
        op->rec.ndeps = 0;
    }
    return 0;
}

int
broker_wbatch_running(broker_wbatch_t *b, const char *id, int attempt,
                      const char *worker, int64_t started_ms)
{
    size_t lw = s_len(worker);
    broker_op_t *op = s_op_new(b, OP_RUNNING, id, lw);
    if (!op)
        return -1;
    char *c = op->data;
    op->attempt = attempt;
    op->worker = s_put(&c, worker, lw);
    op->t1 = started_ms;
    return 0;
}

int
broker_wbatch_waiting(broker_wbatch_t *b, const char *id, dv_state_t state,
                      int64_t run_at_ms, int attempt,
                      const dv_failure_t *last_failure)
{
    broker_op_t *op =
        s_op_new(b, OP_WAITING, id, s_failure_len(last_failure, false));
    if (!op)
        return -1;
    char *c = op->data;
    op->state = state;
    op->t1 = run_at_ms;
    op->attempt = attempt;
    s_failure_copy(op, &c, last_failure, false);
    return 0;
}

int
broker_wbatch_finished(broker_wbatch_t *b, const char *id, dv_state_t state,
                       int attempt, const char *worker, int64_t started_ms,
                       const void *result, size_t result_len,
                       const dv_failure_t *failure, int64_t finished_ms)
{
    size_t lw = s_len(worker);
    broker_op_t *op = s_op_new(b, OP_FINISHED, id,
                               lw + result_len + s_failure_len(failure, false));
    if (!op)
        return -1;
    char *c = op->data;
    op->state = state;
    op->attempt = attempt;
    op->worker = s_put(&c, worker, lw);
    op->t1 = finished_ms;
    op->t2 = started_ms;
    if (result && result_len) {
        memcpy(c, result, result_len);
        op->blob = c;
        op->blob_len = result_len;
        c += result_len;
    }
    s_failure_copy(op, &c, failure, false);
    return 0;
}

int
broker_wbatch_attempt(broker_wbatch_t *b, const broker_attempt_t *a)
{
    size_t lw = s_len(a->worker);
    broker_op_t *op = s_op_new(b, OP_ATTEMPT, a->job_id,
                               lw + s_failure_len(a->failure, true));
    if (!op)
        return -1;
    char *c = op->data;
    op->attempt = a->attempt;
    op->worker = s_put(&c, a->worker, lw);
    op->t1 = a->started_ms;
    op->t2 = a->finished_ms;
    op->state = a->outcome;
    s_failure_copy(op, &c, a->failure, true);
    return 0;
}

int
broker_wbatch_queue(broker_wbatch_t *b, const broker_queue_settings_t *q)
{
    size_t ln = s_len(q->name);
    broker_op_t *op = s_op_new(b, OP_QUEUE, NULL, ln);
    if (!op)
        return -1;
    char *c = op->data;
    op->queue = *q;
    op->queue.name = s_put(&c, q->name, ln);
    return 0;
}

int
broker_wbatch_key(broker_wbatch_t *b, const broker_key_state_t *k)
{
    size_t lh = s_len(k->hash), li = s_len(k->id);
    broker_op_t *op = s_op_new(b, OP_KEY, NULL, lh + li);
    if (!op)
        return -1;
    char *c = op->data;
    op->key = *k;
    op->key.hash = s_put(&c, k->hash, lh);
    op->key.id = s_put(&c, k->id, li);
    return 0;
}

int
broker_wbatch_probe(broker_wbatch_t *b)
{
    return s_op_new(b, OP_PROBE, NULL, 0) ? 0 : -1;
}

/* ---- batch records -------------------------------------------------------- */

int
broker_wbatch_batch(broker_wbatch_t *b, const broker_batchrec_t *r)
{
    const char *strs[] = { r->owner,       r->name,        r->state,
                           r->on_complete, r->on_success,  r->on_failure,
                           r->queue,       r->complete_id, r->success_id,
                           r->failure_id,  r->since_id };
    size_t n = r->payload_len;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        n += s_len(strs[i]);
    broker_op_t *op = s_op_new(b, OP_BATCH, NULL, n);
    if (!op)
        return -1;
    char *c = op->data;
    op->batch = *r;
    op->batch.owner = s_put(&c, r->owner, s_len(r->owner));
    op->batch.name = s_put(&c, r->name, s_len(r->name));
    op->batch.state = s_put(&c, r->state, s_len(r->state));
    op->batch.on_complete = s_put(&c, r->on_complete, s_len(r->on_complete));
    op->batch.on_success = s_put(&c, r->on_success, s_len(r->on_success));
    op->batch.on_failure = s_put(&c, r->on_failure, s_len(r->on_failure));
    op->batch.queue = s_put(&c, r->queue, s_len(r->queue));
    op->batch.complete_id = s_put(&c, r->complete_id, s_len(r->complete_id));
    op->batch.success_id = s_put(&c, r->success_id, s_len(r->success_id));
    op->batch.failure_id = s_put(&c, r->failure_id, s_len(r->failure_id));
    op->batch.since_id = s_put(&c, r->since_id, s_len(r->since_id));
    op->batch.payload = NULL;
    if (r->payload && r->payload_len) {
        memcpy(c, r->payload, r->payload_len);
        op->batch.payload = c;
    }
    return 0;
}

int
broker_wbatch_batch_del(broker_wbatch_t *b, const char *owner, const char *name)
{
    size_t lo = s_len(owner), ln = s_len(name);
    broker_op_t *op = s_op_new(b, OP_BATCH_DEL, NULL, lo + ln);
    if (!op)
        return -1;
    char *c = op->data;
    op->batch.owner = s_put(&c, owner, lo);
    op->batch.name = s_put(&c, name, ln);
    return 0;
}

/* ---- schedules ----------------------------------------------------------- */

int
broker_wbatch_schedule(broker_wbatch_t *b, const broker_schedule_rec_t *r)
{
    size_t lo = s_len(r->owner), ln = s_len(r->name), lc = s_len(r->cron),
           lz = s_len(r->tz), lq = s_len(r->queue), lt = s_len(r->type),
           lj = s_len(r->last_job);
    broker_op_t *op =
        s_op_new(b, OP_SCHEDULE, NULL,
                 lo + ln + lc + lz + lq + lt + lj + r->payload_len);
    if (!op)
        return -1;
    char *c = op->data;
    op->sched = *r;
    op->sched.owner = s_put(&c, r->owner, lo);
    op->sched.name = s_put(&c, r->name, ln);
    op->sched.cron = s_put(&c, r->cron, lc);
    op->sched.tz = s_put(&c, r->tz, lz);
    op->sched.queue = s_put(&c, r->queue, lq);
    op->sched.type = s_put(&c, r->type, lt);
    op->sched.last_job = s_put(&c, r->last_job, lj);
    op->sched.payload = NULL;
    if (r->payload && r->payload_len) {
        memcpy(c, r->payload, r->payload_len);
        op->sched.payload = c;
    } else {
        op->sched.payload_len = 0;
    }
    return 0;
}

int
broker_wbatch_schedule_delete(broker_wbatch_t *b, const char *owner,
                              const char *name)
{
    size_t lo = s_len(owner), ln = s_len(name);
    broker_op_t *op = s_op_new(b, OP_SCHEDULE_DEL, NULL, lo + ln);
    if (!op)
        return -1;
    char *c = op->data;
    op->sched.owner = s_put(&c, owner, lo);
    op->sched.name = s_put(&c, name, ln);
    return 0;
}

/* ---- the thread ------------------------------------------------------------ */

static int
s_apply(broker_store_t *store, const broker_op_t *op)
{
    const dv_failure_t *f = op->has_failure ? &op->failure : NULL;
    switch (op->kind) {
    case OP_INSERT:
        return broker_store_insert(store, &op->rec);
    case OP_RUNNING:
        return broker_store_mark_running(store, op->id, op->attempt, op->worker,
                                         op->t1);
    case OP_WAITING:
        return broker_store_mark_waiting(store, op->id, op->state, op->t1,
                                         op->attempt, f);
    case OP_FINISHED:
        return broker_store_mark_done(store, op->id, op->state, op->attempt,
                                      op->worker, op->t2, op->blob,
                                      op->blob_len, f, op->t1);
    case OP_ATTEMPT: {
        broker_attempt_t a = {
            .job_id = op->id,
            .attempt = op->attempt,
            .worker = op->worker,
            .started_ms = op->t1,
            .finished_ms = op->t2,
            .outcome = op->state,
            .failure = f,
        };
        return broker_store_add_attempt(store, &a);
    }
    case OP_QUEUE:
        return broker_store_set_queue(store, &op->queue);
    case OP_KEY:
        return broker_store_set_key(store, &op->key);
    case OP_PROBE:
        return broker_store_probe(store);
    case OP_SCHEDULE:
        return broker_store_set_schedule(store, &op->sched);
    case OP_SCHEDULE_DEL:
        return broker_store_delete_schedule(store, op->sched.owner,
                                            op->sched.name);
    case OP_BATCH:
        return broker_store_set_batch(store, &op->batch);
    case OP_BATCH_DEL:
        return broker_store_del_batch(store, op->batch.owner, op->batch.name);
    }
    return DV_EPROTO;
}

/* One batch, one transaction. A busy store is retried (the whole group, as
 * the store asks); any other error fails the batch. */
static int
s_write(broker_store_t *store, broker_wbatch_t *b)
{
    int rc = 0;
    for (int tries = 0; tries < 5; tries++) {
        rc = broker_store_begin(store);
        for (const broker_op_t *op = b->ops; rc == 0 && op; op = op->next)
            rc = s_apply(store, op);
        if (rc == 0)
            rc = broker_store_commit(store);
        else if (broker_store_in_group(store))
            broker_store_rollback(store);
        if (rc != DV_ETRANSIENT)
            break;
    }
    return rc;
}

/* Waits up to ms (a retry's backoff) with the mutex held; stop cuts it
 * short. */
static void
s_delay(broker_writer_t *self, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (!self->stop &&
           pthread_cond_timedwait(&self->cv, &self->mu, &until) == 0)
        ;
}

static void *
s_run(void *arg)
{
    broker_writer_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->todo && !self->stop)
            pthread_cond_wait(&self->cv, &self->mu);
        if (!self->todo && self->stop)
            break;
        broker_wbatch_t *b = self->todo;
        self->todo = b->next;
        if (!self->todo)
            self->todo_tail = &self->todo;
        if (b->delay_ms > 0)
            s_delay(self, b->delay_ms);
        int fail = 0;
        if (self->fail_n > 0) {
            self->fail_n--;
            fail = self->fail_rc;
        }
        pthread_mutex_unlock(&self->mu);

        b->next = NULL;
        /* A batch the loop already knows is incomplete (a write could not
         * be recorded) is still written, but reported failed. */
        int pre = b->rc;
        b->store_rc = fail ? fail : b->nops ? s_write(self->store, b) : 0;
        b->rc = pre ? pre : b->store_rc;
        if (b->expire && b->store_rc == 0) {
            int n = broker_store_expire(self->store, b->expire_now_ms, 10000);
            b->expired = n > 0 ? n : 0;
        }

        pthread_mutex_lock(&self->mu);
        *self->done_tail = b;
        self->done_tail = &b->next;
        pthread_cond_broadcast(&self->done_cv);
        uint64_t one = 1;
        ssize_t w = write(self->efd, &one, sizeof one);
        (void)w;
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

broker_writer_t *
broker_writer_new(broker_store_t *store)
{
    broker_writer_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->store = store;
    self->todo_tail = &self->todo;
    self->done_tail = &self->done;
    self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&self->mu, NULL);
    /* cv times a retry's backoff: on the monotonic clock. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&self->done_cv, NULL);
    if (self->efd < 0 ||
        pthread_create(&self->thread, NULL, s_run, self) != 0) {
        dv_log(DV_ERROR, "broker.writer_start_failed",
               DV_STR("error", strerror(errno)));
        if (self->efd >= 0)
            close(self->efd);
        pthread_mutex_destroy(&self->mu);
        pthread_cond_destroy(&self->cv);
        pthread_cond_destroy(&self->done_cv);
        free(self);
        return NULL;
    }
    return self;
}

void
broker_writer_destroy(broker_writer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_writer_t *self = *self_p;
    pthread_mutex_lock(&self->mu);
    self->stop = true;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    pthread_join(self->thread, NULL);
    /* Batches still queued belong to the loop, which frees its groups. */
    close(self->efd);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->cv);
    pthread_cond_destroy(&self->done_cv);
    broker_store_destroy(&self->store);
    free(self);
    *self_p = NULL;
}

int
broker_writer_fd(const broker_writer_t *self)
{
    return self->efd;
}

void
broker_writer_push(broker_writer_t *self, broker_wbatch_t *b)
{
    b->next = NULL;
    pthread_mutex_lock(&self->mu);
    *self->todo_tail = b;
    self->todo_tail = &b->next;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
}

broker_wbatch_t *
broker_writer_pop_done(broker_writer_t *self)
{
    pthread_mutex_lock(&self->mu);
    broker_wbatch_t *b = self->done;
    if (b) {
        self->done = b->next;
        if (!self->done)
            self->done_tail = &self->done;
        b->next = NULL;
    } else {
        uint64_t n;
        ssize_t r = read(self->efd, &n, sizeof n); /* reset readiness */
        (void)r;
    }
    pthread_mutex_unlock(&self->mu);
    return b;
}

void
broker_writer_wait(broker_writer_t *self)
{
    pthread_mutex_lock(&self->mu);
    while (!self->done)
        pthread_cond_wait(&self->done_cv, &self->mu);
    pthread_mutex_unlock(&self->mu);
}

void
broker_writer_fail_next(broker_writer_t *self, int rc, int n)
{
    pthread_mutex_lock(&self->mu);
    self->fail_rc = rc;
    self->fail_n = n;
    pthread_mutex_unlock(&self->mu);
}
