"""From a parsed configuration to the list of runs: inheritance, grids, plugin checks, stable ids.

Validation happens here, before any work: every problem of the whole file is collected in one
pass and raised at once as a :class:`~feph_finetune.config.reading.ConfigError`
(:func:`feph_finetune.config.checking.check_configuration` adds the executor and the output
folders to the same pass).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from feph_finetune.config.schema import DATASET_OPTIONS, EXPERIMENT_OPTIONS, REPORT_OPTIONS, TOP_LEVEL_OPTIONS, TRACKING_HOOKS, TRACKING_OPTIONS
from feph_finetune.config.reading import (
    COMMAND_LINE,
    DATASET_DEFAULTS,
    DATASET_DEFAULTS_UNHASHED,
    DATASET_PATHS,
    EXPERIMENT_DEFAULTS,
    HASHED_AT_DEFAULT,
    LOCATED_BY_THE_FINGERPRINT,
    NOT_INHERITED,
    NOT_READ_IN_PHASE,
    PLUGIN_KEYS,
    REPORT_DEFAULTS,
    RESULT_NEUTRAL_KEYS,
    TOP_LEVEL,
    TRAINING_ONLY_KEYS,
    ArgumentNames,
    ConfigError,
    Problem,
    RawConfig,
    check_section,
    close_match,
    deep_merge,
    experiment_name_problem,
    in_file_order,
    set_dotted,
    split_dotted,
    type_name,
    valid_values,
)
from feph_finetune.config.options import Option, as_declared, as_option, option_problems
from feph_finetune.printable import printable, reading_key, shortened
from feph_finetune.config.resolved import RunConfig
from feph_finetune.api import CLASSES, Dataset, DatasetError
from feph_finetune.data.class_mapping import map_classes
from feph_finetune.data.user_files import NO_SUCH_FOLDER, classify_path, input_folder_problem
from feph_finetune.data.datasets import FEPH_DOWNLOAD, format_problem, group_labels, grouping_warning, load_index, single_class_problem, test_fraction_warning
from feph_finetune.plugins import PluginCallError, Plugins

#: ``[dataset]`` keys the dataset's index does not depend on: an invalid one does not stop reading it.
INDEPENDENT_OF_THE_INDEX = frozenset({"folds", "test_fraction", "cache_dir", "group_by", "group_pattern"})

FEPH_SOURCE = f"{FEPH_DOWNLOAD}, then point dataset.root at its folder, or try the tool on synthetic data with --demo"


@dataclass(frozen=True)
class Run:
    """One training-and-evaluation job of the matrix; ``config`` is its resolved configuration
    (a :class:`~feph_finetune.config.resolved.RunConfig`, shared by the runs of one experiment
    variant)."""

    id: str
    experiment: str
    order: int
    label: str
    cv_label: str
    phase: str
    fold: int | None
    seed: int
    variant: dict[str, Any]
    config: RunConfig
    dataset: dict[str, Any] = field(default_factory=dict)

    def plugins_used(self) -> list[str]:
        return used_plugins(self.config)

    @property
    def classes(self) -> tuple[str, ...]:
        """The dataset's classes in label order, as read when the configuration was checked
        (FePh's when the data did not exist yet: the demo writes it afterwards)."""
        return tuple(self.dataset.get("classes") or CLASSES)

    def describe(self) -> dict[str, Any]:
        """The JSON form of a run, as ``--dry-run --json`` prints it."""
        return {
            "id": self.id,
            "experiment": self.experiment,
            "label": self.label,
            "cv_label": self.cv_label,
            "phase": self.phase,
            "fold": self.fold,
            "seed": self.seed,
            "variant": self.variant,
            "model": self.config.model,
            "fine_tune": self.config.fine_tune,
            "optimizer": self.config.optimizer if self.config.fine_tune else "",
            "preprocess": self.config.preprocess,
            "augment": self.config.augment,
            "class_weights": self.config.class_weights,
            "data": self.dataset.get("fingerprint", ""),
        }


@dataclass
class Matrix:
    """A validated configuration: its settings and its runs, in the TOML's order."""

    seed: int
    output: str
    dataset: dict[str, Any]
    runs: list[Run]
    experiments: list[str]
    report: dict[str, Any] = field(default_factory=lambda: dict(REPORT_DEFAULTS))
    #: The enabled tracking plugins, each with its options (defaults filled in), in order.
    tracking: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The configuration's name: its TOML file's name without ``.toml``.
    name: str = ""


def used_plugins(config: Mapping[str, Any]) -> list[str]:
    """Every plugin an experiment's configuration names, in hook order."""
    names: list[str] = []
    for key in PLUGIN_KEYS:
        if key == "optimizer" and not config["fine_tune"]:
            continue
        value = config[key]
        for name in value if isinstance(value, list) else [value]:
            if name and name not in names:
                names.append(name)
    return names


def run_id(experiment: str, phase: str, fold: int | None, config: dict, dataset: dict) -> str:
    """A stable id: readable prefix plus a hash of everything that changes the result (not
    :data:`~feph_finetune.config.reading.RESULT_NEUTRAL_KEYS`, nor the names and grid that only label the
    runs)."""
    payload = {"config": run_identity(config), "dataset": dataset, "phase": phase, "fold": fold}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]
    where = "x" if phase == "exploratory" else f"cv{fold}"
    return f"{experiment}-{where}-{digest}"


def run_identity(config: dict) -> dict:
    """What of a run's configuration its id hashes: all but the names, the grid and the settings
    that do not change the result (those hashed at their default, at it)."""
    left_out = NOT_INHERITED + ("grid",) + tuple(key for key in RESULT_NEUTRAL_KEYS if key not in HASHED_AT_DEFAULT)
    identity = {key: value for key, value in config.items() if key not in left_out}
    identity.update({key: EXPERIMENT_DEFAULTS[key] for key in HASHED_AT_DEFAULT if key in identity})
    return identity


def path_spelling(value: Any) -> Any:
    """How a run id spells a path setting's value: ``os.path.normpath`` of each non-empty text,
    so that ``data/``, ``./data`` and ``data/../data`` are ``data`` (a plain spelling is its own;
    an absolute and a relative spelling, or ``~``, stay apart: both are common, and one of them
    would change ids that results folders hold). Lexical: links are not followed."""
    if isinstance(value, list):
        return [path_spelling(item) for item in value]
    return os.path.normpath(value) if isinstance(value, str) and value else value


def file_identity(text: Any) -> Any:
    """What a file option's value names: ``(st_dev, st_ino)`` of the existing file it names (links
    followed), so that two spellings of one file (``bases/a.keras``, ``bases/../bases/a.keras``,
    a link to it) are one; its :func:`path_spelling` when it names none (a keyword such as
    ``"imagenet"``, a file written later)."""
    if not isinstance(text, str) or not text:
        return text
    found = classify_path(Path(text).expanduser())
    return [found.status.st_dev, found.status.st_ino] if found.exists else path_spelling(text)


#: Experiment keys a grid cannot expand, each with the reason and what to write instead.
NOT_EXPANDABLE = {
    "label": "it names the experiment's row in the tables, not a setting of a run; for a row per value, write one experiment per value (extends = ...) with its own label",
    "cv_label": "it names the experiment's row in the cross-validation table, not a setting of a run; for a row per value, write one experiment per value (extends = ...) with its own cv_label",
    "extends": "an experiment extends one other; for several bases, write one experiment per base",
    "phases": "every combination runs in the experiment's phases; set phases on the experiment",
    "grid": "a grid holds settings, not another grid",
}


#: The experiment keys whose list names each item once, with what a repeat would do.
REPEAT_DOES = {
    "preprocess": "apply the step twice: crop a crop",
    "augment": "apply the step twice",
    "evaluate": "compute the same metrics twice",
    "phases": "make the same runs twice",
}
LISTS_OF_DISTINCT = tuple(REPEAT_DOES)

#: The experiment keys whose empty list is a mistake, not a choice, each with what it would do
#: and what to write instead (``preprocess = []``, the images as they are, and ``augment = []``,
#: none, are choices). Checked with the configuration, not by the keys' declarations: a run's
#: record is read with those, and records of runs made before stay readable.
EMPTY_DOES = {
    "phases": ("give the experiment no runs", 'list "exploratory", "cv" or both, or remove the experiment'),
    "evaluate": ("measure nothing (no accuracy, no report)", 'list at least one, such as "paper_metrics"'),
}
#: What a tracking plugin enabled twice (``[tracking] plugins``, ``--track``) would do.
TRACKING_REPEAT_DOES = "report every run twice"


def is_blank(name: Any) -> bool:
    """Whether a plugin name is empty or only spaces: it names no plugin, so a list that holds it
    (``evaluate = [""]``) would quietly do less than it says, and split run ids from the same
    list without it; refused wherever plugin names are listed."""
    return isinstance(name, str) and not name.strip()


def blank_name_problem(key: str, name: str, hook: str) -> str:
    """The problem of a blank plugin name ``name`` listed by ``key``."""
    return f"{key} lists {name!r}, which names no plugin; list a plugin that implements {hook} there, or remove the empty name"


def repeated_items(items: list) -> list:
    """The items ``items`` lists more than once, each once, in order."""
    seen, repeated = [], []
    for item in items:
        if item in seen and item not in repeated:
            repeated.append(item)
        seen.append(item)
    return repeated


def _setting_at_fault(error: DatasetError, dataset: Mapping[str, Any]) -> str:
    """The ``[dataset]`` key a format's error names (:attr:`DatasetError.setting`), where it is one
    of the table's; else ``root``, the dataset as a whole."""
    return error.setting if error.setting in dataset else "root"


class MatrixBuilder:
    """Resolves and checks every experiment of a raw configuration, collecting problems.

    One pass: a value that fails its check is reported and replaced by its default, or its key
    noted as invalid, and checking goes on; only what depends on an invalid value is skipped (a
    plugin's traits when its name or options are wrong, the folds against the data's groups when
    ``folds`` is wrong, ...). :meth:`build` raises every problem at once.
    """

    def __init__(self, raw: RawConfig, plugins: Plugins, check_files: bool = True, pending_files: frozenset[str] = frozenset()):
        self.raw = raw
        self.plugins = plugins
        self.check_files = check_files
        self.pending_files = pending_files
        self.problems: list[Problem] = []
        #: What is allowed but probably not meant (options of a tracking plugin that is not
        #: enabled), one line each, naming its place.
        self.warnings: list[str] = []
        #: The phases the experiments ask for, faulty or not (the data must have groups enough for them).
        self.phases_asked: set[str] = set()
        self.index: Dataset | None = None
        #: The ``[dataset]`` keys that name files or folders (the core's and its format's).
        self.dataset_paths: list[str] = list(DATASET_PATHS)

    def problem(self, keys: tuple[str, ...], message: str) -> None:
        self.problems.append(Problem(self.raw.where(*keys), message))

    # --- the top level and the dataset ---

    def top_level(self) -> dict[str, Any]:
        """The top level, its invalid values replaced by their defaults (reported)."""
        data = self.raw.data
        check_section(self.raw, data, TOP_LEVEL_OPTIONS, (), self.problems)
        if not data.get("experiments"):
            self.problem(("experiments",), "no experiments: add at least one [experiments.NAME] table")
        return valid_values(data, TOP_LEVEL_OPTIONS)

    def dataset(self, table: Any, check_root: bool) -> tuple[dict[str, Any], set[str]]:
        """``[dataset]`` with defaults filled in, and the keys whose values are invalid (which
        keep their defaults here, only to go on checking)."""
        declarations, format_usable = self.dataset_declarations(table)
        invalid = check_section(self.raw, table, declarations, ("dataset",), self.problems)
        dataset = declared_dataset(valid_values(table, declarations), declarations)
        self.dataset_paths = dataset_paths(declarations)
        if not format_usable:
            invalid.add("format")
        if check_root and not invalid & {"", "root"}:
            root = dataset["root"]
            if not root:
                self.problem(("dataset", "root"), f"not set. {FEPH_SOURCE}")
            elif (problem := input_folder_problem(Path(root).expanduser())) == NO_SUCH_FOLDER:
                self.problem(("dataset", "root"), f"folder {root!r} does not exist. {FEPH_SOURCE}")
            elif problem:
                self.problem(("dataset", "root"), f"{root!r}: {problem}")
        return dataset, invalid

    def dataset_declarations(self, table: Any) -> tuple[dict[str, Any], bool]:
        """``[dataset]``'s declarations: the core keys and the options of the format it names;
        and whether that format is usable.

        When it is not (reported here), its keys are unknown: they are accepted unchecked rather
        than each reported as an unknown key.
        """
        name = table.get("format", DATASET_OPTIONS["format"].default) if isinstance(table, dict) else DATASET_OPTIONS["format"].default
        if not isinstance(name, str):
            return dict(DATASET_OPTIONS), False  # its type is reported with the other keys
        problem = format_problem(self.plugins, name)
        if not problem:
            try:
                return {**self.plugins.option_declarations(name), **DATASET_OPTIONS}, True
            except PluginCallError as error:
                problem = str(error)
        self.problem(("dataset", "format"), problem)
        unchecked = {key: None for key in table if key not in DATASET_OPTIONS}
        return {**DATASET_OPTIONS, **unchecked}, False

    def report(self, table: Any) -> dict[str, Any]:
        """The ``[report]`` table, its defaults filled in; figures without matplotlib is a problem now, not after the runs."""
        check_section(self.raw, table, REPORT_OPTIONS, ("report",), self.problems)
        report = valid_values(table, REPORT_OPTIONS)
        if report["figures"] is True:
            from feph_finetune.results.figures import PLOTS_INSTALL, plots_available

            if not plots_available():
                self.problem(("report", "figures"), f"figures need matplotlib, which is not installed: {PLOTS_INSTALL}")
        return report

    def tracking(self, table: Any) -> dict[str, dict[str, Any]]:
        """The ``[tracking]`` table: the enabled tracking plugins (``plugins`` and ``--track``),
        each with its checked options (from ``[tracking.<plugin>]``, defaults filled in)."""
        if not isinstance(table, dict):
            self.problem(("tracking",), f"expected table, got {type_name(table)} {table!r}")
            table = {}
        tracking_plugins = [name for name in self.plugins.names() if any(self.plugins.implements(name, hook) for hook in TRACKING_HOOKS)]
        enabled = table.get("plugins", [])
        for message in option_problems(enabled, TRACKING_OPTIONS["plugins"]):
            self.problem(("tracking", "plugins"), message)
            enabled = []
        for name in dict.fromkeys(filter(is_blank, enabled)):
            self.problem(("tracking", "plugins"), blank_name_problem("plugins", name, "tracking"))
        for name in dict.fromkeys(filter(is_blank, self.raw.track)):
            self.problems.append(Problem(self.raw.names("track", name), f"{name!r} names no plugin; give a tracking plugin's name"))
        enabled = [name for name in enabled if not is_blank(name)]
        for name in enabled:
            if name not in tracking_plugins:
                self.problem(("tracking", "plugins"), self._not_tracking(name, tracking_plugins))
        for name in repeated_items(enabled):
            self.problem(("tracking", "plugins"), f"plugins lists {name!r} twice; list it once (a repeat would {TRACKING_REPEAT_DOES})")
        for name in self.raw.track:
            if name not in tracking_plugins and not is_blank(name):
                self.problems.append(Problem(self.raw.names("track", name), self._not_tracking(name, tracking_plugins)))
        for name in repeated_items([name for name in self.raw.track if not is_blank(name)]):
            self.problems.append(Problem(self.raw.names("track", name), f"given twice; give it once (a repeat would {TRACKING_REPEAT_DOES})"))
        for name in dict.fromkeys(self.raw.track):
            if name in enabled and name in tracking_plugins:
                self.warnings.append(f"{self.raw.names('track', name)}: {name!r} is already enabled by {self.raw.where('tracking', 'plugins')}; "
                                     "it tracks each run once")
        for name, options in table.items():
            if name == "plugins":
                continue
            if name not in tracking_plugins:
                self.problem(("tracking", name), f"unknown key {name!r}: {self._not_tracking(name, tracking_plugins)}")
            else:
                self._check_tracking_options(name, options)
        enabled = [name for name in dict.fromkeys(enabled + self.raw.track) if name in tracking_plugins]
        for name in table:
            if name != "plugins" and name in tracking_plugins and name not in enabled:
                self.warnings.append(f"{self.raw.where('tracking', name)}: options of the tracking plugin {name!r}, which is not enabled, "
                                     f'so they have no effect; enable it with [tracking] plugins = ["{name}"] or {self.raw.names("track", name)}')
        for name in enabled:
            self._check_tracking_rules(name, table.get(name) if isinstance(table.get(name), dict) else {})
        return {name: {**self.plugins.option_defaults(name), **(table.get(name) if isinstance(table.get(name), dict) else {})} for name in enabled}

    def _not_tracking(self, name: str, tracking_plugins: list[str]) -> str:
        if name in self.plugins.names():
            return f"plugin {name!r} is not a tracking plugin (it implements none of {', '.join(TRACKING_HOOKS)}); tracking plugins: {', '.join(tracking_plugins) or 'none'}"
        if any(info.name == name for info in self.plugins.unavailable):
            return self.plugins.missing(name)  # installed but broken: say why
        return f"no tracking plugin {name!r}{close_match(name, tracking_plugins)}; tracking plugins: {', '.join(tracking_plugins) or 'none'}"

    def _check_tracking_options(self, name: str, options: Any) -> None:
        try:
            declarations = self.plugins.option_declarations(name)
        except PluginCallError as error:
            self.problem(("tracking", name), str(error))
            return
        check_section(self.raw, options, declarations, ("tracking", name), self.problems, owner=f"plugin {name!r}")

    def _check_tracking_rules(self, name: str, table: dict[str, Any]) -> None:
        """The ``check_with_options`` rules of an enabled tracking plugin, with its defaults
        filled in: where a plugin refuses what it cannot do here (its library not installed)."""
        try:
            declarations = self.plugins.option_declarations(name)
        except PluginCallError:
            return  # reported with its options
        options = {**{key: option.default for key, option in declarations.items()}, **table}
        for key, option in declarations.items():
            message = option.check_with_options(options[key], options) if option.check_with_options and not option_problems(options[key], option) else None
            if message:
                self.problem(("tracking", name, key) if key in table else ("tracking", "plugins"), message)

    def dataset_index(self, dataset: dict[str, Any], report: bool) -> None:
        """Read the dataset's index (its CSV and file listing; no image is decoded) when its root
        exists: record its fingerprint in ``dataset`` (part of every run's id) and, when
        ``report``, refuse data no run could use: no usable image, too few groups to split."""
        root = dataset["root"]
        if not root or input_folder_problem(Path(root).expanduser()):
            return
        try:
            index = load_index(dataset, self.plugins)
        except (DatasetError, PluginCallError) as error:
            if report:
                self.problem(("dataset", "format" if isinstance(error, PluginCallError) else _setting_at_fault(error, dataset)), str(error))
            return
        dataset["fingerprint"] = index.fingerprint
        dataset["classes"] = list(index.classes)
        if not report:
            return
        if not index.samples:
            dropped = ", ".join(f"{count} {reason}" for reason, count in index.dropped.items() if count) or "none"
            what = "the labels CSV has {} rows" if dataset["format"] == "feph" else "the data has {} entries"
            self.problem(("dataset", "root"), f"no usable image: {what.format(len(index.dropped_entries))} "
                         f"and none becomes a sample (rows dropped: {dropped}); see python -m feph_finetune data {root}")
            return
        if problem := single_class_problem(index, dataset):
            self.problem(("dataset", "root"), problem)
        self.index = index

    def check_groups(self, dataset: dict[str, Any], runs: list[Run], invalid: set[str]) -> None:
        """The loaded data must have enough groups for a hold-out split and for the folds
        (skipped for an invalid ``folds`` or ``group_by``), and a ``test_fraction`` the hold-out
        split cannot follow for so few groups is warned about; ``dataset["grouped"]`` records
        whether any two images share a group (False: frames of one video may straddle a split)."""
        if self.index is None or not self.index.samples or invalid & {"group_by", "group_pattern"}:
            return
        try:
            labels = group_labels(self.index, dataset)
        except ValueError as error:
            self.problem(("dataset", "group_by"), str(error))
            return
        groups = len(set(labels.tolist()))
        dataset["grouped"] = not grouping_warning(labels)  # recorded with each run, for the reports
        grouping = f"group_pattern = {dataset['group_pattern']!r}" if dataset["group_pattern"] else f"group_by = {dataset['group_by']!r}"
        formed = f"the {len(self.index.samples)} usable images form only {groups} ({grouping})"
        phases = self.phases_asked | {run.phase for run in runs}
        if "folds" not in invalid and "cv" in phases and dataset["folds"] > groups:
            self.problem(("dataset", "folds"), f"{dataset['folds']} folds need at least {dataset['folds']} groups, but {formed}")
        if "exploratory" in phases and groups < 2 and not self.index.presplit:
            self.problem(("dataset", "group_by"), f"a hold-out split needs at least 2 groups, but {formed}")
        if "exploratory" in phases and "test_fraction" not in invalid and not self.index.presplit:
            if fraction := test_fraction_warning(dataset["test_fraction"], groups):
                self.warnings.append(f"{self.raw.where('dataset', 'test_fraction')}: {fraction}")

    # --- experiments ---

    def check_row_names(self, runs: list[Run]) -> None:
        """Two experiments whose report rows would read the same (:func:`row_names`) are refused
        at the second one's ``label`` or ``cv_label``, once per experiment and key."""
        first: dict[tuple, str] = {}
        told: set[tuple[str, str]] = set()
        for run in runs:
            for key, shown, what, rows in row_names(run):
                other = first.setdefault((key, *shown), run.experiment)
                if other == run.experiment or (run.experiment, key) in told:
                    continue
                told.add((run.experiment, key))
                unset = "" if getattr(run, key) else f" (its key: it sets no {key})"
                self.problem(("experiments", run.experiment, key),
                             f"experiment {run.experiment!r} has the {what}{unset} of experiment {other!r}: their {rows} "
                             f"would read the same in the report; give {run.experiment!r} a {key} of its own")

    def experiment_chain(self, name: str, experiments: dict) -> list[str]:
        """The experiment, then the one it extends, and so on (problems reported, never looping)."""
        chain = [name]
        while parent := experiments[chain[-1]].get("extends", ""):
            if not isinstance(parent, str):
                break  # reported as the key's type
            if parent not in experiments:
                self.problem(("experiments", chain[-1], "extends"), f"no experiment {parent!r}{close_match(str(parent), experiments)}")
                break
            if parent in chain:
                self.problem(("experiments", chain[-1], "extends"), f"inheritance cycle: {' -> '.join(chain + [parent])}")
                break
            chain.append(parent)
        return chain

    def resolve(self, chain: list[str], experiments: dict, defaults: dict, seed: int) -> dict[str, Any]:
        config = deep_merge(EXPERIMENT_DEFAULTS, defaults)
        for ancestor in reversed(chain[1:]):
            config = deep_merge(config, {k: v for k, v in experiments[ancestor].items() if k not in NOT_INHERITED})
        config = deep_merge(config, experiments[chain[0]])
        if config["seed"] is None:
            config["seed"] = seed
        config["label"] = config["label"] or chain[0]
        return config

    def source(self, chain: list[str], experiments: dict, defaults: dict, keys: tuple[str, ...]) -> tuple[str, ...]:
        """Where a resolved value was set: the experiment, an ancestor, or [defaults]."""
        return self.setter(chain, experiments, defaults, keys) or ("experiments", chain[0]) + keys

    def setter(self, chain: list[str], experiments: dict, defaults: dict, keys: tuple[str, ...]) -> tuple[str, ...] | None:
        """Where the TOML sets a value of an experiment (as :meth:`source`); None where it does not."""
        def sets(table: dict) -> bool:
            for key in keys:
                if not isinstance(table, dict) or key not in table:
                    return False
                table = table[key]
            return True

        for position, name in enumerate(chain):
            if sets(experiments[name]) and (position == 0 or keys[0] not in NOT_INHERITED):
                return ("experiments", name) + keys
        if sets(defaults):
            return ("defaults",) + keys
        return None

    def grid_points(self, name: str, grid: Any) -> list[dict[str, Any]]:
        """Every combination of the grid's values; a key that cannot be expanded is reported
        and left out, the others still expanded."""
        keys = ("experiments", name, "grid")
        if not isinstance(grid, dict):
            return [{}]  # reported with the experiment's other keys
        expandable = {}
        for key, values in grid.items():
            head = split_dotted(key)[0]
            if head in NOT_EXPANDABLE:
                self.problem(keys + (key,), f"cannot expand {key!r}: {NOT_EXPANDABLE[head]}")
            elif head not in EXPERIMENT_OPTIONS:
                self.problem(keys + (key,), f"cannot expand {key!r}: not a setting of a run{close_match(head, EXPERIMENT_OPTIONS)}")
            elif head in RESULT_NEUTRAL_KEYS:
                self.problem(keys + (key,), f"cannot expand {key!r}: it does not change a run's result, so every value would be the same run; set it on the experiment instead")
            elif not isinstance(values, list) or not values:
                self.problem(keys + (key,), "expected a non-empty array of values to expand")
            else:
                expandable[key] = self.distinct_values(keys + (key,), values)
        names = list(expandable)
        return [dict(zip(names, values)) for values in itertools.product(*(expandable[key] for key in names))]

    def distinct_values(self, keys: tuple[str, ...], values: list) -> list:
        """``values`` without repeats; each repeat is a problem: a grid's value is a run, and a
        repeated one (``[1, 1]``, ``[0.001, 1e-3]``) would be the same run twice, writing one folder."""
        seen: dict[str, Any] = {}
        for value in values:
            canonical = json.dumps(self.grid_canonical(keys[-1], value), sort_keys=True, default=str)
            if canonical in seen:
                same = f" ({seen[canonical]!r} is the same value)" if repr(seen[canonical]) != repr(value) else ""
                self.problem(keys, f"the value {value!r} is repeated{same}: each value makes a run, so it would run twice into one folder; list it once")
            else:
                seen[canonical] = value
        return list(seen.values())

    def grid_canonical(self, key: str, value: Any) -> Any:
        """A grid's value in its declared type (:func:`as_declared`), where the key's
        declaration is known: ``1`` and ``1.0`` of a float setting are one value. (Two spellings
        of one file are refused with what they name: :meth:`same_file_problem`.)"""
        option = self.grid_declaration(split_dotted(key))
        if option is None or option_problems(value, option, check_paths=False):
            return value  # reported where the value is checked
        return as_declared(value, option)

    def grid_declaration(self, parts: list[str]) -> Option | None:
        """The declaration of a grid's dotted key (``validation_split``,
        ``options.face_crop.margin``, ``options.adam`` as a table), or None where unknown."""
        if parts[0] != "options":
            return EXPERIMENT_OPTIONS.get(parts[0]) if len(parts) == 1 else None
        if len(parts) not in (2, 3):
            return None
        try:
            declared = self.plugins.option_declarations(parts[1])
        except PluginCallError:
            return None
        if len(parts) == 2:
            return Option({}, table=declared)
        return declared.get(parts[2])

    def check_experiment(self, config: dict[str, Any], where) -> set[str]:
        """Check a resolved experiment; ``where(keys)`` names the place a value came from.
        Invalid values are replaced by their defaults, only to go on checking; returns their keys."""
        invalid = set()
        for key, option in EXPERIMENT_OPTIONS.items():
            messages = option_problems(config[key], option)
            self.problems += [Problem(self.raw.where(*where((key,))), message) for message in messages]
            if messages:
                invalid.add(key)
                config[key] = copy.deepcopy(option.default)
        self.check_blank_names(config, where, invalid)
        self.check_repeats(config, where, invalid)
        self.check_empty_lists(config, where, invalid)
        self.check_plugins(config, where, invalid)
        return invalid

    def check_blank_names(self, config: dict[str, Any], where, invalid: set[str]) -> None:
        """A blank name (:func:`is_blank`) in a plugin list (``preprocess``, ``augment``,
        ``evaluate``) is a problem at its key; the list's other names are still checked (a blank
        scalar plugin name is :meth:`check_plugins`' to refuse)."""
        for key, hook in PLUGIN_KEYS.items():
            if key not in invalid and isinstance(config.get(key), list):
                blanks = dict.fromkeys(filter(is_blank, config[key]))
                self.problems += [Problem(self.raw.where(*where((key,))), blank_name_problem(key, name, hook)) for name in blanks]

    def check_repeats(self, config: dict[str, Any], where, invalid: set[str]) -> None:
        """A plugin or phase listed twice (:data:`REPEAT_DOES`) is a problem at its key, which is
        added to ``invalid``."""
        for key in LISTS_OF_DISTINCT:
            if key not in invalid and key in config and (repeated := [item for item in repeated_items(config[key]) if not is_blank(item)]):
                self.problems += [Problem(self.raw.where(*where((key,))), f"{key} lists {item!r} twice; list it once (a repeat would {REPEAT_DOES[key]})")
                                  for item in repeated]
                invalid.add(key)

    def check_empty_lists(self, config: dict[str, Any], where, invalid: set[str]) -> None:
        """An empty list of :data:`EMPTY_DOES` is a problem at its key, which is added to
        ``invalid``."""
        for key, (does, remedy) in EMPTY_DOES.items():
            if key not in invalid and key in config and config[key] == []:
                self.problems.append(Problem(self.raw.where(*where((key,))), f"{key} lists nothing: it would {does}; {remedy}"))
                invalid.add(key)

    def check_plugins(self, config: dict[str, Any], where, invalid: set[str]) -> None:
        """Every plugin name must be installed and implement its key's hook. Names that are not
        are added to ``invalid`` as ``plugin:NAME``."""
        installed = self.plugins.names()
        for key, hook in PLUGIN_KEYS.items():
            if key in invalid or (key == "optimizer" and not config["fine_tune"]):
                continue
            value = config[key]
            names = value if isinstance(value, list) else [value]
            if key in ("model", "optimizer") and (not value or is_blank(value)):
                self.problems.append(Problem(self.raw.where(*where((key,))), f"names no plugin; a {hook} plugin is needed"))
                invalid.add(key)
            elif value and is_blank(value):
                self.problems.append(Problem(self.raw.where(*where((key,))), f"{value!r} names no plugin; name a plugin that implements {hook}, or write \"\" for none"))
                invalid.add(key)
            for name in (name for name in names if not is_blank(name)):
                place = self.raw.where(*where((key,)))
                if name not in installed:
                    self.problems.append(Problem(place, self.plugins.missing(name)))
                    invalid.add(f"plugin:{name}")
                elif not self.plugins.implements(name, hook):
                    serving = [p for p in installed if self.plugins.implements(p, hook)]
                    self.problems.append(Problem(place, f"plugin {name!r} does not implement {hook}; plugins that do: {', '.join(serving)}"))
                    invalid.add(f"plugin:{name}")

    def usable_plugins(self, config: dict[str, Any], invalid: set[str]) -> list[str]:
        """The plugins the experiment uses whose names are right (installed, serving their key)."""
        return [name for name in used_plugins(config) if f"plugin:{name}" not in invalid]

    def check_options(self, config: dict[str, Any], where, check_paths: bool = True) -> set[str]:
        """Check every configured option against its plugin's declarations; files named by
        options must exist only for the plugins the experiment uses (none without
        ``check_paths``). Returns the plugins whose options have problems."""
        installed = self.plugins.names()
        used = used_plugins(config)
        faulty: set[str] = set()
        for plugin, table in config["options"].items():
            before = len(self.problems)
            place = self.raw.where(*where(("options", plugin)))
            if plugin not in installed:
                self.problems.append(Problem(place, f"options for an unusable plugin: {self.plugins.missing(plugin)}"))
                continue
            if not isinstance(table, dict):
                self.problems.append(Problem(place, f"expected a table, got {type_name(table)}"))
                faulty.add(plugin)
                continue
            try:
                declarations = self.plugins.option_declarations(plugin)
            except PluginCallError as error:
                self.problems.append(Problem(place, str(error)))
                faulty.add(plugin)
                continue
            for key, value in table.items():
                place = self.raw.where(*where(("options", plugin, key)))
                if key not in declarations:
                    known = ", ".join(declarations) or "none"
                    self.problems.append(Problem(place, f"plugin {plugin!r} has no option {key!r}{close_match(key, declarations)}; its options: {known}"))
                    continue
                for message in option_problems(value, declarations[key], check_paths=check_paths and self.check_files and plugin in used and not (isinstance(value, str) and value in self.pending_files)):
                    self.problems.append(Problem(place, message))
            if len(self.problems) > before:
                faulty.add(plugin)
        return faulty

    def warn_unused_options(self, name: str, config: dict[str, Any], where) -> None:
        """Warn, once each, of options that experiment ``name`` gives (in its own table, its grid
        or a ``--set``) to an installed plugin it does not use: they have no effect, as a tracking
        plugin's options when it is not enabled (options in ``[defaults]`` or an ancestor serve
        other experiments, and are not warned of)."""
        used = used_plugins(config)
        for plugin in config["options"]:
            place = where(("options", plugin))
            if plugin in used or plugin not in self.plugins.names() or place[:2] != ("experiments", name):
                continue
            keys = [key for key, hook in PLUGIN_KEYS.items() if self.plugins.implements(plugin, hook)]
            if not keys:
                remedy = f"{plugin!r} serves none of an experiment's plugin lists ({', '.join(PLUGIN_KEYS)}); remove them"
            elif "optimizer" in keys and not config["fine_tune"]:
                remedy = "No-FT (fine_tune = false) trains nothing, so no optimizer runs; remove them"
            else:
                remedy = f"name it in the experiment's {' or '.join(keys) or 'plugin lists'}, or remove them"
            first = ("options", plugin, *list(config["options"][plugin])[:1]) if isinstance(config["options"][plugin], dict) else ("options", plugin)
            warning = f"{self.raw.where(*where(first))}: options of the plugin {plugin!r}, which experiment {name} does not use, so they have no effect; {remedy}"
            if warning not in self.warnings:
                self.warnings.append(warning)

    def warn_untrained_options(self, name: str, config: dict[str, Any], where) -> None:
        """Warn, once each, of what No-FT experiment ``name`` sets (in its own table, its grid
        or a ``--set``, as :meth:`warn_unused_options`) that only training reads: a key of
        :data:`~feph_finetune.config.reading.TRAINING_ONLY_KEYS` other than its default, an
        option declared ``training_only`` of a plugin it uses. No-FT evaluates the pretrained
        classifier untrained, so its result does not depend on them (its run ids hash them at
        their default: :meth:`config_identity`). ``save_model = true`` too: No-FT trains no
        model to save (:func:`feph_finetune.predict.bundle.saves_model`)."""
        if config["fine_tune"]:
            return
        places = [((key,), key, "; remove it") for key in TRAINING_ONLY_KEYS if config[key] != EXPERIMENT_DEFAULTS[key]]
        places += [(("options", plugin, key), f"option {key!r} of the plugin {plugin!r}", "") for plugin, key in self.training_only_options(config)]
        for keys, what, remedy in places:  # the plugin still receives its options (a model may need its cut_layer to be built at all)
            place = where(keys)
            warning = (f"{self.raw.where(*place)}: {what} shapes only what fine-tuning trains, and experiment {name} is No-FT "
                       f"(fine_tune = false): it evaluates the pretrained classifier untrained, so its result does not depend on this{remedy}")
            if place[:2] == ("experiments", name) and warning not in self.warnings:
                self.warnings.append(warning)
        place = where(("save_model",))
        warning = (f"{self.raw.where(*place)}: experiment {name} is No-FT (fine_tune = false): it trains no model, so save_model saves nothing "
                   "(predict and export need a fine-tuned experiment's model); remove it")
        if config["save_model"] and place[:2] == ("experiments", name) and warning not in self.warnings:
            self.warnings.append(warning)

    def training_only_options(self, config: dict[str, Any]) -> list[tuple[str, str]]:
        """``(plugin, option)`` of each option the experiment gives a plugin it uses that the
        plugin declares ``training_only``."""
        found = []
        for plugin in used_plugins(config):
            values = config["options"].get(plugin)
            if not isinstance(values, dict) or plugin not in self.plugins.names():
                continue
            try:
                declared = self.plugins.option_declarations(plugin)
            except PluginCallError:
                continue  # reported with its options
            found += [(plugin, key) for key in values if key in declared and declared[key].training_only]
        return found

    def check_settings_table(self, table: Any, keys: tuple[str, ...]) -> None:
        """Check experiment settings kept outside ``[experiments]`` and ``[defaults]`` (a client's
        table, ``[demo] defaults``, laid over ``[defaults]`` when the client runs) as an
        experiment's: the plugins it names and the options it gives them. Its keys' types are
        checked with its own table. Files named by options are not checked: the client may
        write them before its runs."""
        if not isinstance(table, dict):
            return
        config = valid_values(table, EXPERIMENT_OPTIONS)
        unset_or_invalid = {key for key, option in EXPERIMENT_OPTIONS.items() if key not in table or option_problems(table[key], option)}
        self.check_repeats(config, lambda place: keys + place, unset_or_invalid)
        self.check_empty_lists(config, lambda place: keys + place, unset_or_invalid)
        self.check_plugins(config, lambda place: keys + place, unset_or_invalid)
        if "options" not in unset_or_invalid:
            self.check_options(config, lambda place: keys + place, check_paths=False)

    def check_option_rules(self, config: dict[str, Any], where, faulty: set[str], usable: list[str]) -> None:
        """Run the ``check_with_options`` rules of the plugins the experiment uses, whose options
        passed their own checks; where files are checked and none is written later."""
        if not self.check_files:
            return
        for name in usable:
            table = config["options"].get(name) or {}
            if name in faulty or any(isinstance(value, str) and value in self.pending_files for value in table.values()):
                continue
            try:
                declarations = self.plugins.option_declarations(name)
            except PluginCallError:
                continue  # reported by the traits' check
            options = {**{key: option.default for key, option in declarations.items()}, **table}
            for key, option in declarations.items():
                message = option.check_with_options(options[key], options) if option.check_with_options else None
                if message:
                    place = ("options", name, key) if key in table else ("options", name)
                    self.problems.append(Problem(self.raw.where(*where(place)), message))
                    faulty.add(name)

    def check_pretrained_classes(self, config: dict[str, Any], where, wanted: Any) -> None:
        """No-FT evaluates the model's pretrained classifier, mapped to the dataset's classes by
        name (:func:`~feph_finetune.data.class_mapping.map_classes`, as the run maps them):
        refused when the dataset has a class the classifier lacks (the data's classes are known
        once its index is read; the classifier's from ``model_input``, default FePh's)."""
        dataset_classes = self.index.classes if self.index is not None else ()
        known = wanted.get("classes") if isinstance(wanted, dict) and wanted.get("classes") else CLASSES
        place = self.raw.where(*where(("fine_tune",)))
        try:
            missing = map_classes(known, dataset_classes).missing
        except ValueError as error:
            self.problems.append(Problem(place, f"No-FT evaluates the pretrained classifier of {config['model']!r}, but {error}"))
            return
        if missing:
            self.problems.append(Problem(place,
                f"No-FT evaluates the pretrained classifier of {config['model']!r}, which has no class {', '.join(map(repr, missing))} "
                f"of the dataset (its classes: {', '.join(map(repr, known))}); fine-tune instead (fine_tune = true)"))

    def model_input_size(self, config: dict[str, Any], where, size_set: bool, configured: bool) -> None:
        """The model plugin's ``model_input``: its side when the TOML sets no ``input_size``; a
        model that takes no other side refuses a different one. ``configured``: whether the
        configuration sets options of the model plugin (:meth:`plugin_place`)."""
        model = config["model"]
        if any(isinstance(value, str) and value in self.pending_files for value in (config["options"].get(model) or {}).values()):
            return  # a file written later: the run checks its input
        try:
            wanted = self.plugins.call(model, "model_input", options=config["options"][model])  # given as a copy (Plugins.call)
        except PluginCallError as error:
            self.problems.append(Problem(self.plugin_place(config, where, model, configured), str(error)))
            return
        if not config["fine_tune"]:
            self.check_pretrained_classes(config, where, wanted)
        size = wanted.get("size") if isinstance(wanted, dict) else None
        if not isinstance(size, int) or size == config["input_size"]:
            return
        if not size_set:
            config["input_size"] = size
        elif wanted.get("fixed"):
            self.problems.append(Problem(
                self.raw.where(*where(("input_size",))),
                f"the model from {model!r} takes {size}x{size} images only, not {config['input_size']}: set input_size = {size}, "
                "or remove input_size to use the model's",
            ))

    def plugin_place(self, config: dict[str, Any], where, name: str, configured: bool) -> str:
        """Where a problem of plugin ``name``'s own answer (``plugin_traits``, ``model_input``) is
        named: at its options where the configuration sets some (``configured``), else at the
        setting that lists the plugin (its ``--set``, its ``[defaults]`` line, the experiment's),
        never at an options key the file does not have."""
        if not configured:
            for key in PLUGIN_KEYS:
                value = config.get(key)
                if value == name or (isinstance(value, list) and name in value):
                    return self.raw.where(*where((key,)))
        return self.raw.where(*where(("options", name)))

    def check_traits(self, config: dict[str, Any], where, faulty: set[str], usable: list[str]) -> None:
        """Refuse combinations of plugins that cannot work, from what each declares it does
        (plugins whose names or options have problems are left out: their traits are unknown)."""
        traits = {}
        for name in usable:
            if name in faulty:
                continue
            try:
                options = {**self.plugins.option_defaults(name), **config["options"].get(name, {})}
                traits[name] = self.plugins.traits(name, options)
            except PluginCallError as error:
                self.problems.append(Problem(self.plugin_place(config, where, name, name in config["options"]), str(error)))
        model = config["model"]
        if model not in traits:
            return
        if "normalizes_input" in traits[model]:
            for name in config["preprocess"]:
                if "normalizes_pixels" in traits.get(name, ()):
                    self.problems.append(Problem(
                        self.raw.where(*where(("preprocess",))),
                        f"the model from {model!r} normalises its input itself, and {name!r} would normalise it "
                        f"again; remove {name!r} from this experiment's preprocess list",
                    ))
        if not config["fine_tune"] and "pretrained_classifier" not in traits[model]:
            set_options = config["options"].get(model) or {}
            shown = ", ".join(f"{key} = {value!r}" for key, value in set_options.items()) or "its defaults"
            self.problems.append(Problem(
                self.raw.where(*where(("fine_tune",))),
                f"No-FT (fine_tune = false) evaluates the model's pretrained expression classifier, but "
                f"{model!r} with {shown} has none; give it weights that carry one (a whole expression model), "
                "or fine-tune",
            ))

    def plugin_options(self, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The options of the plugins the experiment uses, defaults filled in."""
        configured = config["options"]
        return {name: {**self.plugins.option_defaults(name), **self.declared_options(name, configured.get(name, {}))} for name in used_plugins(config)}

    def declared_options(self, name: str, values: dict[str, Any]) -> dict[str, Any]:
        """Plugin ``name``'s option ``values``, each in its declared type (:func:`as_declared`).
        PluginCallError when the plugin cannot declare its options (not installed)."""
        declared = self.plugins.option_declarations(name)
        return {key: as_declared(value, declared[key]) if key in declared else value for key, value in values.items()}

    def hashed_options(self, options: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """``options`` less those declared ``unhashed_at_default`` that are at their default, the
        files and folders each in its :func:`path_spelling`: what of the plugins' options enters
        the run id."""
        hashed = {}
        for name, values in options.items():
            declared = self.plugins.option_declarations(name)
            hashed[name] = {key: path_spelling(value) if key in declared and declared[key].path is not None else value for key, value in values.items()
                            if not (key in declared and declared[key].unhashed_at_default and value == declared[key].default)}
        return hashed

    # --- everything ---

    def matrix(self, check_root: bool = True) -> Matrix:
        """The matrix of every run whose experiment could be resolved; problems are collected in
        :attr:`problems` (the matrix is only usable when there are none)."""
        top = self.top_level()
        dataset, dataset_invalid = self.dataset(self.raw.data.get("dataset", {}), check_root)
        report = self.report(self.raw.data.get("report", {}))
        tracking = self.tracking(self.raw.data.get("tracking", {}))
        if not dataset_invalid - INDEPENDENT_OF_THE_INDEX:
            self.dataset_index(dataset, report=check_root)
        defaults = top["defaults"]
        check_section(self.raw, defaults, EXPERIMENT_OPTIONS, ("defaults",), self.problems)
        experiments = {}
        for name, table in top["experiments"].items():
            if experiment_name_problem(name):
                self.problem(("experiments", name), experiment_name_problem(name))
            for key in ("label", "cv_label"):
                text = table.get(key) if isinstance(table, dict) else None
                if isinstance(text, str) and printable(text) != text:
                    self.problem(("experiments", name, key), f"'{printable(text)}' holds control or invisible characters; a label is shown in tables, give it printable characters only")
            if not check_section(self.raw, table, EXPERIMENT_OPTIONS, ("experiments", name), self.problems) >= {""}:
                experiments[name] = table
        runs: list[Run] = []
        for order, name in enumerate(experiments):
            runs += self.experiment_runs(name, order, experiments, defaults, top["seed"], dataset)
        self.check_row_names(runs)
        if check_root:
            self.check_groups(dataset, runs, dataset_invalid)
        self.problems = list(dict.fromkeys(self.problems))
        return Matrix(top["seed"], top["output"], dataset, runs, list(top["experiments"]), report, tracking, Path(self.raw.locator.path).stem)

    def build(self, check_root: bool = True) -> Matrix:
        """:meth:`matrix`, raising a ConfigError with every problem when there are any."""
        matrix = self.matrix(check_root)
        if self.problems:
            raise ConfigError(in_file_order(self.problems))
        return matrix

    def experiment_runs(self, name, order, experiments, defaults, seed, dataset) -> list[Run]:
        chain = self.experiment_chain(name, experiments)
        base = self.resolve(chain, experiments, defaults, seed)
        runs = []
        made_by: dict[str, tuple[dict[str, Any], str]] = {}  # what a variant's runs are (files by identity): the variant, its runs' spelled identity
        for variant in self.grid_points(name, base["grid"]):
            config = copy.deepcopy(base)
            for key, value in variant.items():
                set_dotted(config, split_dotted(key), value)

            def where(keys, variant=variant):
                for key in variant:
                    if tuple(split_dotted(key)) == keys[: len(split_dotted(key))]:
                        return ("experiments", name, "grid", key)
                if self.setter(chain, experiments, defaults, keys) is None:  # a table only a grid key makes (options.adma of options.adma.lr)
                    for key in variant:
                        if tuple(split_dotted(key))[: len(keys)] == keys:
                            return ("experiments", name, "grid", key)
                return self.source(chain, experiments, defaults, keys)

            before = len(self.problems)
            invalid = self.check_experiment(config, where)
            if "phases" not in invalid:  # checked against the data even when this experiment has other faults
                self.phases_asked.update(config["phases"])
            usable = self.usable_plugins(config, invalid)
            faulty = set(usable) if "options" in invalid else self.check_options(config, where)
            if not invalid & {*PLUGIN_KEYS, "fine_tune", "options"}:
                self.warn_unused_options(name, config, where)
                self.warn_untrained_options(name, config, where)
            self.check_option_rules(config, where, faulty, usable)
            if not invalid & {*PLUGIN_KEYS, "fine_tune"}:  # else what the experiment combines is unknown
                self.check_traits(config, where, faulty, usable)
            if len(self.problems) > before:
                continue
            config.update(declared_settings(config))
            model_configured = config["model"] in config["options"]
            config["options"] = self.plugin_options(config)
            size_set = "input_size" in variant or self.setter(chain, experiments, defaults, ("input_size",)) is not None
            self.model_input_size(config, where, size_set, model_configured)
            if len(self.problems) > before:
                continue
            made, spelled = (json.dumps(identity, sort_keys=True, default=str) for identity in (self.files_by_identity(config), run_identity(config)))
            if made in made_by and made_by[made][1] != spelled:  # the same spellings: one id, refused with the run ids
                self.same_file_problem(name, made_by[made][0], variant)
                continue
            made_by.setdefault(made, (variant, spelled))
            runs += self.phase_runs(name, order, config, variant, dataset)
        return runs

    def files_by_identity(self, config: dict[str, Any]) -> dict[str, Any]:
        """:func:`run_identity` of ``config`` (plugin options filled in), each file a plugin's
        option names (declared with ``path``) replaced by its :func:`file_identity`."""
        options = {}
        for plugin, values in config["options"].items():
            declared = self.plugins.option_declarations(plugin)
            options[plugin] = {key: ([file_identity(item) for item in value] if isinstance(value, list) else file_identity(value))
                               if key in declared and declared[key].path is not None else value
                               for key, value in values.items()}
        return run_identity({**config, "options": options})

    def same_file_problem(self, name: str, first: dict[str, Any], variant: dict[str, Any]) -> None:
        """Two grid points of experiment ``name`` that differ only in how they spell files: one
        run twice under two ids (its folder written twice, the report counting it twice)."""
        for key in variant:
            if first.get(key) != variant[key]:
                file = f" ({Path(variant[key]).expanduser().resolve()})" if isinstance(variant[key], str) else "s"
                self.problem(("experiments", name, "grid", key),
                             f"the values {first.get(key)!r} and {variant[key]!r} name the same file{file}: "
                             "each value makes a run, so it would be the same run twice under two ids; list it once")
                return

    def dataset_identity(self, dataset: dict[str, Any], phase: str, split_seed: int) -> dict[str, Any]:
        """What of ``[dataset]`` a run id of ``phase`` hashes: the settings that change what is
        read and how it is split, each path in its :func:`path_spelling`, the keys the phase
        never reads at their default (``group_by`` too where ``group_pattern`` groups), and,
        where the data has a fingerprint, the labels file and image folder at theirs
        (:data:`~feph_finetune.config.reading.LOCATED_BY_THE_FINGERPRINT`); with the data's
        fingerprint and the split seed."""
        identity = {key: value for key, value in dataset.items()
                    if key not in ("cache_dir", "classes", "grouped") and not (key in DATASET_DEFAULTS_UNHASHED and value == DATASET_DEFAULTS[key])}
        identity.update({key: path_spelling(identity[key]) for key in self.dataset_paths if key in identity})
        identity.update({key: DATASET_DEFAULTS[key] for key in NOT_READ_IN_PHASE[phase]})
        if dataset.get("fingerprint"):
            identity.update({key: DATASET_DEFAULTS[key] for key in LOCATED_BY_THE_FINGERPRINT if key in identity})
        if dataset.get("group_pattern"):
            identity["group_by"] = DATASET_DEFAULTS["group_by"]  # the pattern groups instead (data.datasets.group_labels)
        identity["split_seed"] = split_seed
        return identity

    def config_identity(self, config: dict[str, Any]) -> dict[str, Any]:
        """What of an experiment's resolved ``config`` (plugin options filled in) its run ids
        hash, before :func:`run_identity`: the plugins' options as :meth:`hashed_options`; for
        No-FT, the keys only training reads at their default, the options of no plugin they
        name, and the options declared ``training_only`` at their default."""
        if not config["fine_tune"]:
            config = {**config, **{key: EXPERIMENT_DEFAULTS[key] for key in TRAINING_ONLY_KEYS}}
            config["options"] = {name: self.untrained_options(name, values) for name, values in config["options"].items() if name in used_plugins(config)}
        return {**config, "options": self.hashed_options(config["options"])}

    def untrained_options(self, name: str, values: dict[str, Any]) -> dict[str, Any]:
        """Plugin ``name``'s option ``values`` as far as a No-FT run depends on them: those
        declared ``training_only`` at their default."""
        declared = self.plugins.option_declarations(name)
        return {key: declared[key].default if key in declared and declared[key].training_only else value for key, value in values.items()}

    def phase_runs(self, name, order, config, variant, dataset) -> list[Run]:
        record = RunConfig(**{key: config[key] for key in EXPERIMENT_OPTIONS})  # an unknown key is a problem already
        identity_config = self.config_identity(config)
        split_seed = self.raw.data.get("seed", TOP_LEVEL["seed"])
        runs = []
        for phase in config["phases"]:
            for fold in [None] if phase == "exploratory" else range(dataset["folds"]):
                runs.append(
                    Run(
                        id=run_id(name, phase, fold, identity_config, self.dataset_identity(dataset, phase, split_seed)),
                        experiment=name,
                        order=order,
                        label=config["label"],
                        cv_label=config["cv_label"],
                        phase=phase,
                        fold=fold,
                        seed=config["seed"],
                        variant=variant,
                        config=record,
                        dataset=dataset,
                    )
                )
        return runs

    def recorded_run_id(self, recorded: Mapping[str, Any], split_seed: Any) -> str | None:
        """The id today's rules give the run that a results folder's ``config.json`` records
        (``{"run": ..., "config": ..., "dataset": ...}``, as :func:`feph_finetune.execution.job.execute_run`
        writes it) with its split seed (its ``environment.json``'s ``split_seed``): a run
        finished under an earlier id's rules (a path spelled ``data/``, ``lr = 1``) gets the id
        its configuration has now. None where it cannot be told (a record of another shape, a
        plugin or format no longer installed)."""
        try:
            run, config = recorded["run"], RunConfig.from_json(recorded["config"]).to_json()
            declarations, usable = self.dataset_declarations(recorded["dataset"])
            if not usable or not isinstance(split_seed, int):
                return None
            dataset = declared_dataset(recorded["dataset"], declarations)
            self.dataset_paths = dataset_paths(declarations)
            config.update(declared_settings(config))
            config["options"] = {name: self.declared_options(name, values) for name, values in config["options"].items()}
            return run_id(run["experiment"], run["phase"], run["fold"], self.config_identity(config), self.dataset_identity(dataset, run["phase"], split_seed))
        except (KeyError, TypeError, ValueError, AttributeError, PluginCallError):
            return None


def row_names(run: Run) -> list[tuple[str, tuple, str, str]]:
    """What names ``run``'s rows in the report, each ``(key, what must differ between experiments,
    how a problem says it, which rows)``: its label (the experiment's key where it has none) with
    its backbone and grid variant in its phase (the exploratory table, the runs and counters), and
    in the cross-validation phase its c/v label (else key) with its variant, whatever the
    backbone (that table, its comparisons and ``report --confusion`` name rows by it only).
    Names are compared as they read (:func:`~feph_finetune.printable.reading_key`)."""
    variant = json.dumps(run.variant, sort_keys=True, default=str)
    label, cv_label = run.label or run.experiment, run.cv_label or run.experiment
    names = [("label", (run.phase, run.config.model, reading_key(label), variant), f"label {label!r} with model {run.config.model!r}", f"{run.phase} rows")]
    if run.phase == "cv":
        names.append(("cv_label", (reading_key(cv_label), variant), f"c/v label {cv_label!r}", "cross-validation rows"))
    return names


def declared_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """An experiment's settings (not its plugins' options) in their declared types
    (:func:`as_declared`: ``lr = 1`` is ``1.0``)."""
    return {key: as_declared(config[key], option) for key, option in EXPERIMENT_OPTIONS.items() if key != "options" and key in config}


def declared_dataset(dataset: Mapping[str, Any], declarations: Mapping[str, Any]) -> dict[str, Any]:
    """``[dataset]``'s values in their declared types (:func:`as_declared`)."""
    return {key: as_declared(value, as_option(declarations.get(key))) for key, value in dataset.items()}


def dataset_paths(declarations: Mapping[str, Any]) -> list[str]:
    """The ``[dataset]`` keys of ``declarations`` that name files or folders (the core's and
    its format's)."""
    return [key for key, option in declarations.items() if key in DATASET_PATHS or (isinstance(option, Option) and option.path is not None)]


def recorded_id_rules(raw: RawConfig, plugins: Plugins) -> Callable[[Mapping[str, Any], Any], str | None]:
    """:meth:`MatrixBuilder.recorded_run_id` under ``raw``'s configuration and ``plugins``
    (for :mod:`feph_finetune.results.earlier_ids`)."""
    return MatrixBuilder(raw, plugins, check_files=False).recorded_run_id


def build_matrix(raw: RawConfig, plugins: Plugins, check_root: bool = True, pending_files: frozenset[str] = frozenset()) -> Matrix:
    """Validate ``raw`` and expand it into runs; raises ConfigError listing every problem.

    ``check_root=False`` (the demo, whose data and base models are written after validation)
    skips what needs files on disk: the dataset root and its index, and files named by options.
    The dataset's index is still read, for its fingerprint, when the root exists.
    ``pending_files``: paths that options may name before they exist, because the caller writes
    them before a run needs them (the demo's base models, pre-trained beside the first runs).
    """
    return MatrixBuilder(raw, plugins, check_files=check_root, pending_files=pending_files).build(check_root)


def selection_problems(matrix: Matrix, only: list[str] | None, names: ArgumentNames = COMMAND_LINE) -> list[Problem]:
    """The ``--only`` names that are no experiment of the matrix, each a problem (its place as
    ``names`` writes the argument)."""
    known = ", ".join(matrix.experiments)
    return [
        Problem(names("only", name), f"no experiment {shortened(repr(name))}{close_match(name, matrix.experiments)}; experiments: {known}")
        for name in only or () if name not in matrix.experiments
    ]


def select(matrix: Matrix, only: list[str] | None, phase: str | None, names: ArgumentNames = COMMAND_LINE) -> list[Run]:
    """The runs that ``--only`` and ``--phase`` keep.

    ConfigError for an unknown experiment name, and when no run is left: a command that would
    do nothing says so (exit 2) instead of reporting success. ``names``: how problems name the
    arguments.
    """
    problems = selection_problems(matrix, only, names)
    if problems:
        raise ConfigError(problems)
    runs = [run for run in matrix.runs if (not only or run.experiment in only) and (not phase or run.phase == phase)]
    if not runs:
        raise ConfigError([_nothing_selected(matrix, only, phase, names)])
    return runs


def _nothing_selected(matrix: Matrix, only: list[str] | None, phase: str | None, names: ArgumentNames) -> Problem:
    options = " ".join(part for part in (names("only", only) if only else "", names("phase", phase) if phase else "") if part)
    if phase:
        having = list(dict.fromkeys(run.experiment for run in matrix.runs if run.phase == phase))
        return Problem(options, f"no runs selected (experiments with a {phase} phase: {', '.join(having) or 'none'})")
    return Problem(options or "experiments", "no runs selected: the file defines no runs")
