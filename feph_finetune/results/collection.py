"""A results folder's records as a typed collection: :func:`load_results` and :class:`Results`.

What a notebook gets from a results folder (``feph_finetune.load_results(OUTDIR)``) and from a
finished matrix (``run_matrix(...).records``): the usable ``result.json`` of each run as a
:class:`feph_finetune.results.records.RunRecord`, read through
:class:`feph_finetune.results.store.RunStore`, so exactly the records the reports read.
:meth:`Results.rows` flattens them into one dict per run, and :meth:`Results.to_frame` makes a
pandas DataFrame of those rows (pandas is optional: ``pip install pandas``).
"""

from __future__ import annotations

import warnings
from pathlib import Path, PurePath
from typing import Any, Callable, Iterator, Sequence, overload

from feph_finetune.data.user_files import NO_SUCH_FOLDER, input_folder_problem
from feph_finetune.printable import counted, printable
from feph_finetune.results.records import RunRecord

#: The record fields that become columns of :meth:`Results.rows` as they are.
ROW_FIELDS = ("id", "experiment", "label", "cv_label", "model", "baseline", "order", "phase", "fold", "seed", "data", "status")
PANDAS_INSTALL = "Results.to_frame() needs pandas, which is not installed: pip install pandas (or use Results.rows() for plain dicts)"


class Results(Sequence[RunRecord]):
    """Run records in the order of the runs (a folder's: by run id), with flat forms for analysis."""

    def __init__(self, records: list[RunRecord], root: Path | None = None):
        self.records = list(records)
        self.root = root

    @classmethod
    def from_store(cls, store, ids: list[str] | None = None) -> "Results":
        """The usable records of ``ids`` (every run when None) in a
        :class:`feph_finetune.results.store.RunStore`; unusable files go to the store's ``warn``."""
        return cls([RunRecord.from_json(record) for record in store.records(ids)], Path(store.root))

    @overload
    def __getitem__(self, index: int) -> RunRecord: ...
    @overload
    def __getitem__(self, index: slice) -> "Results": ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Results(self.records[index], self.root)
        return self.records[index]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"<Results: {counted(len(self), 'run')}{f' in {self.root}' if self.root else ''}>"

    def to_json(self) -> list[dict[str, Any]]:
        """The records as the JSON objects of their ``result.json`` (what the reports take)."""
        return [record.to_json() for record in self.records]

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per run: :data:`ROW_FIELDS`, ``accuracy`` and ``avg_sensitivity``
        (fractions from 0 to 1, None for a failed run), ``sensitivity.<class>`` per class,
        ``variant.<key>`` per grid key, ``total_s`` (seconds) and ``error`` (``"Type: message"``
        of a failed run, else None)."""
        return [_row(record) for record in self.records]

    def to_frame(self):
        """:meth:`rows` as a ``pandas.DataFrame``, one row per run; ImportError naming
        ``pip install pandas`` when pandas is not installed (it is not a dependency)."""
        try:
            import pandas
        except ImportError as error:
            raise ImportError(PANDAS_INSTALL) from error
        return pandas.DataFrame(self.rows())


def _row(record: RunRecord) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in ROW_FIELDS}
    metrics = record.metrics
    row["accuracy"] = metrics.accuracy if metrics else None
    row["avg_sensitivity"] = metrics.avg_sensitivity if metrics else None
    for name, value in ((metrics.sensitivity or {}) if metrics else {}).items():
        row[f"sensitivity.{name}"] = value
    for key, value in (record.variant or {}).items():
        row[f"variant.{key}"] = value
    row["total_s"] = record.timing.total_s if record.timing else None
    row["error"] = f"{record.error.type}: {record.error.message}" if record.error else None
    return row


def load_results(outdir: str | Path, warn: Callable[[str], None] | None = None) -> Results:
    """The usable run records of the results folder ``outdir``, by run id.

    A ``result.json`` that cannot be used (not JSON, a field of the wrong shape) is left out and
    named in one line to ``warn`` (default :func:`warnings.warn`, the line escaped with
    :func:`~feph_finetune.printable.printable`), as the ``report`` command does. FileNotFoundError when ``outdir`` is not a folder (saying so when it is a file), TypeError
    when it is not a path.
    """
    from feph_finetune.results.store import RunStore

    if not isinstance(outdir, (str, PurePath)):
        raise TypeError(f"load_results: outdir must be a results folder's path (str or pathlib.Path), got {type(outdir).__name__}")
    outdir = Path(outdir)
    if (problem := input_folder_problem(outdir)) == NO_SUCH_FOLDER:
        raise FileNotFoundError(f"{outdir}: no such results directory")
    if problem:
        raise FileNotFoundError(f"{outdir}: {problem}; give a results folder (the folder a matrix writes its runs to, its TOML's output)")
    return Results.from_store(RunStore(outdir, warn=warn or (lambda line: warnings.warn(printable(line), stacklevel=4))))
