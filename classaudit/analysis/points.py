"""Points of the sweep: each axis' off strength, the seeds its strengths share, the strength cross-validation picks
(s*), and the (regularizer, strength) points a `strength=` option names.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import pandas as pd

from classaudit.analysis.accuracy import overall
from classaudit.analysis.checks import (
    INVALID_OPTION, NO_VALIDATION_SPLIT, OFF_MISSING, SELECT_SPLIT_MISSING, SEVERAL_OFF, UNKNOWN_REGULARIZER,
    UNKNOWN_STRENGTH, AnalysisError, check_columns,
)
from classaudit.analysis.schema import RESULTS_NEEDED, TOL, floats, plain, same_strength
from classaudit.errors import did_you_mean


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
    check_select_on(results, select_on)
    off = off_strengths(results)
    results = shared_seeds(results)
    select = overall(results, split=select_on)[["regularizer", "strength", "mean"]]
    lacking = sorted(set(off) - set(select["regularizer"]))
    if lacking:
        raise AnalysisError(SELECT_SPLIT_MISSING.format(regularizers=lacking, split=select_on))
    select["off_strength"] = select["regularizer"].map(off)
    chosen = best_rows(select, ["regularizer"], "mean").rename(
        columns={"strength": "chosen_strength", "mean": "select_accuracy"})
    report = overall(results, split=report_on).set_index(["regularizer", "strength"])["mean"]
    chosen["accuracy"] = report.reindex(list(zip(chosen["regularizer"], chosen["chosen_strength"]))).to_numpy()
    chosen["accuracy_off"] = report.reindex(list(zip(chosen["regularizer"], chosen["off_strength"]))).to_numpy()
    chosen["gain"] = chosen["accuracy"] - chosen["accuracy_off"]
    return chosen[["regularizer", "off_strength", "chosen_strength", "select_accuracy", "accuracy", "accuracy_off",
                   "gain"]].reset_index(drop=True)


def off_strengths(results: pd.DataFrame) -> dict[str, float]:
    """Each regularizer's off strength, checking that every axis has exactly one."""
    problems, off = [], {}
    for regularizer, axis in results.groupby("regularizer", sort=True):
        strengths = floats(axis.loc[axis["is_off"].astype(bool), "strength"])
        if not strengths:
            problems.append(OFF_MISSING.format(regularizer=regularizer, present=floats(axis["strength"])))
        elif len(strengths) > 1:
            problems.append(SEVERAL_OFF.format(regularizer=regularizer, strengths=strengths))
        else:
            off[regularizer] = strengths[0]
    if problems:
        raise AnalysisError("\n".join(problems))
    return off


def check_select_on(results: pd.DataFrame, select_on: str) -> None:
    """Choosing on test must be asked for: a frame without a "val" split raises unless select_on="test"."""
    check_columns(results, RESULTS_NEEDED, "results")
    if select_on == "val" and not (results["split"] == "val").any():
        raise AnalysisError(NO_VALIDATION_SPLIT)


def shared_seeds(results: pd.DataFrame) -> pd.DataFrame:
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


def best_rows(table: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """The row with the largest `value` per `keys`; ties go to the strength closest to off, then the lower one."""
    top = table[table[value] >= table.groupby(keys)[value].transform("max") - TOL]
    ranked = top.assign(distance=(top["strength"] - top["off_strength"]).abs())
    ranked = ranked.sort_values([*keys, "distance", "strength"]).drop_duplicates(keys)
    return ranked.drop(columns="distance").reset_index(drop=True)


def comparisons(results: pd.DataFrame, rows: pd.DataFrame, strength: object, split: str, *, select_on: str,
                 allow_all: bool) -> pd.DataFrame:
    """The (regularizer, strength, off_strength) points a `strength` option names."""
    off = off_strengths(results)
    present = {regularizer: floats(axis) for regularizer, axis in rows.groupby("regularizer")["strength"]}
    if strength is None or (isinstance(strength, str) and strength == "chosen"):
        chosen = choose_strength(results, select_on=select_on, report_on=split)
        points = list(zip(chosen["regularizer"], chosen["chosen_strength"]))
    elif allow_all and isinstance(strength, str) and strength == "all":
        points = [(r, s) for r, strengths in present.items() for s in strengths if not same_strength(s, off[r])]
    elif isinstance(strength, Mapping):
        problems, points = [], []
        for regularizer, wanted in sorted(strength.items()):
            if regularizer not in present:
                problems.append(UNKNOWN_REGULARIZER.format(
                    regularizer=regularizer, frame="results", hint=did_you_mean(regularizer, present),
                    present=sorted(present)))
                continue
            match = [s for s in present[regularizer] if same_strength(s, wanted)]
            if not match:
                problems.append(UNKNOWN_STRENGTH.format(strength=wanted, regularizers=repr(regularizer),
                                                        present=present[regularizer]))
            points += [(regularizer, s) for s in match]
        if problems:
            raise AnalysisError("\n".join(problems))
    elif isinstance(strength, numbers.Real) and not isinstance(strength, bool):
        points = [(r, s) for r, strengths in present.items() for s in strengths if same_strength(s, strength)]
        if not points:
            raise AnalysisError(UNKNOWN_STRENGTH.format(strength=plain(strength), regularizers="any regularizer",
                                                        present=present))
    else:
        allowed = "'chosen', 'all', a number or {regularizer: strength}" if allow_all else \
            "'chosen', a number or {regularizer: strength}"
        raise AnalysisError(INVALID_OPTION.format(name="strength", value=strength, allowed=allowed))
    table = pd.DataFrame(points, columns=["regularizer", "strength"])
    table["off_strength"] = table["regularizer"].map(off)
    return table
