"""The ``inline`` executor: every run in the calling process, one after another.

The behaviour before executors existed, kept for debugging (a breakpoint in a plugin stops the
command itself) and for plugin objects registered at run time, which only this process knows.
TensorFlow's memory grows by what each finished run leaves behind (see README, "Executors").

A run's ``timeout`` is enforced with a real-time timer (``SIGALRM``) whose handler raises
:class:`RunTimedOut` in the running code: it ends Python code and the waits Python can
interrupt (``time.sleep``, I/O, a Keras loop between two batches). It cannot end native code
that never returns to Python (a deadlocked library); the ``process`` executor can. Signals
reach only the main thread, so from another thread a run with a timeout fails at once, saying
so, rather than run without one.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from feph_finetune.execution.job import Report, RunJob, Whereabouts, execute_run, failed_record, timed_out_record, timeout_of
from feph_finetune.execution.executors import Executor, InProcess
from feph_finetune.plugins import CoreInterrupt
from feph_finetune.results.store import RunStore


#: Seconds between two :class:`RunTimedOut` of one run past its timeout.
REPEAT_S = 1.0


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
                try:
                    with alarm(timeout):
                        execute_run(job, here.plugins, here.source, noting)
                except RunTimedOut:
                    if store.result(job.id) is None:  # not if it ended just as the timer fired
                        store.finish(job.id, timed_out_record(job.run, timeout, whereabouts.of(job.id), started))
            self.report_finished(job, report)


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
