/* The plateau policy (PyTorch's ReduceLROnPlateau) beyond the golden vectors. */
#include <math.h>

#include "base/jsonx.h"
#include "testutil.h"

static enum glr_event step(struct glr_sched *sched, int64_t k, double metric)
{
    struct glr_step_result result;
    ck_assert_int_eq(glr_sched_step(sched, k, metric, &result), GLR_OK);
    return result.event;
}

static double counter(const struct glr_sched *sched, const char *key)
{
    cJSON *counters = glr_sched_counters_json(sched);
    double v = NAN;
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(counters, key), &v));
    cJSON_Delete(counters);
    return v;
}

START_TEST(best_moves_during_cooldown)
{
    struct glr_sched *sched =
        testutil_sched("plateau", "1.0", "{\"patience\": 0, \"cooldown\": 2, \"factor\": 0.5}");
    step(sched, 0, 10.0);
    ck_assert_int_eq(step(sched, 1, 11.0), GLR_EVENT_DECREASE);
    ck_assert(glr_sched_lrs(sched)[0] == 0.5);
    /* In cooldown, as in PyTorch, a better metric still becomes the best. */
    ck_assert_int_eq(step(sched, 2, 3.0), GLR_EVENT_COOLDOWN);
    ck_assert(counter(sched, "best") == 3.0);
    ck_assert_int_eq(step(sched, 3, 4.0), GLR_EVENT_COOLDOWN);
    ck_assert_int_eq(step(sched, 4, 4.0), GLR_EVENT_DECREASE);
    ck_assert(glr_sched_lrs(sched)[0] == 0.25);
    glr_sched_free(sched);
}
END_TEST

START_TEST(floor_is_min_lr)
{
    struct glr_sched *sched =
        testutil_sched("plateau", "[1.0, 0.1]", "{\"patience\": 0, \"min_lr\": [0.5, 0.0]}");
    step(sched, 0, 1.0);
    for (int k = 1; k < 5; k++)
        ck_assert_int_eq(step(sched, k, 2.0), GLR_EVENT_DECREASE);
    ck_assert(glr_sched_lrs(sched)[0] == 0.5);
    ck_assert(glr_sched_lrs(sched)[1] < 1e-4);
    glr_sched_free(sched);
}
END_TEST

START_TEST(non_finite_metrics_are_bad_epochs)
{
    struct glr_sched *sched = testutil_sched("plateau", "1.0", "{\"patience\": 5}");
    step(sched, 0, 1.0);
    step(sched, 1, NAN);
    step(sched, 2, -INFINITY);
    ck_assert(counter(sched, "best") == 1.0);
    ck_assert(counter(sched, "num_bad_epochs") == 2);
    glr_sched_free(sched);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("plateau");
    TCase *tc = tcase_create("plateau");
    tcase_add_test(tc, best_moves_during_cooldown);
    tcase_add_test(tc, floor_is_min_lr);
    tcase_add_test(tc, non_finite_metrics_are_bad_epochs);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
