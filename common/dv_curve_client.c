/* dv_curve_client - the client side of CurveZMQ (see the header). */
#include "dv_curve_client.h"

#include "dv_access.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "dv_err.h"

/* A certificate is a few hundred bytes; anything far larger is not one. */
#define S_CERT_MAX (64 * 1024)
#define S_Z85_LEN  40

static const char s_z85[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

void
dv_curve_client_env(const char **secret_path, const char **server_path)
{
    const char *v;
    if (!*secret_path && (v = getenv(DV_CURVE_ENV_SECRET)) && *v)
        *secret_path = v;
    if (!*server_path && (v = getenv(DV_CURVE_ENV_SERVER)) && *v)
        *server_path = v;
}

void
dv_curve_client_wipe(dv_curve_keys_t *keys)
{
    explicit_bzero(keys, sizeof *keys);
    keys->on = false;
}

/* Reads the file at path (what names it in errors) into a new string
 * (caller frees, and wipes it if it holds a secret), with its status in
 * *st. NULL with a reason in err. */
static char *
s_read(const char *what, const char *path, struct stat *st, char *err,
       size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dv_err_set(err, size, "cannot read %s '%s': %s", what, path,
                   strerror(errno));
        return NULL;
    }
    char *text = NULL;
    if (fstat(fd, st) != 0) {
        dv_err_set(err, size, "cannot read %s '%s': %s", what, path,
                   strerror(errno));
        goto done;
    }
    if (!S_ISREG(st->st_mode) || st->st_size > S_CERT_MAX) {
        dv_err_set(err, size, "%s '%s' is not a certificate file", what, path);
        goto done;
    }
    size_t len = (size_t)st->st_size, got = 0;
    text = malloc(len + 1);
    if (!text) {
        dv_err_set(err, size, "out of memory");
        goto done;
    }
    while (got < len) {
        ssize_t n = read(fd, text + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            dv_err_set(err, size, "cannot read %s '%s': %s", what, path,
                       n < 0 ? strerror(errno) : "file shrank");
            explicit_bzero(text, len);
            free(text);
            text = NULL;
            goto done;
        }
        got += (size_t)n;
    }
    text[len] = '\0';
done:
    close(fd);
    return text;
}

static bool
s_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

/* Checks that text has the shape zcert writes (comments, sections at the
 * left margin, `    name = "value"` below them), with a well-formed
 * public key and, if has_secret is not NULL, tells whether a secret key is
 * there. czmq's own parser prints its complaints on stdout, so it only
 * ever sees text that passed this. Returns 0, or -1 with the bad line. */
static int
s_check_text(const char *what, const char *path, const char *text,
             bool *has_secret, char *err, size_t size)
{
    bool in_curve = false, any_section = false, pub = false, sec = false;
    int lineno = 0;
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        const char *line = p;
        p += n + (eol ? 1 : 0);
        lineno++;
        size_t indent = 0;
        while (indent < n && line[indent] == ' ')
            indent++;
        if (indent == n || line[indent] == '#')
            continue;
        const char *s = line + indent, *end = line + n;
        const char *name = s;
        while (s < end && s_name_char(*s))
            s++;
        size_t name_len = (size_t)(s - name);
        bool ok = name_len > 0 && (indent == 0 || indent == 4);
        const char *value = NULL;
        size_t value_len = 0;
        if (ok && s < end) {
            /* ` = "value"`, then nothing but blanks */
            ok = end - s >= 4 && !strncmp(s, " = \"", 4);
            if (ok) {
                value = s + 4;
                const char *q = memchr(value, '"', (size_t)(end - value));
                ok = q != NULL;
                if (ok) {
                    value_len = (size_t)(q - value);
                    for (q++; q < end && ok; q++)
                        ok = *q == ' ';
                }
            }
        }
        if (ok && indent == 4)
            ok = any_section && value != NULL;
        if (!ok)
            return dv_err_set(err, size,
                              "%s '%s' is not a certificate (zcert format): "
                              "line %d",
                              what, path, lineno);
        if (indent == 0) {
            any_section = true;
            in_curve = name_len == 5 && !memcmp(name, "curve", 5);
            continue;
        }
        bool is_pub = name_len == 10 && !memcmp(name, "public-key", 10);
        bool is_sec = name_len == 10 && !memcmp(name, "secret-key", 10);
        if (!in_curve || (!is_pub && !is_sec))
            continue;
        bool z85 = value_len == S_Z85_LEN;
        for (size_t i = 0; z85 && i < value_len; i++)
            z85 = strchr(s_z85, value[i]) != NULL;
        if (!z85)
            return dv_err_set(err, size,
                              "%s '%s': line %d: a key must be 40 characters "
                              "of Z85",
                              what, path, lineno);
        if (is_pub)
            pub = true;
        else
            sec = true;
    }
    if (!pub)
        return dv_err_set(err, size,
                          "%s '%s' is not a certificate: no curve public-key",
                          what, path);
    if (has_secret)
        *has_secret = sec;
    return 0;
}

/* Loads the certificate at path with zcert after checking its text.
 * secret: our secret file (its mode and its secret key are checked too).
 * NULL with a reason in err. */
static zcert_t *
s_load(const char *what, const char *path, bool secret, char *err, size_t size)
{
    struct stat st;
    if (secret) {
        /* zcert_load("X") reads "X_secret" when there is one: given the
         * public half of a pair, it would quietly take the secret. */
        size_t n = strlen(path);
        char *twin = malloc(n + sizeof "_secret");
        if (!twin) {
            dv_err_set(err, size, "out of memory");
            return NULL;
        }
        memcpy(twin, path, n);
        memcpy(twin + n, "_secret", sizeof "_secret");
        bool exists = access(twin, F_OK) == 0;
        free(twin);
        if (exists) {
            dv_err_set(err, size,
                       "%s '%s' is a public certificate: give its secret "
                       "file '%s_secret'",
                       what, path, path);
            return NULL;
        }
    }
    char *text = s_read(what, path, &st, err, size);
    if (!text)
        return NULL;
    size_t len = strlen(text);
    bool has_secret = false;
    int rc = s_check_text(what, path, text, &has_secret, err, size);
    explicit_bzero(text, len);
    free(text);
    if (rc != 0)
        return NULL;
    if (secret && dv_access_secret_mode(&st, what, path, err, size) != 0)
        return NULL;
    if (secret && !has_secret) {
        dv_err_set(err, size,
                   "%s '%s' holds no secret key: give the .key_secret file "
                   "that `drover keygen` wrote",
                   what, path);
        return NULL;
    }
    if (!secret && has_secret) {
        dv_err_set(err, size,
                   "%s '%s' holds a secret key: give the server's public "
                   "certificate (its .key file), never its secret",
                   what, path);
        return NULL;
    }
    zcert_t *cert = zcert_load(path);
    if (!cert)
        dv_err_set(err, size, "%s '%s': cannot load the certificate", what,
                   path);
    return cert;
}

int
dv_curve_client_load(dv_curve_keys_t *keys, const char *secret_path,
                     const char *server_path, char *err, size_t size)
{
    dv_curve_client_wipe(keys);
    if (!secret_path && !server_path)
        return 0;
    if (!server_path)
        return dv_err_set(err, size,
                          "CurveZMQ: our secret certificate '%s' is given "
                          "but not the server's public certificate "
                          "(--curve-server or " DV_CURVE_ENV_SERVER ")",
                          secret_path);
    if (!secret_path)
        return dv_err_set(err, size,
                          "CurveZMQ: the server's certificate '%s' is given "
                          "but not our secret certificate (--curve-secret "
                          "or " DV_CURVE_ENV_SECRET ")",
                          server_path);
    zcert_t *ours = s_load("curve secret", secret_path, true, err, size);
    if (!ours)
        return -1;
    zcert_t *server =
        s_load("curve server certificate", server_path, false, err, size);
    if (!server) {
        zcert_destroy(&ours);
        return -1;
    }
    memcpy(keys->public_key, zcert_public_txt(ours), S_Z85_LEN);
    memcpy(keys->secret_key, zcert_secret_txt(ours), S_Z85_LEN);
    memcpy(keys->server_key, zcert_public_txt(server), S_Z85_LEN);
    keys->on = true;
    zcert_destroy(&ours);
    zcert_destroy(&server);
    return 0;
}

int
dv_curve_client_apply(const dv_curve_keys_t *keys, void *sock, char *err,
                      size_t size)
{
    if (!keys->on)
        return 0;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, keys->server_key,
                       S_Z85_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, keys->public_key,
                       S_Z85_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, keys->secret_key,
                       S_Z85_LEN) != 0)
        return dv_err_set(err, size, "CurveZMQ: cannot set the keys: %s%s",
                          zmq_strerror(errno),
                          zmq_has("curve") ? ""
                                           : " (this libzmq has no CURVE)");
    return 0;
}

int
dv_curve_client_socket(void *sock, const char *secret_path,
                       const char *server_public_path, char *err, size_t size)
{
    dv_curve_keys_t keys;
    if (dv_curve_client_load(&keys, secret_path, server_public_path, err,
                             size) != 0)
        return -1;
    int rc = dv_curve_client_apply(&keys, sock, err, size);
    dv_curve_client_wipe(&keys);
    return rc;
}
