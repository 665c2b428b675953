"""The command line's own mistakes and messages: --set, --json, --only, data hints, file modes, interrupts."""

from __future__ import annotations

import json
import os
import stat

import pytest

from feph_finetune.cli import main
from feph_finetune.config.reading import ConfigError, parse_override, read_config
from feph_finetune.data.datasets import load_dataset
from feph_finetune.printable import shortened
from feph_finetune.results.store import write_json
from conftest import run_cli, write_matrix
from fephfixture import write_png


@pytest.fixture
def matrix_file(tmp_path, synthetic_feph):
    return write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.NoFT]\n[experiments.FineTune]\n")


@pytest.mark.parametrize("assignment", ["=4", " =4", "defaults. =4", "a..b=1", ".a=1", "defaults.batch_size", "defaults batch=1"])
def test_every_malformed_set_is_exit_2_showing_the_expected_form(matrix_file, capsys, assignment):
    assert main([str(matrix_file), "--dry-run", "--set", assignment]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert f"--set {assignment.strip()}" in message and "KEY=VALUE" in message and "e.g. --set dataset.root=" in message


def test_all_malformed_sets_are_reported_at_once(matrix_file, capsys):
    assert main([str(matrix_file), "--dry-run", "--set", "=4", "--set", "a..b=1"]) == 2
    message = capsys.readouterr().err
    assert "2 problems" in message and "--set =4" in message and "--set a..b=1" in message


def test_set_into_a_value_that_is_not_a_table_names_the_set(matrix_file, capsys):
    assert main([str(matrix_file), "--dry-run", "--set", "seed.x=1"]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "--set seed.x=1: seed is 3 (integer), not a table" in message


def test_set_keys_follow_toml_dotted_key_rules():
    assert parse_override("experiments.M2.options.adam.lr=1e-4") == (["experiments", "M2", "options", "adam", "lr"], 1e-4)
    assert parse_override('experiments."M2.b".label = FT SGD') == (["experiments", "M2.b", "label"], "FT SGD")
    assert parse_override("dataset.root=/data/FePh") == (["dataset", "root"], "/data/FePh")
    with pytest.raises(ConfigError):
        parse_override("a.=1")


def test_json_without_dry_run_is_refused_before_any_work(matrix_file, tmp_path):
    result = run_cli(str(matrix_file), "--json", "--output", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert "--json applies to --dry-run only" in result.stderr and "report OUTDIR --format json" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_unknown_only_lists_the_experiments_with_a_close_match(matrix_file, capsys):
    assert main([str(matrix_file), "--dry-run", "--only", "FineTun", "NOPE"]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "--only FineTun: no experiment 'FineTun' (did you mean 'FineTune'?); experiments: NoFT, FineTune" in message
    assert "--only NOPE: no experiment 'NOPE'; experiments: NoFT, FineTune" in message


def test_data_hints_name_the_command_line_flags_and_each_path_once(tmp_path, capsys):
    root = tmp_path / "release"
    root.mkdir()
    (root / "labels.csv").write_text("External ID,Facial_label\na.png,1\n", encoding="utf-8")
    assert main(["data", str(root)]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert message.count(str(root)) == 1 and "--images FOLDER" in message and "images_dir" not in message
    write_png(root / "frames" / "a.png")
    (root / "other.csv").write_text("External ID,Facial_label\n", encoding="utf-8")
    assert main(["data", str(root)]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "choose one with --labels FILE" in message and "labels_csv" not in message
    write_png(root / "more_frames" / "b.png")
    assert main(["data", str(root), "--labels", "labels.csv"]) == 2
    assert "choose one with --images FOLDER" in " ".join(capsys.readouterr().err.split())


def test_dataset_hints_name_the_toml_keys_by_default(tmp_path):
    (tmp_path / "a.csv").write_text("External ID,Facial_label\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("External ID,Facial_label\n", encoding="utf-8")
    with pytest.raises(Exception, match="choose one with dataset.labels$"):
        load_dataset({"root": str(tmp_path)})


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_result_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "run" / "result.json", {"status": "done"})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "run" / "result.json").stat().st_mode) == mode
    assert [path.name for path in (tmp_path / "run").iterdir()] == ["result.json"]


@pytest.mark.parametrize("force", ["--force", "--forc"])
def test_interrupt_prints_the_command_that_continues_without_force(matrix_file, tmp_path, monkeypatch, capsys, force):
    from feph_finetune.execution.runner import MatrixRunner

    def interrupted(self, runs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MatrixRunner, "run_all", interrupted)
    outdir = tmp_path / "my runs"
    assert main([str(matrix_file), force, "--only", "NoFT", "--output", str(outdir)]) == 130
    message = " ".join(capsys.readouterr().err.split())
    assert f"to continue, run: python -m feph_finetune {matrix_file} --only NoFT --output '{outdir}'" in message
    assert "--forc" not in message


def test_an_interrupted_force_leaves_no_stale_result_that_the_continue_command_would_skip(matrix_file, tmp_path, monkeypatch):
    from feph_finetune.config.reading import read_config
    from feph_finetune.config.matrix import build_matrix
    from feph_finetune.plugins import get_plugins
    from feph_finetune.results.store import RunStore
    from feph_finetune.execution.runner import MatrixRunner

    outdir = tmp_path / "runs"
    store = RunStore(outdir)
    ids = [run.id for run in build_matrix(read_config(matrix_file), get_plugins()).runs]
    for run_id in ids:
        store.finish(run_id, {"id": run_id, "status": "done"})

    def interrupted(self, runs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MatrixRunner, "run_all", interrupted)
    assert main([str(matrix_file), "--force", "--output", str(outdir)]) == 130
    assert not any(store.is_done(run_id) for run_id in ids)
    for run_id in ids:  # set aside, not lost
        assert json.loads((outdir / run_id / "result.previous.json").read_text()) == {"id": run_id, "status": "done"}


def test_set_never_adds_an_experiment_the_file_does_not_have(matrix_file, capsys):
    assert main([str(matrix_file), "--dry-run", "--set", "experiments.FineTun.batch_size=16", "--set", "experiments.Z={model='mobilenet'}"]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert f"no experiment 'FineTun' in {matrix_file} (did you mean 'FineTune'?); experiments: NoFT, FineTune" in message
    assert f"no experiment 'Z' in {matrix_file}; experiments: NoFT, FineTune" in message
    assert main([str(matrix_file), "--dry-run", "--json", "--set", "experiments.FineTune.batch_size=8"]) == 0
    assert [run["experiment"] for run in json.loads(capsys.readouterr().out)] == ["NoFT", "FineTune"]
    assert read_config(matrix_file, ["experiments.FineTune.batch_size=8"]).data["experiments"]["FineTune"]["batch_size"] == 8


def test_a_selection_without_runs_is_exit_2_naming_the_experiments_that_have_the_phase(matrix_file, tmp_path, capsys):
    for extra in ([], ["--only", "NoFT"]):
        assert main([str(matrix_file), "--dry-run", "--phase", "cv", *extra]) == 2
        captured = capsys.readouterr()
        assert "no runs selected (experiments with a cv phase: none)" in captured.err and captured.out == ""
    assert main([str(matrix_file), "--phase", "cv", "--output", str(tmp_path / "runs")]) == 2
    assert "results in" not in capsys.readouterr().out and not (tmp_path / "runs").exists()


def test_data_refuses_folds_below_two_and_a_dataset_without_images(tmp_path, synthetic_feph, capsys):
    for folds in ("0", "1", "-3"):
        assert main(["data", str(synthetic_feph), "--folds", folds]) == 2
        assert f"--folds {folds}: must be >= 2, not {folds}" in capsys.readouterr().err
    # the TOML's limit on dataset.folds, from the same declaration
    assert main(["data", str(synthetic_feph), "--folds", "10001", "--seed", "-1"]) == 2
    error = capsys.readouterr().err
    assert "--folds 10001: must be <= 10000, not 10001" in error and "--seed -1: must be >= 0, not -1" in error
    assert main(["data", str(synthetic_feph), "--test-fraction", "1"]) == 2
    assert "--test-fraction 1.0: must be < 1, not 1.0" in capsys.readouterr().err
    root = tmp_path / "header_only"
    write_png(root / "images" / "a.png")
    (root / "labels.csv").write_text("External ID,Facial_label\n", encoding="utf-8")
    assert main(["data", str(root), "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["images"] == 0  # the description is still printed
    assert f"{root}: no usable image" in captured.err


def test_output_folders_that_cannot_be_written_are_refused_before_any_work(matrix_file, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert main([str(matrix_file), "--output", str(a_file)]) == 2
    assert f"results directory {a_file}: is a file, not a folder" in capsys.readouterr().err
    assert main(["synth", str(a_file / "sub"), "--images", "3"]) == 2
    assert f"{a_file / 'sub'}: {a_file} is a file, not a folder" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "s"), "--images", "0"]) == 2
    assert "--images 0: must be >= 1, not 0" in capsys.readouterr().err and not (tmp_path / "s").exists()
    runs = tmp_path / "runs"
    write_json(runs / "r1" / "result.json", {"experiment": "A", "phase": "exploratory", "status": "done", "metrics": {"accuracy": 0.5}})
    assert main(["report", str(runs), "--figures", str(a_file)]) == 2
    captured = capsys.readouterr()
    assert f"--figures {a_file}: is a file, not a folder" in captured.err and captured.out == ""


#: A value of kilobytes: every message quotes it shortened (first 20 characters, …, last 8).
LONG_WORD = "A" * 20000


@pytest.mark.parametrize("arguments, shown", [
    (["--only", LONG_WORD], "--only AAAAAAAAAAAAAAAAAAAA…AAAAAAAA: no experiment 'AAAAAAAAAAAAAAAAAAA…AAAAAAA'"),
    (["--set", "experiments.NoFT.grid.seed=" + "[" * 20000 + "]" * 20000], "--set experiments.NoFT.grid.seed=" + "[" * 100 + "…]]]]]]]]: expected a non-empty array"),
    (["--set", f"experiments.{LONG_WORD}.seed=1"], "--set experiments." + "A" * 88 + "…AAA.seed=1: no experiment 'AAAAAAAAAAAAAAAAAAA…AAAAAAA'"),
    (["--phase", LONG_WORD], "argument --phase: invalid choice: 'AAAAAAAAAAAAAAAAAAAA…AAAAAAAA' (choose from"),
    ([LONG_WORD], "unrecognized arguments: AAAAAAAAAAAAAAAAAAAA…AAAAAAAA"),
])
def test_a_long_value_is_quoted_short_in_every_message(matrix_file, capsys, arguments, shown):
    try:
        code = main([str(matrix_file), "--dry-run", *arguments])
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    error = capsys.readouterr().err
    assert code == 2 and shown in error and "Traceback" not in error and len(error.encode()) < 1024


def test_argparse_quotes_a_bad_flag_value_short(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["data", str(tmp_path), "--folds", LONG_WORD])
    error = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --folds: invalid integer value: 'AAAAAAAAAAAAAAAAAAAA…AAAAAAAA'" in error
    assert len(error.encode()) < 1024


def refusal(arguments: list[str], capsys) -> str:
    """What argparse's refusal of ``arguments`` prints on stderr (it exits 2 by itself)."""
    with pytest.raises(SystemExit) as stop:
        main(arguments)
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("arguments", [["--phase", "nope", "m.toml"], [], ["plugins", "--bogus"], ["report"], ["data", "x", "--folds", "two"]], ids=repr)
def test_a_usage_error_starts_as_every_error_does(arguments, capsys):
    """argparse wrote "python -m feph_finetune: error: ...", where every other error says "error: ..."."""
    error = refusal(arguments, capsys)
    assert error.startswith("error: ") and ": error:" not in error and "usage: python -m feph_finetune" in error


def test_only_taking_the_toml_says_so(matrix_file, capsys):
    """``--only A exp.toml`` left no EXPERIMENTS.toml, and argparse only said that it is required."""
    error = " ".join(refusal(["--only", "NoFT", str(matrix_file), "--dry-run"], capsys).split())
    assert f"--only took '{shortened(str(matrix_file))}' as an experiment name" in error and "put EXPERIMENTS.toml before --only" in error


@pytest.mark.parametrize("name", ["-rf", "--force", "..", ".hidden", "_x", "Ä1", "A\\n", "A B"])
def test_an_experiment_name_is_refused_with_the_rule_it_breaks(tmp_path, synthetic_feph, capsys, name):
    """``-rf`` was refused with "names may use letters, digits and _ . + - only", which it does."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f'[experiments."{name}"]\n[experiments."M2.b+c-d_e"]\n')
    assert main([str(path), "--dry-run"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "an experiment name starts with an ASCII letter or digit and goes on with ASCII letters, digits and _ . + - only" in error
    assert error.count("an experiment name starts") == 1  # M2.b+c-d_e keeps to the rule
