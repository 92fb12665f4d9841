/*
 * The scheduling core of greedylr: learning-rate policies that take one training metric
 * per step and answer the next learning rate of every parameter group.
 *
 * The core is pure: it does no I/O, reads no clock, and glr_sched_step() never allocates.
 * Configuration and state cross its boundary as cJSON trees so that the HTTP layer and
 * the store can carry them without knowing any policy.
 *
 * Policies: "greedylr" (the default), "plateau" (PyTorch's ReduceLROnPlateau), "auto"
 * (this project's: relative settings, a horizon, a stability cap), the time-based
 * "constant", "step", "multistep", "constant_factor", "exponential", "polynomial",
 * "cosine", "cosine_restarts", "linear" and "onecycle" (PyTorch's schedulers of those
 * names), "sequence", which chains others at milestones (PyTorch's SequentialLR), and
 * "learned", which runs a model learned from a family's histories (core/learn.h).
 */
#ifndef GLR_GLR_H
#define GLR_GLR_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

/* Most parameter groups one scheduler drives (length of an lr array). */
#define GLR_MAX_GROUPS 64
/* Largest smoothing window (greedylr window_size); the window is allocated at creation. */
#define GLR_MAX_WINDOW 100000
/* Largest value of an integer setting (patience, cooldown, warmup, reset_start, steps). */
#define GLR_MAX_COUNT 1000000000
/* Most milestones of a multistep schedule. */
#define GLR_MAX_MILESTONES 1000
/* Most schedules one sequence chains. */
#define GLR_MAX_PHASES 16
/* Largest step number a time-based policy accepts. */
#define GLR_MAX_STEP INT64_C(1000000000000000)

/* What a step did to the learning rates. */
enum glr_event {
    GLR_EVENT_HOLD,     /* nothing changed */
    GLR_EVENT_INCREASE, /* the policy raised the learning rate (or tried to, at max_lr) */
    GLR_EVENT_DECREASE, /* the policy lowered the learning rate (or tried to, at min_lr) */
    GLR_EVENT_RESET,    /* greedylr sat at the floor too long and went back to the start */
    GLR_EVENT_COOLDOWN, /* the step fell in a cooldown period and was not judged */
    GLR_EVENT_WARMUP,   /* the step fell in a warmup period and was not judged */
    GLR_EVENT_DIVERGED, /* auto: the loss was not finite or far above its best: lr cut at once */
    GLR_EVENT_CAPPED,   /* auto: the lr was held at the report's lr_cap */
    GLR_EVENT_ANNEAL,   /* auto: the lr fell with the annealing toward the declared horizon */
};
#define GLR_EVENT_COUNT 9

/* Returns the event's name ("hold", "increase", ...). */
const char *glr_event_name(enum glr_event event);

/* Sets *event from its name; returns GLR_OK or GLR_EINVAL for an unknown name. */
int glr_event_parse(const char *name, enum glr_event *event);

/* What one step decided. */
struct glr_step_result {
    enum glr_event event;
    double metric; /* the value the policy judged: the smoothed mean when smoothing is on */
};

/* A scheduler: one policy with its configuration and state. Opaque. */
struct glr_sched;

/*
 * Creates a scheduler.
 *   policy  the policy's name; NULL means "greedylr".
 *   lr      the initial learning rate: a positive finite number, or an array of 1 to
 *           GLR_MAX_GROUPS of them (one per parameter group). Borrowed.
 *   config  an object with the policy's settings, or NULL for all defaults. Borrowed.
 *           Every unknown key is an error.
 *   out     receives the scheduler, owned by the caller (glr_sched_free()).
 *   err     GLR_ERR_MAX bytes or NULL; on failure, a message that names the key at fault.
 * Returns GLR_OK, GLR_EINVAL for a bad policy, lr or config, or GLR_ENOMEM.
 */
int glr_sched_create(const char *policy, const cJSON *lr, const cJSON *config,
                     struct glr_sched **out, char *err);

/*
 * Reads an lr as glr_sched_create() takes it (a positive finite number, or an array of 1
 * to GLR_MAX_GROUPS of them) into values, and says how many groups it has and whether it
 * was an array. Returns GLR_OK or GLR_EINVAL.
 */
int glr_lr_parse(const cJSON *lr, double values[GLR_MAX_GROUPS], size_t *groups, bool *is_array,
                 char *err);

/* Frees a scheduler; NULL is accepted. */
void glr_sched_free(struct glr_sched *sched);

/*
 * Takes one step: the training step numbered `step` ended with `metric`. A non-finite
 * metric (a diverged step) counts as "not better" and never enters the smoothing window.
 * Time-based policies use only `step` (0 to GLR_MAX_STEP): the learning rate after it is
 * the schedule's value at step + 1. Never allocates.
 * Returns GLR_OK, or GLR_EINVAL (step out of range), leaving the state unchanged.
 */
int glr_sched_step(struct glr_sched *sched, int64_t step, double metric,
                   struct glr_step_result *result);

/*
 * glr_sched_step() with the client's stability cap: no learning rate after the step
 * exceeds lr_cap (a number > 0; +inf means no cap). Only policies for which
 * glr_sched_takes_lr_cap() is true accept a finite cap.
 * Returns GLR_OK, or GLR_EINVAL (step out of range, a cap that is not > 0, or a finite
 * cap for a policy that takes none), leaving the state unchanged.
 */
int glr_sched_step_capped(struct glr_sched *sched, int64_t step, double metric, double lr_cap,
                          struct glr_step_result *result);

/* True when the policy takes a report's lr_cap (auto). */
bool glr_sched_takes_lr_cap(const struct glr_sched *sched);

/*
 * Whether the scheduler's rates depend on the metrics it is given: false for the time-based
 * policies, which only keep them (a report may then come without one).
 */
bool glr_sched_reads_metric(const struct glr_sched *sched);

/* Puts the scheduler back in the state it had right after creation. */
void glr_sched_reset(struct glr_sched *sched);

/* The policy's name. */
const char *glr_sched_policy(const struct glr_sched *sched);

/* Number of parameter groups (1 to GLR_MAX_GROUPS). */
size_t glr_sched_groups(const struct glr_sched *sched);

/* True when the initial lr was given as an array (answers then use arrays too). */
bool glr_sched_lr_is_array(const struct glr_sched *sched);

/* The current learning rates, one per group; valid until the next step or free. */
const double *glr_sched_lrs(const struct glr_sched *sched);

/* The initial learning rates, one per group; valid until free. */
const double *glr_sched_initial_lrs(const struct glr_sched *sched);

/*
 * The JSON builders below return a new tree owned by the caller (cJSON_Delete()), or NULL
 * when out of memory. Doubles in them are cJSON raw items holding the shortest digits
 * that read back bit for bit (cJSON's own printer may lose the last bits): print the
 * tree as it is, and read a value with jsonx_get_double().
 */

/* The current learning rate in the shape it was given: a number or an array. */
cJSON *glr_sched_lr_json(const struct glr_sched *sched);

/* The initial learning rate in the shape it was given. */
cJSON *glr_sched_initial_lr_json(const struct glr_sched *sched);

/* The whole configuration, every key present with defaults filled in. */
cJSON *glr_sched_config_json(const struct glr_sched *sched);

/*
 * The policy's counters for display (greedylr: best, num_good, num_bad,
 * cooldown_counter, warmup_counter, reset_left); an infinite best is null.
 */
cJSON *glr_sched_counters_json(const struct glr_sched *sched);

/*
 * The complete state, enough for glr_sched_state_load() on a scheduler created with the
 * same policy, lr and config to continue exactly as this one would.
 */
cJSON *glr_sched_state_save(const struct glr_sched *sched);

/*
 * Replaces the state of sched with a tree made by glr_sched_state_save(). The tree is
 * checked whole before anything changes: on failure sched is untouched.
 * Returns GLR_OK or GLR_ECORRUPT (err names the field).
 */
int glr_sched_state_load(struct glr_sched *sched, const cJSON *state, char *err);

#endif
