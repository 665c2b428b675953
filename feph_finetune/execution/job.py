"""Executing runs: the one function that turns a :class:`RunJob` into files in the results store.

Every executor (``inline``, ``process``, ``ray`` and any registered by a plugin) ends up calling
:func:`execute_run`, in this process or in another one; what differs is only where and how many
at a time. Nothing here imports TensorFlow: :mod:`feph_finetune.training.stages` is imported inside
:func:`execute_run`, when a run really starts.

A run reports what it does through ``report(event)``, a callable taking one JSON-serialisable
dict, so that events can cross a pipe or a Ray queue unchanged:

- ``{"event": "started", "run": ID, "time": UNIX_SECONDS}``
- ``{"event": "progress", "run": ID, "stage": NAME, "stage_number": K, "stages": S, "epoch": E,
  "epochs": N, "loss": FLOAT}`` (stage K of the S stages that train; epoch E of its N, from 1;
  at most one every :data:`PROGRESS_INTERVAL_S` per run, plus one at every new epoch)
- ``{"event": "activity", "run": ID, "where": TEXT}``: the run entered a step of the core
  ("data preparation") or a plugin's hook ("plugin 'face_crop' (preprocess)"), so that an
  executor that stops it for its ``timeout`` can say where it was (:class:`Whereabouts`)
- ``{"event": "warning", "run": ID, "message": TEXT}``: something the person running the matrix
  should know that does not fail the run (a crop cache that cannot be written); shown once
- ``{"event": "finished", "run": ID, "status": "done"|"failed", "accuracy": FLOAT|None,
  "seconds": FLOAT, "error": STR|None}`` (sent by the executor once ``result.json`` is final)

A run's ``timeout`` (seconds, 0: none) is the executor's to enforce, since only the process that
waits for a run can stop it: the run is stopped and recorded with :func:`timed_out_record`.
"""

from __future__ import annotations

import copy
import os
import platform
import subprocess
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

import feph_finetune
from feph_finetune.api import PluginError, RunContext
from feph_finetune.predict.bundle import fitted_states, saves_model, write_bundle
from feph_finetune.data.frames import default_cache_dir
from feph_finetune.config.matrix import Run
from feph_finetune.execution.progress import epoch_words
from feph_finetune.execution.tracking import RunTracking, tracked_run
from feph_finetune.invocation import RECORD_KEY as INVOCATION
from feph_finetune.plugins import PluginCallError, Plugins, describe_error, error_text, hook_listener
from feph_finetune.data.preparation import DataSource, prepare
from feph_finetune.training.quiet_tensorflow import import_tensorflow
from feph_finetune.results.store import (
    NO_SPACE_ERRNOS, PENDING_RESULT_FILE, WRITING_ERRNOS, NoSpaceError, RunStore, UnwritableError, WriteRefused, ensure_space, unreadable_json_problem,
    write_error,
)

#: Seconds between two ``progress`` events of one run (a new epoch is always reported).
PROGRESS_INTERVAL_S = 0.5

#: Free bytes a run needs in the results folder before it starts, with room to spare: its JSON
#: files, predictions and ``stderr.log`` take under 1 MB on FePh (2,531 test images' predictions
#: are 2,531 x 7 float32 = 71 KB).
RUN_FILES_BYTES = 8 * 2**20
#: Free bytes a model bundle (``save_model``) adds: EfficientNet-B0's 5.3 M float32 parameters
#: are 21 MB and ``model.keras`` keeps Adam's two moments beside them (64 MB); MobileNet-v1 has
#: 4.2 M parameters.
MODEL_BUNDLE_BYTES = 96 * 2**20
#: Free inodes (files) a run needs in the results folder before it starts: its folder, the files
#: it writes (``config.json``, ``history.json``, ``predictions.npz``, ``metrics.json``,
#: ``environment.json``, ``result.json``, ``stderr.log``, a tracker's files), and the temporary
#: beside each while it is written (:func:`~feph_finetune.results.store.atomic_path`), with room to spare.
RUN_FILES = 16
#: Free inodes a model bundle (``save_model``) adds: ``model.keras``, ``bundle.json``,
#: ``state.npz`` and a temporary.
MODEL_BUNDLE_FILES = 4

Report = Callable[[dict[str, Any]], None]


def ignore(event: dict[str, Any]) -> None:
    """A ``report`` that drops every event."""


@dataclass(frozen=True)
class RunJob:
    """Everything one run needs, and nothing of the process that made it: picklable.

    ``run`` carries the resolved configuration and the dataset settings (the dataset's location),
    ``split_seed`` the matrix's seed that fixes the splits, ``output`` the results store's root
    on the machine that writes the run's files, ``tracking`` the enabled tracking plugins with
    their options (:mod:`feph_finetune.execution.tracking`), ``matrix`` the configuration's name,
    ``invocation`` the command that asked for the run (:mod:`feph_finetune.invocation`; written
    into its ``config.json``, so that a suggestion to run it again can repeat that command).
    """

    run: Run
    split_seed: int
    output: str
    tracking: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    matrix: str = ""
    invocation: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.run.id


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def plugin_versions(plugins: Plugins, names: list[str]) -> dict[str, str]:
    return {name: plugins.origins.get(name, f"builtin {feph_finetune.__version__}") for name in names}


def run_record(run: Run, status: str) -> dict[str, Any]:
    """The part of ``result.json`` that describes the run itself (reports group by it)."""
    return {
        "id": run.id,
        "experiment": run.experiment,
        "label": run.label,
        "cv_label": run.cv_label,
        "model": run.config.model,
        "baseline": not run.config.fine_tune,
        "order": run.order,
        "phase": run.phase,
        "fold": run.fold,
        "seed": run.seed,
        "variant": run.variant,
        "data": run.dataset.get("fingerprint", ""),
        "grouped": run.dataset.get("grouped"),
        "status": status,
        "classes": list(run.classes),
    }


def failed_record(run: Run, error: dict[str, Any], started: float | None = None) -> dict[str, Any]:
    """The ``result.json`` of a run that failed outside :func:`execute_run` (its process died, it
    timed out, its executor lost it): :func:`run_record`, the ``error`` (``plugin``, ``hook``,
    ``type``, ``message``, ``traceback`` and any details), and the timing from ``started`` (Unix
    seconds; None: it never started, 0 s) to now. No counters: the run's own are lost."""
    now = time.time()
    record = run_record(run, "failed")
    record["error"] = error
    begun = now if started is None else started
    record["timing"] = {"total_s": now - begun, "stages": {}, "started": begun, "finished": now}
    record["counters"] = {}
    return record


#: Errors whose own text says nothing (a SystemExit's is its exit code): their record's message
#: is :func:`~feph_finetune.plugins.describe_error`'s words, "sys.exit('bye')", as at import.
WORDED_ERRORS = (SystemExit, KeyboardInterrupt)


def error_record(plugin: str, hook: str, error: BaseException) -> dict[str, Any]:
    return {
        "plugin": plugin,
        "hook": hook,
        "type": type(error).__name__,
        "message": describe_error(error) if isinstance(error, WORDED_ERRORS) else error_text(error),
        "traceback": "".join(traceback.format_exception(error))[-4000:],
    }


def context_factory(run: Run, counters: dict[str, int]) -> Callable[[str], RunContext]:
    """``context_for(plugin)``: the :class:`RunContext` each hook of the run receives.

    The contexts hold the run's own deep copy of its configuration, made here once per run: a
    hook that changes ``context.options`` (or ``context.config``'s options) in place changes them
    for the rest of this run only, as in a run's own process, never for the runs after it in the
    same process (the inline executor, a notebook), whose ids and ``config.json`` say otherwise."""
    cache_dir = Path(run.dataset["cache_dir"]).expanduser() if run.dataset["cache_dir"] else default_cache_dir()
    config = copy.deepcopy(run.config)

    def context_for(plugin: str) -> RunContext:
        return RunContext(
            run_id=run.id,
            experiment=run.experiment,
            phase=run.phase,
            fold=run.fold,
            seed=run.seed,
            input_size=run.config.input_size,
            config=config,
            options=config.options.get(plugin, {}),
            classes=run.classes,
            cache_dir=cache_dir,
            counters=counters,
        )

    return context_for


class ProgressEvents:
    """Turns the training loop's progress calls into throttled ``progress`` events.

    It offers the part of :class:`rich.progress.Progress` that :mod:`feph_finetune.training.stages`
    uses (``add_task``, ``update`` with the fields ``stage``, ``epoch``, ``epochs``, ``loss``,
    ``remove_task``), so training needs no knowledge of where its progress goes.
    """

    def __init__(self, run_id: str, report: Report):
        self.run_id, self.report = run_id, report
        self.sent_at, self.place = 0.0, None

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        return 0

    def remove_task(self, task: int) -> None:
        pass

    def update(self, task: int, stage: str | None = None, epoch: int | None = None, epochs: int | None = None, loss: float | None = None,
               stage_number: int | None = None, stages: int | None = None, **ignored: Any) -> None:
        now = time.monotonic()
        if stage is None or ((stage_number, stage, epoch) == self.place and now - self.sent_at < PROGRESS_INTERVAL_S):
            return
        self.sent_at, self.place = now, (stage_number, stage, epoch)
        self.report({"event": "progress", "run": self.run_id, "stage": stage, "stage_number": stage_number, "stages": stages, "epoch": epoch, "epochs": epochs, "loss": loss})


def execute_run(job: RunJob, plugins: Plugins, source: DataSource, report: Report = ignore) -> str:
    """Run one job into its results store and return its status, ``"done"`` or ``"failed"``.

    Writes ``config.json``, ``history.json``, ``predictions.npz``, ``metrics.json``,
    ``environment.json`` (and, with ``save_model``, a model bundle: :mod:`feph_finetune.predict.bundle`),
    then ``result.json`` last.
    Any exception of a plugin or of the core fails this run only and is recorded in its
    ``result.json``. A file the results folder refuses (a full or read-only disk, a file past the
    file-size limit) is reported as a :data:`REFUSED_EVENT` naming the first file refused, on
    which an executor stops the matrix once the run is recorded (every later run would meet it
    too); where not even ``result.json`` can be written, that error is raised. An interruption
    (KeyboardInterrupt, a signal) propagates and leaves no ``result.json``, so the run is never
    trusted and is run again next time.
    """
    run, store = job.run, RunStore(Path(job.output))
    store.discard(run.id)  # a stale result of an earlier attempt must not outlive this one
    counters: dict[str, int] = {}
    context_for = context_factory(run, counters)
    try:
        store.write(run.id, "config.json", {"run": run.describe(), "config": run.config.to_json(), "dataset": run.dataset, INVOCATION: dict(job.invocation)})
    except WriteRefused as error:  # the first file refused: named by a parent that then fails to write the record
        report(refusal_event(run.id, error))
        raise
    tracking = RunTracking(tracked_run(run, store.run_dir(run.id), job.matrix), job.tracking, plugins, report)
    activity = Activity(run.id, report)
    with hooks_reported(activity):  # from the first tracking hook to the last: a hung one is named
        record, refusal = run_record(run, "failed"), None
        started, wall_started = time.perf_counter(), time.time()
        report({"event": "started", "run": run.id, "time": wall_started})  # the timeout counts from here: a hung track_run_start too
        tracking.start()
        try:
            check_installed(run, plugins)
            ensure_run_space(job)
            activity.step("data preparation")
            data = prepare(run, plugins, source, context_for, job.split_seed)
            counters["face_fallback"] = data.fallbacks
            saving = saves_model(run.config)
            states = fitted_states(data.preprocessing) if saving else None  # a state that cannot be saved fails before training
            for message in data.warnings:
                report({"event": "warning", "run": run.id, "message": message})
            activity.step("training")
            import_tensorflow()  # here, when a run really starts; its notices never reach the console
            from feph_finetune.training import stages as training

            outcome = training.train_and_predict(run, plugins, data, context_for, ProgressEvents(run.id, report), on_epoch=tracking.epoch, on_prediction=lambda: activity.step("test-set prediction"))
            activity.step("evaluation")
            metrics = evaluate(run, plugins, data.test.labels, outcome.y_prob, context_for)
            activity.step("saving the results")
            store.write_predictions(run.id, data.test.labels, outcome.y_prob)
            store.write(run.id, "history.json", outcome.history)
            store.write(run.id, "metrics.json", metrics)
            run_environment = environment(run, plugins, job.split_seed, training.environment())
            if saving and outcome.model is not None:
                write_bundle(store.run_dir(run.id), run, data.preprocessing, states, outcome.model, run_environment)
            store.write(run.id, "environment.json", run_environment)
            record.update(status="done", metrics=metrics, error=None)
            if outcome.notes:  # how the results were obtained, beyond the configuration (No-FT's dropped classes)
                record["notes"] = outcome.notes
            record["timing"] = {"total_s": time.perf_counter() - started, "stages": outcome.stage_seconds}
        except PluginCallError as error:
            record.update(error=error_record(error.plugin, error.hook, error.error))
        except Exception as error:  # anything else (out of memory, a full disk, a core bug) fails this run only
            refusal = refused_write(error, store.run_dir(run.id))
            record.update(error=error_record("core", "run", refusal or error))
        record.setdefault("timing", {"total_s": time.perf_counter() - started, "stages": {}})
        record["timing"].update(started=wall_started, finished=time.time())
        record["counters"] = counters
        record = _readable(record)
        try:
            tracking.end(record, keep=lambda pending: store.write(run.id, PENDING_RESULT_FILE, pending))
            store.finish(run.id, record)
        except WriteRefused as error:  # the disk that failed the run: the message names the first file it refused
            refusal = refusal or error
            report(refusal_event(run.id, refusal))  # for a parent that writes the record in the run's place
            raise refusal
        if refusal is not None:  # recorded; every later run would meet it too: the executor stops the matrix
            report(refusal_event(run.id, refusal))
        return record["status"]


def refused_write(error: BaseException, run_dir: Path) -> WriteRefused | None:
    """``error`` as the :class:`~feph_finetune.results.store.WriteRefused` it is, when it says the
    run's files cannot be written (:func:`~feph_finetune.results.store.write_error` decides which
    errors do), naming the run's folder where a library's error names no path; else None."""
    if isinstance(error, WriteRefused):
        return error
    if not isinstance(error, OSError) or error.errno not in WRITING_ERRNOS:
        return None
    if error.filename:
        return write_error(error, Path(error.filename))
    if error.errno in NO_SPACE_ERRNOS:
        return NoSpaceError(run_dir, "the run's files")
    return UnwritableError(run_dir, error.errno)


#: The event of a run whose files the disk refused (full, read-only, past the file-size limit):
#: the first file refused, which an executor raises (:func:`first_refused`) to stop the matrix
#: once the run is recorded, or when it then fails to write the record in the run's place
#: (rather than naming its own ``result.json``).
REFUSED_EVENT = "write_refused"


def refusal_event(run_id: str, error: NoSpaceError | UnwritableError) -> dict[str, Any]:
    """The :data:`REFUSED_EVENT` of ``error``, which :func:`first_refused` turns back into it."""
    if isinstance(error, NoSpaceError):
        return {"event": REFUSED_EVENT, "run": run_id, "folder": str(error.folder), "what": error.what}
    return {"event": REFUSED_EVENT, "run": run_id, "path": str(error.path), "errno": error.errno}


def first_refused(event: dict[str, Any] | None) -> WriteRefused | None:
    """The error a run's :data:`REFUSED_EVENT` describes (None for no event)."""
    if event is None:
        return None
    if "errno" in event:
        return UnwritableError(Path(str(event.get("path"))), int(event["errno"]))
    return NoSpaceError(Path(str(event.get("folder"))), str(event.get("what")))


def ensure_run_space(job: RunJob, what: str | None = None) -> None:
    """Raise :class:`~feph_finetune.results.store.NoSpaceError` when the results folder's disk cannot
    take the job's files, in bytes (:data:`RUN_FILES_BYTES`, and :data:`MODEL_BUNDLE_BYTES` with
    ``save_model``) and in inodes (:data:`RUN_FILES`, :data:`MODEL_BUNDLE_FILES`): checked before
    a run's long work, not after it. ``what`` the message says had no room (default: the job's
    files, named by its id; :data:`NEXT_RUN_FILES` after a run ended, for the run to start next)."""
    saving = saves_model(job.run.config)
    needed = RUN_FILES_BYTES + (MODEL_BUNDLE_BYTES if saving else 0)
    ensure_space(Path(job.output), needed, what or f"the files of run {job.id}", files=RUN_FILES + (MODEL_BUNDLE_FILES if saving else 0))


#: What the check after a run ended (:func:`ensure_run_space`) says had no room: the run that ended
#: wrote its files, and which run starts next is the executor's to choose.
NEXT_RUN_FILES = "the files of the next run"


def check_installed(run: Run, plugins: Plugins) -> None:
    """Refuse to run without a plugin the run names: in another process or on another machine a
    plugin object registered at run time, or a distribution not installed there, is missing, and
    running without it would silently be another experiment."""
    for name in run.plugins_used():
        if not plugins.pm.has_plugin(name):
            raise PluginCallError(name, "load", PluginError(
                f"plugin {name!r} is not installed in the process executing this run (pid {os.getpid()}); install its distribution "
                "there, or use --executor inline for a plugin registered at run time"
            ))


@contextmanager
def hooks_reported(activity: "Activity") -> Iterator[None]:
    """Within the block, every plugin hook the run calls is reported through ``activity``."""
    listening = hook_listener.set(activity.hook)
    try:
        yield
    finally:
        hook_listener.reset(listening)


class Activity:
    """Reports where a run is (``activity`` events): the core's steps, and within them the plugin
    hooks the run calls (through :data:`feph_finetune.plugins.hook_listener`); leaving a hook
    reports the step again."""

    def __init__(self, run_id: str, report: Report):
        self.run_id, self.report, self.step_name = run_id, report, "start-up"

    def step(self, name: str) -> None:
        self.step_name = name
        self._send(name)

    def hook(self, plugin: str | None, hook: str | None) -> None:
        if plugin is None:
            self._send(self.step_name)
        else:
            self._send(f"plugin {plugin!r} ({hook})", plugin=plugin, hook=hook)

    def _send(self, where: str, **in_plugin: str) -> None:
        """``in_plugin``: the ``plugin`` and ``hook`` running, for a run whose process ends meanwhile."""
        self.report({"event": "activity", "run": self.run_id, "where": where, **in_plugin})


class Whereabouts:
    """Where each run is, from its events: the last ``activity``, or the training stage and epoch
    of the last ``progress`` event. Executors feed it every event to say where a run that
    timed out was."""

    def __init__(self):
        self.places: dict[str, str] = {}
        self.hooks: dict[str, tuple[str, str]] = {}  # run id: (plugin, hook) running now

    def note(self, event: dict[str, Any]) -> None:
        run, kind = event.get("run"), event.get("event")
        if kind == "activity":
            self.places[run] = str(event.get("where"))
            self.hooks.pop(run, None)
            if event.get("plugin") is not None:
                self.hooks[run] = (str(event["plugin"]), str(event.get("hook")))
        elif kind == "progress" and event.get("stage"):
            self.places[run] = f"training: {epoch_words(event['stage'], event.get('epoch'), event.get('epochs'), event.get('stage_number'), event.get('stages'))}"
        elif kind == "started":
            self.places[run] = "start-up"

    def of(self, run_id: str) -> str:
        return self.places.get(run_id, "start-up")

    def hook_of(self, run_id: str) -> tuple[str, str] | None:
        """The (plugin, hook) the run is in now; None in the core's own steps."""
        return self.hooks.get(run_id)


def timeout_of(job: RunJob) -> float:
    """The job's ``timeout`` in seconds; 0 for none."""
    return float(job.run.config.timeout)


def timed_out_record(run: Run, timeout: float, where: str, started: float, **details: Any) -> dict[str, Any]:
    """The ``result.json`` of a run its executor stopped after ``timeout`` seconds, ``where``
    it was (:class:`Whereabouts`); ``started`` is the run's start (Unix seconds). ``details``
    join the error (``stderr_tail``, say)."""
    error = {
        "plugin": "core",
        "hook": "timeout",
        "type": "TimedOut",
        "message": f"timed out after {timeout:g} s in {where}",
        "where": where,
        "timeout_s": timeout,
        "traceback": "",
        **details,
    }
    return failed_record(run, error, started)


def stopped_run_record(job: RunJob, timeout: float, where: str, started: float, in_hook: tuple[str, str] | None, **details: Any) -> tuple[dict[str, Any], str | None]:
    """The ``result.json`` of a run its executor stopped after ``timeout`` seconds, and a warning
    to show, if any. A run stopped in a tracking plugin's ``track_run_end`` (``in_hook``: the
    (plugin, hook) it was in, :meth:`Whereabouts.hook_of`) had finished: it keeps the record it
    wrote before that hook (:data:`~feph_finetune.results.store.PENDING_RESULT_FILE`), with a
    note, and the warning says which tracker did not return. Any other: :func:`timed_out_record`."""
    pending = RunStore(Path(job.output)).pending_result(job.id) if in_hook is not None and in_hook[1] == "track_run_end" else None
    if pending is None:
        return timed_out_record(job.run, timeout, where, started, **details), None
    message = (f"run {job.id}: tracking plugin {in_hook[0]!r} did not return from track_run_end within the run's timeout ({timeout:g} s); "
               f"the run's end (status, final metrics, files) was not logged by it")
    return {**pending, "notes": [*(pending.get("notes") or []), message]}, message


def _readable(record: dict[str, Any]) -> dict[str, Any]:
    """The record, or when its metrics or counters have a shape the reports refuse (an evaluate
    plugin's percentages, a non-numeric counter: :class:`feph_finetune.results.records.RunRecord`),
    or its ``result.json`` could not be read back (:func:`~feph_finetune.results.store.unreadable_json_problem`:
    the metrics of several plugins together over the size a record is read at), a failed record
    saying why, so the run fails now, visibly, instead of being rerun every time."""
    from feph_finetune.results.records import RecordShapeError, RunRecord

    try:
        RunRecord.from_json(record)
        unreadable = unreadable_json_problem(record)
        if unreadable:
            raise RecordShapeError([f"result.json could not be read back: {unreadable}"])
    except RecordShapeError as error:
        return {**record, "status": "failed", "metrics": None, "counters": {}, "error": error_record("core", "record", error)}
    return record


def failure_summary(error: dict[str, Any]) -> str:
    """A failed run's ``error`` in one line: "timed out after N s in <where>", or "failed in
    plugin 'sam' (training_stages): ValueError: ..." ("in the core" for the core's own errors)."""
    if error.get("type") == "TimedOut":
        return str(error.get("message"))
    place = "the core" if error.get("plugin") == "core" else f"plugin {error.get('plugin')!r}"
    worded = error.get("type") in {kind.__name__ for kind in WORDED_ERRORS}
    return f"failed in {place} ({error.get('hook')}): " + ("" if worded else f"{error.get('type')}: ") + str(error.get("message"))


def finished_event(run_id: str, record: dict[str, Any] | None) -> dict[str, Any]:
    """The ``finished`` event of a run from its ``result.json`` record (None: no record)."""
    if record is None:
        return {"event": "finished", "run": run_id, "status": "failed", "accuracy": None, "seconds": None, "error": "no result.json"}
    error = record.get("error") or None
    return {
        "event": "finished",
        "run": run_id,
        "status": record.get("status", "failed"),
        "accuracy": (record.get("metrics") or {}).get("accuracy"),
        "seconds": (record.get("timing") or {}).get("total_s"),
        "error": None if error is None else failure_summary(error),
    }


def evaluate(run: Run, plugins: Plugins, y_true: np.ndarray, y_prob: np.ndarray, context_for) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for name in run.config["evaluate"]:
        result = plugins.call(name, "evaluate", y_true=y_true, y_prob=y_prob, context=context_for(name)) or {}  # a dict: Plugins.call checks it
        clashes = sorted(set(result) & set(metrics))
        if clashes:
            raise PluginCallError(name, "evaluate", KeyError(f"metrics {clashes} already set by an earlier evaluate plugin"))
        metrics.update(result)
    return metrics


def environment(run: Run, plugins: Plugins, split_seed: int, framework: dict[str, Any]) -> dict[str, Any]:
    return {
        "feph_finetune": feph_finetune.__version__,
        "plugins": plugin_versions(plugins, run.plugins_used()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "seed": run.seed,
        "split_seed": split_seed,
        "git_commit": git_commit(),
        **framework,
    }
