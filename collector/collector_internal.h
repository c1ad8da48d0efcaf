/* collector_internal - the live state's structs and the functions the
 * files of collector_state share. Not for collector_core, query or http:
 * they use collector_state.h.
 *
 *   collector_state.c    the state itself: new/destroy, finding or making
 *                        a queue, type, series, worker or running job,
 *                        forgetting workers long gone, helpers
 *   collector_stats.c    rate rings, latency windows, /metrics histograms
 *   collector_sync.c     brokers: sequence numbers, gaps, restarts, and
 *                        resync from `status` snapshots
 *   collector_apply.c    applying one event to the live state
 *   collector_views.c    the JSON views (query answers) and the log dump
 *   collector_metrics.c  /metrics in the Prometheus text format
 *   collector_keys.c     the fleet's API keys: the broker's keys.state
 *                        body, checked and kept while it is fresh
 *
 * A function shared between these files is named after the file that
 * defines it (collector_state_*, collector_stats_*, collector_views_*).
 * Everything here belongs to the loop thread.
 */
#ifndef COLLECTOR_INTERNAL_H
#define COLLECTOR_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "dv_map.h"
#include "collector_state.h"
#include "dv_hist.h"
#include "dv_id.h"
#include "dv_body.h"
#include "dv_proto.h"

/* A worker that left is still listed (as left or expired) this long. */
#define COLLECTOR_GONE_KEEP_MS (10 * 60 * 1000)
/* Percentile windows. */
#define COLLECTOR_LAT_WINDOW_MS (5 * 60 * 1000)
/* Rate ring: one slot per second, 15 minutes. */
#define COLLECTOR_RING 900
/* Running jobs listed per worker. */
#define COLLECTOR_JOBS_PER_WORKER 20
/* Map keys: "b\x1fworker" and "queue\x1ftype". */
#define COLLECTOR_WORKER_KEY_MAX (DV_NAME_MAX + 16)
#define COLLECTOR_SERIES_KEY_MAX (2 * DV_NAME_MAX + 2)

/* ---- rates, latencies, histograms (collector_stats.c) -------------------- */

/* What the rate rings count. */
enum {
    COLLECTOR_RATE_SUBMITTED,
    COLLECTOR_RATE_SUCCEEDED,
    COLLECTOR_RATE_FAILED,
    COLLECTOR_RATE_DEAD,
    COLLECTOR_RATE_KINDS
};

/* Per-second counts of the last COLLECTOR_RING seconds. */
typedef struct {
    int64_t sec[COLLECTOR_RING];
    uint32_t n[COLLECTOR_RING][COLLECTOR_RATE_KINDS];
} collector_ring_t;

/* Latency over the current and the previous window. */
typedef struct {
    dv_hist_t h[2];
    int64_t epoch[2];
} collector_lat_t;

/* Prometheus buckets: this many upper bounds, then +Inf. */
#define COLLECTOR_PROM_BUCKETS 13
extern const char *const collector_stats_prom_le[COLLECTOR_PROM_BUCKETS];

typedef struct {
    uint64_t counts[COLLECTOR_PROM_BUCKETS + 1]; /* not cumulative */
    uint64_t count;
    double sum_s;
} collector_prom_hist_t;

void collector_stats_ring_add(collector_ring_t *r, int64_t now_ms, int kind);

/* {submitted, succeeded, failed, dead: [1m, 5m, 15m]} in jobs/s; until the
 * collector has run a whole window (since started_ms), divided by what it
 * has run. New reference, or NULL when out of memory. */
json_t *collector_stats_ring_json(const collector_ring_t *r, int64_t started_ms,
                                  int64_t now_ms);

void collector_stats_lat_record(collector_lat_t *l, int64_t now_ms,
                                int64_t value_ms);

/* {count, p50, p95, p99, max} over the current and previous window. New
 * reference, or NULL when out of memory. */
json_t *collector_stats_lat_json(const collector_lat_t *l, int64_t now_ms);

void collector_stats_prom_record(collector_prom_hist_t *h, int64_t ms);

/* ---- the state ----------------------------------------------------------- */

/* Totals kept per queue, type and series. */
enum {
    COLLECTOR_OUT_SUBMITTED,
    COLLECTOR_OUT_SUCCEEDED,
    COLLECTOR_OUT_FAILED,
    COLLECTOR_OUT_DEAD,
    COLLECTOR_OUT_CANCELLED,
    COLLECTOR_OUT_RETRIED,
    COLLECTOR_OUT_KINDS
};
extern const char *const collector_state_outcome_names[COLLECTOR_OUT_KINDS];

/* One broker's view of a queue. */
typedef struct {
    bool present; /* the broker has this queue */
    int64_t queued, scheduled, running;
    int64_t waiting; /* waiting for other jobs (job dependencies) */
    /* Of running (leased, as the broker counts), how many had not started
     * at the last snapshot: a worker holds jobs ahead of its free children
     * (prefetch), and their job.started must not be counted as leaving
     * the queue again. */
    int64_t prefetched;
    bool paused;
    double rate; /* jobs/s limit; 0 none */
    int64_t max_running;
    /* When the oldest queued job became ready (epoch ms, this side's
     * clock: the snapshot's time less the age the broker reports); 0 while
     * none is queued. Between snapshots a job queued into an empty queue
     * sets it, and the queue emptying clears it. */
    int64_t oldest_ready_ms;
} collector_depth_t;

/* Queues, types and series are one allocation each, freed with free(). */
typedef struct {
    char name[DV_NAME_MAX + 1]; /* the map key */
    collector_depth_t per[COLLECTOR_BROKERS_MAX];
    collector_ring_t ring;
    collector_lat_t wait, run;
    uint64_t totals[COLLECTOR_OUT_KINDS];
    uint64_t failures[DV_CAT_COUNT_]; /* failed attempts by category */
} collector_queue_t;

typedef struct {
    char name[DV_NAME_MAX + 1]; /* the map key */
    collector_lat_t wait, run;
    uint64_t totals[COLLECTOR_OUT_KINDS];
} collector_type_t;

/* One (queue, type) pair: what /metrics labels by. */
typedef struct {
    char key[COLLECTOR_SERIES_KEY_MAX]; /* "queue\x1ftype" */
    char queue[DV_NAME_MAX + 1], type[DV_NAME_MAX + 1];
    uint64_t totals[COLLECTOR_OUT_KINDS];
    collector_prom_hist_t wait, run;
} collector_series_t;

typedef enum {
    COLLECTOR_W_ONLINE,
    COLLECTOR_W_DRAINING,
    COLLECTOR_W_LEFT,
    COLLECTOR_W_EXPIRED
} collector_wstate_t;

typedef struct {
    char key[COLLECTOR_WORKER_KEY_MAX];
    int broker;
    char *name;
    char *host;
    int64_t pid, concurrency, credit, running, processed, failed;
    int64_t busy, idle; /* children; -1 until a heartbeat says */
    json_t *queues;     /* array of names */
    /* The metrics of its last heartbeat that had them: the map as the
     * worker sent it (mp, mp_len; the buffer is reused) and decoded
     * (views into mp). has_metrics false until then. */
    char *mp;
    size_t mp_len, mp_cap;
    dv_hbmetrics_t metrics;
    bool has_metrics;
    collector_wstate_t state;
    int64_t joined_ms, last_seen_ms, gone_ms;
    bool unseen; /* not in the snapshot being applied */
} collector_worker_t;

typedef struct {
    int broker;
    char id[DV_ID_TEXT_LEN + 1]; /* the map key */
    char *queue, *type, *batch, *worker, *message;
    int attempt;
    int64_t started_ms, current, total;
} collector_run_t;

typedef enum {
    COLLECTOR_REACH_UNKNOWN,
    COLLECTOR_REACH_UP,
    COLLECTOR_REACH_DOWN
} collector_reach_t;

typedef struct {
    char *events_ep, *clients_ep;
    char instance[DV_NAME_MAX + 1];
    uint64_t last_seq;
    bool heard;                           /* an event of this run came */
    char known_instance[DV_NAME_MAX + 1]; /* from the previous run */
    uint64_t known_seq;
    uint64_t events, gaps;
    int64_t last_event_ms;
    bool synced, want_snapshot;
    collector_reach_t reach;
    int64_t last_answer_ms;
    char why[256];    /* why it is down */
    json_t *snapshot; /* {store, uptime_ms, counters, broker} */
    int64_t snapshot_ms;
    bool standby;       /* its last snapshot said role "standby" */
    bool store_failing; /* its last snapshot had store_failure */
    /* Lag: the oldest snapshot whose event sequence number (of lag_instance)
     * the events received had not reached, and when it came; lag_ms 0 while
     * caught up (collector_state_lag_ms()). */
    char lag_instance[DV_NAME_MAX + 1];
    uint64_t lag_seq;
    int64_t lag_ms;
} collector_broker_t;

/* ---- the fleet's API keys (collector_keys.c) ------------------------------ */

/* A keys.state body larger than this, or with more keys, or a key with
 * more workers, is refused; so is a text (conflict) longer than
 * COLLECTOR_FLEET_TEXT_MAX. */
#define COLLECTOR_FLEET_BODY_MAX    (4 << 20)
#define COLLECTOR_FLEET_KEYS_MAX    10000
#define COLLECTOR_FLEET_WORKERS_MAX 10000
#define COLLECTOR_FLEET_TEXT_MAX    1024
/* The body kept is stale after 3 intervals between the last two bodies,
 * and never sooner than this; an interval counts as at most ..._MAX. */
#define COLLECTOR_FLEET_STALE_MS        5000
#define COLLECTOR_FLEET_INTERVAL_MAX_MS 60000

/* The key states /metrics lists a series for (another state a newer broker
 * sends gets a series of its own). */
#define COLLECTOR_FLEET_STATES 4
extern const char *const collector_keys_states[COLLECTOR_FLEET_STATES];

typedef struct {
    json_t *body; /* {now, keys: [...]}, checked; NULL: none */
    int broker;   /* the broker that sent it */
    char instance[DV_NAME_MAX + 1]; /* that broker's instance id */
    int64_t received_ms;            /* when it came */
    int64_t interval_ms;            /* since the one before it from the same
                                       instance; 0 until there are two */
    bool bad_logged;                /* a malformed body was logged since the
                                       last good one */
    uint64_t ignored;               /* malformed bodies since the start */
} collector_fleet_keys_t;

struct collector_state_t {
    int64_t started_ms;
    collector_broker_t brokers[COLLECTOR_BROKERS_MAX];
    int nbrokers;
    dv_map_t *queues;       /* name -> collector_queue_t */
    dv_map_t *types;        /* name -> collector_type_t */
    dv_map_t *series;       /* "queue\x1ftype" -> collector_series_t */
    dv_map_t *workers;      /* "b\x1fname" -> collector_worker_t */
    dv_map_t *running;      /* job id -> collector_run_t */
    collector_ring_t *ring; /* all queues */
    collector_fleet_keys_t fleet;
    dv_map_t *schedules; /* name -> collector_schedule_t */
};

/* A broker's schedule as its schedule.fired events tell (for /metrics):
 * the last firing's lag and the firings seen. At most
 * COLLECTOR_SCHEDULES_MAX are kept. */
typedef struct {
    int64_t lag_ms;
    uint64_t firings;
    char name[];
} collector_schedule_t;

#define COLLECTOR_SCHEDULES_MAX 10000

/* collector_apply.c: a schedule.fired event (its body: schedule, fire_ms,
 * lag_ms) counted for its schedule. Other kinds are left alone. */
void collector_schedules_apply(collector_state_t *self, const dv_event_t *ev);

/* The queue, type or (queue, type) series of that name, made if new.
 * NULL when out of memory, or when a name is longer than DV_NAME_MAX. */
collector_queue_t *collector_state_queue(collector_state_t *self,
                                         const char *name);
collector_type_t *collector_state_type(collector_state_t *self,
                                       const char *name);
collector_series_t *collector_state_series(collector_state_t *self,
                                           const char *queue, const char *type);

/* Writes the workers map key of worker name of broker b. */
void collector_state_worker_key(int b, const char *name, char *key,
                                size_t size);

/* Worker name of broker b; made if new and create (NULL when out of
 * memory), else NULL if unknown. */
collector_worker_t *collector_state_worker(collector_state_t *self, int b,
                                           const char *name, bool create);

/* The running job ev is about; made from ev if new and create (NULL when
 * out of memory), else NULL if unknown. */
collector_run_t *collector_state_run(collector_state_t *self, int b,
                                     const dv_event_t *ev, bool create);

/* Fills a worker from a heartbeat or joined body, or a snapshot entry
 * (made into a dv_workerinfo_t; with children false busy and idle are not
 * in it and kept). The metrics, when wi has them, are decoded and kept
 * (metrics that do not decode are dropped). Returns 0, or -1 when out of
 * memory (what needed the memory was not updated). */
int collector_state_worker_fill(collector_worker_t *w,
                                const dv_workerinfo_t *wi, bool children);

/* Online or draining (not left, not expired). */
bool collector_state_worker_online(const collector_worker_t *w);

/* "busy", "idle", "draining", "left" or "expired". */
const char *collector_state_worker_state(const collector_worker_t *w);

/* "up", "unreachable", "connecting", or without a clients endpoint "up"
 * once heard, else "waiting". */
const char *collector_state_broker_state(const collector_broker_t *br);

/* Online workers of broker b (or any broker, b < 0) that take jobs of
 * queue. */
int collector_state_queue_workers(const collector_state_t *self, int b,
                                  const char *queue);

/* A queue's queued, scheduled and running summed over all brokers. */
void collector_state_queue_depth(const collector_state_t *self,
                                 const collector_queue_t *q, int64_t v[3]);

/* Members of a JSON object: a number as an integer (dflt if absent or not
 * a number); a string (NULL if absent or not a string). */
int64_t collector_state_json_int(const json_t *o, const char *key,
                                 int64_t dflt);
const char *collector_state_json_str(const json_t *o, const char *key);

/* ---- API keys (collector_views.c) ---------------------------------------- */

/* One key aggregated over the online workers. */
typedef struct {
    char name[2 * DV_NAME_MAX]; /* "id\x1fhash", the map key */
    json_t *o;                  /* {id, hash, workers, requests, ok, ...} */
    int64_t states[3]; /* workers on which it is ok, cooling, disabled */
} collector_key_t;

/* The keys the online workers report, by id and hash: a new map of
 * collector_key_t, or NULL when out of memory. Caller destroys it. */
dv_map_t *collector_views_keys(const collector_state_t *self);

/* True when ev is a keys.state event. */
bool collector_keys_is_state(const dv_event_t *ev);

/* Called for every event of broker b: forgets the body kept when b sent
 * it and ev shows a new instance of b; keeps ev's body when ev is a valid
 * keys.state (a malformed one is logged, once until a good one, and
 * ignored). Never fails: a body that cannot be kept (out of memory) is
 * logged and the previous one stays. */
void collector_keys_apply(collector_state_t *self, int b, const dv_event_t *ev,
                          int64_t now_ms);

/* How long the body kept stays fresh. */
int64_t collector_keys_stale_ms(const collector_state_t *self);

/* The body kept, or NULL when there is none or it is stale at now_ms. */
const json_t *collector_keys_fleet(const collector_state_t *self,
                                   int64_t now_ms);

/* Frees the body kept once it is stale (logged). */
void collector_keys_tick(collector_state_t *self, int64_t now_ms);

#endif
