/*
 * Reading what a client sends: request bodies and query parameters, from text to checked
 * values, with a message that names what was wrong. No HTTP library here, so that every
 * parser the network reaches can be fed directly (the fuzz harnesses in tests/fuzz/ do).
 */
#ifndef GLR_REQ_H
#define GLR_REQ_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/jsonstrict.h"
#include "base/status.h"
#include "http/auth.h"
#include "svc/svc.h"

/*
 * Deepest nesting of arrays and objects in a request body. No request needs more than
 * three levels; the bound keeps cJSON's recursive parser, printer and free shallow.
 */
#define REQ_JSON_DEPTH_MAX 32
_Static_assert(REQ_JSON_DEPTH_MAX <= JSONSTRICT_DEPTH_MAX, "jsonstrict_check() follows the depth");

/*
 * The parsers below return GLR_OK, or a status and a message in err (GLR_ERR_MAX bytes):
 * GLR_EMEDIA (the body is not JSON by its Content-Type), GLR_EMALFORMED (empty, not strict
 * RFC 8259 JSON, nested deeper than REQ_JSON_DEPTH_MAX, or an object with a key twice; see
 * base/jsonstrict.h), GLR_EINVAL (a field or parameter is not acceptable, named in err: a
 * number beyond the range of a double and a string holding \u0000 are among them) or
 * GLR_ENOMEM. On failure nothing is left to free.
 */
/*
 * True for application/json and application/<anything>+json, in any case, with or without
 * parameters (charset=utf-8).
 */
bool req_is_json_media_type(const char *type);

/*
 * Whether an Accept header (NULL: none) asks for text/plain before JSON: it names
 * text/plain with a q above that of every JSON type it names (a wildcard asks for neither).
 */
bool req_accepts_text(const char *accept);

/*
 * The form of a decision's answer: *text is true for ?format=text, false for ?format=json,
 * else what accept asks for (req_accepts_text). Returns GLR_OK, or GLR_EINVAL for another
 * format.
 */
int req_parse_answer_format(const char *format, const char *accept, bool *text, char *err);

/*
 * True when an Accept-Encoding header (NULL: none) takes gzip: "gzip" or "*" listed
 * without q=0.
 */
bool req_accepts_gzip(const char *accept_encoding);

/* A request body: its Content-Type (NULL when absent) and its bytes (not NUL-terminated). */
struct req_body {
    const char *type;
    const char *text;
    size_t len;
};

/*
 * Parses a body as a JSON object whose keys are all in allowed (NULL-terminated); what
 * names the object in messages ("job", "report"). *out is the caller's (cJSON_Delete()).
 */
int req_parse_object(const struct req_body *body, const char *const *allowed, const char *what,
                     cJSON **out, char *err);

/* A job to create: PUT /v1/jobs/{id} and POST /v1/jobs. */
struct req_create {
    cJSON *tree;              /* the body, owned: req_create_clear() */
    struct svc_create create; /* borrows from tree; id is left NULL for the caller */
};
int req_parse_create(const struct req_body *body, struct req_create *out, char *err);
/* Frees what req_parse_create() kept; a zeroed or cleared one is accepted. */
void req_create_clear(struct req_create *create);

/* A change to a job: PATCH /v1/jobs/{id}. */
struct req_patch {
    cJSON *tree;          /* the body, owned: req_patch_clear() */
    bool finish;          /* "status": "finished" was given */
    const cJSON *tags;    /* borrowed from tree; NULL leaves the tags alone */
    const cJSON *outcome; /* borrowed from tree; NULL: none given */
};
int req_parse_patch(const struct req_body *body, struct req_patch *out, char *err);
void req_patch_clear(struct req_patch *patch);

/* A report: POST /v1/jobs/{id}/reports. */
/*
 * step from 0 to GLR_MAX_STEP; rank from 0 to SVC_WORLD_MAX - 1 (0 when absent); loss
 * when given (the service says whether the job needs one); lr_cap a finite number > 0
 * (+inf when absent).
 */
int req_parse_report(const struct req_body *body, struct svc_report_input *out, char *err);

/* Most reports one batch (POST /v1/reports) carries. */
#define REQ_BATCH_MAX 1000

/* One report of a batch: its job and its fields as req_parse_report() reads them. */
struct req_batch_item {
    char job[STORE_ID_MAX + 1]; /* "" when it named none */
    struct svc_report_input in;
    bool has_step; /* in.step is the item's (for its answer), even when it failed */
    int status;    /* GLR_OK, or GLR_EINVAL: the item is answered err, unreported */
    char err[GLR_ERR_MAX];
};

/*
 * A batch: {"reports": [{"job", "step", "loss", "rank", "lr_cap"}, ...]} of 1 to
 * REQ_BATCH_MAX items. A fault of the body is the whole request's (GLR_EMEDIA,
 * GLR_EMALFORMED, GLR_EINVAL); a fault of one item is that item's status, and the others
 * go on. *items (count of them) is the caller's: free().
 */
int req_parse_batch(const struct req_body *body, struct req_batch_item **items, size_t *count,
                    char *err);

/* A rewind: POST /v1/jobs/{id}/rewind. */
struct req_rewind {
    int64_t to_step; /* -1 to GLR_MAX_STEP */
};
int req_parse_rewind(const struct req_body *body, struct req_rewind *out, char *err);

/* A token to create: POST /v1/tokens. */
struct req_token {
    cJSON *tree;         /* the body, owned: req_token_clear() */
    enum auth_role role; /* "admin", "writer" or "reader" */
    const char *name;    /* borrowed from tree; NULL when not given */
};
int req_parse_token(const struct req_body *body, struct req_token *out, char *err);
void req_token_clear(struct req_token *token);

/*
 * The query parameters of a request, read through a function that returns the (decoded)
 * value of a name, or NULL when it is absent. The strings it returns must outlive the
 * parsed query.
 */
struct req_query {
    const char *(*get)(void *ctx, const char *name);
    void *ctx;
};

/* An integer parameter in [min, max]; dflt when absent. */
int req_query_integer(const struct req_query *query, const char *name, int64_t min, int64_t max,
                      int64_t dflt, int64_t *out, char *err);

/* GET /v1/jobs: page_size, page_token, status, tag (key:value) and family. */
struct req_list {
    struct svc_list_query q; /* tag_key points into key, the rest into the query */
    char key[SVC_TAG_KEY_MAX + 1];
};
int req_parse_list(const struct req_query *query, struct req_list *out, char *err);

/* GET /v1/families and /v1/families/{name}: page_size, page_token, and policy. */
struct req_families {
    int64_t page_size;
    const char *page_token; /* points into the query */
    const char *policy;     /* points into the query; NULL: auto */
};
int req_parse_families(const struct req_query *query, struct req_families *out, char *err);

/* GET /v1/jobs/{id}/history: the steps, the page, max_points and the format. */
struct req_history {
    struct svc_history_query q; /* page_token points into the query */
    bool csv;                   /* format=csv */
};
int req_parse_history(const struct req_query *query, struct req_history *out, char *err);

/* GET /v1/jobs/{id}/lr: step (required) and wait_ms. */
struct req_lr {
    int64_t step;
    int64_t wait_ms;
};
int req_parse_lr(const struct req_query *query, struct req_lr *out, char *err);

#endif
