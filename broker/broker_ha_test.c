/* broker_ha_test - the advisory lock of a broker group against a real
 * PostgreSQL server: one holder at a time; a dead holder's lock goes to a
 * standby at once; a stopped holder (it stops pinging) loses its session
 * to idle_session_timeout and its lock to the standby, and learns it when
 * it wakes; a holder whose session is terminated steps down.
 *
 * The server is a throw-away one of the run's own (tests/fixtures/
 * pg_server). */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "broker_ha.h"
#include "broker_test_fx.h"
#include "dv_clock.h"
#include "pg_server.h"

static const char *s_url;
static char s_url_buf[1024];
static char s_dir[1024];
static pg_server_t *s_pg;

/* Steps each of n (NULL entries skipped) until cond holds or timeout_ms
 * has passed, waiting on their sockets and timers. Returns cond's value. */
static bool
s_run(broker_ha_t **ha, int n, bool (*cond)(broker_ha_t **ha), int timeout_ms)
{
    int64_t deadline = dv_mono_ms() + timeout_ms;
    while (!cond(ha)) {
        int64_t now = dv_mono_ms();
        if (now >= deadline)
            return false;
        struct pollfd pf[4];
        int64_t wake = deadline;
        int np = 0;
        for (int i = 0; i < n; i++) {
            if (!ha[i])
                continue;
            bool w;
            int fd = broker_ha_fd(ha[i], &w);
            if (fd >= 0)
                pf[np++] =
                    (struct pollfd){ fd, (short)(w ? POLLOUT : POLLIN), 0 };
            if (broker_ha_next(ha[i]) < wake)
                wake = broker_ha_next(ha[i]);
        }
        int64_t t = wake - now;
        poll(pf, (nfds_t)np, t < 0 ? 0 : t > 200 ? 200 : (int)t);
        now = dv_mono_ms();
        for (int i = 0; i < n; i++)
            if (ha[i])
                broker_ha_step(ha[i], now);
    }
    return true;
}

static bool
s_first_active(broker_ha_t **ha)
{
    return broker_ha_role(ha[0]) == BROKER_HA_ACTIVE;
}

static bool
s_second_active(broker_ha_t **ha)
{
    return broker_ha_role(ha[1]) == BROKER_HA_ACTIVE;
}

static bool
s_first_lost(broker_ha_t **ha)
{
    return broker_ha_role(ha[0]) == BROKER_HA_LOST;
}

static broker_ha_t *
s_new(const char *name, int64_t ping_ms)
{
    broker_ha_opts_t o = { .poll_ms = 100, .ping_ms = ping_ms, .name = name };
    char err[256];
    broker_ha_t *ha = broker_ha_new(s_url, &o, err, sizeof err);
    if (!ha)
        fail_msg("broker_ha_new: %s", err);
    return ha;
}

/* One holder; the other waits; the holder's end frees the lock at once. */
static void
t_one_holder(void **state)
{
    (void)state;
    broker_ha_t *ha[2] = { s_new("a", 1000), NULL };
    assert_true(s_run(ha, 1, s_first_active, 5000));
    ha[1] = s_new("b", 1000);
    /* b asks many times over 1.5 s and never gets it. */
    assert_false(s_run(ha, 2, s_second_active, 1500));
    assert_int_equal(broker_ha_role(ha[1]), BROKER_HA_STANDBY);
    assert_int_equal(broker_ha_role(ha[0]), BROKER_HA_ACTIVE);
    int64_t t0 = dv_mono_ms();
    broker_ha_destroy(&ha[0]);
    assert_true(s_run(ha, 2, s_second_active, 3000));
    assert_true(dv_mono_ms() - t0 < 1000);
    broker_ha_destroy(&ha[1]);
}

/* A holder that stops pinging (as a stopped process does) is cut off by
 * the server after 3 pings' time; the standby takes the lock; the old
 * holder learns it has lost it as soon as it runs again. */
static void
t_stopped_holder(void **state)
{
    (void)state;
    broker_ha_t *ha[2] = { s_new("a", 300), s_new("b", 300) };
    assert_true(s_run(ha, 1, s_first_active, 5000));
    int64_t t0 = dv_mono_ms();
    broker_ha_t *only_b[2] = { NULL, ha[1] };
    assert_true(s_run(only_b, 2, s_second_active, 5000));
    int64_t took = dv_mono_ms() - t0;
    assert_true(took >= 800); /* not before the timeout (3 x 300 ms) */
    print_message("standby took the lock %lld ms after the holder stopped\n",
                  (long long)took);
    assert_true(s_run(ha, 1, s_first_lost, 3000));
    assert_true(broker_ha_error(ha[0])[0] != '\0');
    broker_ha_destroy(&ha[0]);
    broker_ha_destroy(&ha[1]);
}

/* An operator (or a fencing standby) terminates the holder's session. */
static void
t_terminated(void **state)
{
    (void)state;
    broker_ha_t *ha[1] = { s_new("victim", 1000) };
    assert_true(s_run(ha, 1, s_first_active, 5000));
    PGconn *c = PQconnectdb(s_url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "SELECT count(pg_terminate_backend(pid)) FROM "
                            "pg_stat_activity WHERE application_name = "
                            "'drover-broker-lock victim'");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    PQfinish(c);
    assert_true(s_run(ha, 1, s_first_lost, 5000));
    broker_ha_destroy(&ha[0]);
}

/* A bad URL is refused at once; a server that is not there leaves a
 * standby retrying, saying why. */
static void
t_bad_url(void **state)
{
    (void)state;
    char err[256] = "";
    broker_ha_opts_t o = { .name = "x" };
    assert_null(broker_ha_new("postgres://[::1", &o, err, sizeof err));
    assert_true(err[0] != '\0');
    broker_ha_t *ha[1] = { broker_ha_new(
        "postgresql:///x?host=/nonexistent&port=1", &o, err, sizeof err) };
    assert_non_null(ha[0]);
    assert_false(s_run(ha, 1, s_first_active, 500));
    assert_int_equal(broker_ha_role(ha[0]), BROKER_HA_STANDBY);
    assert_non_null(strstr(broker_ha_error(ha[0]), "cannot connect"));
    broker_ha_destroy(&ha[0]);
}

static int
s_group_setup(void **state)
{
    (void)state;
    broker_fx_mkdir(s_dir, sizeof s_dir, "broker_ha_test");
    char err[1600] = "";
    s_pg = pg_server_start(s_dir, err, sizeof err);
    if (!s_pg) {
        print_error("broker_ha_test: %s\n", err);
        broker_fx_rmdir(s_dir);
        return -1;
    }
    s_url = pg_server_url(s_pg, "drover", s_url_buf, sizeof s_url_buf);
    return 0;
}

static int
s_group_teardown(void **state)
{
    (void)state;
    pg_server_stop(&s_pg);
    return broker_fx_rmdir(s_dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_one_holder),
        cmocka_unit_test(t_stopped_holder),
        cmocka_unit_test(t_terminated),
        cmocka_unit_test(t_bad_url),
    };
    return cmocka_run_group_tests(tests, s_group_setup, s_group_teardown);
}
