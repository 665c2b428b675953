"""Videos that are not what they say: cut off, or with a damaged frame in the middle.

The videos are MJPG AVIs written by OpenCV, 40 frames, frame i a flat grey of level 6 * i, so a
decoded frame says which it is. What OpenCV 4.14 reports for each damage (checked by hand):

- cut inside frame 20: 20 frames decode, then every read fails; ``CAP_PROP_FRAME_COUNT`` still
  announces 40 (the AVI header says so);
- frame 20's JPEG bytes overwritten: its read fails, the next read gives frame 21 with
  ``CAP_PROP_PTS`` 21 (the container's position), while counting decoded frames would say 20;
- frame 20's chunk header damaged (its tag, or its size): the demuxer resyncs to the next header
  it recognises and numbers the chunks by counting, so frame 21 comes with PTS 20 (a size too
  large by 100 bytes swallows frame 21's header instead, one by 4000 frames 21-26); the AVI's
  index gives the true numbers.
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


def read(path: Path, every: int = 1):
    source = open_input(str(path), every)
    frames = list(source.frames())
    shown = {frame.index: round(float(frame.image.mean()) / 6) for frame in frames if frame.problem is None}
    return source, shown, [frame.problem for frame in frames if frame.problem is not None]


def test_a_whole_video_reads_every_frame_without_problems(tmp_path):
    source, shown, problems = read(write_mjpg(tmp_path / "whole.avi"))
    assert source.announced == FRAMES
    assert shown == {index: index for index in range(FRAMES)}
    assert problems == []


@pytest.mark.parametrize("every", [1, 3])
def test_a_video_cut_off_mid_frame_keeps_its_rows_and_says_where_it_stopped(tmp_path, every):
    path = damaged(tmp_path, "cut")
    _, shown, problems = read(path, every)
    assert shown == {index: index for index in range(0, DAMAGED, every)}
    assert problems == [f"{path}: decoding stopped at frame {DAMAGED - 1} ({DAMAGED} frames decoded), but the container announces {FRAMES}: "
                        "the file is cut off, or a damaged chunk lost its frame number (frames after it may then be numbered early)"]


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


@pytest.mark.parametrize("how, lost", [("tag", [20]), ("header", [20]), ("size", [20]), ("size+100", 100), ("size+2000", 2000)])
def test_a_damaged_chunk_header_leaves_a_gap_and_later_frames_keep_their_numbers(tmp_path, how, lost):
    """The frame numbers come from the AVI's index, not from the demuxer's count of chunks."""
    lost = lost if isinstance(lost, list) else swallowed(tmp_path, lost)
    assert lost and lost[-1] < FRAMES - 1, "the damage leaves later frames to number"
    path = damaged(tmp_path, how)
    _, shown, problems = read(path)
    assert shown == {index: index for index in range(FRAMES) if index not in lost}
    gap = f"frame {lost[0]}" if len(lost) == 1 else f"frames {lost[0]}-{lost[-1]}"
    assert problems == [f"{path}: {gap} could not be decoded (left out; later frames keep their numbers)"]


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
    assert silenced.returncode == 0 and silenced.stdout.strip() == str(FRAMES), silenced.stderr
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
                            f"{path}: decoding stopped at frame 38 (20 frames decoded), but the container announces 40: "
                            "the file is cut off, or a damaged chunk lost its frame number (frames after it may then be numbered early)"]
