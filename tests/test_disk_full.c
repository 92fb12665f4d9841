/*
 * A disk that fills up for real: the database lives on a small tmpfs that the test
 * mounts (root only; otherwise the suite is skipped) and fills with a file of its own.
 * While it is full, reports are 503 and nothing is stored; once a little room is made,
 * well below the WAL's usual checkpoint size, the daemon writes again and goes on
 * writing, and after a kill -9 /readyz tells the truth from its first request. Below the
 * room it keeps free (--disk-reserve), writes stop before the disk is full.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "daemon.h"
#include "httpc.h"
#include "testutil.h"

/* The size of the file system the database lives on, as the issue measured it. */
#define DISK_SIZE "4m"
/* Room left beside the filler file before the daemon fills the rest itself. */
#define DISK_LEFT (256 * 1024)

/* Where the tmpfs is mounted (main); every case works in it. */
static char disk[TESTUTIL_DIR_MAX];

/* Bytes free on the tmpfs. */
static long long disk_free(void)
{
    struct statvfs st;
    ck_assert_int_eq(statvfs(disk, &st), 0);
    return (long long)st.f_bavail * (long long)st.f_frsize;
}

/* Writes the filler file until at most left bytes are free (0: until the disk is full). */
static void fill(const char *filler, long long left)
{
    int fd = open(filler, O_WRONLY | O_CREAT | O_APPEND, 0644);
    ck_assert_int_ge(fd, 0);
    static char chunk[16 * 1024];
    memset(chunk, 'x', sizeof(chunk));
    for (;;) {
        long long room = disk_free() - left;
        if (room <= 0)
            break;
        size_t n = room < (long long)sizeof(chunk) ? (size_t)room : sizeof(chunk);
        ssize_t wrote = write(fd, chunk, n);
        if (wrote < 0) {
            ck_assert_int_eq(errno, ENOSPC);
            break;
        }
    }
    close(fd);
}

/* Waits (up to 5 s) until the daemon has emptied the WAL of db; returns whether it did. */
static bool wal_emptied(const char *db)
{
    char wal[TESTUTIL_DIR_MAX + 32];
    snprintf(wal, sizeof(wal), "%s-wal", db);
    struct stat st = {.st_size = -1};
    double until = testutil_seconds() + 5.0 * testutil_slow();
    while ((stat(wal, &st) != 0 || st.st_size != 0) && testutil_seconds() < until)
        testutil_sleep_ms(50);
    return st.st_size == 0;
}

/* GET /readyz; returns the status and copies the problem's detail (if any) into detail. */
static int readyz(struct httpc *c, char *detail, size_t size)
{
    return httpc_status(c, "GET", "/readyz", NULL, detail, size);
}

/* POSTs the report of step to job "full"; returns the status. */
static int report(struct httpc *c, int step)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", step, (step * 7) % 13);
    return httpc_status(c, "POST", "/v1/jobs/full/reports", body, NULL, 0);
}

/* Sends the report of step until it is answered 200, for at most 2 s; returns the status. */
static int report_within_2s(struct httpc *c, int step)
{
    int status = 0;
    double until = testutil_seconds() + 2.0 * testutil_slow();
    while ((status = report(c, step)) != 200 && testutil_seconds() < until)
        testutil_sleep_ms(50);
    return status;
}

/* Asks /readyz until it answers 200, for at most 2 s; returns the last status. */
static int ready_within_2s(struct httpc *c, char *detail, size_t size)
{
    int status = 0;
    double until = testutil_seconds() + 2.0 * testutil_slow();
    while ((status = readyz(c, detail, size)) != 200 && testutil_seconds() < until)
        testutil_sleep_ms(50);
    return status;
}

START_TEST(a_full_disk_recovers_once_there_is_room)
{
    char db[TESTUTIL_DIR_MAX + 16], filler[TESTUTIL_DIR_MAX + 16], detail[512];
    snprintf(db, sizeof(db), "%s/full.db", disk);
    snprintf(filler, sizeof(filler), "%s/filler", disk);
    /* The disk is far smaller than the room the daemon keeps free by default. */
    static const char *const no_reserve[] = {"--disk-reserve", "0", NULL};
    struct daemon d;
    daemon_start(&d, db, no_reserve);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/full", "{\"lr\":0.1}", 201));
    int step = 0;
    for (; step < 50; step++)
        ck_assert_int_eq(report(&c, step), 200);

    /* The filler takes all but a little; the daemon's own reports fill the rest. */
    fill(filler, DISK_LEFT);
    int status = 200;
    for (int tries = 0; tries < 10000 && status == 200; tries++)
        if ((status = report(&c, step)) == 200)
            step++;
    ck_assert_int_eq(status, 503);
    /*
     * The daemon empties its WAL into the database when a write fails for want of room,
     * which may make room for a few more commits: the filler takes that too.
     */
    wal_emptied(db);
    fill(filler, 0);
    ck_assert_int_eq(report(&c, step), 503);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 503);

    /* A few MiB of room, far less than the WAL's checkpoint size (16 MiB). */
    ck_assert_int_eq(unlink(filler), 0);
    ck_assert_int_eq(report_within_2s(&c, step), 200);
    step++;
    /*
     * And it goes on: many times more WAL frames than there is room for, which only fit
     * when the WAL is copied into the database and started over as it goes.
     */
    for (int k = 0; k < 1500; k++, step++)
        ck_assert_msg(report(&c, step) == 200, "step %d refused with %.0f KiB free", step,
                      disk_free() / 1024.0);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);
    httpc_close(&c);

    /*
     * A crash, and a start on a disk that is full: the first answer must be the truth.
     * The WAL is emptied first (commits paused), so that no room is left inside it either.
     */
    ck_assert_msg(wal_emptied(db), "the WAL was not emptied once commits paused");
    daemon_kill(&d);
    fill(filler, 0);
    daemon_restart(&d);
    httpc_init(&c, d.port);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 503);
    ck_assert_int_eq(unlink(filler), 0);
    ck_assert_msg(ready_within_2s(&c, detail, sizeof(detail)) == 200, "detail: %s", detail);
    ck_assert_int_eq(report(&c, step), 200);
    cJSON *job = httpc_expect(&c, "GET", "/v1/jobs/full", NULL, 200);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "reports")->valuedouble, step + 1);
    cJSON_Delete(job);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
    unlink(db);
}
END_TEST

/* Sends method path body; returns the status, with the detail and Retry-After copied. */
static int answer(struct httpc *c, const char *method, const char *path, const char *body,
                  char *detail, size_t size, bool *retry_after)
{
    struct httpc_response r;
    httpc_json(c, method, path, body, &r);
    cJSON *tree = httpc_body_json(&r);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(tree, "detail");
    snprintf(detail, size, "%s", cJSON_IsString(d) ? d->valuestring : "");
    char seconds[16];
    *retry_after = httpc_header(&r, "Retry-After", seconds, sizeof(seconds)) != NULL;
    if (r.status != 200 && r.status != 201)
        ck_assert_msg(strstr(r.headers, "application/problem+json"), "%s", r.headers);
    int status = r.status;
    cJSON_Delete(tree);
    httpc_response_free(&r);
    return status;
}

/*
 * Below the room the daemon keeps free (--disk-reserve), writes are refused before the
 * disk is full: 503 with Retry-After, saying so, and nothing stored; /readyz says the
 * same. With room again, they go on.
 */
START_TEST(writes_stop_at_the_reserve_before_the_disk_is_full)
{
    char db[TESTUTIL_DIR_MAX + 16], filler[TESTUTIL_DIR_MAX + 16], detail[512];
    snprintf(db, sizeof(db), "%s/reserve.db", disk);
    snprintf(filler, sizeof(filler), "%s/filler", disk);
    bool retry = false;

    /* The default (64 MiB) is more than this disk holds: nothing is written at all. */
    struct daemon d;
    daemon_start(&d, db, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    ck_assert_int_eq(
        answer(&c, "PUT", "/v1/jobs/full", "{\"lr\":0.1}", detail, sizeof(detail), &retry), 503);
    ck_assert_msg(retry && strstr(detail, "--disk-reserve") && strstr(detail, "64.0 MiB"),
                  "detail: %s", detail);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 503);
    ck_assert_msg(strstr(detail, "--disk-reserve"), "detail: %s", detail);
    httpc_close(&c);
    daemon_stop(&d);

    static const char *const reserve[] = {"--disk-reserve", "1M", NULL};
    d.extra_args = reserve;
    daemon_restart(&d);
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/full", "{\"lr\":0.1}", 201));
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);
    int step = 0;
    for (; step < 20; step++)
        ck_assert_int_eq(report(&c, step), 200);

    /* Once the WAL is empty, refusing a write can give no room back: the test is exact. */
    ck_assert_msg(wal_emptied(db), "the WAL was not emptied once commits paused");
    fill(filler, 900 * 1024);
    char body[64];
    snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":1}", step);
    ck_assert_int_eq(
        answer(&c, "POST", "/v1/jobs/full/reports", body, detail, sizeof(detail), &retry), 503);
    ck_assert_msg(retry && strstr(detail, "--disk-reserve") && strstr(detail, "nothing was stored"),
                  "detail: %s", detail);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 503);
    ck_assert_msg(strstr(detail, "--disk-reserve"), "detail: %s", detail);
    /* Refused before the disk was full, and reads go on. */
    ck_assert_int_gt(disk_free(), 512 * 1024);
    cJSON *job = httpc_expect(&c, "GET", "/v1/jobs/full", NULL, 200);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "reports")->valuedouble, step);
    cJSON_Delete(job);

    ck_assert_int_eq(unlink(filler), 0);
    ck_assert_int_eq(report_within_2s(&c, step), 200);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
    unlink(db);
}
END_TEST

int main(void)
{
    if (geteuid() != 0) {
        printf("1..0 # SKIP mounting a tmpfs needs root\n");
        return EXIT_SUCCESS;
    }
    /* Outside any case: libcheck's asserts (in testutil_tmpdir) work only inside one. */
    const char *tmp = getenv("TMPDIR");
    snprintf(disk, sizeof(disk), "%s/greedylr-disk-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(disk)) {
        printf("Bail out! cannot make %s: %s\n", disk, strerror(errno));
        return EXIT_FAILURE;
    }
    if (mount("tmpfs", disk, "tmpfs", 0, "size=" DISK_SIZE) != 0) {
        printf("1..0 # SKIP cannot mount a tmpfs on %s: %s\n", disk, strerror(errno));
        rmdir(disk);
        return EXIT_SUCCESS;
    }
    Suite *suite = suite_create("disk_full");
    TCase *tc = tcase_create("disk_full");
    tcase_set_timeout(tc, 60 * testutil_slow());
    tcase_add_test(tc, a_full_disk_recovers_once_there_is_room);
    tcase_add_test(tc, writes_stop_at_the_reserve_before_the_disk_is_full);
    suite_add_tcase(suite, tc);
    int rc = testutil_run(suite);
    /* The cases' files go with the file system, whatever state a failure left them in. */
    umount2(disk, MNT_DETACH);
    rmdir(disk);
    return rc;
}
