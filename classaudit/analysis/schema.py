"""The analysis' frames: their columns, their splits, and how strengths compare. Public: `classaudit.store` writes
these columns and the report reads them, so each is defined here once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("val", "test")  # "val" chooses the strength, "test" reports it
# A run's linear probe on a study's downstream task: its own classes; "transfer_val" picks the probe's L2 strength
# (and, in the downstream view, the pre-training strength), "transfer_test" reports it.
TRANSFER_SPLITS = ("transfer_val", "transfer_test")
# The columns of the results frame (one row per run x axis x split x class) and of the predictions frame (one row
# per run x axis x split x image), in their order; the *_NEEDED tuples are those the analysis reads.
RESULTS_COLUMNS = ("study", "run_id", "regularizer", "strength", "is_off", "seed", "split", "class_id",
                   "class_name", "n", "correct", "accuracy")
PREDICTIONS_COLUMNS = ("study", "run_id", "regularizer", "strength", "is_off", "seed", "split", "index", "label",
                       "pred", "p_true")
RESULTS_NEEDED = ("regularizer", "strength", "is_off", "seed", "split", "class_id", "class_name", "n", "correct",
                  "accuracy")
PREDICTIONS_NEEDED = ("regularizer", "strength", "is_off", "seed", "split", "index", "label", "pred")
DIFFERENCE_COLUMNS = ("regularizer", "strength", "class_id", "class_name", "n_seeds_off", "n_seeds", "mean_off",
                      "mean", "delta", "ci_low", "ci_high", "p_value", "q_value", "harmed", "helped", "test_used")

# Accuracies closer than this are equal. Resolving 1e-9 would take a billion test images, while float rounding
# leaves ~1e-16 of noise: without this, seeds with identical counts look like a tiny non-zero variance and a
# t-test reports p ~ 1e-40.
TOL = 1e-9


def same_strength(a, b):
    """Strength equality that survives a round trip through text or float32 storage."""
    return np.isclose(a, b, rtol=1e-9, atol=0.0)


def floats(values) -> list[float]:
    """Sorted distinct values as plain floats, so messages print 0.5 rather than np.float64(0.5)."""
    return sorted(float(v) for v in pd.unique(values))


def plain(value):
    return value.item() if isinstance(value, np.generic) else value
