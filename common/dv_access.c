/* dv_access - see dv_access.h. */
#include "dv_access.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "dv_err.h"

int
dv_access_secret_mode(const struct stat *st, const char *what, const char *path,
                      char *err, size_t err_size)
{
    if (!(st->st_mode & 077))
        return 0;
    return dv_err_set(err, err_size,
                      "%s: %s has mode %04o: its group or others may access "
                      "it; a secret must be readable by its owner only "
                      "(chmod 600 %s)",
                      what, path, (unsigned)(st->st_mode & 07777), path);
}

int
dv_access_secret_file(const char *path, const char *what, char *err,
                      size_t err_size)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return dv_err_set(err, err_size, "%s: %s: %s", what, path,
                          strerror(errno));
    return dv_access_secret_mode(&st, what, path, err, err_size);
}

bool
dv_endpoint_is_local(const char *ep)
{
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return true;
    if (strncmp(ep, "tcp://", 6))
        return false;
    const char *host = ep + 6;
    if (strchr(host, ';')) /* source;destination: leaves the host */
        return false;
    const char *colon = strrchr(host, ':');
    if (!colon || colon == host)
        return false;
    char h[INET6_ADDRSTRLEN + 2];
    size_t hlen = (size_t)(colon - host);
    if (hlen >= sizeof h)
        return false;
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    if (hlen > 2 && h[0] == '[' && h[hlen - 1] == ']') {
        memmove(h, h + 1, hlen - 2);
        h[hlen - 2] = '\0';
    }
    if (!strcmp(h, "localhost") || !strcmp(h, "lo"))
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, h, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, h, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ||
               (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
    return false;
}
