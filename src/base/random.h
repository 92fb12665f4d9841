/* Randomness from the kernel's generator (getrandom), for ids and tokens. */
#ifndef GLR_RANDOM_H
#define GLR_RANDOM_H

#include <stddef.h>

/* Fills buf with size random bytes. Returns GLR_OK or GLR_EIO (err says why). */
int glr_random_bytes(void *buf, size_t size, char *err);

#endif
