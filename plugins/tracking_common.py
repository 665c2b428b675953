"""What the tracking plugins (``tensorboard``, ``mlflow``) share; not a plugin itself."""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import cv2
import numpy as np

#: Pixels of one cell of :func:`confusion_image`, and of the margin for the class names.
CELL, MARGIN = 56, 120


def final_scalars(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    """The run's final metrics as flat scalars: ``accuracy``, ``avg_sensitivity``,
    ``sensitivity/<class>`` and any other numeric metric; undefined values (None) left out."""
    scalars: dict[str, float] = {}
    for name, value in (metrics or {}).items():
        if name == "sensitivity" and isinstance(value, Mapping):
            scalars.update({f"sensitivity/{cls}": float(share) for cls, share in value.items() if share is not None})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            scalars[name] = float(value)
    return scalars


def flat_items(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted.key, value)`` for every leaf of a nested table (``options.mobilenet.alpha``)."""
    for key, value in table.items():
        if isinstance(value, Mapping) and value:
            yield from flat_items(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def confusion_image(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> np.ndarray:
    """The confusion matrix (rows: true class, columns: predicted) as a uint8 RGB image
    (H x W x 3): each cell shaded by its share of the row, with its count; class names on the
    left and, abbreviated to three letters, on top. OpenCV's font draws ASCII only: other
    characters of a class name show as ``?``.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    size = len(classes)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = np.full((MARGIN // 2 + size * CELL + 8, MARGIN + size * CELL + 8, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for row in range(size):
        for column in range(size):
            top, left = MARGIN // 2 + row * CELL, MARGIN + column * CELL
            shade = int(255 - 200 * shares[row, column])
            image[top:top + CELL - 2, left:left + CELL - 2] = (shade, shade, 255)
            colour = (255, 255, 255) if shares[row, column] > 0.6 else (0, 0, 0)
            cv2.putText(image, str(counts[row, column]), (left + 6, top + CELL // 2 + 5), font, 0.45, colour, 1, cv2.LINE_AA)
        cv2.putText(image, _ascii(classes[row])[:13], (4, MARGIN // 2 + row * CELL + CELL // 2 + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for column in range(size):
        cv2.putText(image, _ascii(classes[column])[:3], (MARGIN + column * CELL + 10, MARGIN // 2 - 12), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 RGB image as PNG bytes."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return encoded.tobytes()


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")
