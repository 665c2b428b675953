"""Where ``predict`` gets frames: image files, folders of frames, and videos, streamed one frame at a time.

- An image file (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``, ``.webp``) is one
  frame, decoded as the training images are (:func:`feph_finetune.read_image`: RGB,
  alpha dropped).
- A folder is one sequence: its image files (not sub-folders), in natural order, so that
  ``fn000009`` comes before ``fn000045`` and ``frame2`` before ``frame10``; the frame index is the
  position in that order.
- Any other file is opened as a video with OpenCV's ``VideoCapture`` (its FFmpeg backend reads
  mp4, avi, webm, mkv...). The frame index is the frame's position in the container from 0
  (its timestamp in frames), so a frame that cannot be decoded leaves a gap, reported, and
  never shifts the later ones; the timestamp is index / the container's frame rate
  (``CAP_PROP_FPS``), in seconds, empty when the container gives none. An AVI has no timestamps
  (the demuxer counts chunks): reading stops at its first damaged chunk header, where the count
  stops saying which frame is which (:mod:`feph_finetune.predict.avi`), and says so. A video
  whose decoding ends before the frame count its container announces is reported as cut off or
  damaged. A raw stream without a container (``.mjpeg``, ``.h264``) has no frame numbers of its
  own: FFmpeg counts its frames, and one lost without a decoding error shifts the later ones. FFmpeg's own log lines
  (``[mjpeg @ 0x...] overread 8``) never reach the console: the problems are reported here, per
  input (``OPENCV_FFMPEG_LOGLEVEL``, set before the first video is opened, unless already set).

``every`` keeps frames 0, K, 2K...; skipped video frames are only grabbed, not decoded into
images. Nothing holds more than one frame: a long video streams in constant memory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from feph_finetune.api import DatasetError
from feph_finetune.data.images import read_image
from feph_finetune.predict.avi import avi_break

#: AV_LOG_QUIET: OpenCV hands FFmpeg this level when its FFmpeg backend starts (the first
#: ``VideoCapture`` of the process); a level set later is ignored.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class InputError(Exception):
    """An input that cannot be read (missing, not decodable, a video without frames, an empty folder)."""


@dataclass
class InputFrame:
    """One frame of an input: uint8 RGB ``image`` (H, W, 3), or the ``problem`` that stopped it."""

    index: int
    image: np.ndarray | None
    file: str | None = None
    time_s: float | None = None
    problem: str | None = None


@dataclass
class PredictInput:
    """One input named on the command line: its kind, expected frame count and frame stream."""

    name: str
    path: Path
    kind: str  # "image", "folder" or "video"
    every: int
    total: int | None
    files: list[Path] | None = None
    fps: float | None = None
    announced: int | None = None  # video: the frame count the container announces (None: unknown)

    def frames(self) -> Iterator[InputFrame]:
        """The kept frames, in order; a frame that cannot be read carries a ``problem``."""
        if self.kind == "video":
            yield from _video_frames(self)
        else:
            for index, path in enumerate(self.files or []):
                if index % self.every == 0:
                    yield _image_frame(index, path)


def natural_key(name: str) -> list:
    """Sort key that orders the digit runs in a name by value: ``fn9`` < ``fn45`` < ``fn100``."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", name)]


def open_input(name: str, every: int = 1) -> PredictInput:
    """Check one input and say what it is, reading no more than a video's header.

    Raises :class:`InputError` for a missing path, a folder without images, or a file that is
    neither a readable image name nor a video OpenCV can open.
    """
    path = Path(name)
    if not path.exists():
        raise InputError(f"{name}: no such file or folder")
    if path.is_dir():
        files = sorted((child for child in path.iterdir() if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES), key=lambda child: natural_key(child.name))
        if not files:
            raise InputError(f"{name}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return PredictInput(name, path, "folder", every, len(range(0, len(files), every)), files=files)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return PredictInput(name, path, "image", 1, 1, files=[path])
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"{name}: cannot read it as an image or a video (OpenCV's FFmpeg backend cannot open it)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return PredictInput(name, path, "video", every, len(range(0, count, every)) if count > 0 else None, fps=fps if fps > 0 else None, announced=count if count > 0 else None)


def _image_frame(index: int, path: Path) -> InputFrame:
    try:
        image = read_image(path)
    except DatasetError as error:
        return InputFrame(index, None, file=path.name, problem=str(error))
    return InputFrame(index, image, file=path.name)


def _video_frames(predict_input: PredictInput) -> Iterator[InputFrame]:
    """The kept frames of a video, numbered by the container's position, never by counting.

    A frame that cannot be decoded (a corrupt chunk) does not shift the later ones: with OpenCV's
    FFmpeg backend each frame's index is its presentation timestamp in frames
    (``CAP_PROP_PTS``), so a hole shows as a jump, reported as a problem frame naming the
    missing indices. Failed reads are retried as long as the container announces more frames
    (a failed read at the end of a file costs microseconds), else :data:`_RETRIES_UNKNOWN`
    times. An AVI's timestamps are the demuxer's count of chunks, right only up to the first
    damaged chunk header (:func:`~feph_finetune.predict.avi.avi_break`): reading stops there.
    Decoding that ends before the announced frame count (a file cut off) is reported too: the
    rows read are kept, the input counts as not read in full.
    """
    capture = cv2.VideoCapture(str(predict_input.path))
    timestamps = capture.getBackendName() == "FFMPEG"
    broken = avi_break(predict_input.path) if timestamps else None
    last = -1  # container index of the last decoded frame
    decoded, gaps, unnamed, stopped = 0, 0, 0, False
    try:
        while capture.grab() or _retry(capture, predict_input.announced, last):
            index = _container_index(capture, last) if timestamps else last + 1
            stopped = broken is not None and index >= broken.frame
            known = broken.frame if stopped else index  # the frames before it are numbered right
            if known > last + 1:
                gaps += 1
                later = "" if stopped else "; later frames keep their numbers"
                if gaps <= _GAPS_NAMED:
                    yield InputFrame(last + 1, None, problem=f"{predict_input.name}: {_frames_words(last + 1, known - 1)} could not be decoded (left out{later})")
                else:
                    unnamed += known - 1 - last
            if stopped:
                break
            last, decoded = index, decoded + 1
            if index % predict_input.every == 0:
                ok, bgr = capture.retrieve()
                if ok:
                    yield InputFrame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time_s=index / predict_input.fps if predict_input.fps else None)
                else:
                    yield InputFrame(index, None, problem=f"{predict_input.name}: frame {index} could not be decoded (left out)")
    finally:
        capture.release()
    name, announced = predict_input.name, predict_input.announced
    if unnamed:
        yield InputFrame(last, None, problem=f"{name}: {unnamed} more frames in {gaps - _GAPS_NAMED} more places could not be decoded (left out)")
    if broken and (stopped or (announced and broken.frame < announced)):
        of = f" of the {announced} the container announces" if announced else ""
        yield InputFrame(broken.frame, None, problem=f"{name}: {_stopped_at(last, decoded)}{of}: {broken.why}; an AVI numbers its frames by counting chunks, so later frames cannot be numbered (left out)")
    elif decoded == 0:
        yield InputFrame(0, None, problem=f"{name}: the video has no frames" if not announced else f"{name}: no frame could be decoded of the {announced} the container announces")
    elif announced and last + 1 < announced:
        yield InputFrame(last + 1, None, problem=f"{name}: {_stopped_at(last, decoded)}, but the container announces {announced}: the file is cut off or damaged")


#: Places with undecodable frames named one by one; the rest are counted in one line (one screen).
_GAPS_NAMED = 5

#: Failed reads in a row after which a video of unknown length counts as ended (about 8 s at 30 fps).
_RETRIES_UNKNOWN = 250


def _retry(capture, announced: int | None, last: int) -> bool:
    """After a failed read, read on until one succeeds (True) or the frames that can remain are
    exhausted (False): a corrupt chunk fails one read, the end of the file fails them all."""
    remaining = announced - (last + 1) if announced else _RETRIES_UNKNOWN
    return any(capture.grab() for _ in range(max(remaining, 0)))


def _container_index(capture, last: int) -> int:
    """The grabbed frame's index: its timestamp in frames (OpenCV converts it with the stream's
    frame rate), unless the container gives none or one that does not advance (then ``last + 1``)."""
    index = round(capture.get(cv2.CAP_PROP_PTS))
    return index if index > last else last + 1


def _stopped_at(last: int, decoded: int) -> str:
    return f"decoding stopped at frame {last} ({decoded} frames decoded)" if decoded else "no frame could be decoded"


def _frames_words(first: int, last: int) -> str:
    return f"frame {first}" if first == last else f"frames {first}-{last}"
