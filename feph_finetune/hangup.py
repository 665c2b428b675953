"""A terminal that hangs up while the command writes on it: a closed terminal window or a dropped
``ssh`` session.

The kernel answers the hang-up twice: SIGHUP, which :mod:`feph_finetune.interrupts` turns into the
stop (exit 130 and the command that continues), and an I/O error (EIO) for every later write to the
terminal, the live view's included. The two race: a write that fails before the SIGHUP is handled,
or one in the cleanup after it, must not replace the stop by an error, nor end the command with
exit 1 where stderr is the same dead terminal. :func:`hang_ups_answered` wraps ``sys.stdout`` and
``sys.stderr`` so that a write failing because the terminal hung up points that descriptor at
devnull (nothing can be shown there any more: the live view stops drawing, later lines are
dropped) and is answered as the stop itself: KeyboardInterrupt in the main thread where no stop is
under way yet, nothing otherwise. A stream that still works (stderr sent to a file) keeps taking
what the command says, the line that continues included.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import sys
import threading
from typing import Iterator

from feph_finetune import interrupts


def terminal_hung_up(error: BaseException, fd: int) -> bool:
    """Whether ``error``, raised by a write to descriptor ``fd``, says that its terminal hung up:
    an I/O error (EIO, no file name) where a SIGHUP came or ``fd`` reports the hang-up (POLLHUP;
    a hung-up terminal no longer even answers ``isatty``). A disk's I/O error is neither."""
    if not isinstance(error, OSError) or error.errno != errno.EIO or error.filename is not None:
        return False
    return interrupts.hang_up_received() or _reports_hang_up(fd)


def _reports_hang_up(fd: int) -> bool:
    if not hasattr(select, "poll"):  # Windows: no SIGHUP either
        return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & select.POLLHUP for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


class _HangUpStream:
    """``stream`` whose writes to a hung-up terminal are answered as the stop (module docstring);
    everything else is ``stream``'s."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        with self._answered():
            return self._stream.write(text)
        return len(text)  # dropped: the terminal is gone

    def flush(self) -> None:
        with self._answered():
            self._stream.flush()

    @contextlib.contextmanager
    def _answered(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            fd = _fileno(self._stream)
            if fd is None or not terminal_hung_up(error, fd):
                raise
            _point_at_devnull(fd)
            if interrupts.hang_up_noted() and threading.current_thread() is threading.main_thread():
                raise KeyboardInterrupt from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # a test's capture, or closed
        return None


def _point_at_devnull(fd: int) -> None:
    """Put devnull on ``fd``: what is still buffered for it, and every later line, is dropped
    without another error (the interpreter's last flush included)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


@contextlib.contextmanager
def hang_ups_answered() -> Iterator[None]:
    """Within: a write of ``sys.stdout`` or ``sys.stderr`` to a terminal that hung up is the stop
    (module docstring). The streams are put back on leaving, unless code within replaced one
    (the Ray driver moves ``sys.stderr`` off a descriptor 2 that Ray keeps logging on)."""
    streams = {name: getattr(sys, name) for name in ("stdout", "stderr")}
    wrappers = {name: stream if stream is None else _HangUpStream(stream) for name, stream in streams.items()}
    for name, wrapper in wrappers.items():
        setattr(sys, name, wrapper)
    try:
        yield
    finally:
        for name, wrapper in wrappers.items():
            if getattr(sys, name) is wrapper:
                setattr(sys, name, streams[name])
