/*
 * Rewinds (see svc.h): a job put back in its state right after an earlier step, by a
 * replay of its stored history from the nearest snapshot (svc_replay.c).
 */
#include <stdlib.h>

#include "svc/svc_int.h"
#include "svc/svc_replay_int.h"

int svc_rewind(struct svc *svc, const char *id, int64_t to_step, cJSON **job_out, char *err)
{
    *job_out = NULL;
    int rc = svc_check_step("to_step", to_step, -1, err);
    if (rc)
        return rc;
    struct svc_job *job;
    if ((rc = svc_job_lock_settled(svc, id, &job, err)))
        return rc;
    if (to_step > job->last_step) {
        /* A step not decided yet: most likely the trainer's checkpoint and job disagree. */
        if (job->last_step < 0)
            rc = glr_fail(err, GLR_ECONFLICT,
                          "job %s has no decided step yet: a rewind goes back, to -1", job->id);
        else
            rc = glr_fail(err, GLR_ECONFLICT,
                          "job %s has decided steps up to %lld: a rewind goes back, to that "
                          "step or before",
                          job->id, (long long)job->last_step);
        svc_job_unlock(svc, job);
        return rc;
    }
    /* Ranks gathered, and requests waiting, for steps after to_step have no future. */
    if (job->pending_step > to_step)
        svc_report_drop_gathered(svc, job);
    svc_wait_take(svc, job, to_step + 1, INT64_MAX, GLR_ECONFLICT, NULL,
                  "the job was rewound to an earlier step; report again from there");
    if (to_step == job->last_step) {
        /* The job already is in that state (a retried rewind, say). */
        rc = svc_describe_job(job, job_out, err);
        svc_job_unlock(svc, job);
        return rc;
    }
    struct svc_replay_progress progress = {.last_step = -1};
    rc = svc_replay_to(svc, job->seq, job->sched, to_step, &progress, err);
    char *state_text = NULL;
    if (!rc) {
        cJSON *state = glr_sched_state_save(job->sched);
        state_text = svc_json_print(state);
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
        svc_job_forget(svc, job);
        svc_job_unlock(svc, job);
        return rc;
    }
    job->last_step = progress.last_step;
    job->reports = progress.reports;
    job->rewinds++;
    job->finished = false;
    job->has_outcome = false; /* it runs again: its outcome is that of its next finish */
    job->updated_ms = now;
    rc = svc_describe_job(job, job_out, err);
    svc_job_unlock(svc, job);
    return rc;
}
