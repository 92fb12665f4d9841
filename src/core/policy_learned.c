/*
 * The learned policy: the lr a model learned from a family's histories gives for the
 * state of the run (core/learn.h), times a cut that halves it when the loss diverges, and
 * never above the client's stability cap.
 *
 * The model is part of the job's config (the service puts the family's newest one there
 * when the job is created, with its version), so that a job keeps the model it started
 * with and its answers stay exact across restarts, rewinds and replays.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "core/learn.h"
#include "core/policy.h"

struct learned {
    /* configuration */
    struct learn_model model;
    int64_t model_version; /* the store's version of the model; 0: a model given by hand */
    int64_t total_steps;   /* the horizon, in reports: the model's unless the job names one */
    double diverge_threshold;
    double decrease_factor;

    /* state */
    struct learn_trend trend;
    int64_t reports;
    double best; /* the lowest slow average of the loss; set when trend.have */
    double cut;  /* the product of the cuts on a diverging loss */
};

static int learned_create(struct glr_sched *sched, struct cfg *cfg, char *err)
{
    struct learned l = {0};
    const cJSON *model = cfg_item(cfg, "model");
    if (!model)
        return glr_fail(err, GLR_EINVAL,
                        "config key model is missing: the learned policy runs a model learned "
                        "for a family (create the job with a family, and the service adds it)");
    int rc = learn_model_read(model, "config key model", &l.model, err);
    if (rc)
        return rc;
    if ((rc = cfg_int(cfg, "model_version", 0, 0, GLR_MAX_COUNT, &l.model_version, err)) ||
        (rc =
             cfg_int(cfg, "total_steps", l.model.horizon, 1, GLR_MAX_COUNT, &l.total_steps, err)) ||
        (rc = cfg_double(cfg, "diverge_threshold", 1.0, &l.diverge_threshold, err)) ||
        (rc = cfg_double(cfg, "decrease_factor", 0.5, &l.decrease_factor, err)))
        return rc;
    if (!(l.diverge_threshold > 0))
        return glr_fail(err, GLR_EINVAL, "diverge_threshold must be > 0, got %s",
                        jsonx_text(l.diverge_threshold).s);
    if (!(l.decrease_factor > 0 && l.decrease_factor < 1))
        return glr_fail(err, GLR_EINVAL,
                        "decrease_factor must be between 0 and 1 (exclusive), got %s",
                        jsonx_text(l.decrease_factor).s);
    for (size_t i = 0; i < sched->groups; i++)
        if (!isfinite(sched->init_lrs[i] * exp(l.model.level_max)))
            return glr_fail(err, GLR_EINVAL,
                            "lr %s of group %zu times the model's largest factor is not finite",
                            jsonx_text(sched->init_lrs[i]).s, i);
    struct learned *priv = malloc(sizeof(*priv));
    if (!priv)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    *priv = l;
    sched->priv = priv;
    return GLR_OK;
}

static void learned_destroy(struct glr_sched *sched)
{
    free(sched->priv);
}

/* The factor of the initial rates now: the model's level times the cuts, floored. */
static double factor_now(const struct learned *l)
{
    double progress = fmin((double)l->reports / (double)l->total_steps, 1.0);
    double level = learn_level(&l->model, progress, learn_trend_value(&l->trend));
    return fmax(exp(level) * l->cut, LEARN_LEVEL_FLOOR);
}

static void learned_reset(struct glr_sched *sched)
{
    struct learned *l = sched->priv;
    learn_trend_init(&l->trend, l->total_steps);
    l->reports = 0;
    l->best = 0;
    l->cut = 1.0;
    double factor = factor_now(l);
    for (size_t i = 0; i < sched->groups; i++)
        sched->lrs[i] = sched->init_lrs[i] * factor;
}

static void cut(struct learned *l)
{
    l->cut = fmax(l->cut * l->decrease_factor, LEARN_LEVEL_FLOOR);
}

static void learned_step(struct glr_sched *sched, int64_t step, double metric, double lr_cap,
                         struct glr_step_result *result)
{
    struct learned *l = sched->priv;
    (void)step; /* progress counts reports, as auto's horizon does */
    l->reports += 1;
    bool diverged = false;
    if (isfinite(metric)) {
        bool first = !l->trend.have;
        learn_trend_add(&l->trend, metric);
        /*
         * Judged on the slow average: the fast one may follow a single report, and a
         * start-up's transient rise is no divergence (a cut lasts the whole run).
         */
        double smoothed = l->trend.slow;
        if (first || smoothed < l->best) {
            l->best = smoothed;
        } else if (smoothed - l->best > l->diverge_threshold * fabs(l->best)) {
            /* Judged from here on, so that a loss which jumped and stays up is cut once. */
            cut(l);
            l->best = smoothed;
            diverged = true;
        }
    } else {
        cut(l);
        diverged = true;
    }
    double factor = factor_now(l);
    bool capped = false, raised = false, lowered = false;
    for (size_t i = 0; i < sched->groups; i++) {
        double lr = sched->init_lrs[i] * factor;
        if (lr > lr_cap) {
            lr = lr_cap;
            capped = true;
        }
        raised = raised || lr > sched->lrs[i];
        lowered = lowered || lr < sched->lrs[i];
        sched->lrs[i] = lr;
    }
    result->event = diverged  ? GLR_EVENT_DIVERGED
                    : capped  ? GLR_EVENT_CAPPED
                    : raised  ? GLR_EVENT_INCREASE
                    : lowered ? GLR_EVENT_DECREASE
                              : GLR_EVENT_HOLD;
    result->metric = isfinite(metric) && l->trend.have ? l->trend.slow : metric;
}

static bool learned_config_json(const struct glr_sched *sched, cJSON *o)
{
    const struct learned *l = sched->priv;
    cJSON *model = cJSON_AddObjectToObject(o, "model");
    return model && learn_model_json(&l->model, model) &&
           jsonx_add_integer(o, "model_version", l->model_version) &&
           jsonx_add_integer(o, "total_steps", l->total_steps) &&
           jsonx_add_number(o, "diverge_threshold", l->diverge_threshold) &&
           jsonx_add_number(o, "decrease_factor", l->decrease_factor);
}

static bool learned_counters_json(const struct glr_sched *sched, cJSON *o)
{
    const struct learned *l = sched->priv;
    bool ok = jsonx_add_integer(o, "reports", l->reports) && jsonx_add_number(o, "cut", l->cut);
    if (!l->trend.have)
        return ok && cJSON_AddNullToObject(o, "fast") && cJSON_AddNullToObject(o, "slow") &&
               cJSON_AddNullToObject(o, "best");
    return ok && jsonx_add_number(o, "fast", l->trend.fast) &&
           jsonx_add_number(o, "slow", l->trend.slow) && jsonx_add_number(o, "best", l->best);
}

static int learned_state_load(struct glr_sched *sched, const cJSON *o, char *err)
{
    struct learned *l = sched->priv;
    struct learned tmp = *l;
    int rc;
    if ((rc = policy_state_get_count(o, "reports", GLR_MAX_STEP + 1, &tmp.reports, err)) ||
        (rc = policy_state_get_double(o, "cut", &tmp.cut, err)))
        return rc;
    if (!(tmp.cut >= LEARN_LEVEL_FLOOR && tmp.cut <= 1))
        return glr_fail(err, GLR_ECORRUPT, "saved state: cut must be in [%g, 1]",
                        LEARN_LEVEL_FLOOR);
    tmp.trend.have = !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "fast"));
    if ((rc = policy_state_get_optional(o, "fast", tmp.trend.have, "fast", &tmp.trend.fast, err)) ||
        (rc = policy_state_get_optional(o, "slow", tmp.trend.have, "fast", &tmp.trend.slow, err)) ||
        (rc = policy_state_get_optional(o, "best", tmp.trend.have, "fast", &tmp.best, err)))
        return rc;
    *l = tmp;
    return GLR_OK;
}

const struct glr_policy glr_policy_learned = {
    .name = "learned",
    .takes_lr_cap = true,
    .create = learned_create,
    .destroy = learned_destroy,
    .reset = learned_reset,
    .step = learned_step,
    .config_json = learned_config_json,
    .counters_json = learned_counters_json,
    .state_save = learned_counters_json,
    .state_load = learned_state_load,
};
