/* broker_schedule - periodic jobs kept by the broker (broker_schedule.c:
 * the schedules, their heap and their firings; broker_schedule_ctrl.c:
 * the schedule.* verbs). Only broker/ includes this. Loop thread only.
 */
#ifndef BROKER_SCHEDULE_H
#define BROKER_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#include "broker_internal.h"
#include "dv_cron.h"

/* The idempotency key of a firing: this, the name, ':', the firing's
 * nominal time in epoch ms. */
#define BROKER_SCHEDULE_KEY_PREFIX "drover:schedule:"

typedef enum {
    BROKER_SCHED_IDLE = 0, /* waits for next_ms */
    BROKER_SCHED_INFLIGHT, /* fire_ms submitted, its ack not back */
    BROKER_SCHED_RETRY,    /* fire_ms refused: submitted again at due_ms */
} broker_sched_phase_t;

struct broker_schedule {
    char *name;      /* the map's key */
    char *owner;     /* certificate name of who added it, or NULL */
    char *cron_text; /* NULL: an interval */
    dv_cron_t cron;
    dv_tz_t *tz; /* self->tzs owns it; NULL: UTC */
    int64_t every_ms, anchor_ms;
    char *queue, *type;
    void *payload; /* one msgpack value, or NULL */
    size_t payload_len;
    int32_t priority, max_attempts;
    int64_t timeout_ms;
    bool no_overlap, catch_up_skip, paused;
    bool removed; /* out of the map, waiting for its acks */
    bool has_last_job;
    uint8_t phase; /* broker_sched_phase_t */
    int64_t created_ms;
    int64_t next_ms;      /* the next firing (nominal); <= 0: none */
    int64_t last_fire_ms; /* 0: none yet */
    int64_t last_lag_ms;
    int64_t firings, skipped;
    dv_id_t last_job;
    int64_t fire_ms;    /* the firing under way (INFLIGHT, RETRY) */
    int64_t due_ms;     /* the heap's key: when it needs attention */
    int64_t backoff_ms; /* RETRY */
    uint32_t heap_ix;   /* in self->sheap, or UINT32_MAX */
    uint32_t pending;   /* submits whose callback may still come */
    broker_schedule_t *next_zombie;
};

/* Makes self->schedules and self->tzs if not yet. Returns 0 or -1 (out of
 * memory). */
int broker_schedule_tables(broker_t *self);

/* The zone name, loaded once per broker (self->tzs owns it). NULL with a
 * reason in err. */
dv_tz_t *broker_schedule_tz(broker_t *self, const char *name, char *err,
                            size_t err_size);

/* The first firing of s strictly after t (epoch ms); -1: none. */
int64_t broker_schedule_next_after(const broker_schedule_t *s, int64_t t);

/* A schedule from its stored row (cron parsed, zone loaded), phase idle.
 * NULL with a reason in err. Caller owns the result. */
broker_schedule_t *broker_schedule_from_rec(broker_t *self,
                                            const broker_schedule_rec_t *r,
                                            char *err, size_t err_size);

/* Frees s. NULL-safe. */
void broker_schedule_free(broker_schedule_t *s);

/* Takes s into the map (by name; not there yet) and, unless paused, the
 * heap at next_ms. Returns 0, or -1 (out of memory: the caller still owns
 * s). */
int broker_schedule_insert(broker_t *self, broker_schedule_t *s);

/* Takes s out of the map and the heap and frees it (or keeps it until the
 * acks of its submits are back). */
void broker_schedule_remove(broker_t *self, broker_schedule_t *s);

/* Pauses or resumes s; a resumed schedule does not fire the firings it
 * missed while paused. Does not write the row. */
void broker_schedule_set_paused(broker_t *self, broker_schedule_t *s,
                                bool paused);

/* s's row for the store; last_job is the room for its last job's id. */
void broker_schedule_rec(const broker_schedule_t *s, broker_schedule_rec_t *r,
                         char last_job[DV_ID_TEXT_LEN + 1]);

/* Records s's row as a write of the current group. Returns 0 or -1 (out of
 * memory: the group fails, logged). */
int broker_schedule_save(broker_t *self, const broker_schedule_t *s);

/* Whether s's last job is live (in memory, not ended). */
bool broker_schedule_job_live(const broker_t *self, const broker_schedule_t *s);

/* Loads the stored schedules at start-up (self->store). Returns 0 or -1
 * (logged). */
int broker_schedule_load(broker_t *self);

/* Fires every schedule due by now. */
void broker_schedule_run_due(broker_t *self);

/* When the loop must run broker_schedule_run_due next (epoch ms);
 * INT64_MAX: no schedule. */
int64_t broker_schedule_next_due(const broker_t *self);

/* The schedule whose next firing comes first, or NULL (status). */
const broker_schedule_t *broker_schedule_next(const broker_t *self);

/* Frees every schedule (the broker stops). */
void broker_schedule_free_all(broker_t *self);

/* broker_schedule_ctrl.c: the verbs schedule.add, .list, .show, .remove,
 * .pause, .resume. Returns false for a verb it does not serve. */
bool broker_schedule_ctrl(broker_t *self, const broker_rid_t *rid,
                          const dv_ctrl_t *c);

#endif
