"""Where the predictions go (Kirichenko et al. 2023): the change of the confusion rows, the classes that absorb a
class's lost predictions, the change of false positives; and the seed-to-seed churn, the noise floor.
"""

from __future__ import annotations

import itertools
import numbers

import numpy as np
import pandas as pd

from classaudit.analysis.checks import (
    INVALID_OPTION, OFF_MISSING, UNKNOWN_REGULARIZER, UNKNOWN_STRENGTH, AnalysisError, check_index_labels,
    split_rows,
)
from classaudit.analysis.schema import PREDICTIONS_NEEDED, TOL, floats, plain, same_strength
from classaudit.errors import did_you_mean


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
    loss = (-diagonal).where(diagonal < -TOL)
    out = shift[(shift["class_id"] != shift["predicted_id"]) & (shift["delta"] > TOL)]
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
    rows = split_rows(predictions, split, frame="predictions", needed=PREDICTIONS_NEEDED)
    tables = []
    for (regularizer, strength), point in rows.groupby(["regularizer", "strength"], sort=True):
        check_index_labels(point)
        grid = point.pivot(index="index", columns="seed", values="pred").dropna()
        labels = point.drop_duplicates("index").set_index("index")["label"].reindex(grid.index)
        pairs = list(itertools.combinations(range(grid.shape[1]), 2))
        differs = pd.DataFrame({pair: grid.iloc[:, pair[0]] != grid.iloc[:, pair[1]] for pair in pairs},
                               index=grid.index, dtype=float)
        # Mean over images (of a class) and seed pairs. Every pair sees the same images, so it is one division of
        # whole counts, whose float does not depend on the order numpy adds in (a mean of means does, and a
        # value on a rounding tie, such as 207 / 2000, then prints differently by library version). With one
        # seed there are no pairs: 0 / 0 is NaN.
        if per_class:
            counts = differs.groupby(labels).sum().sum(axis=1)
            value = counts / (labels.value_counts().reindex(counts.index) * len(pairs))
            table = pd.DataFrame({"class_id": value.index.astype("int64"), "churn": value.to_numpy(float)})
        else:
            table = pd.DataFrame({"churn": [differs.to_numpy().sum() / differs.size if differs.size else np.nan]})
        table.insert(0, "regularizer", regularizer)
        table.insert(1, "strength", strength)
        table["is_off"] = bool(point["is_off"].iloc[0])
        table["n_seeds"] = grid.shape[1]
        tables.append(table)
    keys = ["regularizer", "strength", "class_id"] if per_class else ["regularizer", "strength"]
    return pd.concat(tables, ignore_index=True)[[*keys, "is_off", "n_seeds", "churn"]]


def _prediction_arms(predictions: pd.DataFrame, regularizer: str, strength: float, split: str):
    """The off and `strength` rows of one axis of the predictions frame, and the stored strength value."""
    rows = split_rows(predictions, split, frame="predictions", needed=PREDICTIONS_NEEDED)
    axis = rows[rows["regularizer"] == regularizer]
    if axis.empty:
        present = sorted(rows["regularizer"].unique())
        raise AnalysisError(UNKNOWN_REGULARIZER.format(regularizer=regularizer, frame="predictions",
                                                       hint=did_you_mean(regularizer, present), present=present))
    match = [s for s in floats(axis["strength"]) if same_strength(s, strength)]
    if not match:
        raise AnalysisError(UNKNOWN_STRENGTH.format(strength=plain(strength), regularizers=repr(regularizer),
                                                    present=floats(axis["strength"])))
    off = axis[axis["is_off"].astype(bool)]
    if off.empty:
        raise AnalysisError(OFF_MISSING.format(regularizer=regularizer, present=floats(axis["strength"])))
    return off, axis[same_strength(axis["strength"], match[0])], match[0]


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
