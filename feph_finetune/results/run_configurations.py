"""Which configuration each run of a results folder was made under, so that a report row averages
the runs of one configuration only.

A results folder can hold runs of one experiment made under several configurations: the same
matrix run again with ``--set defaults.options.adam.lr=0.01`` gives its runs new ids and keeps
the old ones. Their records (``result.json``) name the same experiment, phase and variant; what
tells them apart is the configuration each run's ``config.json`` records. A run's configuration
is what its id hashes (:func:`feph_finetune.config.matrix.run_id`) but the fold: the id today's
rules give the run (:meth:`~feph_finetune.config.matrix.MatrixBuilder.recorded_run_id`, as
:mod:`feph_finetune.results.earlier_ids` computes it), with the fold left out.

:func:`with_configurations` adds to each record, under :data:`CONFIGURATION`, that identity and
the run's settings as dotted names (``options.adam.lr``) with the seed of its splits
(``split_seed``, the TOML's top-level ``seed``), which the report shows where rows of
one experiment differ (:func:`feph_finetune.results.reports.configuration_warnings`). A record
without a readable ``config.json`` (older runs) carries none and is grouped as before; so does
one whose ``config.json`` or ``environment.json`` holds a value no run writes (an integer too
large for a float, an infinite number or NaN, a setting its declaration refuses:
:func:`written_value_problems`), with a warning naming the file and the key: the run's id cannot
be computed again from such a file, and a row named by its value (``options.adam.epochs=inf``)
would be a configuration that never ran.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping

from feph_finetune.config.options import Option, option_problems
from feph_finetune.config.schema import DATASET_OPTIONS, EXPERIMENT_OPTIONS, TOP_LEVEL_OPTIONS
from feph_finetune.results.earlier_ids import RUN_FILE_NAMES, Identify, RunFiles, run_files
from feph_finetune.results.records import free_value_problems, json_kind, json_leaves
from feph_finetune.results.store import RunStore

#: The key under which a report record carries its configuration:
#: ``{"id": text, "settings": {dotted name: value}, "recorded": {field: value}}``, or null where
#: it cannot be told.
CONFIGURATION = "configuration"

#: The fields of a record that its ``config.json`` records too (in its ``run`` object), each with
#: the JSON type it has there: what its id hashes (the grid values, the data's fingerprint, the model), so
#: that a record contradicting them is placed by its configuration
#: (:func:`feph_finetune.results.reports.configuration_warnings` says so).
RECORDED_IN_CONFIG = {"variant": dict, "data": str, "model": str}

#: ``declarations(plugin)``: the option declarations of an installed plugin (``Plugins.option_declarations``);
#: it raises for one not installed, whose options are then not checked.
Declarations = Callable[[str], Mapping[str, Option]]

#: ``[dataset]`` keys that say what was read rather than how (the data's fingerprint is the
#: record's ``data``, which splits rows already) or that never change a result.
_DATASET_UNSHOWN = ("fingerprint", "classes", "grouped", "cache_dir")


def with_configurations(store: RunStore, records: list[dict[str, Any]], identify: Identify,
                        read: Callable[[Path], RunFiles | str] = run_files,
                        warn: Callable[[str], None] | None = None, declarations: Declarations | None = None) -> list[dict[str, Any]]:
    """``records`` (the store's) each with its :data:`CONFIGURATION` read from its folder
    (``read``: how, :func:`~feph_finetune.results.earlier_ids.run_files` or a memo of it);
    ``warn`` gets a line for each file holding a value no run writes (:func:`written_value_problems`,
    plugins' options checked by ``declarations`` where given)."""
    known: dict[str, dict[str, Any] | None] = {}  # the folds of one configuration record it alike: computed once
    return [{**record, CONFIGURATION: configuration_of(store.run_dir(record["id"]), identify, known, read, warn, declarations)}
            for record in records]


def configuration_of(folder: Path, identify: Identify, known: dict[str, dict[str, Any] | None] | None = None,
                     read: Callable[[Path], RunFiles | str] = run_files,
                     warn: Callable[[str], None] | None = None, declarations: Declarations | None = None) -> dict[str, Any] | None:
    """The configuration of the run recorded in ``folder``: ``{"id": the hash of its id with the
    fold left out, "settings": its settings as dotted names, "recorded": its
    :data:`RECORDED_IN_CONFIG` fields as its config.json's ``run`` gives them (those of their
    type)}``; None where its ``config.json`` or ``environment.json`` is missing, cannot be read
    or is not an object (said to ``warn`` where both are there), holds a value or a table no run
    writes (said to ``warn``: :func:`written_value_problems`) or its id cannot be
    computed again. ``known``: the
    configurations computed so far, by what the files record less the run's id and fold."""
    files = read(folder)
    if isinstance(files, str):  # said where both files are there: a run without them (older, or failed early) has none to tell
        if warn is not None and all(os.path.lexists(folder / name) for name in RUN_FILE_NAMES):
            warn(f"{folder}: {files}; {_UNTOLD}")
        return None
    recorded, environment = files
    if (why := _unreportable(folder, recorded, environment, declarations)) is not None:
        if warn is not None:
            warn(why)
        return None
    if not isinstance(recorded.get("run"), dict):  # an older config.json, without the run's own fields
        return None
    without_fold = {**recorded, "run": {**recorded["run"], "fold": None, "id": None}}
    key = json.dumps([without_fold, environment.get("split_seed")], sort_keys=True, default=str)
    if known is not None and key in known:
        return known[key]
    identity = identify(without_fold, environment.get("split_seed"))
    settings = {**_settings(recorded), "split_seed": environment.get("split_seed")}
    recorded_fields = {name: recorded["run"][name] for name, kind in RECORDED_IN_CONFIG.items() if isinstance(recorded["run"].get(name), kind)}
    configuration = None if identity is None else {"id": identity.rsplit("-", 1)[-1], "settings": settings, "recorded": recorded_fields}
    if known is not None:
        known[key] = configuration
    return configuration


def _unreportable(folder: Path, recorded: Mapping[str, Any], environment: Mapping[str, Any],
                   declarations: Declarations | None = None) -> str | None:
    """Why the report cannot take the run's configuration from these files (the first file's
    problems, :func:`written_value_problems`), or None; of ``environment.json`` only the
    ``split_seed`` is read (all the report takes from that file)."""
    files = (("config.json", recorded, declarations), ("environment.json", {"split_seed": environment.get("split_seed")}, None))
    for name, values, plugins in files:
        if problems := written_value_problems(values, plugins):
            return f"{folder / name}: {'; '.join(problems)}; {_UNTOLD}"
    return None


#: What the report does with a run whose configuration files it cannot take, said after why.
_UNTOLD = "the run's configuration cannot be told, so it is grouped as a run without a readable config.json"


def written_value_problems(values: Mapping[str, Any], declarations: Declarations | None = None) -> list[str]:
    """The values of a run's ``config.json`` (``{"run", "config", "dataset"}``) or of the
    ``split_seed`` of its ``environment.json`` that no run writes, one line each naming its key:
    an integer too large for a float (which a record refuses too:
    :func:`~feph_finetune.results.records.free_value_problems`), else an infinite number or NaN
    (no setting takes one, and JSON reads ``1e400`` or a 400-digit decimal as infinite), else a
    value its declaration refuses (a setting of the wrong type or out of its range, the
    ``run`` object's :data:`RECORDED_IN_CONFIG` fields of another type), a table of another
    type (:func:`_table_problems`). Only the first kind
    found is named, so a key is named once. ``declarations``: how a plugin's options are
    checked; without it they are checked for the first two kinds only."""
    return free_value_problems(values) or _non_finite_numbers(values) or _table_problems(values) or _declared_problems(values, declarations)


def _table_problems(values: Mapping[str, Any]) -> list[str]:
    """Each table of a ``config.json`` that holds another type: ``run``, ``config``, ``dataset``,
    ``config.options`` or a plugin's options in it (``options.mobilenet = "x"``); a table that
    is null (unset) or absent is not named. Its settings would be read as none: a run merged
    into a configuration it was not made under, without a word."""
    tables = {name: values.get(name) for name in ("run", "config", "dataset")}
    config = values.get("config") if isinstance(values.get("config"), dict) else {}
    tables["config.options"] = options = config.get("options")
    if isinstance(options, dict):
        tables.update((f"config.options.{plugin}", settings) for plugin, settings in options.items())
    return [f"{name}: expected an object, got {json_kind(value)}" for name, value in tables.items() if value is not None and not isinstance(value, dict)]


def _non_finite_numbers(value: Any) -> list[str]:
    """Each infinite or NaN number in ``value`` (JSON), by its key."""
    return sorted(f"{where}: expected a finite number (no setting takes inf or NaN), got {json_kind(item)}"
                  for where, item in json_leaves(value) if isinstance(item, float) and not math.isfinite(item))


def _declared_problems(values: Mapping[str, Any], declarations: Declarations | None) -> list[str]:
    """What the declarations of the experiment's, the dataset's and the plugins' settings refuse
    in a ``config.json``, and the top-level ``seed``'s in a ``split_seed``; paths not checked (a
    file named then may be gone now)."""
    seed = {"split_seed": values["split_seed"]} if values.get("split_seed") is not None else {}  # none: an older run's
    problems = _refused(seed, {"split_seed": TOP_LEVEL_OPTIONS["seed"]})
    run = values.get("run") if isinstance(values.get("run"), dict) else {}
    problems += [f"run.{name}: expected {json_kind(kind())}, got {json_kind(run[name])}"
                 for name, kind in RECORDED_IN_CONFIG.items() if run.get(name) is not None and not isinstance(run[name], kind)]
    config = values.get("config") if isinstance(values.get("config"), dict) else {}
    problems += _refused(config, {key: option for key, option in EXPERIMENT_OPTIONS.items() if key != "options"}, "config.")
    dataset = values.get("dataset") if isinstance(values.get("dataset"), dict) else {}
    problems += _refused(dataset, DATASET_OPTIONS, "dataset.")
    options = config.get("options") if isinstance(config.get("options"), dict) else {}
    for plugin, settings in options.items() if declarations is not None else ():
        try:
            declared = declarations(plugin)
        except Exception:  # a plugin not installed now (or failing to declare): its options cannot be checked
            continue
        if isinstance(settings, dict):
            problems += _refused(settings, declared, f"config.options.{plugin}.")
    return problems


def _refused(values: Mapping[str, Any], declared: Mapping[str, Option], prefix: str = "") -> list[str]:
    """Each of ``values`` that its declaration in ``declared`` refuses, named ``prefix + key``;
    null is taken where the declaration's default is null (unset), undeclared keys are not checked."""
    return [f"{prefix}{key}: {message}" for key, value in values.items() if key in declared and not (value is None and declared[key].default is None)
            for message in option_problems(value, declared[key], check_paths=False)]


def _settings(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a ``config.json`` that its id hashes, as dotted names (``options.adam.lr``,
    ``dataset.test_fraction``); the names and result-neutral settings left out."""
    from feph_finetune.config.matrix import run_identity  # the configuration's rules, only where a folder is read

    config = recorded.get("config") if isinstance(recorded.get("config"), dict) else {}
    dataset = recorded.get("dataset") if isinstance(recorded.get("dataset"), dict) else {}
    shown = {key: value for key, value in dataset.items() if key not in _DATASET_UNSHOWN}
    return {**_dotted(run_identity(config)), **_dotted(shown, "dataset.")}


def _dotted(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects flattened to dotted names: ``{"options": {"adam": {"lr": 1}}}`` is
    ``{"options.adam.lr": 1}``; lists and other values are kept whole."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
