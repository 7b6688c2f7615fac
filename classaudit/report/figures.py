"""Figures: seaborn/matplotlib drawings of the computed tables, returned as SVG text or PNG bytes, never files.

Every figure is drawn on a bare `matplotlib.figure.Figure` with the Agg canvas (no pyplot, so no global figure
list and no backend switch) inside one `matplotlib.rc_context`, which restores the caller's settings afterwards.
Output is deterministic: `svg.hashsalt` fixes the ids matplotlib derives from content, the SVG carries no date,
and each figure's ids get a prefix of their own so several SVGs can share one HTML page. Text from data (class
names) is written by matplotlib's SVG writer, which escapes it; math-text parsing is off so a "$" in a class
name stays a "$".
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import matplotlib
import matplotlib.image
import matplotlib.patches
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from classaudit.report import formatters as fmt

HARMED = "#c0392b"
HELPED = "#2c7fb8"
NEUTRAL = "#8c8c8c"
LINE = "#34495e"
CHOSEN = "#e67e22"
PANEL_COLUMNS = 4
MAX_LABEL = 28  # characters of a class name shown in a panel title or tick label

_THEME = {
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
def _figure(width: float, height: float, name: str) -> Iterator[Figure]:
    with matplotlib.rc_context(_THEME | {"svg.id": name}):
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _svg(fig: Figure, name: str) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE: the SVG goes inline in HTML
    return _prefix_ids(text, name)


_TAG = re.compile(r"<[^<>]+>")
_ID = re.compile(r'(\sid=")([^"]+)(")')
_REF = re.compile(r'(url\(#|href="#)([^)"]+)')


def _prefix_ids(svg: str, name: str) -> str:
    """Prefix every id, and every reference to one, with `name`, so inline SVGs on one page cannot clash.

    Only tags are touched: text and comments from data cannot contain a raw "<" (the SVG writer escapes it), so
    a class name that happens to read 'id="x"' is left alone.
    """
    def tag(match: re.Match) -> str:
        t = match.group(0)
        if t.startswith("<svg"):
            return t
        t = _ID.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}{m.group(3)}", t)
        return _REF.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", t)

    return _TAG.sub(tag, svg)


def _short(name: str) -> str:
    return name if len(name) <= MAX_LABEL else name[:MAX_LABEL - 1] + "\u2026"


def _strength_axis(ax, order: Sequence[float], off_label: bool = True) -> None:
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([fmt.strength(s) + (" (off)" if i == 0 and off_label else "") for i, s in enumerate(order)])
    ax.set_xlim(-0.3, len(order) - 0.7)


# --------------------------------------------------------------------------------------------------------------
# (2) Per-class accuracy against strength, small multiples.

def accuracy_panels(by_class: pd.DataFrame, order: Sequence[float], chosen: float, classes: Sequence[int],
                    harmed: set[int], name: str) -> str:
    """One panel per class: mean test accuracy over seeds against strength, with its confidence band."""
    rows = by_class[by_class["class_id"].isin(classes)].copy()
    rows["position"] = [_position(order, s) for s in rows["strength"]]
    ncols = min(PANEL_COLUMNS, len(classes))
    nrows = -(-len(classes) // ncols)
    with _figure(2.45 * ncols + 0.3, 1.85 * nrows + 0.35, name) as fig:
        axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
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
        fig.supxlabel("strength (off \u2192 strongest); orange dotted line: the chosen strength", fontsize=8)
        fig.supylabel("test accuracy (mean over seeds)", fontsize=8)
        return _svg(fig, name)


def _position(order: Sequence[float], strength: float) -> int:
    return int(np.argmin([abs(s - strength) for s in order]))


# --------------------------------------------------------------------------------------------------------------
# (3) Class x strength heatmap of the change against off.

def change_heatmap(difference: pd.DataFrame, orders: dict[str, list[float]], class_names: dict[int, str],
                   name: str) -> str:
    """Heatmaps of delta (points) per class and non-off strength, one per regularizer; harmed cells marked."""
    regularizers = [r for r in orders if len(orders[r]) > 1]
    k = len(class_names)
    ids = sorted(class_names)
    limit = float(np.nanmax(np.abs(difference["delta"]))) * 100 if len(difference) else 1.0
    limit = max(limit, 1.0)
    annotate = k <= 25
    widths = [0.55 * (len(orders[r]) - 1) + 0.4 for r in regularizers]
    height = max(2.2, 0.17 * k + 1.1)
    with _figure(sum(widths) + 2.6 + 0.9, height, name) as fig:
        # Not sharey: hiding the tick labels of a later panel would hide them on the first one too.
        axes = fig.subplots(1, len(regularizers), squeeze=False, gridspec_kw={"width_ratios": widths})[0]
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
            sns.heatmap(grid, ax=ax, cmap="RdBu", center=0, vmin=-limit, vmax=limit, linewidths=0.4,
                        linecolor="white", cbar=i == len(regularizers) - 1,
                        cbar_kws={"label": "change against off (points)", "shrink": min(1.0, 12 / max(k, 1))},
                        annot=annotate, fmt=".0f", annot_kws={"fontsize": 7.5},
                        yticklabels=[_short(class_names[c]) for c in ids] if i == 0 else False,
                        xticklabels=[fmt.strength(s) for s in strengths])
            for x, y in marks:
                ax.add_patch(matplotlib.patches.Rectangle((x + 0.04, y + 0.04), 0.92, 0.92, fill=False,
                                                          edgecolor="black", linewidth=1.3))
            ax.set_title(r, loc="left")
            ax.set_xlabel("strength")
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelsize=6.5 if k > 40 else 7.5)
            ax.tick_params(axis="x", rotation=0)
        return _svg(fig, name)


# --------------------------------------------------------------------------------------------------------------
# (4) Sorted per-class change at the chosen strength.

def sorted_change(rows: pd.DataFrame, title: str, name: str) -> str:
    """Horizontal bars of delta (points) at one strength, most harmed first, with the interval as whiskers."""
    rows = rows.sort_values(["delta", "class_id"]).reset_index(drop=True)
    k = len(rows)
    colours = [HARMED if h else HELPED if p else NEUTRAL for h, p in zip(rows["harmed"], rows["helped"])]
    delta = rows["delta"].to_numpy(float) * 100
    low = (rows["delta"] - rows["ci_low"]).to_numpy(float) * 100
    high = (rows["ci_high"] - rows["delta"]).to_numpy(float) * 100
    with _figure(6.4, max(1.8, 0.15 * k + 0.9), name) as fig:
        ax = fig.subplots()
        y = np.arange(k)
        ax.barh(y, delta, color=colours, height=0.75)
        whiskers = np.isfinite(low) & np.isfinite(high)
        if whiskers.any():
            ax.errorbar(delta[whiskers], y[whiskers], xerr=[low[whiskers], high[whiskers]], fmt="none",
                        ecolor="#333333", elinewidth=0.7, capsize=1.5)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels([_short(str(n)) for n in rows["class_name"]], fontsize=6.5 if k > 40 else 7.5)
        ax.set_ylim(k - 0.5, -0.5)
        ax.set_xlabel("change of test accuracy against off (points); red: harmed, blue: helped")
        ax.set_title(title, loc="left")
        ax.grid(axis="y", visible=False)
        return _svg(fig, name)


# --------------------------------------------------------------------------------------------------------------
# (5) Mean against worst-class accuracy across strengths.

def tradeoff(overall: pd.DataFrame, orders: dict[str, list[float]], chosen: dict[str, float], name: str) -> str:
    """Mean class accuracy (x) against worst-class accuracy (y), one path per regularizer from off outwards."""
    palette = dict(zip(orders, sns.color_palette("colorblind", len(orders))))
    with _figure(6.4, 4.0, name) as fig:
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
            pick = rows[np.isclose(rows["strength"], chosen[r], rtol=1e-9, atol=0)]
            ax.scatter(pick["mean"], pick["group_min"], marker="*", s=160, color=palette[r], edgecolors="black",
                       linewidths=0.6, zorder=5)
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.set_xlabel("mean class accuracy (test)")
        ax.set_ylabel("worst-class accuracy (test)")
        ax.legend(title=None, loc="best", frameon=True)
        ax.set_title("each point a strength; star: the chosen strength", loc="left")
        return _svg(fig, name)


# --------------------------------------------------------------------------------------------------------------
# (7) Example images of the embedded shapes data.

def image_strip(images: np.ndarray, gap: int = 2) -> str:
    """uint8 images [n, 3, h, w] side by side on white, as a PNG data URI (no text chunks: deterministic)."""
    n, _, h, w = images.shape
    strip = np.full((h, n * w + (n - 1) * gap, 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        strip[:, i * (w + gap):i * (w + gap) + w] = image.transpose(1, 2, 0)
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, strip, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
