"""Finished runs under an earlier version's run id, carried over to the id their configuration has now.

Run ids stopped following how a setting is spelled and the settings a run never reads (README,
"The experiment file"): a configuration written ``root = "data/"``, ``lr = 1`` or, in exploratory
runs, ``folds = 10`` has new ids. Its runs finished before are still its runs: a folder of the
results store whose ``config.json``, its id computed again under today's rules
(:meth:`feph_finetune.config.matrix.MatrixBuilder.recorded_run_id`), gives a selected run's id is
renamed to that id, so that the run is not trained again nor counted twice by a report. Only
folders whose id has the run's readable prefix (``EXP-x-``, ``EXP-cvK-``) are read, and a run
whose folder exists already (finished or not) is left as it is: nothing is overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from feph_finetune.data.user_files import UnreadableFile, read_json_file
from feph_finetune.results.store import RESULT_FILE, RunStore, write_json

#: Why ids changed, for the one line that says runs were carried over.
WHY = "run ids now ignore how a setting is spelled and settings a run never reads; see CHANGELOG"

#: The files of a run's folder that record its id (``bundle.json``: a saved model's manifest).
ID_RECORDS = {RESULT_FILE: ("id",), "config.json": ("run", "id"), "bundle.json": ("run", "id")}

#: ``recorded_run_id(config_json, split_seed)``: a run's id under today's rules, or None.
Identify = Callable[[Mapping[str, Any], Any], "str | None"]


def id_prefix(run_id: str) -> str:
    """A run id's readable part with its dash: ``FT-x-`` of ``FT-x-2deefcb02c``."""
    return run_id.rsplit("-", 1)[0] + "-"


def earlier_folders(store: RunStore, run_ids: Iterable[str], matrix_ids: Iterable[str], identify: Identify,
                    warn: Callable[[str], None] | None = None) -> dict[str, str]:
    """For each of ``run_ids`` that has no folder, the folder (its name) of a finished run
    recorded under an earlier id that ``identify`` gives as this one; ``{new id: folder name}``.

    Candidates: finished runs (:meth:`RunStore.is_done`) with the run's :func:`id_prefix` that
    are no run of the matrix (``matrix_ids``). Where two earlier folders give one id (``folds =
    3`` and ``folds = 4`` of one exploratory run), the one finished last. A candidate whose run
    cannot be told (its ``config.json`` unreadable or of another shape) may be an earlier run of
    one left without a folder, which then trains again beside it: ``warn`` names each such
    folder, once, and why.
    """
    run_ids = list(run_ids)
    half_carried = {run_id: run_id for run_id in run_ids if _half_carried(store, run_id, identify)}
    wanted = {run_id for run_id in run_ids if not os.path.lexists(store.run_dir(run_id))}
    if not wanted or not store.root.is_dir():
        return half_carried
    prefixes, taken = {id_prefix(run_id) for run_id in wanted}, set(matrix_ids)
    found: dict[str, tuple[float, str]] = {}
    unidentified: dict[str, str] = {}  # folder name: why its run cannot be told
    for name in sorted(os.listdir(store.root)):
        if name in taken or id_prefix(name) not in prefixes or not store.is_done(name):
            continue
        run_id, why = _identified(store.run_dir(name), identify)
        finished = _finished(store.result(name))
        if run_id is None:
            unidentified[name] = why
        elif run_id in wanted and (run_id not in found or finished > found[run_id][0]):
            found[run_id] = (finished, name)
    left = {id_prefix(run_id): run_id for run_id in wanted if run_id not in found}
    for name, why in unidentified.items():
        if warn is not None and id_prefix(name) in left:
            warn(f"{store.run_dir(name)}: a finished run not carried over to a new id: {why}; if it is an earlier run of "
                 f"{left[id_prefix(name)]}, that run trains again and a report counts both (move the folder away to count one)")
    return half_carried | {run_id: name for run_id, (finished, name) in found.items()}


def _half_carried(store: RunStore, run_id: str, identify: Identify) -> bool:
    """Whether the folder of ``run_id`` is an earlier run renamed by a :func:`carry_over` that
    stopped before it rewrote the ids (a killed process, a full disk): its ``result.json``
    records another id with the same :func:`id_prefix`, which today's rules give as ``run_id``."""
    folder = store.run_dir(run_id)
    try:
        recorded = read_json_file(folder / RESULT_FILE).get("id") if os.path.isdir(folder) else None
    except (UnreadableFile, AttributeError):
        return False
    return isinstance(recorded, str) and recorded != run_id and id_prefix(recorded) == id_prefix(run_id) and identify_folder(folder, identify) == run_id


#: A run folder's ``config.json`` and ``environment.json``, each a JSON object.
RunFiles = tuple[dict[str, Any], dict[str, Any]]


#: The files of a run folder that record its configuration (:func:`run_files`).
RUN_FILE_NAMES = ("config.json", "environment.json")


def run_files(folder: Path) -> RunFiles | str:
    """``folder``'s ``config.json`` and ``environment.json``, or why they cannot be read (a phrase
    naming the file)."""
    records = []
    for file in RUN_FILE_NAMES:
        try:
            records.append(read_json_file(folder / file))
        except UnreadableFile as error:
            return f"its {file} is unreadable (it {error})"
        if not isinstance(records[-1], dict):
            return f"its {file} is not a JSON object"
    return records[0], records[1]


def identify_folder(folder: Path, identify: Identify, read: Callable[[Path], RunFiles | str] = run_files) -> str | None:
    """The id today's rules give the run recorded in ``folder`` (its ``config.json`` and its
    ``environment.json``'s split seed), or None where those cannot be read. ``read``: how the two
    files are read (:func:`run_files`, or a memo of it where a caller reads them again)."""
    return _identified(folder, identify, read)[0]


def _identified(folder: Path, identify: Identify, read: Callable[[Path], RunFiles | str] = run_files) -> tuple[str | None, str]:
    """:func:`identify_folder`'s id, or None and why it cannot be told (a phrase naming the file)."""
    files = read(folder)
    if isinstance(files, str):
        return None, files
    recorded, environment = files
    run_id = identify(recorded, environment.get("split_seed"))
    return run_id, "" if run_id else "its config.json records no configuration this version reads (another shape, or a plugin or dataset format no longer installed)"


def carry_over(store: RunStore, folders: Mapping[str, str]) -> int:
    """Rename each earlier folder to its run's id (``folders``: :func:`earlier_folders`) and
    write that id into the files that record it (:data:`ID_RECORDS`); returns how many were
    carried over. A folder whose new name exists by now is left where it is, except one that
    :func:`earlier_folders` found half carried over (given under its own name): its ids are
    rewritten. Each folder's rename and rewrites run under
    :func:`~feph_finetune.interrupts.interrupts_deferred`, so Ctrl-C or SIGTERM waits for these
    few small writes; a process killed or a disk filled between them leaves a folder that the
    next command finds half carried over and finishes."""
    from feph_finetune.interrupts import interrupts_deferred

    carried = 0
    for run_id, name in folders.items():
        new = store.run_dir(run_id)
        if name != run_id and os.path.lexists(new):
            continue
        with interrupts_deferred():
            if name != run_id:
                os.rename(store.run_dir(name), new)
            _write_ids(new, run_id)
        carried += 1
    return carried


def _write_ids(folder: Path, run_id: str) -> None:
    """Write ``run_id`` into the files of ``folder`` that record it (:data:`ID_RECORDS`)."""
    for file, keys in ID_RECORDS.items():
        _write_id(folder / file, keys, run_id)


def _write_id(path: Path, keys: tuple[str, ...], run_id: str) -> None:
    """Write ``run_id`` at ``keys`` of the JSON file ``path``; a file that is missing or holds
    no such place (a bundle written by hand) is left as it is."""
    try:
        data = read_json_file(path)
    except UnreadableFile:
        return
    place = data
    for key in keys[:-1]:
        place = place.get(key) if isinstance(place, dict) else None
    if isinstance(place, dict) and keys[-1] in place:
        place[keys[-1]] = run_id
        write_json(path, data)


def one_record_per_run(store: RunStore, records: list[dict[str, Any]], identify: Identify, warn: Callable[[str], None],
                       read: Callable[[Path], RunFiles | str] = run_files) -> list[dict[str, Any]]:
    """``records`` (the store's, by folder) with one record per run: where two folders record
    one run under today's rules (:func:`identify_folder`: an earlier id's folder beside today's,
    the run trained again before it could be carried over), the record kept is a finished one
    before a failed one, then the one finished last, then the one under today's id; ``warn``
    names the other folder, once each. A folder whose record cannot be identified is its own run.
    ``read``: as :func:`identify_folder`'s."""
    kept: dict[str, dict[str, Any]] = {}
    for record in records:
        run_id = identify_folder(store.run_dir(record["id"]), identify, read) or record["id"]
        if run_id not in kept:
            kept[run_id] = record
            continue
        newer, older = sorted((record, kept[run_id]), key=lambda each: _preference(each, run_id), reverse=True)
        kept[run_id] = newer
        warn(_one_run_twice(store, newer["id"], older["id"], read))
    return list(kept.values())


def _one_run_twice(store: RunStore, counted: str, other: str, read: Callable[[Path], RunFiles | str]) -> str:
    """What a report says of the folders ``counted`` and ``other`` that hold one run: a copy (a
    backup ``RUN.bak``: both record the same run id, one in a folder of another name), or the
    run under an earlier id beside its id of today (:data:`WHY`)."""
    inside = {_recorded_id(store.run_dir(name), read) for name in (counted, other)}
    if len(inside) == 1 and None not in inside:
        (run_id,) = inside
        copy, original = (other, counted) if other != run_id else (counted, other)
        return (f"{store.run_dir(copy)}: a copy of run {run_id}, whose folder is {store.run_dir(original)} (the same run id "
                f"inside a folder of another name); the report counts the run once, from {counted}")
    return f"{store.run_dir(other)}: the same run as {store.run_dir(counted)} under an earlier id ({WHY}); the report counts {counted} only"


def _recorded_id(folder: Path, read: Callable[[Path], RunFiles | str]) -> str | None:
    """The run id that ``folder``'s ``config.json`` records (None where it records none)."""
    files = read(folder)
    run = files[0].get("run") if not isinstance(files, str) else None
    recorded = run.get("id") if isinstance(run, dict) else None
    return recorded if isinstance(recorded, str) else None


def _preference(record: dict[str, Any], run_id: str) -> tuple[bool, float, bool]:
    return record.get("status") == "done", _finished(record), record["id"] == run_id


def _finished(record: dict[str, Any]) -> float:
    """When the run of ``record`` (a checked ``result.json``) ended, in Unix seconds; 0 where unknown."""
    return (record.get("timing") or {}).get("finished") or 0.0
