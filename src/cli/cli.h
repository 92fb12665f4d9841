/* What the commands of greedylrd share: where the database is when no option says. */
#ifndef GLR_CLI_H
#define GLR_CLI_H

/* The environment variable that names the database, and the path without it. */
#define CLI_DB_ENV     "GREEDYLRD_DB"
#define CLI_DB_DEFAULT "./greedylr.db"

/* The database of $GREEDYLRD_DB, else CLI_DB_DEFAULT. */
const char *cli_default_db(void);

#endif
