"""Structure: the report as plain frozen dataclasses (numbers, names, figures as SVG text), built from the computed
tables. Pure: it reads nothing from disk and writes nothing. How a number looks is the render stage's business
(the formatters, used as Jinja2 filters), so the same values feed the page and the tests. The module is longer
than 500 lines because it holds one dataclass per section of the page beside the code that fills it: one page,
read top to bottom in one file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from classaudit import shapes
from classaudit.analysis import plot
from classaudit.analysis.schema import same_strength
from classaudit.report import figures
from classaudit import formatters as fmt
from classaudit.report.compute import Computed

# How much the page shows; the CSV files always hold everything.
MAX_PANELS = 12  # small multiples per regularizer
MIN_PANELS = 8  # harmed classes first, then the largest drops, up to at least this many
MAX_HEADLINE_CLASSES = 5  # harmed classes named in a headline
MAX_DETAILS = 20  # harmed classes per regularizer in "where the predictions went"
MAX_REGRET_ROWS = 10
SHAPES_EXAMPLES = 8  # example images per class

TEST_WORDS = {
    "moderated": "a moderated paired t-test across seeds (Smyth 2004, limma's empirical Bayes: each class's variance "
                 "of the per-seed change is shrunk toward a prior shaped like the binomial variance of its test "
                 "images and fitted on every arm of the sweep)",
    "moderated_welch": "a moderated Welch-style t-test across seeds (each arm's variance shrunk toward the same "
                       "prior)",
    "paired": "a paired t-test across seeds (the same seeds at both strengths)",
    "welch": "Welch's t-test across seeds",
    "permutation": "a permutation test of Welch's t statistic",
    "mcnemar": "an exact McNemar test on the images where there is one seed a side (it sees test-set noise but not "
               "seed noise, so its q says the two runs differ and flags no class as harmed)",
    "fisher": "Fisher's exact test on the counts (where every seed gave the same count)",
    "sign_flip": "an exact sign-flip test of the per-seed changes (where every seed changed by the same amount)",
    "none": "no test where one side has a single seed and the other several, or a class is missing from a run",
}


# --------------------------------------------------------------------------------------------------------------
# The shapes of the report.

@dataclass(frozen=True)
class Column:
    header: str
    kind: str = "text"  # a formatter name, see formatters.BY_NAME

    @property
    def numeric(self) -> bool:
        return self.kind not in ("text",)


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    highlight: tuple[bool, ...] = ()  # rows shown as harmed


@dataclass(frozen=True)
class Figure:
    title: str
    caption: str
    svg: str


@dataclass(frozen=True)
class ClassChange:
    name: str
    mean_off: float
    mean: float
    delta: float
    ci_low: float
    ci_high: float
    q_value: float
    test_used: str


@dataclass(frozen=True)
class Headline:
    regularizer: str
    off_strength: float
    chosen_strength: float
    chosen_is_off: bool
    select_on: str
    accuracy_off: float
    accuracy: float
    gain: float
    n_classes: int
    n_helped: int
    harmed: tuple[ClassChange, ...]  # every harmed class, most harmed first (the page names MAX_HEADLINE_CLASSES)
    n_harmed: int
    worst_name_off: str
    worst_off: float
    worst_name: str
    worst: float
    untested: str  # why the chosen strength could not be tested, or ""
    seeds: str  # the seeds the chosen strength's test had, as prose ("3 seeds a side"), or ""
    largest_drop: ClassChange | None  # over every strength of the sweep, with the strength it happens at
    largest_drop_strength: float


@dataclass(frozen=True)
class StrengthLine:
    """One strength of a sweep against its off point: a row of summary.md's second table."""
    regularizer: str
    strength: float
    chosen: bool
    accuracy: float  # mean class accuracy on test, seed means
    change: float  # against off
    n_classes: int
    harmed: tuple[ClassChange, ...]  # most harmed first
    untested: str  # why this strength could not be tested, or ""
    friedman_p: float  # class_dependence: p of "every class changes alike" (NaN: too few seeds)


@dataclass(frozen=True)
class Absorber:
    name: str
    rate_off: float
    rate: float
    delta: float
    share_of_loss: float


@dataclass(frozen=True)
class HarmedDetail:
    regularizer: str
    strength: float
    chosen: bool  # the chosen strength (else the strength that harms most, validation keeping it off)
    change: ClassChange
    absorbers: tuple[Absorber, ...]
    churn_off: float
    churn: float
    std_off: float
    std: float
    sampling_floor: float


@dataclass(frozen=True)
class ShapesClass:
    name: str
    cue: str
    expected: str  # regularizers the cue is expected to be sensitive to
    harmed_by: str  # what this sweep found at the chosen strengths
    image: str  # PNG data URI


@dataclass(frozen=True)
class Statistics:
    tests: tuple[str, ...]
    confidence: float
    alpha: float
    min_effect: float
    select_on: str
    n_classes: int


@dataclass(frozen=True)
class RemedyLine:
    """A class-conditional remedy against the uniform strength it remedies."""

    base: str  # the uniform axis
    other: str  # the remedy's axis
    strength: float
    accuracy_base: float  # mean class accuracy on test, seed means
    accuracy: float
    recovered: tuple[ClassChange, ...]  # classes the remedy helps against the uniform strength
    paying: tuple[ClassChange, ...]  # classes it harms instead


@dataclass(frozen=True)
class Report:
    title: str
    study: str
    source: str
    headlines: tuple[Headline, ...]
    strengths: tuple[StrengthLine, ...]  # every strength but off, regularizer by regularizer, off outwards
    skipped: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    accuracy_figures: tuple[Figure, ...]
    heatmap: Figure | None
    harmed_table: Table
    change_figures: tuple[Figure, ...]
    regret_table: Table
    tradeoff: Figure
    tradeoff_table: Table
    details: tuple[HarmedDetail, ...]
    details_omitted: int
    has_predictions: bool
    shapes: tuple[ShapesClass, ...]
    shapes_size: int
    runs_table: Table
    runs_shared: tuple[tuple[str, str], ...]  # (setting, value) the same for every run
    missing_table: Table
    run_details: bool  # timings and versions are known (a results folder)
    statistics: Statistics
    max_headline_classes: int
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # the CSV files, by file name
    remedies: tuple[RemedyLine, ...] = ()


# --------------------------------------------------------------------------------------------------------------
# Building it.

def build(computed: Computed, *, title: str | None = None) -> Report:
    c = computed
    harmed_at_chosen = _at_chosen(c)
    headlines = tuple(_headline(c, r, harmed_at_chosen) for r in c.regularizers)
    details, omitted = _details(c, _at_focus(c))
    runs_table, runs_shared = _runs_table(c)
    return Report(
        title=title or f"classaudit report: {c.inputs.study}",
        study=c.inputs.study,
        source=c.inputs.source,
        headlines=headlines,
        strengths=_strength_lines(c),
        skipped=tuple(sorted(c.skipped.items())),
        notes=tuple(c.notes),
        accuracy_figures=tuple(_accuracy_figure(c, r, harmed_at_chosen, i) for i, r in enumerate(c.regularizers)),
        heatmap=_heatmap(c),
        harmed_table=_harmed_table(c),
        change_figures=tuple(_change_figure(c, r, harmed_at_chosen, i) for i, r in enumerate(c.regularizers)
                             if not c.chosen_is_off(r)),
        regret_table=_regret_table(c),
        tradeoff=Figure(
            title="Mean against worst-class accuracy",
            caption="Each point is one strength, its mean class accuracy against the accuracy of its worst class "
                    "(both on test, seed means). A strength that moves right and down buys average accuracy with "
                    "the worst class.",
            svg=figures.svg(plot.trade_off(c.overall, c.order,
                                           dict(zip(c.chosen["regularizer"], c.chosen["chosen_strength"]))),
                            "fig-tradeoff")),
        tradeoff_table=_tradeoff_table(c),
        details=details,
        details_omitted=omitted,
        has_predictions=c.inputs.predictions is not None,
        shapes=_shapes(c, _at_focus(c)),
        shapes_size=_shapes_size(c),
        runs_table=runs_table,
        runs_shared=runs_shared,
        missing_table=Table(columns=(Column("run"), Column("state"), Column("problem"), Column("run id")),
                            rows=tuple(c.missing[["label", "state", "problem", "run_id"]].itertuples(
                                index=False, name=None))),
        run_details=c.inputs.runs is not None,
        statistics=_statistics(c),
        max_headline_classes=MAX_HEADLINE_CLASSES,
        tables=_tables(c),
        remedies=_remedy_lines(c),
    )


def _remedy_lines(c: Computed) -> tuple[RemedyLine, ...]:
    if c.remedies is None:
        return ()
    lines = []
    for (base, other, s), rows in c.remedies.groupby(["base", "other", "at_strength"], sort=True):
        rows = rows.sort_values(["delta", "class_id"])
        lines.append(RemedyLine(
            base=str(base), other=str(other), strength=float(s), accuracy_base=float(rows["mean_off"].mean()),
            accuracy=float(rows["mean"].mean()),
            recovered=tuple(_change(r) for r in rows[rows["helped"].astype(bool)].iloc[::-1].itertuples(index=False)),
            paying=tuple(_change(r) for r in rows[rows["harmed"].astype(bool)].itertuples(index=False))))
    return tuple(lines)


def _at_chosen(c: Computed) -> pd.DataFrame:
    """The difference rows at each regularizer's chosen strength (none for an axis that keeps off)."""
    if not len(c.difference):
        return c.difference
    chosen = dict(zip(c.chosen["regularizer"], c.chosen["chosen_strength"]))
    target = c.difference["regularizer"].map(chosen).astype(float)
    return c.difference[same_strength(c.difference["strength"], target)]


def _at_focus(c: Computed) -> pd.DataFrame:
    """The difference rows at each regularizer's focus strength (see Computed.focus)."""
    focus = {r: s for r, s in c.focus.items() if s is not None}
    if not len(c.difference) or not focus:
        return c.difference.iloc[0:0]
    target = c.difference["regularizer"].map(focus).astype(float)
    return c.difference[same_strength(c.difference["strength"], target)]


def _change(row) -> ClassChange:
    return ClassChange(name=str(row.class_name), mean_off=row.mean_off, mean=row.mean, delta=row.delta,
                       ci_low=row.ci_low, ci_high=row.ci_high, q_value=row.q_value, test_used=str(row.test_used))


def _headline(c: Computed, r: str, at_chosen: pd.DataFrame) -> Headline:
    chosen = c.chosen[c.chosen["regularizer"] == r].iloc[0]
    rows = at_chosen[at_chosen["regularizer"] == r].sort_values(["delta", "class_id"])
    harmed = rows[rows["harmed"].astype(bool)]
    overall = c.overall_shared[c.overall_shared["regularizer"] == r]
    off_row = overall[overall["is_off"].astype(bool)].iloc[0]
    chosen_row = overall[same_strength(overall["strength"], chosen["chosen_strength"])].iloc[0]
    axis = c.difference[c.difference["regularizer"] == r]
    drop = next(axis.sort_values(["delta", "class_id"]).itertuples(index=False), None) if len(axis) else None
    seeds = ""
    if len(rows):
        n_on, n_off = int(rows["n_seeds"].max()), int(rows["n_seeds_off"].max())
        seeds = f"{fmt.plural(n_on, 'seed', 'seeds')} a side" if n_on == n_off else \
            f"{fmt.plural(n_on, 'seed', 'seeds')} against {n_off} at off"
    return Headline(
        regularizer=r, off_strength=float(chosen["off_strength"]), chosen_strength=float(chosen["chosen_strength"]),
        chosen_is_off=c.chosen_is_off(r), select_on=c.select_on, accuracy_off=float(chosen["accuracy_off"]),
        accuracy=float(chosen["accuracy"]), gain=float(chosen["gain"]),
        n_classes=int(overall["n_classes"].max()), n_helped=int(rows["helped"].astype(bool).sum()),
        harmed=tuple(_change(row) for row in harmed.itertuples(index=False)),
        n_harmed=len(harmed),
        worst_name_off=c.class_names.get(int(off_row["worst_class_id"]), str(off_row["worst_class_id"])),
        worst_off=float(off_row["group_min"]),
        worst_name=c.class_names.get(int(chosen_row["worst_class_id"]), str(chosen_row["worst_class_id"])),
        worst=float(chosen_row["group_min"]), untested=_untested(rows, c.alpha), seeds=seeds,
        largest_drop=_change(drop) if drop is not None else None,
        largest_drop_strength=float(drop.strength) if drop is not None else float("nan"))


def _untested(rows: pd.DataFrame, alpha: float) -> str:
    """Why one strength's difference rows flag nothing whatever the data say, or "" when they were tested."""
    if len(rows) and rows["p_value"].isna().all():
        return (f"{int(rows['n_seeds'].iloc[0])} seed(s) at this strength against "
                f"{int(rows['n_seeds_off'].iloc[0])} at off, too few for a test")
    if len(rows) and (rows["test_used"] == "mcnemar").all():
        differ = int((rows["q_value"] < alpha).sum())
        return (f"one seed a side cannot tell the strength's effect from the seed's (the per-image McNemar "
                f"test finds the two runs differ on {differ} of {len(rows)} classes at q < {alpha:g})")
    return ""


def _strength_lines(c: Computed) -> tuple[StrengthLine, ...]:
    chosen = dict(zip(c.chosen["regularizer"], c.chosen["chosen_strength"]))
    friedman = _friedman_p(c)
    lines = []
    for r in c.regularizers:
        overall = c.overall_shared[c.overall_shared["regularizer"] == r]
        off_mean = float(overall.loc[overall["is_off"].astype(bool), "mean"].iloc[0])
        axis = c.difference[c.difference["regularizer"] == r]
        for s in c.order[r][1:]:
            row = overall[same_strength(overall["strength"], s)]
            if not len(row):
                continue
            rows = axis[same_strength(axis["strength"], s)].sort_values(["delta", "class_id"])
            lines.append(StrengthLine(
                regularizer=r, strength=float(s), chosen=bool(same_strength(s, chosen[r])),
                accuracy=float(row["mean"].iloc[0]), change=float(row["mean"].iloc[0]) - off_mean,
                n_classes=int(row["n_classes"].iloc[0]),
                harmed=tuple(_change(x) for x in rows[rows["harmed"].astype(bool)].itertuples(index=False)),
                untested=_untested(rows, c.alpha),
                friedman_p=friedman.get((r, float(s)), float("nan"))))
    return tuple(lines)


def _friedman_p(c: Computed) -> dict[tuple[str, float], float]:
    """class_dependence's p by (regularizer, strength); the strengths are the results' own floats."""
    return {(row.regularizer, float(row.strength)): float(row.friedman_p)
            for row in c.class_dependence.itertuples(index=False)}


def _panel_classes(c: Computed, r: str, at_chosen: pd.DataFrame) -> tuple[list[int], set[int]]:
    """Which classes get a panel: all when they fit, else the harmed ones and the largest drops."""
    rows = at_chosen[at_chosen["regularizer"] == r]
    harmed = set(rows.loc[rows["harmed"].astype(bool), "class_id"].astype(int))
    ids = sorted(c.class_names)
    if len(ids) <= MAX_PANELS:
        return ids, harmed
    if len(rows):
        drop = rows.set_index("class_id")["delta"]
    else:  # the chosen strength is off: rank by the largest drop at any strength
        axis = c.difference[c.difference["regularizer"] == r]
        drop = axis.groupby("class_id")["delta"].min() if len(axis) else pd.Series(0.0, index=ids)
    ranked = sorted(drop.index.astype(int), key=lambda k: (k not in harmed, float(drop.get(k, 0.0)), k))
    count = min(MAX_PANELS, max(MIN_PANELS, len(harmed)))
    return ranked[:count], harmed


def _accuracy_figure(c: Computed, r: str, at_chosen: pd.DataFrame, i: int) -> Figure:
    classes, harmed = _panel_classes(c, r, at_chosen)
    shown = "every class" if len(classes) == len(c.class_names) else \
        f"{len(classes)} of {len(c.class_names)} classes: the harmed ones first, then the largest drops"
    return Figure(
        title=r,
        caption=f"Test accuracy of {shown}, mean over seeds with its {c.confidence:.0%} interval (band), against "
                "strength. Dashed: the class's accuracy with the regularizer off; dotted: the chosen strength; red: "
                "harmed at the chosen strength.",
        svg=figures.svg(plot.class_curves(c.by_class[c.by_class["regularizer"] == r], c.order[r],
                                          c.chosen_strength(r), classes, harmed), f"fig-acc{i}"))


def _heatmap(c: Computed) -> Figure | None:
    if not len(c.difference):
        return None
    return Figure(
        title="Change against off, every class and strength",
        caption="Change of each class's test accuracy (seed means) against the off point, in percentage points; "
                "boxed cells are harmed (q < alpha, q corrected across every class and strength of the page, and "
                "a drop larger than min_effect; every strength is compared with the same off runs, so neighbouring "
                "strengths' changes are not independent evidence).",
        svg=figures.svg(plot.change_map(c.difference, {r: c.order[r] for r in c.regularizers}, c.class_names),
                        "fig-heat"))


def _harmed_table(c: Computed) -> Table:
    h = c.harmed_fraction.sort_values(["regularizer", "strength"])
    chosen = dict(zip(c.chosen["regularizer"], c.chosen["chosen_strength"]))
    friedman = _friedman_p(c)
    rows, marks = [], []
    for row in h.itertuples(index=False):
        is_chosen = bool(same_strength(row.strength, chosen.get(row.regularizer, np.nan)))
        rows.append((row.regularizer, row.strength, "chosen" if is_chosen else "", row.n_harmed, row.n_helped,
                     row.worst_class_name, row.worst_class_delta,
                     friedman.get((row.regularizer, float(row.strength)), float("nan"))))
        marks.append(is_chosen and row.n_harmed > 0)
    return Table(columns=(Column("regularizer"), Column("strength", "strength"), Column(""),
                          Column("harmed", "count"), Column("helped", "count"), Column("largest drop"),
                          Column("its change", "points"), Column("same change for every class? Friedman p", "pvalue")),
                 rows=tuple(rows), highlight=tuple(marks))


def _change_figure(c: Computed, r: str, at_chosen: pd.DataFrame, i: int) -> Figure:
    rows = at_chosen[at_chosen["regularizer"] == r]
    s = c.chosen_strength(r)
    return Figure(
        title=f"{r} at {fmt.strength(s)}",
        caption=f"Change of each class's test accuracy at the chosen strength {fmt.strength(s)} against off "
                f"{fmt.strength(c.off[r])}, most harmed first; whiskers: {c.confidence:.0%} interval.",
        svg=figures.svg(plot.sorted_change(rows, f"{r}: chosen strength {fmt.strength(s)} against off "
                                                 f"{fmt.strength(c.off[r])}"), f"fig-bars{i}"))


def _regret_table(c: Computed) -> Table:
    rows = []
    for r in c.regularizers:
        g = c.regret[(c.regret["regularizer"] == r) & (c.regret["regret"] > 1e-9)]
        g = g.sort_values(["regret", "class_id"], ascending=[False, True]).head(MAX_REGRET_ROWS)
        rows += [(r, row.class_name, row.best_strength, row.best_accuracy, row.chosen_strength, row.chosen_accuracy,
                  -row.regret) for row in g.itertuples(index=False)]
    return Table(columns=(Column("regularizer"), Column("class"), Column("its best strength", "strength"),
                          Column("accuracy there", "pct"), Column("chosen strength", "strength"),
                          Column("accuracy at chosen", "pct"), Column("given up", "points")), rows=tuple(rows))


def _tradeoff_table(c: Computed) -> Table:
    rows = []
    for r in c.regularizers:
        g = c.overall[c.overall["regularizer"] == r]
        for s in c.order[r]:
            row = g[same_strength(g["strength"], s)].iloc[0]
            rows.append((r, s, "off" if row["is_off"] else "", int(row["n_seeds"]), row["mean"], row["std"],
                         c.class_names.get(int(row["worst_class_id"]), ""), row["group_min"], row["worst_k_mean"],
                         row["spread"]))
    return Table(columns=(Column("regularizer"), Column("strength", "strength"), Column(""), Column("seeds", "count"),
                          Column("mean accuracy", "pct"), Column("seed std", "pts"), Column("worst class"),
                          Column("its accuracy", "pct"), Column("worst 3 mean", "pct"),
                          Column("best \u2212 worst", "pts")), rows=tuple(rows))


def _details(c: Computed, at_focus: pd.DataFrame) -> tuple[tuple[HarmedDetail, ...], int]:
    if c.inputs.predictions is None:
        return (), 0
    out, omitted = [], 0
    spread = c.by_class.set_index(["regularizer", "strength", "class_id"])
    churn = c.churn_by_class.set_index(["regularizer", "strength", "class_id"])["churn"] \
        if c.churn_by_class is not None else pd.Series(dtype=float)
    for r in c.regularizers:
        rows = at_focus[(at_focus["regularizer"] == r) & at_focus["harmed"].astype(bool)]
        rows = rows.sort_values(["delta", "class_id"])
        omitted += max(0, len(rows) - MAX_DETAILS)
        s, off = c.focus[r], c.off[r]
        absorbers = c.absorbers[c.absorbers["regularizer"] == r] if c.absorbers is not None else None
        for row in rows.head(MAX_DETAILS).itertuples(index=False):
            k = int(row.class_id)
            mine = absorbers[absorbers["class_id"] == k] if absorbers is not None else pd.DataFrame()
            out.append(HarmedDetail(
                regularizer=r, strength=s, chosen=not c.chosen_is_off(r), change=_change(row),
                absorbers=tuple(Absorber(name=c.class_names.get(int(a.predicted_id), str(a.predicted_id)),
                                         rate_off=a.rate_off, rate=a.rate, delta=a.delta,
                                         share_of_loss=a.share_of_loss) for a in mine.itertuples(index=False)),
                churn_off=_lookup(churn, (r, off, k)), churn=_lookup(churn, (r, s, k)),
                std_off=_lookup(spread["std"], (r, off, k)), std=_lookup(spread["std"], (r, s, k)),
                sampling_floor=_lookup(spread["sampling_floor"], (r, off, k))))
    return tuple(out), omitted


def _lookup(series: pd.Series, key: tuple) -> float:
    """series[(regularizer, strength, class)], matching the strength within float tolerance; NaN when absent."""
    if not len(series):
        return float("nan")
    r, s, k = key
    try:
        part = series.xs(r, level=0)
    except KeyError:
        return float("nan")
    strengths = part.index.get_level_values(0)
    hit = part[same_strength(strengths.astype(float), s) & (part.index.get_level_values(1) == k)]
    return float(hit.iloc[0]) if len(hit) else float("nan")


def _shapes_size(c: Computed) -> int:
    options = (c.inputs.dataset or {}).get("options") or {}
    return int(options.get("size", 32))


def _shapes(c: Computed, at_focus: pd.DataFrame) -> tuple[ShapesClass, ...]:
    dataset = c.inputs.dataset
    if not dataset or dataset.get("name") != "shapes":
        return ()
    options = dataset.get("options") or {}
    images, labels = shapes.generate(SHAPES_EXAMPLES, int(options.get("size", 32)),
                                     int(options.get("seed", 0)) + shapes.TEST_SEED_OFFSET)
    harmed = at_focus[at_focus["harmed"].astype(bool)]
    out = []
    for label, name in enumerate(shapes.CLASSES):
        mine = harmed[harmed["class_name"] == name]
        found = ", ".join(f"{row.regularizer} {fmt.strength(row.strength)} ({fmt.points(row.delta)})"
                          for row in mine.itertuples(index=False))
        cue = shapes.CUES[name]
        out.append(ShapesClass(name=name, cue=cue, expected=", ".join(shapes.SENSITIVE_TO[cue]) or "none",
                               harmed_by=found or "none",
                               image=figures.image_strip(images[labels == label])))
    return tuple(out)


def _runs_table(c: Computed) -> tuple[Table, tuple[tuple[str, str], ...]]:
    """The runs table, and the settings every run shares (device, versions), said once instead of per row."""
    runs = c.runs.sort_values(["label", "run_id"]) if len(c.runs) else c.runs
    spec = [("label", "run", "text"), ("seed", "seed", "count"), ("test_accuracy", "test accuracy", "pct"),
            ("val_accuracy", "val accuracy", "pct"), ("train_seconds", "time", "seconds"),
            ("epochs", "epochs", "count"), ("device", "device", "text"), ("torch", "torch", "text"),
            ("torchvision", "torchvision", "text"), ("classaudit", "classaudit", "text"), ("run_id", "run id", "text")]
    spec = [s for s in spec if s[0] in runs.columns]
    shared = []
    for key in ("device", "torch", "torchvision", "classaudit"):
        if key in runs.columns and len(runs) and runs[key].astype(str).nunique() == 1:
            shared.append((key, str(runs[key].iloc[0])))
            spec = [s for s in spec if s[0] != key]
    return (Table(columns=tuple(Column(header, kind) for _, header, kind in spec),
                  rows=tuple(runs[[key for key, _, _ in spec]].itertuples(index=False, name=None))), tuple(shared))


def _statistics(c: Computed) -> Statistics:
    used = sorted(set(c.difference["test_used"].astype(str)) - {"identical"}) if len(c.difference) else []
    order = list(TEST_WORDS)
    return Statistics(tests=tuple(TEST_WORDS[t] for t in sorted(used, key=order.index) if t in TEST_WORDS),
                      confidence=c.confidence, alpha=c.alpha, min_effect=c.min_effect, select_on=c.select_on,
                      n_classes=len(c.class_names))


def _tables(c: Computed) -> dict[str, pd.DataFrame]:
    """Every table of the report as the Audit returned it."""
    tables = {
        "chosen.csv": c.chosen,
        "overall.csv": c.overall,
        "by_class.csv": c.by_class,
        "difference.csv": c.difference,
        "harmed_fraction.csv": c.harmed_fraction,
        "class_dependence.csv": c.class_dependence,
        "regret.csv": c.regret,
    }
    if c.overall_val is not None:
        tables["overall_val.csv"] = c.overall_val
    for name in ("confusion_shift", "absorbers", "false_positive_shift", "churn", "churn_by_class"):
        if getattr(c, name) is not None:
            tables[f"{name}.csv"] = getattr(c, name)
    if c.remedies is not None:
        tables["remedies.csv"] = c.remedies
    tables["runs.csv"] = c.runs
    if c.inputs.status is not None:
        tables["missing_runs.csv"] = c.missing
    return dict(sorted(tables.items()))
