/* collector_metrics - the live state in the Prometheus text format
 * (version 0.0.4), for GET /metrics (collector_http.c). docs/collector.md
 * lists the families; each gets # HELP and # TYPE, and label values are
 * escaped as the format asks.
 *
 * Writes to a stream the caller owns (an open_memstream buffer). Loop
 * thread only; nothing here blocks.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "collector_internal.h"

/* A label value with \, " and newline escaped. */
static void
s_label(FILE *out, const char *v)
{
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '"')
            fputs("\\\"", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

static void
s_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{queue="...",type="..." and, without closing the braces, what the
 * series' sample needs next. */
static void
s_series_open(FILE *out, const char *name, const collector_series_t *s)
{
    fprintf(out, "%s{queue=\"", name);
    s_label(out, s->queue);
    fputs("\",type=\"", out);
    s_label(out, s->type);
}

static void
s_prom_hist(FILE *out, const char *name, const collector_series_t *s,
            const collector_prom_hist_t *h)
{
    char sample[64];
    uint64_t cum = 0;
    snprintf(sample, sizeof sample, "%s_bucket", name);
    for (size_t i = 0; i <= COLLECTOR_PROM_BUCKETS; i++) {
        cum += h->counts[i];
        s_series_open(out, sample, s);
        fprintf(out, "\",le=\"%s\"} %" PRIu64 "\n",
                i < COLLECTOR_PROM_BUCKETS ? collector_stats_prom_le[i]
                                           : "+Inf",
                cum);
    }
    snprintf(sample, sizeof sample, "%s_sum", name);
    s_series_open(out, sample, s);
    fprintf(out, "\"} %.6f\n", h->sum_s);
    snprintf(sample, sizeof sample, "%s_count", name);
    s_series_open(out, sample, s);
    fprintf(out, "\"} %" PRIu64 "\n", h->count);
}

static void
s_jobs(const collector_state_t *self, FILE *out, int64_t now_ms)
{
    const collector_series_t *s;
    s_family(out, "drover_jobs_total", "counter",
             "Jobs seen by queue, type and outcome (failed counts failed "
             "attempts).");
    DV_MAP_EACH(s, self->series)
    {
        for (int k = 0; k < COLLECTOR_OUT_KINDS; k++) {
            s_series_open(out, "drover_jobs_total", s);
            fprintf(out, "\",outcome=\"%s\"} %" PRIu64 "\n",
                    collector_state_outcome_names[k], s->totals[k]);
        }
    }
    s_family(out, "drover_job_duration_seconds", "histogram",
             "Run time of finished attempts.");
    DV_MAP_EACH(s, self->series)
    {
        s_prom_hist(out, "drover_job_duration_seconds", s, &s->run);
    }
    s_family(out, "drover_job_wait_seconds", "histogram",
             "Time from ready to started.");
    DV_MAP_EACH(s, self->series)
    {
        s_prom_hist(out, "drover_job_wait_seconds", s, &s->wait);
    }

    s_family(out, "drover_job_failures_total", "counter",
             "Failed attempts by queue and failure category (none: the "
             "failure said none); a category appears once it has one.");
    const collector_queue_t *fq;
    DV_MAP_EACH(fq, self->queues)
    {
        for (int cat = 0; cat < DV_CAT_COUNT_; cat++) {
            if (!fq->failures[cat])
                continue;
            fputs("drover_job_failures_total{queue=\"", out);
            s_label(out, fq->name);
            fprintf(out, "\",category=\"%s\"} %" PRIu64 "\n",
                    dv_category_name((dv_category_t)cat), fq->failures[cat]);
        }
    }

    s_family(out, "drover_queue_depth", "gauge",
             "Jobs per queue and state, over all brokers.");
    const collector_queue_t *q;
    DV_MAP_EACH(q, self->queues)
    {
        int64_t v[3];
        collector_state_queue_depth(self, q, v);
        static const char *names[] = { "queued", "scheduled", "running" };
        for (int i = 0; i < 3; i++) {
            fputs("drover_queue_depth{queue=\"", out);
            s_label(out, q->name);
            fprintf(out, "\",state=\"%s\"} %" PRId64 "\n", names[i], v[i]);
        }
    }

    s_family(out, "drover_queue_oldest_seconds", "gauge",
             "Age of the oldest queued (ready, not scheduled) job per queue, "
             "over all brokers; 0 when none is queued.");
    DV_MAP_EACH(q, self->queues)
    {
        int64_t oldest = 0;
        for (int b = 0; b < self->nbrokers; b++) {
            const collector_depth_t *d = &q->per[b];
            if (d->queued > 0 && d->oldest_ready_ms > 0 &&
                now_ms - d->oldest_ready_ms > oldest)
                oldest = now_ms - d->oldest_ready_ms;
        }
        fputs("drover_queue_oldest_seconds{queue=\"", out);
        s_label(out, q->name);
        fprintf(out, "\"} %.3f\n", (double)oldest / 1000.0);
    }

    s_family(out, "drover_queue_workers", "gauge",
             "Online workers that take jobs of a queue, over all brokers.");
    DV_MAP_EACH(q, self->queues)
    {
        fputs("drover_queue_workers{queue=\"", out);
        s_label(out, q->name);
        fprintf(out, "\"} %d\n",
                collector_state_queue_workers(self, -1, q->name));
    }
}

/* Returns 0, or -1 when out of memory. */
static int
s_workers(const collector_state_t *self, FILE *out, int64_t now_ms)
{
    json_t *sum = collector_state_worker_summary(self, now_ms);
    if (!sum)
        return -1;
    s_family(out, "drover_workers", "gauge", "Worker supervisors by state.");
    static const char *wstates[] = { "busy", "idle", "draining", "offline" };
    for (size_t i = 0; i < sizeof wstates / sizeof wstates[0]; i++)
        fprintf(out, "drover_workers{state=\"%s\"} %" PRId64 "\n", wstates[i],
                collector_state_json_int(sum, wstates[i], 0));
    json_decref(sum);
    s_family(out, "drover_worker_busy", "gauge",
             "Child processes running a job, per worker.");
    const collector_worker_t *w;
    DV_MAP_EACH(w, self->workers)
    {
        if (!collector_state_worker_online(w))
            continue;
        fputs("drover_worker_busy{worker=\"", out);
        s_label(out, w->name);
        fputs("\",broker=\"", out);
        s_label(out, self->brokers[w->broker].events_ep);
        fprintf(out, "\"} %" PRId64 "\n", w->busy >= 0 ? w->busy : w->running);
    }
    return 0;
}

/* Returns 0, or -1 when out of memory. */
static int
s_keys(const collector_state_t *self, FILE *out)
{
    dv_map_t *keys = collector_views_keys(self);
    if (!keys)
        return -1;
    const collector_key_t *k;
    s_family(out, "drover_key_state", "gauge",
             "Workers on which an API key is in each state.");
    DV_MAP_EACH(k, keys)
    {
        static const char *ks[] = { "ok", "cooling", "disabled" };
        for (int i = 0; i < 3; i++) {
            fputs("drover_key_state{key=\"", out);
            s_label(out, collector_state_json_str(k->o, "id"));
            fprintf(out, "\",state=\"%s\"} %" PRId64 "\n", ks[i], k->states[i]);
        }
    }
    s_family(out, "drover_key_requests_total", "counter",
             "Requests per API key and outcome, summed over online workers.");
    DV_MAP_EACH(k, keys)
    {
        static const char *ko[] = { "ok", "rate_limited", "errors" };
        static const char *kl[] = { "ok", "rate_limited", "error" };
        for (int i = 0; i < 3; i++) {
            fputs("drover_key_requests_total{key=\"", out);
            s_label(out, collector_state_json_str(k->o, "id"));
            fprintf(out, "\",outcome=\"%s\"} %" PRId64 "\n", kl[i],
                    collector_state_json_int(k->o, ko[i], 0));
        }
    }
    dv_map_destroy(&keys);
    return 0;
}

/* ---- the fleet's keys (the broker's keys.state) --------------------------- */

/* name{key="...",hash="..." without closing the braces. */
static void
s_fleet_open(FILE *out, const char *name, const json_t *k)
{
    fprintf(out, "%s{key=\"", name);
    s_label(out, collector_state_json_str(k, "id"));
    fputs("\",hash=\"", out);
    s_label(out, collector_state_json_str(k, "hash"));
}

/* One gauge family with one sample per key: the integer member key of
 * each, divided by div (1, or 1000 for ms as seconds). */
static void
s_fleet_gauge(FILE *out, const json_t *keys, const char *name, const char *help,
              const char *member, int div)
{
    s_family(out, name, "gauge", help);
    size_t i;
    const json_t *k;
    json_array_foreach(keys, i, k)
    {
        int64_t v = collector_state_json_int(k, member, 0);
        s_fleet_open(out, name, k);
        if (div == 1)
            fprintf(out, "\"} %" PRId64 "\n", v);
        else
            fprintf(out, "\"} %.9g\n", (double)v / div);
    }
}

static void
s_fleet_keys(const collector_state_t *self, FILE *out, int64_t now_ms)
{
    const json_t *body = collector_keys_fleet(self, now_ms);
    const json_t *keys = json_object_get(body, "keys"); /* NULL: none */
    size_t i;
    const json_t *k;
    s_family(out, "drover_fleet_key_state", "gauge",
             "1 for an API key's fleet-wide state (ok, cooling, disabled, "
             "unproven), as the broker holds it.");
    json_array_foreach(keys, i, k)
    {
        const char *st = collector_state_json_str(k, "state");
        bool known = false;
        for (int s = 0; s < COLLECTOR_FLEET_STATES; s++) {
            bool on = !strcmp(st, collector_keys_states[s]);
            known |= on;
            s_fleet_open(out, "drover_fleet_key_state", k);
            fprintf(out, "\",state=\"%s\"} %d\n", collector_keys_states[s],
                    on ? 1 : 0);
        }
        if (!known) { /* a state of a newer broker */
            s_fleet_open(out, "drover_fleet_key_state", k);
            fputs("\",state=\"", out);
            s_label(out, st);
            fputs("\"} 1\n", out);
        }
    }
    s_fleet_gauge(out, keys, "drover_fleet_key_limit",
                  "An API key's working limit: requests per window the fleet "
                  "may send now (0: none).",
                  "limit", 1);
    s_fleet_gauge(out, keys, "drover_fleet_key_learned_limit",
                  "The requests per window 429s taught the broker for an API "
                  "key (0: none learned).",
                  "learned", 1);
    s_fleet_gauge(out, keys, "drover_fleet_key_configured_limit",
                  "Requests per window the key files allow an API key (rpm; "
                  "0: not set).",
                  "rpm", 1);
    s_fleet_gauge(out, keys, "drover_fleet_key_window_seconds",
                  "The window an API key's limits count over.", "window", 1000);
    s_fleet_gauge(out, keys, "drover_fleet_key_window_requests",
                  "Requests sent on an API key in the last window.", "requests",
                  1);
    s_fleet_gauge(out, keys, "drover_fleet_key_window_tokens",
                  "Tokens used on an API key in the last window.", "tokens", 1);
    s_fleet_gauge(out, keys, "drover_fleet_key_in_flight",
                  "Requests on an API key in flight now, over the fleet.",
                  "in_flight", 1);
    s_fleet_gauge(out, keys, "drover_fleet_key_cooldown_seconds",
                  "Cooldown left on an API key after a 429 (0: not cooling).",
                  "cool", 1000);
    s_fleet_gauge(out, keys, "drover_fleet_key_disabled_status",
                  "The HTTP status (401, 403) that disabled an API key; 0 "
                  "while enabled.",
                  "disabled", 1);
    s_family(out, "drover_fleet_key_share", "gauge",
             "An API key's share (0..1) of all keys' requests in the last "
             "window.");
    json_array_foreach(keys, i, k)
    {
        s_fleet_open(out, "drover_fleet_key_share", k);
        fprintf(out, "\"} %.6g\n",
                json_number_value(json_object_get(k, "share")));
    }
    s_family(out, "drover_fleet_key_workers", "gauge",
             "Workers using an API key.");
    json_array_foreach(keys, i, k)
    {
        s_fleet_open(out, "drover_fleet_key_workers", k);
        fprintf(out, "\"} %zu\n",
                json_array_size(json_object_get(k, "workers")));
    }
    s_family(out, "drover_fleet_key_requests_total", "counter",
             "Requests per API key and outcome over the fleet, since the "
             "broker started.");
    json_array_foreach(keys, i, k)
    {
        static const char *km[] = { "ok", "limited", "errors" };
        static const char *kl[] = { "ok", "rate_limited", "error" };
        for (int o = 0; o < 3; o++) {
            s_fleet_open(out, "drover_fleet_key_requests_total", k);
            fprintf(out, "\",outcome=\"%s\"} %" PRId64 "\n", kl[o],
                    collector_state_json_int(k, km[o], 0));
        }
    }
    s_family(out, "drover_fleet_key_conflict", "gauge",
             "1 when the workers' key files disagree about an API key (rpm, "
             "tpm or window).");
    json_array_foreach(keys, i, k)
    {
        s_fleet_open(out, "drover_fleet_key_conflict", k);
        fprintf(out, "\"} %d\n", json_object_get(k, "conflict") ? 1 : 0);
    }
}

/* One gauge family with one sample per broker: value(b). */
static void
s_broker_gauge(const collector_state_t *self, FILE *out, const char *name,
               const char *help, int64_t now_ms,
               double (*value)(const collector_state_t *, int, int64_t))
{
    s_family(out, name, "gauge", help);
    for (int b = 0; b < self->nbrokers; b++) {
        fprintf(out, "%s{broker=\"", name);
        s_label(out, self->brokers[b].events_ep);
        fprintf(out, "\"} %.9g\n", value(self, b, now_ms));
    }
}

static double
s_active(const collector_state_t *self, int b, int64_t now_ms)
{
    (void)now_ms;
    const collector_broker_t *br = &self->brokers[b];
    return br->reach == COLLECTOR_REACH_UP && br->snapshot && !br->standby;
}

static double
s_store_ok(const collector_state_t *self, int b, int64_t now_ms)
{
    (void)now_ms;
    return !self->brokers[b].store_failing;
}

static double
s_lag(const collector_state_t *self, int b, int64_t now_ms)
{
    return (double)collector_state_lag_ms(self, b, now_ms) / 1000.0;
}

static void
s_collector(const collector_state_t *self, FILE *out, int64_t now_ms)
{
    s_family(out, "drover_broker_up", "gauge",
             "1 when the broker answers status requests.");
    for (int b = 0; b < self->nbrokers; b++) {
        fputs("drover_broker_up{broker=\"", out);
        s_label(out, self->brokers[b].events_ep);
        fprintf(out, "\"} %d\n",
                self->brokers[b].reach == COLLECTOR_REACH_UP ? 1 : 0);
    }
    s_broker_gauge(self, out, "drover_broker_active",
                   "1 when the broker answers status as the active one (it "
                   "serves jobs), 0 for a standby of a broker group or a "
                   "broker that does not answer.",
                   now_ms, s_active);
    s_broker_gauge(self, out, "drover_broker_store_ok",
                   "0 while the broker's last status said it cannot write its "
                   "store, else 1.",
                   now_ms, s_store_ok);
    s_broker_gauge(self, out, "drover_collector_lag_seconds",
                   "How long the collector has not received an event the "
                   "broker had published by a status snapshot; 0 when caught "
                   "up or the broker does not answer.",
                   now_ms, s_lag);
    s_family(out, "drover_collector_events_total", "counter",
             "Events received from all brokers.");
    fprintf(out, "drover_collector_events_total %" PRIu64 "\n",
            collector_state_events_total(self));
    s_family(out, "drover_collector_gaps_total", "counter",
             "Gaps in the brokers' event sequence numbers (missed events).");
    fprintf(out, "drover_collector_gaps_total %" PRIu64 "\n",
            collector_state_gaps_total(self));
}

/* The brokers' schedules, from their schedule.fired events. */
static void
s_schedules(const collector_state_t *self, FILE *out)
{
    const collector_schedule_t *s;
    s_family(out, "drover_schedule_lag_seconds", "gauge",
             "How late the schedule's last firing was submitted, after its "
             "nominal time.");
    DV_MAP_EACH(s, self->schedules)
    {
        fputs("drover_schedule_lag_seconds{schedule=\"", out);
        s_label(out, s->name);
        fprintf(out, "\"} %.3f\n", (double)s->lag_ms / 1000.0);
    }
    s_family(out, "drover_schedule_firings_total", "counter",
             "Firings of the schedule seen since the collector started.");
    DV_MAP_EACH(s, self->schedules)
    {
        fputs("drover_schedule_firings_total{schedule=\"", out);
        s_label(out, s->name);
        fprintf(out, "\"} %" PRIu64 "\n", s->firings);
    }
}

int
collector_state_metrics(const collector_state_t *self, FILE *out,
                        int64_t now_ms)
{
    s_jobs(self, out, now_ms);
    s_schedules(self, out);
    if (s_workers(self, out, now_ms) != 0 || s_keys(self, out) != 0)
        return -1;
    s_fleet_keys(self, out, now_ms);
    s_collector(self, out, now_ms);
    return ferror(out) ? -1 : 0;
}
