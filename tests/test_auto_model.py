#!/usr/bin/python3
"""The golden vectors of the auto policy are what its independent model makes: running
tests/auto_golden.py again must give tests/data/auto.json byte for byte, so the file the
core is checked against (tests/test_auto.c) cannot drift from the model. TAP output."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

result = subprocess.run([sys.executable, os.path.join(HERE, "auto_golden.py"), "--check"],
                        capture_output=True, text=True)
print("ok 1 - tests/data/auto.json is what tests/auto_model.py makes" if result.returncode == 0
      else "not ok 1 - tests/data/auto.json differs from what tests/auto_model.py makes: "
           "run tests/auto_golden.py, and check the core against it")
for line in (result.stdout + result.stderr).splitlines():
    print(f"# {line}")
print("1..1")
sys.exit(0 if result.returncode == 0 else 1)
