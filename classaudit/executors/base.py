"""The executors' contract: a Task to run, the Outcome it gives, the Executor that runs tasks, and what a worker
does with a task (`run_task`), wherever it runs.

Executors know nothing about training: a task is a picklable description, `execute_task` (in the worker) turns
it into a RunResult. Every executor yields one Outcome per task in completion order, and a run that fails, in
Python or by its worker dying (killed, out of memory, time limit), is an Outcome with an error, never the end of
the sweep; the driver alone writes results.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import traceback
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from classaudit.errors import RunFailed, UsageError

if TYPE_CHECKING:  # the contract itself needs no numpy: the command line reads the registry at start-up
    from classaudit.result import RunResult


@dataclass(frozen=True)
class Task:
    run_id: str
    label: str
    config: Mapping[str, Any]
    data_dir: str | None = None
    device: str | None = None
    threads: int | None = None
    checkpoint_dir: str | None = None  # where the run saves its state each epoch; must be shared on a cluster
    workdir: str | None = None  # where the study's own command runs and its function's module is found
    time_limit: float | None = None  # minutes the study's own command may run
    # The downstream probe (classaudit.transfer): {"id", "spec"} to train and then probe, plus "weights" (the
    # stored run's weight file; shared on a cluster) to probe a finished run without training it.
    transfer: Mapping[str, Any] | None = None


@dataclass
class Outcome:
    task: Task
    result: RunResult | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None


class Executor(ABC):
    """Runs tasks somewhere and hands back each one's Outcome as it finishes. Stopping the iteration early
    (Ctrl-C, the caller breaking off) stops or cancels what is still running: nobody would store it."""

    name: str  # the name --executor takes (see registry.EXECUTORS)
    threads: int | None = None  # torch threads per run; None: the sweep decides (the cores split between workers)

    @abstractmethod
    def map(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        """One Outcome per task, in the order they finish."""


def execute_task(task: Task, on_trained=None) -> RunResult:
    """Runs in the worker: set the thread count, train, return the result. A run whose config names a command or
    a function is trained by that code (classaudit.external); any other, by classaudit's own training, and then
    probed on its study's downstream task when the task names one (classaudit.transfer)."""
    if task.transfer is not None and on_trained is None:
        from classaudit import transfer

        return transfer.probe_only(task) if task.transfer.get("weights") else transfer.train_and_probe(task)
    if {"command", "function"} & set(task.config["train"]):
        from classaudit.external import run_external

        return run_external(task)
    import torch

    from classaudit.train import train_one

    if task.threads:
        torch.set_num_threads(task.threads)
    checkpoint = os.path.join(task.checkpoint_dir, f"{task.run_id}.pt") if task.checkpoint_dir else None
    return train_one(dict(task.config), run_id=task.run_id, data_dir=task.data_dir, device=task.device,
                     checkpoint=checkpoint, on_trained=on_trained)


def run_task(task: Task) -> Outcome:
    """What every worker runs: the task's Outcome, with the error of a run that raised instead of raising it.
    (A Ray worker's process title reads `ray::run_task` meanwhile.)"""
    try:
        return Outcome(task, result=execute_task(task))
    except RunFailed as e:  # its message says it all; its detail is what the command printed
        return Outcome(task, error=str(e), traceback=e.detail or None)
    except Exception as e:  # a failed run is an outcome, not the end of the sweep
        return Outcome(task, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())


def require(module: str, called: str, executor: str) -> None:
    """Raise one line saying how to install `module` (`called` so in messages) when executor `executor` needs it
    and it is missing; the extra of that name installs it."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise UsageError(f"--executor {executor} needs {called}: pip install 'classaudit[{executor}]'") from None


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def for_worker(task: Task, threads: int) -> Task:
    """The task as a worker on another machine needs it: its thread count, and paths that do not depend on its
    working directory."""
    return dataclasses.replace(task, threads=threads, data_dir=_absolute(task.data_dir),
                               checkpoint_dir=_absolute(task.checkpoint_dir), workdir=_absolute(task.workdir))


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(path))


def negative_resources(cpus_per_run: float | None, gpus_per_run: float | None) -> list[str]:
    """The problems of a negative CPU or GPU count (None = not given), for the executors that reserve them."""
    problems = []
    if cpus_per_run is not None and cpus_per_run < 0:
        problems.append(f"option --cpus-per-run: value {cpus_per_run} is negative; give a CPU count >= 0")
    if gpus_per_run is not None and gpus_per_run < 0:
        problems.append(f"option --gpus-per-run: value {gpus_per_run} is negative; give a GPU count >= 0")
    return problems


# Compared exactly by the tests.
RUNS_PER_DEVICE = ("option --runs-per-device: value {value} is not a whole number >= 1; give how many runs share "
                   "each device")


def runs_per_device_problems(runs_per_device) -> list[str]:
    """The problem with --runs-per-device (None = not given): N runs train at once on each device."""
    if runs_per_device is None:
        return []
    if isinstance(runs_per_device, bool) or not isinstance(runs_per_device, int) or runs_per_device < 1:
        return [RUNS_PER_DEVICE.format(value=runs_per_device)]
    return []


def thread_count_problems(executor: str, cpus_per_run: float | None) -> list[str]:
    """The problem with --cpus-per-run (None = not given) for an executor on this machine, where it is each
    run's torch thread count."""
    if cpus_per_run is not None and (cpus_per_run != int(cpus_per_run) or cpus_per_run < 1):
        return [f"option --cpus-per-run: value {cpus_per_run:g} is not a whole number >= 1; with --executor "
                f"{executor} it is each run's torch thread count"]
    return []
