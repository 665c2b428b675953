"""Experiment tracking: the enabled tracking plugins are told about each run, never at its cost.

The ``[tracking]`` table (or ``--track NAME``) enables tracking plugins, such as the built-in
``tensorboard`` and ``mlflow``; the core calls their hooks (:mod:`feph_finetune.hookspecs`,
``track_*``) in the run's own process, so every executor tracks alike. A tracking plugin that
raises, or a backend that cannot be reached, must not cost a result that took minutes to train:
the plugin is dropped for the rest of that run, one warning is shown, and the run's
``result.json`` gets a note saying from where on nothing was logged. A hook that never returns
counts against the run's ``timeout``; one stopped in ``track_run_end`` keeps the run's result
(its record is kept first: :meth:`RunTracking.end`). The hooks of the driving process
(``track_matrix_end``, ``track_runs_stopped``) get :data:`MATRIX_HOOK_BOUND_S` each.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

import feph_finetune
from feph_finetune.api import RunContext, TrackedRun
from feph_finetune.config.matrix import Run
from feph_finetune.last_resort import AFTER_WATCHDOG_S, deadline
from feph_finetune.plugins import PluginCallError, Plugins, describe_error

#: Seconds a tracking plugin's hook in the driving process (``track_matrix_end``,
#: ``track_runs_stopped``) may take before the command says it did not return and goes on
#: without it: MLflow's fold statistics of a large matrix take a few requests per configuration.
MATRIX_HOOK_BOUND_S = 120.0

#: What a tracking hook failure is told as, for a warning and a note of the run.
_WHAT_IS_LOST = {
    "track_run_start": "nothing of this run was logged",
    "track_epoch": "the later epochs and the run's end were not logged",
    "track_run_end": "the run's end (status, final metrics, files) was not logged",
}


def tracked_run(run: Run, run_dir: Path, matrix: str) -> TrackedRun:
    """The :class:`~feph_finetune.TrackedRun` the tracking hooks receive for ``run``."""
    from feph_finetune.execution.job import git_commit

    described = {key: getattr(run, key) for key in ("id", "experiment", "label", "cv_label", "variant", "phase", "fold", "seed", "config")}
    return TrackedRun(
        **described, matrix=matrix, data=run.dataset.get("fingerprint", ""), run_dir=run_dir,
        version=feph_finetune.__version__, git_commit=git_commit(),
    )


class RunTracking:
    """Calls the enabled tracking plugins' hooks for one run, in the run's process.

    ``tracking`` maps each enabled plugin to its checked options; ``report`` receives one
    ``warning`` event per failed plugin. :attr:`notes` collects what was not logged, for the
    run's ``result.json``.
    """

    def __init__(self, run: TrackedRun, tracking: Mapping[str, Mapping[str, Any]], plugins: Plugins, report: Callable[[dict[str, Any]], None]):
        self.run, self.plugins, self.report = run, plugins, report
        self.enabled = copy.deepcopy(dict(tracking))  # the run's own: a hook's change of its options ends with the run
        self.notes: list[str] = []

    def start(self) -> None:
        self._call("track_run_start")

    def epoch(self, stage: str, epoch: int, logs: Mapping[str, float]) -> None:
        self._call("track_epoch", stage=stage, epoch=epoch, logs=dict(logs))

    def end(self, record: dict[str, Any], keep: Callable[[dict[str, Any]], None]) -> None:
        """Tell the plugins the run ended; ``record`` (the ``result.json`` to be written) gets
        the notes of every tracking failure of the run. ``keep`` receives the record, with the
        notes so far, before any plugin is called: a run stopped in a ``track_run_end`` that
        never returns keeps that result."""
        if self.enabled:
            keep(self.noted(record))
        self._call("track_run_end", status=record["status"], record=record)
        record.update(self.noted(record))

    def noted(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with the notes of the tracking failures so far."""
        return {**record, "notes": list(record.get("notes") or []) + self.notes} if self.notes else record

    def _call(self, hook: str, **arguments: Any) -> None:
        for name, options in list(self.enabled.items()):
            context = RunContext(
                run_id=self.run.id, experiment=self.run.experiment, phase=self.run.phase, fold=self.run.fold,
                seed=self.run.seed, input_size=self.run.config.input_size, config=self.run.config, options=options,
            )
            try:
                self.plugins.call(name, hook, run=self.run, context=context, **arguments)
            except PluginCallError as failure:
                del self.enabled[name]
                message = f"run {self.run.id}: tracking plugin {name!r} failed in {hook}: {describe_error(failure.error)}; {_WHAT_IS_LOST[hook]} by it"
                self.notes.append(message)
                self.report({"event": "warning", "run": self.run.id, "message": message})


def track_matrix_end(matrix: str, tracking: Mapping[str, Mapping[str, Any]], records: list[dict[str, Any]], output: Path, plugins: Plugins, warn: Callable[[str], None]) -> None:
    """Call ``track_matrix_end`` on each enabled tracking plugin in the driving process; a
    failure, or a call that does not return within :data:`MATRIX_HOOK_BOUND_S`, is one warning
    (the runs' results are written already)."""
    for name, options in tracking.items():
        _call_bounded(plugins, name, "track_matrix_end", "what spans runs (fold means) was not logged by it", warn,
                      matrix=matrix, records=records, output=output, options=dict(options))


def track_runs_stopped(matrix: str, tracking: Mapping[str, Mapping[str, Any]], run_ids: list[str], output: Path, plugins: Plugins, warn: Callable[[str], None]) -> None:
    """Call ``track_runs_stopped`` on each enabled tracking plugin in the driving process, for
    the runs an interrupt stopped (``run_ids``: those without a result); a failure, or a call
    that does not return within :data:`MATRIX_HOOK_BOUND_S`, is one warning."""
    for name, options in tracking.items():
        _call_bounded(plugins, name, "track_runs_stopped", "the interrupted runs stay open in it until the matrix resumes them", warn,
                      matrix=matrix, run_ids=list(run_ids), output=output, options=dict(options))


def _call_bounded(plugins: Plugins, name: str, hook: str, lost: str, warn: Callable[[str], None], **arguments: Any) -> None:
    """Call ``name``'s ``hook`` in a daemon thread and wait at most :data:`MATRIX_HOOK_BOUND_S`:
    a hook that never returns cannot be stopped within this process, so it is left running
    (the interpreter does not wait for it at exit) and the command goes on; ``lost`` says what
    the plugin then did not log. One hung in native code that holds the interpreter's lock keeps
    this thread from going on: the command line's process then ends
    :data:`~feph_finetune.last_resort.AFTER_WATCHDOG_S` after the bound, every thread's stack on
    stderr, exit 1 (:func:`feph_finetune.last_resort.deadline`)."""
    failures: list[PluginCallError] = []

    def call() -> None:
        try:
            plugins.call(name, hook, **arguments)
        except PluginCallError as failure:
            failures.append(failure)

    caller = threading.Thread(target=call, name=f"{name}.{hook}", daemon=True)
    with deadline(MATRIX_HOOK_BOUND_S + AFTER_WATCHDOG_S):  # armed before the hook can take the interpreter's lock for good
        caller.start()
        caller.join(MATRIX_HOOK_BOUND_S)
    if caller.is_alive():
        warn(f"tracking plugin {name!r} did not return from {hook} within {MATRIX_HOOK_BOUND_S:g} s; {lost}; the command goes on without it")
    elif failures:
        warn(f"tracking plugin {name!r} failed in {hook}: {describe_error(failures[0].error)}; {lost}")
