"""Face cropping with OpenCV's Haar cascade, the paper's preprocessing (built-in ``preprocess`` plugin).

FePh frames show a signer's upper body; the expression is in a face of about a quarter of the
frame's width. Like the paper, this plugin finds faces with the Viola-Jones frontal-face Haar
cascade that ships with OpenCV (``haarcascade_frontalface_default.xml``), takes the largest one,
widens its box by ``margin`` on every side (the cascade's box is tight: it cuts the chin and the
brows' top), makes it square around the same centre and shifts it back inside the image rather
than padding. The crop keeps its natural size: the core resizes it to the model's input.

When no face is found (the signer turns away, a hand covers the face), the fallback is the
upper-centre square whose side is the image's width (clipped to its height): on a PHOENIX frame
that is the head and shoulders, where the face almost always is. Such images are flagged
``fallback="no_face"`` so that the run can count them.

Options (``[*.options.face_crop]``):

- ``margin`` (0.2): fraction of the face box's side added on each side, >= 0.
- ``scale_factor`` (1.1): the cascade's image-pyramid step, > 1; smaller finds more, slower.
- ``min_neighbors`` (5): overlapping detections needed to accept a face, >= 0; higher is stricter.
- ``min_face`` (0.1): smallest face side, as a fraction of the image's shorter side, in (0, 1].
- ``fallback`` ("upper_centre"): what to return without a face: ``"upper_centre"`` or
  ``"centre"`` (the centred square).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np

from feph_finetune import FrameResult, Option, PluginError, Preprocessing, hookimpl

CASCADE_FILE = "haarcascade_frontalface_default.xml"
FALLBACKS = ("upper_centre", "centre")
NO_FACE = "no_face"

_cascades: dict[str, object] = {}
_cascade_lock = threading.Lock()   # CascadeClassifier.detectMultiScale is not thread-safe


#: The options, with the values each accepts (checked by the core before any work). A
#: ``scale_factor`` of 1 or less would never shrink the image pyramid; ``inf`` made OpenCV's
#: cascade fail with ``std::bad_alloc``; above 10 the pyramid has one level, and a margin of 10
#: face sides on each side crops the whole frame for any face. ``min_neighbors`` beyond 1,000
#: accepts no face (the cascade finds a few dozen overlapping boxes at most).
OPTIONS = {
    "margin": Option(0.2, help="fraction of the face box's side added on each side, >= 0", minimum=0, maximum=10),
    "scale_factor": Option(1.1, help="the cascade's image-pyramid step, > 1 (smaller finds more, slower)",
                           minimum=1, exclusive_minimum=True, maximum=10),
    "min_neighbors": Option(5, help="overlapping detections needed to accept a face, >= 0", minimum=0, maximum=1000),
    "min_face": Option(0.1, help="smallest face side, as a fraction of the image's shorter side, in (0, 1]",
                       minimum=0, exclusive_minimum=True, maximum=1),
    "fallback": Option("upper_centre", help="the square used without a face", choices=FALLBACKS),
}


@hookimpl
def plugin_options():
    return dict(OPTIONS)


@hookimpl
def preprocess(context):
    options = {name: context.options.get(name, option.default) for name, option in OPTIONS.items()}
    cascade_path = cascade_file()
    cascade = load_cascade(cascade_path)

    def frame(image: np.ndarray) -> FrameResult:
        return crop_face(image, cascade, **options)

    return Preprocessing(frame=frame, cache_key=cache_key(options, cascade_path))


def _cv2():
    try:
        import cv2
    except ImportError as error:
        raise PluginError("face_crop needs OpenCV: install opencv-python-headless<5") from error
    return cv2


def cascade_file() -> Path:
    """The frontal-face cascade shipped with OpenCV 4 (OpenCV 5 no longer ships it)."""
    cv2 = _cv2()
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if folder is None or not hasattr(cv2, "CascadeClassifier"):
        raise PluginError(f"face_crop: OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 removed "
                          "cv2.CascadeClassifier and the cascade files); install opencv-python-headless<5")
    path = Path(folder) / CASCADE_FILE
    if not path.is_file():
        raise PluginError(f"face_crop: the Haar cascade file {path} is missing; reinstall "
                          "opencv-python-headless<5")
    return path


def load_cascade(path: Path):
    """The cascade classifier for ``path``, loaded once per process."""
    with _cascade_lock:
        if str(path) not in _cascades:
            cascade = _cv2().CascadeClassifier(str(path))
            if cascade.empty():
                raise PluginError(f"face_crop: OpenCV could not load the Haar cascade {path}")
            _cascades[str(path)] = cascade
        return _cascades[str(path)]


def cache_key(options: dict, cascade_path: Path) -> str:
    """Identifies what the crops depend on: the options, the cascade's content, OpenCV's major
    version (detections may differ across versions)."""
    digest = hashlib.sha256(cascade_path.read_bytes()).hexdigest()[:16]
    major = _cv2().__version__.split(".")[0]
    described = json.dumps(options, sort_keys=True)
    return f"face_crop-v1 opencv{major} cascade:{digest} {described}"


def detect_faces(gray: np.ndarray, cascade, scale_factor: float, min_neighbors: int,
                 min_face: float) -> np.ndarray:
    """Face boxes (x, y, w, h) in a grey image, as an int array of shape (n, 4)."""
    side = max(1, int(round(min_face * min(gray.shape[:2]))))
    with _cascade_lock:
        faces = cascade.detectMultiScale(gray, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                         minSize=(side, side))
    return np.asarray(faces, dtype=int).reshape(-1, 4)


def crop_face(image: np.ndarray, cascade, margin: float, scale_factor: float, min_neighbors: int,
              min_face: float, fallback: str) -> FrameResult:
    """The square crop around the largest face in a uint8 RGB image, or the fallback square.

    The result's ``box`` is the detector's box of that face (x, y, w, h, before the margin).
    """
    rgb = _as_rgb(image)
    gray = _cv2().cvtColor(rgb, _cv2().COLOR_RGB2GRAY)
    faces = detect_faces(gray, cascade, scale_factor, min_neighbors, min_face)
    height, width = gray.shape
    if len(faces) == 0:
        x, y, side = fallback_square(width, height, fallback)
        return FrameResult(image=rgb[y:y + side, x:x + side].copy(), fallback=NO_FACE)
    box = tuple(int(value) for value in max(faces, key=lambda box: box[2] * box[3]))
    x, y, side = square_around(*box, margin, width, height)
    return FrameResult(image=rgb[y:y + side, x:x + side].copy(), box=box)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise PluginError(f"face_crop: expected a uint8 numpy image, got {getattr(image, 'dtype', type(image))}")
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]   # the release's alpha channel carries nothing
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise PluginError(f"face_crop: expected an RGB image of shape (H, W, 3), got shape {image.shape}")


def square_around(x: int, y: int, w: int, h: int, margin: float, width: int, height: int) -> tuple[int, int, int]:
    """The square (x, y, side) around a box widened by ``margin``, inside a width x height image.

    The square keeps the box's centre where the image allows and is shifted inwards at the
    borders; only a square larger than the image's shorter side is shrunk to fit.
    """
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = max(1, min(side, width, height))
    centre_x, centre_y = x + w / 2, y + h / 2
    left = int(round(centre_x - side / 2))
    top = int(round(centre_y - side / 2))
    left = min(max(left, 0), width - side)
    top = min(max(top, 0), height - side)
    return left, top, side


def fallback_square(width: int, height: int, fallback: str) -> tuple[int, int, int]:
    """The square (x, y, side) used without a face: side = the image's width, clipped to its
    height; at the top (``upper_centre``) or the middle (``centre``), centred horizontally."""
    side = min(width, height)
    left = (width - side) // 2
    top = 0 if fallback == "upper_centre" else (height - side) // 2
    return left, top, side
