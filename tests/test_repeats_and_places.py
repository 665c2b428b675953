"""Issue 22's configuration and command-line mistakes of one kind each: a plugin or phase listed
twice, an option given twice, a ``--set`` mistake named at another place, options with no
effect, and arguments that name a file or a run's folder where a folder of another kind is
meant. Each is caught before any work (exit 2) and named at its place. No test here trains."""

from __future__ import annotations

import json

import pytest

from feph_finetune.cli import main
from feph_finetune.printable import counted
from fake_store import write_fake_store

from conftest import line_of, write_matrix
from fephfixture import write_keras_archive


def place(path, text: str, key: str) -> str:
    return f"{path}:{line_of(path, text)} {key}"


def dry_run_error(path, capsys, *flags: str) -> str:
    """The error of ``--dry-run`` over ``path``, which must exit 2 without a traceback, in one line."""
    assert main([str(path), "--dry-run", *flags]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    return " ".join(error.split())


# --- a plugin or phase listed twice ----------------------------------------------------------------


@pytest.mark.parametrize("key, value, item", [
    ("preprocess", '["face_crop", "face_crop"]', "face_crop"),
    ("augment", '["flip", "flip"]', "flip"),
    ("evaluate", '["paper_metrics", "paper_metrics"]', "paper_metrics"),
    ("phases", '["cv", "cv"]', "cv"),
])
def test_an_item_listed_twice_is_refused_at_its_line_and_at_its_set(tmp_path, synthetic_feph, capsys, key, value, item):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f"[experiments.A]\n{key} = {value}\n[experiments.B]\n")
    error = dry_run_error(path, capsys)
    assert f"{place(path, f'{key} = ', f'experiments.A.{key}')}: {key} lists {item!r} twice; list it once" in error
    assert "error: 2 problems" not in error and "two runs have the id" not in error  # one problem, not the run ids it would make
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n[experiments.B]\n")
    error = dry_run_error(path, capsys, "--set", f"experiments.B.{key}={value}")
    assert f"--set experiments.B.{key}={value}: {key} lists {item!r} twice; list it once" in error


def test_a_plugin_listed_twice_in_defaults_is_one_problem_at_its_line(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n[experiments.B]\n")
    path.write_text(path.read_text().replace('preprocess = ["face_crop"]', 'preprocess = ["face_crop", "face_crop"]'))
    error = dry_run_error(path, capsys)
    assert f"error: {place(path, 'preprocess = ', 'defaults.preprocess')}: preprocess lists 'face_crop' twice" in error


def test_a_plugin_listed_twice_in_the_demo_defaults_is_refused_without_demo_too(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n", extra='\n[demo.defaults]\naugment = ["flip", "flip"]\n')
    for flags in ([], ["--demo"]):
        error = dry_run_error(path, capsys, *flags)
        assert error.count(f"{place(path, 'augment = ', 'demo.defaults.augment')}: augment lists 'flip' twice; list it once") == 1, (flags, error)


# --- options given twice ---------------------------------------------------------------------------


@pytest.mark.parametrize("flags, given", [
    (["--phase", "cv", "--phase", "exploratory"], "--phase given twice (cv, then exploratory); give it once"),
    (["--output", "a", "--output", "b"], "--output given twice (a, then b); give it once"),
    (["--executor", "inline", "--executor", "process"], "--executor given twice (inline, then process); give it once"),
])
def test_an_option_of_one_value_given_twice_is_refused(tmp_path, synthetic_feph, capsys, flags, given):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    with pytest.raises(SystemExit) as exit:
        main([str(path), "--dry-run", *flags])
    assert exit.value.code == 2 and f"error: {given}" in capsys.readouterr().err


@pytest.mark.parametrize("first, second", [
    ("seed=4", "seed=5"),  # was last-wins: the runs of seed 5, without a word
    ("dataset.folds=3", "dataset.folds=4"),
    ('experiments.A.options.flip.mode="random"', 'experiments.A.options.flip.mode="double"'),
    ("seed=4", "seed=4.0"),  # a float is another value than an int
])
def test_a_set_key_given_twice_with_different_values_is_refused_naming_both(tmp_path, synthetic_feph, capsys, first, second):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\naugment = ["flip"]\n')
    error = dry_run_error(path, capsys, "--set", first, "--set", second)
    key = first.partition("=")[0]
    assert f"error: --set {second}: {key} is given twice with different values, here and in --set {first}; give it once" in error, error


@pytest.mark.parametrize("first, second", [
    ("experiments.A.options.adam.lr=1", "experiments.A.options.adam={lr=2}"),
    ("experiments.A.options.adam={lr=2}", "experiments.A.options.adam.lr=1"),
    ("experiments.A.options.adam={lr=2}", "experiments.A.options.adam.lr=2"),  # even when they agree: one is enough
])
def test_a_set_key_and_a_table_holding_it_both_set_are_refused_naming_both(tmp_path, synthetic_feph, capsys, first, second):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    error = dry_run_error(path, capsys, "--set", first, "--set", second)
    assert f"error: --set {second}: {second.partition('=')[0]} overlaps --set {first}: experiments.A.options.adam is a table holding " \
           "experiments.A.options.adam.lr, and both are set; set each key once" in error, error


def test_a_set_key_given_twice_with_the_same_value_is_accepted(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--dry-run", "--json", "--set", "seed=5", "--set", "seed=5"]) == 0
    assert {run["seed"] for run in json.loads(capsys.readouterr().out)} == {5}


def test_only_given_twice_selects_both_as_one_only_with_both_does(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.N]\n[experiments.P]\n[experiments.Q]\n")
    assert main([str(path), "--dry-run", "--json", "--only", "N", "--only", "P"]) == 0
    assert sorted(run["experiment"] for run in json.loads(capsys.readouterr().out)) == ["N", "P"]


def test_counts_of_one_are_singular(tmp_path, synthetic_feph, capsys):
    assert [counted(number, "run") for number in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1 run" in out and "1 runs" not in out


# --- a --set mistake is named at the --set ---------------------------------------------------------


@pytest.mark.parametrize("assignment, named", [
    ("experiments.A.options.adma.lr=1", "--set experiments.A.options.adma.lr=1"),
    ("defaults.options.adma.lr=1", "--set defaults.options.adma.lr=1"),
    ('experiments.A.grid={"options.adma.lr"=[1,2]}', '--set experiments.A.grid={"options.adma.lr"=[1,2]} experiments.A.grid.options.adma.lr'),
])
def test_options_of_a_misspelt_plugin_given_with_set_are_named_at_the_set(tmp_path, synthetic_feph, capsys, assignment, named):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\nmodel = \"mobilenet\"\n")
    error = dry_run_error(path, capsys, "--set", assignment)
    assert f"error: {named}: options for an unusable plugin: plugin 'adma' is not installed (did you mean 'adam'?)" in error
    assert str(path) not in error


def test_options_of_a_plugin_the_experiment_does_not_use_are_a_warning(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\n[experiments.B]\naugment = ["flip"]\n[experiments.C]\noptions.normalize.mode = "rgb_means"\n',
                        extra='\n[defaults.options.flip]\nmode = "double"\n')
    assert main([str(path), "--dry-run", "--set", 'experiments.A.options.flip.mode="random"']) == 0
    warnings = [" ".join(line.split()) for line in capsys.readouterr().err.split("warning: ")[1:]]
    assert warnings == [
        "--set experiments.A.options.flip.mode=\"random\": options of the plugin 'flip', which experiment A does not use, so they have no effect; "
        "name it in the experiment's augment, or remove them",
        f"{place(path, 'options.normalize.mode', 'experiments.C.options.normalize.mode')}: options of the plugin 'normalize', which experiment C "
        "does not use, so they have no effect; name it in the experiment's preprocess, or remove them",
    ]  # [defaults.options.flip] serves B: no word


def test_what_only_training_reads_set_on_a_no_ft_experiment_is_a_warning(tmp_path, synthetic_feph, capsys):
    model_file = tmp_path / "savchenko.keras"
    write_keras_archive(model_file)
    experiments = (f'[experiments.N]\nfine_tune = false\noptions.mobilenet.weights = "{model_file}"\noptions.mobilenet.dropout = 0.5\n'
                   "[experiments.F]\noptions.mobilenet.dropout = 0.5\n")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    assert main([str(path), "--dry-run", "--set", 'experiments.N.augment=["flip"]', "--set", 'defaults.options.mobilenet.cut_layer="conv_pw_12"']) == 0
    warnings = [" ".join(line.split()) for line in capsys.readouterr().err.split("warning: ")[1:]]
    no_effect = ("shapes only what fine-tuning trains, and experiment N is No-FT (fine_tune = false): it evaluates the pretrained "
                 "classifier untrained, so its result does not depend on this")
    assert warnings == [
        f'--set experiments.N.augment=["flip"]: augment {no_effect}; remove it',
        f"{path}:{line_of(path, 'fine_tune = false') + 2} experiments.N.options.mobilenet.dropout: option 'dropout' of the plugin 'mobilenet' {no_effect}",
    ]  # F fine-tunes, and cut_layer in [defaults] serves it: no word


# --- a file or a run's folder where another folder is meant ----------------------------------------


def test_report_of_one_runs_folder_names_the_results_folder(tmp_path, capsys):
    write_fake_store(tmp_path / "runs", experiments=["M0"])
    assert main(["report", str(tmp_path / "runs" / "M0-x-fake")]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert f"one run's folder (it holds result.json); give the results directory that holds it: python -m feph_finetune report {tmp_path / 'runs'}" in error


def test_data_of_a_file_names_the_folder_that_holds_it(synthetic_feph, capsys):
    labels = next(synthetic_feph.glob("*.csv"))
    assert main(["data", str(labels)]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert f"ROOT {labels}: is a file, not a folder: give the dataset folder that holds it ({synthetic_feph})" in error
    assert "download" not in error.lower()


def test_export_of_a_bundles_file_names_the_bundle_folder(tmp_path, capsys):
    bundle = tmp_path / "A-x-0123456789"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}", encoding="utf-8")
    assert main(["export", str(bundle / "bundle.json"), str(tmp_path / "out")]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert f"{bundle / 'bundle.json'}: a file of the model bundle {bundle}; give that folder, not its bundle.json" in error
    assert "no bundle.json" not in error
