/*
 * Learning a schedule from histories (see learn.h): the trend feature, the model's level,
 * the reward-weighted fit, and the model as JSON.
 */
#include "core/learn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "base/status.h"
#include "core/numeric.h"

/*
 * The spans of the trend's moving averages, as fractions of the horizon, and their least
 * spans in reports: the fast one follows the last few percent of the run, the slow one
 * its last tenth.
 */
#define TREND_FAST_FRACTION 0.02
#define TREND_SLOW_FRACTION 0.10
#define TREND_FAST_MIN      1.0
#define TREND_SLOW_MIN      3.0

/*
 * The temperature of the reward weights, in standard deviations of the runs' rewards: a
 * run one deviation worse than the best weighs e^-2 of it. Lower follows the best run
 * alone (and its seed's luck); higher averages good and bad runs alike.
 */
#define TEMPERATURE 0.5

/*
 * Ridge penalties, relative to the total weight of the points: on the level curve's
 * second differences (its bends), and on the trend's gain (in standard deviations of the
 * trend), so that a gain is learned only where the runs show one.
 */
#define SMOOTHNESS  0.01
#define TREND_RIDGE 0.1

static double span_alpha(double span)
{
    return 2.0 / (span + 1.0);
}

void learn_trend_init(struct learn_trend *trend, int64_t horizon)
{
    double h = horizon > 0 ? (double)horizon : 0;
    memset(trend, 0, sizeof(*trend));
    trend->fast_alpha = span_alpha(fmax(TREND_FAST_MIN, TREND_FAST_FRACTION * h));
    trend->slow_alpha = span_alpha(fmax(TREND_SLOW_MIN, TREND_SLOW_FRACTION * h));
}

void learn_trend_add(struct learn_trend *trend, double loss)
{
    if (!isfinite(loss))
        return;
    if (!trend->have) {
        trend->fast = trend->slow = loss;
        trend->have = true;
        return;
    }
    double fast = trend->fast + trend->fast_alpha * (loss - trend->fast);
    double slow = trend->slow + trend->slow_alpha * (loss - trend->slow);
    /* Losses near the largest doubles may overflow an average: such a loss is skipped. */
    if (isfinite(fast) && isfinite(slow)) {
        trend->fast = fast;
        trend->slow = slow;
    }
}

double learn_trend_value(const struct learn_trend *trend)
{
    if (!trend->have || trend->slow == 0)
        return 0;
    double v = (trend->slow - trend->fast) / fabs(trend->slow);
    /*
     * A loss near 0, or one that changes sign, makes the gap's ratio huge: past a change of
     * the whole loss it says nothing more, and it would swamp the runs' other trends.
     */
    return isfinite(v) ? fmin(fmax(v, -LEARN_TREND_MAX), LEARN_TREND_MAX) : 0;
}

double learn_level_of(double factor)
{
    return log(fmin(fmax(factor, LEARN_LEVEL_FLOOR), LEARN_LEVEL_CEILING));
}

/* The weights of the knots at progress p: the hat functions, two of them non-zero. */
static void hats(size_t knots, double p, size_t *left, double *w_right)
{
    double x = fmin(fmax(p, 0.0), 1.0) * (double)(knots - 1);
    size_t i = (size_t)floor(x);
    if (i >= knots - 1)
        i = knots - 2;
    *left = i;
    *w_right = x - (double)i;
}

double learn_level(const struct learn_model *model, double progress, double trend)
{
    size_t i;
    double w;
    hats(model->knots, progress, &i, &w);
    double level = (1 - w) * model->levels[i] + w * model->levels[i + 1];
    double effect = model->trend_gain * (trend - model->trend_center);
    level += fmin(fmax(effect, -LEARN_TREND_EFFECT_MAX), LEARN_TREND_EFFECT_MAX);
    return fmin(fmax(level, model->level_min), model->level_max);
}

/* ---- the fit ------------------------------------------------------------------------- */

/* A run counts when it did not diverge and has enough points. */
static bool run_counts(const struct learn_run *run)
{
    return isfinite(run->outcome) && run->npoints >= LEARN_POINTS_MIN;
}

/*
 * The runs' weights: exp((reward - best reward) / temperature), the reward being minus
 * the standardized outcome. Returns the weight of each run (0 for those that do not count).
 */
static void run_weights(const struct learn_run *runs, size_t nruns, double *weights)
{
    double outcomes[LEARN_RUNS_MAX];
    size_t n = 0;
    for (size_t i = 0; i < nruns; i++)
        if (run_counts(&runs[i]))
            outcomes[n++] = runs[i].outcome;
    struct numeric_scale s = numeric_scale_fit(outcomes, n);
    double best = INFINITY;
    for (size_t i = 0; i < nruns; i++)
        if (run_counts(&runs[i]))
            best = fmin(best, numeric_scale_forward(&s, runs[i].outcome));
    for (size_t i = 0; i < nruns; i++)
        weights[i] = run_counts(&runs[i])
                         ? exp(-(numeric_scale_forward(&s, runs[i].outcome) - best) / TEMPERATURE)
                         : 0;
}

int learn_fit(const struct learn_run *runs, size_t nruns, int64_t horizon, struct learn_model *out,
              struct learn_fit_info *info, char *err)
{
    memset(out, 0, sizeof(*out));
    memset(info, 0, sizeof(*info));
    if (nruns > LEARN_RUNS_MAX)
        nruns = LEARN_RUNS_MAX;
    info->best_outcome = INFINITY;
    for (size_t i = 0; i < nruns; i++) {
        if (run_counts(&runs[i])) {
            info->runs++;
            info->best_outcome = fmin(info->best_outcome, runs[i].outcome);
        }
    }
    if (info->runs < LEARN_RUNS_MIN)
        return glr_fail(err, GLR_EINVAL,
                        "%zu finished run%s with a finite outcome and at least %d reports; "
                        "learning needs %d",
                        info->runs, info->runs == 1 ? "" : "s", LEARN_POINTS_MIN, LEARN_RUNS_MIN);

    double weights[LEARN_RUNS_MAX];
    run_weights(runs, nruns, weights);
    double sum_w = 0, sum_w2 = 0;
    for (size_t i = 0; i < nruns; i++) {
        sum_w += weights[i];
        sum_w2 += weights[i] * weights[i];
    }
    info->effective_runs = sum_w * sum_w / sum_w2;

    /*
     * Each point weighs its run's weight over its run's points, so that a run reported per
     * step counts as much as one reported per epoch. The trend is standardized by its
     * weighted mean and deviation, and the range of the levels is that of the runs that
     * weigh.
     */
    double total = 0, mean_t = 0, var_t = 0;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < nruns; i++) {
        if (weights[i] == 0)
            continue;
        double c = weights[i] / (double)runs[i].npoints;
        for (size_t j = 0; j < runs[i].npoints; j++) {
            const struct learn_point *pt = &runs[i].points[j];
            total += c;
            mean_t += c * pt->trend;
            lo = fmin(lo, pt->level);
            hi = fmax(hi, pt->level);
        }
    }
    mean_t /= total;
    for (size_t i = 0; i < nruns; i++) {
        double c = weights[i] == 0 ? 0 : weights[i] / (double)runs[i].npoints;
        for (size_t j = 0; c > 0 && j < runs[i].npoints; j++) {
            double d = runs[i].points[j].trend - mean_t;
            var_t += c * d * d;
        }
    }
    double sd_t = sqrt(var_t / total);
    bool use_trend = sd_t > 1e-12;

    /* The normal equations of the knots' levels and the trend's gain (standardized). */
    size_t k = LEARN_KNOTS, n = k + 1;
    double *a = calloc(n * n, sizeof(double));
    double *b = calloc(n, sizeof(double));
    if (!a || !b) {
        free(a);
        free(b);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < nruns; i++) {
        double c = weights[i] == 0 ? 0 : weights[i] / (double)runs[i].npoints;
        for (size_t j = 0; c > 0 && j < runs[i].npoints; j++) {
            const struct learn_point *pt = &runs[i].points[j];
            size_t left;
            double wr;
            hats(k, pt->progress, &left, &wr);
            size_t idx[3] = {left, left + 1, k};
            double x[3] = {1 - wr, wr, use_trend ? (pt->trend - mean_t) / sd_t : 0};
            for (size_t r = 0; r < 3; r++) {
                b[idx[r]] += c * x[r] * pt->level;
                for (size_t s = 0; s < 3; s++)
                    a[idx[r] * n + idx[s]] += c * x[r] * x[s];
            }
        }
    }
    /* The bends: (l[j-1] - 2 l[j] + l[j+1])^2, whose gradient couples three knots. */
    static const double bend[3] = {1, -2, 1};
    for (size_t j = 1; j + 1 < k; j++)
        for (size_t r = 0; r < 3; r++)
            for (size_t s = 0; s < 3; s++)
                a[(j - 1 + r) * n + (j - 1 + s)] += SMOOTHNESS * total * bend[r] * bend[s];
    a[k * n + k] += TREND_RIDGE * total;
    /* A knot no point reaches keeps its neighbours' level through the bends; this keeps it defined.
     */
    for (size_t j = 0; j < k; j++)
        a[j * n + j] += 1e-9 * total;
    int rc = numeric_cholesky(a, n);
    bool ok = rc == GLR_OK;
    if (ok) {
        numeric_solve_lower(a, n, b);
        numeric_solve_upper(a, n, b);
    }
    if (ok) {
        out->knots = k;
        for (size_t j = 0; j < k; j++)
            out->levels[j] = b[j];
        out->trend_gain = use_trend ? b[k] / sd_t : 0;
        out->trend_center = mean_t;
        out->level_min = lo;
        out->level_max = hi;
        out->horizon = horizon;
        for (size_t j = 0; j < k; j++)
            ok = ok && isfinite(out->levels[j]);
        ok = ok && isfinite(out->trend_gain);
    }
    free(a);
    free(b);
    if (rc == GLR_ENOMEM)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    if (!ok)
        return glr_fail(err, GLR_EINVAL, "the fit did not converge to finite levels");
    return GLR_OK;
}

/* ---- the model as JSON ---------------------------------------------------------------- */

bool learn_model_json(const struct learn_model *model, cJSON *object)
{
    cJSON *levels = cJSON_AddArrayToObject(object, "levels");
    for (size_t i = 0; levels && i < model->knots; i++)
        if (!cJSON_AddItemToArray(levels, jsonx_number(model->levels[i])))
            return false;
    return levels && jsonx_add_number(object, "trend_gain", model->trend_gain) &&
           jsonx_add_number(object, "trend_center", model->trend_center) &&
           jsonx_add_number(object, "level_min", model->level_min) &&
           jsonx_add_number(object, "level_max", model->level_max) &&
           jsonx_add_integer(object, "horizon", model->horizon);
}

static int read_number(const cJSON *object, const char *what, const char *key, double *out,
                       char *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!jsonx_get_double(item, out) || !isfinite(*out))
        return glr_fail(err, GLR_EINVAL, "%s: %s must be a finite number", what, key);
    return GLR_OK;
}

int learn_model_read(const cJSON *object, const char *what, struct learn_model *out, char *err)
{
    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(object))
        return glr_fail(err, GLR_EINVAL, "%s must be an object", what);
    for (const cJSON *item = object->child; item; item = item->next) {
        static const char *const keys[] = {
            "levels", "trend_gain", "trend_center", "level_min", "level_max", "horizon", NULL};
        bool known = false;
        for (size_t i = 0; !known && keys[i]; i++)
            known = strcmp(item->string, keys[i]) == 0;
        if (!known)
            return glr_fail(err, GLR_EINVAL, "%s: unknown key %s", what, item->string);
    }
    const cJSON *levels = cJSON_GetObjectItemCaseSensitive(object, "levels");
    int count = cJSON_GetArraySize(levels);
    if (!cJSON_IsArray(levels) || count < 2 || count > LEARN_KNOTS_MAX)
        return glr_fail(err, GLR_EINVAL, "%s: levels must be an array of 2 to %d numbers", what,
                        LEARN_KNOTS_MAX);
    size_t i = 0;
    for (const cJSON *item = levels->child; item; item = item->next, i++)
        if (!jsonx_get_double(item, &out->levels[i]) || !isfinite(out->levels[i]))
            return glr_fail(err, GLR_EINVAL, "%s: levels[%zu] must be a finite number", what, i);
    out->knots = (size_t)count;
    int rc;
    if ((rc = read_number(object, what, "trend_gain", &out->trend_gain, err)) ||
        (rc = read_number(object, what, "trend_center", &out->trend_center, err)) ||
        (rc = read_number(object, what, "level_min", &out->level_min, err)) ||
        (rc = read_number(object, what, "level_max", &out->level_max, err)))
        return rc;
    if (!(out->level_min <= out->level_max))
        return glr_fail(err, GLR_EINVAL, "%s: level_min must be at most level_max", what);
    /* exp() of a level must be a finite, positive factor of the lr. */
    if (out->level_min < log(LEARN_LEVEL_FLOOR) || out->level_max > log(LEARN_LEVEL_CEILING))
        return glr_fail(err, GLR_EINVAL, "%s: the levels must lie in [log(%g), log(%g)]", what,
                        LEARN_LEVEL_FLOOR, LEARN_LEVEL_CEILING);
    double horizon;
    if ((rc = read_number(object, what, "horizon", &horizon, err)))
        return rc;
    if (!(horizon >= 1 && horizon <= 1e9 && horizon == floor(horizon)))
        return glr_fail(err, GLR_EINVAL, "%s: horizon must be an integer in [1, 1000000000]", what);
    out->horizon = (int64_t)horizon;
    return GLR_OK;
}
