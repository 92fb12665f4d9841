/*
 * Readiness notification: a real daemon, started with $NOTIFY_SOCKET naming a datagram
 * socket this test binds (a path, then an abstract name), sends READY=1 once it listens
 * and STOPPING=1 when SIGTERM stops it, as systemd's Type=notify expects.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "testutil.h"

/* Binds a datagram socket at name ('@' first: abstract); returns it. */
static int bind_socket(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    size_t len = strlen(name);
    ck_assert_uint_lt(len, sizeof(addr.sun_path));
    memcpy(addr.sun_path, name, len);
    if (name[0] == '@')
        addr.sun_path[0] = '\0';
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, addr_len), 0);
    return fd;
}

/* Receives one datagram within the (slowness-scaled) timeout; fails the test otherwise. */
static void receive(int fd, char *text, size_t size)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ck_assert_msg(poll(&p, 1, 10000 * testutil_slow()) == 1, "no notification came");
    ssize_t n = recv(fd, text, size - 1, 0);
    ck_assert_int_gt(n, 0);
    text[n] = '\0';
}

/* Starts a daemon with NOTIFY_SOCKET=name, and checks both notifications. */
static void check_notifications(const char *name, int fd)
{
    setenv("NOTIFY_SOCKET", name, 1);
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    unsetenv("NOTIFY_SOCKET");
    char text[512];
    receive(fd, text, sizeof(text));
    ck_assert_msg(strstr(text, "READY=1\n") == text || strcmp(text, "READY=1") == 0,
                  "first notification: %s", text);
    daemon_stop(&d);
    receive(fd, text, sizeof(text));
    ck_assert_str_eq(text, "STOPPING=1");
    daemon_cleanup(&d);
}

START_TEST(ready_and_stopping_reach_a_socket_path)
{
    char dir[] = "/tmp/greedylr-notify-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = bind_socket(path);
    check_notifications(path, fd);
    close(fd);
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(ready_and_stopping_reach_an_abstract_socket)
{
    char name[64];
    snprintf(name, sizeof(name), "@greedylr-notify-test-%ld", (long)getpid());
    int fd = bind_socket(name);
    check_notifications(name, fd);
    close(fd);
}
END_TEST

/* A socket that is gone must not keep the daemon from serving: it only logs. */
START_TEST(a_missing_socket_is_only_a_warning)
{
    setenv("NOTIFY_SOCKET", "/nonexistent/greedylr-notify", 1);
    struct daemon d;
    daemon_start(&d, NULL, NULL);
    unsetenv("NOTIFY_SOCKET");
    daemon_stop(&d);
    size_t len = 0;
    char *log = testutil_read_file(d.log, &len);
    ck_assert_msg(strstr(log, "warn notify: sending to /nonexistent/greedylr-notify"), "log: %s",
                  log);
    free(log);
    daemon_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("notify");
    TCase *tc = tcase_create("notify");
    tcase_set_timeout(tc, 60 * testutil_slow());
    tcase_add_test(tc, ready_and_stopping_reach_a_socket_path);
    tcase_add_test(tc, ready_and_stopping_reach_an_abstract_socket);
    tcase_add_test(tc, a_missing_socket_is_only_a_warning);
    suite_add_tcase(suite, tc);
    return testutil_run(suite);
}
