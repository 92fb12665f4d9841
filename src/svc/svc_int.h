/*
 * Internals of the service, shared by its files (the contract is svc.h). Each piece of
 * shared state has one owner file, with its own private header:
 *
 *   svc_job_int.h   svc_job.c      the job table: a job in memory, its lock, references,
 *                                  loading (with the replay of its history), settling,
 *                                  forgetting and eviction
 *   svc_wait_int.h  svc_wait.c     waiting requests: per job, and the deadlines of all jobs
 *                                  in one heap read by the timer thread
 *   svc_replay_int.h svc_replay.c  replays of stored history through a policy
 *
 *   svc_family.c                   families: their list, one family and what tuning
 *                                  would choose for it, and the choice for a tuned job
 *
 * and the files that use them: svc.c (the service object; jobs created, read, changed,
 * deleted), svc_learn.c (a family's learned models), svc_list.c (listing), svc_report.c (reports,
 * ranks, decisions), svc_rewind.c, svc_history.c, svc_csv.c and svc_ops.c.
 *
 * The lock order, which debug builds assert (base/mutex.h): a thread holding one of these
 * may take only those below it.
 *   1. tune_lock        (SVC_LOCK_TUNE)   tuned creates, one at a time (svc_family.c), so
 *                                         that a sweep's jobs see each other; no job lock
 *                                         is taken under it
 *   2. job->lock        (SVC_LOCK_JOB)    one job's state; never two jobs at once
 *   3. waits->lock      (SVC_LOCK_WAITS)  the deadline heap and the count of waiters
 *   4. jobs->map_lock   (SVC_LOCK_MAP)    the job table and every job's reference count
 *   5. the store's locks (store.h), which the service takes under a job lock when it
 *      writes; the store's writer thread calls back (decision_stored) holding none.
 * Callbacks to clients (svc_waiter.done) run with none of these held.
 */
#ifndef GLR_SVC_INT_H
#define GLR_SVC_INT_H

#include <stdatomic.h>

#include "base/clock.h"
#include "base/mutex.h"
#include "svc/svc.h"
#include "svc/svc_job_int.h"
#include "svc/svc_wait_int.h"

/* The lock levels of the service (see the order above). */
enum { SVC_LOCK_TUNE = 1, SVC_LOCK_JOB = 2, SVC_LOCK_WAITS = 3, SVC_LOCK_MAP = 4 };

/* The service: the store, the jobs in memory, and the requests waiting on them. */
struct svc {
    struct store *store; /* owned */
    struct svc_jobs jobs;
    struct svc_waits waits;
    atomic_int csv_exports;       /* exports open now, at most SVC_CSV_EXPORTS_MAX */
    uint64_t max_reports_per_job; /* svc_options; set by svc_open */
    struct glr_mutex tune_lock;   /* svc_family.c */
    atomic_bool stopping;         /* svc.c: set by svc_cancel_waiters(); long work gives up */
};

/* Adds item to object under key, deleting item on failure; false when out of memory. */
bool svc_json_add(cJSON *object, const char *key, cJSON *item);

/* Adds ms (wall-clock milliseconds) under key as an RFC 3339 time; false when out of memory. */
bool svc_json_add_time(cJSON *object, const char *key, int64_t ms);

/*
 * Calls fn for each job of family in creation order, at least the oldest most of them (a
 * page at a time, so that no reader is held for long: the last page may pass most), in
 * svc_family.c. Returns GLR_OK, GLR_ENOMEM (when fn stopped the scan: it says so by
 * failing) or GLR_EIO.
 */
int svc_family_scan(struct svc *svc, const char *family, int64_t most, store_job_fn fn, void *ctx,
                    char *err);

/* Prints a tree without formatting; NULL for a NULL tree or out of memory. The caller frees. */
char *svc_json_print(const cJSON *tree);

/*
 * Reads the decimal digits at *p (no sign, no space) into *out and moves *p past them.
 * Returns false, leaving both alone, when there is no digit or the number passes INT64_MAX.
 * (Page tokens are made of them.)
 */
bool svc_parse_decimal(const char **p, int64_t *out);

/* GLR_OK when step is from min to GLR_MAX_STEP, else GLR_EINVAL naming it as name. */
int svc_check_step(const char *name, int64_t step, int64_t min, char *err);

/* A job's key and the shape of its lr, for reads of its history that run without its lock. */
struct svc_history_key {
    int64_t seq;
    bool lr_is_array;
    size_t groups;
};

/*
 * Reads the key of job id: from memory once its decisions in flight are committed, or
 * from its row without loading it (svc_history.c). Returns GLR_OK, GLR_ENOTFOUND,
 * GLR_ECORRUPT or GLR_EIO.
 */
int svc_history_key(struct svc *svc, const char *id, struct svc_history_key *key, char *err);

/* What a tuned create is given (svc_family.c); each field is the struct's own. */
struct svc_tuned {
    cJSON *lr;     /* the request's lr times the chosen lr factor */
    cJSON *config; /* the request's config with the chosen settings */
    char *record;  /* JSON text of the job's "tuned": what was chosen and why */
    char *request; /* JSON text of the request's lr and config, which a retry must match */
};

/*
 * Chooses the settings of a new job of policy in family from the family's jobs; call
 * with svc->tune_lock held, until the job is stored, so that the next choice sees it.
 * Returns GLR_OK, GLR_EINVAL (a policy without a grid, a config that sets a tuned key,
 * an lr that is not numbers), GLR_ENOMEM or GLR_EIO.
 */
int svc_family_tune(struct svc *svc, const char *family, const char *policy, const cJSON *lr,
                    const cJSON *config, struct svc_tuned *out, char *err);

/* Frees what a tuned create was given; a zeroed struct is fine. */
void svc_tuned_clear(struct svc_tuned *tuned);

/*
 * The JSON text of a create's lr and config (and its policy, when not NULL: a learned
 * create's, whose job may run another), as its record keeps them for a retry to match.
 */
char *svc_tuned_request(const char *policy, const cJSON *lr, const cJSON *config);

/*
 * What a job created with policy "learned" in family is given: the request's lr, its
 * config with the family's newest model and its version, and the record of why; or, when
 * the family has no model yet, the request's config under *policy "auto", and a record
 * that says so. Returns GLR_OK, GLR_EINVAL (an unknown family, a config that sets the
 * model), GLR_ENOMEM or GLR_EIO.
 */
int svc_family_learned(struct svc *svc, const char *family, const cJSON *lr, const cJSON *config,
                       struct svc_tuned *out, const char **policy, char *err);

/*
 * A page of rows in (step, rank) order being read into {"job", "points",
 * "next_page_token"} (svc_history.c): the history's rows, or the ranks' losses.
 */
struct svc_page {
    cJSON *answer; /* owned until svc_page_finish() */
    cJSON *points; /* the answer's array */
    int64_t wanted;
    int64_t count;
    bool more;         /* a row past the page was seen: it starts the next one */
    int64_t next_step; /* that row's step and rank, the next page's token */
    int64_t next_rank;
    int rc; /* GLR_ENOMEM when a point could not be added */
    char *err;
};

/*
 * Starts a page of job id for q: *key receives the job's key, *from_step and *from_rank
 * the first row (the page token's, else q's from_step), and the page its empty answer.
 * Returns GLR_OK, GLR_EINVAL (a bad page token), GLR_ENOTFOUND, GLR_ENOMEM or GLR_EIO.
 */
int svc_page_open(struct svc *svc, const char *id, const struct svc_history_query *q,
                  struct svc_history_key *key, int64_t *from_step, int64_t *from_rank,
                  struct svc_page *page, char *err);

/*
 * Adds the point of the row at (step, rank), taking point (which may be NULL: out of
 * memory); false when the scan must stop: the page is full (the row starts the next
 * page) or a point could not be added (page->rc).
 */
bool svc_page_add(struct svc_page *page, int64_t step, int64_t rank, cJSON *point);

/*
 * Ends the page: with rc GLR_OK (and page->rc too), *out receives the answer with its
 * next_page_token ("h" STEP "." RANK, or null on the last page; null too when unpaged);
 * otherwise the answer is freed. Returns the outcome.
 */
int svc_page_finish(struct svc_page *page, int rc, bool paged, cJSON **out);

/* The job as JSON (the caller's); call with job->lock held. */
int svc_describe_job(const struct svc_job *job, cJSON **out, char *err);

/*
 * Forgets the ranks gathered for a step not decided, and what their requests wait for
 * with it; call with job->lock held (svc_report.c).
 */
void svc_report_drop_gathered(struct svc *svc, struct svc_job *job);

/*
 * The timer's work on a job whose deadline came (svc_report.c): decides a step whose ranks
 * are late and ends lookups that waited long enough; call with job->lock held. err is the
 * message the waiters answered may be given: it must last until the lock is released.
 */
void svc_report_expire(struct svc *svc, struct svc_job *job, int64_t now_mono_ms, char *err);

#endif
