"""Sweeping a study: expand it, skip what is finished, run the rest on an executor, store each result.

Resume is the default: a run whose verified record exists is never trained again, so a killed sweep loses at
most the runs that were in flight, and running a finished sweep again trains nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from classaudit.config import Run, Study, count_runs, expand
from classaudit.errors import EnvironmentProblem, UsageError
from classaudit.executors import Outcome, Task, runs_here, threads_per_worker
from classaudit.store import ResultsFolder


@dataclass
class SweepPlan:
    runs: list[Run]
    todo: list[Run]
    corrupt: dict[str, str]
    stale: list[str]


@dataclass
class SweepSummary:
    total: int
    skipped: int
    trained: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    corrupt: dict[str, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)


def plan(study: Study, results: str | Path) -> SweepPlan:
    """What a sweep would do, without writing anything. Damaged records of runs outside the study are left out:
    no sweep of this study would re-train them (status lists them)."""
    runs = expand(study)
    folder = ResultsFolder(results)
    good, bad = folder.verified_runs() if folder.path.is_dir() else ({}, {})
    wanted = {r.run_id for r in runs}
    return SweepPlan(runs, [r for r in runs if r.run_id not in good],
                     {rid: problem for rid, problem in bad.items() if rid in wanted}, sorted(set(good) - wanted))


def check_size(study: Study, confirm_large: bool) -> None:
    """Refuse a study larger than its max_runs unless confirmed (a typo in a grid can mean thousands of runs).
    Counted from one seed's grid, so a huge study is refused before it is expanded."""
    n = count_runs(study)
    if n > study.max_runs and not confirm_large:
        hint = ""
        if isinstance(study.seeds, range) and len(study.seeds) > study.max_runs:
            hint = (f" (study.seeds = {len(study.seeds)} is a count, seeds 0..{len(study.seeds) - 1}; for that one "
                    f"seed write seeds = [{len(study.seeds)}])")
        raise UsageError(f"{study.path}: the study expands to {n} runs, more than study.max_runs "
                         f"= {study.max_runs}{hint}; pass --yes to run them all, or raise study.max_runs")


def record_study(study: Study, results: str | Path, runs: list[Run]) -> None:
    """Make `study` the folder's study (its study.json) without training: what a sweep with nothing left to
    train does, so that status and report then read this study's runs, not the previous one's."""
    folder = ResultsFolder(results)
    with folder.lock():
        folder.write_study(study.name, study.path, runs)


def run_sweep(
    study: Study,
    results: str | Path,
    executor,
    *,
    data_dir: str | None = None,
    device: str | None = None,
    workers: int = 1,
    retries: int = 0,
    confirm_large: bool = False,
    on_start: Callable[[SweepPlan], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> SweepSummary:
    """Train every missing run of `study` into the folder `results`, holding its lock throughout."""
    check_size(study, confirm_large)
    the_plan = plan(study, results)
    folder = ResultsFolder(results)
    summary = SweepSummary(len(the_plan.runs), len(the_plan.runs) - len(the_plan.todo),
                           corrupt=the_plan.corrupt, stale=the_plan.stale)
    with folder.lock():
        folder.clean_temporaries()
        folder.write_study(study.name, study.path, the_plan.runs)
        if on_start is not None:
            on_start(the_plan)
        # On this machine the sweep splits the cores between the workers; on a cluster each run's threads are
        # the CPUs it reserved, which its executor sets.
        here = runs_here(executor.name)
        threads = (getattr(executor, "threads", None) or threads_per_worker(workers)) if here else None
        pending = {r.run_id: r for r in the_plan.todo}
        attempts = {rid: 0 for rid in pending}
        while pending:
            tasks = [Task(r.run_id, r.label, r.config, data_dir, device, threads, str(folder.checkpoint_dir))
                     for r in pending.values()]
            for outcome in executor.map(tasks):
                rid = outcome.task.run_id
                attempts[rid] += 1
                try:
                    if outcome.ok:
                        folder.write_run(outcome.result, pending[rid].seed)
                    else:
                        folder.write_failure(rid, outcome.task.label, outcome.error or "",
                                             outcome.traceback or "", attempts[rid])
                except OSError as e:
                    # A full disk or a vanished file system: stop; the run folder is all or nothing, so every
                    # run stored before this one is intact and the next sweep resumes from there.
                    raise EnvironmentProblem(
                        f"{folder.path}: cannot store run {rid} ({e.strerror or e}); the "
                        f"{summary.skipped + len(summary.trained)} finished runs are kept. Free space or fix the "
                        "folder, then run the same command again to train the rest") from None
                if outcome.ok:
                    folder.remove_checkpoint(rid)
                    summary.trained.append(rid)
                    summary.failed.pop(rid, None)
                    del pending[rid]
                else:
                    summary.failed[rid] = outcome.error or ""
                    if attempts[rid] > retries:
                        del pending[rid]
                if on_outcome is not None:
                    on_outcome(outcome)
    return summary
