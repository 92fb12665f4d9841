/*
 * greedylrd backup: a copy of a database that a live daemon is writing under load is a
 * consistent point of it. A daemon started on the copy has every job, each job's state
 * matches its own history, and that history is exactly the live one up to where the copy
 * was taken.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "httpc.h"
#include "testutil.h"

enum { JOBS = 3 };

/* Reports steps to job until killed (or a generous bound). */
static void load_main(int port, int job)
{
    struct httpc c;
    httpc_init(&c, port);
    char path[64];
    snprintf(path, sizeof(path), "/v1/jobs/load-%d/reports", job);
    for (int k = 0; k < 1000000; k++) {
        char body[96];
        snprintf(body, sizeof(body), "{\"step\":%d,\"loss\":%.6f}", k,
                 1.0 / (1.0 + k) + 0.01 * ((k * 7 + job) % 5));
        cJSON_Delete(httpc_expect(&c, "POST", path, body, 200));
    }
    _exit(0);
}

/* The whole history of a job as one JSON text (steps, losses, lrs, events). */
static char *history_text(struct httpc *c, int job, long long to_step)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/load-%d/history?page_size=10000&to_step=%lld", job,
             to_step);
    cJSON *page = httpc_expect(c, "GET", path, NULL, 200);
    ck_assert_msg(!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(page, "next_page_token")),
                  "more than one page");
    char *text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(page, "points"));
    cJSON_Delete(page);
    return text;
}

static long long job_number(cJSON *job, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(job, name);
    ck_assert_msg(cJSON_IsNumber(item), "%s is missing", name);
    return (long long)item->valuedouble;
}

/* Checks the copy at path against the live daemon; returns the steps it holds. */
static long long check_copy(struct httpc *live, const char *path)
{
    struct daemon copy;
    daemon_start(&copy, path, NULL);
    struct httpc c;
    httpc_init(&c, copy.port);
    long long steps = 0;
    for (int j = 0; j < JOBS; j++) {
        char job_path[64];
        snprintf(job_path, sizeof(job_path), "/v1/jobs/load-%d", j);
        cJSON *job = httpc_expect(&c, "GET", job_path, NULL, 200);
        long long last = job_number(job, "last_step");
        ck_assert_int_eq(job_number(job, "reports"), last + 1);
        cJSON_Delete(job);
        if (last < 0)
            continue;
        char *copied = history_text(&c, j, last);
        cJSON *points = cJSON_Parse(copied);
        ck_assert_int_eq(cJSON_GetArraySize(points), last + 1);
        cJSON_Delete(points);
        char *original = history_text(live, j, last);
        ck_assert_msg(strcmp(copied, original) == 0, "job %d: the copy's history differs", j);
        free(copied);
        free(original);
        /* The copy's state goes on exactly where its history ends. */
        char body[96];
        snprintf(body, sizeof(body), "{\"step\":%lld,\"loss\":0.5}", last + 1);
        snprintf(job_path, sizeof(job_path), "/v1/jobs/load-%d/reports", j);
        cJSON_Delete(httpc_expect(&c, "POST", job_path, body, 200));
        steps += last + 1;
    }
    httpc_close(&c);
    daemon_stop(&copy);
    char extra[320];
    const char *suffixes[] = {"-wal", "-shm"};
    for (int i = 0; i < 2; i++) {
        snprintf(extra, sizeof(extra), "%s%s", path, suffixes[i]);
        unlink(extra);
    }
    unlink(path);
    daemon_cleanup(&copy);
    return steps;
}

START_TEST(a_backup_under_load_is_a_consistent_copy)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    struct httpc c;
    httpc_init(&c, d.port);
    for (int j = 0; j < JOBS; j++) {
        char path[64];
        snprintf(path, sizeof(path), "/v1/jobs/load-%d", j);
        cJSON_Delete(
            httpc_expect(&c, "PUT", path, "{\"lr\":0.1,\"config\":{\"patience\":2}}", 201));
    }
    pid_t loaders[JOBS];
    for (int j = 0; j < JOBS; j++) {
        loaders[j] = fork();
        ck_assert_int_ge(loaders[j], 0);
        if (loaders[j] == 0)
            load_main(d.port, j);
    }
    char out[2][300];
    for (int i = 0; i < 2; i++) {
        testutil_sleep_ms(300);
        snprintf(out[i], sizeof(out[i]), "%s/copy-%d.db", d.dir, i);
        const char *args[] = {"backup", "--db", d.db, out[i], NULL};
        char err[1024];
        ck_assert_msg(daemon_run(args, err, sizeof(err)) == 0, "backup failed: %s", err);
        ck_assert_msg(strstr(err, "backed up"), "stderr: %s", err);
        /* The copy is one file: nothing beside it. */
        char extra[sizeof(out) + 8];
        snprintf(extra, sizeof(extra), "%s-wal", out[i]);
        ck_assert_int_ne(access(extra, F_OK), 0);
    }
    for (int j = 0; j < JOBS; j++) {
        kill(loaders[j], SIGKILL);
        waitpid(loaders[j], NULL, 0);
    }
    long long first = check_copy(&c, out[0]);
    long long second = check_copy(&c, out[1]);
    ck_assert_msg(first > 0 && second > first, "the copies hold %lld and %lld steps", first,
                  second);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(backup_refuses_what_it_cannot_do)
{
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    daemon_stop(&d);
    char err[1024];
    char out[300];
    snprintf(out, sizeof(out), "%s/copy.db", d.dir);

    const char *missing[] = {"backup", "--db", "/nonexistent/greedylr.db", out, NULL};
    ck_assert_int_eq(daemon_run(missing, err, sizeof(err)), 1);
    ck_assert_msg(strstr(err, "/nonexistent/greedylr.db"), "stderr: %s", err);

    const char *itself[] = {"backup", "--db", d.db, d.db, NULL};
    ck_assert_int_eq(daemon_run(itself, err, sizeof(err)), 1);
    ck_assert_msg(strstr(err, "is the database itself"), "stderr: %s", err);

    const char *no_out[] = {"backup", "--db", d.db, NULL};
    ck_assert_int_eq(daemon_run(no_out, err, sizeof(err)), 2);

    /* Not a greedylr database: the daemon's log file. */
    const char *not_ours[] = {"backup", "--db", d.log, out, NULL};
    ck_assert_int_eq(daemon_run(not_ours, err, sizeof(err)), 1);
    ck_assert_int_ne(access(out, F_OK), 0);

    /* An older copy is kept unless --force says to replace it. */
    FILE *old = fopen(out, "w");
    ck_assert_ptr_nonnull(old);
    fputs("an older copy", old);
    fclose(old);
    const char *kept[] = {"backup", "--db", d.db, out, NULL};
    ck_assert_int_eq(daemon_run(kept, err, sizeof(err)), 1);
    ck_assert_msg(strstr(err, "exists; --force replaces it"), "stderr: %s", err);
    struct stat st;
    ck_assert_int_eq(stat(out, &st), 0);
    ck_assert_int_eq(st.st_size, (off_t)strlen("an older copy"));
    const char *ok[] = {"backup", "--db", d.db, "--force", out, NULL};
    ck_assert_msg(daemon_run(ok, err, sizeof(err)) == 0, "stderr: %s", err);
    ck_assert_int_eq(stat(out, &st), 0);
    ck_assert_int_gt(st.st_size, 4096);
    unlink(out);
    daemon_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("backup");
    TCase *tc = tcase_create("backup");
    tcase_set_timeout(tc, 120 * testutil_slow());
    tcase_add_test(tc, a_backup_under_load_is_a_consistent_copy);
    tcase_add_test(tc, backup_refuses_what_it_cannot_do);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
