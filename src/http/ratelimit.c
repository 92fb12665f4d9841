/*
 * Token buckets in an open-addressing hash table of fixed size (see ratelimit.h). A key
 * whose bucket has filled up again is the same as a key never seen, which is what lets the
 * table forget keys without changing any answer.
 */
#include "http/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/hash.h"

/* Slots in the table: twice the keys, so that probes stay short. */
#define SLOTS (2 * RATELIMIT_KEYS_MAX)

struct bucket {
    char key[RATELIMIT_KEY_MAX + 1]; /* "" for a free slot */
    double tokens;                   /* requests left, up to the rate */
    double at;                       /* when tokens was computed, in seconds */
};

struct ratelimit {
    pthread_mutex_t lock;
    double rate;
    double burst; /* a bucket's size: a second's worth, and at least one request */
    size_t used;
    struct bucket slots[SLOTS];
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct ratelimit *ratelimit_create(double rate)
{
    if (!(rate > 0 && rate <= RATELIMIT_RATE_MAX))
        return NULL;
    struct ratelimit *limit = calloc(1, sizeof(*limit));
    if (!limit)
        return NULL;
    pthread_mutex_init(&limit->lock, NULL);
    limit->rate = rate;
    limit->burst = rate < 1 ? 1 : rate;
    return limit;
}

void ratelimit_free(struct ratelimit *limit)
{
    if (!limit)
        return;
    pthread_mutex_destroy(&limit->lock);
    free(limit);
}

static size_t hash_key(const char *key)
{
    return (size_t)(glr_hash_text(key) % SLOTS);
}

/* A bucket's tokens now: what it held plus what the time since has added, at most burst. */
static double refilled(const struct ratelimit *limit, const struct bucket *b, double now)
{
    double tokens = b->tokens + (now - b->at) * limit->rate;
    return tokens > limit->burst ? limit->burst : tokens;
}

/*
 * Forgets every key whose bucket is full again (rebuilding the table, since open
 * addressing cannot simply empty a slot in the middle of a probe run).
 */
static void sweep(struct ratelimit *limit, double now)
{
    /* Without memory for the copy every key is forgotten: clients get fresh buckets. */
    struct bucket *keep = malloc(RATELIMIT_KEYS_MAX * sizeof(*keep));
    size_t kept = 0;
    for (size_t i = 0; keep && i < SLOTS; i++) {
        struct bucket *b = &limit->slots[i];
        if (b->key[0] && refilled(limit, b, now) < limit->burst)
            keep[kept++] = *b;
    }
    memset(limit->slots, 0, sizeof(limit->slots));
    limit->used = 0;
    for (size_t k = 0; k < kept; k++) {
        size_t i = hash_key(keep[k].key);
        while (limit->slots[i].key[0])
            i = (i + 1) % SLOTS;
        limit->slots[i] = keep[k];
        limit->used++;
    }
    free(keep);
}

/* The slot of key, claimed if new; NULL when the table is full of busy keys. */
static struct bucket *find(struct ratelimit *limit, const char *key, double now)
{
    size_t i = hash_key(key);
    while (limit->slots[i].key[0]) {
        if (strcmp(limit->slots[i].key, key) == 0)
            return &limit->slots[i];
        i = (i + 1) % SLOTS;
    }
    if (limit->used >= RATELIMIT_KEYS_MAX) {
        sweep(limit, now);
        if (limit->used >= RATELIMIT_KEYS_MAX)
            return NULL;
        return find(limit, key, now);
    }
    struct bucket *b = &limit->slots[i];
    snprintf(b->key, sizeof(b->key), "%s", key);
    b->tokens = limit->burst;
    b->at = now;
    limit->used++;
    return b;
}

bool ratelimit_take(struct ratelimit *limit, const char *key, unsigned *retry_after_s)
{
    char cut[RATELIMIT_KEY_MAX + 1];
    snprintf(cut, sizeof(cut), "%s", key);
    double now = now_s();
    pthread_mutex_lock(&limit->lock);
    struct bucket *b = find(limit, cut, now);
    bool allowed = true;
    if (b) {
        b->tokens = refilled(limit, b, now);
        b->at = now;
        if (b->tokens >= 1) {
            b->tokens -= 1;
        } else {
            allowed = false;
            double wait = ceil((1 - b->tokens) / limit->rate);
            *retry_after_s = wait < 1 ? 1 : wait > 3600 ? 3600 : (unsigned)wait;
        }
    }
    pthread_mutex_unlock(&limit->lock);
    return allowed;
}

int ratelimit_parse(const char *text, double *rate)
{
    if (strcmp(text, "0") == 0 || strcmp(text, "off") == 0) {
        *rate = 0;
        return 0;
    }
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || strcmp(end, "/s") != 0 || !(v > 0 && v <= RATELIMIT_RATE_MAX))
        return -1;
    *rate = v;
    return 0;
}
