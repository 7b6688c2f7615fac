"""The cost of a SAM step against a plain step, measured side by side in one run on the same batch.

    .venv/bin/python benchmarks/bench_sam.py [--width 16] [--batch 128] [--size 24] [--threads 2] [--optimizer sgd]

One training step (`classaudit.train.train_step`: forward, backward, the step) of the demo's network (small CNN,
width 16, batch 128 of 24x24 `shapes` images, as studies/demo.toml) with sam off and with sam = 0.05, and with
grad_clip = 1 for comparison. SAM takes a second forward-backward pass at the perturbed weights, so its step
should cost about twice a plain one. Timings alternate between the contenders and the median of each counts, so
a busy machine slows all alike; the ratio is what to read.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from classaudit import shapes
from classaudit.models import SmallCNN
from classaudit.train import _channel_stats, _optimizer, augment_batch, train_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=16, help="small CNN width (the demo's is 16)")
    ap.add_argument("--batch", type=int, default=128, help="batch size (the demo's is 128)")
    ap.add_argument("--size", type=int, default=24, help="image size (the demo's is 24)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    ap.add_argument("--repeats", type=int, default=30, help="alternating timings per contender; the median counts")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")

    x_np, y_np = shapes.generate(args.batch // 10 + 1, args.size, 0)
    x_u8, y = torch.from_numpy(x_np[: args.batch]), torch.from_numpy(y_np[: args.batch])
    mean, std = _channel_stats(x_u8, device)
    g = torch.Generator().manual_seed(0)
    model = SmallCNN(10, 3, args.width).to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, {"optimizer": args.optimizer, "lr": 0.01, "momentum": 0.9, "nesterov": True,
                                   "decay_norm_and_bias": False})
    model.train()
    contenders = {"plain step": {}, "sam = 0.05": {"sam": 0.05}, "grad_clip = 1": {"grad_clip": 1.0}}

    def step(active):
        x, target = augment_batch(x_u8, y, 10, active, mean, std, g)
        t = time.perf_counter()
        train_step(model, optimizer, x, target, active, device)
        return time.perf_counter() - t

    for _ in range(5):  # warm-up: oneDNN picks its kernels on the first calls
        for active in contenders.values():
            step(active)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, active in contenders.items():
            times[name].append(step(active))
    median = {name: statistics.median(t) for name, t in times.items()}
    n = x_u8.shape[0]
    print(f"training step, small CNN width {args.width}, batch {n} of {args.size}x{args.size}, {args.optimizer}, "
          f"{args.threads} threads (median of {args.repeats})")
    for name, seconds in median.items():
        print(f"    {name:<15}: {1000 * seconds:8.1f} ms  {n / seconds:8,.0f} images/s  "
              f"{seconds / median['plain step']:5.2f}x the plain step")


if __name__ == "__main__":
    main()
