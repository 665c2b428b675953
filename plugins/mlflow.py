"""Plugin ``mlflow``: every run as an MLflow run, local or on a tracking server (extra ``mlflow``).

One MLflow experiment per matrix (option ``experiment``, default the TOML file's name), one MLflow
run per run:

- tags: ``feph.run_id``, ``feph.experiment``, ``feph.label``, ``feph.phase``, ``feph.fold``,
  ``feph.data`` (the data's fingerprint), ``feph.version``, ``feph.git_commit``;
- params: the resolved configuration, flattened to dotted keys (``options.mobilenet.alpha``);
- metrics: per epoch ``<stage>/<log>`` (``adam/loss``), step = the epoch counted across stages as
  in ``history.json``; at the end ``accuracy``, ``avg_sensitivity``, ``sensitivity/<class>`` and
  any other numeric metric;
- artifacts: ``metrics.json``, ``config.json`` and ``confusion.png``.

For cross-validation, a parent run per configuration (experiment, grid variant, data) holds the
mean and sample standard deviation over its finished folds (``accuracy_mean``, ``accuracy_std``,
``avg_sensitivity_mean``...; ``folds``), and the fold runs are its children. A second invocation
finds what it logged by these tags and adds nothing.

The tracking URI is the option ``uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite store in the
results folder (``sqlite:///OUTDIR/mlflow.db``, artifacts in ``OUTDIR/mlartifacts``; ``mlflow ui
--backend-store-uri`` that URI shows it). A database ``uri`` of your own (``sqlite:////abs/x.db``,
``postgresql://...``) keeps its artifacts in ``OUTDIR/mlartifacts`` too, never in the current folder. With the ``ray`` executor runs write into a temporary folder on their node: give ``uri``
a tracking server there. An unreachable server costs each request ``timeout_s`` at most, without
retries: the run finishes, and says in its ``result.json`` what was not logged. A run interrupted
(Ctrl-C, SIGTERM) is ended as KILLED before the command exits; one whose command was killed
(SIGKILL, which no program can handle) stays RUNNING until the matrix resumes it: its rerun marks it KILLED.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from feph_finetune import Option, hookimpl
from feph_finetune_plugins.tracking_common import confusion_image, final_scalars, flat_items, png_bytes

INSTALL = "pip install 'feph_finetune[mlflow]'"
LOCAL_STORE, LOCAL_ARTIFACTS = "mlflow.db", "mlartifacts"
#: MLflow's limits: values of a param (6,000 characters in MLflow 3) and entries per log_batch.
PARAM_CHARACTERS, BATCH_SIZE = 6000, 100

#: Per run id: the MLflow client and run id, opened by track_run_start.
_open: dict[str, tuple[Any, str]] = {}


def _uri_problem(uri: str, options: dict) -> str | None:
    """MLflow missing, or a tracking URI (the option, else ``MLFLOW_TRACKING_URI``) that no run
    could use, told before any work: what its text shows, without importing MLflow (seconds)
    or asking a server (whether one answers stays a note of each run)."""
    if importlib.util.find_spec("mlflow") is None:
        return f"the mlflow tracking plugin needs MLflow, which is not installed: {INSTALL}"
    given = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    problem = _tracking_uri_problem(given) if given else None
    return problem and (f"{given!r}: {problem}" if uri else f"MLFLOW_TRACKING_URI={given!r}: {problem}")


#: URI schemes MLflow's tracking stores take (a database's may name its driver: ``postgresql+psycopg``).
_SERVER_SCHEMES, _DATABASE_SCHEMES, _HOSTED_SCHEMES = ("http", "https"), ("sqlite", "postgresql", "mysql", "mssql"), ("databricks", "databricks-uc", "uc")


def _tracking_uri_problem(uri: str) -> str | None:
    """What is wrong with tracking URI ``uri`` as written (None: nothing that can be seen without
    a network): text that is no URL (``http://[::1``, a port that is no number), an unknown scheme,
    a server or database without a host, an SQLite URL of the wrong form, a file store whose
    folder's parent does not exist."""
    try:
        parts = urllib.parse.urlsplit(uri)
        parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError as error:
        return f"not a URL that can be read ({error})"
    scheme, database = parts.scheme.lower(), parts.scheme.lower().split("+")[0]
    if len(scheme) <= 1 or scheme == "file":  # a path (a drive letter is no scheme)
        if parts.netloc not in ("", "localhost") and scheme == "file":
            return f"a file: URI names a folder on this machine (file:///folder), not host {parts.netloc!r}"
        folder = Path(urllib.parse.unquote(parts.path) if scheme == "file" else uri).expanduser()
        if not folder.absolute().parent.is_dir():
            return f"the folder {str(folder.absolute().parent)!r}, which would hold the file store, does not exist"
        return None
    if scheme in _SERVER_SCHEMES:
        return None if parts.hostname else f"no host in the server's URL (expected {scheme}://host:port)"
    if database == "sqlite":
        if parts.netloc or not parts.path.strip("/"):
            return "an SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db (three slashes, then the path; an in-memory store keeps nothing)"
        return None
    if database in _DATABASE_SCHEMES:
        return None if parts.hostname else f"no host in the database URL (expected {scheme}://user:password@host/database)"
    if scheme in _HOSTED_SCHEMES:
        return None
    forms = "http(s)://host:port, sqlite:///relative.db or sqlite:////absolute.db, postgresql://host/db, file:///folder, or a folder path"
    return f"MLflow has no tracking store for the scheme {parts.scheme!r}; expected {forms}"


@hookimpl
def plugin_options():
    return {
        "uri": Option("", help="tracking URI (http://host:5000, sqlite:///file.db); default MLFLOW_TRACKING_URI, else OUTDIR/mlflow.db",
                      check_with_options=_uri_problem),
        "experiment": Option("", help="the MLflow experiment; default: the TOML file's name"),
        "timeout_s": Option(10.0, help="seconds an HTTP request to the server may take (no retries)", minimum=0, exclusive_minimum=True, maximum=3600),
        "artifacts": Option(True, help="log metrics.json, config.json and confusion.png"),
    }


@hookimpl
def track_run_start(run, context):
    client, artifacts = _store(context.options, Path(run.run_dir).parent)
    experiment_id = _experiment_id(client, context.options.get("experiment") or run.matrix, artifacts)
    for stale in _runs_tagged(client, experiment_id, "feph.run_id", run.id, status="RUNNING"):
        client.set_terminated(stale.info.run_id, status="KILLED")  # an interrupted attempt
    tags = {
        "feph.run_id": run.id, "feph.experiment": run.experiment, "feph.label": run.label, "feph.phase": run.phase,
        "feph.fold": "" if run.fold is None else str(run.fold), "feph.data": run.data, "feph.version": run.version,
        "feph.git_commit": run.git_commit or "", "feph.configuration": _configuration(run.experiment, run.variant, run.data),
    }
    mlflow_run = client.create_run(experiment_id, run_name=run.id, tags=tags)
    _open[run.id] = (client, mlflow_run.info.run_id)
    _log_batch(client, mlflow_run.info.run_id, params=[(key, _param(value)) for key, value in flat_items(run.config)])


@hookimpl
def track_epoch(run, stage, epoch, logs):
    client, run_id = _open[run.id]
    _log_batch(client, run_id, metrics=[(f"{stage}/{name}", value, epoch) for name, value in logs.items()])


@hookimpl
def track_run_end(run, status, record, context):
    client, run_id = _open.pop(run.id)
    metrics = record.get("metrics") or {}
    _log_batch(client, run_id, metrics=[(name, value, 0) for name, value in final_scalars(metrics).items()])
    if context.options.get("artifacts", True):
        folder = Path(run.run_dir)
        for name in ("metrics.json", "config.json"):
            if (folder / name).is_file():
                client.log_artifact(run_id, str(folder / name))
        if metrics.get("confusion"):
            with tempfile.TemporaryDirectory() as scratch:
                figure = Path(scratch) / "confusion.png"
                figure.write_bytes(png_bytes(confusion_image(metrics["confusion"], record.get("classes") or [])))
                client.log_artifact(run_id, str(figure))
    client.set_terminated(run_id, status="FINISHED" if status == "done" else "FAILED")


@hookimpl
def track_matrix_end(matrix, records, output, options):
    folds = [record for record in records if record.get("phase") == "cv"]
    if not folds:
        return
    client, artifacts = _store(options, Path(output))
    experiment_id = _experiment_id(client, options.get("experiment") or matrix, artifacts)
    tracked = [run for run in _runs_tagged(client, experiment_id, "feph.phase", "cv") if "feph.run_id" in run.data.tags]
    latest = {}  # per run id, its newest finished MLflow run: a rerun (--force) replaces the one before
    for run in sorted(tracked, key=lambda run: run.info.start_time or 0):
        if run.info.status == "FINISHED":
            latest[run.data.tags["feph.run_id"]] = run
    groups: dict[str, list[dict]] = {}
    for record in folds:
        groups.setdefault(_configuration(record["experiment"], record.get("variant") or {}, record.get("data") or ""), []).append(record)
    for configuration, members in groups.items():
        parent = _parent_run(client, experiment_id, configuration, members[0])
        _log_fold_statistics(client, parent, members)
        children = {latest[record["id"]].info.run_id for record in members if record["id"] in latest}
        for run in tracked:
            linked = run.data.tags.get("mlflow.parentRunId") == parent.info.run_id
            if run.info.run_id in children and not linked:
                client.set_tag(run.info.run_id, "mlflow.parentRunId", parent.info.run_id)
            elif run.info.run_id not in children and linked:  # an earlier attempt of a fold
                client.delete_tag(run.info.run_id, "mlflow.parentRunId")


@hookimpl
def track_runs_stopped(matrix, run_ids, output, options):
    """End the MLflow runs of the interrupted runs as KILLED (not left RUNNING until a resume)."""
    for run_id in run_ids:
        _open.pop(run_id, None)  # the inline executor's: that run's process is this one
    if not (options.get("uri") or os.environ.get("MLFLOW_TRACKING_URI")) and not (Path(output) / LOCAL_STORE).is_file():
        return  # no run was logged: the local store is made by the first
    client, _ = _store(options, Path(output))
    experiment = client.get_experiment_by_name(options.get("experiment") or matrix)
    if experiment is None:
        return
    stopped = set(run_ids)
    running = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=50000)
    for mlflow_run in running:
        if mlflow_run.data.tags.get("feph.run_id") in stopped:
            client.set_terminated(mlflow_run.info.run_id, status="KILLED")


def _store(options: dict, output: Path):
    """An MlflowClient for the option ``uri``, else MLFLOW_TRACKING_URI, else the local store in
    ``output``; with the local store or any database store (``sqlite:``, ``postgresql:``...), also
    where its artifacts go (``output/mlartifacts``, so that they stay with the results: MLflow
    would put them in ``./mlruns`` in the current folder), else None (a server or a file store
    keeps its own)."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, round(options.get("timeout_s", 10.0))))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # their INFO lines (creating the store's tables) are not the user's; set after
        logging.getLogger(name).setLevel(logging.WARNING)  # the import, which sets MLflow's own level

    uri = options.get("uri") or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if uri:
        database = urllib.parse.urlsplit(uri).scheme.lower().split("+")[0] in _DATABASE_SCHEMES
        return MlflowClient(uri), (Path(output).absolute() / LOCAL_ARTIFACTS).as_uri() if database else None
    output = Path(output).absolute()
    (output / LOCAL_ARTIFACTS).mkdir(parents=True, exist_ok=True)
    # Runs in parallel create the store once: a lock on the artifacts folder itself, which leaves no lock
    # file behind (unlinking one would let a third run lock a new one). Not on ``output``: the matrix
    # command holds that folder's lock (feph_finetune.results.output_lock), a conflict even in its own process.
    folder = os.open(output / LOCAL_ARTIFACTS, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        client = MlflowClient(f"sqlite:///{output / LOCAL_STORE}")
        client.search_experiments(max_results=1)  # creates the store's tables
    finally:
        os.close(folder)  # releases the lock
    return client, (output / LOCAL_ARTIFACTS).as_uri()


def _experiment_id(client, name: str, artifacts: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifacts)
    except Exception:  # another run of the matrix created it meanwhile
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _runs_tagged(client, experiment_id: str, tag: str, value: str, status: str | None = None) -> list:
    query = f"tags.`{tag}` = '{value}'" + (f" and attributes.status = '{status}'" if status else "")
    return list(client.search_runs([experiment_id], filter_string=query, max_results=50000))


def _configuration(experiment: str, variant: Any, data: str) -> str:
    """What identifies a configuration across its folds (experiment, grid variant and data), as
    a short hash that a search filter can quote."""
    identity = json.dumps([experiment, variant or {}, data], sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _parent_run(client, experiment_id: str, configuration: str, record: dict):
    found = _runs_tagged(client, experiment_id, "feph.parent", configuration)
    if found:
        return found[0]
    name = f"{record.get('cv_label') or record['experiment']} (cross-validation)"
    parent = client.create_run(experiment_id, run_name=name, tags={"feph.parent": configuration, "feph.experiment": record["experiment"], "feph.phase": "cv"})
    client.set_terminated(parent.info.run_id, status="FINISHED")
    return client.get_run(parent.info.run_id)


def _log_fold_statistics(client, parent, members: list[dict]) -> None:
    """Mean and sample standard deviation over the folds; a value already logged is not logged
    again, so that an invocation with nothing new changes nothing."""
    per_metric: dict[str, list[float]] = {}
    for record in members:
        for name, value in final_scalars(record.get("metrics")).items():
            per_metric.setdefault(name, []).append(value)
    values = {"folds": float(len(members))}
    for name, series in per_metric.items():
        values[f"{name}_mean"] = statistics.fmean(series)
        if len(series) > 1:
            values[f"{name}_std"] = statistics.stdev(series)
    logged = parent.data.metrics
    changed = [(name, value, 0) for name, value in values.items() if logged.get(name) != value]
    _log_batch(client, parent.info.run_id, metrics=changed)


def _log_batch(client, run_id: str, params=(), metrics=()) -> None:
    from mlflow.entities import Metric, Param

    params = [Param(key, value) for key, value in params]
    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, step) for key, value, step in metrics]
    for start in range(0, max(len(params), len(metrics)), BATCH_SIZE):
        client.log_batch(run_id, metrics=metrics[start:start + BATCH_SIZE], params=params[start:start + BATCH_SIZE])


def _param(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text[:PARAM_CHARACTERS]
