"""Frame numbers of an AVI whose chunk headers are damaged, from the file's own index.

An AVI stores no timestamps: FFmpeg's demuxer numbers the video chunks it recognises by counting
them. When a chunk's header is damaged (its tag or its size), the demuxer resyncs to the next
header it recognises, so the chunks after the damage are numbered early, and OpenCV's
``CAP_PROP_PTS`` with them. The ``idx1`` index at the end of the file gives every video chunk's
offset, in frame order: walking the ``movi`` list as the demuxer does (a header it does not
recognise is skipped byte by byte) and looking each recognised chunk up in the index gives the
frame number of the k-th packet the decoder delivers.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

#: Chunk types of a stream's data in ``movi`` (video: dc compressed, db uncompressed; audio: wb...).
_STREAM_CHUNKS = (b"dc", b"db", b"wb", b"pc", b"tx")


def avi_frame_numbers(path: Path) -> list[int] | None:
    """The frame number (position in the index from 0) of each video packet FFmpeg delivers, in
    order; None when ``path`` is no AVI with an ``idx1`` index, when nothing is damaged (the
    packets are the frames 0, 1, 2...), or when a recognised chunk is not in the index (then the
    numbers cannot be known)."""
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _frame_numbers(data)
    except (OSError, ValueError, struct.error):
        return None


def _frame_numbers(data) -> list[int] | None:
    if data[0:4] != b"RIFF" or data[8:12] != b"AVI ":
        return None
    movi, index = _movi_and_index(data)
    if movi is None or index is None:
        return None
    frames = _video_offsets(data, movi, index)
    if not frames:
        return None
    stream = data[frames[0] : frames[0] + 2]
    number_of = {offset: number for number, offset in enumerate(frames)}
    numbers = [number_of.get(offset) for offset in _recognised_chunks(data, movi, stream)]
    if None in numbers or numbers == list(range(len(numbers))):
        return None
    return numbers


def _movi_and_index(data) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """``(start, end)`` of the ``movi`` list's chunks and of the ``idx1`` entries, from the top-level chunks."""
    movi = index = None
    position = 12
    while position + 8 <= len(data):
        tag, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        if tag == b"LIST" and data[position + 8 : position + 12] == b"movi":
            movi = (position + 12, min(position + 8 + size, len(data)))
        elif tag == b"idx1":
            index = (position + 8, min(position + 8 + size, len(data)))
        position += 8 + size + (size & 1)
    return movi, index


def _video_offsets(data, movi: tuple[int, int], index: tuple[int, int]) -> list[int]:
    """The file offsets of the first video stream's chunks, in frame order, from ``idx1``
    (whose offsets count from the ``movi`` tag, or from the file's start in some writers)."""
    entries = [struct.unpack("<4sIII", data[at : at + 16]) for at in range(index[0], index[1] - 15, 16)]
    video = [(tag, offset) for tag, _, offset, _ in entries if tag[2:4] in (b"dc", b"db")]
    if not video:
        return []
    stream = video[0][0][:2]
    video = [(tag, offset) for tag, offset in video if tag[:2] == stream]
    relative = movi[0] - 4
    base = relative if sum(data[relative + offset : relative + offset + 4] == tag for tag, offset in video[:8]) else 0
    return [base + offset for _, offset in video]


def _recognised_chunks(data, movi: tuple[int, int], stream: bytes) -> list[int]:
    """The offsets of ``stream``'s chunks as the demuxer reads ``movi``: chunk after chunk, a
    header it does not recognise (a damaged tag, a size past the list's end) skipped byte by byte."""
    found, position, end = [], movi[0], movi[1]
    while position + 8 <= end:
        tag, size = data[position : position + 4], struct.unpack("<I", data[position + 4 : position + 8])[0]
        if tag == b"LIST":
            position += 12  # a rec list: its chunks follow
        elif tag == b"JUNK" or tag[:2] == b"ix":
            position += 8 + size + (size & 1)
        elif tag[:2].isdigit() and tag[2:4] in _STREAM_CHUNKS and position + 8 + size <= end:
            if tag[:2] == stream:
                found.append(position)
            position += 8 + size + (size & 1)
        else:
            position += 1
    return found
