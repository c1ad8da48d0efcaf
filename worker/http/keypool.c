#include "keypool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ring entry of a slot whose request is still in flight. */
#define S_IN_FLIGHT INT64_MAX
/* Ring entry of a slot never used: far enough in the past, and far enough
 * from INT64_MIN that adding the window cannot overflow. */
#define S_FREE (INT64_MIN / 4)

typedef struct {
    char *secret; /* NULL for the pool without keys */
    size_t secret_len;
    char id[KEYPOOL_ID_MAX + 1]; /* "key-N", or the entry's id */
    char hash[9];                /* SHA-256 prefix, hex */
    bool disabled;
    int disabled_status; /* the 401/403 that disabled it */
    int64_t cool_until;  /* mono ms; cooling while > now */
    int consecutive_429; /* 429s since the last 2xx */
    bool proven;         /* answered 2xx or 429 at least once */
    int in_flight;       /* requests acquired, not finished */
    int rpm;             /* requests per window; 0 = no limit */
    int64_t tpm;         /* tokens per window, told the broker; 0 = none */
    bool own_tpm;        /* tpm is the key's own, not the pool's */
    int64_t *ring;       /* end times of the last rpm requests */
    int head;            /* oldest entry: the next to be reused */
    int64_t requests, ok, rate_limited, errors;
    /* fleet mode */
    int credit;           /* granted by the broker, not yet spent */
    int64_t credit_until; /* mono ms the grant lapses */
    bool probe;           /* the credit is a probe of a disabled key */
    int unended;          /* spent, request not ended (this session) */
    bool declared;        /* told the broker its limits this session */
    int last_want;        /* the want of the last line */
    /* what the next line reports */
    int r_sent, r_done, r_returned, r_ok, r_limited, r_errors;
    int64_t r_tokens, r_cool;
    int r_disabled;
} s_key_t;

struct keypool_t {
    s_key_t *keys;
    int n;
    int cursor; /* round-robin: where the next search starts */
    int64_t window_ms;
    bool fleet;
};

/* ---- SHA-256 (FIPS 180-4), only for the short key hash ------------------ */

static const uint32_t s_k256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t
s_ror(uint32_t x, int n)
{
    return (x >> n) | (x << (32 - n));
}

static void
s_sha256_block(uint32_t h[8], const unsigned char *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 =
            s_ror(w[i - 15], 7) ^ s_ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 =
            s_ror(w[i - 2], 17) ^ s_ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5],
             g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (s_ror(e, 6) ^ s_ror(e, 11) ^ s_ror(e, 25)) +
                      ((e & f) ^ (~e & g)) + s_k256[i] + w[i];
        uint32_t t2 = (s_ror(a, 2) ^ s_ror(a, 13) ^ s_ror(a, 22)) +
                      ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

void
keypool_short_hash(const void *data, size_t len, char out[9])
{
    uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    const unsigned char *p = data;
    size_t left = len;
    while (left >= 64) {
        s_sha256_block(h, p);
        p += 64;
        left -= 64;
    }
    /* The tail, the 0x80 marker and the bit length, in one or two blocks. */
    unsigned char tail[128] = { 0 };
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t tlen = left + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tlen - 1 - i] = (unsigned char)(bits >> (8 * i));
    s_sha256_block(h, tail);
    if (tlen == 128)
        s_sha256_block(h, tail + 64);
    snprintf(out, 9, "%08x", h[0]);
}

/* ---- the pool ------------------------------------------------------------ */

keypool_t *
keypool_new_keys(const keypool_key_t *keys, int nkeys, int rpm)
{
    if (rpm < 0 || rpm > KEYPOOL_RPM_MAX || nkeys < 0)
        return NULL;
    for (int i = 0; i < nkeys; i++)
        if (keys[i].rpm > KEYPOOL_RPM_MAX ||
            (keys[i].id && strlen(keys[i].id) > KEYPOOL_ID_MAX))
            return NULL;
    keypool_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->window_ms = KEYPOOL_WINDOW_MS;
    self->n = nkeys > 0 ? nkeys : 1;
    self->keys = calloc((size_t)self->n, sizeof *self->keys);
    if (!self->keys)
        goto fail;
    for (int i = 0; i < self->n; i++) {
        s_key_t *k = &self->keys[i];
        k->rpm = rpm;
        if (nkeys > 0) {
            k->secret_len = strlen(keys[i].secret);
            k->secret = malloc(k->secret_len + 1);
            if (!k->secret)
                goto fail;
            memcpy(k->secret, keys[i].secret, k->secret_len + 1);
            if (keys[i].id)
                snprintf(k->id, sizeof k->id, "%s", keys[i].id);
            else
                snprintf(k->id, sizeof k->id, "key-%d", i + 1);
            keypool_short_hash(k->secret, k->secret_len, k->hash);
            if (keys[i].rpm >= 0)
                k->rpm = keys[i].rpm;
            if (keys[i].tpm >= 0) {
                k->tpm = keys[i].tpm;
                k->own_tpm = true;
            }
        } else {
            snprintf(k->id, sizeof k->id, "none");
            snprintf(k->hash, sizeof k->hash, "00000000");
        }
        if (k->rpm > 0) {
            k->ring = malloc((size_t)k->rpm * sizeof *k->ring);
            if (!k->ring)
                goto fail;
            for (int s = 0; s < k->rpm; s++)
                k->ring[s] = S_FREE;
        }
    }
    return self;
fail:
    keypool_destroy(&self);
    return NULL;
}

keypool_t *
keypool_new(const char *const *keys, int nkeys, int rpm)
{
    if (nkeys < 0)
        return NULL;
    keypool_key_t *ks = NULL;
    if (nkeys > 0 && !(ks = calloc((size_t)nkeys, sizeof *ks)))
        return NULL;
    for (int i = 0; i < nkeys; i++)
        ks[i] = (keypool_key_t){ keys[i], NULL, -1, -1 };
    keypool_t *self = keypool_new_keys(ks, nkeys, rpm);
    free(ks);
    return self;
}

void
keypool_destroy(keypool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    keypool_t *self = *self_p;
    for (int i = 0; self->keys && i < self->n; i++) {
        s_key_t *k = &self->keys[i];
        if (k->secret) {
            /* Not left behind in freed memory (core dumps, heap reuse). */
            explicit_bzero(k->secret, k->secret_len);
            free(k->secret);
        }
        free(k->ring);
    }
    free(self->keys);
    free(self);
    *self_p = NULL;
}

int
keypool_size(const keypool_t *self)
{
    return self->n;
}

const char *
keypool_id(const keypool_t *self, int i)
{
    return self->keys[i].id;
}

const char *
keypool_hash(const keypool_t *self, int i)
{
    return self->keys[i].hash;
}

const char *
keypool_secret(const keypool_t *self, int i)
{
    return self->keys[i].secret;
}

/* Whether key k may send now, as far as the local rules say (disabled,
 * cooldown, one request at a time before it is proven, the rate limit);
 * if not, lowers *ready to when it may. */
static bool
s_usable(const keypool_t *self, const s_key_t *k, int64_t now, int64_t *ready,
         bool *all_cooling)
{
    if (k->cool_until > now) {
        if (k->cool_until < *ready)
            *ready = k->cool_until;
        return false;
    }
    *all_cooling = false;
    if (!k->proven && k->in_flight > 0) {
        if (KEYPOOL_AFTER_FINISH < *ready)
            *ready = KEYPOOL_AFTER_FINISH;
        return false;
    }
    if (k->rpm > 0) {
        int64_t t = k->ring[k->head];
        int64_t free_at =
            t == S_IN_FLIGHT ? KEYPOOL_AFTER_FINISH : t + self->window_ms;
        if (free_at > now) {
            if (free_at < *ready)
                *ready = free_at;
            return false;
        }
    }
    return true;
}

/* In fleet mode: whether key k holds a grant it may spend now. */
static bool
s_granted(const s_key_t *k, int64_t now, int64_t *ready)
{
    if (k->credit > 0 && k->credit_until > now)
        return true;
    if (KEYPOOL_AFTER_GRANT < *ready)
        *ready = KEYPOOL_AFTER_GRANT;
    return false;
}

int
keypool_acquire(keypool_t *self, int64_t now, int *slot, int64_t *ready_at,
                bool *cooling)
{
    int64_t ready = INT64_MAX;
    bool any = false, all_cooling = true;
    int best = -1;
    for (int n = 0; n < self->n; n++) {
        int i = (self->cursor + n) % self->n;
        s_key_t *k = &self->keys[i];
        if (k->disabled && !(self->fleet && k->probe && k->credit > 0))
            continue;
        any = true;
        if (k->disabled) {
            /* A probe: the broker's one request to see if it works again. */
            all_cooling = false;
        } else if (!s_usable(self, k, now, &ready, &all_cooling)) {
            continue;
        }
        if (self->fleet && !s_granted(k, now, &ready))
            continue;
        /* Round robin alone; in fleet mode the key with the most grants
         * left (the most budget), the first in round-robin order on a
         * tie. */
        if (best < 0 || (self->fleet && k->credit > self->keys[best].credit))
            best = i;
        if (!self->fleet)
            break;
    }
    if (best < 0) {
        *ready_at = any ? ready : INT64_MAX;
        *cooling = any && all_cooling;
        return -1;
    }
    s_key_t *k = &self->keys[best];
    if (k->rpm > 0) {
        *slot = k->head;
        k->ring[k->head] = S_IN_FLIGHT;
        k->head = (k->head + 1) % k->rpm;
    } else {
        *slot = 0;
    }
    k->requests++;
    k->in_flight++;
    if (self->fleet) {
        k->credit--;
        k->r_sent++;
        k->unended++;
        if (k->credit == 0)
            k->probe = false;
    }
    self->cursor = (best + 1) % self->n;
    return best;
}

void
keypool_finish(keypool_t *self, int i, int slot, int64_t now)
{
    s_key_t *k = &self->keys[i];
    if (k->rpm > 0 && slot >= 0 && slot < k->rpm)
        k->ring[slot] = now;
    if (k->in_flight > 0)
        k->in_flight--;
    if (k->unended > 0) {
        k->unended--;
        k->r_done++;
    }
}

void
keypool_unacquire(keypool_t *self, int i, int slot)
{
    s_key_t *k = &self->keys[i];
    if (k->rpm > 0 && slot >= 0 && slot < k->rpm) {
        k->ring[slot] = S_FREE;
        k->head = slot;
    }
    k->requests--;
    if (k->in_flight > 0)
        k->in_flight--;
    if (self->fleet && k->unended > 0) {
        k->unended--;
        k->r_sent--;
        k->credit++;
    }
}

void
keypool_ok(keypool_t *self, int i)
{
    self->keys[i].ok++;
    self->keys[i].r_ok++;
    self->keys[i].consecutive_429 = 0;
    self->keys[i].proven = true;
    if (self->keys[i].disabled && self->fleet) {
        /* A probe came back 2xx: usable again (the broker hears it). */
        self->keys[i].disabled = false;
        self->keys[i].disabled_status = 0;
    }
}

int64_t
keypool_rate_limited(keypool_t *self, int i, int64_t now,
                     int64_t retry_after_ms)
{
    s_key_t *k = &self->keys[i];
    k->rate_limited++;
    k->proven = true;
    if (k->consecutive_429 < 30)
        k->consecutive_429++;
    int64_t cd = retry_after_ms;
    if (cd < 0) {
        cd = 1000;
        for (int n = 1; n < k->consecutive_429 && cd < KEYPOOL_BACKOFF_MAX_MS;
             n++)
            cd *= 2;
        if (cd > KEYPOOL_BACKOFF_MAX_MS)
            cd = KEYPOOL_BACKOFF_MAX_MS;
    }
    if (now + cd > k->cool_until)
        k->cool_until = now + cd;
    k->r_limited++;
    if (k->cool_until - now > k->r_cool)
        k->r_cool = k->cool_until - now;
    return k->cool_until - now;
}

bool
keypool_disable(keypool_t *self, int i, int http_status)
{
    s_key_t *k = &self->keys[i];
    k->errors++;
    k->r_disabled = http_status;
    if (k->disabled)
        return false;
    k->disabled = true;
    k->disabled_status = http_status;
    return true;
}

void
keypool_error(keypool_t *self, int i)
{
    self->keys[i].errors++;
    self->keys[i].r_errors++;
}

keypool_state_t
keypool_state(const keypool_t *self, int i, int64_t now)
{
    const s_key_t *k = &self->keys[i];
    if (k->disabled)
        return KEYPOOL_DISABLED;
    return k->cool_until > now ? KEYPOOL_COOLING : KEYPOOL_OK;
}

/* Requests key k may send at now: the free slots from the oldest on. */
static int
s_tokens(const keypool_t *self, const s_key_t *k, int64_t now)
{
    if (k->rpm == 0)
        return -1;
    int n = 0;
    for (int s = 0; s < k->rpm; s++) {
        int64_t t = k->ring[(k->head + s) % k->rpm];
        if (t == S_IN_FLIGHT || t + self->window_ms > now)
            break;
        n++;
    }
    return n;
}

void
keypool_stats(const keypool_t *self, int i, int64_t now, keypool_stats_t *st)
{
    const s_key_t *k = &self->keys[i];
    st->id = k->id;
    st->hash = k->hash;
    st->state = keypool_state(self, i, now);
    st->requests = k->requests;
    st->ok = k->ok;
    st->rate_limited = k->rate_limited;
    st->errors = k->errors;
    st->cooldown_until = st->state == KEYPOOL_COOLING ? k->cool_until : 0;
    st->disabled_status = k->disabled ? k->disabled_status : 0;
    st->tokens = s_tokens(self, k, now);
}

bool
keypool_all_disabled(const keypool_t *self)
{
    for (int i = 0; i < self->n; i++)
        if (!self->keys[i].disabled)
            return false;
    return true;
}

char *
keypool_explain(const keypool_t *self, int64_t now, char *buf, size_t size)
{
    size_t off = 0;
#define S_PUT(...)                                                             \
    do {                                                                       \
        if (off < size) {                                                      \
            int w_ = snprintf(buf + off, size - off, __VA_ARGS__);             \
            off += w_ > 0 ? (size_t)w_ : 0;                                    \
        }                                                                      \
    } while (0)
    if (size)
        buf[0] = '\0';
    if (keypool_all_disabled(self)) {
        if (self->n == 1)
            S_PUT("the only API key is disabled (401/403): %s %d",
                  self->keys[0].id, self->keys[0].disabled_status);
        else
            S_PUT("all %d API keys are disabled (401/403):", self->n);
        for (int i = 0; self->n > 1 && i < self->n; i++)
            S_PUT("%s %s %d", i ? "," : "", self->keys[i].id,
                  self->keys[i].disabled_status);
        return buf;
    }
    S_PUT("no API key can be used now:");
    int listed = 0;
    for (int i = 0; i < self->n; i++) {
        const s_key_t *k = &self->keys[i];
        const char *sep = listed++ ? "," : "";
        if (k->disabled) {
            S_PUT("%s %s is disabled (%d)", sep, k->id, k->disabled_status);
        } else if (k->cool_until > now) {
            S_PUT("%s %s cools down for %.1f s more after a 429", sep, k->id,
                  (double)(k->cool_until - now) / 1000.0);
        } else if (k->rpm > 0) {
            int64_t t = k->ring[k->head];
            if (t == S_IN_FLIGHT)
                S_PUT("%s %s has %d requests in flight, its limit per "
                      "minute",
                      sep, k->id, k->rpm);
            else
                S_PUT("%s %s has used its %d requests per minute (the next "
                      "in %.1f s)",
                      sep, k->id, k->rpm,
                      (double)(t + self->window_ms - now) / 1000.0);
        } else {
            S_PUT("%s %s is usable", sep, k->id);
        }
    }
#undef S_PUT
    return buf;
}

size_t
keypool_redact(const keypool_t *self, char *buf, size_t len)
{
    for (int i = 0; i < self->n; i++) {
        const s_key_t *k = &self->keys[i];
        if (!k->secret || k->secret_len == 0)
            continue;
        size_t idl = strlen(k->id);
        char *p = buf;
        for (;;) {
            char *hit =
                memmem(p, len - (size_t)(p - buf), k->secret, k->secret_len);
            if (!hit)
                break;
            if (idl <= k->secret_len) {
                memcpy(hit, k->id, idl);
                memmove(hit + idl, hit + k->secret_len,
                        len - (size_t)(hit - buf) - k->secret_len + 1);
                len -= k->secret_len - idl;
                p = hit + idl;
            } else {
                memset(hit, '*', k->secret_len);
                p = hit + k->secret_len;
            }
        }
    }
    return len;
}

/* ---- fleet mode ------------------------------------------------------------ */

void
keypool_set_window(keypool_t *self, int64_t window_ms)
{
    if (window_ms > 0)
        self->window_ms = window_ms;
}

void
keypool_set_tpm(keypool_t *self, int64_t tpm)
{
    for (int i = 0; i < self->n; i++)
        if (!self->keys[i].own_tpm)
            self->keys[i].tpm = tpm > 0 ? tpm : 0;
}

void
keypool_fleet(keypool_t *self, bool on)
{
    self->fleet = on;
}

void
keypool_fleet_reset(keypool_t *self)
{
    for (int i = 0; i < self->n; i++) {
        s_key_t *k = &self->keys[i];
        k->credit = 0;
        k->probe = false;
        k->unended = 0;
        k->declared = false;
        k->last_want = 0;
        k->r_sent = k->r_done = k->r_returned = 0;
        k->r_ok = k->r_limited = k->r_errors = 0;
        k->r_tokens = 0;
        /* A cooldown or a 401/403 not yet reported still is. */
    }
}

void
keypool_tokens(keypool_t *self, int i, int64_t tokens)
{
    if (tokens > 0)
        self->keys[i].r_tokens += tokens;
}

static s_key_t *
s_by_hash(keypool_t *self, dv_str_t hash)
{
    for (int i = 0; i < self->n; i++)
        if (self->keys[i].secret && dv_str_eq(hash, self->keys[i].hash))
            return &self->keys[i];
    return NULL;
}

/* Grants held and not spent go back to the broker. */
static void
s_return(s_key_t *k)
{
    k->r_returned += k->credit;
    k->credit = 0;
    k->probe = false;
}

bool
keypool_apply(keypool_t *self, const dv_keyitem_t *in, int64_t now)
{
    s_key_t *k = s_by_hash(self, in->hash);
    if (!k)
        return false;
    bool usable = false;
    if (in->revoke)
        s_return(k);
    /* The broker's cooldown is the fleet's: it may be longer than ours,
     * never makes ours shorter. */
    if (in->cool_ms > 0 && now + in->cool_ms > k->cool_until)
        k->cool_until = now + in->cool_ms;
    if (in->disabled > 0 && !k->disabled) {
        k->disabled = true;
        k->disabled_status = in->disabled;
        s_return(k);
    } else if (in->disabled == 0 && k->disabled && k->r_disabled == 0 &&
               !in->probe) {
        /* Enabled by an operator, or by a probe elsewhere. */
        k->disabled = false;
        k->disabled_status = 0;
        usable = true;
    }
    if (in->grant > 0) {
        if (k->credit_until <= now)
            s_return(k); /* lapsed: goes back with the next line */
        k->credit += in->grant;
        k->credit_until = now + (in->ttl_ms > 0 ? in->ttl_ms : 1000);
        k->probe = in->probe;
        usable = true;
    }
    return usable;
}

int
keypool_lines(keypool_t *self, int64_t now, int want, dv_keyitem_t *items,
              int max)
{
    int n = 0;
    for (int i = 0; i < self->n && n < max; i++) {
        s_key_t *k = &self->keys[i];
        if (!k->secret)
            continue; /* the pool without keys has nothing to share */
        if (k->credit > 0 && k->credit_until <= now)
            s_return(k);
        int w = want;
        bool report = k->r_sent || k->r_done || k->r_returned || k->r_ok ||
                      k->r_limited || k->r_errors || k->r_tokens ||
                      k->r_disabled;
        /* Ask when it wants more than it holds and said another want. */
        bool ask = w != k->last_want && (w > k->credit || k->last_want > w);
        if (!report && !ask && k->declared)
            continue;
        dv_keyitem_t *it = &items[n++];
        memset(it, 0, sizeof *it);
        it->hash = dv_str(k->hash);
        it->id = dv_str(k->id);
        if (!k->declared) {
            it->rpm = k->rpm;
            it->tpm = k->tpm;
            it->window_ms = self->window_ms;
            if (k->rpm > 0)
                for (int s = 0; s < k->rpm; s++) {
                    int64_t t = k->ring[s];
                    it->recent += t == S_IN_FLIGHT ||
                                  (t != S_FREE && t + self->window_ms > now);
                }
            k->declared = true;
        }
        it->want = w;
        it->sent = k->r_sent;
        it->done = k->r_done;
        it->returned = k->r_returned;
        it->ok = k->r_ok;
        it->limited = k->r_limited;
        it->errors = k->r_errors;
        it->tokens = k->r_tokens;
        it->cool_ms = k->r_limited ? k->r_cool : 0;
        it->disabled = k->r_disabled;
        k->last_want = w;
        k->r_sent = k->r_done = k->r_returned = 0;
        k->r_ok = k->r_limited = k->r_errors = 0;
        k->r_tokens = k->r_cool = 0;
        k->r_disabled = 0;
    }
    return n;
}

int64_t
keypool_next_expiry(const keypool_t *self)
{
    int64_t t = INT64_MAX;
    for (int i = 0; i < self->n; i++)
        if (self->keys[i].credit > 0 && self->keys[i].credit_until < t)
            t = self->keys[i].credit_until;
    return t;
}

int
keypool_credit(const keypool_t *self)
{
    int n = 0;
    for (int i = 0; i < self->n; i++)
        n += self->keys[i].credit;
    return n;
}
