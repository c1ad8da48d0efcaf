/* plugin_probe - a plugin handler for the tests: the payload's "op" says
 * what to do, so one plugin exercises every part of drover_handler.h.
 *
 *   {"op": "echo"}                      result = the payload
 *   {"op": "info"}                      result = the job's fields
 *   {"op": "config"}                    result = the config init() got
 *   {"op": "progress", "n": N}          progress 1..N, result {"steps": N}
 *   {"op": "fail", "category", "message", "retryable", "retry_after"}
 *   {"op": "return", "code": N}         returns N without calling fail()
 *   {"op": "bad_result"}                result {"rc": set_result_json("{")}
 *   {"op": "log", "message": "..."}     io->log at info, result null
 *   {"op": "crash"}                     abort()
 *   {"op": "sleep", "s": S}             sleeps S seconds, ignoring stop
 *   {"op": "wait_stop", "max": S}       polls should_stop() for up to S s;
 *                                       result {"stopped": bool, "after_ms"}
 *   {"op": "on_stop", "max": S}         waits for the on_stop() callback on
 *                                       a pipe; result {"callback": bool}
 *   {"op": "leak", "mb": N}             allocates and touches N MiB and
 *                                       keeps it; result {"pid", "leaked_mb"}
 *
 * Config: {"fail_init": N} makes init() return N; {"cleanup_marker":
 * PATH} makes cleanup() append "cleanup PID\n" to PATH.
 *
 * Built three ways: as is; with PROBE_ABI=2 (a plugin for another ABI
 * version); with PROBE_NO_ENTRY (a shared object that is no plugin).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drover_handler.h"

#ifndef PROBE_ABI
#define PROBE_ABI DROVER_HANDLER_ABI
#endif

typedef struct {
    char *config; /* as given to init() */
    char *marker; /* cleanup_marker, or NULL */
    void **leaks; /* what "leak" kept */
    size_t nleaks;
    size_t leaked_mb;
} probe_state;

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
probe_init(const char *config_json, void **state)
{
    json_t *c = json_loads(config_json, JSON_DECODE_ANY, NULL);
    json_t *f = json_object_get(c, "fail_init");
    if (json_is_integer(f)) {
        int rc = (int)json_integer_value(f);
        json_decref(c);
        return rc;
    }
    probe_state *st = calloc(1, sizeof *st);
    st->config = strdup(config_json);
    json_t *m = json_object_get(c, "cleanup_marker");
    if (json_is_string(m))
        st->marker = strdup(json_string_value(m));
    json_decref(c);
    *state = st;
    return 0;
}

static void
probe_cleanup(void *state)
{
    probe_state *st = state;
    if (st->marker) {
        FILE *f = fopen(st->marker, "a");
        if (f) {
            fprintf(f, "cleanup %d\n", (int)getpid());
            fclose(f);
        }
    }
    for (size_t i = 0; i < st->nleaks; i++)
        free(st->leaks[i]);
    free(st->leaks);
    free(st->config);
    free(st->marker);
    free(st);
}

static int
result(drover_handler_io *io, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc = io->set_result_json(io, text);
    free(text);
    json_decref(v);
    return rc == 0 ? DROVER_HANDLER_OK : DROVER_HANDLER_FAILED;
}

static double
num(json_t *p, const char *key, double dflt)
{
    json_t *v = json_object_get(p, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static int s_pipe[2] = { -1, -1 };

static void
on_stop_cb(void *arg)
{
    (void)arg;
    /* Only async-signal-safe calls here. */
    ssize_t r = write(s_pipe[1], "x", 1);
    (void)r;
}

static int
probe_run(void *state, const drover_job_info *job, drover_handler_io *io)
{
    probe_state *st = state;
    json_t *p = json_loads(job->payload, JSON_DECODE_ANY, NULL);
    const char *op = json_string_value(json_object_get(p, "op"));
    int rc = DROVER_HANDLER_OK;
    if (!op) {
        io->fail(io, "invalid_input", "payload must have \"op\"", 0, 0);
        rc = DROVER_HANDLER_FAILED;
    } else if (!strcmp(op, "echo")) {
        rc = result(io, json_incref(p));
    } else if (!strcmp(op, "info")) {
        rc = result(io, json_pack("{s:s, s:i, s:s, s:s, s:s?, s:s, s:I}", "id",
                                  job->id, "attempt", job->attempt, "type",
                                  job->type, "queue", job->queue, "trace",
                                  job->trace, "worker", job->worker,
                                  "payload_len", (json_int_t)job->payload_len));
    } else if (!strcmp(op, "config")) {
        json_t *c = json_loads(st->config, JSON_DECODE_ANY, NULL);
        rc = result(io, c ? c : json_null());
    } else if (!strcmp(op, "progress")) {
        int n = (int)num(p, "n", 3);
        for (int i = 1; i <= n; i++) {
            char msg[32];
            snprintf(msg, sizeof msg, "step %d", i);
            io->progress(io, i, n, msg);
            struct timespec ts = { 0, 20 * 1000000 };
            nanosleep(&ts, NULL);
        }
        rc = result(io, json_pack("{s:i}", "steps", n));
    } else if (!strcmp(op, "fail")) {
        json_t *r = json_object_get(p, "retryable");
        io->fail(io, json_string_value(json_object_get(p, "category")),
                 json_string_value(json_object_get(p, "message")),
                 json_is_true(r), num(p, "retry_after", 0));
        rc = DROVER_HANDLER_OK; /* fail() wins over the return value */
    } else if (!strcmp(op, "return")) {
        rc = (int)num(p, "code", 1);
    } else if (!strcmp(op, "bad_result")) {
        int r = io->set_result_json(io, "{");
        rc = result(io, json_pack("{s:i}", "rc", r));
    } else if (!strcmp(op, "log")) {
        const char *m = json_string_value(json_object_get(p, "message"));
        io->log(io, DROVER_LOG_INFO, m ? m : "hello from the probe");
    } else if (!strcmp(op, "crash")) {
        abort();
    } else if (!strcmp(op, "sleep")) {
        int64_t end = now_ms() + (int64_t)(num(p, "s", 1) * 1000);
        while (now_ms() < end) {
            struct timespec ts = { 0, 10 * 1000000 };
            nanosleep(&ts, NULL);
        }
    } else if (!strcmp(op, "wait_stop")) {
        int64_t start = now_ms();
        int64_t end = start + (int64_t)(num(p, "max", 10) * 1000);
        int stopped = 0;
        while (!(stopped = io->should_stop(io)) && now_ms() < end) {
            struct timespec ts = { 0, 5 * 1000000 };
            nanosleep(&ts, NULL);
        }
        rc = result(io, json_pack("{s:b, s:I}", "stopped", stopped, "after_ms",
                                  (json_int_t)(now_ms() - start)));
    } else if (!strcmp(op, "on_stop")) {
        if (s_pipe[0] < 0 && pipe2(s_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
            io->fail(io, "resource_exhausted", "pipe", 1, 0);
        } else {
            char buf[8];
            while (read(s_pipe[0], buf, sizeof buf) > 0)
                ; /* left over from an earlier job */
            io->on_stop(io, on_stop_cb, NULL);
            struct pollfd pf = { s_pipe[0], POLLIN, 0 };
            int n;
            do {
                n = poll(&pf, 1, (int)(num(p, "max", 10) * 1000));
            } while (n < 0 && errno == EINTR);
            if (n > 0) {
                ssize_t r = read(s_pipe[0], buf, 1);
                (void)r;
            }
            rc = result(io, json_pack("{s:b}", "callback", n > 0));
        }
    } else if (!strcmp(op, "leak")) {
        size_t mb = (size_t)num(p, "mb", 16);
        char *block = malloc(mb << 20);
        if (block) {
            memset(block, 0x5a, mb << 20); /* resident, not just reserved */
            void **l = realloc(st->leaks, (st->nleaks + 1) * sizeof *l);
            if (l) {
                st->leaks = l;
                st->leaks[st->nleaks++] = block;
                st->leaked_mb += mb;
            } else {
                free(block);
            }
        }
        rc = result(io, json_pack("{s:i, s:I}", "pid", (int)getpid(),
                                  "leaked_mb", (json_int_t)st->leaked_mb));
    } else {
        io->fail(io, "invalid_input", "unknown op", 0, 0);
        rc = DROVER_HANDLER_FAILED;
    }
    json_decref(p);
    return rc;
}

static const drover_handler_v1 probe_handler = {
    .abi_version = PROBE_ABI,
    .name = "probe",
    .init = probe_init,
    .run = probe_run,
    .cleanup = probe_cleanup,
};

#ifdef PROBE_NO_ENTRY
DROVER_HANDLER_EXPORT const drover_handler_v1 *
probe_entry(void)
#else
DROVER_HANDLER_EXPORT const drover_handler_v1 *
drover_handler_entry(void)
#endif
{
    return &probe_handler;
}
