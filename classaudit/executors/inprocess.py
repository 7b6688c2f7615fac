"""The in-process executor: every task one after another in this process (debugging, tests)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from classaudit.executors.base import Executor, Outcome, Task, run_task, thread_count_problems


class InProcessExecutor(Executor):
    name = "inprocess"

    def __init__(self, threads: int | None = None):
        self.threads = threads  # torch threads per run; None: all of this machine's cores

    def map(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        for task in tasks:
            yield run_task(task)


def check(*, cpus_per_run: float | None = None) -> list[str]:
    return thread_count_problems(InProcessExecutor.name, cpus_per_run)


def make(*, workers: int, cpus_per_run: float | None = None) -> InProcessExecutor:
    """`workers` is ignored: one run at a time. --cpus-per-run threads per run when given, so that a run gives
    the same bits as on a cluster with the same --cpus-per-run."""
    return InProcessExecutor(None if cpus_per_run is None else int(cpus_per_run))
