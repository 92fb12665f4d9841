/* Names of the status codes and the helper that fills an error message buffer. */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>

const char *glr_status_name(int status)
{
    switch (status) {
    case GLR_OK:
        return "ok";
    case GLR_EINVAL:
        return "invalid";
    case GLR_ENOMEM:
        return "out of memory";
    case GLR_ENOTFOUND:
        return "not found";
    case GLR_ECONFLICT:
        return "conflict";
    case GLR_ETOOBIG:
        return "too big";
    case GLR_ECORRUPT:
        return "corrupt";
    case GLR_EIO:
        return "i/o error";
    case GLR_EBUSY:
        return "busy";
    case GLR_ESTATE:
        return "wrong state";
    case GLR_ELIMIT:
        return "limit reached";
    case GLR_EAGAIN:
        return "not yet";
    case GLR_EWAIT:
        return "answered later";
    case GLR_EAUTH:
        return "not authenticated";
    case GLR_EDENIED:
        return "not allowed";
    case GLR_EMALFORMED:
        return "malformed";
    case GLR_EMEDIA:
        return "wrong media type";
    case GLR_EQUOTA:
        return "quota reached";
    }
    return "unknown status";
}

int glr_fail(char *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, GLR_ERR_MAX, fmt, ap);
        va_end(ap);
    }
    return status;
}
