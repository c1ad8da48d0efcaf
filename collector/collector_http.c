/* collector_http - /metrics and /api on libmicrohttpd, run from the loop. */
#include "collector_http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "collector_access.h"
#include "dv_clock.h"
#include "dv_err.h"
#include "dv_log.h"

/* Idle HTTP connections are closed after this many seconds. */
#define S_CONN_TIMEOUT_S 30

/* The answer when the real one cannot be built: static, so sending it
 * needs no memory of its own. */
static const char s_oom_body[] = "{\"error\":\"out of memory\"}\n";

struct collector_http_t {
    struct MHD_Daemon *daemon;
    const collector_query_t *q;
    collector_http_access_t access;
    char address[96];
};

static void
s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char text[512];
    vsnprintf(text, sizeof text, fmt, ap);
    size_t n = strlen(text);
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    dv_log(DV_WARN, "collector.http_error", DV_STR("error", text));
}

static enum MHD_Result
s_send(struct MHD_Connection *c, unsigned status, const char *type, char *body,
       size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* 500 with s_oom_body. */
static enum MHD_Result
s_send_oom(struct MHD_Connection *c)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        sizeof s_oom_body - 1, (void *)s_oom_body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret =
        MHD_queue_response(c, MHD_HTTP_INTERNAL_SERVER_ERROR, r);
    MHD_destroy_response(r);
    return ret;
}

/* Sends j (consumed; NULL means it could not be built). */
static enum MHD_Result
s_send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return s_send_oom(c);
    size_t n = strlen(text);
    char *body = realloc(text, n + 2); /* a final newline, for curl users */
    if (!body) {
        free(text);
        return s_send_oom(c);
    }
    body[n] = '\n';
    body[n + 1] = '\0';
    return s_send(c, status, "application/json", body, n + 1);
}

static enum MHD_Result
s_send_error(struct MHD_Connection *c, unsigned status, const char *why)
{
    return s_send_json(c, status, json_pack("{s:s}", "error", why));
}

/* The query string's arguments, as they are collected. */
typedef struct {
    json_t *args;
    int rc; /* -1 once one could not be added (out of memory) */
} s_args_t;

static enum MHD_Result
s_collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
              const char *value)
{
    (void)kind;
    s_args_t *a = cls;
    if (key && value && *value)
        a->rc |= json_object_set_new(a->args, key, json_string(value));
    return a->rc ? MHD_NO : MHD_YES;
}

static enum MHD_Result
s_metrics(collector_http_t *self, struct MHD_Connection *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out)
        return s_send_oom(c);
    int rc = collector_state_metrics(self->q->state, out, dv_now_ms());
    if (fclose(out) != 0 || rc != 0) {
        free(buf);
        return s_send_oom(c);
    }
    return s_send(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                  buf, len);
}

unsigned
collector_http_status_of(const char *verb, const json_t *body)
{
    /* A batch no job of which was seen does not exist (the query socket
     * answers it with zero counts, which `drover watch` waits on). */
    if (!strcmp(verb, "batch") &&
        json_integer_value(json_object_get(body, "total")) == 0)
        return MHD_HTTP_NOT_FOUND;
    /* down: for load balancers and probes that read the status only */
    if (!strcmp(verb, "health") &&
        json_integer_value(json_object_get(body, "status")) >= 2)
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    return MHD_HTTP_OK;
}

/* Answers /api/VERB[/ARG] from the same code as the query socket. */
static enum MHD_Result
s_api(collector_http_t *self, struct MHD_Connection *c, const char *path)
{
    char verb[32] = "";
    const char *arg = NULL;
    const char *slash = strchr(path, '/');
    size_t vlen = slash ? (size_t)(slash - path) : strlen(path);
    if (vlen == 0 || vlen >= sizeof verb)
        return s_send_error(c, MHD_HTTP_NOT_FOUND, "no such API path");
    memcpy(verb, path, vlen);
    if (slash && slash[1])
        arg = slash + 1;
    s_args_t a = { json_object(), 0 };
    json_t *args = a.args;
    if (!args)
        return s_send_oom(c);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, s_collect_arg, &a);
    const char *run = NULL;
    if (!strcmp(verb, "jobs") && arg) {
        run = "job";
        a.rc |= json_object_set_new(args, "id", json_string(arg));
    } else if (!strcmp(verb, "batches") && arg) {
        run = "batch";
        a.rc |= json_object_set_new(args, "name", json_string(arg));
    } else if (!strcmp(verb, "keys")) {
        /* The broker's fleet-wide view; the workers' own, from their
         * heartbeats, at /api/keys/workers. */
        run = !arg ? "fleet_keys" : !strcmp(arg, "workers") ? "keys" : NULL;
    } else if (!arg && (!strcmp(verb, "status") || !strcmp(verb, "workers") ||
                        !strcmp(verb, "queues") || !strcmp(verb, "health") ||
                        !strcmp(verb, "jobs"))) {
        run = verb;
    }
    if (a.rc) {
        json_decref(args);
        return s_send_oom(c);
    }
    if (!run) {
        json_decref(args);
        return s_send_error(c, MHD_HTTP_NOT_FOUND,
                            "no such API path: try /api/status, /api/workers, "
                            "/api/queues, /api/jobs, /api/jobs/ID, /api/keys, "
                            "/api/keys/workers, /api/batches/NAME, "
                            "/api/health");
    }
    dv_code_t code;
    char why[512];
    json_t *body = collector_query_run(self->q, run, args, dv_now_ms(), &code,
                                       why, sizeof why);
    json_decref(args);
    if (!body) {
        /* /api/jobs/ID with an ID that is no job id names nothing there
         * is: 404 as for an unknown one. */
        unsigned status = (unsigned)collector_query_http_status(code);
        if (!strcmp(run, "job") && code == DV_CODE_INVALID_ARGUMENT)
            status = MHD_HTTP_NOT_FOUND;
        return s_send_error(c, status, why);
    }
    unsigned status = collector_http_status_of(run, body);
    if (status == MHD_HTTP_NOT_FOUND) {
        snprintf(why, sizeof why, "no job of batch '%.200s' seen",
                 json_string_value(json_object_get(body, "name")));
        json_decref(body);
        return s_send_error(c, status, why);
    }
    return s_send_json(c, status, body);
}

/* The peer's numeric address into peer (for the log). */
static void
s_peer(struct MHD_Connection *c, char *peer, size_t size)
{
    snprintf(peer, size, "?");
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info && info->client_addr) {
        socklen_t len = info->client_addr->sa_family == AF_INET6
                            ? sizeof(struct sockaddr_in6)
                            : sizeof(struct sockaddr_in);
        getnameinfo(info->client_addr, len, peer, (socklen_t)size, NULL, 0,
                    NI_NUMERICHOST);
    }
}

/* 401 with a JSON reason and "WWW-Authenticate: Bearer" (RFC 6750). */
static enum MHD_Result
s_send_unauthorized(struct MHD_Connection *c, bool had_header)
{
    const char *why = had_header ? "wrong bearer token"
                                 : "a bearer token is needed: send "
                                   "\"Authorization: Bearer TOKEN\"";
    json_t *j = json_pack("{s:s}", "error", why);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text)
        return s_send_oom(c);
    size_t n = strlen(text);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                            had_header ? "Bearer realm=\"drover\", "
                                         "error=\"invalid_token\""
                                       : "Bearer realm=\"drover\"");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, r);
    MHD_destroy_response(r);
    return ret;
}

/* True when the request may see url: no token is set, url is an open
 * /metrics, or the request carries the token. */
static bool
s_allowed(const collector_http_t *self, struct MHD_Connection *c,
          const char *url, bool *had_header)
{
    *had_header = false;
    if (!self->access.token)
        return true;
    if (!strcmp(url, "/metrics") && !self->access.metrics_token)
        return true;
    const char *auth = MHD_lookup_connection_value(
        c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    *had_header = auth != NULL;
    return collector_access_bearer_ok(auth, self->access.token);
}

static enum MHD_Result
s_route(collector_http_t *self, struct MHD_Connection *c, const char *url,
        const char *method)
{
    bool had_header;
    if (!s_allowed(self, c, url, &had_header)) {
        char peer[NI_MAXHOST];
        s_peer(c, peer, sizeof peer);
        dv_log(DV_INFO, "collector.http_unauthorized", DV_STR("peer", peer),
               DV_STR("url", url),
               DV_STR("why", had_header ? "wrong token" : "no token"));
        return s_send_unauthorized(c, had_header);
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) &&
        strcmp(method, MHD_HTTP_METHOD_HEAD))
        return s_send_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                            "only GET is served");
    if (!strcmp(url, "/metrics"))
        return s_metrics(self, c);
    if (!strncmp(url, "/api/", 5))
        return s_api(self, c, url + 5);
    if (!strcmp(url, "/"))
        return s_send_json(c, MHD_HTTP_OK,
                           json_pack("{s:[s,s,s,s,s,s,s,s,s,s]}", "endpoints",
                                     "/metrics", "/api/status", "/api/workers",
                                     "/api/queues", "/api/jobs", "/api/jobs/ID",
                                     "/api/keys", "/api/keys/workers",
                                     "/api/batches/NAME", "/api/health"));
    return s_send_error(c, MHD_HTTP_NOT_FOUND, "not found");
}

/* Logs an answer that could not be queued (the connection is then
 * closed): the peer's address and what it asked for. */
static void
s_reply_dropped(struct MHD_Connection *c, const char *url)
{
    char peer[NI_MAXHOST];
    s_peer(c, peer, sizeof peer);
    dv_log(DV_WARN, "collector.reply_dropped", DV_STR("peer", peer),
           DV_STR("url", url), DV_STR("error", "answer not queued"));
}

static enum MHD_Result
s_on_request(void *cls, struct MHD_Connection *c, const char *url,
             const char *method, const char *version, const char *upload,
             size_t *upload_size, void **con_cls)
{
    (void)version;
    (void)upload;
    static int first_call;
    collector_http_t *self = cls;
    if (*con_cls == NULL) {
        /* Headers only so far; answer on the next call. */
        *con_cls = &first_call;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0; /* a body is not expected: ignore it */
        return MHD_YES;
    }
    enum MHD_Result r = s_route(self, c, url, method);
    if (r != MHD_YES)
        s_reply_dropped(c, url);
    return r;
}

/* Splits "HOST:PORT" at the last colon ("[v6]" loses its brackets; "*"
 * is every address) and resolves it for listening. The host as written
 * goes to host. Returns 0 with *ai (caller frees), or -1 with err. */
static int
s_resolve(const char *addr, char *host, size_t hsize, struct addrinfo **ai,
          char *err, size_t es)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || !colon[1])
        return dv_err_set(err, es, "expected ADDRESS:PORT");
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= hsize)
        hlen = hsize - 1;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    char name[128];
    snprintf(name, sizeof name, "%s", host);
    size_t nlen = strlen(name);
    if (name[0] == '[' && nlen > 2 && name[nlen - 1] == ']') {
        memmove(name, name + 1, nlen - 2);
        name[nlen - 2] = '\0';
    }
    struct addrinfo hints = { .ai_flags = AI_PASSIVE,
                              .ai_socktype = SOCK_STREAM };
    *ai = NULL;
    int rc =
        getaddrinfo(strcmp(name, "*") ? name : NULL, colon + 1, &hints, ai);
    if (rc != 0 || !*ai) {
        if (*ai)
            freeaddrinfo(*ai);
        *ai = NULL;
        return dv_err_set(err, es, "%s", gai_strerror(rc));
    }
    return 0;
}

int
collector_http_addr_is_loopback(const char *addr, char *err, size_t es)
{
    char host[128];
    struct addrinfo *ai;
    if (s_resolve(addr, host, sizeof host, &ai, err, es) != 0)
        return -1;
    int yes = 0;
    if (ai->ai_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ai->ai_addr;
        yes = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (ai->ai_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)ai->ai_addr;
        yes = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr) ||
              (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr) &&
               a->sin6_addr.s6_addr[12] == 127);
    }
    freeaddrinfo(ai);
    return yes;
}

bool
collector_http_tls_supported(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

collector_http_t *
collector_http_new(const char *addr, const collector_query_t *q,
                   const collector_http_access_t *access)
{
    char host[128], why[256];
    struct addrinfo *ai;
    if (s_resolve(addr, host, sizeof host, &ai, why, sizeof why) != 0) {
        dv_log(DV_ERROR, "collector.http_failed", DV_STR("address", addr),
               DV_STR("error", why));
        return NULL;
    }
    bool tls = access && access->cert && access->key;
    if (tls && !collector_http_tls_supported()) {
        dv_log(DV_ERROR, "collector.http_failed", DV_STR("address", addr),
               DV_STR("error", "this libmicrohttpd was built without TLS "
                               "(GnuTLS): --http-cert cannot be served"));
        freeaddrinfo(ai);
        return NULL;
    }
    collector_http_t *self = calloc(1, sizeof *self);
    if (!self) {
        freeaddrinfo(ai);
        return NULL;
    }
    self->q = q;
    if (access)
        self->access = *access;
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The TLS options last, and only with TLS (MHD refuses them without). */
    struct MHD_OptionItem tls_opts[] = {
        { MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)(tls ? access->cert : NULL) },
        { MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)(tls ? access->key : NULL) },
        { MHD_OPTION_END, 0, NULL },
    };
    if (tls)
        flags |= MHD_USE_TLS;
    else
        tls_opts[0].option = MHD_OPTION_END;
    self->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, s_on_request, self,
        /* The logger first, so every message goes through it. */
        MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
        ai->ai_addr, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)S_CONN_TIMEOUT_S,
        MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!self->daemon) {
        dv_log(DV_ERROR, "collector.http_failed", DV_STR("address", addr),
               DV_STR("error",
                      tls ? "cannot listen (address in use? a certificate "
                            "or key that GnuTLS does not accept?)"
                          : "cannot listen (address in use?)"));
        free(self);
        return NULL;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : 0;
    snprintf(self->address, sizeof self->address, "%.80s:%u", host, port);
    return self;
}

void
collector_http_destroy(collector_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    collector_http_t *self = *self_p;
    if (self->daemon)
        MHD_stop_daemon(self->daemon);
    free(self);
    *self_p = NULL;
}

int
collector_http_fd(const collector_http_t *self)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    return info ? info->epoll_fd : -1;
}

long
collector_http_timeout(collector_http_t *self)
{
    MHD_UNSIGNED_LONG_LONG t;
    if (MHD_get_timeout(self->daemon, &t) != MHD_YES)
        return -1;
    return t > 60000 ? 60000 : (long)t;
}

void
collector_http_run(collector_http_t *self)
{
    MHD_run(self->daemon);
}

const char *
collector_http_address(const collector_http_t *self)
{
    return self->address;
}
