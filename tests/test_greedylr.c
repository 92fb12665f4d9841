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

/*
 * The cases of transformers' tests/optimization/test_greedy_lr.py, one test each, with the
 * same losses and settings, asserting the lrs those cases assert (exactly, where the
 * arithmetic is the same). Where the service departs from the class on purpose the test
 * asserts ours and says so (README, "Differences from transformers' GreedyLR").
 */

/* The settings of the upstream cases' fixture, with overrides (a JSON object) on top. */
static char *upstream_config(const char *overrides)
{
    cJSON *config = testutil_parse("{\"mode\": \"min\", \"factor\": 0.9, \"patience\": 3, "
                                   "\"min_lr\": 1e-6, \"max_lr\": 1.0, \"cooldown\": 0, "
                                   "\"warmup\": 0, \"verbose\": false}");
    cJSON *extra = testutil_parse(overrides ? overrides : "{}");
    const cJSON *item;
    cJSON_ArrayForEach(item, extra)
    {
        cJSON_DeleteItemFromObjectCaseSensitive(config, item->string);
        cJSON_AddItemToObject(config, item->string, cJSON_Duplicate(item, 1));
    }
    char *text = testutil_print_exact(config);
    cJSON_Delete(extra);
    cJSON_Delete(config);
    return text;
}

/* A scheduler as the upstream fixture makes it: one group at lr 0.1 unless lr says. */
static struct glr_sched *upstream_sched(const char *lr, const char *overrides)
{
    char *config = upstream_config(overrides);
    struct glr_sched *sched = testutil_sched("greedylr", lr ? lr : "0.1", config);
    free(config);
    return sched;
}

/* The upstream fixture's settings with overrides must be refused, naming key. */
static void upstream_refused(const char *overrides, const char *key)
{
    char *config = upstream_config(overrides);
    struct glr_sched *sched = NULL;
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(testutil_create("greedylr", "0.1", config, &sched, err), GLR_EINVAL);
    ck_assert_ptr_null(sched);
    ck_assert_msg(strstr(err, key) != NULL, "\"%s\" does not name %s", err, key);
    free(config);
}

/* The value of a number the core made (an exact raw number, which cJSON does not parse). */
static double number_of(const cJSON *item)
{
    double v = 0;
    ck_assert_msg(jsonx_get_double(item, &v), "expected a number");
    return v;
}

static double lr0(const struct glr_sched *sched)
{
    return glr_sched_lrs(sched)[0];
}

static double config_number(const struct glr_sched *sched, const char *key)
{
    cJSON *config = glr_sched_config_json(sched);
    double v = state_number(config, key);
    cJSON_Delete(config);
    return v;
}

static bool best_is_null(const struct glr_sched *sched)
{
    cJSON *counters = glr_sched_counters_json(sched);
    bool is_null = cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(counters, "best"));
    cJSON_Delete(counters);
    return is_null;
}

static double counter(const struct glr_sched *sched, const char *key)
{
    cJSON *counters = glr_sched_counters_json(sched);
    double v = state_number(counters, key);
    cJSON_Delete(counters);
    return v;
}

START_TEST(test_upstream_initialization_valid_params)
{
    struct glr_sched *sched = upstream_sched(NULL, NULL);
    cJSON *config = glr_sched_config_json(sched);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(config, "mode")->valuestring, "min");
    cJSON_Delete(config);
    ck_assert(config_number(sched, "factor") == 0.9);
    ck_assert(config_number(sched, "patience") == 3);
    /* One min_lr and one max_lr for the one group: a number stands for every group. */
    ck_assert(config_number(sched, "min_lr") == 1e-6);
    ck_assert(config_number(sched, "max_lr") == 1.0);
    ck_assert_uint_eq(glr_sched_groups(sched), 1);
    ck_assert(lr0(sched) == 0.1);
    glr_sched_free(sched);
}
END_TEST

/* Upstream's best starts at -inf in max mode; ours reads null until a finite metric. */
START_TEST(test_upstream_initialization_max_mode)
{
    struct glr_sched *sched = upstream_sched(NULL, "{\"mode\": \"max\"}");
    cJSON *config = glr_sched_config_json(sched);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(config, "mode")->valuestring, "max");
    cJSON_Delete(config);
    ck_assert(best_is_null(sched));
    glr_sched_free(sched);
}
END_TEST

/* Upstream refuses factor >= 1 only; ours also refuses 0 and below (tests/test_config.c). */
START_TEST(test_upstream_initialization_invalid_factor)
{
    upstream_refused("{\"factor\": 1.0}", "factor");
    upstream_refused("{\"factor\": 1.5}", "factor");
}
END_TEST

START_TEST(test_upstream_initialization_invalid_mode)
{
    upstream_refused("{\"mode\": \"unknown\"}", "mode");
}
END_TEST

START_TEST(test_upstream_initialization_invalid_threshold_mode)
{
    upstream_refused("{\"threshold_mode\": \"unknown\"}", "threshold_mode");
}
END_TEST

/* Upstream refuses what is not an optimizer; ours, an lr that is not numbers. */
START_TEST(test_upstream_initialization_not_optimizer)
{
    struct glr_sched *sched = NULL;
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(testutil_create("greedylr", "\"not_an_optimizer\"", NULL, &sched, err),
                     GLR_EINVAL);
    ck_assert_ptr_null(sched);
    ck_assert_msg(strstr(err, "lr") != NULL, "%s", err);
}
END_TEST

START_TEST(test_upstream_lr_decrease_on_plateau)
{
    struct glr_sched *sched = upstream_sched(NULL, "{\"patience\": 3}");
    step(sched, 0, 5.0);
    for (int k = 1; k <= 4; k++)
        step(sched, k, 10.0);
    ck_assert(lr0(sched) < 0.1);
    ck_assert(lr0(sched) == 0.1 * 0.9);
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_lr_increase_on_improvement)
{
    struct glr_sched *sched = upstream_sched(NULL, "{\"patience\": 3}");
    double metric = 10.0;
    for (int k = 0; k < 4; k++) {
        metric *= 0.8;
        step(sched, k, metric);
    }
    ck_assert(lr0(sched) > 0.1);
    ck_assert(lr0(sched) == 0.1 / 0.9);
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_lr_never_below_min_lr)
{
    struct glr_sched *sched =
        upstream_sched(NULL, "{\"patience\": 1, \"min_lr\": 0.01, \"factor\": 0.5}");
    step(sched, 0, 1.0);
    for (int k = 1; k <= 50; k++) {
        step(sched, k, 10.0);
        ck_assert(lr0(sched) >= 0.01); /* upstream checks the last step, to 1e-10 */
    }
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_lr_never_above_max_lr)
{
    struct glr_sched *sched =
        upstream_sched("0.1", "{\"patience\": 1, \"max_lr\": 0.2, \"factor\": 0.5}");
    double metric = 10.0;
    for (int k = 0; k < 50; k++) {
        metric *= 0.8;
        step(sched, k, metric);
        ck_assert(lr0(sched) <= 0.2); /* upstream checks the last step, to 1e-10 */
    }
    ck_assert(lr0(sched) == 0.2);
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_cooldown_prevents_further_reduction)
{
    struct glr_sched *sched = upstream_sched(NULL, "{\"patience\": 2, \"cooldown\": 3}");
    step(sched, 0, 5.0);
    for (int k = 1; k <= 3; k++)
        step(sched, k, 10.0);
    double after_reduction = lr0(sched);
    ck_assert(after_reduction == 0.1 * 0.9);
    for (int k = 4; k <= 6; k++) {
        ck_assert_int_eq(step(sched, k, 10.0), GLR_EVENT_COOLDOWN);
        ck_assert(lr0(sched) == after_reduction);
    }
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_warmup_prevents_further_increase)
{
    struct glr_sched *sched = upstream_sched(NULL, "{\"patience\": 2, \"warmup\": 3}");
    double metric = 10.0;
    for (int k = 0; k < 3; k++) {
        metric *= 0.8;
        step(sched, k, metric);
    }
    double after_increase = lr0(sched);
    ck_assert(after_increase == 0.1 / 0.9);
    for (int k = 3; k < 6; k++) {
        metric *= 0.8;
        ck_assert_int_eq(step(sched, k, metric), GLR_EVENT_WARMUP);
        ck_assert(lr0(sched) == after_increase);
    }
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_smoothing_uses_streaming_average)
{
    struct glr_sched *sched =
        upstream_sched(NULL, "{\"smooth\": true, \"window_size\": 3, \"patience\": 10}");
    ck_assert(config_number(sched, "window_size") == 3);
    const double metrics[] = {10.0, 8.0, 6.0, 4.0};
    struct glr_step_result r;
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(glr_sched_step(sched, k, metrics[k], &r), GLR_OK);
    /* The window holds 8, 6 and 4; the metric judged is their mean. */
    cJSON *state = glr_sched_state_save(sched);
    const cJSON *window = cJSON_GetObjectItemCaseSensitive(state, "window");
    ck_assert_int_eq(cJSON_GetArraySize(window), 3);
    ck_assert(number_of(cJSON_GetArrayItem(window, 0)) == 8.0);
    ck_assert(r.metric == 6.0);
    cJSON_Delete(state);
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_no_smoothing_by_default)
{
    struct glr_sched *sched = upstream_sched(NULL, NULL);
    cJSON *config = glr_sched_config_json(sched);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(config, "smooth")));
    cJSON_Delete(config);
    struct glr_step_result r;
    glr_sched_step(sched, 0, 10.0, &r);
    glr_sched_step(sched, 1, 8.0, &r);
    ck_assert(r.metric == 8.0);
    cJSON *state = glr_sched_state_save(sched);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(state, "window")), 0);
    cJSON_Delete(state);
    glr_sched_free(sched);
}
END_TEST

/* The step count (upstream's last_epoch) is the job's, kept by the service, not the core's. */
START_TEST(test_upstream_state_dict_round_trip)
{
    const char *overrides = "{\"smooth\": true, \"window_size\": 5}";
    struct glr_sched *first = upstream_sched(NULL, overrides);
    const double metrics[] = {10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 6.0, 7.0};
    for (int k = 0; k < 8; k++)
        step(first, k, metrics[k]);
    cJSON *state = glr_sched_state_save(first);
    struct glr_sched *second = upstream_sched(NULL, overrides);
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(glr_sched_state_load(second, state, err) == GLR_OK, "%s", err);
    cJSON_Delete(state);

    const char *counters[] = {"best", "num_bad", "num_good", "cooldown_counter", "warmup_counter"};
    for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
        ck_assert_msg(counter(second, counters[i]) == counter(first, counters[i]), "%s differs",
                      counters[i]);
    ck_assert(lr0(second) == lr0(first));
    const double more[] = {5.0, 4.0, 3.0};
    for (int k = 0; k < 3; k++) {
        step(first, 8 + k, more[k]);
        step(second, 8 + k, more[k]);
        ck_assert(lr0(second) == lr0(first));
    }
    glr_sched_free(first);
    glr_sched_free(second);
}
END_TEST

/*
 * Upstream's state_dict holds settings and state together. Ours: the settings are the job's
 * config (without verbose, which changes nothing), and the saved state holds the rest;
 * the initial lrs are the job's, and reset_start_original is the config's reset_start.
 */
START_TEST(test_upstream_state_dict_contains_all_keys)
{
    struct glr_sched *sched = upstream_sched(NULL, "{\"smooth\": true}");
    step(sched, 0, 10.0);
    cJSON *config = glr_sched_config_json(sched);
    const char *settings[] = {"factor", "min_lr",      "max_lr",     "patience",       "cooldown",
                              "warmup", "mode",        "threshold",  "threshold_mode", "eps",
                              "smooth", "window_size", "reset_start"};
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        ck_assert_msg(cJSON_HasObjectItem(config, settings[i]), "config has no %s", settings[i]);
    ck_assert(!cJSON_HasObjectItem(config, "verbose"));
    cJSON_Delete(config);
    cJSON *state = glr_sched_state_save(sched);
    const char *keys[] = {"cooldown_counter", "warmup_counter", "best", "num_bad",
                          "num_good",         "reset_left",     "lrs",  "window",
                          "window_sum"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        ck_assert_msg(cJSON_HasObjectItem(state, keys[i]), "state has no %s", keys[i]);
    cJSON_Delete(state);
    glr_sched_free(sched);
}
END_TEST

/*
 * Upstream loads a partial state dict and keeps its own values for what is missing, and lets
 * it change settings (factor, patience). Ours refuses a state that is not whole, leaving
 * the scheduler as it was: a damaged checkpoint must not pass for a good one, and the
 * settings belong to the job's config.
 */
START_TEST(test_upstream_load_state_dict_backward_compatibility)
{
    struct glr_sched *sched = upstream_sched(NULL, NULL);
    cJSON *before = glr_sched_state_save(sched);
    cJSON *partial = testutil_parse("{\"version\": 1, \"policy\": \"greedylr\", \"lrs\": [0.1], "
                                    "\"factor\": 0.8, \"patience\": 5, \"best\": 5.0, "
                                    "\"num_bad\": 3}");
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(glr_sched_state_load(sched, partial, err), GLR_ECORRUPT);
    ck_assert_msg(strstr(err, "is missing") != NULL, "%s", err);
    cJSON *after = glr_sched_state_save(sched);
    char *a = cJSON_PrintUnformatted(before), *b = cJSON_PrintUnformatted(after);
    ck_assert_str_eq(a, b);
    ck_assert(config_number(sched, "factor") == 0.9);
    ck_assert(config_number(sched, "patience") == 3);
    ck_assert(counter(sched, "cooldown_counter") == 0);
    free(a);
    free(b);
    cJSON_Delete(before);
    cJSON_Delete(after);
    cJSON_Delete(partial);
    glr_sched_free(sched);
}
END_TEST

/* Upstream's get_greedy_schedule(); ours is the greedylr policy with the same settings. */
START_TEST(test_upstream_factory_function)
{
    struct glr_sched *sched =
        testutil_sched("greedylr", "0.1", "{\"patience\": 5, \"min_lr\": 1e-5, \"factor\": 0.95}");
    ck_assert_str_eq(glr_sched_policy(sched), "greedylr");
    ck_assert(config_number(sched, "patience") == 5);
    ck_assert(config_number(sched, "factor") == 0.95);
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_factory_function_with_kwargs)
{
    struct glr_sched *sched = testutil_sched(
        "greedylr", "0.1", "{\"mode\": \"max\", \"smooth\": true, \"window_size\": 10}");
    cJSON *config = glr_sched_config_json(sched);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(config, "mode")->valuestring, "max");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(config, "smooth")));
    ck_assert(state_number(config, "window_size") == 10);
    cJSON_Delete(config);
    glr_sched_free(sched);
}
END_TEST

/* transformers' get_scheduler() calls it "greedy"; the service's name is "greedylr". */
START_TEST(test_upstream_get_scheduler_integration)
{
    struct glr_sched *sched = NULL;
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(testutil_create("greedy", "0.1", "{\"patience\": 5}", &sched, err),
                     GLR_EINVAL);
    sched = testutil_sched("greedylr", "0.1", "{\"patience\": 5, \"factor\": 0.95}");
    ck_assert(config_number(sched, "patience") == 5);
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_get_last_lr)
{
    struct glr_sched *sched = upstream_sched(NULL, NULL);
    step(sched, 0, 10.0);
    ck_assert_uint_eq(glr_sched_groups(sched), 1);
    cJSON *lr = glr_sched_lr_json(sched);
    ck_assert(number_of(lr) == 0.1);
    cJSON_Delete(lr);
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_reset_at_min_lr)
{
    struct glr_sched *sched = upstream_sched(
        NULL, "{\"patience\": 1, \"min_lr\": 0.01, \"factor\": 0.5, \"reset_start\": 2}");
    step(sched, 0, 1.0);
    for (int k = 1; k <= 100; k++)
        step(sched, k, 10.0);
    ck_assert(lr0(sched) == 0.1);
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_max_mode_lr_decrease)
{
    struct glr_sched *sched = upstream_sched(NULL, "{\"mode\": \"max\", \"patience\": 2}");
    step(sched, 0, 10.0);
    for (int k = 1; k <= 3; k++)
        step(sched, k, 1.0);
    ck_assert(lr0(sched) < 0.1);
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_max_mode_lr_increase)
{
    struct glr_sched *sched = upstream_sched(NULL, "{\"mode\": \"max\", \"patience\": 2}");
    double metric = 1.0;
    for (int k = 0; k < 3; k++) {
        metric *= 1.5;
        step(sched, k, metric);
    }
    ck_assert(lr0(sched) > 0.1);
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_relative_threshold_mode)
{
    struct glr_sched *sched =
        upstream_sched(NULL, "{\"threshold_mode\": \"rel\", \"threshold\": 0.1, \"patience\": 2}");
    step(sched, 0, 10.0);
    step(sched, 1, 9.5); /* not below 10 * (1 - 0.1) */
    ck_assert(counter(sched, "num_bad") == 1);
    glr_sched_free(sched);
}
END_TEST

/* Upstream builds this one without its fixture: the class's defaults, max_lr 1.0 among them. */
START_TEST(test_upstream_multiple_param_groups)
{
    struct glr_sched *sched = testutil_sched(
        "greedylr", "[0.1, 0.01]", "{\"patience\": 2, \"factor\": 0.9, \"min_lr\": 1e-6}");
    ck_assert_uint_eq(glr_sched_groups(sched), 2);
    step(sched, 0, 5.0);
    for (int k = 1; k <= 3; k++)
        step(sched, k, 10.0);
    ck_assert(glr_sched_lrs(sched)[0] == 0.1 * 0.9);
    ck_assert(glr_sched_lrs(sched)[1] == 0.01 * 0.9);
    glr_sched_free(sched);
}
END_TEST

/* Upstream's StreamingAverage is the smoothing window of a job with smooth set. */
START_TEST(test_upstream_streaming_average_basic)
{
    struct glr_sched *sched =
        testutil_sched("greedylr", "0.1", "{\"smooth\": true, \"window_size\": 3}");
    const double metrics[] = {1.0, 2.0, 3.0, 4.0}, means[] = {1.0, 1.5, 2.0, 3.0};
    for (int k = 0; k < 4; k++) {
        struct glr_step_result r;
        ck_assert_int_eq(glr_sched_step(sched, k, metrics[k], &r), GLR_OK);
        ck_assert(r.metric == means[k]);
    }
    glr_sched_free(sched);
}
END_TEST

START_TEST(test_upstream_streaming_average_state_round_trip)
{
    const char *config = "{\"smooth\": true, \"window_size\": 3}";
    struct glr_sched *first = testutil_sched("greedylr", "0.1", config);
    for (int k = 0; k < 3; k++)
        step(first, k, 1.0 + k);
    cJSON *state = glr_sched_state_save(first);
    struct glr_sched *second = testutil_sched("greedylr", "0.1", config);
    ck_assert_int_eq(glr_sched_state_load(second, state, NULL), GLR_OK);
    cJSON *again = glr_sched_state_save(second);
    char *a = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(state, "window"));
    char *b = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(again, "window"));
    ck_assert_str_eq(a, b);
    ck_assert(state_number(again, "window_sum") == state_number(state, "window_sum"));
    ck_assert(config_number(second, "window_size") == 3);
    free(a);
    free(b);
    cJSON_Delete(state);
    cJSON_Delete(again);
    glr_sched_free(first);
    glr_sched_free(second);
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
    tc = tcase_create("upstream");
    tcase_add_test(tc, test_upstream_initialization_valid_params);
    tcase_add_test(tc, test_upstream_initialization_max_mode);
    tcase_add_test(tc, test_upstream_initialization_invalid_factor);
    tcase_add_test(tc, test_upstream_initialization_invalid_mode);
    tcase_add_test(tc, test_upstream_initialization_invalid_threshold_mode);
    tcase_add_test(tc, test_upstream_initialization_not_optimizer);
    tcase_add_test(tc, test_upstream_lr_decrease_on_plateau);
    tcase_add_test(tc, test_upstream_lr_increase_on_improvement);
    tcase_add_test(tc, test_upstream_lr_never_below_min_lr);
    tcase_add_test(tc, test_upstream_lr_never_above_max_lr);
    tcase_add_test(tc, test_upstream_cooldown_prevents_further_reduction);
    tcase_add_test(tc, test_upstream_warmup_prevents_further_increase);
    tcase_add_test(tc, test_upstream_smoothing_uses_streaming_average);
    tcase_add_test(tc, test_upstream_no_smoothing_by_default);
    tcase_add_test(tc, test_upstream_state_dict_round_trip);
    tcase_add_test(tc, test_upstream_state_dict_contains_all_keys);
    tcase_add_test(tc, test_upstream_load_state_dict_backward_compatibility);
    tcase_add_test(tc, test_upstream_factory_function);
    tcase_add_test(tc, test_upstream_factory_function_with_kwargs);
    tcase_add_test(tc, test_upstream_get_scheduler_integration);
    tcase_add_test(tc, test_upstream_get_last_lr);
    tcase_add_test(tc, test_upstream_reset_at_min_lr);
    tcase_add_test(tc, test_upstream_max_mode_lr_decrease);
    tcase_add_test(tc, test_upstream_max_mode_lr_increase);
    tcase_add_test(tc, test_upstream_relative_threshold_mode);
    tcase_add_test(tc, test_upstream_multiple_param_groups);
    tcase_add_test(tc, test_upstream_streaming_average_basic);
    tcase_add_test(tc, test_upstream_streaming_average_state_round_trip);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
