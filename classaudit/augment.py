"""Batched image regularizers with per-sample randomness, on tensors, driven by an explicit torch.Generator.

Why not torchvision.transforms.v2: a v2 transform draws ONE set of random parameters per call, so applied to a
batch every image gets the same crop and the same jitter, and v2.CutMix/MixUp use one lambda and one box per
batch. That is not the regularizer the papers study. Applied image by image they are correct but slow (about
as slow as training the small CNN itself on two CPU cores). Every function here draws each image's own
parameters in one tensor call and applies them with a constant number of kernels, whatever the batch size.

Conventions: images are float tensors [N, C, H, W] in [0, 1] (crop, flip, colour jitter) or already
normalised (random erasing fills with 0 = the data mean; cutmix and mixup mix anything). Strength "off"
returns the input object itself, bit for bit. Each function has the strength unit of `classaudit.regularizers`.

A strength is one number for the batch, or a tensor [N] of one strength per image (its class's, when an axis
exempts classes or gives them their own strength): the same draws, with per-image bounds. Training then keeps
the images whose strength is off exactly as they were (`classaudit.train.augment_batch`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(size, low, high, g: torch.Generator, device) -> torch.Tensor:
    """U(low, high) of the given size; low and high are numbers or tensors that broadcast to it (per image)."""
    return torch.rand(size, generator=g, device=device) * (high - low) + low


def _all(condition) -> bool:
    """Whether a test of the strength holds for the whole batch: one number's, or every image's."""
    return bool(condition.all()) if isinstance(condition, torch.Tensor) else bool(condition)


def _boxes(n: int, area_low: float, area_high: float, log_ratio: tuple[float, float], g, device,
           aspect: float = 1.0, tries: int = 10):
    """Per-sample (w, h) as fractions of the image's width and height, torchvision's
    RandomResizedCrop/RandomErasing draw: area fraction ~ U(area_low, area_high), log aspect ratio (width /
    height in pixels) ~ U(log_ratio); the first of `tries` draws that fits wins. `aspect` is the image's own
    width / height. Drawing all tries at once keeps it one tensor call; `ok` marks images with a fitting draw."""
    area = _uniform((tries, n), area_low, area_high, g, device)  # area_low may be per image: [n] broadcasts
    ratio = torch.exp(_uniform((tries, n), *log_ratio, g, device))
    # In pixels the box is sqrt(A r) wide and sqrt(A / r) high, A = area * H * W; as fractions of W and H:
    w, h = torch.sqrt(area * ratio / aspect), torch.sqrt(area * aspect / ratio)
    fits = (w <= 1) & (h <= 1)
    first = torch.argmax(fits.int(), dim=0)  # index of the first fitting try (0 if none fits)
    pick = lambda t: t.gather(0, first[None]).squeeze(0)  # noqa: E731
    return pick(w), pick(h), fits.any(dim=0)


def crop(x: torch.Tensor, scale: float, g: torch.Generator) -> torch.Tensor:
    """RandomResizedCrop per image: area fraction ~ U(scale, 1), aspect ratio in [3/4, 4/3], resized back
    to the input size with bilinear interpolation. scale = 1 is the identity.

    Crops are never larger than the image, so resizing only enlarges and needs no antialiasing; one
    affine_grid + grid_sample call crops and resizes the whole batch.
    """
    if _all(scale >= 1.0):
        return x
    n, device, (H, W) = x.shape[0], x.device, x.shape[-2:]
    low, high = 3 / 4, 4 / 3
    w, h, ok = _boxes(n, scale, 1.0, (math.log(low), math.log(high)), g, device, aspect=W / H)
    # torchvision's fallback when no try fits: a centre crop of the whole image, its aspect clamped to [3/4, 4/3]
    fallback_w, fallback_h = min(1.0, high * H / W), min(1.0, W / (low * H))
    w, h = torch.where(ok, w, torch.full_like(w, fallback_w)), torch.where(ok, h, torch.full_like(h, fallback_h))
    # crop centre in [-1, 1] coordinates (the fallback's is 0: centred)
    cx = torch.where(ok, (_uniform(n, 0, 1, g, device) * (1 - w) + w / 2) * 2 - 1, torch.zeros_like(w))
    cy = torch.where(ok, (_uniform(n, 0, 1, g, device) * (1 - h) + h / 2) * 2 - 1, torch.zeros_like(h))
    grid = _scaled_grid(w.to(x.dtype), h.to(x.dtype), cx.to(x.dtype), cy.to(x.dtype), H, W)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def translate(x: torch.Tensor, pixels: float, g: torch.Generator) -> torch.Tensor:
    """Shift each image by its own whole number of pixels in [-s, s] along each axis, mirroring the border in
    (the pad-and-crop of CIFAR training recipes). One grid_sample with nearest sampling at pixel centres, so
    pixel values are copied exactly. s = 0 is the identity."""
    if _all(pixels <= 0):
        return x
    n, (H, W) = x.shape[0], x.shape[-2:]
    if isinstance(pixels, torch.Tensor):  # a largest shift per image: a whole number in [-s_i, s_i]
        s = pixels.to(x.dtype).floor().view(-1, 1)
        shift = (torch.rand(n, 2, generator=g, device=x.device, dtype=x.dtype) * (2 * s + 1)).floor() - s
    else:
        s = int(pixels)
        shift = torch.randint(-s, s + 1, (n, 2), generator=g, device=x.device).to(x.dtype)
    one = torch.ones(n, device=x.device, dtype=x.dtype)
    grid = _scaled_grid(one, one, 2 * shift[:, 0] / W, 2 * shift[:, 1] / H, H, W)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="reflection", align_corners=False)


def _scaled_grid(sx, sy, tx, ty, H: int, W: int) -> torch.Tensor:
    """F.affine_grid for the per-image maps (u, v) -> (sx u + tx, sy v + ty), the same numbers (align_corners
    False): built by broadcasting, because affine_grid's batched matrix product of [N, H W, 3] by [N, 3, 2] is
    the slowest kernel of a CPU training step's augmentation (a quarter of it)."""
    n, device, dtype = sx.shape[0], sx.device, sx.dtype
    u = torch.linspace(-1, 1, W, device=device, dtype=dtype) * (W - 1) / W  # pixel centres, as affine_grid's
    v = torch.linspace(-1, 1, H, device=device, dtype=dtype) * (H - 1) / H
    grid = torch.empty(n, H, W, 2, device=device, dtype=dtype)
    grid[..., 0] = u.view(1, 1, W) * sx.view(n, 1, 1) + tx.view(n, 1, 1)  # [n, 1, W], broadcast down the rows
    grid[..., 1] = v.view(1, H, 1) * sy.view(n, 1, 1) + ty.view(n, 1, 1)
    return grid


def crop_area(scale: float, n: int, g: torch.Generator) -> torch.Tensor:
    """The area fractions `crop` would draw for n images (same draws, for tests and documentation)."""
    w, h, ok = _boxes(n, scale, 1.0, (math.log(3 / 4), math.log(4 / 3)), g, "cpu")
    return torch.where(ok, w * h, torch.ones_like(w))


def flip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Horizontal flip of each image with probability p: one torch.where over a per-image mask."""
    mask = torch.rand(x.shape[0], generator=g, device=x.device) < p
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


# ----------------------------------------------------------------------------------------------------------
# Colour jitter.


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, as torchvision's rgb_to_grayscale; [N, 1, H, W]."""
    if x.shape[1] == 1:
        return x
    r, gr, b = x.unbind(1)
    return (0.299 * r + 0.587 * gr + 0.114 * b).unsqueeze(1)


# In place on fresh temporaries where it gives the same numbers (a + b == b + a in floating point): fewer
# allocations, the same bits.
def _brightness(x, f):
    return (x * f).clamp_(0, 1)


def _contrast(x, f):
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean).mul_(f).add_(mean).clamp_(0, 1)


def _saturation(x, f):
    if x.shape[1] == 1:
        return x
    grey = _grey(x)
    return (x - grey).mul_(f).add_(grey).clamp_(0, 1)


def _hue(x, shift):
    """Rotate hue by `shift` turns, keeping HSV saturation and value exactly.

    RGB -> HSV -> RGB fused into one pass: value (max) and chroma (max - min) are kept, only the position on
    the colour circle moves, and no saturation is computed (the way back needs only value * saturation =
    chroma). About half the tensor operations of the two-step version; the tests check it against
    matplotlib's conversions."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    # Channel-wise maximum/minimum are elementwise kernels; x.max(1) with indices is 10x slower on CPU.
    value = torch.maximum(torch.maximum(r, g), b)
    chroma = value - torch.minimum(torch.minimum(r, g), b)
    inv = 1.0 / chroma.clamp_min(1e-12)
    sixths = torch.where(value == r, (g - b) * inv, torch.where(value == g, (b - r) * inv + 2, (r - g) * inv + 4))
    sixths += 6 * shift.view(-1, 1, 1)  # the one remainder below wraps it onto the circle
    k = (sixths.unsqueeze(1) + _HUE_OFFSETS.to(x.device, x.dtype)).remainder_(6)
    return torch.minimum(k, 4 - k).clamp_(0, 1).mul_(chroma.unsqueeze(1)).neg_().add_(value.unsqueeze(1))


_HUE_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)
_JITTER_OPS = (_brightness, _contrast, _saturation, _hue)


def color_jitter(x: torch.Tensor, strength: float, g: torch.Generator, *, hue_only: bool = False) -> torch.Tensor:
    """SimCLR-style colour distortion of strength s, per image.

    Brightness, contrast and saturation factors ~ U(max(0, 1 - 0.8 s), 1 + 0.8 s); hue shift ~ U(-0.2 s, 0.2 s)
    of the colour circle (clamped to half a turn). As torchvision's ColorJitter, the four operations run in a
    random order, here drawn per image: at each of four rounds every image applies the operation its own
    permutation names, so the work is 4 operations x N images, 16 small kernels. s = 0 is the identity.
    On one-channel images saturation and hue do nothing. `hue_only` keeps the other factors at 1 (tests).
    """
    if _all(strength <= 0):
        return x
    n, device = x.shape[0], x.device
    per_image = isinstance(strength, torch.Tensor)
    k = 0.8 * strength
    factors = [_uniform(n, (1 - k).clamp_min(0) if per_image else max(0.0, 1 - k), 1 + k, g, device)
               for _ in range(3)]
    if hue_only:
        factors = [torch.ones(n, device=device) for _ in range(3)]
    h = (0.2 * strength).clamp_max(0.5) if per_image else min(0.2 * strength, 0.5)
    factors.append(_uniform(n, -h, h, g, device))
    order = torch.argsort(torch.rand(n, 4, generator=g, device=device), dim=1)  # a permutation per image
    out = x.clone()
    for step in range(4):
        for op_index, op in enumerate(_JITTER_OPS):
            idx = (order[:, step] == op_index).nonzero().squeeze(1)
            if idx.numel():  # index_select / index_copy_: several times faster than out[idx] on a CPU
                factor = factors[op_index].index_select(0, idx).view(-1, 1, 1, 1).to(x.dtype)
                out.index_copy_(0, idx, op(out.index_select(0, idx), factor))
    return out


# ----------------------------------------------------------------------------------------------------------
# Box masks: random erasing and cutmix.


def _box_mask(x: torch.Tensor, w, h, cx, cy) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image boolean masks [N, 1, H, W] of the box centred (cx, cy) with size (w, h), all as fractions of
    the image, clipped to the image; returns (mask, clipped area fraction)."""
    H, W = x.shape[-2:]
    x1, x2 = ((cx - w / 2) * W).round().clamp(0, W), ((cx + w / 2) * W).round().clamp(0, W)
    y1, y2 = ((cy - h / 2) * H).round().clamp(0, H), ((cy + h / 2) * H).round().clamp(0, H)
    cols = torch.arange(W, device=x.device).view(1, 1, 1, W)
    rows = torch.arange(H, device=x.device).view(1, 1, H, 1)
    mask = ((cols >= x1.view(-1, 1, 1, 1)) & (cols < x2.view(-1, 1, 1, 1))
            & (rows >= y1.view(-1, 1, 1, 1)) & (rows < y2.view(-1, 1, 1, 1)))
    return mask, (x2 - x1) * (y2 - y1) / (H * W)


def random_erasing(x: torch.Tensor, p: float, g: torch.Generator, value: float = 0.0) -> torch.Tensor:
    """Erase one box per image with probability p (Zhong et al. 2020; Cutout when filled with the mean).

    Box area ~ U(0.02, 0.33) of the image, aspect ratio log-uniform in [0.3, 3.3], placed fully inside the
    image (torchvision's RandomErasing draw); filled with `value` (0 = the mean once normalised).
    """
    if _all(p <= 0):
        return x
    n, device, (H, W) = x.shape[0], x.device, x.shape[-2:]
    w, h, ok = _boxes(n, 0.02, 0.33, (math.log(0.3), math.log(3.3)), g, device, aspect=W / H)
    cx = _uniform(n, 0, 1, g, device) * (1 - w) + w / 2
    cy = _uniform(n, 0, 1, g, device) * (1 - h) + h / 2
    chosen = (torch.rand(n, generator=g, device=device) < p) & ok
    mask, _ = _box_mask(x, w, h, cx, cy)
    return torch.where(mask & chosen.view(-1, 1, 1, 1), torch.full_like(x, value), x)


def one_hot(y: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    return F.one_hot(y, num_classes).to(dtype)


def cutmix(x: torch.Tensor, target: torch.Tensor, p: float, g: torch.Generator):
    """CutMix per image (Yun et al. 2019): with probability p, paste a box from a partner image.

    Partner = the image at the same position in a random permutation of the batch; lambda ~ Beta(1, 1) =
    U(0, 1) per image; the box has area 1 - lambda and a uniformly drawn centre, then is clipped to the image.
    The target becomes (1 - a) * own + a * partner's, with a the pasted area AFTER clipping, so the label
    weight is what the image really shows. `target` is soft [N, K] (rows sum to 1) and stays so.
    """
    if _all(p <= 0):
        return x, target
    n, device = x.shape[0], x.device
    partner = torch.randperm(n, generator=g, device=device)
    lam = torch.rand(n, generator=g, device=device)
    side = torch.sqrt(1 - lam)
    cx, cy = torch.rand(n, generator=g, device=device), torch.rand(n, generator=g, device=device)
    chosen = torch.rand(n, generator=g, device=device) < p
    mask, area = _box_mask(x, side, side, cx, cy)
    mask = mask & chosen.view(-1, 1, 1, 1)
    area = torch.where(chosen, area, torch.zeros_like(area)).to(target.dtype).view(-1, 1)
    return (torch.where(mask, x.index_select(0, partner), x),
            (1 - area) * target + area * target.index_select(0, partner))


def mixup(x: torch.Tensor, target: torch.Tensor, p: float, g: torch.Generator):
    """MixUp per image (Zhang et al. 2018): with probability p, x = lam * x + (1 - lam) * partner, with
    lambda ~ Beta(1, 1) = U(0, 1) drawn per image and the same weights on the soft targets."""
    if _all(p <= 0):
        return x, target
    n, device = x.shape[0], x.device
    partner = torch.randperm(n, generator=g, device=device)
    lam = torch.rand(n, generator=g, device=device)
    chosen = torch.rand(n, generator=g, device=device) < p
    lam = torch.where(chosen, lam, torch.ones_like(lam))
    weight = lam.view(-1, 1, 1, 1).to(x.dtype)
    return (weight * x + (1 - weight) * x.index_select(0, partner),
            lam.view(-1, 1).to(target.dtype) * target
            + (1 - lam.view(-1, 1).to(target.dtype)) * target.index_select(0, partner))
