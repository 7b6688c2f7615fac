"""The local executor: a pool of worker processes on this machine, threads split between them (the default)."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator

from classaudit.executors.base import Executor, Outcome, Task, run_task, thread_count_problems


class LocalExecutor(Executor):
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
        outcome = run_task(task)
        try:
            conn.send(outcome)
        except (pickle.PicklingError, TypeError, AttributeError) as e:  # nothing was written: say why instead
            conn.send(Outcome(task, error=f"the run's result could not be sent back: {type(e).__name__}: {e}"))


def check(*, cpus_per_run: float | None = None) -> list[str]:
    return thread_count_problems(LocalExecutor.name, cpus_per_run)


def make(*, workers: int, cpus_per_run: float | None = None) -> LocalExecutor:
    """--cpus-per-run threads per run when given (else the cores split between the workers), so that a run gives
    the same bits as on a cluster with the same --cpus-per-run."""
    return LocalExecutor(workers, None if cpus_per_run is None else int(cpus_per_run))
