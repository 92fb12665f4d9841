/*
 * Reports (see svc.h): one rank's loss of one step, a decision per step, the ranks of a
 * job gathered while their requests wait, and the timer that ends waits.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "svc/svc_int.h"

/* ---- reports ------------------------------------------------------------------------ */

/* A snapshot is a copy of the state written to the job's row with the same report. */
_Static_assert(SVC_SNAPSHOT_EVERY % SVC_STATE_EVERY == 0, "a snapshot needs the state");

static bool same_loss(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static void result_from_report(const struct store_report *r, bool lr_is_array,
                               struct svc_report_result *result)
{
    memset(result, 0, sizeof(*result));
    result->step = r->step;
    result->groups = r->groups;
    result->lr_is_array = lr_is_array;
    memcpy(result->lrs, r->lrs, r->groups * sizeof(double));
    result->event = r->event;
    result->ranks = r->ranks;
}

/*
 * Answers the waiting requests of job for steps from..to with status (and result), and
 * takes them off the job; call with job->lock held.
 */
void wake(struct svc *svc, struct job *job, int64_t from, int64_t to, int status,
          const struct svc_report_result *result, const char *err)
{
    struct svc_waiter **link = &job->waiters;
    int64_t woken = 0;
    while (*link) {
        struct svc_waiter *w = *link;
        if (w->step < from || w->step > to) {
            link = &w->next;
            continue;
        }
        *link = w->next;
        woken++;
        w->done(w, status, result, err);
    }
    job->nwaiters -= woken;
    pthread_mutex_lock(&svc->waiting_lock);
    svc->nwaiters -= woken;
    pthread_mutex_unlock(&svc->waiting_lock);
}

/* Puts the job on the timer's list (it then holds a reference); call with job->lock held. */
static void watch(struct svc *svc, struct job *job)
{
    pthread_mutex_lock(&svc->waiting_lock);
    if (!job->in_waiting_list) {
        job->in_waiting_list = true;
        job->waiting_next = svc->waiting;
        svc->waiting = job;
        pthread_mutex_lock(&svc->map_lock);
        job->refs++;
        pthread_mutex_unlock(&svc->map_lock);
    }
    pthread_mutex_unlock(&svc->waiting_lock);
}

/*
 * Adds a waiting request for step, within the per-job and global limits; call with
 * job->lock held. Returns GLR_EWAIT, GLR_ELIMIT or GLR_EBUSY.
 */
static int add_waiter(struct svc *svc, struct job *job, struct svc_waiter *waiter, int64_t step,
                      char *err)
{
    if (job->nwaiters >= 2 * job->world_size + SVC_WAITERS_SPARE)
        return glr_fail(err, GLR_ELIMIT, "too many requests wait on job %s already", job->id);
    pthread_mutex_lock(&svc->waiting_lock);
    bool full = svc->nwaiters >= SVC_WAITERS_MAX || svc->stopping;
    if (!full)
        svc->nwaiters++;
    pthread_mutex_unlock(&svc->waiting_lock);
    if (full)
        return glr_fail(err, GLR_EBUSY, "too many requests wait already, or the service stops");
    waiter->step = step;
    waiter->next = job->waiters;
    job->waiters = waiter;
    job->nwaiters++;
    watch(svc, job);
    return GLR_EWAIT;
}

/* A decision on its way to the store; it holds a reference to its job. */
struct decision {
    struct store_commit commit;
    struct svc *svc;
    struct job *job;
    struct svc_waiter *waiter; /* the request that completed the step, or NULL */
    struct svc_report_result result;
    char *state;
    struct store_rank_loss *rank_losses;
};

static void decision_free(struct decision *d)
{
    free(d->state);
    free(d->rank_losses);
    free(d);
}

/*
 * The store has committed a decision (or failed to): answer everyone who waits for it.
 * Runs on the store's writer thread.
 */
static void decision_stored(struct store_commit *commit, int status, const char *err)
{
    struct decision *d = (struct decision *)(void *)commit;
    struct svc *svc = d->svc;
    struct job *job = d->job;
    int64_t step = d->result.step;
    pthread_mutex_lock(&job->lock);
    if (status == GLR_OK) {
        wake(svc, job, step, step, GLR_OK, &d->result, NULL);
        /* Lookups of steps that were skipped will never see them decided. */
        wake(svc, job, 0, step - 1, GLR_ENOTFOUND, NULL,
             "that step was never decided: later steps were");
    } else {
        /* Memory is ahead of the store: drop the job; the next request reloads it. */
        wake(svc, job, 0, INT64_MAX, status, NULL, err);
        drop_pending(job);
        if (!job->gone)
            job_forget(svc, job);
    }
    if (--job->in_flight == 0)
        pthread_cond_broadcast(&job->settled);
    pthread_mutex_unlock(&job->lock);
    if (d->waiter)
        d->waiter->done(d->waiter, status, status == GLR_OK ? &d->result : NULL, err);
    job_release(svc, job);
    decision_free(d);
}

/*
 * Steps the policy on `input` (capped by lr_cap) for step and sends the decision (and the ranks'
 * losses, which it takes) to the store; call with job->lock held. The answers wait for the commit:
 * waiter (when not NULL) and the requests waiting for the step are answered by decision_stored().
 * Returns GLR_EWAIT, or an error when nothing was decided.
 */
static int decide(struct svc *svc, struct job *job, int64_t step, double input, double lr_cap,
                  struct store_rank_loss *rank_losses, size_t nrank_losses, int64_t ranks,
                  struct svc_waiter *waiter, char *err)
{
    struct decision *d = calloc(1, sizeof(*d));
    if (!d) {
        free(rank_losses);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    d->rank_losses = rank_losses;
    struct glr_step_result decision;
    if (glr_sched_step_capped(job->sched, step, input, lr_cap, &decision)) {
        decision_free(d);
        return glr_fail(err, GLR_EINVAL, "step %lld is out of range", (long long)step);
    }
    struct store_report *report = &d->commit.report;
    *report = (struct store_report){
        .step = step,
        .rank = 0,
        .loss = input,
        .metric = decision.metric,
        .event = decision.event,
        .time_ms = glr_clock_wall_ms(),
        .ranks = ranks,
        .lr_cap = lr_cap,
        .groups = glr_sched_groups(job->sched),
    };
    memcpy(report->lrs, glr_sched_lrs(job->sched), report->groups * sizeof(double));
    /* The job's row gets the state every SVC_STATE_EVERY reports (see job_from_row). */
    bool save_state = (job->reports + 1) % SVC_STATE_EVERY == 0;
    if (save_state) {
        cJSON *state = glr_sched_state_save(job->sched);
        d->state = print(state);
        cJSON_Delete(state);
    }
    if (save_state && !d->state) {
        /* The scheduler has stepped but nothing was stored: reload it next time. */
        decision_free(d);
        wake(svc, job, 0, INT64_MAX, GLR_ENOMEM, NULL, "out of memory");
        job_forget(svc, job);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    job->last_step = step;
    job->reports++;
    job->updated_ms = report->time_ms;
    job->in_flight++;
    pthread_mutex_lock(&svc->map_lock);
    job->refs++; /* the decision's */
    pthread_mutex_unlock(&svc->map_lock);

    d->svc = svc;
    d->job = job;
    d->waiter = waiter;
    result_from_report(report, glr_sched_lr_is_array(job->sched), &d->result);
    d->commit.seq = job->seq;
    d->commit.rank_losses = d->rank_losses;
    d->commit.nrank_losses = nrank_losses;
    d->commit.state = d->state;
    d->commit.last_step = step;
    d->commit.reports = job->reports;
    d->commit.snapshot = job->reports % SVC_SNAPSHOT_EVERY == 0;
    d->commit.failed = &job->store_failed;
    d->commit.done = decision_stored;
    store_commit_submit(svc->store, &d->commit);
    return GLR_EWAIT;
}

/*
 * Waits until every decision of the job sent to the store is committed, so that the
 * store holds all that memory does; call with job->lock held (it is released meanwhile).
 * GLR_EIO when one of them failed: the job was dropped, and the caller should give up.
 */
int job_settle(struct job *job, char *err)
{
    while (job->in_flight > 0)
        pthread_cond_wait(&job->settled, &job->lock);
    if (job->gone)
        return glr_fail(err, GLR_EIO, "a report of job %s could not be stored; try again", job->id);
    return GLR_OK;
}

/* The loss the policy judges, from the losses of the ranks that reported. */
static double combine(const struct job *job)
{
    if (job->aggregate == AGGREGATE_RANK0 && job->pending_seen[0])
        return job->pending_losses[0];
    double sum = 0, low = INFINITY, high = -INFINITY;
    bool diverged = false;
    /* In rank order, so that the sum and so the mean are the same on every replay. */
    for (int64_t r = 0; r < job->world_size; r++) {
        if (!job->pending_seen[r])
            continue;
        double v = job->pending_losses[r];
        diverged |= isnan(v);
        sum += v;
        low = fmin(low, v);
        high = fmax(high, v);
    }
    if (diverged)
        return NAN; /* one diverged rank makes the step diverged */
    switch (job->aggregate) {
    case AGGREGATE_MAX:
        return high;
    case AGGREGATE_MIN:
        return low;
    default: /* mean, and rank0 when rank 0 did not report */
        return sum / (double)job->pending_count;
    }
}

/*
 * Decides the step being gathered with the ranks that reported; call with job->lock held.
 * waiter is the rank whose report completed the step, if one did. Returns as decide().
 */
static int close_pending(struct svc *svc, struct job *job, struct svc_waiter *waiter, char *err)
{
    struct store_rank_loss *losses = malloc((size_t)job->pending_count * sizeof(*losses));
    if (!losses)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    size_t n = 0;
    for (int64_t r = 0; r < job->world_size; r++)
        if (job->pending_seen[r])
            losses[n++] = (struct store_rank_loss){r, job->pending_losses[r]};
    int64_t step = job->pending_step;
    int64_t ranks = job->pending_count;
    double input = combine(job);
    double lr_cap = job->pending_lr_cap;
    drop_pending(job);
    int rc = decide(svc, job, step, input, lr_cap, losses, n, ranks, waiter, err);
    if (rc != GLR_EWAIT) /* nothing was decided: the ranks that wait hear why, and retry */
        wake(svc, job, step, step, rc, NULL, err);
    return rc;
}

/* A report of a step that is already decided: a retry, a late rank, or a conflict. */
static int answer_decided(struct svc *svc, struct job *job, int64_t step, int64_t rank, double loss,
                          struct svc_report_result *result, char *err)
{
    /* The step may still be on its way to the store. */
    int rc = job_settle(job, err);
    if (rc)
        return rc;
    struct store_report stored;
    rc = store_report_find(svc->store, job->seq, step, 0, &stored, err);
    if (rc == GLR_ENOTFOUND)
        return glr_fail(err, GLR_ECONFLICT,
                        "step %lld is at or below the last decided step %lld and was never "
                        "decided",
                        (long long)step, (long long)job->last_step);
    if (rc)
        return rc;
    double reported = stored.loss;
    if (job->world_size > 1) {
        rc = store_rank_loss_find(svc->store, job->seq, step, rank, &reported, err);
        if (rc == GLR_ENOTFOUND) {
            /* Decided without this rank: keep its loss, answer the decision. */
            rc = store_rank_loss_add_late(svc->store, job->seq, step, rank, loss, err);
            if (rc)
                return rc;
            result_from_report(&stored, glr_sched_lr_is_array(job->sched), result);
            result->late = true;
            return GLR_OK;
        }
        if (rc)
            return rc;
    }
    if (!same_loss(reported, loss))
        return glr_fail(err, GLR_ECONFLICT,
                        "step %lld (rank %lld) was reported before with another loss",
                        (long long)step, (long long)rank);
    result_from_report(&stored, glr_sched_lr_is_array(job->sched), result);
    result->replayed = true;
    return GLR_OK;
}

/* One rank's report of a step not decided yet, in a job of several ranks. */
static int gather(struct svc *svc, struct job *job, int64_t step, int64_t rank, double loss,
                  double lr_cap, struct svc_waiter *waiter, char *err)
{
    int rc;
    if (job->pending_step >= 0 && step < job->pending_step)
        return glr_fail(err, GLR_ECONFLICT,
                        "step %lld is older than step %lld, whose ranks are reporting",
                        (long long)step, (long long)job->pending_step);
    if (job->pending_step >= 0 && step > job->pending_step) {
        /* A rank moved on: the step before is over, decide it with who reported. */
        if ((rc = close_pending(svc, job, NULL, err)) != GLR_EWAIT)
            return rc;
    }
    if (job->pending_seen && job->pending_step == step && job->pending_seen[rank]) {
        if (!same_loss(job->pending_losses[rank], loss))
            return glr_fail(err, GLR_ECONFLICT,
                            "step %lld (rank %lld) was reported before with another loss",
                            (long long)step, (long long)rank);
        return add_waiter(svc, job, waiter, step, err); /* a retry while waiting */
    }
    if (job->pending_count + 1 < job->world_size) {
        /* Not the last rank: wait, within the limits, before taking the loss. */
        rc = add_waiter(svc, job, waiter, step, err);
        if (rc != GLR_EWAIT)
            return rc;
    }
    if (job->pending_step < 0) {
        job->pending_step = step;
        job->pending_deadline_ms = glr_clock_wall_ms() + job->aggregate_timeout_ms;
    }
    job->pending_seen[rank] = 1;
    job->pending_losses[rank] = loss;
    job->pending_lr_cap = fmin(job->pending_lr_cap, lr_cap);
    job->pending_count++;
    if (job->pending_count < job->world_size)
        return GLR_EWAIT;
    return close_pending(svc, job, waiter, err);
}

int svc_report(struct svc *svc, const char *id, int64_t step, int64_t rank, double loss,
               double lr_cap, struct svc_waiter *waiter, struct svc_report_result *result,
               char *err)
{
    memset(result, 0, sizeof(*result));
    if (step < 0 || step > GLR_MAX_STEP)
        return glr_fail(err, GLR_EINVAL, "step must be an integer from 0 to %lld",
                        (long long)GLR_MAX_STEP);
    struct job *job;
    int rc = job_lock(svc, id, &job, err);
    if (rc)
        return rc;
    waiter->lookup = false;
    if (rank < 0 || rank >= job->world_size)
        rc = glr_fail(err, GLR_EINVAL, "rank must be an integer from 0 to %lld (world_size %lld)",
                      (long long)job->world_size - 1, (long long)job->world_size);
    else if (isfinite(lr_cap) && !glr_sched_takes_lr_cap(job->sched))
        rc = glr_fail(err, GLR_EINVAL, "lr_cap is taken only by policy auto; job %s has policy %s",
                      job->id, glr_sched_policy(job->sched));
    else if (job->last_step >= 0 && step <= job->last_step)
        rc = answer_decided(svc, job, step, rank, loss, result, err);
    else if (job->finished)
        rc = glr_fail(err, GLR_ECONFLICT, "job %s is finished and takes no more reports", job->id);
    else if (job->world_size > 1)
        rc = gather(svc, job, step, rank, loss, lr_cap, waiter, err);
    else
        rc = decide(svc, job, step, loss, lr_cap, NULL, 0, 1, waiter, err);
    job_unlock(svc, job);
    return rc;
}

int svc_lr(struct svc *svc, const char *id, int64_t step, int64_t wait_ms,
           struct svc_waiter *waiter, struct svc_report_result *result, char *err)
{
    memset(result, 0, sizeof(*result));
    if (step < 0 || step > GLR_MAX_STEP)
        return glr_fail(err, GLR_EINVAL, "step must be an integer from 0 to %lld",
                        (long long)GLR_MAX_STEP);
    if (wait_ms < 0 || wait_ms > SVC_WAIT_MAX_MS)
        return glr_fail(err, GLR_EINVAL, "wait_ms must be an integer from 0 to %d",
                        SVC_WAIT_MAX_MS);
    struct job *job;
    int rc = job_lock(svc, id, &job, err);
    if (rc)
        return rc;
    if (job->last_step >= 0 && step <= job->last_step) {
        struct store_report stored;
        rc = job_settle(job, err);
        if (!rc)
            rc = store_report_find(svc->store, job->seq, step, 0, &stored, err);
        if (rc == GLR_ENOTFOUND)
            rc = glr_fail(err, GLR_ENOTFOUND, "step %lld was never decided: later steps were",
                          (long long)step);
        if (!rc)
            result_from_report(&stored, glr_sched_lr_is_array(job->sched), result);
    } else if (wait_ms == 0) {
        rc = glr_fail(err, GLR_EAGAIN, "step %lld is not decided yet", (long long)step);
    } else {
        waiter->lookup = true;
        waiter->deadline_ms = glr_clock_wall_ms() + wait_ms;
        rc = add_waiter(svc, job, waiter, step, err);
    }
    job_unlock(svc, job);
    return rc;
}

/* Decides steps whose ranks took too long, and ends lookups that waited long enough. */
static void expire(struct svc *svc, struct job *job, int64_t now)
{
    if (job->pending_step >= 0 && now >= job->pending_deadline_ms) {
        char err[GLR_ERR_MAX];
        close_pending(svc, job, NULL, err);
    }
    struct svc_waiter **link = &job->waiters;
    int64_t woken = 0;
    while (*link) {
        struct svc_waiter *w = *link;
        if (!w->lookup || now < w->deadline_ms) {
            link = &w->next;
            continue;
        }
        *link = w->next;
        woken++;
        w->done(w, GLR_EAGAIN, NULL, "the step is not decided yet");
    }
    job->nwaiters -= woken;
    pthread_mutex_lock(&svc->waiting_lock);
    svc->nwaiters -= woken;
    pthread_mutex_unlock(&svc->waiting_lock);
}

/* Visits every watched job: fn runs with the job locked; idle jobs leave the list. */
static void visit_watched(struct svc *svc, void (*fn)(struct svc *, struct job *, int64_t),
                          int64_t arg)
{
    pthread_mutex_lock(&svc->waiting_lock);
    size_t n = 0;
    for (struct job *j = svc->waiting; j; j = j->waiting_next)
        n++;
    struct job **jobs = n ? malloc(n * sizeof(*jobs)) : NULL;
    n = 0;
    for (struct job *j = svc->waiting; jobs && j; j = j->waiting_next) {
        pthread_mutex_lock(&svc->map_lock);
        j->refs++;
        pthread_mutex_unlock(&svc->map_lock);
        jobs[n++] = j;
    }
    pthread_mutex_unlock(&svc->waiting_lock);
    for (size_t i = 0; i < n; i++) {
        struct job *job = jobs[i];
        pthread_mutex_lock(&job->lock);
        fn(svc, job, arg);
        bool idle = job->pending_step < 0 && !job->waiters;
        bool drop = false;
        pthread_mutex_lock(&svc->waiting_lock);
        if (idle && job->in_waiting_list) {
            for (struct job **link = &svc->waiting; *link; link = &(*link)->waiting_next) {
                if (*link == job) {
                    *link = job->waiting_next;
                    break;
                }
            }
            job->in_waiting_list = false;
            drop = true; /* the list's reference */
        }
        pthread_mutex_unlock(&svc->waiting_lock);
        pthread_mutex_unlock(&job->lock);
        if (drop)
            job_release(svc, job);
        job_release(svc, job);
    }
    free(jobs);
}

void *timer_main(void *arg)
{
    struct svc *svc = arg;
    pthread_mutex_lock(&svc->waiting_lock);
    while (!svc->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += SVC_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&svc->waiting_wake, &svc->waiting_lock, &until);
        if (svc->stopping || !svc->waiting)
            continue;
        pthread_mutex_unlock(&svc->waiting_lock);
        visit_watched(svc, expire, glr_clock_wall_ms());
        pthread_mutex_lock(&svc->waiting_lock);
    }
    pthread_mutex_unlock(&svc->waiting_lock);
    return NULL;
}

/* Forgets the ranks gathered for a step not decided; call with job->lock held. */
void drop_pending(struct job *job)
{
    if (job->pending_step < 0)
        return;
    job->pending_step = -1;
    job->pending_count = 0;
    job->pending_lr_cap = INFINITY;
    memset(job->pending_seen, 0, (size_t)job->world_size);
}

/* Answers every waiting request of job with "stopping" and drops its gathered ranks. */
static void cancel(struct svc *svc, struct job *job, int64_t unused)
{
    (void)unused;
    drop_pending(job);
    wake(svc, job, 0, INT64_MAX, GLR_EBUSY, NULL, "the service is stopping; try again");
}

void svc_cancel_waiters(struct svc *svc)
{
    pthread_mutex_lock(&svc->waiting_lock);
    svc->stopping = true;
    pthread_cond_broadcast(&svc->waiting_wake);
    pthread_mutex_unlock(&svc->waiting_lock);
    visit_watched(svc, cancel, 0);
}
