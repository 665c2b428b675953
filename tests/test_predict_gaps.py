"""Frames that could not be decoded are a gap in ``frame``, not data: ``--smooth`` averages no
window across one (frame 19 is never averaged with frame 25), and ``--plot`` breaks its lines there
and marks it as not decoded, distinct from frames where no face was found.

A stand-in model gives each frame the probabilities ``(level / 255, 1 - level / 255)`` of its flat
grey level, so that a smoothed value says which frames its window held."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import matplotlib  # noqa: F401  (the plots extra, which CI installs: never skipped)
import pytest

from feph_finetune.predict.apply import FrameSeries, InputSummary, Predictor, Settings
from feph_finetune.predict.inputs import InputFrame

CLASSES = ("light", "dark")
#: Frames 20-24 could not be decoded: the reader yields frames 0-19 and 25-34 (and the gap's problem).
DECODED = [*range(20), *range(25, 35)]


class LevelModel:
    """A stand-in model: the mean of each input image, scaled to [0, 1], as the first class's probability."""

    def predict_on_batch(self, x):
        level = np.asarray(x, dtype=np.float64).reshape(len(x), -1).mean(axis=1) / 255
        return np.stack([level, 1 - level], axis=1)


class Rows:
    def __init__(self):
        self.rows: list[dict] = []

    def write(self, row: dict) -> None:
        self.rows.append(row)


def level(frame: int) -> int:
    return 5 * frame


def gapped_video():
    def frames():
        for index in DECODED:
            if index == 25:
                yield InputFrame(20, None, problem="video.avi: frames 20-24 could not be decoded (left out; later frames keep their numbers)")
            yield InputFrame(index, np.full((16, 16, 3), level(index), np.uint8), time_s=index / 10)

    return SimpleNamespace(name="video.avi", kind="video", frames=frames, announced=None)


def predicted(smooth: int = 3) -> tuple[list[dict], InputSummary]:
    predictor = Predictor(SimpleNamespace(model=LevelModel(), classes=CLASSES, frame_steps=[], batch_steps=[], input_size=16, folder="bundle"),
                          Settings(batch_size=8, smooth=smooth, series=True, prefetch=False))
    rows = Rows()
    summary = predictor.run(gapped_video(), rows)
    return rows.rows, summary


def test_smoothing_stops_at_a_gap_as_at_the_ends():
    rows, summary = predicted()
    smoothed = {row["frame"]: row["smooth_light"] for row in rows}
    assert [row["frame"] for row in rows] == DECODED
    # the window at frame 19 holds 18 and 19, at frame 25 holds 25 and 26; 1e-6: float32 probabilities
    assert smoothed[19] == pytest.approx((level(18) + level(19)) / 2 / 255, abs=1e-6)
    assert smoothed[25] == pytest.approx((level(25) + level(26)) / 2 / 255, abs=1e-6)
    assert smoothed[10] == pytest.approx((level(9) + level(10) + level(11)) / 3 / 255, abs=1e-6)
    assert [frame for frame, gap in zip(DECODED, summary.series.gap) if gap] == [25]  # what the plot breaks at


def test_the_plot_breaks_its_lines_at_a_gap_and_marks_it_not_decoded():
    from feph_finetune.predict.plots import probabilities_figure

    series = FrameSeries(len(CLASSES))
    for index in DECODED:  # no face in any frame: one band would cover the gap
        series.add(index / 10, False, np.array([level(index) / 255, 1 - level(index) / 255]), None, no_face=True, gap=index == 25)
    summary = InputSummary("video.avi", "video", CLASSES, frames=len(DECODED), faces=0, series=series)
    figure = probabilities_figure([summary], "model")
    ax = figure.axes[0]
    for line in ax.lines:
        x = np.asarray(line.get_xdata(), dtype=float)
        gap = np.flatnonzero(np.isnan(x))
        assert len(gap) == 1 and x[gap[0] - 1] == pytest.approx(1.9) and x[gap[0] + 1] == pytest.approx(2.5)  # 1.9 s, 2.5 s: frames 19 and 25
    spans = sorted((round(extent.x0, 6), round(extent.x1, 6)) for collection in ax.collections for extent in
                   [path.get_extents() for path in collection.get_paths()])
    # no face: frames 0-19 and 25-34, each half a step (0.05 s) wider; not decoded: 1.95-2.45 s between them
    assert spans == [(-0.05, 1.95), (1.95, 2.45), (2.45, 3.45)]
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert "no face found" in labels and "not decoded" in labels


def test_frames_missing_at_the_start_and_the_end_are_marked_not_decoded():
    """Frame 0 lost and the video stopped after frame 5 of the 12 its container announces: the
    plot marks both ends as not decoded (the band after frame 5 runs to frame 11), not only gaps
    between frames, and its axis shows them."""
    from feph_finetune.predict.plots import probabilities_figure

    def frames():
        yield InputFrame(0, None, problem="video.avi: frame 0 could not be decoded (left out; later frames keep their numbers)")
        for index in range(1, 6):
            yield InputFrame(index, np.full((16, 16, 3), level(index), np.uint8), time_s=index / 10)
        yield InputFrame(6, None, problem="video.avi: decoding stopped at frame 5 (5 frames decoded), but the container announces 12: the file is cut off or damaged")

    predictor = Predictor(SimpleNamespace(model=LevelModel(), classes=CLASSES, frame_steps=[], batch_steps=[], input_size=16, folder="bundle"),
                          Settings(batch_size=8, series=True, prefetch=False))
    summary = predictor.run(SimpleNamespace(name="video.avi", kind="video", frames=frames, announced=12), Rows())
    ax = probabilities_figure([summary], "model").axes[0]
    spans = sorted((round(extent.x0, 6), round(extent.x1, 6)) for collection in ax.collections for extent in
                   [path.get_extents() for path in collection.get_paths()])
    # frames a step (0.1 s) apart; each band half a step wider than its frames (rounded: float sums)
    assert spans == [(-0.05, 0.05), (0.55, 1.15)]
    assert ax.get_xlim() == pytest.approx((-0.05, 1.15))  # 1e-6 relative: float sums of steps


def test_a_whole_video_whose_count_is_a_frame_over_gets_no_end_band():
    """A container whose announced count FFmpeg derives from its duration may be a frame more than
    a whole video holds; the reader says nothing then, and the plot marks nothing after the end."""
    from feph_finetune.predict.plots import probabilities_figure

    def frames():
        for index in range(6):
            yield InputFrame(index, np.full((16, 16, 3), level(index), np.uint8), time_s=index / 10)

    predictor = Predictor(SimpleNamespace(model=LevelModel(), classes=CLASSES, frame_steps=[], batch_steps=[], input_size=16, folder="bundle"),
                          Settings(batch_size=8, series=True, prefetch=False))
    summary = predictor.run(SimpleNamespace(name="video.mkv", kind="video", frames=frames, announced=7), Rows())
    ax = probabilities_figure([summary], "model").axes[0]
    assert not ax.collections
    assert ax.get_xlim() == pytest.approx((0, 0.5))  # 1e-6 relative: float frame times
