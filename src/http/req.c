/*
 * Reading request bodies and query parameters (see req.h). The messages here are the
 * detail of the client's problem+json answer, so each names the field and what it takes.
 */
#include "http/req.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/jsonstrict.h"
#include "base/jsonx.h"
#include "base/suggest.h"

bool req_is_json_media_type(const char *type)
{
    while (*type == ' ' || *type == '\t')
        type++;
    /* A Content-Type ends at its parameters; a range of an Accept list at the next too. */
    size_t len = strcspn(type, ";,");
    while (len > 0 && (type[len - 1] == ' ' || type[len - 1] == '\t'))
        len--;
    const char *prefix = "application/";
    size_t prefix_len = strlen(prefix);
    if (len <= prefix_len || strncasecmp(type, prefix, prefix_len) != 0)
        return false;
    const char *subtype = type + prefix_len;
    size_t subtype_len = len - prefix_len;
    if (subtype_len == 4 && strncasecmp(subtype, "json", 4) == 0)
        return true;
    return subtype_len > 5 && strncasecmp(subtype + subtype_len - 5, "+json", 5) == 0;
}

/* Most media ranges of an Accept header looked at; the rest is ignored. */
#define REQ_ACCEPT_RANGES_MAX 32

/*
 * The q of a media range's parameters (";q=0.5"), 1 when none; 0 for a q that is not a
 * number from 0 to 1 (RFC 9110: such a range is not acceptable).
 */
static double range_quality(const char *params, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (params[i] != ';')
            continue;
        size_t j = i + 1;
        while (j < len && (params[j] == ' ' || params[j] == '\t'))
            j++;
        if (j + 2 > len || (params[j] != 'q' && params[j] != 'Q') || params[j + 1] != '=')
            continue;
        char digits[8] = "";
        size_t n = 0;
        for (j += 2; j < len && n + 1 < sizeof(digits) && strchr("0123456789.", params[j]); j++)
            digits[n++] = params[j];
        digits[n] = '\0';
        char *end = NULL;
        double q = strtod(digits, &end);
        return n > 0 && *end == '\0' && q >= 0 && q <= 1 ? q : 0;
    }
    return 1;
}

bool req_accepts_text(const char *accept)
{
    if (!accept)
        return false;
    double text = 0, json = 0;
    const char *p = accept;
    for (int ranges = 0; *p && ranges < REQ_ACCEPT_RANGES_MAX; ranges++) {
        size_t len = strcspn(p, ",");
        const char *type = p;
        while (type < p + len && (*type == ' ' || *type == '\t'))
            type++;
        size_t type_len = strcspn(type, ";,");
        while (type_len > 0 && (type[type_len - 1] == ' ' || type[type_len - 1] == '\t'))
            type_len--;
        double q = range_quality(type + type_len, (size_t)(p + len - (type + type_len)));
        if (type_len == 10 && strncasecmp(type, "text/plain", 10) == 0)
            text = q > text ? q : text;
        else if (type_len > 0 && req_is_json_media_type(type))
            json = q > json ? q : json;
        p += len;
        if (*p == ',')
            p++;
    }
    return text > 0 && text > json;
}

bool req_accepts_gzip(const char *accept_encoding)
{
    if (!accept_encoding)
        return false;
    double gzip = -1, any = -1;
    const char *p = accept_encoding;
    for (int codings = 0; *p && codings < REQ_ACCEPT_RANGES_MAX; codings++) {
        size_t len = strcspn(p, ",");
        const char *name = p;
        while (name < p + len && (*name == ' ' || *name == '\t'))
            name++;
        size_t name_len = strcspn(name, ";,");
        while (name_len > 0 && (name[name_len - 1] == ' ' || name[name_len - 1] == '\t'))
            name_len--;
        double q = range_quality(name + name_len, (size_t)(p + len - (name + name_len)));
        if (name_len == 4 && strncasecmp(name, "gzip", 4) == 0)
            gzip = q;
        else if (name_len == 1 && name[0] == '*')
            any = q;
        p += len;
        if (*p == ',')
            p++;
    }
    /* gzip named decides; else a "*" does (RFC 9110, 12.5.3). */
    return gzip >= 0 ? gzip > 0 : any > 0;
}

int req_parse_answer_format(const char *format, const char *accept, bool *text, char *err)
{
    *text = false;
    if (!format) {
        *text = req_accepts_text(accept);
        return GLR_OK;
    }
    if (strcmp(format, "text") == 0)
        *text = true;
    else if (strcmp(format, "json") != 0)
        return glr_fail(err, GLR_EINVAL, "format must be \"json\" or \"text\"");
    return GLR_OK;
}

/* Names the first key of object that is not in allowed (NULL-terminated), or NULL. */
static const char *unknown_key(const cJSON *object, const char *const *allowed)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, object)
    {
        bool known = false;
        for (size_t i = 0; allowed[i] && !known; i++)
            known = strcmp(item->string, allowed[i]) == 0;
        if (!known)
            return item->string;
    }
    return NULL;
}

/* GLR_OK when every key of object is in allowed; else GLR_EINVAL naming the first that is not. */
static int check_keys(const cJSON *object, const char *const *allowed, const char *what, char *err)
{
    const char *unknown = unknown_key(object, allowed);
    if (!unknown)
        return GLR_OK;
    size_t count = 0;
    while (allowed[count])
        count++;
    const char *closest = suggest_closest(unknown, allowed, count);
    return closest ? glr_fail(err, GLR_EINVAL,
                              "unknown field \"%.64s\" in the %s (did you mean \"%s\"?)", unknown,
                              what, closest)
                   : glr_fail(err, GLR_EINVAL, "unknown field \"%.64s\" in the %s", unknown, what);
}

int req_parse_object(const struct req_body *body, const char *const *allowed, const char *what,
                     cJSON **out, char *err)
{
    *out = NULL;
    if (body->type && !req_is_json_media_type(body->type))
        return glr_fail(err, GLR_EMEDIA,
                        "the request body must be JSON (Content-Type: application/json)");
    if (body->len == 0)
        return glr_fail(err, GLR_EMALFORMED, "the request body is empty; a JSON object is needed");
    /* Held to RFC 8259 first: what cJSON would read leniently never reaches a field. */
    char fault[GLR_ERR_MAX];
    int rc = jsonstrict_check(body->text, body->len, REQ_JSON_DEPTH_MAX, fault);
    if (rc == GLR_EMALFORMED)
        return glr_fail(err, rc, "the request body is not valid JSON: %s", fault);
    if (rc)
        return glr_fail(err, rc, "%s", fault);
    const char *end = NULL;
    cJSON *tree = cJSON_ParseWithLengthOpts(body->text, body->len, &end, false);
    if (!tree) {
        /*
         * Strict JSON that cJSON still refuses: a number longer than the 63 bytes it
         * reads, or no memory (which leaves end unset).
         */
        size_t at = end && end >= body->text ? (size_t)(end - body->text) : 0;
        return glr_fail(err, GLR_EMALFORMED, "the request body is not valid JSON (at byte %zu)",
                        at < body->len ? at : body->len);
    }
    rc = jsonstrict_unique_keys(tree, "the request body", err);
    if (rc) {
        cJSON_Delete(tree);
        return rc;
    }
    if (!cJSON_IsObject(tree)) {
        cJSON_Delete(tree);
        return glr_fail(err, GLR_EINVAL, "the request body must be a JSON object");
    }
    rc = check_keys(tree, allowed, what, err);
    if (rc) {
        cJSON_Delete(tree);
        return rc;
    }
    *out = tree;
    return GLR_OK;
}

static const char *const create_keys[] = {
    "policy", "lr",   "config", "tags", "world_size", "aggregate", "aggregate_timeout_ms",
    "family", "tune", NULL};

int req_parse_create(const struct req_body *body, struct req_create *out, char *err)
{
    memset(out, 0, sizeof(*out));
    cJSON *tree = NULL;
    int rc = req_parse_object(body, create_keys, "job", &tree, err);
    if (rc)
        return rc;
    /* The values are the service's to check (svc_job_create), every one of them. */
    out->tree = tree;
    out->create = (struct svc_create){
        .policy = cJSON_GetObjectItemCaseSensitive(tree, "policy"),
        .lr = cJSON_GetObjectItemCaseSensitive(tree, "lr"),
        .config = cJSON_GetObjectItemCaseSensitive(tree, "config"),
        .tags = cJSON_GetObjectItemCaseSensitive(tree, "tags"),
        .world_size = cJSON_GetObjectItemCaseSensitive(tree, "world_size"),
        .aggregate = cJSON_GetObjectItemCaseSensitive(tree, "aggregate"),
        .aggregate_timeout_ms = cJSON_GetObjectItemCaseSensitive(tree, "aggregate_timeout_ms"),
        .family = cJSON_GetObjectItemCaseSensitive(tree, "family"),
        .tune = cJSON_GetObjectItemCaseSensitive(tree, "tune"),
    };
    return GLR_OK;
}

void req_create_clear(struct req_create *create)
{
    cJSON_Delete(create->tree);
    memset(create, 0, sizeof(*create));
}

static const char *const patch_keys[] = {"status", "outcome", "tags", NULL};

int req_parse_patch(const struct req_body *body, struct req_patch *out, char *err)
{
    memset(out, 0, sizeof(*out));
    cJSON *tree = NULL;
    int rc = req_parse_object(body, patch_keys, "patch", &tree, err);
    if (rc)
        return rc;
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(tree, "status");
    const cJSON *tags = cJSON_GetObjectItemCaseSensitive(tree, "tags");
    const cJSON *outcome = cJSON_GetObjectItemCaseSensitive(tree, "outcome");
    if (status && !(cJSON_IsString(status) && strcmp(status->valuestring, "finished") == 0))
        rc = glr_fail(err, GLR_EINVAL, "status can only be set to \"finished\"");
    else if (!status && !tags && !outcome)
        rc = glr_fail(err, GLR_EINVAL, "a patch needs \"status\", \"outcome\" or \"tags\"");
    if (rc) {
        cJSON_Delete(tree);
        return rc;
    }
    out->tree = tree;
    out->finish = status != NULL;
    out->tags = tags;
    out->outcome = outcome;
    return GLR_OK;
}

void req_patch_clear(struct req_patch *patch)
{
    cJSON_Delete(patch->tree);
    memset(patch, 0, sizeof(*patch));
}

/* Reads a loss: a number, or null / "NaN" / "Infinity" / "-Infinity" for a diverged step. */
static bool parse_loss(const cJSON *item, double *loss)
{
    if (cJSON_IsNull(item)) {
        *loss = NAN;
        return true;
    }
    if (cJSON_IsString(item))
        return jsonx_get_double(item, loss);
    return cJSON_IsNumber(item) && jsonx_get_double(item, loss);
}

static const char *const report_keys[] = {"step", "loss", "rank", "lr_cap", NULL};

/* The fields of one report, from its object (its keys checked already). */
static int report_fields(const cJSON *tree, struct svc_report_input *out, char *err)
{
    memset(out, 0, sizeof(*out));
    const cJSON *rank = cJSON_GetObjectItemCaseSensitive(tree, "rank");
    const cJSON *loss = cJSON_GetObjectItemCaseSensitive(tree, "loss");
    const cJSON *lr_cap = cJSON_GetObjectItemCaseSensitive(tree, "lr_cap");
    out->lr_cap = INFINITY;
    out->has_loss = loss != NULL;
    if (!jsonx_get_integer(cJSON_GetObjectItemCaseSensitive(tree, "step"), 0, GLR_MAX_STEP,
                           &out->step))
        return glr_fail(err, GLR_EINVAL, "step must be an integer from 0 to %lld",
                        (long long)GLR_MAX_STEP);
    if (rank && !jsonx_get_integer(rank, 0, SVC_WORLD_MAX - 1, &out->rank))
        return glr_fail(err, GLR_EINVAL, "rank must be an integer from 0 to %d", SVC_WORLD_MAX - 1);
    if (loss && !parse_loss(loss, &out->loss))
        return glr_fail(err, GLR_EINVAL,
                        "loss must be a number, null, \"NaN\", \"Infinity\" or \"-Infinity\"");
    if (lr_cap && !(cJSON_IsNumber(lr_cap) && jsonx_get_double(lr_cap, &out->lr_cap) &&
                    isfinite(out->lr_cap) && out->lr_cap > 0))
        return glr_fail(err, GLR_EINVAL, "lr_cap must be a finite number > 0");
    return GLR_OK;
}

int req_parse_report(const struct req_body *body, struct svc_report_input *out, char *err)
{
    memset(out, 0, sizeof(*out));
    cJSON *tree = NULL;
    int rc = req_parse_object(body, report_keys, "report", &tree, err);
    if (rc)
        return rc;
    rc = report_fields(tree, out, err);
    cJSON_Delete(tree);
    return rc;
}

static const char *const batch_keys[] = {"reports", NULL};
static const char *const batch_item_keys[] = {"job", "step", "loss", "rank", "lr_cap", NULL};

/* One item of a batch; its faults are its own. */
static void batch_item(const cJSON *object, size_t index, struct req_batch_item *item)
{
    char fault[GLR_ERR_MAX] = "";
    const cJSON *job = cJSON_GetObjectItemCaseSensitive(object, "job");
    if (cJSON_IsString(job) && svc_valid_id(job->valuestring))
        snprintf(item->job, sizeof(item->job), "%s", job->valuestring);
    if (!cJSON_IsObject(object)) {
        item->status = glr_fail(fault, GLR_EINVAL, "a report must be a JSON object");
    } else {
        item->status = check_keys(object, batch_item_keys, "report", fault);
        if (!item->status && !item->job[0])
            item->status = glr_fail(fault, GLR_EINVAL,
                                    "job must be a job id: 1 to %d characters of A-Z, a-z, 0-9, "
                                    "'.', '_', '-', and not \".\" or \"..\"",
                                    STORE_ID_MAX);
        if (!item->status)
            item->status = report_fields(object, &item->in, fault);
    }
    item->has_step = cJSON_IsObject(object) &&
                     jsonx_get_integer(cJSON_GetObjectItemCaseSensitive(object, "step"), 0,
                                       GLR_MAX_STEP, &item->in.step);
    if (item->status)
        snprintf(item->err, sizeof(item->err), "reports[%zu]: %s", index, fault);
}

int req_parse_batch(const struct req_body *body, struct req_batch_item **items, size_t *count,
                    char *err)
{
    *items = NULL;
    *count = 0;
    cJSON *tree = NULL;
    int rc = req_parse_object(body, batch_keys, "batch", &tree, err);
    if (rc)
        return rc;
    const cJSON *reports = cJSON_GetObjectItemCaseSensitive(tree, "reports");
    int n = cJSON_GetArraySize(reports);
    if (!cJSON_IsArray(reports) || n < 1 || n > REQ_BATCH_MAX)
        rc =
            glr_fail(err, GLR_EINVAL, "reports must be an array of 1 to %d reports", REQ_BATCH_MAX);
    struct req_batch_item *out = rc ? NULL : calloc((size_t)n, sizeof(*out));
    if (!rc && !out)
        rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    size_t i = 0;
    for (const cJSON *item = rc ? NULL : reports->child; item; item = item->next, i++)
        batch_item(item, i, &out[i]);
    cJSON_Delete(tree);
    if (rc)
        return rc;
    *items = out;
    *count = (size_t)n;
    return GLR_OK;
}

static const char *const rewind_keys[] = {"to_step", NULL};

int req_parse_rewind(const struct req_body *body, struct req_rewind *out, char *err)
{
    memset(out, 0, sizeof(*out));
    cJSON *tree = NULL;
    int rc = req_parse_object(body, rewind_keys, "rewind", &tree, err);
    if (rc)
        return rc;
    if (!jsonx_get_integer(cJSON_GetObjectItemCaseSensitive(tree, "to_step"), -1, GLR_MAX_STEP,
                           &out->to_step))
        rc = glr_fail(err, GLR_EINVAL, "to_step must be an integer from -1 to %lld",
                      (long long)GLR_MAX_STEP);
    cJSON_Delete(tree);
    return rc;
}

static const char *const token_keys[] = {"role", "name", NULL};

int req_parse_token(const struct req_body *body, struct req_token *out, char *err)
{
    memset(out, 0, sizeof(*out));
    cJSON *tree = NULL;
    int rc = req_parse_object(body, token_keys, "token", &tree, err);
    if (rc)
        return rc;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(tree, "role");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(tree, "name");
    if (!cJSON_IsString(role) || auth_role_parse(role->valuestring, &out->role) != 0)
        rc = glr_fail(err, GLR_EINVAL, "role must be \"admin\", \"writer\" or \"reader\"");
    else if (name && !cJSON_IsString(name))
        rc = glr_fail(err, GLR_EINVAL, "name must be a string");
    if (rc) {
        cJSON_Delete(tree);
        memset(out, 0, sizeof(*out));
        return rc;
    }
    out->tree = tree;
    out->name = name ? name->valuestring : NULL;
    return GLR_OK;
}

void req_token_clear(struct req_token *token)
{
    cJSON_Delete(token->tree);
    memset(token, 0, sizeof(*token));
}

/* ---- query parameters ------------------------------------------------------------------ */

int req_query_integer(const struct req_query *query, const char *name, int64_t min, int64_t max,
                      int64_t dflt, int64_t *out, char *err)
{
    const char *text = query->get(query->ctx, name);
    *out = dflt;
    if (!text)
        return GLR_OK;
    char *end = NULL;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || v < min || v > max)
        return glr_fail(err, GLR_EINVAL, "%s must be an integer from %lld to %lld", name,
                        (long long)min, (long long)max);
    *out = v;
    return GLR_OK;
}

int req_parse_list(const struct req_query *query, struct req_list *out, char *err)
{
    memset(out, 0, sizeof(*out));
    out->q.status = STORE_ANY;
    int rc = req_query_integer(query, "page_size", 1, SVC_LIST_PAGE_MAX, SVC_LIST_PAGE_DEFAULT,
                               &out->q.page_size, err);
    if (rc)
        return rc;
    out->q.page_token = query->get(query->ctx, "page_token");
    const char *status = query->get(query->ctx, "status");
    if (status && strcmp(status, "running") == 0)
        out->q.status = STORE_RUNNING;
    else if (status && strcmp(status, "finished") == 0)
        out->q.status = STORE_FINISHED;
    else if (status)
        return glr_fail(err, GLR_EINVAL, "status must be \"running\" or \"finished\"");
    const char *tag = query->get(query->ctx, "tag");
    if (tag) {
        const char *colon = strchr(tag, ':');
        size_t key_len = colon ? (size_t)(colon - tag) : 0;
        if (!colon || key_len == 0 || key_len > SVC_TAG_KEY_MAX)
            return glr_fail(err, GLR_EINVAL, "tag must be key:value");
        memcpy(out->key, tag, key_len);
        out->key[key_len] = '\0';
        out->q.tag_key = out->key;
        out->q.tag_value = colon + 1;
    }
    out->q.family = query->get(query->ctx, "family");
    if (out->q.family && !svc_valid_id(out->q.family))
        return glr_fail(err, GLR_EINVAL, "family must be a valid family name (as a job id)");
    return GLR_OK;
}

int req_parse_families(const struct req_query *query, struct req_families *out, char *err)
{
    memset(out, 0, sizeof(*out));
    out->page_token = query->get(query->ctx, "page_token");
    out->policy = query->get(query->ctx, "policy");
    return req_query_integer(query, "page_size", 1, SVC_LIST_PAGE_MAX, SVC_LIST_PAGE_DEFAULT,
                             &out->page_size, err);
}

int req_parse_history(const struct req_query *query, struct req_history *out, char *err)
{
    memset(out, 0, sizeof(*out));
    struct svc_history_query *q = &out->q;
    int rc = req_query_integer(query, "from_step", 0, GLR_MAX_STEP, 0, &q->from_step, err);
    if (!rc)
        rc = req_query_integer(query, "to_step", 0, GLR_MAX_STEP, GLR_MAX_STEP, &q->to_step, err);
    if (!rc)
        rc = req_query_integer(query, "page_size", 1, SVC_HISTORY_PAGE_MAX,
                               SVC_HISTORY_PAGE_DEFAULT, &q->page_size, err);
    if (!rc)
        rc = req_query_integer(query, "max_points", 1, SVC_MAX_POINTS_MAX, 0, &q->max_points, err);
    if (rc)
        return rc;
    if (q->from_step > q->to_step)
        return glr_fail(err, GLR_EINVAL, "from_step must not exceed to_step");
    q->page_token = query->get(query->ctx, "page_token");
    const char *format = query->get(query->ctx, "format");
    if (format && strcmp(format, "json") != 0 && strcmp(format, "csv") != 0)
        return glr_fail(err, GLR_EINVAL, "format must be \"json\" or \"csv\"");
    out->csv = format && strcmp(format, "csv") == 0;
    return GLR_OK;
}

int req_parse_lr(const struct req_query *query, struct req_lr *out, char *err)
{
    memset(out, 0, sizeof(*out));
    if (!query->get(query->ctx, "step"))
        return glr_fail(err, GLR_EINVAL, "step is required");
    int rc = req_query_integer(query, "step", 0, GLR_MAX_STEP, 0, &out->step, err);
    if (!rc)
        rc = req_query_integer(query, "wait_ms", 0, SVC_WAIT_MAX_MS, 0, &out->wait_ms, err);
    return rc;
}
