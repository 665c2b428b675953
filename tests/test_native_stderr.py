"""What native code writes to file descriptor 2 is caught, and fd 2 is always put back; a video
whose header makes OpenCV print raw bytes is reported in one warning line naming it."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from feph_finetune.native_stderr import native_stderr_caught
from feph_finetune.predict.inputs import InputError, open_input


def same_file(first: int, second: int) -> bool:
    a, b = os.fstat(first), os.fstat(second)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def test_what_fd_2_receives_is_caught_and_fd_2_put_back():
    before = os.dup(2)
    try:
        with native_stderr_caught() as said:
            os.write(2, b"\n  first line\nsecond \xfe\n")
        assert said.lines == ("first line", "second \\xfe")  # bytes that are not UTF-8 as \xNN
        assert same_file(2, before)
    finally:
        os.close(before)


def test_only_the_decoders_lines_count_and_another_threads_are_passed_on(capfd):
    """While predict's reading thread watches fd 2, the model's thread may write to it too: only
    FFmpeg's and OpenCV's bracketed lines are the video's; the rest reaches stderr as written."""
    with native_stderr_caught() as said:
        os.write(2, b"[mjpeg @ 0x55d0] mjpeg: unsupported coding type (c8)\nW0000 tensorflow notice\n[ WARN:0@1.2] global cap\n")
    assert said.decoder_lines().lines == ("[mjpeg @ 0x55d0] mjpeg: unsupported coding type (c8)", "[ WARN:0@1.2] global cap")
    assert capfd.readouterr().err == "W0000 tensorflow notice\n"


def test_fd_2_is_put_back_after_an_interrupt():
    before = os.dup(2)
    try:
        with pytest.raises(KeyboardInterrupt), native_stderr_caught() as said:
            os.write(2, b"cut short\n")
            raise KeyboardInterrupt
        assert said.lines == ("cut short",) and same_file(2, before)
    finally:
        os.close(before)


def damaged_avi(path: Path) -> Path:
    """A small MJPG AVI whose header list type ('hdrl') is 4 bytes of junk (control characters and
    bytes that are not UTF-8), cut off after them: FFmpeg cannot open it, and OpenCV's own AVI
    parser then prints "Unexpected list type. Expected: hdrl. Got: " and the junk with C's fprintf."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 32))
    for level in range(3):
        writer.write(np.full((32, 32, 3), 60 * level, np.uint8))
    writer.release()
    data = path.read_bytes()
    at = data.index(b"hdrl")
    path.write_bytes(data[:at] + b"\x01\xfe\x9b\x1b")
    return path


def test_opencv_s_raw_output_on_opening_a_video_is_one_warning_naming_it(tmp_path, capfd):
    video = damaged_avi(tmp_path / "damaged.avi")
    warnings = []
    with pytest.raises(InputError, match="cannot read it as an image or a video"):
        open_input(str(video), warn=warnings.append)
    assert capfd.readouterr().err == ""
    (warning,) = warnings
    assert warning.startswith(f"{video}: OpenCV said while opening it: Unexpected list type. Expected: hdrl. Got: ")
    assert "\\xfe" in warning
