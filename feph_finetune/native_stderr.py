"""What native code (OpenCV's C++, FFmpeg) writes straight to the process's stderr, caught so
that it can be reported as one escaped line instead of reaching the terminal raw.

OpenCV's own AVI parser, for one, reports a damaged header with a C ``fprintf(stderr, ...)``
that quotes the file's bytes ("Unexpected list type. Expected: hdrl. Got: " and four bytes of
garbage): neither OpenCV's log level nor ``sys.stderr`` can quiet it, only file descriptor 2.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from feph_finetune.interrupts import interrupts_deferred

#: The most of the caught output that is kept, in bytes: a report quotes a line of it, not pages.
KEPT_BYTES = 4096


@dataclass
class NativeOutput:
    """What was written to file descriptor 2 during a :func:`native_stderr_caught` block: its
    lines, stripped, without empty ones (bytes that are not UTF-8 as ``\\xNN``); set when the
    block ends."""

    lines: tuple[str, ...] = ()

    def __str__(self) -> str:
        return " / ".join(self.lines)

    def decoder_lines(self) -> "NativeOutput":
        """Of these lines, FFmpeg's (``[mjpeg @ 0x55d0...] ...``) and OpenCV's (``[ WARN:0@1.2]
        ...``), which both start with ``[``, and libpng's (``libpng error: ...``); every other line
        is another thread's (TensorFlow's C++ log, a Python warning) that fd 2 caught in passing,
        and is written on to the real stderr as it would have been."""
        others = [line for line in self.lines if not line.startswith(_DECODER_STARTS)]
        if others:
            os.write(2, "".join(f"{line}\n" for line in others).encode("utf-8", errors="backslashreplace"))
        return NativeOutput(tuple(line for line in self.lines if line.startswith(_DECODER_STARTS)))


#: How the lines of the decoders OpenCV runs start: FFmpeg's and OpenCV's log, libpng's messages.
_DECODER_STARTS = ("[", "libpng ")


@contextmanager
def native_stderr_caught() -> Iterator[NativeOutput]:
    """Within the block, file descriptor 2 goes to a temporary file; the previous one is back
    when the block ends, however it ends (an exception, Ctrl-C), and what was written is in the
    yielded :class:`NativeOutput`. One block: :class:`NativeStderr` for many.

    fd 2 is the whole process's: anything any thread writes to stderr meanwhile is caught too.
    Keep the block to a native call during which no other thread writes to stderr (an OpenCV
    ``VideoCapture`` being opened); a Python error that escapes the block is printed after it,
    to the real stderr, as ever.
    """
    with NativeStderr() as catcher, catcher.caught() as output:
        yield output


class NativeStderr:
    """Catches file descriptor 2 block after block (:meth:`caught`) into one temporary file, so
    that watching each of many short native calls (decoding a video's frames, one ``grab`` each)
    costs two ``dup2`` calls and no file of its own; a context manager that removes the file."""

    def __init__(self):
        self._file = tempfile.TemporaryFile(prefix="feph-stderr-")
        self._read = 0  # the file's bytes that earlier blocks returned

    def __enter__(self) -> "NativeStderr":
        return self

    def __exit__(self, *exc_info) -> None:
        self._file.close()

    @contextmanager
    def caught(self) -> Iterator[NativeOutput]:
        """Within the block, fd 2 goes to the file; the previous one is back when the block ends,
        however it ends (an exception, Ctrl-C), and what was written in it is in the yielded
        :class:`NativeOutput` (at most :data:`KEPT_BYTES`). The descriptors are swapped with
        interrupts deferred, so that a Ctrl-C cannot land between a ``dup`` and the step that
        keeps or undoes it."""
        output = NativeOutput()
        sys.stderr.flush()  # what Python already buffered belongs before the block
        real = None
        try:
            with interrupts_deferred():  # a stop noted here is raised as it ends, inside the try
                real = os.dup(2)
                os.dup2(self._file.fileno(), 2)
            yield output
        finally:
            if real is not None:
                with interrupts_deferred():
                    sys.stderr.flush()  # a Python write in the block goes with the rest
                    os.dup2(real, 2)
                    os.close(real)
            output.lines = self._new_lines()

    def _new_lines(self) -> tuple[str, ...]:
        end = os.fstat(self._file.fileno()).st_size
        if end == self._read:  # nothing written: the usual case, no read
            return ()
        self._file.seek(self._read)
        text = self._file.read(min(end - self._read, KEPT_BYTES)).decode("utf-8", errors="backslashreplace")
        self._file.seek(end)  # the next block's writes go after these, whatever was read
        self._read = end
        return tuple(line.strip() for line in text.splitlines() if line.strip())
