/* Replays of stored history (see svc_replay_int.h). */
#include <stdlib.h>
#include <string.h>

#include "svc/svc_int.h"
#include "svc/svc_replay_int.h"

struct replay_ctx {
    struct glr_sched *sched;
    struct svc_replay_progress *progress;
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

int svc_replay_history(struct svc *svc, int64_t seq, struct glr_sched *sched, int64_t from_step,
                       int64_t to_step, struct svc_replay_progress *progress, char *err)
{
    struct replay_ctx ctx = {.sched = sched, .progress = progress, .err = err};
    int rc =
        store_report_scan(svc->store, seq, from_step, 0, to_step, INT64_MAX, replay_one, &ctx, err);
    return rc ? rc : ctx.rc;
}

int svc_replay_to(struct svc *svc, int64_t seq, struct glr_sched *sched, int64_t to_step,
                  struct svc_replay_progress *progress, char *err)
{
    struct store_snapshot snapshot = {.step = -1};
    int rc = store_snapshot_find(svc->store, seq, to_step, &snapshot, err);
    if (rc == GLR_OK) {
        cJSON *state = cJSON_Parse(snapshot.state);
        free(snapshot.state);
        rc = state ? glr_sched_state_load(sched, state, err)
                   : glr_fail(err, GLR_ECORRUPT, "database: a snapshot is damaged JSON");
        cJSON_Delete(state);
        progress->last_step = snapshot.step;
        progress->reports = snapshot.reports;
    } else if (rc == GLR_ENOTFOUND) {
        snapshot.step = -1;
        glr_sched_reset(sched);
        rc = GLR_OK;
    }
    if (rc)
        return rc;
    return svc_replay_history(svc, seq, sched, snapshot.step + 1, to_step, progress, err);
}
