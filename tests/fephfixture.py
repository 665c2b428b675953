"""Write a tiny FePh-format release for tests: a labels CSV, RGBA PNGs and every kind of bad row
(and a ``.keras`` file as the configuration check reads it).

``write_feph_fixture`` returns the counts a correct loader must report, so tests compare against
what was written rather than against numbers copied from a run.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import cv2
import numpy as np

#: FePh label code of each class (SPEC §2), in ``feph_finetune.CLASSES`` order.
CLASS_CODES = {"anger": "1", "disgust": "2", "fear": "3", "happy": "4", "neutral": "0", "sad": "5", "surprise": "6"}

IMAGES_DIR = "FePh_images"
LABELS_CSV = "FePh_labels.csv"

DATES = ("01April_2010_Thursday", "02May_2011_Monday", "03June_2009_Friday", "04July_2010_Sunday",
         "05August_2011_Tuesday", "06October_2009_Wednesday", "07January_2010_Saturday")


def frame_name(date: str, sequence: int, frame: int) -> str:
    """A file name in the release's pattern; its sequence is ``<date>_tagesschau_default-<sequence>``."""
    return f"{date}_tagesschau_default-{sequence}.avi_pid0_fn{frame:06d}-0.png"


def write_png(path: Path, size=(64, 48), value: int = 0, channels: int = 4) -> None:
    """Write a small PNG (width, height) whose pixels depend on ``value`` (RGBA by default)."""
    width, height = size
    rng = np.random.default_rng(value)
    image = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    if channels == 4:
        image[..., 3] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def write_feph_fixture(root: Path, per_class: int = 4, sequences_per_class: int = 2, size=(64, 48)) -> dict:
    """Write ``root/FePh_labels.csv`` and ``root/FePh_images/``; return the expected counts.

    Each class gets ``per_class`` good images spread over ``sequences_per_class`` sequences of its
    own signer (date). Every third good ID omits ``.png``, one label carries whitespace. Then one
    or more rows for every drop reason, including ``../outside.png`` (a valid image outside the
    image folder) and an absolute path, which a loader must refuse without opening.

    Returns ``{"rows", "images", "classes", "sequences", "signers", "dropped", "sequence_sizes"}``.
    """
    root = Path(root)
    images = root / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    classes: dict[str, int] = {}
    sequence_sizes: dict[str, int] = {}
    for class_index, (name, code) in enumerate(CLASS_CODES.items()):
        date = DATES[class_index % len(DATES)]
        for i in range(per_class):
            sequence = i % sequences_per_class
            file_name = frame_name(date, sequence, frame=i)
            write_png(images / file_name, size, value=class_index * 1000 + i)
            external_id = file_name[: -len(".png")] if len(rows) % 3 == 0 else file_name
            rows.append((external_id, f" {code} " if i == 1 else code))
            key = f"{date}_tagesschau_default-{sequence}"
            sequence_sizes[key] = sequence_sizes.get(key, 0) + 1
        classes[name] = per_class

    dropped = _write_bad_rows(root, images, rows, size)
    _write_csv(root / LABELS_CSV, rows)
    return {
        "rows": len(rows),
        "images": sum(classes.values()),
        "classes": classes,
        "sequences": len(sequence_sizes),
        "signers": len({key.partition("_default")[0] for key in sequence_sizes}),
        "dropped": dropped,
        "sequence_sizes": sequence_sizes,
    }


def _write_bad_rows(root: Path, images: Path, rows: list[tuple[str, str]], size) -> dict[str, int]:
    """Append one or more rows per drop reason; return the count of each reason."""
    def own_image(number: int) -> str:  # a file no other row names: one image, one row
        name = f"label_defect_{number}.png"
        write_png(images / name, size, value=9000 + number)
        return name

    write_png(root / "outside.png", size, value=7)
    (images / "broken.png").write_bytes(b"this is not a PNG file")
    (images / "empty.png").write_bytes(b"")
    bad = {
        "multi_label": [(own_image(0), "36"), ("../outside.png", "07")],  # label reasons come first
        "no_label": [(own_image(1), ""), (own_image(2), "Face_not_visible")],
        "none": [(own_image(3), "7")],
        "unknown_label": [(own_image(4), "3.5"), (own_image(5), "9"), (own_image(6), "happy")],
        "missing_file": [("does_not_exist.png", "2"), ("nope", "4")],
        "unreadable": [("broken.png", "1"), ("empty", "5")],
        "outside_root": [("../outside.png", "0"), ("../outside", "3"), (str((root / "outside.png").resolve()), "6")],
    }
    for reason_rows in bad.values():
        rows.extend(reason_rows)
    return {reason: len(bad.get(reason, [])) for reason in
            ("none", "multi_label", "no_label", "unknown_label", "missing_file", "unreadable", "outside_root",
             "duplicate_row", "conflicting_labels")}


def _write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    """The release's columns: Index, External ID, Facial_label, Gender."""
    with open(path, "w", newline="", encoding="utf-8-sig") as stream:  # a BOM, as spreadsheets write
        writer = csv.writer(stream)
        writer.writerow(["Index", "External ID", "Facial_label", "Gender"])
        for index, (external_id, label) in enumerate(rows):
            writer.writerow([index, external_id, label, "female" if index % 2 else "male"])


def write_keras_archive(path) -> None:
    """A ``.keras`` file as validation reads it, without TensorFlow: a zip holding a model's
    ``config.json`` (any input side, 7 softmax outputs) and a ``model.weights.h5`` that starts
    as HDF5 files do (validation reads no weights; the run loads them)."""
    layers = [{"class_name": "InputLayer", "config": {"name": "image", "batch_shape": [None, None, None, 3]}},
              {"class_name": "Dense", "config": {"name": "classes", "units": 7, "activation": "softmax"}}]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"name": "m", "layers": layers}}))
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))
