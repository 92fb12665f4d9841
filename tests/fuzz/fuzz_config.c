/*
 * Fuzzes config validation: glr_sched_create() on the policy, lr and config of a job as a
 * client sends them. The input is a JSON object {"policy", "lr", "config", "losses",
 * "steps"}; a scheduler that is accepted is then stepped through the losses (with the
 * step numbers of "steps", see fuzz_sched_walk()), so that every accepted config is also
 * run, saved and reloaded.
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
    char err[GLR_ERR_MAX] = "";
    int rc = glr_sched_create(name, cJSON_GetObjectItemCaseSensitive(input, "lr"),
                              cJSON_GetObjectItemCaseSensitive(input, "config"), &sched, err);
    if (rc == GLR_OK) {
        fuzz_sched_walk(sched, cJSON_GetObjectItemCaseSensitive(input, "losses"),
                        cJSON_GetObjectItemCaseSensitive(input, "steps"));
        glr_sched_free(sched);
    } else {
        /* A refusal names what was wrong, for the client's problem+json detail. */
        FUZZ_CHECK(rc == GLR_EINVAL || rc == GLR_ENOMEM);
        FUZZ_CHECK(sched == NULL);
        FUZZ_CHECK(err[0] != '\0' && strlen(err) < GLR_ERR_MAX);
    }
    cJSON_Delete(input);
    return 0;
}
