"""How far an AVI's frame numbers can be trusted: up to its first damaged chunk header.

An AVI stores no timestamps: FFmpeg's demuxer numbers the video chunks by counting them, and
OpenCV's ``CAP_PROP_PTS`` is that count. The count is right while every chunk header before a
frame is intact: a frame whose payload is damaged is still counted (its read fails, and the later
frames keep their numbers). A damaged header (its tag or its size) makes the demuxer search for
the next header it recognises, by rules of its own that differ between FFmpeg versions, and from
there on its count no longer says which frame is which. Walking the ``movi`` lists chunk by chunk
by the sizes they declare (the RIFF format itself, not FFmpeg's recovery) finds the first damaged
header, so that ``predict`` can stop there instead of numbering later frames wrong.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import NamedTuple

#: Chunk types of a stream's data in ``movi``: dc/db video (compressed/uncompressed), wb audio,
#: pc palette change, tx text.
_STREAM_CHUNKS = (b"dc", b"db", b"wb", b"pc", b"tx")


class AviBreak(NamedTuple):
    """Where an AVI's frame numbers stop being known: ``frame`` (from 0) is the first video frame
    whose number the demuxer's count no longer gives; ``why`` says so in words."""

    frame: int
    why: str


class AviLayout(NamedTuple):
    """What walking an AVI's chunks tells about its video frames: where their numbers stop being
    known (None: nowhere), and the frames whose chunk is empty (size 0: capture software writes one
    for a frame it dropped, players show the previous frame again)."""

    broken: AviBreak | None
    empty: frozenset[int]


def avi_layout(path: Path) -> AviLayout | None:
    """The :class:`AviLayout` of ``path``: the first video frame whose number cannot be known, and
    why (a damaged chunk header at it or between it and the previous frame, or a chunk that runs
    past the end of the file: cut off, or its size damaged, which one cannot be told, and either
    way frame numbers stop there), and the empty frames before it. None when ``path`` is no AVI
    whose header lists a video stream."""
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _layout(data)
    except (OSError, ValueError, struct.error):
        return None


def _layout(data) -> AviLayout | None:
    if data[0:4] != b"RIFF" or data[8:12] != b"AVI ":
        return None
    streams, movis = _streams_and_movi_lists(data)
    video = next((number for number, kind in enumerate(streams or []) if kind == b"vids"), None)
    if video is None:
        return None
    frames, empty = 0, set()
    for start, end in movis:
        frames, why = _walk_movi(data, start, end, len(streams), b"%02d" % video, frames, empty)
        if why:
            return AviLayout(AviBreak(frames, why), frozenset(empty))
    return AviLayout(None, frozenset(empty))


def _chunk(data, position: int) -> tuple[bytes, int]:
    return bytes(data[position : position + 4]), struct.unpack("<I", data[position + 4 : position + 8])[0]


def _streams_and_movi_lists(data) -> tuple[list[bytes] | None, list[tuple[int, int]]]:
    """Each stream's type (``strh``'s fccType: ``vids``, ``auds``...) from ``hdrl``, and the
    ``(start, end)`` of every ``movi`` list's chunks: the first RIFF's and those of the OpenDML
    ``RIFF AVIX`` extensions that follow it (files over 1 GB). A RIFF or ``movi`` size of 0 (left
    by a writer that could not seek back, as when recording to a pipe) runs to the end of the file."""
    streams, movis, riff = None, [], 0
    while riff + 12 <= len(data) and data[riff : riff + 4] == b"RIFF" and data[riff + 8 : riff + 12] in (b"AVI ", b"AVIX"):
        riff_size = _chunk(data, riff)[1] or len(data) - riff - 8
        riff_end = min(riff + 8 + riff_size, len(data))
        position = riff + 12
        while position + 12 <= riff_end:
            tag, size = _chunk(data, position)
            kind = bytes(data[position + 8 : position + 12])
            if tag == b"LIST" and kind == b"movi":
                size = size or len(data) - position - 8
                movis.append((position + 12, min(position + 8 + size, len(data))))
            elif tag == b"LIST" and kind == b"hdrl":
                streams = _stream_types(data, position + 12, min(position + 8 + size, len(data)))
            position += 8 + size + (size & 1)
        riff += 8 + riff_size + (riff_size & 1)
    return streams, movis


def _stream_types(data, start: int, end: int) -> list[bytes]:
    types, position = [], start
    while position + 12 <= end:
        tag, size = _chunk(data, position)
        if tag == b"LIST" and data[position + 8 : position + 12] == b"strl" and data[position + 12 : position + 16] == b"strh":
            types.append(bytes(data[position + 20 : position + 24]))
        position += 8 + size + (size & 1)
    return types


def _walk_movi(data, start: int, end: int, streams: int, video: bytes, frames: int, empty: set[int]) -> tuple[int, str | None]:
    """Walk one ``movi`` list, counting ``video``'s frame chunks on from ``frames`` (adding the
    numbers of empty ones to ``empty``): ``(frames, None)`` at its end, ``(frames, why)`` at the
    first damaged header (a tag that is no chunk of this list: a stream number past ``streams``,
    an unknown type) or chunk past the end."""
    position = start
    while position + 8 <= end:
        tag, size = _chunk(data, position)
        if position + 8 + size > end:
            if end == len(data):
                return frames, f"a chunk at frame {frames} runs past the end of the file (cut off, or its size is damaged)"
            return frames, f"the size of a chunk at frame {frames} is damaged"
        if tag == b"LIST":
            position += 12  # a "rec " list: its chunks follow
            continue
        if tag[:2] == video and tag[2:] in (b"dc", b"db"):
            if size == 0:
                empty.add(frames)
            frames += 1
        elif not (tag == b"JUNK" or tag[:2] == b"ix" or (tag[:2].isdigit() and int(tag[:2]) < streams and tag[2:] in _STREAM_CHUNKS)):
            return frames, f"a chunk header is damaged at frame {frames}"
        position += 8 + size + (size & 1)
    return frames, None
