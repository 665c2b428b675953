"""The line a matrix command ends with when it stops early (Ctrl-C, a full disk, a run that does
not stop, a failed pre-training): how to continue, and that finished runs are saved only where a
selected run has finished. A Ctrl-C at ``[0/1]`` has saved nothing, and a line claiming it had
would send the user looking for results that are not there.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Callable


def _none_known() -> list[str]:
    return []


#: The ids of the selected runs finished in the results folder, asked when the command stops
#: (:meth:`feph_finetune.session.Session.finished_runs`, set by the command line while it runs a
#: matrix, in the thread that runs it); none known by default, so nothing is claimed saved.
FINISHED_RUNS: ContextVar[Callable[[], list[str]]] = ContextVar("finished_runs", default=_none_known)


def runs_saved(finished_runs: Callable[[], list[str]] | None = None) -> bool:
    """Whether a selected run has finished (``finished_runs``: how to ask, :data:`FINISHED_RUNS`'s
    by default); False where the results folder cannot be read, since then it cannot be said."""
    try:
        return bool((finished_runs or FINISHED_RUNS.get())())
    except OSError:
        return False


def continue_line(command: str, saved: bool, remedy: str = "", interrupted: bool = False) -> str:
    """The last line of a matrix command stopped early: ``interrupted:`` after a stop signal,
    ``finished runs are saved`` where ``saved`` (:func:`runs_saved`), then ``remedy`` (``free some
    space``) and the ``command`` that continues."""
    step = f"{remedy}, then continue with: {command}" if remedy else f"to continue, run: {command}"
    return ("interrupted: " if interrupted else "") + ("finished runs are saved; " if saved else "") + step
