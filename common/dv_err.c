/* dv_err - error codes and reasons; see dv_err.h. */
#include "dv_err.h"

#include <stdarg.h>
#include <stdio.h>

const char *
dv_strerror(int err)
{
    switch (err) {
    case DV_OK:
        return "ok";
    case DV_ETRUNC:
        return "truncated message";
    case DV_EPROTO:
        return "invalid message";
    case DV_ETOOBIG:
        return "over a size limit";
    case DV_EVERSION:
        return "unsupported protocol version";
    case DV_ENOMEM:
        return "out of memory";
    case DV_ETRANSIENT:
        return "temporarily unavailable, try again";
    case DV_EIO:
        return "input/output error";
    case DV_ENOSPC:
        return "no space left on device";
    case DV_EFENCED:
        return "fenced: another broker took the store over";
    }
    return "unknown error";
}

int
dv_err_set(char *err, size_t size, const char *fmt, ...)
{
    if (err && size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, size, fmt, ap);
        va_end(ap);
    }
    return -1;
}
