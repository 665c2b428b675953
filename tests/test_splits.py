"""Grouped, stratified splits: groups never straddle sides, folds partition, seeds matter."""

from __future__ import annotations

import numpy as np
import pytest

from feph_finetune.data.splits import holdout_split, kfold_splits

#: The paper's training-set class shares (Table 1): an imbalanced distribution to stratify.
PAPER_SHARES = np.array([18.30, 7.72, 12.43, 7.92, 7.58, 14.36, 31.85]) / 100.0


def sequences_like_feph(group_count: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Labels and sequence ids: groups of 1-12 frames, mostly of one class each, as in video."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    shares = PAPER_SHARES / PAPER_SHARES.sum()
    for group in range(group_count):
        main_class = rng.choice(7, p=shares)
        for _ in range(rng.integers(1, 13)):
            labels.append(main_class if rng.random() < 0.7 else rng.choice(7, p=shares))
            groups.append(f"seq{group:04d}")
    return np.array(labels), np.array(groups)


def shares_of(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels, minlength=7) / len(labels)


def test_holdout_keeps_groups_whole_and_covers_everything():
    labels, groups = sequences_like_feph()
    split = holdout_split(labels, groups, test_fraction=0.2, seed=0)
    assert not set(groups[split.train]) & set(groups[split.test])
    assert np.array_equal(np.sort(np.concatenate([split.train, split.test])), np.arange(len(labels)))
    assert np.all(np.diff(split.train) > 0) and np.all(np.diff(split.test) > 0)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.35])
def test_holdout_test_fraction_is_near_target(fraction):
    labels, groups = sequences_like_feph()
    split = holdout_split(labels, groups, test_fraction=fraction, seed=3)
    assert len(split.test) / len(labels) == pytest.approx(fraction, abs=0.02)


def test_holdout_preserves_class_proportions():
    labels, groups = sequences_like_feph()
    split = holdout_split(labels, groups, test_fraction=0.2, seed=0)
    overall = shares_of(labels)
    assert np.abs(shares_of(labels[split.test]) - overall).max() < 0.02
    assert np.abs(shares_of(labels[split.train]) - overall).max() < 0.02


def test_folds_partition_all_indices_with_whole_groups():
    labels, groups = sequences_like_feph()
    folds = kfold_splits(labels, groups, k=5, seed=0)
    assert len(folds) == 5
    tests = np.concatenate([fold.test for fold in folds])
    assert np.array_equal(np.sort(tests), np.arange(len(labels)))
    for fold in folds:
        assert not set(groups[fold.train]) & set(groups[fold.test])
        assert np.array_equal(np.sort(np.concatenate([fold.train, fold.test])), np.arange(len(labels)))


def test_folds_are_balanced_in_size_and_classes():
    labels, groups = sequences_like_feph()
    folds = kfold_splits(labels, groups, k=5, seed=2)
    overall = shares_of(labels)
    for fold in folds:
        assert len(fold.test) / len(labels) == pytest.approx(0.2, abs=0.02)
        assert np.abs(shares_of(labels[fold.test]) - overall).max() < 0.03


def test_same_seed_same_split_other_seed_other_split():
    labels, groups = sequences_like_feph()
    first = holdout_split(labels, groups, seed=5)
    again = holdout_split(labels, groups, seed=5)
    other = holdout_split(labels, groups, seed=6)
    assert np.array_equal(first.test, again.test) and np.array_equal(first.train, again.train)
    assert not np.array_equal(first.test, other.test)
    folds, folds_again = kfold_splits(labels, groups, seed=5), kfold_splits(labels, groups, seed=5)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, folds_again))
    other_folds = kfold_splits(labels, groups, seed=6)
    assert any(not np.array_equal(a.test, b.test) for a, b in zip(folds, other_folds))


def test_every_fold_gets_a_group_even_when_one_group_dominates():
    labels = np.zeros(104, dtype=int)
    groups = np.array(["big"] * 100 + ["a", "b", "c", "d"])
    folds = kfold_splits(labels, groups, k=5)
    assert sorted(len(fold.test) for fold in folds) == [1, 1, 1, 1, 100]


def test_a_tiny_test_fraction_still_gets_a_group():
    labels = np.zeros(20, dtype=int)
    groups = np.repeat(["a", "b"], 10)
    split = holdout_split(labels, groups, test_fraction=0.01)
    assert len(split.test) == 10 and len(split.train) == 10


def test_impossible_splits_are_refused_clearly():
    labels = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="5 folds need at least 5 groups"):
        kfold_splits(labels, np.array(["a", "a", "b", "c"]), k=5)
    with pytest.raises(ValueError, match="at least 2 groups"):
        holdout_split(labels, np.array(["a"] * 4))
    with pytest.raises(ValueError, match="test_fraction"):
        holdout_split(labels, np.array(["a", "b", "c", "d"]), test_fraction=1.0)
    with pytest.raises(ValueError, match="differ in length"):
        holdout_split(labels, np.array(["a", "b"]))
    with pytest.raises(ValueError, match="k must be"):
        kfold_splits(labels, np.array(["a", "b", "c", "d"]), k=1)
    with pytest.raises(ValueError, match="empty"):
        kfold_splits(np.array([], dtype=int), np.array([], dtype=str))


def test_single_class_groups_still_fill_a_small_test_side():
    labels = np.repeat(np.arange(7), 4)
    groups = np.array([f"class{label}-seq{i // 2}" for i, label in enumerate(labels)])
    split = holdout_split(labels, groups, test_fraction=0.2, seed=0)
    assert len(split.test) == 6
    folds = kfold_splits(labels, groups, k=5, seed=0)
    assert sorted(len(fold.test) for fold in folds) == [4, 6, 6, 6, 6]
