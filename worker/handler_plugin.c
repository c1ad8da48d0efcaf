#include "handler_plugin.h"

#include <dlfcn.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drover_handler.h"
#include "dv_json.h"
#include "dv_log.h"
#include "worker_ipc.h"

/* Longest JSON text set_result_json() parses. A result may be 1 MiB as
 * msgpack, and the same value as JSON text takes more (quotes, escapes,
 * digits), so the text gets room to spare; the msgpack size is what is
 * checked against the limit. */
#define S_RESULT_JSON_MAX (8u << 20)

struct handler_plugin_t {
    char *type;                 /* the job type it serves */
    char *path;                 /* what was given to dlopen() */
    char *config;               /* JSON text for init() */
    void *dl;                   /* dlopen() handle; NULL if not loaded */
    const drover_handler_v1 *h; /* the plugin's table; NULL if unusable */
    void *state;                /* what init() made */
    bool inited;                /* init() succeeded: cleanup() is owed */
    bool broken;                /* cannot be loaded: for good */
    char err[1024];             /* why it cannot run jobs; "" if it can */
};

/* One attempt in progress. Its io is what the plugin is handed; the
 * plugin's calls find their way back here through worker_private. */
typedef struct {
    drover_handler_io io;
    handler_plugin_t *plugin;
    const worker_handler_job_t *job;
    const char *id; /* NUL-terminated copies, for log lines */
    const char *type;
    worker_progress_fn progress;
    void *arg;
    char *result; /* msgpack, from set_result_json() */
    size_t result_len;
    bool failed;          /* fail() was called */
    dv_failure_t failure; /* what it said; message in text */
    char text[DV_TEXT_MAX + 1];
} s_run_t;

/* The on_stop() callback of the running attempt. Read by the SIGUSR1
 * handler, so they are written only while SIGUSR1 is blocked. */
static void (*volatile s_stop_fn)(void *);
static void *volatile s_stop_arg;
static volatile sig_atomic_t s_stop_fired;

static void
s_block_usr1(bool block)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

static void
s_broken(handler_plugin_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->err, sizeof self->err, fmt, ap);
    va_end(ap);
    self->broken = true;
    self->h = NULL;
}

/* dlerror() text, or a fallback when there is none. */
static const char *
s_dlerror(void)
{
    const char *e = dlerror();
    return e ? e : "unknown error";
}

static void
s_load(handler_plugin_t *self)
{
    dlerror();
    self->dl = dlopen(self->path, RTLD_NOW | RTLD_LOCAL);
    if (!self->dl) {
        s_broken(self, "plugin for type %s cannot be loaded: %s", self->type,
                 s_dlerror());
        return;
    }
    dlerror();
    void *sym = dlsym(self->dl, DROVER_HANDLER_ENTRY_SYMBOL);
    if (!sym) {
        s_broken(self,
                 "plugin for type %s: %s does not "
                 "export " DROVER_HANDLER_ENTRY_SYMBOL "(): %s",
                 self->type, self->path, s_dlerror());
        return;
    }
    /* POSIX lets a dlsym() result become a function pointer; memcpy says
     * so without a cast the compiler would question. */
    const drover_handler_v1 *(*entry)(void);
    memcpy(&entry, &sym, sizeof entry);
    const drover_handler_v1 *h = entry();
    if (!h) {
        s_broken(self,
                 "plugin for type %s: " DROVER_HANDLER_ENTRY_SYMBOL
                 "() in %s returned NULL",
                 self->type, self->path);
        return;
    }
    if (h->abi_version != DROVER_HANDLER_ABI) {
        s_broken(self,
                 "plugin for type %s: %s was built for handler ABI version "
                 "%u, and this worker has version %d (rebuild it against "
                 "this worker's drover_handler.h)",
                 self->type, self->path, (unsigned)h->abi_version,
                 DROVER_HANDLER_ABI);
        return;
    }
    if (!h->run) {
        s_broken(self, "plugin for type %s: %s has no run() function",
                 self->type, self->path);
        return;
    }
    self->h = h;
}

static const char *
s_name(const handler_plugin_t *self)
{
    return self->h && self->h->name ? self->h->name : self->type;
}

/* Calls init() unless it already succeeded; the error says why not. */
static void
s_init(handler_plugin_t *self)
{
    if (!self->h || self->inited)
        return;
    if (self->h->init) {
        void *state = NULL;
        int rc = self->h->init(self->config ? self->config : "null", &state);
        if (rc != 0) {
            snprintf(self->err, sizeof self->err,
                     "plugin %s for type %s: init() returned %d", s_name(self),
                     self->type, rc);
            return;
        }
        self->state = state;
    }
    self->inited = true;
    self->err[0] = '\0';
}

handler_plugin_t *
handler_plugin_new(const char *type, const char *path, const char *config_json)
{
    handler_plugin_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->type = strdup(type);
    self->path = strdup(path);
    self->config = config_json ? strdup(config_json) : NULL;
    if (!self->type || !self->path || (config_json && !self->config)) {
        handler_plugin_destroy(&self);
        return NULL;
    }
    s_load(self);
    s_init(self);
    return self;
}

void
handler_plugin_destroy(handler_plugin_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    handler_plugin_t *self = *self_p;
    if (self->inited && self->h && self->h->cleanup)
        self->h->cleanup(self->state);
    if (self->dl)
        dlclose(self->dl);
    free(self->type);
    free(self->path);
    free(self->config);
    free(self);
    *self_p = NULL;
}

const char *
handler_plugin_error(const handler_plugin_t *self)
{
    return self->err[0] ? self->err : NULL;
}

const char *
handler_plugin_type(const handler_plugin_t *self)
{
    return self->type;
}

/* ---- what the plugin calls ---------------------------------------------- */

static s_run_t *
s_run_of(drover_handler_io *io)
{
    return io ? (s_run_t *)io->worker_private : NULL;
}

static int
s_io_progress(drover_handler_io *io, int64_t current, int64_t total,
              const char *message)
{
    s_run_t *r = s_run_of(io);
    if (!r || current < 0 || total < 0)
        return -1;
    size_t n = message ? strlen(message) : 0;
    n = worker_utf8_cut(message ? message : "", n, DV_TEXT_MAX);
    if (!worker_utf8_valid(message ? message : "", n))
        n = 0; /* the numbers still count; the text cannot travel */
    if (r->progress)
        r->progress(r->arg, current, total, message ? message : "", n);
    return 0;
}

static int
s_io_set_result_json(drover_handler_io *io, const char *json)
{
    s_run_t *r = s_run_of(io);
    if (!r || !json)
        return -1;
    size_t n = strlen(json);
    if (n > S_RESULT_JSON_MAX)
        return -1;
    json_error_t je;
    json_t *j = json_loadb(json, n, JSON_DECODE_ANY, &je);
    if (!j)
        return -1;
    size_t len = 0;
    char *mp = dv_json_to_msgpack(j, &len);
    json_decref(j);
    if (!mp || len > DV_PAYLOAD_MAX) {
        free(mp);
        return -1;
    }
    free(r->result);
    r->result = mp;
    r->result_len = len;
    return 0;
}

static int
s_io_fail(drover_handler_io *io, const char *category, const char *message,
          int retryable, double retry_after_s)
{
    s_run_t *r = s_run_of(io);
    if (!r)
        return -1;
    dv_category_t cat = DV_CAT_NONE;
    if (category)
        cat = dv_category_parse(category, strlen(category));
    if (cat == DV_CAT_NONE)
        cat = DV_CAT_HANDLER;
    const char *msg = message ? message : "";
    size_t n = worker_utf8_cut(msg, strlen(msg), DV_TEXT_MAX);
    if (!worker_utf8_valid(msg, n)) {
        msg = "(the plugin's message is not valid UTF-8)";
        n = strlen(msg);
    }
    if (n == 0) {
        n = (size_t)snprintf(r->text, sizeof r->text, "plugin %s failed",
                             s_name(r->plugin));
    } else {
        memcpy(r->text, msg, n);
        r->text[n] = '\0';
    }
    dv_failure_init(&r->failure);
    r->failure.category = cat;
    r->failure.retryable = retryable != 0;
    r->failure.message = dv_strn(r->text, n);
    if (retry_after_s > 0 && isfinite(retry_after_s))
        r->failure.retry_after_ms =
            retry_after_s > 86400.0 * 365
                ? (int64_t)86400 * 365 * 1000
                : (int64_t)llround(retry_after_s * 1000.0);
    r->failed = true;
    return 0;
}

static int
s_io_should_stop(drover_handler_io *io)
{
    s_run_t *r = s_run_of(io);
    return r && r->job->stop && *r->job->stop ? 1 : 0;
}

static int
s_io_on_stop(drover_handler_io *io, void (*fn)(void *arg), void *arg)
{
    s_run_t *r = s_run_of(io);
    if (!r)
        return -1;
    /* With SIGUSR1 held back, the handler cannot run between the flag
     * check and the registration: fn is called exactly once either way. */
    s_block_usr1(true);
    s_stop_fn = fn;
    s_stop_arg = arg;
    s_stop_fired = 0;
    if (fn && r->job->stop && *r->job->stop) {
        s_stop_fired = 1;
        fn(arg);
    }
    s_block_usr1(false);
    return 0;
}

static void
s_io_log(drover_handler_io *io, int level, const char *message)
{
    s_run_t *r = s_run_of(io);
    if (!r)
        return;
    dv_level_t lvl = DV_INFO;
    switch (level) {
    case DROVER_LOG_DEBUG:
        lvl = DV_DEBUG;
        break;
    case DROVER_LOG_WARN:
        lvl = DV_WARN;
        break;
    case DROVER_LOG_ERROR:
        lvl = DV_ERROR;
        break;
    default:
        break;
    }
    dv_log(lvl, "worker.plugin_log", DV_STR("job", r->id),
           DV_STR("type", r->type), DV_STR("plugin", s_name(r->plugin)),
           DV_STR("message", message ? message : ""));
}

void
handler_plugin_soft_stop(void)
{
    void (*fn)(void *) = s_stop_fn;
    if (fn && !s_stop_fired) {
        s_stop_fired = 1;
        fn(s_stop_arg);
    }
}

/* ---- running a job ------------------------------------------------------ */

static void
s_fail(worker_outcome_t *out, dv_category_t cat, bool retryable,
       const char *text)
{
    worker_outcome_fail(out, cat, retryable, "%s", text);
}

/* Copies a view into buf as a NUL-terminated string; returns the copy. */
static char *
s_cstr(char **buf, dv_str_t s)
{
    char *p = *buf;
    if (s.ptr && s.len)
        memcpy(p, s.ptr, s.len);
    p[s.ptr ? s.len : 0] = '\0';
    *buf = p + (s.ptr ? s.len : 0) + 1;
    return p;
}

void
handler_plugin_run(handler_plugin_t *self, const worker_handler_job_t *job,
                   worker_progress_fn progress, void *arg,
                   worker_outcome_t *out)
{
    worker_outcome_init(out);
    if (self->broken) {
        s_fail(out, DV_CAT_HANDLER, false, self->err);
        return;
    }
    s_init(self);
    if (!self->inited) {
        s_fail(out, DV_CAT_HANDLER, true, self->err);
        return;
    }
    char *payload = dv_msgpack_to_json_text(
        job->payload.ptr, job->payload.ptr ? job->payload.len : 0);
    size_t strings =
        job->id.len + job->type.len + job->queue.len + job->trace.len + 4;
    char *names = malloc(strings);
    if (!payload || !names) {
        free(names);
        if (payload)
            s_fail(out, DV_CAT_RESOURCE_EXHAUSTED, true, "out of memory");
        else
            s_fail(out, DV_CAT_INVALID_INPUT, false,
                   "payload cannot be written as JSON for the plugin");
        free(payload);
        return;
    }
    char *p = names;
    drover_job_info info = {
        .id = s_cstr(&p, job->id),
        .attempt = job->attempt,
        .type = s_cstr(&p, job->type),
        .queue = s_cstr(&p, job->queue),
        .payload = payload,
        .payload_len = strlen(payload),
        .trace = NULL,
        .worker = job->worker ? job->worker : "",
    };
    char *trace = s_cstr(&p, job->trace);
    if (job->trace.ptr && job->trace.len)
        info.trace = trace;

    s_run_t r;
    memset(&r, 0, sizeof r);
    r.io.abi_version = DROVER_HANDLER_ABI;
    r.io.worker_private = &r;
    r.io.progress = s_io_progress;
    r.io.set_result_json = s_io_set_result_json;
    r.io.fail = s_io_fail;
    r.io.should_stop = s_io_should_stop;
    r.io.on_stop = s_io_on_stop;
    r.io.log = s_io_log;
    r.plugin = self;
    r.job = job;
    r.id = info.id;
    r.type = info.type;
    r.progress = progress;
    r.arg = arg;

    int rc = self->h->run(self->state, &info, &r.io);

    if (s_stop_fn) {
        s_block_usr1(true);
        s_stop_fn = NULL;
        s_stop_arg = NULL;
        s_block_usr1(false);
    }
    if (r.failed) {
        out->ok = false;
        out->failure = r.failure;
        memcpy(out->text, r.text, sizeof out->text);
        out->failure.message = dv_strn(out->text, r.failure.message.len);
        free(r.result);
    } else if (rc == DROVER_HANDLER_OK) {
        static const char nil = (char)0xc0;
        if (r.result) {
            worker_outcome_own(out, r.result, r.result_len);
        } else {
            out->ok = true;
            out->result = dv_strn(&nil, 1);
        }
    } else {
        char text[256];
        snprintf(text, sizeof text, "plugin %s returned %d", s_name(self), rc);
        s_fail(out, DV_CAT_HANDLER, rc == DROVER_HANDLER_RETRY, text);
        /* Recorded like an exit status, when it could be one. */
        out->failure.exit_code = rc > 0 && rc <= 255 ? rc : -1;
        free(r.result);
    }
    free(payload);
    free(names);
}

/* ---- as a worker_handler ----------------------------------------------- */

static void
s_handler_run(void *impl, const worker_handler_job_t *job,
              worker_progress_fn pf, void *arg, worker_outcome_t *out)
{
    handler_plugin_run(impl, job, pf, arg, out);
}

static const worker_handler_ops_t s_ops = { "plugin", s_handler_run, true,
                                            false };

worker_handler_t
handler_plugin_handler(handler_plugin_t *self)
{
    return (worker_handler_t){ &s_ops, self };
}
