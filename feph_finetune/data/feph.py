"""Load the FePh release: its labels CSV and image folder, turned into labelled samples.

The release is messy in documented ways (SPEC §2): multi-label cells, empty labels, IDs without
``.png``. Every CSV row either becomes a :class:`Sample` or is counted under exactly one reason of
:data:`DROP_REASONS`, so a user can always account for the difference between rows and images.
Rows are resolved to files first, so that one image is one sample at most, however often and
under whichever spelling of its ID the CSV lists it. A :attr:`Dataset.fingerprint` identifies
the data (labels and image files) cheaply, so that results of changed data are never reused.
IDs are treated as untrusted: an ID that points outside the image folder is refused before any
file is opened. No TensorFlow here; images are decoded with OpenCV.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import cv2
import numpy as np

from feph_finetune.api import CLASSES

#: Why a CSV row did not become a sample; ``"none"`` is label 7, "none of the above".
DROP_REASONS: tuple[str, ...] = (
    "none",
    "multi_label",
    "no_label",
    "unknown_label",
    "missing_file",
    "unreadable",
    "outside_root",
    "duplicate_row",
    "conflicting_labels",
)

ID_COLUMN = "External ID"
LABEL_COLUMN = "Facial_label"

#: FePh's ``Facial_label`` codes of the seven classes; code 7 ("none of the above") is dropped.
LABEL_CODES: dict[str, str] = {
    "0": "neutral",
    "1": "anger",
    "2": "disgust",
    "3": "fear",
    "4": "happy",
    "5": "sad",
    "6": "surprise",
}
NONE_CODE = "7"
NO_FACE_TEXT = "face_not_visible"
MULTI_LABEL_PATTERN = re.compile(r"[0-7]{2,}")
#: A whole number written as a float by a spreadsheet's re-save (``3.0``): read as the number.
INTEGRAL_FLOAT_PATTERN = re.compile(r"(\d+)\.0+")
#: Hex digits of the data fingerprint kept in run ids and reports.
FINGERPRINT_DIGITS = 12

#: ``<sequence>.avi_pid<n>_fn<frame>-<n>[.png]``: frames of one video sequence share group 1.
FRAME_NAME_PATTERN = re.compile(r"^(.+?)\.avi_pid\d+_fn(\d+)-\d+(\.png)?$")
SIGNER_SEPARATOR = "_default"
DECODE_THREADS = 8


#: Where the real data comes from, for messages about a missing dataset folder.
FEPH_DOWNLOAD = 'FePh is published on Harvard Dataverse (doi:10.7910/DVN/358QMQ): download and unpack it (README, "Running on the real FePh")'


class DatasetError(Exception):
    """The release's layout is unusable (no CSV, several CSVs, a missing column ...).

    ``hint`` is ``(phrase, setting)`` when naming a file would fix it, e.g. ``("choose one
    with", "labels")``; :func:`load_dataset` turns it into the caller's spelling of the setting.
    """

    def __init__(self, message: str, hint: tuple[str, str] | None = None):
        super().__init__(message)
        self.hint = hint


#: How a user names the labels CSV and the image folder in an experiments TOML; the ``data``
#: command passes its flags instead, so that a hint says what to type where the user is.
TOML_SETTINGS = {"labels": "dataset.labels", "images": "dataset.images"}


@dataclass(frozen=True)
class Sample:
    """One kept image: its file, its class index into ``CLASSES`` and its grouping keys."""

    path: Path
    label: int
    sequence: str
    signer: str


@dataclass(frozen=True)
class DroppedRow:
    """A CSV row that did not become a sample, so that a user can look it up."""

    line: int
    external_id: str
    reason: str


@dataclass
class Dataset:
    """The kept samples of a release, and how many rows were dropped for each reason."""

    root: Path
    samples: list[Sample]
    dropped: dict[str, int]
    dropped_rows: list[DroppedRow] = field(default_factory=list)
    fingerprint: str = ""

    def labels(self) -> np.ndarray:
        """Class index of every sample, in sample order."""
        return np.array([sample.label for sample in self.samples], dtype=np.int64)

    def groups(self, key: str = "sequence") -> np.ndarray:
        """Grouping key of every sample: ``"sequence"`` (video) or ``"signer"`` (date and show)."""
        if key not in ("sequence", "signer"):
            raise ValueError(f"unknown grouping key {key!r}: use 'sequence' or 'signer'")
        return np.array([getattr(sample, key) for sample in self.samples], dtype=str)


def load_dataset(root, labels_csv: str | None = None, images_dir: str | None = None, decode: bool = True, settings: dict[str, str] = TOML_SETTINGS) -> Dataset:
    """Read the release under ``root``; ``labels_csv``/``images_dir`` override the search.

    Overrides are relative to ``root`` or absolute. Without them the single ``*.csv`` in ``root``
    or its direct subfolders is used, and the single subfolder holding PNGs beside that CSV
    (else in ``root``; a folder itself when none of its subfolders holds PNGs). ``decode=False``
    skips decoding the images (see :func:`load_index`). ``settings`` names the two overrides in
    error hints (``{"labels": ..., "images": ...}``; default: the TOML keys). Raises DatasetError
    for an unusable layout.
    """
    root = Path(root)
    try:
        csv_path, image_folder = _locate_release(root, labels_csv, images_dir)
    except DatasetError as error:
        if error.hint is None:
            raise
        phrase, setting = error.hint
        raise DatasetError(f"{error}; {phrase} {settings[setting]}") from None
    rows = list(_read_rows(csv_path))
    samples, dropped_rows, files = _samples_from_rows(image_folder, rows, decode)
    dropped = {reason: 0 for reason in DROP_REASONS}
    for row in dropped_rows:
        dropped[row.reason] += 1
    return Dataset(root=root, samples=samples, dropped=dropped, dropped_rows=dropped_rows,
                   fingerprint=data_fingerprint(csv_path, image_folder, files))


def load_index(root, labels_csv: str | None = None, images_dir: str | None = None) -> Dataset:
    """The release's index: the CSV and the files it names, without decoding any image.

    Cheap enough for validating a configuration (a CSV and a ``stat`` per row). Its samples may
    include files that do not decode, which :func:`load_dataset` drops as ``unreadable``; its
    fingerprint is the same as theirs.
    """
    return load_dataset(root, labels_csv, images_dir, decode=False)


def data_fingerprint(csv_path: Path, image_folder: Path, files) -> str:
    """A short hex digest (sha256) of the labels file's bytes and of the image files the rows
    resolve to (path within the image folder, size, modification time): changes when a label, an
    image, or the set of images changes; no image is decoded."""
    digest = hashlib.sha256(csv_path.read_bytes())
    for path in sorted(set(files)):
        try:
            status = path.stat()
        except OSError:
            continue
        digest.update(f"\0{path.relative_to(image_folder).as_posix()}\0{status.st_size}\0{status.st_mtime_ns}".encode())
    return digest.hexdigest()[:FINGERPRINT_DIGITS]


def read_image(path) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3): alpha dropped, grey expanded, 16 bit scaled."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image {path} does not exist")
    image = _decode(path)
    if image is None:
        raise DatasetError(f"cannot decode image {path}")
    return _to_rgb_uint8(image, path)


def label_reason(cell: str) -> int | str:
    """The class index a ``Facial_label`` cell names, or the drop reason when it names none."""
    text = cell.strip()
    integral = INTEGRAL_FLOAT_PATTERN.fullmatch(text)
    if integral:
        text = integral.group(1)
    if not text or text.casefold() == NO_FACE_TEXT:
        return "no_label"
    if text in LABEL_CODES:
        return CLASSES.index(LABEL_CODES[text])
    if text == NONE_CODE:
        return "none"
    if MULTI_LABEL_PATTERN.fullmatch(text):
        return "multi_label"
    return "unknown_label"


def sequence_of(file_name: str) -> str:
    """The video sequence a frame's file name encodes; a name without the pattern is its own."""
    match = FRAME_NAME_PATTERN.match(file_name)
    if match:
        return match.group(1)
    return file_name[: -len(".png")] if file_name.lower().endswith(".png") else file_name


def signer_of(sequence: str) -> str:
    """Date and show of a sequence (the part before ``_default``): frames of one signer."""
    signer, separator, _ = sequence.partition(SIGNER_SEPARATOR)
    return signer if separator and signer else sequence


# --- locating the release -------------------------------------------------------------------


def _locate_release(root: Path, labels_csv: str | None, images_dir: str | None) -> tuple[Path, Path]:
    """The labels CSV and the resolved image folder, from the overrides or by searching."""
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder")
    csv_path = _locate(root, labels_csv, "labels CSV") if labels_csv else _find_labels_csv(root)
    if not csv_path.is_file():
        raise DatasetError(f"labels CSV {csv_path} is not a file")
    if images_dir:
        image_folder = _locate(root, images_dir, "image folder")
    else:
        image_folder = _find_image_folder(root, csv_path.parent)
    if not image_folder.is_dir():
        raise DatasetError(f"image folder {image_folder} is not a folder")
    return csv_path, image_folder.resolve()


def _locate(root: Path, override: str, what: str) -> Path:
    path = Path(override)
    path = path if path.is_absolute() else root / path
    if not path.exists():
        raise DatasetError(f"{what} {path} does not exist")
    return path


def _find_labels_csv(root: Path) -> Path:
    found = sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv"))
    found = [path for path in found if path.is_file()]
    if not found:
        raise DatasetError(f"no labels CSV (*.csv) in {root} or its subfolders", hint=("name it with", "labels"))
    if len(found) > 1:
        names = ", ".join(str(path.relative_to(root)) for path in found)
        raise DatasetError(f"several CSV files under {root} ({names})", hint=("choose one with", "labels"))
    return found[0]


def _find_image_folder(root: Path, csv_folder: Path) -> Path:
    """The image folder beside the labels CSV, else in ``root``; see :func:`_image_folder_in`."""
    bases = list(dict.fromkeys([csv_folder, root]))
    for base in bases:
        folder = _image_folder_in(base)
        if folder is not None:
            return folder
    places = f"{bases[0]} or its subfolders" if len(bases) == 1 else f"{bases[0]}, {bases[1]} or their subfolders"
    raise DatasetError(f"no PNG images in {places}", hint=("name the folder with", "images"))


def _image_folder_in(base: Path) -> Path | None:
    """The single subfolder of ``base`` holding PNGs; ``base`` itself only when no subfolder does.

    Subfolders come first because the release ships its images in a folder of their own, and a
    stray PNG beside the CSV should not make the layout ambiguous.
    """
    found = [folder for folder in sorted(base.iterdir()) if folder.is_dir() and _holds_png(folder)]
    if len(found) > 1:
        names = ", ".join(folder.name for folder in found)
        raise DatasetError(f"several folders with PNG images in {base} ({names})", hint=("choose one with", "images"))
    if found:
        return found[0]
    return base if _holds_png(base) else None


def _holds_png(folder: Path) -> bool:
    return any(path.suffix.lower() == ".png" for path in folder.iterdir())


# --- reading the CSV ------------------------------------------------------------------------


def _read_rows(csv_path: Path):
    """Yield ``(line, external_id, label_cell)`` for every data row, all cells as text."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"labels CSV {csv_path} is empty")
            id_index, label_index = _column_indices(csv_path, header)
            for cells in reader:
                if not cells:
                    continue
                yield reader.line_num, _cell(cells, id_index).strip(), _cell(cells, label_index)
    except UnicodeDecodeError as error:
        raise DatasetError(f"labels CSV {csv_path} is not UTF-8 text: {error}") from error
    except csv.Error as error:
        raise DatasetError(f"labels CSV {csv_path}: malformed CSV: {error}") from error


def _column_indices(csv_path: Path, header: list[str]) -> tuple[int, int]:
    names = [name.strip() for name in header]
    missing = [column for column in (ID_COLUMN, LABEL_COLUMN) if column not in names]
    if missing:
        raise DatasetError(
            f"labels CSV {csv_path} lacks column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(n) for n in names)}"
        )
    return names.index(ID_COLUMN), names.index(LABEL_COLUMN)


def _cell(cells: list[str], index: int) -> str:
    return cells[index] if index < len(cells) else ""


# --- turning a row into a sample ------------------------------------------------------------


def _samples_from_rows(image_folder: Path, rows, decode: bool = True) -> tuple[list[Sample], list[DroppedRow], list[Path]]:
    """Kept samples in CSV order, the dropped rows, and every file a row resolves to.

    Each row's label is read and its ID resolved to a file first; rows naming the same file are
    then settled together (:func:`_repeated_files`), and only the remaining rows become samples,
    after their decoding (in parallel threads) when ``decode``.
    """
    rows = [(line, external_id, label_reason(label_cell), _resolve_image(image_folder, external_id))
            for line, external_id, label_cell in rows]
    dropped_rows = _repeated_files(rows)
    settled = {row.line for row in dropped_rows}
    candidates: list[tuple[int, str, Sample]] = []
    for line, external_id, label, found in rows:
        if line in settled:
            continue
        if isinstance(label, str) or isinstance(found, str):
            dropped_rows.append(DroppedRow(line, external_id, label if isinstance(label, str) else found))
            continue
        name, path = found
        sequence = sequence_of(name)
        candidates.append((line, external_id, Sample(path=path, label=label, sequence=sequence, signer=signer_of(sequence))))
    decodable = _decodable([c[2].path for c in candidates]) if decode else [True] * len(candidates)
    samples: list[Sample] = []
    for (line, external_id, sample), ok in zip(candidates, decodable):
        if ok:
            samples.append(sample)
        else:
            dropped_rows.append(DroppedRow(line, external_id, "unreadable"))
    dropped_rows.sort(key=lambda row: row.line)
    files = [found[1] for _, _, _, found in rows if not isinstance(found, str)]
    return samples, dropped_rows, files


def _repeated_files(rows) -> list[DroppedRow]:
    """The rows dropped because another row names the same file.

    All rows of a file whose label cells disagree (after reading: ``3`` and ``3.0`` agree) are
    ``conflicting_labels``: which one is right is unknown, and the paper drops frames with more
    than one label. When they agree, the first row stands for the file and the later ones are
    ``duplicate_row`` (the same ``External ID`` repeated, or written with and without ``.png``).
    """
    by_file: dict[Path, list[tuple[int, str, int | str]]] = {}
    for line, external_id, label, found in rows:
        if not isinstance(found, str):
            by_file.setdefault(found[1], []).append((line, external_id, label))
    dropped: list[DroppedRow] = []
    for group in by_file.values():
        if len(group) < 2:
            continue
        if len({label for _, _, label in group}) > 1:
            dropped += [DroppedRow(line, external_id, "conflicting_labels") for line, external_id, _ in group]
        else:
            dropped += [DroppedRow(line, external_id, "duplicate_row") for line, external_id, _ in group[1:]]
    return dropped


def _decodable(paths: list[Path]) -> list[bool]:
    """Whether each file decodes; OpenCV releases the GIL, so threads share the cores."""
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
        return list(pool.map(_is_decodable, paths))


def _is_decodable(path: Path) -> bool:
    return _decode(path) is not None


def _resolve_image(image_folder: Path, external_id: str) -> tuple[str, Path] | str:
    """``(file name, resolved path)`` of the ID's image, or ``outside_root``/``missing_file``.

    Each candidate (the ID as is, then with ``.png``) is checked to stay inside the image folder,
    symlinks followed, before its existence is even tested.
    """
    if not external_id:
        return "missing_file"
    if PurePosixPath(external_id).is_absolute() or PureWindowsPath(external_id).is_absolute():
        return "outside_root"
    for name in (external_id, external_id + ".png"):
        try:
            path = (image_folder / name).resolve()
            if not path.is_relative_to(image_folder):
                return "outside_root"
            if path.is_file():
                return PurePosixPath(name).name, path
        except (OSError, ValueError, RuntimeError):  # null bytes, over-long names, symlink loops
            return "missing_file"
    return "missing_file"


def _decode(path: Path) -> np.ndarray | None:
    """The image as OpenCV decodes it (any depth and channel count), or None if it cannot."""
    try:
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None


def _to_rgb_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DatasetError(f"image {path} has unsupported pixel type {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise DatasetError(f"image {path} has {image.shape[2]} channels; expected 1, 3 or 4")
