/*
 * Tuning: the settings of a policy chosen for a new job from the outcomes of the finished
 * jobs of its family, by Thompson sampling over a small grid.
 *
 * Each tunable policy has a grid of a few settings (tune_space_find()), among them
 * TUNE_LR_FACTOR, the factor of the job's lr. The outcomes seen (lower is better) are
 * modelled as a Gaussian process over the grid: log outcomes when all are positive,
 * standardized, with a squared-exponential kernel over the grid's positions and a noise
 * term, so that runs at one setting with other seeds average out. A choice draws one
 * sample of the whole grid from the posterior and takes its lowest point within one step
 * of the grid of the best run so far (a trust region): a setting is tried as often as it
 * is likely to be the best among those, which balances trying new settings with using the
 * best so far, and the search moves step by step rather than across the grid at once. Jobs of the
 * family still running are pending: their settings are not chosen again while others are free, and
 * they count as seen at the posterior mean (so their neighbourhood is less uncertain), which
 * spreads a sweep started at once.
 *
 * Pure like the rest of the core: no I/O, no clock; the caller gives the seed. A choice
 * allocates its matrices and frees them before it returns.
 */
#ifndef GLR_TUNE_H
#define GLR_TUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most settings one policy's grid varies. */
#define TUNE_DIMS_MAX 4
/* Most values of one setting. */
#define TUNE_VALUES_MAX 8
/* Most points of a grid (the posterior of every point is sampled together). */
#define TUNE_CANDIDATES_MAX 128
/* Most finished jobs one choice reads (the newest); older ones are left out. */
#define TUNE_OBSERVATIONS_MAX 256
/* Most running jobs one choice avoids. */
#define TUNE_PENDING_MAX 64
/* The setting that is the factor of the job's lr rather than a key of the policy. */
#define TUNE_LR_FACTOR "lr_factor"

struct tune_dim {
    const char *key; /* a config key of the policy, or TUNE_LR_FACTOR */
    size_t count;
    double values[TUNE_VALUES_MAX]; /* increasing; evenly spaced in the model */
    size_t dflt;                    /* the index of the policy's default */
    /*
     * How far apart (the setting's whole span being 1) two values may be and still end
     * alike: short for the lr factor, on which the outcome turns; long for the others,
     * so that what one run shows of them is shared with its neighbours.
     */
    double length;
};

struct tune_space {
    const char *policy;
    size_t ndims;
    struct tune_dim dims[TUNE_DIMS_MAX];
};

/* A point of a grid: one index per setting. */
struct tune_point {
    uint8_t at[TUNE_DIMS_MAX];
};

/* A finished job: its point and its outcome (+inf: it diverged). */
struct tune_observation {
    struct tune_point point;
    double outcome;
};

/* The grid of policy, or NULL when the policy is not tuned. */
const struct tune_space *tune_space_find(const char *policy);

/* The policies that have a grid, as text for messages: "auto or greedylr". */
const char *tune_policy_names(void);

/* The number of points of the grid. */
size_t tune_space_size(const struct tune_space *space);

/* The point of the policy's defaults (lr factor 1). */
struct tune_point tune_defaults(const struct tune_space *space);

/* The value of setting d at point. */
double tune_value(const struct tune_space *space, const struct tune_point *point, size_t d);

/* The index of setting key in the grid, or -1 when the grid does not vary it. */
int tune_dim_of(const struct tune_space *space, const char *key);

/*
 * The point whose settings are values (one per setting, in the grid's order); false when
 * one of them is not a value of the grid.
 */
bool tune_point_of(const struct tune_space *space, const double *values, struct tune_point *out);

enum tune_mode {
    TUNE_SAMPLE, /* a new job's settings: a draw from the posterior */
    TUNE_MEAN,   /* a preview: the lowest expected outcome (in the same region), no draw */
};

struct tune_choice {
    struct tune_point point;
    bool defaults;    /* no finished job yet: the policy's defaults (or a draw, when taken) */
    double expected;  /* the outcome expected at point; NaN without a finished job */
    double low, high; /* where 90% of the outcomes of a run there are expected; NaN: none */
    size_t from_jobs; /* finished jobs read */
    size_t pending;   /* running jobs avoided */
    bool has_best;    /* a finished job ended with a finite outcome */
    struct tune_point best;
    double best_outcome;
};

/*
 * Chooses a point of space from nobs finished jobs and npending running ones (at most
 * TUNE_OBSERVATIONS_MAX and TUNE_PENDING_MAX; more are ignored, the first ones). Without
 * a finished job the defaults are chosen, unless a running job has them: then a draw
 * from the prior among the free points. The same arguments and seed give the same
 * choice. Returns GLR_OK, or GLR_ENOMEM.
 */
int tune_choose(const struct tune_space *space, const struct tune_observation *obs, size_t nobs,
                const struct tune_point *pending, size_t npending, enum tune_mode mode,
                uint64_t seed, struct tune_choice *out, char *err);

#endif
