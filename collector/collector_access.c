/* collector_access - secret files, local endpoints, the bearer check. */
#include "collector_access.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dv_err.h"

/* A token or a PEM file is far smaller than this. */
#define S_FILE_MAX (1 << 20)

/* Reads fd whole into a new NUL-terminated buffer; NULL with errno. */
static char *
s_read_fd(int fd, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            explicit_bzero(buf, n);
            free(buf);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n + 1 == cap) {
            char *nb = cap < S_FILE_MAX ? malloc(cap * 2) : NULL;
            if (nb)
                memcpy(nb, buf, n);
            explicit_bzero(buf, n); /* realloc would leave a copy behind */
            free(buf);
            buf = nb;
            cap *= 2;
            if (!buf)
                errno = n + 1 >= S_FILE_MAX ? EFBIG : ENOMEM;
        }
    }
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

/* Opens and reads path; with secret, refuses a file its group or others
 * may access. */
static char *
s_read(const char *path, const char *what, bool secret, size_t *len, char *err,
       size_t es)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dv_err_set(err, es, "%s: cannot read %s: %s", what, path,
                   strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        dv_err_set(err, es, "%s: %s: %s", what, path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        dv_err_set(err, es, "%s: %s is not a regular file", what, path);
        close(fd);
        return NULL;
    }
    if (secret && (st.st_mode & 077)) {
        dv_err_set(err, es,
                   "%s: %s has mode %04o: its group or others may access "
                   "it; a secret must be readable by its owner only "
                   "(chmod 600 %s)",
                   what, path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return NULL;
    }
    char *text = s_read_fd(fd, len);
    int e = errno;
    close(fd);
    if (!text) {
        dv_err_set(err, es, "%s: cannot read %s: %s", what, path, strerror(e));
        return NULL;
    }
    if (strlen(text) != *len) {
        dv_err_set(err, es, "%s: %s holds a NUL byte", what, path);
        explicit_bzero(text, *len);
        free(text);
        return NULL;
    }
    return text;
}

char *
collector_access_read_secret(const char *path, const char *what, size_t *len,
                             char *err, size_t es)
{
    return s_read(path, what, true, len, err, es);
}

char *
collector_access_read_public(const char *path, const char *what, char *err,
                             size_t es)
{
    size_t len;
    return s_read(path, what, false, &len, err, es);
}

char *
collector_access_read_token(const char *path, const char *what, char *err,
                            size_t es)
{
    size_t n;
    char *t = collector_access_read_secret(path, what, &n, err, es);
    if (!t)
        return NULL;
    if (n && t[n - 1] == '\n')
        t[--n] = '\0';
    if (n && t[n - 1] == '\r')
        t[--n] = '\0';
    const char *why = n ? NULL : "is empty";
    for (size_t i = 0; i < n && !why; i++)
        if ((unsigned char)t[i] <= ' ' || t[i] == 0x7f)
            why = "holds a space, a control character or more than one line";
    if (why) {
        collector_access_free_secret(&t);
        dv_err_set(err, es, "%s: %s %s: it must hold one token", what, path,
                   why);
        return NULL;
    }
    return t;
}

void
collector_access_free_secret(char **secret_p)
{
    if (!secret_p || !*secret_p)
        return;
    explicit_bzero(*secret_p, strlen(*secret_p));
    free(*secret_p);
    *secret_p = NULL;
}

bool
collector_access_endpoint_is_local(const char *ep)
{
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return true;
    if (strncmp(ep, "tcp://", 6))
        return false;
    const char *host = ep + 6;
    const char *colon = strrchr(host, ':');
    if (!colon)
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

bool
collector_access_bearer_ok(const char *header, const char *token)
{
    if (!header || !token || strncasecmp(header, "Bearer ", 7))
        return false;
    const char *given = header + 7;
    while (*given == ' ')
        given++;
    size_t n = strlen(given), t = strlen(token);
    /* Every byte of the token is compared, whatever the given length. */
    volatile unsigned char diff = n != t;
    for (size_t i = 0; i < t; i++)
        diff |= (unsigned char)token[i] ^ (unsigned char)(i < n ? given[i] : 0);
    return diff == 0;
}
