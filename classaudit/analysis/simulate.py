"""Simulated sweeps with a known answer, in the results schema: for calibrating the tests, measuring their power,
and checking a seed plan (``benchmarks/power.py``, ``tests/test_statistics.py``).

A simulated study has regularizers, each with non-off strengths around one off run per seed shared by every
regularizer (as a classaudit sweep trains it). Each run's accuracy on class k is its true accuracy plus normal
seed noise of variance phi_k p (1 - p) / n, rounded to a count of n images: seed noise shaped like the
sampling of n test images, at a class-dependent fraction phi_k of it (0.43-0.86 in the committed CIFAR-10
study). ``confusable`` pairs of classes trade errors run by run, the way two classes a model confuses do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

# Test accuracies of the CIFAR-10 study's classes at its off point (reports/cifar10/by_class.csv, rounded).
CIFAR10_ACCURACY = (0.89, 0.94, 0.79, 0.71, 0.86, 0.79, 0.92, 0.90, 0.93, 0.92)


def simulated_results(*, regularizers: int = 4, strengths: int = 4, seeds: int = 5,
                      accuracy: Sequence[float] = CIFAR10_ACCURACY, images: int = 1000,
                      phi: tuple[float, float] = (0.43, 0.86), effects: Mapping[tuple[int, int, int], float] | None
                      = None, noisy: Mapping[int, float] | None = None, confusable: Sequence[tuple[int, int]] = (),
                      trade: float = 0.0, rng: int | np.random.Generator = 0, study: str = "simulated") -> pd.DataFrame:
    """A results frame (test split only) of one simulated study.

    Parameters
    ----------
    regularizers, strengths, seeds : int
        Axes r0, r1, ...; non-off strengths 1..strengths on each (off is 0); seeds 0..seeds-1.
    accuracy : sequence of float
        True accuracy of each class at off (one entry per class).
    images : int
        Test images per class.
    phi : (low, high)
        Each class's seed variance as a fraction of p (1 - p) / images, drawn uniformly in this range.
    effects : mapping, optional
        {(regularizer index, strength, class): change of true accuracy}; every other change is 0 (the null).
    noisy : mapping, optional
        {class: factor}: that class's seed variance multiplied by factor.
    confusable, trade : pairs of classes, points
        Each run moves a N(0, trade) share of one class's accuracy to the other of each pair.
    rng : int or Generator
        Seed of everything drawn.
    """
    g = np.random.default_rng(rng)
    truth = np.asarray(accuracy, dtype=float)
    k = len(truth)
    scale = g.uniform(*phi, size=k)
    for cls, factor in (noisy or {}).items():
        scale[cls] *= factor
    effects = dict(effects or {})
    frames = []

    def run(p: np.ndarray, seed: int, regularizer: str, strength: float, is_off: bool, run_id: str) -> None:
        noise = g.normal(0.0, np.sqrt(scale * p * (1 - p) / images))
        for a, b in confusable:
            moved = g.normal(0.0, trade)
            noise[a] -= moved
            noise[b] += moved
        correct = np.clip(np.rint((p + noise) * images), 0, images).astype(int)
        frames.append(pd.DataFrame({
            "study": study, "run_id": run_id, "regularizer": regularizer, "strength": strength, "is_off": is_off,
            "seed": seed, "split": "test", "class_id": np.arange(k), "class_name": [f"c{c}" for c in range(k)],
            "n": images, "correct": correct, "accuracy": correct / images}))

    for seed in range(seeds):
        off = len(frames)
        run(truth, seed, "r0", 0.0, True, f"off-{seed}")
        shared = frames[off]
        frames.pop()
        for r in range(regularizers):
            frames.append(shared.assign(regularizer=f"r{r}"))
            for s in range(1, strengths + 1):
                shift = np.array([effects.get((r, s, c), 0.0) for c in range(k)])
                run(np.clip(truth + shift, 0.0, 1.0), seed, f"r{r}", float(s), False, f"r{r}-{s}-{seed}")
    return pd.concat(frames, ignore_index=True)


def simulated_accuracies(*, reps: int, regularizers: int = 4, strengths: int = 4, seeds: int = 5,
                         accuracy: Sequence[float] = CIFAR10_ACCURACY, images: int = 1000,
                         phi: tuple[float, float] = (0.43, 0.86), effects: Mapping[tuple[int, int, int], float]
                         | None = None, noisy: Mapping[int, float] | None = None,
                         confusable: Sequence[tuple[int, int]] = (), trade: float = 0.0,
                         rng: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The accuracies of `reps` independent simulated studies as arrays, the model of
    :func:`simulated_results` (strength s of the arrays is strength s + 1 there): on [reps, regularizers,
    strengths, classes, seeds] and the shared off runs [reps, classes, seeds]. Fast enough for thousands of
    studies."""
    g = np.random.default_rng(rng)
    truth = np.asarray(accuracy, dtype=float)
    k = len(truth)
    scale = g.uniform(*phi, size=(reps, 1, 1, k))
    for cls, factor in (noisy or {}).items():
        scale[..., cls] *= factor
    shift = np.zeros((regularizers, strengths, k))
    for (r, s, c), change in (effects or {}).items():
        shift[r, s - 1, c] = change
    p_on = np.clip(truth + shift, 0.0, 1.0)[None]  # [1, R, S, K]

    def draw(p: np.ndarray, sd_scale: np.ndarray, shape: tuple) -> np.ndarray:
        noise = g.normal(0.0, 1.0, size=shape) * np.sqrt(sd_scale * p * (1 - p) / images)[..., None]
        for a, b in confusable:
            moved = g.normal(0.0, trade, size=shape[:-2] + (shape[-1],))
            noise[..., a, :] -= moved
            noise[..., b, :] += moved
        return np.clip(np.rint((p[..., None] + noise) * images), 0, images) / images

    on = draw(np.broadcast_to(p_on, (reps, regularizers, strengths, k)), scale,
              (reps, regularizers, strengths, k, seeds))
    off = draw(np.broadcast_to(truth, (reps, k)), scale[:, 0, 0, :], (reps, k, seeds))
    return on, off


def engine_pvalues(on: np.ndarray, off: np.ndarray, images: int, *, test: str = "moderated",
                   min_effect: float = 0.0) -> np.ndarray:
    """Per-class p-values of every (rep, regularizer, strength, class) of :func:`simulated_accuracies`' arrays,
    from the paired tests ``difference`` runs: "moderated" (one prior fitted over the study's regularizers x
    strengths x classes, as ``difference`` fits it) or "paired" (the plain paired t-test, TREAT at `min_effect`)."""
    from classaudit.analysis.significance import binomial_variance, cell_priors, moderated_t, treat_pvalue

    reps, regularizers, strengths, k, seeds = on.shape
    d = on - off[:, None, None]
    p = np.empty(on.shape[:4])
    n = np.full(k, images)
    for i in range(reps):
        if test == "paired":
            se = d[i].std(axis=-1, ddof=1) / np.sqrt(seeds)
            with np.errstate(divide="ignore", invalid="ignore"):
                # Seeds that all changed alike leave the plain t undefined: no evidence, p = 1 (the sign-flip
                # test ``difference`` falls back to cannot reject below 6 seeds either).
                p[i] = np.nan_to_num(treat_pvalue(d[i].mean(axis=-1), se, seeds - 1, min_effect), nan=1.0)
            continue
        # One prior for the whole study, fitted on every arm's seed variance, as ``difference`` fits it.
        arms = np.concatenate([on[i].reshape(-1, k, seeds), off[i][None]])  # [regularizers x strengths + 1, K, R]
        ratio = arms.var(axis=-1, ddof=1) / binomial_variance(arms.mean(axis=-1), n)
        _, scale, prior_df = cell_priors(np.tile(np.arange(k), len(arms)), ratio.ravel(), np.full(ratio.size, seeds - 1))
        scale, prior_df = scale.reshape(ratio.shape)[:-1], prior_df.reshape(ratio.shape)[:-1]
        for j, (r, s) in enumerate(np.ndindex(regularizers, strengths)):
            p[i, r, s] = moderated_t(on[i, r, s], off[i], n, n, scale[j], prior_df[j], paired=True,
                                     confidence=0.95, min_effect=min_effect)[0]
    return p
