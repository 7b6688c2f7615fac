"""How often the one-seed McNemar test says two runs differ when only the seed differs.

Takes every configuration of a results folder with at least two seeds, compares its first two seeds class by
class with the per-image McNemar test (as difference() would for one seed a side) and prints the fraction of
classes with p < 0.05 and q < 0.05. A test of the regularizer would show about 5% and 0-5%; McNemar shows far
more, because retraining with another seed moves whole groups of a class's images at once, which a test that
treats the images as the only noise cannot see. This is why difference() does not let McNemar flag a class.

    python benchmarks/mcnemar_seed_null.py [RESULTS]      # default: reports/cifar10/results
"""

from __future__ import annotations

import sys

import pandas as pd

import classaudit as ca


def main(path: str = "reports/cifar10/results") -> None:
    predictions = ca.load_predictions(path)
    test = predictions[predictions["split"] == "test"]
    tables, seen = [], set()
    for (regularizer, strength), config in test.groupby(["regularizer", "strength"]):
        seeds = sorted(config["seed"].unique())[:2]
        runs = frozenset(config["run_id"])
        if len(seeds) < 2 or runs in seen:  # the shared off point appears under every regularizer
            continue
        seen.add(runs)
        # The first seed plays "off", the second "on": the same recipe on both sides, one run each.
        pair = config[config["seed"].isin(seeds)]
        frame = pd.DataFrame({"regularizer": "seed", "strength": (pair["seed"] == seeds[1]).astype(float),
                              "seed": 0, "label": pair["label"], "pred": pair["pred"], "index": pair["index"]})
        results, images = ca.from_predictions(frame, off={"seed": 0.0}, index="index", return_predictions=True)
        table = ca.difference(results, strength="all", predictions=images)
        tables.append(table.assign(config=f"{regularizer} {strength:g}"))
    if not tables:
        sys.exit(f"{path}: no configuration has two seeds yet")
    table = pd.concat(tables, ignore_index=True)
    per_config = (table["q_value"] < 0.05).groupby(table["config"]).any()
    print(f"{len(tables)} configurations, seed {seeds[0]} against seed {seeds[1]}, {len(table)} class comparisons")
    print(f"  p < 0.05: {(table['p_value'] < 0.05).mean():.3f}   (a calibrated test of the recipe: 0.05)")
    print(f"  q < 0.05: {(table['q_value'] < 0.05).mean():.3f}   configurations with any q < 0.05: "
          f"{per_config.mean():.3f}")
    print(f"  flagged harmed or helped: {int((table['harmed'] | table['helped']).sum())}")


if __name__ == "__main__":
    main(*sys.argv[1:])
