"""Shared fixtures: tiny studies that train in seconds, their results swept in this process (the reference the
executors are compared with), the CLI runner, and the single-node Slurm cluster (tests/slurm_cluster.py)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from tests.slurm_cluster import slurm_cluster  # noqa: F401  (a fixture)

os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` are skipped, saying why, where torch sees no CUDA device (torch is imported only when
    some collected test is so marked)."""
    cuda_tests = [item for item in items if item.get_closest_marker("cuda")]
    if cuda_tests:
        import torch

        if not torch.cuda.is_available():
            for item in cuda_tests:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device (benchmarks/device_check.py runs it)"))
SHARED_DATA = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"

TINY_STUDY = """\
[study]
name = "tiny"
seeds = [0, 1]

[dataset]
name = "shapes"
val_fraction = 0.2
[dataset.options]
n_train_per_class = 12
n_test_per_class = 6
size = 16

[model]
name = "smallcnn"
[model.options]
width = 4

[train]
epochs = 1
batch_size = 32
lr = 0.05

[sweep.crop]
strengths = [1.0, 0.5]

[sweep.cutmix]
strengths = [0.0, 0.5]
"""


# A study whose runs are tests/fake_train.py, a script of the standard library only (a fraction of a second a run).
OWN_STUDY = """\
[study]
name = "own"
seeds = [0, 1]

[sweep.crop]
strengths = [1.0, 0.5]

[train]
"""
OWN_TRAIN = 'command = ["{python}", "fake_train.py", "--crop", "{crop}", "--seed", "{seed}", "--out", "{out}"]'


def own_study(folder: Path, *, train: str = OWN_TRAIN, command: str | None = None, train_extra: str = "") -> Path:
    """OWN_STUDY written into `folder` beside a copy of fake_train.py, with `train` as its [train] table (or the
    given command), and `train_extra` lines added to it."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "tests" / "fake_train.py", folder / "fake_train.py")
    if command is not None:
        train = f"command = {command}"
    path = folder / "own.toml"
    path.write_text(OWN_STUDY + train + "\n" + train_extra + "\n")
    return path


@pytest.fixture
def tiny_study(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_STUDY)
    return path


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()


# One seed, one axis: the two runs of the tiny study at seed 0 on the crop axis (same configs, same run ids).
SMALL_STUDY = TINY_STUDY.replace("seeds = [0, 1]", "seeds = [0]").split("[sweep.cutmix]")[0]


def one_thread(monkeypatch) -> None:
    """In-process and local-pool runs get cpu_count // workers threads; make it 1, as on Ray and Slurm."""
    monkeypatch.setattr("classaudit.sweep.threads_per_worker", lambda workers: 1)


def sweep_cli(runner, study, results, *extra):
    from classaudit.cli import cli

    return runner.invoke(cli, ["sweep", str(study), "--results", str(results), "--no-progress", *extra])


def assert_same_results(results, reference) -> None:
    import pandas as pd

    from classaudit.store import load_predictions, load_results

    pd.testing.assert_frame_equal(load_results(results), load_results(reference))
    pd.testing.assert_frame_equal(load_predictions(results), load_predictions(reference))


@pytest.fixture(scope="session")
def study_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("studies")
    (tmp / "tiny.toml").write_text(TINY_STUDY)
    (tmp / "small.toml").write_text(SMALL_STUDY.replace('name = "tiny"', 'name = "small"'))
    return tmp / "tiny.toml", tmp / "small.toml"


@pytest.fixture(scope="session")
def reference(study_files, tmp_path_factory):
    """The tiny and small studies swept in this process, one thread per run."""
    from click.testing import CliRunner

    out = {}
    with pytest.MonkeyPatch.context() as mp:
        one_thread(mp)
        for study in study_files:
            results = tmp_path_factory.mktemp("reference") / study.stem
            result = sweep_cli(CliRunner(), study, results, "--executor", "inprocess")
            assert result.exit_code == 0, result.output
            out[study.stem] = results
    return out


class BreakOne:
    """Wraps an executor and hands it one task whose config names a model that does not exist, so that run
    raises inside the worker, as a run with a bad recipe would. Nothing in the executors knows about this."""

    def __init__(self, inner, run_id: str):
        self.inner, self.run_id = inner, run_id
        self.name = inner.name

    def map(self, tasks):
        def broken(t):
            return dataclasses.replace(t, config={**t.config, "model": {"name": "no_such_model"}})

        yield from self.inner.map([broken(t) if t.run_id == self.run_id else t for t in tasks])
