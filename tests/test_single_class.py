"""Data of one class trains nothing worth a number (every run reports 100%): the dry run refuses
it as it refuses a single group, and ``data`` shows it and says so, exit 2 (issue 22, round 9:
``format = "folders"`` on a FePh root reads the image folder as the one class "FePh_images")."""

from __future__ import annotations

from feph_finetune.cli import main

from conftest import line_of, write_matrix


def test_the_dry_run_refuses_data_of_one_class_naming_the_root_and_the_class(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--dry-run", "--set", "dataset.format=folders"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert (f"{path}:{line_of(path, 'root = ')} dataset.root: the data in {synthetic_feph} (format = 'folders') has images of one class only, "
            "'FePh_images'") in error
    assert "a classifier needs at least 2 classes" in error


def test_the_dry_run_accepts_the_same_root_read_with_its_classes(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--dry-run"]) == 0


def test_data_shows_one_class_and_says_it_is_too_few(synthetic_feph, capsys):
    assert main(["data", str(synthetic_feph), "--format", "folders"]) == 2
    captured = capsys.readouterr()
    assert "FePh_images" in captured.out  # the description is shown first
    assert f"the data in {synthetic_feph} (format = 'folders') has images of one class only, 'FePh_images'" in captured.err
    assert "Traceback" not in captured.err
