/*
 * One daemon per database. A daemon that loaded a job keeps it in memory and answers from
 * there; a second daemon on the same file would answer from its own, older copy, and the
 * history of the job would no longer replay to its answers (the job is then lost). So a
 * store opened to serve holds an exclusive flock() on a file beside the database for as
 * long as it is open, taken before anything else touches the database; the kernel lets it
 * go when the process ends, however it ends. The file says which process holds it.
 *
 * flock() locks are apart from the fcntl() locks SQLite takes on the database itself, so
 * they neither disturb SQLite nor are dropped when SQLite closes a descriptor. Tools
 * (greedylrd token, backup) do not take it: they hold no copy of any job, and SQLite
 * keeps their reads and writes consistent with the daemon's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "base/status.h"
#include "store/store_int.h"

/* The pid a lock file names, or 0 when it names none. */
static long holder_of(int fd)
{
    char text[32] = "";
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    long pid = strtol(text, NULL, 10);
    return pid > 0 ? pid : 0;
}

int store_owner_take(struct store *store, const char *path, char *err)
{
    char lock_path[STORE_PATH_MAX + sizeof(STORE_OWNER_SUFFIX)];
    if (strlen(path) > STORE_PATH_MAX)
        return glr_fail(err, GLR_EINVAL, "the database path is longer than %d bytes",
                        STORE_PATH_MAX);
    snprintf(lock_path, sizeof(lock_path), "%s%s", path, STORE_OWNER_SUFFIX);
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return glr_fail(err, GLR_EIO, "cannot open %s: %s", lock_path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int saved = errno;
        long pid = holder_of(fd);
        close(fd);
        if (saved != EWOULDBLOCK)
            return glr_fail(err, GLR_EIO, "cannot lock %s: %s", lock_path, strerror(saved));
        if (pid)
            return glr_fail(err, GLR_EBUSY,
                            "database %s is served by another greedylrd (process %ld, which "
                            "holds %s): one daemon per database",
                            path, pid, lock_path);
        return glr_fail(err, GLR_EBUSY,
                        "database %s is served by another greedylrd (it holds %s): one daemon "
                        "per database",
                        path, lock_path);
    }
    char text[32];
    int len = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len) {
        int saved = errno;
        close(fd);
        return glr_fail(err, GLR_EIO, "cannot write %s: %s", lock_path, strerror(saved));
    }
    store->owner_fd = fd;
    return GLR_OK;
}

void store_owner_give(struct store *store)
{
    if (store->owner_fd < 0)
        return;
    /*
     * The file stays: removing it could race with a daemon starting now, which might lock
     * a file that is about to be unlinked while a third creates another.
     */
    close(store->owner_fd);
    store->owner_fd = -1;
}
