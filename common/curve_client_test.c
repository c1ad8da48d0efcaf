/* Tests for dv_curve_client: loading certificates (the refusals and their
 * messages) and a CurveZMQ handshake against a ROUTER made here, with the
 * right and a wrong server key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "dv_curve_client.h"

static char s_dir[64];

/* Writes a certificate pair DIR/name.key and DIR/name.key_secret (0600);
 * copies the secret key's Z85 text into secret_z85 if not NULL. */
static void
s_keygen(const char *name, char secret_z85[DV_CURVE_KEY_SIZE])
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s.key", s_dir, name);
    zcert_t *c = zcert_new();
    assert_non_null(c);
    zcert_set_meta(c, "name", "%s", name);
    assert_int_equal(zcert_save(c, path), 0);
    snprintf(path, sizeof path, "%s/%s.key_secret", s_dir, name);
    assert_int_equal(chmod(path, 0600), 0);
    if (secret_z85)
        snprintf(secret_z85, DV_CURVE_KEY_SIZE, "%s", zcert_secret_txt(c));
    zcert_destroy(&c);
}

static const char *
s_path(const char *name)
{
    static char buf[4][128];
    static int i;
    char *p = buf[i++ % 4];
    snprintf(p, 128, "%s/%s", s_dir, name);
    return p;
}

static void
s_write(const char *name, const char *text, mode_t mode)
{
    FILE *f = fopen(s_path(name), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(s_path(name), mode), 0);
}

static int
s_setup(void **state)
{
    (void)state;
    snprintf(s_dir, sizeof s_dir, "/tmp/drover-test-curve-XXXXXX");
    if (!mkdtemp(s_dir))
        return -1;
    s_keygen("client", NULL);
    s_keygen("server", NULL);
    return 0;
}

static int
s_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
t_plain_and_halves(void **state)
{
    (void)state;
    dv_curve_keys_t k;
    char err[512];
    assert_int_equal(dv_curve_client_load(&k, NULL, NULL, err, sizeof err), 0);
    assert_false(k.on);
    assert_int_equal(dv_curve_client_load(&k, s_path("client.key_secret"), NULL,
                                          err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "--curve-server"));
    assert_non_null(strstr(err, "client.key_secret"));
    assert_int_equal(
        dv_curve_client_load(&k, NULL, s_path("server.key"), err, sizeof err),
        -1);
    assert_non_null(strstr(err, "--curve-secret"));
    assert_false(k.on);
}

static void
t_load(void **state)
{
    (void)state;
    dv_curve_keys_t k;
    char err[512] = "";
    assert_int_equal(dv_curve_client_load(&k, s_path("client.key_secret"),
                                          s_path("server.key"), err,
                                          sizeof err),
                     0);
    assert_true(k.on);
    assert_int_equal(strlen(k.public_key), 40);
    assert_int_equal(strlen(k.secret_key), 40);
    assert_int_equal(strlen(k.server_key), 40);
    dv_curve_client_wipe(&k);
    assert_false(k.on);
    assert_int_equal(k.secret_key[0], '\0');
}

static void
t_refusals(void **state)
{
    (void)state;
    dv_curve_keys_t k;
    char err[512];
    const char *server = s_path("server.key");

    /* readable by others */
    char secret[DV_CURVE_KEY_SIZE];
    s_keygen("loose", secret);
    assert_int_equal(chmod(s_path("loose.key_secret"), 0644), 0);
    assert_int_equal(dv_curve_client_load(&k, s_path("loose.key_secret"),
                                          server, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "loose.key_secret"));
    assert_non_null(strstr(err, "mode 0644"));
    assert_non_null(strstr(err, "chmod 600"));
    assert_null(strstr(err, secret));
    assert_false(k.on);

    /* missing */
    assert_int_equal(dv_curve_client_load(&k, s_path("nobody.key_secret"),
                                          server, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "nobody.key_secret"));
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(dv_curve_client_load(&k, s_path("client.key_secret"),
                                          s_path("nobody.key"), err,
                                          sizeof err),
                     -1);
    assert_non_null(strstr(err, "nobody.key"));

    /* the public half given as the secret */
    assert_int_equal(
        dv_curve_client_load(&k, s_path("client.key"), server, err, sizeof err),
        -1);
    assert_non_null(strstr(err, "is a public certificate"));

    /* a secret given as the server's certificate */
    assert_int_equal(dv_curve_client_load(&k, s_path("client.key_secret"),
                                          s_path("server.key_secret"), err,
                                          sizeof err),
                     -1);
    assert_non_null(strstr(err, "holds a secret key"));

    /* not a certificate; a public certificate alone as a secret */
    s_write("junk", "curve\n  public-key = \"abc\n", 0600);
    assert_int_equal(
        dv_curve_client_load(&k, s_path("junk"), server, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a certificate"));
    assert_non_null(strstr(err, "line 2"));
    s_write("short", "curve\n    public-key = \"abc\"\n", 0600);
    assert_int_equal(
        dv_curve_client_load(&k, s_path("short"), server, err, sizeof err), -1);
    assert_non_null(strstr(err, "40 characters"));
    s_write("pubonly",
            "curve\n    public-key = "
            "\"0123456789012345678901234567890123456789\"\n",
            0600);
    assert_int_equal(
        dv_curve_client_load(&k, s_path("pubonly"), server, err, sizeof err),
        -1);
    assert_non_null(strstr(err, "holds no secret key"));
    assert_false(k.on);
}

/* A ROUTER with ZMQ_CURVE_SERVER and no ZAP handler: any client key that
 * knows the server's public key gets through. */
static void
t_handshake(void **state)
{
    (void)state;
    char server_secret[DV_CURVE_KEY_SIZE];
    s_keygen("hs", server_secret);
    s_keygen("other", NULL);
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, zero = 0, t = 300;
    zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(router, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, server_secret, 40);
    zmq_setsockopt(router, ZMQ_RCVTIMEO, &t, sizeof t);
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/hs.sock", s_dir);
    assert_int_equal(zmq_bind(router, ep), 0);

    const char *servers[] = { "hs.key", "other.key" };
    for (int i = 0; i < 2; i++) {
        void *d = zmq_socket(ctx, ZMQ_DEALER);
        zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
        char err[512];
        assert_int_equal(dv_curve_client_socket(d, s_path("client.key_secret"),
                                                s_path(servers[i]), err,
                                                sizeof err),
                         0);
        assert_int_equal(zmq_connect(d, ep), 0);
        assert_int_equal(zmq_send(d, "hi", 2, 0), 2);
        char id[256], body[16];
        int n = zmq_recv(router, id, sizeof id, 0);
        if (i == 0) {
            assert_true(n > 0);
            assert_int_equal(zmq_recv(router, body, sizeof body, 0), 2);
            assert_memory_equal(body, "hi", 2);
        } else {
            assert_int_equal(n, -1); /* wrong server key: nothing arrives */
        }
        zmq_close(d);
    }
    zmq_close(router);
    zmq_ctx_term(ctx);
}

static void
t_env(void **state)
{
    (void)state;
    const char *a = NULL, *b = "given";
    setenv(DV_CURVE_ENV_SECRET, "/s", 1);
    setenv(DV_CURVE_ENV_SERVER, "/p", 1);
    dv_curve_client_env(&a, &b);
    assert_string_equal(a, "/s");
    assert_string_equal(b, "given");
    a = b = NULL;
    setenv(DV_CURVE_ENV_SECRET, "", 1);
    unsetenv(DV_CURVE_ENV_SERVER);
    dv_curve_client_env(&a, &b);
    assert_null(a);
    assert_null(b);
    unsetenv(DV_CURVE_ENV_SECRET);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_plain_and_halves),
        cmocka_unit_test(t_load),
        cmocka_unit_test(t_refusals),
        cmocka_unit_test(t_handshake),
        cmocka_unit_test(t_env),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
