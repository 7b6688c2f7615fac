"""The report stage: one results folder in, one self-contained HTML page plus CSV tables out.

Four stages, each in its own module: `compute` loads the results and runs the analysis API, `structure`
arranges the numbers and figures into plain dataclasses (`formatters` writes each number as text), `render`
turns them into text through one autoescaping Jinja2 environment, and `write` is the only code that writes to
the disk. No torch anywhere here.

    >>> from classaudit.report import write_report
    >>> write_report("results/demo", "reports/demo")         # doctest: +SKIP
    PosixPath('reports/demo')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from classaudit.report import compute, render, structure, write
from classaudit.report.structure import Report

__all__ = ["Report", "build_report", "render_report", "write_report"]


def build_report(results: Any, *, alpha: float = 0.05, min_effect: float = 0.0, title: str | None = None) -> Report:
    """The structured report (numbers, names and SVG figures in dataclasses); reads `results`, writes nothing.

    Parameters
    ----------
    results : str, Path or (DataFrame, DataFrame)
        A results folder, or the (results, predictions) pair that
        ``classaudit.analysis.from_predictions(..., return_predictions=True)`` returns.
    alpha : float
        False discovery rate: a class is harmed when its Benjamini-Hochberg q-value is below it ...
    min_effect : float
        ... and it loses more than this much accuracy (0.01 = 1 point).
    title : str, optional
        The page title; default "classaudit report: <study>".
    """
    computed = compute.compute(compute.load(results), alpha=alpha, min_effect=min_effect)
    return structure.build(computed, title=title)


def render_report(results: Any, *, alpha: float = 0.05, min_effect: float = 0.0,
                  title: str | None = None) -> dict[str, str]:
    """{file name: text} of every file `write_report` would write, without writing."""
    return render.render(build_report(results, alpha=alpha, min_effect=min_effect, title=title))


def write_report(results: Any, out: str | Path, *, alpha: float = 0.05, min_effect: float = 0.0,
                 title: str | None = None) -> Path:
    """Analyse `results` and write the report into the folder `out`: index.html, one CSV per table, README.txt.

    Everything is computed and rendered in memory first; only then are the files written, each atomically, so an
    error leaves no half-written report. The same results give byte-identical files. Returns the folder.

    Example
    -------
    >>> import classaudit as ca
    >>> ca.write_report("results/demo", "reports/demo")      # doctest: +SKIP
    PosixPath('reports/demo')
    """
    files = render_report(results, alpha=alpha, min_effect=min_effect, title=title)
    return write.write(files, out, replaces=render.FILES)
