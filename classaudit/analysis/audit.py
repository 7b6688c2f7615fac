"""Audit: every analysis of a sweep behind one object, in the manner of fairlearn's MetricFrame.

The options that decide what counts as harmed (alpha, the minimum effect, the test, the split the strength is
chosen on) are set once; the frames are checked once, when the Audit is built; each table is computed once and
cached; every table carries class names. The module-level functions (``classaudit.difference`` and friends) stay
the pure core: each Audit method calls one of them with the Audit's options and returns a new DataFrame.

    >>> import pandas as pd
    >>> import classaudit as ca
    >>> run = pd.DataFrame({"regularizer": "crop", "strength": [1.0] * 40 + [0.5] * 40,
    ...                     "label": ["cat"] * 20 + ["dog"] * 20 + ["cat"] * 20 + ["dog"] * 20,
    ...                     "pred": ["cat"] * 20 + ["dog"] * 20 + ["dog"] * 10 + ["cat"] * 10 + ["dog"] * 20})
    >>> frame = pd.concat([run.assign(seed=0), run.assign(seed=1), run.assign(seed=2)])
    >>> audit = ca.Audit.from_predictions(frame, off={"crop": 1.0}, select_on="test")
    >>> audit.difference(strength=0.5)[["class_name", "delta", "harmed"]].values.tolist()
    [['cat', -0.5, True], ['dog', 0.0, False]]
    >>> audit.absorbers(strength=0.5)[["class_name", "predicted_name", "share_of_loss"]].values.tolist()
    [['cat', 'dog', 1.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from classaudit.analysis import accuracy, change, compare, confusion, ingest, points, transfer
from classaudit.analysis.checks import (
    INVALID_OPTION, NO_VALIDATION_SPLIT, TESTS, AnalysisError, check_choice, check_columns, check_fraction,
    split_rows,
)
from classaudit.analysis.schema import PREDICTIONS_NEEDED, RESULTS_NEEDED, SPLITS, same_strength

NO_PREDICTIONS = ("this Audit has no predictions frame, which {what} needs; build it with Audit.from_folder, "
                  "Audit.from_predictions, or Audit(results, predictions)")


class Audit:
    """A sweep's per-class audit: its results (and predictions), the options, and every analysis as a method.

    Parameters
    ----------
    results : DataFrame
        The results frame (``classaudit.load_results`` or ``from_predictions``).
    predictions : DataFrame, optional
        The predictions frame of the same runs; needed for where predictions went, churn and the one-seed
        McNemar test.
    alpha : float
        False discovery rate at which a class is flagged.
    min_effect : float
        Smallest change that counts as harmed or helped, in accuracy units (0.01 = 1 point).
    select_on : {"val", "test"}
        Split the strength is chosen on. "test" is optimistic (the same images choose and report) and must be
        asked for; results without a "val" split raise otherwise.
    test : {"auto", "welch", "paired", "permutation"}
        The per-class test, as in :func:`classaudit.difference`.
    confidence : float
        Level of every interval.
    source : str
        Where the frames came from, for messages and the report.
    chosen : DataFrame, optional
        Each regularizer's chosen strength, fixed from outside (a table like :func:`choose_strength`'s): the
        downstream view chosen on the upstream validation split (:meth:`transfer`). None: chosen on ``select_on``.
    view : str, optional
        What the frames are, for the report (e.g. the downstream view and where its strength is chosen).

    Every method accepts ``strength="chosen"`` (each regularizer's s*), a number, or ``{regularizer:
    strength}``; the tables' columns are those of the module-level function of the same name, with the class
    names added where the function gives only ids (``class_name``, ``predicted_name``).
    """

    def __init__(self, results: pd.DataFrame, predictions: pd.DataFrame | None = None, *, alpha: float = 0.05,
                 min_effect: float = 0.0, select_on: str = "val", test: str = "auto", confidence: float = 0.95,
                 source: str = "results frame", chosen: pd.DataFrame | None = None, view: str | None = None):
        check_fraction("alpha", alpha)
        check_fraction("confidence", confidence)
        check_choice("test", test, TESTS)
        check_choice("select_on", select_on, SPLITS)
        if not isinstance(min_effect, (int, float)) or isinstance(min_effect, bool) or not 0 <= min_effect < 1:
            raise AnalysisError(INVALID_OPTION.format(name="min_effect", value=min_effect,
                                                      allowed="a number from 0 to 1 (0.01 = 1 point)"))
        check_columns(results, RESULTS_NEEDED, "results")
        for split in sorted(set(results["split"]) & set(SPLITS)) or ["test"]:
            split_rows(results, split)  # the split is there, and no run is repeated: checked once
        if select_on == "val" and not (results["split"] == "val").any():
            raise AnalysisError(NO_VALIDATION_SPLIT)
        self.results = results
        self.predictions = predictions
        self.alpha, self.min_effect, self.select_on = alpha, min_effect, select_on
        self.test, self.confidence, self.source = test, confidence, source
        self.off: dict[str, float] = points.off_strengths(results)
        self.regularizers: list[str] = sorted(self.off)
        # The test split's classes: a downstream probe's splits (transfer_*) have classes of their own.
        named = results[results["split"] == "test"] if (results["split"] == "test").any() else results
        names = named.drop_duplicates("class_id").set_index("class_id")["class_name"].sort_index()
        self.class_names: dict[int, str] = {int(k): str(v) for k, v in names.items()}
        # Each regularizer's strengths from off outwards, the order every table and figure follows.
        self.strengths: dict[str, list[float]] = {
            r: sorted(map(float, results.loc[results["regularizer"] == r, "strength"].unique()),
                      key=lambda s, o=self.off[r]: (abs(s - o), s)) for r in self.regularizers}
        self.folder: Path | None = None  # the results folder, for an Audit built by from_folder
        self.fixed_chosen, self.view = chosen, view
        self._cache: dict[Hashable, pd.DataFrame] = {}
        self._test_predictions: dict[str, pd.DataFrame] | None = None

    # ----------------------------------------------------------------------------------------------------------
    # Construction

    @classmethod
    def from_folder(cls, path: str | Path, **options: Any) -> Audit:
        """The Audit of a results folder written by ``classaudit sweep`` (results and predictions)."""
        from classaudit import store  # the store reads Parquet; the analysis itself needs only frames

        snap = store.snapshot(Path(path))  # both frames from the same runs, even while a sweep adds some
        options.setdefault("source", str(path))
        audit = cls(store.load_results(snap), store.load_predictions(snap), **options)
        audit.folder = Path(path)
        return audit

    @classmethod
    def from_predictions(cls, frame: pd.DataFrame, *, regularizer: str = "regularizer", strength: str = "strength",
                         seed: str = "seed", label: str = "label", pred: str = "pred", split: str = "split",
                         index: str | None = None, off: Mapping[str, float] | None = None,
                         class_names=None, study: str = "external", p_true: str | None = None,
                         **options: Any) -> Audit:
        """The Audit of per-image predictions made by any tool; the column options are those of
        :func:`classaudit.from_predictions`, the others the Audit's."""
        results, predictions = ingest.from_predictions(
            frame, regularizer=regularizer, strength=strength, seed=seed, label=label, pred=pred, split=split,
            index=index, off=off, class_names=class_names, study=study, p_true=p_true, return_predictions=True)
        options.setdefault("source", "predictions frame")
        return cls(results, predictions, **options)

    def transfer(self, select_on: str = "val") -> Audit:
        """The downstream task's Audit (a study with a [transfer] table): per-class accuracy of each run's linear
        probe, with the pre-training strength chosen on ``select_on``: "val", the upstream validation split (what a
        practitioner tuning pre-training on its own task does), or "transfer_val", the downstream one. Its
        methods are this Audit's, on the downstream classes (``audit.transfer().difference()``)."""
        check_choice("select_on", select_on, transfer.TRANSFER_SELECT)
        results, predictions = transfer.transfer_frames(self.results, self.predictions)
        chosen = transfer.choose_for_transfer(self.results, select_on=select_on)
        audit = Audit(results, predictions, alpha=self.alpha, min_effect=self.min_effect, select_on="val",
                      test=self.test, confidence=self.confidence, source=self.source,
                      chosen=chosen if select_on == "val" else None, view=transfer.VIEWS[select_on])
        audit.folder = self.folder
        return audit

    def __repr__(self) -> str:
        seeds = self.results["seed"].nunique()
        return (f"Audit({self.source!r}: {len(self.regularizers)} regularizer(s) {self.regularizers}, "
                f"{len(self.class_names)} classes, {seeds} seed(s); alpha={self.alpha}, min_effect={self.min_effect}, "
                f"select_on={self.select_on!r}, test={self.test!r})")

    # ----------------------------------------------------------------------------------------------------------
    # Tables

    def chosen(self) -> pd.DataFrame:
        """The strength validation picks per regularizer, with its gain on test (:func:`choose_strength`)."""
        if self.fixed_chosen is not None:
            return self.fixed_chosen.copy()
        return self._table(("chosen",), lambda: points.choose_strength(self.results, select_on=self.select_on))

    def chosen_strength(self, regularizer: str) -> float:
        """s* of one regularizer."""
        chosen = self.chosen().set_index("regularizer")["chosen_strength"]
        if regularizer not in chosen:
            raise AnalysisError(INVALID_OPTION.format(name="regularizer", value=regularizer,
                                                      allowed=", ".join(map(repr, self.regularizers))))
        return float(chosen[regularizer])

    def by_class(self, split: str = "test") -> pd.DataFrame:
        """Per-class accuracy at every point: mean, spread and interval over seeds (:func:`by_class`)."""
        return self._table(("by_class", split),
                           lambda: accuracy.by_class(self.results, split=split, confidence=self.confidence))

    def overall(self, split: str = "test", *, worst_k: int = 3, per_seed: bool = False,
                shared_seeds: bool = False) -> pd.DataFrame:
        """Accuracy across classes at every point (:func:`overall`). ``shared_seeds``: on the seeds every strength
        of the axis has, the seeds the strength is chosen on while a sweep runs."""
        results = points.shared_seeds(self.results) if shared_seeds else self.results
        return self._named(self._table(("overall", split, worst_k, per_seed, shared_seeds), lambda: accuracy.overall(
            results, split=split, worst_k=worst_k, per_seed=per_seed)))

    def difference(self, strength: object = "chosen", split: str = "test") -> pd.DataFrame:
        """Per-class change against off with its interval, p, q and flags (:func:`difference`)."""
        strength = self._strength(strength)
        return self._table(("difference", _key(strength), split), lambda: change.difference(
            self.results, strength=strength, split=split, select_on=self.select_on, alpha=self.alpha,
            min_effect=self.min_effect, test=self.test, confidence=self.confidence, predictions=self.predictions))

    def harmed_fraction(self, strength: object = "chosen", split: str = "test") -> pd.DataFrame:
        """How many classes each strength harms, and its worst class (:func:`harmed_fraction`)."""
        return change.harmed_fraction(self.difference(strength, split))

    def class_dependence(self, strength: object = "all", split: str = "test") -> pd.DataFrame:
        """Per strength, whether every class changes alike: Friedman's p (:func:`class_dependence`)."""
        strength = self._strength(strength)
        return self._table(("class_dependence", _key(strength), split), lambda: change.class_dependence(
            self.results, strength=strength, split=split, select_on=self.select_on))

    def regret(self, strength: object = "chosen", split: str = "test") -> pd.DataFrame:
        """Each class's own best strength against the chosen one (:func:`regret`)."""
        strength = self._strength(strength)
        return self._table(("regret", _key(strength), split), lambda: change.regret(
            self.results, strength=strength, split=split, select_on=self.select_on))

    def confusion_shift(self, strength: object = "chosen", *, regularizer: str | None = None,
                        class_id: int | None = None) -> pd.DataFrame:
        """Change of the confusion rows C[k -> l] against off (:func:`confusion_shift`), on test."""
        return self._per_point("confusion_shift", strength, regularizer, lambda axis, r, s: confusion.confusion_shift(
            axis, regularizer=r, strength=s, class_id=class_id), class_id)

    def absorbers(self, strength: object = "chosen", *, regularizer: str | None = None,
                  class_id: int | None = None, top: int = 3) -> pd.DataFrame:
        """The classes that absorb each class's lost predictions (:func:`absorbers`), on test."""
        return self._per_point(("absorbers", top), strength, regularizer, lambda axis, r, s: confusion.absorbers(
            axis, regularizer=r, strength=s, class_id=class_id, top=top), class_id)

    def false_positive_shift(self, strength: object = "chosen", *, regularizer: str | None = None) -> pd.DataFrame:
        """Change of each class's false positives per run (:func:`false_positive_shift`), on test."""
        return self._per_point("false_positive_shift", strength, regularizer,
                               lambda axis, r, s: confusion.false_positive_shift(axis, regularizer=r, strength=s))

    def compare_axes(self, base: str, other: str, strength: float, split: str = "test") -> pd.DataFrame:
        """Each class's change from axis `base` to axis `other` at one strength (:func:`compare_axes`): does a
        remedy recover the classes the uniform strength harms, and does another class pay instead?"""
        return self._named(self._table(("compare_axes", base, other, strength, split), lambda: compare.compare_axes(
            self.results, base, other, strength, split=split, alpha=self.alpha, min_effect=self.min_effect,
            test=self.test, confidence=self.confidence)))

    def remedies(self, study: str | Path, *, regularizer: str | None = None, strength: float | None = None):
        """The class-conditional remedies this audit calls for (:func:`classaudit.remedy.propose`), given the
        study file that was swept (it says which regularizer each axis sweeps); ``write_study`` writes them."""
        from classaudit.config import load_study
        from classaudit.remedy import propose

        axes = {a.name: a.regularizer for a in load_study(study).axes}
        return propose(self, axes, axis=regularizer, strength=strength)

    def churn(self, per_class: bool = False) -> pd.DataFrame:
        """Seed-to-seed disagreement at every point (:func:`churn`), on test: the noise floor."""
        rows = pd.concat(list(self._predictions_by_regularizer("churn").values()), ignore_index=True)
        return self._named(self._table(("churn", per_class), lambda: confusion.churn(rows, per_class=per_class)))

    # ----------------------------------------------------------------------------------------------------------
    # Figures and the report

    @property
    def plot(self) -> AuditPlots:
        """The report's figures as matplotlib Figures: ``audit.plot.class_curves("crop")`` and friends."""
        return AuditPlots(self)

    def write_report(self, out: str | Path, *, title: str | None = None) -> Path:
        """Write the HTML report and its CSV tables into the folder ``out`` with this Audit's alpha, minimum
        effect and confidence (the report chooses on "val" when the results have it); returns the folder."""
        from classaudit.report import write_report  # the report builds on the analysis, not the other way

        return write_report(self, out, alpha=self.alpha, min_effect=self.min_effect, title=title)

    # ----------------------------------------------------------------------------------------------------------
    # Inside

    def points(self, strength: object = "chosen") -> list[tuple[str, float]]:
        """The (regularizer, strength) pairs a ``strength=`` option names."""
        rows = split_rows(self.results, "test")
        table = points.comparisons(self.results, rows, self._strength(strength), "test", select_on=self.select_on,
                                   allow_all=True)
        return [(str(r), float(s)) for r, s in zip(table["regularizer"], table["strength"])]

    def _strength(self, strength: object) -> object:
        """A `strength=` option, with "chosen" spelt out as {regularizer: s*} when s* is fixed from outside."""
        if self.fixed_chosen is None or not (strength is None or (isinstance(strength, str) and strength == "chosen")):
            return strength
        return dict(zip(self.fixed_chosen["regularizer"], map(float, self.fixed_chosen["chosen_strength"])))

    def _table(self, key: Hashable, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key].copy()  # a caller's edits never reach the cache

    def _named(self, table: pd.DataFrame) -> pd.DataFrame:
        """The table with a name column appended for each id column that has none."""
        for id_column, name_column in (("class_id", "class_name"), ("predicted_id", "predicted_name"),
                                       ("worst_class_id", "worst_class_name")):
            if id_column in table and name_column not in table:
                table[name_column] = table[id_column].astype(int).map(self.class_names)
        return table

    def _predictions_by_regularizer(self, what: str) -> dict[str, pd.DataFrame]:
        """The test rows of the predictions frame, one frame per regularizer with the columns the analysis reads:
        split once, so each call filters a regularizer's rows, not the whole frame (1.2 million rows for 100
        runs x 100 classes)."""
        if self.predictions is None:
            raise AnalysisError(NO_PREDICTIONS.format(what=what))
        if self._test_predictions is None:
            test = split_rows(self.predictions, "test", frame="predictions", needed=PREDICTIONS_NEEDED)
            self._test_predictions = dict(tuple(test[list(PREDICTIONS_NEEDED)].groupby("regularizer", sort=True)))
        return self._test_predictions

    def _per_point(self, name: Hashable, strength: object, regularizer: str | None,
                   compute: Callable[[pd.DataFrame, str, float], pd.DataFrame],
                   class_id: int | None = None) -> pd.DataFrame:
        """One prediction table per (regularizer, strength) the options name, concatenated, with names."""
        by_regularizer = self._predictions_by_regularizer(name if isinstance(name, str) else name[0])
        wanted = self.points(strength)
        if regularizer is not None:
            check_choice("regularizer", regularizer, self.regularizers)
            wanted = [(r, s) for r, s in wanted if r == regularizer]
        parts = [self._table((name, r, s, class_id), lambda r=r, s=s: compute(by_regularizer[r], r, s))
                 for r, s in wanted if r in by_regularizer]
        if not parts:
            return pd.DataFrame()
        # Empty tables (a point where no class lost accuracy) add no rows, and would only blur the dtypes.
        found = [p for p in parts if len(p)] or parts[:1]
        return self._named(pd.concat(found, ignore_index=True))


class AuditPlots:
    """``audit.plot``: the report's figures for one Audit, each a matplotlib Figure (shown by Jupyter as is)."""

    def __init__(self, audit: Audit):
        self._audit = audit

    def class_curves(self, regularizer: str, classes: list[int] | None = None):
        """Per-class test accuracy against strength, one panel per class (all classes unless ``classes``); the
        classes harmed at the chosen strength in red."""
        from classaudit.analysis import plot

        a = self._audit
        check_choice("regularizer", regularizer, a.regularizers)
        by_class = a.by_class()
        chosen = a.chosen_strength(regularizer)
        harmed = a.difference({regularizer: chosen}) if not same_strength(chosen, a.off[regularizer]) else None
        flagged = set() if harmed is None else set(harmed.loc[harmed["harmed"], "class_id"].astype(int))
        return plot.class_curves(by_class[by_class["regularizer"] == regularizer], a.strengths[regularizer], chosen,
                                 sorted(a.class_names) if classes is None else list(classes), flagged)

    def change_map(self):
        """Class x strength heatmap of the change against off, harmed cells boxed."""
        from classaudit.analysis import plot

        a = self._audit
        return plot.change_map(a.difference("all"), a.strengths, a.class_names)

    def sorted_change(self, regularizer: str, strength: object = "chosen"):
        """The classes' changes at one strength (the chosen one by default), most harmed first, with intervals."""
        from classaudit.analysis import plot

        a = self._audit
        check_choice("regularizer", regularizer, a.regularizers)
        s = a.chosen_strength(regularizer) if isinstance(strength, str) and strength == "chosen" else strength
        rows = a.difference({regularizer: s})
        return plot.sorted_change(rows, f"{regularizer} at {s:g} against off {a.off[regularizer]:g}")

    def trade_off(self):
        """Mean against worst-class accuracy, one path per regularizer from off outwards; star: s*."""
        from classaudit.analysis import plot

        a = self._audit
        chosen = a.chosen()
        return plot.trade_off(a.overall(), a.strengths, dict(zip(chosen["regularizer"], chosen["chosen_strength"])))

    def where_predictions_went(self, regularizer: str, strength: object = "chosen", top: int = 3):
        """For each class that lost accuracy, the classes its lost predictions went to (bars of the confusion
        rate's growth)."""
        from classaudit.analysis import plot

        a = self._audit
        s = a.chosen_strength(regularizer) if isinstance(strength, str) and strength == "chosen" else strength
        return plot.absorbers(a.absorbers({regularizer: s}, regularizer=regularizer, top=top),
                              f"{regularizer} at {s:g}: where each class's lost predictions went")


def _key(strength: object) -> Hashable:
    """A cache key for a `strength=` option (mappings are not hashable)."""
    try:
        if isinstance(strength, Mapping):
            return tuple(sorted((str(k), float(v)) for k, v in strength.items()))
        return strength if isinstance(strength, (str, type(None))) else float(strength)
    except (TypeError, ValueError):  # not a valid option: the analysis function says so
        return repr(strength)
