"""The plugin system: built-ins, entry-point plugins from real distributions, restrictions."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from feph_finetune.hookspecs import hookimpl
from feph_finetune.plugins import get_plugins, hook_names, reset_plugins

from conftest import run_cli, write_matrix

SIX_HOOKS = {"preprocess", "augment", "build_model", "optimizer_schedule", "weight_classes", "evaluate"}


def write_distribution(site, name="feph-extra", version="1.2.3", module="feph_extra_metric", body=None, entry="extra_metric"):
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
    (info / "entry_points.txt").write_text(f"[feph_finetune]\n{entry} = {module}\n", encoding="utf-8")
    return site


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    yield folder
    for module in [name for name, value in sys.modules.items() if str(getattr(value, "__file__", "")).startswith(str(folder))]:
        del sys.modules[module]


def test_the_hookspecs_are_the_designs_six_plus_options_traits_model_input_datasets_executors_and_tracking():
    tracking = {"track_run_start", "track_epoch", "track_run_end", "track_matrix_end", "track_runs_stopped"}
    assert set(hook_names()) == SIX_HOOKS | {"plugin_options", "plugin_traits", "model_input", "load_dataset", "register_executors"} | tracking


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


def test_misspelled_hook_marks_the_plugin_broken_and_names_it(site):
    write_distribution(site, body="from feph_finetune import hookimpl\n\n@hookimpl\ndef evalute(y_true, y_prob):\n    return {}\n")
    (entry,) = [info for info in get_plugins().info() if info.name == "extra_metric"]
    assert entry.status == "broken" and "evalute" in entry.error and "did you mean 'evaluate'" in entry.error
    assert "extra_metric" not in get_plugins().names() and "paper_metrics" in get_plugins().names()


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
    from feph_finetune.config.reading import ConfigError, read_config
    from feph_finetune.config.matrix import build_matrix

    path = write_matrix(tmp_path / "m.toml", tmp_path, '[experiments.A]\nevaluate = ["noisy"]\n[experiments.A.options.noisy]\nscael = 3.0\n')
    with pytest.raises(ConfigError) as error:
        build_matrix(read_config(path), plugins)
    assert "scael" in str(error.value) and "did you mean 'scale'" in str(error.value)


def test_naming_a_plugin_without_the_hook_is_an_error(tmp_path):
    from feph_finetune.config.reading import ConfigError, read_config
    from feph_finetune.config.matrix import build_matrix

    path = write_matrix(tmp_path / "m.toml", tmp_path, '[experiments.A]\naugment = ["normalize"]\n')
    with pytest.raises(ConfigError) as error:
        build_matrix(read_config(path), get_plugins())
    assert "does not implement augment" in str(error.value) and "flip" in str(error.value)


# --- plugins that misbehave: each is listed, refused where used, and blocks nothing else ---------

GOOD_METRIC = """
    from feph_finetune import hookimpl

    @hookimpl
    def evaluate(y_true, y_prob):
        return {"count": len(y_true)}
"""


def cli_with(site, *args, **env):
    """The command line in a subprocess that sees the distributions of ``site`` as installed."""
    return run_cli(*args, env={"PYTHONPATH": str(site), **env})


def matrices(tmp_path, root, plugin):
    """Two experiment files on the data in ``root``: one whose evaluate list names ``plugin``, one that does not."""
    using = write_matrix(tmp_path / "uses.toml", root, f'[experiments.A]\nevaluate = ["paper_metrics", "{plugin}"]\n')
    other = write_matrix(tmp_path / "other.toml", root, '[experiments.B]\nevaluate = ["paper_metrics"]\n')
    return using, other


def listed(site, **env) -> dict[tuple[str, str], dict]:
    result = cli_with(site, "plugins", "--json", **env)
    assert result.returncode == 0, result.stderr
    return {(entry["name"], entry["origin"]): entry for entry in json.loads(result.stdout)}


def test_a_misnamed_hook_argument_is_one_message_naming_plugin_hook_and_offered_arguments(site, tmp_path, synthetic_feph):
    write_distribution(site, body="from feph_finetune import hookimpl\n\n@hookimpl\ndef evaluate(y_true, probs, context):\n    return {}\n")
    entry = listed(site)[("extra_metric", "feph-extra 1.2.3")]
    assert entry["status"] == "broken" and entry["hooks"] == []
    using, other = matrices(tmp_path, synthetic_feph, "extra_metric")
    refused = cli_with(site, str(using), "--dry-run")
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) <= 4
    message = " ".join(refused.stderr.split())
    assert "uses.toml:" in message and "'extra_metric' of feph-extra 1.2.3 is broken" in message
    assert "'evaluate'" in message and "'probs'" in message and "evaluate offers y_true, y_prob, context" in message
    assert cli_with(site, str(other), "--dry-run").returncode == 0


def test_an_import_error_is_listed_and_blocks_only_the_files_that_use_the_plugin(site, tmp_path, synthetic_feph):
    write_distribution(site, body="import feph_no_such_dependency\n")
    write_distribution(site, name="feph-good", module="feph_good_metric", entry="good_metric", body=GOOD_METRIC)
    entries = listed(site)
    assert entries[("extra_metric", "feph-extra 1.2.3")]["status"] == "broken"
    assert "ModuleNotFoundError" in entries[("extra_metric", "feph-extra 1.2.3")]["error"]
    assert entries[("good_metric", "feph-good 1.2.3")]["status"] == "ok"
    table = cli_with(site, "plugins")
    assert table.returncode == 0 and "broken" in table.stdout and "feph_no_such_dependency" in table.stdout
    using, other = matrices(tmp_path, synthetic_feph, "extra_metric")
    refused = cli_with(site, str(using), "--dry-run")
    assert refused.returncode == 2 and "ModuleNotFoundError" in refused.stderr and "feph_no_such_dependency" in refused.stderr
    assert cli_with(site, str(other), "--dry-run").returncode == 0
    good, _ = matrices(tmp_path, synthetic_feph, "good_metric")
    assert cli_with(site, str(good), "--dry-run").returncode == 0


def test_two_distributions_with_one_name_are_both_in_conflict_and_named(site, tmp_path, synthetic_feph):
    write_distribution(site, name="feph-kappa", module="feph_kappa_one", entry="kappa", body=GOOD_METRIC)
    write_distribution(site, name="kappa-metrics", version="2.0", module="feph_kappa_two", entry="kappa", body=GOOD_METRIC)
    entries = listed(site)
    assert entries[("kappa", "feph-kappa 1.2.3")]["status"] == entries[("kappa", "kappa-metrics 2.0")]["status"] == "conflict"
    using, other = matrices(tmp_path, synthetic_feph, "kappa")
    refused = cli_with(site, str(using), "--dry-run")
    assert refused.returncode == 2
    assert "feph-kappa 1.2.3" in refused.stderr and "kappa-metrics 2.0" in refused.stderr and "FEPH_FINETUNE_LOAD_PLUGINS" in refused.stderr
    assert cli_with(site, str(other), "--dry-run").returncode == 0
    # the documented way out: load one of the two distributions only
    assert cli_with(site, str(using), "--dry-run", FEPH_FINETUNE_LOAD_PLUGINS="kappa-metrics").returncode == 0


def test_a_third_party_plugin_may_not_replace_a_builtin(site, tmp_path, synthetic_feph):
    write_distribution(site, name="feph-flip", module="feph_flip_other", entry="flip", body=GOOD_METRIC)
    entries = listed(site)
    assert entries[("flip", "builtin")]["status"] == "ok" and entries[("flip", "builtin")]["hooks"] == ["plugin_options", "augment"]
    assert entries[("flip", "feph-flip 1.2.3")]["status"] == "refused"
    path = write_matrix(tmp_path / "flip.toml", synthetic_feph, '[experiments.A]\naugment = ["flip"]\n')
    result = cli_with(site, str(path), "--dry-run")
    assert result.returncode == 0
    assert "warning" in result.stderr and "'flip' of feph-flip 1.2.3 is ignored" in result.stderr and "built-in" in result.stderr


def test_a_filtered_plugin_is_reported_as_filtered_not_as_missing(site, tmp_path, synthetic_feph):
    write_distribution(site)
    using, _ = matrices(tmp_path, synthetic_feph, "extra_metric")
    refused = cli_with(site, str(using), "--dry-run", FEPH_FINETUNE_LOAD_PLUGINS="")
    assert refused.returncode == 2
    assert "not installed" not in refused.stderr
    assert "'extra_metric' of feph-extra 1.2.3 is not loaded" in refused.stderr and "FEPH_FINETUNE_LOAD_PLUGINS" in refused.stderr
    assert listed(site, FEPH_FINETUNE_LOAD_PLUGINS="")[("extra_metric", "feph-extra 1.2.3")]["status"] == "filtered"


def test_an_unknown_name_in_the_load_variable_is_reported(site):
    write_distribution(site)
    result = cli_with(site, "plugins", FEPH_FINETUNE_LOAD_PLUGINS="feph-extra,feph-extar")
    assert result.returncode == 0
    message = " ".join(result.stderr.split())
    assert "FEPH_FINETUNE_LOAD_PLUGINS names 'feph-extar', which is not installed (did you mean 'feph-extra'?)" in message
    assert "extra_metric" in result.stdout


def test_an_unknown_plugin_is_still_reported_as_not_installed(tmp_path):
    path = write_matrix(tmp_path / "m.toml", tmp_path, '[experiments.A]\nevaluate = ["paper_metric"]\n')
    result = run_cli(str(path), "--dry-run")
    assert result.returncode == 2 and "'paper_metric' is not installed (did you mean 'paper_metrics'?)" in " ".join(result.stderr.split())


RAISING_OPTIONS = """
    from feph_finetune import hookimpl

    @hookimpl
    def plugin_options():
        raise RuntimeError("boom in the declarations")

    @hookimpl
    def evaluate(y_true, y_prob):
        return {}
"""


def test_a_plugin_whose_options_raise_is_listed_broken_and_refused_where_used(site, tmp_path, synthetic_feph):
    write_distribution(site, body=RAISING_OPTIONS)
    entry = listed(site)[("extra_metric", "feph-extra 1.2.3")]
    assert entry["status"] == "broken" and entry["error"] == "plugin_options() failed: RuntimeError: boom in the declarations"
    using, other = matrices(tmp_path, synthetic_feph, "extra_metric")
    refused = cli_with(site, str(using), "--dry-run")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    assert "uses.toml:" in message and "'extra_metric' of feph-extra 1.2.3 is broken" in message and "boom in the declarations" in message
    assert cli_with(site, str(other), "--dry-run").returncode == 0


class RaisingOptions:
    """Registered at run time, so never checked at load: the configuration check names it."""

    @hookimpl
    def plugin_options(self):
        raise RuntimeError("boom in the declarations")

    @hookimpl
    def evaluate(self, y_true, y_prob):
        return {}


@pytest.mark.parametrize("options", ["", "[experiments.A.options.raiser]\nx = 1\n"])
def test_options_that_raise_at_check_time_are_exit_2_naming_the_place_and_the_plugin(tmp_path, synthetic_feph, capsys, options):
    from conftest import line_of
    from feph_finetune.cli import main

    get_plugins().pm.register(RaisingOptions(), name="raiser")
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nevaluate = ["paper_metrics", "raiser"]\n' + options)
    assert main([str(path), "--dry-run"]) == 2
    message = " ".join(capsys.readouterr().err.split())
    key = "experiments.A.options.raiser" if options else "experiments.A.evaluate"  # where it is listed, without options
    line = line_of(path, "[experiments.A.options.raiser]" if options else "evaluate = ")
    assert f"{path}:{line} {key}" in message
    assert "plugin 'raiser' failed in hook 'plugin_options': RuntimeError: boom in the declarations" in message
