/*
 * The time-based policies: after the report of step s the learning rate is the
 * schedule's value at s + 1, with an optional linear warmup from 0; and sequence, which
 * chains policies at milestones. The comparison with torch itself is in
 * tests/python/test_torch_schedules.py.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

START_TEST(multistep_drops_at_each_milestone)
{
    /* Unsorted, with a repeat: the repeated milestone multiplies by gamma twice. */
    struct glr_sched *sched =
        testutil_sched("multistep", "1.0", "{\"milestones\": [6, 2, 6], \"gamma\": 0.5}");
    enum glr_event event;
    ck_assert(lr_after(sched, 0, NULL) == 1.0);   /* t = 1 */
    ck_assert(lr_after(sched, 1, &event) == 0.5); /* t = 2 */
    ck_assert_int_eq(event, GLR_EVENT_DECREASE);
    ck_assert(lr_after(sched, 4, NULL) == 0.5);   /* t = 5 */
    ck_assert(lr_after(sched, 5, NULL) == 0.125); /* t = 6 */
    ck_assert(lr_after(sched, 500, NULL) == 0.125);
    cJSON *config = glr_sched_config_json(sched);
    char *text = cJSON_PrintUnformatted(config);
    ck_assert_str_eq(text, "{\"milestones\":[2,6,6],\"gamma\":0.5,\"warmup_steps\":0}");
    free(text);
    cJSON_Delete(config);
    glr_sched_free(sched);
}
END_TEST

START_TEST(constant_factor_lifts_at_total_iters)
{
    struct glr_sched *sched = testutil_sched("constant_factor", "0.9", NULL);
    ck_assert(glr_sched_lrs(sched)[0] == 0.9 * (1.0 / 3));
    ck_assert(lr_after(sched, 3, NULL) == 0.9 * (1.0 / 3)); /* t = 4 */
    enum glr_event event;
    ck_assert(lr_after(sched, 4, &event) == 0.9); /* t = 5, the default total_iters */
    ck_assert_int_eq(event, GLR_EVENT_INCREASE);
    glr_sched_free(sched);
}
END_TEST

START_TEST(polynomial_decays_to_zero)
{
    struct glr_sched *sched =
        testutil_sched("polynomial", "2.0", "{\"total_iters\": 4, \"power\": 2}");
    ck_assert(lr_after(sched, 0, NULL) == 2.0 * 0.75 * 0.75);
    ck_assert(lr_after(sched, 1, NULL) == 2.0 * 0.25);
    ck_assert(lr_after(sched, 3, NULL) == 0.0);
    ck_assert(lr_after(sched, 40, NULL) == 0.0);
    glr_sched_free(sched);
}
END_TEST

START_TEST(periodic_cosine_climbs_back_past_t_max)
{
    struct glr_sched *sched =
        testutil_sched("cosine", "1.0", "{\"t_max\": 4, \"eta_min\": 0.2, \"periodic\": true}");
    ck_assert(lr_after(sched, 3, NULL) == 0.2); /* t = 4 = t_max */
    ck_assert(lr_after(sched, 7, NULL) == 1.0); /* t = 8: a whole period later */
    double lr = lr_after(sched, 5, NULL);       /* t = 6 */
    ck_assert_msg(fabs(lr - 0.6) < 1e-15, "%.17g", lr);
    glr_sched_free(sched);
}
END_TEST

START_TEST(cosine_restarts_lengthen_by_t_mult)
{
    struct glr_sched *sched =
        testutil_sched("cosine_restarts", "1.0", "{\"t_0\": 2, \"t_mult\": 2, \"eta_min\": 0}");
    /* Cycles of 2, 4, 8 steps start at t = 0, 2, 6, 14: the lr rises only there. */
    for (int64_t s = 0; s < 20; s++) {
        enum glr_event event;
        double lr = lr_after(sched, s, &event);
        bool restart = s + 1 == 2 || s + 1 == 6 || s + 1 == 14;
        ck_assert_msg(restart == (event == GLR_EVENT_INCREASE), "step %lld", (long long)s);
        if (restart)
            ck_assert(lr == 1.0);
        if (s + 1 == 10) /* halfway through the 8-step cycle */
            ck_assert_msg(fabs(lr - 0.5) < 1e-15, "%.17g", lr);
    }
    glr_sched_free(sched);
}
END_TEST

START_TEST(onecycle_rises_then_anneals_and_holds)
{
    struct glr_sched *sched = testutil_sched(
        "onecycle", "[0.1, 0.2]",
        "{\"total_steps\": 11, \"max_lr\": [1, 2], \"pct_start\": 0.5, \"anneal_strategy\": "
        "\"linear\"}");
    ck_assert(glr_sched_lrs(sched)[0] == 1.0 / 25);
    ck_assert(glr_sched_lrs(sched)[1] == 2.0 / 25);
    /* The peak is at pct_start * total_steps - 1 = 4.5: step 4 is just short of it. */
    ck_assert(lr_after(sched, 3, NULL) < 1.0);
    double last = lr_after(sched, 9, NULL); /* t = 10, the last step */
    ck_assert_msg(fabs(last / (1.0 / 25 / 1e4) - 1) < 1e-9, "%.17g", last);
    ck_assert(lr_after(sched, 100, NULL) == last);
    glr_sched_free(sched);
}
END_TEST

START_TEST(onecycle_three_phase_returns_to_the_start_before_the_end)
{
    struct glr_sched *sched = testutil_sched(
        "onecycle", "1.0", "{\"total_steps\": 21, \"pct_start\": 0.25, \"three_phase\": true}");
    /* Phases end at 0.25*21-1 = 4.25, 2*4.25 = 8.5 and 20. */
    double lr = lr_after(sched, 7, NULL); /* t = 8, near the end of the second phase */
    ck_assert(lr > 1.0 / 25 && lr < 0.1);
    ck_assert(lr_after(sched, 19, NULL) == 1.0 / 25 / 1e4);
    glr_sched_free(sched);
}
END_TEST

START_TEST(sequence_chains_phases_that_count_from_their_milestone)
{
    struct glr_sched *sched =
        testutil_sched("sequence", "1.0",
                       "{\"schedules\": [{\"policy\": \"linear\", \"config\": {\"total_steps\": 4, "
                       "\"start_factor\": 0.25, \"end_factor\": 1}}, {\"policy\": \"step\", "
                       "\"config\": {\"step_size\": 2, \"gamma\": 0.5}}], \"milestones\": [4]}");
    ck_assert(glr_sched_lrs(sched)[0] == 0.25);
    ck_assert(!glr_sched_reads_metric(sched));
    ck_assert(lr_after(sched, 0, NULL) == 0.25 + 0.75 * 0.25);
    ck_assert(lr_after(sched, 2, NULL) == 0.25 + 0.75 * 0.75);
    ck_assert(lr_after(sched, 3, NULL) == 1.0); /* t = 4: step's own t = 0 */
    ck_assert(lr_after(sched, 4, NULL) == 1.0); /* its t = 1 */
    ck_assert(lr_after(sched, 5, NULL) == 0.5); /* its t = 2 */
    cJSON *counters = glr_sched_counters_json(sched);
    char *text = cJSON_PrintUnformatted(counters);
    ck_assert_msg(strstr(text, "\"t\":6,\"phase\":1,\"phase_policy\":\"step\"") != NULL, "%s",
                  text);
    free(text);
    cJSON_Delete(counters);
    glr_sched_free(sched);
}
END_TEST

START_TEST(sequence_hands_over_to_greedylr_after_warmup)
{
    const char *config = "{\"schedules\": [{\"policy\": \"linear\", \"config\": {\"total_steps\": "
                         "3, \"start_factor\": 0.1, \"end_factor\": 1}}, {\"policy\": "
                         "\"greedylr\", \"config\": {\"patience\": 1}}], \"milestones\": [3]}";
    struct glr_sched *sched = testutil_sched("sequence", "0.1", config);
    struct glr_sched *greedy = testutil_sched("greedylr", "0.1", "{\"patience\": 1}");
    ck_assert(glr_sched_reads_metric(sched));
    for (int64_t s = 0; s < 3; s++)
        lr_after(sched, s, NULL);
    for (int64_t s = 3; s < 40; s++) {
        struct glr_step_result a, b;
        double loss = 1.0 / (1.0 + (double)s) + (s % 7 == 0 ? 0.5 : 0.0);
        ck_assert_int_eq(glr_sched_step(sched, s, loss, &a), GLR_OK);
        ck_assert_int_eq(glr_sched_step(greedy, s - 3, loss, &b), GLR_OK);
        ck_assert_msg(glr_sched_lrs(sched)[0] == glr_sched_lrs(greedy)[0], "step %lld",
                      (long long)s);
        ck_assert_int_eq(a.event, b.event);
    }
    glr_sched_free(greedy);
    glr_sched_free(sched);
}
END_TEST

START_TEST(sequence_caps_a_time_phase_and_passes_the_cap_to_auto)
{
    struct glr_sched *sched = testutil_sched(
        "sequence", "1.0",
        "{\"schedules\": [{\"policy\": \"constant\"}, {\"policy\": \"auto\"}], \"milestones\": "
        "[2]}");
    ck_assert(glr_sched_takes_lr_cap(sched));
    struct glr_step_result result;
    ck_assert_int_eq(glr_sched_step_capped(sched, 0, 1.0, 0.5, &result), GLR_OK);
    ck_assert(glr_sched_lrs(sched)[0] == 0.5);
    ck_assert_int_eq(result.event, GLR_EVENT_CAPPED);
    ck_assert_int_eq(glr_sched_step_capped(sched, 1, 1.0, INFINITY, &result), GLR_OK);
    ck_assert_int_eq(glr_sched_step_capped(sched, 2, 1.0, 1e-3, &result), GLR_OK);
    ck_assert(glr_sched_lrs(sched)[0] <= 1e-3);
    glr_sched_free(sched);

    /* Without a phase that takes a cap, the sequence refuses one, as its phases would. */
    sched = testutil_sched("sequence", "1.0",
                           "{\"schedules\": [{\"policy\": \"constant\"}, {\"policy\": "
                           "\"greedylr\"}], \"milestones\": [2]}");
    ck_assert(!glr_sched_takes_lr_cap(sched));
    ck_assert_int_eq(glr_sched_step_capped(sched, 0, 1.0, 0.5, &result), GLR_EINVAL);
    glr_sched_free(sched);
}
END_TEST

START_TEST(milestones_are_bounded)
{
    /* GLR_MAX_MILESTONES of them are taken; one more is refused by name. */
    for (int extra = 0; extra <= 1; extra++) {
        size_t count = GLR_MAX_MILESTONES + (size_t)extra;
        char *config = malloc(count * 12 + 48);
        ck_assert_ptr_nonnull(config);
        size_t len = (size_t)sprintf(config, "{\"milestones\": [");
        for (size_t i = 0; i < count; i++)
            len += (size_t)sprintf(config + len, "%s%zu", i ? "," : "", i + 1);
        strcpy(config + len, "], \"gamma\": 0.999}");
        struct glr_sched *sched = NULL;
        char err[GLR_ERR_MAX] = "";
        int rc = testutil_create("multistep", "0.1", config, &sched, err);
        if (extra) {
            ck_assert_int_eq(rc, GLR_EINVAL);
            ck_assert_msg(strstr(err, "milestones") != NULL, "%s", err);
        } else {
            ck_assert_msg(rc == GLR_OK, "%s", err);
            ck_assert(lr_after(sched, GLR_MAX_STEP - 1, NULL) == 0.1 * pow(0.999, 1000));
        }
        glr_sched_free(sched);
        free(config);
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
    tcase_add_test(tc, multistep_drops_at_each_milestone);
    tcase_add_test(tc, constant_factor_lifts_at_total_iters);
    tcase_add_test(tc, polynomial_decays_to_zero);
    tcase_add_test(tc, periodic_cosine_climbs_back_past_t_max);
    tcase_add_test(tc, cosine_restarts_lengthen_by_t_mult);
    tcase_add_test(tc, onecycle_rises_then_anneals_and_holds);
    tcase_add_test(tc, onecycle_three_phase_returns_to_the_start_before_the_end);
    tcase_add_test(tc, sequence_chains_phases_that_count_from_their_milestone);
    tcase_add_test(tc, sequence_hands_over_to_greedylr_after_warmup);
    tcase_add_test(tc, sequence_caps_a_time_phase_and_passes_the_cap_to_auto);
    tcase_add_test(tc, milestones_are_bounded);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
