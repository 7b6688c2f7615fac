"""Compute: every number the report shows, from the analysis API. Reads a results folder (or takes frames), writes
nothing, formats nothing.

The choices made here are the report's statistical choices: the strength is chosen on validation accuracy (on
test, said plainly, when there is no validation split), every other number is on test, and the changes against
off are tested at every strength so the heatmap and the headline share one table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from classaudit import analysis, store
from classaudit.analysis.points import shared_seeds
from classaudit.analysis.schema import same_strength
from classaudit.errors import UsageError

# Rows of the "where did the predictions go" section: absorbers kept per harmed class.
TOP_ABSORBERS = 3
# The columns of the predictions frame the analysis reads.
PREDICTION_COLUMNS = ("regularizer", "strength", "is_off", "seed", "split", "index", "label", "pred")

BAD_INPUT = ("results must be a results folder (str or Path) or a tuple (results, predictions) from "
             "classaudit.analysis.from_predictions(..., return_predictions=True); got {kind}")
NOTHING_TO_REPORT = "{source}: no regularizer can be analysed ({reasons}); finish the off runs first"


@dataclass
class Inputs:
    """What the report is built from. Folder-only parts are None for frames built with from_predictions."""

    results: pd.DataFrame
    predictions: pd.DataFrame | None
    source: str  # the folder, or a short description of the frames
    study: str
    runs: pd.DataFrame | None = None  # store.load_runs
    status: store.Status | None = None
    dataset: Mapping[str, Any] | None = None  # the "dataset" section of a finished run's config


@dataclass
class Computed:
    """The analysis tables of one report. Every frame comes straight from classaudit.analysis (or store)."""

    inputs: Inputs
    alpha: float
    min_effect: float
    confidence: float
    select_on: str  # "val", or "test" when the results have no validation split
    skipped: dict[str, str]  # regularizer -> why it is not analysed
    regularizers: list[str]
    off: dict[str, float]
    order: dict[str, list[float]]  # each regularizer's strengths, from off to the strongest
    class_names: dict[int, str]
    by_class: pd.DataFrame
    overall: pd.DataFrame
    # overall on the seeds every strength of the axis has, the seeds choose_strength compares on: the summary's
    # numbers, so that its worst class and changes agree with the chosen strength's gain while a sweep runs.
    overall_shared: pd.DataFrame
    overall_val: pd.DataFrame | None
    chosen: pd.DataFrame
    difference: pd.DataFrame  # every non-off strength against off
    harmed_fraction: pd.DataFrame
    class_dependence: pd.DataFrame  # every non-off strength: is the change the same for every class?
    regret: pd.DataFrame
    # The strength each regularizer's "where did the predictions go" looks at: the chosen one, or, where
    # cross-validation keeps the regularizer off, the strength farthest from off (None: only off has results).
    focus: dict[str, float | None]
    confusion_shift: pd.DataFrame | None  # at each regularizer's focus strength
    absorbers: pd.DataFrame | None
    false_positive_shift: pd.DataFrame | None
    churn: pd.DataFrame | None
    churn_by_class: pd.DataFrame | None
    runs: pd.DataFrame  # one row per finished run
    missing: pd.DataFrame  # runs of the study with no intact result
    notes: list[str] = field(default_factory=list)

    def chosen_strength(self, regularizer: str) -> float:
        row = self.chosen[self.chosen["regularizer"] == regularizer]
        return float(row["chosen_strength"].iloc[0])

    def chosen_is_off(self, regularizer: str) -> bool:
        return bool(same_strength(self.chosen_strength(regularizer), self.off[regularizer]))


def load(results: Any) -> Inputs:
    """Read a results folder, or accept (results, predictions) frames."""
    if isinstance(results, (str, Path)):
        path = Path(results)
        snap = store.snapshot(path)  # every frame below from the same runs, even while a sweep adds some
        frame = store.load_results(snap)
        status = store.status(snap)
        dataset = None
        if status.done:
            config = store.run_config(path, sorted(status.done)[0])
            dataset = config.get("dataset")
        study = str(frame["study"].iloc[0]) if len(frame) else status.study
        return Inputs(results=frame, predictions=store.load_predictions(snap), source=str(path), study=study,
                      runs=store.load_runs(snap), status=status, dataset=dataset)
    if isinstance(results, tuple) and len(results) == 2 and isinstance(results[0], pd.DataFrame) and (
            results[1] is None or isinstance(results[1], pd.DataFrame)):
        frame, predictions = results
        study = str(frame["study"].iloc[0]) if "study" in frame.columns and len(frame) else "external"
        return Inputs(results=frame, predictions=predictions, source="predictions frame", study=study)
    if isinstance(results, pd.DataFrame):
        return Inputs(results=results, predictions=None, source="results frame",
                      study=str(results["study"].iloc[0]) if "study" in results.columns and len(results) else
                      "external")
    raise UsageError(BAD_INPUT.format(kind=type(results).__name__))


def compute(inputs: Inputs, *, alpha: float = 0.05, min_effect: float = 0.0, confidence: float = 0.95) -> Computed:
    """Run the analysis API over the inputs. Regularizers that cannot be analysed yet are set aside, not fatal."""
    results, predictions, skipped = _analysable(inputs)
    regularizers = sorted(results["regularizer"].unique())
    off = {r: float(results.loc[(results["regularizer"] == r) & results["is_off"], "strength"].iloc[0])
           for r in regularizers}
    order = {r: sorted(map(float, results.loc[results["regularizer"] == r, "strength"].unique()),
                       key=lambda s, o=off[r]: (abs(s - o), s)) for r in regularizers}
    names = results.drop_duplicates("class_id").set_index("class_id")["class_name"].sort_index()
    notes = []

    select_on = "val" if (results["split"] == "val").any() else "test"
    if select_on == "test":
        notes.append("The results have no validation split, so the strength is chosen on test accuracy, the "
                     "same images that then report it: the chosen strength's gain is optimistic.")
    chosen = analysis.choose_strength(results, select_on=select_on)
    at_chosen = dict(zip(chosen["regularizer"], chosen["chosen_strength"]))
    by_class = analysis.by_class(results, confidence=confidence)
    overall = analysis.overall(results)
    overall_shared = analysis.overall(shared_seeds(results))
    overall_val = analysis.overall(results, split="val") if select_on == "val" else None
    # "all" is every non-off strength; an axis with only its off point so far adds no rows.
    difference = analysis.difference(results, strength="all", alpha=alpha, min_effect=min_effect,
                                     confidence=confidence, predictions=predictions)
    harmed = analysis.harmed_fraction(difference)
    dependence = analysis.class_dependence(results, strength="all")
    regret = analysis.regret(results, strength=at_chosen, select_on=select_on)

    focus = {r: _focus(at_chosen[r], off[r], order[r]) for r in regularizers}
    shifts, absorbed, false_pos = [], [], []
    churn = churn_by_class = None
    if predictions is not None:
        # Each call below filters the whole frame by split and regularizer again; handing it the test rows of
        # one regularizer, with only the columns it reads, gives the same tables at a fraction of the cost
        # (100 runs x 100 classes: 1.2 million rows, seconds per call otherwise).
        test = predictions.loc[predictions["split"] == "test", list(PREDICTION_COLUMNS)]
        per_regularizer = dict(tuple(test.groupby("regularizer", sort=False)))
        for r in regularizers:
            s = focus[r]
            if s is None or r not in per_regularizer:
                continue
            axis = per_regularizer[r]
            shifts.append(analysis.confusion_shift(axis, regularizer=r, strength=s))
            absorbed.append(analysis.absorbers(axis, regularizer=r, strength=s, top=TOP_ABSORBERS))
            false_pos.append(analysis.false_positive_shift(axis, regularizer=r, strength=s))
        churn = analysis.churn(test)
        churn_by_class = analysis.churn(test, per_class=True)
    else:
        notes.append("No predictions were given, so where a harmed class's predictions went and the seed churn "
                     "are not shown, and a strength with one seed (against one at the off point) is not tested.")

    runs, missing = _runs(inputs, inputs.results)
    return Computed(
        inputs=inputs, alpha=alpha, min_effect=min_effect, confidence=confidence, select_on=select_on,
        skipped=skipped, regularizers=regularizers, off=off, order=order,
        class_names={int(k): str(v) for k, v in names.items()},
        by_class=by_class, overall=overall, overall_shared=overall_shared, overall_val=overall_val, chosen=chosen,
        difference=difference, harmed_fraction=harmed, class_dependence=dependence, regret=regret, focus=focus,
        confusion_shift=_concat(shifts, predictions), absorbers=_concat(absorbed, predictions),
        false_positive_shift=_concat(false_pos, predictions), churn=churn, churn_by_class=churn_by_class,
        runs=runs, missing=missing, notes=notes,
    )


def _focus(chosen: float, off: float, order: list[float]) -> float | None:
    """The chosen strength when it is not off; else the strength farthest from off (`order` runs from off
    outwards), so a sweep whose regularizer validation keeps off still shows where its harm goes. Fixed in advance
    rather than the strength with the most harmed classes: picking that on the test results would favour the
    strength with the most false flags."""
    if not same_strength(chosen, off):
        return chosen
    return order[-1] if len(order) > 1 else None


def _concat(parts: list[pd.DataFrame], predictions: pd.DataFrame | None) -> pd.DataFrame | None:
    if predictions is None:
        return None
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else None


def _analysable(inputs: Inputs) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, str]]:
    """The rows of regularizers that have a finished off point with test results; the others, with the reason."""
    results, predictions = inputs.results, inputs.predictions
    skipped = {}
    has_val = (results["split"] == "val").any()
    for regularizer, axis in results.groupby("regularizer", sort=True):
        test = axis[axis["split"] == "test"]
        if not test["is_off"].astype(bool).any():
            present = ", ".join(f"{s:g}" for s in sorted(axis["strength"].unique()))
            skipped[str(regularizer)] = f"no finished off run yet (strengths with results: {present})"
        elif has_val and not (axis["split"] == "val").any():
            skipped[str(regularizer)] = ("no validation results, while the other regularizers' strengths are "
                                         "chosen on theirs")
    if len(skipped) == results["regularizer"].nunique():
        reasons = "; ".join(f"{r}: {why}" for r, why in skipped.items()) or "the results are empty"
        raise UsageError(NOTHING_TO_REPORT.format(source=inputs.source, reasons=reasons))
    if skipped:
        results = results[~results["regularizer"].isin(list(skipped))]
        if predictions is not None:
            predictions = predictions[~predictions["regularizer"].isin(list(skipped))]
    return results, predictions, skipped


def _runs(inputs: Inputs, results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs table and the missing runs. Frames from from_predictions have no timings or versions."""
    if inputs.runs is not None and inputs.status is not None:
        runs = inputs.runs.copy()
        st = inputs.status
        rows = []
        for rid in st.pending:
            if rid in st.corrupt:
                state, why = "damaged", st.corrupt[rid]
            elif rid in st.failed:
                state, why = "failed", str(st.failed[rid].get("error", "")).splitlines()[0:1]
                why = why[0] if why else ""
            else:
                state, why = "pending", ""
            rows.append({"run_id": rid, "label": st.labels.get(rid, ""), "state": state, "problem": why})
        missing = pd.DataFrame(rows, columns=["run_id", "label", "state", "problem"])
        return runs, missing
    test = results[results["split"] == "test"]
    keys = ["run_id", "seed"]
    per_run = test.groupby([*keys, "regularizer", "strength", "is_off"], sort=True)["accuracy"].mean().reset_index()
    rows = []
    for (rid, seed), run in per_run.groupby(keys, sort=True):
        if run["is_off"].all():
            label = f"off ({', '.join(run['regularizer'])}) seed={seed}"
        else:
            label = ", ".join(f"{r}={s:g}" for r, s in zip(run["regularizer"], run["strength"])) + f" seed={seed}"
        rows.append({"run_id": rid, "label": label, "seed": int(seed), "test_accuracy": run["accuracy"].iloc[0]})
    runs = pd.DataFrame(rows, columns=["run_id", "label", "seed", "test_accuracy"])
    val = results[results["split"] == "val"]
    if len(val):
        val_accuracy = val.groupby(["run_id", "regularizer"])["accuracy"].mean().groupby("run_id").first()
        runs["val_accuracy"] = runs["run_id"].map(val_accuracy)
    runs = runs.sort_values(["label", "run_id"], ignore_index=True)
    return runs, pd.DataFrame(columns=["run_id", "label", "state", "problem"])
