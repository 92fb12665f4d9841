/*
 * The job table (see svc_job_int.h): jobs in memory by id, their references and locks,
 * loading from the store with the replay of the history after the row's state, and the
 * eviction of idle jobs.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/hash.h"
#include "svc/svc_int.h"
#include "svc/svc_replay_int.h"

/* Initial number of hash buckets; the table doubles when it is full. */
#define SVC_BUCKETS_INITIAL 1024

const char *const svc_aggregate_names[] = {"mean", "max", "min", "rank0", NULL};

static size_t bucket_of(const struct svc_jobs *jobs, const char *id)
{
    return (size_t)glr_hash_text(id) & (jobs->nbuckets - 1);
}

int svc_jobs_init(struct svc_jobs *jobs, size_t resident_max, char *err)
{
    glr_mutex_init(&jobs->map_lock, SVC_LOCK_MAP);
    jobs->resident_max = resident_max;
    jobs->nbuckets = SVC_BUCKETS_INITIAL;
    jobs->buckets = calloc(jobs->nbuckets, sizeof(*jobs->buckets));
    return jobs->buckets ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
}

void svc_job_free(struct svc_job *job)
{
    if (!job)
        return;
    glr_sched_free(job->sched);
    free(job->tags);
    free(job->tuned);
    free(job->pending_losses);
    free(job->pending_seen);
    glr_mutex_destroy(&job->lock);
    pthread_cond_destroy(&job->settled);
    free(job);
}

void svc_jobs_destroy(struct svc_jobs *jobs)
{
    for (size_t i = 0; jobs->buckets && i < jobs->nbuckets; i++) {
        struct svc_job *job = jobs->buckets[i];
        while (job) {
            struct svc_job *next = job->next;
            svc_job_free(job);
            job = next;
        }
    }
    free(jobs->buckets);
    jobs->buckets = NULL;
    glr_mutex_destroy(&jobs->map_lock);
}

size_t svc_jobs_count(struct svc_jobs *jobs)
{
    glr_mutex_lock(&jobs->map_lock);
    size_t n = jobs->njobs;
    glr_mutex_unlock(&jobs->map_lock);
    return n;
}

/* ---- loading ------------------------------------------------------------------------- */

/* Builds a scheduler from a stored job: its policy, lr and config, then its saved state. */
static int sched_from_row(const struct store_job *row, struct glr_sched **out, char *err)
{
    cJSON *lr = cJSON_Parse(row->initial_lr);
    cJSON *config = cJSON_Parse(row->config);
    cJSON *state = cJSON_Parse(row->state);
    int rc = GLR_OK;
    if (!lr || !config || !state)
        rc = glr_fail(err, GLR_ECORRUPT, "database: job %s has damaged JSON", row->id);
    if (!rc)
        rc = glr_sched_create(row->policy, lr, config, out, err);
    if (!rc) {
        rc = glr_sched_state_load(*out, state, err);
        if (rc) {
            glr_sched_free(*out);
            *out = NULL;
        }
    }
    cJSON_Delete(lr);
    cJSON_Delete(config);
    cJSON_Delete(state);
    if (rc == GLR_EINVAL)
        rc = GLR_ECORRUPT; /* a stored config that no longer validates is damage */
    return rc;
}

/*
 * A job's row in the store holds its state after row->last_step, but the row is written
 * only every SVC_STATE_EVERY reports: rewriting it with every report doubled the pages a
 * group commit writes. The history rows after it are the rest of the record (a report is
 * committed with its history row, always), so a job is loaded by replaying them through
 * the policy, which also checks that each gives the answer that was stored.
 */
int svc_job_from_row(struct svc *svc, const struct store_job *row, struct svc_job **out, char *err)
{
    struct svc_job *job = calloc(1, sizeof(*job));
    if (!job)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    glr_mutex_init(&job->lock, SVC_LOCK_JOB);
    pthread_cond_init(&job->settled, NULL);
    atomic_init(&job->store_failed, false);
    memcpy(job->id, row->id, sizeof(job->id));
    job->seq = row->seq;
    job->finished = row->finished;
    job->last_step = row->last_step;
    job->reports = row->reports;
    job->created_ms = row->created_ms;
    job->updated_ms = row->updated_ms;
    job->rewinds = row->rewinds;
    job->world_size = row->world_size;
    job->aggregate_timeout_ms = row->aggregate_timeout_ms;
    job->pending_step = -1;
    job->pending_lr_cap = INFINITY;
    job->lookup_deadline = INT64_MAX;
    job->heap_index = SIZE_MAX;
    job->heap_at = INT64_MAX;
    for (int i = 0; svc_aggregate_names[i]; i++)
        if (strcmp(row->aggregate, svc_aggregate_names[i]) == 0)
            job->aggregate = i;
    memcpy(job->family, row->family, sizeof(job->family));
    job->has_outcome = row->has_outcome;
    job->outcome = row->outcome;
    job->tags = strdup(row->tags);
    job->tuned = row->tuned ? strdup(row->tuned) : NULL;
    if (job->world_size > 1) {
        job->pending_losses = calloc((size_t)job->world_size, sizeof(double));
        job->pending_seen = calloc((size_t)job->world_size, 1);
    }
    bool allocated = job->tags && (!row->tuned || job->tuned) &&
                     (job->world_size <= 1 || (job->pending_losses && job->pending_seen));
    int rc = allocated ? sched_from_row(row, &job->sched, err)
                       : glr_fail(err, GLR_ENOMEM, "out of memory");
    if (!rc) {
        struct svc_replay_progress progress = {row->last_step, row->reports, row->updated_ms};
        rc = svc_replay_history(svc, row->seq, job->sched, row->last_step + 1, INT64_MAX, &progress,
                                err);
        job->last_step = progress.last_step;
        job->reports = progress.reports;
        job->updated_ms = progress.updated_ms;
    }
    if (rc) {
        svc_job_free(job);
        return rc;
    }
    *out = job;
    return GLR_OK;
}

/* Loads job id from the store into a new job, not in the table; the caller frees it. */
static int job_load(struct svc *svc, const char *id, struct svc_job **out, char *err)
{
    struct store_job row;
    int rc = store_job_load(svc->store, id, &row, err);
    if (rc)
        return rc;
    rc = svc_job_from_row(svc, &row, out, err);
    store_job_clear(&row);
    return rc;
}

/* ---- the table ------------------------------------------------------------------------ */

static void map_grow(struct svc_jobs *jobs)
{
    size_t n = jobs->nbuckets * 2;
    struct svc_job **buckets = calloc(n, sizeof(*buckets));
    if (!buckets)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < jobs->nbuckets; i++) {
        struct svc_job *job = jobs->buckets[i];
        while (job) {
            struct svc_job *next = job->next;
            size_t b = (size_t)glr_hash_text(job->id) & (n - 1);
            job->next = buckets[b];
            buckets[b] = job;
            job = next;
        }
    }
    free(jobs->buckets);
    jobs->buckets = buckets;
    jobs->nbuckets = n;
}

/* Finds a job in memory; map_lock held. */
static struct svc_job *map_find(struct svc_jobs *jobs, const char *id)
{
    glr_mutex_assert_held(&jobs->map_lock);
    for (struct svc_job *job = jobs->buckets[bucket_of(jobs, id)]; job; job = job->next)
        if (strcmp(job->id, id) == 0)
            return job;
    return NULL;
}

bool svc_jobs_resident(struct svc_jobs *jobs, const char *id)
{
    glr_mutex_lock(&jobs->map_lock);
    bool resident = map_find(jobs, id) != NULL;
    glr_mutex_unlock(&jobs->map_lock);
    return resident;
}

/* Removes job from the table (if it is there); map_lock held. */
static void map_remove(struct svc_jobs *jobs, struct svc_job *job)
{
    glr_mutex_assert_held(&jobs->map_lock);
    struct svc_job **link = &jobs->buckets[bucket_of(jobs, job->id)];
    for (; *link; link = &(*link)->next) {
        if (*link == job) {
            *link = job->next;
            job->next = NULL;
            jobs->njobs--;
            job->refs--; /* the table's own reference */
            return;
        }
    }
}

/*
 * Drops idle jobs from memory until at most resident_max are left, so that memory stays
 * bounded however many jobs the database holds; map_lock held. A job is idle when the
 * table holds its only reference: no request, decision in flight, waiting rank or timer
 * has it. Its state is in the store, so nothing is lost: it is loaded again on its next
 * request. The search goes round the buckets like a clock hand.
 */
static void evict_idle(struct svc_jobs *jobs)
{
    glr_mutex_assert_held(&jobs->map_lock);
    for (size_t visited = 0; jobs->njobs > jobs->resident_max && visited < jobs->nbuckets;
         visited++) {
        size_t b = jobs->evict_bucket++ & (jobs->nbuckets - 1);
        struct svc_job **link = &jobs->buckets[b];
        while (*link && jobs->njobs > jobs->resident_max) {
            struct svc_job *job = *link;
            if (job->refs != 1) {
                link = &job->next;
                continue;
            }
            *link = job->next;
            jobs->njobs--;
            svc_job_free(job);
        }
    }
}

void svc_job_ref(struct svc *svc, struct svc_job *job)
{
    glr_mutex_lock(&svc->jobs.map_lock);
    job->refs++;
    glr_mutex_unlock(&svc->jobs.map_lock);
}

void svc_job_release(struct svc *svc, struct svc_job *job)
{
    glr_mutex_lock(&svc->jobs.map_lock);
    bool last = --job->refs == 0;
    glr_mutex_unlock(&svc->jobs.map_lock);
    if (last)
        svc_job_free(job);
}

/*
 * Returns the job with this id, from memory or loaded from the store, with a reference
 * the caller gives back with svc_job_release(). Returns GLR_ENOTFOUND for an unknown id.
 */
static int job_acquire(struct svc *svc, const char *id, struct svc_job **out, char *err)
{
    struct svc_jobs *jobs = &svc->jobs;
    *out = NULL;
    if (!svc_valid_id(id))
        return glr_fail(err, GLR_ENOTFOUND, "job %.128s does not exist", id);
    glr_mutex_lock(&jobs->map_lock);
    struct svc_job *job = map_find(jobs, id);
    if (job)
        job->refs++;
    glr_mutex_unlock(&jobs->map_lock);
    if (job) {
        *out = job;
        return GLR_OK;
    }

    struct svc_job *loaded = NULL;
    int rc = job_load(svc, id, &loaded, err);
    if (rc)
        return rc;

    glr_mutex_lock(&jobs->map_lock);
    job = map_find(jobs, id);
    if (job) {
        job->refs++; /* another thread loaded it first: use theirs */
    } else {
        job = loaded;
        loaded = NULL;
        job->refs = 2; /* the table's and the caller's */
        size_t b = bucket_of(jobs, id);
        job->next = jobs->buckets[b];
        jobs->buckets[b] = job;
        if (++jobs->njobs > jobs->nbuckets)
            map_grow(jobs);
        if (jobs->njobs > jobs->resident_max)
            evict_idle(jobs);
    }
    glr_mutex_unlock(&jobs->map_lock);
    svc_job_free(loaded);
    *out = job;
    return GLR_OK;
}

void svc_job_forget(struct svc *svc, struct svc_job *job)
{
    glr_mutex_assert_held(&job->lock);
    job->gone = true;
    glr_mutex_lock(&svc->jobs.map_lock);
    map_remove(&svc->jobs, job);
    glr_mutex_unlock(&svc->jobs.map_lock);
}

/* ---- locking ------------------------------------------------------------------------- */

void svc_job_enter(struct svc_job *job)
{
    glr_mutex_lock(&job->lock);
}

void svc_job_leave(struct svc_job *job)
{
    struct svc_waiter *woken = job->woken;
    job->woken = NULL;
    glr_mutex_unlock(&job->lock);
    if (woken) /* clients are called back holding none of the service's locks */
        glr_mutex_assert_none_held();
    /* Each done may free its waiter at once (its request ends): read next first. */
    for (struct svc_waiter *waiter = woken, *next; waiter; waiter = next) {
        next = waiter->next;
        waiter->done(waiter, waiter->status, waiter->result, waiter->err);
    }
}

/*
 * Acquires and locks the job, retrying when it was dropped from memory between the two.
 * On success the caller holds job->lock and a reference: svc_job_unlock() gives both back.
 */
int svc_job_lock(struct svc *svc, const char *id, struct svc_job **out, char *err)
{
    for (;;) {
        int rc = job_acquire(svc, id, out, err);
        if (rc)
            return rc;
        svc_job_enter(*out);
        if (!(*out)->gone)
            return GLR_OK;
        svc_job_unlock(svc, *out);
    }
}

int svc_job_lock_settled(struct svc *svc, const char *id, struct svc_job **out, char *err)
{
    for (;;) {
        int rc = svc_job_lock(svc, id, out, err);
        if (rc)
            return rc;
        if (svc_job_settle(*out, err) == GLR_OK)
            return GLR_OK;
        svc_job_unlock(svc, *out); /* a write failed and dropped it: load it again */
    }
}

void svc_job_unlock(struct svc *svc, struct svc_job *job)
{
    svc_job_leave(job);
    svc_job_release(svc, job);
}

int svc_job_settle(struct svc_job *job, char *err)
{
    glr_mutex_assert_held(&job->lock);
    while (job->in_flight > 0)
        glr_mutex_wait(&job->lock, &job->settled);
    if (job->gone)
        return glr_fail(err, GLR_EIO, "a report of job %s could not be stored; try again", job->id);
    return GLR_OK;
}
