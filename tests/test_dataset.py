"""The FePh loader: kept images, every drop reason counted, refused IDs, layout errors."""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest

from feph_finetune import CLASSES
from feph_finetune.dataset import DROP_REASONS, DatasetError, load_dataset, read_image
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
    assert len(dataset.dropped_rows) == sum(dataset.dropped.values())


def test_samples_carry_existing_files_and_grouping_keys(release):
    root, expected = release
    dataset = load_dataset(root)
    image_folder = (root / IMAGES_DIR).resolve()
    assert all(sample.path.is_file() and sample.path.is_relative_to(image_folder) for sample in dataset.samples)
    sizes = {}
    for sample in dataset.samples:
        sizes[sample.sequence] = sizes.get(sample.sequence, 0) + 1
        assert sample.sequence.startswith(sample.signer + "_default")
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
    outside_rows = [row.external_id for row in dataset.dropped_rows if row.reason == "outside_root"]
    assert sorted(outside_rows) == sorted(["../outside.png", "../outside", str((root / "outside.png").resolve())])
    assert all(sample.path.parent == (root / IMAGES_DIR).resolve() for sample in dataset.samples)


def test_outside_ids_are_never_opened(release, monkeypatch):
    root, _ = release
    opened = []
    real_read_bytes = type(root).read_bytes

    def spy(path):
        opened.append(path.name)
        return real_read_bytes(path)

    monkeypatch.setattr(type(root), "read_bytes", spy)
    load_dataset(root)
    assert "outside.png" not in opened
    assert "broken.png" in opened  # the spy does see the loader's reads


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_escaping_the_image_folder_is_refused(tmp_path):
    root = tmp_path / "feph"
    write_png(root / "secret.png", value=1)
    write_png(root / "images" / "inside.png", value=2)
    try:
        (root / "images" / "link.png").symlink_to(root / "secret.png")
    except OSError:
        pytest.skip("symlinks not permitted here")
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
    with pytest.raises(DatasetError, match="not a folder"):
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
    assert [(s.sequence, s.signer) for s in samples] == [
        ("plain", "plain"),
        ("09May_2010_Sunday_tagesschau_default-3", "09May_2010_Sunday_tagesschau"),
    ]
