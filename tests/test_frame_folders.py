"""A folder of frames as ``predict`` reads it: hidden files (macOS's ``._`` companions) are no
frames, names that number the frames keep those numbers across a missing file, what the image
decoder writes to stderr lands in the frame's problem, and a message about many files names a few."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from feph_finetune.predict.inputs import open_input


def write_frames(folder, names):
    folder.mkdir(exist_ok=True)
    for shade, name in enumerate(names):
        assert cv2.imwrite(str(folder / name), np.full((8, 8, 3), 20 * shade % 240, np.uint8))
    return folder


def read(folder, every=1):
    frames = list(open_input(str(folder), every).frames())
    return ([(frame.index, frame.file) for frame in frames if frame.image is not None],
            [frame.problem for frame in frames if frame.problem], [frame.note for frame in frames if frame.note])


@pytest.mark.parametrize("hidden", ["._fn{:06d}.png", ".fn{:06d}.png"], ids=["appledouble", "dotfile"])
def test_hidden_files_are_no_frames_and_are_counted(tmp_path, hidden):
    """A folder copied from a Mac: ``._fn000000.png`` (4 KB of metadata) beside each frame sorted
    first and shifted every real frame by their count (fn000000.png was frame 10)."""
    folder = write_frames(tmp_path / "mac", [f"fn{index:06d}.png" for index in range(10)])
    for index in range(10):
        (folder / hidden.format(index)).write_bytes(b"\x00\x05\x16\x07" + bytes(4092))
    (folder / ".DS_Store").write_bytes(bytes(100))
    rows, problems, notes = read(folder)
    assert rows == [(index, f"fn{index:06d}.png") for index in range(10)] and problems == []
    assert notes == [f"{folder}: skipped 11 hidden files (a name starting with '.', as macOS's '._' companions)"]


def test_names_that_number_the_frames_keep_the_numbers_across_a_missing_file(tmp_path):
    """fn000020.png deleted: fn000021.png was frame 20, with no word, and --smooth averaged
    frame 19 with 21. Now frame 20 is a gap, said as a video's is; later frames keep their numbers."""
    folder = write_frames(tmp_path / "frames", [f"fn{index:06d}.png" for index in range(40) if index != 20])
    rows, problems, _ = read(folder)
    assert [index for index, _ in rows] == [index for index in range(40) if index != 20]
    assert rows[20] == (21, "fn000021.png")
    assert problems == [f"{folder}: frame 20 has no file (the file names number the frames, and none is numbered between fn000019.png and "
                        "fn000021.png): left out; later frames keep their numbers"]
    assert open_input(str(folder)).total == 39


def test_every_keeps_the_frames_whose_numbers_it_keeps_across_a_gap(tmp_path):
    folder = write_frames(tmp_path / "frames", [f"clip3_f{index}.png" for index in (1, 2, 3, 5, 6, 7, 8)])
    rows, problems, _ = read(folder, every=2)
    assert [index for index, _ in rows] == [0, 2, 4, 6] and len(problems) == 1
    assert open_input(str(folder), 2).total == 4


@pytest.mark.parametrize("names, numbers", [
    (["fn000000.png", "fn000001.png", "fn000003.png"], [0, 1, 3]),
    (["frame1.png", "frame2.png", "frame3.png"], [0, 1, 2]),  # counted from the first: a 1-based sequence has no gap at 0
    (["f0.png", "f5.png", "f10.png", "f20.png"], [0, 1, 2, 4]),  # every 5th frame extracted: counted in its step
    (["a.png", "b.png"], None),  # no numbers: the position numbers them
    (["fn1.png", "fn01.png"], None),  # one number twice
    (["fn1.png", "cover.png"], None),
    (["left1.png", "right2.png"], None),  # not one sequence
    (["fn7.png"], None),
], ids=["gap", "one-based", "step-5", "letters", "repeated", "unnumbered-file", "two-sequences", "single"])
def test_which_names_number_the_frames(names, numbers):
    from feph_finetune.predict.frame_folders import frame_numbers

    assert frame_numbers(names) == numbers


def test_a_missing_file_breaks_the_smoothing_window_as_a_video_gap_does(tmp_path):
    from feph_finetune.predict.apply import Predictor, Settings

    class Mean:
        def predict_on_batch(self, batch):
            level = np.asarray(batch, dtype=np.float64).mean(axis=(1, 2, 3))[:, None] / 255
            return np.concatenate([level, 1 - level], axis=1)

    folder = write_frames(tmp_path / "frames", [f"fn{index:06d}.png" for index in range(6) if index != 3])
    predictor = Predictor(SimpleNamespace(model=Mean(), classes=("a", "b"), frame_steps=[], batch_steps=[], input_size=8, folder="bundle"),
                          Settings(smooth=3, prefetch=False))
    predictor.preprocess_batch = lambda images, steps: images
    rows = []
    predictor.emit = lambda row, smoothed, summary, writer: rows.append((row["frame"], None if smoothed is None else round(float(smoothed[0]), 6)))
    predictor.run(open_input(str(folder)), None)
    shade = [20 * position / 255 for position in range(5)]  # the files' shades in order: frames 0, 1, 2, 4, 5
    assert [frame for frame, _ in rows] == [0, 1, 2, 4, 5]
    assert rows[2][1] == pytest.approx((shade[1] + shade[2]) / 2, abs=1e-6)  # frame 2's window ends at the gap (float32 sums: 1e-6)
    assert rows[3][1] == pytest.approx((shade[3] + shade[4]) / 2, abs=1e-6)


def test_what_libpng_writes_for_a_damaged_frame_is_in_its_problem_not_on_stderr(tmp_path, capfd):
    """A PNG without its last chunk made libpng print "libpng error: PNG input buffer is
    incomplete" straight to file descriptor 2, beside the program's own message."""
    folder = write_frames(tmp_path / "frames", ["f0.png", "f1.png"])
    (folder / "f1.png").write_bytes((folder / "f1.png").read_bytes()[:-12])
    rows, problems, _ = read(folder)
    assert rows == [(0, "f0.png")]
    assert problems == [f"cannot decode image {folder / 'f1.png'} (the decoder said: libpng error: PNG input buffer is incomplete)"]
    assert "libpng" not in capfd.readouterr().err


def test_a_folder_of_many_unreadable_frames_names_five_in_the_error(tmp_path, monkeypatch, capsys):
    """200 undecodable frames gave one error line of 10,616 characters naming all of them."""
    from feph_finetune.cli import main
    from feph_finetune.predict import bundle as bundles, command
    from feph_finetune.predict.apply import InputSummary

    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(200):
        (folder / f"f{index:03d}.png").write_bytes(b"not a png")
    summary = InputSummary(str(folder), "folder", ("a",), problems=[frame.problem for frame in open_input(str(folder)).frames() if frame.problem])
    monkeypatch.setattr(bundles, "open_bundle", lambda model, plugins: SimpleNamespace(classes=("a",), run_id="r"))
    monkeypatch.setattr(bundles, "load_model", lambda bundle: None)
    monkeypatch.setattr(command, "_run", lambda *args: [summary])
    monkeypatch.setattr(command, "print_summary", lambda *args: None)
    assert main(["predict", str(tmp_path / "model"), str(folder)]) == 2
    error = capsys.readouterr().err
    assert "f004.png" in error and "f005.png" not in error and "and 195 more" in error
    assert len(error) < 1000


def test_a_sample_of_a_videos_frames_is_numbered_by_its_names_and_said_once(tmp_path):
    """More numbers missing than files present: a sample of frames (as FePh keeps), not files
    lost; no problem per skip, one note, and the frames still numbered by their names."""
    folder = write_frames(tmp_path / "sample", [f"fn{number:06d}.png" for number in (9, 45, 46, 100)])
    rows, problems, notes = read(folder)
    assert [index for index, _ in rows] == [0, 36, 37, 91] and problems == []
    assert notes == [f"{folder}: the file names number the frames, and 88 of the numbers between fn000009.png and fn000100.png have no file "
                     "(a sample of a video's frames): frames are numbered by their names, fn000009.png as frame 0"]
