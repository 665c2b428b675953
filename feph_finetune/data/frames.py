"""Per-image preprocessing (face cropping) with an on-disk cache, and the uint8 image arrays.

``Preprocessing.frame`` steps are deterministic functions of an image and their options, so each
result is stored once, keyed by the image's content and the steps' ``cache_key``s, and every run,
fold and later invocation reuses it. Entries carry a checksum: a corrupt one is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from feph_finetune.api import FrameResult, PluginError, Preprocessing
from feph_finetune.api import Dataset
from feph_finetune.data.images import carries_exif, decode_image, image_bytes
from feph_finetune.data.user_files import UnreadableFile, read_user_file
from feph_finetune.hook_results import frame_problem
from feph_finetune.plugins import PluginCallError, plugin_code
from feph_finetune.results.store import atomic_path

CACHE_ENV = "FEPH_FINETUNE_CACHE"
#: The largest crop cache entry read (bytes): an entry holds one uint8 image of the largest
#: input size (1024 x 1024 x 3, 3 MiB) and two short texts.
MAX_CACHE_ENTRY_BYTES = 16 * 2**20


def default_cache_dir() -> Path:
    """``$FEPH_FINETUNE_CACHE``, else ``$XDG_CACHE_HOME/feph_finetune``, else ``~/.cache/feph_finetune``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "feph_finetune"


@dataclass(frozen=True)
class FrameStep:
    """A ``frame`` function and the plugin that contributed it."""

    plugin: str
    preprocessing: Preprocessing

    @property
    def signature(self) -> str:
        return f"{self.plugin}:{self.preprocessing.cache_key}"


@dataclass
class FrameSet:
    """The images of a dataset after the frame steps, as one uint8 array (N x S x S x 3)."""

    images: np.ndarray
    fallbacks: list[str | None]
    computed: int  # images whose frame steps ran (not found in the cache)
    cache_problem: str | None = None  # why the cache could not be written or an entry read (CropCache.problem, .skipped)


class CropCache:
    """Frame results on disk under ``root/<key[:2]>/<key>.npz``.

    The cache is an optimisation: when an entry cannot be written (a full disk, a folder that
    is read-only or not a folder), :attr:`problem` says why, naming the cache folder, and the
    frames are computed without storing them from then on; the run goes on and warns once
    (:func:`feph_finetune.execution.job.execute_run`'s ``warning`` event).
    """

    def __init__(self, root: Path):
        self.root = Path(root) / "crops"
        self.problem: str | None = None
        self.skipped: str | None = None  # the first entry that is no regular file (a FIFO...), said once

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def load(self, key: str, size: int) -> FrameResult | None:
        """The cached result, or None when absent or corrupt (then it is recomputed and stored
        over it). An entry that is no regular file (a FIFO would block the run forever, a link
        to a device fill the memory) or is oversized is never read: it is recomputed too, and
        :attr:`skipped` names the first such entry for the run's one warning."""
        path = self.path(key)
        try:
            data = read_user_file(path, MAX_CACHE_ENTRY_BYTES)
        except UnreadableFile as error:
            if not error.missing and self.skipped is None:
                self.skipped = f"the crop cache entry {path} {error}; such entries are computed again instead"
            return None
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as entry:
                image, fallback, checksum = entry["image"], str(entry["fallback"]), str(entry["checksum"])
        except Exception:  # a truncated or garbled file: any decoding error means "recompute"
            return None
        if image.shape != (size, size, 3) or image.dtype != np.uint8 or _checksum(image) != checksum:
            return None
        return FrameResult(image, fallback or None)

    def store(self, key: str, result: FrameResult) -> None:
        if self.problem is not None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, image=result.image, fallback=result.fallback or "", checksum=_checksum(result.image))
        try:
            with atomic_path(self.path(key)) as temporary:
                temporary.write_bytes(buffer.getvalue())
        except OSError as error:
            reason = "no free inodes (files) left" if getattr(error, "inodes", False) else os.strerror(error.errno) if error.errno else error
            self.problem = f"the crop cache {self.root} cannot be written ({reason}); face crops are computed without caching them"


def _checksum(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` (a non-square image is centre-cropped to a square first)."""
    height, width = image.shape[:2]
    if height != width:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        image = image[top : top + side, left : left + side]
    interpolation = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, (size, size), interpolation=interpolation), dtype=np.uint8)


def apply_steps(image: np.ndarray, steps: Sequence[FrameStep], size: int) -> FrameResult:
    """One image through the frame steps, then resized: the model's input for training images
    (:func:`compute_frames`) and for new frames (``predict``) alike.

    ``image`` is uint8 RGB (H, W, 3); the result's image is uint8 (size, size, 3). Its
    ``fallback`` is the last step's non-empty fallback, its ``box`` the last box a step reported
    (in the coordinates of the image that step received).
    """
    fallback, box = None, None
    for step in steps:
        with plugin_code(step.plugin, "preprocess"):
            result = step.preprocessing.frame(image)
        if problem := frame_problem(result):
            raise PluginCallError(step.plugin, "preprocess", PluginError(problem))
        image, fallback, box = result.image, result.fallback or fallback, result.box or box
    return FrameResult(resize_square(image, size), fallback, box)


def frame_key(content: bytes, chain: str, size: int) -> str:
    """The cache key of one image file's frame result: its bytes, the steps' ``chain`` of
    signatures and the size. A file with EXIF data (:func:`~feph_finetune.data.images.carries_exif`)
    is keyed apart from the entries cached before its orientation was applied, which may be
    sideways; every other file keeps its key, and its cached crops."""
    upright = "|exif-upright" if carries_exif(content) else ""
    return hashlib.sha256(hashlib.sha256(content).digest() + f"{chain}|{size}{upright}".encode()).hexdigest()


def compute_frames(dataset: Dataset, steps: Sequence[FrameStep], size: int, cache: CropCache | None) -> FrameSet:
    """Every sample's image after the frame steps, resized to ``size``, using the cache."""
    chain = "|".join(step.signature for step in steps)
    images = np.empty((len(dataset.samples), size, size, 3), dtype=np.uint8)
    fallbacks: list[str | None] = []
    computed = 0
    for index, sample in enumerate(dataset.samples):
        content = image_bytes(sample.path)
        key = frame_key(content, chain, size)
        result = cache.load(key, size) if cache else None
        if result is None:
            result = apply_steps(decode_image(content, sample.path), steps, size)
            computed += 1
            if cache:
                cache.store(key, result)
        images[index] = result.image
        fallbacks.append(result.fallback)
    said = "; ".join(message for message in (cache.problem, cache.skipped) if message) if cache else ""
    return FrameSet(images, fallbacks, computed, said or None)
