/*
 * Tuning (see tune.h): the grids, the Gaussian process over a grid, and the draw.
 */
#include "core/tune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "core/numeric.h"

/*
 * Length scales, on each setting's span taken as 1 (see struct tune_dim): neighbouring lr
 * factors correlate at 0.77, the ends of another setting's span at 0.8. Chosen on
 * tests/test_tune.c's objective: with one length for every setting (0.35), a run that
 * diverged at 4x the lr taught nothing about the other settings at 4x, and runs 7-12 of
 * a family diverged a quarter of the time; with these, 2 in 50.
 */
#define LR_LENGTH      0.35
#define SETTING_LENGTH 1.5

/*
 * The grids. The lr factor spans 16x, in doublings: the quality benchmark's too-high and
 * too-low starting rates are 5.6 and 10 times off. auto's other settings are those its
 * runs showed to decide the outcome: how hard a stall cuts (decrease_factor) and whether
 * it probes upwards at all (probe_until 0: never). greedylr's are its factor and patience.
 */
static const struct tune_space spaces[] = {
    {"auto",
     3,
     {{TUNE_LR_FACTOR, 5, {0.25, 0.5, 1, 2, 4}, 2, LR_LENGTH},
      {"decrease_factor", 3, {0.5, 0.7, 0.9}, 0, SETTING_LENGTH},
      {"probe_until", 2, {0, 0.5}, 1, SETTING_LENGTH}}},
    {"greedylr",
     3,
     {{TUNE_LR_FACTOR, 5, {0.25, 0.5, 1, 2, 4}, 2, LR_LENGTH},
      {"factor", 3, {0.8, 0.9, 0.95}, 2, SETTING_LENGTH},
      {"patience", 3, {2, 5, 10}, 2, SETTING_LENGTH}}},
};

/* The model's constants, on grid positions in [0, 1] and standardized outcomes. */
#define LENGTH_SCALE    0.35 /* neighbouring lr factors correlate at 0.77 */
#define NOISE_VARIANCE  0.1
#define DIVERGED_MARGIN 2.0 /* a diverged run: this many deviations above the worst finite */
#define Z90             1.6448536269514722

const struct tune_space *tune_space_find(const char *policy)
{
    for (size_t i = 0; i < sizeof(spaces) / sizeof(spaces[0]); i++)
        if (strcmp(spaces[i].policy, policy) == 0)
            return &spaces[i];
    return NULL;
}

const char *tune_policy_names(void)
{
    return "auto or greedylr";
}

size_t tune_space_size(const struct tune_space *space)
{
    size_t n = 1;
    for (size_t d = 0; d < space->ndims; d++)
        n *= space->dims[d].count;
    return n;
}

struct tune_point tune_defaults(const struct tune_space *space)
{
    struct tune_point p = {{0}};
    for (size_t d = 0; d < space->ndims; d++)
        p.at[d] = (uint8_t)space->dims[d].dflt;
    return p;
}

double tune_value(const struct tune_space *space, const struct tune_point *point, size_t d)
{
    return space->dims[d].values[point->at[d]];
}

int tune_dim_of(const struct tune_space *space, const char *key)
{
    for (size_t d = 0; d < space->ndims; d++)
        if (strcmp(space->dims[d].key, key) == 0)
            return (int)d;
    return -1;
}

bool tune_point_of(const struct tune_space *space, const double *values, struct tune_point *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t d = 0; d < space->ndims; d++) {
        const struct tune_dim *dim = &space->dims[d];
        size_t i = 0;
        while (i < dim->count && dim->values[i] != values[d])
            i++;
        if (i == dim->count)
            return false;
        out->at[d] = (uint8_t)i;
    }
    return true;
}

/* ---- the grid as points of [0, 1]^d ------------------------------------------------- */

/* The point numbered k of the grid (the first setting varies slowest). */
static struct tune_point point_number(const struct tune_space *space, size_t k)
{
    struct tune_point p = {{0}};
    for (size_t d = space->ndims; d-- > 0;) {
        p.at[d] = (uint8_t)(k % space->dims[d].count);
        k /= space->dims[d].count;
    }
    return p;
}

static size_t number_of(const struct tune_space *space, const struct tune_point *p)
{
    size_t k = 0;
    for (size_t d = 0; d < space->ndims; d++)
        k = k * space->dims[d].count + p->at[d];
    return k;
}

static double kernel(const struct tune_space *space, const struct tune_point *a,
                     const struct tune_point *b)
{
    double dist2 = 0;
    for (size_t d = 0; d < space->ndims; d++) {
        size_t span = space->dims[d].count - 1;
        if (span == 0)
            continue;
        double delta = ((double)a->at[d] - (double)b->at[d]) / (double)span / space->dims[d].length;
        dist2 += delta * delta;
    }
    return exp(-dist2 / 2);
}

/* ---- randomness ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* A uniform number in (0, 1). */
static double uniform(uint64_t *state)
{
    return ((double)(splitmix64(state) >> 11) + 0.5) / 9007199254740992.0;
}

/* A standard normal number (Box-Muller). */
static double normal(uint64_t *state)
{
    double u = uniform(state), v = uniform(state);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

/* ---- the posterior ------------------------------------------------------------------- */

/* The data the process is conditioned on: points and standardized values. */
struct data {
    size_t n;
    struct tune_point *x;
    double *y;
};

/*
 * The posterior mean (mean[m]) and, when cov is not NULL, covariance (cov[m*m]) of the
 * process at the m grid points, given data. Returns false when out of memory.
 */
static bool posterior(const struct tune_space *space, const struct data *data, size_t m,
                      double *mean, double *cov)
{
    size_t n = data->n;
    double *k = malloc((n * n + n + n * m + 1) * sizeof(double));
    if (!k)
        return false;
    double *alpha = k + n * n;
    double *v = alpha + n; /* n x m: L^-1 K(X, grid) */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++)
            k[i * n + j] = kernel(space, &data->x[i], &data->x[j]);
        k[i * n + i] += NOISE_VARIANCE;
        alpha[i] = data->y[i];
    }
    /* A covariance that is not positive definite gives independent draws (the identity). */
    if (n > 0 && numeric_cholesky(k, n) == GLR_ENOMEM) {
        free(k);
        return false;
    }
    if (n > 0) {
        numeric_solve_lower(k, n, alpha);
        numeric_solve_upper(k, n, alpha);
    }
    double *column = malloc((n + 1) * sizeof(double));
    if (!column) {
        free(k);
        return false;
    }
    for (size_t c = 0; c < m; c++) {
        struct tune_point p = point_number(space, c);
        double mu = 0;
        for (size_t i = 0; i < n; i++) {
            column[i] = kernel(space, &data->x[i], &p);
            mu += column[i] * alpha[i];
        }
        mean[c] = mu;
        if (n > 0)
            numeric_solve_lower(k, n, column);
        for (size_t i = 0; i < n; i++)
            v[i * m + c] = column[i];
    }
    free(column);
    if (cov) {
        for (size_t a = 0; a < m; a++) {
            struct tune_point pa = point_number(space, a);
            for (size_t b = 0; b <= a; b++) {
                struct tune_point pb = point_number(space, b);
                double c = kernel(space, &pa, &pb);
                for (size_t i = 0; i < n; i++)
                    c -= v[i * m + a] * v[i * m + b];
                cov[a * m + b] = cov[b * m + a] = c;
            }
        }
    }
    free(k);
    return true;
}

/* The scale of the outcomes of obs (at most TUNE_OBSERVATIONS_MAX). */
static struct numeric_scale tune_scale(const struct tune_observation *obs, size_t n)
{
    double outcomes[TUNE_OBSERVATIONS_MAX];
    for (size_t i = 0; i < n; i++)
        outcomes[i] = obs[i].outcome;
    return numeric_scale_fit(outcomes, n);
}

/* True when a and b are at most one step of the grid apart in every setting. */
static bool near(const struct tune_space *space, const struct tune_point *a,
                 const struct tune_point *b)
{
    for (size_t d = 0; d < space->ndims; d++)
        if (abs((int)a->at[d] - (int)b->at[d]) > 1)
            return false;
    return true;
}

static bool in_list(const struct tune_point *list, size_t n, const struct tune_point *p)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&list[i], p, sizeof(*p)) == 0)
            return true;
    return false;
}

int tune_choose(const struct tune_space *space, const struct tune_observation *obs, size_t nobs,
                const struct tune_point *pending, size_t npending, enum tune_mode mode,
                uint64_t seed, struct tune_choice *out, char *err)
{
    if (nobs > TUNE_OBSERVATIONS_MAX)
        nobs = TUNE_OBSERVATIONS_MAX;
    if (npending > TUNE_PENDING_MAX)
        npending = TUNE_PENDING_MAX;
    memset(out, 0, sizeof(*out));
    out->expected = out->low = out->high = NAN;
    out->from_jobs = nobs;
    out->pending = npending;
    for (size_t i = 0; i < nobs; i++) {
        if (isfinite(obs[i].outcome) && (!out->has_best || obs[i].outcome < out->best_outcome)) {
            out->has_best = true;
            out->best = obs[i].point;
            out->best_outcome = obs[i].outcome;
        }
    }
    struct tune_point defaults = tune_defaults(space);
    if (nobs == 0 && !in_list(pending, npending, &defaults)) {
        out->point = defaults;
        out->defaults = true;
        return GLR_OK;
    }
    out->defaults = nobs == 0;

    size_t m = tune_space_size(space);
    struct numeric_scale t = tune_scale(obs, nobs);
    struct data data = {0};
    double *mean = malloc(m * sizeof(double));
    double *cov = malloc(m * m * sizeof(double));
    data.x = malloc((nobs + npending + 1) * sizeof(*data.x));
    data.y = malloc((nobs + npending + 1) * sizeof(*data.y));
    bool ok = mean && cov && data.x && data.y;

    /* The finished jobs; a diverged one counts as clearly worse than the worst finite. */
    double worst = -INFINITY;
    for (size_t i = 0; ok && i < nobs; i++)
        if (isfinite(obs[i].outcome))
            worst = fmax(worst, numeric_scale_forward(&t, obs[i].outcome));
    if (!isfinite(worst))
        worst = 0;
    for (size_t i = 0; ok && i < nobs; i++) {
        data.x[data.n] = obs[i].point;
        data.y[data.n++] = isfinite(obs[i].outcome) ? numeric_scale_forward(&t, obs[i].outcome)
                                                    : worst + DIVERGED_MARGIN;
    }
    /* The running ones, seen at the mean the finished ones give them. */
    if (ok && npending > 0) {
        ok = posterior(space, &data, m, mean, NULL);
        for (size_t i = 0; ok && i < npending; i++) {
            data.x[data.n] = pending[i];
            data.y[data.n++] = mean[number_of(space, &pending[i])];
        }
    }
    ok = ok && posterior(space, &data, m, mean, cov);

    /* The spread of a run's outcome at each point: the model's, and a run's own noise. */
    double *spread = ok ? malloc(2 * m * sizeof(double)) : NULL;
    ok = spread != NULL;
    double *score = mean;
    if (ok) {
        for (size_t i = 0; i < m; i++)
            spread[i] = sqrt(fmax(cov[i * m + i], 0) + NOISE_VARIANCE);
    }
    if (ok && mode == TUNE_SAMPLE) {
        double *draw = spread + m;
        uint64_t state = seed;
        double z[TUNE_CANDIDATES_MAX];
        for (size_t i = 0; i < m; i++)
            z[i] = normal(&state);
        ok = numeric_cholesky(cov, m) != GLR_ENOMEM;
        for (size_t i = 0; ok && i < m; i++) {
            double s = mean[i];
            for (size_t k = 0; k <= i; k++)
                s += cov[i * m + k] * z[k];
            draw[i] = s;
        }
        score = draw;
    }
    if (ok) {
        /*
         * The lowest point near the best run so far (a step of the grid away in each
         * setting at most) that no running job has; failing that, the lowest free point
         * anywhere; failing that, any point.
         */
        size_t chosen = m;
        for (int pass = 0; pass < 3 && chosen == m; pass++) {
            for (size_t c = 0; c < m; c++) {
                struct tune_point p = point_number(space, c);
                if (pass < 2 && in_list(pending, npending, &p))
                    continue;
                if (pass == 0 && (!out->has_best || !near(space, &p, &out->best)))
                    continue;
                if (chosen == m || score[c] < score[chosen])
                    chosen = c;
            }
        }
        out->point = point_number(space, chosen);
        if (nobs > 0) {
            out->expected = numeric_scale_backward(&t, mean[chosen]);
            out->low = numeric_scale_backward(&t, mean[chosen] - Z90 * spread[chosen]);
            out->high = numeric_scale_backward(&t, mean[chosen] + Z90 * spread[chosen]);
        }
    }
    free(spread);
    free(mean);
    free(cov);
    free(data.x);
    free(data.y);
    return ok ? GLR_OK : glr_fail(err, GLR_ENOMEM, "out of memory");
}
