/*
 * Reports (see svc.h): one rank's loss of one step, a decision per step, the ranks of a
 * job gathered while their requests wait, and what happens when their time is up.
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

/* A decision on its way to the store; it holds a reference to its job. */
struct decision {
    struct store_commit commit;
    struct svc *svc;
    struct svc_job *job;
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
    struct svc_job *job = d->job;
    int64_t step = d->result.step;
    svc_job_enter(job);
    if (status == GLR_OK) {
        svc_wait_take(svc, job, step, step, GLR_OK, &d->result, NULL);
        /* Lookups of steps that were skipped will never see them decided. */
        svc_wait_take(svc, job, 0, step - 1, GLR_ENOTFOUND, NULL,
                      "that step was never decided: later steps were");
    } else {
        /* Memory is ahead of the store: drop the job; the next request reloads it. */
        svc_wait_take(svc, job, 0, INT64_MAX, status, NULL, err);
        svc_report_drop_gathered(svc, job);
        if (!job->gone)
            svc_job_forget(svc, job);
    }
    if (--job->in_flight == 0)
        pthread_cond_broadcast(&job->settled);
    svc_job_leave(job);
    if (d->waiter)
        d->waiter->done(d->waiter, status, status == GLR_OK ? &d->result : NULL, err);
    svc_job_release(svc, job);
    decision_free(d);
}

/*
 * Steps the policy on `input` (capped by lr_cap) for step and sends the decision (and the ranks'
 * losses, which it takes) to the store; call with job->lock held. The answers wait for the commit:
 * waiter (when not NULL) and the requests waiting for the step are answered by decision_stored().
 * Returns GLR_EWAIT, or an error when nothing was decided.
 */
static int decide(struct svc *svc, struct svc_job *job, int64_t step, double input, double lr_cap,
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
        d->state = svc_json_print(state);
        cJSON_Delete(state);
    }
    if (save_state && !d->state) {
        /* The scheduler has stepped but nothing was stored: reload it next time. */
        decision_free(d);
        svc_wait_take(svc, job, 0, INT64_MAX, GLR_ENOMEM, NULL, "out of memory");
        svc_job_forget(svc, job);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    job->last_step = step;
    job->reports++;
    job->updated_ms = report->time_ms;
    job->in_flight++;
    svc_job_ref(svc, job); /* the decision's */

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

/* The loss the policy judges, from the losses of the ranks that reported. */
static double combine(const struct svc_job *job)
{
    if (job->aggregate == SVC_AGGREGATE_RANK0 && job->pending_seen[0])
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
    case SVC_AGGREGATE_MAX:
        return high;
    case SVC_AGGREGATE_MIN:
        return low;
    default: /* mean, and rank0 when rank 0 did not report */
        return sum / (double)job->pending_count;
    }
}

/*
 * Decides the step being gathered with the ranks that reported; call with job->lock held.
 * waiter is the rank whose report completed the step, if one did. Returns as decide().
 */
static int close_pending(struct svc *svc, struct svc_job *job, struct svc_waiter *waiter, char *err)
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
    svc_report_drop_gathered(svc, job);
    int rc = decide(svc, job, step, input, lr_cap, losses, n, ranks, waiter, err);
    if (rc != GLR_EWAIT) /* nothing was decided: the ranks that wait hear why, and retry */
        svc_wait_take(svc, job, step, step, rc, NULL, err);
    return rc;
}

/* A report of a step that is already decided: a retry, a late rank, or a conflict. */
static int answer_decided(struct svc *svc, struct svc_job *job, int64_t step, int64_t rank,
                          double loss, struct svc_report_result *result, char *err)
{
    /* The step may still be on its way to the store. */
    int rc = svc_job_settle(job, err);
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
static int gather(struct svc *svc, struct svc_job *job, int64_t step, int64_t rank, double loss,
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
        return svc_wait_add(svc, job, waiter, step, false, 0, err); /* a retry while waiting */
    }
    if (job->pending_count + 1 < job->world_size) {
        /* Not the last rank: wait, within the limits, before taking the loss. */
        rc = svc_wait_add(svc, job, waiter, step, false, 0, err);
        if (rc != GLR_EWAIT)
            return rc;
    }
    if (job->pending_step < 0) {
        job->pending_step = step;
        job->pending_deadline = glr_clock_mono_deadline(job->aggregate_timeout_ms);
        svc_wait_watch(svc, job); /* the timer decides the step if a rank never comes */
    }
    job->pending_seen[rank] = 1;
    job->pending_losses[rank] = loss;
    job->pending_lr_cap = fmin(job->pending_lr_cap, lr_cap);
    job->pending_count++;
    if (job->pending_count < job->world_size)
        return GLR_EWAIT;
    return close_pending(svc, job, waiter, err);
}

int svc_report(struct svc *svc, const char *id, const struct svc_report_input *in,
               struct svc_waiter *waiter, struct svc_report_result *result, char *err)
{
    memset(result, 0, sizeof(*result));
    int64_t step = in->step, rank = in->rank;
    double loss = in->has_loss ? in->loss : NAN, lr_cap = in->lr_cap;
    int rc = svc_check_step("step", step, 0, err);
    if (rc)
        return rc;
    struct svc_job *job;
    if ((rc = svc_job_lock(svc, id, &job, err)))
        return rc;
    if (rank < 0 || rank >= job->world_size)
        rc = glr_fail(err, GLR_EINVAL, "rank must be an integer from 0 to %lld (world_size %lld)",
                      (long long)job->world_size - 1, (long long)job->world_size);
    else if (!in->has_loss && glr_sched_reads_metric(job->sched))
        rc = glr_fail(err, GLR_EINVAL, "loss is required: policy %s reads it",
                      glr_sched_policy(job->sched));
    else if (isfinite(lr_cap) && !glr_sched_takes_lr_cap(job->sched))
        rc = glr_fail(err, GLR_EINVAL,
                      "lr_cap is taken only by policies auto and learned (and a sequence "
                      "holding one); job %s has policy %s",
                      job->id, glr_sched_policy(job->sched));
    else if (job->last_step >= 0 && step <= job->last_step)
        rc = answer_decided(svc, job, step, rank, loss, result, err);
    else if (job->finished)
        rc = glr_fail(err, GLR_ECONFLICT, "job %s is finished and takes no more reports", job->id);
    else if (svc->max_reports_per_job && (uint64_t)job->reports >= svc->max_reports_per_job)
        rc = glr_fail(err, GLR_EQUOTA,
                      "job %s holds %lld steps, the most a job may (--max-reports-per-job): "
                      "rewind it or go on in a new job",
                      job->id, (long long)job->reports);
    else if (job->world_size > 1)
        rc = gather(svc, job, step, rank, loss, lr_cap, waiter, err);
    else
        rc = decide(svc, job, step, loss, lr_cap, NULL, 0, 1, waiter, err);
    svc_job_unlock(svc, job);
    return rc;
}

int svc_lr(struct svc *svc, const char *id, int64_t step, int64_t wait_ms,
           struct svc_waiter *waiter, struct svc_report_result *result, char *err)
{
    memset(result, 0, sizeof(*result));
    int rc = svc_check_step("step", step, 0, err);
    if (rc)
        return rc;
    if (wait_ms < 0 || wait_ms > SVC_WAIT_MAX_MS)
        return glr_fail(err, GLR_EINVAL, "wait_ms must be an integer from 0 to %d",
                        SVC_WAIT_MAX_MS);
    struct svc_job *job;
    if ((rc = svc_job_lock(svc, id, &job, err)))
        return rc;
    if (job->last_step >= 0 && step <= job->last_step) {
        struct store_report stored;
        rc = svc_job_settle(job, err);
        if (!rc)
            rc = store_report_find(svc->store, job->seq, step, 0, &stored, err);
        if (rc == GLR_ENOTFOUND)
            rc = glr_fail(err, GLR_ENOTFOUND, "step %lld was never decided: later steps were",
                          (long long)step);
        if (!rc)
            result_from_report(&stored, glr_sched_lr_is_array(job->sched), result);
    } else if (job->finished) {
        /* Nothing will decide it: say so now rather than at the end of the wait. */
        rc = glr_fail(err, GLR_ECONFLICT, "job %s is finished: step %lld will not be decided",
                      job->id, (long long)step);
    } else if (wait_ms == 0) {
        rc = glr_fail(err, GLR_EAGAIN, "step %lld is not decided yet", (long long)step);
    } else {
        rc = svc_wait_add(svc, job, waiter, step, true, glr_clock_mono_deadline(wait_ms), err);
    }
    svc_job_unlock(svc, job);
    return rc;
}

void svc_report_expire(struct svc *svc, struct svc_job *job, int64_t now, char *err)
{
    glr_mutex_assert_held(&job->lock);
    /* The ranks that wait hear the decision, or why there is none, in err (close_pending). */
    if (job->pending_step >= 0 && now >= job->pending_deadline)
        close_pending(svc, job, NULL, err);
    svc_wait_take_expired(svc, job, now);
}

void svc_report_drop_gathered(struct svc *svc, struct svc_job *job)
{
    glr_mutex_assert_held(&job->lock);
    if (job->pending_step < 0)
        return;
    job->pending_step = -1;
    job->pending_count = 0;
    job->pending_lr_cap = INFINITY;
    memset(job->pending_seen, 0, (size_t)job->world_size);
    svc_wait_watch(svc, job);
}
