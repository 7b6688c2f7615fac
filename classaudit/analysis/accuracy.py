"""Accuracy tables: per class (mean and spread over seeds) and across classes (the average, the worst class, the
spread), at every point of the sweep.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from scipy import stats

from classaudit.analysis.checks import INVALID_OPTION, AnalysisError, check_fraction, split_rows


def by_class(results: pd.DataFrame, *, split: str = "test", confidence: float = 0.95) -> pd.DataFrame:
    """Per-class accuracy at every point of the sweep: mean and spread over seeds.

    Parameters
    ----------
    results : DataFrame
        The results frame (one row per run, axis, split and class).
    split : {"test", "val"}
        Which split to summarise.
    confidence : float
        Level of the t interval for the mean over seeds.

    Returns
    -------
    DataFrame
        One row per (regularizer, strength, class), columns ``regularizer, strength, is_off, class_id,
        class_name, n_images, n_seeds, mean, std, sem, ci_low, ci_high, sampling_floor``. ``n_images`` is the
        class's image count in the split (the largest, if runs differ). ``std`` has ddof=1,
        so it, ``sem`` and the interval are NaN with one seed. ``sampling_floor`` is sqrt(mean (1 - mean) /
        n_images), the binomial standard error that the finite test set alone puts on one run's accuracy
        (about 1 point for 1,000 images): a seed spread near it is test-set noise, not training noise.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> preds = pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 4 + [0.5] * 4, "seed": 0,
    ...                       "label": [0, 0, 1, 1] * 2, "pred": [0, 0, 1, 1, 0, 1, 1, 1]})
    >>> results = ca.from_predictions(preds, off={"crop": 1.0})
    >>> ca.by_class(results)[["strength", "class_id", "mean"]].values.tolist()
    [[0.5, 0.0, 0.5], [0.5, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    """
    check_fraction("confidence", confidence)
    rows = split_rows(results, split)
    keys = ["regularizer", "strength", "class_id", "class_name"]
    out = rows.groupby(keys, sort=True).agg(
        is_off=("is_off", "first"), n_images=("n", "max"), n_seeds=("seed", "nunique"),
        mean=("accuracy", "mean"), std=("accuracy", "std"),
    ).reset_index()
    out["sem"] = out["std"] / np.sqrt(out["n_seeds"])
    # t.ppf with 0 degrees of freedom is NaN, so one seed gives a NaN interval rather than a made-up one.
    half = stats.t.ppf((1 + confidence) / 2, out["n_seeds"] - 1) * out["sem"]
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    out["sampling_floor"] = np.sqrt(out["mean"] * (1 - out["mean"]) / out["n_images"])
    return out[["regularizer", "strength", "is_off", "class_id", "class_name", "n_images", "n_seeds", "mean",
                "std", "sem", "ci_low", "ci_high", "sampling_floor"]]


def overall(results: pd.DataFrame, *, split: str = "test", worst_k: int = 3, per_seed: bool = False) -> pd.DataFrame:
    """Accuracy across classes at every point of the sweep: the average, the worst class and the spread.

    Parameters
    ----------
    results : DataFrame
        The results frame.
    split : {"test", "val"}
        Which split to summarise.
    worst_k : int
        How many of the worst classes ``worst_k_mean`` averages.
    per_seed : bool
        False: one row per (regularizer, strength), summarising the seed-mean accuracy of each class.
        True: one row per (regularizer, strength, seed), the same summaries within that one run.

    Returns
    -------
    DataFrame
        ``per_seed=False``: ``regularizer, strength, is_off, n_seeds, n_classes, mean, std, group_min,
        group_max, spread, class_std, worst_k_mean, worst_class_id``. ``mean`` is the macro accuracy (mean over
        classes) averaged over seeds and ``std`` its spread over seeds (ddof=1). ``group_min``/``group_max``
        are the lowest/highest seed-mean class accuracy, ``spread`` = group_max - group_min, ``class_std`` the
        standard deviation across classes (ddof=0: the K classes are all of them, not a sample),
        ``worst_k_mean`` the mean of the ``worst_k`` lowest classes and ``worst_class_id`` the lowest class
        (ties: lower id).
        ``per_seed=True``: ``regularizer, strength, seed, is_off, n_classes, mean, group_min, group_max,
        spread, class_std, worst_k_mean, worst_class_id``, each within one run.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> preds = pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 4 + [0.5] * 4, "seed": 0,
    ...                       "label": [0, 0, 1, 1] * 2, "pred": [0, 0, 1, 1, 0, 1, 1, 1]})
    >>> table = ca.overall(ca.from_predictions(preds, off={"crop": 1.0}))
    >>> table[["strength", "mean", "group_min", "worst_class_id"]].values.tolist()
    [[0.5, 0.75, 0.5, 0.0], [1.0, 1.0, 1.0, 0.0]]
    """
    if isinstance(worst_k, bool) or not isinstance(worst_k, numbers.Integral) or worst_k < 1:
        raise AnalysisError(INVALID_OPTION.format(name="worst_k", value=worst_k, allowed="a whole number >= 1"))
    rows = split_rows(results, split)
    point = ["regularizer", "strength"]
    if per_seed:
        keys = [*point, "seed"]
        out = _across_classes(rows[[*keys, "class_id", "accuracy"]], keys, worst_k)
        out["mean"] = rows.groupby(keys)["accuracy"].mean()
        columns = [*keys, "is_off", "n_classes", "mean"]
    else:
        keys = point
        class_means = rows.groupby([*keys, "class_id"], as_index=False)["accuracy"].mean()
        out = _across_classes(class_means, keys, worst_k)
        macro = rows.groupby([*keys, "seed"])["accuracy"].mean().groupby(keys)
        out["n_seeds"], out["mean"], out["std"] = macro.size(), macro.mean(), macro.std()
        columns = [*keys, "is_off", "n_seeds", "n_classes", "mean", "std"]
    out["is_off"] = rows.groupby(keys)["is_off"].first()
    columns += ["group_min", "group_max", "spread", "class_std", "worst_k_mean", "worst_class_id"]
    return out.reset_index()[columns]


def _across_classes(accuracy: pd.DataFrame, keys: list[str], worst_k: int) -> pd.DataFrame:
    """Summaries across classes of one accuracy per (keys, class_id) row, indexed by keys."""
    # Sorting once by accuracy (ties: lower class id) makes "first" the worst class and "head" the worst k.
    ranked = accuracy.sort_values([*keys, "accuracy", "class_id"])
    groups = ranked.groupby(keys, sort=True)
    out = groups.agg(n_classes=("class_id", "size"), group_min=("accuracy", "min"), group_max=("accuracy", "max"),
                     class_std=("accuracy", lambda a: a.std(ddof=0)), worst_class_id=("class_id", "first"))
    out["spread"] = out["group_max"] - out["group_min"]
    out["worst_k_mean"] = groups.head(worst_k).groupby(keys)["accuracy"].mean()
    return out
