/*
 * The sequence policy: schedules chained at milestones, as PyTorch's SequentialLR. Phase
 * k answers from milestone k - 1 (step 0 for the first) up to milestone k, and counts its
 * own steps from its milestone: a phase starts where it would start alone, whatever came
 * before it. Any policy but another sequence may be a phase, so a warmup can lead into
 * greedylr or auto.
 *
 * Only the phase in use holds a state that matters: the later ones have not started, and
 * the earlier ones are never asked again unless a rewind brings their steps back, which
 * loads the state saved then. The saved state is therefore the position and the state of
 * the phase in use; every other phase is put back to its start.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "core/policy.h"

struct sequence {
    size_t count;
    struct glr_sched *phases[GLR_MAX_PHASES]; /* owned */
    int64_t starts[GLR_MAX_PHASES];           /* starts[0] is 0, then the milestones */
    int64_t t;                                /* the position of the current learning rates */
};

/* The phase that answers at position t: Python's bisect_right over the milestones. */
static size_t phase_of(const struct sequence *q, int64_t t)
{
    size_t k = q->count - 1;
    while (k > 0 && q->starts[k] > t)
        k--;
    return k;
}

static void sequence_free(struct sequence *q)
{
    for (size_t i = 0; i < q->count; i++)
        glr_sched_free(q->phases[i]);
    free(q);
}

/* Makes phase i from its item of "schedules": {"policy": NAME, "config": {...}}. */
static int create_phase(struct glr_sched *sched, const cJSON *item, size_t i,
                        struct glr_sched **out, char *err)
{
    if (!cJSON_IsObject(item))
        return glr_fail(err, GLR_EINVAL, "schedules[%zu] must be an object", i);
    const cJSON *field;
    cJSON_ArrayForEach(field, item)
    {
        if (strcmp(field->string, "policy") != 0 && strcmp(field->string, "config") != 0)
            return glr_fail(err, GLR_EINVAL,
                            "schedules[%zu]: unknown key \"%.64s\" (policy and config only)", i,
                            field->string);
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "policy");
    if (!cJSON_IsString(name))
        return glr_fail(err, GLR_EINVAL, "schedules[%zu].policy is required: a policy name", i);
    const struct glr_policy *policy = policy_find(name->valuestring);
    char why[GLR_ERR_MAX];
    if (!policy) {
        policy_unknown(name->valuestring, why);
        return glr_fail(err, GLR_EINVAL, "schedules[%zu]: %s", i, why);
    }
    if (policy == &glr_policy_sequence)
        return glr_fail(err, GLR_EINVAL, "schedules[%zu]: a sequence cannot hold a sequence", i);
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(item, "config");
    int rc = policy_sched_create(policy, sched->init_lrs, sched->groups, sched->lr_is_array, config,
                                 out, why);
    if (rc)
        return glr_fail(err, rc, "schedules[%zu] (%s): %s", i, policy->name, why);
    return GLR_OK;
}

static int read_milestones(struct sequence *q, struct cfg *cfg, char *err)
{
    int64_t milestones[GLR_MAX_PHASES];
    size_t n;
    int rc =
        cfg_int_list(cfg, "milestones", GLR_MAX_PHASES - 1, 1, GLR_MAX_COUNT, milestones, &n, err);
    if (rc)
        return rc;
    if (n != q->count - 1)
        return glr_fail(err, GLR_EINVAL,
                        "milestones must hold one step number fewer than schedules (%zu), got %zu",
                        q->count, n);
    for (size_t i = 0; i < n; i++) {
        /* An empty phase would never answer: refuse it rather than skip it silently. */
        if (i > 0 && milestones[i] <= milestones[i - 1])
            return glr_fail(err, GLR_EINVAL, "milestones must increase: %lld follows %lld",
                            (long long)milestones[i], (long long)milestones[i - 1]);
        q->starts[i + 1] = milestones[i];
    }
    return GLR_OK;
}

static int sequence_create(struct glr_sched *sched, struct cfg *cfg, char *err)
{
    const cJSON *schedules = cfg_item(cfg, "schedules");
    if (!cJSON_IsArray(schedules))
        return glr_fail(err, GLR_EINVAL,
                        "schedules is required: an array of 1 to %d {\"policy\", \"config\"}",
                        GLR_MAX_PHASES);
    int n = cJSON_GetArraySize(schedules);
    if (n < 1 || n > GLR_MAX_PHASES)
        return glr_fail(err, GLR_EINVAL, "schedules must hold 1 to %d schedules, got %d",
                        GLR_MAX_PHASES, n);
    struct sequence *q = calloc(1, sizeof(*q));
    if (!q)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    int rc = GLR_OK;
    const cJSON *item;
    cJSON_ArrayForEach(item, schedules)
    {
        if ((rc = create_phase(sched, item, q->count, &q->phases[q->count], err)))
            break;
        q->count++;
    }
    if (!rc)
        rc = read_milestones(q, cfg, err);
    if (rc) {
        sequence_free(q);
        return rc;
    }
    sched->reads_metric = false;
    sched->takes_lr_cap = false;
    for (size_t i = 0; i < q->count; i++) {
        sched->reads_metric = sched->reads_metric || glr_sched_reads_metric(q->phases[i]);
        sched->takes_lr_cap = sched->takes_lr_cap || glr_sched_takes_lr_cap(q->phases[i]);
    }
    sched->priv = q;
    return GLR_OK;
}

static void sequence_destroy(struct glr_sched *sched)
{
    sequence_free(sched->priv);
}

/* Puts every phase but keep back to its start. */
static void reset_others(struct sequence *q, size_t keep)
{
    for (size_t i = 0; i < q->count; i++)
        if (i != keep)
            glr_sched_reset(q->phases[i]);
}

static void sequence_reset(struct glr_sched *sched)
{
    struct sequence *q = sched->priv;
    glr_sched_reset(q->phases[0]);
    reset_others(q, 0);
    q->t = 0;
    memcpy(sched->lrs, glr_sched_lrs(q->phases[0]), sched->groups * sizeof(double));
}

static void sequence_step(struct glr_sched *sched, int64_t step, double metric, double lr_cap,
                          struct glr_step_result *result)
{
    struct sequence *q = sched->priv;
    size_t k = phase_of(q, step);
    struct glr_sched *phase = q->phases[k];
    /* A report from another phase than the one in use (steps skipped past a milestone). */
    if (k != phase_of(q, q->t))
        glr_sched_reset(phase);
    phase->policy->step(phase, step - q->starts[k], metric,
                        glr_sched_takes_lr_cap(phase) ? lr_cap : INFINITY, result);
    q->t = step + 1;
    size_t next = phase_of(q, q->t);
    const struct glr_sched *answering = q->phases[next];
    double before = sched->lrs[0];
    memcpy(sched->lrs, glr_sched_lrs(answering), sched->groups * sizeof(double));
    if (next != k) {
        /* The next phase starts: its first rate is the answer. */
        result->event = sched->lrs[0] > before   ? GLR_EVENT_INCREASE
                        : sched->lrs[0] < before ? GLR_EVENT_DECREASE
                                                 : GLR_EVENT_HOLD;
    }
    /* A phase that takes no cap still answers under the one the client gave. */
    if (!glr_sched_takes_lr_cap(answering)) {
        for (size_t i = 0; i < sched->groups; i++) {
            if (sched->lrs[i] > lr_cap) {
                sched->lrs[i] = lr_cap;
                result->event = GLR_EVENT_CAPPED;
            }
        }
    }
}

static bool sequence_config_json(const struct glr_sched *sched, cJSON *o)
{
    const struct sequence *q = sched->priv;
    cJSON *schedules = cJSON_AddArrayToObject(o, "schedules");
    if (!schedules)
        return false;
    for (size_t i = 0; i < q->count; i++) {
        cJSON *item = cJSON_CreateObject();
        if (!item || !cJSON_AddItemToArray(schedules, item)) {
            cJSON_Delete(item);
            return false;
        }
        cJSON *config = glr_sched_config_json(q->phases[i]);
        if (!cJSON_AddStringToObject(item, "policy", glr_sched_policy(q->phases[i])) || !config ||
            !cJSON_AddItemToObject(item, "config", config)) {
            cJSON_Delete(config);
            return false;
        }
    }
    return policy_json_add_counts(o, "milestones", q->starts + 1, q->count - 1);
}

/* Adds tree under key, taking it; false when it is NULL (out of memory) or cannot be added. */
static bool add_tree(cJSON *o, const char *key, cJSON *tree)
{
    if (tree && cJSON_AddItemToObject(o, key, tree))
        return true;
    cJSON_Delete(tree);
    return false;
}

static bool sequence_counters_json(const struct glr_sched *sched, cJSON *o)
{
    const struct sequence *q = sched->priv;
    size_t k = phase_of(q, q->t);
    return jsonx_add_integer(o, "t", q->t) && jsonx_add_integer(o, "phase", (int64_t)k) &&
           cJSON_AddStringToObject(o, "phase_policy", glr_sched_policy(q->phases[k])) &&
           add_tree(o, "phase_counters", glr_sched_counters_json(q->phases[k]));
}

static bool sequence_state_save(const struct glr_sched *sched, cJSON *o)
{
    const struct sequence *q = sched->priv;
    return jsonx_add_integer(o, "t", q->t) &&
           add_tree(o, "phase_state", glr_sched_state_save(q->phases[phase_of(q, q->t)]));
}

static int sequence_state_load(struct glr_sched *sched, const cJSON *o, char *err)
{
    struct sequence *q = sched->priv;
    int64_t t;
    int rc = policy_state_get_count(o, "t", GLR_MAX_STEP + 1, &t, err);
    if (rc)
        return rc;
    size_t k = phase_of(q, t);
    char why[GLR_ERR_MAX];
    rc =
        glr_sched_state_load(q->phases[k], cJSON_GetObjectItemCaseSensitive(o, "phase_state"), why);
    if (rc)
        return glr_fail(err, rc, "saved state: phase_state of phase %zu: %s", k, why);
    reset_others(q, k);
    q->t = t;
    return GLR_OK;
}

const struct glr_policy glr_policy_sequence = {
    .name = "sequence",
    .create = sequence_create,
    .destroy = sequence_destroy,
    .reset = sequence_reset,
    .step = sequence_step,
    .config_json = sequence_config_json,
    .counters_json = sequence_counters_json,
    .state_save = sequence_state_save,
    .state_load = sequence_state_load,
};
