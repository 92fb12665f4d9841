/*
 * `greedylrd token ...`: making, listing and revoking API tokens from the command line,
 * straight on the database file (the daemon may be running or not).
 */
#ifndef GLR_TOKEN_CLI_H
#define GLR_TOKEN_CLI_H

/*
 * Runs `token create|list|revoke` with argv[0] = "token". Returns the process's exit
 * status: 0, 1 when the work failed, 2 on misuse.
 */
int token_cli_main(int argc, char **argv);

#endif
