"""Figures of an audit, drawn as matplotlib Figures: `Audit.plot` shows them in a notebook, and the report renders
the same functions to inline SVG.

Every figure is drawn on a bare `matplotlib.figure.Figure` with the Agg canvas (no pyplot, so no global figure
list and no backend switch) inside one `matplotlib.rc_context`, which restores the caller's settings afterwards.
Math-text parsing is off, so a "$" in a class name stays a "$".
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib
import matplotlib.patches
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from classaudit import formatters as fmt
from classaudit.analysis.schema import same_strength

HARMED = "#c0392b"
HELPED = "#2c7fb8"
NEUTRAL = "#8c8c8c"
LINE = "#34495e"
CHOSEN = "#e67e22"
PANEL_COLUMNS = 4
MAX_LABEL = 28  # characters of a class name shown in a panel title or tick label

THEME = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("paper", font_scale=1.0),
    "svg.hashsalt": "classaudit",
    "svg.fonttype": "none",  # text as <text>: smaller files, and class names stay searchable on the page
    "text.parse_math": False,
    "font.family": ["sans-serif"],
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "axes.titlesize": 9,
    "axes.labelsize": 8.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.5,
    "path.simplify": True,
}


@contextmanager
def _figure(width: float, height: float, constrained: bool = True) -> Iterator[Figure]:
    """A figure under the theme. The large figures (100 classes) pass constrained=False and set their margins in
    inches: constrained layout measures every tick label over several draws, which cost most of their time."""
    with matplotlib.rc_context(THEME):
        fig = Figure(figsize=(width, height), layout="constrained" if constrained else None)
        FigureCanvasAgg(fig)
        yield fig


def _margins(fig: Figure, *, left: float, right: float, top: float, bottom: float, wspace: float = 0.0,
             hspace: float = 0.0) -> None:
    """Margins in inches; wspace/hspace in inches between panels (matplotlib wants fractions of a panel)."""
    width, height = fig.get_size_inches()
    columns, rows = fig.axes[0].get_subplotspec().get_gridspec().get_geometry()[::-1] if fig.axes else (1, 1)
    panel_w = (width - left - right - wspace * (columns - 1)) / columns
    panel_h = (height - top - bottom - hspace * (rows - 1)) / rows
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=wspace / panel_w, hspace=hspace / panel_h)


def _label_width(labels: Sequence[str], fontsize: float) -> float:
    """Inches the longest label needs, at about 0.6 em per character."""
    longest = max((len(label) for label in labels), default=1)
    return longest * fontsize * 0.6 / 72


def _short(name: str) -> str:
    return name if len(name) <= MAX_LABEL else name[:MAX_LABEL - 1] + "\u2026"


def _strength_axis(ax, order: Sequence[float], off_label: bool = True) -> None:
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([fmt.strength(s) + (" (off)" if i == 0 and off_label else "") for i, s in enumerate(order)])
    ax.set_xlim(-0.3, len(order) - 0.7)


# --------------------------------------------------------------------------------------------------------------
# (2) Per-class accuracy against strength, small multiples.

def class_curves(by_class: pd.DataFrame, order: Sequence[float], chosen: float, classes: Sequence[int],
                 harmed: set[int]) -> Figure:
    """One panel per class: mean test accuracy over seeds against strength, with its confidence band."""
    rows = by_class[by_class["class_id"].isin(classes)].copy()
    rows["position"] = [_position(order, s) for s in rows["strength"]]
    ncols = min(PANEL_COLUMNS, len(classes))
    nrows = -(-len(classes) // ncols)
    panel_w, panel_h, gap_w, gap_h = 2.2, 1.35, 0.25, 0.5
    left, right, top, bottom = 0.85, 0.15, 0.3, 0.6
    width = left + right + ncols * panel_w + (ncols - 1) * gap_w
    height = top + bottom + nrows * panel_h + (nrows - 1) * gap_h
    with _figure(width, height, constrained=False) as fig:
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
        _margins(fig, left=left, right=right, top=top, bottom=bottom, wspace=gap_w, hspace=gap_h)
        chosen_at = _position(order, chosen)
        for ax, k in zip(axes, classes):
            data = rows[rows["class_id"] == k].sort_values("position")
            colour = HARMED if k in harmed else LINE
            ax.fill_between(data["position"], data["ci_low"].clip(0, 1), data["ci_high"].clip(0, 1),
                            color=colour, alpha=0.18, linewidth=0)
            sns.lineplot(data=data, x="position", y="mean", ax=ax, color=colour, marker="o", markersize=4,
                         errorbar=None, estimator=None, sort=False)
            off_mean = data.loc[data["position"] == 0, "mean"]
            if len(off_mean):
                ax.axhline(float(off_mean.iloc[0]), color=NEUTRAL, linestyle="--", linewidth=0.8)
            if chosen_at > 0:
                ax.axvline(chosen_at, color=CHOSEN, linestyle=":", linewidth=1.6)
            label = _short(str(data["class_name"].iloc[0])) + ("  (harmed)" if k in harmed else "")
            ax.set_title(label, color=colour, loc="left")
            ax.set_xlabel("")
            ax.set_ylabel("")
            _strength_axis(ax, order)
            ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        for ax in axes[len(classes):]:
            ax.set_visible(False)
        for ax in axes[max(0, len(classes) - ncols):len(classes)]:
            ax.xaxis.set_tick_params(labelbottom=True)  # the last panel of each column shows the strengths
        fig.text(0.5, 0.08 / height, "strength (off \u2192 strongest); orange dotted line: the chosen strength",
                 ha="center", va="bottom", fontsize=8)
        fig.text(0.1 / width, 0.5, "test accuracy (mean over seeds)", rotation=90, ha="left", va="center",
                 fontsize=8)
    return fig


def _position(order: Sequence[float], strength: float) -> int:
    return int(np.argmin([abs(s - strength) for s in order]))


# --------------------------------------------------------------------------------------------------------------
# (3) Class x strength heatmap of the change against off.

def change_map(difference: pd.DataFrame, orders: dict[str, list[float]], class_names: dict[int, str]) -> Figure:
    """Heatmaps of delta (points) per class and non-off strength, one per regularizer; harmed cells marked."""
    regularizers = [r for r in orders if len(orders[r]) > 1]
    k = len(class_names)
    ids = sorted(class_names)
    limit = float(np.nanmax(np.abs(difference["delta"]))) * 100 if len(difference) else 1.0
    limit = max(limit, 1.0)
    annotate = k <= 25
    cell_w, cell_h = 0.55, 0.17
    widths = [cell_w * (len(orders[r]) - 1) for r in regularizers]
    labels = [_short(class_names[c]) for c in ids]
    tick_size = 6.5 if k > 40 else 7.5
    left, gap, bar = _label_width(labels, tick_size) + 0.2, 0.25, 1.0
    top, bottom = (0.75 if k > 25 else 0.35), 0.55
    height = cell_h * max(k, 6) + top + bottom
    width = left + sum(widths) + gap * (len(widths) - 1) + bar
    with _figure(width, height, constrained=False) as fig:
        axes = fig.subplots(1, len(regularizers), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
        _margins(fig, left=left, right=bar, top=top, bottom=bottom, wspace=gap)
        # The colour bar in its own axes, so every heatmap keeps the same cell size.
        cbar_ax = fig.add_axes((1 - (bar - 0.2) / width, 1 - (top + min(2.2, height - top - bottom)) / height,
                                0.12 / width, min(2.2, height - top - bottom) / height))
        for i, (ax, r) in enumerate(zip(axes, regularizers)):
            rows = difference[difference["regularizer"] == r]
            strengths = orders[r][1:]
            grid = pd.DataFrame(np.nan, index=ids, columns=range(len(strengths)))
            marks = []
            for row in rows.itertuples(index=False):
                col = _position(strengths, row.strength)
                grid.loc[row.class_id, col] = row.delta * 100
                if row.harmed:
                    marks.append((col, ids.index(row.class_id)))
            with warnings.catch_warnings():  # seaborn 0.13 calls a colormap method matplotlib 3.11 deprecates
                warnings.simplefilter("ignore", PendingDeprecationWarning)
                sns.heatmap(grid, ax=ax, cmap="RdBu", center=0, vmin=-limit, vmax=limit, linewidths=0.4,
                            linecolor="white", cbar=i == 0, cbar_ax=cbar_ax if i == 0 else None,
                            cbar_kws={"label": "change against off (points)"},
                            annot=grid.map(lambda v: fmt.signed_pct(v / 100, 0)) if annotate else False, fmt="",
                            annot_kws={"fontsize": 7.5},
                            yticklabels=labels if i == 0 else False,
                            xticklabels=[fmt.strength(s) for s in strengths])
            for x, y in marks:
                ax.add_patch(matplotlib.patches.Rectangle((x + 0.04, y + 0.04), 0.92, 0.92, fill=False,
                                                          edgecolor="black", linewidth=1.3))
            ax.set_title(r, loc="left", pad=22 if k > 25 else 6)
            ax.set_xlabel("strength")
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelsize=tick_size, rotation=0)
            # A tall map repeats the strengths on top, so they are in view at either end.
            ax.tick_params(axis="x", rotation=0, top=k > 25, labeltop=k > 25)
    return fig


# --------------------------------------------------------------------------------------------------------------
# (4) Sorted per-class change at the chosen strength.

def sorted_change(rows: pd.DataFrame, title: str) -> Figure:
    """Horizontal bars of delta (points) at one strength, most harmed first, with the interval as whiskers."""
    rows = rows.sort_values(["delta", "class_id"]).reset_index(drop=True)
    k = len(rows)
    colours = [HARMED if h else HELPED if p else NEUTRAL for h, p in zip(rows["harmed"], rows["helped"])]
    delta = rows["delta"].to_numpy(float) * 100
    # With two or three seeds a t interval can reach past +-100 points, which no change of accuracy can: clip it
    # there, so one wide interval does not squash every bar.
    # An exact (McNemar) interval can end at delta itself, where rounding leaves -1e-17: whiskers are >= 0.
    low = np.maximum((rows["delta"] - rows["ci_low"].clip(lower=-1.0)).to_numpy(float) * 100, 0.0)
    high = np.maximum((rows["ci_high"].clip(upper=1.0) - rows["delta"]).to_numpy(float) * 100, 0.0)
    labels = [_short(str(n)) for n in rows["class_name"]]
    tick_size = 6.5 if k > 40 else 7.5
    left, right, top, bottom = _label_width(labels, tick_size) + 0.2, 0.2, 0.35, 0.55
    with _figure(left + right + 5.0, max(1.8, 0.15 * k + top + bottom), constrained=False) as fig:
        ax = fig.subplots()
        _margins(fig, left=left, right=right, top=top, bottom=bottom)
        y = np.arange(k)
        ax.barh(y, delta, color=colours, height=0.75)
        whiskers = np.isfinite(low) & np.isfinite(high)
        if whiskers.any():
            ax.errorbar(delta[whiskers], y[whiskers], xerr=[low[whiskers], high[whiskers]], fmt="none",
                        ecolor="#333333", elinewidth=0.7, capsize=1.5)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=tick_size)
        ax.set_ylim(k - 0.5, -0.5)
        ax.set_xlabel("change of test accuracy against off (points); red: harmed, blue: helped")
        ax.set_title(title, loc="left")
        ax.grid(axis="y", visible=False)
    return fig


# --------------------------------------------------------------------------------------------------------------
# (5) Mean against worst-class accuracy across strengths.

def trade_off(overall: pd.DataFrame, orders: dict[str, list[float]], chosen: dict[str, float]) -> Figure:
    """Mean class accuracy (x) against worst-class accuracy (y), one path per regularizer from off outwards."""
    palette = dict(zip(orders, sns.color_palette("colorblind", len(orders))))
    with _figure(6.4, 4.0) as fig:
        ax = fig.subplots()
        for r, order in orders.items():
            rows = overall[overall["regularizer"] == r].copy()
            rows["position"] = [_position(order, s) for s in rows["strength"]]
            rows = rows.sort_values("position")
            sns.lineplot(data=rows, x="mean", y="group_min", ax=ax, sort=False, estimator=None, errorbar=None,
                         color=palette[r], marker="o", markersize=5, label=r)
            for row in rows.itertuples(index=False):
                label = fmt.strength(row.strength) + (" off" if row.position == 0 else "")
                ax.annotate(label, (row.mean, row.group_min), textcoords="offset points", xytext=(5, 4),
                            fontsize=7.5, color=palette[r])
            pick = rows[same_strength(rows["strength"], chosen[r])]
            ax.scatter(pick["mean"], pick["group_min"], marker="*", s=160, color=palette[r], edgecolors="black",
                       linewidths=0.6, zorder=5)
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.set_xlabel("mean class accuracy (test)")
        ax.set_ylabel("worst-class accuracy (test)")
        ax.legend(title=None, loc="best", frameon=True)
        ax.set_title("each point a strength; star: the chosen strength", loc="left")
    return fig


# --------------------------------------------------------------------------------------------------------------
# Where the lost predictions went.

def absorbers(rows: pd.DataFrame, title: str) -> Figure:
    """Horizontal bars, one per (class, absorbing class) of an absorbers table: the growth of the confusion rate
    class -> absorber in points, grouped by class, the class that lost most first."""
    rows = rows.assign(order=rows.groupby("class_id")["delta"].transform("sum"))
    rows = rows.sort_values(["order", "class_id", "rank"], ascending=[False, True, True]).reset_index(drop=True)
    labels = [f"{_short(str(a))} \u2192 {_short(str(b))}" for a, b in zip(rows["class_name"], rows["predicted_name"])]
    k = len(rows)
    left, right, top, bottom = _label_width(labels, 7.5) + 0.2, 0.2, 0.35, 0.55
    with _figure(left + right + 4.5, max(1.8, 0.18 * k + top + bottom), constrained=False) as fig:
        ax = fig.subplots()
        _margins(fig, left=left, right=right, top=top, bottom=bottom)
        y = np.arange(k)
        ax.barh(y, rows["delta"].to_numpy(float) * 100, color=HARMED, height=0.7)
        ax.set_yticks(y)
        ax.set_yticklabels(labels)
        ax.set_ylim(k - 0.5, -0.5)
        ax.set_xlabel("growth of the confusion rate against off (points of the class's images)")
        ax.set_title(title, loc="left")
        ax.grid(axis="y", visible=False)
    return fig
