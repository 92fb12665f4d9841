/*
 * The token subcommand (see token_cli.h). The new token goes to standard output, alone on
 * its line, so that a script can capture it; everything said to the operator goes to
 * standard error.
 */
#include "cli/token_cli.h"
#include "cli/cli.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/status.h"
#include "http/auth.h"
#include "store/store.h"

/* Longest --db path accepted. */
#define TOKEN_CLI_PATH_MAX 4096

static void usage(FILE *out)
{
    fprintf(out,
            "usage: greedylrd token create --role admin|writer|reader [--name NAME] [--db PATH]\n"
            "       greedylrd token list [--db PATH]\n"
            "       greedylrd token revoke NAME [--db PATH]\n"
            "\n"
            "create prints a new token once (only its hash is stored: keep it safe);\n"
            "list shows each token's name, role and creation time; revoke removes one.\n"
            "A running greedylrd sees a change within %d s, or at once on SIGHUP.\n"
            "The database defaults to $GREEDYLRD_DB, else ./greedylr.db.\n",
            AUTH_RELOAD_S);
}

struct args {
    const char *db;
    const char *role;
    const char *name; /* --name, or the NAME of revoke */
};

/* Reads the options after the command word; returns 0 or 2 (misuse). */
static int parse(int argc, char **argv, bool positional_name, struct args *a)
{
    a->db = cli_default_db();
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0) {
            usage(stdout);
            exit(EXIT_SUCCESS);
        }
        if (positional_name && arg[0] != '-' && !a->name) {
            a->name = arg;
            continue;
        }
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!value || (strcmp(arg, "--db") != 0 && strcmp(arg, "--role") != 0 &&
                       (positional_name || strcmp(arg, "--name") != 0))) {
            fprintf(stderr, "greedylrd token: %s %s (see greedylrd token --help)\n", arg,
                    value ? "is not an option here" : "needs a value");
            return 2;
        }
        i++;
        if (strcmp(arg, "--db") == 0)
            a->db = value;
        else if (strcmp(arg, "--role") == 0)
            a->role = value;
        else
            a->name = value;
    }
    if (strlen(a->db) == 0 || strlen(a->db) > TOKEN_CLI_PATH_MAX) {
        fprintf(stderr, "greedylrd token: --db must be a path of 1 to %d bytes\n",
                TOKEN_CLI_PATH_MAX);
        return 2;
    }
    return 0;
}

static int create(struct store *store, const struct args *a)
{
    enum auth_role role;
    if (!a->role || auth_role_parse(a->role, &role) != 0) {
        fprintf(stderr, "greedylrd token create: --role must be admin, writer or reader\n");
        return 2;
    }
    char token[AUTH_TOKEN_LEN + 1];
    char name[AUTH_NAME_MAX + 1];
    char err[GLR_ERR_MAX] = "";
    if (auth_token_create(store, a->name, role, token, name, err) != GLR_OK) {
        fprintf(stderr, "greedylrd token create: %s\n", err);
        return 1;
    }
    printf("%s\n", token);
    fflush(stdout);
    memset(token, 0, sizeof(token));
    fprintf(stderr,
            "greedylrd: token %s (%s) created. It is shown only this once: clients send it as\n"
            "\"Authorization: Bearer TOKEN\".\n",
            name, auth_role_name(role));
    return 0;
}

static bool print_row(void *ctx, const struct auth_token *token)
{
    (void)ctx;
    char when[GLR_TIME_TEXT_MAX];
    glr_clock_format(token->created_ms, when);
    printf("%-32s %-7s %s\n", token->name, auth_role_name(token->role), when);
    return true;
}

static int list(struct store *store)
{
    char err[GLR_ERR_MAX] = "";
    printf("%-32s %-7s %s\n", "NAME", "ROLE", "CREATED");
    if (auth_token_list(store, print_row, NULL, err) != GLR_OK) {
        fprintf(stderr, "greedylrd token list: %s\n", err);
        return 1;
    }
    return 0;
}

static int revoke(struct store *store, const struct args *a)
{
    char err[GLR_ERR_MAX] = "";
    if (auth_token_revoke(store, a->name, err) != GLR_OK) {
        fprintf(stderr, "greedylrd token revoke: %s\n", err);
        return 1;
    }
    fprintf(stderr,
            "greedylrd: token %s revoked; a running greedylrd refuses it within %d s (at once "
            "on SIGHUP)\n",
            a->name, AUTH_RELOAD_S);
    return 0;
}

int token_cli_main(int argc, char **argv)
{
    const char *command = argc > 1 ? argv[1] : "";
    if (strcmp(command, "--help") == 0) {
        usage(stdout);
        return 0;
    }
    bool is_create = strcmp(command, "create") == 0;
    bool is_list = strcmp(command, "list") == 0;
    bool is_revoke = strcmp(command, "revoke") == 0;
    if (!is_create && !is_list && !is_revoke) {
        usage(stderr);
        return 2;
    }
    struct args a = {0};
    int rc = parse(argc - 2, argv + 2, is_revoke, &a);
    if (rc)
        return rc;
    if (is_list && (a.role || a.name)) {
        fprintf(stderr, "greedylrd token list: takes only --db\n");
        return 2;
    }
    if (is_revoke && (!a.name || a.role)) {
        fprintf(stderr, "greedylrd token revoke: give the NAME of the token (and --db)\n");
        return 2;
    }
    struct store *store = NULL;
    char err[GLR_ERR_MAX] = "";
    /*
     * A revoked token must stay revoked through a power loss: sync fully (one write). A
     * tool starts no threads; list only reads, and neither creates nor migrates the file.
     */
    struct store_options options = {
        .sync = STORE_SYNC_FULL, .without_threads = true, .read_only = is_list};
    if (store_open(a.db, &options, &store, err) != GLR_OK) {
        fprintf(stderr, "greedylrd token: %s\n", err);
        return 1;
    }
    rc = is_create ? create(store, &a) : is_list ? list(store) : revoke(store, &a);
    store_close(store);
    return rc;
}
