"""Running a matrix: skip what is finished, hand the rest to an executor, report as runs end.

Each run's files go to its own directory in the results store; its ``result.json`` is written
last, so an interrupted matrix resumes where it stopped and never trusts a half-written run.
Where the runs execute (this process, child processes, a Ray cluster) is the executor's business
(:mod:`feph_finetune.execution.executors`); what one run does is :func:`feph_finetune.execution.job.execute_run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Mapping, NoReturn

from rich.console import Console
from rich.markup import escape

from feph_finetune.execution.job import RunJob, context_factory, ensure_run_space, execute_run, failure_summary, ignore
from feph_finetune.errors import EXIT_FAILED_RUNS
from feph_finetune.execution.executors import Executor, InProcess, end_process
from feph_finetune.config.matrix import Matrix, Run
from feph_finetune.plugins import Plugins
from feph_finetune.data.preparation import DataSource
from feph_finetune.execution.progress import MatrixView
from feph_finetune.execution.tracking import track_matrix_end, track_runs_stopped
from feph_finetune.results.store import RunStore
from feph_finetune.interrupts import stop_signals_as_interrupt

#: The note of a run that finished but was stopped or killed in a tracking plugin's ``track_run_end``.
STOPPED_IN_TRACKING = ("finished, but stopped or killed while its tracking plugins logged its end (track_run_end); "
                       "the run's result stands, its end was not logged by them")


@dataclass
class MatrixOutcome:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, other: "MatrixOutcome") -> None:
        """Count ``other``'s runs too (a matrix run in several groups)."""
        self.done += other.done
        self.skipped += other.skipped
        self.failed += other.failed


class MatrixRunner:
    """Executes the unfinished runs of a matrix against a results store, through an executor.

    Without ``executor`` the runs execute in this process (the ``inline`` executor), which is
    what a program using the runner as a library usually wants; the command line defaults to
    ``process``. ``invocation``: the command that asked for the runs, recorded in each one's
    ``config.json`` (:mod:`feph_finetune.invocation`).
    """

    def __init__(self, matrix: Matrix, plugins: Plugins, store: RunStore, console: Console, source: DataSource | None = None, executor: Executor | None = None,
                 invocation: Mapping[str, Any] | None = None):
        from feph_finetune.execution.executors.inline import InlineExecutor

        self.matrix = matrix
        self.plugins = plugins
        self.store = store
        self.console = console
        self.source = source or DataSource()
        self.executor = executor or InlineExecutor({})
        self.invocation = dict(invocation or {})

    def context_factory(self, run: Run, counters: dict[str, int]):
        return context_factory(run, counters)

    def job(self, run: Run) -> RunJob:
        return RunJob(run, self.matrix.seed, str(self.store.root), self.matrix.tracking, self.matrix.name, self.invocation)

    def run_all(self, runs: list[Run]) -> MatrixOutcome:
        """Run every run without a finished result (``--force`` sets results aside beforehand)."""
        outcome = MatrixOutcome()
        self._settle_pending(runs)
        pending = []
        for run in runs:
            if self.store.is_done(run.id):
                outcome.skipped.append(run.id)
            else:
                pending.append(run)
        if pending:
            for run in pending:  # a full disk stops the matrix before any run trains for nothing
                ensure_run_space(self.job(run))
            concurrency = getattr(self.executor, "concurrency", lambda: 1)()
            try:
                with stop_signals_as_interrupt(), MatrixView(self.console, pending, concurrency, self.executor.name) as view:
                    self.executor.execute([self.job(run) for run in pending], view.report, InProcess(self.plugins, self.source, partial(self._end_stuck, view)))
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the executor has stopped the runs; their tracked runs are closed
                self._settle_pending(pending)
                if self.matrix.tracking:
                    stopped = [run.id for run in pending if self.store.result(run.id) is None]
                    track_runs_stopped(self.matrix.name, self.matrix.tracking, stopped, self.store.root, self.plugins, self._warn)
                raise
        for run in pending:
            record = self.store.result(run.id)
            (outcome.done if record and record.get("status") == "done" else outcome.failed).append(run.id)
        for run_id in outcome.failed:
            error = (self.store.result(run_id) or {}).get("error") or {}
            self.console.print(f"[red]run {escape(run_id)}[/red] {escape(failure_summary(error))}", markup=True, soft_wrap=True)
        if self.matrix.tracking:
            done = [record for record in self.store.records([run.id for run in runs]) if record.get("status") == "done"]
            track_matrix_end(self.matrix.name, self.matrix.tracking, done, self.store.root, self.plugins, self._warn)
        return outcome

    def _settle_pending(self, runs: list[Run]) -> None:
        """Keep the runs that finished but were stopped or killed in a tracking plugin's
        ``track_run_end`` (:meth:`~feph_finetune.results.store.RunStore.settle_pending`), each said once."""
        for run in runs:
            if self.store.settle_pending(run.id, STOPPED_IN_TRACKING):
                self._warn(f"run {run.id}: {STOPPED_IN_TRACKING}")

    def _end_stuck(self, view: MatrixView, lines: list[str], code: int = EXIT_FAILED_RUNS) -> NoReturn:
        """End the command at once for a run in this process that cannot be stopped
        (:attr:`InProcess.end_command`): close the progress view, say ``lines``, exit ``code``.
        A view or console that fails (a closed or full output) leaves the lines to stderr."""
        try:
            view.__exit__(None, None, None)
            for line in lines:
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        except BaseException:  # the command ends all the same
            end_process(lines, code)
        end_process([], code)

    def _warn(self, message: str) -> None:
        self.console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)

    def run_one(self, run: Run) -> str:
        """Execute one run here and now (whatever the executor), returning its status."""
        return execute_run(self.job(run), self.plugins, self.source, ignore)
