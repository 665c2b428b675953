"""A finished run's record kept to the names its configuration gives it now.

``label``, ``cv_label`` and ``order`` (an experiment's place in its TOML) only name and place a
run's row in the tables: they are no part of its id (:func:`feph_finetune.config.matrix.run_id`),
so renaming an experiment's label does not run it again. Its ``result.json`` still holds the
names it was run under, which the tables show; :func:`rename_finished_runs` writes the names of
today into the finished runs' records, so that the matrix's tables and a later
``report OUTDIR`` show the names the configuration gives now.
"""

from __future__ import annotations

from typing import Any, Iterable

from feph_finetune.data.user_files import UnreadableFile, read_json_file
from feph_finetune.results.store import RESULT_FILE, RunStore, write_json

#: The record fields that name and place a run's row, not a setting of the run.
DISPLAY_FIELDS = ("label", "cv_label", "order")


def rename_finished_runs(store: RunStore, runs: Iterable[Any]) -> dict[str, list[str]]:
    """Write the :data:`DISPLAY_FIELDS` of each of ``runs`` (:class:`~feph_finetune.config.matrix.Run`)
    into its finished record where they differ; returns the ids of the records rewritten, each
    with the fields that changed.

    Each record is replaced whole (:func:`~feph_finetune.results.store.write_json`: a crash
    leaves the old file or the new one) under :func:`~feph_finetune.interrupts.interrupts_deferred`;
    its other fields are kept as written."""
    from feph_finetune.interrupts import interrupts_deferred

    renamed = {}
    for run in runs:
        wanted = {name: getattr(run, name) for name in DISPLAY_FIELDS}
        record = store.result(run.id)
        changed = [name for name, value in wanted.items() if record is not None and record.get(name) != value]
        if record is None or record.get("status") != "done" or not changed:
            continue
        path = store.run_dir(run.id) / RESULT_FILE
        try:
            written = read_json_file(path)
        except UnreadableFile:
            continue
        with interrupts_deferred():
            write_json(path, {**written, **wanted})
        renamed[run.id] = changed
    return renamed
