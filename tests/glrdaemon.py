"""Test helper for the Python tests: runs greedylrd as a child process, as a user would.

The daemon is $GLR_DAEMON (src/greedylrd by default), with $GLR_DAEMON_WRAPPER (valgrind,
when the suite runs under it) put in front of it. It listens on 127.0.0.1 on a port the
system picks, with its database in a directory the caller gives, and is stopped the way an
init system would (SIGTERM). $GLR_TEST_SLOW says how much slower than usual it answers.
"""

import os
import re
import select
import shlex
import signal
import subprocess

# How much slower than usual the suite runs (10 under valgrind): waits are multiplied by it.
SLOW = max(1, int(os.environ.get("GLR_TEST_SLOW", "1") or 1))
# Seconds to wait for the daemon to say it listens, and to exit after SIGTERM.
START_TIMEOUT = 30
STOP_TIMEOUT = 30


def program():
    """The daemon's path."""
    return os.environ.get("GLR_DAEMON", "src/greedylrd")


def wrapper():
    """The command put in front of the daemon (a list, maybe empty)."""
    return shlex.split(os.environ.get("GLR_DAEMON_WRAPPER", ""))


class Daemon:
    """A greedylrd of our own with its database in workdir.

    port is None when it did not start (the reason is in log_tail()). restart() starts it
    again on the same port and database, so that a client of the old one can reconnect.
    """

    def __init__(self, workdir, port=0, extra_args=()):
        self.workdir = workdir
        self.db = os.path.join(workdir, "test.db")
        self.log_path = os.path.join(workdir, "daemon.log")
        self.extra_args = list(extra_args)
        self.process = None
        self.log = None
        self.port = None
        self.start(port)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, port=0):
        """Starts the daemon; sets and returns self.port (None when it did not start)."""
        self.log = open(self.log_path, "ab")
        command = wrapper() + [program(), "--listen", f"127.0.0.1:{port}", "--db", self.db]
        command += self.extra_args
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log)
        except OSError as error:
            self.log.write(f"cannot start {program()}: {error}\n".encode())
            self.log.flush()
            self.process = None
            self.port = None
            return None
        self.port = self.read_port(START_TIMEOUT * SLOW)
        return self.port

    def read_port(self, timeout):
        """Waits for 'listening on http://127.0.0.1:PORT' and returns PORT (None if not)."""
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().decode() if ready else ""
        found = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)\n", line)
        return int(found.group(1)) if found else None

    def stop(self):
        """Sends SIGTERM and returns the exit status (None when it would not stop)."""
        if self.process is None:
            if self.log:
                self.log.close()
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=STOP_TIMEOUT * SLOW)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            status = None
        self.process.stdout.close()
        self.process = None
        self.log.close()
        return status

    def restart(self):
        """Starts the daemon again on the same port and database; returns the port."""
        return self.start(self.port)

    def log_tail(self, lines=10):
        """The last lines of the daemon's standard error."""
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read().splitlines()[-lines:]


def start_or_fail(workdir, extra_args=()):
    """A started Daemon, or a failed pytest test saying why it did not start."""
    import pytest

    daemon = Daemon(str(workdir), extra_args=extra_args)
    if daemon.port is None:
        daemon.stop()
        pytest.fail("greedylrd did not start:\n" + "\n".join(daemon.log_tail()))
    return daemon


def stop_or_fail(daemon):
    """Stops the daemon; fails the test unless it exits 0 (under valgrind: no memory error)."""
    status = daemon.stop()
    assert status == 0, (f"greedylrd exited {status} on SIGTERM:\n"
                         + "\n".join(daemon.log_tail(30)))
