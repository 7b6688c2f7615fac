"""Executors: run a list of tasks somewhere and hand back each outcome as it finishes.

They know nothing about training: a task is a picklable description, `execute_task` (in the worker) turns
it into a RunResult. Every executor yields `Outcome`s in completion order; the driver alone writes results.

    inprocess   one after another in this process (debugging, tests)
    local       a pool of worker processes on this machine, threads split between them (the default)
    ray         Ray core tasks on a cluster       (pip install 'classaudit[ray]')
    slurm       submitit job arrays on Slurm       (pip install 'classaudit[slurm]')
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from classaudit.errors import UsageError
from classaudit.result import RunResult

EXECUTORS = ("inprocess", "local", "ray", "slurm")


@dataclass(frozen=True)
class Task:
    run_id: str
    label: str
    config: Mapping[str, Any]
    data_dir: str | None = None
    device: str | None = None
    threads: int | None = None
    checkpoint_dir: str | None = None  # where the run saves its state each epoch; must be shared on a cluster


@dataclass
class Outcome:
    task: Task
    result: RunResult | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


def execute_task(task: Task) -> RunResult:
    """Runs in the worker: set the thread count, train, return the result."""
    import torch

    from classaudit.train import train_one

    if task.threads:
        torch.set_num_threads(task.threads)
    checkpoint = os.path.join(task.checkpoint_dir, f"{task.run_id}.pt") if task.checkpoint_dir else None
    return train_one(dict(task.config), run_id=task.run_id, data_dir=task.data_dir, device=task.device,
                     checkpoint=checkpoint)


def _guarded(task: Task) -> Outcome:
    try:
        return Outcome(task, result=execute_task(task))
    except Exception as e:  # a failed run is an outcome, not the end of the sweep
        return Outcome(task, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())


class InProcessExecutor:
    name = "inprocess"

    def map(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        for task in tasks:
            yield _guarded(task)


class LocalExecutor:
    """A process pool. Workers are started with 'spawn' (a forked torch can deadlock on its thread pools).
    A worker that dies (out of memory, killed) fails the runs it held; the pool is rebuilt for the rest."""

    name = "local"

    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def map(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        import multiprocessing as mp

        queue = list(tasks)
        while queue:
            pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
            futures = {}
            broken = False
            try:
                while (queue or futures) and not broken:
                    while queue and len(futures) < self.workers:
                        task = queue.pop(0)
                        futures[pool.submit(_guarded, task)] = task
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for fut in done:
                        task = futures.pop(fut)
                        try:
                            yield fut.result()
                        except BrokenProcessPool:
                            broken = True
                            yield Outcome(task, error="worker process died (killed or out of memory)")
                if broken:  # every other task the dead pool held failed with it
                    for task in futures.values():
                        yield Outcome(task, error="worker process died (killed or out of memory)")
                    futures = {}
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def make_executor(name: str, *, workers: int = 1, **options: Any):
    if name == "inprocess":
        return InProcessExecutor()
    if name == "local":
        return LocalExecutor(workers)
    if name in ("ray", "slurm"):
        from classaudit import cluster

        return cluster.make(name, workers=workers, **options)
    raise UsageError(f"option --executor: value \"{name}\" is not known; allowed: {', '.join(EXECUTORS)}")
