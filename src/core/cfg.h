/*
 * Reading a policy's configuration object: typed getters that fill in defaults and name
 * the key in every error, and a final check that refuses keys nobody asked for, so that a
 * typo such as "patince" never passes silently.
 */
#ifndef GLR_CFG_H
#define GLR_CFG_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most keys one policy reads. */
#define CFG_MAX_KEYS 24

/* A configuration being read. Lives on the caller's stack; borrows the cJSON tree. */
struct cfg {
    const cJSON *object; /* NULL when no config was given */
    size_t groups;       /* length that per-group arrays must have */
    const char *known[CFG_MAX_KEYS];
    size_t nknown;
};

/* Starts reading config (an object, or NULL for none). Returns GLR_OK or GLR_EINVAL. */
int cfg_begin(struct cfg *cfg, const cJSON *config, size_t groups, char *err);

/* A finite number; dflt when the key is absent. */
int cfg_double(struct cfg *cfg, const char *key, double dflt, double *out, char *err);

/* An integer in [min, max]; dflt when absent. */
int cfg_int(struct cfg *cfg, const char *key, int64_t dflt, int64_t min, int64_t max, int64_t *out,
            char *err);

/* A JSON boolean; dflt when absent. */
int cfg_bool(struct cfg *cfg, const char *key, bool dflt, bool *out, char *err);

/*
 * One of the strings in names (NULL-terminated); *out receives its index, or dflt
 * when absent.
 */
int cfg_enum(struct cfg *cfg, const char *key, const char *const *names, int dflt, int *out,
             char *err);

/*
 * A finite number that applies to every group, or an array of one finite number per
 * group. out receives cfg->groups values; *is_array says which form was given.
 */
int cfg_groups(struct cfg *cfg, const char *key, double dflt, double *out, bool *is_array,
               char *err);

/*
 * An array of at most max_count integers, each in [min, max], into out (room for
 * max_count); *count receives how many were given, 0 when the key is absent.
 */
int cfg_int_list(struct cfg *cfg, const char *key, size_t max_count, int64_t min, int64_t max,
                 int64_t *out, size_t *count, char *err);

/*
 * The key's item as it is, or NULL when absent, for a setting made of other settings
 * (sequence's schedules); the caller checks its shape.
 */
const cJSON *cfg_item(struct cfg *cfg, const char *key);

/* Refuses any key that no getter asked for, and any key given twice. */
int cfg_finish(const struct cfg *cfg, char *err);

#endif
