#include "broker_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_log.h"

/* Most requests a grant carries for a key without a limit. */
#define S_CHUNK_UNLIMITED 64
/* Most windows between two probes of a learned limit upward. */
#define S_PROBE_UP_MAX 64
/* Cooldown after a 429 whose worker gave none. */
#define S_COOL_DEFAULT_MS 1000

/* Requests that ended at t (the broker heard of it), with their tokens. */
typedef struct {
    int64_t t;
    int32_t n, ok;
    int64_t tokens;
} s_ev_t;

/* One worker's use of one key. */
typedef struct s_holder {
    void *worker;
    char *name;
    int rpm; /* what its key file says */
    int64_t tpm, window_ms;
    int want;         /* grants it would like to hold */
    int unsent;       /* granted, not sent, not returned */
    int unended;      /* sent, not ended */
    int64_t requests; /* sent, in all */
    /* what goes to it at the next flush */
    bool out;
    int grant_out;
    bool revoke_out, probe_out;
    bool probing; /* holds the probe grant */
    struct s_holder *next;
} s_holder_t;

typedef struct {
    char hash[65];
    char id[DV_NAME_MAX + 1];
    /* limits: the holders' lowest, and the longest window */
    int rpm;
    int64_t tpm, window_ms;
    char conflict[200];
    /* state (stored) */
    int64_t cool_until;
    int disabled;
    int64_t disabled_ms;
    int learned;
    int64_t learned_ms;
    bool proven;
    bool dirty;
    /* the window: a ring of ended requests, and its sums */
    s_ev_t *ev;
    int ev_head, ev_len, ev_cap;
    int64_t win_n, win_ok, win_tokens;
    double avg_tokens;  /* per request, moving average; 0 = unknown */
    int64_t starved_ms; /* a want waited for budget then */
    /* A 429 under the limit: the requests the API accepted in the window
     * before it, and those in flight then that end 2xx during the
     * cooldown (errors are answered at once, before the 2xx of the same
     * burst), set the learned limit when the cooldown ends. */
    bool learning;
    int64_t learn_ok;
    /* Windows between two probes upward: 2, doubled by each 429 a probe
     * meets (at most S_PROBE_UP_MAX), so a key settled at its real limit
     * meets ever fewer 429s. */
    int probe_windows;
    int64_t last_probe;
    int64_t requests, ok, limited, errors; /* since the broker started */
    int rr; /* the holder that is served first next time */
    s_holder_t *holders;
} s_key_t;

struct broker_keys_t {
    broker_keys_cfg_t cfg;
    s_key_t **keys;
    int n, cap;
};

broker_keys_t *
broker_keys_new(const broker_keys_cfg_t *cfg)
{
    broker_keys_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *cfg;
    if (self->cfg.ttl_ms <= 0)
        self->cfg.ttl_ms = BROKER_KEYS_TTL_DEFAULT_MS;
    return self;
}

static void
s_holder_free(s_holder_t *h)
{
    free(h->name);
    free(h);
}

void
broker_keys_destroy(broker_keys_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_keys_t *self = *self_p;
    for (int i = 0; i < self->n; i++) {
        s_key_t *k = self->keys[i];
        while (k->holders) {
            s_holder_t *h = k->holders;
            k->holders = h->next;
            s_holder_free(h);
        }
        free(k->ev);
        free(k);
    }
    free(self->keys);
    free(self);
    *self_p = NULL;
}

int
broker_keys_count(const broker_keys_t *self)
{
    return self->n;
}

static s_key_t *
s_find(const broker_keys_t *self, const char *hash, size_t len)
{
    for (int i = 0; i < self->n; i++)
        if (strlen(self->keys[i]->hash) == len &&
            memcmp(self->keys[i]->hash, hash, len) == 0)
            return self->keys[i];
    return NULL;
}

static s_key_t *
s_add(broker_keys_t *self, const char *hash, size_t len)
{
    if (len == 0 || len >= sizeof((s_key_t *)0)->hash ||
        self->n >= BROKER_KEYS_MAX)
        return NULL;
    if (self->n == self->cap) {
        int cap = self->cap ? self->cap * 2 : 8;
        s_key_t **keys = realloc(self->keys, (size_t)cap * sizeof *keys);
        if (!keys)
            return NULL;
        self->keys = keys;
        self->cap = cap;
    }
    s_key_t *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    memcpy(k->hash, hash, len);
    snprintf(k->id, sizeof k->id, "%s", k->hash);
    k->window_ms = BROKER_KEYS_WINDOW_DEFAULT;
    self->keys[self->n++] = k;
    return k;
}

int
broker_keys_restore(broker_keys_t *self, const broker_key_state_t *st)
{
    size_t len = strlen(st->hash);
    s_key_t *k = s_find(self, st->hash, len);
    if (!k && !(k = s_add(self, st->hash, len)))
        return DV_ENOMEM;
    if (st->id && st->id[0])
        snprintf(k->id, sizeof k->id, "%s", st->id);
    k->cool_until = st->cool_until_ms;
    k->disabled = st->disabled_status;
    k->disabled_ms = st->disabled_ms;
    k->learned = st->learned_limit;
    k->learned_ms = st->learned_ms;
    k->proven = st->proven;
    return DV_OK;
}

/* ---- the window ------------------------------------------------------------ */

static int
s_ev_push(s_key_t *k, int64_t t, int32_t n, int32_t ok, int64_t tokens)
{
    if (n <= 0 && tokens <= 0)
        return DV_OK;
    /* Requests that ended in the same ms share an entry. */
    if (k->ev_len > 0) {
        s_ev_t *last = &k->ev[(k->ev_head + k->ev_len - 1) % k->ev_cap];
        if (last->t == t) {
            last->n += n;
            last->ok += ok;
            last->tokens += tokens;
            goto sums;
        }
    }
    if (k->ev_len == k->ev_cap) {
        int cap = k->ev_cap ? k->ev_cap * 2 : 64;
        s_ev_t *ev = malloc((size_t)cap * sizeof *ev);
        if (!ev)
            return DV_ENOMEM;
        for (int i = 0; i < k->ev_len; i++)
            ev[i] = k->ev[(k->ev_head + i) % k->ev_cap];
        free(k->ev);
        k->ev = ev;
        k->ev_cap = cap;
        k->ev_head = 0;
    }
    k->ev[(k->ev_head + k->ev_len) % k->ev_cap] = (s_ev_t){ t, n, ok, tokens };
    k->ev_len++;
sums:
    k->win_n += n;
    k->win_ok += ok;
    k->win_tokens += tokens;
    return DV_OK;
}

static void
s_ev_expire(s_key_t *k, int64_t now)
{
    while (k->ev_len > 0 && k->ev[k->ev_head].t + k->window_ms <= now) {
        const s_ev_t *e = &k->ev[k->ev_head];
        k->win_n -= e->n;
        k->win_ok -= e->ok;
        k->win_tokens -= e->tokens;
        k->ev_head = (k->ev_head + 1) % k->ev_cap;
        k->ev_len--;
    }
}

/* ---- limits ---------------------------------------------------------------- */

/* The working limit per window; 0 = none. */
static int
s_limit(const s_key_t *k)
{
    if (k->learned > 0 && (k->rpm == 0 || k->learned < k->rpm))
        return k->learned;
    return k->rpm;
}

static int
s_outstanding(const s_key_t *k)
{
    int n = 0;
    for (const s_holder_t *h = k->holders; h; h = h->next)
        n += h->unsent + h->unended;
    return n;
}

/* The key's limits from its holders' declarations: the lowest rpm and
 * tpm, the longest window; a disagreement is written down. */
static void
s_limits(s_key_t *k)
{
    int rpm = 0, rpm_hi = 0;
    int64_t tpm = 0, tpm_hi = 0, win = 0, win_lo = 0;
    const char *lo_name = NULL, *hi_name = NULL;
    for (const s_holder_t *h = k->holders; h; h = h->next) {
        if (h->rpm > 0 && (rpm == 0 || h->rpm < rpm)) {
            rpm = h->rpm;
            lo_name = h->name;
        }
        if (h->rpm > rpm_hi) {
            rpm_hi = h->rpm;
            hi_name = h->name;
        }
        if (h->tpm > 0 && (tpm == 0 || h->tpm < tpm))
            tpm = h->tpm;
        if (h->tpm > tpm_hi)
            tpm_hi = h->tpm;
        int64_t w =
            h->window_ms > 0 ? h->window_ms : BROKER_KEYS_WINDOW_DEFAULT;
        if (w > win)
            win = w;
        if (win_lo == 0 || w < win_lo)
            win_lo = w;
    }
    k->conflict[0] = '\0';
    if (rpm > 0 && rpm_hi != rpm)
        snprintf(k->conflict, sizeof k->conflict,
                 "workers disagree on rpm: %s says %d, %s says %d; the lowest "
                 "wins",
                 lo_name, rpm, hi_name, rpm_hi);
    else if (tpm > 0 && tpm_hi != tpm)
        snprintf(k->conflict, sizeof k->conflict,
                 "workers disagree on tpm (%lld to %lld); the lowest wins",
                 (long long)tpm, (long long)tpm_hi);
    else if (win != win_lo)
        snprintf(k->conflict, sizeof k->conflict,
                 "workers disagree on the window (%lld to %lld ms); the "
                 "longest wins",
                 (long long)win_lo, (long long)win);
    if (k->holders) {
        k->rpm = rpm;
        k->tpm = tpm;
        k->window_ms = win;
    }
}

/* ---- holders --------------------------------------------------------------- */

static s_holder_t *
s_holder(s_key_t *k, void *worker)
{
    for (s_holder_t *h = k->holders; h; h = h->next)
        if (h->worker == worker)
            return h;
    return NULL;
}

/* Every holder hears the key's state at the next flush; with revoke, also
 * that its grants are void. */
static void
s_tell_all(s_key_t *k, bool revoke)
{
    for (s_holder_t *h = k->holders; h; h = h->next) {
        h->out = true;
        h->revoke_out |= revoke && h->unsent > 0;
    }
}

static void
s_remove_holder(s_key_t *k, s_holder_t *gone, int64_t now)
{
    for (s_holder_t **p = &k->holders; *p; p = &(*p)->next) {
        if (*p != gone)
            continue;
        *p = gone->next;
        /* In flight when it went: counted as ended now (conservative). */
        if (s_ev_push(k, now, gone->unended, 0, 0) != DV_OK)
            k->starved_ms = now; /* nothing better to do without memory */
        s_holder_free(gone);
        s_limits(k);
        return;
    }
}

void
broker_keys_worker_gone(broker_keys_t *self, void *worker, int64_t now)
{
    for (int i = 0; i < self->n; i++) {
        s_holder_t *h = s_holder(self->keys[i], worker);
        if (h)
            s_remove_holder(self->keys[i], h, now);
    }
}

/* ---- lines from workers ---------------------------------------------------- */

static void
s_cool(s_key_t *k, const char *wname, int64_t cool_ms, int64_t now)
{
    if (cool_ms <= 0)
        cool_ms = S_COOL_DEFAULT_MS;
    int64_t until = now + cool_ms;
    if (until <= k->cool_until)
        return;
    bool was_cooling = k->cool_until > now;
    k->cool_until = until;
    k->dirty = true;
    s_tell_all(k, true);
    if (!was_cooling && !k->learning) {
        k->learning = true;
        k->learn_ok = k->win_ok;
        /* A probe upward met its 429: probe half as often. */
        if (k->learned > 0)
            k->probe_windows = k->probe_windows < 2 ? 4
                               : k->probe_windows * 2 > S_PROBE_UP_MAX
                                   ? S_PROBE_UP_MAX
                                   : k->probe_windows * 2;
    }
    dv_log(DV_INFO, "broker.key_cooling", DV_STR("key", k->id),
           DV_STR("hash", k->hash), DV_STR("worker", wname),
           DV_INT("cooldown_ms", cool_ms));
}

/* The cooldown of a 429 is over: the API accepted learn_ok requests in its
 * window, so that is its real limit (below the working one); more than
 * that (the windows do not line up): 10% less. */
static void
s_learn(s_key_t *k, int64_t now)
{
    if (!k->learning || k->cool_until > now)
        return;
    k->learning = false;
    int limit = s_limit(k);
    int was = limit;
    if (limit == 0 || k->learn_ok < limit)
        limit = k->learn_ok > 0 ? (int)k->learn_ok : 1;
    else
        limit = limit * 9 / 10 > 0 ? limit * 9 / 10 : 1;
    if (k->rpm > 0 && limit >= k->rpm)
        limit = 0;
    k->learned_ms = now;
    k->dirty = true;
    if (limit == k->learned)
        return;
    k->learned = limit;
    s_tell_all(k, false);
    dv_log(DV_INFO, "broker.key_learned", DV_STR("key", k->id),
           DV_STR("hash", k->hash), DV_INT("limit", limit), DV_INT("was", was),
           DV_INT("rpm", k->rpm), DV_INT("window_ms", k->window_ms));
}

static void
s_disable(s_key_t *k, const char *wname, int status, int64_t now)
{
    if (k->disabled) {
        k->disabled_ms = now; /* a failed probe: wait a whole interval */
        return;
    }
    k->disabled = status;
    k->disabled_ms = now;
    k->dirty = true;
    s_tell_all(k, true);
    dv_log(DV_WARN, "broker.key_disabled", DV_STR("key", k->id),
           DV_STR("hash", k->hash), DV_STR("worker", wname),
           DV_INT("status", status));
}

static void
s_enable(s_key_t *k, const char *how)
{
    k->disabled = 0;
    k->disabled_ms = 0;
    k->cool_until = 0;
    k->dirty = true;
    for (s_holder_t *h = k->holders; h; h = h->next)
        h->probing = false;
    s_tell_all(k, false);
    dv_log(DV_INFO, "broker.key_enabled", DV_STR("key", k->id),
           DV_STR("hash", k->hash), DV_STR("by", how));
}

static int
s_clamp_sub(int *v, int n)
{
    int took = n < *v ? n : *v;
    *v -= took;
    return took;
}

int
broker_keys_on_line(broker_keys_t *self, void *worker, const char *wname,
                    const dv_keyitem_t *in, int64_t now)
{
    s_key_t *k = s_find(self, in->hash.ptr, in->hash.len);
    if (!k && self->n >= BROKER_KEYS_MAX)
        return DV_ETOOBIG;
    if (!k && !(k = s_add(self, in->hash.ptr, in->hash.len)))
        return DV_ENOMEM;
    if (in->id.len > 0 && in->id.len < sizeof k->id) {
        memcpy(k->id, in->id.ptr, in->id.len);
        k->id[in->id.len] = '\0';
    }
    s_holder_t *h = s_holder(k, worker);
    if (!h) {
        h = calloc(1, sizeof *h);
        if (!h || !(h->name = strdup(wname))) {
            free(h);
            return DV_ENOMEM;
        }
        h->worker = worker;
        h->next = k->holders;
        k->holders = h;
        h->out = true; /* it learns the key's state at once */
    }
    if (in->rpm != h->rpm || in->tpm != h->tpm ||
        (in->window_ms > 0 && in->window_ms != h->window_ms)) {
        if (in->rpm > 0 || in->tpm > 0 || in->window_ms > 0) {
            h->rpm = in->rpm;
            h->tpm = in->tpm;
            if (in->window_ms > 0)
                h->window_ms = in->window_ms;
            s_limits(k);
        }
    }
    int rc = s_ev_push(k, now, in->recent, 0, 0);
    h->want = in->want;
    int sent = s_clamp_sub(&h->unsent, in->sent);
    h->unended += sent;
    h->requests += in->sent;
    k->requests += in->sent;
    s_clamp_sub(&h->unsent, in->returned);
    s_clamp_sub(&h->unended, in->done);
    if (in->done > 0 || in->tokens > 0) {
        if (rc == DV_OK)
            rc = s_ev_push(k, now, in->done, in->ok, in->tokens);
        if (in->tokens > 0 && in->done > 0) {
            double per = (double)in->tokens / in->done;
            k->avg_tokens =
                k->avg_tokens > 0 ? 0.8 * k->avg_tokens + 0.2 * per : per;
        }
    }
    if (in->done > 0 || in->returned > 0)
        h->probing = false;
    k->ok += in->ok;
    if (k->learning)
        k->learn_ok += in->ok;
    k->limited += in->limited;
    k->errors += in->errors;
    if ((in->ok > 0 || in->limited > 0) && !k->proven) {
        k->proven = true;
        k->dirty = true;
    }
    if (in->ok > 0 && k->disabled) {
        /* A probe answered 2xx: the key works again. */
        s_enable(k, "probe");
    }
    if (in->disabled > 0)
        s_disable(k, wname, in->disabled, now);
    if (in->limited > 0)
        s_cool(k, wname, in->cool_ms, now);
    return rc;
}

/* ---- grants ---------------------------------------------------------------- */

/* Requests the key's budgets allow to grant now (INT32_MAX: no limit). */
static int
s_available(const s_key_t *k, int outstanding)
{
    if (!k->proven)
        return outstanding == 0 ? 1 : 0;
    int64_t avail = INT32_MAX;
    int limit = s_limit(k);
    if (limit > 0)
        avail = limit - k->win_n - outstanding;
    if (k->tpm > 0) {
        if (k->avg_tokens <= 0) {
            if (outstanding > 0)
                avail = 0;
            else if (avail > 1)
                avail = 1;
        } else {
            double left =
                (double)(k->tpm - k->win_tokens) - outstanding * k->avg_tokens;
            int64_t by_tokens = left > 0 ? (int64_t)(left / k->avg_tokens) : 0;
            if (by_tokens < avail)
                avail = by_tokens;
        }
    }
    return avail < 0 ? 0 : (int)avail;
}

/* Most a holder holds at once: about ttl's share of the limit. */
static int
s_chunk(const broker_keys_t *self, const s_key_t *k)
{
    int limit = s_limit(k);
    if (limit == 0)
        return S_CHUNK_UNLIMITED;
    int64_t c =
        ((int64_t)limit * self->cfg.ttl_ms + k->window_ms - 1) / k->window_ms;
    return c < 1 ? 1 : c > S_CHUNK_UNLIMITED ? S_CHUNK_UNLIMITED : (int)c;
}

static void
s_grant(broker_keys_t *self, s_key_t *k, int64_t now)
{
    if (k->disabled) {
        if (self->cfg.probe_ms <= 0 ||
            now - (k->disabled_ms > k->last_probe ? k->disabled_ms
                                                  : k->last_probe) <
                self->cfg.probe_ms)
            return;
        for (s_holder_t *h = k->holders; h; h = h->next)
            if (h->probing)
                return;
        for (s_holder_t *h = k->holders; h; h = h->next) {
            if (h->want > 0 && h->unsent == 0) {
                h->unsent = 1;
                h->grant_out = 1;
                h->probe_out = h->probing = h->out = true;
                k->last_probe = now;
                dv_log(DV_INFO, "broker.key_probe", DV_STR("key", k->id),
                       DV_STR("hash", k->hash), DV_STR("worker", h->name));
                return;
            }
        }
        return;
    }
    if (k->cool_until > now)
        return;
    int avail = s_available(k, s_outstanding(k));
    int chunk = s_chunk(self, k);
    int nh = 0;
    for (s_holder_t *h = k->holders; h; h = h->next)
        nh++;
    if (nh == 0)
        return;
    /* Round robin from a holder that moves on each flush, so a scarce
     * budget is shared. */
    int start = k->rr++ % nh;
    s_holder_t *h = k->holders;
    for (int i = 0; i < start; i++)
        h = h->next;
    for (int i = 0; i < nh; i++, h = h->next ? h->next : k->holders) {
        int need = h->want - h->unsent;
        if (need > chunk - h->unsent)
            need = chunk - h->unsent;
        if (need <= 0)
            continue;
        if (avail <= 0) {
            k->starved_ms = now;
            break;
        }
        int g = need < avail ? need : avail;
        if (g < h->want - h->unsent)
            k->starved_ms = now;
        h->unsent += g;
        h->grant_out += g;
        h->out = true;
        avail -= g;
    }
}

/* Additive increase: after probe_windows windows (2 at first) without a
 * 429 in which grants waited for budget, the learned limit grows by 5% (at
 * least 1). */
static int64_t
s_probe_every(const s_key_t *k)
{
    return (k->probe_windows < 2 ? 2 : k->probe_windows) * k->window_ms;
}

static void
s_probe_up(s_key_t *k, int64_t now)
{
    if (k->learned <= 0 || k->disabled || k->cool_until > now || k->learning ||
        now - k->learned_ms < s_probe_every(k) ||
        now - k->starved_ms > k->window_ms)
        return;
    int step = k->learned / 20 > 1 ? k->learned / 20 : 1;
    int was = k->learned;
    k->learned += step;
    if (k->rpm > 0 && k->learned >= k->rpm)
        k->learned = 0;
    k->learned_ms = now;
    k->dirty = true;
    dv_log(DV_INFO, "broker.key_learned", DV_STR("key", k->id),
           DV_STR("hash", k->hash), DV_INT("limit", k->learned),
           DV_INT("was", was), DV_INT("rpm", k->rpm));
}

typedef struct {
    void *worker;
    dv_keyitem_t item;
} s_out_t;

static int
s_out_cmp(const void *a, const void *b)
{
    const s_out_t *x = a, *y = b;
    return x->worker < y->worker ? -1 : x->worker > y->worker;
}

void
broker_keys_flush(broker_keys_t *self, int64_t now)
{
    int nout = 0;
    for (int i = 0; i < self->n; i++) {
        s_key_t *k = self->keys[i];
        s_ev_expire(k, now);
        s_learn(k, now);
        s_probe_up(k, now);
        s_grant(self, k, now);
        if (k->dirty && self->cfg.save) {
            broker_key_state_t st = {
                .hash = k->hash,
                .id = k->id,
                .cool_until_ms = k->cool_until > now ? k->cool_until : 0,
                .disabled_status = k->disabled,
                .disabled_ms = k->disabled_ms,
                .learned_limit = k->learned,
                .learned_ms = k->learned_ms,
                .proven = k->proven,
                .updated_ms = now,
            };
            self->cfg.save(self->cfg.arg, &st);
        }
        k->dirty = false;
        for (const s_holder_t *h = k->holders; h; h = h->next)
            nout += h->out;
    }
    if (nout == 0 || !self->cfg.send)
        return;
    s_out_t *out = calloc((size_t)nout, sizeof *out);
    if (!out)
        return; /* the lines stay due; the next flush tries again */
    int n = 0;
    for (int i = 0; i < self->n; i++) {
        s_key_t *k = self->keys[i];
        for (s_holder_t *h = k->holders; h; h = h->next) {
            if (!h->out)
                continue;
            dv_keyitem_t *it = &out[n].item;
            out[n++].worker = h->worker;
            it->hash = dv_str(k->hash);
            it->id = dv_str(k->id);
            it->grant = h->grant_out;
            it->ttl_ms = h->grant_out > 0 ? self->cfg.ttl_ms : 0;
            it->cool_ms = k->cool_until > now ? k->cool_until - now : 0;
            it->disabled = k->disabled;
            it->limit = s_limit(k);
            it->revoke = h->revoke_out;
            it->probe = h->probe_out;
            h->out = h->revoke_out = h->probe_out = false;
            h->grant_out = 0;
        }
    }
    qsort(out, (size_t)n, sizeof *out, s_out_cmp);
    dv_keyitem_t *items = malloc((size_t)n * sizeof *items);
    if (items) {
        for (int i = 0; i < n;) {
            int j = i;
            while (j < n && out[j].worker == out[i].worker) {
                items[j - i] = out[j].item;
                j++;
            }
            self->cfg.send(self->cfg.arg, out[i].worker, items,
                           (uint32_t)(j - i));
            i = j;
        }
    }
    free(items);
    free(out);
}

int64_t
broker_keys_next_deadline(const broker_keys_t *self, int64_t now)
{
    int64_t at = INT64_MAX;
    for (int i = 0; i < self->n; i++) {
        const s_key_t *k = self->keys[i];
        bool wanting = false;
        for (const s_holder_t *h = k->holders; h; h = h->next)
            wanting |= h->want > h->unsent;
        if (!wanting)
            continue;
        if (k->disabled) {
            if (self->cfg.probe_ms > 0) {
                int64_t base = k->disabled_ms > k->last_probe ? k->disabled_ms
                                                              : k->last_probe;
                if (base + self->cfg.probe_ms < at)
                    at = base + self->cfg.probe_ms;
            }
            continue;
        }
        if (k->cool_until > now) {
            if (k->cool_until < at)
                at = k->cool_until;
            continue;
        }
        if (k->learning)
            at = now;
        if (k->ev_len > 0) {
            int64_t t = k->ev[k->ev_head].t + k->window_ms;
            if (t < at)
                at = t;
        }
        if (k->learned > 0 && k->learned_ms + s_probe_every(k) < at)
            at = k->learned_ms + s_probe_every(k);
    }
    return at < now ? now : at;
}

/* ---- the "keys" verb ----------------------------------------------------- */

static void
s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str_with_body(pk, s, n);
}

static void
s_pack_kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
    s_pack_str(pk, k);
    msgpack_pack_int64(pk, v);
}

static const char *
s_state(const s_key_t *k, int64_t now)
{
    if (k->disabled)
        return "disabled";
    if (k->cool_until > now)
        return "cooling";
    return k->proven ? "ok" : "unproven";
}

int
broker_keys_describe(broker_keys_t *self, int64_t now, msgpack_packer *pk)
{
    int64_t all = 0;
    for (int i = 0; i < self->n; i++) {
        s_ev_expire(self->keys[i], now);
        all += self->keys[i]->win_n;
    }
    msgpack_pack_map(pk, 2);
    s_pack_kv_int(pk, "now", now);
    s_pack_str(pk, "keys");
    msgpack_pack_array(pk, (size_t)self->n);
    for (int i = 0; i < self->n; i++) {
        const s_key_t *k = self->keys[i];
        int nh = 0;
        for (const s_holder_t *h = k->holders; h; h = h->next)
            nh++;
        msgpack_pack_map(pk, 18 + (k->conflict[0] != '\0'));
        s_pack_str(pk, "id");
        s_pack_str(pk, k->id);
        s_pack_str(pk, "hash");
        s_pack_str(pk, k->hash);
        s_pack_str(pk, "state");
        s_pack_str(pk, s_state(k, now));
        s_pack_kv_int(pk, "rpm", k->rpm);
        s_pack_kv_int(pk, "tpm", k->tpm);
        s_pack_kv_int(pk, "window", k->window_ms);
        s_pack_kv_int(pk, "limit", s_limit(k));
        s_pack_kv_int(pk, "learned", k->learned);
        s_pack_kv_int(pk, "requests", k->win_n);
        s_pack_kv_int(pk, "tokens", k->win_tokens);
        s_pack_kv_int(pk, "in_flight", s_outstanding(k));
        s_pack_kv_int(pk, "ok", k->ok);
        s_pack_kv_int(pk, "limited", k->limited);
        s_pack_kv_int(pk, "errors", k->errors);
        s_pack_kv_int(pk, "cool",
                      k->cool_until > now ? k->cool_until - now : 0);
        s_pack_kv_int(pk, "disabled", k->disabled);
        s_pack_str(pk, "share");
        msgpack_pack_double(pk, all > 0 ? (double)k->win_n / (double)all : 0);
        s_pack_str(pk, "workers");
        msgpack_pack_array(pk, (size_t)nh);
        for (const s_holder_t *h = k->holders; h; h = h->next) {
            msgpack_pack_map(pk, 2);
            s_pack_str(pk, "name");
            s_pack_str(pk, h->name);
            s_pack_kv_int(pk, "requests", h->requests);
        }
        if (k->conflict[0]) {
            s_pack_str(pk, "conflict");
            s_pack_str(pk, k->conflict);
        }
    }
    return DV_OK;
}

int
broker_keys_enable(broker_keys_t *self, const char *name, int64_t now,
                   const char **was, const char **id, const char **hash,
                   bool *ambiguous, char *why, size_t why_size)
{
    *ambiguous = false;
    s_key_t *found = NULL;
    int matches = 0;
    for (int i = 0; i < self->n; i++) {
        s_key_t *k = self->keys[i];
        if (strcmp(k->hash, name) == 0) {
            found = k;
            matches = 1;
            break;
        }
        if (strcmp(k->id, name) == 0) {
            found = k;
            matches++;
        }
    }
    if (matches == 0) {
        dv_err_set(why, why_size, "no API key %s (drover keys lists them)",
                   name);
        return DV_EPROTO;
    }
    if (matches > 1) {
        *ambiguous = true;
        dv_err_set(why, why_size,
                   "%d keys have the id %s: name the key by its hash", matches,
                   name);
        return DV_EPROTO;
    }
    *was = s_state(found, now);
    *id = found->id;
    *hash = found->hash;
    s_enable(found, "operator");
    return DV_OK;
}
