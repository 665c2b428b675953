"""A file or folder a user names for output that exists as something else (a FIFO, a device, a
folder where a file goes) is refused before any work, its kind named; a symbolic link to a
regular file (or folder) is written through: what it points to is replaced, the link kept. A
link among the program's own files (a run's records, the crop cache) is never followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from feph_finetune.cli import main
from feph_finetune.results.store import atomic_path, write_json

from test_full_disk import fake_bundle

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


def commands(tmp_path: Path, target: Path) -> dict[str, list[str]]:
    """Each command that writes where it is told, writing a file at ``target`` (or, for a
    folder-writing command, a folder)."""
    return {
        "predict --out": ["predict", str(tmp_path / "no-model"), str(tmp_path / "in.png"), "--out", str(target)],
        "predict --plot": ["predict", str(tmp_path / "no-model"), str(tmp_path / "in.png"), "--plot", str(target)],
        "convert": ["convert", str(tmp_path / "in.onnx"), str(target)],
        "export": ["export", str(fake_bundle(tmp_path / "bundle")), str(target)],
        "report --figures": ["report", str(tmp_path), "--figures", str(target)],
        "synth": ["synth", str(target)],
    }


#: The suffix each command's output must have.
SUFFIXES = {"predict --out": ".csv", "predict --plot": ".png", "convert": ".keras"}


@needs_fifo
@pytest.mark.parametrize("command", ["predict --out", "predict --plot", "convert", "export", "report --figures", "synth"])
@pytest.mark.parametrize("kind", ["a FIFO", "a character device"])
def test_an_output_that_is_a_fifo_or_a_link_to_a_device_is_refused_naming_its_kind(tmp_path, capsys, command, kind):
    target = tmp_path / f"out{SUFFIXES.get(command, '')}"
    if kind == "a FIFO":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/null")
    (tmp_path / "in.onnx").write_bytes(b"x")
    assert main(commands(tmp_path, target)[command]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{target}" in err and f"is {kind}" in err and "Traceback" not in err, err
    assert target.is_symlink() if kind != "a FIFO" else target.is_fifo(), "left as it was"


def test_export_onto_an_existing_file_says_it_is_a_file(tmp_path, capsys):
    (tmp_path / "model.keras").write_bytes(b"model")
    assert main(["export", str(fake_bundle(tmp_path / "bundle")), str(tmp_path / "model.keras")]) == 2
    assert f"{tmp_path / 'model.keras'}: is a file; export writes a folder" in " ".join(capsys.readouterr().err.split())


def test_a_link_to_a_regular_file_the_user_names_is_written_through_keeping_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "rows.csv").write_text("old")
    link = tmp_path / "rows.csv"
    link.symlink_to(tmp_path / "real" / "rows.csv")
    with atomic_path(link, follow_link=True) as temporary:
        temporary.write_text("new")
    assert link.is_symlink() and (tmp_path / "real" / "rows.csv").read_text() == "new"
    assert not list((tmp_path).glob(".*.tmp.*")) and not list((tmp_path / "real").glob(".*.tmp.*"))


def test_a_link_planted_among_the_programs_own_files_is_replaced_never_written_through(tmp_path):
    """A results folder or a shared crop cache holding a link to another file (someone else's)
    must not make a run write over that file: the link itself is replaced."""
    (tmp_path / "victim").write_text("precious")
    planted = tmp_path / "result.json"
    planted.symlink_to(tmp_path / "victim")
    write_json(planted, {"new": 1})
    assert (tmp_path / "victim").read_text() == "precious"
    assert not planted.is_symlink() and planted.read_text().strip().startswith("{")


def test_export_into_a_link_to_an_empty_folder_fills_that_folder_keeping_the_link(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    link = tmp_path / "model"
    link.symlink_to(tmp_path / "empty")
    assert main(["export", str(fake_bundle(tmp_path / "bundle")), str(link)]) == 0, capsys.readouterr().err
    assert link.is_symlink() and (tmp_path / "empty" / "bundle.json").is_file()
