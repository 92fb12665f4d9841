/*
 * The golden vectors: every case of tests/data/schedulers.json (GreedyLR from the
 * reference algorithm, ReduceLROnPlateau from PyTorch) must be reproduced bit for bit,
 * straight through and with the state saved and restored at random points.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "testutil.h"

static struct glr_sched *create(const struct golden_case *gc)
{
    struct glr_sched *sched = NULL;
    char err[GLR_ERR_MAX] = "";
    int rc = glr_sched_create(gc->policy, gc->lr, gc->config, &sched, err);
    ck_assert_msg(rc == GLR_OK, "%s: create failed: %s", gc->name, err);
    return sched;
}

/*
 * Feeds every loss of golden case `index` and compares every learning rate and event.
 * With restore_points > 0, the state goes through save/restore at about that many random
 * steps. Plain comparisons in the loop: every ck_assert records a checkpoint through a
 * pipe, which would cost more than the scheduler itself.
 */
static void run_case(int index, int restore_points)
{
    ck_assert_int_eq(golden_count, GOLDEN_CASES);
    const struct golden_case *gc = &golden_cases[index];
    struct glr_sched *sched = create(gc);
    ck_assert_int_eq(glr_sched_groups(sched), gc->groups);

    uint32_t seed = (uint32_t)index * 2654435761u + 1;
    for (int k = 0; k < gc->steps; k++) {
        if (restore_points > 0 &&
            (int)(testutil_next_random(&seed) % (uint32_t)gc->steps) < restore_points)
            sched = testutil_restore(sched, gc->policy, gc->lr, gc->config, gc->name);
        struct glr_step_result result;
        if (glr_sched_step(sched, k, gc->losses[k], &result) != GLR_OK)
            ck_abort_msg("%s step %d: the step failed", gc->name, k);
        const double *lrs = glr_sched_lrs(sched);
        const double *want = &gc->expected[(size_t)k * gc->groups];
        for (size_t g = 0; g < gc->groups; g++)
            if (lrs[g] != want[g])
                ck_abort_msg("%s step %d group %zu: lr %.17g, expected %.17g", gc->name, k, g,
                             lrs[g], want[g]);
        if (gc->events && (int)result.event != gc->events[k])
            ck_abort_msg("%s step %d: event %s, expected %s", gc->name, k,
                         glr_event_name(result.event),
                         glr_event_name((enum glr_event)gc->events[k]));
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
    run_case(_i, 5);
}
END_TEST

START_TEST(golden_has_every_case)
{
    ck_assert_int_eq(golden_count, GOLDEN_CASES);
    int steps = 0;
    for (int i = 0; i < GOLDEN_CASES; i++)
        steps += golden_cases[i].steps;
    ck_assert_int_eq(steps, GOLDEN_STEPS);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("golden");
    TCase *tc = tcase_create("golden");
    /* Loaded once in the parent; every forked case reads its copy. */
    tcase_add_unchecked_fixture(tc, golden_load, golden_free);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, golden_has_every_case);
    tcase_add_loop_test(tc, golden_straight, 0, GOLDEN_CASES);
    tcase_add_loop_test(tc, golden_restored, 0, GOLDEN_CASES);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
