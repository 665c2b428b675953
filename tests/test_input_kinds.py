"""What a ``predict`` input is, its content says, not its name: an empty file is called empty, a
video named ``.png`` is read as a video (with a warning), a PNG named ``.avi`` and a ``.pgm`` are
images (their ``file`` column filled, no ``time_s``), and an image in a folder that holds a video
or nothing says so."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from feph_finetune.predict.inputs import InputError, open_input


def write_avi(path, frames: int = 4):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for index in range(frames):
        writer.write(np.full((24, 32, 3), 40 * index, np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".png"])
def test_an_empty_file_is_called_empty(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(InputError) as raised:
        open_input(str(path))
    assert str(raised.value) == f"{path}: the file is empty (0 bytes): neither an image nor a video"


def test_a_video_named_as_an_image_is_read_as_a_video_and_said(tmp_path):
    path = tmp_path / "clip.png"
    shutil.copy(write_avi(tmp_path / "clip.avi"), path)
    warnings = []
    source = open_input(str(path), warn=warnings.append)
    assert source.kind == "video" and [frame.index for frame in source.frames() if frame.image is not None] == [0, 1, 2, 3]
    assert warnings == [f"{path}: holds an AVI video, not an image, whatever its name says: read as a video"]


@pytest.mark.parametrize("name", ["frame.avi", "frame.pgm"])
def test_an_image_under_another_name_is_an_image(tmp_path, name):
    image = np.full((24, 32), 99, np.uint8)
    _, encoded = cv2.imencode(".pgm" if name.endswith(".pgm") else ".png", image)
    path = tmp_path / name
    path.write_bytes(encoded.tobytes())
    source = open_input(str(path))
    frames = list(source.frames())
    assert source.kind == "image"
    assert [(frame.index, frame.file, frame.time_s) for frame in frames] == [(0, name, None)]


def test_a_folders_empty_image_and_video_named_as_an_image_say_what_they_are(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "f0.png").write_bytes(b"")
    shutil.copy(write_avi(tmp_path / "clip.avi"), folder / "f1.png")
    problems = [frame.problem for frame in open_input(str(folder)).frames() if frame.problem]
    assert problems == [f"cannot decode image {folder / 'f0.png'}: the file is empty (0 bytes)",
                        f"cannot decode image {folder / 'f1.png'}: it holds an AVI video, not an image, whatever its name says"]


def test_a_folder_picks_its_frames_by_content_as_a_single_input_is_picked(tmp_path):
    """A folder of ``.pgm`` frames, and a PNG named ``.avi`` among ``.png`` frames, are frames in
    their natural order (a single ``.pgm`` is an image); a real video and a text file beside them
    are skipped, said in one note."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for position in range(3):
        cv2.imwrite(str(folder / f"f{position}.pgm"), np.full((8, 8), 50 * position, np.uint8))
    _, encoded = cv2.imencode(".png", np.full((8, 8, 3), 200, np.uint8))
    (folder / "f3.avi").write_bytes(encoded.tobytes())
    write_avi(folder / "f4.avi")
    (folder / "notes.txt").write_text("not a frame")
    frames = list(open_input(str(folder)).frames())
    assert [(frame.index, frame.file, int(frame.image[0, 0, 0])) for frame in frames if frame.image is not None] == [
        (0, "f0.pgm", 0), (1, "f1.pgm", 50), (2, "f2.pgm", 100), (3, "f3.avi", 200)]
    assert [frame.note for frame in frames if frame.note] == [f"{folder}: skipped 2 other files (no image by content or name)"]
