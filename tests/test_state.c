/*
 * Saved state: every policy continues exactly after a save and restore, infinities
 * survive the trip, and a damaged state is refused without touching the scheduler.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "testutil.h"

struct policy_case {
    const char *policy;
    const char *lr;
    const char *config;
};

static const struct policy_case policies[] = {
    {"greedylr", "[0.1, 0.05]", "{\"smooth\": true, \"window_size\": 5, \"patience\": 2}"},
    {"greedylr", "0.1", "{\"mode\": \"max\", \"cooldown\": 2, \"warmup\": 1, \"patience\": 1}"},
    {"plateau", "0.1", "{\"patience\": 2, \"cooldown\": 1}"},
    {"constant", "0.1", "{\"warmup_steps\": 5}"},
    {"step", "0.1", "{\"step_size\": 3}"},
    {"exponential", "0.1", "{\"gamma\": 0.9}"},
    {"cosine", "0.1", "{\"t_max\": 20}"},
    {"linear", "0.1", "{\"total_steps\": 20}"},
    {"multistep", "0.1", "{\"milestones\": [5, 9, 30]}"},
    {"constant_factor", "0.1", "{\"total_iters\": 12}"},
    {"polynomial", "0.1", "{\"total_iters\": 40, \"power\": 2}"},
    {"cosine", "0.1", "{\"t_max\": 20, \"periodic\": true}"},
    {"cosine_restarts", "0.1", "{\"t_0\": 5, \"t_mult\": 2}"},
    {"onecycle", "[0.1, 0.2]", "{\"total_steps\": 50, \"three_phase\": true}"},
    /* Cuts fall in both phases, and the one on the milestone itself. */
    {"sequence", "0.1",
     "{\"schedules\": [{\"policy\": \"linear\", \"config\": {\"total_steps\": 14}}, "
     "{\"policy\": \"greedylr\", \"config\": {\"patience\": 1, \"smooth\": true, "
     "\"window_size\": 3}}, {\"policy\": \"plateau\"}], \"milestones\": [14, 42]}"},
};
#define POLICY_CASES ((int)(sizeof(policies) / sizeof(policies[0])))

static double loss_at(int k)
{
    return 3.0 / (1.0 + 0.05 * k) + 0.2 * sin(k * 0.9);
}

static char *state_text(const struct glr_sched *sched)
{
    cJSON *state = glr_sched_state_save(sched);
    ck_assert_ptr_nonnull(state);
    char *text = cJSON_PrintUnformatted(state);
    cJSON_Delete(state);
    return text;
}

START_TEST(restored_scheduler_continues_exactly)
{
    const struct policy_case *pc = &policies[_i];
    struct glr_sched *straight = testutil_sched(pc->policy, pc->lr, pc->config);
    for (int cut = 0; cut < 60; cut += 7) {
        struct glr_sched *first = testutil_sched(pc->policy, pc->lr, pc->config);
        for (int k = 0; k < cut; k++) {
            struct glr_step_result r;
            glr_sched_step(first, k, loss_at(k), &r);
        }
        char *text = state_text(first);
        glr_sched_free(first);
        cJSON *state = testutil_parse(text);
        free(text);
        struct glr_sched *second = testutil_sched(pc->policy, pc->lr, pc->config);
        char err[GLR_ERR_MAX];
        ck_assert_msg(glr_sched_state_load(second, state, err) == GLR_OK, "%s", err);
        cJSON_Delete(state);

        glr_sched_reset(straight);
        for (int k = 0; k < 80; k++) {
            struct glr_step_result a, b;
            glr_sched_step(straight, k, loss_at(k), &a);
            if (k < cut)
                continue;
            glr_sched_step(second, k, loss_at(k), &b);
            for (size_t g = 0; g < glr_sched_groups(straight); g++)
                if (glr_sched_lrs(straight)[g] != glr_sched_lrs(second)[g])
                    ck_abort_msg("%s cut %d step %d: lr differs", pc->policy, cut, k);
            if (a.event != b.event)
                ck_abort_msg("%s cut %d step %d: event differs", pc->policy, cut, k);
        }
        glr_sched_free(second);
    }
    glr_sched_free(straight);
}
END_TEST

START_TEST(infinite_best_is_saved_and_shown_as_null)
{
    struct glr_sched *sched = testutil_sched("greedylr", "0.1", NULL);
    char *text = state_text(sched);
    ck_assert_msg(strstr(text, "\"best\":\"Infinity\"") != NULL, "%s", text);
    free(text);
    cJSON *counters = glr_sched_counters_json(sched);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(counters, "best")));
    cJSON_Delete(counters);
    glr_sched_free(sched);
}
END_TEST

struct damage {
    const char *key;
    const char *value; /* JSON text, or NULL to remove the key */
    const char *names;
};

static const struct damage damages[] = {
    {"version", "2", "version"},
    {"policy", "\"plateau\"", "policy"},
    {"lrs", "[0.1]", "lrs"},
    {"lrs", "[0.1, -1]", "lrs[1]"},
    {"best", "\"NaN\"", "best"},
    {"best", NULL, "best"},
    {"num_bad", "-1", "num_bad"},
    {"num_good", "1.5", "num_good"},
    {"cooldown_counter", "99", "cooldown_counter"},
    {"reset_left", "100000", "reset_left"},
    {"window", "[1, 2, 3, 4, 5, 6]", "window"},
    {"window", "[1, \"NaN\"]", "window"},
    {"window", "{}", "window"},
};
#define DAMAGE_COUNT ((int)(sizeof(damages) / sizeof(damages[0])))

START_TEST(damaged_state_is_refused_and_changes_nothing)
{
    const struct damage *d = &damages[_i];
    const struct policy_case *pc = &policies[0];
    struct glr_sched *sched = testutil_sched(pc->policy, pc->lr, pc->config);
    for (int k = 0; k < 9; k++) {
        struct glr_step_result r;
        glr_sched_step(sched, k, loss_at(k), &r);
    }
    char *before = state_text(sched);
    cJSON *state = testutil_parse(before);
    if (d->value)
        cJSON_ReplaceItemInObjectCaseSensitive(state, d->key, testutil_parse(d->value));
    else
        cJSON_DeleteItemFromObjectCaseSensitive(state, d->key);
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(glr_sched_state_load(sched, state, err), GLR_ECORRUPT);
    ck_assert_msg(strstr(err, d->names) != NULL, "\"%s\" does not name %s", err, d->names);
    char *after = state_text(sched);
    ck_assert_str_eq(after, before);
    free(before);
    free(after);
    cJSON_Delete(state);
    glr_sched_free(sched);
}
END_TEST

START_TEST(damaged_sequence_state_names_the_phase)
{
    const struct policy_case *pc = &policies[POLICY_CASES - 1];
    struct glr_sched *sched = testutil_sched(pc->policy, pc->lr, pc->config);
    for (int k = 0; k < 20; k++) {
        struct glr_step_result r;
        glr_sched_step(sched, k, loss_at(k), &r);
    }
    char *before = state_text(sched);
    const char *edits[][2] = {
        {"\"num_bad\":", "\"num_bad\":-1,\"was\":"}, /* inside the greedylr phase */
        {"\"phase_state\":", "\"other\":"},          /* no phase state at all */
        {"\"t\":20", "\"t\":-20"},
    };
    for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        char *at = strstr(before, edits[i][0]);
        ck_assert_msg(at != NULL, "%s in %s", edits[i][0], before);
        size_t head = (size_t)(at - before), old_len = strlen(edits[i][0]);
        size_t new_len = strlen(edits[i][1]);
        char *damaged = malloc(strlen(before) + new_len + 1);
        ck_assert_ptr_nonnull(damaged);
        memcpy(damaged, before, head);
        strcpy(damaged + head, edits[i][1]);
        strcat(damaged, at + old_len);
        cJSON *state = testutil_parse(damaged);
        char err[GLR_ERR_MAX] = "";
        ck_assert_int_eq(glr_sched_state_load(sched, state, err), GLR_ECORRUPT);
        ck_assert_msg(i == 2 || strstr(err, "phase 1") != NULL, "%s", err);
        char *after = state_text(sched);
        ck_assert_str_eq(after, before);
        free(after);
        cJSON_Delete(state);
        free(damaged);
    }
    free(before);
    glr_sched_free(sched);
}
END_TEST

START_TEST(state_must_be_an_object)
{
    struct glr_sched *sched = testutil_sched("plateau", "0.1", NULL);
    cJSON *array = cJSON_CreateArray();
    char err[GLR_ERR_MAX] = "";
    ck_assert_int_eq(glr_sched_state_load(sched, array, err), GLR_ECORRUPT);
    ck_assert_int_eq(glr_sched_state_load(sched, NULL, err), GLR_ECORRUPT);
    cJSON_Delete(array);
    glr_sched_free(sched);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("state");
    TCase *tc = tcase_create("round_trip");
    tcase_add_loop_test(tc, restored_scheduler_continues_exactly, 0, POLICY_CASES);
    tcase_add_test(tc, infinite_best_is_saved_and_shown_as_null);
    suite_add_tcase(suite, tc);
    tc = tcase_create("damage");
    tcase_add_loop_test(tc, damaged_state_is_refused_and_changes_nothing, 0, DAMAGE_COUNT);
    tcase_add_test(tc, damaged_sequence_state_names_the_phase);
    tcase_add_test(tc, state_must_be_an_object);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
