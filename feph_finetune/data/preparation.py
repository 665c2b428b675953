"""A run's data, ready for the model: split, preprocessed, augmented, weighted. No TensorFlow.

Loading the dataset, computing splits and the frame steps are shared by all runs of a matrix
through :class:`DataSource`, so a matrix of 42 runs reads and crops each image once.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from feph_finetune.api import Augmentation, Dataset, PluginError, Preprocessing, RunContext
from feph_finetune.data.datasets import cv_splits, exploratory_split, group_labels, grouping_warning, load_dataset
from feph_finetune.data.frames import CropCache, FrameSet, FrameStep, compute_frames, default_cache_dir
from feph_finetune.config.matrix import Run
from feph_finetune.hook_arguments import protected
from feph_finetune.plugins import PluginCallError, Plugins, plugin_code
from feph_finetune.data.splits import Split, holdout_split


@dataclass(frozen=True)
class Examples:
    """One split's images and labels, as rows of an image array that runs share.

    The rows are kept as indices, not copied out: the frame array of a matrix is the largest
    object in memory (0.38 GB for FePh at 224 px), and each copy per run or split would add to
    the peak. The input pipeline gathers one batch of rows at a time.
    """

    images: np.ndarray
    index: np.ndarray
    labels: np.ndarray

    @classmethod
    def of(cls, images: np.ndarray, labels: np.ndarray) -> "Examples":
        """All rows of ``images``, in order."""
        return cls(images, np.arange(len(images)), np.asarray(labels))

    def __len__(self) -> int:
        return len(self.index)

    def pixels(self) -> np.ndarray:
        """The selected images as a new array, for functions that need one (a copy)."""
        return self.images[self.index]


@dataclass
class RunData:
    """Everything the training step needs: uint8 examples plus per-batch functions."""

    train: Examples
    test: Examples
    val: Examples | None = None
    batch_steps: list[tuple[str, Preprocessing]] = field(default_factory=list)
    preprocessing: list[tuple[str, Preprocessing]] = field(default_factory=list)  # every step, fitted; for the model bundle
    augmentations: list[tuple[str, Augmentation]] = field(default_factory=list)
    class_weight: dict[int, float] | None = None
    fallbacks: int = 0
    warnings: list[str] = field(default_factory=list)  # for the person running the matrix (a crop cache that cannot be written)


#: ``[dataset]`` settings that do not change what is read, only how it is split or cached.
NOT_READING = frozenset({"folds", "test_fraction", "cache_dir", "group_by", "group_pattern", "fingerprint"})


class DataSource:
    """Datasets, splits and frame arrays, computed once per process and shared by runs."""

    def __init__(self, cache_dir: Path | None = None):
        self.cache_dir = cache_dir
        self._datasets: dict[tuple, Dataset] = {}
        self._frames: dict[tuple, FrameSet] = {}
        self._splits: dict[tuple, Any] = {}
        self.frames_computed = 0

    @staticmethod
    def dataset_key(settings: dict[str, Any]) -> tuple:
        """What the loaded dataset depends on: every ``[dataset]`` setting but the splits' and the cache's."""
        return tuple(sorted((key, repr(value)) for key, value in settings.items() if key not in NOT_READING))

    def dataset(self, settings: dict[str, Any]) -> Dataset:
        key = self.dataset_key(settings)
        if key not in self._datasets:
            self._datasets[key] = load_dataset(settings)
        return self._datasets[key]

    def split(self, run: Run, dataset: Dataset, split_seed: int) -> Split:
        settings = run.dataset
        grouping = (self.dataset_key(settings), settings["group_by"], settings["group_pattern"], split_seed)
        if run.phase == "exploratory":
            key = ("holdout", *grouping, settings["test_fraction"])
            if key not in self._splits:
                self._splits[key] = exploratory_split(dataset, settings, split_seed)
            return self._splits[key]
        key = ("cv", *grouping, settings["folds"])
        if key not in self._splits:
            self._splits[key] = cv_splits(dataset, settings, split_seed)
        return self._splits[key][run.fold]

    @staticmethod
    def frames_key(dataset: Dataset, steps: list[FrameStep], size: int) -> tuple:
        """The frame array's key: its rows are the dataset's samples, so two readings of one root
        (another format, another ``classes`` list) have arrays of their own."""
        samples = hashlib.sha256(b"\0".join(os.fsencode(sample.path) for sample in dataset.samples)).hexdigest()
        return (str(dataset.root), samples, tuple(step.signature for step in steps), size)

    def frames(self, dataset: Dataset, steps: list[FrameStep], size: int, settings: dict[str, Any]) -> FrameSet:
        key = self.frames_key(dataset, steps, size)
        if key not in self._frames:
            root = Path(settings["cache_dir"]).expanduser() if settings["cache_dir"] else self.cache_dir or default_cache_dir()
            frames = compute_frames(dataset, steps, size, CropCache(root))
            self.frames_computed += frames.computed
            self._frames[key] = frames
        return self._frames[key]

    def inputs(self, run: Run, plugins: Plugins, context_for: Callable[[str], RunContext]) -> "RunInputs":
        """The loaded dataset and the frame array a run reads: what a worker that cannot see the
        dataset's folder needs (one per dataset, frame steps and input size, not per run)."""
        dataset = self.dataset(run.dataset)
        steps = frame_steps(preprocess_steps(run, plugins, context_for))
        size = run.config["input_size"]
        return RunInputs(self.dataset_key(run.dataset), dataset, self.frames_key(dataset, steps, size), self.frames(dataset, steps, size, run.dataset))

    def add(self, inputs: "RunInputs") -> None:
        """Serve ``inputs`` from now on instead of reading and cropping the images here."""
        self._datasets[inputs.dataset_key] = inputs.dataset
        self._frames[inputs.frames_key] = inputs.frames


@dataclass(frozen=True)
class RunInputs:
    """A dataset and one frame array of it (uint8, N x S x S x 3), with their keys in
    :class:`DataSource`; picklable, for shipping to a worker once per matrix."""

    dataset_key: tuple
    dataset: Dataset
    frames_key: tuple
    frames: FrameSet


def preprocess_steps(run: Run, plugins: Plugins, context_for: Callable[[str], RunContext]) -> list[tuple[str, Preprocessing]]:
    """The run's ``preprocess`` contributions in the TOML's order, plugins returning None left out."""
    steps = [(name, plugins.call(name, "preprocess", context=context_for(name))) for name in run.config["preprocess"]]
    return [(name, step) for name, step in steps if step is not None]


def frame_steps(steps: list[tuple[str, Preprocessing]]) -> list[FrameStep]:
    return [FrameStep(name, step) for name, step in steps if step.frame is not None]


def validation_holdout(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> Split:
    """Hold out whole sequences of the training split for keeping the best epoch."""
    return holdout_split(labels, groups, fraction, seed)


def prepare(run: Run, plugins: Plugins, source: DataSource, context_for: Callable[[str], RunContext], split_seed: int) -> RunData:
    """Split, preprocess, augment and weight one run's data (the plugins' non-model hooks)."""
    config = run.config
    dataset = source.dataset(run.dataset)
    if tuple(dataset.classes) != run.classes:  # the model's outputs and every report column follow run.classes
        raise ValueError(f"the data's classes {list(dataset.classes)} are not those read when the configuration was checked "
                         f"({list(run.classes)}): the data changed; run again")
    split = source.split(run, dataset, split_seed)
    steps = preprocess_steps(run, plugins, context_for)
    frames = source.frames(dataset, frame_steps(steps), config["input_size"], run.dataset)
    labels = dataset.labels()
    train_index, val_index = split.train, None
    if config["validation_split"] > 0:
        inner = validation_holdout(labels[split.train], group_labels(dataset, run.dataset)[split.train], config["validation_split"], run.seed)
        train_index, val_index = split.train[inner.train], split.train[inner.test]

    def examples(index: np.ndarray) -> Examples:
        return Examples(frames.images, index, labels[index])

    data = RunData(
        train=examples(train_index),
        test=examples(split.test),
        val=None if val_index is None else examples(val_index),
        fallbacks=sum(1 for fallback in frames.fallbacks if fallback),
        warnings=[message for message in (frames.cache_problem, grouping_warning(group_labels(dataset, run.dataset))) if message],
    )
    fitted = [(name, step) for name, step in steps if step.fit is not None]
    if fitted:
        train_pixels = data.train.pixels()
        for name, step in fitted:
            _call_plugin_function(name, "preprocess", step.fit, train_pixels)
        del train_pixels
    data.batch_steps = [(name, step) for name, step in steps if step.batch is not None]
    data.preprocessing = steps
    if config["class_weights"]:
        data.class_weight = plugins.call(config["class_weights"], "weight_classes", labels=data.train.labels, context=context_for(config["class_weights"]))
    for name in config["augment"]:
        augmentation = plugins.call(name, "augment", context=context_for(name))
        if augmentation is None:
            continue
        if augmentation.expand is not None:
            expanded = _call_plugin_function(name, "augment", augmentation.expand, data.train.pixels(), data.train.labels)
            data.train = _expanded_examples(name, expanded, data.train, len(run.classes))
        if augmentation.batch is not None:
            data.augmentations.append((name, augmentation))
    return data


def _call_plugin_function(plugin: str, hook: str, function: Callable, *args: Any) -> Any:
    """Call a function a plugin returned, attributing its errors to the plugin; its arguments
    read-only as a hook's are (:func:`~feph_finetune.hook_arguments.protected`: the training
    labels ``expand`` is given are the run's own, the pixels a ``fit`` is given the next fit's)."""
    with plugin_code(plugin, hook):
        return function(*map(protected, args))


def _expanded_examples(plugin: str, expanded: Any, before: Examples, classes: int) -> Examples:
    """The training examples an ``expand`` function returned, checked against what it was given:
    uint8 images of the same size, one integer label each, a class index below ``classes`` (the
    loss of a label beyond them is NaN or an error in the middle of training)."""
    if not (isinstance(expanded, tuple) and len(expanded) == 2 and all(isinstance(part, np.ndarray) for part in expanded)):
        raise PluginCallError(plugin, "augment", PluginError("expand must return (images, labels): a pair of NumPy arrays"))
    images, labels = expanded
    problem = None
    if images.dtype != np.uint8 or images.shape[1:] != before.images.shape[1:]:
        problem = f"images of dtype uint8 and shape (N, {', '.join(map(str, before.images.shape[1:]))}), got {images.dtype} {images.shape}"
    elif labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        problem = f"one integer label per image, got {labels.dtype} labels of shape {labels.shape} for {len(images)} images"
    elif len(labels) and not (labels.min() >= 0 and labels.max() < classes):
        problem = f"labels that are class indices 0..{classes - 1}, got labels from {labels.min()} to {labels.max()}"
    if problem:
        raise PluginCallError(plugin, "augment", PluginError(f"expand must return {problem}"))
    return Examples.of(images, labels)
