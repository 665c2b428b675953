"""The experiment matrix: the paper's runs, inheritance, grids, stable ids, and clear errors."""

from __future__ import annotations

import json

import pytest

from feph_finetune.config.reading import ConfigError, read_config
from feph_finetune.config.matrix import build_matrix, select
from feph_finetune.plugins import get_plugins

from conftest import REPO, run_cli, write_matrix
from fephfixture import write_keras_archive


def matrix_of(path, overrides=()):
    return build_matrix(read_config(path, list(overrides)), get_plugins())


def paper_matrix_overrides(synthetic_feph, tmp_path) -> list[str]:
    """``--set`` arguments that point experiments.toml at test data and at stand-in whole-model
    files (validation reads their headers, without TensorFlow; a dry run never loads them)."""
    overrides = [f"dataset.root={synthetic_feph}"]
    for backbone in ("mobilenet", "efficientnet"):
        stand_in = tmp_path / f"{backbone}_7.keras"
        write_keras_archive(stand_in)
        overrides.append(f"defaults.options.{backbone}.weights={stand_in}")
    return [argument for override in overrides for argument in ("--set", override)]


def test_paper_matrix_has_12_exploratory_and_30_cv_runs_without_tensorflow(tmp_path, synthetic_feph):
    result = run_cli("experiments.toml", "--dry-run", "--json", *paper_matrix_overrides(synthetic_feph, tmp_path))
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    exploratory = [run for run in runs if run["phase"] == "exploratory"]
    cv = [run for run in runs if run["phase"] == "cv"]
    assert len(exploratory) == 12 and len(cv) == 30
    assert sorted({run["experiment"] for run in cv}) == ["E0", "E1", "E2", "M0", "M1", "M2"]
    assert sorted(run["fold"] for run in cv if run["experiment"] == "M1") == [0, 1, 2, 3, 4]
    assert all(run["fold"] is None for run in exploratory)
    assert len({run["id"] for run in runs}) == 42



def test_dry_run_table_and_plugins_listing_do_not_import_tensorflow(tmp_path, synthetic_feph):
    import subprocess
    import sys

    arguments = ["experiments.toml", "--dry-run", *paper_matrix_overrides(synthetic_feph, tmp_path)]
    code = (
        "import sys\n"
        "from feph_finetune.cli import main\n"
        f"assert main({arguments!r}) == 0\n"
        "main(['plugins', '--json'])\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_run_ids_are_stable_and_depend_on_the_configuration(tmp_path, synthetic_feph):
    experiments = """
    [experiments.A]
    phases = ["exploratory", "cv"]
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    first = [run.id for run in matrix_of(path).runs]
    assert first == [run.id for run in matrix_of(path).runs]
    assert len(set(first)) == 4
    changed = [run.id for run in matrix_of(path, ["defaults.batch_size=8"]).runs]
    assert set(changed).isdisjoint(first)
    relabelled = [run.id for run in matrix_of(path, ["experiments.A.label='renamed'"]).runs]
    assert relabelled == first


def test_inheritance_overrides_and_grid_expansion(tmp_path, synthetic_feph):
    experiments = """
    [experiments.base]
    optimizer = "adam"
    augment = ["flip"]
    phases = ["exploratory", "cv"]

    [experiments.child]
    extends = "base"
    class_weights = "class_weights"
    grid = { seed = [1, 2], "options.adam.lr" = [0.01, 0.001] }
    """
    matrix = matrix_of(write_matrix(tmp_path / "m.toml", synthetic_feph, experiments))
    child = [run for run in matrix.runs if run.experiment == "child"]
    assert len(child) == 4  # phases are not inherited: the child runs exploratory only
    assert all(run.config["augment"] == ["flip"] and run.config["class_weights"] == "class_weights" for run in child)
    assert sorted((run.seed, run.config["options"]["adam"]["lr"]) for run in child) == [(1, 0.001), (1, 0.01), (2, 0.001), (2, 0.01)]
    assert all(run.config["options"]["adam"]["head_epochs"] == 1 for run in child)  # from [defaults]
    assert len({run.id for run in child}) == 4
    assert [run.experiment for run in select(matrix, ["base"], "cv")] == ["base"] * 3


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[experiments.A]\nmodel = \"mobilenett\"\n", ["m.toml:", "experiments.A.model", "mobilenett", "did you mean 'mobilenet'", "installed:"]),
        ("[experiments.A]\nbatchsize = 8\n", ["m.toml:", "experiments.A.batchsize", "unknown key", "did you mean 'batch_size'"]),
        ("[experiments.A]\nbatch_size = \"eight\"\n", ["m.toml:", "experiments.A.batch_size", "expected integer", "string"]),
        ("[experiments.A]\nbatch_size = = 8\n", ["m.toml", "TOML syntax error", "line"]),
        ("[experiments.A]\n[experiments.A.options.adam]\nlr = \"fast\"\n", ["experiments.A.options.adam.lr", "expected float"]),
        ("[experiments.A]\n[experiments.A.options.adam]\nlearning_rate = 0.1\n", ["options.adam.learning_rate", "has no option"]),
    ],
)
def test_bad_configuration_gives_a_short_error_naming_the_place_and_exit_code_2(tmp_path, text, expected):
    path = tmp_path / "m.toml"
    path.write_text(f'[dataset]\nroot = "{tmp_path}"\n' + text, encoding="utf-8")
    result = run_cli(str(path), "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) < 20
    for fragment in expected:
        assert fragment in result.stderr


def test_line_numbers_point_at_the_offending_key(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(f'[dataset]\nroot = "{tmp_path}"\n\n[experiments.A]\nmodel = "nope"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        matrix_of(path)
    assert f"{path}:5 experiments.A.model" in str(error.value)


def test_all_problems_are_reported_at_once(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[dataset]\nroot = "/no/such/folder"\n[experiments.A]\nmodel = "nope"\nbatchsize = 3\n', encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        matrix_of(path)
    text = str(error.value)
    assert "dataset.root" in text and "does not exist" in text and "10.7910/DVN/358QMQ" in text and "--demo" in text
    assert "batchsize" in text


def test_set_override_reads_toml_values_and_plain_strings(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    matrix = matrix_of(path, ["defaults.batch_size=4", "experiments.A.augment=['flip']"])
    assert matrix.runs[0].config["batch_size"] == 4 and matrix.runs[0].config["augment"] == ["flip"]
    with pytest.raises(ConfigError) as error:
        matrix_of(path, ["defaults.batch_size=big"])
    assert "--set defaults.batch_size=big" in str(error.value)


def test_unknown_only_name_is_an_error(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.Alpha]\n")
    result = run_cli(str(path), "--dry-run", "--only", "Alpah")
    assert result.returncode == 2 and "did you mean 'Alpha'" in result.stderr


@pytest.mark.parametrize("key", ["label", "cv_label", "extends", "phases", "grid"])
def test_a_grid_over_a_key_that_names_or_shapes_the_experiment_says_why_not_and_what_instead(key, synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, f'[experiments.A.grid]\n{key} = ["x", "y"]\n')
    with pytest.raises(ConfigError) as raised:
        matrix_of(path)
    message = next(str(problem) for problem in raised.value.problems if f"grid.{key}" in problem.where)
    assert f"cannot expand {key!r}: " in message and "did you mean" not in message, message
