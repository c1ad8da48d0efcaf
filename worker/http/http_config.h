/* http_config - settings of the worker's http handlers, one per job type,
 * from the "http" object of the worker's config file or from
 * `--http TYPE=URL`.
 *
 *   "http": {
 *     "title": {
 *       "url": "http://127.0.0.1:8080/v1/chat/completions",
 *       "method": "POST",
 *       "headers": {"Content-Type": "application/json"},
 *       "auth_header": "Authorization: Bearer {key}",
 *       "body": {"model": "m", "messages": [{"role": "user",
 *                "content": "{{payload.prompt}}"}]},
 *       "result": "/choices/0/message/content",
 *       "connect_timeout": 2, "timeout": 30, "max_wait": 60,
 *       "keys": {"file": "/etc/drover/keys.txt"},  or {"env": "LLM_KEYS"}
 *                  (a file may be JSON Lines: one entry per key with its
 *                   id, secret, url, rpm, tpm and template values)
 *       "rpm": 60, "tpm": 90000, "window": 60,
 *       "breaker": {"failures": 5, "cooldown": 10}
 *     }
 *   }
 *
 * Keys are read here, while the settings are checked, so a missing file or
 * an empty variable stops the worker at start (exit 2) with a message that
 * names the file or variable, never a key. Pure otherwise: no sockets.
 */
#ifndef HTTP_CONFIG_H
#define HTTP_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_KEYS_MAX            1000
#define HTTP_CONCURRENCY_DEFAULT 100
#define HTTP_CONCURRENCY_MAX     10000
/* Attempt limit when neither the job, the handler nor --timeout sets one. */
#define HTTP_TIMEOUT_DEFAULT_MS 60000

/* One entry of a JSON Lines key file: what a key carries besides its
 * secret (which stays in http_handler_cfg_t.keys, same index). */
typedef struct {
    char *id;     /* "az-west", or "key-N" (N: the entry's position) */
    char *url;    /* text template replacing the handler's url, or NULL */
    int rpm;      /* requests per window; -1: the handler's */
    int64_t tpm;  /* tokens per window; -1: the handler's */
    json_t *vars; /* object NAME -> string, number or boolean, for
                     {{key.NAME}}; never NULL */
} http_key_entry_t;

typedef struct {
    char *type;     /* job type */
    char *url;      /* text template */
    char *endpoint; /* "host:port" of url: the breaker's key */
    char *method;   /* "POST", "GET", ... */
    char **headers; /* "Name: value" text templates */
    int nheaders;
    bool has_content_type; /* headers set Content-Type */
    char *auth_header;     /* "Name: ...{key}..." or NULL */
    json_t *body;          /* JSON body template; NULL: see body_text */
    char *body_text;       /* text body template; both NULL: payload */
    char *result;          /* JSON pointer into the response, or NULL */
    int64_t connect_timeout_ms;
    int64_t timeout_ms;  /* 0: the job's, else --timeout, else 60 s */
    int64_t max_wait_ms; /* longest wait in the lane for a key */
    char **keys;         /* secrets, in file order */
    int nkeys;
    http_key_entry_t *entries; /* nkeys of them for a JSON Lines key file,
                                  else NULL */
    bool keys_vary;            /* an entry has a url or values: requests are
                             rendered per key */
    char *keys_from;           /* "file PATH" or "env NAME", for messages */
    int rpm;                   /* per key and window; 0 = no limit */
    int64_t tpm;               /* tokens per key and window; 0 = no limit */
    int64_t window_ms;         /* the limits' window (default 60 s) */
    int breaker_failures;      /* 0 = no breaker */
    int64_t breaker_cooldown_ms;
} http_handler_cfg_t;

typedef struct http_config_t {
    http_handler_cfg_t *h;
    int n;
} http_config_t;

/* Adds the handlers of an "http" object (TYPE -> settings) to *cfg
 * (created if NULL). Returns 0, or -1 with a reason in err naming the
 * type and setting. A type given twice: the later one wins. */
int http_config_load_json(http_config_t **cfg, const json_t *http, char *err,
                          size_t err_size);

/* `--http TYPE=URL`: POST the payload as JSON to URL, the result is the
 * response; no keys, default timeouts and breaker. Returns 0 or -1. */
int http_config_add_flag(http_config_t **cfg, const char *spec, char *err,
                         size_t err_size);

/* The handler for a job type, or NULL. cfg may be NULL. */
const http_handler_cfg_t *http_config_find(const http_config_t *cfg,
                                           const char *type, size_t len);

/* Frees everything, overwriting keys with zeros first. NULL-safe. */
void http_config_destroy(http_config_t **cfg_p);

/* Splits key text (a file's or a variable's) on newlines and commas,
 * trims blanks, skips empty lines and lines starting with '#'. Returns the
 * number of keys with *keys set (caller frees with http_config_free_keys),
 * or -1 with a reason in err (which never quotes a key). */
int http_config_parse_keys(const char *text, const char *from, char ***keys,
                           char *err, size_t err_size);
void http_config_free_keys(char **keys, int n);

/* Reads a key file's text as JSON Lines (a "{" line is an entry, blank
 * lines and lines starting with '#' are skipped): one entry per line,
 * {"id": ID, "key"|"key_env"|"key_file": ..., "url": URL, "rpm": N,
 *  "tpm": N, NAME: VALUE...}. Returns the number of entries with *keys
 * (secrets) and *entries set (free with http_config_free_entries), 0 if
 * the text has no "{" line (plain keys: nothing set), or -1 with a reason
 * in err naming the line, variable or file, never a key; a text mixing
 * plain lines and entries is refused. */
int http_config_parse_entries(const char *text, const char *from, char ***keys,
                              http_key_entry_t **entries, char *err,
                              size_t err_size);
void http_config_free_entries(http_key_entry_t *entries, int n);

/* "host:port" of an http or https URL (default ports filled in), into out.
 * Returns 0, or -1 if the URL is not http(s) or its host has a
 * placeholder. */
int http_config_endpoint(const char *url, char *out, size_t size);

#endif
