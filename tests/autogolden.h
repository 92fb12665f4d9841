/*
 * Test helper: the golden vectors of the auto policy (tests/data/auto.json, made by
 * tests/auto_golden.py from the model in tests/auto_model.py), unpacked into flat arrays.
 */
#ifndef GLR_TEST_AUTOGOLDEN_H
#define GLR_TEST_AUTOGOLDEN_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* The cases of the golden file, and the most this helper can hold. */
#define AUTO_GOLDEN_CASES 26
#define AUTO_CASES_MAX    64

struct auto_case {
    char name[64];
    cJSON *lr;     /* as given */
    cJSON *config; /* as given */
    int steps;     /* reports */
    size_t groups;
    int64_t *step;    /* the step number of each report */
    double *losses;   /* NaN and infinities as such */
    double *caps;     /* +inf: no cap */
    double *expected; /* steps * groups */
    int *events;      /* enum glr_event */
};

extern struct auto_case auto_cases[AUTO_CASES_MAX];
extern int auto_case_count;

/* Loads the file (an unchecked fixture: once, in the parent process). */
void autogolden_load(void);

void autogolden_free(void);

#endif
