/*
 * Backup: a consistent copy of a database that a daemon may be writing, made with
 * SQLite's online backup into a file beside the destination, checked, flushed and then
 * renamed over it. It opens its own connections and needs no open store.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"
#include "store/store_int.h"

/* How long the copy sleeps between tries while the source is locked, in milliseconds. */
#define STORE_BACKUP_RETRY_MS 50

/* Flushes a file (or directory) to stable storage. */
static int sync_path(const char *path, int flags, char *err)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return glr_fail(err, GLR_EIO, "backup: opening %s: %s", path, strerror(errno));
    int rc = fsync(fd) == 0 ? GLR_OK
                            : glr_fail(err, GLR_EIO, "backup: fsync %s: %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* The directory part of path ("." for none) into dir. */
static void dir_of(const char *path, char *dir, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, size, ".");
    else if (slash == path)
        snprintf(dir, size, "/");
    else
        snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

/*
 * Copies every page of src into the new database file at path in one read transaction
 * (a consistent snapshot; WAL lets the daemon write meanwhile), makes the copy a
 * self-contained file (rollback journal mode, no -wal beside it) and checks it.
 */
static int copy_database(sqlite3 *src, const char *path, int64_t *pages, char *err)
{
    sqlite3 *dst = NULL;
    int rc = GLR_OK;
    if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = glr_fail(err, GLR_EIO, "backup: creating %s: %s", path,
                      dst ? sqlite3_errmsg(dst) : "cannot open");
        goto out;
    }
    sqlite3_backup *backup = sqlite3_backup_init(dst, "main", src, "main");
    if (!backup) {
        rc = glr_fail(err, GLR_EIO, "backup: %s", sqlite3_errmsg(dst));
        goto out;
    }
    /* All pages in one step: copying in pieces would restart whenever the daemon writes. */
    int step;
    for (int waited = 0;; waited += STORE_BACKUP_RETRY_MS) {
        step = sqlite3_backup_step(backup, -1);
        if ((step != SQLITE_BUSY && step != SQLITE_LOCKED) || waited >= STORE_BUSY_TIMEOUT_MS)
            break;
        sqlite3_sleep(STORE_BACKUP_RETRY_MS);
    }
    *pages = sqlite3_backup_pagecount(backup);
    sqlite3_backup_finish(backup);
    if (step != SQLITE_DONE) {
        rc = glr_fail(err, GLR_EIO, "backup: copying: %s", sqlite3_errstr(step));
        goto out;
    }
    char mode[16];
    char check[64];
    if ((rc = store_pragma_text(dst, store_other_sql[S_JOURNAL_DELETE], mode, sizeof(mode), err)) ||
        (rc = store_pragma_text(dst, store_other_sql[S_QUICK_CHECK], check, sizeof(check), err)))
        goto out;
    if (strcmp(check, "ok") != 0)
        rc = glr_fail(err, GLR_ECORRUPT, "backup: the copy fails its check: %s", check);
out:
    sqlite3_close(dst);
    return rc;
}

int store_backup(const char *path, const char *out_path, bool replace, int64_t *bytes, char *err)
{
    *bytes = 0;
    struct stat db_stat, out_stat;
    bool exists = stat(out_path, &out_stat) == 0;
    if (exists && stat(path, &db_stat) == 0 && db_stat.st_dev == out_stat.st_dev &&
        db_stat.st_ino == out_stat.st_ino)
        return glr_fail(err, GLR_EINVAL, "backup: %s is the database itself", out_path);
    /* A file of that name may be the only copy of something: replace it only when told. */
    if (exists && !replace)
        return glr_fail(err, GLR_ECONFLICT, "backup: %s exists; --force replaces it", out_path);
    char partial[STORE_PATH_MAX + 16];
    if (strlen(out_path) > STORE_PATH_MAX)
        return glr_fail(err, GLR_EINVAL, "backup: the output path is longer than %d bytes",
                        STORE_PATH_MAX);
    snprintf(partial, sizeof(partial), "%s.partial", out_path);

    sqlite3 *src = NULL;
    int rc = GLR_OK;
    /* Read-write without create: a mistyped path is an error, not a new empty database. */
    if (sqlite3_open_v2(path, &src, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        rc = glr_fail(err, GLR_EIO, "backup: database %s: %s", path,
                      src ? sqlite3_errmsg(src) : "cannot open");
        goto out;
    }
    sqlite3_busy_timeout(src, STORE_BUSY_TIMEOUT_MS);
    int64_t count;
    if ((rc = store_exec(src, store_other_sql[S_QUERY_ONLY], "making the copy read-only", err)) ||
        (rc = store_pragma_int(src, store_other_sql[S_IS_GREEDYLR], &count, err)))
        goto out;
    if (count != 1) {
        rc = glr_fail(err, GLR_EINVAL, "backup: %s is not a greedylr database", path);
        goto out;
    }
    unlink(partial);
    int64_t pages = 0;
    if ((rc = copy_database(src, partial, &pages, err)))
        goto out;
    char dir[STORE_PATH_MAX + 1];
    dir_of(out_path, dir, sizeof(dir));
    /* Durable before it takes the name: a crash leaves the old copy or the whole new one. */
    if ((rc = sync_path(partial, O_RDONLY, err)))
        goto out;
    if (rename(partial, out_path) != 0) {
        rc = glr_fail(err, GLR_EIO, "backup: renaming to %s: %s", out_path, strerror(errno));
        goto out;
    }
    if ((rc = sync_path(dir, O_RDONLY | O_DIRECTORY, err)))
        goto out;
    if (stat(out_path, &out_stat) == 0)
        *bytes = (int64_t)out_stat.st_size;
out:
    if (rc)
        unlink(partial);
    sqlite3_close(src);
    return rc;
}
