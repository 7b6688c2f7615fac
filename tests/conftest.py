"""Shared fixtures: tiny studies that train in seconds, and the CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture
def tiny_study(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_STUDY)
    return path


@pytest.fixture
def runner():
    from click.testing import CliRunner

    return CliRunner()
