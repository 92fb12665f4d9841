/*
 * The database file of a test, read and written with SQLite directly, under the store:
 * to see what the daemon left there, or to make a database it has to cope with.
 */
#ifndef GLR_TEST_TESTDB_H
#define GLR_TEST_TESTDB_H

#include <stdint.h>

/* The integer the query sql (one row, one column) gives on the database at path, read-only. */
int64_t testdb_integer(const char *path, const char *sql);

/* PRAGMA user_version of the database at path (the schema version greedylr wrote). */
int64_t testdb_user_version(const char *path);

/* Runs the SQL text (one or more statements) on the database at path; fails the test on error. */
void testdb_exec(const char *path, const char *sql);

#endif
