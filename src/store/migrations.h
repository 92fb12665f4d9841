/*
 * The schema migrations, compiled in from sql/NNN_name.sql (make generates migrations.c).
 * Migration i (0-based) takes a database from user_version i to i + 1.
 */
#ifndef GLR_MIGRATIONS_H
#define GLR_MIGRATIONS_H

#include <stddef.h>

struct migration {
    const char *name; /* the file name, for messages */
    const char *sql;  /* the whole file */
};

extern const struct migration store_migrations[];
extern const size_t store_migration_count;

#endif
