"""Runs trained by the user's own code: a study's `train.command` (a program started for each run) or
`train.function` (a Python function called in the worker), the values each run hands it, and the predictions it
hands back, checked and turned into the RunResult classaudit's own training returns.

The contract (the README's "Audit your own training code" shows it as a table): the command's arguments are
templates whose {placeholders} are the run's values; the same values are in the environment as CLASSAUDIT_<NAME>.
The run writes, into the empty folder {out}, `predictions.csv` or `predictions.parquet` (columns split, index,
label, pred and optionally p_true; one row per image of each split) and `classes.txt` (one class name a line, the
line number from 0 being the class id). Exit status 0 means success. No torch here: a command may not use it.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import shlex
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classaudit.errors import RunFailed, UsageError, did_you_mean
from classaudit.predictions_file import check_class_names, check_predictions, read_predictions
from classaudit.regularizers import REGULARIZERS
from classaudit.result import RunResult, SplitPredictions

if TYPE_CHECKING:
    from classaudit.executors.base import Task

# The values of every run, besides each regularizer's strength: the placeholder names and what they hold.
RUN_VALUES = {
    "seed": "the run's seed",
    "run_id": "the run's id (the hash of its resolved config)",
    "out": "an empty folder for the predictions, on the machine that runs the command; deleted once read",
    "device": "the --device of the sweep; by default cuda where the machine has a CUDA device, else cpu",
    "threads": "the CPU threads the run may use (also set as OMP_NUM_THREADS and MKL_NUM_THREADS)",
    "checkpoint": "a file the run may save its state in and resume from after a kill; removed once the run is "
                  "stored (<results>/checkpoints/<run_id>.pt)",
    "python": "the Python that runs classaudit",
}
ENV_PREFIX = "CLASSAUDIT_"  # CLASSAUDIT_SEED, CLASSAUDIT_OUT, CLASSAUDIT_CROP, ...; CLASSAUDIT_CONFIG: the config
STDERR_LINES = 40  # the tail of a failed command's stderr kept in failed/<run_id>.json
GRACE_SECONDS = 10  # between SIGTERM and SIGKILL when a command runs past its time limit

# Messages, compared exactly by the tests (those about the predictions: classaudit.predictions_file).
NOT_FOUND = "train.command: program {program} is not found (not on PATH, nor a file in {workdir})"
CANNOT_START = "train.command: program {program} cannot be started ({why})"
EXITED = "train.command exited with status {status}; the last line of its stderr: {last}"
KILLED = "train.command was killed by signal {signal}; the last line of its stderr: {last}"
TIMED_OUT = "train.command was stopped after train.time_limit = {minutes:g} minutes"
BAD_RETURN = ("train.function returned {what}; expected None (predictions written to out) or a pair "
              "(predictions DataFrame, class names)")
CANNOT_IMPORT = "train.function: value {spec}: {why}"


# ----------------------------------------------------------------------------------------------------------
# The values of a run, and the command they make.


def placeholders(template: str) -> list[str]:
    """The names of the {placeholders} in one argument; ValueError when it is not a valid template."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise ValueError(f"{{{name}}} is not a placeholder name")
        names.append(name)
    return names


def allowed_names(regularizers: Sequence[str]) -> list[str]:
    """The placeholders a study's command may use: the run's values and the strengths of its regularizers."""
    return sorted({*RUN_VALUES, *regularizers})


def command_problems(command: Sequence[str], regularizers: Sequence[str], where: str) -> list[str]:
    """The problems of a study's train.command: malformed templates, and placeholders that name no axis of the
    study (nor a value of the run), each one line; `where` is "<file>: field 'train.command"."""
    allowed = allowed_names(regularizers)
    dummy = {name: 0.5 if name in REGULARIZERS else "x" for name in allowed} | {"seed": 0, "threads": 1}
    problems = []
    for i, arg in enumerate(command):
        shown = json.dumps(arg)
        try:
            names = placeholders(arg)
        except ValueError as e:
            problems.append(f"{where}[{i}]': value {shown} is not a valid template ({e}); write {{name}} for a "
                            "value of the run, {{ and }} for a literal brace")
            continue
        unknown = [n for n in names if n not in allowed]
        for name in unknown:
            why = ("names a regularizer the study does not sweep (no [sweep.*] axis or [baseline] entry sets it)"
                   if name in REGULARIZERS else f"names no axis of the study and no value of the run"
                   f"{did_you_mean(name, allowed)}")
            problems.append(f"{where}[{i}]': value {shown}: placeholder {{{name}}} {why}; allowed: "
                            + ", ".join(f"{{{n}}}" for n in allowed))
        if not unknown:
            try:
                arg.format(**dummy)
            except (ValueError, TypeError, KeyError, IndexError) as e:
                problems.append(f"{where}[{i}]': value {shown} is not a valid template ({e}); write {{name}} for "
                                "a value of the run, {{ and }} for a literal brace")
    return problems


def run_values(config: Mapping[str, Any], *, run_id: str, out: str, device: str, threads: int,
               checkpoint: str) -> dict[str, Any]:
    """Every value a run's command or function gets: the run's own, and the strength of every regularizer
    classaudit knows (its off value where the run leaves it off; `epochs` when the study gives train.epochs)."""
    values: dict[str, Any] = {"seed": int(config["seed"]), "run_id": run_id, "out": out, "device": device,
                              "threads": int(threads), "checkpoint": checkpoint, "python": sys.executable}
    for name, spec in REGULARIZERS.items():
        if spec.off_field:  # the training length: the run's train.epochs, when the study has one
            field = spec.off_field.removeprefix("train.")
            if field not in config["train"]:
                continue
            value = config["train"][field]
        else:
            on = config["regularizers"].get(name)
            value = on["strength"] if on else spec.off
        values[name] = int(value) if spec.whole else float(value)
    return values


def environment_variables(values: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, str]:
    """The run's values as CLASSAUDIT_<NAME>, its resolved config as CLASSAUDIT_CONFIG (JSON), and its thread
    count as OpenMP's and MKL's (torch and numpy read them at start-up)."""
    env = {f"{ENV_PREFIX}{name.upper()}": str(value) for name, value in values.items()}
    env[f"{ENV_PREFIX}CONFIG"] = json.dumps(config, sort_keys=True, default=dict)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(values["threads"])
    return env


def command_line(config: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    return [arg.format(**values) for arg in config["train"]["command"]]


def describe(config: Mapping[str, Any], *, run_id: str, workdir: str, device: str | None, threads: int,
             checkpoint_dir: str) -> str:
    """One line saying what code a run executes: the exact command (with {out} left as a placeholder: each
    attempt gets a new folder), or the function it calls; for the dry run and the sweep's first lines."""
    train = config["train"]
    if "function" in train:
        return f"each run calls train.function {train['function']} (imported with {workdir} on sys.path)"
    values = run_values(config, run_id=run_id, out="{out}", device=device or resolve_device(None),
                        threads=threads, checkpoint=os.path.abspath(os.path.join(checkpoint_dir, f"{run_id}.pt")))
    return f"each run executes train.command in {workdir}; the first: {shlex.join(command_line(config, values))}"


def resolve_device(device: str | None) -> str:
    """The device a run is told: --device, or cuda where this machine has a CUDA device, else cpu. Torch is
    imported only where the machine has an NVIDIA driver: it costs seconds per worker, for a command that may
    not use it."""
    if device:
        return device
    if "torch" not in sys.modules and not os.path.exists("/dev/nvidiactl"):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ----------------------------------------------------------------------------------------------------------
# Checks before a sweep starts (on the machine that runs it).


def check_runnable(train: Mapping[str, Any], path: str, workdir: str) -> None:
    """Raise a UsageError when the study's program is not found, or its function cannot be imported, here."""
    if "function" in train:
        try:
            load_function(train["function"], workdir)
        except RunFailed as e:
            raise UsageError(f"{path}: field 'train.function': {str(e).partition(': ')[2]}") from None
        return
    program = train["command"][0]
    if placeholders(program) not in ([], ["python"]):
        return  # decided per run
    program = program.format(python=sys.executable)
    found = (os.path.isfile(os.path.join(workdir, program)) and os.access(os.path.join(workdir, program), os.X_OK)
             if os.sep in program else _which(program) is not None)
    if not found:
        raise UsageError(f"{path}: field 'train.command[0]': value {json.dumps(train['command'][0])} is not a "
                         f"program: not on PATH, nor an executable file in {workdir}")


def _which(program: str) -> str | None:
    import shutil

    return shutil.which(program)


def load_function(spec: str, workdir: str | None):
    """The function "package.module:name" names, imported with the study's folder first on sys.path (so a
    module beside the study is found); RunFailed saying what is wrong."""
    module_name, _, name = spec.partition(":")
    if workdir and workdir not in sys.path:
        sys.path.insert(0, workdir)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - whatever the import raised, the run cannot start
        raise RunFailed(CANNOT_IMPORT.format(spec=json.dumps(spec), why=f"module {module_name} cannot be "
                                             f"imported ({type(e).__name__}: {e})")) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise RunFailed(CANNOT_IMPORT.format(spec=json.dumps(spec), why=f"module {module_name} has no function "
                                             f"{name}"))
    return function


# ----------------------------------------------------------------------------------------------------------
# Running one.


def run_external(task: Task) -> RunResult:
    """Train one run with the study's command or function; a RunFailed says why it gave no result."""
    config = task.config
    t0 = time.perf_counter()
    device = resolve_device(task.device)
    threads = task.threads or os.cpu_count() or 1
    # Absolute: the command runs in the study's folder, not in the sweep's working directory.
    checkpoint = os.path.abspath(os.path.join(task.checkpoint_dir, f"{task.run_id}.pt")) if task.checkpoint_dir else ""
    with tempfile.TemporaryDirectory(prefix=f"classaudit-{task.run_id}-") as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        values = run_values(config, run_id=task.run_id, out=str(out), device=device, threads=threads,
                            checkpoint=checkpoint)
        if "function" in config["train"]:
            class_names, splits = _call_function(config, values, task.workdir, threads)
            ran = {"function": config["train"]["function"]}
        else:
            argv = command_line(config, values)
            _run_command(argv, values, config, Path(tmp), task.workdir, task.time_limit)
            class_names, splits = read_predictions(out)
            ran = {"command": [a.replace(str(out), "{out}") for a in argv]}
    return RunResult(
        run_id=task.run_id, config=json.loads(json.dumps(config, default=dict)), class_names=class_names,
        splits=splits, timings={"total_seconds": time.perf_counter() - t0},
        environment={"classaudit": _version(), "python": platform.python_version(), "device": device,
                     "threads": threads, "platform": platform.platform(), **ran},
    )


def _version() -> str:
    from classaudit import __version__

    return __version__


def _run_command(argv: list[str], values: Mapping[str, Any], config: Mapping[str, Any], tmp: Path,
                 workdir: str | None, time_limit: float | None) -> None:
    """Run the command in the study's folder, its output in files (a pipe nobody reads can block it), in a
    process group of its own so that a time limit stops all of it; it dies with the process that started it."""
    env = {**os.environ, **environment_variables(values, config)}
    with open(tmp / "stdout.txt", "wb") as stdout, open(tmp / "stderr.txt", "wb") as stderr:
        try:
            process = subprocess.Popen(argv, cwd=workdir or None, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                                       stderr=stderr, start_new_session=True, preexec_fn=_die_with_parent())
        except FileNotFoundError:
            raise RunFailed(NOT_FOUND.format(program=json.dumps(argv[0]), workdir=workdir or os.getcwd())) from None
        except OSError as e:
            raise RunFailed(CANNOT_START.format(program=json.dumps(argv[0]), why=e.strerror or e)) from None
        timed_out = False
        try:
            process.wait(None if time_limit is None else time_limit * 60)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # also on Ctrl-C in this process: the command goes with the run
            if process.poll() is None:
                _stop(process)
    tail = _tail(tmp / "stderr.txt")
    detail = f"$ {shlex.join(argv)}\nstderr, last {STDERR_LINES} lines:\n{tail}"
    last = json.dumps(tail.rstrip("\n").rpartition("\n")[2]) if tail.strip() else "(empty)"
    if timed_out:
        raise RunFailed(TIMED_OUT.format(minutes=time_limit), detail=detail)
    if process.returncode < 0:
        name = signal.Signals(-process.returncode).name
        raise RunFailed(KILLED.format(signal=name, last=last), detail=detail)
    if process.returncode != 0:
        raise RunFailed(EXITED.format(status=process.returncode, last=last), detail=detail)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the command's process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _die_with_parent():
    """On Linux, a function making the command receive SIGKILL when the process that started it dies (a worker
    killed, a sweep stopped by SIGKILL): a run nobody will store must not train on."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return set_death_signal


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - 64 * 1024))
        text = f.read().decode("utf-8", "replace")
    return "".join(text.splitlines(keepends=True)[-STDERR_LINES:])


def _call_function(config: Mapping[str, Any], values: Mapping[str, Any], workdir: str | None,
                   threads: int) -> tuple[list[str], dict[str, SplitPredictions]]:
    function = load_function(config["train"]["function"], workdir)
    if "torch" in sys.modules:  # the same threads as classaudit's own runs get
        sys.modules["torch"].set_num_threads(threads)
    strengths = {k: v for k, v in values.items() if k in REGULARIZERS}
    returned = function(json.loads(json.dumps(config, default=dict)), seed=values["seed"], out=values["out"],
                        device=values["device"], run_id=values["run_id"], strengths=strengths)
    if returned is None:
        return read_predictions(Path(values["out"]))
    import pandas as pd

    if not (isinstance(returned, tuple) and len(returned) == 2 and isinstance(returned[0], pd.DataFrame)
            and isinstance(returned[1], Sequence) and not isinstance(returned[1], str)):
        raise RunFailed(BAD_RETURN.format(what=_what(returned)))
    names = check_class_names([str(n) for n in returned[1]], "the class names train.function returned")
    return names, check_predictions(returned[0], len(names), "the frame train.function returned")


def _what(value: Any) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)} ({', '.join(type(v).__name__ for v in value)})"
    return f"a value of type {type(value).__name__}"
