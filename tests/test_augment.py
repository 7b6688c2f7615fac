"""Invariants of every batched regularizer: off is the identity, shapes and dtypes are kept, the same seed gives
the same output, images in one batch get their own parameters, and the measured rates match the strength."""

from __future__ import annotations

import math

import pytest
import torch

from classaudit import augment


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.rand(64, 3, 16, 16, generator=gen(123))


IMAGE_OPS = {
    "crop": (lambda x, s, g: augment.crop(x, s, g), 1.0, 0.2),
    "translate": (lambda x, s, g: augment.translate(x, s, g), 0.0, 4),
    "color_jitter": (lambda x, s, g: augment.color_jitter(x, s, g), 0.0, 1.0),
    "random_erasing": (lambda x, s, g: augment.random_erasing(x, s, g), 0.0, 1.0),
}
MIX_OPS = {"cutmix": augment.cutmix, "mixup": augment.mixup}


@pytest.mark.parametrize("name", IMAGE_OPS)
def test_off_is_identity_bit_for_bit(name, batch):
    op, off, _ = IMAGE_OPS[name]
    assert torch.equal(op(batch, off, gen()), batch)


@pytest.mark.parametrize("name", MIX_OPS)
def test_mix_off_is_identity(name, batch):
    target = augment.one_hot(torch.arange(64) % 10, 10)
    x, t = MIX_OPS[name](batch, target, 0.0, gen())
    assert torch.equal(x, batch) and torch.equal(t, target)


@pytest.mark.parametrize("name", IMAGE_OPS)
def test_shape_dtype_and_range_kept(name, batch):
    op, _, on = IMAGE_OPS[name]
    out = op(batch, on, gen())
    assert out.shape == batch.shape and out.dtype == batch.dtype
    if name != "random_erasing":
        assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("name", IMAGE_OPS)
def test_same_seed_same_output_and_per_image_parameters(name, batch):
    op, _, on = IMAGE_OPS[name]
    assert torch.equal(op(batch, on, gen(7)), op(batch, on, gen(7)))
    assert not torch.equal(op(batch, on, gen(7)), op(batch, on, gen(8)))
    # One image repeated across the batch: per-sample randomness gives different outputs.
    same = batch[:1].repeat(32, 1, 1, 1)
    out = op(same, on, gen(3))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 16


@pytest.mark.parametrize("name", MIX_OPS)
def test_mix_targets_sum_to_one_and_are_per_sample(name, batch):
    y = torch.arange(64) % 10
    x, t = MIX_OPS[name](batch, augment.one_hot(y, 10), 1.0, gen(1))
    assert torch.allclose(t.sum(1), torch.ones(64))
    own = t[torch.arange(64), y]
    assert own.unique().numel() > 16  # each image its own lambda
    x2, t2 = MIX_OPS[name](batch, augment.one_hot(y, 10), 1.0, gen(1))
    assert torch.equal(x, x2) and torch.equal(t, t2)


@pytest.mark.parametrize("name, p", [("cutmix", 0.3), ("mixup", 0.3), ("cutmix", 0.8), ("mixup", 0.8)])
def test_fraction_mixed_matches_probability(name, p):
    n = 4000
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    y = torch.arange(n) % 10
    out, t = MIX_OPS[name](x, augment.one_hot(y, 10), p, gen(5))
    changed = (out != x).flatten(1).any(1).float().mean().item()
    # A mixed image is unchanged only if it drew itself as partner, or a box of zero pixels (CutMix).
    assert abs(changed - p) < 0.04


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
