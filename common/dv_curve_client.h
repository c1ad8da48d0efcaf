/* dv_curve_client - the client side of CurveZMQ, for every socket that
 * connects to a broker (libdrover, the CLI, workers, the collector).
 *
 * Two files make a client: our certificate's secret file (zcert format,
 * as `drover keygen NAME` writes it: NAME.key_secret, mode 0600) and the
 * server's public certificate (NAME.key). They are read with czmq's zcert,
 * checked, and their keys set on a socket before it connects
 * (ZMQ_CURVE_SERVERKEY, ZMQ_CURVE_PUBLICKEY, ZMQ_CURVE_SECRETKEY). Both
 * paths NULL means plain ZeroMQ, as before CurveZMQ.
 *
 * A secret file that group or others may access is refused; so is a
 * public certificate given as our secret, or one path without the other.
 * Error texts name the files, never a key. Blocking file I/O only; no
 * logging (callers log).
 */
#ifndef DV_CURVE_CLIENT_H
#define DV_CURVE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

/* Environment variables that give the paths where no flag does. */
#define DV_CURVE_ENV_SECRET "DROVER_CURVE_SECRET"
#define DV_CURVE_ENV_SERVER "DROVER_CURVE_SERVER"
/* The collector's public certificate, for the commands that query it
 * (unset: those queries are plain). */
#define DV_CURVE_ENV_COLLECTOR_SERVER "DROVER_COLLECTOR_CURVE_SERVER"

/* Z85 text of a 32-byte key, and its NUL. */
#define DV_CURVE_KEY_SIZE 41

/* The keys a client socket needs; on = false for plain ZeroMQ. Holds a
 * secret: wipe it with dv_curve_client_wipe() when done. */
typedef struct {
    bool on;
    char public_key[DV_CURVE_KEY_SIZE]; /* ours */
    char secret_key[DV_CURVE_KEY_SIZE]; /* ours */
    char server_key[DV_CURVE_KEY_SIZE]; /* the server's public key */
} dv_curve_keys_t;

/* Fills a NULL path from its environment variable (unset or empty: stays
 * NULL). A path that is given is kept, even if the other comes from the
 * environment. */
void dv_curve_client_env(const char **secret_path, const char **server_path);

/* Reads our secret certificate and the server's public certificate into
 * keys. Both NULL: keys->on = false, returns 0. Returns 0, or -1 with a
 * one-line reason in err (a missing, unreadable or malformed file, a
 * secret file with group/other permissions, a public certificate given as
 * the secret, one path without the other). keys is wiped on failure. */
int dv_curve_client_load(dv_curve_keys_t *keys, const char *secret_path,
                         const char *server_path, char *err, size_t size);

/* Sets keys on sock (before zmq_connect). Nothing when keys->on is false.
 * Returns 0, or -1 with a reason in err (a libzmq without CURVE). */
int dv_curve_client_apply(const dv_curve_keys_t *keys, void *sock, char *err,
                          size_t size);

/* Overwrites the keys (the secret included) and sets on = false. */
void dv_curve_client_wipe(dv_curve_keys_t *keys);

/* Loads both files and sets their keys on sock, before it connects; the
 * keys are not kept. Both paths NULL: nothing (plain). Returns 0 or -1
 * with a reason in err. */
int dv_curve_client_socket(void *sock, const char *secret_path,
                           const char *server_public_path, char *err,
                           size_t size);

#endif
