#include "worker_limits.h"

#include <ctype.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dv_clock.h"

/* Processes looked at when passing on the soft-timeout signal: a command,
 * its shell, and what they started, rarely more than a handful. */
#define S_TREE_MAX 64
/* How deep below the child: sh -c, a script, the program it runs... */
#define S_TREE_DEPTH 6

int
worker_limits_parse_size(const char *s, int64_t *bytes)
{
    if (!s)
        return -1;
    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return -1;
    int64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        if (v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*s++ - '0');
    }
    int shift = 0;
    switch (*s) {
    case 'k':
    case 'K':
        shift = 10;
        s++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        s++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        s++;
        break;
    default:
        break;
    }
    if (shift && (*s == 'i' || *s == 'I'))
        s++;
    if (*s == 'b' || *s == 'B')
        s++;
    while (isspace((unsigned char)*s))
        s++;
    if (*s || v > (INT64_MAX >> shift))
        return -1;
    *bytes = v << shift;
    return 0;
}

int
worker_limits_parse_soft(const char *s, int64_t *ms, int *pct)
{
    if (!s || !*s)
        return -1;
    size_t n = strlen(s);
    if (s[n - 1] == '%') {
        char *end;
        long p = strtol(s, &end, 10);
        if (end != s + n - 1 || end == s || p < 1 || p > 99)
            return -1;
        *pct = (int)p;
        *ms = 0;
        return 0;
    }
    int64_t v;
    if (dv_duration_parse(s, &v) != 0 || v < 0)
        return -1;
    *ms = v;
    *pct = 0;
    return 0;
}

int64_t
worker_limits_soft_ms(int64_t soft_ms, int soft_pct, int64_t hard_ms)
{
    if (soft_ms > 0)
        return hard_ms > 0 && soft_ms >= hard_ms ? 0 : soft_ms;
    if (soft_pct > 0 && hard_ms > 0) {
        int64_t t = hard_ms * soft_pct / 100;
        return t > 0 ? t : 0;
    }
    return 0;
}

int64_t
worker_limits_rss(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/statm", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0)
        return -1;
    buf[r] = '\0';
    /* "size resident shared text lib data dt", in pages */
    char *end;
    strtoull(buf, &end, 10);
    unsigned long long resident = strtoull(end, NULL, 10);
    long page = sysconf(_SC_PAGESIZE);
    return (int64_t)resident * (page > 0 ? page : 4096);
}

/* ---- async-signal-safe helpers ---------------------------------------- */

/* Appends the decimal form of v at p; returns the end. */
static char *
s_put_uint(char *p, unsigned long v)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k > 0)
        *p++ = tmp[--k];
    return p;
}

static char *
s_put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

/* Reads at most size - 1 bytes of a small /proc file, NUL-terminated.
 * Returns the length, or -1. */
static ssize_t
s_read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len < size - 1) {
        ssize_t r = read(fd, buf + len, size - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/* True if process pid has a handler installed for sig. */
static bool
s_catches(pid_t pid, int sig)
{
    char path[64], buf[4096];
    char *p = s_put_str(path, "/proc/");
    p = s_put_uint(p, (unsigned long)pid);
    s_put_str(p, "/status")[0] = '\0';
    if (s_read_small(path, buf, sizeof buf) <= 0)
        return false;
    static const char key[] = "\nSigCgt:";
    const char *s = buf;
    for (; *s; s++) {
        size_t i = 0;
        while (key[i] && s[i] == key[i])
            i++;
        if (!key[i])
            break;
    }
    if (!*s)
        return false;
    s += sizeof key - 1;
    while (*s == ' ' || *s == '\t')
        s++;
    unsigned long long mask = 0;
    for (; *s; s++) {
        int d;
        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if (*s >= 'a' && *s <= 'f')
            d = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'F')
            d = *s - 'A' + 10;
        else
            break;
        mask = (mask << 4) | (unsigned)d;
    }
    return sig >= 1 && sig <= 64 && (mask >> (sig - 1)) & 1u;
}

/* Adds the children of pid to tree (up to S_TREE_MAX); returns the new
 * count. */
static int
s_children(pid_t pid, pid_t *tree, int n)
{
    char path[96], buf[1024];
    char *p = s_put_str(path, "/proc/");
    p = s_put_uint(p, (unsigned long)pid);
    p = s_put_str(p, "/task/");
    p = s_put_uint(p, (unsigned long)pid);
    s_put_str(p, "/children")[0] = '\0';
    if (s_read_small(path, buf, sizeof buf) <= 0)
        return n;
    unsigned long v = 0;
    bool in = false;
    for (const char *s = buf;; s++) {
        if (*s >= '0' && *s <= '9') {
            v = v * 10 + (unsigned long)(*s - '0');
            in = true;
            continue;
        }
        if (in && n < S_TREE_MAX)
            tree[n++] = (pid_t)v;
        v = 0;
        in = false;
        if (!*s)
            break;
    }
    return n;
}

int
worker_limits_tell_catchers(int sig)
{
    pid_t tree[S_TREE_MAX];
    int n = s_children(getpid(), tree, 0);
    /* Breadth first, one generation at a time. */
    int from = 0;
    for (int depth = 1; depth < S_TREE_DEPTH && from < n; depth++) {
        int to = n;
        for (int i = from; i < to; i++)
            n = s_children(tree[i], tree, n);
        from = to;
    }
    int told = 0;
    for (int i = 0; i < n; i++)
        if (s_catches(tree[i], sig) && kill(tree[i], sig) == 0)
            told++;
    return told;
}
