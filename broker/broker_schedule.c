/* broker_schedule - periodic jobs kept by the broker: its schedules, when
 * each fires next, and the firings.
 *
 * A schedule fires at the times of a cron expression (common/dv_cron.h, in
 * a time zone) or at anchor + k * interval (--every; the anchor is when it
 * was added, so firings never drift). It lives in memory (self->schedules,
 * by name; self->sheap, a min-heap by the time it next needs attention)
 * and in the store (table schedules, one row per schedule, rewritten
 * whole at each change, so a replayed write is harmless).
 *
 * A firing is a job the broker submits itself (broker_self.c) with the
 * idempotency key "drover:schedule:NAME:FIRE_MS" (FIRE_MS: the firing's
 * nominal time, epoch ms) and the schedule's owner, so a firing submitted
 * again (after a crash, a takeover, or an ack that never came) comes back
 * a duplicate instead of a second job. Only once the submit's ack says the
 * job is durable (or a duplicate) does the schedule advance: its row (next
 * firing, last firing, last job, counters) is written in the group being
 * built then. A refused submit (store down) is tried again after 1 s,
 * doubling to 30 s; a submit with no ack within 60 s is sent again.
 *
 * Missed firings (the broker was down, or a firing waited behind an
 * outage): with catch-up "once" (the default) the latest firing due is
 * fired once and the older ones are dropped; with "skip" a firing more
 * than S_SKIP_GRACE_MS late is not fired and the schedule goes on at the
 * next firing in the future. --no-overlap skips a firing while the last
 * job is live (queued, scheduled or running) and counts it as skipped.
 *
 * A schedule removed while a submit of it waits for its ack stays, out of
 * the map and the heap, on self->sched_zombies until the ack comes (or the
 * broker stops).
 *
 * Loop thread only. Each firing costs O(log n) in the heap.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_internal.h"
#include "broker_schedule.h"
#include "dv_log.h"

#define S_ACK_WAIT_MS    60000 /* no ack by then: submit again */
#define S_RETRY_MIN_MS   1000  /* a refused firing: first retry */
#define S_RETRY_MAX_MS   30000 /* the backoff's cap */
#define S_SKIP_GRACE_MS  1000  /* catch-up skip: later than this is missed */
#define S_CRON_STEPS_MAX 100000
#define S_BUSY_RETRY_MS  100 /* refused with try_again (reads queue full) */
/* Submits per pass at most: each firing's key is looked up by the reader
 * thread, whose queue is bounded (BROKER_READS_MAX); the rest stay due and
 * go in the next passes, which follow at once. */
#define S_FIRES_PER_PASS 1000
#define S_NOT_IN_HEAP    UINT32_MAX

/* One submit of a firing, waiting for its ack; on self->sched_tokens, so
 * that those whose ack never comes (lost, or the broker stops) are freed
 * with the schedules. */
typedef struct broker_sched_token {
    struct broker_sched_token *next, *prev;
    broker_schedule_t *s;
    int64_t fire_ms;
    int64_t submit_ms;
} s_token_t;

static void
s_token_unlink(broker_t *self, s_token_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        self->sched_tokens = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

/* ---- the times ------------------------------------------------------------ */

int64_t
broker_schedule_next_after(const broker_schedule_t *s, int64_t t)
{
    if (s->every_ms > 0) {
        int64_t k = t < s->anchor_ms ? 1 : (t - s->anchor_ms) / s->every_ms + 1;
        return s->anchor_ms + k * s->every_ms;
    }
    return dv_cron_next(&s->cron, s->tz, t);
}

/* The latest firing at or before now, from firing from (<= now). */
static int64_t
s_latest_upto(const broker_schedule_t *s, int64_t from, int64_t now)
{
    if (s->every_ms > 0) {
        if (now < s->anchor_ms + s->every_ms)
            return from;
        int64_t k = (now - s->anchor_ms) / s->every_ms;
        int64_t f = s->anchor_ms + k * s->every_ms;
        return f > from ? f : from;
    }
    /* Not from `from` second by second after a long outage: from the
     * start of the smallest window back from now that has a firing. */
    static const int64_t windows[] = { 3600000LL, 86400000LL, 32 * 86400000LL,
                                       400 * 86400000LL };
    int64_t f = from;
    for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        int64_t start = now - windows[w];
        if (start <= from)
            break;
        int64_t n = dv_cron_next(&s->cron, s->tz, start - 1);
        if (n >= 0 && n <= now) {
            f = n;
            break;
        }
    }
    for (int i = 0; i < S_CRON_STEPS_MAX; i++) {
        int64_t n = dv_cron_next(&s->cron, s->tz, f);
        if (n < 0 || n > now)
            break;
        f = n;
    }
    return f;
}

/* ---- the heap, by due_ms -------------------------------------------------- */

static void
s_heap_swap(broker_t *self, uint32_t a, uint32_t b)
{
    broker_schedule_t *t = self->sheap[a];
    self->sheap[a] = self->sheap[b];
    self->sheap[b] = t;
    self->sheap[a]->heap_ix = a;
    self->sheap[b]->heap_ix = b;
}

static void
s_heap_up(broker_t *self, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (self->sheap[p]->due_ms <= self->sheap[i]->due_ms)
            break;
        s_heap_swap(self, p, i);
        i = p;
    }
}

static void
s_heap_down(broker_t *self, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < self->nsheap && self->sheap[l]->due_ms < self->sheap[m]->due_ms)
            m = l;
        if (r < self->nsheap && self->sheap[r]->due_ms < self->sheap[m]->due_ms)
            m = r;
        if (m == i)
            return;
        s_heap_swap(self, i, m);
        i = m;
    }
}

static void
s_heap_remove(broker_t *self, broker_schedule_t *s)
{
    uint32_t i = s->heap_ix;
    if (i == S_NOT_IN_HEAP)
        return;
    uint32_t last = --self->nsheap;
    if (i != last) {
        self->sheap[i] = self->sheap[last];
        self->sheap[i]->heap_ix = i;
        s_heap_down(self, i);
        s_heap_up(self, i);
    }
    s->heap_ix = S_NOT_IN_HEAP;
}

/* Sets when s needs attention next (< 0: never) and places it in the heap
 * (out of it while paused or removed). Returns 0, or -1 when the heap
 * cannot grow (out of memory: s is then out of the heap, logged). */
static int
s_set_due(broker_t *self, broker_schedule_t *s, int64_t due_ms)
{
    s->due_ms = due_ms;
    if (due_ms < 0 || s->paused || s->removed) {
        s_heap_remove(self, s);
        return 0;
    }
    if (s->heap_ix != S_NOT_IN_HEAP) {
        s_heap_down(self, s->heap_ix);
        s_heap_up(self, s->heap_ix);
        return 0;
    }
    if (self->nsheap == self->sheap_cap) {
        size_t cap = self->sheap_cap ? 2 * (size_t)self->sheap_cap : 64;
        broker_schedule_t **h = realloc(self->sheap, cap * sizeof *h);
        if (!h) {
            dv_log(DV_ERROR, "broker.schedule_stalled", DV_STR("name", s->name),
                   DV_STR("error", "out of memory"));
            return -1;
        }
        self->sheap = h;
        self->sheap_cap = (uint32_t)cap;
    }
    s->heap_ix = self->nsheap;
    self->sheap[self->nsheap++] = s;
    s_heap_up(self, s->heap_ix);
    return 0;
}

/* ---- the table ------------------------------------------------------------ */

void
broker_schedule_free(broker_schedule_t *s)
{
    if (!s)
        return;
    free(s->name);
    free(s->owner);
    free(s->cron_text);
    free(s->queue);
    free(s->type);
    free(s->payload);
    free(s);
}

static void
s_tz_free(void *item)
{
    dv_tz_t *tz = item;
    dv_tz_free(&tz);
}

int
broker_schedule_tables(broker_t *self)
{
    if (!self->schedules)
        self->schedules = dv_map_new(NULL);
    if (!self->tzs)
        self->tzs = dv_map_new(s_tz_free);
    return self->schedules && self->tzs ? 0 : -1;
}

dv_tz_t *
broker_schedule_tz(broker_t *self, const char *name, char *err, size_t err_size)
{
    if (broker_schedule_tables(self) != 0) {
        dv_err_set(err, err_size, "out of memory");
        return NULL;
    }
    dv_tz_t *tz = dv_map_get(self->tzs, name);
    if (tz)
        return tz;
    tz = dv_tz_load(name, err, err_size);
    if (tz && dv_map_put(self->tzs, dv_tz_name(tz), tz) != 0) {
        dv_tz_free(&tz);
        dv_err_set(err, err_size, "out of memory");
    }
    return tz;
}

int
broker_schedule_insert(broker_t *self, broker_schedule_t *s)
{
    s->heap_ix = S_NOT_IN_HEAP;
    if (broker_schedule_tables(self) != 0 ||
        dv_map_put(self->schedules, s->name, s) != 0)
        return -1;
    if (!s->paused &&
        s_set_due(self, s,
                  s->phase == BROKER_SCHED_IDLE ? s->next_ms
                                                : broker_now_ms(self)) != 0) {
        dv_map_delete(self->schedules, s->name);
        return -1;
    }
    return 0;
}

void
broker_schedule_remove(broker_t *self, broker_schedule_t *s)
{
    s_heap_remove(self, s);
    dv_map_delete(self->schedules, s->name);
    s->removed = true;
    if (s->pending) {
        s->next_zombie = self->sched_zombies;
        self->sched_zombies = s;
    } else {
        broker_schedule_free(s);
    }
}

void
broker_schedule_set_paused(broker_t *self, broker_schedule_t *s, bool paused)
{
    s->paused = paused;
    if (paused) {
        s_heap_remove(self, s);
        return;
    }
    int64_t now = broker_now_ms(self);
    if (s->phase != BROKER_SCHED_IDLE) {
        s_set_due(self, s, now); /* a firing under way: on with it */
        return;
    }
    /* The firings missed while paused are not fired. */
    if (s->next_ms > 0 && s->next_ms <= now)
        s->next_ms = broker_schedule_next_after(s, now);
    s_set_due(self, s, s->next_ms);
}

void
broker_schedule_free_all(broker_t *self)
{
    while (self->sched_tokens) {
        s_token_t *t = self->sched_tokens;
        self->sched_tokens = t->next;
        free(t);
    }
    broker_schedule_t *s;
    DV_MAP_EACH(s, self->schedules)
    {
        broker_schedule_free(s);
    }
    dv_map_destroy(&self->schedules);
    while (self->sched_zombies) {
        s = self->sched_zombies;
        self->sched_zombies = s->next_zombie;
        broker_schedule_free(s);
    }
    free(self->sheap);
    self->sheap = NULL;
    self->nsheap = self->sheap_cap = 0;
    dv_map_destroy(&self->tzs);
}

int64_t
broker_schedule_next_due(const broker_t *self)
{
    return self->nsheap ? self->sheap[0]->due_ms : INT64_MAX;
}

const broker_schedule_t *
broker_schedule_next(const broker_t *self)
{
    /* The heap's top may be a firing under way; the next firing is what a
     * person wants to see: the least next_ms among those in the heap.
     * O(n) but only for status. */
    const broker_schedule_t *best = NULL;
    for (uint32_t i = 0; i < self->nsheap; i++) {
        const broker_schedule_t *s = self->sheap[i];
        if (s->next_ms > 0 && (!best || s->next_ms < best->next_ms))
            best = s;
    }
    return best;
}

bool
broker_schedule_job_live(const broker_t *self, const broker_schedule_t *s)
{
    if (!s->has_last_job)
        return false;
    const broker_job_t *job = broker_index_get(&self->index, &s->last_job);
    return job && !dv_state_terminal(job->state);
}

/* ---- the store ------------------------------------------------------------ */

void
broker_schedule_rec(const broker_schedule_t *s, broker_schedule_rec_t *r,
                    char last_job[DV_ID_TEXT_LEN + 1])
{
    if (s->has_last_job)
        dv_id_format(&s->last_job, last_job);
    *r = (broker_schedule_rec_t){
        .owner = s->owner,
        .name = s->name,
        .cron = s->cron_text,
        .every_ms = s->every_ms,
        .tz = s->tz ? dv_tz_name(s->tz) : NULL,
        .anchor_ms = s->anchor_ms,
        .queue = s->queue,
        .type = s->type,
        .payload = s->payload,
        .payload_len = s->payload_len,
        .priority = s->priority,
        .max_attempts = s->max_attempts,
        .timeout_ms = s->timeout_ms,
        .no_overlap = s->no_overlap,
        .catch_up_skip = s->catch_up_skip,
        .paused = s->paused,
        .created_ms = s->created_ms,
        .next_ms = s->next_ms > 0 ? s->next_ms : 0,
        .last_fire_ms = s->last_fire_ms,
        .last_job = s->has_last_job ? last_job : NULL,
        .firings = s->firings,
        .skipped = s->skipped,
        .last_lag_ms = s->last_lag_ms,
    };
}

int
broker_schedule_save(broker_t *self, const broker_schedule_t *s)
{
    broker_schedule_rec_t r;
    char last_job[DV_ID_TEXT_LEN + 1];
    broker_schedule_rec(s, &r, last_job);
    if (broker_wbatch_schedule(&self->cur->wb, &r) != 0) {
        broker_write_lost(self);
        dv_log(DV_ERROR, "broker.schedule_write_lost", DV_STR("name", s->name),
               DV_STR("error", "out of memory"));
        return -1;
    }
    return 0;
}

/* ---- events --------------------------------------------------------------- */

static void
s_event(broker_t *self, const broker_schedule_t *s, const char *kind,
        const char *job_id, int64_t fire_ms, int64_t lag_ms)
{
    broker_body_t body;
    msgpack_packer pk;
    broker_body_init(&body, &pk);
    msgpack_pack_map(&pk, job_id ? 3 : 2);
    broker_pack_kv_str(&pk, "schedule", s->name);
    broker_pack_kv_int(&pk, "fire_ms", fire_ms);
    if (job_id)
        broker_pack_kv_int(&pk, "lag_ms", lag_ms);
    if (body.failed) {
        broker_body_destroy(&body);
        dv_log(DV_ERROR, "broker.event_dropped", DV_STR("kind", kind),
               DV_INT("seq", (int64_t)++self->event_seq),
               DV_STR("error", "out of memory"));
        return;
    }
    dv_event_t ev = { 0 };
    ev.kind = dv_str(kind);
    ev.id = dv_str(job_id);
    ev.queue = dv_str(s->queue);
    ev.type = dv_str(s->type);
    ev.body = dv_strn(body.sb.data, body.sb.size);
    broker_out_event(self, &ev);
    broker_body_destroy(&body);
}

/* ---- firing --------------------------------------------------------------- */

static void
s_retry(broker_t *self, broker_schedule_t *s, int64_t now)
{
    s->phase = BROKER_SCHED_RETRY;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : (int64_t)S_RETRY_MIN_MS;
    if (s->backoff_ms > S_RETRY_MAX_MS)
        s->backoff_ms = S_RETRY_MAX_MS;
    s_set_due(self, s, now + s->backoff_ms);
}

/* The next firing after fire_ms is what s waits for now. */
static void
s_advance(broker_t *self, broker_schedule_t *s, int64_t fire_ms)
{
    s->phase = BROKER_SCHED_IDLE;
    s->backoff_ms = 0;
    s->next_ms = broker_schedule_next_after(s, fire_ms);
    broker_schedule_save(self, s);
    s_set_due(self, s, s->next_ms);
}

static void
s_acked(broker_t *self, void *arg, const dv_submit_ack_t *ack)
{
    s_token_t *t = arg;
    broker_schedule_t *s = t->s;
    int64_t fire_ms = t->fire_ms, submit_ms = t->submit_ms;
    s_token_unlink(self, t);
    free(t);
    s->pending--;
    if (s->removed) {
        if (!s->pending) {
            broker_schedule_t **pp = &self->sched_zombies;
            while (*pp && *pp != s)
                pp = &(*pp)->next_zombie;
            if (*pp)
                *pp = s->next_zombie;
            broker_schedule_free(s);
        }
        return;
    }
    if (s->phase == BROKER_SCHED_IDLE || s->fire_ms != fire_ms)
        return; /* an earlier submit of a firing already acked */
    int64_t now = broker_now_ms(self);
    dv_id_t id;
    if (!ack->id.len || dv_id_parse(ack->id.ptr, (unsigned)ack->id.len, &id)) {
        if (ack->code == DV_CODE_TRY_AGAIN) {
            /* Busy (the reads queue is full): soon, without a backoff. */
            s->phase = BROKER_SCHED_RETRY;
            s_set_due(self, s, now + S_BUSY_RETRY_MS);
            return;
        }
        char why[160];
        dv_str_copy(ack->error, why, sizeof why);
        dv_log(DV_WARN, "broker.schedule_refused", DV_STR("name", s->name),
               DV_INT("fire_ms", fire_ms),
               DV_STR("code", dv_code_name(ack->code)), DV_STR("error", why));
        s_retry(self, s, now);
        return;
    }
    s->last_fire_ms = fire_ms;
    s->last_job = id;
    s->has_last_job = true;
    s->firings++;
    s->last_lag_ms = submit_ms - fire_ms;
    char idtext[DV_ID_TEXT_LEN + 1];
    dv_id_format(&id, idtext);
    s_event(self, s, "schedule.fired", idtext, fire_ms, s->last_lag_ms);
    s_advance(self, s, fire_ms);
}

static void
s_submit(broker_t *self, broker_schedule_t *s, int64_t now)
{
    char key[DV_NAME_MAX + 48];
    snprintf(key, sizeof key, "%s%s:%" PRId64, BROKER_SCHEDULE_KEY_PREFIX,
             s->name, s->fire_ms);
    dv_jobspec_t js = { 0 };
    js.queue = dv_str(s->queue);
    js.type = dv_str(s->type);
    js.payload = dv_strn(s->payload, s->payload_len);
    js.key = dv_str(key);
    js.priority = s->priority;
    js.max_attempts = s->max_attempts;
    js.timeout_ms = s->timeout_ms;
    js.schedule = dv_str(s->name);
    s_token_t *t = malloc(sizeof *t);
    if (!t) {
        s_retry(self, s, now);
        return;
    }
    *t = (s_token_t){ .s = s, .fire_ms = s->fire_ms, .submit_ms = now };
    t->next = self->sched_tokens;
    if (t->next)
        t->next->prev = t;
    self->sched_tokens = t;
    s->phase = BROKER_SCHED_INFLIGHT;
    s_set_due(self, s, now + S_ACK_WAIT_MS);
    s->pending++;
    /* The callback may come during the call (refused at once). */
    if (broker_self_submit(self, &js, s->owner, s_acked, t) != 0) {
        s->pending--;
        s_token_unlink(self, t);
        free(t);
        s_retry(self, s, now);
    }
}

/* s is due at now. */
static void
s_fire(broker_t *self, broker_schedule_t *s, int64_t now)
{
    if (s->phase != BROKER_SCHED_IDLE) {
        /* Refused before, or no ack yet: the same firing again. */
        s_submit(self, s, now);
        return;
    }
    if (s->next_ms <= 0) {
        s_set_due(self, s, -1);
        return;
    }
    int64_t f = s_latest_upto(s, s->next_ms, now);
    if (s->catch_up_skip && now - f > S_SKIP_GRACE_MS) {
        int64_t missed = s->next_ms;
        s->next_ms = broker_schedule_next_after(s, now);
        dv_log(DV_INFO, "broker.schedule_missed", DV_STR("name", s->name),
               DV_INT("from_ms", missed), DV_INT("next_ms", s->next_ms),
               DV_STR("catch_up", "skip"));
        broker_schedule_save(self, s);
        s_set_due(self, s, s->next_ms);
        return;
    }
    if (f != s->next_ms)
        dv_log(DV_INFO, "broker.schedule_missed", DV_STR("name", s->name),
               DV_INT("from_ms", s->next_ms), DV_INT("fire_ms", f),
               DV_STR("catch_up", "once"));
    if (s->no_overlap && broker_schedule_job_live(self, s)) {
        s->skipped++;
        s_event(self, s, "schedule.skipped", NULL, f, 0);
        s_advance(self, s, f);
        return;
    }
    s->fire_ms = f;
    s_submit(self, s, now);
}

void
broker_schedule_run_due(broker_t *self)
{
    if (!self->nsheap)
        return;
    int64_t now = broker_now_ms(self);
    /* Every path of s_fire moves the schedule's due time past now (or
     * takes it out of the heap), so this ends. */
    for (int n = 0;
         n < S_FIRES_PER_PASS && self->nsheap && self->sheap[0]->due_ms <= now;
         n++)
        s_fire(self, self->sheap[0], now);
}

/* ---- start-up ------------------------------------------------------------- */

static char *
s_dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

broker_schedule_t *
broker_schedule_from_rec(broker_t *self, const broker_schedule_rec_t *r,
                         char *err, size_t err_size)
{
    broker_schedule_t *s = calloc(1, sizeof *s);
    if (!s) {
        dv_err_set(err, err_size, "out of memory");
        return NULL;
    }
    s->heap_ix = S_NOT_IN_HEAP;
    s->name = s_dup(r->name);
    s->owner = s_dup(r->owner);
    s->cron_text = s_dup(r->cron);
    s->queue = s_dup(r->queue);
    s->type = s_dup(r->type);
    if (r->payload && r->payload_len) {
        s->payload = malloc(r->payload_len);
        if (s->payload) {
            memcpy(s->payload, r->payload, r->payload_len);
            s->payload_len = r->payload_len;
        }
    }
    if (!s->name || !s->queue || !s->type || (r->owner && !s->owner) ||
        (r->cron && !s->cron_text) || (r->payload_len && !s->payload)) {
        broker_schedule_free(s);
        dv_err_set(err, err_size, "out of memory");
        return NULL;
    }
    s->every_ms = r->every_ms;
    if (r->cron) {
        if (dv_cron_parse(r->cron, &s->cron, err, err_size) != 0) {
            broker_schedule_free(s);
            return NULL;
        }
        if (r->tz &&
            !(s->tz = broker_schedule_tz(self, r->tz, err, err_size))) {
            broker_schedule_free(s);
            return NULL;
        }
    } else if (r->every_ms <= 0) {
        broker_schedule_free(s);
        dv_err_set(err, err_size, "neither a cron expression nor an interval");
        return NULL;
    }
    s->anchor_ms = r->anchor_ms;
    s->priority = r->priority;
    s->max_attempts = r->max_attempts;
    s->timeout_ms = r->timeout_ms;
    s->no_overlap = r->no_overlap;
    s->catch_up_skip = r->catch_up_skip;
    s->paused = r->paused;
    s->created_ms = r->created_ms;
    s->next_ms = r->next_ms;
    s->last_fire_ms = r->last_fire_ms;
    s->firings = r->firings;
    s->skipped = r->skipped;
    s->last_lag_ms = r->last_lag_ms;
    if (r->last_job && dv_id_parse(r->last_job, (unsigned)strlen(r->last_job),
                                   &s->last_job) == 0)
        s->has_last_job = true;
    s->phase = BROKER_SCHED_IDLE;
    return s;
}

typedef struct {
    broker_t *self;
    size_t loaded, bad;
    bool failed;
} s_load_ctx_t;

static int
s_on_row(void *arg, const broker_schedule_rec_t *r)
{
    s_load_ctx_t *ctx = arg;
    char err[256] = "";
    broker_schedule_t *s =
        broker_schedule_from_rec(ctx->self, r, err, sizeof err);
    if (!s) {
        /* A row this broker cannot use stays stored, untouched. */
        dv_log(DV_ERROR, "broker.schedule_unusable", DV_STR("name", r->name),
               DV_STR("error", err));
        ctx->bad++;
        return 0;
    }
    /* A stored next firing of 0 (none) is worked out again. */
    if (!s->next_ms)
        s->next_ms = broker_schedule_next_after(s, broker_now_ms(ctx->self));
    if (broker_schedule_insert(ctx->self, s) != 0) {
        broker_schedule_free(s);
        ctx->failed = true;
        return DV_ENOMEM;
    }
    ctx->loaded++;
    return 0;
}

int
broker_schedule_load(broker_t *self)
{
    if (broker_schedule_tables(self) != 0) {
        dv_log(DV_ERROR, "broker.recovery_failed",
               DV_STR("error", "out of memory (schedules)"));
        return -1;
    }
    s_load_ctx_t ctx = { .self = self };
    int rc = broker_store_load_schedules(self->store, s_on_row, &ctx);
    if (rc != 0) {
        dv_log(DV_ERROR, "broker.recovery_failed",
               DV_STR("error", ctx.failed ? "out of memory (schedules)"
                                          : dv_strerror(rc)));
        return -1;
    }
    if (ctx.loaded || ctx.bad)
        dv_log(DV_INFO, "broker.schedules_loaded",
               DV_INT("schedules", (int64_t)ctx.loaded),
               DV_INT("unusable", (int64_t)ctx.bad));
    return 0;
}
