"""A setting that does not change a run's result (``save_model``) neither splits nor merges a
configuration's runs: the run id ignores it, and the ids of existing results folders stay."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from feph_finetune.predict.bundle import BundleError, find_bundle
from feph_finetune.cli import main
from feph_finetune.config.reading import EXPERIMENT_DEFAULTS, RESULT_NEUTRAL_KEYS, ConfigError, read_config
from feph_finetune.config.matrix import build_matrix, run_id
from feph_finetune.plugins import get_plugins
from feph_finetune.results.store import RunStore
from feph_finetune_plugins import mobilenet
from conftest import write_matrix
from fake_store import metrics_of, record, sample_confusion

DATASET = {"root": "data/FePh", "folds": 5, "test_fraction": 0.2, "group_by": "sequence", "fingerprint": "abc", "split_seed": 1234}


def default_config(**changes) -> dict:
    config = copy.deepcopy(EXPERIMENT_DEFAULTS)
    config.update(seed=1234, label="FT", options={"face_crop": {"margin": 0.2}}, **changes)
    return config


def test_ids_of_existing_configurations_are_unchanged():
    # Computed with run_id on main at commit 301ebcd, before result-neutral keys existed: every
    # results folder written before keeps its ids, so its finished runs are still skipped.
    assert run_id("M2", "exploratory", None, default_config(), DATASET) == "M2-x-4230f50498"
    assert run_id("M2", "cv", 3, default_config(), DATASET) == "M2-cv3-46b24321ac"


@pytest.mark.parametrize("key", RESULT_NEUTRAL_KEYS)
def test_a_result_neutral_key_keeps_the_id(key):
    changed = default_config(**{key: {"save_model": True, "timeout": 60.0}[key]})
    assert run_id("M2", "exploratory", None, changed, DATASET) == run_id("M2", "exploratory", None, default_config(), DATASET)
    assert run_id("M2", "exploratory", None, default_config(batch_size=16), DATASET) != run_id("M2", "exploratory", None, default_config(), DATASET)


def test_saving_a_model_keeps_the_matrix_ids(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\nphases = ['exploratory', 'cv']\n")
    plain = build_matrix(read_config(path), get_plugins())
    saving = build_matrix(read_config(path, ["experiments.FT.save_model=true"]), get_plugins())
    assert [run.id for run in saving.runs] == [run.id for run in plain.runs]
    assert all(run.config["save_model"] for run in saving.runs)


def test_a_grid_over_a_result_neutral_key_is_refused(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\ngrid = { save_model = [true, false] }\n")
    with pytest.raises(ConfigError, match="save_model.*does not change a run's result"):
        build_matrix(read_config(path), get_plugins())


def test_a_finished_run_without_a_model_says_how_to_save_one(tmp_path, synthetic_feph, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.FT]\n")
    (run,) = build_matrix(read_config(path), get_plugins()).runs
    store = RunStore(tmp_path / "runs")
    finished = record("M2", 0, "exploratory", None, metrics_of(sample_confusion(0.6, np.random.default_rng(0))), 1.0)
    store.finish(run.id, {**finished, "id": run.id, "experiment": "FT", "cv_label": ""})
    with pytest.raises(BundleError) as error:
        find_bundle(store.run_dir(run.id))
    message = str(error.value)
    assert f"--only FT --phase exploratory --set experiments.FT.save_model=true --output {store.root} --force" in message
    # The matrix with save_model skips the finished run (same id) and says how to save its model.
    assert main([str(path), "--output", str(store.root), "--set", "experiments.FT.save_model=true"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "skipped 1 finished run " in out and f"1 of them finished without a saved model although save_model = true ({run.id}); to run them again and save it: " in out


@pytest.mark.parametrize("error, why", [
    ({"plugin": "sam", "hook": "training_stages", "type": "ValueError", "message": "rho"}, "failed"),
    ({"plugin": "core", "hook": "timeout", "type": "TimedOut", "message": "timed out after 5 s in training"}, "timed out"),
])
def test_a_failed_run_without_a_model_says_the_matrix_reruns_it_without_force(tmp_path, error, why):
    """Only a finished run is skipped as finished: a failed or timed-out one is run again anyway."""
    store = RunStore(tmp_path / "runs")
    failed = record("M2", 0, "exploratory", None, None, 1.0)
    store.finish(failed["id"], {**failed, "status": "failed", "error": error})
    with pytest.raises(BundleError) as raised:
        find_bundle(store.run_dir(failed["id"]))
    message = str(raised.value)
    assert f"the run {why}, so the matrix runs it again" in message and "--force" not in message
    assert f"--only M2 --phase exploratory --set experiments.M2.save_model=true --output {store.root} (with --demo" in message  # no config.json: what to add


def test_a_failed_runs_line_names_the_core_or_the_plugin_and_a_timeout_says_where():
    from feph_finetune.execution.job import failure_summary

    assert failure_summary({"plugin": "core", "hook": "timeout", "type": "TimedOut", "message": "timed out after 5 s in training"}) == "timed out after 5 s in training"
    assert failure_summary({"plugin": "core", "hook": "run", "type": "OSError", "message": "disk"}) == "failed in the core (run): OSError: disk"
    assert failure_summary({"plugin": "sam", "hook": "training_stages", "type": "ValueError", "message": "rho"}) == "failed in plugin 'sam' (training_stages): ValueError: rho"



def test_an_option_added_unhashed_at_its_default_keeps_the_id(tmp_path, synthetic_feph, monkeypatch):
    # backbones' ``outputs`` came after results existed: at its default a run keeps the id it had
    # when mobilenet did not declare it; set to another value, it makes another run
    def ids(line: str = "") -> list[str]:
        path = write_matrix(tmp_path / "m.toml", synthetic_feph, f"[experiments.FT]\n{line}\n")
        return [run.id for run in build_matrix(read_config(path), get_plugins()).runs]

    declared, logits = ids('options.mobilenet.outputs = "probabilities"'), ids('options.mobilenet.outputs = "logits"')
    without = {key: option for key, option in mobilenet.common_options().items() if key != "outputs"}
    monkeypatch.setattr(mobilenet, "common_options", lambda: without)
    get_plugins.cache_clear()
    try:
        assert declared == ids() != logits
    finally:
        get_plugins.cache_clear()
