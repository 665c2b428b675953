"""The FePh loader: kept images, every drop reason counted, refused IDs, layout errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from feph_finetune import CLASSES
from feph_finetune import DatasetError, read_image
from feph_finetune.data import images
from feph_finetune_plugins.feph import DROP_REASONS, read_release as load_dataset
from fephfixture import IMAGES_DIR, LABELS_CSV, frame_name, write_feph_fixture, write_png


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "feph"
    expected = write_feph_fixture(root)
    return root, expected


def test_counts_kept_images_per_class(release):
    root, expected = release
    dataset = load_dataset(root)
    assert len(dataset.samples) == expected["images"]
    counts = np.bincount(dataset.labels(), minlength=len(CLASSES))
    assert dict(zip(CLASSES, counts.tolist())) == expected["classes"]


def test_every_row_is_kept_or_counted_under_its_reason(release):
    root, expected = release
    dataset = load_dataset(root)
    assert dataset.dropped == expected["dropped"]
    assert list(dataset.dropped) == list(DROP_REASONS)
    assert len(dataset.samples) + sum(dataset.dropped.values()) == expected["rows"]
    assert len(dataset.dropped_entries) == sum(dataset.dropped.values())


def test_samples_carry_existing_files_and_grouping_keys(release):
    root, expected = release
    dataset = load_dataset(root)
    image_folder = (root / IMAGES_DIR).resolve()
    assert all(sample.path.is_file() and sample.path.is_relative_to(image_folder) for sample in dataset.samples)
    sizes = {}
    for sample in dataset.samples:
        sizes[sample.groups["sequence"]] = sizes.get(sample.groups["sequence"], 0) + 1
        assert sample.groups["sequence"].startswith(sample.groups["signer"] + "_default")
    assert sizes == expected["sequence_sizes"]
    assert len(set(dataset.groups("signer"))) == expected["signers"]


def test_label_codes_map_to_class_indices(tmp_path):
    root = tmp_path / "feph"
    codes = {"0": "neutral", "1": "anger", "2": "disgust", "3": "fear", "4": "happy", "5": "sad", "6": "surprise"}
    lines = ["External ID,Facial_label"]
    for code in codes:
        write_png(root / "images" / f"img{code}.png", value=int(code))
        lines.append(f"img{code}.png,{code}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    dataset = load_dataset(root)
    assert [CLASSES[sample.label] for sample in dataset.samples] == list(codes.values())


def test_outside_ids_are_refused_even_though_the_file_is_a_valid_image(release):
    root, _ = release
    assert read_image(root / "outside.png").shape[2] == 3
    dataset = load_dataset(root)
    outside_rows = [row.entry for row in dataset.dropped_entries if row.reason == "outside_root"]
    assert sorted(outside_rows) == sorted(["../outside.png", "../outside", str((root / "outside.png").resolve())])
    assert all(sample.path.parent == (root / IMAGES_DIR).resolve() for sample in dataset.samples)


def test_outside_ids_are_never_opened(release, monkeypatch):
    root, _ = release
    opened = []
    real_read = images.read_user_file

    def spy(path, limit):
        opened.append(Path(path).name)
        return real_read(path, limit)

    monkeypatch.setattr(images, "read_user_file", spy)  # the one reader of image files
    load_dataset(root)
    assert "outside.png" not in opened
    assert "broken.png" in opened  # the spy does see the loader's reads


def test_symlink_escaping_the_image_folder_is_refused(tmp_path):
    root = tmp_path / "feph"
    write_png(root / "secret.png", value=1)
    write_png(root / "images" / "inside.png", value=2)
    (root / "images" / "link.png").symlink_to(root / "secret.png")
    (root / "labels.csv").write_text("External ID,Facial_label\ninside.png,1\nlink.png,1\nlink,2\n")
    dataset = load_dataset(root)
    assert len(dataset.samples) == 1
    assert dataset.dropped["outside_root"] == 2


def test_bad_cells_never_crash_the_loader(tmp_path):
    root = tmp_path / "feph"
    write_png(root / "images" / "a.png")
    write_png(root / "images" / "b.png", value=1)
    long_name = "x" * 5000
    (root / "labels.csv").write_text(
        "External ID,Facial_label,Gender\n"
        "a.png,1\n"  # short row
        f"{long_name},2,male\n"
        ",3,female\n"
        "b.png, 07 ,male\n"
    )
    dataset = load_dataset(root)
    assert len(dataset.samples) == 1
    assert dataset.dropped["missing_file"] == 2
    assert dataset.dropped["multi_label"] == 1


def test_overrides_relative_and_absolute(release, tmp_path):
    root, expected = release
    moved_csv = tmp_path / "elsewhere" / "labels.csv"
    moved_csv.parent.mkdir()
    shutil.move(root / LABELS_CSV, moved_csv)
    with pytest.raises(DatasetError, match="no labels CSV"):
        load_dataset(root)
    dataset = load_dataset(root, labels_csv=str(moved_csv), images_dir=IMAGES_DIR)
    assert len(dataset.samples) == expected["images"]


def test_csv_one_level_down_is_found(tmp_path):
    root = tmp_path / "feph"
    expected = write_feph_fixture(root / "release")
    dataset = load_dataset(root)
    assert len(dataset.samples) == expected["images"]


def test_layout_errors_name_the_culprit(tmp_path):
    root = tmp_path / "feph"
    write_png(root / "images" / "a.png")
    (root / "labels.csv").write_text("External ID,Label\na.png,1\n")
    with pytest.raises(DatasetError, match="Facial_label"):
        load_dataset(root)
    (root / "other.csv").write_text("External ID,Facial_label\n")
    with pytest.raises(DatasetError, match=r"labels\.csv.*other\.csv|other\.csv.*labels\.csv"):
        load_dataset(root)
    with pytest.raises(DatasetError, match="missing.csv"):
        load_dataset(root, labels_csv="missing.csv")
    with pytest.raises(DatasetError, match="nowhere: no such folder"):
        load_dataset(tmp_path / "nowhere")


def test_two_image_folders_are_ambiguous(release):
    root, _ = release
    write_png(root / "crops" / "a.png")
    with pytest.raises(DatasetError, match="crops"):
        load_dataset(root)
    assert load_dataset(root, images_dir=IMAGES_DIR).samples


def test_read_image_drops_alpha_and_swaps_to_rgb(tmp_path):
    bgra = np.zeros((4, 5, 4), dtype=np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 40
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [30, 20, 10]


def test_read_image_expands_grey_and_scales_16_bit(tmp_path):
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((3, 3), 77, dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((3, 3, 3), 0xFF00, dtype=np.uint16))
    assert read_image(tmp_path / "grey.png").tolist() == [[[77] * 3] * 3] * 3
    deep = read_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint8 and (deep == 0xFF).all()


def test_read_image_refuses_a_non_image(tmp_path):
    (tmp_path / "fake.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="fake.png"):
        read_image(tmp_path / "fake.png")
    with pytest.raises(DatasetError, match="gone.png"):
        read_image(tmp_path / "gone.png")


def test_frame_names_without_the_pattern_are_their_own_sequence(tmp_path):
    root = tmp_path / "feph"
    write_png(root / "images" / "plain.png")
    write_png(root / "images" / frame_name("09May_2010_Sunday", 3, 12))
    (root / "labels.csv").write_text(
        f"External ID,Facial_label\nplain,1\n{frame_name('09May_2010_Sunday', 3, 12)[:-4]},2\n")
    samples = load_dataset(root).samples
    assert [(s.groups["sequence"], s.groups["signer"]) for s in samples] == [
        ("plain", "plain"),
        ("09May_2010_Sunday_tagesschau_default-3", "09May_2010_Sunday_tagesschau"),
    ]


# --- one image, one sample at most (issue 12 §2) ----------------------------------------------


def write_rows(root, rows: list[tuple[str, str]], names: list[str]) -> None:
    for number, name in enumerate(names):
        write_png(root / "images" / name, value=number)
    lines = ["External ID,Facial_label"] + [f"{external_id},{label}" for external_id, label in rows]
    (root / "labels.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


FRAMES = [frame_name("01April_2010_Thursday", frame % 2, frame) for frame in range(4)]   # two sequences


def reasons(dataset) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for row in dataset.dropped_entries:
        found.setdefault(row.reason, []).append(row.line)
    return found


def test_an_exact_repeat_is_one_sample_and_a_duplicate_row(tmp_path):
    write_rows(tmp_path, [(FRAMES[0], "1"), (FRAMES[1], "2"), (FRAMES[0], "1")], FRAMES[:2])
    dataset = load_dataset(tmp_path)
    assert sorted(sample.path.name for sample in dataset.samples) == sorted(FRAMES[:2])
    assert reasons(dataset) == {"duplicate_row": [4]}
    assert dataset.dropped["duplicate_row"] == 1


def test_an_id_with_and_without_png_is_one_sample(tmp_path):
    write_rows(tmp_path, [(FRAMES[0][: -len(".png")], "3"), (FRAMES[0], "3.0")], FRAMES[:1])
    dataset = load_dataset(tmp_path)
    assert [(sample.path.name, CLASSES[sample.label]) for sample in dataset.samples] == [(FRAMES[0], "fear")]
    assert reasons(dataset) == {"duplicate_row": [3]}


def test_conflicting_labels_drop_every_row_of_that_file(tmp_path):
    rows = [(FRAMES[0], "1"), (FRAMES[1], "4"), (FRAMES[0][: -len(".png")], "5"), (FRAMES[2], "6"), (FRAMES[2], "7")]
    write_rows(tmp_path, rows, FRAMES[:3])
    dataset = load_dataset(tmp_path)
    assert [sample.path.name for sample in dataset.samples] == [FRAMES[1]]
    assert reasons(dataset) == {"conflicting_labels": [2, 4, 5, 6]}
    assert len(dataset.samples) + sum(dataset.dropped.values()) == len(rows)


def test_spreadsheet_floats_are_read_as_label_codes():
    from feph_finetune_plugins.feph import label_reason

    assert label_reason("3.0") == CLASSES.index("fear")
    assert label_reason(" 0.00 ") == CLASSES.index("neutral")
    assert label_reason("7.0") == "none"
    assert label_reason("36.0") == "multi_label"
    assert label_reason("3.5") == "unknown_label"


def test_the_data_command_shows_repeats_and_conflicts(tmp_path, capsys):
    from feph_finetune.cli import main

    rows = [(FRAMES[0], "1"), (FRAMES[0], "1"), (FRAMES[1], "2"), (FRAMES[1], "3"), (FRAMES[2], "4"), (FRAMES[3], "5")]
    write_rows(tmp_path, rows, FRAMES)
    assert main(["data", str(tmp_path), "--json", "--folds", "2"]) == 0  # --folds 0 is refused (folds >= 2)
    description = json.loads(capsys.readouterr().out)
    assert description["images"] == 3
    assert description["dropped"]["duplicate_row"] == 1 and description["dropped"]["conflicting_labels"] == 2
    assert description["fingerprint"] == load_dataset(tmp_path).fingerprint


# --- the data fingerprint ----------------------------------------------------------------------


def test_the_fingerprint_changes_with_labels_images_and_the_set_of_images(tmp_path):
    rows = [(FRAMES[0], "1"), (FRAMES[1], "2"), (FRAMES[2], "3")]
    write_rows(tmp_path, rows, FRAMES[:2])          # FRAMES[2] is missing at first
    first = load_dataset(tmp_path).fingerprint
    assert first == load_dataset(tmp_path).fingerprint == load_dataset(tmp_path, decode=False).fingerprint
    fingerprints = {first}

    (tmp_path / "labels.csv").write_text((tmp_path / "labels.csv").read_text().replace(f"{FRAMES[1]},2", f"{FRAMES[1]},4"))
    fingerprints.add(load_dataset(tmp_path).fingerprint)
    write_png(tmp_path / "images" / FRAMES[2], value=50)           # a listed image appears
    fingerprints.add(load_dataset(tmp_path).fingerprint)
    write_png(tmp_path / "images" / FRAMES[0], value=99)           # an image is replaced
    stamp = (tmp_path / "images" / FRAMES[0]).stat().st_mtime_ns
    os.utime(tmp_path / "images" / FRAMES[0], ns=(stamp + 10**9, stamp + 10**9))
    fingerprints.add(load_dataset(tmp_path).fingerprint)
    assert len(fingerprints) == 4

    before = load_dataset(tmp_path).fingerprint
    write_png(tmp_path / "images" / "unlisted.png", value=7)       # a file no row names changes nothing
    assert load_dataset(tmp_path).fingerprint == before
