"""Treating classes differently in training: each class's strength of a regularizer (an axis' exempt and
class_strength) and each class's weight on the loss (fixed, or CLAM's adaptive weights), for the class-conditional
remedies of `classaudit remedy`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch

from classaudit.errors import UsageError


def class_strengths(regs: Mapping[str, Mapping[str, Any]], class_names, device) -> dict[str, torch.Tensor]:
    """{name: strength of each class [K]} of the regularizers whose run gives some classes their own strength
    (an axis' exempt and class_strength); the others' classes share the run's strength."""
    index = {name: k for k, name in enumerate(class_names)}
    tables = {}
    for name, r in regs.items():
        if r.get("class_strength"):
            unknown = sorted(set(r["class_strength"]) - set(index))
            if unknown:  # the study checks the names of the data sets it knows; this catches the others
                raise UsageError(f"regularizer {name}: class_strength names {', '.join(map(json.dumps, unknown))}, "
                                 f"which the data set does not have; its classes: {', '.join(class_names)}")
            table = torch.full((len(class_names),), float(r["strength"]))
            for cls, strength in r["class_strength"].items():
                table[index[cls]] = float(strength)
            tables[name] = table.to(device)
    return tables


def class_weights(weighting: Any, tally: torch.Tensor | None, class_names, device) -> torch.Tensor | None:
    """Each class's weight on the loss this epoch, mean 1 over the classes, or None (every image counts once).

    "clam": adaptive, as CLAM (Jiang, Ban & Weng 2025): proportional to exp(-accuracy) of the class on the
    previous epoch's training batches, so the classes the model fits worse weigh more; the first epoch is
    unweighted. A mapping {class name: weight}: fixed weights, normalised to mean 1."""
    if not weighting:
        return None
    if weighting == "clam":
        if tally is None or not bool(tally[1].sum()):
            return None
        accuracy = tally[0] / tally[1].clamp_min(1)
        weights = torch.exp(-accuracy)
    else:
        unknown = sorted(set(weighting) - set(class_names))
        if unknown:  # the study checks the names of the data sets it knows; this catches the others
            raise UsageError(f"train.class_weights names {', '.join(map(json.dumps, unknown))}, which the data set "
                             f"does not have; its classes: {', '.join(class_names)}")
        weights = torch.tensor([float(weighting.get(name, 1.0)) for name in class_names], device=device)
    return weights / weights.mean()


class ByClass:
    """What the loss needs to treat each image by its class: the batch's labels (before any mixing), the
    regularizers' per-class strengths, the classes' loss weights (or None), and the tally of right answers
    per class that adaptive weights are computed from (or None)."""

    def __init__(self, labels: torch.Tensor, strengths: Mapping[str, torch.Tensor], weights: torch.Tensor | None,
                 tally: torch.Tensor | None):
        self.labels, self.strengths, self.weights, self.tally = labels, strengths, weights, tally

    def count(self, logits: torch.Tensor) -> None:
        if self.tally is not None:
            right = (logits.detach().argmax(1) == self.labels).to(self.tally.dtype)
            self.tally[0].index_add_(0, self.labels, right)
            self.tally[1].index_add_(0, self.labels, torch.ones_like(right))


def quiet(by_class: ByClass | None) -> ByClass | None:
    """The same, without the tally: a second pass (SAM's) must not count the batch again."""
    return by_class and ByClass(by_class.labels, by_class.strengths, by_class.weights, None)
