/* What the commands share (see cli.h). */
#include "cli/cli.h"

#include <stdlib.h>

const char *cli_default_db(void)
{
    const char *db = getenv(CLI_DB_ENV);
    return db && *db ? db : CLI_DB_DEFAULT;
}
