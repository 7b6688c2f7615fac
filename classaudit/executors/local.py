"""The local executor: a pool of worker processes on this machine, threads split between them (the default),
optionally several runs sharing each device (`runs_per_device`)."""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator

from classaudit.executors.base import (Executor, Outcome, Task, run_task, runs_per_device_problems,
                                      thread_count_problems, threads_per_worker)


class LocalExecutor(Executor):
    """Worker processes on this machine, each with a pipe of its own, started with 'spawn' (a forked torch can
    deadlock on its thread pools). A worker that dies (out of memory, killed) fails the one run it held; a new
    worker takes the next task, and the other runs go on.

    Not concurrent.futures.ProcessPoolExecutor: there one dead worker breaks the whole pool and fails every run
    it held, and CPython 3.11's pool can hang for good when a worker dies while another is being started (the
    dying pool terminates only the workers it knows of, then waits for all of them). With a pipe per worker,
    the parent holds only its own end, so a worker's death reaches it as the end of that pipe and nothing else
    is shared that a dead worker could leave locked or half-written.

    With `runs_per_device` N, each worker is bound to one device and N workers share each: every CUDA device
    the runs may use (all visible ones when the tasks leave the device to be chosen), or the CPU, whose cores
    are then split between the N workers. `workers`, when given, caps the runs in flight below N per device.
    A run's result does not depend on which worker, or how many beside it, trained it.
    """

    name = "local"

    def __init__(self, workers: int | None = 1, threads: int | None = None, runs_per_device: int | None = None):
        self.workers = None if workers is None else max(1, workers)
        self.threads = threads  # torch threads per run; None: the cores split between the workers
        self.runs_per_device = runs_per_device

    def map(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")
        queue = deque(tasks)
        devices: list[str | None] = [None]  # None: each task keeps its own device
        limit = self.workers or 1
        if self.runs_per_device is not None and queue:
            devices = run_devices(queue[0].device)
            limit = min(self.workers or len(devices) * self.runs_per_device, len(devices) * self.runs_per_device)
        threads = self.threads or threads_per_worker(limit)
        idle: list[_Worker] = []
        busy: dict[_Worker, Task] = {}
        try:
            while queue or busy:
                while queue and len(busy) < limit:
                    while idle and not idle[-1].process.is_alive():  # died between runs: replace it
                        idle.pop().stop()
                    if idle:
                        worker = idle.pop()
                    else:  # a new worker goes to the device with the fewest: at most N on each
                        live = [w.device for w in busy]
                        worker = _Worker(ctx, min(devices, key=live.count))
                    task = queue.popleft()
                    busy[worker] = task
                    if self.runs_per_device is not None:
                        task = dataclasses.replace(task, device=worker.device, threads=threads)
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

    def __init__(self, ctx, device: str | None = None):
        self.device = device  # the device its runs train on (None: each task's own)
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
        outcome = run_task(task)
        try:
            conn.send(outcome)
        except (pickle.PicklingError, TypeError, AttributeError) as e:  # nothing was written: say why instead
            conn.send(Outcome(task, error=f"the run's result could not be sent back: {type(e).__name__}: {e}"))


def run_devices(device: str | None) -> list[str]:
    """The devices N runs each share for a sweep on `device` (None or "auto": every visible CUDA device, else the
    CPU; a named device: that one alone)."""
    if device not in (None, "auto"):
        return [device]
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def check(*, cpus_per_run: float | None = None, runs_per_device: int | None = None) -> list[str]:
    return thread_count_problems(LocalExecutor.name, cpus_per_run) + runs_per_device_problems(runs_per_device)


def make(*, workers: int | None, cpus_per_run: float | None = None,
         runs_per_device: int | None = None) -> LocalExecutor:
    """--cpus-per-run threads per run when given (else the cores split between the workers), so that a run gives
    the same bits as on a cluster with the same --cpus-per-run. With --runs-per-device N, N workers per device
    (`workers`, when given, caps them); else `workers` workers (1 when not given)."""
    if runs_per_device is None:
        workers = workers or 1
    return LocalExecutor(workers, None if cpus_per_run is None else int(cpus_per_run), runs_per_device)
