"""Fixtures of the dashboard's tests: daemons serving the dashboard, a JSON client of the
API, and headless Chromium driven by Selenium (Debian's chromium, chromium-driver and
python3-selenium). A missing browser fails the tests that need it: CI installs it.
"""

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TESTS)

import glrdaemon  # noqa: E402  (found through the path set just above)

SLOW = glrdaemon.SLOW
DASHBOARD = os.environ.get("GLR_DASHBOARD_DIR", "ui")
CHROMIUM = os.environ.get("GLR_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("GLR_CHROMEDRIVER", "/usr/bin/chromedriver")
# Flags for Chromium on a machine without a display or a network beyond loopback.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,900"]
_names = itertools.count()


class Api:
    """A small JSON client of one daemon (urllib: nothing beyond the standard library)."""

    def __init__(self, url, token=None):
        self.url = url
        self.token = token

    def call(self, method, path, body=None, headers=None):
        """(status, parsed JSON or text, headers) of one request."""
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=30 * SLOW) as answer:
                status, raw, got = answer.status, answer.read(), answer.headers
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), error.headers
        kind = got.get("Content-Type", "")
        parsed = json.loads(raw) if raw and "json" in kind else raw.decode("utf-8", "replace")
        return status, parsed, got

    def ok(self, method, path, body=None):
        status, parsed, _ = self.call(method, path, body)
        assert 200 <= status < 300, f"{method} {path}: {status} {parsed}"
        return parsed

    def job(self, job_id, tags=None, policy="greedylr", **extra):
        body = {"policy": policy, "lr": 0.1, "tags": tags or {}}
        body.update(extra)
        return self.ok("PUT", f"/v1/jobs/{job_id}", body)

    def report(self, job_id, steps, first=0, loss=lambda s: 2.0 / (1 + 0.01 * s)):
        for step in range(first, first + steps):
            self.ok("POST", f"/v1/jobs/{job_id}/reports", {"step": step, "loss": loss(step)})


def start_daemon(workdir, extra_args=()):
    """A started Daemon serving the dashboard, or a failed test saying why not."""
    return glrdaemon.start_or_fail(workdir, ["--dashboard-dir", DASHBOARD] + list(extra_args))


stop_daemon = glrdaemon.stop_or_fail


@pytest.fixture(scope="session")
def daemon(tmp_path_factory):
    """One daemon for the session, without tokens; each test makes jobs of its own."""
    started = start_daemon(tmp_path_factory.mktemp("daemon"))
    yield started
    stop_daemon(started)


@pytest.fixture(scope="session")
def api(daemon):
    return Api(daemon.url)


@pytest.fixture
def own_daemon(tmp_path):
    """Starts daemons for one test: own_daemon(*args); each is stopped after it."""
    started = []

    def start(*args, workdir=None):
        d = start_daemon(workdir or tempfile.mkdtemp(dir=tmp_path), args)
        started.append(d)
        return d
    yield start
    for d in started:
        stop_daemon(d)


def make_token(db, role, name):
    """A new token of role in the database db, made with greedylrd token create."""
    answer = subprocess.run([glrdaemon.program(), "token", "create", "--role", role,
                             "--name", name, "--db", db], capture_output=True, text=True,
                            timeout=60 * SLOW, check=True)
    found = re.search(r"glr_[0-9a-f]{64}", answer.stdout)
    assert found, answer.stdout + answer.stderr
    return found.group(0)


@pytest.fixture
def job_id(request):
    """A job id no other test uses."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)
    return f"{name[:100]}-{next(_names)}"


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium under ChromeDriver; fails (not skips) when either is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the browser tests need Debian's chromium "
                    "and chromium-driver (sh contrib/quickstart.sh test installs them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        pytest.fail(f"selenium is missing ({error}): apt-get install python3-selenium")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="greedylr-chromium-")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30 * SLOW)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait_for(condition, timeout=10, what="the condition", interval=0.02):
    """Polls condition() until it is truthy, and returns it; fails after timeout * SLOW s."""
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except Exception as error:  # the page is not there yet: try again
            last = error
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")
