"""The results store: one directory per run, every file written atomically.

A run's directory holds ``config.json``, ``history.json``, ``predictions.npz``, ``metrics.json``,
``environment.json`` and optionally ``model.keras``; ``result.json`` is written last and is the
only file a later step trusts: a run without it (killed mid-way) is simply run again.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

RESULT_FILE = "result.json"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success, rename it over ``path``.

    A crash leaves either the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


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
    """The output directory of a matrix: a sub-directory per run id."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def result(self, run_id: str) -> dict[str, Any] | None:
        """The run's final record, or None when it never finished writing one."""
        try:
            return json.loads((self.run_dir(run_id) / RESULT_FILE).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
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

    def discard_result(self, run_id: str) -> None:
        """Forget the run's final record before it runs again (its other files are overwritten)."""
        (self.run_dir(run_id) / RESULT_FILE).unlink(missing_ok=True)

    def finish(self, run_id: str, record: dict[str, Any]) -> None:
        """Write the final record last: from now on the run counts as done (or failed)."""
        self.write(run_id, RESULT_FILE, record)

    def records(self, ids: list[str] | None = None) -> list[dict[str, Any]]:
        """The final records of the given runs (all runs under the root when None)."""
        if ids is None:
            ids = sorted(path.parent.name for path in self.root.glob(f"*/{RESULT_FILE}"))
        return [record for record in map(self.result, ids) if record is not None]
