"""The schema of an experiments TOML: every core setting, declared once as an :class:`Option`.

Each table of the file has one mapping ``{key: Option}`` here; its defaults, its checks and the
listing of ``python -m feph_finetune plugins --settings`` all come from it. Executors declare
their options on their class (:attr:`feph_finetune.execution.executors.Executor.options`),
plugins through ``plugin_options``, and a client of the core (the demo) the tables it owns
(:data:`feph_finetune.demo.protocol.DEMO_OPTIONS`), with the same :class:`Option`. The
command-line flags that set the same things (``--jobs``, ``--devices``, ``data --folds``,
``--seed``, ``--test-fraction``) are checked against these same declarations.

No TensorFlow here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from feph_finetune.config.options import Option, as_option
from feph_finetune.data.user_files import empty_path_problem, lookup_problem

PHASES = ("exploratory", "cv")

#: Seeds feed NumPy and Keras (``keras.utils.set_random_seed``), which take 32-bit unsigned seeds.
SEED_MAXIMUM = 2**32 - 1

#: The top level (``dataset`` and ``experiments`` are required; their keys are declared below).
TOP_LEVEL_OPTIONS: dict[str, Option] = {
    "seed": Option(1234, "seed of the data splits, and of every run that sets none", minimum=0, maximum=SEED_MAXIMUM),
    "output": Option("runs", "results directory (--output wins)", check=empty_path_problem),
    "dataset": Option({}, "the data: see [dataset]"),
    "defaults": Option({}, "settings of every experiment, as an experiment's"),
    "experiments": Option({}, "one table per experiment"),
    "demo": Option({}, "the synthetic demo's settings (python -m feph_finetune --demo)"),
    "report": Option({}, "what a matrix writes after its tables: see [report]"),
    "executor": Option({}, "where runs execute: name, and a table of options per executor"),
    "tracking": Option({}, "experiment tracking: plugins, and a table of options per tracking plugin"),
}



def folder_name_problem(text: str) -> str | None:
    """Why a folder named by ``text`` (``~`` expanded) could never be created (a name in it too
    long), or None; one that does not exist yet is fine."""
    return lookup_problem(Path(text).expanduser()) if text else None


def pattern_problem(pattern: str) -> str | None:
    """Why ``group_pattern`` is unusable (None when it is usable): it must compile and capture."""
    if not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        return f"not a regular expression: {error}"
    if compiled.groups < 1:
        return "needs a group in parentheses: the part of the file name that names the group, e.g. '^(.+)_frame'"
    return None


#: ``[dataset]``. ``folds``: each fold needs a group of its own (the loaded data bounds it further).
#: ``format`` names the ``load_dataset`` plugin; the keys its ``plugin_options`` declare are
#: ``[dataset]`` keys too. ``labels``, ``images`` and ``group_by`` stay core keys although they
#: mean most to the ``feph`` format: moving them would break existing files and run ids, and
#: ``csv`` reads the same two files. ``group_by`` is checked against the keys the data offers.
DATASET_OPTIONS: dict[str, Option] = {
    "root": Option("", "the dataset folder (labels CSV and image folder)"),
    "format": Option("feph", "the load_dataset plugin that reads it: feph, folders, csv or a third party's"),
    "labels": Option("", "labels CSV, relative to root (default: the one CSV found)"),
    "images": Option("", "image folder, relative to root (default: the one found)"),
    "group_by": Option("sequence", "keep these groups on one side of every split: a key the format offers (feph: sequence, signer)"),
    "group_pattern": Option("", "instead of group_by: a regular expression whose first group, found in a file name, is its group", check=pattern_problem),
    "folds": Option(5, "cross-validation folds", minimum=2, maximum=10_000),
    "test_fraction": Option(0.2, "hold-out test share", minimum=0, maximum=1, exclusive_minimum=True, exclusive_maximum=True),
    "cache_dir": Option("", "where decoded frames are cached (default: the user cache)", check=folder_name_problem),
}

#: Every key an experiment (or ``[defaults]``) may set. Sizes are bounded so that an absurd value
#: is refused before it allocates or loops: Keras' MobileNet and EfficientNet take inputs of
#: 32 px or more, and the frame array of FePh's 2,531 images takes 8 GB at 1024 px.
EXPERIMENT_OPTIONS: dict[str, Option] = {
    "label": Option("", "the row's name in the exploratory table (default: the experiment's name)"),
    "cv_label": Option("", "the row's name in the cross-validation table"),
    "extends": Option("", "the experiment whose settings this one starts from"),
    "phases": Option(["exploratory"], "exploratory (80/20 split) and/or cv (k-fold)", choices=PHASES),
    "fine_tune": Option(True, "false: evaluate the model's pretrained classifier (No-FT)"),
    "model": Option("mobilenet", "the build_model plugin"),
    "preprocess": Option(["face_crop"], "preprocess plugins, in order", kind=str),
    "augment": Option([], "augment plugins, in order", kind=str),
    "optimizer": Option("adam", "the optimizer_schedule plugin"),
    "class_weights": Option("", "the weight_classes plugin (empty: none)"),
    "evaluate": Option(["paper_metrics"], "evaluate plugins", kind=str),
    "input_size": Option(224, "image side in pixels (default: the model's)", minimum=32, maximum=1024),
    "batch_size": Option(32, "images per training step", minimum=1, maximum=65_536),
    "seed": Option(None, "the run's seed (default: the top-level seed)", kind=int, minimum=0, maximum=SEED_MAXIMUM),
    "train_batchnorm": Option(False, "train the BatchNormalization layers too"),
    "head_features": Option(True, "train the head on cached backbone features when the backbone is frozen"),
    "validation_split": Option(0.0, "share of the training split held out for validation", minimum=0, maximum=1, exclusive_maximum=True),
    "deterministic": Option(False, "TensorFlow's op determinism"),
    "threads": Option(0, "TensorFlow's threads (0: its default)", minimum=0, maximum=1024),
    "save_model": Option(False, "keep a model bundle of the run"),
    "timeout": Option(0.0, "seconds before the executor stops the run (0: none)", minimum=0, maximum=30 * 24 * 3600),
    "options": Option({}, "a table of options per plugin"),
    "grid": Option({}, "settings to expand: {key = [values]}, one run per combination"),
}

#: ``[report]``. ``figures``: the PNGs and ``report.md`` of :mod:`feph_finetune.results.figures`
#: (needs the ``plots`` extra), into ``figures_dir`` (default: ``report`` inside the output
#: directory); ``paper``: the paper's published accuracy beside the matching rows.
REPORT_OPTIONS: dict[str, Option] = {
    "figures": Option(False, "write PNG figures and report.md (needs matplotlib)"),
    "paper": Option(False, "add the paper's published accuracy beside matching rows"),
    "figures_dir": Option("", "where figures go (default: report/ in the results directory)"),
}

#: ``[tracking]``: the tracking plugins every run reports to (``tensorboard``, ``mlflow``, a third
#: party's; ``--track NAME`` adds one); each has its options in a ``[tracking.<plugin>]`` table,
#: declared by the plugin (:mod:`feph_finetune.execution.tracking`).
TRACKING_OPTIONS: dict[str, Option] = {
    "plugins": Option([], "tracking plugins every run reports to", kind=str),
}

#: The hooks that make a plugin a tracking plugin (it implements at least one).
TRACKING_HOOKS = ("track_run_start", "track_epoch", "track_run_end", "track_matrix_end", "track_runs_stopped")

#: The declared tables by their place in the file, for listings. ``[defaults]`` and each
#: ``[experiments.NAME]`` share :data:`EXPERIMENT_OPTIONS`.
CORE_TABLES: dict[str, dict[str, Option]] = {
    "": TOP_LEVEL_OPTIONS,
    "dataset": DATASET_OPTIONS,
    "defaults / experiments.NAME": EXPERIMENT_OPTIONS,
    "report": REPORT_OPTIONS,
    "tracking": TRACKING_OPTIONS,
}


def setting_rows(tables: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per declared setting, ``{table, key, default, accepts, help}``, for listings
    (``plugins --settings``): ``tables`` maps a table's place (``"dataset"``,
    ``"executor.process"``) to its declarations. A sub-table declared with ``Option(table=...)``
    is listed under its own place, unless its declarations are listed already (``[demo]
    defaults`` takes an experiment's keys)."""
    from feph_finetune.config.options import describe

    rows = []
    for place, declarations in tables.items():
        for key, value in declarations.items():
            option = as_option(value)
            rows.append({"table": place, "key": key, "default": option.default, "accepts": describe(option), "help": option.help})
            if option.table is not None and not any(option.table is listed for listed in tables.values()):
                rows += setting_rows({f"{place}.{key}" if place else key: option.table})
    return rows


def defaults_of(declarations: Mapping[str, Any]) -> dict[str, Any]:
    """``{key: default}`` of a table's declarations (plain defaults or Options); a fresh copy."""
    import copy

    return {key: copy.deepcopy(as_option(option).default) for key, option in declarations.items()}
