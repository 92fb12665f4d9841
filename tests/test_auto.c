/*
 * The auto policy through the core's API: every case of tests/data/auto.json (made by the
 * independent model in tests/auto_model.py) answered bit for bit, straight through, with
 * the state saved and restored at random points, and after a reset; its settings and
 * their errors; the stability cap; the version a job keeps.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autogolden.h"
#include "base/jsonx.h"
#include "testutil.h"

static struct glr_sched *create(const struct auto_case *c)
{
    struct glr_sched *sched = NULL;
    char err[GLR_ERR_MAX] = "";
    int rc = glr_sched_create("auto", c->lr, c->config, &sched, err);
    ck_assert_msg(rc == GLR_OK, "%s: create failed: %s", c->name, err);
    return sched;
}

/* Feeds case `index` and compares every lr and event; restores about `restores` times. */
static void run_case(int index, int restores)
{
    ck_assert_int_lt(index, auto_case_count);
    const struct auto_case *c = &auto_cases[index];
    struct glr_sched *sched = create(c);
    uint32_t seed = (uint32_t)index * 2654435761u + 7;
    for (int k = 0; k < c->steps; k++) {
        if (restores > 0 && (int)(testutil_next_random(&seed) % (uint32_t)c->steps) < restores)
            sched = testutil_restore(sched, "auto", c->lr, c->config, c->name);
        struct glr_step_result result;
        if (glr_sched_step_capped(sched, c->step[k], c->losses[k], c->caps[k], &result) != GLR_OK)
            ck_abort_msg("%s report %d: the step failed", c->name, k);
        const double *lrs = glr_sched_lrs(sched);
        for (size_t g = 0; g < c->groups; g++) {
            double want = c->expected[(size_t)k * c->groups + g];
            if (memcmp(&lrs[g], &want, sizeof(want)) != 0)
                ck_abort_msg("%s report %d group %zu: lr %.17g, expected %.17g", c->name, k, g,
                             lrs[g], want);
            if (lrs[g] > c->caps[k])
                ck_abort_msg("%s report %d: lr %.17g above the cap %.17g", c->name, k, lrs[g],
                             c->caps[k]);
        }
        if ((int)result.event != c->events[k])
            ck_abort_msg("%s report %d: event %s, expected %s", c->name, k,
                         glr_event_name(result.event),
                         glr_event_name((enum glr_event)c->events[k]));
    }
    glr_sched_free(sched);
}

START_TEST(golden_straight)
{
    run_case(_i, 0);
}
END_TEST

START_TEST(golden_restored)
{
    run_case(_i, 6);
}
END_TEST

/* A reset goes back to the very start: the same reports give the same answers again. */
START_TEST(golden_after_reset)
{
    const struct auto_case *c = &auto_cases[_i];
    struct glr_sched *sched = create(c);
    struct glr_step_result result;
    for (int k = 0; k < c->steps / 2; k++)
        glr_sched_step_capped(sched, c->step[k], c->losses[k], c->caps[k], &result);
    glr_sched_reset(sched);
    for (int k = 0; k < c->steps; k++) {
        ck_assert_int_eq(
            glr_sched_step_capped(sched, c->step[k], c->losses[k], c->caps[k], &result), GLR_OK);
        ck_assert_msg(glr_sched_lrs(sched)[0] == c->expected[(size_t)k * c->groups],
                      "%s report %d after a reset", c->name, k);
    }
    glr_sched_free(sched);
}
END_TEST

START_TEST(golden_has_every_kind_of_case)
{
    ck_assert_int_eq(auto_case_count, AUTO_GOLDEN_CASES);
    int seen[GLR_EVENT_COUNT] = {0};
    for (int i = 0; i < auto_case_count; i++)
        for (int k = 0; k < auto_cases[i].steps; k++)
            seen[auto_cases[i].events[k]]++;
    const enum glr_event wanted[] = {GLR_EVENT_HOLD,     GLR_EVENT_INCREASE, GLR_EVENT_DECREASE,
                                     GLR_EVENT_COOLDOWN, GLR_EVENT_DIVERGED, GLR_EVENT_CAPPED,
                                     GLR_EVENT_ANNEAL,   GLR_EVENT_WARMUP};
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++)
        ck_assert_msg(seen[wanted[i]] > 0, "no case shows the event %s", glr_event_name(wanted[i]));
}
END_TEST

/* Steps one report; returns the lr of group 0. */
static double step_once(struct glr_sched *sched, int64_t step, double loss, double cap,
                        enum glr_event *event)
{
    struct glr_step_result result;
    ck_assert_int_eq(glr_sched_step_capped(sched, step, loss, cap, &result), GLR_OK);
    if (event)
        *event = result.event;
    return glr_sched_lrs(sched)[0];
}

/* Any initial lr works without a setting, and the defaults are all written out. */
START_TEST(any_lr_needs_no_setting)
{
    const char *lrs[] = {"5e-5", "1e-3", "0.1", "2", "10", "1e-12", "1e12"};
    for (size_t i = 0; i < sizeof(lrs) / sizeof(lrs[0]); i++) {
        struct glr_sched *sched = testutil_sched("auto", lrs[i], NULL);
        double lr0 = glr_sched_initial_lrs(sched)[0];
        for (int k = 0; k < 200; k++) {
            double lr = step_once(sched, k, 2.0 / (1.0 + k) + 0.01 * sin(k), INFINITY, NULL);
            ck_assert(isfinite(lr) && lr > 0);
            ck_assert(lr >= lr0 * 1e-3 && lr <= lr0 * 10);
        }
        cJSON *config = glr_sched_config_json(sched);
        const char *keys[] = {"version",           "total_steps",     "patience",   "threshold",
                              "decrease_factor",   "increase_factor", "min_factor", "max_factor",
                              "diverge_threshold", "probe_until",     "probe_gain", "anneal",
                              "anneal_start",      "warmup"};
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
            ck_assert_msg(cJSON_GetObjectItemCaseSensitive(config, keys[k]), "no %s", keys[k]);
        double version = 0;
        ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(config, "version"), &version));
        ck_assert(version == 1);
        cJSON_Delete(config);
        glr_sched_free(sched);
    }
}
END_TEST

/* With a horizon the run ends annealed: the last answer is 0, the one before it small. */
START_TEST(a_declared_horizon_ends_annealed)
{
    struct glr_sched *sched = testutil_sched("auto", "0.3", "{\"total_steps\": 40}");
    double lr = 0;
    for (int k = 0; k < 40; k++)
        lr = step_once(sched, k, 1.0 / (1.0 + k), INFINITY, NULL);
    ck_assert(lr == 0.0);
    glr_sched_free(sched);
}
END_TEST

/* At scale 1 and without a cap the cosine annealing is the cosine policy's, bit for bit. */
START_TEST(annealing_matches_the_cosine_policy)
{
    struct glr_sched *a = testutil_sched("auto", "0.1",
                                         "{\"total_steps\": 50, \"max_factor\": 1, \"warmup\": 0, "
                                         "\"anneal\": \"cosine\", \"anneal_start\": 0}");
    struct glr_sched *c = testutil_sched("cosine", "0.1", "{\"t_max\": 50}");
    for (int k = 0; k < 50; k++) {
        /* A loss that neither stalls nor jumps: the scale stays 1. */
        double lr = step_once(a, k, 10.0 - 0.1 * k, INFINITY, NULL);
        ck_assert(lr == step_once(c, k, 10.0 - 0.1 * k, INFINITY, NULL));
    }
    glr_sched_free(a);
    glr_sched_free(c);
}
END_TEST

START_TEST(diverged_steps_cut_the_rate_at_once)
{
    struct glr_sched *sched =
        testutil_sched("auto", "0.1", "{\"total_steps\": 1000, \"warmup\": 0}");
    enum glr_event event;
    double before = step_once(sched, 0, 2.0, INFINITY, &event);
    double after = step_once(sched, 1, NAN, INFINITY, &event);
    ck_assert_int_eq(event, GLR_EVENT_DIVERGED);
    ck_assert(after < before * 0.6);
    before = after;
    after = step_once(sched, 2, INFINITY, INFINITY, &event);
    ck_assert_int_eq(event, GLR_EVENT_DIVERGED);
    ck_assert(after < before * 0.6);
    /* A finite loss far above the best is a divergence too. */
    before = step_once(sched, 3, 2.0, INFINITY, &event);
    ck_assert_int_ne(event, GLR_EVENT_DIVERGED);
    for (int k = 4; k < 30 && event != GLR_EVENT_DIVERGED; k++)
        after = step_once(sched, k, 1e6, INFINITY, &event);
    ck_assert_int_eq(event, GLR_EVENT_DIVERGED);
    ck_assert(after < before);
    glr_sched_free(sched);
}
END_TEST

START_TEST(the_cap_is_never_exceeded)
{
    struct glr_sched *sched = testutil_sched("auto", "[1.0, 0.001]", NULL);
    enum glr_event event;
    for (int k = 0; k < 300; k++) {
        double cap = 0.01 + 0.005 * sin(k * 0.3);
        step_once(sched, k, 5.0 / (1.0 + k), cap, &event);
        const double *lrs = glr_sched_lrs(sched);
        ck_assert(lrs[0] <= cap && lrs[1] <= cap);
        ck_assert(lrs[1] <= 0.001 * 10);
    }
    glr_sched_free(sched);
}
END_TEST

START_TEST(only_auto_takes_a_cap)
{
    struct glr_sched *sched = testutil_sched("greedylr", "0.1", NULL);
    struct glr_step_result result;
    ck_assert(!glr_sched_takes_lr_cap(sched));
    ck_assert_int_eq(glr_sched_step_capped(sched, 0, 1.0, 0.01, &result), GLR_EINVAL);
    ck_assert_int_eq(glr_sched_step_capped(sched, 0, 1.0, INFINITY, &result), GLR_OK);
    glr_sched_free(sched);
    sched = testutil_sched("auto", "0.1", NULL);
    ck_assert(glr_sched_takes_lr_cap(sched));
    ck_assert_int_eq(glr_sched_step_capped(sched, 0, 1.0, 0.0, &result), GLR_EINVAL);
    ck_assert_int_eq(glr_sched_step_capped(sched, 0, 1.0, -1.0, &result), GLR_EINVAL);
    ck_assert_int_eq(glr_sched_step_capped(sched, 0, 1.0, NAN, &result), GLR_EINVAL);
    glr_sched_free(sched);
}
END_TEST

static const struct {
    const char *lr;
    const char *config;
    const char *names; /* a word the message must hold */
} bad_configs[] = {
    {"0.1", "{\"version\": 2}", "version"},
    {"0.1", "{\"version\": 0}", "version"},
    {"0.1", "{\"total_steps\": -1}", "total_steps"},
    {"0.1", "{\"patience\": 1.5}", "patience"},
    {"0.1", "{\"threshold\": -0.1}", "threshold"},
    {"0.1", "{\"threshold\": 1}", "threshold"},
    {"0.1", "{\"decrease_factor\": 1}", "decrease_factor"},
    {"0.1", "{\"decrease_factor\": 0}", "decrease_factor"},
    {"0.1", "{\"increase_factor\": 1}", "increase_factor"},
    {"0.1", "{\"increase_factor\": 1000}", "increase_factor"},
    {"0.1", "{\"min_factor\": 0}", "min_factor"},
    {"0.1", "{\"min_factor\": 2}", "min_factor"},
    {"0.1", "{\"max_factor\": 0.5}", "max_factor"},
    {"0.1", "{\"diverge_threshold\": 0}", "diverge_threshold"},
    {"0.1", "{\"probe_until\": 1.5}", "probe_until"},
    {"0.1", "{\"probe_gain\": 0.9}", "probe_gain"},
    {"0.1", "{\"anneal\": \"step\"}", "anneal"},
    {"0.1", "{\"anneal_start\": 1}", "anneal_start"},
    {"0.1", "{\"warmup\": 0.6}", "warmup"},
    {"1e308", "{\"max_factor\": 10}", "max_factor"},
    {"0.1", "{\"min_lr\": 0.01}", "min_lr"},
};

START_TEST(bad_settings_are_refused_by_name)
{
    struct glr_sched *sched = NULL;
    char err[GLR_ERR_MAX] = "";
    int rc = testutil_create("auto", bad_configs[_i].lr, bad_configs[_i].config, &sched, err);
    ck_assert_int_eq(rc, GLR_EINVAL);
    ck_assert_ptr_null(sched);
    ck_assert_msg(strstr(err, bad_configs[_i].names), "message \"%s\" does not name %s", err,
                  bad_configs[_i].names);
}
END_TEST

/* A state that is not auto's, or damaged, is refused and the scheduler stays as it was. */
START_TEST(damaged_states_are_refused)
{
    struct glr_sched *sched = testutil_sched("auto", "0.1", "{\"total_steps\": 100}");
    for (int k = 0; k < 30; k++)
        step_once(sched, k, 1.0 / (1.0 + k), INFINITY, NULL);
    cJSON *good = glr_sched_state_save(sched);
    const char *damage[][2] = {
        {"scale", "-1"},     {"scale", "1e9"},  {"phase", "\"lost\""},         {"ema", "null"},
        {"best", "\"NaN\""}, {"num_bad", "-2"}, {"rate_base", "\"Infinity\""}, {"reports", "0.5"},
    };
    char *before = testutil_print_exact(good);
    for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
        cJSON *bad = cJSON_Duplicate(good, 1);
        cJSON_ReplaceItemInObjectCaseSensitive(bad, damage[i][0], testutil_parse(damage[i][1]));
        char err[GLR_ERR_MAX] = "";
        ck_assert_int_eq(glr_sched_state_load(sched, bad, err), GLR_ECORRUPT);
        ck_assert_msg(strstr(err, damage[i][0]) || strstr(err, "ema"), "%s: %s", damage[i][0], err);
        cJSON *now = glr_sched_state_save(sched);
        char *after = testutil_print_exact(now);
        ck_assert_str_eq(after, before);
        free(after);
        cJSON_Delete(now);
        cJSON_Delete(bad);
    }
    free(before);
    cJSON_Delete(good);
    glr_sched_free(sched);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("auto");
    TCase *tc = tcase_create("golden");
    tcase_add_unchecked_fixture(tc, autogolden_load, autogolden_free);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, golden_has_every_kind_of_case);
    tcase_add_loop_test(tc, golden_straight, 0, AUTO_GOLDEN_CASES);
    tcase_add_loop_test(tc, golden_restored, 0, AUTO_GOLDEN_CASES);
    tcase_add_loop_test(tc, golden_after_reset, 0, AUTO_GOLDEN_CASES);
    suite_add_tcase(suite, tc);

    TCase *rules = tcase_create("rules");
    tcase_add_test(rules, any_lr_needs_no_setting);
    tcase_add_test(rules, a_declared_horizon_ends_annealed);
    tcase_add_test(rules, annealing_matches_the_cosine_policy);
    tcase_add_test(rules, diverged_steps_cut_the_rate_at_once);
    tcase_add_test(rules, the_cap_is_never_exceeded);
    tcase_add_test(rules, only_auto_takes_a_cap);
    tcase_add_loop_test(rules, bad_settings_are_refused_by_name, 0,
                        (int)(sizeof(bad_configs) / sizeof(bad_configs[0])));
    tcase_add_test(rules, damaged_states_are_refused);
    suite_add_tcase(suite, rules);
    return testutil_run(suite);
}
