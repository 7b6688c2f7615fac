"""The Ray executor: each run a Ray core task on a cluster, at most `workers` in flight (pip install
'classaudit[ray]').

    make(workers=8, address="auto", gpus_per_run=0.5)

`address`: None starts (or joins) Ray on this machine, "auto" joins the cluster this machine belongs to,
"host:port" or "ray://host:10001" a given one; a Ray already initialised in this process (a notebook) is used
as it is. Fractional GPUs allowed: `runs_per_device` N reserves 1/N of a GPU per run, so that N runs share
each GPU (Ray schedules them; a cluster without GPUs never starts them).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterable, Iterator

from classaudit.errors import UsageError
from classaudit.executors.base import (Executor, Outcome, Task, for_worker, negative_resources, require,
                                      run_task, runs_per_device_problems)

# Compared exactly by the tests.
BOTH_GPU_OPTIONS = ("option --runs-per-device: value {runs} sets each run's share of a GPU (1/{runs}); leave out "
                    "--gpus-per-run")


def check(*, address: str | None = None, cpus_per_run: float | None = None, gpus_per_run: float | None = None,
          runs_per_device: int | None = None) -> list[str]:
    """The problems with Ray's options; connects to nothing, so a dry run can check."""
    problems = negative_resources(cpus_per_run, gpus_per_run) + runs_per_device_problems(runs_per_device)
    if runs_per_device is not None and gpus_per_run is not None and not problems:
        problems.append(BOTH_GPU_OPTIONS.format(runs=runs_per_device))
    return problems


def make(*, workers: int | None, address: str | None = None, cpus_per_run: float | None = None,
         gpus_per_run: float | None = None, runs_per_device: int | None = None) -> RayExecutor:
    """Connects to Ray now, so that a wrong address is an error before the sweep writes anything. `workers` None:
    as many runs in flight as Ray's resources admit (with runs_per_device), else one."""
    if runs_per_device is not None:
        gpus_per_run = 1 / runs_per_device
    executor = RayExecutor(workers=workers if workers is not None or runs_per_device is not None else 1,
                           address=address, cpus_per_run=1.0 if cpus_per_run is None else float(cpus_per_run),
                           gpus_per_run=0.0 if gpus_per_run is None else float(gpus_per_run))
    executor.connect()
    return executor


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, *, workers: int | None, address: str | None = None, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0):
        require("ray", "Ray", "ray")
        self.workers = None if workers is None else max(1, workers)  # None: no cap beside Ray's resources
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.threads = max(1, math.floor(cpus_per_run))
        self._owns_connection = False

    def connect(self) -> None:
        """Initialise Ray in this process unless it already is. `make` calls this, so a wrong address is an
        error before the sweep writes anything; `map` calls it again after it shut down its last connection."""
        import logging

        import ray

        if ray.is_initialized():
            return
        _check_reachable(self.address)
        try:
            ray.init(address=self.address, logging_level=logging.WARNING)
        except (ConnectionError, ValueError) as e:
            where = f"at {self.address}" if self.address else "on this machine"
            if _wants_token(e):
                fix = ("the cluster wants its token: set RAY_AUTH_MODE=token, with the token in ~/.ray/auth_token or "
                       "RAY_AUTH_TOKEN")
            else:
                fix = "start one with `ray start --head`, or check --address"
            raise UsageError(f"--executor ray: cannot connect to a Ray cluster {where} ({_first_line(e)}); {fix}") \
                from None
        self._owns_connection = True

    def map(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        import ray

        queue = [for_worker(t, self.threads) for t in tasks]
        if not queue:
            return
        self.connect()
        # max_retries=0: a run whose worker died is reported, and the sweep's --retries decides what happens next,
        # the same as on every other executor (Ray would otherwise silently re-run it up to 3 times).
        remote = ray.remote(run_task).options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                                              max_retries=0)
        in_flight: dict = {}
        queue.reverse()
        try:
            while queue or in_flight:
                while queue and (self.workers is None or len(in_flight) < self.workers):
                    task = queue.pop()
                    in_flight[remote.remote(task)] = task
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    task = in_flight.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as e:
                        yield _ray_failure(task, e)
        finally:
            for ref in in_flight:  # the sweep stopped early (Ctrl-C): nobody would store these results
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # cancelling is best effort; a run that finished meanwhile is just dropped
                    pass
            if self._owns_connection:  # a Ray we started (or joined) goes with us; one we found stays
                ray.shutdown()
                self._owns_connection = False


def _wants_token(e: BaseException) -> bool:
    """Whether connecting failed on Ray's token authentication (Ray reports it as text in a chained error)."""
    while e is not None:
        if "AuthenticationError" in str(e) or "InvalidAuthToken" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _check_reachable(address: str | None) -> None:
    """Refuse an address nobody answers at: ray.init would retry connecting to it for ever."""
    if address is not None and address.startswith("ray://"):
        return  # Ray Client gives up by itself
    try:  # how ray.init reads None and "auto" (RAY_ADDRESS, then the last `ray start` on this machine)
        from ray._private.services import canonicalize_bootstrap_address

        resolved = canonicalize_bootstrap_address(address)
    except Exception:  # nothing found, or a private API that moved: ray.init reports it
        return
    if resolved is None:
        return  # ray.init starts a new Ray on this machine
    host, _, port = resolved.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except (OSError, ValueError) as e:
        given = f" (from --address {address})" if address and address != resolved else ""
        raise UsageError(f"--executor ray: no Ray cluster answers at {resolved}{given}: "
                         f"{getattr(e, 'strerror', None) or e}; start one with `ray start --head`, or check "
                         "--address") from None


def _ray_failure(task: Task, e: Exception) -> Outcome:
    from ray import exceptions as rex

    if isinstance(e, rex.OutOfMemoryError):
        error = "Ray killed the worker because its node ran out of memory"
    elif isinstance(e, rex.WorkerCrashedError):
        error = "the Ray worker process died while training this run (killed, out of memory, or crashed)"
    elif isinstance(e, (rex.NodeDiedError, rex.LocalRayletDiedError)):
        error = "the Ray node running this run died"
    elif isinstance(e, rex.TaskCancelledError):
        error = "the Ray task was cancelled"
    elif isinstance(e, rex.RayTaskError) and e.cause is not None:
        error = f"{type(e.cause).__name__}: {_first_line(e.cause)} (in the Ray worker)"
    else:
        error = f"{type(e).__name__}: {_first_line(e)}"
    return Outcome(task, error=error, traceback=str(e))


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")
