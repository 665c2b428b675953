"""An output a command is told to write is refused, before any work and with exit 2, where it is
a file the command reads (another spelling, a symbolic or hard link to it: written through, it
would replace the model or the input) or lies inside a folder of frames it reads (it would be
read as one more frame next time). The message names both; what is read is left as it was."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from feph_finetune.cli import main
from feph_finetune.predict.bundle import MODEL_FILE
from feph_finetune.results.store import overwritten_input_problem

from test_full_disk import fake_bundle


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path.with_suffix(".png")), np.full((8, 8, 3), 128, np.uint8))
    if path.suffix != ".png":
        path.with_suffix(".png").rename(path)
    return path


def refused(capsys, args: list[str]) -> str:
    """The one-screen error of ``args``, which must exit 2 without a traceback."""
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err, err
    return err


def test_predict_out_through_a_link_to_the_runs_model_is_refused_and_the_model_kept(tmp_path, capsys):
    run = fake_bundle(tmp_path / "run")
    model = (run / MODEL_FILE).read_bytes()
    out = tmp_path / "o.csv"
    out.symlink_to(run / MODEL_FILE)
    err = refused(capsys, ["predict", str(run), str(image(tmp_path / "a.png")), "--out", str(out)])
    assert f"--out {out}: is {run / MODEL_FILE}, which predict reads; give another file" in err, err
    assert (run / MODEL_FILE).read_bytes() == model and out.is_symlink()


@pytest.mark.parametrize("spelling", ["same name", "another spelling", "hard link"])
def test_predict_out_onto_its_own_input_is_refused_and_the_input_kept(tmp_path, capsys, spelling):
    source = image(tmp_path / "img.csv")  # an image whose name ends in .csv
    before = source.read_bytes()
    out = {"same name": source, "another spelling": tmp_path / "sub" / ".." / "img.csv", "hard link": tmp_path / "again.csv"}[spelling]
    (tmp_path / "sub").mkdir()
    if spelling == "hard link":
        os.link(source, out)
    err = refused(capsys, ["predict", str(fake_bundle(tmp_path / "run")), str(source), "--out", str(out)])
    assert f"--out {out}: is {source}, which predict reads" in err, err
    assert source.read_bytes() == before


def test_a_plot_inside_a_frame_folder_it_reads_is_refused(tmp_path, capsys):
    frames = tmp_path / "F"
    for index in range(3):
        image(frames / f"{index}.png")
    target = frames / "plot.png"
    err = refused(capsys, ["predict", str(fake_bundle(tmp_path / "run")), str(frames), "--plot", str(target)])
    assert f"--plot {target}: lies inside {frames}, a folder whose files predict reads" in err, err
    assert sorted(child.name for child in frames.iterdir()) == ["0.png", "1.png", "2.png"]


def test_a_csv_beside_the_frames_is_no_frame_and_is_allowed(tmp_path):
    """Only images are read from a folder of frames: rows.csv there overwrites nothing."""
    from argparse import Namespace

    from feph_finetune.predict.command import overwritten_inputs

    frames = tmp_path / "F"
    image(frames / "0.png")
    assert overwritten_inputs(Namespace(model=str(tmp_path / "run"), inputs=[str(frames)], out=frames / "rows.csv", plot=None)) == []
    assert overwritten_inputs(Namespace(model=str(tmp_path / "run"), inputs=[str(frames)], out=None, plot=frames / "plot.png")) != []


def test_a_link_from_elsewhere_into_a_frame_folder_is_refused_too(tmp_path, capsys):
    frames = tmp_path / "F"
    image(frames / "0.png")
    (frames / "old.png").write_bytes(b"x")
    plot = tmp_path / "plot.png"
    plot.symlink_to(frames / "old.png")
    err = refused(capsys, ["predict", str(fake_bundle(tmp_path / "run")), str(frames), "--plot", str(plot)])
    assert f"--plot {plot}: lies inside {frames}" in err, err


def test_convert_through_a_link_onto_its_own_source_is_refused_and_the_source_kept(tmp_path, capsys):
    source = tmp_path / "model.onnx"
    source.write_bytes(b"onnx bytes")
    out = tmp_path / "model.keras"
    out.symlink_to(source)
    err = refused(capsys, ["convert", str(source), str(out)])
    assert f"{out}: is {source}, which convert reads; give another file" in err, err
    assert source.read_bytes() == b"onnx bytes"


def test_new_files_beside_what_is_read_are_allowed(tmp_path):
    """Only what is read is protected: a new file in a run folder (not a frame folder), or a file
    in a folder beside the frames, may be written."""
    run = fake_bundle(tmp_path / "run")
    frames = tmp_path / "F"
    image(frames / "0.png")
    files, folders = sorted(run.iterdir()), [frames]
    assert overwritten_input_problem(run / "rows.csv", "predict", files, folders) is None
    assert overwritten_input_problem(tmp_path / "F2" / "plot.png", "predict", files, folders) is None
    assert overwritten_input_problem(tmp_path / "plot.png", "predict", files, folders) is None


@pytest.mark.parametrize("onto", ["the run folder", "its parent"])
def test_export_onto_the_folder_it_reads_or_its_parent_is_refused_and_the_run_kept(tmp_path, capsys, onto):
    (tmp_path / "results").mkdir()
    run = fake_bundle(tmp_path / "results" / "run")
    before = {child.name: child.read_bytes() for child in run.iterdir()}
    out = run if onto == "the run folder" else run.parent
    err = refused(capsys, ["export", str(run), str(out)])
    assert f"{out}: already exists and is not an empty folder" in err, err
    assert {child.name: child.read_bytes() for child in run.iterdir()} == before
