/*
 * Test helper for the API suites: one daemon shared by the cases of a TCase (started once,
 * in the parent process, so the forked cases all talk to it) and a fresh keep-alive
 * client connection for each case.
 */
#ifndef GLR_TEST_APITEST_H
#define GLR_TEST_APITEST_H

#include <check.h>

#include "daemon.h"
#include "httpc.h"

extern struct daemon server;
extern struct httpc client;

/*
 * Adds the fixtures to tc. prepare (may be NULL) runs once after the daemon started, to
 * create data every case reads.
 */
void apitest_fixtures(TCase *tc, void (*prepare)(void));

/* Like apitest_fixtures(), with extra daemon arguments (NULL-terminated, kept alive). */
void apitest_fixtures_args(TCase *tc, void (*prepare)(void), const char *const *args);

#endif
