"""Confusion matrices of a configuration: summed over its folds, row-normalised, shown in the console.

A run's matrix is the ``confusion`` entry of its metrics (the ``paper_metrics`` plugin writes it):
a list of ``len(classes)`` lists of integer counts, rows the true class, columns the predicted
class. A cross-validated configuration's matrix is the sum over its finished folds: each test
image counts once, so the sum is the confusion matrix of the whole dataset's out-of-fold
predictions. Nothing here imports matplotlib or TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np
from rich import box
from rich.console import Group
from rich.cells import cell_len
from rich.color import Color
from rich.style import Style
from rich.table import Table
from rich.text import Text

from feph_finetune.printable import printable, reading_key
from feph_finetune.results.number_text import format_count, format_number
from feph_finetune.results.records import confusion_classes
from feph_finetune.results.reports import (class_abbreviations, configuration_name, finished, fold_long_words, names_narrowed, rows_told_apart,
                                           short_name, spread_columns)

if TYPE_CHECKING:
    from rich.console import Console

#: The colour of a cell holding the whole row (share 1.0); a share of 0 is white. RGB 0-255.
_FULL = (8, 69, 148)
_EMPTY = (255, 255, 255)


def summed_confusion(runs: Iterable[dict], classes: list[str]) -> tuple[np.ndarray, int] | None:
    """The confusion counts summed over the finished runs that recorded one, and how many did.

    Returns ``(counts, runs)`` with counts an int64 array of shape ``(len(classes),)*2`` (rows:
    true class, columns: predicted class), or None when no finished run recorded a matrix. A run
    whose classes come in another order (:func:`~feph_finetune.results.records.confusion_classes`)
    has its matrix reordered to ``classes``; one whose order cannot be told is left out (the
    report's warnings name it: :func:`~feph_finetune.results.reports.configuration_warnings`); a
    matrix of another shape is refused (ValueError naming the run): summing it would mix classes.
    """
    total = np.zeros((len(classes), len(classes)), dtype=np.int64)
    counted = 0
    for run in finished(runs):
        matrix = run["metrics"].get("confusion")
        if matrix is None:
            continue
        own = confusion_classes(run)
        if own is None:
            continue
        counts = np.asarray(matrix, dtype=np.int64)
        if sorted(own) == sorted(classes) and own != list(classes):
            order = [own.index(name) for name in classes]
            counts = counts[np.ix_(order, order)]
        if counts.shape != total.shape:
            raise ValueError(f"run {run.get('id', '?')}: confusion matrix of shape {counts.shape}, expected {total.shape} for {len(classes)} classes")
        total += counts
        counted += 1
    return (total, counted) if counted else None


def row_shares(counts: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of a true class predicted as each class), float64.

    The diagonal is then the sensitivity of each class. A class without test images has an
    undefined row: NaN, not 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    sums = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, counts / np.where(sums > 0, sums, 1.0), np.nan)


def matching(configurations: list[tuple[dict, list[dict]]], name: str) -> list[tuple[dict, list[dict]]]:
    """The configurations a user means by ``name``: its experiment key or its c/v label (any phase),
    as it reads (:func:`~feph_finetune.printable.reading_key`: a label a macOS editor wrote in NFD
    is found by the same name typed in NFC)."""
    wanted = reading_key(name)
    names = lambda row: {reading_key(row["experiment"]), *([reading_key(row["cv_label"])] if row["cv_label"] else [])}
    return [(row, runs) for row, runs in configurations if wanted and wanted in names(row)]


def known_names(configurations: list[tuple[dict, list[dict]]]) -> list[str]:
    """The experiment keys (and c/v labels) that :func:`matching` accepts, in report order."""
    names = [row["experiment"] for row, _ in configurations] + [row["cv_label"] for row, _ in configurations if row["cv_label"]]
    return list(dict.fromkeys(names))


def confusion_table(row: dict, runs: list[dict], width: int = 80) -> Group | Text:
    """One configuration's summed confusion matrix as a rich table, cells shaded by their row share.

    Each cell holds the count and, under it, its share of the true class in %; the background
    grows from white (0%) to dark blue (100%), and the diagonal is bold, which is what remains on
    a console without colour. The last columns are the row's images and its sensitivity. When
    the predicted classes do not fit ``width`` display cells, they are spread over several tables
    (:func:`~feph_finetune.results.reports.spread_columns`), each with the true classes; where a
    table still does not fit, the true classes' names fold
    (:func:`~feph_finetune.results.reports.names_narrowed`), so that no count is cut.
    Returns the title, the tables and the legend as one group, or a line of text when no finished
    run recorded a confusion matrix or the runs' matrices cannot be summed (different classes).
    """
    classes = list(row["sensitivity"]) or []
    try:
        summed = summed_confusion(runs, classes)
    except ValueError as error:  # runs of one configuration with different class lists
        return Text(printable(f"{_title(row, 0)}: no matrix: {error}"))
    title = printable(_title(row, summed[1] if summed else 0))
    if summed is None:
        return Text(f"{title}: no finished run recorded a confusion matrix")
    counts, _ = summed
    shares = row_shares(counts)
    short = {name: printable(abbreviation) for name, abbreviation in class_abbreviations(classes).items()}
    legend = ", ".join(f"{short[name]} {printable(name)}" for name in classes if short[name] != printable(name))
    headers = ["true class", *(short[name] for name in classes), "images", "sens."]
    rows = []
    for index, name in enumerate(classes):
        cells = [_cell(int(counts[index, column]), shares[index, column], index == column) for column in range(len(classes))]
        sensitivity = shares[index, index]
        rows.append([Text(printable(name)), *cells, Text(format_count(int(counts[index].sum()))), Text("–" if np.isnan(sensitivity) else format_number(100 * sensitivity, 1))])
    widths = [max(cell_len(line) for text in [Text(header), *(cells[column] for cells in rows)] for line in text.plain.split("\n"))
              for column, header in enumerate(headers)]
    names = [headers[0], *(cells[0].plain for cells in rows)]
    tables = [_matrix_table(headers, rows, columns, names_narrowed([widths[column] for column in columns], {0: names}, width)[0])
              for columns in spread_columns(widths, range(1, 1 + len(classes)), width)]
    caption = f"rows: true class, columns: predicted class{f' ({legend})' if legend else ''}; cells: images and % of the row"
    spaced = [part for index, table in enumerate(tables) for part in ([Text("")] if index else []) + [table]]
    return Group(Text(title, style="table.title"), *spaced, Text(caption, style="table.caption"))


def _matrix_table(headers: list[str], rows: list[list[Text]], columns: list[int], name_width: int) -> Table:
    """The matrix's ``columns`` (the first: the true classes) as a table, the class names folded
    to ``name_width`` display cells."""
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False, show_edge=False)
    table.add_column(Text(fold_long_words(headers[0], name_width)), width=name_width)
    for column in columns[1:]:
        table.add_column(Text(headers[column]), justify="right")
    for cells in rows:
        table.add_row(Text(fold_long_words(cells[0].plain, name_width)), *(cells[column] for column in columns[1:]))
    return table


def _title(row: dict, runs: int) -> str:
    name = short_name(row) if row["phase"] == "cv" else configuration_name(row)
    if row["phase"] == "cv":
        where = f"cross-validation, summed over {runs} fold{'s' if runs != 1 else ''}"
    else:
        where = f"{row['phase']} phase"
    return f"{name} ({row['label'] if row['phase'] == 'cv' else row['model']}), {where}"


def _cell(count: int, share: float, diagonal: bool) -> Text:
    if np.isnan(share):
        return Text(f"{format_count(count)}\n–")
    red, green, blue = (round(empty + share * (full - empty)) for empty, full in zip(_EMPTY, _FULL))
    foreground = "white" if share > 0.45 else "black"
    style = Style(color=foreground, bgcolor=Color.from_rgb(red, green, blue), bold=diagonal)
    return Text(f"{format_count(count)}\n{format_number(100 * share, 0)}%", style=style)


def print_confusion(configurations: list[tuple[dict, list[dict]]], console: "Console") -> None:
    """Print the confusion table of each given configuration, one after another, configurations
    whose titles would read the same told apart by their experiment (:func:`~feph_finetune.results.reports.rows_told_apart`)."""
    told = rows_told_apart([row for row, _ in configurations])
    for row, (_, runs) in zip(told, configurations):
        console.print(confusion_table(row, runs, console.width))
        console.print()
