/* Loading the golden vectors (see golden.h). */
#include "golden.h"

#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

struct golden_case golden_cases[GOLDEN_CASES];
int golden_count;

static double number(const cJSON *item)
{
    if (!cJSON_IsNumber(item))
        ck_abort_msg("golden data: expected a number");
    return item->valuedouble;
}

static void unpack_case(struct golden_case *gc, const cJSON *c)
{
    snprintf(gc->name, sizeof(gc->name), "%s",
             cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring);
    snprintf(gc->policy, sizeof(gc->policy), "%s",
             cJSON_GetObjectItemCaseSensitive(c, "policy")->valuestring);
    gc->lr = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(c, "lr"), 1);
    gc->config = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(c, "config"), 1);
    gc->groups = cJSON_IsArray(gc->lr) ? (size_t)cJSON_GetArraySize(gc->lr) : 1;
    const cJSON *losses = cJSON_GetObjectItemCaseSensitive(c, "losses");
    const cJSON *expected = cJSON_GetObjectItemCaseSensitive(c, "expected_lr");
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(c, "expected_event");
    gc->steps = cJSON_GetArraySize(losses);
    ck_assert_int_eq(cJSON_GetArraySize(expected), gc->steps);
    gc->losses = calloc((size_t)gc->steps, sizeof(double));
    gc->expected = calloc((size_t)gc->steps * gc->groups, sizeof(double));
    gc->events = events ? calloc((size_t)gc->steps, sizeof(int)) : NULL;
    ck_assert(gc->losses && gc->expected && (gc->events || !events));

    int k = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, losses) gc->losses[k++] = number(item);
    k = 0;
    cJSON_ArrayForEach(item, expected)
    {
        if (cJSON_IsArray(item)) {
            ck_assert_int_eq(cJSON_GetArraySize(item), (int)gc->groups);
            size_t g = 0;
            const cJSON *v;
            cJSON_ArrayForEach(v, item) gc->expected[(size_t)k * gc->groups + g++] = number(v);
        } else {
            ck_assert_int_eq(gc->groups, 1);
            gc->expected[k] = number(item);
        }
        k++;
    }
    if (events) {
        ck_assert_int_eq(cJSON_GetArraySize(events), gc->steps);
        k = 0;
        cJSON_ArrayForEach(item, events)
        {
            enum glr_event event;
            ck_assert(cJSON_IsString(item));
            ck_assert_int_eq(glr_event_parse(item->valuestring, &event), GLR_OK);
            gc->events[k++] = (int)event;
        }
    }
}

void golden_load(void)
{
    cJSON *golden = testutil_load_data("schedulers.json");
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(golden, "cases"))
    {
        if (golden_count < GOLDEN_CASES)
            unpack_case(&golden_cases[golden_count], c);
        golden_count++;
    }
    cJSON_Delete(golden);
}

void golden_free(void)
{
    for (int i = 0; i < golden_count && i < GOLDEN_CASES; i++) {
        cJSON_Delete(golden_cases[i].lr);
        cJSON_Delete(golden_cases[i].config);
        free(golden_cases[i].losses);
        free(golden_cases[i].expected);
        free(golden_cases[i].events);
    }
    golden_count = 0;
}
