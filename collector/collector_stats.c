/* collector_stats - the collector's aggregates over time: rate rings
 * (per-second counts over 15 minutes, read over 1, 5 and 15 minutes),
 * latency windows (dv_hist over the current and the previous 5 minutes)
 * and the cumulative histograms /metrics exports.
 *
 * Recording is O(1) and allocates nothing: it runs for every event. The
 * readers build JSON for the views and return NULL when out of memory.
 * The CLI only prints the rates and percentiles the collector sends, so
 * these stay in the collector.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collector_internal.h"

static const char *const s_rate_names[COLLECTOR_RATE_KINDS] = {
    "submitted", "succeeded", "failed", "dead"
};

/* Rate windows, in seconds: 1, 5 and 15 minutes. */
static const int s_windows[] = { 60, 300, 900 };

/* Prometheus bucket upper bounds in ms, and as the le label says them. */
static const int64_t s_bucket_ms[COLLECTOR_PROM_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000
};
const char *const collector_stats_prom_le[COLLECTOR_PROM_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
    "1",     "2.5",  "5",     "10",   "30",  "60"
};

void
collector_stats_ring_add(collector_ring_t *r, int64_t now_ms, int kind)
{
    int64_t sec = now_ms / 1000;
    size_t i = (size_t)(sec % COLLECTOR_RING);
    if (r->sec[i] != sec) {
        r->sec[i] = sec;
        memset(r->n[i], 0, sizeof r->n[i]);
    }
    r->n[i][kind]++;
}

static double
s_ring_rate(const collector_ring_t *r, int64_t started_ms, int64_t now_ms,
            int kind, int window_s)
{
    int64_t sec = now_ms / 1000;
    uint64_t sum = 0;
    for (int k = 0; k < window_s && sec - k >= 0; k++) {
        int64_t s = sec - k;
        size_t i = (size_t)(s % COLLECTOR_RING);
        if (r->sec[i] == s)
            sum += r->n[i][kind];
    }
    /* Until the collector has run a whole window, divide by what it has. */
    int64_t up = (now_ms - started_ms) / 1000 + 1;
    if (up < window_s)
        window_s = up < 1 ? 1 : (int)up;
    return (double)sum / window_s;
}

json_t *
collector_stats_ring_json(const collector_ring_t *r, int64_t started_ms,
                          int64_t now_ms)
{
    json_t *o = json_object();
    int rc = o ? 0 : -1;
    for (int k = 0; k < COLLECTOR_RATE_KINDS && !rc; k++) {
        json_t *a = json_array();
        for (int w = 0; w < 3; w++) {
            double v = s_ring_rate(r, started_ms, now_ms, k, s_windows[w]);
            rc |= json_array_append_new(a, json_real(round(v * 1000) / 1000));
        }
        rc |= json_object_set_new(o, s_rate_names[k], a);
    }
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void
collector_stats_lat_record(collector_lat_t *l, int64_t now_ms, int64_t value_ms)
{
    int64_t e = now_ms / COLLECTOR_LAT_WINDOW_MS;
    int i = (int)(e & 1);
    if (l->epoch[i] != e) {
        dv_hist_reset(&l->h[i]);
        l->epoch[i] = e;
    }
    dv_hist_record(&l->h[i], (uint64_t)(value_ms < 0 ? 0 : value_ms));
}

json_t *
collector_stats_lat_json(const collector_lat_t *l, int64_t now_ms)
{
    int64_t e = now_ms / COLLECTOR_LAT_WINDOW_MS;
    dv_hist_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    for (int i = 0; i < 2; i++) {
        if (l->epoch[i] != e && l->epoch[i] != e - 1)
            continue;
        for (int k = 0; k < DV_HIST_BUCKETS; k++)
            m->counts[k] += l->h[i].counts[k];
        m->total += l->h[i].total;
        if (l->h[i].max > m->max)
            m->max = l->h[i].max;
    }
    json_t *o = json_pack(
        "{s:I, s:I, s:I, s:I, s:I}", "count", (json_int_t)m->total, "p50",
        (json_int_t)dv_hist_quantile(m, 0.50), "p95",
        (json_int_t)dv_hist_quantile(m, 0.95), "p99",
        (json_int_t)dv_hist_quantile(m, 0.99), "max", (json_int_t)m->max);
    free(m);
    return o;
}

void
collector_stats_prom_record(collector_prom_hist_t *h, int64_t ms)
{
    size_t i = 0;
    while (i < COLLECTOR_PROM_BUCKETS && ms > s_bucket_ms[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum_s += (double)ms / 1000.0;
}
