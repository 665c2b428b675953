"""Grouped, class-stratified train/test splits: a hold-out split and k folds.

The paper keeps all frames of one video sequence on the same side, because neighbouring frames
are near-duplicates and would otherwise leak the test set into training. Within that constraint
the splits keep each side's class distribution close to the whole set's, which matters for the
rare classes (happy, neutral, disgust) whose test counts are small.

Method: a seeded greedy assignment. Groups are visited roughly biggest first (sizes jittered by
the seed, so that another seed gives another split); each goes to the side whose per-class counts
and size it brings closest to that side's targets (the side's share of every class and of all
samples), which keeps sizes and class proportions on target together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: How far the seed may reorder groups of different sizes: each size is scaled by a factor drawn
#: from [1 - JITTER, 1 + JITTER]. Zero would make the order depend on the seed only among ties.
ORDER_JITTER = 0.5


@dataclass(frozen=True)
class Split:
    """Sorted indices of the training and test samples of one split."""

    train: np.ndarray
    test: np.ndarray


def holdout_split(labels, groups, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """One grouped, stratified split with about ``test_fraction`` of the samples in the test side."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, not {test_fraction}")
    class_ids, group_ids = _encode(labels, groups)
    if group_ids.max() + 1 < 2:
        raise ValueError("a hold-out split needs at least 2 groups; all samples share one group")
    side = _assign_groups(class_ids, group_ids, np.array([1.0 - test_fraction, test_fraction]), seed)
    return _split_for(side[group_ids], test_bin=1)


def kfold_splits(labels, groups, k: int = 5, seed: int = 0) -> list[Split]:
    """``k`` grouped, stratified folds: every sample is in exactly one fold's test side."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer of at least 2, not {k!r}")
    class_ids, group_ids = _encode(labels, groups)
    group_count = group_ids.max() + 1
    if group_count < k:
        raise ValueError(f"{k} folds need at least {k} groups, but the samples form only {group_count}")
    fold = _assign_groups(class_ids, group_ids, np.full(k, 1.0 / k), seed)
    sample_fold = fold[group_ids]
    return [_split_for(sample_fold, test_bin=index) for index in range(k)]


def _encode(labels, groups) -> tuple[np.ndarray, np.ndarray]:
    """Labels and groups as dense integer codes 0..n-1, after checking they match."""
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if labels.ndim != 1 or groups.ndim != 1:
        raise ValueError("labels and groups must be one-dimensional arrays")
    if len(labels) != len(groups):
        raise ValueError(f"labels ({len(labels)}) and groups ({len(groups)}) differ in length")
    if len(labels) == 0:
        raise ValueError("cannot split an empty set of samples")
    _, class_ids = np.unique(labels, return_inverse=True)
    _, group_ids = np.unique(groups, return_inverse=True)
    return class_ids.ravel(), group_ids.ravel()


def _assign_groups(class_ids: np.ndarray, group_ids: np.ndarray, shares: np.ndarray, seed: int) -> np.ndarray:
    """The bin (side or fold) of every group, for bins meant to hold ``shares`` of the samples."""
    rng = np.random.default_rng(seed)
    group_class_counts = np.zeros((group_ids.max() + 1, class_ids.max() + 1))
    np.add.at(group_class_counts, (group_ids, class_ids), 1)
    target = np.outer(shares, group_class_counts.sum(axis=0))
    filled = np.zeros_like(target)
    group_bin = np.full(len(group_class_counts), -1)
    order = _visiting_order(group_class_counts.sum(axis=1), rng)
    for position, group in enumerate(order):
        candidates = _open_bins(group_bin, len(shares), remaining=len(order) - position)
        chosen = _best_bin(filled, target, group_class_counts[group], candidates, rng)
        filled[chosen] += group_class_counts[group]
        group_bin[group] = chosen
    return group_bin


def _visiting_order(group_sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Groups roughly biggest first: big groups placed early are easy to balance around."""
    jitter = rng.uniform(1.0 - ORDER_JITTER, 1.0 + ORDER_JITTER, size=len(group_sizes))
    return np.argsort(-group_sizes * jitter, kind="stable")


def _open_bins(group_bin: np.ndarray, bin_count: int, remaining: int) -> np.ndarray:
    """Bins the next group may join: only the empty ones once the remaining groups are just enough."""
    empty = np.setdiff1d(np.arange(bin_count), group_bin)
    if len(empty) > 0 and len(empty) >= remaining:
        return empty
    return np.arange(bin_count)


def _best_bin(filled, target, group_counts, candidates, rng) -> int:
    """The candidate bin whose distance to its target the group reduces most (ties: at random)."""
    change = _distance(filled[candidates] + group_counts, target[candidates]) - _distance(
        filled[candidates], target[candidates]
    )
    best = np.flatnonzero(change <= change.min() + 1e-9)
    return int(candidates[rng.choice(best)])


def _distance(counts: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Squared miss of each bin's class counts plus squared miss of its size.

    The size term matters when every group holds one class: class counts alone then let a small
    side stay empty, because any single group overshoots that side's share of its class.
    """
    class_miss = ((counts - target) ** 2).sum(axis=1)
    size_miss = (counts.sum(axis=1) - target.sum(axis=1)) ** 2
    return class_miss + size_miss


def _split_for(sample_bin: np.ndarray, test_bin: int) -> Split:
    return Split(
        train=np.flatnonzero(sample_bin != test_bin).astype(np.int64),
        test=np.flatnonzero(sample_bin == test_bin).astype(np.int64),
    )
