#include "worker_config.h"
#include "dv_err.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dv_clock.h"
#include "dv_curve_client.h"
#include "dv_daemon.h"
#include "dv_flags.h"
#include "dv_log.h"
#include "dv_proto.h"
#include "dv_util.h"
#include "http_config.h"
#include "worker.h"
#include "worker_limits.h"

void
worker_config_defaults(worker_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->concurrency = ncpu > 0 ? (int)(ncpu > 64 ? 64 : ncpu) : 1;
    cfg->prefetch = -1;
    cfg->kill_grace_ms = 5000;
    cfg->grace_ms = 30000;
    cfg->heartbeat_ms = 1000;
    cfg->soft_timeout_pct = WORKER_SOFT_TIMEOUT_PCT;
    cfg->http_concurrency = HTTP_CONCURRENCY_DEFAULT;
    cfg->log_level = DV_INFO;
}

void
worker_config_clear(worker_config_t *cfg)
{
    dv_strv_free(&cfg->endpoints);
    dv_strv_free(&cfg->queues);
    free(cfg->name);
    free(cfg->curve_secret);
    free(cfg->curve_server);
    free(cfg->health_file);
    for (int i = 0; i < cfg->nhandlers; i++) {
        free(cfg->handlers[i].type);
        free(cfg->handlers[i].command);
    }
    free(cfg->handlers);
    for (int i = 0; i < cfg->nplugins; i++) {
        free(cfg->plugins[i].type);
        free(cfg->plugins[i].path);
        free(cfg->plugins[i].config);
    }
    free(cfg->plugins);
    http_config_destroy(&cfg->http);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- value checks shared by the file and the flags ------------------- */

static int
s_set_list(char ***list, int *n, const char *value, const char *what, int max,
           size_t item_max, char *err, size_t es)
{
    char **v = NULL;
    int k = dv_strv_split(value, &v);
    if (k == 0) {
        dv_strv_free(&v);
        return dv_err_set(err, es, "%s: empty list", what);
    }
    if (k > max) {
        dv_strv_free(&v);
        return dv_err_set(err, es, "%s: at most %d entries", what, max);
    }
    for (int i = 0; i < k; i++)
        if (strlen(v[i]) > item_max) {
            dv_strv_free(&v);
            return dv_err_set(err, es,
                              "%s: '%.40s...' is longer than %zu bytes", what,
                              v[i], item_max);
        }
    dv_strv_free(list);
    *list = v;
    *n = k;
    return 0;
}

static int
s_set_endpoints(worker_config_t *cfg, const char *value, char *err, size_t es)
{
    return s_set_list(&cfg->endpoints, &cfg->nendpoints, value, "broker", 64,
                      1024, err, es);
}

static int
s_set_queues(worker_config_t *cfg, const char *value, char *err, size_t es)
{
    return s_set_list(&cfg->queues, &cfg->nqueues, value, "queues",
                      DV_QUEUES_MAX, DV_NAME_MAX, err, es);
}

/* A certificate path (what names it in errors); "" unsets it. */
static int
s_set_path(char **dst, const char *what, const char *value, char *err,
           size_t es)
{
    if (strlen(value) > 4096)
        return dv_err_set(err, es, "%s: path longer than 4096 bytes", what);
    char *v = *value ? strdup(value) : NULL;
    if (*value && !v)
        return dv_err_set(err, es, "out of memory");
    free(*dst);
    *dst = v;
    return 0;
}

static int
s_parse_int(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int
s_set_int(const char *what, const char *value, long long lo, long long hi,
          long long *out, char *err, size_t es)
{
    /* -1 spelt out, not dv_err_set's result: the caller reads *out only
     * when this returns 0, and the compiler must see that *out is then
     * set. */
    if (s_parse_int(value, lo, hi, out) != 0) {
        dv_err_set(err, es, "%s: '%s' is not a whole number in %lld..%lld",
                   what, value, lo, hi);
        return -1;
    }
    return 0;
}

static int
s_set_duration(const char *what, const char *value, int64_t *out, char *err,
               size_t es)
{
    if (dv_duration_parse(value, out) != 0)
        return dv_err_set(err, es, "%s: '%s' is not a duration in seconds",
                          what, value);
    return 0;
}

static int
s_set_name(worker_config_t *cfg, const char *value, char *err, size_t es)
{
    size_t n = strlen(value);
    if (n == 0 || n > DV_NAME_MAX)
        return dv_err_set(err, es, "name: must be 1..%d bytes", DV_NAME_MAX);
    const char *bad = dv_name_check(value, n);
    if (bad)
        return dv_err_set(err, es, "name: %s", bad);
    free(cfg->name);
    cfg->name = strdup(value);
    return cfg->name ? 0 : dv_err_set(err, es, "out of memory");
}

/* A type has one handler: setting an exec handler or a plugin for it
 * drops the other kind, so the later setting (a flag over the file) wins. */
static void
s_drop_plugin(worker_config_t *cfg, const char *type)
{
    for (int i = 0; i < cfg->nplugins; i++)
        if (strcmp(cfg->plugins[i].type, type) == 0) {
            free(cfg->plugins[i].type);
            free(cfg->plugins[i].path);
            free(cfg->plugins[i].config);
            cfg->plugins[i] = cfg->plugins[--cfg->nplugins];
            return;
        }
}

static void
s_drop_handler(worker_config_t *cfg, const char *type)
{
    for (int i = 0; i < cfg->nhandlers; i++)
        if (strcmp(cfg->handlers[i].type, type) == 0) {
            free(cfg->handlers[i].type);
            free(cfg->handlers[i].command);
            cfg->handlers[i] = cfg->handlers[--cfg->nhandlers];
            return;
        }
}

int
worker_config_set_handler(worker_config_t *cfg, const char *type,
                          const char *command)
{
    s_drop_plugin(cfg, type);
    for (int i = 0; i < cfg->nhandlers; i++)
        if (strcmp(cfg->handlers[i].type, type) == 0) {
            char *c = strdup(command);
            if (!c)
                return -1;
            free(cfg->handlers[i].command);
            cfg->handlers[i].command = c;
            return 0;
        }
    worker_exec_handler_t *h =
        realloc(cfg->handlers, (size_t)(cfg->nhandlers + 1) * sizeof *h);
    if (!h)
        return -1;
    cfg->handlers = h;
    h[cfg->nhandlers].type = strdup(type);
    h[cfg->nhandlers].command = strdup(command);
    if (!h[cfg->nhandlers].type || !h[cfg->nhandlers].command) {
        free(h[cfg->nhandlers].type);
        free(h[cfg->nhandlers].command);
        return -1;
    }
    cfg->nhandlers++;
    return 0;
}

const char *
worker_config_handler(const worker_config_t *cfg, const char *type,
                      size_t type_len)
{
    for (int i = 0; i < cfg->nhandlers; i++) {
        const char *t = cfg->handlers[i].type;
        if (strlen(t) == type_len && memcmp(t, type, type_len) == 0)
            return cfg->handlers[i].command;
    }
    return NULL;
}

int
worker_config_set_plugin(worker_config_t *cfg, const char *type,
                         const char *path, const char *config)
{
    s_drop_handler(cfg, type);
    s_drop_plugin(cfg, type);
    worker_plugin_t *p =
        realloc(cfg->plugins, (size_t)(cfg->nplugins + 1) * sizeof *p);
    if (!p)
        return -1;
    cfg->plugins = p;
    p += cfg->nplugins;
    p->type = strdup(type);
    p->path = strdup(path);
    p->config = config ? strdup(config) : NULL;
    if (!p->type || !p->path || (config && !p->config)) {
        free(p->type);
        free(p->path);
        free(p->config);
        return -1;
    }
    cfg->nplugins++;
    return 0;
}

const worker_plugin_t *
worker_config_plugin(const worker_config_t *cfg, const char *type,
                     size_t type_len)
{
    for (int i = 0; i < cfg->nplugins; i++) {
        const char *t = cfg->plugins[i].type;
        if (strlen(t) == type_len && memcmp(t, type, type_len) == 0)
            return &cfg->plugins[i];
    }
    return NULL;
}

/* Checks a plugin setting. A path with a slash names a file, which must
 * be readable now, so a typo stops the worker at start rather than
 * failing every job; a bare name is left to dlopen()'s library search. */
static int
s_check_plugin(const char *type, const char *path, const char *what, char *err,
               size_t es)
{
    size_t n = strlen(type);
    if (n == 0 || n > DV_NAME_MAX)
        return dv_err_set(err, es, "%s: job type must be 1..%d bytes", what,
                          DV_NAME_MAX);
    if (!*path)
        return dv_err_set(err, es, "%s: empty path for type '%s'", what, type);
    if (strchr(path, '/') && access(path, R_OK) != 0)
        return dv_err_set(err, es, "%s: cannot read '%s' for type '%s': %s",
                          what, path, type, strerror(errno));
    return 0;
}

static int
s_set_size(const char *what, const char *value, int64_t *out, char *err,
           size_t es)
{
    if (worker_limits_parse_size(value, out) != 0)
        return dv_err_set(err, es,
                          "%s: '%s' is not a size in bytes (suffixes K, M, G)",
                          what, value);
    return 0;
}

static int
s_set_soft(worker_config_t *cfg, const char *what, const char *value, char *err,
           size_t es)
{
    if (worker_limits_parse_soft(value, &cfg->soft_timeout_ms,
                                 &cfg->soft_timeout_pct) != 0)
        return dv_err_set(err, es,
                          "%s: '%s' is not a duration in seconds, a percentage "
                          "of the timeout (1%%..99%%), or 0",
                          what, value);
    return 0;
}

static int
s_check_handler(const char *type, const char *command, const char *what,
                char *err, size_t es)
{
    size_t n = strlen(type);
    if (n == 0 || n > DV_NAME_MAX)
        return dv_err_set(err, es, "%s: job type must be 1..%d bytes", what,
                          DV_NAME_MAX);
    if (!*command)
        return dv_err_set(err, es, "%s: empty command for type '%s'", what,
                          type);
    return 0;
}

/* ---- the JSON file --------------------------------------------------- */

/* Numbers in the file are seconds (durations) or counts; durations may
 * also be strings ("250ms", "1.5"). */
static int
s_json_duration(json_t *v, const char *key, int64_t *out, char *err, size_t es)
{
    char buf[64];
    if (json_is_string(v))
        return s_set_duration(key, json_string_value(v), out, err, es);
    if (!json_is_number(v))
        return dv_err_set(err, es, "%s: must be a number of seconds", key);
    snprintf(buf, sizeof buf, "%.17g", json_number_value(v));
    return s_set_duration(key, buf, out, err, es);
}

static int
s_json_int(json_t *v, const char *key, long long lo, long long hi,
           long long *out, char *err, size_t es)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo ||
        json_integer_value(v) > hi) {
        dv_err_set(err, es, "%s: must be a whole number in %lld..%lld", key, lo,
                   hi);
        return -1; /* spelt out, as in s_set_int */
    }
    *out = json_integer_value(v);
    return 0;
}

/* A list given as a JSON array of strings or one comma-separated string. */
static char *
s_json_list(json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (!json_is_array(v))
        return NULL;
    size_t total = 1, i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || strchr(json_string_value(e), ','))
            return NULL;
        total += strlen(json_string_value(e)) + 1;
    }
    char *s = calloc(1, total);
    if (!s)
        return NULL;
    json_array_foreach(v, i, e)
    {
        if (i)
            strcat(s, ",");
        strcat(s, json_string_value(e));
    }
    return s;
}

/* "plugins": {"TYPE": {"path": "x.so", "config": any JSON value}} */
static int
s_json_plugins(worker_config_t *cfg, json_t *v, char *why, size_t ws)
{
    if (!json_is_object(v))
        return dv_err_set(why, ws, "plugins: must be an object");
    const char *type, *k;
    json_t *p, *f;
    json_object_foreach(v, type, p)
    {
        if (!json_is_object(p))
            return dv_err_set(why, ws,
                              "plugins.%s: must be {\"path\": \"FILE.so\", "
                              "\"config\": {...}}",
                              type);
        json_object_foreach(p, k, f)
        {
            if (strcmp(k, "path") != 0 && strcmp(k, "config") != 0)
                return dv_err_set(why, ws, "plugins.%s: unknown setting '%s'",
                                  type, k);
        }
        json_t *path = json_object_get(p, "path");
        if (!json_is_string(path))
            return dv_err_set(why, ws, "plugins.%s.path: must be a string",
                              type);
        char what[DV_NAME_MAX + 16];
        snprintf(what, sizeof what, "plugins.%s", type);
        if (s_check_plugin(type, json_string_value(path), what, why, ws))
            return -1;
        json_t *conf = json_object_get(p, "config");
        char *text =
            conf ? json_dumps(conf, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (conf && !text)
            return dv_err_set(why, ws, "out of memory");
        int rc =
            worker_config_set_plugin(cfg, type, json_string_value(path), text);
        free(text);
        if (rc)
            return dv_err_set(why, ws, "out of memory");
    }
    return 0;
}

/* The settings of --max-rss-per-child, --soft-timeout and --plugin. */
static int
s_json_limits(worker_config_t *cfg, const char *key, json_t *v, char *why,
              size_t ws)
{
    char buf[64];
    const char *text = json_is_string(v) ? json_string_value(v) : NULL;
    if (strcmp(key, "plugins") == 0)
        return s_json_plugins(cfg, v, why, ws);
    if (strcmp(key, "max_rss_per_child") == 0) {
        if (json_is_integer(v) && json_integer_value(v) >= 0)
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        else if (!text)
            return dv_err_set(why, ws,
                              "%s: must be a number of bytes or a string such "
                              "as \"512M\"",
                              key);
        return s_set_size(key, text ? text : buf, &cfg->max_rss_per_child, why,
                          ws);
    }
    if (json_is_number(v))
        snprintf(buf, sizeof buf, "%.17g", json_number_value(v));
    else if (!text)
        return dv_err_set(why, ws,
                          "%s: must be a number of seconds or a string "
                          "such as \"80%%\"",
                          key);
    return s_set_soft(cfg, key, text ? text : buf, why, ws);
}

int
worker_config_load_json(worker_config_t *cfg, const char *text, size_t len,
                        const char *source, char *err, size_t es)
{
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return dv_err_set(err, es, "%s:%d:%d: %s", source, je.line, je.column,
                          je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = dv_err_set(err, es, "%s: the top level must be an object", source);
        goto done;
    }
    const char *key;
    json_t *v;
    char why[300];
    json_object_foreach(root, key, v)
    {
        long long n;
        why[0] = '\0';
        if (strcmp(key, "broker") == 0 || strcmp(key, "queues") == 0) {
            char *list = s_json_list(v);
            if (!list) {
                rc = dv_err_set(why, sizeof why,
                                "%s: must be a string or an array of strings",
                                key);
            } else {
                rc = key[0] == 'b' ? s_set_endpoints(cfg, list, why, sizeof why)
                                   : s_set_queues(cfg, list, why, sizeof why);
                free(list);
            }
        } else if (strcmp(key, "concurrency") == 0) {
            rc = s_json_int(v, key, 1, WORKER_CONCURRENCY_MAX, &n, why,
                            sizeof why);
            if (rc == 0)
                cfg->concurrency = (int)n;
        } else if (strcmp(key, "prefetch") == 0) {
            rc = s_json_int(v, key, 0, 100000, &n, why, sizeof why);
            if (rc == 0)
                cfg->prefetch = (int)n;
        } else if (strcmp(key, "max_jobs_per_child") == 0) {
            rc = s_json_int(v, key, 0, INT64_MAX / 2, &n, why, sizeof why);
            if (rc == 0)
                cfg->max_jobs_per_child = n;
        } else if (strcmp(key, "max_rss_per_child") == 0 ||
                   strcmp(key, "soft_timeout") == 0 ||
                   strcmp(key, "plugins") == 0) {
            rc = s_json_limits(cfg, key, v, why, sizeof why);
        } else if (strcmp(key, "timeout") == 0) {
            rc = s_json_duration(v, key, &cfg->timeout_ms, why, sizeof why);
        } else if (strcmp(key, "kill_grace") == 0) {
            rc = s_json_duration(v, key, &cfg->kill_grace_ms, why, sizeof why);
        } else if (strcmp(key, "grace") == 0) {
            rc = s_json_duration(v, key, &cfg->grace_ms, why, sizeof why);
        } else if (strcmp(key, "heartbeat") == 0) {
            rc = s_json_duration(v, key, &cfg->heartbeat_ms, why, sizeof why);
            if (rc == 0 && cfg->heartbeat_ms < 10)
                rc = dv_err_set(why, sizeof why, "heartbeat: at least 0.01 s");
        } else if (strcmp(key, "name") == 0) {
            rc = json_is_string(v)
                     ? s_set_name(cfg, json_string_value(v), why, sizeof why)
                     : dv_err_set(why, sizeof why, "name: must be a string");
        } else if (strcmp(key, "curve_secret") == 0 ||
                   strcmp(key, "curve_server") == 0) {
            rc = json_is_string(v)
                     ? s_set_path(strcmp(key, "curve_secret") == 0
                                      ? &cfg->curve_secret
                                      : &cfg->curve_server,
                                  key, json_string_value(v), why, sizeof why)
                     : dv_err_set(why, sizeof why, "%s: must be a path", key);
        } else if (strcmp(key, "health_file") == 0) {
            rc = json_is_string(v)
                     ? s_set_path(&cfg->health_file, key, json_string_value(v),
                                  why, sizeof why)
                     : dv_err_set(why, sizeof why, "%s: must be a path", key);
        } else if (strcmp(key, "http") == 0) {
            rc = http_config_load_json(&cfg->http, v, why, sizeof why);
        } else if (strcmp(key, "http_concurrency") == 0) {
            rc = s_json_int(v, key, 1, HTTP_CONCURRENCY_MAX, &n, why,
                            sizeof why);
            if (rc == 0)
                cfg->http_concurrency = (int)n;
        } else if (strcmp(key, "handlers") == 0) {
            if (!json_is_object(v)) {
                rc = dv_err_set(why, sizeof why, "handlers: must be an object");
            } else {
                const char *type;
                json_t *h;
                json_object_foreach(v, type, h)
                {
                    json_t *cmd = json_object_get(h, "exec");
                    if (!json_is_object(h) || json_object_size(h) != 1 ||
                        !json_is_string(cmd)) {
                        rc = dv_err_set(why, sizeof why,
                                        "handlers.%s: must be {\"exec\": "
                                        "\"COMMAND\"}",
                                        type);
                        break;
                    }
                    rc = s_check_handler(type, json_string_value(cmd),
                                         "handlers", why, sizeof why);
                    if (rc == 0 && worker_config_set_handler(
                                       cfg, type, json_string_value(cmd)) != 0)
                        rc = dv_err_set(why, sizeof why, "out of memory");
                    if (rc)
                        break;
                }
            }
        } else {
            rc = dv_err_set(why, sizeof why, "unknown setting '%s'", key);
        }
        if (rc) {
            dv_err_set(err, es, "%s: %s", source, why);
            break;
        }
    }
done:
    json_decref(root);
    return rc;
}

/* ---- flags ----------------------------------------------------------- */

typedef enum {
    F_BROKER,
    F_QUEUES,
    F_CONCURRENCY,
    F_PREFETCH,
    F_NAME,
    F_EXEC,
    F_CONFIG,
    F_TIMEOUT,
    F_KILL_GRACE,
    F_GRACE,
    F_MAX_JOBS,
    F_HEARTBEAT,
    F_MAX_RSS,
    F_SOFT_TIMEOUT,
    F_PLUGIN,
    F_HTTP,
    F_HTTP_CONCURRENCY,
    F_CURVE_SECRET,
    F_CURVE_SERVER,
    F_HEALTH_FILE,
} s_flag_id_t;

/* The flags are read twice (dv_flags): first only to find --help and
 * --config and to check their syntax, then, after the file, applied in
 * order, so a flag overrides the file and a later flag an earlier one. */
typedef struct {
    worker_config_t *cfg;
    bool apply;         /* second pass */
    const char *config; /* --config, from the first pass */
} s_pass_t;

/* The pass worker_config_parse() runs (worker_flags' ctx). */
static s_pass_t s_pass;

static int s_apply_flag(worker_config_t *cfg, s_flag_id_t id, const char *v,
                        char *err, size_t es);

static int
s_on_flag(const dv_flag_t *f, const char *v, char *err, size_t es)
{
    s_pass_t *p = f->ctx;
    if (!p->apply) {
        if (f->tag == F_CONFIG)
            p->config = v;
        return 0;
    }
    return s_apply_flag(p->cfg, (s_flag_id_t)f->tag, v, err, es);
}

#define S_FLAG(name, id, ...)                                                  \
    DV_FLAG_CALL_TAG(name, s_on_flag, &s_pass, id, __VA_ARGS__)

/* Every flag is applied by s_apply_flag; the defaults shown here are
 * worker_config_defaults()' and worker_config_parse()'s (dv_flags_reset
 * leaves FN flags alone; worker_test checks that they agree). */
const dv_flag_t worker_flags[] = {
    S_FLAG("broker", F_BROKER, .arg = "ENDPOINT[,...]",
           .env = "DROVER_WORKER_ENDPOINT", .dflt = WORKER_DEFAULT_ENDPOINT,
           .help = "the broker's workers endpoints, tried in turn"),
    S_FLAG("queues", F_QUEUES, .arg = "QUEUE[,...]", .dflt = "default",
           .help = "the queues to serve"),
    S_FLAG("concurrency", F_CONCURRENCY, .arg = "N",
           .help = "child processes, each running one job at a time, 1 to "
                   "1024 (default: the CPUs online, at most 64)"),
    S_FLAG("prefetch", F_PREFETCH, .arg = "N",
           .help = "jobs held beyond those running, so children never wait "
                   "for the broker, 0 to 100000 (default: adapts to the job "
                   "rate, about 5 ms of work, from concurrency up to 1000; "
                   "0 for long jobs)"),
    S_FLAG("name", F_NAME, .arg = "NAME",
           .help = "the worker's name, unique in the fleet; with CurveZMQ, "
                   "its certificate's name (default: HOST:PID)"),
    S_FLAG("exec", F_EXEC, .arg = "TYPE=COMMAND",
           .help = "run jobs of TYPE with /bin/sh -c COMMAND (repeatable; "
                   "docs/handlers.md)"),
    S_FLAG("plugin", F_PLUGIN, .arg = "TYPE=PATH", .complete = DV_COMPLETE_FILE,
           .help = "run jobs of TYPE with the plugin in the shared object "
                   "PATH (drover_handler.h; repeatable)"),
    S_FLAG("http", F_HTTP, .arg = "TYPE=URL",
           .help = "run jobs of TYPE as HTTP requests: POST the payload as "
                   "JSON to URL, the result is the response (repeatable; "
                   "templates, API keys: \"http\" in --config)"),
    S_FLAG("http-concurrency", F_HTTP_CONCURRENCY, .arg = "N", .dflt = "100",
           .help = "HTTP requests in flight at once, 1 to 10000"),
    S_FLAG("config", F_CONFIG, .arg = "FILE", .complete = DV_COMPLETE_FILE,
           .help = "JSON settings, below flags and above the environment: "
                   "broker, queues, concurrency, prefetch, timeout, "
                   "kill_grace, grace, heartbeat, name, max_jobs_per_child, "
                   "max_rss_per_child, soft_timeout, handlers {TYPE: "
                   "{\"exec\": COMMAND}}, plugins {TYPE: {\"path\": PATH, "
                   "\"config\": {...}}}, http {TYPE: {\"url\": URL, ...}}, "
                   "http_concurrency, curve_secret, curve_server, health_file"),
    S_FLAG("timeout", F_TIMEOUT, .arg = "SECONDS",
           .help = "limit per attempt for jobs that give none (default: "
                   "none)"),
    S_FLAG("kill-grace", F_KILL_GRACE, .arg = "SECONDS", .dflt = "5",
           .help = "from SIGTERM to SIGKILL when a job is stopped"),
    S_FLAG("grace", F_GRACE, .arg = "SECONDS", .dflt = "30",
           .help = "on SIGTERM, the time running jobs get to finish"),
    S_FLAG("max-jobs-per-child", F_MAX_JOBS, .arg = "N", .dflt = "0",
           .help = "recycle a child after N jobs (0: never)"),
    S_FLAG("max-rss-per-child", F_MAX_RSS, .arg = "BYTES", .dflt = "0",
           .help = "recycle a child whose resident memory is above BYTES "
                   "after a job (suffixes K, M, G; 0: never)"),
    S_FLAG("soft-timeout", F_SOFT_TIMEOUT, .arg = "SECONDS|P%", .dflt = "80%",
           .help = "tell a running handler to wrap up at SECONDS, or at P% "
                   "of its timeout (0: never)"),
    S_FLAG("heartbeat", F_HEARTBEAT, .arg = "SECONDS", .dflt = "1",
           .help = "heartbeat period until the broker sets one"),
    S_FLAG("curve-secret", F_CURVE_SECRET, .arg = "FILE",
           .env = DV_CURVE_ENV_SECRET, .complete = DV_COMPLETE_FILE,
           .help = "CurveZMQ: our certificate's secret file (drover keygen; "
                   "mode 0600); with --curve-server"),
    S_FLAG("curve-server", F_CURVE_SERVER, .arg = "FILE",
           .env = DV_CURVE_ENV_SERVER, .complete = DV_COMPLETE_FILE,
           .help = "CurveZMQ: the broker's public certificate; both or "
                   "neither"),
    S_FLAG("health-file", F_HEALTH_FILE, .arg = "FILE",
           .complete = DV_COMPLETE_FILE,
           .help = "touch FILE at every heartbeat sent to the broker, and "
                   "remove it on exit (drover health --self worker checks "
                   "its age)"),
    DV_FLAG_TABLE_END,
};

const char worker_about[] =
    "Runs a worker supervisor: it connects to the broker, takes jobs from "
    "the queues it serves, and runs each in one of a pool of child processes "
    "(one job at a time per child), in its http lane, or in a plugin.";

const char worker_notes[] =
    "Durations are seconds, fractions allowed (1.5), or with a unit (250ms, "
    "2m). Settings apply in this order, later ones winning: defaults, the "
    "environment, the --config file, flags.\n\n"
    "builtin job types: noop, echo, sleep, fail (docs/handlers.md).\n\n"
    "signals: SIGTERM or SIGINT drain (take no new jobs, hand back jobs not "
    "started, let running ones finish within --grace, then leave); a second "
    "SIGINT or SIGQUIT stops at once; SIGUSR1 logs a state dump; SIGHUP "
    "reads the CurveZMQ certificate files again and reconnects with them if "
    "they changed (running jobs are kept).";

const char worker_exits[] =
    "exit status: 0 after a drain; 1 on a fatal error; 2 on a usage error; "
    "128+signal when stopped at once.";

/* Reads argv against the worker's flags and the log flags; *bad as
 * dv_flags_parse_ex's. */
static dv_flags_rc_t
s_read_flags(s_pass_t *pass, int argc, char **argv, const dv_flag_t **bad,
             char *err, size_t es)
{
    dv_flag_t log[3];
    dv_daemon_log_flags(log, &pass->cfg->log_level, &pass->cfg->log_text);
    const dv_flag_t *tables[] = { worker_flags, log };
    const dv_flag_t *b = NULL;
    dv_flags_rc_t rc =
        dv_flags_parse_ex(tables, 2, argc, argv, false, NULL, &b, err, es);
    if (b == &log[0] || b == &log[1]) /* the table's own entry */
        b = &dv_daemon_flags[b - log];
    if (bad)
        *bad = b;
    return rc;
}

/* Splits flag's value "TYPE=VALUE" (what names VALUE in the message):
 * copies TYPE into type and returns VALUE, or NULL with a reason in
 * err. */
static const char *
s_type_value(const char *flag, const char *what, const char *v,
             char type[DV_NAME_MAX + 1], char *err, size_t es)
{
    const char *eq = strchr(v, '=');
    if (!eq) {
        dv_err_set(err, es, "%s: expected TYPE=%s, got '%s'", flag, what, v);
        return NULL;
    }
    size_t tn = (size_t)(eq - v);
    if (tn > DV_NAME_MAX) {
        dv_err_set(err, es, "%s: job type longer than %d bytes", flag,
                   DV_NAME_MAX);
        return NULL;
    }
    memcpy(type, v, tn);
    type[tn] = '\0';
    return eq + 1;
}

static int
s_apply_flag(worker_config_t *cfg, s_flag_id_t id, const char *v, char *err,
             size_t es)
{
    long long n;
    switch (id) {
    case F_BROKER:
        return s_set_endpoints(cfg, v, err, es);
    case F_QUEUES:
        return s_set_queues(cfg, v, err, es);
    case F_CONCURRENCY:
        if (s_set_int("--concurrency", v, 1, WORKER_CONCURRENCY_MAX, &n, err,
                      es))
            return -1;
        cfg->concurrency = (int)n;
        return 0;
    case F_PREFETCH:
        if (s_set_int("--prefetch", v, 0, 100000, &n, err, es))
            return -1;
        cfg->prefetch = (int)n;
        return 0;
    case F_NAME:
        return s_set_name(cfg, v, err, es);
    case F_EXEC: {
        char type[DV_NAME_MAX + 1];
        const char *cmd = s_type_value("--exec", "COMMAND", v, type, err, es);
        if (!cmd || s_check_handler(type, cmd, "--exec", err, es))
            return -1;
        if (worker_config_set_handler(cfg, type, cmd))
            return dv_err_set(err, es, "out of memory");
        return 0;
    }
    case F_TIMEOUT:
        return s_set_duration("--timeout", v, &cfg->timeout_ms, err, es);
    case F_KILL_GRACE:
        return s_set_duration("--kill-grace", v, &cfg->kill_grace_ms, err, es);
    case F_GRACE:
        return s_set_duration("--grace", v, &cfg->grace_ms, err, es);
    case F_MAX_JOBS:
        if (s_set_int("--max-jobs-per-child", v, 0, INT64_MAX / 2, &n, err, es))
            return -1;
        cfg->max_jobs_per_child = n;
        return 0;
    case F_MAX_RSS:
        return s_set_size("--max-rss-per-child", v, &cfg->max_rss_per_child,
                          err, es);
    case F_SOFT_TIMEOUT:
        return s_set_soft(cfg, "--soft-timeout", v, err, es);
    case F_PLUGIN: {
        char type[DV_NAME_MAX + 1];
        const char *path = s_type_value("--plugin", "PATH", v, type, err, es);
        if (!path || s_check_plugin(type, path, "--plugin", err, es))
            return -1;
        size_t tn = strlen(type);
        /* A plugin the file configured keeps its config; the flag moves
         * it to another file. */
        const worker_plugin_t *old = worker_config_plugin(cfg, type, tn);
        char *conf = old && old->config ? strdup(old->config) : NULL;
        int rc = worker_config_set_plugin(cfg, type, path, conf);
        free(conf);
        return rc ? dv_err_set(err, es, "out of memory") : 0;
    }
    case F_HTTP:
        return http_config_add_flag(&cfg->http, v, err, es);
    case F_HTTP_CONCURRENCY:
        if (s_set_int("--http-concurrency", v, 1, HTTP_CONCURRENCY_MAX, &n, err,
                      es))
            return -1;
        cfg->http_concurrency = (int)n;
        return 0;
    case F_HEARTBEAT:
        if (s_set_duration("--heartbeat", v, &cfg->heartbeat_ms, err, es))
            return -1;
        if (cfg->heartbeat_ms < 10)
            return dv_err_set(err, es, "--heartbeat: at least 0.01 s");
        return 0;
    case F_CURVE_SECRET:
        return s_set_path(&cfg->curve_secret, "--curve-secret", v, err, es);
    case F_CURVE_SERVER:
        return s_set_path(&cfg->curve_server, "--curve-server", v, err, es);
    case F_HEALTH_FILE:
        return s_set_path(&cfg->health_file, "--health-file", v, err, es);
    case F_CONFIG:
        return 0;
    }
    return 0;
}

int
worker_config_parse(worker_config_t *cfg, int argc, char **argv, char *err,
                    size_t es)
{
    return worker_config_parse_ex(cfg, argc, argv, NULL, err, es);
}

int
worker_config_parse_ex(worker_config_t *cfg, int argc, char **argv,
                       const dv_flag_t **bad, char *err, size_t es)
{
    if (bad)
        *bad = NULL;
    s_pass = (s_pass_t){ .cfg = cfg };
    s_pass_t *pass = &s_pass;
    dv_flags_rc_t rc = s_read_flags(pass, argc, argv, bad, err, es);
    if (rc != DV_FLAGS_OK)
        return rc == DV_FLAGS_HELP ? 1 : -1;
    const char *config = pass->config;
    if (config) {
        size_t len;
        char *text = dv_read_file(config, &len);
        if (!text)
            return dv_err_set(err, es, "--config: cannot read '%s': %s", config,
                              strerror(errno));
        int lrc = worker_config_load_json(cfg, text, len, config, err, es);
        free(text);
        if (lrc)
            return -1;
    }
    const char *env = getenv("DROVER_WORKER_ENDPOINT");
    if (!cfg->endpoints && env && *env &&
        s_set_endpoints(cfg, env, err, es) != 0)
        return -1;
    const char *secret = cfg->curve_secret, *server = cfg->curve_server;
    dv_curve_client_env(&secret, &server);
    if ((!cfg->curve_secret && secret &&
         s_set_path(&cfg->curve_secret, DV_CURVE_ENV_SECRET, secret, err, es) !=
             0) ||
        (!cfg->curve_server && server &&
         s_set_path(&cfg->curve_server, DV_CURVE_ENV_SERVER, server, err, es) !=
             0))
        return -1;
    pass->apply = true;
    if (s_read_flags(pass, argc, argv, bad, err, es) != DV_FLAGS_OK)
        return -1;
    if (!cfg->endpoints &&
        s_set_endpoints(cfg, WORKER_DEFAULT_ENDPOINT, err, es) != 0)
        return -1;
    if (!cfg->queues && s_set_queues(cfg, "default", err, es) != 0)
        return -1;
    /* The supervisor routes an http type to its lane, so no child would
     * ever see the other handler: say so rather than ignore it. */
    for (int i = 0; cfg->http && i < cfg->http->n; i++) {
        const char *t = cfg->http->h[i].type;
        if (worker_config_handler(cfg, t, strlen(t)) ||
            worker_config_plugin(cfg, t, strlen(t)))
            return dv_err_set(
                err, es,
                "job type '%s' has an http handler and an exec or "
                "plugin handler; give it one",
                t);
    }
    /* Without --prefetch it adapts to how fast jobs finish (worker_pool.c:
     * about 5 ms of work held, at least one job per child): short jobs
     * then never stall on round trips to the broker, and long ones are not
     * hoarded by one worker. cfg->prefetch is its ceiling. */
    if (cfg->prefetch < 0) {
        cfg->prefetch_adaptive = true;
        cfg->prefetch = WORKER_PREFETCH_MAX > 4 * cfg->concurrency
                            ? WORKER_PREFETCH_MAX
                            : 4 * cfg->concurrency;
    }
    return 0;
}

void
worker_config_usage(FILE *out)
{
    const dv_daemon_t d = { .name = "worker",
                            .about = worker_about,
                            .notes = worker_notes,
                            .exits = worker_exits,
                            .flags = worker_flags };
    dv_daemon_help(&d, out);
}
