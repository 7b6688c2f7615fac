"""Tests of classaudit.analysis on hand-checkable literal frames: exact values, invariants and error messages.

The statistical calibration (null rate, power) lives in test_analysis_calibration.py.
"""

from __future__ import annotations

import doctest
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import recall_score

from classaudit import analysis as ca
from classaudit.analysis.schema import RESULTS_NEEDED
from classaudit.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]

# The literal sweep: one axis "crop" (off = 1.0) and strength 0.5, seeds 0 and 1, three classes.
# Test split: 4 images per class (indices 0-3 class 0, 4-7 class 1, 8-11 class 2).
TEST_LABELS = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
TEST_PREDS = {
    (1.0, 0): [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 1],  # class 2 loses image 11 to class 1
    (1.0, 1): [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2],
    (0.5, 0): [1, 1, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2],  # class 0 loses images 0, 1 to class 1
    (0.5, 1): [1, 0, 0, 0, 2, 1, 1, 1, 2, 2, 2, 2],  # class 0 loses image 0 to 1, class 1 image 4 to 2
}
# Validation split: 2 images per class; only the off run of seed 0 makes a mistake, so s* = 0.5.
VAL_LABELS = [0, 0, 1, 1, 2, 2]
VAL_PREDS = {
    (1.0, 0): [1, 0, 1, 1, 2, 2],
    (1.0, 1): [0, 0, 1, 1, 2, 2],
    (0.5, 0): [0, 0, 1, 1, 2, 2],
    (0.5, 1): [0, 0, 1, 1, 2, 2],
}


def literal_predictions() -> pd.DataFrame:
    rows = []
    for split, labels, preds in (("test", TEST_LABELS, TEST_PREDS), ("val", VAL_LABELS, VAL_PREDS)):
        for (strength, seed), pred in preds.items():
            rows += [{"regularizer": "crop", "strength": strength, "seed": seed, "split": split, "label": label,
                      "pred": p} for label, p in zip(labels, pred)]
    return pd.DataFrame(rows)


@pytest.fixture
def literal():
    return ca.from_predictions(literal_predictions(), off={"crop": 1.0}, class_names=["cat", "dog", "fox"],
                               return_predictions=True)


def column(frame, name, **where):
    """One column as a list, after selecting rows by equality."""
    for key, value in where.items():
        frame = frame[frame[key] == value]
    return frame[name].tolist()


# ---------------------------------------------------------------- from_predictions


def test_from_predictions_schema_and_counts(literal):
    results, predictions = literal
    assert list(results.columns) == ["study", "run_id", "regularizer", "strength", "is_off", "seed", "split",
                                     "class_id", "class_name", "n", "correct", "accuracy"]
    assert list(predictions.columns) == ["study", "run_id", "regularizer", "strength", "is_off", "seed", "split",
                                         "index", "label", "pred", "p_true"]
    test = results[results["split"] == "test"]
    assert column(test, "accuracy", strength=1.0, seed=0) == [1.0, 1.0, 0.75]
    assert column(test, "accuracy", strength=0.5, seed=1) == [0.75, 0.75, 1.0]
    assert column(test, "class_name", strength=0.5, seed=0) == ["cat", "dog", "fox"]
    assert set(test["n"]) == {4}
    assert column(results, "is_off", strength=1.0, seed=0, split="test") == [True] * 3
    assert results["run_id"].nunique() == 4
    assert predictions["p_true"].isna().all()
    # The image index is each run's row order.
    assert column(predictions, "index", strength=0.5, seed=1, split="val") == list(range(6))


def test_per_class_accuracy_equals_sklearn_recall():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 400)
    preds = np.where(rng.random(400) < 0.6, labels, rng.integers(0, 5, 400))
    frame = pd.DataFrame({"regularizer": "wd", "strength": 0.0, "seed": 7, "label": labels, "pred": preds})
    table = ca.by_class(ca.from_predictions(frame, off={"wd": 0.0}))
    np.testing.assert_allclose(table["mean"], recall_score(labels, preds, average=None))


def test_string_labels_are_ids_sorted_by_name_or_class_names_order():
    frame = pd.DataFrame({"regularizer": "crop", "strength": 1.0, "seed": 0,
                          "label": ["dog", "cat", "emu", "cat"], "pred": ["dog", "dog", "emu", "cat"]})
    results = ca.from_predictions(frame, off={"crop": 1.0})
    assert results[["class_id", "class_name", "accuracy"]].values.tolist() == [
        [0, "cat", 0.5], [1, "dog", 1.0], [2, "emu", 1.0]]
    results = ca.from_predictions(frame, off={"crop": 1.0}, class_names=["emu", "dog", "cat"])
    assert results[["class_id", "class_name"]].values.tolist() == [[0, "emu"], [1, "dog"], [2, "cat"]]


def test_shared_off_rows_are_copied_under_every_axis_with_one_run_id():
    frame = pd.DataFrame({
        "regularizer": [None, None, "crop", "crop", "jitter", "jitter"],
        "strength": [np.nan] * 2 + [0.5] * 2 + [0.8] * 2, "seed": 0, "label": [0, 1] * 3, "pred": [0, 1, 1, 1, 0, 0], "p": [0.9, 0.8, 0.1, 0.7, 0.6, 0.2],
    })
    results, predictions = ca.from_predictions(frame, off={"crop": 1.0, "jitter": 0.0}, p_true="p",
                                               return_predictions=True)
    off = results[results["is_off"]]
    assert off[["regularizer", "strength"]].drop_duplicates().values.tolist() == [["crop", 1.0], ["jitter", 0.0]]
    assert off["run_id"].nunique() == 1
    assert results["run_id"].nunique() == 3
    assert column(predictions, "p_true", regularizer="jitter", strength=0.0) == [0.9, 0.8]


def test_shared_off_run_is_the_baseline_of_every_axis():
    frame = pd.DataFrame({"regularizer": [None] * 4 + ["crop"] * 4 + ["jitter"] * 4, "seed": [0, 0, 1, 1] * 3,
                          "strength": [np.nan] * 4 + [0.5] * 4 + [0.8] * 4, "label": [0, 1] * 6,
                          "pred": [0, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1]})
    table = ca.difference(ca.from_predictions(frame, off={"crop": 1.0, "jitter": 0.0}), strength="all")
    assert table[["regularizer", "strength", "class_id", "mean_off", "delta"]].values.tolist() == [
        ["crop", 0.5, 0, 1.0, -1.0], ["crop", 0.5, 1, 0.5, 0.5], ["jitter", 0.8, 0, 1.0, 0.0],
        ["jitter", 0.8, 1, 0.5, 0.5]]


def test_is_off_column_marks_off_rows_per_axis():
    frame = pd.DataFrame({"regularizer": ["crop"] * 4, "strength": [1.0, 1.0, 0.5, 0.5], "seed": 0,
                          "is_off": [True, True, False, False], "label": [0, 1, 0, 1], "pred": [0, 1, 1, 1]})
    results = ca.from_predictions(frame)
    assert column(results, "is_off", strength=1.0) == [True, True]
    assert column(results, "is_off", strength=0.5) == [False, False]


def test_from_predictions_does_not_modify_input_and_ignores_row_order():
    frame = literal_predictions().assign(index=lambda f: f.groupby(["strength", "seed", "split"]).cumcount())
    before = frame.copy()
    results = ca.from_predictions(frame, off={"crop": 1.0}, index="index")
    pd.testing.assert_frame_equal(frame, before)
    shuffled = frame.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(ca.from_predictions(shuffled, off={"crop": 1.0}, index="index"), results)


# ---------------------------------------------------------------- by_class, overall, choose_strength


def test_by_class_exact(literal):
    results, _ = literal
    table = ca.by_class(results)
    assert list(table.columns) == ["regularizer", "strength", "is_off", "class_id", "class_name", "n_images",
                                   "n_seeds", "mean", "std", "sem", "ci_low", "ci_high", "sampling_floor"]
    assert table[["strength", "class_id"]].values.tolist() == [[0.5, 0], [0.5, 1], [0.5, 2], [1.0, 0], [1.0, 1],
                                                               [1.0, 2]]
    assert column(table, "mean", strength=1.0) == [1.0, 1.0, 0.875]
    assert column(table, "mean", strength=0.5) == [0.625, 0.875, 1.0]
    row = table.iloc[0]  # class 0 at 0.5: seeds 0.5 and 0.75
    assert row["std"] == pytest.approx(math.sqrt(0.03125))
    assert row["sem"] == pytest.approx(0.125)
    half = stats.t.ppf(0.975, 1) * 0.125
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.625 - half, 0.625 + half))
    assert row["sampling_floor"] == pytest.approx(math.sqrt(0.625 * 0.375 / 4))


def test_by_class_one_seed_has_nan_spread():
    frame = pd.DataFrame({"regularizer": "crop", "strength": 1.0, "seed": 0, "label": [0, 0], "pred": [0, 1]})
    row = ca.by_class(ca.from_predictions(frame, off={"crop": 1.0})).iloc[0]
    assert row["n_seeds"] == 1 and row["mean"] == 0.5
    assert all(np.isnan(row[name]) for name in ("std", "sem", "ci_low", "ci_high"))


def test_overall_exact(literal):
    results, _ = literal
    table = ca.overall(results)
    assert list(table.columns) == ["regularizer", "strength", "is_off", "n_seeds", "n_classes", "mean", "std",
                                   "group_min", "group_max", "spread", "class_std", "worst_k_mean", "worst_class_id"]
    off = table[table["strength"] == 1.0].iloc[0]
    on = table[table["strength"] == 0.5].iloc[0]
    assert off["mean"] == pytest.approx((2.75 / 3 + 1) / 2)
    assert off["std"] == pytest.approx(np.std([2.75 / 3, 1.0], ddof=1))
    assert (off["group_min"], off["spread"], off["worst_class_id"]) == (0.875, 0.125, 2)
    assert on["mean"] == pytest.approx(2.5 / 3) and on["std"] == pytest.approx(0.0, abs=1e-12)
    assert (on["group_min"], on["group_max"], on["spread"], on["worst_class_id"]) == (0.625, 1.0, 0.375, 0)
    assert on["class_std"] == pytest.approx(np.std([0.625, 0.875, 1.0]))
    assert ca.overall(results, worst_k=2)["worst_k_mean"].tolist() == [0.75, 0.9375]


def test_overall_per_seed(literal):
    results, _ = literal
    table = ca.overall(results, per_seed=True)
    assert list(table.columns) == ["regularizer", "strength", "seed", "is_off", "n_classes", "mean", "group_min",
                                   "group_max", "spread", "class_std", "worst_k_mean", "worst_class_id"]
    assert table[["strength", "seed", "group_min", "worst_class_id"]].values.tolist() == [
        [0.5, 0, 0.5, 0], [0.5, 1, 0.75, 0], [1.0, 0, 0.75, 2], [1.0, 1, 1.0, 0]]


def test_choose_strength_on_val_and_reports_test(literal):
    results, _ = literal
    table = ca.choose_strength(results)
    assert list(table.columns) == ["regularizer", "off_strength", "chosen_strength", "select_accuracy", "accuracy",
                                   "accuracy_off", "gain"]
    row = table.iloc[0]
    assert (row["chosen_strength"], row["off_strength"], row["select_accuracy"]) == (0.5, 1.0, 1.0)
    assert row["accuracy"] == pytest.approx(2.5 / 3)
    assert row["gain"] == pytest.approx(2.5 / 3 - (2.75 / 3 + 1) / 2)


def test_choose_strength_ties_go_to_the_strength_closest_to_off():
    # Every strength is perfect: the tie goes to off (1.0); without off, to 0.5 rather than 0.08.
    frame = pd.DataFrame({"regularizer": "crop", "strength": [1.0, 0.5, 0.08], "seed": 0, "label": 0, "pred": 0})
    assert ca.choose_strength(ca.from_predictions(frame, off={"crop": 1.0}), select_on="test")[
        "chosen_strength"].tolist() == [1.0]
    frame["pred"] = [1, 0, 0]
    assert ca.choose_strength(ca.from_predictions(frame, off={"crop": 1.0}), select_on="test")[
        "chosen_strength"].tolist() == [0.5]


# ---------------------------------------------------------------- difference, harmed_fraction, regret


def test_difference_exact_paired(literal):
    results, _ = literal
    table = ca.difference(results, alpha=0.6, test="paired")
    assert list(table.columns) == ["regularizer", "strength", "class_id", "class_name", "n_seeds_off", "n_seeds",
                                   "mean_off", "mean", "delta", "ci_low", "ci_high", "p_value", "q_value",
                                   "harmed", "helped", "test_used"]
    assert table["delta"].tolist() == [-0.375, -0.125, 0.125]
    assert set(table["test_used"]) == {"paired"}
    # Per-seed differences: class 0 (-0.5, -0.25): t = -3 with 1 df; classes 1 and 2: |t| = 1.
    t_p = lambda t: 1 - 2 * math.atan(t) / math.pi  # two-sided p of Student's t with 1 df
    assert table["p_value"].tolist() == pytest.approx([t_p(3), t_p(1), t_p(1)])
    assert table["q_value"].tolist() == pytest.approx([0.5, 0.5, 0.5])  # BH: min(3 p1, 1.5 p2, p3) = 0.5
    half = stats.t.ppf(0.975, 1) * 0.125
    np.testing.assert_allclose(table[["ci_low", "ci_high"]].to_numpy(dtype=float), [
        [-0.375 - half, -0.375 + half], [-0.125 - half, -0.125 + half], [0.125 - half, 0.125 + half]])
    assert table["harmed"].tolist() == [True, True, False]
    assert table["helped"].tolist() == [False, False, True]
    # The minimum effect is tested (TREAT), not filtered: class 0's loss of 0.375 is not shown to exceed 0.2 with
    # one degree of freedom, p = P(T > 0.175 / 0.125) + P(T > 0.575 / 0.125).
    strict = ca.difference(results, alpha=0.6, min_effect=0.2, test="paired")
    assert strict["p_value"].iloc[0] == pytest.approx(stats.t.sf(1.4, 1) + stats.t.sf(4.6, 1))
    assert not strict["harmed"].any() and not strict["helped"].any()


def test_difference_strength_options_agree(literal):
    results, _ = literal
    chosen = ca.difference(results)
    pd.testing.assert_frame_equal(ca.difference(results, strength=None), chosen)
    pd.testing.assert_frame_equal(ca.difference(results, strength=0.5), chosen)
    pd.testing.assert_frame_equal(ca.difference(results, strength="all"), chosen)
    pd.testing.assert_frame_equal(ca.difference(results, strength={"crop": 0.5}), chosen)


def test_difference_at_off_is_identical(literal):
    results, _ = literal
    table = ca.difference(results, strength=1.0)
    assert set(table["test_used"]) == {"identical"}
    assert table["delta"].tolist() == [0.0] * 3 and table["p_value"].tolist() == [1.0] * 3
    assert not table["harmed"].any()


def test_harmed_fraction_exact(literal):
    results, _ = literal
    table = ca.harmed_fraction(ca.difference(results, alpha=0.6))
    assert list(table.columns) == ["regularizer", "strength", "n_classes", "n_harmed", "n_helped", "fraction_harmed",
                                   "worst_class_id", "worst_class_name", "worst_class_delta"]
    assert table.values.tolist() == [["crop", 0.5, 3, 2, 1, 2 / 3, 0, "cat", -0.375]]


def test_regret_exact(literal):
    results, _ = literal
    table = ca.regret(results)
    assert list(table.columns) == ["regularizer", "class_id", "class_name", "best_strength", "best_accuracy",
                                   "chosen_strength", "chosen_accuracy", "regret"]
    # Each class's best strength is picked on val (cat: 0.5; dog and fox tie, so off), its accuracy read on
    # test: fox's val-best strength is worse on test than the chosen one, a negative regret.
    assert table[["class_id", "best_strength", "best_accuracy", "chosen_accuracy", "regret"]].values.tolist() == [
        [0, 0.5, 0.625, 0.625, 0.0], [1, 1.0, 1.0, 0.875, 0.125], [2, 1.0, 0.875, 1.0, -0.125]]
    # A class with no validation images keeps its row, without a best strength.
    no_fox = ca.regret(results[~((results["split"] == "val") & (results["class_id"] == 2))])
    assert no_fox["class_id"].tolist() == [0, 1, 2] and no_fox["best_strength"].isna().tolist() == [False] * 2 + [True]
    # select_on="test" picks both on test: s* is then off (95.8% against 83.3% at 0.5), and only fox, best at
    # 0.5 (100% against 87.5%), gives anything up.
    on_test = ca.regret(results, select_on="test")
    assert on_test[["class_id", "best_strength", "best_accuracy", "chosen_strength", "chosen_accuracy",
                    "regret"]].values.tolist() == [
        [0, 1.0, 1.0, 1.0, 1.0, 0.0], [1, 1.0, 1.0, 1.0, 1.0, 0.0], [2, 0.5, 1.0, 1.0, 0.875, 0.125]]


def seeds_frame(off_correct, on_correct, n=100, off_seeds=None, on_seeds=None) -> pd.DataFrame:
    """Results of one class (n images), one row per seed, from correct counts per arm."""
    rows = []
    for strength, counts, seeds in ((0.0, off_correct, off_seeds), (1.0, on_correct, on_seeds)):
        for seed, correct in zip(seeds or range(len(counts)), counts):
            rows.append({"study": "s", "run_id": f"{strength}-{seed}", "regularizer": "wd", "strength": strength,
                         "is_off": strength == 0.0, "seed": seed, "split": "test", "class_id": 0, "class_name": "a",
                         "n": n, "correct": correct, "accuracy": correct / n})
    return pd.DataFrame(rows)


def test_difference_zero_variance_equal_means_gives_p_one():
    table = ca.difference(seeds_frame([100] * 3, [100] * 3), strength="all")
    assert table[["delta", "ci_low", "ci_high", "p_value"]].values.tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_difference_zero_variance_different_means_uses_fisher_on_counts():
    table = ca.difference(seeds_frame([100] * 3, [90] * 3), strength="all")
    assert table["test_used"].tolist() == ["fisher"]
    assert table["p_value"].iloc[0] == pytest.approx(stats.fisher_exact([[90, 10], [100, 0]]).pvalue)
    assert table["delta"].iloc[0] == pytest.approx(-0.1)


def test_difference_paired_with_constant_differences_uses_the_exact_sign_flip_test():
    # Every seed loses one point: the paired t statistic is infinite. Of the 2**3 sign patterns of the three
    # changes, 2 are as extreme, so p = 0.25, however large the common change; the interval is Welch's.
    for off, on in (([80, 90, 70], [79, 89, 69]), ([80, 90, 70], [60, 70, 50])):
        table = ca.difference(seeds_frame(off, on), strength="all", test="paired")
        assert table["test_used"].tolist() == ["sign_flip"]
        assert table["p_value"].iloc[0] == pytest.approx(0.25)
        welch = stats.ttest_ind(np.array(on) / 100, np.array(off) / 100, equal_var=False).confidence_interval(0.95)
        assert table[["ci_low", "ci_high"]].iloc[0].tolist() == pytest.approx([welch.low, welch.high])


def test_difference_auto_falls_back_to_the_plain_tests_without_a_prior_and_picks_none():
    # One class and one strength give two arms, too few to fit the moderated test's prior: the plain tests run.
    welch = ca.difference(seeds_frame([80, 82, 85], [70, 75, 71], on_seeds=[3, 4, 5]), strength="all")
    assert welch["test_used"].tolist() == ["welch"]
    assert welch["p_value"].iloc[0] == pytest.approx(
        stats.ttest_ind([0.70, 0.75, 0.71], [0.80, 0.82, 0.85], equal_var=False).pvalue)
    permutation = ca.difference(seeds_frame([80, 82, 85, 81, 83], [70, 75, 71, 72, 74],
                                            on_seeds=[5, 6, 7, 8, 9]), strength="all", test="permutation")
    assert permutation["test_used"].tolist() == ["permutation"]
    assert permutation["p_value"].iloc[0] == pytest.approx(2 / 252)  # complete separation, exact test
    none = ca.difference(seeds_frame([80], [70, 75, 71]), strength="all")
    assert none["test_used"].tolist() == ["none"] and none["p_value"].isna().all()
    assert not none["harmed"].any()


def test_arms_sharing_some_seeds_are_compared_on_the_shared_ones():
    # Off has seeds 0-4, the strength 0-3 (a sweep still running): both the change and the test pair seeds 0-3.
    frame = seeds_frame([80, 90, 70, 85, 60], [76, 85, 67, 80], on_seeds=[0, 1, 2, 3])
    table = ca.difference(frame, strength="all")
    assert table["test_used"].tolist() == ["paired"]
    assert table[["n_seeds_off", "n_seeds"]].values.tolist() == [[4, 4]]
    assert table["delta"].iloc[0] == pytest.approx(-0.0425)
    assert table["p_value"].iloc[0] == pytest.approx(
        stats.ttest_rel([0.76, 0.85, 0.67, 0.80], [0.80, 0.90, 0.70, 0.85]).pvalue)
    # A named unpaired test still uses every seed.
    assert ca.difference(frame, strength="all", test="welch")["n_seeds_off"].tolist() == [5]
    # Arms that each have seeds of their own (5 each, 2 shared) are not cut down to the 2 shared seeds: all 10
    # runs go into the permutation test.
    both = seeds_frame([80, 90, 70, 85, 60], [76, 85, 67, 80, 62], on_seeds=[3, 4, 5, 6, 7])
    table = ca.difference(both, strength="all", test="permutation")
    assert table["test_used"].tolist() == ["permutation"] and table[["n_seeds_off", "n_seeds"]].values.tolist() == [[5, 5]]


def test_permutation_keeps_the_zero_variance_rule():
    # Every seed at 100/100 off and 99/100 on: the seeds carry no spread, so the counts are tested (Fisher),
    # whichever seeds the arms have; permuting constant seeds would give the smallest p there is, 2/252.
    frame = seeds_frame([100] * 5, [99] * 5, on_seeds=range(5, 10))
    table = ca.difference(frame, strength="all")
    assert table["test_used"].tolist() == ["fisher"]
    assert table["p_value"].iloc[0] == pytest.approx(stats.fisher_exact([[99, 1], [100, 0]]).pvalue)


def test_a_class_missing_from_one_seeds_run_is_untested():
    frame = pd.concat([seeds_frame([80, 82, 85], [70, 75, 71]),
                       seeds_frame([80, 82, 85], [70, 75], on_seeds=[0, 1]).assign(class_id=1, class_name="b")])
    table = ca.difference(frame, strength="all")
    assert table["test_used"].tolist() == ["moderated", "none"]
    assert table[["n_seeds_off", "n_seeds"]].values.tolist() == [[3, 3], [3, 2]]  # the missing seed is counted
    assert np.isfinite(table["p_value"].iloc[0]) and np.isnan(table["p_value"].iloc[1])
    assert not table["harmed"].iloc[1]


def test_permutation_is_seeded_and_independent_of_other_rows():
    # 8 seeds a side: C(16, 8) = 12870 arrangements > 9999, so the test samples.
    rng = np.random.default_rng(1)
    frame = seeds_frame(rng.binomial(100, 0.8, 8), rng.binomial(100, 0.78, 8), on_seeds=range(8, 16))
    first = ca.difference(frame, strength="all", test="permutation")
    assert first["p_value"].tolist() == ca.difference(frame, strength="all", test="permutation")["p_value"].tolist()
    other = ca.difference(frame, strength="all", test="permutation", rng=1)["p_value"].iloc[0]
    assert other != first["p_value"].iloc[0] and other == pytest.approx(first["p_value"].iloc[0], abs=0.02)
    wider = pd.concat([frame, frame.assign(regularizer="ls")])
    assert column(ca.difference(wider, strength="all", test="permutation"), "p_value", regularizer="wd") == [
        first["p_value"].iloc[0]]


# ---------------------------------------------------------------- one seed: McNemar


def one_seed_predictions(lost: int, gained: int = 0) -> pd.DataFrame:
    """Two classes of 100 images; at strength 0.5, class 0 loses `lost` images to class 1 and regains `gained`
    that the off run got wrong."""
    labels = np.repeat([0, 1], 100)
    off = labels.copy()
    off[:gained] = 1
    on = labels.copy()
    on[gained:gained + lost] = 1
    return pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 200 + [0.5] * 200, "seed": 0,
                         "label": np.tile(labels, 2), "pred": np.concatenate([off, on])})


def test_one_seed_falls_back_to_mcnemar_and_finds_a_planted_change():
    results, predictions = ca.from_predictions(one_seed_predictions(lost=20), off={"crop": 1.0},
                                               return_predictions=True)
    table = ca.difference(results, strength="all", predictions=predictions)
    assert table["test_used"].tolist() == ["mcnemar", "mcnemar"]
    assert table["delta"].tolist() == pytest.approx([-0.2, 0.0])
    assert table["p_value"].tolist() == pytest.approx([2 * 0.5 ** 20, 1.0])  # b = 20, c = 0 discordant
    # The two runs differ on class 0, but one run a side cannot blame the strength for it: nothing is flagged.
    assert table["q_value"].iloc[0] < 1e-4 and not table["harmed"].any() and not table["helped"].any()
    # The interval is (b + c) / n (2 [lo, hi] - 1) with [lo, hi] the exact interval of c / (b + c) = 0 / 20.
    high = stats.binomtest(0, 20).proportion_ci(0.95, method="exact").high
    assert table[["ci_low", "ci_high"]].iloc[0].tolist() == pytest.approx([-0.2, 0.2 * (2 * high - 1)])


def test_mcnemar_balanced_discordance_is_not_a_change():
    results, predictions = ca.from_predictions(one_seed_predictions(lost=5, gained=5), off={"crop": 1.0},
                                               return_predictions=True)
    table = ca.difference(results, strength="all", predictions=predictions)
    assert table["delta"].iloc[0] == 0.0 and table["p_value"].iloc[0] == pytest.approx(1.0)


# ---------------------------------------------------------------- confusion, false positives, churn


def test_confusion_shift_exact(literal):
    _, predictions = literal
    table = ca.confusion_shift(predictions, regularizer="crop", strength=0.5)
    assert list(table.columns) == ["regularizer", "strength", "class_id", "predicted_id", "rate_off", "rate", "delta"]
    assert table[["class_id", "predicted_id", "rate_off", "rate", "delta"]].values.tolist() == [
        [0, 0, 1.0, 0.625, -0.375], [0, 1, 0.0, 0.375, 0.375],
        [1, 1, 1.0, 0.875, -0.125], [1, 2, 0.0, 0.125, 0.125],
        [2, 1, 0.125, 0.0, -0.125], [2, 2, 0.875, 1.0, 0.125]]
    one = ca.confusion_shift(predictions, regularizer="crop", strength=0.5, class_id=2)
    assert one["predicted_id"].tolist() == [1, 2]


def test_absorbers_exact(literal):
    _, predictions = literal
    table = ca.absorbers(predictions, regularizer="crop", strength=0.5)
    assert list(table.columns) == ["regularizer", "strength", "class_id", "rank", "predicted_id", "rate_off", "rate",
                                   "delta", "share_of_loss"]
    assert table[["class_id", "rank", "predicted_id", "delta", "share_of_loss"]].values.tolist() == [
        [0, 1, 1, 0.375, 1.0], [1, 1, 2, 0.125, 1.0]]


def test_false_positive_shift_exact(literal):
    _, predictions = literal
    table = ca.false_positive_shift(predictions, regularizer="crop", strength=0.5)
    assert list(table.columns) == ["regularizer", "strength", "class_id", "false_positives_off", "false_positives",
                                   "delta"]
    assert table[["class_id", "false_positives_off", "false_positives", "delta"]].values.tolist() == [
        [0, 0.0, 0.0, 0.0], [1, 0.5, 1.5, 1.0], [2, 0.0, 0.5, 0.5]]


def test_churn_exact(literal):
    _, predictions = literal
    table = ca.churn(predictions)
    assert list(table.columns) == ["regularizer", "strength", "is_off", "n_seeds", "churn"]
    np.testing.assert_allclose(table[["strength", "n_seeds", "churn"]].to_numpy(dtype=float),
                               [[0.5, 2, 2 / 12], [1.0, 2, 1 / 12]])
    per_class = ca.churn(predictions, per_class=True)
    assert list(per_class.columns) == ["regularizer", "strength", "class_id", "is_off", "n_seeds", "churn"]
    assert per_class[["strength", "class_id", "churn"]].values.tolist() == [
        [0.5, 0, 0.25], [0.5, 1, 0.25], [0.5, 2, 0.0], [1.0, 0, 0.0], [1.0, 1, 0.0], [1.0, 2, 0.25]]


def test_churn_averages_over_seed_pairs_and_is_nan_with_one_seed():
    # Three seeds on two images: pairs (0,1) differ on 1 image, (0,2) on 2, (1,2) on 1 -> mean 2/3 / 2.
    frame = pd.DataFrame({"regularizer": "crop", "strength": 1.0, "seed": [0, 0, 1, 1, 2, 2], "label": 0,
                          "pred": [0, 0, 1, 0, 1, 1]})
    _, predictions = ca.from_predictions(frame, off={"crop": 1.0}, return_predictions=True)
    assert ca.churn(predictions)["churn"].iloc[0] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    _, single = ca.from_predictions(frame[frame["seed"] == 0], off={"crop": 1.0}, return_predictions=True)
    assert np.isnan(ca.churn(single)["churn"].iloc[0])
    assert np.isnan(ca.churn(single, per_class=True)["churn"].iloc[0])


# ---------------------------------------------------------------- determinism, imports, examples


def test_outputs_do_not_depend_on_row_order(literal):
    results, predictions = literal
    shuffled = results.sample(frac=1.0, random_state=1)
    for function in (ca.by_class, ca.overall, ca.difference, ca.regret, ca.choose_strength):
        pd.testing.assert_frame_equal(function(shuffled), function(results))
    pd.testing.assert_frame_equal(ca.churn(predictions.sample(frac=1.0, random_state=2)), ca.churn(predictions))


def test_importing_analysis_does_not_import_torch():
    code = "import classaudit.analysis, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_docstring_examples_run():
    import importlib
    import pkgutil

    attempted = 0
    for module in pkgutil.iter_modules(ca.__path__):
        result = doctest.testmod(importlib.import_module(f"{ca.__name__}.{module.name}"),
                                 optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.name
        attempted += result.attempted
    assert attempted >= 10


# ---------------------------------------------------------------- error messages


def raises(message: str):
    return pytest.raises(ValueError, match="^" + re.escape(message) + "$")


def test_errors_are_value_errors_and_usage_errors():
    assert issubclass(ca.AnalysisError, ValueError) and issubclass(ca.AnalysisError, UsageError)


def accuracy_rows(seeds_by_strength: dict[float, dict[int, int]], off: float = 1.0) -> pd.DataFrame:
    """Results of one class of crop (100 images, val and test alike): {strength: {seed: correct}}."""
    rows = []
    for strength, seeds in seeds_by_strength.items():
        for seed, correct in seeds.items():
            for split in ("val", "test"):
                rows.append({"study": "s", "run_id": f"{strength}-{seed}", "regularizer": "crop",
                             "strength": strength, "is_off": strength == off, "seed": seed, "split": split,
                             "class_id": 0, "class_name": "a", "n": 100, "correct": correct,
                             "accuracy": correct / 100})
    return pd.DataFrame(rows)


def test_strengths_are_chosen_on_the_seeds_they_all_have():
    # Seed 1 of the off point finished, not yet of 0.5: off's lucky seed 1 must not decide against 0.5.
    frame = accuracy_rows({1.0: {0: 70, 1: 90}, 0.5: {0: 75}})
    chosen = ca.choose_strength(frame)
    assert chosen[["chosen_strength", "accuracy", "accuracy_off"]].values.tolist() == [[0.5, 0.75, 0.70]]
    # Seeds of their own at each strength are all used.
    other = frame.assign(seed=lambda f: f["seed"] + (f["strength"] == 0.5) * 10)
    assert ca.choose_strength(other)["chosen_strength"].tolist() == [1.0]


def test_strengths_are_chosen_on_shared_seeds_when_the_seed_sets_are_not_nested():
    # A failed run (0.5 lacks seed 2) and a pending one (0.25 lacks seed 3): no strength's seeds are among every
    # other's. Off's bad seed 2 (70) must not make 0.5, one point below off in each of its seeds, look better.
    # On the seeds all three share (0 and 1), off is best.
    frame = accuracy_rows({1.0: {0: 90, 1: 90, 2: 70, 3: 90}, 0.5: {0: 89, 1: 89, 3: 89},
                           0.25: {0: 85, 1: 85, 2: 65}})
    chosen = ca.choose_strength(frame)
    assert chosen[["chosen_strength", "accuracy_off"]].values.tolist() == [[1.0, 0.90]]
    assert ca.overall(frame[frame["seed"].isin([0, 1])]).set_index("strength")["mean"].idxmax() == 1.0
    assert ca.difference(frame, strength=0.5)["delta"].tolist() == pytest.approx([-0.01])


def test_no_validation_split(literal):
    results, _ = literal
    test_only = results[results["split"] == "test"]
    with raises(ca.NO_VALIDATION_SPLIT):
        ca.choose_strength(test_only)
    with raises(ca.NO_VALIDATION_SPLIT):
        ca.difference(test_only)
    with raises(ca.NO_VALIDATION_SPLIT):
        ca.regret(test_only, strength=0.5)
    with raises(ca.NO_VALIDATION_SPLIT):
        ca.class_dependence(test_only, strength="chosen")
    assert ca.choose_strength(test_only, select_on="test")["chosen_strength"].tolist() == [1.0]
    # Every function that chooses the strength takes the option the error names.
    assert ca.difference(test_only, select_on="test")["test_used"].unique().tolist() == ["identical"]
    assert ca.class_dependence(test_only, strength="chosen", select_on="test")["strength"].tolist() == [1.0]
    assert ca.regret(test_only, select_on="test")["chosen_strength"].unique().tolist() == [1.0]


def test_missing_split_and_columns(literal):
    results, _ = literal
    with raises(ca.SPLIT_MISSING.format(frame="results", split="train", present=["test", "val"])):
        ca.by_class(results, split="train")
    with raises(ca.MISSING_COLUMNS.format(frame="results", missing=["accuracy"], needed=list(RESULTS_NEEDED))):
        ca.overall(results.drop(columns="accuracy"))


def test_option_errors(literal):
    results, _ = literal
    with raises(ca.INVALID_OPTION.format(name="test", value="ttest",
                                         allowed="'auto', 'moderated', 'welch', 'paired', 'permutation'")):
        ca.difference(results, test="ttest")
    with raises(ca.UNKNOWN_STRENGTH.format(strength=0.3, regularizers="any regularizer", present={"crop": [0.5, 1.0]})):
        ca.difference(results, strength=0.3)
    with raises(ca.UNKNOWN_REGULARIZER.format(regularizer="crap", frame="results", hint=' (did you mean "crop"?)',
                                              present=["crop"])):
        ca.difference(results, strength={"crap": 0.5})
    with raises(ca.INVALID_OPTION.format(name="strength", value="all",
                                         allowed="'chosen', a number or {regularizer: strength}")):
        ca.regret(results, strength="all")
    with raises(ca.INVALID_OPTION.format(name="worst_k", value=0, allowed="a whole number >= 1")):
        ca.overall(results, worst_k=0)
    with raises(ca.INVALID_OPTION.format(name="alpha", value=5, allowed="a number between 0 and 1")):
        ca.difference(results, alpha=5)
    with raises(ca.UNKNOWN_STRENGTH.format(strength=0.3, regularizers="'crop'", present=[0.5, 1.0])):
        ca.confusion_shift(literal[1], regularizer="crop", strength=0.3)


def test_named_welch_on_shared_seeds():
    table = ca.difference(seeds_frame([80, 82, 85], [70, 75, 71]), strength="all", test="welch")
    assert table["test_used"].tolist() == ["welch"]
    assert table["p_value"].iloc[0] == pytest.approx(
        stats.ttest_ind([0.70, 0.75, 0.71], [0.80, 0.82, 0.85], equal_var=False).pvalue)


def test_named_test_that_the_seeds_do_not_allow():
    frame = seeds_frame([80, 82, 85], [70, 75, 71], on_seeds=[3, 4, 5])
    with raises(ca.TEST_NOT_APPLICABLE.format(test="paired", needs="the same seeds, at least 2, in both arms",
                                              regularizer="wd", strength=1.0, seeds=[3, 4, 5], seeds_off=[0, 1, 2])):
        ca.difference(frame, strength="all", test="paired")


def test_one_seed_a_side_without_predictions_is_untested_not_an_error():
    results, predictions = ca.from_predictions(one_seed_predictions(lost=20), off={"crop": 1.0},
                                               return_predictions=True)
    untested = ca.difference(results, strength="all")
    assert set(untested["test_used"]) == {"none"} and untested["p_value"].isna().all()
    assert not untested["harmed"].any()
    tested = ca.difference(results, strength="all", predictions=predictions)
    assert set(tested["test_used"]) == {"mcnemar"} and (tested["q_value"] < 0.05).any()  # with the images
    pd.testing.assert_series_equal(untested["delta"], tested["delta"])


def test_off_point_missing_in_results(literal):
    results, _ = literal
    with raises(ca.OFF_MISSING.format(regularizer="crop", present=[0.5])):
        ca.difference(results[~results["is_off"]], strength="all")


def test_from_predictions_errors():
    frame = literal_predictions()
    with raises(ca.MISSING_COLUMNS.format(frame="predictions", missing=["y"],
                                          needed=["regularizer", "strength", "seed", "y", "pred", "split"])):
        ca.from_predictions(frame, off={"crop": 1.0}, label="y")
    with raises(ca.NEED_OFF):
        ca.from_predictions(frame)
    with raises(ca.OFF_UNKNOWN_REGULARIZER.format(regularizer="jitter", hint="", present=["crop"]) + "\n" +
                ca.OFF_NOT_GIVEN.format(regularizer="crop", off={"jitter": 0.0})):
        ca.from_predictions(frame, off={"jitter": 0.0})
    with raises(ca.OFF_STRENGTH_MISSING.format(regularizer="crop", strength=0.08, present=[0.5, 1.0])):
        ca.from_predictions(frame, off={"crop": 0.08})
    shared = frame.assign(is_off=frame["strength"] == 1.0, regularizer=frame["regularizer"].astype(object))
    shared.loc[3, "regularizer"] = None
    with raises(ca.SHARED_OFF_NEEDS_MAPPING.format(count=1)):
        ca.from_predictions(shared)


def test_from_predictions_reports_every_problem_at_once():
    frame = literal_predictions()
    frame.loc[5, "label"] = np.nan
    frame.loc[7, "seed"] = np.nan
    frame.loc[9, "split"] = "train"
    expected = "\n".join([ca.NULL_VALUES.format(column="seed", count=1, row=7),
                          ca.NULL_VALUES.format(column="label", count=1, row=5)])
    with raises(expected):
        ca.from_predictions(frame, off={"crop": 1.0})
    frame = literal_predictions()
    frame.loc[9, "split"] = "train"
    frame["seed"] = frame["seed"].astype(float)
    frame.loc[2, "seed"] = 0.5
    with raises("\n".join([ca.NOT_WHOLE_NUMBER.format(column="seed", value=0.5, row=2),
                           ca.INVALID_SPLIT_VALUE.format(column="split", value="train", row=9)])):
        ca.from_predictions(frame, off={"crop": 1.0})


def test_runs_listing_their_images_in_different_orders_are_refused_or_paired_by_index():
    """Pairing images by row order is right only when every run lists them in the same order: a run that lists
    them in another order must be an error, not a McNemar test of one image's prediction against another's label."""
    off = pd.DataFrame({"label": [0] * 20 + [1] * 20, "pred": [0] * 20 + [1] * 20, "image": range(40)})
    on = pd.DataFrame({"label": [1] * 20 + [0] * 20, "pred": [1] * 20 + [0] * 19 + [1],  # one class-0 image lost
                       "image": [*range(20, 40), *range(20)]})
    frame = pd.concat([off.assign(strength=1.0), on.assign(strength=0.5)]).assign(regularizer="crop", seed=0)
    with raises(ca.INDEX_LABEL_CONFLICT.format(
            index=0, split="test", first=0, second=1, regularizer="crop", strength=1.0, seed=0,
            regularizer2="crop", strength2=0.5, seed2=0, hint=": without index=, each run's rows are taken in frame "
            "order, so every run must list its images in the same order; pass index=COLUMN to name each image")):
        ca.from_predictions(frame, off={"crop": 1.0})
    results, predictions = ca.from_predictions(frame, off={"crop": 1.0}, index="image", return_predictions=True)
    table = ca.difference(results, strength=0.5, predictions=predictions).set_index("class_id")
    # One discordant image in class 0 (b = 1, c = 0): exact McNemar p = 1; class 1 has none.
    assert table["p_value"].tolist() == [1.0, 1.0] and table["delta"].tolist() == pytest.approx([-0.05, 0.0])
    assert not table["harmed"].any()
    assert table.loc[0, "ci_low"] <= -0.05 <= table.loc[0, "ci_high"]

    mislabeled = predictions.copy()
    mislabeled.loc[mislabeled.index[0], "label"] = 1  # a frame not built by from_predictions
    with pytest.raises(ca.AnalysisError, match="image index 0 of split 'test' has label"):
        ca.difference(results, strength=0.5, predictions=mislabeled)
    two_seeds = pd.concat([predictions, mislabeled.assign(seed=1)])
    with pytest.raises(ca.AnalysisError, match="image index 0 of split 'test' has label"):
        ca.churn(two_seeds)


def test_from_predictions_label_and_index_errors():
    frame = pd.DataFrame({"regularizer": "crop", "strength": 1.0, "seed": 0, "label": ["cat", "dog"],
                          "pred": ["cat", "cow"], "index": [0, 0]})
    with raises(ca.UNKNOWN_LABEL.format(column="pred", value="cow", row=1)):
        ca.from_predictions(frame, off={"crop": 1.0}, class_names=["cat", "dog"])
    with raises(ca.DUPLICATE_INDEX.format(regularizer="crop", strength=1.0, seed=0, split="test", index=0)):
        ca.from_predictions(frame, off={"crop": 1.0}, index="index")
    numeric = frame.assign(label=[0, 1], pred=[0, 2])
    with raises(ca.CLASS_NAME_MISSING.format(class_id=2, column="pred")):
        ca.from_predictions(numeric, off={"crop": 1.0}, class_names=["cat", "dog"])
    with raises(ca.NOT_BOOL.format(value="yes", row=1)):
        ca.from_predictions(numeric.assign(is_off=[True, "yes"]))
    with raises(ca.OFF_MISSING.format(regularizer="crop", present=[1.0])):
        ca.from_predictions(numeric.assign(is_off=False))


def test_class_dependence_ranks_each_seeds_changes_across_classes():
    # Three classes; the strength has seeds 0-3, off 0-2, so seed 3 is left out.
    rows = []
    for strength, changes in ((0.0, None), (1.0, {0: [-0.10, -0.12, -0.11, 0.0], 1: [0.0, 0.01, -0.01, 0.0],
                                                   2: [0.02, 0.0, 0.01, 0.0]})):
        for seed in range(4 if strength == 1.0 else 3):
            for c in range(3):
                accuracy = 0.8 + (changes[c][seed] if changes else 0.0)
                rows.append({"study": "s", "run_id": f"{strength}-{seed}", "regularizer": "crop",
                             "strength": strength, "is_off": strength == 0.0, "seed": seed, "split": "test",
                             "class_id": c, "class_name": f"c{c}", "n": 100, "correct": round(accuracy * 100),
                             "accuracy": accuracy})
    results = pd.DataFrame(rows)
    table = ca.class_dependence(results)
    expected = stats.friedmanchisquare([-0.10, -0.12, -0.11], [0.0, 0.01, -0.01], [0.02, 0.0, 0.01])
    assert table[["regularizer", "strength", "n_seeds", "n_classes"]].values.tolist() == [["crop", 1.0, 3, 3]]
    assert table["friedman_p"].iloc[0] == pytest.approx(expected.pvalue)
    assert table["friedman_statistic"].iloc[0] == pytest.approx(expected.statistic)
    # The off point against itself; two shared seeds are too few.
    itself = ca.class_dependence(results, strength={"crop": 0.0})
    assert itself[["friedman_statistic", "friedman_p"]].values.tolist() == [[0.0, 1.0]]
    two_seeds = ca.class_dependence(results[results["seed"] < 2])
    assert two_seeds["n_seeds"].tolist() == [2] and two_seeds["friedman_p"].isna().all()
    # A seed missing a class is dropped while 3 complete seeds remain; with fewer, the class is dropped instead.
    extra = results[(results["seed"] == 0)].assign(seed=9, run_id=lambda f: f["run_id"] + "x")
    partial = pd.concat([results, extra[extra["class_id"] != 2]])
    assert ca.class_dependence(partial)[["n_seeds", "n_classes"]].values.tolist() == [[3, 3]]
    short = partial[partial["seed"] != 1]
    assert ca.class_dependence(short)[["n_seeds", "n_classes"]].values.tolist() == [[3, 2]]


def test_repeated_runs_of_one_seed_are_named_not_a_pandas_error():
    # Two results folders concatenated: seed 1 appears twice, which no paired test can use.
    results = seeds_frame([80, 82, 85], [70, 75, 71])
    twice = pd.concat([results, results[results["seed"] == 1].assign(run_id="again")])
    message = ("the results frame has 4 rows that share a (regularizer, strength, seed, split, class_id), the first: "
               "regularizer 'wd', strength 0.0, seed 1, class_id 0 (run_id ['0.0-1', 'again'])")
    for analysis in (ca.difference, ca.class_dependence, ca.by_class):
        with pytest.raises(ca.AnalysisError, match=re.escape(message)):
            analysis(twice) if analysis is ca.by_class else analysis(twice, strength="all")
