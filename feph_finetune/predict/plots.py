"""``predict --plot``: class probabilities over time, one panel per video or frame folder.

Uses matplotlib (the optional extra ``feph_finetune[plots]``) through :mod:`feph_finetune.results.figures`,
only when a plot is asked for; the Agg canvas writes the PNG without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from feph_finetune.printable import printable
from feph_finetune.results.figures import agg_figure_classes
from feph_finetune.results.figures_style import project_style
from feph_finetune.results.number_text import format_count
from feph_finetune.predict.apply import InputSummary


def plot_probabilities(summaries: Sequence[InputSummary], path: Path, title: str, warn: Callable[[str], None] = lambda line: None) -> int:
    """Write one panel per sequence (a video or folder with frames) to the PNG ``path``.

    Each panel draws the probability of each class against time (video, seconds) or frame
    index (folder): the smoothed values when ``--smooth`` was given, over the raw ones drawn
    faintly; frames where no face was found are marked with grey bands, frames that could not be
    read (a gap in the frame numbers, frames before the first one, and those the container
    announces after the last) with hatched ones, and no line crosses them. Returns the number of
    panels (0: nothing to draw, no file written). It is drawn under the project's settings whatever
    the user's matplotlibrc says, labels in any script with an installed font that has them
    (:func:`feph_finetune.results.figures_style.project_style`), else ``warn`` says so.
    """
    agg_figure_classes()
    sequences = [summary for summary in summaries if summary.kind != "image" and summary.series]
    if not sequences:
        return 0
    with project_style([title, *(summary.name for summary in sequences), *sequences[0].classes], warn):
        _draw(sequences, path, title)
    return len(sequences)


def _draw(sequences: Sequence[InputSummary], path: Path, title: str) -> None:
    from feph_finetune.results.store import atomic_path

    figure = probabilities_figure(sequences, title)
    with atomic_path(Path(path), follow_link=True) as temporary:
        figure.savefig(temporary, dpi=100, format="png")


def probabilities_figure(sequences: Sequence[InputSummary], title: str):
    """The figure :func:`plot_probabilities` writes (a matplotlib ``Figure``); names (inputs,
    classes, the title) drawn with their control characters escaped as the console shows them
    (:func:`~feph_finetune.printable.printable`: a ``\\n`` in a file name is no line over the
    panel), counts written as the reports write them (:func:`~feph_finetune.results.number_text.format_count`),
    an axis of frame numbers ticked at whole frames only."""
    Figure, FigureCanvasAgg = agg_figure_classes()
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    colours = matplotlib.colormaps["tab10"].colors
    figure = Figure(figsize=(10, 2.8 * len(sequences) + 0.8))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(sequences), 1, squeeze=False, sharey=True)
    for ax, summary in zip(axes[:, 0], sequences):
        x, raw, smooth = summary.series.x, summary.series.probabilities, summary.series.smoothed
        starts = np.flatnonzero(summary.series.gap[1:]) + 1  # the first frame after each gap between frames
        _mark_no_face(ax, x, summary.series.no_face, starts)
        ends = _mark_not_decoded(ax, x, starts, summary.missing_before(), summary.missing_after())
        for index, name in enumerate(summary.classes):
            colour = colours[index % len(colours)]
            if smooth is None:
                ax.plot(*broken_envelope(x, raw[:, index], starts), color=colour, linewidth=1.4, label=printable(name))
            else:
                ax.plot(*broken_envelope(x, raw[:, index], starts), color=colour, linewidth=0.7, alpha=0.3)
                ax.plot(*broken_envelope(x, smooth[:, index], starts), color=colour, linewidth=1.6, label=printable(name))
        faces = "" if summary.faces is None else f", face found in {format_count(summary.faces)} of {format_count(summary.frames)} frames"
        ax.set_title(f"{printable(summary.name)}{faces}", fontsize=10, loc="left")
        ax.set_xlabel(summary.x_label)
        if summary.x_label == "frame":  # frames are counted: 0, 5, 10, never 2.5
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("probability")
        ax.set_ylim(0, 1)
        low, high = min(x.min(), ends[0]), max(x.max(), ends[1])
        ax.set_xlim(low, high if high > low else low + 1)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    from matplotlib.patches import Patch

    if any(summary.series.no_face.any() for summary in sequences):
        handles.append(Patch(color="0.8", label="no face found"))
        labels.append("no face found")
    if any(summary.series.gap.any() or summary.missing_after() for summary in sequences):
        handles.append(Patch(**NOT_DECODED, label="not decoded"))
        labels.append("not decoded")
    figure.suptitle(printable(title), x=0.01, ha="left", fontsize=11)
    figure.tight_layout(rect=(0, 0, 0.85, 1))
    figure.legend(handles, labels, loc="center left", bbox_to_anchor=(0.855, 0.5), fontsize=9, frameon=False)
    return figure


#: Runs of points a long curve is cut into by :func:`envelope`: two per pixel column of a panel
#: (10 inches at 100 dpi, of which the axes take about 800 pixels); with one per column a run
#: straddling two columns lost a pixel here and there.
ENVELOPE_COLUMNS = 2_000


def envelope(x: np.ndarray, y: np.ndarray, columns: int = ENVELOPE_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` to draw instead of a long curve, looking the same at the panel's resolution.

    Up to ``4 * columns`` points are returned as they are. Longer curves (shapes (n,)) are cut
    into ``columns`` runs of consecutive points, each at most half a pixel column wide, and each
    run gives its first, lowest, highest and last point in the order they occur: the line drawn
    through them covers the same pixels (every peak and dip stays, and the joins between runs),
    while matplotlib lays out 8,000 points instead of a point per frame (30,000 points per class
    and a band per frame took minutes).
    """
    if len(x) <= 4 * columns:
        return x, y
    bounds = np.linspace(0, len(x), columns + 1).astype(int)
    runs = np.split(y, bounds[1:-1])
    lowest = bounds[:-1] + np.array([np.argmin(run) for run in runs])
    highest = bounds[:-1] + np.array([np.argmax(run) for run in runs])
    chosen = np.sort(np.stack([bounds[:-1], lowest, highest, bounds[1:] - 1], axis=1), axis=1).ravel()
    return x[chosen], y[chosen]


def broken_envelope(x: np.ndarray, y: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` to draw, each run of frames between gaps (``starts``: the first frame after each)
    as its :func:`envelope`, the runs joined by a NaN point, where matplotlib breaks the line: no
    line is drawn across frames that were never decoded. The columns are shared out by length."""
    bounds = [0, *starts.tolist(), len(x)]
    xs, ys = [], []
    for start, end in zip(bounds[:-1], bounds[1:]):
        columns = max(1, ENVELOPE_COLUMNS * (end - start) // max(len(x), 1))
        run_x, run_y = envelope(x[start:end], y[start:end], columns)
        xs += [run_x, [np.nan]]
        ys += [run_y, [np.nan]]
    return np.concatenate(xs[:-1]), np.concatenate(ys[:-1])


#: How frames that could not be read are drawn: hatched, unlike the grey of frames without a face.
NOT_DECODED = {"facecolor": "none", "edgecolor": "0.6", "hatch": "//", "linewidth": 0}


def _step(x: np.ndarray, starts: np.ndarray) -> float:
    """The usual distance between neighbouring frames (the median, gaps left out)."""
    steps = np.delete(np.diff(x), starts - 1) if len(x) > 1 else np.zeros(0)
    return float(np.median(steps)) if len(steps) else 1.0


def _mark_no_face(ax, x: np.ndarray, no_face: np.ndarray, starts: np.ndarray) -> None:
    """Grey bands over the frames without a face, each half a frame step wide on either side;
    consecutive frames without a face make one band (one band per frame took minutes to draw
    for a long video where no face was found), never across a gap (``starts``: the first frame
    after each), which is no frame without a face but frames never decoded."""
    if not no_face.any():
        return
    step = _step(x, starts)
    marked = no_face.astype(np.int8)
    breaks = np.zeros(len(x) + 1, np.int8)
    breaks[starts] = 1  # a run ends before each gap and starts again after it
    edges = np.diff(np.concatenate([[0], marked, [0]]))
    run_starts = np.flatnonzero((edges == 1) | ((breaks == 1) & (np.concatenate([marked, [0]]) == 1)))
    run_ends = np.flatnonzero((edges == -1) | ((breaks == 1) & (np.concatenate([[0], marked]) == 1))) - 1
    ax.broken_barh([(x[start] - step / 2, x[end] - x[start] + step) for start, end in zip(run_starts, run_ends)], (0, 1),
                   transform=ax.get_xaxis_transform(), color="0.8", linewidth=0, zorder=0)


def _mark_not_decoded(ax, x: np.ndarray, starts: np.ndarray, before: int = 0, after: int = 0) -> tuple[float, float]:
    """Hatched bands over each gap between frames (``starts``: the first frame after each), from
    half a step after the frame before it to half a step before the frame after it, and over the
    ``before`` kept frames missing before the first one drawn and the ``after`` missing after the
    last (the container announces them), a step each. The band after the last frame is drawn at
    most as long as the frames drawn, or 10 steps (a header's count is a claim: 2e9 frames
    announced after 40 decoded would leave the data a sliver). Returns the x the bands reach,
    ``(low, high)``, for the axis to show them."""
    step = _step(x, starts)
    bands = [(x[start - 1] + step / 2, x[start] - x[start - 1] - step) for start in starts]
    low, high = x[0], x[-1]
    if before:
        low = x[0] - step / 2 - before * step
        bands.append((low, before * step))
    if after:
        high = x[-1] + step / 2 + min(after * step, max(x[-1] - x[0], 10 * step))
        bands.append((x[-1] + step / 2, high - x[-1] - step / 2))
    if bands:
        ax.broken_barh(bands, (0, 1), transform=ax.get_xaxis_transform(), zorder=0, **NOT_DECODED)
    return low, high
