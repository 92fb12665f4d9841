/*
 * Crashes lose nothing that was acknowledged. Concurrent clients (several jobs, one of them
 * of three ranks) report as fast as they can while the daemon is killed with SIGKILL at random
 * moments and restarted, several times in a row; clients retry whatever got no answer. At the end
 * every report answered 200 is in the history with the lr and event it was answered, and replaying
 * each job's history through the policy gives the stored state.
 *
 * Longer soak on demand: GLR_CRASH_ROUNDS (kills, default 5), GLR_CRASH_STEPS (reports per
 * job, default 1500), GLR_CRASH_SEED (to repeat a run; the seed used is printed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "httpc.h"
#include "base/jsonx.h"
#include "testutil.h"

struct crash_job {
    const char *id;
    const char *policy;
    const char *lr;
    const char *config;
    int world_size; /* one client per rank */
};

static const struct crash_job jobs[] = {
    {"crash-smooth", "greedylr", "0.1",
     "{\"patience\":2,\"smooth\":true,\"window_size\":5,\"reset_start\":3,\"min_lr\":0.01}", 1},
    {"crash-groups", "greedylr", "[0.1,0.05,0.2]", "{\"patience\":1,\"factor\":0.9}", 1},
    {"crash-plateau", "plateau", "0.1", "{\"patience\":1,\"cooldown\":1}", 1},
    {"crash-cosine", "cosine", "0.1", "{\"t_max\":300,\"warmup_steps\":20}", 1},
    {"crash-ranks", "greedylr", "0.1", "{\"patience\":1,\"smooth\":true,\"window_size\":3}", 3},
};
#define JOB_COUNT ((int)(sizeof(jobs) / sizeof(jobs[0])))
#define MAX_RANKS 3

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

static double loss_at(int job, int rank, int step)
{
    return 3.0 / (1.0 + 0.01 * step) + 0.3 * sin(step * (0.5 + job) + rank) +
           (step % 50 == 7 ? 5 : 0);
}

/* The loss the service gives the policy: the mean of the ranks, summed in rank order. */
static double combined_loss(int job, int step)
{
    double sum = 0;
    for (int r = 0; r < jobs[job].world_size; r++)
        sum += loss_at(job, r, step);
    return sum / jobs[job].world_size;
}

/* A port nothing listens on now, for a daemon that must come back on the same one. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &len);
    close(fd);
    return ntohs(addr.sin_port);
}

/*
 * One client: reports steps 0..steps-1 of its job, retrying each until it is answered 200,
 * and writes "step lr... event" for every answer to out.
 */
static void run_client(int port, int j, int rank, int steps, FILE *out)
{
    struct httpc c;
    httpc_init(&c, port);
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s/reports", jobs[j].id);
    int retries = 0;
    for (int k = 0; k < steps; k++) {
        char loss[JSONX_DOUBLE_MAX], body[128];
        jsonx_format_double(loss_at(j, rank, k), loss);
        int n =
            snprintf(body, sizeof(body), "{\"step\":%d,\"rank\":%d,\"loss\":%s}", k, rank, loss);
        for (int attempt = 0;; attempt++) {
            struct httpc_response r;
            if (attempt > 3000)
                _exit(3); /* about a minute without an answer */
            if (httpc_request(&c, "POST", path, "application/json", body, (size_t)n, &r) != 0) {
                retries++;
                httpc_close(&c);
                testutil_sleep_ms(20);
                continue;
            }
            int status = r.status;
            if (status == 200) {
                cJSON *a = cJSON_Parse(r.body);
                const cJSON *lr = cJSON_GetObjectItemCaseSensitive(a, "lr");
                fprintf(out, "%d", k);
                const cJSON *item = cJSON_IsArray(lr) ? lr->child : lr;
                for (; item; item = cJSON_IsArray(lr) ? item->next : NULL) {
                    double v = 0;
                    jsonx_get_double(item, &v);
                    fprintf(out, " %a", v);
                }
                fprintf(out, " %s\n", cJSON_GetObjectItemCaseSensitive(a, "event")->valuestring);
                cJSON_Delete(a);
            }
            httpc_response_free(&r);
            if (status == 200)
                break;
            if (status < 500)
                _exit(4); /* a refusal is a bug: reports here are always valid */
            testutil_sleep_ms(20);
        }
    }
    fflush(out);
    /* The kills must land while clients are busy, or the test proves nothing. */
    fprintf(stderr, "# %s rank %d: %d requests without an answer, retried\n", jobs[j].id, rank,
            retries);
}

/* One stored history point: what the service says it answered. */
struct stored {
    bool present;
    double lrs[GLR_MAX_GROUPS];
    size_t groups;
    double loss;
    char event[16];
};

static void load_history(struct httpc *c, const char *id, struct stored *points, int steps)
{
    char token[64] = "";
    for (;;) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/jobs/%s/history?page_size=10000%s%s", id,
                 token[0] ? "&page_token=" : "", token);
        cJSON *h = httpc_expect(c, "GET", path, NULL, 200);
        const cJSON *point;
        cJSON_ArrayForEach(point, cJSON_GetObjectItemCaseSensitive(h, "points"))
        {
            int step = (int)cJSON_GetObjectItemCaseSensitive(point, "step")->valuedouble;
            ck_assert_int_lt(step, steps);
            struct stored *p = &points[step];
            ck_assert_msg(!p->present, "%s: step %d twice in the history", id, step);
            p->present = true;
            jsonx_get_double(cJSON_GetObjectItemCaseSensitive(point, "loss"), &p->loss);
            const cJSON *lr = cJSON_GetObjectItemCaseSensitive(point, "lr");
            p->groups = 0;
            const cJSON *item = cJSON_IsArray(lr) ? lr->child : lr;
            for (; item; item = cJSON_IsArray(lr) ? item->next : NULL)
                jsonx_get_double(item, &p->lrs[p->groups++]);
            snprintf(p->event, sizeof(p->event), "%s",
                     cJSON_GetObjectItemCaseSensitive(point, "event")->valuestring);
        }
        bool done = !httpc_next_page(h, token, sizeof(token));
        cJSON_Delete(h);
        if (done)
            return;
    }
}

/* Every answer a client got is in the history, as answered. */
static void check_answers(FILE *answers, const struct stored *points, const char *id)
{
    rewind(answers);
    char line[2048];
    int count = 0;
    while (fgets(line, sizeof(line), answers)) {
        char *p = line;
        int step = (int)strtol(p, &p, 10);
        const struct stored *s = &points[step];
        ck_assert_msg(s->present, "%s: step %d was answered but is not in the history", id, step);
        for (size_t g = 0; g < s->groups; g++) {
            double lr = strtod(p, &p);
            ck_assert_msg(lr == s->lrs[g], "%s step %d: answered lr %.17g, stored %.17g", id, step,
                          lr, s->lrs[g]);
        }
        while (*p == ' ')
            p++;
        p[strcspn(p, "\n")] = '\0';
        ck_assert_msg(strcmp(p, s->event) == 0, "%s step %d: answered %s, stored %s", id, step, p,
                      s->event);
        count++;
    }
    ck_assert_int_ge(count, 1);
}

/* Replaying the history through the core gives every stored answer and the stored state. */
static void check_replay(struct httpc *c, int j, const struct stored *points, int steps)
{
    cJSON *lr = testutil_parse(jobs[j].lr);
    cJSON *config = testutil_parse(jobs[j].config);
    struct glr_sched *sched = NULL;
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(glr_sched_create(jobs[j].policy, lr, config, &sched, err) == GLR_OK, "%s", err);
    cJSON_Delete(lr);
    cJSON_Delete(config);
    for (int k = 0; k < steps; k++) {
        ck_assert_msg(points[k].present, "%s: step %d is missing", jobs[j].id, k);
        ck_assert_msg(points[k].loss == combined_loss(j, k), "%s step %d: stored loss %.17g",
                      jobs[j].id, k, points[k].loss);
        struct glr_step_result r;
        glr_sched_step(sched, k, points[k].loss, &r);
        for (size_t g = 0; g < points[k].groups; g++)
            ck_assert_msg(glr_sched_lrs(sched)[g] == points[k].lrs[g],
                          "%s step %d: replay gives another lr", jobs[j].id, k);
        ck_assert_str_eq(glr_event_name(r.event), points[k].event);
    }
    char path[128];
    snprintf(path, sizeof(path), "/v1/jobs/%s", jobs[j].id);
    cJSON *job = httpc_expect(c, "GET", path, NULL, 200);
    cJSON *counters = glr_sched_counters_json(sched);
    char *want = cJSON_PrintUnformatted(counters);
    char *got = testutil_print_exact(cJSON_GetObjectItemCaseSensitive(job, "state"));
    ck_assert_msg(strcmp(want, got) == 0, "%s: stored state %s, replayed %s", jobs[j].id, got,
                  want);
    ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(job, "reports")->valuedouble, steps);
    free(want);
    free(got);
    cJSON_Delete(counters);
    cJSON_Delete(job);
    glr_sched_free(sched);
}

/*
 * The two ways the daemon commits: --sync normal, and --sync full with at most one job
 * kept in memory, so that jobs are also dropped from memory and loaded again all the time.
 */
static const char *const *daemon_modes[] = {
    (const char *const[]){"--sync", "normal", NULL},
    (const char *const[]){"--sync", "full", "--resident-jobs", "1", NULL},
};

START_TEST(sigkill_loses_no_acknowledged_report)
{
    int rounds = (int)env_long("GLR_CRASH_ROUNDS", 5);
    /* Fewer steps when running slow (valgrind): the kills still land while clients work. */
    int steps = (int)env_long("GLR_CRASH_STEPS", 1500 / testutil_slow());
    unsigned seed = (unsigned)env_long("GLR_CRASH_SEED", (long)time(NULL));
    const char *const *mode = daemon_modes[_i];
    fprintf(stderr, "# crash test: %s %s%s, %d kills, %d steps per job, seed %u\n", mode[0],
            mode[1], mode[2] ? " --resident-jobs 1" : "", rounds, steps, seed);
    srand(seed);

    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
    const char *args[8] = {"--listen", listen};
    for (int i = 0; mode[i]; i++)
        args[2 + i] = mode[i];
    struct daemon d;
    daemon_start(&d, NULL, args);
    struct httpc c;
    httpc_init(&c, d.port);
    for (int j = 0; j < JOB_COUNT; j++) {
        char path[128], body[512];
        snprintf(path, sizeof(path), "/v1/jobs/%s", jobs[j].id);
        snprintf(body, sizeof(body),
                 "{\"policy\":\"%s\",\"lr\":%s,\"config\":%s,\"world_size\":%d}", jobs[j].policy,
                 jobs[j].lr, jobs[j].config, jobs[j].world_size);
        cJSON_Delete(httpc_expect(&c, "PUT", path, body, 201));
    }
    httpc_close(&c);

    FILE *answers[JOB_COUNT][MAX_RANKS];
    pid_t clients[JOB_COUNT][MAX_RANKS];
    for (int j = 0; j < JOB_COUNT; j++) {
        for (int r = 0; r < jobs[j].world_size; r++) {
            answers[j][r] = tmpfile();
            ck_assert_ptr_nonnull(answers[j][r]);
            clients[j][r] = fork();
            ck_assert_int_ge(clients[j][r], 0);
            if (clients[j][r] == 0) {
                run_client(d.port, j, r, steps, answers[j][r]);
                _exit(0);
            }
        }
    }
    for (int round = 0; round < rounds; round++) {
        testutil_sleep_ms(50 + rand() % 300);
        daemon_kill(&d);
        testutil_sleep_ms(rand() % 50);
        daemon_restart(&d);
    }
    for (int j = 0; j < JOB_COUNT; j++) {
        for (int r = 0; r < jobs[j].world_size; r++) {
            int status;
            waitpid(clients[j][r], &status, 0);
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                          "client of %s rank %d failed (status %d)", jobs[j].id, r, status);
        }
    }

    /* One more crash with everything quiet, then check from a fresh start. */
    daemon_kill(&d);
    daemon_restart(&d);
    httpc_init(&c, d.port);
    struct stored *points = calloc((size_t)steps, sizeof(*points));
    for (int j = 0; j < JOB_COUNT; j++) {
        memset(points, 0, (size_t)steps * sizeof(*points));
        load_history(&c, jobs[j].id, points, steps);
        for (int r = 0; r < jobs[j].world_size; r++) {
            check_answers(answers[j][r], points, jobs[j].id);
            fclose(answers[j][r]);
        }
        check_replay(&c, j, points, steps);
    }
    free(points);
    httpc_close(&c);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("crash");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 240);
    tcase_add_loop_test(tc, sigkill_loses_no_acknowledged_report, 0,
                        (int)(sizeof(daemon_modes) / sizeof(daemon_modes[0])));
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
