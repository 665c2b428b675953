"""Apply a model bundle to new frames: images, folders of frames, videos.

Each frame goes through the bundle's frame steps and resize (:func:`feph_finetune.data.frames.apply_steps`,
the face detector running once per frame) and, in batches, through its batch steps
(:func:`feph_finetune.training.stages.preprocess_batch`) into the model: the functions that prepared the
run's own training and test images. Frames are streamed and cropped as they are decoded: memory
holds about two full frames (a video frame waits for the next one's timestamp) and two batches
of model-sized crops (the one the model predicts, the next one being prepared), and per-frame
probabilities only when a plot needs them.

Output rows (one per kept frame), in this column order:

- ``input``: the INPUT argument the frame comes from; ``file``: the image's file name (folders and
  images), empty for video;
- ``frame``: the frame index (video: the frame's position in the container from 0, so a frame
  that could not be decoded leaves a gap, or with a variable frame rate its place in decode order;
  folder: position in natural order);
  ``time_s``: seconds from the video's start, frame / the container's frame rate (variable frame
  rate: the frame's own timestamp); empty otherwise;
- ``face_found``: true when a frame step found a face, false when it used its fallback (then
  ``fallback`` says which, e.g. ``no_face``), empty when no frame step reports either;
  ``face_x``, ``face_y``, ``face_w``, ``face_h``: the detector's box in pixels of the frame;
- ``p_<class>``: the model's probability of each class, in the bundle's class order;
  ``predicted``: the most probable class;
- with ``--smooth N``: ``smooth_<class>`` and ``smooth_predicted``, from the centred moving average
  of the probabilities over N frames of the same input (N odd: (N-1)/2 kept frames before and
  after). At the start and end of a sequence, and on either side of frames that could not be
  read (a gap in ``frame``), the window is cut short and averages the frames that exist (no
  padding): frame 19 is never averaged with frame 25. Frames without a face take part like the others.
"""

from __future__ import annotations

import csv
import json
import os
import math
import threading
import time
from array import array
from collections import deque
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from feph_finetune.api import FrameResult
from feph_finetune.predict.bundle import Bundle, BundleError
from feph_finetune.data.frames import apply_steps
from feph_finetune.predict.inputs import InputFrame, PredictInput
from feph_finetune.predict.prefetch import prefetched

OUTPUT_SUFFIXES = (".csv", ".jsonl")


def columns(classes: tuple[str, ...], smooth: bool) -> list[str]:
    """The output's columns, in order (see the module's docstring)."""
    head = ["input", "file", "frame", "time_s", "face_found", "face_x", "face_y", "face_w", "face_h", "fallback"]
    probabilities = [f"p_{name}" for name in classes] + ["predicted"]
    smoothed = [f"smooth_{name}" for name in classes] + ["smooth_predicted"] if smooth else []
    return head + probabilities + smoothed


# --- smoothing -----------------------------------------------------------------------------------


class CentredMean:
    """Centred moving average over ``n`` (odd) consecutive rows, streamed.

    ``push(row, probabilities)`` returns the rows whose window is complete, each with its mean;
    ``flush()`` returns the rest at the end of the sequence, with windows cut short. Holds at most
    ``n`` rows.
    """

    def __init__(self, n: int):
        if n < 1 or n % 2 == 0:
            raise ValueError(f"the smoothing window must be a positive odd number of frames, not {n}")
        self.half = n // 2
        self.rows: deque = deque()
        self.next = 0  # position in ``rows`` of the next row to return

    def push(self, row: dict, probabilities: np.ndarray) -> list[tuple[dict, np.ndarray]]:
        self.rows.append((row, probabilities))
        return self._ready(final=False)

    def flush(self) -> list[tuple[dict, np.ndarray]]:
        """The rows left, windows cut short at their end; the next row pushed starts afresh (after a gap)."""
        out = self._ready(final=True)
        self.rows.clear()
        self.next = 0
        return out

    def _ready(self, final: bool) -> list[tuple[dict, np.ndarray]]:
        out = []
        while self.next < len(self.rows) and (final or len(self.rows) - 1 - self.next >= self.half):
            window = [probabilities for _, probabilities in list(self.rows)[max(0, self.next - self.half) : self.next + self.half + 1]]
            out.append((self.rows[self.next][0], np.mean(window, axis=0)))
            self.next += 1
            while self.next > self.half:
                self.rows.popleft()
                self.next -= 1
        return out


# --- writers -------------------------------------------------------------------------------------


def _csv_cell(value):
    """A CSV cell: empty for a missing value, ``true``/``false``, and a name that is not valid UTF-8
    (a file name's bytes, held as U+DC80-U+DCFF) with each such byte written ``\\xff``, as
    :func:`feph_finetune.printable.printable` and ``ls -b`` show it (JSON lines escape it their way)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return os.fsencode(value).decode("utf-8", "backslashreplace")
    return value


class RowWriter:
    """Rows to ``path`` as CSV (empty cells for missing values) or JSON lines (null).

    The format follows ``suffix`` (default: ``path``'s), so that a temporary file beside the
    target (see :func:`feph_finetune.results.store.atomic_path`) is written in the target's format.
    A context manager: leaving it closes the file.
    """

    def __init__(self, path: Path, fields: list[str], suffix: str | None = None):
        self.path, self.fields = Path(path), fields
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path, "w", encoding="utf-8", newline="")
        self.csv = None
        if (suffix or self.path.suffix).lower() == ".csv":
            self.csv = csv.DictWriter(self.handle, fieldnames=fields)
            self.csv.writeheader()

    def write(self, row: dict) -> None:
        if self.csv is not None:
            self.csv.writerow({key: _csv_cell(value) for key, value in row.items()})
        else:
            self.handle.write(json.dumps(row) + "\n")

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> "RowWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# --- per-input results ---------------------------------------------------------------------------


class FrameSeries:
    """The per-frame values a plot draws, in compact growing buffers (``--plot`` only).

    Each frame keeps its x (8 bytes), its probabilities and smoothed probabilities (4 bytes a
    class each: a plot cannot show more than float32's 7 digits), a no-face flag and a flag for
    following frames that could not be read (1 byte each):
    a 30,000-frame video of 7 classes holds about 2 MB, where lists of arrays held hundreds of
    bytes per frame. The properties are numpy views of what was added so far.
    """

    def __init__(self, classes: int):
        self.classes = classes
        self._x, self._no_face, self._gap = array("d"), array("b"), array("b")
        self._probabilities, self._smoothed = array("f"), array("f")
        self.frame_numbers = False  # some x is a frame index (a frame without a timestamp)

    def add(self, x: float, frame_number: bool, probabilities: np.ndarray, smoothed: np.ndarray | None, no_face: bool, gap: bool = False) -> None:
        """One frame's values; ``gap``: frames before it (since the last one added) could not be read."""
        self._x.append(x)
        self._gap.append(gap)
        self.frame_numbers |= frame_number
        self._probabilities.frombytes(np.asarray(probabilities, dtype=np.float32).tobytes())
        if smoothed is not None:
            self._smoothed.frombytes(np.asarray(smoothed, dtype=np.float32).tobytes())
        self._no_face.append(no_face)

    def __len__(self) -> int:
        return len(self._x)

    @property
    def x(self) -> np.ndarray:
        """Shape (frames,), float64: seconds for video, frame index otherwise."""
        return np.frombuffer(self._x, dtype=np.float64) if self._x else np.zeros(0)

    @property
    def probabilities(self) -> np.ndarray:
        """Shape (frames, classes), float32."""
        return (np.frombuffer(self._probabilities, dtype=np.float32) if self._probabilities else np.zeros(0, np.float32)).reshape(-1, self.classes)

    @property
    def smoothed(self) -> np.ndarray | None:
        """Shape (frames, classes), float32; None without ``--smooth``."""
        return np.frombuffer(self._smoothed, dtype=np.float32).reshape(-1, self.classes) if self._smoothed else None

    @property
    def gap(self) -> np.ndarray:
        """Shape (frames,), bool: frames before this one could not be read (a gap: not decoded)."""
        return np.frombuffer(self._gap, dtype=np.int8).astype(bool) if self._gap else np.zeros(0, bool)

    @property
    def no_face(self) -> np.ndarray:
        """Shape (frames,), bool: the frame step used its fallback."""
        return np.frombuffer(self._no_face, dtype=np.int8).astype(bool) if self._no_face else np.zeros(0, bool)


@dataclass
class InputSummary:
    """What the console table and the plot show of one input."""

    name: str
    kind: str
    classes: tuple[str, ...]
    frames: int = 0
    faces: int | None = None
    predicted: dict[str, int] = field(default_factory=dict)
    series: FrameSeries | None = None  # per-frame values, kept only for --plot
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said on the console, no problem (a variable frame rate)
    every: int = 1  # the step between kept frames: frames further apart have a gap between them
    announced: int | None = None  # video: the frame count the container announces (None: unknown)
    first_frame: int | None = None  # the frame number of the first row added
    last_frame: int | None = None  # the frame number of the last row added
    problem_last: bool = False  # a problem came after the last readable frame: reading may have ended short

    @property
    def x_label(self) -> str:
        return "time (s)" if self.kind == "video" and self.series and not self.series.frame_numbers else "frame"

    def add(self, row: dict, probabilities: np.ndarray, smoothed: np.ndarray | None, series: bool) -> None:
        """Count one emitted row; with ``series`` (``--plot``) also keep its values for the plot
        (:class:`FrameSeries`), else nothing per frame is kept (a long video's summary stays a few counters)."""
        self.frames += 1
        gap = self.follows_gap(row["frame"])
        self.first_frame = row["frame"] if self.first_frame is None else self.first_frame
        self.last_frame = row["frame"]
        if row["face_found"] is not None:
            self.faces = (self.faces or 0) + int(row["face_found"])
        self.predicted[row["predicted"]] = self.predicted.get(row["predicted"], 0) + 1
        if not series:
            return
        if self.series is None:
            self.series = FrameSeries(len(self.classes))
        timed = row["time_s"] is not None
        self.series.add(row["time_s"] if timed else row["frame"], not timed, probabilities, smoothed, row["face_found"] is False, gap)

    def follows_gap(self, frame: int) -> bool:
        """Whether frames between the last row added and frame number ``frame`` could not be read
        (more than ``every`` apart): a plot breaks its lines there."""
        return follows_gap(self.last_frame, frame, self.every)

    def missing_before(self) -> int:
        """How many frames that would have been kept come before the first row (frame 0 is always
        kept, so a first row past it follows frames that could not be read)."""
        return -(-self.first_frame // self.every) if self.first_frame else 0

    def missing_after(self) -> int:
        """How many frames that would have been kept the container announces after the last row
        (a video cut off or damaged at its end); 0 where it announces none, or where the reading
        said nothing after the last row (a count FFmpeg derives from a duration may be a frame
        more than a whole video holds: the reader tolerates it, so does the plot)."""
        if not self.announced or self.last_frame is None or not self.problem_last:
            return 0
        return max(0, (self.announced - 1 - self.last_frame) // self.every)


def follows_gap(last: int | None, frame: int, every: int) -> bool:
    """Whether frames between frame numbers ``last`` and ``frame``, kept every ``every`` frames,
    could not be read: they are further apart than ``every``. Before the first row (``last``
    None) the frames from 0 are missing where ``frame`` is past 0."""
    return frame > 0 if last is None else frame - last > every


# --- the pipeline --------------------------------------------------------------------------------


@dataclass
class Settings:
    batch_size: int = 32
    smooth: int = 1
    every: int = 1
    prefetch: bool = True  # prepare the next batch in a thread while the model runs
    series: bool = False  # keep each frame's probabilities in the summaries (for --plot)


class Predictor:
    """Runs a loaded bundle (model included) on inputs, writing rows and collecting summaries."""

    def __init__(self, bundle: Bundle, settings: Settings, warn: Callable[[str], None] = lambda line: None):
        """``warn``: says one line on the console (a frame step that seems to hang)."""
        from feph_finetune.training.stages import preprocess_batch  # TensorFlow: the model is loaded already

        self.bundle, self.settings, self.warn = bundle, settings, warn
        self.preprocess_batch = preprocess_batch
        self.frame_steps = bundle.frame_steps
        self.frames_done = 0
        self.seconds = 0.0

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (float64, B x classes) of a uint8 batch (B x S x S x 3) already
        through the frame steps.

        A short batch is padded with black frames to :func:`padded_size` and the padding's rows
        dropped: each new input shape costs a retrace of the compiled prediction function, so
        the shapes are kept to the powers of two from 32 up to the batch size (a few, whatever
        the inputs' lengths), while the memory follows the frames there are, not ``--batch-size``
        (3 images with ``--batch-size 4096`` take a batch of 32). Inference-mode layers treat
        each frame alone, so the padding changes no result beyond float32 summation order
        (:data:`SMALLEST_PADDED_BATCH`).
        """
        count = len(images)
        size = padded_size(count, self.settings.batch_size)
        if count < size:
            images = np.concatenate([images, np.zeros((size - count, *images.shape[1:]), dtype=images.dtype)])
        x = np.asarray(self.preprocess_batch(images, self.bundle.batch_steps))  # a tensor argument would retrace predict_on_batch per call
        probabilities = np.asarray(self.bundle.model.predict_on_batch(x), dtype=np.float64)[:count]
        if not np.all(np.isfinite(probabilities)):  # NaN would be argmax'ed into the first class without a word
            raise BundleError(f"{self.bundle.folder}: its model gives outputs that are not finite (NaN or infinite): "
                              "the model file is damaged or its weights overflowed; nothing was predicted with it")
        return probabilities

    def run(self, predict_input: PredictInput, writer: RowWriter | None, advance=lambda n: None) -> InputSummary:
        """Predict every kept frame of ``source``; problems (unreadable frames) and notes go to the summary."""
        summary = InputSummary(predict_input.name, predict_input.kind, self.bundle.classes, every=self.settings.every, announced=predict_input.announced)
        smoother = CentredMean(self.settings.smooth)
        started = time.perf_counter()
        last = None  # the frame number of the last row pushed
        with closing(self.prepared_batches(predict_input, summary)) as batches:  # a stop waits for the worker here, not when the collector gets to it
            for batch, prepared in batches:
                probabilities = self.probabilities(np.stack([result.image for result in prepared]))
                for frame, result, row_probabilities in zip(batch, prepared, probabilities):
                    row = self.row(predict_input, frame, result, row_probabilities)
                    if follows_gap(last, frame.index, self.settings.every):  # no window reaches across a gap
                        for ready, smoothed in smoother.flush():
                            self.emit(ready, smoothed, summary, writer)
                    last = frame.index
                    for ready, smoothed in smoother.push(row, row_probabilities):
                        self.emit(ready, smoothed, summary, writer)
                advance(len(batch))
        for ready, smoothed in smoother.flush():
            self.emit(ready, smoothed, summary, writer)
        self.frames_done += summary.frames
        self.seconds += time.perf_counter() - started
        return summary

    def prepared_batches(self, predict_input: PredictInput, summary: InputSummary) -> Iterator[tuple[list[InputFrame], list[FrameResult]]]:
        """Batches of frames (without their images) with their frame-step results (face crop, resize).

        Each frame goes through the frame steps as soon as it is decoded and its full image is
        dropped then, so memory follows the model's input size, not the video's: about two full
        frames at a time, plus two batches of ``input_size`` crops. With ``Settings.prefetch`` a
        worker thread decodes and crops the next batch while the model predicts the current one
        (OpenCV and TensorFlow release the GIL), holding one batch ahead; a stop waits for that
        worker at most a grace (:func:`~feph_finetune.predict.prefetch.prefetched`: close what
        this returns, as :meth:`run` does).
        """
        stop = threading.Event()
        batches = _batches(self._cropped(predict_input.frames(), summary, stop), self.settings.batch_size)

        def next_prepared():
            batch = next(batches, None)
            return None if batch is None else ([frame for frame, _ in batch], [result for _, result in batch])

        if not self.settings.prefetch:
            return (item for item in iter(next_prepared, None))  # closable, as prefetched's generator is
        return prefetched(next_prepared, stop, self.warn)

    def _cropped(self, frames: Iterable[InputFrame], summary: InputSummary, stop: threading.Event) -> Iterator[tuple[InputFrame, FrameResult]]:
        """Each readable frame, its image dropped, with its frame-step result; unreadable frames
        are left out and their problem noted in ``summary``, as are notes. Ends before the next
        frame once ``stop`` is set (an interrupt: a batch of a slow input would take long)."""
        for frame in frames:
            if stop.is_set():
                return
            summary.problem_last = frame.problem is not None or (summary.problem_last and frame.note is not None)
            if frame.problem is not None:
                summary.problems.append(frame.problem)
            elif frame.note is not None:
                summary.notes.append(frame.note)
            else:
                yield replace(frame, image=None), apply_steps(frame.image, self.frame_steps, self.bundle.input_size)

    def row(self, predict_input: PredictInput, frame: InputFrame, result, probabilities: np.ndarray) -> dict[str, Any]:
        classes = self.bundle.classes
        found = True if result.box is not None and result.fallback is None else False if result.fallback else None
        box = result.box if found else (None, None, None, None)
        row = {
            "input": predict_input.name, "file": frame.file, "frame": frame.index, "time_s": frame.time_s, "face_found": found,
            "face_x": box[0], "face_y": box[1], "face_w": box[2], "face_h": box[3], "fallback": result.fallback,
        }
        row.update({f"p_{name}": float(value) for name, value in zip(classes, probabilities)})
        row["predicted"] = classes[int(np.argmax(probabilities))]
        return row

    def emit(self, row: dict, smoothed: np.ndarray, summary: InputSummary, writer: RowWriter | None) -> None:
        raw = np.array([row[f"p_{name}"] for name in self.bundle.classes])
        if self.settings.smooth > 1:
            row.update({f"smooth_{name}": float(value) for name, value in zip(self.bundle.classes, smoothed)})
            row["smooth_predicted"] = self.bundle.classes[int(np.argmax(smoothed))]
        summary.add(row, raw, smoothed if self.settings.smooth > 1 else None, self.settings.series)
        if writer is not None:
            writer.write(row)

    @property
    def frames_per_second(self) -> float:
        return self.frames_done / self.seconds if self.seconds > 0 else math.nan


#: The smallest batch a short batch is padded to. oneDNN chooses its convolution kernels by the
#: batch's shape, and in a batch of a few frames it sums in another order than in the batches a
#: run evaluates (16, 32): measured, 3 images padded to 4 gave probabilities 9.5e-5 away from the
#: run's own, padded to 32 within 1e-7. 32 frames of 224 px take 19 MB as float32.
SMALLEST_PADDED_BATCH = 32


def padded_size(count: int, batch_size: int) -> int:
    """The batch a short batch of ``count`` frames is padded to: the next power of two, at least
    :data:`SMALLEST_PADDED_BATCH`, at most ``batch_size`` (a full batch stays as it is)."""
    return min(batch_size, max(SMALLEST_PADDED_BATCH, 1 << max(count - 1, 0).bit_length()))


def _batches(items: Iterable, size: int) -> Iterator[list]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
