"""The child process of the ``process`` executor: :func:`run_job` executes one run.

The child is forked from the server of :mod:`feph_finetune.execution.executors.forkserver` (TensorFlow
already imported). It takes the command's environment, sends its stdout and stderr to the run's
``stderr.log``, executes the job with :func:`~feph_finetune.execution.job.execute_run` into the job's
results store, and sends the run's events as JSON over ``events`` (not stdout, which plugins and
TensorFlow may write to).

Exit status 0 once ``result.json`` is written, whether the run is done or failed; 130 when
interrupted. SIGUSR1 writes every thread's Python stack to ``stderr.log`` (the parent asks for it
before it stops a run past its ``timeout``). Any other ending (a signal, out of memory, a crash inside TensorFlow) leaves no
``result.json``, and the parent records the run as failed with the exit signal or code.
"""

from __future__ import annotations

import faulthandler
import json
import pickle
import signal
import sys
from typing import Any, Callable

from feph_finetune.errors import EXIT_INTERRUPTED
from feph_finetune.execution.executors.forkserver import begin_child
from feph_finetune.plugins import bound_the_exit


def event_sender(events: Any) -> Callable[[dict], None]:
    """Report events through the connection ``events``; a parent that stopped listening does not
    stop the run."""

    def report(event: dict) -> None:
        try:
            events.send_bytes(json.dumps(event).encode("utf-8"))
        except (BrokenPipeError, OSError, ValueError):
            pass

    return report


def run_job(payload: bytes, environment: dict[str, str], log: str, events: Any) -> None:
    """Execute the pickled :class:`~feph_finetune.execution.job.RunJob` ``payload`` in this child
    process. The job is unpickled here, after the output went to the run's ``stderr.log``, so
    that whatever fails is in the log."""
    begin_child(log, environment)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the parent asks for the stack of a run past its timeout
    try:
        from feph_finetune.execution.job import execute_run
        from feph_finetune.plugins import get_plugins
        from feph_finetune.data.preparation import DataSource

        execute_run(pickle.loads(payload), get_plugins(), DataSource(), event_sender(events))
    except KeyboardInterrupt:
        bound_the_exit(EXIT_INTERRUPTED)
        sys.exit(EXIT_INTERRUPTED)
    bound_the_exit(0)  # multiprocessing waits for non-daemon threads and child processes before the child exits
