/* Loading the golden vectors of the auto policy (see autogolden.h). */
#include "autogolden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/glr.h"
#include "base/jsonx.h"
#include "testutil.h"

struct auto_case auto_cases[AUTO_CASES_MAX];
int auto_case_count;

static double value_of(const cJSON *item)
{
    double v;
    if (cJSON_IsNull(item))
        return INFINITY; /* a cap of null: none */
    ck_assert_msg(jsonx_get_double(item, &v), "golden data: expected a number");
    return v;
}

static void unpack(struct auto_case *c, const cJSON *j)
{
    snprintf(c->name, sizeof(c->name), "%s",
             cJSON_GetObjectItemCaseSensitive(j, "name")->valuestring);
    c->lr = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(j, "lr"), 1);
    c->config = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(j, "config"), 1);
    c->groups = cJSON_IsArray(c->lr) ? (size_t)cJSON_GetArraySize(c->lr) : 1;
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(j, "steps");
    const cJSON *losses = cJSON_GetObjectItemCaseSensitive(j, "losses");
    const cJSON *caps = cJSON_GetObjectItemCaseSensitive(j, "lr_caps");
    const cJSON *lrs = cJSON_GetObjectItemCaseSensitive(j, "expected_lr");
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(j, "expected_event");
    c->steps = cJSON_GetArraySize(losses);
    ck_assert_int_eq(cJSON_GetArraySize(steps), c->steps);
    ck_assert_int_eq(cJSON_GetArraySize(caps), c->steps);
    ck_assert_int_eq(cJSON_GetArraySize(lrs), c->steps);
    ck_assert_int_eq(cJSON_GetArraySize(events), c->steps);
    size_t n = (size_t)c->steps;
    c->step = calloc(n, sizeof(*c->step));
    c->losses = calloc(n, sizeof(double));
    c->caps = calloc(n, sizeof(double));
    c->expected = calloc(n * c->groups, sizeof(double));
    c->events = calloc(n, sizeof(int));
    ck_assert(c->step && c->losses && c->caps && c->expected && c->events);
    for (int k = 0; k < c->steps; k++) {
        c->step[k] = (int64_t)value_of(cJSON_GetArrayItem(steps, k));
        c->losses[k] = value_of(cJSON_GetArrayItem(losses, k));
        c->caps[k] = value_of(cJSON_GetArrayItem(caps, k));
        const cJSON *lr = cJSON_GetArrayItem(lrs, k);
        for (size_t g = 0; g < c->groups; g++)
            c->expected[(size_t)k * c->groups + g] =
                value_of(cJSON_IsArray(lr) ? cJSON_GetArrayItem(lr, (int)g) : lr);
        enum glr_event event;
        ck_assert_int_eq(glr_event_parse(cJSON_GetArrayItem(events, k)->valuestring, &event),
                         GLR_OK);
        c->events[k] = (int)event;
    }
}

void autogolden_load(void)
{
    cJSON *golden = testutil_load_data("auto.json");
    const cJSON *j;
    cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(golden, "cases"))
    {
        ck_assert_int_lt(auto_case_count, AUTO_CASES_MAX);
        unpack(&auto_cases[auto_case_count++], j);
    }
    cJSON_Delete(golden);
}

void autogolden_free(void)
{
    for (int i = 0; i < auto_case_count; i++) {
        cJSON_Delete(auto_cases[i].lr);
        cJSON_Delete(auto_cases[i].config);
        free(auto_cases[i].step);
        free(auto_cases[i].losses);
        free(auto_cases[i].caps);
        free(auto_cases[i].expected);
        free(auto_cases[i].events);
    }
    auto_case_count = 0;
}
