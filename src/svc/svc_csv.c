/*
 * CSV exports of a job's history (see svc.h): read from the store in batches, holding no
 * lock between them, into one buffer sized for a batch of the job's rows.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonx.h"
#include "svc/svc_int.h"

/*
 * Rows read from the store per batch, and the longest text of one row with groups lrs:
 * the step and the event, the loss and each lr, and their separators. The buffer of an
 * export holds one batch, so it grows with the job's groups, not with GLR_MAX_GROUPS.
 */
#define CSV_BATCH_ROWS      2048
#define CSV_ROW_MAX(groups) (64 + ((groups) + 1) * (JSONX_DOUBLE_MAX + 1))
/* The header line: "step,loss", ",lr_N" per group, ",event\n". */
#define CSV_HEADER_MAX(groups) (32 + (groups)*16)

struct svc_csv {
    struct svc *svc;
    struct svc_history_key key;
    int64_t next_step, next_rank; /* where the next batch starts */
    int64_t to_step;
    bool header_done;
    bool finished;
    char *text;    /* the current batch */
    size_t cap;    /* bytes of text: a batch of this job's rows */
    size_t len;    /* bytes in text */
    size_t offset; /* bytes of text already given out */
    size_t rows;   /* rows in the current batch */
};

static void csv_append_row(struct svc_csv *csv, const struct store_report *r)
{
    /* Written piece by piece rather than with printf: this runs for every row. */
    char *p = csv->text + csv->len;
    size_t n = jsonx_format_integer(r->step, p);
    p[n++] = ',';
    n += jsonx_format_double(r->loss, p + n);
    for (size_t g = 0; g < r->groups; g++) {
        p[n++] = ',';
        n += jsonx_format_double(r->lrs[g], p + n);
    }
    p[n++] = ',';
    const char *event = glr_event_name(r->event);
    size_t event_len = strlen(event);
    memcpy(p + n, event, event_len);
    n += event_len;
    p[n++] = '\n';
    csv->len += n;
}

static bool csv_one(void *ctx, const struct store_report *r)
{
    struct svc_csv *csv = ctx;
    csv_append_row(csv, r);
    csv->rows++;
    csv->next_step = r->step;
    csv->next_rank = r->rank + 1;
    return true;
}

int svc_csv_open(struct svc *svc, const char *id, int64_t from_step, int64_t to_step,
                 struct svc_csv **out, char *err)
{
    *out = NULL;
    /* Each export holds a batch's buffer for as long as its client reads: bound them. */
    if (atomic_fetch_add(&svc->csv_exports, 1) >= SVC_CSV_EXPORTS_MAX) {
        atomic_fetch_sub(&svc->csv_exports, 1);
        return glr_fail(err, GLR_EBUSY, "%d CSV exports are running already; try again",
                        SVC_CSV_EXPORTS_MAX);
    }
    struct svc_csv *csv = calloc(1, sizeof(*csv));
    if (!csv) {
        atomic_fetch_sub(&svc->csv_exports, 1);
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    csv->svc = svc;
    int rc = svc_history_key(svc, id, &csv->key, err);
    if (!rc) {
        size_t row_max = CSV_ROW_MAX(csv->key.groups);
        size_t header_max = CSV_HEADER_MAX(csv->key.groups);
        csv->cap = CSV_BATCH_ROWS * row_max > header_max ? CSV_BATCH_ROWS * row_max : header_max;
        csv->text = malloc(csv->cap);
        if (!csv->text)
            rc = glr_fail(err, GLR_ENOMEM, "out of memory");
    }
    if (rc) {
        svc_csv_close(csv);
        return rc;
    }
    csv->next_step = from_step;
    csv->to_step = to_step;
    *out = csv;
    return GLR_OK;
}

/* Refills the buffer with the header or the next batch; false at the end or on error. */
static bool csv_refill(struct svc_csv *csv, bool *failed)
{
    csv->len = csv->offset = csv->rows = 0;
    if (!csv->header_done) {
        csv->header_done = true;
        if (csv->key.groups == 1) {
            csv->len = (size_t)sprintf(csv->text, "step,loss,lr,event\n");
        } else {
            csv->len = (size_t)sprintf(csv->text, "step,loss");
            for (size_t g = 0; g < csv->key.groups; g++)
                csv->len += (size_t)sprintf(csv->text + csv->len, ",lr_%zu", g);
            csv->len += (size_t)sprintf(csv->text + csv->len, ",event\n");
        }
        return true;
    }
    if (csv->finished)
        return false;
    char err[GLR_ERR_MAX];
    int rc = store_report_scan(csv->svc->store, csv->key.seq, csv->next_step, csv->next_rank,
                               csv->to_step, CSV_BATCH_ROWS, csv_one, csv, err);
    if (rc) {
        *failed = true;
        return false;
    }
    if (csv->rows < CSV_BATCH_ROWS)
        csv->finished = true;
    return csv->len > 0;
}

ssize_t svc_csv_read(struct svc_csv *csv, char *buf, size_t max)
{
    size_t given = 0;
    while (given < max) {
        if (csv->offset == csv->len) {
            bool failed = false;
            if (!csv_refill(csv, &failed))
                return failed && given == 0 ? -1 : (ssize_t)given;
        }
        size_t n = csv->len - csv->offset;
        if (n > max - given)
            n = max - given;
        memcpy(buf + given, csv->text + csv->offset, n);
        csv->offset += n;
        given += n;
    }
    return (ssize_t)given;
}

void svc_csv_close(struct svc_csv *csv)
{
    if (!csv)
        return;
    atomic_fetch_sub(&csv->svc->csv_exports, 1);
    free(csv->text);
    free(csv);
}
