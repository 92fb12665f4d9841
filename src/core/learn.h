/*
 * Learning a schedule from a family's histories: the model behind the "learned" policy,
 * how it is fitted, and the features it reads.
 *
 * The formulation is the one of learning to schedule by reinforcement: a state (the
 * progress through the horizon, the lr relative to its start, and the trend of the
 * recent loss curve), an action (the next lr multiplier) and a reward (the fall of the
 * loss, which summed over a run is its outcome). A run's actions are those its policy
 * took; the model is fitted offline from the runs the store holds by reward-weighted
 * regression (Peters and Schaal, 2007): the lr level of each state of each run, weighted
 * by exp((reward of the run - best reward) / temperature), is regressed on the state's
 * features, so the fit follows what the runs that ended best did, and follows it more
 * closely the more they stand out. The action in a state is then the multiplier that
 * takes the lr to the level the model gives for it.
 *
 * The model: the level (log of the lr over the job's initial lr) at the progress p is a
 * piecewise-linear curve through LEARN_KNOTS evenly spaced knots, plus trend_gain times
 * the trend's distance from the runs' mean trend (a term of at most LEARN_TREND_EFFECT_MAX
 * either way), clamped to the levels the training runs used (never extrapolated past them).
 *
 * Pure like the rest of the core: no I/O, no clock. learn_fit() allocates its matrices
 * and frees them before it returns; the policy's step reads a model and never allocates.
 */
#ifndef GLR_LEARN_H
#define GLR_LEARN_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Knots of the level curve a fit makes. */
#define LEARN_KNOTS 16
/* Most knots a model read from a config may have: the size limit of a model. */
#define LEARN_KNOTS_MAX 32
/* Fewest finished runs with a finite outcome a fit needs. */
#define LEARN_RUNS_MIN 3
/* Most runs one fit reads (the caller keeps the newest). */
#define LEARN_RUNS_MAX 64
/*
 * Most points of one run's history a fit keeps (a longer history is sampled evenly),
 * besides the point of its creation.
 */
#define LEARN_POINTS_MAX 2048
/* Fewest points a run needs to count. */
#define LEARN_POINTS_MIN 4
/*
 * The lowest factor of the initial lr a history's lr is read as (lrs annealed to 0 are
 * read as this), and the lowest a learned job answers.
 */
#define LEARN_LEVEL_FLOOR 1e-3
/* The highest factor of the initial lr a history's lr is read as, and a model may give. */
#define LEARN_LEVEL_CEILING 1e6

/* The most the trend moves a level: a factor of 2 of the lr either way. */
#define LEARN_TREND_EFFECT_MAX 0.6931471805599453

/* A learned model: what a "learned" job's config carries, and what the store versions. */
struct learn_model {
    size_t knots;
    double levels[LEARN_KNOTS_MAX]; /* the level at progress i / (knots - 1) */
    double trend_gain;              /* the level's change per unit of trend */
    double trend_center;            /* the training runs' mean trend */
    double level_min, level_max;    /* the range of the levels the training runs used */
    int64_t horizon;                /* the training runs' median horizon, in reports */
};

/*
 * The trend of a loss curve: the relative gap between a slow and a fast moving average,
 * positive while the loss falls. Their spans are fractions of the horizon, so that one
 * model fits a report per epoch and a report per step alike.
 */
struct learn_trend {
    double fast_alpha, slow_alpha;
    bool have;
    double fast, slow;
};

/* A trend for a run of horizon reports; its averages start at the first finite loss. */
void learn_trend_init(struct learn_trend *trend, int64_t horizon);

/* Takes one report's loss; a loss that is not finite is skipped. */
void learn_trend_add(struct learn_trend *trend, double loss);

/* The largest trend, either way: a gap of the whole loss between the two averages. */
#define LEARN_TREND_MAX 1.0

/* The trend now: (slow - fast) / |slow| within +-LEARN_TREND_MAX, 0 before a loss and when slow is
 * 0. */
double learn_trend_value(const struct learn_trend *trend);

/* The level of an lr that is factor times the initial one, within the floor and ceiling. */
double learn_level_of(double factor);

/* The model's level at progress (clamped to [0, 1]) and trend. */
double learn_level(const struct learn_model *model, double progress, double trend);

/* One state of a training run: its features and the level its policy answered there. */
struct learn_point {
    double progress;
    double trend;
    double level; /* log(lr / the run's initial lr), floored at log(LEARN_LEVEL_FLOOR) */
};

/* A training run: its points and its outcome (lower is better; not finite: diverged). */
struct learn_run {
    const struct learn_point *points;
    size_t npoints;
    double outcome;
};

/* What a fit read, for the model's record. */
struct learn_fit_info {
    size_t runs;           /* runs that counted: a finite outcome and LEARN_POINTS_MIN points */
    double effective_runs; /* (sum w)^2 / sum w^2 of their weights: how many the fit follows */
    double best_outcome;
};

/*
 * Fits a model to nruns runs (at most LEARN_RUNS_MAX are read, the first ones) whose
 * median horizon is horizon. Runs that diverged or have fewer than LEARN_POINTS_MIN points
 * are left out. Returns GLR_OK, GLR_EINVAL (fewer than LEARN_RUNS_MIN runs count; err
 * says how many did) or GLR_ENOMEM.
 */
int learn_fit(const struct learn_run *runs, size_t nruns, int64_t horizon, struct learn_model *out,
              struct learn_fit_info *info, char *err);

/* Adds the model's fields to object; false when out of memory. */
bool learn_model_json(const struct learn_model *model, cJSON *object);

/*
 * Reads a model from an object learn_model_json() made. Returns GLR_OK or GLR_EINVAL with
 * a message naming the field at fault (prefixed by what, e.g. "config key model").
 */
int learn_model_read(const cJSON *object, const char *what, struct learn_model *out, char *err);

#endif
