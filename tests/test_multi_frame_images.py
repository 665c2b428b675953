"""An image file of several frames (an animated GIF, PNG or WebP, a multi-page TIFF) is a sequence
to ``predict``, never one frame with the others dropped without a word: given alone, every frame
is read; in a folder of frames, its first is, and a problem says the others were not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from feph_finetune.predict.inputs import open_input

FRAMES = 12
#: Each frame a flat colour of its own (RGB), so that a row's frame can be told by its pixels.
COLOURS = [(200 - 10 * index, 5 * index, 10 * index) for index in range(FRAMES)]


def write_frames(path):
    frames = [np.full((16, 24, 3), colour[::-1], np.uint8) for colour in COLOURS]  # BGR, as OpenCV writes
    if path.suffix == ".tiff":
        assert cv2.imwritemulti(str(path), frames)
        return path
    animation = cv2.Animation()
    animation.frames, animation.durations = frames, [100] * FRAMES
    ok, encoded = cv2.imencodeanimation(path.suffix, animation)
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


@pytest.mark.parametrize("suffix", [".gif", ".png", ".webp", ".tiff"])
def test_an_image_file_of_several_frames_is_read_as_a_sequence(tmp_path, suffix):
    """Each gave 1 row and exit 0 (``cv2.imcount`` said 40)."""
    path = write_frames(tmp_path / f"anim{suffix}")
    source = open_input(str(path))
    frames = list(source.frames())
    assert source.kind == "animation" and source.total == FRAMES
    assert [frame.problem for frame in frames if frame.problem] == []
    assert [(frame.index, frame.file, frame.time_s) for frame in frames] == [(index, path.name, None) for index in range(FRAMES)]
    for frame, colour in zip(frames, COLOURS):  # the frame at its place: a GIF's palette and lossy WebP move a colour a little
        assert np.abs(frame.image.reshape(-1, 3).mean(axis=0) - colour).max() < 8, f"frame {frame.index}"


def test_every_keeps_every_kth_frame_of_a_multi_frame_image(tmp_path):
    source = open_input(str(write_frames(tmp_path / "anim.gif")), every=5)
    assert source.total == 3 and [frame.index for frame in source.frames()] == [0, 5, 10]


def test_a_multi_frame_image_cut_off_keeps_its_whole_frames_and_says_where_decoding_stopped(tmp_path):
    """An APNG cut at two thirds: its header still announces every frame; OpenCV fails a call that
    reaches the damage as a whole, so the whole frames before it are decoded one by one."""
    whole = write_frames(tmp_path / "whole.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(whole[: len(whole) * 2 // 3])
    frames = list(open_input(str(path)).frames())
    decoded = [frame.index for frame in frames if frame.image is not None]
    assert 0 < len(decoded) < FRAMES and decoded == list(range(len(decoded)))
    assert [frame.problem for frame in frames if frame.problem] == [
        f"{path}: decoding stopped at frame {decoded[-1]} ({len(decoded)} frames decoded) of the {FRAMES} frames the file holds: it is cut off or damaged"]


def test_a_multi_frame_image_in_a_folder_of_frames_says_only_its_first_is_read(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "f0.png"), np.zeros((16, 24, 3), np.uint8))
    write_frames(folder / "f1.gif")
    frames = list(open_input(str(folder)).frames())
    assert [frame.index for frame in frames if frame.image is not None] == [0, 1]
    assert [frame.problem for frame in frames if frame.problem] == [
        f"image {folder / 'f1.gif'} holds {FRAMES} frames (an animation or a multi-page file): only its first is read, as frame 1; "
        "give the file as an input of its own to read every frame"]


def test_a_still_image_is_one_frame(tmp_path):
    path = tmp_path / "still.png"
    assert cv2.imwrite(str(path), np.zeros((16, 24, 3), np.uint8))
    source = open_input(str(path))
    assert source.kind == "image" and [frame.index for frame in source.frames()] == [0]
