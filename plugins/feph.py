"""The ``feph`` dataset format (the default): the FePh release's labels CSV and image folder.

The release is messy in documented ways (SPEC §2): multi-label cells, empty labels, IDs without
``.png``. Every CSV row either becomes a :class:`~feph_finetune.Sample` or is counted under
exactly one reason of :data:`DROP_REASONS`, so a user can always account for the difference
between rows and images. Rows are resolved to files first, so that one image is one sample at
most, however often and under whichever spelling of its ID the CSV lists it. The fingerprint
identifies the data (labels and image files) cheaply, so that results of changed data are never
reused. IDs are treated as untrusted: an ID that points outside the image folder is refused
before any file is opened.

Its settings are the core ``[dataset]`` keys ``labels`` and ``images`` (kept in the core table,
not declared here, so that every existing TOML and run id stays as it is). Samples offer the
group keys ``sequence`` (a video) and ``signer`` (date and show), and the frame index.
"""

from __future__ import annotations

import re
from pathlib import Path

from feph_finetune import (
    CLASSES,
    Dataset,
    DatasetError,
    Sample,
    files_fingerprint,
    hookimpl,
    input_file_problem,
    input_folder_problem,
    read_csv_rows,
    resolve_inside,
    samples_from_rows,
    whole_number,
)

#: Why a CSV row did not become a sample, and what that means; ``"none"`` is label 7.
DROP_REASONS: dict[str, str] = {
    "none": "label 7, none of the above",
    "multi_label": "several labels in one cell",
    "no_label": "empty or Face_not_visible",
    "unknown_label": "not a label code 0-7",
    "missing_file": "no such image file",
    "unreadable": "file is not a usable image (not decodable, float or signed pixels, not a regular file, or too large)",
    "outside_root": "ID points outside the image folder",
    "duplicate_row": "repeats an earlier row's image and label",
    "conflicting_labels": "image listed with different labels",
}

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

#: ``<sequence>.avi_pid<n>_fn<frame>-<n>[.png]``: frames of one video sequence share group 1.
FRAME_NAME_PATTERN = re.compile(r"^(.+?)\.avi_pid\d+_fn(\d+)-\d+(\.png)?$")
SIGNER_SEPARATOR = "_default"


@hookimpl
def load_dataset(root, settings, decode):
    """The release under ``root``; ``settings["labels"]``/``["images"]`` override the search."""
    return read_release(Path(root), settings.get("labels") or None, settings.get("images") or None, decode)


def read_release(root: Path, labels_csv: str | None = None, images_dir: str | None = None, decode: bool = True) -> Dataset:
    """Read the release under ``root``; ``labels_csv``/``images_dir`` override the search.

    Overrides are relative to ``root`` or absolute. Without them the single ``*.csv`` in ``root``
    or its direct subfolders is used, and the single subfolder holding PNGs beside that CSV
    (else in ``root``; a folder itself when none of its subfolders holds PNGs). ``decode=False``
    skips decoding the images: its samples may include files that do not decode, which
    ``decode=True`` drops as ``unreadable``; the fingerprint is the same. Raises DatasetError
    (with a hint naming the setting that fixes it) for an unusable layout.
    """
    csv_path, image_folder = _locate_release(root, labels_csv, images_dir)
    rows = [(line, external_id.strip(), label_reason(label_cell), resolve_inside(image_folder, external_id.strip(), (".png",)))
            for line, (external_id, label_cell) in read_csv_rows(csv_path, (ID_COLUMN, LABEL_COLUMN))]
    samples, dropped, files = samples_from_rows(rows, frame_sample, decode)
    return Dataset(root=root, samples=samples, classes=CLASSES, dropped_entries=dropped, drop_reasons=DROP_REASONS,
                   fingerprint=files_fingerprint(csv_path, image_folder, files))


def frame_sample(name: str, path: Path, label: int) -> Sample:
    """The sample of a frame file: its sequence, signer and frame index from its name."""
    sequence = sequence_of(name)
    return Sample(path=path, label=label, groups={"sequence": sequence, "signer": signer_of(sequence)}, frame=frame_of(name))


def label_reason(cell: str) -> int | str:
    """The class index a ``Facial_label`` cell names, or the drop reason when it names none."""
    text = whole_number(cell)
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


def frame_of(file_name: str) -> int | None:
    """The frame index a frame's file name encodes, or None for a name without the pattern."""
    match = FRAME_NAME_PATTERN.match(file_name)
    return int(match.group(2)) if match else None


def signer_of(sequence: str) -> str:
    """Date and show of a sequence (the part before ``_default``): frames of one signer."""
    signer, separator, _ = sequence.partition(SIGNER_SEPARATOR)
    return signer if separator and signer else sequence


# --- locating the release -------------------------------------------------------------------


def _locate_release(root: Path, labels_csv: str | None, images_dir: str | None) -> tuple[Path, Path]:
    """The labels CSV and the resolved image folder, from the overrides or by searching."""
    if problem := input_folder_problem(root):
        raise DatasetError(f"dataset root {root}: {problem}", setting="root")
    csv_path = locate(root, labels_csv, "labels") if labels_csv else find_labels_csv(root)
    image_folder = locate(root, images_dir, "images") if images_dir else _find_image_folder(root, csv_path.parent)
    return csv_path, image_folder.resolve()


#: The ``[dataset]`` settings that name a file or folder in the root: what each names, and the check of its kind.
LOCATED = {"labels": ("labels CSV", input_file_problem), "images": ("image folder", input_folder_problem)}


def locate(root: Path, override: str, setting: str) -> Path:
    """The file or folder that ``setting`` (``"labels"`` or ``"images"``: :data:`LOCATED`) names
    by ``override``, relative to ``root`` unless absolute. DatasetError, naming the setting at
    fault, when it is not one to read (missing, a link loop, a FIFO, ...)."""
    what, problem_of = LOCATED[setting]
    path = Path(override)
    path = path if path.is_absolute() else root / path
    if problem := problem_of(path):
        raise DatasetError(f"{what} {path}: {problem}", setting=setting)
    return path


def find_labels_csv(root: Path) -> Path:
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
