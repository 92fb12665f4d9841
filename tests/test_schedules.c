/*
 * The time-based policies: after the report of step s the learning rate is the
 * schedule's value at s + 1, with an optional linear warmup from 0.
 */
#include <math.h>

#include "testutil.h"

#define PI 3.14159265358979323846

/* Reports step s and returns the learning rate of group 0. */
static double lr_after(struct glr_sched *sched, int64_t s, enum glr_event *event)
{
    struct glr_step_result result;
    ck_assert_int_eq(glr_sched_step(sched, s, 1.0, &result), GLR_OK);
    if (event)
        *event = result.event;
    return glr_sched_lrs(sched)[0];
}

START_TEST(constant_keeps_the_rate)
{
    struct glr_sched *sched = testutil_sched("constant", "0.3", NULL);
    enum glr_event event;
    for (int s = 0; s < 10; s++) {
        ck_assert(lr_after(sched, s, &event) == 0.3);
        ck_assert_int_eq(event, GLR_EVENT_HOLD);
    }
    glr_sched_free(sched);
}
END_TEST

START_TEST(step_decays_every_step_size)
{
    struct glr_sched *sched = testutil_sched("step", "1.0", "{\"step_size\": 2, \"gamma\": 0.5}");
    enum glr_event event;
    ck_assert(lr_after(sched, 0, &event) == 1.0); /* t = 1 */
    ck_assert(lr_after(sched, 1, &event) == 0.5); /* t = 2 */
    ck_assert_int_eq(event, GLR_EVENT_DECREASE);
    ck_assert(lr_after(sched, 2, &event) == 0.5); /* t = 3 */
    ck_assert_int_eq(event, GLR_EVENT_HOLD);
    ck_assert(lr_after(sched, 3, NULL) == 0.25);     /* t = 4 */
    ck_assert(lr_after(sched, 9, NULL) == 1.0 / 32); /* steps may skip: t = 10 */
    glr_sched_free(sched);
}
END_TEST

START_TEST(exponential_multiplies_each_step)
{
    struct glr_sched *sched = testutil_sched("exponential", "2.0", "{\"gamma\": 0.5}");
    ck_assert(lr_after(sched, 0, NULL) == 1.0);
    ck_assert(lr_after(sched, 2, NULL) == 0.25);
    glr_sched_free(sched);
}
END_TEST

START_TEST(cosine_anneals_to_eta_min)
{
    struct glr_sched *sched = testutil_sched("cosine", "1.0", "{\"t_max\": 10, \"eta_min\": 0.1}");
    for (int s = 0; s < 15; s++) {
        int t = s + 1 < 10 ? s + 1 : 10;
        double expected = 0.1 + (1.0 - 0.1) * (1 + cos(PI * t / 10.0)) / 2;
        double lr = lr_after(sched, s, NULL);
        ck_assert_msg(fabs(lr - expected) < 1e-15, "step %d: %.17g vs %.17g", s, lr, expected);
    }
    ck_assert(glr_sched_lrs(sched)[0] == 0.1);
    glr_sched_free(sched);
}
END_TEST

START_TEST(linear_moves_between_factors)
{
    struct glr_sched *sched = testutil_sched(
        "linear", "[1.0, 2.0]", "{\"total_steps\": 4, \"start_factor\": 1, \"end_factor\": 0.5}");
    ck_assert(lr_after(sched, 0, NULL) == 1.0 * (1 + (0.5 - 1) * 0.25));
    ck_assert(glr_sched_lrs(sched)[1] == 2.0 * (1 + (0.5 - 1) * 0.25));
    ck_assert(lr_after(sched, 3, NULL) == 0.5);
    ck_assert(lr_after(sched, 100, NULL) == 0.5);
    glr_sched_free(sched);
}
END_TEST

START_TEST(warmup_ramps_from_zero)
{
    struct glr_sched *sched = testutil_sched("constant", "0.4", "{\"warmup_steps\": 4}");
    ck_assert(glr_sched_lrs(sched)[0] == 0.0);
    enum glr_event event;
    ck_assert(lr_after(sched, 0, &event) == 0.1);
    ck_assert_int_eq(event, GLR_EVENT_WARMUP);
    ck_assert(lr_after(sched, 1, &event) == 0.2);
    ck_assert(lr_after(sched, 2, &event) == 0.4 * 3 / 4);
    ck_assert_int_eq(event, GLR_EVENT_WARMUP);
    ck_assert(lr_after(sched, 3, &event) == 0.4);
    ck_assert_int_eq(event, GLR_EVENT_INCREASE);
    glr_sched_free(sched);
}
END_TEST

START_TEST(step_numbers_are_bounded)
{
    struct glr_sched *sched = testutil_sched("constant", "0.4", NULL);
    struct glr_step_result result;
    ck_assert_int_eq(glr_sched_step(sched, -1, 1.0, &result), GLR_EINVAL);
    ck_assert_int_eq(glr_sched_step(sched, GLR_MAX_STEP + 1, 1.0, &result), GLR_EINVAL);
    ck_assert_int_eq(glr_sched_step(sched, GLR_MAX_STEP, 1.0, &result), GLR_OK);
    glr_sched_free(sched);
}
END_TEST

START_TEST(growing_schedule_stays_finite)
{
    /* An lr range test grows the lr; far enough out a double overflows. */
    struct glr_sched *sched = testutil_sched("exponential", "0.1", "{\"gamma\": 2}");
    double lr = lr_after(sched, 1100, NULL);
    ck_assert(isfinite(lr) && lr > 1e300);
    cJSON *state = glr_sched_state_save(sched);
    struct glr_sched *restored = testutil_sched("exponential", "0.1", "{\"gamma\": 2}");
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(glr_sched_state_load(restored, state, err) == GLR_OK, "%s", err);
    ck_assert(glr_sched_lrs(restored)[0] == lr);
    cJSON_Delete(state);
    glr_sched_free(restored);
    glr_sched_free(sched);
}
END_TEST

START_TEST(huge_rates_stay_finite)
{
    /*
     * fuzz_config found the first: the warmup multiplied DBL_MAX by the step before
     * dividing. Cosine had the same fault (lr0 - eta_min times two, then halved).
     */
    const char *configs[][3] = {
        {"exponential", "0.1", "{\"gamma\": 1e308, \"warmup_steps\": 100}"},
        {"constant", "1e308", "{\"warmup_steps\": 100}"},
        {"cosine", "0.1", "{\"t_max\": 50, \"eta_min\": 1.7e308}"},
        {"cosine", "1.7e308", "{\"t_max\": 50}"},
    };
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        struct glr_sched *sched = testutil_sched(configs[i][0], configs[i][1], configs[i][2]);
        ck_assert(isfinite(glr_sched_lrs(sched)[0]) && glr_sched_lrs(sched)[0] >= 0);
        for (int s = 0; s < 100; s++) {
            double lr = lr_after(sched, s, NULL);
            ck_assert_msg(isfinite(lr) && lr >= 0, "%s, step %d: %g", configs[i][0], s, lr);
        }
        /* And the state it saves loads again: a restart does not call it damaged. */
        cJSON *state = glr_sched_state_save(sched);
        struct glr_sched *restored = testutil_sched(configs[i][0], configs[i][1], configs[i][2]);
        char err[GLR_ERR_MAX] = "";
        ck_assert_msg(glr_sched_state_load(restored, state, err) == GLR_OK, "%s", err);
        cJSON_Delete(state);
        glr_sched_free(restored);
        glr_sched_free(sched);
    }
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("schedules");
    TCase *tc = tcase_create("schedules");
    tcase_add_test(tc, constant_keeps_the_rate);
    tcase_add_test(tc, step_decays_every_step_size);
    tcase_add_test(tc, exponential_multiplies_each_step);
    tcase_add_test(tc, cosine_anneals_to_eta_min);
    tcase_add_test(tc, linear_moves_between_factors);
    tcase_add_test(tc, warmup_ramps_from_zero);
    tcase_add_test(tc, step_numbers_are_bounded);
    tcase_add_test(tc, growing_schedule_stays_finite);
    tcase_add_test(tc, huge_rates_stay_finite);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
