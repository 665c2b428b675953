"""``predict --plot``: class probabilities over time, one panel per video or frame folder.

Uses matplotlib (the optional extra ``feph_finetune[plots]``) through :mod:`feph_finetune.results.figures`,
only when a plot is asked for; the Agg canvas writes the PNG without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from feph_finetune.printable import printable
from feph_finetune.results.figures import agg_figure_classes, fonts_for
from feph_finetune.results.number_text import format_count
from feph_finetune.predict.apply import InputSummary


def plot_probabilities(summaries: Sequence[InputSummary], path: Path, title: str, warn: Callable[[str], None] = lambda line: None) -> int:
    """Write one panel per sequence (a video or folder with frames) to the PNG ``path``.

    Each panel draws the probability of each class against time (video, seconds) or frame
    index (folder): the smoothed values when ``--smooth`` was given, over the raw ones drawn
    faintly; frames where no face was found are marked with grey bands. Returns the number of
    panels (0: nothing to draw, no file written). Labels in any script are drawn with an
    installed font that has them (:func:`feph_finetune.results.figures.fonts_for`), else ``warn`` says so.
    """
    agg_figure_classes()
    sequences = [summary for summary in summaries if summary.kind != "image" and summary.frames > 0]
    if not sequences:
        return 0
    with fonts_for([title, *(summary.name for summary in sequences), *sequences[0].classes], warn):
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
    panel), counts written as the reports write them (:func:`~feph_finetune.results.number_text.format_count`)."""
    Figure, FigureCanvasAgg = agg_figure_classes()
    import matplotlib

    colours = matplotlib.colormaps["tab10"].colors
    figure = Figure(figsize=(10, 2.8 * len(sequences) + 0.8))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(sequences), 1, squeeze=False, sharey=True)
    for ax, summary in zip(axes[:, 0], sequences):
        x = np.asarray(summary.x, dtype=float)
        raw = np.asarray(summary.probabilities)
        smooth = np.asarray(summary.smoothed) if summary.smoothed else None
        _mark_no_face(ax, x, np.asarray(summary.no_face))
        for index, name in enumerate(summary.classes):
            colour = colours[index % len(colours)]
            if smooth is None:
                ax.plot(x, raw[:, index], color=colour, linewidth=1.4, label=printable(name))
            else:
                ax.plot(x, raw[:, index], color=colour, linewidth=0.7, alpha=0.3)
                ax.plot(x, smooth[:, index], color=colour, linewidth=1.6, label=printable(name))
        faces = "" if summary.faces is None else f", face found in {format_count(summary.faces)} of {format_count(summary.frames)} frames"
        ax.set_title(f"{printable(summary.name)}{faces}", fontsize=10, loc="left")
        ax.set_xlabel(summary.x_label)
        ax.set_ylabel("probability")
        ax.set_ylim(0, 1)
        ax.set_xlim(x.min(), x.max() if x.max() > x.min() else x.min() + 1)
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if any(any(summary.no_face) for summary in sequences):
        from matplotlib.patches import Patch

        handles.append(Patch(color="0.8", label="no face found"))
        labels.append("no face found")
    figure.suptitle(printable(title), x=0.01, ha="left", fontsize=11)
    figure.tight_layout(rect=(0, 0, 0.85, 1))
    figure.legend(handles, labels, loc="center left", bbox_to_anchor=(0.855, 0.5), fontsize=9, frameon=False)
    return figure


def _mark_no_face(ax, x: np.ndarray, no_face: np.ndarray) -> None:
    """Grey bands over the frames without a face, each half a frame step wide on either side."""
    if not no_face.any():
        return
    step = float(np.median(np.diff(x))) if len(x) > 1 else 1.0
    for position in x[no_face]:
        ax.axvspan(position - step / 2, position + step / 2, color="0.8", linewidth=0, zorder=0)
