/* Typed, validated reading of a policy configuration object (see cfg.h). */
#include "core/cfg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/jsonx.h"
#include "base/suggest.h"
#include "base/status.h"

int cfg_begin(struct cfg *cfg, const cJSON *config, size_t groups, char *err)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->groups = groups;
    if (config && !cJSON_IsNull(config) && !cJSON_IsObject(config))
        return glr_fail(err, GLR_EINVAL, "config must be a JSON object");
    cfg->object = cJSON_IsObject(config) ? config : NULL;
    return GLR_OK;
}

/* Records key as known and returns its item, or NULL when absent. */
static const cJSON *lookup(struct cfg *cfg, const char *key)
{
    if (cfg->nknown < CFG_MAX_KEYS)
        cfg->known[cfg->nknown++] = key;
    if (!cfg->object)
        return NULL;
    return cJSON_GetObjectItemCaseSensitive(cfg->object, key);
}

/* True when item is a JSON number whose value is finite. */
static bool finite_number(const cJSON *item, double *out)
{
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble))
        return false;
    *out = item->valuedouble;
    return true;
}

int cfg_double(struct cfg *cfg, const char *key, double dflt, double *out, char *err)
{
    const cJSON *item = lookup(cfg, key);
    if (!item) {
        *out = dflt;
        return GLR_OK;
    }
    if (!finite_number(item, out))
        return glr_fail(err, GLR_EINVAL, "%s must be a finite number", key);
    return GLR_OK;
}

int cfg_int(struct cfg *cfg, const char *key, int64_t dflt, int64_t min, int64_t max, int64_t *out,
            char *err)
{
    const cJSON *item = lookup(cfg, key);
    if (!item) {
        *out = dflt;
        return GLR_OK;
    }
    double v;
    if (!finite_number(item, &v) || v != floor(v))
        return glr_fail(err, GLR_EINVAL, "%s must be an integer", key);
    if (!jsonx_get_integer(item, min, max, out))
        return glr_fail(err, GLR_EINVAL, "%s must be between %lld and %lld, got %s", key,
                        (long long)min, (long long)max, jsonx_text(v).s);
    return GLR_OK;
}

int cfg_bool(struct cfg *cfg, const char *key, bool dflt, bool *out, char *err)
{
    const cJSON *item = lookup(cfg, key);
    if (!item) {
        *out = dflt;
        return GLR_OK;
    }
    if (!cJSON_IsBool(item))
        return glr_fail(err, GLR_EINVAL, "%s must be true or false", key);
    *out = cJSON_IsTrue(item);
    return GLR_OK;
}

int cfg_enum(struct cfg *cfg, const char *key, const char *const *names, int dflt, int *out,
             char *err)
{
    const cJSON *item = lookup(cfg, key);
    if (!item) {
        *out = dflt;
        return GLR_OK;
    }
    if (cJSON_IsString(item)) {
        for (int i = 0; names[i]; i++) {
            if (strcmp(item->valuestring, names[i]) == 0) {
                *out = i;
                return GLR_OK;
            }
        }
    }
    char choices[128] = "";
    size_t used = 0;
    for (int i = 0; names[i] && used < sizeof(choices); i++)
        used += (size_t)snprintf(choices + used, sizeof(choices) - used, "%s\"%s\"",
                                 i ? " or " : "", names[i]);
    return glr_fail(err, GLR_EINVAL, "%s must be %s", key, choices);
}

int cfg_groups(struct cfg *cfg, const char *key, double dflt, double *out, bool *is_array,
               char *err)
{
    const cJSON *item = lookup(cfg, key);
    *is_array = false;
    double v = dflt;
    if (item && cJSON_IsArray(item)) {
        int n = cJSON_GetArraySize(item);
        if ((size_t)n != cfg->groups)
            return glr_fail(err, GLR_EINVAL, "%s has %d values but there are %zu parameter groups",
                            key, n, cfg->groups);
        size_t i = 0;
        const cJSON *elem;
        cJSON_ArrayForEach(elem, item)
        {
            if (!finite_number(elem, &out[i]))
                return glr_fail(err, GLR_EINVAL, "%s[%zu] must be a finite number", key, i);
            i++;
        }
        *is_array = true;
        return GLR_OK;
    }
    if (item && !finite_number(item, &v))
        return glr_fail(err, GLR_EINVAL, "%s must be a finite number or an array of them", key);
    for (size_t i = 0; i < cfg->groups; i++)
        out[i] = v;
    return GLR_OK;
}

/* Reads one integer of an array, naming it as key[index] in the message. */
static int list_element(const cJSON *elem, const char *key, size_t index, int64_t min, int64_t max,
                        int64_t *out, char *err)
{
    double v;
    if (!finite_number(elem, &v) || v != floor(v))
        return glr_fail(err, GLR_EINVAL, "%s[%zu] must be an integer", key, index);
    if (!jsonx_get_integer(elem, min, max, out))
        return glr_fail(err, GLR_EINVAL, "%s[%zu] must be between %lld and %lld, got %s", key,
                        index, (long long)min, (long long)max, jsonx_text(v).s);
    return GLR_OK;
}

int cfg_int_list(struct cfg *cfg, const char *key, size_t max_count, int64_t min, int64_t max,
                 int64_t *out, size_t *count, char *err)
{
    const cJSON *item = lookup(cfg, key);
    *count = 0;
    if (!item)
        return GLR_OK;
    if (!cJSON_IsArray(item))
        return glr_fail(err, GLR_EINVAL, "%s must be an array of integers", key);
    size_t n = (size_t)cJSON_GetArraySize(item);
    if (n > max_count)
        return glr_fail(err, GLR_EINVAL, "%s holds %zu values; at most %zu are allowed", key, n,
                        max_count);
    size_t i = 0;
    const cJSON *elem;
    cJSON_ArrayForEach(elem, item)
    {
        int rc = list_element(elem, key, i, min, max, &out[i], err);
        if (rc)
            return rc;
        i++;
    }
    *count = n;
    return GLR_OK;
}

const cJSON *cfg_item(struct cfg *cfg, const char *key)
{
    return lookup(cfg, key);
}

int cfg_finish(const struct cfg *cfg, char *err)
{
    if (!cfg->object)
        return GLR_OK;
    const cJSON *item;
    cJSON_ArrayForEach(item, cfg->object)
    {
        const char *key = item->string;
        for (const cJSON *other = item->next; other; other = other->next)
            if (strcmp(other->string, key) == 0)
                return glr_fail(err, GLR_EINVAL, "config key \"%s\" is given twice", key);
        bool known = false;
        for (size_t i = 0; i < cfg->nknown && !known; i++)
            known = strcmp(cfg->known[i], key) == 0;
        if (known)
            continue;
        const char *closest = suggest_closest(key, cfg->known, cfg->nknown);
        if (closest)
            return glr_fail(err, GLR_EINVAL, "unknown config key \"%.64s\" (did you mean \"%s\"?)",
                            key, closest);
        return glr_fail(err, GLR_EINVAL, "unknown config key \"%.64s\"", key);
    }
    return GLR_OK;
}
