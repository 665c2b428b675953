"""One matrix command per results folder at a time: an exclusive lock on the folder itself.

Two commands writing one folder would train the same runs twice and overwrite each other's files.
A matrix command holds ``flock(LOCK_EX)`` on a descriptor of its results folder (``O_DIRECTORY``)
for its whole life; a second one finds it taken and stops at once (:class:`OutputBusyError`),
naming the first's pid and start time, which the holder writes into :data:`LOCK_FILE`.

Why the folder and not the file: a lock on a file inside the folder is lost to anyone who
deletes the file (``rm OUT/.feph_finetune.lock``): the holder keeps its lock on the deleted
file, and a second command creates a new one and locks that. The folder cannot be replaced while
it holds runs, so its lock cannot be sidestepped; :data:`LOCK_FILE` only says who holds it, and
deleting it loses nothing but that text ("pid unknown"). ``flock`` locks belong to an open file
description, so a second descriptor of the folder, even in the same process, is refused: nothing
else in the program may ``flock`` the results folder (MLflow's store creation locks its own
``mlartifacts`` folder).

:data:`LOCK_FILE` is one of the program's own files: it is never followed when it is a link
(``O_NOFOLLOW``), and anything there but a regular file (a link, a folder, a FIFO, a device, a
socket) stops the command (:class:`LockFileError`) before it is written. A full or read-only disk
is raised as :func:`~feph_finetune.results.store.write_error` says, in one line.

The kernel drops the lock when the holder's descriptor is closed, so a killed command (SIGKILL,
a lost machine's reboot) never leaves a stale lock, whatever the file still says. The descriptor
is close-on-exec (``os.open``'s default, PEP 446): children started by exec (the fork server of
the ``process`` executor, Ray's workers, MLflow's and TensorBoard's helpers) never hold it, so the
lock ends with the command even where a child outlives it. Reading commands (``--dry-run``,
``report``) take no lock. The file's name starts with a dot and it is no folder: nothing that
looks for runs (``*/result.json``) takes it for one.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from feph_finetune.errors import ProblemsError

#: The file inside a results folder that names the command holding its lock.
LOCK_FILE = ".feph_finetune.lock"


class OutputBusyError(ProblemsError):
    """Another command holds the lock of the results folder ``folder``."""

    def __init__(self, folder: Path, holder: str):
        self.folder = Path(folder)
        super().__init__(f"another feph_finetune command ({holder}) is running in {self.folder}; wait for it or use another --output")


class LockFileError(ProblemsError):
    """:data:`LOCK_FILE` at ``path`` exists as something else than a regular file (``what``:
    "a link to ...", "a folder", "a FIFO"...): the command stops rather than follow or replace it."""

    def __init__(self, path: Path, what: str):
        self.path = Path(path)
        super().__init__(f"{self.path} is {what}, not a file: remove it; feph_finetune keeps its lock there")


@contextmanager
def output_locked(folder: Path) -> Iterator[None]:
    """Hold the exclusive lock of the results folder ``folder`` (created if missing) within the
    block. Raises :class:`OutputBusyError` at once, without waiting, when another process holds
    it; :class:`LockFileError` for a :data:`LOCK_FILE` that is no regular file;
    :class:`~feph_finetune.results.store.NoSpaceError` or
    :class:`~feph_finetune.results.store.UnwritableError` where the folder or file cannot be
    written. Where the file system has no ``flock`` (some network file systems) the lock is skipped."""
    import fcntl

    from feph_finetune.results.store import writing_to

    folder = Path(folder)
    with writing_to(folder, name_path=True):
        folder.mkdir(parents=True, exist_ok=True)
        claim = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise OutputBusyError(folder, _holder(folder / LOCK_FILE)) from None
            # else ENOLCK, EINVAL: no locks on this file system; the command goes on unlocked
        else:
            _write_holder(folder / LOCK_FILE)
        yield
    finally:
        os.close(claim)  # releases the lock


def _write_holder(path: Path) -> None:
    """Write "pid N, started ..." into the regular file ``path`` (created if missing), never
    through a link nor into anything else (:class:`LockFileError`)."""
    from feph_finetune.results.store import writing_to

    _refuse_other_than_file(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    with writing_to(path, name_path=True):
        try:
            descriptor = os.open(path, flags, 0o666)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):  # replaced since the look: a link, a folder, a FIFO
                _refuse_other_than_file(path)
            raise
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):  # a device or socket put there since the look
                _refuse_other_than_file(path)
            os.ftruncate(descriptor, 0)
            said = f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n".encode()
            if os.write(descriptor, said) != len(said):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        finally:
            os.close(descriptor)


def _refuse_other_than_file(path: Path) -> None:
    """Raise :class:`LockFileError` where ``path`` exists as anything but a regular file (a link
    is judged as itself, not by what it names)."""
    from feph_finetune.data.user_files import classify_path

    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(status.st_mode):
        raise LockFileError(path, f"a link to {os.readlink(path)}")
    if not stat.S_ISREG(status.st_mode):
        raise LockFileError(path, classify_path(path).described or "a special file")


def _holder(path: Path) -> str:
    """What the holder wrote in ``path`` ("pid N, started ..."), or "pid unknown" before it has
    written it, or where the file is gone or no regular file (read without following a link)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return "pid unknown"
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return "pid unknown"
        said = os.pread(descriptor, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return "pid unknown"
    finally:
        os.close(descriptor)
    return said if said.startswith("pid ") else "pid unknown"
