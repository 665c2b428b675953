"""A run's resolved configuration is a typed record (issue 20): :class:`feph_finetune.RunConfig`,
generated from the schema's experiment keys, frozen, a read-only mapping for plugins, with a
JSON round trip that is ``config.json``'s ``config``.

No test here trains or imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Mapping

import pytest

import feph_finetune
from feph_finetune.config.resolved import RunConfig
from feph_finetune.config.schema import EXPERIMENT_OPTIONS
from feph_finetune.results.store import write_json
from feph_finetune.session import Session

from conftest import TinyMatrix, write_matrix


def test_its_fields_are_the_schemas_experiment_keys_with_their_defaults_and_types():
    fields = dataclasses.fields(RunConfig)
    assert [field.name for field in fields] == list(EXPERIMENT_OPTIONS)
    assert all(field.metadata["option"] is EXPERIMENT_OPTIONS[field.name] for field in fields)
    types = {field.name: field.type for field in fields}
    assert types["batch_size"] is int and types["validation_split"] is float and types["fine_tune"] is bool
    assert types["augment"] == list[str] and types["seed"] == int | None
    assert RunConfig().to_json() == {key: option.default for key, option in EXPERIMENT_OPTIONS.items()}
    assert feph_finetune.RunConfig is RunConfig


def test_a_plans_runs_carry_their_resolved_configuration_as_a_record(synthetic_feph, tmp_path):
    experiments = """
    [experiments.A]
    augment = ["flip"]
    grid = { "options.adam.lr" = [0.001, 0.01] }

    [experiments.B]
    extends = "A"
    batch_size = 8
    """
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, experiments)
    runs = Session(path).plan()
    a = next(run for run in runs if run.experiment == "A")
    assert isinstance(a.config, RunConfig)
    assert a.config.batch_size == a.config["batch_size"] == 16 and a.config.input_size == 32 and a.config.seed == 3
    assert a.config.options["adam"]["lr"] in (0.001, 0.01) and a.config.label == "A"
    b = next(run for run in runs if run.experiment == "B")
    assert b.config.batch_size == 8 and b.config.augment == ["flip"] and b.config.label == "B"


def test_it_is_frozen_and_a_read_only_mapping_as_plugins_receive_it(synthetic_feph, tmp_path):
    tiny = TinyMatrix(tmp_path, synthetic_feph, "[experiments.A]\n")
    config = tiny.context("A", "mobilenet").config
    assert isinstance(config, Mapping) and config == tiny.runs["A"].config  # the run's own copy (a hook's change stays in the run)
    assert config is not tiny.runs["A"].config and config.options is not tiny.runs["A"].config.options
    assert config["model"] == "mobilenet" and config.get("timeout") == 0.0 and config.get("nonsense", 7) == 7
    assert "batch_size" in config and "nonsense" not in config and len(config) == len(EXPERIMENT_OPTIONS)
    assert list(config) == list(EXPERIMENT_OPTIONS) and dict(config.items())["batch_size"] == 16
    with pytest.raises(KeyError):
        config["nonsense"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 8
    with pytest.raises(TypeError):
        config["batch_size"] = 8  # no item assignment: a Mapping, not a dict


def test_its_json_form_is_config_jsons_in_the_schemas_order_and_reads_back(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\ngrid = { batch_size = [8] }\n')
    (run,) = Session(path).plan()
    written = json.dumps(run.config.to_json(), indent=2)
    assert list(json.loads(written)) == list(EXPERIMENT_OPTIONS)
    again = RunConfig.from_json(json.loads(written))
    assert again == run.config and json.dumps(again.to_json(), indent=2) == written
    assert pickle.loads(pickle.dumps(run.config)) == run.config  # the process executor sends runs to its children
    write_json(tmp_path / "manifest.json", {"config": run.config})  # as a model bundle's manifest holds it
    assert json.loads((tmp_path / "manifest.json").read_text())["config"] == run.config.to_json()
    copied = run.config.to_json()
    copied["options"]["mobilenet"]["alpha"] = 1.0
    assert run.config.options["mobilenet"]["alpha"] == 0.25, "to_json gives a copy"


def test_from_json_fills_keys_an_older_file_lacks_and_refuses_what_the_schema_refuses():
    older = {key: value for key, value in RunConfig().to_json().items() if key not in ("timeout", "validation_split")}
    assert RunConfig.from_json(older).timeout == 0.0
    with pytest.raises(ValueError) as refused:
        RunConfig.from_json({"batch_size": "eight", "batch_sise": 8, "input_size": 16})
    message = str(refused.value)
    assert "unknown key 'batch_sise'" in message and "batch_size: expected integer, got string 'eight'" in message
    assert "input_size: must be >= 32, not 16" in message
