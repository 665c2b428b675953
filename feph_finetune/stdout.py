"""A standard output that cannot take the command's output: a full disk (``> /dev/full``), an
I/O error, or a descriptor the program closed meanwhile (one closed at the start, ``>&-``, is
devnull: :mod:`feph_finetune.standard_streams`).

A write to ``sys.stdout`` that fails raises an :exc:`OSError` with no file name, the same as a
failed write to any other open file; :func:`stdout_failures_marked` tells them apart by wrapping
``sys.stdout`` so that its own failures arrive as :exc:`OutputError`, which
:func:`feph_finetune.cli.guarded` reports as one line and exit 2. A closed reader
(:exc:`BrokenPipeError`) passes unchanged: it is the quiet exit 141.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Iterator

#: The reasons shown for the errors of a descriptor: "closed" says more than "Bad file descriptor".
_REASONS = {errno.EBADF: "standard output is closed"}


class OutputError(OSError):
    """Standard output could not be written; ``str`` is the reason, e.g. "no space left on device"."""

    def __str__(self) -> str:
        reason = _REASONS.get(self.errno) or os.strerror(self.errno or errno.EIO)
        return f"the output could not be written: {reason[:1].lower()}{reason[1:]}"


class _MarkedStream:
    """``stream`` whose ``write`` and ``flush`` raise :exc:`OutputError` for their failures;
    everything else (``isatty``, ``fileno``, ``encoding``, which rich reads) is ``stream``'s."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        with _marked():
            return self._stream.write(text)

    def flush(self) -> None:
        with _marked():
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _marked() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        if error.filename is not None:
            raise
        raise OutputError(error.errno, error.strerror) from None
    except ValueError as error:  # "I/O operation on closed file": stdout closed by the program itself
        raise OutputError(errno.EBADF, str(error)) from None


@contextlib.contextmanager
def stdout_failures_marked() -> Iterator[None]:
    """Within: ``sys.stdout``'s write failures raise :exc:`OutputError`. The stream is put back
    on leaving."""
    stream = sys.stdout
    sys.stdout = _MarkedStream(stream)
    try:
        yield
    finally:
        sys.stdout = stream


def discard_stdout() -> None:
    """Point descriptor 1 at devnull, so that the interpreter's last flush of what is still
    buffered cannot fail again ("Exception ignored ... OSError") after the error was reported."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # None, a test's capture, or closed
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fileno)
    finally:
        os.close(devnull)
