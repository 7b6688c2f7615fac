"""The Slurm executor on a real single-node Slurm cluster (tests/slurm_cluster.py; skipped where it cannot
start): a sweep's results equal the in-process executor's; a killed sweep resumes without training its
finished runs again; a run that raises, a job cancelled with scancel and a job whose Python cannot load
its task are recorded as failed while the other goes on; a study larger than one job array goes into several.

Each run uses one torch thread, as in the reference (the thread count changes the last bits of the results).
Every job is a fresh Python that imports torch, a few seconds of the suite each: the studies are the tiny ones.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from classaudit.cli import cli
from classaudit.config import load_study
from classaudit.executors import make_executor
from classaudit.executors.slurm import CLUSTER_ENV, max_array_size
from classaudit.store import ResultsFolder
from classaudit.sweep import plan, run_sweep
from tests.conftest import TINY_STUDY, BreakOne, assert_same_results, sweep_cli

pytestmark = pytest.mark.slurm


@pytest.fixture
def slurm(slurm_cluster, monkeypatch):
    """The cluster, with this test's environment pointing Slurm's commands at it; the executor looks every
    second instead of every five. Afterwards every job still there (a killed sweep's) is cancelled, so that
    each test starts on an empty cluster."""
    for key, value in slurm_cluster.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(CLUSTER_ENV, raising=False)
    monkeypatch.setattr("classaudit.executors.slurm.POLL_SECONDS", 1.0)
    yield slurm_cluster
    slurm_cluster.cancel_all()


def arrays(jobs: Path) -> list[int]:
    """The sizes of the job arrays submitit submitted into `jobs`, from their logs (<array>_<index>_0_log.out)."""
    return sorted(Counter(p.name.split("_")[0] for p in jobs.glob("*_log.out")).values())


def test_sweep_on_slurm_equals_inprocess_in_several_arrays(slurm, reference, study_files, runner, tmp_path):
    tiny, _ = study_files  # 6 runs; the cluster's MaxArraySize is 4
    assert max_array_size() == slurm.max_array_size == 4
    out = sweep_cli(runner, tiny, tmp_path / "r", "--executor", "slurm", "--workers", "2",
                    "--slurm-folder", str(tmp_path / "jobs"))
    assert out.exit_code == 0, out.output
    assert "trained 6 run(s)" in out.output and "0 failed" in out.output
    assert_same_results(tmp_path / "r", reference["tiny"])
    assert arrays(tmp_path / "jobs") == [2, 4]  # one array of 4 runs, then one of 2
    records = (tmp_path / "r" / "runs").glob("*/record.json")
    assert {json.loads(p.read_text())["environment"]["threads"] for p in records} == {1}


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_sweep_killed_resumes_without_training_finished_runs(slurm, reference, study_files, runner, tmp_path, how):
    """SIGTERM (kill, Ctrl-C) stops the sweep, which cancels its jobs; after SIGKILL its jobs run on, for nobody.
    Either way the same command then trains only the runs not stored."""
    _, small = study_files  # 2 runs, one job at a time: the first is stored while the second trains
    results, jobs = tmp_path / "r", tmp_path / "jobs"
    command = [str(Path(sys.executable).with_name("classaudit")), "sweep", str(small), "--results", str(results),
               "--executor", "slurm", "--slurm-folder", str(jobs), "--no-progress"]
    with open(tmp_path / "sweep.log", "wb") as log:
        driver = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not ResultsFolder(results).run_ids():  # a first run is stored
            assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "sweep.log").read_text()
            time.sleep(0.2)
        driver.send_signal(getattr(signal, how))
        driver.wait(60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert len(ResultsFolder(results).run_ids()) == 1
    if how == "SIGTERM":
        assert driver.returncode == 130, (tmp_path / "sweep.log").read_text()
        deadline = time.monotonic() + 30
        while slurm.jobs() and time.monotonic() < deadline:  # cancelled: gone once its processes are
            time.sleep(0.2)
        assert not slurm.jobs()

    again = sweep_cli(runner, small, results, "--executor", "slurm", "--slurm-folder", str(jobs))
    assert again.exit_code == 0, again.output
    assert "trained 1 run(s)" in again.output and "1 already finished" in again.output
    assert_same_results(results, reference["small"])


class CancelRunning(threading.Thread):
    """Cancels (scancel) the job array element with the given index once squeue shows it running."""

    def __init__(self, cluster, index: int, timeout: float = 180):
        super().__init__(daemon=True)
        self.cluster, self.suffix, self.deadline = cluster, f"_{index}", time.monotonic() + timeout
        self.cancelled: str | None = None

    def run(self):
        while self.cancelled is None and time.monotonic() < self.deadline:
            running = [job for job in self.cluster.jobs("RUNNING") if job.endswith(self.suffix)]
            if running:
                self.cluster.run("scancel", running[0])
                self.cancelled = running[0]
            time.sleep(0.2)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.deadline = 0
        self.join()


class Unloadable:
    """Wraps an executor and gives one task a config value of a class from a module only this process can
    import, so that the job's Python fails loading the task, before the run: as when a node lacks a package."""

    def __init__(self, inner, run_id: str, module_dir: Path):
        self.inner, self.run_id, self.name = inner, run_id, inner.name
        module_dir.mkdir()
        (module_dir / "only_here.py").write_text("class Thing:\n    pass\n")
        sys.path.insert(0, str(module_dir))
        import only_here

        self.thing = only_here.Thing()

    def map(self, tasks):
        yield from self.inner.map([dataclasses.replace(t, config={**t.config, "extra": self.thing})
                                   if t.run_id == self.run_id else t for t in tasks])


# Four runs of one seed: the off point, crop 0.5, CutMix 0.25 and 0.5; one job array.
FOUR_RUNS = TINY_STUDY.replace("seeds = [0, 1]", "seeds = [0]").replace("strengths = [0.0, 0.5]",
                                                                       "strengths = [0.0, 0.25, 0.5]")


def test_failed_jobs_are_recorded_and_the_others_go_on(slurm, runner, tmp_path, monkeypatch):
    (tmp_path / "four.toml").write_text(FOUR_RUNS)
    study, results = load_study(tmp_path / "four.toml"), tmp_path / "r"
    todo = [run.run_id for run in plan(study, results).todo]  # the order of the tasks, and of the array elements
    monkeypatch.setattr(sys, "path", list(sys.path))  # Unloadable adds to it
    executor = make_executor("slurm", workers=2, folder=tmp_path / "jobs")
    executor = Unloadable(BreakOne(executor, todo[0]), todo[2], tmp_path / "modules")
    with CancelRunning(slurm, 1) as canceller:
        summary = run_sweep(study, results, executor)
    assert canceller.cancelled is not None
    assert sorted(summary.trained) == sorted(todo[3:]) and sorted(summary.failed) == sorted(todo[:3]), (
        todo, summary.failed, canceller.cancelled)

    def failure(run_id):
        return json.loads((results / "failed" / f"{run_id}.json").read_text())

    assert failure(todo[0])["error"].startswith("ValueError: ")  # the run raised
    cancelled = failure(todo[1])
    assert cancelled["error"].startswith(f"job {canceller.cancelled} ended without a result (killed, out of memory, "
                                         "or past its time limit); its log: ")
    assert cancelled["traceback"] == "Slurm: CANCELLED"
    unloadable = failure(todo[2])["error"]  # the job's Python could not load the task
    assert re.match(r"job \d+_2 failed outside the run: ModuleNotFoundError: No module named 'only_here'; its "
                    "log: ", unloadable), unloadable
    status = runner.invoke(cli, ["status", str(results)]).output
    assert status.startswith("tiny: 1/4 done, 3 pending (3 failed)"), status
