/*
 * Near misses: the known name a client most likely meant when it sent an unknown one
 * (a config key, a field of a request body), for "did you mean" in the message.
 */
#ifndef GLR_SUGGEST_H
#define GLR_SUGGEST_H

#include <stddef.h>

/* Names of this length or more are compared with none (and suggest nothing). */
#define SUGGEST_NAME_MAX 40
/* The largest edit distance still taken for a typo. */
#define SUGGEST_DISTANCE_MAX 2

/*
 * The first of the count names in known closest to word by edit distance (Levenshtein),
 * if at most SUGGEST_DISTANCE_MAX edits away; NULL when none is that close. Borrowed from
 * known.
 */
const char *suggest_closest(const char *word, const char *const *known, size_t count);

#endif
