/*
 * What the fuzz harnesses share: the entry point libFuzzer calls (tests/fuzz/replay.c calls
 * it too, for every file of a corpus, in `make check`), a check that stops the run on a
 * broken promise, and the scheduler round trips of sched_check.c.
 */
#ifndef GLR_FUZZ_H
#define GLR_FUZZ_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/glr.h"

/* Runs one input; returns 0 (libFuzzer reserves other values). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Stops at once when a promise of the code under test is broken: libFuzzer then keeps
 * the input as a crash, and the replay test fails.
 */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Most steps one input takes, so that every input stays fast. */
#define FUZZ_STEPS_MAX 64

/*
 * Steps sched through the losses (an array of numbers, null or "NaN"-style strings; NULL
 * for none), checking after each step what the store relies on: the learning rates are
 * finite and not negative, and the saved state loads into a scheduler rebuilt from the
 * printed policy, lr and config, which then goes on exactly like sched. The k-th step is
 * numbered by the k-th item of steps when that is a valid step number, else k, so that
 * the time-based policies are also taken far along.
 */
void fuzz_sched_walk(struct glr_sched *sched, const cJSON *losses, const cJSON *steps);

/* Prints a tree made by the core (NULL when out of memory); the caller frees the text. */
char *fuzz_print(cJSON *tree);

#endif
