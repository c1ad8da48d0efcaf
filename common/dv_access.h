/* dv_access - two questions every daemon asks before it serves: may this
 * secret file be trusted (only its owner can read it), and does this
 * endpoint stay on this host. Used by the broker, the collector, and the
 * CurveZMQ key loaders. No I/O besides stat(2); never logs.
 */
#ifndef DV_ACCESS_H
#define DV_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

/* Refuses a secret file whose group or others have any access: 0 when st
 * (of the file at path) grants them nothing, else -1 with the reason in err
 * ("WHAT: PATH has mode 0644: ...; chmod 600 PATH"). what names the flag
 * or the file's purpose. */
int dv_access_secret_mode(const struct stat *st, const char *what,
                          const char *path, char *err, size_t err_size);

/* The same for the file at path (stat first; a file that cannot be
 * stat'ed is refused with the reason). */
int dv_access_secret_file(const char *path, const char *what, char *err,
                          size_t err_size);

/* True when a ZeroMQ endpoint can only be reached from this host: ipc://,
 * inproc://, or tcp:// on 127.0.0.0/8, ::1 (or an IPv4-mapped 127/8),
 * "localhost" or the "lo" interface. Anything else ("*", another address,
 * an interface or host name, a "source;destination" pair) counts as
 * reachable from the network. */
bool dv_endpoint_is_local(const char *endpoint);

#endif
