/*
 * API tokens and roles (see auth.h). Hashing is GnuTLS's SHA-256: libmicrohttpd links
 * GnuTLS already, and a vetted implementation beats one of our own.
 */
#include "http/auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/random.h"
#include "base/status.h"

/* One token as the daemon keeps it: never the token, only its hash. */
struct auth_entry {
    char name[AUTH_NAME_MAX + 1];
    enum auth_role role;
    unsigned char hash[STORE_TOKEN_HASH_SIZE];
};

struct auth {
    struct store *store;
    bool open_when_empty;
    pthread_rwlock_t lock; /* guards entries and count */
    struct auth_entry *entries;
    size_t count;
};

static const char *const role_names[] = {
    [AUTH_NONE] = "none",
    [AUTH_READER] = "reader",
    [AUTH_WRITER] = "writer",
    [AUTH_ADMIN] = "admin",
};

const char *auth_role_name(enum auth_role role)
{
    return role <= AUTH_ADMIN ? role_names[role] : "none";
}

int auth_role_parse(const char *name, enum auth_role *role)
{
    for (int r = AUTH_READER; r <= AUTH_ADMIN; r++) {
        if (strcmp(name, role_names[r]) == 0) {
            *role = (enum auth_role)r;
            return 0;
        }
    }
    return -1;
}

bool auth_valid_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > AUTH_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    /* A name is a path segment (/v1/tokens/{name}), where "." and ".." mean a directory. */
    return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

bool auth_is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &v6) == 1) {
        static const unsigned char loopback[16] = {[15] = 1};
        /* ::ffff:127.x.y.z is IPv4 loopback reached through an IPv6 socket. */
        static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
        return memcmp(v6.s6_addr, loopback, 16) == 0 ||
               (memcmp(v6.s6_addr, mapped, 12) == 0 && v6.s6_addr[12] == 127);
    }
    return false;
}

/* SHA-256 of text. Returns GLR_OK or GLR_EIO. */
static int hash_token(const char *text, size_t len, unsigned char out[STORE_TOKEN_HASH_SIZE],
                      char *err)
{
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, text, len, out) != 0)
        return glr_fail(err, GLR_EIO, "hashing a token failed (GnuTLS SHA-256)");
    return GLR_OK;
}

static void hex(const unsigned char *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The stored tokens, counted: all of them, the admins, and whether one is called name. */
struct tally {
    const char *name; /* NULL: none sought */
    size_t count;
    size_t admins;
    bool found;
    bool found_admin;
};

static bool tally_row(void *ctx, const struct store_token *token)
{
    struct tally *t = ctx;
    bool admin = strcmp(token->role, auth_role_name(AUTH_ADMIN)) == 0;
    t->count++;
    t->admins += admin;
    if (t->name && strcmp(token->name, t->name) == 0) {
        t->found = true;
        t->found_admin = admin;
    }
    return true;
}

int auth_token_create(struct store *store, const char *name, enum auth_role role,
                      char token[AUTH_TOKEN_LEN + 1], char name_out[AUTH_NAME_MAX + 1], char *err)
{
    if (role < AUTH_READER || role > AUTH_ADMIN)
        return glr_fail(err, GLR_EINVAL, "role must be admin, writer or reader");
    if (name && !auth_valid_name(name))
        return glr_fail(err, GLR_EINVAL,
                        "a token name is 1 to %d of [A-Za-z0-9._-], and not \".\" or \"..\"",
                        AUTH_NAME_MAX);
    struct tally tally = {0};
    int rc = store_token_scan(store, tally_row, &tally, err);
    if (rc)
        return rc;
    if (tally.count >= AUTH_TOKENS_MAX)
        return glr_fail(err, GLR_ETOOBIG, "there are %d tokens already; revoke some first",
                        AUTH_TOKENS_MAX);
    /*
     * Once a token exists every request needs one, and only an admin's may manage tokens:
     * a first token of another role would lock everyone out of /v1/tokens for good.
     */
    if (tally.admins == 0 && role != AUTH_ADMIN)
        return glr_fail(err, GLR_ECONFLICT,
                        "no admin token exists yet: the first token must have role admin, or "
                        "no one could manage tokens once they are required");

    unsigned char secret[AUTH_TOKEN_BYTES];
    if ((rc = glr_random_bytes(secret, sizeof(secret), err)))
        return rc;
    memcpy(token, AUTH_TOKEN_PREFIX, sizeof(AUTH_TOKEN_PREFIX) - 1);
    hex(secret, sizeof(secret), token + sizeof(AUTH_TOKEN_PREFIX) - 1);
    memset(secret, 0, sizeof(secret));

    struct store_token row;
    memset(&row, 0, sizeof(row));
    if (name) {
        snprintf(row.name, sizeof(row.name), "%s", name);
    } else {
        /* A made-up name: the role and a few random hex digits (not from the token). */
        unsigned char tag[4];
        char tag_hex[9];
        if ((rc = glr_random_bytes(tag, sizeof(tag), err)))
            return rc;
        hex(tag, sizeof(tag), tag_hex);
        snprintf(row.name, sizeof(row.name), "%s-%s", auth_role_name(role), tag_hex);
    }
    snprintf(row.role, sizeof(row.role), "%s", auth_role_name(role));
    if ((rc = hash_token(token, AUTH_TOKEN_LEN, row.hash, err)))
        return rc;
    row.created_ms = glr_clock_wall_ms();
    if ((rc = store_token_insert(store, &row, err)))
        return rc;
    snprintf(name_out, AUTH_NAME_MAX + 1, "%s", row.name);
    return GLR_OK;
}

/* A listing in progress: the caller's callback, and the first error met. */
struct listing {
    auth_token_fn fn;
    void *ctx;
    int rc;
    char *err;
};

static bool list_row(void *ctx, const struct store_token *token)
{
    struct listing *l = ctx;
    struct auth_token shown = {.name = token->name, .created_ms = token->created_ms};
    if (auth_role_parse(token->role, &shown.role) != 0) {
        l->rc = glr_fail(l->err, GLR_ECORRUPT, "token %s has an unknown role %s", token->name,
                         token->role);
        return false;
    }
    return l->fn(l->ctx, &shown);
}

int auth_token_list(struct store *store, auth_token_fn fn, void *ctx, char *err)
{
    struct listing l = {.fn = fn, .ctx = ctx, .err = err};
    int rc = store_token_scan(store, list_row, &l, err);
    return rc ? rc : l.rc;
}

int auth_token_revoke(struct store *store, const char *name, char *err)
{
    struct tally tally = {.name = name};
    int rc = store_token_scan(store, tally_row, &tally, err);
    if (rc)
        return rc;
    /* The same lock-out as a first token of another role (see auth_token_create). */
    if (tally.found_admin && tally.admins == 1 && tally.count > 1)
        return glr_fail(err, GLR_ECONFLICT,
                        "%s is the last admin token and %zu other tokens remain: create another "
                        "admin token first, or revoke the others",
                        name, tally.count - 1);
    return store_token_delete(store, name, err);
}

/* The table being read by auth_reload(). */
struct loading {
    struct auth_entry *entries;
    size_t count;
    size_t cap;
    int rc;
    char *err;
};

static bool load_row(void *ctx, const struct store_token *token)
{
    struct loading *l = ctx;
    enum auth_role role;
    if (auth_role_parse(token->role, &role) != 0) {
        l->rc = glr_fail(l->err, GLR_ECORRUPT, "token %s has an unknown role %s", token->name,
                         token->role);
        return false;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        struct auth_entry *grown = realloc(l->entries, cap * sizeof(*grown));
        if (!grown) {
            l->rc = glr_fail(l->err, GLR_ENOMEM, "out of memory");
            return false;
        }
        l->entries = grown;
        l->cap = cap;
    }
    struct auth_entry *e = &l->entries[l->count++];
    snprintf(e->name, sizeof(e->name), "%s", token->name);
    e->role = role;
    memcpy(e->hash, token->hash, sizeof(e->hash));
    return l->count < AUTH_TOKENS_MAX;
}

int auth_reload(struct auth *auth, char *err)
{
    struct loading l = {.err = err};
    int rc = store_token_scan(auth->store, load_row, &l, err);
    if (!rc)
        rc = l.rc;
    if (rc) {
        free(l.entries);
        return rc;
    }
    pthread_rwlock_wrlock(&auth->lock);
    struct auth_entry *old = auth->entries;
    auth->entries = l.entries;
    auth->count = l.count;
    pthread_rwlock_unlock(&auth->lock);
    free(old);
    return GLR_OK;
}

int auth_open(struct store *store, bool open_when_empty, struct auth **out, char *err)
{
    *out = NULL;
    struct auth *auth = calloc(1, sizeof(*auth));
    if (!auth)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    auth->store = store;
    auth->open_when_empty = open_when_empty;
    pthread_rwlock_init(&auth->lock, NULL);
    int rc = auth_reload(auth, err);
    if (rc) {
        auth_close(auth);
        return rc;
    }
    *out = auth;
    return GLR_OK;
}

void auth_close(struct auth *auth)
{
    if (!auth)
        return;
    pthread_rwlock_destroy(&auth->lock);
    free(auth->entries);
    free(auth);
}

/* After a change stored through auth: the table follows, or the log says why not. */
static void reload_after_change(struct auth *auth)
{
    char err[GLR_ERR_MAX] = "";
    if (auth_reload(auth, err) != GLR_OK)
        log_error("reloading the API tokens: %s", err);
}

int auth_table_create(struct auth *auth, const char *name, enum auth_role role,
                      char token[AUTH_TOKEN_LEN + 1], char name_out[AUTH_NAME_MAX + 1], char *err)
{
    int rc = auth_token_create(auth->store, name, role, token, name_out, err);
    if (rc)
        return rc;
    reload_after_change(auth);
    return GLR_OK;
}

int auth_table_list(struct auth *auth, auth_token_fn fn, void *ctx, char *err)
{
    return auth_token_list(auth->store, fn, ctx, err);
}

int auth_table_revoke(struct auth *auth, const char *name, char *err)
{
    int rc = auth_token_revoke(auth->store, name, err);
    if (rc)
        return rc;
    reload_after_change(auth);
    return GLR_OK;
}

size_t auth_count(struct auth *auth)
{
    pthread_rwlock_rdlock(&auth->lock);
    size_t count = auth->count;
    pthread_rwlock_unlock(&auth->lock);
    return count;
}

/*
 * Compares two hashes in time that does not depend on where they differ, so that timing
 * tells an attacker nothing about a stored hash.
 */
static bool same_hash(const unsigned char *a, const unsigned char *b)
{
    unsigned char diff = 0;
    for (size_t i = 0; i < STORE_TOKEN_HASH_SIZE; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* Finds the bearer token in an Authorization header value; returns its length, or 0. */
static size_t bearer_token(const char *authorization, const char **token)
{
    const char *scheme = "Bearer";
    size_t scheme_len = strlen(scheme);
    if (strncasecmp(authorization, scheme, scheme_len) != 0 ||
        (authorization[scheme_len] != ' ' && authorization[scheme_len] != '\t'))
        return 0;
    const char *p = authorization + scheme_len;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t len = strcspn(p, " \t");
    if (p[len] != '\0' && p[len + strspn(p + len, " \t")] != '\0')
        return 0; /* more than one word */
    *token = p;
    return len;
}

int auth_check(struct auth *auth, const char *authorization, enum auth_role role,
               char who[AUTH_NAME_MAX + 1], char *err)
{
    who[0] = '\0';
    if (role == AUTH_NONE)
        return GLR_OK;
    pthread_rwlock_rdlock(&auth->lock);
    int rc = GLR_OK;
    if (auth->count == 0) {
        if (!auth->open_when_empty)
            rc = glr_fail(err, GLR_EAUTH,
                          "no API token exists; an operator must create one with "
                          "\"greedylrd token create\"");
        goto out;
    }
    const char *token = NULL;
    size_t len = authorization ? bearer_token(authorization, &token) : 0;
    if (len == 0) {
        rc = glr_fail(err, GLR_EAUTH,
                      authorization ? "the Authorization header must be \"Bearer TOKEN\""
                                    : "this needs a token: send \"Authorization: Bearer TOKEN\"");
        goto out;
    }
    unsigned char hash[STORE_TOKEN_HASH_SIZE];
    /* Only a token of the right length can match; others are not worth hashing. */
    if (len != AUTH_TOKEN_LEN || hash_token(token, len, hash, NULL) != GLR_OK) {
        rc = glr_fail(err, GLR_EAUTH, "the token is not valid (revoked, or mistyped?)");
        goto out;
    }
    /* Every entry is compared, so the time taken does not say which one matched. */
    const struct auth_entry *found = NULL;
    for (size_t i = 0; i < auth->count; i++)
        if (same_hash(hash, auth->entries[i].hash))
            found = &auth->entries[i];
    if (!found) {
        rc = glr_fail(err, GLR_EAUTH, "the token is not valid (revoked, or mistyped?)");
        goto out;
    }
    snprintf(who, AUTH_NAME_MAX + 1, "%s", found->name);
    if (found->role < role)
        rc = glr_fail(err, GLR_EDENIED, "token %s is a %s; this needs %s", found->name,
                      auth_role_name(found->role), auth_role_name(role));
out:
    pthread_rwlock_unlock(&auth->lock);
    return rc;
}
