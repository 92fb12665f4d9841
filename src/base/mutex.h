/*
 * Mutexes that know their place in the lock order. Each is given a level when it is made;
 * a thread may take a mutex only when every mutex it holds has a lower level, so that two
 * threads can never wait on each other. Debug builds (no NDEBUG, as the tests are built)
 * assert that order on every lock, and let a function assert that its caller holds a
 * lock ("call with job->lock held"); release builds compile both to plain pthread calls.
 *
 * Levels are small numbers (1 to GLR_MUTEX_LEVEL_MAX) chosen by the header that owns the
 * locks, which writes the order down; level 0 is a leaf lock outside the order (held for
 * a few instructions, never while taking another).
 */
#ifndef GLR_MUTEX_H
#define GLR_MUTEX_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define GLR_MUTEX_LEVEL_MAX 31

struct glr_mutex {
    pthread_mutex_t mutex;
    unsigned level;
    /*
     * The holder's glr_mutex_thread_tag, NULL when free (debug builds). Atomic, because
     * a thread asking "do I hold it?" reads it while the holder may be writing it; only
     * the holder can have stored its own tag, so the answer is never wrong.
     */
    _Atomic(const void *) owner;
};

#ifndef NDEBUG
/* The levels the calling thread holds, one bit each, and its tag (mutex.c). */
extern _Thread_local uint32_t glr_mutex_levels_held;
extern _Thread_local char glr_mutex_thread_tag;
#endif

static inline void glr_mutex_init(struct glr_mutex *m, unsigned level)
{
    assert(level <= GLR_MUTEX_LEVEL_MAX);
    pthread_mutex_init(&m->mutex, NULL);
    m->level = level;
    atomic_init(&m->owner, NULL);
}

static inline void glr_mutex_destroy(struct glr_mutex *m)
{
    pthread_mutex_destroy(&m->mutex);
}

/* True when the calling thread holds m (debug builds only). */
#ifndef NDEBUG
static inline bool glr_mutex_held(const struct glr_mutex *m)
{
    return atomic_load_explicit(&m->owner, memory_order_relaxed) == &glr_mutex_thread_tag;
}
#endif

/* Asserts that the calling thread holds m, or that it does not (debug builds). */
#define glr_mutex_assert_held(m)     assert(glr_mutex_held(m))
#define glr_mutex_assert_not_held(m) assert(!glr_mutex_held(m))

/*
 * Asserts that the calling thread holds no ordered lock: before a callback that may
 * take any of them (a client's done, the store's commit callbacks).
 */
#define glr_mutex_assert_none_held() assert(glr_mutex_levels_held == 0)

/* Bookkeeping after the mutex was taken (by a lock or the end of a wait). */
static inline void glr_mutex_taken(struct glr_mutex *m)
{
#ifndef NDEBUG
    atomic_store_explicit(&m->owner, &glr_mutex_thread_tag, memory_order_relaxed);
    if (m->level)
        glr_mutex_levels_held |= 1u << m->level;
#else
    (void)m;
#endif
}

/* Bookkeeping before the mutex is given up (by an unlock or the start of a wait). */
static inline void glr_mutex_giving(struct glr_mutex *m)
{
#ifndef NDEBUG
    glr_mutex_assert_held(m);
    atomic_store_explicit(&m->owner, NULL, memory_order_relaxed);
    if (m->level)
        glr_mutex_levels_held &= ~(1u << m->level);
#else
    (void)m;
#endif
}

static inline void glr_mutex_lock(struct glr_mutex *m)
{
    /* Not recursive; and no lock of this level or above may be held: the whole order. */
    glr_mutex_assert_not_held(m);
    assert(m->level == 0 || (glr_mutex_levels_held >> m->level) == 0);
    pthread_mutex_lock(&m->mutex);
    glr_mutex_taken(m);
}

static inline void glr_mutex_unlock(struct glr_mutex *m)
{
    glr_mutex_giving(m);
    pthread_mutex_unlock(&m->mutex);
}

/* pthread_cond_wait on m, which the caller holds. */
static inline void glr_mutex_wait(struct glr_mutex *m, pthread_cond_t *cond)
{
    glr_mutex_giving(m);
    pthread_cond_wait(cond, &m->mutex);
    glr_mutex_taken(m);
}

/*
 * pthread_cond_timedwait on m until the monotonic time until_mono_ms; cond must have been
 * made by glr_cond_init_monotonic(). Returns pthread_cond_timedwait's result.
 */
int glr_mutex_wait_until(struct glr_mutex *m, pthread_cond_t *cond, int64_t until_mono_ms);

/* Makes a condition variable whose timed waits run on CLOCK_MONOTONIC. */
void glr_cond_init_monotonic(pthread_cond_t *cond);

#endif
