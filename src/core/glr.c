/*
 * The scheduler object and its policy-independent half: parsing the initial learning
 * rates, dispatching to a policy, and the envelope of configuration and saved state.
 */
#include "core/glr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "core/policy.h"

static const struct glr_policy *const policies[] = {
    &glr_policy_greedylr,
    &glr_policy_auto,
    &glr_policy_plateau,
    &glr_policy_constant,
    &glr_policy_step,
    &glr_policy_multistep,
    &glr_policy_constant_factor,
    &glr_policy_exponential,
    &glr_policy_polynomial,
    &glr_policy_cosine,
    &glr_policy_cosine_restarts,
    &glr_policy_linear,
    &glr_policy_onecycle,
    &glr_policy_sequence,
    &glr_policy_learned,
};
#define POLICY_COUNT (sizeof(policies) / sizeof(policies[0]))

static const char *const event_names[GLR_EVENT_COUNT] = {
    "hold", "increase", "decrease", "reset", "cooldown", "warmup", "diverged", "capped", "anneal",
};

const char *glr_event_name(enum glr_event event)
{
    if ((unsigned)event >= GLR_EVENT_COUNT)
        return "unknown";
    return event_names[event];
}

int glr_event_parse(const char *name, enum glr_event *event)
{
    for (int i = 0; i < GLR_EVENT_COUNT; i++) {
        if (strcmp(name, event_names[i]) == 0) {
            *event = (enum glr_event)i;
            return GLR_OK;
        }
    }
    return GLR_EINVAL;
}

static int check_lr_value(const cJSON *item, const char *what, double *out, char *err)
{
    if (!cJSON_IsNumber(item))
        return glr_fail(err, GLR_EINVAL, "%s must be a number", what);
    double v = item->valuedouble;
    if (!isfinite(v) || v <= 0)
        return glr_fail(err, GLR_EINVAL, "%s must be a finite number > 0, got %s", what,
                        jsonx_text(v).s);
    *out = v;
    return GLR_OK;
}

int glr_lr_parse(const cJSON *lr, double values[GLR_MAX_GROUPS], size_t *groups, bool *is_array,
                 char *err)
{
    if (!lr)
        return glr_fail(err, GLR_EINVAL, "lr is required");
    *is_array = cJSON_IsArray(lr);
    if (!*is_array) {
        *groups = 1;
        return check_lr_value(lr, "lr", &values[0], err);
    }
    int n = cJSON_GetArraySize(lr);
    if (n < 1 || n > GLR_MAX_GROUPS)
        return glr_fail(err, GLR_EINVAL, "lr must hold 1 to %d values (one per group), got %d",
                        GLR_MAX_GROUPS, n);
    size_t i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, lr)
    {
        char what[32];
        snprintf(what, sizeof(what), "lr[%zu]", i);
        int rc = check_lr_value(item, what, &values[i], err);
        if (rc)
            return rc;
        i++;
    }
    *groups = (size_t)n;
    return GLR_OK;
}

const struct glr_policy *policy_find(const char *name)
{
    for (size_t i = 0; i < POLICY_COUNT; i++)
        if (strcmp(policies[i]->name, name) == 0)
            return policies[i];
    return NULL;
}

int policy_unknown(const char *name, char *err)
{
    char names[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < POLICY_COUNT && used < sizeof(names); i++)
        used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
                                 i == 0                 ? ""
                                 : i + 1 < POLICY_COUNT ? ", "
                                                        : " or ",
                                 policies[i]->name);
    return glr_fail(err, GLR_EINVAL, "policy \"%.64s\" is unknown (%s)", name, names);
}

int policy_sched_create(const struct glr_policy *policy, const double *lrs, size_t groups,
                        bool is_array, const cJSON *config, struct glr_sched **out, char *err)
{
    *out = NULL;
    struct glr_sched *sched = calloc(1, sizeof(*sched) + 2 * groups * sizeof(double));
    if (!sched)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    sched->policy = policy;
    sched->reads_metric = !policy->ignores_metric;
    sched->takes_lr_cap = policy->takes_lr_cap;
    sched->groups = groups;
    sched->lr_is_array = is_array;
    sched->lrs = sched->storage;
    sched->init_lrs = sched->storage + groups;
    memcpy(sched->init_lrs, lrs, groups * sizeof(double));
    memcpy(sched->lrs, lrs, groups * sizeof(double));

    struct cfg cfg;
    int rc = cfg_begin(&cfg, config, groups, err);
    if (!rc)
        rc = policy->create(sched, &cfg, err);
    if (!rc)
        rc = cfg_finish(&cfg, err);
    if (rc) {
        glr_sched_free(sched);
        return rc;
    }
    policy->reset(sched);
    *out = sched;
    return GLR_OK;
}

int glr_sched_create(const char *policy_name, const cJSON *lr, const cJSON *config,
                     struct glr_sched **out, char *err)
{
    *out = NULL;
    if (!policy_name)
        policy_name = "greedylr";
    const struct glr_policy *policy = policy_find(policy_name);
    if (!policy)
        return policy_unknown(policy_name, err);

    double values[GLR_MAX_GROUPS];
    size_t groups = 0;
    bool is_array = false;
    int rc = glr_lr_parse(lr, values, &groups, &is_array, err);
    if (rc)
        return rc;
    return policy_sched_create(policy, values, groups, is_array, config, out, err);
}

void glr_sched_free(struct glr_sched *sched)
{
    if (!sched)
        return;
    if (sched->priv)
        sched->policy->destroy(sched);
    free(sched);
}

int glr_sched_step(struct glr_sched *sched, int64_t step, double metric,
                   struct glr_step_result *result)
{
    return glr_sched_step_capped(sched, step, metric, INFINITY, result);
}

int glr_sched_step_capped(struct glr_sched *sched, int64_t step, double metric, double lr_cap,
                          struct glr_step_result *result)
{
    if (step < 0 || step > GLR_MAX_STEP)
        return GLR_EINVAL;
    if (!(lr_cap > 0) || (lr_cap != INFINITY && !sched->takes_lr_cap))
        return GLR_EINVAL;
    sched->policy->step(sched, step, metric, lr_cap, result);
    return GLR_OK;
}

bool glr_sched_reads_metric(const struct glr_sched *sched)
{
    return sched->reads_metric;
}

bool glr_sched_takes_lr_cap(const struct glr_sched *sched)
{
    return sched->takes_lr_cap;
}

void glr_sched_reset(struct glr_sched *sched)
{
    memcpy(sched->lrs, sched->init_lrs, sched->groups * sizeof(double));
    sched->policy->reset(sched);
}

const char *glr_sched_policy(const struct glr_sched *sched)
{
    return sched->policy->name;
}

size_t glr_sched_groups(const struct glr_sched *sched)
{
    return sched->groups;
}

bool glr_sched_lr_is_array(const struct glr_sched *sched)
{
    return sched->lr_is_array;
}

const double *glr_sched_lrs(const struct glr_sched *sched)
{
    return sched->lrs;
}

const double *glr_sched_initial_lrs(const struct glr_sched *sched)
{
    return sched->init_lrs;
}

static cJSON *lr_shape_json(const struct glr_sched *sched, const double *values)
{
    return jsonx_lr(values, sched->groups, sched->lr_is_array);
}

cJSON *glr_sched_lr_json(const struct glr_sched *sched)
{
    return lr_shape_json(sched, sched->lrs);
}

cJSON *glr_sched_initial_lr_json(const struct glr_sched *sched)
{
    return lr_shape_json(sched, sched->init_lrs);
}

/* Runs a policy's JSON builder on a new object; NULL when out of memory. */
static cJSON *build_object(const struct glr_sched *sched,
                           bool (*build)(const struct glr_sched *, cJSON *))
{
    cJSON *object = cJSON_CreateObject();
    if (object && !build(sched, object)) {
        cJSON_Delete(object);
        return NULL;
    }
    return object;
}

cJSON *glr_sched_config_json(const struct glr_sched *sched)
{
    return build_object(sched, sched->policy->config_json);
}

cJSON *glr_sched_counters_json(const struct glr_sched *sched)
{
    return build_object(sched, sched->policy->counters_json);
}

/* The state envelope: format version, policy name and current learning rates. */
#define STATE_VERSION 1

static bool save_envelope(const struct glr_sched *sched, cJSON *object)
{
    return jsonx_add_integer(object, "version", STATE_VERSION) &&
           cJSON_AddStringToObject(object, "policy", sched->policy->name) &&
           policy_json_add_doubles(object, "lrs", sched->lrs, sched->groups) &&
           sched->policy->state_save(sched, object);
}

cJSON *glr_sched_state_save(const struct glr_sched *sched)
{
    return build_object(sched, save_envelope);
}

int glr_sched_state_load(struct glr_sched *sched, const cJSON *state, char *err)
{
    if (!cJSON_IsObject(state))
        return glr_fail(err, GLR_ECORRUPT, "saved state must be a JSON object");
    double version;
    if (policy_state_get_double(state, "version", &version, err))
        return GLR_ECORRUPT;
    if (version != STATE_VERSION)
        return glr_fail(err, GLR_ECORRUPT, "saved state: version %s is not supported",
                        jsonx_text(version).s);
    const cJSON *policy = cJSON_GetObjectItemCaseSensitive(state, "policy");
    if (!cJSON_IsString(policy) || strcmp(policy->valuestring, sched->policy->name) != 0)
        return glr_fail(err, GLR_ECORRUPT, "saved state: policy is not \"%s\"",
                        sched->policy->name);
    const cJSON *lrs = cJSON_GetObjectItemCaseSensitive(state, "lrs");
    if (!cJSON_IsArray(lrs) || (size_t)cJSON_GetArraySize(lrs) != sched->groups)
        return glr_fail(err, GLR_ECORRUPT, "saved state: lrs must hold %zu values", sched->groups);
    double values[GLR_MAX_GROUPS];
    size_t i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, lrs)
    {
        if (!jsonx_get_double(item, &values[i]) || !isfinite(values[i]) || values[i] < 0)
            return glr_fail(err, GLR_ECORRUPT, "saved state: lrs[%zu] must be a finite number >= 0",
                            i);
        i++;
    }
    int rc = sched->policy->state_load(sched, state, err);
    if (rc)
        return rc;
    memcpy(sched->lrs, values, sched->groups * sizeof(double));
    return GLR_OK;
}
