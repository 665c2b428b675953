"""Reading a dataset through its format plugin, and grouping its samples for the splits.

``[dataset] format`` names a plugin implementing ``load_dataset`` (default ``feph``); the core
checks what it returns, so that every later step can rely on it: classes unique non-empty names,
every label an index into them, groups for every sample. No TensorFlow here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from feph_finetune.api import Dataset, DatasetError
from feph_finetune.config.reading import DATASET_DEFAULTS
from feph_finetune.data.splits import Split, holdout_split, kfold_splits
from feph_finetune.printable import printable
from feph_finetune.data.user_files import input_folder_problem, is_utf8_name
from feph_finetune.plugins import PluginCallError, Plugins, get_plugins

#: Where the real data comes from, for messages about a missing dataset folder.
FEPH_DOWNLOAD = 'FePh is published on Harvard Dataverse (doi:10.7910/DVN/358QMQ): download and unpack it (README, "Running on the real FePh")'

#: The hook a dataset format implements.
FORMAT_HOOK = "load_dataset"

#: Said wherever the samples form no groups: a split may then put frames of one video on both sides.
UNGROUPED_WARNING = ("no grouping: every image is its own group, so frames of one video may sit on both sides of a "
                     "split; set dataset.group_by to a key the data offers, or dataset.group_pattern")


def toml_spelling(setting: str) -> str:
    """How a user names a ``[dataset]`` setting in an experiments TOML."""
    return f"dataset.{setting}"


def load_dataset(settings: Mapping[str, Any], decode: bool = True, plugins: Plugins | None = None,
                 spell: Callable[[str], str] = toml_spelling) -> Dataset:
    """The dataset ``settings`` (a ``[dataset]`` table; missing keys, the format's options
    included, take their defaults) describe.

    ``decode=False`` reads only the index (no image decoded; the same fingerprint). ``spell``
    names a setting in error hints the way the user sets it. Raises :class:`DatasetError` for a
    layout the format cannot read, :class:`PluginCallError` when the format plugin fails or
    returns something unusable.
    """
    plugins = plugins or get_plugins()
    name = settings.get("format") or DATASET_DEFAULTS["format"]
    if not plugins.implements(name, FORMAT_HOOK):
        raise DatasetError(format_problem(plugins, name))
    settings = {**DATASET_DEFAULTS, **plugins.option_defaults(name), **settings}
    root = Path(settings["root"]).expanduser()
    if problem := input_folder_problem(root):
        raise DatasetError(f"dataset root {root}: {problem}", setting="root")
    try:
        dataset = plugins.call(name, FORMAT_HOOK, root=root, settings=settings, decode=decode)
    except PluginCallError as error:
        if isinstance(error.error, DatasetError):
            raise hinted(error.error, spell) from None
        raise
    odd = [f"'{printable(label)}'" for label in dataset.classes if not is_utf8_name(label)]
    if odd:
        raise DatasetError(f"class {', '.join(odd)} in {root}: not valid UTF-8 (a folder or file name of other bytes, shown escaped); "
                           "class names are written into records and reports as text: rename it")
    return dataset


def load_index(settings: Mapping[str, Any], plugins: Plugins | None = None) -> Dataset:
    """The dataset's index: its labels and files, without decoding any image (cheap enough for
    checking a configuration; see :func:`load_dataset`)."""
    return load_dataset(settings, decode=False, plugins=plugins)


def format_problem(plugins: Plugins, name: str) -> str:
    """Why ``name`` is no dataset format ('' when it is one)."""
    if plugins.implements(name, FORMAT_HOOK):
        return ""
    formats = [other for other in plugins.names() if plugins.implements(other, FORMAT_HOOK)]
    if name in plugins.names():
        return f"plugin {name!r} is not a dataset format (it does not implement {FORMAT_HOOK}); formats: {', '.join(formats)}"
    return plugins.missing(name) + f"; dataset formats: {', '.join(formats)}"


def hinted(error: DatasetError, spell: Callable[[str], str]) -> DatasetError:
    """The error with its hint, if any, spelled out as the setting that fixes it."""
    if error.hint is None:
        return error
    phrase, setting = error.hint
    return DatasetError(f"{error}; {phrase} {spell(setting)}", setting=error.setting)


def group_labels(dataset: Dataset, settings: Mapping[str, Any]) -> np.ndarray:
    """The group of every sample (str, N): the first group of ``group_pattern`` matched in the
    file name when it is set (a name it does not match is its own group), else the sample's
    ``group_by`` key. Raises ValueError for a key the data does not offer."""
    pattern = settings.get("group_pattern") or ""
    if pattern:
        compiled = re.compile(pattern)
        return np.array([_pattern_group(compiled, sample.path.name) for sample in dataset.samples], dtype=str)
    return dataset.groups(settings.get("group_by") or DATASET_DEFAULTS["group_by"])


def _pattern_group(pattern: re.Pattern, name: str) -> str:
    match = pattern.search(name)
    return match.group(1) if match and match.group(1) is not None else name


def grouping_warning(groups: np.ndarray) -> str:
    """:data:`UNGROUPED_WARNING` when no two samples share a group ('' otherwise)."""
    return UNGROUPED_WARNING if len(groups) > 1 and len(set(groups.tolist())) == len(groups) else ""


def single_class_problem(dataset: Dataset, settings: Mapping[str, Any]) -> str:
    """Why ``dataset`` (with samples) cannot train a classifier ('' when it can): its samples
    are of one class only, so every run would report 100% (a ``folders`` root whose only
    sub-folder is the image folder, FePh's ``FePh_images``). Names the root and the class."""
    labels = {sample.label for sample in dataset.samples}
    if len(labels) != 1:
        return ""
    (label,) = labels
    return (f"the data in {printable(str(settings['root']))} (format = {printable(repr(settings['format']))}) has images of one class only, "
            f"{printable(repr(dataset.classes[label]))} ({len(dataset.samples)} images): a classifier needs at least 2 classes, "
            "and each run would report 100%; check root and format")


def test_fraction_warning(test_fraction: float, groups: int) -> str:
    """Why the hold-out split cannot give ``test_fraction`` of ``groups`` groups to the test side
    ('' when it can): a side asked for fewer than half a group (its share rounds to no group)
    still gets one whole group (:func:`~feph_finetune.data.splits.holdout_split` leaves no side
    empty), so the split is far from the share asked for. ``groups`` < 2 is refused elsewhere."""
    for side, share in (("test", test_fraction), ("training", 1.0 - test_fraction)):
        if groups >= 2 and share * groups < 0.5:
            return (f"{test_fraction:g} asks for {share * groups:.2g} of the {groups} groups on the {side} side, "
                    f"fewer than half a group: the hold-out split puts one whole group there ({100 / groups:.2g}% of the groups, not "
                    f"{100 * share:.2g}%); choose a fraction between {0.5 / groups:.2g} and {1 - 0.5 / groups:.2g}, or data with more groups")
    return ""


def exploratory_split(dataset: Dataset, settings: Mapping[str, Any], seed: int) -> Split:
    """The exploratory phase's split: the data's own (``Sample.split``) when it comes split,
    else a grouped, stratified hold-out of ``test_fraction``."""
    if dataset.presplit:
        sides = np.array([sample.split for sample in dataset.samples])
        return Split(np.flatnonzero(sides == "train"), np.flatnonzero(sides == "test"))
    return holdout_split(dataset.labels(), group_labels(dataset, settings), settings["test_fraction"], seed)


def cv_splits(dataset: Dataset, settings: Mapping[str, Any], seed: int) -> list[Split]:
    """The cross-validation folds, over all samples (a given split's two sides pooled)."""
    return kfold_splits(dataset.labels(), group_labels(dataset, settings), settings["folds"], seed)
