/*
 * The store: every job's configuration, scheduler state and report history in one SQLite
 * database. It knows SQL and nothing of HTTP; the scheduling core reaches it only as the
 * JSON text of saved state.
 *
 * One writer connection (behind a mutex: SQLite allows one writer at a time anyway) and a
 * small pool of reader connections that WAL mode lets run beside it. Every statement is
 * prepared once per connection and kept for the life of the store.
 *
 * Decisions (the hot path) are committed in groups: callers queue them with
 * store_commit_submit() and a writer thread commits whatever has queued up in one
 * transaction, then tells each caller. A commit costs about the same for one row as for a
 * hundred, so under load this turns many small transactions into few large ones without
 * answering anyone before their own row is committed. The other writes are rare and run
 * on the caller's thread, between two groups.
 *
 * Some faults end writing for good (store_fault.c): the WAL file deleted or replaced
 * while a store that serves has it open (SQLite would go on writing to a file nothing
 * reads after a restart), or a statement finding the database damaged. The first is
 * logged; from then on every write fails with GLR_EBUSY saying why, and so does
 * store_check_writable(); reads go on, and what the WAL held is copied into the database.
 *
 * A write that fails for want of room (a full disk, a quota, a file size limit) fails
 * with GLR_EBUSY, and before anything else is committed the WAL is copied into the
 * database and emptied, with the write lock held: until that finds room, writes fail
 * with GLR_EBUSY. The WAL is copied into the database once it takes a quarter of the
 * room left on the file system, so that it never takes what the database needs. With
 * options.disk_reserve, writes fail the same way once less than that is free.
 */
#ifndef GLR_STORE_H
#define GLR_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/glr.h"
#include "base/summary.h"

/* Longest job id, in bytes. */
#define STORE_ID_MAX 128
/* Reader connections in the pool. */
#define STORE_READERS 4
/* How long a statement waits for a lock held by another process, in milliseconds. */
#define STORE_BUSY_TIMEOUT_MS 5000
/* How long the readiness probe waits for the write lock, in milliseconds. */
#define STORE_READY_BUSY_MS 250
/*
 * Longest the check of a database at start may take, in milliseconds. quick_check reads
 * every page: a database too large to be read in that time is checked in part (the log
 * says so), so that a restart stays quick.
 */
#define STORE_CHECK_MS 10000
/* Longest database or backup path, in bytes. */
#define STORE_PATH_MAX 4096
/* Most decisions committed in one transaction. */
#define STORE_GROUP_MAX 1024

/*
 * What a commit waits for. NORMAL: written to the operating system (WAL, synchronous
 * NORMAL): it survives the process being killed, and a power loss may lose the last
 * commits. FULL: on the disk (synchronous FULL, an fsync per commit): it also survives a
 * power loss.
 */
enum store_sync { STORE_SYNC_NORMAL, STORE_SYNC_FULL };

struct store_options {
    enum store_sync sync;
    /*
     * Called by the writer thread after each group commit with its duration and size, for
     * metrics; NULL for none. It must be quick and must not call the store.
     */
    void (*on_group)(void *ctx, double seconds, size_t size);
    void *on_group_ctx;
    /*
     * For tools (greedylrd token ...): no writer or checkpointer thread;
     * store_commit_submit() must not be called.
     */
    bool without_threads;
    /*
     * Opens the database read-only, without migrating it: a database of another schema
     * version is refused with GLR_ECORRUPT naming both versions, and a missing one with
     * GLR_ENOTFOUND. Implies without_threads.
     */
    bool read_only;
    /*
     * Most jobs the database may hold (STORE_MAX_JOBS_DEFAULT is the daemon's default; 0:
     * no limit): store_job_insert() answers GLR_EQUOTA past it.
     */
    uint64_t max_jobs;
    /*
     * A store that serves runs PRAGMA quick_check when it opens, for at most
     * STORE_CHECK_MS (a larger file is checked in part, and the log says so), and refuses
     * a damaged database with GLR_ECORRUPT naming the first problem. true skips it.
     */
    bool skip_check;
    /*
     * Bytes kept free on the database's file system by a store that serves: below it
     * every write fails with GLR_EBUSY (nothing stored) before the disk is full, leaving
     * room for the WAL to be copied into the database, and the readiness probe says so.
     * 0: none.
     */
    uint64_t disk_reserve;
};

/* The daemon's --max-jobs unless told otherwise. */
#define STORE_MAX_JOBS_DEFAULT 100000

struct store;

enum store_status_filter { STORE_ANY, STORE_RUNNING, STORE_FINISHED };

/*
 * A finished job's outcome (lower is better): given by the client, or its last loss; the
 * losses are read from its history when it finishes (store_job_losses()).
 */
struct store_outcome {
    double value;     /* +inf: the run ended diverged */
    bool given;       /* the client gave value; else it is the last loss */
    double last_loss; /* NaN: a NaN loss, or no report */
    double best_loss; /* the lowest finite loss; NaN: none */
};

/* A row of the jobs table. The strings are owned by the row: store_job_clear(). */
struct store_job {
    int64_t seq;
    char id[STORE_ID_MAX + 1];
    char *policy;
    char *initial_lr; /* JSON */
    char *config;     /* JSON */
    char *tags;       /* JSON object */
    char *state;      /* JSON: the state after last_step (history may go on past it) */
    bool finished;
    int64_t last_step; /* -1 before the first report */
    int64_t reports;
    int64_t created_ms;
    int64_t updated_ms;
    int64_t rewinds;
    int64_t world_size;            /* ranks that report each step */
    char aggregate[8];             /* mean, max, min or rank0 */
    int64_t aggregate_timeout_ms;  /* longest wait for every rank of a step */
    char family[STORE_ID_MAX + 1]; /* "" for none */
    bool has_outcome;              /* a finished job's outcome is known */
    struct store_outcome outcome;
    char *tuned; /* JSON: what tuning chose; NULL when the job was not tuned */
};

/* A saved state of a job after some step. state is owned: free() it. */
struct store_snapshot {
    int64_t step;
    int64_t reports; /* reports up to and including step */
    char *state;
};

/* A row of the history table. */
struct store_report {
    int64_t step;
    int64_t rank;
    double loss; /* NaN, infinities and all */
    double metric;
    enum glr_event event;
    int64_t time_ms;
    int64_t ranks; /* how many ranks' losses the decision combined */
    double lr_cap; /* the client's cap on the rates given to the policy; +inf: none */
    size_t groups;
    double lrs[GLR_MAX_GROUPS];
};

/* One rank's loss of a step of a job of several ranks. */
struct store_rank_loss {
    int64_t rank;
    double loss;
};

/*
 * Opens (creating if needed) the database at path, applies the migrations it lacks in one
 * transaction, checks that WAL mode took, and starts the writer and checkpointer threads
 * (not with options->without_threads; options->read_only opens without creating,
 * migrating or writing). options may be NULL (defaults: STORE_SYNC_NORMAL, threads). A
 * database made by a newer greedylr is refused, and so are an existing file of 0 bytes
 * (SQLite would take it for a new database; a path that does not exist is one) and a
 * damaged database (see skip_check), with GLR_ECORRUPT naming the file. A store with threads serves
 * the database and owns it: it holds an exclusive lock on path + "-lock" until store_close(), and a
 * second one is refused (GLR_EBUSY, naming the process that holds it); stores without
 * threads (tools) take no lock. On success *out is owned by the caller (store_close()).
 * Returns GLR_OK, GLR_EBUSY, GLR_EIO, GLR_ENOMEM, GLR_ECORRUPT or (read_only) GLR_ENOTFOUND;
 * err says what went wrong.
 */
int store_open(const char *path, const struct store_options *options, struct store **out,
               char *err);

/*
 * Commits every decision still queued (calling their done), stops the writer thread and
 * closes every connection (checkpointing the WAL); NULL is accepted.
 */
void store_close(struct store *store);

/* The schema version of an open store (PRAGMA user_version). */
int store_schema_version(struct store *store);

/* The schema version this build creates. */
int store_latest_version(void);

/* Frees the strings of a row and zeroes it; the row itself is the caller's. */
void store_job_clear(struct store_job *job);

/* One tag of a job: the job_tags table indexes them for the tag filter of job scans. */
struct store_tag {
    const char *key;
    const char *value;
};

/*
 * Inserts a job (job->seq receives its key). job->tags is the JSON text of the tags, and
 * tags the same npairs tags as pairs (the caller checked them), written to job_tags.
 * Returns GLR_OK, GLR_ECONFLICT when the id exists, GLR_EQUOTA when the database holds
 * options.max_jobs jobs already (and the id is new), GLR_EBUSY or GLR_EIO.
 */
int store_job_insert(struct store *store, struct store_job *job, const struct store_tag *tags,
                     size_t ntags, char *err);

/* Loads the job with this id into *out. Returns GLR_OK, GLR_ENOTFOUND or GLR_EIO. */
int store_job_load(struct store *store, const char *id, struct store_job *out, char *err);

/*
 * Sets status, outcome and/or tags and updated_ms of the job seq, together: outcome NULL
 * keeps it; tags_json is the tags' JSON text (NULL keeps them) and tags the same ntags
 * tags as pairs. Returns GLR_OK, GLR_ENOTFOUND or GLR_EIO.
 */
int store_job_patch(struct store *store, int64_t seq, const bool *finished,
                    const struct store_outcome *outcome, const char *tags_json,
                    const struct store_tag *tags, size_t ntags, int64_t updated_ms, char *err);

/*
 * Reads the last loss of job seq (NaN: NaN or no report) and its lowest finite loss (NaN:
 * none) from its history, on a reader connection: a long history is read without holding
 * back the writer. Returns GLR_OK or GLR_EIO.
 */
int store_job_losses(struct store *store, int64_t seq, double *last_loss, double *best_loss,
                     char *err);

/*
 * How many steps the history of job seq holds, counted by SQLite on a reader (the job's
 * row may lag its history). Returns GLR_OK or GLR_EIO.
 */
int store_history_steps(struct store *store, int64_t seq, int64_t *steps, char *err);

/* Deletes the job and its history. Returns GLR_OK, GLR_ENOTFOUND or GLR_EIO. */
int store_job_delete(struct store *store, int64_t seq, char *err);

/*
 * One decision to commit: the history row, the losses of the ranks it combined (none for
 * a job of one rank), and, when state is not NULL, the job's new state, last_step, report
 * count and updated time (the report's time) in its row, and (when snapshot is true,
 * which needs a state) a snapshot of that state for rewinds. All of it is committed
 * together or not at all. A row left behind by decisions without a state is brought up to
 * date by replaying the history rows after its last_step (the service does).
 *
 * The caller fills the fields above `done` and owns the struct and what it points to; the
 * store borrows them from store_commit_submit() until it calls done.
 */
struct store_commit {
    int64_t seq;
    struct store_report report;
    const struct store_rank_loss *rank_losses;
    size_t nrank_losses;
    const char *state;
    int64_t last_step;
    int64_t reports;
    bool snapshot;
    /*
     * One flag per job in memory (may be NULL). When a commit fails the store sets it, and
     * later commits that carry a set flag fail without being written: they were decided on
     * top of the one that failed.
     */
    atomic_bool *failed;
    /*
     * Called once, on the writer thread, after the transaction ended: status GLR_OK, or
     * GLR_ECONFLICT (the step's row exists already) or GLR_EIO with a message. It may call
     * the store's other functions, and may free the commit.
     */
    void (*done)(struct store_commit *commit, int status, const char *err);

    /* The store's own. */
    struct store_commit *next;
    int status;
    char err[GLR_ERR_MAX];
};

/*
 * Queues a decision for the next group commit. Decisions of one job are committed in the
 * order they were submitted. Never blocks on the database. Not for a store opened
 * without_threads (debug builds assert it).
 */
void store_commit_submit(struct store *store, struct store_commit *commit);

/*
 * Reads the loss rank reported for step of job seq (a job of several ranks).
 * Returns GLR_OK, GLR_ENOTFOUND or GLR_EIO.
 */
int store_rank_loss_find(struct store *store, int64_t seq, int64_t step, int64_t rank, double *loss,
                         char *err);

/* One rank's loss of one step, as a scan reads it. */
struct store_rank_row {
    int64_t step;
    int64_t rank;
    double loss; /* NaN for a diverged one */
    bool late;   /* reported after the step was decided without it */
};

/* Called for each row of store_rank_loss_scan(); return false to stop early. */
typedef bool (*store_rank_fn)(void *ctx, const struct store_rank_row *row);

/*
 * Calls fn for at most limit ranks' losses of job seq, in (step, rank) order, from
 * (from_step, from_rank) to step to_step. Returns GLR_OK or GLR_EIO.
 */
int store_rank_loss_scan(struct store *store, int64_t seq, int64_t from_step, int64_t from_rank,
                         int64_t to_step, int64_t limit, store_rank_fn fn, void *ctx, char *err);

/* Records the loss of a rank that reported after its step was decided without it. */
int store_rank_loss_add_late(struct store *store, int64_t seq, int64_t step, int64_t rank,
                             double loss, char *err);

/*
 * Loads the latest snapshot of job seq at or before max_step into *out.
 * Returns GLR_OK, GLR_ENOTFOUND (none) or GLR_EIO.
 */
int store_snapshot_find(struct store *store, int64_t seq, int64_t max_step,
                        struct store_snapshot *out, char *err);

/* History rows one transaction of a rewind deletes (and the other ranks' of one step). */
#define STORE_REWIND_BATCH 10000

/*
 * Commits a rewind: history and snapshots after to_step are deleted, the job gets its state
 * as of to_step (last_step -1 for none), its report count, and one more rewind, recorded
 * (store_rewind_scan()), and runs again if it was finished. The rows go in transactions of at most
 * STORE_REWIND_BATCH, the newest first, so that a long rewind holds other writes back for one batch
 * at a time; the caller keeps the job from other use until it returns. A rewind cut short (a crash,
 * a failed write) leaves the job at a step of its old history between to_step and where it was,
 * consistent, and may be sent again. Returns GLR_OK, GLR_ENOTFOUND, GLR_EBUSY or GLR_EIO.
 */
int store_rewind_commit(struct store *store, int64_t seq, int64_t to_step, const char *state,
                        int64_t last_step, int64_t reports, int64_t updated_ms, char *err);

/* A rewind of a job: where it went back to, from where, and when. */
struct store_rewind {
    int64_t to_step;   /* -1: the initial state */
    int64_t from_step; /* the last step before it; -1: none */
    int64_t time_ms;
};

typedef bool (*store_rewind_fn)(void *ctx, const struct store_rewind *rewind);

/*
 * Calls fn for at most limit rewinds of job seq whose to_step is in [from_step, to_step],
 * oldest first; return false to stop early. Returns GLR_OK or GLR_EIO.
 */
int store_rewind_scan(struct store *store, int64_t seq, int64_t from_step, int64_t to_step,
                      int64_t limit, store_rewind_fn fn, void *ctx, char *err);

/* Loads the history row (seq, step, rank). Returns GLR_OK, GLR_ENOTFOUND or GLR_EIO. */
int store_report_find(struct store *store, int64_t seq, int64_t step, int64_t rank,
                      struct store_report *out, char *err);

/*
 * Rows of history per block. Each job's history is cut, in step order from its first row,
 * into blocks of this many rows, and the store keeps a summary of each (summary.h) as soon
 * as it is complete; the newest rows, fewer than two blocks' worth, are not in one yet.
 */
#define STORE_BLOCK_ROWS 64

/* Called for each block of a scan; return false to stop early. */
typedef bool (*store_block_fn)(void *ctx, const struct summary *block);

/*
 * Calls fn for each block of job seq that lies wholly within steps from_step to to_step,
 * in step order. The blocks of a job follow one another without gaps from its first row.
 * Returns GLR_OK or GLR_EIO.
 */
int store_block_scan(struct store *store, int64_t seq, int64_t from_step, int64_t to_step,
                     store_block_fn fn, void *ctx, char *err);

/* Called for each row of a scan; return false to stop early. */
typedef bool (*store_report_fn)(void *ctx, const struct store_report *report);
typedef bool (*store_job_fn)(void *ctx, const struct store_job *job);

/*
 * Calls fn for at most limit history rows of job seq, in (step, rank) order, starting at
 * (from_step, from_rank) and ending at step to_step. Returns GLR_OK, GLR_ECORRUPT or
 * GLR_EIO. The row passed to fn is valid only during the call. A reader connection is
 * held for the duration: keep limit modest where latency matters.
 */
int store_report_scan(struct store *store, int64_t seq, int64_t from_step, int64_t from_rank,
                      int64_t to_step, int64_t limit, store_report_fn fn, void *ctx, char *err);

/*
 * Calls fn for at most limit jobs with seq > after_seq in seq order, filtered by status,
 * by one tag (tag_key NULL for none) and by family (NULL for any). Returns GLR_OK or
 * GLR_EIO.
 */
int store_job_scan(struct store *store, int64_t after_seq, int64_t limit,
                   enum store_status_filter status, const char *tag_key, const char *tag_value,
                   const char *family, store_job_fn fn, void *ctx, char *err);

/* A family as the families list shows it. */
struct store_family {
    const char *name;
    int64_t jobs;
    int64_t finished;
    double best_outcome; /* the lowest outcome of its finished jobs; NaN: none */
    int64_t updated_ms;  /* the latest change of any of its jobs */
};

typedef bool (*store_family_fn)(void *ctx, const struct store_family *family);

/*
 * Calls fn for at most limit families named after after_name ("" for the first), in
 * name order; the row is valid only during the call. Returns GLR_OK or GLR_EIO.
 */
int store_family_scan(struct store *store, const char *after_name, int64_t limit,
                      store_family_fn fn, void *ctx, char *err);

/* Longest JSON text of a model, of the ids it was trained on, or of its fit. */
#define STORE_MODEL_TEXT_MAX 65536

/*
 * A model learned for a family (core/learn.h): never changed once stored, numbered from 1
 * in its family. The strings are owned by the row: store_model_clear().
 */
struct store_model {
    char family[STORE_ID_MAX + 1];
    int64_t version;
    int64_t created_ms;
    char *model;      /* JSON: the parameters a learned job's config carries */
    char *trained_on; /* JSON: the ids of the jobs it was trained on */
    char *fit;        /* JSON: what the fit read of them */
};

void store_model_clear(struct store_model *model);

/*
 * Stores a new model of model->family as the version after its newest, and sets
 * model->version. The texts must be at most STORE_MODEL_TEXT_MAX bytes each. Returns
 * GLR_OK, GLR_EINVAL (a text too long), GLR_EBUSY or GLR_EIO.
 */
int store_model_insert(struct store *store, struct store_model *model, char *err);

/*
 * The newest model of family into *out (the caller's: store_model_clear()). Returns
 * GLR_OK, GLR_ENOTFOUND (the family has none), GLR_ENOMEM or GLR_EIO.
 */
int store_model_latest(struct store *store, const char *family, struct store_model *out, char *err);

/* Longest API token name, in bytes. */
#define STORE_TOKEN_NAME_MAX 64
/* Bytes of a token's hash (SHA-256). */
#define STORE_TOKEN_HASH_SIZE 32

/* A row of the tokens table: what the store keeps of an API token. */
struct store_token {
    char name[STORE_TOKEN_NAME_MAX + 1];
    char role[8]; /* admin, writer or reader */
    unsigned char hash[STORE_TOKEN_HASH_SIZE];
    int64_t created_ms;
};

/* Inserts a token. Returns GLR_OK, GLR_ECONFLICT when the name (or hash) exists, or GLR_EIO. */
int store_token_insert(struct store *store, const struct store_token *token, char *err);

/* Deletes the token with this name. Returns GLR_OK, GLR_ENOTFOUND or GLR_EIO. */
int store_token_delete(struct store *store, const char *name, char *err);

/*
 * Calls fn for every token, oldest first; return false to stop early. The row is valid
 * only during the call. Returns GLR_OK, GLR_ECORRUPT or GLR_EIO.
 */
typedef bool (*store_token_fn)(void *ctx, const struct store_token *token);
int store_token_scan(struct store *store, store_token_fn fn, void *ctx, char *err);
/*
 * The readiness probe: takes the write lock (waiting at most STORE_READY_BUSY_MS), checks
 * that the schema is the one this build migrates to, and makes a write that is rolled
 * back, or committed when the last write failed for a full disk or an I/O error, or no
 * write has succeeded since the store opened (only a commit shows a full disk). After a
 * write failed for want of room, it first empties the WAL into the database, as the next
 * commit would. Returns GLR_OK when the store can commit now; GLR_EIO (locked
 * elsewhere, read-only, an I/O error), GLR_ECORRUPT (another schema version) or GLR_EBUSY
 * (a fault that ends writing, see above) with the reason in err.
 */
int store_check_writable(struct store *store, char *err);

/* Counts the jobs by status. Returns GLR_OK or GLR_EIO. */
int store_job_counts(struct store *store, int64_t *running, int64_t *finished, char *err);

/*
 * Copies the database at path, which a daemon may be writing, into a new self-contained
 * database file at out_path with SQLite's online backup: a consistent snapshot (every
 * commit before the copy began, none after). The copy is written beside out_path, checked,
 * flushed, and then renamed over it, so out_path is never a partial copy; an existing
 * out_path is replaced only when replace is true. *bytes receives the copy's size.
 * Returns GLR_OK, GLR_EINVAL (out_path is the database; path is not a greedylr
 * database), GLR_ECONFLICT (out_path exists and replace is false), GLR_ECORRUPT (the copy
 * fails its check) or GLR_EIO.
 */
int store_backup(const char *path, const char *out_path, bool replace, int64_t *bytes, char *err);

#endif
