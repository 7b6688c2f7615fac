"""The regularizer registry: each one's unit of strength, allowed range, off value, stage and implementing function.

Training dispatches through this table: at each stage it calls the functions of that stage's regularizers in
the table's order, with the run's strength, or the off value while a regularizer is not (yet) on. Adding a
regularizer is one entry here plus its function, and the tests generated from this table check it.
This module is data only (no torch): a function is named by its dotted path and imported when training first
asks for it, so study validation and `classaudit regularizers` can use the table anywhere.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

# Where a regularizer acts, in the order training reaches the stages, with each function's contract.
STAGES: dict[str, str] = {
    "recipe": "fn(train settings, strength) -> train settings, when the run's config is resolved",
    "model": "fn(model, strength, generator): sets the rate of the model's own layers, each epoch",
    "image": "fn(images in [0, 1], strength, generator) -> images, before normalisation; here and in the next "
             "two stages and the loss, strength may be a tensor [N], one per image (class-conditional)",
    "normalised": "fn(normalised images, strength, generator) -> images",
    "batch": "fn(images, soft targets, strength, generator) -> (images, soft targets)",
    "loss": "fn(logits, target, strength, reduction='mean') -> loss; the stage's one regularizer computes the "
            "cross entropy (reduction='none': per image, for class weights)",
    "ascent": "fn(model, closure, strength): after the backward pass; closure() recomputes the gradients",
    "gradient": "fn(model, strength): on the gradients, just before the optimizer's step",
    "optimizer": "fn(optimizer, strength): sets the optimizer's settings, each epoch",
}

# The stages whose functions take a strength per image (a tensor [N]) as well as one number: an image's strength is
# its class's, so an axis may exempt classes or give them their own strength (a class-conditional remedy).
PER_CLASS_STAGES = ("image", "normalised", "batch", "loss")


@dataclass(frozen=True)
class Regularizer:
    name: str
    unit: str
    off: float  # the strength that changes nothing; NaN where the study gives it (off_field)
    low: float
    high: float
    low_open: bool  # True when `low` itself is not allowed
    stage: str  # a key of STAGES
    function: str  # dotted path of the function that applies it, e.g. "classaudit.augment.crop"
    description: str
    example: float  # a typical strength: the generated tests switch it on at this one
    whole: bool = False  # only whole numbers (pixels, epochs): 0.5 would silently act as 0
    high_open: bool = False  # True when `high` itself is not allowed
    rate: bool = False  # the strength is the probability that an image (or activation) is changed
    timed: bool = True  # may be switched on from a later epoch (start_epoch)
    off_field: str = ""  # the off value is this field of the study (e.g. "train.epochs"), not `off`
    models: tuple[str, ...] = ()  # the only models it applies to (empty: every model)
    needs: str = ""  # what those models have that the others lack

    def allows(self, value: float) -> bool:
        if not math.isfinite(value) or (self.whole and value != int(value)):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    @property
    def range_text(self) -> str:
        left, right = ("<" if self.low_open else "<="), ("<" if self.high_open else "<=")
        return f"{self.low:g} {left} s {right} {self.high:g}" + (", a whole number" if self.whole else "")

    @property
    def off_text(self) -> str:
        return self.off_field or f"{self.off:g}"

    @property
    def per_class(self) -> bool:
        """Acts on each image (or its loss) on its own, so each class may have its own strength (an axis' exempt
        and class_strength): the stages that see the batch's labels."""
        return self.stage in PER_CLASS_STAGES

    @property
    def implementation(self) -> Callable:
        return implementation(self.function)


@cache
def implementation(path: str) -> Callable:
    """The function a dotted path names; ImportError or AttributeError when there is none."""
    module, _, name = path.rpartition(".")
    if not module:
        raise ImportError(f"{path!r} is not a dotted path module.function")
    function = getattr(importlib.import_module(module), name)
    if not callable(function):
        raise TypeError(f"{path!r} is not a function")
    return function


def of_stage(stage: str) -> tuple[Regularizer, ...]:
    """The regularizers of one stage, in the order training applies them."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return tuple(r for r in REGULARIZERS.values() if r.stage == stage)


REGULARIZERS: dict[str, Regularizer] = {
    r.name: r
    for r in [
        Regularizer(
            "translate", "largest shift s in pixels: each image moves by a whole number of pixels in [-s, s] per axis",
            off=0.0, low=0.0, high=64.0, low_open=False, stage="image", function="classaudit.augment.translate",
            description="Random translation with mirrored borders (pad-and-crop, the usual CIFAR baseline), per image.",
            whole=True,
            example=4,
        ),
        Regularizer(
            "crop", "lower scale bound s of RandomResizedCrop (area fraction kept; aspect 3/4..4/3)",
            off=1.0, low=0.0, high=1.0, low_open=True, stage="image", function="classaudit.augment.crop",
            description="Random-resized crop, per image; 0.08 is the usual ImageNet default.",
            example=0.08,
        ),
        Regularizer(
            "color_jitter", "SimCLR strength s: brightness, contrast, saturation 0.8 s; hue 0.2 s",
            off=0.0, low=0.0, high=2.5, low_open=False, stage="image", function="classaudit.augment.color_jitter",
            description="Colour distortion with factors drawn per image, applied in a random order per image.",
            example=0.5,
        ),
        Regularizer(
            "random_erasing", "probability p that an image gets one erased box (area 2-33%)",
            off=0.0, low=0.0, high=1.0, low_open=False, stage="normalised",
            function="classaudit.augment.random_erasing", rate=True,
            description="Cutout-style random erasing (Zhong et al. 2020), box filled with the data mean.",
            example=0.5,
        ),
        Regularizer(
            "cutmix", "probability p that an image is mixed with a partner; box from lambda ~ Beta(1, 1)",
            off=0.0, low=0.0, high=1.0, low_open=False, stage="batch", function="classaudit.augment.cutmix",
            rate=True,
            description="CutMix (Yun et al. 2019), per image; the label weight is the pasted area after clipping.",
            example=0.5,
        ),
        Regularizer(
            "mixup", "probability p that an image is mixed with a partner; lambda ~ Beta(1, 1)",
            off=0.0, low=0.0, high=1.0, low_open=False, stage="batch", function="classaudit.augment.mixup",
            rate=True,
            description="MixUp (Zhang et al. 2018), per image, with its own lambda.",
            example=0.5,
        ),
        Regularizer(
            "label_smoothing", "epsilon: weight moved from the true label to the uniform distribution",
            off=0.0, low=0.0, high=0.99, low_open=False, stage="loss", function="classaudit.train.cross_entropy",
            description="Label smoothing (Szegedy et al. 2016).",
            example=0.1,
        ),
        Regularizer(
            "weight_decay", "coefficient; coupled (L2 in the gradient) for SGD, decoupled for AdamW",
            off=0.0, low=0.0, high=1.0, low_open=False, stage="optimizer",
            function="classaudit.train.set_weight_decay",
            description="Weight decay; norm and bias parameters are excluded unless train.decay_norm_and_bias.",
            example=0.0005,
        ),
        Regularizer(
            "dropout", "probability p that an activation is zeroed (the others are scaled by 1 / (1 - p))",
            off=0.0, low=0.0, high=1.0, low_open=False, high_open=True, stage="model",
            function="classaudit.models.set_dropout", rate=True,
            description="Dropout (Srivastava et al. 2014) before the head of every model, and in the conv blocks: "
                        "smallcnn after each max-pool, airbench between the two convs of each group, "
                        "cifar_resnet18 between the two convs of each basic block (as wide ResNets); torchvision "
                        "models before the head only.",
            example=0.2,
        ),
        Regularizer(
            "drop_path", "probability p that the last residual block skips its branch; block l of L drops with "
                         "p l / L",
            off=0.0, low=0.0, high=1.0, low_open=False, high_open=True, stage="model",
            function="classaudit.models.set_drop_path", rate=True, models=("cifar_resnet18",),
            needs="residual blocks",
            description="Stochastic depth (Huang et al. 2016), per image, with the linear rule over the residual "
                        "blocks; cifar_resnet18 only.",
            example=0.1,
        ),
        Regularizer(
            "sam", "rho: radius of the neighbourhood whose worst point (to first order) gives the gradient",
            off=0.0, low=0.0, high=1.0, low_open=False, stage="ascent", function="classaudit.train.sam",
            description="Sharpness-aware minimisation (Foret et al. 2021), over train.optimizer (sgd or adamw); "
                        "two forward-backward passes per step.",
            example=0.05,
        ),
        Regularizer(
            "grad_clip", "largest L2 norm of the gradient (all parameters together); larger ones are scaled "
                         "down to it; 0 = no clipping",
            off=0.0, low=0.0, high=1000.0, low_open=False, stage="gradient",
            function="classaudit.train.clip_gradients",
            description="Gradient clipping by global norm, before each optimizer step.",
            example=1.0,
        ),
        Regularizer(
            "epochs", "training length in epochs; each length is its own run with its own schedule",
            off=math.nan, low=1.0, high=10000.0, low_open=False, stage="recipe",
            function="classaudit.config.set_epochs",
            whole=True, timed=False, off_field="train.epochs",
            description="Training length (early stopping's knob); the study's train.epochs is the off point.",
            example=20,
        ),
    ]
}
