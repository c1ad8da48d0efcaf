/* dv_curve - CurveZMQ server side with roles; see dv_curve.h. */
#include "dv_curve.h"

#include "dv_access.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dv_err.h"
#include "dv_log.h"
#include "dv_map.h"

/* A certificate name: the same bound as a worker's name on the wire
 * (DV_NAME_MAX in proto/dv_proto.h), since a worker's name is its
 * certificate's. */
#define S_NAME_MAX 200
/* Refused keys remembered by the ZAP thread so each is logged once. */
#define S_REFUSED_MAX 10000
/* The ZAP property that carries the peer's public key (Z85). */
#define S_KEY_PROP     "X-Drover-Key"
#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"

static const char *const s_role_names[DV_ROLE_COUNT_] = {
    "none", "client", "operator", "worker", "observer",
};

const char *
dv_role_name(dv_role_t role)
{
    return role > DV_ROLE_NONE && role < DV_ROLE_COUNT_ ? s_role_names[role]
                                                        : "none";
}

const char *
dv_role_env(dv_role_t role)
{
    static const char *const env[DV_ROLE_COUNT_] = {
        NULL, "DROVER_CURVE_CLIENTS", "DROVER_CURVE_OPERATORS",
        "DROVER_CURVE_WORKERS", "DROVER_CURVE_OBSERVERS"
    };
    return role > DV_ROLE_NONE && role < DV_ROLE_COUNT_ ? env[role] : NULL;
}

dv_role_t
dv_role_from_name(const char *name)
{
    for (int r = DV_ROLE_CLIENT; r < DV_ROLE_COUNT_; r++)
        if (!strcmp(name, s_role_names[r]))
            return (dv_role_t)r;
    return DV_ROLE_NONE;
}

/* One listed key. */
typedef struct {
    char key[41]; /* public key, Z85: the table's key (the map keeps a
                   * pointer to it) */
    dv_role_t role;
    char name[S_NAME_MAX + 1];
} s_entry_t;

/* Domains whose handshakes admit only some roles. */
#define S_DOMAINS_MAX 8
typedef struct {
    char name[64];
    unsigned roles;
} s_domain_t;

struct dv_curve_server {
    char *secret_file;
    char *dirs[DV_ROLE_COUNT_];
    uint8_t secret_key[32];
    char public_txt[41];
    pthread_mutex_t mu;
    dv_map_t *table; /* Z85 public key -> s_entry_t; swapped under mu */
    s_domain_t domains[S_DOMAINS_MAX]; /* under mu */
    int ndomains;
    void *zap; /* REP socket, used by the ZAP thread only */
    pthread_t thread;
    bool running;
    atomic_int stop;
    dv_map_t *refused; /* ZAP thread only: keys already logged */
    dv_map_t *logged;  /* loop thread only: "KEY|what" refusals logged */
};

/* ---- loading ------------------------------------------------------------- */

/* A name a certificate may have: 1..S_NAME_MAX bytes, no control
 * characters. */
static bool
s_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > S_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
            return false;
    return true;
}

static bool
s_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Adds the certificate at path (file name fname) to table under role. */
static int
s_load_cert(dv_map_t *table, dv_role_t role, const char *path,
            const char *fname, char *err, size_t es)
{
    zcert_t *cert = zcert_load(path);
    if (!cert)
        return dv_err_set(err, es, "%s: not a certificate zcert can read",
                          path);
    const char *txt = zcert_public_txt(cert);
    static const uint8_t zero[32];
    if (strlen(txt) != 40 || !memcmp(zcert_public_key(cert), zero, 32)) {
        zcert_destroy(&cert);
        return dv_err_set(err, es, "%s: holds no public key", path);
    }
    /* The name: the certificate's metadata, or the file name without its
     * extension. */
    const char *meta = zcert_meta(cert, "name");
    const char *src = meta && *meta ? meta : fname;
    size_t len = strlen(src);
    const char *dot = strrchr(fname, '.');
    if (src == fname && dot && dot != fname)
        len = (size_t)(dot - fname);
    char name[S_NAME_MAX + 1] = "";
    if (len <= S_NAME_MAX) {
        memcpy(name, src, len);
        name[len] = '\0';
    }
    if (!s_name_ok(name)) {
        zcert_destroy(&cert);
        return dv_err_set(err, es,
                          "%s: the certificate's name must be 1..%d bytes "
                          "without control characters",
                          path, S_NAME_MAX);
    }
    const s_entry_t *old = dv_map_get(table, txt);
    if (old) {
        int rc = dv_err_set(err, es,
                            "%s: key %s is already listed as %s '%s' (a key "
                            "may be in one list, once)",
                            path, txt, dv_role_name(old->role), old->name);
        zcert_destroy(&cert);
        return rc;
    }
    s_entry_t *e = calloc(1, sizeof *e);
    if (e)
        memcpy(e->key, txt, sizeof e->key);
    if (!e || dv_map_put(table, e->key, e) != 0) {
        free(e);
        zcert_destroy(&cert);
        return dv_err_set(err, es, "%s: out of memory", path);
    }
    e->role = role;
    memcpy(e->name, name, strlen(name) + 1);
    zcert_destroy(&cert);
    return 0;
}

static int
s_load_dir(dv_map_t *table, dv_role_t role, const char *dir, char *err,
           size_t es)
{
    DIR *d = opendir(dir);
    if (!d)
        return dv_err_set(err, es, "--curve-%ss %s: %s", dv_role_name(role),
                          dir, strerror(errno));
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >=
            (int)sizeof path) {
            rc = dv_err_set(err, es, "%s/%s: path too long", dir, de->d_name);
            break;
        }
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (s_ends_with(de->d_name, "_secret")) {
            rc = dv_err_set(err, es,
                            "%s: a secret certificate in an allow-list "
                            "directory; copy only the public NAME.key there",
                            path);
            break;
        }
        rc = s_load_cert(table, role, path, de->d_name, err, es);
    }
    closedir(d);
    return rc;
}

/* Reads the server's secret certificate into key and its public text. */
static int
s_load_secret(const char *path, uint8_t key[32], char public_txt[41], char *err,
              size_t es)
{
    if (dv_access_secret_file(path, "--curve-secret", err, es) != 0)
        return -1;
    zcert_t *cert = zcert_load(path);
    if (!cert)
        return dv_err_set(err, es,
                          "--curve-secret %s: not a certificate zcert can "
                          "read",
                          path);
    static const uint8_t zero[32];
    int rc = 0;
    if (!memcmp(zcert_secret_key(cert), zero, 32))
        rc = dv_err_set(err, es,
                        "--curve-secret %s: holds no secret key (give the "
                        "NAME.key_secret file)",
                        path);
    else {
        memcpy(key, zcert_secret_key(cert), 32);
        snprintf(public_txt, 41, "%s", zcert_public_txt(cert));
    }
    zcert_destroy(&cert);
    return rc;
}

/* A new table from the configured dirs, or NULL with err. */
static dv_map_t *
s_load_table(dv_curve_server_t *self, char *err, size_t es)
{
    dv_map_t *t = dv_map_new(free);
    if (!t) {
        dv_err_set(err, es, "out of memory");
        return NULL;
    }
    for (int r = DV_ROLE_CLIENT; r < DV_ROLE_COUNT_; r++) {
        if (self->dirs[r] &&
            s_load_dir(t, (dv_role_t)r, self->dirs[r], err, es) != 0) {
            dv_map_destroy(&t);
            return NULL;
        }
    }
    return t;
}

/* ---- the ZAP handler ------------------------------------------------------ */

static void
s_send_str(void *sock, const char *s, int flags)
{
    zmq_send(sock, s, strlen(s), flags);
}

/* Sends a ZAP reply (RFC 27); key (Z85) goes into the metadata when set. */
static void
s_zap_reply(void *sock, zmq_msg_t *reqid, const char *status, const char *text,
            const char *user, const char *key)
{
    s_send_str(sock, "1.0", ZMQ_SNDMORE);
    zmq_send(sock, zmq_msg_data(reqid), zmq_msg_size(reqid), ZMQ_SNDMORE);
    s_send_str(sock, status, ZMQ_SNDMORE);
    s_send_str(sock, text, ZMQ_SNDMORE);
    s_send_str(sock, user, ZMQ_SNDMORE);
    uint8_t meta[1 + sizeof S_KEY_PROP + 4 + 40];
    size_t n = 0;
    if (key) {
        size_t nl = strlen(S_KEY_PROP), vl = strlen(key);
        meta[n++] = (uint8_t)nl;
        memcpy(meta + n, S_KEY_PROP, nl);
        n += nl;
        meta[n++] = 0;
        meta[n++] = 0;
        meta[n++] = 0;
        meta[n++] = (uint8_t)vl;
        memcpy(meta + n, key, vl);
        n += vl;
    }
    zmq_send(sock, meta, n, 0);
}

static bool
s_frame_is(zmq_msg_t *m, const char *s)
{
    size_t n = strlen(s);
    return zmq_msg_size(m) == n && !memcmp(zmq_msg_data(m), s, n);
}

static void
s_frame_text(zmq_msg_t *m, char *out, size_t size)
{
    size_t n = zmq_msg_size(m);
    if (n >= size)
        n = size - 1;
    memcpy(out, zmq_msg_data(m), n);
    out[n] = '\0';
}

/* Answers one ZAP request. Frames: version, request id, domain, address,
 * identity, mechanism, credentials... */
static void
s_zap_answer(dv_curve_server_t *self)
{
    enum { MAXF = 8 };
    zmq_msg_t f[MAXF];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, self->zap, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < MAXF)
            f[n++] = m;
        else
            zmq_msg_close(&m);
    }
    if (n < 2) {
        /* Not even a request id: REP still owes an answer. */
        zmq_msg_t empty;
        zmq_msg_init(&empty);
        s_zap_reply(self->zap, n ? &f[0] : &empty, "500", "bad request", "",
                    NULL);
        zmq_msg_close(&empty);
    } else if (n < 7 || !s_frame_is(&f[0], "1.0") ||
               !s_frame_is(&f[5], "CURVE") || zmq_msg_size(&f[6]) != 32) {
        s_zap_reply(self->zap, &f[1], "400", "CURVE with a listed key only", "",
                    NULL);
    } else {
        char key[41];
        zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
        s_entry_t e = { "", DV_ROLE_NONE, "" };
        char domain[64];
        s_frame_text(&f[2], domain, sizeof domain);
        pthread_mutex_lock(&self->mu);
        const s_entry_t *found = dv_map_get(self->table, key);
        if (found)
            e = *found;
        for (int i = 0; i < self->ndomains; i++)
            if (!strcmp(self->domains[i].name, domain) &&
                self->domains[i].roles &&
                !(self->domains[i].roles & DV_ROLE_BIT(e.role)))
                e.role = DV_ROLE_NONE; /* listed, not for this socket */
        pthread_mutex_unlock(&self->mu);
        if (e.role != DV_ROLE_NONE) {
            char user[S_NAME_MAX + 16];
            snprintf(user, sizeof user, "%s:%s", dv_role_name(e.role), e.name);
            s_zap_reply(self->zap, &f[1], "200", "OK", user, key);
        } else {
            s_zap_reply(self->zap, &f[1], "400", "key not allowed", "", NULL);
            if (!dv_map_get(self->refused, key) &&
                dv_map_size(self->refused) < S_REFUSED_MAX) {
                char addr[128];
                s_frame_text(&f[3], addr, sizeof addr);
                char *k = strdup(key);
                if (k && dv_map_put(self->refused, k, k) != 0)
                    free(k);
                dv_log(DV_WARN, "curve.key_refused", DV_STR("key", key),
                       DV_STR("domain", domain), DV_STR("address", addr));
            }
        }
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void *
s_zap_run(void *arg)
{
    dv_curve_server_t *self = arg;
    while (!atomic_load(&self->stop)) {
        zmq_pollitem_t it = { self->zap, 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll(&it, 1, 100);
        if (rc < 0 && errno == ETERM)
            break;
        if (rc > 0)
            s_zap_answer(self);
    }
    return NULL;
}

/* ---- the server object ---------------------------------------------------- */

dv_curve_server_t *
dv_curve_server_new(void *zctx, const dv_curve_config_t *cfg, char *err,
                    size_t err_size)
{
    dv_curve_server_t *self = calloc(1, sizeof *self);
    if (!self) {
        dv_err_set(err, err_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&self->mu, NULL);
    self->secret_file = strdup(cfg->secret_file);
    for (int r = DV_ROLE_CLIENT; r < DV_ROLE_COUNT_; r++)
        if (cfg->dirs[r])
            self->dirs[r] = strdup(cfg->dirs[r]);
    self->refused = dv_map_new(free);
    self->logged = dv_map_new(free);
    if (!self->secret_file || !self->refused || !self->logged) {
        dv_err_set(err, err_size, "out of memory");
        goto fail;
    }
    if (s_load_secret(self->secret_file, self->secret_key, self->public_txt,
                      err, err_size) != 0)
        goto fail;
    self->table = s_load_table(self, err, err_size);
    if (!self->table)
        goto fail;
    self->zap = zmq_socket(zctx, ZMQ_REP);
    if (!self->zap || zmq_bind(self->zap, S_ZAP_ENDPOINT) != 0) {
        dv_err_set(err, err_size, "ZAP handler: %s", zmq_strerror(errno));
        goto fail;
    }
    int linger = 0;
    zmq_setsockopt(self->zap, ZMQ_LINGER, &linger, sizeof linger);
    if (pthread_create(&self->thread, NULL, s_zap_run, self) != 0) {
        dv_err_set(err, err_size, "ZAP handler: the thread did not start");
        goto fail;
    }
    self->running = true;
    return self;
fail:
    dv_curve_server_destroy(&self);
    return NULL;
}

void
dv_curve_server_destroy(dv_curve_server_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dv_curve_server_t *self = *self_p;
    if (self->running) {
        atomic_store(&self->stop, 1);
        pthread_join(self->thread, NULL);
    }
    if (self->zap)
        zmq_close(self->zap);
    dv_map_destroy(&self->table);
    dv_map_destroy(&self->refused);
    dv_map_destroy(&self->logged);
    free(self->secret_file);
    for (int r = 0; r < DV_ROLE_COUNT_; r++)
        free(self->dirs[r]);
    memset(self->secret_key, 0, sizeof self->secret_key);
    pthread_mutex_destroy(&self->mu);
    free(self);
    *self_p = NULL;
}

int
dv_curve_server_reload(dv_curve_server_t *self, char *err, size_t err_size)
{
    uint8_t key[32];
    char txt[41];
    if (s_load_secret(self->secret_file, key, txt, err, err_size) != 0)
        return -1;
    dv_map_t *t = s_load_table(self, err, err_size);
    if (!t) {
        memset(key, 0, sizeof key);
        return -1;
    }
    pthread_mutex_lock(&self->mu);
    dv_map_t *old = self->table;
    self->table = t;
    pthread_mutex_unlock(&self->mu);
    dv_map_destroy(&old);
    memcpy(self->secret_key, key, sizeof key);
    memcpy(self->public_txt, txt, sizeof txt);
    memset(key, 0, sizeof key);
    return 0;
}

size_t
dv_curve_server_keys(dv_curve_server_t *self)
{
    pthread_mutex_lock(&self->mu);
    size_t n = dv_map_size(self->table);
    pthread_mutex_unlock(&self->mu);
    return n;
}

int
dv_curve_server_socket(dv_curve_server_t *self, void *sock, const char *domain,
                       unsigned roles)
{
    pthread_mutex_lock(&self->mu);
    bool known = false;
    for (int i = 0; i < self->ndomains; i++)
        known = known || !strcmp(self->domains[i].name, domain);
    if (!known && self->ndomains < S_DOMAINS_MAX) {
        snprintf(self->domains[self->ndomains].name,
                 sizeof self->domains[0].name, "%s", domain);
        self->domains[self->ndomains++].roles = roles;
    }
    pthread_mutex_unlock(&self->mu);
    int on = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &on, sizeof on) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, self->secret_key, 32) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) != 0)
        return -1;
    return 0;
}

dv_role_t
dv_curve_peer(dv_curve_server_t *self, zmq_msg_t *msg, char *name, size_t size,
              char *key)
{
    if (size)
        name[0] = '\0';
    if (key)
        key[0] = '\0';
    const char *user = zmq_msg_gets(msg, "User-Id");
    const char *pk = zmq_msg_gets(msg, S_KEY_PROP);
    if (!user || !pk || strlen(pk) != 40)
        return DV_ROLE_NONE;
    const char *colon = strchr(user, ':');
    if (!colon)
        return DV_ROLE_NONE;
    char rname[16];
    size_t rl = (size_t)(colon - user);
    if (rl >= sizeof rname)
        return DV_ROLE_NONE;
    memcpy(rname, user, rl);
    rname[rl] = '\0';
    dv_role_t role = dv_role_from_name(rname);
    bool ok = false;
    pthread_mutex_lock(&self->mu);
    const s_entry_t *e = dv_map_get(self->table, pk);
    if (e && e->role == role && !strcmp(e->name, colon + 1))
        ok = true;
    pthread_mutex_unlock(&self->mu);
    if (size)
        snprintf(name, size, "%s", colon + 1);
    if (key)
        memcpy(key, pk, 41);
    return ok ? role : DV_ROLE_NONE;
}

bool
dv_curve_server_first_refusal(dv_curve_server_t *self, const char *key,
                              const char *what)
{
    char k[192];
    snprintf(k, sizeof k, "%s|%s", key ? key : "", what ? what : "");
    if (dv_map_get(self->logged, k))
        return false;
    if (dv_map_size(self->logged) < S_REFUSED_MAX) {
        char *item = strdup(k); /* the map keeps a pointer to its key */
        if (item && dv_map_put(self->logged, item, item) != 0)
            free(item); /* said again next time */
    }
    return true;
}

/* ---- keygen --------------------------------------------------------------- */

/* Creates path empty with mode, failing if it exists. */
static int
s_create_excl(const char *path, mode_t mode, char *err, size_t es)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST)
            return dv_err_set(err, es,
                              "%s exists: not overwritten (remove the old "
                              "pair first, or choose another name)",
                              path);
        return dv_err_set(err, es, "%s: %s", path, strerror(errno));
    }
    int rc = fchmod(fd, mode);
    close(fd);
    if (rc != 0)
        return dv_err_set(err, es, "%s: %s", path, strerror(errno));
    return 0;
}

int
dv_curve_keygen(const char *dir, const char *name, char *err, size_t err_size)
{
    if (!s_name_ok(name) || strchr(name, '/') || name[0] == '.')
        return dv_err_set(err, err_size,
                          "'%s': a certificate name is 1..%d bytes, no '/', "
                          "no control characters, not starting with '.'",
                          name, S_NAME_MAX);
    char pub[4096], sec[4096 + 8];
    if (snprintf(pub, sizeof pub, "%s/%s.key", dir, name) >= (int)sizeof pub)
        return dv_err_set(err, err_size, "%s: path too long", dir);
    snprintf(sec, sizeof sec, "%s_secret", pub);
    struct stat st;
    if (stat(pub, &st) == 0)
        return dv_err_set(err, err_size,
                          "%s exists: not overwritten (remove the old pair "
                          "first, or choose another name)",
                          pub);
    /* The secret file is made 0600 before a byte goes into it; zcert
     * writes into the file as it is (fopen keeps an existing file's mode).
     */
    if (s_create_excl(sec, 0600, err, err_size) != 0)
        return -1;
    if (s_create_excl(pub, 0644, err, err_size) != 0) {
        unlink(sec);
        return -1;
    }
    mode_t old = umask(077);
    zcert_t *cert = zcert_new();
    int rc = -1;
    if (!cert) {
        dv_err_set(err, err_size, "could not make a key pair");
    } else {
        zcert_set_meta(cert, "name", "%s", name);
        if (zcert_save_secret(cert, sec) != 0 || chmod(sec, 0600) != 0)
            dv_err_set(err, err_size, "%s: %s", sec, strerror(errno));
        else if (zcert_save_public(cert, pub) != 0)
            dv_err_set(err, err_size, "%s: %s", pub, strerror(errno));
        else
            rc = 0;
        zcert_destroy(&cert);
    }
    umask(old);
    if (rc != 0) {
        unlink(sec);
        unlink(pub);
    }
    return rc;
}

/* ---- endpoints ------------------------------------------------------------ */
