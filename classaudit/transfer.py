"""Transfer: a trained run's frozen backbone probed on a downstream task with a linear classifier.

The features are the input of the model's `head` (every model of `classaudit.models` has one), taken in eval mode,
batched, on the training device, for the downstream data set's splits. The probe is a multinomial logistic
regression on standardised features, fitted by full-batch L-BFGS (torch's, with a strong-Wolfe line search) for
each L2 strength of the study's grid, strongest first, each fit starting from the previous one; the strength with
the best mean class accuracy on the downstream validation split is kept (ties: the stronger). Deterministic: no
random draw anywhere. A run's weights are stored with it (`weights_bytes`), so a finished run gains its probe later
without training again (`probe_stored`).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from classaudit.data import Dataset, load_dataset
from classaudit.result import RunResult, SplitPredictions, TransferResult

SPLITS = {"val": "transfer_val", "test": "transfer_test"}  # downstream split -> the split name stored
_DOWNSTREAM: dict[str, Dataset] = {}  # one downstream data set per process, apart from the training data's cache


def downstream_dataset(spec: Mapping[str, Any], data_dir: str | Path | None) -> Dataset:
    key = json.dumps({"spec": dict(spec), "dir": str(data_dir)}, sort_keys=True, default=dict)
    if key not in _DOWNSTREAM:
        _DOWNSTREAM.clear()
        _DOWNSTREAM[key] = load_dataset(spec, data_dir)
    return _DOWNSTREAM[key]


@torch.no_grad()
def features(model: nn.Module, x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, batch_size: int,
             device: torch.device) -> torch.Tensor:
    """The backbone's features [N, d] (what the head sees) of uint8 images, normalised as in pre-training."""
    model.eval()
    seen: list[torch.Tensor] = []
    hook = model.head.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].float()))
    try:
        for i in range(0, x_uint8.shape[0], batch_size):
            x = (x_uint8[i:i + batch_size].to(device).float().div_(255) - mean) / std
            x = x.contiguous(memory_format=torch.channels_last)
            if device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    model(x)
            else:
                model(x)
    finally:
        hook.remove()
    return torch.cat(seen)


def macro_accuracy(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    correct = torch.bincount(y[pred == y], minlength=num_classes).double()
    n = torch.bincount(y, minlength=num_classes).double()
    seen = n > 0
    return float((correct[seen] / n[seen]).mean())


def fit_probe(train_f: torch.Tensor, train_y: torch.Tensor, val_f: torch.Tensor, val_y: torch.Tensor,
              num_classes: int, l2_grid: list[float], max_iter: int):
    """Fit the probe at each L2 strength and keep the one the validation split prefers.
    Returns (predict(features) -> probabilities, {"l2": chosen, "val_accuracy": {l2: mean class accuracy}})."""
    mu = train_f.mean(0)
    sd = train_f.std(0).clamp_min(1e-6)
    xtr, xva = (train_f - mu) / sd, (val_f - mu) / sd
    weight = torch.zeros(xtr.shape[1], num_classes, device=xtr.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=xtr.device, requires_grad=True)
    fits, scores = {}, {}
    for l2 in sorted(l2_grid, reverse=True):  # strongest first: each fit warm-starts the next, weaker one
        opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter, history_size=20,
                                tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

        def closure(l2=l2):
            opt.zero_grad()
            loss = F.cross_entropy(xtr @ weight + bias, train_y) + 0.5 * l2 * weight.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        fits[l2] = (weight.detach().clone(), bias.detach().clone())
        with torch.no_grad():
            scores[l2] = macro_accuracy((xva @ weight + bias).argmax(1), val_y, num_classes)
    best = max(scores.values())
    chosen = max(l2 for l2, score in scores.items() if score >= best - 1e-12)  # ties: the stronger L2
    w, b = fits[chosen]

    def predict(f: torch.Tensor) -> torch.Tensor:
        return (((f - mu) / sd) @ w + b).softmax(1)

    return predict, {"l2": chosen, "val_accuracy": {f"{l2:g}": scores[l2] for l2 in sorted(scores)}}


def probe(model: nn.Module, mean: torch.Tensor, std: torch.Tensor, transfer: Mapping[str, Any], *,
          data_dir: str | Path | None, device: torch.device, batch_size: int = 1024) -> TransferResult:
    """Probe a trained model on the downstream task `transfer` ({"id", "spec"}: the resolved [transfer] table)."""
    t0 = time.perf_counter()
    spec = transfer["spec"]
    data = downstream_dataset(spec["dataset"], data_dir)
    with torch.no_grad():
        feats = {s: features(model, data.split(s)[0], mean, std, batch_size, device) for s in ("train", "val", "test")}
    ys = {s: data.split(s)[1].to(device) for s in ("train", "val", "test")}
    t1 = time.perf_counter()
    with torch.enable_grad():
        predict, chosen = fit_probe(feats["train"], ys["train"], feats["val"], ys["val"], data.num_classes,
                                    list(spec["probe"]["l2"]), int(spec["probe"]["max_iter"]))
    splits = {}
    with torch.no_grad():
        for split, stored in SPLITS.items():
            prob = predict(feats[split])
            y = ys[split]
            splits[stored] = SplitPredictions(
                label=y.cpu().numpy().astype(np.int64), pred=prob.argmax(1).cpu().numpy().astype(np.int64),
                p_true=prob.gather(1, y[:, None]).squeeze(1).cpu().numpy().astype(np.float32))
    t2 = time.perf_counter()
    return TransferResult(transfer_id=transfer["id"], spec=json.loads(json.dumps(spec)),
                          class_names=list(data.class_names), splits=splits, probe=chosen,
                          timings={"feature_seconds": t1 - t0, "fit_seconds": t2 - t1, "feature_dim":
                                   int(feats["train"].shape[1])})


def weights_bytes(model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> bytes:
    """The trained model and its input statistics as torch.save bytes of tensors only (read with
    weights_only=True: nothing is unpickled)."""
    buffer = io.BytesIO()
    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "mean": mean.detach().cpu(), "std": std.detach().cpu(), "num_classes": int(model.head.out_features),
                "in_channels": int(mean.shape[1])}, buffer)
    return buffer.getvalue()


def train_and_probe(task) -> RunResult:
    """A run of a study with a [transfer] table: train it (classaudit.train), keep its weights, probe it."""
    from classaudit.executors.base import execute_task
    from classaudit.train import resolve_device

    device = resolve_device(task.device)
    kept: dict[str, Any] = {}

    def on_trained(model, mean, std):
        kept["weights"] = weights_bytes(model, mean, std)
        kept["transfer"] = probe(model, mean, std, task.transfer, data_dir=task.data_dir, device=device,
                                 batch_size=task.config["train"]["eval_batch_size"])

    result = execute_task(task, on_trained=on_trained)
    result.weights, result.transfer = kept["weights"], kept["transfer"]
    return result


def probe_only(task) -> RunResult:
    """The RunResult of a probe of a stored run: no splits of its own (the run's are stored), only the probe."""
    return RunResult(run_id=task.run_id, config=dict(task.config), class_names=[], splits={},
                     transfer=probe_stored(task))


def probe_stored(task) -> TransferResult:
    """The probe of a finished run from its stored weights (task.transfer["weights"]), without training."""
    from classaudit.models import build_model
    from classaudit.train import resolve_device

    if task.threads:
        torch.set_num_threads(task.threads)
    device = resolve_device(task.device)
    state = torch.load(task.transfer["weights"], map_location="cpu", weights_only=True)
    config = task.config
    spec = dict(config["model"])
    if "pretrained" in spec.get("options", {}):  # the stored weights replace them: nothing to download
        spec["options"] = {**spec["options"], "pretrained": False}
    model = build_model(spec, state["num_classes"], state["in_channels"])
    model.load_state_dict(state["model"])
    model = model.to(device, memory_format=torch.channels_last)
    return probe(model, state["mean"].to(device), state["std"].to(device), task.transfer, data_dir=task.data_dir,
                 device=device, batch_size=config["train"]["eval_batch_size"])
