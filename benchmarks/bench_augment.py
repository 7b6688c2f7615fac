"""Augmentation speed, measured side by side in one run on the same images.

    .venv/bin/python benchmarks/bench_augment.py [--width 16] [--batch 256] [--threads 2] [--device cpu]

(1) crop + flip + colour jitter: classaudit's batched per-sample version vs Kornia's batched augmentation with
    per-sample parameters (when kornia is installed: pip install kornia) vs torchvision v2 applied image by image
    (the correct way to get per-image randomness from torchvision), in images/s, and classaudit's ratio to each.
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


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=16, help="small CNN width (the demo's is 16)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=30, help="alternating timings per contender; the median counts")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: where the batched contenders run")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from torchvision.transforms import v2

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    x_np, y_np = shapes.generate(args.batch // 10 + 1, 32, 0)
    x_cpu = torch.from_numpy(x_np[: args.batch])
    x_u8, y = x_cpu.to(device), torch.from_numpy(y_np[: args.batch]).to(device)
    n = x_u8.shape[0]
    g = torch.Generator(device=device).manual_seed(0)

    # (1) the same operations, same strengths: crop scale 0.08, flip, SimCLR colour jitter s = 1.
    tv = v2.Compose([v2.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                     v2.ColorJitter(0.8, 0.8, 0.8, 0.2)])

    def ours():
        augment.color_jitter(augment.crop(augment.flip(x_u8, g).float().div_(255), 0.08, g), 1.0, g)
        sync()

    def torchvision_v2():
        for img in x_cpu:  # per image, on the CPU: the only way to get per-image parameters from v2
            tv(img)

    contenders = {"classaudit batched, per-sample": ours, "torchvision v2, image by image": torchvision_v2}
    try:
        import kornia.augmentation as K

        # Kornia draws each image's own parameters (same_on_batch=False, its default); p=1: always jitter.
        kornia_aug = torch.nn.Sequential(K.RandomResizedCrop((32, 32), scale=(0.08, 1.0)), K.RandomHorizontalFlip(),
                                         K.ColorJitter(0.8, 0.8, 0.8, 0.2, p=1.0)).to(device)

        def kornia():
            kornia_aug(x_u8.float().div(255))
            sync()

        contenders["Kornia batched, per-sample"] = kornia
    except ImportError:
        print("(kornia is not installed: pip install kornia to compare with it)")
    rates = alternating(contenders, n, args.repeats)
    ours_rate = rates["classaudit batched, per-sample"]
    print(f"(1) crop + flip + colour jitter on {n} 32x32 images, {args.threads} threads, {device.type}")
    for name, rate in rates.items():
        print(f"    {name:<31}: {rate:10,.0f} images/s")
    for name, rate in rates.items():
        if name != "classaudit batched, per-sample":
            print(f"    classaudit / {name.split(',')[0]:<18}: {ours_rate / rate:10.1f}x")

    # (2) the training step with and without augmentation.
    model = SmallCNN(10, 3, args.width).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    mean, std = _channel_stats(x_cpu, device)
    plain = {}
    heavy = {"crop": 0.08, "color_jitter": 1.0, "cutmix": 0.5}

    def step(active):
        def run():
            xb, target = augment_batch(x_u8, y, 10, active, mean, std, g, flip=bool(active))
            loss = F.cross_entropy(model(xb.contiguous(memory_format=torch.channels_last)), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()
        return run

    for _ in range(5):  # warm-up: oneDNN picks its kernels on the first calls
        step(plain)(), step(heavy)()
    steps = alternating({"no augmentation": step(plain), "crop + colour jitter + CutMix": step(heavy)}, n,
                        args.repeats)
    p, h = n / steps["no augmentation"], n / steps["crop + colour jitter + CutMix"]
    print(f"(2) training step, small CNN width {args.width}, batch {n}, {device.type}")
    for name, rate in steps.items():
        print(f"    {name:<31}: {rate:10,.0f} images/s")
    print(f"    overhead                       : {100 * (h - p) / p:10.1f} %")
    return {**rates, **{f"step, {name}": rate for name, rate in steps.items()}, "overhead %": 100 * (h - p) / p}


def alternating(contenders: dict, n: int, repeats: int) -> dict[str, float]:
    """Images per second of each contender: each timed once per round, round after round, so that a busy
    machine slows them alike; the median of `repeats` rounds counts. The first call of each is not timed."""
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name] += timed(fn, 1)
    return {name: n / statistics.median(t) for name, t in times.items()}


if __name__ == "__main__":
    main()
