/*
 * Replays of stored history through a job's policy: to bring a loaded job's state up to
 * its last report (see job_from_row in svc.c), and for rewinds (see svc.h), which put a
 * job back in its state right after an earlier step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "svc/svc_int.h"

/* ---- replay ---------------------------------------------------------------------------- */

struct replay_ctx {
    struct glr_sched *sched;
    struct replay_progress *progress;
    int rc;
    char *err;
};

static bool replay_one(void *ctx_, const struct store_report *r)
{
    struct replay_ctx *ctx = ctx_;
    struct glr_step_result decision;
    if (glr_sched_step_capped(ctx->sched, r->step, r->loss, r->lr_cap, &decision) != GLR_OK ||
        decision.event != r->event || glr_sched_groups(ctx->sched) != r->groups ||
        memcmp(glr_sched_lrs(ctx->sched), r->lrs, r->groups * sizeof(double)) != 0) {
        ctx->rc =
            glr_fail(ctx->err, GLR_ECORRUPT, "replaying step %lld does not give the stored answer",
                     (long long)r->step);
        return false;
    }
    ctx->progress->last_step = r->step;
    ctx->progress->reports++;
    if (r->time_ms > ctx->progress->updated_ms)
        ctx->progress->updated_ms = r->time_ms;
    return true;
}

int replay_history(struct svc *svc, int64_t seq, struct glr_sched *sched, int64_t from_step,
                   int64_t to_step, struct replay_progress *progress, char *err)
{
    struct replay_ctx ctx = {.sched = sched, .progress = progress, .err = err};
    int rc =
        store_report_scan(svc->store, seq, from_step, 0, to_step, INT64_MAX, replay_one, &ctx, err);
    return rc ? rc : ctx.rc;
}

/* ---- rewind ---------------------------------------------------------------------------- */

/* Puts job->sched in its state right after to_step: the nearest snapshot, then history. */
static int replay_to(struct svc *svc, struct job *job, int64_t to_step,
                     struct replay_progress *progress, char *err)
{
    struct store_snapshot snapshot = {.step = -1};
    int rc = store_snapshot_find(svc->store, job->seq, to_step, &snapshot, err);
    if (rc == GLR_OK) {
        cJSON *state = cJSON_Parse(snapshot.state);
        free(snapshot.state);
        rc = state ? glr_sched_state_load(job->sched, state, err)
                   : glr_fail(err, GLR_ECORRUPT, "database: a snapshot is damaged JSON");
        cJSON_Delete(state);
        progress->last_step = snapshot.step;
        progress->reports = snapshot.reports;
    } else if (rc == GLR_ENOTFOUND) {
        snapshot.step = -1;
        glr_sched_reset(job->sched);
        rc = GLR_OK;
    }
    if (rc)
        return rc;
    return replay_history(svc, job->seq, job->sched, snapshot.step + 1, to_step, progress, err);
}

int svc_rewind(struct svc *svc, const char *id, int64_t to_step, cJSON **job_out, char *err)
{
    *job_out = NULL;
    if (to_step < -1 || to_step > GLR_MAX_STEP)
        return glr_fail(err, GLR_EINVAL, "to_step must be an integer from -1 to %lld",
                        (long long)GLR_MAX_STEP);
    struct job *job;
    int rc = job_lock_settled(svc, id, &job, err);
    if (rc)
        return rc;
    /* Ranks gathered, and requests waiting, for steps after to_step have no future. */
    if (job->pending_step > to_step)
        drop_pending(job);
    wake(svc, job, to_step + 1, INT64_MAX, GLR_ECONFLICT, NULL,
         "the job was rewound to an earlier step; report again from there");
    if (to_step >= job->last_step) {
        /* Nothing after to_step: the job already is in that state. */
        rc = describe_job(job, job_out, err);
        job_unlock(svc, job);
        return rc;
    }
    struct replay_progress progress = {.last_step = -1};
    rc = replay_to(svc, job, to_step, &progress, err);
    char *state_text = NULL;
    if (!rc) {
        cJSON *state = glr_sched_state_save(job->sched);
        state_text = print(state);
        cJSON_Delete(state);
        if (!state_text)
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    int64_t now = glr_clock_wall_ms();
    if (!rc)
        rc = store_rewind_commit(svc->store, job->seq, to_step, state_text, progress.last_step,
                                 progress.reports, now, err);
    free(state_text);
    if (rc) {
        /* The scheduler may be half way back: reload the job from the store next time. */
        job_forget(svc, job);
        job_unlock(svc, job);
        return rc;
    }
    job->last_step = progress.last_step;
    job->reports = progress.reports;
    job->rewinds++;
    job->finished = false;
    job->updated_ms = now;
    rc = describe_job(job, job_out, err);
    job_unlock(svc, job);
    return rc;
}
