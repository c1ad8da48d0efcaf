/* broker_keys - the fleet's API keys: one state per key, held by the
 * broker, whatever the workers and job types that use it (docs/keys.md).
 *
 * Workers name a key by its short hash (8 hex digits of its SHA-256) and
 * id, never by its text, in "keys" messages (dv_keyitem_t). For each key
 * the ledger keeps:
 *   - its limits: rpm and tpm per window, as the workers' key files say
 *     (the lowest of each wins, and a disagreement is shown), and the
 *     limit learned from 429s below them;
 *   - what went out: requests that ended, with their tokens, in the last
 *     window, and what is outstanding (granted and not yet sent, or sent
 *     and not yet ended);
 *   - its cooldown (a 429's Retry-After, or the worker's backoff) and its
 *     disabled state (a 401/403), both fleet-wide;
 * and hands each worker request allowances in small grants, like credit,
 * so that every grant fits the key's budget: the requests that ended
 * within the last window, plus everything outstanding, plus the new grant
 * never pass the limit. A request counts in the window from the moment
 * the broker hears it ended, which is never before the API received it,
 * so no window at the API holds more than the limit.
 *
 * A grant is good for ttl after it arrives; what a worker has not sent by
 * then it returns. A 429 or a 401/403 revokes every grant of the key at
 * once (workers return what they hold); requests already granted may still
 * go within that grace, none after. A worker that vanishes gives back what
 * it held unsent, and what it had in flight counts as ended then.
 *
 * Learned limit (additive increase, multiplicative decrease): when the
 * cooldown of a 429 that came under the key's working limit ends, the
 * working limit becomes the requests the API accepted in its window (the
 * 2xx in the window before the 429, and those in flight then: at least
 * 1), or 90% of the current limit if it accepted more. After two quiet
 * windows in which grants waited for budget, the limit grows by 5% (at
 * least 1) up to the configured one (then nothing learned is left); each
 * such probe that meets a 429 doubles the quiet windows the next one waits
 * for (at most 64).
 *
 * A key never seen to work (no 2xx or 429 yet) carries one request at a
 * time across the fleet, so a revoked key costs the fleet one request. A
 * disabled key is probed with one request every probe interval; a 2xx
 * enables it again, as does an operator (broker_keys_enable).
 *
 * Times are epoch ms passed in (cooldowns are stored and must mean the
 * same after a restart). Not thread-safe: the broker's loop owns it.
 */
#ifndef BROKER_KEYS_H
#define BROKER_KEYS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "broker_store.h"
#include "dv_proto.h"

#define BROKER_KEYS_TTL_DEFAULT_MS   1000
#define BROKER_KEYS_PROBE_DEFAULT_MS 300000
#define BROKER_KEYS_WINDOW_DEFAULT   60000
/* Most keys the ledger holds: lines about more are refused (a fleet has a
 * handful; this bounds what a misbehaving worker can make it keep). */
#define BROKER_KEYS_MAX 10000

typedef struct broker_keys_t broker_keys_t;

typedef struct {
    int64_t ttl_ms;   /* a grant's life at the worker */
    int64_t probe_ms; /* between probes of a disabled key; 0 = never */
    /* Sends items (n >= 1) to worker; called from broker_keys_flush. */
    void (*send)(void *arg, void *worker, const dv_keyitem_t *items,
                 uint32_t n);
    /* Stores a key's state (cooldown, disabled, learned, proven). */
    void (*save)(void *arg, const broker_key_state_t *st);
    void *arg;
} broker_keys_cfg_t;

/* NULL if out of memory. */
broker_keys_t *broker_keys_new(const broker_keys_cfg_t *cfg);
void broker_keys_destroy(broker_keys_t **self_p);

/* A stored state, at start (before any worker line). 0 or DV_ENOMEM. */
int broker_keys_restore(broker_keys_t *self, const broker_key_state_t *st);

/* One line from worker (its name wname) about one key, at now. 0, or
 * DV_ENOMEM (the line is dropped; the worker asks again), or DV_ETOOBIG
 * (a new key past BROKER_KEYS_MAX: dropped). */
int broker_keys_on_line(broker_keys_t *self, void *worker, const char *wname,
                        const dv_keyitem_t *in, int64_t now);

/* worker is gone (expired, bye, or said hello again: what it held is
 * void). Its unsent grants return; its requests in flight count as ended
 * now. */
void broker_keys_worker_gone(broker_keys_t *self, void *worker, int64_t now);

/* Grants what the budgets allow to the workers that want it, sends every
 * line due, saves every changed state. Once per loop pass. */
void broker_keys_flush(broker_keys_t *self, int64_t now);

/* The earliest epoch ms at which a flush may grant something new (a
 * request leaves a window, a cooldown ends, a probe is due), or
 * INT64_MAX. */
int64_t broker_keys_next_deadline(const broker_keys_t *self, int64_t now);

/* The "keys" verb's body (docs/keys.md): a map {now, keys: [...]}. Moves
 * each key's window up to now first (as the next flush would). */
int broker_keys_describe(broker_keys_t *self, int64_t now, msgpack_packer *pk);

/* An operator enables the key named by id or hash (cooldown and disabled
 * state cleared). Returns 0 with *was "disabled", "cooling" or "ok" and
 * the key's id and hash, DV_EPROTO with why when no key or several keys
 * have that name (ambiguous: why says so and *ambiguous is set). */
int broker_keys_enable(broker_keys_t *self, const char *name, int64_t now,
                       const char **was, const char **id, const char **hash,
                       bool *ambiguous, char *why, size_t why_size);

/* Keys known. */
int broker_keys_count(const broker_keys_t *self);

#endif
