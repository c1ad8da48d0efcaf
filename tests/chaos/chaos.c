#include "chaos.h"

#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dv_clock.h"

/* ---- randomness -------------------------------------------------------- */

uint64_t
chaos_seed(const char *scenario)
{
    const char *env = getenv("DROVER_CHAOS_SEED");
    uint64_t seed;
    if (env && *env) {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                (uint64_t)getpid()) %
               1000000007u;
    }
    if (seed == 0)
        seed = 1;
    printf("chaos[%s] seed=%" PRIu64 " (replay with DROVER_CHAOS_SEED=%" PRIu64
           ")\n",
           scenario, seed, seed);
    fflush(stdout);
    return seed;
}

int
chaos_range(uint64_t *s, int lo, int hi)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    uint64_t r = x * UINT64_C(2685821657736338717);
    return lo + (int)((r >> 33) % (uint64_t)(hi - lo + 1));
}

void
chaos_pause_ms(int ms)
{
    poll(NULL, 0, ms); /* chaos timing, not a wait for a condition */
}

/* ---- the handler ------------------------------------------------------- */

void
chaos_exec_flag(harness_t *h, char *buf, size_t size)
{
    snprintf(buf, size, "chaos=%s %s/handler.log", CHAOS_HANDLER, h->dir);
}

void
chaos_wargs(harness_t *h, int concurrency, int prefetch, chaos_wargs_t *w)
{
    chaos_exec_flag(h, w->exec, sizeof w->exec);
    snprintf(w->concurrency, sizeof w->concurrency, "%d", concurrency);
    snprintf(w->prefetch, sizeof w->prefetch, "%d", prefetch);
    int n = 0;
    w->args[n++] = "--concurrency";
    w->args[n++] = w->concurrency;
    if (prefetch > 0) {
        w->args[n++] = "--prefetch";
        w->args[n++] = w->prefetch;
    }
    w->args[n++] = "--exec";
    w->args[n++] = w->exec;
    w->args[n] = NULL;
}

void
chaos_start(harness_t *h, const chaos_wargs_t *w, int n, pid_t *pids)
{
    assert_true(harness_start_broker(h, NULL) > 0);
    for (int i = 0; i < n; i++) {
        pid_t pid = harness_start_worker(h, w->args);
        assert_true(pid > 0);
        if (pids)
            pids[i] = pid;
    }
}

static int
s_exec_cmp(const void *a, const void *b)
{
    const chaos_exec_t *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (c)
        return c;
    return x->start_ms < y->start_ms ? -1 : x->start_ms > y->start_ms;
}

int
chaos_execs_load(harness_t *h, chaos_exec_t **out)
{
    *out = NULL;
    char *text = harness_read(h, "handler.log");
    if (!text)
        return 0;
    size_t cap = 1024, n = 0;
    chaos_exec_t *v = malloc(cap * sizeof *v);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); v && line;
         line = strtok_r(NULL, "\n", &save)) {
        if (n == cap) {
            chaos_exec_t *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
            cap *= 2;
        }
        chaos_exec_t *e = &v[n];
        if (sscanf(line, "%36s %d %63s %ld %" SCNd64 " %" SCNd64, e->id,
                   &e->attempt, e->worker, &e->pid, &e->start_ms,
                   &e->end_ms) == 6)
            n++;
        else
            fprintf(stderr, "chaos: handler log: bad line '%s'\n", line);
    }
    free(text);
    if (!v)
        return -1;
    qsort(v, n, sizeof *v, s_exec_cmp);
    *out = v;
    return (int)n;
}

/* ---- ids --------------------------------------------------------------- */

int
chaos_ids_add(chaos_ids_t *ids, const char *id)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? 2 * ids->cap : 1024;
        char(*v)[37] = realloc(ids->v, cap * sizeof *v);
        if (!v)
            return -1;
        ids->v = v;
        ids->cap = cap;
    }
    snprintf(ids->v[ids->n++], 37, "%s", id);
    return 0;
}

static int
s_id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

void
chaos_ids_unique(chaos_ids_t *ids)
{
    if (!ids->n)
        return;
    qsort(ids->v, ids->n, sizeof ids->v[0], s_id_cmp);
    size_t w = 1;
    for (size_t r = 1; r < ids->n; r++)
        if (strcmp(ids->v[r], ids->v[w - 1]))
            memcpy(ids->v[w++], ids->v[r], 37);
    ids->n = w;
}

void
chaos_ids_free(chaos_ids_t *ids)
{
    free(ids->v);
    memset(ids, 0, sizeof *ids);
}

/* ---- submitting -------------------------------------------------------- */

int
chaos_submit_keyed(drover_client_t *c, const char *prefix, int n, int ms_lo,
                   int ms_hi, int pad, uint64_t *rng, int deadline_ms,
                   chaos_ids_t *acked, chaos_submit_stats_t *st)
{
    drover_job_t *jobs = calloc((size_t)n, sizeof *jobs);
    drover_ack_t *acks = calloc((size_t)n, sizeof *acks);
    int *idx = calloc((size_t)n, sizeof *idx);
    char(*keys)[96] = calloc((size_t)n, sizeof *keys);
    char **payloads = calloc((size_t)n, sizeof *payloads);
    int pending = n;
    if (!jobs || !acks || !idx || !keys || !payloads)
        goto out;
    for (int i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "%s-%d", prefix, i);
        int ms = chaos_range(rng, ms_lo, ms_hi);
        size_t len = 64 + (size_t)(pad > 0 ? pad : 0);
        payloads[i] = malloc(len);
        if (!payloads[i])
            goto out;
        if (pad > 0) {
            int k = snprintf(payloads[i], len, "{\"ms\":%d,\"pad\":\"", ms);
            memset(payloads[i] + k, 'x', (size_t)pad);
            snprintf(payloads[i] + k + pad, len - (size_t)k - (size_t)pad,
                     "\"}");
        } else {
            snprintf(payloads[i], len, "%d", ms);
        }
    }
    int64_t deadline = dv_mono_ms() + harness_scale(deadline_ms);
    bool *done = calloc((size_t)n, sizeof *done);
    if (!done)
        goto out;
    while (pending > 0 && dv_mono_ms() < deadline) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (done[i])
                continue;
            drover_job_init(&jobs[m]);
            jobs[m].type = "chaos";
            jobs[m].payload_json = payloads[i];
            jobs[m].key = keys[i];
            jobs[m].max_attempts = 25;
            jobs[m].backoff_base_s = 0.05;
            jobs[m].backoff_cap_s = 0.5;
            idx[m++] = i;
        }
        int rc = drover_submit_many(c, jobs, (size_t)m, acks);
        st->submits++;
        bool short_ = rc != DROVER_OK;
        for (int j = 0; j < m; j++) {
            if (rc == DROVER_OK && acks[j].id[0] && !acks[j].error[0]) {
                done[idx[j]] = true;
                pending--;
                chaos_ids_add(acked, acks[j].id);
            } else {
                short_ = true;
                if (acks[j].error[0] && !acks[j].unanswered) {
                    st->refused++;
                    if (strcasestr(acks[j].error, "no space left on device"))
                        st->refused_nospace++;
                    snprintf(st->last_error, sizeof st->last_error, "%s",
                             acks[j].error);
                }
            }
        }
        if (rc != DROVER_OK)
            snprintf(st->last_error, sizeof st->last_error, "%s",
                     drover_last_error(c));
        if (short_) {
            st->failures++;
            chaos_pause_ms(50); /* a client's pause before it sends again */
        }
    }
    free(done);
out:
    for (int i = 0; payloads && i < n; i++)
        free(payloads[i]);
    free(payloads);
    free(keys);
    free(idx);
    free(acks);
    free(jobs);
    return pending;
}

void
chaos_submit_all(harness_t *h, const char *tag, uint64_t seed, int n, int ms_lo,
                 int ms_hi, uint64_t *rng, int deadline_ms, chaos_ids_t *acked)
{
    chaos_submit_stats_t st = { 0 };
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s-%" PRIu64, tag, seed);
    int left = chaos_submit_keyed(h->client, prefix, n, ms_lo, ms_hi, 0, rng,
                                  deadline_ms, acked, &st);
    if (left)
        fail_msg("%d of %d jobs got no ack (last error: %s)", left, n,
                 st.last_error);
}

/* ---- the broker's status ----------------------------------------------- */

int
chaos_worker_running(harness_t *h, const char *name)
{
    char *body = harness_status(h);
    if (!body)
        return -1;
    json_t *st = json_loads(body, 0, NULL);
    free(body);
    int running = -1;
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(st, "workers"), i, w)
    {
        const char *n = json_string_value(json_object_get(w, "name"));
        if (n && !strcmp(n, name))
            running = (int)json_integer_value(json_object_get(w, "running"));
    }
    json_decref(st);
    return running;
}

/* ---- the store check --------------------------------------------------- */

/* Two checks: `drover check` (the broker compares its memory with its
 * store, job by job), and, from outside, the broker's status counts
 * against the store (the SQLite file or the PostgreSQL database). */

typedef struct {
    harness_t *h;
    int64_t live, store_live;
    int64_t st[3], store_st[3]; /* queued, scheduled, running */
} s_sqlcheck_t;

static const char *const s_live_states[3] = { "queued", "scheduled",
                                              "running" };

static bool
s_sql_agrees(void *arg)
{
    s_sqlcheck_t *c = arg;
    char *body = harness_status(c->h);
    if (!body)
        return false;
    json_t *st = json_loads(body, 0, NULL);
    free(body);
    if (!st)
        return false;
    c->live = json_integer_value(
        json_object_get(json_object_get(st, "counters"), "live_jobs"));
    for (int k = 0; k < 3; k++) {
        c->st[k] = 0;
        size_t i;
        json_t *q;
        json_array_foreach(json_object_get(st, "queues"), i, q) c->st[k] +=
            json_integer_value(json_object_get(q, s_live_states[k]));
    }
    json_decref(st);
    c->store_live = harness_sql_int(
        c->h, "SELECT count(*) FROM jobs WHERE finished_at IS NULL");
    bool same = c->store_live == c->live;
    for (int k = 0; k < 3; k++) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM jobs WHERE finished_at IS NULL AND "
                 "state='%s'",
                 s_live_states[k]);
        c->store_st[k] = harness_sql_int(c->h, sql);
        same = same && c->store_st[k] == c->st[k];
    }
    return same;
}

static bool
s_check_sql(harness_t *h, char *detail, size_t size)
{
    s_sqlcheck_t c = { .h = h };
    /* Outcomes reach the store a commit after the broker counts them. */
    bool ok = harness_wait_until(s_sql_agrees, &c, 10000);
    snprintf(detail, size,
             "live broker %" PRId64 " store %" PRId64 "; queued %" PRId64
             "/%" PRId64 " scheduled %" PRId64 "/%" PRId64 " running %" PRId64
             "/%" PRId64,
             c.live, c.store_live, c.st[0], c.store_st[0], c.st[1],
             c.store_st[1], c.st[2], c.store_st[2]);
    return ok;
}

static bool
s_check_cli(harness_t *h, char *detail, size_t size)
{
    const char *args[] = { "check", "--broker", h->clients, NULL };
    pid_t p = harness_spawn(h, args, "check.out", "check.log");
    int status = p > 0 ? harness_wait_exit(h, p, 60000) : -1;
    char *out = harness_read(h, "check.out");
    snprintf(detail, size, "exit %d: %.180s",
             status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1,
             out ? out : "");
    free(out);
    return status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool
chaos_store_check(harness_t *h, char *how, size_t how_size, char *detail,
                  size_t detail_size)
{
    snprintf(how, how_size, "drover check + sql (status vs store)");
    char cli[200], sql[200];
    bool ok_cli = s_check_cli(h, cli, sizeof cli);
    bool ok_sql = s_check_sql(h, sql, sizeof sql);
    snprintf(detail, detail_size, "check %s; %s", cli, sql);
    return ok_cli && ok_sql;
}

/* ---- accounting -------------------------------------------------------- */

/* What s_sql_load collects. */
typedef struct {
    size_t item_size, n, cap;
    char *v;
    void (*fill)(const harness_row_t *row, void *item);
    bool nomem;
} s_load_t;

static int
s_load_row(const harness_row_t *row, void *arg)
{
    s_load_t *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        char *nv = realloc(l->v, cap * l->item_size);
        if (!nv) {
            l->nomem = true;
            return 1;
        }
        l->v = nv;
        l->cap = cap;
    }
    l->fill(row, l->v + l->n++ * l->item_size);
    return 0;
}

/* Runs sql on the store (through the harness, SQLite or PostgreSQL) and
 * gives each row to fill(row, item), item the next of an array of items of
 * item_size bytes that grows as needed; then sorts the array with cmp.
 * Returns 0 with the array in *out (caller frees) and its length in *n_out,
 * or -1. */
static int
s_sql_load(harness_t *h, const char *sql, size_t item_size,
           void (*fill)(const harness_row_t *row, void *item),
           int (*cmp)(const void *, const void *), void **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    s_load_t l = { .item_size = item_size, .fill = fill };
    if (harness_sql_each(h, sql, s_load_row, &l) < 0 || l.nomem) {
        free(l.v);
        return -1;
    }
    /* Sorted here, not by ORDER BY: the server's collation need not be
     * strcmp's order, which the lookups below rely on. */
    if (l.n)
        qsort(l.v, l.n, item_size, cmp);
    *out = l.v;
    *n_out = l.n;
    return 0;
}

/* Column col of the current row into buf, "" for NULL. */
static void
s_sql_text(const harness_row_t *row, int col, char *buf, size_t size)
{
    snprintf(buf, size, "%s", harness_row_text(row, col));
}

/* One row of the jobs table. */
typedef struct {
    char id[37];
    char state[16];
    char worker[64];
    int attempt;
    int64_t finished_at;
} s_row_t;

static void
s_row_fill(const harness_row_t *row, void *item)
{
    s_row_t *r = item;
    s_sql_text(row, 0, r->id, sizeof r->id);
    s_sql_text(row, 1, r->state, sizeof r->state);
    s_sql_text(row, 2, r->worker, sizeof r->worker);
    r->attempt = (int)harness_row_int(row, 3);
    r->finished_at = harness_row_int(row, 4);
}

/* The jobs table, for s_row_fill (sorted by id after loading). */
static const char s_rows_sql[] =
    "SELECT id, state, coalesce(worker, ''), attempt, "
    "coalesce(finished_at, 0) FROM jobs";

/* One row of the attempts table. */
typedef struct {
    char id[37];
    int attempt;
    char worker[64];
    char outcome[16];
} s_att_t;

static int
s_att_cmp(const void *a, const void *b)
{
    const s_att_t *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->attempt > y->attempt) - (x->attempt < y->attempt);
}

static void
s_att_fill(const harness_row_t *row, void *item)
{
    s_att_t *a = item;
    s_sql_text(row, 0, a->id, sizeof a->id);
    a->attempt = (int)harness_row_int(row, 1);
    s_sql_text(row, 2, a->worker, sizeof a->worker);
    s_sql_text(row, 3, a->outcome, sizeof a->outcome);
}

/* The attempts table, for s_att_fill (sorted by job id and attempt after
 * loading). */
static const char s_atts_sql[] =
    "SELECT job_id, attempt, coalesce(worker, ''), outcome FROM attempts";

/* Checks one job's history against its executions ex[lo, hi) (sorted by
 * start): one row per execution, under the worker that ran it, and no
 * failed row for the attempt the jobs row says succeeded. */
static void
s_check_history(const char *scenario, const s_row_t *r, const s_att_t *atts,
                size_t natts, const chaos_exec_t *ex, size_t lo, size_t hi,
                chaos_account_t *a)
{
    for (size_t k = lo; k < hi; k++)
        for (size_t j = lo; j < k; j++)
            if (ex[j].attempt == ex[k].attempt) {
                a->same_attempt++;
                printf(
                    "chaos[%s] %s: two executions with attempt %d (%s, %s)\n",
                    scenario, r->id, ex[k].attempt, ex[j].worker, ex[k].worker);
            }
    bool succeeded = !strcmp(r->state, "succeeded");
    for (size_t k = lo; k < hi; k++) {
        s_att_t key;
        snprintf(key.id, sizeof key.id, "%s", r->id);
        key.attempt = ex[k].attempt;
        const s_att_t *row =
            bsearch(&key, atts, natts, sizeof *atts, s_att_cmp);
        bool is_success = succeeded && r->attempt == ex[k].attempt;
        const char *worker = row ? row->worker : is_success ? r->worker : NULL;
        if (!worker) {
            a->unrecorded++;
            printf("chaos[%s] %s: attempt %d on %s has no history row\n",
                   scenario, r->id, ex[k].attempt, ex[k].worker);
        } else if (strcmp(worker, ex[k].worker)) {
            a->wrong_row++;
            printf("chaos[%s] %s: attempt %d ran on %s, history says %s\n",
                   scenario, r->id, ex[k].attempt, ex[k].worker, worker);
        }
    }
    if (succeeded) {
        s_att_t key;
        snprintf(key.id, sizeof key.id, "%s", r->id);
        key.attempt = r->attempt;
        const s_att_t *row =
            bsearch(&key, atts, natts, sizeof *atts, s_att_cmp);
        if (row) {
            a->failed_success++;
            printf("chaos[%s] %s: succeeded attempt %d also has a '%s' row\n",
                   scenario, r->id, r->attempt, row->outcome);
        }
    }
}

typedef struct {
    bool *ended;
    size_t n;
} s_wait_t;

static int
s_on_result(const drover_result_t *r, void *arg)
{
    s_wait_t *w = arg;
    if (r->index < w->n && strcmp(r->state, "unknown") && !w->ended[r->index])
        w->ended[r->index] = true;
    return 0;
}

/* Waits in slices of 5 s until every job ended or wait_ms passed, and gives
 * up early when the broker has held no live job for two slices running
 * (what is still missing then will never end). Returns how many ended. */
static size_t
s_wait_ended(harness_t *h, const char *scenario, chaos_ids_t *ids, int wait_ms)
{
    s_wait_t w = { calloc(ids->n ? ids->n : 1, sizeof(bool)), ids->n };
    const char **p = calloc(ids->n ? ids->n : 1, sizeof *p);
    size_t done = 0;
    int idle = 0;
    int64_t deadline = dv_mono_ms() + harness_scale(wait_ms);
    while (w.ended && p && done < ids->n && dv_mono_ms() < deadline &&
           idle < 2) {
        size_t m = 0;
        for (size_t i = 0; i < ids->n; i++)
            if (!w.ended[i])
                p[m++] = ids->v[i];
        if (!h->client)
            h->client = drover_connect(h->clients, harness_scale(5000));
        s_wait_t sub = { calloc(m, sizeof(bool)), m };
        if (h->client && sub.ended)
            drover_wait(h->client, p, m, harness_scale(5000), s_on_result,
                        &sub);
        size_t k = 0;
        for (size_t i = 0; sub.ended && i < ids->n; i++)
            if (!w.ended[i] && sub.ended[k++]) {
                w.ended[i] = true;
                done++;
            }
        free(sub.ended);
        idle = done < ids->n && harness_counter(h, "live_jobs") == 0 ? idle + 1
                                                                     : 0;
    }
    if (done < ids->n)
        printf("chaos[%s] wait: %zu of %zu jobs did not end%s\n", scenario,
               ids->n - done, ids->n,
               idle >= 2 ? " (the broker holds no live job)" : "");
    free(p);
    free(w.ended);
    return done;
}

void
chaos_account(harness_t *h, const char *scenario, chaos_ids_t *acked,
              int wait_ms, chaos_account_t *a)
{
    memset(a, 0, sizeof *a);
    chaos_ids_unique(acked);
    a->acknowledged = acked->n;
    a->ended = s_wait_ended(h, scenario, acked, wait_ms);

    void *loaded;
    size_t nrows, natts;
    if (s_sql_load(h, s_rows_sql, sizeof(s_row_t), s_row_fill, s_id_cmp,
                   &loaded, &nrows) != 0)
        printf("chaos[%s] store: cannot read %s\n", scenario, h->store);
    s_row_t *rows = loaded;
    chaos_exec_t *ex = NULL;
    int nex = chaos_execs_load(h, &ex);
    if (nex < 0)
        nex = 0;
    if (s_sql_load(h, s_atts_sql, sizeof(s_att_t), s_att_fill, s_att_cmp,
                   &loaded, &natts) != 0)
        printf("chaos[%s] store: cannot read the attempts of %s\n", scenario,
               h->store);
    s_att_t *atts = loaded;

    for (size_t i = 0; i < acked->n; i++) {
        const char *id = acked->v[i];
        s_row_t *r = bsearch(id, rows, nrows, sizeof *rows, s_id_cmp);
        /* This job's executions: a run of ex (sorted by id). */
        size_t lo = 0, hi = (size_t)nex;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (strcmp(ex[mid].id, id) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t runs = 0;
        bool credited = false;
        for (size_t k = lo; k < (size_t)nex && !strcmp(ex[k].id, id); k++) {
            runs++;
            if (r && !strcmp(ex[k].worker, r->worker) &&
                ex[k].attempt == r->attempt)
                credited = true;
            if (r && r->finished_at > 0 && ex[k].start_ms > r->finished_at) {
                a->started_after_end++;
                printf("chaos[%s] %s attempt %d on %s started at %" PRId64
                       ", %" PRId64 " ms after the job ended\n",
                       scenario, id, ex[k].attempt, ex[k].worker,
                       ex[k].start_ms, ex[k].start_ms - r->finished_at);
            }
        }
        if (r)
            s_check_history(scenario, r, atts, natts, ex, lo, lo + runs, a);
        a->executions += runs;
        a->runs[runs > 3 ? 3 : runs]++;
        if (runs >= 2)
            a->ran_twice++;
        bool ok = r && !strcmp(r->state, "succeeded");
        if (ok) {
            a->succeeded++;
            if (!runs)
                a->never_ran_succeeded++;
            else if (!r->worker[0]) {
                a->uncredited++;
                if (a->uncredited <= 10)
                    printf("chaos[%s] %s succeeded (attempt %d) credited to "
                           "no worker\n",
                           scenario, id, r->attempt);
            } else if (!credited) {
                a->wrong_credit++;
                printf("chaos[%s] %s succeeded credited to %s attempt %d, "
                       "which never ran it to its end\n",
                       scenario, id, r->worker, r->attempt);
            }
        } else {
            a->lost++;
            if (a->lost <= 10)
                printf("chaos[%s] lost: %s is %s in the store\n", scenario, id,
                       r ? r->state : "missing");
        }
    }
    free(rows);
    free(ex);
    free(atts);

    a->store_ok = chaos_store_check(h, a->store_how, sizeof a->store_how,
                                    a->store_detail, sizeof a->store_detail);
    /* The broker's lease counters since its last start (left out of its
     * status while 0). */
    int64_t lc[3];
    static const char *const lnames[3] = { "stale", "adopted", "revoked" };
    for (int k = 0; k < 3; k++) {
        lc[k] = harness_counter(h, lnames[k]);
        if (lc[k] < 0)
            lc[k] = 0;
    }
    printf(
        "chaos[%s] leases since the last broker start: stale reports %" PRId64
        ", executions taken back %" PRId64 ", held jobs revoked %" PRId64 "\n",
        scenario, lc[0], lc[1], lc[2]);
    printf("chaos[%s] acknowledged=%zu ended=%zu succeeded=%zu lost=%zu "
           "executions=%zu runs(0/1/2/3+)=%zu/%zu/%zu/%zu ran_twice=%zu "
           "succeeded_without_run=%zu uncredited=%zu wrong_credit=%zu "
           "started_after_end=%zu history: same_attempt=%zu unrecorded=%zu "
           "wrong_row=%zu failed_success=%zu "
           "store_check=%s:%s (%s)\n",
           scenario, a->acknowledged, a->ended, a->succeeded, a->lost,
           a->executions, a->runs[0], a->runs[1], a->runs[2], a->runs[3],
           a->ran_twice, a->never_ran_succeeded, a->uncredited, a->wrong_credit,
           a->started_after_end, a->same_attempt, a->unrecorded, a->wrong_row,
           a->failed_success, a->store_how, a->store_ok ? "ok" : "DIFFERS",
           a->store_detail);
    fflush(stdout);
}

void
chaos_assert_account(const chaos_account_t *a, size_t twice_bound)
{
    printf("chaos: ran_twice=%zu, bound %zu\n", a->ran_twice, twice_bound);
    fflush(stdout);
    if (a->acknowledged == 0)
        fail_msg("no job was acknowledged");
    if (a->lost)
        fail_msg("%zu of %zu acknowledged jobs lost (not succeeded in the "
                 "store)",
                 a->lost, a->acknowledged);
    if (a->ended != a->acknowledged)
        fail_msg("%zu of %zu acknowledged jobs never reported ended",
                 a->acknowledged - a->ended, a->acknowledged);
    if (a->never_ran_succeeded)
        fail_msg("%zu jobs succeeded without any execution",
                 a->never_ran_succeeded);
    if (a->uncredited)
        fail_msg("%zu succeeded jobs are credited to no worker in the store",
                 a->uncredited);
    if (a->wrong_credit)
        fail_msg("%zu succeeded jobs are credited to a worker and attempt "
                 "that never ran them to their end",
                 a->wrong_credit);
    if (a->same_attempt)
        fail_msg("%zu executions share their attempt number with another",
                 a->same_attempt);
    if (a->unrecorded || a->wrong_row || a->failed_success)
        fail_msg("attempt history is not exact: %zu executions without a "
                 "row, %zu rows naming another worker, %zu failed rows for "
                 "the attempt that succeeded",
                 a->unrecorded, a->wrong_row, a->failed_success);
    if (a->ran_twice > twice_bound)
        fail_msg("%zu jobs ran twice or more, over the bound of %zu",
                 a->ran_twice, twice_bound);
    if (!a->store_ok)
        fail_msg("the broker and the store disagree (%s: %s)", a->store_how,
                 a->store_detail);
    assert_int_equal(a->succeeded, a->acknowledged);
}
