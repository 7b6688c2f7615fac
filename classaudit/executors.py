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
import pickle
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
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

    def __init__(self, threads: int | None = None):
        self.threads = threads  # torch threads per run; None: all of this machine's cores

    def map(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        for task in tasks:
            yield _guarded(task)


class LocalExecutor:
    """Worker processes on this machine, each with a pipe of its own, started with 'spawn' (a forked torch can
    deadlock on its thread pools). A worker that dies (out of memory, killed) fails the one run it held; a new
    worker takes the next task, and the other runs go on.

    Not concurrent.futures.ProcessPoolExecutor: there one dead worker breaks the whole pool and fails every run
    it held, and CPython 3.11's pool can hang for good when a worker dies while another is being started (the
    dying pool terminates only the workers it knows of, then waits for all of them). With a pipe per worker,
    the parent holds only its own end, so a worker's death reaches it as the end of that pipe and nothing else
    is shared that a dead worker could leave locked or half-written.
    """

    name = "local"

    def __init__(self, workers: int = 1, threads: int | None = None):
        self.workers = max(1, workers)
        self.threads = threads  # torch threads per run; None: the cores split between the workers

    def map(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")
        queue = deque(tasks)
        idle: list[_Worker] = []
        busy: dict[_Worker, Task] = {}
        try:
            while queue or busy:
                while queue and len(busy) < self.workers:
                    while idle and not idle[-1].process.is_alive():  # died between runs: replace it
                        idle.pop().stop()
                    worker = idle.pop() if idle else _Worker(ctx)
                    task = queue.popleft()
                    busy[worker] = task
                    worker.send(task)  # a worker already dead shows up below, as the end of its pipe
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker in [w for w in busy if w.conn in ready or w.process.sentinel in ready]:
                    task = busy.pop(worker)
                    outcome = _receive(worker.conn)
                    if outcome is None or worker.process.sentinel in ready:
                        worker.stop()
                    else:
                        idle.append(worker)
                    yield outcome or Outcome(task, error="worker process died (killed or out of memory)")
        finally:  # also when the caller stops early or is interrupted: no worker outlives the sweep
            # Signal every worker before waiting for any, so that a second Ctrl-C during the waits cannot leave
            # a busy one training (multiprocessing would then wait for it at exit).
            for worker in busy:
                worker.process.terminate()  # its run is abandoned; its checkpoint lets a later sweep resume it
            for worker in idle:
                worker.send(None)
            for worker in [*busy, *idle]:
                worker.stop()


class _Worker:
    """One spawned worker process and the parent's end of its pipe."""

    def __init__(self, ctx):
        self.conn, child_end = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child_end,), name="classaudit-worker")
        self.process.start()
        child_end.close()  # the worker now holds the only other end: its death is an end of file here

    def send(self, task: Task | None) -> None:
        try:
            self.conn.send(task)
        except OSError:  # dead already; _receive will say so
            pass

    def stop(self) -> None:
        """Wait for it to end (dead, terminated, or sent None), killing it if it has not within 10 s."""
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _receive(conn) -> Outcome | None:
    """What a worker sent on `conn`, or None if it died before or while sending it (end of file)."""
    try:
        if conn.poll():
            return conn.recv()
    except (EOFError, OSError):  # OSError: "got end of file during message", a half-sent outcome
        pass
    return None


def _exit_with_parent(parent: int) -> None:
    """A worker whose sweep was killed outright (SIGKILL, a crash) stops within a second instead of training
    its run to the end for nobody: the orphan is adopted by another process, so its parent id changes."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _serve(conn) -> None:
    """A worker process: runs each task it is sent, sends back the outcome, until it is sent None.
    Ctrl-C reaches the whole process group; the parent alone handles it (and stops its workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    while True:
        try:
            task = conn.recv()
        except EOFError:  # the parent is gone
            return
        if task is None:
            return
        outcome = _guarded(task)
        try:
            conn.send(outcome)
        except (pickle.PicklingError, TypeError, AttributeError) as e:  # nothing was written: say why instead
            conn.send(Outcome(task, error=f"the run's result could not be sent back: {type(e).__name__}: {e}"))


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


# The options only cluster executors take: the command-line option that sets each, and which executors.
CLUSTER_OPTIONS = {"address": ("--address", "ray"), "gpus_per_run": ("--gpus-per-run", "ray or slurm"),
                   "partition": ("--partition", "slurm"), "time_limit": ("--time-limit", "slurm"),
                   "folder": ("--slurm-folder", "slurm"), "cluster": ("cluster", "slurm")}


def check_executor(name: str, **options: Any) -> None:
    """Raise one UsageError listing every problem with executor `name` and its options (None = not given),
    starting nothing: called before any data is loaded, and by a dry run."""
    given = {k: v for k, v in options.items() if v is not None}
    if name in ("local", "inprocess"):
        problems = [f"option {CLUSTER_OPTIONS[k][0]}: only for --executor {CLUSTER_OPTIONS[k][1]}; leave it out "
                    f"with --executor {name}" for k in given if k in CLUSTER_OPTIONS]
        cpus = given.get("cpus_per_run")
        if cpus is not None and (cpus != int(cpus) or cpus < 1):
            problems.append(f"option --cpus-per-run: value {cpus:g} is not a whole number >= 1; with --executor "
                            f"{name} it is each run's torch thread count")
        if problems:
            raise UsageError("\n".join(problems))
    elif name in ("ray", "slurm"):
        from classaudit import cluster

        cluster.check(name, **given)
    else:
        raise UsageError(f"option --executor: value \"{name}\" is not known; allowed: {', '.join(EXECUTORS)}")


def make_executor(name: str, *, workers: int = 1, **options: Any):
    """The executor called `name`, after check_executor. Local and in-process runs use --cpus-per-run threads
    each when it is given, so that a run gives the same bits as on a cluster with the same --cpus-per-run."""
    check_executor(name, **options)
    given = {k: v for k, v in options.items() if v is not None}
    threads = int(given["cpus_per_run"]) if "cpus_per_run" in given else None
    if name == "inprocess":
        return InProcessExecutor(threads)
    if name == "local":
        return LocalExecutor(workers, threads)
    from classaudit import cluster

    return cluster.make(name, workers=workers, **given)
