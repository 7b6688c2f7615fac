"""How often class_dependence's Friedman test rejects "every class changes alike" when it is true.

Simulates the per-seed changes of 10 classes (strength minus off, same seed) under three nulls in which no
class tends to change more than another, and prints the fraction of 2,000 repetitions with p < 0.05 for
Friedman's test as class_dependence runs it, next to a repeated-measures F test (two-way ANOVA without
replication, class effect):

  binomial   true accuracies uniform in 50-99%, 1,000 test images a class, each arm's count binomial: the
             classes are unequally noisy (1.6 points at 50%, 0.3 at 99%)
  two noisy  8 classes with 1 point of noise, 2 with 5 points
  confusable 8 classes with 1 point of noise; classes 0 and 1 trade 3 points of errors run by run (one's loss is
             the other's gain)

    python benchmarks/class_dependence_null.py
"""

from __future__ import annotations

import numpy as np
from scipy import stats

CLASSES, REPS = 10, 2000


def changes(kind: str, seeds: int, rng: np.random.Generator) -> np.ndarray:
    """REPS x seeds x CLASSES per-seed changes under the null `kind`."""
    if kind == "binomial":
        truth = rng.uniform(0.5, 0.99, size=(REPS, 1, CLASSES))
        on, off = (rng.binomial(1000, np.broadcast_to(truth, (REPS, seeds, CLASSES))) / 1000 for _ in range(2))
        return on - off
    noise = np.full(CLASSES, 0.01)
    if kind == "two noisy":
        noise[:2] = 0.05
    d = rng.normal(0.0, noise, size=(REPS, seeds, CLASSES))
    if kind == "confusable":
        trade = rng.normal(0.0, 0.03, size=(REPS, seeds))
        d[:, :, 0] += trade
        d[:, :, 1] -= trade
    return d


def f_test(x: np.ndarray) -> float:
    n, k = x.shape
    grand = x.mean()
    residual = x - x.mean(0) - x.mean(1, keepdims=True) + grand
    f = (n * ((x.mean(0) - grand) ** 2).sum() / (k - 1)) / ((residual ** 2).sum() / ((k - 1) * (n - 1)))
    return stats.f.sf(f, k - 1, (k - 1) * (n - 1))


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"P(p < 0.05) over {REPS} null repetitions, {CLASSES} classes: Friedman (F test)")
    print(f"{'null':12}" + "".join(f"{f'{s} seeds':>18}" for s in (3, 5, 10)))
    for kind in ("binomial", "two noisy", "confusable"):
        cells = []
        for seeds in (3, 5, 10):
            d = changes(kind, seeds, rng)
            friedman = np.mean([stats.friedmanchisquare(*x.T).pvalue < 0.05 for x in d])
            anova = np.mean([f_test(x) < 0.05 for x in d])
            cells.append(f"{friedman:.3f} ({anova:.3f})")
        print(f"{kind:12}" + "".join(f"{c:>18}" for c in cells))


if __name__ == "__main__":
    main()
