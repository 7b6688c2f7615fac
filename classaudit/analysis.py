"""Per-class audit of a regularizer sweep: every table of the report, computed from the tidy results frame.

The questions follow Balestriero, Bottou & LeCun, "The Effects of Regularization and Data Augmentation are Class
Dependent" (NeurIPS 2022, arXiv 2204.03632): which classes lose accuracy at the strength cross-validation picks,
by how much and how sure we are; and Kirichenko et al., "Understanding the Detrimental Class-level Effects of Data
Augmentation" (NeurIPS 2023, arXiv 2401.01764): where the lost predictions go. Names follow fairlearn's
vocabulary (``by_class``, ``overall``, ``difference``, ``group_min``).

Only numpy, pandas and scipy are imported (never torch), so results can be analysed on any machine. Every function
takes the frame ``classaudit.load_results`` returns (or :func:`from_predictions` builds), never modifies it, and
returns a new DataFrame whose rows are sorted by regularizer, strength, then class. Statistics come from scipy.
"""

from __future__ import annotations

import hashlib
import itertools
import numbers
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from classaudit.errors import UsageError, did_you_mean

__all__ = [
    "AnalysisError",
    "absorbers",
    "by_class",
    "choose_strength",
    "churn",
    "confusion_shift",
    "difference",
    "false_positive_shift",
    "from_predictions",
    "harmed_fraction",
    "overall",
    "regret",
]


class AnalysisError(UsageError, ValueError):
    """A frame or option the analysis cannot use. A ValueError for library users, a UsageError for the CLI."""


# Error messages. Tests compare them exactly, so change them here only.
MISSING_COLUMNS = "the {frame} frame has no column(s) {missing}; it needs {needed}"
SPLIT_MISSING = "the {frame} frame has no {split!r} rows; splits present: {present}"
NO_VALIDATION_SPLIT = (
    "the results have no 'val' split to choose the strength on; store a validation split, or pass "
    "select_on='test' (optimistic: the same images then choose the strength and report it)"
)
INVALID_OPTION = "{name}={value!r} is not valid; allowed: {allowed}"
OFF_MISSING = "regularizer {regularizer!r} has no off point (no is_off rows); strengths present: {present}"
SEVERAL_OFF = "regularizer {regularizer!r} has several off strengths {strengths}; an axis has exactly one off point"
UNKNOWN_REGULARIZER = "regularizer {regularizer!r} is not in the {frame} frame{hint}; regularizers present: {present}"
UNKNOWN_STRENGTH = "strength {strength!r} is not in the sweep of {regularizers}; strengths present: {present}"
TEST_NOT_APPLICABLE = (
    "test={test!r} needs {needs}, but regularizer {regularizer!r} has seeds {seeds} at strength {strength!r} "
    "and seeds {seeds_off} at its off point; pass test='auto'"
)
SELECT_SPLIT_MISSING = (
    "regularizer(s) {regularizers} have no {split!r} rows to choose a strength on; pass results that have them, "
    "or leave those regularizers out"
)
PREDICTIONS_MISSING_RUN = (
    "the predictions frame has no {split!r} rows for regularizer {regularizer!r} at strength {strength!r} "
    "seed {seed!r}; pass the predictions of the same runs as the results"
)
NEED_OFF = "say which rows are the off point: pass off={regularizer: off strength} or add a True/False 'is_off' column"
SHARED_OFF_NEEDS_MAPPING = (
    "{count} row(s) have no regularizer (shared off runs), but each axis has its own off strength: "
    "pass off={{regularizer: off strength}}"
)
NULL_VALUES = "column {column!r} has {count} missing value(s), the first at row {row!r}; every row needs one"
NOT_WHOLE_NUMBER = "column {column!r} must hold whole numbers; found {value!r} at row {row!r}"
NOT_NUMBER = "column {column!r} must hold numbers; found {value!r} at row {row!r}"
NOT_BOOL = "column 'is_off' must hold True/False; found {value!r} at row {row!r}"
INVALID_SPLIT_VALUE = "column {column!r} holds split {value!r} at row {row!r}; allowed: 'val', 'test'"
OFF_UNKNOWN_REGULARIZER = (
    "off names regularizer {regularizer!r}, which no row has{hint}; regularizers present: {present}"
)
OFF_NOT_GIVEN = "regularizer {regularizer!r} has no off strength in off={off!r}; add one for every regularizer"
OFF_STRENGTH_MISSING = (
    "regularizer {regularizer!r} has no rows at its off strength {strength!r} and there are no shared off rows; "
    "strengths present: {present}"
)
IS_OFF_MIXED = (
    "regularizer {regularizer!r} at strength {strength!r} has rows with is_off True and False; "
    "a strength is either the off point or not"
)
UNKNOWN_LABEL = "column {column!r} holds {value!r} at row {row!r}, which is not one of class_names"
CLASS_NAME_MISSING = "class_names has no name for class id {class_id!r} (found in column {column!r})"
DUPLICATE_INDEX = (
    "run regularizer={regularizer!r} strength={strength!r} seed={seed!r} split={split!r} has image index "
    "{index!r} twice; each image appears once per run"
)
INDEX_LABEL_CONFLICT = (
    "image index {index!r} of split {split!r} has label {first!r} in run regularizer={regularizer!r} "
    "strength={strength!r} seed={seed!r} but label {second!r} in run regularizer={regularizer2!r} "
    "strength={strength2!r} seed={seed2!r}; runs are compared image by image, so an index must name the same "
    "image in every run{hint}"
)

DUPLICATE_RESULTS = (
    "the results frame has {count} rows that share a (regularizer, strength, seed, split, class_id), the first: "
    "regularizer {regularizer!r}, strength {strength!r}, seed {seed!r}, class_id {class_id!r} (run_id {runs}); "
    "keep one run per seed and strength, e.g. results.drop_duplicates(['regularizer', 'strength', 'seed', 'split', "
    "'class_id'])")
SPLITS = ("val", "test")
TESTS = ("auto", "welch", "paired", "permutation")

# Accuracies closer than this are equal. Resolving 1e-9 would take a billion test images, while float rounding
# leaves ~1e-16 of noise: without this, seeds with identical counts look like a tiny non-zero variance and a
# t-test reports p ~ 1e-40.
_TOL = 1e-9

_RESULTS_NEEDED = ("regularizer", "strength", "is_off", "seed", "split", "class_id", "class_name", "n", "correct",
                   "accuracy")
_PREDICTIONS_NEEDED = ("regularizer", "strength", "is_off", "seed", "split", "index", "label", "pred")
_RESULTS_COLUMNS = ("study", "run_id", "regularizer", "strength", "is_off", "seed", "split", "class_id",
                    "class_name", "n", "correct", "accuracy")
_PREDICTIONS_COLUMNS = ("study", "run_id", "regularizer", "strength", "is_off", "seed", "split", "index", "label",
                        "pred", "p_true")
_DIFFERENCE_COLUMNS = ("regularizer", "strength", "class_id", "class_name", "n_seeds_off", "n_seeds", "mean_off",
                       "mean", "delta", "ci_low", "ci_high", "p_value", "q_value", "harmed", "helped", "test_used")


# --------------------------------------------------------------------------------------------------------------
# Per-class accuracy tables
# --------------------------------------------------------------------------------------------------------------

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
    _check_fraction("confidence", confidence)
    rows = _rows(results, split)
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
    rows = _rows(results, split)
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


def choose_strength(results: pd.DataFrame, *, select_on: str = "val", report_on: str = "test") -> pd.DataFrame:
    """The strength cross-validation picks on each axis, s* = argmax of macro accuracy on ``select_on``.

    Ties (macro accuracies within 1e-9) go to the strength closest to the off point, then to the lower strength:
    a regularizer that does not improve the average is not switched on. While a sweep runs, some strengths have a
    seed the others lack (as after a failed run); strengths are then compared (and reported) on the seeds they all
    have, when they share any.

    Parameters
    ----------
    results : DataFrame
        The results frame.
    select_on : str
        Split the strength is chosen on. Choosing on "test" and reporting on it too is optimistic, so it must be
        asked for explicitly: a frame without a "val" split raises unless ``select_on="test"``.
    report_on : str
        Split the accuracies are reported on.

    Returns
    -------
    DataFrame
        One row per regularizer: ``regularizer, off_strength, chosen_strength, select_accuracy, accuracy,
        accuracy_off, gain``. ``select_accuracy`` is the macro accuracy at s* on ``select_on``; ``accuracy``
        and ``accuracy_off`` are macro accuracies on ``report_on`` at s* and at the off point;
        ``gain = accuracy - accuracy_off``.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> preds = pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 4 + [0.5] * 4, "seed": 0,
    ...                       "label": [0, 0, 1, 1] * 2, "pred": [0, 0, 1, 1, 0, 1, 1, 1]})
    >>> results = ca.from_predictions(preds, off={"crop": 1.0})
    >>> ca.choose_strength(results, select_on="test")[["chosen_strength", "gain"]].values.tolist()
    [[1.0, 0.0]]
    """
    _check_select_on(results, select_on)
    off = _off_strengths(results)
    results = _shared_seeds(results)
    select = overall(results, split=select_on)[["regularizer", "strength", "mean"]]
    lacking = sorted(set(off) - set(select["regularizer"]))
    if lacking:
        raise AnalysisError(SELECT_SPLIT_MISSING.format(regularizers=lacking, split=select_on))
    select["off_strength"] = select["regularizer"].map(off)
    chosen = _best(select, ["regularizer"], "mean").rename(
        columns={"strength": "chosen_strength", "mean": "select_accuracy"})
    report = overall(results, split=report_on).set_index(["regularizer", "strength"])["mean"]
    chosen["accuracy"] = report.reindex(list(zip(chosen["regularizer"], chosen["chosen_strength"]))).to_numpy()
    chosen["accuracy_off"] = report.reindex(list(zip(chosen["regularizer"], chosen["off_strength"]))).to_numpy()
    chosen["gain"] = chosen["accuracy"] - chosen["accuracy_off"]
    return chosen[["regularizer", "off_strength", "chosen_strength", "select_accuracy", "accuracy", "accuracy_off",
                   "gain"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------------------------
# Change against the off point
# --------------------------------------------------------------------------------------------------------------

def difference(
    results: pd.DataFrame,
    *,
    strength: object = "chosen",
    split: str = "test",
    select_on: str = "val",
    alpha: float = 0.05,
    min_effect: float = 0.0,
    test: str = "auto",
    confidence: float = 0.95,
    predictions: pd.DataFrame | None = None,
    n_resamples: int = 9999,
    rng: int = 0,
) -> pd.DataFrame:
    """Change of each class's accuracy between the off point and a strength, with a test and FDR control.

    Parameters
    ----------
    results : DataFrame
        The results frame.
    strength : "chosen", None, "all", float or mapping
        "chosen" (or None): each regularizer's s* from :func:`choose_strength` (selected on "val", so the frame
        needs a validation split); when s* is the off point its rows say so (``test_used="identical"``).
        "all": every non-off strength. A number: that strength, on every regularizer whose sweep has it. A
        mapping {regularizer: strength}: those pairs only.
    split : {"test", "val"}
        Split the change is measured on.
    select_on : str
        Split s* is chosen on when ``strength="chosen"``, as in :func:`choose_strength`: a frame without a
        "val" split raises unless ``select_on="test"`` (optimistic) is asked for.
    alpha : float
        False discovery rate: a class is flagged when its Benjamini-Hochberg q-value is below ``alpha``.
    min_effect : float
        Smallest change that counts, in accuracy units (0.01 = 1 point).
    test : {"auto", "welch", "paired", "permutation"}
        "auto" picks, per strength: a paired t-test (``scipy.stats.ttest_rel``) when both arms have the same
        seeds, at least 2; else a permutation test of the difference of means
        (``scipy.stats.permutation_test``, exact up to ``n_resamples`` arrangements, e.g. 5 vs 5 seeds) when
        each arm has at least 5 seeds; else Welch's t-test (``scipy.stats.ttest_ind(equal_var=False)``) when
        each arm has at least 2; else, with one seed in each arm, the per-image McNemar test (exact: a
        binomial test on the images only one of the two runs gets right), which needs ``predictions``. When
        one arm's seeds are among the other's (at least 2 of them; a sweep still running), both arms are
        compared on those shared seeds only (paired), for the change as well as the test. One seed in one
        arm and several in the other, or one seed a side without ``predictions``, has no valid test here: p is
        NaN and ``test_used="none"``; so has a class missing from some seed's run. Naming a test forces it
        and raises when the seeds do not allow it; "permutation" then always permutes seeds between arms,
        ignoring pairing.

        McNemar's p and q say whether the two runs differ on a class's images; they see the test-set noise
        but not the seed-to-seed noise, so they do not set ``harmed`` or ``helped``: two seeds of one
        configuration of the CIFAR-10 study differ at q < 0.05 on 12% of classes (measured by
        ``benchmarks/mcnemar_seed_null.py``). Train two or more seeds a side to test the regularizer.
    confidence : float
        Level of the interval for ``delta``: the paired-t or Welch (Welch-Satterthwaite) interval of
        the t-test's result; the permutation test reports the Welch interval; McNemar the exact conditional
        interval, (b + c) / n (2 [lo, hi] - 1) from the Clopper-Pearson interval of c / (b + c).
    predictions : DataFrame, optional
        The predictions frame; used only by the one-seed McNemar test (without it those points are untested).
    n_resamples : int
        Arrangements the permutation test draws when exact enumeration would need more.
    rng : int
        Seed of the permutation test. Each (regularizer, strength) draws from its own generator, seeded by
        ``rng`` and its name, so its p-values do not depend on which other axes or strengths are analysed.

    Returns
    -------
    DataFrame
        One row per (regularizer, strength, class): ``regularizer, strength, class_id, class_name, n_seeds_off,
        n_seeds, mean_off, mean, delta, ci_low, ci_high, p_value, q_value, harmed, helped, test_used``, with
        ``delta = mean - mean_off`` and ``q_value`` the Benjamini-Hochberg adjustment
        (``scipy.stats.false_discovery_control``) over the classes of one (regularizer, strength).
        ``harmed = q_value < alpha and -delta > min_effect``; ``helped`` likewise with ``delta > min_effect``;
        both False for McNemar rows.

    Notes
    -----
    Zero variance: a t statistic is undefined when the seeds show no spread (every seed at 100%, say). Then if
    the means are equal, p = 1 and the interval is [0, 0]; if they differ and each arm is constant, every seed
    saw the same count, so the only noise left is the sampling of the class's n test images, and the counts are
    compared with Fisher's exact test on the 2x2 table (``test_used="fisher"``, interval NaN). That test treats
    the two runs' images as independent, which is conservative for the same images. A paired test whose
    per-seed differences are equal while each arm varies uses the sign-flip permutation test of those
    differences (``test_used="sign_flip"``; with n equal differences p = 2 / 2**n exactly, as the Wilcoxon
    signed-rank test would give; Welch's interval): exact given the differences' sizes, so valid under the
    paired null, but below 6 seeds it flags no such class, however large its equal change. Real sweeps rarely
    give one (no class of the CIFAR-10 study does); Welch's t-test on the two arms would reject about a fifth of
    such classes under the null.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> preds = pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 40 + [0.5] * 40, "seed": 0,
    ...                       "label": [0] * 20 + [1] * 20 + [0] * 20 + [1] * 20,
    ...                       "pred": [0] * 20 + [1] * 20 + [1] * 10 + [0] * 10 + [1] * 20})
    >>> results, predictions = ca.from_predictions(preds, off={"crop": 1.0}, return_predictions=True)
    >>> table = ca.difference(results, strength="all", predictions=predictions)
    >>> table[["class_id", "delta", "harmed", "test_used"]].values.tolist()
    [[0, -0.5, False, 'mcnemar'], [1, 0.0, False, 'mcnemar']]
    """
    _check_choice("test", test, TESTS)
    _check_fraction("alpha", alpha)
    _check_fraction("confidence", confidence)
    rows = _rows(results, split)
    points = _comparisons(results, rows, strength, split, select_on=select_on, allow_all=True)
    if points.empty:
        return pd.DataFrame(columns=list(_DIFFERENCE_COLUMNS))
    axes = dict(tuple(rows.groupby("regularizer", sort=False)))
    tables = [
        _compare(axes[regularizer], regularizer, s, s_off, test=test, confidence=confidence, predictions=predictions,
                 split=split, n_resamples=n_resamples, rng=rng)
        for regularizer, s, s_off in points.itertuples(index=False)
    ]
    out = pd.concat(tables, ignore_index=True)
    # One run a side cannot tell the regularizer from the seed: McNemar's q says the two runs differ, not that
    # the strength harms (see the docstring), so it flags nothing.
    flagged = (out["q_value"] < alpha) & (out["test_used"] != "mcnemar")
    out["harmed"] = flagged & (-out["delta"] > min_effect)
    out["helped"] = flagged & (out["delta"] > min_effect)
    return out.sort_values(["regularizer", "strength", "class_id"]).reset_index(drop=True)[list(_DIFFERENCE_COLUMNS)]


def class_dependence(results: pd.DataFrame, *, strength: object = "all", split: str = "test",
                     select_on: str = "val") -> pd.DataFrame:
    """Does a strength change every class by the same amount? Friedman's test across the classes, per strength.

    For each (regularizer, strength), on the seeds both it and the off point have: each class's change (its
    accuracy at the strength minus at off, in the same seed) is ranked against the other classes' changes
    within the seed, and Friedman's test (``scipy.stats.friedmanchisquare``, classes as treatments, seeds as
    blocks) asks whether some classes rank consistently low or high. Ranking within a seed removes what a
    seed's run does to every class alike. The test's exact null is that within a seed the classes' changes are
    exchangeable; read a small p as "the changes differ between classes, in points", which a class near 100%
    (little room to lose) can cause as well as a regularizer that singles classes out. :func:`difference` says
    which classes. One p per strength, not corrected across strengths, and every strength shares the off runs.

    The test is approximate here, because classes are noisy to different degrees. Null rejection rates at
    0.05, 10 classes, 3 / 5 / 10 seeds (``python benchmarks/class_dependence_null.py``; in parentheses a
    repeated-measures F test): binomial noise, true accuracies 50-99%: 0.024 / 0.037 / 0.048 (0.068 / 0.062 /
    0.059); two classes with 5 times the others' noise: 0.032 / 0.057 / 0.050 (0.17 / 0.15 / 0.14); two
    confusable classes trading 3 points of errors run by run: 0.066 / 0.063 / 0.081 (0.17 / 0.16 / 0.15).
    With 2 seeds it can hardly reject (smallest p 0.035 for 10 classes), so it needs 3.

    Parameters
    ----------
    results : DataFrame
        The results frame.
    strength : "all", "chosen", None, float or mapping
        As in :func:`difference`; "all" by default.
    split : {"test", "val"}
        Split the changes are measured on.
    select_on : str
        Split s* is chosen on when ``strength="chosen"``, as in :func:`difference`.

    Returns
    -------
    DataFrame
        One row per (regularizer, strength): ``regularizer, strength, n_seeds, n_classes, friedman_statistic,
        friedman_p``. ``n_seeds`` counts the shared seeds used: those with every class when at least 3 are,
        else all shared seeds with the classes every one of them has. Fewer than 3 seeds or 3 classes leave the
        statistic and p NaN; the off point against itself has statistic 0 and p = 1.
    """
    rows = _rows(results, split)
    points = _comparisons(results, rows, strength, split, select_on=select_on, allow_all=True)
    out = []
    for regularizer, s, s_off in points.itertuples(index=False):
        axis = rows[rows["regularizer"] == regularizer]
        change = (axis[_same(axis["strength"], s)].pivot(index="seed", columns="class_id", values="accuracy")
                  - axis[axis["is_off"].astype(bool)].pivot(index="seed", columns="class_id", values="accuracy"))
        change = change.dropna(how="all")  # the shared seeds
        complete = change.dropna()  # a seed missing some class is dropped if enough seeds remain, else the class
        change = complete if len(complete) >= 3 else change.dropna(axis=1)
        statistic, p = np.nan, np.nan
        if _same(s, s_off):
            statistic, p = 0.0, 1.0
        elif len(change) >= 3 and change.shape[1] >= 3:
            statistic, p = stats.friedmanchisquare(*change.to_numpy().T)
        out.append((regularizer, s, len(change), change.shape[1], statistic, p))
    return pd.DataFrame(out, columns=["regularizer", "strength", "n_seeds", "n_classes", "friedman_statistic",
                                      "friedman_p"]).sort_values(["regularizer", "strength"]).reset_index(drop=True)


def harmed_fraction(differences: pd.DataFrame) -> pd.DataFrame:
    """How many classes a strength harms: a summary of the table :func:`difference` returns.

    Parameters
    ----------
    differences : DataFrame
        The output of :func:`difference` (its alpha and min_effect decide what counts as harmed).

    Returns
    -------
    DataFrame
        One row per (regularizer, strength): ``regularizer, strength, n_classes, n_harmed, n_helped,
        fraction_harmed, worst_class_id, worst_class_name, worst_class_delta`` (the class with the most negative
        delta, ties to the lower id, whether or not it is significant).

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> run = pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 40 + [0.5] * 40,
    ...                     "label": [0] * 20 + [1] * 20 + [0] * 20 + [1] * 20,
    ...                     "pred": [0] * 20 + [1] * 20 + [1] * 10 + [0] * 10 + [1] * 20})
    >>> results = ca.from_predictions(pd.concat([run.assign(seed=0), run.assign(seed=1)]), off={"crop": 1.0})
    >>> summary = ca.harmed_fraction(ca.difference(results, strength=0.5))
    >>> summary[["n_harmed", "fraction_harmed", "worst_class_delta"]].values.tolist()
    [[1.0, 0.5, -0.5]]
    """
    _check_columns(differences, ("regularizer", "strength", "class_id", "class_name", "delta", "harmed", "helped"),
                   "differences (pass the frame difference() returns)")
    keys = ["regularizer", "strength"]
    ranked = differences.sort_values([*keys, "delta", "class_id"])
    groups = ranked.groupby(keys, sort=True)
    out = groups.agg(n_classes=("class_id", "size"), n_harmed=("harmed", "sum"), n_helped=("helped", "sum"),
                     worst_class_id=("class_id", "first"), worst_class_name=("class_name", "first"),
                     worst_class_delta=("delta", "first")).reset_index()
    out["fraction_harmed"] = out["n_harmed"] / out["n_classes"]
    return out[[*keys, "n_classes", "n_harmed", "n_helped", "fraction_harmed", "worst_class_id", "worst_class_name",
                "worst_class_delta"]]


def regret(results: pd.DataFrame, *, split: str = "test", strength: object = "chosen",
           select_on: str = "val") -> pd.DataFrame:
    """What each class gives up at the chosen strength compared with its own best strength.

    Parameters
    ----------
    results : DataFrame
        The results frame.
    split : {"test", "val"}
        Split the accuracies come from.
    strength : "chosen", None, float or mapping
        The strength every class is held to: each regularizer's s* (default, chosen on ``select_on``), a number on
        every regularizer that has it, or a mapping {regularizer: strength}.
    select_on : str
        Split each class's own best strength is picked on, and s* too when ``strength="chosen"``, as
        :func:`choose_strength` picks s*. Picking them on
        ``split`` too would take the best of several noisy means and read it on the same images: with two seeds
        and five strengths that alone shows about a point of regret for classes nothing happens to. A frame
        without a "val" split raises unless ``select_on="test"`` is asked for.

    Returns
    -------
    DataFrame
        One row per (regularizer, class): ``regularizer, class_id, class_name, best_strength, best_accuracy,
        chosen_strength, chosen_accuracy, regret``, accuracies being seed means on ``split`` and ``regret =
        best_accuracy - chosen_accuracy``, which is negative when the strength best on ``select_on`` is worse on
        ``split``. A class's best strength breaks ties like :func:`choose_strength`; a class without images
        on ``select_on`` has NaN there.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> preds = pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 4 + [0.5] * 4, "seed": 0,
    ...                       "label": [0, 0, 1, 1] * 2, "pred": [0, 0, 1, 1, 0, 1, 1, 1]})
    >>> table = ca.regret(ca.from_predictions(preds, off={"crop": 1.0}), strength=0.5, select_on="test")
    >>> table[["class_id", "best_strength", "regret"]].values.tolist()
    [[0.0, 1.0, 0.5], [1.0, 1.0, 0.0]]
    """
    _check_select_on(results, select_on)
    rows = _rows(results, split)
    points = _comparisons(results, rows, strength, split, select_on=select_on, allow_all=False)
    results = _shared_seeds(results)
    keys = ["regularizer", "strength", "class_id"]
    means = by_class(results, split=split)[[*keys, "class_name", "mean"]]
    select = by_class(results, split=select_on)[[*keys, "class_name", "mean"]]
    select["off_strength"] = select["regularizer"].map(_off_strengths(results))
    best = _best(select, ["regularizer", "class_id"], "mean")[keys]
    best = best.merge(means[[*keys, "mean"]], how="left").rename(
        columns={"strength": "best_strength", "mean": "best_accuracy"})
    chosen = means.merge(points[["regularizer", "strength"]]).rename(
        columns={"strength": "chosen_strength", "mean": "chosen_accuracy"})
    # Every class of `split` keeps its row; one with no images on select_on has no best strength (NaN).
    out = chosen[["regularizer", "class_id", "class_name", "chosen_strength", "chosen_accuracy"]].merge(
        best, how="left", on=["regularizer", "class_id"])
    out["regret"] = out["best_accuracy"] - out["chosen_accuracy"]
    return out.sort_values(["regularizer", "class_id"]).reset_index(drop=True)[
        ["regularizer", "class_id", "class_name", "best_strength", "best_accuracy", "chosen_strength",
         "chosen_accuracy", "regret"]]


# --------------------------------------------------------------------------------------------------------------
# Where the predictions go, and the seed noise floor (from the predictions frame)
# --------------------------------------------------------------------------------------------------------------

def confusion_shift(predictions: pd.DataFrame, *, regularizer: str, strength: float, split: str = "test",
                    class_id: int | None = None) -> pd.DataFrame:
    """Change of the confusion rows C[k -> l] between the off point and ``strength``.

    Parameters
    ----------
    predictions : DataFrame
        The predictions frame.
    regularizer : str
        The axis.
    strength : float
        The strength compared with the axis' off point; for s*, pass ``choose_strength(results)``'s
        ``chosen_strength`` (the predictions frame alone has no validation accuracies to choose it).
    split : {"test", "val"}
        Split the predictions come from.
    class_id : int, optional
        Keep only the row of this true class.

    Returns
    -------
    DataFrame
        One row per (true class, predicted class) seen in either arm: ``regularizer, strength, class_id,
        predicted_id, rate_off, rate, delta``. A rate is the fraction of class ``class_id``'s images predicted
        as ``predicted_id``, averaged over seeds; the diagonal (``predicted_id == class_id``) is the class's
        accuracy. Pairs never predicted in either arm (rate 0 -> 0) are left out.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> preds = pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 4 + [0.5] * 4, "seed": 0,
    ...                       "label": [0, 0, 1, 1] * 2, "pred": [0, 0, 1, 1, 0, 1, 1, 1]})
    >>> _, predictions = ca.from_predictions(preds, off={"crop": 1.0}, return_predictions=True)
    >>> ca.confusion_shift(predictions, regularizer="crop", strength=0.5, class_id=0)[
    ...     ["predicted_id", "rate_off", "rate", "delta"]].values.tolist()
    [[0.0, 1.0, 0.5, -0.5], [1.0, 0.0, 0.5, 0.5]]
    """
    off_rows, on_rows, s = _prediction_arms(predictions, regularizer, strength, split)
    table = pd.concat([_confusion_rates(off_rows), _confusion_rates(on_rows)], axis=1,
                      keys=["rate_off", "rate"]).fillna(0.0)
    table.index.names = ["class_id", "predicted_id"]
    table = table.sort_index().reset_index()
    if class_id is not None:
        table = table[table["class_id"] == class_id]
    table["delta"] = table["rate"] - table["rate_off"]
    table.insert(0, "regularizer", regularizer)
    table.insert(1, "strength", s)
    return table.reset_index(drop=True)[["regularizer", "strength", "class_id", "predicted_id", "rate_off", "rate",
                                         "delta"]]


def absorbers(predictions: pd.DataFrame, *, regularizer: str, strength: float, split: str = "test",
              class_id: int | None = None, top: int = 3) -> pd.DataFrame:
    """For each class, the other classes that absorb most of its predictions at ``strength``.

    Kirichenko et al. (2023) found the accuracy a class loses to augmentation usually flows to one closely
    related class; this lists, per true class, the ``top`` predicted classes whose confusion rate grew most.

    Parameters
    ----------
    predictions, regularizer, strength, split, class_id
        As in :func:`confusion_shift`.
    top : int
        Absorbers kept per class.

    Returns
    -------
    DataFrame
        ``regularizer, strength, class_id, rank, predicted_id, rate_off, rate, delta, share_of_loss``: rows of
        :func:`confusion_shift` with ``predicted_id != class_id`` and ``delta > 0``, ranked by ``delta``
        (ties: lower predicted id). ``share_of_loss`` is ``delta`` over the class's accuracy loss (NaN when the
        class did not lose accuracy); it can exceed 1 when other confusions of the class shrank.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> preds = pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 4 + [0.5] * 4, "seed": 0,
    ...                       "label": [0, 0, 1, 1] * 2, "pred": [0, 0, 1, 1, 0, 1, 1, 1]})
    >>> _, predictions = ca.from_predictions(preds, off={"crop": 1.0}, return_predictions=True)
    >>> ca.absorbers(predictions, regularizer="crop", strength=0.5)[
    ...     ["class_id", "predicted_id", "share_of_loss"]].values.tolist()
    [[0.0, 1.0, 1.0]]
    """
    if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 1:
        raise AnalysisError(INVALID_OPTION.format(name="top", value=top, allowed="a whole number >= 1"))
    shift = confusion_shift(predictions, regularizer=regularizer, strength=strength, split=split, class_id=class_id)
    diagonal = shift[shift["class_id"] == shift["predicted_id"]].set_index("class_id")["delta"]
    loss = (-diagonal).where(diagonal < -_TOL)
    out = shift[(shift["class_id"] != shift["predicted_id"]) & (shift["delta"] > _TOL)]
    out = out.sort_values(["class_id", "delta", "predicted_id"], ascending=[True, False, True])
    out = out.groupby("class_id").head(top).copy()
    out.insert(3, "rank", out.groupby("class_id").cumcount() + 1)
    out["share_of_loss"] = out["delta"] / out["class_id"].map(loss)
    return out.reset_index(drop=True)


def false_positive_shift(predictions: pd.DataFrame, *, regularizer: str, strength: float,
                         split: str = "test") -> pd.DataFrame:
    """Change of each class's false positives (images of other classes predicted as it), off vs ``strength``.

    Parameters
    ----------
    predictions, regularizer, strength, split
        As in :func:`confusion_shift`.

    Returns
    -------
    DataFrame
        One row per class: ``regularizer, strength, class_id, false_positives_off, false_positives, delta``,
        counts of images per run averaged over seeds.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> preds = pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 4 + [0.5] * 4, "seed": 0,
    ...                       "label": [0, 0, 1, 1] * 2, "pred": [0, 0, 1, 1, 0, 1, 1, 1]})
    >>> _, predictions = ca.from_predictions(preds, off={"crop": 1.0}, return_predictions=True)
    >>> ca.false_positive_shift(predictions, regularizer="crop", strength=0.5)[
    ...     ["class_id", "false_positives_off", "false_positives"]].values.tolist()
    [[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
    """
    off_rows, on_rows, s = _prediction_arms(predictions, regularizer, strength, split)
    classes = np.union1d(np.union1d(off_rows["label"], off_rows["pred"]), np.union1d(on_rows["label"], on_rows["pred"]))
    table = pd.DataFrame({"regularizer": regularizer, "strength": s, "class_id": classes})
    table["false_positives_off"] = _false_positives(off_rows, classes)
    table["false_positives"] = _false_positives(on_rows, classes)
    table["delta"] = table["false_positives"] - table["false_positives_off"]
    return table


def churn(predictions: pd.DataFrame, *, split: str = "test", per_class: bool = False) -> pd.DataFrame:
    """Disagreement between seeds at the same configuration: the noise floor a delta must clear.

    For each (regularizer, strength), the fraction of images whose predicted label differs between two seeds,
    averaged over all pairs of seeds. Only images present in every seed's run count.

    Parameters
    ----------
    predictions : DataFrame
        The predictions frame.
    split : {"test", "val"}
        Split the predictions come from.
    per_class : bool
        False: one row per (regularizer, strength) over all images. True: one row per (regularizer, strength,
        true class) over that class's images.

    Returns
    -------
    DataFrame
        ``regularizer, strength, is_off, n_seeds, churn`` (with ``class_id`` after ``strength`` when
        ``per_class``). ``churn`` is NaN with fewer than 2 seeds.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> preds = pd.DataFrame({"regularizer": "crop", "strength": 1.0, "seed": [0] * 4 + [1] * 4,
    ...                       "label": [0, 0, 1, 1] * 2, "pred": [0, 0, 1, 1, 0, 1, 1, 1]})
    >>> _, predictions = ca.from_predictions(preds, off={"crop": 1.0}, return_predictions=True)
    >>> ca.churn(predictions)[["strength", "n_seeds", "churn"]].values.tolist()
    [[1.0, 2.0, 0.25]]
    """
    rows = _rows(predictions, split, frame="predictions", needed=_PREDICTIONS_NEEDED)
    tables = []
    for (regularizer, strength), point in rows.groupby(["regularizer", "strength"], sort=True):
        _check_index_labels(point)
        grid = point.pivot(index="index", columns="seed", values="pred").dropna()
        labels = point.drop_duplicates("index").set_index("index")["label"].reindex(grid.index)
        pairs = list(itertools.combinations(range(grid.shape[1]), 2))
        differs = pd.DataFrame({pair: grid.iloc[:, pair[0]] != grid.iloc[:, pair[1]] for pair in pairs},
                               index=grid.index, dtype=float)
        # Mean over images (of a class) per seed pair, then over pairs; with one seed there are no pairs and
        # the mean of nothing is NaN.
        if per_class:
            value = differs.groupby(labels).mean().mean(axis=1)
            table = pd.DataFrame({"class_id": value.index.astype("int64"), "churn": value.to_numpy()})
        else:
            table = pd.DataFrame({"churn": [differs.mean().mean()]})
        table.insert(0, "regularizer", regularizer)
        table.insert(1, "strength", strength)
        table["is_off"] = bool(point["is_off"].iloc[0])
        table["n_seeds"] = grid.shape[1]
        tables.append(table)
    keys = ["regularizer", "strength", "class_id"] if per_class else ["regularizer", "strength"]
    return pd.concat(tables, ignore_index=True)[[*keys, "is_off", "n_seeds", "churn"]]


# --------------------------------------------------------------------------------------------------------------
# Building the frames from predictions made elsewhere
# --------------------------------------------------------------------------------------------------------------

def from_predictions(
    frame: pd.DataFrame,
    *,
    regularizer: str = "regularizer",
    strength: str = "strength",
    seed: str = "seed",
    label: str = "label",
    pred: str = "pred",
    split: str = "split",
    index: str | None = None,
    off: Mapping[str, float] | None = None,
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    study: str = "external",
    p_true: str | None = None,
    return_predictions: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Build the results frame (and the predictions frame) from per-image predictions made by any tool.

    Parameters
    ----------
    frame : DataFrame
        One row per (run, image): the run's regularizer, strength and seed, the image's true and predicted
        label. The arguments below name its columns.
    regularizer, strength, seed, label, pred : str
        Column names. Labels are either whole numbers (class ids) or names: names (strings) are mapped to ids
        by their position in ``class_names``, or, without it, in the sorted set of names in ``label`` and
        ``pred``.
    split : str
        Column of "val"/"test". Optional: when the default "split" column is absent, every row is "test".
    index : str, optional
        Column of the image's position within its split; the same index means the same image in every run
        (the McNemar test and churn pair images by it). By default, each run's rows in frame order. Either
        way, an index with two different labels in two runs is an error.
    off : mapping, optional
        {regularizer: off strength}. Rows at that strength are the axis' off run; rows whose regularizer is
        missing (None/NaN) are shared off runs, copied under every axis at its off strength, keeping one run id
        (as classaudit's own sweeps do). Without ``off``, the frame needs a True/False ``is_off`` column marking
        each axis' off rows (then shared rows are not possible: each axis lists its own). ``off`` takes
        precedence over an ``is_off`` column.
    class_names : sequence or mapping, optional
        Class names by id (list position or {id: name}); default: the names in ``label``, or the ids as text.
    study : str
        Value of the ``study`` column.
    p_true : str, optional
        Column of the probability the model gave the true label; NaN when not given.
    return_predictions : bool
        Also return the predictions frame: ``(results, predictions)``.

    Returns
    -------
    DataFrame or (DataFrame, DataFrame)
        The results frame: ``study, run_id, regularizer, strength, is_off, seed, split, class_id, class_name, n,
        correct, accuracy``, one row per (run, axis, split, class with images in the split); and the predictions
        frame: ``study, run_id, regularizer, strength, is_off, seed, split, index, label, pred, p_true``.
        ``run_id`` is the first 12 hex digits of the SHA-256 of "study|regularizer|strength|seed", or of
        "study|off|seed" for a shared off run, which so keeps one id under every axis.

    Raises
    ------
    AnalysisError
        (a ValueError) listing every problem found, one per line: missing columns, missing values, non-numbers,
        unknown splits or labels, an axis without an off point, an image twice in one run.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> preds = pd.DataFrame({"regularizer": [None] * 2 + ["crop"] * 2 + ["jitter"] * 2, "seed": 0,
    ...                       "strength": [float("nan")] * 2 + [0.5] * 2 + [0.8] * 2,
    ...                       "label": ["cat", "dog"] * 3, "pred": ["cat", "dog", "dog", "dog", "cat", "cat"]})
    >>> results = ca.from_predictions(preds, off={"crop": 1.0, "jitter": 0.0})
    >>> results[["regularizer", "strength", "class_name", "accuracy"]].values.tolist()[:4]
    [['crop', 0.5, 'cat', 0.0], ['crop', 0.5, 'dog', 1.0], ['crop', 1.0, 'cat', 1.0], ['crop', 1.0, 'dog', 1.0]]
    """
    given = {"regularizer": regularizer, "strength": strength, "seed": seed, "label": label, "pred": pred}
    if split != "split" or split in frame.columns:
        given["split"] = split
    if index is not None:
        given["index"] = index
    if p_true is not None:
        given["p_true"] = p_true
    missing = [column for column in given.values() if column not in frame.columns]
    if missing:
        raise AnalysisError(MISSING_COLUMNS.format(frame="predictions", missing=missing,
                                                   needed=list(given.values())))
    if off is None and "is_off" not in frame.columns:
        raise AnalysisError(NEED_OFF)

    problems: list[str] = []
    data = pd.DataFrame({key: frame[column] for key, column in given.items()}, index=frame.index)
    shared = data["regularizer"].isna()
    if off is None and shared.any():
        problems.append(SHARED_OFF_NEEDS_MAPPING.format(count=int(shared.sum())))
    for key in ("strength", "seed", "label", "pred", "split", "index"):
        if key in data:
            # Shared off rows need no strength of their own: each axis' off strength comes from `off`.
            _check_present(data.loc[~shared, key] if key == "strength" else data[key], given[key], problems)
    if problems:
        raise AnalysisError("\n".join(problems))

    data["regularizer"] = data["regularizer"].astype(str).where(~shared, None)
    data["strength"] = _numbers(data["strength"].where(~shared, 0.0), given["strength"], problems, whole=False)
    data["seed"] = _numbers(data["seed"], given["seed"], problems, whole=True)
    if "index" in data:
        data["index"] = _numbers(data["index"], given["index"], problems, whole=True)
    if "p_true" in data:
        data["p_true"] = _numbers(data["p_true"], given["p_true"], problems, whole=False, allow_nan=True)
    else:
        data["p_true"] = np.nan
    if "split" in data:
        bad = ~data["split"].isin(SPLITS)
        if bad.any():
            problems.append(INVALID_SPLIT_VALUE.format(column=given["split"], value=_plain(data["split"][bad].iloc[0]),
                                                       row=_plain(data.index[bad][0])))
    else:
        data["split"] = "test"
    names = _map_labels(data, given, class_names, problems)
    if off is None:
        data["is_off"] = _booleans(frame["is_off"], problems)
    if problems:
        raise AnalysisError("\n".join(problems))

    if "index" not in data:
        data["index"] = data.groupby(["regularizer", "strength", "seed", "split"], dropna=False,
                                     sort=False).cumcount()
    data = _assign_off(data, off, problems)
    if problems:
        raise AnalysisError("\n".join(problems))
    keys = ["regularizer", "strength", "seed", "split"]
    twice = data.duplicated([*keys, "index"])
    if twice.any():
        first = data[twice].iloc[0]
        raise AnalysisError(DUPLICATE_INDEX.format(regularizer=first["regularizer"], strength=_plain(first["strength"]),
                                                   seed=_plain(first["seed"]), split=first["split"],
                                                   index=_plain(first["index"])))

    _check_index_labels(data, hint="" if index is not None else (
        ": without index=, each run's rows are taken in frame order, so every run must list its images in the "
        "same order; pass index=COLUMN to name each image"))

    data["study"] = study
    data["run_id"] = _run_ids(data, study)
    predictions = data.sort_values([*keys, "index"]).reset_index(drop=True)[list(_PREDICTIONS_COLUMNS)]
    hits = predictions.assign(hit=predictions["label"] == predictions["pred"])
    results = hits.groupby(["study", "run_id", *keys, "is_off", "label"], sort=False).agg(
        n=("hit", "size"), correct=("hit", "sum")).reset_index().rename(columns={"label": "class_id"})
    results["class_name"] = results["class_id"].map(names)
    results["accuracy"] = results["correct"] / results["n"]
    results = results.sort_values([*keys, "class_id"]).reset_index(drop=True)[list(_RESULTS_COLUMNS)]
    return (results, predictions) if return_predictions else results


# --------------------------------------------------------------------------------------------------------------
# Private core
# --------------------------------------------------------------------------------------------------------------

def _check_columns(frame: pd.DataFrame, needed: Sequence[str], name: str) -> None:
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise AnalysisError(MISSING_COLUMNS.format(frame=name, missing=missing, needed=list(needed)))


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise AnalysisError(INVALID_OPTION.format(name=name, value=value, allowed=", ".join(map(repr, allowed))))


def _check_fraction(name: str, value: float) -> None:
    if not (isinstance(value, numbers.Real) and 0 < value < 1):
        raise AnalysisError(INVALID_OPTION.format(name=name, value=value, allowed="a number between 0 and 1"))


def _rows(data: pd.DataFrame, split: str, *, frame: str = "results",
          needed: Sequence[str] = _RESULTS_NEEDED) -> pd.DataFrame:
    """The rows of one split, after checking the columns the analysis reads."""
    _check_columns(data, needed, frame)
    rows = data[data["split"] == split]
    if rows.empty:
        raise AnalysisError(SPLIT_MISSING.format(frame=frame, split=split, present=sorted(data["split"].unique())))
    if frame == "results":
        # Two runs of one seed and strength (two results folders concatenated, say) cannot be paired by seed.
        keys = ["regularizer", "strength", "seed", "class_id"]
        repeated = rows.duplicated(keys, keep=False)
        if repeated.any():
            first = rows[repeated].iloc[0]
            same = rows[(rows[keys] == first[keys]).all(axis=1)]
            runs = sorted(map(str, same["run_id"].unique())) if "run_id" in rows else "unknown"
            raise AnalysisError(DUPLICATE_RESULTS.format(
                count=int(repeated.sum()), regularizer=first["regularizer"], strength=_plain(first["strength"]),
                seed=_plain(first["seed"]), class_id=_plain(first["class_id"]), runs=runs))
    return rows


def _same(a, b):
    """Strength equality that survives a round trip through text or float32 storage."""
    return np.isclose(a, b, rtol=1e-9, atol=0.0)


def _floats(values) -> list[float]:
    """Sorted distinct values as plain floats, so messages print 0.5 rather than np.float64(0.5)."""
    return sorted(float(v) for v in pd.unique(values))


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _off_strengths(results: pd.DataFrame) -> dict[str, float]:
    """Each regularizer's off strength, checking that every axis has exactly one."""
    problems, off = [], {}
    for regularizer, axis in results.groupby("regularizer", sort=True):
        strengths = _floats(axis.loc[axis["is_off"].astype(bool), "strength"])
        if not strengths:
            problems.append(OFF_MISSING.format(regularizer=regularizer, present=_floats(axis["strength"])))
        elif len(strengths) > 1:
            problems.append(SEVERAL_OFF.format(regularizer=regularizer, strengths=strengths))
        else:
            off[regularizer] = strengths[0]
    if problems:
        raise AnalysisError("\n".join(problems))
    return off


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


def _check_select_on(results: pd.DataFrame, select_on: str) -> None:
    """Choosing on test must be asked for: a frame without a "val" split raises unless select_on="test"."""
    _check_columns(results, _RESULTS_NEEDED, "results")
    if select_on == "val" and not (results["split"] == "val").any():
        raise AnalysisError(NO_VALIDATION_SPLIT)


def _shared_seeds(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of each axis on the seeds every one of its strengths has, so that strengths are compared on the
    same seeds while a sweep runs (seed 3 done at the first points, not yet at the rest) or after a run failed;
    an axis whose strengths share no seed (each its own seeds, by design) keeps all its rows."""
    keep = []
    for _, axis in results.groupby("regularizer", sort=False):
        shared = frozenset.intersection(*(frozenset(seeds) for seeds in axis.groupby("strength")["seed"].unique()))
        if shared:
            axis = axis[axis["seed"].isin(shared)]
        keep.append(axis)
    return pd.concat(keep) if keep else results


def _best(table: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """The row with the largest `value` per `keys`; ties go to the strength closest to off, then the lower one."""
    top = table[table[value] >= table.groupby(keys)[value].transform("max") - _TOL]
    ranked = top.assign(distance=(top["strength"] - top["off_strength"]).abs())
    ranked = ranked.sort_values([*keys, "distance", "strength"]).drop_duplicates(keys)
    return ranked.drop(columns="distance").reset_index(drop=True)


def _comparisons(results: pd.DataFrame, rows: pd.DataFrame, strength: object, split: str, *, select_on: str,
                 allow_all: bool) -> pd.DataFrame:
    """The (regularizer, strength, off_strength) points a `strength` option names."""
    off = _off_strengths(results)
    present = {regularizer: _floats(axis) for regularizer, axis in rows.groupby("regularizer")["strength"]}
    if strength is None or (isinstance(strength, str) and strength == "chosen"):
        chosen = choose_strength(results, select_on=select_on, report_on=split)
        points = list(zip(chosen["regularizer"], chosen["chosen_strength"]))
    elif allow_all and isinstance(strength, str) and strength == "all":
        points = [(r, s) for r, strengths in present.items() for s in strengths if not _same(s, off[r])]
    elif isinstance(strength, Mapping):
        problems, points = [], []
        for regularizer, wanted in sorted(strength.items()):
            if regularizer not in present:
                problems.append(UNKNOWN_REGULARIZER.format(
                    regularizer=regularizer, frame="results", hint=did_you_mean(regularizer, present),
                    present=sorted(present)))
                continue
            match = [s for s in present[regularizer] if _same(s, wanted)]
            if not match:
                problems.append(UNKNOWN_STRENGTH.format(strength=wanted, regularizers=repr(regularizer),
                                                        present=present[regularizer]))
            points += [(regularizer, s) for s in match]
        if problems:
            raise AnalysisError("\n".join(problems))
    elif isinstance(strength, numbers.Real) and not isinstance(strength, bool):
        points = [(r, s) for r, strengths in present.items() for s in strengths if _same(s, strength)]
        if not points:
            raise AnalysisError(UNKNOWN_STRENGTH.format(strength=_plain(strength), regularizers="any regularizer",
                                                        present=present))
    else:
        allowed = "'chosen', 'all', a number or {regularizer: strength}" if allow_all else \
            "'chosen', a number or {regularizer: strength}"
        raise AnalysisError(INVALID_OPTION.format(name="strength", value=strength, allowed=allowed))
    table = pd.DataFrame(points, columns=["regularizer", "strength"])
    table["off_strength"] = table["regularizer"].map(off)
    return table


def _compare(axis: pd.DataFrame, regularizer: str, strength: float, off_strength: float, *, test: str,
             confidence: float, predictions: pd.DataFrame | None, split: str, n_resamples: int,
             rng: int) -> pd.DataFrame:
    """The difference table of one (regularizer, strength) against its off point, before the flags.

    `axis` holds the rows of `regularizer` on the analysed split.
    """
    values = ["accuracy", "correct", "n"]
    off_rows, on_rows = axis[axis["is_off"].astype(bool)], axis[_same(axis["strength"], strength)]
    seeds_off, seeds_on = set(off_rows["seed"]), set(on_rows["seed"])
    shared = sorted(seeds_off & seeds_on)
    if test in ("auto", "paired") and len(shared) >= 2 and (seeds_off <= seeds_on or seeds_on <= seeds_off):
        # One arm has seeds the other lacks (a sweep still running): both are compared on the shared seeds, so
        # that the change and its test pair each seed with itself rather than mix two seed sets. Arms that each
        # have seeds of their own are left whole (the permutation test uses them all).
        off_rows, on_rows = off_rows[off_rows["seed"].isin(shared)], on_rows[on_rows["seed"].isin(shared)]
    # One row per class, one column per (value, seed).
    off = off_rows.pivot(index="class_id", columns="seed", values=values)
    on = on_rows.pivot(index="class_id", columns="seed", values=values)
    classes = off.index.intersection(on.index)
    off, on = off.loc[classes], on.loc[classes]
    seeds_off, seeds_on = list(off["accuracy"].columns), list(on["accuracy"].columns)
    table = pd.DataFrame({
        "regularizer": regularizer, "strength": strength, "class_id": classes,
        "class_name": axis.drop_duplicates("class_id").set_index("class_id")["class_name"].reindex(classes).to_numpy(),
        "n_seeds_off": len(seeds_off), "n_seeds": len(seeds_on),
        "mean_off": off["accuracy"].mean(axis=1).to_numpy(), "mean": on["accuracy"].mean(axis=1).to_numpy(),
    })
    table["delta"] = table["mean"] - table["mean_off"]
    kind = "identical" if _same(strength, off_strength) else _pick_test(test, seeds_off, seeds_on, regularizer,
                                                                         strength)
    if kind == "identical":
        p, low, high, used = 1.0, 0.0, 0.0, kind
    elif kind == "none" or (kind == "mcnemar" and predictions is None):
        p, low, high, used = np.nan, np.nan, np.nan, "none"
    elif kind == "mcnemar":
        p, low, high = _mcnemar(predictions, regularizer, (off_strength, seeds_off[0]), (strength, seeds_on[0]),
                                split, classes, confidence)
        used = kind
    else:
        p, low, high, used = _t_tests(on, off, paired=kind == "paired", confidence=confidence)
        if kind == "permutation":
            # Only where Welch's statistic applies: the zero-variance rows keep their Fisher or "equal" result.
            welch = used == "welch"
            # Its own generator per point, so a p-value does not depend on which other points are analysed.
            seed = [rng, zlib.crc32(f"{regularizer}|{float(strength)!r}".encode())]
            if welch.any():
                p[welch] = stats.permutation_test(
                    (on["accuracy"].to_numpy()[welch], off["accuracy"].to_numpy()[welch]), _mean_difference,
                    vectorized=True, axis=1, permutation_type="independent", n_resamples=n_resamples,
                    rng=np.random.default_rng(seed)).pvalue
            used[welch] = kind
    table["ci_low"], table["ci_high"], table["p_value"], table["test_used"] = low, high, p, used
    tested = table["p_value"].notna().to_numpy()
    table["q_value"] = np.nan
    if tested.any():
        table.loc[tested, "q_value"] = stats.false_discovery_control(table.loc[tested, "p_value"], method="bh")
    return table


def _pick_test(test: str, seeds_off: list, seeds_on: list, regularizer: str, strength: float) -> str:
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
            test=test, needs=needs, regularizer=regularizer, strength=_plain(strength),
            seeds=[_plain(s) for s in seeds_on], seeds_off=[_plain(s) for s in seeds_off]))
    return test


def _t_tests(on: pd.DataFrame, off: pd.DataFrame, *, paired: bool, confidence: float):
    """p-value, interval and test name per class from a t-test, with the zero-variance rule of difference()."""
    a = on["accuracy"].to_numpy()
    # Pairing is by seed, so the off columns are put in the on arm's seed order.
    b = off["accuracy"][list(on["accuracy"].columns)].to_numpy() if paired else off["accuracy"].to_numpy()
    # A class some seed's run has no images of (results from another tool) has no full set of seeds to test.
    complete = ~(np.isnan(a).any(axis=1) | np.isnan(b).any(axis=1))
    with np.errstate(invalid="ignore"):
        delta = a.mean(axis=1) - b.mean(axis=1)
        constant = (np.ptp(a, axis=1) < _TOL) & (np.ptp(b, axis=1) < _TOL)
        degenerate = np.ptp(a - b, axis=1) < _TOL if paired else constant
        equal = np.abs(delta) < _TOL
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


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _mcnemar(predictions: pd.DataFrame, regularizer: str, off_run: tuple, on_run: tuple, split: str,
             classes: pd.Index, confidence: float):
    """Exact McNemar test per class between two runs, each given as (strength, seed), pairing images by index."""
    axis = _rows(predictions, split, frame="predictions", needed=_PREDICTIONS_NEEDED)
    axis = axis[axis["regularizer"] == regularizer]
    runs = []
    for strength, seed in (off_run, on_run):
        run = axis[_same(axis["strength"], strength) & (axis["seed"] == seed)]
        if run.empty:
            raise AnalysisError(PREDICTIONS_MISSING_RUN.format(split=split, regularizer=regularizer,
                                                               strength=_plain(strength), seed=_plain(seed)))
        runs.append(run)
    _check_index_labels(pd.concat(runs))
    runs = [run.set_index("index")[["label", "pred"]] for run in runs]
    pair = runs[0].merge(runs[1], left_index=True, right_index=True, suffixes=("_off", "_on"))
    right_off, right_on = pair["pred_off"] == pair["label_off"], pair["pred_on"] == pair["label_off"]
    counts = pd.DataFrame({"lost": right_off & ~right_on, "gained": ~right_off & right_on, "n": 1}).groupby(
        pair["label_off"]).sum().reindex(classes, fill_value=0)
    p, low, high = (np.zeros(len(classes)) for _ in range(3))
    for i, (lost, gained, n) in enumerate(counts[["lost", "gained", "n"]].itertuples(index=False)):
        if lost + gained == 0:
            p[i] = 1.0
            continue
        # Conditional on the b + c discordant images, gained ~ Binomial(b + c, 1/2) under no change, and
        # delta = (c - b) / n = (b + c) / n * (2 pi - 1), so the interval for pi maps onto delta.
        result = stats.binomtest(gained, lost + gained, 0.5)
        interval = result.proportion_ci(confidence, method="exact")
        p[i] = result.pvalue
        low[i], high[i] = ((lost + gained) / n * (2 * np.array([interval.low, interval.high]) - 1))
    return p, low, high


def _prediction_arms(predictions: pd.DataFrame, regularizer: str, strength: float, split: str):
    """The off and `strength` rows of one axis of the predictions frame, and the stored strength value."""
    rows = _rows(predictions, split, frame="predictions", needed=_PREDICTIONS_NEEDED)
    axis = rows[rows["regularizer"] == regularizer]
    if axis.empty:
        present = sorted(rows["regularizer"].unique())
        raise AnalysisError(UNKNOWN_REGULARIZER.format(regularizer=regularizer, frame="predictions",
                                                       hint=did_you_mean(regularizer, present), present=present))
    match = [s for s in _floats(axis["strength"]) if _same(s, strength)]
    if not match:
        raise AnalysisError(UNKNOWN_STRENGTH.format(strength=_plain(strength), regularizers=repr(regularizer),
                                                    present=_floats(axis["strength"])))
    off = axis[axis["is_off"].astype(bool)]
    if off.empty:
        raise AnalysisError(OFF_MISSING.format(regularizer=regularizer, present=_floats(axis["strength"])))
    return off, axis[_same(axis["strength"], match[0])], match[0]


def _confusion_rates(arm: pd.DataFrame) -> pd.Series:
    """Fraction of each true class's images predicted as each class, averaged over seeds; index (label, pred)."""
    counts = arm.groupby(["seed", "label", "pred"]).size()
    rates = counts / counts.groupby(level=["seed", "label"]).transform("sum")
    # A pair a seed never predicted has rate 0 in that seed, which the mean over seeds must include.
    return rates.unstack("seed", fill_value=0.0).mean(axis=1)


def _false_positives(arm: pd.DataFrame, classes: np.ndarray) -> np.ndarray:
    """Images of other classes predicted as each class, per run, averaged over seeds."""
    wrong = arm[arm["label"] != arm["pred"]]
    per_seed = wrong.groupby(["seed", "pred"]).size().unstack("pred", fill_value=0)
    per_seed = per_seed.reindex(index=sorted(arm["seed"].unique()), columns=classes, fill_value=0)
    return per_seed.mean(axis=0).to_numpy(dtype=float)


def _check_index_labels(rows: pd.DataFrame, hint: str = "") -> None:
    """Raise if one (split, index) carries two labels: then it is not the same image in every run, and pairing
    runs image by image (McNemar, churn) would compare one image's prediction with another's label."""
    labels = rows.groupby(["split", "index"], sort=True)["label"]
    mixed = labels.transform("nunique") > 1
    if not mixed.any():
        return
    first = rows[mixed].iloc[0]
    conflict = rows[mixed & (rows["split"] == first["split"]) & (rows["index"] == first["index"])
                    & (rows["label"] != first["label"])].iloc[0]
    raise AnalysisError(INDEX_LABEL_CONFLICT.format(
        index=_plain(first["index"]), split=first["split"], first=_plain(first["label"]),
        second=_plain(conflict["label"]), regularizer=first["regularizer"], strength=_plain(first["strength"]),
        seed=_plain(first["seed"]), regularizer2=conflict["regularizer"], strength2=_plain(conflict["strength"]),
        seed2=_plain(conflict["seed"]), hint=hint))


def _check_present(values: pd.Series, column: str, problems: list[str]) -> None:
    missing = values.isna()
    if missing.any():
        problems.append(NULL_VALUES.format(column=column, count=int(missing.sum()),
                                           row=_plain(values.index[missing][0])))


def _numbers(values: pd.Series, column: str, problems: list[str], *, whole: bool,
             allow_nan: bool = False) -> pd.Series:
    """`values` as float (or int64 when `whole`), noting the first value that is not a number."""
    number = pd.to_numeric(values, errors="coerce")
    bad = number.isna() & (values.notna() if allow_nan else True)
    if bad.any():
        problems.append(NOT_NUMBER.format(column=column, value=_plain(values[bad].iloc[0]),
                                          row=_plain(values.index[bad][0])))
        return number
    if whole:
        fraction = number != np.round(number)
        if fraction.any():
            problems.append(NOT_WHOLE_NUMBER.format(column=column, value=_plain(values[fraction].iloc[0]),
                                                    row=_plain(values.index[fraction][0])))
            return number
        return number.astype("int64")
    return number.astype(float)


def _booleans(values: pd.Series, problems: list[str]) -> pd.Series:
    if not pd.api.types.is_bool_dtype(values):
        bad = ~values.map(lambda v: isinstance(v, (bool, np.bool_))).astype(bool)
        if bad.any():
            problems.append(NOT_BOOL.format(value=_plain(values[bad].iloc[0]), row=_plain(values.index[bad][0])))
    return values.astype(bool)


def _map_labels(data: pd.DataFrame, given: dict[str, str], class_names, problems: list[str]) -> dict[int, str]:
    """Turn `label` and `pred` into class ids in place; return {class id: name}."""
    by_id = None
    if class_names is not None:
        by_id = ({int(k): str(v) for k, v in class_names.items()} if isinstance(class_names, Mapping)
                 else {i: str(v) for i, v in enumerate(class_names)})
    numeric = all(pd.api.types.is_numeric_dtype(data[key]) and not pd.api.types.is_bool_dtype(data[key])
                  for key in ("label", "pred"))
    if numeric:
        for key in ("label", "pred"):
            data[key] = _numbers(data[key], given[key], problems, whole=True)
        if problems:
            return {}
        if by_id is None:
            return {int(i): str(i) for i in np.union1d(data["label"], data["pred"])}
        for key in ("label", "pred"):
            unnamed = ~data[key].isin(by_id)
            if unnamed.any():
                problems.append(CLASS_NAME_MISSING.format(class_id=_plain(data[key][unnamed].iloc[0]),
                                                          column=given[key]))
        return by_id
    for key in ("label", "pred"):
        data[key] = data[key].astype(str)
    if by_id is None:
        by_id = dict(enumerate(sorted(set(data["label"]) | set(data["pred"]))))
    ids = {name: i for i, name in by_id.items()}
    for key in ("label", "pred"):
        unknown = ~data[key].isin(ids)
        if unknown.any():
            problems.append(UNKNOWN_LABEL.format(column=given[key], value=data[key][unknown].iloc[0],
                                                 row=_plain(data.index[unknown][0])))
        data[key] = data[key].map(ids)
    return by_id


def _assign_off(data: pd.DataFrame, off: Mapping[str, float] | None, problems: list[str]) -> pd.DataFrame:
    """Mark each axis' off rows (copying shared off rows under every axis); add the `shared_run` flag."""
    shared = data["regularizer"].isna()
    data["shared_run"] = shared
    present = sorted(data.loc[~shared, "regularizer"].unique())
    if off is None:
        for regularizer, axis in data.groupby("regularizer", sort=True):
            strengths = _floats(axis.loc[axis["is_off"], "strength"])
            if not strengths:
                problems.append(OFF_MISSING.format(regularizer=regularizer, present=_floats(axis["strength"])))
            elif len(strengths) > 1:
                problems.append(SEVERAL_OFF.format(regularizer=regularizer, strengths=strengths))
        mixed = data.groupby(["regularizer", "strength"], sort=True)["is_off"].nunique() > 1
        for regularizer, strength in mixed[mixed].index[:1]:
            problems.append(IS_OFF_MIXED.format(regularizer=regularizer, strength=_plain(strength)))
        return data
    off = {str(k): float(v) for k, v in off.items()}
    for regularizer in sorted(set(off) - set(present)):
        problems.append(OFF_UNKNOWN_REGULARIZER.format(regularizer=regularizer, hint=did_you_mean(regularizer, present),
                                                       present=present))
    for regularizer in present:
        if regularizer not in off:
            problems.append(OFF_NOT_GIVEN.format(regularizer=regularizer, off=off))
    if problems:
        return data
    data["is_off"] = ~shared & _same(data["strength"], data["regularizer"].map(off).astype(float))
    for regularizer in present:
        axis = data[data["regularizer"] == regularizer]
        if not shared.any() and not axis["is_off"].any():
            problems.append(OFF_STRENGTH_MISSING.format(regularizer=regularizer, strength=off[regularizer],
                                                        present=_floats(axis["strength"])))
    copies = [data[shared].assign(regularizer=r, strength=off[r], is_off=True) for r in present]
    return pd.concat([data[~shared], *copies], ignore_index=True)


def _run_ids(data: pd.DataFrame, study: str) -> np.ndarray:
    """12 hex digits of SHA-256 of "study|regularizer|strength|seed" ("study|off|seed" for a shared off run)."""
    point = data["regularizer"].astype(str) + "|" + data["strength"].astype(str)
    key = study + "|" + point.where(~data["shared_run"], "off") + "|" + data["seed"].astype(str)
    codes, keys = pd.factorize(key)
    digests = np.array([hashlib.sha256(k.encode()).hexdigest()[:12] for k in keys])
    return digests[codes]
