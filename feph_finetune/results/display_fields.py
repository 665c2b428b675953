"""A finished run's record kept to the names its configuration gives it now.

``label``, ``cv_label`` and ``order`` (an experiment's place in its TOML) only name and place a
run's row in the tables: they are no part of its id (:func:`feph_finetune.config.matrix.run_id`),
so renaming an experiment's label does not run it again. Its ``result.json`` still holds the
names it was run under, which the tables show; :func:`rename_finished_runs` writes the names of
today into the finished runs' records, so that the matrix's tables and a later
``report OUTDIR`` show the names the configuration gives now; the run's ``config.json`` and
its model's ``bundle.json`` (:data:`ALSO_NAMED_IN`) take them too, in each object of theirs
that holds them (the ``run`` and its ``config``), so that no file contradicts itself and an
exported bundle carries them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from feph_finetune.data.user_files import UnreadableFile, read_json_file
from feph_finetune.results.store import RESULT_FILE, RunStore, write_json

#: The record fields that name and place a run's row, not a setting of the run.
DISPLAY_FIELDS = ("label", "cv_label", "order")
#: The files of a run's folder besides ``result.json`` that record its names, each with its
#: objects that hold them: the configuration it ran under and its saved model's bundle (which
#: ``export`` copies), each naming the run (``run``) and its experiment's settings (``config``:
#: ``label``, ``cv_label``).
ALSO_NAMED_IN = {"config.json": ("run", "config"), "bundle.json": ("run", "config")}


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
            for name, objects in ALSO_NAMED_IN.items():  # first: a kill before the record is rewritten leaves the rename to do again
                _rename_in(store.run_dir(run.id) / name, objects, wanted)
            write_json(path, {**written, **wanted})
        renamed[run.id] = changed
    return renamed


def _rename_in(path: Path, objects: tuple[str, ...], wanted: dict[str, Any]) -> None:
    """Write ``wanted``'s names into each of the ``objects`` of the JSON file ``path`` where it
    holds them (the file replaced whole, once); a file that is missing or unreadable, or holds
    no such object, is left as it is."""
    try:
        data = read_json_file(path)
    except UnreadableFile:
        return
    if not isinstance(data, dict):
        return
    renamed = {}
    for key in objects:
        held = data.get(key)
        if isinstance(held, dict) and (names := {name: value for name, value in wanted.items() if name in held and held[name] != value}):
            renamed[key] = {**held, **names}
    if renamed:
        write_json(path, {**data, **renamed})
