/* The hash of the project's in-memory tables: FNV-1a over a string's bytes. */
#ifndef GLR_HASH_H
#define GLR_HASH_H

#include <stdint.h>

/* FNV-1a, 64 bits, of the NUL-terminated text. */
static inline uint64_t glr_hash_text(const char *text)
{
    uint64_t h = 1469598103934665603u;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return h;
}

#endif
