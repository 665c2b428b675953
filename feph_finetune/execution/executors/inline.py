"""The ``inline`` executor: every run in the calling process, one after another.

The behaviour before executors existed, kept for debugging (a breakpoint in a plugin stops the
command itself) and for plugin objects registered at run time, which only this process knows.
TensorFlow's memory grows by what each finished run leaves behind (see README, "Executors").

A run's ``timeout`` is enforced with a real-time timer (``SIGALRM``) whose handler raises
:class:`RunTimedOut` in the running code: it ends Python code and the waits Python can
interrupt (``time.sleep``, I/O, a Keras loop between two batches). It cannot end native code
that never returns to Python (a deadlocked library), nor a plugin that catches every exception
(a bare ``except:``) and carries on; the ``process`` executor can. Such a run is still running
:data:`STOP_GRACE_S` after its timeout: a watchdog thread then records it as timed out (it did
not stop), and, since nothing can take the main thread back from it, ends the command at once
with exit 1 (:attr:`~feph_finetune.execution.executors.InProcess.end_command`), finished runs
kept. Native code that holds the interpreter's lock while it hangs keeps that thread from
running too: in a command-line process, :mod:`feph_finetune.last_resort` then ends the command a
few seconds later with every thread's stack on stderr (exit 1), finished runs kept. A stop
signal (Ctrl-C, SIGTERM, SIGHUP) that the run swallows is given the same grace, whatever the
timeout: then the command ends with exit 130, the run left to run again. The Ray driver guards
its preparation of a run's inputs the same way (:class:`StuckRun`). Signals reach only the main
thread, so from another thread a run with a timeout fails at once, saying so, rather than run
without one. The processes a run started (a hook's ``subprocess`` or ``os.system``) are ended
when it is stopped, at its timeout or a stop signal
(:mod:`~feph_finetune.execution.executors.started_processes`, which says what is not covered).
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, NoReturn

from feph_finetune.errors import EXIT_FAILED_RUNS, EXIT_INTERRUPTED, EXIT_USAGE
from feph_finetune.execution.continuation import FINISHED_RUNS, continue_line, runs_saved
from feph_finetune.execution.job import REFUSED_EVENT, Report, RunJob, Whereabouts, execute_run, failed_record, first_refused, stopped_run_record, timeout_of
from feph_finetune.execution.executors import CONTINUE_COMMAND, Executor, InProcess, end_process
from feph_finetune.execution.executors.started_processes import StartedProcesses
from feph_finetune import interrupts
from feph_finetune.interrupts import stop_under_way
from feph_finetune.last_resort import AFTER_WATCHDOG_S, deadline
from feph_finetune.plugins import CoreInterrupt
from feph_finetune.results.store import RunStore, WriteRefused


#: Seconds between two :class:`RunTimedOut` of one run past its timeout.
REPEAT_S = 1.0
#: Seconds between two looks of a run's :func:`watchdog` at the clock and for a stop signal.
WATCH_S = 0.25
#: Seconds a run past its timeout, or told to stop by a signal, has to end (:class:`RunTimedOut` raised every :data:`REPEAT_S`)
#: before the command gives it up as one that cannot be stopped: ten repeats that all fail to end it
#: mean the run swallows them (the command's one grace, :data:`feph_finetune.interrupts.STOP_GRACE_S`).
STOP_GRACE_S = interrupts.STOP_GRACE_S


class RunTimedOut(CoreInterrupt):
    """Raised in a run past its ``timeout``; a BaseException, so that no ``except Exception`` in
    a plugin or in the core records it as an ordinary failure and carries on, and a
    :class:`~feph_finetune.plugins.CoreInterrupt`, which the core never takes for the failure of
    the plugin it lands in."""


class InlineExecutor(Executor):
    name = "inline"
    summary = "every run in this process, one at a time (debugging; plugins registered at run time)"
    options = {}

    def execute(self, jobs: list[RunJob], report: Report, here: InProcess) -> None:
        whereabouts = Whereabouts()
        refusals: dict[str, dict] = {}  # run id: its REFUSED_EVENT

        def noting(event: dict) -> None:
            if event.get("event") == REFUSED_EVENT:
                refusals[event["run"]] = event
                return
            whereabouts.note(event)
            report(event)

        for number, job in enumerate(jobs, 1):
            if stop_under_way():  # a run caught the stop and returned: the command is stopping all the same
                raise KeyboardInterrupt
            timeout, started = timeout_of(job), time.time()
            store = RunStore(Path(job.output))
            if timeout and threading.current_thread() is not threading.main_thread():
                store.finish(job.id, no_timer_record(job, timeout))
            else:
                stuck = StuckRun(job, report, here, whereabouts, started, INLINE_ADVICE)
                children = StartedProcesses()
                try:
                    with watchdog(timeout, stuck.end, children.end), alarm(timeout), children.ended_if_stopped():
                        execute_run(job, here.plugins, here.source, noting)
                except RunTimedOut:
                    if store.result(job.id) is None:  # not if it ended just as the timer fired
                        record, warning = stopped_run_record(job, timeout, whereabouts.of(job.id), started, whereabouts.hook_of(job.id))
                        store.finish(job.id, record)
                        if warning:
                            report({"event": "warning", "run": job.id, "message": warning})
            if job.id in refusals:  # recorded failed: the results folder refused its files, and would the next run's
                raise first_refused(refusals[job.id])
            self.report_finished(job, report, runs_to_start=number < len(jobs))


#: Why the command ends with a run of the inline executor that did not stop, and what to use instead.
INLINE_ADVICE = ("The inline executor cannot end a run within its own process, so the command ends here; "
                 "use --executor process, which stops such a run and goes on.")


@dataclass
class StuckRun:
    """A run executing in this process (an inline run, a Ray driver's preparation of a run's
    inputs), made in the thread that executes it; :meth:`end` ends the command from a
    :func:`watchdog`'s thread once the run did not stop when told to. ``advice``: the line that
    says why the command ends and what to use instead; ``finished_runs``: the ids of the selected
    runs finished, asked as it ends (:func:`~feph_finetune.execution.continuation.runs_saved`)."""

    job: RunJob
    report: Report
    here: InProcess
    whereabouts: Whereabouts
    started: float
    advice: str
    continue_with: str = field(default_factory=CONTINUE_COMMAND.get)
    finished_runs: Callable[[], list[str]] = field(default_factory=FINISHED_RUNS.get)

    def end(self, interrupted: bool) -> NoReturn:
        """Say who held the run and how to continue, and end the command. Past its timeout
        (``interrupted`` False): record it as timed out "and did not stop" (a tracker stuck in
        ``track_run_end`` keeps the run's result) and exit 1. After a stop signal: leave it without
        a result, to run again, and exit 130. Nothing may keep the command from ending: a failure
        on the way is said with the rest (a full or read-only results disk: exit 2, as elsewhere)."""
        job, code = self.job, EXIT_INTERRUPTED if interrupted else EXIT_FAILED_RUNS
        lines: list[str] = []
        try:
            lines += self.describe(interrupted)
            if not interrupted:
                self.record()
            lines.append(continue_line(self.continue_with, runs_saved(self.finished_runs), interrupted=interrupted))
        except WriteRefused as error:
            code = EXIT_USAGE
            lines += [f"error: {error}", continue_line(self.continue_with, runs_saved(self.finished_runs), error.remedy)]
        except BaseException as error:  # whatever it is, the command ends
            lines += [f"error: run {job.id} could not be recorded: {type(error).__name__}: {error}",
                      continue_line(self.continue_with, runs_saved(self.finished_runs))]
        try:
            self.here.end_command(lines, code)
        finally:  # an end_command that failed or returned
            end_process(lines, code)

    def describe(self, interrupted: bool) -> list[str]:
        """The lines that say what the run did not do, who held it and why the command ends."""
        job, where = self.job, self.whereabouts.of(self.job.id)
        if interrupted:
            return [f"run {job.id} was stopped by a signal in {where} and did not stop: {self.why()}; it is left without a result, "
                    "to run again.", self.advice]
        return [f"run {job.id} timed out after {timeout_of(job):g} s in {where} and did not stop: {self.why()}.", self.advice]

    def why(self) -> str:
        """Who held the run (the plugin and hook it was in, where known) and what such code does."""
        in_hook = self.whereabouts.hook_of(self.job.id)
        holder = f"plugin {in_hook[0]!r} ({in_hook[1]})" if in_hook else "the run"
        return (f"{holder} did not stop within {STOP_GRACE_S:g} s of being told to: it catches the stop (an except that catches "
                "everything) or runs native code that never returns")

    def record(self) -> None:
        """Write the result of the run that timed out and did not stop (unless it ended just
        now), and report it finished."""
        job = self.job
        record, warning = stopped_run_record(job, timeout_of(job), self.whereabouts.of(job.id), self.started, self.whereabouts.hook_of(job.id))
        if warning is None:
            record["error"]["message"] += f" and did not stop: {self.why()}"
        store = RunStore(Path(job.output))
        if store.result(job.id) is None:
            store.finish(job.id, record)
        Executor.report_finished(job, self.report)


@contextmanager
def watchdog(timeout: float, stuck: Callable[[bool], object], stopping: Callable[[], object] = lambda: None) -> Iterator[None]:
    """Within the block, call ``stopping()`` from another thread once the block runs past its
    ``timeout`` or a stop signal came (it ends the processes the run started, whose waits Python
    cannot interrupt: ``os.system``), and ``stuck(interrupted)`` once the block has not
    ended :data:`STOP_GRACE_S` after its ``timeout`` (0: none), or after a stop signal (Ctrl-C,
    SIGTERM, SIGHUP) reached the command, whatever the timeout: ``interrupted`` says whether
    one did. Stop signals are watched for in the main thread only, the one they interrupt. That
    thread needs the interpreter's lock, which native code can hold for ever: with a timeout,
    :data:`~feph_finetune.last_resort.AFTER_WATCHDOG_S` after the grace, in the command line's own
    process, the process ends regardless (:func:`feph_finetune.last_resort.deadline`)."""
    watch_stops = threading.current_thread() is threading.main_thread()
    if not timeout and not watch_stops:
        yield
        return
    ended = threading.Event()

    def watch() -> None:
        begun, stopped, told = time.monotonic(), None, False
        while not ended.wait(WATCH_S):
            now = time.monotonic()
            if stopped is None and watch_stops and stop_under_way():
                stopped = now
            if not told and (stopped is not None or (timeout and now - begun >= timeout)):
                told = True
                stopping()
            if (stopped is not None and now - stopped >= STOP_GRACE_S) or (timeout and now - begun >= timeout + STOP_GRACE_S):
                stuck(stopped is not None)
                return

    threading.Thread(target=watch, name="inline-run-watchdog", daemon=True).start()
    try:
        with deadline(timeout + STOP_GRACE_S + AFTER_WATCHDOG_S) if timeout else nullcontext():
            yield
    finally:
        ended.set()


@contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Within the block, raise :class:`RunTimedOut` after ``seconds`` (0: never), and again
    every :data:`REPEAT_S` while the block has not ended (code that swallowed it with a bare
    ``except:`` meets it again). Signals reach the main thread only: elsewhere, no limit."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    armed = [True]

    def expire(signum, frame):
        if armed[0]:
            raise RunTimedOut

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, REPEAT_S)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def no_timer_record(job: RunJob, timeout: float) -> dict:
    return failed_record(job.run, {
        "plugin": "core",
        "hook": "timeout",
        "type": "TimeoutUnavailable",
        "message": (
            f"timeout = {timeout:g} cannot be enforced by the inline executor outside the main thread; "
            "run the matrix from the main thread, use the process executor, or set timeout = 0"
        ),
        "traceback": "",
    })
