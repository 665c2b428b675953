"""Which frame each chunk of an AVI is: from its index where it has one, else by counting.

An AVI stores no timestamps: FFmpeg's demuxer (``avi_sync`` in libavformat/avidec.c) walks the
``movi`` list, skips what it does not take for a stream's chunk (``JUNK``, ``idx1``, ``ix##``,
``LIST`` headers) and numbers the video chunks it finds by counting them; OpenCV's
``CAP_PROP_PTS`` is that count. It reads the ``idx1`` index (or OpenDML's ``ix##``) only to seek
and to flag key frames, unless the file is not interleaved, and never checks the walk against it.
So a frame chunk removed, re-tagged (``JUNK``) or written twice shifts the count of every later
frame, while each chunk header stays valid.

The index lists each frame's chunk at its offset, in frame order: the frame a chunk is, whatever
came before it. Walking the chunks by the sizes they declare (the RIFF format, not FFmpeg's
recovery) and looking each video chunk up in the index gives each chunk FFmpeg counts its frame
number (:attr:`AviLayout.numbers`): a frame the index lists whose chunk the walk did not find as a
video chunk is a gap, and later frames keep their numbers. Other streams' chunks (audio) that the
index lists and the walk does not find move the later chunks, not FFmpeg's count of video chunks:
their bytes are allowed for. Where chunks are not where the index lists them (bytes removed or inserted), or where the walk meets a damaged header or a chunk (or a
chunk header) past the end of the file, numbers stop (:class:`AviBreak`). Without an index (a writer
killed before writing it) a chunk's number is its count, right up to the first damaged header; past
the whole entries of an index the file ends inside (a writer killed while writing it), too.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import NamedTuple

#: Chunk types of a stream's data in ``movi``: dc/db video (compressed/uncompressed), wb audio,
#: pc palette change, tx text.
_STREAM_CHUNKS = (b"dc", b"db", b"wb", b"pc", b"tx")


#: What an :class:`AviBreak`'s words end with where frames past it may be in the file.
LATER_UNNUMBERED = "; an AVI numbers its frames by counting chunks, so later frames cannot be numbered (left out)"


class AviBreak(NamedTuple):
    """Where an AVI's frame numbers stop being known: ``frame`` (from 0) is the first video frame
    whose chunk cannot be told; ``why`` says so in words; ``cut``: the file ends inside a chunk;
    ``later``: the words on the frames after it (none where the file ends inside its index)."""

    frame: int
    why: str
    cut: bool = False
    later: str = LATER_UNNUMBERED


class AviLayout(NamedTuple):
    """What walking an AVI's chunks tells about its video frames: where their numbers stop being
    known (None: nowhere), the frames whose chunk is empty (size 0: capture software writes one for
    a frame it dropped, players show the previous frame again), and ``numbers``: the frame number of
    each video chunk FFmpeg counts, in its order, up to the break (a count past them has none)."""

    broken: AviBreak | None
    empty: frozenset[int]
    numbers: tuple[int, ...]
    listed: int | None = None  # the video frames its index lists (None: no index)
    rate: tuple[int, int] = (0, 0)  # the video stream header's (rate, scale): rate / scale frames/s


#: Frame rates an AVI header may give that a camera or an encoder writes: one frame an hour (a
#: time-lapse) to a million frames/s (a high-speed camera). A rate outside them (4e9 frames/s, a
#: scale of 4e9) or a rate of 0 (FFmpeg then makes one up: 25 frames/s) gives no ``time_s``.
PLAUSIBLE_FPS = (1 / 3600, 1e6)


def header_fps(layout: AviLayout) -> float | None:
    """The frame rate the AVI's video stream header gives (``rate / scale``), None where it gives
    none or an implausible one (:data:`PLAUSIBLE_FPS`)."""
    rate, scale = layout.rate
    fps = rate / scale if rate and scale else 0.0
    return fps if PLAUSIBLE_FPS[0] <= fps <= PLAUSIBLE_FPS[1] else None


class _Chunk(NamedTuple):
    position: int  # of its header
    size: int


def avi_layout(path: Path) -> AviLayout | None:
    """The :class:`AviLayout` of ``path``; None when ``path`` is no AVI whose header lists a video stream."""
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _layout(data)
    except (OSError, ValueError, struct.error):
        return None


def _layout(data) -> AviLayout | None:
    if data[0:4] != b"RIFF" or data[8:12] != b"AVI ":
        return None
    streams, movis, idx1 = _streams_and_movi_lists(data)
    video = next((number for number, (kind, _) in enumerate(streams or []) if kind == b"vids"), None)
    if video is None or not movis:
        return None
    walk = _Walk(data, len(streams), b"%02d" % video)
    for start, end in movis:
        if not walk.movi(start, end):
            break
    index = _Idx1(data, walk.idx1 or idx1 or _last_idx1(data), movis[0][0] - 4, walk.tag, len(streams))
    listed = walk.odml or index.video
    if listed:
        others = [] if walk.odml else index.others
        return _Indexed(data, walk, listed, index.cut and not walk.odml, others).layout()._replace(listed=len(listed), rate=streams[video][1])
    broken = AviBreak(len(walk.chunks), walk.why(len(walk.chunks)), walk.cut) if walk.stop else None
    if broken is None and index.cut:
        broken = index_cut_off(len(walk.chunks), 0)
    empty = frozenset(count for count, chunk in enumerate(walk.chunks) if chunk.size == 0)
    return AviLayout(broken, empty, tuple(range(len(walk.chunks))), rate=streams[video][1])


def _chunk(data, position: int) -> tuple[bytes, int]:
    return bytes(data[position : position + 4]), struct.unpack("<I", data[position + 4 : position + 8])[0]


def _streams_and_movi_lists(data) -> tuple[list[bytes] | None, list[tuple[int, int]], int | None]:
    """Each stream's type (``strh``'s fccType: ``vids``, ``auds``...) from ``hdrl``, the ``(start,
    end)`` of every ``movi`` list's chunks: the first RIFF's and those of the OpenDML ``RIFF AVIX``
    extensions that follow it (files over 1 GB), and the position of the ``idx1`` chunk (None: none).
    A RIFF or ``movi`` size of 0 (left by a writer that could not seek back, as when recording to a
    pipe) runs to the end of the file. Stream chunks right after a ``movi`` list (written past the
    size it declares) belong to it: FFmpeg reads them as frames."""
    streams, movis, idx1, riff = None, [], None, 0
    while riff + 12 <= len(data) and data[riff : riff + 4] == b"RIFF" and data[riff + 8 : riff + 12] in (b"AVI ", b"AVIX"):
        riff_size = _chunk(data, riff)[1] or len(data) - riff - 8
        riff_end = min(riff + 8 + riff_size, len(data))
        position = riff + 12
        while position + 8 <= riff_end:
            tag, size = _chunk(data, position)
            kind = bytes(data[position + 8 : position + 12])
            if tag == b"LIST" and kind == b"movi":
                size = size or len(data) - position - 8
                movis.append((position + 12, min(position + 8 + size, len(data))))
            elif tag == b"LIST" and kind == b"hdrl":
                streams = _stream_types(data, position + 12, min(position + 8 + size, len(data)))
            elif tag == b"idx1":
                idx1 = position
            elif movis and movis[-1][1] == position and _stream_chunk(tag, len(streams or [])):
                movis[-1] = (movis[-1][0], min(position + 8 + size + (size & 1), len(data)))
            position += 8 + size + (size & 1)
        riff += 8 + riff_size + (riff_size & 1)
    return streams, movis, idx1


def _stream_chunk(tag: bytes, streams: int) -> bool:
    return tag[:2].isdigit() and int(tag[:2]) < streams and tag[2:] in _STREAM_CHUNKS


def _stream_types(data, start: int, end: int) -> list[tuple[bytes, tuple[int, int]]]:
    """Each stream's type (``strh``'s fccType) and ``(rate, scale)``: rate / scale per second."""
    types, position = [], start
    while position + 12 <= end:
        tag, size = _chunk(data, position)
        if tag == b"LIST" and data[position + 8 : position + 12] == b"strl" and data[position + 12 : position + 16] == b"strh":
            scale, rate = struct.unpack("<II", data[position + 40 : position + 48])
            types.append((bytes(data[position + 20 : position + 24]), (rate, scale)))
        position += 8 + size + (size & 1)
    return types


class _Walk:
    """The video chunks of ``movi`` lists in the order FFmpeg counts them (:attr:`chunks`), the
    OpenDML index entries of the video stream met on the way (:attr:`odml`), and where the walk
    stopped: at a damaged header (a tag that is no chunk of the file), a chunk past its list's end
    (``stop`` names which), or an ``idx1`` chunk inside the list (bytes removed before it: its
    position is kept)."""

    def __init__(self, data, streams: int, tag: bytes):
        self.data, self.streams, self.tag = data, streams, tag
        self.chunks: list[_Chunk] = []
        self.others: set[int] = set()  # where the other streams' chunks (audio...) are
        self.odml: list[_Chunk] = []
        self.idx1: int | None = None
        self.stop, self.cut = "", False

    def movi(self, start: int, end: int) -> bool:
        """Walk one ``movi`` list; False where the walk stops."""
        data, position = self.data, start
        while position + 8 <= end:
            tag, size = _chunk(data, position)
            if tag == b"idx1":
                self.idx1 = position
                return True
            if position + 8 + size > end:
                self.cut = end == len(data)
                self.stop = "past"
                return False
            if tag == b"LIST":
                position += 12  # a "rec " list: its chunks follow
                continue
            if tag[:2] == self.tag and tag[2:] not in (b"ix", b"pc") and tag[2:].isascii():
                self.chunks.append(_Chunk(position, size))  # FFmpeg takes any type of the stream's number found in place as its packet
            elif tag == b"ix" + self.tag:
                self.odml += _odml_entries(data, position + 8)
            elif _stream_chunk(tag, self.streams):
                self.others.add(position)
            elif not (tag == b"JUNK" or tag[:2] == b"ix"):
                self.stop = "header"
                return False
            position += 8 + size + (size & 1)
        if position < end:  # 1-7 bytes left: a chunk header cut off
            self.cut = end == len(data)
            self.stop = "past"
            return False
        return True

    def why(self, frame: int) -> str:
        """Words for where the walk stopped, at ``frame``."""
        if self.stop == "header":
            return f"a chunk header is damaged at frame {frame}"
        if self.cut:
            return f"a chunk at frame {frame} runs past the end of the file (cut off, or its size is damaged)"
        return f"the size of a chunk at frame {frame} is damaged"


def _odml_entries(data, start: int) -> list[_Chunk]:
    """The chunks an OpenDML standard index (``ix##``, index of chunks) lists: its entries give each
    chunk's data offset from a base and its size (the top bit flags a delta frame)."""
    longs, subtype, kind, count = struct.unpack("<HBBI", data[start : start + 8])
    if longs != 2 or subtype != 0 or kind != 1:
        return []
    base = struct.unpack("<Q", data[start + 12 : start + 20])[0]
    entries = start + 24
    return [_Chunk(base + offset - 8, size & 0x7FFFFFFF)
            for offset, size in struct.iter_unpack("<II", data[entries : entries + 8 * count])]


def _last_idx1(data) -> int | None:
    """The position of the last ``idx1`` chunk that fits the file, found by its tag: where bytes
    inserted into ``movi`` move it past the list's declared end, the walk lands inside a chunk."""
    position = data.rfind(b"idx1")
    while position >= 0:
        size = _chunk(data, position)[1] if position + 8 <= len(data) else 1
        if size % 16 == 0 and position + 8 + size <= len(data):
            return position
        position = data.rfind(b"idx1", 0, position)
    return None


class _Idx1:
    """The ``idx1`` index at ``position`` (None: none): the video chunks it lists in frame order
    (:attr:`video`), the other streams' chunks (:attr:`others`: audio...), and whether the file
    ends inside it (:attr:`cut`: a writer killed while writing it; its whole entries still hold)."""

    def __init__(self, data, position: int | None, movi: int, tag: bytes, streams: int):
        self.video: list[_Chunk] = []
        self.others: list[_Chunk] = []
        self.cut = False
        if position is None:
            return
        size = _chunk(data, position)[1]
        self.cut = position + 8 + size > len(data)
        entries = [(bytes(data[at : at + 4]), *struct.unpack("<II", data[at + 8 : at + 16]))
                   for at in range(position + 8, min(position + 8 + size, len(data)) - 15, 16)]
        base = _offset_base(data, entries, movi)
        self.video = [_Chunk(base + offset, size) for chunk_tag, offset, size in entries if chunk_tag in (tag + b"dc", tag + b"db")]
        self.others = [_Chunk(base + offset, size) for chunk_tag, offset, size in entries
                       if chunk_tag[:2] != tag and _stream_chunk(chunk_tag, streams)]


def _offset_base(data, entries: list[tuple[bytes, int, int]], movi: int) -> int:
    """Where ``idx1``'s offsets count from: the ``movi`` list's type (``movi``, the standard), or
    the file's start as some writers have it. The base is the one under which more entries find a
    chunk of their tag and size (FFmpeg's ``avi_read_idx1`` guesses from the first entry alone, so
    a damaged first frame chunk would move every frame); on a tie, ``movi``."""

    def found(base: int) -> int:
        return sum(_chunk(data, base + offset) == (tag, size) for tag, offset, size in entries if base + offset + 8 <= len(data))

    return 0 if found(0) > found(movi) else movi


def index_cut_off(frame: int, listed: int) -> AviBreak:
    """The break where the file ends inside the ``idx1`` index after ``listed`` frames' entries:
    the frames past them were numbered by counting chunks, as in a file without an index."""
    past = f"its {listed} whole entries place the frames they list, " if listed else ""
    return AviBreak(frame, f"the file ends inside the AVI's index (cut off while the index was written): {past}"
                           "later frames are numbered by counting chunks", cut=True, later="")


class _Indexed:
    """The frame number of each walked chunk, from the index ``listed`` (frame k's chunk at
    ``listed[k]``): a walked chunk is the frame whose listed position and size it has, once the
    bytes of other streams' chunks missing before it (``others``, as the index lists them: an audio
    chunk lost moves every later chunk, not the count of video chunks) are taken into account."""

    def __init__(self, data, walk: _Walk, listed: list[_Chunk], cut: bool = False, others: list[_Chunk] = ()):
        self.data, self.walk, self.listed, self.cut, self.others = data, walk, listed, cut, others
        self.frame_at = {chunk.position: frame for frame, chunk in enumerate(listed)}
        self.removed = 0  # bytes of other streams' chunks missing before the chunk looked up

    def layout(self) -> AviLayout:
        numbers, expected = [], 0
        for count, chunk in enumerate(self.walk.chunks):
            if self.cut and chunk.position > self.listed[-1].position:  # past the entries of a cut-off index: counted
                expected = max(expected, len(self.listed))
                numbers.append(expected)
                expected += 1
                continue
            frame = self._listed_frame(chunk, expected)
            damaged_size = self.walk.stop and count == len(self.walk.chunks) - 1  # the walk stops at the chunk after it
            if frame is None or frame < expected or (self.listed[frame].size != chunk.size and not damaged_size):
                return self._shifted(numbers, expected)
            numbers.append(frame)  # the listed frames before it are not in the file as video chunks: a gap
            expected = frame + 1
        if self.walk.stop:
            return self._layout(numbers, AviBreak(expected, self.walk.why(expected), self.walk.cut))
        if self.cut:
            return self._layout(numbers, index_cut_off(expected, len(self.listed)))
        for frame in range(expected, len(self.listed)):  # listed after the last walked chunk
            if not self._in_place(self.listed[frame]):
                return self._shifted(numbers, frame)
        return self._layout(numbers, None)

    def _listed_frame(self, chunk: _Chunk, expected: int) -> int | None:
        """The frame the index lists at the walked ``chunk``'s place, None where none is. Where
        none is at its position, it is frame ``expected`` if the other streams' chunks the index
        lists between frame ``expected - 1`` and it, and that the walk did not find, account for
        the bytes between them."""
        frame = self.frame_at.get(chunk.position + self.removed)
        if frame is not None or expected >= len(self.listed):
            return frame
        after = self.listed[expected - 1].position if expected else 0
        missing = sum(8 + other.size + (other.size & 1) for other in self.others
                      if after < other.position < self.listed[expected].position and other.position - self.removed not in self.walk.others)
        if missing and chunk.position + self.removed + missing == self.listed[expected].position:
            self.removed += missing
            return expected
        return None

    def _in_place(self, chunk: _Chunk) -> bool:
        """Whether a chunk header of the listed size stands at the listed position (a frame chunk
        re-tagged, ``JUNK`` written over it): a gap, not bytes removed or inserted."""
        position = chunk.position - self.removed
        return position + 8 <= len(self.data) and _chunk(self.data, position)[1] == chunk.size

    def _shifted(self, numbers: list[int], frame: int) -> AviLayout:
        """Numbers stop where frame ``frame``'s chunk is not where the index lists it: bytes were
        removed or inserted at or before it. Chunks of one size hide where (a chunk removed or
        written twice among them leaves every later one where the index lists a frame), so numbers
        stop at the first of the frames of that size before it."""
        sizes = [chunk.size for chunk in self.listed]
        last = first = min(frame, len(sizes) - 1)
        while first > 0 and sizes[first - 1] == sizes[first]:
            first -= 1
        if frame >= len(sizes):
            why = f"the file holds more video chunks than the {len(sizes)} its index lists (a chunk inserted or written twice)"
        else:
            why = f"frame {frame}'s chunk is not where the AVI's index lists it (bytes removed or inserted)"
        if first < last:
            why += f", and frames {first}-{last} have chunks of one size, so the index cannot tell at which of them"
        return self._layout([number for number in numbers if number < first], AviBreak(first, why))

    def _layout(self, numbers: list[int], broken: AviBreak | None) -> AviLayout:
        empty = frozenset(number for number, chunk in zip(numbers, self.walk.chunks) if chunk.size == 0)
        return AviLayout(broken, empty, tuple(numbers))
