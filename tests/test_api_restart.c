/*
 * Restarts: a job's state after a restart (clean or kill -9) is exactly its state
 * before, so the answers equal those of an uninterrupted run; the schema is created,
 * upgraded, and a database from a newer greedylr is refused.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "golden.h"
#include "httpc.h"
#include "base/jsonx.h"
#include "svc/svc.h"
#include "testdb.h"
#include "testutil.h"

/* Reports golden case gc from step `from` to `to` (exclusive), comparing every answer. */
static void report_range(struct httpc *c, const struct golden_case *gc, int from, int to)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", gc->name);
    for (int k = from; k < to; k++) {
        char loss[JSONX_DOUBLE_MAX], body[128];
        jsonx_format_double(gc->losses[k], loss);
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%s}", k, loss);
        cJSON *a = httpc_expect(c, "POST", path, body, 200);
        const cJSON *lr = cJSON_GetObjectItemCaseSensitive(a, "lr");
        for (size_t g = 0; g < gc->groups; g++) {
            double v = 0;
            const cJSON *item = cJSON_IsArray(lr) ? cJSON_GetArrayItem(lr, (int)g) : lr;
            if (!jsonx_get_double(item, &v) || v != gc->expected[(size_t)k * gc->groups + g])
                ck_abort_msg("%s step %d group %zu differs after a restart", gc->name, k, g);
        }
        cJSON_Delete(a);
    }
}

static void create_golden_job(struct httpc *c, const struct golden_case *gc)
{
    char *lr = testutil_print_exact(gc->lr);
    char *config = testutil_print_exact(gc->config);
    char body[4096], path[128];
    snprintf(body, sizeof(body), "{\"policy\":\"%s\",\"lr\":%s,\"config\":%s}", gc->policy, lr,
             config);
    snprintf(path, sizeof(path), "/v1/jobs/%s", gc->name);
    cJSON_Delete(httpc_expect(c, "PUT", path, body, 201));
    free(lr);
    free(config);
}

/* The first smoothed golden case with a few hundred steps: the window must survive too. */
static const struct golden_case *smoothed_case(void)
{
    for (int i = 0; i < golden_count; i++) {
        const cJSON *smooth = cJSON_GetObjectItemCaseSensitive(golden_cases[i].config, "smooth");
        if (cJSON_IsTrue(smooth) && golden_cases[i].steps >= 200)
            return &golden_cases[i];
    }
    ck_abort_msg("no smoothed golden case");
    return NULL;
}

/* Runs a golden case with `restarts` stops in the middle, by SIGTERM or SIGKILL. */
static void run_with_restarts(bool crash)
{
    golden_load();
    const struct golden_case *gc = smoothed_case();
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    create_golden_job(&c, gc);
    int cuts[] = {0, gc->steps / 3, gc->steps / 2, gc->steps};
    for (int i = 0; i < 3; i++) {
        report_range(&c, gc, cuts[i], cuts[i + 1]);
        httpc_close(&c);
        if (crash)
            daemon_kill(&d);
        else
            daemon_stop(&d);
        daemon_restart(&d);
        httpc_init(&c, d.port);
    }
    report_range(&c, gc, cuts[3], gc->steps);
    /* The retried last report is still answered from the history. */
    char path[128], loss[JSONX_DOUBLE_MAX], body[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", gc->name);
    jsonx_format_double(gc->losses[gc->steps - 1], loss);
    snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%s}", gc->steps - 1, loss);
    cJSON *a = httpc_expect(&c, "POST", path, body, 200);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "replayed")));
    cJSON_Delete(a);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
    golden_free();
}

START_TEST(clean_restarts_continue_exactly)
{
    run_with_restarts(false);
}
END_TEST

START_TEST(crashes_lose_no_acknowledged_report)
{
    run_with_restarts(true);
}
END_TEST

START_TEST(extreme_states_survive_a_restart)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/grow",
                              "{\"policy\":\"exponential\",\"lr\":0.1,\"config\":{\"gamma\":2}}",
                              201));
    cJSON_Delete(
        httpc_expect(&c, "POST", "/v1/jobs/grow/reports", "{\"step\":1100,\"loss\":1}", 200));
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/huge",
                              "{\"lr\":0.1,\"config\":{\"smooth\":true,\"window_size\":2}}", 201));
    cJSON_Delete(
        httpc_expect(&c, "POST", "/v1/jobs/huge/reports", "{\"step\":0,\"loss\":1e308}", 200));
    cJSON_Delete(
        httpc_expect(&c, "POST", "/v1/jobs/huge/reports", "{\"step\":1,\"loss\":1e308}", 200));
    httpc_close(&c);
    daemon_stop(&d);
    daemon_restart(&d);
    httpc_init(&c, d.port);
    cJSON *job = httpc_expect(&c, "GET", "/v1/jobs/grow", NULL, 200);
    double lr = 0;
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(job, "lr")));
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(job, "lr"), &lr) && lr > 1e300);
    cJSON_Delete(job);
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/huge", NULL, 200));
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs", NULL, 200));
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/huge/reports", "{\"step\":2,\"loss\":1}", 200));
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The schema version this greedylr writes (sql/ has one migration per version). */
#define SCHEMA_LATEST 9

/* Runs sql/NAME from the source tree on the database at path. */
static void apply_migration_file(const char *path, const char *name)
{
    const char *srcdir = getenv("GLR_SRCDIR");
    char file[512];
    snprintf(file, sizeof(file), "%s/sql/%s", srcdir ? srcdir : ".", name);
    char *sql = testutil_read_file(file, NULL);
    testdb_exec(path, sql);
    free(sql);
}

/* Copies a table's rows between two database files, naming the columns to copy. */
static void copy_rows(const char *from, const char *to, const char *table, const char *columns)
{
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "ATTACH DATABASE '%s' AS old; INSERT INTO old.%s (%s) SELECT %s FROM main.%s; "
             "DETACH DATABASE old;",
             to, table, columns, columns, table);
    testdb_exec(from, sql);
}

START_TEST(an_older_database_is_upgraded)
{
    /* An empty SQLite file is schema version 0: everything is applied. */
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/up-1", "{\"lr\":0.1}", 201));
    for (int k = 0; k < 3; k++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", k, 3 - k);
        cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/up-1/reports", body, 200));
    }
    httpc_close(&c);
    daemon_stop(&d);
    ck_assert_int_eq(testdb_user_version(d.db), SCHEMA_LATEST);

    /* The same job in a database of schema version 1, as greedylr 1 wrote it. */
    char dir[] = "/tmp/greedylr-old-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/old.db", dir);
    apply_migration_file(path, "001_init.sql");
    testdb_exec(path, "PRAGMA user_version = 1;");
    copy_rows(d.db, path, "jobs",
              "seq, id, policy, initial_lr, config, tags, status, state, last_step, reports, "
              "created_ms, updated_ms");
    copy_rows(d.db, path, "history", "job_seq, step, rank, loss, metric, lr, lrs, event, time_ms");
    daemon_cleanup(&d);

    daemon_start(&d, path, NULL);
    httpc_init(&c, d.port);
    cJSON *job = httpc_expect(&c, "GET", "/v1/jobs/up-1", NULL, 200);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "rewinds")->valuedouble, 0);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "world_size")->valuedouble, 1);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "reports")->valuedouble, 3);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(job, "family")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(job, "outcome")));
    cJSON_Delete(job);
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/up-1/rewind", "{\"to_step\":0}", 200));
    cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/up-1/reports", "{\"step\":1,\"loss\":2}", 200));
    httpc_close(&c);
    daemon_stop(&d);
    ck_assert_int_eq(testdb_user_version(path), SCHEMA_LATEST);
    daemon_cleanup(&d);
    char side[80];
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(side, sizeof(side), "%s%s", path, suffixes[i]);
        unlink(side);
    }
    rmdir(dir);
}
END_TEST

/*
 * A database of schema version 5 has no history summaries: the upgrade makes them from
 * the rows, the same as the daemon makes them while reports come in.
 */
START_TEST(an_upgrade_summarizes_the_history)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(
        httpc_expect(&c, "PUT", "/v1/jobs/sum", "{\"lr\":0.1,\"config\":{\"patience\":2}}", 201));
    for (int k = 0; k < 2000; k++) {
        char body[96];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d.%d}", k, (k * 7919) % 13, k % 10);
        cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/sum/reports", body, 200));
    }
    httpc_close(&c);
    const char *path = "/v1/jobs/sum/history?max_points=20";
    char *before = httpc_get_text(d.port, path);
    daemon_stop(&d);
    ck_assert_int_eq((int)testdb_integer(d.db, "SELECT count(*) FROM history_blocks"), 2000 / 64);

    /* Back to version 5: without the blocks, and without what versions 7, 8 and 9 added. */
    testdb_exec(d.db, "DROP TABLE history_blocks; DROP INDEX jobs_by_family; DROP TABLE rewinds;"
                      " DROP TABLE models;"
                      " ALTER TABLE jobs DROP COLUMN family; ALTER TABLE jobs DROP COLUMN outcome;"
                      " ALTER TABLE jobs DROP COLUMN outcome_given;"
                      " ALTER TABLE jobs DROP COLUMN last_loss;"
                      " ALTER TABLE jobs DROP COLUMN best_loss; ALTER TABLE jobs DROP COLUMN tuned;"
                      " PRAGMA user_version = 5;");
    daemon_restart(&d);
    char *after = httpc_get_text(d.port, path);
    daemon_stop(&d);
    ck_assert_int_eq(testdb_user_version(d.db), SCHEMA_LATEST);
    ck_assert_int_eq((int)testdb_integer(d.db, "SELECT count(*) FROM history_blocks"), 2000 / 64);
    ck_assert_str_eq(after, before);
    free(before);
    free(after);
    daemon_cleanup(&d);
}
END_TEST

/* Once reports stop, the daemon copies its WAL into the database and empties it. */
START_TEST(a_quiet_daemon_empties_its_wal)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "PUT", "/v1/jobs/quiet", "{\"lr\":0.1}", 201));
    for (int k = 0; k < 200; k++) {
        char body[64];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%d}", k, k % 7);
        cJSON_Delete(httpc_expect(&c, "POST", "/v1/jobs/quiet/reports", body, 200));
    }
    httpc_close(&c);
    char wal[sizeof(d.db) + 8];
    snprintf(wal, sizeof(wal), "%s-wal", d.db);
    struct stat st = {.st_size = -1};
    for (int tries = 0; tries < 100 * testutil_slow() && st.st_size != 0; tries++) {
        testutil_sleep_ms(100);
        ck_assert_int_eq(stat(wal, &st), 0);
    }
    ck_assert_msg(st.st_size == 0, "the WAL still holds %lld bytes", (long long)st.st_size);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The answer of a report: lr as a double, checked against the core's. */
static void report_checked(struct httpc *c, const char *id, struct glr_sched *reference, int step,
                           double loss)
{
    char path[128], body[128], text[JSONX_DOUBLE_MAX];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", id);
    jsonx_format_double(loss, text);
    snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%s}", step, text);
    cJSON *a = httpc_expect(c, "POST", path, body, 200);
    struct glr_step_result r;
    ck_assert_int_eq(glr_sched_step(reference, step, loss, &r), GLR_OK);
    double lr = 0;
    ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(a, "lr"), &lr));
    ck_assert_msg(lr == glr_sched_lrs(reference)[0], "%s step %d: lr %.17g, the core %.17g", id,
                  step, lr, glr_sched_lrs(reference)[0]);
    cJSON_Delete(a);
}

/*
 * A job's row is written every SVC_STATE_EVERY reports; loading a job replays the history
 * after it. With one job resident, two jobs reported in turn are loaded at every report,
 * listed from the store, and restarted, and every answer is still the core's.
 */
START_TEST(a_job_is_loaded_by_replaying_its_latest_reports)
{
    const int steps = SVC_STATE_EVERY + SVC_STATE_EVERY / 2 + 3;
    const char *ids[] = {"replay-a", "replay-b"};
    const char *args[] = {"--resident-jobs", "1", NULL};
    struct daemon d;
    daemon_start(&d, NULL, args);
    struct httpc c;
    httpc_init(&c, d.port);
    struct glr_sched *reference[2];
    for (int j = 0; j < 2; j++) {
        char path[64], err[GLR_ERR_MAX];
        snprintf(path, sizeof(path), "/v1/jobs/%s", ids[j]);
        cJSON_Delete(
            httpc_expect(&c, "PUT", path, "{\"lr\":0.1,\"config\":{\"patience\":2}}", 201));
        cJSON *lr = cJSON_CreateNumber(0.1);
        cJSON *config = testutil_parse("{\"patience\":2}");
        ck_assert_int_eq(glr_sched_create("greedylr", lr, config, &reference[j], err), GLR_OK);
        cJSON_Delete(lr);
        cJSON_Delete(config);
    }
    /* A falling loss with bumps: the lr goes up and down. */
    for (int k = 0; k < steps; k++)
        for (int j = 0; j < 2; j++)
            report_checked(&c, ids[j], reference[j], k, 1.0 / (1 + k) + (k % 7 == j ? 0.5 : 0));

    /* The listing shows every job as it is, not as its row was last written. */
    cJSON *page = httpc_expect(&c, "GET", "/v1/jobs", NULL, 200);
    cJSON *job;
    int listed = 0;
    cJSON_ArrayForEach(job, cJSON_GetObjectItemCaseSensitive(page, "jobs"))
    {
        ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "last_step")->valuedouble,
                         steps - 1);
        ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "reports")->valuedouble, steps);
        double lr = 0;
        int j = strcmp(cJSON_GetObjectItemCaseSensitive(job, "id")->valuestring, ids[1]) == 0;
        ck_assert(jsonx_get_double(cJSON_GetObjectItemCaseSensitive(job, "lr"), &lr));
        ck_assert(lr == glr_sched_lrs(reference[j])[0]);
        listed++;
    }
    ck_assert_int_eq(listed, 2);
    cJSON_Delete(page);
    httpc_close(&c);
    daemon_kill(&d);

    /* The rows stopped at the last multiple of SVC_STATE_EVERY reports. */
    int written = steps / SVC_STATE_EVERY * SVC_STATE_EVERY;
    char sql[160];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM jobs WHERE reports = %d AND last_step = %d",
             written, written - 1);
    ck_assert_int_eq((int)testdb_integer(d.db, sql), 2);

    /* After the crash both go on exactly; then a damaged history row is found, not served. */
    daemon_restart(&d);
    httpc_init(&c, d.port);
    for (int j = 0; j < 2; j++)
        report_checked(&c, ids[j], reference[j], steps, 0.01);
    httpc_close(&c);
    daemon_stop(&d);
    snprintf(sql, sizeof(sql),
             "UPDATE history SET lr = lr * 3 WHERE step = %d AND job_seq ="
             " (SELECT seq FROM jobs WHERE id = 'replay-a')",
             written + 1);
    testdb_exec(d.db, sql);
    daemon_restart(&d);
    httpc_init(&c, d.port);
    struct httpc_response r;
    httpc_json(&c, "GET", "/v1/jobs/replay-a", NULL, &r);
    ck_assert_int_eq(r.status, 500);
    char want[64];
    snprintf(want, sizeof(want), "replaying step %d", written + 1);
    ck_assert_msg(strstr(r.body, want), "body: %s", r.body);
    httpc_response_free(&r);
    cJSON_Delete(httpc_expect(&c, "GET", "/v1/jobs/replay-b", NULL, 200));
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
    for (int j = 0; j < 2; j++)
        glr_sched_free(reference[j]);
}
END_TEST

START_TEST(a_newer_database_is_refused)
{
    char dir[] = "/tmp/greedylr-new-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/new.db", dir);
    testdb_exec(path, "PRAGMA user_version = 999;");
    const char *args[] = {"--listen", "127.0.0.1:0", "--db", path, NULL};
    char stderr_text[2048];
    int status = daemon_run(args, stderr_text, sizeof(stderr_text));
    ck_assert_int_eq(status, 1);
    ck_assert_msg(strstr(stderr_text, "newer"), "stderr: %s", stderr_text);
    ck_assert_int_eq(testdb_user_version(path), 999);
    testutil_tmpdir_remove(dir);
}
END_TEST

START_TEST(one_daemon_per_database)
{
    struct daemon a;
    daemon_start(&a, NULL, NULL);
    struct httpc client;
    httpc_init(&client, a.port);
    cJSON_Delete(httpc_expect(&client, "PUT", "/v1/jobs/owned", "{\"lr\":0.1}", 201));
    /* A second daemon on the file refuses to start, and says who holds it. */
    const char *args[] = {"--listen", "127.0.0.1:0", "--db", a.db, NULL};
    char stderr_text[2048];
    ck_assert_int_eq(daemon_run(args, stderr_text, sizeof(stderr_text)), 1);
    char pid[32];
    snprintf(pid, sizeof(pid), "process %ld", (long)a.pid);
    ck_assert_msg(strstr(stderr_text, "served by another greedylrd"), "stderr: %s", stderr_text);
    ck_assert_msg(strstr(stderr_text, pid), "stderr: %s (wanted %s)", stderr_text, pid);
    /* The tools still work beside the daemon. */
    const char *list[] = {"token", "list", "--db", a.db, NULL};
    ck_assert_int_eq(daemon_run(list, stderr_text, sizeof(stderr_text)), 0);
    cJSON_Delete(httpc_expect(&client, "GET", "/v1/jobs/owned", NULL, 200));
    httpc_close(&client);
    /* Once the first is gone, however it went, the next one serves the file. */
    daemon_kill(&a);
    daemon_restart(&a);
    httpc_init(&client, a.port);
    cJSON_Delete(httpc_expect(&client, "GET", "/v1/jobs/owned", NULL, 200));
    httpc_close(&client);
    daemon_stop(&a);
    daemon_cleanup(&a);
}
END_TEST

START_TEST(bad_options_are_refused)
{
    /* Each refused with status 2 and a message that says what is wrong. */
    const struct {
        const char *args[4];
        const char *says;
    } cases[] = {
        {{"--listen", "nowhere", NULL}, "is not ADDR:PORT"},
        {{"--listen", "127.0.0.1:70000", NULL}, "is not ADDR:PORT"},
        {{"--listen", "example.com:80", NULL}, "numeric IPv4 or IPv6 address or localhost"},
        {{"--threads", "0", NULL}, "--threads"},
        {{"--log-level", "loud", NULL}, "--log-level"},
        {{"--frobnicate", "1", NULL}, "unknown option --frobnicate"},
        {{"--bogus", NULL}, "unknown option --bogus"},
        {{"--listen", NULL}, "--listen needs a value"},
        {{"--disk-reserve", "lots", NULL}, "--disk-reserve"},
        {{"--disk-reserve", "2T", NULL}, "--disk-reserve"},
        {{"--max-jobs", "-1", NULL}, "--max-jobs must be a whole number"},
        {{"--max-reports-per-job", "many", NULL}, "--max-reports-per-job must be a whole number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char stderr_text[1024];
        int status = daemon_run(cases[i].args, stderr_text, sizeof(stderr_text));
        ck_assert_msg(status == 2, "%s: exit %d", cases[i].args[0], status);
        ck_assert_msg(strstr(stderr_text, cases[i].says), "%s: \"%s\" does not say %s",
                      cases[i].args[0], stderr_text, cases[i].says);
    }
    const char *help[] = {"--help", NULL}, *h[] = {"-h", NULL};
    char out[4096];
    ck_assert_int_eq(daemon_run_stdout(help, out, sizeof(out)), 0);
    ck_assert_msg(strncmp(out, "usage: greedylrd", 16) == 0, "%s", out);
    ck_assert_int_eq(daemon_run_stdout(h, out, sizeof(out)), 0);
    ck_assert_msg(strncmp(out, "usage: greedylrd", 16) == 0, "%s", out);
}
END_TEST

/* localhost is the loopback address: served without tokens, as 127.0.0.1 is. */
START_TEST(localhost_is_loopback)
{
    static const char *const args[] = {"--listen", "localhost:0", NULL};
    struct daemon d;
    daemon_start(&d, NULL, args);
    struct httpc c;
    httpc_init(&c, d.port);
    cJSON_Delete(httpc_expect(&c, "GET", "/healthz", NULL, 200));
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("api_restart");
    TCase *tc = tcase_create("restart");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, clean_restarts_continue_exactly);
    tcase_add_test(tc, crashes_lose_no_acknowledged_report);
    tcase_add_test(tc, extreme_states_survive_a_restart);
    tcase_add_test(tc, an_older_database_is_upgraded);
    tcase_add_test(tc, an_upgrade_summarizes_the_history);
    tcase_add_test(tc, a_quiet_daemon_empties_its_wal);
    tcase_add_test(tc, a_job_is_loaded_by_replaying_its_latest_reports);
    tcase_add_test(tc, a_newer_database_is_refused);
    tcase_add_test(tc, one_daemon_per_database);
    tcase_add_test(tc, bad_options_are_refused);
    tcase_add_test(tc, localhost_is_loopback);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
