/*
 * Fuzzes stored-state loading: glr_sched_state_load() on the state the store keeps for a
 * job (and in its snapshots, for rewinds), which a damaged or hand-edited database may
 * hold in any shape. The input is a JSON object {"policy", "lr", "config", "state",
 * "losses", "steps"}: the scheduler is made from the first three, then given the state.
 * A refused state must leave the scheduler as it was; an accepted one must run, save and
 * reload.
 */
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *input = cJSON_ParseWithLength((const char *)data, size);
    if (!input)
        return 0;
    const cJSON *policy = cJSON_GetObjectItemCaseSensitive(input, "policy");
    const char *name = cJSON_IsString(policy) ? policy->valuestring : NULL;
    struct glr_sched *sched = NULL;
    if (glr_sched_create(name, cJSON_GetObjectItemCaseSensitive(input, "lr"),
                         cJSON_GetObjectItemCaseSensitive(input, "config"), &sched, NULL)) {
        cJSON_Delete(input);
        return 0;
    }
    char *before = fuzz_print(glr_sched_state_save(sched));
    char err[GLR_ERR_MAX] = "";
    int rc = glr_sched_state_load(sched, cJSON_GetObjectItemCaseSensitive(input, "state"), err);
    if (rc == GLR_OK) {
        fuzz_sched_walk(sched, cJSON_GetObjectItemCaseSensitive(input, "losses"),
                        cJSON_GetObjectItemCaseSensitive(input, "steps"));
    } else {
        FUZZ_CHECK(rc == GLR_ECORRUPT);
        FUZZ_CHECK(err[0] != '\0' && strlen(err) < GLR_ERR_MAX);
        char *after = fuzz_print(glr_sched_state_save(sched));
        if (before && after && strcmp(before, after) != 0)
            fprintf(stderr, "a refused state changed the scheduler:\n%s\n%s\n", before, after);
        FUZZ_CHECK(!before || !after || strcmp(before, after) == 0);
        free(after);
    }
    free(before);
    glr_sched_free(sched);
    cJSON_Delete(input);
    return 0;
}
