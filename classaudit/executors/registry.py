"""The executors by name: the one list of names `--executor` takes, the options each backend accepts, and the
checks and factory the command line and the sweep call.

A backend's module is imported only when it is checked or made, so listing and checking names imports neither
Ray nor submitit. Each backend module defines `check(**options) -> [problems]` and
`make(workers=..., **options) -> Executor`, and receives only the options given (None = not given).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from classaudit.errors import UsageError
from classaudit.executors.base import Executor


@dataclass(frozen=True)
class Backend:
    name: str
    module: str
    options: frozenset[str]  # the options it takes beside `workers`
    here: bool  # runs on this machine: the sweep splits the cores between workers, and --device is checked here


# What each one is: the package's docstring (classaudit/executors/__init__.py).
BACKENDS = {b.name: b for b in (
    Backend("local", "classaudit.executors.local", frozenset({"cpus_per_run", "runs_per_device"}), True),
    Backend("inprocess", "classaudit.executors.inprocess", frozenset({"cpus_per_run"}), True),
    Backend("ray", "classaudit.executors.ray",
            frozenset({"address", "cpus_per_run", "gpus_per_run", "runs_per_device"}), False),
    Backend("slurm", "classaudit.executors.slurm",
            frozenset({"cpus_per_run", "gpus_per_run", "partition", "time_limit", "folder", "cluster"}), False),
)}
EXECUTORS = tuple(BACKENDS)  # the names --executor takes, the default first

# Every option an executor may take, in the order problems are listed, with the command-line option that sets
# it (`cluster` is set from Python or CLASSAUDIT_SLURM_CLUSTER only).
OPTIONS = {"address": "--address", "cpus_per_run": "--cpus-per-run", "gpus_per_run": "--gpus-per-run",
           "runs_per_device": "--runs-per-device", "partition": "--partition", "time_limit": "--time-limit",
           "cluster": "cluster", "folder": "--slurm-folder"}


def runs_here(name: str) -> bool:
    """Whether executor `name` runs its runs on this machine."""
    return _backend(name).here


def check_executor(name: str, **options: Any) -> None:
    """Raise one UsageError listing every problem with executor `name` and its options (None = not given),
    starting nothing: called before any data is loaded, and by a dry run."""
    backend = _backend(name)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise TypeError(f"check_executor() got unexpected options: {', '.join(unknown)}")
    # Options another executor takes, one line per set of executors that take them.
    elsewhere: dict[str, list[str]] = {}
    for option in OPTIONS:
        if option in given and option not in backend.options:
            takers = " or ".join(b.name for b in BACKENDS.values() if option in b.options)
            elsewhere.setdefault(takers, []).append(OPTIONS[option])
    problems = [f"option {', '.join(flags)}: only for --executor {takers}; leave it out with --executor {name}"
                for takers, flags in elsewhere.items()]
    problems += _module(backend).check(**{k: v for k, v in given.items() if k in backend.options})
    if problems:
        raise UsageError("\n".join(problems))


def make_executor(name: str, *, workers: int | None = 1, **options: Any) -> Executor:
    """The executor called `name`, after check_executor. Local and in-process runs use --cpus-per-run threads
    each when it is given, so that a run gives the same bits as on a cluster with the same --cpus-per-run.
    `workers` None: not given; the executors that take runs_per_device then start as many runs as it allows,
    the others one at a time."""
    check_executor(name, **options)
    backend = _backend(name)
    if workers is None and "runs_per_device" not in backend.options:
        workers = 1
    return _module(backend).make(workers=workers, **{k: v for k, v in options.items() if v is not None})


def _backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UsageError(f"option --executor: value \"{name}\" is not known; allowed: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]


def _module(backend: Backend):
    return importlib.import_module(backend.module)
