"""Seed planning: how many seeds a study needs to find a loss of a given size, from a pilot's (or a finished
study's) seed variances, at the report's error rate.

For class k the per-seed change has variance phi_k (v_on + v_off), phi_k being the class's seed variance relative
to the binomial variance of its test images, as the moderated test estimates it (its prior, fitted on every arm
of the results), v = p (1 - p) / n at the off accuracy and at the off accuracy minus the effect. With R seeds the
moderated t has R - 1 + d0 degrees of freedom and a non-centrality of effect / sqrt(phi_k (v_on + v_off) / R).
Each test of a report is made at the level Benjamini-Hochberg effectively uses when `n_harmed` of its `n_tests`
classes truly lose and each is found with the target power: alpha * n_harmed * power / n_tests (Jung 2005,
"Sample size for FDR-control in microarray data analysis").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from classaudit.analysis.change import fit_priors  # the same prior the test itself fits
from classaudit.analysis.checks import INVALID_OPTION, AnalysisError, check_fraction, split_rows
from classaudit.analysis.points import off_strengths
from classaudit.analysis.significance import binomial_variance


def power(effect: float, accuracy: float, images: int, scale: float, prior_df: float, seeds: int, level: float):
    """The chance a paired moderated t-test at `level` (two-sided) finds a loss of `effect` for a class at
    `accuracy` with `images` test images, seed variance `scale` times binomial, prior degrees of freedom
    `prior_df`, and `seeds` seeds a side."""
    variance = scale * (binomial_variance(accuracy, images) + binomial_variance(accuracy - effect, images))
    shift = effect / np.sqrt(variance / seeds)
    df = seeds - 1 + prior_df
    critical = stats.t.ppf(1 - level / 2, df)
    return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))


def seeds_needed(results: pd.DataFrame, *, effect: float = 0.03, power_target: float = 0.8, alpha: float = 0.05,
                 n_harmed: int = 3, n_tests: int | None = None, max_seeds: int = 50) -> pd.DataFrame:
    """Seeds per arm each class needs for a loss of `effect` (0.03 = 3 points) to be found with `power_target`.

    Parameters
    ----------
    results : DataFrame
        A results frame with at least two seeds on several arms (a pilot or a finished study), test split.
    effect, power_target, alpha : float
        The loss to find, the chance to find it, the report's false discovery rate.
    n_harmed : int
        How many classes of the report truly lose that much (the Benjamini-Hochberg level depends on it).
    n_tests : int, optional
        Tests in the report's family; default: the results' non-off strengths x classes.
    max_seeds : int
        Largest count considered; a class that needs more gets NaN.

    Returns
    -------
    DataFrame
        One row per class: ``class_id, class_name, accuracy_off, images, scale, prior_df, seeds`` (the seeds each
        arm needs), and ``power_at_seeds`` (the power with that many).
    """
    check_fraction("effect", effect)
    check_fraction("power_target", power_target)
    check_fraction("alpha", alpha)
    if isinstance(n_harmed, bool) or not isinstance(n_harmed, (int, np.integer)) or n_harmed < 1:
        raise AnalysisError(INVALID_OPTION.format(name="n_harmed", value=n_harmed, allowed="a whole number >= 1"))
    rows = split_rows(results, "test")
    off = off_strengths(results)
    prior, per_cell = fit_priors(rows)
    if not prior.scale > 0:
        raise AnalysisError("the results have too few arms with 2 or more seeds to estimate the seed variance; "
                            "train at least 2 seeds of at least 3 configurations (a pilot) first")
    if n_tests is None:
        n_tests = int(sum(len(set(axis["strength"])) - 1 for _, axis in rows.groupby("regularizer"))
                      * rows["class_id"].nunique()) or rows["class_id"].nunique()
    level = alpha * min(n_harmed, n_tests) * power_target / n_tests
    off_rows = rows[rows["is_off"].astype(bool) & (rows["regularizer"] == sorted(off)[0])]
    by_class = off_rows.groupby("class_id").agg(class_name=("class_name", "first"), accuracy_off=("accuracy", "mean"),
                                                images=("n", "max"))
    out = []
    for k, row in by_class.iterrows():
        # The class's prior as the test would use it for a new arm: pooled over all its arms.
        cells = [v for (r, s, c), v in per_cell.items() if c == k and r == ""] or [(prior.scale, prior.df)]
        scale, prior_df = cells[0]
        found = [(r, power(effect, row["accuracy_off"], int(row["images"]), scale, prior_df, r, level))
                 for r in range(2, max_seeds + 1)]
        enough = [(r, p) for r, p in found if p >= power_target]
        seeds, at = enough[0] if enough else (np.nan, found[-1][1])
        out.append((int(k), row["class_name"], row["accuracy_off"], int(row["images"]), scale, prior_df, seeds, at))
    return pd.DataFrame(out, columns=["class_id", "class_name", "accuracy_off", "images", "scale", "prior_df", "seeds",
                                      "power_at_seeds"])
