"""Decoding image files the way training reads them: uint8 RGB, whatever the file's depth.

Public (``feph_finetune.read_image``, ``feph_finetune.decodable``): dataset formats use it to
drop files that do not decode, ``predict`` to read new frames exactly as the training images
were read. No TensorFlow here; images are decoded with OpenCV.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from feph_finetune.api import DatasetError

DECODE_THREADS = 8


def read_image(path) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3): alpha dropped, grey expanded, 16 bit scaled."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"image {path} does not exist")
    image = _decode(path)
    if image is None:
        raise DatasetError(f"cannot decode image {path}")
    return _to_rgb_uint8(image, path)


def decodable(paths: list[Path]) -> list[bool]:
    """Whether each file decodes as an image; OpenCV releases the GIL, so threads share the cores."""
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=min(DECODE_THREADS, os.cpu_count() or 1)) as pool:
        return list(pool.map(_is_decodable, paths))


def _is_decodable(path: Path) -> bool:
    return _decode(path) is not None


def _decode(path: Path) -> np.ndarray | None:
    """The image as OpenCV decodes it (any depth and channel count), or None if it cannot."""
    try:
        data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    try:
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None


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
