/*
 * The regression test of a fuzz harness: feeds every file of its corpus (or of the files
 * and directories named on the command line) to LLVMFuzzerTestOneInput, once each, and
 * says so in TAP. A harness tests/fuzz/fuzz_NAME reads $GLR_SRCDIR/tests/fuzz/corpus/NAME.
 * A crash, a sanitizer report or a leak ends the run with the input's name printed last.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Largest corpus file replayed: far above what libFuzzer writes (-max_len). */
#define REPLAY_FILE_MAX (1024 * 1024)

static int tested;

/* Replays one file; returns 0, or -1 when it cannot be read. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("not ok %d - %s: %s\n", ++tested, path, strerror(errno));
        return -1;
    }
    /* Exactly as long as the input, so that the sanitizers see any read past its end. */
    uint8_t *data = malloc(REPLAY_FILE_MAX);
    size_t size = data ? fread(data, 1, REPLAY_FILE_MAX, f) : 0;
    bool failed = !data || ferror(f) || !feof(f);
    fclose(f);
    uint8_t *exact = failed ? NULL : malloc(size ? size : 1);
    if (exact)
        memcpy(exact, data, size);
    free(data);
    if (!exact) {
        printf("not ok %d - %s: cannot read it whole (at most %d bytes)\n", ++tested, path,
               REPLAY_FILE_MAX);
        return -1;
    }
    fprintf(stderr, "replaying %s\n", path);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    printf("ok %d - %s\n", ++tested, path);
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replays every regular file of dir in name order; returns 0 or -1. */
static int replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        printf("not ok %d - %s: %s\n", ++tested, dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **grown = realloc(names, cap * sizeof(*names));
            if (!grown) {
                rc = -1;
                break;
            }
            names = grown;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        names[n] = malloc(len);
        if (!names[n]) {
            rc = -1;
            break;
        }
        snprintf(names[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (rc)
        printf("not ok %d - %s: out of memory\n", ++tested, dir);
    else
        qsort(names, n, sizeof(*names), compare_names);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && replay_file(names[i]))
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

static int replay_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return replay_dir(path);
    return replay_file(path);
}

int main(int argc, char **argv)
{
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && rc == 0; i++)
            rc = replay_path(argv[i]);
    } else {
        const char *srcdir = getenv("GLR_SRCDIR");
        const char *base = strrchr(argv[0], '/');
        base = base ? base + 1 : argv[0];
        if (strncmp(base, "fuzz_", 5) != 0 || !srcdir) {
            printf("Bail out! run me as tests/fuzz/fuzz_NAME with GLR_SRCDIR set, or name "
                   "files\n");
            return 1;
        }
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", srcdir, base + 5);
        rc = replay_dir(dir);
    }
    printf("1..%d\n", tested);
    return rc ? 1 : 0;
}
