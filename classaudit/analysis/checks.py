"""The analysis' one exception, its messages, and the checks that raise them. Tests compare the messages exactly, so
they are changed here only.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import pandas as pd

from classaudit.analysis.schema import RESULTS_NEEDED, plain
from classaudit.errors import UsageError

__all__ = [
    "AnalysisError",
    "MISSING_COLUMNS",
    "SPLIT_MISSING",
    "NO_VALIDATION_SPLIT",
    "INVALID_OPTION",
    "OFF_MISSING",
    "SEVERAL_OFF",
    "UNKNOWN_REGULARIZER",
    "UNKNOWN_STRENGTH",
    "TEST_NOT_APPLICABLE",
    "SELECT_SPLIT_MISSING",
    "PREDICTIONS_MISSING_RUN",
    "NEED_OFF",
    "SHARED_OFF_NEEDS_MAPPING",
    "NULL_VALUES",
    "NOT_WHOLE_NUMBER",
    "NOT_NUMBER",
    "NOT_BOOL",
    "INVALID_SPLIT_VALUE",
    "OFF_UNKNOWN_REGULARIZER",
    "OFF_NOT_GIVEN",
    "OFF_STRENGTH_MISSING",
    "IS_OFF_MIXED",
    "UNKNOWN_LABEL",
    "CLASS_NAME_MISSING",
    "DUPLICATE_INDEX",
    "INDEX_LABEL_CONFLICT",
    "DUPLICATE_RESULTS",
    "TESTS",
    "FAMILIES",
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
TESTS = ("auto", "moderated", "welch", "paired", "permutation")
FAMILIES = ("all", "strength")  # what one Benjamini-Hochberg adjustment spans


def check_columns(frame: pd.DataFrame, needed: Sequence[str], name: str) -> None:
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise AnalysisError(MISSING_COLUMNS.format(frame=name, missing=missing, needed=list(needed)))


def check_choice(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise AnalysisError(INVALID_OPTION.format(name=name, value=value, allowed=", ".join(map(repr, allowed))))


def check_fraction(name: str, value: float) -> None:
    if not (isinstance(value, numbers.Real) and 0 < value < 1):
        raise AnalysisError(INVALID_OPTION.format(name=name, value=value, allowed="a number between 0 and 1"))


def split_rows(data: pd.DataFrame, split: str, *, frame: str = "results",
          needed: Sequence[str] = RESULTS_NEEDED) -> pd.DataFrame:
    """The rows of one split, after checking the columns the analysis reads."""
    check_columns(data, needed, frame)
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
                count=int(repeated.sum()), regularizer=first["regularizer"], strength=plain(first["strength"]),
                seed=plain(first["seed"]), class_id=plain(first["class_id"]), runs=runs))
    return rows


def check_index_labels(rows: pd.DataFrame, hint: str = "") -> None:
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
        index=plain(first["index"]), split=first["split"], first=plain(first["label"]),
        second=plain(conflict["label"]), regularizer=first["regularizer"], strength=plain(first["strength"]),
        seed=plain(first["seed"]), regularizer2=conflict["regularizer"], strength2=plain(conflict["strength"]),
        seed2=plain(conflict["seed"]), hint=hint))
