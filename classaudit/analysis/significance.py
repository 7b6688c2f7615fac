"""The per-class tests on arrays: one row per class, one column per seed. Nothing here knows the frames; the change
module builds the arrays and names the results. Every test is scipy's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

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
        return "moderated" if same else "moderated_welch"
    needs, allowed = {
        "moderated": ("at least 2 seeds in each arm", fewest >= 2),
        "paired": ("the same seeds, at least 2, in both arms", same and fewest >= 2),
        "welch": ("at least 2 seeds in each arm", fewest >= 2),
        "permutation": ("at least 2 seeds in each arm", fewest >= 2),
    }[test]
    if not allowed:
        raise AnalysisError(TEST_NOT_APPLICABLE.format(
            test=test, needs=needs, regularizer=regularizer, strength=plain(strength),
            seeds=[plain(s) for s in seeds_on], seeds_off=[plain(s) for s in seeds_off]))
    return ("moderated" if same else "moderated_welch") if test == "moderated" else test


def t_tests(on: pd.DataFrame, off: pd.DataFrame, *, paired: bool, confidence: float):
    """p-value, interval, test name, standard error and degrees of freedom per class from the plain paired or
    Welch t-test, with the zero-variance rule of difference() (standard error and degrees of freedom NaN where a
    fallback ran)."""
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
    ran = np.isin(used, ("paired", "welch"))
    se, df = np.full(len(a), np.nan), np.full(len(a), np.nan)
    if paired:
        se[ran], df[ran] = (a - b)[ran].std(axis=1, ddof=1) / np.sqrt(a.shape[1]), a.shape[1] - 1
    elif ran.any():
        part_a, part_b = a[ran].var(axis=1, ddof=1) / a.shape[1], b[ran].var(axis=1, ddof=1) / b.shape[1]
        se[ran] = np.sqrt(part_a + part_b)
        df[ran] = (part_a + part_b) ** 2 / (part_a ** 2 / (a.shape[1] - 1) + part_b ** 2 / (b.shape[1] - 1))
    return p, low, high, used, se, df


# --------------------------------------------------------------------------------------------------------------
# The moderated t-test (Smyth 2004, "Linear models and empirical Bayes methods for assessing differential
# expression in microarray experiments", the method of limma's eBayes/squeezeVar/fitFDist), with a
# binomial-shaped prior, and TREAT (McCarthy & Smyth 2009, "Testing significance relative to a fold-change
# threshold is a TREAT").
#
# Model. For class k at strength s, the per-seed change d = a_on - a_off has variance sigma2_ks = phi_ks * v_ks,
# where v_ks = [p_on (1 - p_on) + p_off (1 - p_off)] / n_k is the variance the sampling of n_k test images alone
# would give, and the scale phi_ks (seed noise relative to binomial noise; 0.43-0.86 in the CIFAR-10 study) is
# drawn from a scaled inverse chi-square prior with scale s0^2 and d0 degrees of freedom, shared by every cell of
# the regularizer. The cell's sample variance s2 (d = seeds - 1 degrees of freedom) is shrunk toward the prior:
# s2_post = (d0 s0^2 v + d s2) / (d0 + d), and t = delta / sqrt(s2_post / seeds) has d + d0 degrees of freedom.
# With many cells d0 is learnt from the data: large when the cells' variances agree with the prior's shape, small
# when they scatter, so the test is never more confident than the data warrant.

# A cell variance below this fraction of the median is raised to it, as limma does, so that a cell whose seeds
# agree exactly (a class at 100%) cannot send log(s2) to minus infinity and distort the fit.
_VARIANCE_FLOOR = 1e-5


@dataclass(frozen=True)
class Prior:
    """The fitted prior of the seed variances: scale s0^2 (relative to binomial) and degrees of freedom d0."""

    scale: float
    df: float
    n_cells: int


def binomial_variance(p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """p (1 - p) / n, with p kept half an image from 0 and 1 so a class at 100% still has a positive variance."""
    n = np.asarray(n, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 0.5 / n, 1 - 0.5 / n)
    return p * (1 - p) / n


def trigamma_inverse(x: np.ndarray) -> np.ndarray:
    """y with trigamma(y) = x, by Newton's method on 1/trigamma as limma's trigammaInverse does (scipy has
    polygamma but no inverse); x > 0."""
    x = np.asarray(x, dtype=float)
    y = 0.5 + 1.0 / x
    for _ in range(50):
        tri = special.polygamma(1, y)
        step = tri * (1 - tri / x) / special.polygamma(2, y)
        y = y + step
        if np.all(-step / y < 1e-8):
            break
    return y


def fit_prior(ratio: np.ndarray, df: np.ndarray) -> Prior:
    """Fit the scaled F distribution of cell variances relative to their binomial shape (limma's fitFDist, by the
    method of moments on log variances). `ratio` = s2 / v per cell, `df` its degrees of freedom."""
    ratio, df = np.asarray(ratio, dtype=float), np.asarray(df, dtype=float)
    keep = np.isfinite(ratio) & (df > 0)
    ratio, df = ratio[keep], df[keep]
    if len(ratio) < 3:  # too few cells to learn anything: no moderation
        return Prior(scale=float(np.mean(ratio)) if len(ratio) else 1.0, df=0.0, n_cells=len(ratio))
    if np.median(ratio) <= 0:  # most cells without any seed spread (toy data): nothing to fit a prior on
        return Prior(scale=0.0, df=0.0, n_cells=len(ratio))
    ratio = np.maximum(ratio, _VARIANCE_FLOOR * np.median(ratio))
    e = np.log(ratio) - special.digamma(df / 2) + np.log(df / 2)
    mean = e.mean()
    var = ((e - mean) ** 2).sum() / (len(e) - 1) - special.polygamma(1, df / 2).mean()
    if var <= 0:  # the cells agree with the prior's shape beyond sampling noise: a known variance
        return Prior(scale=float(np.exp(mean)), df=np.inf, n_cells=len(ratio))
    d0 = 2 * float(trigamma_inverse(np.array([var]))[0])
    scale = float(np.exp(mean + special.digamma(d0 / 2) - np.log(d0 / 2)))
    return Prior(scale=scale, df=d0, n_cells=len(ratio))


def posterior_variance(s2: np.ndarray, df: np.ndarray, v: np.ndarray, scale: np.ndarray,
                       prior_df: np.ndarray) -> np.ndarray:
    """(d0 s0^2 v + d s2) / (d0 + d), the cell variance shrunk toward its prior; the prior alone when d0 is
    infinite, the cell alone when d0 is 0."""
    s2 = np.where(np.isfinite(s2), s2, 0.0)
    with np.errstate(invalid="ignore"):
        mixed = (prior_df * scale * v + df * s2) / (prior_df + df)
    return np.where(np.isinf(prior_df), scale * v, mixed)


def moderated_t(a: np.ndarray, b: np.ndarray, n_on: np.ndarray, n_off: np.ndarray, scale: np.ndarray,
                prior_df: np.ndarray, *, paired: bool, confidence: float, min_effect: float = 0.0):
    """The moderated t-test per class (row) of seed accuracies `a` (on) and `b` (off, in the same seed order when
    `paired`), with each class's prior (`scale`, `prior_df`) and n_on / n_off test images: p (TREAT at
    `min_effect`), and the interval's ends. A class with a missing seed gets NaN."""
    complete = ~(np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1))
    delta = a.mean(axis=1) - b.mean(axis=1)
    v_on, v_off = binomial_variance(a.mean(axis=1), n_on), binomial_variance(b.mean(axis=1), n_off)
    if paired:
        seeds = a.shape[1]
        post = posterior_variance((a - b).var(axis=1, ddof=1), seeds - 1, v_on + v_off, scale, prior_df)
        se, df = np.sqrt(post / seeds), seeds - 1 + prior_df
    else:
        ra, rb = a.shape[1], b.shape[1]
        part_on = posterior_variance(a.var(axis=1, ddof=1), ra - 1, v_on, scale, prior_df) / ra
        part_off = posterior_variance(b.var(axis=1, ddof=1), rb - 1, v_off, scale, prior_df) / rb
        se = np.sqrt(part_on + part_off)
        with np.errstate(divide="ignore", invalid="ignore"):  # Welch-Satterthwaite, infinite with d0
            df = se ** 4 / (part_on ** 2 / (ra - 1 + prior_df) + part_off ** 2 / (rb - 1 + prior_df))
    half = stats.t.ppf((1 + confidence) / 2, df) * se
    p = np.where(complete, treat_pvalue(delta, se, df, min_effect), np.nan)
    return p, np.where(complete, delta - half, np.nan), np.where(complete, delta + half, np.nan)


def cell_priors(class_ids: np.ndarray, ratio: np.ndarray, df: np.ndarray) -> tuple[Prior, np.ndarray, np.ndarray]:
    """Each cell's prior (scale, degrees of freedom) from every cell's variance ratio, and the shared prior.

    Classes are noisy to different degrees (a class two confusable classes trade errors with, say), which a prior
    shared by every class cannot know. So each cell's prior is its class's pooled ratio over the class's *other*
    cells (its other strengths and regularizers), squeezed toward the shared prior the way limma squeezes a
    variance: (d0 s0^2 + d_k r_k) / (d0 + d_k), with d0 + d_k degrees of freedom. Leaving the cell out keeps its
    prior independent of its own variance; a class noisier than the rest gets a wider prior from its own cells,
    and a class with no other cell gets the shared prior.
    """
    class_ids, ratio, df = np.asarray(class_ids), np.asarray(ratio, dtype=float), np.asarray(df, dtype=float)
    prior = fit_prior(ratio, df)
    ok = np.isfinite(ratio) & (df > 0)
    weighted = np.where(ok, ratio * df, 0.0)
    dfs = np.where(ok, df, 0.0)
    scale, prior_df = np.empty(len(ratio)), np.empty(len(ratio))
    for k in np.unique(class_ids):
        mine = class_ids == k
        others_df = dfs[mine].sum() - dfs[mine]
        with np.errstate(divide="ignore", invalid="ignore"):
            others = (weighted[mine].sum() - weighted[mine]) / others_df
        if np.isinf(prior.df):
            scale[mine], prior_df[mine] = prior.scale, np.inf
        else:
            with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 where no df at all; np.where keeps the prior
                mixed = (prior.df * prior.scale + others_df * np.nan_to_num(others)) / (prior.df + others_df)
            scale[mine] = np.where(others_df > 0, mixed, prior.scale)
            prior_df[mine] = prior.df + others_df
    return prior, scale, prior_df


def treat_pvalue(delta: np.ndarray, se: np.ndarray, df: np.ndarray, threshold: float) -> np.ndarray:
    """Two-sided p of H0: |delta| <= threshold (TREAT): P(T > (|d| - tau) / se) + P(T > (|d| + tau) / se) with
    T ~ t(df); the ordinary two-sided t-test p when the threshold is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = (np.abs(delta) - threshold) / se
        lower = (np.abs(delta) + threshold) / se
    return np.minimum(stats.t.sf(upper, df) + stats.t.sf(lower, df), 1.0)


def welch_t(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    """Welch's t statistic of x - y along `axis`: the permutation test's statistic, which stays valid when the
    arms have unequal seed counts and variances (Chung & Romano 2013); the raw difference of means does not."""
    nx, ny = x.shape[axis], y.shape[axis]
    se = np.sqrt(np.var(x, axis=axis, ddof=1) / nx + np.var(y, axis=axis, ddof=1) / ny)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.mean(x, axis=axis) - np.mean(y, axis=axis)) / se
