"""The per-class test, old engine against new, side by side on the same simulated sweeps with CIFAR-10's
structure (classaudit.analysis.simulate): 4 regularizers x 4 non-off strengths around one shared off run per seed,
10 classes at the CIFAR-10 study's off accuracies, 1,000 test images each, seed noise 0.43-0.86 x binomial.

    old: the plain paired t-test, Benjamini-Hochberg over the classes of each strength
    new: the moderated paired t-test, Benjamini-Hochberg over every strength x class of the report

Prints the chance that a report flags any class under the complete null, and the per-class power for a loss of
2, 3 and 5 points by the three hardest classes at one strength, at 3, 5 and 10 seeds.

    python benchmarks/power.py [--studies 200]
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from classaudit.analysis.simulate import engine_pvalues, simulated_accuracies

HARDEST = [2, 3, 5]


def flags(p: np.ndarray, delta: np.ndarray, family: str) -> np.ndarray:
    out = np.zeros(p.shape, dtype=bool)
    groups = np.ndindex(p.shape[:1]) if family == "report" else np.ndindex(p.shape[:3])
    for index in groups:
        out[index] = (stats.false_discovery_control(p[index].ravel()) < 0.05).reshape(p[index].shape)
    return out & (delta < 0)


def rates(studies: int, seeds: int, loss: float, rng: int) -> tuple[float, float]:
    effects = {(0, 2, c): -loss for c in HARDEST} if loss else None
    on, off = simulated_accuracies(reps=studies, seeds=seeds, effects=effects, rng=rng)
    delta = (on - off[:, None, None]).mean(axis=-1)
    old = flags(engine_pvalues(on, off, 1000, test="paired"), delta, "strength")
    new = flags(engine_pvalues(on, off, 1000), delta, "report")
    if not loss:
        return tuple(float(f.reshape(studies, -1).any(axis=1).mean()) for f in (old, new))
    return tuple(float(f[:, 0, 1, HARDEST].mean()) for f in (old, new))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=200)
    args = parser.parse_args()
    print(f"{args.studies} simulated studies per cell; old = paired t + BH per strength, new = moderated t + BH per "
          "report")
    print(f"{'':34}{'3 seeds':>16}{'5 seeds':>16}{'10 seeds':>16}")
    for loss in (0.0, 0.02, 0.03, 0.05):
        label = "any false flag, complete null" if not loss else f"power, {loss * 100:g}-point loss"
        cells = [rates(args.studies, seeds, loss, rng=100 * seeds + int(loss * 100)) for seeds in (3, 5, 10)]
        print(f"{label:34}" + "".join(f"{old:7.2f} -> {new:4.2f}  " for old, new in cells))


if __name__ == "__main__":
    main()
