"""Videos that are not what they say: cut off, or with a damaged frame in the middle.

The videos are MJPG AVIs written by OpenCV, 40 frames, frame i a flat grey of level 6 * i, so a
decoded frame says which it is. What OpenCV 4.14 reports for each damage (checked by hand):

- cut inside frame 20: 20 frames decode, then every read fails; ``CAP_PROP_FRAME_COUNT`` still
  announces 40 (the AVI header says so);
- frame 20's JPEG bytes overwritten: its read fails, the next read gives frame 21 with
  ``CAP_PROP_PTS`` 21 (the container's position), while counting decoded frames would say 20;
- frame 20's chunk header damaged (its tag, or its size): the demuxer resyncs to the next header
  it recognises and numbers the chunks by counting, so frame 21 comes with PTS 20 (a size too
  large by 100 bytes swallows frame 21's header instead, one by 2000 frames 21-26): reading stops
  at the damage, as no library says which frame comes next;
- an MKV or MP4 stores each frame's timestamp: a damaged block header in an MKV makes the demuxer
  skip to the next cluster (frame 36 here), which still comes with PTS 36;
- a variable frame rate is made by rewriting timestamps: an MKV block's (16 bits, ms, relative to
  its cluster), an MP4's table of frame durations (``stts``, at 1/90000 s as phones write it).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from feph_finetune.predict.inputs import open_input

FRAMES, DAMAGED, FPS = 40, 20, 10.0


def write_mjpg(path: Path, frames: int = FRAMES) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    for index in range(frames):
        writer.write(np.full((48, 64, 3), 6 * index, np.uint8))
    writer.release()
    return path


def frame_chunks(data: bytes) -> list[tuple[int, int]]:
    """``(offset, size)`` of each frame chunk (``00dc``) in the AVI's ``movi`` list, in order."""
    offset, chunks = data.index(b"movi") + 4, []
    while offset + 8 <= len(data) and data[offset : offset + 4] != b"idx1":
        size = struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        if data[offset : offset + 4] == b"00dc":
            chunks.append((offset, size))
        offset += 8 + size + (size & 1)
    return chunks


def damaged(tmp_path: Path, how: str) -> Path:
    data = bytearray(write_mjpg(tmp_path / "whole.avi").read_bytes())
    offset, size = frame_chunks(bytes(data))[DAMAGED]
    assert len(frame_chunks(bytes(data))) == FRAMES
    if how == "cut":
        data = data[: offset + 8 + size // 2]
    elif how == "payload":
        data[offset + 8 : offset + 8 + size] = b"\x55" * size
    elif how == "tag":
        data[offset : offset + 4] = b"xxxx"
    elif how == "header":
        data[offset : offset + 8] = bytes(8)
    elif how.startswith("size"):  # "size+100": the size field off by that much; "size": past the file's end
        delta = int(how[4:] or 2**31)
        data[offset + 4 : offset + 8] = struct.pack("<I", min(size + delta, 2**32 - 1))
    path = tmp_path / f"{how}.avi"
    path.write_bytes(bytes(data))
    return path


def without_index(path: Path) -> Path:
    """``path`` without its ``idx1`` index, and with the RIFF and ``movi`` sizes 0, as a writer
    that cannot seek back (recording to a pipe) leaves them."""
    data = bytearray(path.read_bytes())
    data = data[: data.rindex(b"idx1")]
    movi = data.index(b"movi") - 8
    data[4:8] = data[movi + 4 : movi + 8] = bytes(4)
    bare = path.with_name(f"{path.stem}-noindex.avi")
    bare.write_bytes(bytes(data))
    return bare


def indexed_afresh(data: bytes) -> bytes:
    """An AVI whose ``movi`` chunks were edited, with its ``movi`` and RIFF sizes and its ``idx1``
    index written again to match them, as the writer would have."""
    movi = data.index(b"movi")
    offset, entries = movi + 4, b""
    while data[offset : offset + 4] != b"idx1":
        size = struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        entries += data[offset : offset + 4] + struct.pack("<III", 0x10, offset - movi, size)
        offset += 8 + size + (size & 1)
    body = data[: movi - 4] + struct.pack("<I", offset - movi) + data[movi:offset] + b"idx1" + struct.pack("<I", len(entries)) + entries
    return body[:4] + struct.pack("<I", len(body) - 8) + body[8:]


def read(path: Path, every: int = 1):
    source = open_input(str(path), every)
    frames = list(source.frames())
    shown = {frame.index: round(float(frame.image.mean()) / 6) for frame in frames if frame.image is not None}
    return source, shown, [frame.problem for frame in frames if frame.problem is not None]


def read_timed(path: Path) -> tuple[dict[int, tuple[int, float]], list[str], list[str]]:
    """Each decoded frame's ``(grey level / 6, time_s)`` by its number, the problems, the notes."""
    frames = list(open_input(str(path)).frames())
    shown = {frame.index: (round(float(frame.image.mean()) / 6), frame.time_s) for frame in frames if frame.image is not None}
    return shown, [frame.problem for frame in frames if frame.problem], [frame.note for frame in frames if frame.note]


@pytest.mark.parametrize("index", [True, False], ids=["index", "no-index"])
def test_a_whole_video_reads_every_frame_without_problems(tmp_path, index):
    whole = write_mjpg(tmp_path / "whole.avi")
    source, shown, problems = read(whole if index else without_index(whole))
    assert source.announced == FRAMES
    assert shown == {index: index for index in range(FRAMES)}
    assert problems == []


def stopped(path: Path, last: int, why: str) -> str:
    return (f"{path}: decoding stopped at frame {last} ({last + 1} frames decoded) of the {FRAMES} the container announces: {why}; "
            "an AVI numbers its frames by counting chunks, so later frames cannot be numbered (left out)")


@pytest.mark.parametrize("every", [1, 3])
def test_a_video_cut_off_mid_frame_keeps_its_rows_and_says_where_it_stopped(tmp_path, every):
    path = damaged(tmp_path, "cut")
    _, shown, problems = read(path, every)
    assert shown == {index: index for index in range(0, DAMAGED, every)}
    assert problems == [stopped(path, DAMAGED - 1, f"a chunk at frame {DAMAGED} runs past the end of the file (cut off, or its size is damaged)")]


@pytest.mark.parametrize("every", [1, 3])
def test_a_corrupt_frame_in_the_middle_leaves_a_gap_and_later_frames_keep_their_numbers(tmp_path, every):
    path = damaged(tmp_path, "payload")
    _, shown, problems = read(path, every)
    assert shown == {index: index for index in range(0, FRAMES, every) if index != DAMAGED}
    assert problems == [f"{path}: frame {DAMAGED} could not be decoded (left out; later frames keep their numbers)"]


def swallowed(tmp_path: Path, delta: int) -> list[int]:
    """The frames whose headers lie in the ``delta`` bytes that frame 20's enlarged size claims."""
    chunks = frame_chunks(write_mjpg(tmp_path / "whole.avi").read_bytes())
    end = chunks[DAMAGED][0] + 8 + chunks[DAMAGED][1] + delta
    return [index for index, (offset, _) in enumerate(chunks) if index > DAMAGED and offset < end]


@pytest.mark.parametrize("how, first, why", [("tag", DAMAGED, "a chunk header is damaged at frame 20"),
                                             ("header", DAMAGED, "a chunk header is damaged at frame 20"),
                                             ("size", DAMAGED, "the size of a chunk at frame 20 is damaged"),
                                             ("size+100", DAMAGED + 1, "a chunk header is damaged at frame 21"),
                                             ("size+2000", DAMAGED + 1, "a chunk header is damaged at frame 21")])
@pytest.mark.parametrize("index", [True, False], ids=["index", "no-index"])
def test_a_damaged_chunk_header_stops_reading_there_and_keeps_the_rows_before(tmp_path, how, first, why, index):
    """Past a damaged header FFmpeg numbers the chunks it finds by counting (frame 21 comes as 20),
    so no row after it is written: the frames before keep their rows and the stop is named."""
    if how.startswith("size+"):
        assert swallowed(tmp_path, int(how[5:])), "the enlarged size swallows later headers (else the demuxer would not resync)"
    path = damaged(tmp_path, how) if index else without_index(damaged(tmp_path, how))
    if how == "size" and not index:  # the movi list now ends where the file does
        why = f"a chunk at frame {first} runs past the end of the file (cut off, or its size is damaged)"
    _, shown, problems = read(path)
    assert shown == {index: index for index in range(first)}
    assert problems == [stopped(path, first - 1, why)]


def mkv_frames(path: Path) -> tuple[bytearray, list[int]]:
    """A 40-frame MJPG Matroska file written at ``path`` by OpenCV (timestamps in ms, 100 ms
    apart), and the offset of each frame's JPEG in it. A SimpleBlock holds the track number (1
    byte here), its timestamp relative to its cluster (signed 16-bit big-endian ms) and a flags
    byte, then the frame: the timestamp lies at JPEG offset - 3."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    for index in range(FRAMES):
        writer.write(np.full((48, 64, 3), 6 * index, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [at for at in range(len(data) - 2) if data[at : at + 3] == b"\xff\xd8\xff"]  # each frame's JPEG
    assert len(starts) == FRAMES
    return data, starts


def damage_mkv_block(data: bytearray, starts: list[int], how: str) -> None:
    """Damage frame 20's block: its JPEG bytes ("payload") or its SimpleBlock header from the
    element ID on ("header")."""
    start, end = starts[DAMAGED], starts[DAMAGED + 1]
    block = data.rfind(b"\xa3", 0, start)  # the SimpleBlock ID before frame 20's JPEG
    if how == "payload":
        data[start : end - 16] = b"\x55" * (end - 16 - start)
    else:
        data[block : start + 4] = bytes(start + 4 - block)


def damaged_mkv(tmp_path: Path, how: str) -> Path:
    """A 40-frame MJPG Matroska file with frame 20's block damaged (:func:`damage_mkv_block`)."""
    data, starts = mkv_frames(tmp_path / "whole.mkv")
    damage_mkv_block(data, starts, how)
    damaged_path = tmp_path / f"{how}.mkv"
    damaged_path.write_bytes(bytes(data))
    return damaged_path


def retimed_mkv(tmp_path: Path, milliseconds: dict[int, int], how: str | None = None) -> Path:
    """The 40-frame MKV with frame i's timestamp set to ``milliseconds[i]`` (a variable frame
    rate, as a phone records), and frame 20's block damaged ``how`` (None: not damaged)."""
    data, starts = mkv_frames(tmp_path / "whole.mkv")
    for index, ms in milliseconds.items():  # a block's timestamp is relative to its cluster's: shift it
        relative = struct.unpack(">h", data[starts[index] - 3 : starts[index] - 1])[0]
        data[starts[index] - 3 : starts[index] - 1] = struct.pack(">h", relative + ms - round(1000 * index / FPS))
    if how:
        damage_mkv_block(data, starts, how)
    path = tmp_path / f"retimed-{how or 'whole'}.mkv"
    path.write_bytes(bytes(data))
    return path


def test_a_container_with_timestamps_keeps_frame_numbers_after_a_damaged_block(tmp_path):
    """An MKV's blocks carry their own timestamps: after a damaged block header the demuxer goes
    on at the next cluster, and the frames there keep their numbers (no stop, a named gap)."""
    path = damaged_mkv(tmp_path, "header")
    _, shown, problems = read(path)
    assert DAMAGED in set(range(FRAMES)) - set(shown), "the damage loses frames (else this test proves nothing)"
    resumed = min(index for index in shown if index > DAMAGED)
    assert shown == {index: index for index in [*range(DAMAGED), *range(resumed, FRAMES)]}
    assert problems == [f"{path}: frames {DAMAGED}-{resumed - 1} could not be decoded (left out; later frames keep their numbers)"]


def test_a_corrupt_frame_in_a_container_with_timestamps_leaves_a_gap(tmp_path):
    path = damaged_mkv(tmp_path, "payload")
    _, shown, problems = read(path)
    assert shown == {index: index for index in range(FRAMES) if index != DAMAGED}
    assert problems == [f"{path}: frame {DAMAGED} could not be decoded (left out; later frames keep their numbers)"]


#: Frames 10-12 recorded 60 ms late: off the 10 frames/s grid, and frame 10 nearer slot 11.
LATE = {10: 1060, 11: 1160, 12: 1260}


def variable_rate_note(path: Path, seconds: float, frame: int) -> str:
    return (f"{path}: the timestamps stop following the 10 frames/s grid at {seconds:.3f} s (a variable frame rate, or repeated "
            f"timestamps): from frame {frame} on, frames are numbered in decode order and time_s is each frame's own timestamp")


def phone_timestamps() -> dict[int, int]:
    """A phone's timestamps: every one a few ms off the grid (the camera's clock), and the frame
    rate halved from frame 25 on (poor light)."""
    jitter = {index: (0, 3, -1, 2, -2)[index % 5] for index in range(FRAMES)}  # frame 0 at 0: times count from it
    return {index: (100 * index if index < 25 else 2500 + 200 * (index - 25)) + jitter[index] for index in range(FRAMES)}


@pytest.mark.parametrize("milliseconds, first", [(LATE, 10), ({11: 1000}, 11), (phone_timestamps(), 1)], ids=["late", "repeated", "phone"])
def test_a_variable_frame_rate_numbers_frames_in_decode_order_with_their_own_timestamps(tmp_path, milliseconds, first):
    """No gap is made up where timestamps leave the grid (frame 10 at 1.06 s is nearer slot 11;
    two frames at 1.0 s share slot 10): up to the first frame off the grid (or repeating a
    slot) a frame's number is its slot, from there on its place in decode order, said in one
    note; ``time_s`` is each frame's own timestamp."""
    path = retimed_mkv(tmp_path, milliseconds)
    shown, problems, notes = read_timed(path)
    times = {index: milliseconds.get(index, 100 * index) / 1000 for index in range(FRAMES)}
    assert shown == {index: (index, pytest.approx(times[index], abs=1e-9)) for index in range(FRAMES)}  # 1e-9: float noise only
    assert problems == []
    assert notes == [variable_rate_note(path, times[first], first)]


@pytest.mark.parametrize("how", ["payload", "header"])
def test_damage_in_a_variable_frame_rate_video_is_named_and_later_frames_keep_their_numbers(tmp_path, how):
    """A frame that fails to decode counts as one; frames the demuxer skips (a damaged block
    header: on to the next cluster) are counted from the time without frames at the nominal rate."""
    path = retimed_mkv(tmp_path, LATE, how)
    shown, problems, notes = read_timed(path)
    resumed = min(index for index in shown if index > DAMAGED)
    assert {index: level for index, (level, _) in shown.items()} == {index: index for index in [*range(DAMAGED), *range(resumed, FRAMES)]}
    assert shown[resumed][1] == pytest.approx(resumed / FPS, abs=1e-9)  # 1e-9: float noise only
    lost = f"frame {DAMAGED}" if how == "payload" else f"frames {DAMAGED}-{resumed - 1}"
    counted = "" if how == "payload" else f"; {(resumed - DAMAGED + 1) / FPS:.3f} s without frames, counted at 10 frames/s"
    assert (how == "payload") == (resumed == DAMAGED + 1), "a damaged header loses several frames (else this test proves nothing)"
    assert problems == [f"{path}: {lost} could not be decoded (left out; later frames keep their numbers{counted})"]
    assert notes == [variable_rate_note(path, 1.06, 10)]


def mp4_box(data: bytearray, *path: bytes) -> list[int]:
    """The offsets of the boxes along ``path`` (``b"moov", b"trak", ...``), from the outermost."""
    offsets, position, end = [], 0, len(data)
    for kind in path:
        while data[position + 4 : position + 8] != kind:
            position += struct.unpack(">I", data[position : position + 4])[0]
            assert position < end, f"no {kind} box"
        offsets.append(position)
        position, end = position + 8, position + struct.unpack(">I", data[position : position + 4])[0]
    return offsets


def phone_mp4(tmp_path: Path, ticks: list[int]) -> Path:
    """A 40-frame MJPEG MP4 as a phone writes it: time base 1/90000 s, frame i lasting
    ``ticks[i]`` (a sample-duration table, ``stts``, of one entry per frame), so FFmpeg announces
    the average frame rate. OpenCV writes one entry (every frame the same); the table grows, and
    so do the boxes holding it (``moov`` is last in the file: no offset moves); the durations
    follow (an edit list shorter than the frames would hide the last ones)."""
    path = tmp_path / "constant.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))  # stored as mp4v, decoded as MJPEG
    for index in range(FRAMES):
        writer.write(np.full((48, 64, 3), 6 * index, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    *holders, stts = mp4_box(data, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts")
    table = struct.pack(">4sII", b"stts", 0, len(ticks)) + b"".join(struct.pack(">II", 1, tick) for tick in ticks)
    old = struct.unpack(">I", data[stts : stts + 4])[0]
    data[stts : stts + old] = struct.pack(">I", 4 + len(table)) + table
    for holder in holders:
        data[holder : holder + 4] = struct.pack(">I", struct.unpack(">I", data[holder : holder + 4])[0] + 4 + len(table) - old)
    mdhd = mp4_box(data, b"moov", b"trak", b"mdia", b"mdhd")[-1]
    data[mdhd + 20 : mdhd + 28] = struct.pack(">II", 90000, sum(ticks))  # version 0: timescale, duration
    mvhd = mp4_box(data, b"moov", b"mvhd")[-1]
    duration = struct.pack(">I", round(sum(ticks) * struct.unpack(">I", data[mvhd + 20 : mvhd + 24])[0] / 90000))  # in the movie's timescale
    tkhd, elst = mp4_box(data, b"moov", b"trak", b"tkhd")[-1], mp4_box(data, b"moov", b"trak", b"edts", b"elst")[-1]
    for at in (mvhd + 24, tkhd + 28, elst + 16):  # the movie's, the track's, and the edit list's one segment's duration
        data[at : at + 4] = duration
    phone = tmp_path / "phone.mp4"
    phone.write_bytes(bytes(data))
    return phone


def test_a_phone_mp4_with_a_variable_frame_rate_is_numbered_in_decode_order(tmp_path):
    """The camera's clock (frames 9000 +- 40 ticks of 1/90000 s) and poor light (the rate halved
    from frame 25 on): FFmpeg announces the average rate, 7.3 frames/s, off which every
    timestamp lies. No gap is made up, the frame count the container announces is met."""
    jitter = (0, 37, -12, 25, -40, 8, -31, 19)
    ticks = [(9000 if index < 25 else 18000) + jitter[index % len(jitter)] for index in range(FRAMES)]
    path = phone_mp4(tmp_path, ticks)
    source = open_input(str(path))
    shown, problems, notes = read_timed(path)
    times = np.cumsum([0, *ticks[:-1]]) / 90000
    assert source.announced == FRAMES and source.fps == pytest.approx(FRAMES / (sum(ticks) / 90000))  # float noise only
    assert shown == {index: (index, pytest.approx(times[index], abs=1e-6)) for index in range(FRAMES)}  # time_s is given to the microsecond
    assert problems == []
    assert notes == [f"{path}: the timestamps stop following the {source.fps:g} frames/s grid at {times[1]:.3f} s (a variable frame rate, or repeated "
                     "timestamps): from frame 1 on, frames are numbered in decode order and time_s is each frame's own timestamp"]


def test_ffmpegs_own_log_lines_never_reach_the_console(tmp_path):
    """A chunk 100 bytes short makes FFmpeg's MJPEG decoder log "[mjpeg @ 0x...] overread 8" on
    file descriptor 2 (C code, past Python's sys.stderr): reading it through ``open_input``
    prints nothing there."""
    import subprocess
    import sys

    path = damaged(tmp_path, "size-100")
    read_it = "import sys; from feph_finetune.predict.inputs import open_input; print(len(list(open_input(sys.argv[1]).frames())))"
    bare = "import sys, cv2; capture = cv2.VideoCapture(sys.argv[1]); print(sum(capture.grab() for _ in range(50)))"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OPENCV_")}
    unsilenced = subprocess.run([sys.executable, "-c", bare, str(path)], capture_output=True, text=True, env=environment, timeout=120)
    assert "@ 0x" in unsilenced.stderr, "the damage makes FFmpeg log (else this test proves nothing)"
    silenced = subprocess.run([sys.executable, "-c", read_it, str(path)], capture_output=True, text=True, env=environment, timeout=120)
    assert silenced.returncode == 0 and silenced.stdout.strip() == str(len(list(open_input(str(path)).frames()))), silenced.stderr
    assert silenced.stderr == ""


def test_a_badly_damaged_video_names_five_gaps_and_counts_the_rest(tmp_path):
    data = bytearray(write_mjpg(tmp_path / "whole.avi").read_bytes())
    for offset, size in frame_chunks(bytes(data))[1::2]:  # every odd frame
        data[offset + 8 : offset + 8 + size] = b"\x55" * size
    path = tmp_path / "damaged.avi"
    path.write_bytes(bytes(data))
    _, shown, problems = read(path)
    assert shown == {index: index for index in range(0, FRAMES, 2)}
    assert problems[:5] == [f"{path}: frame {index} could not be decoded (left out; later frames keep their numbers)" for index in (1, 3, 5, 7, 9)]
    assert problems[5:] == [f"{path}: 14 more frames in 14 more places could not be decoded (left out)",
                            f"{path}: decoding stopped at frame 38 (20 frames decoded), but the container announces 40: the file is cut off or damaged"]


def announcing(path: Path, frames: int) -> Path:
    """The AVI at ``path`` with its header announcing ``frames`` frames (``avih``'s total frames and
    the video stream's ``strh`` length), though it holds fewer."""
    data = bytearray(path.read_bytes())
    for tag, at in ((b"avih", 16), (b"strh", 32)):
        field = data.index(tag) + 8 + at
        data[field : field + 4] = struct.pack("<I", frames)
    announced = path.with_name(f"announcing-{frames}.avi")
    announced.write_bytes(bytes(data))
    return announced


@pytest.mark.parametrize("announced", [100_000, 2_000_000_000])
@pytest.mark.parametrize("index", [True, False], ids=["index", "no-index"])
def test_a_header_announcing_a_huge_frame_count_is_a_claim_and_reading_stops_soon(tmp_path, index, announced):
    """2e9 announced frames after 40 real ones: reading gives up after FAILED_READS failed reads in
    a row (else 2e9 of them: hours), and says where decoding stopped of how many announced."""
    from feph_finetune.predict.inputs import FAILED_READS

    whole = write_mjpg(tmp_path / "whole.avi")
    path = announcing(whole if index else without_index(whole), announced)
    source = open_input(str(path))
    assert source.announced == announced, "the header is read (else this test proves nothing)"
    frames = []
    for frame in source.frames():
        frames.append(frame)
        assert len(frames) <= FRAMES + 2, "reading goes on past the real frames"
    assert {frame.index for frame in frames if frame.image is not None} == set(range(FRAMES))
    assert [frame.problem for frame in frames if frame.problem] == [
        f"{path}: decoding stopped at frame {FRAMES - 1} ({FRAMES} frames decoded) of the {announced} the container announces: {FAILED_READS} reads "
        "in a row failed after it (the file is cut off or damaged, or its header announces frames it does not hold)"]


SHIFTED = {index: 100 * index + 5000 for index in range(1, FRAMES)}


@pytest.mark.parametrize("milliseconds, note", [
    ({DAMAGED: 5000}, "frame 20's timestamp (5.000 s) lies outside the times of the frames around it (19 and the next)"),
    ({DAMAGED: 2500}, "frame 20's timestamp (2.500 s) lies outside the times of the frames around it (19 and the next)"),
    ({DAMAGED: 1500}, "frame 20's timestamp (1.500 s) lies outside the times of the frames around it (19 and the next)"),
    (SHIFTED, "frame 0's timestamp (0.000 s) lies 50 frames before the grid the later frames follow (frame 1 at 5.100 s, past the 40 frames"),
], ids=["jump", "small-jump", "back", "all-but-frame-0-shifted"])
def test_a_lone_timestamp_out_of_place_is_damage_to_that_frame_and_invents_no_loss(tmp_path, milliseconds, note):
    """One frame's timestamp that the next frame contradicts (stamped past it, or before the
    previous frame), or frame 0 stamped far before a grid all later frames follow: every frame
    keeps its place on the grid, nothing counts as lost, one note names the frame (frame 1 stamped
    past the frame count the container announces: no frames can have been lost between 0 and 1)."""
    path = retimed_mkv(tmp_path, milliseconds)
    shown, problems, notes = read_timed(path)
    assert shown == {index: (index, pytest.approx(index / FPS, abs=1e-9)) for index in range(FRAMES)}  # 1e-9: float noise only
    assert problems == []
    assert len(notes) == 1 and notes[0].startswith(f"{path}: {note}")


@pytest.mark.parametrize("index", [True, False], ids=["index", "no-index"])
def test_an_empty_frame_chunk_is_a_dropped_frame_not_damage(tmp_path, index):
    """Capture software marks a frame it dropped with a ``00dc`` chunk of size 0: no row for it,
    no problem (the input is read in full), one note; later frames keep their numbers."""
    data = write_mjpg(tmp_path / "whole.avi").read_bytes()
    offset, size = frame_chunks(data)[DAMAGED]
    path = tmp_path / "dropped.avi"
    path.write_bytes(indexed_afresh(data[:offset] + b"00dc" + bytes(4) + data[offset + 8 + size + (size & 1) :]))
    path = path if index else without_index(path)
    shown, problems, notes = read_timed(path)
    assert {index: level for index, (level, _) in shown.items()} == {index: index for index in range(FRAMES) if index != DAMAGED}
    assert problems == []
    assert notes == [f"{path}: frame {DAMAGED} is empty in the file (a frame the writer dropped; players show the previous one again): no row"]


def test_frames_lost_right_after_frame_0_are_a_gap_not_a_shifted_grid(tmp_path):
    """Frame 1's block header damaged: the demuxer goes on at the next cluster, within the frame
    count the container announces, so the frames there keep their numbers and the loss is named."""
    data, starts = mkv_frames(tmp_path / "whole.mkv")
    block = data.rfind(b"\xa3", 0, starts[1])
    data[block : starts[1] + 4] = bytes(starts[1] + 4 - block)
    path = tmp_path / "lost-after-0.mkv"
    path.write_bytes(bytes(data))
    _, shown, problems = read(path)
    resumed = min(index for index in shown if index > 0)
    assert resumed > 1 and shown == {index: index for index in [0, *range(resumed, FRAMES)]}
    assert problems == [f"{path}: frames 1-{resumed - 1} could not be decoded (left out; later frames keep their numbers)"]


def write_mp4v(path: Path, frames: int = FRAMES) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 48))
    for index in range(frames):
        writer.write(np.full((48, 64, 3), 6 * index, np.uint8))
    writer.release()
    return path


@pytest.fixture
def conversions(monkeypatch) -> list[int]:
    """Counts the frames converted to RGB (one entry per conversion) through the reader's seam."""
    from feph_finetune.predict import inputs

    counted, convert = [], inputs._retrieve_rgb
    monkeypatch.setattr(inputs, "_retrieve_rgb", lambda capture: counted.append(1) or convert(capture))
    return counted


@pytest.mark.parametrize("write", [write_mjpg, write_mp4v], ids=["mjpg-avi", "mp4v-mp4"])
@pytest.mark.parametrize("every", [1, 4, 7])
def test_every_converts_only_the_frames_it_keeps(tmp_path, conversions, write, every):
    path = write(tmp_path / f"whole{'.avi' if write is write_mjpg else '.mp4'}")
    _, shown, problems = read(path, every)
    assert set(shown) == set(range(0, FRAMES, every)) and problems == []
    assert all(abs(level - index) <= 1 for index, level in shown.items())  # 1 step (6 grey levels): mp4v is lossy
    assert len(conversions) == len(range(0, FRAMES, every))


def every_frames(path: Path, every: int) -> list[tuple]:
    """What ``predict`` would write of ``path`` read with ``every``: per frame its number, grey
    level, time_s, problem and note."""
    return [(frame.index, None if frame.image is None else round(float(frame.image.mean()) / 6), frame.time_s, frame.problem, frame.note)
            for frame in open_input(str(path), every).frames()]


def kept_by(rows: list[tuple], every: int, path: Path) -> list[tuple]:
    """The rows of ``every = 1`` that ``every`` keeps: frames (decoded, or one that failed to
    decode) of a number that is a multiple of it; every gap, note and ending problem."""
    def is_frame(index, level, problem) -> bool:
        return level is not None or problem == f"{path}: frame {index} could not be decoded (left out)"
    return [row for row in rows if not is_frame(row[0], row[1], row[3]) or row[0] % every == 0]


VIDEOS = {
    "cut-avi": lambda tmp_path: damaged(tmp_path, "cut"),
    "payload-avi": lambda tmp_path: damaged(tmp_path, "payload"),
    "header-avi": lambda tmp_path: damaged(tmp_path, "header"),
    "header-mkv": lambda tmp_path: damaged_mkv(tmp_path, "header"),
    "late-mkv": lambda tmp_path: retimed_mkv(tmp_path, LATE),
    "late-header-mkv": lambda tmp_path: retimed_mkv(tmp_path, LATE, "header"),
    "jump-mkv": lambda tmp_path: retimed_mkv(tmp_path, {DAMAGED: 5000}),
    "back-mkv": lambda tmp_path: retimed_mkv(tmp_path, {DAMAGED: 1500}),
    "shifted-mkv": lambda tmp_path: retimed_mkv(tmp_path, SHIFTED),
    "last-past-the-end-mkv": lambda tmp_path: retimed_mkv(tmp_path, {FRAMES - 1: 9000}),
    "phone-mkv": lambda tmp_path: retimed_mkv(tmp_path, phone_timestamps()),
    "phone-mp4": lambda tmp_path: phone_mp4(tmp_path, [9000 + (37, -12, 25)[index % 3] for index in range(FRAMES)]),
}


@pytest.mark.parametrize("every", [2, 3, 7])
@pytest.mark.parametrize("video", VIDEOS)
def test_every_writes_the_rows_of_every_frame_that_it_keeps_and_converts_fewer(tmp_path, conversions, video, every):
    """Skipping a frame's conversion changes no row: reading with ``every`` gives exactly the rows
    of reading every frame that ``every`` keeps, with each gap, note and problem, on damaged and
    variable-rate videos too (where a frame's number waits for the next frame's timestamp)."""
    path = VIDEOS[video](tmp_path)
    everything = every_frames(path, 1)
    converted_all = len(conversions)
    conversions.clear()
    assert every_frames(path, every) == kept_by(everything, every, path)
    assert len(conversions) < converted_all


@pytest.mark.parametrize("milliseconds", [{FRAMES - 1: 9000}, {FRAMES - 1: 1500}], ids=["past-the-end", "back"])
def test_a_last_timestamp_out_of_place_is_damage_to_that_frame(tmp_path, milliseconds):
    """The last frame has no next frame to contradict its timestamp; stamped past the frames the
    container announces, or before the frame before it, it is still damage to that one frame: every
    frame keeps its place on the grid, the count announced is met, one note names the frame."""
    path = retimed_mkv(tmp_path, milliseconds)
    shown, problems, notes = read_timed(path)
    assert shown == {index: (index, pytest.approx(index / FPS, abs=1e-9)) for index in range(FRAMES)}  # 1e-9: float noise only
    assert problems == []
    assert notes == [f"{path}: frame {FRAMES - 1}'s timestamp ({milliseconds[FRAMES - 1] / 1000:.3f} s) lies outside the times of the frames around it "
                     f"({FRAMES - 2} and the video's end): taken as damaged, it is numbered by its place and time_s is that place's time (so are any later such frames)"]


def test_frames_lost_at_the_end_of_a_variable_frame_rate_video_are_named(tmp_path):
    """A variable-rate MKV cut off at frame 30: its frames are numbered in decode order, so the
    count it announces (its duration times the nominal rate) cannot be compared with them, but its
    duration can with the last frame's timestamp: more than 5 nominal intervals are missing."""
    data, starts = mkv_frames(tmp_path / "whole.mkv")
    for index, ms in LATE.items():  # as retimed_mkv: off the grid from frame 10 on
        relative = struct.unpack(">h", data[starts[index] - 3 : starts[index] - 1])[0]
        data[starts[index] - 3 : starts[index] - 1] = struct.pack(">h", relative + ms - round(1000 * index / FPS))
    path = tmp_path / "late-cut.mkv"
    path.write_bytes(bytes(data[: starts[30] - 16]))  # cut before frame 30's block
    source = open_input(str(path))
    shown, problems, notes = read_timed(path)
    last = max(shown)
    assert source.announced == FRAMES and set(shown) == set(range(last + 1)) and last < 30, "the cut loses the last frames (else this test proves nothing)"
    assert notes == [variable_rate_note(path, 1.06, 10)]
    assert problems == [f"{path}: decoding stopped at frame {last} ({last + 1} frames decoded) at {shown[last][1]:.3f} s, but the container's 40 frames at "
                        f"10 frames/s run to 4.000 s: the last {4 - shown[last][1]:.3f} s are missing (the file is cut off or damaged)"]


def write_varied_mjpg(path: Path) -> Path:
    """A 40-frame MJPG AVI whose frame i is grey 6 * i below a noise strip as wide as 8 * (1 + i % 5)
    pixels: chunks of differing sizes, as a camera's are (flat frames compress to one size)."""
    noise = np.random.default_rng(0).integers(0, 256, (8, 40, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    for index in range(FRAMES):
        image = np.full((48, 64, 3), 6 * index, np.uint8)
        image[:8, : 8 * (1 + index % 5)] = noise[:, : 8 * (1 + index % 5)]
        writer.write(image)
    writer.release()
    return path


def chunk_edited(tmp_path: Path, how: str, write=write_varied_mjpg) -> Path:
    """The AVI with frame 20's chunk ``removed``, re-tagged ``JUNK`` or written ``twice``, its
    ``idx1`` index and header as they were."""
    data = write(tmp_path / "whole.avi").read_bytes()
    offset, size = frame_chunks(data)[DAMAGED]
    end = offset + 8 + size + (size & 1)
    edited = {"removed": data[:offset] + data[end:], "junk": data[:offset] + b"JUNK" + data[offset + 4 :],
              "twice": data[:end] + data[offset:], "wb": data[:offset] + b"00wb" + data[offset + 4 :]}[how]
    path = tmp_path / f"{how}.avi"
    path.write_bytes(edited)
    return path


def read_levels(path: Path) -> tuple[dict[int, int], list[str]]:
    """Each decoded frame's grey level / 6 (below the noise strip) by its number, and the problems."""
    frames = list(open_input(str(path)).frames())
    return ({frame.index: round(float(frame.image[16:].mean()) / 6) for frame in frames if frame.image is not None},
            [frame.problem for frame in frames if frame.problem is not None])


@pytest.mark.parametrize("how, shown, why", [
    ("junk", [index for index in range(FRAMES) if index != DAMAGED], None),
    ("removed", range(DAMAGED), "frame 20's chunk is not where the AVI's index lists it (bytes removed or inserted)"),
    ("twice", range(DAMAGED + 1), "frame 21's chunk is not where the AVI's index lists it (bytes removed or inserted)")], ids=["junk", "removed", "twice"])
def test_a_frame_chunk_removed_retagged_or_written_twice_is_found_by_the_index(tmp_path, how, shown, why):
    """FFmpeg counts the video chunks it finds, so after such a chunk every later frame would
    come one number off; the ``idx1`` index says which chunk each frame is: a re-tagged frame is a
    gap and later frames keep their numbers, chunks moved by bytes removed or inserted stop the
    numbers at the first frame out of place."""
    path = chunk_edited(tmp_path, how)
    levels, problems = read_levels(path)
    assert levels == {index: index for index in shown}
    if why is None:
        assert problems == [f"{path}: frame {DAMAGED} could not be decoded (left out; later frames keep their numbers)"]
    else:
        assert problems == [stopped(path, shown[-1], why)]


def test_a_frame_chunk_typed_as_audio_is_still_the_frame_ffmpeg_reads_it_as(tmp_path):
    """FFmpeg takes a chunk of the video stream's number found in place as a frame whatever its
    type (``00wb``): it is frame 20, as the index says, and nothing is missing."""
    levels, problems = read_levels(chunk_edited(tmp_path, "wb"))
    assert levels == {index: index for index in range(FRAMES)}
    assert problems == []


@pytest.mark.parametrize("how", ["removed", "twice"])
def test_chunks_of_one_size_never_give_a_row_another_frames_number(tmp_path, how):
    """Among flat frames (chunks of one size, or nearly) a chunk removed or written twice leaves
    later ones where the index lists other frames: no row may carry another frame's number, and
    the place is named as a range."""
    path = chunk_edited(tmp_path, how, write_mjpg)
    levels, problems = read_levels(path)
    assert all(index == level for index, level in levels.items())
    assert len(problems) == 1 and "not where the AVI's index lists it (bytes removed or inserted)" in problems[0]


def test_more_frames_than_the_header_announces_are_said(tmp_path):
    """Without an index a chunk written twice cannot be placed, but the frame count past the
    header's is said (the input counts as not read in full)."""
    path = without_index(chunk_edited(tmp_path, "twice"))
    _, problems = read_levels(path)
    assert problems == [f"{path}: the AVI holds {FRAMES + 1} frames, but its header announces {FRAMES}: frame chunks were inserted or written "
                        "twice, or the header's count is wrong; the file cannot tell which, so frame numbers may be off from the first inserted "
                        "chunk on"]


def test_an_avi_cut_off_by_a_killed_writer_is_called_cut_off(tmp_path):
    """A writer killed while recording leaves no index, and sizes and frame counts of 0 in its
    headers: the chunk that runs past the end of the file still says the file is cut off."""
    data = bytearray(damaged(tmp_path, "cut").read_bytes())
    movi, avih, strh = data.index(b"movi") - 8, data.index(b"avih") + 8, data.index(b"strh") + 8
    data[4:8] = data[movi + 4 : movi + 8] = data[avih + 16 : avih + 20] = data[strh + 32 : strh + 36] = bytes(4)  # sizes, frame counts
    path = tmp_path / "killed.avi"
    path.write_bytes(bytes(data))
    source, shown, problems = read(path)
    assert source.announced is None
    assert shown == {index: index for index in range(DAMAGED)}
    assert problems == [f"{path}: decoding stopped at frame {DAMAGED - 1} ({DAMAGED} frames decoded): a chunk at frame {DAMAGED} runs past the end "
                        "of the file (cut off, or its size is damaged); an AVI numbers its frames by counting chunks, so later frames cannot be numbered (left out)"]


def with_odml_index(path: Path) -> Path:
    """``path`` with its ``idx1`` index replaced by an OpenDML standard index (an ``ix00`` chunk at
    the end of ``movi``, base 0, each entry a chunk's data offset and size), as FFmpeg's muxer
    writes one for files that may grow past 1 GB."""
    data = path.read_bytes()
    chunks = frame_chunks(data)
    index = struct.pack("<HBBI4sQI", 2, 0, 1, len(chunks), b"00dc", 0, 0) + b"".join(struct.pack("<II", offset + 8, size) for offset, size in chunks)
    idx1, movi = data.rindex(b"idx1"), data.index(b"movi")
    body = data[: movi - 4] + struct.pack("<I", idx1 + 8 + len(index) - movi) + data[movi:idx1] + b"ix00" + struct.pack("<I", len(index)) + index
    odml = path.with_name(f"{path.stem}-odml.avi")
    odml.write_bytes(body[:4] + struct.pack("<I", len(body) - 8) + body[8:])
    return odml


def test_an_opendml_index_places_the_frames_as_idx1_does(tmp_path):
    """A frame chunk re-tagged ``JUNK`` in a file indexed by ``ix00`` (no ``idx1``): a gap, and
    later frames keep their numbers."""
    path = tmp_path / "junk-odml.avi"
    with_odml_index(write_varied_mjpg(tmp_path / "whole.avi")).rename(path)
    data = bytearray(path.read_bytes())
    offset = frame_chunks(bytes(data))[DAMAGED][0]
    data[offset : offset + 4] = b"JUNK"
    path.write_bytes(bytes(data))
    levels, problems = read_levels(path)
    assert levels == {index: index for index in range(FRAMES) if index != DAMAGED}
    assert problems == [f"{path}: frame {DAMAGED} could not be decoded (left out; later frames keep their numbers)"]


@pytest.mark.parametrize("left", [1, 5, 7])
def test_an_avi_cut_off_inside_a_chunk_header_is_called_cut_off(tmp_path, left):
    """A killed writer's AVI (no index, sizes and frame counts 0) that ends 1-7 bytes into a chunk
    header: those bytes cannot be a whole chunk, so the file is cut off there, as inside its data."""
    data = bytearray(write_mjpg(tmp_path / "whole.avi").read_bytes())
    data = data[: frame_chunks(bytes(data))[DAMAGED][0] + left]
    movi, avih, strh = data.index(b"movi") - 8, data.index(b"avih") + 8, data.index(b"strh") + 8
    data[4:8] = data[movi + 4 : movi + 8] = data[avih + 16 : avih + 20] = data[strh + 32 : strh + 36] = bytes(4)
    path = tmp_path / "killed.avi"
    path.write_bytes(bytes(data))
    _, shown, problems = read(path)
    assert shown == {index: index for index in range(DAMAGED)}
    assert problems == [f"{path}: decoding stopped at frame {DAMAGED - 1} ({DAMAGED} frames decoded): a chunk at frame {DAMAGED} runs past the end "
                        "of the file (cut off, or its size is damaged); an AVI numbers its frames by counting chunks, so later frames cannot be numbered (left out)"]


def with_absolute_offsets(data: bytes) -> bytes:
    """The AVI with its ``idx1`` offsets counted from the file's start, as some writers have them."""
    data, movi = bytearray(data), data.index(b"movi")
    idx1 = data.rindex(b"idx1")
    for at in range(idx1 + 8, len(data) - 15, 16):
        data[at + 8 : at + 12] = struct.pack("<I", struct.unpack("<I", data[at + 8 : at + 12])[0] + movi)
    return bytes(data)


@pytest.mark.parametrize("damaged_frame", [0, DAMAGED])
def test_absolute_index_offsets_are_found_even_where_frame_0_is_damaged(tmp_path, damaged_frame):
    """Whether ``idx1`` counts from ``movi`` or from the file's start is told by where most entries
    find their chunk, not by the first alone: frame 0 re-tagged ``JUNK`` is one gap. (Flat frames:
    FFmpeg's own guess of the base, from the first chunk it finds, misreads chunks of varied sizes
    after a damaged frame 0, whichever base the index uses.)"""
    data = bytearray(with_absolute_offsets(write_mjpg(tmp_path / "whole.avi").read_bytes()))
    offset = frame_chunks(bytes(data))[damaged_frame][0]
    data[offset : offset + 4] = b"JUNK"
    path = tmp_path / "absolute.avi"
    path.write_bytes(bytes(data))
    levels, problems = read_levels(path)
    assert levels == {index: index for index in range(FRAMES) if index != damaged_frame}
    assert problems == [f"{path}: frame {damaged_frame} could not be decoded (left out; later frames keep their numbers)"]


@pytest.mark.parametrize("entries", [0, 7])
def test_an_avi_cut_off_inside_its_index_keeps_every_whole_frame_and_says_the_index_is_cut_off(tmp_path, entries):
    """A writer killed while writing ``idx1``: its whole entries place their frames, the frames
    past them are numbered by counting (as without an index), and the problem says the index is
    cut off, not that chunks were inserted."""
    data = write_varied_mjpg(tmp_path / "whole.avi").read_bytes()
    path = tmp_path / "index-cut.avi"
    path.write_bytes(data[: data.rindex(b"idx1") + 8 + 16 * entries + 5])
    levels, problems = read_levels(path)
    assert levels == {index: index for index in range(FRAMES)}
    past = f"its {entries} whole entries place the frames they list, " if entries else ""
    assert problems == [f"{path}: decoding stopped at frame {FRAMES - 1} ({FRAMES} frames decoded) of the {FRAMES} the container announces: the file ends "
                        f"inside the AVI's index (cut off while the index was written): {past}later frames are numbered by counting chunks"]


def _ebml_number(data: bytes, at: int, marker: bool) -> tuple[int, int]:
    """An EBML variable-size number at ``at``: its value (``marker``: with the length marker, as
    element IDs are written) and its length in bytes."""
    length = 9 - data[at].bit_length()
    value = int.from_bytes(data[at : at + length], "big")
    return (value if marker else value & ((1 << (7 * length)) - 1)), length


def _ebml_children(data: bytes, start: int, end: int):
    """``(id, at, size_at, size_length, data_at, size)`` of each element from ``start`` to ``end``."""
    at = start
    while at < end:
        element, id_length = _ebml_number(data, at, True)
        size, size_length = _ebml_number(data, at + id_length, False)
        yield element, at, at + id_length, size_length, at + id_length + size_length, size
        at += id_length + size_length + size


def mkv_blocks(data: bytes) -> tuple[tuple[int, int, int], list[tuple[int, int, tuple[int, int, int]]]]:
    """The Segment's ``(size_at, size_length, size)`` and each frame's SimpleBlock as ``(start,
    end, its cluster's (size_at, size_length, size))``, in stored order."""
    segment = next(element for element in _ebml_children(data, 0, len(data)) if element[0] == 0x18538067)
    blocks = []
    for element, _, size_at, size_length, start, size in _ebml_children(data, segment[4], segment[4] + segment[5]):
        if element == 0x1F43B675:  # a Cluster
            blocks += [(at, body + length, (size_at, size_length, size))
                       for child, at, _, _, body, length in _ebml_children(data, start, start + size) if child == 0xA3]
    return segment[2:4] + segment[5:6], blocks


def _set_ebml_size(data: bytearray, size_at: int, size_length: int, size: int) -> None:
    data[size_at : size_at + size_length] = ((1 << (7 * size_length)) | size).to_bytes(size_length, "big")


def mkv_block_edited(tmp_path: Path, how: str) -> Path:
    """The 40-frame MKV with frame 20's block written ``twice`` (right after itself, Cluster and
    Segment sizes grown to match, as a muxer's retry leaves it) or ``swapped`` with frame 19's
    (each block keeping its own timestamp)."""
    data, _ = mkv_frames(tmp_path / "whole.mkv")
    segment, blocks = mkv_blocks(bytes(data))
    assert len(blocks) == FRAMES
    start, end, cluster = blocks[DAMAGED]
    if how == "twice":
        data[end:end] = data[start:end]
        _set_ebml_size(data, *cluster[:2], cluster[2] + end - start)
        _set_ebml_size(data, *segment[:2], segment[2] + end - start)
    else:
        before, _, before_cluster = blocks[DAMAGED - 1]
        assert before_cluster == cluster and blocks[DAMAGED - 1][1] == start, "frames 19 and 20 share a cluster, side by side"
        data[before:end] = data[start:end] + data[before:start]
    path = tmp_path / f"{how}.mkv"
    path.write_bytes(bytes(data))
    return path


def test_a_frame_block_written_twice_leaves_the_copy_out_and_later_frames_keep_their_numbers(tmp_path):
    """A Matroska frame stored twice carries its first copy's timestamp, and the next frame goes
    on at the slot after it: the copy is left out and said (the input counts as not read in full),
    and no later frame is numbered one past its place."""
    path = mkv_block_edited(tmp_path, "twice")
    shown, problems, notes = read_timed(path)
    assert shown == {index: (index, pytest.approx(index / FPS, abs=1e-9)) for index in range(FRAMES)}  # 1e-9: float noise only
    assert problems == [f"{path}: frame {DAMAGED} is stored twice (the next frame has its timestamp, 2.000 s): the copy is left out, "
                        "later frames keep their numbers"]
    assert notes == []


def test_two_frame_blocks_stored_in_swapped_order_are_numbered_by_their_timestamps(tmp_path):
    """Frames 19 and 20 stored as 20, 19, each with its own timestamp: both are in the file, so
    nothing is reported lost; each is numbered by its timestamp, rows in frame order, one note."""
    path = mkv_block_edited(tmp_path, "swapped")
    frames = list(open_input(str(path)).frames())
    rows = [(frame.index, round(float(frame.image.mean()) / 6)) for frame in frames if frame.image is not None]
    assert rows == [(index, index) for index in range(FRAMES)]
    assert [frame.problem for frame in frames if frame.problem] == []
    assert [frame.note for frame in frames if frame.note] == [
        f"{path}: frames {DAMAGED - 1} and {DAMAGED} are stored in swapped order (each with its own timestamp): numbered by their timestamps "
        "(so are any later such frames)"]


def test_a_lone_timestamp_one_slot_ahead_is_not_taken_for_a_swap(tmp_path):
    """Frame 20 stamped at frame 22's slot, frame 22 on its own: the frame after the pair claims
    that slot, so frame 20's stamp is the damaged one (numbered by its place), not a swap."""
    path = retimed_mkv(tmp_path, {DAMAGED: 2200})
    shown, problems, notes = read_timed(path)
    assert shown == {index: (index, pytest.approx(index / FPS, abs=1e-9)) for index in range(FRAMES)}  # 1e-9: float noise only
    assert problems == []
    assert len(notes) == 1 and notes[0].startswith(f"{path}: frame {DAMAGED}'s timestamp (2.200 s) lies outside")


AUDIO_BYTES = 1600  # 16-bit mono PCM at 8000 Hz, a tenth of a second: one chunk per frame


def _riff_chunk(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


def _riff_list(kind: bytes, body: bytes) -> bytes:
    return b"LIST" + struct.pack("<I", len(body) + 4) + kind + body


def write_mjpg_with_audio(path: Path) -> Path:
    """A 40-frame MJPG AVI at 10 frames/s with a PCM audio stream (``01wb``), one audio chunk
    after each frame chunk, and an ``idx1`` index listing both streams' chunks, as a camera writes."""
    jpegs = [cv2.imencode(".jpg", np.full((48, 64, 3), 6 * index, np.uint8))[1].tobytes() for index in range(FRAMES)]
    avih = struct.pack("<10I", 100_000, 0, 0, 0x10, FRAMES, 0, 2, 0, 64, 48) + bytes(16)
    video = _riff_list(b"strl", _riff_chunk(b"strh", b"vidsMJPG" + struct.pack("<IHHIIIIIIIIhhhh", 0, 0, 0, 0, 1, 10, 0, FRAMES, 0, 0xFFFFFFFF, 0, 0, 0, 64, 48))
                       + _riff_chunk(b"strf", struct.pack("<IiiHHIIiiII", 40, 64, 48, 1, 24, int.from_bytes(b"MJPG", "little"), 64 * 48 * 3, 0, 0, 0, 0)))
    audio = _riff_list(b"strl", _riff_chunk(b"strh", b"auds" + bytes(4) + struct.pack("<IHHIIIIIIIIhhhh", 0, 0, 0, 0, 2, 16000, 0, FRAMES * AUDIO_BYTES // 2, 0, 0xFFFFFFFF, 2, 0, 0, 0, 0))
                       + _riff_chunk(b"strf", struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)))
    movi, index = b"", b""
    for jpeg in jpegs:
        for tag, body in ((b"00dc", jpeg), (b"01wb", bytes(AUDIO_BYTES))):
            index += tag + struct.pack("<III", 0x10 * (tag == b"00dc"), 4 + len(movi), len(body))
            movi += _riff_chunk(tag, body)
    body = b"AVI " + _riff_list(b"hdrl", _riff_chunk(b"avih", avih) + video + audio) + _riff_list(b"movi", movi) + _riff_chunk(b"idx1", index)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_an_audio_chunk_lost_from_an_avi_moves_no_frame_number(tmp_path):
    """An audio chunk removed (RIFF and ``movi`` sizes fixed, the index as it was) moves every
    later chunk from where the index lists it, but not the count of video chunks FFmpeg numbers
    frames by: the index's missing audio chunk accounts for the bytes, every frame is read."""
    data = bytearray(write_mjpg_with_audio(tmp_path / "whole.avi").read_bytes())
    assert read_levels(tmp_path / "whole.avi") == ({index: index for index in range(FRAMES)}, [])
    movi = data.index(b"movi")
    audio = [at for at in range(movi, data.rindex(b"idx1")) if data[at : at + 4] == b"01wb"]
    at, length = audio[DAMAGED], 8 + AUDIO_BYTES
    del data[at : at + length]
    struct.pack_into("<I", data, 4, struct.unpack_from("<I", data, 4)[0] - length)
    struct.pack_into("<I", data, movi - 4, struct.unpack_from("<I", data, movi - 4)[0] - length)
    path = tmp_path / "audio-lost.avi"
    path.write_bytes(bytes(data))
    assert read_levels(path) == ({index: index for index in range(FRAMES)}, [])


def with_header(path: Path, rate: int | None = None, scale: int | None = None, frames: int | None = None) -> Path:
    """The AVI with its video stream header's ``rate``, ``scale`` (``avih``'s frame period set to
    0 with them: no rate anywhere) or frame count (``avih`` and ``strh``) set."""
    data = bytearray(path.read_bytes())
    avih, strh = data.index(b"avih") + 8, data.index(b"strh") + 8
    if rate is not None:
        struct.pack_into("<I", data, avih, 0)
        struct.pack_into("<II", data, strh + 20, scale, rate)
    if frames is not None:
        struct.pack_into("<I", data, avih + 16, frames)
        struct.pack_into("<I", data, strh + 32, frames)
    edited = path.with_name(f"header-{rate}-{scale}-{frames}.avi")
    edited.write_bytes(bytes(data))
    return edited


@pytest.mark.parametrize("rate, scale, said", [
    (0, 1, "no frame rate (a rate of 0)"),
    (4_000_000_000, 1, "an implausible frame rate (4000000000/1 frames/s)"),
    (1, 4_000_000_000, "an implausible frame rate (1/4000000000 frames/s)")], ids=["rate-0", "rate-4e9", "scale-4e9"])
def test_an_avi_header_without_a_plausible_frame_rate_gives_no_times_and_every_frame_its_number(tmp_path, rate, scale, said):
    """An AVI's timestamps are FFmpeg's count of chunks at the rate it takes (25 frames/s made up
    for a rate of 0; every count rounded to 0 at 4e9 frames/s): every frame keeps its number, no
    variable frame rate or missing end is made up, and ``time_s`` is empty, said once."""
    path = with_header(write_mjpg(tmp_path / "whole.avi"), rate, scale)
    shown, problems, notes = read_timed(path)
    assert shown == {index: (index, None) for index in range(FRAMES)}
    assert problems == []
    assert notes == [f"{path}: the AVI's header gives {said}: frames are numbered by their chunks, and time_s is left empty"]


def test_an_avi_header_announcing_fewer_frames_than_its_index_lists_is_a_wrong_count(tmp_path):
    """The index places every frame, so the header's frame count is what is wrong: every frame
    read with its number, one note (the input is read in full)."""
    path = with_header(write_mjpg(tmp_path / "whole.avi"), frames=DAMAGED)
    shown, problems, notes = read_timed(path)
    assert shown == {index: (index, pytest.approx(index / FPS, abs=1e-9)) for index in range(FRAMES)}  # 1e-9: float noise only
    assert problems == []
    assert notes == [f"{path}: the AVI's header announces {DAMAGED} frames, but its index lists {FRAMES}, each where the index says: "
                     "the header's count is wrong (frames numbered by the index)"]
