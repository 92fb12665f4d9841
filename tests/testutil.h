/*
 * Helpers shared by the libcheck suites: running a suite with TAP output (so that
 * Automake's driver reports every case), reading test data, and building schedulers
 * from JSON text.
 */
#ifndef GLR_TESTUTIL_H
#define GLR_TESTUTIL_H

#include <check.h>
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/glr.h"

/* Runs every case of suite (each in its own process), prints TAP, returns an exit code. */
int testutil_run(Suite *suite);

/* Reads a whole file; the caller frees the result. Fails the test when it cannot. */
char *testutil_read_file(const char *path, size_t *len);

/* Parses tests/data/NAME (found through $GLR_TEST_DATA); the caller deletes the tree. */
cJSON *testutil_load_data(const char *name);

/* Parses JSON text (NULL gives NULL); fails the test on a syntax error. */
cJSON *testutil_parse(const char *text);

/*
 * Creates a scheduler from JSON text for lr and config (config may be NULL). Returns the
 * status of glr_sched_create(); *out is set on success and err receives the message.
 */
int testutil_create(const char *policy, const char *lr_json, const char *config_json,
                    struct glr_sched **out, char err[GLR_ERR_MAX]);

/* Like testutil_create() but fails the test unless creation succeeds. */
struct glr_sched *testutil_sched(const char *policy, const char *lr_json, const char *config_json);

/*
 * Prints tree as JSON with every number written exactly (cJSON's own printer may drop the
 * last digits). The caller frees the text.
 */
char *testutil_print_exact(const cJSON *tree);

/*
 * How much slower than usual the suite runs: $GLR_TEST_SLOW (10 under valgrind), else 1.
 * Waits and timeouts that race the daemon are multiplied by it.
 */
int testutil_slow(void);

/* Sleeps ms × testutil_slow() milliseconds, resuming after signals. */
void testutil_sleep_ms(long ms);

/* Reads a double from a cJSON number; fails the test otherwise. */
double testutil_number(const cJSON *item);

/*
 * Saves sched's state as text, loads it into a new scheduler made from policy, lr and
 * config (as the store does on a restart), frees sched and returns the new one. Fails
 * the test when any of it fails; name says which case in the message.
 */
struct glr_sched *testutil_restore(struct glr_sched *sched, const char *policy, const cJSON *lr,
                                   const cJSON *config, const char *name);

/* A small deterministic generator (an LCG), so that a failure can be reproduced. */
uint32_t testutil_next_random(uint32_t *seed);

/* Seconds on the monotonic clock, for measuring how long something took. */
double testutil_seconds(void);

/* Longest temporary directory path a test makes. */
#define TESTUTIL_DIR_MAX 256

/* Makes a new directory under $TMPDIR (else /tmp) whose name starts with prefix. */
void testutil_tmpdir(const char *prefix, char dir[TESTUTIL_DIR_MAX]);

/* Removes the files of dir (tests make no subdirectories), then dir; "" is accepted. */
void testutil_tmpdir_remove(const char *dir);

#endif
