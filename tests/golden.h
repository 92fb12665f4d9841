/*
 * Test helper: the golden vectors of tests/data/schedulers.json, unpacked into flat arrays
 * so that each forked test case reads them cheaply.
 */
#ifndef GLR_TEST_GOLDEN_H
#define GLR_TEST_GOLDEN_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* The number of cases and of steps in the shared golden file. */
#define GOLDEN_CASES 75
#define GOLDEN_STEPS 62800

struct golden_case {
    char name[64];
    char policy[16];
    cJSON *lr;     /* as given */
    cJSON *config; /* as given */
    int steps;
    size_t groups;
    double *losses;   /* steps values */
    double *expected; /* steps * groups values */
    int *events;      /* steps values (enum glr_event), or NULL when the case has none */
};

extern struct golden_case golden_cases[GOLDEN_CASES];
extern int golden_count; /* cases found in the file */

/* Loads the file (an unchecked fixture: once, in the parent process). */
void golden_load(void);

void golden_free(void);

#endif
