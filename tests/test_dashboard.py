#!/usr/bin/python3
"""Runs the dashboard's tests (tests/dashboard: the pages in headless Chromium, driven by
Selenium, and the static files, CORS and the API description over a real socket) with
pytest, one TAP line per test, as tests/test_python.py does for the Python client.

Chromium and ChromeDriver come from Debian (chromium, chromium-driver, python3-selenium);
without them every browser test fails, it is not skipped. Run from the project top:
    GLR_DAEMON=build/src/greedylrd GLR_DASHBOARD_DIR=build/ui \\
        /usr/bin/python3 tests/test_dashboard.py [PYTEST ARGS]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import test_python  # noqa: E402  (found through the path set just above)

# The least number of tests pytest must run: fewer means some were not collected.
MIN_TESTS = 12

if __name__ == "__main__":
    sys.exit(test_python.main("dashboard", MIN_TESTS))
