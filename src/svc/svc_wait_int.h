/*
 * Waiting requests (owner: svc_wait.c), as Redis's blocked clients: a rank waiting for
 * the other ranks of its step, a request waiting for its decision to be committed, an lr
 * lookup waiting for a step to be decided. Each job keeps its own waiters (under its
 * lock); the jobs with waiters or a step being gathered are kept in a heap ordered by
 * their earliest deadline (under waits->lock), and one timer thread sleeps until the
 * first of them, so that nothing is swept while nothing is due. Deadlines are monotonic
 * milliseconds (glr_clock_mono_ms()): a step of the system clock moves none of them.
 *
 * A waiter taken off its job is answered (svc_waiter.done) only once the job's lock is
 * released (svc_job_leave()), so that the HTTP layer never runs under a service lock.
 */
#ifndef GLR_SVC_WAIT_INT_H
#define GLR_SVC_WAIT_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/mutex.h"

struct svc;
struct svc_job;
struct svc_waiter;
struct svc_report_result;

/*
 * What the timer does with a job whose deadline came, and what stopping does with its
 * gathered ranks: the reports' rules (svc_report.c), given to svc_wait_start() so that
 * waiting knows nothing of reports. Both run with job->lock held.
 */
typedef void (*svc_wait_expire_fn)(struct svc *svc, struct svc_job *job, int64_t now, char *err);
typedef void (*svc_wait_drop_fn)(struct svc *svc, struct svc_job *job);

struct svc_waits {
    struct glr_mutex lock; /* guards everything below, and each job's heap_index, heap_at */
    pthread_cond_t wake;   /* monotonic: the first deadline moved earlier, or stopping */
    struct svc_job **heap; /* watched jobs by heap_at; each entry holds a reference */
    size_t count;
    size_t cap;
    int64_t nwaiters; /* waiting requests of all jobs together */
    bool stopping;
    bool started; /* fixed after svc_wait_start() */
    pthread_t timer;
    svc_wait_expire_fn expire; /* fixed after svc_wait_start() */
    svc_wait_drop_fn drop;     /* fixed after svc_wait_start() */
};

/* Makes the empty heap. */
void svc_wait_init(struct svc_waits *waits);

/* Starts the timer thread. Returns GLR_OK or GLR_ENOMEM. */
int svc_wait_start(struct svc *svc, svc_wait_expire_fn expire, svc_wait_drop_fn drop, char *err);

/*
 * Answers every waiting request with GLR_EBUSY ("stopping"), drops the ranks gathered
 * and not decided (none of them was answered, so their clients retry), refuses new
 * waiters, and stops the timer thread. Safe to call twice.
 */
void svc_wait_stop(struct svc *svc);

/* Gives back the heap's references and frees it; after svc_wait_stop(). */
void svc_wait_destroy(struct svc *svc);

/* Waiting requests of all jobs, and jobs watched (with waiters or a step gathered). */
void svc_wait_counts(struct svc *svc, int64_t *waiters, int64_t *jobs);

/*
 * Adds a waiting request for step, within the per-job and global limits; a lookup ends
 * at deadline (monotonic ms), other waiters when their step is decided. Call with
 * job->lock held. Returns GLR_EWAIT, GLR_ELIMIT or GLR_EBUSY.
 */
int svc_wait_add(struct svc *svc, struct svc_job *job, struct svc_waiter *waiter, int64_t step,
                 bool lookup, int64_t deadline, char *err);

/*
 * Takes the waiters of steps from..to off the job, to be answered status (and result, and
 * err, which must stay valid until the job's lock is released) by svc_job_leave(). Call
 * with job->lock held.
 */
void svc_wait_take(struct svc *svc, struct svc_job *job, int64_t from, int64_t to, int status,
                   const struct svc_report_result *result, const char *err);

/*
 * Takes waiter off the job, to be answered status and err (a constant) by
 * svc_job_leave(), if it waits there; returns whether it did. Call with job->lock held.
 */
bool svc_wait_cancel(struct svc *svc, struct svc_job *job, struct svc_waiter *waiter, int status,
                     const char *err);

/* Takes the lookups whose deadline is at or before now (GLR_EAGAIN); job->lock held. */
void svc_wait_take_expired(struct svc *svc, struct svc_job *job, int64_t now);

/*
 * Puts the job in the heap at its earliest deadline, moves it there, or takes it out
 * when nothing waits on it any more; call with job->lock held after its waiters or its
 * gathered step changed. (svc_wait_add and svc_wait_take call it themselves.)
 */
void svc_wait_watch(struct svc *svc, struct svc_job *job);

#endif
