"""`shapes`: the embedded data set, generated in memory, in which every class is defined by one known cue.

It is a ground truth for the claim under audit. Each class differs from its group by exactly one cue, so we
know in advance which regularizer should hurt it:

    class        cue       what defines it                                   expected to be hurt by
    red          colour    a large centred disc of saturated red (hue 0)      colour jitter (hue shift)
    yellow       colour    the same disc in yellow (hue 60 degrees)           colour jitter
    green        colour    the same disc in green (hue 120 degrees)           colour jitter
    square       shape     a filled square, random place and grey-ish colour  aggressive crop
    triangle     shape     a filled triangle, likewise                        aggressive crop
    cross        shape     a filled plus sign, likewise                       aggressive crop
    row          layout    two dots side by side, far apart                   aggressive crop (a crop shows one dot)
    column       layout    two dots one above the other, far apart            aggressive crop
    stripes      texture   horizontal stripes filling the image               neither
    checker      texture   a checkerboard filling the image                   neither

Only the colour classes carry saturated colour; every other class is drawn in colours of low saturation and
random hue, so hue is informative for the colour classes alone. Textures fill the image, so any crop still
shows them, and a random hue cannot change them. Shapes, and the arrangement of the two dots, need the whole
object in view: a small crop shows a corner, or one dot, which is the same for every class of the group.

Generation is vectorised numpy (no per-image loop), deterministic from `seed` and independent of torch.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("red", "yellow", "green", "square", "triangle", "cross", "row", "column", "stripes", "checker")
CUES = {
    "red": "colour", "yellow": "colour", "green": "colour",
    "square": "shape", "triangle": "shape", "cross": "shape",
    "row": "layout", "column": "layout",
    "stripes": "texture", "checker": "texture",
}
# Which regularizer each cue is expected to be sensitive to (the known answer the tests check).
SENSITIVE_TO = {"colour": ("color_jitter",), "shape": ("crop",), "layout": ("crop",), "texture": ()}
_HUES = {"red": 0.0, "yellow": 1 / 6, "green": 2 / 6}
_NOISE = 0.05  # per-pixel Gaussian noise, so that no class is trivially separable by one pixel
_SUPERSAMPLE = 2  # draw at 2x and average down: anti-aliased edges


def generate(n_per_class: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 3, size, size], labels int64 [N]), classes in blocks of n_per_class."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        # One child generator per class: adding a class later does not change the others' images.
        child = np.random.default_rng([seed, label])
        images.append(_draw(name, n_per_class, size, child))
        labels.append(np.full(n_per_class, label, dtype=np.int64))
    x = np.concatenate(images)
    x = x + rng.normal(0.0, _NOISE, size=x.shape).astype(np.float32)
    x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return x, np.concatenate(labels)


def _draw(name: str, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    s = size * _SUPERSAMPLE
    # Pixel centres in [0, 1] image coordinates, shape [1, s, s] for broadcasting against n images.
    coords = ((np.arange(s) + 0.5) / s).astype(np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    yy, xx = yy[None], xx[None]
    cue = CUES[name]
    if cue == "texture":
        fg, bg = _dull_colour(rng, n, 0.55, 1.0), _dull_colour(rng, n, 0.0, 0.4)
        period = rng.uniform(0.14, 0.22, n)[:, None, None]
        phase_y, phase_x = rng.uniform(0, 1, (2, n))[:, :, None, None]
        stripe_y = np.floor(yy / period + phase_y) % 2
        if name == "stripes":
            mask = stripe_y
        else:
            mask = (stripe_y + np.floor(xx / period + phase_x)) % 2
        img = _paint(mask, fg, bg)
    else:
        bg = np.repeat(rng.uniform(0.0, 0.3, (n, 1)), 3, axis=1)  # dark grey backgrounds
        if cue == "colour":
            hue = (_HUES[name] + rng.uniform(-0.02, 0.02, n)) % 1.0
            fg = _hsv_to_rgb(hue, rng.uniform(0.75, 1.0, n), rng.uniform(0.7, 1.0, n))
            cy, cx = 0.5 + rng.uniform(-0.08, 0.08, (2, n))[:, :, None, None]
            r = rng.uniform(0.33, 0.42, n)[:, None, None]
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        elif cue == "shape":
            fg = _dull_colour(rng, n, 0.55, 1.0)
            half = rng.uniform(0.12, 0.2, n)[:, None, None]
            cy = rng.uniform(0.0, 1.0, n)[:, None, None] * (1 - 2 * half - 0.04) + half + 0.02
            cx = rng.uniform(0.0, 1.0, n)[:, None, None] * (1 - 2 * half - 0.04) + half + 0.02
            dy, dx = (yy - cy) / half, (xx - cx) / half  # object coordinates in [-1, 1]
            if name == "square":
                mask = (np.abs(dy) < 0.8) & (np.abs(dx) < 0.8)
            elif name == "triangle":  # apex up, symmetric, so a horizontal flip keeps the class
                mask = (dy < 0.8) & (dy > -1.0 + 2 * np.abs(dx))
            else:
                arm = 0.3
                mask = ((np.abs(dy) < arm) & (np.abs(dx) < 1)) | ((np.abs(dx) < arm) & (np.abs(dy) < 1))
        else:  # layout: two dots, far apart, in a row or in a column
            fg = _dull_colour(rng, n, 0.6, 1.0)
            r = rng.uniform(0.08, 0.11, n)[:, None, None]
            gap = rng.uniform(0.45, 0.6, n)[:, None, None]  # centre-to-centre distance
            along = rng.uniform(0.0, 1.0, n)[:, None, None] * (0.9 - gap - 2 * r) + r + 0.05  # first dot
            across = rng.uniform(0.0, 1.0, n)[:, None, None] * (0.9 - 2 * r) + r + 0.05
            u, v = (xx, yy) if name == "row" else (yy, xx)  # u runs along the pair, v across it
            mask = ((u - along) ** 2 + (v - across) ** 2 < r**2) | ((u - along - gap) ** 2 + (v - across) ** 2 < r**2)
        img = _paint(mask, fg, bg)
    # Average-pool the supersampled image down to `size`.
    img = img.reshape(n, 3, size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(3, 5))
    return img


def _paint(mask: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    m = mask.astype(np.float32)[:, None]
    return m * fg[:, :, None, None].astype(np.float32) + (1 - m) * bg[:, :, None, None].astype(np.float32)


def _dull_colour(rng: np.random.Generator, n: int, v_low: float, v_high: float) -> np.ndarray:
    """Colours of random hue and low saturation: hue carries no information outside the colour classes."""
    return _hsv_to_rgb(rng.uniform(0, 1, n), rng.uniform(0.0, 0.25, n), rng.uniform(v_low, v_high, n))


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB for arrays of shape [n]; returns [n, 3]. (matplotlib's needs an image layout.)"""
    from matplotlib.colors import hsv_to_rgb

    return hsv_to_rgb(np.stack([h, s, v], axis=-1))
