/*
 * Who may use the API: bearer tokens, each with a role. A token is 256 random bits shown
 * once when it is made; the store keeps only its SHA-256. The daemon holds every token's
 * hash in memory, so that deciding a request never touches the database, and reloads
 * them when tokens change (through the API at once; from the command line on SIGHUP or
 * within AUTH_RELOAD_S seconds).
 */
#ifndef GLR_AUTH_H
#define GLR_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Random bytes in a token. */
#define AUTH_TOKEN_BYTES 32
/* What every token starts with, so that it is recognised wherever it leaks. */
#define AUTH_TOKEN_PREFIX "glr_"
/* Characters of a token: the prefix and its bytes in hex. */
#define AUTH_TOKEN_LEN (sizeof(AUTH_TOKEN_PREFIX) - 1 + 2 * AUTH_TOKEN_BYTES)
/* Longest token name, in bytes ([A-Za-z0-9._-]). */
#define AUTH_NAME_MAX STORE_TOKEN_NAME_MAX
/* Most tokens one database may hold. */
#define AUTH_TOKENS_MAX 10000
/* Longest time, in seconds, before a token revoked from the command line stops working. */
#define AUTH_RELOAD_S 10

/* What a token may do; each role may do everything the ones below it may. */
enum auth_role {
    AUTH_NONE,   /* anyone, without a token: /healthz */
    AUTH_READER, /* GET: jobs, history, lr lookups */
    AUTH_WRITER, /* create jobs, report, rewind, finish and tag */
    AUTH_ADMIN,  /* everything, including deleting jobs and managing tokens */
};

/* "none", "reader", "writer" or "admin". */
const char *auth_role_name(enum auth_role role);

/* Parses "reader", "writer" or "admin"; returns 0, or -1 for anything else. */
int auth_role_parse(const char *name, enum auth_role *role);

/* True when name is a valid token name: [A-Za-z0-9._-]{1,AUTH_NAME_MAX}, not "." or "..". */
bool auth_valid_name(const char *name);

/* True when host (a numeric address) is a loopback address: 127.0.0.0/8 or ::1. */
bool auth_is_loopback(const char *host);

/*
 * Makes a new token with role and stores its hash under name (NULL: a name is made up).
 * token receives the token (shown to the user once; it cannot be recovered), name_out the
 * name. Returns GLR_OK, GLR_EINVAL (a bad name), GLR_ECONFLICT (the name exists, or no
 * admin token exists and role is not admin), GLR_ETOOBIG (AUTH_TOKENS_MAX reached) or
 * GLR_EIO.
 */
int auth_token_create(struct store *store, const char *name, enum auth_role role,
                      char token[AUTH_TOKEN_LEN + 1], char name_out[AUTH_NAME_MAX + 1], char *err);

/* A token as a listing shows it: never the token itself, nor its hash. */
struct auth_token {
    const char *name; /* valid only during the call that receives it */
    enum auth_role role;
    int64_t created_ms; /* Unix milliseconds */
};

/* Receives one token of a listing; returns false to stop the listing early. */
typedef bool (*auth_token_fn)(void *ctx, const struct auth_token *token);

/*
 * Calls fn for every token of store, oldest first. Stopping early is not an error.
 * Returns GLR_OK, GLR_ECORRUPT (a stored token has an unknown role) or GLR_EIO.
 */
int auth_token_list(struct store *store, auth_token_fn fn, void *ctx, char *err);

/*
 * Removes the token called name from store. Returns GLR_OK, GLR_ENOTFOUND, GLR_ECONFLICT
 * (it is the last admin token and others remain) or GLR_EIO.
 */
int auth_token_revoke(struct store *store, const char *name, char *err);

struct auth;

/*
 * Loads the tokens of store (borrowed; it must outlive the auth). open_when_empty says
 * whether a database without tokens lets everyone in (a loopback address, or --insecure)
 * or no one. On success *out is the caller's (auth_close()).
 * Returns GLR_OK, GLR_ENOMEM, GLR_ECORRUPT or GLR_EIO.
 */
int auth_open(struct store *store, bool open_when_empty, struct auth **out, char *err);

/* Frees the table; NULL is accepted. */
void auth_close(struct auth *auth);

/*
 * Reads the tokens from the store again, replacing the table in memory at once; on
 * failure the old table stays. Returns what auth_open() does.
 */
int auth_reload(struct auth *auth, char *err);

/*
 * auth_token_create(), auth_token_list() and auth_token_revoke() on the store the auth was
 * opened on; a change takes effect in the table at once. Return what those do. When the
 * change is stored but the table cannot be read back, the change stands (the token exists,
 * or is gone, in the store): they return GLR_OK, log why, and the table follows at the
 * next auth_reload().
 */
int auth_table_create(struct auth *auth, const char *name, enum auth_role role,
                      char token[AUTH_TOKEN_LEN + 1], char name_out[AUTH_NAME_MAX + 1], char *err);
int auth_table_list(struct auth *auth, auth_token_fn fn, void *ctx, char *err);
int auth_table_revoke(struct auth *auth, const char *name, char *err);

/* How many tokens the table holds. */
size_t auth_count(struct auth *auth);

/*
 * Decides a request that needs role, given its Authorization header (NULL when absent).
 * On success who receives the token's name ("" when no token was needed or asked for).
 * Returns GLR_OK; GLR_EAUTH (no token, or not a known one: 401) or GLR_EDENIED (the
 * token's role is below role: 403), with err saying which.
 */
int auth_check(struct auth *auth, const char *authorization, enum auth_role role,
               char who[AUTH_NAME_MAX + 1], char *err);

#endif
