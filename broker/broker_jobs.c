#include "broker_jobs.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* broker_job_t keeps these in 4 bits each. */
_Static_assert(DV_STATE_COUNT_ <= 16, "job state needs more than 4 bits");
_Static_assert(BROKER_PRIORITIES <= 16, "priority needs more than 4 bits");

broker_job_t *
broker_job_new(const dv_id_t *id, const void *payload, size_t payload_len)
{
    broker_job_t *job = calloc(1, sizeof *job + payload_len);
    if (!job)
        return NULL;
    job->id = *id;
    job->heap_idx = UINT32_MAX;
    job->payload_len = (uint32_t)payload_len;
    if (payload_len)
        memcpy(job->payload, payload, payload_len);
    return job;
}

void
broker_job_destroy(broker_job_t **job_p)
{
    if (!job_p || !*job_p)
        return;
    broker_job_t *job = *job_p;
    free(job->trace);
    while (job->waiters) {
        broker_waiter_t *w = job->waiters;
        job->waiters = w->next;
        free(w);
    }
    free(job);
    *job_p = NULL;
}

/* ---- index ---------------------------------------------------------------- */

/* UUIDv7 bytes 8..15 are random (or a counter seeded randomly), so they hash
 * well as they are; mix anyway so sequential counters spread. */
static size_t
s_hash(const dv_id_t *id)
{
    uint64_t h;
    memcpy(&h, id->b + 8, 8);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return (size_t)h;
}

/* A slot holds the job's pointer with 4 bits of its hash in the low bits,
 * which malloc's 16-byte alignment leaves zero: a probe reads the job (a
 * cache miss on a big index) only when those bits match, 1 in 16 of the
 * others. The index's position comes from the low bits of the hash, the
 * tag from the top ones. */
_Static_assert(_Alignof(max_align_t) >= 16, "job tags need 16-byte malloc");
#define S_TAG_MASK ((uintptr_t)15)

static inline uintptr_t
s_tag(size_t h)
{
    return (uintptr_t)(h >> 60) & S_TAG_MASK;
}

static inline broker_job_t *
s_untag(uintptr_t slot)
{
    return (broker_job_t *)(slot & ~S_TAG_MASK);
}

int
broker_index_init(broker_index_t *ix)
{
    ix->cap = 1024;
    ix->count = 0;
    ix->slots = calloc(ix->cap, sizeof *ix->slots);
    return ix->slots ? 0 : -1;
}

void
broker_index_free(broker_index_t *ix)
{
    free(ix->slots);
    ix->slots = NULL;
    ix->cap = ix->count = 0;
}

broker_job_t *
broker_index_at(const broker_index_t *ix, size_t i)
{
    return ix->slots && i < ix->cap ? s_untag(ix->slots[i]) : NULL;
}

static void
s_index_insert(uintptr_t *slots, size_t cap, broker_job_t *job)
{
    uintptr_t addr = (uintptr_t)job;
    assert((addr & S_TAG_MASK) == 0);
    size_t h = s_hash(&job->id);
    size_t i = h & (cap - 1);
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = addr | s_tag(h);
}

int
broker_index_put(broker_index_t *ix, broker_job_t *job)
{
    /* Keep the load under 1/2 so probes stay short. */
    if ((ix->count + 1) * 2 > ix->cap) {
        size_t ncap = ix->cap * 2;
        uintptr_t *ns = calloc(ncap, sizeof *ns);
        if (!ns)
            return -1;
        for (size_t i = 0; i < ix->cap; i++)
            if (ix->slots[i])
                s_index_insert(ns, ncap, s_untag(ix->slots[i]));
        free(ix->slots);
        ix->slots = ns;
        ix->cap = ncap;
    }
    s_index_insert(ix->slots, ix->cap, job);
    ix->count++;
    return 0;
}

broker_job_t *
broker_index_get(const broker_index_t *ix, const dv_id_t *id)
{
    size_t h = s_hash(id);
    uintptr_t tag = s_tag(h);
    size_t i = h & (ix->cap - 1);
    while (ix->slots[i]) {
        if ((ix->slots[i] & S_TAG_MASK) == tag) {
            broker_job_t *job = s_untag(ix->slots[i]);
            if (dv_id_eq(&job->id, id))
                return job;
        }
        i = (i + 1) & (ix->cap - 1);
    }
    return NULL;
}

void
broker_index_del(broker_index_t *ix, const broker_job_t *job)
{
    size_t mask = ix->cap - 1;
    size_t i = s_hash(&job->id) & mask;
    while (ix->slots[i] && s_untag(ix->slots[i]) != job)
        i = (i + 1) & mask;
    if (!ix->slots[i])
        return;
    ix->slots[i] = 0;
    ix->count--;
    /* Backward-shift deletion: re-place the rest of the probe run so no
     * lookup stops early at the hole. */
    size_t j = (i + 1) & mask;
    while (ix->slots[j]) {
        broker_job_t *moved = s_untag(ix->slots[j]);
        ix->slots[j] = 0;
        s_index_insert(ix->slots, ix->cap, moved);
        j = (j + 1) & mask;
    }
}

/* ---- queues ----------------------------------------------------------------- */

broker_queue_t *
broker_queue_new(const char *name)
{
    broker_queue_t *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->name = strdup(name);
    if (!q->name) {
        free(q);
        return NULL;
    }
    return q;
}

void
broker_queue_destroy(broker_queue_t **q_p)
{
    if (!q_p || !*q_p)
        return;
    free((*q_p)->name);
    free(*q_p);
    *q_p = NULL;
}

void
broker_queue_push(broker_queue_t *q, broker_job_t *job, bool front)
{
    int p = job->priority;
    job->queue = q;
    if (front) {
        job->prev = NULL;
        job->next = q->head[p];
        if (q->head[p])
            q->head[p]->prev = job;
        else
            q->tail[p] = job;
        q->head[p] = job;
    } else {
        job->next = NULL;
        job->prev = q->tail[p];
        if (q->tail[p])
            q->tail[p]->next = job;
        else
            q->head[p] = job;
        q->tail[p] = job;
    }
    q->nonempty |= (uint16_t)(1u << p);
    q->ready++;
}

void
broker_queue_remove(broker_queue_t *q, broker_job_t *job)
{
    int p = job->priority;
    if (job->prev)
        job->prev->next = job->next;
    else
        q->head[p] = job->next;
    if (job->next)
        job->next->prev = job->prev;
    else
        q->tail[p] = job->prev;
    job->next = job->prev = NULL;
    if (!q->head[p])
        q->nonempty &= (uint16_t) ~(1u << p);
    q->ready--;
}

bool
broker_queue_oldest(const broker_queue_t *q, int64_t *ready_us)
{
    bool any = false;
    for (int p = 0; p < BROKER_PRIORITIES; p++) {
        const broker_job_t *h = q->head[p];
        if (h && (!any || h->ready_us < *ready_us)) {
            *ready_us = h->ready_us;
            any = true;
        }
    }
    return any;
}

broker_job_t *
broker_queue_pop(broker_queue_t *q)
{
    if (!q->nonempty)
        return NULL;
    int p = 31 - __builtin_clz((unsigned)q->nonempty);
    broker_job_t *job = q->head[p];
    broker_queue_remove(q, job);
    return job;
}

/* ---- running list ------------------------------------------------------------ */

void
broker_list_add(broker_list_t *l, broker_job_t *job)
{
    job->prev = NULL;
    job->next = l->head;
    if (l->head)
        l->head->prev = job;
    l->head = job;
    l->count++;
}

void
broker_list_remove(broker_list_t *l, broker_job_t *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        l->head = job->next;
    if (job->next)
        job->next->prev = job->prev;
    job->next = job->prev = NULL;
    l->count--;
}

/* ---- heap ---------------------------------------------------------------------- */

static bool
s_before(const broker_job_t *a, const broker_job_t *b)
{
    if (a->run_at_ms != b->run_at_ms)
        return a->run_at_ms < b->run_at_ms;
    return memcmp(a->id.b, b->id.b, 16) < 0; /* FIFO among equal times */
}

static void
s_set(broker_heap_t *h, uint32_t i, broker_job_t *job)
{
    h->items[i] = job;
    job->heap_idx = i;
}

static void
s_up(broker_heap_t *h, uint32_t i)
{
    broker_job_t *job = h->items[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!s_before(job, h->items[parent]))
            break;
        s_set(h, i, h->items[parent]);
        i = parent;
    }
    s_set(h, i, job);
}

static void
s_down(broker_heap_t *h, uint32_t i)
{
    broker_job_t *job = h->items[i];
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        broker_job_t *best = job;
        if (l < h->count && s_before(h->items[l], best)) {
            m = l;
            best = h->items[l];
        }
        if (r < h->count && s_before(h->items[r], best)) {
            m = r;
            best = h->items[r];
        }
        if (m == i)
            break;
        s_set(h, i, best);
        i = m;
    }
    s_set(h, i, job);
}

void
broker_heap_free(broker_heap_t *h)
{
    free(h->items);
    h->items = NULL;
    h->count = h->cap = 0;
}

int
broker_heap_push(broker_heap_t *h, broker_job_t *job)
{
    if (h->count == h->cap) {
        uint32_t ncap = h->cap ? h->cap * 2 : 256;
        broker_job_t **ni = realloc(h->items, ncap * sizeof *ni);
        if (!ni)
            return -1;
        h->items = ni;
        h->cap = ncap;
    }
    h->items[h->count] = job;
    job->heap_idx = h->count;
    h->count++;
    s_up(h, h->count - 1);
    return 0;
}

broker_job_t *
broker_heap_peek(const broker_heap_t *h)
{
    return h->count ? h->items[0] : NULL;
}

void
broker_heap_remove(broker_heap_t *h, broker_job_t *job)
{
    uint32_t i = job->heap_idx;
    assert(i < h->count && h->items[i] == job);
    h->count--;
    job->heap_idx = UINT32_MAX;
    if (i == h->count)
        return;
    h->items[i] = h->items[h->count];
    h->items[i]->heap_idx = i;
    s_down(h, i);
    s_up(h, h->items[i]->heap_idx);
}

broker_job_t *
broker_heap_pop(broker_heap_t *h)
{
    broker_job_t *job = broker_heap_peek(h);
    if (job)
        broker_heap_remove(h, job);
    return job;
}
