"""Training: `train_one(config) -> RunResult`, one run from its resolved config. It writes nothing but its own
checkpoint, when given a path for one (the store alone writes results).

Device-agnostic: the whole data set is moved to the device once as uint8; every batch is augmented there with
per-sample randomness from one torch.Generator seeded by the run's seed, so the same run on the same machine
gives the same result. On CUDA the model runs channels_last under bf16 autocast. The module is longer than 500
lines because one run's whole path (data, the loop, checkpoints, each stage's regularizers, evaluation) reads here.
"""

from __future__ import annotations

import json
import math
import platform
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from classaudit import augment
from classaudit.atomic import atomic_open
from classaudit.classwise import ByClass, class_strengths, class_weights, quiet
from classaudit.data import Dataset, load_dataset
from classaudit.errors import UsageError
from classaudit.models import build_model, freeze_backbone, train_mode
from classaudit.regularizers import of_stage
from classaudit.result import RunResult, SplitPredictions

_DATASETS: dict[str, Dataset] = {}  # one loaded data set per process: a sweep trains many runs on the same one


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_device(device: str, here: bool) -> None:
    """Raise a UsageError naming --device if `device` is not a torch device, or (`here`: runs train on this
    machine) if this machine does not have it. On a cluster only the spelling can be checked from here."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {device!r}: not a torch device; allowed: auto, cpu, cuda, cuda:N, mps, "
                         "or another torch device type") from None
    if not here:
        return
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            raise UsageError(f"--device {device!r}: this machine has {count} CUDA device(s); use --device cpu, "
                             "or auto (CUDA when there is one, else the CPU)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device!r}: MPS is not available on this machine; use --device cpu or auto")


def get_dataset(spec: Mapping[str, Any], data_dir: str | Path | None = None) -> Dataset:
    key = json.dumps({"spec": dict(spec), "dir": str(data_dir)}, sort_keys=True, default=dict)
    if key not in _DATASETS:
        _DATASETS.clear()
        _DATASETS[key] = load_dataset(spec, data_dir)
    return _DATASETS[key]


def train_one(
    config: Mapping[str, Any],
    *,
    run_id: str = "",
    data_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
    checkpoint: str | Path | None = None,
    on_trained: Callable[[nn.Module, torch.Tensor, torch.Tensor], None] | None = None,
) -> RunResult:
    """Train and evaluate one run. `config` is a resolved run config (`classaudit.config.resolve`).

    Writes nothing, unless `checkpoint` names a file: then the full training state is saved there after every
    epoch, and a run that finds the file resumes from it, so a pre-empted job continues mid-run and ends with
    exactly the result of an uninterrupted one. The file holds tensors and plain numbers only and is read with
    torch.load(weights_only=True): nothing is unpickled. `on_trained(model, mean, std)`, when given, sees the
    trained model (in eval mode) and the channel statistics its inputs are normalised with (a downstream probe).
    """
    t_start = time.perf_counter()
    device = resolve_device(device)
    train_cfg, regs, seed = config["train"], config["regularizers"], int(config["seed"])
    data = get_dataset(config["dataset"], data_dir)
    t_data = time.perf_counter()
    data_dev = data.to(device)
    torch.manual_seed(seed)  # model initialisation
    # channels_last is faster for convolutions on CUDA and, with oneDNN, on CPU too (1.4x measured here).
    model = build_model(config["model"], data.num_classes, data.shape[0]).to(device, memory_format=torch.channels_last)
    g = torch.Generator(device=device).manual_seed(seed)
    mean, std = _channel_stats(data.train_x, device)
    n = data_dev.train_x.shape[0]
    if hasattr(model, "init_from_data"):  # data-dependent initialisation (airbench's whitening stem)
        # an even stride over the training set: it is sorted by class, and every class should shape the stem
        sample = data_dev.train_x[::max(n // 5000, 1)]
        model.init_from_data((sample.float() / 255 - mean) / std)

    epochs, finetune = train_cfg["epochs"], train_cfg["finetune_epochs"]
    total_epochs = epochs + finetune
    bs = min(train_cfg["batch_size"], n)
    steps_per_epoch = n // bs  # drop the last partial batch: a batch of one breaks BatchNorm
    optimizer = _optimizer(model, train_cfg)
    schedule = _schedule(optimizer, train_cfg, steps_per_epoch * total_epochs)
    per_class = class_strengths(regs, data.class_names, device)
    weighting = train_cfg.get("class_weights")  # absent in runs without class reweighting
    # Per class: [images right, images seen] on the training batches of the epoch, for the adaptive weights.
    tally = torch.zeros(2, data.num_classes, device=device) if weighting == "clam" else None

    curve: list[dict[str, float]] = []
    first_epoch = 0
    state = _load_checkpoint(Path(checkpoint), model, g) if checkpoint is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        g.set_state(state["generator"].cpu())  # generator states are CPU byte tensors, whatever the device
        first_epoch, curve = int(state["epoch"]), list(state["curve"])
        if tally is not None:
            tally = state["class_tally"].to(device)
    t_train = time.perf_counter()
    for epoch in range(first_epoch, total_epochs):
        t_epoch = time.perf_counter()
        if finetune and epoch >= epochs:
            freeze_backbone(model)  # second stage: only the head learns
        active = active_regularizers(regs, epoch)
        # Set each epoch, with the off value while a regularizer is not on yet; also after loading a checkpoint,
        # which replaces the optimizer's group dicts.
        for reg in of_stage("optimizer"):
            reg.implementation(optimizer, active.get(reg.name, reg.off))
        for reg in of_stage("model"):
            reg.implementation(model, active.get(reg.name, reg.off), g)
        train_mode(model)
        weights = class_weights(weighting, tally, data.class_names, device)
        if tally is not None:
            tally.zero_()
        perm = torch.randperm(n, generator=g, device=device)
        loss_sum = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            idx = perm[step * bs:(step + 1) * bs]
            y = data_dev.train_y[idx]
            x, target = augment_batch(data_dev.train_x[idx], y, data.num_classes, active,
                                      mean, std, g, flip=train_cfg["flip"], per_class=per_class)
            loss = train_step(model, optimizer, x, target, active, device,
                              by_class=ByClass(y, per_class, weights, tally) if per_class or weighting else None)
            schedule.step()
            loss_sum += loss.detach()
        curve.append({"epoch": epoch + 1, "train_loss": float(loss_sum) / max(steps_per_epoch, 1),
                      "lr": schedule.get_last_lr()[0], "seconds": time.perf_counter() - t_epoch})
        if checkpoint is not None and not _save_checkpoint(Path(checkpoint), {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "generator": g.get_state(), "epoch": epoch + 1, "curve": curve,
                **({"class_tally": tally} if tally is not None else {})}):
            checkpoint = None
        if on_epoch is not None:
            on_epoch(epoch + 1, total_epochs)
    t_eval = time.perf_counter()
    splits = {s: evaluate(model, *data_dev.split(s), mean, std, train_cfg["eval_batch_size"], device,
                          tta=train_cfg["tta"])
              for s in ("val", "test") if data_dev.split(s)[0].shape[0]}
    t_end = time.perf_counter()
    if on_trained is not None:  # after the clock: the probe keeps its own time
        on_trained(model, mean, std)
    return RunResult(
        run_id=run_id,
        config=json.loads(json.dumps(config, default=dict)),
        class_names=list(data.class_names),
        splits=splits,
        curve=curve,
        timings={"data_seconds": t_data - t_start, "train_seconds": t_eval - t_train,
                 "eval_seconds": t_end - t_eval, "total_seconds": t_end - t_start,
                 "train_images_per_second": steps_per_epoch * bs * (total_epochs - first_epoch)
                 / max(t_eval - t_train, 1e-9), "resumed_at_epoch": first_epoch},
        environment=environment(device),
    )


# What a process holds on a CUDA device beside its tensors: its CUDA context and cuDNN's and cuBLAS's
# workspaces (300-600 MiB with recent drivers; the larger figure, so that a fit is one that runs).
CUDA_PROCESS_BYTES = 600 * 2**20
# Compared exactly by the tests.
DOES_NOT_FIT = ("option --runs-per-device: value {runs} does not fit on {device}: {runs} runs need about "
                "{need:.1f} GiB ({each:.2f} GiB each: a training step's and an evaluation batch's peak, measured, and "
                "the process's CUDA context), {free:.1f} GiB are free; {fix}")


def check_runs_fit(config: Mapping[str, Any], runs: int, devices: list[str],
                   data_dir: str | Path | None = None) -> None:
    """Raise a UsageError naming --runs-per-device if `runs` runs of `config` at once do not fit in the free
    memory of each CUDA device in `devices` (other devices are not checked). One run's need is measured here:
    the peak of one training step, with every regularizer of the run on, and of one evaluation batch."""
    cuda = [torch.device(d) for d in devices if torch.device(d).type == "cuda"]
    if not cuda:
        return
    each = peak_memory(config, cuda[0], data_dir) + CUDA_PROCESS_BYTES
    problems = [fit_problem(runs, str(d), each, torch.cuda.mem_get_info(d)[0]) for d in cuda]
    if any(problems):
        raise UsageError("\n".join(p for p in problems if p))


def fit_problem(runs: int, device: str, each: int, free: int) -> str | None:
    """Why `runs` runs needing `each` bytes do not fit in `free` bytes of `device`; None if they do."""
    if runs * each <= free:
        return None
    fit = free // each
    return DOES_NOT_FIT.format(runs=runs, device=device, need=runs * each / 2**30, each=each / 2**30,
                               free=free / 2**30, fix=f"give at most {fit}" if fit else "not even one run fits")


def peak_memory(config: Mapping[str, Any], device: torch.device, data_dir: str | Path | None = None) -> int:
    """Bytes a run of `config` holds at its peak on CUDA device `device`: its data, model and optimizer state,
    one training step with all of the run's regularizers on, and one evaluation batch."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    train_cfg = config["train"]
    data = get_dataset(config["dataset"], data_dir)
    data_dev = data.to(device)
    model = build_model(config["model"], data.num_classes, data.shape[0]).to(device, memory_format=torch.channels_last)
    g = torch.Generator(device=device).manual_seed(0)
    mean, std = _channel_stats(data.train_x, device)
    active = active_regularizers(config["regularizers"], 10**9)
    for reg in of_stage("model"):
        reg.implementation(model, active.get(reg.name, reg.off), g)
    optimizer = _optimizer(model, train_cfg)
    idx = torch.arange(min(train_cfg["batch_size"], data_dev.train_x.shape[0]), device=device)
    train_mode(model)
    x, target = augment_batch(data_dev.train_x[idx], data_dev.train_y[idx], data.num_classes, active, mean, std, g,
                              flip=train_cfg["flip"])
    train_step(model, optimizer, x, target, active, device)
    x_test, y_test = data_dev.split("test")
    evaluate(model, x_test[:train_cfg["eval_batch_size"]], y_test[:train_cfg["eval_batch_size"]], mean, std,
             train_cfg["eval_batch_size"], device, tta=train_cfg["tta"])
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del data_dev, model, optimizer, x, target
    torch.cuda.empty_cache()  # hand the memory back before the runs start
    return peak


def active_regularizers(regs: Mapping[str, Mapping[str, Any]], epoch: int) -> dict[str, float]:
    """{name: strength} of the regularizers switched on at this (0-based) epoch."""
    return {name: r["strength"] for name, r in regs.items() if epoch >= r["start_epoch"]}


def _load_checkpoint(path: Path, model: nn.Module, generator: torch.Generator) -> dict[str, Any] | None:
    """The saved training state, or None to start from epoch 0: when there is none, and when it cannot be
    used (truncated, saved by a model of other shapes, or on another kind of device, whose generator state
    differs), which is then removed with a warning, so that the run starts over instead of failing the same
    way on every sweep. Read onto the CPU: the load_state_dict calls copy each tensor to where its parameter
    lives."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        saved = {k: tuple(v.shape) for k, v in state["model"].items()}
        if saved != expected:
            raise ValueError("it was saved by a model with other layers")
        if state["generator"].numel() != generator.get_state().numel():
            raise ValueError("it was saved on another kind of device")
        return state
    except Exception as e:  # noqa: BLE001 - whatever is wrong with the file, the remedy is the same
        warnings.warn(f"{path}: cannot resume from this checkpoint ({type(e).__name__}: {e}); the run starts "
                      "over from epoch 0", RuntimeWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        return None


def _save_checkpoint(path: Path, state: dict[str, Any]) -> bool:
    """Save atomically and durably (a kill or power loss mid-save leaves the previous epoch's file). A
    checkpoint is a convenience: where it cannot be written (a worker node without the shared folder) the run
    goes on without, with a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as f:
            torch.save(state, f)
    except OSError as e:
        warnings.warn(f"{path}: cannot write the checkpoint ({e.strerror or e}); this run continues without "
                      "mid-run resume", RuntimeWarning, stacklevel=2)
        return False
    return True


def augment_batch(x_uint8: torch.Tensor, y: torch.Tensor, num_classes: int, active: Mapping[str, float],
                  mean: torch.Tensor, std: torch.Tensor, g: torch.Generator, *, flip: bool = True,
                  per_class: Mapping[str, torch.Tensor] | None = None):
    """uint8 batch -> (normalised float batch, target). Target is the label tensor, or soft [N, K] targets
    once a batch regularizer (CutMix, MixUp) is on. The order is the usual one: geometry and colour on [0, 1]
    pixels, then normalisation, then erasing and mixing; within a stage, the registry's order.

    `per_class` ({name: strength of each class}, `class_strengths`) gives each image its class's strength once
    the regularizer is on; an image whose strength is off leaves the regularizer exactly as it came (an exempt
    class's images are never changed by it, nor, for CutMix and MixUp, their targets; they may still be pasted
    or mixed into other images as partners)."""
    per_class = per_class or {}

    def strength(reg):
        if reg.name in active and reg.name in per_class:
            return per_class[reg.name][y]
        return active.get(reg.name, reg.off)

    def keep_off(s, off, before, after):  # the images whose own strength is off stay as they came, bit for bit
        return after if not isinstance(s, torch.Tensor) else torch.where(
            (s == off).view(-1, *[1] * (after.ndim - 1)), before, after)

    if flip:  # on the uint8 pixels: the same numbers, a quarter of the memory traffic
        x_uint8 = augment.flip(x_uint8, g)
    x = x_uint8.float().div_(255)
    for reg in of_stage("image"):
        s = strength(reg)
        x = keep_off(s, reg.off, x, reg.implementation(x, s, g))
    x = (x - mean) / std
    for reg in of_stage("normalised"):
        s = strength(reg)
        x = keep_off(s, reg.off, x, reg.implementation(x, s, g))
    target: torch.Tensor = y
    mixing = of_stage("batch")
    if any(active.get(reg.name, reg.off) != reg.off for reg in mixing):
        target = augment.one_hot(y, num_classes)
        for reg in mixing:
            s = strength(reg)
            mixed, mixed_target = reg.implementation(x, target, s, g)
            x, target = keep_off(s, reg.off, x, mixed), keep_off(s, reg.off, target, mixed_target)
    return x, target


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor,
               active: Mapping[str, float], device: torch.device, by_class: ByClass | None = None) -> torch.Tensor:
    """One optimizer step on a batch: forward, backward, then the ascent and gradient stages' regularizers
    (SAM's second pass, gradient clipping), then the step. Returns the loss of the first forward pass.
    `by_class`: the labels and tables of a run that treats classes differently (`ByClass`)."""
    def forward_backward(first: bool = False) -> torch.Tensor:
        loss = _loss(model, x, target, active, device, by_class if first else quiet(by_class))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    loss = forward_backward(first=True)
    for reg in of_stage("ascent"):
        reg.implementation(model, forward_backward, active.get(reg.name, reg.off))
    for reg in of_stage("gradient"):
        reg.implementation(model, active.get(reg.name, reg.off))
    optimizer.step()
    return loss


def _loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor, active: Mapping[str, float],
          device: torch.device, by_class: ByClass | None = None) -> torch.Tensor:
    (reg,) = of_stage("loss")  # the loss stage's one regularizer computes the loss
    logits = _logits(model, x, device)
    strength = active.get(reg.name, reg.off)
    if by_class is None:
        return reg.implementation(logits, target, strength)
    by_class.count(logits)
    if reg.name in active and reg.name in by_class.strengths:
        strength = by_class.strengths[reg.name][by_class.labels]
    if by_class.weights is None:
        return reg.implementation(logits, target, strength)
    return (reg.implementation(logits, target, strength, reduction="none")
            * by_class.weights[by_class.labels]).mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing, reduction: str = "mean") -> torch.Tensor:
    """Cross entropy with label smoothing epsilon (Szegedy et al. 2016); 0 is the plain cross entropy. Takes
    class indices or soft targets (after CutMix), and smooths either. `smoothing` is one number, or a tensor
    [N] of one epsilon per image, which F.cross_entropy does not take: then the smoothed targets are formed
    here, as F.cross_entropy forms them, (1 - eps) target + eps / K."""
    if isinstance(smoothing, torch.Tensor):
        k = logits.shape[1]
        soft = target if target.is_floating_point() else F.one_hot(target, k).to(logits.dtype)
        eps = smoothing.to(logits.dtype).view(-1, 1)
        loss = -((soft * (1 - eps) + eps / k) * logits.log_softmax(1)).sum(1)
        return loss.mean() if reduction == "mean" else loss
    return F.cross_entropy(logits, target, label_smoothing=smoothing, reduction=reduction)


def set_weight_decay(optimizer: torch.optim.Optimizer, coefficient: float) -> None:
    """Weight decay of the optimizer's group 0, which holds the decayed weights (`_optimizer`)."""
    optimizer.param_groups[0]["weight_decay"] = coefficient


def sam(model: nn.Module, closure: Callable[[], torch.Tensor], rho: float) -> None:
    """Sharpness-aware minimisation (Foret et al. 2021): with the gradient g of the batch's loss in the
    parameters' .grad, move the weights to w + rho g / ||g|| (the worst point of the rho-ball to first order),
    recompute the gradient there with `closure`, and move the weights back, so that the optimizer steps from w
    with the gradient of the perturbed point. Two forward-backward passes per step; any base optimizer (SGD,
    AdamW) then takes its step, weight decay included. The norm is over all parameters together. The second
    pass leaves the BatchNorm running statistics as the first pass left them, so each step updates them once,
    from the weights it steps from. rho = 0 does nothing."""
    if rho <= 0:
        return
    params = [p for p in model.parameters() if p.grad is not None]
    grads = [p.grad for p in params]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    saved_params = [p.detach().clone() for p in params]
    saved_buffers = [b.clone() for b in model.buffers()]
    with torch.no_grad():
        scale = rho / (norm + 1e-12)
        for p, g in zip(params, grads):
            p.add_(g * scale)
    closure()
    with torch.no_grad():  # restored by copying, not by subtracting: w + e - e need not be w in floating point
        for p, saved in zip(params, saved_params):
            p.copy_(saved)
        for b, saved in zip(model.buffers(), saved_buffers):
            b.copy_(saved)


def clip_gradients(model: nn.Module, max_norm: float) -> None:
    """Gradient clipping: scale the gradient down to L2 norm max_norm (over all parameters together) when it
    is larger (torch.nn.utils.clip_grad_norm_). max_norm = 0 does nothing."""
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm)


def _logits(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return model(x).float()
    return model(x).float()


def _tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views whose logits are averaged: the image; its mirror ("flip"); and both shifted by one pixel
    up-left and down-right with edge padding ("flip_translate", as airbench's test-time augmentation)."""
    views = [x] if tta == "none" else [x, x.flip(3)]
    if tta == "flip_translate":
        padded = F.pad(torch.cat(views), (1, 1, 1, 1), mode="replicate")
        h, w = x.shape[2:]
        views += list(padded[:, :, :h, :w].chunk(2)) + list(padded[:, :, 2:, 2:].chunk(2))
    return views


@torch.no_grad()
def evaluate(model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, mean, std, batch_size: int,
             device: torch.device, tta: str = "none") -> SplitPredictions:
    model.eval()
    preds, p_true = [], []
    for i in range(0, x_all.shape[0], batch_size):
        x = (x_all[i:i + batch_size].float().div_(255) - mean) / std
        views = _tta_views(x, tta)
        logits = sum(_logits(model, v, device) for v in views) / len(views)
        prob = logits.softmax(1)
        preds.append(prob.argmax(1))
        p_true.append(prob.gather(1, y_all[i:i + batch_size, None]).squeeze(1))
    return SplitPredictions(
        label=y_all.cpu().numpy().astype(np.int64),
        pred=torch.cat(preds).cpu().numpy().astype(np.int64),
        p_true=torch.cat(p_true).cpu().numpy().astype(np.float32),
    )


def _channel_stats(x: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the training images in [0, 1], computed in chunks in float64."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for i in range(0, x.shape[0], 4096):
        chunk = x[i:i + 4096].double().div_(255)
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += chunk.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return (mean.float().view(1, -1, 1, 1).to(device), std.float().view(1, -1, 1, 1).to(device))


def _optimizer(model: nn.Module, cfg: Mapping[str, Any]):
    """SGD (coupled weight decay, i.e. L2 in the gradient) or AdamW (decoupled). Weight decay goes only to the
    weights of conv and linear layers unless decay_norm_and_bias: decaying BatchNorm scales and biases is known
    to hurt, and it is what most recipes do. Returns the optimizer; its param group 0 holds the weights whose decay is swept."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 or cfg["decay_norm_and_bias"] else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": 0.0}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if cfg["optimizer"] == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"],
                              nesterov=cfg["nesterov"] and cfg["momentum"] > 0)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=(cfg["momentum"], 0.999))
    return opt


def _schedule(optimizer, cfg: Mapping[str, Any], total_steps: int):
    """Learning-rate multiplier per step: one-cycle (linear up over warmup_fraction, linear down to 0), cosine
    (linear warm-up, then cosine to 0) or constant."""
    warm = max(int(round(cfg["warmup_fraction"] * total_steps)), 0)

    def factor(step: int) -> float:
        if cfg["schedule"] == "constant":
            return 1.0
        if step < warm:
            return (step + 1) / warm
        rest = max(total_steps - warm, 1)
        t = min((step - warm) / rest, 1.0)
        return 1.0 - t if cfg["schedule"] == "onecycle" else 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def environment(device: torch.device) -> dict[str, Any]:
    import torchvision

    from classaudit import __version__

    env = {"classaudit": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "device": str(device), "threads": torch.get_num_threads(),
           "platform": platform.platform()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
