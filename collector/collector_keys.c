/* collector_keys - the fleet's API keys as the broker holds them: the body
 * of its "keys.state" event (about once per broker heartbeat), validated
 * and kept as the latest one, for GET /api/keys (the fleet_keys verb) and
 * the drover_fleet_key_* families of /metrics.
 *
 * The body is a msgpack map (docs/collector.md, "Fleet keys"):
 *   {now, keys: [{id, hash, state, rpm, tpm, window, limit, learned,
 *                 requests, tokens, in_flight, ok, limited, errors, cool,
 *                 disabled, share, workers: [{name, requests}],
 *                 conflict?}]}
 * It is checked whole before it replaces the one kept: sizes first (bytes,
 * keys, workers, string lengths), then every member's type and range; id,
 * hash and state are required, a number left out is 0 (the broker omits
 * zeros), unknown members are dropped, and an (id, hash) pair listed twice
 * is refused (it would make two series of one name). A body that fails is
 * logged (once, until a good one comes) and ignored: the one kept stays.
 *
 * What is kept goes away when it is stale (no new body for 3 broker
 * heartbeats, measured between the last two bodies, and at least
 * COLLECTOR_FLEET_STALE_MS), and when the broker that sent it changes its
 * instance id (a restart: its counts began again). Views read it through
 * collector_keys_fleet(), which hides a stale one at once; the tick frees
 * it. With several brokers, the latest body of any of them is kept (a
 * group has one active broker).
 *
 * Loop thread only; nothing here blocks.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "collector_internal.h"
#include "dv_json.h"
#include "dv_log.h"

/* The known states, in the order /metrics lists them. */
const char *const collector_keys_states[COLLECTOR_FLEET_STATES] = {
    "ok", "cooling", "disabled", "unproven"
};

/* Integer members of a key, all >= 0 and 0 when left out. */
static const char *const s_ints[] = {
    "rpm",       "tpm", "window",  "limit",  "learned", "requests", "tokens",
    "in_flight", "ok",  "limited", "errors", "cool",    "disabled",
};
#define S_NINTS (sizeof s_ints / sizeof s_ints[0])

/* ---- checking ------------------------------------------------------------ */

/* A reason for a malformed body, with the path of the member. */
typedef struct {
    char *why;
    size_t size;
    int oom; /* the failure was memory, not the body */
} s_chk_t;

static int s_bad(s_chk_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
s_bad(s_chk_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, c->size, fmt, ap);
    va_end(ap);
    return -1;
}

static int
s_oom(s_chk_t *c)
{
    c->oom = 1;
    return s_bad(c, "out of memory");
}

/* A string member of min..max bytes that is a name (dv_name_check). Sets
 * *out to it, or NULL when absent and not required. */
static int
s_name(s_chk_t *c, const json_t *o, const char *path, const char *key,
       size_t min, size_t max, bool req, const char **out)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v && !req)
        return 0;
    if (!v)
        return s_bad(c, "%s.%s: required", path, key);
    size_t n = json_string_length(v);
    if (!json_is_string(v) || n < min || n > max)
        return s_bad(c, "%s.%s: must be a string of %zu..%zu bytes", path, key,
                     min, max);
    const char *s = json_string_value(v);
    const char *why = dv_name_check(s, n);
    if (why)
        return s_bad(c, "%s.%s: %s", path, key, why);
    *out = s;
    return 0;
}

/* An integer member >= 0, 0 when absent. */
static int
s_count(s_chk_t *c, const json_t *o, const char *path, const char *key,
        int64_t *out)
{
    const json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return s_bad(c, "%s.%s: must be a whole number >= 0", path, key);
    *out = json_integer_value(v);
    return 0;
}

static bool
s_hex(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') ||
              (*s >= 'A' && *s <= 'F')))
            return false;
    return true;
}

/* A state: a known one, or (from a newer broker) a short lowercase word,
 * kept as it is. */
static bool
s_state_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
            return false;
    return true;
}

/* The workers array of a key, checked and copied. */
static json_t *
s_workers(s_chk_t *c, const json_t *k, const char *path)
{
    const json_t *a = json_object_get(k, "workers");
    json_t *out = json_array();
    if (!out) {
        s_oom(c);
        return NULL;
    }
    if (!a)
        return out;
    if (!json_is_array(a) || json_array_size(a) > COLLECTOR_FLEET_WORKERS_MAX) {
        s_bad(c, "%s.workers: must be an array of at most %d", path,
              COLLECTOR_FLEET_WORKERS_MAX);
        json_decref(out);
        return NULL;
    }
    size_t i;
    const json_t *w;
    json_array_foreach(a, i, w)
    {
        char wpath[96];
        snprintf(wpath, sizeof wpath, "%s.workers[%zu]", path, i);
        const char *name;
        int64_t requests;
        if (!json_is_object(w)) {
            s_bad(c, "%s: must be a map", wpath);
            break;
        }
        if (s_name(c, w, wpath, "name", 1, DV_NAME_MAX, true, &name) ||
            s_count(c, w, wpath, "requests", &requests))
            break;
        if (json_array_append_new(out, json_pack("{s:s, s:I}", "name", name,
                                                 "requests",
                                                 (json_int_t)requests)) != 0) {
            s_oom(c);
            break;
        }
    }
    if (json_array_size(out) != json_array_size(a)) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* One key, checked and copied into a new object with the known members
 * only. NULL with c's reason. */
static json_t *
s_key(s_chk_t *c, const json_t *k, size_t idx)
{
    char path[32];
    snprintf(path, sizeof path, "keys[%zu]", idx);
    if (!json_is_object(k)) {
        s_bad(c, "%s: must be a map", path);
        return NULL;
    }
    const char *id, *hash, *state, *conflict;
    if (s_name(c, k, path, "id", 1, DV_NAME_MAX, true, &id) ||
        s_name(c, k, path, "hash", 1, 64, true, &hash) ||
        s_name(c, k, path, "state", 1, 32, true, &state) ||
        s_name(c, k, path, "conflict", 0, COLLECTOR_FLEET_TEXT_MAX, false,
               &conflict))
        return NULL;
    if (!s_hex(hash)) {
        s_bad(c, "%s.hash: must be hex digits", path);
        return NULL;
    }
    if (!s_state_ok(state)) {
        s_bad(c,
              "%s.state: must be a word such as ok, cooling, disabled, "
              "unproven",
              path);
        return NULL;
    }
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "id", id, "hash", hash, "state", state);
    if (!o) {
        s_oom(c);
        return NULL;
    }
    int rc = 0;
    for (size_t i = 0; i < S_NINTS && !rc; i++) {
        int64_t v;
        if (s_count(c, k, path, s_ints[i], &v)) {
            json_decref(o);
            return NULL;
        }
        rc |= json_object_set_new(o, s_ints[i], json_integer(v));
    }
    int64_t disabled = collector_state_json_int(o, "disabled", 0);
    if (!rc && disabled != 0 && (disabled < 100 || disabled > 599)) {
        s_bad(c, "%s.disabled: must be 0 or an HTTP status (100..599)", path);
        json_decref(o);
        return NULL;
    }
    const json_t *share = json_object_get(k, "share");
    double sh = share ? json_number_value(share) : 0;
    if (share &&
        (!json_is_number(share) || !isfinite(sh) || sh < 0 || sh > 1)) {
        s_bad(c, "%s.share: must be a number 0..1", path);
        json_decref(o);
        return NULL;
    }
    rc |= json_object_set_new(o, "share", json_real(sh));
    json_t *workers = rc ? NULL : s_workers(c, k, path);
    if (!workers) {
        if (rc)
            s_oom(c);
        json_decref(o);
        return NULL;
    }
    rc |= json_object_set_new(o, "workers", workers);
    if (conflict && *conflict)
        rc |= json_object_set_new(o, "conflict", json_string(conflict));
    if (rc) {
        s_oom(c);
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The body of a keys.state event, checked and copied: a new object {now,
 * keys}, or NULL with c's reason. */
static json_t *
s_body(s_chk_t *c, dv_str_t body)
{
    if (!body.ptr || !body.len) {
        s_bad(c, "no body");
        return NULL;
    }
    if (body.len > COLLECTOR_FLEET_BODY_MAX) {
        s_bad(c, "body of %" PRIu32 " bytes: at most %d", body.len,
              COLLECTOR_FLEET_BODY_MAX);
        return NULL;
    }
    char why[256] = "";
    json_t *in = dv_msgpack_to_json(body.ptr, body.len, why, sizeof why);
    if (!in) {
        if (!why[0]) /* no reason: an allocation failed */
            s_oom(c);
        else
            s_bad(c, "body: %s", why);
        return NULL;
    }
    json_t *out = NULL, *keys = NULL, *seen = NULL;
    const json_t *now = json_object_get(in, "now");
    const json_t *ks = json_object_get(in, "keys");
    if (!json_is_object(in)) {
        s_bad(c, "body: must be a map");
        goto done;
    }
    if (!json_is_integer(now) || json_integer_value(now) < 0) {
        s_bad(c, "now: must be epoch ms");
        goto done;
    }
    if (!json_is_array(ks) || json_array_size(ks) > COLLECTOR_FLEET_KEYS_MAX) {
        s_bad(c, "keys: must be an array of at most %d",
              COLLECTOR_FLEET_KEYS_MAX);
        goto done;
    }
    keys = json_array();
    /* (id, hash) pairs seen, to refuse one listed twice. */
    seen = json_object();
    if (!keys || !seen) {
        s_oom(c);
        goto done;
    }
    size_t i;
    const json_t *k;
    json_array_foreach(ks, i, k)
    {
        json_t *o = s_key(c, k, i);
        if (!o)
            break;
        char pair[DV_NAME_MAX + 72];
        snprintf(pair, sizeof pair, "%s\x1f%s",
                 collector_state_json_str(o, "id"),
                 collector_state_json_str(o, "hash"));
        if (json_object_get(seen, pair)) {
            s_bad(c, "keys[%zu]: key %s (%s) is listed twice", i,
                  collector_state_json_str(o, "id"),
                  collector_state_json_str(o, "hash"));
            json_decref(o);
            break;
        }
        if (json_object_set_new(seen, pair, json_true()) != 0) {
            json_decref(o);
            s_oom(c);
            break;
        }
        if (json_array_append_new(keys, o) != 0) { /* o is freed */
            s_oom(c);
            break;
        }
    }
    if (json_array_size(keys) != json_array_size(ks))
        goto done;
    out = json_pack("{s:I, s:O}", "now", (json_int_t)json_integer_value(now),
                    "keys", keys);
    if (!out)
        s_oom(c);
done:
    json_decref(seen);
    json_decref(keys);
    json_decref(in);
    return out;
}

/* ---- keeping ------------------------------------------------------------- */

/* Drops the body kept; logged at lvl with why. */
static void
s_forget(collector_state_t *self, dv_level_t lvl, const char *why,
         int64_t now_ms)
{
    collector_fleet_keys_t *f = &self->fleet;
    if (!f->body)
        return;
    dv_log(lvl, "collector.fleet_keys_forgotten",
           DV_STR("broker", self->brokers[f->broker].events_ep),
           DV_STR("instance", f->instance),
           DV_INT("age_ms", now_ms - f->received_ms), DV_STR("why", why));
    json_decref(f->body);
    f->body = NULL;
    f->interval_ms = 0;
}

bool
collector_keys_is_state(const dv_event_t *ev)
{
    return ev->kind_enum == DV_EV_OTHER &&
           dv_str_eq(ev->kind, COLLECTOR_KIND_KEYS_STATE);
}

void
collector_keys_apply(collector_state_t *self, int b, const dv_event_t *ev,
                     int64_t now_ms)
{
    collector_fleet_keys_t *f = &self->fleet;
    bool same_instance = f->body && f->broker == b && ev->broker.ptr &&
                         dv_str_eq(ev->broker, f->instance);
    if (f->body && f->broker == b && ev->broker.ptr && !same_instance)
        s_forget(self, DV_INFO, "the broker restarted (a new instance id)",
                 now_ms);
    if (!collector_keys_is_state(ev))
        return;
    char why[256] = "";
    s_chk_t c = { why, sizeof why, 0 };
    json_t *body = s_body(&c, ev->body);
    if (!body) {
        if (!f->bad_logged || c.oom)
            dv_log(DV_WARN, "collector.bad_keys_state",
                   DV_STR("broker", self->brokers[b].events_ep),
                   DV_INT("seq", ev->seq), DV_STR("error", why),
                   DV_STR("kept", f->body ? "the previous body, until it is "
                                            "stale"
                                          : "none"));
        f->bad_logged = f->bad_logged || !c.oom;
        f->ignored++;
        return;
    }
    if (same_instance && now_ms > f->received_ms)
        f->interval_ms = now_ms - f->received_ms;
    else if (!same_instance)
        f->interval_ms = 0;
    if (f->interval_ms > COLLECTOR_FLEET_INTERVAL_MAX_MS)
        f->interval_ms = COLLECTOR_FLEET_INTERVAL_MAX_MS;
    json_decref(f->body);
    f->body = body;
    f->broker = b;
    dv_str_copy(ev->broker, f->instance, sizeof f->instance);
    f->received_ms = now_ms;
    f->bad_logged = false;
}

int64_t
collector_keys_stale_ms(const collector_state_t *self)
{
    int64_t ms = 3 * self->fleet.interval_ms;
    return ms > COLLECTOR_FLEET_STALE_MS ? ms : COLLECTOR_FLEET_STALE_MS;
}

const json_t *
collector_keys_fleet(const collector_state_t *self, int64_t now_ms)
{
    const collector_fleet_keys_t *f = &self->fleet;
    if (!f->body || now_ms - f->received_ms > collector_keys_stale_ms(self))
        return NULL;
    return f->body;
}

void
collector_keys_tick(collector_state_t *self, int64_t now_ms)
{
    if (self->fleet.body && !collector_keys_fleet(self, now_ms))
        s_forget(self, DV_WARN,
                 "stale: the broker stopped publishing it (no keys.state "
                 "for 3 of its heartbeats)",
                 now_ms);
}

/* ---- the view ------------------------------------------------------------ */

json_t *
collector_state_fleet_keys(const collector_state_t *self, int64_t now_ms)
{
    const json_t *body = collector_keys_fleet(self, now_ms);
    if (!body)
        return json_pack("{s:[]}", "keys");
    const collector_fleet_keys_t *f = &self->fleet;
    json_t *o = json_deep_copy(body);
    if (!o)
        return NULL;
    int rc = json_object_set_new(
        o, "broker", json_string(self->brokers[f->broker].events_ep));
    rc |=
        json_object_set_new(o, "age_ms", json_integer(now_ms - f->received_ms));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}
