"""Sweeping a study: expand it, skip what is finished, run the rest on an executor, store each result.

Resume is the default: a run whose verified record exists is never trained again, so a killed sweep loses at
most the runs that were in flight, and running a finished sweep again trains nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from classaudit.config import Run, Study, count_runs, expand, resolve_transfer, transfer_id
from classaudit.errors import EnvironmentProblem, UsageError
from classaudit.executors import Outcome, Task, runs_here, threads_per_worker
from classaudit.store import ResultsFolder, Status, classify

# A run whose images are not the other runs': stored, it would be compared with them image by image. Messages
# compared exactly by the tests.
OTHER_CLASSES = ("class {k} is named {name}, but {expected} in run {ref}: every run of a study must name the same "
                 "classes in the same order")
OTHER_SPLITS = ("the run predicts the splits {splits}, run {ref} {expected}: every run of a study predicts the same "
                "splits")
OTHER_COUNT = ("split {split} has {n} images, run {ref}'s {expected}: every run of a study predicts the same images, "
               "in the same order")
OTHER_LABELS = ("split {split}: image {index} has label {label}, but {expected} in run {ref} ({count} of {n} images "
                "differ): every run of a study predicts the same images, in the same order")


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep of `study` into `results` would do, decided once by `plan`: the dry run prints it, the size
    check reads it, the sweep trains its `todo`, and its `state` is the classification `classaudit status` shows.
    A study over its max_runs that would train is not expanded (seeds = 20240101 is a typo, not a plan): `runs` is
    then empty and `refusal` says why."""

    study: Study
    results: Path
    n_runs: int
    runs: list[Run]  # the study's runs, in order
    state: Status  # done, pending (failed among them), damaged and stale
    confirm_large: bool
    refusal: str | None  # why the sweep will not start without --yes; None when it may
    # The study's downstream task ({"id", "spec"}), when it has a [transfer] table; state.probe_missing then lists
    # the finished runs without their probe, and weighed the finished runs whose weights are stored.
    transfer: dict | None = None
    weighed: frozenset[str] = frozenset()

    @property
    def todo(self) -> list[Run]:
        """The runs to train: those not finished, and finished runs that miss their probe and have no stored
        weights to probe (trained before the study had its [transfer] table): they train again, the same run."""
        pending = set(self.state.pending) | (set(self.state.probe_missing) - self.weighed)
        return [r for r in self.runs if r.run_id in pending]

    @property
    def probes(self) -> list[Run]:
        """Finished runs that miss their downstream probe and have their weights: probed without training."""
        missing = set(self.state.probe_missing) & self.weighed
        return [r for r in self.runs if r.run_id in missing]

    @property
    def corrupt(self) -> dict[str, str]:
        """Damaged records of the study's runs (the sweep re-trains them); others are left to `status`."""
        return {rid: problem for rid, problem in self.state.corrupt.items() if rid in self.state.labels}

    @property
    def stale(self) -> list[str]:
        return self.state.stale

    def check_size(self) -> None:
        if self.refusal is not None:
            raise UsageError(self.refusal)

    def refreshed(self) -> SweepPlan:
        """The same runs against the folder as it is now (a sweep re-reads it once it holds the folder's lock)."""
        return _plan(self.study, self.results, self.confirm_large, self.runs or None)

    def tasks(self, **context) -> list[Task]:
        """The executor's tasks: each run to train (then probed, when the study has a downstream task), and each
        finished run to probe from its stored weights. `context`: the Task fields every task shares."""
        folder = ResultsFolder(self.results)
        tasks = [Task(r.run_id, r.label, r.config, transfer=self.transfer, **context) for r in self.todo]
        for r in self.probes:
            weights = str((folder.runs_dir / r.run_id / "model.pt").resolve())
            tasks.append(Task(r.run_id, f"{r.label} (probe)", r.config, transfer={**self.transfer, "weights": weights},
                              **context))
        return tasks


@dataclass
class SweepSummary:
    total: int
    skipped: int
    trained: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    corrupt: dict[str, str] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    probed: list[str] = field(default_factory=list)  # finished runs given their downstream probe, untrained


def plan(study: Study, results: str | Path, *, confirm_large: bool = False) -> SweepPlan:
    """What a sweep would do, without writing anything."""
    return _plan(study, Path(results), confirm_large, None)


def _plan(study: Study, results: Path, confirm_large: bool, runs: list[Run] | None) -> SweepPlan:
    folder = ResultsFolder(results)
    here = folder.path.is_dir()
    good, bad = folder.verified_runs() if here else ({}, {})
    failures = folder.failures() if here else {}
    n = count_runs(study)  # from one seed's grid: cheap however many seeds
    large = n > study.max_runs and not confirm_large
    if runs is None and large and n > len(good):  # it must train some: refuse before expanding
        return SweepPlan(study, results, n, [], classify(study.name, {}, good, bad, failures), confirm_large,
                         _too_large(study, n))
    runs = runs if runs is not None else expand(study)
    spec = resolve_transfer(study)
    transfer = None if spec is None else {"id": transfer_id(spec), "spec": spec}
    probed = None if transfer is None else folder.verified_probes(good, transfer["id"]) if here else {}
    state = classify(study.name, {r.run_id: r.label for r in runs}, good, bad, failures, probed)
    weighed = frozenset(rid for rid, rec in good.items() if "model.pt" in rec["files"])
    return SweepPlan(study, results, n, runs, state, confirm_large,
                     _too_large(study, n) if large and state.pending else None, transfer, weighed)


def _too_large(study: Study, n: int) -> str:
    """The refusal of a study larger than its max_runs (a typo in a grid can mean thousands of runs)."""
    hint = ""
    if isinstance(study.seeds, range) and len(study.seeds) > study.max_runs:
        hint = (f" (study.seeds = {len(study.seeds)} is a count, seeds 0..{len(study.seeds) - 1}; for that one "
                f"seed write seeds = [{len(study.seeds)}])")
    return (f"{study.path}: the study expands to {n} runs, more than study.max_runs = {study.max_runs}{hint}; "
            "pass --yes to run them all, or raise study.max_runs")


def record_study(the_plan: SweepPlan) -> None:
    """Make the plan's study the folder's study (its study.json) without training: what a sweep with nothing left
    to train does, so that status and report then read this study's runs, not the previous one's."""
    folder = ResultsFolder(the_plan.results)
    with folder.lock():
        folder.write_study(the_plan.study.name, the_plan.study.path, the_plan.runs, the_plan.transfer)


def run_sweep(study: Study, results: str | Path, executor, *, confirm_large: bool = False, **options) -> SweepSummary:
    """Train every missing run of `study` into the folder `results`: `execute(plan(...), executor)`."""
    return execute(plan(study, results, confirm_large=confirm_large), executor, **options)


def execute(
    the_plan: SweepPlan,
    executor,
    *,
    data_dir: str | None = None,
    device: str | None = None,
    workers: int = 1,
    retries: int = 0,
    on_start: Callable[[SweepPlan], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> SweepSummary:
    """Train the plan's missing runs, holding the folder's lock throughout; the folder is read again under the
    lock, since another sweep may have stored runs since the plan was made."""
    the_plan.check_size()
    folder = ResultsFolder(the_plan.results)
    with folder.lock():
        the_plan = the_plan.refreshed()
        the_plan.check_size()
        summary = SweepSummary(len(the_plan.runs), len(the_plan.runs) - len(the_plan.todo),
                               corrupt=the_plan.corrupt, stale=the_plan.stale)
        folder.clean_temporaries()
        folder.write_study(the_plan.study.name, the_plan.study.path, the_plan.runs, the_plan.transfer)
        if on_start is not None:
            on_start(the_plan)
        # On this machine the sweep splits the cores between the workers; on a cluster each run's threads are
        # the CPUs it reserved, which its executor sets.
        here = runs_here(executor.name)
        threads = (getattr(executor, "threads", None) or threads_per_worker(workers)) if here else None
        # The user's own code runs in the study file's folder (relative paths in it mean what they mean there).
        workdir = str(Path(the_plan.study.path).resolve().parent)
        pending = {t.run_id: t for t in the_plan.tasks(
            data_dir=data_dir, device=device, threads=threads, checkpoint_dir=str(folder.checkpoint_dir),
            workdir=workdir, time_limit=the_plan.study.train.get("time_limit"))}
        seeds = {r.run_id: r.seed for r in the_plan.runs}
        attempts = {rid: 0 for rid in pending}
        same_images = _SameImages(folder, the_plan.state.done)
        while pending:
            for outcome in executor.map(list(pending.values())):
                rid = outcome.task.run_id
                attempts[rid] += 1
                probe_only = bool(outcome.task.transfer and outcome.task.transfer.get("weights"))
                problem = same_images.problem(outcome.result) if outcome.ok and not probe_only else None
                if problem is not None:
                    outcome = Outcome(outcome.task, error=problem)
                try:
                    if outcome.ok and probe_only:
                        folder.write_probe(rid, outcome.result.transfer)
                    elif outcome.ok:
                        folder.write_run(outcome.result, seeds[rid])
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
                    (summary.probed if probe_only else summary.trained).append(rid)
                    summary.failed.pop(rid, None)
                    del pending[rid]
                else:
                    summary.failed[rid] = outcome.error or ""
                    if attempts[rid] > retries:
                        del pending[rid]
                if on_outcome is not None:
                    on_outcome(outcome)
    return summary


class _SameImages:
    """Every run of a study predicts the same images in the same order and names the same classes (a command
    that shuffles its test set or reads another data folder would otherwise mix runs that cannot be compared):
    each run is checked against the study's first stored run, or the first to finish."""

    def __init__(self, folder: ResultsFolder, done: list[str]):
        self.folder, self.done = folder, done
        self.reference: tuple[str, list[str], dict] | None = None  # run id, class names, {split: labels}

    def problem(self, result) -> str | None:
        if self.reference is None and self.done:
            rid = self.done[0]
            self.reference = (rid, self.folder.read_record(rid)["class_names"], self.folder.read_labels(rid))
        labels = {split: p.label for split, p in result.splits.items()}
        if self.reference is None:
            self.reference = (result.run_id, list(result.class_names), labels)
            return None
        ref, names, expected = self.reference
        for k in range(max(len(names), len(result.class_names))):
            name, other = [n[k] if k < len(n) else "(none)" for n in (result.class_names, names)]
            if name != other:
                return OTHER_CLASSES.format(k=k, name=_quoted(name), expected=_quoted(other), ref=ref)
        if sorted(labels) != sorted(expected):
            return OTHER_SPLITS.format(splits=", ".join(sorted(labels)), expected=", ".join(sorted(expected)), ref=ref)
        for split, mine in labels.items():
            if len(mine) != len(expected[split]):
                return OTHER_COUNT.format(split=split, n=len(mine), expected=len(expected[split]), ref=ref)
            differ = np.flatnonzero(mine != expected[split])
            if len(differ):
                i = differ[0]
                return OTHER_LABELS.format(split=split, index=i, label=mine[i], expected=expected[split][i], ref=ref,
                                           count=len(differ), n=len(mine))
        return None


def _quoted(name: str) -> str:
    return name if name == "(none)" else json.dumps(name)
