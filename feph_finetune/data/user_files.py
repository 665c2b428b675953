"""Reading a file a user named (an image, a labels CSV, a configuration): regular files only,
of bounded size, never blocking.

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
import os
import stat

#: Largest image file read (bytes). A 50-megapixel photograph fits (about 25 MB as a JPEG, 150 MB
#: as an uncompressed 8-bit TIFF); a file beyond it is no face image, and reading it whole (the
#: decoder needs all bytes, and 8 threads decode at once) could exhaust a shared machine's memory.
MAX_IMAGE_BYTES = 256 * 2**20
#: Largest labels CSV or configuration file read (bytes): FePh's CSV is 40 kB, a labels CSV of
#: ten million rows about 500 MB; the text is held in memory whole while it is parsed.
MAX_TEXT_BYTES = 1024 * 2**20
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
    check_user_file(path, limit)  # a device is never opened: opening some acts
    descriptor = _opening(os.open, path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_BINARY", 0))
    with os.fdopen(descriptor, "rb") as stream:
        _refuse(_file_problem(os.fstat(descriptor), limit))  # what was opened, in case the name changed
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
        return None
    except ValueError:  # a NUL byte
        return "a name cannot hold a NUL byte"
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            longest = max(os.fsencode(path).split(b"/"), key=len)
            return f"a name in it has {len(longest)} bytes, more than the {NAME_MAX} a file or folder name may have"
        return f"cannot be looked up ({error.strerror or error})"
    return None


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

