"""Decoding image files the way training reads them: uint8 RGB, upright, whatever the file's depth.

Public (``feph_finetune.read_image``, ``feph_finetune.decodable``): dataset formats use it to
drop files that cannot be read, ``predict`` to read new frames exactly as the training images
were read. One rule decides both: a file is usable when :func:`read_image` returns an image
for it. No TensorFlow here; images are decoded with OpenCV.

Only regular files up to :data:`~feph_finetune.data.user_files.MAX_IMAGE_BYTES` are read
(:func:`~feph_finetune.data.user_files.read_user_file`): a FIFO named ``x.png`` never blocks.
A photograph's EXIF orientation is applied (a phone's portrait JPEG is stored sideways with an
``Orientation`` tag): :data:`DECODE_FLAGS` keep any depth and grey, and OpenCV rotates by the
tag for every flag but ``IMREAD_UNCHANGED``. Alpha is dropped by the decoder (as a copy of the
colour channels, the same pixels as decoding all four channels and dropping the fourth).

A small file can hold a huge image (a 20000 x 20000 PNG of 1 MB decodes to 1.2 GB): an image
whose header announces more pixels than the limit (:mod:`feph_finetune.data.image_headers`) is
refused before it is decoded, with a message naming the limit, whatever imported ``cv2`` first.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

if "OPENCV_LOG_LEVEL" not in os.environ:
    # OpenCV's own warnings ("[ WARN:0@1.2] global grfmt_png.cpp:793 ... PNG input buffer is
    # incomplete", one per damaged file) would stand between the program's messages, which already
    # say what could not be read and why; errors still show. A user's OPENCV_LOG_LEVEL is kept.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

from feph_finetune.api import DatasetError
from feph_finetune.data.image_headers import MAX_IMAGE_PIXELS, over_limit, pixel_limit  # noqa: F401 (MAX_IMAGE_PIXELS: its old home)
from feph_finetune.data.user_files import MAX_IMAGE_BYTES, UnreadableFile, read_user_file

DECODE_THREADS = 8
#: 8 or 16 bits, grey or colour, as the file holds them; EXIF orientation applied, alpha dropped.
DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
#: Byte strings that open EXIF data in a JPEG, a PNG and a WebP (a TIFF's tags were always applied).
EXIF_MARKERS = (b"Exif\x00\x00", b"eXIf", b"EXIF")


def read_image(path) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3), upright: grey expanded, 16 bit scaled.

    Raises :class:`~feph_finetune.DatasetError` naming the file and the reason: not a regular
    file or too big (:func:`~feph_finetune.data.user_files.read_user_file`), not decodable, or
    a pixel type training cannot use (float, signed, 2 channels).
    """
    return decode_image(image_bytes(path), path)


def image_bytes(path) -> bytes:
    """The bytes of an image file, read by the rule of the module (a regular file of bounded
    size); raises :class:`~feph_finetune.DatasetError` naming the file and what it is instead."""
    try:
        return read_user_file(path, MAX_IMAGE_BYTES)
    except UnreadableFile as error:
        raise DatasetError(f"image {path} {error}") from None


def decode_frames(content: bytes, path, start: int, count: int) -> list[np.ndarray]:
    """Frames ``start`` to ``start + count - 1`` of a multi-frame image file's bytes (an animated
    GIF, PNG or WebP, a multi-page TIFF: ``path`` names it in errors), each uint8 RGB as
    :func:`read_image` gives a still image; fewer at the file's end or where it cannot be decoded.
    An animation's frames come composed as a viewer shows them."""
    if over_limit(content):
        raise _over_limit(path)
    with opencv_quiet():  # reading past the end, or a damaged frame, is said by the caller, not by OpenCV's log
        ok, animation = cv2.imdecodeanimation(np.frombuffer(content, dtype=np.uint8).reshape(1, -1), start=start, count=count)  # one row: the WebP reader asks for it
    return [_to_rgb_uint8(frame, path) for frame in animation.frames] if ok else []


@contextmanager
def opencv_quiet() -> Iterator[None]:
    """OpenCV's log silent within the block (its ``[ERROR:0]`` lines for a file it cannot count or
    read to the end), as it was after it: the caller says what went wrong, naming the file."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def carries_exif(content: bytes) -> bool:
    """Whether an image file's bytes may hold EXIF data (a JPEG's ``Exif`` segment, a PNG's
    ``eXIf`` chunk, a WebP's ``EXIF`` chunk), so its orientation may turn the decoded image.
    A chance match in compressed data is harmless: callers only key caches apart with it."""
    return any(marker in content for marker in EXIF_MARKERS)


def decode_image(content: bytes, path) -> np.ndarray:
    """:func:`read_image` for a file's bytes already read (``path`` names it in errors)."""
    image = _decode(content, path)
    if image is None:
        raise DatasetError(f"cannot decode image {path}{_not_an_image(content)}")
    return _to_rgb_uint8(image, path)


#: The first bytes of the video containers a file named as an image most likely holds instead.
_VIDEO_SIGNATURES = ((0, b"RIFF", 8, b"AVI ", "an AVI video"), (4, b"ftyp", 4, b"ftyp", "an MP4/MOV video"),
                     (0, b"\x1a\x45\xdf\xa3", 0, b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"))


def video_container(content: bytes) -> str | None:
    """Words for the video container whose signature ``content`` (a file's first bytes) starts
    with, "an AVI video"; None for none of those a file named as an image most likely holds."""
    for at, tag, second_at, second_tag, what in _VIDEO_SIGNATURES:
        if content[at : at + len(tag)] == tag and content[second_at : second_at + len(second_tag)] == second_tag:
            return what
    return None


def _not_an_image(content: bytes) -> str:
    """Words on why ``content`` is no image, where its bytes say: an empty file (an interrupted
    copy), or a video container under an image's name; empty when they do not say."""
    if not content:
        return ": the file is empty (0 bytes)"
    if video := video_container(content):
        return f": it holds {video}, not an image, whatever its name says"
    return ""


def decodable(paths: list[Path]) -> list[bool]:
    """Whether :func:`read_image` reads each file; OpenCV releases the GIL, so threads share the cores."""
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
        return list(pool.map(_readable, paths))


def _readable(path: Path) -> bool:
    try:
        read_image(path)
    except DatasetError:
        return False
    return True


def _decode(content: bytes, path) -> np.ndarray | None:
    """The image as OpenCV decodes it with :data:`DECODE_FLAGS`, or None if it cannot. Raises
    :class:`~feph_finetune.DatasetError` for an image over the pixel limit (module docstring)."""
    if not content:
        return None
    if over_limit(content):  # before a pixel is decoded (image_headers)
        raise _over_limit(path)
    try:
        return cv2.imdecode(np.frombuffer(content, dtype=np.uint8), DECODE_FLAGS)
    except cv2.error as error:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(error):  # OpenCV's own check, for a format image_headers does not read
            raise _over_limit(path) from None
        return None


def _over_limit(path) -> DatasetError:
    return DatasetError(f"image {path} has more pixels than the {pixel_limit()} decoded at most (OPENCV_IO_MAX_IMAGE_PIXELS)")


def _to_rgb_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise DatasetError(f"image {path} has unsupported pixel type {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise DatasetError(f"image {path} has {image.shape[2]} channels; expected 1, 3 or 4")
