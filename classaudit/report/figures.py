"""Figures on the page: the audit's matplotlib figures (`classaudit.analysis.plot`) as SVG text, and images as PNG
data URIs; never files.

Output is deterministic: `svg.hashsalt` fixes the ids matplotlib derives from content, the SVG carries no date,
and each figure's ids get a prefix of their own so several SVGs can share one HTML page. Text from data (class
names) is written by matplotlib's SVG writer, which escapes it.
"""

from __future__ import annotations

import base64
import io
import re

import matplotlib
import matplotlib.image
import numpy as np
from matplotlib.figure import Figure

from classaudit.analysis.plot import THEME


def svg(fig: Figure, name: str) -> str:
    """The figure as inline SVG whose ids all start with `name`."""
    with matplotlib.rc_context(THEME | {"svg.id": name}):
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
