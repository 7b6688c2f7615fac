"""The per-class tests on arrays: one row per class, one column per seed. Nothing here knows the frames; the change
module builds the arrays and names the results. Every test is scipy's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from classaudit.analysis.checks import TEST_NOT_APPLICABLE, AnalysisError
from classaudit.analysis.schema import TOL, plain


def pick_test(test: str, seeds_off: list, seeds_on: list, regularizer: str, strength: float) -> str:
    """The test the seeds allow (see difference's `test`), or an error when a named test does not apply."""
    same = sorted(seeds_off) == sorted(seeds_on)
    fewest = min(len(seeds_off), len(seeds_on))
    if test == "auto":
        if len(seeds_off) == len(seeds_on) == 1:
            return "mcnemar"
        if fewest < 2:
            return "none"
        if same:
            return "paired"
        # Five seeds a side give C(10, 5) = 252 arrangements, enough for p-values below 0.01.
        return "permutation" if fewest >= 5 else "welch"
    needs, allowed = {
        "paired": ("the same seeds, at least 2, in both arms", same and fewest >= 2),
        "welch": ("at least 2 seeds in each arm", fewest >= 2),
        "permutation": ("at least 2 seeds in each arm", fewest >= 2),
    }[test]
    if not allowed:
        raise AnalysisError(TEST_NOT_APPLICABLE.format(
            test=test, needs=needs, regularizer=regularizer, strength=plain(strength),
            seeds=[plain(s) for s in seeds_on], seeds_off=[plain(s) for s in seeds_off]))
    return test


def t_tests(on: pd.DataFrame, off: pd.DataFrame, *, paired: bool, confidence: float):
    """p-value, interval and test name per class from a t-test, with the zero-variance rule of difference()."""
    a = on["accuracy"].to_numpy()
    # Pairing is by seed, so the off columns are put in the on arm's seed order.
    b = off["accuracy"][list(on["accuracy"].columns)].to_numpy() if paired else off["accuracy"].to_numpy()
    # A class some seed's run has no images of (results from another tool) has no full set of seeds to test.
    complete = ~(np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1))
    with np.errstate(invalid="ignore"):
        delta = a.mean(axis=1) - b.mean(axis=1)
        constant = (np.ptp(a, axis=1) < TOL) & (np.ptp(b, axis=1) < TOL)
        degenerate = np.ptp(a - b, axis=1) < TOL if paired else constant
        equal = np.abs(delta) < TOL
    p, low, high = np.full(len(a), np.nan), np.full(len(a), np.nan), np.full(len(a), np.nan)
    used = np.where(complete, "paired" if paired else "welch", "none").astype(object)

    def run(mask, test, **options):
        if mask.any():
            result = test(a[mask], b[mask], axis=1, **options)
            interval = result.confidence_interval(confidence)
            p[mask], low[mask], high[mask] = result.pvalue, interval.low, interval.high

    run(complete & ~degenerate, stats.ttest_rel if paired else stats.ttest_ind,
        **({} if paired else {"equal_var": False}))
    # Constant per-seed differences but varying arms (paired only): the paired t statistic is infinite. The
    # sign-flip test of those differences is exact given their sizes |d| and so valid overall under the paired
    # null; with all n differences equal, only the all-plus and all-minus patterns are as extreme, p = 2 / 2**n
    # (scipy.stats.permutation_test with permutation_type="samples" gives this up to 13 seeds and resamples
    # beyond, hence the formula). It never rejects at 0.05 below 6 seeds. Welch's t-test would reject a fifth
    # of such null classes; its interval is kept.
    fallback = complete & degenerate & ~equal & ~constant
    run(fallback, stats.ttest_ind, equal_var=False)
    p[fallback] = 2.0 ** (1 - a.shape[1])
    used[fallback] = "sign_flip"
    same = complete & degenerate & equal
    p[same], low[same], high[same] = 1.0, 0.0, 0.0
    # Every seed saw the same count: only the sampling of the class's test images is left to test.
    correct_on, correct_off = on["correct"].to_numpy()[:, 0], off["correct"].to_numpy()[:, 0]
    n_on, n_off = on["n"].to_numpy()[:, 0], off["n"].to_numpy()[:, 0]
    for i in np.flatnonzero(complete & degenerate & ~equal & constant):
        table = [[correct_on[i], n_on[i] - correct_on[i]], [correct_off[i], n_off[i] - correct_off[i]]]
        p[i], used[i] = stats.fisher_exact(table).pvalue, "fisher"
    return p, low, high, used


def mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)
