/* collector_state - what the collector knows now: brokers, workers, queues,
 * running jobs, key health, rates and latency percentiles. This is what
 * collector_core, collector_query and collector_http use; the files that
 * make it up share collector_internal.h.
 *
 * Built from two sources, as in the ZeroMQ guide's Clone pattern: a
 * broker's `status` snapshot (absolute: queue depths, the worker list) and
 * its events (deltas in between). Depth deltas are applied only while a
 * broker is "synced", that is after a snapshot taken since the last gap or
 * broker restart; between snapshots they keep the numbers current, and
 * the next snapshot corrects whatever they got wrong (a scheduled job that
 * became due has no event of its own). Everything else an event says
 * (worker heartbeats, rates, latencies, running jobs) is absolute or a
 * count, so it needs no snapshot.
 *
 * Rates are per-second counts in a 15-minute ring, read over 1, 5 and 15
 * minutes. Percentiles come from dv_hist histograms over the current and
 * the previous 5-minute window (so they cover the last 5 to 10 minutes).
 * /metrics histograms are cumulative since the collector started.
 *
 * Views are returned as new jansson references, the same data for the
 * query socket (as msgpack) and HTTP (as JSON); docs/collector.md lists
 * their fields.
 *
 * Out of memory: nothing here aborts. An event or snapshot that could not
 * be applied in full says so (-1); its broker is then unsynced and wants a
 * snapshot. A view that cannot be built is NULL, never partial. Not
 * thread-safe: the loop thread owns it.
 */
#ifndef COLLECTOR_STATE_H
#define COLLECTOR_STATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dv_body.h"
#include "dv_proto.h"

#define COLLECTOR_BROKERS_MAX 16

typedef struct collector_state_t collector_state_t;

/* What an event is about, by its kind: the enum for the kinds this side
 * knows, the prefix of the text ("job.", "queue.", "worker.") for those it
 * does not (a newer broker's), so that they still count where they did. */
typedef enum {
    COLLECTOR_EV_NONE,
    COLLECTOR_EV_JOB,
    COLLECTOR_EV_QUEUE,
    COLLECTOR_EV_WORKER,
} collector_ev_family_t;

static inline collector_ev_family_t
collector_event_family(const dv_event_t *ev)
{
    switch (ev->kind_enum) {
    case DV_EV_JOB_SUBMITTED:
    case DV_EV_JOB_STARTED:
    case DV_EV_JOB_PROGRESS:
    case DV_EV_JOB_SUCCEEDED:
    case DV_EV_JOB_FAILED:
    case DV_EV_JOB_DEAD:
    case DV_EV_JOB_CANCELLED:
    case DV_EV_JOB_RETRIED:
    case DV_EV_JOB_RELEASED:
        return COLLECTOR_EV_JOB;
    case DV_EV_QUEUE_PAUSED:
    case DV_EV_QUEUE_RESUMED:
    case DV_EV_QUEUE_LIMITS:
        return COLLECTOR_EV_QUEUE;
    case DV_EV_WORKER_JOINED:
    case DV_EV_WORKER_LEFT:
    case DV_EV_WORKER_EXPIRED:
    case DV_EV_WORKER_HEARTBEAT:
    case DV_EV_WORKER_DRAINING:
        return COLLECTOR_EV_WORKER;
    default:
        break;
    }
    dv_str_t k = ev->kind;
    if (k.len > 4 && memcmp(k.ptr, "job.", 4) == 0)
        return COLLECTOR_EV_JOB;
    if (k.len > 6 && memcmp(k.ptr, "queue.", 6) == 0)
        return COLLECTOR_EV_QUEUE;
    if (k.len > 7 && memcmp(k.ptr, "worker.", 7) == 0)
        return COLLECTOR_EV_WORKER;
    return COLLECTOR_EV_NONE;
}

/* The kind of the broker's event with the fleet's API keys (a kind the
 * proto's enum does not know: DV_EV_OTHER with this text). */
#define COLLECTOR_KIND_KEYS_STATE "keys.state"

/* Whether the history records ev as an `events` row: not the periodic
 * ones (a worker's heartbeat, a job's progress, the broker's keys.state),
 * which say what is now rather than what happened, and not a job's routine
 * steps (submitted, started, succeeded): those are already in its `jobs`
 * and `attempts` rows, and the job view (collector_store_job) puts them
 * back in its timeline from there. Most jobs have only those three, so
 * this is most of what the history would write. */
static inline bool
collector_event_recorded(const dv_event_t *ev)
{
    return ev->kind_enum != DV_EV_WORKER_HEARTBEAT &&
           ev->kind_enum != DV_EV_JOB_PROGRESS &&
           ev->kind_enum != DV_EV_JOB_SUBMITTED &&
           ev->kind_enum != DV_EV_JOB_STARTED &&
           ev->kind_enum != DV_EV_JOB_SUCCEEDED &&
           !(ev->kind_enum == DV_EV_OTHER &&
             dv_str_eq(ev->kind, COLLECTOR_KIND_KEYS_STATE));
}

/* What an event's sequence number says about what was missed. */
typedef enum {
    COLLECTOR_SEQ_OK,      /* the next one */
    COLLECTOR_SEQ_FIRST,   /* the first heard from this broker; adopted */
    COLLECTOR_SEQ_GAP,     /* events *from..*to of this instance were missed */
    COLLECTOR_SEQ_RESTART, /* a new broker instance; if it is not its first
                              event, *from..*to of it were missed too */
    COLLECTOR_SEQ_OLD,     /* at or before the last one seen: ignore it */
} collector_seq_t;

/* New, empty state; now_ms is the start time (rates divide by the time
 * since, until a window is full). Returns NULL if out of memory. */
collector_state_t *collector_state_new(int64_t now_ms);

/* Frees everything; sets *self_p to NULL. NULL-safe. */
void collector_state_destroy(collector_state_t **self_p);

/* Adds a broker known by its events endpoint (and clients endpoint for
 * snapshots, or NULL). Returns its index (0, 1, ...) or -1 when
 * COLLECTOR_BROKERS_MAX are there already. Strings are copied. */
int collector_state_add_broker(collector_state_t *self, const char *events_ep,
                               const char *clients_ep);

/* What a previous run of the collector saw last from broker b (from its
 * store), so the first event of this run can tell what was missed. */
void collector_state_broker_known(collector_state_t *self, int b,
                                  const char *instance, uint64_t seq);

/* Checks ev's broker instance and sequence number against what broker b
 * sent before, and moves b's last sequence number on (not for
 * COLLECTOR_SEQ_OLD). On a gap or restart b is no longer synced and
 * collector_state_wants_snapshot() says so. */
collector_seq_t collector_state_seq(collector_state_t *self, int b,
                                    const dv_event_t *ev, uint64_t *from,
                                    uint64_t *to);

/* Broker b's instance id ("" before its first event) and last sequence
 * number. */
const char *collector_state_broker_instance(const collector_state_t *self,
                                            int b);
uint64_t collector_state_broker_seq(const collector_state_t *self, int b);

/* Applies one event of broker b received at now_ms. Sets *run_ms (if not
 * NULL) to the attempt's run time in ms for job.succeeded and job.failed
 * (the event's, or the time since its job.started), else 0. Returns 0, or
 * -1 when out of memory: the event was applied only in part, and b is
 * unsynced and wants a snapshot. Allocates only for what is new (a queue,
 * type, worker or running job). */
int collector_state_apply(collector_state_t *self, int b, const dv_event_t *ev,
                          int64_t now_ms, int64_t *run_ms);

/* Counts a job that ended without its events reaching the collector
 * (read back from broker b, and not in the history before): its outcome
 * goes into the totals and rates at now_ms, its run time into the
 * latencies, and a running job of that id is forgotten; depths and
 * workers are left to the snapshot. ev is the job's end as an event
 * (job.succeeded, job.dead or job.cancelled). Returns 0 or -1 (out of
 * memory: counted as far as it could be). */
int collector_state_backfill(collector_state_t *self, int b,
                             const dv_event_t *ev, int64_t now_ms);

/* Applies broker b's `status` answer (decoded with dv_status_decode()):
 * queue depths, limits and pause flags; the worker list (workers of b that
 * it does not list are marked gone); counters. Nothing of status is kept.
 * Returns 0 and b is synced; or -1 when out of memory: it was applied only
 * in part, and b stays unsynced and wants another snapshot. */
int collector_state_snapshot(collector_state_t *self, int b,
                             const dv_status_t *status, int64_t now_ms);

/* True when broker b needs a snapshot now: never had one, a gap, a
 * restart, or an event that changed what only a snapshot tells (limits).
 * The flag is cleared by collector_state_snapshot(). */
bool collector_state_wants_snapshot(const collector_state_t *self, int b);

/* Records whether broker b answered its last `status` request: ok at
 * now_ms, or not (why says how long it has been silent). Health and
 * status report it. */
void collector_state_broker_answer(collector_state_t *self, int b, bool ok,
                                   int64_t now_ms, const char *why);

/* Drops workers that left more than 10 minutes ago, and the fleet's keys
 * once stale. Call now and then. */
void collector_state_tick(collector_state_t *self, int64_t now_ms);

/* How long the collector has lagged behind broker b at now_ms: the time
 * since the first `status` snapshot that named an event (by the broker's
 * sequence number) the collector had not received yet, while it still has
 * not; 0 when caught up, and while b does not answer. */
int64_t collector_state_lag_ms(const collector_state_t *self, int b,
                               int64_t now_ms);

/* Totals over all brokers since the collector started. */
uint64_t collector_state_events_total(const collector_state_t *self);
uint64_t collector_state_gaps_total(const collector_state_t *self);

/* ---- views (new references, or NULL when out of memory) ------------------ */

/* [{endpoint, clients, instance, state, synced, last_seq, events, gaps,
 *   last_event_ms, uptime_ms, store, counters}] */
json_t *collector_state_brokers(const collector_state_t *self, int64_t now_ms);

/* {online, busy, idle, draining, offline, slots, busy_slots, running_jobs} */
json_t *collector_state_worker_summary(const collector_state_t *self,
                                       int64_t now_ms);

/* [{name, broker, host, pid, state, concurrency, credit, running, busy,
 *   idle, processed, failed, queues, joined_at, last_seen_at,
 *   heartbeat_age_ms, jobs: [running jobs], metrics}] */
json_t *collector_state_workers(const collector_state_t *self, int64_t now_ms);

/* [{name, queued, scheduled, running, paused, rate_limit, max_running,
 *   workers, brokers, rates, wait_ms, run_ms, totals}] */
json_t *collector_state_queues(const collector_state_t *self, int64_t now_ms);

/* [{name, wait_ms, run_ms, totals}] per job type. */
json_t *collector_state_types(const collector_state_t *self, int64_t now_ms);

/* Rates over all queues: {submitted, succeeded, failed, dead: [1m,5m,15m]}. */
json_t *collector_state_rates(const collector_state_t *self, int64_t now_ms);

/* API keys as the workers' heartbeats report them, by key:
 * [{id, hash, state, workers, states: {ok, cooling, disabled}, requests,
 *   ok, rate_limited, errors, tokens}] */
json_t *collector_state_keys(const collector_state_t *self, int64_t now_ms);

/* API keys as the broker holds them fleet-wide: its latest keys.state
 * body while fresh, {now, keys: [{id, hash, state, rpm, tpm, window,
 * limit, learned, requests, tokens, in_flight, ok, limited, errors, cool,
 * disabled, share, workers: [{name, requests}], conflict?}], broker,
 * age_ms}; {keys: []} when none is known. */
json_t *collector_state_fleet_keys(const collector_state_t *self,
                                   int64_t now_ms);

/* {status: 0|1|2, state: "healthy"|"degraded"|"down", reasons: [text]} */
json_t *collector_state_health(const collector_state_t *self, int64_t now_ms);

/* Running jobs as last seen: [{id, queue, type, batch, worker, attempt,
 * started_at, current, total, message}], at most limit of them. */
json_t *collector_state_running(const collector_state_t *self, int limit);

/* Progress last seen of a running job, or NULL (also when out of
 * memory). */
json_t *collector_state_running_job(const collector_state_t *self,
                                    const char *id);

/* Writes every metric in the Prometheus text format (version 0.0.4).
 * Returns 0, or -1 when out of memory or a write to out failed (what was
 * written is then incomplete). */
int collector_state_metrics(const collector_state_t *self, FILE *out,
                            int64_t now_ms);

/* Logs the state (collector.dump, one line per broker, queue and worker). */
void collector_state_dump(const collector_state_t *self, int64_t now_ms);

#endif
