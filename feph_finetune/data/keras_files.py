"""Whether a file a user named as a Keras model or weights file is one, checked without TensorFlow.

A ``weights`` or ``file`` option that names a text file, an empty file, an image or a ``.keras``
archive renamed ``.h5`` used to pass ``--dry-run``, and then every run failed in ``build_model``
(Keras even says "File not found" for a ``.keras`` name that is no zip). The check here reads a
few bytes, the zip's table of contents and, where h5py is installed (Keras depends on it), the
names at the top of an HDF5 file; it never loads weights, so it cannot tell whether they fit an
architecture (that needs the model built, which is left to the run).

What each suffix must hold, as Keras reads it:

- ``.keras``: a zip archive holding ``config.json`` (a model's configuration, JSON) and
  ``model.weights.h5`` (an HDF5 file).
- ``.weights.h5``: an HDF5 file in Keras 3's weights layout (top-level ``layers`` or ``vars``).
- ``.h5``, ``.hdf5``: an HDF5 file in Keras' legacy layout: a whole model (attribute
  ``model_config``) or weights only (attribute ``layer_names``, or a ``model_weights`` group);
  Keras 3's weights layout is read too.

An HDF5 file starts with its signature at offset 0, or at 512, 1024, 2048... when a user block
comes first.
"""

from __future__ import annotations

import codecs
import json
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from feph_finetune.data.user_files import MAX_MODEL_BYTES, UnreadableFile, open_user_file

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: What a ``.keras`` archive must hold (Keras 3's saving format).
KERAS_ARCHIVE_MEMBERS = ("config.json", "model.weights.h5")
#: Largest ``config.json`` read from a ``.keras`` archive (bytes): EfficientNet-B7's is 0.3 MB.
MAX_CONFIG_BYTES = 64 * 2**20
#: Top-level names of an HDF5 file in Keras 3's weights layout (``save_weights``, ``model.weights.h5``).
KERAS3_WEIGHTS_GROUPS = ("layers", "vars")

#: Leading bytes of formats a wrong file often has, so that a message says what the file is.
KNOWN_STARTS: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x80", "a Python pickle (a PyTorch checkpoint?)"),
    (b"%PDF", "a PDF document"),
    (b"\x93NUMPY", "a NumPy array file"),
)


def keras_file_problem(value: Any, whole_model: bool = False) -> str | None:
    """Why the file ``value`` names is not a Keras file of the kind its suffix says, or None.

    For an ``Option(path="file", check=keras_file_problem)`` (a plugin's ``weights`` option);
    ``whole_model=True`` also refuses weights-only files (an option that loads a whole model:
    ``functools.partial(keras_file_problem, whole_model=True)``). A name that does not exist, or
    names a folder, a FIFO or a device, is None: the option's ``path`` check says so (a missing
    file may also be written later, as the demo's base models are). Messages read ``<value>: not
    a Keras weights file (<what it is>)`` (``model file`` with ``whole_model``); the caller names
    the place. No TensorFlow; reads a few bytes, a ``.keras`` archive's ``config.json`` and the
    zip's or HDF5 file's table of contents.
    """
    path = Path(str(value).strip()).expanduser()
    if not path.is_file():
        return None
    reason = _file_problem(path, whole_model)
    return f"{value}: not a Keras {'model' if whole_model else 'weights'} file ({reason})" if reason else None


def _file_problem(path: Path, whole_model: bool) -> str | None:
    try:
        with open_user_file(path, MAX_MODEL_BYTES) as stream:
            return _format_problem(path.name.lower(), stream, whole_model)
    except UnreadableFile as error:
        return f"it {error}"


def _format_problem(name: str, stream: BinaryIO, whole_model: bool) -> str | None:
    """What is wrong with the file open in ``stream`` named ``name`` (lower case), or None."""
    start = stream.read(16)
    if not start:
        return "the file is empty"
    is_zip, is_hdf5 = start.startswith(b"PK"), _hdf5_offset(stream) is not None
    if name.endswith(".keras"):
        if is_hdf5:
            rename = ".weights.h5" if _keras_layout(stream) == "keras3 weights" else ".h5"
            return f"an HDF5 file named .keras, which Keras reads as a zip archive: rename it to end in {rename}"
        return _archive_problem(stream) if is_zip else f"{_describe(start)}, not a zip archive"
    if is_zip:
        if _archive_problem(stream) is None:
            return f"a .keras archive named {_suffix(name)}: rename it to end in .keras"
        return f"{_describe(start)} named {_suffix(name)}, not HDF5"
    if not is_hdf5:
        return f"{_describe(start)}, not HDF5"
    return _hdf5_layout_problem(stream, name.endswith(".weights.h5"), whole_model)


def _archive_problem(stream: BinaryIO) -> str | None:
    """A ``.keras`` archive must hold the configuration and an HDF5 weights file."""
    stream.seek(0)
    try:
        with zipfile.ZipFile(stream) as archive:
            names = set(archive.namelist())
            missing = [member for member in KERAS_ARCHIVE_MEMBERS if member not in names]
            if missing:
                pytorch = " (a PyTorch checkpoint? convert it with python -m feph_finetune convert)" if any(n.endswith("data.pkl") for n in names) else ""
                return f"a zip archive without {' and '.join(missing)}{pytorch}"
            with archive.open("model.weights.h5") as weights:
                if weights.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                    return "a zip archive whose model.weights.h5 is not HDF5"
            if archive.getinfo("config.json").file_size > MAX_CONFIG_BYTES:
                return "a zip archive whose config.json is too large to be a model's configuration"
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as error:  # NotImplementedError: a compression zipfile lacks
        return f"a damaged zip archive ({error})"
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return f"a zip archive whose config.json is not JSON ({error})"
    if not isinstance(config, dict) or "class_name" not in config:
        return "a zip archive whose config.json describes no Keras model"
    return None


def _hdf5_layout_problem(stream: BinaryIO, weights_suffix: bool, whole_model: bool) -> str | None:
    """Whether the HDF5 file holds what Keras reads for its suffix (skipped without h5py): Keras
    reads a ``.weights.h5`` file in its newer layout only, a ``.h5`` one in the legacy layout only."""
    layout = _keras_layout(stream)
    if layout is None or layout.startswith("a damaged"):
        return layout
    if layout == "none":
        return "an HDF5 file without Keras weights in it"
    if weights_suffix and layout != "keras3 weights":
        return "a legacy Keras HDF5 file named .weights.h5, which Keras reads in its newer layout: rename it to end in .h5"
    if not weights_suffix and layout == "keras3 weights":
        return "a Keras 3 weights file named .h5, which Keras reads in its legacy layout: rename it to end in .weights.h5"
    if whole_model and layout != "legacy model":
        return "weights only, without the model's architecture"
    return None


def _keras_layout(stream: BinaryIO) -> str | None:
    """What the HDF5 file holds for Keras: ``legacy model`` (``model_config``), ``legacy weights``
    (``layer_names``, or a ``model_weights`` group), ``keras3 weights`` (``layers``/``vars``
    groups), ``none``, ``a damaged HDF5 file (...)``; None without h5py."""
    try:
        import h5py
    except ImportError:
        return None
    stream.seek(0)
    try:
        with h5py.File(stream, "r") as file:
            attributes, groups = set(file.attrs), set(file.keys())
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        return f"a damaged HDF5 file ({error})"
    if "model_config" in attributes:
        return "legacy model"
    if "layer_names" in attributes or "model_weights" in groups:
        return "legacy weights"
    return "keras3 weights" if any(group in groups for group in KERAS3_WEIGHTS_GROUPS) else "none"


def _hdf5_offset(stream: BinaryIO) -> int | None:
    """Where the HDF5 signature is: 0, or 512, 1024, 2048... past a user block; None if nowhere."""
    size = stream.seek(0, 2)
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= size:
        stream.seek(offset)
        if stream.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def _describe(start: bytes) -> str:
    """What a file that starts with ``start`` is, as far as its first bytes tell."""
    for magic, kind in KNOWN_STARTS:
        if start.startswith(magic):
            return kind
    try:
        codecs.getincrementaldecoder("utf-8")().decode(start, final=False)  # a character cut at the end is fine
    except UnicodeDecodeError:
        return f"a file starting with bytes {start[:8].hex(' ')}"
    return "a text file" if b"\0" not in start else f"a file starting with bytes {start[:8].hex(' ')}"


def _suffix(name: str) -> str:
    return ".weights.h5" if name.endswith(".weights.h5") else Path(name).suffix
