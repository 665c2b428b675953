"""Paths a command is given that are links to nothing, link loops or FIFOs (issue 22): each is
refused before any work, naming the path and what it is, with exit 2 (they gave tracebacks from
``os.replace``, "[Errno 17] File exists", or "no such folder")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from feph_finetune.cli import main
from feph_finetune.predict.bundle import BundleError, export_bundle
from feph_finetune.results.store import output_folder_problem

from fake_store import write_fake_store


@pytest.fixture
def odd_paths(tmp_path) -> dict[str, tuple[Path, str]]:
    """Each odd path and the words its error must hold."""
    os.symlink(tmp_path / "nowhere", tmp_path / "dang")
    os.symlink(tmp_path / "cycd2", tmp_path / "cycd1")
    os.symlink(tmp_path / "cycd1", tmp_path / "cycd2")
    os.mkfifo(tmp_path / "fifo")
    return {
        "dangling": (tmp_path / "dang", f"is a link to nothing ({tmp_path / 'nowhere'})"),
        "loop": (tmp_path / "cycd1", "is a link loop"),
        "fifo": (tmp_path / "fifo", "is a FIFO, not a folder"),
    }


def refused(capsys, *args) -> str:
    """The error line of a command that must stop with exit 2."""
    assert main([str(arg) for arg in args]) == 2, args
    errors = capsys.readouterr().err
    assert "Traceback" not in errors
    return errors


@pytest.mark.parametrize("kind", ["dangling", "loop", "fifo"])
def test_an_output_folder_that_is_a_dangling_link_a_loop_or_a_fifo_is_refused(tmp_path, capsys, odd_paths, kind):
    path, words = odd_paths[kind]
    runs = tmp_path / "runs"
    write_fake_store(runs)
    assert words in refused(capsys, "synth", path)
    assert words in refused(capsys, "report", runs, "--figures", path)
    assert not (tmp_path / "nowhere").exists()
    assert output_folder_problem(path) == words  # export_bundle's rule, the same


@pytest.mark.parametrize("kind", ["dangling", "loop", "fifo"])
def test_an_input_folder_that_is_a_dangling_link_a_loop_or_a_fifo_is_named_so(tmp_path, capsys, odd_paths, kind):
    path, words = odd_paths[kind]
    assert words in refused(capsys, "data", path)
    assert words in refused(capsys, "report", path)
    if kind != "fifo":  # MODEL and RUN may be files: a FIFO is refused there as not a bundle
        assert words in refused(capsys, "predict", path, tmp_path)
        assert words in refused(capsys, "export", path, tmp_path / "out")


def test_a_device_is_not_a_folder(capsys):
    assert "/dev/zero: is a character device, not a folder" in refused(capsys, "data", "/dev/zero")


def test_export_refuses_a_dangling_link_as_its_output_before_copying(tmp_path, monkeypatch, odd_paths):
    import feph_finetune.predict.bundle as bundle

    monkeypatch.setattr(bundle, "find_bundle", lambda run_dir: tmp_path)
    monkeypatch.setattr(bundle, "read_manifest", lambda folder: {"model": "model.keras"})
    for kind in ("dangling", "loop"):
        path, words = odd_paths[kind]
        with pytest.raises(BundleError, match=words.replace("(", r"\(").replace(")", r"\)")):
            export_bundle(tmp_path, path)
    assert not (tmp_path / "nowhere").exists()


def test_one_classification_names_each_kind_of_path_the_same_way_for_files_and_folders(tmp_path, odd_paths):
    """Every path message comes from ``classify_path``: what cannot be looked up reads the same
    whether a file or a folder was wanted; what exists is named by its kind."""
    from feph_finetune.data.user_files import UnreadableFile, check_user_file, classify_path, input_file_problem, input_folder_problem, lookup_problem, regular_file_problem

    (tmp_path / "file").write_text("x")
    for kind in ("dangling", "loop"):
        path, words = odd_paths[kind]
        assert lookup_problem(path) == input_folder_problem(path) == input_file_problem(path) == regular_file_problem(path) == words
        with pytest.raises(UnreadableFile, match=words.replace("(", r"\(").replace(")", r"\)")):
            check_user_file(path)
    expected = {  # path: (kind, as a folder, as a file)
        tmp_path / "fifo": ("fifo", "is a FIFO, not a folder", "is not a regular file (a FIFO); only regular files are read"),
        Path("/dev/null"): ("character device", "is a character device, not a folder", "is not a regular file (a character device); only regular files are read"),
        tmp_path: ("folder", None, "is a folder, not a file"),
        tmp_path / "file": ("file", "is a file, not a folder", None),
        tmp_path / "missing": ("missing", "no such folder", "no such file"),
    }
    for path, (kind, as_folder, as_file) in expected.items():
        assert (classify_path(path).kind, input_folder_problem(path), input_file_problem(path)) == (kind, as_folder, as_file), path
        assert lookup_problem(path) is None
    assert regular_file_problem(tmp_path / "missing") is None  # callers say "no such file" their own way
    assert classify_path(str(tmp_path / ("q" * 300))).kind == "bad name"
