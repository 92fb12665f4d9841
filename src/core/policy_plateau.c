/*
 * The plateau policy: PyTorch's ReduceLROnPlateau, step for step, including its habit of
 * updating `best` during cooldown. One deliberate difference: a non-finite metric is never
 * "better" (PyTorch would take -inf as a new best in min mode and never improve again).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "core/policy.h"

enum { MODE_MIN, MODE_MAX };
enum { THRESHOLD_REL, THRESHOLD_ABS };
static const char *const mode_names[] = {"min", "max", NULL};
static const char *const threshold_mode_names[] = {"rel", "abs", NULL};

struct plateau {
    /* configuration */
    int mode;
    int threshold_mode;
    struct judge judge; /* mode, threshold_mode and threshold together */
    double factor;
    double threshold;
    double eps;
    int64_t patience;
    int64_t cooldown;
    bool min_lr_is_array;
    double *min_lr; /* groups values, in storage[] */

    /* state */
    double best;
    int64_t num_bad_epochs;
    int64_t cooldown_counter;
    int64_t last_epoch; /* steps taken: at most one per step number, GLR_MAX_STEP + 1 */
    double storage[];
};

static int plateau_create(struct glr_sched *sched, struct cfg *cfg, char *err)
{
    struct plateau tmp = {0};
    double min_lr[GLR_MAX_GROUPS];
    int rc;
    if ((rc = cfg_enum(cfg, "mode", mode_names, MODE_MIN, &tmp.mode, err)) ||
        (rc = cfg_double(cfg, "factor", 0.1, &tmp.factor, err)) ||
        (rc = cfg_int(cfg, "patience", 10, 0, GLR_MAX_COUNT, &tmp.patience, err)) ||
        (rc = cfg_double(cfg, "threshold", 1e-4, &tmp.threshold, err)) ||
        (rc = cfg_enum(cfg, "threshold_mode", threshold_mode_names, THRESHOLD_REL,
                       &tmp.threshold_mode, err)) ||
        (rc = cfg_int(cfg, "cooldown", 0, 0, GLR_MAX_COUNT, &tmp.cooldown, err)) ||
        (rc = cfg_groups(cfg, "min_lr", 0.0, min_lr, &tmp.min_lr_is_array, err)) ||
        (rc = cfg_double(cfg, "eps", 1e-8, &tmp.eps, err)))
        return rc;
    if (!(tmp.factor > 0 && tmp.factor < 1))
        return glr_fail(err, GLR_EINVAL, "factor must be between 0 and 1 (exclusive), got %s",
                        jsonx_text(tmp.factor).s);
    if (tmp.threshold < 0)
        return glr_fail(err, GLR_EINVAL, "threshold must be >= 0, got %s",
                        jsonx_text(tmp.threshold).s);
    if (tmp.eps < 0)
        return glr_fail(err, GLR_EINVAL, "eps must be >= 0, got %s", jsonx_text(tmp.eps).s);
    for (size_t i = 0; i < sched->groups; i++)
        if (min_lr[i] < 0)
            return glr_fail(err, GLR_EINVAL, "min_lr must be >= 0, got %s",
                            jsonx_text(min_lr[i]).s);

    tmp.judge = (struct judge){.maximize = tmp.mode == MODE_MAX,
                               .relative = tmp.threshold_mode == THRESHOLD_REL,
                               .threshold = tmp.threshold};
    struct plateau *p = malloc(sizeof(*p) + sched->groups * sizeof(double));
    if (!p)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    *p = tmp;
    p->min_lr = p->storage;
    memcpy(p->min_lr, min_lr, sched->groups * sizeof(double));
    sched->priv = p;
    return GLR_OK;
}

static void plateau_destroy(struct glr_sched *sched)
{
    free(sched->priv);
}

static void plateau_reset(struct glr_sched *sched)
{
    struct plateau *p = sched->priv;
    p->best = policy_judge_initial_best(&p->judge);
    p->num_bad_epochs = 0;
    p->cooldown_counter = 0;
    p->last_epoch = 0;
}

static void plateau_step(struct glr_sched *sched, int64_t step, double metric, double lr_cap,
                         struct glr_step_result *result)
{
    (void)lr_cap; /* not takes_lr_cap: always +inf */
    struct plateau *p = sched->priv;
    (void)step;
    result->metric = metric;
    result->event = GLR_EVENT_HOLD;
    /*
     * No job takes more steps than there are step numbers, but a state loaded at the bound
     * must not step to one that the loader refuses.
     */
    if (p->last_epoch <= GLR_MAX_STEP)
        p->last_epoch += 1;
    if (policy_judge_is_better(&p->judge, p->best, metric)) {
        p->best = metric;
        p->num_bad_epochs = 0;
    } else {
        p->num_bad_epochs += 1;
    }
    if (p->cooldown_counter > 0) {
        p->cooldown_counter -= 1;
        p->num_bad_epochs = 0;
        result->event = GLR_EVENT_COOLDOWN;
    }
    if (p->num_bad_epochs > p->patience) {
        policy_lrs_reduce(sched->lrs, sched->groups, p->factor, p->min_lr, p->eps);
        p->cooldown_counter = p->cooldown;
        p->num_bad_epochs = 0;
        result->event = GLR_EVENT_DECREASE;
    }
}

static bool plateau_config_json(const struct glr_sched *sched, cJSON *o)
{
    const struct plateau *p = sched->priv;
    return cJSON_AddStringToObject(o, "mode", mode_names[p->mode]) &&
           jsonx_add_number(o, "factor", p->factor) &&
           jsonx_add_integer(o, "patience", p->patience) &&
           jsonx_add_number(o, "threshold", p->threshold) &&
           cJSON_AddStringToObject(o, "threshold_mode", threshold_mode_names[p->threshold_mode]) &&
           jsonx_add_integer(o, "cooldown", p->cooldown) &&
           policy_json_add_group_values(o, "min_lr", p->min_lr, sched->groups,
                                        p->min_lr_is_array) &&
           jsonx_add_number(o, "eps", p->eps);
}

static bool add_counters(const struct plateau *p, cJSON *o)
{
    return jsonx_add_integer(o, "num_bad_epochs", p->num_bad_epochs) &&
           jsonx_add_integer(o, "cooldown_counter", p->cooldown_counter) &&
           jsonx_add_integer(o, "last_epoch", p->last_epoch);
}

static bool plateau_counters_json(const struct glr_sched *sched, cJSON *o)
{
    const struct plateau *p = sched->priv;
    return jsonx_add_number_or_null(o, "best", p->best) && add_counters(p, o);
}

static bool plateau_state_save(const struct glr_sched *sched, cJSON *o)
{
    const struct plateau *p = sched->priv;
    return jsonx_add_number(o, "best", p->best) && add_counters(p, o);
}

static int plateau_state_load(struct glr_sched *sched, const cJSON *o, char *err)
{
    struct plateau *p = sched->priv;
    struct plateau tmp = *p;
    int rc;
    if ((rc = policy_state_get_double(o, "best", &tmp.best, err)) ||
        (rc = policy_state_get_count(o, "num_bad_epochs", GLR_MAX_COUNT, &tmp.num_bad_epochs,
                                     err)) ||
        (rc = policy_state_get_count(o, "cooldown_counter", p->cooldown, &tmp.cooldown_counter,
                                     err)) ||
        (rc = policy_state_get_count(o, "last_epoch", GLR_MAX_STEP + 1, &tmp.last_epoch, err)))
        return rc;
    if (isnan(tmp.best))
        return glr_fail(err, GLR_ECORRUPT, "saved state: best must not be NaN");
    *p = tmp;
    return GLR_OK;
}

const struct glr_policy glr_policy_plateau = {
    .name = "plateau",
    .create = plateau_create,
    .destroy = plateau_destroy,
    .reset = plateau_reset,
    .step = plateau_step,
    .config_json = plateau_config_json,
    .counters_json = plateau_counters_json,
    .state_save = plateau_state_save,
    .state_load = plateau_state_load,
};
