"""A deadline that holds even where no Python code can run: the last resort beside each watchdog.

The project's watchdogs are Python threads (the inline executor's run ``timeout``,
:func:`feph_finetune.plugins.bound_the_exit`): to act, a thread must take the interpreter's lock
(the GIL). Native code that blocks while holding it (a C extension that deadlocks without
releasing it, a ``ctypes.PyDLL`` call) leaves them waiting for ever, and the command with them,
deaf to Ctrl-C. :func:`faulthandler.dump_traceback_later` times in a C thread that never takes
the lock: past its deadline it writes every thread's Python stack and ends the process with
``_exit(1)``. Each watchdog arms it :data:`AFTER_WATCHDOG_S` after its own deadline, so that it
acts only where the watchdog could not.

What the user sees is faulthandler's own text on stderr, ``Timeout (H:MM:SS)!`` and then each
thread's stack (most recent call first), and exit code 1 (README says what it means). Stderr,
because it is in front of the user as the command ends, and the main thread's stack names the
file and line (the plugin's) that held the lock. Nothing of ours can be written when the timer
fires (writing needs the lock); a line written beforehand would show on every command, and a
file kept for the next invocation to read would leave this one ending without a word.

faulthandler has one such timer per process, which whoever arms replaces and whoever cancels
cancels. Hence:

- every deadline armed here is kept in one list, and the timer follows the earliest pending one
  (a run's :func:`deadline` and the exit's :func:`deadline_until_exit` never fight);
- a run's deadline is armed only in a process the command line owns (:func:`own_this_process`),
  never in one that merely called the library (pytest, whose ``faulthandler_timeout`` uses the
  same timer; a notebook); the exit's only by a process's last step, which owns it;
- nothing here touches the timer in a child forked while it was armed: its C thread does not
  survive ``fork``, and CPython's cancel then waits for that thread for ever.
"""

from __future__ import annotations

import faulthandler
import os
import time
from contextlib import contextmanager
from typing import Iterator

from feph_finetune.interrupts import interrupts_deferred

#: Seconds after a Python watchdog's deadline that the last resort ends the process: the watchdog,
#: where it can run at all, has recorded the run and said why well within them (under a second).
AFTER_WATCHDOG_S = 5.0
#: Standard error's file descriptor, where the stacks are written (the command's terminal or log).
STDERR_FD = 2

#: The process :func:`own_this_process` claimed; runs are guarded in that process only.
_owner: int | None = None
#: The pending deadlines (``time.monotonic()`` seconds) and the process whose timer holds them.
_deadlines: list[float] = []
_armed_in: int | None = None


def own_this_process() -> None:
    """Declare this process the command line's own (``python -m feph_finetune``): its runs'
    deadlines may use faulthandler's timer, which nothing else here uses."""
    global _owner
    _owner = os.getpid()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within the block, end the process (every thread's stack on stderr, exit 1) if the block has
    not ended ``seconds`` from now (0: never); only in the process :func:`own_this_process`
    claimed, elsewhere nothing changes."""
    if not seconds or _owner != os.getpid() or not _timer_is_ours():
        yield
        return
    end = time.monotonic() + seconds
    with interrupts_deferred():  # no Ctrl-C between the list and the timer
        _deadlines.append(end)
        _follow_the_earliest()
    try:
        yield
    finally:
        with interrupts_deferred():  # a Ctrl-C here would leave the timer to end a command that had moved on
            _deadlines.remove(end)
            _follow_the_earliest()


def deadline_until_exit(seconds: float) -> None:
    """End the process (every thread's stack on stderr, exit 1) if it still runs ``seconds`` from
    now, exit handlers included; for a process's last step (nothing cancels it: the process's
    end ends the timer)."""
    if _timer_is_ours():
        _deadlines.append(time.monotonic() + seconds)
        _follow_the_earliest()


def _timer_is_ours() -> bool:
    """False in a child forked while this module's timer was armed (its timer thread is gone)."""
    return _armed_in in (None, os.getpid())


def _follow_the_earliest() -> None:
    """Arm faulthandler's timer for the earliest pending deadline, or cancel it if none is left."""
    global _armed_in
    if _deadlines:
        # In whole milliseconds, so that the header reads "Timeout (0:00:35)!", not 0:00:34.999987;
        # at least one, since faulthandler refuses 0 (a deadline already past fires at once).
        seconds_left = max(round(min(_deadlines) - time.monotonic(), 3), 0.001)
        faulthandler.dump_traceback_later(seconds_left, file=STDERR_FD, exit=True)
        _armed_in = os.getpid()
    else:
        faulthandler.cancel_dump_traceback_later()
        _armed_in = None
