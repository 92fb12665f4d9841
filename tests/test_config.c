/*
 * Configuration validation: every rule refuses bad input with GLR_EINVAL and a message
 * that names the key at fault, and good input gets every default filled in.
 */
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "testutil.h"

struct rule {
    const char *policy;
    const char *lr;
    const char *config;
    const char *names; /* text the message must contain */
};

static const struct rule rules[] = {
    /* greedylr */
    {"greedylr", "0.1", "{\"factor\": 0}", "factor"},
    {"greedylr", "0.1", "{\"factor\": 1}", "factor"},
    {"greedylr", "0.1", "{\"factor\": 1.5}", "factor"},
    {"greedylr", "0.1", "{\"factor\": \"half\"}", "factor"},
    {"greedylr", "0.1", "{\"factor\": -0.5}", "factor"},
    {"greedylr", "0.1", "{\"patience\": -1}", "patience"},
    {"greedylr", "0.1", "{\"patience\": 2.5}", "patience"},
    {"greedylr", "0.1", "{\"cooldown\": -1}", "cooldown"},
    {"greedylr", "0.1", "{\"warmup\": -3}", "warmup"},
    {"greedylr", "0.1", "{\"cooldown\": 1.5}", "cooldown"},
    {"greedylr", "0.1", "{\"warmup\": 0.5}", "warmup"},
    {"greedylr", "0.1", "{\"window_size\": 0}", "window_size"},
    {"greedylr", "0.1", "{\"window_size\": 100001}", "window_size"},
    {"greedylr", "0.1", "{\"reset_start\": 0}", "reset_start"},
    {"greedylr", "0.1", "{\"threshold\": -1e-6}", "threshold"},
    {"greedylr", "0.1", "{\"eps\": -1}", "eps"},
    {"greedylr", "0.1", "{\"mode\": \"minimum\"}", "mode"},
    {"greedylr", "0.1", "{\"threshold_mode\": \"relative\"}", "threshold_mode"},
    {"greedylr", "0.1", "{\"smooth\": 1}", "smooth"},
    {"greedylr", "0.1", "{\"verbose\": \"yes\"}", "verbose must be true or false"},
    {"greedylr", "0.1", "{\"verbose\": 1}", "verbose"},
    {"greedylr", "0.1", "{\"verbose\": null}", "verbose"},
    {"greedylr", "0", NULL, "lr"},
    {"greedylr", "-0.1", NULL, "lr"},
    {"greedylr", "1e400", NULL, "lr"},
    {"greedylr", "\"0.1\"", NULL, "lr"},
    {"greedylr", "[]", NULL, "lr"},
    {"greedylr", "[0.1, null]", NULL, "lr[1]"},
    {"greedylr",
     "[0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,"
     "0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,"
     "0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,"
     "0.1,0.1]",
     NULL, "lr"},
    {"greedylr", "0.1", "{\"min_lr\": 0.5, \"max_lr\": 0.2}", "min_lr"},
    {"greedylr", "3e-4", NULL, "min_lr"},
    {"greedylr", "2", NULL, "max_lr"},
    {"greedylr", "[0.1, 0.2]", "{\"min_lr\": [0.01]}", "min_lr"},
    {"greedylr", "[0.1, 0.2]", "{\"max_lr\": [1, 1, 1]}", "max_lr"},
    {"greedylr", "[0.1, 0.2]", "{\"min_lr\": [0.01, \"x\"]}", "min_lr[1]"},
    {"greedylr", "0.1", "{\"patince\": 3}", "\"patince\" (did you mean \"patience\"?)"},
    {"greedylr", "0.1", "{\"colour\": 3}", "unknown config key \"colour\""},
    {"greedylr", "0.1", "{\"patience\": 3, \"patience\": 4}", "\"patience\" is given twice"},
    {"greedylr", "0.1", "[1, 2]", "config must be a JSON object"},
    {"greedylr", "0.1", "{\"min_lr\": -0.1}", "min_lr"},
    /* Numbers in messages are written as the client would: shortest, not 17 digits. */
    {"greedylr", "0.1", "{\"min_lr\": -0.1}", "got -0.1"},
    {"greedylr", "0.1", "{\"factor\": 1.1}", "got 1.1"},
    {"greedylr", "-0.1", NULL, "got -0.1"},
    {"greedylr", "0.3", "{\"max_lr\": 0.2}", "lr 0.3 of group 0 is above max_lr 0.2"},
    {"auto", "0.1", "{\"warmup\": 0.7}", "got 0.7"},
    {"cosine", "0.1", "{\"t_max\": 10, \"eta_min\": -0.3}", "got -0.3"},
    /* plateau */
    {"plateau", "0.1", "{\"factor\": 1}", "factor"},
    {"plateau", "0.1", "{\"patience\": -1}", "patience"},
    {"plateau", "0.1", "{\"threshold_mode\": \"x\"}", "threshold_mode"},
    {"plateau", "0.1", "{\"min_lr\": -1}", "min_lr"},
    {"plateau", "0.1", "{\"window_size\": 3}", "window_size"},
    /* time-based */
    {"step", "0.1", NULL, "step_size"},
    {"step", "0.1", "{\"step_size\": 10, \"gamma\": 0}", "gamma"},
    {"exponential", "0.1", NULL, "gamma"},
    {"cosine", "0.1", NULL, "t_max"},
    {"cosine", "0.1", "{\"t_max\": 10, \"eta_min\": -1}", "eta_min"},
    {"linear", "0.1", NULL, "total_steps"},
    {"linear", "0.1", "{\"total_steps\": 10, \"end_factor\": -1}", "end_factor"},
    {"constant", "0.1", "{\"warmup_steps\": -1}", "warmup_steps"},
    {"constant", "0.1", "{\"factor\": 0.5}", "factor"},
    {"multistep", "0.1", NULL, "milestones"},
    {"multistep", "0.1", "{\"milestones\": [0]}", "milestones[0]"},
    {"multistep", "0.1", "{\"milestones\": [3, 2.5]}", "milestones[1]"},
    {"multistep", "0.1", "{\"milestones\": 3}", "milestones"},
    {"multistep", "0.1", "{\"milestones\": [3], \"gamma\": -1}", "gamma"},
    {"constant_factor", "0.1", "{\"factor\": 1.5}", "factor must be in [0, 1], got 1.5"},
    {"constant_factor", "0.1", "{\"total_iters\": -1}", "total_iters"},
    {"polynomial", "0.1", "{\"total_iters\": 0}", "total_iters"},
    {"polynomial", "0.1", "{\"power\": -1}", "power"},
    {"cosine", "0.1", "{\"t_max\": 10, \"periodic\": 1}", "periodic"},
    {"cosine_restarts", "0.1", NULL, "t_0"},
    {"cosine_restarts", "0.1", "{\"t_0\": 10, \"t_mult\": 0}", "t_mult"},
    {"cosine_restarts", "0.1", "{\"t_0\": 10, \"t_mult\": 1.5}", "t_mult"},
    {"cosine_restarts", "0.1", "{\"t_0\": 10, \"T_mult\": 2}", "did you mean \"t_mult\"?"},
    {"onecycle", "0.1", NULL, "total_steps"},
    {"onecycle", "0.1", "{\"total_steps\": 10, \"max_lr\": -1}", "max_lr"},
    {"onecycle", "[0.1, 0.2]", "{\"total_steps\": 10, \"max_lr\": [1]}", "max_lr"},
    {"onecycle", "0.1", "{\"total_steps\": 10, \"pct_start\": 1.5}", "pct_start"},
    {"onecycle", "0.1", "{\"total_steps\": 10, \"anneal_strategy\": \"cosine\"}",
     "anneal_strategy"},
    {"onecycle", "0.1", "{\"total_steps\": 10, \"div_factor\": 0}", "div_factor"},
    {"onecycle", "0.1", "{\"total_steps\": 10, \"final_div_factor\": -1}", "final_div_factor"},
    {"onecycle", "0.1", "{\"total_steps\": 10, \"three_phase\": \"yes\"}", "three_phase"},
    {"onecycle", "0.1", "{\"total_steps\": 10, \"warmup_steps\": 3}", "warmup_steps"},
    /* sequence: the message leads to the phase at fault */
    {"sequence", "0.1", NULL, "schedules is required"},
    {"sequence", "0.1", "{\"schedules\": []}", "schedules must hold 1 to 16"},
    {"sequence", "0.1", "{\"schedules\": [1]}", "schedules[0] must be an object"},
    {"sequence", "0.1", "{\"schedules\": [{\"config\": {}}]}", "schedules[0].policy"},
    {"sequence", "0.1", "{\"schedules\": [{\"policy\": \"sequence\"}]}",
     "a sequence cannot hold a sequence"},
    {"sequence", "0.1", "{\"schedules\": [{\"policy\": \"nope\"}]}", "schedules[0]"},
    {"sequence", "0.1",
     "{\"schedules\": [{\"policy\": \"constant\"}, {\"policy\": \"step\", \"config\": "
     "{}}], \"milestones\": [5]}",
     "schedules[1] (step): step_size"},
    {"sequence", "0.1", "{\"schedules\": [{\"policy\": \"constant\"}, {\"policy\": \"constant\"}]}",
     "milestones must hold one step number fewer"},
    {"sequence", "0.1",
     "{\"schedules\": [{\"policy\": \"constant\"}, {\"policy\": \"constant\"}, "
     "{\"policy\": \"constant\"}], \"milestones\": [5, 5]}",
     "milestones must increase"},
    {"sequence", "0.1",
     "{\"schedules\": [{\"policy\": \"constant\"}], \"milestones\": [], \"extra\": 1}", "extra"},
    /* the policy itself */
    {"greedy", "0.1", NULL, "policy \"greedy\" is unknown"},
};
#define RULE_COUNT ((int)(sizeof(rules) / sizeof(rules[0])))

START_TEST(rule_refuses_and_names_the_key)
{
    const struct rule *r = &rules[_i];
    struct glr_sched *sched = NULL;
    char err[GLR_ERR_MAX];
    int rc = testutil_create(r->policy, r->lr, r->config, &sched, err);
    ck_assert_msg(rc == GLR_EINVAL, "rule %d (%s %s) was accepted", _i, r->lr,
                  r->config ? r->config : "");
    ck_assert_ptr_null(sched);
    ck_assert_msg(strstr(err, r->names) != NULL, "rule %d: message \"%s\" does not name %s", _i,
                  err, r->names);
}
END_TEST

START_TEST(greedylr_defaults_are_filled_in)
{
    struct glr_sched *sched = testutil_sched(NULL, "0.1", NULL);
    ck_assert_str_eq(glr_sched_policy(sched), "greedylr");
    cJSON *config = glr_sched_config_json(sched);
    char *text = cJSON_PrintUnformatted(config);
    ck_assert_str_eq(text, "{\"mode\":\"min\",\"factor\":0.95,\"patience\":10,\"threshold\":1e-06,"
                           "\"threshold_mode\":\"abs\",\"cooldown\":0,\"warmup\":0,"
                           "\"min_lr\":0.001,\"max_lr\":1,\"eps\":1e-08,\"smooth\":false,"
                           "\"window_size\":50,\"reset_start\":500}");
    free(text);
    cJSON_Delete(config);
    glr_sched_free(sched);
}
END_TEST

/*
 * transformers' GreedyLR takes verbose, which only logs there: it is accepted so that its
 * settings can be passed on whole, and left out of the config, so that it changes nothing,
 * not even which job a create names.
 */
START_TEST(greedylr_verbose_is_accepted_and_not_echoed)
{
    struct glr_sched *plain = testutil_sched("greedylr", "0.1", "{\"patience\": 3}");
    cJSON *plain_config = glr_sched_config_json(plain);
    char *expected = cJSON_PrintUnformatted(plain_config);
    cJSON_Delete(plain_config);
    const char *const configs[] = {"{\"patience\": 3, \"verbose\": true}",
                                   "{\"patience\": 3, \"verbose\": false}"};
    for (size_t i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
        struct glr_sched *sched = testutil_sched("greedylr", "0.1", configs[i]);
        cJSON *config = glr_sched_config_json(sched);
        ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(config, "verbose"));
        char *text = cJSON_PrintUnformatted(config);
        ck_assert_str_eq(text, expected);
        free(text);
        cJSON_Delete(config);
        glr_sched_free(sched);
    }
    free(expected);
    glr_sched_free(plain);
}
END_TEST

START_TEST(plateau_defaults_are_pytorchs)
{
    struct glr_sched *sched = testutil_sched("plateau", "0.1", "{}");
    cJSON *config = glr_sched_config_json(sched);
    char *text = cJSON_PrintUnformatted(config);
    ck_assert_str_eq(text, "{\"mode\":\"min\",\"factor\":0.1,\"patience\":10,\"threshold\":0.0001,"
                           "\"threshold_mode\":\"rel\",\"cooldown\":0,\"min_lr\":0,\"eps\":1e-08}");
    free(text);
    cJSON_Delete(config);
    glr_sched_free(sched);
}
END_TEST

START_TEST(per_group_values_keep_their_shape)
{
    struct glr_sched *sched =
        testutil_sched("greedylr", "[0.1, 0.01]", "{\"min_lr\": [0.001, 0.0001], \"max_lr\": 1}");
    ck_assert_uint_eq(glr_sched_groups(sched), 2);
    cJSON *config = glr_sched_config_json(sched);
    ck_assert(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(config, "min_lr")));
    double max_lr = 0;
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(config, "max_lr"), &max_lr));
    ck_assert(max_lr == 1.0);
    cJSON_Delete(config);
    cJSON *lr = glr_sched_lr_json(sched);
    ck_assert(cJSON_IsArray(lr));
    ck_assert_int_eq(cJSON_GetArraySize(lr), 2);
    cJSON_Delete(lr);
    glr_sched_free(sched);

    sched = testutil_sched("greedylr", "0.1", NULL);
    lr = glr_sched_initial_lr_json(sched);
    double value = 0;
    ck_assert(jsonx_get_double(lr, &value));
    ck_assert(value == 0.1);
    cJSON_Delete(lr);
    glr_sched_free(sched);
}
END_TEST

START_TEST(null_config_means_defaults)
{
    struct glr_sched *sched = testutil_sched("cosine", "0.1", "{\"t_max\": 100}");
    cJSON *config = glr_sched_config_json(sched);
    double eta_min = -1;
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(config, "eta_min"), &eta_min));
    ck_assert(eta_min == 0);
    cJSON_Delete(config);
    glr_sched_free(sched);
    sched = testutil_sched("greedylr", "0.5", "null");
    glr_sched_free(sched);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("config");
    TCase *tc = tcase_create("validation");
    tcase_add_loop_test(tc, rule_refuses_and_names_the_key, 0, RULE_COUNT);
    suite_add_tcase(suite, tc);
    tc = tcase_create("defaults");
    tcase_add_test(tc, greedylr_defaults_are_filled_in);
    tcase_add_test(tc, greedylr_verbose_is_accepted_and_not_echoed);
    tcase_add_test(tc, plateau_defaults_are_pytorchs);
    tcase_add_test(tc, per_group_values_keep_their_shape);
    tcase_add_test(tc, null_config_means_defaults);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
