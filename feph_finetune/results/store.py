"""The results store: one directory per run, every file written atomically.

A run's directory holds ``config.json``, ``history.json``, ``predictions.npz``, ``metrics.json``,
``environment.json`` and optionally a model bundle (``model.keras``, ``bundle.json``, ``state.npz``:
see :mod:`feph_finetune.predict.bundle`); ``result.json`` is written last and is the
only file a later step trusts: a run without it (killed mid-way) is simply run again.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from feph_finetune.data.user_files import (
    FOLDER, NAME_MAX, NO_SUCH_FOLDER, REGULAR_FILE, UnreadableFile, classify_path, input_folder_problem, lookup_problem, parse_json_bytes, read_json_file,
)
from feph_finetune.interrupts import interrupts_deferred

RESULT_FILE = "result.json"
PREVIOUS_RESULT_FILE = "result.previous.json"
#: The run's record, written just before its tracking plugins are told that it ended
#: (``track_run_end``): a run its executor stops in that hook keeps this result
#: (:func:`feph_finetune.execution.job.stopped_run_record`). Removed once ``result.json`` is written.
PENDING_RESULT_FILE = "result.pending.json"
#: The errors of a full disk (or a full quota).
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: The errors of a place that cannot be written at all, in words (``os.strerror`` would say
#: "Read-only file system" for one and "Permission denied" for the other, with no path). EFBIG:
#: the file would pass the largest size a file may have here, this process's file-size limit
#: (``ulimit -f``, RLIMIT_FSIZE, which batch systems and shared hosts set) or the file system's
#: (FAT's 4 GiB): as final as a full disk for every run after it.
UNWRITABLE_ERRNOS = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                     errno.EFBIG: "the file would be larger than a file may be here"}
#: The errors only a write gives: a full disk, a read-only file system, a file past the size
#: limit. Any error of these met anywhere is a place that cannot be written (:func:`write_error`);
#: EACCES and EPERM are left out, as a read may give them too.
WRITING_ERRNOS = (*NO_SPACE_ERRNOS, errno.EROFS, errno.EFBIG)


class WriteRefused(OSError):
    """A file could not be written: its disk is full (:class:`NoSpaceError`), or the place cannot
    take it (:class:`UnwritableError`). Every command treats them alike: one line naming the
    path, exit 2, no traceback; a matrix stops, keeps its finished runs and says how to continue
    after doing :attr:`remedy`. Raise one through :func:`write_error`, which decides which
    ``OSError`` is which."""

    @property
    def remedy(self) -> str:
        """What the user must do before continuing, for the continue line."""
        return "make it writable"


class NoSpaceError(WriteRefused):
    """A file could not be written, or a run would not fit, because the disk (or quota) of
    ``folder`` is full: of bytes, or of inodes (the file system's count of files, which a disk of
    many small files, or a small ``nr_inodes``, runs out of first). The message names the folder,
    what did not fit and which was exhausted with what is left, which ``OSError: [Errno 28]`` does
    not. ``needed``: the bytes needed, ``files_needed`` the files, where known (``at_least``: a
    lower bound, said so); ``inodes``: whether the inodes ran out (None: found from the disk,
    :func:`inodes_exhausted`).

    The folder and file are named as the user knows them (:func:`known_path`: a temporary folder
    of :func:`atomic_folder`, gone once the error is shown, by the target it was to become), and
    what is free is measured when the message is read, not when the error was raised: by then the
    writer's partial output (a temporary file or folder) is removed, and a figure measured beside
    it said "0 B free" of a disk with room."""

    def __init__(self, folder: Path, what: str, needed: int | None = None, files_needed: int | None = None, inodes: bool | None = None,
                 at_least: bool = False):
        self.folder, self.what = known_path(folder), known_name(what)
        self.needed, self.files_needed, self.at_least = needed, files_needed, at_least
        self.inodes = inodes_exhausted(self.folder) if inodes is None else inodes
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __reduce__(self):  # OSError's would call NoSpaceError(errno, strerror)
        return NoSpaceError, (self.folder, self.what, self.needed, self.files_needed, self.inodes, self.at_least)

    @property
    def strerror(self) -> str:
        """The message, with what is free on the disk now (see the class's notes)."""
        if self.inodes:
            free, wanted, unit, words = free_files(self.folder), self.files_needed, _files, "no free inodes (files) left"
        else:
            free, wanted, unit, words = free_bytes(self.folder), self.needed, human_bytes, "no space left"
        needed = "" if wanted is None else f", {'at least' if self.at_least else 'about'} {unit(wanted)} needed"
        left = "" if free is None else f" ({unit(free)} free{needed})"
        return f"{words} on the disk of {self.folder} for {self.what}{left}"

    @strerror.setter
    def strerror(self, value: str) -> None:  # OSError.__init__ sets it; the message is built when read
        pass

    def __str__(self) -> str:
        return self.strerror

    @property
    def remedy(self) -> str:
        """What the user must do before continuing: free bytes, or inodes (remove files)."""
        return "delete some files (the disk has no free inodes)" if self.inodes else "free some space"


def _files(count: int) -> str:
    return f"{count} file" + ("" if count == 1 else "s")


class UnwritableError(WriteRefused):
    """``path`` could not be written: its file system is read-only, this process may not write
    there, or the file would pass the file-size limit (:data:`UNWRITABLE_ERRNOS`); the message
    names the path and which it is."""

    def __init__(self, path: Path, code: int):
        self.path = known_path(Path(path))
        super().__init__(code, f"cannot write {self.path}: {UNWRITABLE_ERRNOS[code]}{_size_limit(code)}")

    def __reduce__(self):  # OSError's would call UnwritableError(errno, strerror)
        return UnwritableError, (self.path, self.errno)

    def __str__(self) -> str:
        return self.strerror

    @property
    def remedy(self) -> str:
        if self.errno == errno.EFBIG:
            return "raise the file-size limit (ulimit -f) or write to another file system"
        return super().remedy


def _size_limit(code: int) -> str:
    """For EFBIG, this process's file-size limit in words (`` (the file-size limit of this
    process, ulimit -f, is 1.0 KB)``), or the file system's where no limit is set; else nothing."""
    if code != errno.EFBIG:
        return ""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):  # no resource module (Windows)
        limit = None
    if limit is None or limit == getattr(resource, "RLIM_INFINITY", -1):
        return " (the largest file its file system takes)"
    return f" (the file-size limit of this process, ulimit -f, is {human_bytes(limit)})"


def write_error(error: OSError, path: Path) -> OSError:
    """The error to raise for ``error`` met while writing ``path``: a :class:`NoSpaceError` for
    a full disk, an :class:`UnwritableError` for a read-only or forbidden place or a file past
    the size limit (both naming a path), else ``error`` itself. The one place that decides which
    ``OSError`` means "cannot write here"."""
    if isinstance(error, WriteRefused):
        return error
    if error.errno in NO_SPACE_ERRNOS:
        return NoSpaceError(Path(path).parent, Path(path).name)
    if error.errno in UNWRITABLE_ERRNOS:
        return UnwritableError(Path(path), error.errno)
    return error


@contextmanager
def writing_to(path: Path, name_path: bool = False) -> Iterator[None]:
    """Within the block, a full disk or a read-only or forbidden place met while writing ``path``
    (a file or a folder) is raised as :func:`write_error` says, naming the file the error names
    (else, or with ``name_path``, ``path``), so that the command line reports it in one line
    instead of a traceback."""
    try:
        yield
    except OSError as error:
        failure = write_error(error, path if name_path else Path(error.filename or path))
        if failure is error:
            raise
        raise failure from error


def free_bytes(folder: Path) -> int | None:
    """Bytes this process may still write on the disk of ``folder`` (its nearest existing
    parent), or None when that cannot be read."""
    try:
        return shutil.disk_usage(_existing(folder)).free
    except OSError:
        return None


def free_files(folder: Path) -> int | None:
    """Files (inodes) this process may still create on the disk of ``folder`` (its nearest
    existing parent), or None where the file system has no fixed count (``f_files`` 0: btrfs,
    some network file systems) or it cannot be read."""
    try:
        status = os.statvfs(_existing(folder))
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return None
    return status.f_favail if getattr(status, "f_files", 0) else None


def inodes_exhausted(folder: Path) -> bool:
    """Whether the disk of ``folder`` has no inode left (so a full disk's ENOSPC is about files,
    not bytes)."""
    return free_files(folder) == 0


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def ensure_space(folder: Path, needed: int, what: str, files: int = 0, at_least: bool = False) -> None:
    """Raise :class:`NoSpaceError` when the disk of ``folder`` has less than ``needed`` bytes, or
    fewer than ``files`` inodes, free for ``what`` (a description for the message); no check
    where the free space or free inodes are unknown. ``at_least``: ``needed`` is a lower bound
    (the message says "at least", not "about"). Called before a command's long work, so that a
    disk known to be full is said at once, not after it."""
    free = free_bytes(folder)
    if free is not None and free < needed:
        raise NoSpaceError(folder, what, needed, inodes=False, at_least=at_least)
    free = free_files(folder)
    if free is not None and free < files:
        raise NoSpaceError(folder, what, files_needed=files, inodes=True)


@contextmanager
def atomic_path(path: Path, *, follow_link: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success, rename it over ``path``.

    A crash leaves either the old file or the new one, never half of one. The file's mode
    follows the umask, like any file the user creates (0o644 under the usual umask 0o022):
    :func:`tempfile.mkstemp` would make every result private to its owner (0o600). The
    temporary name ends in ``path``'s name, so that writers choosing a format by the suffix
    (Keras' ``model.save``; ``save_weights`` wants ``.weights.h5``) write ``path``'s format.
    Every file the project writes atomically goes through here, every folder through
    :func:`atomic_folder`. A full disk raises :class:`NoSpaceError` naming ``path``, and leaves
    no temporary file; so does an interrupt (Ctrl-C, SIGTERM, SIGHUP), at any point.

    A symbolic link at ``path`` is replaced as a whole, its target never touched: a link planted
    in a folder of the program's own (a shared crop cache, a results folder) must not make it
    write over another file. Only where the user named ``path`` (``predict --out``, ``convert``'s
    output) does ``follow_link`` write through a link to a regular file (:func:`written_path`):
    the file it points to is replaced, the link kept, as a shell's ``>`` does.
    """
    temporary, path = None, written_path(path) if follow_link else Path(path)
    try:
        with writing_to(path, name_path=True):  # not the temporary file's name
            path.parent.mkdir(parents=True, exist_ok=True)
            with interrupts_deferred():  # no interrupt between creating it and knowing its name
                temporary = _create_temporary(path)
            yield Path(temporary)
            with open(temporary, "rb+") as written:
                os.fsync(written.fileno())
            os.replace(temporary, path)
    finally:
        with interrupts_deferred():
            if temporary is not None and os.path.exists(temporary):
                os.unlink(temporary)


@contextmanager
def atomic_folder(path: Path, *, follow_link: bool = False) -> Iterator[Path]:
    """Yield a new empty folder beside ``path``; on success, rename it to ``path``.

    ``path`` must not exist or be an empty folder (it is replaced). On an error the temporary
    folder and its contents are removed and ``path`` is as it was. The folder's mode follows the
    umask (0o755 under 0o022), where :func:`tempfile.mkdtemp` would make it 0o700; files written
    into it keep their own modes. A full disk, a read-only or forbidden place raise
    :class:`NoSpaceError` or :class:`UnwritableError` naming a path (:func:`write_error`). With
    ``follow_link`` (a folder the user named, as :func:`atomic_path`'s), a symbolic link to an
    empty folder is written through (:func:`written_path`), the link kept.
    """
    temporary, path = None, written_path(path, FOLDER) if follow_link else Path(path)
    try:
        with writing_to(path, name_path=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            with interrupts_deferred():
                temporary = _create_temporary(path, folder=True)
            yield Path(temporary)
            if path.is_dir():
                path.rmdir()  # only an empty folder: refuses (OSError) to lose anything in it
            os.replace(temporary, path)
    finally:
        with interrupts_deferred():  # a second Ctrl-C must not leave half of it
            if temporary is not None and os.path.isdir(temporary):
                shutil.rmtree(temporary)


def output_file_problem(path: Path) -> str | None:
    """Why a file cannot be written at ``path``, or None: checked before any work starts.

    Refused: an existing folder, FIFO, device or socket (writing would replace it with a regular
    file, and a FIFO's reader would wait forever: the kind is named, :func:`classify_path`), a
    parent that does not exist or is not a folder, a parent this process cannot write to (the
    file is written beside its target, then renamed, see :func:`atomic_path`), an existing file
    that cannot be replaced. A symbolic link to a regular file is written through: the file it
    points to is replaced and the link kept (:func:`written_path`), so its folder is the one checked.
    """
    path = Path(path)
    if problem := output_target_problem(path):
        return problem
    parent = written_path(path).parent
    if (problem := input_folder_problem(parent)) == NO_SUCH_FOLDER:
        return f"the folder {parent} does not exist"
    if problem:
        return f"{parent}: {problem}"
    return _unwritable_folder(parent)


def overwritten_input_problem(path: Path, command: str, files: Iterable[Path] = (), folders: Iterable[Path] = ()) -> str | None:
    """Why writing ``path`` would destroy or add to what ``command`` reads, or None: checked with
    :func:`output_file_problem`, before any work.

    ``files``: the files the command reads (its inputs, the files of the model or run it loads);
    ``path`` is refused where it is one of them by identity (device and inode, links followed:
    another spelling, a symbolic or hard link; an output the user names is written through a
    link, :func:`written_path`). ``folders``: folders whose files the command reads (a folder of
    frames); ``path`` is refused anywhere inside one, where the file would be read next time.
    The answer names the file or folder read, for a message "OPTION PATH: <answer>".
    """
    found = classify_path(path)
    if found.exists:
        written = (found.status.st_dev, found.status.st_ino)
        for file in files:
            status = classify_path(file).status
            if status is not None and (status.st_dev, status.st_ino) == written:
                return f"is {file}, which {command} reads; give another file"
    around = _folder_identities(written_path(path).parent)
    for folder in folders:
        status = classify_path(folder).status
        if status is not None and (status.st_dev, status.st_ino) in around:
            return f"lies inside {folder}, a folder whose files {command} reads (it would be read as one of them next time); give a file elsewhere"
    return None


def _folder_identities(folder: Path) -> set[tuple[int, int]]:
    """``(st_dev, st_ino)`` of ``folder`` and of every folder above it (links resolved) that exists."""
    identities = set()
    for above in (resolved := Path(os.path.realpath(folder)), *resolved.parents):
        status = classify_path(above).status
        if status is not None:
            identities.add((status.st_dev, status.st_ino))
    return identities


def output_target_problem(path: Path) -> str | None:
    """Why the name ``path`` itself cannot take a file written there (the first checks of
    :func:`output_file_problem`, for a writer that creates the folders on the way): it cannot be
    looked up, its name is too long, or it exists as a folder, FIFO, device or socket, named so."""
    path = Path(path)
    if problem := _name_problem(path):
        return problem
    found = classify_path(path)
    if found.kind == FOLDER:
        return "is a folder; give a file name"
    if found.exists and found.kind != REGULAR_FILE:
        return f"is {found.described}, not a regular file; it is never written over: give a file name"
    return None


def written_path(path: Path, kind: str = REGULAR_FILE) -> Path:
    """Where writing ``path`` goes: for a symbolic link to a ``kind`` (:data:`REGULAR_FILE` or
    :data:`FOLDER`), what it points to, links resolved, so that writing replaces that and keeps
    the link; else ``path`` itself. For what a user names only (see :func:`atomic_path`); a link
    to anything else is refused before, :func:`output_target_problem`."""
    path = Path(path)
    if os.path.islink(path) and classify_path(path).kind == kind:
        return Path(os.path.realpath(path))
    return path


def output_folder_problem(path: Path) -> str | None:
    """Why a folder cannot be created or written at ``path``, or None: checked before any work.

    Refused: an existing file, a file on the way to it, a nearest existing folder this process
    cannot write to (the missing folders are created there).
    """
    path = Path(path)
    if problem := _name_problem(path):
        return problem
    if path.exists() and (problem := input_folder_problem(path)):
        return problem
    existing = _existing(path)
    if problem := input_folder_problem(existing):
        return f"{existing} {problem}"
    return _unwritable_folder(existing)


def _name_problem(path: Path) -> str | None:
    """Why ``path`` cannot be looked up (:func:`~feph_finetune.data.user_files.lookup_problem`), or
    why its own name cannot be written through a temporary beside it (:data:`LONGEST_ATOMIC_NAME`)."""
    problem = lookup_problem(path)
    if problem is None and len(os.fsencode(path.name)) > LONGEST_ATOMIC_NAME:
        problem = f"its name has {len(os.fsencode(path.name))} bytes, more than the {LONGEST_ATOMIC_NAME} written here may have (a temporary name beside it adds {NAME_MAX - LONGEST_ATOMIC_NAME})"
    return problem


def _unwritable_folder(folder: Path) -> str | None:
    """Why nothing can be created in the existing ``folder`` (a read-only file system, no
    permission), or None."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"cannot write to the folder {folder} (the file system is read-only)"
    except OSError:
        pass  # no statvfs here: the access check below still applies
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write to the folder {folder} (permission denied)"
    return None


#: The longest name a file written through :func:`atomic_path` may have: its temporary's name
#: adds a prefix (``.<12 hex digits>.tmp.``, :func:`_create_temporary`).
LONGEST_ATOMIC_NAME = NAME_MAX - len(".000000000000.tmp.")


#: The name of a temporary file or folder of :func:`_create_temporary`; its group, the name it becomes.
TEMPORARY_NAME = re.compile(r"\.[0-9a-f]{12}\.tmp\.(.+)")


def known_path(path: Path) -> Path:
    """``path`` as the user knows it: each temporary file or folder in it (``.<random>.tmp.NAME``,
    :func:`_create_temporary`) named by what it becomes (``NAME``). An error shown once
    :func:`atomic_path` or :func:`atomic_folder` removed the temporary names the target the
    user asked for (``report/``, a figures folder, the demo's cache), not a hidden path gone by then."""
    path = Path(path)
    return Path(*map(known_name, path.parts)) if path.parts else path


def known_name(name: str) -> str:
    """``name``, or the name a temporary file or folder of that name becomes (:func:`known_path`)."""
    match = TEMPORARY_NAME.fullmatch(name)
    return match.group(1) if match else name


def _create_temporary(path: Path, folder: bool = False) -> str:
    """Create a new empty file (mode 0o666 less the umask) or folder (0o777 less the umask)
    beside ``path``, hidden and ending in ``path``'s name (``.<random>.tmp.NAME``); return its name."""
    while True:
        candidate = path.parent / f".{secrets.token_hex(6)}.tmp.{path.name}"
        try:
            if folder:
                os.mkdir(candidate, 0o777)
            else:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return str(candidate)


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(json_file_bytes(data))


def json_file_bytes(data: Any) -> bytes:
    """The content :func:`write_json` writes for ``data``: indented UTF-8 JSON text."""
    return (json.dumps(data, indent=2, sort_keys=False, default=jsonable) + "\n").encode("utf-8")


def unreadable_json_problem(data: Any) -> str:
    """Why the file :func:`write_json` would write for ``data`` could not be read back
    (:func:`~feph_finetune.data.user_files.parse_json_bytes`, what every reader of the program's
    JSON files refuses: over 256 MiB, nested over 64 levels, a key twice in one object, as
    ``{"1": 3, 1: 2}`` is written), in words starting "it"; '' when it could.
    Checked before a record is written: one the reader refuses would lose a finished run."""
    try:
        parse_json_bytes(json_file_bytes(data))
    except UnreadableFile as error:
        return f"it {error}"
    return ""


def jsonable(value: Any) -> Any:
    """The JSON form of a value ``json`` cannot write itself (numpy scalars and arrays, paths,
    typed records); TypeError for any other."""
    if hasattr(value, "to_json"):  # a typed record (a run's RunConfig in a model bundle's manifest)
        return value.to_json()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_arrays(path: Path, **arrays: np.ndarray) -> None:
    """``numpy.savez`` of ``arrays`` (no pickling), atomically at ``path``."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)


def write_model(path: Path, model: Any) -> None:
    """``model.save`` (a Keras model; the format follows ``path``'s suffix) atomically at ``path``."""
    with atomic_path(path) as temporary:
        model.save(temporary)


class RunStore:
    """The output directory of a matrix: a sub-directory per run id.

    ``warn`` receives one line per ``result.json`` that exists but cannot be used (not JSON, not
    UTF-8, a field of the wrong shape: see :class:`feph_finetune.results.records.RunRecord`), naming the
    file and every problem; such a run counts as not finished, so a matrix runs it again and a
    report leaves it out.
    """

    def __init__(self, root: Path, warn: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.warn = warn
        self._warned: set[Path] = set()

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def result(self, run_id: str) -> dict[str, Any] | None:
        """The run's final record, checked and normalised (:meth:`RunRecord.to_json`), or None when
        it never finished writing a usable one."""
        from feph_finetune.results.records import RecordShapeError, RunRecord

        path = self.run_dir(run_id) / RESULT_FILE
        try:
            record = read_json_file(path)
        except UnreadableFile as error:
            return None if error.missing else self._skip(path, f"unreadable (it {error})")
        try:
            checked = RunRecord.from_json(record, folder=run_id).to_json()
        except RecordShapeError as error:
            return self._skip(path, f"wrong shape ({error})")
        if checked.get("id") and checked["id"] != run_id:  # copied from another run's folder: not this run's result
            return self._skip(path, f"its id {checked['id']!r} is not its folder's name")
        if checked.get("status") is None:  # the tables count done and failed runs: shown, it read "runs 0, failed 0"
            return self._skip(path, 'it records no status ("done" or "failed")')
        return checked

    def _skip(self, path: Path, why: str) -> None:
        if self.warn is not None and path not in self._warned:
            self._warned.add(path)
            self.warn(f"{path}: skipped, {why}; the run counts as not finished")
        return None

    def is_done(self, run_id: str) -> bool:
        result = self.result(run_id)
        return bool(result) and result.get("status") == "done"

    def write(self, run_id: str, name: str, data: Any) -> None:
        write_json(self.run_dir(run_id) / name, data)

    def write_predictions(self, run_id: str, y_true: np.ndarray, y_prob: np.ndarray) -> None:
        write_arrays(self.run_dir(run_id) / "predictions.npz", y_true=y_true, y_prob=y_prob)

    def predictions(self, run_id: str) -> tuple[np.ndarray, np.ndarray]:
        with np.load(self.run_dir(run_id) / "predictions.npz") as data:
            return data["y_true"], data["y_prob"]

    def discard(self, run_id: str) -> None:
        """Mark a finished run as to be redone: its ``result.json`` becomes ``result.previous.json``.

        ``--force`` does this to every selected run before the first starts, so that after an
        interrupt the same command without ``--force`` reruns exactly the runs not yet redone.
        The previous record is kept, not deleted (nothing finished is lost; rename it back to
        restore the run); a rerun overwrites the run's other files as it writes them.
        """
        current = self.run_dir(run_id) / RESULT_FILE
        if current.exists():
            os.replace(current, current.with_name(PREVIOUS_RESULT_FILE))
        elif (pending := current.with_name(PENDING_RESULT_FILE)).exists():  # never settled (:meth:`settle_pending`): set aside the same way
            os.replace(pending, current.with_name(PREVIOUS_RESULT_FILE))

    def finish(self, run_id: str, record: dict[str, Any]) -> None:
        """Write the final record last: from now on the run counts as done (or failed)."""
        self.write(run_id, RESULT_FILE, record)
        (self.run_dir(run_id) / PENDING_RESULT_FILE).unlink(missing_ok=True)

    def settle_pending(self, run_id: str, note: str) -> bool:
        """Finish a run that wrote its record (:data:`PENDING_RESULT_FILE`) but never returned from
        its tracking plugins' ``track_run_end``: a stop (Ctrl-C, SIGTERM, a cancelled Ray task) or
        a kill there. It had finished, so its record stands, with ``note``; returns whether it
        did. A run with a ``result.json`` (even one that cannot be read) is left as it is."""
        if os.path.lexists(self.run_dir(run_id) / RESULT_FILE) or (pending := self.pending_result(run_id)) is None:
            return False
        self.finish(run_id, {**pending, "notes": [*(pending.get("notes") or []), note]})
        return True

    def pending_result(self, run_id: str) -> dict[str, Any] | None:
        """The record the run wrote before its ``track_run_end`` (:data:`PENDING_RESULT_FILE`), or
        None when it wrote none or one that cannot be read."""
        from feph_finetune.results.records import RecordShapeError, RunRecord

        try:
            return RunRecord.from_json(read_json_file(self.run_dir(run_id) / PENDING_RESULT_FILE)).to_json()
        except (UnreadableFile, RecordShapeError):
            return None

    def records(self, ids: list[str] | None = None) -> list[dict[str, Any]]:
        """The final records of the given runs (all runs under the root when None)."""
        if ids is None:
            ids = sorted(path.parent.name for path in self.root.glob(f"*/{RESULT_FILE}"))
        return [record for record in map(self.result, ids) if record is not None]
