"""The ``folders`` format follows links that stay inside the dataset and no others (issue 22):
a link to ``/`` in a class folder walked the whole file system for 26 s, then failed on
``/proc``; a folder that cannot be looked at failed the whole dataset."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from feph_finetune.data.datasets import load_dataset



def write_image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((8, 8, 3), value, dtype=np.uint8))


def test_links_outside_the_dataset_and_loops_are_dropped_and_links_inside_followed(tmp_path):
    root = tmp_path / "FD"
    for index in range(2):
        write_image(root / "happy" / f"h{index}.png", 10 + index)
        write_image(root / "sad" / f"s{index}.png", 50 + index)
    write_image(root / "happy" / "nested" / "h9.png", 30)
    write_image(tmp_path / "elsewhere" / "x.png", 90)
    os.symlink("/", root / "happy" / "rootlink")
    os.symlink(tmp_path / "elsewhere", root / "sad" / "outside")
    os.symlink(root / "happy", root / "happy" / "nested" / "loop")
    write_image(root / "pool" / "p.png", 70)  # no class: a folder the classes setting leaves out
    os.symlink(root / "pool", root / "sad" / "shared")  # inside the root: followed
    dataset = load_dataset({"root": str(root), "format": "folders", "classes": ["happy", "sad"]}, decode=False)
    dropped = Counter(entry.reason for entry in dataset.dropped_entries)
    assert dropped == {"link_outside": 2, "link_cycle": 1}, dataset.dropped_entries
    assert {entry.entry for entry in dataset.dropped_entries} == {"happy/rootlink", "sad/outside", "happy/nested/loop"}
    files = sorted(Path(sample.path).relative_to(root).as_posix() for sample in dataset.samples)
    assert files == ["happy/h0.png", "happy/h1.png", "happy/nested/h9.png", "sad/s0.png", "sad/s1.png", "sad/shared/p.png"], files
    assert set(dataset.drop_reasons) >= {"link_outside", "link_cycle", "unreadable_folder"}


def test_a_file_or_folder_that_cannot_be_looked_at_is_dropped_not_a_plugin_failure(tmp_path, monkeypatch):
    root = tmp_path / "FD"
    for index in range(2):
        write_image(root / "happy" / f"h{index}.png", 10 + index)
        write_image(root / "sad" / f"s{index}.png", 50 + index)
    write_image(root / "sad" / "locked" / "s9.png", 70)
    secret = root / "happy" / "secret.png"
    write_image(secret, 99)
    real_exists, real_scandir = Path.exists, os.scandir

    def exists(path, *args, **kwargs):
        if path == secret:
            raise PermissionError(13, "Permission denied", str(path))
        return real_exists(path, *args, **kwargs)

    def scandir(path="."):
        if Path(path) == root / "sad" / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    # root may read every file here, so a refused look is simulated where the walk makes it
    monkeypatch.setattr(Path, "exists", exists)
    monkeypatch.setattr(os, "scandir", scandir)
    dataset = load_dataset({"root": str(root), "format": "folders"}, decode=False)
    assert sorted((entry.entry, entry.reason) for entry in dataset.dropped_entries) == [
        ("happy/secret.png", "unreadable"), ("sad/locked", "unreadable_folder")]
    assert len(dataset.samples) == 4
