/*
 * Test helper: runs greedylrd as a child process on an ephemeral port with a temporary
 * database, as a user would, and stops it the way an init system would (SIGTERM).
 * The daemon is found through $GLR_DAEMON; $GLR_DAEMON_WRAPPER (valgrind, when the
 * suite runs under it) is put in front of it.
 */
#ifndef GLR_TEST_DAEMON_H
#define GLR_TEST_DAEMON_H

#include <stdbool.h>
#include <sys/types.h>

#include "testutil.h"

struct daemon {
    pid_t pid;
    int port;
    char dir[TESTUTIL_DIR_MAX];    /* temporary directory holding the database */
    char db[300];                  /* database path */
    char log[300];                 /* the daemon's standard error */
    const char *const *extra_args; /* kept for restarts; the caller keeps them alive */
    unsigned open_files;           /* the daemon's open-file limit; 0: the test's own */
};

/*
 * Makes a temporary directory for the database (unless db is given) and starts the daemon
 * with `--listen 127.0.0.1:0` plus extra_args (NULL-terminated, may be NULL). Fails the
 * test unless it prints its "listening on" line.
 */
void daemon_start(struct daemon *d, const char *db, const char *const *extra_args);

/* Like daemon_start(), with open_files as the daemon's soft and hard open-file limit. */
void daemon_start_limited(struct daemon *d, const char *db, const char *const *extra_args,
                          unsigned open_files);

/*
 * Starts the daemon again on the same database with the same extra arguments (after
 * daemon_stop or daemon_kill).
 */
void daemon_restart(struct daemon *d);

/* SIGTERM; fails the test unless the daemon exits with status 0. */
void daemon_stop(struct daemon *d);

/* SIGKILL, as a crash would; the database stays. */
void daemon_kill(struct daemon *d);

/* Removes the temporary directory and everything in it. */
void daemon_cleanup(struct daemon *d);

/*
 * Runs the daemon with args (NULL-terminated) to completion, without a listen address
 * of its own; returns its exit status and copies up to size-1 bytes of its standard
 * error into stderr_text.
 */
int daemon_run(const char *const *args, char *stderr_text, size_t size);

/* Like daemon_run(), but copies its standard output (standard error goes to the test's). */
int daemon_run_stdout(const char *const *args, char *stdout_text, size_t size);

#endif
