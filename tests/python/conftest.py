"""Fixtures of the Python tests: a greedylrd of their own, and clients of it.

The package is imported from the source tree (contrib/python), the examples are run from
contrib/examples, and the daemon is started by tests/glrdaemon.py (GLR_DAEMON,
GLR_DAEMON_WRAPPER, GLR_TEST_SLOW as for every test of the suite).
"""

import itertools
import os
import re
import sys

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRCDIR = os.environ.get("GLR_SRCDIR", os.path.dirname(TESTS))
PACKAGE = os.path.join(SRCDIR, "contrib", "python")
EXAMPLES = os.path.join(SRCDIR, "contrib", "examples")
sys.path.insert(0, PACKAGE)
sys.path.insert(0, TESTS)
# torch, in the tests and examples that use it, on one thread: the machine is shared and
# the runs are small. Set before torch is imported, which reads it then.
os.environ["OMP_NUM_THREADS"] = "1"

import glrdaemon  # noqa: E402  (found through the path set just above)
import greedylr  # noqa: E402

SLOW = glrdaemon.SLOW
_names = itertools.count()


start_daemon = glrdaemon.start_or_fail
stop_daemon = glrdaemon.stop_or_fail


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    """One daemon for the whole session; each test uses jobs of its own."""
    started = start_daemon(tmp_path_factory.mktemp("daemon"))
    yield started
    stop_daemon(started)


@pytest.fixture
def own_daemon(tmp_path):
    """A daemon for one test alone (a test that stops and restarts it)."""
    started = start_daemon(tmp_path)
    yield started
    if started.process is not None:
        stop_daemon(started)


@pytest.fixture
def client(daemon):
    with greedylr.Client(daemon.url, timeout=10 * SLOW) as opened:
        yield opened


@pytest.fixture
def job_id(request):
    """A job id no other test uses."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)
    return f"{name[:100]}-{next(_names)}"
