"""On a CUDA device: training, several runs sharing the device, and the memory check before they start. Every
test here is marked `cuda` and skipped without a CUDA device; `benchmarks/device_check.py` runs them on a GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import sweep_cli
from tests.test_train import tiny_config

pytestmark = pytest.mark.cuda


def test_a_run_trains_on_the_gpu():
    from classaudit.train import train_one

    result = train_one(tiny_config(), device="cuda")
    assert result.environment["device"].startswith("cuda") and "gpu" in result.environment
    assert np.isfinite([c["train_loss"] for c in result.curve]).all()


def test_a_runs_memory_is_measured_and_what_does_not_fit_is_refused():
    import torch

    from classaudit.errors import UsageError
    from classaudit.train import check_runs_fit, peak_memory

    config = tiny_config()
    assert peak_memory(config, torch.device("cuda:0")) > 0
    check_runs_fit(config, 1, ["cuda:0"])
    with pytest.raises(UsageError, match=r"^option --runs-per-device: value 100000 does not fit on cuda:0: "):
        check_runs_fit(config, 100_000, ["cuda:0"])


def test_runs_share_the_gpu(study_files, runner, tmp_path):
    tiny, _ = study_files
    out = sweep_cli(runner, tiny, tmp_path / "r", "--runs-per-device", "2", "--device", "auto")
    assert out.exit_code == 0, out.output
    assert "(local, 2 per device)" in out.output and "trained 6 run(s)" in out.output
    records = [json.loads(p.read_text()) for p in (tmp_path / "r" / "runs").glob("*/record.json")]
    assert {r["environment"]["device"] for r in records} <= {f"cuda:{i}" for i in range(8)}
