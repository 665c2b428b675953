"""Describe a loaded dataset: what was kept, what was dropped and why, and how it would be split.

This is what ``python -m feph_finetune data ROOT [--format NAME]`` shows before any training, so
that a user can compare their copy of FePh with the paper's (2,531 images, SPEC §2), or check
their own data's classes and groups, and see the splits a run would use. No TensorFlow here.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import PurePath
from typing import Any, Collection

from rich.table import Table
from rich.text import Text

from feph_finetune.printable import printable, shortened

from feph_finetune.api import Dataset
from feph_finetune.config.options import as_option, option_problems
from feph_finetune.config.reading import Problem, close_match, parse_override, shortened_assignment, ConfigError
from feph_finetune.config.schema import DATASET_OPTIONS
from feph_finetune.data.datasets import exploratory_split, format_problem, group_labels, grouping_warning, test_fraction_warning
from feph_finetune.data.splits import Split, kfold_splits
from feph_finetune.plugins import get_plugins

#: How the ``data`` command's flags name the settings they set, for hints in its errors.
DATA_FLAGS = {"labels": "--labels FILE", "images": "--images FOLDER", "format": "--format NAME", "group_by": "--group-by KEY",
              "folds": "--folds N", "test_fraction": "--test-fraction F"}


def dataset_settings(flags: dict, assignments: list[str], problems: list[Problem], given: Collection[str] = ()) -> dict:
    """The ``[dataset]`` table the ``data`` command's flags and ``--set dataset.KEY=VALUE``
    describe, defaults filled in: the one source of every setting the command uses. ``given``:
    the keys of ``flags`` the command line gave (ROOT always); a ``--set`` of one of them to
    another value is a problem naming both, as ``--set`` given twice is (one would win without
    a word). Each ``--set`` is checked against the core's and the format's declarations, as a
    TOML's keys are, its problems appended to ``problems``."""
    plugins = get_plugins()
    declarations = dict(DATASET_OPTIONS)
    problem = format_problem(plugins, flags["format"])
    if problem:
        problems.append(Problem(f"--format {shortened(flags['format'])}", problem))
    else:
        declarations = {**plugins.option_declarations(flags["format"]), **DATASET_OPTIONS}
    settings = {**{key: as_option(option).default for key, option in declarations.items()}, **flags}
    for assignment in assignments:
        where = f"--set {shortened_assignment(assignment)}"
        try:
            keys, value = parse_override(assignment)
        except ConfigError as error:
            problems += error.problems
            continue
        if len(keys) != 2 or keys[0] != "dataset":
            problems.append(Problem(where, "data takes [dataset] settings only: --set dataset.KEY=VALUE"))
        elif keys[1] not in declarations:
            if not problem:
                problems.append(Problem(where, f"unknown key {keys[1]!r}{close_match(keys[1], declarations)}"))
        elif keys[1] in given and not _same_setting(value, flags[keys[1]]):
            flag = "ROOT" if keys[1] == "root" else DATA_FLAGS[keys[1]].split()[0]
            problems.append(Problem(where, f"dataset.{keys[1]} is given twice with different values, here and in {flag} {shortened(str(flags[keys[1]]))}; give it once"))
        else:
            messages = option_problems(value, as_option(declarations[keys[1]]))
            problems += [Problem(where, message) for message in messages]
            settings[keys[1]] = value
    return settings


def _same_setting(value: Any, flag: Any) -> bool:
    """Whether a ``--set`` value is the one its flag gave: equal, or the same path spelt alike
    (``data/`` and ``data``)."""
    if isinstance(value, str) and isinstance(flag, str):
        return value == flag or (bool(value) and bool(flag) and PurePath(value) == PurePath(flag))
    return type(value) is type(flag) and value == flag


def describe_dataset(dataset: Dataset, folds: int = 5, seed: int = 0, test_fraction: float = 0.2,
                     group_by: str = "sequence", group_pattern: str = "") -> dict:
    """A JSON-ready summary of ``dataset`` and of its hold-out split and ``folds`` folds.

    Splits group by ``group_pattern`` when set, else by ``group_by``, but list the test
    sequences when the data offers a ``sequence`` key (else the test groups). Data that comes
    split (``train/`` and ``test/``) is described with its own split, ``test_fraction`` unused;
    its folds pool both sides. ``folds=0`` leaves cross-validation out; a dataset without images
    has empty splits. Raises ValueError when the data cannot be split so (too few groups for the
    folds, a group key the data lacks).
    """
    settings = {"group_by": group_by, "group_pattern": group_pattern, "test_fraction": test_fraction, "folds": folds}
    labels = dataset.labels()
    groups = group_labels(dataset, settings)
    sequences = _sequences(dataset, groups, group_pattern)
    class_counts = Counter(labels.tolist())
    warnings = [grouping_warning(groups)] if grouping_warning(groups) else []
    if not dataset.presplit and (fraction := test_fraction_warning(test_fraction, len(set(groups.tolist())))):
        warnings.append(f"dataset.test_fraction = {fraction}")
    if dataset.presplit:
        warnings.append("the data comes split into train/ and test/: the exploratory phase uses that split, so test_fraction is not used; cross-validation pools both")
    description = {
        "images": len(dataset.samples),
        "classes": {name: class_counts.get(index, 0) for index, name in enumerate(dataset.classes)},
        "sequences": len(set(sequences.tolist())),
        "groups": len(set(groups.tolist())),
        "grouping": f"group_pattern = {toml_string(group_pattern)}" if group_pattern else f"group_by = {toml_string(group_by)}",
        "split": "given" if dataset.presplit else "hold-out",
        "fingerprint": dataset.fingerprint,
        "dropped": dataset.dropped,
        "dropped_unit": "rows" if any(entry.line is not None for entry in dataset.dropped_entries) else "entries",
        "reasons": dict(dataset.drop_reasons),
        "notes": list(dataset.notes),
        "warnings": warnings,
        "holdout": {"train": 0, "test": 0, "test_sequences": []},
        "folds": [],
    }
    if not dataset.samples:
        return description
    holdout = exploratory_split(dataset, settings, seed)
    description["holdout"] = {"train": len(holdout.train), **_test_side(holdout, sequences)}
    if folds:
        description["folds"] = [_test_side(split, sequences) for split in kfold_splits(labels, groups, k=folds, seed=seed)]
    return description


def _sequences(dataset: Dataset, groups, group_pattern: str):
    """What the splits list as their test side's units: the data's ``sequence`` key where it
    offers one that groups frames and no ``group_pattern`` overrides it, else the groups."""
    if group_pattern or "sequence" not in dataset.group_keys:
        return groups
    sequences = dataset.groups("sequence")
    return groups if len(set(sequences.tolist())) == len(sequences) > 1 else sequences


def toml_string(value: str) -> str:
    """``value`` as it is written in the TOML file: a literal string (``'^(.+)_f\\d+'``, the
    backslash single) where it can be one, else a basic string with its escapes."""
    if "'" not in value and not any(ord(character) < 32 or ord(character) == 127 for character in value):
        return f"'{value}'"
    return json.dumps(value, ensure_ascii=False)


def render_description(description: dict, console) -> None:
    """Print the description as rich tables: classes, dropped rows, split sizes. Titles and
    captions are printed apart from their tables, to wrap at the console's width rather than at
    a narrow table's."""
    fingerprint = description.get("fingerprint")
    tables = [
        (f"{description['images']} images in {description['sequences']} sequences, {description['groups']} groups ({description['grouping']})",
         _class_table(description), f"data fingerprint {fingerprint}" if fingerprint else None),
        (f"{sum(description['dropped'].values())} {description['dropped_unit']} dropped", _dropped_table(description), None),
        ("Splits", _split_table(description), None),
    ]
    for title, table, caption in tables:
        console.print(Text(printable(title), style="table.title"))
        console.print(table)
        if caption:
            console.print(Text(caption, style="table.caption"))
    for note in description["notes"]:
        console.print(f"note: {printable(note)}", markup=False)
    for warning in description["warnings"]:
        console.print(f"warning: {printable(warning)}", markup=False)


def _test_side(split: Split, sequences) -> dict:
    return {"test": len(split.test), "test_sequences": sorted(set(sequences[split.test].tolist()))}


def _class_table(description: dict) -> Table:
    images = description["images"]
    table = Table()
    table.add_column("class", overflow="fold")  # a name longer than the room folds, never cut
    table.add_column("images", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    for name, count in description["classes"].items():
        share = f"{100.0 * count / images:.1f}%" if images else "-"
        table.add_row(Text(printable(name)), str(count), share)
    return table


def _dropped_table(description: dict) -> Table:
    dropped = description["dropped"]
    unit = description["dropped_unit"]
    table = Table()
    table.add_column("reason", no_wrap=True, min_width=max([len(reason) for reason in dropped] + [len("reason")]))  # an identifier, never cut
    table.add_column(unit, justify="right", no_wrap=True)
    table.add_column("meaning", overflow="fold")
    for reason, count in dropped.items():
        table.add_row(reason, str(count), description["reasons"].get(reason, ""))
    return table


def _split_table(description: dict) -> Table:
    holdout = description["holdout"]
    table = Table()
    table.add_column("split", no_wrap=True)
    table.add_column("train", justify="right", no_wrap=True)
    table.add_column("test", justify="right", no_wrap=True)
    table.add_column("test sequences", justify="right")
    table.add_row("given split" if description["split"] == "given" else "hold-out", str(holdout["train"]), str(holdout["test"]), str(len(holdout["test_sequences"])))
    images = description["images"]
    for index, fold in enumerate(description["folds"]):
        table.add_row(f"fold {index + 1}", str(images - fold["test"]), str(fold["test"]),
                      str(len(fold["test_sequences"])))
    return table
