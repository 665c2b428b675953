"""``predict --plot`` on a long video: the plot costs little beyond predicting, in memory and time,
and draws what a point per frame would have drawn."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import matplotlib  # noqa: F401  (the plots extra, which CI installs: never skipped)

from feph_finetune.predict.plots import envelope  # noqa: E402

CLASSES = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: Run in a fresh interpreter: its peak resident memory after plotting a video of N frames where
#: no face was found (the worst case: a grey band per frame), per-frame values kept as predict keeps them.
_PLOT_PEAK = """
import json, resource, sys
from pathlib import Path
import numpy as np
from feph_finetune.predict.apply import InputSummary
from feph_finetune.predict.plots import plot_probabilities

frames, classes = int(sys.argv[1]), tuple(json.loads(sys.argv[2]))
logits = np.cumsum(np.random.default_rng(0).normal(0, 0.1, (frames, len(classes))), axis=0)  # a video's slow changes
summary = InputSummary("long.avi", "video", classes)
for frame in range(frames):
    probabilities = np.exp(logits[frame]) / np.exp(logits[frame]).sum()
    row = {"frame": frame, "time_s": frame / 30, "face_found": False, "predicted": classes[int(probabilities.argmax())]}
    summary.add(row, probabilities, None, series=True)
assert plot_probabilities([summary], Path(sys.argv[3]), "title") == 1
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _plot_peak_kib(frames: int, path) -> int:
    done = subprocess.run([sys.executable, "-c", _PLOT_PEAK, str(frames), json.dumps(CLASSES), str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def test_a_ten_times_longer_video_barely_grows_the_plot_s_memory(tmp_path):
    """A band and 7 points per frame (30,000 frames) took 185 s and 300 MB more than predicting;
    merged bands and envelopes of a few points per pixel column make the peak nearly independent
    of the length (matplotlib and numpy take about 100 MB either way)."""
    short, long = _plot_peak_kib(3_000, tmp_path / "short.png"), _plot_peak_kib(30_000, tmp_path / "long.png")
    # 27,000 more frames may add their compact series (37 bytes each, 1 MB) and the envelope's
    # arrays: a tenth of the fixed cost is room for both, a patch per frame (~10 kB) is far more.
    assert long / short < 1.1, (short, long)


def _drawn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The pixels of ``y`` against ``x`` drawn as predict's panels draw a curve (10 x 2.8 inches, 100 dpi)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 2.8), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0.06, 0.1, 0.78, 0.8))  # the panel's share of the figure's width in predict's plot
    axes.plot(x, y, color="C0", linewidth=1.4)
    axes.set_xlim(x.min(), x.max())
    axes.set_ylim(0, 1)
    axes.set_axis_off()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def test_the_envelope_draws_what_every_point_draws():
    rng = np.random.default_rng(3)
    x = np.arange(30_000) / 30
    walk = np.clip(0.5 + np.cumsum(rng.normal(0, 0.01, len(x))), 0, 1)
    y = np.where(rng.random(len(x)) < 0.001, 1.0, walk)  # single-frame spikes must stay visible
    shown_x, shown_y = envelope(x, y)
    assert np.all(np.diff(shown_x) >= 0)  # the points keep their order in time
    assert len(shown_x) <= 8_000 and shown_y.max() == y.max() and shown_y.min() == y.min()
    ink, shown_ink = (255 - _drawn(x, y).astype(int)).max(axis=-1), (255 - _drawn(shown_x, shown_y).astype(int)).max(axis=-1)
    # Antialiasing shades the line's edge pixels a little differently; a pixel clearly inked (more
    # than half from white) on one side and nearly white (within an eighth) on the other is a
    # visible difference: at most one in a thousand of the line's pixels.
    lost, added = ((ink > 128) & (shown_ink < 32)).sum(), ((shown_ink > 128) & (ink < 32)).sum()
    assert max(lost, added) <= 0.001 * (ink > 128).sum(), (lost, added, (ink > 128).sum())


def test_a_short_curve_is_drawn_point_by_point():
    x, y = np.arange(100.0), np.linspace(0, 1, 100)
    shown_x, shown_y = envelope(x, y)
    assert shown_x is x and shown_y is y


def _summary(name: str, kind: str, frames: int, seconds_per_frame: float | None):
    from feph_finetune.predict.apply import InputSummary

    summary = InputSummary(name, kind, CLASSES)
    for frame in range(frames):
        probabilities = np.full(len(CLASSES), 1 / len(CLASSES))
        time_s = None if seconds_per_frame is None else frame * seconds_per_frame
        summary.add({"frame": frame, "time_s": time_s, "face_found": True, "predicted": CLASSES[0]}, probabilities, None, series=True)
    return summary


@pytest.mark.parametrize("frames", [2, 4, 6, 20, 40])
def test_an_axis_of_frame_numbers_has_whole_numbers_only(frames):
    """A frame folder's axis read 0.0, 2.5, 5.0: frames are counted, so every tick is a whole
    frame number. A video's axis of seconds keeps its fractions."""
    from feph_finetune.predict.plots import probabilities_figure

    figure = probabilities_figure([_summary("frames", "folder", frames, None), _summary("clip.mp4", "video", frames, 0.1)], "model")
    figure.canvas.draw()
    folder, video = figure.axes[:2]
    assert folder.get_xlabel() == "frame" and video.get_xlabel() == "time (s)"
    low, high = folder.get_xlim()
    ticks = [tick for tick in folder.get_xticks() if low <= tick <= high]
    assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks), ticks
    labels = [label.get_text() for label in folder.get_xticklabels() if label.get_text()]
    assert labels and all(label.lstrip("−-").isdigit() for label in labels), labels


@pytest.mark.parametrize("panels, said", [(1, "plot of 1 sequence written to"), (2, "plot of 2 sequences written to")], ids=["one", "two"])
def test_the_plot_line_counts_its_sequences_in_english(tmp_path, monkeypatch, panels, said):
    """It said "plot of 1 sequences"."""
    from types import SimpleNamespace

    from rich.console import Console

    from feph_finetune.predict import command, plots

    monkeypatch.setattr(plots, "plot_probabilities", lambda *args: panels)
    console = Console(record=True, width=200)
    args = SimpleNamespace(out=None, plot=tmp_path / "p.png", smooth=1)
    command._finish_outputs([], SimpleNamespace(run_id="r"), args, console, console)
    assert console.export_text().startswith(said)
