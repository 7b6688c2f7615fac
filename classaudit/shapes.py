"""`shapes`: the embedded data set, generated in memory, in which every class is defined by one known cue.

It is a ground truth for the claim under audit. Each class differs from its group by exactly one cue, so we
know in advance which regularizer should hurt it:

    class        cue       what defines it                                   expected to be hurt by
    red          colour    a large centred disc of saturated red (hue 0)      colour jitter (hue shift)
    yellow       colour    the same disc in yellow (hue 60 degrees)           colour jitter
    green        colour    the same disc in green (hue 120 degrees)           colour jitter
    square       shape     a filled square, random place and grey-ish colour  crop (stretches by up to 4/3)
    wide         shape     a rectangle 1.25 times as wide as high, likewise   crop
    tall         shape     a rectangle 1.25 times as high as wide, likewise   crop
    shallow      layout    two dots on a diagonal at 42 degrees                crop (stretches by up to 4/3)
    steep        layout    two dots on a diagonal at 48 degrees                crop
    stripes      texture   horizontal stripes filling the image               neither
    checker      texture   a checkerboard filling the image                   neither

Only the colour classes carry saturated colour; every other class is drawn in colours of low saturation and
random hue, so hue is informative for the colour classes alone. Textures fill the image, so any crop still
shows them, and a random hue cannot change them. The shape and layout classes sit close together along a
geometric cue, as the colour classes do along hue: RandomResizedCrop stretches an image by up to 4/3 (aspect
ratio 3/4..4/3), which turns a square into a rectangle and a 42-degree diagonal into a 48-degree one, so it
blurs exactly the cue that tells those classes apart, as a strong hue shift does for the colour classes.
Both cues compare width with height, so the crop's zoom leaves them alone and only its stretch matters.

Generation is vectorised numpy (no per-image loop), deterministic from `seed` and independent of torch.
"""

from __future__ import annotations

import numpy as np

CLASSES = ("red", "yellow", "green", "square", "wide", "tall", "shallow", "steep", "stripes", "checker")
CUES = {
    "red": "colour", "yellow": "colour", "green": "colour",
    "square": "shape", "wide": "shape", "tall": "shape",
    "shallow": "layout", "steep": "layout",
    "stripes": "texture", "checker": "texture",
}
# Which regularizer each cue is expected to be sensitive to (the known answer the tests check).
SENSITIVE_TO = {"colour": ("color_jitter",), "shape": ("crop",), "layout": ("crop",), "texture": ()}
_HUES = {"red": 0.0, "yellow": 1 / 6, "green": 2 / 6}
_ASPECT = 1.25  # wide and tall rectangles: well within the 4/3 stretch of a crop
_LOG_SLOPE = 0.12  # log tan of the diagonals: 41.6 vs 48.4 degrees, within a crop's stretch (log 4/3 = 0.29)
_NOISE = 0.05  # per-pixel Gaussian noise, so that no class is trivially separable by one pixel
# Part of every shapes run's config (so of its run id): bump it whenever the images a seed gives change, so
# results of the old images are never mixed with new ones.
VERSION = 1
TEST_SEED_OFFSET = 1_000_003  # the test split is generate(..., seed + TEST_SEED_OFFSET): an independent stream
_SUPERSAMPLE = 2  # draw at 2x and average down: anti-aliased edges

DOWNSTREAM_CLASSES = ("vermilion", "orange", "amber", "gold", "ring", "cross", "columns", "dots")
DOWNSTREAM_CUES = {"vermilion": "hue", "orange": "hue", "amber": "hue", "gold": "hue",
                   "ring": "shape", "cross": "shape", "columns": "texture", "dots": "texture"}
# Between the upstream red (0 degrees) and yellow (60): 12 degrees apart, each class's hue drawn within 7 degrees of
# its own, as the upstream colour classes' are (so neighbours overlap a little: no probe reaches 100%).
_DOWNSTREAM_HUES = {"vermilion": 10 / 360, "orange": 22 / 360, "amber": 34 / 360, "gold": 46 / 360}
DOWNSTREAM_STREAM = 7  # the downstream images' random stream, apart from the upstream classes' streams


def generate(n_per_class: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 3, size, size], labels int64 [N]), classes in blocks of n_per_class."""
    return _generate(CLASSES, _draw, n_per_class, size, [seed])


def _generate(classes, draw, n_per_class: int, size: int, stream: list[int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(stream[0] if len(stream) == 1 else stream)
    images, labels = [], []
    for label, name in enumerate(classes):
        # One child generator per class: adding a class later does not change the others' images.
        child = np.random.default_rng([*stream, label])
        images.append(draw(name, n_per_class, size, child))
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
        elif cue == "shape":  # a rectangle of a given aspect ratio, at a random place and size
            fg = _dull_colour(rng, n, 0.55, 1.0)
            aspect = {"square": 1.0, "wide": _ASPECT, "tall": 1 / _ASPECT}[name]
            area = rng.uniform(0.09, 0.2, n)[:, None, None]
            half_w, half_h = np.sqrt(area * aspect) / 2, np.sqrt(area / aspect) / 2
            cy = rng.uniform(0.0, 1.0, n)[:, None, None] * (0.96 - 2 * half_h) + half_h + 0.02
            cx = rng.uniform(0.0, 1.0, n)[:, None, None] * (0.96 - 2 * half_w) + half_w + 0.02
            mask = (np.abs(yy - cy) < half_h) & (np.abs(xx - cx) < half_w)
        else:  # layout: two dots on a diagonal, shallow or steep, rising or falling
            fg = _dull_colour(rng, n, 0.6, 1.0)
            r = rng.uniform(0.09, 0.11, n)[:, None, None]
            length = rng.uniform(0.32, 0.42, n)[:, None, None]
            angle = np.arctan(np.exp(-_LOG_SLOPE if name == "shallow" else _LOG_SLOPE))
            dx, dy = length * np.cos(angle), length * np.sin(angle)
            dy = dy * np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)[:, None, None]
            cx = 0.5 + rng.uniform(-1, 1, n)[:, None, None] * (0.47 - r - dx / 2)
            cy = 0.5 + rng.uniform(-1, 1, n)[:, None, None] * (0.47 - r - np.abs(dy) / 2)
            mask = (((yy - cy - dy / 2) ** 2 + (xx - cx - dx / 2) ** 2 < r**2)
                    | ((yy - cy + dy / 2) ** 2 + (xx - cx + dx / 2) ** 2 < r**2))
        img = _paint(mask, fg, bg)
    # Average-pool the supersampled image down to `size`.
    img = img.reshape(n, 3, size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(3, 5))
    return img


# ----------------------------------------------------------------------------------------------------------
# The downstream task of the transfer known answer: new classes, probed on a network pre-trained on CLASSES.


def generate_downstream(n_per_class: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The downstream classes (DOWNSTREAM_CLASSES), as `generate` makes the upstream ones: (images uint8
    [N, 3, size, size], labels int64 [N]), classes in blocks of n_per_class."""
    return _generate(DOWNSTREAM_CLASSES, _draw_downstream, n_per_class, size, [seed, DOWNSTREAM_STREAM])


def _draw_downstream(name: str, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    s = size * _SUPERSAMPLE
    coords = ((np.arange(s) + 0.5) / s).astype(np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    yy, xx = yy[None], xx[None]
    bg = np.repeat(rng.uniform(0.0, 0.3, (n, 1)), 3, axis=1)
    cy, cx = 0.5 + rng.uniform(-0.08, 0.08, (2, n))[:, :, None, None]
    r = rng.uniform(0.33, 0.42, n)[:, None, None]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    cue = DOWNSTREAM_CUES[name]
    if cue == "hue":  # the upstream colour classes' disc, at a hue of its own
        hue = (_DOWNSTREAM_HUES[name] + rng.uniform(-0.02, 0.02, n)) % 1.0
        fg = _hsv_to_rgb(hue, rng.uniform(0.75, 1.0, n), rng.uniform(0.7, 1.0, n))
        mask = d2 < r**2
    else:
        fg = _dull_colour(rng, n, 0.55, 1.0)
        if name == "ring":
            mask = (d2 < r**2) & (d2 > (0.6 * r) ** 2)
        elif name == "cross":
            arm = rng.uniform(0.07, 0.1, n)[:, None, None]
            mask = ((np.abs(yy - cy) < arm) | (np.abs(xx - cx) < arm)) & (np.maximum(np.abs(yy - cy), np.abs(xx - cx)) < r)
        elif name == "columns":  # vertical stripes filling the image
            period = rng.uniform(0.14, 0.22, n)[:, None, None]
            mask = np.floor(xx / period + rng.uniform(0, 1, n)[:, None, None]) % 2 > 0
        else:  # dots: a grid of round spots filling the image
            period = rng.uniform(0.2, 0.26, n)[:, None, None]
            fy, fx = (yy / period + rng.uniform(0, 1, n)[:, None, None]) % 1, (xx / period + rng.uniform(0, 1, n)[:, None, None]) % 1
            mask = (fy - 0.5) ** 2 + (fx - 0.5) ** 2 < 0.3**2
    img = _paint(mask, fg, bg)
    return img.reshape(n, 3, size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(3, 5))


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
