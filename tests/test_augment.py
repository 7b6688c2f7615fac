"""Invariants of every registered regularizer, generated from the registry: its function exists, off is the
identity bit for bit, the same seed gives the same output, images in one batch get their own draws, the
measured rate matches a probability; then the image and mixing operations' own properties."""

from __future__ import annotations

import dataclasses
import math
from copy import deepcopy
from functools import cache

import pytest
import torch

from classaudit import augment
from classaudit.regularizers import REGULARIZERS, STAGES, implementation, of_stage


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(64, 3, 16, 16, generator=gen(123))


# ----------------------------------------------------------------------------------------------------------
# Tests generated from the registry: every registered regularizer gets each invariant its stage allows, so a new
# one is tested without a test edit. One harness per stage applies a regularizer at a strength with a seed.

RANDOM_STAGES = ("model", "image", "normalised", "batch")  # the stages that draw from the run's generator


def names(*stages: str) -> list[str]:
    return [r.name for r in REGULARIZERS.values() if r.stage in stages]


@cache
def _resnet() -> torch.nn.Module:
    from classaudit.models import build_model

    torch.manual_seed(0)
    return build_model({"name": "cifar_resnet18", "options": {"width": 4}}, num_classes=10, in_channels=3)


def _tiny_resnet() -> torch.nn.Module:
    """A model with every model-stage layer (dropout and drop path), BatchNorm in eval mode so that each image's
    output depends on the image and its own draws alone."""
    model = deepcopy(_resnet())
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    return model


def _without_regularizing_layers(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the model with its Dropout and DropPath layers replaced by nn.Identity."""
    from classaudit.models import Dropout, DropPath

    copy = deepcopy(model)
    for name, m in list(copy.named_modules()):
        if isinstance(m, (Dropout, DropPath)):
            parent, _, attr = name.rpartition(".")
            setattr(copy.get_submodule(parent) if parent else copy, attr, torch.nn.Identity())
    return copy


def _linear_problem():
    """A tiny linear model with its gradient on a fixed batch, for the loss, ascent, gradient and optimizer stages."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(16, 4, generator=gen(1)) * 3, torch.arange(16) % 3

    def closure():
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    closure()
    return model, closure


def apply(name: str, strength: float, seed: int = 0, x: torch.Tensor | None = None):
    """Regularizer `name` at `strength` through its registry function, as training calls it; returns a tuple of
    tensors (or of the changed train settings) that say what it did, ending, for the stages that draw, with the
    generator's state after it (off must draw nothing, or every later draw of the run would move)."""
    reg = REGULARIZERS[name]
    fn, g = reg.implementation, gen(seed)
    if reg.stage in ("image", "normalised"):
        return fn(x, strength, g), g.get_state()
    if reg.stage == "batch":
        y = torch.arange(x.shape[0]) % 10
        return *fn(x, augment.one_hot(y, 10), strength, g), g.get_state()
    if reg.stage == "model":
        model = _tiny_resnet()
        fn(model, strength, g)
        return model(x), g.get_state()
    if reg.stage == "loss":
        logits = torch.randn(16, 5, generator=gen(2))
        return (fn(logits, torch.arange(16) % 5, strength),)
    if reg.stage == "ascent":
        model, closure = _linear_problem()
        fn(model, closure, strength)
        return tuple(p.detach().clone() for p in model.parameters()) + tuple(p.grad for p in model.parameters())
    if reg.stage == "gradient":
        model, _ = _linear_problem()
        fn(model, strength)
        return tuple(p.grad for p in model.parameters())
    if reg.stage == "optimizer":
        model, _ = _linear_problem()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        fn(optimizer, strength)
        optimizer.step()
        return tuple(p.detach() for p in model.parameters())
    if reg.stage == "recipe":
        return (TRAIN_SETTINGS, fn(dict(TRAIN_SETTINGS), strength))
    raise AssertionError(f"no harness for stage {reg.stage!r}")


TRAIN_SETTINGS = {"epochs": 10, "finetune_epochs": 0, "batch_size": 256}


def without(name: str, x: torch.Tensor | None = None):
    """What `apply` returns when the regularizer is not there at all."""
    reg = REGULARIZERS[name]
    if reg.stage in ("image", "normalised"):
        return x, gen(0).get_state()
    if reg.stage == "batch":
        return x, augment.one_hot(torch.arange(x.shape[0]) % 10, 10), gen(0).get_state()
    if reg.stage == "model":
        return _without_regularizing_layers(_tiny_resnet())(x), gen(0).get_state()
    if reg.stage == "loss":
        logits = torch.randn(16, 5, generator=gen(2))
        return (torch.nn.functional.cross_entropy(logits, torch.arange(16) % 5),)
    if reg.stage == "ascent":
        model, _ = _linear_problem()
        return tuple(p.detach().clone() for p in model.parameters()) + tuple(p.grad for p in model.parameters())
    if reg.stage == "gradient":
        return tuple(p.grad for p in _linear_problem()[0].parameters())
    if reg.stage == "optimizer":
        model, _ = _linear_problem()
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        return tuple(p.detach() for p in model.parameters())
    if reg.stage == "recipe":
        return (TRAIN_SETTINGS, TRAIN_SETTINGS)
    raise AssertionError(f"no harness for stage {reg.stage!r}")


def off_of(name: str) -> float:
    reg = REGULARIZERS[name]
    return float(TRAIN_SETTINGS[reg.off_field.removeprefix("train.")]) if reg.off_field else reg.off


def same(a, b) -> bool:
    """Equal bit for bit, element by element."""
    return len(a) == len(b) and all(torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v
                                    for u, v in zip(a, b))


def test_every_stage_has_a_harness():
    # `apply` and `without` above know these stages; a new stage needs its harness there first.
    assert list(STAGES) == ["recipe", "model", "image", "normalised", "batch", "loss", "ascent", "gradient",
                            "optimizer"]


@pytest.mark.parametrize("name", REGULARIZERS)
def test_every_regularizer_names_a_function_that_exists(name):
    reg = REGULARIZERS[name]
    assert reg.stage in STAGES
    assert callable(implementation(reg.function))
    assert reg.allows(reg.example) and reg.example != reg.off


@pytest.mark.parametrize("function", ["", "crop", "classaudit.augment.no_such_function", "classaudit.nothing.crop"])
def test_an_entry_without_a_function_cannot_be_used(function):
    bad = dataclasses.replace(REGULARIZERS["crop"], function=function)
    with pytest.raises((ImportError, AttributeError)):
        bad.implementation


def test_the_loss_stage_has_one_regularizer_which_computes_the_loss():
    assert len(of_stage("loss")) == 1


@pytest.mark.parametrize("name", REGULARIZERS)
def test_off_is_the_identity_bit_for_bit(name, batch):
    assert same(apply(name, off_of(name), x=batch), without(name, batch))


@pytest.mark.parametrize("name", REGULARIZERS)
def test_on_changes_something(name, batch):
    assert not same(apply(name, REGULARIZERS[name].example, x=batch), without(name, batch))


@pytest.mark.parametrize("name", names(*RANDOM_STAGES))
def test_same_seed_same_output_other_seed_other_output(name, batch):
    on = REGULARIZERS[name].example
    assert same(apply(name, on, seed=7, x=batch), apply(name, on, seed=7, x=batch))
    assert not same(apply(name, on, seed=7, x=batch), apply(name, on, seed=8, x=batch))


@pytest.mark.parametrize("name", names(*RANDOM_STAGES))
def test_each_image_gets_its_own_draws(name, batch):
    """One image repeated across the batch comes out in several versions (a draw per batch gives one). Mixing
    needs other images to mix with: there each image's own label weight differs instead."""
    reg = REGULARIZERS[name]
    on = 0.5 if reg.rate else reg.example
    if reg.stage == "batch":
        target = apply(name, on, x=batch)[1]
        versions = target[torch.arange(64), torch.arange(64) % 10]
    else:
        versions = apply(name, on, x=batch[:1].repeat(64, 1, 1, 1))[0]
    assert len({tuple(v.flatten().tolist()) for v in versions}) >= 4


@pytest.mark.parametrize("name", names("image"))
def test_image_regularizers_keep_shape_dtype_and_range(name, batch):
    out = apply(name, REGULARIZERS[name].example, x=batch)[0]
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", names("batch"))
def test_mixing_keeps_each_soft_target_a_distribution(name, batch):
    target = apply(name, 1.0, x=batch)[1]
    assert torch.allclose(target.sum(1), torch.ones(64)) and (target >= 0).all()


def _changed_fraction(name: str, p: float) -> tuple[float, float]:
    """(measured rate, expected rate) of a regularizer whose strength is a probability: the share of images it
    changes, or for layers (dropout, drop path) the share of their input they zero, against the rate set on
    each layer (the largest of which is the strength)."""
    reg = REGULARIZERS[name]
    n = 4000
    if reg.stage in ("image", "normalised", "batch"):
        x = torch.arange(1, n + 1, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 8, 8).contiguous()
        out = apply(name, p, seed=5, x=x)[0]
        # A mixed image is unchanged only if it drew itself as partner, or a box of zero pixels (CutMix).
        return (out != x).flatten(1).any(1).float().mean().item(), p
    model = _tiny_resnet()
    reg.implementation(model, p, gen(5))
    seen = []

    def record(module, inputs, output):
        if getattr(module, "p", 0) > 0:
            zeroed = (output == 0) & (inputs[0] != 0)
            seen.append((zeroed.sum().item() / (inputs[0] != 0).sum().item(), module.p))

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    model(torch.rand(1000, 3, 8, 8, generator=gen(6)))
    for h in hooks:
        h.remove()
    assert seen and max(rate for _, rate in seen) == pytest.approx(p)
    worst = max(seen, key=lambda s: abs(s[0] - s[1]))
    return worst


@pytest.mark.parametrize("p", [0.3, 0.8])
@pytest.mark.parametrize("name", [r.name for r in REGULARIZERS.values() if r.rate])
def test_measured_rate_matches_the_probability(name, p):
    measured, expected = _changed_fraction(name, p)
    assert abs(measured - expected) < 0.05


def test_cutmix_label_weight_is_the_pasted_area():
    n = 2000
    x = torch.zeros(n, 1, 16, 16)
    partner_marker = torch.ones(n, 1, 16, 16)
    y = torch.zeros(n, dtype=torch.long)
    # Use two distinguishable halves: image i is 0, its partner shows as 1 where pasted.
    stacked = torch.cat([x[: n // 2], partner_marker[: n // 2]])
    labels = torch.cat([y[: n // 2], torch.ones(n // 2, dtype=torch.long)])
    out, t = augment.cutmix(stacked, augment.one_hot(labels, 2), 1.0, gen(2))
    pasted = (out != stacked).flatten(1).float().mean(1)
    is_zero_image = labels == 0
    # For an image of class 0 mixed with a class-1 partner, the weight moved to class 1 equals the pasted area.
    moved = t[:, 1]
    partner_is_other = (out != stacked).flatten(1).any(1) & is_zero_image
    assert torch.allclose(moved[partner_is_other], pasted[partner_is_other], atol=1e-6)
    # lambda ~ U(0, 1) before clipping: the mean pasted area is below 1/2 (clipping only removes area).
    assert 0.25 < pasted[partner_is_other].mean().item() < 0.5


def test_mean_crop_area_matches_torchvision_random_resized_crop():
    from torchvision.transforms import v2

    big = torch.zeros(3, 1000, 1000)  # large, so torchvision's integer rounding does not matter
    for scale in (0.08, 0.5):
        area = augment.crop_area(scale, 20000, gen(9))
        torch.manual_seed(0)
        params = [v2.RandomResizedCrop.get_params(big, [scale, 1.0], [3 / 4, 4 / 3]) for _ in range(4000)]
        reference = torch.tensor([h * w / 1e6 for _, _, h, w in params])
        assert abs(area.mean().item() - reference.mean().item()) < 0.015
        assert area.min().item() >= scale - 1e-6


def test_crop_really_crops():
    x = torch.zeros(1, 1, 32, 32)
    x[..., :16] = 1.0  # left half white
    out = augment.crop(x.repeat(200, 1, 1, 1), 0.08, gen(4))
    whiteness = out.mean(dim=(1, 2, 3))
    assert (whiteness > 0.99).any() and (whiteness < 0.01).any()  # some crops land inside one half


def test_crop_aspect_ratio_is_in_pixels_on_non_square_images():
    """The aspect range [3/4, 4/3] is width / height in pixels, as in torchvision, also for a 16 x 64 image;
    where no box of the drawn area fits (scale 0.9 here) it is a centred crop at the clamped aspect 4/3."""
    H, W = 16, 64
    cols = torch.linspace(0, 1, W).view(1, 1, 1, W).expand(300, 1, H, W)
    rows = torch.linspace(0, 1, H).view(1, 1, H, 1).expand(300, 1, H, W)
    x = torch.cat([cols, rows], 1).contiguous()  # each pixel holds its own coordinates

    def box(out):  # width and height of the crop in input pixels, from the coordinates it sampled
        span = out.amax((2, 3)) - out.amin((2, 3))
        return span[:, 0] * (W - 1) / (1 - 1 / W), span[:, 1] * (H - 1) / (1 - 1 / H)

    w, h = box(augment.crop(x, 0.1, gen(5)))
    assert (w / h).min() > 0.75 * 0.9 and (w / h).max() < 4 / 3 * 1.1
    assert (w / h).max() > 1.2 and (w / h).min() < 0.85  # the whole range is used
    out = augment.crop(x, 0.9, gen(5))
    w, h = box(out)
    assert torch.allclose(w / h, torch.full_like(w, 4 / 3), rtol=0.05)
    assert torch.allclose(out[:, 0].mean((1, 2)), torch.full((300,), 0.5), atol=1e-3)  # centred


def test_random_erasing_rate_and_area():
    n, p = 4000, 0.4
    x = torch.ones(n, 3, 32, 32)
    out = augment.random_erasing(x, p, gen(6))
    erased = (out == 0).all(1).flatten(1).float().mean(1)
    assert abs((erased > 0).float().mean().item() - p) < 0.03
    chosen = erased[erased > 0]
    assert 0.01 <= chosen.min().item() and chosen.max().item() <= 0.36  # boxes snap to whole pixels
    assert abs(chosen.mean().item() - (0.02 + 0.33) / 2) < 0.03


def test_flip_rate():
    x = torch.arange(8.0).view(1, 1, 1, 8).repeat(2000, 1, 1, 1)
    out = augment.flip(x, gen(1))
    flipped = (out[:, 0, 0, 0] == 7).float().mean().item()
    assert abs(flipped - 0.5) < 0.04


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """HSV of [N, 3, H, W] images by matplotlib: an independent reference for the fused hue rotation."""
    from matplotlib.colors import rgb_to_hsv as mpl

    return torch.from_numpy(mpl(x.permute(0, 2, 3, 1).double().numpy())).permute(0, 3, 1, 2)


def test_hue_rotation_equals_hsv_round_trip_by_matplotlib():
    from matplotlib.colors import hsv_to_rgb

    x = torch.rand(16, 3, 8, 8, generator=gen(2))
    shift = torch.rand(16, generator=gen(3)) - 0.5
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = (hsv[:, 0] + shift.double().view(-1, 1, 1)) % 1.0
    expected = torch.from_numpy(hsv_to_rgb(hsv.permute(0, 2, 3, 1).numpy())).permute(0, 3, 1, 2).float()
    assert torch.allclose(augment._hue(x, shift.view(-1, 1, 1, 1)), expected, atol=1e-5)


def test_hue_only_jitter_rotates_hue_and_keeps_value_and_saturation():
    x = torch.rand(256, 3, 8, 8, generator=gen(3)) * 0.8 + 0.1
    out = augment.color_jitter(x, 2.0, gen(4), hue_only=True)
    hsv_in, hsv_out = rgb_to_hsv(x), rgb_to_hsv(out)
    assert torch.allclose(hsv_in[:, 2], hsv_out[:, 2], atol=1e-5)  # value kept
    assert torch.allclose(hsv_in[:, 1], hsv_out[:, 1], atol=1e-4)  # saturation kept
    shift = (hsv_out[:, 0] - hsv_in[:, 0]) % 1.0
    per_image = shift.flatten(1)
    spread = (per_image.max(1).values - per_image.min(1).values)
    # Each image has one hue shift (up to wrap-around), different between images, within +-0.4 of a turn.
    circ = torch.minimum(per_image, 1 - per_image)
    assert (circ.max() <= 0.4 + 1e-4)
    assert per_image[:, 0].unique().numel() > 200
    assert ((spread < 1e-3) | (spread > 1 - 1e-3)).float().mean() > 0.95


def test_color_jitter_factors_are_per_image_and_within_range():
    x = torch.full((2000, 3, 4, 4), 0.5)
    out = augment.color_jitter(x, 0.5, gen(5))
    # Grey input: only brightness changes it (contrast/saturation of a flat grey image are identities).
    factor = out[:, 0, 0, 0] / 0.5
    assert factor.min() >= 1 - 0.4 - 1e-4 and factor.max() <= 1 + 0.4 + 1e-4
    assert abs(factor.mean().item() - 1.0) < 0.02
    assert math.isclose(factor.std().item(), 0.8 / math.sqrt(12), rel_tol=0.1)


def test_translate_shifts_by_whole_pixels_within_range():
    x = torch.zeros(2000, 1, 16, 16)
    x[:, :, 8, 8] = 1.0  # one bright pixel
    out = augment.translate(x, 3, gen(8))
    pos = out.flatten(1).argmax(1)
    dy, dx = pos // 16 - 8, pos % 16 - 8
    assert (out.flatten(1).max(1).values == 1.0).all()  # copied exactly, not interpolated
    assert dy.abs().max() == 3 and dx.abs().max() == 3
    assert abs(dx.float().mean().item()) < 0.15 and abs(dx.abs().float().mean().item() - 12 / 7) < 0.1


def test_the_readme_table_and_the_listing_are_the_registry():
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = "| name | strength | off | range | stage |\n|---|---|---|---|---|\n" + "".join(
        f"| {r.name} | {r.unit} | {r.off_text} | {r.range_text} | {r.stage} |\n" for r in REGULARIZERS.values())
    assert table in readme
    # The listing, and study validation, without torch: a study is checked anywhere.
    code = ("import sys; from click.testing import CliRunner; from classaudit.cli import cli; "
            "import classaudit.config; out = CliRunner().invoke(cli, ['regularizers']).output; "
            "print(out); assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    for r in REGULARIZERS.values():
        assert f"{r.name:<16} off = {r.off_text}   range {r.range_text}   stage: {r.stage}\n" in done.stdout
        assert f"unit: {r.unit}\n" in done.stdout
