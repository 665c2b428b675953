"""The results store: one directory per run, every file written atomically.

A run's directory holds ``config.json``, ``history.json``, ``predictions.npz``, ``metrics.json``,
``environment.json`` and optionally a model bundle (``model.keras``, ``bundle.json``, ``state.npz``:
see :mod:`feph_finetune.bundle`); ``result.json`` is written last and is the
only file a later step trusts: a run without it (killed mid-way) is simply run again.
"""

from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

RESULT_FILE = "result.json"
PREVIOUS_RESULT_FILE = "result.previous.json"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success, rename it over ``path``.

    A crash leaves either the old file or the new one, never half of one. The file's mode
    follows the umask, like any file the user creates (0o644 under the usual umask 0o022):
    :func:`tempfile.mkstemp` would make every result private to its owner (0o600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _create_temporary(path)
    try:
        yield Path(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def output_file_problem(path: Path) -> str | None:
    """Why a file cannot be written at ``path``, or None: checked before any work starts.

    Refused: an existing folder, a parent that does not exist or is not a folder, a parent this
    process cannot write to (the file is written beside its target, then renamed, see
    :func:`atomic_path`), an existing file that cannot be replaced.
    """
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        return "is a folder; give a file name"
    if not parent.exists():
        return f"the folder {parent} does not exist"
    if not parent.is_dir():
        return f"{parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write to the folder {parent} (permission denied)"
    return None


def output_folder_problem(path: Path) -> str | None:
    """Why a folder cannot be created or written at ``path``, or None: checked before any work.

    Refused: an existing file, a file on the way to it, a nearest existing folder this process
    cannot write to (the missing folders are created there).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        return "is a file, not a folder"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write to the folder {existing} (permission denied)"
    return None


def _create_temporary(path: Path) -> str:
    """Create a new empty file beside ``path`` with mode 0o666 less the umask; return its name."""
    while True:
        candidate = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return str(candidate)


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n", encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_arrays(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)


class RunStore:
    """The output directory of a matrix: a sub-directory per run id.

    ``warn`` receives one line per ``result.json`` that exists but cannot be used (not JSON, not
    UTF-8, a field of the wrong shape: see :class:`feph_finetune.records.RunRecord`), naming the
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
        from feph_finetune.records import RecordShapeError, RunRecord

        path = self.run_dir(run_id) / RESULT_FILE
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            return self._skip(path, f"unreadable ({error})")
        try:
            return RunRecord.from_json(record).to_json()
        except RecordShapeError as error:
            return self._skip(path, f"wrong shape ({error})")

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

    def finish(self, run_id: str, record: dict[str, Any]) -> None:
        """Write the final record last: from now on the run counts as done (or failed)."""
        self.write(run_id, RESULT_FILE, record)

    def records(self, ids: list[str] | None = None) -> list[dict[str, Any]]:
        """The final records of the given runs (all runs under the root when None)."""
        if ids is None:
            ids = sorted(path.parent.name for path in self.root.glob(f"*/{RESULT_FILE}"))
        return [record for record in map(self.result, ids) if record is not None]
