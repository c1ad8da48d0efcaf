/* dv_curve - CurveZMQ on a daemon's server sockets, with roles.
 *
 * A server object holds the server's secret certificate and one allow-list
 * of public certificates per role (client, operator, worker, observer). It
 * runs a ZAP handler (RFC 27) of its own on the daemon's zmq context: a
 * thread with a REP socket on inproc://zeromq.zap.01 that admits a CURVE
 * client whose public key is listed, with User-Id "ROLE:NAME" and the
 * property "X-Drover-Key" (the public key in Z85), and refuses any other key at the
 * handshake (logged once per key, by its public key; never a secret).
 *
 * The daemon's loop asks dv_curve_peer() for the role of each message's
 * sender: the key is looked up again in the current lists, so a key removed
 * by dv_curve_server_reload() (SIGHUP) has every later message refused,
 * also on connections it opened before.
 *
 * Certificates are czmq zcert files (NAME.key public, NAME.key_secret
 * secret). czmq is used only to read and write those files, at start, on
 * reload and by keygen; the ZAP thread and the per-message check do not
 * call it (czmq aborts when an allocation fails).
 *
 * Threads: new, reload, socket, peer and destroy are called from one thread
 * (the daemon's loop); the ZAP thread reads the lists under a mutex that
 * reload takes to swap them.
 */
#ifndef DV_CURVE_H
#define DV_CURVE_H

#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

typedef enum {
    DV_ROLE_NONE = 0,
    DV_ROLE_CLIENT,
    DV_ROLE_OPERATOR,
    DV_ROLE_WORKER,
    DV_ROLE_OBSERVER,
    DV_ROLE_COUNT_
} dv_role_t;

/* "client", "operator", "worker", "observer"; "none" for DV_ROLE_NONE. */
const char *dv_role_name(dv_role_t role);

/* The role called name, or DV_ROLE_NONE. */
dv_role_t dv_role_from_name(const char *name);

/* The environment variable that gives a daemon the allow-list directory of
 * role where no flag does: DROVER_CURVE_CLIENTS, DROVER_CURVE_OPERATORS,
 * DROVER_CURVE_WORKERS, DROVER_CURVE_OBSERVERS; NULL for DV_ROLE_NONE. */
const char *dv_role_env(dv_role_t role);

typedef struct {
    const char *secret_file;          /* the server's NAME.key_secret */
    const char *dirs[DV_ROLE_COUNT_]; /* allow-list dir per role, or NULL */
} dv_curve_config_t;

typedef struct dv_curve_server dv_curve_server_t;

/* Loads the server certificate and the lists, and starts the ZAP handler
 * on zctx (before any CURVE socket of zctx binds). Returns NULL with the
 * reason in err. */
dv_curve_server_t *dv_curve_server_new(void *zctx, const dv_curve_config_t *cfg,
                                       char *err, size_t err_size);

/* Stops the ZAP thread and closes its socket (before zmq_ctx_term). */
void dv_curve_server_destroy(dv_curve_server_t **self_p);

/* Reads the server certificate and the lists again. On failure (reason in
 * err) everything stays as it was. The new server certificate applies to
 * sockets made afterwards; bound sockets keep theirs. Returns 0 or -1. */
int dv_curve_server_reload(dv_curve_server_t *self, char *err, size_t err_size);

/* Keys now listed, over all roles. */
size_t dv_curve_server_keys(dv_curve_server_t *self);

/* Makes sock a CURVE server of this certificate in ZAP domain domain; call
 * before zmq_bind. roles is the set of roles (bit 1 << role) admitted at
 * the handshake on that domain; 0 admits every listed key. The first call
 * for a domain sets its roles. Returns 0 or -1 (errno). */
int dv_curve_server_socket(dv_curve_server_t *self, void *sock,
                           const char *domain, unsigned roles);

/* The bit of role in dv_curve_server_socket's roles. */
#define DV_ROLE_BIT(r) (1u << (r))

/* The role of the peer that sent msg (any frame of a message from a CURVE
 * socket whose handshake this server's ZAP handler answered), its
 * certificate name into name (size bytes, may be 0), and its public key in
 * Z85 into key (41 bytes, may be NULL). DV_ROLE_NONE if msg carries no
 * such identity, or its key is no longer listed with that role and name. */
dv_role_t dv_curve_peer(dv_curve_server_t *self, zmq_msg_t *msg, char *name,
                        size_t size, char *key);

/* True the first time the loop asks about this (key, what) pair, so that
 * a refusal (of verb what, to the peer of public key key) is logged once.
 * After a bounded number of pairs, every new pair is said to be first
 * again rather than remembered. Loop thread only. */
bool dv_curve_server_first_refusal(dv_curve_server_t *self, const char *key,
                                   const char *what);

/* Writes a new certificate pair DIR/NAME.key (public, 0644) and
 * DIR/NAME.key_secret (secret, 0600), metadata "name" = NAME. Refuses to
 * overwrite either file, and a NAME that is not a plain file name. Returns
 * 0 or -1 with the reason in err. */
int dv_curve_keygen(const char *dir, const char *name, char *err,
                    size_t err_size);

#endif
