/*
 * Internals of the service, shared by its files (the contract is svc.h): a job in memory,
 * the service object, and the helpers more than one file uses. svc.c holds jobs and their
 * lifecycle, svc_report.c reports, ranks and waiting requests, svc_history.c history and
 * CSV, svc_rewind.c replays of stored history and rewinds.
 */
#ifndef GLR_SVC_INT_H
#define GLR_SVC_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "base/clock.h"
#include "svc/svc.h"

/* A job in memory. Fields below `lock` are guarded by it; refs and next by the map lock. */
struct job {
    char id[STORE_ID_MAX + 1];
    int64_t seq;
    int refs;
    struct job *next;

    pthread_mutex_t lock;
    bool gone; /* deleted, or dropped after a failed write: look it up again */
    struct glr_sched *sched;
    char *tags; /* JSON object */
    bool finished;
    int64_t last_step; /* -1 before the first report */
    int64_t reports;
    int64_t created_ms;
    int64_t updated_ms;
    int64_t rewinds;
    int64_t world_size;
    int aggregate; /* enum aggregate */
    int64_t aggregate_timeout_ms;

    /* Decisions sent to the store and not yet committed; settled is signalled at 0. */
    int64_t in_flight;
    pthread_cond_t settled;
    atomic_bool store_failed; /* see struct store_commit */

    /* Gathering the ranks of one step (jobs of several ranks). */
    int64_t pending_step; /* -1: none */
    int64_t pending_count;
    int64_t pending_deadline_ms;
    double *pending_losses;      /* world_size values */
    double pending_lr_cap;       /* the lowest lr_cap of the ranks so far; +inf: none */
    unsigned char *pending_seen; /* world_size flags */
    struct svc_waiter *waiters;  /* ranks and lookups waiting for a decision */
    int64_t nwaiters;
    bool in_waiting_list; /* guarded by svc->waiting_lock */
    struct job *waiting_next;
};

/* How the losses of the ranks of one step become the loss the policy judges. */
enum aggregate { AGGREGATE_MEAN, AGGREGATE_MAX, AGGREGATE_MIN, AGGREGATE_RANK0 };
extern const char *const aggregate_names[];

/* The service: the jobs in memory, and the requests waiting on them. */
struct svc {
    struct store *store;
    pthread_mutex_t map_lock;
    struct job **buckets;
    size_t nbuckets;
    size_t njobs;
    size_t resident_max; /* jobs kept in memory; idle ones beyond it are dropped */
    size_t evict_bucket; /* where the search for idle jobs goes on */

    /* Jobs with a step being gathered or requests waiting, for the timer thread. */
    pthread_mutex_t waiting_lock;
    pthread_cond_t waiting_wake;
    struct job *waiting; /* each holds a reference */
    int64_t nwaiters;    /* waiting requests of all jobs */
    bool stopping;
    bool timer_started;
    pthread_t timer;
};

/* Prints a tree without formatting; NULL when out of memory. The caller frees. */
char *print(const cJSON *tree);

/*
 * Reads the decimal digits at *p (no sign, no space) into *out and moves *p past them.
 * Returns false, leaving both alone, when there is no digit or the number passes INT64_MAX.
 */
bool parse_decimal(const char **p, int64_t *out);

/* Adds item to object under key, deleting item on failure; false when out of memory. */
bool add_item(cJSON *object, const char *key, cJSON *item);

/*
 * Finds the job (in memory, or loaded from the store) and locks it. On success the caller
 * holds job->lock and a reference: job_unlock() gives both back. GLR_ENOTFOUND when no
 * such job exists.
 */
int job_lock(struct svc *svc, const char *id, struct job **out, char *err);
void job_unlock(struct svc *svc, struct job *job);

/*
 * job_lock(), then waits until the job's decisions are all committed, so that the store
 * holds all that memory does (for changes and reads that go to the store).
 */
int job_lock_settled(struct svc *svc, const char *id, struct job **out, char *err);

/* Gives back a reference; the last one frees the job. */
void job_release(struct svc *svc, struct job *job);

/* Drops a job from memory (after a delete or a failed write); call with job->lock held. */
void job_forget(struct svc *svc, struct job *job);

/*
 * Waits until every decision of the job sent to the store is committed, so that the
 * store holds all that memory does; call with job->lock held (it is released meanwhile).
 * GLR_EIO when one of them failed: the job was dropped, and the caller should give up.
 */
int job_settle(struct job *job, char *err);

/* Where a replay of stored history has brought a scheduler. */
struct replay_progress {
    int64_t last_step;  /* the last step replayed, or as given when none was */
    int64_t reports;    /* counted on from the value given */
    int64_t updated_ms; /* the last replayed report's time, or as given */
};

/*
 * Steps sched through the stored history of job seq from from_step to to_step, checking
 * that each step gives the answer that was stored, and moves *progress on. Holds a reader
 * connection meanwhile. Returns GLR_OK, GLR_ECORRUPT (an answer differs) or GLR_EIO.
 */
int replay_history(struct svc *svc, int64_t seq, struct glr_sched *sched, int64_t from_step,
                   int64_t to_step, struct replay_progress *progress, char *err);

/* The job as JSON (the caller's); call with job->lock held. */
int describe_job(const struct job *job, cJSON **out, char *err);

/*
 * Answers the waiting requests of job for steps from..to with status (and result), and
 * takes them off the job; call with job->lock held.
 */
void wake(struct svc *svc, struct job *job, int64_t from, int64_t to, int status,
          const struct svc_report_result *result, const char *err);

/* Forgets the ranks gathered for a step not decided; call with job->lock held. */
void drop_pending(struct job *job);

/* The timer thread: decides steps whose ranks are late, ends lookups that waited. */
void *timer_main(void *arg);

#endif
