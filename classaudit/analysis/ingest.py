"""Predictions made by any tool -> the results and predictions frames a classaudit sweep stores."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from classaudit.analysis.checks import (
    CLASS_NAME_MISSING, DUPLICATE_INDEX, INVALID_SPLIT_VALUE, IS_OFF_MIXED, MISSING_COLUMNS, NEED_OFF, NOT_BOOL,
    NOT_NUMBER, NOT_WHOLE_NUMBER, NULL_VALUES, OFF_MISSING, OFF_NOT_GIVEN, OFF_STRENGTH_MISSING,
    OFF_UNKNOWN_REGULARIZER, SEVERAL_OFF, SHARED_OFF_NEEDS_MAPPING, UNKNOWN_LABEL, AnalysisError,
    check_index_labels,
)
from classaudit.analysis.schema import PREDICTIONS_COLUMNS, RESULTS_COLUMNS, SPLITS, floats, plain, same_strength
from classaudit.errors import did_you_mean


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
            problems.append(INVALID_SPLIT_VALUE.format(column=given["split"], value=plain(data["split"][bad].iloc[0]),
                                                       row=plain(data.index[bad][0])))
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
        raise AnalysisError(DUPLICATE_INDEX.format(regularizer=first["regularizer"], strength=plain(first["strength"]),
                                                   seed=plain(first["seed"]), split=first["split"],
                                                   index=plain(first["index"])))

    check_index_labels(data, hint="" if index is not None else (
        ": without index=, each run's rows are taken in frame order, so every run must list its images in the "
        "same order; pass index=COLUMN to name each image"))

    data["study"] = study
    data["run_id"] = _run_ids(data, study)
    predictions = data.sort_values([*keys, "index"]).reset_index(drop=True)[list(PREDICTIONS_COLUMNS)]
    hits = predictions.assign(hit=predictions["label"] == predictions["pred"])
    results = hits.groupby(["study", "run_id", *keys, "is_off", "label"], sort=False).agg(
        n=("hit", "size"), correct=("hit", "sum")).reset_index().rename(columns={"label": "class_id"})
    results["class_name"] = results["class_id"].map(names)
    results["accuracy"] = results["correct"] / results["n"]
    results = results.sort_values([*keys, "class_id"]).reset_index(drop=True)[list(RESULTS_COLUMNS)]
    return (results, predictions) if return_predictions else results


def _check_present(values: pd.Series, column: str, problems: list[str]) -> None:
    missing = values.isna()
    if missing.any():
        problems.append(NULL_VALUES.format(column=column, count=int(missing.sum()),
                                           row=plain(values.index[missing][0])))


def _numbers(values: pd.Series, column: str, problems: list[str], *, whole: bool,
             allow_nan: bool = False) -> pd.Series:
    """`values` as float (or int64 when `whole`), noting the first value that is not a number."""
    number = pd.to_numeric(values, errors="coerce")
    bad = number.isna() & (values.notna() if allow_nan else True)
    if bad.any():
        problems.append(NOT_NUMBER.format(column=column, value=plain(values[bad].iloc[0]),
                                          row=plain(values.index[bad][0])))
        return number
    if whole:
        fraction = number != np.round(number)
        if fraction.any():
            problems.append(NOT_WHOLE_NUMBER.format(column=column, value=plain(values[fraction].iloc[0]),
                                                    row=plain(values.index[fraction][0])))
            return number
        return number.astype("int64")
    return number.astype(float)


def _booleans(values: pd.Series, problems: list[str]) -> pd.Series:
    if not pd.api.types.is_bool_dtype(values):
        bad = ~values.map(lambda v: isinstance(v, (bool, np.bool_))).astype(bool)
        if bad.any():
            problems.append(NOT_BOOL.format(value=plain(values[bad].iloc[0]), row=plain(values.index[bad][0])))
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
                problems.append(CLASS_NAME_MISSING.format(class_id=plain(data[key][unnamed].iloc[0]),
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
                                                 row=plain(data.index[unknown][0])))
        data[key] = data[key].map(ids)
    return by_id


def _assign_off(data: pd.DataFrame, off: Mapping[str, float] | None, problems: list[str]) -> pd.DataFrame:
    """Mark each axis' off rows (copying shared off rows under every axis); add the `shared_run` flag."""
    shared = data["regularizer"].isna()
    data["shared_run"] = shared
    present = sorted(data.loc[~shared, "regularizer"].unique())
    if off is None:
        for regularizer, axis in data.groupby("regularizer", sort=True):
            strengths = floats(axis.loc[axis["is_off"], "strength"])
            if not strengths:
                problems.append(OFF_MISSING.format(regularizer=regularizer, present=floats(axis["strength"])))
            elif len(strengths) > 1:
                problems.append(SEVERAL_OFF.format(regularizer=regularizer, strengths=strengths))
        mixed = data.groupby(["regularizer", "strength"], sort=True)["is_off"].nunique() > 1
        for regularizer, strength in mixed[mixed].index[:1]:
            problems.append(IS_OFF_MIXED.format(regularizer=regularizer, strength=plain(strength)))
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
    data["is_off"] = ~shared & same_strength(data["strength"], data["regularizer"].map(off).astype(float))
    for regularizer in present:
        axis = data[data["regularizer"] == regularizer]
        if not shared.any() and not axis["is_off"].any():
            problems.append(OFF_STRENGTH_MISSING.format(regularizer=regularizer, strength=off[regularizer],
                                                        present=floats(axis["strength"])))
    copies = [data[shared].assign(regularizer=r, strength=off[r], is_off=True) for r in present]
    return pd.concat([data[~shared], *copies], ignore_index=True)


def _run_ids(data: pd.DataFrame, study: str) -> np.ndarray:
    """12 hex digits of SHA-256 of "study|regularizer|strength|seed" ("study|off|seed" for a shared off run)."""
    point = data["regularizer"].astype(str) + "|" + data["strength"].astype(str)
    key = study + "|" + point.where(~data["shared_run"], "off") + "|" + data["seed"].astype(str)
    codes, keys = pd.factorize(key)
    digests = np.array([hashlib.sha256(k.encode()).hexdigest()[:12] for k in keys])
    return digests[codes]
