/* broker_keys_test - the fleet's key ledger on its own: grants within a
 * key's budget across workers, a 429 that cools the key for all and
 * revokes their grants, a 401 that disables it for all, the learned limit,
 * a vanished worker's allowance, token budgets, restore and enable. Times
 * are passed in; no sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "broker_keys.h"

#define S_MAX_OUT 64

typedef struct {
    void *worker;
    dv_keyitem_t item;
} s_sent_t;

typedef struct {
    s_sent_t out[S_MAX_OUT];
    int nout;
    broker_key_state_t saved[16];
    char saved_hash[16][65];
    int nsaved;
} s_fx_t;

static void
s_send(void *arg, void *worker, const dv_keyitem_t *items, uint32_t n)
{
    s_fx_t *fx = arg;
    for (uint32_t i = 0; i < n && fx->nout < S_MAX_OUT; i++) {
        fx->out[fx->nout].worker = worker;
        fx->out[fx->nout++].item = items[i];
    }
}

static void
s_save(void *arg, const broker_key_state_t *st)
{
    s_fx_t *fx = arg;
    if (fx->nsaved >= 16)
        return;
    fx->saved[fx->nsaved] = *st;
    snprintf(fx->saved_hash[fx->nsaved], 65, "%s", st->hash);
    fx->saved[fx->nsaved].hash = fx->saved_hash[fx->nsaved];
    fx->saved[fx->nsaved].id = NULL;
    fx->nsaved++;
}

static broker_keys_t *
s_new(s_fx_t *fx, int64_t probe_ms)
{
    memset(fx, 0, sizeof *fx);
    broker_keys_cfg_t cfg = { .ttl_ms = 1000,
                              .probe_ms = probe_ms,
                              .send = s_send,
                              .save = s_save,
                              .arg = fx };
    broker_keys_t *k = broker_keys_new(&cfg);
    assert_non_null(k);
    return k;
}

/* Granted to worker at the last flush (0 if no line). */
static int
s_granted(const s_fx_t *fx, void *worker)
{
    int g = 0;
    for (int i = 0; i < fx->nout; i++)
        if (fx->out[i].worker == worker)
            g += fx->out[i].item.grant;
    return g;
}

static const dv_keyitem_t *
s_line(const s_fx_t *fx, void *worker)
{
    for (int i = fx->nout - 1; i >= 0; i--)
        if (fx->out[i].worker == worker)
            return &fx->out[i].item;
    return NULL;
}

static void
s_flush(broker_keys_t *k, s_fx_t *fx, int64_t now)
{
    fx->nout = 0;
    broker_keys_flush(k, now);
}

/* A declaration with a want. */
static dv_keyitem_t
s_decl(int rpm, int64_t window_ms, int want)
{
    dv_keyitem_t it = { 0 };
    it.hash = dv_str("abcd1234");
    it.id = dv_str("key-1");
    it.rpm = rpm;
    it.window_ms = window_ms;
    it.want = want;
    return it;
}

/* Worker w sends n requests on its grants and they end 2xx. */
static void
s_spend(broker_keys_t *k, void *w, const char *name, int n, int want,
        int64_t now)
{
    dv_keyitem_t it = { 0 };
    it.hash = dv_str("abcd1234");
    it.want = want;
    it.sent = n;
    it.done = n;
    it.ok = n;
    assert_int_equal(broker_keys_on_line(k, w, name, &it, now), 0);
}

static void
test_grants_stay_within_the_limit_across_workers(void **state)
{
    (void)state;
    s_fx_t fx;
    broker_keys_t *k = s_new(&fx, 0);
    int a, b, c;
    void *w[3] = { &a, &b, &c };
    const char *names[3] = { "a", "b", "c" };
    int64_t now = 1000000;
    for (int i = 0; i < 3; i++) {
        dv_keyitem_t d = s_decl(30, 3000, 100);
        assert_int_equal(broker_keys_on_line(k, w[i], names[i], &d, now), 0);
    }
    /* Unproven: one request across the fleet. */
    s_flush(k, &fx, now);
    int total =
        s_granted(&fx, w[0]) + s_granted(&fx, w[1]) + s_granted(&fx, w[2]);
    assert_int_equal(total, 1);
    void *first = s_granted(&fx, w[0])   ? w[0]
                  : s_granted(&fx, w[1]) ? w[1]
                                         : w[2];
    s_spend(k, first, "x", 1, 100, now);
    /* Proven now: over many flushes, within one window, never more than
     * 30 requests in all (the one that ended included). */
    int granted = 1, each[3] = { 0 };
    for (int round = 0; round < 50; round++) {
        s_flush(k, &fx, now + round);
        for (int i = 0; i < 3; i++) {
            int g = s_granted(&fx, w[i]);
            granted += g;
            each[i] += g;
            if (g)
                s_spend(k, w[i], names[i], g, 100, now + round);
        }
    }
    assert_int_equal(granted, 30);
    /* Each worker got a share. */
    for (int i = 0; i < 3; i++)
        assert_true(each[i] > 0);
    /* A window later the budget is back. */
    s_flush(k, &fx, now + 3100);
    total = s_granted(&fx, w[0]) + s_granted(&fx, w[1]) + s_granted(&fx, w[2]);
    assert_true(total > 0 && total <= 30);
    broker_keys_destroy(&k);
    assert_null(k);
}

static void
test_429_cools_for_all_revokes_and_learns(void **state)
{
    (void)state;
    s_fx_t fx;
    broker_keys_t *k = s_new(&fx, 0);
    int a, b;
    int64_t now = 5000000;
    dv_keyitem_t d = s_decl(600, 10000, 50);
    assert_int_equal(broker_keys_on_line(k, &a, "a", &d, now), 0);
    assert_int_equal(broker_keys_on_line(k, &b, "b", &d, now), 0);
    s_flush(k, &fx, now);
    void *first = s_granted(&fx, &a) ? (void *)&a : (void *)&b;
    s_spend(k, first, "x", 1, 50, now);
    /* 40 accepted, then a 429 with Retry-After 7 s from a's request. */
    int ok = 1;
    for (int r = 0; ok < 40 && r < 100; r++) {
        s_flush(k, &fx, now + r);
        int ga = s_granted(&fx, &a), gb = s_granted(&fx, &b);
        if (ga > 40 - ok)
            ga = 40 - ok;
        if (ga)
            s_spend(k, &a, "a", ga, 50, now + r);
        ok += ga;
        if (gb > 40 - ok)
            gb = 40 - ok;
        if (gb)
            s_spend(k, &b, "b", gb, 50, now + r);
        ok += gb;
    }
    assert_int_equal(ok, 40);
    dv_keyitem_t l = { 0 };
    l.hash = dv_str("abcd1234");
    l.want = 50;
    l.sent = 1;
    l.done = 1;
    l.limited = 1;
    l.cool_ms = 7000;
    now += 200;
    assert_int_equal(broker_keys_on_line(k, &a, "a", &l, now), 0);
    s_flush(k, &fx, now);
    /* b hears it: cooling, revoke, no grant. */
    const dv_keyitem_t *lb = s_line(&fx, &b);
    assert_non_null(lb);
    assert_true(lb->cool_ms >= 6900 && lb->cool_ms <= 7000);
    assert_int_equal(lb->grant, 0);
    assert_true(fx.nsaved >= 1);
    assert_true(fx.saved[fx.nsaved - 1].cool_until_ms >= now + 6900);
    /* A request in flight when the 429 came ends 2xx during the cooldown:
     * the API accepted 41. */
    s_spend(k, &b, "b", 1, 50, now + 10);
    /* Nothing is granted before the cooldown ends, whatever comes. */
    for (int64_t t = now; t < now + 7000; t += 500) {
        s_spend(k, &b, "b", 0, 50, t);
        s_flush(k, &fx, t);
        assert_int_equal(s_granted(&fx, &a) + s_granted(&fx, &b), 0);
    }
    assert_true(broker_keys_next_deadline(k, now) >= now + 6900);
    /* The cooldown over, the learned limit is what the API accepted. */
    fx.nsaved = 0;
    s_flush(k, &fx, now + 7001);
    assert_true(fx.nsaved >= 1);
    assert_int_equal(fx.saved[fx.nsaved - 1].learned_limit, 41);
    lb = s_line(&fx, &b);
    assert_non_null(lb);
    assert_int_equal(lb->limit, 41);
    broker_keys_destroy(&k);
}

static void
test_401_disables_for_all_until_enabled(void **state)
{
    (void)state;
    s_fx_t fx;
    broker_keys_t *k = s_new(&fx, 0);
    int a, b;
    int64_t now = 7000000;
    dv_keyitem_t d = s_decl(0, 0, 5);
    assert_int_equal(broker_keys_on_line(k, &a, "a", &d, now), 0);
    assert_int_equal(broker_keys_on_line(k, &b, "b", &d, now), 0);
    s_flush(k, &fx, now);
    assert_int_equal(s_granted(&fx, &a) + s_granted(&fx, &b), 1);
    void *first = s_granted(&fx, &a) ? (void *)&a : (void *)&b;
    dv_keyitem_t r = { 0 };
    r.hash = dv_str("abcd1234");
    r.want = 5;
    r.sent = 1;
    r.done = 1;
    r.disabled = 401;
    assert_int_equal(broker_keys_on_line(k, first, "x", &r, now + 5), 0);
    for (int i = 0; i < 5; i++) {
        s_flush(k, &fx, now + 10 + i);
        assert_int_equal(s_granted(&fx, &a) + s_granted(&fx, &b), 0);
    }
    s_flush(k, &fx, now + 20);
    const char *was, *id, *hash;
    bool amb;
    char why[128];
    assert_int_not_equal(broker_keys_enable(k, "nope", now, &was, &id, &hash,
                                            &amb, why, sizeof why),
                         0);
    assert_false(amb);
    assert_int_equal(broker_keys_enable(k, "key-1", now + 30, &was, &id, &hash,
                                        &amb, why, sizeof why),
                     0);
    assert_string_equal(was, "disabled");
    assert_string_equal(hash, "abcd1234");
    s_flush(k, &fx, now + 40);
    assert_true(s_granted(&fx, &a) + s_granted(&fx, &b) > 0);
    broker_keys_destroy(&k);
}

/* A disabled key is probed with one request every probe interval; a 401
 * keeps it disabled for another interval, a 2xx enables it for all. */
static void
test_disabled_key_is_probed(void **state)
{
    (void)state;
    s_fx_t fx;
    broker_keys_t *k = s_new(&fx, 1000);
    int a, b;
    int64_t now = 8000000;
    dv_keyitem_t d = s_decl(0, 0, 5);
    assert_int_equal(broker_keys_on_line(k, &a, "a", &d, now), 0);
    assert_int_equal(broker_keys_on_line(k, &b, "b", &d, now), 0);
    dv_keyitem_t r = { 0 };
    r.hash = dv_str("abcd1234");
    r.want = 5;
    r.disabled = 401;
    assert_int_equal(broker_keys_on_line(k, &a, "a", &r, now), 0);
    s_flush(k, &fx, now + 500);
    assert_int_equal(s_granted(&fx, &a) + s_granted(&fx, &b), 0);
    assert_int_equal(broker_keys_next_deadline(k, now + 500), now + 1000);
    /* The interval passed: one probe, to one worker. */
    s_flush(k, &fx, now + 1000);
    assert_int_equal(s_granted(&fx, &a) + s_granted(&fx, &b), 1);
    void *p = s_granted(&fx, &a) ? (void *)&a : (void *)&b;
    assert_true(s_line(&fx, p)->probe);
    s_flush(k, &fx, now + 1100);
    assert_int_equal(s_granted(&fx, &a) + s_granted(&fx, &b), 0);
    /* Still 401: nothing for another interval. */
    dv_keyitem_t pr = { 0 };
    pr.hash = dv_str("abcd1234");
    pr.want = 5;
    pr.sent = 1;
    pr.done = 1;
    pr.disabled = 401;
    assert_int_equal(broker_keys_on_line(k, p, "p", &pr, now + 1200), 0);
    s_flush(k, &fx, now + 2100);
    assert_int_equal(s_granted(&fx, &a) + s_granted(&fx, &b), 0);
    s_flush(k, &fx, now + 2200);
    assert_int_equal(s_granted(&fx, &a) + s_granted(&fx, &b), 1);
    p = s_granted(&fx, &a) ? (void *)&a : (void *)&b;
    /* Fixed: the probe answers 2xx, and every worker hears it. */
    pr.disabled = 0;
    pr.ok = 1;
    assert_int_equal(broker_keys_on_line(k, p, "p", &pr, now + 2300), 0);
    s_flush(k, &fx, now + 2300);
    assert_int_equal(s_line(&fx, &a)->disabled, 0);
    assert_int_equal(s_line(&fx, &b)->disabled, 0);
    assert_true(s_granted(&fx, &a) + s_granted(&fx, &b) > 1);
    broker_keys_destroy(&k);
}

static void
test_vanished_worker_returns_its_allowance(void **state)
{
    (void)state;
    s_fx_t fx;
    broker_keys_t *k = s_new(&fx, 0);
    int a, b;
    int64_t now = 9000000;
    dv_keyitem_t d = s_decl(10, 60000, 10);
    assert_int_equal(broker_keys_on_line(k, &a, "a", &d, now), 0);
    s_flush(k, &fx, now);
    s_spend(k, &a, "a", 1, 10, now);
    s_flush(k, &fx, now + 1);
    int ga = s_granted(&fx, &a);
    assert_true(ga > 0);
    /* a sends what it got (in flight), then vanishes. */
    dv_keyitem_t s = { 0 };
    s.hash = dv_str("abcd1234");
    s.want = 10;
    s.sent = ga;
    assert_int_equal(broker_keys_on_line(k, &a, "a", &s, now + 2), 0);
    broker_keys_worker_gone(k, &a, now + 3);
    d.want = 20;
    assert_int_equal(broker_keys_on_line(k, &b, "b", &d, now + 4), 0);
    int total = 0;
    for (int i = 0; i < 20; i++) {
        s_flush(k, &fx, now + 5 + i);
        int g = s_granted(&fx, &b);
        total += g;
        if (g)
            s_spend(k, &b, "b", g, 20, now + 5 + i);
    }
    /* 10 per window: 1 ended, and what a had in flight when it went. */
    assert_int_equal(total, 10 - 1 - ga);
    broker_keys_destroy(&k);
}

static void
test_token_budget(void **state)
{
    (void)state;
    s_fx_t fx;
    broker_keys_t *k = s_new(&fx, 0);
    int a;
    int64_t now = 11000000;
    dv_keyitem_t d = s_decl(0, 60000, 100);
    d.tpm = 1000;
    assert_int_equal(broker_keys_on_line(k, &a, "a", &d, now), 0);
    int64_t tokens = 0;
    for (int i = 0; i < 100; i++) {
        s_flush(k, &fx, now + i);
        int g = s_granted(&fx, &a);
        if (!g)
            continue;
        dv_keyitem_t s = { 0 };
        s.hash = dv_str("abcd1234");
        s.want = 100;
        s.sent = g;
        s.done = g;
        s.ok = g;
        s.tokens = 100 * g;
        tokens += s.tokens;
        assert_int_equal(broker_keys_on_line(k, &a, "a", &s, now + i), 0);
    }
    assert_true(tokens <= 1000);
    assert_true(tokens >= 900);
    broker_keys_destroy(&k);
}

static void
test_restore_keeps_cooldown_and_conflict_is_shown(void **state)
{
    (void)state;
    s_fx_t fx;
    broker_keys_t *k = s_new(&fx, 0);
    int a, b;
    int64_t now = 13000000;
    broker_key_state_t st = { .hash = "abcd1234",
                              .id = "key-1",
                              .cool_until_ms = now + 5000,
                              .learned_limit = 12,
                              .proven = true };
    assert_int_equal(broker_keys_restore(k, &st), 0);
    dv_keyitem_t d = s_decl(600, 60000, 10);
    assert_int_equal(broker_keys_on_line(k, &a, "a", &d, now), 0);
    d.rpm = 40;
    assert_int_equal(broker_keys_on_line(k, &b, "b", &d, now), 0);
    s_flush(k, &fx, now);
    assert_int_equal(s_granted(&fx, &a) + s_granted(&fx, &b), 0);
    const dv_keyitem_t *la = s_line(&fx, &a);
    assert_non_null(la);
    assert_true(la->cool_ms > 4900);
    assert_int_equal(la->limit, 12);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    assert_int_equal(broker_keys_describe(k, now, &pk), 0);
    assert_non_null(memmem(sb.data, sb.size, "conflict", 8));
    assert_non_null(memmem(sb.data, sb.size, "the lowest wins", 15));
    assert_non_null(memmem(sb.data, sb.size, "cooling", 7));
    msgpack_sbuffer_destroy(&sb);
    s_flush(k, &fx, now + 5001);
    assert_true(s_granted(&fx, &a) + s_granted(&fx, &b) > 0);
    broker_keys_destroy(&k);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grants_stay_within_the_limit_across_workers),
        cmocka_unit_test(test_429_cools_for_all_revokes_and_learns),
        cmocka_unit_test(test_401_disables_for_all_until_enabled),
        cmocka_unit_test(test_disabled_key_is_probed),
        cmocka_unit_test(test_vanished_worker_returns_its_allowance),
        cmocka_unit_test(test_token_budget),
        cmocka_unit_test(test_restore_keeps_cooldown_and_conflict_is_shown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
