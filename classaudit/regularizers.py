"""The regularizer catalogue: each one's unit of strength, allowed range and the value that means "off".

This module is data only (no torch), so study validation and `classaudit regularizers` can use it anywhere.
The batched implementations live in `classaudit.augment` (image and label operations) and `classaudit.train`
(weight decay, label smoothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Regularizer:
    name: str
    unit: str
    off: float
    low: float
    high: float
    low_open: bool  # True when `low` itself is not allowed
    stage: str  # where it acts: "image", "batch" (mixes images and labels), "loss" or "optimizer"
    description: str
    whole: bool = False  # only whole numbers (pixels): 0.5 would silently act as 0

    def allows(self, value: float) -> bool:
        if not math.isfinite(value) or (self.whole and value != int(value)):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    @property
    def range_text(self) -> str:
        left = "<" if self.low_open else "<="
        return f"{self.low:g} {left} s <= {self.high:g}" + (", a whole number" if self.whole else "")


REGULARIZERS: dict[str, Regularizer] = {
    r.name: r
    for r in [
        Regularizer(
            "crop", "lower scale bound s of RandomResizedCrop (area fraction kept; aspect 3/4..4/3)",
            off=1.0, low=0.0, high=1.0, low_open=True, stage="image",
            description="Random-resized crop, per image; 0.08 is the usual ImageNet default.",
        ),
        Regularizer(
            "translate", "largest shift s in pixels: each image moves by a whole number of pixels in [-s, s] per axis",
            off=0.0, low=0.0, high=64.0, low_open=False, stage="image",
            description="Random translation with mirrored borders (pad-and-crop, the usual CIFAR baseline), per image.",
            whole=True,
        ),
        Regularizer(
            "color_jitter", "SimCLR strength s: brightness, contrast, saturation 0.8 s; hue 0.2 s",
            off=0.0, low=0.0, high=2.5, low_open=False, stage="image",
            description="Colour distortion with factors drawn per image, applied in a random order per image.",
        ),
        Regularizer(
            "random_erasing", "probability p that an image gets one erased box (area 2-33%)",
            off=0.0, low=0.0, high=1.0, low_open=False, stage="image",
            description="Cutout-style random erasing (Zhong et al. 2020), box filled with the data mean.",
        ),
        Regularizer(
            "cutmix", "probability p that an image is mixed with a partner; box from lambda ~ Beta(1, 1)",
            off=0.0, low=0.0, high=1.0, low_open=False, stage="batch",
            description="CutMix (Yun et al. 2019), per image; the label weight is the pasted area after clipping.",
        ),
        Regularizer(
            "mixup", "probability p that an image is mixed with a partner; lambda ~ Beta(1, 1)",
            off=0.0, low=0.0, high=1.0, low_open=False, stage="batch",
            description="MixUp (Zhang et al. 2018), per image, with its own lambda.",
        ),
        Regularizer(
            "label_smoothing", "epsilon: weight moved from the true label to the uniform distribution",
            off=0.0, low=0.0, high=0.99, low_open=False, stage="loss",
            description="Label smoothing (Szegedy et al. 2016).",
        ),
        Regularizer(
            "weight_decay", "coefficient; coupled (L2 in the gradient) for SGD, decoupled for AdamW",
            off=0.0, low=0.0, high=1.0, low_open=False, stage="optimizer",
            description="Weight decay; norm and bias parameters are excluded unless train.decay_norm_and_bias.",
        ),
    ]
}
