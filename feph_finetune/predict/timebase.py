"""How finely a video container can say when a frame is shown: its timestamps' resolution.

Matroska and WebM store a frame's timestamp in units of the segment's ``TimestampScale``
(nanoseconds; 1,000,000, a millisecond, unless the file says otherwise); FLV in milliseconds.
At a frame rate whose interval is not much longer than that unit (above 500 frames/s for a
millisecond), a timestamp no longer says which frame it is: 2000 frames/s stamped to the
millisecond gives two frames each stamp, and the frame count FFmpeg derives from the duration is
off by as many frames as a unit holds. MP4 and MOV choose their time scale per track, fine enough
for the rate they were written at, and an AVI's timestamps count frames: their resolution is
taken as exact (0).
"""

from __future__ import annotations

from pathlib import Path

_EBML = b"\x1a\x45\xdf\xa3"
_SEGMENT, _INFO, _TIMESTAMP_SCALE, _CLUSTER = 0x18538067, 0x1549A966, 0x2AD7B1, 0x1F43B675

#: Matroska's default ``TimestampScale``, in nanoseconds.
_DEFAULT_SCALE = 1_000_000

#: The bytes read to find Matroska's ``Info`` element: it comes before the first cluster of
#: frames, after at most a seek head and a few tags.
_HEAD_BYTES = 1 << 16


def timestamp_resolution(path: Path) -> float:
    """The unit, in seconds, in which the container at ``path`` stores frame timestamps: its
    ``TimestampScale`` for Matroska/WebM, 0.001 for FLV, 0.0 (exact) for anything else or a file
    that cannot be read."""
    try:
        with open(path, "rb") as file:
            head = file.read(_HEAD_BYTES)
    except OSError:
        return 0.0
    if head[:3] == b"FLV":
        return 0.001
    if head[:4] == _EBML:
        return _matroska_scale(head) / 1e9
    return 0.0


def _matroska_scale(head: bytes) -> int:
    """``TimestampScale`` from the ``Info`` element of the ``Segment`` after the EBML header
    (default when not found before the first cluster or the end of ``head``)."""
    try:
        _, size, position = _element(head, 0)
        position += size  # past the EBML header
        element, size, position = _element(head, position)
        if element != _SEGMENT:
            return _DEFAULT_SCALE
        while position < len(head):
            element, size, start = _element(head, position)
            if element == _CLUSTER or size is None:
                return _DEFAULT_SCALE
            if element == _INFO:
                return _scale_in_info(head, start, min(start + size, len(head)))
            position = start + size
    except IndexError:
        pass
    return _DEFAULT_SCALE


def _scale_in_info(head: bytes, position: int, end: int) -> int:
    while position < end:
        element, size, start = _element(head, position)
        if element == _TIMESTAMP_SCALE and size:
            return int.from_bytes(head[start : start + size], "big") or _DEFAULT_SCALE
        position = start + (size or 0)
    return _DEFAULT_SCALE


def _element(data: bytes, position: int) -> tuple[int, int | None, int]:
    """The EBML element at ``position``: its ID (marker bit kept, as the specification writes
    IDs), its data size (None: unknown, all ones) and where its data starts. Raises IndexError past
    the end of ``data``."""
    element, position = _vint(data, position, keep_marker=True)
    size, after = _vint(data, position, keep_marker=False)
    length = after - position
    return element, None if size == (1 << (7 * length)) - 1 else size, after


def _vint(data: bytes, position: int, keep_marker: bool) -> tuple[int, int]:
    first = data[position]
    length = 9 - first.bit_length() if first else 9
    if length > 8:
        raise IndexError("not an EBML number")
    value = int.from_bytes(data[position : position + length], "big")
    if len(data) < position + length:
        raise IndexError("past the end")
    return (value if keep_marker else value & ((1 << (7 * length)) - 1)), position + length
