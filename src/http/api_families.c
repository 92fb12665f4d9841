/*
 * The family routes (see api_int.h): the list of families, and one family with its runs
 * and what tuning has learned from them.
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
