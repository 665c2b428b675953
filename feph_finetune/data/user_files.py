"""Reading a file a user named (an image, a labels CSV, a configuration) or one the program reads
back (a run's JSON records, a bundle's manifest: :func:`read_json_file`): regular files only, of
bounded size, never blocking.

A name in a dataset folder or on the command line may be a FIFO (``mkfifo x.png``: reading it
waits for a writer forever), a device (a link to ``/dev/zero``: reading it fills the memory), a
socket or a folder. Each file is opened without blocking (``O_NONBLOCK``, which a regular file
ignores), symbolic links followed, after checking what the name points to (``stat``: a device
is never opened, since opening some acts, like ``/dev/watchdog``), and what was opened is checked
again (``fstat``: a file swapped between the check and the open is still caught): it must be a
regular file no larger than the caller's limit.

What a path names is found in one place, :func:`classify_path` (missing, a link to nothing, a
link loop, a folder, a FIFO, ...); every message about a path's kind (:func:`lookup_problem`,
:func:`input_folder_problem`, :func:`input_file_problem`, :func:`regular_file_problem`, the
refusals of :func:`check_user_file`) is derived from it, so each is written once. No TensorFlow here.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO

#: Largest image file read (bytes). A 50-megapixel photograph fits (about 25 MB as a JPEG, 150 MB
#: as an uncompressed 8-bit TIFF); a file beyond it is no face image, and reading it whole (the
#: decoder needs all bytes, and 8 threads decode at once) could exhaust a shared machine's memory.
MAX_IMAGE_BYTES = 256 * 2**20
#: Largest labels CSV or configuration file read (bytes): FePh's CSV is 40 kB, a labels CSV of
#: ten million rows about 500 MB; the text is held in memory whole while it is parsed.
MAX_TEXT_BYTES = 1024 * 2**20
#: Largest Keras model or weights file checked (bytes), of which only a few bytes and the table of
#: contents are read: Keras Applications' largest weights (ConvNeXt XLarge) are 1.4 GB.
MAX_MODEL_BYTES = 16 * 2**30
#: No limit: for a file whose size is the reader's business (a model).
MAX_FILE_BYTES = 2**63 - 1
#: The longest file or folder name Linux file systems take (NAME_MAX), in bytes.
NAME_MAX = 255


class UnreadableFile(OSError):
    """A file that is missing (``missing``), not a regular file, over its size limit, or fails to
    read; the message says which, without the path: callers name the file their own way."""

    def __init__(self, message: str, missing: bool = False):
        super().__init__(message)
        self.missing = missing


def read_user_file(path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (symbolic links followed), at most ``limit`` bytes.

    Raises :class:`UnreadableFile` for a missing file, a FIFO, device, socket or folder, a file
    larger than ``limit``, or a read error; never blocks on a FIFO or reads an endless device.
    """
    with open_user_file(path, limit) as stream:
        try:
            data = stream.read(limit + 1)
        except OSError as error:
            raise UnreadableFile(f"cannot be read ({error.strerror or error})") from None
    if len(data) > limit:  # grew since fstat
        raise UnreadableFile(_too_big(len(data), limit))
    return data


# --- what a path names: one classification, from which every message about a path's kind comes ---

#: What :func:`classify_path` finds a name to be, beside the kinds of :data:`KIND_NAMES`: nothing
#: at all, or a name that cannot be looked up (its problem says why).
MISSING = "missing"
DANGLING_LINK = "dangling link"
LINK_LOOP = "link loop"
BAD_NAME = "bad name"
UNSEARCHABLE = "unsearchable"
FOLDER = "folder"
REGULAR_FILE = "file"

#: What :func:`input_folder_problem` and :func:`input_file_problem` say of a name that does not exist.
NO_SUCH_FOLDER = "no such folder"
NO_SUCH_FILE = "no such file"
#: What a command that reads a file or a folder (``predict``'s inputs, a bundle) says of a name that does not exist.
NO_SUCH_FILE_OR_FOLDER = "no such file or folder"
#: What :class:`UnreadableFile` says of a name that does not exist.
_DOES_NOT_EXIST = "does not exist"

#: Each kind of existing file (an ``st_mode`` test) and how a message calls it.
KIND_NAMES = (
    (stat.S_ISDIR, FOLDER, "a folder"),
    (stat.S_ISREG, REGULAR_FILE, "a file"),
    (stat.S_ISFIFO, "fifo", "a FIFO"),
    (stat.S_ISCHR, "character device", "a character device"),
    (stat.S_ISBLK, "block device", "a block device"),
    (stat.S_ISSOCK, "socket", "a socket"),
)


@dataclass(frozen=True)
class PathKind:
    """What a name on disk is, from one ``stat`` (symbolic links followed).

    - ``kind``: :data:`MISSING`, :data:`DANGLING_LINK`, :data:`LINK_LOOP`, :data:`BAD_NAME` (a
      NUL byte, a name over :data:`NAME_MAX` bytes), :data:`UNSEARCHABLE` (a folder on the way
      that cannot be searched), or one of :data:`KIND_NAMES`' kinds (``"special file"`` else).
    - ``problem``: for a name that cannot be looked up (all but missing and existing ones), why,
      as a message's predicate ("is a link loop"); empty otherwise.
    - ``described``: an existing file's kind as a message calls it ("a FIFO"); empty otherwise.
    - ``status``: the ``stat`` result of an existing file, else None.
    """

    kind: str
    problem: str = ""
    described: str = ""
    status: os.stat_result | None = None

    @property
    def exists(self) -> bool:
        return self.status is not None


#: Why an empty path is refused wherever one is given (a command-line argument, a keyword argument
#: of the Python API, the TOML, a ``--set``): ``Path("")`` is the current folder, and an empty text
#: is most often an unset shell variable (``--output "$OUT"``), which would otherwise train,
#: synthesise or write a report into wherever the command was started.
EMPTY_PATH = "an empty path (an unset shell variable?): name a file or folder"


def empty_path_problem(text: str) -> str | None:
    """:data:`EMPTY_PATH` for an empty ``text``, else None: the ``check`` of a path setting."""
    return EMPTY_PATH if text == "" else None


def classify_path(path) -> PathKind:
    """What ``path`` names (see :class:`PathKind`); never raises for a path that a ``str`` or
    ``os.PathLike`` holds. ``Path.exists()`` and ``is_dir()`` raise ``OSError`` for a name too
    long or a link loop, and answer False for a link to nothing; this tells them apart."""
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):  # read as missing, written through to a place that may not exist
            target = os.path.join(os.path.dirname(path), os.readlink(path))
            return PathKind(DANGLING_LINK, f"is a link to nothing ({target})")
        return PathKind(MISSING)
    except ValueError:  # a NUL byte
        return PathKind(BAD_NAME, "a name cannot hold a NUL byte")
    except OSError as error:
        if error.errno == errno.ELOOP:
            return PathKind(LINK_LOOP, "is a link loop")
        if error.errno == errno.ENAMETOOLONG:
            longest = max(os.fsencode(path).split(b"/"), key=len)
            return PathKind(BAD_NAME, f"a name in it has {len(longest)} bytes, more than the {NAME_MAX} a file or folder name may have")
        return PathKind(UNSEARCHABLE, f"cannot be looked up ({error.strerror or error})")
    return PathKind(*_kind_of(status.st_mode), status=status)


def _kind_of(mode: int) -> tuple[str, str, str]:
    """``(kind, "", described)`` of an existing file's ``st_mode``."""
    return next(((kind, "", described) for test, kind, described in KIND_NAMES if test(mode)), ("special file", "", "a special file"))


def lookup_problem(path) -> str | None:
    """Why ``path`` cannot even be looked up, or None (it exists, or it does not): a link to
    nothing, a link loop, a name in it longer than :data:`NAME_MAX` bytes, a NUL byte, a folder on
    the way that cannot be searched (:func:`classify_path`)."""
    return classify_path(path).problem or None


def input_folder_problem(path) -> str | None:
    """Why ``path`` is not a folder to read, or None: it cannot be looked up (a dangling link, a
    link loop, see :func:`lookup_problem`), does not exist ("no such folder"), or is something
    else ("is a FIFO, not a folder")."""
    return _not_a(classify_path(path), FOLDER, NO_SUCH_FOLDER)


def input_file_problem(path) -> str | None:
    """Why ``path`` is not a regular file to read, or None: it cannot be looked up, does not exist
    ("no such file"), is a folder ("is a folder, not a file") or another kind of file (see
    :func:`regular_file_problem`)."""
    return _not_a(classify_path(path), REGULAR_FILE, NO_SUCH_FILE)


def regular_file_problem(path) -> str | None:
    """Why ``path`` names no regular file ("is a folder, not a file", "is not a regular file (a
    FIFO)...", "is a link loop"); None when it is one or does not exist (callers say "no such
    file" their own way)."""
    return _not_a(classify_path(path), REGULAR_FILE, None)


def _not_a(found: PathKind, wanted: str, missing: str | None) -> str | None:
    """Why ``found`` is not a ``wanted`` (:data:`FOLDER` or :data:`REGULAR_FILE`) to read, ``missing`` when it does not exist."""
    if found.problem:
        return found.problem
    if not found.exists:
        return missing
    if found.kind == wanted:
        return None
    if wanted == FOLDER:
        return f"is {found.described}, not a folder"
    return _file_problem(found.status, MAX_FILE_BYTES) or None


def _file_problem(status: os.stat_result, limit: int) -> str:
    """Why a file of this ``stat`` is not read: not a regular file, or over ``limit`` bytes."""
    kind, _, described = _kind_of(status.st_mode)
    if kind == FOLDER:
        return "is a folder, not a file"
    if kind != REGULAR_FILE:
        return f"is not a regular file ({described}); only regular files are read"
    if status.st_size > limit:
        return _too_big(status.st_size, limit)
    return ""


def _refuse(problem: str) -> None:
    if problem:
        raise UnreadableFile(problem)


def _opening(call, *args):
    """``call(*args)`` (``os.open``), its errors as :class:`UnreadableFile`."""
    try:
        return call(*args)
    except FileNotFoundError:
        raise UnreadableFile(_DOES_NOT_EXIST, missing=True) from None
    except (OSError, ValueError) as error:  # ValueError: a name with a NUL byte
        raise UnreadableFile(f"cannot be opened ({getattr(error, 'strerror', None) or error})") from None


def is_utf8_name(name: str) -> bool:
    """Whether ``name`` came from valid UTF-8 bytes. Linux allows any bytes in a name; Python holds
    the others as U+DC80-U+DCFF, which cannot be written as UTF-8 text (records, CSV) nor handed to
    a library that takes names as UTF-8 (OpenCV crashes, onnxruntime and TensorFlow refuse)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_user_file(path, limit: int = MAX_FILE_BYTES) -> None:
    """Refuse ``path`` unless it names a regular file (symbolic links followed) of at most ``limit``
    bytes, as :func:`read_user_file` does, without opening it: for a file a library reads itself
    (a model for ``convert``). Raises :class:`UnreadableFile` (``missing`` for a name that does
    not exist, a link to nothing included)."""
    found = classify_path(path)
    if found.kind in (MISSING, DANGLING_LINK):
        raise UnreadableFile(_DOES_NOT_EXIST if found.kind == MISSING else found.problem, missing=True)
    _refuse(found.problem or _file_problem(found.status, limit))


def open_user_file(path, limit: int) -> BinaryIO:
    """The regular file at ``path`` (symbolic links followed), no larger than ``limit`` bytes, open
    for reading in binary mode, for a caller that reads only part of it (a model file's header).

    Raises :class:`UnreadableFile` as :func:`read_user_file` does; never blocks on a FIFO.
    """
    check_user_file(path, limit)  # a device is never opened: opening some acts
    descriptor = _opening(os.open, path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_BINARY", 0))
    stream = os.fdopen(descriptor, "rb")
    problem = _file_problem(os.fstat(descriptor), limit)  # what was opened, in case the name changed
    if problem:
        stream.close()
        raise UnreadableFile(problem)
    return stream


def _too_big(size: int, limit: int) -> str:
    return f"is larger ({size / 2**20:.0f} MiB) than the {limit // 2**20} MiB read at most"


#: Largest JSON file the program reads back (a run's ``result.json``, ``history.json``,
#: ``config.json``, a bundle's ``bundle.json``, a converted model's sidecar), in bytes: what the
#: program writes is kilobytes (a history of 10,000 epochs about 2 MB); each is held whole in memory.
MAX_JSON_BYTES = 256 * 2**20
#: Deepest nesting of arrays and objects read from such a file: what the program writes is at most
#: 5 levels deep; far deeper input (hand-made) would exhaust Python's stack in whichever code
#: walks it next (a report, a copy, ``json.dumps``), so it is refused when read.
MAX_JSON_DEPTH = 64


def read_json_file(path, limit: int | None = None):
    """The JSON value in the regular file at ``path`` (UTF-8, at most ``limit`` bytes, arrays and
    objects nested at most :data:`MAX_JSON_DEPTH` deep): a dict, list, str, int, float, bool or None.

    Raises :class:`UnreadableFile` (its message says why, without the path) for everything
    :func:`read_user_file` refuses, text that is not UTF-8, not JSON, repeats a key in one object
    (``json`` would keep the last silently: a hand-edited record), has an integer of more
    digits than Python converts, or is nested too deeply; never a RecursionError.
    """
    limit = MAX_JSON_BYTES if limit is None else limit
    return parse_json_bytes(read_user_file(path, limit), limit)


def parse_json_bytes(data: bytes, limit: int | None = None):
    """The JSON value in ``data``, the content of a JSON file, refused for what
    :func:`read_json_file` refuses in a file's content (:class:`UnreadableFile`): the one
    definition of a readable JSON file, which a writer also checks what it writes against
    (:func:`feph_finetune.results.store.unreadable_json_problem`). ``limit``: bytes, by default
    :data:`MAX_JSON_BYTES`."""
    limit = MAX_JSON_BYTES if limit is None else limit
    if len(data) > limit:
        raise UnreadableFile(_too_big(len(data), limit))
    try:
        value = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_object_without_repeats)  # a byte-order mark (Windows Notepad) is not content
    except RepeatedKey as error:
        raise UnreadableFile(f"has the key {error.key!r} twice in one object; which to use is unclear") from None
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"is not UTF-8 text ({error})") from None
    except RecursionError:  # the parser recurses per level: far past MAX_JSON_DEPTH
        raise UnreadableFile(_TOO_DEEP) from None
    except ValueError as error:  # json.JSONDecodeError, or an integer past Python's digit limit
        raise UnreadableFile(f"is not valid JSON ({error})") from None
    if nesting_depth(value) > MAX_JSON_DEPTH:
        raise UnreadableFile(_TOO_DEEP)
    return value


class RepeatedKey(ValueError):
    """A JSON object that holds ``key`` twice."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _object_without_repeats(pairs: list[tuple[str, object]]) -> dict:
    """``json``'s ``object_pairs_hook``: the object as a dict, or :class:`RepeatedKey`."""
    value = dict(pairs)
    if len(value) < len(pairs):
        seen = set()
        raise RepeatedKey(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return value


_TOO_DEEP = f"is nested too deeply (arrays or objects more than {MAX_JSON_DEPTH} levels deep)"


def nesting_depth(value: object) -> int:
    """How deeply lists and dicts nest in a parsed JSON or TOML value (0: a scalar); iterative, so
    any depth the parser accepted is measured without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth + 1)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
