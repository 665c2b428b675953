"""Videos whose damage only the decoder sees, and videos too fast for their container's clock.

- Bytes overwritten inside a frame of an MKV (MJPG or FFV1) leave every packet in place: each
  frame decodes, with its timestamp, and only FFmpeg's decoder says (on stderr, while that frame
  is read) that one is damaged ("slice CRC mismatch", "mjpeg: unsupported coding type").
- An MKV stores timestamps in milliseconds: at 2000 frames/s two frames share each stamp, and the
  frame count FFmpeg derives from the duration is off by a frame or two. An intact video at any
  rate must read as intact.

Every video is written here with OpenCV's ``VideoWriter`` (frame i a grey of level 20 + 5 * i
under a fixed texture, so that frames, not the container's structure, are the bulk of the file,
and a decoded frame's mean says which it is) and damaged here.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from feph_finetune.predict.inputs import open_input

FRAMES, SIZE, DAMAGED = 40, 32, 20
TEXTURE = np.random.default_rng(0).integers(-12, 13, (SIZE, SIZE, 3))  # mean 0


def write(path: Path, fourcc: str, fps: float, frames: int = FRAMES) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (SIZE, SIZE))
    if not writer.isOpened():
        pytest.skip(f"OpenCV's writer cannot write {fourcc} to {path.suffix} here")
    for index in range(frames):
        writer.write(np.clip(20 + 5 * (index % 43) + TEXTURE, 0, 255).astype(np.uint8))
    writer.release()
    return path


def xored(path: Path, start: int, size: int) -> Path:
    """``path`` with ``size`` bytes from ``start`` XOR'd with 0x5A, as a new file."""
    data = bytearray(path.read_bytes())
    data[start : start + size] = bytes(byte ^ 0x5A for byte in data[start : start + size])
    damaged = path.with_name(f"damaged-{path.name}")
    damaged.write_bytes(bytes(data))
    return damaged


def damaged_inside_a_frame(path: Path, fourcc: str) -> Path:
    """``path`` with bytes inside a frame's coded data XOR'd, no container structure touched:
    MJPG, 30 bytes of frame 20's entropy-coded scan (its JPEG's headers intact, so it decodes,
    wrongly); FFV1, 200 bytes in the middle of the file (the frames are its bulk)."""
    data = path.read_bytes()
    if fourcc == "MJPG":
        jpeg = [index for index in range(len(data)) if data.startswith(b"\xff\xd8\xff", index)][DAMAGED]
        return xored(path, data.index(b"\xff\xda", jpeg) + 20, 30)
    return xored(path, len(data) // 2, 200)


def read(path: Path):
    frames = list(open_input(str(path)).frames())
    shown = {frame.index: round((float(frame.image.mean()) - 20) / 5) for frame in frames if frame.image is not None}
    return shown, [frame.problem for frame in frames if frame.problem], [frame.note for frame in frames if frame.note]


@pytest.mark.parametrize("fourcc", ["MJPG", "FFV1"])
def test_damage_only_the_decoder_reports_is_named_with_its_frame_and_every_row_kept(tmp_path, fourcc):
    intact = write(tmp_path / "video.mkv", fourcc, 10.0)
    assert read(intact)[1:] == ([], [])
    video = damaged_inside_a_frame(intact, fourcc)
    shown, problems, notes = read(video)
    assert sorted(shown) == list(range(FRAMES)) and notes == []  # every frame kept, under its own number
    damaged_frames = [index for index in range(FRAMES) if shown[index] != index]
    assert damaged_frames and max(damaged_frames) - min(damaged_frames) < 5, shown  # one frame, or a few in a row (FFV1's slices)
    (problem,) = problems
    reported = damaged_frames[0]
    assert problem.startswith(f"{video}: FFmpeg reported damage at frame {reported}: [") and problem.endswith("(the frame is kept, and may show the damage)")
    assert "@ 0x" in problem  # FFmpeg's own line, quoted
    if fourcc == "MJPG":
        assert damaged_frames == [DAMAGED]


def test_an_intact_video_reads_without_any_decoder_report(tmp_path):
    for fourcc, suffix in (("MJPG", ".avi"), ("mp4v", ".mp4"), ("FFV1", ".mkv")):
        assert read(write(tmp_path / f"video{suffix}", fourcc, 25.0))[1:] == ([], [])


#: (frames/s, fourcc, suffix): every rate in every container, but an AVI above 600 frames/s, which
#: OpenCV's writer stores as 600 frames/s, dropping frames.
RATES = [(fps, fourcc, suffix) for fps in (1, 23.976, 29.97, 60, 240, 1000, 2000, 10000)
         for fourcc, suffix in (("MJPG", ".mkv"), ("FFV1", ".mkv"), ("MJPG", ".avi"), ("mp4v", ".mp4"))
         if not (suffix == ".avi" and fps > 600)]


@pytest.mark.parametrize("fps, fourcc, suffix", RATES)
def test_an_intact_video_at_any_frame_rate_reads_as_intact_with_every_frame_numbered(tmp_path, fps, fourcc, suffix):
    shown, problems, notes = read(write(tmp_path / f"video{suffix}", fourcc, fps, 100))
    assert (problems, notes) == ([], [])
    assert shown == {index: index % 43 for index in range(100)}


def test_a_hole_in_a_video_too_fast_for_its_millisecond_stamps_is_still_a_gap(tmp_path):
    """100 frames at 2000 frames/s in an MKV (stamps in whole ms, two frames each), frames 60 on
    stamped 10 ms (20 frames) later, as if 20 frames were lost: one gap from frame 60 is named, of
    20 frames, or 19 (a stamp rounded by half a millisecond may hide one), and the later frames
    follow it in order."""
    video = write(tmp_path / "video.mkv", "MJPG", 2000.0, 100)
    data = bytearray(video.read_bytes())
    jpegs = [index for index in range(len(data) - 2) if data[index : index + 3] == b"\xff\xd8\xff"]
    assert len(jpegs) == 100
    for start in jpegs[60:]:  # a SimpleBlock's stamp (signed 16-bit ms, relative to its cluster) lies 3 bytes before its frame
        data[start - 3 : start - 1] = struct.pack(">h", struct.unpack(">h", data[start - 3 : start - 1])[0] + 10)
    holed = tmp_path / "holed.mkv"
    holed.write_bytes(bytes(data))
    shown, problems, notes = read(holed)
    (problem,) = problems
    last_lost = int(problem.split("frames 60-")[1].split(" ")[0])
    assert problem == f"{holed}: frames 60-{last_lost} could not be decoded (left out; later frames keep their numbers)" and last_lost in (78, 79)
    assert shown == {**{index: index % 43 for index in range(60)}, **{last_lost - 59 + index: index % 43 for index in range(60, 100)}}
    assert notes == []
