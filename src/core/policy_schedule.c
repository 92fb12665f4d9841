/*
 * Time-based policies: the learning rate is a function of the step number alone, and the
 * metric is only recorded. After the report of step s the learning rate is f(s + 1), so
 * that the rate a trainer uses for step s + 1 is the schedule's value there.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "core/policy.h"

/* pi to double precision; M_PI is not part of C11. */
#define PI 3.14159265358979323846

enum kind {
    KIND_CONSTANT,
    KIND_STEP,
    KIND_MULTISTEP,
    KIND_CONSTANT_FACTOR,
    KIND_EXPONENTIAL,
    KIND_POLYNOMIAL,
    KIND_COSINE,
    KIND_COSINE_RESTARTS,
    KIND_LINEAR,
    KIND_ONECYCLE,
};

/* The rates a one-cycle phase moves between, per group. */
enum level { LEVEL_INITIAL, LEVEL_MAX, LEVEL_MIN };

/* One phase of a one-cycle schedule: torch's end_step, a fractional step number. */
struct phase {
    double end_step;
    enum level from, to;
};

struct schedule {
    enum kind kind;
    int64_t warmup_steps;
    double gamma;        /* step, multistep, exponential */
    int64_t step_size;   /* step */
    int64_t *milestones; /* multistep: sorted, repeats kept; owned */
    size_t milestone_count;
    double factor;           /* constant_factor */
    int64_t total_iters;     /* constant_factor, polynomial */
    double power;            /* polynomial */
    int64_t t_max;           /* cosine */
    bool periodic;           /* cosine: torch's formula, on past t_max */
    double eta_min;          /* cosine, cosine_restarts */
    int64_t t_0;             /* cosine_restarts */
    int64_t t_mult;          /* cosine_restarts */
    double start_factor;     /* linear */
    double end_factor;       /* linear */
    int64_t total_steps;     /* linear, onecycle */
    double *max_lr;          /* onecycle: one per group; owned */
    bool max_lr_is_array;    /* onecycle: max_lr was given as an array */
    double pct_start;        /* onecycle */
    bool anneal_linear;      /* onecycle: anneal_strategy "linear" rather than "cos" */
    double div_factor;       /* onecycle */
    double final_div_factor; /* onecycle */
    bool three_phase;        /* onecycle */
    struct phase phases[3];  /* onecycle */
    int phase_count;         /* onecycle */
    int64_t t;               /* the schedule position of the current learning rates */
};

static void schedule_free(struct schedule *s)
{
    free(s->milestones);
    free(s->max_lr);
    free(s);
}

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

/* A number in [lo, hi]; dflt when absent. */
static int read_between(struct cfg *cfg, const char *key, double dflt, double lo, double hi,
                        double *out, char *err)
{
    int rc = cfg_double(cfg, key, dflt, out, err);
    if (rc)
        return rc;
    if (!(*out >= lo && *out <= hi))
        return glr_fail(err, GLR_EINVAL, "%s must be in [%s, %s], got %s", key, jsonx_text(lo).s,
                        jsonx_text(hi).s, jsonx_text(*out).s);
    return GLR_OK;
}

/* A number >= 0; dflt when absent. */
static int read_nonnegative(struct cfg *cfg, const char *key, double dflt, double *out, char *err)
{
    int rc = cfg_double(cfg, key, dflt, out, err);
    if (rc)
        return rc;
    if (!(*out >= 0))
        return glr_fail(err, GLR_EINVAL, "%s must be >= 0, got %s", key, jsonx_text(*out).s);
    return GLR_OK;
}

/* A number > 0; dflt when absent. */
static int read_positive(struct cfg *cfg, const char *key, double dflt, double *out, char *err)
{
    int rc = cfg_double(cfg, key, dflt, out, err);
    if (rc)
        return rc;
    if (!(*out > 0))
        return glr_fail(err, GLR_EINVAL, "%s must be > 0, got %s", key, jsonx_text(*out).s);
    return GLR_OK;
}

static int compare_counts(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int read_milestones(struct schedule *s, struct cfg *cfg, char *err)
{
    int64_t found[GLR_MAX_MILESTONES];
    size_t n;
    int rc = cfg_int_list(cfg, "milestones", GLR_MAX_MILESTONES, 1, GLR_MAX_COUNT, found, &n, err);
    if (rc)
        return rc;
    if (n == 0)
        return glr_fail(err, GLR_EINVAL,
                        "milestones is required: an array of 1 to %d step numbers >= 1",
                        GLR_MAX_MILESTONES);
    /* MultiStepLR counts milestones, in any order and with repeats: keep them sorted. */
    qsort(found, n, sizeof(found[0]), compare_counts);
    s->milestones = malloc(n * sizeof(found[0]));
    if (!s->milestones)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    memcpy(s->milestones, found, n * sizeof(found[0]));
    s->milestone_count = n;
    return GLR_OK;
}

/* OneCycleLR's phases, with its float arithmetic: they decide the last bits. */
static void onecycle_phases(struct schedule *s)
{
    double total = (double)s->total_steps;
    if (s->three_phase) {
        s->phases[0] = (struct phase){s->pct_start * total - 1, LEVEL_INITIAL, LEVEL_MAX};
        s->phases[1] = (struct phase){2 * s->pct_start * total - 2, LEVEL_MAX, LEVEL_INITIAL};
        s->phases[2] = (struct phase){total - 1, LEVEL_INITIAL, LEVEL_MIN};
        s->phase_count = 3;
    } else {
        s->phases[0] = (struct phase){s->pct_start * total - 1, LEVEL_INITIAL, LEVEL_MAX};
        s->phases[1] = (struct phase){total - 1, LEVEL_MAX, LEVEL_MIN};
        s->phase_count = 2;
    }
}

static int read_onecycle(struct schedule *s, const struct glr_sched *sched, struct cfg *cfg,
                         char *err)
{
    static const char *const strategies[] = {"cos", "linear", NULL};
    double max_lr[GLR_MAX_GROUPS];
    int strategy;
    int rc;
    if ((rc = require_count(cfg, "total_steps", &s->total_steps, err)) ||
        (rc = cfg_groups(cfg, "max_lr", NAN, max_lr, &s->max_lr_is_array, err)) ||
        (rc = read_between(cfg, "pct_start", 0.3, 0, 1, &s->pct_start, err)) ||
        (rc = cfg_enum(cfg, "anneal_strategy", strategies, 0, &strategy, err)) ||
        (rc = read_positive(cfg, "div_factor", 25.0, &s->div_factor, err)) ||
        (rc = read_positive(cfg, "final_div_factor", 1e4, &s->final_div_factor, err)) ||
        (rc = cfg_bool(cfg, "three_phase", false, &s->three_phase, err)))
        return rc;
    /* Without max_lr the job's lr is the peak, one per group as the lr is given, since
     * the optimizer's lr is the peak elsewhere too. */
    bool max_lr_given = !isnan(max_lr[0]);
    if (!max_lr_given) {
        memcpy(max_lr, sched->init_lrs, sched->groups * sizeof(double));
        s->max_lr_is_array = sched->lr_is_array;
    }
    for (size_t i = 0; i < sched->groups; i++) {
        if (!(max_lr[i] > 0))
            return glr_fail(err, GLR_EINVAL, "max_lr must be > 0, got %s", jsonx_text(max_lr[i]).s);
    }
    s->anneal_linear = strategy == 1;
    s->max_lr = malloc(sched->groups * sizeof(double));
    if (!s->max_lr)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    memcpy(s->max_lr, max_lr, sched->groups * sizeof(double));
    onecycle_phases(s);
    return GLR_OK;
}

static int read_kind_config(struct schedule *s, const struct glr_sched *sched, struct cfg *cfg,
                            char *err)
{
    int rc;
    switch (s->kind) {
    case KIND_CONSTANT:
        return GLR_OK;
    case KIND_STEP:
        if ((rc = require_count(cfg, "step_size", &s->step_size, err)))
            return rc;
        return read_gamma(cfg, 0.1, &s->gamma, err);
    case KIND_MULTISTEP:
        if ((rc = read_milestones(s, cfg, err)))
            return rc;
        return read_gamma(cfg, 0.1, &s->gamma, err);
    case KIND_CONSTANT_FACTOR:
        if ((rc = read_between(cfg, "factor", 1.0 / 3, 0, 1, &s->factor, err)))
            return rc;
        return cfg_int(cfg, "total_iters", 5, 0, GLR_MAX_COUNT, &s->total_iters, err);
    case KIND_EXPONENTIAL:
        return read_gamma(cfg, NAN, &s->gamma, err);
    case KIND_POLYNOMIAL:
        if ((rc = cfg_int(cfg, "total_iters", 5, 1, GLR_MAX_COUNT, &s->total_iters, err)))
            return rc;
        /* A negative power would end the schedule at an infinite rate. */
        return read_nonnegative(cfg, "power", 1.0, &s->power, err);
    case KIND_COSINE:
        if ((rc = require_count(cfg, "t_max", &s->t_max, err)) ||
            (rc = cfg_bool(cfg, "periodic", false, &s->periodic, err)))
            return rc;
        return read_nonnegative(cfg, "eta_min", 0.0, &s->eta_min, err);
    case KIND_COSINE_RESTARTS:
        if ((rc = require_count(cfg, "t_0", &s->t_0, err)) ||
            (rc = cfg_int(cfg, "t_mult", 1, 1, GLR_MAX_COUNT, &s->t_mult, err)))
            return rc;
        return read_nonnegative(cfg, "eta_min", 0.0, &s->eta_min, err);
    case KIND_LINEAR:
        if ((rc = require_count(cfg, "total_steps", &s->total_steps, err)) ||
            (rc = read_nonnegative(cfg, "start_factor", 1.0, &s->start_factor, err)) ||
            (rc = read_nonnegative(cfg, "end_factor", 0.0, &s->end_factor, err)))
            return rc;
        return GLR_OK;
    case KIND_ONECYCLE:
        return read_onecycle(s, sched, cfg, err);
    }
    return GLR_EINVAL;
}

static int schedule_create(struct glr_sched *sched, struct cfg *cfg, char *err, enum kind kind)
{
    struct schedule *s = calloc(1, sizeof(*s));
    if (!s)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    s->kind = kind;
    int rc = read_kind_config(s, sched, cfg, err);
    /* One-cycle has a warmup of its own: its first phase. */
    if (!rc && kind != KIND_ONECYCLE)
        rc = cfg_int(cfg, "warmup_steps", 0, 0, GLR_MAX_COUNT, &s->warmup_steps, err);
    if (rc) {
        schedule_free(s);
        return rc;
    }
    sched->priv = s;
    return GLR_OK;
}

#define SCHEDULE_CREATE(fn, kind)                                                                  \
    static int fn(struct glr_sched *sched, struct cfg *cfg, char *err)                             \
    {                                                                                              \
        return schedule_create(sched, cfg, err, kind);                                             \
    }

SCHEDULE_CREATE(create_constant, KIND_CONSTANT)
SCHEDULE_CREATE(create_step, KIND_STEP)
SCHEDULE_CREATE(create_multistep, KIND_MULTISTEP)
SCHEDULE_CREATE(create_constant_factor, KIND_CONSTANT_FACTOR)
SCHEDULE_CREATE(create_exponential, KIND_EXPONENTIAL)
SCHEDULE_CREATE(create_polynomial, KIND_POLYNOMIAL)
SCHEDULE_CREATE(create_cosine, KIND_COSINE)
SCHEDULE_CREATE(create_cosine_restarts, KIND_COSINE_RESTARTS)
SCHEDULE_CREATE(create_linear, KIND_LINEAR)
SCHEDULE_CREATE(create_onecycle, KIND_ONECYCLE)

static void schedule_destroy(struct glr_sched *sched)
{
    schedule_free(sched->priv);
}

/* How many milestones are <= t: Python's bisect_right, as MultiStepLR counts them. */
static int64_t milestones_passed(const struct schedule *s, int64_t t)
{
    size_t lo = 0, hi = s->milestone_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->milestones[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (int64_t)lo;
}

/*
 * CosineAnnealingWarmRestarts's position: t_cur steps into a cycle of t_i steps, each
 * cycle t_mult times longer than the one before. Its step() subtracts one cycle at a
 * time; this does the same in a loop that ends in a few dozen rounds (t_mult >= 2 doubles
 * the cycle each time). t_i leaves the integers only when the last cycle is longer than
 * any step number: its product is then rounded once, as Python's int to float is.
 */
static void restart_position(const struct schedule *s, int64_t t, double *t_cur, double *t_i)
{
    if (s->t_mult == 1) {
        *t_cur = (double)(t % s->t_0);
        *t_i = (double)s->t_0;
        return;
    }
    int64_t cur = t, len = s->t_0;
    while (cur >= len) {
        cur -= len;
        if (len > INT64_MAX / s->t_mult) {
            *t_cur = (double)cur;
            *t_i = (double)len * (double)s->t_mult;
            return;
        }
        len *= s->t_mult;
    }
    *t_cur = (double)cur;
    *t_i = (double)len;
}

/* OneCycleLR's value for a group whose peak is max_lr, term for term. */
static double onecycle_value(const struct schedule *s, double max_lr, int64_t t)
{
    double initial = max_lr / s->div_factor;
    double levels[3] = {[LEVEL_INITIAL] = initial,
                        [LEVEL_MAX] = max_lr,
                        [LEVEL_MIN] = initial / s->final_div_factor};
    /* Torch refuses to step past total_steps; the service holds the last value there. */
    double step = (double)(t < s->total_steps ? t : s->total_steps - 1);
    double start_step = 0;
    for (int i = 0; i < s->phase_count; i++) {
        const struct phase *p = &s->phases[i];
        if (step <= p->end_step || i == s->phase_count - 1) {
            double span = p->end_step - start_step;
            /* Torch divides by zero in an empty phase: it has reached its end. */
            double pct = span != 0 ? (step - start_step) / span : 1.0;
            double from = levels[p->from], to = levels[p->to];
            if (s->anneal_linear)
                return (to - from) * pct + from;
            double wave = cos(PI * pct) + 1;
            return to + (from - to) / 2.0 * wave;
        }
        start_step = p->end_step;
    }
    return levels[LEVEL_MIN]; /* not reached: the last phase always answers */
}

/* The cosine curve from lr0 down to eta_min, at the phase angle PI * progress. */
static double cosine_value(double lr0, double eta_min, double angle)
{
    double wave = 1 + cos(angle);
    double v = eta_min + (lr0 - eta_min) * wave / 2;
    /*
     * When lr0 and eta_min are a DBL_MAX apart, (lr0 - eta_min) * wave overflows,
     * although half of it cannot: halve first there, keeping the usual order elsewhere.
     */
    if (!isfinite(v))
        v = eta_min + (lr0 - eta_min) * (wave / 2);
    return v;
}

/*
 * The schedule's value at position t for group i. Each formula is the closed form of
 * torch's scheduler of the same name, in its order of operations, where the service's
 * README does not state otherwise.
 */
static double value_at(const struct schedule *s, const struct glr_sched *sched, size_t i, int64_t t)
{
    double lr0 = sched->init_lrs[i];
    double v = lr0;
    switch (s->kind) {
    case KIND_CONSTANT:
        break;
    case KIND_STEP:
        v = lr0 * pow(s->gamma, (double)(t / s->step_size));
        break;
    case KIND_MULTISTEP:
        v = lr0 * pow(s->gamma, (double)milestones_passed(s, t));
        break;
    case KIND_CONSTANT_FACTOR:
        v = lr0 * (s->factor + (t >= s->total_iters ? 1 - s->factor : 0.0));
        break;
    case KIND_EXPONENTIAL:
        v = lr0 * pow(s->gamma, (double)t);
        break;
    case KIND_POLYNOMIAL: {
        int64_t done = t < s->total_iters ? t : s->total_iters;
        v = lr0 * pow(1.0 - (double)done / (double)s->total_iters, s->power);
        break;
    }
    case KIND_COSINE:
        if (s->periodic) {
            v = cosine_value(lr0, s->eta_min, PI * (double)t / (double)s->t_max);
        } else {
            /* The service's first formula, kept for the jobs that use it: see the README. */
            double progress = (double)(t < s->t_max ? t : s->t_max) / (double)s->t_max;
            v = cosine_value(lr0, s->eta_min, PI * progress);
        }
        break;
    case KIND_COSINE_RESTARTS: {
        double t_cur, t_i;
        restart_position(s, t, &t_cur, &t_i);
        v = cosine_value(lr0, s->eta_min, PI * t_cur / t_i);
        break;
    }
    case KIND_LINEAR: {
        double progress =
            (double)(t < s->total_steps ? t : s->total_steps) / (double)s->total_steps;
        v = lr0 * (s->start_factor + (s->end_factor - s->start_factor) * progress);
        break;
    }
    case KIND_ONECYCLE:
        v = onecycle_value(s, s->max_lr[i], t);
        break;
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
        sched->lrs[i] = value_at(s, sched, i, t);
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

static bool onecycle_config_json(const struct schedule *s, const struct glr_sched *sched, cJSON *o)
{
    return jsonx_add_integer(o, "total_steps", s->total_steps) &&
           policy_json_add_group_values(o, "max_lr", s->max_lr, sched->groups,
                                        s->max_lr_is_array) &&
           jsonx_add_number(o, "pct_start", s->pct_start) &&
           cJSON_AddStringToObject(o, "anneal_strategy", s->anneal_linear ? "linear" : "cos") &&
           jsonx_add_number(o, "div_factor", s->div_factor) &&
           jsonx_add_number(o, "final_div_factor", s->final_div_factor) &&
           cJSON_AddBoolToObject(o, "three_phase", s->three_phase);
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
    case KIND_MULTISTEP:
        ok = policy_json_add_counts(o, "milestones", s->milestones, s->milestone_count) &&
             jsonx_add_number(o, "gamma", s->gamma);
        break;
    case KIND_CONSTANT_FACTOR:
        ok = jsonx_add_number(o, "factor", s->factor) &&
             jsonx_add_integer(o, "total_iters", s->total_iters);
        break;
    case KIND_EXPONENTIAL:
        ok = jsonx_add_number(o, "gamma", s->gamma);
        break;
    case KIND_POLYNOMIAL:
        ok = jsonx_add_integer(o, "total_iters", s->total_iters) &&
             jsonx_add_number(o, "power", s->power);
        break;
    case KIND_COSINE:
        ok = jsonx_add_integer(o, "t_max", s->t_max) && jsonx_add_number(o, "eta_min", s->eta_min);
        /*
         * Only a periodic job shows the key: the jobs made before it existed keep the
         * stored config they were created with, so that the same request still matches.
         */
        if (ok && s->periodic)
            ok = cJSON_AddTrueToObject(o, "periodic") != NULL;
        break;
    case KIND_COSINE_RESTARTS:
        ok = jsonx_add_integer(o, "t_0", s->t_0) && jsonx_add_integer(o, "t_mult", s->t_mult) &&
             jsonx_add_number(o, "eta_min", s->eta_min);
        break;
    case KIND_LINEAR:
        ok = jsonx_add_integer(o, "total_steps", s->total_steps) &&
             jsonx_add_number(o, "start_factor", s->start_factor) &&
             jsonx_add_number(o, "end_factor", s->end_factor);
        break;
    case KIND_ONECYCLE:
        return onecycle_config_json(s, sched, o);
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
const struct glr_policy glr_policy_multistep = SCHEDULE_POLICY("multistep", create_multistep);
const struct glr_policy glr_policy_constant_factor =
    SCHEDULE_POLICY("constant_factor", create_constant_factor);
const struct glr_policy glr_policy_polynomial = SCHEDULE_POLICY("polynomial", create_polynomial);
const struct glr_policy glr_policy_cosine_restarts =
    SCHEDULE_POLICY("cosine_restarts", create_cosine_restarts);
const struct glr_policy glr_policy_onecycle = SCHEDULE_POLICY("onecycle", create_onecycle);
