/* handler_builtin - the handlers every worker has, for trying drover out
 * and for tests; each implements worker_handler.h, and so do the outcome
 * helpers every handler uses. Runs in a pool child; sleep blocks it.
 *
 *   noop   result nil
 *   echo   result = payload
 *   sleep  payload seconds or {"seconds": s, "steps": n}; progress per step;
 *          result {"slept": s}; at the soft timeout it stops and fails
 *          "timeout"
 *   fail   payload {"message", "retryable", "times", "category",
 *          "retry_after", "signal", "exit"} (docs/handlers.md)
 * Any other type fails "unknown_type".
 */
#include <errno.h>
#include <math.h>
#include <msgpack.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "worker_handler.h"
#include "worker_ipc.h"

/* ---- outcomes -------------------------------------------------------- */

void
worker_outcome_init(worker_outcome_t *out)
{
    out->ok = false;
    out->result = dv_strn(NULL, 0);
    out->owned = NULL;
    dv_failure_init(&out->failure);
    out->text[0] = '\0';
    out->details[0] = '\0';
    out->stderr_tail[0] = '\0';
}

void
worker_outcome_clear(worker_outcome_t *out)
{
    free(out->owned);
    out->owned = NULL;
    out->result = dv_strn(NULL, 0);
}

void
worker_outcome_fail(worker_outcome_t *out, dv_category_t cat, bool retryable,
                    const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out->text, sizeof out->text, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len >= sizeof out->text)
        len = sizeof out->text - 1;
    len = worker_utf8_cut(out->text, len, DV_TEXT_MAX);
    out->text[len] = '\0';
    out->ok = false;
    out->failure.category = cat;
    out->failure.retryable = retryable;
    out->failure.message = dv_strn(out->text, len);
}

/* Copies the end of s[0..n) into buf (DV_DETAILS_MAX + 1 bytes),
 * repaired; returns the view, absent when empty. */
static dv_str_t
s_details_copy(char *buf, const char *s, size_t n)
{
    if (!s || n == 0) {
        buf[0] = '\0';
        return dv_strn(NULL, 0);
    }
    size_t off = worker_utf8_tail(s, n, DV_DETAILS_MAX);
    n -= off;
    memmove(buf, s + off, n);
    buf[n] = '\0';
    worker_utf8_repair(buf, n);
    return dv_strn(buf, n);
}

void
worker_outcome_details(worker_outcome_t *out, const char *details, size_t dlen,
                       const char *err, size_t elen)
{
    out->failure.details = s_details_copy(out->details, details, dlen);
    out->failure.stderr_tail = s_details_copy(out->stderr_tail, err, elen);
}

void
worker_outcome_own(worker_outcome_t *out, char *result, size_t len)
{
    free(out->owned);
    out->owned = result;
    out->result = dv_strn(result, len);
    out->ok = true;
}

/* ---- msgpack payload helpers ----------------------------------------- */

static const char s_nil = (char)0xc0;

/* Unpacks a payload; returns false if absent. The caller destroys u. */
static bool
s_unpack(const worker_handler_job_t *job, msgpack_unpacked *u)
{
    msgpack_unpacked_init(u);
    if (!job->payload.ptr)
        return false;
    size_t off = 0;
    return msgpack_unpack_next(u, job->payload.ptr, job->payload.len, &off) ==
           MSGPACK_UNPACK_SUCCESS;
}

static const msgpack_object *
s_get(const msgpack_object *o, const char *key)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl &&
            memcmp(k->via.str.ptr, key, kl) == 0)
            return &o->via.map.ptr[i].val;
    }
    return NULL;
}

static bool
s_num(const msgpack_object *o, double *v)
{
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *v = (double)o->via.u64;
        return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *v = (double)o->via.i64;
        return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *v = o->via.f64;
        return !isnan(*v);
    default:
        return false;
    }
}

static bool
s_int(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        o->via.u64 <= (uint64_t)INT64_MAX)
        *v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = o->via.i64;
    else
        return false;
    return *v >= lo && *v <= hi;
}

/* A one-entry map {key: int or double} as the outcome's result. Out of
 * memory is a failure like any other (the child may exit instead). */
static void
s_result_map1(worker_outcome_t *out, const char *key, bool whole, double v)
{
    worker_buf_t rb;
    worker_buf_init(&rb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &rb, worker_buf_write);
    int rc = msgpack_pack_map(&pk, 1);
    rc |= msgpack_pack_str_with_body(&pk, key, strlen(key));
    rc |= whole ? msgpack_pack_int64(&pk, (int64_t)v)
                : msgpack_pack_double(&pk, v);
    if (rc != 0) {
        worker_buf_free(&rb);
        worker_outcome_fail(out, DV_CAT_RESOURCE_EXHAUSTED, true,
                            "out of memory building the result");
        return;
    }
    worker_outcome_own(out, rb.data, rb.len);
}

/* ---- the handlers ---------------------------------------------------- */

static void
s_noop(void *impl, const worker_handler_job_t *job, worker_progress_fn pf,
       void *arg, worker_outcome_t *out)
{
    (void)impl, (void)job, (void)pf, (void)arg;
    out->ok = true;
    out->result = dv_strn(&s_nil, 1);
}

static void
s_echo(void *impl, const worker_handler_job_t *job, worker_progress_fn pf,
       void *arg, worker_outcome_t *out)
{
    (void)impl, (void)pf, (void)arg;
    out->ok = true;
    out->result = job->payload.ptr ? job->payload : dv_strn(&s_nil, 1);
}

/* Sleeps until mono_ns, or until the soft timeout passes. */
static void
s_sleep_until(int64_t mono_ns, volatile sig_atomic_t *stop)
{
    struct timespec ts = { (time_t)(mono_ns / 1000000000),
                           (long)(mono_ns % 1000000000) };
    while (!*stop &&
           clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int64_t
s_now_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static void
s_sleep(void *impl, const worker_handler_job_t *job, worker_progress_fn pf,
        void *arg, worker_outcome_t *out)
{
    (void)impl;
    static const char usage[] =
        "sleep: payload must be a number of seconds (0..86400) or "
        "{\"seconds\": s, \"steps\": n}";
    msgpack_unpacked u;
    double secs = -1;
    int64_t steps = 10;
    bool whole = false;
    if (s_unpack(job, &u)) {
        const msgpack_object *o = &u.data, *s = o;
        if (o->type == MSGPACK_OBJECT_MAP) {
            s = s_get(o, "seconds");
            const msgpack_object *st = s_get(o, "steps");
            if (st && !s_int(st, 1, 100000, &steps))
                secs = -2;
        }
        if (secs != -2 && s && s_num(s, &secs))
            whole = s->type != MSGPACK_OBJECT_FLOAT32 &&
                    s->type != MSGPACK_OBJECT_FLOAT64;
        else
            secs = -1;
    }
    msgpack_unpacked_destroy(&u);
    if (!(secs >= 0 && secs <= 86400)) {
        worker_outcome_fail(out, DV_CAT_INVALID_INPUT, false, "%s", usage);
        return;
    }
    int64_t start = s_now_ns();
    int64_t total_ns = (int64_t)llround(secs * 1e9);
    char text[96];
    for (int64_t i = 1; i <= steps; i++) {
        s_sleep_until(
            start + (int64_t)((double)total_ns * (double)i / (double)steps),
            job->stop);
        if (*job->stop) {
            /* Told to wrap up: sleep has nothing to save, so it fails in
             * a way that is retried, before the hard timeout kills it. */
            worker_outcome_fail(
                out, DV_CAT_TIMEOUT, true,
                "stopped at the soft timeout after %.3g s of %.3g s",
                (double)(s_now_ns() - start) / 1e9, secs);
            return;
        }
        int n = snprintf(text, sizeof text, "slept %.3g s of %.3g s",
                         secs * (double)i / (double)steps, secs);
        pf(arg, i, steps, text, (size_t)n);
    }
    s_result_map1(out, "slept", whole, secs);
}

static void
s_fail(void *impl, const worker_handler_job_t *job, worker_progress_fn pf,
       void *arg, worker_outcome_t *out)
{
    (void)impl, (void)pf, (void)arg;
    dv_str_t msg = dv_str("failed on purpose");
    bool retryable = true;
    int64_t times = -1, sig = 0, code = -1;
    double retry_after = 0;
    dv_category_t cat = DV_CAT_HANDLER;
    const char *bad = NULL;
    msgpack_unpacked u;
    if (s_unpack(job, &u)) {
        const msgpack_object *o = &u.data, *v;
        if (o->type != MSGPACK_OBJECT_MAP && o->type != MSGPACK_OBJECT_NIL)
            bad = "fail: payload must be a map";
        if (!bad && (v = s_get(o, "message"))) {
            if (v->type != MSGPACK_OBJECT_STR)
                bad = "fail: message must be a string";
            else
                msg = dv_strn(v->via.str.ptr, v->via.str.size);
        }
        if (!bad && (v = s_get(o, "retryable"))) {
            if (v->type != MSGPACK_OBJECT_BOOLEAN)
                bad = "fail: retryable must be true or false";
            else
                retryable = v->via.boolean;
        }
        if (!bad && (v = s_get(o, "times")) && !s_int(v, 0, 1000000, &times))
            bad = "fail: times must be a whole number >= 0";
        if (!bad && (v = s_get(o, "signal")) && !s_int(v, 1, 64, &sig))
            bad = "fail: signal must be 1..64";
        if (!bad && (v = s_get(o, "exit")) && !s_int(v, 0, 255, &code))
            bad = "fail: exit must be 0..255";
        if (!bad && (v = s_get(o, "retry_after")) &&
            !(s_num(v, &retry_after) && retry_after >= 0 &&
              retry_after <= 86400 * 365))
            bad = "fail: retry_after must be a number of seconds";
        if (!bad && (v = s_get(o, "category"))) {
            cat = v->type == MSGPACK_OBJECT_STR
                      ? dv_category_parse(v->via.str.ptr, v->via.str.size)
                      : DV_CAT_NONE;
            if (cat == DV_CAT_NONE)
                bad = "fail: category must be a failure category name";
        }
    }
    /* msg may point into u: made into the outcome's text before u goes. */
    if (!bad)
        worker_outcome_fail(out, cat, retryable, "%.*s",
                            (int)worker_utf8_cut(msg.ptr, msg.len, DV_TEXT_MAX),
                            msg.ptr);
    msgpack_unpacked_destroy(&u);
    if (bad) {
        worker_outcome_fail(out, DV_CAT_INVALID_INPUT, false, "%s", bad);
        return;
    }
    if (times >= 0 && job->attempt > times) {
        s_result_map1(out, "attempt", true, job->attempt);
        return;
    }
    if (sig > 0) {
        /* STARTED went before this handler ran (it is slow), so the
         * supervisor sees a running job die of the signal. */
        signal((int)sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, (int)sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise((int)sig);
        /* Still here: the default action of that signal is not fatal. */
        worker_outcome_fail(out, DV_CAT_INVALID_INPUT, false,
                            "fail: signal %d did not end the process",
                            (int)sig);
        return;
    }
    if (code >= 0)
        _exit((int)code);
    out->failure.retry_after_ms = (int64_t)llround(retry_after * 1000);
}

static void
s_unknown(void *impl, const worker_handler_job_t *job, worker_progress_fn pf,
          void *arg, worker_outcome_t *out)
{
    (void)impl, (void)pf, (void)arg;
    worker_outcome_fail(out, DV_CAT_UNKNOWN_TYPE, false,
                        "no handler for type %.*s on worker %s",
                        (int)job->type.len, job->type.ptr, job->worker);
}

static const worker_handler_ops_t s_noop_ops = { "builtin", s_noop, false,
                                                 false };
static const worker_handler_ops_t s_echo_ops = { "builtin", s_echo, false,
                                                 false };
static const worker_handler_ops_t s_sleep_ops = { "builtin", s_sleep, true,
                                                  false };
static const worker_handler_ops_t s_fail_ops = { "builtin", s_fail, true,
                                                 false };
static const worker_handler_ops_t s_unknown_ops = { "builtin", s_unknown, false,
                                                    false };

worker_handler_t
handler_builtin_for(dv_str_t type)
{
    const worker_handler_ops_t *ops = &s_unknown_ops;
    if (dv_str_eq(type, "noop"))
        ops = &s_noop_ops;
    else if (dv_str_eq(type, "echo"))
        ops = &s_echo_ops;
    else if (dv_str_eq(type, "sleep"))
        ops = &s_sleep_ops;
    else if (dv_str_eq(type, "fail"))
        ops = &s_fail_ops;
    return (worker_handler_t){ ops, NULL };
}
