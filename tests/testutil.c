/* Shared helpers for the libcheck suites (see testutil.h). */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/jsonx.h"

int testutil_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    /* TAP on stdout lets the Automake driver list every case by name. */
    srunner_set_tap(runner, "-");
    srunner_run_all(runner, CK_SILENT);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

char *testutil_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    ck_assert_int_ge(size, 0);
    rewind(f);
    char *data = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(data);
    ck_assert_uint_eq(fread(data, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    data[size] = '\0';
    if (len)
        *len = (size_t)size;
    return data;
}

cJSON *testutil_load_data(const char *name)
{
    const char *dir = getenv("GLR_TEST_DATA");
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/data", name);
    char *text = testutil_read_file(path, NULL);
    cJSON *tree = cJSON_Parse(text);
    free(text);
    ck_assert_msg(tree != NULL, "%s is not valid JSON", path);
    return tree;
}

cJSON *testutil_parse(const char *text)
{
    if (!text)
        return NULL;
    cJSON *tree = cJSON_Parse(text);
    ck_assert_msg(tree != NULL, "test JSON does not parse: %s", text);
    return tree;
}

int testutil_create(const char *policy, const char *lr_json, const char *config_json,
                    struct glr_sched **out, char err[GLR_ERR_MAX])
{
    cJSON *lr = testutil_parse(lr_json);
    cJSON *config = testutil_parse(config_json);
    err[0] = '\0';
    int rc = glr_sched_create(policy, lr, config, out, err);
    cJSON_Delete(lr);
    cJSON_Delete(config);
    return rc;
}

struct glr_sched *testutil_sched(const char *policy, const char *lr_json, const char *config_json)
{
    char err[GLR_ERR_MAX];
    struct glr_sched *sched = NULL;
    int rc = testutil_create(policy, lr_json, config_json, &sched, err);
    ck_assert_msg(rc == GLR_OK, "create failed: %s", err);
    return sched;
}

double testutil_number(const cJSON *item)
{
    ck_assert_msg(cJSON_IsNumber(item), "expected a JSON number");
    return item->valuedouble;
}

/* Replaces every number below item with an exact raw number, in place. */
static void make_exact(cJSON *item)
{
    for (cJSON *child = item->child; child; child = child->next) {
        if (cJSON_IsNumber(child)) {
            cJSON *exact = jsonx_number(child->valuedouble);
            ck_assert_ptr_nonnull(exact);
            if (child->string)
                cJSON_ReplaceItemInObjectCaseSensitive(item, child->string, exact);
            else
                cJSON_ReplaceItemViaPointer(item, child, exact);
            child = exact;
        } else {
            make_exact(child);
        }
    }
}

char *testutil_print_exact(const cJSON *tree)
{
    cJSON *copy = cJSON_Duplicate(tree, 1);
    ck_assert_ptr_nonnull(copy);
    char *text;
    if (cJSON_IsNumber(copy)) {
        cJSON *exact = jsonx_number(copy->valuedouble);
        text = cJSON_PrintUnformatted(exact);
        cJSON_Delete(exact);
    } else {
        make_exact(copy);
        text = cJSON_PrintUnformatted(copy);
    }
    cJSON_Delete(copy);
    ck_assert_ptr_nonnull(text);
    return text;
}

int testutil_slow(void)
{
    const char *slow = getenv("GLR_TEST_SLOW");
    int factor = slow ? atoi(slow) : 1;
    return factor > 0 ? factor : 1;
}

void testutil_sleep_ms(long ms)
{
    ms *= testutil_slow();
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

struct glr_sched *testutil_restore(struct glr_sched *sched, const char *policy, const cJSON *lr,
                                   const cJSON *config, const char *name)
{
    cJSON *state = glr_sched_state_save(sched);
    ck_assert_ptr_nonnull(state);
    char *text = testutil_print_exact(state);
    cJSON_Delete(state);
    cJSON *parsed = testutil_parse(text);
    free(text);
    struct glr_sched *restored = NULL;
    char err[GLR_ERR_MAX] = "";
    ck_assert_msg(glr_sched_create(policy, lr, config, &restored, err) == GLR_OK,
                  "%s: create failed: %s", name, err);
    ck_assert_msg(glr_sched_state_load(restored, parsed, err) == GLR_OK,
                  "%s: state load failed: %s", name, err);
    cJSON_Delete(parsed);
    glr_sched_free(sched);
    return restored;
}

uint32_t testutil_next_random(uint32_t *seed)
{
    *seed = *seed * 1664525u + 1013904223u;
    return *seed >> 8;
}

void testutil_tmpdir(const char *prefix, char dir[TESTUTIL_DIR_MAX])
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, TESTUTIL_DIR_MAX, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", prefix);
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

void testutil_tmpdir_remove(const char *dir)
{
    DIR *d = dir[0] ? opendir(dir) : NULL;
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[TESTUTIL_DIR_MAX + 260];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

double testutil_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
