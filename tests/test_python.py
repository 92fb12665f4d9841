#!/usr/bin/python3
"""Runs the Python tests (tests/python: the client, the PyTorch scheduler, the examples,
pip install) with pytest, and reports each test as one TAP line.

pytest's own output is copied as TAP comments, so the log shows why a test failed. A
pytest that does not run to the end, or finds no test at all (its exit status 5), fails.
Nothing is written into the source tree: pytest's cache is off, Python writes no bytecode,
and temporary files go to a directory of our own. Run from the project top:
    GLR_DAEMON=build/src/greedylrd /usr/bin/python3 tests/test_python.py [PYTEST ARGS]
"""

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
# The least number of tests pytest must run: fewer means some were not collected.
MIN_TESTS = 30


def tap_lines(junit_path):
    """(passed, description, diagnostics) for each test case of pytest's JUnit XML."""
    root = ElementTree.parse(junit_path).getroot()
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}.{case.get('name')}".lstrip(".")
        name = f"{name} ({float(case.get('time', 0)):.1f} s)"
        problems = [e for e in case if e.tag in ("failure", "error")]
        skipped = [e for e in case if e.tag == "skipped"]
        if problems:
            text = "\n".join(f"{e.get('message', '')}\n{e.text or ''}" for e in problems)
            yield False, name, text
        elif skipped:
            yield True, f"{name} # SKIP {skipped[0].get('message', '')}", ""
        else:
            yield True, name, ""


def main(directory="python", min_tests=MIN_TESTS):
    """Runs pytest on tests/DIRECTORY; at least min_tests must run when no argument narrows it."""
    count = 0
    failed = 0

    def line(passed, description, diagnostics=""):
        nonlocal count, failed
        count += 1
        failed += 0 if passed else 1
        print(f"{'ok' if passed else 'not ok'} {count} - {description}")
        for text in diagnostics.splitlines():
            print(f"#   {text}")
        sys.stdout.flush()

    with tempfile.TemporaryDirectory(prefix="greedylr-pytest-") as work:
        junit = os.path.join(work, "junit.xml")
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", TMPDIR=work)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rfE",
                   f"--junitxml={junit}", f"--basetemp={os.path.join(work, 'pytest')}",
                   "--rootdir", HERE, os.path.join(HERE, directory)] + sys.argv[1:]
        print(f"# {' '.join(command)}")
        answer = subprocess.run(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        for text in answer.stdout.splitlines():
            print(f"# {text}")
        if os.path.exists(junit):
            for passed, description, diagnostics in tap_lines(junit):
                line(passed, description, diagnostics)
        ran = count
        if len(sys.argv) == 1:
            line(ran >= min_tests, f"pytest ran {ran} tests (at least {min_tests})")
        line(answer.returncode == 0, f"pytest exited {answer.returncode}")
    print(f"1..{count}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
