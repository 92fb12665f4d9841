/*
 * The GreedyLR policy: raise the learning rate while the metric keeps improving, lower it
 * when it stops, and go back to the initial rates after sitting at the floor too long.
 * Every arithmetic step follows the reference implementation in order, so that the
 * learning rates agree with it to the last bit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "core/policy.h"

enum { MODE_MIN, MODE_MAX };
enum { THRESHOLD_ABS, THRESHOLD_REL };
static const char *const mode_names[] = {"min", "max", NULL};
static const char *const threshold_mode_names[] = {"abs", "rel", NULL};

struct greedy {
    /* configuration */
    int mode;
    int threshold_mode;
    struct judge judge; /* mode, threshold_mode and threshold together */
    double factor;
    double threshold;
    double eps;
    int64_t patience;
    int64_t cooldown;
    int64_t warmup;
    int64_t window_size;
    int64_t reset_start;
    bool smooth;
    bool min_lr_is_array;
    bool max_lr_is_array;
    double *min_lr; /* groups values, in storage[] */
    double *max_lr; /* groups values, in storage[] */

    /* state */
    double best;
    int64_t num_good;
    int64_t num_bad;
    int64_t cooldown_counter;
    int64_t warmup_counter;
    int64_t reset_left;
    double window_sum;   /* running sum, updated in the reference's order */
    size_t window_head;  /* index of the oldest value */
    size_t window_count; /* values held, at most window_size */
    double *window;      /* window_size values when smoothing, in storage[]; else NULL */
    double storage[];
};

static int greedy_create(struct glr_sched *sched, struct cfg *cfg, char *err)
{
    struct greedy tmp = {0};
    size_t groups = sched->groups;
    double min_lr[GLR_MAX_GROUPS], max_lr[GLR_MAX_GROUPS];
    bool verbose; /* accepted for configs written for the reference, which only logs with it */
    int rc;

    if ((rc = cfg_enum(cfg, "mode", mode_names, MODE_MIN, &tmp.mode, err)) ||
        (rc = cfg_double(cfg, "factor", 0.95, &tmp.factor, err)) ||
        (rc = cfg_int(cfg, "patience", 10, 0, GLR_MAX_COUNT, &tmp.patience, err)) ||
        (rc = cfg_double(cfg, "threshold", 1e-6, &tmp.threshold, err)) ||
        (rc = cfg_enum(cfg, "threshold_mode", threshold_mode_names, THRESHOLD_ABS,
                       &tmp.threshold_mode, err)) ||
        (rc = cfg_int(cfg, "cooldown", 0, 0, GLR_MAX_COUNT, &tmp.cooldown, err)) ||
        (rc = cfg_int(cfg, "warmup", 0, 0, GLR_MAX_COUNT, &tmp.warmup, err)) ||
        (rc = cfg_groups(cfg, "min_lr", 1e-3, min_lr, &tmp.min_lr_is_array, err)) ||
        (rc = cfg_groups(cfg, "max_lr", 1.0, max_lr, &tmp.max_lr_is_array, err)) ||
        (rc = cfg_double(cfg, "eps", 1e-8, &tmp.eps, err)) ||
        (rc = cfg_bool(cfg, "smooth", false, &tmp.smooth, err)) ||
        (rc = cfg_int(cfg, "window_size", 50, 1, GLR_MAX_WINDOW, &tmp.window_size, err)) ||
        (rc = cfg_int(cfg, "reset_start", 500, 1, GLR_MAX_COUNT, &tmp.reset_start, err)) ||
        (rc = cfg_bool(cfg, "verbose", false, &verbose, err)))
        return rc;
    /*
     * verbose changes no decision, so it is not kept and not part of the canonical config:
     * two creates that differ only in it name the same job.
     */
    (void)verbose;

    if (!(tmp.factor > 0 && tmp.factor < 1))
        return glr_fail(err, GLR_EINVAL, "factor must be between 0 and 1 (exclusive), got %s",
                        jsonx_text(tmp.factor).s);
    if (tmp.threshold < 0)
        return glr_fail(err, GLR_EINVAL, "threshold must be >= 0, got %s",
                        jsonx_text(tmp.threshold).s);
    if (tmp.eps < 0)
        return glr_fail(err, GLR_EINVAL, "eps must be >= 0, got %s", jsonx_text(tmp.eps).s);
    for (size_t i = 0; i < groups; i++) {
        if (min_lr[i] < 0)
            return glr_fail(err, GLR_EINVAL, "min_lr must be >= 0, got %s",
                            jsonx_text(min_lr[i]).s);
        if (min_lr[i] > max_lr[i])
            return glr_fail(err, GLR_EINVAL, "min_lr (%s) must not exceed max_lr (%s) in group %zu",
                            jsonx_text(min_lr[i]).s, jsonx_text(max_lr[i]).s, i);
        double lr = sched->init_lrs[i];
        if (lr < min_lr[i])
            return glr_fail(err, GLR_EINVAL,
                            "lr %s of group %zu is below min_lr %s: it could never "
                            "decrease; lower min_lr",
                            jsonx_text(lr).s, i, jsonx_text(min_lr[i]).s);
        if (lr > max_lr[i])
            return glr_fail(err, GLR_EINVAL, "lr %s of group %zu is above max_lr %s: raise max_lr",
                            jsonx_text(lr).s, i, jsonx_text(max_lr[i]).s);
    }

    tmp.judge = (struct judge){.maximize = tmp.mode == MODE_MAX,
                               .relative = tmp.threshold_mode == THRESHOLD_REL,
                               .threshold = tmp.threshold};
    size_t window_len = tmp.smooth ? (size_t)tmp.window_size : 0;
    struct greedy *g = malloc(sizeof(*g) + (2 * groups + window_len) * sizeof(double));
    if (!g)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    *g = tmp;
    g->min_lr = g->storage;
    g->max_lr = g->storage + groups;
    g->window = window_len ? g->storage + 2 * groups : NULL;
    memcpy(g->min_lr, min_lr, groups * sizeof(double));
    memcpy(g->max_lr, max_lr, groups * sizeof(double));
    sched->priv = g;
    return GLR_OK;
}

static void greedy_destroy(struct glr_sched *sched)
{
    free(sched->priv);
}

/* The state of a new scheduler, also the state a reset returns to (lrs aside). */
static void restart(struct greedy *g)
{
    g->best = policy_judge_initial_best(&g->judge);
    g->num_good = 0;
    g->num_bad = 0;
    g->cooldown_counter = 0;
    g->warmup_counter = 0;
    g->reset_left = g->reset_start;
    g->window_sum = 0;
    g->window_head = 0;
    g->window_count = 0;
}

static void greedy_reset(struct glr_sched *sched)
{
    restart(sched->priv);
}

/* Adds m to the window and returns the window's mean. */
static double smooth_metric(struct greedy *g, double m)
{
    size_t size = (size_t)g->window_size;
    if (g->window_count < size) {
        g->window[(g->window_head + g->window_count) % size] = m;
        g->window_count++;
        g->window_sum += m;
    } else {
        /* The reference appends first and drops the oldest after: add, then subtract. */
        double oldest = g->window[g->window_head];
        g->window[g->window_head] = m;
        g->window_head = (g->window_head + 1) % size;
        g->window_sum += m;
        g->window_sum -= oldest;
    }
    return g->window_sum / (double)g->window_count;
}

static void increase(struct glr_sched *sched, struct greedy *g)
{
    for (size_t i = 0; i < sched->groups; i++) {
        double lr = sched->lrs[i];
        double raised = fmin(lr / g->factor, g->max_lr[i]);
        if (raised - lr > g->eps)
            sched->lrs[i] = raised;
    }
    g->reset_left = g->reset_start;
}

/* Lowers every group's lr; returns true when the job sat at the floor long enough to reset. */
static bool reduce(struct glr_sched *sched, struct greedy *g)
{
    policy_lrs_reduce(sched->lrs, sched->groups, g->factor, g->min_lr, g->eps);
    bool all_at_floor = true;
    for (size_t i = 0; i < sched->groups; i++)
        if (sched->lrs[i] > g->min_lr[i])
            all_at_floor = false;
    if (!all_at_floor)
        return false;
    g->reset_left -= 1;
    if (g->reset_left > 0)
        return false;
    memcpy(sched->lrs, sched->init_lrs, sched->groups * sizeof(double));
    restart(g);
    return true;
}

static void greedy_step(struct glr_sched *sched, int64_t step, double metric, double lr_cap,
                        struct glr_step_result *result)
{
    (void)lr_cap; /* not takes_lr_cap: always +inf */
    struct greedy *g = sched->priv;
    (void)step;
    if (g->smooth && isfinite(metric))
        metric = smooth_metric(g, metric);
    result->metric = metric;

    if (g->cooldown_counter > 0) {
        g->cooldown_counter -= 1;
        g->num_good = 0;
        g->num_bad = 0;
        result->event = GLR_EVENT_COOLDOWN;
        return;
    }
    if (g->warmup_counter > 0) {
        g->warmup_counter -= 1;
        g->num_good = 0;
        g->num_bad = 0;
        result->event = GLR_EVENT_WARMUP;
        return;
    }
    if (policy_judge_is_better(&g->judge, g->best, metric)) {
        g->best = metric;
        g->num_bad = 0;
        g->num_good += 1;
    } else {
        g->num_bad += 1;
        g->num_good = 0;
    }
    if (g->num_good > g->patience) {
        increase(sched, g);
        g->warmup_counter = g->warmup;
        g->num_good = 0;
        result->event = GLR_EVENT_INCREASE;
    } else if (g->num_bad > g->patience) {
        bool was_reset = reduce(sched, g);
        g->cooldown_counter = g->cooldown;
        g->num_bad = 0;
        result->event = was_reset ? GLR_EVENT_RESET : GLR_EVENT_DECREASE;
    } else {
        result->event = GLR_EVENT_HOLD;
    }
}

static bool greedy_config_json(const struct glr_sched *sched, cJSON *o)
{
    const struct greedy *g = sched->priv;
    return cJSON_AddStringToObject(o, "mode", mode_names[g->mode]) &&
           jsonx_add_number(o, "factor", g->factor) &&
           jsonx_add_integer(o, "patience", g->patience) &&
           jsonx_add_number(o, "threshold", g->threshold) &&
           cJSON_AddStringToObject(o, "threshold_mode", threshold_mode_names[g->threshold_mode]) &&
           jsonx_add_integer(o, "cooldown", g->cooldown) &&
           jsonx_add_integer(o, "warmup", g->warmup) &&
           policy_json_add_group_values(o, "min_lr", g->min_lr, sched->groups,
                                        g->min_lr_is_array) &&
           policy_json_add_group_values(o, "max_lr", g->max_lr, sched->groups,
                                        g->max_lr_is_array) &&
           jsonx_add_number(o, "eps", g->eps) && cJSON_AddBoolToObject(o, "smooth", g->smooth) &&
           jsonx_add_integer(o, "window_size", g->window_size) &&
           jsonx_add_integer(o, "reset_start", g->reset_start);
}

static bool add_counters(const struct greedy *g, cJSON *o)
{
    return jsonx_add_integer(o, "num_good", g->num_good) &&
           jsonx_add_integer(o, "num_bad", g->num_bad) &&
           jsonx_add_integer(o, "cooldown_counter", g->cooldown_counter) &&
           jsonx_add_integer(o, "warmup_counter", g->warmup_counter) &&
           jsonx_add_integer(o, "reset_left", g->reset_left);
}

static bool greedy_counters_json(const struct glr_sched *sched, cJSON *o)
{
    const struct greedy *g = sched->priv;
    return jsonx_add_number_or_null(o, "best", g->best) && add_counters(g, o);
}

static bool greedy_state_save(const struct glr_sched *sched, cJSON *o)
{
    const struct greedy *g = sched->priv;
    if (!jsonx_add_number(o, "best", g->best) || !add_counters(g, o) ||
        !jsonx_add_number(o, "window_sum", g->window_sum))
        return false;
    cJSON *array = cJSON_AddArrayToObject(o, "window");
    if (!array)
        return false;
    /* Oldest first, so that the saved window does not depend on where the ring started. */
    for (size_t i = 0; i < g->window_count; i++) {
        size_t at = (g->window_head + i) % (size_t)g->window_size;
        cJSON *item = jsonx_number(g->window[at]);
        if (!item || !cJSON_AddItemToArray(array, item)) {
            cJSON_Delete(item);
            return false;
        }
    }
    return true;
}

static int greedy_state_load(struct glr_sched *sched, const cJSON *o, char *err)
{
    struct greedy *g = sched->priv;
    struct greedy tmp = *g;
    int rc;
    if ((rc = policy_state_get_double(o, "best", &tmp.best, err)) ||
        (rc = policy_state_get_count(o, "num_good", GLR_MAX_COUNT, &tmp.num_good, err)) ||
        (rc = policy_state_get_count(o, "num_bad", GLR_MAX_COUNT, &tmp.num_bad, err)) ||
        (rc = policy_state_get_count(o, "cooldown_counter", g->cooldown, &tmp.cooldown_counter,
                                     err)) ||
        (rc = policy_state_get_count(o, "warmup_counter", g->warmup, &tmp.warmup_counter, err)) ||
        (rc = policy_state_get_count(o, "reset_left", g->reset_start, &tmp.reset_left, err)) ||
        (rc = policy_state_get_double(o, "window_sum", &tmp.window_sum, err)))
        return rc;
    if (isnan(tmp.best))
        return glr_fail(err, GLR_ECORRUPT, "saved state: best must not be NaN");
    /*
     * window_sum may be infinite or NaN: finite losses near DBL_MAX overflow the running sum
     * exactly as they do in the reference, and a restored job must go on the same way.
     */
    const cJSON *window = cJSON_GetObjectItemCaseSensitive(o, "window");
    int count = cJSON_GetArraySize(window);
    size_t capacity = g->window ? (size_t)g->window_size : 0;
    if (!cJSON_IsArray(window) || (size_t)count > capacity)
        return glr_fail(err, GLR_ECORRUPT, "saved state: window must hold at most %zu values",
                        capacity);
    const cJSON *item;
    cJSON_ArrayForEach(item, window)
    {
        double v;
        if (!jsonx_get_double(item, &v) || !isfinite(v))
            return glr_fail(err, GLR_ECORRUPT, "saved state: window values must be finite");
    }
    /* Everything checked: now change the scheduler. */
    size_t i = 0;
    cJSON_ArrayForEach(item, window)
    {
        jsonx_get_double(item, &g->window[i]);
        i++;
    }
    tmp.window_head = 0;
    tmp.window_count = (size_t)count;
    *g = tmp;
    return GLR_OK;
}

const struct glr_policy glr_policy_greedylr = {
    .name = "greedylr",
    .create = greedy_create,
    .destroy = greedy_destroy,
    .reset = greedy_reset,
    .step = greedy_step,
    .config_json = greedy_config_json,
    .counters_json = greedy_counters_json,
    .state_save = greedy_state_save,
    .state_load = greedy_state_load,
};
