"""Two axes at one strength, class by class: does a remedy recover the classes the uniform strength harms?"""

from __future__ import annotations

from typing import Any

import pandas as pd

from classaudit.analysis.change import difference
from classaudit.analysis.checks import AnalysisError


def compare_axes(results: pd.DataFrame, base: str, other: str, strength: float, **options: Any) -> pd.DataFrame:
    """Each class's change from axis `base` to axis `other` at the same strength (e.g. from the uniform strength
    to a class-conditional remedy of it), with the tests and FDR control of :func:`difference`, whose options it
    takes: ``helped`` marks a class the remedy recovers, ``harmed`` one that pays for it instead.

    The rows of `base` at `strength` play the off arm and those of `other` the on arm; seeds pair as in any
    comparison. Returns :func:`difference`'s columns with ``base``, ``other`` and ``at_strength`` in place of
    ``regularizer`` and ``strength``.

    Examples
    --------
    >>> import pandas as pd
    >>> from classaudit import analysis as ca
    >>> rows = [dict(regularizer=axis, strength=s, seed=seed, label=k, pred=k if ok else 1 - k)
    ...         for axis, s, ok in [("crop", 1.0, True), ("crop", 0.5, False), ("crop_exempt", 1.0, True),
    ...                             ("crop_exempt", 0.5, True)] for seed in range(3) for k in (0, 1)]
    >>> results = ca.from_predictions(pd.DataFrame(rows), off={"crop": 1.0, "crop_exempt": 1.0})
    >>> ca.compare_axes(results, "crop", "crop_exempt", 0.5)[["class_id", "delta"]].values.tolist()
    [[0.0, 1.0], [1.0, 1.0]]
    """
    arms = []
    for axis, is_off in ((base, True), (other, False)):
        rows = results[(results["regularizer"] == axis) & (results["strength"] == strength)]
        if rows.empty:
            have = ", ".join(sorted(map(str, set(results["regularizer"]))))
            raise AnalysisError(f"axis {axis!r} has no runs at strength {strength:g}; axes: {have}")
        arms.append(rows.assign(regularizer=f"{other} vs {base}", strength=0.0 if is_off else 1.0, is_off=is_off))
    options.setdefault("select_on", "test")  # nothing is chosen: the strength is given
    table = difference(pd.concat(arms, ignore_index=True), strength=1.0, **options)
    table = table.drop(columns=["regularizer", "strength"])
    table.insert(0, "at_strength", float(strength))
    table.insert(0, "other", other)
    table.insert(0, "base", base)
    return table
