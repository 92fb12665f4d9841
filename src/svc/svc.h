/*
 * The scheduling service: training jobs, each a scheduler from the core whose state and
 * history live in the store. This layer holds the rules of the API (what a retry is, which
 * steps are accepted, what a job looks like as JSON) but knows nothing of HTTP: the HTTP
 * layer parses requests into these calls and turns their results and status codes into
 * responses.
 *
 * Active jobs are kept in memory, so that a report does not read the database; idle ones
 * beyond a bound are dropped and loaded again when used. Memory is written through: a
 * report's decision is answered only once the store has committed it (in a group with
 * other reports' decisions, see store.h). Calls are thread-safe; reports to one job are
 * applied one after the other.
 */
#ifndef GLR_SVC_H
#define GLR_SVC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/glr.h"
#include "store/store.h"

/* Limits on what a client may ask for. */
#define SVC_TAGS_MAX              64  /* tags on one job */
#define SVC_TAG_KEY_MAX           64  /* bytes in a tag key */
#define SVC_TAG_VALUE_MAX         256 /* bytes in a tag value */
#define SVC_LIST_PAGE_DEFAULT     50
#define SVC_LIST_PAGE_MAX         1000
#define SVC_HISTORY_PAGE_DEFAULT  1000
#define SVC_HISTORY_PAGE_MAX      10000
#define SVC_MAX_POINTS_MAX        10000 /* largest max_points of a downsampled history */
#define SVC_RANK_MAX              4095  /* largest rank number */
#define SVC_SNAPSHOT_EVERY        4096  /* reports between two state snapshots (rewind speed) */
#define SVC_STATE_EVERY           64    /* reports between two writes of a job's row (see svc.c) */
#define SVC_WORLD_MAX             4096  /* most ranks of one job */
#define SVC_AGGREGATE_TIMEOUT_MAX 3600000  /* longest wait for every rank of a step (ms) */
#define SVC_WAIT_MAX_MS           60000    /* longest wait_ms of an lr lookup */
#define SVC_WAITERS_MAX           10000    /* requests waiting at once, all jobs together */
#define SVC_WAITERS_SPARE         16       /* waiting requests per job beyond two per rank */
#define SVC_RESIDENT_DEFAULT      10000    /* jobs kept in memory unless told otherwise */
#define SVC_CSV_EXPORTS_MAX       64       /* CSV exports open at once; past it, GLR_EBUSY */
#define SVC_MAX_REPORTS_DEFAULT   10000000 /* the daemon's --max-reports-per-job by default */
#define SVC_FAMILY_JOBS_MAX       10000    /* jobs of one family a read of it looks at */
#define SVC_REWINDS_SHOWN         1000     /* rewinds one history answer lists (the oldest) */

struct svc;

struct svc_options {
    struct store_options store;
    /*
     * Most jobs kept in memory (0: SVC_RESIDENT_DEFAULT). Beyond it, idle jobs are
     * dropped from memory; jobs in use are never dropped, so this is a target, not a cap.
     */
    size_t resident_jobs;
    /*
     * Most decided steps one job may hold (0: no limit): a report of a new step past it is
     * GLR_EQUOTA until the job is rewound.
     */
    uint64_t max_reports_per_job;
};

/*
 * Opens the service on the database at path; options may be NULL for the defaults.
 * *out is the caller's (svc_close()).
 */
int svc_open(const char *path, const struct svc_options *options, struct svc **out, char *err);

/*
 * Commits and answers the decisions on their way to the store, frees every job in memory
 * and closes the store; NULL is accepted. Stop the HTTP server first.
 */
void svc_close(struct svc *svc);

/*
 * The store the service runs on, for the modules beside it that keep their own rows there
 * (API tokens). Borrowed: it lives as long as svc.
 */
struct store *svc_store(struct svc *svc);

/* True when id is a valid job id: [A-Za-z0-9._-]{1,128}, but not "." or "..". */
bool svc_valid_id(const char *id);

/*
 * A request to create a job, as the client wrote it: the service checks every value. The
 * cJSON items are borrowed, each may be NULL.
 */
struct svc_create {
    const char *id;      /* NULL: the service makes one */
    const cJSON *policy; /* a string; NULL: greedylr */
    const cJSON *lr;
    const cJSON *config;
    const cJSON *tags;
    const cJSON *world_size;           /* NULL: 1 */
    const cJSON *aggregate;            /* NULL: "mean" */
    const cJSON *aggregate_timeout_ms; /* NULL: 30000 */
    const cJSON *family;               /* a string with the rules of an id; NULL: none */
    const cJSON *tune;                 /* true: settings chosen from the family; NULL: false */
};

/*
 * Creates a job, or finds the same job created by the same request before (*created is
 * then false). *job_out receives the job as JSON (the caller's). With tune, the job's
 * policy (auto by default) gets settings chosen from the finished jobs of its family
 * (core/tune.h), recorded in the job's "tuned"; a retry of the same request finds the
 * job it made. Returns GLR_OK, GLR_EINVAL (a bad id, lr, config, tags or family; tune
 * without a family, or for a policy that is not tuned), GLR_ECONFLICT (the id is taken by
 * a job created differently) or GLR_EIO.
 */
int svc_job_create(struct svc *svc, const struct svc_create *request, bool *created,
                   cJSON **job_out, char *err);

/* The job as JSON (the caller's). Returns GLR_OK, GLR_ENOTFOUND or GLR_EIO. */
int svc_job_get(struct svc *svc, const char *id, cJSON **job_out, char *err);

/*
 * Changes the status (finished: true finishes the job), gives a finished job its outcome
 * (outcome: a finite number; NULL for the default, its last loss) and/or replaces the
 * tags (NULL leaves them). Finishing a job reads its last and lowest losses from its
 * history, drops the ranks gathered for a step not decided and answers every request
 * waiting on it GLR_ECONFLICT. Returns GLR_OK, GLR_EINVAL (an outcome that is not a
 * finite number), GLR_ENOTFOUND, GLR_ECONFLICT (an outcome for a running job that the
 * patch does not finish) or GLR_EIO.
 */
int svc_job_patch(struct svc *svc, const char *id, const bool *finished, const cJSON *outcome,
                  const cJSON *tags, cJSON **job_out, char *err);

/* Deletes the job and its history. Returns GLR_OK, GLR_ENOTFOUND or GLR_EIO. */
int svc_job_delete(struct svc *svc, const char *id, char *err);

struct svc_list_query {
    int64_t page_size;      /* 1 to SVC_LIST_PAGE_MAX */
    const char *page_token; /* NULL for the first page */
    enum store_status_filter status;
    const char *tag_key; /* NULL for no tag filter */
    const char *tag_value;
    const char *family; /* NULL for any */
};

/*
 * Reads the page_token of a job list (NULL: the first page) into the seq the page starts
 * after (0 for the first page). Returns GLR_OK or GLR_EINVAL for a token this server did
 * not give.
 */
int svc_list_token_parse(const char *token, int64_t *after, char *err);

/*
 * One page of jobs in creation order: {"jobs": [...], "next_page_token": "..." or null}.
 * Returns GLR_OK, GLR_EINVAL (a bad page token) or GLR_EIO.
 */
int svc_job_list(struct svc *svc, const struct svc_list_query *query, cJSON **out, char *err);

/*
 * One page of families by name: {"families": [{"name", "jobs", "finished",
 * "best_outcome", "updated_at"}], "next_page_token"}. page_size is 1 to
 * SVC_LIST_PAGE_MAX. Returns GLR_OK, GLR_EINVAL (a bad page token) or GLR_EIO.
 */
int svc_family_list(struct svc *svc, int64_t page_size, const char *page_token, cJSON **out,
                    char *err);

/*
 * A family: its jobs ("runs", at most SVC_FAMILY_JOBS_MAX, each with its settings on the
 * grid of policy and its outcome) and what tuning of policy (NULL: auto) has learned from
 * them: the grid, the best run, and the settings of the lowest expected outcome now.
 * Returns GLR_OK, GLR_EINVAL (a policy without a grid), GLR_ENOTFOUND (no job of that
 * family) or GLR_EIO.
 */
int svc_family_get(struct svc *svc, const char *name, const char *policy, cJSON **out, char *err);

/*
 * Learns a new model for family (core/learn.h) from the histories of its newest
 * LEARN_RUNS_MAX finished jobs with a finite outcome, and stores it as the family's next
 * version. *out receives its record: {"family", "version", "created_at", "trained_on",
 * "fit", "model"}. Reads the store a page at a time and takes no job lock, so reports are
 * not held while it runs. Returns GLR_OK, GLR_ENOTFOUND (no job of that family),
 * GLR_EINVAL (too few finished runs to learn from; err says how many), GLR_ENOMEM,
 * GLR_EBUSY (the service is stopping, or the store cannot write) or GLR_EIO.
 */
int svc_family_learn(struct svc *svc, const char *family, cJSON **out, char *err);

/*
 * The record of family's newest model into *out, JSON null when it has none. Returns
 * GLR_OK, GLR_ENOMEM or GLR_EIO.
 */
int svc_family_model(struct svc *svc, const char *family, cJSON **out, char *err);

/* What a report (or an lr lookup) was answered. */
struct svc_report_result {
    int64_t step;
    size_t groups;
    bool lr_is_array;
    double lrs[GLR_MAX_GROUPS];
    enum glr_event event;
    int64_t ranks; /* how many ranks' losses the decision combined */
    bool replayed; /* a retry: the stored answer, nothing changed */
    bool late;     /* the step was decided without this rank; its loss is kept */
};

/*
 * A request whose answer comes later: a rank waiting for the other ranks of its step, or
 * an lr lookup waiting for a decision. The caller owns it and sets done. When a call
 * returns GLR_EWAIT, the service calls done exactly once, later, from any thread (possibly
 * before the call that returned GLR_EWAIT has gone back to its caller), with a status:
 * GLR_OK and the result, or an error and its message; result and err are valid only
 * during the call. done is called with no lock of the service held, so it may call the
 * service again. The waiter must stay valid until then. When a call returns anything
 * else, done is never called.
 */
struct svc_waiter {
    void (*done)(struct svc_waiter *waiter, int status, const struct svc_report_result *result,
                 const char *err);
    /* The service's own fields (svc_wait.c). */
    struct svc_waiter *next;
    int64_t step;
    int64_t deadline; /* lr lookups only: monotonic ms */
    bool lookup;
    int status; /* the answer, from when it is known until done is called */
    const struct svc_report_result *result;
    const char *err;
};

/* One rank's report of one step, as the client sent it. */
struct svc_report_input {
    int64_t step;
    int64_t rank;  /* 0 in a job of one rank */
    double loss;   /* NaN or infinite for a diverged step */
    bool has_loss; /* false: the client sent none */
    double lr_cap; /* the client's bound on the answer; +inf: none */
};

/*
 * Reports the loss of one step by one rank. loss may be NaN or infinite (a diverged
 * step). In a job of one rank the step is decided at once. In a job of several ranks the
 * policy steps once all ranks of the step have reported (or the job's timeout passed) on
 * their combined loss. A new decision is answered only once it is committed: the call
 * returns GLR_EWAIT and waiter->done answers (GLR_EIO if the commit failed). A retry of
 * a decided step is answered at once (result filled, replayed or late set). lr_cap is
 * the client's upper bound on the answer (+inf: none), taken only by policies that take
 * one (auto); the ranks of one step are capped by the lowest of theirs. It is kept with
 * the decision, so that replays give the policy the same input.
 * A report without a loss (has_loss false) is taken by the policies that do not read it
 * (the time-based ones) and kept as a null loss.
 * Returns GLR_OK (result filled); GLR_EWAIT; GLR_EINVAL for a step or rank out of range,
 * an lr_cap the job's policy does not take, or no loss for a policy that reads it;
 * GLR_ENOTFOUND; GLR_ECONFLICT for a finished job, the same step with another loss, or a
 * step at or below the last decided one that was never reported; GLR_ELIMIT or GLR_EBUSY
 * when too many requests wait already (per job, and in all); GLR_EQUOTA when the job
 * holds max_reports_per_job steps already; GLR_EIO.
 */
int svc_report(struct svc *svc, const char *id, const struct svc_report_input *in,
               struct svc_waiter *waiter, struct svc_report_result *result, char *err);

/*
 * The decision of step: GLR_OK with result when it is decided; GLR_ENOTFOUND for an
 * unknown job or a step that was skipped; GLR_ECONFLICT for a step after the last one of a
 * finished job (nothing will decide it); else, with wait_ms > 0, GLR_EWAIT and
 * waiter->done later (GLR_EAGAIN when wait_ms passed first, GLR_ECONFLICT when the job is
 * finished meanwhile); with wait_ms 0, GLR_EAGAIN.
 */
int svc_lr(struct svc *svc, const char *id, int64_t step, int64_t wait_ms,
           struct svc_waiter *waiter, struct svc_report_result *result, char *err);

/*
 * Gives up one waiting request whose client went away: when waiter still waits on job id,
 * it is taken off and its done is called (GLR_EBUSY) before this returns; when it does not
 * (it is answered already, or is waiting for its decision to be committed, which answers
 * it soon), nothing happens. A rank's loss stays gathered: the rank did report, and its
 * retry is answered as any retry. Safe from any thread holding no lock of the service.
 */
void svc_cancel_waiter(struct svc *svc, const char *id, struct svc_waiter *waiter);

/*
 * Answers every waiting request with GLR_EBUSY ("stopping"), before the HTTP server stops;
 * a learning under way gives up at its next page of history (GLR_EBUSY).
 * Ranks gathered but not decided are dropped: none of them was answered, so their
 * clients retry.
 */
void svc_cancel_waiters(struct svc *svc);

/*
 * Puts the job back in the state it had right after step to_step (-1, or a step before
 * the first report: the initial state) and forgets the history after it (see
 * store_rewind_commit); a finished job runs again. Reporting the same losses again then
 * gives the same answers. A rewind to the last decided step changes nothing, so a retry
 * is answered alike. *job_out receives the job (the caller's).
 * Returns GLR_OK, GLR_EINVAL, GLR_ENOTFOUND, GLR_ECONFLICT (to_step is after the last
 * decided step), GLR_ECORRUPT (the stored history does not replay to the stored answers),
 * GLR_EBUSY or GLR_EIO.
 */
int svc_rewind(struct svc *svc, const char *id, int64_t to_step, cJSON **job_out, char *err);

struct svc_history_query {
    int64_t from_step;
    int64_t to_step;
    int64_t page_size;      /* 1 to SVC_HISTORY_PAGE_MAX */
    const char *page_token; /* NULL for the first page */
    int64_t max_points;     /* 0: all points, paged; else 1 to SVC_MAX_POINTS_MAX */
};

/*
 * Reads the page_token of a history page: the step and rank of its first row. A NULL
 * token leaves them alone. Returns GLR_OK or GLR_EINVAL for a token this server did not
 * give.
 */
int svc_history_token_parse(const char *token, int64_t *step, int64_t *rank, char *err);

/*
 * History as JSON: {"job": id, "points": [...], "rewinds": [...], "next_page_token": ...}.
 * With max_points the whole range comes in one answer of at most max_points points that
 * keep its shape: each bucket's lowest and highest loss and the points where the lr
 * changed. rewinds: {"to_step", "from_step", "at"} of the rewinds that went back into the
 * range (at most SVC_REWINDS_SHOWN, the oldest), on every page.
 * Returns GLR_OK, GLR_EINVAL (a bad page token), GLR_ENOTFOUND or GLR_EIO.
 */
int svc_history(struct svc *svc, const char *id, const struct svc_history_query *query, cJSON **out,
                char *err);

/*
 * Each rank's own loss of a job of several ranks, a page at a time in (step, rank) order:
 * {"job": id, "points": [{"step", "rank", "loss", "late"?}], "next_page_token": ...};
 * query->max_points must be 0. A job of one rank has none. Returns GLR_OK, GLR_EINVAL (a
 * bad page token), GLR_ENOTFOUND or GLR_EIO.
 */
int svc_ranks(struct svc *svc, const char *id, const struct svc_history_query *query, cJSON **out,
              char *err);

/* A CSV export in progress; it reads the history in batches, holding no lock between. */
struct svc_csv;

/* Starts a CSV export of steps from_step..to_step. Returns GLR_OK or GLR_ENOTFOUND. */
int svc_csv_open(struct svc *svc, const char *id, int64_t from_step, int64_t to_step,
                 struct svc_csv **out, char *err);

/*
 * Copies up to max bytes of CSV into buf. Returns the count, 0 at the end, or -1 when the
 * database failed (the export is then cut short and the caller must abort the response).
 */
ssize_t svc_csv_read(struct svc_csv *csv, char *buf, size_t max);

/* Ends an export; NULL is accepted. */
void svc_csv_close(struct svc_csv *csv);

/*
 * The readiness probe: GLR_OK when the service can take reports now (the database is
 * open, migrated, and a write transaction can be had at once); GLR_EBUSY when it is
 * stopping or the store cannot write, with the reason in err.
 */
int svc_ready(struct svc *svc, char *err);

/* Numbers about the service, for /metrics. */
struct svc_stats {
    int64_t jobs_running; /* in the database */
    int64_t jobs_finished;
    int64_t jobs_in_memory;
    int64_t waiting_requests; /* all jobs together */
    int64_t waiting_jobs;     /* jobs with a step being gathered or requests waiting */
};

/* Fills *out. Returns GLR_OK, or GLR_EIO when the jobs could not be counted. */
int svc_stats(struct svc *svc, struct svc_stats *out, char *err);

#endif
