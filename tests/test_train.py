"""Training: determinism, mid-run resume from a checkpoint, weight decay groups, label smoothing, timing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from classaudit.config import expand, parse_study, resolve
from classaudit.regularizers import REGULARIZERS
from tests.conftest import TINY_STUDY
from classaudit.train import _optimizer, _schedule, active_regularizers, train_one


def tiny_config(sweep=None, width=4, **train):
    study = parse_study({
        "study": {"name": "t", "seeds": [0]},
        "dataset": {"name": "shapes", "val_fraction": 0.2,
                    "options": {"n_train_per_class": 12, "n_test_per_class": 4, "size": 16}},
        "model": {"name": "smallcnn", "options": {"width": width}},
        "train": {"epochs": 2, "batch_size": 32, **train},
        "sweep": sweep or {"cutmix": {"strengths": [0.5]}, "label_smoothing": {"strengths": [0.1]}},
    })
    return [r for r in expand(study) if r.config["regularizers"]][0].config


def test_same_config_same_result():
    a, b = train_one(tiny_config()), train_one(tiny_config())
    assert np.array_equal(a.splits["test"].pred, b.splits["test"].pred)
    assert np.array_equal(a.splits["test"].p_true, b.splits["test"].p_true)


@pytest.mark.parametrize("sweep", [None, {"weight_decay": {"strengths": [0.5], "start_epoch": 2}},
                                   {"dropout": {"strengths": [0.3], "start_epoch": 1}},
                                   {"color_jitter": {"strengths": [1.0], "exempt": ["red", "green"],
                                                     "class_weights": "clam"}},
                                   {"label_smoothing": {"strengths": [0.2], "class_strength": {"red": 0.0}}}],
                         ids=["cutmix", "weight_decay_from_epoch_2", "dropout_from_epoch_1", "exempt_and_class_weights",
                              "label_smoothing_per_class"])
def test_resume_from_checkpoint_equals_uninterrupted(tmp_path, sweep):
    """Also when a regularizer switches on at the epoch the run resumes at (weight decay lives in the
    optimizer's parameter group, which loading the optimizer's state replaces), and with adaptive class weights
    (computed from the last epoch's tally, which the checkpoint keeps)."""
    config = tiny_config(sweep, epochs=3)
    whole = train_one(config)
    ckpt = tmp_path / "run.pt"

    class Preempted(Exception):
        pass

    def stop_after_two(epoch, total):
        if epoch == 2:
            raise Preempted

    with pytest.raises(Preempted):
        train_one(config, checkpoint=ckpt, on_epoch=stop_after_two)
    assert ckpt.exists()
    resumed = train_one(config, checkpoint=ckpt)
    assert resumed.timings["resumed_at_epoch"] == 2
    assert [c["train_loss"] for c in resumed.curve] == [c["train_loss"] for c in whole.curve]
    assert np.array_equal(resumed.splits["test"].p_true, whole.splits["test"].p_true)


@pytest.mark.parametrize("damage", ["truncated", "other_model", "other_device"])
def test_a_checkpoint_that_cannot_be_used_is_removed_and_the_run_starts_over(tmp_path, damage):
    config = tiny_config()
    ckpt = tmp_path / "run.pt"
    if damage == "truncated":
        ckpt.write_bytes(b"")
    elif damage == "other_model":  # left by a run of a wider model under the same name
        train_one(tiny_config(width=8, epochs=1), checkpoint=ckpt)
    else:  # saved on a GPU (a CUDA generator's state is 16 bytes), resumed on a CPU
        train_one(tiny_config(epochs=1), checkpoint=ckpt)
        state = torch.load(ckpt, weights_only=True)
        state["generator"] = torch.zeros(16, dtype=torch.uint8)
        torch.save(state, ckpt)
    with pytest.warns(RuntimeWarning, match="cannot resume from this checkpoint .*; the run starts over"):
        result = train_one(config, checkpoint=ckpt)
    assert result.timings["resumed_at_epoch"] == 0
    assert np.array_equal(result.splits["test"].p_true, train_one(config).splits["test"].p_true)


def test_torchvision_classifier_takes_grey_images():
    from classaudit.models import build_model

    model = build_model({"name": "resnet18"}, num_classes=10, in_channels=1).eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name, expected", [
    # 10 steps, warm-up 0.2 = 2 steps: up linearly, then down to 0 linearly (onecycle) or along a cosine.
    ("onecycle", [0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]),
    ("cosine", [0.5, 1.0] + [0.5 * (1 + np.cos(np.pi * k / 8)) for k in range(8)]),
    ("constant", [1.0] * 10),
])
def test_learning_rate_schedules(name, expected):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = _schedule(optimizer, {"schedule": name, "warmup_fraction": 0.2}, total_steps=10)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"] / 2.0)
        optimizer.step()
        schedule.step()
    assert seen == pytest.approx(expected)


def test_cifar_resnet18_shapes():
    from classaudit.models import build_model

    model = build_model({"name": "cifar_resnet18", "options": {"width": 8}}, num_classes=10, in_channels=3)
    assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_finetune_stage_trains_only_the_head():
    result = train_one(tiny_config(epochs=1, finetune_epochs=1))
    assert len(result.curve) == 2


def test_a_frozen_backbone_keeps_its_batchnorm_statistics():
    from classaudit.models import build_model, freeze_backbone, train_mode

    model = build_model({"name": "smallcnn", "options": {"width": 4}}, num_classes=3, in_channels=3)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    train_mode(model)
    model(torch.rand(8, 3, 16, 16))
    before = [m.running_mean.clone() for m in norms]
    assert not all(torch.equal(b, torch.zeros_like(b)) for b in before)  # not frozen yet: statistics moved
    freeze_backbone(model)
    train_mode(model)
    model(torch.rand(8, 3, 16, 16) + 1)
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, norms))
    assert model.head.training and not any(m.training for m in norms)
    assert [p.requires_grad for p in model.parameters()].count(True) == len(list(model.head.parameters()))


def test_weight_decay_goes_to_weights_only_unless_asked():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    cfg = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "decay_norm_and_bias": False}
    opt = _optimizer(model, cfg)
    assert {p.ndim for p in opt.param_groups[0]["params"]} == {2, 4}  # conv and linear weights
    assert all(p.ndim == 1 for p in opt.param_groups[1]["params"])  # norm scales and biases
    opt = _optimizer(model, {**cfg, "decay_norm_and_bias": True})
    assert len(opt.param_groups) == 1


# Gradient 2, lr 0.1, decay 0.5, weight 1. SGD (coupled): w -= lr * (2 + 0.5 w) = 0.75. AdamW (decoupled):
# w -= lr * 0.5 w, then Adam's first step moves by lr whatever the gradient's size: 1 - 0.05 - 0.1 = 0.85.
@pytest.mark.parametrize("optimizer, expected", [("sgd", 0.75), ("adamw", 0.85)])
def test_weight_decay_coupled_for_sgd_decoupled_for_adamw(optimizer, expected):
    w = torch.nn.Parameter(torch.ones(2, 2))
    model = torch.nn.Module()
    model.w = w
    cfg = {"optimizer": optimizer, "lr": 0.1, "momentum": 0.0 if optimizer == "sgd" else 0.9, "nesterov": False,
           "decay_norm_and_bias": False}
    opt = _optimizer(model, cfg)
    opt.param_groups[0]["weight_decay"] = 0.5
    w.grad = torch.full_like(w, 2.0)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((2, 2), expected))


def test_active_regularizers_respect_start_epoch():
    regs = {"crop": {"strength": 0.08, "start_epoch": 2}, "weight_decay": {"strength": 5e-4, "start_epoch": 0}}
    assert active_regularizers(regs, 0) == {"weight_decay": 5e-4}
    assert active_regularizers(regs, 2) == {"crop": 0.08, "weight_decay": 5e-4}


def test_label_smoothing_off_is_plain_cross_entropy_and_on_moves_epsilon_to_uniform():
    from classaudit.train import cross_entropy

    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 5
    plain = torch.nn.functional.cross_entropy(logits, y)
    assert torch.equal(cross_entropy(logits, y, 0.0), plain)
    eps = 0.2
    logp = logits.log_softmax(1)
    manual = -((1 - eps) * logp.gather(1, y[:, None]).squeeze(1) + eps * logp.mean(1)).mean()
    assert torch.allclose(cross_entropy(logits, y, eps), manual, atol=1e-6)
    soft = torch.nn.functional.one_hot(y, 5).float()  # soft targets (after CutMix) take the same smoothing
    assert torch.allclose(cross_entropy(logits, soft, eps), manual, atol=1e-6)


def test_airbench_stem_whitens_image_patches():
    from classaudit.models import AirbenchNet

    g = torch.Generator().manual_seed(0)
    # correlated channels and neighbouring pixels, like natural images
    base = torch.randn(64, 1, 17, 17, generator=g)
    x = torch.cat([base + 0.3 * torch.randn(64, 1, 17, 17, generator=g) for _ in range(3)], 1)
    x = torch.nn.functional.avg_pool2d(x, 2, 1)
    net = AirbenchNet(10, width=4)
    net.init_from_data(x, eps=0.0)
    out = torch.nn.functional.conv2d(x, net.whiten.weight[:12])  # the positive half, no bias
    flat = out.permute(1, 0, 2, 3).reshape(12, -1)
    cov = flat @ flat.T / flat.shape[1]
    assert torch.allclose(cov, torch.eye(12), atol=1e-3)
    assert torch.equal(net.whiten.weight[12:], -net.whiten.weight[:12])
    assert not net.whiten.weight.requires_grad and net.whiten.bias.requires_grad


def test_test_time_augmentation_averages_the_views():
    from classaudit.train import _tta_views, evaluate

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    assert len(_tta_views(x, "none")) == 1 and len(_tta_views(x, "flip")) == 2
    views = _tta_views(x, "flip_translate")
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[2][:, :, 1:, 1:], x[:, :, :3, :3])  # shifted down-right by one pixel, edge padded
    assert torch.equal(views[4][:, :, :3, :3], x[:, :, 1:, 1:])

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1])
    zero, one = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    model(images.float())
    got = evaluate(model, images, labels, zero, one, 4, torch.device("cpu"), tta="flip")
    x = images.float() / 255
    with torch.no_grad():
        prob = ((model(x) + model(x.flip(3))) / 2).softmax(1)
    assert np.array_equal(got.pred, prob.argmax(1).numpy())
    assert np.allclose(got.p_true, prob.gather(1, labels[:, None]).squeeze(1).numpy(), atol=1e-6)


def test_airbench_trains_with_test_time_augmentation():
    config = tiny_config(tta="flip_translate")
    config["model"] = {"name": "airbench", "options": {"width": 4}}
    result = train_one(config)
    assert result.splits["test"].pred.shape == (40,)
    assert np.isfinite([c["train_loss"] for c in result.curve]).all()


GOLDEN = Path(__file__).resolve().parent / "golden" / "tiny_training.json"


def _pinned_configs() -> dict[str, dict]:
    """Tiny runs that between them switch every image, batch, loss and optimizer regularizer on, some from
    a later epoch, with SGD and AdamW, a fine-tuning stage, and two of the built-in models."""
    def study(model="smallcnn", **train):
        return parse_study({
            "study": {"name": "t", "seeds": [0]},
            "dataset": {"name": "shapes", "val_fraction": 0.2,
                        "options": {"n_train_per_class": 12, "n_test_per_class": 4, "size": 16}},
            "model": {"name": model, "options": {"width": 4}},
            "train": {"epochs": 2, "batch_size": 32, **train},
            "sweep": {"crop": {"strengths": [0.5]}},
        })

    return {
        "off": resolve(study(), {}, 0),
        "all_on": resolve(study(), {"translate": (2.0, 0), "crop": (0.5, 0), "color_jitter": (0.5, 1),
                                    "random_erasing": (0.5, 0), "cutmix": (0.5, 0), "mixup": (0.3, 1),
                                    "label_smoothing": (0.1, 0), "weight_decay": (5e-4, 1)}, 0),
        "adamw_finetune": resolve(study(finetune_epochs=1, optimizer="adamw", lr=0.01),
                                  {"mixup": (0.5, 0), "weight_decay": (0.05, 0)}, 2),
        "airbench_jitter": resolve(study("airbench"), {"color_jitter": (1.0, 0)}, 1),
    }


def _environment() -> dict:
    # Float results depend on the torch build, the processor's vector unit and the thread count; the pinned
    # predictions hold only where all three are those they were recorded with.
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads()}


def _predictions(result) -> dict:
    return {"pred": result.splits["test"].pred.tolist(),
            "p_true": [float(v).hex() for v in result.splits["test"].p_true],
            "train_loss": [float(c["train_loss"]).hex() for c in result.curve]}


def test_training_gives_the_pinned_predictions_bit_for_bit():
    """Changes to how regularizers are applied must keep every existing config's training exactly (same random
    draws in the same order). Delete tests/golden/tiny_training.json to re-record it after an intended change."""
    configs = _pinned_configs()
    got = {name: _predictions(train_one(config)) for name, config in configs.items()}
    if not GOLDEN.exists():
        GOLDEN.parent.mkdir(exist_ok=True)
        runs = ",\n".join(f" {json.dumps(name)}: {json.dumps(run)}" for name, run in got.items())
        GOLDEN.write_text(f'{{"environment": {json.dumps(_environment())}, "runs": {{\n{runs}\n}}}}\n')
        pytest.skip(f"recorded {GOLDEN}")
    pinned = json.loads(GOLDEN.read_text())
    if pinned["environment"] != _environment():
        pytest.skip(f"pinned on {pinned['environment']}, this is {_environment()}")
    assert got == pinned["runs"]


# ----------------------------------------------------------------------------------------------------------
# Dropout, drop path, SAM, gradient clipping: their own properties (the registry's invariants are generated in
# test_augment.py), and every training-stage regularizer through train_one.


@pytest.mark.parametrize("model, layers", [("smallcnn", 4), ("airbench", 4), ("cifar_resnet18", 9),
                                           ("resnet18", 1)])
def test_dropout_sits_before_the_head_and_in_the_conv_blocks(model, layers):
    from classaudit.models import Dropout, build_model, set_dropout

    net = build_model({"name": model, "options": {"width": 4} if model != "resnet18" else {}}, 10, 3)
    set_dropout(net, 0.3)
    found = [m for m in net.modules() if isinstance(m, Dropout)]
    assert len(found) == layers and all(m.p == 0.3 for m in found) and net.head_dropout in found


def test_drop_path_follows_the_linear_rule_over_the_residual_blocks():
    from classaudit.models import DropPath, build_model, set_drop_path

    net = build_model({"name": "cifar_resnet18", "options": {"width": 4}}, 10, 3)
    set_drop_path(net, 0.4)
    assert [m.p for m in net.modules() if isinstance(m, DropPath)] == pytest.approx([0.05 * k for k in range(1, 9)])
    with pytest.raises(ValueError, match="drop_path = 0.1: SmallCNN has no residual blocks to drop"):
        set_drop_path(build_model({"name": "smallcnn", "options": {"width": 4}}, 10, 3), 0.1)


@pytest.mark.parametrize("function", ["dropout", "drop_path"])
def test_dropped_units_are_made_up_for_by_scaling_the_kept_ones(function):
    """The expected output is the input (so evaluation, which drops nothing, needs no rescaling); drop path
    drops a sample's whole branch."""
    from classaudit import models

    x = torch.ones(20000, 2, 3, 3)
    out = getattr(models, function)(x, 0.25, torch.Generator().manual_seed(0))
    assert out.unique().tolist() == [0.0, torch.tensor(1 / 0.75).item()]
    assert abs(out.mean().item() - 1) < 0.02
    if function == "drop_path":
        per_sample = out.flatten(1)
        assert torch.equal(per_sample.min(1).values, per_sample.max(1).values)


def _sgd(params, lr, momentum=0.0):
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_sam_step_equals_the_two_pass_step_computed_by_hand(optimizer):
    """Foret et al. 2021, eq. 2-3: e = rho g / ||g|| at w; the step uses the gradient at w + e, taken from w."""
    from classaudit.train import sam

    torch.manual_seed(0)
    x, y = torch.randn(12, 3), torch.randn(12, 2)
    w0, b0, rho, lr = torch.randn(2, 3), torch.randn(2), 0.3, 0.1

    def loss_at(w, b):
        return ((x @ w.T + b - y) ** 2).mean()

    # By hand: both gradients with autograd on plain tensors, the norm over all parameters together.
    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    g_w, g_b = torch.autograd.grad(loss_at(w, b), (w, b))
    norm = torch.sqrt(g_w.square().sum() + g_b.square().sum())
    w2, b2 = (w0 + rho * g_w / norm).requires_grad_(), (b0 + rho * g_b / norm).requires_grad_()
    h_w, h_b = torch.autograd.grad(loss_at(w2, b2), (w2, b2))
    # The base optimizer's step from w0 with the perturbed point's gradient.
    ref_w, ref_b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(b0.clone())
    ref_opt = _sgd([ref_w, ref_b], lr) if optimizer == "sgd" else torch.optim.AdamW([ref_w, ref_b], lr=lr)
    ref_w.grad, ref_b.grad = h_w, h_b
    ref_opt.step()

    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(w0)
        model.bias.copy_(b0)
    opt = _sgd(model.parameters(), lr) if optimizer == "sgd" else torch.optim.AdamW(model.parameters(), lr=lr)
    passes = []

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        passes.append(loss.item())
        return loss

    closure()
    sam(model, closure, rho)
    assert torch.equal(model.weight.detach(), w0) and torch.equal(model.bias.detach(), b0)  # moved back exactly
    opt.step()
    assert len(passes) == 2 and passes[1] > passes[0]  # the second pass is at the worse point
    assert torch.allclose(model.weight.detach(), ref_w.detach(), atol=1e-6)
    assert torch.allclose(model.bias.detach(), ref_b.detach(), atol=1e-6)


def test_sam_second_pass_leaves_batchnorm_statistics_alone():
    from classaudit.train import sam

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.LazyLinear(2))
    x = torch.randn(8, 3, 6, 6)

    def closure():
        model.zero_grad(set_to_none=True)
        loss = model(x).square().mean()
        loss.backward()
        return loss

    closure()
    before = [b.clone() for b in model.buffers()]
    sam(model, closure, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))


def test_grad_clip_scales_a_large_gradient_down_to_the_norm_and_leaves_a_small_one():
    from classaudit.train import clip_gradients

    model = torch.nn.Linear(2, 2)
    model.weight.grad, model.bias.grad = torch.full((2, 2), 3.0), torch.full((2,), 4.0)  # norm sqrt(36 + 32)
    clip_gradients(model, 2.0)
    norm = torch.sqrt(model.weight.grad.square().sum() + model.bias.grad.square().sum())
    assert norm.item() == pytest.approx(2.0)
    assert torch.allclose(model.weight.grad / model.bias.grad[0], torch.full((2, 2), 0.75))  # direction kept
    small = model.weight.grad.clone()
    clip_gradients(model, 10.0)
    assert torch.equal(model.weight.grad, small)


TRAINING_STAGES = [r.name for r in REGULARIZERS.values() if r.stage != "recipe"]


def _with(regularizers: dict) -> dict:
    """A 2-epoch run of the tiny config with these regularizers only."""
    return {**tiny_config(), "regularizers": regularizers}


@pytest.fixture(scope="module")
def plain_run():
    return train_one(_with({}))


@pytest.mark.parametrize("name", TRAINING_STAGES)
def test_a_regularizer_at_its_off_value_trains_exactly_as_without(name, plain_run):
    got = train_one(_with({name: {"strength": REGULARIZERS[name].off, "start_epoch": 0}}))
    assert got.curve == [{**c, "seconds": g["seconds"]} for c, g in zip(plain_run.curve, got.curve)]
    assert np.array_equal(got.splits["test"].p_true, plain_run.splits["test"].p_true)


@pytest.mark.parametrize("name", [n for n in TRAINING_STAGES if not REGULARIZERS[n].models])
def test_start_epoch_switches_a_regularizer_on_from_that_epoch(name, plain_run):
    """Before its start epoch a run trains exactly as without it, random draws included; from it, differently."""
    got = train_one(_with({name: {"strength": REGULARIZERS[name].example, "start_epoch": 1}}))
    assert got.curve[0]["train_loss"] == plain_run.curve[0]["train_loss"]
    assert got.curve[1]["train_loss"] != plain_run.curve[1]["train_loss"]


def test_a_study_sweeping_the_new_regularizers_runs_end_to_end(tmp_path, runner):
    """dropout, drop_path, sam, grad_clip and epochs, one epoch each (epochs: a 2-epoch run besides the 1-epoch
    off point), through the CLI and the in-process executor, on the one built-in model drop path allows."""
    from classaudit.cli import cli
    from classaudit.store import load_results

    study = tmp_path / "new.toml"
    study.write_text(TINY_STUDY.replace('name = "smallcnn"', 'name = "cifar_resnet18"')
                     .replace("seeds = [0, 1]", "seeds = [0]")
                     .split("[sweep.crop]")[0] + """
[sweep.dropout]
strengths = [0.2]
[sweep.drop_path]
strengths = [0.1]
[sweep.sam]
strengths = [0.05]
[sweep.grad_clip]
strengths = [1.0]
[sweep.epochs]
strengths = [2]
""")
    out = runner.invoke(cli, ["sweep", str(study), "--results", str(tmp_path / "r"), "--executor", "inprocess",
                              "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "trained 6 run(s)" in out.output
    frame = load_results(tmp_path / "r")
    points = frame[frame["split"] == "test"].groupby(["regularizer", "strength", "is_off"]).size()
    assert sorted(points.index) == [("drop_path", 0.0, True), ("drop_path", 0.1, False), ("dropout", 0.0, True),
                                    ("dropout", 0.2, False), ("epochs", 1.0, True), ("epochs", 2.0, False),
                                    ("grad_clip", 0.0, True), ("grad_clip", 1.0, False), ("sam", 0.0, True),
                                    ("sam", 0.05, False)]
    assert (points == 10).all()  # ten classes each
    status = runner.invoke(cli, ["status", str(tmp_path / "r")])
    assert "6/6 done" in status.output and "0 stale" in status.output
