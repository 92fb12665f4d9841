"""`pip install --no-build-isolation contrib/python` works as the README says: into a venv
that sees Debian's packages (torch, and flit_core to build with), with no package index,
writing nothing into the source tree (make distcheck runs it from a read-only one)."""

import os
import subprocess
import sys

import pytest

from conftest import PACKAGE, SLOW


def clean_env(home):
    """A clean environment: no package index, no bytecode written beside the sources."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}


def run(command, cwd):
    answer = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, timeout=300 * SLOW,
                            env=clean_env(cwd))
    assert answer.returncode == 0, f"{command} exited {answer.returncode}:\n{answer.stdout}"
    return answer.stdout


def test_pip_installs_the_package_into_a_venv(daemon, tmp_path, job_id):
    try:
        import ensurepip  # noqa: F401  (Debian ships it in python3-venv)
    except ImportError:
        pytest.fail("python3 -m venv needs Debian's python3-venv package")
    try:
        import flit_core  # noqa: F401  (the build backend, from Debian's flit)
    except ImportError:
        pytest.fail("building the package needs Debian's flit package (flit_core)")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--no-build-isolation", PACKAGE], tmp_path)
    code = ("import greedylr, sys\n"
            "print(greedylr.__file__)\n"
            "c = greedylr.Client(sys.argv[1])\n"
            "c.create_job(sys.argv[2], 0.1)\n"
            "print(c.report(sys.argv[2], 0, 1.0)['lr'])\n")
    output = run([python, "-c", code, daemon.url, job_id], tmp_path).splitlines()
    assert output[0].startswith(str(venv)), output
    assert output[1] == "0.1"
    listed = run([python, "-m", "pip", "show", "-f", "greedylr"], tmp_path)
    assert "Version: 0.1.0" in listed and "greedylr/scheduler.py" in listed
