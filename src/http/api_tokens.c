/*
 * The token routes (see api_int.h): list, create and revoke API tokens. auth.c owns the
 * tokens, in the store and in the table in memory; this file only speaks HTTP for it.
 */
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "http/api_int.h"

/*
 * Answers a token route of a server started without a table of tokens (api_options.auth
 * NULL): there is none to show or change. Returns true when it answered.
 */
static bool no_table(struct api *api, struct MHD_Connection *conn, struct request *req,
                     enum MHD_Result *result)
{
    if (api->auth)
        return false;
    *result =
        api_answer_status(conn, req, GLR_ENOTFOUND, "this server was started without API tokens");
    return true;
}

/* A listing being built: the array, and whether every token went into it. */
struct token_page {
    cJSON *tokens;
    bool failed;
};

/* Adds one token's name, role and "created_at" (RFC 3339, UTC, milliseconds). */
static bool list_token(void *ctx, const struct auth_token *token)
{
    struct token_page *page = ctx;
    char created_at[GLR_TIME_TEXT_MAX];
    glr_clock_format(token->created_ms, created_at);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(page->tokens, o) ||
        !cJSON_AddStringToObject(o, "name", token->name) ||
        !cJSON_AddStringToObject(o, "role", auth_role_name(token->role)) ||
        !cJSON_AddStringToObject(o, "created_at", created_at)) {
        page->failed = true;
        return false;
    }
    return true;
}

/* GET /v1/tokens: every token's name, role and creation time (never the token). */
enum MHD_Result api_list_tokens(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    enum MHD_Result result;
    if (no_table(api, conn, req, &result))
        return result;
    cJSON *body = cJSON_CreateObject();
    struct token_page page = {.tokens = cJSON_AddArrayToObject(body, "tokens")};
    char err[GLR_ERR_MAX] = "";
    int rc = page.tokens ? auth_table_list(api->auth, list_token, &page, err)
                         : glr_fail(err, GLR_ENOMEM, "out of memory");
    if (!rc && page.failed)
        rc = glr_fail(err, GLR_ENOMEM, "listing the tokens: out of memory");
    if (rc) {
        cJSON_Delete(body);
        return api_answer_status(conn, req, rc, err);
    }
    return api_answer_json(conn, req, HTTP_OK, body, NULL);
}

/* POST /v1/tokens {"role", "name"}: a new token, shown in this answer only. */
enum MHD_Result api_create_token(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    enum MHD_Result result;
    if (no_table(api, conn, req, &result))
        return result;
    char err[GLR_ERR_MAX] = "";
    struct req_body body = api_body_of(conn, req);
    struct req_token parsed;
    int rc = req_parse_token(&body, &parsed, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    enum auth_role role = parsed.role;
    char token[AUTH_TOKEN_LEN + 1];
    char name[AUTH_NAME_MAX + 1];
    rc = auth_table_create(api->auth, parsed.name, role, token, name, err);
    req_token_clear(&parsed);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    log_info("token %s (%s) created", name, auth_role_name(role));
    cJSON *answer = cJSON_CreateObject();
    cJSON_AddStringToObject(answer, "name", name);
    cJSON_AddStringToObject(answer, "role", auth_role_name(role));
    cJSON_AddStringToObject(answer, "token", token);
    memset(token, 0, sizeof(token));
    char location[AUTH_NAME_MAX + 16];
    snprintf(location, sizeof(location), "/v1/tokens/%s", name);
    return api_answer_json(conn, req, HTTP_CREATED, answer, location);
}

/* DELETE /v1/tokens/{name}: revoked at once. */
enum MHD_Result api_revoke_token(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    enum MHD_Result result;
    if (no_table(api, conn, req, &result))
        return result;
    char err[GLR_ERR_MAX] = "";
    int rc = auth_table_revoke(api->auth, req->match.id, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    log_info("token %.64s revoked", req->match.id);
    return api_answer_no_content(conn, req, 0);
}
