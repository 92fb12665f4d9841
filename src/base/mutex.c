/* Ordered mutexes (see mutex.h). */
#include "base/mutex.h"

#include "base/clock.h"

#ifndef NDEBUG
_Thread_local uint32_t glr_mutex_levels_held;
_Thread_local char glr_mutex_thread_tag;
#endif

int glr_mutex_wait_until(struct glr_mutex *m, pthread_cond_t *cond, int64_t until_mono_ms)
{
    struct timespec until = glr_clock_mono_timespec(until_mono_ms);
    glr_mutex_giving(m);
    int rc = pthread_cond_timedwait(cond, &m->mutex, &until);
    glr_mutex_taken(m);
    return rc;
}

void glr_cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}
