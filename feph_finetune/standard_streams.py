"""Standard descriptors that a process started without (``<&-``, ``>&-``, ``2>&-``, or a parent
that closed them: cron and some service managers do) are opened on devnull, first thing.

A closed descriptor 2 is worse than lost output: the next file the process opens takes the
lowest free number, 2, and whatever native code then writes to "stderr" (TensorFlow's C++ log,
FFmpeg) lands in that file: the output folder's lock, a ``result.json``, a CSV. Python meanwhile
sets ``sys.stderr`` (``sys.stdout``, ``sys.stdin``) to None, which code that flushes or writes it
does not expect. Daemons, and CPython's own start-up where it can, answer both the same way: put
devnull on every closed standard descriptor before anything else opens a file, and give Python a
stream on it. What the user discarded stays discarded, and the command runs as with ``> /dev/null``.

Imports nothing of the project's: :mod:`feph_finetune.__main__` calls it before its other imports.
"""

from __future__ import annotations

import errno
import os
import sys

#: Each standard descriptor, its ``sys`` attribute, and how it is opened.
STANDARD = ((0, "stdin", os.O_RDONLY, "r"), (1, "stdout", os.O_WRONLY, "w"), (2, "stderr", os.O_WRONLY, "w"))


def reopen_closed_standard_streams() -> None:
    """Open devnull on each of descriptors 0, 1 and 2 that is closed, and set each of
    ``sys.stdin``, ``sys.stdout``, ``sys.stderr`` that is None (and its ``sys.__stdin__``...) to a
    text stream on its descriptor. Open descriptors and existing streams are left as they are.

    They are taken in order, 0 first: ``os.open`` returns the lowest free number, so once the
    lower ones are open, devnull lands exactly on the closed one.
    """
    for fd, name, flags, mode in STANDARD:
        if _closed(fd):
            os.open(os.devnull, flags)
        if getattr(sys, name) is None:
            # errors="backslashreplace": what reaches devnull needs no encoding error of its own;
            # stderr line-buffered, as Python makes it
            stream = open(fd, mode, closefd=False, errors="backslashreplace", buffering=1 if fd == 2 else -1)
            setattr(sys, name, stream)
            if getattr(sys, f"__{name}__") is None:
                setattr(sys, f"__{name}__", stream)


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as error:
        return error.errno == errno.EBADF
    return False
