#include "broker_reader.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dv_log.h"

struct broker_reader {
    broker_store_t *store;
    pthread_t thread;
    bool running; /* the thread was started and not joined yet */
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* work arrived, hold lifted, or stop */
    pthread_cond_t done_cv; /* a read completed */
    broker_read_t *todo, **todo_tail;
    broker_read_t *done, **done_tail;
    size_t outstanding; /* pushed, not popped */
    bool stop;
    bool hold; /* broker_reader_hold */
    int efd;
};

/* Appends r to the done queue and wakes the loop; mutex held. */
static void
s_complete(broker_reader_t *self, broker_read_t *r)
{
    r->next = NULL;
    *self->done_tail = r;
    self->done_tail = &r->next;
    pthread_cond_broadcast(&self->done_cv);
    uint64_t one = 1;
    ssize_t w = write(self->efd, &one, sizeof one);
    (void)w;
}

static void *
s_run(void *arg)
{
    broker_reader_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->stop && (!self->todo || self->hold))
            pthread_cond_wait(&self->cv, &self->mu);
        if (self->stop)
            break;
        broker_read_t *r = self->todo;
        self->todo = r->next;
        if (!self->todo)
            self->todo_tail = &self->todo;
        pthread_mutex_unlock(&self->mu);

        r->next = NULL;
        r->rc = r->run(self->store, r);

        pthread_mutex_lock(&self->mu);
        s_complete(self, r);
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}

broker_reader_t *
broker_reader_new(broker_store_t *store)
{
    broker_reader_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->store = store;
    self->todo_tail = &self->todo;
    self->done_tail = &self->done;
    self->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->cv, NULL);
    pthread_cond_init(&self->done_cv, NULL);
    if (self->efd < 0 ||
        pthread_create(&self->thread, NULL, s_run, self) != 0) {
        dv_log(DV_ERROR, "broker.reader_start_failed",
               DV_STR("error", strerror(errno)));
        if (self->efd >= 0)
            close(self->efd);
        pthread_mutex_destroy(&self->mu);
        pthread_cond_destroy(&self->cv);
        pthread_cond_destroy(&self->done_cv);
        free(self);
        return NULL;
    }
    self->running = true;
    return self;
}

void
broker_reader_stop(broker_reader_t *self)
{
    if (!self || !self->running)
        return;
    pthread_mutex_lock(&self->mu);
    self->stop = true;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    pthread_join(self->thread, NULL);
    self->running = false;
    pthread_mutex_lock(&self->mu);
    while (self->todo) {
        broker_read_t *r = self->todo;
        self->todo = r->next;
        r->stopped = true;
        s_complete(self, r);
    }
    self->todo_tail = &self->todo;
    pthread_mutex_unlock(&self->mu);
    broker_store_destroy(&self->store);
}

void
broker_reader_destroy(broker_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_reader_t *self = *self_p;
    broker_reader_stop(self);
    while (self->done) {
        broker_read_t *r = self->done;
        self->done = r->next;
        r->free(r);
    }
    close(self->efd);
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->cv);
    pthread_cond_destroy(&self->done_cv);
    free(self);
    *self_p = NULL;
}

int
broker_reader_fd(const broker_reader_t *self)
{
    return self->efd;
}

int
broker_reader_push(broker_reader_t *self, broker_read_t *r, bool bounded)
{
    int rc = 0;
    r->next = NULL;
    r->rc = 0;
    r->stopped = false;
    pthread_mutex_lock(&self->mu);
    if (self->stop)
        rc = BROKER_READER_STOPPED;
    else if (bounded && self->outstanding >= BROKER_READS_MAX)
        rc = BROKER_READER_FULL;
    else {
        *self->todo_tail = r;
        self->todo_tail = &r->next;
        self->outstanding++;
        pthread_cond_signal(&self->cv);
    }
    pthread_mutex_unlock(&self->mu);
    return rc;
}

broker_read_t *
broker_reader_pop_done(broker_reader_t *self)
{
    pthread_mutex_lock(&self->mu);
    broker_read_t *r = self->done;
    if (r) {
        self->done = r->next;
        if (!self->done)
            self->done_tail = &self->done;
        r->next = NULL;
        self->outstanding--;
    } else {
        uint64_t n;
        ssize_t rd = read(self->efd, &n, sizeof n); /* reset readiness */
        (void)rd;
    }
    pthread_mutex_unlock(&self->mu);
    return r;
}

size_t
broker_reader_outstanding(broker_reader_t *self)
{
    pthread_mutex_lock(&self->mu);
    size_t n = self->outstanding;
    pthread_mutex_unlock(&self->mu);
    return n;
}

bool
broker_reader_wait(broker_reader_t *self)
{
    pthread_mutex_lock(&self->mu);
    while (!self->done && self->outstanding > 0)
        pthread_cond_wait(&self->done_cv, &self->mu);
    bool any = self->done != NULL;
    pthread_mutex_unlock(&self->mu);
    return any;
}

void
broker_reader_hold(broker_reader_t *self, bool hold)
{
    pthread_mutex_lock(&self->mu);
    self->hold = hold;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
}
