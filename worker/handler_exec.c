#include "handler_exec.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dv_clock.h"
#include "dv_json.h"
#include "dv_log.h"
#include "worker_ipc.h"

extern char **environ;

/* The command's end of the progress pipe is always this descriptor. */
#define S_PROGRESS_FD 3

/* ---- pure helpers ---------------------------------------------------- */

static bool
s_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

/* Reads a whole number >= 0 at *p (before end); advances *p. */
static int
s_number(const char **p, const char *end, int64_t *out)
{
    const char *s = *p;
    int64_t v = 0;
    if (s >= end || !isdigit((unsigned char)*s))
        return -1;
    while (s < end && isdigit((unsigned char)*s)) {
        if (v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*s - '0');
        s++;
    }
    if (s < end && !s_space(*s))
        return -1;
    *p = s;
    *out = v;
    return 0;
}

static const char *
s_skip_space(const char *p, const char *end)
{
    while (p < end && s_space(*p))
        p++;
    return p;
}

int
handler_exec_parse_progress(const char *line, size_t len, int64_t *current,
                            int64_t *total, const char **msg, size_t *msg_len)
{
    const char *p = line, *end = line + len;
    while (end > p && s_space(end[-1]))
        end--;
    p = s_skip_space(p, end);
    if ((size_t)(end - p) < 8 || memcmp(p, "PROGRESS", 8) != 0)
        return -1;
    p += 8;
    if (p < end && !s_space(*p))
        return -1;
    p = s_skip_space(p, end);
    if (s_number(&p, end, current) != 0)
        return -1;
    p = s_skip_space(p, end);
    if (s_number(&p, end, total) != 0)
        return -1;
    p = s_skip_space(p, end);
    *msg = p;
    *msg_len = (size_t)(end - p);
    return 0;
}

/* "WORD value" hint lines on the progress descriptor. */
static int
s_parse_hint(const char *line, size_t len, const char *word, const char **value,
             size_t *vlen)
{
    const char *p = line, *end = line + len;
    size_t wl = strlen(word);
    while (end > p && s_space(end[-1]))
        end--;
    p = s_skip_space(p, end);
    if ((size_t)(end - p) <= wl || memcmp(p, word, wl) != 0 || !s_space(p[wl]))
        return -1;
    p = s_skip_space(p + wl, end);
    if (p == end)
        return -1;
    *value = p;
    *vlen = (size_t)(end - p);
    return 0;
}

/* A "DETAIL text" line: the word as s_parse_hint takes it, then one space
 * or tab; the text is the rest without trailing whitespace, indentation
 * kept (a traceback's lines are indented). "DETAIL" alone is an empty
 * line. */
static int
s_parse_detail(const char *line, size_t len, const char **value, size_t *vlen)
{
    const char *p = line, *end = line + len;
    while (end > p && s_space(end[-1]))
        end--;
    p = s_skip_space(p, end);
    if ((size_t)(end - p) < 6 || memcmp(p, "DETAIL", 6) != 0)
        return -1;
    p += 6;
    if (p < end) {
        if (!s_space(*p))
            return -1;
        p++;
    }
    *value = p;
    *vlen = (size_t)(end - p);
    return 0;
}

size_t
handler_exec_last_line(const char *buf, size_t len, const char **line)
{
    const char *end = buf + len;
    for (;;) {
        while (end > buf && s_space(end[-1]))
            end--;
        if (end == buf)
            return 0;
        const char *b = end;
        while (b > buf && b[-1] != '\n')
            b--;
        const char *s = s_skip_space(b, end);
        if (s < end) {
            *line = s;
            return (size_t)(end - s);
        }
        end = b;
    }
}

static char *
s_pack_text(const char *s, size_t n, size_t *rlen)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (worker_utf8_valid(s, n)) {
        msgpack_pack_str(&pk, n);
        msgpack_pack_str_body(&pk, s, n);
    } else {
        msgpack_pack_bin(&pk, n);
        msgpack_pack_bin_body(&pk, s, n);
    }
    *rlen = sb.size;
    return msgpack_sbuffer_release(&sb);
}

char *
handler_exec_result(const char *out, size_t len, size_t *rlen)
{
    const char *b = out, *e = out + len;
    while (e > b && s_space(e[-1]))
        e--;
    const char *t = s_skip_space(b, e);
    if (t == e) {
        char *nil = malloc(1);
        if (nil)
            *nil = (char)0xc0;
        *rlen = 1;
        return nil;
    }
    json_error_t je;
    json_t *j = json_loadb(t, (size_t)(e - t), JSON_DECODE_ANY, &je);
    if (j) {
        char *mp = dv_json_to_msgpack(j, rlen);
        json_decref(j);
        if (mp)
            return mp;
        /* too deep to convert: keep it as text */
    }
    return s_pack_text(b, (size_t)(e - b), rlen);
}

/* ---- running the command --------------------------------------------- */

static char *
s_env_entry(const char *name, const char *value, size_t vlen)
{
    size_t n = strlen(name);
    char *e = malloc(n + 1 + vlen + 1);
    if (!e)
        return NULL;
    memcpy(e, name, n);
    e[n] = '=';
    memcpy(e + n + 1, value, vlen);
    e[n + 1 + vlen] = '\0';
    /* a NUL inside a wire string just ends the value early */
    return e;
}

static bool
s_env_ours(const char *entry)
{
    static const char *names[] = { "DROVER_JOB_ID=", "DROVER_ATTEMPT=",
                                   "DROVER_QUEUE=",  "DROVER_JOB_TYPE=",
                                   "DROVER_WORKER=", "DROVER_PROGRESS_FD=",
                                   "TRACEPARENT=" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strncmp(entry, names[i], strlen(names[i])) == 0)
            return true;
    return false;
}

/* The command's environment: ours, then the inherited one minus ours. */
static char **
s_build_env(const worker_handler_job_t *job, size_t *nown)
{
    size_t n = 0;
    while (environ && environ[n])
        n++;
    char **env = calloc(n + 8, sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    char num[32];
    env[k++] = s_env_entry("DROVER_JOB_ID", job->id.ptr, job->id.len);
    int len = snprintf(num, sizeof num, "%d", (int)job->attempt);
    env[k++] = s_env_entry("DROVER_ATTEMPT", num, (size_t)len);
    env[k++] = s_env_entry("DROVER_QUEUE", job->queue.ptr, job->queue.len);
    env[k++] = s_env_entry("DROVER_JOB_TYPE", job->type.ptr, job->type.len);
    env[k++] = s_env_entry("DROVER_WORKER", job->worker, strlen(job->worker));
    len = snprintf(num, sizeof num, "%d", S_PROGRESS_FD);
    env[k++] = s_env_entry("DROVER_PROGRESS_FD", num, (size_t)len);
    if (job->trace.ptr && job->trace.len)
        env[k++] = s_env_entry("TRACEPARENT", job->trace.ptr, job->trace.len);
    *nown = k;
    for (size_t i = 0; i < k; i++)
        if (!env[i])
            return NULL; /* the child process exits soon; no cleanup */
    for (size_t i = 0; i < n; i++)
        if (!s_env_ours(environ[i]))
            env[k++] = environ[i];
    env[k] = NULL;
    return env;
}

static void
s_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Appends p[0..n) to buf (len bytes of cap used), keeping the last cap
 * bytes when there are more. */
static void
s_keep_end(char *buf, size_t cap, size_t *len, const char *p, size_t n)
{
    if (n >= cap) {
        memcpy(buf, p + n - cap, cap);
        *len = cap;
        return;
    }
    if (*len + n > cap) {
        size_t drop = *len + n - cap;
        memmove(buf, buf + drop, *len - drop);
        *len -= drop;
    }
    memcpy(buf + *len, p, n);
    *len += n;
}

/* Progress-pipe state: a line buffer and the failure hints. */
typedef struct {
    char line[HANDLER_EXEC_LINE_MAX];
    size_t len;
    bool overlong; /* dropping the rest of a too-long line */
    int64_t retry_after_ms;
    dv_category_t category;
    int retryable;                 /* RETRYABLE: 1 yes, 0 no, -1 not said */
    char message[DV_TEXT_MAX + 1]; /* MESSAGE, "" if not said */
    /* DETAIL lines, each with its newline: the last DV_DETAILS_MAX bytes
     * (the end of a traceback says the most); cut to a UTF-8 boundary
     * and repaired when it goes into the outcome. */
    char details[DV_DETAILS_MAX];
    size_t dlen;
    worker_progress_fn fn;
    void *arg;
    const worker_handler_job_t *job;
} s_prog_t;

static void
s_prog_line(s_prog_t *pg, const char *l, size_t n)
{
    int64_t cur, tot;
    const char *msg, *v;
    size_t ml, vl;
    if (handler_exec_parse_progress(l, n, &cur, &tot, &msg, &ml) == 0) {
        if (pg->fn)
            pg->fn(pg->arg, cur, tot, msg, ml);
        return;
    }
    if (s_parse_detail(l, n, &v, &vl) == 0) {
        s_keep_end(pg->details, sizeof pg->details, &pg->dlen, v, vl);
        s_keep_end(pg->details, sizeof pg->details, &pg->dlen, "\n", 1);
        return;
    }
    if (s_parse_hint(l, n, "RETRY_AFTER", &v, &vl) == 0) {
        char buf[64];
        int64_t ms;
        if (vl < sizeof buf) {
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            if (dv_duration_parse(buf, &ms) == 0) {
                pg->retry_after_ms = ms;
                return;
            }
        }
    } else if (s_parse_hint(l, n, "CATEGORY", &v, &vl) == 0) {
        dv_category_t c = dv_category_parse(v, vl);
        if (c != DV_CAT_NONE) {
            pg->category = c;
            return;
        }
    } else if (s_parse_hint(l, n, "RETRYABLE", &v, &vl) == 0) {
        static const char *const yes[] = { "yes", "true", "1" }, *const no[] = {
            "no", "false", "0"
        };
        for (int i = 0; i < 3; i++) {
            if (vl == strlen(yes[i]) && !memcmp(v, yes[i], vl)) {
                pg->retryable = 1;
                return;
            }
            if (vl == strlen(no[i]) && !memcmp(v, no[i], vl)) {
                pg->retryable = 0;
                return;
            }
        }
    } else if (s_parse_hint(l, n, "MESSAGE", &v, &vl) == 0) {
        vl = worker_utf8_cut(v, vl, DV_TEXT_MAX);
        memcpy(pg->message, v, vl);
        pg->message[vl] = '\0';
        return;
    }
    char id[64];
    dv_log(DV_DEBUG, "worker.bad_progress_line",
           DV_STR("job", dv_str_copy(pg->job->id, id, sizeof id)),
           DV_INT("bytes", n));
}

static void
s_prog_feed(s_prog_t *pg, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\n') {
            if (!pg->overlong)
                s_prog_line(pg, pg->line, pg->len);
            pg->len = 0;
            pg->overlong = false;
        } else if (pg->len < sizeof pg->line) {
            pg->line[pg->len++] = c;
        } else {
            pg->overlong = true;
        }
    }
}

/* Keeps the last HANDLER_EXEC_ERR_TAIL bytes of stderr. */
typedef struct {
    char buf[HANDLER_EXEC_ERR_TAIL];
    size_t len;
} s_tail_t;

static void
s_tail_add(s_tail_t *t, const char *p, size_t n)
{
    s_keep_end(t->buf, sizeof t->buf, &t->len, p, n);
}

static void
s_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* In the forked process: wire the pipes to 0..3 and exec the shell. */
static void
s_exec_child(const char *command, char **env, int in, int out, int err,
             int prog)
{
    /* If the worker child dies (SIGKILL from a timeout), take the shell
     * with it even if it left the process group. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGTERM, SIG_DFL); /* the worker child catches it; we must not */
    signal(SIGPIPE, SIG_DFL);
    /* All four sources are >= 4 (0..3 are taken in a worker child), so the
     * dup2 calls cannot clobber each other. */
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 ||
        dup2(prog, S_PROGRESS_FD) < 0)
        _exit(127);
    char *argv[] = { "sh", "-c", (char *)command, NULL };
    execve("/bin/sh", argv, env);
    _exit(127);
}

void
handler_exec_run(const char *command, const worker_handler_job_t *job,
                 worker_progress_fn progress, void *arg, worker_outcome_t *out)
{
    worker_outcome_init(out);
    char id[64];
    dv_str_copy(job->id, id, sizeof id);

    char *input = dv_msgpack_to_json_text(
        job->payload.ptr, job->payload.ptr ? job->payload.len : 0);
    if (!input) {
        worker_outcome_fail(
            out, DV_CAT_INVALID_INPUT, false, "%s",
            "payload cannot be written as JSON for the command");
        return;
    }
    size_t in_len = strlen(input);
    char *in_buf = realloc(input, in_len + 2);
    if (!in_buf) {
        free(input);
        worker_outcome_fail(out, DV_CAT_RESOURCE_EXHAUSTED, true, "%s",
                            "out of memory");
        return;
    }
    in_buf[in_len++] = '\n';

    int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 },
        pprog[2] = { -1, -1 };
    size_t nown = 0;
    char **env = s_build_env(job, &nown);
    if (!env || pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) ||
        pipe2(perr, O_CLOEXEC) || pipe2(pprog, O_CLOEXEC)) {
        worker_outcome_fail(out, DV_CAT_RESOURCE_EXHAUSTED, true,
                            "cannot set up the command: %s", strerror(errno));
        goto cleanup;
    }
    pid_t pid = fork();
    if (pid < 0) {
        worker_outcome_fail(out, DV_CAT_RESOURCE_EXHAUSTED, true,
                            "cannot start the command: %s", strerror(errno));
        goto cleanup;
    }
    if (pid == 0)
        s_exec_child(command, env, pin[0], pout[1], perr[1], pprog[1]);

    s_close(&pin[0]);
    s_close(&pout[1]);
    s_close(&perr[1]);
    s_close(&pprog[1]);
    s_nonblock(pin[1]);
    s_nonblock(pout[0]);
    s_nonblock(perr[0]);
    s_nonblock(pprog[0]);

    char *obuf = malloc(HANDLER_EXEC_OUT_MAX + 1);
    size_t olen = 0, in_off = 0;
    bool overflow = false;
    s_tail_t tail;
    s_prog_t pg;
    tail.len = 0;
    memset(&pg, 0, sizeof pg);
    pg.retryable = -1;
    pg.fn = progress;
    pg.arg = arg;
    pg.job = job;
    char chunk[65536];
    if (!obuf) {
        /* keep going so the command is not left blocked; report later */
        overflow = true;
    }

    /* One poll over stdin, stdout, stderr and progress, so a command that
     * writes a lot before reading all its input cannot deadlock us. */
    while (pout[0] >= 0 || perr[0] >= 0) {
        struct pollfd p[4];
        int fds[4] = { pin[1], pout[0], perr[0], pprog[0] };
        for (int i = 0; i < 4; i++) {
            p[i].fd = fds[i];
            p[i].events = i == 0 ? POLLOUT : POLLIN;
            p[i].revents = 0;
        }
        if (poll(p, 4, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents) {
            ssize_t w = write(pin[1], in_buf + in_off, in_len - in_off);
            if (w > 0)
                in_off += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) ||
                in_off == in_len)
                s_close(&pin[1]); /* done, or the command closed stdin */
        }
        if (p[1].revents) {
            ssize_t r;
            if (!overflow)
                r = read(pout[0], obuf + olen, HANDLER_EXEC_OUT_MAX + 1 - olen);
            else
                r = read(pout[0], chunk, sizeof chunk);
            if (r > 0 && !overflow) {
                olen += (size_t)r;
                if (olen > HANDLER_EXEC_OUT_MAX) {
                    /* Stop reading: the command gets EPIPE or SIGPIPE on
                     * its next write instead of filling memory. */
                    overflow = true;
                    s_close(&pout[0]);
                }
            } else if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                s_close(&pout[0]);
            }
        }
        if (p[2].revents) {
            ssize_t r = read(perr[0], chunk, sizeof chunk);
            if (r > 0)
                s_tail_add(&tail, chunk, (size_t)r);
            else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                s_close(&perr[0]);
        }
        if (p[3].revents) {
            ssize_t r = read(pprog[0], chunk, sizeof chunk);
            if (r > 0)
                s_prog_feed(&pg, chunk, (size_t)r);
            else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                s_close(&pprog[0]);
        }
    }
    s_close(&pin[1]);
    /* Lines written to the progress pipe before exit are still wanted. */
    while (pprog[0] >= 0) {
        ssize_t r = read(pprog[0], chunk, sizeof chunk);
        if (r > 0)
            s_prog_feed(&pg, chunk, (size_t)r);
        else if (r < 0 && errno == EINTR)
            continue;
        else
            s_close(&pprog[0]);
    }
    if (pg.len && !pg.overlong)
        s_prog_line(&pg, pg.line, pg.len); /* last line without newline */

    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;

    const char *line;
    size_t ll = handler_exec_last_line(tail.buf, tail.len, &line);
    if (overflow) {
        /* Whatever the exit status: usually SIGPIPE from our closing the
         * pipe on it, and the real problem is the size. */
        if (obuf)
            worker_outcome_fail(out, DV_CAT_HANDLER, false, "%s",
                                "result larger than 1 MiB");
        else
            worker_outcome_fail(out, DV_CAT_RESOURCE_EXHAUSTED, true, "%s",
                                "out of memory");
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        size_t rlen = 0;
        char *result = handler_exec_result(obuf, olen, &rlen);
        if (!result) {
            worker_outcome_fail(out, DV_CAT_RESOURCE_EXHAUSTED, true, "%s",
                                "out of memory");
        } else if (rlen > DV_PAYLOAD_MAX) {
            free(result);
            worker_outcome_fail(out, DV_CAT_HANDLER, false, "%s",
                                "result larger than 1 MiB");
        } else {
            worker_outcome_own(out, result, rlen);
        }
    } else if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        out->failure.category =
            pg.category != DV_CAT_NONE ? pg.category : DV_CAT_HANDLER;
        out->failure.retryable =
            pg.retryable >= 0 ? pg.retryable == 1 : code == 75;
        out->failure.exit_code = code;
        out->failure.retry_after_ms = pg.retry_after_ms;
        if (pg.message[0]) {
            snprintf(out->text, sizeof out->text, "%s", pg.message);
        } else if (ll) {
            ll = worker_utf8_cut(line, ll, DV_TEXT_MAX);
            memcpy(out->text, line, ll);
            out->text[ll] = '\0';
        } else {
            snprintf(out->text, sizeof out->text, "exit status %d", code);
        }
        out->failure.message = dv_strn(out->text, strlen(out->text));
    } else {
        int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        out->failure.category = DV_CAT_CRASHED;
        out->failure.retryable = true;
        out->failure.signal = sig;
        snprintf(out->text, sizeof out->text,
                 "command killed by signal %d (%s)", sig, strsignal(sig));
        out->failure.message = dv_str(out->text);
    }
    /* Whatever made it fail, what the command said about it goes with
     * the failure; a success sends neither. */
    if (!out->ok)
        worker_outcome_details(out, pg.details, pg.dlen, tail.buf, tail.len);
    free(obuf);

cleanup:
    s_close(&pin[0]);
    s_close(&pin[1]);
    s_close(&pout[0]);
    s_close(&pout[1]);
    s_close(&perr[0]);
    s_close(&perr[1]);
    s_close(&pprog[0]);
    s_close(&pprog[1]);
    free(in_buf);
    if (env) {
        for (size_t i = 0; i < nown; i++)
            free(env[i]);
        free(env);
    }
}

/* ---- as a worker_handler ----------------------------------------------- */

static void
s_run(void *impl, const worker_handler_job_t *job, worker_progress_fn pf,
      void *arg, worker_outcome_t *out)
{
    handler_exec_run(impl, job, pf, arg, out);
    if (!out->ok && job->stop && *job->stop && out->failure.signal == SIGUSR1) {
        /* It caught SIGUSR1 and then died of it: it was told and gave up,
         * which is a timeout, not a crash. */
        out->failure.category = DV_CAT_TIMEOUT;
        out->failure.message = dv_str("stopped at the soft timeout (the "
                                      "command ended on SIGUSR1)");
    }
}

static const worker_handler_ops_t s_ops = { "exec", s_run, true, true };

worker_handler_t
handler_exec_handler(const char *command)
{
    return (worker_handler_t){ &s_ops, (void *)command };
}
