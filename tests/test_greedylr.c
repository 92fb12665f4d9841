/*
 * GreedyLR behaviour beyond the golden vectors: diverged (non-finite) metrics, the
 * per-group bounds, the reset at the floor, and the warmup and cooldown periods; then the
 * cases of transformers' own GreedyLR tests, driven through the core (test_upstream_*).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "testutil.h"

static enum glr_event step(struct glr_sched *sched, int64_t k, double metric)
{
    struct glr_step_result result;
    ck_assert_int_eq(glr_sched_step(sched, k, metric, &result), GLR_OK);
    return result.event;
}

static double state_number(const cJSON *state, const char *key)
{
    double v = 0;
    ck_assert_msg(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(state, key), &v),
                  "state has no %s", key);
    return v;
}

/* A noisy decreasing loss, the same every run. */
static double loss_at(int k)
{
    return 5.0 / (1.0 + 0.01 * k) + 0.05 * sin(k * 1.7);
}

static const char *const smooth_config =
    "{\"smooth\": true, \"window_size\": 7, \"patience\": 2, \"factor\": 0.9, "
    "\"min_lr\": 1e-4, \"reset_start\": 3, \"threshold\": 0.001}";

/*
 * A NaN in the middle of a smoothed sequence: the window is left alone, the counters move
 * as for a bad step, and every later decision equals that of a run in which the step had
 * been a plain bad step that never entered the window.
 */
static void check_non_finite(double bad)
{
    enum { BEFORE = 40, AFTER = 400 };
    struct glr_sched *with_nan = testutil_sched("greedylr", "0.01", smooth_config);
    for (int k = 0; k < BEFORE; k++)
        step(with_nan, k, loss_at(k));
    cJSON *before = glr_sched_state_save(with_nan);

    /* The same step taken with a finite loss that is certainly worse. */
    struct glr_sched *plain_bad = testutil_sched("greedylr", "0.01", smooth_config);
    ck_assert_int_eq(glr_sched_state_load(plain_bad, before, NULL), GLR_OK);
    enum glr_event event_bad = step(plain_bad, BEFORE, 1e300);
    cJSON *after_bad = glr_sched_state_save(plain_bad);

    enum glr_event event_nan = step(with_nan, BEFORE, bad);
    ck_assert_int_eq(event_nan, event_bad);
    cJSON *after_nan = glr_sched_state_save(with_nan);

    /* Counters as for the bad step; window exactly as before the step. */
    const char *counters[] = {"best",           "num_good",  "num_bad", "cooldown_counter",
                              "warmup_counter", "reset_left"};
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        ck_assert_msg(state_number(after_nan, counters[i]) == state_number(after_bad, counters[i]),
                      "%s differs from a plain bad step", counters[i]);
    ck_assert(state_number(after_nan, "window_sum") == state_number(before, "window_sum"));
    char *window_before =
        cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(before, "window"));
    char *window_after =
        cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(after_nan, "window"));
    ck_assert_str_eq(window_after, window_before);
    free(window_before);
    free(window_after);

    /* The reference run: the plain bad step's counters and lrs, the untouched window. */
    cJSON *expected = cJSON_Duplicate(after_bad, 1);
    cJSON_ReplaceItemInObjectCaseSensitive(
        expected, "window", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(before, "window"), 1));
    cJSON_ReplaceItemInObjectCaseSensitive(expected, "window_sum",
                                           jsonx_number(state_number(before, "window_sum")));
    struct glr_sched *reference = testutil_sched("greedylr", "0.01", smooth_config);
    ck_assert_int_eq(glr_sched_state_load(reference, expected, NULL), GLR_OK);
    for (int k = BEFORE + 1; k < BEFORE + AFTER; k++) {
        struct glr_step_result a, b;
        glr_sched_step(with_nan, k, loss_at(k), &a);
        glr_sched_step(reference, k, loss_at(k), &b);
        if (a.event != b.event || glr_sched_lrs(with_nan)[0] != glr_sched_lrs(reference)[0] ||
            a.metric != b.metric || !isfinite(a.metric))
            ck_abort_msg("step %d differs after a non-finite metric", k);
    }
    cJSON_Delete(before);
    cJSON_Delete(after_bad);
    cJSON_Delete(after_nan);
    cJSON_Delete(expected);
    glr_sched_free(with_nan);
    glr_sched_free(plain_bad);
    glr_sched_free(reference);
}

START_TEST(nan_is_a_plain_bad_step)
{
    check_non_finite(NAN);
}
END_TEST

START_TEST(infinities_are_plain_bad_steps)
{
    check_non_finite(INFINITY);
    check_non_finite(-INFINITY);
}
END_TEST

START_TEST(minus_infinity_never_becomes_best)
{
    struct glr_sched *sched = testutil_sched("greedylr", "0.1", "{\"patience\": 1}");
    step(sched, 0, 1.0);
    step(sched, 1, -INFINITY);
    cJSON *counters = glr_sched_counters_json(sched);
    ck_assert(state_number(counters, "best") == 1.0);
    ck_assert(state_number(counters, "num_bad") == 1);
    cJSON_Delete(counters);
    /* Later improvements still count as improvements. */
    step(sched, 2, 0.5);
    ck_assert_int_eq(step(sched, 3, 0.25), GLR_EVENT_INCREASE);
    glr_sched_free(sched);
}
END_TEST

/* The reference takes +inf as the new best in max mode, and then nothing ever improves. */
START_TEST(plus_infinity_never_becomes_best_in_max_mode)
{
    struct glr_sched *sched =
        testutil_sched("greedylr", "0.1", "{\"mode\": \"max\", \"patience\": 1}");
    step(sched, 0, 1.0);
    step(sched, 1, INFINITY);
    cJSON *counters = glr_sched_counters_json(sched);
    ck_assert(state_number(counters, "best") == 1.0);
    ck_assert(state_number(counters, "num_bad") == 1);
    cJSON_Delete(counters);
    step(sched, 2, 2.0);
    ck_assert_int_eq(step(sched, 3, 3.0), GLR_EVENT_INCREASE);
    glr_sched_free(sched);
}
END_TEST

/*
 * With smoothing, the reference puts a NaN into the window, and its mean stays NaN for
 * window_size steps; an infinity likewise. Here such a loss stays out of the window.
 */
START_TEST(smoothing_leaves_non_finite_losses_out)
{
    const double bad[] = {NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct glr_sched *sched =
            testutil_sched("greedylr", "0.1", "{\"smooth\": true, \"window_size\": 3}");
        struct glr_step_result r;
        glr_sched_step(sched, 0, 1.0, &r);
        glr_sched_step(sched, 1, bad[i], &r);
        glr_sched_step(sched, 2, 2.0, &r);
        ck_assert(r.metric == 1.5);
        glr_sched_step(sched, 3, 3.0, &r);
        ck_assert(r.metric == 2.0);
        cJSON *state = glr_sched_state_save(sched);
        ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(state, "window")), 3);
        cJSON_Delete(state);
        glr_sched_free(sched);
    }
}
END_TEST

/* best reads null (not a number standing for infinity) until a finite metric is judged. */
START_TEST(best_is_null_before_the_first_finite_metric)
{
    const char *const configs[] = {"{\"mode\": \"min\"}", "{\"mode\": \"max\"}"};
    for (size_t i = 0; i < 2; i++) {
        struct glr_sched *sched = testutil_sched("greedylr", "0.1", configs[i]);
        cJSON *counters = glr_sched_counters_json(sched);
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(counters, "best")));
        cJSON_Delete(counters);
        step(sched, 0, NAN);
        step(sched, 1, INFINITY);
        step(sched, 2, -INFINITY);
        counters = glr_sched_counters_json(sched);
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(counters, "best")));
        cJSON_Delete(counters);
        step(sched, 3, 0.5);
        counters = glr_sched_counters_json(sched);
        ck_assert(state_number(counters, "best") == 0.5);
        cJSON_Delete(counters);
        glr_sched_free(sched);
    }
}
END_TEST

START_TEST(increase_stops_at_each_groups_max)
{
    struct glr_sched *sched = testutil_sched(
        "greedylr", "[0.1, 0.2]", "{\"patience\": 0, \"factor\": 0.5, \"max_lr\": [0.3, 1.0]}");
    double loss = 10;
    for (int k = 0; k < 6; k++, loss /= 2)
        ck_assert_int_eq(step(sched, k, loss), GLR_EVENT_INCREASE);
    const double *lrs = glr_sched_lrs(sched);
    ck_assert(lrs[0] == 0.3);
    ck_assert(lrs[1] == 1.0);
    glr_sched_free(sched);
}
END_TEST

START_TEST(eps_suppresses_tiny_changes)
{
    struct glr_sched *sched =
        testutil_sched("greedylr", "0.1", "{\"patience\": 0, \"eps\": 0.5, \"min_lr\": 0.001}");
    ck_assert_int_eq(step(sched, 0, 1.0), GLR_EVENT_INCREASE);
    ck_assert_int_eq(step(sched, 1, 2.0), GLR_EVENT_DECREASE);
    ck_assert(glr_sched_lrs(sched)[0] == 0.1);
    glr_sched_free(sched);
}
END_TEST

START_TEST(reset_after_sitting_at_the_floor)
{
    struct glr_sched *sched =
        testutil_sched("greedylr", "0.1",
                       "{\"patience\": 0, \"factor\": 0.5, \"min_lr\": 0.05, \"reset_start\": 3}");
    ck_assert_int_eq(step(sched, 0, 1.0), GLR_EVENT_INCREASE);
    ck_assert_int_eq(step(sched, 1, 2.0), GLR_EVENT_DECREASE); /* 0.2 -> 0.1 */
    ck_assert_int_eq(step(sched, 2, 2.0), GLR_EVENT_DECREASE); /* 0.1 -> 0.05: floor, 2 left */
    ck_assert(glr_sched_lrs(sched)[0] == 0.05);
    ck_assert_int_eq(step(sched, 3, 2.0), GLR_EVENT_DECREASE); /* 1 left */
    ck_assert_int_eq(step(sched, 4, 2.0), GLR_EVENT_RESET);
    ck_assert(glr_sched_lrs(sched)[0] == 0.1);
    cJSON *counters = glr_sched_counters_json(sched);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(counters, "best")));
    ck_assert(state_number(counters, "reset_left") == 3);
    cJSON_Delete(counters);
    glr_sched_free(sched);
}
END_TEST

START_TEST(warmup_and_cooldown_skip_judgement)
{
    struct glr_sched *sched = testutil_sched(
        "greedylr", "0.1", "{\"patience\": 0, \"warmup\": 2, \"cooldown\": 1, \"min_lr\": 0.01}");
    ck_assert_int_eq(step(sched, 0, 1.0), GLR_EVENT_INCREASE);
    ck_assert_int_eq(step(sched, 1, 0.5), GLR_EVENT_WARMUP);
    ck_assert_int_eq(step(sched, 2, 0.4), GLR_EVENT_WARMUP);
    ck_assert_int_eq(step(sched, 3, 9.0), GLR_EVENT_DECREASE);
    ck_assert_int_eq(step(sched, 4, 9.0), GLR_EVENT_COOLDOWN);
    ck_assert_int_eq(step(sched, 5, 0.1), GLR_EVENT_INCREASE);
    glr_sched_free(sched);
}
END_TEST

START_TEST(max_mode_rewards_a_rising_metric)
{
    struct glr_sched *sched =
        testutil_sched("greedylr", "0.1", "{\"mode\": \"max\", \"patience\": 1}");
    step(sched, 0, 0.5);
    ck_assert_int_eq(step(sched, 1, 0.6), GLR_EVENT_INCREASE);
    ck_assert(glr_sched_lrs(sched)[0] == 0.1 / 0.95);
    glr_sched_free(sched);
}
END_TEST

START_TEST(smoothing_reports_the_mean)
{
    struct glr_sched *sched =
        testutil_sched("greedylr", "0.1", "{\"smooth\": true, \"window_size\": 2}");
    struct glr_step_result r;
    glr_sched_step(sched, 0, 1.0, &r);
    ck_assert(r.metric == 1.0);
    glr_sched_step(sched, 1, 2.0, &r);
    ck_assert(r.metric == 1.5);
    glr_sched_step(sched, 2, 4.0, &r);
    ck_assert(r.metric == 3.0);
    glr_sched_free(sched);
}
END_TEST

START_TEST(reset_returns_to_the_start)
{
    struct glr_sched *sched = testutil_sched("greedylr", "0.1", "{\"patience\": 0}");
    cJSON *initial = glr_sched_state_save(sched);
    for (int k = 0; k < 20; k++)
        step(sched, k, loss_at(k));
    glr_sched_reset(sched);
    cJSON *again = glr_sched_state_save(sched);
    char *a = cJSON_PrintUnformatted(initial), *b = cJSON_PrintUnformatted(again);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    cJSON_Delete(initial);
    cJSON_Delete(again);
    glr_sched_free(sched);
}
END_TEST

START_TEST(overflowing_window_sum_is_restorable)
{
    /* Finite losses near DBL_MAX overflow the running sum, as in the reference. */
    const char *config = "{\"smooth\": true, \"window_size\": 2}";
    struct glr_sched *sched = testutil_sched("greedylr", "0.1", config);
    step(sched, 0, 1e308);
    step(sched, 1, 1e308);
    cJSON *state = glr_sched_state_save(sched);
    struct glr_sched *restored = testutil_sched("greedylr", "0.1", config);
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(glr_sched_state_load(restored, state, err) == GLR_OK, "%s", err);
    for (int k = 2; k < 20; k++) {
        struct glr_step_result a, b;
        glr_sched_step(sched, k, 1.0, &a);
        glr_sched_step(restored, k, 1.0, &b);
        ck_assert(a.event == b.event);
        ck_assert(glr_sched_lrs(sched)[0] == glr_sched_lrs(restored)[0]);
    }
    cJSON_Delete(state);
    glr_sched_free(restored);
    glr_sched_free(sched);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("greedylr");
    TCase *tc = tcase_create("non_finite");
    tcase_add_test(tc, nan_is_a_plain_bad_step);
    tcase_add_test(tc, infinities_are_plain_bad_steps);
    tcase_add_test(tc, minus_infinity_never_becomes_best);
    tcase_add_test(tc, plus_infinity_never_becomes_best_in_max_mode);
    tcase_add_test(tc, smoothing_leaves_non_finite_losses_out);
    tcase_add_test(tc, best_is_null_before_the_first_finite_metric);
    suite_add_tcase(suite, tc);
    tc = tcase_create("rules");
    tcase_add_test(tc, increase_stops_at_each_groups_max);
    tcase_add_test(tc, eps_suppresses_tiny_changes);
    tcase_add_test(tc, reset_after_sitting_at_the_floor);
    tcase_add_test(tc, warmup_and_cooldown_skip_judgement);
    tcase_add_test(tc, max_mode_rewards_a_rising_metric);
    tcase_add_test(tc, smoothing_reports_the_mean);
    tcase_add_test(tc, reset_returns_to_the_start);
    tcase_add_test(tc, overflowing_window_sum_is_restorable);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
