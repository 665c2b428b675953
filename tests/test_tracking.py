"""Experiment tracking: TensorBoard event files, a real MLflow tracking server, and the hooks a
third-party tracking plugin receives; tracking never costs a run its result."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from feph_finetune.cli import main

from conftest import line_of, run_cli, write_matrix

TWO_EXPERIMENTS = """
[experiments.A]
model = "mobilenet"

[experiments.B]
model = "mobilenet"
augment = ["flip"]
"""

RECORDING_PLUGIN = '''
import json
import os

from feph_finetune import Option, PluginError, hookimpl


@hookimpl
def plugin_options():
    return {"log": Option("", help="JSON-lines file of the calls"), "fail_in": Option("", help="hook that raises")}


def _note(context, hook, **fields):
    if context.options["fail_in"] == hook:
        raise PluginError("backend unreachable")
    with open(context.options["log"], "a") as log:
        log.write(json.dumps({"hook": hook, "pid": os.getpid(), **fields}) + "\\n")


@hookimpl
def track_run_start(run, context):
    _note(context, "track_run_start", run=run.id, phase=run.phase, fold=run.fold, data=run.data, batch_size=run.config["batch_size"])


@hookimpl
def track_epoch(run, stage, epoch, logs, context):
    _note(context, "track_epoch", run=run.id, stage=stage, epoch=epoch, logs=logs)


@hookimpl
def track_run_end(run, status, record, context):
    _note(context, "track_run_end", run=run.id, status=status, accuracy=record["metrics"]["accuracy"], files=sorted(os.listdir(run.run_dir)))
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_folders(output: Path) -> dict[str, Path]:
    return {folder.name: folder for folder in output.iterdir() if (folder / "result.json").is_file()}


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def tiny(tmp_path: Path, root: Path, experiments: str, extra: str = "") -> Path:
    return write_matrix(tmp_path / "tracked.toml", root, experiments, extra)


# --- configuration ---------------------------------------------------------------------------


def test_tracking_mistakes_are_reported_before_any_work(tmp_path, synthetic_feph):
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n', extra="""
        [tracking]
        plugins = ["mlflwo", "face_crop"]

        [tracking.tensorboard]
        confusion_imag = false

        [tracking.mlflow]
        timeout_s = -1
    """)
    result = run_cli(str(path), "--dry-run", "--track", "tensorbord")
    assert result.returncode == 2, result.stderr
    errors = result.stderr
    assert f"tracked.toml:{line_of(path, 'plugins = ')} tracking.plugins: no tracking plugin 'mlflwo' (did you mean 'mlflow'?)" in errors
    assert "plugin 'face_crop' is not a tracking plugin" in errors
    assert f"tracked.toml:{line_of(path, 'confusion_imag')} tracking.tensorboard.confusion_imag: plugin 'tensorboard' has no option 'confusion_imag' (did you mean 'confusion_image'?)" in errors
    assert f"tracked.toml:{line_of(path, 'timeout_s')} tracking.mlflow.timeout_s: must be > 0" in errors
    assert "no tracking plugin 'tensorbord' (did you mean 'tensorboard'?)" in errors
    assert "Traceback" not in errors


@pytest.mark.parametrize("plugins, flags, said", [
    ('["tensorboard", "tensorboard"]', [], "tracking.plugins: plugins lists 'tensorboard' twice; list it once (a repeat would report every run twice)"),
    ("[]", ["--track", "tensorboard", "--track", "tensorboard"], "error: --track tensorboard: given twice; give it once (a repeat would report every run twice)"),
], ids=["table", "flag"])
def test_a_tracking_plugin_enabled_twice_is_refused_at_its_place(tmp_path, synthetic_feph, capsys, plugins, flags, said):
    """Accepted without a word, while a plugin listed twice in preprocess/augment/evaluate is refused."""
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n', extra=f"\n[tracking]\nplugins = {plugins}\n")
    assert main([str(path), "--dry-run", *flags]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert said in error and "Traceback" not in error, error
    assert flags or f"tracked.toml:{line_of(path, 'plugins = ')} tracking.plugins" in error


def test_a_tracking_plugin_both_in_the_table_and_given_with_track_is_said_once(tmp_path, synthetic_feph, capsys):
    """Enabled once, as both ask; the warning says so, rather than leaving the user to wonder
    whether every run is reported twice."""
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n', extra='\n[tracking]\nplugins = ["tensorboard"]\n')
    assert main([str(path), "--dry-run", "--json", "--track", "tensorboard"]) == 0
    printed = capsys.readouterr()
    error = " ".join(printed.err.split())
    assert f"--track tensorboard: 'tensorboard' is already enabled by {path}:{line_of(path, 'plugins = ')} tracking.plugins; it tracks each run once" in error, error
    assert [run["experiment"] for run in json.loads(printed.out)] == ["A"]  # a warning, not a refusal: the runs are planned


@pytest.mark.parametrize("uri, problem", [
    ("htp:/x", "MLflow has no tracking store for the scheme 'htp'"),
    ("sqlite://relative", "an SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db"),
    ("http:///x", "no host in the server's URL (expected http://host:port)"),
    ("file://{tmp}/missing/store", "/missing', which would hold the file store, does not exist"),  # the console shortens the long path before it
    ("http://[::1", "not a URL that can be read (Invalid IPv6 URL)"),
    ("postgresql://[", "not a URL that can be read (Invalid IPv6 URL)"),
    ("http://host:50x0", "not a URL that can be read (Port could not be cast to integer value"),
], ids=["scheme", "sqlite", "no-host", "file-folder", "ipv6", "database-ipv6", "port"])
def test_a_malformed_mlflow_uri_is_refused_before_any_work(tmp_path, synthetic_feph, uri, problem):
    """A URI that no run could use is told by the one configuration pass (exit 2, file:line),
    not by every run's end; whether a server answers is not asked (that stays a note per run)."""
    uri, problem = uri.format(tmp=tmp_path), problem.format(tmp=tmp_path)
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n', extra=f"""
        [tracking]
        plugins = ["mlflow"]

        [tracking.mlflow]
        uri = "{uri}"
    """)
    result = run_cli(str(path), "--output", str(tmp_path / "runs"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"tracked.toml:{line_of(path, 'uri = ')} tracking.mlflow.uri: '" in result.stderr and problem in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()


def test_a_malformed_mlflow_tracking_uri_variable_is_refused_before_any_work(tmp_path, synthetic_feph):
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n')
    result = run_cli(str(path), "--dry-run", "--track", "mlflow", env={"MLFLOW_TRACKING_URI": "htp:/x"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "MLFLOW_TRACKING_URI='htp:/x': MLflow has no tracking store for the scheme 'htp'" in result.stderr


def test_a_uri_that_is_no_url_is_refused_naming_the_key_or_the_variable(tmp_path, synthetic_feph):
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n')
    result = run_cli(str(path), "--dry-run", "--track", "mlflow", "--set", "tracking.mlflow.uri='http://[::1'", env={"MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--set tracking.mlflow.uri='http://[::1': 'http://[::1': not a URL that can be read (Invalid IPv6 URL)" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(str(path), "--dry-run", "--track", "mlflow", env={"MLFLOW_TRACKING_URI": "http://[x"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "MLFLOW_TRACKING_URI='http://[x': not a URL that can be read (Invalid IPv6 URL)" in result.stderr and "Traceback" not in result.stderr


# --- TensorBoard -----------------------------------------------------------------------------


def event_values(folder: Path) -> dict[str, list[tuple[int, object, str]]]:
    """Every summary of a run's event files: tag -> [(step, value, TensorBoard plugin)]."""
    import tensorflow as tf

    values: dict[str, list] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor), value.metadata.plugin_data.plugin_name))
    return values


def test_tensorboard_events_match_the_history_of_every_stage(tmp_path, synthetic_feph):
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n', extra='[tracking]\nplugins = ["tensorboard"]\n')
    output = tmp_path / "runs"
    assert main([str(path), "--executor", "inline", "--output", str(output)]) == 0  # here: event_values imports TensorFlow anyway
    (folder,) = run_folders(output).values()
    history = read_json(folder / "history.json")
    events = event_values(folder)
    assert [entry["stage"] for entry in history] == ["head", "adam"]  # two stages, one epoch each
    for name in ("loss", "accuracy"):
        # float32 summaries of the float32 values Keras logged: equal after the same rounding
        assert [(step, float(value)) for step, value, _ in events[name]] == [(entry["epoch"], float(np.float32(entry[name]))) for entry in history]
        assert {plugin for _, _, plugin in events[name]} == {"scalars"}
    assert [(step, int(value)) for step, value, _ in events["stage"]] == [(1, 1), (2, 2)]
    assert [(step, value.item().decode()) for step, value, _ in events["stages"]] == [(1, "stage 1: head (from epoch 1)"), (2, "stage 2: adam (from epoch 2)")]
    metrics = read_json(folder / "metrics.json")
    assert float(events["final/accuracy"][0][1]) == float(np.float32(metrics["accuracy"]))
    ((step, image, plugin),) = events["confusion"]
    assert (step, plugin, image[2][:8]) == (2, "images", b"\x89PNG\r\n\x1a\n")
    import cv2

    decoded = cv2.imdecode(np.frombuffer(image[2], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape[:2] == (int(image[1]), int(image[0]))


@pytest.mark.slow(30)
def test_a_rerun_replaces_its_event_files(tmp_path, synthetic_feph):
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\nfine_tune = true\n', extra='[tracking]\nplugins = ["tensorboard"]\n')
    output = tmp_path / "runs"
    for _ in range(2):  # here: event_values imports TensorFlow anyway
        assert main([str(path), "--executor", "inline", "--output", str(output), "--force"]) == 0
    (folder,) = run_folders(output).values()
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    assert [step for step, _, _ in event_values(folder)["loss"]] == [1, 2]


# --- MLflow ----------------------------------------------------------------------------------


@pytest.fixture
def mlflow_server(tmp_path):
    """A real MLflow tracking server on 127.0.0.1 with a SQLite backend in a temporary folder."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"), start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job runner (GenAI jobs): eight fewer processes
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # the server imports Flask, SQLAlchemy and runs its migrations
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            time.sleep(1)
        assert server.poll() is None, (tmp_path / "server.log").read_text()
    else:
        raise AssertionError("the MLflow server did not answer within 180 s:\n" + (tmp_path / "server.log").read_text())
    yield uri
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


def flat(table: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return out


@pytest.mark.slow(105)
def test_mlflow_server_receives_every_run_and_the_fold_statistics(tmp_path, synthetic_feph, mlflow_server):
    from mlflow.tracking import MlflowClient

    path = tiny(tmp_path, synthetic_feph, TWO_EXPERIMENTS)
    command = [str(path), "--executor", "inline", "--output", str(tmp_path / "runs"), "--phase", "cv", "--set", "dataset.folds=2",
               "--set", 'defaults.phases=["cv"]', "--track", "mlflow", "--set", f"tracking.mlflow.uri={mlflow_server}"]
    result = run_cli(*command)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stdout

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("tracked")  # the TOML file's name
    runs = client.search_runs([experiment.experiment_id])
    children = {run.data.tags["feph.run_id"]: run for run in runs if "feph.run_id" in run.data.tags}
    parents = {run.data.tags["feph.experiment"]: run for run in runs if "feph.parent" in run.data.tags}
    folders = run_folders(tmp_path / "runs")
    assert set(children) == set(folders) and len(folders) == 4 and set(parents) == {"A", "B"}
    for run_id, run in children.items():
        folder = folders[run_id]
        config = read_json(folder / "config.json")["config"]
        assert run.data.params == flat(config)
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parents[run.data.tags["feph.experiment"]].info.run_id
        assert run.data.tags["feph.data"] == read_json(folder / "result.json")["data"]
        for entry in read_json(folder / "history.json"):
            for name in ("loss", "accuracy"):
                history = client.get_metric_history(run.info.run_id, f"{entry['stage']}/{name}")
                assert [(point.step, point.value) for point in history] == [(entry["epoch"], entry[name])]
        metrics = read_json(folder / "metrics.json")
        assert run.data.metrics["accuracy"] == metrics["accuracy"]
        assert run.data.metrics["avg_sensitivity"] == metrics["avg_sensitivity"]
        for cls, share in metrics["sensitivity"].items():
            assert run.data.metrics.get(f"sensitivity/{cls}") == share
        assert {artifact.path for artifact in client.list_artifacts(run.info.run_id)} == {"metrics.json", "config.json", "confusion.png"}
    for name, parent in parents.items():
        accuracies = [read_json(folders[run_id] / "metrics.json")["accuracy"] for run_id, run in children.items() if run.data.tags["feph.experiment"] == name]
        assert parent.data.metrics["folds"] == 2
        assert parent.data.metrics["accuracy_mean"] == pytest.approx(np.mean(accuracies), rel=1e-12)  # summation order only
        assert parent.data.metrics["accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1), rel=1e-9)

    again = run_cli(*command)
    assert again.returncode == 0 and "skipped 4 finished runs" in again.stdout, again.stdout + again.stderr
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)

    rerun = run_cli(*command, "--only", "A", "--force")  # a new tracked run per fold; the parent takes the new ones
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    after = client.search_runs([experiment.experiment_id])
    assert len(after) == len(runs) + 2
    parent_a = parents["A"].info.run_id
    linked = {run.info.run_id for run in after if run.data.tags.get("mlflow.parentRunId") == parent_a}
    newest = {run.data.tags["feph.run_id"]: run.info.run_id for run in sorted(after, key=lambda run: run.info.start_time) if run.data.tags.get("feph.experiment") == "A" and "feph.run_id" in run.data.tags}
    assert linked == set(newest.values()) and len(linked) == 2
    assert (tmp_path / "runs" / "mlartifacts").is_dir() is False  # a server keeps its artifacts itself


@pytest.mark.slow(20)
def test_the_default_mlflow_store_and_its_artifacts_stay_in_the_results_folder(tmp_path, synthetic_feph, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    output = tmp_path / "runs"
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n')
    result = run_cli(str(path), "--executor", "inline", "--output", str(output), "--track", "mlflow", env={"MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "INFO" not in result.stdout + result.stderr  # MLflow's and alembic's log lines stay out of the console
    client = MlflowClient(f"sqlite:///{output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    assert experiment.artifact_location == (output / "mlartifacts").absolute().as_uri()
    (run,) = client.search_runs([experiment.experiment_id])
    (folder,) = run_folders(output).values()
    stored = output / "mlartifacts" / run.info.run_id / "artifacts"
    assert (stored / "metrics.json").read_bytes() == (folder / "metrics.json").read_bytes()
    assert (stored / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in output.glob("mlflow.db*")) == ["mlflow.db"]  # no lock file or journal left behind


def test_an_sqlite_uri_of_ones_own_keeps_the_artifacts_in_the_results_folder(tmp_path, synthetic_feph):
    """MLflow would put them in ./mlruns, in whatever folder the command was started from."""
    from mlflow.tracking import MlflowClient

    output, here, database = tmp_path / "runs", tmp_path / "here", tmp_path / "store" / "x.db"
    here.mkdir()
    database.parent.mkdir()
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n')
    result = run_cli(str(path), "--executor", "inline", "--output", str(output), "--track", "mlflow",
                     "--set", f"tracking.mlflow.uri='sqlite:///{database}'", cwd=here, env={"MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(here.iterdir()) == []
    experiment = MlflowClient(f"sqlite:///{database}").get_experiment_by_name("tracked")
    assert experiment.artifact_location == (output / "mlartifacts").as_uri()
    assert any((output / "mlartifacts").rglob("metrics.json"))


def mlflow_statuses(store: Path) -> list[str]:
    """The status of every run in a local MLflow store, read with sqlite3 (empty until the store exists)."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as connection:
            return [status for (status,) in connection.execute("select status from runs")]
    except sqlite3.Error:  # not there yet, or its tables not yet made
        return []


@pytest.mark.slow(70)
@pytest.mark.parametrize("signals", [1, 2], ids=["once", "twice"])
@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_an_interrupted_tracked_run_is_ended_as_killed_before_the_command_exits(tmp_path, synthetic_feph, signal_number, signals):
    """The default executor runs each run in a child process; the parent, interrupted while a run
    trains, stops it and ends its MLflow run as KILLED (not RUNNING until a resume), then exits 130.
    A second signal while it cleans up (an impatient Ctrl-C) does not cut that short."""
    output = tmp_path / "runs"
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n')
    command = [sys.executable, "-m", "feph_finetune", str(path), "--output", str(output), "--track", "mlflow",
               "--set", "defaults.options.adam.epochs=200"]  # long enough to be interrupted while it trains
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": ""},
                             start_new_session=signal_number == signal.SIGINT)  # Ctrl-C reaches the whole group, as a terminal sends it
    deadline = time.monotonic() + 300
    while mlflow_statuses(output / "mlflow.db") != ["RUNNING"] and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert mlflow_statuses(output / "mlflow.db") == ["RUNNING"], "the run never started (else this test proves nothing)"
    for repeat in range(signals):
        time.sleep(0.3 * repeat)
        if signal_number == signal.SIGINT:
            os.killpg(child.pid, signal.SIGINT)
        else:
            child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 130, stdout + stderr
    assert "interrupted: to continue, run:" in stderr and "Traceback" not in stderr
    assert "finished runs are saved" not in stderr, "the one run was interrupted"
    assert mlflow_statuses(output / "mlflow.db") == ["KILLED"]


@pytest.mark.slow(30)
def test_an_unreachable_tracking_server_costs_no_run(tmp_path, synthetic_feph):
    closed = f"http://127.0.0.1:{free_port()}"
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\nphases = ["cv"]\n')
    result = run_cli(str(path), "--executor", "inline", "--output", str(tmp_path / "runs"), "--set", "dataset.folds=2",
                     "--track", "mlflow", "--set", f"tracking.mlflow.uri={closed}", "--set", "tracking.mlflow.timeout_s=2")
    assert result.returncode == 0, result.stdout + result.stderr
    folders = run_folders(tmp_path / "runs")
    assert len(folders) == 2
    for run_id, folder in folders.items():
        record = read_json(folder / "result.json")
        assert record["status"] == "done"
        assert {"config.json", "history.json", "metrics.json", "predictions.npz", "environment.json"} <= {p.name for p in folder.iterdir()}
        (note,) = record["notes"]
        assert note.startswith(f"run {run_id}: tracking plugin 'mlflow' failed in track_run_start") and "nothing of this run was logged" in note
        assert result.stdout.count(f"warning: run {run_id}: tracking plugin 'mlflow'") == 1
    assert "warning: tracking plugin 'mlflow' failed in track_matrix_end" in result.stdout


# --- a third party's tracking plugin ---------------------------------------------------------


@pytest.fixture
def recording_plugin(tmp_path):
    from test_plugins import write_distribution

    site = tmp_path / "site"
    site.mkdir()
    write_distribution(site, name="feph-recorder", module="feph_recorder", body=RECORDING_PLUGIN, entry="recorder")
    return {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_a_third_party_tracking_plugin_receives_the_three_calls_in_the_runs_process(tmp_path, synthetic_feph, recording_plugin):
    log = tmp_path / "calls.jsonl"
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n', extra=f'[tracking]\nplugins = ["recorder"]\n[tracking.recorder]\nlog = "{log}"\n')
    result = run_cli(str(path), "--output", str(tmp_path / "runs"), env=recording_plugin)  # the process executor
    assert result.returncode == 0, result.stdout + result.stderr
    (folder,) = run_folders(tmp_path / "runs").values()
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [call["hook"] for call in calls] == ["track_run_start", "track_epoch", "track_epoch", "track_run_end"]
    assert len({call["pid"] for call in calls}) == 1 and calls[0]["pid"] != os.getpid()
    start, end = calls[0], calls[-1]
    assert (start["run"], start["phase"], start["fold"], start["batch_size"]) == (folder.name, "exploratory", None, 16)
    assert start["data"] == read_json(folder / "result.json")["data"]
    history = read_json(folder / "history.json")
    assert [(call["stage"], call["epoch"], call["logs"]) for call in calls[1:3]] == [
        (entry["stage"], entry["epoch"], {key: entry[key] for key in call["logs"]}) for entry, call in zip(history, calls[1:3])
    ]
    assert all(set(call["logs"]) == {"loss", "accuracy"} for call in calls[1:3])
    assert (end["status"], end["accuracy"]) == ("done", read_json(folder / "metrics.json")["accuracy"])
    assert {"config.json", "metrics.json", "history.json", "predictions.npz"} <= set(end["files"]) and "result.json" not in end["files"]


def test_a_tracking_plugin_that_raises_is_dropped_for_the_run_and_the_run_finishes(tmp_path, synthetic_feph, recording_plugin):
    log = tmp_path / "calls.jsonl"
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n',
                extra=f'[tracking.recorder]\nlog = "{log}"\nfail_in = "track_epoch"\n')
    result = run_cli(str(path), "--executor", "inline", "--output", str(tmp_path / "runs"), "--track", "recorder", env=recording_plugin)
    assert result.returncode == 0, result.stdout + result.stderr
    (folder,) = run_folders(tmp_path / "runs").values()
    record = read_json(folder / "result.json")
    assert record["status"] == "done"
    message = f"run {folder.name}: tracking plugin 'recorder' failed in track_epoch: PluginError: backend unreachable; the later epochs and the run's end were not logged by it"
    assert record["notes"] == [message]
    assert result.stdout.count("tracking plugin 'recorder' failed") == 1
    assert [json.loads(line)["hook"] for line in log.read_text().splitlines()] == ["track_run_start"]  # nothing after the failure


def test_the_readme_tracking_plugin_works_as_written(tmp_path, synthetic_feph):
    from test_plugins import write_distribution

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("# feph_csvlog.py")
    code = readme[start:readme.index("```", start)]
    site = tmp_path / "site"
    site.mkdir()
    write_distribution(site, name="feph-csvlog", module="feph_csvlog", body=code, entry="csvlog")
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\n')
    result = run_cli(str(path), "--executor", "inline", "--output", str(tmp_path / "runs"), "--track", "csvlog",
                     env={"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert result.returncode == 0, result.stdout + result.stderr
    (folder,) = run_folders(tmp_path / "runs").values()
    rows = (folder / "curves.csv").read_text().splitlines()
    history = read_json(folder / "history.json")
    assert rows == ["stage,epoch,loss,accuracy"] + [f"{entry['stage']},{entry['epoch']},{entry['loss']},{entry['accuracy']}" for entry in history]


def test_tensorboard_writes_into_a_results_folder_whose_name_is_not_utf8(tmp_path, synthetic_feph, capsys):
    """TensorFlow takes a folder's name as UTF-8 text: it failed on a name of other bytes (Linux
    allows any), and the run's epochs were not logged. \\xff never occurs in UTF-8."""
    path = tiny(tmp_path, synthetic_feph, '[experiments.A]\nmodel = "mobilenet"\nphases = ["exploratory"]\n', extra='[tracking]\nplugins = ["tensorboard"]\n')
    output = tmp_path / os.fsdecode(b"runs\xff")  # the name sys.argv gives a command for these bytes
    assert main([str(path), "--executor", "inline", "--output", str(output)]) == 0  # here: event_values imports TensorFlow anyway
    printed = capsys.readouterr()
    assert "warning" not in printed.err, printed.out + printed.err
    (folder,) = run_folders(output.rename(tmp_path / "plain")).values()  # TensorFlow's reader takes UTF-8 names only
    assert [step for step, _, _ in event_values(folder)["loss"]] == [1, 2]
