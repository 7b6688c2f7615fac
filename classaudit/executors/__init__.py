"""Executors: run a list of tasks somewhere and hand back each outcome as it finishes.

    base        the contract: Task, Outcome, Executor (`map(tasks)` -> Outcomes in completion order), run_task
    registry    the names --executor takes, their options, check_executor and make_executor
    inprocess   one after another in this process (debugging, tests)
    local       a pool of worker processes on this machine, threads split between them (the default)
    ray         Ray core tasks on a cluster       (pip install 'classaudit[ray]')
    slurm       submitit job arrays on Slurm       (pip install 'classaudit[slurm]')

Results flow back to the driver. A worker trains one run and *returns* its RunResult; the sweep process (the
driver) is the single writer of results, and writes each run atomically under the folder's lock as its outcome
arrives. So resume, damaged-record detection and `classaudit status` work the same with every executor, and a
worker killed mid-run leaves no half-written result behind. What travels back is a pickled Outcome: a
RunResult holds numpy arrays, lists and dicts only (no torch tensors, nothing device-bound), a few hundred
kilobytes for CIFAR-sized test sets. The one file a worker writes is its run's checkpoint
(<results>/checkpoints/<run_id>.pt, an absolute path on a cluster), so a run continues mid-way after a kill or a
pre-emption when the results folder is on a file system the nodes share; elsewhere only whole runs resume.

Threads: a run sets torch's thread count to the whole CPUs it reserved (`cpus_per_run`; on a cluster 1 by
default, on this machine the cores split between the workers). The thread count changes how float sums are
split, hence the last bits of the results: the same run with the same thread count gives bit-identical results
on every executor.

Classaudit must be installed on every node, and the data must be readable where the runs execute (a shared
--data-dir, or the built-in `shapes` data that needs none).
"""

from __future__ import annotations

import importlib

from classaudit.executors.base import Executor, Outcome, Task, execute_task, run_task, threads_per_worker
from classaudit.executors.registry import EXECUTORS, check_executor, make_executor, runs_here

# The executor classes, imported from their modules on first use (so that importing this package imports no
# backend, and no backend module imports this package's namespace while it is being built).
_CLASSES = {"InProcessExecutor": "inprocess", "LocalExecutor": "local", "RayExecutor": "ray",
            "SlurmExecutor": "slurm"}
__all__ = ["EXECUTORS", "Executor", "Outcome", "Task", "check_executor", "execute_task", "make_executor",
           "run_task", "runs_here", "threads_per_worker", *_CLASSES]


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(importlib.import_module(f"{__name__}.{_CLASSES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
