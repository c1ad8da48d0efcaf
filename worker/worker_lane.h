/* worker_lane - what the supervisor loop sees of a lane of work: the
 * prefork pool (worker_pool.h) and the http lane (handler_http.h) each
 * implement it, and the loop goes over its lanes instead of calling each
 * one by name.
 *
 * A lane holds the jobs it was given until each has an outcome, reports
 * to the outbox it was made with, and never blocks. Per loop pass the
 * supervisor calls, on every lane: poll_items (before zmq_poll), set_time
 * and io (after it), tick, then add/cancel for what the broker sent,
 * dispatch, and flush. Times are passed in (monotonic ms for deadlines,
 * epoch ms for report timestamps), so one pass reads the clock once.
 *
 * Optional operations are NULL; the inline helpers below skip them.
 */
#ifndef WORKER_LANE_H
#define WORKER_LANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "dv_body.h"
#include "dv_proto.h"

/* Processes a lane has, for the heartbeat and the end of shutdown. */
typedef struct {
    int busy;  /* running a job */
    int idle;  /* alive and not running one */
    int alive; /* alive at all */
} worker_lane_stats_t;

typedef struct {
    const char *name;
    /* True if jobs of this type go to this lane. */
    bool (*owns)(const void *self, dv_str_t type);
    /* Jobs it takes at once: its share of the credit. */
    int (*capacity)(const void *self);
    void (*set_time)(void *self, int64_t mono_ms, int64_t wall_ms);
    /* Upper bound for poll_items' count this pass. */
    int (*poll_count)(const void *self);
    /* Appends its poll items (at most max); returns how many. io gets the
     * same items back after zmq_poll. */
    int (*poll_items)(void *self, zmq_pollitem_t *items, int max);
    void (*io)(void *self, const zmq_pollitem_t *items, int n);
    /* Timers (timeouts, retries). Optional. */
    void (*tick)(void *self);
    /* Takes a job. 0 taken (or handed back as returned: draining, out of
     * memory), 1 already held (a newer attempt number is adopted), -1
     * refused (logged). The broker's credit is regranted unless 0. */
    int (*add)(void *self, const dv_job_t *job);
    /* KILL from the broker (cancelled, or the lease is no longer ours):
     * the copy under lease (0: whichever is held) is dropped if it has not
     * started, or stopped, and never reported. 0 if it held that copy, -1
     * if not. */
    int (*cancel)(void *self, dv_str_t id, uint64_t lease, dv_str_t reason);
    /* Starts waiting jobs that may go now. */
    void (*dispatch)(void *self);
    /* Writes what is buffered; with reports (the broker knows us), also
     * reports coalesced progress and retries reports that waited for
     * memory. */
    void (*flush)(void *self, bool reports);
    /* Earliest monotonic ms at which it has work without I/O, or
     * INT64_MAX. */
    int64_t (*next_deadline)(const void *self);
    /* Draining: jobs not started are returned; running ones finish. */
    void (*drain)(void *self);
    /* End of the grace period: running jobs are stopped, fail "timeout". */
    void (*stop_running)(void *self);
    /* Immediate stop, no reports; waits at most wait_ms. Optional. */
    void (*kill_all)(void *self, int64_t wait_ms);
    /* SIGCHLD: reap its children. Optional. */
    void (*reap)(void *self);
    size_t (*held_count)(const void *self);
    /* Appends the jobs held (capacity max), for HELLO; id views valid until
     * the lane next changes. Returns the count. */
    size_t (*held)(const void *self, dv_held_t *held, size_t max);
    void (*stats)(const void *self, worker_lane_stats_t *st);
    /* Fills its part of the heartbeat body m, which the caller zeroed and
     * encodes (the parts are disjoint: the pool's per_child and children,
     * the http lane's has_http, http and keys). The arrays m is pointed at
     * are the lane's, reused from one heartbeat to the next, and stay
     * valid until its next fill_metrics; the strings live as long as the
     * lane. 0, or DV_ENOMEM (m may be partly filled; the heartbeat then
     * goes without a body). Optional. */
    int (*fill_metrics)(void *self, dv_hbmetrics_t *m);
    /* Writes its state to the log (SIGUSR1). */
    void (*dump)(const void *self);
    /* The fleet's API keys (broker/broker_keys.h). Optional, all three.
     * keys_reset: a WELCOME came (grants held are void); keys_in: lines
     * from the broker; keys_out: appends the lines due to the broker (at
     * most max; views valid until the lane next changes), returns how
     * many. */
    void (*keys_reset)(void *self);
    void (*keys_in)(void *self, const dv_keyitem_t *items, uint32_t n);
    int (*keys_out)(void *self, dv_keyitem_t *items, int max);
} worker_lane_ops_t;

/* A lane: its operations and the object they act on. */
typedef struct {
    const worker_lane_ops_t *ops;
    void *self;
} worker_lane_t;

static inline void
worker_lane_tick(const worker_lane_t *l)
{
    if (l->ops->tick)
        l->ops->tick(l->self);
}

static inline void
worker_lane_kill_all(const worker_lane_t *l, int64_t wait_ms)
{
    if (l->ops->kill_all)
        l->ops->kill_all(l->self, wait_ms);
}

static inline int
worker_lane_fill_metrics(const worker_lane_t *l, dv_hbmetrics_t *m)
{
    return l->ops->fill_metrics ? l->ops->fill_metrics(l->self, m) : DV_OK;
}

static inline void
worker_lane_reap(const worker_lane_t *l)
{
    if (l->ops->reap)
        l->ops->reap(l->self);
}

#endif
