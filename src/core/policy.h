/*
 * Internals of the scheduling core, shared by glr.c and the policy files: the layout of a
 * scheduler and the table of operations each policy provides. Nothing outside the core
 * includes this header; the contract is glr.h.
 */
#ifndef GLR_POLICY_H
#define GLR_POLICY_H

#include <stdbool.h>

#include "core/cfg.h"
#include "core/glr.h"

struct glr_sched {
    const struct glr_policy *policy;
    void *priv; /* the policy's own parameters and state, owned by the scheduler */
    size_t groups;
    bool lr_is_array; /* the initial lr was given as an array: answer in the same shape */
    /*
     * From the policy's flags below; a policy made of others (sequence) sets them in its
     * create() from its parts.
     */
    bool reads_metric;
    bool takes_lr_cap;
    double *lrs;      /* current learning rates: points into storage[] */
    double *init_lrs; /* initial learning rates: points into storage[] */
    double storage[]; /* 2 * groups doubles */
};

/*
 * One policy. Every function receives a scheduler whose groups, lrs and init_lrs are set.
 * Functions that build JSON add keys to an object the caller owns and return false when
 * out of memory.
 */
struct glr_policy {
    const char *name;
    /* The policy takes a report's lr_cap into account (the others refuse one). */
    bool takes_lr_cap;
    /* The policy's rates do not depend on the metric (time-based ones): it is only kept. */
    bool ignores_metric;
    /* Reads the config (cfg_finish() is the caller's) and allocates sched->priv. */
    int (*create)(struct glr_sched *sched, struct cfg *cfg, char *err);
    void (*destroy)(struct glr_sched *sched);
    /* Sets the state right after creation; sched->lrs already equals init_lrs. */
    void (*reset)(struct glr_sched *sched);
    /*
     * One step; the caller has checked the step number. lr_cap is the client's upper bound
     * on the rates, +inf when none (only policies with takes_lr_cap get another). Must not
     * allocate.
     */
    void (*step)(struct glr_sched *sched, int64_t step, double metric, double lr_cap,
                 struct glr_step_result *result);
    bool (*config_json)(const struct glr_sched *sched, cJSON *object);
    bool (*counters_json)(const struct glr_sched *sched, cJSON *object);
    bool (*state_save)(const struct glr_sched *sched, cJSON *object);
    /* Checks the whole tree first; changes sched->priv only on success. */
    int (*state_load)(struct glr_sched *sched, const cJSON *object, char *err);
};

extern const struct glr_policy glr_policy_greedylr;
extern const struct glr_policy glr_policy_plateau;
extern const struct glr_policy glr_policy_constant;
extern const struct glr_policy glr_policy_step;
extern const struct glr_policy glr_policy_exponential;
extern const struct glr_policy glr_policy_cosine;
extern const struct glr_policy glr_policy_linear;
extern const struct glr_policy glr_policy_auto;
extern const struct glr_policy glr_policy_multistep;
extern const struct glr_policy glr_policy_constant_factor;
extern const struct glr_policy glr_policy_polynomial;
extern const struct glr_policy glr_policy_cosine_restarts;
extern const struct glr_policy glr_policy_onecycle;
extern const struct glr_policy glr_policy_sequence;
extern const struct glr_policy glr_policy_learned;

/* The policy of that name, or NULL. */
const struct glr_policy *policy_find(const char *name);

/* Fails with GLR_EINVAL and a message naming the unknown policy and the known ones. */
int policy_unknown(const char *name, char *err);

/*
 * glr_sched_create() for a policy already found and rates already read (groups of them,
 * each finite and > 0): what a policy made of others uses to make its parts.
 */
int policy_sched_create(const struct glr_policy *policy, const double *lrs, size_t groups,
                        bool is_array, const cJSON *config, struct glr_sched **out, char *err);

/*
 * How greedylr and plateau judge a metric: lower or higher is better, by more than an
 * absolute or a relative threshold.
 */
struct judge {
    bool maximize;
    bool relative;
    double threshold;
};

/* The best value before any step: +inf when minimizing, -inf when maximizing. */
double policy_judge_initial_best(const struct judge *judge);

/* True when metric improves on best; a non-finite metric never does. */
bool policy_judge_is_better(const struct judge *judge, double best, double metric);

/*
 * Multiplies each group's lr by factor, not below its min_lr, and applies the change only
 * when it is larger than eps.
 */
void policy_lrs_reduce(double *lrs, size_t groups, double factor, const double *min_lr, double eps);

/*
 * Helpers for state_load: read a named field of a saved state, failing with
 * GLR_ECORRUPT and a message naming the field.
 */
int policy_state_get_double(const cJSON *state, const char *key, double *out, char *err);
int policy_state_get_count(const cJSON *state, const char *key, int64_t max, int64_t *out,
                           char *err);

/*
 * Reads a finite number of a saved state that exists only once the value named marker
 * does (a smoothed loss, before the first loss: null): a number when present, null when
 * not; *out is 0 then. Fails with GLR_ECORRUPT naming key.
 */
int policy_state_get_optional(const cJSON *state, const char *key, bool present, const char *marker,
                              double *out, char *err);

/* Adds an array of n doubles to object under key; false when out of memory. */
bool policy_json_add_doubles(cJSON *object, const char *key, const double *values, size_t n);

/* Adds an array of n integers to object under key; false when out of memory. */
bool policy_json_add_counts(cJSON *object, const char *key, const int64_t *values, size_t n);

/* Adds values[0] when !as_array, else the whole array of n doubles. */
bool policy_json_add_group_values(cJSON *object, const char *key, const double *values, size_t n,
                                  bool as_array);

#endif
