"""Change against the off point: per-class differences with their tests and FDR control, the harmed fraction,
whether a strength changes every class alike (Friedman), and each class's regret at the chosen strength.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from scipy import stats

from classaudit.analysis.accuracy import by_class
from classaudit.analysis.checks import (
    FAMILIES, INVALID_OPTION, PREDICTIONS_MISSING_RUN, TESTS, AnalysisError, check_choice, check_columns, check_fraction, check_index_labels,
    split_rows,
)
from classaudit.analysis.points import best_rows, check_select_on, comparisons, off_strengths, shared_seeds
from classaudit.analysis.schema import DIFFERENCE_COLUMNS, PREDICTIONS_NEEDED, plain, same_strength
from classaudit.analysis.significance import (
    binomial_variance, cell_priors, moderated_t, pick_test, t_tests, treat_pvalue, welch_t,
)


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
    family: str = "all",
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
    check_choice("test", test, TESTS)
    check_choice("family", family, FAMILIES)
    check_fraction("alpha", alpha)
    check_fraction("confidence", confidence)
    if isinstance(min_effect, bool) or not isinstance(min_effect, (int, float)) or not 0 <= min_effect < 1:
        raise AnalysisError(INVALID_OPTION.format(name="min_effect", value=min_effect,
                                                  allowed="a number from 0 to 1 (0.01 = 1 point)"))
    rows = split_rows(results, split)
    points = comparisons(results, rows, strength, split, select_on=select_on, allow_all=True)
    if points.empty:
        return pd.DataFrame(columns=list(DIFFERENCE_COLUMNS))
    axes = dict(tuple(rows.groupby("regularizer", sort=False)))
    # The prior of the moderated test is fitted on every strength of every regularizer, whichever are asked for,
    # so a strength's p-value does not depend on which others are analysed.
    priors = fit_priors(rows) if test in ("auto", "moderated") else None
    tables = [
        _compare(axes[regularizer], regularizer, s, s_off, test=test, confidence=confidence, predictions=predictions,
                 split=split, n_resamples=n_resamples, rng=rng, min_effect=min_effect, priors=priors)
        for regularizer, s, s_off in points.itertuples(index=False)
    ]
    out = pd.concat(tables, ignore_index=True)
    tested = out["p_value"].notna()
    out["q_value"] = np.nan
    groups = [tested] if family == "all" else [
        tested & (out["regularizer"] == r) & (out["strength"] == s_)
        for r, s_ in out[["regularizer", "strength"]].drop_duplicates().itertuples(index=False)]
    for mask in groups:
        if mask.any():
            out.loc[mask, "q_value"] = stats.false_discovery_control(out.loc[mask, "p_value"], method="bh")
    # One run a side cannot tell the regularizer from the seed: McNemar's q says the two runs differ, not that
    # the strength harms (see the docstring), so it flags nothing.
    flagged = (out["q_value"] < alpha) & (out["test_used"] != "mcnemar")
    out["harmed"] = flagged & (-out["delta"] > min_effect)
    out["helped"] = flagged & (out["delta"] > min_effect)
    return out.sort_values(["regularizer", "strength", "class_id"]).reset_index(drop=True)[list(DIFFERENCE_COLUMNS)]


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
    rows = split_rows(results, split)
    points = comparisons(results, rows, strength, split, select_on=select_on, allow_all=True)
    out = []
    for regularizer, s, s_off in points.itertuples(index=False):
        axis = rows[rows["regularizer"] == regularizer]
        change = (axis[same_strength(axis["strength"], s)].pivot(index="seed", columns="class_id", values="accuracy")
                  - axis[axis["is_off"].astype(bool)].pivot(index="seed", columns="class_id", values="accuracy"))
        change = change.dropna(how="all")  # the shared seeds
        complete = change.dropna()  # a seed missing some class is dropped if enough seeds remain, else the class
        change = complete if len(complete) >= 3 else change.dropna(axis=1)
        statistic, p = np.nan, np.nan
        if same_strength(s, s_off):
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
    check_columns(differences, ("regularizer", "strength", "class_id", "class_name", "delta", "harmed", "helped"),
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
    check_select_on(results, select_on)
    rows = split_rows(results, split)
    points = comparisons(results, rows, strength, split, select_on=select_on, allow_all=False)
    results = shared_seeds(results)
    keys = ["regularizer", "strength", "class_id"]
    means = by_class(results, split=split)[[*keys, "class_name", "mean"]]
    select = by_class(results, split=select_on)[[*keys, "class_name", "mean"]]
    select["off_strength"] = select["regularizer"].map(off_strengths(results))
    best = best_rows(select, ["regularizer", "class_id"], "mean")[keys]
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


def _compare(axis: pd.DataFrame, regularizer: str, strength: float, off_strength: float, *, test: str,
             confidence: float, predictions: pd.DataFrame | None, split: str, n_resamples: int, rng: int,
             min_effect: float, priors: Priors) -> pd.DataFrame:
    """The difference table of one (regularizer, strength) against its off point, before q and the flags.

    `axis` holds the rows of `regularizer` on the analysed split.
    """
    off, on = _arms(axis, strength, pair=test in ("auto", "moderated", "paired"))
    classes = off.index
    seeds_off, seeds_on = list(off["accuracy"].columns), list(on["accuracy"].columns)
    table = pd.DataFrame({
        "regularizer": regularizer, "strength": strength, "class_id": classes,
        "class_name": axis.drop_duplicates("class_id").set_index("class_id")["class_name"].reindex(classes).to_numpy(),
        # Per class: a class some seed's run has no images of counts that seed out.
        "n_seeds_off": off["accuracy"].notna().sum(axis=1).to_numpy(),
        "n_seeds": on["accuracy"].notna().sum(axis=1).to_numpy(),
        "mean_off": off["accuracy"].mean(axis=1).to_numpy(), "mean": on["accuracy"].mean(axis=1).to_numpy(),
    })
    table["delta"] = table["mean"] - table["mean_off"]
    kind = "identical" if same_strength(strength, off_strength) else pick_test(test, seeds_off, seeds_on,
                                                                                regularizer, strength)
    if kind.startswith("moderated") and not (priors and priors[0].scale > 0 and priors[0].df > 0):
        # No prior to moderate with (fewer than 3 arms with 2 seeds, seeds that never differ, or variances that
        # say nothing beyond their own: d0 = 0): the plain tests,
        # with their exact fallbacks for seeds that agree.
        kind = "paired" if kind == "moderated" else "welch"
    if kind == "identical":
        p, low, high, used = 1.0, 0.0, 0.0, kind
    elif kind == "none" or (kind == "mcnemar" and predictions is None):
        p, low, high, used = np.nan, np.nan, np.nan, "none"
    elif kind == "mcnemar":
        p, low, high = _mcnemar(predictions, regularizer, (off_strength, seeds_off[0]), (strength, seeds_on[0]),
                                split, classes, confidence)
        used = kind
    elif kind in ("moderated", "moderated_welch"):
        p, low, high, used = _moderated(on, off, regularizer, strength, paired=kind == "moderated", priors=priors,
                                        confidence=confidence, min_effect=min_effect)
    else:
        p, low, high, used, se, df = t_tests(on, off, paired=kind == "paired", confidence=confidence)
        if min_effect > 0:  # TREAT where a t statistic is defined; the exact fallbacks keep their p
            t_based = np.isin(used, ("paired", "welch"))
            p[t_based] = treat_pvalue(table["delta"].to_numpy()[t_based], se[t_based], df[t_based], min_effect)
        if kind == "permutation":
            # Only where Welch's statistic applies: the zero-variance rows keep their Fisher or "equal" result.
            welch = used == "welch"
            # Its own generator per point, so a p-value does not depend on which other points are analysed.
            seed = [rng, zlib.crc32(f"{regularizer}|{float(strength)!r}".encode())]
            if welch.any():
                a, b = on["accuracy"].to_numpy()[welch], off["accuracy"].to_numpy()[welch]
                # A minimum effect is tested by moving the on arm min_effect toward no change, so the null is a
                # change of exactly that size in the estimate's direction.
                a = a - np.sign(a.mean(axis=1) - b.mean(axis=1))[:, None] * min_effect
                p[welch] = stats.permutation_test(
                    (a, b), welch_t, vectorized=True, axis=1, permutation_type="independent",
                    n_resamples=n_resamples, rng=np.random.default_rng(seed)).pvalue
            used[welch] = kind
    table["ci_low"], table["ci_high"], table["p_value"], table["test_used"] = low, high, p, used
    return table


def _arms(axis: pd.DataFrame, strength: float, *, pair: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The off and on arms of one strength, one row per class (present in both) and one column per (value, seed).
    When one arm has seeds the other lacks (a sweep still running) and `pair`, both keep the shared seeds only, so
    that the change and its test pair each seed with itself rather than mix two seed sets; arms that each have
    seeds of their own are left whole."""
    values = ["accuracy", "correct", "n"]
    off_rows, on_rows = axis[axis["is_off"].astype(bool)], axis[same_strength(axis["strength"], strength)]
    seeds_off, seeds_on = set(off_rows["seed"]), set(on_rows["seed"])
    shared = sorted(seeds_off & seeds_on)
    if pair and len(shared) >= 2 and (seeds_off <= seeds_on or seeds_on <= seeds_off):
        off_rows, on_rows = off_rows[off_rows["seed"].isin(shared)], on_rows[on_rows["seed"].isin(shared)]
    off = off_rows.pivot(index="class_id", columns="seed", values=values)
    on = on_rows.pivot(index="class_id", columns="seed", values=values)
    classes = off.index.intersection(on.index)
    return off.loc[classes], on.loc[classes]


Priors = tuple  # (the shared Prior, {(regularizer, strength, class_id): (scale, df) of that arm's prior})


def fit_priors(rows: pd.DataFrame) -> Priors:
    """The moderated test's prior, fitted on the seed variance of every arm of the results: each (regularizer,
    strength) run set and the off runs, per class, relative to the binomial variance p (1 - p) / n. Arms are
    independent runs, so their variances are independent evidence; the per-seed changes of a class are not (every
    strength shares the off runs). Each cell's prior is its class's own, from the class's other arms
    (:func:`significance.cell_priors`), and serves the paired test (times the two arms' binomial variances) and
    the Welch-style test alike. One fit for the whole sweep, whichever strengths are asked for: a strength's
    p-value does not depend on which others are analysed."""
    found = []  # (regularizer, strength, class_id, ratio, df)

    def cells(values: pd.DataFrame, n: pd.Series, where: tuple) -> None:
        if values.shape[1] >= 2:
            ratio = values.var(axis=1, ddof=1).to_numpy() / binomial_variance(values.mean(axis=1), n)
            complete = values.notna().all(axis=1).to_numpy()
            found.extend((*where, k, r, values.shape[1] - 1) for k, r, ok in zip(values.index, ratio, complete) if ok)

    on_rows = rows[~rows["is_off"].astype(bool)]
    for (regularizer, s), arm in on_rows.groupby(["regularizer", "strength"], sort=True):
        wide = arm.pivot(index="class_id", columns="seed", values=["accuracy", "n"])
        cells(wide["accuracy"], wide["n"].max(axis=1), (regularizer, float(s)))
    off = rows[rows["is_off"].astype(bool)].drop_duplicates(["seed", "class_id"])  # once, however many axes share it
    wide = off.pivot(index="class_id", columns="seed", values=["accuracy", "n"])
    cells(wide["accuracy"], wide["n"].max(axis=1), ("", np.nan))
    frame = pd.DataFrame(found, columns=["regularizer", "strength", "class_id", "ratio", "df"])
    prior, scale, prior_df = cell_priors(frame["class_id"].to_numpy(), frame["ratio"].to_numpy(),
                                         frame["df"].to_numpy())
    return prior, {(r, s, int(k)): (a, b) for r, s, k, a, b in zip(frame["regularizer"], frame["strength"],
                                                                   frame["class_id"], scale, prior_df)}


def _moderated(on: pd.DataFrame, off: pd.DataFrame, regularizer: str, strength: float, *, paired: bool,
               priors: Priors, confidence: float, min_effect: float):
    """p (TREAT at min_effect), interval and test name per class from the moderated t-test."""
    prior, per_cell = priors
    chosen = [per_cell.get((regularizer, float(strength), int(k)), (prior.scale, prior.df)) for k in on.index]
    a = on["accuracy"].to_numpy()
    b = off["accuracy"][list(on["accuracy"].columns)].to_numpy() if paired else off["accuracy"].to_numpy()
    p, low, high = moderated_t(a, b, on["n"].max(axis=1).to_numpy(), off["n"].max(axis=1).to_numpy(),
                               np.array([c[0] for c in chosen]), np.array([c[1] for c in chosen]), paired=paired,
                               confidence=confidence, min_effect=min_effect)
    used = np.where(np.isnan(p), "none", "moderated" if paired else "moderated_welch").astype(object)
    return p, low, high, used


def _mcnemar(predictions: pd.DataFrame, regularizer: str, off_run: tuple, on_run: tuple, split: str,
             classes: pd.Index, confidence: float):
    """Exact McNemar test per class between two runs, each given as (strength, seed), pairing images by index."""
    axis = split_rows(predictions, split, frame="predictions", needed=PREDICTIONS_NEEDED)
    axis = axis[axis["regularizer"] == regularizer]
    runs = []
    for strength, seed in (off_run, on_run):
        run = axis[same_strength(axis["strength"], strength) & (axis["seed"] == seed)]
        if run.empty:
            raise AnalysisError(PREDICTIONS_MISSING_RUN.format(split=split, regularizer=regularizer,
                                                               strength=plain(strength), seed=plain(seed)))
        runs.append(run)
    check_index_labels(pd.concat(runs))
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
