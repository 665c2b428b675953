"""A setting given by its own argument (a flag, ``data``'s ROOT) and by a ``--set`` of another
value is refused naming both, as ``--set`` given twice is; one of them would otherwise win without
a word (issue 22, round 9: ``data ROOT --set dataset.folds=3 --folds 4`` used 3 folds). The same
value twice is accepted."""

from __future__ import annotations

import pytest

from feph_finetune.cli import main

from conftest import write_matrix


@pytest.mark.parametrize(("flags", "line"), [
    (["--folds", "4", "--set", "dataset.folds=3"], "--set dataset.folds=3: dataset.folds is given twice with different values, here and in --folds 4"),
    (["--test-fraction", "0.3", "--set", "dataset.test_fraction=0.25"], "here and in --test-fraction 0.3"),
    (["--format", "folders", "--set", "dataset.format=feph"], "--set dataset.format=feph: dataset.format is given twice with different values, here and in --format folders"),
    (["--group-by", "signer", "--set", "dataset.group_by=sequence"], "here and in --group-by signer"),
    (["--set", "dataset.root=elsewhere"], "--set dataset.root=elsewhere: dataset.root is given twice with different values, here and in ROOT "),
], ids=["folds", "test_fraction", "format", "group_by", "root"])
def test_data_refuses_a_flag_and_a_set_of_one_setting_with_two_values(flags, line, synthetic_feph, capsys):
    assert main(["data", str(synthetic_feph), *flags]) == 2
    error = capsys.readouterr().err
    assert line in error and "Traceback" not in error, error


def test_data_accepts_a_flag_and_a_set_of_the_same_value(synthetic_feph, capsys):
    assert main(["data", str(synthetic_feph), "--folds", "3", "--set", "dataset.folds=3", "--set", f"dataset.root={synthetic_feph}/", "--json"]) == 0
    assert '"folds"' in capsys.readouterr().out


@pytest.mark.parametrize(("flags", "line"), [
    (["--output", "b", "--set", "output=a"], "--output b: output is given twice with different values, here and in --set output=a"),
    (["--executor", "process", "--set", "executor.name=inline"], "--executor process: executor.name is given twice with different values, here and in --set executor.name=inline"),
    (["--jobs", "3", "--set", "executor.process.jobs=2"], "--jobs 3: executor.process.jobs is given twice with different values, here and in --set executor.process.jobs=2"),
    (["--devices", "1", "--set", "executor.process={devices=[0]}"], "--devices 1: executor.process.devices is given twice with different values, here and in --set executor.process={devices=[0]}"),
], ids=["output", "executor", "jobs", "devices"])
def test_the_matrix_refuses_a_flag_and_a_set_of_one_setting_with_two_values(flags, line, tmp_path, synthetic_feph, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--dry-run", *flags]) == 2
    error = capsys.readouterr().err
    assert line in error and "Traceback" not in error, error


def test_the_matrix_accepts_a_flag_and_a_set_of_the_same_value(tmp_path, synthetic_feph, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    same = ["--output", "out", "--set", "output=out/", "--executor", "process", "--set", "executor.name=process", "--jobs", "2", "--set", "executor.process.jobs=2"]
    assert main([str(path), "--dry-run", *same]) == 0
