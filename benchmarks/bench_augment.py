"""Augmentation speed, measured side by side in one run on the same images.

    .venv/bin/python benchmarks/bench_augment.py [--width 16] [--batch 256] [--threads 2]

(1) crop + flip + colour jitter: classaudit's batched per-sample version vs torchvision v2 applied image by image
    (the correct way to get per-image randomness from torchvision), in images/s, and their ratio.
(2) one training step of the small CNN: no augmentation vs crop + colour jitter + CutMix, in images/s, and the
    overhead in percent.
Timings alternate between the contenders, repeat, and report the median, so a busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from classaudit import augment, shapes
from classaudit.models import SmallCNN
from classaudit.train import _channel_stats, augment_batch


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=16, help="small CNN width (the demo's is 16)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30, help="alternating timings per contender; the median counts")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from torchvision.transforms import v2

    x_np, y_np = shapes.generate(args.batch // 10 + 1, 32, 0)
    x_u8, y = torch.from_numpy(x_np[: args.batch]), torch.from_numpy(y_np[: args.batch])
    n = x_u8.shape[0]
    g = torch.Generator().manual_seed(0)

    # (1) the same operations, same strengths: crop scale 0.08, flip, SimCLR colour jitter s = 1.
    tv = v2.Compose([v2.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                     v2.ColorJitter(0.8, 0.8, 0.8, 0.2)])

    def ours():
        xf = x_u8.float().div(255)
        augment.color_jitter(augment.crop(augment.flip(xf, g), 0.08, g), 1.0, g)

    def theirs():
        for img in x_u8:  # per image: the only way to get per-image parameters from v2
            tv(img)

    ours(), theirs()
    t_ours, t_theirs = [], []
    for _ in range(args.repeats):
        t_ours += timed(ours, 1)
        t_theirs += timed(theirs, 1)
    ours_rate, theirs_rate = n / statistics.median(t_ours), n / statistics.median(t_theirs)
    print(f"(1) crop + flip + colour jitter on {n} 32x32 images, {args.threads} threads")
    print(f"    classaudit batched, per-sample : {ours_rate:10,.0f} images/s")
    print(f"    torchvision v2, image by image : {theirs_rate:10,.0f} images/s")
    print(f"    ratio                          : {ours_rate / theirs_rate:10.1f}x")

    # (2) the training step with and without augmentation.
    model = SmallCNN(10, 3, args.width).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    mean, std = _channel_stats(x_u8, torch.device("cpu"))
    plain = {}
    heavy = {"crop": 0.08, "color_jitter": 1.0, "cutmix": 0.5}

    def step(active):
        def run():
            xb, target = augment_batch(x_u8, y, 10, active, mean, std, g, flip=bool(active))
            loss = F.cross_entropy(model(xb.contiguous(memory_format=torch.channels_last)), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return run

    for _ in range(5):  # warm-up: oneDNN picks its kernels on the first calls
        step(plain)(), step(heavy)()
    t_plain, t_heavy = [], []
    for _ in range(args.repeats):
        t_plain += timed(step(plain), 1)
        t_heavy += timed(step(heavy), 1)
    p, h = statistics.median(t_plain), statistics.median(t_heavy)
    print(f"(2) training step, small CNN width {args.width}, batch {n}")
    print(f"    no augmentation                : {n / p:10,.0f} images/s")
    print(f"    crop + colour jitter + CutMix  : {n / h:10,.0f} images/s")
    print(f"    overhead                       : {100 * (h - p) / p:10.1f} %")


if __name__ == "__main__":
    main()
