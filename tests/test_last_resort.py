"""The GIL-free last resort (:mod:`feph_finetune.last_resort`) shares faulthandler's one timer: it
must neither take it from its other users nor lose a deadline of its own. Each case runs in a
subprocess, which the timer may end."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from conftest import REPO


def python(script: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``script`` in a fresh interpreter; its result and the seconds it took."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, cwd=REPO, timeout=60)
    return done, time.monotonic() - started


def test_a_process_the_command_line_does_not_own_keeps_its_own_timer():
    """pytest's ``faulthandler_timeout`` (or a notebook's) arms the same timer: a run's deadline in
    a library call must not replace it, nor cancel it as the run ends."""
    done, _ = python("""
        import faulthandler, time
        from feph_finetune.last_resort import deadline
        faulthandler.dump_traceback_later(1, exit=True)  # the caller's timer, as pytest arms it
        with deadline(60):
            pass
        time.sleep(30)
    """)
    assert done.returncode == 1 and "Timeout (0:00:01)!" in done.stderr, done.stderr


def test_a_deadline_that_ends_gives_the_timer_back_to_the_earliest_one_pending():
    """A run's deadline ending leaves the exit's armed, and one that ended never fires."""
    done, seconds = python("""
        import time
        from feph_finetune.last_resort import deadline, deadline_until_exit, own_this_process
        own_this_process()
        with deadline(0.5):  # ended in time: cancelled
            pass
        time.sleep(1)
        deadline_until_exit(3)
        with deadline(60):  # later than the exit's: the exit's stays armed, and is armed again as this one ends
            pass
        time.sleep(30)
    """)
    assert done.returncode == 1 and "Timeout (0:00:0" in done.stderr, done.stderr
    assert 3 < seconds < 20, "the exit's deadline fired, 1 + 3 s after the start (20: a loaded machine's start-up)"
