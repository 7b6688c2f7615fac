"""benchmarks/device_check.py, the GPU machine's prepared check: its CPU-safe mode runs every step at tiny
sizes and prints the summary (its figures mean nothing on a CPU; that it runs is what is checked)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_the_device_check_runs_its_cpu_safe_steps():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--cpu"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout[done.stdout.index("== summary") + len("== summary"):])
    assert summary["cuda tests"] == "not run (--cpu)"
    assert 0 <= summary["recipe test accuracy"] <= 1 and summary["recipe seconds"] > 0
    assert summary["augment images/s"] > 0
    assert set(summary["runs per hour"]) == {"1", "2"} and all(v > 0 for v in summary["runs per hour"].values())
