"""Benchmark of the deployed configuration: real Valkey processes started from the rendered pods.

Run ``python -m bench.run`` (see bench/README.md). Not a test: it measures and prints a table.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

# The pod runner (tests/podrunner) and the mock harness (tests/harness.py) live with the tests.
for _path in (str(ROOT), str(TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
