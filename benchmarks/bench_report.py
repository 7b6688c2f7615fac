"""Time the report on a sweep of 100 runs x 100 classes (its budget at that size: < 30 s on two cores).

The sweep is synthetic, built with classaudit.analysis.from_predictions: 2 regularizers x 5 strengths (off
included) x 10 seeds = 100 runs, 100 classes, 100 test and 20 validation images per class (1.2 million
prediction rows). A third of the classes lose accuracy with strength and hand it to a neighbour class, the
others gain, so the report has harmed classes, absorbers and churn to show.

    .venv/bin/python benchmarks/bench_report.py [--out DIR] [--classes 100] [--seeds 10]

Prints the time of each stage (load+compute, structure with figures, render, write) and the total.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pandas as pd

from classaudit import analysis


def sweep(classes: int = 100, per_class: int = 100, val_per_class: int = 20, seeds: int = 10,
          rng: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, predictions) of a synthetic 2-axis sweep, each axis with its own off runs."""
    g = np.random.default_rng(rng)
    base = g.uniform(0.55, 0.95, classes)
    # Effect of one step of strength on each class: a third lose 3 points a step, the rest gain 3.
    step = np.where(np.arange(classes) % 3 == 0, -0.03, 0.03)
    axes = {"crop": [1.0, 0.6, 0.35, 0.2, 0.08], "weight_decay": [0.0, 1e-4, 5e-4, 1e-3, 5e-3]}
    points = [(r, s, j) for r, strengths in axes.items() for j, s in enumerate(strengths)]
    parts = []
    for regularizer, strength, level in points:
        for seed in range(seeds):
            for split, n in (("test", per_class), ("val", val_per_class)):
                labels = np.repeat(np.arange(classes), n)
                p = np.clip(base + step * level, 0.02, 0.99)[labels]
                right = g.random(labels.size) < p
                neighbour = (labels + 1) % classes
                other = np.where(g.random(labels.size) < 0.6, neighbour, g.integers(0, classes, labels.size))
                pred = np.where(right, labels, np.where(other == labels, neighbour, other))
                parts.append(pd.DataFrame({"regularizer": regularizer, "strength": strength, "seed": seed,
                                           "split": split, "index": np.arange(labels.size), "label": labels,
                                           "pred": pred}))
    frame = pd.concat(parts, ignore_index=True)
    names = [f"class {k:03d}" for k in range(classes)]
    return analysis.from_predictions(frame, off={r: v[0] for r, v in axes.items()}, index="index",
                                     class_names=names, study="bench", return_predictions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="report folder [default: a temporary folder]")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()

    from classaudit.report import compute, render, structure, write

    t0 = time.perf_counter()
    frames = sweep(classes=args.classes, seeds=args.seeds)
    t1 = time.perf_counter()
    runs = frames[0]["run_id"].nunique()
    print(f"synthetic sweep: {runs} runs x {args.classes} classes, {len(frames[1]):,} prediction rows "
          f"({t1 - t0:.1f} s to build, not counted)")

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or os.path.join(tmp, "report")
        t = [time.perf_counter()]
        computed = compute.compute(compute.load(frames))
        t.append(time.perf_counter())
        report = structure.build(computed)
        t.append(time.perf_counter())
        files = render.render(report)
        t.append(time.perf_counter())
        write.write(files, out)
        t.append(time.perf_counter())
        size = sum(len(text.encode()) for text in files.values())
        for stage, a, b in zip(("compute", "structure + figures", "render", "write"), t, t[1:]):
            print(f"  {stage:<20} {b - a:6.2f} s")
        print(f"report: {len(files)} files, {size / 1e6:.1f} MB, index.html {len(files['index.html']) / 1e6:.2f} MB")
        print(f"total build + write: {t[-1] - t[0]:.2f} s (budget 30 s on two cores)")


if __name__ == "__main__":
    main()
