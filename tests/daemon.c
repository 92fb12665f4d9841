/* Runs greedylrd for the tests (see daemon.h). */
#include "daemon.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Most arguments passed to the daemon. */
#define DAEMON_ARGS_MAX 24

/* execv() wants writable strings: copy them (in the child, just before exec). */
static void exec_args(const char *const *argv)
{
    char *copy[2 * DAEMON_ARGS_MAX + 2];
    int n = 0;
    for (; argv[n] && n < 2 * DAEMON_ARGS_MAX + 1; n++)
        copy[n] = strdup(argv[n]);
    copy[n] = NULL;
    execv(copy[0], copy);
    _exit(127);
}

/*
 * Starts argv with standard output and error on the given descriptors; the child closes
 * unused (the parent's end of a pipe). Returns the child's pid.
 */
static pid_t spawn(const char *const *argv, int out, int err, int unused)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(out, STDOUT_FILENO);
        dup2(err, STDERR_FILENO);
        close(unused);
        exec_args(argv);
    }
    return pid;
}

static const char *daemon_path(void)
{
    const char *path = getenv("GLR_DAEMON");
    return path && *path ? path : "src/greedylrd";
}

/*
 * Builds argv: [limit...] [wrapper...] greedylrd args... With open_files, a shell sets the
 * open-file limit first: the test itself may run under valgrind, which refuses a
 * setrlimit() of the hard limit, but runs an exec'd shell natively.
 */
static int build_argv(const char **argv, const char *const *args, unsigned open_files)
{
    int n = 0;
    static char limit_script[64];
    if (open_files) {
        snprintf(limit_script, sizeof(limit_script), "ulimit -n %u && exec \"$@\"", open_files);
        argv[n++] = "/bin/sh";
        argv[n++] = "-c";
        argv[n++] = limit_script;
        argv[n++] = "sh";
    }
    static char wrapper[1024];
    const char *w = getenv("GLR_DAEMON_WRAPPER");
    if (w && *w) {
        /* The wrapper is a command with options separated by spaces. */
        snprintf(wrapper, sizeof(wrapper), "%s", w);
        for (char *tok = strtok(wrapper, " "); tok && n < DAEMON_ARGS_MAX / 2;
             tok = strtok(NULL, " "))
            argv[n++] = tok;
    }
    argv[n++] = daemon_path();
    for (int i = 0; args && args[i] && n < DAEMON_ARGS_MAX; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return n;
}

static void launch(struct daemon *d, const char *const *extra_args)
{
    const char *args[DAEMON_ARGS_MAX + 1];
    int n = 0;
    args[n++] = "--listen";
    args[n++] = "127.0.0.1:0";
    args[n++] = "--db";
    args[n++] = d->db;
    args[n++] = "--threads";
    args[n++] = "4";
    for (int i = 0; extra_args && extra_args[i] && n < DAEMON_ARGS_MAX - 1; i++)
        args[n++] = extra_args[i];
    args[n] = NULL;
    const char *argv[2 * DAEMON_ARGS_MAX + 2];
    build_argv(argv, args, d->open_files);

    int out[2];
    ck_assert_int_eq(pipe(out), 0);
    int log = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ck_assert_int_ge(log, 0);
    pid_t pid = spawn(argv, out[1], log, out[0]);
    close(log);
    close(out[1]);
    d->pid = pid;
    /* Read the one line the daemon prints once it accepts connections. */
    char line[256];
    size_t len = 0;
    while (len < sizeof(line) - 1) {
        ssize_t got = read(out[0], line + len, 1);
        if (got <= 0 || line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    close(out[0]);
    const char *colon = strrchr(line, ':');
    ck_assert_msg(strncmp(line, "listening on http://", 20) == 0 && colon,
                  "greedylrd did not start (printed \"%s\"; see %s)", line, d->log);
    d->port = atoi(colon + 1);
    ck_assert_int_gt(d->port, 0);
}

void daemon_start(struct daemon *d, const char *db, const char *const *extra_args)
{
    daemon_start_limited(d, db, extra_args, 0);
}

void daemon_start_limited(struct daemon *d, const char *db, const char *const *extra_args,
                          unsigned open_files)
{
    memset(d, 0, sizeof(*d));
    d->open_files = open_files;
    testutil_tmpdir("greedylr-test", d->dir);
    if (db)
        snprintf(d->db, sizeof(d->db), "%s", db);
    else
        snprintf(d->db, sizeof(d->db), "%s/test.db", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/daemon.log", d->dir);
    d->extra_args = extra_args;
    launch(d, extra_args);
}

void daemon_restart(struct daemon *d)
{
    ck_assert_int_eq(d->pid, 0);
    launch(d, d->extra_args);
}

/* Waits for the child; returns its wait status. */
static int reap(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

static void show_log(const struct daemon *d)
{
    FILE *f = fopen(d->log, "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f))
        fprintf(stderr, "  daemon: %s", line);
    fclose(f);
}

void daemon_stop(struct daemon *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    int status = reap(d->pid);
    d->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        show_log(d);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "greedylrd did not stop cleanly on SIGTERM (status %d)", status);
}

void daemon_kill(struct daemon *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGKILL);
    reap(d->pid);
    d->pid = 0;
}

void daemon_cleanup(struct daemon *d)
{
    if (d->pid > 0)
        daemon_kill(d);
    testutil_tmpdir_remove(d->dir);
    d->dir[0] = '\0';
}

/* Runs the daemon with args to completion, reading what it writes to fd into text. */
static int run_capturing(const char *const *args, int fd, char *text, size_t size)
{
    const char *argv[2 * DAEMON_ARGS_MAX + 2];
    build_argv(argv, args, 0);
    int out[2];
    ck_assert_int_eq(pipe(out), 0);
    int other = fd == STDERR_FILENO ? open("/dev/null", O_WRONLY | O_CLOEXEC) : dup(STDERR_FILENO);
    ck_assert_int_ge(other, 0);
    pid_t pid = fd == STDERR_FILENO ? spawn(argv, other, out[1], out[0])
                                    : spawn(argv, out[1], other, out[0]);
    close(other);
    close(out[1]);
    size_t len = 0;
    ssize_t got;
    char sink[256];
    while ((got = read(out[0], len + 1 < size ? text + len : sink,
                       len + 1 < size ? size - 1 - len : sizeof(sink))) > 0)
        if (len + 1 < size)
            len += (size_t)got;
    text[len] = '\0';
    close(out[0]);
    int status = reap(pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int daemon_run(const char *const *args, char *stderr_text, size_t size)
{
    return run_capturing(args, STDERR_FILENO, stderr_text, size);
}

int daemon_run_stdout(const char *const *args, char *stdout_text, size_t size)
{
    return run_capturing(args, STDOUT_FILENO, stdout_text, size);
}
