"""The downstream view of a study with a [transfer] table: the probe's splits as the analysis' own, and the
pre-training strength chosen on the upstream validation split (what a practitioner who tunes pre-training on its
own task does) or on the downstream one (what the downstream task would choose).

The probe's splits have their own classes (ids and names), so the view is a separate pair of frames in which
"transfer_val" is the "val" split and "transfer_test" the "test" split; every analysis then runs on it unchanged.
"""

from __future__ import annotations

import pandas as pd

from classaudit.analysis.checks import AnalysisError, check_choice, check_columns
from classaudit.analysis.points import choose_strength
from classaudit.analysis.schema import RESULTS_NEEDED, TRANSFER_SPLITS

# Where the pre-training strength of the downstream view is chosen: the upstream validation split, or the
# downstream one.
TRANSFER_SELECT = ("val", "transfer_val")
NO_TRANSFER = ("the {frame} frame has no downstream probe splits ({splits}); sweep a study with a [transfer] table, "
               "or give frames that have them")
VIEWS = {"val": "the pre-training strength chosen on the upstream validation split (as a practitioner tuning "
                "pre-training on its own task would)",
         "transfer_val": "the pre-training strength chosen on the downstream validation split (as the downstream "
                         "task would choose it)"}


def has_transfer(results: pd.DataFrame) -> bool:
    return bool(results["split"].isin(TRANSFER_SPLITS).any())


def transfer_frames(results: pd.DataFrame, predictions: pd.DataFrame | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The downstream task's (results, predictions): the probe's rows, transfer_val as "val" and transfer_test as
    "test".

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"split": ["val", "test", "transfer_val", "transfer_test"], "class_id": [0, 0, 0, 0]})
    >>> transfer_frames(rows.assign(**{c: 0 for c in ("regularizer", "strength", "is_off", "seed", "class_name",
    ...                                                "n", "correct", "accuracy")}))[0]["split"].tolist()
    ['val', 'test']
    """
    check_columns(results, RESULTS_NEEDED, "results")
    if not has_transfer(results):
        raise AnalysisError(NO_TRANSFER.format(frame="results", splits=", ".join(TRANSFER_SPLITS)))
    renamed = {"transfer_val": "val", "transfer_test": "test"}

    def view(frame: pd.DataFrame) -> pd.DataFrame:
        rows = frame[frame["split"].isin(TRANSFER_SPLITS)].copy()
        rows["split"] = rows["split"].map(renamed)
        return rows.reset_index(drop=True)

    return view(results), (None if predictions is None else view(predictions))


def choose_for_transfer(results: pd.DataFrame, *, select_on: str = "val") -> pd.DataFrame:
    """Each regularizer's pre-training strength, chosen on ``select_on`` ("val": the upstream validation split;
    "transfer_val": the downstream one) by mean class accuracy, with the downstream test accuracy there and at off.

    Returns
    -------
    DataFrame
        :func:`choose_strength`'s columns: ``select_accuracy`` on ``select_on``; ``accuracy``, ``accuracy_off``
        and ``gain`` on transfer_test.
    """
    check_choice("select_on", select_on, TRANSFER_SELECT)
    check_columns(results, RESULTS_NEEDED, "results")
    if not has_transfer(results):
        raise AnalysisError(NO_TRANSFER.format(frame="results", splits=", ".join(TRANSFER_SPLITS)))
    # choose_strength reads only macro accuracies per point, so the choosing split may have other classes than the
    # reported one.
    frame = pd.concat([results[results["split"] == select_on].assign(split="val"),
                       results[results["split"] == "transfer_test"].assign(split="test")], ignore_index=True)
    return choose_strength(frame, select_on="val", report_on="test")
