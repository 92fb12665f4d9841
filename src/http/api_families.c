/*
 * The family routes (see api_int.h): the list of families, one family with its runs and
 * what tuning and learning have made of them, and a new learned model of a family.
 */
#include "http/api_int.h"

/* GET /v1/families: a page of families by name. */
enum MHD_Result api_list_families(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_query query = api_query_of(conn);
    struct req_families parsed;
    int rc = req_parse_families(&query, &parsed, err);
    cJSON *page = NULL;
    if (!rc)
        rc = svc_family_list(api->svc, parsed.page_size, parsed.page_token, &page, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    return api_answer_json(conn, req, HTTP_OK, page, NULL);
}

/* GET /v1/families/{name}?policy=P: the family, and tuning's view of it for P (auto). */
enum MHD_Result api_get_family(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    char err[GLR_ERR_MAX] = "";
    struct req_query query = api_query_of(conn);
    struct req_families parsed;
    int rc = req_parse_families(&query, &parsed, err);
    cJSON *family = NULL;
    if (!rc)
        rc = svc_family_get(api->svc, req->match.id, parsed.policy, &family, err);
    if (rc)
        return api_answer_status(conn, req, rc, err);
    return api_answer_json(conn, req, HTTP_OK, family, NULL);
}

/* The learning itself, on the thread of long requests. */
static int learn_deferred(struct api *api, struct request *req, char *err)
{
    req->deferred_created = true;
    return svc_family_learn(api->svc, req->match.id, &req->deferred_answer, err);
}

/*
 * POST /v1/families/{name}/learn: a new model from the family's histories, answered 201
 * with its record once it is stored. Learning reads many histories, so it runs on the
 * background lane of long requests (api_defer.c, at a lower priority), not on a server
 * thread whose other connections would wait for it; it takes no job lock, so reports go
 * on meanwhile.
 */
enum MHD_Result api_learn_family(struct api *api, struct MHD_Connection *conn, struct request *req)
{
    return api_defer(api, conn, req, API_DEFER_BACKGROUND, learn_deferred);
}
