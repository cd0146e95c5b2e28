"""Stratified sampling, the one place every split of hpsweep is drawn: the prepared
train/validation split, data.train_subset, the CSV test split, `hpsweep bench-hpo`'s
subsets and the k-fold cross-validation folds of Optuna trials.

Per class, a numpy default_rng(seed) permutation; per-class counts by largest remainder,
so a draw of n samples has exactly n, each class in proportion to its size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpsweep.data import DataError


def _allocate(class_sizes: np.ndarray, total: int) -> np.ndarray:
    """Per-class counts proportional to class size that sum exactly to ``total``."""
    quota = class_sizes * (total / class_sizes.sum())
    counts = np.floor(quota).astype(np.int64)
    short = total - int(counts.sum())
    # Largest fractional parts first; ties go to the lower class index (stable sort).
    order = np.argsort(-(quota - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def _stratified_take(labels: np.ndarray, total: int, seed: int | Sequence[int]) -> np.ndarray:
    labels = np.asarray(labels)
    classes, sizes = np.unique(labels, return_counts=True)
    counts = _allocate(sizes, total)
    rng = np.random.default_rng(seed)
    taken = [rng.permutation(np.flatnonzero(labels == c))[:k]
             for c, k in zip(classes, counts, strict=True)]
    return np.sort(np.concatenate(taken)) if taken else np.empty(0, dtype=np.int64)


def stratified_split(labels: np.ndarray, fraction: float,
                     seed: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (rest, taken): ``taken`` holds round(fraction * N) samples,
    each class contributing in proportion to its size. Both sorted; same seed, same split."""
    n = len(labels)
    if not 0.0 <= fraction <= 1.0:
        raise DataError(f"split fraction must be in 0..1, got {fraction}")
    taken = _stratified_take(labels, round(fraction * n), seed)
    rest = np.setdiff1d(np.arange(n), taken, assume_unique=True)
    return rest, taken


def stratified_subset(labels: np.ndarray, n: int, seed: int | Sequence[int]) -> np.ndarray:
    """Sorted indices of exactly ``n`` samples, stratified by class."""
    if not 0 < n <= len(labels):
        raise DataError(
            f"data.train_subset = {n} but the training split has {len(labels)} samples;"
            f" use 1..{len(labels)}, or 0 for all"
        )
    return _stratified_take(labels, n, seed)


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``k`` disjoint sorted index sets covering all samples, each stratified by class:
    fold i takes 1/(k - i) of what the earlier folds left (so sizes differ by at most
    one), each draw with its own stream (seed, i)."""
    labels = np.asarray(labels)
    rest = np.arange(len(labels))
    folds = []
    for i in range(k):
        taken = _stratified_take(labels[rest], round(len(rest) / (k - i)), (seed, i))
        folds.append(rest[taken])
        rest = np.delete(rest, taken)
    return folds
