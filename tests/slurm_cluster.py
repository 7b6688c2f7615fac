"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd started in a temporary folder with
their own configuration, key, state, logs and ports, so it needs no system-wide Slurm and touches none.

It needs root (the daemons run as root, and jobs as the user who submits them) and Debian's `slurm-wlm` and
`munge` packages (`.ci/run` installs them); elsewhere the tests that use it skip, saying why. The node is this
machine (`hostname -s`) with 2 CPUs; no cgroups (a container has none to give): processes are tracked through
/proc, and tasks are not bound to CPUs. There is no accounting database, as on many small clusters, so sacct
answers nothing. MaxArraySize is 4, so that a sweep of a few runs needs several job arrays.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

MAX_ARRAY_SIZE = 4
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo")


@dataclass
class SlurmCluster:
    folder: Path
    env: dict[str, str]  # what a client needs: SLURM_CONF, and PYTHONPATH so that jobs import this classaudit
    max_array_size: int

    def run(self, *command: str) -> str:
        """The output of a Slurm command run against this cluster."""
        return subprocess.run(command, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60,
                              check=True).stdout

    def cancel_all(self, timeout: float = 30) -> None:
        """Cancel every job and wait until squeue lists none (their processes are gone)."""
        self.run("scancel", f"--user={os.geteuid()}")
        deadline = time.monotonic() + timeout
        while self.jobs() and time.monotonic() < deadline:
            time.sleep(0.5)

    def jobs(self, *states: str) -> list[str]:
        """The ids of the jobs squeue lists (one per array element), in the given states (default: any active)."""
        return self.run("squeue", "--noheader", "--array", "--format=%i",
                        *([f"--states={','.join(states)}"] if states else [])).split()


def why_not() -> str | None:
    """Why this machine cannot start the cluster, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"a single-node Slurm cluster needs Linux, not {sys.platform}"
    if os.geteuid() != 0:
        return f"starting a single-node Slurm cluster needs root (munged, slurmd); this is uid {os.geteuid()}"
    missing = [name for name in (*DAEMONS, *CLIENTS) if _which(name) is None]
    if missing:
        return (f"Slurm or munge is not installed (no {', '.join(missing)}); "
                "`apt-get install slurm-wlm munge` installs them, as .ci/run does")
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed: pip install 'classaudit[slurm]'"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(folder: Path, node: str, cpus: int, max_array_size: int) -> str:
    return f"""\
ClusterName=classaudit-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
MaxArraySize={max_array_size}
# scancel: SIGTERM, then SIGKILL after KillWait seconds (submitit's jobs ignore SIGTERM, waiting for the kill)
KillWait=2
MinJobAge=300
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="session")
def slurm_cluster():
    """The cluster, started on first use and stopped at the end of the session: every job cancelled, the daemons
    stopped by pid, the folder removed."""
    reason = why_not()
    if reason:
        pytest.skip(reason)
    yield from running_cluster(MAX_ARRAY_SIZE)


def running_cluster(max_array_size: int):
    """Start the cluster, yield it, stop it (a generator, so that a script can run one outside the tests too)."""
    import classaudit

    folder = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))  # short: munge's socket path must fit 107 bytes
    folder.chmod(0o711)
    for sub in ("munge", "state", "spool", "log"):
        (folder / sub).mkdir(mode=0o711)
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    node = socket.gethostname().split(".")[0]  # what `hostname -s` prints: slurmd looks itself up by it
    (folder / "slurm.conf").write_text(_config(folder, node, cpus=2, max_array_size=max_array_size))
    here = str(Path(classaudit.__file__).resolve().parents[1])
    env = {"SLURM_CONF": str(folder / "slurm.conf"),
           "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    cluster = SlurmCluster(folder, env, max_array_size)
    munge = folder / "munge"
    commands = {
        "munged": [_which("munged"), "--foreground", "--force", f"--socket={munge}/munge.socket",
                   f"--key-file={key}", f"--log-file={munge}/munged.log", f"--pid-file={munge}/munged.pid",
                   f"--seed-file={munge}/munged.seed"],
        "slurmctld": [_which("slurmctld"), "-D", "-i", "-f", env["SLURM_CONF"]],
        "slurmd": [_which("slurmd"), "-D", "-f", env["SLURM_CONF"], "-N", node],
    }
    daemons: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            with open(folder / "log" / f"{name}.out", "wb") as out:
                daemons[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                 start_new_session=True, env={**os.environ, **env})
            if name == "munged":
                _wait_for(lambda: (munge / "munge.socket").exists(), "munged's socket", daemons, folder)
        _wait_for(lambda: _node_state(cluster) == "idle", "the node idle in sinfo", daemons, folder)
        # A job runs the submitting Python in the submitting directory: it must import the classaudit under test.
        imported = cluster.run("srun", "--quiet", sys.executable, "-c",
                               "import classaudit; print(classaudit.__file__)").strip()
        assert imported == classaudit.__file__, f"a Slurm job imports {imported}, the tests {classaudit.__file__}"
        yield cluster
    finally:
        _stop(cluster, daemons)
        shutil.rmtree(folder, ignore_errors=True)


def _node_state(cluster: SlurmCluster) -> str | None:
    try:
        return cluster.run("sinfo", "--noheader", "--Node", "--format=%T").strip()
    except (subprocess.SubprocessError, OSError):
        return None


def _wait_for(ready, what: str, daemons: dict[str, subprocess.Popen], folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        dead = [name for name, p in daemons.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                             for p in sorted((folder / "log").glob("*")) + [folder / "munge" / "munged.log"]
                             if p.exists())
            raise RuntimeError(f"single-node Slurm: no {what}" + (f" ({', '.join(dead)} exited)" if dead else "") +
                               f"\n{logs}")
        time.sleep(0.2)


def _stop(cluster: SlurmCluster, daemons: dict[str, subprocess.Popen]) -> None:
    """Cancel every job and wait for them to end (their processes are the node's, not the daemons'), then stop
    the daemons, slurmd first."""
    if "slurmd" in daemons and daemons["slurmd"].poll() is None:
        try:
            cluster.cancel_all()
        except (subprocess.SubprocessError, OSError):
            pass
    for name in ("slurmd", "slurmctld", "munged"):
        process = daemons.get(name)
        if process is None:
            continue
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
