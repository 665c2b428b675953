"""Where ``predict`` gets frames: image files, folders of frames, and videos, streamed one frame at a time.

- An image file is one frame, decoded as the training images are (:func:`feph_finetune.read_image`:
  RGB, alpha dropped); one that holds several (an animated GIF, PNG or WebP, a multi-page TIFF)
  is a sequence of them, numbered by their place in the file (no ``time_s``), and in a folder of
  frames its first is read with a problem saying so (:func:`_image_frame`). What a file is, its
  content says where OpenCV can tell (an image format's signature, :func:`_holds_image`), not its name: a PNG named ``.avi`` and a ``.pgm`` are images,
  a video (an AVI, MP4/MOV or Matroska/WebM by its first bytes) named ``.png`` is read as a
  video, with a warning. A file named as an image
  (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff``, ``.webp``) that is neither is
  reported as an image that cannot be decoded, and an empty file (0 bytes) as empty.
- A folder is one sequence: its image files (not sub-folders), in natural order, so that
  ``fn000009`` comes before ``fn000045`` and ``frame2`` before ``frame10``; the frame index is the
  number the names carry (a file missing from their sequence is a gap, reported), else the
  position in that order (:mod:`feph_finetune.predict.frame_folders`). Hidden files (``._``
  companions from macOS) are skipped and counted. Its files are picked as a single input is: by
  content (a folder of ``.pgm`` frames, a PNG named ``.avi``) or by an image name. A link with an image name that
  points nowhere is a frame that cannot be read (reported); other files and sub-folders are
  skipped, said in one note.
- Any other file is opened as a video with OpenCV's ``VideoCapture`` (its FFmpeg backend reads
  mp4, avi, webm, mkv...). The frame index is the frame's position in the container from 0
  (its timestamp in frames), so a frame that cannot be decoded leaves a gap, reported, and
  never shifts the later ones; the timestamp is index / the container's frame rate
  (``CAP_PROP_FPS``), in seconds, empty when the container gives none. A video of variable
  frame rate (timestamps off that rate's grid, as phones record) is numbered in decode order
  from its first such timestamp, each frame with its own timestamp, and says so once
  (:class:`FrameNumbers`). A frame stored twice (its copy stamped as the first, the next frame at
  the slot after it) is left out and said; two frames stored in swapped order are numbered by
  their timestamps, in frame order (:class:`_Ahead` holds the first back). An AVI has no
  timestamps (the demuxer counts chunks, never a variable rate): its index says which frame each
  counted chunk is, and reading stops where the chunks stop matching it, or at the first damaged
  chunk header (:mod:`feph_finetune.predict.avi`), and says so; ``time_s`` comes from the rate its
  header gives, empty where that is 0 or implausible. A video
  whose decoding ends before the frame count its container announces is reported as cut off or
  damaged. A raw stream without a container (``.mjpeg``, ``.h264``) has no frame numbers of its
  own: FFmpeg counts its frames, and one lost without a decoding error shifts the later ones.
  What OpenCV's own code writes to stderr while opening a video (its AVI parser quotes a damaged
  header's bytes) is caught and said as one escaped warning naming the input
  (:mod:`feph_finetune.native_stderr`). So are FFmpeg's errors while a frame is read
  (``[ffv1 @ 0x...] slice CRC mismatch``: OpenCV, unless ``OPENCV_FFMPEG_LOGLEVEL`` is set, has
  FFmpeg write its errors to stderr): a problem naming the input and the frame, its row kept. The
  video is decoded on one thread, so that what FFmpeg says comes while that frame is read.

``every`` keeps frames 0, K, 2K...; every video frame is still read (FFmpeg decodes on ``grab``,
and the timestamps number the frames), but only a frame that can be kept is converted to RGB: its
number may wait for the next frame's timestamp, so a frame is converted when any number it can get
is kept (:meth:`FrameNumbers.possible`). Nothing holds more than two frames: a long video streams
in constant memory.
"""

from __future__ import annotations

import math
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import cv2
import numpy as np

from feph_finetune.api import DatasetError
from feph_finetune.data.image_headers import announced_size, may_hold_frames
from feph_finetune.data.images import decode_frames, decode_image, image_bytes, opencv_quiet, video_container
from feph_finetune.data.user_files import FOLDER, NO_SUCH_FILE_OR_FOLDER, REGULAR_FILE, classify_path, is_utf8_name
from feph_finetune.native_stderr import NativeOutput, NativeStderr, native_stderr_caught
from feph_finetune.predict.avi import AviBreak, avi_layout, header_fps
from feph_finetune.predict.frame_folders import Gap, frame_numbers, gaps, is_hidden
from feph_finetune.predict.timebase import timestamp_resolution
from feph_finetune.printable import counted, shortened


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class InputError(Exception):
    """An input that cannot be read (missing, not decodable, a video without frames, an empty folder)."""


@dataclass
class InputFrame:
    """One frame of an input: uint8 RGB ``image`` (H, W, 3), or the ``problem`` that stopped it, or
    only a ``note`` about the input (no frame)."""

    index: int
    image: np.ndarray | None
    file: str | None = None
    time_s: float | None = None
    problem: str | None = None
    note: str | None = None  # something to say that is no problem (a variable frame rate)


@dataclass
class PredictInput:
    """One input named on the command line: its kind, expected frame count and frame stream."""

    name: str
    path: Path
    kind: str  # "image", "folder", "video" or "animation" (an image file of several frames)
    every: int
    total: int | None
    files: list[Path] | None = None
    fps: float | None = None
    announced: int | None = None  # video, animation: the frame count the file announces (None: unknown)
    skipped: str | None = None  # folder: what it holds besides frames, in words (None: nothing)
    numbers: list[int] | None = None  # folder: each file's frame number, from its name (None: its position)
    said: str = ""  # video: what OpenCV wrote to stderr while opening it, as open_input warned it

    def frames(self) -> Iterator[InputFrame]:
        """The kept frames, in order; a frame that cannot be read carries a ``problem``."""
        if self.kind == "video":
            yield from _video_frames(self)
        elif self.kind == "animation":
            yield from _animation_frames(self)
        else:
            if self.skipped:
                yield InputFrame(0, None, note=f"{self.name}: skipped {self.skipped}")
            yield from _folder_frames(self)


def natural_key(name: str) -> list:
    """Sort key that orders the digit runs in a name by value: ``fn9`` < ``fn45`` < ``fn100``."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", name)]


def open_input(name: str, every: int = 1, warn: Callable[[str], None] | None = None) -> PredictInput:
    """Check one input and say what it is, reading no more than a video's header.

    ``warn`` gets one line naming the input when OpenCV wrote to stderr while opening it as a
    video (None: the line is dropped), before the video is reported as unreadable, if it is.

    Raises :class:`InputError` for a missing path, a FIFO, device or socket (never opened: reading
    one could block forever), a folder without images, or a file that is neither a readable
    image name nor a video OpenCV can open.
    """
    path = Path(name)
    found = classify_path(path)
    if found.problem:
        raise InputError(f"{name}: {found.problem}")
    if not found.exists:
        raise InputError(f"{name}: {NO_SUCH_FILE_OR_FOLDER}")
    if found.kind == FOLDER:
        entries = list(path.iterdir())
        children = [child for child in entries if not is_hidden(child.name)]
        hidden = len(entries) - len(children)
        files = sorted((child for child in children if _is_frame(child)), key=lambda child: natural_key(child.name))
        if not files:
            raise InputError(f"{name}: the folder holds no image files (none holds an image format OpenCV decodes, "
                             f"and none is named {', '.join(IMAGE_SUFFIXES)}){_hidden_words(hidden, ', and ')}")
        numbers = frame_numbers([file.name for file in files])
        total = sum(1 for number in numbers or range(len(files)) if number % every == 0)
        return PredictInput(name, path, "folder", every, total, files=files, skipped=_skipped(children, len(files), hidden), numbers=numbers)
    if found.kind != REGULAR_FILE:  # a FIFO (OpenCV would wait for a writer forever), a device, a socket
        raise InputError(f"{name}: is {found.described}, neither a regular file nor a folder; predict reads image and video files and folders of frames")
    if path.stat().st_size == 0:
        raise InputError(f"{name}: the file is empty (0 bytes): neither an image nor a video")
    holds_image = _holds_image(path)
    try:
        video = None if holds_image else _video_container(path)
    except OSError as error:
        raise InputError(f"{name}: cannot be read: {error.strerror}") from None
    if holds_image or (video is None and path.suffix.lower() in IMAGE_SUFFIXES):  # read_image names what it finds wrong
        if holds_image and (count := _frame_count(path)) > 1:
            return PredictInput(name, path, "animation", every, len(range(0, count, every)), files=[path], announced=count)
        return PredictInput(name, path, "image", 1, 1, files=[path])
    with _video_capture(path) as (capture, said):
        if said.lines and warn is not None:
            warn(_said_line(name, "opening", said))
        if not capture.isOpened():
            raise InputError(f"{name}: cannot read it as an image or a video (its content is no image format OpenCV decodes, "
                             "and OpenCV's FFmpeg backend cannot open it as a video)")
        if video and path.suffix.lower() in IMAGE_SUFFIXES and warn is not None:
            warn(f"{name}: holds {video}, not an image, whatever its name says: read as a video")
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return PredictInput(name, path, "video", every, len(range(0, count, every)) if count > 0 else None, fps=fps if fps > 0 else None,
                        announced=count if count > 0 else None, said=str(said))


def _holds_image(path: Path) -> bool:
    """Whether ``path``'s first bytes are those of an image format OpenCV decodes (PNG, JPEG, PNM,
    TIFF...), whatever its name: a PNG named ``.avi`` is an image, a video named ``.png`` is not."""
    with _utf8_name(path) as name:
        try:
            return cv2.haveImageReader(name)
        except cv2.error:
            return False


def _video_container(path: Path) -> str | None:
    """Words for the video container ``path``'s first bytes are a signature of (:func:`video_container`)."""
    with open(path, "rb") as file:
        return video_container(file.read(16))


def _said_line(name: str, when: str, said: NativeOutput) -> str:
    """One line for what OpenCV wrote to stderr ``when`` handling the input ``name``: shortened, as
    it quotes the file's bytes; the console shows its control characters escaped."""
    return f"{name}: OpenCV said while {when} it: {shortened(said, 200)}"


def _is_frame(child: Path) -> bool:
    """A folder's entry that is a frame, picked as a single input is: a regular file whose first
    bytes are an image format's signature (:func:`_holds_image`: a ``.pgm``, a PNG named ``.avi``),
    or anything but a folder with an image name (one that is no regular file, a FIFO or a link to a
    device, or a link that points nowhere, is reported when read, as an undecodable image is).
    Only the signatures of files without an image name are read, and only a few bytes of each:
    a big folder of ``.png`` frames is listed as fast as by names alone."""
    if child.suffix.lower() in IMAGE_SUFFIXES:
        return not child.is_dir()
    try:
        regular = stat.S_ISREG(child.stat().st_mode)  # a FIFO's signature is never read: it could block
    except OSError:
        return False
    return regular and _holds_image(child)


def _skipped(children: list[Path], frames: int, hidden: int) -> str | None:
    """Words for what a folder holds besides its frames (other files, sub-folders, hidden
    entries), None when nothing; ``children``: its entries that are not hidden."""
    folders = sum(child.is_dir() for child in children)
    others = len(children) - frames - folders
    parts = [f"{others} other file{'s' * (others != 1)} (no image by content or name)"] * bool(others) + [f"{folders} sub-folder{'s' * (folders != 1)}"] * bool(folders)
    return " and ".join(parts) + _hidden_words(hidden, " and " if parts else "") or None


def _hidden_words(hidden: int, joint: str) -> str:
    """Words for a folder's ``hidden`` entries (:func:`~feph_finetune.predict.frame_folders.is_hidden`), after ``joint``."""
    return f"{joint}{counted(hidden, 'hidden file')} (a name starting with '.', as macOS's '._' companions)" if hidden else ""


def _folder_frames(predict_input: PredictInput) -> Iterator[InputFrame]:
    """A folder's kept frames in order, numbered by their names where these number them, with a
    problem before each place where those numbers skip (files missing), or one note for a sample
    of a video's frames (:func:`~feph_finetune.predict.frame_folders.gaps`)."""
    files = predict_input.files or []
    numbers = predict_input.numbers or list(range(len(files)))
    said = gaps(predict_input.name, numbers, [file.name for file in files]) if predict_input.numbers else []
    with NativeStderr() as stderr:
        for number, path in zip(numbers, files):
            while said and said[0].frame <= number:
                yield _gap_frame(said.pop(0))
            if number % predict_input.every == 0:
                yield from _image_frame(number, path, stderr)
    yield from map(_gap_frame, said)


def _gap_frame(gap: Gap) -> InputFrame:
    return InputFrame(gap.frame, None, problem=gap.text) if gap.problem else InputFrame(gap.frame, None, note=gap.text)


def _image_frame(index: int, path: Path, stderr: NativeStderr) -> Iterator[InputFrame]:
    """The frame an image file is, or its problem; a file of several frames (an animated GIF in
    a folder of frames) gives its first, and a problem saying the others were not read.

    What the decoder writes to stderr (libpng's ``libpng error: PNG input buffer is incomplete``,
    OpenCV's ``[ERROR:0]`` lines about a damaged TIFF) is caught (``stderr``): said in the problem
    of a file that cannot be decoded, dropped for one that can (``libpng warning: iCCP: known
    incorrect sRGB profile`` says nothing about the frame)."""
    try:
        content = image_bytes(path)
    except DatasetError as error:
        yield InputFrame(index, None, file=path.name, problem=str(error))
        return
    with stderr.caught() as caught:
        try:
            image, problem = decode_image(content, path), None
        except DatasetError as error:
            image, problem = None, str(error)
    said = caught.decoder_lines()
    if problem is not None:
        yield InputFrame(index, None, file=path.name, problem=f"{problem} (the decoder said: {shortened(said, 200)})" if said.lines else problem)
        return
    yield InputFrame(index, image, file=path.name)
    if may_hold_frames(content) and (count := _frame_count(path)) > 1:
        yield InputFrame(index, None, problem=f"image {path} holds {count} frames (an animation or a multi-page file): only its first is read, "
                                              f"as frame {index}; give the file as an input of its own to read every frame")


def _frame_count(path: Path) -> int:
    """How many frames the image file ``path`` holds (an animation's, a multi-page TIFF's): 1 for
    a still image, 0 where OpenCV cannot count them. Only a file whose header allows several
    (:func:`~feph_finetune.data.image_headers.may_hold_frames`) is counted."""
    try:
        with open(path, "rb") as file:
            if not may_hold_frames(file.read(ANIMATION_HEADER_BYTES)):
                return 1
    except OSError:
        return 1  # read_image says why it cannot be read
    with _utf8_name(path) as name, opencv_quiet():
        try:
            return cv2.imcount(name)
        except cv2.error:
            return 0


#: The bytes of an image file looked at for the signs of several frames: an APNG's ``acTL`` chunk
#: comes before its image data, within the first few hundred bytes.
ANIMATION_HEADER_BYTES = 65536
#: Pixels decoded in one call from a multi-frame image (2**25: 128 MB as BGRA): each call decodes
#: from the file's start (a GIF's frames are drawn over the earlier ones), so calls are few.
ANIMATION_CHUNK_PIXELS = 2**25


def _decoded_frames(content: bytes, path: Path, start: int, count: int) -> list[np.ndarray]:
    """Frames ``start`` to ``start + count - 1`` of a multi-frame image, up to the first that cannot
    be decoded: OpenCV fails a call as a whole for one damaged frame, so then they are decoded
    one at a time."""
    images = decode_frames(content, path, start, count)
    if len(images) == count or count == 1:
        return images
    images = []
    while len(images) < count and (one := decode_frames(content, path, start + len(images), 1)):
        images += one
    return images


def _animation_frames(predict_input: PredictInput) -> Iterator[InputFrame]:
    """The kept frames of a multi-frame image file (frame = its place in the file, no ``time_s``),
    decoded a chunk at a time; a problem when decoding stops before the frame count it announces."""
    path, name, announced = predict_input.path, predict_input.name, predict_input.announced or 0
    index = 0
    try:
        content = image_bytes(path)
        width, height = announced_size(content) or (1, 1)
        chunk = max(1, min(64, ANIMATION_CHUNK_PIXELS // max(1, width * height)))
        while index < announced:
            images = _decoded_frames(content, path, index, min(chunk, announced - index))
            for image in images:
                if index % predict_input.every == 0:
                    yield InputFrame(index, image, file=path.name)
                index += 1
            if not images:
                break
    except DatasetError as error:
        yield InputFrame(index, None, file=path.name, problem=str(error))
        return
    if index < announced:
        yield InputFrame(index, None, problem=f"{name}: {_stopped_at(index - 1, index)} of the {announced} frames the file holds: it is cut off or damaged")


def _video_frames(predict_input: PredictInput) -> Iterator[InputFrame]:
    """The kept frames of a video, numbered from their timestamps, never by counting alone.

    A frame that cannot be decoded (a corrupt chunk) does not shift the later ones: each frame is
    numbered by :class:`FrameNumbers` from its presentation timestamp, so a hole shows as a
    jump, reported as a problem frame naming the missing indices (:class:`_Gaps`). Failed reads
    are retried as long as the container announces more frames, at most :data:`FAILED_READS` in
    a row (:class:`_Grabs`). An AVI's timestamps are the demuxer's count of chunks: its layout
    (:func:`~feph_finetune.predict.avi.avi_layout`) gives each count its frame number (from the
    index, a frame missing from the file a gap), up to where numbers stop: reading stops there;
    an empty chunk (a dropped frame, as capture software marks it) is no damage: no row, one
    note. Decoding that ends before the announced frame count (a file cut off) is reported too:
    the rows read are kept, the input counts as not read in full; so is a frame
    FFmpeg reports damage in while decoding it (:class:`_Grabs`), its row kept. A video whose
    timestamps leave the frame-rate grid (variable frame rate) gets one ``note`` frame saying how
    its frames are numbered from there.
    """
    with _video_capture(predict_input.path) as (capture, said), NativeStderr() as stderr:
        if said.lines and str(said) != predict_input.said:  # what open_input warned is not said twice
            yield InputFrame(0, None, note=_said_line(predict_input.name, "reading", said))
        yield from _VideoReading(predict_input, capture, stderr).frames()


@contextmanager
def _video_capture(path: Path) -> Iterator[tuple["cv2.VideoCapture", NativeOutput]]:
    """An OpenCV capture of ``path``, released on leaving (see :func:`_utf8_name`), with what
    OpenCV wrote to stderr while it opened the file (its AVI parser prints a damaged header's
    bytes with C's ``fprintf``).

    Only the ``VideoCapture`` constructor is watched, as :func:`~feph_finetune.native_stderr.native_stderr_caught`
    asks, because nothing else writes to stderr then: :func:`open_input` runs before the model is
    loaded and before predict's progress bar starts, and the reading (:func:`_video_frames`, in
    predict's prefetch thread) opens the file before its first batch, while the main thread waits
    for that batch, the model idle (the progress bar draws on stdout's console). Each frame's read
    is watched too (:class:`_Grabs`): one native call, the main thread busy in the model. FFmpeg
    decodes on one thread (``CAP_PROP_N_THREADS``), so that it reports a frame's damage during
    that frame's read, not later from a thread of its own.
    """
    with _utf8_name(path) as name:
        with native_stderr_caught() as said:
            capture = cv2.VideoCapture(name, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
        try:
            yield capture, said
        finally:
            capture.release()


@contextmanager
def _utf8_name(path: Path) -> Iterator[str]:
    """A name of ``path`` that OpenCV can take: ``str(path)``, or for a path that is not valid UTF-8
    a symbolic link to it with an ASCII name in a temporary folder, removed on leaving.

    OpenCV takes a path as UTF-8 text and crashes the process (SIGSEGV) on one that is not valid
    UTF-8 (Linux allows any bytes in a name; Python holds them as U+DC80-U+DCFF).
    """
    if is_utf8_name(str(path)):
        yield str(path)
        return
    with tempfile.TemporaryDirectory(prefix="feph-video-") as folder:
        link = os.path.join(folder, "video" + (path.suffix if path.suffix.isascii() else ""))
        os.symlink(os.fsencode(path.absolute()), link)
        yield link


class _VideoReading:
    """One pass over an open video: grab, number, keep or skip each frame, then say how it ended.

    Only the frames that can be kept (their number a multiple of ``every``, whatever the next
    frame's timestamp turns out to be: :meth:`FrameNumbers.possible`) are converted to RGB.
    """

    def __init__(self, predict_input: PredictInput, capture, stderr: NativeStderr):
        self.name, self.every, self.announced = predict_input.name, predict_input.every, predict_input.announced
        timestamps = capture.getBackendName() == "FFMPEG"
        self.layout = avi_layout(predict_input.path) if timestamps else None
        self.broken = self.layout.broken if self.layout else None
        self.gaps = _Gaps(self.name, self.layout.empty if self.layout else frozenset())
        self.numbers = FrameNumbers(predict_input.fps if timestamps else None, predict_input.announced,
                                    timestamp_resolution(predict_input.path) if timestamps else 0.0,
                                    counted=self.layout is not None, time_fps=header_fps(self.layout) if self.layout else None)
        self.grabs = _Grabs(capture, timestamps, lambda: _retries(self.announced, self.last), stderr)
        self.errors = 0  # frames at which FFmpeg reported damage
        self.repeated = 0  # frames stored twice (copies left out)
        self.last = -1  # the number of the last decoded frame
        self.decoded, self.stopped = 0, False

    def frames(self) -> Iterator[InputFrame]:
        """The kept frames, each gap's problem and the notes in reading order, then how reading ended."""
        yield from self._header_rate()
        ahead = _Ahead(iter(self.grabs), self.grabs.image)
        while (current := ahead.next()) is not None:
            image = current.image if current.converted else self.grabs.image() if self._may_keep(current.grab.seconds, current.grab.failed) else None
            current, image, following = self._in_stamp_order(ahead, current, image)
            if self.numbers.repeats(current.seconds, following):
                yield from self._repeated(current.seconds)
                continue
            index = self._frame(self.numbers.number(current.seconds, current.failed, following))
            if (note := self.numbers.take_note()) is not None:
                yield InputFrame(max(index, 0), None, note=f"{self.name}: {note}")
            self.stopped = index < 0
            if self.stopped and self.broken is None:  # FFmpeg found a video chunk the walk did not
                frame = self.layout.numbers[-1] + 1 if self.layout.numbers else 0
                self.broken = AviBreak(frame, f"FFmpeg read more video chunks than the {len(self.layout.numbers)} the file's chunks hold")
            known = self.broken.frame if self.stopped else index  # the frames before it are numbered right
            later = "" if self.stopped else f"; later frames keep their numbers{self.numbers.estimate}"
            yield from self.gaps.between(self.last, known, later)
            if self.stopped:
                break
            if index == self.last + 1:  # after a gap, what the decoder said explains the gap, reported
                yield from self._decoder_said(index, current.said)
            self.last, self.decoded = index, self.decoded + 1
            if index % self.every == 0:
                yield _kept_frame(self.name, index, image, self.numbers.seconds(index))
        yield from self.gaps.summary(self.last)
        yield from self._ending()

    def _in_stamp_order(self, ahead: "_Ahead", current: "_Converted", image) -> tuple[_Grab, np.ndarray | None, tuple | None]:
        """The frame to number now, its image, and the next frame's ``(seconds, failed)`` (None:
        none): ``current``, unless it and the next frame are stored in swapped order
        (:meth:`FrameNumbers.stored_early`, which needs the frame after them too): then the next
        one, ``current`` waiting for its turn."""
        following = ahead.peek(0)
        if not self.numbers.may_be_stored_early(current.grab.seconds, _stamp(following)):
            return current.grab, image, _stamp(following)
        ahead.convert(0)  # the frame after them is grabbed next: the next one's image now or never
        after = ahead.peek(1)
        if not self.numbers.stored_early(current.grab.seconds, _stamp(following), _stamp(after)):
            return current.grab, image, _stamp(following)
        ahead.push_back(_Converted(current.grab, image, True))
        swapped = ahead.next()
        return swapped.grab, swapped.image, _stamp(ahead.peek(0))

    def _repeated(self, seconds: float) -> Iterator[InputFrame]:
        """The problem of a frame stored twice (:meth:`FrameNumbers.repeats`): the copy is left
        out; the first :data:`_GAPS_NAMED` named, the rest counted at the end."""
        self.repeated += 1
        if self.repeated <= _GAPS_NAMED:
            yield InputFrame(self.last, None, problem=f"{self.name}: frame {self.last} is stored twice (the next frame has its timestamp, "
                                                      f"{seconds:.3f} s): the copy is left out, later frames keep their numbers")

    def _header_rate(self) -> Iterator[InputFrame]:
        """A note where an AVI's header gives no plausible frame rate: ``time_s`` is left empty
        (FFmpeg would make one up: 25 frames/s for a rate of 0)."""
        if self.layout is not None and header_fps(self.layout) is None:
            rate, scale = self.layout.rate
            said = "no frame rate (a rate of 0)" if not (rate and scale) else f"an implausible frame rate ({rate}/{scale} frames/s)"
            yield InputFrame(0, None, note=f"{self.name}: the AVI's header gives {said}: frames are numbered by their chunks, and time_s is left empty")

    def _decoder_said(self, index: int, said: str) -> Iterator[InputFrame]:
        """The problem of what FFmpeg wrote (``said``) while reading frame ``index``, if anything:
        the first :data:`_GAPS_NAMED` such frames named, the rest counted at the end. The frame
        keeps its row; the input counts as not read in full."""
        if said:
            self.errors += 1
            if self.errors <= _GAPS_NAMED:
                yield InputFrame(index, None, problem=f"{self.name}: FFmpeg reported damage at frame {index}: {shortened(said, 200)} "
                                                      "(the frame is kept, and may show the damage)")

    def _may_keep(self, seconds: float | None, failed: int) -> bool:
        return self.every == 1 or any(self._frame(count) % self.every == 0 for count in self.numbers.possible(seconds, failed))

    def _frame(self, count: int) -> int:
        """The number of the frame FFmpeg numbers ``count``: the same, except in an AVI, whose
        count is of chunks and whose :attr:`AviLayout.numbers` say which frame each is; -1 for a
        count past them (numbers stop there)."""
        if self.layout is None:
            return count
        return self.layout.numbers[count] if count < len(self.layout.numbers) else -1

    def _ending(self) -> Iterator[InputFrame]:
        """The count of frames FFmpeg reported damage at beyond those named, then how reading
        ended (:meth:`_stop`), or else what FFmpeg said in the failed reads after the last frame."""
        if self.errors > _GAPS_NAMED:
            yield InputFrame(self.last, None, problem=f"{self.name}: FFmpeg reported damage at {self.errors - _GAPS_NAMED} more frames (kept)")
        if self.repeated > _GAPS_NAMED:
            yield InputFrame(self.last, None, problem=f"{self.name}: {self.repeated - _GAPS_NAMED} more frames are stored twice (copies left out)")
        stop = list(self._stop())
        if not stop and self.grabs.said:
            stop = [InputFrame(self.last + 1, None, problem=f"{self.name}: FFmpeg reported damage after frame {self.last}: {shortened(self.grabs.said, 200)}")]
        yield from stop

    def _stop(self) -> Iterator[InputFrame]:
        """A problem frame when reading ended before the video did: at a damaged AVI chunk header,
        with no frame decoded, after :data:`FAILED_READS` failed reads, or short of the announced count."""
        name, announced, last, decoded, broken = self.name, self.announced, self.last, self.decoded, self.broken
        if broken and (self.stopped or broken.cut or (announced and broken.frame < announced)):
            of = f" of the {announced} the container announces" if announced else ""
            yield InputFrame(broken.frame, None, problem=f"{name}: {_stopped_at(last, decoded)}{of}: {broken.why}{broken.later}")
        elif self.layout is not None and announced and last + 1 > announced and self.layout.listed and last < self.layout.listed:
            yield InputFrame(announced, None, note=f"{name}: the AVI's header announces {announced} frames, but its index lists {self.layout.listed}, "
                                                  "each where the index says: the header's count is wrong (frames numbered by the index)")
        elif self.layout is not None and announced and last + 1 > announced:
            yield InputFrame(announced, None, problem=f"{name}: the AVI holds {last + 1} frames, but its header announces {announced}: frame chunks were "
                                                     "inserted or written twice, or the header's count is wrong; the file cannot tell which, "
                                                     "so frame numbers may be off from the first inserted chunk on")
        elif decoded == 0:
            yield InputFrame(0, None, problem=f"{name}: the video has no frames" if not announced else f"{name}: no frame could be decoded of the {announced} the container announces")
        elif announced and last + 1 < announced and self.grabs.failed > FAILED_READS:
            yield InputFrame(last + 1, None, problem=f"{name}: {_stopped_at(last, decoded)} of the {announced} the container announces: {FAILED_READS} reads "
                                                     "in a row failed after it (the file is cut off or damaged, or its header announces frames it does not hold)")
        elif announced and last + 1 < announced - self.numbers.uncertain_count() and not self.numbers.variable:
            yield InputFrame(last + 1, None, problem=f"{name}: {_stopped_at(last, decoded)}, but the container announces {announced}: the file is cut off or damaged")
        elif missing := self.numbers.missing_at_end():
            end, fps = self.numbers.time + missing, self.numbers.fps
            yield InputFrame(last + 1, None, problem=f"{name}: {_stopped_at(last, decoded)} at {self.numbers.time:.3f} s, but the container's {announced} frames at "
                                                     f"{fps:g} frames/s run to {end:.3f} s: the last {missing:.3f} s are missing (the file is cut off or damaged)")


def _kept_frame(name: str, index: int, image: np.ndarray | None, time_s: float | None) -> InputFrame:
    if image is None:
        return InputFrame(index, None, problem=f"{name}: frame {index} could not be decoded (left out)")
    return InputFrame(index, image, time_s=time_s)


class _Gaps:
    """The frames missing between decoded ones: a problem per place (the first :data:`_GAPS_NAMED`
    named, the rest counted in one line), except frames whose AVI chunk is empty (``empty``: the
    writer dropped them on purpose), said in one note."""

    def __init__(self, name: str, empty: frozenset[int]):
        self.name, self.empty = name, empty
        self.dropped: list[int] = []  # empty AVI chunks met
        self.places, self.unnamed = 0, 0  # places with undecodable frames; frames in the places not named

    def between(self, last: int, known: int, later: str) -> Iterator[InputFrame]:
        """The problem of frames ``last + 1`` to ``known - 1`` missing, if any (``later``: words on
        the frames after them)."""
        self.dropped += [frame for frame in range(last + 1, known) if frame in self.empty]
        if known > last + 1 and not self.empty.issuperset(range(last + 1, known)):
            self.places += 1
            if self.places <= _GAPS_NAMED:
                yield InputFrame(last + 1, None, problem=f"{self.name}: {_frames_words(last + 1, known - 1)} could not be decoded (left out{later})")
            else:
                self.unnamed += known - 1 - last

    def summary(self, last: int) -> Iterator[InputFrame]:
        dropped = self.dropped
        if dropped:
            which = f"frame {dropped[0]} is" if len(dropped) == 1 else f"{len(dropped)} frames ({', '.join(map(str, dropped[:5]))}{'...' if len(dropped) > 5 else ''}) are"
            yield InputFrame(dropped[0], None, note=f"{self.name}: {which} empty in the file (a frame the writer dropped; players show the previous one again): no row")
        if self.unnamed:
            yield InputFrame(last, None, problem=f"{self.name}: {self.unnamed} more frames in {self.places - _GAPS_NAMED} more places could not be decoded (left out)")


class _Converted(NamedTuple):
    """A grabbed frame and its image, once converted (``converted``; the image None where it was
    not kept or cannot be converted)."""

    grab: _Grab
    image: np.ndarray | None = None
    converted: bool = False


def _stamp(item: _Converted | None) -> tuple[float | None, int] | None:
    return None if item is None else (item.grab.seconds, item.grab.failed)


class _Ahead:
    """Grabbed frames not yet numbered, in order: a frame's image can be converted only while it
    is the last grabbed, so a frame is converted (:meth:`convert`) before one after it is grabbed
    (:meth:`peek` past it), and a frame converted earlier carries its image."""

    def __init__(self, grabs: Iterator[_Grab], image: Callable[[], np.ndarray | None]):
        self.grabs, self.image = grabs, image
        self.waiting: list[_Converted] = []
        self.ended = False

    def peek(self, position: int) -> _Converted | None:
        """The frame ``position`` places ahead (0: the next), grabbed if need be; None past the end."""
        while len(self.waiting) <= position and not self.ended:
            grab = next(self.grabs, None)
            self.ended = grab is None
            if grab is not None:
                self.waiting.append(_Converted(grab))
        return self.waiting[position] if position < len(self.waiting) else None

    def next(self) -> _Converted | None:
        item = self.peek(0)
        if item is not None:
            self.waiting.pop(0)
        return item

    def convert(self, position: int) -> None:
        """Convert the frame ``position`` places ahead, the last grabbed, now."""
        item = self.waiting[position]
        if not item.converted:
            self.waiting[position] = item._replace(image=self.image(), converted=True)

    def push_back(self, item: _Converted) -> None:
        """Put ``item`` back after the next frame: it is numbered after it."""
        self.waiting.insert(1, item)


class _Grab(NamedTuple):
    """One grabbed frame: its timestamp in seconds (None: none), the reads that failed just before
    it, and what the decoder wrote to stderr while reading it (empty: nothing; what it wrote in
    the failed reads explains them, which leave a gap)."""

    seconds: float | None
    failed: int
    said: str


class _Grabs:
    """A video's grabbed frames as :class:`_Grab`; :meth:`image` converts the frame just grabbed.
    A failed read is retried while ``retries()`` allows; ``failed`` is then the count that ended
    it, ``said`` what the decoder wrote during those last reads.

    FFmpeg decodes on ``grab``, and says there what it finds wrong (a damaged slice): each grab
    runs with stderr caught (``stderr``, two ``dup2`` calls a frame). ``retrieve`` and the RGB
    conversion are what a skipped frame saves.
    """

    def __init__(self, capture, timestamps: bool, retries, stderr: NativeStderr):
        self.capture, self.timestamps, self.retries, self.stderr = capture, timestamps, retries, stderr
        self.failed, self.said = 0, ""

    def __iter__(self) -> Iterator[_Grab]:
        failing = []  # what the decoder wrote during the failed reads in a row so far
        while True:
            with self.stderr.caught() as caught:
                grabbed = self.capture.grab()
            output = caught.decoder_lines()  # the prefetch thread reads: others may write meanwhile
            if not grabbed:
                failing += output.lines
                self.failed += 1
                if self.failed <= self.retries():
                    continue
                self.said = " / ".join(failing)
                return
            seconds = self.capture.get(cv2.CAP_PROP_POS_MSEC) / 1000 if self.timestamps else None
            failed, self.failed, failing = self.failed, 0, []
            yield _Grab(seconds, failed, str(output))

    def image(self) -> np.ndarray | None:
        """The frame last grabbed, uint8 RGB (H, W, 3); None when it cannot be converted."""
        return _retrieve_rgb(self.capture)


def _retrieve_rgb(capture) -> np.ndarray | None:
    ok, bgr = capture.retrieve()
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None


#: Places with undecodable frames named one by one; the rest are counted in one line (one screen).
_GAPS_NAMED = 5

#: Failed reads in a row after which a video counts as ended, whatever its container announces
#: (about 8 s of frames at 30 fps): a corrupt frame fails one read and a damaged stretch a few,
#: while a header's frame count is a claim (2e9 frames announced would be hours of failed reads).
FAILED_READS = 250


def _retries(announced: int | None, last: int) -> int:
    """Failed reads in a row to try before a video counts as ended: as many as the frames the
    container says can remain after frame ``last`` (the end of a file fails every read), at most
    :data:`FAILED_READS`."""
    return min(max(announced - (last + 1), 0), FAILED_READS) if announced else FAILED_READS


class FrameNumbers:
    """Numbers a video's decoded frames from their timestamps, so that a lost frame leaves a gap.

    While every timestamp lies on the grid of the container's nominal frame rate (within
    :data:`GRID_SECONDS` of a multiple of 1 / fps), a frame's number is its slot on that grid,
    ``round(t * fps)``, and ``time_s`` the slot's time: frames lost anywhere leave their slots
    empty. The first timestamp off the grid, or one that does not advance to a later slot (two
    frames in one slot, or no timestamp at all), makes the video one of variable frame rate (as
    phones record, timestamps at 1/90000 s following the camera, the frame rate announced an
    average): from there on slots say nothing, a frame's number is the next in decode order
    (``last + 1``, plus one per read that failed just before it), ``time_s`` the frame's own
    timestamp, and a hole in time longer than :data:`HOLE_INTERVALS` nominal frame intervals is
    lost data, numbered as frames at the nominal rate (an estimate, said in the gap's report).
    Without a frame rate (or a timestamp) every frame is the next in decode order.

    A lone timestamp that the next frame's contradicts is damage to that one frame, not a gap or a
    change of rate (one frame of look-ahead): while on the grid, a frame stamped at or beyond the
    next frame's slot, or before the previous frame's, when the next frame's slot leaves room
    between the two, is numbered by its place (the previous number + 1, plus failed reads, below
    the next frame's slot) and its ``time_s`` is that slot's time; a note names the first such
    frame. So is the last frame when stamped before the previous frame's slot, or past the frame
    count the container announces while its place is within it. Two damaged timestamps in a row
    are beyond one frame of look-ahead: from the first, the video reads as of variable frame rate.
    Frame 0 stamped at 0 and frame 1 at a slot past the frame count the container announces
    (a first frame stamped 0 by a muxer that offsets the others; frames lost after frame 0 would
    leave frame 1 within the count) moves the grid so that frame 1 is slot 1: nothing counts as
    lost, said in a note.

    Timestamps stored in a unit (``resolution``, seconds: Matroska's millisecond) that rounds them
    by more than a quarter frame (above 500 frames/s for a millisecond) do not say which slot a
    frame is: several frames share a stamp. Then the rate is taken as constant, and a frame's
    number is the next in decode order (plus failed reads), unless even the earliest slot its stamp
    allows is later (frames lost): then the slot its stamp names, so that the gap is counted within
    half a unit's frames; ``time_s`` is the slot's time.

    An AVI stores no timestamps (``counted``): FFmpeg's are its count of chunks turned into seconds
    at the rate it took (``fps``; 25 frames/s where the header gives none), so a frame's number is
    that count back, never a grid that is left or a gap in time; ``time_s`` is the number over the
    rate the header gives (``time_fps``; None: none, or none plausible, and ``time_s`` is empty);
    where the count does not advance (an absurd rate), the next in decode order.
    """

    def __init__(self, fps: float | None, announced: int | None = None, resolution: float = 0.0, counted: bool = False, time_fps: float | None = None):
        self.fps, self.announced = fps, announced  # announced: the frame count the container announces (None: unknown)
        self.counted, self.time_fps = counted, time_fps  # an AVI's: see the class
        self.resolution = resolution  # the unit the container stores timestamps in, seconds (0: exact)
        self.coarse = fps is not None and resolution * fps > 0.5  # rounding by half a unit can cross a quarter frame
        self.last = -1  # the number of the last frame
        self.time: float | None = None  # its timestamp in seconds
        self.variable = False
        self.note: str | None = None  # said once, when the numbering changes to decode order
        self.estimate = ""  # words for a gap whose size is estimated (variable frame rate)
        self.offset = 0  # slots the grid starts later than the timestamps' zero (frame 0 stamped early)
        self.outliers = 0  # frames numbered by their place, their timestamps out of place
        self.swaps = 0  # pairs of frames stored in swapped order

    def number(self, seconds: float | None, failed: int, following: tuple[float | None, int] | None = None) -> int:
        """The number of the frame with timestamp ``seconds`` (None: unknown), decoded after
        ``failed`` reads that failed; ``following`` is the next decoded frame's ``(seconds,
        failed)`` (None: this is the last)."""
        previous, self.estimate = self.time, ""
        if self.counted and self.fps is not None and seconds is not None:
            self.last, self.time = self._count(seconds, failed), seconds
            return self.last
        if self.coarse and seconds is not None:
            self.last, self.time = self._coarse_place(seconds, failed), seconds
            return self.last
        if self.fps is not None and seconds is not None and not self.variable:
            if (placed := self._placed(seconds, failed, following)) is not None:
                self.last, self.time = placed, (placed + self.offset) / self.fps
                return placed
            if not self._on_grid(seconds):
                self._leave_grid(seconds)
        index = self._unplaced(seconds, failed)
        if self.variable and seconds is not None and previous is not None and self._hole(seconds - previous):
            self.estimate = f"; {seconds - previous:.3f} s without frames, counted at {self.fps:g} frames/s"
        self.last, self.time = index, seconds
        return index

    def possible(self, seconds: float | None, failed: int) -> set[int]:
        """Every number :meth:`number` can give the frame, whatever the next frame's timestamp
        (known only once it is grabbed, when this frame can no longer be converted): its own
        timestamp's number, and while on the grid any place up to the failed reads before it
        (frame 0 also 0), where the next frame's timestamp would place it."""
        if self.counted and self.fps is not None and seconds is not None:
            return {self._count(seconds, failed)}
        if self.coarse and seconds is not None:
            return {self._coarse_place(seconds, failed)}
        numbers = {self._unplaced(seconds, failed)}
        if self.fps is not None and seconds is not None and not self.variable:
            numbers.update(range(self.last + 1, self.last + 2 + failed))
            if self.last == -1:
                numbers.add(0)
        return numbers

    def take_note(self) -> str | None:
        """What to say once about the numbering (it changed to decode order), None when nothing."""
        note, self.note = self.note, None
        return note

    def seconds(self, index: int) -> float | None:
        """``time_s`` of frame ``index`` (the last numbered): its slot's time on the grid, else its own timestamp."""
        if self.counted:
            return index / self.time_fps if self.time_fps else None
        if self.fps is None:
            return None
        return round(self.time, 6) if self.variable else index / self.fps  # microseconds: no noise such as 1.4000000000000001

    def uncertain_count(self) -> int:
        """Frames by which the count the container announces may be off as FFmpeg derives it
        from a duration stored in coarse units (its last stamp and last frame's length, each
        rounded by half a unit): 0 for timestamps fine enough."""
        return math.ceil(self.resolution * self.fps) if self.coarse else 0

    def _count(self, seconds: float, failed: int) -> int:
        """An AVI frame's count of chunks from FFmpeg's timestamp; the next in decode order (plus
        failed reads) where the timestamps do not advance: at a rate such as 4e9 frames/s FFmpeg's
        time base rounds every count to 0."""
        count = round(seconds * self.fps)
        return count if count > self.last else self.last + 1 + failed

    def _coarse_place(self, seconds: float, failed: int) -> int:
        """A coarse-stamped frame's number: the next in decode order, unless the earliest slot
        whose time rounds to ``seconds`` (half a unit before it; a millionth of a frame is float
        noise) is later: frames were lost, and it is the slot ``seconds`` names (the middle of
        those it allows, so that the frames after it, sharing its stamp or the next, fit)."""
        if math.ceil((seconds - self.resolution / 2) * self.fps - 1e-6) <= self.last + 1 + failed:
            return self.last + 1 + failed
        return round(seconds * self.fps)

    def _unplaced(self, seconds: float | None, failed: int) -> int:
        """The number that ``seconds`` gives without the next frame's word: its slot while on the
        grid, else the next in decode order (a long hole in time counted at the nominal rate)."""
        if self.fps is None or seconds is None:
            return self.last + 1 + failed
        if not self.variable and self._on_grid(seconds):
            return self._slot(seconds)
        index = self.last + 1 + failed
        if self.time is not None and self._hole(seconds - self.time):
            index = max(index, self.last + round((seconds - self.time) * self.fps))
        return index

    def repeats(self, seconds: float | None, following: tuple[float | None, int] | None) -> bool:
        """Whether the frame stamped ``seconds`` is the last numbered frame stored again: on the
        grid, it names the slot just taken, and the next frame (if any) goes on at the slot after
        it (or repeats it too). A frame written twice (a muxer's retry, an edit) has its first
        copy's timestamp; counted as a frame, it would shift every later one. Not for a
        variable or coarse time base, where two frames may share a slot."""
        if not self._fine_grid(seconds) or self.last < 0 or self._slot(seconds) != self.last:
            return False
        return following is None or (self._fine_grid(following[0]) and self._slot(following[0]) in (self.last, self.last + 1))

    def stored_early(self, seconds: float | None, following: tuple[float | None, int] | None, after: tuple[float | None, int] | None) -> bool:
        """Whether the frame stamped ``seconds`` and the next one are stored in swapped order, each
        with its own timestamp: the next is stamped one slot before it, into a slot still free,
        and the frame after them (``after``, None: none) does not claim its slot (else its stamp
        is the damaged one: :meth:`_placed`). The next frame is then to be numbered first."""
        if not (self._fine_grid(seconds) and following is not None and self._fine_grid(following[0])):
            return False
        slot, next_slot = self._slot(seconds), self._slot(following[0])
        if not self.last < next_slot == slot - 1:
            return False
        if after is not None and self._fine_grid(after[0]) and self._slot(after[0]) <= slot:
            return False
        if self.note is None and not self.swaps:
            self.note = (f"frames {next_slot} and {slot} are stored in swapped order (each with its own timestamp): "
                         "numbered by their timestamps (so are any later such frames)")
        self.swaps += 1
        return True

    def may_be_stored_early(self, seconds: float | None, following: tuple[float | None, int] | None) -> bool:
        """Whether :meth:`stored_early` may hold, whatever the frame after the next: the next
        frame's slot is free and one before this one's."""
        return (self._fine_grid(seconds) and following is not None and self._fine_grid(following[0])
                and self.last < self._slot(following[0]) == self._slot(seconds) - 1)

    def _fine_grid(self, seconds: float | None) -> bool:
        """Whether ``seconds`` is a timestamp on the grid of a constant frame rate stamped finely
        enough to name its slot."""
        return (seconds is not None and self.fps is not None and not (self.counted or self.coarse or self.variable)
                and self._near_slot(seconds))

    def _leave_grid(self, seconds: float) -> None:
        self.variable = True
        self.note = (f"the timestamps stop following the {self.fps:g} frames/s grid at {seconds:.3f} s (a variable frame rate, or repeated "
                     f"timestamps): from frame {self.last + 1} on, frames are numbered in decode order and time_s is each frame's own timestamp")

    def _hole(self, interval: float) -> bool:
        return interval * self.fps > HOLE_INTERVALS

    def _slot(self, seconds: float) -> int:
        return round(seconds * self.fps) - self.offset

    def _near_slot(self, seconds: float) -> bool:
        return abs(seconds - round(seconds * self.fps) / self.fps) <= min(GRID_SECONDS, 0.25 / self.fps)

    def _on_grid(self, seconds: float) -> bool:
        return self._slot(seconds) > self.last and self._near_slot(seconds)

    def _placed(self, seconds: float, failed: int, following: tuple[float | None, int] | None) -> int | None:
        """The number of a frame whose timestamp the next frame contradicts (see the class), or
        None when its timestamp is to be believed."""
        if following is None:
            return self._placed_last(seconds, failed)
        if following[0] is None or not self._near_slot(following[0]):
            return None
        slot, next_slot = self._slot(seconds), self._slot(following[0])
        if self.last == -1 and self.time is None and following[1] == 0 and slot == 0 and self.announced is not None and next_slot >= self.announced > 1:
            self.offset = next_slot - 1
            self.note = (f"frame 0's timestamp ({seconds:.3f} s) lies {next_slot - 1} frames before the grid the later frames follow (frame 1 at "
                         f"{following[0]:.3f} s, past the {self.announced} frames the container announces): taken as damaged, nothing is counted "
                         "as lost, and time_s counts from frame 0's place just before frame 1")
            return 0
        if next_slot <= self.last + 1 or self.last < slot < next_slot or slot == self.last:
            return None
        return self._outlier(min(self.last + 1 + failed, next_slot - 1), seconds, "the next")

    def _placed_last(self, seconds: float, failed: int) -> int | None:
        """The number of the last frame when its timestamp is out of place with nothing after it
        to say so: before the previous frame's slot, or past the frames the container announces
        while its place is within them. None when it is to be believed."""
        slot, place = self._slot(seconds), self.last + 1 + failed
        if self.last < 0 or not (slot < self.last or (self.announced is not None and place < self.announced <= slot)):
            return None
        return self._outlier(place, seconds, "the video's end")

    def _outlier(self, index: int, seconds: float, after: str) -> int:
        """``index``, for a frame numbered by its place, its timestamp taken as damaged (said once)."""
        self.outliers += 1
        if self.outliers == 1:
            self.note = (f"frame {index}'s timestamp ({seconds:.3f} s) lies outside the times of the frames around it ({self.last} and {after}): "
                         "taken as damaged, it is numbered by its place and time_s is that place's time (so are any later such frames)")
        return index

    def missing_at_end(self) -> float:
        """Seconds without frames at the end of a variable-rate video: from the last frame's
        timestamp to the end of the frames the container announces, ``announced / fps`` (its
        duration: FFmpeg's count is the duration times the rate, or the rate is the average over
        the count); 0 within :data:`HOLE_INTERVALS` nominal intervals (the last frame's own)."""
        if not self.variable or not self.announced or self.time is None:
            return 0.0
        missing = self.announced / self.fps - self.time
        return missing if self._hole(missing) else 0.0


#: How far a constant-rate frame's timestamp may lie from its slot: the coarsest time base in
#: common use, Matroska's and WebM's 1 ms, rounds a timestamp by at most 0.5 ms; twice that
#: leaves room for the demuxer's start-time subtraction and double arithmetic. A variable-rate
#: frame this close to a slot loses nothing by being numbered by it (its time_s is off by 1 ms at
#: most). Capped at a quarter frame, so that a slot is never in doubt above 250 frames/s.
GRID_SECONDS = 0.001

#: A hole in a variable-rate video's timestamps longer than this many nominal frame intervals is
#: lost data, not the camera: a camera that lowers its frame rate in poor light goes down to half,
#: at most a quarter, of its nominal rate (30 -> 7.5 frames/s).
HOLE_INTERVALS = 5


def _stopped_at(last: int, decoded: int) -> str:
    return f"decoding stopped at frame {last} ({counted(decoded, 'frame')} decoded)" if decoded else "no frame could be decoded"


def _frames_words(first: int, last: int) -> str:
    return f"frame {first}" if first == last else f"frames {first}-{last}"
