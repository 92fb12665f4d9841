/*
 * The promises the store makes of a scheduler, checked on fuzzed ones: what it prints
 * (policy, initial lr, config, state) builds the same scheduler again, which then steps
 * exactly like the original. A job reloaded after a restart depends on it.
 */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "base/jsonx.h"

char *fuzz_print(cJSON *tree)
{
    char *text = tree ? cJSON_PrintUnformatted(tree) : NULL;
    cJSON_Delete(tree);
    return text;
}

/* Parses text made by the core and frees it; NULL when out of memory. */
static cJSON *reparse(char *text)
{
    cJSON *tree = text ? cJSON_Parse(text) : NULL;
    free(text);
    return tree;
}

/* True when the two schedulers' saved states print the same. */
static bool same_state(const struct glr_sched *a, const struct glr_sched *b)
{
    char *ta = fuzz_print(glr_sched_state_save(a));
    char *tb = fuzz_print(glr_sched_state_save(b));
    bool same = ta && tb && strcmp(ta, tb) == 0;
    if (ta && tb && !same)
        fprintf(stderr, "saved state %s\nreloaded as %s\n", ta, tb);
    free(ta);
    free(tb);
    return same || !ta || !tb; /* out of memory proves nothing */
}

/*
 * Rebuilds sched as the store does on a restart: from the printed initial lr and config,
 * then the printed state. Returns NULL only when out of memory.
 */
static struct glr_sched *reload(const struct glr_sched *sched)
{
    cJSON *lr = reparse(fuzz_print(glr_sched_initial_lr_json(sched)));
    cJSON *config = reparse(fuzz_print(glr_sched_config_json(sched)));
    cJSON *state = reparse(fuzz_print(glr_sched_state_save(sched)));
    struct glr_sched *copy = NULL;
    char err[GLR_ERR_MAX] = "";
    if (lr && config && state) {
        int rc = glr_sched_create(glr_sched_policy(sched), lr, config, &copy, err);
        if (rc == GLR_OK) {
            rc = glr_sched_state_load(copy, state, err);
            if (rc)
                fprintf(stderr, "a saved state does not load: %s\n", err);
            FUZZ_CHECK(rc == GLR_OK);
        } else {
            if (rc != GLR_ENOMEM)
                fprintf(stderr, "a printed config does not validate: %s\n", err);
            FUZZ_CHECK(rc == GLR_ENOMEM);
        }
    }
    cJSON_Delete(lr);
    cJSON_Delete(config);
    cJSON_Delete(state);
    return copy;
}

/* Checks the current learning rates: finite and not negative. */
static void check_lrs(const struct glr_sched *sched)
{
    const double *lrs = glr_sched_lrs(sched);
    for (size_t g = 0; g < glr_sched_groups(sched); g++)
        FUZZ_CHECK(isfinite(lrs[g]) && lrs[g] >= 0);
}

/* The number of the k-th step: see fuzz_sched_walk(). */
static int64_t step_number(const cJSON *steps, int64_t k)
{
    const cJSON *item = cJSON_GetArrayItem(steps, (int)k);
    if (!cJSON_IsNumber(item))
        return k;
    double v = item->valuedouble;
    return v >= 0 && v <= (double)GLR_MAX_STEP && v == floor(v) ? (int64_t)v : k;
}

void fuzz_sched_walk(struct glr_sched *sched, const cJSON *losses, const cJSON *steps)
{
    check_lrs(sched);
    struct glr_sched *copy = reload(sched);
    if (copy)
        FUZZ_CHECK(same_state(sched, copy));
    const cJSON *item;
    int64_t k = 0;
    cJSON_ArrayForEach(item, losses)
    {
        if (k >= FUZZ_STEPS_MAX)
            break;
        int64_t step = step_number(steps, k);
        double loss = NAN;
        jsonx_get_double(item, &loss); /* anything else stands for a diverged step */
        struct glr_step_result r, rc;
        FUZZ_CHECK(glr_sched_step(sched, step, loss, &r) == GLR_OK);
        check_lrs(sched);
        if (copy) {
            /* The reloaded scheduler must go on exactly like the original, bit for bit. */
            FUZZ_CHECK(glr_sched_step(copy, step, loss, &rc) == GLR_OK);
            FUZZ_CHECK(r.event == rc.event);
            FUZZ_CHECK(memcmp(glr_sched_lrs(sched), glr_sched_lrs(copy),
                              glr_sched_groups(sched) * sizeof(double)) == 0);
        }
        k++;
    }
    glr_sched_free(copy);
    /* And once more at the end, where the counters are wherever the losses led them. */
    copy = reload(sched);
    if (copy)
        FUZZ_CHECK(same_state(sched, copy));
    glr_sched_free(copy);
    /* The other JSON views must not fail on any state. */
    free(fuzz_print(glr_sched_counters_json(sched)));
    free(fuzz_print(glr_sched_lr_json(sched)));
}
