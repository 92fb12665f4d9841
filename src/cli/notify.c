/*
 * sd_notify's protocol, the few lines of it greedylrd needs (see notify.h): the service
 * manager gives a datagram socket in $NOTIFY_SOCKET and reads "KEY=value" lines from it.
 */
#include "cli/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/status.h"

int notify_send(const char *state, char *err)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !*name)
        return GLR_OK;
    size_t state_len = strlen(state);
    if (state_len > NOTIFY_STATE_MAX)
        return glr_fail(err, GLR_EINVAL, "notify: state of %zu bytes is too long", state_len);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    size_t name_len = strlen(name);
    if (name[0] != '/' && name[0] != '@')
        return glr_fail(err, GLR_EINVAL, "notify: NOTIFY_SOCKET \"%.64s\" is not a socket path",
                        name);
    if (name_len >= sizeof(addr.sun_path))
        return glr_fail(err, GLR_EINVAL, "notify: NOTIFY_SOCKET is longer than %zu bytes",
                        sizeof(addr.sun_path) - 1);
    memcpy(addr.sun_path, name, name_len);
    /* An abstract socket's name starts with a NUL byte and is exactly name_len long. */
    if (name[0] == '@')
        addr.sun_path[0] = '\0';
    socklen_t addr_len =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + name_len + (name[0] == '@' ? 0 : 1));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return glr_fail(err, GLR_EIO, "notify: socket: %s", strerror(errno));
    ssize_t sent;
    do
        sent = sendto(fd, state, state_len, MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
    while (sent < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (sent < 0 || (size_t)sent != state_len)
        return glr_fail(err, GLR_EIO, "notify: sending to %.64s: %s", name,
                        sent < 0 ? strerror(saved) : "short write");
    return GLR_OK;
}
