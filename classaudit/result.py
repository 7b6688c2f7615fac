"""RunResult: what one training run hands back. Plain numpy and JSON-able values, no torch, so the store,
the executors and the analysis can handle results anywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SplitPredictions:
    """Per-sample outcome on one split: true label, predicted label, probability given to the true label."""

    label: np.ndarray  # int64 [n]
    pred: np.ndarray  # int64 [n]
    p_true: np.ndarray  # float32 [n]

    def counts(self, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(images per class, correct per class)."""
        n = np.bincount(self.label, minlength=num_classes)
        correct = np.bincount(self.label[self.pred == self.label], minlength=num_classes)
        return n, correct


@dataclass
class TransferResult:
    """A linear probe of a trained run on a downstream task: its predictions on the downstream validation and
    test splits ("transfer_val", "transfer_test"), the downstream class names, and the probe's own choice of L2
    strength (made on transfer_val)."""

    transfer_id: str
    spec: dict[str, Any]  # the resolved [transfer] table
    class_names: list[str]
    splits: dict[str, SplitPredictions]
    probe: dict[str, Any] = field(default_factory=dict)  # chosen L2 strength, validation accuracy at each
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class RunResult:
    run_id: str
    config: dict[str, Any]
    class_names: list[str]
    splits: dict[str, SplitPredictions]
    curve: list[dict[str, float]] = field(default_factory=list)  # one entry per epoch
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    weights: bytes | None = None  # the trained model (torch.save of tensors), kept when a study probes its runs
    transfer: TransferResult | None = None  # the run's downstream probe, when its study has one
