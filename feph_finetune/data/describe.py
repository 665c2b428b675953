"""Describe a loaded release: what was kept, what was dropped and why, and how it would be split.

This is what ``python -m feph_finetune data ROOT`` shows before any training, so that a user can
compare their copy of FePh with the paper's (2,531 images, SPEC §2) and see the splits a run
would use. No TensorFlow here.
"""

from __future__ import annotations

from collections import Counter

from rich.table import Table

from feph_finetune.api import CLASSES
from feph_finetune.data.feph import DROP_REASONS, Dataset
from feph_finetune.data.splits import Split, holdout_split, kfold_splits

#: What each drop reason means, for people reading the table.
REASON_TEXT = {
    "none": "label 7, none of the above",
    "multi_label": "several labels in one cell",
    "no_label": "empty or Face_not_visible",
    "unknown_label": "not a label code 0-7",
    "missing_file": "no such image file",
    "unreadable": "file is not a decodable image",
    "outside_root": "ID points outside the image folder",
    "duplicate_row": "repeats an earlier row's image and label",
    "conflicting_labels": "image listed with different labels",
}


def describe_dataset(dataset: Dataset, folds: int = 5, seed: int = 0, test_fraction: float = 0.2,
                     group_by: str = "sequence") -> dict:
    """A JSON-ready summary of ``dataset`` and of its hold-out split and ``folds`` folds.

    Splits group by ``group_by`` (``"sequence"`` or ``"signer"``) but always list the test
    sequences. ``folds=0`` leaves cross-validation out; a dataset without images has empty
    splits. Raises ValueError when the data cannot be split so (too few groups for the folds).
    """
    labels = dataset.labels()
    sequences = dataset.groups("sequence")
    groups = dataset.groups(group_by)
    class_counts = Counter(labels.tolist())
    description = {
        "images": len(dataset.samples),
        "classes": {name: class_counts.get(index, 0) for index, name in enumerate(CLASSES)},
        "sequences": len(set(sequences.tolist())),
        "fingerprint": dataset.fingerprint,
        "dropped": {reason: int(dataset.dropped.get(reason, 0)) for reason in DROP_REASONS},
        "holdout": {"train": 0, "test": 0, "test_sequences": []},
        "folds": [],
    }
    if not dataset.samples:
        return description
    holdout = holdout_split(labels, groups, test_fraction=test_fraction, seed=seed)
    description["holdout"] = {"train": len(holdout.train), **_test_side(holdout, sequences)}
    if folds:
        description["folds"] = [_test_side(split, sequences) for split in kfold_splits(labels, groups, k=folds, seed=seed)]
    return description


def render_description(description: dict, console) -> None:
    """Print the description as rich tables: classes, dropped rows, split sizes."""
    console.print(_class_table(description))
    console.print(_dropped_table(description))
    console.print(_split_table(description))


def _test_side(split: Split, sequences) -> dict:
    return {"test": len(split.test), "test_sequences": sorted(set(sequences[split.test].tolist()))}


def _class_table(description: dict) -> Table:
    images = description["images"]
    table = Table(title=f"{images} images in {description['sequences']} sequences",
                  caption=f"data fingerprint {description['fingerprint']}" if description.get("fingerprint") else None)
    table.add_column("class")
    table.add_column("images", justify="right")
    table.add_column("share", justify="right")
    for name, count in description["classes"].items():
        share = f"{100.0 * count / images:.1f}%" if images else "-"
        table.add_row(name, str(count), share)
    return table


def _dropped_table(description: dict) -> Table:
    dropped = description["dropped"]
    table = Table(title=f"{sum(dropped.values())} rows dropped")
    table.add_column("reason")
    table.add_column("rows", justify="right")
    table.add_column("meaning")
    for reason, count in dropped.items():
        table.add_row(reason, str(count), REASON_TEXT.get(reason, ""))
    return table


def _split_table(description: dict) -> Table:
    holdout = description["holdout"]
    table = Table(title="Splits")
    table.add_column("split")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    table.add_column("test sequences", justify="right")
    table.add_row("hold-out", str(holdout["train"]), str(holdout["test"]), str(len(holdout["test_sequences"])))
    images = description["images"]
    for index, fold in enumerate(description["folds"]):
        table.add_row(f"fold {index + 1}", str(images - fold["test"]), str(fold["test"]),
                      str(len(fold["test_sequences"])))
    return table
