/*
 * The checkpointer: a thread with its own connection that copies the WAL into the
 * database while the writer goes on committing, woken by a hook on the writer's commits,
 * and that empties the WAL once commits pause. Its waits are on the monotonic clock.
 */
#include <errno.h>
#include <stdio.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/status.h"
#include "store/store_int.h"

/*
 * The WAL, in pages, past which the checkpointer thread copies it into the database. The
 * writer does not checkpoint itself (SQLite's default, every 1000 pages): a checkpoint
 * takes longer than many group commits, and every report waiting behind it waited too.
 */
#define STORE_CHECKPOINT_PAGES 4096
/*
 * The WAL, in pages, past which the writer checkpoints after all: under a steady stream of
 * commits a checkpoint beside the writer may never catch up with the WAL's end, and only
 * then does SQLite start the WAL over.
 */
#define STORE_CHECKPOINT_WRITER_PAGES (8 * STORE_CHECKPOINT_PAGES)
/*
 * After this long without a commit, the checkpointer empties the WAL altogether: readers
 * then find every page in the database file, not through the WAL's index, and a chart
 * read after a training run is as fast as before it.
 */
#define STORE_CHECKPOINT_QUIET_MS 1000
/*
 * The part of the room left on the database's file system that the WAL may take before
 * it is copied into the database: 1/4. On a disk with little room the WAL must start
 * over long before STORE_CHECKPOINT_PAGES, or it takes the room the database needs to
 * grow by what a checkpoint copies into it, and no write can succeed again.
 */
#define STORE_CHECKPOINT_FREE_SHARE 4

/*
 * The WAL, in pages, past which the checkpointer is due: less when the disk has little
 * room (as measured when the commit began, write_lock held).
 */
static int checkpoint_pages(struct store *store)
{
    glr_mutex_assert_held(&store->write_lock);
    int64_t room = store->room;
    if (room < 0 || store->page_size <= 0)
        return STORE_CHECKPOINT_PAGES;
    int64_t pages = room / STORE_CHECKPOINT_FREE_SHARE / store->page_size;
    if (pages < 1)
        pages = 1;
    return pages < STORE_CHECKPOINT_PAGES ? (int)pages : STORE_CHECKPOINT_PAGES;
}

/*
 * SQLite calls this after each commit of the writer connection, with the WAL's size. The
 * committing thread holds write_lock, and takes checkpoint_lock inside it (the lock order
 * of store_int.h).
 */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct store *store = arg;
    glr_mutex_assert_held(&store->write_lock);
    int due = checkpoint_pages(store);
    /*
     * Short of room, the writer does not wait as long for the checkpointer to catch up:
     * twice its threshold, not eight times.
     */
    int writer_due = due < STORE_CHECKPOINT_PAGES ? 2 * due : STORE_CHECKPOINT_WRITER_PAGES;
    if (pages >= writer_due) {
        /* Between two commits nothing is appended, so this one reaches the end. */
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    }
    glr_mutex_lock(&store->checkpoint_lock);
    store->wal_commits++;
    /* The checkpointer is woken when there is work, not at every commit. */
    bool wake = !store->wal_dirty || (pages >= due && !store->checkpoint_due);
    store->wal_dirty = true;
    if (pages >= due)
        store->checkpoint_due = true;
    if (wake)
        pthread_cond_signal(&store->checkpoint_wake);
    glr_mutex_unlock(&store->checkpoint_lock);
    return SQLITE_OK;
}

/*
 * Waits (checkpoint_lock held) until a checkpoint is due, the thread is to stop, or the
 * WAL has had commits and then a whole STORE_CHECKPOINT_QUIET_MS without one. Returns true
 * for the last: the WAL is to be emptied.
 */
static bool wait_for_work(struct store *store)
{
    glr_mutex_assert_held(&store->checkpoint_lock);
    for (;;) {
        if (store->checkpoint_due || store->checkpoint_stop)
            return false;
        if (!store->wal_dirty) {
            glr_mutex_wait(&store->checkpoint_lock, &store->checkpoint_wake);
            continue;
        }
        uint64_t seen = store->wal_commits;
        int64_t until = glr_clock_mono_deadline(STORE_CHECKPOINT_QUIET_MS);
        int waited = 0;
        while (!store->checkpoint_due && !store->checkpoint_stop && waited != ETIMEDOUT)
            waited = glr_mutex_wait_until(&store->checkpoint_lock, &store->checkpoint_wake, until);
        if (waited == ETIMEDOUT && store->wal_commits == seen)
            return true;
    }
}

/*
 * Copies the WAL into the database whenever the writer says it has grown, without taking
 * the write lock (a passive checkpoint): commits go on meanwhile. Once commits have
 * stopped for STORE_CHECKPOINT_QUIET_MS it empties the WAL (a truncating checkpoint, which
 * a commit arriving meanwhile waits for; most frames are copied already). A checkpoint
 * that fails (a reader holding an old snapshot, say) is tried again later.
 */
static void *checkpointer_main(void *arg)
{
    struct store *store = arg;
    glr_mutex_lock(&store->checkpoint_lock);
    for (;;) {
        bool quiet = wait_for_work(store);
        if (store->checkpoint_stop)
            break;
        store->checkpoint_due = false;
        bool empty = store->checkpoint_empty;
        store->checkpoint_empty = false;
        if (quiet)
            store->wal_dirty = false;
        glr_mutex_unlock(&store->checkpoint_lock);
        if (empty || (quiet && atomic_load(&store->space_failed))) {
            /*
             * Short of room, the WAL is emptied with the write lock held: no commit may
             * take the room the database needs first. Not emptied: the next quiet spell
             * tries again.
             */
            glr_mutex_lock(&store->write_lock);
            int failed = store_wal_empty(store, store->checkpointer.db, NULL);
            glr_mutex_unlock(&store->write_lock);
            glr_mutex_lock(&store->checkpoint_lock);
            if (failed || atomic_load(&store->space_failed))
                store->wal_dirty = true;
            continue;
        }
        int mode = quiet ? SQLITE_CHECKPOINT_TRUNCATE : SQLITE_CHECKPOINT_PASSIVE;
        /*
         * With a fault (store_fault.c) nothing more is written: everything the WAL holds,
         * which a process ending now would take with it if the file is gone, is copied
         * into the database file, waiting for readers as long as it must.
         */
        bool faulted = store_wal_check(store, NULL) != GLR_OK;
        if (faulted)
            mode = SQLITE_CHECKPOINT_FULL;
        int rc = sqlite3_wal_checkpoint_v2(store->checkpointer.db, NULL, mode, NULL, NULL);
        if (faulted && !store->fault_saved) {
            store->fault_saved = rc == SQLITE_OK;
            if (rc == SQLITE_OK)
                log_warn("database: every write committed before the fault is in the database "
                         "file now");
            else
                log_error("database: copying the WAL into the database file failed: %s",
                          sqlite3_errmsg(store->checkpointer.db));
        }
        glr_mutex_lock(&store->checkpoint_lock);
        if (rc != SQLITE_OK && quiet)
            store->wal_dirty = true; /* not emptied: try again after the next quiet spell */
    }
    glr_mutex_unlock(&store->checkpoint_lock);
    return NULL;
}

int store_wal_empty(struct store *store, sqlite3 *db, char *err)
{
    glr_mutex_assert_held(&store->write_lock);
    if (!atomic_load(&store->space_failed))
        return GLR_OK;
    int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (rc == SQLITE_OK) {
        atomic_store(&store->space_failed, false);
        return GLR_OK;
    }
    if (!store_lacks_space(db, rc))
        return GLR_OK;
    return glr_fail(err, GLR_EBUSY,
                    "database: the disk is full: the WAL cannot be copied into the database "
                    "(%s); nothing was stored, try again later",
                    sqlite3_errmsg(db));
}

void store_wal_wake_empty(struct store *store)
{
    if (!store->checkpointer_started)
        return;
    glr_mutex_lock(&store->checkpoint_lock);
    store->checkpoint_due = true;
    store->checkpoint_empty = true;
    pthread_cond_signal(&store->checkpoint_wake);
    glr_mutex_unlock(&store->checkpoint_lock);
}

int store_wal_start(struct store *store, const char *path, char *err)
{
    int rc = store_connection_open(path, &store->checkpointer, NULL, STORE_ROLE_WRITER,
                                   store->options.sync, err);
    if (rc)
        return rc;
    if (pthread_create(&store->checkpointer_thread, NULL, checkpointer_main, store) != 0)
        return glr_fail(err, GLR_ENOMEM, "cannot start the checkpointer thread");
    store->checkpointer_started = true;
    sqlite3_wal_hook(store->writer.db, on_wal_commit, store);
    return GLR_OK;
}

void store_wal_stop(struct store *store)
{
    if (store->checkpointer_started) {
        glr_mutex_lock(&store->checkpoint_lock);
        store->checkpoint_stop = true;
        pthread_cond_signal(&store->checkpoint_wake);
        glr_mutex_unlock(&store->checkpoint_lock);
        pthread_join(store->checkpointer_thread, NULL);
        store->checkpointer_started = false;
    }
    if (store->checkpointer.db) {
        sqlite3_close(store->checkpointer.db);
        store->checkpointer.db = NULL;
    }
}
