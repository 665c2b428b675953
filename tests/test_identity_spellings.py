"""Two ways of writing one setting, and a setting a run never reads, give one run id: the id
neither splits a configuration's runs (a trailing slash from tab completion rerunning every
finished run) nor lets a grid list one run twice; the ids of plainly written configurations stay."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from feph_finetune.config.matrix import build_matrix, recorded_id_rules
from feph_finetune.config.reading import ConfigError, read_config
from feph_finetune.plugins import get_plugins
from conftest import REPO, write_matrix

EXPERIMENTS_TOML = REPO / "experiments.toml"


def matrix_ids(tmp_path: Path, root: str | Path, sets: list[str] = (), experiments: str = "[experiments.FT]\n") -> list[str]:
    path = write_matrix(tmp_path / "m.toml", root, experiments)
    return [run.id for run in build_matrix(read_config(path, list(sets)), get_plugins()).runs]


def repo_ids(sets: list[str] = ()) -> list[str]:
    """The run ids of the repository's experiments.toml (no data or model files needed)."""
    return [run.id for run in build_matrix(read_config(EXPERIMENTS_TOML, list(sets)), get_plugins(), check_root=False).runs]


def digest(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


@pytest.mark.parametrize("sets, first, count, all_ids, trained", [
    # ``trained``: the ids of the 36 runs that fine-tune, as on main at b780e4a, before spellings
    # were normalised: results folders keep their ids. The No-FT M0's 6 runs changed with
    # Option(training_only): they hash mobilenet's cut_layer = "feats" (from [defaults]), which
    # No-FT does not read, at its default; their finished runs are carried over.
    ([], "M0-x-23591b41d1", 42, "287893896a01f38f", "973fd522c106c40c"),
    (["dataset.root=/srv/FePh"], "M0-x-99da50c1e5", 42, "99420c57e06bc776", "9f68b636195e5d10"),
    (["dataset.root=~/FePh"], "M0-x-a8ffa363d6", 42, "082909c0bdfc8270", "f16f6aa0ddb846ff"),
])
def test_plainly_written_configurations_keep_their_ids(sets, first, count, all_ids, trained):
    ids = repo_ids(sets)
    assert (ids[0], len(ids), digest(ids)) == (first, count, all_ids)
    assert digest([run_id for run_id in ids if not run_id.startswith("M0-")]) == trained


@pytest.mark.parametrize("spelling", ["FePh/", "./FePh", "FePh/../FePh", "./FePh//"])
def test_a_dataset_folder_spelled_another_way_is_the_same_runs(tmp_path, synthetic_feph, monkeypatch, spelling):
    monkeypatch.chdir(synthetic_feph.parent)
    assert matrix_ids(tmp_path, spelling) == matrix_ids(tmp_path, "FePh")


def test_the_labels_and_images_spelled_another_way_are_the_same_runs(tmp_path, synthetic_feph):
    plain = matrix_ids(tmp_path, synthetic_feph, ["dataset.labels=FePh_labels.csv", "dataset.images=FePh_images"])
    assert matrix_ids(tmp_path, synthetic_feph, ["dataset.labels=./FePh_labels.csv", "dataset.images=FePh_images/"]) == plain
    assert matrix_ids(tmp_path, f"{synthetic_feph}/") == matrix_ids(tmp_path, synthetic_feph)


@pytest.mark.parametrize("named", ["labels", "images", "labels absolute", "both"])
def test_naming_the_labels_or_images_the_format_finds_keeps_the_plain_ids(tmp_path, synthetic_feph, named):
    """README: the labels CSV and image folder "are found automatically, or name them": naming the
    ones found is the same configuration (its finished runs are not trained again)."""
    sets = {"labels": ["dataset.labels=FePh_labels.csv"], "images": ["dataset.images=FePh_images"],
            "labels absolute": [f"dataset.labels={synthetic_feph / 'FePh_labels.csv'}"],
            "both": ["dataset.labels=FePh_labels.csv", "dataset.images=FePh_images"]}[named]
    assert matrix_ids(tmp_path, synthetic_feph, sets) == matrix_ids(tmp_path, synthetic_feph)


def test_a_labels_file_with_other_labels_is_other_runs(tmp_path, synthetic_feph):
    root = tmp_path / "FePh"
    shutil.copytree(synthetic_feph, root)
    with open(root / "FePh_labels.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    rows[0]["Facial_label"] = "0" if rows[0]["Facial_label"] != "0" else "1"  # one image's label changed
    (root / "other").mkdir()
    with open(root / "other" / "relabelled.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    named = matrix_ids(tmp_path, root, ["dataset.labels=FePh_labels.csv"])
    assert matrix_ids(tmp_path, root, ["dataset.labels=other/relabelled.csv", "dataset.images=FePh_images"]) != named


def test_a_run_recorded_naming_the_labels_is_the_plain_configurations_run(tmp_path, synthetic_feph):
    """A run trained before this rule, its config.json naming the labels file the format finds,
    is identified as the plain configuration's run: carried over to its id, and counted once."""
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n")
    raw = read_config(path, ["dataset.labels=FePh_labels.csv", "dataset.images=FePh_images"])
    (named,) = build_matrix(raw, get_plugins()).runs
    recorded = json.loads(json.dumps({"run": named.describe(), "config": named.config.to_json(), "dataset": named.dataset}))
    identify = recorded_id_rules(read_config(path), get_plugins())
    assert identify(recorded, 3) == matrix_ids(tmp_path, synthetic_feph)[0]


@pytest.mark.parametrize("spelling, plain", [
    ("experiments.FT.validation_split=0", "experiments.FT.validation_split=0.0"),  # a whole number of a float setting is that float
    ("experiments.FT.options.mobilenet.dropout=0", "experiments.FT.options.mobilenet.dropout=0.0"),
    ("experiments.FT.options.face_crop.margin=1", "experiments.FT.options.face_crop.margin=1.0"),
    ("experiments.FT.options.adam.lr=1", "experiments.FT.options.adam.lr=1.0"),
    ("experiments.FT.validation_split=-0.0", "experiments.FT.validation_split=0"),  # negative zero is zero
    ("experiments.FT.options.mobilenet.dropout=-0.0", "experiments.FT.options.mobilenet.dropout=0.0"),
])
def test_spellings_of_one_float_give_one_id(tmp_path, synthetic_feph, spelling, plain):
    assert matrix_ids(tmp_path, synthetic_feph, [spelling]) == matrix_ids(tmp_path, synthetic_feph, [plain])


def test_a_run_is_given_the_declared_type(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\nvalidation_split = 0\noptions.face_crop.margin = 1\n")
    (run,) = build_matrix(read_config(path), get_plugins()).runs
    assert type(run.config["validation_split"]) is float and type(run.config["options"]["face_crop"]["margin"]) is float
    assert (run.config["validation_split"], run.config["options"]["face_crop"]["margin"]) == (0.0, 1.0)


@pytest.mark.parametrize("grid, repeated", [
    ('{ "options.face_crop.margin" = [1, 1.0] }', "1.0 is repeated (1 is the same value)"),
    ("{ validation_split = [0, 0.1, 0.0] }", "0.0 is repeated (0 is the same value)"),
    ("{ validation_split = [-0.0, 0.0] }", "0.0 is repeated (-0.0 is the same value)"),
    ('{ "options.face_crop" = [{ margin = 1 }, { margin = 1.0 }] }', "is repeated"),
])
def test_a_grid_value_written_twice_as_int_and_float_is_refused(tmp_path, synthetic_feph, grid, repeated):
    with pytest.raises(ConfigError, match="grid.*" + repeated.replace("(", r"\(").replace(")", r"\)")):
        matrix_ids(tmp_path, synthetic_feph, experiments=f"[experiments.FT]\ngrid = {grid}\n")


def test_a_grid_file_spelled_twice_is_refused():
    with pytest.raises(ConfigError, match="the values 'models/x.h5' and './models/x.h5' name the same file"):
        repo_ids(['experiments.M-FT.grid={"options.mobilenet.weights"=["models/x.h5", "./models/x.h5"]}'])


def test_folds_do_not_split_the_exploratory_runs_nor_the_test_fraction_the_folds(tmp_path, synthetic_feph):
    both = "[experiments.FT]\nphases = ['exploratory', 'cv']\n"
    two, three = (matrix_ids(tmp_path, synthetic_feph, [f"dataset.folds={folds}"], both) for folds in (2, 3))
    assert two[0] == three[0] and two[0].startswith("FT-x-") and two[1] != three[1]
    low, high = (matrix_ids(tmp_path, synthetic_feph, [f"dataset.test_fraction={fraction}"], both) for fraction in (0.25, 0.3))
    assert low[1:] == high[1:] and low[0] != high[0]


@pytest.mark.parametrize("training_only", [
    "optimizer=adam_sgd", "augment=['flip']", "class_weights=class_weights", "validation_split=0.1", "train_batchnorm=true", "head_features=false",
])
def test_a_setting_only_training_reads_keeps_the_no_ft_ids(training_only):
    plain, changed = repo_ids(), repo_ids([f"experiments.{name}.{training_only}" for name in ("M0", "E0", "M-FT")])
    assert [run_id for run_id in changed if run_id.startswith(("M0-", "E0-"))] == [run_id for run_id in plain if run_id.startswith(("M0-", "E0-"))]
    assert [run_id for run_id in changed if run_id.startswith("M-FT-x")] != [run_id for run_id in plain if run_id.startswith("M-FT-x")]


@pytest.mark.parametrize("head_option", ["dropout=0.5", "cut_layer='conv_pw_12'"])
def test_an_option_of_the_trained_head_keeps_the_no_ft_ids(head_option):
    """No-FT evaluates the pretrained classifier, not the head fine-tuning puts on it: a model's
    ``dropout`` and ``cut_layer`` (declared ``training_only``) do not split its runs."""
    plain = repo_ids()
    changed = repo_ids([f"defaults.options.{model}.{head_option}" for model in ("mobilenet", "efficientnet")])
    assert [run_id for run_id in changed if run_id.startswith(("M0-", "E0-"))] == [run_id for run_id in plain if run_id.startswith(("M0-", "E0-"))]
    assert [run_id for run_id in changed if run_id.startswith(("M-FT-x", "E1-x"))] != [run_id for run_id in plain if run_id.startswith(("M-FT-x", "E1-x"))]


def test_a_no_ft_run_recorded_with_a_head_option_is_the_plain_configurations_run():
    """A No-FT run trained before the rule, its config.json giving ``dropout``, is carried over
    to the id the configuration has now (and counted once by a report)."""
    (recorded_run,) = [run for run in build_matrix(read_config(EXPERIMENTS_TOML, ["experiments.M0.options.mobilenet.dropout=0.5"]), get_plugins(),
                                                   check_root=False).runs if run.id.startswith("M0-x-")]
    recorded = json.loads(json.dumps({"run": recorded_run.describe(), "config": recorded_run.config.to_json(), "dataset": recorded_run.dataset}))
    identify = recorded_id_rules(read_config(EXPERIMENTS_TOML), get_plugins())
    assert identify(recorded, 1234) == repo_ids()[0]


def test_the_model_plugins_declare_their_head_options_training_only():
    plugins = get_plugins()
    for model in ("mobilenet", "efficientnet", "keras_model"):
        declared = plugins.option_declarations(model)
        assert sorted(key for key, option in declared.items() if option.training_only) == ["cut_layer", "dropout"], model


def test_group_by_does_not_split_runs_that_a_group_pattern_groups(tmp_path, synthetic_feph):
    pattern = "dataset.group_pattern='^(.)'"
    by_pattern = [matrix_ids(tmp_path, synthetic_feph, [pattern, f"dataset.group_by={key}"]) for key in ("sequence", "signer")]
    assert by_pattern[0] == by_pattern[1]
    assert matrix_ids(tmp_path, synthetic_feph, ["dataset.group_by=signer"]) != matrix_ids(tmp_path, synthetic_feph)


def test_a_grid_given_with_set_is_named_by_its_set(tmp_path, synthetic_feph):
    grid = 'experiments.FT.grid={"options.adam.lr"=[-1.0, 0.01]}'
    with pytest.raises(ConfigError) as error:
        matrix_ids(tmp_path, synthetic_feph, [grid])
    (problem,) = [problem for problem in error.value.problems if "options.adam.lr" in str(problem)]
    assert problem.where == f"--set {grid} experiments.FT.grid.options.adam.lr"
