"""Formatters: pure functions from a value to the text a reader sees. The render stage registers them as Jinja2
filters, and the structure stage uses them for text it composes (figure labels).

Accuracies are fractions in the data and percentages on the page; changes of accuracy are percentage points.
A missing value (None or NaN) prints as an en dash, never as "nan".
"""

from __future__ import annotations

import html
import math
import numbers

DASH = "\u2013"
MINUS = "\u2212"


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return isinstance(value, numbers.Real) and math.isnan(value)
    except TypeError:  # pragma: no cover - exotic number types
        return False


def _signed(number: float, digits: int) -> str:
    text = f"{abs(number):.{digits}f}"
    if float(text) == 0:
        return text  # no "-0.0": a change that rounds to zero has no direction
    return ("+" if number > 0 else MINUS) + text


def pct(value: object, digits: int = 1) -> str:
    """An accuracy (fraction) as a percentage: 0.8234 -> "82.3%"."""
    if _missing(value):
        return DASH
    return f"{float(value) * 100:.{digits}f}%"


def points(value: object, digits: int = 1) -> str:
    """A change of accuracy in percentage points, signed: -0.125 -> "−12.5 pts"."""
    if _missing(value):
        return DASH
    return f"{_signed(float(value) * 100, digits)} pts"


def pts(value: object, digits: int = 1) -> str:
    """A size (spread, standard deviation) in percentage points, unsigned: 0.029 -> "2.9 pts"."""
    if _missing(value):
        return DASH
    return f"{float(value) * 100:.{digits}f} pts"


def signed_pct(value: object, digits: int = 1) -> str:
    """A signed change shown as a bare percentage number, for tight table cells: -0.125 -> "−12.5"."""
    if _missing(value):
        return DASH
    return _signed(float(value) * 100, digits)


def interval(low: object, high: object, digits: int = 1) -> str:
    """An interval of changes in points: (-0.15, -0.09) -> "[−15.0, −9.0]"."""
    if _missing(low) or _missing(high):
        return DASH
    return f"[{_signed(float(low) * 100, digits)}, {_signed(float(high) * 100, digits)}]"


def pvalue(value: object) -> str:
    """A p- or q-value: three decimals, "<0.001" below that, an en dash when no test was possible."""
    if _missing(value):
        return DASH
    value = float(value)
    if value < 0.001:
        return "<0.001"
    return f"{value:.3f}"


def q(value: object) -> str:
    """A q-value with its name: "q = 0.012", "q < 0.001", or "untested" when the seeds allowed no test."""
    if _missing(value):
        return "untested"
    text = pvalue(value)
    return f"q < {text[1:]}" if text.startswith("<") else f"q = {text}"


def strength(value: object) -> str:
    """A regularizer strength as written in a study file: 1.0 -> "1", 0.08 -> "0.08", 5e-4 -> "0.0005"."""
    if _missing(value):
        return DASH
    text = f"{float(value):.6g}"
    if "e" in text:
        text = f"{float(value):.10f}".rstrip("0").rstrip(".")
    return text


def seconds(value: object) -> str:
    """A duration: 9.87 -> "9.9 s", 125 -> "2 min 5 s", 7384 -> "2 h 3 min"."""
    if _missing(value):
        return DASH
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    whole = int(round(value))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def count(value: object) -> str:
    """A whole number with thousands separators: 12345 -> "12,345"."""
    if _missing(value):
        return DASH
    return f"{int(value):,}"


def number(value: object, digits: int = 3) -> str:
    """A plain number to `digits` significant digits."""
    if _missing(value):
        return DASH
    return f"{float(value):.{digits}g}"


def text(value: object) -> str:
    """Any value as text (None/NaN as an en dash); escaping is the template's job, not this function's."""
    if _missing(value):
        return DASH
    return str(value)


def plural(n: int, word: str, many: str | None = None) -> str:
    """ "1 class", "3 classes"."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


# Name -> formatter, for table columns that say how their cells are shown.
BY_NAME = {
    "pct": pct, "points": points, "pts": pts, "signed_pct": signed_pct, "pvalue": pvalue, "strength": strength,
    "seconds": seconds, "count": count, "number": number, "text": text,
}


def cell(value: object, kind: str) -> str:
    """Format a table cell by the name of its column's formatter."""
    return BY_NAME[kind](value)


def md(value: object) -> str:
    """Text for a Markdown table cell: HTML (which Markdown renders), backslashes, pipes and line breaks escaped."""
    text = html.escape(str(value), quote=False)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def split_name(split: str) -> str:
    """A split as prose: "val" -> "validation"."""
    return {"val": "validation"}.get(split, split)


# Every formatter, by the filter name the templates use.
FILTERS = {**BY_NAME, "md": md, "split_name": split_name, "q": q, "interval": interval, "plural": plural, "cell": cell}
