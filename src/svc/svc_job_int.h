/*
 * The job table (owner: svc_job.c): the jobs in memory over the store. A job is found by
 * id (loaded from the store on first use: its row's state, then a replay of the history
 * rows after it), locked while a request works on it, and given back. Idle jobs beyond
 * the resident bound are dropped and loaded again when next used. See svc_int.h for the
 * lock order.
 */
#ifndef GLR_SVC_JOB_INT_H
#define GLR_SVC_JOB_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/mutex.h"
#include "svc/svc.h"

struct svc;

/* How the losses of the ranks of one step become the loss the policy judges. */
enum svc_aggregate {
    SVC_AGGREGATE_MEAN,
    SVC_AGGREGATE_MAX,
    SVC_AGGREGATE_MIN,
    SVC_AGGREGATE_RANK0
};
/* Their names, in that order, then NULL. */
extern const char *const svc_aggregate_names[];

/* A job in memory. Each field says which lock guards it; "fixed" ones never change. */
struct svc_job {
    char id[STORE_ID_MAX + 1];     /* fixed */
    int64_t seq;                   /* fixed: the store's key */
    int64_t world_size;            /* fixed */
    int aggregate;                 /* fixed: enum svc_aggregate */
    int64_t aggregate_timeout_ms;  /* fixed */
    char family[STORE_ID_MAX + 1]; /* fixed: "" for none */
    char *tuned;                   /* fixed: JSON of what tuning chose; NULL: not tuned */
    int refs;                      /* jobs->map_lock */
    struct svc_job *next;          /* jobs->map_lock: the bucket's chain */

    struct glr_mutex lock;
    bool gone;               /* lock: deleted, or dropped after a failed write: look it up again */
    struct glr_sched *sched; /* lock */
    char *tags;              /* lock: JSON object */
    bool finished;           /* lock */
    bool has_outcome;        /* lock: a finished job's outcome is known */
    struct store_outcome outcome; /* lock */
    int64_t last_step;            /* lock: -1 before the first report */
    int64_t reports;              /* lock */
    int64_t created_ms;           /* lock (wall clock) */
    int64_t updated_ms;           /* lock (wall clock) */
    int64_t rewinds;              /* lock */

    /* lock: decisions sent to the store and not yet committed; settled is signalled at 0. */
    int64_t in_flight;
    pthread_cond_t settled;
    atomic_bool store_failed; /* the store's, see struct store_commit */

    /* lock: the ranks of the step being gathered (jobs of several ranks; svc_report.c). */
    int64_t pending_step; /* -1: none */
    int64_t pending_count;
    int64_t pending_deadline;    /* monotonic ms */
    double *pending_losses;      /* world_size values */
    double pending_lr_cap;       /* the lowest lr_cap of the ranks so far; +inf: none */
    unsigned char *pending_seen; /* world_size flags */

    /* lock: requests waiting on the job (svc_wait.c). */
    struct svc_waiter *waiters;
    int64_t nwaiters;
    int64_t nlookups;
    int64_t lookup_deadline; /* monotonic ms, at or before every lookup's; INT64_MAX: none */
    /* lock: requests answered, to be called back once the lock is released. */
    struct svc_waiter *woken;

    /* waits->lock: the job's place in the deadline heap (svc_wait.c). */
    size_t heap_index; /* SIZE_MAX: not in it */
    int64_t heap_at;   /* monotonic ms; INT64_MAX: waiting without a deadline */
};

/* The job table. */
struct svc_jobs {
    struct glr_mutex map_lock; /* guards everything below, and every job's refs and next */
    struct svc_job **buckets;
    size_t nbuckets;
    size_t njobs;
    size_t resident_max; /* jobs kept in memory; idle ones beyond it are dropped */
    size_t evict_bucket; /* where the search for idle jobs goes on */
};

/* Makes the empty table. Returns GLR_OK or GLR_ENOMEM. */
int svc_jobs_init(struct svc_jobs *jobs, size_t resident_max, char *err);

/* Frees every job left in the table and the table; call when no thread uses it. */
void svc_jobs_destroy(struct svc_jobs *jobs);

/* How many jobs are in memory now. */
size_t svc_jobs_count(struct svc_jobs *jobs);

/* True when the job is in memory now (no reference is taken). */
bool svc_jobs_resident(struct svc_jobs *jobs, const char *id);

/*
 * Finds the job (in memory, or loaded from the store) and locks it. On success the caller
 * holds job->lock and a reference: svc_job_unlock() gives both back. GLR_ENOTFOUND when no
 * such job exists.
 */
int svc_job_lock(struct svc *svc, const char *id, struct svc_job **out, char *err);

/*
 * svc_job_lock(), then waits until the job's decisions are all committed, so that the
 * store holds all that memory does (for changes and reads that go to the store).
 */
int svc_job_lock_settled(struct svc *svc, const char *id, struct svc_job **out, char *err);

/*
 * Locks a job the caller holds a reference to (the timer, a decision coming back from
 * the store). Unlock it with svc_job_leave().
 */
void svc_job_enter(struct svc_job *job);

/*
 * Releases job->lock, then calls back the requests answered meanwhile (job->woken), with
 * no lock held. The reference stays the caller's.
 */
void svc_job_leave(struct svc_job *job);

/* svc_job_leave(), then gives back the reference of svc_job_lock(). */
void svc_job_unlock(struct svc *svc, struct svc_job *job);

/* Takes another reference to a job the caller holds one to (or holds the map lock for). */
void svc_job_ref(struct svc *svc, struct svc_job *job);

/* Gives back a reference; the last one frees the job. */
void svc_job_release(struct svc *svc, struct svc_job *job);

/* Drops a job from memory (after a delete or a failed write); call with job->lock held. */
void svc_job_forget(struct svc *svc, struct svc_job *job);

/*
 * Waits until every decision of the job sent to the store is committed; call with
 * job->lock held (it is released meanwhile). GLR_EIO when one of them failed: the job was
 * dropped, and the caller should give up.
 */
int svc_job_settle(struct svc_job *job, char *err);

/*
 * Builds a job, not in the table, from a row the store gave (its state, then the replay
 * of the history after it), for a reader that must not bring it into memory (listings).
 * The caller frees it with svc_job_free().
 */
int svc_job_from_row(struct svc *svc, const struct store_job *row, struct svc_job **out, char *err);

/* Frees a job that is in no table (svc_job_from_row()); NULL is accepted. */
void svc_job_free(struct svc_job *job);

#endif
