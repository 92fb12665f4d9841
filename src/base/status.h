/*
 * Status codes shared by every module of greedylr, and the fixed-size error message buffer
 * that travels with them from the module that found the fault up to the client.
 */
#ifndef GLR_STATUS_H
#define GLR_STATUS_H

/* Every function that can fail returns 0 or one of these negative codes. */
enum glr_status {
    GLR_OK = 0,
    GLR_EINVAL = -1,    /* a value the caller gave is not acceptable (names the field) */
    GLR_ENOMEM = -2,    /* an allocation failed */
    GLR_ENOTFOUND = -3, /* the thing asked for does not exist */
    GLR_ECONFLICT = -4, /* the request contradicts the current state */
    GLR_ETOOBIG = -5,   /* a named limit was exceeded */
    GLR_ECORRUPT = -6,  /* stored data does not decode (state, database) */
    GLR_EIO = -7,       /* the operating system or the database failed */
    GLR_EBUSY = -8,     /* a resource is temporarily exhausted; try again */
    GLR_ESTATE = -9,    /* the object is in a state that forbids the call */
    GLR_ELIMIT = -10,   /* a per-client or per-job limit was reached; slow down */
    GLR_EAGAIN = -11,   /* not yet: what was asked for does not exist yet */
    GLR_EWAIT = -12,    /* not an error: the answer will come later, through a callback */
    GLR_EAUTH = -13,    /* no valid credentials were given */
    GLR_EDENIED = -14,  /* the credentials given do not allow the call */
    /* What is wrong with a request body before any field is read (req.h). */
    GLR_EMALFORMED = -15, /* not JSON, or nested deeper than allowed */
    GLR_EMEDIA = -16,     /* a media type other than JSON */
    GLR_EQUOTA = -17,     /* a configured bound on what is stored was reached (names it) */
};

/* Size of every error message buffer; longer messages are truncated. */
#define GLR_ERR_MAX 256

/* Returns a short constant name for a status ("invalid", "not found", ...). */
const char *glr_status_name(int status);

/*
 * Formats a message into err (GLR_ERR_MAX bytes; may be NULL) and returns status, so a
 * failing function can end with `return glr_fail(err, GLR_EINVAL, "...", ...)`.
 */
int glr_fail(char *err, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
