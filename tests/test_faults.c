/*
 * Faults of the database file under a live daemon and at its start: a WAL file deleted
 * while it runs, damaged pages, an empty file. The daemon must not acknowledge what it
 * cannot keep, /readyz must say why, and the log must name it.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "httpc.h"
#include "testutil.h"

/* GET /readyz; returns the status and copies the problem's detail (if any) into detail. */
static int readyz(struct httpc *c, char *detail, size_t size)
{
    return httpc_status(c, "GET", "/readyz", NULL, detail, size);
}

/* POSTs a report of step with a loss; returns the status. */
static int report(struct httpc *c, const char *job, int step)
{
    char path[128], body[64];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", job);
    snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", step, (step * 7) % 11);
    return httpc_status(c, "POST", path, body, NULL, 0);
}

/* The job's report count, as GET answers it. */
static int reports_of(struct httpc *c, const char *job)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", job);
    cJSON *j = httpc_expect(c, "GET", path, NULL, 200);
    int n = (int)cJSON_GetObjectItemCaseSensitive(j, "reports")->valuedouble;
    cJSON_Delete(j);
    return n;
}

/* Waits (up to 10 s, stretched under valgrind) until the daemon's log holds text. */
static bool log_shows(const struct daemon *d, const char *text)
{
    for (int tries = 0; tries < 100 * testutil_slow(); tries++) {
        char *log = testutil_read_file(d->log, NULL);
        bool found = strstr(log, text) != NULL;
        free(log);
        if (found)
            return true;
        testutil_sleep_ms(100);
    }
    return false;
}

/*
 * Deleting DB-wal under a live daemon leaves SQLite writing to a file nothing will read
 * again. The daemon must see it, say so, and refuse reports (reads go on), and what it
 * acknowledged before must still be there after a kill -9.
 */
START_TEST(a_deleted_wal_stops_writes)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/wal", "{\"lr\":0.1}", 201));
    for (int step = 0; step < 20; step++)
        ck_assert_int_eq(report(&c, "wal", step), 200);
    char wal[sizeof(d.db) + 8], detail[512];
    snprintf(wal, sizeof(wal), "%s-wal", d.db);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);

    ck_assert_int_eq(unlink(wal), 0);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 503);
    ck_assert_msg(strstr(detail, "WAL") && strstr(detail, "deleted"), "detail: %s", detail);
    /* Nothing is acknowledged any more, the same report again included. */
    ck_assert_int_eq(report(&c, "wal", 20), 503);
    ck_assert_int_eq(report(&c, "wal", 20), 503);
    ck_assert_int_eq(reports_of(&c, "wal"), 20);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 503);
    ck_assert_msg(log_shows(&d, "-wal was deleted"), "the log does not name the WAL");
    /* The reports acknowledged before it are copied into the database file. */
    ck_assert_msg(log_shows(&d, "in the database file now"), "the WAL was not copied in");
    httpc_close(&c);

    daemon_kill(&d);
    daemon_restart(&d);
    httpc_init(&c, d.port);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);
    ck_assert_int_eq(reports_of(&c, "wal"), 20);
    ck_assert_int_eq(report(&c, "wal", 20), 200);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The database's page size and the number of a page of table that holds rows (a leaf). */
static void leaf_page(const char *path, const char *table, int *page_size, int *page)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *stmt = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &stmt, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(stmt), SQLITE_ROW);
    *page_size = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    /* The second leaf in the file's order: neither the first page nor the newest rows. */
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT pageno FROM dbstat WHERE name = ?1 AND "
                                        "pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET 1",
                                        -1, &stmt, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(stmt), SQLITE_ROW);
    *page = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

/* Overwrites page number page (from 1) of the file at path with zeros. */
static void zero_page(const char *path, int page_size, int page)
{
    int fd = open(path, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    char *zeros = calloc(1, (size_t)page_size);
    ck_assert_ptr_nonnull(zeros);
    ck_assert_int_eq(pwrite(fd, zeros, (size_t)page_size, (off_t)page_size * (page - 1)),
                     page_size);
    free(zeros);
    close(fd);
}

/* A daemon stopped cleanly after a job of steps reports, its WAL copied into the file. */
static void make_job(struct daemon *d, const char *const *args, const char *job, int steps)
{
    daemon_start(d, NULL, args);
    struct httpc c;
    httpc_init(&c, d->port);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", job);
    cJSON_Delete(httpc_expect(&c, "PUT", path, "{\"lr\":0.1}", 201));
    for (int step = 0; step < steps; step++)
        ck_assert_int_eq(report(&c, job, step), 200);
    httpc_close(&c);
    daemon_stop(d);
}

/*
 * A stopped daemon whose job of 600 reports has a page of its history zeroed; returns the
 * database's page size.
 */
static int make_damaged_job(struct daemon *d, const char *job)
{
    make_job(d, NULL, job, 600);
    int page_size = 0, page = 0;
    leaf_page(d->db, "history", &page_size, &page);
    zero_page(d->db, page_size, page);
    return page_size;
}

/*
 * Damage that only a read finds, once the daemon serves: the read fails, /readyz says
 * the database is damaged, the log says so, and nothing more is written.
 */
START_TEST(damage_found_later_makes_it_not_ready)
{
    struct daemon d;
    make_damaged_job(&d, "hurt");

    /* Without its check at start, as an operator serving what is left would. */
    static const char *const skip[] = {"--skip-check", NULL};
    d.extra_args = skip;
    daemon_restart(&d);
    struct httpc c;
    httpc_init(&c, d.port);
    char detail[512];
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);
    struct httpc_response r;
    httpc_json(&c, "GET", "/v1/jobs/hurt/history?page_size=1000", NULL, &r);
    ck_assert_int_eq(r.status, 500);
    httpc_response_free(&r);
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 503);
    ck_assert_msg(strstr(detail, "damaged"), "detail: %s", detail);
    ck_assert_int_eq(report(&c, "hurt", 600), 503);
    httpc_close(&c);
    ck_assert_msg(log_shows(&d, "the file is damaged"), "the log does not say so");
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Runs the daemon on path until it exits; returns the status, its stderr in text. */
static int run_on(const char *path, char *text, size_t size)
{
    const char *args[] = {"--listen", "127.0.0.1:0", "--db", path, NULL};
    return daemon_run(args, text, size);
}

/*
 * A zeroed page in a database with history: the daemon checks the file before it
 * serves it, exits 1 naming the file and the problem, and --skip-check serves it anyway.
 */
START_TEST(a_damaged_database_is_refused_at_start)
{
    struct daemon d;
    int page_size = make_damaged_job(&d, "hurt");

    char text[2048];
    ck_assert_int_eq(run_on(d.db, text, sizeof(text)), 1);
    ck_assert_msg(strstr(text, d.db) && strstr(text, "is damaged") && strstr(text, "quick_check"),
                  "stderr: %s", text);
    static const char *const skip[] = {"--skip-check", NULL};
    d.extra_args = skip;
    daemon_restart(&d);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs", NULL, 200));
    httpc_close(&c);
    daemon_stop(&d);

    /* A damaged first page (the header) is refused as well. */
    zero_page(d.db, page_size, 1);
    ck_assert_int_eq(run_on(d.db, text, sizeof(text)), 1);
    ck_assert_msg(strstr(text, d.db) && strstr(text, "is damaged"), "stderr: %s", text);
    daemon_cleanup(&d);
}
END_TEST

/* A file of 0 bytes is no database: refused, and left as it was; a new path is created. */
START_TEST(an_empty_file_is_refused)
{
    char dir[TESTUTIL_DIR_MAX], path[TESTUTIL_DIR_MAX + 16], text[2048];
    testutil_tmpdir("greedylr-empty", dir);
    snprintf(path, sizeof(path), "%s/empty.db", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(run_on(path, text, sizeof(text)), 1);
    ck_assert_msg(strstr(text, path) && strstr(text, "empty file"), "stderr: %s", text);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_size, 0);

    ck_assert_int_eq(unlink(path), 0);
    struct daemon d;
    daemon_start(&d, path, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    char detail[512];
    ck_assert_int_eq(readyz(&c, detail, sizeof(detail)), 200);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
    testutil_tmpdir_remove(dir);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 60 * testutil_slow());
    tcase_add_test(tc, a_deleted_wal_stops_writes);
    tcase_add_test(tc, damage_found_later_makes_it_not_ready);
    tcase_add_test(tc, a_damaged_database_is_refused_at_start);
    tcase_add_test(tc, an_empty_file_is_refused);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
