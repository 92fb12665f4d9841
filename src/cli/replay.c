/*
 * greedylr-replay: runs a policy over a list of losses read from standard input (one per
 * line, optionally followed by the report's lr_cap) and prints the learning rate and event after
 * each, exactly as the service would answer. Useful to try a configuration on a recorded training
 * run before using it live.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/glr.h"
#include "base/jsonx.h"

/* Longest input line accepted (one loss and a cap). */
#define REPLAY_LINE_MAX 256

static void usage(FILE *out)
{
    fprintf(out, "usage: greedylr-replay [--policy NAME] [--lr JSON] [--config JSON]\n"
                 "\n"
                 "Reads one loss per line from standard input (auto: optionally followed\n"
                 "by the report's lr_cap) and prints, after each, \"step loss lr event\"\n"
                 "(one lr column per parameter group).\n"
                 "  --policy NAME   greedylr (default), auto, plateau, or a schedule of the\n"
                 "                  step number: constant, step, multistep, constant_factor,\n"
                 "                  exponential, polynomial, cosine, cosine_restarts, linear,\n"
                 "                  onecycle; or sequence (see the README, \"Policies\")\n"
                 "  --lr JSON       initial learning rate: a number or an array (default 0.1)\n"
                 "  --config JSON   the policy's settings as a JSON object (default {})\n");
}

static int replay(struct glr_sched *sched)
{
    char line[REPLAY_LINE_MAX];
    int64_t step = 0;
    while (fgets(line, sizeof(line), stdin)) {
        if (!strchr(line, '\n') && !feof(stdin)) {
            fprintf(stderr, "greedylr-replay: line %lld is too long\n", (long long)step + 1);
            return EXIT_FAILURE;
        }
        char *end;
        errno = 0;
        double loss = strtod(line, &end);
        if (end == line) {
            fprintf(stderr, "greedylr-replay: line %lld is not a number\n", (long long)step + 1);
            return EXIT_FAILURE;
        }
        char *after_cap;
        double lr_cap = strtod(end, &after_cap);
        if (after_cap == end)
            lr_cap = INFINITY;
        else if (!(isfinite(lr_cap) && lr_cap > 0) || !glr_sched_takes_lr_cap(sched)) {
            fprintf(stderr,
                    "greedylr-replay: line %lld: an lr_cap must be a number > 0, "
                    "and only policy auto takes one\n",
                    (long long)step + 1);
            return EXIT_FAILURE;
        }
        struct glr_step_result result;
        if (glr_sched_step_capped(sched, step, loss, lr_cap, &result) != GLR_OK) {
            fprintf(stderr, "greedylr-replay: too many steps\n");
            return EXIT_FAILURE;
        }
        char text[JSONX_DOUBLE_MAX];
        jsonx_format_double(loss, text);
        printf("%lld %s", (long long)step, text);
        const double *lrs = glr_sched_lrs(sched);
        for (size_t g = 0; g < glr_sched_groups(sched); g++) {
            jsonx_format_double(lrs[g], text);
            printf(" %s", text);
        }
        printf(" %s\n", glr_event_name(result.event));
        step++;
    }
    return EXIT_SUCCESS;
}

int main(int argc, char **argv)
{
    const char *policy = "greedylr";
    const char *lr_text = "0.1";
    const char *config_text = "{}";
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0) {
            usage(stdout);
            return EXIT_SUCCESS;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("greedylr-replay %s\n", PACKAGE_VERSION);
            return EXIT_SUCCESS;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        if (strcmp(arg, "--policy") == 0)
            policy = argv[++i];
        else if (strcmp(arg, "--lr") == 0)
            lr_text = argv[++i];
        else if (strcmp(arg, "--config") == 0)
            config_text = argv[++i];
        else {
            usage(stderr);
            return 2;
        }
    }
    cJSON *lr = cJSON_Parse(lr_text);
    cJSON *config = cJSON_Parse(config_text);
    if (!lr || !config) {
        fprintf(stderr, "greedylr-replay: --%s is not valid JSON\n", lr ? "config" : "lr");
        cJSON_Delete(lr);
        cJSON_Delete(config);
        return 2;
    }
    char err[GLR_ERR_MAX] = "";
    struct glr_sched *sched = NULL;
    int rc = glr_sched_create(policy, lr, config, &sched, err);
    cJSON_Delete(lr);
    cJSON_Delete(config);
    if (rc != GLR_OK) {
        fprintf(stderr, "greedylr-replay: %s\n", err);
        return 2;
    }
    int status = replay(sched);
    glr_sched_free(sched);
    return status;
}
