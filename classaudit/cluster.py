"""Cluster executors: run a sweep's tasks as Ray core tasks or as a Slurm job array (submitit).

Results flow back to the driver. A worker trains one run and *returns* its RunResult; the sweep process (the
driver) is the single writer of results, and writes each run atomically under the folder's lock as its outcome
arrives. So resume, damaged-record detection and `classaudit status` work the same with every executor, and a
worker killed mid-run leaves no half-written result behind. What travels back is a pickled Outcome: a
RunResult holds numpy arrays, lists and dicts only (no torch tensors, nothing device-bound), a few hundred
kilobytes for CIFAR-sized test sets. The one file a worker writes is its run's checkpoint
(<results>/checkpoints/<run_id>.pt, an absolute path here), so a run continues mid-way after a kill or a
pre-emption when the results folder is on a file system the nodes share; elsewhere only whole runs resume.

Both executors follow LocalExecutor's contract: `map(tasks)` yields one Outcome per task in completion order,
and a run that fails, in Python or by its worker dying (killed, out of memory, time limit), becomes an
Outcome with an error, never the end of the sweep; the next sweep trains it again.

Threads: a run sets torch's thread count to the whole CPUs it reserved (`cpus_per_run`, default 1). The
thread count changes how float sums are split, hence the last bits of the results: the same run with the same
thread count gives bit-identical results on every executor.

    ray     make("ray", workers=8, address="auto", gpus_per_run=0.5)
            Ray core tasks, at most `workers` in flight. `address`: None starts (or joins) Ray on this machine,
            "auto" joins the cluster this machine belongs to, "host:port" or "ray://host:10001" a given one;
            a Ray already initialised in this process (a notebook) is used as it is. Fractional GPUs allowed.
    slurm   make("slurm", workers=8, partition="gpu", gpus_per_run=1, time_limit=120, folder=Path("jobs"))
            one Slurm job array (submitit), at most `workers` jobs running at once; `time_limit` in minutes
            per run (default 60); submitit's scripts, logs and pickles go to `folder`. `cluster="local"`
            runs the same jobs as local processes through submitit, `cluster="debug"` in this process, one
            after another: to try a sweep without Slurm (also settable with CLASSAUDIT_SLURM_CLUSTER).

Classaudit must be installed on every node, and the data must be readable where the runs execute (a shared
--data-dir, or the built-in `shapes` data that needs none).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from classaudit.errors import UsageError
from classaudit.executors import Outcome, Task, _guarded

SLURM_CLUSTERS = ("slurm", "local", "debug")
CLUSTER_ENV = "CLASSAUDIT_SLURM_CLUSTER"
DEFAULT_TIME_LIMIT = 60  # minutes per run; submitit's own default (5) is too short for training


def make(name: str, *, workers: int, address: str | None = None, cpus_per_run: float | None = None,
         gpus_per_run: float | None = None, partition: str | None = None, time_limit: int | None = None,
         folder: Path | None = None, cluster: str | None = None):
    """The executor called `name` ("ray" or "slurm"). Checks every option first (see `check`), before anything
    starts or is written."""
    check(name, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run, partition=partition,
          time_limit=time_limit, folder=folder, cluster=cluster)
    cpus = 1.0 if cpus_per_run is None else float(cpus_per_run)
    gpus = 0.0 if gpus_per_run is None else float(gpus_per_run)
    if name == "ray":
        executor = RayExecutor(workers=workers, address=address, cpus_per_run=cpus, gpus_per_run=gpus)
        executor.connect()
        return executor
    return SlurmExecutor(workers=workers, cpus_per_run=int(cpus), gpus_per_run=int(gpus), partition=partition,
                         time_limit=time_limit or DEFAULT_TIME_LIMIT,
                         folder=Path(folder) if folder is not None else Path("slurm-jobs"),
                         cluster=cluster or os.environ.get(CLUSTER_ENV) or "slurm")


def check(name: str, *, address: str | None = None, cpus_per_run: float | None = None,
          gpus_per_run: float | None = None, partition: str | None = None, time_limit: int | None = None,
          folder: Path | None = None, cluster: str | None = None) -> None:
    """Raise one UsageError listing every problem with the options of cluster executor `name`; connects to
    nothing, so a dry run and the sweep itself can check before any data is loaded."""
    if name not in ("ray", "slurm"):
        raise UsageError(f"option --executor: value \"{name}\" is not a cluster executor; allowed: ray, slurm")
    problems = []
    cpus = 1.0 if cpus_per_run is None else float(cpus_per_run)
    gpus = 0.0 if gpus_per_run is None else float(gpus_per_run)
    if cpus < 0:
        problems.append(f"option --cpus-per-run: value {cpus_per_run} is negative; give a CPU count >= 0")
    if gpus < 0:
        problems.append(f"option --gpus-per-run: value {gpus_per_run} is negative; give a GPU count >= 0")
    if name == "ray":
        given = [opt for opt, v in (("--partition", partition), ("--time-limit", time_limit), ("cluster", cluster),
                                    ("--slurm-folder", folder)) if v is not None]
        if given:
            problems.append(f"option {', '.join(given)}: only for --executor slurm; leave it out with --executor ray")
        _raise(problems)
        return
    cluster = cluster or os.environ.get(CLUSTER_ENV) or "slurm"
    if address is not None:
        problems.append("option --address: only for --executor ray; leave it out with --executor slurm")
    if cluster not in SLURM_CLUSTERS:
        problems.append(f"{CLUSTER_ENV}: value \"{cluster}\" is not known; allowed: {', '.join(SLURM_CLUSTERS)}")
    if cpus != int(cpus) or cpus < 1:
        problems.append(f"option --cpus-per-run: value {cpus_per_run:g} is not a whole number >= 1; Slurm "
                        "allocates whole CPUs")
    if gpus != int(gpus):
        problems.append(f"option --gpus-per-run: value {gpus_per_run:g} is not a whole number; Slurm cannot "
                        "share a GPU between jobs (--executor ray can)")
    if time_limit is not None and time_limit < 1:
        problems.append(f"option --time-limit: value {time_limit} is below 1; give minutes per run")
    if cluster == "slurm" and not problems and shutil.which("sbatch") is None:
        problems.append("--executor slurm: Slurm's sbatch is not on PATH here; run the sweep on a Slurm login "
                        f"node, or set {CLUSTER_ENV}=local to run the same jobs as local processes")
    _raise(problems)


def _raise(problems: list[str]) -> None:
    if problems:
        raise UsageError("\n".join(problems))


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _for_worker(task: Task, threads: int) -> Task:
    """The task as a worker elsewhere needs it: its thread count, and paths that do not depend on its cwd."""
    return dataclasses.replace(task, threads=threads, data_dir=_absolute(task.data_dir),
                               checkpoint_dir=_absolute(task.checkpoint_dir))


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(os.path.expanduser(path))


def run_task(task: Task) -> Outcome:
    """What a Ray worker runs (its process title reads `ray::run_task` meanwhile)."""
    return _guarded(task)


# ----------------------------------------------------------------------------------------------------------
# Ray


class RayExecutor:
    name = "ray"

    def __init__(self, *, workers: int, address: str | None = None, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--executor ray needs Ray: pip install 'classaudit[ray]'") from None
        self.workers = max(1, workers)
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

        queue = [_for_worker(t, self.threads) for t in tasks]
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
                while queue and len(in_flight) < self.workers:
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


# ----------------------------------------------------------------------------------------------------------
# Slurm (submitit)


class SlurmExecutor:
    name = "slurm"

    def __init__(self, *, workers: int, cpus_per_run: int = 1, gpus_per_run: int = 0, partition: str | None = None,
                 time_limit: int = DEFAULT_TIME_LIMIT, folder: Path = Path("slurm-jobs"), cluster: str = "slurm"):
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise UsageError("--executor slurm needs submitit: pip install 'classaudit[slurm]'") from None
        self.workers = max(1, workers)
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.partition = partition
        self.time_limit = time_limit
        self.folder = folder
        self.cluster = cluster
        self.threads = max(1, cpus_per_run)
        # Slurm's state comes from sacct, which submitit rate-limits itself; local jobs are processes to poll.
        self.poll_seconds = 5.0 if cluster == "slurm" else 0.1

    def _executor(self):
        import submitit

        ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        params = dict(name="classaudit", timeout_min=self.time_limit, nodes=1, tasks_per_node=1,
                      cpus_per_task=self.cpus_per_run, gpus_per_node=self.gpus_per_run,
                      slurm_array_parallelism=self.workers)
        if self.partition is not None:
            params["slurm_partition"] = self.partition
        ex.update_parameters(**params)
        return ex

    def map(self, tasks: Iterable[Task]) -> Iterator[Outcome]:
        queue = [_for_worker(t, self.threads) for t in tasks]
        if not queue:
            return
        ex = self._executor()
        # On Slurm every run goes into one job array and the scheduler keeps `workers` of them running
        # (slurm_array_parallelism). submitit's local and debug clusters have no such limit, so there we hand
        # over `workers` runs at a time.
        window = len(queue) if self.cluster == "slurm" else self.workers
        running: list = []  # (job, task)
        try:
            while queue or running:
                free = window - len(running)
                if queue and free > 0:
                    batch, queue = queue[:free], queue[free:]
                    running += zip(ex.map_array(_guarded, batch), batch)
                finished = [(job, task) for job, task in running if job.done()]
                if not finished:
                    time.sleep(self.poll_seconds)
                    continue
                for pair in finished:
                    running.remove(pair)
                    yield _job_outcome(*pair)
        finally:
            for job, _ in running:  # the sweep stopped early (Ctrl-C): nobody would store these results
                try:
                    job.cancel(check=False)
                except Exception:  # cancelling is best effort; the time limit ends the job anyway
                    pass


def _job_outcome(job, task: Task) -> Outcome:
    """The Outcome `_guarded` returned in the job, or a failed one when the job ended without a result."""
    try:
        return job.result()
    except Exception as e:  # _guarded catches every error of a run, so this is the job itself dying
        stderr = getattr(getattr(job, "paths", None), "stderr", None)
        see = f"; its log: {stderr}" if stderr is not None else ""
        return Outcome(task, error=f"job {job.job_id} ended without a result (killed, out of memory, or past its "
                                   f"time limit){see}", traceback=str(e))
