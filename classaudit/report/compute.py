"""Compute: every number the report shows, from the analysis API. Reads a results folder (or takes frames), writes
nothing, formats nothing.

The choices made here are the report's statistical choices: the strength is chosen on validation accuracy (on
test, said plainly, when there is no validation split), every other number is on test, and the changes against
off are tested at every strength so the heatmap and the headline share one table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from classaudit import store
from classaudit.analysis import Audit, change
from classaudit.analysis.schema import same_strength
from classaudit.errors import UsageError

# Rows of the "where did the predictions go" section: absorbers kept per harmed class.
TOP_ABSORBERS = 3

BAD_INPUT = ("results must be a results folder (str or Path), a classaudit.Audit, or a tuple (results, predictions) from "
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
    folder: Path | None = None  # the results folder, when the inputs are one
    view: str | None = None  # what the frames are when not the study's own task (the downstream view)
    chosen: pd.DataFrame | None = None  # the chosen strengths, when fixed outside the frames (Audit.transfer)


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
    # Each class-conditional remedy axis against its regularizer's uniform axis, at each strength both have.
    remedies: pd.DataFrame | None = None

    def chosen_strength(self, regularizer: str) -> float:
        row = self.chosen[self.chosen["regularizer"] == regularizer]
        return float(row["chosen_strength"].iloc[0])

    def chosen_is_off(self, regularizer: str) -> bool:
        return bool(same_strength(self.chosen_strength(regularizer), self.off[regularizer]))


def load(results: Any) -> Inputs:
    """Read a results folder, or accept an Audit or (results, predictions) frames."""
    if isinstance(results, Audit):
        if results.folder is not None:  # the folder's runs table and status too
            loaded = dataclasses.replace(load(results.folder), source=results.source)
        else:
            loaded = load((results.results, results.predictions))
        if results.view is None:
            return loaded
        # A view of the folder (the downstream task): its own frames and classes, its strengths as it chose them.
        return dataclasses.replace(loaded, results=results.results, predictions=results.predictions,
                                   study=f"{loaded.study}, downstream task", dataset=None, view=results.view,
                                   chosen=results.fixed_chosen)
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
                      runs=store.load_runs(snap), status=status, dataset=dataset, folder=path)
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
    """Build the report's Audit over the inputs and take its tables. Regularizers that cannot be analysed yet are
    set aside, not fatal."""
    results, predictions, skipped = _analysable(inputs)
    notes = []
    select_on = "val" if (results["split"] == "val").any() else "test"
    if select_on == "test":
        notes.append("The results have no validation split, so the strength is chosen on test accuracy, the "
                     "same images that then report it: the chosen strength's gain is optimistic.")
    if inputs.view is not None:
        notes.append(f"This page shows the downstream task: per-class accuracy of a linear probe on each run's frozen "
                     f"features (splits transfer_val and transfer_test), with {inputs.view}. Below, \"validation\" "
                     "is the downstream validation split (transfer_val) except where the strength is chosen, and "
                     "each class's own best strength is picked on it.")
    audit = Audit(results, predictions, alpha=alpha, min_effect=min_effect, select_on=select_on,
                  confidence=confidence, source=inputs.source, chosen=inputs.chosen, view=inputs.view)
    chosen = audit.chosen()
    at_chosen = dict(zip(chosen["regularizer"], chosen["chosen_strength"]))
    focus = {r: _focus(at_chosen[r], audit.off[r], audit.strengths[r]) for r in audit.regularizers}
    # "all" is every non-off strength; an axis with only its off point so far adds no rows.
    difference = audit.difference("all")
    tables: dict[str, pd.DataFrame | None] = dict.fromkeys(
        ("confusion_shift", "absorbers", "false_positive_shift", "churn", "churn_by_class"))
    if predictions is not None:
        looked_at = {r: s for r, s in focus.items() if s is not None}
        tables["confusion_shift"] = audit.confusion_shift(looked_at)
        tables["absorbers"] = audit.absorbers(looked_at, top=TOP_ABSORBERS)
        tables["false_positive_shift"] = audit.false_positive_shift(looked_at)
        tables["churn"], tables["churn_by_class"] = audit.churn(), audit.churn(per_class=True)
    else:
        notes.append("No predictions were given, so where a harmed class's predictions went and the seed churn "
                     "are not shown, and a strength with one seed (against one at the off point) is not tested.")

    runs, missing = _runs(inputs, inputs.results)
    return Computed(
        inputs=inputs, alpha=alpha, min_effect=min_effect, confidence=confidence, select_on=select_on,
        skipped=skipped, regularizers=audit.regularizers, off=audit.off, order=audit.strengths,
        class_names=audit.class_names, by_class=audit.by_class(), overall=audit.overall(),
        overall_shared=audit.overall(shared_seeds=True),
        overall_val=audit.overall("val") if select_on == "val" else None, chosen=chosen,
        difference=difference, harmed_fraction=change.harmed_fraction(difference),
        class_dependence=audit.class_dependence("all"), regret=audit.regret(), focus=focus,
        **{name: table if table is not None and len(table) else None for name, table in tables.items()},
        runs=runs, missing=missing, notes=notes, remedies=_remedies(inputs, audit),
    )


def _remedies(inputs: Inputs, audit: Audit) -> pd.DataFrame | None:
    """Each remedy axis (its runs give classes their own strength, or weight them) against the axis that sweeps
    the same regularizer uniformly, at every strength both have (:func:`classaudit.analysis.compare_axes`; each
    comparison is its own FDR family of classes). Only a results folder says which axes are remedies."""
    if inputs.folder is None or inputs.status is None:
        return None
    study = store.ResultsFolder(inputs.folder).read_study()
    regularizer: dict[str, str] = {}
    remedied: dict[str, bool] = {}
    for rid in sorted(set(study["runs"]) & set(inputs.status.done)):
        for point in study["runs"][rid]["points"]:
            if point["is_off"] or point["axis"] in remedied or "regularizer" not in point:
                continue
            config = store.run_config(inputs.folder, rid)
            entry = config.get("regularizers", {}).get(point["regularizer"], {})  # a run stored by other tools
            regularizer[point["axis"]] = point["regularizer"]  # may have neither table
            remedied[point["axis"]] = bool(entry.get("class_strength")
                                           or config.get("train", {}).get("class_weights"))
    analysed = set(audit.regularizers)
    tables = []
    for other in sorted(a for a, r in remedied.items() if r and a in analysed):
        bases = sorted(a for a, r in remedied.items() if not r and a in analysed and regularizer[a] == regularizer[other])
        for s in audit.strengths[other] if bases else []:
            if not same_strength(s, audit.off[other]) and s in audit.strengths[bases[0]]:
                tables.append(audit.compare_axes(bases[0], other, s))
    return pd.concat(tables, ignore_index=True) if tables else None


def _focus(chosen: float, off: float, order: list[float]) -> float | None:
    """The chosen strength when it is not off; else the strength farthest from off (`order` runs from off
    outwards), so a sweep whose regularizer validation keeps off still shows where its harm goes. Fixed in advance
    rather than the strength with the most harmed classes: picking that on the test results would favour the
    strength with the most false flags."""
    if not same_strength(chosen, off):
        return chosen
    return order[-1] if len(order) > 1 else None


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
