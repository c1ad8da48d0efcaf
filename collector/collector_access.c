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

#include "dv_access.h"
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
    if (secret && dv_access_secret_mode(&st, what, path, err, es) != 0) {
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
