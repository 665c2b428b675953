"""The library API: run_matrix, plan_matrix, Session, load_results, and the README's example."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

import pytest

import feph_finetune
from feph_finetune.cli import main
from feph_finetune.config.reading import ConfigError
from feph_finetune.results.records import RunRecord

from conftest import REPO, write_matrix
from fake_store import write_fake_store


def readme_example() -> str:
    """The Python code block of the README's "Use from Python" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Use from Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow(20)
def test_the_readme_example_runs_and_a_second_run_skips_what_finished(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}  # as a script run with python, or a notebook
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    result, records = namespace["result"], namespace["records"]
    assert result.ok and len(result.done) == 2 and not result.skipped
    assert sorted(record.id for record in records) == sorted(result.done)
    assert all(isinstance(record, RunRecord) and record.status == "done" for record in records)
    assert [row["accuracy"] for row in namespace["rows"]] == [record.metrics.accuracy for record in records]
    assert "FT + HF" in capsys.readouterr().out  # the same tables as the command line

    second: dict = {"__name__": "__main__"}
    exec(compile(readme_example(), "README.md", "exec"), second)  # the notebook's cell, run again
    again = second["result"]
    assert again.skipped == result.done and not again.done

    forced = feph_finetune.run_matrix(namespace["config"], executor="inline", only=["M-FT"], force=True)
    (rerun,) = forced.done
    assert rerun.startswith("M-FT-x-") and not forced.skipped
    assert [record.id for record in forced.records] == [rerun]


def test_plan_matrix_gives_the_runs_of_the_dry_run(synthetic_feph, tmp_path, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\nphases = ["exploratory", "cv"]\n\n[experiments.B]\naugment = ["flip"]\n')
    assert main([str(path), "--dry-run", "--json", "--phase", "cv"]) == 0
    listed = [run["id"] for run in json.loads(capsys.readouterr().out)]
    planned = feph_finetune.plan_matrix(path, phase="cv")
    assert [run.id for run in planned] == listed and len(listed) == 3  # [dataset] folds = 3
    assert [run.experiment for run in feph_finetune.plan_matrix(path, only="B")] == ["B"]


def test_a_dict_configuration_is_checked_and_its_problems_named_by_key(synthetic_feph):
    config = {"dataset": {"root": str(synthetic_feph)}, "defaults": {"batch_sise": 16}, "experiments": {"A": {}}}
    with pytest.raises(ConfigError) as raised:
        feph_finetune.plan_matrix(config)
    (problem,) = raised.value.problems
    assert str(problem).startswith("<dict> defaults.batch_sise: unknown key") and "batch_size" in str(problem)
    with pytest.raises(ConfigError, match=r"overrides='experiments\.B\.seed=1': no experiment 'B'"):
        feph_finetune.plan_matrix(config, overrides=["experiments.B.seed=1"])
    assert config["defaults"] == {"batch_sise": 16}  # the caller's dict is left as it was


def test_load_results_reads_typed_records_and_leaves_out_unusable_files(tmp_path):
    written = write_fake_store(tmp_path, experiments=["M0", "M2"])
    (tmp_path / "broken-x-0").mkdir()
    (tmp_path / "broken-x-0" / "result.json").write_text("{not json", encoding="utf-8")
    warnings: list[str] = []
    records = feph_finetune.load_results(tmp_path, warn=warnings.append)
    assert [record.id for record in records] == sorted(run["id"] for run in written)
    assert [record.to_json() for record in records] == sorted((RunRecord.from_json(run).to_json() for run in written), key=lambda run: run["id"])
    assert len(warnings) == 1 and "broken-x-0/result.json: skipped, unreadable" in warnings[0]
    copied = tmp_path / "M2-x-copied" / "result.json"  # another run's record, copied by hand
    copied.parent.mkdir()
    copied.write_text((tmp_path / written[0]["id"] / "result.json").read_text(encoding="utf-8"), encoding="utf-8")
    assert [record.id for record in feph_finetune.load_results(tmp_path, warn=warnings.append)] == [record.id for record in records]
    assert any(f"M2-x-copied/result.json: skipped, its id {written[0]['id']!r} is not its folder's name" in line for line in warnings)
    row = records.rows()[0]
    first = records[0]
    assert row["accuracy"] == first.metrics.accuracy and row["sensitivity.anger"] == first.metrics.sensitivity["anger"]
    assert row["total_s"] == first.timing.total_s and row["error"] is None
    assert isinstance(records[:2], feph_finetune.Results) and len(records[:2]) == 2


def test_to_frame_gives_a_dataframe(tmp_path):
    import pandas  # the `pandas` extra, which .ci/run installs: a missing pandas fails here rather than skips
    write_fake_store(tmp_path, experiments=["M2"])
    records = feph_finetune.load_results(tmp_path)
    frame = records.to_frame()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["id"]) == [record.id for record in records]
    assert list(frame["accuracy"]) == [record.metrics.accuracy for record in records]


def test_to_frame_without_pandas_names_pip_install_pandas(tmp_path, monkeypatch):
    write_fake_store(tmp_path, experiments=["M2"])
    records = feph_finetune.load_results(tmp_path)
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an environment without pandas imports
    with pytest.raises(ImportError, match="pip install pandas"):
        records.to_frame()


def test_load_results_of_a_missing_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such results directory"):
        feph_finetune.load_results(tmp_path / "nowhere")


def test_the_api_is_exported_without_importing_tensorflow():
    code = ("import sys, feph_finetune as f; f.run_matrix, f.plan_matrix, f.Session, f.MatrixResult, f.load_results, f.Results, f.RunRecord; "
            "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120).returncode == 0


def test_the_core_never_imports_the_demo():
    """The demo is a client of the core: only the command line and the demo itself import it."""
    package = REPO / "feph_finetune"
    importers = []
    for path in package.rglob("*.py"):
        if path.is_relative_to(package / "demo") or path == package / "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [f"{node.module}.{alias.name}" for alias in node.names] if isinstance(node, ast.ImportFrom) and node.module else []
            if any(name == "feph_finetune.demo" or name.startswith("feph_finetune.demo.") for name in names):
                importers.append(str(path.relative_to(REPO)))
    assert importers == []


def test_a_single_string_is_one_override_and_one_tracker(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, '[experiments.A]\n')
    session = feph_finetune.Session(path, overrides="seed=4", track="tensorboard")
    assert (session.overrides, session.track) == (["seed=4"], ["tensorboard"])
    assert session.plan()[0].seed == 4 and session.matrix.tracking == {"tensorboard": {"confusion_image": True}}


def test_library_problems_name_the_keyword_arguments_not_the_flags(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    expected = {
        "jobs: executor 'inline' has no option 'jobs'": dict(executor="inline", jobs=0),
        "jobs: must be >= 0, not -1": dict(jobs=-1),
        "executor: no executor 'inlin' (did you mean 'inline'?)": dict(executor="inlin"),
        "only='B': no experiment 'B'": dict(only="B"),
        "track='tensorbord': no tracking plugin 'tensorbord'": dict(track="tensorbord"),
        "overrides='seed=-1': must be >= 0, not -1": dict(overrides="seed=-1"),
        "overrides='seed': malformed: expected KEY=VALUE where KEY is a dotted TOML key, e.g. overrides='dataset.root=/data/FePh'": dict(overrides="seed"),
    }
    for message, arguments in expected.items():
        with pytest.raises(ConfigError) as raised:
            feph_finetune.plan_matrix(path, **arguments)
        assert message in str(raised.value), f"{arguments}: {raised.value}"
        assert "--" not in str(raised.value), f"{arguments}: a flag named in a library error: {raised.value}"


def test_plan_matrix_names_the_phase_parameter_and_its_choices(synthetic_feph, tmp_path):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    with pytest.raises(ConfigError) as raised:
        feph_finetune.plan_matrix(path, phase="cvv")
    assert [str(problem) for problem in raised.value.problems] == ["phase='cvv': 'cvv' is not one of 'exploratory', 'cv' (did you mean 'cv'?)"]
    with pytest.raises(ConfigError, match=r"phase='cv': no runs selected \(experiments with a cv phase: none\)"):
        feph_finetune.plan_matrix(path, phase="cv")


def test_the_command_line_still_names_its_flags(synthetic_feph, tmp_path, capsys):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    assert main([str(path), "--dry-run", "--executor", "inline", "--jobs", "2", "--only", "B", "--set", "seed=-1"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    for line in ("--jobs: executor 'inline' has no option 'jobs'", "--only B: no experiment 'B'", "--set seed=-1: must be >= 0, not -1"):
        assert line in error, error


# --- arguments of the wrong type ----------------------------------------------------------------


@pytest.fixture
def config(tmp_path, synthetic_feph) -> dict:
    import tomllib

    return tomllib.loads(write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n").read_text())


@pytest.mark.parametrize("arguments, message", [
    ({"only": [1]}, "only=[1]: expected an experiment name or a list of them, got an item that is not a string"),
    ({"executor": 3}, "executor=3: expected an executor's name"),
    ({"output": 5}, "output=5: expected a folder's path"),
    ({"overrides": {"seed": 4}}, "overrides={'seed': 4}: expected a KEY=VALUE string or a list of them"),
    ({"force": "no"}, "force='no': expected True or False, got str"),
    ({"devices": ["0", 1]}, "devices=['0', 1]: expected GPU indices"),
])
def test_an_argument_of_the_wrong_type_is_a_config_error_naming_it(config, arguments, message):
    with pytest.raises(ConfigError) as raised:
        feph_finetune.plan_matrix(config, **arguments)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("value, got", [(None, "None"), ("list", "list"), (b"seed = 1", "bytes")])
def test_a_config_that_is_neither_a_path_nor_a_dict_is_refused(config, value, got):
    with pytest.raises(ConfigError, match=f"^config: expected the path of an experiments TOML .* got {got}$"):
        feph_finetune.plan_matrix([config] if value == "list" else value)


def test_a_config_dict_with_a_key_that_is_not_text_is_refused(config):
    config["defaults"] = {**config.get("defaults", {}), 7: 1}
    with pytest.raises(ConfigError) as raised:
        feph_finetune.plan_matrix({**config, 1: 2})
    assert str(raised.value).splitlines() == ["config: keys of a configuration dict must be strings: 7 in defaults",
                                              "config: keys of a configuration dict must be strings: 1 in the top level"]


def test_devices_as_a_list_of_integers_is_the_flags_text(config):
    with pytest.raises(ConfigError, match="executor 'inline' has no option 'devices'"):
        feph_finetune.plan_matrix(config, executor="inline", devices=[0, 1])
    session = feph_finetune.Session(config, devices=(index for index in [0, 1]))  # any iterable, read once
    assert session.devices == "0,1"


def test_load_results_says_what_it_was_given(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text("seed = 1\n")
    with pytest.raises(FileNotFoundError, match="exp.toml: is a file, not a folder; give a results folder"):
        feph_finetune.load_results(toml)
    with pytest.raises(TypeError, match="outdir must be a results folder's path .* got int"):
        feph_finetune.load_results(5)


@pytest.mark.parametrize("data", ["{}", None])
def test_run_config_from_json_takes_a_dict(data):
    with pytest.raises(TypeError, match=r"RunConfig.from_json takes the JSON object as a dict \(json.loads of the text\)"):
        feph_finetune.RunConfig.from_json(data)


def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path, synthetic_feph):
    path = write_matrix(tmp_path / "m.toml", synthetic_feph, "[experiments.A]\n")
    script = tmp_path / "unguarded.py"
    script.write_text(f"import feph_finetune\nfeph_finetune.run_matrix({str(path)!r}, phase='exploratory')\n")
    finished = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert 'put the calls under `if __name__ == "__main__":`' in finished.stderr + finished.stdout
