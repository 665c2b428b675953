"""One matrix command per results folder at a time: an exclusive lock on a file inside it.

Two commands writing one folder would train the same runs twice and overwrite each other's files.
A matrix command holds ``flock(LOCK_EX)`` on :data:`LOCK_FILE` in its results folder for its whole
life; a second one finds it taken and stops at once (:class:`OutputBusyError`), naming the first's
pid and start time, which the holder writes into the file. The kernel drops the lock when the
holder's file is closed, so a killed command (SIGKILL, a lost machine's reboot) never leaves a stale
lock, whatever the file still says. The file is opened close-on-exec (``os.open``'s default,
PEP 446): children started by exec (the fork server of the ``process`` executor, Ray's workers,
MLflow's and TensorBoard's helpers) never hold it, so the lock ends with the command even where a
child outlives it. Reading commands (``--dry-run``, ``report``) take no lock. The name starts with
a dot and is no folder: nothing that looks for runs (``*/result.json``) takes it for one.
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from feph_finetune.errors import ProblemsError

#: The lock file inside a results folder.
LOCK_FILE = ".feph_finetune.lock"


class OutputBusyError(ProblemsError):
    """Another command holds the lock of the results folder ``folder``."""

    def __init__(self, folder: Path, holder: str):
        self.folder = Path(folder)
        super().__init__(f"another feph_finetune command ({holder}) is running in {self.folder}; wait for it or use another --output")


@contextmanager
def output_locked(folder: Path) -> Iterator[None]:
    """Hold the exclusive lock of the results folder ``folder`` (created if missing) within the
    block. Raises :class:`OutputBusyError` at once, without waiting, when another process holds
    it; where the file system has no ``flock`` (some network file systems) the lock is skipped."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise OutputBusyError(folder, _holder(descriptor)) from None
            # else ENOLCK, EINVAL: no locks on this file system; the command goes on unlocked
        else:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n".encode())
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _holder(descriptor: int) -> str:
    """What the holder wrote ("pid N, started ..."), or "pid unknown" before it has written it."""
    said = os.pread(descriptor, 200, 0).decode("utf-8", "replace").strip()
    return said if said.startswith("pid ") else "pid unknown"
