"""How a command stops when asked to: Ctrl-C, ``kill PID`` and a closed terminal all end it the
same way, with exit 130 and nothing half-written.

:func:`stop_signals_as_interrupt` turns SIGTERM and SIGHUP into the KeyboardInterrupt of Ctrl-C,
which every writer answers by removing its temporary file or folder; :func:`interrupts_deferred`
holds the three back for the few steps that must not be cut in two (creating a temporary and
keeping its name, removing it), so that no interrupt can land between them.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

#: The signals that ask a command to stop, besides Ctrl-C's SIGINT: ``kill PID`` (SIGTERM) and a
#: closed terminal or dropped ``ssh`` session (SIGHUP, whose default would end the command at once,
#: leaving its temporary files behind). Windows has neither SIGHUP nor handlers for it.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _in_main_thread() -> bool:
    """Only the main thread can install signal handlers (and Python runs them there only)."""
    return threading.current_thread() is threading.main_thread()


def _put_back(handlers: dict[int, object]) -> None:
    """Reinstall ``handlers``; one that Python did not install (None: set from C) becomes the default."""
    for number, handler in handlers.items():
        signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def stop_signals_as_interrupt() -> Iterator[None]:
    """Within the block, each of :data:`STOP_SIGNALS` raises KeyboardInterrupt like Ctrl-C (exit
    130, children stopped, temporary files removed); the previous handlers are put back after it.
    Outside the main thread nothing changes."""
    if not _in_main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        _put_back(previous)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Within the block, SIGINT and :data:`STOP_SIGNALS` are only noted; the first one noted is
    raised again as the block ends, to the handler that was in place (KeyboardInterrupt under
    :func:`stop_signals_as_interrupt`). For short steps only: a long one would keep Ctrl-C
    waiting. Outside the main thread, where no handler runs, nothing changes."""
    if not _in_main_thread():
        yield
        return
    noted: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: noted.append(signum)) for number in (signal.SIGINT, *STOP_SIGNALS)}
    try:
        yield
    finally:
        _put_back(previous)
        if noted:
            signal.raise_signal(noted[0])
