"""The Slurm executor: one job per run, in job arrays submitted through submitit (pip install 'classaudit[slurm]').

    make(workers=8, partition="gpu", gpus_per_run=1, time_limit=120, folder=Path("jobs"))

Runs go into job arrays of at most the cluster's MaxArraySize runs (`scontrol show config`; Slurm refuses a
larger array). Slurm keeps `workers` jobs of an array running (slurm_array_parallelism), and the next array is
submitted when the previous one has ended, so that no more than `workers` run at once. `time_limit` in minutes
per run (default 60); submitit's scripts, logs and pickles go to `folder`. `cluster="local"` runs the same jobs
as local processes through submitit, `cluster="debug"` in this process, one after another: to try a sweep
without Slurm (also settable with CLASSAUDIT_SLURM_CLUSTER).

When a job has ended comes from its result file and from squeue, which asks the controller; not from sacct,
which needs Slurm's accounting database, and many small clusters run without one. A job squeue lists in a
final state (or no longer lists) and whose result file has not appeared is a run that failed: killed, out of
memory, past its time limit, or cancelled.

The job runs the driver's Python (`sys.executable`) in the driver's working directory with the driver's
environment (sbatch's default), so classaudit must be installed at the same path on every node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from classaudit.executors.base import (Executor, Outcome, Task, for_worker, negative_resources, require,
                                      run_task)

SLURM_CLUSTERS = ("slurm", "local", "debug")
CLUSTER_ENV = "CLASSAUDIT_SLURM_CLUSTER"
DEFAULT_TIME_LIMIT = 60  # minutes per run; submitit's own default (5) is too short for training
DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default MaxArraySize, used when scontrol does not say
POLL_SECONDS = 5.0  # between looks at the result files and squeue: one squeue call per look, for all jobs
# The states in which a job stays listed once it has ended (squeue --states=all, until MinJobAge has passed).
# PREEMPTED is not final: a preempted job is normally requeued.
FINAL_STATES = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                          "OUT_OF_MEMORY", "TIMEOUT"})


def check(*, cpus_per_run: float | None = None, gpus_per_run: float | None = None, partition: str | None = None,
          time_limit: int | None = None, folder: Path | None = None, cluster: str | None = None) -> list[str]:
    """The problems with Slurm's options; submits nothing, so a dry run can check."""
    problems = negative_resources(cpus_per_run, gpus_per_run)
    cluster = cluster or os.environ.get(CLUSTER_ENV) or "slurm"
    cpus = 1.0 if cpus_per_run is None else float(cpus_per_run)
    gpus = 0.0 if gpus_per_run is None else float(gpus_per_run)
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
    return problems


def make(*, workers: int, cpus_per_run: float | None = None, gpus_per_run: float | None = None,
         partition: str | None = None, time_limit: int | None = None, folder: Path | None = None,
         cluster: str | None = None) -> SlurmExecutor:
    return SlurmExecutor(workers=workers, cpus_per_run=1 if cpus_per_run is None else int(cpus_per_run),
                         gpus_per_run=0 if gpus_per_run is None else int(gpus_per_run), partition=partition,
                         time_limit=time_limit or DEFAULT_TIME_LIMIT,
                         folder=Path(folder) if folder is not None else Path("slurm-jobs"),
                         cluster=cluster or os.environ.get(CLUSTER_ENV) or "slurm")


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, *, workers: int, cpus_per_run: int = 1, gpus_per_run: int = 0, partition: str | None = None,
                 time_limit: int = DEFAULT_TIME_LIMIT, folder: Path = Path("slurm-jobs"), cluster: str = "slurm"):
        require("submitit", "submitit", "slurm")
        self.workers = max(1, workers)
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.partition = partition
        self.time_limit = time_limit
        self.folder = folder
        self.cluster = cluster
        self.threads = max(1, cpus_per_run)

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
        queue = [for_worker(t, self.threads) for t in tasks]
        if not queue:
            return
        ex = self._executor()
        watch = _SlurmQueue() if self.cluster == "slurm" else None
        array_size = max_array_size() if watch else 0
        running: list = []  # (job, task)
        try:
            while queue or running:
                # On Slurm the scheduler keeps `workers` of an array running, so an array goes in once the one
                # before it has ended. submitit's local and debug clusters have no such limit: there we hand over
                # `workers` runs at a time.
                free = (0 if running else array_size) if watch else self.workers - len(running)
                if queue and free > 0:
                    batch, queue = queue[:free], queue[free:]
                    running += zip(ex.map_array(run_task, batch), batch)
                if watch:
                    ended = watch.ended([job for job, _ in running])
                else:
                    ended = {job.job_id: None for job, _ in running if job.done()}
                if not ended:
                    time.sleep(POLL_SECONDS if watch else 0.1)
                    continue
                for pair in [(job, task) for job, task in running if job.job_id in ended]:
                    running.remove(pair)
                    yield _job_outcome(*pair, ended[pair[0].job_id])
        finally:  # the sweep stopped early (Ctrl-C): nobody would store these results
            _cancel([job for job, _ in running], on_slurm=watch is not None)


def _cancel(jobs: list, on_slurm: bool) -> None:
    """Cancel `jobs`, best effort (the time limit ends them anyway): on Slurm with one scancel of their arrays,
    however many runs they hold."""
    if on_slurm and jobs:
        try:
            subprocess.run(["scancel", *sorted({job.job_id.split("_")[0] for job in jobs})], capture_output=True,
                           timeout=60)
        except (OSError, subprocess.SubprocessError):
            pass
        return
    for job in jobs:
        try:
            job.cancel(check=False)
        except Exception:
            pass


def max_array_size() -> int:
    """The cluster's MaxArraySize (the most runs one job array may hold), or Slurm's default when scontrol
    cannot say. A cluster that allows no arrays (0) gets one run at a time, each a job of its own."""
    try:
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return DEFAULT_MAX_ARRAY_SIZE
    for line in config.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "MaxArraySize" and value.strip().isdigit():
            return max(1, int(value))
    return DEFAULT_MAX_ARRAY_SIZE


class _SlurmQueue:
    """Which of a sweep's Slurm jobs have ended: their result files, and one squeue call for the rest."""

    def __init__(self):
        self.ended_once: set[str] = set()  # seen ended without a result file on the last look

    def ended(self, jobs: list) -> dict[str, str | None]:
        """Job id -> None for each job whose result file exists, or Slurm's word for how it ended for a job that
        ended without one. The latter must be seen so on two looks in a row: a result file written just before
        its job ended may take a moment to appear on a shared file system."""
        out: dict[str, str | None] = {job.job_id: None for job in jobs if job.paths.result_pickle.exists()}
        rest = [job.job_id for job in jobs if job.job_id not in out]
        states = _squeue(rest) if rest else None
        if states is None:  # squeue failed this time: nothing is known to have ended
            return out
        for job_id in rest:
            state = states.get(job_id)
            if state is not None and state not in FINAL_STATES:  # pending, running, completing, requeued...
                self.ended_once.discard(job_id)
            elif job_id in self.ended_once:
                out[job_id] = state or "no longer listed by squeue"
            else:
                self.ended_once.add(job_id)
        return out


def _squeue(job_ids: list[str]) -> dict[str, str] | None:
    """The state of each job squeue lists among `job_ids` ("123_4" for an array's element), or None when
    squeue failed. A job is listed from submission until MinJobAge (5 minutes by default) after it ended."""
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    command = ["squeue", "--noheader", "--array", "--states=all", "--format=%i %T", f"--jobs={','.join(arrays)}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        # squeue refuses a single job id it no longer knows: that job has ended and been forgotten.
        return {} if "Invalid job id" in done.stderr else None
    return dict(line.split(None, 1) for line in done.stdout.splitlines() if len(line.split()) == 2)


def _job_outcome(job, task: Task, slurm_state: str | None) -> Outcome:
    """The Outcome `run_task` returned in the job, or a failed one when the job ended without a result.
    `slurm_state`: how Slurm says a job ended that left no result file (None: ask submitit for the result)."""
    stderr = getattr(getattr(job, "paths", None), "stderr", None)
    see = f"; its log: {stderr}" if stderr is not None else ""
    if slurm_state is None:
        from submitit.core.utils import FailedJobError

        try:
            return job.result()
        except FailedJobError as e:  # the job's Python failed before or after the run (run_task catches the run's)
            return Outcome(task, error=f"job {job.job_id} failed outside the run: {_last_trace_line(str(e))}{see}",
                           traceback=str(e))
        except Exception as e:  # the job itself died
            detail = str(e)
    else:
        detail = f"Slurm: {slurm_state}"
    return Outcome(task, error=f"job {job.job_id} ended without a result (killed, out of memory, or past its time "
                               f"limit){see}", traceback=detail)


def _last_trace_line(message: str) -> str:
    """The exception line of the traceback submitit's FailedJobError quotes between two rules of dashes."""
    parts = message.split("----------------------\n")
    lines = [line for line in (parts[1] if len(parts) > 2 else message).splitlines() if line.strip()]
    return lines[-1].strip() if lines else message
