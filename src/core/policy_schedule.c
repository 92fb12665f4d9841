/*
 * Time-based policies: the learning rate is a function of the step number alone, and the
 * metric is only recorded. After the report of step s the learning rate is f(s + 1), so
 * that the rate a trainer uses for step s + 1 is the schedule's value there.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "base/jsonx.h"
#include "core/policy.h"

/* pi to double precision; M_PI is not part of C11. */
#define PI 3.14159265358979323846

enum kind { KIND_CONSTANT, KIND_STEP, KIND_EXPONENTIAL, KIND_COSINE, KIND_LINEAR };

struct schedule {
    enum kind kind;
    int64_t warmup_steps;
    double gamma;        /* step, exponential */
    int64_t step_size;   /* step */
    int64_t t_max;       /* cosine */
    double eta_min;      /* cosine */
    double start_factor; /* linear */
    double end_factor;   /* linear */
    int64_t total_steps; /* linear */
    int64_t t;           /* the schedule position of the current learning rates */
};

static int require_count(struct cfg *cfg, const char *key, int64_t *out, char *err)
{
    int rc = cfg_int(cfg, key, 0, 0, GLR_MAX_COUNT, out, err);
    if (rc)
        return rc;
    if (*out < 1)
        return glr_fail(err, GLR_EINVAL, "%s is required: an integer >= 1", key);
    return GLR_OK;
}

static int read_gamma(struct cfg *cfg, double dflt, double *out, char *err)
{
    int rc = cfg_double(cfg, "gamma", dflt, out, err);
    if (rc)
        return rc;
    if (isnan(*out))
        return glr_fail(err, GLR_EINVAL, "gamma is required: a number > 0");
    if (!(*out > 0))
        return glr_fail(err, GLR_EINVAL, "gamma must be > 0, got %s", jsonx_text(*out).s);
    return GLR_OK;
}

static int read_kind_config(struct schedule *s, struct cfg *cfg, char *err)
{
    int rc;
    switch (s->kind) {
    case KIND_CONSTANT:
        return GLR_OK;
    case KIND_STEP:
        if ((rc = require_count(cfg, "step_size", &s->step_size, err)))
            return rc;
        return read_gamma(cfg, 0.1, &s->gamma, err);
    case KIND_EXPONENTIAL:
        return read_gamma(cfg, NAN, &s->gamma, err);
    case KIND_COSINE:
        if ((rc = require_count(cfg, "t_max", &s->t_max, err)) ||
            (rc = cfg_double(cfg, "eta_min", 0.0, &s->eta_min, err)))
            return rc;
        if (s->eta_min < 0)
            return glr_fail(err, GLR_EINVAL, "eta_min must be >= 0, got %s",
                            jsonx_text(s->eta_min).s);
        return GLR_OK;
    case KIND_LINEAR:
        if ((rc = require_count(cfg, "total_steps", &s->total_steps, err)) ||
            (rc = cfg_double(cfg, "start_factor", 1.0, &s->start_factor, err)) ||
            (rc = cfg_double(cfg, "end_factor", 0.0, &s->end_factor, err)))
            return rc;
        if (s->start_factor < 0)
            return glr_fail(err, GLR_EINVAL, "start_factor must be >= 0, got %s",
                            jsonx_text(s->start_factor).s);
        if (s->end_factor < 0)
            return glr_fail(err, GLR_EINVAL, "end_factor must be >= 0, got %s",
                            jsonx_text(s->end_factor).s);
        return GLR_OK;
    }
    return GLR_EINVAL;
}

static int schedule_create(struct glr_sched *sched, struct cfg *cfg, char *err, enum kind kind)
{
    struct schedule tmp = {.kind = kind};
    int rc = read_kind_config(&tmp, cfg, err);
    if (!rc)
        rc = cfg_int(cfg, "warmup_steps", 0, 0, GLR_MAX_COUNT, &tmp.warmup_steps, err);
    if (rc)
        return rc;
    struct schedule *s = malloc(sizeof(*s));
    if (!s)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    *s = tmp;
    sched->priv = s;
    return GLR_OK;
}

static int create_constant(struct glr_sched *sched, struct cfg *cfg, char *err)
{
    return schedule_create(sched, cfg, err, KIND_CONSTANT);
}

static int create_step(struct glr_sched *sched, struct cfg *cfg, char *err)
{
    return schedule_create(sched, cfg, err, KIND_STEP);
}

static int create_exponential(struct glr_sched *sched, struct cfg *cfg, char *err)
{
    return schedule_create(sched, cfg, err, KIND_EXPONENTIAL);
}

static int create_cosine(struct glr_sched *sched, struct cfg *cfg, char *err)
{
    return schedule_create(sched, cfg, err, KIND_COSINE);
}

static int create_linear(struct glr_sched *sched, struct cfg *cfg, char *err)
{
    return schedule_create(sched, cfg, err, KIND_LINEAR);
}

static void schedule_destroy(struct glr_sched *sched)
{
    free(sched->priv);
}

/* The schedule's value at position t for a group whose initial lr is lr0. */
static double value_at(const struct schedule *s, double lr0, int64_t t)
{
    double v = lr0;
    switch (s->kind) {
    case KIND_CONSTANT:
        break;
    case KIND_STEP:
        v = lr0 * pow(s->gamma, (double)(t / s->step_size));
        break;
    case KIND_EXPONENTIAL:
        v = lr0 * pow(s->gamma, (double)t);
        break;
    case KIND_COSINE: {
        double progress = (double)(t < s->t_max ? t : s->t_max) / (double)s->t_max;
        double wave = 1 + cos(PI * progress);
        v = s->eta_min + (lr0 - s->eta_min) * wave / 2;
        /*
         * When lr0 and eta_min are a DBL_MAX apart, (lr0 - eta_min) * wave overflows,
         * although half of it cannot: halve first there, keeping the usual order elsewhere.
         */
        if (!isfinite(v))
            v = s->eta_min + (lr0 - s->eta_min) * (wave / 2);
        break;
    }
    case KIND_LINEAR: {
        double progress =
            (double)(t < s->total_steps ? t : s->total_steps) / (double)s->total_steps;
        v = lr0 * (s->start_factor + (s->end_factor - s->start_factor) * progress);
        break;
    }
    }
    /* A growing schedule (gamma > 1) overflows in the end: stay at the largest double. */
    v = fmin(v, DBL_MAX);
    if (t < s->warmup_steps) {
        double warm = v * (double)t / (double)s->warmup_steps;
        /*
         * Near DBL_MAX, v * t overflows although the warmup only shrinks v: take the
         * fraction first there (elsewhere the order above is kept, bit for bit).
         */
        v = isfinite(warm) ? warm : v * ((double)t / (double)s->warmup_steps);
    }
    return v;
}

static void move_to(struct glr_sched *sched, struct schedule *s, int64_t t)
{
    s->t = t;
    for (size_t i = 0; i < sched->groups; i++)
        sched->lrs[i] = value_at(s, sched->init_lrs[i], t);
}

static void schedule_reset(struct glr_sched *sched)
{
    move_to(sched, sched->priv, 0);
}

static void schedule_step(struct glr_sched *sched, int64_t step, double metric, double lr_cap,
                          struct glr_step_result *result)
{
    (void)lr_cap; /* not takes_lr_cap: always +inf */
    struct schedule *s = sched->priv;
    double before = sched->lrs[0];
    move_to(sched, s, step + 1);
    result->metric = metric;
    if (s->t < s->warmup_steps)
        result->event = GLR_EVENT_WARMUP;
    else if (sched->lrs[0] > before)
        result->event = GLR_EVENT_INCREASE;
    else if (sched->lrs[0] < before)
        result->event = GLR_EVENT_DECREASE;
    else
        result->event = GLR_EVENT_HOLD;
}

static bool schedule_config_json(const struct glr_sched *sched, cJSON *o)
{
    const struct schedule *s = sched->priv;
    bool ok = true;
    switch (s->kind) {
    case KIND_CONSTANT:
        break;
    case KIND_STEP:
        ok = jsonx_add_integer(o, "step_size", s->step_size) &&
             jsonx_add_number(o, "gamma", s->gamma);
        break;
    case KIND_EXPONENTIAL:
        ok = jsonx_add_number(o, "gamma", s->gamma);
        break;
    case KIND_COSINE:
        ok = jsonx_add_integer(o, "t_max", s->t_max) && jsonx_add_number(o, "eta_min", s->eta_min);
        break;
    case KIND_LINEAR:
        ok = jsonx_add_integer(o, "total_steps", s->total_steps) &&
             jsonx_add_number(o, "start_factor", s->start_factor) &&
             jsonx_add_number(o, "end_factor", s->end_factor);
        break;
    }
    return ok && jsonx_add_integer(o, "warmup_steps", s->warmup_steps);
}

static bool schedule_counters_json(const struct glr_sched *sched, cJSON *o)
{
    const struct schedule *s = sched->priv;
    return jsonx_add_integer(o, "t", s->t);
}

static int schedule_state_load(struct glr_sched *sched, const cJSON *o, char *err)
{
    struct schedule *s = sched->priv;
    int64_t t;
    int rc = policy_state_get_count(o, "t", GLR_MAX_STEP + 1, &t, err);
    if (rc)
        return rc;
    s->t = t;
    return GLR_OK;
}

#define SCHEDULE_POLICY(policy_name, create_fn)                                                    \
    {                                                                                              \
        .name = policy_name, .ignores_metric = true, .create = create_fn,                          \
        .destroy = schedule_destroy, .reset = schedule_reset, .step = schedule_step,               \
        .config_json = schedule_config_json, .counters_json = schedule_counters_json,              \
        .state_save = schedule_counters_json, .state_load = schedule_state_load,                   \
    }

const struct glr_policy glr_policy_constant = SCHEDULE_POLICY("constant", create_constant);
const struct glr_policy glr_policy_step = SCHEDULE_POLICY("step", create_step);
const struct glr_policy glr_policy_exponential = SCHEDULE_POLICY("exponential", create_exponential);
const struct glr_policy glr_policy_cosine = SCHEDULE_POLICY("cosine", create_cosine);
const struct glr_policy glr_policy_linear = SCHEDULE_POLICY("linear", create_linear);
