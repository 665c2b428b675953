"""From a parsed configuration to the list of runs: inheritance, grids, plugin checks, stable ids.

Validation happens here, before any work: every problem of the whole file is collected and raised
at once as a :class:`~feph_finetune.config.reading.ConfigError`.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feph_finetune.config.reading import (
    DATASET_DEFAULTS,
    EXPERIMENT_DEFAULTS,
    EXPERIMENT_NAME,
    GROUP_KEYS,
    HASHED_AT_DEFAULT,
    NOT_INHERITED,
    PHASES,
    PLUGIN_KEYS,
    REPORT_DEFAULTS,
    RESULT_NEUTRAL_KEYS,
    TOP_LEVEL,
    ConfigError,
    Problem,
    RawConfig,
    check_table,
    close_match,
    deep_merge,
    matches_type,
    set_dotted,
    split_dotted,
    type_name,
)
from feph_finetune.data.feph import FEPH_DOWNLOAD, Dataset, DatasetError, load_index
from feph_finetune.config.options import Option, option_problems
from feph_finetune.plugins import PluginCallError, Plugins

#: Seeds feed NumPy and Keras (``keras.utils.set_random_seed``), which take 32-bit unsigned seeds.
SEED = Option(0, minimum=0, maximum=2**32 - 1)

#: Bounds on the sizes of a configuration, so that an absurd value is refused before it allocates
#: or loops: each fold needs a group of its own (the loaded data bounds ``folds`` further);
#: Keras' MobileNet and EfficientNet take inputs of 32 px or more, and the frame array of FePh's
#: 2,531 images takes 8 GB at 1024 px.
SIZE_LIMITS = {
    ("dataset", "folds"): Option(5, minimum=2, maximum=10_000),
    ("dataset", "test_fraction"): Option(0.2, minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True),
    ("input_size",): Option(224, minimum=32, maximum=1024),
    ("batch_size",): Option(32, minimum=1, maximum=65_536),
    ("validation_split",): Option(0.0, minimum=0, maximum=1, exclusive_maximum=True),
    ("threads",): Option(0, minimum=0, maximum=1024),
    ("timeout",): Option(0.0, minimum=0, maximum=30 * 24 * 3600),  # seconds; 30 days is no limit in practice
}

FEPH_SOURCE = f"{FEPH_DOWNLOAD}, then point dataset.root at its folder, or try the tool on synthetic data with --demo"


@dataclass(frozen=True)
class Run:
    """One training-and-evaluation job of the matrix."""

    id: str
    experiment: str
    order: int
    label: str
    cv_label: str
    phase: str
    fold: int | None
    seed: int
    variant: dict[str, Any]
    config: dict[str, Any]
    dataset: dict[str, Any] = field(default_factory=dict)

    def plugins_used(self) -> list[str]:
        return used_plugins(self.config)

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
            "model": self.config["model"],
            "fine_tune": self.config["fine_tune"],
            "optimizer": self.config["optimizer"] if self.config["fine_tune"] else "",
            "preprocess": self.config["preprocess"],
            "augment": self.config["augment"],
            "class_weights": self.config["class_weights"],
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


def used_plugins(config: dict[str, Any]) -> list[str]:
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
    left_out = NOT_INHERITED + ("grid",) + tuple(key for key in RESULT_NEUTRAL_KEYS if key not in HASHED_AT_DEFAULT)
    identity = {key: value for key, value in config.items() if key not in left_out}
    identity.update({key: EXPERIMENT_DEFAULTS[key] for key in HASHED_AT_DEFAULT if key in identity})
    payload = {"config": identity, "dataset": dataset, "phase": phase, "fold": fold}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]
    where = "x" if phase == "exploratory" else f"cv{fold}"
    return f"{experiment}-{where}-{digest}"


class MatrixBuilder:
    """Resolves and checks every experiment of a raw configuration, collecting problems."""

    def __init__(self, raw: RawConfig, plugins: Plugins, check_files: bool = True, pending_files: frozenset[str] = frozenset()):
        self.raw = raw
        self.plugins = plugins
        self.check_files = check_files
        self.pending_files = pending_files
        self.problems: list[Problem] = []
        self.index: Dataset | None = None

    def problem(self, keys: tuple[str, ...], message: str) -> None:
        self.problems.append(Problem(self.raw.where(*keys), message))

    # --- the top level and the dataset ---

    def top_level(self) -> dict[str, Any]:
        data = self.raw.data
        check_table(self.raw, data, TOP_LEVEL, (), self.problems)
        if "experiments" not in data or not data.get("experiments"):
            self.problem(("experiments",), "no experiments: add at least one [experiments.NAME] table")
        if not isinstance(data.get("seed", 0), int) or isinstance(data.get("seed"), bool):
            return {**TOP_LEVEL, **data, "seed": TOP_LEVEL["seed"]}
        for message in option_problems(data.get("seed", TOP_LEVEL["seed"]), SEED):
            self.problem(("seed",), message)
        return {**TOP_LEVEL, **data}

    def dataset(self, table: Any, check_root: bool) -> dict[str, Any]:
        check_table(self.raw, table, DATASET_DEFAULTS, ("dataset",), self.problems)
        dataset = {**DATASET_DEFAULTS, **(table if isinstance(table, dict) else {})}
        if dataset["group_by"] not in GROUP_KEYS:
            self.problem(("dataset", "group_by"), f"must be one of {', '.join(GROUP_KEYS)}")
        for key in ("folds", "test_fraction"):
            if key in (table if isinstance(table, dict) else {}) and matches_type(dataset[key], DATASET_DEFAULTS[key]):
                for message in option_problems(dataset[key], SIZE_LIMITS[("dataset", key)]):
                    self.problem(("dataset", key), message)
        if check_root:
            root = dataset["root"]
            if not root:
                self.problem(("dataset", "root"), f"not set. {FEPH_SOURCE}")
            elif isinstance(root, str) and not Path(root).expanduser().is_dir():
                self.problem(("dataset", "root"), f"folder {root!r} does not exist. {FEPH_SOURCE}")
        return dataset

    def report(self, table: Any) -> dict[str, Any]:
        """The ``[report]`` table, its defaults filled in; figures without matplotlib is a problem now, not after the runs."""
        check_table(self.raw, table, REPORT_DEFAULTS, ("report",), self.problems)
        report = {**REPORT_DEFAULTS, **(table if isinstance(table, dict) else {})}
        if report["figures"] is True:
            from feph_finetune.results.figures import PLOTS_INSTALL, plots_available

            if not plots_available():
                self.problem(("report", "figures"), f"figures need matplotlib, which is not installed: {PLOTS_INSTALL}")
        return report

    def dataset_index(self, dataset: dict[str, Any], report: bool) -> None:
        """Read the dataset's index (its CSV and file listing; no image is decoded) when its root
        exists: record its fingerprint in ``dataset`` (part of every run's id) and, when
        ``report``, refuse data no run could use: no usable image, too few groups to split."""
        root = dataset["root"]
        if not isinstance(root, str) or not root or not Path(root).expanduser().is_dir():
            return
        try:
            index = load_index(Path(root).expanduser(), dataset["labels"] or None, dataset["images"] or None)
        except DatasetError as error:
            if report:
                self.problem(("dataset", "root"), str(error))
            return
        dataset["fingerprint"] = index.fingerprint
        if not report:
            return
        if not index.samples:
            dropped = ", ".join(f"{count} {reason}" for reason, count in index.dropped.items() if count) or "none"
            self.problem(("dataset", "root"), f"no usable image: the labels CSV has {len(index.dropped_rows)} rows "
                         f"and none becomes a sample (rows dropped: {dropped}); see python -m feph_finetune data {root}")
            return
        self.index = index

    def check_groups(self, dataset: dict[str, Any], runs: list[Run]) -> None:
        """The loaded data must have enough groups for a hold-out split and for the folds."""
        if self.index is None or not self.index.samples:
            return
        groups = len(set(self.index.groups(dataset["group_by"]).tolist()))
        formed = f"the {len(self.index.samples)} usable images form only {groups} (group_by = {dataset['group_by']!r})"
        if any(run.phase == "cv" for run in runs) and dataset["folds"] > groups:
            self.problem(("dataset", "folds"), f"{dataset['folds']} folds need at least {dataset['folds']} groups, but {formed}")
        if any(run.phase == "exploratory" for run in runs) and groups < 2:
            self.problem(("dataset", "group_by"), f"a hold-out split needs at least 2 groups, but {formed}")

    # --- experiments ---

    def experiment_chain(self, name: str, experiments: dict) -> list[str]:
        """The experiment, then the one it extends, and so on (problems reported, never looping)."""
        chain = [name]
        while parent := experiments[chain[-1]].get("extends", ""):
            if not isinstance(parent, str) or parent not in experiments:
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
        keys = ("experiments", name, "grid")
        if not isinstance(grid, dict):
            self.problem(keys, f"expected a table of arrays, got {type_name(grid)}")
            return [{}]
        for key, values in grid.items():
            head = split_dotted(key)[0]
            if head not in EXPERIMENT_DEFAULTS or head in ("grid", "extends", "label", "cv_label", "phases"):
                self.problem(keys + (key,), f"cannot expand {key!r}: not a setting of a run{close_match(head, EXPERIMENT_DEFAULTS)}")
                return [{}]
            if head in RESULT_NEUTRAL_KEYS:
                self.problem(keys + (key,), f"cannot expand {key!r}: it does not change a run's result, so every value would be the same run; set it on the experiment instead")
                return [{}]
            if not isinstance(values, list) or not values:
                self.problem(keys + (key,), "expected a non-empty array of values to expand")
                return [{}]
        names = list(grid)
        return [dict(zip(names, values)) for values in itertools.product(*(grid[key] for key in names))]

    def check_experiment(self, config: dict[str, Any], where) -> None:
        """Check a resolved experiment; ``where(keys)`` names the place a value came from."""
        before = len(self.problems)
        for key, default in EXPERIMENT_DEFAULTS.items():
            value = config[key]
            if key == "seed":
                default = 0
            if not matches_type(value, default):
                self.problems.append(Problem(self.raw.where(*where((key,))), f"expected {type_name(default)}, got {type_name(value)} {value!r}"))
        for key in ("preprocess", "augment", "evaluate", "phases"):
            if isinstance(config[key], list) and not all(isinstance(item, str) for item in config[key]):
                self.problems.append(Problem(self.raw.where(*where((key,))), "expected an array of strings"))
        for phase in config["phases"] if isinstance(config["phases"], list) else []:
            if phase not in PHASES:
                self.problems.append(Problem(self.raw.where(*where(("phases",))), f"unknown phase {phase!r}; phases are {', '.join(PHASES)}"))
        if len(self.problems) == before:  # types are right: check ranges, plugins and options
            for key, limit in [(("seed",), SEED)] + [(k, v) for k, v in SIZE_LIMITS.items() if k[0] != "dataset"]:
                for message in option_problems(config[key[0]], limit):
                    self.problems.append(Problem(self.raw.where(*where(key)), message))
            self.check_plugins(config, where)

    def check_plugins(self, config: dict[str, Any], where) -> None:
        before = len(self.problems)
        installed = self.plugins.names()
        for key, hook in PLUGIN_KEYS.items():
            if key == "optimizer" and not config["fine_tune"]:
                continue
            value = config[key]
            names = value if isinstance(value, list) else [value]
            if key in ("model", "optimizer") and not value:
                self.problems.append(Problem(self.raw.where(*where((key,))), f"names no plugin; a {hook} plugin is needed"))
            for name in filter(None, names):
                place = self.raw.where(*where((key,)))
                if name not in installed:
                    self.problems.append(Problem(place, self.plugins.missing(name)))
                elif not self.plugins.implements(name, hook):
                    serving = [p for p in installed if self.plugins.implements(p, hook)]
                    self.problems.append(Problem(place, f"plugin {name!r} does not implement {hook}; plugins that do: {', '.join(serving)}"))
        names_found = len(self.problems) == before
        faulty = self.check_options(config, where)
        if names_found:
            self.check_option_rules(config, where, faulty)
            self.check_traits(config, where, faulty)

    def check_options(self, config: dict[str, Any], where) -> set[str]:
        """Check every configured option against its plugin's declarations; files named by
        options must exist only for the plugins the experiment uses. Returns the plugins whose
        options have problems."""
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
                for message in option_problems(value, declarations[key], check_paths=self.check_files and plugin in used and not (isinstance(value, str) and value in self.pending_files)):
                    self.problems.append(Problem(place, message))
            if len(self.problems) > before:
                faulty.add(plugin)
        return faulty

    def check_option_rules(self, config: dict[str, Any], where, faulty: set[str]) -> None:
        """Run the ``check_with_options`` rules of the plugins the experiment uses, whose options
        passed their own checks; where files are checked and none is written later."""
        if not self.check_files:
            return
        for name in used_plugins(config):
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

    def model_input_size(self, config: dict[str, Any], where, size_set: bool) -> None:
        """The model plugin's ``model_input``: its side when the TOML sets no ``input_size``; a
        model that takes no other side refuses a different one."""
        model = config["model"]
        if any(isinstance(value, str) and value in self.pending_files for value in (config["options"].get(model) or {}).values()):
            return  # a file written later: the run checks its input
        try:
            wanted = self.plugins.call(model, "model_input", options=config["options"][model])
        except PluginCallError as error:
            self.problems.append(Problem(self.raw.where(*where(("options", model))), str(error)))
            return
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

    def check_traits(self, config: dict[str, Any], where, faulty: set[str]) -> None:
        """Refuse combinations of plugins that cannot work, from what each declares it does
        (plugins whose options have problems are left out: their traits are unknown)."""
        traits = {}
        for name in used_plugins(config):
            if name in faulty:
                continue
            try:
                options = {**self.plugins.option_defaults(name), **config["options"].get(name, {})}
                traits[name] = self.plugins.traits(name, options)
            except PluginCallError as error:
                self.problems.append(Problem(self.raw.where(*where(("options", name))), str(error)))
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
        return {name: {**self.plugins.option_defaults(name), **configured.get(name, {})} for name in used_plugins(config)}

    # --- everything ---

    def build(self, check_root: bool = True) -> Matrix:
        top = self.top_level()
        dataset = self.dataset(top["dataset"], check_root)
        report = self.report(top["report"])
        if not self.problems:
            self.dataset_index(dataset, report=check_root)
        # problems so far are reported with the experiments', not instead of them
        early, self.problems = self.problems, []
        if early and not (matches_type(dataset["folds"], 0) and 2 <= dataset["folds"] <= SIZE_LIMITS[("dataset", "folds")].maximum):
            dataset = {**dataset, "folds": DATASET_DEFAULTS["folds"]}  # only to go on checking
        defaults = top["defaults"] if isinstance(top["defaults"], dict) else {}
        check_table(self.raw, defaults, EXPERIMENT_DEFAULTS, ("defaults",), self.problems)
        experiments = top["experiments"] if isinstance(top["experiments"], dict) else {}
        for name, table in experiments.items():
            if not EXPERIMENT_NAME.match(name):
                self.problem(("experiments", name), "experiment names may use letters, digits and _ . + - only")
            check_table(self.raw, table, EXPERIMENT_DEFAULTS, ("experiments", name), self.problems)
        if self.problems:
            raise ConfigError(early + self.problems)
        runs: list[Run] = []
        for order, name in enumerate(experiments):
            runs += self.experiment_runs(name, order, experiments, defaults, top["seed"], dataset)
        if check_root:
            self.check_groups(dataset, runs)
        self.problems = early + self.problems
        if self.problems:
            raise ConfigError(list(dict.fromkeys(self.problems)))
        return Matrix(top["seed"], top["output"], dataset, runs, list(experiments), report)

    def experiment_runs(self, name, order, experiments, defaults, seed, dataset) -> list[Run]:
        chain = self.experiment_chain(name, experiments)
        base = self.resolve(chain, experiments, defaults, seed)
        runs = []
        for variant in self.grid_points(name, base["grid"]):
            config = copy.deepcopy(base)
            for key, value in variant.items():
                set_dotted(config, split_dotted(key), value)

            def where(keys, variant=variant):
                for key in variant:
                    if tuple(split_dotted(key)) == keys[: len(split_dotted(key))]:
                        return ("experiments", name, "grid", key)
                return self.source(chain, experiments, defaults, keys)

            before = len(self.problems)
            self.check_experiment(config, where)
            if len(self.problems) > before:
                continue
            config["options"] = self.plugin_options(config)
            size_set = "input_size" in variant or self.setter(chain, experiments, defaults, ("input_size",)) is not None
            self.model_input_size(config, where, size_set)
            if len(self.problems) > before:
                continue
            runs += self.phase_runs(name, order, config, variant, dataset)
        return runs

    def phase_runs(self, name, order, config, variant, dataset) -> list[Run]:
        identity_dataset = {key: value for key, value in dataset.items() if key != "cache_dir"}
        identity_dataset["split_seed"] = self.raw.data.get("seed", TOP_LEVEL["seed"])
        runs = []
        for phase in config["phases"]:
            for fold in [None] if phase == "exploratory" else range(dataset["folds"]):
                runs.append(
                    Run(
                        id=run_id(name, phase, fold, config, identity_dataset),
                        experiment=name,
                        order=order,
                        label=config["label"],
                        cv_label=config["cv_label"],
                        phase=phase,
                        fold=fold,
                        seed=config["seed"],
                        variant=variant,
                        config=config,
                        dataset=dataset,
                    )
                )
        return runs


def build_matrix(raw: RawConfig, plugins: Plugins, check_root: bool = True, pending_files: frozenset[str] = frozenset()) -> Matrix:
    """Validate ``raw`` and expand it into runs; raises ConfigError listing every problem.

    ``check_root=False`` (the demo, whose data and base models are written after validation)
    skips what needs files on disk: the dataset root and its index, and files named by options.
    The dataset's index is still read, for its fingerprint, when the root exists.
    ``pending_files``: paths that options may name before they exist, because the caller writes
    them before a run needs them (the demo's base models, pre-trained beside the first runs).
    """
    return MatrixBuilder(raw, plugins, check_files=check_root, pending_files=pending_files).build(check_root)


def select(matrix: Matrix, only: list[str] | None, phase: str | None) -> list[Run]:
    """The runs that ``--only`` and ``--phase`` keep.

    ConfigError for an unknown experiment name, and when no run is left: a command that would
    do nothing says so (exit 2) instead of reporting success.
    """
    if only:
        unknown = [name for name in only if name not in matrix.experiments]
        if unknown:
            known = ", ".join(matrix.experiments)
            raise ConfigError([Problem(f"--only {name}", f"no experiment {name!r}{close_match(name, matrix.experiments)}; experiments: {known}") for name in unknown])
    runs = [run for run in matrix.runs if (not only or run.experiment in only) and (not phase or run.phase == phase)]
    if not runs:
        raise ConfigError([_nothing_selected(matrix, only, phase)])
    return runs


def _nothing_selected(matrix: Matrix, only: list[str] | None, phase: str | None) -> Problem:
    options = " ".join(part for part in (f"--only {' '.join(only)}" if only else "", f"--phase {phase}" if phase else "") if part)
    if phase:
        having = list(dict.fromkeys(run.experiment for run in matrix.runs if run.phase == phase))
        return Problem(options, f"no runs selected (experiments with a {phase} phase: {', '.join(having) or 'none'})")
    return Problem(options or "experiments", "no runs selected: the file defines no runs")
