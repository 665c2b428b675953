"""The ``folders`` dataset format: one folder per class, ``root/<class>/<image>``.

The layout of the paper's authors (``train_files_cropped/<class>/``). ``root/train/<class>/...``
with ``root/test/<class>/...`` is data that comes split: the exploratory phase uses that split
(cross-validation pools both). Class names are the folder names, sorted, unless the ``classes``
option lists them (then in that order; a folder not listed is skipped and reported, a listed
class without images is an error).

Images may sit in nested folders of a class folder (one per video, say): the group key
``folder`` is that sub-folder (an image directly in the class folder is its own group), and
``sequence`` is FePh's frame-name pattern (a file whose name lacks it is its own group). Symbolic links
are followed (a broken one is dropped as ``broken_link``, a loop is not followed twice); files
that are no images by their suffix, and files beside the class folders, are dropped and
reported. An image found under two classes (the same file, or identical bytes) is dropped from
both as ``conflicting_labels``; a second copy within one class is a ``duplicate_file``.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

from feph_finetune import Dataset, DatasetError, DroppedEntry, Option, Sample, decodable, files_fingerprint, hookimpl
from feph_finetune_plugins.feph import frame_of, sequence_of

#: File suffixes read as images (case-insensitive); OpenCV decodes all of them.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SPLIT_FOLDERS = ("train", "test")

DROP_REASONS: dict[str, str] = {
    "not_an_image": "file without an image suffix (" + " ".join(IMAGE_SUFFIXES) + ")",
    "no_class": "file beside the class folders, in no class",
    "broken_link": "symbolic link to nothing",
    "unreadable": "file is not a usable image (not decodable, float or signed pixels, not a regular file, or too large)",
    "duplicate_file": "the same image again in its class",
    "conflicting_labels": "the same image under several classes",
}


def _check_classes(names) -> str | None:
    if len(set(names)) != len(names) or not all(names):
        return "must list distinct, non-empty folder names"
    return None


@hookimpl
def plugin_options():
    return {"classes": Option([], "the class folders, in label order (default: every folder, sorted)", kind=str, check=_check_classes)}


@hookimpl
def load_dataset(root, settings, decode):
    return read_folders(Path(root), list(settings.get("classes") or ()), decode)


def read_folders(root: Path, listed: list[str], decode: bool = True) -> Dataset:
    """The samples of ``root``'s class folders (or of ``train/`` and ``test/``'s); see the module."""
    presplit = all((root / name).is_dir() for name in SPLIT_FOLDERS)
    bases = [(root / name, name) for name in SPLIT_FOLDERS] if presplit else [(root, None)]
    notes: list[str] = []
    dropped: list[DroppedEntry] = []
    folders = {base: _class_folders(base, root, dropped) for base, _ in bases}
    found = sorted({name for names in folders.values() for name in names})
    classes = tuple(listed or found)
    if not classes:
        raise DatasetError(f"no class folders in {root}: expected {root}/<class>/<image> (or train/<class>/ and test/<class>/)")
    for name in sorted(set(found) - set(classes)):
        notes.append(f"folder {name!r} is not one of the listed classes: skipped")
    files: list[tuple[Path, int, str | None]] = []
    for base, split in bases:
        for name in folders[base]:
            if name in classes:
                files += [(path, classes.index(name), split) for path in _images(base / name, root, dropped)]
    files = _settle_copies(files, root, dropped)
    readable = decodable([path for path, _, _ in files]) if decode else [True] * len(files)
    samples = []
    for (path, label, split), ok in zip(files, readable):
        if ok:
            samples.append(_sample(path, label, split, root))
        else:
            dropped.append(DroppedEntry(None, _relative(path, root), "unreadable"))
    _check_every_class_has_images(classes, samples, dropped, root)
    return Dataset(root=root, samples=samples, classes=classes, dropped_entries=dropped, drop_reasons=DROP_REASONS,
                   fingerprint=files_fingerprint(None, root, [path for path, _, _ in files]), notes=notes)


def _check_every_class_has_images(classes: tuple[str, ...], samples: list[Sample], dropped: list[DroppedEntry], root: Path) -> None:
    """A class whose folder yields no sample (missing, empty, or only files dropped: unreadable,
    copies of other classes' images) is a :class:`~feph_finetune.DatasetError` naming the folder
    and why its files were dropped: a model cannot learn a class it never sees."""
    kept = {sample.label for sample in samples}
    empty = [name for index, name in enumerate(classes) if index not in kept]
    if empty:
        inside = [entry.reason for entry in dropped if "/" in entry.entry and set(empty) & set(entry.entry.split("/")[:2])]
        raise empty_classes_error("class folder(s)", empty, root, inside)


def empty_classes_error(what: str, empty: list[str], place: Path, reasons: list[str]) -> DatasetError:
    """The error for classes without a usable image (the ``folders`` and ``csv`` formats):
    ``what`` and the ``empty`` names, where, and the ``reasons`` their entries were dropped for."""
    why = f" (dropped there: {', '.join(f'{count} {reason}' for reason, count in Counter(reasons).items())})" if reasons else ""
    return DatasetError(f"{what} {', '.join(map(repr, empty))} have no images in {place} that can be used{why}",
                        hint=("list only classes with images in", "classes"))


def _class_folders(base: Path, root: Path, dropped: list[DroppedEntry]) -> list[str]:
    """The class folders in ``base``, sorted; a file beside them is dropped as ``no_class``."""
    names = []
    for entry in sorted(base.iterdir()):
        if entry.is_dir():
            names.append(entry.name)
        elif not entry.name.startswith("."):
            dropped.append(DroppedEntry(None, _relative(entry, root), "no_class"))
    return names


def _images(folder: Path, root: Path, dropped: list[DroppedEntry]) -> list[Path]:
    """Every image file under ``folder``, nested folders and symbolic links followed (each real
    folder once), sorted; other files dropped with their reason. Hidden files are ignored."""
    images, seen = [], set()
    for current, subfolders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            path = Path(current) / name
            if name.startswith("."):
                continue
            if not path.exists():
                dropped.append(DroppedEntry(None, _relative(path, root), "broken_link"))
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                dropped.append(DroppedEntry(None, _relative(path, root), "not_an_image"))
            elif not path.is_file():  # a FIFO or device: reading it would block or never end
                dropped.append(DroppedEntry(None, _relative(path, root), "unreadable"))
            else:
                images.append(path)
    return images


def _settle_copies(files: list[tuple[Path, int, str | None]], root: Path, dropped: list[DroppedEntry]) -> list[tuple[Path, int, str | None]]:
    """The files left when copies of one image are settled: under several classes all are
    dropped (``conflicting_labels``), within one class the later ones (``duplicate_file``).
    Only files of equal size are read and hashed."""
    by_size: dict[int, list[int]] = {}
    for index, (path, _, _) in enumerate(files):
        by_size.setdefault(path.stat().st_size, []).append(index)
    by_image: dict[str, list[int]] = {}
    for indices in by_size.values():
        if len(indices) > 1:
            for index in indices:
                with open(files[index][0], "rb") as stream:  # a regular file (see _images), hashed in chunks
                    by_image.setdefault(hashlib.file_digest(stream, "sha256").hexdigest(), []).append(index)
    settled: dict[int, str] = {}
    for indices in by_image.values():
        if len(indices) < 2:
            continue
        if len({files[index][1] for index in indices}) > 1:
            settled.update({index: "conflicting_labels" for index in indices})
        else:
            settled.update({index: "duplicate_file" for index in indices[1:]})
    for index in sorted(settled):
        dropped.append(DroppedEntry(None, _relative(files[index][0], root), settled[index]))
    return [item for index, item in enumerate(files) if index not in settled]


def _sample(path: Path, label: int, split: str | None, root: Path) -> Sample:
    """A sample with its group keys: ``folder`` (the sub-folder of its class folder, or the file
    itself directly in it) and ``sequence`` (FePh's frame-name pattern)."""
    relative = path.relative_to(root).parts
    inside_class = relative[2 if split else 1:-1]
    folder = "/".join(relative[:-1]) if inside_class else "/".join(relative)
    frame = frame_of(path.name)
    sequence = sequence_of(path.name) if frame is not None else "/".join(relative)
    return Sample(path=path, label=label, groups={"folder": folder, "sequence": sequence}, frame=frame, split=split)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()
