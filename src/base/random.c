/* Randomness (see random.h). */
#include "base/random.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>

#include "base/status.h"

int glr_random_bytes(void *buf, size_t size, char *err)
{
    unsigned char *bytes = buf;
    size_t got = 0;
    while (got < size) {
        ssize_t n = getrandom(bytes + got, size - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return glr_fail(err, GLR_EIO, "getrandom: %s", strerror(errno));
        got += (size_t)n;
    }
    return GLR_OK;
}
