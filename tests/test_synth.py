"""The synthetic FePh-format generator: the release's layout, its defects, determinism, realism."""

from __future__ import annotations

import csv
import hashlib
import re
import signal
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from feph_finetune import CLASSES
from feph_finetune.cli import main
from feph_finetune.demo.synth import TABLE1_SHARES, Frame, make_signers, render_frame, write_synthetic_dataset

from conftest import synth_writing_images

NAME_PATTERN = re.compile(r"^(.+?)\.avi_pid\d+_fn(\d+)-\d+(\.png)?$")
CODES = {"0": "neutral", "1": "anger", "2": "disgust", "3": "fear", "4": "happy", "5": "sad", "6": "surprise"}


@pytest.fixture(scope="module")
def feph(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "FePh"
    return root, write_synthetic_dataset(root, images=100, seed=3)


def read_rows(root: Path) -> list[dict]:
    with open(root / "FePh_labels.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def row_kind(root: Path, row: dict) -> str:
    """What a careful loader would make of a row, judged from the files alone."""
    label, external_id = row["Facial_label"], row["External ID"]
    images = (root / "FePh_images").resolve()
    path = (images / external_id).resolve()
    if images not in path.parents:
        return "outside_root"
    if label == "":
        return "empty_label"
    if label == "Face_not_visible":
        return "face_not_visible"
    if label == "7":
        return "none_label"
    if len(label) > 1 and set(label) <= set("01234567"):
        return "multi_label"
    if label not in CODES:
        return "unknown_label"
    on_disk = path if path.is_file() else path.with_name(path.name + ".png")
    if not on_disk.is_file():
        return "missing_file"
    if cv2.imread(str(on_disk), cv2.IMREAD_UNCHANGED) is None:
        return "unreadable_file"
    return "valid_no_extension" if on_disk != path else "valid"


def kept_images(root: Path) -> list[tuple[np.ndarray, str]]:
    """(BGR image, class) of every row a loader keeps."""
    kept = []
    for row in read_rows(root):
        if row_kind(root, row) in ("valid", "valid_no_extension"):
            name = row["External ID"] if row["External ID"].endswith(".png") else row["External ID"] + ".png"
            image = cv2.imread(str(root / "FePh_images" / name), cv2.IMREAD_UNCHANGED)
            kept.append((image, CODES[row["Facial_label"]]))
    return kept


def file_hashes(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_labels_csv_has_exactly_the_release_columns(feph):
    root, _ = feph
    with open(root / "FePh_labels.csv", newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header == ["Index", "External ID", "Facial_label", "Gender"]


def test_images_are_rgba_pngs_of_phoenix_size(feph):
    root, _ = feph
    images = kept_images(root)
    assert images
    for image, _ in images:
        assert image.shape == (260, 210, 4)
        assert (image[:, :, 3] == 255).all()


def test_every_kind_of_bad_row_is_present(feph):
    root, summary = feph
    kinds = Counter(row_kind(root, row) for row in read_rows(root))
    for kind in ("none_label", "multi_label", "empty_label", "face_not_visible", "unknown_label",
                 "missing_file", "unreadable_file", "outside_root", "valid_no_extension"):
        assert kinds[kind] >= 1, f"no {kind} row in {dict(kinds)}"
    assert kinds["valid"] + kinds["valid_no_extension"] == 100 == summary["kept"]
    assert kinds["none_label"] == summary["bad_rows"]["none_label"]


def test_class_balance_follows_table_1(feph):
    root, summary = feph
    counts = Counter(label for _, label in kept_images(root))
    assert counts == Counter(summary["per_class"])
    for name in CLASSES:
        assert abs(counts[name] / 100 - TABLE1_SHARES[name]) < 0.01
    assert counts.most_common(1)[0][0] == "surprise"
    rarest, middle = ("neutral", "disgust", "happy"), ("anger", "fear", "sad")
    assert max(counts[name] for name in rarest) < min(counts[name] for name in middle)


def test_names_encode_signers_and_sequences_of_consecutive_frames(feph):
    root, _ = feph
    frames: dict[str, list[int]] = {}
    for row in read_rows(root):
        match = NAME_PATTERN.match(Path(row["External ID"]).name)
        assert match, f"row {row['Index']}: {row['External ID']!r} does not follow the release's pattern"
        frames.setdefault(match.group(1), []).append(int(match.group(2)))
    signers = {sequence.split("_default")[0] for sequence in frames}
    assert len(signers) >= 3
    long_sequences = [numbers for numbers in frames.values() if len(numbers) >= 3]
    assert len(long_sequences) >= 5
    for numbers in long_sequences:
        assert sorted(numbers) == list(range(min(numbers), min(numbers) + len(numbers)))


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    first = write_synthetic_dataset(tmp_path / "a", images=50, seed=7)
    second = write_synthetic_dataset(tmp_path / "b", images=50, seed=7)
    other = write_synthetic_dataset(tmp_path / "c", images=50, seed=8)
    assert first["per_class"] == second["per_class"]
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")
    a, c = file_hashes(tmp_path / "a"), file_hashes(tmp_path / "c")
    assert a != c
    assert (tmp_path / "a" / "FePh_labels.csv").read_bytes() != (tmp_path / "c" / "FePh_labels.csv").read_bytes()
    assert other["kept"] == 50


def test_generic_domain_is_all_valid_face_closeups(tmp_path):
    root = tmp_path / "generic"
    summary = write_synthetic_dataset(root, images=28, seed=1, domain="generic")
    rows = read_rows(root)
    assert len(rows) == 28 == summary["kept"]
    assert {row_kind(root, row) for row in rows} == {"valid"}
    assert Counter(CODES[row["Facial_label"]] for row in rows) == Counter({name: 4 for name in CLASSES})
    image = cv2.imread(str(root / "FePh_images" / rows[0]["External ID"]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (128, 128, 4)


def test_haar_cascade_finds_a_face_in_most_kept_frames(feph):
    root, _ = feph
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = []
    for image, _ in kept_images(root):
        gray = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        side = int(0.1 * min(gray.shape))
        found.append(len(cascade.detectMultiScale(gray, 1.1, 5, minSize=(side, side))) > 0)
    assert np.mean(found) >= 0.7


def test_classes_differ_in_the_face_only():
    """The same signer, pose and camera with another class: only the face changes."""
    signer = make_signers(3, "feph", np.random.default_rng(4))[0]
    def render(label: str) -> np.ndarray:
        frame = Frame(0, signer.recordings[0], 1, 10, label, strength=1.0, pose=(0.0, 0.0, 0.0, 0.0))
        return render_frame(frame, signer, "feph", np.random.default_rng(5)).astype(float)
    height, width = 260, 210
    unit = signer.face_half_width * width
    ys, xs = np.mgrid[0:height, 0:width]
    face = (np.abs(xs - signer.head_x * width) < 1.3 * unit) & (np.abs(ys - signer.head_y * height) < 1.6 * unit)
    neutral = render("neutral")
    for name in CLASSES:
        if name == "neutral":
            continue
        change = np.abs(render(name) - neutral).sum(axis=2)
        assert (change[face] > 30).sum() >= 100, f"{name} looks like neutral"
        assert change[face].sum() > 0.99 * change.sum(), f"{name} changes more than the face"


def test_nothing_is_written_outside_out(tmp_path):
    out = tmp_path / "nested" / "FePh"
    write_synthetic_dataset(out, images=50, seed=2)
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert written and all(out in path.parents for path in written)
    escapes = [row["External ID"] for row in read_rows(out) if row["External ID"].startswith("..")]
    assert escapes and not any((out / "FePh_images" / name).exists() for name in escapes)


def test_refuses_a_folder_that_already_holds_a_dataset(tmp_path):
    write_synthetic_dataset(tmp_path / "d", images=5, seed=0)
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        write_synthetic_dataset(tmp_path / "d", images=5, seed=1)


def test_rejects_an_unknown_domain(tmp_path):
    with pytest.raises(ValueError, match="domain"):
        write_synthetic_dataset(tmp_path / "x", images=5, domain="photos")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_an_interrupted_synth_exits_130_leaving_nothing_half_written_and_a_rerun_works(tmp_path, stop):
    out = tmp_path / "data" / "FePh"
    command = synth_writing_images(out, poll_s=0.1)
    command.send_signal(stop)
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists(), f"left behind: {sorted(path.name for path in out.rglob('*'))}"
    assert main(["synth", str(out), "--images", "5"]) == 0
    assert (out / "FePh_labels.csv").is_file()
