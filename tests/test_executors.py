"""The executors, end to end: a real Ray head on loopback and submitit's local jobs give results identical to
the in-process executor's; a run that raises in the worker and a worker killed mid-run are recorded as failures
while the sweep finishes the others, and the next sweep completes them. The option checks of the registry.
(Slurm itself, a real single-node cluster: test_slurm.py.)

Every comparison runs each run with one torch thread: the thread count changes the last bits of the float
sums (p_true differs by ~1e-7 between 1 and 2 threads), and identical means identical here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from classaudit.cli import cli
from classaudit.config import load_study
from classaudit.errors import UsageError
from classaudit.executors import EXECUTORS, Task, check_executor, make_executor
from classaudit.executors.base import for_worker
from classaudit.executors.slurm import CLUSTER_ENV
from classaudit.store import ResultsFolder
from classaudit.sweep import run_sweep
from tests.conftest import TINY_STUDY, BreakOne, assert_same_results, one_thread, own_study, sweep_cli

# Read by Ray when it is imported: keep every Ray address on loopback (Ray otherwise swaps 127.0.0.1 for the
# machine's outward address), and send no usage statistics.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

class KillFirst(threading.Thread):
    """Kills (SIGKILL) the first process whose command line satisfies `match(pid, cmdline)`, once."""

    def __init__(self, match, timeout: float = 120):
        super().__init__(daemon=True)
        self.match, self.deadline, self.killed = match, time.monotonic() + timeout, None
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            for pid, cmdline in _processes():
                if self.match(pid, cmdline):
                    os.kill(pid, signal.SIGKILL)
                    self.killed = pid
                    return
            time.sleep(0.02)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.join()


def _processes():
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    yield int(entry.name), f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()  # fields after the command name: state, ppid, pgrp, session
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    return dict(_processes()).get(pid, "")


def _children(pid: int) -> list[int]:
    return [p for p, _ in _processes() if _parent_of(p) == pid and (_stat(p) or ["Z"])[0] != "Z"]


def _session_of(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[3]) if fields else None


def _parent_of(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def _alive_in_session(sid: int) -> list[int]:
    return [pid for pid, _ in _processes() if _session_of(pid) == sid and (_stat(pid) or ["Z"])[0] != "Z"]


def _status_lines(runner, results):
    out = runner.invoke(cli, ["status", str(results)])
    assert out.exit_code == 0, out.output
    return out.output


# ----------------------------------------------------------------------------------------------------------
# Options and missing packages: no Ray, no submitit needed.


def test_missing_ray_is_one_line_and_writes_nothing(monkeypatch, runner, tiny_study, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    out = sweep_cli(runner, tiny_study, tmp_path / "r", "--executor", "ray")
    assert out.exit_code == 2
    assert out.output == "Error: --executor ray needs Ray: pip install 'classaudit[ray]'\n"
    assert not (tmp_path / "r").exists()


def test_missing_submitit_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(UsageError, match=r"^--executor slurm needs submitit: pip install 'classaudit\[slurm\]'$"):
        make_executor("slurm", workers=1, cluster="local")


def test_slurm_options_are_checked_together():
    with pytest.raises(UsageError) as e:
        make_executor("slurm", workers=1, address="auto", cpus_per_run=1.5, gpus_per_run=0.5, cluster="local")
    assert str(e.value).splitlines() == [
        "option --address: only for --executor ray; leave it out with --executor slurm",
        "option --cpus-per-run: value 1.5 is not a whole number >= 1; Slurm allocates whole CPUs",
        "option --gpus-per-run: value 0.5 is not a whole number; Slurm cannot share a GPU between jobs "
        "(--executor ray can)",
    ]


def test_ray_refuses_slurm_options():
    with pytest.raises(UsageError, match="^option --partition, --time-limit: only for --executor slurm"):
        make_executor("ray", workers=1, partition="gpu", time_limit=10)


def test_options_of_other_executors_are_one_line_per_set_of_executors_that_take_them():
    with pytest.raises(UsageError) as e:
        check_executor("local", partition="gpu", gpus_per_run=1, time_limit=5, cpus_per_run=0.5)
    assert str(e.value).splitlines() == [
        "option --gpus-per-run: only for --executor ray or slurm; leave it out with --executor local",
        "option --partition, --time-limit: only for --executor slurm; leave it out with --executor local",
        "option --cpus-per-run: value 0.5 is not a whole number >= 1; with --executor local it is each run's torch "
        "thread count",
    ]


def test_executor_names_are_the_registrys():
    sweep_options = {option.name: option for option in cli.commands["sweep"].params}
    assert tuple(sweep_options["executor"].type.choices) == EXECUTORS == ("local", "inprocess", "ray", "slurm")
    assert sweep_options["executor"].default == "local"
    with pytest.raises(UsageError, match='^option --executor: value "lokal" is not known; allowed: inprocess, '
                                         'local, ray, slurm$'):
        check_executor("lokal")


def test_the_registry_lists_the_options_each_backend_takes():
    import importlib
    import inspect

    from classaudit.executors.registry import BACKENDS, OPTIONS

    for backend in BACKENDS.values():
        module = importlib.import_module(backend.module)
        assert set(inspect.signature(module.check).parameters) == backend.options <= set(OPTIONS), backend.name
        assert set(inspect.signature(module.make).parameters) == backend.options | {"workers"}, backend.name


def test_checking_an_executor_imports_neither_ray_nor_submitit():
    code = ("import sys; from classaudit.executors import check_executor; check_executor('ray', address='auto'); "
            "check_executor('slurm', cluster='local'); print(sorted({'ray', 'submitit', 'torch'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "[]\n", done.stderr


def test_slurm_without_slurm_says_how_to_run_locally(monkeypatch, runner, tiny_study, tmp_path):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on it
    monkeypatch.delenv(CLUSTER_ENV, raising=False)
    out = sweep_cli(runner, tiny_study, tmp_path / "r", "--executor", "slurm")
    assert out.exit_code == 2
    assert "Slurm's sbatch is not on PATH here" in out.output and "CLASSAUDIT_SLURM_CLUSTER=local" in out.output
    assert not (tmp_path / "r").exists()
    monkeypatch.setenv(CLUSTER_ENV, "cloud")
    with pytest.raises(UsageError, match='CLASSAUDIT_SLURM_CLUSTER: value "cloud" is not known; allowed: slurm, '
                                         'local, debug'):
        make_executor("slurm", workers=1)


def fake_command(folder: Path, name: str, stdout: str = "", stderr: str = "", status: int = 0) -> None:
    """An executable `name` in `folder` that prints the given text and exits with `status`."""
    script = folder / name
    script.write_text(f"#!/bin/sh\nprintf '%s' '{stdout}'\nprintf '%s' '{stderr}' >&2\nexit {status}\n")
    script.chmod(0o755)


@dataclasses.dataclass
class FakeJob:
    job_id: str
    paths: object


def test_slurm_job_ends_by_its_result_file_or_by_squeue(monkeypatch, tmp_path):
    """How the Slurm executor tells that a job ended, with squeue replaced by a script: a result file ends it at
    once; a final state or a job squeue no longer knows ends it only on the second look in a row; a failing
    squeue ends nothing."""
    from classaudit.executors.slurm import _SlurmQueue

    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    result = tmp_path / "result.pkl"
    result.write_bytes(b"")
    jobs = [FakeJob(f"7_{i}", dataclasses.make_dataclass("P", ["result_pickle"])(tmp_path / f"none{i}"))
            for i in range(4)] + [FakeJob("7_4", dataclasses.make_dataclass("P", ["result_pickle"])(result))]
    watch = _SlurmQueue()
    fake_command(tmp_path, "squeue", "7_0 RUNNING\n7_1 CANCELLED\n7_2 PREEMPTED\n")  # 7_3: no longer listed
    assert watch.ended(jobs) == {"7_4": None}
    assert watch.ended(jobs) == {"7_4": None, "7_1": "CANCELLED", "7_3": "no longer listed by squeue"}
    fake_command(tmp_path, "squeue", stderr="slurm_load_jobs error: Invalid job id specified", status=1)
    assert set(watch.ended(jobs)) == {"7_1", "7_3", "7_4"}  # 7_0 and 7_2 were running on the look before
    assert watch.ended(jobs[:3]) == {"7_0": "no longer listed by squeue", "7_1": "no longer listed by squeue",
                                     "7_2": "no longer listed by squeue"}
    fake_command(tmp_path, "squeue", stderr="slurm_load_jobs error: Unable to contact slurm controller", status=1)
    again = _SlurmQueue()
    assert again.ended(jobs) == again.ended(jobs) == {"7_4": None}


def test_slurm_array_size_is_the_clusters(monkeypatch, tmp_path):
    from classaudit.executors.slurm import DEFAULT_MAX_ARRAY_SIZE, max_array_size

    monkeypatch.setenv("PATH", str(tmp_path))
    assert max_array_size() == DEFAULT_MAX_ARRAY_SIZE == 1001  # no scontrol here
    fake_command(tmp_path, "scontrol", "MailProg                = /bin/mail\nMaxArraySize            = 40\n")
    assert max_array_size() == 40
    fake_command(tmp_path, "scontrol", "MaxArraySize            = 0\n")
    assert max_array_size() == 1  # no arrays: one run per job


def test_workers_get_absolute_paths_and_the_reserved_cpus_as_threads(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # relative paths mean nothing in a worker elsewhere, with another cwd
    task = Task("r", "label", {}, data_dir="data", threads=None, checkpoint_dir="results/checkpoints")
    sent = for_worker(task, 3)
    assert (sent.data_dir, sent.checkpoint_dir, sent.threads) == (
        str(tmp_path / "data"), str(tmp_path / "results" / "checkpoints"), 3)
    assert for_worker(dataclasses.replace(task, data_dir=None), 1).data_dir is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_address_nobody_answers_at_is_a_usage_error(monkeypatch, runner, tiny_study, tmp_path):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_free_port()}"  # free: nothing listens there
    out = sweep_cli(runner, tiny_study, tmp_path / "r", "--executor", "ray", "--address", address)
    assert out.exit_code == 2
    assert out.output.startswith(f"Error: --executor ray: no Ray cluster answers at {address}: ")
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------------------------------------
# Ray: a real head node on loopback, started once for this module.


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head` with 2 CPUs on 127.0.0.1, in its own session. Afterwards every process of that
    session (head, GCS, raylet, workers) is stopped, by pid, and checked to be gone."""
    ray = pytest.importorskip("ray")
    if ray._private.ray_constants.ENABLE_RAY_CLUSTER:  # Ray was imported before this module set the variable
        pytest.skip("Ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 was set; it would leave loopback")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's unix socket paths must fit 107 bytes
    ports = {name: _free_port() for name in ("port", "ray-client-server-port", "dashboard-port",
                                             "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                             "runtime-env-agent-port", "metrics-export-port",
                                             "node-manager-port", "object-manager-port")}
    ray_bin = Path(sys.executable).with_name("ray")
    command = [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2",
               "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}",
               f"--object-store-memory={100 * 2**20}", *(f"--{k}={v}" for k, v in ports.items())]
    # No token authentication on this loopback-only node, whatever ~/.ray/auth_token holds: with a token there,
    # `ray start` turns it on, and drivers would need RAY_AUTH_MODE=token.
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    log = open(Path(temp) / "head.log", "wb")
    head = subprocess.Popen(command, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, **env})
    address = f"127.0.0.1:{ports['port']}"
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")
    try:
        deadline = time.monotonic() + 120

        def wait_for(what, ready) -> None:
            while not ready():
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ray head: no {what}: {(Path(temp) / 'head.log').read_text()[-2000:]}")
                time.sleep(0.3)

        def listening() -> bool:  # ray.init would wait for ever on a port nobody listens at
            try:
                socket.create_connection(("127.0.0.1", ports["port"]), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for("GCS listening", listening)
        ray.init(address=address, logging_level="WARNING")
        try:
            wait_for("2 CPUs registered", lambda: ray.cluster_resources().get("CPU") == 2)
        finally:
            ray.shutdown()
        yield RayHead(address, head.pid)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        patch.undo()
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(20)
        except subprocess.TimeoutExpired:
            pass
        for pid in _alive_in_session(head.pid):  # what it did not stop in time, by pid: all of it is ours
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        head.kill()
        head.wait()
        log.close()
        deadline = time.monotonic() + 10
        while _alive_in_session(head.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _alive_in_session(head.pid)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left behind: {left}"


@dataclasses.dataclass
class RayHead:
    address: str
    session: int  # every process of this Ray node is in this session

    def busy_worker(self, pid: int, cmdline: str) -> bool:
        """A worker of this node busy with one of our runs (Ray titles it `ray::run_task` meanwhile)."""
        return cmdline.startswith("ray::run_task") and _session_of(pid) == self.session


def test_ray_sweep_through_the_cli_equals_inprocess(ray_head, reference, study_files, runner, tmp_path):
    import ray

    tiny, _ = study_files
    out = sweep_cli(runner, tiny, tmp_path / "r", "--executor", "ray", "--address", ray_head.address, "--workers", "2",
                    "--cpus-per-run", "1")
    assert out.exit_code == 0, out.output
    assert "trained 6 run(s)" in out.output and "0 failed" in out.output
    assert not ray.is_initialized()  # the executor connected, so it disconnected
    assert_same_results(tmp_path / "r", reference["tiny"])
    records = (tmp_path / "r" / "runs").glob("*/record.json")
    assert {json.loads(p.read_text())["environment"]["threads"] for p in records} == {1}  # = --cpus-per-run


def test_ray_run_that_raises_is_recorded_and_completed_next_time(ray_head, reference, study_files, runner,
                                                                 tmp_path):
    tiny, _ = study_files
    study = load_study(tiny)
    results = tmp_path / "r"
    victim = ResultsFolder(reference["tiny"]).run_ids()[0]
    executor = BreakOne(make_executor("ray", workers=2, address=ray_head.address, cpus_per_run=1), victim)
    summary = run_sweep(study, results, executor)
    assert len(summary.trained) == 5 and list(summary.failed) == [victim]
    failure = json.loads((results / "failed" / f"{victim}.json").read_text())
    assert failure["error"].startswith("ValueError: ") and "no_such_model" in failure["traceback"]
    status = _status_lines(runner, results)
    assert status.startswith("tiny: 5/6 done, 1 pending (1 failed)") and f"failed   {victim}" in status

    out = sweep_cli(runner, tiny, results, "--executor", "ray", "--address", ray_head.address, "--cpus-per-run", "1")
    assert out.exit_code == 0, out.output
    assert "trained 1 run(s)" in out.output and "5 already finished" in out.output
    assert not (results / "failed" / f"{victim}.json").exists()
    assert_same_results(results, reference["tiny"])


def test_ray_worker_killed_mid_run_is_recorded_and_completed_next_time(ray_head, reference, study_files, runner,
                                                                       tmp_path):
    tiny, _ = study_files
    results = tmp_path / "r"
    with KillFirst(ray_head.busy_worker) as killer:
        out = sweep_cli(runner, tiny, results, "--executor", "ray", "--address", ray_head.address, "--workers", "2",
                        "--cpus-per-run", "1")
    assert killer.killed is not None
    assert out.exit_code == 1, out.output
    assert "trained 5 run(s)" in out.output and "1 failed" in out.output
    assert "the Ray worker process died while training this run" in out.output
    status = _status_lines(runner, results)
    assert status.startswith("tiny: 5/6 done, 1 pending (1 failed)")

    again = sweep_cli(runner, tiny, results, "--executor", "ray", "--address", ray_head.address, "--cpus-per-run", "1")
    assert again.exit_code == 0, again.output
    assert "trained 1 run(s)" in again.output and not any((results / "failed").iterdir())
    assert_same_results(results, reference["tiny"])


def test_ray_sweep_of_own_code_equals_inprocess_and_completes_after_a_killed_worker(ray_head, runner, tmp_path):
    """A study whose runs are a script (tests/fake_train.py): a Ray worker killed while its run's command trains
    takes the command with it; the run is recorded as failed, and the next sweep gives the in-process results."""
    study = own_study(tmp_path)
    reference = tmp_path / "reference"
    assert sweep_cli(runner, study, reference, "--executor", "inprocess").exit_code == 0
    (tmp_path / "fake_hang.txt").write_text("0.5 1")  # that run's command hangs until its worker is killed
    results = tmp_path / "r"

    commands = []

    def kill_its_worker(pid: int, cmdline: str) -> bool:
        """Kill the Ray worker whose run's command hangs (the command itself is left alone: it must go with it)."""
        worker = _parent_of(pid) if "fake_train.py --crop 0.5 --seed 1" in cmdline else None
        if worker and ray_head.busy_worker(worker, _cmdline(worker)):
            commands.append(pid)
            os.kill(worker, signal.SIGKILL)
        return False

    with KillFirst(kill_its_worker):
        out = sweep_cli(runner, study, results, "--executor", "ray", "--address", ray_head.address, "--workers", "2")
    assert len(commands) == 1
    assert out.exit_code == 1 and "trained 3 run(s)" in out.output and "1 failed" in out.output, out.output
    assert "the Ray worker process died while training this run" in out.output
    deadline = time.monotonic() + 10
    while _alive(commands[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(commands[0]):
        os.kill(commands[0], signal.SIGKILL)
        raise AssertionError("the command outlived its Ray worker")
    (tmp_path / "fake_hang.txt").unlink()
    again = sweep_cli(runner, study, results, "--executor", "ray", "--address", ray_head.address)
    assert again.exit_code == 0 and "trained 1 run(s)" in again.output, again.output
    assert_same_results(results, reference)


def _alive(pid: int) -> bool:
    return (_stat(pid) or ["Z"])[0] != "Z"


# ----------------------------------------------------------------------------------------------------------
# Slurm through submitit: its local cluster (real subprocesses) and its debug cluster (this process).


def test_submitit_local_sweep_through_the_cli_equals_inprocess(reference, study_files, runner, tmp_path,
                                                               monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv(CLUSTER_ENV, "local")
    _, small = study_files  # each local job is a fresh process that pays ~7 s of torch imports: two runs
    out = sweep_cli(runner, small, tmp_path / "r", "--executor", "slurm", "--workers", "2",
                    "--slurm-folder", str(tmp_path / "jobs"))
    assert out.exit_code == 0, out.output
    assert "trained 2 run(s)" in out.output
    assert_same_results(tmp_path / "r", reference["small"])
    assert len(list((tmp_path / "jobs").glob("*_log.out"))) == 2  # submitit's files went to --slurm-folder


def test_submitit_local_sweep_of_own_code_equals_inprocess(runner, tmp_path, monkeypatch):
    """A study whose runs are a script, each in a Slurm job (submitit's local cluster: real processes)."""
    pytest.importorskip("submitit")
    study = own_study(tmp_path)
    assert sweep_cli(runner, study, tmp_path / "reference", "--executor", "inprocess").exit_code == 0
    monkeypatch.setenv(CLUSTER_ENV, "local")
    out = sweep_cli(runner, study, tmp_path / "r", "--executor", "slurm", "--workers", "2", "--slurm-folder",
                    str(tmp_path / "jobs"))
    assert out.exit_code == 0 and "trained 4 run(s)" in out.output, out.output
    assert_same_results(tmp_path / "r", tmp_path / "reference")


def test_submitit_job_killed_mid_run_is_recorded_and_completed_next_time(reference, study_files, runner,
                                                                         tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv(CLUSTER_ENV, "local")
    _, small = study_files
    results, jobs = tmp_path / "r", tmp_path / "jobs"

    def job_of_this_test(pid, cmdline):
        return "submitit.core._submit" in cmdline and str(jobs) in cmdline

    with KillFirst(job_of_this_test) as killer:
        out = sweep_cli(runner, small, results, "--executor", "slurm", "--workers", "2", "--slurm-folder", str(jobs))
    assert killer.killed is not None
    assert out.exit_code == 1, out.output
    assert "trained 1 run(s)" in out.output and "ended without a result (killed, out of memory" in out.output
    assert _status_lines(runner, results).startswith("small: 1/2 done, 1 pending (1 failed)")

    again = sweep_cli(runner, small, results, "--executor", "slurm", "--slurm-folder", str(jobs))
    assert again.exit_code == 0, again.output
    assert "trained 1 run(s)" in again.output
    assert_same_results(results, reference["small"])
    assert not [pid for pid, cmdline in _processes() if job_of_this_test(pid, cmdline)]


def test_submitit_run_that_raises_is_recorded_and_completed_next_time(reference, study_files, runner, tmp_path,
                                                                      monkeypatch):
    pytest.importorskip("submitit")
    tiny, _ = study_files  # the debug cluster runs the jobs in this process, so all six are cheap
    results = tmp_path / "r"
    victim = ResultsFolder(reference["tiny"]).run_ids()[0]
    executor = BreakOne(make_executor("slurm", workers=2, folder=tmp_path / "jobs", cluster="debug"), victim)
    summary = run_sweep(load_study(tiny), results, executor)
    assert len(summary.trained) == 5 and list(summary.failed) == [victim]
    assert json.loads((results / "failed" / f"{victim}.json").read_text())["error"].startswith("ValueError: ")
    assert f"failed   {victim}" in _status_lines(runner, results)

    monkeypatch.setenv(CLUSTER_ENV, "debug")
    out = sweep_cli(runner, tiny, results, "--executor", "slurm", "--slurm-folder", str(tmp_path / "jobs"))
    assert out.exit_code == 0 and "trained 1 run(s)" in out.output, out.output
    assert_same_results(results, reference["tiny"])


# ----------------------------------------------------------------------------------------------------------
# The local executor's worker processes: a killed worker, a half-sent outcome.


def test_local_pool_worker_killed_is_recorded_and_completed_next_time(reference, study_files, runner, tmp_path,
                                                                      monkeypatch):
    one_thread(monkeypatch)
    tiny, _ = study_files
    results = tmp_path / "r"
    me = os.getpid()

    def pool_worker(pid, cmdline):
        return "spawn_main" in cmdline and _parent_of(pid) == me

    with KillFirst(pool_worker) as killer:
        out = sweep_cli(runner, tiny, results, "--executor", "local", "--workers", "2")
    assert killer.killed is not None
    assert out.exit_code == 1, out.output
    assert "trained 5 run(s)" in out.output and "1 failed" in out.output  # the other worker's runs went on
    assert "worker process died (killed or out of memory)" in out.output
    assert _status_lines(runner, results).startswith("tiny: 5/6 done, 1 pending (1 failed)")

    again = sweep_cli(runner, tiny, results, "--executor", "local", "--workers", "2")
    assert again.exit_code == 0, again.output
    assert "trained 1 run(s)" in again.output
    assert_same_results(results, reference["tiny"])
    assert not [pid for pid in _children(me) if "spawn_main" in _cmdline(pid)]  # no worker outlived its sweep


# Runs of a minute or more: a worker that outlives its sweep by 10 s is one still training.
LONG_STUDY = TINY_STUDY.replace("n_train_per_class = 12", "n_train_per_class = 300").replace("epochs = 1",
                                                                                               "epochs = 150")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_sweep_leaves_no_worker_behind(tmp_path, how):
    """SIGTERM (kill, scancel) stops a sweep as Ctrl-C does, workers included; after SIGKILL, which the sweep
    cannot see, its workers notice they were orphaned and exit instead of training on for nobody."""
    study = tmp_path / "long.toml"
    study.write_text(LONG_STUDY)
    results = tmp_path / "r"
    log = tmp_path / "sweep.log"  # a file, not a pipe: the workers hold its write end too, and would keep
    with open(log, "wb") as out:   # a pipe open until they exit
        sweep = subprocess.Popen([str(Path(sys.executable).with_name("classaudit")), "sweep", str(study),
                                  "--results", str(results), "--workers", "2", "--no-progress"], stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list((results / "checkpoints").glob("*.pt")):  # the workers are training
            assert sweep.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        workers = [p for p in _children(sweep.pid) if "spawn_main" in _cmdline(p)]
        assert len(workers) == 2
        os.kill(sweep.pid, getattr(signal, how))
        sweep.wait(timeout=60)
        output = log.read_text()
        if how == "SIGTERM":
            assert sweep.returncode == 130 and "Interrupted. Every finished run is kept" in output, output
        deadline = time.monotonic() + 10
        while [p for p in workers if _stat(p) and _stat(p)[0] != "Z"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in workers if _stat(p) and _stat(p)[0] != "Z"], "a worker outlived its sweep"
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()


def test_a_half_sent_outcome_is_a_dead_worker_not_a_hang():
    """A worker killed while sending a large outcome leaves part of a message in its pipe; the parent reads
    the end of file that follows as the worker's death instead of waiting for the rest."""
    import multiprocessing as mp
    import struct

    from classaudit.executors.local import _receive

    parent, child = mp.Pipe()
    child._send(struct.pack("!i", 1_000_000) + b"x" * 1000)  # a header promising 1 MB, then 1 kB of it
    child.close()
    assert _receive(parent) is None

    parent, child = mp.Pipe()
    child.send("an outcome")
    child.close()  # sent in full, then the worker died: the outcome still counts
    assert _receive(parent) == "an outcome"


# ----------------------------------------------------------------------------------------------------------
# Several runs per device: --runs-per-device.


def test_runs_sharing_the_cpu_give_the_results_of_one_at_a_time(reference, study_files, runner, tmp_path):
    tiny, _ = study_files
    out = sweep_cli(runner, tiny, tmp_path / "r", "--runs-per-device", "2", "--cpus-per-run", "1", "--device", "cpu")
    assert out.exit_code == 0, out.output
    assert "(local, 2 per device)" in out.output and "trained 6 run(s)" in out.output
    assert_same_results(tmp_path / "r", reference["tiny"])


def test_runs_sharing_the_cpu_split_its_cores(study_files, runner, tmp_path):
    tiny, _ = study_files
    out = sweep_cli(runner, tiny, tmp_path / "r", "--runs-per-device", "2", "--device", "cpu")
    assert out.exit_code == 0, out.output
    records = (tmp_path / "r" / "runs").glob("*/record.json")
    assert {json.loads(p.read_text())["environment"]["threads"] for p in records} == {max(1, os.cpu_count() // 2)}


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two"])
def test_runs_per_device_must_be_a_whole_number_of_at_least_one(runner, tiny_study, tmp_path, value):
    out = sweep_cli(runner, tiny_study, tmp_path / "r", "--runs-per-device", value)
    assert out.exit_code == 2
    assert out.output == (f"Error: option --runs-per-device: value {value} is not a whole number >= 1; give how many "
                          "runs share each device\n")
    assert not (tmp_path / "r").exists()


def test_runs_per_device_is_for_local_and_ray():
    with pytest.raises(UsageError, match="^option --runs-per-device: only for --executor local or ray; leave it out "
                                         "with --executor inprocess$"):
        check_executor("inprocess", runs_per_device=2)
    with pytest.raises(UsageError, match=r"^option --runs-per-device: value 4 sets each run's share of a GPU \(1/4\); "
                                         "leave out --gpus-per-run$"):
        check_executor("ray", runs_per_device=4, gpus_per_run=0.5)


def test_ray_runs_per_device_reserves_a_fraction_of_a_gpu(monkeypatch):
    pytest.importorskip("ray")
    from classaudit.executors.ray import RayExecutor

    monkeypatch.setattr(RayExecutor, "connect", lambda self: None)
    executor = make_executor("ray", workers=None, runs_per_device=4)
    assert (executor.gpus_per_run, executor.workers) == (0.25, None)  # Ray's resources alone cap the runs
    assert make_executor("ray", workers=None).workers == 1


def test_runs_per_device_go_to_the_named_device_or_every_visible_one(monkeypatch):
    import torch

    from classaudit.executors.local import run_devices

    assert run_devices("cuda:1") == ["cuda:1"] and run_devices("cpu") == ["cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert run_devices(None) == run_devices("auto") == ["cuda:0", "cuda:1"]


def test_runs_that_do_not_fit_in_a_gpus_memory_are_refused_naming_the_option():
    from classaudit.train import fit_problem

    gib = 2**30
    assert fit_problem(4, "cuda:0", 2 * gib, 8 * gib) is None
    assert fit_problem(4, "cuda:0", 3 * gib, 8 * gib) == (
        "option --runs-per-device: value 4 does not fit on cuda:0: 4 runs need about 12.0 GiB (3.00 GiB each: a "
        "training step's and an evaluation batch's peak, measured, and the process's CUDA context), 8.0 GiB are "
        "free; give at most 2")
    assert fit_problem(1, "cuda:1", 9 * gib, 8 * gib).endswith("8.0 GiB are free; not even one run fits")
