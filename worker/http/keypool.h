/* keypool - a pool of API keys for the http handler: which key the next
 * request uses, and how fast each key may go.
 *
 * Keys are secrets. The pool is the only place that holds them; everything
 * that leaves it (logs, failures, metrics, messages) names a key by its id,
 * "key-N" (its position in the source, from 1) or the id its entry gives
 * (keypool_new_keys), and a short hash (the first
 * 8 hex digits of its SHA-256), never by its text.
 *
 * Choice: round-robin over the usable keys. A key is unusable while it is
 * disabled (the server answered 401 or 403: for good, in this process),
 * while it cools down (the server answered 429: for its Retry-After, or a
 * backoff of 1 s doubling per consecutive 429 up to 60 s), or while it has
 * no request left in its rate limit. A key not yet known to work (no 2xx
 * or 429 answer so far) carries one request at a time, so a revoked key
 * costs one request at start, not one per slot of the first burst.
 *
 * Rate limit (each key its own rpm and tpm with keypool_new_keys, else the
 * pool's): at most rpm requests in any 60 s window, as the server counts
 * them. A token bucket of capacity rpm refilled at rpm/60 per second would
 * let 2 x rpm through in the first minute (a full bucket plus a minute of
 * refill), which a server counting "requests in the last 60 s" answers with
 * 429s. So each key keeps the times of its last rpm requests in a ring, in
 * the order they were sent, and a new request may take the oldest entry's
 * place only 60 s after that request *ended*. A request reaches the server
 * between its start and its end, so any two requests rpm apart in sending
 * order arrive at least 60 s apart, whatever the latency.
 *
 * Fleet mode (keypool_fleet): the broker holds every key's fleet-wide
 * state (broker/broker_keys.h) and a key may carry only the requests it
 * granted. The pool asks for grants (keypool_lines: want), spends them
 * (acquire), returns what it did not spend within the grant's ttl or when
 * the broker revokes it, and reports what happened on each key (sent,
 * ended, 2xx, 429 with the cooldown it asks for, 401/403, tokens). Among
 * the keys with grants it takes the one with the most left, so load
 * follows the keys' remaining budgets. Local rules still hold on top: a
 * 429 cools the key here at once, before the broker has heard of it, and
 * nothing the broker says shortens that.
 *
 * Times are monotonic milliseconds passed in by the caller. Not thread-safe.
 */
#ifndef KEYPOOL_H
#define KEYPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dv_proto.h"

/* Length of the rate-limit window unless keypool_set_window says. */
#define KEYPOOL_WINDOW_MS 60000
/* Largest accepted rpm: the ring holds rpm entries per key. */
#define KEYPOOL_RPM_MAX 1000000
/* Cooldown after a 429 without Retry-After: 1 s, doubling, at most this. */
#define KEYPOOL_BACKOFF_MAX_MS 60000
/* keypool_acquire's ready_at when the only keys left wait for a request in
 * flight: one frees up KEYPOOL_WINDOW_MS after such a request ends. */
#define KEYPOOL_AFTER_FINISH (INT64_MAX - 1)

typedef struct keypool_t keypool_t;

typedef enum {
    KEYPOOL_OK,       /* usable, or only waiting for its rate limit */
    KEYPOOL_COOLING,  /* after a 429, until its cooldown ends */
    KEYPOOL_DISABLED, /* after a 401/403, for good */
} keypool_state_t;

/* What the metrics and the state dump show of one key. */
typedef struct {
    const char *id;   /* "key-N" */
    const char *hash; /* 8 hex digits */
    keypool_state_t state;
    int64_t requests;       /* requests sent with it */
    int64_t ok;             /* answered 2xx */
    int64_t rate_limited;   /* answered 429 */
    int64_t errors;         /* anything else: 401/403, 5xx, no answer */
    int64_t cooldown_until; /* monotonic ms; 0 when not cooling */
    int disabled_status;    /* the 401/403 that disabled it, else 0 */
    int tokens;             /* requests it may send now; -1: no limit */
} keypool_stats_t;

/* A pool of nkeys keys (copied), each allowed rpm requests a minute (0 = no
 * limit). With nkeys 0 the pool holds one key without a secret ("none"),
 * so requests that need no key go through the same rate limit. Returns
 * NULL if out of memory or rpm is out of range. */
keypool_t *keypool_new(const char *const *keys, int nkeys, int rpm);

/* Longest key id (an entry's "id" in a JSON Lines key file). */
#define KEYPOOL_ID_MAX 64

/* One key of keypool_new_keys. */
typedef struct {
    const char *secret;
    const char *id; /* NULL: "key-N", N its position from 1 */
    int rpm;        /* its requests per window; -1: the pool's rpm */
    int64_t tpm;    /* its tokens per window; -1: keypool_set_tpm's */
} keypool_key_t;

/* A pool of keys each with its own id and limits (copied); the rest as
 * keypool_new, whose rpm is the default for keys without their own.
 * NULL also if an id is longer than KEYPOOL_ID_MAX or a key's rpm is out
 * of range. */
keypool_t *keypool_new_keys(const keypool_key_t *keys, int nkeys, int rpm);

/* The window the rate limit counts in (default KEYPOOL_WINDOW_MS), and the
 * tokens per window the keys may use (0 = no limit; told to the broker,
 * which keeps the count; keys with their own tpm keep it). Before the
 * first acquire. */
void keypool_set_window(keypool_t *self, int64_t window_ms);
void keypool_set_tpm(keypool_t *self, int64_t tpm);

/* Overwrites the secrets with zeros and frees the pool. NULL-safe. */
void keypool_destroy(keypool_t **self_p);

/* Number of keys (1 for a pool without keys). */
int keypool_size(const keypool_t *self);

/* The id ("key-2") and short hash of key i; stable for the pool's life. */
const char *keypool_id(const keypool_t *self, int i);
const char *keypool_hash(const keypool_t *self, int i);

/* The secret of key i, to put in a request header and nowhere else. NULL
 * for the pool without keys. */
const char *keypool_secret(const keypool_t *self, int i);

/* Picks the next usable key and takes one request from its rate limit.
 * Returns the key's index and sets *slot (pass it to keypool_finish), or
 * -1 when no key may be used now; then *ready_at is the earliest time one
 * may be (INT64_MAX if every key is disabled; KEYPOOL_AFTER_FINISH when
 * that depends on requests still in flight), and *cooling is true when every
 * key that is not disabled is cooling down (as opposed to only being out
 * of requests for this minute). */
int keypool_acquire(keypool_t *self, int64_t now, int *slot, int64_t *ready_at,
                    bool *cooling);

/* The request sent with key i in slot ended (any way) at now: from now on
 * it counts in the key's window for KEYPOOL_WINDOW_MS. */
void keypool_finish(keypool_t *self, int i, int slot, int64_t now);

/* A request with key i was never sent after all: give its slot back. Only
 * for the request acquired last on that key. */
void keypool_unacquire(keypool_t *self, int i, int slot);

/* Outcomes of a request with key i. ok: 2xx, ends a run of 429s. A 2xx
 * or a 429 proves the key works. */
void keypool_ok(keypool_t *self, int i);

/* 429: key i cools down for retry_after_ms if >= 0, else for the backoff
 * (1 s doubling per consecutive 429, at most KEYPOOL_BACKOFF_MAX_MS).
 * Returns the cooldown applied, in ms. A 429 that arrives while the key
 * already cools longer does not shorten the cooldown. */
int64_t keypool_rate_limited(keypool_t *self, int i, int64_t now,
                             int64_t retry_after_ms);

/* 401/403: disables key i. Returns true the first time (log it then). */
bool keypool_disable(keypool_t *self, int i, int http_status);

/* Any other failure with key i (5xx, no answer): counted, nothing else. */
void keypool_error(keypool_t *self, int i);

/* State of key i at now. */
keypool_state_t keypool_state(const keypool_t *self, int i, int64_t now);

/* Fills *st for key i at now. */
void keypool_stats(const keypool_t *self, int i, int64_t now,
                   keypool_stats_t *st);

/* True when every key is disabled. */
bool keypool_all_disabled(const keypool_t *self);

/* Writes into buf a sentence saying why no key is usable at now, naming
 * keys by id, e.g. "all 3 API keys are disabled (401/403): key-1 401,
 * key-2 403, key-3 401" or "every usable API key is cooling down after a
 * 429: key-1 for 4.2 s more, key-2 for 0.8 s more (key-3 disabled: 401)".
 * Returns buf. */
char *keypool_explain(const keypool_t *self, int64_t now, char *buf,
                      size_t size);

/* ---- fleet mode ---------------------------------------------------------- */

/* keypool_acquire's ready_at when the keys wait for a grant from the
 * broker: its arrival (keypool_apply) is the time to look again. */
#define KEYPOOL_AFTER_GRANT (INT64_MAX - 2)

/* Turns fleet mode on (grants needed) or off. */
void keypool_fleet(keypool_t *self, bool on);

/* The broker (re)welcomed us: grants held are void, and every key is
 * declared again with the next lines. */
void keypool_fleet_reset(keypool_t *self);

/* Tokens a request with key i used (its response's usage). */
void keypool_tokens(keypool_t *self, int i, int64_t tokens);

/* Applies a line from the broker. Returns true if it gave this pool
 * something to use (a grant, an enabled key): look at waiting jobs. A line
 * about a key the pool does not hold is ignored (false). */
bool keypool_apply(keypool_t *self, const dv_keyitem_t *in, int64_t now);

/* Writes the lines due to the broker into items (at most max), with want
 * the requests the pool could start now; returns how many. Grants past
 * their ttl are returned here. */
int keypool_lines(keypool_t *self, int64_t now, int want, dv_keyitem_t *items,
                  int max);

/* The earliest monotonic ms at which a grant expires, or INT64_MAX. */
int64_t keypool_next_expiry(const keypool_t *self);

/* Requests granted and not yet spent, over all keys. */
int keypool_credit(const keypool_t *self);

/* Replaces every occurrence of any of the pool's secrets in buf (len
 * bytes, NUL-terminated) with its id, in place; a key shorter than its id
 * becomes asterisks instead. Returns the new length. For text that came
 * from outside, e.g. an error body that might echo a key. */
size_t keypool_redact(const keypool_t *self, char *buf, size_t len);

/* The first 8 hex digits of the SHA-256 of data, into out (9 bytes). */
void keypool_short_hash(const void *data, size_t len, char out[9]);

#endif
