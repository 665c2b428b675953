"""The processes a run in the command's own process started (a plugin's ``subprocess.Popen``,
``os.system``, an ffmpeg or an uploader), ended with the run when it is stopped.

A run of the ``process`` executor has a process group of its own, which is stopped whole. A run
of the ``inline`` executor, or the Ray driver's preparation of a run's inputs, shares the
command's process: a hook's child would keep running after the run timed out or was stopped, and
after the command ended (reparented to init). :class:`StartedProcesses` notes this process's
children as the run begins; when the run is stopped, every child that appeared since, with all
of its own descendants, gets SIGTERM, and SIGKILL :data:`TERM_GRACE_S` later if still there.

Covered: the children of any thread of this process started during the run, and their
descendants still attached to them. Not covered: a process that detached itself (a daemon's
double fork, reparented to init before the stop), a child another thread of this process
started meanwhile for its own purposes (the run's stop ends it too), and systems without Linux's
``/proc/PID/task/TID/children`` (there nothing is ended).
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

#: Seconds a started process has between SIGTERM and SIGKILL.
TERM_GRACE_S = 2.0
#: Seconds between two looks at whether the processes told to end have ended.
POLL_S = 0.05


def children_of(pid: int | str = "self") -> set[int]:
    """The child processes of ``pid`` (every thread's), from ``/proc``; empty where it cannot be read."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children.update(int(word) for word in task.read_text().split())
        except (OSError, ValueError):  # the thread or process ended meanwhile
            continue
    return children


def with_descendants(pids: set[int]) -> set[int]:
    """``pids`` and every process below them."""
    found, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children_of(pid))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, ended but not yet waited for, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:][:1] not in ("Z", "X")


class StartedProcesses:
    """This process's children as a run begins; :meth:`end` ends those started since."""

    def __init__(self) -> None:
        self.before = children_of()

    def end(self) -> None:
        """SIGTERM to every process started since (children and their descendants), then SIGKILL
        to those still running after :data:`TERM_GRACE_S`."""
        started = with_descendants(children_of() - self.before)
        for number in (signal.SIGTERM, signal.SIGKILL):
            for pid in started:
                try:
                    os.kill(pid, number)
                except OSError:  # ended meanwhile
                    pass
            limit = time.monotonic() + TERM_GRACE_S
            while (started := {pid for pid in started if running(pid)}) and time.monotonic() < limit and number == signal.SIGTERM:
                time.sleep(POLL_S)
            if not started:
                return

    @contextmanager
    def ended_if_stopped(self) -> Iterator[None]:
        """Within: a run that leaves the block by an exception (its timeout, a stop signal) ends
        the processes it started first."""
        try:
            yield
        except BaseException:
            self.end()
            raise
