/*
 * Learning a schedule (core/learn.h) and the learned policy that runs it: a fit follows the
 * runs that ended best, refuses too little history, and a learned job answers the model's
 * levels, cuts a diverging loss, stays under the client's cap and survives a saved state.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/glr.h"
#include "core/learn.h"
#include "testutil.h"

#define RUN_POINTS 50

/* tree as a client reads it: printed and parsed again (the core writes numbers as raw text). */
static cJSON *reparsed(cJSON *tree)
{
    char *text = cJSON_PrintUnformatted(tree);
    cJSON_Delete(tree);
    ck_assert_ptr_nonnull(text);
    cJSON *out = cJSON_Parse(text);
    cJSON_free(text);
    ck_assert_ptr_nonnull(out);
    return out;
}

/*
 * A run held at lr factor `factor` (its level log(factor)) for its first half, then at
 * half of it: its points, with a loss falling steadily so that the trend is the same.
 */
static void make_run(double factor, struct learn_point *points)
{
    struct learn_trend trend;
    learn_trend_init(&trend, RUN_POINTS);
    for (int i = 0; i < RUN_POINTS; i++) {
        learn_trend_add(&trend, 1.0 / (1.0 + i));
        double level = log(factor) + (i >= RUN_POINTS / 2 ? log(0.5) : 0);
        points[i] = (struct learn_point){(double)i / RUN_POINTS, learn_trend_value(&trend), level};
    }
}

START_TEST(a_fit_follows_the_runs_that_ended_best)
{
    static struct learn_point points[4][RUN_POINTS];
    const double factors[4] = {0.5, 1.0, 2.0, 4.0};
    /* The best outcome at factor 2, the worst at 0.5 and 4. */
    const double outcomes[4] = {0.9, 0.5, 0.2, 0.8};
    struct learn_run runs[4];
    for (int r = 0; r < 4; r++) {
        make_run(factors[r], points[r]);
        runs[r] = (struct learn_run){points[r], RUN_POINTS, outcomes[r]};
    }
    struct learn_model model;
    struct learn_fit_info info;
    char err[GLR_ERR_MAX];
    ck_assert_int_eq(learn_fit(runs, 4, RUN_POINTS, &model, &info, err), GLR_OK);
    ck_assert_uint_eq(info.runs, 4);
    ck_assert(info.effective_runs > 1 && info.effective_runs < 4);
    ck_assert(info.best_outcome == 0.2);
    ck_assert_int_eq(model.horizon, RUN_POINTS);
    /* Early on near the best run's factor 2, and lower in the second half, as every run. */
    double early = exp(learn_level(&model, 0.2, 0));
    double late = exp(learn_level(&model, 0.8, 0));
    ck_assert_msg(early > 1.4 && early < 2.6, "early factor %g", early);
    ck_assert_msg(late < early * 0.7, "late factor %g, early %g", late, early);
    /* Never past the levels the runs used. */
    ck_assert(model.level_max <= log(4.0) + 1e-12);
    ck_assert(model.level_min >= log(0.25) - 1e-12);
    ck_assert(exp(learn_level(&model, 0.2, 1e6)) <= 4.0 + 1e-9);
}
END_TEST

START_TEST(too_few_runs_are_refused_and_diverged_ones_do_not_count)
{
    static struct learn_point points[3][RUN_POINTS];
    struct learn_run runs[3];
    for (int r = 0; r < 3; r++) {
        make_run(1.0, points[r]);
        runs[r] = (struct learn_run){points[r], RUN_POINTS, 0.5};
    }
    runs[2].outcome = INFINITY;
    struct learn_model model;
    struct learn_fit_info info;
    char err[GLR_ERR_MAX];
    ck_assert_int_eq(learn_fit(runs, 3, RUN_POINTS, &model, &info, err), GLR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "2 finished runs"));
    ck_assert_ptr_nonnull(strstr(err, "learning needs 3"));
    runs[2].outcome = 0.4;
    runs[1].npoints = LEARN_POINTS_MIN - 1;
    ck_assert_int_eq(learn_fit(runs, 3, RUN_POINTS, &model, &info, err), GLR_EINVAL);
    runs[1].npoints = RUN_POINTS;
    ck_assert_int_eq(learn_fit(runs, 3, RUN_POINTS, &model, &info, err), GLR_OK);
    /* Runs that all ended alike weigh alike. */
    runs[2].outcome = 0.5;
    ck_assert_int_eq(learn_fit(runs, 3, RUN_POINTS, &model, &info, err), GLR_OK);
    ck_assert_double_eq_tol(info.effective_runs, 3.0, 1e-9);
}
END_TEST

/* A learned job's config: a model whose level falls from log 2 to log 0.5 over 10 reports. */
static cJSON *learned_config(double trend_gain)
{
    char text[512];
    snprintf(text, sizeof(text),
             "{\"model\": {\"levels\": [%.17g, %.17g], \"trend_gain\": %g, \"trend_center\": 0, "
             "\"level_min\": %.17g, \"level_max\": %.17g, \"horizon\": 10}, \"model_version\": 3}",
             log(2.0), log(0.5), trend_gain, log(0.5), log(2.0));
    cJSON *config = cJSON_Parse(text);
    ck_assert_ptr_nonnull(config);
    return config;
}

static struct glr_sched *learned_job(double lr, double trend_gain)
{
    cJSON *config = learned_config(trend_gain);
    cJSON *rate = cJSON_CreateNumber(lr);
    struct glr_sched *sched = NULL;
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(glr_sched_create("learned", rate, config, &sched, err) == GLR_OK, "%s", err);
    cJSON_Delete(rate);
    cJSON_Delete(config);
    return sched;
}

START_TEST(a_learned_job_answers_the_models_levels)
{
    struct glr_sched *sched = learned_job(0.1, 0);
    /* Created at progress 0: twice the lr. */
    ck_assert_double_eq_tol(glr_sched_lrs(sched)[0], 0.2, 1e-12);
    struct glr_step_result result;
    for (int step = 0; step < 10; step++) {
        ck_assert_int_eq(glr_sched_step(sched, step, 1.0 / (step + 1), &result), GLR_OK);
        double progress = (step + 1) / 10.0;
        double want = 0.1 * exp(log(2.0) + progress * (log(0.5) - log(2.0)));
        ck_assert_double_eq_tol(glr_sched_lrs(sched)[0], want, 1e-12);
        ck_assert_int_eq(result.event, GLR_EVENT_DECREASE);
    }
    /* Past the horizon it holds the last level. */
    ck_assert_int_eq(glr_sched_step(sched, 10, 0.05, &result), GLR_OK);
    ck_assert_double_eq_tol(glr_sched_lrs(sched)[0], 0.05, 1e-12);
    ck_assert_int_eq(result.event, GLR_EVENT_HOLD);
    cJSON *config = reparsed(glr_sched_config_json(sched));
    ck_assert_int_eq((int)cJSON_GetObjectItem(config, "model_version")->valuedouble, 3);
    ck_assert_int_eq((int)cJSON_GetObjectItem(config, "total_steps")->valuedouble, 10);
    cJSON_Delete(config);
    glr_sched_free(sched);
}
END_TEST

START_TEST(a_diverging_loss_is_cut_and_the_cap_holds)
{
    struct glr_sched *sched = learned_job(0.1, 0);
    struct glr_step_result result;
    ck_assert_int_eq(glr_sched_step(sched, 0, 1.0, &result), GLR_OK);
    double before = glr_sched_lrs(sched)[0];
    ck_assert_int_eq(glr_sched_step(sched, 1, NAN, &result), GLR_OK);
    ck_assert_int_eq(result.event, GLR_EVENT_DIVERGED);
    /* Half of what the model gives at the next progress. */
    double want = 0.1 * exp(log(2.0) + 0.2 * (log(0.5) - log(2.0))) * 0.5;
    ck_assert_double_eq_tol(glr_sched_lrs(sched)[0], want, 1e-12);
    ck_assert(glr_sched_lrs(sched)[0] < before);
    /* A loss far above its best is cut as well, once. */
    for (int step = 2; step < 6; step++)
        ck_assert_int_eq(glr_sched_step(sched, step, 100.0, &result), GLR_OK);
    cJSON *counters = reparsed(glr_sched_counters_json(sched));
    ck_assert_double_eq_tol(cJSON_GetObjectItem(counters, "cut")->valuedouble, 0.25, 1e-12);
    cJSON_Delete(counters);
    ck_assert_int_eq(glr_sched_step_capped(sched, 6, 100.0, 0.001, &result), GLR_OK);
    ck_assert_double_eq_tol(glr_sched_lrs(sched)[0], 0.001, 1e-15);
    ck_assert_int_eq(result.event, GLR_EVENT_CAPPED);
    glr_sched_free(sched);
}
END_TEST

START_TEST(a_saved_state_goes_on_exactly)
{
    struct glr_sched *a = learned_job(0.1, 0.5);
    struct glr_sched *b = learned_job(0.1, 0.5);
    struct glr_step_result result;
    for (int step = 0; step < 4; step++)
        ck_assert_int_eq(glr_sched_step(a, step, 1.0 / (step + 1), &result), GLR_OK);
    cJSON *state = reparsed(glr_sched_state_save(a));
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(glr_sched_state_load(b, state, err) == GLR_OK, "%s", err);
    for (int step = 4; step < 12; step++) {
        ck_assert_int_eq(glr_sched_step(a, step, 2.0 / (step + 1), &result), GLR_OK);
        ck_assert_int_eq(glr_sched_step(b, step, 2.0 / (step + 1), &result), GLR_OK);
        ck_assert(glr_sched_lrs(a)[0] == glr_sched_lrs(b)[0]);
    }
    /* A damaged state is refused, naming the field, and changes nothing. */
    cJSON *policy_state = cJSON_GetObjectItem(state, "state");
    cJSON_ReplaceItemInObject(policy_state ? policy_state : state, "cut", cJSON_CreateNumber(2));
    ck_assert_int_eq(glr_sched_state_load(b, state, err), GLR_ECORRUPT);
    ck_assert_msg(strstr(err, "cut") != NULL, "%s", err);
    cJSON_Delete(state);
    glr_sched_free(a);
    glr_sched_free(b);
}
END_TEST

/* Creates a learned job with config text; returns the status, err the message. */
static int create_with(const char *config_text, char *err)
{
    cJSON *config = cJSON_Parse(config_text);
    cJSON *rate = cJSON_CreateNumber(0.1);
    struct glr_sched *sched = NULL;
    int rc = glr_sched_create("learned", rate, config, &sched, err);
    glr_sched_free(sched);
    cJSON_Delete(rate);
    cJSON_Delete(config);
    return rc;
}

START_TEST(bad_models_are_refused_with_the_field_named)
{
    char err[GLR_ERR_MAX];
    ck_assert_int_eq(create_with("{}", err), GLR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "config key model is missing"));
    ck_assert_int_eq(create_with("{\"model\": {\"levels\": [0], \"trend_gain\": 0, "
                                 "\"trend_center\": 0, \"level_min\": 0,"
                                 " \"level_max\": 0, \"horizon\": 5}}",
                                 err),
                     GLR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "levels must be an array of 2 to 32"));
    ck_assert_int_eq(create_with("{\"model\": {\"levels\": [0, 0], \"trend_gain\": 0, "
                                 "\"trend_center\": 0, \"level_min\": 1,"
                                 " \"level_max\": 0, \"horizon\": 5}}",
                                 err),
                     GLR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "level_min must be at most level_max"));
    ck_assert_int_eq(create_with("{\"model\": {\"levels\": [0, 0], \"trend_gain\": 0, "
                                 "\"trend_center\": 0, \"level_min\": 0,"
                                 " \"level_max\": 0, \"horizon\": 5, \"extra\": 1}}",
                                 err),
                     GLR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "unknown key extra"));
    ck_assert_int_eq(create_with("{\"model\": {\"levels\": [0, 0], \"trend_gain\": 0, "
                                 "\"trend_center\": 0, \"level_min\": 0,"
                                 " \"level_max\": 0, \"horizon\": 0.5}}",
                                 err),
                     GLR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "horizon must be an integer"));
    ck_assert_int_eq(create_with("{\"model\": {\"levels\": [0, 0], \"trend_gain\": 0, "
                                 "\"trend_center\": 0, \"level_min\": 0,"
                                 " \"level_max\": 0, \"horizon\": 5}, \"decrease_factor\": 1}",
                                 err),
                     GLR_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "decrease_factor"));
    ck_assert_int_eq(create_with("{\"model\": {\"levels\": [0, 0], \"trend_gain\": 0, "
                                 "\"trend_center\": 0, \"level_min\": 0,"
                                 " \"level_max\": 0, \"horizon\": 5}, \"total_steps\": 8}",
                                 err),
                     GLR_OK);
}
END_TEST

START_TEST(the_trend_stays_bounded_and_finite)
{
    struct learn_trend trend;
    learn_trend_init(&trend, 100);
    /* A loss through 0 and back: the ratio to a slow average near 0 is clamped. */
    const double losses[] = {1.0, 0.01, -0.5, -0.001, 2.0, 1e308, 1e308, -1e308, NAN, INFINITY};
    for (size_t i = 0; i < sizeof(losses) / sizeof(losses[0]); i++) {
        learn_trend_add(&trend, losses[i]);
        double v = learn_trend_value(&trend);
        ck_assert_msg(isfinite(v) && fabs(v) <= LEARN_TREND_MAX, "trend %g after loss %zu", v, i);
        ck_assert(isfinite(trend.fast) && isfinite(trend.slow));
    }
    /* An lr a million times its start or more is read at the ceiling, as a model may give. */
    ck_assert(learn_level_of(1e9) == log(LEARN_LEVEL_CEILING));
    ck_assert(learn_level_of(0) == log(LEARN_LEVEL_FLOOR));
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("learn");
    TCase *tc = tcase_create("learn");
    tcase_add_test(tc, a_fit_follows_the_runs_that_ended_best);
    tcase_add_test(tc, too_few_runs_are_refused_and_diverged_ones_do_not_count);
    tcase_add_test(tc, a_learned_job_answers_the_models_levels);
    tcase_add_test(tc, a_diverging_loss_is_cut_and_the_cap_holds);
    tcase_add_test(tc, a_saved_state_goes_on_exactly);
    tcase_add_test(tc, bad_models_are_refused_with_the_field_named);
    tcase_add_test(tc, the_trend_stays_bounded_and_finite);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
