/*
 * Fuzzes the request bodies of every route that takes one, as req.h reads them from the
 * network. The first byte picks the route (bits 0-1: create, patch, report, rewind; or, with
 * bit 4 set, a token to create) and the Content-Type (bits 2-3); the rest is the body, not
 * NUL-terminated, exactly as libmicrohttpd hands it over, and checked as UTF-8 first, as api.c
 * does. A job to create goes on to glr_sched_create(), as the service would take it.
 */
#include <math.h>
#include <string.h>

#include "fuzz.h"
#include "base/jsonx.h"
#include "http/req.h"

static const char *const content_types[] = {
    NULL,
    "application/json",
    " Application/Merge-Patch+JSON ; charset=utf-8",
    "text/plain",
};

static void create_job(const struct svc_create *create)
{
    /* The service refuses a policy that is not a string before the core sees it. */
    if (create->policy && !cJSON_IsString(create->policy))
        return;
    const char *policy = create->policy ? create->policy->valuestring : NULL;
    struct glr_sched *sched = NULL;
    if (glr_sched_create(policy, create->lr, create->config, &sched, NULL) == GLR_OK) {
        free(fuzz_print(glr_sched_config_json(sched)));
        free(fuzz_print(glr_sched_state_save(sched)));
        glr_sched_free(sched);
    }
}

static int parse(int route, const struct req_body *body, char *err)
{
    int rc;
    switch (route) {
    case 0: {
        struct req_create create;
        rc = req_parse_create(body, &create, err);
        if (rc == GLR_OK) {
            FUZZ_CHECK(create.tree != NULL && create.create.id == NULL);
            create_job(&create.create);
        }
        req_create_clear(&create);
        return rc;
    }
    case 1: {
        struct req_patch patch;
        rc = req_parse_patch(body, &patch, err);
        if (rc == GLR_OK)
            FUZZ_CHECK(patch.finish || patch.tags);
        req_patch_clear(&patch);
        return rc;
    }
    case 2: {
        struct svc_report_input report;
        rc = req_parse_report(body, &report, err);
        if (rc == GLR_OK)
            FUZZ_CHECK(report.step >= 0 && report.step <= GLR_MAX_STEP && report.rank >= 0 &&
                       report.rank < SVC_WORLD_MAX);
        return rc;
    }
    case 3: {
        struct req_rewind rewind;
        rc = req_parse_rewind(body, &rewind, err);
        if (rc == GLR_OK)
            FUZZ_CHECK(rewind.to_step >= -1 && rewind.to_step <= GLR_MAX_STEP);
        return rc;
    }
    default: {
        struct req_token token;
        rc = req_parse_token(body, &token, err);
        if (rc == GLR_OK)
            FUZZ_CHECK(token.tree != NULL && auth_role_name(token.role) != NULL);
        req_token_clear(&token);
        return rc;
    }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct req_body body = {
        .type = content_types[(data[0] >> 2) & 3],
        .text = (const char *)data + 1,
        .len = size - 1,
    };
    /* api.c refuses a body that is not UTF-8 before any route reads it. */
    size_t bad = jsonx_utf8_check(body.text, body.len);
    FUZZ_CHECK(bad <= body.len);
    if (bad < body.len)
        return 0;
    char err[GLR_ERR_MAX] = "";
    int rc = parse(data[0] & 0x10 ? 4 : data[0] & 3, &body, err);
    /* Every refusal is one the HTTP layer maps, with a detail that names the fault. */
    FUZZ_CHECK(rc == GLR_OK || rc == GLR_EINVAL || rc == GLR_EMALFORMED || rc == GLR_EMEDIA ||
               rc == GLR_ENOMEM);
    if (rc)
        FUZZ_CHECK(err[0] != '\0' && strlen(err) < GLR_ERR_MAX);
    return 0;
}
