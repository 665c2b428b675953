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
few seconds later with every thread's stack on stderr (exit 1), finished runs kept. Signals
reach only the main thread, so from another thread a run with a timeout fails at once, saying
so, rather than run without one.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, NoReturn

from feph_finetune.execution.job import Report, RunJob, Whereabouts, execute_run, failed_record, stopped_run_record, timeout_of
from feph_finetune.execution.executors import Executor, InProcess
from feph_finetune.last_resort import AFTER_WATCHDOG_S, deadline
from feph_finetune.plugins import CoreInterrupt
from feph_finetune.results.store import RunStore


#: Seconds between two :class:`RunTimedOut` of one run past its timeout.
REPEAT_S = 1.0
#: Seconds a run past its timeout has to end (:class:`RunTimedOut` raised every :data:`REPEAT_S`)
#: before the command gives it up as one that cannot be stopped: unwinding a run takes well under
#: a second, so ten repeats that all fail to end it mean the run swallows them.
STOP_GRACE_S = 10.0


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

        def noting(event: dict) -> None:
            whereabouts.note(event)
            report(event)

        for job in jobs:
            timeout, started = timeout_of(job), time.time()
            store = RunStore(Path(job.output))
            if timeout and threading.current_thread() is not threading.main_thread():
                store.finish(job.id, no_timer_record(job, timeout))
            else:
                stuck = partial(self.end_stuck, job, report, here, whereabouts, started)
                try:
                    with watchdog(timeout + STOP_GRACE_S if timeout else 0, stuck), alarm(timeout):
                        execute_run(job, here.plugins, here.source, noting)
                except RunTimedOut:
                    if store.result(job.id) is None:  # not if it ended just as the timer fired
                        record, warning = stopped_run_record(job, timeout, whereabouts.of(job.id), started, whereabouts.hook_of(job.id))
                        store.finish(job.id, record)
                        if warning:
                            report({"event": "warning", "run": job.id, "message": warning})
            self.report_finished(job, report)

    def end_stuck(self, job: RunJob, report: Report, here: InProcess, whereabouts: Whereabouts, started: float) -> NoReturn:
        """From the watchdog's thread: record a run that did not stop :data:`STOP_GRACE_S` after
        its timeout (a tracker stuck in ``track_run_end`` keeps the run's result) and end the
        command, saying who held the run and what to do."""
        timeout, where, in_hook = timeout_of(job), whereabouts.of(job.id), whereabouts.hook_of(job.id)
        holder = f"plugin {in_hook[0]!r} ({in_hook[1]})" if in_hook else "the run"
        why = (f"{holder} did not stop within {STOP_GRACE_S:g} s of being told to: it catches the stop (an except that catches "
               "everything) or runs native code that never returns")
        record, warning = stopped_run_record(job, timeout, where, started, in_hook)
        if warning is None:
            record["error"]["message"] += f" and did not stop: {why}"
        store = RunStore(Path(job.output))
        if store.result(job.id) is None:  # not if it ended just now
            store.finish(job.id, record)
        try:
            self.report_finished(job, report)
        except OSError:  # a full results disk: the command ends all the same
            pass
        here.end_command([
            f"run {job.id} timed out after {timeout:g} s in {where} and did not stop: {why}.",
            "The inline executor cannot end a run within its own process, so the command ends here (exit 1): finished runs are saved "
            "and the others run on the next invocation; use --executor process, which stops such a run and goes on.",
        ])


@contextmanager
def watchdog(seconds: float, stuck: Callable[[], object]) -> Iterator[None]:
    """Within the block, call ``stuck()`` from another thread if the block has not ended after
    ``seconds`` (0: never). That thread needs the interpreter's lock, which native code can hold
    for ever: :data:`~feph_finetune.last_resort.AFTER_WATCHDOG_S` later, in the command line's own
    process, the process ends regardless (:func:`feph_finetune.last_resort.deadline`)."""
    if not seconds:
        yield
        return
    ended = threading.Event()

    def watch() -> None:
        if not ended.wait(seconds):
            stuck()

    threading.Thread(target=watch, name="inline-run-watchdog", daemon=True).start()
    try:
        with deadline(seconds + AFTER_WATCHDOG_S):
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
