"""The plugin system: built-ins, entry-point plugins from real distributions, restrictions."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from feph_finetune.hookspecs import hookimpl
from feph_finetune.plugins import PluginLoadError, get_plugins, hook_names, reset_plugins

from conftest import run_cli, write_matrix

SIX_HOOKS = {"preprocess", "augment", "build_model", "optimizer_schedule", "weight_classes", "evaluate"}


def write_distribution(site, name="feph-extra", version="1.2.3", module="feph_extra_metric", body=None):
    """A real installed distribution: a module plus a ``*.dist-info`` with ``entry_points.txt``."""
    body = body or """
        from feph_finetune import hookimpl

        CALLS = []

        @hookimpl
        def evaluate(y_true, y_prob, context):
            CALLS.append(context.run_id)
            return {"majority_share": float((y_true == 6).mean())}
    """
    (site / f"{module}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[feph_finetune]\nextra_metric = {module}\n", encoding="utf-8")
    return site


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    yield folder
    sys.modules.pop("feph_extra_metric", None)


def test_the_hookspecs_are_the_designs_six_plus_options():
    assert set(hook_names()) == SIX_HOOKS | {"plugin_options", "register_executors"}


def test_plugins_json_lists_builtins_covering_all_six_hooks():
    result = run_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert all({"name", "origin", "hooks"} <= set(entry) for entry in listed)
    builtins = [entry for entry in listed if entry["origin"] == "builtin"]
    assert {hook for entry in builtins for hook in entry["hooks"]} >= SIX_HOOKS
    assert {"face_crop", "normalize", "flip", "mobilenet", "efficientnet", "adam", "adam_sgd", "sam", "sam_sgd", "class_weights", "paper_metrics"} <= {
        entry["name"] for entry in builtins
    }


def test_entry_point_plugin_is_listed_with_its_distribution(site):
    write_distribution(site)
    info = {entry.name: entry for entry in get_plugins().info()}
    assert info["extra_metric"].origin == "feph-extra 1.2.3"
    assert info["extra_metric"].hooks == ("evaluate",)


def test_load_plugins_variable_restricts_entry_points(site, monkeypatch):
    write_distribution(site)
    monkeypatch.setenv("FEPH_FINETUNE_LOAD_PLUGINS", "")
    reset_plugins()
    assert "extra_metric" not in get_plugins().names()
    monkeypatch.setenv("FEPH_FINETUNE_LOAD_PLUGINS", "feph_extra")  # names compare normalised
    reset_plugins()
    assert "extra_metric" in get_plugins().names()
    monkeypatch.setenv("FEPH_FINETUNE_LOAD_PLUGINS", "something-else")
    reset_plugins()
    assert "extra_metric" not in get_plugins().names()


def test_misspelled_hook_is_reported_with_the_plugin_name(site):
    write_distribution(site, body="from feph_finetune import hookimpl\n\n@hookimpl\ndef evalute(y_true, y_prob):\n    return {}\n")
    with pytest.raises(PluginLoadError) as error:
        get_plugins()
    assert "extra_metric" in str(error.value) and "evalute" in str(error.value)


def test_entry_point_plugin_is_called_during_a_run(site, synthetic_feph, tmp_path):
    write_distribution(site)
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nevaluate = ["paper_metrics", "extra_metric"]\n')
    from feph_finetune.cli import main

    assert main([str(path), "--executor", "inline", "--output", str(tmp_path / "runs")]) == 0
    import feph_extra_metric

    assert len(feph_extra_metric.CALLS) == 1
    (result,) = tmp_path.joinpath("runs").glob("*/result.json")
    record = json.loads(result.read_text())
    assert record["status"] == "done" and 0 <= record["metrics"]["majority_share"] <= 1


class NoisyMetric:
    """A plugin registered for one test only, as a class instance."""

    @hookimpl
    def plugin_options(self):
        return {"scale": 1.0}

    @hookimpl
    def evaluate(self, y_true, context):
        return {"scaled_count": context.options["scale"] * len(y_true)}


def test_a_plugin_registered_for_one_test_is_validated_and_called(tmp_path):
    plugins = get_plugins()
    plugins.pm.register(NoisyMetric(), name="noisy")
    assert plugins.call("noisy", "evaluate", y_true=[1, 2], y_prob=None, context=type("C", (), {"options": {"scale": 2.0}})()) == {"scaled_count": 4.0}
    from feph_finetune.config import ConfigError, read_config
    from feph_finetune.matrix import build_matrix

    path = write_matrix(tmp_path / "m.toml", tmp_path, '[experiments.A]\nevaluate = ["noisy"]\n[experiments.A.options.noisy]\nscael = 3.0\n')
    with pytest.raises(ConfigError) as error:
        build_matrix(read_config(path), plugins)
    assert "scael" in str(error.value) and "did you mean 'scale'" in str(error.value)


def test_naming_a_plugin_without_the_hook_is_an_error(tmp_path):
    from feph_finetune.config import ConfigError, read_config
    from feph_finetune.matrix import build_matrix

    path = write_matrix(tmp_path / "m.toml", tmp_path, '[experiments.A]\naugment = ["normalize"]\n')
    with pytest.raises(ConfigError) as error:
        build_matrix(read_config(path), get_plugins())
    assert "does not implement augment" in str(error.value) and "flip" in str(error.value)
