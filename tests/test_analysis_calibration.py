"""Statistical checks of classaudit.analysis.difference: calibration under the null, and power.

Each test builds one results frame holding 200 independent repetitions as 200 regularizer axes (each axis is its
own Benjamini-Hochberg family), so a single difference() call analyses them all. Per class and seed, the count
of correct images is Binomial(1000, a_k), like CIFAR-10's 1,000 test images per class, with a_k ~ U(0.6, 0.95)
for the null (seed spread 0.7-1.5 points, 1.2 on average) and a_k ~ U(0.8, 0.95) for the power tests (seed
spread 1.0 point on average).

Measured with the seeds below (200 repetitions x 10 classes, alpha = 0.05):
  null: fraction p < 0.05 / fraction harmed per class / repetitions with any class flagged
    paired (5 shared seeds)  0.051 / 0.0030 / 0.070
    welch (4 vs 4 seeds)     0.048 / 0.0015 / 0.030
    permutation (5 vs 5)     0.048 / 0.0005 / 0.005
  power, 5 points lost by 3 of 10 classes: planted classes found / repetitions with all three found /
  unaffected classes flagged harmed
    paired 0.957 / 0.875 / 0.009;  welch 0.945 / 0.855 / 0.003;  permutation 0.985 / 0.955 / 0.004
  (with the null's wider U(0.6, 0.95), 1.2 points of seed spread: paired 0.84, welch 0.84, permutation 0.91.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from classaudit import analysis as ca

REPS, CLASSES, IMAGES = 200, 10, 1000

# (expected test, off seeds, on seeds): "auto" pairs shared seeds, permutes 5 vs 5 distinct seeds, and uses
# Welch below 5 distinct seeds a side.
PATHS = {
    "paired": (range(5), range(5)),
    "welch": (range(4), range(4, 8)),
    "permutation": (range(5), range(5, 10)),
}


def synthetic_results(seed: int, off_seeds, on_seeds, effect=None, accuracy=(0.6, 0.95)) -> pd.DataFrame:
    """REPS repetitions of a two-point sweep (off = 0.0, on = 1.0) as axes r000..r199, in the results schema.

    True class accuracies are uniform in `accuracy`; `effect` (one value per class) is added at strength 1.0.
    """
    rng = np.random.default_rng(seed)
    truth = rng.uniform(*accuracy, size=(REPS, CLASSES))
    shift = np.zeros(CLASSES) if effect is None else np.asarray(effect)
    frames = []
    for strength, seeds, accuracy in ((0.0, list(off_seeds), truth), (1.0, list(on_seeds), truth + shift)):
        rep, cls, run = np.meshgrid(np.arange(REPS), np.arange(CLASSES), seeds, indexing="ij")
        correct = rng.binomial(IMAGES, accuracy[rep, cls]).ravel()
        regularizer = pd.Series(rep.ravel()).map("r{:03d}".format)
        frames.append(pd.DataFrame({
            "study": "calibration", "run_id": regularizer + f"-{strength}-" + pd.Series(run.ravel()).astype(str),
            "regularizer": regularizer, "strength": strength, "is_off": strength == 0.0, "seed": run.ravel(),
            "split": "test", "class_id": cls.ravel(), "class_name": pd.Series(cls.ravel()).map("c{}".format),
            "n": IMAGES, "correct": correct, "accuracy": correct / IMAGES,
        }))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_null_is_calibrated(path):
    table = ca.difference(synthetic_results(10, *PATHS[path]), strength="all")
    assert set(table["test_used"]) == {path}
    assert len(table) == REPS * CLASSES
    # Raw p-values: P(p < 0.05) = 0.05 under the null; the standard error over 2,000 tests is 0.005.
    assert 0.03 <= (table["p_value"] < 0.05).mean() <= 0.07
    # Flags: per class well below alpha (one-sided and FDR-adjusted), and per repetition BH keeps the chance
    # of any false flag near alpha (all nulls true, so FDR = family-wise rate).
    assert table["harmed"].mean() <= 0.06
    any_flag = (table["harmed"] | table["helped"]).groupby(table["regularizer"]).any()
    assert any_flag.mean() <= 0.09


@pytest.mark.parametrize("path", sorted(PATHS))
def test_power_on_planted_harm(path):
    effect = np.zeros(CLASSES)
    effect[:3] = -0.05  # 5 points lost by classes 0, 1, 2
    results = synthetic_results(20, *PATHS[path], effect=effect, accuracy=(0.8, 0.95))
    table = ca.difference(results, strength="all")
    planted = table["class_id"] < 3
    assert table.loc[planted, "harmed"].mean() >= 0.9
    assert table.loc[planted, "harmed"].groupby(table["regularizer"]).all().mean() >= 0.8
    # BH bounds the share of false discoveries among the flags, not the count: a few unaffected classes slip in.
    assert table.loc[~planted, "harmed"].mean() <= 0.02
