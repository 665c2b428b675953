"""The ``csv`` dataset format: any labels CSV with named columns.

``path_column`` names each image, relative to the image folder (``[dataset] images``, default:
the root) and refused when it points outside it; ``label_column`` its class, as a word
(``happy``) or a code (``4``, also as ``4.0`` from a spreadsheet) that the ``label_names`` table
(``{ "4" = "happy", ... }``) names. Classes are ``classes`` in that order when listed, else the
``label_names`` in the order of their codes, else the words found, sorted; a class without a
usable image is an error. The labels CSV is
``[dataset] labels`` (default: the one ``*.csv`` in the root or its direct subfolders). It is
read as robustly as FePh's (BOM, CRLF, quoted fields; duplicate and conflicting rows settled).

Group keys: ``column`` (``group_column``, when set), ``folder`` (the image's folder) and
``sequence`` (FePh's frame-name pattern; a file whose name lacks it is its own group).
"""

from __future__ import annotations

from pathlib import Path

from feph_finetune import Dataset, Option, Sample, files_fingerprint, hookimpl, read_csv_rows, resolve_inside, samples_from_rows, whole_number
from feph_finetune_plugins.feph import find_labels_csv, frame_of, locate, sequence_of
from feph_finetune_plugins.folders import empty_classes_error

DROP_REASONS: dict[str, str] = {
    "no_label": "empty label cell",
    "unknown_label": "a label that is no class",
    "missing_file": "no such image file",
    "unreadable": "file is not a usable image (not decodable, float or signed pixels, not a regular file, or too large)",
    "outside_root": "path points outside the image folder",
    "duplicate_row": "repeats an earlier row's image and label",
    "conflicting_labels": "image listed with different labels",
}


def _distinct(names) -> str | None:
    return None if len(set(names)) == len(names) and all(names) else "must list distinct, non-empty class names"


def _named(table) -> str | None:
    if not all(isinstance(name, str) and name for name in table.values()):
        return "must map each code to a class name: { \"0\" = \"neutral\", ... }"
    codes: dict[str, list[str]] = {}
    for code in table:  # "3" and "3.0" are one code, as a cell reads (whole_number)
        codes.setdefault(whole_number(str(code)), []).append(code)
    repeated = [" and ".join(map(repr, spellings)) for spellings in codes.values() if len(spellings) > 1]
    if repeated:
        return f"names one code twice ({'; '.join(repeated)}): which class it is would be unclear"
    return _distinct(list(table.values()))


@hookimpl
def plugin_options():
    return {
        "path_column": Option("path", "the column naming each image, relative to the image folder"),
        "label_column": Option("label", "the column holding each image's class (a word or a code)"),
        "group_column": Option("", "a column whose value groups images (group_by = \"column\")"),
        "label_names": Option({}, "codes to class names: { \"0\" = \"neutral\", ... }", check=_named),
        "classes": Option([], "the classes, in label order (default: label_names' order, else sorted)", kind=str, check=_distinct),
    }


@hookimpl
def load_dataset(root, settings, decode):
    root = Path(root)
    csv_path = locate(root, settings["labels"], "labels") if settings.get("labels") else find_labels_csv(root)
    folder = locate(root, settings["images"], "images") if settings.get("images") else root
    return read_labels(csv_path, folder.resolve(), root, settings, decode)


def read_labels(csv_path: Path, folder: Path, root: Path, options, decode: bool = True) -> Dataset:
    """The samples the CSV's rows name; see the module."""
    group_column = options["group_column"]
    columns = [options["path_column"], options["label_column"]] + ([group_column] if group_column else [])
    cells = list(read_csv_rows(csv_path, columns))
    names = {whole_number(code): name for code, name in options["label_names"].items()}
    words = [names.get(whole_number(row[1]), row[1].strip()) for _, row in cells]
    classes = tuple(options["classes"] or (_by_code(names) if names else sorted({word for word in words if word})))
    rows = [(line, row[0].strip(), _label(word, classes), resolve_inside(folder, row[0].strip())) for (line, row), word in zip(cells, words)]
    column_groups: dict[Path, str] = {}
    if group_column:
        for (_, row), (_, _, _, found) in zip(cells, rows):
            if not isinstance(found, str):
                column_groups.setdefault(found[1], row[2].strip())

    def make_sample(name: str, path: Path, label: int) -> Sample:
        frame = frame_of(name)
        relative = path.relative_to(folder)
        keys = {"folder": relative.parent.as_posix(), "sequence": sequence_of(name) if frame is not None else relative.as_posix()}
        if group_column:
            keys["column"] = column_groups[path]
        return Sample(path=path, label=label, groups=keys, frame=frame)

    samples, dropped, files = samples_from_rows(rows, make_sample, decode)
    _check_every_class_has_images(classes, samples, dropped, rows, csv_path)
    return Dataset(root=root, samples=samples, classes=classes, dropped_entries=dropped, drop_reasons=DROP_REASONS,
                   fingerprint=files_fingerprint(csv_path, folder, files))


def _check_every_class_has_images(classes: tuple[str, ...], samples: list[Sample], dropped, rows, csv_path: Path) -> None:
    """A class (listed, named by ``label_names`` or found as a word) without a kept sample (no
    row, or only rows that are dropped) is a :class:`~feph_finetune.DatasetError` naming it and
    why its rows were dropped: a model cannot learn a class it never sees."""
    kept = {sample.label for sample in samples}
    empty = [index for index in range(len(classes)) if index not in kept]
    if empty:
        label_of = {line: label for line, _, label, _ in rows}
        reasons = [entry.reason for entry in dropped if label_of.get(entry.line) in empty]
        raise empty_classes_error("class(es)", [classes[index] for index in empty], csv_path, reasons)


def _by_code(names: dict[str, str]) -> list[str]:
    """The class names in the order of their codes: numeric codes by value, others after, as text."""
    return [names[code] for code in sorted(names, key=lambda code: (not code.isdigit(), int(code) if code.isdigit() else 0, code))]


def _label(word: str, classes: tuple[str, ...]) -> int | str:
    if not word:
        return "no_label"
    return classes.index(word) if word in classes else "unknown_label"
