/*
 * Readiness notification for a service manager (systemd's Type=notify), without
 * libsystemd: one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET.
 */
#ifndef GLR_NOTIFY_H
#define GLR_NOTIFY_H

/* Longest state text sent, in bytes. */
#define NOTIFY_STATE_MAX 256

/*
 * Sends state ("READY=1", "STOPPING=1", "STATUS=...", newline-separated) to the socket in
 * $NOTIFY_SOCKET: a path, or an abstract name when it starts with '@'. Without
 * $NOTIFY_SOCKET it does nothing. Returns GLR_OK, GLR_EINVAL (a state or socket name too
 * long, or not a socket path) or GLR_EIO (the datagram could not be sent); err says which.
 */
int notify_send(const char *state, char *err);

#endif
