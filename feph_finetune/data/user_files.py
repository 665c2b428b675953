"""Reading a file a user named (an image, a labels CSV, a configuration) or one the program reads
back (a run's JSON records, a bundle's manifest: :func:`read_json_file`): regular files only, of
bounded size, never blocking.

A name in a dataset folder or on the command line may be a FIFO (``mkfifo x.png``: reading it
waits for a writer forever), a device (a link to ``/dev/zero``: reading it fills the memory), a
socket or a folder. Each file is opened without blocking (``O_NONBLOCK``, which a regular file
ignores), symbolic links followed, after checking what the name points to (``stat``: a device
is never opened, since opening some acts, like ``/dev/watchdog``), and what was opened is checked
again (``fstat``: a file swapped between the check and the open is still caught): it must be a
regular file no larger than the caller's limit. No TensorFlow here.
"""

from __future__ import annotations

import errno
import json
import os
import stat
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


#: The longest file or folder name Linux file systems take (NAME_MAX), in bytes.
NAME_MAX = 255


def lookup_problem(path) -> str | None:
    """Why ``path`` cannot even be looked up, or None (it exists, or it does not):
    a file or folder name in it longer than :data:`NAME_MAX` bytes, a NUL byte, a folder on the
    way that cannot be searched. ``Path.exists()`` and ``is_dir()`` raise these as ``OSError``
    (``ENAMETOOLONG``), where a missing file only answers False."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):  # read as missing, written through to a place that may not exist
            return f"is a link to nothing ({os.path.join(os.path.dirname(path), os.readlink(path))})"
        return None
    except ValueError:  # a NUL byte
        return "a name cannot hold a NUL byte"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a link loop"
        if error.errno == errno.ENAMETOOLONG:
            longest = max(os.fsencode(path).split(b"/"), key=len)
            return f"a name in it has {len(longest)} bytes, more than the {NAME_MAX} a file or folder name may have"
        return f"cannot be looked up ({error.strerror or error})"
    return None


def input_folder_problem(path) -> str | None:
    """Why ``path`` is not a folder to read, or None: it cannot be looked up (a dangling link, a
    link loop, see :func:`lookup_problem`), does not exist, or is something else."""
    if problem := lookup_problem(path):
        return problem
    if not os.path.exists(path):
        return "no such folder"
    return None if os.path.isdir(path) else f"is {file_kind(path)}, not a folder"


def file_kind(path) -> str:
    """What ``path`` (which exists) is, for a message: "a file", "a FIFO", "a character device"..."""
    mode = os.stat(path).st_mode
    for is_kind, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if is_kind(mode):
            return kind
    return "a file"


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
    (a model for ``convert``). Raises :class:`UnreadableFile`."""
    _refuse(_file_problem(_opening(os.stat, path), limit))


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


def regular_file_problem(path) -> str | None:
    """Why ``path`` names no regular file ("is a folder, not a file", "is not a regular file (a
    FIFO)..."), from its ``stat`` alone; None when it is one or does not exist (callers say
    "no such file" their own way)."""
    try:
        check_user_file(path)
    except UnreadableFile as error:
        return None if error.missing else str(error)
    return None


def _opening(call, *args):
    """``call(*args)`` (``os.stat``, ``os.open``), its errors as :class:`UnreadableFile`."""
    try:
        return call(*args)
    except FileNotFoundError:
        raise UnreadableFile("does not exist", missing=True) from None
    except (OSError, ValueError) as error:  # ValueError: a name with a NUL byte
        raise UnreadableFile(f"cannot be opened ({getattr(error, 'strerror', None) or error})") from None


def _refuse(problem: str) -> None:
    if problem:
        raise UnreadableFile(problem)


def _file_problem(status: os.stat_result, limit: int) -> str:
    if stat.S_ISDIR(status.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(status.st_mode):
        return f"is not a regular file (a {_kind(status.st_mode)}); only regular files are read"
    if status.st_size > limit:
        return _too_big(status.st_size, limit)
    return ""


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))
    return next((name for test, name in kinds if test(mode)), "special file")


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


def read_json_file(path, limit: int = MAX_JSON_BYTES):
    """The JSON value in the regular file at ``path`` (UTF-8, at most ``limit`` bytes, arrays and
    objects nested at most :data:`MAX_JSON_DEPTH` deep): a dict, list, str, int, float, bool or None.

    Raises :class:`UnreadableFile` (its message says why, without the path) for everything
    :func:`read_user_file` refuses, text that is not UTF-8, not JSON, has an integer of more
    digits than Python converts, or is nested too deeply; never a RecursionError.
    """
    data = read_user_file(path, limit)
    try:
        value = json.loads(data.decode("utf-8-sig"))  # a byte-order mark (Windows Notepad) is not content
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"is not UTF-8 text ({error})") from None
    except RecursionError:  # the parser recurses per level: far past MAX_JSON_DEPTH
        raise UnreadableFile(_TOO_DEEP) from None
    except ValueError as error:  # json.JSONDecodeError, or an integer past Python's digit limit
        raise UnreadableFile(f"is not valid JSON ({error})") from None
    if nesting_depth(value) > MAX_JSON_DEPTH:
        raise UnreadableFile(_TOO_DEEP)
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
