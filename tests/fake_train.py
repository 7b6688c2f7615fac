"""A stand-in for a user's training script, for the tests of `train.command` and `train.function`: standard library
only, so a run takes a fraction of a second. Its predictions are a seeded function of --crop and --seed, in which a
smaller crop hurts class 0 ("cat") most. FAKE_MODE (environment) makes it misbehave in one way each, FAKE_LOG names a
file it appends its arguments and CLASSAUDIT_* environment to, FAKE_SLEEP seconds it waits before writing, and
FAKE_HANG="CROP SEED" (or the file fake_hang.txt in its folder, which reaches it on a Ray worker too) the run that
waits ten minutes.

    python fake_train.py --crop 0.5 --seed 1 --out OUT
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

CLASSES = ["cat", "dog", "bird", "frog"]
SIZES = {"test": 20, "val": 12}


def predict(crop: float, seed: int, mode: str = "") -> list[tuple[str, int, int, int, float]]:
    """(split, index, label, pred, p_true) rows, in a shuffled order (the index says which image)."""
    rng = random.Random(seed * 1000 + round(crop * 100))
    rows = []
    for split, n in SIZES.items():
        for i in range(n):
            label = i % len(CLASSES)
            if mode == "images" and seed == 1 and split == "test" and i == 5:
                label = (label + 1) % len(CLASSES)  # another image at index 5
            wrong = rng.random() < 0.1 + (1 - crop) * (0.8 if label == 0 else 0.1)
            pred = (label + 1) % len(CLASSES) if wrong else label
            rows.append((split, i, label, pred, round(rng.uniform(0.05, 0.3) if wrong else rng.uniform(0.5, 1), 4)))
    rng.shuffle(rows)
    return rows


def write(out: str, rows, mode: str = "") -> None:
    """The predictions as the contract asks, or broken the way FAKE_MODE says."""
    if mode == "nofile":
        return
    columns = ["split", "index", "label", "pred", "p_true"]
    if mode == "nocolumn":
        columns.remove("pred")
        rows = [(s, i, y, p) for s, i, y, _, p in rows]
    if mode == "labels":
        rows[3] = (*rows[3][:2], 7, *rows[3][3:])
    if mode == "split":
        rows[0] = ("train", *rows[0][1:])
    if mode == "index":  # the next image of the first row's split gets the first row's index
        j = next(j for j in range(1, len(rows)) if rows[j][0] == rows[0][0])
        rows[j] = (*rows[0][:2], *rows[j][2:])
    if mode == "whole":
        rows[2] = (rows[2][0], rows[2][1], "2.5", *rows[2][3:])
    if mode == "p_true":
        rows[0] = (*rows[0][:4], 1.5)
    with open(os.path.join(out, "predictions.csv"), "w") as f:
        f.write(",".join(columns) + "\n")
        f.writelines(",".join(map(str, row)) + "\n" for row in rows)
    if mode == "both":
        open(os.path.join(out, "predictions.parquet"), "wb").close()
    if mode != "noclasses":
        with open(os.path.join(out, "classes.txt"), "w") as f:
            f.write("\n".join(CLASSES) + "\n")


def train_function(config, *, seed, out, device, run_id, strengths):
    """The same predictions through `train.function`: returned as (frame, class names), or written to `out`
    (FAKE_MODE=write)."""
    import pandas as pd

    rows = predict(strengths["crop"], seed)
    if os.environ.get("FAKE_MODE") == "write":
        write(out, rows)
        return None
    return pd.DataFrame(rows, columns=["split", "index", "label", "pred", "p_true"]), CLASSES


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crop", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    mode = os.environ.get("FAKE_MODE", "")
    if os.environ.get("FAKE_LOG"):
        with open(os.environ["FAKE_LOG"], "a") as f:
            env = {k: v for k, v in os.environ.items() if k.startswith("CLASSAUDIT_") or k.endswith("_NUM_THREADS")}
            f.write(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "pid": os.getpid(), "env": env}) + "\n")
    if mode == "exit":
        print("loading data", file=sys.stderr)
        print("ValueError: learning rate must be positive", file=sys.stderr)
        sys.exit(3)
    time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
    hang = os.environ.get("FAKE_HANG") or (open("fake_hang.txt").read().strip() if os.path.exists("fake_hang.txt")
                                           else "")
    if hang == f"{args.crop} {args.seed}":  # this run trains "for ever"
        time.sleep(600)
    write(args.out, predict(args.crop, args.seed, mode), mode)


if __name__ == "__main__":
    main()
