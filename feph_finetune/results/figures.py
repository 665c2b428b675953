"""Figures of a results directory and ``report.md``, the file that shows them beside the tables.

``python -m feph_finetune report OUTDIR --figures DIR`` (or ``[report] figures = true`` after a
matrix) writes into DIR, under names that depend only on the configurations (so a rerun replaces
its files and links stay valid):

- ``confusion_<phase>_<experiment>[_<variant>].png``: one per configuration, row-normalised,
  counts and percentages in the cells, summed over the folds in cross-validation;
- ``cv_accuracy.png``: each cross-validated configuration's per-fold accuracy, its mean and 95%
  confidence interval (:func:`feph_finetune.results.stats.mean_ci95`), No-FT baselines marked;
- ``sensitivity_<phase>.png``: the sensitivity of every class, configurations side by side;
- ``learning_curves_<phase>_<experiment>[_<variant>].png``: loss and accuracy per epoch of each
  run of a configuration (one line per fold), from ``history.json``, training stages marked;
- ``report.md``: the markdown tables, then every figure, linked relatively.

matplotlib is the optional extra ``plots``; it is imported here only, inside the functions, and
draws with its Agg canvas without touching pyplot's global state, under the project's own settings
whatever the user's matplotlibrc says (:func:`feph_finetune.results.figures_style.project_style`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from rich.cells import cell_len

from feph_finetune.data.user_files import UnreadableFile, read_json_file
from feph_finetune.results.confusion import row_shares, summed_confusion
from feph_finetune.results.figures_style import project_style
from feph_finetune.results.reports import class_abbreviations, configuration_name, finished, fold_long_words, markdown_report, short_name
from feph_finetune.printable import printable
from feph_finetune.results.number_text import format_count, format_number
from feph_finetune.results.store import LONGEST_ATOMIC_NAME, atomic_folder, atomic_path
from feph_finetune.results.records import is_float_number, json_kind
from feph_finetune.results.stats import mean_ci95

#: What to run when matplotlib is missing.
PLOTS_INSTALL = 'pip install "feph_finetune[plots]"'

#: Resolution of every PNG (dots per inch); figure sizes below are in inches.
DPI = 110

_STAGE_SHADES = ("#f2f2f2", "#dfe8f3")
_FOLD_COLOURS = "tab10"


class PlotsUnavailable(ImportError):
    """matplotlib (the ``plots`` extra) is not installed."""


def plots_available() -> bool:
    """Whether matplotlib can be found, without importing it (it takes a second)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # ValueError: a module entry of None in sys.modules
        return False


def agg_figure_classes() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``; PlotsUnavailable with the install command when missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlotsUnavailable(f"figures need matplotlib, which is not installed ({error}): {PLOTS_INSTALL}") from error
    return Figure, FigureCanvasAgg


@contextmanager
def _layout_warnings(warn: Callable[[str], None]) -> Iterator[list[str]]:
    """Within the block, matplotlib's "constrained_layout not applied" warnings (one per figure
    whose labels leave its axes no room) and the figures the block adds to the list it is given
    (text cut at the figure's edge: :func:`_cut_off`) become one ``warn`` line; other warnings pass on."""
    import warnings

    cut_off: list[str] = []
    with warnings.catch_warnings(record=True) as raised:
        warnings.filterwarnings("always", message="constrained_layout not applied", category=UserWarning)
        yield cut_off
    layout = [warning for warning in raised if "constrained_layout not applied" in str(warning.message)]
    for warning in raised:
        if warning not in layout:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if layout or cut_off:
        warn(f"figures: {len(layout) + len(cut_off)} figure(s) have labels too long to lay out (shorter labels fix it); "
             "they are drawn without adjusting their layout, and some text may overlap or be cut at the edge")


@dataclass
class Plot:
    """One written figure: its file (in the report's folder), section and caption in ``report.md``."""

    file: str
    section: str
    caption: str
    cut_off: bool = False  # some text reaches past the figure's edge (see :func:`_cut_off`)


_SECTIONS = ("Cross-validation accuracy", "Sensitivity per class", "Confusion matrices", "Learning curves")


def write_report(configurations: list[tuple[dict, list[dict]]], run_dirs: Path, out_dir: Path, source: str = "",
                 warn: Callable[[str], None] = lambda line: None) -> list[Path]:
    """Write every figure of ``configurations`` and ``report.md`` into ``out_dir``; return their paths.

    ``configurations`` come from :func:`feph_finetune.results.reports.configurations` (with ``paper`` to
    show the published values); ``run_dirs`` is the results directory holding each run's
    ``history.json`` under its id; ``source`` names the results in the report's heading; ``warn``
    receives a line for each figure left out (a ``history.json`` of the wrong shape, runs whose
    confusion matrices cannot be summed), naming the file or run.
    Raises PlotsUnavailable before writing anything when matplotlib is missing.
    """
    agg_figure_classes()
    if out_dir.exists():
        plots = _write_into(configurations, run_dirs, out_dir, source, warn)
    else:  # a new folder appears complete or not at all (a full disk, an interrupt)
        with atomic_folder(out_dir, follow_link=True) as staging:
            plots = _write_into(configurations, run_dirs, staging, source, warn)
    return [out_dir / plot.file for plot in plots] + [out_dir / "report.md"]


def _write_into(configurations: list[tuple[dict, list[dict]]], run_dirs: Path, folder: Path, source: str,
                warn: Callable[[str], None]) -> list[Plot]:
    """Write the figures and ``report.md`` into the existing ``folder``; the figures written."""
    with project_style(_texts(configurations), warn), _layout_warnings(warn) as cut_off:
        plots = _figures(configurations, run_dirs, folder, warn)
        cut_off.extend(plot.file for plot in plots if plot.cut_off)
    with atomic_path(folder / "report.md") as temporary:  # an interrupt never leaves half a report.md
        temporary.write_text(_report_markdown([row for row, _ in configurations], plots, source), encoding="utf-8")
    return plots


def _figures(configurations: list[tuple[dict, list[dict]]], run_dirs: Path, out_dir: Path, warn: Callable[[str], None]) -> list[Plot]:
    """Draw and save every figure (see :func:`write_report`); the ones written, in report order."""
    plots: list[Plot] = []
    names = _StableNames()
    cv = [(row, runs) for row, runs in configurations if row["phase"] == "cv" and finished(runs)]
    if cv:
        plots.append(_save(cv_accuracy_figure(cv), out_dir, "cv_accuracy.png", _SECTIONS[0],
                           "Accuracy of each fold (dots), mean and 95% confidence interval (bar); No-FT baselines in grey."))
    for phase in dict.fromkeys(row["phase"] for row, _ in configurations):
        rows = [row for row, runs in configurations if row["phase"] == phase and finished(runs)]
        if rows:
            classes = list(dict.fromkeys(name for row in rows for name in row["sensitivity"]))
            plots.append(_save(sensitivity_figure(rows, phase), out_dir, f"sensitivity_{_slug(phase)}.png", _SECTIONS[1],
                               f"Sensitivity (recall) per class, {_phase_words(phase)}.{tick_legend(classes)}"))
    for row, runs in configurations:
        try:
            figure = confusion_figure(row, runs)
        except ValueError as error:  # runs of one configuration with different class lists
            warn(f"{_row_title(row)}: no confusion figure: {error}")
            continue
        if figure is not None:
            plots.append(_save(figure, out_dir, names.file("confusion", row), _SECTIONS[2], _confusion_caption(row)))
    for row, runs in configurations:
        figure = learning_curves_figure(row, _histories(runs, run_dirs, warn), _class_weighted(runs, run_dirs))
        if figure is not None:
            plots.append(_save(figure, out_dir, names.file("learning_curves", row), _SECTIONS[3], _row_title(row)))
    return plots


def _texts(configurations: list[tuple[dict, list[dict]]]) -> list[str]:
    """Every name the figures may draw: labels, experiment keys, models, variants, class names."""
    texts = []
    for row, runs in configurations:
        texts += [row["label"], row["cv_label"], row["experiment"], row["model"], row["phase"], *map(str, row["variant"].items()), *row["sensitivity"]]
        texts += [" ".join(map(str, run.get("classes") or [])) for run in runs]
    return texts


# --- names -------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


class _StableNames:
    """File names from the configuration alone; a clash after slugging gets a numbered suffix.
    A name longer than a file name may be (a long experiment name or grid value) is cut, a
    digest of the whole in its place: still stable, still distinct."""

    #: The longest stem (ASCII after slugging): room for ``-<number>.png`` (up to 999 clashes).
    LONGEST_STEM = LONGEST_ATOMIC_NAME - len("-999.png")

    def __init__(self) -> None:
        self.used: set[str] = set()

    def file(self, kind: str, row: dict) -> str:
        parts = [row["phase"], row["experiment"], *(f"{key}-{value}" for key, value in sorted(row["variant"].items()))]
        stem = f"{kind}_" + "_".join(_slug(str(part)) for part in parts)
        if len(stem) > self.LONGEST_STEM:
            digest = hashlib.sha256(stem.encode("ascii")).hexdigest()[:10]
            stem = f"{stem[: self.LONGEST_STEM - len(digest) - 1]}-{digest}"
        name, number = f"{stem}.png", 2
        while name in self.used:
            name, number = f"{stem}-{number}.png", number + 1
        self.used.add(name)
        return name


def _phase_words(phase: str) -> str:
    return {"cv": "cross-validation (mean over folds, bars: std)", "exploratory": "exploratory phase (one split)"}.get(phase, f"phase {phase}")


def _row_title(row: dict) -> str:
    if row["phase"] == "cv":
        return printable(f"{short_name(row)}: {row['label']} ({row['model']}), cross-validation")
    return printable(f"{configuration_name(row)} ({row['model']}), {row['phase']} phase")


#: The longest class name, in characters, that a figure's axis shows whole; longer names make
#: every class an abbreviation (as the console tables do), spelled out in the caption, so
#: that the axes keep their room.
TICK_NAME_LIMIT = 24
#: The most characters all class names together may have on an axis (the paper's seven have
#: 40); more (60 classes of 12 characters) are abbreviated too, as the console tables do.
TICK_NAMES_TOTAL = 160


def tick_names(classes: list[str]) -> dict[str, str]:
    """Each class's name on a figure's axis: itself, or the tables' abbreviation
    (:func:`~feph_finetune.results.reports.class_abbreviations`) when some name is longer than
    :data:`TICK_NAME_LIMIT` or all of them together longer than :data:`TICK_NAMES_TOTAL`;
    control characters shown escaped."""
    if all(len(name) <= TICK_NAME_LIMIT for name in classes) and sum(map(len, classes)) <= TICK_NAMES_TOTAL:
        return {name: printable(name) for name in classes}
    return {name: printable(short) for name, short in class_abbreviations(classes).items()}


def tick_legend(classes: list[str]) -> str:
    """What the abbreviated classes of :func:`tick_names` stand for, as a caption's last
    sentence (with a leading space); empty when no class is abbreviated."""
    ticks = tick_names(classes)
    pairs = [f"{ticks[name]}: {printable(name)}" for name in classes if ticks[name] != printable(name)]
    return f" Classes: {'; '.join(pairs)}." if pairs else ""


def _confusion_caption(row: dict) -> str:
    legend = tick_legend(list(row["sensitivity"]))
    return f"{_row_title(row)}.{legend}" if legend else _row_title(row)


def _legend_name(row: dict) -> str:
    if row["phase"] == "cv":
        return printable(f"{short_name(row)}: {row['label']}")
    return printable(f"{configuration_name(row)} ({row['model']})")


# --- figures -----------------------------------------------------------------------------------


def _new_figure(width: float, height: float):
    Figure, FigureCanvasAgg = agg_figure_classes()
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, out_dir: Path, name: str, section: str, caption: str) -> Plot:
    with atomic_path(out_dir / name) as temporary:
        figure.savefig(temporary, dpi=DPI, format="png")
    return Plot(name, section, caption, _cut_off(figure))


def _cut_off(figure) -> bool:
    """Whether a title or legend text of the drawn ``figure`` reaches more than a pixel past its
    edge: the layout makes room inside the figure for what fits, a longer line is cut silently."""
    texts = [*figure.texts, *(axes.title for axes in figure.axes)]
    texts += [text for legend in [*figure.legends, *(axes.get_legend() for axes in figure.axes)] if legend for text in legend.get_texts()]
    edge = figure.bbox
    return any(box.x0 < edge.x0 - 1 or box.x1 > edge.x1 + 1 for box in (text.get_window_extent() for text in texts if text.get_text()))


def confusion_figure(row: dict, runs: list[dict]):
    """The row-normalised confusion matrix, counts and % in the cells; None without a recorded matrix."""
    classes = list(row["sensitivity"])
    summed = summed_confusion(runs, classes)
    if summed is None:
        return None
    counts, folds = summed
    shares = 100.0 * row_shares(counts)
    side = min(CONFUSION_SIDE, CONFUSION_CELL * len(classes))  # of the matrix, in inches
    figure = _new_figure(max(6.4, side + 2.6), max(5.6, side + 2.2))
    axes = figure.add_subplot()
    from matplotlib import colormaps

    # A class without test images has no shares: grey, unlike a row of zeros.
    image = axes.imshow(np.ma.masked_invalid(shares), cmap=colormaps["Blues"].with_extremes(bad="0.85"), vmin=0.0, vmax=100.0)
    numbered = side / len(classes) >= CONFUSION_CELL
    for true in range(len(classes)) if numbered else []:
        for predicted in range(len(classes)):
            share = shares[true, predicted]
            text = f"{format_count(counts[true, predicted])}\n" + ("–" if np.isnan(share) else f"{format_number(share, 0)}%")
            axes.text(predicted, true, text, ha="center", va="center", fontsize=8,
                      color="white" if share > 55 else "black", fontweight="bold" if true == predicted else "normal")
    ticks = tick_names(classes)
    size = _tick_font_size(side / len(classes))
    rotation = 40 if len(classes) <= 12 else 90
    axes.set_xticks(range(len(classes)), [ticks[name] for name in classes], rotation=rotation, ha="right" if rotation == 40 else "center", fontsize=size)
    axes.set_yticks(range(len(classes)), [f"{ticks[name]} ({format_count(counts[index].sum())})" for index, name in enumerate(classes)], fontsize=size)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class (test images)")
    accuracy = 100 * np.trace(counts) / max(counts.sum(), 1)
    if row["phase"] == "cv":
        # The tables give the mean of the folds' accuracies; this one counts every test image once.
        where = f"summed over {folds} fold{'s' if folds != 1 else ''}, {format_count(counts.sum())} test images: accuracy {format_number(accuracy, 1)}% pooled over folds"
    else:
        where = f"one split, {format_count(counts.sum())} test images: accuracy {format_number(accuracy, 1)}%"
    note = "" if numbered else f"\n{len(classes)} classes: cells too small for their counts, the colour shows the share"
    # Above the colour bar too, so that a title wider than the matrix is never drawn over it.
    figure.suptitle(f"{_row_title(row)}\n{where}{note}", fontsize=10)
    figure.colorbar(image, ax=axes, label="share of the true class (%)", shrink=0.85)
    return figure


#: The side of a confusion matrix's cell, in inches: room for its count and share at 8 points.
#: Up to :data:`CONFUSION_SIDE` inches the matrix grows with the classes; beyond (from 29
#: classes) the cells shrink and show their share by colour only (thousands of numbers in
#: cells a few pixels wide were an unreadable smear and took minutes to lay out).
CONFUSION_CELL = 0.48
#: The largest side of a confusion matrix, in inches (at :data:`DPI`: 1,540 px).
CONFUSION_SIDE = 14.0


def _tick_font_size(pitch: float) -> float:
    """The font size, in points, of tick labels ``pitch`` inches apart: the default 10 where it
    fits, smaller (down to 5) so that neighbouring labels never overlap."""
    return float(np.clip(0.8 * 72 * pitch, 5.0, 10.0))


#: What of a figure's width its axes do not take (the y label and ticks, the margins), in inches.
FIGURE_MARGINS = 1.2
#: The width of a display cell (an average Latin letter in DejaVu Sans; a CJK character takes
#: two) as a share of the font size, with room between neighbouring labels.
_CELL_EMS = 0.65


def _tick_cells(pitch: float, font_size: float) -> int:
    """How many display cells of text fit between ticks ``pitch`` inches apart at ``font_size``."""
    return max(4, int(pitch * 72 / (_CELL_EMS * font_size)))


def wrapped(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` display cells (a wide CJK character counts two),
    broken between words and, in a word wider than that, where
    :func:`~feph_finetune.results.reports.fold_long_words` breaks it (``dataset.`` /
    ``labels=...``): the tick labels of configurations the report names by what differs
    (``A [dataset.labels=FePh_labels.csv, dataset.images=FePh_images]``) ran into each other."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in fold_long_words(paragraph, width).split(" "):
            first, *rest = word.split("\n")
            if line and cell_len(line) + 1 + cell_len(first) > width:
                lines.append(line)
                line = first
            else:
                line = f"{line} {first}" if line else first
            for piece in rest:
                lines.append(line)
                line = piece
        lines.append(line)
    return "\n".join(lines)


def _fold_accuracy(runs: list[dict]) -> list[tuple[int, float]]:
    return sorted((run.get("fold") or 0, 100.0 * run["metrics"]["accuracy"]) for run in finished(runs)
                  if isinstance(run["metrics"].get("accuracy"), (int, float)))


def cv_accuracy_figure(configurations: list[tuple[dict, list[dict]]]):
    """Per-fold accuracy (dots), mean and t-based 95% CI (bar) per cross-validated configuration.

    Fine-tuned configurations are coloured by backbone, No-FT baselines are grey squares; with
    ``paper`` values in the rows, the published mean and std (Table 5) stand to the right.
    """
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    width = max(7.0, 1.3 * len(configurations) + 2.5)
    cells = _tick_cells((width - FIGURE_MARGINS) / len(configurations), _CV_TICK_SIZE)
    names = [wrapped(f"{printable(short_name(row))}\n{printable(row['label'])}", cells) for row, _ in configurations]
    lines = max(name.count("\n") + 1 for name in names)
    figure = _new_figure(width, 5.3 + (lines - 2) * _line_height(_CV_TICK_SIZE) / 72)  # the axes keep their height however many lines
    axes = figure.add_subplot()
    with_paper = False
    handles = _reference_lines(axes, configurations)
    for position, (row, runs) in enumerate(configurations):
        values = [value for _, value in _fold_accuracy(runs)]
        colour = _backbone_colour(row)
        offsets = np.linspace(-0.07, 0.07, len(values)) if len(values) > 1 else np.zeros(len(values))
        axes.scatter(position - 0.2 + offsets, values, s=22, color=colour, alpha=0.8, zorder=3, marker="s" if row["baseline"] else "o")
        interval = mean_ci95(values)
        if interval["mean"] is not None:
            low, high = interval["ci95"] or (interval["mean"], interval["mean"])
            low, high = max(low, 0.0), min(high, 100.0)  # an accuracy lies in [0, 100]: so does its interval
            axes.errorbar(position + 0.04, interval["mean"], yerr=[[interval["mean"] - low], [high - interval["mean"]]],
                          fmt="D", color=colour, capsize=5, markersize=6, zorder=4)
            axes.text(position + 0.1, interval["mean"], format_number(interval["mean"], 1), va="center", fontsize=8)
        paper = row.get("paper")
        if paper:
            with_paper = True
            axes.errorbar(position + 0.34, 100 * paper["accuracy"], yerr=100 * (paper["accuracy_std"] or 0), fmt="*",
                          color="crimson", markersize=9, capsize=3, zorder=5)
    handles = handles + [
        Line2D([], [], linestyle="", marker="o", color="0.25", label="accuracy of one fold"),
        Line2D([], [], linestyle="", marker="s", color="0.6", label="No-FT baseline (one fold)"),
        Line2D([], [], linestyle="-", marker="D", color="0.25", label="mean and 95% CI (t, n-1 dof)"),
    ]
    if with_paper:
        handles.append(Line2D([], [], linestyle="-", marker="*", markersize=9, color="crimson", label="paper, Table 5: mean ± std"))
    axes.set_xticks(range(len(configurations)), names, fontsize=_CV_TICK_SIZE)
    axes.set_xlim(-0.6, len(configurations) - 0.4)
    axes.set_ylim(*_percent_limits(*axes.get_ylim()))
    axes.set_ylabel("accuracy (%)")
    axes.set_title("Cross-validation: accuracy per fold, mean and 95% confidence interval", fontsize=11)
    axes.grid(axis="y", alpha=0.3)
    # Under the axes and their tick labels, however many lines those take (:func:`wrapped`), never
    # over the points; a column per 2.2 inches, so that it fits the figure's width (4 columns
    # were cut at both edges of a 7-inch figure).
    columns = max(1, min(4, int(figure.get_size_inches()[0] / 2.2)))
    below = offset_copy(axes.transAxes, fig=figure, y=-(_LEGEND_GAP + lines * _line_height(_CV_TICK_SIZE)), units="points")
    axes.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, ncols=columns, frameon=False)
    return figure


#: The font size of the cross-validation figure's configuration names (points).
_CV_TICK_SIZE = 8
#: From the axes' lower edge to the legend, besides the tick labels' lines: the ticks and their
#: padding, and a gap (points).
_LEGEND_GAP = 20.0


def _line_height(font_size: float) -> float:
    """The height of one line of text at ``font_size``, in points (matplotlib's line spacing 1.2)."""
    return 1.2 * font_size


#: The room below 0% and above 100% on a percentage axis that reaches them, as a share of its
#: range: a point or cap at 100% drawn whole, its value's label inside the axes.
PERCENT_MARGIN = 0.04


def _percent_limits(low: float, high: float) -> tuple[float, float]:
    """The y limits of an axis of percentages autoscaled to ``(low, high)``: cut to [0, 100] (an
    accuracy lies there, so does its interval) plus :data:`PERCENT_MARGIN`, so that nothing
    drawn at 0% or 100% is cut in half by the frame."""
    margin = PERCENT_MARGIN * (min(high, 100.0) - max(low, 0.0))
    return max(low, -margin), min(high, 100.0 + margin)


def _reference_lines(axes, configurations: list[tuple[dict, list[dict]]]) -> list:
    """Draw chance (100 / classes) and, where the runs recorded confusion matrices, the
    majority-class rate (the largest class's share of the test images: what always predicting it
    scores) as labelled horizontal lines; return their legend handles.

    When every configuration has the same classes, each is one line across the figure, the
    majority pooled over all configurations' test images. When they differ (a configuration
    trained on other classes), a line for one set of classes is wrong for the others: each
    configuration gets its own short lines over its column, from its own classes and test images,
    their values written at their ends.
    """
    from matplotlib.lines import Line2D

    if len({frozenset(row["sensitivity"]) for row, _ in configurations}) > 1:
        majorities = [_column_reference_lines(axes, position, list(row["sensitivity"]), runs) for position, (row, runs) in enumerate(configurations)]
        return [Line2D([], [], color="0.45", linestyle=":", label="chance (1/classes), each column"),
                *([Line2D([], [], color="0.45", linestyle="--", label="majority class, each column")] if any(majorities) else [])]
    classes = list(dict.fromkeys(name for row, _ in configurations for name in row["sensitivity"]))
    handles = []
    if classes:
        chance = 100.0 / len(classes)
        axes.axhline(chance, color="0.45", linestyle=":", linewidth=1.0, zorder=1)
        handles.append(Line2D([], [], color="0.45", linestyle=":", label=f"chance: 1/{len(classes)} = {format_number(chance, 1)}%"))
    majority = _majority([runs for _, runs in configurations], classes)
    if majority:
        share, name = majority
        axes.axhline(share, color="0.45", linestyle="--", linewidth=1.0, zorder=1)
        handles.append(Line2D([], [], color="0.45", linestyle="--", label=f"majority class ({printable(name)}): {format_number(share, 1)}%"))
    return handles


def _column_reference_lines(axes, position: int, classes: list[str], runs: list[dict]) -> bool:
    """Chance and majority of one configuration (see :func:`_reference_lines`): dotted and dashed
    lines over its column at x ``position``, their values written small at the column's right end
    (where no point is drawn; chance above its line, majority below, so that equal values both
    show). Whether a majority line was drawn (its runs recorded confusion matrices)."""
    left, right = position - 0.48, position + 0.48
    if classes:
        chance = 100.0 / len(classes)
        axes.hlines(chance, left, right, color="0.45", linestyle=":", linewidth=1.0, zorder=1)
        axes.text(right, chance, f"1/{len(classes)}", ha="right", va="bottom", fontsize=7, color="0.3")
    majority = _majority([runs], classes)
    if majority:
        share = majority[0]
        axes.hlines(share, left, right, color="0.45", linestyle="--", linewidth=1.0, zorder=1)
        axes.text(right, share, f"{format_number(share, 1)}%", ha="right", va="top", fontsize=7, color="0.3")
    return majority is not None


def _majority(groups: list[list[dict]], classes: list[str]) -> tuple[float, str] | None:
    """``(share in %, class)`` of the largest class among the test images of the runs in
    ``groups`` that recorded a confusion matrix over ``classes``; None when none did."""
    totals = np.zeros(len(classes))
    for runs in groups:
        try:
            summed = summed_confusion(runs, classes)
        except ValueError:  # folds with other class lists: the confusion figure warns about them
            continue
        if summed is not None:
            totals += summed[0].sum(axis=1)
    if totals.sum() == 0:
        return None
    return 100.0 * totals.max() / totals.sum(), classes[int(totals.argmax())]


def _backbone_colour(row: dict) -> str:
    if row["baseline"]:
        return "0.6"
    return {"mobilenet": "C0", "efficientnet": "C1"}.get(row["model"], "C2")


def sensitivity_figure(rows: list[dict], phase: str):
    """Grouped bars: per class (and their average), one bar per configuration; std as error bars in cv."""
    classes = list(dict.fromkeys(name for row in rows for name in row["sensitivity"]))
    ticks = tick_names(classes)
    groups = [*(ticks[name] for name in classes), "average"]
    # At most SENSITIVITY_WIDTH inches (1,320 px) however many configurations: their bars get
    # thinner, the legend goes under the axes in columns.
    width = min(SENSITIVITY_WIDTH, max(8.0, 0.16 * len(rows) * len(groups) + 2.0))
    pitch = (width - 1.2) / len(groups)  # inches between classes: the axes take all but about 1.2 inches
    upright = max(_text_width(group, 10.0) for group in groups) <= 0.9 * 72 * pitch
    # Labels that do not fit side by side stand vertically, in a font no taller than their pitch.
    label_height = 0.0 if upright else max(_text_width(group, _tick_font_size(pitch)) for group in groups) / 72
    figure = _new_figure(width, 5.0 + 0.22 * -(-len(rows) // 3) + label_height)
    axes = figure.add_subplot()
    width = 0.84 / len(rows)
    for index, row in enumerate(rows):
        colour, hatch = _bar_style(index, row)
        means = [row["sensitivity"].get(name) for name in classes] + [row["avg_sensitivity"]]
        heights = np.array([100.0 * value if value is not None else np.nan for value in means])
        positions = np.arange(len(groups)) - 0.42 + width * (index + 0.5)
        axes.bar(positions, heights, width=width * 0.92, color=colour, yerr=_std_within_percent(row, classes, heights) if phase == "cv" else None,
                 error_kw={"elinewidth": 0.7, "capsize": 1.5, "alpha": 0.6}, label=_legend_name(row),
                 hatch=hatch, edgecolor="0.3" if hatch else "white", linewidth=0.4)
        zero = heights == 0  # a bar of height 0 is invisible: a dash as wide as the bar, so that 0% is not read as missing
        bar_points = 0.9 * width * figure.get_size_inches()[0] * 72 / len(groups)
        axes.scatter(positions[zero], np.full(zero.sum(), 0.8), marker="_", s=bar_points ** 2, color=colour, linewidths=2.5, zorder=3, clip_on=False)
    axes.axvline(len(classes) - 0.5, color="0.6", linewidth=0.8, linestyle=":")
    axes.set_xticks(range(len(groups)), groups, rotation=0 if upright else 90, fontsize=10.0 if upright else _tick_font_size(pitch))
    axes.set_xlim(-0.5, len(groups) - 0.5)
    axes.set_ylim(0, 105)
    axes.set_ylabel("sensitivity (%)")
    zeros = any(value == 0 for row in rows for value in [*row["sensitivity"].values(), row["avg_sensitivity"]])
    notes = [note for note, shown in (("hatched //: No-FT", any(row["baseline"] for row in rows)), ("a dash on the axis: 0%", zeros)) if shown]
    title = f"Sensitivity per class, {_phase_words(phase)}"
    axes.set_title(title + ("\n" + "; ".join(notes) if notes else ""), fontsize=11)
    axes.grid(axis="y", alpha=0.3)
    # Under the tick labels however tall they stand: the layout makes room for a figure's legend "outside".
    figure.legend(fontsize=7, loc="outside lower center", ncols=3, title="configuration", title_fontsize=8, frameon=False)
    return figure


#: The widest a sensitivity figure gets, in inches (at :data:`DPI`: 1,320 px).
SENSITIVITY_WIDTH = 12.0


def _text_width(text: str, size: float) -> float:
    """About how wide ``text`` is drawn at ``size`` points, in points: wide (CJK) characters an
    em, others 0.62 em (DejaVu Sans' average; enough to decide whether labels fit side by side)."""
    return size * sum(1.0 if unicodedata.east_asian_width(char) in "WF" else 0.62 for char in text)

#: Fill patterns that tell apart configurations beyond the palette's 9 colours (the 10th
#: configuration repeats the 1st colour with dots, and so on); No-FT baselines are hatched "//".
_EXTRA_HATCHES = ("..", "xx", "--", "oo")


def _bar_style(index: int, row: dict) -> tuple[Any, str | None]:
    """The colour and hatch of the ``index``-th configuration's bars: one of tab10's 9 colours
    (its grey is left to the other figures' baselines), and beyond 9 a hatch, so that no two
    configurations look alike (tab20's pairs of shades were hard to tell apart)."""
    from matplotlib import colormaps

    palette = [colormaps["tab10"](number) for number in range(10) if number != 7]
    cycle, position = divmod(index, len(palette))
    hatch = "//" if row["baseline"] else _EXTRA_HATCHES[(cycle - 1) % len(_EXTRA_HATCHES)] if cycle else None
    return palette[position], hatch


def _std_within_percent(row: dict, classes: list[str], heights: np.ndarray) -> np.ndarray:
    """Error bars (2 x bars, below and above) of one std over folds, cut at 0% and 100%: a
    sensitivity cannot leave that range, and a bar past 100% was clipped by the axes."""
    stds = [(row.get("sensitivity_std") or {}).get(name) for name in classes] + [row.get("avg_sensitivity_std")]
    spread = np.array([100.0 * value if value is not None else 0.0 for value in stds])
    means = np.nan_to_num(heights)
    return np.vstack([np.minimum(spread, means), np.minimum(spread, 100.0 - means)])


#: The largest epoch number a history may give: ten stages of the built-in schedules' 10,000
#: epochs; a far larger one (hand-edited) cannot be laid out on an axis.
MAX_HISTORY_EPOCHS = 100_000
#: The values of a history entry the learning curves draw.
CURVE_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
#: The largest loss the learning curves draw. Keras' cross-entropy is at most about 16 per image
#: (it clips probabilities at 1e-7), times a class weight; a loss far beyond (a run that
#: diverged, a hand-edited file: ``1e300`` is finite) would scale the axis so that every other
#: curve lies flat at 0, so such a value is left out as a gap, with a warning.
MAX_HISTORY_LOSS = 1e6


def _histories(runs: list[dict], run_dirs: Path, warn: Callable[[str], None]) -> list[tuple[int | None, list[dict]]]:
    """``(fold, epochs)`` of every finished run with a non-empty ``history.json`` (No-FT has none).

    A history that :func:`history_problem` refuses, or a file that cannot be read (a FIFO, too
    large or deep: :func:`~feph_finetune.data.user_files.read_json_file`), is left out with a
    warning naming the file."""
    found = []
    for run in finished(runs):
        path = run_dirs / str(run.get("id")) / "history.json"
        try:
            history = read_json_file(path)
        except UnreadableFile as error:
            if not error.missing:
                warn(f"{path}: left out of the learning curves, unreadable (it {error})")
            continue
        if history == []:
            continue
        problem = history_problem(history)
        if problem:
            warn(f"{path}: left out of the learning curves, {problem}")
            continue
        found.append((run.get("fold"), _within_bounds(history, path, warn)))
    return sorted(found, key=lambda item: -1 if item[0] is None else item[0])


def history_problem(history: Any) -> str:
    """Why a parsed ``history.json`` cannot be drawn ("" when it can): it must be an array of
    objects, each with a whole ``epoch`` from 1 to :data:`MAX_HISTORY_EPOCHS`, increasing (a run
    numbers its epochs across stages), ``stage``/``stage_label`` texts, ``head_features`` true or
    false, and :data:`CURVE_KEYS` values that are accuracies from 0 to 1, losses finite and from 0,
    or null (NaN, written by a run that diverged, is a gap in the curve)."""
    if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
        return "expected an array of objects, one per epoch"
    previous = 0
    for index, entry in enumerate(history):
        epoch = entry.get("epoch")
        if type(epoch) is not int or not previous < epoch <= MAX_HISTORY_EPOCHS:
            return f"[{index}].epoch: expected a whole number from {previous + 1} (epochs increase) to {MAX_HISTORY_EPOCHS}, got {json_kind(epoch)}"
        previous = epoch
        for key in ("stage", "stage_label"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                return f"[{index}].{key}: expected text or null, got {json_kind(entry[key])}"
        if entry.get("head_features") is not None and not isinstance(entry["head_features"], bool):
            return f"[{index}].head_features: expected true, false or null, got {json_kind(entry['head_features'])}"
        for key in CURVE_KEYS:
            value = entry.get(key)
            if value is not None and not _curve_value(key, value):
                what = "a fraction from 0 to 1" if key.endswith("accuracy") else "a finite number from 0"
                return f"[{index}].{key}: expected {what}, NaN or null, got {json_kind(value)}"
    return ""


def _within_bounds(history: list[dict], path: Path, warn: Callable[[str], None]) -> list[dict]:
    """``history`` with every loss above :data:`MAX_HISTORY_LOSS` taken out (a gap in its curve),
    and one ``warn`` line naming the file and the keys when there were any."""
    kept, beyond = [], {}
    for entry in history:
        wild = [key for key in CURVE_KEYS if key.endswith("loss") and _drawn(entry.get(key)) and entry[key] > MAX_HISTORY_LOSS]
        for key in wild:
            beyond.setdefault(key, entry["epoch"])
        kept.append({key: value for key, value in entry.items() if key not in wild})
    if beyond:
        where = ", ".join(f"{key} (first at epoch {epoch})" for key, epoch in beyond.items())
        warn(f"{path}: values above {format_number(MAX_HISTORY_LOSS, 0)} of {where} left out of the learning curves (a run that diverged, or an edited file)")
    return kept


def _curve_value(key: str, value: Any) -> bool:
    """Whether ``value`` can be drawn as ``key``: NaN (a gap: the run diverged), else an accuracy
    from 0 to 1 or a loss that is finite and from 0 (cross-entropy never goes below)."""
    if not is_float_number(value):
        return False
    if math.isnan(value):
        return True
    return 0 <= value <= 1 if key.endswith("accuracy") else math.isfinite(value) and value >= 0


def _class_weighted(runs: list[dict], run_dirs: Path) -> bool:
    """Whether the runs trained with class weights, from their ``config.json`` (written when a run
    starts, so results of any age have it); one that cannot be read (missing, a FIFO, not JSON)
    says nothing."""
    for run in finished(runs):
        try:
            config = read_json_file(run_dirs / str(run.get("id")) / "config.json")
        except UnreadableFile:
            continue
        if isinstance(config, dict) and isinstance(config.get("config"), dict) and isinstance(config["config"].get("class_weights"), str) and config["config"]["class_weights"]:
            return True
    return False


def _stage_spans(history: list[dict]) -> list[tuple[str, int, int]]:
    """``(stage, first epoch, last epoch)`` of each run of consecutive epochs in one stage; the
    stage in words (``stage_label``, from ``TrainingStage.label``) where the history has it, its
    control characters escaped (:func:`~feph_finetune.printable.printable`: a ``\\n`` drawn as
    ``\\n``, not a line over the title)."""
    spans: list[tuple[str, int, int]] = []
    for entry in history:
        stage, epoch = printable(str(entry.get("stage_label") or entry.get("stage", ""))), entry["epoch"]
        if spans and spans[-1][0] == stage:
            spans[-1] = (stage, spans[-1][1], epoch)
        else:
            spans.append((stage, epoch, epoch))
    return spans


def _drawn(value: Any) -> bool:
    """A history value that is a point of a curve (None, NaN and infinities are gaps)."""
    return type(value) in (int, float) and np.isfinite(float(value))


def learning_curves_figure(row: dict, histories: list[tuple[int | None, list[dict]]], class_weighted: bool = False):
    """Loss and accuracy per epoch, a line per run (fold), validation dashed, stages shaded; None without history.

    ``class_weighted``: the runs trained with class weights, so their loss is the class-weighted
    cross-entropy (Keras' ``class_weight``), which the axis says.
    """
    if not histories:
        return None
    figure = _new_figure(9.0, 3.8)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    from matplotlib import colormaps

    palette = colormaps[_FOLD_COLOURS]
    validated = any(key.startswith("val_") for _, history in histories for entry in history for key in entry)
    for index, (fold, history) in enumerate(histories):
        colour = palette(index % palette.N)
        epochs = [entry.get("epoch") for entry in history]
        name = "run" if fold is None else f"fold {fold}"
        for axes, key, scale in ((loss_axes, "loss", 1.0), (accuracy_axes, "accuracy", 100.0)):
            for prefix, style, suffix in (("", "-", "training"), ("val_", "--", "validation")):
                values = [entry.get(prefix + key) for entry in history]
                if any(_drawn(value) for value in values):
                    points = [(epoch, scale * value) for epoch, value in zip(epochs, values) if _drawn(value)]
                    axes.plot(*zip(*points), style, color=colour, marker="o", markersize=3, linewidth=1.2,
                              label=f"{name}, {suffix}" if validated else name)
    spans = _stage_spans(histories[0][1])  # (label, first, last)
    for axes in (loss_axes, accuracy_axes):
        for number, (stage, first, last) in enumerate(spans):
            axes.axvspan(first - 0.5, last + 0.5, color=_STAGE_SHADES[number % 2], zorder=0)
            axes.text((first + last) / 2, 1.01, stage.replace(", ", ",\n", 1), transform=axes.get_xaxis_transform(), ha="center", va="bottom", fontsize=7, color="0.3")
        axes.set_xlabel("epoch")
        axes.set_xlim(0.5, spans[-1][2] + 0.5)
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    on = "" if validated else "training "
    loss_axes.set_ylabel(f"{on}loss ({'class-weighted ' if class_weighted else ''}cross-entropy)")
    accuracy_axes.set_ylabel(f"{on}accuracy (%)")
    if validated or len(histories) > 1:
        accuracy_axes.legend(fontsize=7, loc="best")
    figure.suptitle(f"Learning curves: {_row_title(row)} (shaded: training stages)", fontsize=10)
    return figure


# --- report.md ---------------------------------------------------------------------------------


def _report_markdown(rows: list[dict], plots: list[Plot], source: str) -> str:
    heading = f"# Results{f' of `{source}`' if source else ''}"
    parts = [heading, "Written by `python -m feph_finetune report`; the figures are the PNG files beside this file.",
             "## Tables", markdown_report(rows)]
    for section in _SECTIONS:
        chosen = [plot for plot in plots if plot.section == section]
        if chosen:
            parts.append(f"## {section}")
            parts.extend(f"![{_escaped(plot.caption)}]({plot.file})\n\n*{_escaped(plot.caption)}*" for plot in chosen)
    return "\n\n".join(parts) + "\n"


def _escaped(text: str) -> str:
    """Text safe inside a markdown image's alt text and an emphasis (grid variants hold brackets)."""
    return re.sub(r"([\\`*_\[\]<>|])", r"\\\1", printable(text))
