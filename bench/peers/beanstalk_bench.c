/* beanstalk_bench - the end-to-end no-op benchmark against a running
 * beanstalkd, speaking its text protocol (beanstalkd's doc/protocol.txt)
 * directly; Debian has no Python client for it.
 *
 * One producer (the main thread, one connection) pipelines `put`s of the
 * body {"type":"noop"}, at most --window jobs unanswered at once (as
 * libdrover's drover_submit_many: 32 messages of 1,000 jobs). --consumers
 * threads, one connection each, `reserve-with-timeout` a job and, once it
 * is there, send its `delete` and the next reserve in one write (no-op
 * work: a job is done when beanstalkd answers DELETED). Timed from the
 * first put to the last DELETED. Prints one line:
 *
 *   beanstalkd: 100000 jobs, 1 producer, 2 consumers: put N jobs/s,
 *   end-to-end N jobs/s (S s)
 *
 * Exits 1 if anything fails, or if the jobs are not all done within
 * --timeout seconds. Every wait is bounded (poll and socket timeouts).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "bench_flags.h"
#include "dv_clock.h"

#define S_MAX_CONSUMERS 64
#define S_BODY          "{\"type\":\"noop\"}"
#define S_PUT           "put 0 0 60 15\r\n" S_BODY "\r\n"

static struct {
    const char *host;
    int port, jobs, consumers, window, timeout_s;
} s_o;

static const dv_flag_t s_flags[] = {
    DV_FLAG_STR("host", &s_o.host, .arg = "ADDR", .dflt = "127.0.0.1",
                .help = "beanstalkd's address"),
    DV_FLAG_INTEGER("port", &s_o.port, 1, 65535, .arg = "N", .dflt = "11300",
                    .help = "beanstalkd's port"),
    DV_FLAG_INTEGER("jobs", &s_o.jobs, 1, 100000000, .arg = "N",
                    .dflt = "100000", .help = "no-op jobs to put"),
    DV_FLAG_INTEGER("consumers", &s_o.consumers, 1, S_MAX_CONSUMERS, .arg = "N",
                    .dflt = "2",
                    .help = "consumer threads, one connection each"),
    DV_FLAG_INTEGER("window", &s_o.window, 1, 1000000, .arg = "N",
                    .dflt = "32000", .help = "puts in flight at most"),
    DV_FLAG_INTEGER("timeout", &s_o.timeout_s, 1, 86400, .arg = "SECONDS",
                    .dflt = "600", .help = "give up after this long"),
    DV_FLAG_TABLE_END,
};

static atomic_int s_done;  /* jobs deleted */
static atomic_bool s_stop; /* consumers: leave */
static int64_t s_end_us;   /* when the last job was deleted */
static int s_cfd[S_MAX_CONSUMERS];

static void
s_die(const char *what)
{
    fprintf(stderr, "beanstalk_bench: %s\n", what);
    exit(1);
}

static int
s_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)s_o.port) };
    if (fd < 0 || inet_pton(AF_INET, s_o.host, &a.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        fprintf(stderr, "beanstalk_bench: cannot connect to %s:%d: %s\n",
                s_o.host, s_o.port, strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = { .tv_sec = 10 }; /* no read waits for ever */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void
s_send(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (atomic_load(&s_stop))
                return;
            s_die("send failed");
        }
        buf += w;
        len -= (size_t)w;
    }
}

/* A connection's input, read in large pieces and cut into lines. */
typedef struct {
    int fd;
    char buf[1 << 16];
    size_t start, end;
} s_in_t;

/* Reads more into in; returns false at end of input (or after a stop). */
static bool
s_fill(s_in_t *in)
{
    if (in->start > 0) {
        memmove(in->buf, in->buf + in->start, in->end - in->start);
        in->end -= in->start;
        in->start = 0;
    }
    if (in->end == sizeof in->buf)
        s_die("line too long");
    for (;;) {
        ssize_t r =
            recv(in->fd, in->buf + in->end, sizeof in->buf - in->end, 0);
        if (r > 0) {
            in->end += (size_t)r;
            return true;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (atomic_load(&s_stop))
            return false;
        s_die(r == 0 ? "beanstalkd closed the connection"
                     : "no answer from beanstalkd within 10 s");
    }
}

/* The next line without its \r\n (NUL-terminated in place), or NULL at
 * end of input. block: wait for one. */
static char *
s_line(s_in_t *in, bool block)
{
    for (;;) {
        char *p = in->end > in->start
                      ? memchr(in->buf + in->start, '\n', in->end - in->start)
                      : NULL;
        if (p) {
            char *line = in->buf + in->start;
            in->start = (size_t)(p - in->buf) + 1;
            *p = 0;
            if (p > line && p[-1] == '\r')
                p[-1] = 0;
            return line;
        }
        if (!block || !s_fill(in))
            return NULL;
    }
}

/* Skips n bytes of input (a job's body and its \r\n). */
static bool
s_skip(s_in_t *in, size_t n)
{
    while (in->end - in->start < n)
        if (!s_fill(in))
            return false;
    in->start += n;
    return true;
}

static void *
s_consume(void *arg)
{
    int fd = *(int *)arg;
    s_in_t *in = calloc(1, sizeof *in);
    if (!in)
        s_die("out of memory");
    in->fd = fd;
    static const char reserve[] = "reserve-with-timeout 1\r\n";
    s_send(fd, reserve, sizeof reserve - 1);
    while (!atomic_load(&s_stop)) {
        char *line = s_line(in, true);
        if (!line)
            break;
        unsigned long long id;
        size_t bytes;
        if (!strcmp(line, "TIMED_OUT") || !strcmp(line, "DEADLINE_SOON")) {
            s_send(fd, reserve, sizeof reserve - 1);
            continue;
        }
        if (sscanf(line, "RESERVED %llu %zu", &id, &bytes) != 2) {
            fprintf(stderr, "beanstalk_bench: reserve: %s\n", line);
            exit(1);
        }
        if (!s_skip(in, bytes + 2))
            break;
        char cmd[96];
        int len = snprintf(cmd, sizeof cmd, "delete %llu\r\n%s", id, reserve);
        s_send(fd, cmd, (size_t)len);
        if (!(line = s_line(in, true)))
            break;
        if (strcmp(line, "DELETED") != 0) {
            fprintf(stderr, "beanstalk_bench: delete: %s\n", line);
            exit(1);
        }
        if (atomic_fetch_add(&s_done, 1) + 1 == s_o.jobs) {
            s_end_us = dv_mono_us();
            atomic_store(&s_stop, true);
            for (int i = 0; i < s_o.consumers; i++)
                shutdown(s_cfd[i], SHUT_RDWR); /* wakes the others */
        }
    }
    free(in);
    return NULL;
}

/* Puts every job, at most s_o.window unanswered; returns when all are
 * answered INSERTED. */
static void
s_produce(int fd, int64_t deadline_us)
{
    s_in_t *in = calloc(1, sizeof *in);
    size_t cap = 1000 * (sizeof S_PUT - 1);
    char *out = malloc(cap);
    if (!in || !out)
        s_die("out of memory");
    in->fd = fd;
    int queued = 0, acked = 0;
    size_t off = 0, len = 0;
    while (acked < s_o.jobs) {
        while (queued < s_o.jobs && queued - acked < s_o.window &&
               len + sizeof S_PUT - 1 <= cap) {
            memcpy(out + len, S_PUT, sizeof S_PUT - 1);
            len += sizeof S_PUT - 1;
            queued++;
        }
        struct pollfd p = { .fd = fd,
                            .events = POLLIN | (off < len ? POLLOUT : 0) };
        int r = poll(&p, 1, 1000);
        if (r < 0 && errno != EINTR)
            s_die("poll failed");
        if (dv_mono_us() > deadline_us)
            s_die("the puts were not answered in time");
        if (r <= 0)
            continue;
        if (p.revents & POLLOUT) {
            ssize_t w =
                send(fd, out + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                s_die("send failed");
            if (w > 0 && (off += (size_t)w) == len)
                off = len = 0;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (!s_fill(in))
                s_die("beanstalkd closed the connection");
            char *line;
            while ((line = s_line(in, false))) {
                if (strncmp(line, "INSERTED ", 9) != 0) {
                    fprintf(stderr, "beanstalk_bench: put: %s\n", line);
                    exit(1);
                }
                acked++;
            }
        }
    }
    free(out);
    free(in);
}

int
main(int argc, char **argv)
{
    int rc = bench_flags("beanstalk_bench", s_flags, argc, argv);
    if (rc >= 0)
        return rc;
    pthread_t th[S_MAX_CONSUMERS];
    for (int i = 0; i < s_o.consumers; i++)
        s_cfd[i] = s_connect();
    int pfd = s_connect();
    int64_t t0 = dv_mono_us();
    int64_t deadline = t0 + (int64_t)s_o.timeout_s * 1000000;
    for (int i = 0; i < s_o.consumers; i++)
        if (pthread_create(&th[i], NULL, s_consume, &s_cfd[i]) != 0)
            s_die("cannot start a consumer");
    s_produce(pfd, deadline);
    int64_t put_us = dv_mono_us() - t0;
    /* The consumers end with the last job; wait for that, bounded. */
    while (!atomic_load(&s_stop)) {
        if (dv_mono_us() > deadline)
            s_die("the jobs were not all done in time");
        usleep(1000);
    }
    for (int i = 0; i < s_o.consumers; i++)
        pthread_join(th[i], NULL);
    double total_s = (double)(s_end_us - t0) / 1e6;
    printf("beanstalkd: %d jobs, 1 producer, %d consumers: put %.0f jobs/s, "
           "end-to-end %.0f jobs/s (%.2f s)\n",
           s_o.jobs, s_o.consumers, s_o.jobs / ((double)put_us / 1e6),
           s_o.jobs / total_s, total_s);
    close(pfd);
    for (int i = 0; i < s_o.consumers; i++)
        close(s_cfd[i]);
    return 0;
}
