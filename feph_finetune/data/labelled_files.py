"""Reading helpers shared by dataset formats: a labels CSV, IDs resolved inside a folder, repeats.

Public (exported by ``feph_finetune``) so that a format plugin, built-in or third-party, reads
labels files as robustly as the FePh reader: a UTF-8 BOM, CRLF line ends, quoted fields and
``3.0`` from a spreadsheet's re-save are read as meant; an ID that points outside the image
folder is refused before any file is opened; rows that name one file are settled together (the
same label: ``duplicate_row``; different labels: ``conflicting_labels``). No TensorFlow here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable, Iterator, Sequence

from feph_finetune.api import DatasetError, DroppedEntry, Sample
from feph_finetune.data.images import decodable
from feph_finetune.data.user_files import MAX_TEXT_BYTES, UnreadableFile, read_user_file

#: A whole number written as a float by a spreadsheet's re-save (``3.0``): read as the number.
INTEGRAL_FLOAT_PATTERN = re.compile(r"(\d+)\.0+")
#: Hex digits of a data fingerprint kept in run ids and reports.
FINGERPRINT_DIGITS = 12



def whole_number(text: str) -> str:
    """``text`` stripped, with a spreadsheet's ``3.0`` read as ``3``."""
    text = text.strip()
    integral = INTEGRAL_FLOAT_PATTERN.fullmatch(text)
    return integral.group(1) if integral else text


def read_csv_rows(csv_path: Path, columns: Sequence[str], setting: str = "labels") -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line, cells)`` for every non-empty data row: the cells of ``columns``, as text.

    The header names the columns (surrounding spaces ignored); a missing cell is ``""``. Raises
    :class:`~feph_finetune.DatasetError` for an empty, non-UTF-8 or malformed file, one that
    lacks a column (naming the columns found), or one whose header repeats a column it reads.
    """
    try:
        with io.StringIO(labels_bytes(csv_path).decode("utf-8-sig"), newline="") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"labels CSV {csv_path} is empty")
            indices = _column_indices(csv_path, header, columns)
            for cells in reader:
                if cells:
                    yield reader.line_num, [cells[index] if index < len(cells) else "" for index in indices]
    except UnicodeDecodeError as error:
        raise DatasetError(f"labels CSV {csv_path} is not UTF-8 text: {error}") from error
    except csv.Error as error:
        raise DatasetError(f"labels CSV {csv_path}: malformed CSV: {error}") from error


def labels_bytes(csv_path: Path) -> bytes:
    """The labels file's bytes: a regular file (links followed) of at most
    :data:`~feph_finetune.data.user_files.MAX_TEXT_BYTES`, else a
    :class:`~feph_finetune.DatasetError` saying what it is (a FIFO never blocks)."""
    try:
        return read_user_file(csv_path, MAX_TEXT_BYTES)
    except UnreadableFile as error:
        raise DatasetError(f"labels CSV {csv_path} {error}") from None


def _column_indices(csv_path: Path, header: list[str], columns: Sequence[str]) -> list[int]:
    names = [name.strip() for name in header]
    missing = [column for column in columns if column not in names]
    if missing:
        raise DatasetError(
            f"labels CSV {csv_path} lacks column(s) {', '.join(repr(c) for c in missing)}; "
            f"found {', '.join(repr(n) for n in names)}"
        )
    repeated = [(column, [number for number, name in enumerate(names, 1) if name == column]) for column in columns if names.count(column) > 1]
    if repeated:
        raise DatasetError(f"labels CSV {csv_path} line 1: " + "; ".join(
            f"column {column!r} appears {len(numbers)} times (columns {', '.join(map(str, numbers))}); which to read is unclear, keep one"
            for column, numbers in repeated))
    return [names.index(column) for column in columns]


def resolve_inside(folder: Path, name: str, suffixes: Sequence[str] = ()) -> tuple[str, Path] | str:
    """``(file name, resolved path)`` of the file ``name`` names in ``folder`` (resolved), or
    ``"outside_root"``/``"missing_file"``/``"unreadable"``.

    Each candidate (``name`` as is, then with each of ``suffixes``) is checked to stay inside the
    folder, symlinks followed, before its existence is even tested. A candidate that exists but
    is no regular file nor folder (a FIFO, socket or device, or a link to one such as
    ``/dev/zero``, wherever it points) is ``"unreadable"``: it is there, it cannot be an image.
    """
    if not name:
        return "missing_file"
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute():
        return "outside_root"
    for candidate in (name, *(name + suffix for suffix in suffixes)):
        try:
            path = (folder / candidate).resolve()
            if path.exists() and not path.is_file() and not path.is_dir():
                return "unreadable"
            if not path.is_relative_to(folder):
                return "outside_root"
            if path.is_file():
                return PurePosixPath(candidate).name, path
        except (OSError, ValueError, RuntimeError):  # null bytes, over-long names, symlink loops
            return "missing_file"
    return "missing_file"


def samples_from_rows(rows: list[tuple[int, str, int | str, tuple[str, Path] | str]], make_sample: Callable[[str, Path, int], Sample],
                      decode: bool = True) -> tuple[list[Sample], list[DroppedEntry], list[Path]]:
    """Kept samples in row order, the dropped rows (by line), and every file a row resolves to.

    ``rows`` are ``(line, entry, label index or drop reason, what the entry resolves to)``.
    Rows naming the same file are settled first (:func:`settle_repeats`); the others become
    ``make_sample(file name, path, label)``, after decoding (in threads) when ``decode``: a file
    that does not decode is dropped as ``unreadable``.
    """
    dropped = settle_repeats(rows)
    settled = {entry.line for entry in dropped}
    candidates: list[tuple[int, str, Sample]] = []
    for line, entry, label, found in rows:
        if line in settled:
            continue
        if isinstance(label, str) or isinstance(found, str):
            dropped.append(DroppedEntry(line, entry, label if isinstance(label, str) else found))
            continue
        candidates.append((line, entry, make_sample(found[0], found[1], label)))
    readable = decodable([sample.path for _, _, sample in candidates]) if decode else [True] * len(candidates)
    samples: list[Sample] = []
    for (line, entry, sample), ok in zip(candidates, readable):
        if ok:
            samples.append(sample)
        else:
            dropped.append(DroppedEntry(line, entry, "unreadable"))
    dropped.sort(key=lambda row: row.line)
    files = [found[1] for _, _, _, found in rows if not isinstance(found, str)]
    return samples, dropped, files


def settle_repeats(rows) -> list[DroppedEntry]:
    """The rows dropped because another row names the same file.

    All rows of a file whose labels disagree are ``conflicting_labels``: which one is right is
    unknown, and the paper drops frames with more than one label. When they agree, the first row
    stands for the file and the later ones are ``duplicate_row``.
    """
    by_file: dict[Path, list[tuple[int, str, int | str]]] = {}
    for line, entry, label, found in rows:
        if not isinstance(found, str):
            by_file.setdefault(found[1], []).append((line, entry, label))
    dropped: list[DroppedEntry] = []
    for group in by_file.values():
        if len(group) < 2:
            continue
        if len({label for _, _, label in group}) > 1:
            dropped += [DroppedEntry(line, entry, "conflicting_labels") for line, entry, _ in group]
        else:
            dropped += [DroppedEntry(line, entry, "duplicate_row") for line, entry, _ in group[1:]]
    return dropped


def files_fingerprint(label_file: Path | None, folder: Path, files) -> str:
    """A short hex digest (sha256) of the labels file's bytes (when there is one) and of the
    files (path within ``folder``, size, modification time): changes when a label, an image, or
    the set of images changes; no image is decoded."""
    digest = hashlib.sha256(labels_bytes(label_file) if label_file is not None else b"")
    for path in sorted(set(files)):
        try:
            status = path.stat()
        except OSError:
            continue
        digest.update(b"\0" + os.fsencode(path.relative_to(folder).as_posix()) + f"\0{status.st_size}\0{status.st_mtime_ns}".encode())
    return digest.hexdigest()[:FINGERPRINT_DIGITS]
