"""The child process of the ``process`` executor: ``python -m feph_finetune.executors.worker RUN_ID``.

Reads one pickled :class:`~feph_finetune.execution.RunJob` from stdin, executes it with
:func:`~feph_finetune.execution.execute_run` into the job's results store, and writes the run's
events as JSON lines to the file descriptor named by ``FEPH_FINETUNE_EVENTS_FD`` (not stdout,
which plugins and TensorFlow may write to; the parent sends stdout and stderr to the run's
``stderr.log``). The run id on the command line is only there for ``ps``.

Exit status 0 once ``result.json`` is written, whether the run is done or failed; 130 when
interrupted. Any other ending (a signal, out of memory, a crash inside TensorFlow) leaves no
``result.json``, and the parent records the run as failed with the exit signal or code.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import sys

EVENTS_FD_ENV = "FEPH_FINETUNE_EVENTS_FD"
PARENT_PID_ENV = "FEPH_FINETUNE_PARENT_PID"


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a killed command leaves no
    orphan still writing into the results store); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.environ.get(PARENT_PID_ENV) and os.getppid() != int(os.environ[PARENT_PID_ENV]):
        os._exit(1)  # the parent died before prctl took effect


def event_writer(fd: int):
    stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8")

    def report(event: dict) -> None:
        try:
            stream.write(json.dumps(event) + "\n")
        except (BrokenPipeError, ValueError):  # the parent stopped listening: keep running the run
            pass

    return report


def main() -> int:
    die_with_parent()
    job = pickle.load(sys.stdin.buffer)
    from feph_finetune.execution import execute_run
    from feph_finetune.plugins import get_plugins
    from feph_finetune.preparation import DataSource

    report = event_writer(int(os.environ[EVENTS_FD_ENV]))
    execute_run(job, get_plugins(), DataSource(), report)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
