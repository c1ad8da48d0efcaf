/* dv_str - a string view: pointer and length, not NUL-terminated. Decoded
 * messages, the store and the handlers pass text this way without copying. */
#ifndef DV_STR_H
#define DV_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A view of bytes inside a decoded frame (or, when encoding, inside the
 * caller's memory). Not NUL-terminated. ptr == NULL means absent. */
typedef struct {
    const char *ptr;
    uint32_t len;
} dv_str_t;

static inline dv_str_t
dv_str(const char *s)
{
    dv_str_t v = { s, 0 };
    if (s)
        while (s[v.len])
            v.len++;
    return v;
}

static inline dv_str_t
dv_strn(const char *s, size_t n)
{
    dv_str_t v = { s, (uint32_t)n };
    return v;
}

/* True if v holds exactly the C string s. */
bool dv_str_eq(dv_str_t v, const char *s);

/* New NUL-terminated copy; caller frees. Absent gives NULL. */
char *dv_str_dup(dv_str_t v);

/* Copies into buf (truncating), NUL-terminated; returns buf. */
char *dv_str_copy(dv_str_t v, char *buf, size_t size);

/* Checks that the len bytes at s make a name drover accepts (a queue, job
 * type, worker, batch or idempotency key): valid UTF-8 (no overlong forms,
 * no surrogates) without control characters (C0, DEL, C1), so a name can be
 * stored, logged and printed as it is. Length limits are the caller's.
 * Returns NULL if it is fine, else a short reason ("is not valid UTF-8",
 * "has a control character"). */
const char *dv_name_check(const char *s, size_t len);

/* True if the len bytes at s are text that can be kept and shown as it
 * is: valid UTF-8 (no overlong forms, no surrogates, nothing past
 * U+10FFFF, no sequence cut short) without a NUL byte. Other control
 * characters (newline, tab) are allowed: a traceback has them, and JSON
 * escapes them. */
bool dv_text_valid(const char *s, size_t len);

/* A copy of the len bytes at s that is safe to print on a terminal: valid
 * UTF-8 without control characters as it is, newline, tab and carriage
 * return as \n \t \r, other control characters as \xNN (C0, DEL) or
 * \u00NN (C1), and bytes that are not UTF-8 as \xNN. Caller frees; NULL
 * if out of memory. */
char *dv_text_escape(const char *s, size_t len);

#endif
