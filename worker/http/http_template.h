/* http_template - builds an http job's request from its payload, and
 * picks the result out of the response.
 *
 * Placeholders, in any string of a template:
 *   {{payload}}         the whole payload
 *   {{payload.FIELD}}   a top-level field of the payload (an object)
 *   {{job.id}}          the job id
 *   {{job.attempt}}     the attempt number, from 1
 *   {{key.NAME}}        the value NAME of the API key the request uses
 *                       (an entry of a JSON Lines key file: any field
 *                       other than id, key, key_env, key_file, url, rpm,
 *                       tpm; a string, number or boolean)
 * In a JSON template (a request body given as JSON), a string that is
 * exactly one placeholder becomes that value with its JSON type (an object,
 * a number...); a placeholder inside a longer string adds its text there:
 * a string's characters, anything else as compact JSON. The JSON encoder
 * then escapes the whole string, so a payload cannot break out of it. In
 * a text template (URL, header, or a body given as a string) a value is
 * added as text; in a URL it is percent-encoded, in a header a line break
 * is refused.
 *
 * A template that names a field the payload lacks, or a value the key
 * lacks, fails to render; the reason says which field or value (and which
 * key, by id: never its secret), and the job fails as invalid input.
 */
#ifndef HTTP_TEMPLATE_H
#define HTTP_TEMPLATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct http_template_t http_template_t;

typedef enum {
    HTTP_TEXT_PLAIN,  /* values as they are */
    HTTP_TEXT_URL,    /* values percent-encoded (RFC 3986 unreserved kept) */
    HTTP_TEXT_HEADER, /* values must not hold CR, LF or NUL */
} http_text_mode_t;

/* What a template is rendered with. payload NULL means JSON null. */
typedef struct {
    const json_t *payload;
    const char *job_id;
    int32_t attempt;
    bool *oom; /* if not NULL: set true when a render failed for want of
                  memory (then trying again later may work) */
    const json_t *key_vars; /* the key's values ({{key.NAME}}), or NULL */
    const char *key_id;     /* that key's id, for messages, or NULL */
} http_template_ctx_t;

/* Compiles a JSON template (tmpl is copied). NULL with a reason in err if
 * a placeholder is malformed or unknown (or out of memory). */
http_template_t *http_template_new_json(const json_t *tmpl, char *err,
                                        size_t err_size);

/* Compiles a text template (text is copied). Same errors. */
http_template_t *http_template_new_text(const char *text, http_text_mode_t mode,
                                        char *err, size_t err_size);

void http_template_destroy(http_template_t **self_p);

/* Renders: a JSON template to compact JSON text, a text template to text.
 * Returns a new NUL-terminated string (caller frees) of *len bytes, or
 * NULL with a reason in why (a missing field, a line break in a header
 * value, out of memory). */
char *http_template_render(const http_template_t *self,
                           const http_template_ctx_t *ctx, size_t *len,
                           char *why, size_t why_size);

/* True if the template has no placeholder (it renders the same always). */
int http_template_is_constant(const http_template_t *self);

/* Checks a JSON pointer's syntax (RFC 6901: "" or "/a/0/b", with ~0 and
 * ~1 escapes). Returns 0 or -1. */
int http_template_check_pointer(const char *ptr);

/* The value at ptr in doc (a borrowed reference), or NULL if there is
 * none. Array indices are decimal without leading zeros. */
json_t *http_template_pointer(json_t *doc, const char *ptr);

#endif
