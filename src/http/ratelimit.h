/*
 * Requests per second per client: one token bucket for each key (an API token's name, or
 * the client's address when the API runs without tokens). A bucket holds one
 * second's worth of requests (at least one), so a client may send a burst of that size.
 */
#ifndef GLR_RATELIMIT_H
#define GLR_RATELIMIT_H

#include <stdbool.h>

/* Most keys tracked at once; past it, keys whose buckets are full are forgotten. */
#define RATELIMIT_KEYS_MAX 4096
/* Longest key, in bytes; longer keys are cut. */
#define RATELIMIT_KEY_MAX 64
/* Highest rate accepted, in requests per second. */
#define RATELIMIT_RATE_MAX 1000000.0

struct ratelimit;

/*
 * Makes a limiter of rate requests per second for each key (0 < rate <= RATELIMIT_RATE_MAX).
 * Returns NULL when out of memory; the caller frees it with ratelimit_free().
 */
struct ratelimit *ratelimit_create(double rate);

/* NULL is accepted. */
void ratelimit_free(struct ratelimit *limit);

/*
 * Takes one request from key's bucket. Returns true when the request may go on; false when
 * the key is over its rate, with *retry_after_s set to the whole seconds (at least 1)
 * until it may send again. Thread-safe. When every slot holds a key that is over its rate,
 * new keys are let through rather than refused (and logged by the caller's choice).
 */
bool ratelimit_take(struct ratelimit *limit, const char *key, unsigned *retry_after_s);

/*
 * Parses "N/s" (N a positive number, at most RATELIMIT_RATE_MAX) into *rate; "0" and "off"
 * give 0 (no limit). Returns 0, or -1 when text is neither.
 */
int ratelimit_parse(const char *text, double *rate);

#endif
