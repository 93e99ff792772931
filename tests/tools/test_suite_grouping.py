"""``make test`` runs on two pytest-xdist workers with ``--dist loadgroup``; each test module must stay on one
worker, or its module-scoped fixtures (a quick benchmark, a cross-validation) are built twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from helpers import failure_text

REPO = Path(__file__).resolve().parents[2]
MODULES = ["tests/components/test_precision.py", "tests/components/test_calibration.py"]


def test_each_module_runs_on_a_single_worker():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p", "no:cacheprovider", *MODULES],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, failure_text(result)
    workers = defaultdict(set)
    for worker, module in re.findall(r"\[(gw\d+)\] \[\s*\d+%\] PASSED (tests/\S+?\.py)::", result.stdout):
        workers[module].add(worker)
    assert set(workers) == set(MODULES), result.stdout[-3000:]
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
