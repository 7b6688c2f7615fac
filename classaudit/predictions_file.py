"""The predictions a run of the user's own code hands back: `predictions.csv` or `predictions.parquet` (one row
per image of each split: split, index, label, pred, optionally p_true) and `classes.txt` (one class name a line,
class 0 first), read and checked into the per-split predictions of a RunResult. Each problem is one message
naming the file, the column, the value and what is allowed; no torch here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classaudit.errors import RunFailed
from classaudit.result import SplitPredictions

if TYPE_CHECKING:
    import pandas as pd

PREDICTION_FILES = ("predictions.csv", "predictions.parquet")
CLASSES_FILE = "classes.txt"
COLUMNS = ("split", "index", "label", "pred")  # and p_true, optional
SPLIT_NAMES = ("val", "test")  # the order the store keeps them in

# Messages, compared exactly by the tests. {where} is the file a run wrote, or the frame a function returned;
# {out} is the folder the run was given (a temporary one, so named by its placeholder).
NO_PREDICTIONS = ("{out}: no predictions file; the run must write {out}/predictions.csv or {out}/predictions.parquet "
                  "(columns split, index, label, pred, optionally p_true) and {out}/classes.txt")
TWO_PREDICTIONS = "{out}: both predictions.csv and predictions.parquet; write one of them"
NO_CLASSES = "{out}/classes.txt: missing; write the class names there, one a line, class 0 first"
BAD_CLASSES = "{{out}}/classes.txt: {problem}; write the class names there, one a line, class 0 first"
UNREADABLE = "{where}: cannot be read as {kind} ({why})"
MISSING_COLUMN = ("{where}: column '{column}' is missing; expected the columns split, index, label, pred and "
                  "optionally p_true (found: {found})")
BAD_SPLIT = "{where}: column 'split': value {value} is not allowed; expected \"val\" or \"test\""
NO_TEST = "{where}: no row has split \"test\"; every run must predict the test split (val is optional)"
NOT_WHOLE = ("{where}: column '{column}': value {value} (row {row}, counted from 0) is not a whole number; expected "
             "{allowed}")
OUT_OF_RANGE = ("{where}: column '{column}': value {value} (split {split}, index {index}) is out of range; "
                "the run names {k} classes, so class ids are 0 to {last}")
BAD_P_TRUE = ("{where}: column 'p_true': value {value} (split {split}, index {index}) is not allowed; expected a "
              "probability from 0 to 1")
BAD_INDEX = ("{where}: split {split}: {problem}; expected each image once, index 0 to {last} for its {n} images, "
             "the same image at the same index in every run")


def read_predictions(out: Path) -> tuple[list[str], dict[str, SplitPredictions]]:
    """The class names and each split's predictions a run wrote into `out`; RunFailed naming the file, the
    column, the value and what is allowed."""
    import pandas as pd

    found = [name for name in PREDICTION_FILES if (out / name).is_file()]
    if not found:
        raise RunFailed(NO_PREDICTIONS)
    if len(found) > 1:
        raise RunFailed(TWO_PREDICTIONS)
    if not (out / CLASSES_FILE).is_file():
        raise RunFailed(NO_CLASSES)
    try:
        lines = (out / CLASSES_FILE).read_text("utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as e:
        raise RunFailed(BAD_CLASSES.format(problem=f"cannot be read ({e})")) from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = check_class_names(lines)
    where = f"{{out}}/{found[0]}"
    try:
        frame = pd.read_csv(out / found[0]) if found[0].endswith(".csv") else pd.read_parquet(out / found[0])
    except Exception as e:  # noqa: BLE001 - pandas and pyarrow raise many kinds; the remedy is the same
        kind = "CSV" if found[0].endswith(".csv") else "Parquet"
        raise RunFailed(UNREADABLE.format(where=where, kind=kind, why=_first_line(e))) from None
    return names, check_predictions(frame, len(names), where)


def check_class_names(lines: Sequence[str], source: str | None = None) -> list[str]:
    def bad(problem: str) -> RunFailed:
        if source is None:
            return RunFailed(BAD_CLASSES.format(problem=problem))
        return RunFailed(f"{source}: {problem}")

    if not lines:
        raise bad("names no class")
    for k, name in enumerate(lines):
        if not name.strip():
            raise bad(f"class {k} has an empty name")
    dupes = sorted({n for n in lines if lines.count(n) > 1})
    if dupes:
        raise bad(f"class name {json.dumps(dupes[0])} appears more than once")
    return list(lines)


def check_predictions(frame: pd.DataFrame, k: int, where: str) -> dict[str, SplitPredictions]:
    """Each split's predictions, in image order, from a frame of columns split, index, label, pred (and
    optionally p_true) and the number of classes `k`; RunFailed for the first problem found."""
    import pandas as pd

    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise RunFailed(MISSING_COLUMN.format(where=where, column=missing[0],
                                              found=", ".join(map(str, frame.columns)) or "none"))
    frame = frame.reset_index(drop=True)
    split = frame["split"].astype(str)
    bad = ~split.isin(SPLIT_NAMES)
    if bad.any():
        raise RunFailed(BAD_SPLIT.format(where=where, value=json.dumps(str(frame["split"][bad].iloc[0]))))
    if not (split == "test").any():
        raise RunFailed(NO_TEST.format(where=where))
    ints = {}
    for column in ("index", "label", "pred"):
        allowed = "an image's position in its split, from 0" if column == "index" else "a class id from 0"
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        wrong = ~np.isfinite(values) | (values != np.round(values))
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise RunFailed(NOT_WHOLE.format(where=where, column=column, value=_shown(frame[column][row]), row=row,
                                             allowed=allowed))
        ints[column] = values.astype(np.int64)
    for column in ("label", "pred"):
        wrong = (ints[column] < 0) | (ints[column] >= k)
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise RunFailed(OUT_OF_RANGE.format(where=where, column=column, value=ints[column][row],
                                                split=split[row], index=ints["index"][row], k=k, last=k - 1))
    if "p_true" in frame.columns:
        p_true = pd.to_numeric(frame["p_true"], errors="coerce").to_numpy(dtype=float)
        wrong = ~((p_true >= 0) & (p_true <= 1))
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise RunFailed(BAD_P_TRUE.format(where=where, value=_shown(frame["p_true"][row]), split=split[row],
                                              index=ints["index"][row]))
    else:
        p_true = np.full(len(frame), np.nan)
    splits = {}
    for name in SPLIT_NAMES:
        rows = np.flatnonzero((split == name).to_numpy())
        if not len(rows):
            continue
        index = ints["index"][rows]
        order = np.argsort(index, kind="stable")
        problem = _index_problem(index[order])
        if problem:
            raise RunFailed(BAD_INDEX.format(where=where, split=name, problem=problem, last=len(rows) - 1,
                                             n=len(rows)))
        chosen = rows[order]
        splits[name] = SplitPredictions(label=ints["label"][chosen], pred=ints["pred"][chosen],
                                        p_true=p_true[chosen].astype(np.float32))
    return splits


def _index_problem(index: np.ndarray) -> str | None:
    """What is wrong with a split's sorted image indices, which must be 0..n-1."""
    repeated = index[1:][index[1:] == index[:-1]]
    if len(repeated):
        return f"index {repeated[0]} appears more than once"
    expected = np.arange(len(index))
    if not np.array_equal(index, expected):
        first = int(np.flatnonzero(index != expected)[0])
        return f"index {first} is missing" if index[first] > first else f"index {index[first]} is negative"
    return None


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and np.isnan(value):
        return "(empty)"
    return str(value.item() if isinstance(value, np.generic) else value)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
