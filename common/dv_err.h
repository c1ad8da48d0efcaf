/* dv_err - drover's error codes, shared by every part: decoders (DV_ETRUNC,
 * DV_EPROTO, DV_ETOOBIG), stores (DV_ETRANSIENT = retry, DV_EIO,
 * DV_ENOSPC), memory.
 * Functions return 0 (DV_OK) or one of these, or the plain -1 of the
 * "0 / -1" convention where callers do not branch on the reason. */
#ifndef DV_ERR_H
#define DV_ERR_H

#include <stddef.h>

typedef enum {
    DV_OK = 0,
    DV_ETRUNC = -1,     /* not msgpack, or the bytes end inside a value */
    DV_EPROTO = -2,     /* valid msgpack but not a valid message */
    DV_ETOOBIG = -3,    /* a frame, string, array or nesting over its limit */
    DV_EVERSION = -4,   /* a protocol version this side does not speak */
    DV_ENOMEM = -5,     /* out of memory */
    DV_ETRANSIENT = -6, /* store busy or connection lost: try again */
    DV_EIO = -7,        /* store or file error */
    DV_ENOSPC = -8,     /* the store's disk (or quota) is full */
    DV_EFENCED = -9,    /* another broker took the store over: this one may
                         * not write any more */
} dv_err_t;

/* Short English text for an error code ("truncated message", ...). */
const char *dv_strerror(int err);

/* Writes a printf-style reason into err (size bytes, always NUL-terminated;
 * err may be NULL or size 0, then nothing is written) and returns -1, so an
 * error path is one line: `return dv_err_set(err, size, "bad %s", what);`. */
int dv_err_set(char *err, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
