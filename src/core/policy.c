/*
 * Helpers shared by the policies (see policy.h): judging a metric against the best so
 * far, lowering learning rates to a floor, and reading and writing saved state.
 */
#include <math.h>

#include "base/jsonx.h"
#include "core/policy.h"

double policy_judge_initial_best(const struct judge *judge)
{
    return judge->maximize ? -INFINITY : INFINITY;
}

bool policy_judge_is_better(const struct judge *judge, double best, double metric)
{
    if (!isfinite(metric))
        return false; /* a diverged step is never an improvement */
    /* The expressions of the references, term for term: they decide the last bits. */
    if (!judge->maximize) {
        if (judge->relative)
            return metric < best * (1.0 - judge->threshold);
        return metric < best - judge->threshold;
    }
    if (judge->relative)
        return metric > best * (judge->threshold + 1.0);
    return metric > best + judge->threshold;
}

void policy_lrs_reduce(double *lrs, size_t groups, double factor, const double *min_lr, double eps)
{
    for (size_t i = 0; i < groups; i++) {
        double lowered = fmax(lrs[i] * factor, min_lr[i]);
        if (lrs[i] - lowered > eps)
            lrs[i] = lowered;
    }
}

bool policy_json_add_doubles(cJSON *object, const char *key, const double *values, size_t n)
{
    cJSON *array = jsonx_number_array(values, n);
    if (!array || !cJSON_AddItemToObject(object, key, array)) {
        cJSON_Delete(array);
        return false;
    }
    return true;
}

bool policy_json_add_counts(cJSON *object, const char *key, const int64_t *values, size_t n)
{
    cJSON *array = cJSON_CreateArray();
    if (!array || !cJSON_AddItemToObject(object, key, array)) {
        cJSON_Delete(array);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        /* Step numbers stay below 2^53: a double holds each exactly. */
        cJSON *item = jsonx_number((double)values[i]);
        if (!item || !cJSON_AddItemToArray(array, item)) {
            cJSON_Delete(item);
            return false;
        }
    }
    return true;
}

bool policy_json_add_group_values(cJSON *object, const char *key, const double *values, size_t n,
                                  bool as_array)
{
    if (as_array)
        return policy_json_add_doubles(object, key, values, n);
    return jsonx_add_number(object, key, values[0]);
}

int policy_state_get_double(const cJSON *state, const char *key, double *out, char *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(state, key);
    if (!jsonx_get_double(item, out))
        return glr_fail(err, GLR_ECORRUPT, "saved state: %s is missing or not a number", key);
    return GLR_OK;
}

int policy_state_get_count(const cJSON *state, const char *key, int64_t max, int64_t *out,
                           char *err)
{
    double v;
    if (policy_state_get_double(state, key, &v, err))
        return GLR_ECORRUPT;
    if (!(v >= 0 && v <= (double)max) || v != floor(v))
        return glr_fail(err, GLR_ECORRUPT, "saved state: %s must be an integer in [0, %lld]", key,
                        (long long)max);
    *out = (int64_t)v;
    return GLR_OK;
}

int policy_state_get_optional(const cJSON *state, const char *key, bool present, const char *marker,
                              double *out, char *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(state, key);
    if (!present) {
        if (!cJSON_IsNull(item))
            return glr_fail(err, GLR_ECORRUPT, "saved state: %s must be null when %s is", key,
                            marker);
        *out = 0;
        return GLR_OK;
    }
    if (!jsonx_get_double(item, out) || !isfinite(*out))
        return glr_fail(err, GLR_ECORRUPT, "saved state: %s must be a finite number", key);
    return GLR_OK;
}
